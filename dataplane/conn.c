/*
 * Client connections. Each connection is a small state machine:
 *
 *   READ_HEAD → READ_BODY → HANDLE → RESPOND → (READ_HEAD | CLOSING) → CLOSED
 *
 * changed only by conn_set_state, torn down only by conn_free. (The admit
 * function runs in HANDLE, so that a refusal can answer; an admitted head
 * goes on to READ_BODY, or to the handler when its body is already read.) The input
 * buffer keeps the current request head in place (the parser's slices point
 * into it) until the handler has returned; bytes of a pipelined next request
 * wait in it and the socket is not read until the response is finished (only
 * POLLRDHUP is watched, so a client that goes away is still noticed and its
 * upstream transfer cancelled). A Content-Length body is read straight into a
 * buffer of its final size; a chunked body goes through http_chunked_decode.
 *
 * Memory follows what a connection holds, so that thousands of streams that
 * wait for their next event cost little (docs/performance.md): the input and
 * the output buffer exist only while they hold bytes (blocks of CONN_BLK
 * times a power of two, taken from and given back to free lists of each
 * size, so that a fast stream reuses a block per write instead of calling
 * malloc), and the parsed head (struct http_request, 3 KiB
 * with its header table) is the parser's one scratch copy unless the body
 * has to be read first (then the connection keeps a copy until the handler
 * returns).
 *
 * Output goes to one buffer per connection that is written as soon as data
 * arrives; producers pause above CONN_OUT_CAP and are woken (drain hook) below
 * CONN_OUT_LOW, which bounds memory per slow client. Errors found while a
 * producer's callback is on the stack only mark the connection; the teardown
 * runs from the connection's own timer, so no callback frees what its caller
 * still uses. Closing after an error response lingers: shut down the write
 * side, then discard input for a moment so the client reads the response
 * instead of a reset.
 *
 * Clients that have not shown a client token must not be able to hold the
 * server (docs/security.md says what holds):
 * - each head goes to the listener's admit function before any body byte is
 *   read, so authentication and routing are decided on the headers; a
 *   refusal closes the connection unread, and "100 Continue" is sent only
 *   for an admitted request;
 * - a body must arrive within body_timeout_ms plus one second per
 *   body_min_rate bytes received (besides the idle timeout between reads);
 * - all bodies held at once (received or being received, until their
 *   response ends) stay under max_body_memory: a new body past it is 503;
 * - a connection receiving a request (or lingering after its last answer)
 *   without having shown a valid token is "pending"; past max_pending of
 *   them, or at max_connections, the oldest pending one is closed to make
 *   room once it has had CONN_PENDING_GRACE to send (until then max_pending
 *   may be exceeded, never max_connections), so pending clients can never
 *   lock out the trusted ones or those with a request in progress.
 */
#define _GNU_SOURCE

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sanitizer/asan_interface.h>	/* no-ops without ASan */
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"
#include "loop.h"
#include "oaierr.h"

enum conn_state {
	CONN_READ_HEAD,		/* waiting for (the rest of) a request head */
	CONN_READ_BODY,		/* head parsed, reading the body */
	CONN_HANDLE,		/* request handed to the handler, no response yet */
	CONN_RESPOND,		/* response head queued, body may still be coming */
	CONN_CLOSING,		/* last response queued: flush, shut down, linger */
	CONN_CLOSED,
};

static const char *conn_state_names[] = {
	"read_head", "read_body", "handle", "respond", "closing", "closed",
};

#define CONN_IN_CAP        (HTTP_MAX_HEAD_BYTES + 16384)	/* head + pipelined bytes */
#define CONN_BLK           2048		/* first allocation of an input or output buffer */
#define CONN_BLK_SIZES     6		/* block sizes kept for reuse: CONN_BLK << 0..5 (2-64 KiB) */
#define CONN_BLK_POOL      128		/* free CONN_BLK blocks kept (half as many of each larger size) */
#define CONN_ERR_HDR_CAP   2048		/* header lines of a sidecar error response */
#define CONN_LINGER_MS     1000
#define CONN_ACCEPT_PAUSE  200	/* ms without accept() after EMFILE */
#define CONN_ACCEPT_BATCH  512	/* accept() calls per wake-up of the listener */
#define CONN_PARK_MS       250	/* a client written to within this long is left out of poll() */
#define CONN_PENDING_GRACE 250	/* ms a pending connection has to send before it may be closed for room */

struct conn_listener {
	int                       fd;
	struct loop              *loop;
	conn_admit_fn             admit;	/* NULL: every head is admitted */
	conn_handler_fn           fn;
	const struct conn_limits *lim;
	struct loop_timer         retry;	/* re-enables accept after EMFILE */
	struct conn_listener     *next;
};

struct conn {
	int                   fd;
	enum conn_state       state;
	struct conn_listener *ls;
	struct loop          *loop;
	TAILQ_ENTRY(conn)     link;			/* conn_list: all connections */
	uint64_t              id;

	char                 *in;			/* owned, in_alloc bytes, at most CONN_IN_CAP;
						 * NULL while empty */
	size_t                in_alloc;
	size_t                in_len;			/* bytes held */
	size_t                in_used;			/* bytes belonging to the current request */
	struct http_request  *req;			/* the parsed head, slices into in: conn_req_scratch
						 * or owned (while the body is read); NULL between */
	int                   minor_version;		/* of the current request's HTTP version */
	int                   dispatching;		/* the handler is on the stack */
	struct sc_buf         body;			/* owned unless the handler took it */
	struct http_chunked   chunked;
	int                   keep_alive;		/* for the current request */
	int64_t               body_held;		/* bytes counted in conn_body_bytes for body */
	int64_t               body_t0;		/* loop time the body started */
	int                   head_only;		/* HEAD request: the response carries no body */
	int                   trusted;		/* a request showed a valid client token */
	char                 *client;			/* owned: the current request's token label,
						 * NULL for "" (at most CONN_CLIENT_MAX bytes) */
	int                   pending;		/* on the conn_pending list */
	int64_t               pending_ms;		/* loop time it joined that list */
	struct conn          *qnewer, *qolder;	/* conn_pending links */

