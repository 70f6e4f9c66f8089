/*
 * Provider import from the YAML file format of shared/seed/providers-example.yaml.
 * libyaml's document API loads the whole file (aliases stay shared nodes, so
 * nothing is expanded); the tree is then walked at a fixed depth:
 *   providers: [ {account, email, api_key, endpoint_url, model_prefix, pool,
 *                 rpm_limit, notes, tpm_limit?, weight?, cost_per_1k?,
 *                 max_tokens_field?, flatten_content?, stream_usage?,
 *                 model_rpm_limits?: {model: rpm}} ]
 *   summary: ... (ignored)
 * Every error names the input line and the field. Applying runs in one write
 * transaction: each entry is matched by account (the provider name) and
 * created, updated or left unchanged, so importing twice changes nothing.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <yaml.h>

#include "db.h"
#include "yamlimport.h"

#define YAML_INPUT_MAX   (4 * 1024 * 1024)	/* largest file accepted, bytes */
#define YAML_ENTRIES_MAX 10000			/* providers per file */
#define YAML_SCALAR_MAX  4096			/* longest single value */

/* The fields an entry may have; the bit marks it seen. */
enum yaml_field {
	YF_ACCOUNT, YF_EMAIL, YF_API_KEY, YF_ENDPOINT, YF_PREFIX, YF_POOL, YF_RPM,
	YF_NOTES, YF_TPM, YF_WEIGHT, YF_COST, YF_MAX_TOKENS_FIELD, YF_FLATTEN,
	YF_STREAM_USAGE, YF_STATUS, YF_MODEL_RPM, YF_COUNT
};

static const char *const yaml_field_names[YF_COUNT] = {
	"account", "email", "api_key", "endpoint_url", "model_prefix", "pool", "rpm_limit",
	"notes", "tpm_limit", "weight", "cost_per_1k", "max_tokens_field", "flatten_content",
	"stream_usage", "status", "model_rpm_limits"
};

/* Fields without a default. */
static const enum yaml_field yaml_required[] = {
	YF_ACCOUNT, YF_API_KEY, YF_ENDPOINT, YF_PREFIX, YF_RPM
};

/* What one entry carried besides the provider fields, and where. */
struct yaml_fields {
	int   line[YF_COUNT];		/* value line per field, 0 = absent */
	char *email;			/* owned */
	char *notes;			/* owned */
	int   compat[3];		/* -1 absent, else 0/1: max_tokens_field, flatten, stream_usage */
	struct json_object *model_rpm;	/* owned: model_rpm_limits as {model: rpm}, NULL = absent */
};

const char *
yamlimport_action_name(enum yaml_action a)
{
	switch (a) {
	case YAML_CREATED:
		return "created";
	case YAML_UPDATED:
		return "updated";
	case YAML_UNCHANGED:
		return "unchanged";
	}
	return "?";
}

static int
yaml_line(const yaml_node_t *n)
{
	return n != NULL ? (int)n->start_mark.line + 1 : 1;
}

/* "line N: field: reason" in e, with e->line and e->field set. */
static int __attribute__((format(printf, 4, 5)))
yaml_fail(struct sc_err *e, int line, const char *field, const char *fmt, ...)
{
	char msg[sizeof(e->msg)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (field != NULL && *field != '\0')
		return sc_err_set(e, field, line, "line %d: %s: %s", line, field, msg);
	return sc_err_set(e, NULL, line, "line %d: %s", line, msg);
}

/* The scalar text of n, or NULL when n is not a scalar. */
static const char *
yaml_scalar(const yaml_node_t *n)
{
	if (n == NULL || n->type != YAML_SCALAR_NODE)
		return NULL;
	return (const char *)n->data.scalar.value;
}

/* Strict integer in [min, max]. */
static int
yaml_parse_int(const char *s, long min, long max, int *out)
{
	char *end;
	long v;

	if (s == NULL || *s == '\0' || *s == ' ' || *s == '+')
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*out = (int)v;
	return 0;
}

/* Strict finite number. */
static int
yaml_parse_double(const char *s, double *out)
{
	char *end;
	double v;

	if (s == NULL || *s == '\0' || *s == ' ')
		return -1;
	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || *end != '\0' || !isfinite(v))
		return -1;
	*out = v;
	return 0;
}

