/*
 * The model list. A "source" is one (endpoint_url, model_prefix) pair: every
 * key of the same account type sees the same models, so one fetch per source
 * is enough. A source keeps the ids of its last successful fetch; a failed
 * fetch keeps the previous ids and is retried after the cache time, so a
 * flaky upstream neither empties the list nor gets hammered. Waiting clients
 * are a linked list; one that disconnects unlinks itself through its conn
 * abort hook.
 */
#define _GNU_SOURCE

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "conn.h"
#include "log.h"
#include "loop.h"
#include "models.h"
#include "oaierr.h"
#include "registry.h"
#include "dispatch.h"
#include "upstream.h"

#define MODELS_BODY_CAP (4 * 1024 * 1024)	/* an upstream /models answer */
#define MODELS_MAX_IDS  4096			/* per source */

struct models_src {
	char                 *endpoint;		/* owned */
	char                 *prefix;		/* owned */
	char                **ids;		/* owned array of owned strings */
	size_t                nids;
	int64_t               fetched_ms;	/* last fetch end (monotonic), 0 = never */
	struct upstream_xfer *xfer;		/* running fetch */
	struct sc_buf         buf;		/* owned: the answer being read */
	int                   seen;		/* in the registry at the last scan */
	struct models_src    *next;
};

struct models_wait {
	struct conn *conn;
	char         rid[129];
	TAILQ_ENTRY(models_wait) link;
};
TAILQ_HEAD(models_waits, models_wait);

static struct models_src   *msrc;
static struct models_waits  mwait = TAILQ_HEAD_INITIALIZER(mwait);
static size_t              mpending;	/* fetches running */
static struct loop        *mloop;

static void models_answer_all(void);

void
models_init(struct loop *l)
{
	mloop = l;
}

static void
models_src_free(struct models_src *s)
{
	size_t i;

	if (s->xfer != NULL) {
		upstream_cancel(s->xfer);
		mpending--;
	}
	for (i = 0; i < s->nids; i++)
		free(s->ids[i]);
	free(s->ids);
	free(s->endpoint);
	free(s->prefix);
	sc_buf_free(&s->buf);
	free(s);
}

void
models_shutdown(void)
{
	while (msrc != NULL) {
		struct models_src *n = msrc->next;
		models_src_free(msrc);
		msrc = n;
	}
}

/* Keep the ids of an OpenAI list answer {"data":[{"id":...},...]}. */
static void
models_parse(struct models_src *s)
{
	struct json_object *root, *data, *id;
	size_t i, n;

	root = json_tokener_parse(s->buf.data ? s->buf.data : "");
	if (root == NULL || !json_object_object_get_ex(root, "data", &data) ||
	    !json_object_is_type(data, json_type_array)) {
		log_warn("models: %s answered something that is not a model list", s->endpoint);
		json_object_put(root);
		return;
	}
	for (i = 0; i < s->nids; i++)
		free(s->ids[i]);
	free(s->ids);
	n = json_object_array_length(data);
	if (n > MODELS_MAX_IDS)
		n = MODELS_MAX_IDS;
	s->ids = sc_xcalloc(n + 1, sizeof(*s->ids));
	s->nids = 0;
	for (i = 0; i < n; i++) {
		struct json_object *m = json_object_array_get_idx(data, i);
		if (json_object_object_get_ex(m, "id", &id) && json_object_is_type(id, json_type_string))
			s->ids[s->nids++] = sc_xstrdup(json_object_get_string(id));
	}
	json_object_put(root);
}

static int
models_on_head(void *arg, struct upstream_xfer *x)
{
	return 0;
}

static size_t
models_on_data(void *arg, const char *p, size_t n)
{
	struct models_src *s = arg;

	return sc_buf_append(&s->buf, p, n) == 0 ? n : 0;
}

static void
models_on_done(void *arg, struct upstream_xfer *x, enum upstream_result r)
{
	struct models_src *s = arg;

	s->xfer = NULL;
	mpending--;
	s->fetched_ms = sc_now_ms();
	if (r == UPSTREAM_OK && upstream_status(x) == 200)
		models_parse(s);
	else
		log_warn("models: fetching %s/models failed (%s, status %d)", s->endpoint,
		    r == UPSTREAM_OK ? "answered" : upstream_error(x), upstream_status(x));
	sc_buf_free(&s->buf);
	if (mpending == 0)
		models_answer_all();
}

static const struct upstream_ops models_ops = { models_on_head, models_on_data, models_on_done };

