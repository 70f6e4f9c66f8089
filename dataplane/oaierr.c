/*
 * OpenAI-shaped error bodies, built and rewritten. Clients (the official SDKs,
 * OpenClaw) only understand {"error":{"message","type","param","code"}}, so
 * errors of our own and upstream errors in other shapes are turned into it;
 * the status code is never changed here. Whatever text is carried over from
 * an upstream passes through the redactor first (common/redact.c, the one the
 * admin programs use too): upstreams have been seen to echo the
 * Authorization header back, and the key without its prefix or in pieces.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>

#include "http.h"
#include "oaierr.h"
#include "redact.h"

#define OAIERR_MSG_MAX   1024		/* bytes of upstream text kept in a message */
#define OAIERR_PARSE_MAX (1024 * 1024)	/* larger upstream bodies are not parsed */

const char *
oaierr_type(int status)
{
	switch (status) {
	case 400: return "invalid_request_error";
	case 401: return "authentication_error";
	case 403: return "permission_error";
	case 404: return "not_found_error";
	case 429: return "rate_limit_error";
	default:
		return status >= 400 && status < 500 ? "invalid_request_error" : "server_error";
	}
}

/* Length of the valid UTF-8 sequence at s[0..len), 0 when invalid. */
static size_t
oaierr_utf8_len(const unsigned char *s, size_t len)
{
	size_t n, k;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (len < n)
		return 0;
	for (k = 1; k < n; k++) {
		if ((s[k] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[k] & 0x3f);
	}
	if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return n;
}

/* Message text for a JSON body: invalid UTF-8 becomes '?', long text is cut
 * at a character boundary, key-like parts are masked. NUL-terminated in out. */
static int
oaierr_clean(const char *msg, size_t len, struct sc_buf *out)
{
	struct sc_buf red;
	size_t i = 0;
	int rc = -1;

	sc_buf_init(&red, OAIERR_MSG_MAX * 2);
	if (len > OAIERR_MSG_MAX)
		len = OAIERR_MSG_MAX;
	if (redact_text(msg, len, NULL, &red) == -1)
		goto out;
	while (i < red.len) {
		size_t n = oaierr_utf8_len((const unsigned char *)red.data + i, red.len - i);

		if (n == 0) {
			if (sc_buf_append(out, "?", 1) == -1)
				goto out;
			i++;
			continue;
		}
		if (sc_buf_append(out, red.data + i, n) == -1)
			goto out;
		i += n;
	}
	if (sc_buf_append(out, "", 0) == -1)
		goto out;
	rc = 0;
out:
	sc_buf_free(&red);
	return rc;
}

/* The OpenAI error body with a message already cleaned. */
static int
oaierr_emit(struct sc_buf *out, const char *type, const char *msg, const char *param, const char *code)
{
	struct json_object *root, *err;
	const char *s;
	int rc;

	root = json_object_new_object();
	err = json_object_new_object();
	json_object_object_add(root, "error", err);
	json_object_object_add(err, "message", json_object_new_string(msg));
	json_object_object_add(err, "type", json_object_new_string(type));
	json_object_object_add(err, "param", param != NULL ? json_object_new_string(param) : NULL);
	json_object_object_add(err, "code", code != NULL ? json_object_new_string(code) : NULL);
	s = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	rc = s != NULL ? sc_buf_append(out, s, strlen(s)) : -1;
	json_object_put(root);
	return rc;
}

int
oaierr_format(struct sc_buf *out, int status, const char *message, const char *param,
    const char *code)
{
	struct sc_buf m;
	int rc = -1;

	sc_buf_init(&m, OAIERR_MSG_MAX * 4);
	if (oaierr_clean(message, strlen(message), &m) == 0)
		rc = oaierr_emit(out, oaierr_type(status), m.len ? m.data : "", param, code);
	sc_buf_free(&m);
	return rc;
}

/* A string member of o, or NULL. */
static const char *
oaierr_str(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (o == NULL || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/* Whether text is short printable ASCII worth quoting (not HTML, not broken JSON). */
static int
oaierr_plain_text(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > 256 || s[0] == '<' || s[0] == '{' || s[0] == '[')
		return 0;
	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 ? !(s[i] == '\n' || s[i] == '\r' || s[i] == '\t') :
		    (unsigned char)s[i] > 0x7e)
			return 0;
	return 1;
}

int
oaierr_rewrite(int status, const char *body, size_t len, const char *key, struct sc_buf *out)
{
	struct json_tokener *tok = NULL;
	struct json_object *root = NULL, *err = NULL;
	struct sc_buf msg;
	const char *m = NULL, *title, *detail, *param = NULL, *code = NULL, *type = NULL;
	size_t b = 0, e = len;
	int rc = -1;

	sc_buf_init(&msg, OAIERR_MSG_MAX * 4);
	while (b < e && (body[b] == ' ' || body[b] == '\t' || body[b] == '\r' || body[b] == '\n'))
		b++;
	while (e > b && (body[e - 1] == ' ' || body[e - 1] == '\t' || body[e - 1] == '\r' || body[e - 1] == '\n'))
		e--;
	if (e > b && e - b <= OAIERR_PARSE_MAX && body[b] == '{' && (tok = json_tokener_new_ex(32)) != NULL) {
		json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
		root = json_tokener_parse_ex(tok, body + b, (int)(e - b));
		if (json_tokener_get_error(tok) != json_tokener_success ||
		    json_tokener_get_parse_end(tok) != e - b || !json_object_is_type(root, json_type_object)) {
			json_object_put(root);
			root = NULL;
		}
		json_tokener_free(tok);
	}
	if (root != NULL && json_object_object_get_ex(root, "error", &err) &&
	    json_object_is_type(err, json_type_object) && (m = oaierr_str(err, "message")) != NULL) {
		/* Already OpenAI-shaped: unchanged unless something must be masked
		 * (in the raw text or, hidden by \u escapes, in the message). */
		if (!redact_needed(body, len, key) && !redact_needed(m, strlen(m), key)) {
			json_object_put(root);
			sc_buf_free(&msg);
			return 0;
		}
		type = oaierr_str(err, "type");
		param = oaierr_str(err, "param");
		code = oaierr_str(err, "code");
	} else if (root != NULL) {
		title = oaierr_str(root, "title");
		detail = oaierr_str(root, "detail");
		if (json_object_is_type(err, json_type_string))
			m = json_object_get_string(err);
		else if ((m = oaierr_str(err, "detail")) != NULL || (m = oaierr_str(root, "message")) != NULL)
			;
		else if (title != NULL && detail != NULL && strcmp(title, detail) != 0)
			sc_buf_printf(&msg, "%s: %s", title, detail);
		else if (title != NULL || detail != NULL)
			m = title != NULL ? title : detail;
		param = oaierr_str(err, "param");
		code = oaierr_str(err, "code");
	} else if (oaierr_plain_text(body + b, e - b)) {
		sc_buf_printf(&msg, "Upstream error %d %s: %.*s", status, http_reason(status),
		    (int)(e - b), body + b);
	}
	if (m != NULL) {
		sc_buf_reset(&msg);
		sc_buf_append(&msg, m, strnlen(m, OAIERR_MSG_MAX));
	}
	if (msg.len == 0)
		sc_buf_printf(&msg, "Upstream error %d %s", status, http_reason(status));
	{
		struct sc_buf clean, red;

		sc_buf_init(&red, OAIERR_MSG_MAX * 4);
		sc_buf_init(&clean, OAIERR_MSG_MAX * 4);
		/* carried-over short fields: dropped when odd, never cleaned into nonsense */
		if (type != NULL && (strlen(type) > 64 || redact_needed(type, strlen(type), key)))
			type = NULL;
		if (param != NULL && (strlen(param) > 256 || redact_needed(param, strlen(param), key)))
			param = NULL;
		if (code != NULL && (strlen(code) > 256 || redact_needed(code, strlen(code), key)))
			code = NULL;
		if (redact_text(msg.data, msg.len, key, &red) != -1 &&
		    oaierr_clean(red.len ? red.data : "", red.len, &clean) == 0)
			rc = oaierr_emit(out, type != NULL ? type : oaierr_type(status),
			    clean.len ? clean.data : "", param, code) == -1 ? -1 : 1;
		sc_buf_free(&red);
		sc_buf_free(&clean);
	}
	json_object_put(root);
	sc_buf_free(&msg);
	return rc;
}

const char *
oaierr_unavail_code(enum oaierr_unavail why)
{
	switch (why) {
	case OAIERR_RATE_LIMITED: return "rate_limited";
	case OAIERR_QUEUE_TIMEOUT: return "queue_timeout";
	case OAIERR_QUEUE_FULL: return "queue_full";
	case OAIERR_DRAINING: return "draining";
	case OAIERR_NO_PROVIDER: return "no_provider";
	case OAIERR_NO_VALID_KEY: return "no_valid_key";
	case OAIERR_AUTH_FAILED: return "upstream_auth_failed";
	case OAIERR_QUOTA: return "upstream_quota";
	}
	return "unavailable";
}

int
oaierr_unavail_from_upstream(int status)
{
	switch (status) {
	case 401:
	case 403: return OAIERR_AUTH_FAILED;
	case 402: return OAIERR_QUOTA;
	case 429: return OAIERR_RATE_LIMITED;
	default: return -1;
	}
}

/* "the next frees in 17 s" or, when nothing is known to free, "retry in 30 s". */
static void
oaierr_wait_text(char *b, size_t n, int wait_s, int wait_known)
{
	snprintf(b, n, wait_known ? "the next frees in %d s" : "retry in %d s", wait_s);
}

/* "all 11 keys of nvidia/", "the key of nvidia/" or "the keys of nvidia/". */
static void
oaierr_keys_text(char *b, size_t n, const char *route, int nkeys)
{
	if (nkeys == 1)
		snprintf(b, n, "the key of %s", route);
	else if (nkeys > 1)
		snprintf(b, n, "all %d keys of %s", nkeys, route);
	else
		snprintf(b, n, "the keys of %s", route);
}

int
oaierr_unavailable(struct sc_buf *out, enum oaierr_unavail why, const char *route, int nkeys,
    int wait_s, int wait_known, int upstream_status)
{
	char msg[512], keys[160], wait[64];
	const char *are = nkeys == 1 ? "is" : "are";

	if (route == NULL || route[0] == '\0')
		route = "this model";
	oaierr_keys_text(keys, sizeof(keys), route, nkeys);
	oaierr_wait_text(wait, sizeof(wait), wait_s, wait_known);
	switch (why) {
	case OAIERR_RATE_LIMITED:
		snprintf(msg, sizeof(msg), "%s %s rate limited; %s", keys, are, wait);
		break;
	case OAIERR_QUEUE_TIMEOUT:
		snprintf(msg, sizeof(msg), "timed out waiting for a key: %s %s rate limited; %s", keys, are, wait);
		break;
	case OAIERR_QUEUE_FULL:
		snprintf(msg, sizeof(msg), "the wait queue is full and %s %s rate limited; %s", keys, are, wait);
		break;
	case OAIERR_DRAINING:
		snprintf(msg, sizeof(msg), "the sidecar is shutting down; retry in %d s", wait_s);
		break;
	case OAIERR_NO_PROVIDER:
		snprintf(msg, sizeof(msg), "no provider can serve %s now; %s", route, wait);
		break;
	case OAIERR_NO_VALID_KEY:
		snprintf(msg, sizeof(msg), "no valid key for %s: every key is invalid or disabled "
		    "(the operator must replace them); retry in %d s", route, wait_s);
		break;
	case OAIERR_AUTH_FAILED:
		snprintf(msg, sizeof(msg), "the upstream rejected %s (HTTP %d); the operator must replace "
		    "them; retry in %d s", keys, upstream_status, wait_s);
		break;
	case OAIERR_QUOTA:
		snprintf(msg, sizeof(msg), "the upstream refused %s for quota or billing (HTTP %d); "
		    "retry in %d s", keys, upstream_status, wait_s);
		break;
	}
	return oaierr_format(out, 503, msg, NULL, oaierr_unavail_code(why));
}
