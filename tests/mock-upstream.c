/*
 * mock-upstream: a fake NVIDIA NIM (OpenAI-compatible API) for the black-box
 * tests and the benchmarks.
 *
 * One thread, one epoll set and one min-heap of timers (at most one timer per
 * connection), so thousands of concurrent slow streams cost nothing per event
 * but their own work. Each connection is a small state machine (enum
 * conn_state, changed only by conn_set_state): read one request, answer it —
 * at once, after a delay, as an SSE stream spread over time, or with a fault
 * injected — then read the next one (keep-alive; pipelined requests simply
 * wait in the input buffer until the current response is finished).
 *
 * Keys are checked like NIM does (401 for an unknown key, NIM-shaped 429 past
 * an exact per-key sliding window), and everything received is kept in a
 * bounded in-memory record that tests read through the loopback-only control
 * API under /_mock/. The contract (options, endpoints, fault names, record
 * fields) is in usage() below and in tests/blackbox/lib/mock.mjs.
 *
 * Only libc and json-c: this program must not depend on the code it tests.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <json.h>

#define HEAD_MAX (64 * 1024)		/* request line + header block, bytes */
#define HDRS_MAX 128			/* header fields per request */
#define TARGET_MAX 8192			/* request-target bytes */
#define IN_MAX (HEAD_MAX + 64 * 1024)	/* input buffer cap, bytes */
#define IN_INITIAL 4096			/* first input buffer allocation */
#define CHUNK_LINE_MAX 4096		/* chunk-size line / trailer line, bytes */
#define OUT_HIGH (256 * 1024)		/* unsent bytes above which streams pause */
#define KEEP_MAX (1024 * 1024)		/* per-connection buffers above this are freed between requests */
#define RECORD_MAX 100000		/* default record entries kept */
#define RECORD_BODY_MAX (64 * 1024)	/* default body bytes kept per record entry */
#define CHUNK_BYTES_MAX (1024 * 1024)	/* cap on X-Mock-Chunk-Bytes */
#define CHUNKS_MAX 1000000		/* cap on chunks per stream */
#define WIN_MAX (10u * 1000 * 1000)	/* cap on remembered start times per key */
#define KEY_BUCKETS 4096
#define EMB_DIM 8			/* embedding vector length */
#define EMB_INPUTS_MAX 100000
#define LINGER_US (2 * 1000000ull)	/* drain time after our FIN */
#define TERM_DELAY_US (10 * 1000ull)	/* pause before an injected RST */
#define ACCEPT_PAUSE_US (100 * 1000ull)	/* accept() pause on EMFILE */
#define DEFAULT_MAX_BODY (256ull << 20)
#define MAX_BODY_LIMIT (1ull << 30)	/* json-c takes an int length */
#define LISTEN_FD_TAG UINT64_MAX

/* A growable byte buffer; the owner sets any cap by checking before adding. */
struct buf {
	char *p;	/* owned */
	size_t len;	/* bytes used */
	size_t cap;	/* bytes allocated */
};

enum fault_kind {
	F_NONE,
	F_STATUS,	/* arg = HTTP status */
	F_HANG,		/* accept, never answer */
	F_RESET,	/* arg = chunks (bytes when not streaming), then RST */
	F_CLOSE,	/* arg = chunks (bytes when not streaming), then FIN */
	F_MALFORMED,	/* 200 with a body that is not JSON */
	F_HTML,		/* 200 text/html */
	F_DRIP,		/* arg = ms between single bytes of the whole response */
	F_SLOW_HEADERS,	/* arg = ms between single bytes of the header block */
	F_DELAY,	/* arg = ms before any byte of the response */
	F_SSE_429,	/* arg = content chunks, then a 429 error event in NIM's shape (streams) */
	F_SSE_429_OPENAI,	/* the same in OpenAI's shape */
	F_ECHO_KEY,	/* arg = HTTP status; the body echoes the request's key (below) */
};

struct fault {
	enum fault_kind kind;
	uint64_t arg;	/* meaning depends on kind, see above */
};

/* A key the mock accepts. Keys live until exit. */
struct key {
	char *name;		/* owned, NUL-terminated */
	size_t name_len;
	uint64_t rpm;		/* 0 = unlimited */
	struct fault fault;	/* injected into its requests; F_NONE = none */
	uint64_t fault_left;	/* uses left before the fault clears; 0 = forever */
	int64_t retry_after;	/* seconds for Retry-After with the fault; -1 = none */
	uint64_t *win;		/* owned ring of accepted start times, µs */
	size_t win_head;	/* index of the oldest */
	size_t win_len;		/* entries in use */
	size_t win_cap;		/* entries allocated */
	uint64_t accepted;	/* requests let through the window */
	uint64_t rejected_429;	/* requests answered 429 */
	struct key *hnext;	/* hash chain */
	struct key *lnext;	/* list of all keys, insertion order */
};

/* One received request, as the control API reports it. */
struct rec {
	uint64_t seq;		/* 0 = empty slot */
	uint64_t conn_id;
	uint64_t t_us;		/* request start, µs since mock start */
	uint64_t t_end_us;	/* response finished or aborted; 0 = not yet */
	char *blob;		/* owned: key, path, query, model, headers JSON, body */
	uint32_t key_len;	/* UINT32_MAX = no key */
	uint32_t path_len;
	uint32_t query_len;	/* UINT32_MAX = no query */
	uint32_t model_len;	/* UINT32_MAX = no model */
	uint32_t hdr_len;
	uint32_t body_saved;
	uint64_t body_len;	/* full body length received */
	char *resp;		/* owned: response body as sent (de-chunked), capped */
	uint32_t resp_len, resp_cap;
	uint32_t prompt_tokens;
	uint32_t completion_tokens;
	int status;		/* 0 = nothing sent */
	char method[16];
	bool stream;
	bool include_usage;
	bool aborted;
	bool has_usage;
};

enum api {
	API_NONE,		/* control API or framing error: not recorded */
	API_CHAT,
	API_COMPLETIONS,
	API_EMBEDDINGS,
	API_MODELS,
	API_NOT_FOUND,
	API_BAD_METHOD,
};

enum term {
	TERM_NONE,
	TERM_RESET,	/* RST after the queued bytes */
	TERM_CLOSE,	/* FIN after the queued bytes */
};

/* What to answer to the current request. */
struct req {
	uint64_t seq;		/* record entry, 0 = not recorded */
	uint64_t epoch;		/* g.rec_epoch when recorded */
	enum api api;
	bool keepalive;
	bool stream;
	bool include_usage;
	bool tools;
	bool custom_tool;	/* X-Mock-Tool: the call is c->tool, in one chunk */
	bool stream_counted;	/* counted in g.active_streams */
	uint32_t nchunks;	/* content chunks */
	uint32_t sent;		/* content chunks queued so far */
	uint32_t chunk_bytes;	/* pad each token's text to this many bytes; 0 = no padding */
	uint64_t interval_us;
	uint64_t first_delay_us;
	struct fault fault;
	int64_t retry_after;	/* -1 = none */
	uint32_t prompt_tokens;
	enum term term;
	int64_t created;	/* unix time for "created" */
};

/* Connection states, in lifecycle order. */
enum conn_state {
	CS_READ_HEAD,	/* waiting for (the rest of) a request head */
	CS_READ_BODY,	/* reading a Content-Length or chunked body */
	CS_WAIT,	/* answer decided, held back until c->due */
	CS_STREAM,	/* SSE chunks due at c->due, c->due + interval, ... */
	CS_HANG,	/* never answering */
	CS_FLUSH,	/* the whole answer is queued; writing (maybe dripping) */
	CS_TERM,	/* RST at c->due */
	CS_LINGER,	/* our FIN sent; discarding input until EOF or c->due */
};

enum chunk_state { CK_SIZE, CK_DATA, CK_DATA_CRLF, CK_TRAILER };

/* A header field: offsets into the connection's input buffer. */
struct hdr {
	uint32_t name, name_len, val, val_len;
};

struct conn {
	int fd;
	uint64_t id;		/* unique, never reused */
	enum conn_state state;
	bool loopback;		/* peer is 127/8 or ::1 */
	bool req_active;	/* a request was dispatched and is not finished */
	uint32_t ev_mask;	/* events registered with epoll */
	long hidx;		/* position in the timer heap, -1 = none */
	uint64_t tat;		/* timer deadline while in the heap, µs */
	uint64_t due;		/* next action time of the state, µs */

	struct buf in;		/* owned; head at [0, head_len), unread from in_pos */
	size_t in_pos;
	size_t head_len;	/* 0 = head not complete yet */
	size_t scan;		/* where to resume looking for the end of the head */

	char method[16];
	uint32_t target, target_len;	/* offsets into in */
	struct hdr hdrs[HDRS_MAX];
	int nhdrs;
	bool chunked;
	bool expect_continue;
	uint64_t body_left;	/* Content-Length bytes still to read */
	enum chunk_state ck_state;
	uint64_t ck_left;	/* bytes left in the current chunk */
	struct buf body;	/* owned; decoded request body */

	struct req r;
	struct buf model;	/* owned; the request's model as a JSON string literal */
	struct buf rbody;	/* owned; non-streaming response body being prepared */
	struct buf chead;	/* owned; "{"id":...,"model":...," of each SSE chunk */
	struct buf tool;	/* owned; "name":...,"arguments":... of an X-Mock-Tool call */

	struct buf out;		/* owned; bytes queued for the client from out_off */
	size_t out_off;
	size_t drip_end;	/* bytes of out before this offset go one at a time */
	uint64_t drip_us;	/* pause between dripped bytes */

	struct conn *next_free;
};

static struct {
	/* options */
	uint64_t window_us;
	uint32_t chunks;
	uint64_t interval_us, first_delay_us, latency_us;
	bool quiet;
	bool any_key;		/* unknown keys are created unlimited instead of 401 */
	bool trace;		/* MOCK_TRACE set: log state changes */
	uint64_t max_body;
	uint64_t record_max;	/* entries kept */
	uint64_t record_body_max;	/* request and response bytes kept per entry */

	int ep;			/* epoll fd */
	int lfd;		/* listening socket */
	bool accept_paused;
	uint64_t accept_resume;	/* µs */
	uint64_t start_us;

	uint64_t seq;		/* last request sequence number given */
	uint64_t rec_epoch;	/* bumped by reset, so old connections cannot touch new entries */
	struct rec *recs;	/* owned, record_max slots, slot = (seq - 1) % record_max */

	struct key *kbuckets[KEY_BUCKETS];
	struct key *kfirst, *klast;

	struct conn **fdtab;	/* owned, indexed by fd */
	size_t fdtab_len;
	struct conn *free_conns;
	uint64_t next_conn_id;

	struct conn **heap;	/* owned; timer min-heap on conn->tat */
	size_t heap_len, heap_cap;

	json_tokener *tok;
	struct buf scratch;	/* one SSE event or a small JSON document at a time */
	struct buf hscratch;	/* header JSON while recording */
	char *models_body;	/* owned, GET /v1/models answer */
	size_t models_len;

	uint64_t st_requests;
	uint64_t st_status[600];
	uint64_t st_aborted;
	uint64_t st_conns_total;
	uint64_t open_conns;
	uint64_t active_streams;
	uint64_t max_streams;
} g;

static volatile sig_atomic_t g_stop;
static uint64_t g_now;	/* µs, monotonic; refreshed after each wait */

static const char *const mock_tokens[] = {
	"Hello", " from", " the", " mock", " upstream", ".",
};
#define NTOKENS (sizeof(mock_tokens) / sizeof(mock_tokens[0]))
static const char tool_args[] = "{\"location\": \"Paris, France\", \"unit\": \"celsius\"}";
static const char *const mock_models[] = {
	"meta/llama-3.1-8b-instruct",
	"meta/llama-3.1-70b-instruct",
	"deepseek-ai/deepseek-r1",
	"mistralai/mixtral-8x7b-instruct-v0.1",
	"nvidia/nv-embedqa-e5-v5",
};

static void conn_close(struct conn *c, bool abort_req);
static void conn_drive(struct conn *c);

static void oom(void) __attribute__((noreturn));
static void oom(void)
{
	fputs("mock-upstream: out of memory\n", stderr);
	abort();
}

static void die(const char *what) __attribute__((noreturn));
static void die(const char *what)
{
	fprintf(stderr, "mock-upstream: %s: %s\n", what, strerror(errno));
	exit(1);
}

static uint64_t clock_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---------------------------------------------------------------- buffers */

static void buf_reserve(struct buf *b, size_t extra)
{
	size_t need, cap;
	char *p;

	if (b->cap - b->len >= extra)
		return;
	need = b->len + extra;
	if (need < b->len)
		oom();
	cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	p = realloc(b->p, cap);
	if (!p)
		oom();
	b->p = p;
	b->cap = cap;
}

static void buf_add(struct buf *b, const void *d, size_t n)
{
	if (!n)
		return;
	buf_reserve(b, n);
	memcpy(b->p + b->len, d, n);
	b->len += n;
}

