/*
 * Client connections of the data plane's HTTP/1.1 server: accept, read and
 * frame requests (with dataplane/http.h), hand each complete request to the
 * listener's handler, and write the response it produces, streamed or whole.
 * One request at a time per connection: pipelined requests wait in the input
 * buffer until the current response is finished.
 */
#ifndef SC_CONN_H
#define SC_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "http.h"
#include "util.h"

struct loop;
struct conn;

/* Called with a complete request. req's slices and *body stay valid until the
 * response ends; the handler may take body's storage (move it out and
 * sc_buf_init the original). It must eventually call conn_response_end or
 * conn_response_abort (possibly at once). */
typedef void (*conn_handler_fn)(struct conn *c, const struct http_request *req, struct sc_buf *body);

/* How the connection reaches the request's owner while a request is in progress. */
struct conn_hooks {
	void (*abort)(void *arg);	/* client went away: drop everything, never touch c again */
	void (*drain)(void *arg);	/* output fell below the low-water mark */
};

/* Output buffer: above CONN_OUT_CAP producers should pause; the drain hook
 * fires when it falls to CONN_OUT_LOW. */
#define CONN_OUT_CAP (256 * 1024)
#define CONN_OUT_LOW (64 * 1024)

/* Limits, read at each accept / request (the caller keeps them current). */
struct conn_limits {
	int64_t max_body_bytes;
	int64_t max_body_memory;	/* all request bodies held at once, bytes (503 beyond) */
	int     header_timeout_ms;	/* for the head; also the longest pause inside a body */
	int     body_timeout_ms;	/* a body's deadline before the rate credit below */
	int64_t body_min_rate;		/* bytes/s of body that each extend the deadline by 1 s */
	int     max_connections;
	int     max_pending;		/* untrusted connections receiving a request (oldest closed beyond) */
};

/* Called with a parsed head, before any of its body is read. 1: read the
 * body, then call the handler. 0: it answered (conn_respond), and the
 * connection closes without reading the body. */
typedef int (*conn_admit_fn)(struct conn *c, const struct http_request *req);

/* Bind a listening socket on "ADDR:PORT" (port 0 = ephemeral). Returns the fd,
 * *port_out the bound port, or -1 with e filled. The accept queue holds
 * backlog connections (at least 1024, at most net.core.somaxconn). */
int  conn_listen(const char *addr, int backlog, int *port_out, struct sc_err *e);
/* Accept on lfd, admit each request head (admit may be NULL: all are) and
 * dispatch complete requests to fn. */
int  conn_serve(struct loop *l, int lfd, conn_admit_fn admit, conn_handler_fn fn, const struct conn_limits *lim);
/* Graceful stop: close the listeners, close idle connections, and close the
 * others once their current response ends. */
void conn_drain_all(void);
size_t conn_count(void);
/* Bytes allocated for the connections' input and output buffers (metrics). */
size_t conn_buffer_bytes(void);

/* For handlers. */
void conn_attach(struct conn *c, const struct conn_hooks *h, void *arg);
/* Start the response. hdrs: extra header lines, each ending in CRLF (may be
 * NULL). content_length -1 means streamed: chunked for HTTP/1.1,
 * close-delimited for HTTP/1.0. */
void conn_response_head(struct conn *c, int status, const char *hdrs, size_t hlen, int64_t content_length);
void conn_response_body(struct conn *c, const void *p, size_t n);
/* The response is complete; the request is finished (hooks detached). */
void conn_response_end(struct conn *c);
/* The response cannot be completed: close once what is queued is sent. */
void conn_response_abort(struct conn *c);
/* A whole response in one call (head + body + end). */
void conn_respond(struct conn *c, int status, const char *hdrs, const char *ctype, const char *body, size_t len);
/* A whole error response made by the sidecar, OpenAI-shaped (oaierr.h):
 * with X-Request-Id when rid is not NULL and extra header lines (each ending
 * in CRLF, may be NULL). code may be NULL (JSON null). */
void conn_respond_error(struct conn *c, int status, const char *rid, const char *msg, const char *code,
    const char *extra_hdrs);
size_t conn_out_pending(const struct conn *c);
/* Between conn_batch_begin and conn_batch_end (nestable) conn_response_body
 * only queues; the end writes each connection touched once. The upstream
 * wraps curl_multi_socket_action in it: curl hands over an SSE stream one
 * HTTP chunk (one event) at a time, and a write per event costs a syscall
 * and a TCP segment each. */
void conn_batch_begin(void);
void conn_batch_end(void);
/* A request on c presented a valid client token: c stops counting as
 * pending (see conn.c) for the rest of its life. */
void   conn_set_trusted(struct conn *c);
/* Who the current request's client token says the client is (its label,
 * for the request log): set by the admit function, read by the handler;
 * "" until set. The label is copied (cut at CONN_CLIENT_MAX bytes). */
#define CONN_CLIENT_MAX 128
void   conn_set_client(struct conn *c, const char *label);
const char *conn_client(const struct conn *c);

#endif
