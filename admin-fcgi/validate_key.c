/*
 * The key test call of the admin API: GET {endpoint}/models with
 * "Authorization: Bearer <key>", libcurl easy, bounded by a total timeout,
 * no redirects, http/https only, the answer capped at VALIDATE_BODY_MAX.
 * The answer is classified by validate_classify into ok / invalid key /
 * forbidden / unreachable / timeout / other, with the upstream's own reason
 * (NIM's "detail", OpenAI's error.message) quoted but redacted
 * (common/redact.c: the key in any form or piece).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "crypto.h"
#include "redact.h"
#include "util.h"
#include "validate_key.h"

const char *
validate_outcome_name(enum validate_outcome o)
{
	switch (o) {
	case VALIDATE_OK:		return "ok";
	case VALIDATE_INVALID_KEY:	return "invalid_key";
	case VALIDATE_FORBIDDEN:	return "forbidden";
	case VALIDATE_UNREACHABLE:	return "unreachable";
	case VALIDATE_TIMEOUT:		return "timeout";
	case VALIDATE_UPSTREAM_ERROR:	return "upstream_error";
	}
	return "upstream_error";
}

/* Copy s into out as one printable line of at most max bytes, redacted
 * first (redact_text: the key whole, without its prefix or in 8+ character
 * pieces, and other key-like tokens), cut on a character boundary, with
 * bytes that are not UTF-8 scrubbed: it goes into JSON and the database. */
static void
validate_clean(const char *s, size_t n, const char *key, char *out, size_t outlen, size_t max)
{
	struct sc_buf red;
	size_t i = 0, o = 0;

	if (outlen == 0)
		return;
	sc_buf_init(&red, n * 2 + 64);
	if (redact_text(s, n, key, &red) < 0) {
		snprintf(out, outlen, "%s", REDACT_MASK);
		sc_buf_free(&red);
		return;
	}
	while (i < red.len && o + 1 < outlen && o < max) {
		unsigned char ch = (unsigned char)red.data[i++];
		out[o++] = (ch < 0x20 || ch == 0x7f) ? ' ' : (char)ch;
	}
	/* Do not end inside a UTF-8 sequence. */
	if (i < red.len)
		while (o > 0 && ((unsigned char)red.data[o] & 0xc0) == 0x80)
			o--;
	out[o] = '\0';
	sc_utf8_scrub(out);
	if (red.data != NULL)
		crypto_wipe(red.data, red.alloc);
	sc_buf_free(&red);
}

/* The most useful sentence of an upstream error body. */
static void
validate_detail(const char *body, size_t len, const char *key, char *out, size_t outlen)
{
	json_tokener *tok;
	json_object *root = NULL, *v, *err;
	const char *s = NULL;

	out[0] = '\0';
	if (body == NULL || len == 0)
		return;
	tok = json_tokener_new_ex(8);
	if (tok != NULL) {
		root = json_tokener_parse_ex(tok, body, (int)len);
		json_tokener_free(tok);
	}
	if (root != NULL && json_object_is_type(root, json_type_object)) {
		if (json_object_object_get_ex(root, "detail", &v) && json_object_is_type(v, json_type_string))
			s = json_object_get_string(v);
		else if (json_object_object_get_ex(root, "error", &err)) {
			if (json_object_is_type(err, json_type_string))
				s = json_object_get_string(err);
			else if (json_object_is_type(err, json_type_object) &&
			    json_object_object_get_ex(err, "message", &v) && json_object_is_type(v, json_type_string))
				s = json_object_get_string(v);
		}
		if (s == NULL && json_object_object_get_ex(root, "message", &v) &&
		    json_object_is_type(v, json_type_string))
			s = json_object_get_string(v);
		if (s == NULL && json_object_object_get_ex(root, "title", &v) &&
		    json_object_is_type(v, json_type_string))
			s = json_object_get_string(v);
	}
	if (s != NULL)
		validate_clean(s, strlen(s), key, out, outlen, VALIDATE_DETAIL_MAX);
	else
		validate_clean(body, len, key, out, outlen, VALIDATE_DETAIL_MAX);
	json_object_put(root);
}

void
validate_classify(int curl_code, const char *curl_msg, long http_status,
    const char *body, size_t body_len, const char *key, long timeout_ms,
    struct validate_result *out)
{
	char detail[VALIDATE_DETAIL_MAX * 4 + 8];
	char cmsg[256];