static void buf_adds(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

static void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	buf_reserve(b, 128);
	va_start(ap, fmt);
	n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= b->cap - b->len) {
		buf_reserve(b, (size_t)n + 1);
		va_start(ap, fmt);
		vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
	}
	b->len += (size_t)n;
}

static void buf_add_u64(struct buf *b, uint64_t v)
{
	char tmp[24];
	size_t i = sizeof(tmp);

	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	buf_add(b, tmp + i, sizeof(tmp) - i);
}

static void buf_release(struct buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

/* Length of the valid UTF-8 sequence at s, or 0 if it is not one. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t len, i;
	uint32_t cp;

	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if (len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff)))
		return 0;
	if (len == 4 && (cp < 0x10000 || cp > 0x10ffff))
		return 0;
	return len;
}

/* Append s[0..n) as a JSON string literal; bytes that are not UTF-8 become U+FFFD. */
static void buf_add_jstr(struct buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, run = 0, l;
	char esc[6];

	buf_reserve(b, n + 2);
	buf_add(b, "\"", 1);
	while (i < n) {
		unsigned c = u[i];

		if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
			i++;
			continue;
		}
		buf_add(b, s + run, i - run);
		if (c < 0x80) {
			esc[0] = '\\';
			switch (c) {
			case '"': esc[1] = '"'; buf_add(b, esc, 2); break;
			case '\\': esc[1] = '\\'; buf_add(b, esc, 2); break;
			case '\n': esc[1] = 'n'; buf_add(b, esc, 2); break;
			case '\r': esc[1] = 'r'; buf_add(b, esc, 2); break;
			case '\t': esc[1] = 't'; buf_add(b, esc, 2); break;
			default:
				esc[1] = 'u';
				esc[2] = '0';
				esc[3] = '0';
				esc[4] = hex[c >> 4];
				esc[5] = hex[c & 15];
				buf_add(b, esc, 6);
			}
			i++;
		} else if ((l = utf8_len(u + i, n - i)) != 0) {
			buf_add(b, s + i, l);
			i += l;
		} else {
			buf_add(b, "\xef\xbf\xbd", 3);
			i++;
		}
		run = i;
	}
	buf_add(b, s + run, i - run);
	buf_add(b, "\"", 1);
}

static void buf_add_jcstr(struct buf *b, const char *s)
{
	buf_add_jstr(b, s, strlen(s));
}

/* Microseconds as milliseconds with three decimals (JSON number). */
static void buf_add_ms(struct buf *b, uint64_t us)
{
	buf_printf(b, "%" PRIu64 ".%03u", us / 1000, (unsigned)(us % 1000));
}

/* ---------------------------------------------------------------- parsing helpers */

/* A run of decimal digits and nothing else; false on junk or overflow. */
static bool parse_u64(const char *s, size_t n, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;

	if (n == 0 || n > 18)
		return false;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return true;
}

static bool parse_u64_str(const char *s, uint64_t *out)
{
	return parse_u64(s, strlen(s), out);
}

static bool name_eq(const char *a, size_t alen, const char *b)
{
	return strlen(b) == alen && strncasecmp(a, b, alen) == 0;
}

/* Parse a fault name as in X-Mock-Fault or POST /_mock/key. */
static bool fault_parse(const char *s, size_t n, struct fault *f)
{
	static const struct {
		const char *name;
		enum fault_kind kind;
		bool arg;
	} names[] = {
		{ "status", F_STATUS, true },
		{ "hang", F_HANG, false },
		{ "hang-first-byte", F_HANG, false },
		{ "reset-after", F_RESET, true },
		{ "close-after", F_CLOSE, true },
		{ "malformed", F_MALFORMED, false },
		{ "html", F_HTML, false },
		{ "drip", F_DRIP, true },
		{ "slow-headers", F_SLOW_HEADERS, true },
		{ "delay", F_DELAY, true },
		{ "sse-429", F_SSE_429, true },
		{ "sse-429-openai", F_SSE_429_OPENAI, true },
		{ "echo-key", F_ECHO_KEY, true },
		{ "none", F_NONE, false },
	};
	const char *eq;
	size_t nl, i;

	while (n && (s[0] == ' ' || s[0] == '\t'))
		s++, n--;
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	eq = memchr(s, '=', n);
	nl = eq ? (size_t)(eq - s) : n;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strlen(names[i].name) != nl || strncasecmp(s, names[i].name, nl) != 0)
			continue;
		if (names[i].arg != (eq != NULL))
			return false;
		f->kind = names[i].kind;
		f->arg = 0;
		if (eq && !parse_u64(eq + 1, n - nl - 1, &f->arg))
			return false;
		if ((f->kind == F_STATUS || f->kind == F_ECHO_KEY) && (f->arg < 100 || f->arg > 599))
			return false;
		if ((f->kind == F_DRIP || f->kind == F_SLOW_HEADERS) && f->arg == 0)
			f->arg = 1;
		return true;
	}
	return false;
}

static const char *http_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 201: return "Created";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 402: return "Payment Required";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 413: return "Payload Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 422: return "Unprocessable Entity";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}

/* ---------------------------------------------------------------- keys */

static uint64_t hash_bytes(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ull;

	while (n--) {
		h ^= (unsigned char)*s++;
		h *= 1099511628211ull;
	}
	return h;
}

static struct key *key_find(const char *name, size_t n)
{
	struct key *k;

	for (k = g.kbuckets[hash_bytes(name, n) % KEY_BUCKETS]; k; k = k->hnext)
		if (k->name_len == n && memcmp(k->name, name, n) == 0)
			return k;
	return NULL;
}

static struct key *key_add(const char *name, size_t n)
{
	struct key *k = key_find(name, n);
	size_t b;

	if (k)
		return k;
	k = calloc(1, sizeof(*k));
	if (!k || !(k->name = malloc(n + 1)))
		oom();
	memcpy(k->name, name, n);
	k->name[n] = '\0';
	k->name_len = n;
	k->retry_after = -1;
	b = hash_bytes(name, n) % KEY_BUCKETS;
	k->hnext = g.kbuckets[b];
	g.kbuckets[b] = k;
	if (g.klast)
		g.klast->lnext = k;
	else
		g.kfirst = k;
	g.klast = k;
	return k;
}

/*
 * The exact sliding window: admit iff fewer than rpm admitted requests
 * started in (now - window, now]; only admitted requests are remembered.
 */
static void key_expire(struct key *k, uint64_t now)
{
	while (k->win_len && now - k->win[k->win_head] >= g.window_us) {
		k->win_head = (k->win_head + 1) % k->win_cap;
		k->win_len--;
	}
}

static bool key_full(struct key *k, uint64_t now)
{
	key_expire(k, now);
	return k->rpm && k->win_len >= k->rpm;
}

/*
 * A per-model window of a key ("model_rpm" in POST /_mock/key) is a key
 * entry of its own named KEY '\x1f' MODEL, so stats list it as such.
 */
static struct key *key_model_find(const char *key, size_t kn, const char *model, size_t mn)
{
	char name[512];

	if (!model || kn + 1 + mn >= sizeof(name))
		return NULL;
	memcpy(name, key, kn);
	name[kn] = '\x1f';
	memcpy(name + kn + 1, model, mn);
	return key_find(name, kn + 1 + mn);
}

static bool key_admit(struct key *k, uint64_t now)
{
	if (key_full(k, now))
		return false;
	if (k->win_len == k->win_cap) {
		if (k->win_cap >= WIN_MAX) {
			/* only unlimited keys get here: forget the oldest */
			k->win_head = (k->win_head + 1) % k->win_cap;
			k->win_len--;
		} else {
			size_t ncap = k->win_cap ? k->win_cap * 2 : 16, i;
			uint64_t *nw = malloc(ncap * sizeof(*nw));

			if (!nw)
				oom();
			for (i = 0; i < k->win_len; i++)
				nw[i] = k->win[(k->win_head + i) % k->win_cap];
			free(k->win);
			k->win = nw;
			k->win_cap = ncap;
			k->win_head = 0;
		}
	}
	k->win[(k->win_head + k->win_len) % k->win_cap] = now;
	k->win_len++;
	return true;
}

/* ---------------------------------------------------------------- record */

static struct rec *rec_get(uint64_t seq, uint64_t epoch)
{
	struct rec *e;

	if (!seq || epoch != g.rec_epoch)
		return NULL;
	e = &g.recs[(seq - 1) % g.record_max];
	return e->seq == seq ? e : NULL;
}

static void rec_clear_slot(struct rec *e)
{
	free(e->blob);
	free(e->resp);
	memset(e, 0, sizeof(*e));
}

/* Keep a copy of response body bytes as they are queued, up to the cap. */
static void rec_resp_add(const struct req *r, const char *d, size_t n)
{
	struct rec *e = rec_get(r->seq, r->epoch);
	size_t room;

	if (!e || !n || e->resp_len >= g.record_body_max)
		return;
	room = (size_t)g.record_body_max - e->resp_len;
	if (n > room)
		n = room;
	if (e->resp_len + n > e->resp_cap) {
		size_t cap = e->resp_cap ? e->resp_cap : 256;
		char *p;

		while (cap < e->resp_len + n)
			cap *= 2;
		if (cap > g.record_body_max)
			cap = (size_t)g.record_body_max;
		p = realloc(e->resp, cap);
		if (!p)
			oom();
		e->resp = p;
		e->resp_cap = (uint32_t)cap;
	}
	memcpy(e->resp + e->resp_len, d, n);
	e->resp_len += (uint32_t)n;
}

static uint32_t blob_put(char **p, const char *s, size_t n, bool present)
{
	if (!present)
		return UINT32_MAX;
	if (n)
		memcpy(*p, s, n);
	*p += n;
	return (uint32_t)n;
}

/* ---------------------------------------------------------------- timers */

static void heap_swap(size_t a, size_t b)
{
	struct conn *t = g.heap[a];

	g.heap[a] = g.heap[b];
	g.heap[b] = t;
	g.heap[a]->hidx = (long)a;
	g.heap[b]->hidx = (long)b;
}

static void heap_up(size_t i)
{
	while (i > 0) {
		size_t p = (i - 1) / 2;

		if (g.heap[p]->tat <= g.heap[i]->tat)
			break;
		heap_swap(p, i);
		i = p;
	}
}

static void heap_down(size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;

		if (l < g.heap_len && g.heap[l]->tat < g.heap[m]->tat)
			m = l;
		if (r < g.heap_len && g.heap[r]->tat < g.heap[m]->tat)
			m = r;
		if (m == i)
			break;
		heap_swap(i, m);
		i = m;
	}
}

static void timer_clear(struct conn *c)
{
	size_t i, last;

	if (c->hidx < 0)
		return;
	i = (size_t)c->hidx;
	last = --g.heap_len;
	if (i != last) {
		g.heap[i] = g.heap[last];
		g.heap[i]->hidx = (long)i;
		heap_up(i);
		heap_down(i);
	}
	c->hidx = -1;
}

static void timer_set(struct conn *c, uint64_t at)
{
	if (c->hidx >= 0) {
		if (c->tat == at)
			return;
		c->tat = at;
		heap_up((size_t)c->hidx);
		heap_down((size_t)c->hidx);
		return;
	}
	if (g.heap_len == g.heap_cap) {
		size_t ncap = g.heap_cap ? g.heap_cap * 2 : 1024;
		struct conn **nh = realloc(g.heap, ncap * sizeof(*nh));

		if (!nh)
			oom();
		g.heap = nh;
		g.heap_cap = ncap;
	}
	c->tat = at;
	c->hidx = (long)g.heap_len;
	g.heap[g.heap_len++] = c;
	heap_up((size_t)c->hidx);
}

/* ---------------------------------------------------------------- connections */

static const char *conn_state_name(enum conn_state s)
{
	static const char *const names[] = {
		"read-head", "read-body", "wait", "stream", "hang", "flush", "term", "linger",
	};
	return names[s];
}

static void conn_set_state(struct conn *c, enum conn_state s)
{
	if (g.trace)
		fprintf(stderr, "mock: conn %" PRIu64 " %s -> %s\n", c->id,
			conn_state_name(c->state), conn_state_name(s));
	c->state = s;
}

static size_t conn_pending(const struct conn *c)
{
	return c->out.len - c->out_off;
}

