/*
 * libcurl multi on our poll loop. curl tells us which sockets to watch
 * (CURLMOPT_SOCKETFUNCTION) and when to call it back (CURLMOPT_TIMERFUNCTION);
 * we translate both into loop fds and one loop timer, call
 * curl_multi_socket_action when they fire, then collect finished transfers
 * with curl_multi_info_read. Nothing here calls curl_multi_remove_handle from
 * inside a curl callback: completions are handled after socket_action
 * returns, cancellations come from other fds or timers.
 *
 * Each transfer has its own first-byte timer: armed at start, cancelled by
 * the first response header byte. There is no total timeout, so long streams
 * live as long as the upstream keeps sending.
 */
#define _GNU_SOURCE

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "crypto.h"
#include "log.h"
#include "loop.h"
#include "upstream.h"
#include "util.h"

/* What the per-request options of a handle were last set to: a pooled
 * handle keeps its options, so a request sets only those that differ. */
struct upstream_opts {
	char *url;		/* owned copy; NULL = not set since the handle was (re)set up */
	long  connect_ms;	/* 0 = not set */
	long  recv_buf;		/* 0 = not set */
	int   post;		/* CURLOPT_POST is 1 */
};

struct upstream_xfer {
	CURL                      *easy;		/* owned */
	struct upstream_opts       opts;		/* the handle's, kept with it in the pool */
	struct upstream_hdrs       headers;		/* owned (moved from the request) */
	const struct upstream_ops *ops;
	void                      *arg;
	struct loop_timer          ttfb;		/* first-byte timer */
	int                        got_byte;		/* any response byte seen */
	int                        head_done;		/* on_head called */
	int                        aborted;		/* a callback asked to stop */
	int                        status;
	int64_t                    content_length;	/* -1 = unknown */
	int                        chunked;		/* a Transfer-Encoding came: curl frames the
						 * body by it, so its Content-Length says nothing */
	int                        retry_after;		/* seconds, -1 = none */
	uint64_t                   body_bytes;
	int                        paused;		/* the write callback ever paused curl */
	int                        completed;		/* curl reported the transfer done */
	size_t                     body_len;		/* request body bytes to send */
	/* The two texts last: a transfer taken from the pool clears what is
	 * before them and empties them (upstream_xfer_get). */
	char                       content_type[128];
	char                       errbuf[CURL_ERROR_SIZE];
};

#define UPSTREAM_POOL_MAX 256	/* idle easy handles kept for reuse */
#define UPSTREAM_BATCH_READY 16	/* ready descriptors from which client writes are batched */
#define UPSTREAM_RECV_BUF 4096L	/* CURLOPT_BUFFERSIZE, bytes */
#define UPSTREAM_STREAM_BUF 1024L	/* ... for a stream (curl's smallest) */

static struct {
	struct loop      *loop;
	CURLM            *multi;
	struct loop_timer timer;	/* curl's single timeout */
	size_t            active;
	struct upstream_xfer *pool[UPSTREAM_POOL_MAX];	/* owned idle transfers with their
							 * handles: reusing them saves the handles'
							 * buffers and the options that name the
							 * transfer, per request */
	size_t            npool;
	char             *ca_file;	/* owned: CA bundle for TLS upstreams, NULL = the system's */
	int               env_proxy;	/* a proxy variable is set in the environment */
} up;

static void upstream_check_done(void);
static size_t upstream_header_cb(char *p, size_t sz, size_t nm, void *arg);
static size_t upstream_write_cb(char *p, size_t sz, size_t nm, void *arg);

static void
upstream_sock_event(struct loop *l, int fd, short revents, void *arg)
{
	int flags = 0, running;

	if (revents & (POLLIN | POLLHUP | POLLRDHUP))
		flags |= CURL_CSELECT_IN;
	if (revents & POLLOUT)
		flags |= CURL_CSELECT_OUT;
	if (revents & (POLLERR | POLLNVAL))
		flags |= CURL_CSELECT_ERR;
	/* Under load (many descriptors ready at once) what curl relays in one
	 * call is written once per client, not once per HTTP chunk (an SSE
	 * event each); a lone stream keeps writing each event through. */
	if (loop_ready_count(l) >= UPSTREAM_BATCH_READY) {
		conn_batch_begin();
		curl_multi_socket_action(up.multi, fd, flags, &running);
		conn_batch_end();
	} else {
		curl_multi_socket_action(up.multi, fd, flags, &running);
	}
	upstream_check_done();
}