	out->ok = false;
	out->http_status = curl_code == CURLE_OK ? http_status : 0;
	if (curl_code == CURLE_OPERATION_TIMEDOUT) {
		out->outcome = VALIDATE_TIMEOUT;
		snprintf(out->message, sizeof(out->message),
		    "timeout: no answer from the endpoint within %ld s", (timeout_ms + 999) / 1000);
		return;
	}
	if (curl_code != CURLE_OK) {
		validate_clean(curl_msg ? curl_msg : "", curl_msg ? strlen(curl_msg) : 0, key,
		    cmsg, sizeof(cmsg), 200);
		out->outcome = VALIDATE_UNREACHABLE;
		snprintf(out->message, sizeof(out->message), "unreachable: %s", cmsg);
		return;
	}
	validate_detail(body, body_len, key, detail, sizeof(detail));
	if (http_status >= 200 && http_status < 300) {
		out->outcome = VALIDATE_OK;
		out->ok = true;
		snprintf(out->message, sizeof(out->message), "ok (upstream answered %ld)", http_status);
	} else if (http_status == 429) {
		out->outcome = VALIDATE_OK;
		out->ok = true;
		snprintf(out->message, sizeof(out->message),
		    "ok: key accepted but rate limited (upstream answered 429)");
	} else if (http_status == 401) {
		out->outcome = VALIDATE_INVALID_KEY;
		snprintf(out->message, sizeof(out->message), "invalid key (upstream answered 401: %s)",
		    detail[0] ? detail : "Unauthorized");
	} else if (http_status == 403) {
		out->outcome = VALIDATE_FORBIDDEN;
		snprintf(out->message, sizeof(out->message), "forbidden (upstream answered 403: %s)",
		    detail[0] ? detail : "Forbidden");
	} else {
		out->outcome = VALIDATE_UPSTREAM_ERROR;
		snprintf(out->message, sizeof(out->message), "upstream answered %ld: %s", http_status,
		    detail[0] ? detail : "(no detail)");
	}
}

/* libcurl write callback: keep at most the cap, silently drop the rest. */
static size_t
validate_write(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct sc_buf *b = arg;
	size_t n = size * nmemb;
	size_t room = b->cap > b->len ? b->cap - b->len : 0;

	if (room > 0)
		sc_buf_append(b, ptr, n < room ? n : room);
	return n;
}

void
validate_key_check(const char *endpoint, const char *key, long timeout_ms,
    struct validate_result *out)
{
	CURL *h = NULL;
	struct curl_slist *hdrs = NULL;
	struct sc_buf body, url, auth;
	char errbuf[CURL_ERROR_SIZE];
	long status = 0;
	int64_t t0 = sc_now_ms();
	CURLcode rc;

	memset(out, 0, sizeof(*out));
	sc_buf_init(&body, VALIDATE_BODY_MAX);
	sc_buf_init(&url, 8192);
	sc_buf_init(&auth, 8192);
	errbuf[0] = '\0';
	if (sc_buf_printf(&url, "%s/models", endpoint) == -1 ||
	    sc_buf_printf(&auth, "Authorization: Bearer %s", key) == -1) {
		out->outcome = VALIDATE_UNREACHABLE;
		snprintf(out->message, sizeof(out->message), "unreachable: endpoint URL or key too long");
		goto done;
	}
	h = curl_easy_init();
	if (h == NULL) {
		out->outcome = VALIDATE_UNREACHABLE;
		snprintf(out->message, sizeof(out->message), "unreachable: cannot initialise libcurl");
		goto done;
	}
	hdrs = curl_slist_append(hdrs, auth.data);
	hdrs = curl_slist_append(hdrs, "Accept: application/json");
	curl_easy_setopt(h, CURLOPT_URL, url.data);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(h, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, validate_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "sidecar-admin/2 key-check");
	rc = curl_easy_perform(h);
	if (rc == CURLE_OK)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	validate_classify((int)rc, errbuf[0] ? errbuf : curl_easy_strerror(rc), status,
	    body.data, body.len, key, timeout_ms, out);
done:
	out->latency_ms = (long)(sc_now_ms() - t0);
	if (h != NULL)
		curl_easy_cleanup(h);
	for (struct curl_slist *l = hdrs; l != NULL; l = l->next)
		crypto_wipe(l->data, strlen(l->data));	/* the copy of the key */
	curl_slist_free_all(hdrs);
	if (auth.data != NULL)
		crypto_wipe(auth.data, auth.len);
	sc_buf_free(&auth);
	sc_buf_free(&url);
	sc_buf_free(&body);
}