/* Bring the epoll interest set and the timer in line with the state. */
static void conn_sync(struct conn *c)
{
	uint32_t want = EPOLLRDHUP;
	bool pending = conn_pending(c) > 0;
	bool dripping = pending && c->out_off < c->drip_end;
	bool timed = false;

	if (c->state == CS_READ_HEAD || c->state == CS_READ_BODY || c->state == CS_LINGER)
		want |= EPOLLIN;
	if (pending && !dripping)
		want |= EPOLLOUT;
	if (want != c->ev_mask) {
		struct epoll_event ev = { .events = want, .data.u64 = c->id << 24 | (uint64_t)c->fd };

		if (epoll_ctl(g.ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
			die("epoll_ctl");
		c->ev_mask = want;
	}
	switch (c->state) {
	case CS_WAIT:
	case CS_TERM:
	case CS_LINGER:
		timed = true;
		break;
	case CS_STREAM:
		timed = conn_pending(c) < OUT_HIGH;
		break;
	case CS_FLUSH:
		timed = dripping;
		break;
	default:
		break;
	}
	if (timed)
		timer_set(c, c->due);
	else
		timer_clear(c);
}

static void conn_new(int fd, const struct sockaddr_storage *ss)
{
	struct conn *c;
	struct epoll_event ev;
	int one = 1;

	if ((size_t)fd >= g.fdtab_len) {
		size_t n = g.fdtab_len ? g.fdtab_len : 1024;
		struct conn **t;

		while (n <= (size_t)fd)
			n *= 2;
		t = realloc(g.fdtab, n * sizeof(*t));
		if (!t)
			oom();
		memset(t + g.fdtab_len, 0, (n - g.fdtab_len) * sizeof(*t));
		g.fdtab = t;
		g.fdtab_len = n;
	}
	if (g.free_conns) {
		c = g.free_conns;
		g.free_conns = c->next_free;
	} else if (!(c = malloc(sizeof(*c)))) {
		oom();
	}
	memset(c, 0, sizeof(*c));
	c->fd = fd;
	c->id = ++g.next_conn_id;
	c->hidx = -1;
	c->state = CS_READ_HEAD;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)ss;

		c->loopback = (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)ss;

		c->loopback = IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr) ||
			(IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr) && sin6->sin6_addr.s6_addr[12] == 127);
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->ev_mask = EPOLLIN | EPOLLRDHUP;
	ev.events = c->ev_mask;
	ev.data.u64 = c->id << 24 | (uint64_t)fd;
	if (epoll_ctl(g.ep, EPOLL_CTL_ADD, fd, &ev) < 0)
		die("epoll_ctl");
	g.fdtab[fd] = c;
	g.open_conns++;
	g.st_conns_total++;
}

/* The current request's response is over (sent, aborted, or cut by a fault). */
static void req_finish(struct conn *c, bool aborted)
{
	struct rec *e = rec_get(c->r.seq, c->r.epoch);

	if (!c->req_active)
		return;
	c->req_active = false;
	if (c->r.stream_counted) {
		g.active_streams--;
		c->r.stream_counted = false;
	}
	if (e) {
		e->t_end_us = clock_us() - g.start_us;
		if (!e->t_end_us)
			e->t_end_us = 1;
		if (aborted) {
			e->aborted = true;
			g.st_aborted++;
		}
	}
	if (!g.quiet && c->r.seq)
		fprintf(stderr, "mock: #%" PRIu64 " conn %" PRIu64 " status %d%s\n", c->r.seq, c->id,
			e ? e->status : 0, aborted ? " aborted" : "");
}

/* The only teardown: every error path and every end of a connection comes here. */
static void conn_close(struct conn *c, bool abort_req)
{
	req_finish(c, abort_req && c->r.term == TERM_NONE);
	timer_clear(c);
	close(c->fd);
	g.fdtab[c->fd] = NULL;
	g.open_conns--;
	buf_release(&c->in);
	buf_release(&c->body);
	buf_release(&c->out);
	buf_release(&c->model);
	buf_release(&c->rbody);
	buf_release(&c->chead);
	buf_release(&c->tool);
	c->next_free = g.free_conns;
	g.free_conns = c;
}

/* close() with SO_LINGER 0: the peer sees a connection reset. */
static void conn_reset(struct conn *c)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	conn_close(c, false);
}

/* Half-close and drain, so a final response is not destroyed by an RST. */
static void conn_linger(struct conn *c)
{
	shutdown(c->fd, SHUT_WR);
	c->due = g_now + LINGER_US;
	conn_set_state(c, CS_LINGER);
}

/*
 * Send what is queued. Returns 0 when nothing is left, 1 when bytes remain
 * (socket full, or dripping), -1 when the connection was closed.
 */
static int conn_write(struct conn *c)
{
	while (c->out_off < c->out.len) {
		size_t n = c->out.len - c->out_off;
		ssize_t w;

		if (c->out_off < c->drip_end) {
			if (g_now < c->due)
				return 1;
			n = 1;
		}
		w = send(c->fd, c->out.p + c->out_off, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				break;
			conn_close(c, true);
			return -1;
		}
		c->out_off += (size_t)w;
		if (n == 1 && c->out_off <= c->drip_end) {
			c->due = g_now + c->drip_us;
			if (c->out_off < c->drip_end)
				return 1;
		}
	}
	if (c->out_off == c->out.len) {
		c->out.len = c->out_off = 0;
		c->drip_end = 0;
		return 0;
	}
	if (c->out_off >= 65536 && c->out_off * 2 >= c->out.len) {
		memmove(c->out.p, c->out.p + c->out_off, c->out.len - c->out_off);
		c->out.len -= c->out_off;
		c->drip_end = c->drip_end > c->out_off ? c->drip_end - c->out_off : 0;
		c->out_off = 0;
	}
	return 1;
}

/* ---------------------------------------------------------------- responses */