/* CURLMOPT_SOCKETFUNCTION: mirror curl's wishes into the loop. */
static int
upstream_sock_cb(CURL *e, curl_socket_t s, int what, void *userp, void *sockp)
{
	short ev = 0;

	if (what == CURL_POLL_REMOVE) {
		loop_fd_del(up.loop, s);
		return 0;
	}
	if (what & CURL_POLL_IN)
		ev |= POLLIN;
	if (what & CURL_POLL_OUT)
		ev |= POLLOUT;
	if (loop_fd_add(up.loop, s, ev, upstream_sock_event, NULL) == -1)
		loop_fd_set_events(up.loop, s, ev);
	return 0;
}

static void
upstream_timer_fire(struct loop *l, void *arg)
{
	int running;

	if (loop_ready_count(l) >= UPSTREAM_BATCH_READY) {
		conn_batch_begin();
		curl_multi_socket_action(up.multi, CURL_SOCKET_TIMEOUT, 0, &running);
		conn_batch_end();
	} else {
		curl_multi_socket_action(up.multi, CURL_SOCKET_TIMEOUT, 0, &running);
	}
	upstream_check_done();
}

/* CURLMOPT_TIMERFUNCTION: -1 cancels, otherwise call back in timeout_ms. */
static int
upstream_timer_cb(CURLM *m, long timeout_ms, void *userp)
{
	int64_t when;

	if (timeout_ms < 0) {
		loop_timer_cancel(up.loop, &up.timer);
		return 0;
	}
	/* curl often asks again for the deadline already set: a re-arm would
	 * cost two passes through the timer heap */
	when = sc_now_ms() + timeout_ms;
	if (!loop_timer_armed(&up.timer) || up.timer.when_ms != when)
		loop_timer_arm(up.loop, &up.timer, when);
	return 0;
}

/* Whether the environment names a proxy for http or https upstreams (the
 * variables curl reads per transfer; the environment does not change
 * while we run). */
static int
upstream_env_proxy(void)
{
	static const char *const vars[] = { "http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY" };
	size_t i;

	for (i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		if (getenv(vars[i]) != NULL && getenv(vars[i])[0] != '\0')
			return 1;
	return 0;
}

int
upstream_init(struct loop *l, long max_connections, const char *ca_file)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return -1;
	up.loop = l;
	up.ca_file = ca_file != NULL ? sc_xstrdup(ca_file) : NULL;
	up.env_proxy = upstream_env_proxy();
	up.multi = curl_multi_init();
	if (up.multi == NULL)
		return -1;
	loop_timer_init(&up.timer, upstream_timer_fire, NULL);
	curl_multi_setopt(up.multi, CURLMOPT_SOCKETFUNCTION, upstream_sock_cb);
	curl_multi_setopt(up.multi, CURLMOPT_TIMERFUNCTION, upstream_timer_cb);
	/* The connection cache must hold one connection per concurrent transfer:
	 * with a smaller cache every connection handed back while more transfers
	 * run than it holds is closed, and each new stream pays a connect. */
	curl_multi_setopt(up.multi, CURLMOPT_MAXCONNECTS, max_connections > 512 ? max_connections : 512L);
	curl_multi_setopt(up.multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
	curl_multi_setopt(up.multi, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING);
	return 0;
}

void
upstream_shutdown(void)
{
	while (up.npool > 0) {
		struct upstream_xfer *x = up.pool[--up.npool];
		curl_easy_cleanup(x->easy);
		free(x->opts.url);
		free(x);
	}
	if (up.multi != NULL) {
		loop_timer_cancel(up.loop, &up.timer);
		curl_multi_cleanup(up.multi);
		up.multi = NULL;
	}
	free(up.ca_file);
	up.ca_file = NULL;
	curl_global_cleanup();
}

void
upstream_hdrs_init(struct upstream_hdrs *h)
{
	sc_buf_init(&h->text, UPSTREAM_HDRS_CAP);
	h->n = 0;
	h->nodes = NULL;
}

void
upstream_hdrs_presize(struct upstream_hdrs *h, size_t size)
{
	sc_buf_presize(&h->text, size);
}

int
upstream_hdrs_add(struct upstream_hdrs *h, const char *line)
{
	return upstream_hdrs_add_lines(h, line, strlen(line) + 1, 1);	/* with its NUL: the lines are NUL-separated */
}

int
upstream_hdrs_add_lines(struct upstream_hdrs *h, const char *lines, size_t len, size_t n)
{
	if (len > h->text.cap - h->text.len)
		return -1;
	sc_buf_append(&h->text, lines, len);
	h->n += n;
	return 0;
}

char *
upstream_hdrs_line(struct upstream_hdrs *h, size_t len)
{
	char *d = sc_buf_extend(&h->text, len);

	if (d != NULL)
		h->n++;
	return d;
}

int
upstream_hdrs_bearer(struct upstream_hdrs *h, const char *key)
{
	static const char pre[] = "Authorization: Bearer ";
	size_t klen = strlen(key);
	char *d;

	if ((d = sc_buf_extend(&h->text, UPSTREAM_BEARER_SIZE(klen))) == NULL)
		return -1;
	memcpy(d, pre, sizeof(pre) - 1);
	memcpy(d + sizeof(pre) - 1, key, klen + 1);
	h->n++;
	return 0;
}

/* The text carries the provider key: wiped before it is freed. */
void
upstream_hdrs_free(struct upstream_hdrs *h)
{
	if (h->text.data != NULL)
		crypto_wipe(h->text.data, h->text.alloc);
	sc_buf_free(&h->text);
	if (h->nodes != h->node_buf)
		free(h->nodes);
	upstream_hdrs_init(h);
}

/* The curl_slist over h's text (curl only walks it: data and next). */
static struct curl_slist *
upstream_hdrs_list(struct upstream_hdrs *h)
{
	const char *p = h->text.data;
	size_t i;

	if (h->n == 0)
		return NULL;
	h->nodes = h->n <= UPSTREAM_HDRS_INLINE ? h->node_buf : sc_xmalloc(h->n * sizeof(*h->nodes));
	for (i = 0; i < h->n; i++) {
		h->nodes[i].data = (char *)p;
		h->nodes[i].next = i + 1 < h->n ? &h->nodes[i + 1] : NULL;
		p += strlen(p) + 1;
	}
	return h->nodes;
}

/* The options every transfer on x's handle shares, set once per handle: a
 * pooled transfer keeps them (its callbacks' data and error buffer are x
 * itself), so a request sets only what differs (URL, headers, body...). */
static void
upstream_easy_setup(struct upstream_xfer *x)
{
	CURL *e = x->easy;

	free(x->opts.url);
	memset(&x->opts, 0, sizeof(x->opts));
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	/* Without a proxy in the environment curl would look for one (five
	 * getenv) per transfer, to find none: say so once. */
	if (!up.env_proxy)
		curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
	if (up.ca_file != NULL)
		curl_easy_setopt(e, CURLOPT_CAINFO, up.ca_file);
	curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	/* The smallest upload buffer: bodies go out from our memory (POSTFIELDS),
	 * and 64 KiB buffers freed per transfer cost malloc consolidations. */
	curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, 16384L);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, upstream_header_cb);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, upstream_write_cb);
	curl_easy_setopt(e, CURLOPT_PRIVATE, x);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
}