static void
models_fetch(struct models_src *s, const struct reg_provider *p)
{
	const struct config *cfg = registry_config();
	struct upstream_req rq;
	struct upstream_hdrs h;
	char url[2048];

	upstream_hdrs_init(&h);
	if (upstream_hdrs_bearer(&h, p->p.api_key) == -1 || upstream_hdrs_add(&h, "Accept: application/json") == -1) {
		upstream_hdrs_free(&h);
		return;
	}
	snprintf(url, sizeof(url), "%s/models", s->endpoint);
	memset(&rq, 0, sizeof(rq));
	rq.url = url;
	rq.headers = &h;
	rq.connect_timeout_ms = (long)cfg->upstream_connect_timeout * 1000;
	rq.ttfb_timeout_ms = (long)cfg->upstream_ttfb_timeout * 1000;
	sc_buf_init(&s->buf, MODELS_BODY_CAP);
	s->xfer = upstream_start(&rq, &models_ops, s);
	if (s->xfer != NULL)
		mpending++;
}

/* Match sources to the registry; start fetches for stale ones. */
static void
models_refresh(void)
{
	const struct config *cfg = registry_config();
	int64_t now = sc_now_ms();
	struct models_src *s, **pp;
	size_t i;

	for (s = msrc; s != NULL; s = s->next)
		s->seen = 0;
	for (i = 0; i < registry_count(); i++) {
		struct reg_provider *p = registry_at(i);
		if (!dispatch_rt_can_fetch(p))
			continue;
		for (s = msrc; s != NULL; s = s->next)
			if (strcmp(s->endpoint, p->p.endpoint_url) == 0 && strcmp(s->prefix, p->p.model_prefix) == 0)
				break;
		if (s == NULL) {
			s = sc_xcalloc(1, sizeof(*s));
			s->endpoint = sc_xstrdup(p->p.endpoint_url);
			s->prefix = sc_xstrdup(p->p.model_prefix);
			sc_buf_init(&s->buf, 0);
			s->next = msrc;
			msrc = s;
		}
		if (s->seen)
			continue;
		s->seen = 1;
		if (s->xfer == NULL &&
		    (s->fetched_ms == 0 || now - s->fetched_ms >= (int64_t)cfg->models_cache_seconds * 1000))
			models_fetch(s, p);
	}
	for (pp = &msrc; *pp != NULL;) {
		s = *pp;
		if (!s->seen) {
			*pp = s->next;
			models_src_free(s);
		} else {
			pp = &s->next;
		}
	}
}

/* The list answer, ids prefixed and without duplicates. */
static void
models_answer(struct conn *c, const char *rid)
{
	struct json_object *root = json_object_new_object(), *data = json_object_new_array(),
	    *seen = json_object_new_object();
	struct models_src *s;
	const char *txt;
	char h[256], id[1024];
	size_t i, len;

	for (s = msrc; s != NULL; s = s->next) {
		for (i = 0; i < s->nids; i++) {
			struct json_object *m;
			snprintf(id, sizeof(id), "%s%s", s->prefix, s->ids[i]);
			if (json_object_object_get_ex(seen, id, NULL))
				continue;
			json_object_object_add(seen, id, NULL);
			m = json_object_new_object();
			json_object_object_add(m, "id", json_object_new_string(id));
			json_object_object_add(m, "object", json_object_new_string("model"));
			json_object_object_add(m, "created", json_object_new_int(0));
			json_object_object_add(m, "owned_by", json_object_new_string("sidecar"));
			json_object_array_add(data, m);
		}
	}
	json_object_object_add(root, "object", json_object_new_string("list"));
	json_object_object_add(root, "data", data);
	txt = json_object_to_json_string_length(root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	snprintf(h, sizeof(h), "X-Request-Id: %s\r\n", rid);
	conn_respond(c, 200, h, "application/json", txt, len);
	json_object_put(root);
	json_object_put(seen);
}

static void
models_wait_abort(void *arg)
{
	struct models_wait *w = arg;

	TAILQ_REMOVE(&mwait, w, link);
	free(w);
}

static const struct conn_hooks models_hooks = { models_wait_abort, NULL };

static void
models_answer_all(void)
{
	struct models_wait *w;

	while ((w = TAILQ_FIRST(&mwait)) != NULL) {
		TAILQ_REMOVE(&mwait, w, link);
		models_answer(w->conn, w->rid);
		free(w);
	}
}

void
models_handle(struct conn *c, const char *rid)
{
	struct models_wait *w;

	models_refresh();
	if (mpending == 0) {
		models_answer_all();	/* waiters of a fetch the refresh dropped */
		models_answer(c, rid);
		return;
	}
	w = sc_xcalloc(1, sizeof(*w));
	w->conn = c;
	snprintf(w->rid, sizeof(w->rid), "%s", rid);
	TAILQ_INSERT_HEAD(&mwait, w, link);
	conn_attach(c, &models_hooks, w);
}
