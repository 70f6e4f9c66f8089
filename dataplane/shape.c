/*
 * Request-body shaping per provider (SPEC §5.6).
 *
 * Every forwarded body needs its model replaced by the prefix-stripped name,
 * and bodies reach several MB, so the common case must not re-serialise:
 * after json-c has validated the body (strict, UTF-8 checked, nesting capped),
 * a small scanner walks the top-level object of the raw text to find the
 * "model" value, and the new body is the old bytes with that string replaced
 * (plus "stream_options" inserted after the '{' when usage must be asked for
 * and the client sent no stream_options). Whenever the scan meets anything it
 * does not expect (escaped or duplicate keys...) or a rewrite is asked for,
 * the body is rebuilt from json-c's tree instead: slower, equally correct.
 *
 * flatten_content joins the text parts of a list-valued message content with
 * "\n", the separator vLLM (which NIM serves) uses when it flattens text
 * parts itself; content with any non-text part is left as a list.
 * max_tokens_field moves max_completion_tokens to max_tokens (replacing a
 * max_tokens the client also sent: the newer field wins).
 * Known limit of the rebuilt form: integers beyond 64 bits come out clamped
 * (json-c's integer types); number text otherwise keeps its original form.
 */
#include <string.h>

#include <json-c/json.h>

#include "jscan.h"
#include "shape.h"

static int
shape_fail(struct sc_err *e, const char *field, const char *msg)
{
	return sc_err_set(e, field, 0, "%s", msg);
}