/* A transfer and its handle: a pooled pair (cleared for the new transfer,
 * the handle's options kept) or a new one; NULL when curl has no handle. */
static struct upstream_xfer *
upstream_xfer_get(void)
{
	struct upstream_xfer *x;
	CURL *e;

	if (up.npool > 0) {
		struct upstream_opts o;

		x = up.pool[--up.npool];
		e = x->easy;
		o = x->opts;
		memset(x, 0, offsetof(struct upstream_xfer, content_type));
		x->content_type[0] = '\0';
		x->errbuf[0] = '\0';
		x->easy = e;
		x->opts = o;
		return x;
	}
	x = sc_xcalloc(1, sizeof(*x));
	if ((x->easy = curl_easy_init()) == NULL) {
		free(x);
		return NULL;
	}
	upstream_easy_setup(x);
	return x;
}

static void
upstream_free(struct upstream_xfer *x)
{
	loop_timer_cancel(up.loop, &x->ttfb);
	curl_multi_remove_handle(up.multi, x->easy);
	curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, NULL);	/* the list goes with the transfer */
	upstream_hdrs_free(&x->headers);
	up.active--;
	if (up.npool < UPSTREAM_POOL_MAX) {
		if (!x->completed || x->paused) {
			/* Cancelled or paused on the way: start from a clean handle. */
			curl_easy_reset(x->easy);
			upstream_easy_setup(x);
		}
		up.pool[up.npool++] = x;
	} else {
		curl_easy_cleanup(x->easy);
		free(x->opts.url);
		free(x);
	}
}

/* Finish x with result r: tell the owner, then free. */
static void
upstream_finish(struct upstream_xfer *x, enum upstream_result r)
{
	loop_timer_cancel(up.loop, &x->ttfb);
	curl_multi_remove_handle(up.multi, x->easy);
	x->ops->on_done(x->arg, x, r);
	upstream_free(x);
}