	char                 *out;			/* owned; NULL while empty */
	size_t                out_off, out_len, out_alloc;	/* pending bytes out[off..off+len) */
	int                   resp_chunked;		/* chunked framing of the body */
	int                   resp_close_delim;	/* body ends with the connection */
	int                   resp_ended;

	const struct conn_hooks *hooks;		/* while a request is in progress */
	void                 *hooks_arg;

	int                   broken;			/* socket failed; tear down from the timer */
	int                   batched;			/* on conn_batch_list: flush at conn_batch_end */
	int                   parked;			/* fd out of the poll set (conn_parked list) */
	int64_t               wrote_ms;			/* loop time of the last successful write */
	TAILQ_ENTRY(conn)     plink;			/* conn_parked, while parked */
	TAILQ_ENTRY(conn)     blink;			/* conn_batch_list, while batched */
	struct loop_timer     timer;			/* header / body / linger timeout */
	struct loop_timer     kick;			/* deferred work: teardown, next pipelined request */
};

TAILQ_HEAD(conn_tailq, conn);
static struct conn_tailq     conn_list = TAILQ_HEAD_INITIALIZER(conn_list);
static size_t                conn_n;
static uint64_t              conn_next_id;
static struct conn_listener *conn_listeners;
static int                   conn_draining;
static int                   conn_batch_depth;	/* conn_batch_begin nesting */
static struct conn_tailq     conn_batch_list = TAILQ_HEAD_INITIALIZER(conn_batch_list);	/* written to while
								 * batching, not yet flushed */
static struct conn_tailq     conn_parked = TAILQ_HEAD_INITIALIZER(conn_parked);	/* streaming clients
										 * left out of poll() */
static struct loop_timer     conn_park_timer;	/* brings quiet parked clients back */
static int                   conn_park_ready;	/* conn_park_timer initialised */
static struct conn          *conn_pending_new;	/* pending connections, newest first */
static struct conn          *conn_pending_old;	/* ... and the oldest */
static size_t                conn_pending_n;
static int64_t               conn_body_bytes;	/* sum of every connection's body_held */
static struct http_request   conn_req_scratch;	/* the parser's output: one head is handled at a time */
static char                 *conn_blk_free[CONN_BLK_SIZES][CONN_BLK_POOL];	/* free blocks by size */
static size_t                conn_blk_n[CONN_BLK_SIZES];
static size_t                conn_buf_bytes;	/* allocated for input and output buffers */

static void conn_free(struct conn *c);
static void conn_process_input(struct conn *c);
static void conn_flush(struct conn *c);
static void conn_event(struct loop *l, int fd, short revents, void *arg);

/* Pending: receiving a request (head or body), or lingering after a last
 * answer, without having shown a valid token. */
static void
conn_pending_update(struct conn *c)
{
	int want = !c->trusted &&
	    (c->state == CONN_READ_HEAD || c->state == CONN_READ_BODY || c->state == CONN_CLOSING);

	if (want == c->pending)
		return;
	if (want) {
		c->qolder = conn_pending_new;
		c->qnewer = NULL;
		if (conn_pending_new != NULL)
			conn_pending_new->qnewer = c;
		else
			conn_pending_old = c;
		conn_pending_new = c;
		conn_pending_n++;
		c->pending_ms = loop_now(c->loop);
	} else {
		if (c->qnewer != NULL)
			c->qnewer->qolder = c->qolder;
		else
			conn_pending_new = c->qolder;
		if (c->qolder != NULL)
			c->qolder->qnewer = c->qnewer;
		else
			conn_pending_old = c->qnewer;
		c->qnewer = c->qolder = NULL;
		conn_pending_n--;
	}
	c->pending = want;
}

static void
conn_set_state(struct conn *c, enum conn_state s)
{
	if (c->state == s)
		return;
	if (log_enabled(LOG_LVL_DEBUG))
		log_debug("conn %llu: %s -> %s", (unsigned long long)c->id,
		    conn_state_names[c->state], conn_state_names[s]);
	c->state = s;
	conn_pending_update(c);
}

void
conn_set_trusted(struct conn *c)
{
	c->trusted = 1;
	conn_pending_update(c);
}

void
conn_set_client(struct conn *c, const char *label)
{
	size_t n = label != NULL ? strnlen(label, CONN_CLIENT_MAX) : 0;

	free(c->client);
	c->client = NULL;
	if (n == 0)
		return;
	c->client = sc_xmalloc(n + 1);
	memcpy(c->client, label, n);
	c->client[n] = '\0';
}

const char *
conn_client(const struct conn *c)
{
	return c->client != NULL ? c->client : "";
}

/* Give back what c's body counted against max_body_memory. */
static void
conn_body_release(struct conn *c)
{
	conn_body_bytes -= c->body_held;
	c->body_held = 0;
}

/* Count c's body at its current size (or the announced one); -1 when that
 * would take all bodies past max_body_memory. */
static int
conn_body_account(struct conn *c, int64_t size)
{
	int64_t cap = c->ls->lim->max_body_memory;

	if (size <= c->body_held)
		return 0;
	if (cap > 0 && conn_body_bytes + size - c->body_held > cap)
		return -1;
	conn_body_bytes += size - c->body_held;
	c->body_held = size;
	return 0;
}

size_t
conn_count(void)
{
	return conn_n;
}

size_t
conn_buffer_bytes(void)
{
	return conn_buf_bytes;
}

size_t
conn_out_pending(const struct conn *c)
{
	return c->out_len;
}

void
conn_attach(struct conn *c, const struct conn_hooks *h, void *arg)
{
	c->hooks = h;
	c->hooks_arg = arg;
}

