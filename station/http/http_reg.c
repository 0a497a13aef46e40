#include "http_reg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "err.h"
#include "profiles.h"

/* --- The request ------------------------------------------------------------------------ */

static const char *json_kind(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
	case JSON_REAL:
		return "a number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	default:
		return "null";
	}
}

/* Flags of take_string(). */
#define TS_REQUIRED 1u /* missing is an error */
#define TS_NONEMPTY 2u /* "" is an error */
#define TS_LINES 4u    /* line breaks and tabs allowed (a PEM) */

/* Copies the string field name of obj into *out after checking it: no NUL, no control
 * characters (but line breaks with TS_LINES), at most max bytes. *out stays NULL when the
 * field is absent (or null) and not required. */
static int take_string(const json_t *obj, const char *name, unsigned flags, size_t max,
		       char **out, size_t *outlen, char *err, size_t errlen)
{
	const json_t *v = json_object_get(obj, name);
	const char *s;
	size_t n;

	*out = NULL;
	if (!v || json_is_null(v)) {
		if (flags & TS_REQUIRED)
			return st_errf(err, errlen, ST_E_HTTP_FIELD, "field '%s' is missing",
				       name);
		return 0;
	}
	if (!json_is_string(v))
		return st_errf(err, errlen, ST_E_HTTP_FIELD, "field '%s' must be a string, not %s",
			       name, json_kind(v));
	s = json_string_value(v);
	n = json_string_length(v);
	if (n == 0 && (flags & TS_NONEMPTY))
		return st_errf(err, errlen, ST_E_HTTP_FIELD, "field '%s' is empty", name);
	if (n > max)
		return st_errf(err, errlen, ST_E_HTTP_FIELD,
			       "field '%s' is %zu bytes long, at most %zu are allowed", name, n,
			       max);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == 0)
			return st_errf(err, errlen, ST_E_HTTP_FIELD,
				       "field '%s' contains a NUL character at byte %zu", name,
				       i + 1);
		if ((flags & TS_LINES) && (c == '\n' || c == '\r' || c == '\t'))
			continue;
		if (c < 0x20 || c == 0x7f)
			return st_errf(err, errlen, ST_E_HTTP_FIELD,
				       "field '%s' contains a control character (0x%02x) at byte %zu",
				       name, c, i + 1);
	}
	if (!(flags & TS_LINES)) {
		/* Nor what a terminal or a log reader acts on (C1 controls, bidi overrides):
		 * these fields end up in the log and the ledger. st_escape() knows them all;
		 * text it leaves as it is has none. */
		char *shown = malloc(ST_ESCAPE_SIZE(n));
		int same;

		if (!shown)
			return st_errf(err, errlen, ST_E_NOMEM, "out of memory");
		st_escape(shown, ST_ESCAPE_SIZE(n), s, n, ST_ESCAPE_KEEP_BACKSLASH);
		same = strcmp(shown, s) == 0;
		if (!same)
			st_errf(err, errlen, ST_E_HTTP_FIELD,
				"field '%s' contains a control or text-direction character: %s",
				name, shown);
		free(shown);
		if (!same)
			return ST_E_HTTP_FIELD;
	}
	*out = malloc(n + 1);
	if (!*out)
		return st_errf(err, errlen, ST_E_NOMEM, "out of memory");
	memcpy(*out, s, n);
	(*out)[n] = 0;
	if (outlen)
		*outlen = n;
	return 0;
}

static int is_word(const char *s, const char *extra)
{
	if (!*s)
		return 0;
	for (; *s; s++) {
		char c = *s;

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      strchr(extra, c)))
			return 0;
	}
	return 1;
}

/* "overrides": {section: {key: TOML text}}, the names as a profile may write them (so that
 * nothing but a value lands in sota.toml), the values checked as TOML text. */
