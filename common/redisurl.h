/*
 * The redis_url setting (docs/cluster.md): redis://[[user]:password@]IP:port[/db].
 * The host must be an IP literal (IPv4, or IPv6 in brackets): the data plane
 * connects from its event loop, where a name lookup would block. One parser
 * serves validation (config.c), display with the password masked (admin API,
 * sidecarctl, logs) and the data plane's connection.
 */
#ifndef SC_REDISURL_H
#define SC_REDISURL_H

#define REDISURL_MAX 255	/* longest accepted URL, bytes */

struct redis_url {
	char host[64];		/* IP literal, without brackets */
	int  port;		/* 1..65535, default 6379 */
	int  db;		/* SELECT index, 0..15 by default config; we accept 0..1000 */
	char user[64];		/* "" = none (ACL user, Redis 6+) */
	char password[128];	/* "" = none */
};

/* Parse s; 0, or -1 with why (static text) set. An empty string is not a URL. */
int redisurl_parse(const char *s, struct redis_url *u, const char **why);
/* s with the password replaced by "****" into out (size n); s itself when it
 * has none; a fixed text when it does not parse (its content may be secret). */
void redisurl_mask(const char *s, char *out, unsigned n);

#endif