/* The free list index of a block of alloc bytes, -1 when none keeps it. */
static int
conn_blk_size_index(size_t alloc)
{
	for (int k = 0; k < CONN_BLK_SIZES; k++)
		if (alloc == (size_t)CONN_BLK << k)
			return k;
	return -1;
}

/* A buffer of at least n bytes: CONN_BLK times the smallest power of two
 * that holds n, from its free list when one is there. *alloc receives the
 * size. */
static char *
conn_blk_get(size_t n, size_t *alloc)
{
	size_t na = CONN_BLK;
	int k;

	while (na < n)
		na *= 2;
	*alloc = na;
	conn_buf_bytes += na;
	k = conn_blk_size_index(na);
	if (k >= 0 && conn_blk_n[k] > 0) {
		char *p = conn_blk_free[k][--conn_blk_n[k]];

		ASAN_UNPOISON_MEMORY_REGION(p, na);
		return p;
	}
	return sc_xmalloc(na);
}

/* Give back a buffer of conn_blk_get (p may be NULL). Kept blocks are
 * poisoned, so that ASan still sees a use after this. */
static void
conn_blk_put(char *p, size_t alloc)
{
	int k;

	if (p == NULL)
		return;
	conn_buf_bytes -= alloc;
	k = conn_blk_size_index(alloc);
	if (k >= 0 && conn_blk_n[k] < (size_t)(CONN_BLK_POOL >> k)) {
		ASAN_POISON_MEMORY_REGION(p, alloc);
		conn_blk_free[k][conn_blk_n[k]++] = p;
	} else {
		free(p);
	}
}

/* Nothing is queued: give the output buffer back. */
static void
conn_out_release(struct conn *c)
{
	conn_blk_put(c->out, c->out_alloc);
	c->out = NULL;
	c->out_alloc = c->out_off = 0;
}

/* Append to the output buffer (allocating, compacting or growing it). */
static void
conn_out_append(struct conn *c, const void *p, size_t n)
{
	if (n == 0)
		return;
	if (c->out == NULL) {
		c->out = conn_blk_get(n, &c->out_alloc);
		c->out_off = 0;
	} else if (c->out_off + c->out_len + n > c->out_alloc) {
		if (c->out_off > 0) {
			memmove(c->out, c->out + c->out_off, c->out_len);
			c->out_off = 0;
		}
		if (c->out_len + n > c->out_alloc) {
			size_t na;
			char *nb = conn_blk_get(c->out_len + n, &na);

			memcpy(nb, c->out, c->out_len);
			conn_blk_put(c->out, c->out_alloc);
			c->out = nb;
			c->out_alloc = na;
		}
	}
	memcpy(c->out + c->out_off + c->out_len, p, n);
	c->out_len += n;
}

static void
conn_kick_soon(struct conn *c)
{
	if (!loop_timer_armed(&c->kick))
		loop_timer_arm(c->loop, &c->kick, 0);
}

static short
conn_events(const struct conn *c)
{
	short ev = 0;

	switch (c->state) {
	case CONN_READ_HEAD:
	case CONN_READ_BODY:
		ev = POLLIN;
		break;
	case CONN_HANDLE:
	case CONN_RESPOND:
		ev = POLLRDHUP;
		break;
	case CONN_CLOSING:
		ev = c->out_len > 0 ? 0 : POLLIN;
		break;
	case CONN_CLOSED:
		break;
	}
	if (c->out_len > 0)
		ev |= POLLOUT;
	return ev;
}

/*
 * Parking. poll() costs time for every descriptor in its set, and with
 * thousands of streams half of them are clients we only watch for a hang-up
 * (POLLRDHUP) while we write to them every few milliseconds. Such a client
 * leaves the poll set while it is being written to: a hang-up then shows as
 * a failed write (the connection breaks as before), and a client not written
 * to for CONN_PARK_MS is put back into the set by a sweep, so one whose
 * stream went quiet is watched as before.
 */
static void
conn_park_unlink(struct conn *c)
{
	if (!c->parked)
		return;
	TAILQ_REMOVE(&conn_parked, c, plink);
	c->parked = 0;
}

static void
conn_unpark(struct conn *c)
{
	if (!c->parked)
		return;
	conn_park_unlink(c);
	loop_fd_add(c->loop, c->fd, conn_events(c), conn_event, c);
}

static void
conn_park_sweep(struct loop *l, void *arg)
{
	int64_t now = loop_now(l);
	struct conn *c, *next;

	for (c = TAILQ_FIRST(&conn_parked); c != NULL; c = next) {
		next = TAILQ_NEXT(c, plink);
		if (now - c->wrote_ms >= CONN_PARK_MS)
			conn_unpark(c);
	}
	if (!TAILQ_EMPTY(&conn_parked))
		loop_timer_arm_in(l, &conn_park_timer, CONN_PARK_MS / 2);
}

static void
conn_update_events(struct conn *c)
{
	short ev;

	if (c->state == CONN_CLOSED)
		return;
	ev = conn_events(c);
	if (ev == POLLRDHUP && c->state == CONN_RESPOND && c->wrote_ms != 0 &&
	    loop_now(c->loop) - c->wrote_ms < CONN_PARK_MS) {
		if (!c->parked) {
			loop_fd_del(c->loop, c->fd);
			c->parked = 1;
			TAILQ_INSERT_HEAD(&conn_parked, c, plink);
			if (!loop_timer_armed(&conn_park_timer))
				loop_timer_arm_in(c->loop, &conn_park_timer, CONN_PARK_MS / 2);
		}
		return;
	}
	if (c->parked)
		conn_unpark(c);
	else
		loop_fd_set_events(c->loop, c->fd, ev);
}

static void conn_error_hdrs(struct conn *c, int status, const char *msg, const char *hdrs);

/* A short error body in the OpenAI shape, for errors found before any handler runs. */
static void
conn_error(struct conn *c, int status, const char *msg)
{
	conn_error_hdrs(c, status, msg, NULL);
}