static int take_overrides(const json_t *root, struct st_sota_overrides *o, char *err,
			  size_t errlen)
{
	const json_t *ov = json_object_get(root, "overrides"), *sv, *v;
	const char *sec, *key;
	char verr[ST_ERR_MAX], shown[ST_ESCAPE_SIZE(64)];

	if (!ov || json_is_null(ov))
		return 0;
	if (!json_is_object(ov))
		return st_errf(err, errlen, ST_E_HTTP_FIELD,
			       "field 'overrides' must be an object of sections, not %s",
			       json_kind(ov));
	if (json_object_size(ov) > ST_HTTP_REG_MAX_SECTIONS)
		return st_errf(err, errlen, ST_E_HTTP_FIELD,
			       "field 'overrides' has %zu sections, at most %d are allowed",
			       json_object_size(ov), ST_HTTP_REG_MAX_SECTIONS);
	json_object_foreach((json_t *)ov, sec, sv) {
		if (strlen(sec) > 64 || !is_word(sec, "_.-"))
			return st_errf(err, errlen, ST_E_HTTP_FIELD,
				       "overrides: section name '%s' may contain only letters, "
				       "digits, '_', '.' and '-' (1 to 64)",
				       st_escape(shown, sizeof(shown), sec, strlen(sec), 0));
		if (!json_is_object(sv))
			return st_errf(err, errlen, ST_E_HTTP_FIELD,
				       "overrides.%s must be an object of keys, not %s", sec,
				       json_kind(sv));
		if (json_object_size(sv) > ST_HTTP_REG_MAX_KEYS)
			return st_errf(err, errlen, ST_E_HTTP_FIELD,
				       "overrides.%s has %zu keys, at most %d are allowed", sec,
				       json_object_size(sv), ST_HTTP_REG_MAX_KEYS);
		if (st_sota_override_section(o, sec) != 0)
			return st_errf(err, errlen, ST_E_NOMEM, "out of memory");
		json_object_foreach((json_t *)sv, key, v) {
			const char *s;

			if (strlen(key) > 64 || !is_word(key, "_-"))
				return st_errf(err, errlen, ST_E_HTTP_FIELD,
					       "overrides.%s: key '%s' may contain only letters, "
					       "digits, '_' and '-' (1 to 64)",
					       sec, st_escape(shown, sizeof(shown), key, strlen(key), 0));
			if (json_is_null(v)) {
				s = "";
			} else if (!json_is_string(v)) {
				return st_errf(err, errlen, ST_E_HTTP_FIELD,
					       "overrides.%s.%s must be a string of TOML text, not %s",
					       sec, key, json_kind(v));
			} else {
				s = json_string_value(v);
				if (json_string_length(v) > ST_HTTP_REG_MAX_VALUE ||
				    strlen(s) != json_string_length(v))
					return st_errf(err, errlen, ST_E_HTTP_FIELD,
						       "overrides.%s.%s is longer than %d bytes or "
						       "holds a NUL",
						       sec, key, ST_HTTP_REG_MAX_VALUE);
				if (st_sota_check_value(s, verr, sizeof(verr)) != 0) {
					/* The words may quote the value. */
					char v[ST_ESCAPE_SIZE(sizeof(verr))];

					return st_errf(err, errlen, ST_E_HTTP_FIELD,
						       "overrides.%s.%s: %s", sec, key,
						       st_escape(v, sizeof(v), verr, strlen(verr),
								 ST_ESCAPE_KEEP_BACKSLASH));
				}
			}
			if (st_sota_override_set(o, sec, key, s) != 0)
				return st_errf(err, errlen, ST_E_NOMEM, "out of memory");
		}
	}
	return 0;
}

/* Whether d is where the device tool may keep its files: absolute, not '/', and naming its
 * directory plainly, no component '.' or '..' ("/..", "/var/sota/.." and "/a/./b" too, which
 * a search for "/../" missed): sota.toml names paths under it. */
