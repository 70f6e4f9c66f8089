/*
 * Upstream transfers: libcurl's multi interface driven from our poll loop
 * (curl_multi_socket_action with socket and timer callbacks, as in curl's
 * docs/examples/ephiperfifo.c). One easy handle per attempt; connections are
 * reused through the multi handle's cache. HTTP/1.1 only: pausing a transfer
 * is well understood there, and a paused HTTP/2 stream would hold up the
 * others on the same connection.
 */
#ifndef SC_UPSTREAM_H
#define SC_UPSTREAM_H

#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>

struct loop;
struct upstream_xfer;

enum upstream_result {
	UPSTREAM_OK,		/* a complete HTTP response (any status) */
	UPSTREAM_ECONNECT,	/* could not connect / resolve / connect timeout */
	UPSTREAM_ETTFB,		/* no first byte within the first-byte timeout */
	UPSTREAM_EIO,		/* broken transfer (reset, malformed, closed early) */
	UPSTREAM_EABORT,	/* our own callback asked to stop */
};

/* Returned by on_data to pause: the same bytes are delivered again on resume. */
#define UPSTREAM_PAUSE CURL_WRITEFUNC_PAUSE

struct upstream_ops {
	/* The final response head is in (status, headers). Return 0 to go on, -1 to abort. */
	int    (*on_head)(void *arg, struct upstream_xfer *x);
	/* Body bytes: return n when taken, UPSTREAM_PAUSE to pause, anything else aborts.
	 * Must not cancel or free the transfer. */
	size_t (*on_data)(void *arg, const char *p, size_t n);
	/* The transfer ended; x is freed right after this returns. */
	void   (*on_done)(void *arg, struct upstream_xfer *x, enum upstream_result r);
};

/* The request header lines of one transfer, built before upstream_start:
 * the text in one buffer, and the list nodes curl walks in one array that
 * upstream_start builds over it (not two allocations per line, as
 * curl_slist_append makes; up to UPSTREAM_HDRS_INLINE lines the array is
 * in the struct itself). It carries the provider key, so the text is wiped
 * when freed. */
#define UPSTREAM_HDRS_INLINE 12
struct upstream_hdrs {
	struct sc_buf      text;	/* owned: the lines, each "Name: value\0" */
	size_t             n;		/* lines in text */
	struct curl_slist *nodes;	/* n nodes into text, set by upstream_start: node_buf
					 * or owned */
	struct curl_slist  node_buf[UPSTREAM_HDRS_INLINE];
};
void upstream_hdrs_init(struct upstream_hdrs *h);
/* Room for size bytes of lines (their NULs included) at once, when the
 * caller knows what it will add: no growing on the way. */
void upstream_hdrs_presize(struct upstream_hdrs *h, size_t size);
/* Add one line ("Name: value", or "Name:" to suppress one of curl's own);
 * 0, or -1 past the cap (UPSTREAM_HDRS_CAP bytes in all). */
#define UPSTREAM_HDRS_CAP (128 * 1024)
int  upstream_hdrs_add(struct upstream_hdrs *h, const char *line);
/* Add the n lines that fill lines[0..len), each NUL-terminated as in the
 * text; 0, or -1 past the cap. */
int  upstream_hdrs_add_lines(struct upstream_hdrs *h, const char *lines, size_t len, size_t n);
/* Room for one line of len bytes (its NUL included) for the caller to
 * write; NULL past the cap. */
char *upstream_hdrs_line(struct upstream_hdrs *h, size_t len);
/* The size of the line upstream_hdrs_bearer adds for a key of klen bytes,
 * its NUL included. */
#define UPSTREAM_BEARER_SIZE(klen) (sizeof("Authorization: Bearer ") + (klen))
/* Add "Authorization: Bearer <key>" (the one place the provider key becomes
 * a header); 0 or -1 as above. */
int  upstream_hdrs_bearer(struct upstream_hdrs *h, const char *key);
void upstream_hdrs_free(struct upstream_hdrs *h);

struct upstream_req {
	const char           *url;
	int                   post;		/* POST body, else GET */
	const char           *body;		/* borrowed; must live until done or cancel */
	size_t                body_len;
	struct upstream_hdrs *headers;		/* its contents move to the transfer
						 * (*headers is left empty); NULL = none */
	long                  connect_timeout_ms;
	long                  ttfb_timeout_ms;	/* 0 = none */
	int                   stream;		/* a stream is expected: a small receive buffer */
};

/* Set up the multi handle on loop l; the idle-connection cache holds up to
 * max_connections (at least 512) upstream connections; ca_file, when not
 * NULL, is the CA bundle TLS upstreams are verified against instead of the
 * system's (a private CA). 0 or -1. */
int  upstream_init(struct loop *l, long max_connections, const char *ca_file);
void upstream_shutdown(void);

/* Start a transfer; NULL on failure (bad URL...). */
struct upstream_xfer *upstream_start(const struct upstream_req *rq, const struct upstream_ops *ops, void *arg);
/* Stop and free now, without callbacks (client went away). */
void upstream_cancel(struct upstream_xfer *x);
/* Resume a transfer paused by on_data. */
void upstream_resume(struct upstream_xfer *x);

int         upstream_status(const struct upstream_xfer *x);
/* Whether curl has sent the whole request body: from then on it never reads
 * the borrowed body again (no redirects are followed), so it may be freed
 * before the transfer ends. */
int         upstream_body_sent(const struct upstream_xfer *x);
/* Response header values, "" / -1 when absent (the length also -1 when a
 * Transfer-Encoding frames the body). */
const char *upstream_content_type(const struct upstream_xfer *x);
int64_t     upstream_content_length(const struct upstream_xfer *x);
/* Retry-After in seconds (http_retry_after: a number or an HTTP-date, capped
 * at a day), -1 when absent or neither. */
int         upstream_retry_after(const struct upstream_xfer *x);
/* curl's error text for a failed transfer (no secrets: no URL userinfo, no headers). */
const char *upstream_error(const struct upstream_xfer *x);

#endif