static int
yaml_parse_bool(const char *s, int *out)
{
	static const char *const t[] = { "true", "True", "TRUE", "yes", "Yes", "on", NULL };
	static const char *const f[] = { "false", "False", "FALSE", "no", "No", "off", NULL };

	for (int i = 0; t[i] != NULL; i++)
		if (strcmp(s, t[i]) == 0) {
			*out = 1;
			return 0;
		}
	for (int i = 0; f[i] != NULL; i++)
		if (strcmp(s, f[i]) == 0) {
			*out = 0;
			return 0;
		}
	return -1;
}

/* Build the metadata object text from account, email, notes and compat options. */
static char *
yaml_metadata(const struct provider *p, const struct yaml_fields *f)
{
	static const char *const compat_keys[3] = { "max_tokens_field", "flatten_content", "stream_usage" };
	struct json_object *o = json_object_new_object();
	char *s;

	json_object_object_add(o, "account", json_object_new_string(p->name));
	if (f->email != NULL)
		json_object_object_add(o, "email", json_object_new_string(f->email));
	if (f->notes != NULL)
		json_object_object_add(o, "notes", json_object_new_string(f->notes));
	for (int i = 0; i < 3; i++)
		if (f->compat[i] >= 0)
			json_object_object_add(o, compat_keys[i], json_object_new_boolean(f->compat[i]));
	if (f->model_rpm != NULL)
		json_object_object_add(o, "model_rpm_limits", json_object_get(f->model_rpm));
	s = sc_xstrdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return s;
}

/* model_rpm_limits: a mapping of model name to an integer (checked again,
 * with the range, by provider_parse_compat). */
static int
yaml_model_rpm(yaml_document_t *doc, yaml_node_t *vn, struct yaml_fields *f, struct sc_err *e)
{
	static const char name[] = "model_rpm_limits";
	yaml_node_pair_t *pair;

	if (vn->type != YAML_MAPPING_NODE)
		return yaml_fail(e, yaml_line(vn), name, "must be a mapping of model: requests per window");
	f->model_rpm = json_object_new_object();
	for (pair = vn->data.mapping.pairs.start; pair < vn->data.mapping.pairs.top; pair++) {
		yaml_node_t *mk = yaml_document_get_node(doc, pair->key), *mv = yaml_document_get_node(doc, pair->value);
		const char *model = yaml_scalar(mk), *rpm = yaml_scalar(mv);
		char *end;
		long long n;

		if (model == NULL || *model == '\0' || rpm == NULL)
			return yaml_fail(e, yaml_line(mk), name, "each entry must be model: number");
		errno = 0;
		n = strtoll(rpm, &end, 10);
		if (errno != 0 || end == rpm || *end != '\0' || n < 1 || n > 100000)
			return yaml_fail(e, yaml_line(mv), name, "the limit of a model must be an integer from 1 to 100000");
		json_object_object_add(f->model_rpm, model, json_object_new_int64(n));
	}
	return 0;
}

/* Set one field of the entry from a scalar; error names the field and line. */
static int
yaml_set_field(struct yaml_entry *en, struct yaml_fields *f, enum yaml_field fld, const char *v,
    int line, struct sc_err *e)
{
	struct provider *p = &en->p;
	const char *name = yaml_field_names[fld];
	int b;

	switch (fld) {
	case YF_ACCOUNT:
		if (*v == '\0')
			return yaml_fail(e, line, name, "must not be empty");
		p->name = sc_xstrdup(v);
		break;
	case YF_EMAIL:
		f->email = sc_xstrdup(v);
		break;
	case YF_NOTES:
		f->notes = sc_xstrdup(v);
		break;
	case YF_API_KEY:
		if (*v == '\0')
			return yaml_fail(e, line, name, "must not be empty");
		p->api_key = sc_xstrdup(v);
		break;
	case YF_ENDPOINT:
		p->endpoint_url = sc_xstrdup(v);
		break;
	case YF_PREFIX:
		p->model_prefix = sc_xstrdup(v);
		break;
	case YF_POOL:
		if (provider_pool_parse(v, &p->pool) == -1)
			return yaml_fail(e, line, name, "unknown pool \"%.40s\" (expected main or fallback)", v);
		break;
	case YF_MODEL_RPM:	/* a mapping: yaml_model_rpm */
		break;
	case YF_STATUS:
		/* invalid too: an export says so of a key the upstream refused,
		 * and importing it back must not make it active again. */
		if (provider_status_parse(v, &p->status) == -1)
			return yaml_fail(e, line, name, "must be active, disabled or invalid");
		en->has_status = true;
		break;
	/* Only the syntax here: the ranges are provider_validate's (common/providers.c),
	 * whose message is pointed at this line after the entry is read. */
	case YF_RPM:
		if (yaml_parse_int(v, INT_MIN, INT_MAX, &p->rpm_limit) == -1)
			return yaml_fail(e, line, name, "must be a positive integer");
		break;
	case YF_TPM:
		if (yaml_parse_int(v, INT_MIN, INT_MAX, &p->tpm_limit) == -1)
			return yaml_fail(e, line, name, "must be a non-negative integer (0 = no limit)");
		break;
	case YF_WEIGHT:
		if (yaml_parse_double(v, &p->weight) == -1)
			return yaml_fail(e, line, name, "must be a number greater than 0");
		break;
	case YF_COST:
		if (yaml_parse_double(v, &p->cost_per_1k) == -1)
			return yaml_fail(e, line, name, "must be a non-negative number");
		break;
	case YF_MAX_TOKENS_FIELD:
	case YF_FLATTEN:
	case YF_STREAM_USAGE:
		if (yaml_parse_bool(v, &b) == -1)
			return yaml_fail(e, line, name, "must be true or false");
		f->compat[fld - YF_MAX_TOKENS_FIELD] = b;
		break;
	case YF_COUNT:
		break;
	}
	return 0;
}

