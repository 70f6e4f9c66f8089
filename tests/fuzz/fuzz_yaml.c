/*
 * libFuzzer harness for provider import (common/yamlimport.c): any bytes go
 * through yamlimport_parse, which must either fail with a line number or
 * return entries that satisfy the import contract (a name, a key, an
 * endpoint, a prefix, rpm_limit > 0, weight > 0, cost >= 0, all text valid
 * UTF-8 without NUL). Accepted
 * documents are then applied to an in-memory database (encrypting each key)
 * and the providers table emptied again, so the write path and its
 * validation see fuzzed values too. Nothing leaves the process.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "db.h"
#include "yamlimport.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_KEY_B64 "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

static sqlite3 *fuzz_db;		/* in-memory database, for the life of the process */
static struct crypto_key fuzz_key;

/* Open the in-memory database once; abort if the harness cannot be set up. */
static void
fuzz_setup(void)
{
	struct sc_err e;

	if (fuzz_db != NULL)
		return;
	memset(&e, 0, sizeof(e));
	fuzz_db = db_open(":memory:", DB_OPEN_CREATE, &e);
	if (fuzz_db == NULL || db_migrate(fuzz_db, &e) == -1 ||
	    crypto_key_from_base64(FUZZ_KEY_B64, &fuzz_key, &e) == -1 ||
	    crypto_check_db(fuzz_db, &fuzz_key, &e) == -1)
		abort();
}

/* The contract of a successfully parsed entry. */
static void
fuzz_check_entry(const struct yaml_entry *y)
{
	const struct provider *p = &y->p;

	if (y->line < 1)
		abort();
	if (p->name == NULL || *p->name == '\0' || p->api_key == NULL || *p->api_key == '\0' ||
	    p->endpoint_url == NULL || *p->endpoint_url == '\0' || p->model_prefix == NULL)
		abort();
	if (p->rpm_limit <= 0 || p->tpm_limit < 0 || !(p->weight > 0) || !(p->cost_per_1k >= 0))
		abort();
	if (p->metadata != NULL && p->metadata[0] != '{')
		abort();
	/* Every text field is valid UTF-8 without NUL (issue 14). */
	if (!sc_utf8_valid(p->name, strlen(p->name)) || !sc_utf8_valid(p->endpoint_url, strlen(p->endpoint_url)) ||
	    !sc_utf8_valid(p->model_prefix, strlen(p->model_prefix)) ||
	    (p->metadata != NULL && !sc_utf8_valid(p->metadata, strlen(p->metadata))))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct yaml_doc doc = { NULL, 0 };
	struct yaml_report rep = { 0, NULL };
	struct sc_err e;

	fuzz_setup();
	memset(&e, 0, sizeof(e));
	if (yamlimport_parse((const char *)data, size, &doc, &e) == -1) {
		/* A refusal always says where. */
		if (e.msg[0] == '\0' || doc.n != 0)
			abort();
		return 0;
	}
	for (size_t i = 0; i < doc.n; i++)
		fuzz_check_entry(&doc.v[i]);
	memset(&e, 0, sizeof(e));
	if (yamlimport_apply(fuzz_db, &fuzz_key, &doc, "yaml", &rep, &e) == 0 && rep.n != doc.n)
		abort();
	yamlimport_report_free(&rep);
	yamlimport_doc_free(&doc);
	if (db_exec(fuzz_db, "DELETE FROM providers", &e) == -1)
		abort();
	return 0;
}