static int config_dir_ok(const char *d)
{
	int named = 0; /* "//" is '/' too */

	if (d[0] != '/')
		return 0;
	for (const char *c = d; *c;) {
		size_t n;

		while (*c == '/')
			c++;
		n = strcspn(c, "/");
		if ((n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
			return 0;
		named |= n > 0;
		c += n;
	}
	return named;
}

int st_http_reg_parse(const void *body, size_t len, struct st_http_reg **out, char *err,
		      size_t errlen)
{
	struct st_http_reg *r = NULL;
	json_error_t jerr;
	json_t *root;
	int rc;

	*out = NULL;
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		char text[ST_ESCAPE_SIZE(JSON_ERROR_TEXT_LENGTH)];

		/* jansson's words may quote the body. */
		return st_errf(err, errlen, ST_E_HTTP_JSON,
			       "request body is not JSON: %s at line %d, column %d",
			       st_printable(text, sizeof(text), jerr.text), jerr.line, jerr.column);
	}
	if (!json_is_object(root)) {
		rc = st_errf(err, errlen, ST_E_HTTP_JSON,
			     "request body must be a JSON object, not %s", json_kind(root));
		goto out;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory");
		goto out;
	}
	rc = take_string(root, "csr", TS_REQUIRED | TS_NONEMPTY | TS_LINES, 64 * 1024, &r->csr,
			 &r->csr_len, err, errlen);
	if (rc == 0)
		rc = take_string(root, "hardware-id", TS_REQUIRED | TS_NONEMPTY,
				 ST_HTTP_REG_MAX_HWID, &r->hardware_id, NULL, err, errlen);
	if (rc == 0)
		rc = take_string(root, "uuid", TS_REQUIRED | TS_NONEMPTY, ST_PROFILE_MAX_ID,
				 &r->uuid, NULL, err, errlen);
	if (rc == 0)
		rc = take_string(root, "name", 0, ST_HTTP_REG_MAX_NAME, &r->name, NULL, err,
				 errlen);
	if (rc == 0)
		rc = take_string(root, "sota-config-dir", TS_NONEMPTY, ST_HTTP_REG_MAX_DIR,
				 &r->config_dir, NULL, err, errlen);
	if (rc == 0)
		rc = take_string(root, "group", 0, ST_HTTP_REG_MAX_GROUP, &r->group, NULL, err,
				 errlen);
	if (rc < 0)
		goto out;
	/* The device tool accepts a UUID in either case: one device, one spelling. */
	st_device_id_normalize(r->uuid);
	if (r->config_dir && !config_dir_ok(r->config_dir)) {
		rc = st_errf(err, errlen, ST_E_HTTP_FIELD,
			     "field 'sota-config-dir' must be an absolute directory other than "
			     "'/' without '.' or '..' components, not '%s'",
			     r->config_dir);
		goto out;
	}
	if (r->group && !r->group[0]) {
		free(r->group);
		r->group = NULL;
	}
	if (r->group && !is_word(r->group, "_.-")) {
		rc = st_errf(err, errlen, ST_E_HTTP_FIELD,
			     "field 'group' may contain only letters, digits, '_', '.' and '-'");
		goto out;
	}
	rc = take_overrides(root, &r->overrides, err, errlen);
	if (rc < 0)
		goto out;
	*out = r;
	r = NULL;
out:
	st_http_reg_free(r);
	json_decref(root);
	return rc;
}

void st_http_reg_free(struct st_http_reg *r)
{
	if (!r)
		return;
	free(r->csr);
	free(r->hardware_id);
	free(r->uuid);
	free(r->name);
	free(r->config_dir);
	free(r->group);
	st_sota_overrides_clear(&r->overrides);
	free(r);
}

/* --- The profile's rules ---------------------------------------------------------------- */

/* Profile i of every profile set chooses from: the listed ones, then the directory's. */
static const struct st_profile *nth_profile(const struct st_profiles *set, size_t i)
{
	if (i < set->n)
		return set->list[i];
	return set->dir ? st_profile_set_get(set->dir, i - set->n) : NULL;
}

int st_http_reg_choose(const struct st_profiles *set, const struct st_http_reg *r,
		       const struct st_profile **out, char *err, size_t errlen)
{
	int production = st_csr_asks_production((const uint8_t *)r->csr, r->csr_len);
	const struct st_profile *p, *only = NULL, *generic = NULL;
	size_t matching = 0, preferred = 0, generics = 0, used = 0;
	int by_flag;
	char names[1024] = "";

	*out = NULL;
	/* Matching with the profile's own match.sku: the hardware id alone decides here. */
	for (size_t i = 0; (p = nth_profile(set, i)); i++) {
		if (!st_profile_matches(p, r->hardware_id, p->match_sku))
			continue;
		matching++;
		if (!p->policy.production == !production)
			preferred++;
	}
	if (matching == 0) {
		*out = set->deflt;
		if (set->deflt)
			return 0;
		return st_errf(err, errlen, ST_E_PROFILE_NOMATCH,
			       "no profile matches hardware id '%s' (no default profile)",
			       r->hardware_id);
	}
	/* Profiles for what the CSR asks; if none is, the CSR check says what is wrong. */
	by_flag = preferred > 0;
	for (size_t i = 0; (p = nth_profile(set, i)); i++) {
		int w;

		if (!st_profile_matches(p, r->hardware_id, p->match_sku) ||
		    (by_flag && !p->policy.production != !production))
			continue;
		only = p;
		if (!p->match_sku) {
			generic = p;
			generics++;
		}
		w = snprintf(names + used, sizeof(names) - used, "%s%s (%s)", used ? ", " : "",
			     p->sku, p->path);
		if (w > 0 && (size_t)w < sizeof(names) - used)
			used += (size_t)w;
	}
	if ((by_flag ? preferred : matching) == 1) {
		*out = only;
		return 0;
	}
	if (generics == 1) {
		*out = generic;
		return 0;
	}
	return st_errf(err, errlen, ST_E_SLOT_PROFILE_AMBIGUOUS,
		       "hardware id '%s'%s matches %zu profiles: %s; a request names no sku, so "
		       "keep one of them without match.sku (or with another 'production') for "
		       "registrations over HTTP",
		       r->hardware_id,
		       !by_flag     ? ""
		       : production ? " with a production CSR"
				    : " with a non-production CSR",
		       by_flag ? preferred : matching, names);
}

int st_http_reg_check(const struct st_profile *p, const struct st_http_reg *r, char *err,
		      size_t errlen)
{
	if (r->group) {
		size_t i;

		for (i = 0; i < p->n_groups; i++) {
			if (strcmp(p->groups[i], r->group) == 0)
				break;
		}
		if (i == p->n_groups)
			return st_errf(err, errlen, ST_E_HTTP_GROUP,
				       "group '%s' is not allowed by profile %s (%s)", r->group,
				       p->sku,
				       p->n_groups ? "see its 'groups'" : "it allows no group");
	}
	if (p->key_storage == ST_KEY_STORAGE_SECURE_ELEMENT)
		return st_errf(err, errlen, ST_E_HTTP_KEY_STORAGE,
			       "profile %s requires a key made in a secure element; a request over "
			       "HTTP cannot attest where its key lives",
			       p->sku);
	if (!p->has_sota)
		return st_errf(err, errlen, ST_E_HTTP_NO_SOTA,
			       "profile %s has no 'sota' section: the answer's sota.toml cannot "
			       "be rendered",
			       p->sku);
	return st_profile_check_device_id(p, r->uuid, err, errlen);
}

int st_http_reg_sota(const struct st_profile *p, const struct st_http_reg *r,
		     struct st_sota_cache *cache, char **out, size_t *len, char *err,
		     size_t errlen)
{
	struct st_sota_params sp = {
		.gateway = p->sota_gateway,
		.ostree_server = p->sota_ostree_server,
		.hardware_id = p->sota_hardware_id ? p->sota_hardware_id : r->hardware_id,
		.config_dir = r->config_dir ? r->config_dir : p->sota_config_dir,
		.p11 = p->has_p11 ? &p->sota_p11 : NULL,
	};
	const struct st_sota_overrides *layers[2] = { &p->sota_overrides, &r->overrides };

	*out = NULL;
	if (!p->has_sota)
		return st_errf(err, errlen, ST_E_HTTP_NO_SOTA, "profile %s has no 'sota' section",
			       p->sku);
	return st_sota_render_cached(cache, &sp, layers, 2, out, len, err, errlen);
}

/* --- The answer ------------------------------------------------------------------------- */

size_t st_http_json_escaped_len(const char *s, size_t n)
{
	size_t len = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t')
			len += 2;
		else if (c < 0x20 || c == 0x7f)
			len += 6;
		else
			len++;
	}
	return len;
}