/* One entry of the providers list into en. */
static int
yaml_parse_entry(yaml_document_t *doc, yaml_node_t *m, struct yaml_entry *en, struct sc_err *e)
{
	struct yaml_fields f;
	yaml_node_pair_t *pair;
	yaml_node_t *kn, *vn;
	const char *k, *v;
	int fld, ret = -1;

	memset(&f, 0, sizeof(f));
	f.compat[0] = f.compat[1] = f.compat[2] = -1;
	provider_init(&en->p);
	en->line = yaml_line(m);
	if (m->type != YAML_MAPPING_NODE) {
		yaml_fail(e, en->line, "providers", "each entry must be a mapping of fields (account: ..., api_key: ...)");
		goto out;
	}
	for (pair = m->data.mapping.pairs.start; pair < m->data.mapping.pairs.top; pair++) {
		kn = yaml_document_get_node(doc, pair->key);
		vn = yaml_document_get_node(doc, pair->value);
		k = yaml_scalar(kn);
		if (k == NULL) {
			yaml_fail(e, yaml_line(kn), NULL, "field names must be plain words");
			goto out;
		}
		for (fld = 0; fld < YF_COUNT; fld++)
			if (strcmp(k, yaml_field_names[fld]) == 0)
				break;
		if (fld == YF_COUNT) {
			yaml_fail(e, yaml_line(kn), k, "unknown field (allowed: account, email, api_key, "
			    "endpoint_url, model_prefix, pool, status, rpm_limit, notes, tpm_limit, weight, cost_per_1k, "
			    "max_tokens_field, flatten_content, stream_usage, model_rpm_limits)");
			goto out;
		}
		if (f.line[fld] != 0) {
			yaml_fail(e, yaml_line(kn), k, "given twice in one entry");
			goto out;
		}
		f.line[fld] = yaml_line(vn);
		if (fld == YF_MODEL_RPM) {
			if (yaml_model_rpm(doc, vn, &f, e) == -1)
				goto out;
			continue;
		}
		v = yaml_scalar(vn);
		if (v == NULL) {
			yaml_fail(e, yaml_line(vn), k, "must be a single value, not a list or mapping");
			goto out;
		}
		if (vn->data.scalar.length > YAML_SCALAR_MAX || strlen(v) != vn->data.scalar.length) {
			yaml_fail(e, yaml_line(vn), k, "value too long or contains a NUL byte");
			goto out;
		}
		if (yaml_set_field(en, &f, (enum yaml_field)fld, v, yaml_line(vn), e) == -1)
			goto out;
	}
	for (size_t i = 0; i < sizeof(yaml_required) / sizeof(yaml_required[0]); i++)
		if (f.line[yaml_required[i]] == 0) {
			yaml_fail(e, en->line, yaml_field_names[yaml_required[i]], "missing");
			goto out;
		}
	en->p.source = sc_xstrdup("yaml");
	en->p.metadata = yaml_metadata(&en->p, &f);
	if (provider_validate(&en->p, e) == -1 || provider_parse_compat(&en->p, e) == -1) {
		/* Point at the value that failed; e->msg already reads "field: reason". */
		char msg[sizeof(e->msg)];
		int line = en->line;

		for (fld = 0; fld < YF_COUNT; fld++)
			if (strcmp(e->field, yaml_field_names[fld]) == 0 && f.line[fld] != 0)
				line = f.line[fld];
		if (strcmp(e->field, "name") == 0 && f.line[YF_ACCOUNT] != 0) {
			line = f.line[YF_ACCOUNT];
			snprintf(msg, sizeof(msg), "account: %s", e->msg + (strncmp(e->msg, "name: ", 6) ? 0 : 6));
			snprintf(e->field, sizeof(e->field), "account");
		} else
			snprintf(msg, sizeof(msg), "%s", e->msg);
		sc_err_set(e, e->field, line, "line %d: %s", line, msg);
		goto out;
	}
	ret = 0;
out:
	free(f.email);
	free(f.notes);
	json_object_put(f.model_rpm);
	return ret;
}