/* conn_error with extra header lines (each ending in CRLF, may be NULL). */
static void
conn_error_hdrs(struct conn *c, int status, const char *msg, const char *hdrs)
{
	const char *code = status == 413 ? "request_too_large" : status == 431 ? "headers_too_large" :
	    status == 408 ? "request_timeout" : "invalid_request";

	c->keep_alive = 0;
	c->hooks = NULL;
	conn_set_state(c, CONN_HANDLE);
	conn_respond_error(c, status, NULL, msg, code, hdrs);
}

void
conn_respond_error(struct conn *c, int status, const char *rid, const char *msg, const char *code,
    const char *extra_hdrs)
{
	struct sc_buf b;
	char h[CONN_ERR_HDR_CAP];

	sc_buf_init(&b, 4096);
	if (oaierr_format(&b, status, msg, NULL, code) == -1) {
		sc_buf_reset(&b);
		sc_buf_append(&b, "{\"error\":{\"message\":\"error\",\"type\":\"server_error\",\"param\":null,\"code\":null}}", 77);
	}
	snprintf(h, sizeof(h), "%s%s%s%s", rid != NULL ? "X-Request-Id: " : "", rid != NULL ? rid : "",
	    rid != NULL ? "\r\n" : "", extra_hdrs != NULL ? extra_hdrs : "");
	conn_respond(c, status, h[0] != '\0' ? h : NULL, "application/json", b.data, b.len);
	sc_buf_free(&b);
}

void
conn_response_head(struct conn *c, int status, const char *hdrs, size_t hlen, int64_t content_length)
{
	char line[9 + HTTP_STATUS_TEXT_MAX + 2];	/* the status line, then the framing lines (< 64 bytes) */
	size_t n;

	if (c->state != CONN_HANDLE)
		return;
	if (conn_draining)
		c->keep_alive = 0;
	c->resp_chunked = c->resp_close_delim = c->resp_ended = 0;
	if (content_length < 0 && c->head_only) {
		c->keep_alive = 0;	/* no framing to announce: the answer ends with the connection */
	} else if (content_length < 0) {
		if (c->minor_version >= 1) {
			c->resp_chunked = 1;
		} else {
			c->resp_close_delim = 1;
			c->keep_alive = 0;
		}
	}
	/* "HTTP/1.1 %d %s\r\n", the caller's lines, then the framing and the
	 * end of the head: three appends, no snprintf (every response comes
	 * here). */
	memcpy(line, "HTTP/1.1 ", 9);
	n = 9 + http_status_text(status, line + 9);
	line[n++] = '\r';
	line[n++] = '\n';
	conn_out_append(c, line, n);
	if (hdrs != NULL)
		conn_out_append(c, hdrs, hlen);
	n = 0;
	if (content_length >= 0) {
		memcpy(line, "Content-Length: ", 16);
		n = 16 + sc_fmt_i64(content_length, line + 16);
		line[n++] = '\r';
		line[n++] = '\n';
	} else if (c->resp_chunked) {
		memcpy(line, "Transfer-Encoding: chunked\r\n", 28);
		n = 28;
	}
	if (!c->keep_alive) {
		memcpy(line + n, "Connection: close\r\n\r\n", 21);
		n += 21;
	} else if (c->minor_version == 0) {
		memcpy(line + n, "Connection: keep-alive\r\n\r\n", 26);
		n += 26;
	} else {
		line[n++] = '\r';
		line[n++] = '\n';
	}
	conn_out_append(c, line, n);
	conn_set_state(c, CONN_RESPOND);
}

static void
conn_batch_unlink(struct conn *c)
{
	if (!c->batched)
		return;
	TAILQ_REMOVE(&conn_batch_list, c, blink);
	c->batched = 0;
}

void
conn_batch_begin(void)
{
	conn_batch_depth++;
}

void
conn_batch_end(void)
{
	struct conn *c;

	if (conn_batch_depth == 0 || --conn_batch_depth > 0)
		return;
	while ((c = TAILQ_FIRST(&conn_batch_list)) != NULL) {
		conn_batch_unlink(c);
		conn_flush(c);
		/* A producer may have paused on the batch's queue that this write
		 * emptied, with no POLLOUT to come: wake it here (outside curl's
		 * callbacks, like conn_event does). */
		if (!c->broken && c->state == CONN_RESPOND && c->out_len <= CONN_OUT_LOW &&
		    c->hooks != NULL && c->hooks->drain != NULL && !c->resp_ended)
			c->hooks->drain(c->hooks_arg);
	}
}

void
conn_response_body(struct conn *c, const void *p, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	char sz[24], *q = sz + sizeof(sz);

	if (c->state != CONN_RESPOND || n == 0 || c->head_only)
		return;
	if (c->resp_chunked) {
		size_t v = n;

		*--q = '\n';
		*--q = '\r';
		do
			*--q = hex[v & 15];
		while ((v >>= 4) != 0);
		conn_out_append(c, q, (size_t)(sz + sizeof(sz) - q));
		conn_out_append(c, p, n);
		conn_out_append(c, "\r\n", 2);
	} else {
		conn_out_append(c, p, n);
	}
	if (conn_batch_depth > 0) {
		/* One write for everything a batch relays to this client. */
		if (!c->batched) {
			c->batched = 1;
			TAILQ_INSERT_HEAD(&conn_batch_list, c, blink);
		}
		return;
	}
	conn_flush(c);
}

void
conn_response_end(struct conn *c)
{
	if (c->state != CONN_RESPOND)
		return;
	c->hooks = NULL;
	c->resp_ended = 1;
	if (c->resp_chunked)
		conn_out_append(c, "0\r\n\r\n", 5);
	if (c->resp_close_delim || !c->keep_alive)
		conn_set_state(c, CONN_CLOSING);
	conn_flush(c);
}

void
conn_response_abort(struct conn *c)
{
	c->hooks = NULL;
	c->keep_alive = 0;
	c->resp_ended = 1;
	conn_set_state(c, CONN_CLOSING);
	conn_flush(c);
}

