/*
 * The JSON of one request_log row (reqrow.h). Unknown values (-1 in the
 * table: no first byte, tokens never reported) are null, never a number
 * that could be summed by mistake.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "reqrow.h"
#include "util.h"

/* Column i as a JSON string; text that is not UTF-8 (a model cut at its
 * byte cap inside a character, bytes the client sent) has the bad bytes
 * replaced, so every answer is valid JSON text. */
static json_object *
reqrow_str(sqlite3_stmt *st, int i, bool null_if_empty)
{
	const char *t = (const char *)sqlite3_column_text(st, i);
	json_object *o;
	char *copy;

	if (t == NULL || (null_if_empty && t[0] == '\0'))
		return NULL;
	if (sc_utf8_valid(t, strlen(t)))
		return json_object_new_string(t);
	copy = sc_xstrdup(t);
	sc_utf8_scrub(copy);
	o = json_object_new_string(copy);
	free(copy);
	return o;
}

/* -1 (unknown) as null. */
static json_object *
reqrow_known(sqlite3_stmt *st, int i)
{
	int64_t v = sqlite3_column_int64(st, i);

	return v < 0 ? NULL : json_object_new_int64(v);
}

json_object *
reqrow_json(sqlite3_stmt *st)
{
	json_object *o = json_object_new_object();
	const unsigned char *code = sqlite3_column_text(st, 10);
	int status = sqlite3_column_int(st, 9);

	json_object_object_add(o, "seq", json_object_new_int64(sqlite3_column_int64(st, 0)));
	json_object_object_add(o, "request_id", reqrow_str(st, 1, false));
	json_object_object_add(o, "finished_at", reqrow_str(st, 2, false));
	json_object_object_add(o, "finished_ms", json_object_new_int64(sqlite3_column_int64(st, 3)));
	json_object_object_add(o, "client", reqrow_str(st, 4, true));
	json_object_object_add(o, "model", reqrow_str(st, 5, true));
	json_object_object_add(o, "provider_id", reqrow_str(st, 6, true));
	json_object_object_add(o, "provider", reqrow_str(st, 7, true));
	json_object_object_add(o, "pool", reqrow_str(st, 8, true));
	json_object_object_add(o, "status", json_object_new_int(status));
	json_object_object_add(o, "error_code", reqrow_str(st, 10, true));
	json_object_object_add(o, "error", json_object_new_boolean(status >= 400 || (code != NULL && code[0] != '\0')));
	json_object_object_add(o, "attempts", json_object_new_int(sqlite3_column_int(st, 11)));
	json_object_object_add(o, "queue_ms", json_object_new_int64(sqlite3_column_int64(st, 12)));
	json_object_object_add(o, "ttfb_ms", reqrow_known(st, 13));
	json_object_object_add(o, "latency_ms", json_object_new_int64(sqlite3_column_int64(st, 14)));
	json_object_object_add(o, "prompt_tokens", reqrow_known(st, 15));
	json_object_object_add(o, "completion_tokens", reqrow_known(st, 16));
	json_object_object_add(o, "total_tokens", reqrow_known(st, 17));
	json_object_object_add(o, "cost", json_object_new_double(sqlite3_column_double(st, 18)));
	json_object_object_add(o, "streamed", json_object_new_boolean(sqlite3_column_int(st, 19) != 0));
	json_object_object_add(o, "client_disconnected", json_object_new_boolean(sqlite3_column_int(st, 20) != 0));
	return o;
}