static enum upstream_result
upstream_map(struct upstream_xfer *x, CURLcode rc)
{
	if (rc == CURLE_OK)
		return UPSTREAM_OK;
	if (x->aborted)
		return UPSTREAM_EABORT;
	switch (rc) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_SSL_CONNECT_ERROR:
		return UPSTREAM_ECONNECT;
	case CURLE_OPERATION_TIMEDOUT:
		return x->got_byte ? UPSTREAM_EIO : UPSTREAM_ECONNECT;
	default:
		return UPSTREAM_EIO;
	}
}

static void
upstream_check_done(void)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(up.multi, &left)) != NULL) {
		struct upstream_xfer *x = NULL;
		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
		if (x == NULL)
			continue;
		x->completed = 1;
		upstream_finish(x, upstream_map(x, m->data.result));
	}
}

static void
upstream_ttfb_fire(struct loop *l, void *arg)
{
	struct upstream_xfer *x = arg;

	snprintf(x->errbuf, sizeof(x->errbuf), "no response within the first-byte timeout");
	upstream_finish(x, UPSTREAM_ETTFB);
}

/* Is this header line "Name: value" (name of nl bytes, lower case)? *v,
 * *vl: the value, without the blanks around it. */
static inline int
upstream_hdr(const char *line, size_t n, const char *name, size_t nl, const char **v, size_t *vl)
{
	size_t i, j;

	if (n <= nl || line[nl] != ':' || !http_ieq_n(line, name, nl))
		return 0;
	i = nl + 1;
	while (i < n && (line[i] == ' ' || line[i] == '\t'))
		i++;
	j = n;
	while (j > i && (line[j - 1] == ' ' || (line[j - 1] >= '\t' && line[j - 1] <= '\r')))	/* isspace */
		j--;
	*v = line + i;
	*vl = j - i;
	return 1;
}

/* The value v[0..n) into out (truncated to its size). */
static void
upstream_hdr_copy(const char *v, size_t n, char *out, size_t outlen)
{
	if (n >= outlen)
		n = outlen - 1;
	memcpy(out, v, n);
	out[n] = '\0';
}

/* A Content-Length value: its digits' number, or -1. */
static int64_t
upstream_length(const char *v, size_t n)
{
	int64_t cl = 0;
	size_t i;

	if (n == 0 || n > 18)
		return -1;
	for (i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		cl = cl * 10 + (v[i] - '0');
	}
	return cl;
}

static size_t
upstream_header_cb(char *p, size_t sz, size_t nm, void *arg)
{
	struct upstream_xfer *x = arg;
	size_t n = sz * nm, vl;
	const char *v;
	char ra[64];
	long code = 0;

	if (!x->got_byte) {
		x->got_byte = 1;
		loop_timer_cancel(up.loop, &x->ttfb);
	}
	if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) {
		/* A new response head (also after 1xx): forget the previous one's fields. */
		x->content_type[0] = '\0';
		x->content_length = -1;
		x->chunked = 0;
		x->retry_after = -1;
		return n;
	}
	switch (n > 0 ? p[0] | 0x20 : 0) {	/* the names we read, by their first letter in lower case */
	case 'c':
		if (upstream_hdr(p, n, "content-type", 12, &v, &vl)) {
			upstream_hdr_copy(v, vl, x->content_type, sizeof(x->content_type));
			return n;
		}
		if (upstream_hdr(p, n, "content-length", 14, &v, &vl)) {
			x->content_length = x->chunked ? -1 : upstream_length(v, vl);
			return n;
		}
		break;
	case 't':
		if (upstream_hdr(p, n, "transfer-encoding", 17, &v, &vl)) {
			x->chunked = 1;
			x->content_length = -1;
			return n;
		}
		break;
	case 'r':
		if (upstream_hdr(p, n, "retry-after", 11, &v, &vl)) {
			upstream_hdr_copy(v, vl, ra, sizeof(ra));
			x->retry_after = http_retry_after(ra, strlen(ra), sc_wall_ms() / 1000);
			return n;
		}
		break;
	default:
		break;
	}
	if ((n == 2 && p[0] == '\r' && p[1] == '\n') || (n == 1 && p[0] == '\n')) {
		curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
		if (code < 200)
			return n;	/* end of an interim 1xx head */
		x->status = (int)code;
		x->head_done = 1;
		if (x->ops->on_head(x->arg, x) != 0) {
			x->aborted = 1;
			return 0;
		}
	}
	return n;
}

