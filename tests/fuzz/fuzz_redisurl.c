/*
 * libFuzzer harness for the redis_url setting (common/redisurl.c), which the
 * admin API and sidecarctl accept from operators: any bytes either fail with
 * a reason or parse into an IP literal, a port in 1..65535 and a database in
 * 0..1000; the masked form of an accepted URL never shows its password, and
 * masking anything never writes past its buffer.
 */
#include <arpa/inet.h>
#include <stdint.h>
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
	/* A password that is not part of what is shown anyway must not appear. */
	if (strlen(u.password) >= 6 && strstr(u.host, u.password) == NULL && strstr(u.user, u.password) == NULL &&
	    strstr("redis://:****@[]/0123456789", u.password) == NULL && strstr(out, u.password) != NULL)
		abort();
	return 0;
}