void
conn_respond(struct conn *c, int status, const char *hdrs, const char *ctype, const char *body, size_t len)
{
	char h[4096];	/* Content-Type + the caller's lines (proxy: PX_HDR_CAP) */
	int n = 0;

	if (ctype != NULL)
		n = snprintf(h, sizeof(h), "Content-Type: %s\r\n", ctype);
	if (hdrs != NULL) {
		size_t hl = strlen(hdrs);
		if (hl < sizeof(h) - (size_t)n) {
			memcpy(h + n, hdrs, hl);
			n += (int)hl;
		}
	}
	conn_response_head(c, status, h, (size_t)n, (int64_t)len);
	if (c->state != CONN_RESPOND)
		return;
	if (!c->head_only)
		conn_out_append(c, body, len);	/* HEAD: the same head, never a body */
	conn_response_end(c);
}

/* The parsed head is no longer needed (the handler returned, or the request
 * ended before it ran). */
static void
conn_req_release(struct conn *c)
{
	if (c->req != &conn_req_scratch)
		free(c->req);
	c->req = NULL;
}

/* Drop the current request's bytes from the input buffer, keeping a
 * pipelined request's, and give the buffer back when nothing is left. Only
 * once nothing points into it (no parsed head). */
static void
conn_in_compact(struct conn *c)
{
	size_t rest = c->in_len - c->in_used;

	if (rest > 0 && c->in_used > 0)
		memmove(c->in, c->in + c->in_used, rest);
	c->in_len = rest;
	c->in_used = 0;
	if (rest == 0) {
		conn_blk_put(c->in, c->in_alloc);
		c->in = NULL;
		c->in_alloc = 0;
	}
}

/* The request is over and its response sent: get ready for the next one. */
static void
conn_request_done(struct conn *c)
{
	size_t rest = c->in_len - c->in_used;

	if (!c->dispatching) {
		/* (else conn_dispatch does it once the handler has returned: it may
		 * still look at the head after answering) */
		conn_req_release(c);
		conn_in_compact(c);
	}
	sc_buf_free(&c->body);
	conn_body_release(c);
	if (c->out_len == 0 && c->out != NULL)
		conn_out_release(c);
	c->hooks = NULL;
	c->resp_ended = 0;
	conn_set_state(c, CONN_READ_HEAD);
	loop_timer_arm_in(c->loop, &c->timer, c->ls->lim->header_timeout_ms);
	conn_update_events(c);
	if (rest > 0)
		conn_kick_soon(c);	/* pipelined request: parse it outside this call chain */
}