size_t st_http_json_escape(char *dst, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	char *d = dst;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		switch (c) {
		case '"':
		case '\\':
			*d++ = '\\';
			*d++ = (char)c;
			break;
		case '\n':
			*d++ = '\\';
			*d++ = 'n';
			break;
		case '\r':
			*d++ = '\\';
			*d++ = 'r';
			break;
		case '\t':
			*d++ = '\\';
			*d++ = 't';
			break;
		default:
			if (c < 0x20 || c == 0x7f) {
				memcpy(d, "\\u00", 4);
				d[4] = hex[c >> 4];
				d[5] = hex[c & 15];
				d += 6;
			} else {
				*d++ = (char)c;
			}
		}
	}
	return (size_t)(d - dst);
}

#define PEM_BEGIN "-----BEGIN CERTIFICATE-----\\n"
#define PEM_END "-----END CERTIFICATE-----\\n"
#define KEY_ROOT "{\"root.crt\": \""
#define KEY_SOTA "\", \"sota.toml\": \""
#define KEY_PEM "\", \"client.pem\": \""
#define KEY_CHAINED "\", \"client.chained\": \""
#define CLOSE "\"}"
#define LIT(s) (sizeof(s) - 1)

static size_t b64_len(size_t der_len)
{
	return 4 * ((der_len + 2) / 3);
}