static const char *
shape_ws(const char *p, const char *e)
{
	while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/* p at a '"': the byte after the closing quote, NULL when unterminated.
 * *escaped tells whether the string holds a backslash. */
static const char *
shape_skip_string(const char *p, const char *e, int *escaped)
{
	*escaped = 0;
	for (p++; p < e; p++) {
		if (*p == '\\') {
			*escaped = 1;
			p++;
		} else if (*p == '"') {
			return p + 1;
		}
	}
	return NULL;
}

/* Skip one value (already validated by json-c): the byte after it, or NULL. */
static const char *
shape_skip_value(const char *p, const char *e)
{
	int depth = 0, esc;

	if (p >= e)
		return NULL;
	if (*p == '"')
		return shape_skip_string(p, e, &esc);
	if (*p != '{' && *p != '[') {
		while (p < e && *p != ',' && *p != '}' && *p != ']' &&
		    *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
			p++;
		return p;
	}
	while (p < e) {
		if (*p == '"') {
			if ((p = shape_skip_string(p, e, &esc)) == NULL)
				return NULL;
			continue;
		}
		if (*p == '{' || *p == '[')
			depth++;
		else if ((*p == '}' || *p == ']') && --depth == 0)
			return p + 1;
		p++;
	}
	return NULL;
}

/* Locate the top-level "model" value and whether "stream_options" is there.
 * 0 when the raw text is understood and holds exactly one model key. */
static int
shape_scan(struct shape_req *r)
{
	const char *b = r->body, *e = r->body + r->body_len, *p, *k, *v;
	int nmodel = 0, esc;

	p = shape_ws(b, e);
	if (p == e || *p != '{')
		return -1;
	r->obj_open = (size_t)(p + 1 - b);
	p = shape_ws(p + 1, e);
	if (p < e && *p == '}')
		return -1;
	for (;;) {
		size_t klen;

		if (p == e || *p != '"')
			return -1;
		k = p + 1;
		if ((p = shape_skip_string(p, e, &esc)) == NULL || esc)
			return -1;
		klen = (size_t)(p - 1 - k);
		p = shape_ws(p, e);
		if (p == e || *p != ':')
			return -1;
		v = shape_ws(p + 1, e);
		if ((p = shape_skip_value(v, e)) == NULL)
			return -1;
		if (klen == 5 && memcmp(k, "model", 5) == 0) {
			if (*v != '"')
				return -1;
			r->model_start = (size_t)(v - b);
			r->model_end = (size_t)(p - b);
			nmodel++;
		} else if (klen == 14 && memcmp(k, "stream_options", 14) == 0) {
			r->has_stream_options = true;
		}
		p = shape_ws(p, e);
		if (p == e)
			return -1;
		if (*p == '}')
			break;
		if (*p != ',')
			return -1;
		p = shape_ws(p + 1, e);
	}
	return nmodel == 1 ? 0 : -1;
}

/* The fast path: the scanner reads everything routing and the splice need.
 * 0, or -1 when json-c must decide (refused document, model absent or not a
 * plain string, duplicate keys...). */
static int
shape_parse_scan(struct shape_req *r)
{
	struct jscan_member m[5] = {
		JSCAN_WANT("model"), JSCAN_WANT("stream"), JSCAN_WANT("stream_options"),
		JSCAN_WANT("max_completion_tokens"), JSCAN_WANT("messages"),
	};
	struct jscan_member iu = JSCAN_WANT("include_usage");
	const char *s;
	size_t n;

	if (jscan_object_in(r->body, r->body_len, m, 5, &m[2], &iu, 1) == -1 ||
	    jscan_plain_string(m[0].val, m[0].val_len, &s, &n) == -1)
		return -1;
	r->include_usage = jscan_type(iu.val) == JSCAN_TRUE;	/* absent unless m[2] is an object */
	if (n < sizeof(r->model_small)) {
		memcpy(r->model_small, s, n);
		r->model_small[n] = '\0';
		r->model = r->model_small;
	} else {
		r->model_own = sc_xmalloc(n + 1);
		memcpy(r->model_own, s, n);
		r->model_own[n] = '\0';
		r->model = r->model_own;
	}
	r->stream = jscan_type(m[1].val) == JSCAN_TRUE;
	r->has_stream_options = m[2].val != NULL;
	r->so_not_object = m[2].val != NULL && jscan_type(m[2].val) != JSCAN_OBJECT;
	r->has_mct = m[3].val != NULL;
	r->has_messages = m[4].val != NULL;
	r->obj_open = (size_t)((const char *)memchr(r->body, '{', r->body_len) - r->body) + 1;
	r->model_start = (size_t)(m[0].val - r->body);
	r->model_end = r->model_start + m[0].val_len;
	r->splice_ok = true;
	return 0;
}

/* json-c's tree of the body (strict, UTF-8 checked, nesting capped); 0 with
 * r->root, or -1 with the message for a 400 in e. */
static int
shape_tree(struct shape_req *r, struct sc_err *e)
{
	const char *body = r->body;
	size_t len = r->body_len;
	struct json_tokener *tok = NULL;
	enum json_tokener_error jerr;

	if ((tok = json_tokener_new_ex(SHAPE_MAX_DEPTH)) == NULL)
		return shape_fail(e, "", "out of memory");
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	r->root = json_tokener_parse_ex(tok, body, (int)len);
	jerr = json_tokener_get_error(tok);
	if (jerr == json_tokener_success && json_tokener_get_parse_end(tok) < len &&
	    shape_ws(body + json_tokener_get_parse_end(tok), body + len) != body + len)
		jerr = json_tokener_error_parse_unexpected;
	json_tokener_free(tok);
	if (jerr != json_tokener_success || r->root == NULL) {
		json_object_put(r->root);
		r->root = NULL;
		if (jerr == json_tokener_error_depth)
			return shape_fail(e, "", "The request body is nested too deeply (limit 64 levels).");
		if (jerr == json_tokener_error_parse_utf8_string)
			return shape_fail(e, "", "The request body is not valid UTF-8.");
		return shape_fail(e, "", "We could not parse the JSON body of your request.");
	}
	return 0;
}

int
shape_parse(struct shape_req *r, const char *body, size_t len, struct sc_err *e)
{
	struct json_object *v, *so;

	memset(r, 0, sizeof(*r));
	r->body = body;
	r->body_len = len;
	if (len == 0 || len > INT32_MAX)
		return shape_fail(e, "", "We could not parse the JSON body of your request.");
	if (shape_parse_scan(r) == 0)
		return 0;
	free(r->model_own);
	memset(r, 0, sizeof(*r));
	r->body = body;
	r->body_len = len;
	if (shape_tree(r, e) == -1)
		return -1;
	if (!json_object_is_type(r->root, json_type_object)) {
		shape_free(r);
		return shape_fail(e, "", "The request body must be a JSON object.");
	}
	if (!json_object_object_get_ex(r->root, "model", &v) || json_object_is_type(v, json_type_null)) {
		shape_free(r);
		return shape_fail(e, "model", "you must provide a model parameter");
	}
	if (!json_object_is_type(v, json_type_string)) {
		shape_free(r);
		return shape_fail(e, "model", "model must be a string");
	}
	r->model = json_object_get_string(v);
	if (strlen(r->model) != (size_t)json_object_get_string_len(v)) {
		/* "\u0000" would cut the name short wherever it is used as a C string. */
		shape_free(r);
		return shape_fail(e, "model", "model must not contain NUL characters");
	}
	r->stream = json_object_object_get_ex(r->root, "stream", &v) &&
	    json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v);
	if (json_object_object_get_ex(r->root, "stream_options", &so) &&
	    json_object_is_type(so, json_type_object) &&
	    json_object_object_get_ex(so, "include_usage", &v) &&
	    json_object_is_type(v, json_type_boolean) && json_object_get_boolean(v))
		r->include_usage = true;
	r->splice_ok = shape_scan(r) == 0;
	return 0;
}

void
shape_free(struct shape_req *r)
{
	json_object_put(r->root);
	r->root = NULL;
	free(r->model_own);
	r->model_own = NULL;
	r->model = NULL;
}

/* Text of a content list whose parts are all {"type":"text","text":...},
 * joined by "\n" into a new string object; NULL when it is not such a list. */
static struct json_object *
shape_flat_content(struct json_object *content)
{
	struct sc_buf b;
	struct json_object *res = NULL;
	size_t i, n = json_object_array_length(content);

	if (n == 0)
		return NULL;
	for (i = 0; i < n; i++) {
		struct json_object *part = json_object_array_get_idx(content, i), *t, *x;

		if (!json_object_is_type(part, json_type_object) ||
		    !json_object_object_get_ex(part, "type", &t) ||
		    !json_object_is_type(t, json_type_string) ||
		    strcmp(json_object_get_string(t), "text") != 0 ||
		    !json_object_object_get_ex(part, "text", &x) ||
		    !json_object_is_type(x, json_type_string))
			return NULL;
	}
	sc_buf_init(&b, INT32_MAX);
	for (i = 0; i < n; i++) {
		struct json_object *x;

		json_object_object_get_ex(json_object_array_get_idx(content, i), "text", &x);
		if ((i > 0 && sc_buf_append(&b, "\n", 1) == -1) ||
		    sc_buf_append(&b, json_object_get_string(x), (size_t)json_object_get_string_len(x)) == -1)
			goto out;
	}
	res = json_object_new_string_len(b.len ? b.data : "", (int)b.len);
out:
	sc_buf_free(&b);
	return res;
}

/* Apply flatten_content to every message; 1 when something changed. */
static int
shape_flatten(struct json_object *root, int apply)
{
	struct json_object *msgs;
	size_t i, n;
	int changed = 0;

	if (!json_object_object_get_ex(root, "messages", &msgs) ||
	    !json_object_is_type(msgs, json_type_array))
		return 0;
	n = json_object_array_length(msgs);
	for (i = 0; i < n; i++) {
		struct json_object *m = json_object_array_get_idx(msgs, i), *c, *flat;

		if (!json_object_is_type(m, json_type_object) ||
		    !json_object_object_get_ex(m, "content", &c) ||
		    !json_object_is_type(c, json_type_array))
			continue;
		if ((flat = shape_flat_content(c)) == NULL)
			continue;
		changed = 1;
		if (apply)
			json_object_object_add(m, "content", flat);
		else
			json_object_put(flat);
	}
	return changed;
}

/* Append s as a JSON string literal, quotes included, exactly as json-c
 * writes it (a model with nothing to escape is spliced without this). */
static int
shape_append_string(struct sc_buf *out, const char *s)
{
	struct json_object *o;
	const char *t;
	int rc;

	o = json_object_new_string(s);
	if (o == NULL)
		return -1;
	t = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	rc = sc_buf_append(out, t, strlen(t));
	json_object_put(o);
	return rc;
}

int
shape_build(struct shape_req *r, const struct provider_compat *c, const char *model,
    struct sc_buf *out, bool *usage_injected, struct sc_err *e)
{
	static const char so_text[] = "\"stream_options\":{\"include_usage\":true},";
	struct json_object *copy = NULL, *v;
	bool rename, flatten, inject, so_ok = true;
	size_t start = out->len;
	const char *s;

	*usage_injected = false;
	if (r->model == NULL)
		return sc_err_set(e, "", 0, "no parsed body"), 500;
	/* The scanner's reading stands in for the tree until a rewrite needs it. */
	if (r->root == NULL && c->flatten_content && r->has_messages && shape_tree(r, e) == -1)
		return 500;
	if (r->root != NULL) {
		rename = c->max_tokens_field && json_object_object_get_ex(r->root, "max_completion_tokens", NULL);
		flatten = c->flatten_content && shape_flatten(r->root, 0);
		if (json_object_object_get_ex(r->root, "stream_options", &v) &&
		    !json_object_is_type(v, json_type_object))
			so_ok = false;	/* the client's own odd value: leave it to the upstream */
	} else {
		rename = c->max_tokens_field && r->has_mct;
		flatten = false;
		so_ok = !r->so_not_object;
	}
	inject = r->stream && !r->include_usage && c->stream_usage && so_ok;

	if (!rename && !flatten && r->splice_ok && !(inject && r->has_stream_options)) {
		size_t ml = strlen(model), from = 0;
		/* q: a model with nothing to escape goes between the client's
		 * value's own quotes (what json-c would write for it) */
		size_t q = jscan_plain_len(model, ml) == ml ? 1 : 0;

		/* an empty out gets its final size at once (bodies reach several MB),
		 * exact for a model with nothing to escape */
		sc_buf_presize(out, r->body_len - (r->model_end - r->model_start) + (q ? ml + 2 : 2 * ml + 2) +
		    (inject ? sizeof(so_text) - 1 : 0));
		if (inject) {
			if (sc_buf_append(out, r->body, r->obj_open) == -1 ||
			    sc_buf_append(out, so_text, sizeof(so_text) - 1) == -1)
				goto toolarge;
			from = r->obj_open;
		}
		if (sc_buf_append(out, r->body + from, r->model_start + q - from) == -1 ||
		    (q ? sc_buf_append(out, model, ml) : shape_append_string(out, model)) == -1 ||
		    sc_buf_append(out, r->body + r->model_end - q, r->body_len - r->model_end + q) == -1)
			goto toolarge;
		*usage_injected = inject;
		return 0;
	}

	if (r->root == NULL && shape_tree(r, e) == -1)
		return 500;
	if (json_object_deep_copy(r->root, &copy, NULL) != 0)
		return sc_err_set(e, "", 0, "could not copy the request body"), 500;
	json_object_object_add(copy, "model", json_object_new_string(model));
	if (rename) {
		json_object_object_get_ex(copy, "max_completion_tokens", &v);
		json_object_object_add(copy, "max_tokens", json_object_get(v));
		json_object_object_del(copy, "max_completion_tokens");
	}
	if (flatten)
		shape_flatten(copy, 1);
	if (inject) {
		struct json_object *so;

		if (!json_object_object_get_ex(copy, "stream_options", &so)) {
			so = json_object_new_object();
			json_object_object_add(copy, "stream_options", so);
		}
		json_object_object_add(so, "include_usage", json_object_new_boolean(1));
	}
	s = json_object_to_json_string_ext(copy, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	if (s == NULL || sc_buf_append(out, s, strlen(s)) == -1) {
		json_object_put(copy);
		goto toolarge;
	}
	json_object_put(copy);
	*usage_injected = inject;
	return 0;
toolarge:
	out->len = start;
	if (out->data != NULL)
		out->data[start] = '\0';
	return sc_err_set(e, "", 0, "the rewritten request body is too large"), 413;
}