/* Write what is pending; note progress for producers and finish requests. */
static void
conn_flush(struct conn *c)
{
	while (c->out_len > 0 && !c->broken) {
		ssize_t n = write(c->fd, c->out + c->out_off, c->out_len);
		if (n > 0) {
			c->wrote_ms = loop_now(c->loop);
			c->out_off += (size_t)n;
			c->out_len -= (size_t)n;
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		c->broken = 1;
		conn_kick_soon(c);
		return;
	}
	/* Empty: give the buffer back (a fast stream takes a block of the same
	 * size from the free list for its next write). */
	if (c->out_len == 0 && c->out != NULL)
		conn_out_release(c);
	if (c->state == CONN_RESPOND && c->resp_ended && c->out_len == 0) {
		conn_request_done(c);
		return;
	}
	if (c->state == CONN_CLOSING && c->out_len == 0) {
		shutdown(c->fd, SHUT_WR);
		if (!loop_timer_armed(&c->timer) || c->timer.when_ms > sc_now_ms() + CONN_LINGER_MS)
			loop_timer_arm_in(c->loop, &c->timer, CONN_LINGER_MS);
	}
	conn_update_events(c);
}

/* Hand the complete request to the listener's handler; then the head and
 * its bytes are released (a response still in progress needs neither). */
static void
conn_dispatch(struct conn *c)
{
	loop_timer_cancel(c->loop, &c->timer);
	conn_set_state(c, CONN_HANDLE);
	conn_update_events(c);
	c->dispatching = 1;
	c->ls->fn(c, c->req, &c->body);
	c->dispatching = 0;
	conn_req_release(c);
	conn_in_compact(c);
}

/* Arm the body timer: the idle timeout, or the whole-body deadline
 * (body_timeout_ms plus 1 s per body_min_rate bytes received) when sooner. */
static void
conn_body_arm(struct conn *c)
{
	const struct conn_limits *lim = c->ls->lim;
	int64_t when = loop_now(c->loop) + lim->header_timeout_ms;
	int64_t deadline = c->body_t0 + lim->body_timeout_ms;

	if (lim->body_min_rate > 0)
		deadline += (int64_t)c->body.len * 1000 / lim->body_min_rate;
	if (lim->body_timeout_ms > 0 && deadline < when)
		when = deadline;
	loop_timer_arm(c->loop, &c->timer, when);
}

/* All bodies together hold max_body_memory: refuse this one for now. */
static void
conn_body_busy(struct conn *c)
{
	log_warn("conn %llu: request bodies hold %lld bytes (max_body_memory_bytes); 503",
	    (unsigned long long)c->id, (long long)conn_body_bytes);
	conn_error_hdrs(c, 503, "the server is receiving too many request bodies; retry later", "Retry-After: 1\r\n");
}

/* Count a chunked body at its current allocation: 0, or -1 (answered 503). */
static int
conn_body_grew(struct conn *c)
{
	if (conn_body_account(c, (int64_t)c->body.alloc) == 0)
		return 0;
	conn_body_busy(c);
	return -1;
}

/* The listener's admit function on the parsed head: 1 admitted (read on),
 * 0 refused and answered. A refused head's body is never read: the
 * connection closes after the answer. */
static int
conn_admit(struct conn *c)
{
	int ok;

	if (c->ls->admit == NULL)
		return 1;
	c->keep_alive = c->req->body_kind == HTTP_BODY_NONE ? c->req->keep_alive : 0;
	c->hooks = NULL;
	conn_set_state(c, CONN_HANDLE);	/* a refusal answers from here */
	ok = c->ls->admit(c, c->req);
	if (!ok)
		return 0;
	c->keep_alive = c->req->keep_alive;
	/* Admitted: the state stays HANDLE until conn_start_body moves it on
	 * (READ_BODY, or the dispatch of a body already read), not back to
	 * READ_HEAD in between: every change re-files c in the pending list. */
	return 1;
}

/* Feed body bytes from the input buffer (right after the head). 1 when the body is complete. */
static int
conn_body_from_input(struct conn *c)
{
	size_t avail = c->in_len - c->in_used, take, used;
	int status = 400, r;

	if (c->req->body_kind == HTTP_BODY_LENGTH) {
		take = c->req->content_length - c->body.len;
		if (take > avail)
			take = avail;
		memcpy(c->body.data + c->body.len, c->in + c->in_used, take);
		c->body.len += take;
		c->body.data[c->body.len] = '\0';
		c->in_used += take;
		return c->body.len == c->req->content_length;
	}
	r = http_chunked_decode(&c->chunked, c->in + c->in_used, avail, &used, &c->body, &status);
	c->in_used += used;
	if (r == HTTP_ERROR) {
		conn_error(c, status, status == 413 ? "request body too large" : "bad chunked body");
		return -1;
	}
	if (conn_body_grew(c) == -1)
		return -1;
	return r == 1;
}

/* A head was parsed: check framing limits, set up the body, maybe dispatch. */
static void
conn_start_body(struct conn *c)
{
	int64_t maxb = c->ls->lim->max_body_bytes;
	int r;

	c->keep_alive = c->req->keep_alive;
	c->head_only = http_slice_eq(c->req->method, "HEAD");
	sc_buf_free(&c->body);
	sc_buf_init(&c->body, (size_t)maxb);
	if (!conn_admit(c))
		return;
	if (c->req->body_kind == HTTP_BODY_NONE) {
		conn_dispatch(c);
		return;
	}
	if (c->req->body_kind == HTTP_BODY_LENGTH) {
		if (c->req->content_length > (uint64_t)maxb) {
			conn_error(c, 413, "request body too large");
			return;
		}
		if (conn_body_account(c, (int64_t)c->req->content_length + 1) == -1) {
			conn_body_busy(c);
			return;
		}
		c->body.alloc = (size_t)c->req->content_length + 1;
		c->body.data = sc_xmalloc(c->body.alloc);
		c->body.data[0] = '\0';
	} else {
		http_chunked_init(&c->chunked);
	}
	c->body_t0 = loop_now(c->loop);
	r = conn_body_from_input(c);
	if (r < 0)
		return;
	if (r == 1) {
		conn_dispatch(c);
		return;
	}
	if (c->req->expect_continue)
		conn_out_append(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
	/* The body comes later: the head outlives this call, in a copy of its own. */
	c->req = sc_xmalloc(sizeof(*c->req));
	memcpy(c->req, &conn_req_scratch, sizeof(*c->req));
	conn_set_state(c, CONN_READ_BODY);
	conn_body_arm(c);
	conn_flush(c);
}

/* Parse what the input buffer holds in READ_HEAD. */
static void
conn_process_input(struct conn *c)
{
	int r;

	if (c->state != CONN_READ_HEAD || c->in_len == 0)
		return;
	r = http_parse_request(c->in, c->in_len, &conn_req_scratch);
	if (r == HTTP_INCOMPLETE) {
		if (c->in_len >= HTTP_MAX_HEAD_BYTES)
			conn_error(c, 431, "request header fields too large");
		return;
	}
	if (r == HTTP_ERROR) {
		c->minor_version = 1;
		conn_error(c, conn_req_scratch.error_status ? conn_req_scratch.error_status : 400,
		    conn_req_scratch.error_reason ? conn_req_scratch.error_reason : "bad request");
		return;
	}
	c->req = &conn_req_scratch;
	c->minor_version = c->req->minor_version;
	c->in_used = (size_t)r;
	conn_start_body(c);
	if (c->req == &conn_req_scratch)
		c->req = NULL;	/* the scratch is this call's only (a refused or failed head) */
}

/* Read more of the body straight into its buffer (Content-Length) or through the decoder. */
static int
conn_read_body(struct conn *c)
{
	char tmp[65536];
	ssize_t n;
	size_t used;
	int status = 400, r;

	if (c->req->body_kind == HTTP_BODY_LENGTH) {
		size_t want = c->req->content_length - c->body.len;
		n = read(c->fd, c->body.data + c->body.len, want);
		if (n <= 0)
			return (int)n;
		c->body.len += (size_t)n;
		c->body.data[c->body.len] = '\0';
		if (c->body.len == c->req->content_length)
			conn_dispatch(c);
		else
			conn_body_arm(c);
		return 1;
	}
	n = read(c->fd, tmp, sizeof(tmp));
	if (n <= 0)
		return (int)n;
	r = http_chunked_decode(&c->chunked, tmp, (size_t)n, &used, &c->body, &status);
	if (r == HTTP_ERROR) {
		conn_error(c, status, status == 413 ? "request body too large" : "bad chunked body");
		return 1;
	}
	if (conn_body_grew(c) == -1)
		return 1;
	if (r == 1) {
		/* Bytes after the body belong to a pipelined request. */
		size_t rest = (size_t)n - used;
		/* Not grown here: the request head's slices point into c->in. */
		if (rest > c->in_alloc - c->in_len) {
			conn_error(c, 431, "pipelined data too large");
			return 1;
		}
		memcpy(c->in + c->in_len, tmp + used, rest);
		c->in_len += rest;
		c->in_used = c->in_len - rest;
		conn_dispatch(c);
		return 1;
	}
	conn_body_arm(c);
	return 1;
}

static void
conn_event(struct loop *l, int fd, short revents, void *arg)
{
	struct conn *c = arg;
	ssize_t n;

	if (c->broken) {
		conn_free(c);
		return;
	}
	if (revents & POLLOUT) {
		conn_flush(c);
		if (c->broken) {
			conn_free(c);
			return;
		}
		/* Only here, never from a producer's own call: the drain hook may
		 * resume a curl transfer, which must not happen inside its callback. */
		if (c->state == CONN_RESPOND && c->out_len <= CONN_OUT_LOW && c->hooks != NULL &&
		    c->hooks->drain != NULL && !c->resp_ended)
			c->hooks->drain(c->hooks_arg);
	}
	switch (c->state) {
	case CONN_READ_HEAD:
		if (!(revents & (POLLIN | POLLHUP | POLLERR)))
			break;
		if (c->in_len >= CONN_IN_CAP) {
			conn_error(c, 431, "request header fields too large");
			break;
		}
		if (c->in == NULL) {
			c->in = conn_blk_get(0, &c->in_alloc);
		} else if (c->in_len == c->in_alloc) {
			/* No head is parsed in this state, so nothing points into c->in. */
			size_t na = c->in_alloc * 4 > CONN_IN_CAP ? CONN_IN_CAP : c->in_alloc * 4;
			c->in = sc_xrealloc(c->in, na);
			conn_buf_bytes += na - c->in_alloc;
			c->in_alloc = na;
		}
		n = read(fd, c->in + c->in_len, c->in_alloc - c->in_len);
		if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR)) {
			conn_free(c);
			return;
		}
		if (n > 0) {
			c->in_len += (size_t)n;
			conn_process_input(c);
		} else if (c->in_len == 0) {
			conn_in_compact(c);	/* nothing came after all: hold no buffer */
		}
		break;
	case CONN_READ_BODY:
		if (!(revents & (POLLIN | POLLHUP | POLLERR)))
			break;
		n = conn_read_body(c);
		if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR)) {
			conn_free(c);
			return;
		}
		break;
	case CONN_HANDLE:
	case CONN_RESPOND:
		if (revents & (POLLRDHUP | POLLHUP | POLLERR)) {
			conn_free(c);	/* the client left: the abort hook cancels upstream */
			return;
		}
		break;
	case CONN_CLOSING:
		if (revents & (POLLHUP | POLLERR)) {
			conn_free(c);
			return;
		}
		if (c->out_len == 0 && (revents & POLLIN)) {
			char junk[16384];
			n = read(fd, junk, sizeof(junk));
			if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR)) {
				conn_free(c);
				return;
			}
		}
		break;
	case CONN_CLOSED:
		break;
	}
	if (c->broken)
		conn_free(c);
}

