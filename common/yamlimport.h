/*
 * Provider import from the YAML format of shared/seed/providers-example.yaml:
 *   providers: [ {account, email, api_key, endpoint_url, model_prefix, pool,
 *                 rpm_limit, notes, [tpm_limit, weight, cost_per_1k]} ]
 *   summary: ...   (ignored)
 * The account is the natural key: importing again updates, never duplicates.
 * Parsing is separate from applying so callers can report before writing.
 */
#ifndef SC_YAMLIMPORT_H
#define SC_YAMLIMPORT_H

#include <sqlite3.h>
#include "crypto.h"
#include "providers.h"
#include "util.h"

struct yaml_entry {
	struct provider p;	/* name = account; email/notes go to metadata */
	int line;		/* line of the entry's first key */
	bool has_status;	/* the entry set status (else an update keeps the stored one) */
};

struct yaml_doc {
	struct yaml_entry *v;	/* owned */
	size_t n;
};

enum yaml_action { YAML_CREATED, YAML_UPDATED, YAML_UNCHANGED };

struct yaml_report {
	size_t n;
	struct { char name[128]; int line; enum yaml_action action; } *v;	/* owned */
};

/* Parse and validate everything; -1 with e->line and e->field on the first error. */
int yamlimport_parse(const char *buf, size_t len, struct yaml_doc *out, struct sc_err *e);
/* Create or update every entry in one write transaction (all or nothing). */
int yamlimport_apply(sqlite3 *db, const struct crypto_key *k, struct yaml_doc *doc,
    const char *source, struct yaml_report *rep, struct sc_err *e);
void yamlimport_doc_free(struct yaml_doc *d);
void yamlimport_report_free(struct yaml_report *r);
const char *yamlimport_action_name(enum yaml_action a);

#endif