/* Status line and headers; clen < 0 means chunked. Counts the status. */
static void resp_head(struct conn *c, int status, const char *ctype, long long clen, const char *extra)
{
	struct rec *e = rec_get(c->r.seq, c->r.epoch);
	struct buf *o = &c->out;

	buf_printf(o, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n", status, http_reason(status), ctype);
	if (clen >= 0)
		buf_printf(o, "Content-Length: %lld\r\n", clen);
	else
		buf_adds(o, "Transfer-Encoding: chunked\r\n");
	if (c->r.seq) {
		buf_adds(o, "x-mock-request-seq: ");
		buf_add_u64(o, c->r.seq);
		buf_adds(o, "\r\n");
	}
	if (extra)
		buf_adds(o, extra);
	if (!c->r.keepalive)
		buf_adds(o, "Connection: close\r\n");
	buf_adds(o, "\r\n");
	if (e)
		e->status = status;
	if (c->r.seq && status >= 100 && status < 600)
		g.st_status[status]++;
}

/* A complete response with a body; the connection moves on when it is sent. */
static void resp_full(struct conn *c, int status, const char *ctype, const char *body, size_t len,
		      const char *extra)
{
	resp_head(c, status, ctype, (long long)len, extra);
	buf_add(&c->out, body, len);
	rec_resp_add(&c->r, body, len);
	conn_set_state(c, CS_FLUSH);
}

static const char *hdr_get(const struct conn *c, const char *name, size_t *len);

/* The Retry-After header line for retry_after seconds: delta-seconds, or an
 * HTTP-date that far ahead when the request asks for one with
 * X-Mock-Retry-After-Form: imf | rfc850 | asctime (RFC 9110 §5.6.7). */
static void retry_after_line(const struct conn *c, int64_t retry_after, char *out, size_t outlen)
{
	size_t fn = 0;
	const char *form = hdr_get(c, "x-mock-retry-after-form", &fn);
	char date[64] = "";
	time_t t = time(NULL) + (time_t)retry_after;
	struct tm tm;

	gmtime_r(&t, &tm);
	if (form != NULL && fn == 3 && strncasecmp(form, "imf", 3) == 0)
		strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
	else if (form != NULL && fn == 6 && strncasecmp(form, "rfc850", 6) == 0) {
		char day[24], clock[16];	/* the obsolete form's two-digit year is the point */
		strftime(day, sizeof(day), "%A, %d-%b", &tm);
		strftime(clock, sizeof(clock), "%H:%M:%S", &tm);
		snprintf(date, sizeof(date), "%s-%02d %s GMT", day, tm.tm_year % 100, clock);
	}
	else if (form != NULL && fn == 7 && strncasecmp(form, "asctime", 7) == 0)
		strftime(date, sizeof(date), "%a %b %e %H:%M:%S %Y", &tm);
	if (date[0] != '\0')
		snprintf(out, outlen, "Retry-After: %s\r\n", date);
	else
		snprintf(out, outlen, "Retry-After: %" PRId64 "\r\n", retry_after);
}

/* An error in NIM's shape: {"status":S,"title":"..."[,"detail":"..."]}. */
static void resp_nim(struct conn *c, int status, const char *detail, int64_t retry_after)
{
	struct buf *b = &g.scratch;
	char extra[96];

	b->len = 0;
	buf_printf(b, "{\"status\":%d,\"title\":", status);
	buf_add_jcstr(b, http_reason(status));
	if (detail) {
		buf_adds(b, ",\"detail\":");
		buf_add_jcstr(b, detail);
	}
	buf_adds(b, "}");
	if (retry_after >= 0)
		retry_after_line(c, retry_after, extra, sizeof(extra));
	resp_full(c, status, "application/json", b->p, b->len, retry_after >= 0 ? extra : NULL);
}

/* An upstream that echoes the caller's key back in its error body, the way
 * real ones have been seen to, in every form a redactor must catch: without
 * its vendor prefix, glued into a word, as 8-12 character pieces (start,
 * middle, end), twice in a row, hidden behind a JSON \u escape, and once in
 * a field of its own. key[0..kn) is the request's bearer token. */
static void resp_echo_key(struct conn *c, int status, const char *key, size_t kn)
{
	struct buf *b = &g.scratch;
	const char *dash = memchr(key, '-', kn);
	const char *bare = dash && (size_t)(dash - key) < kn - 1 ? dash + 1 : key;
	size_t bn = kn - (size_t)(bare - key);
	char ukey[8];

	b->len = 0;
	buf_printf(b, "{\"status\":%d,\"title\":", status);
	buf_add_jcstr(b, http_reason(status));
	buf_adds(b, ",\"detail\":\"Authentication failed for secret ");
	buf_add(b, bare, bn);
	buf_adds(b, "; token=");
	buf_add(b, key, kn);
	buf_adds(b, "&x=1; starts ");
	buf_add(b, bare, bn < 10 ? bn : 10);
	buf_adds(b, ", middle ");
	if (bn > 16)
		buf_add(b, bare + 4, 9);
	buf_adds(b, ", ends …");
	buf_add(b, key + (kn > 12 ? kn - 12 : 0), kn > 12 ? 12 : kn);
	buf_adds(b, ", twice ");
	buf_add(b, bare, bn);
	buf_add(b, bare, bn);
	buf_adds(b, ", escaped ");
	snprintf(ukey, sizeof(ukey), "\\u%04x", (unsigned char)bare[0]);
	buf_adds(b, ukey);
	buf_add(b, bare + 1, bn - 1);
	buf_adds(b, "\",\"key\":\"");
	buf_add(b, bare, bn);
	buf_adds(b, "\"}");
	resp_full(c, status, "application/json", b->p, b->len, NULL);
}

/* A framing error before the request could be dispatched: answer and close. */
static void resp_framing_error(struct conn *c, int status)
{
	memset(&c->r, 0, sizeof(c->r));
	c->req_active = true;
	c->r.keepalive = false;
	resp_nim(c, status, NULL, -1);
}

static void http_chunk(struct conn *c, const char *d, size_t n)
{
	buf_printf(&c->out, "%zx\r\n", n);
	buf_add(&c->out, d, n);
	buf_add(&c->out, "\r\n", 2);
	rec_resp_add(&c->r, d, n);
}

/* Token i as JSON string content (no quotes), padded with '.' to r->chunk_bytes. */
static void add_token(struct buf *b, const struct req *r, uint32_t i)
{
	const char *t = mock_tokens[i % NTOKENS];
	size_t n = strlen(t);

	buf_add(b, t, n);
	if (r->chunk_bytes > n) {
		buf_reserve(b, r->chunk_bytes - n);
		memset(b->p + b->len, '.', r->chunk_bytes - n);
		b->len += r->chunk_bytes - n;
	}
}

static void add_usage(struct buf *b, uint32_t prompt, uint32_t completion)
{
	buf_adds(b, "\"usage\":{\"prompt_tokens\":");
	buf_add_u64(b, prompt);
	buf_adds(b, ",\"completion_tokens\":");
	buf_add_u64(b, completion);
	buf_adds(b, ",\"total_tokens\":");
	buf_add_u64(b, (uint64_t)prompt + completion);
	buf_adds(b, "}");
}

/* Content chunks a stream sends (and non-streaming usage counts). */
static uint32_t req_content_chunks(const struct req *r)
{
	if (r->tools && (r->nchunks == 0 || r->custom_tool))
		return 1;
	return r->nchunks;
}

/* Byte range of the tool-call arguments carried by chunk i of n. */
static void tool_piece(uint32_t i, uint32_t n, size_t *off, size_t *len)
{
	size_t total = sizeof(tool_args) - 1;
	size_t a = total * i / n, b = total * (i + 1) / n;

	*off = a;
	*len = b - a;
}

/* Queue content chunk i as one SSE event in one HTTP chunk. */
static void stream_chunk(struct conn *c, uint32_t i)
{
	struct req *r = &c->r;
	struct buf *e = &g.scratch;
	uint32_t n = req_content_chunks(r);
	bool last = i + 1 == n;
	size_t off, len;

	e->len = 0;
	buf_add(e, "data: ", 6);
	buf_add(e, c->chead.p, c->chead.len);
	if (r->api == API_COMPLETIONS) {
		buf_adds(e, "\"choices\":[{\"index\":0,\"text\":\"");
		add_token(e, r, i);
		buf_adds(e, "\",\"logprobs\":null,\"finish_reason\":");
		buf_adds(e, last ? "\"stop\"}]}\n\n" : "null}]}\n\n");
	} else if (r->tools) {
		buf_adds(e, "\"choices\":[{\"index\":0,\"delta\":{");
		if (r->custom_tool) {
			buf_adds(e, "\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":0,\"id\":\"call_mock_");
			buf_add_u64(e, r->seq);
			buf_adds(e, "\",\"type\":\"function\",\"function\":{");
			buf_add(e, c->tool.p, c->tool.len);
			buf_adds(e, "}}]},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}]}\n\n");
			http_chunk(c, e->p, e->len);
			return;
		}
		tool_piece(i, n, &off, &len);
		if (i == 0) {
			buf_adds(e, "\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":0,\"id\":\"call_mock_");
			buf_add_u64(e, r->seq);
			buf_adds(e, "\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":");
		} else {
			buf_adds(e, "\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":");
		}
		buf_add_jstr(e, tool_args + off, len);
		buf_adds(e, "}}]},\"logprobs\":null,\"finish_reason\":");
		buf_adds(e, last ? "\"tool_calls\"}]}\n\n" : "null}]}\n\n");
	} else {
		buf_adds(e, i == 0 ? "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\""
				   : "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"");
		add_token(e, r, i);
		buf_adds(e, "\"},\"logprobs\":null,\"finish_reason\":");
		buf_adds(e, last ? "\"stop\"}]}\n\n" : "null}]}\n\n");
	}
	http_chunk(c, e->p, e->len);
}

/* Queue what follows the content chunks: finish, usage, [DONE], last chunk. */
static void stream_tail(struct conn *c)
{
	struct req *r = &c->r;
	struct buf *e = &g.scratch;
	uint32_t n = req_content_chunks(r);

	if (n == 0) {
		e->len = 0;
		buf_add(e, "data: ", 6);
		buf_add(e, c->chead.p, c->chead.len);
		if (r->api == API_COMPLETIONS)
			buf_adds(e, "\"choices\":[{\"index\":0,\"text\":\"\",\"logprobs\":null,\"finish_reason\":\"stop\"}]}\n\n");
		else
			buf_adds(e, "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
				    "\"logprobs\":null,\"finish_reason\":\"stop\"}]}\n\n");
		http_chunk(c, e->p, e->len);
	}
	if (r->include_usage) {
		e->len = 0;
		buf_add(e, "data: ", 6);
		buf_add(e, c->chead.p, c->chead.len);
		buf_adds(e, "\"choices\":[],");
		add_usage(e, r->prompt_tokens, n);
		buf_adds(e, "}\n\n");
		http_chunk(c, e->p, e->len);
	}
	buf_adds(&c->out, "e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n");
	rec_resp_add(r, "data: [DONE]\n\n", 14);
}

/* The non-streaming body of a chat or text completion, into c->rbody. */
static void completion_body(struct conn *c)
{
	struct req *r = &c->r;
	struct buf *b = &c->rbody;
	uint32_t n = req_content_chunks(r), i;

	b->len = 0;
	if (r->api == API_COMPLETIONS)
		buf_adds(b, "{\"id\":\"cmpl-mock-");
	else
		buf_adds(b, "{\"id\":\"chatcmpl-mock-");
	buf_add_u64(b, r->seq);
	buf_adds(b, r->api == API_COMPLETIONS ? "\",\"object\":\"text_completion\",\"created\":"
					      : "\",\"object\":\"chat.completion\",\"created\":");
	buf_printf(b, "%" PRId64 ",\"model\":", r->created);
	buf_add(b, c->model.p, c->model.len);
	if (r->api == API_COMPLETIONS)
		buf_adds(b, ",\"choices\":[{\"index\":0,\"text\":\"");
	else if (r->tools)
		buf_adds(b, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":null,");
	else
		buf_adds(b, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"");
	if (r->tools) {
		buf_adds(b, "\"tool_calls\":[{\"id\":\"call_mock_");
		buf_add_u64(b, r->seq);
		buf_adds(b, "\",\"type\":\"function\",\"function\":{");
		if (r->custom_tool) {
			buf_add(b, c->tool.p, c->tool.len);
		} else {
			buf_adds(b, "\"name\":\"get_weather\",\"arguments\":");
			buf_add_jcstr(b, tool_args);
		}
		buf_adds(b, "}}]},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}],");
	} else {
		/* the tokens need no escaping */
		for (i = 0; i < n; i++)
			add_token(b, r, i);
		buf_adds(b, r->api == API_COMPLETIONS ? "\",\"logprobs\":null,\"finish_reason\":\"stop\"}],"
						      : "\"},\"logprobs\":null,\"finish_reason\":\"stop\"}],");
	}
	add_usage(b, r->prompt_tokens, n);
	buf_adds(b, "}");
}

static void stream_head_prefix(struct conn *c)
{
	struct req *r = &c->r;
	struct buf *h = &c->chead;

	h->len = 0;
	buf_adds(h, r->api == API_COMPLETIONS ? "{\"id\":\"cmpl-mock-" : "{\"id\":\"chatcmpl-mock-");
	buf_add_u64(h, r->seq);
	buf_adds(h, r->api == API_COMPLETIONS ? "\",\"object\":\"text_completion\",\"created\":"
					      : "\",\"object\":\"chat.completion.chunk\",\"created\":");
	buf_printf(h, "%" PRId64 ",\"model\":", r->created);
	buf_add(h, c->model.p, c->model.len);
	buf_adds(h, ",");
}

static void rec_set_usage(struct conn *c, uint32_t completion)
{
	struct rec *e = rec_get(c->r.seq, c->r.epoch);

	if (!e)
		return;
	e->has_usage = true;
	e->prompt_tokens = c->r.prompt_tokens;
	e->completion_tokens = completion;
}

/* Queue the answer (or its beginning, for streams); called when any delay is over. */
static void resp_start(struct conn *c)
{
	static const char html[] =
		"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>"
		"<body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>\n";
	static const char malformed[] = "{\"id\":\"chatcmpl-mock-malformed\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,";
	static const char malformed_sse[] = "data: {\"id\":\"chatcmpl-mock-malformed\",\"choices\":[{\"delta\":\n\n";
	struct req *r = &c->r;
	enum fault_kind fk = r->fault.kind;
	size_t head_end;

	if (fk == F_HTML) {
		resp_full(c, 200, "text/html; charset=utf-8", html, sizeof(html) - 1, NULL);
		return;
	}
	if (fk == F_MALFORMED && !r->stream) {
		resp_full(c, 200, "application/json", malformed, sizeof(malformed) - 1, NULL);
		return;
	}
	if (fk == F_MALFORMED) {
		resp_head(c, 200, "text/event-stream", -1, "Cache-Control: no-cache\r\n");
		http_chunk(c, malformed_sse, sizeof(malformed_sse) - 1);
		buf_adds(&c->out, "e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n");
		rec_resp_add(r, "data: [DONE]\n\n", 14);
		conn_set_state(c, CS_FLUSH);
		return;
	}

	if (!r->stream) {
		const char *body;
		size_t len;

		if (r->api == API_MODELS) {
			body = g.models_body;
			len = g.models_len;
		} else {
			if (r->api != API_EMBEDDINGS)
				completion_body(c);
			body = c->rbody.p;
			len = c->rbody.len;
		}
		resp_head(c, 200, "application/json", (long long)len, NULL);
		head_end = c->out.len;
		if (fk == F_RESET || fk == F_CLOSE) {
			buf_add(&c->out, body, r->fault.arg < len ? r->fault.arg : len);
			rec_resp_add(r, body, r->fault.arg < len ? r->fault.arg : len);
			r->term = fk == F_RESET ? TERM_RESET : TERM_CLOSE;
		} else {
			buf_add(&c->out, body, len);
			rec_resp_add(r, body, len);
			if (r->api == API_CHAT || r->api == API_COMPLETIONS)
				rec_set_usage(c, req_content_chunks(r));
			else if (r->api == API_EMBEDDINGS)
				rec_set_usage(c, 0);
		}
	} else {
		resp_head(c, 200, "text/event-stream", -1, "Cache-Control: no-cache\r\n");
		head_end = c->out.len;
		r->stream_counted = true;
		if (++g.active_streams > g.max_streams)
			g.max_streams = g.active_streams;
		stream_head_prefix(c);
		if (fk != F_RESET && fk != F_CLOSE)
			rec_set_usage(c, req_content_chunks(r));
		r->sent = 0;
		if (fk != F_DRIP && fk != F_SLOW_HEADERS) {
			c->due = g_now + r->first_delay_us;
			conn_set_state(c, CS_STREAM);
			return;
		}
		/* dripped streams are written out in full at once, then trickled */
		for (; r->sent < req_content_chunks(r); r->sent++)
			stream_chunk(c, r->sent);
		stream_tail(c);
	}
	if (fk == F_DRIP || fk == F_SLOW_HEADERS) {
		c->drip_end = fk == F_DRIP ? c->out.len : head_end;
		c->drip_us = r->fault.arg * 1000;
		c->due = g_now;
	}
	conn_set_state(c, CS_FLUSH);
}

/* A rate-limit error event inside the 200 stream, then its end (sse-429*). */
static void stream_error_tail(struct conn *c)
{
	static const char nim[] = "data: {\"status\":429,\"title\":\"Too Many Requests\","
		"\"detail\":\"Rate limit exceeded\"}\n\n";
	static const char oai[] = "data: {\"error\":{\"message\":\"Rate limit reached for requests\","
		"\"type\":\"requests\",\"param\":null,\"code\":\"rate_limit_exceeded\"}}\n\n";
	struct req *r = &c->r;
	const char *ev = r->fault.kind == F_SSE_429 ? nim : oai;
	size_t n = r->fault.kind == F_SSE_429 ? sizeof(nim) - 1 : sizeof(oai) - 1;

	http_chunk(c, ev, n);
	buf_adds(&c->out, "e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n");
	rec_resp_add(r, "data: [DONE]\n\n", 14);
}

/* Queue the stream chunks that are due, up to the output high-water mark. */
static void stream_emit(struct conn *c)
{
	struct req *r = &c->r;
	uint32_t n = req_content_chunks(r), stop = n;
	bool cut = r->fault.kind == F_RESET || r->fault.kind == F_CLOSE;
	bool err = r->fault.kind == F_SSE_429 || r->fault.kind == F_SSE_429_OPENAI;

	if ((cut || err) && r->fault.arg < stop)
		stop = (uint32_t)r->fault.arg;
	while (r->sent < stop) {
		if (c->due > g_now || conn_pending(c) >= OUT_HIGH)
			return;
		stream_chunk(c, r->sent++);
		c->due += r->interval_us;
	}
	if (cut)
		r->term = r->fault.kind == F_RESET ? TERM_RESET : TERM_CLOSE;
	else if (err)
		stream_error_tail(c);
	else
		stream_tail(c);
	conn_set_state(c, CS_FLUSH);
}

/* ---------------------------------------------------------------- control API */

static void rec_entry_json(struct buf *b, const struct rec *e)
{
	const char *p = e->blob;

	buf_adds(b, "{\"seq\":");
	buf_add_u64(b, e->seq);
	buf_adds(b, ",\"t_ms\":");
	buf_add_ms(b, e->t_us);
	buf_adds(b, ",\"t_end_ms\":");
	if (e->t_end_us)
		buf_add_ms(b, e->t_end_us);
	else
		buf_adds(b, "null");
	buf_adds(b, ",\"conn\":");
	buf_add_u64(b, e->conn_id);
	buf_adds(b, ",\"key\":");
	if (e->key_len == UINT32_MAX) {
		buf_adds(b, "null");
	} else {
		buf_add_jstr(b, p, e->key_len);
		p += e->key_len;
	}
	buf_adds(b, ",\"method\":");
	buf_add_jcstr(b, e->method);
	buf_adds(b, ",\"path\":");
	buf_add_jstr(b, p, e->path_len);
	p += e->path_len;
	buf_adds(b, ",\"query\":");
	if (e->query_len == UINT32_MAX) {
		buf_adds(b, "null");
	} else {
		buf_add_jstr(b, p, e->query_len);
		p += e->query_len;
	}
	buf_adds(b, ",\"model\":");
	if (e->model_len == UINT32_MAX) {
		buf_adds(b, "null");
	} else {
		buf_add_jstr(b, p, e->model_len);
		p += e->model_len;
	}
	buf_adds(b, e->stream ? ",\"stream\":true" : ",\"stream\":false");
	buf_adds(b, e->include_usage ? ",\"include_usage\":true" : ",\"include_usage\":false");
	buf_adds(b, ",\"status\":");
	if (e->status)
		buf_add_u64(b, (uint64_t)e->status);
	else
		buf_adds(b, "null");
	buf_adds(b, ",\"body_len\":");
	buf_add_u64(b, e->body_len);
	buf_adds(b, ",\"headers\":");
	buf_add(b, p, e->hdr_len);
	p += e->hdr_len;
	buf_adds(b, ",\"body\":");
	buf_add_jstr(b, p, e->body_saved);
	buf_adds(b, ",\"response\":");
	if (e->status)
		buf_add_jstr(b, e->resp ? e->resp : "", e->resp_len);
	else
		buf_adds(b, "null");
	buf_adds(b, e->aborted ? ",\"aborted\":true,\"usage\":" : ",\"aborted\":false,\"usage\":");
	if (e->has_usage) {
		buf_adds(b, "{");
		buf_adds(b, "\"prompt_tokens\":");
		buf_add_u64(b, e->prompt_tokens);
		buf_adds(b, ",\"completion_tokens\":");
		buf_add_u64(b, e->completion_tokens);
		buf_adds(b, ",\"total_tokens\":");
		buf_add_u64(b, (uint64_t)e->prompt_tokens + e->completion_tokens);
		buf_adds(b, "}}");
	} else {
		buf_adds(b, "null}");
	}
}

/* Value of query parameter name in q[0..qn), or NULL. */
static const char *query_param(const char *q, size_t qn, const char *name, size_t *vlen)
{
	size_t nl = strlen(name);

	while (qn) {
		const char *amp = memchr(q, '&', qn);
		size_t part = amp ? (size_t)(amp - q) : qn;

		if (part > nl && memcmp(q, name, nl) == 0 && q[nl] == '=') {
			*vlen = part - nl - 1;
			return q + nl + 1;
		}
		if (!amp)
			break;
		qn -= part + 1;
		q = amp + 1;
	}
	return NULL;
}

static void ctl_record(struct conn *c, const char *q, size_t qn)
{
	struct buf *b = &c->rbody;
	uint64_t since = 0, first, s;
	size_t vl;
	const char *v = query_param(q, qn, "since", &vl);
	bool comma = false;

	if (v && !parse_u64(v, vl, &since))
		since = 0;
	first = g.seq > g.record_max ? g.seq - g.record_max + 1 : 1;
	if (since + 1 > first)
		first = since + 1;
	b->len = 0;
	buf_adds(b, "{\"requests\":[");
	for (s = first; s <= g.seq; s++) {
		const struct rec *e = &g.recs[(s - 1) % g.record_max];

		if (e->seq != s)
			continue;
		if (comma)
			buf_adds(b, ",");
		comma = true;
		rec_entry_json(b, e);
	}
	buf_adds(b, "]}");
	resp_full(c, 200, "application/json", b->p, b->len, NULL);
}

static void ctl_stats(struct conn *c)
{
	struct buf *b = &g.scratch;
	struct key *k;
	bool comma = false;
	int s;

	b->len = 0;
	buf_adds(b, "{\"requests\":");
	buf_add_u64(b, g.st_requests);
	buf_adds(b, ",\"by_status\":{");
	for (s = 100; s < 600; s++) {
		if (!g.st_status[s])
			continue;
		buf_printf(b, "%s\"%d\":%" PRIu64, comma ? "," : "", s, g.st_status[s]);
		comma = true;
	}
	buf_adds(b, "},\"by_key\":{");
	comma = false;
	for (k = g.kfirst; k; k = k->lnext) {
		if (comma)
			buf_adds(b, ",");
		comma = true;
		buf_add_jstr(b, k->name, k->name_len);
		buf_adds(b, ":{\"accepted\":");
		buf_add_u64(b, k->accepted);
		buf_adds(b, ",\"rejected_429\":");
		buf_add_u64(b, k->rejected_429);
		buf_adds(b, ",\"rpm\":");
		buf_add_u64(b, k->rpm);
		buf_adds(b, "}");
	}
	buf_adds(b, "},\"open_connections\":");
	buf_add_u64(b, g.open_conns);
	buf_adds(b, ",\"aborted\":");
	buf_add_u64(b, g.st_aborted);
	buf_adds(b, ",\"max_concurrent_streams\":");
	buf_add_u64(b, g.max_streams);
	buf_adds(b, ",\"active_streams\":");
	buf_add_u64(b, g.active_streams);
	buf_adds(b, ",\"connections_total\":");
	buf_add_u64(b, g.st_conns_total);
	buf_adds(b, "}");
	resp_full(c, 200, "application/json", b->p, b->len, NULL);
}

static void ctl_reset(struct conn *c)
{
	static const char ok[] = "{\"ok\":true}";
	struct key *k;
	size_t i;

	for (i = 0; i < g.record_max; i++)
		if (g.recs[i].seq)
			rec_clear_slot(&g.recs[i]);
	g.seq = 0;
	g.rec_epoch++;
	for (k = g.kfirst; k; k = k->lnext) {
		k->win_len = k->win_head = 0;
		k->fault.kind = F_NONE;
		k->fault_left = 0;
		k->retry_after = -1;
		k->accepted = k->rejected_429 = 0;
	}
	g.st_requests = g.st_aborted = 0;
	memset(g.st_status, 0, sizeof(g.st_status));
	g.max_streams = g.active_streams;
	resp_full(c, 200, "application/json", ok, sizeof(ok) - 1, NULL);
}

static void ctl_error(struct conn *c, int status, const char *msg)
{
	struct buf *b = &g.scratch;

	b->len = 0;
	buf_adds(b, "{\"error\":");
	buf_add_jcstr(b, msg);
	buf_adds(b, "}");
	resp_full(c, status, "application/json", b->p, b->len, NULL);
}

/* POST /_mock/key {"key":K,"rpm":N,"fault":"status=500"|null,"fault_count":N,"retry_after":S} */
static void ctl_key(struct conn *c)
{
	static const char ok[] = "{\"ok\":true}";
	json_object *jo, *v;
	struct key *k;
	struct fault f = { F_NONE, 0 };
	bool set_fault = false;
	const char *err = NULL;

	json_tokener_reset(g.tok);
	jo = json_tokener_parse_ex(g.tok, c->body.p ? c->body.p : "", (int)c->body.len);
	if (!jo || !json_object_is_type(jo, json_type_object)) {
		err = "body must be a JSON object";
		goto out;
	}
	if (!json_object_object_get_ex(jo, "key", &v) || !json_object_is_type(v, json_type_string) ||
	    json_object_get_string_len(v) == 0) {
		err = "\"key\" (a non-empty string) is required";
		goto out;
	}
	if (json_object_object_get_ex(jo, "fault", &v) && v) {
		if (!json_object_is_type(v, json_type_string) ||
		    !fault_parse(json_object_get_string(v), (size_t)json_object_get_string_len(v), &f)) {
			err = "bad \"fault\"";
			goto out;
		}
		set_fault = true;
	} else if (json_object_object_get_ex(jo, "fault", &v)) {
		set_fault = true;	/* null clears it */
	}
	json_object_object_get_ex(jo, "key", &v);
	k = key_add(json_object_get_string(v), (size_t)json_object_get_string_len(v));
	if (json_object_object_get_ex(jo, "rpm", &v) && v) {
		int64_t rpm = json_object_get_int64(v);

		k->rpm = rpm > 0 ? (uint64_t)rpm : 0;
	}
	if (set_fault) {
		k->fault = f;
		k->fault_left = 0;
	}
	if (json_object_object_get_ex(jo, "fault_count", &v) && v) {
		int64_t n = json_object_get_int64(v);

		k->fault_left = n > 0 ? (uint64_t)n : 0;
	}
	if (json_object_object_get_ex(jo, "retry_after", &v))
		k->retry_after = v ? json_object_get_int64(v) : -1;
	if (json_object_object_get_ex(jo, "model_rpm", &v) && v) {
		if (!json_object_is_type(v, json_type_object)) {
			err = "\"model_rpm\" must be an object of model: rpm";
			goto out;
		}
		json_object_object_foreach(v, mname, mv) {
			char name[512];
			size_t kn = (size_t)json_object_get_string_len(json_object_object_get(jo, "key")), mn = strlen(mname);
			struct key *mk;

			if (kn + 1 + mn >= sizeof(name)) {
				err = "model name too long";
				goto out;
			}
			memcpy(name, k->name, kn);
			name[kn] = '\x1f';
			memcpy(name + kn + 1, mname, mn);
			mk = key_add(name, kn + 1 + mn);
			mk->rpm = json_object_get_int64(mv) > 0 ? (uint64_t)json_object_get_int64(mv) : 0;
		}
	}
out:
	json_object_put(jo);
	if (err)
		ctl_error(c, 400, err);
	else
		resp_full(c, 200, "application/json", ok, sizeof(ok) - 1, NULL);
}

static void ctl_dispatch(struct conn *c, const char *path, size_t pn, const char *q, size_t qn)
{
	static const char ok[] = "{\"ok\":true}";
	bool get = strcmp(c->method, "GET") == 0, post = strcmp(c->method, "POST") == 0;

	if (!c->loopback) {
		ctl_error(c, 403, "the control API is loopback-only");
	} else if (name_eq(path, pn, "/_mock/record")) {
		if (get)
			ctl_record(c, q, qn);
		else
			ctl_error(c, 405, "use GET");
	} else if (name_eq(path, pn, "/_mock/stats")) {
		if (get)
			ctl_stats(c);
		else
			ctl_error(c, 405, "use GET");
	} else if (name_eq(path, pn, "/_mock/reset")) {
		if (post)
			ctl_reset(c);
		else
			ctl_error(c, 405, "use POST");
	} else if (name_eq(path, pn, "/_mock/key")) {
		if (post)
			ctl_key(c);
		else
			ctl_error(c, 405, "use POST");
	} else if (name_eq(path, pn, "/_mock/health")) {
		resp_full(c, 200, "application/json", ok, sizeof(ok) - 1, NULL);
	} else {
		ctl_error(c, 404, "no such control endpoint");
	}
}

/* ---------------------------------------------------------------- requests */

static const char *hdr_get(const struct conn *c, const char *name, size_t *len)
{
	int i;

	for (i = 0; i < c->nhdrs; i++) {
		const struct hdr *h = &c->hdrs[i];

		if (name_eq(c->in.p + h->name, h->name_len, name)) {
			*len = h->val_len;
			return c->in.p + h->val;
		}
	}
	return NULL;
}

/* A numeric control header, or def when absent or not a number. */
static uint64_t hdr_u64(const struct conn *c, const char *name, uint64_t def)
{
	size_t n;
	const char *v = hdr_get(c, name, &n);
	uint64_t x;

	return v && parse_u64(v, n, &x) ? x : def;
}

/* The request's headers as a JSON object with lowercased names; repeats joined by ", ". */
static void headers_json(const struct conn *c, struct buf *b)
{
	char lower[256];
	int i, j;

	b->len = 0;
	buf_adds(b, "{");
	for (i = 0; i < c->nhdrs; i++) {
		const struct hdr *h = &c->hdrs[i];
		size_t k, nl = h->name_len < sizeof(lower) ? h->name_len : sizeof(lower);
		bool seen = false;

		for (j = 0; j < i && !seen; j++)
			seen = c->hdrs[j].name_len == h->name_len &&
			       strncasecmp(c->in.p + c->hdrs[j].name, c->in.p + h->name, h->name_len) == 0;
		if (seen)
			continue;
		for (k = 0; k < nl; k++) {
			char ch = c->in.p[h->name + k];

			lower[k] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
		}
		if (i)
			buf_adds(b, ",");
		buf_add_jstr(b, lower, nl);
		buf_adds(b, ":");
		for (j = i + 1; j < c->nhdrs && !seen; j++)
			seen = c->hdrs[j].name_len == h->name_len &&
			       strncasecmp(c->in.p + c->hdrs[j].name, c->in.p + h->name, h->name_len) == 0;
		if (!seen) {
			buf_add_jstr(b, c->in.p + h->val, h->val_len);
			continue;
		}
		{
			/* join repeated fields */
			struct buf *t = &g.scratch;

			t->len = 0;
			buf_add(t, c->in.p + h->val, h->val_len);
			for (j = i + 1; j < c->nhdrs; j++) {
				const struct hdr *h2 = &c->hdrs[j];

				if (h2->name_len == h->name_len &&
				    strncasecmp(c->in.p + h2->name, c->in.p + h->name, h->name_len) == 0) {
					buf_add(t, ", ", 2);
					buf_add(t, c->in.p + h2->val, h2->val_len);
				}
			}
			buf_add_jstr(b, t->p, t->len);
		}
	}
	buf_adds(b, "}");
}

/* Create the record entry of the request being dispatched. */
static void rec_add(struct conn *c, uint64_t now, const char *key, size_t key_len, const char *path,
		    size_t pn, const char *q, size_t qn, bool has_q, const char *model, size_t model_len)
{
	struct rec *e = &g.recs[(c->r.seq - 1) % g.record_max];
	size_t saved = c->body.len < g.record_body_max ? c->body.len : (size_t)g.record_body_max;
	size_t total;
	char *p;

	if (key_len > HEAD_MAX)
		key_len = HEAD_MAX;
	if (model_len > HEAD_MAX)
		model_len = HEAD_MAX;
	headers_json(c, &g.hscratch);
	rec_clear_slot(e);
	total = (key ? key_len : 0) + pn + (has_q ? qn : 0) + (model ? model_len : 0) + g.hscratch.len + saved + 1;
	e->blob = p = malloc(total);
	if (!p)
		oom();
	e->seq = c->r.seq;
	e->conn_id = c->id;
	e->t_us = now - g.start_us;
	snprintf(e->method, sizeof(e->method), "%s", c->method);
	e->key_len = blob_put(&p, key, key_len, key != NULL);
	e->path_len = blob_put(&p, path, pn, true);
	e->query_len = blob_put(&p, q, qn, has_q);
	e->model_len = blob_put(&p, model, model_len, model != NULL);
	e->hdr_len = blob_put(&p, g.hscratch.p, g.hscratch.len, true);
	e->body_saved = blob_put(&p, c->body.p, saved, true);
	e->body_len = c->body.len;
	e->stream = c->r.stream;
	e->include_usage = c->r.include_usage;
}

static enum api route(const char *m, const char *path, size_t pn)
{
	bool get = strcmp(m, "GET") == 0, post = strcmp(m, "POST") == 0;

	if (name_eq(path, pn, "/v1/chat/completions"))
		return post ? API_CHAT : API_BAD_METHOD;
	if (name_eq(path, pn, "/v1/completions"))
		return post ? API_COMPLETIONS : API_BAD_METHOD;
	if (name_eq(path, pn, "/v1/embeddings"))
		return post ? API_EMBEDDINGS : API_BAD_METHOD;
	if (name_eq(path, pn, "/v1/models"))
		return get ? API_MODELS : API_BAD_METHOD;
	return API_NOT_FOUND;
}

static uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static void base64_add(struct buf *b, const unsigned char *d, size_t n)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i;

	for (i = 0; i + 2 < n; i += 3) {
		char o[4] = { tab[d[i] >> 2], tab[(d[i] & 3) << 4 | d[i + 1] >> 4],
			      tab[(d[i + 1] & 15) << 2 | d[i + 2] >> 6], tab[d[i + 2] & 63] };
		buf_add(b, o, 4);
	}
	if (n - i == 1) {
		char o[4] = { tab[d[i] >> 2], tab[(d[i] & 3) << 4], '=', '=' };
		buf_add(b, o, 4);
	} else if (n - i == 2) {
		char o[4] = { tab[d[i] >> 2], tab[(d[i] & 3) << 4 | d[i + 1] >> 4], tab[(d[i + 1] & 15) << 2], '=' };
		buf_add(b, o, 4);
	}
}

/* One deterministic vector for one input (a string, or anything else by its JSON text). */
static void emb_vector(struct buf *b, json_object *in, bool b64)
{
	const char *s;
	size_t n, j;
	uint64_t h;
	unsigned char raw[EMB_DIM * 4];

	if (json_object_is_type(in, json_type_string)) {
		s = json_object_get_string(in);
		n = (size_t)json_object_get_string_len(in);
	} else {
		s = json_object_to_json_string_ext(in, JSON_C_TO_STRING_PLAIN);
		n = strlen(s);
	}
	h = hash_bytes(s, n);
	if (!b64)
		buf_adds(b, "[");
	for (j = 0; j < EMB_DIM; j++) {
		uint64_t x = splitmix64(h + j);
		/* multiples of 1/1024 in [-1, 1): exact in float32 and in decimal */
		float f = (float)((int)(x >> 53) - 1024) / 1024.0f;

		if (b64) {
			uint32_t u;

			memcpy(&u, &f, 4);
			raw[j * 4] = (unsigned char)u;
			raw[j * 4 + 1] = (unsigned char)(u >> 8);
			raw[j * 4 + 2] = (unsigned char)(u >> 16);
			raw[j * 4 + 3] = (unsigned char)(u >> 24);
		} else {
			buf_printf(b, "%s%.10g", j ? "," : "", (double)f);
		}
	}
	if (b64) {
		buf_adds(b, "\"");
		base64_add(b, raw, sizeof(raw));
		buf_adds(b, "\"");
	} else {
		buf_adds(b, "]");
	}
}

/* The /v1/embeddings answer into c->rbody; false if "input" is missing or wrong. */
static bool emb_body(struct conn *c, json_object *jo)
{
	struct buf *b = &c->rbody;
	json_object *input, *v;
	bool b64 = false;
	size_t n, i;

	if (!jo || !json_object_object_get_ex(jo, "input", &input) || !input)
		return false;
	if (json_object_object_get_ex(jo, "encoding_format", &v) && json_object_is_type(v, json_type_string))
		b64 = strcmp(json_object_get_string(v), "base64") == 0;
	b->len = 0;
	buf_adds(b, "{\"object\":\"list\",\"data\":[");
	if (json_object_is_type(input, json_type_string) ||
	    (json_object_is_type(input, json_type_array) && json_object_array_length(input) > 0 &&
	     json_object_is_type(json_object_array_get_idx(input, 0), json_type_int))) {
		buf_adds(b, "{\"object\":\"embedding\",\"index\":0,\"embedding\":");
		emb_vector(b, input, b64);
		buf_adds(b, "}");
	} else if (json_object_is_type(input, json_type_array)) {
		n = json_object_array_length(input);
		if (n > EMB_INPUTS_MAX)
			return false;
		for (i = 0; i < n; i++) {
			buf_printf(b, "%s{\"object\":\"embedding\",\"index\":%zu,\"embedding\":", i ? "," : "", i);
			emb_vector(b, json_object_array_get_idx(input, i), b64);
			buf_adds(b, "}");
		}
	} else {
		return false;
	}
	buf_adds(b, "],\"model\":");
	buf_add(b, c->model.p, c->model.len);
	buf_adds(b, ",\"usage\":{\"prompt_tokens\":");
	buf_add_u64(b, c->r.prompt_tokens);
	buf_adds(b, ",\"total_tokens\":");
	buf_add_u64(b, c->r.prompt_tokens);
	buf_adds(b, "}}");
	return true;
}

/* True when one of the chat request's messages is a tool result. */
static bool has_tool_result(json_object *jo)
{
	json_object *msgs, *role;
	size_t i, n;

	if (!json_object_object_get_ex(jo, "messages", &msgs) || !json_object_is_type(msgs, json_type_array))
		return false;
	n = json_object_array_length(msgs);
	for (i = 0; i < n; i++)
		if (json_object_object_get_ex(json_object_array_get_idx(msgs, i), "role", &role) &&
		    json_object_is_type(role, json_type_string) && strcmp(json_object_get_string(role), "tool") == 0)
			return true;
	return false;
}

/*
 * X-Mock-Tool on a request with tools, for agents (OpenClaw) that loop on
 * tool calls: "none" answers text; NAME calls that tool with X-Mock-Tool-Args
 * (a JSON text, default {}) unless the conversation already holds a tool
 * result, which gets a text answer: one tool call first, then text.
 */
static void req_mock_tool(struct conn *c, json_object *jo)
{
	struct req *r = &c->r;
	const char *name, *args;
	size_t nn, na;

	c->tool.len = 0;
	if ((name = hdr_get(c, "x-mock-tool", &nn)) == NULL)
		return;
	if ((nn == 4 && strncasecmp(name, "none", 4) == 0) || has_tool_result(jo)) {
		r->tools = false;
		return;
	}
	r->custom_tool = true;
	buf_adds(&c->tool, "\"name\":");
	buf_add_jstr(&c->tool, name, nn);
	buf_adds(&c->tool, ",\"arguments\":");
	if ((args = hdr_get(c, "x-mock-tool-args", &na)) != NULL)
		buf_add_jstr(&c->tool, args, na);
	else
		buf_adds(&c->tool, "\"{}\"");
}

/* The whole request is in: decide the answer and start it. */
static void req_dispatch(struct conn *c)
{
	struct req *r = &c->r;
	const char *target = c->in.p + c->target, *qmark, *auth, *key = NULL, *model = NULL, *fh;
	size_t pn, qn = 0, an, kn = 0, mn = 0, fn;
	uint64_t now = g_now = clock_us(), wait_us = 0;
	json_object *jo = NULL, *v;
	struct key *k, *mk;
	struct fault f = { F_NONE, 0 };
	bool key_fault = false, bad_json = false;
	bool keepalive = r->keepalive;	/* set by head_parse */

	memset(r, 0, sizeof(*r));
	r->retry_after = -1;
	r->keepalive = keepalive;
	c->req_active = true;
	qmark = memchr(target, '?', c->target_len);
	pn = qmark ? (size_t)(qmark - target) : c->target_len;
	if (qmark)
		qn = c->target_len - pn - 1;
	if (pn >= 7 && memcmp(target, "/_mock/", 7) == 0) {
		ctl_dispatch(c, target, pn, qmark ? qmark + 1 : "", qn);
		return;
	}

	r->seq = ++g.seq;
	r->epoch = g.rec_epoch;
	r->created = (int64_t)time(NULL);
	r->api = route(c->method, target, pn);
	g.st_requests++;

	if (r->api == API_CHAT || r->api == API_COMPLETIONS || r->api == API_EMBEDDINGS) {
		size_t end = 0;

		json_tokener_reset(g.tok);
		jo = c->body.len ? json_tokener_parse_ex(g.tok, c->body.p, (int)c->body.len) : NULL;
		if (jo) {
			end = json_tokener_get_parse_end(g.tok);
			while (end < c->body.len && (c->body.p[end] == ' ' || c->body.p[end] == '\t' ||
						     c->body.p[end] == '\r' || c->body.p[end] == '\n'))
				end++;
		}
		if (!jo || !json_object_is_type(jo, json_type_object) || end != c->body.len) {
			bad_json = true;
		} else {
			if (json_object_object_get_ex(jo, "model", &v) && json_object_is_type(v, json_type_string)) {
				model = json_object_get_string(v);
				mn = (size_t)json_object_get_string_len(v);
			}
			if (r->api != API_EMBEDDINGS && json_object_object_get_ex(jo, "stream", &v) &&
			    json_object_is_type(v, json_type_boolean))
				r->stream = json_object_get_boolean(v);
			if (r->stream && json_object_object_get_ex(jo, "stream_options", &v) &&
			    json_object_object_get_ex(v, "include_usage", &v) &&
			    json_object_is_type(v, json_type_boolean))
				r->include_usage = json_object_get_boolean(v);
			if (r->api == API_CHAT && json_object_object_get_ex(jo, "tools", &v) &&
			    json_object_is_type(v, json_type_array) && json_object_array_length(v) > 0)
				r->tools = true;
		}
	}
	if (r->tools)
		req_mock_tool(c, jo);
	auth = hdr_get(c, "authorization", &an);
	if (auth && an > 7 && strncasecmp(auth, "Bearer ", 7) == 0) {
		key = auth + 7;
		kn = an - 7;
		while (kn && *key == ' ')
			key++, kn--;
	}
	rec_add(c, now, key, kn, target, pn, qmark ? qmark + 1 : "", qn, qmark != NULL, model, mn);
	c->model.len = 0;
	if (model)
		buf_add_jstr(&c->model, model, mn);
	else
		buf_adds(&c->model, "\"mock-model\"");

	if (r->api == API_NOT_FOUND) {
		resp_nim(c, 404, "Not found", -1);
		goto out;
	}
	if (r->api == API_BAD_METHOD) {
		resp_nim(c, 405, "Method not allowed", -1);
		goto out;
	}
	k = key ? key_find(key, kn) : NULL;
	if (!k && key && kn && g.any_key)
		k = key_add(key, kn);
	if (!k) {
		resp_nim(c, 401, "Authentication failed", -1);
		goto out;
	}

	fh = hdr_get(c, "x-mock-fault", &fn);
	if (fh) {
		if (!fault_parse(fh, fn, &f)) {
			resp_nim(c, 400, "bad X-Mock-Fault", -1);
			goto out;
		}
		if (hdr_get(c, "x-mock-retry-after", &fn))
			r->retry_after = (int64_t)hdr_u64(c, "x-mock-retry-after", 0);
	} else if (k->fault.kind != F_NONE) {
		f = k->fault;
		key_fault = true;
		r->retry_after = k->retry_after;
	}
	/* an injected 429 acts like the limiter's: it does not count in the window */
	if (f.kind == F_STATUS && f.arg == 429) {
		if (key_fault && k->fault_left && --k->fault_left == 0)
			k->fault.kind = F_NONE;
		k->rejected_429++;
		resp_nim(c, 429, NULL, r->retry_after);
		goto out;
	}
	mk = key_model_find(key, kn, model, mn);
	if (mk && key_full(mk, now)) {
		/* the model's window is full: a 429 that counts in neither window */
		k->rejected_429++;
		mk->rejected_429++;
		resp_nim(c, 429, NULL, -1);
		goto out;
	}
	if (!key_admit(k, now)) {
		k->rejected_429++;
		resp_nim(c, 429, NULL, -1);
		goto out;
	}
	if (mk) {
		(void)key_admit(mk, now);
		mk->accepted++;
	}
	k->accepted++;
	if (key_fault && k->fault_left && --k->fault_left == 0)
		k->fault.kind = F_NONE;
	if (bad_json) {
		resp_nim(c, 400, "Request body is not a JSON object", -1);
		goto out;
	}
	if (f.kind == F_STATUS) {
		resp_nim(c, (int)f.arg, f.arg == 401 ? "Authentication failed" : NULL, r->retry_after);
		goto out;
	}
	if (f.kind == F_ECHO_KEY) {
		resp_echo_key(c, (int)f.arg, key, kn);
		goto out;
	}

	r->fault = f;
	wait_us = hdr_u64(c, "x-mock-chunks", g.chunks);
	r->nchunks = wait_us > CHUNKS_MAX ? CHUNKS_MAX : (uint32_t)wait_us;
	wait_us = 0;
	wait_us = hdr_u64(c, "x-mock-chunk-bytes", 0);
	r->chunk_bytes = wait_us > CHUNK_BYTES_MAX ? CHUNK_BYTES_MAX : (uint32_t)wait_us;
	wait_us = 0;
	r->interval_us = hdr_u64(c, "x-mock-interval-ms", g.interval_us / 1000) * 1000;
	r->first_delay_us = hdr_u64(c, "x-mock-first-delay-ms", g.first_delay_us / 1000) * 1000;
	r->prompt_tokens = (uint32_t)((c->body.len + 99) / 100);
	if (r->prompt_tokens == 0)
		r->prompt_tokens = 1;
	if (r->api == API_EMBEDDINGS && !emb_body(c, jo)) {
		resp_nim(c, 400, "'input' must be a string or an array", -1);
		goto out;
	}
	if (f.kind == F_HANG) {
		conn_set_state(c, CS_HANG);
		goto out;
	}
	if (f.kind == F_DELAY)
		wait_us = f.arg * 1000;
	else if (!r->stream)
		wait_us = hdr_u64(c, "x-mock-latency-ms", g.latency_us / 1000) * 1000;
	if (wait_us) {
		c->due = now + wait_us;
		conn_set_state(c, CS_WAIT);
	} else {
		resp_start(c);
	}
out:
	json_object_put(jo);
}

/* Parse the head in c->in[0, head_len). Returns 0, or the HTTP status to refuse it with. */
static int head_parse(struct conn *c)
{
	char *p = c->in.p, *end = c->in.p + c->head_len - 2, *eol, *sp, *sp2;
	bool have_cl = false, have_te = false, conn_close_tok = false, conn_keep = false;
	uint64_t cl = 0;
	int minor;

	eol = memmem(p, (size_t)(end - p), "\r\n", 2);
	if (!eol)
		eol = end;
	sp = memchr(p, ' ', (size_t)(eol - p));
	if (!sp || sp == p || sp - p >= (long)sizeof(c->method))
		return 400;
	memcpy(c->method, p, (size_t)(sp - p));
	c->method[sp - p] = '\0';
	sp2 = memchr(sp + 1, ' ', (size_t)(eol - sp - 1));
	if (!sp2 || sp2 == sp + 1)
		return 400;
	if (sp2 - sp - 1 > TARGET_MAX)
		return 414;
	c->target = (uint32_t)(sp + 1 - p);
	c->target_len = (uint32_t)(sp2 - sp - 1);
	if (eol - sp2 - 1 != 8 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0)
		return memcmp(sp2 + 1, "HTTP/", 5) == 0 ? 505 : 400;
	if (sp2[8] == '1')
		minor = 1;
	else if (sp2[8] == '0')
		minor = 0;
	else
		return 505;

	c->nhdrs = 0;
	c->chunked = c->expect_continue = false;
	p = eol + 2;
	while (p < end) {
		char *colon, *v, *ve;
		struct hdr *h;

		eol = memmem(p, (size_t)(end - p) + 2, "\r\n", 2);
		if (!eol || eol > end)
			return 400;
		if (*p == ' ' || *p == '\t')
			return 400;	/* obs-fold */
		colon = memchr(p, ':', (size_t)(eol - p));
		if (!colon || colon == p || colon[-1] == ' ' || colon[-1] == '\t')
			return 400;
		if (c->nhdrs == HDRS_MAX)
			return 431;
		v = colon + 1;
		ve = eol;
		while (v < ve && (*v == ' ' || *v == '\t'))
			v++;
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		h = &c->hdrs[c->nhdrs++];
		h->name = (uint32_t)(p - c->in.p);
		h->name_len = (uint32_t)(colon - p);
		h->val = (uint32_t)(v - c->in.p);
		h->val_len = (uint32_t)(ve - v);
		if (name_eq(p, h->name_len, "content-length")) {
			uint64_t x;

			if (!parse_u64(v, (size_t)(ve - v), &x) || (have_cl && x != cl))
				return 400;
			have_cl = true;
			cl = x;
		} else if (name_eq(p, h->name_len, "transfer-encoding")) {
			if (!name_eq(v, (size_t)(ve - v), "chunked") || have_te)
				return 501;
			have_te = true;
		} else if (name_eq(p, h->name_len, "connection")) {
			const char *t = v;

			while (t < ve) {
				const char *te = memchr(t, ',', (size_t)(ve - t));
				const char *a = t, *b = te ? te : ve;

				while (a < b && *a == ' ')
					a++;
				while (b > a && b[-1] == ' ')
					b--;
				if (name_eq(a, (size_t)(b - a), "close"))
					conn_close_tok = true;
				else if (name_eq(a, (size_t)(b - a), "keep-alive"))
					conn_keep = true;
				t = te ? te + 1 : ve;
			}
		} else if (name_eq(p, h->name_len, "expect")) {
			if (name_eq(v, (size_t)(ve - v), "100-continue"))
				c->expect_continue = true;
		}
		p = eol + 2;
	}
	if (have_cl && have_te)
		return 400;
	c->chunked = have_te;
	c->body_left = have_cl ? cl : 0;
	if (have_cl && cl > g.max_body)
		return 413;
	c->r.keepalive = minor == 1 ? !conn_close_tok : conn_keep && !conn_close_tok;
	return 0;
}

/* Decode chunked framing from c->in into c->body. 1 = done, 0 = need more, -400/-413 = refuse. */
static int chunk_decode(struct conn *c)
{
	for (;;) {
		const char *p = c->in.p + c->in_pos, *nl;
		size_t avail = c->in.len - c->in_pos, take;

		switch (c->ck_state) {
		case CK_SIZE: {
			uint64_t sz = 0;
			size_t i = 0, digits = 0;

			nl = memchr(p, '\n', avail);
			if (!nl)
				return avail > CHUNK_LINE_MAX ? -400 : 0;
			if (nl == p || nl[-1] != '\r')
				return -400;
			for (; p + i < nl - 1; i++) {
				char ch = p[i];
				int d;

				if (ch >= '0' && ch <= '9')
					d = ch - '0';
				else if (ch >= 'a' && ch <= 'f')
					d = ch - 'a' + 10;
				else if (ch >= 'A' && ch <= 'F')
					d = ch - 'A' + 10;
				else
					break;
				if (++digits > 15)
					return -413;
				sz = sz << 4 | (uint64_t)d;
			}
			if (!digits || (p + i < nl - 1 && p[i] != ';' && p[i] != ' ' && p[i] != '\t'))
				return -400;
			c->in_pos += (size_t)(nl - p) + 1;
			if (sz == 0) {
				c->ck_state = CK_TRAILER;
				break;
			}
			if (c->body.len + sz > g.max_body)
				return -413;
			c->ck_left = sz;
			c->ck_state = CK_DATA;
			break;
		}
		case CK_DATA:
			take = avail < c->ck_left ? avail : (size_t)c->ck_left;
			if (!take)
				return 0;
			buf_add(&c->body, p, take);
			c->in_pos += take;
			c->ck_left -= take;
			if (!c->ck_left)
				c->ck_state = CK_DATA_CRLF;
			break;
		case CK_DATA_CRLF:
			if (avail < 2)
				return 0;
			if (p[0] != '\r' || p[1] != '\n')
				return -400;
			c->in_pos += 2;
			c->ck_state = CK_SIZE;
			break;
		case CK_TRAILER:
			nl = memchr(p, '\n', avail);
			if (!nl)
				return avail > CHUNK_LINE_MAX ? -400 : 0;
			c->in_pos += (size_t)(nl - p) + 1;
			if (nl == p || (nl == p + 1 && p[0] == '\r'))
				return 1;
			break;
		}
	}
}

/* Consume buffered input. 1 = a response was started (state changed), 0 = need more input. */
static int req_step(struct conn *c)
{
	if (c->state == CS_READ_HEAD) {
		char *e;
		int st;

		while (c->in.len >= 2 && c->in.p[0] == '\r' && c->in.p[1] == '\n') {
			memmove(c->in.p, c->in.p + 2, c->in.len - 2);
			c->in.len -= 2;
		}
		if (c->in.len < 4)
			return 0;
		e = memmem(c->in.p + c->scan, c->in.len - c->scan, "\r\n\r\n", 4);
		if (!e) {
			c->scan = c->in.len - 3;
			if (c->in.len > HEAD_MAX) {
				resp_framing_error(c, 431);
				return 1;
			}
			return 0;
		}
		c->head_len = (size_t)(e - c->in.p) + 4;
		if (c->head_len > HEAD_MAX) {
			resp_framing_error(c, 431);
			return 1;
		}
		st = head_parse(c);
		if (st) {
			resp_framing_error(c, st);
			return 1;
		}
		c->in_pos = c->head_len;
		c->body.len = 0;
		if (c->expect_continue && (c->chunked || c->body_left))
			buf_adds(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
		if (c->chunked) {
			c->ck_state = CK_SIZE;
			conn_set_state(c, CS_READ_BODY);
		} else if (c->body_left) {
			buf_reserve(&c->body, (size_t)c->body_left);
			conn_set_state(c, CS_READ_BODY);
		} else {
			req_dispatch(c);
			return 1;
		}
	}
	if (c->chunked) {
		int rc = chunk_decode(c);

		if (rc < 0) {
			resp_framing_error(c, -rc);
			return 1;
		}
		if (rc == 0)
			return 0;
	} else {
		size_t avail = c->in.len - c->in_pos;
		size_t take = avail < c->body_left ? avail : (size_t)c->body_left;

		buf_add(&c->body, c->in.p + c->in_pos, take);
		c->in_pos += take;
		c->body_left -= take;
		if (c->body_left)
			return 0;
	}
	req_dispatch(c);
	return 1;
}

/* The response went out in full: clean up and get ready for the next request. */
static int req_done(struct conn *c)
{
	req_finish(c, false);
	if (c->r.term == TERM_RESET) {
		c->due = g_now + TERM_DELAY_US;
		conn_set_state(c, CS_TERM);
		return 0;
	}
	if (c->r.term == TERM_CLOSE || !c->r.keepalive) {
		conn_linger(c);
		return 0;
	}
	if (c->in_pos < c->in.len)
		memmove(c->in.p, c->in.p + c->in_pos, c->in.len - c->in_pos);
	c->in.len -= c->in_pos;
	c->in_pos = c->head_len = c->scan = 0;
	c->nhdrs = 0;
	c->body.len = 0;
	c->chunked = false;
	c->body_left = 0;
	if (c->body.cap > KEEP_MAX)
		buf_release(&c->body);
	if (c->rbody.cap > KEEP_MAX)
		buf_release(&c->rbody);
	if (c->out.cap > KEEP_MAX && !c->out.len)
		buf_release(&c->out);
	conn_set_state(c, CS_READ_HEAD);
	return 1;
}

/* Read what the socket has. Returns -1 if the connection was closed. */
static int conn_read(struct conn *c)
{
	char *dst;
	size_t room;
	ssize_t n;
	bool direct = false;

	if (c->state == CS_LINGER) {
		char sink[16384];

		for (;;) {
			n = recv(c->fd, sink, sizeof(sink), 0);
			if (n > 0)
				continue;
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
				return 0;
			conn_close(c, false);
			return -1;
		}
	}
	if (c->state == CS_READ_BODY && !c->chunked && c->in_pos == c->in.len) {
		/* a Content-Length body goes straight to its buffer, never past its end */
		dst = c->body.p + c->body.len;
		room = (size_t)c->body_left;
		direct = true;
	} else {
		if (c->in.len == c->in.cap && c->state == CS_READ_BODY && c->in_pos > c->head_len) {
			memmove(c->in.p + c->head_len, c->in.p + c->in_pos, c->in.len - c->in_pos);
			c->in.len -= c->in_pos - c->head_len;
			c->in_pos = c->head_len;
		}
		if (c->in.len == c->in.cap && c->in.cap < IN_MAX)
			buf_reserve(&c->in, c->in.cap ? (c->in.cap * 2 > IN_MAX ? IN_MAX : c->in.cap * 2) - c->in.len
						   : IN_INITIAL);
		dst = c->in.p + c->in.len;
		room = c->in.cap - c->in.len;
	}
	if (!room)
		return 0;
	n = recv(c->fd, dst, room, 0);
	if (n > 0) {
		if (direct) {
			c->body.len += (size_t)n;
			c->body_left -= (uint64_t)n;
		} else {
			c->in.len += (size_t)n;
		}
		return 0;
	}
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return 0;
	conn_close(c, true);
	return -1;
}

/* Make all the progress possible without waiting, then re-arm epoll and the timer. */
static void conn_drive(struct conn *c)
{
	int rounds;

	for (rounds = 0; rounds < 100000; rounds++) {
		bool again = false;
		int w;

		if (c->state == CS_READ_HEAD || c->state == CS_READ_BODY)
			again = req_step(c) > 0;
		else if (c->state == CS_STREAM)
			stream_emit(c);
		w = conn_write(c);
		if (w < 0)
			return;
		if (w == 0 && c->state == CS_FLUSH) {
			again = req_done(c) > 0;
			if (!again && c->state == CS_LINGER) {
				/* the peer may have closed already */
				if (conn_read(c) < 0)
					return;
			}
		} else if (c->state == CS_STREAM && c->due <= g_now && conn_pending(c) < OUT_HIGH) {
			again = true;
		}
		if (!again)
			break;
	}
	conn_sync(c);
}

static void conn_on_timer(struct conn *c)
{
	switch (c->state) {
	case CS_WAIT:
		resp_start(c);
		break;
	case CS_TERM:
		conn_reset(c);
		return;
	case CS_LINGER:
		conn_close(c, false);
		return;
	default:
		break;
	}
	conn_drive(c);
}

static void conn_on_event(struct conn *c, uint32_t ev)
{
	bool reading = c->state == CS_READ_HEAD || c->state == CS_READ_BODY || c->state == CS_LINGER;

	if (ev & EPOLLERR) {
		conn_close(c, true);
		return;
	}
	if (!reading && (ev & (EPOLLRDHUP | EPOLLHUP))) {
		/* the client went away before the answer was finished */
		conn_close(c, true);
		return;
	}
	if (reading && (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) && conn_read(c) < 0)
		return;
	conn_drive(c);
}

/* ---------------------------------------------------------------- listener and main loop */

static void accept_all(void)
{
	int i;

	for (i = 0; i < 512; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(g.lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd >= 0) {
			conn_new(fd, &ss);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
			/* out of descriptors: stop listening for a moment instead of spinning */
			epoll_ctl(g.ep, EPOLL_CTL_DEL, g.lfd, NULL);
			g.accept_paused = true;
			g.accept_resume = g_now + ACCEPT_PAUSE_US;
			if (!g.quiet)
				fprintf(stderr, "mock: accept paused: %s\n", strerror(errno));
		}
		return;
	}
}

static void listen_watch(void)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = LISTEN_FD_TAG };

	if (epoll_ctl(g.ep, EPOLL_CTL_ADD, g.lfd, &ev) < 0)
		die("epoll_ctl");
}

/* Bind ADDR:PORT ("127.0.0.1:0", "[::1]:8000"); returns the bound port. */
static int listen_on(const char *spec)
{
	char host[256];
	const char *colon = strrchr(spec, ':'), *h = spec;
	size_t hl;
	struct addrinfo hints = { 0 }, *ai;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int one = 1, rc, port;

	if (!colon)
		goto bad;
	hl = (size_t)(colon - spec);
	if (hl >= 2 && spec[0] == '[' && spec[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	if (hl == 0 || hl >= sizeof(host))
		goto bad;
	memcpy(host, h, hl);
	host[hl] = '\0';
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
	rc = getaddrinfo(host, colon + 1, &hints, &ai);
	if (rc) {
		fprintf(stderr, "mock-upstream: --listen %s: %s\n", spec, gai_strerror(rc));
		exit(2);
	}
	g.lfd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (g.lfd < 0)
		die("socket");
	setsockopt(g.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(g.lfd, ai->ai_addr, ai->ai_addrlen) < 0)
		die("bind");
	freeaddrinfo(ai);
	if (listen(g.lfd, 65535) < 0)
		die("listen");
	if (getsockname(g.lfd, (struct sockaddr *)&ss, &sl) < 0)
		die("getsockname");
	port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)(void *)&ss)->sin6_port
					      : ((struct sockaddr_in *)(void *)&ss)->sin_port);
	return port;
bad:
	fprintf(stderr, "mock-upstream: --listen wants ADDR:PORT, got '%s'\n", spec);
	exit(2);
}

static void write_port_file(const char *path, int port)
{
	char tmp[4096];
	FILE *f;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp)) {
		fprintf(stderr, "mock-upstream: --port-file path too long\n");
		exit(2);
	}
	f = fopen(tmp, "w");
	if (!f)
		die(tmp);
	fprintf(f, "%d\n", port);
	if (fclose(f) != 0)
		die(tmp);
	if (rename(tmp, path) < 0)
		die("rename port file");
}