static void
conn_timeout(struct loop *l, void *arg)
{
	struct conn *c = arg;

	switch (c->state) {
	case CONN_READ_HEAD:
		if (c->in_len == 0) {
			conn_free(c);	/* idle keep-alive connection */
			return;
		}
		/* FALLTHROUGH */
	case CONN_READ_BODY:
		conn_error(c, 408, "request timeout");
		break;
	default:
		conn_free(c);	/* linger over, or a stuck close */
		break;
	}
}

static void
conn_kick(struct loop *l, void *arg)
{
	struct conn *c = arg;

	if (c->broken) {
		conn_free(c);
		return;
	}
	conn_process_input(c);
}

/* The one teardown: tell the request's owner, close, unlink, free. */
static void
conn_free(struct conn *c)
{
	const struct conn_hooks *h = c->hooks;

	c->hooks = NULL;
	if (h != NULL && h->abort != NULL)
		h->abort(c->hooks_arg);
	conn_set_state(c, CONN_CLOSED);
	conn_batch_unlink(c);
	conn_park_unlink(c);
	loop_timer_cancel(c->loop, &c->timer);
	loop_timer_cancel(c->loop, &c->kick);
	loop_fd_del(c->loop, c->fd);
	close(c->fd);
	TAILQ_REMOVE(&conn_list, c, link);
	conn_n--;
	sc_buf_free(&c->body);
	conn_body_release(c);
	conn_req_release(c);
	free(c->client);
	conn_blk_put(c->in, c->in_alloc);
	conn_blk_put(c->out, c->out_alloc);
	free(c);
}

/* Close the connection that has been pending longest, to make room: 0, or
 * -1 when none has been pending for CONN_PENDING_GRACE (a burst of new
 * connections must not close each other before they could send a head). */
static int
conn_evict_pending(struct loop *l, const char *why)
{
	struct conn *c = conn_pending_old;

	if (c == NULL || loop_now(l) - c->pending_ms < CONN_PENDING_GRACE)
		return -1;
	log_debug("conn %llu: oldest pending connection closed (%s)", (unsigned long long)c->id, why);
	conn_free(c);
	return 0;
}

/* Room for one more connection: the oldest pending one gives way when the
 * pending allowance or max_connections is reached. The allowance is soft:
 * while every pending connection is still within its grace, a new one is
 * taken beyond it (until max_connections), so a burst of newcomers does not
 * lock out one more. 0, or -1 at max_connections when nothing can give way
 * (every connection held is trusted, has a request in progress, or is new). */
static int
conn_make_room(struct conn_listener *ls)
{
	const struct conn_limits *lim = ls->lim;

	if (lim->max_pending > 0 && conn_pending_n >= (size_t)lim->max_pending)
		(void)conn_evict_pending(ls->loop, "max_pending_connections");
	if (lim->max_connections > 0 && conn_n >= (size_t)lim->max_connections &&
	    conn_evict_pending(ls->loop, "max_connections") == -1)
		return -1;
	return 0;
}