/* Copies of the input (and of every key) live in libyaml's buffers: wipe them. */
static void
yaml_wipe(yaml_parser_t *parser, yaml_document_t *doc)
{
	if (parser->buffer.start != NULL)
		crypto_wipe(parser->buffer.start, (size_t)(parser->buffer.end - parser->buffer.start));
	if (parser->raw_buffer.start != NULL)
		crypto_wipe(parser->raw_buffer.start,
		    (size_t)(parser->raw_buffer.end - parser->raw_buffer.start));
	if (doc != NULL)
		for (yaml_node_t *n = doc->nodes.start; n != NULL && n < doc->nodes.top; n++)
			if (n->type == YAML_SCALAR_NODE && n->data.scalar.value != NULL)
				crypto_wipe(n->data.scalar.value, n->data.scalar.length);
}

int
yamlimport_parse(const char *buf, size_t len, struct yaml_doc *out, struct sc_err *e)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	yaml_node_t *root, *kn, *vn, *list = NULL, *item;
	yaml_node_pair_t *pair;
	yaml_node_item_t *it;
	const char *k;
	int loaded = 0, ret = -1;
	size_t n;

	out->v = NULL;
	out->n = 0;
	if (len > YAML_INPUT_MAX)
		return sc_err_set(e, NULL, 0, "file larger than %d bytes", YAML_INPUT_MAX);
	{
		/* libyaml also reads UTF-16 and, inside quotes, takes escapes
		 * only: the file itself must be UTF-8 text, checked here so the
		 * error names the line. */
		long bad = sc_utf8_check(buf, len);

		if (bad != -1) {
			int line = 1;

			for (long i = 0; i < bad; i++)
				line += buf[i] == '\n';
			return sc_err_set(e, NULL, line, "line %d: not valid UTF-8 text (%s at byte %ld)", line,
			    buf[bad] == '\0' ? "a NUL byte" : "a malformed sequence", bad);
		}
	}
	if (!yaml_parser_initialize(&parser))
		return sc_err_set(e, NULL, 0, "out of memory");
	yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
	if (!yaml_parser_load(&parser, &doc)) {
		int line = (int)parser.problem_mark.line + 1;

		if (parser.context != NULL)
			sc_err_set(e, NULL, line, "line %d: YAML syntax error: %s %s", line,
			    parser.problem ? parser.problem : "invalid", parser.context);
		else
			sc_err_set(e, NULL, line, "line %d: YAML syntax error: %s", line,
			    parser.problem ? parser.problem : "invalid");
		goto out;
	}
	loaded = 1;
	{
		/* One document per file: a second one would otherwise be dropped
		 * without a word. Its start (the "---" line) is what we name. */
		yaml_document_t next;

		if (!yaml_parser_load(&parser, &next)) {
			int line = (int)parser.problem_mark.line + 1;

			sc_err_set(e, NULL, line, "line %d: YAML syntax error: %s", line,
			    parser.problem ? parser.problem : "invalid");
			goto out;
		}
		if (yaml_document_get_root_node(&next) != NULL) {
			int line = (int)next.start_mark.line + 1;

			yaml_wipe(&parser, &next);
			yaml_document_delete(&next);
			sc_err_set(e, NULL, line, "line %d: a second YAML document starts here; "
			    "a provider file holds one document", line);
			goto out;
		}
		yaml_document_delete(&next);
	}
	root = yaml_document_get_root_node(&doc);
	if (root == NULL) {
		sc_err_set(e, "providers", 1, "line 1: the file is empty (expected \"providers:\" with a list)");
		goto out;
	}
	if (root->type != YAML_MAPPING_NODE) {
		yaml_fail(e, yaml_line(root), NULL, "expected a mapping with a \"providers:\" list at the top");
		goto out;
	}
	for (pair = root->data.mapping.pairs.start; pair < root->data.mapping.pairs.top; pair++) {
		kn = yaml_document_get_node(&doc, pair->key);
		vn = yaml_document_get_node(&doc, pair->value);
		k = yaml_scalar(kn);
		if (k != NULL && strcmp(k, "providers") == 0) {
			if (list != NULL) {
				yaml_fail(e, yaml_line(kn), "providers", "given twice");
				goto out;
			}
			list = vn;
		} else if (k == NULL || strcmp(k, "summary") != 0) {
			yaml_fail(e, yaml_line(kn), k ? k : "?", "unknown top-level key (expected providers, summary)");
			goto out;
		}
	}
	if (list == NULL) {
		yaml_fail(e, yaml_line(root), "providers", "missing");
		goto out;
	}
	if (list->type != YAML_SEQUENCE_NODE) {
		/* An empty "providers:" is an empty scalar. */
		if (list->type == YAML_SCALAR_NODE && list->data.scalar.length == 0) {
			ret = 0;
			goto out;
		}
		yaml_fail(e, yaml_line(list), "providers", "must be a list (each entry starting with \"- account:\")");
		goto out;
	}
	n = (size_t)(list->data.sequence.items.top - list->data.sequence.items.start);
	if (n > YAML_ENTRIES_MAX) {
		yaml_fail(e, yaml_line(list), "providers", "more than %d entries", YAML_ENTRIES_MAX);
		goto out;
	}
	out->v = sc_xcalloc(n ? n : 1, sizeof(*out->v));
	for (it = list->data.sequence.items.start; it < list->data.sequence.items.top; it++) {
		item = yaml_document_get_node(&doc, *it);
		if (yaml_parse_entry(&doc, item, &out->v[out->n], e) == -1) {
			provider_clear(&out->v[out->n].p);
			goto out;
		}
		out->n++;
		for (size_t j = 0; j + 1 < out->n; j++)
			if (strcmp(out->v[j].p.name, out->v[out->n - 1].p.name) == 0) {
				yaml_fail(e, out->v[out->n - 1].line, "account",
				    "duplicate account \"%.64s\" (first at line %d)",
				    out->v[j].p.name, out->v[j].line);
				goto out;
			}
	}
	ret = 0;