/* A certificate as the text of a JSON string: PEM with 64-column lines, each "\n". */
static size_t cert_json_len(size_t der_len)
{
	size_t b = b64_len(der_len);

	return LIT(PEM_BEGIN) + b + 2 * ((b + 63) / 64) + LIT(PEM_END);
}

int st_http_answer_base_init(struct st_http_answer_base *b, const char *root_pem,
			     const char *chain_pem)
{
	size_t rl = strlen(root_pem), cl = strlen(chain_pem);
	char *d;

	memset(b, 0, sizeof(*b));
	b->head_len = LIT(KEY_ROOT) + st_http_json_escaped_len(root_pem, rl);
	b->tail_len = st_http_json_escaped_len(chain_pem, cl) + LIT(CLOSE);
	b->head = malloc(b->head_len);
	b->tail = malloc(b->tail_len);
	if (!b->head || !b->tail) {
		st_http_answer_base_clear(b);
		return ST_E_NOMEM;
	}
	memcpy(b->head, KEY_ROOT, LIT(KEY_ROOT));
	st_http_json_escape(b->head + LIT(KEY_ROOT), root_pem, rl);
	d = b->tail;
	d += st_http_json_escape(d, chain_pem, cl);
	memcpy(d, CLOSE, LIT(CLOSE));
	return 0;
}

void st_http_answer_base_clear(struct st_http_answer_base *b)
{
	free(b->head);
	free(b->tail);
	memset(b, 0, sizeof(*b));
}

/* Bytes of the answer with a certificate of der_len bytes. */
static size_t answer_len(const struct st_http_answer *a, const struct st_http_answer_base *base,
			 size_t der_len)
{
	return a->head_len + 2 * cert_json_len(der_len) + LIT(KEY_CHAINED) + base->tail_len;
}

int st_http_answer_prepare(struct st_http_answer *a, const struct st_http_answer_base *base,
			   const char *sota)
{
	size_t sl = strlen(sota);
	char *d;

	memset(a, 0, sizeof(*a));
	a->head_len = base->head_len + LIT(KEY_SOTA) + st_http_json_escaped_len(sota, sl) +
		      LIT(KEY_PEM);
	a->cap = answer_len(a, base, ST_HTTP_REG_CERT_DER_ROOM);
	a->buf = malloc(a->cap);
	if (!a->buf) {
		st_http_answer_clear(a);
		return ST_E_NOMEM;
	}
	d = a->buf;
	memcpy(d, base->head, base->head_len);
	d += base->head_len;
	memcpy(d, KEY_SOTA, LIT(KEY_SOTA));
	d += LIT(KEY_SOTA);
	d += st_http_json_escape(d, sota, sl);
	memcpy(d, KEY_PEM, LIT(KEY_PEM));
	return 0;
}

