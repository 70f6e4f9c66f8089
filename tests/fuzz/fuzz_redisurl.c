/*
 * libFuzzer harness for the redis_url setting (common/redisurl.c), which the
 * admin API and sidecarctl accept from operators: any bytes either fail with
 * a reason or parse into an IP literal, a port in 1..65535 and a database in
 * 0..1000; the masked form of an accepted URL never shows its password, and
 * masking anything never writes past its buffer.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redisurl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char in[REDISURL_MAX + 64], out[REDISURL_MAX + 64], tiny[8];
	unsigned char addr[16];
	struct redis_url u;
	const char *why = NULL;

	if (size >= sizeof(in))
		return 0;
	memcpy(in, data, size);
	in[size] = '\0';
	redisurl_mask(in, tiny, sizeof(tiny));
	if (strlen(tiny) >= sizeof(tiny))
		abort();
	redisurl_mask(in, out, sizeof(out));
	if (redisurl_parse(in, &u, &why) == -1) {
		if (why == NULL)
			abort();	/* every refusal says why */
		return 0;
	}
	if (inet_pton(AF_INET, u.host, addr) != 1 && inet_pton(AF_INET6, u.host, addr) != 1)
		abort();
	if (u.port < 1 || u.port > 65535 || u.db < 0 || u.db > 1000)
		abort();
	/* What is shown is exactly user, "****", host, port and db: the password
	 * never (it may only look like a piece of the host or the punctuation,
	 * e.g. the password "@1.0.0" before the host 1.0.0.5). */
	if (u.password[0] != '\0' || u.user[0] != '\0') {
		char want[sizeof(out)];

		snprintf(want, sizeof(want), strchr(u.host, ':') != NULL ? "redis://%s:****@[%s]:%d/%d" :
		    "redis://%s:****@%s:%d/%d", u.user, u.host, u.port, u.db);
		if (strcmp(out, want) != 0)
			abort();
	} else if (strcmp(out, in) != 0)
		abort();
	return 0;
}