static void
conn_accept_one(struct conn_listener *ls, int fd)
{
	static const char busy[] =
	    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
	    "Retry-After: 1\r\nConnection: close\r\nContent-Length: 112\r\n\r\n"
	    "{\"error\":{\"message\":\"too many connections\",\"type\":\"server_error\",\"param\":null,\"code\":\"too_many_connections\"}}";
	struct conn *c;
	int one = 1;

	if (conn_make_room(ls) == -1) {
		(void)!write(fd, busy, sizeof(busy) - 1);
		close(fd);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c = sc_xcalloc(1, sizeof(*c));
	c->fd = fd;
	c->ls = ls;
	c->loop = ls->loop;
	c->id = ++conn_next_id;
	c->state = CONN_READ_HEAD;
	sc_buf_init(&c->body, 0);
	loop_timer_init(&c->timer, conn_timeout, c);
	loop_timer_init(&c->kick, conn_kick, c);
	if (loop_fd_add(c->loop, fd, POLLIN, conn_event, c) == -1) {
		close(fd);
		free(c);
		return;
	}
	TAILQ_INSERT_HEAD(&conn_list, c, link);
	conn_n++;
	conn_pending_update(c);
	loop_timer_arm_in(c->loop, &c->timer, ls->lim->header_timeout_ms);
}

static void
conn_accept_retry(struct loop *l, void *arg)
{
	struct conn_listener *ls = arg;

	if (!conn_draining)
		loop_fd_set_events(l, ls->fd, POLLIN);
}

static void
conn_accept(struct loop *l, int lfd, short revents, void *arg)
{
	struct conn_listener *ls = arg;
	int i;

	/* Until EAGAIN, bounded so that a flood of connects cannot starve the
	 * streams already running. */
	for (i = 0; i < CONN_ACCEPT_BATCH; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				/* Out of descriptors: stop accepting for a moment instead of spinning. */
				log_warn("accept: %s; pausing accept for %d ms", strerror(errno), CONN_ACCEPT_PAUSE);
				loop_fd_set_events(l, lfd, 0);
				loop_timer_arm_in(l, &ls->retry, CONN_ACCEPT_PAUSE);
			}
			return;
		}
		conn_accept_one(ls, fd);
	}
}

/* net.core.somaxconn: the kernel's cap on a listen backlog (4096 when unreadable). */
static int
conn_somaxconn(void)
{
	FILE *f = fopen("/proc/sys/net/core/somaxconn", "r");
	int n = 0;

	if (f != NULL) {
		if (fscanf(f, "%d", &n) != 1)
			n = 0;
		fclose(f);
	}
	return n > 0 ? n : 4096;
}

int
conn_listen(const char *addr, int backlog, int *port_out, struct sc_err *e)
{
	char host[256];
	const char *colon = strrchr(addr, ':');
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd = -1, one = 1, port;
	char *end;

	if (colon == NULL || (size_t)(colon - addr) >= sizeof(host))
		return sc_err_set(e, "listen", 0, "listen address must be ADDR:PORT: %s", addr);
	memcpy(host, addr, (size_t)(colon - addr));
	host[colon - addr] = '\0';
	port = (int)strtol(colon + 1, &end, 10);
	if (*end != '\0' || port < 0 || port > 65535)
		return sc_err_set(e, "listen", 0, "bad port in %s", addr);
	memset(&ss, 0, sizeof(ss));
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		host[strlen(host) - 1] = '\0';
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		if (inet_pton(AF_INET6, host + 1, &s6->sin6_addr) != 1)
			return sc_err_set(e, "listen", 0, "bad address in %s", addr);
		sl = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		if (strcmp(host, "localhost") == 0)
			strcpy(host, "127.0.0.1");
		if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
			return sc_err_set(e, "listen", 0, "bad address in %s (use an IP address)", addr);
		sl = sizeof(*s4);
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		return sc_err_set(e, "listen", 0, "socket: %s", strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, sl) == -1) {
		sc_err_set(e, "listen", 0, "bind %s: %s", addr, strerror(errno));
		goto fail;
	}
	if (backlog < 1024)
		backlog = 1024;
	if (backlog > conn_somaxconn())
		backlog = conn_somaxconn();
	if (listen(fd, backlog) == -1) {
		sc_err_set(e, "listen", 0, "listen %s: %s", addr, strerror(errno));
		goto fail;
	}
	sl = sizeof(ss);
	getsockname(fd, (struct sockaddr *)&ss, &sl);
	if (port_out != NULL)
		*port_out = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
		    : ((struct sockaddr_in *)&ss)->sin_port);
	return fd;
fail:
	close(fd);
	return -1;
}

int
conn_serve(struct loop *l, int lfd, conn_admit_fn admit, conn_handler_fn fn, const struct conn_limits *lim)
{
	struct conn_listener *ls = sc_xcalloc(1, sizeof(*ls));

	ls->fd = lfd;
	ls->loop = l;
	ls->admit = admit;
	ls->fn = fn;
	ls->lim = lim;
	loop_timer_init(&ls->retry, conn_accept_retry, ls);
	if (!conn_park_ready) {
		loop_timer_init(&conn_park_timer, conn_park_sweep, NULL);
		conn_park_ready = 1;
	}
	if (loop_fd_add(l, lfd, POLLIN, conn_accept, ls) == -1) {
		free(ls);
		return -1;
	}
	ls->next = conn_listeners;
	conn_listeners = ls;
	return 0;
}

void
conn_drain_all(void)
{
	struct conn_listener *ls;
	struct conn *c, *next;

	conn_draining = 1;
	for (ls = conn_listeners; ls != NULL; ls = ls->next) {
		loop_timer_cancel(ls->loop, &ls->retry);
		loop_fd_del(ls->loop, ls->fd);
		close(ls->fd);
		ls->fd = -1;
	}
	/* Listeners stay allocated: connections still point at them. */
	for (c = TAILQ_FIRST(&conn_list); c != NULL; c = next) {
		next = TAILQ_NEXT(c, link);
		c->keep_alive = 0;
		if (c->state == CONN_READ_HEAD && c->in_len == 0)
			conn_free(c);
	}
}