/* Writes the certificate as PEM text at d, 48 bytes of DER (64 of base64) a line, each line
 * ended by an escaped newline; returns the end. EVP_EncodeBlock ends what it writes with a
 * NUL, which the line's end then covers: d must have room for cert_json_len(der_len). */
static char *put_cert(char *d, const uint8_t *der, size_t der_len)
{
	memcpy(d, PEM_BEGIN, LIT(PEM_BEGIN));
	d += LIT(PEM_BEGIN);
	for (size_t off = 0; off < der_len; off += 48) {
		size_t n = der_len - off < 48 ? der_len - off : 48;

		d += EVP_EncodeBlock((unsigned char *)d, der + off, (int)n);
		*d++ = '\\';
		*d++ = 'n';
	}
	memcpy(d, PEM_END, LIT(PEM_END));
	return d + LIT(PEM_END);
}

int st_http_answer_finish(struct st_http_answer *a, const struct st_http_answer_base *base,
			  const uint8_t *der, size_t der_len)
{
	size_t need = answer_len(a, base, der_len);
	char *d, *cert;

	if (need > a->cap) {
		/* Only for a certificate beyond the reserved room. */
		char *nb = realloc(a->buf, need);

		if (!nb)
			return ST_E_NOMEM;
		a->buf = nb;
		a->cap = need;
	}
	cert = a->buf + a->head_len;
	d = put_cert(cert, der, der_len);
	memcpy(d, KEY_CHAINED, LIT(KEY_CHAINED));
	d += LIT(KEY_CHAINED);
	memcpy(d, cert, cert_json_len(der_len));
	d += cert_json_len(der_len);
	memcpy(d, base->tail, base->tail_len);
	d += base->tail_len;
	a->len = (size_t)(d - a->buf);
	return 0;
}

void st_http_answer_clear(struct st_http_answer *a)
{
	free(a->buf);
	memset(a, 0, sizeof(*a));
}

/* --- Status codes ----------------------------------------------------------------------- */

int st_http_status_for(int code)
{
	const char *name = st_errname(code);

	switch (code) {
	case ST_E_HTTP_AUTH:
		return 401;
	case ST_E_HTTP_GROUP:
	case ST_E_HTTP_KEY_STORAGE:
	/* The brand owner did not authorize this certificate: asking again will not help. */
	case ST_E_AUTH_EXHAUSTED:
	case ST_E_AUTH_EXPIRED:
	case ST_E_AUTH_NOT_YET_VALID:
	case ST_E_AUTH_SKU:
	case ST_E_AUTH_CONFLICT:
	/* A page in a browser: no registration client is one. */
	case ST_E_HTTP_BROWSER:
		return 403;
	case ST_E_HTTP_NOT_FOUND:
		return 404;
	case ST_E_HTTP_METHOD:
		return 405;
	case ST_E_POOL_KEY_REUSED:
	case ST_E_POOL_ID_OTHER_KEY:
	case ST_E_POOL_REISSUE_UNAUTH:
	case ST_E_LEDGER_DUP_SERIAL:
	case ST_E_LEDGER_DUP_KEY:
		return 409;
	case ST_E_HTTP_TOO_LARGE:
		return 413;
	case ST_E_HTTP_HOST:
		return 421;
	case ST_E_LEDGER_DUP_ID: /* another request of this device is in flight: retry */
	case ST_E_POOL_FULL:
	case ST_E_POOL_CLOSED:
	case ST_E_HTTP_TIMEOUT:
	case ST_E_HTTP_STOPPING:
		return 503;
	case ST_E_HTTP_JSON:
	case ST_E_HTTP_FIELD:
	case ST_E_HTTP_NO_SOTA:
	case ST_E_PROFILE_DEVICE_ID:
	case ST_E_PROFILE_NOMATCH:
	case ST_E_SLOT_PROFILE_AMBIGUOUS:
	case ST_E_PROFILE_VALUE:
	case ST_E_RENDER_LIMIT:
		return 400;
	default:
		break;
	}
	/* Every reason a CSR is refused is the request's fault. */
	if (strncmp(name, "CSR_", 4) == 0)
		return 400;
	return 500;
}
