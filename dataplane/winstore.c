/*
 * Window records (winstore.h). A record:
 *   {"v":1,"ahead":N,"eff":E,"bad":B,"starts":[unix ms, ...],
 *    "models":{"<model>":{"eff":E,"bad":B,"starts":[...]}, ...}}
 * Only starts inside the window are written; eff/bad are the learned limit
 * (0 = none). A record that does not parse is ignored: the windows start
 * empty, as before this store existed.
 */
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "winstore.h"

#define WS_MAX_STARTS RATELIMIT_MAX_LIMIT

static void
ws_put_window(struct json_object *o, const struct ratelimit *rl, const struct sched_learn *l, int64_t now,
    int64_t wall_ms)
{
	struct json_object *a = json_object_new_array();
	int used = ratelimit_used(rl, now);

	/* The newest `used` kept starts are the ones inside the window. */
	for (int i = rl->count - used; i < rl->count; i++) {
		int64_t t = rl->ring[(rl->head + i) % rl->limit];
		json_object_array_add(a, json_object_new_int64(wall_ms - (now - t)));
	}
	json_object_object_add(o, "eff", json_object_new_int(l->eff));
	json_object_object_add(o, "bad", json_object_new_int(l->bad));
	json_object_object_add(o, "starts", a);
}

char *
winstore_encode(const struct sched_provider *p, int64_t now, int64_t wall_ms, int ahead)
{
	struct json_object *o = json_object_new_object(), *models = json_object_new_object();
	char *s;

	json_object_object_add(o, "v", json_object_new_int(1));
	json_object_object_add(o, "ahead", json_object_new_int(ahead));
	ws_put_window(o, &p->rl, &p->learn, now, wall_ms);
	for (size_t i = 0; i < p->nmodels; i++) {
		struct json_object *m = json_object_new_object();
		ws_put_window(m, &p->models[i].rl, &p->models[i].learn, now, wall_ms);
		json_object_object_add(models, p->models[i].model, m);
	}
	json_object_object_add(o, "models", models);
	s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	if (s == NULL)
		abort();
	return s;
}

static int
ws_int(struct json_object *o, const char *k, int lo, int hi)
{
	struct json_object *v;
	int64_t x;

	if (!json_object_object_get_ex(o, k, &v) || !json_object_is_type(v, json_type_int))
		return lo;
	x = json_object_get_int64(v);
	return x < lo ? lo : x > hi ? hi : (int)x;
}

/* One window of a record into rl/l: its starts (monotonic), `ahead` more at
 * now, its learned limit. */
static void
ws_get_window(struct json_object *o, struct ratelimit *rl, struct sched_learn *l, int limit, int ahead,
    int64_t now, int64_t wall_ms)
{
	struct json_object *a;
	int64_t *t;
	size_t n = 0, i, len;

	if (json_object_object_get_ex(o, "starts", &a) && json_object_is_type(a, json_type_array)) {
		len = json_object_array_length(a);
		if (len > WS_MAX_STARTS)
			len = WS_MAX_STARTS;
		t = calloc(len + (size_t)ahead + 1, sizeof(*t));
		if (t == NULL)
			abort();
		for (i = 0; i < len; i++) {
			struct json_object *v = json_object_array_get_idx(a, i);
			int64_t w = json_object_get_int64(v), m = now - (wall_ms - w);

			/* A clock set back must not make a start look newer than now. */
			if (json_object_is_type(v, json_type_int) && m > now - rl->span_ms)
				t[n++] = m < now ? m : now;
		}
	} else {
		t = calloc((size_t)ahead + 1, sizeof(*t));
		if (t == NULL)
			abort();
	}
	for (i = 0; i < (size_t)ahead; i++)
		t[n++] = now;
	ratelimit_restore(rl, t, (int)n);
	free(t);
	l->eff = ws_int(o, "eff", 0, limit);
	if (l->eff >= limit)
		l->eff = 0;
	l->bad = ws_int(o, "bad", 0, limit + 1);
	l->clean = 0;
	l->mark_ms = now;	/* the next clean window starts now */
}

int
winstore_restore(struct sched_provider *p, const char *json, int64_t now, int64_t wall_ms)
{
	struct json_object *o = json != NULL ? json_tokener_parse(json) : NULL, *models, *m;
	int ahead;

	if (o == NULL || !json_object_is_type(o, json_type_object) || ws_int(o, "v", 0, 1000) != 1) {
		json_object_put(o);
		return -1;
	}
	ahead = ws_int(o, "ahead", 0, RATELIMIT_MAX_LIMIT);
	ws_get_window(o, &p->rl, &p->learn, p->cfg->rpm_limit, ahead, now, wall_ms);
	json_object_object_get_ex(o, "models", &models);
	for (size_t i = 0; i < p->nmodels; i++) {
		struct sched_model *sm = &p->models[i];

		if (models != NULL && json_object_object_get_ex(models, sm->model, &m) &&
		    json_object_is_type(m, json_type_object))
			ws_get_window(m, &sm->rl, &sm->learn, sm->limit, ahead, now, wall_ms);
		else if (ahead > 0) {
			struct json_object *e = json_object_new_object();	/* no record: only the assumed starts */
			ws_get_window(e, &sm->rl, &sm->learn, sm->limit, ahead, now, wall_ms);
			json_object_put(e);
		}
	}
	json_object_put(o);
	return 0;
}

int
winstore_ahead(const struct sched_provider *p)
{
	int lim = p->cfg->rpm_limit;

	for (size_t i = 0; i < p->nmodels; i++)
		if (p->models[i].limit < lim)
			lim = p->models[i].limit;
	return lim / 10 > 1 ? lim / 10 : 1;
}