out:
	yaml_wipe(&parser, loaded ? &doc : NULL);
	if (loaded)
		yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	if (ret == -1)
		yamlimport_doc_free(out);
	return ret;
}

void
yamlimport_doc_free(struct yaml_doc *d)
{
	if (d == NULL)
		return;
	for (size_t i = 0; i < d->n; i++)
		provider_clear(&d->v[i].p);
	free(d->v);
	d->v = NULL;
	d->n = 0;
}

void
yamlimport_report_free(struct yaml_report *r)
{
	if (r == NULL)
		return;
	free(r->v);
	r->v = NULL;
	r->n = 0;
}

/* The stored metadata with the file's keys laid over it: account, email and
 * notes come from the file (absent = removed); compat options and anything
 * the admin panel added survive unless the file sets them. */
static char *
yaml_merge_metadata(const char *stored, const char *incoming)
{
	static const char *const owned[] = { "account", "email", "notes" };
	struct json_object *o = json_tokener_parse(stored ? stored : "{}");
	struct json_object *in = json_tokener_parse(incoming);
	char *s;

	if (o == NULL || !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		o = json_object_new_object();
	}
	for (size_t i = 0; i < sizeof(owned) / sizeof(owned[0]); i++)
		json_object_object_del(o, owned[i]);
	if (in != NULL && json_object_is_type(in, json_type_object)) {
		json_object_object_foreach(in, key, val)
			json_object_object_add(o, key, json_object_get(val));
	}
	s = sc_xstrdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	json_object_put(in);
	return s;
}

/* Same JSON value, whatever the spacing or key order of the two texts. */
static int
yaml_json_equal(const char *a, const char *b)
{
	struct json_object *x = json_tokener_parse(a ? a : "{}");
	struct json_object *y = json_tokener_parse(b ? b : "{}");
	int eq = x != NULL && y != NULL && json_object_equal(x, y);

	json_object_put(x);
	json_object_put(y);
	return eq;
}

struct yaml_apply {
	const struct crypto_key *k;
	struct yaml_doc         *doc;
	const char              *source;
	struct yaml_report      *rep;
};

