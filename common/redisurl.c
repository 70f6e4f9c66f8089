/*
 * Parsing and masking of redis_url (redisurl.h). Strict: anything but the
 * documented shape is refused with a reason, so a typo in the admin panel
 * never becomes a silent single-host fallback.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redisurl.h"

#define REDISURL_SCHEME "redis://"

/* Copy n bytes of s into out (cap bytes) as a string; -1 when too long. */
static int
redisurl_copy(char *out, size_t cap, const char *s, size_t n)
{
	if (n >= cap)
		return -1;
	memcpy(out, s, n);
	out[n] = '\0';
	return 0;
}

/* A decimal number in [lo, hi] spanning exactly [s, e). */
static int
redisurl_num(const char *s, const char *e, int lo, int hi, int *out)
{
	long v = 0;

	if (s == e || e - s > 6)
		return -1;
	for (const char *p = s; p < e; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		v = v * 10 + (*p - '0');
	}
	if (v < lo || v > hi)
		return -1;
	*out = (int)v;
	return 0;
}

int
redisurl_parse(const char *s, struct redis_url *u, const char **why)
{
	const char *p, *at, *hp, *he, *port, *slash, *end;
	unsigned char addr[16];

	memset(u, 0, sizeof(*u));
	u->port = 6379;
	*why = NULL;
	if (s == NULL || strlen(s) > REDISURL_MAX) {
		*why = "longer than 255 bytes";
		return -1;
	}
	if (strncmp(s, REDISURL_SCHEME, strlen(REDISURL_SCHEME)) != 0) {
		*why = "must start with redis:// (for TLS, point it at a local stunnel)";
		return -1;
	}
	p = s + strlen(REDISURL_SCHEME);
	end = p + strlen(p);
	for (const char *q = p; q < end; q++)
		if ((unsigned char)*q <= ' ' || *q == 0x7f) {
			*why = "contains a space or a control character";
			return -1;
		}
	slash = memchr(p, '/', (size_t)(end - p));
	if (slash == NULL)
		slash = end;
	/* The last '@' before the path ends the credentials. */
	at = NULL;
	for (const char *q = p; q < slash; q++)
		if (*q == '@')
			at = q;
	if (at != NULL) {
		const char *colon = memchr(p, ':', (size_t)(at - p));
		if (colon == NULL) {
			*why = "credentials must be :password@ or user:password@";
			return -1;
		}
		if (redisurl_copy(u->user, sizeof(u->user), p, (size_t)(colon - p)) == -1 ||
		    redisurl_copy(u->password, sizeof(u->password), colon + 1, (size_t)(at - colon - 1)) == -1) {
			*why = "user or password too long";
			return -1;
		}
		hp = at + 1;
	} else
		hp = p;
	if (*hp == '[') {
		he = memchr(hp, ']', (size_t)(slash - hp));
		if (he == NULL) {
			*why = "unterminated [IPv6] address";
			return -1;
		}
		port = he + 1;
		hp++;
	} else {
		he = memchr(hp, ':', (size_t)(slash - hp));
		if (he == NULL)
			he = slash;
		port = he;
	}
	if (redisurl_copy(u->host, sizeof(u->host), hp, (size_t)(he - hp)) == -1 ||
	    (inet_pton(AF_INET, u->host, addr) != 1 && inet_pton(AF_INET6, u->host, addr) != 1)) {
		*why = "the host must be an IP address (a name lookup would block the data plane)";
		return -1;
	}
	if (port < slash) {
		if (*port != ':' || redisurl_num(port + 1, slash, 1, 65535, &u->port) == -1) {
			*why = "the port must be a number from 1 to 65535";
			return -1;
		}
	}
	if (slash < end && slash + 1 < end && redisurl_num(slash + 1, end, 0, 1000, &u->db) == -1) {
		*why = "the database must be a number from 0 to 1000";
		return -1;
	}
	return 0;
}

void
redisurl_mask(const char *s, char *out, unsigned n)
{
	struct redis_url u;
	const char *why;

	if (n == 0)
		return;
	if (s == NULL || *s == '\0') {
		out[0] = '\0';
		return;
	}
	if (redisurl_parse(s, &u, &why) == -1) {
		snprintf(out, n, "(invalid redis_url)");
		return;
	}
	if (u.password[0] == '\0' && u.user[0] == '\0') {
		snprintf(out, n, "%s", s);
		return;
	}
	if (strchr(u.host, ':') != NULL)
		snprintf(out, n, "redis://%s:****@[%s]:%d/%d", u.user, u.host, u.port, u.db);
	else
		snprintf(out, n, "redis://%s:****@%s:%d/%d", u.user, u.host, u.port, u.db);
}