static void models_init(void)
{
	struct buf b = { 0 };
	size_t i;

	buf_adds(&b, "{\"object\":\"list\",\"data\":[");
	for (i = 0; i < sizeof(mock_models) / sizeof(mock_models[0]); i++) {
		const char *slash = strchr(mock_models[i], '/');

		buf_adds(&b, i ? ",{\"id\":" : "{\"id\":");
		buf_add_jcstr(&b, mock_models[i]);
		buf_adds(&b, ",\"object\":\"model\",\"created\":1735689600,\"owned_by\":");
		buf_add_jstr(&b, mock_models[i], (size_t)(slash - mock_models[i]));
		buf_adds(&b, "}");
	}
	buf_adds(&b, "]}");
	g.models_body = b.p;
	g.models_len = b.len;
}

static void on_signal(int sig)
{
	(void)sig;
	g_stop = 1;
}

static void usage(FILE *f)
{
	fputs("usage: mock-upstream [--listen ADDR:PORT] [--port-file FILE] [--window-ms MS]\n"
	      "         [--key KEY[:RPM]]... [--chunks N] [--chunk-interval-ms MS]\n"
	      "         [--first-chunk-delay-ms MS] [--latency-ms MS] [--accept-any-key]\n"
	      "         [--max-body-bytes N] [--record-max N] [--record-body-max BYTES] [--quiet]\n"
	      "\n"
	      "A fake NVIDIA NIM for tests. Endpoints: POST /v1/chat/completions, POST /v1/completions,\n"
	      "POST /v1/embeddings, GET /v1/models (Authorization: Bearer KEY; unknown key 401; past\n"
	      "RPM in the sliding window 429). Per-request headers: X-Mock-Chunks, X-Mock-Interval-Ms,\n"
	      "X-Mock-First-Delay-Ms, X-Mock-Latency-Ms, X-Mock-Chunk-Bytes, X-Mock-Retry-After,\n"
	      "X-Mock-Tool: none | NAME (with tools: text, or a call of NAME with X-Mock-Tool-Args\n"
	      "until the messages hold a tool result),\n"
	      "X-Mock-Retry-After-Form (imf|rfc850|asctime: send Retry-After as an HTTP-date),\n"
	      "X-Mock-Fault: status=CODE |\n"
	      "hang | hang-first-byte | reset-after=N | close-after=N | malformed | html | drip=MS |\n"
	      "slow-headers=MS | delay=MS | echo-key=STATUS (the body echoes the key in many forms) |\n"
	      "sse-429=N | sse-429-openai=N (a stream: N chunks, then a 429 error event in NIM's or\n"
	      "OpenAI's shape). Control API (loopback only): GET /_mock/record[?since=SEQ],\n"
	      "GET /_mock/stats, POST /_mock/reset, POST /_mock/key {key,rpm,fault,fault_count,retry_after,model_rpm:{model:N}}.\n",
	      f);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "port-file", required_argument, NULL, 'p' },
		{ "window-ms", required_argument, NULL, 'w' },
		{ "key", required_argument, NULL, 'k' },
		{ "chunks", required_argument, NULL, 'c' },
		{ "chunk-interval-ms", required_argument, NULL, 'i' },
		{ "first-chunk-delay-ms", required_argument, NULL, 'f' },
		{ "latency-ms", required_argument, NULL, 'L' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "accept-any-key", no_argument, NULL, 'A' },
		{ "max-body-bytes", required_argument, NULL, 'B' },
		{ "record-max", required_argument, NULL, 'R' },
		{ "record-body-max", required_argument, NULL, 'b' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *listen_spec = "127.0.0.1:8800", *port_file = NULL;
	struct epoll_event evs[1024];
	struct rlimit rl;
	struct sigaction sa;
	sigset_t block, empty;
	uint64_t x;
	int opt, port;

	g.window_us = 60000ull * 1000;
	g.chunks = 5;
	g.interval_us = 10 * 1000;
	g.max_body = DEFAULT_MAX_BODY;
	g.record_max = RECORD_MAX;
	g.record_body_max = RECORD_BODY_MAX;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'l':
			listen_spec = optarg;
			break;
		case 'p':
			port_file = optarg;
			break;
		case 'k': {
			const char *colon = strrchr(optarg, ':');
			struct key *k;

			if (colon && parse_u64_str(colon + 1, &x)) {
				k = key_add(optarg, (size_t)(colon - optarg));
				k->rpm = x;
			} else {
				k = key_add(optarg, strlen(optarg));
			}
			if (!k->name_len)
				goto badarg;
			break;
		}
		case 'w':
		case 'c':
		case 'i':
		case 'f':
		case 'L':
		case 'B':
		case 'R':
		case 'b':
			if (!parse_u64_str(optarg, &x))
				goto badarg;
			if (opt == 'w')
				g.window_us = x * 1000;
			else if (opt == 'c')
				g.chunks = x > CHUNKS_MAX ? CHUNKS_MAX : (uint32_t)x;
			else if (opt == 'i')
				g.interval_us = x * 1000;
			else if (opt == 'f')
				g.first_delay_us = x * 1000;
			else if (opt == 'L')
				g.latency_us = x * 1000;
			else if (opt == 'R')
				g.record_max = x < 1 ? 1 : x > 10000000 ? 10000000 : x;
			else if (opt == 'b')
				g.record_body_max = x > UINT32_MAX / 2 ? UINT32_MAX / 2 : x;
			else
				g.max_body = x > MAX_BODY_LIMIT ? MAX_BODY_LIMIT : x;
			break;
		case 'q':
			g.quiet = true;
			break;
		case 'A':
			g.any_key = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
		continue;
badarg:
		fprintf(stderr, "mock-upstream: bad value for --%s: '%s'\n", argv[optind - 1] + 2, optarg);
		return 2;
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}

	/* thousands of concurrent connections: take every descriptor we may */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	signal(SIGPIPE, SIG_IGN);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	/* signals are only delivered inside epoll_pwait, so no wakeup is lost */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigprocmask(SIG_BLOCK, &block, NULL);
	sigemptyset(&empty);

	g.trace = getenv("MOCK_TRACE") != NULL;
	g.start_us = g_now = clock_us();
	g.recs = calloc(g.record_max, sizeof(*g.recs));
	g.tok = json_tokener_new_ex(1024);
	if (!g.recs || !g.tok)
		oom();
	models_init();
	g.ep = epoll_create1(EPOLL_CLOEXEC);
	if (g.ep < 0)
		die("epoll_create1");
	port = listen_on(listen_spec);
	listen_watch();
	if (port_file)
		write_port_file(port_file, port);
	{
		const char *colon = strrchr(listen_spec, ':');

		printf("listening on %.*s:%d\n", (int)(colon - listen_spec), listen_spec, port);
		fflush(stdout);
	}

	while (!g_stop) {
		int timeout = -1, n, i;
		uint64_t next = UINT64_MAX;

		if (g.heap_len)
			next = g.heap[0]->tat;
		if (g.accept_paused && g.accept_resume < next)
			next = g.accept_resume;
		if (next != UINT64_MAX) {
			uint64_t now = clock_us();

			timeout = next <= now ? 0 : (int)((next - now + 999) / 1000);
		}
		n = epoll_pwait(g.ep, evs, (int)(sizeof(evs) / sizeof(evs[0])), timeout, &empty);
		if (n < 0 && errno != EINTR)
			die("epoll_pwait");
		if (g_stop)
			break;
		g_now = clock_us();
		for (i = 0; i < n; i++) {
			uint64_t tag = evs[i].data.u64;
			struct conn *c;
			int fd;

			if (tag == LISTEN_FD_TAG) {
				accept_all();
				continue;
			}
			fd = (int)(tag & 0xffffff);
			c = (size_t)fd < g.fdtab_len ? g.fdtab[fd] : NULL;
			if (!c || c->id != tag >> 24)
				continue;	/* closed earlier in this batch */
			conn_on_event(c, evs[i].events);
		}
		if (g.accept_paused && g.accept_resume <= g_now) {
			g.accept_paused = false;
			listen_watch();
		}
		g_now = clock_us();
		while (g.heap_len && g.heap[0]->tat <= g_now) {
			struct conn *c = g.heap[0];

			timer_clear(c);
			conn_on_timer(c);
		}
	}
	if (!g.quiet)
		fprintf(stderr, "mock: exiting\n");
	return 0;
}
