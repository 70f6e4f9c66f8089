/*
 * GET /v1/models: the union of the providers' upstream model lists, each id
 * carrying its provider's prefix. Lists are fetched per (endpoint, prefix)
 * with one of its providers' keys and cached for models_cache_seconds;
 * requests that arrive while a fetch runs wait for it.
 */
#ifndef SC_MODELS_H
#define SC_MODELS_H

struct conn;
struct loop;

void models_init(struct loop *l);
void models_shutdown(void);
/* Answer (now or when the fetches end) on c. */
void models_handle(struct conn *c, const char *rid);

#endif