static int
yaml_apply_txn(sqlite3 *db, void *arg, struct sc_err *e)
{
	struct yaml_apply *a = arg;
	struct provider cur, upd;
	struct yaml_entry *en;
	enum yaml_action act;
	int rc;

	a->rep->n = 0;	/* a retried transaction starts its report again */
	for (size_t i = 0; i < a->doc->n; i++) {
		en = &a->doc->v[i];
		rc = provider_get(db, a->k, "name", en->p.name, &cur, e);
		if (rc == -1)
			goto entry_fail;
		if (rc == 1) {
			free(en->p.source);
			en->p.source = sc_xstrdup(a->source);
			en->p.id[0] = '\0';
			if (provider_insert(db, a->k, &en->p, e) == -1)
				goto entry_fail;
			act = YAML_CREATED;
		} else {
			/* The file says nothing about status unless it has the field,
			 * so a key disabled in the panel stays disabled. */
			provider_init(&upd);
			memcpy(upd.id, cur.id, sizeof(upd.id));
			upd.name = sc_xstrdup(en->p.name);
			upd.api_key = sc_xstrdup(en->p.api_key);
			upd.endpoint_url = sc_xstrdup(en->p.endpoint_url);
			upd.model_prefix = sc_xstrdup(en->p.model_prefix);
			upd.pool = en->p.pool;
			upd.status = en->has_status ? en->p.status : cur.status;
			upd.status_reason = sc_xstrdup(upd.status == cur.status ? cur.status_reason : "");
			upd.source = sc_xstrdup(cur.source);
			upd.rpm_limit = en->p.rpm_limit;
			upd.tpm_limit = en->p.tpm_limit;
			upd.weight = en->p.weight;
			upd.cost_per_1k = en->p.cost_per_1k;
			upd.metadata = yaml_merge_metadata(cur.metadata, en->p.metadata);
			{
				size_t n = strlen(upd.endpoint_url);

				while (n > 8 && upd.endpoint_url[n - 1] == '/')
					upd.endpoint_url[--n] = '\0';
			}
			if (strcmp(cur.api_key, upd.api_key) == 0 &&
			    strcmp(cur.endpoint_url, upd.endpoint_url) == 0 &&
			    strcmp(cur.model_prefix, upd.model_prefix) == 0 &&
			    cur.pool == upd.pool && cur.status == upd.status && cur.rpm_limit == upd.rpm_limit &&
			    cur.tpm_limit == upd.tpm_limit && cur.weight == upd.weight &&
			    cur.cost_per_1k == upd.cost_per_1k &&
			    yaml_json_equal(cur.metadata, upd.metadata)) {
				act = YAML_UNCHANGED;
			} else {
				/* Rewrite the key only when it changed (no new ciphertext churn). */
				if (strcmp(cur.api_key, upd.api_key) == 0) {
					crypto_free_secret(upd.api_key);
					upd.api_key = NULL;
				}
				if (provider_update(db, a->k, &upd, e) == -1) {
					provider_clear(&upd);
					provider_clear(&cur);
					goto entry_fail;
				}
				act = YAML_UPDATED;
			}
			memcpy(en->p.id, cur.id, sizeof(en->p.id));
			provider_clear(&upd);
			provider_clear(&cur);
		}
		snprintf(a->rep->v[a->rep->n].name, sizeof(a->rep->v[0].name), "%s", en->p.name);
		a->rep->v[a->rep->n].line = en->line;
		a->rep->v[a->rep->n].action = act;
		a->rep->n++;
	}
	return 0;
entry_fail:
	{
		char msg[sizeof(e->msg)];

		snprintf(msg, sizeof(msg), "%s", e->msg);
		if (strncmp(msg, "line ", 5) != 0)
			sc_err_set(e, e->field, en->line, "line %d: %s: %s", en->line, en->p.name, msg);
	}
	return -1;
}

int
yamlimport_apply(sqlite3 *db, const struct crypto_key *k, struct yaml_doc *doc,
    const char *source, struct yaml_report *rep, struct sc_err *e)
{
	struct yaml_apply a;
	int ret;

	rep->n = 0;
	rep->v = sc_xcalloc(doc->n ? doc->n : 1, sizeof(*rep->v));
	a.k = k;
	a.doc = doc;
	a.source = source ? source : "yaml";
	a.rep = rep;
	ret = db_write_txn(db, yaml_apply_txn, &a, e);
	if (ret == -1)
		rep->n = 0;
	return ret;
}