static size_t
upstream_write_cb(char *p, size_t sz, size_t nm, void *arg)
{
	struct upstream_xfer *x = arg;
	size_t n = sz * nm, r;

	if (!x->head_done) {
		/* A response without a final blank line seen (should not happen). */
		long code = 0;
		curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
		x->status = (int)code;
		x->head_done = 1;
		if (x->ops->on_head(x->arg, x) != 0) {
			x->aborted = 1;
			return 0;
		}
	}
	r = x->ops->on_data(x->arg, p, n);
	if (r == UPSTREAM_PAUSE) {
		x->paused = 1;
		return CURL_WRITEFUNC_PAUSE;
	}
	if (r != n) {
		x->aborted = 1;
		return 0;
	}
	x->body_bytes += n;
	return n;
}

struct upstream_xfer *
upstream_start(const struct upstream_req *rq, const struct upstream_ops *ops, void *arg)
{
	struct upstream_xfer *x = upstream_xfer_get();
	long connect_ms, recv_buf;
	CURL *e;

	if (x == NULL) {
		if (rq->headers != NULL)
			upstream_hdrs_free(rq->headers);	/* they were the transfer's */
		return NULL;
	}
	e = x->easy;
	up.active++;
	x->ops = ops;
	x->arg = arg;
	if (rq->headers != NULL) {
		x->headers = *rq->headers;
		upstream_hdrs_init(rq->headers);
	} else {
		upstream_hdrs_init(&x->headers);
	}
	x->content_length = -1;
	x->retry_after = -1;
	loop_timer_init(&x->ttfb, upstream_ttfb_fire, x);
	/* A pooled handle keeps its options: set those that differ (the same
	 * upstream again, most of the time). */
	if (x->opts.url == NULL || strcmp(x->opts.url, rq->url) != 0) {
		free(x->opts.url);
		x->opts.url = sc_xstrdup(rq->url);
		curl_easy_setopt(e, CURLOPT_URL, rq->url);
	}
	connect_ms = rq->connect_timeout_ms > 0 ? rq->connect_timeout_ms : 10000L;
	if (x->opts.connect_ms != connect_ms) {
		x->opts.connect_ms = connect_ms;
		curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
	}
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, upstream_hdrs_list(&x->headers));
	/* The receive buffer every transfer holds while it runs (curl 7.88
	 * allocates it per transfer): 4 KiB, curl's default is 16; 1 KiB for a
	 * stream, so that thousands of them that wait for their next event stay
	 * small. An SSE event is a few hundred bytes; a large body just takes
	 * more reads (docs/performance.md measures both). */
	recv_buf = rq->stream ? UPSTREAM_STREAM_BUF : UPSTREAM_RECV_BUF;
	if (x->opts.recv_buf != recv_buf) {
		x->opts.recv_buf = recv_buf;
		curl_easy_setopt(e, CURLOPT_BUFFERSIZE, recv_buf);
	}
	x->body_len = rq->post ? rq->body_len : 0;
	if (rq->post) {
		if (!x->opts.post) {
			x->opts.post = 1;
			curl_easy_setopt(e, CURLOPT_POST, 1L);
		}
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, rq->body != NULL ? rq->body : "");
	} else {
		/* a pooled handle may have posted last time */
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, NULL);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)-1);
		curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
		x->opts.post = 0;
	}
	if (curl_multi_add_handle(up.multi, e) != CURLM_OK)
		goto fail;
	if (rq->ttfb_timeout_ms > 0)
		loop_timer_arm_in(up.loop, &x->ttfb, rq->ttfb_timeout_ms);
	return x;
fail:
	upstream_free(x);
	return NULL;
}

void
upstream_cancel(struct upstream_xfer *x)
{
	if (x != NULL)
		upstream_free(x);
}

void
upstream_resume(struct upstream_xfer *x)
{
	curl_easy_pause(x->easy, CURLPAUSE_CONT);
}

int
upstream_body_sent(const struct upstream_xfer *x)
{
	curl_off_t sent = 0;

	if (x->body_len == 0)
		return 1;
	if (curl_easy_getinfo(x->easy, CURLINFO_SIZE_UPLOAD_T, &sent) != CURLE_OK)
		return 0;
	return sent >= 0 && (uint64_t)sent >= x->body_len;
}

int
upstream_status(const struct upstream_xfer *x)
{
	return x->status;
}

const char *
upstream_content_type(const struct upstream_xfer *x)
{
	return x->content_type;
}

int64_t
upstream_content_length(const struct upstream_xfer *x)
{
	return x->content_length;
}

int
upstream_retry_after(const struct upstream_xfer *x)
{
	return x->retry_after;
}

const char *
upstream_error(const struct upstream_xfer *x)
{
	return x->errbuf[0] ? x->errbuf : "transfer failed";
}
