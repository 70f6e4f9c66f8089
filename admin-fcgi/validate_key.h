/*
 * The test call made before a key is stored: GET {endpoint}/models with the
 * key as bearer token (libcurl easy, bounded in time), classified into the
 * answers an operator can act on. The classification is a pure function so
 * the unit tests check it without a network.
 */
#ifndef SC_ADMIN_VALIDATE_KEY_H
#define SC_ADMIN_VALIDATE_KEY_H

#include <stdbool.h>
#include <stddef.h>

enum validate_outcome {
	VALIDATE_OK,		/* 2xx (or 429: the key authenticated but is busy) */
	VALIDATE_INVALID_KEY,	/* 401 */
	VALIDATE_FORBIDDEN,	/* 403 */
	VALIDATE_UNREACHABLE,	/* connection refused, DNS failure, TLS failure, ... */
	VALIDATE_TIMEOUT,	/* no answer within the timeout */
	VALIDATE_UPSTREAM_ERROR	/* any other HTTP status */
};

#define VALIDATE_BODY_MAX   (64 * 1024)	/* bytes of the upstream answer kept */
#define VALIDATE_DETAIL_MAX 200		/* characters of upstream detail reported */

struct validate_result {
	enum validate_outcome outcome;
	bool  ok;
	long  http_status;	/* 0 when no HTTP answer */
	long  latency_ms;
	char  message[400];	/* operator-facing, never contains the key */
};

const char *validate_outcome_name(enum validate_outcome o);

/* Make the test call (blocking, at most timeout_ms). */
void validate_key_check(const char *endpoint, const char *key, long timeout_ms,
    struct validate_result *out);

/* Classify an attempt: curl_code is a CURLcode (0 = an HTTP answer arrived),
 * curl_msg the curl error text, body the (capped) answer. The key is passed
 * only so that it can be scrubbed from any echoed text. */
void validate_classify(int curl_code, const char *curl_msg, long http_status,
    const char *body, size_t body_len, const char *key, long timeout_ms,
    struct validate_result *out);

#endif
