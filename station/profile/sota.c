#include "sota.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "template.h"

const char *const st_sota_vars[] = {
	"hardware_id", "gateway_server", "ostree_server", "sota_config_dir", NULL,
};

enum { V_HWID, V_GATEWAY, V_OSTREE, V_DIR, V_COUNT };

/* Largest sota.toml rendered; far above any real one, it only bounds hostile overrides. */
#define SOTA_MAX_BYTES (64 * 1024)

/* --- Ordered overrides ------------------------------------------------------------------- */

static struct st_sota_section *find_section(struct st_sota_overrides *o, const char *name)
{
	for (size_t i = 0; i < o->n; i++) {
		if (strcmp(o->sec[i].name, name) == 0)
			return &o->sec[i];
	}
	return NULL;
}

static struct st_sota_section *add_section(struct st_sota_overrides *o, const char *section)
{
	struct st_sota_section *s = find_section(o, section);
	struct st_sota_section *ns;
	char *name;

	if (s)
		return s;
	ns = realloc(o->sec, (o->n + 1) * sizeof(*ns));
	if (!ns)
		return NULL;
	o->sec = ns;
	name = strdup(section);
	if (!name)
		return NULL;
	s = &o->sec[o->n++];
	s->name = name;
	s->kv = NULL;
	s->n = 0;
	return s;
}

int st_sota_override_section(struct st_sota_overrides *o, const char *section)
{
	return add_section(o, section) ? 0 : ST_E_NOMEM;
}

int st_sota_override_set(struct st_sota_overrides *o, const char *section, const char *key,
			 const char *value)
{
	struct st_sota_section *s = add_section(o, section);
	char *v;

	if (!s)
		return ST_E_NOMEM;
	v = strdup(value ? value : "");
	if (!v)
		return ST_E_NOMEM;
	for (size_t i = 0; i < s->n; i++) {
		if (strcmp(s->kv[i].key, key) == 0) {
			free(s->kv[i].value);
			s->kv[i].value = v;
			return 0;
		}
	}
	{
		struct st_sota_kv *nkv = realloc(s->kv, (s->n + 1) * sizeof(*nkv));
		char *k = strdup(key);

		if (!nkv || !k) {
			if (nkv)
				s->kv = nkv;
			free(k);
			free(v);
			return ST_E_NOMEM;
		}
		s->kv = nkv;
		s->kv[s->n].key = k;
		s->kv[s->n].value = v;
		s->n++;
	}
	return 0;
}

void st_sota_overrides_clear(struct st_sota_overrides *o)
{
	for (size_t i = 0; i < o->n; i++) {
		for (size_t j = 0; j < o->sec[i].n; j++) {
			free(o->sec[i].kv[j].key);
			free(o->sec[i].kv[j].value);
		}
		free(o->sec[i].kv);
		free(o->sec[i].name);
	}
	free(o->sec);
	o->sec = NULL;
	o->n = 0;
}

/* --- Checks ------------------------------------------------------------------------------ */

int st_sota_check_text(const char *s, size_t *bad)
{
	for (size_t i = 0; s[i]; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\' || c < 0x20 || c == 0x7f) {
			*bad = i;
			return -1;
		}
	}
	return 0;
}

static int check_basic_string(const char *v, size_t len, char *err, size_t errlen)
{
	size_t i = 1;

	while (i < len) {
		unsigned char c = (unsigned char)v[i];
		if (c == '\\') {
			i += 2;
			continue;
		}
		if (c == '"')
			break;
		if (c < 0x20 && c != '\t') {
			st_errf(err, errlen, ST_E_PROFILE_VALUE,
				"a control character inside a TOML string");
			return -1;
		}
		i++;
	}
	if (i != len - 1) {
		st_errf(err, errlen, ST_E_PROFILE_VALUE,
			i >= len ? "the string's closing quote is missing"
				 : "text follows the string's closing quote");
		return -1;
	}
	return 0;
}

int st_sota_check_value(const char *v, char *err, size_t errlen)
{
	size_t len = strlen(v);
	char first, last;

	if (len == 0)
		return 0;
	first = v[0];
	last = v[len - 1];
	if (len >= 6 && (strncmp(v, "\"\"\"", 3) == 0 || strncmp(v, "'''", 3) == 0)) {
		if (strncmp(v + len - 3, v, 3) == 0)
			return 0;
		st_errf(err, errlen, ST_E_PROFILE_VALUE, "the multi-line string is not closed");
		return -1;
	}
	if (first == '"') {
		if (len < 2) {
			st_errf(err, errlen, ST_E_PROFILE_VALUE,
				"the string's closing quote is missing");
			return -1;
		}
		return check_basic_string(v, len, err, errlen);
	}
	if (first == '\'') {
		const char *close = len >= 2 ? strchr(v + 1, '\'') : NULL;
		if (!close || close != v + len - 1 || strchr(v, '\n')) {
			st_errf(err, errlen, ST_E_PROFILE_VALUE,
				"a literal string must be one line between single quotes");
			return -1;
		}
		return 0;
	}
	if ((first == '[' && last == ']') || (first == '{' && last == '}'))
		return 0;
	if (strcmp(v, "true") == 0 || strcmp(v, "false") == 0)
		return 0;
	/* Numbers, dates and times: signs, digits, and the letters and punctuation they use. */
	if (first == '+' || first == '-' || (first >= '0' && first <= '9') ||
	    strcmp(v, "inf") == 0 || strcmp(v, "nan") == 0) {
		for (size_t i = 0; i < len; i++) {
			char c = v[i];
			if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
			      (c >= 'A' && c <= 'Z') || strchr("+-._: ", c))) {
				st_errf(err, errlen, ST_E_PROFILE_VALUE,
					"'%s' is neither a number nor a date", v);
				return -1;
			}
		}
		return 0;
	}
	st_errf(err, errlen, ST_E_PROFILE_VALUE,
		"'%.64s' is not a TOML value; a string needs its quotes, e.g. '\"%.64s\"'", v, v);
	return -1;
}

/* --- Rendering --------------------------------------------------------------------------- */

struct outbuf {
	char *p;
	size_t len, cap;
	int failed;
};

static void put(struct outbuf *b, const char *s, size_t n)
{
	if (b->failed)
		return;
	if (b->len + n + 1 > SOTA_MAX_BYTES) {
		b->failed = ST_E_RENDER_LIMIT;
		return;
	}
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		char *np;

		while (cap < b->len + n + 1)
			cap *= 2;
		np = realloc(b->p, cap);
		if (!np) {
			b->failed = ST_E_NOMEM;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void puts_(struct outbuf *b, const char *s)
{
	put(b, s, strlen(s));
}

static int set_quoted(struct st_sota_overrides *o, const char *sec, const char *key, const char *a,
		      const char *b)
{
	size_t la = strlen(a), lb = b ? strlen(b) : 0;
	char *v = malloc(la + lb + 3);
	int rc;

	if (!v)
		return ST_E_NOMEM;
	v[0] = '"';
	memcpy(v + 1, a, la);
	if (lb)
		memcpy(v + 1 + la, b, lb);
	v[1 + la + lb] = '"';
	v[2 + la + lb] = '\0';
	rc = st_sota_override_set(o, sec, key, v);
	free(v);
	return rc;
}

static int check_param(const char *what, const char *s, char *err, size_t errlen)
{
	size_t bad;

	if (!s || !s[0])
		return st_errf(err, errlen, ST_E_PROFILE_VALUE, "sota.toml needs a %s", what);
	if (st_sota_check_text(s, &bad) != 0)
		return st_errf(err, errlen, ST_E_PROFILE_VALUE,
			       "%s '%.64s' cannot be written into sota.toml: character 0x%02x at "
			       "offset %zu would break its quoting",
			       what, s, (unsigned char)s[bad], bad);
	return 0;
}

/* Python's str.isspace() at the end of s[0..len): the reference server's rstrip() removes
 * all of it before the final newline, so the station must too. Returns the new length. */
static size_t rstrip_len(const char *s, size_t len)
{
	static const char *const wide[] = {
		"\xc2\x85",	"\xc2\xa0",	"\xe1\x9a\x80", "\xe2\x80\x80", "\xe2\x80\x81",
		"\xe2\x80\x82", "\xe2\x80\x83", "\xe2\x80\x84", "\xe2\x80\x85", "\xe2\x80\x86",
		"\xe2\x80\x87", "\xe2\x80\x88", "\xe2\x80\x89", "\xe2\x80\x8a", "\xe2\x80\xa8",
		"\xe2\x80\xa9", "\xe2\x80\xaf", "\xe2\x81\x9f", "\xe3\x80\x80", NULL,
	};

	for (;;) {
		int cut = 0;

		if (len && strchr(" \t\n\r\v\f\x1c\x1d\x1e\x1f", s[len - 1]) && s[len - 1]) {
			len--;
			continue;
		}
		for (size_t i = 0; wide[i]; i++) {
			size_t wl = strlen(wide[i]);
			if (len >= wl && memcmp(s + len - wl, wide[i], wl) == 0) {
				len -= wl;
				cut = 1;
				break;
			}
		}
		if (!cut)
			return len;
	}
}

int st_sota_render(const struct st_sota_params *p, const struct st_sota_overrides *const *layers,
		   size_t nlayers, char **out, size_t *outlen, char *err, size_t errlen)
{
	struct st_sota_overrides doc = { 0 };
	struct outbuf b = { 0 };
	const char *dir = p->config_dir ? p->config_dir : ST_SOTA_DEFAULT_DIR;
	const char *vals[V_COUNT + 1];
	int rc;

	*out = NULL;
	*outlen = 0;
	rc = check_param("gateway", p->gateway, err, errlen);
	if (rc == 0)
		rc = check_param("ostree server", p->ostree_server, err, errlen);
	if (rc == 0)
		rc = check_param("hardware id", p->hardware_id, err, errlen);
	if (rc == 0)
		rc = check_param("config dir", dir, err, errlen);
	if (rc != 0)
		return rc;
	if (p->p11) {
		const char *const f[] = { p->p11->module, p->p11->pass, p->p11->label,
					  p->p11->tls_pkey_id, p->p11->tls_clientcert_id };
		static const char *const names[] = { "p11 module", "p11 pass", "p11 label",
						     "p11 tls_pkey_id", "p11 tls_clientcert_id" };
		for (size_t i = 0; i < 5; i++) {
			if (!f[i] && i != 0)
				continue;
			rc = check_param(names[i], f[i], err, errlen);
			if (rc != 0)
				return rc;
		}
	}
	vals[V_HWID] = p->hardware_id;
	vals[V_GATEWAY] = p->gateway;
	vals[V_OSTREE] = p->ostree_server;
	vals[V_DIR] = dir;
	vals[V_COUNT] = NULL;

	/* The reference server's template, in its order, as an override set of its own. */
	rc = set_quoted(&doc, "tls", "server", p->gateway, NULL);
	rc = rc ? rc : st_sota_override_set(&doc, "tls", "ca_source", "\"file\"");
	rc = rc ? rc : st_sota_override_set(&doc, "tls", "pkey_source", "\"file\"");
	rc = rc ? rc : st_sota_override_set(&doc, "tls", "cert_source", "\"file\"");
	rc = rc ? rc : set_quoted(&doc, "provision", "server", p->gateway, NULL);
	rc = rc ? rc
		: set_quoted(&doc, "provision", "primary_ecu_hardware_id", p->hardware_id, NULL);
	rc = rc ? rc : set_quoted(&doc, "uptane", "repo_server", p->gateway, "/repo");
	rc = rc ? rc : st_sota_override_set(&doc, "uptane", "key_source", "\"file\"");
	rc = rc ? rc : st_sota_override_set(&doc, "pacman", "type", "\"ostree+compose_apps\"");
	rc = rc ? rc : set_quoted(&doc, "pacman", "ostree_server", p->ostree_server, "/ostree");
	rc = rc ? rc : st_sota_override_set(&doc, "storage", "type", "\"sqlite\"");
	rc = rc ? rc : set_quoted(&doc, "storage", "path", dir, "/");
	rc = rc ? rc : set_quoted(&doc, "import", "tls_cacert_path", dir, "/root.crt");
	rc = rc ? rc : set_quoted(&doc, "import", "tls_pkey_path", dir, "/pkey.pem");
	rc = rc ? rc : set_quoted(&doc, "import", "tls_clientcert_path", dir, "/client.pem");
	if (rc == 0 && p->p11) {
		/* What lmp-device-register --hsm-module sends as overrides, then its [p11]. */
		const struct st_sota_p11 *k = p->p11;

		rc = st_sota_override_set(&doc, "tls", "pkey_source", "\"pkcs11\"");
		rc = rc ? rc : st_sota_override_set(&doc, "tls", "cert_source", "\"pkcs11\"");
		rc = rc ? rc : st_sota_override_set(&doc, "storage", "tls_pkey_path", "");
		rc = rc ? rc : st_sota_override_set(&doc, "storage", "tls_clientcert_path", "");
		rc = rc ? rc : st_sota_override_set(&doc, "import", "tls_pkey_path", "");
		rc = rc ? rc : st_sota_override_set(&doc, "import", "tls_clientcert_path", "");
		rc = rc ? rc : set_quoted(&doc, "p11", "module", k->module, NULL);
		if (rc == 0 && k->pass)
			rc = set_quoted(&doc, "p11", "pass", k->pass, NULL);
		if (rc == 0 && k->label)
			rc = set_quoted(&doc, "p11", "label", k->label, NULL);
		rc = rc ? rc
			: set_quoted(&doc, "p11", "tls_pkey_id",
				     k->tls_pkey_id ? k->tls_pkey_id : "01", NULL);
		rc = rc ? rc
			: set_quoted(&doc, "p11", "tls_clientcert_id",
				     k->tls_clientcert_id ? k->tls_clientcert_id : "03", NULL);
	}
	if (rc != 0) {
		rc = st_errf(err, errlen, rc, "out of memory");
		goto out;
	}
	for (size_t l = 0; l < nlayers; l++) {
		const struct st_sota_overrides *o = layers[l];

		for (size_t i = 0; o && i < o->n; i++) {
			/* A section without keys still appears, as in the reference. */
			if (!add_section(&doc, o->sec[i].name)) {
				rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory");
				goto out;
			}
			for (size_t j = 0; j < o->sec[i].n; j++) {
				const struct st_sota_kv *kv = &o->sec[i].kv[j];
				struct st_tmpl *t = NULL;
				char *v = NULL;
				size_t off, vlen;
				char terr[256];

				/* The reference formats every value with its four names; the
				 * station does the same, and refuses what would crash it there. */
				rc = st_tmpl_compile(kv->value, strlen(kv->value), st_sota_vars, &t,
						     &off, terr, sizeof(terr));
				if (rc == 0)
					rc = st_tmpl_expand(t, vals, NULL, SOTA_MAX_BYTES, &v,
							    &vlen, terr, sizeof(terr));
				st_tmpl_free(t);
				if (rc == 0)
					rc = st_sota_override_set(&doc, o->sec[i].name, kv->key, v);
				free(v);
				if (rc != 0) {
					rc = st_errf(err, errlen, ST_E_PROFILE_VALUE,
						     "sota.toml override %s.%s: %s", o->sec[i].name,
						     kv->key,
						     rc == ST_E_NOMEM ? "out of memory" : terr);
					goto out;
				}
			}
		}
	}
	for (size_t i = 0; i < doc.n; i++) {
		puts_(&b, "[");
		puts_(&b, doc.sec[i].name);
		puts_(&b, "]\n");
		for (size_t j = 0; j < doc.sec[i].n; j++) {
			const struct st_sota_kv *kv = &doc.sec[i].kv[j];

			if (kv->value[0] == '\0') {
				puts_(&b, "# ");
				puts_(&b, kv->key);
				puts_(&b, " is not set\n");
			} else {
				puts_(&b, kv->key);
				puts_(&b, " = ");
				puts_(&b, kv->value);
				puts_(&b, "\n");
			}
		}
		puts_(&b, "\n");
	}
	if (b.failed) {
		rc = st_errf(err, errlen, b.failed,
			     b.failed == ST_E_NOMEM ? "out of memory"
						    : "sota.toml would exceed %d bytes",
			     SOTA_MAX_BYTES);
		goto out;
	}
	b.len = rstrip_len(b.p ? b.p : "", b.len);
	put(&b, "\n", 1);
	if (b.failed) {
		rc = st_errf(err, errlen, b.failed, "sota.toml would exceed %d bytes",
			     SOTA_MAX_BYTES);
		goto out;
	}
	*out = b.p;
	*outlen = b.len;
	b.p = NULL;
	rc = 0;
out:
	free(b.p);
	st_sota_overrides_clear(&doc);
	return rc;
}

/* --- The last render, kept ----------------------------------------------------------------- */

/* The inputs of a render into k, serialized without ambiguity: each string as a presence byte,
 * its length (a size_t) and its bytes; each layer as its section count, then each section's
 * name, key count and key-value pairs. Inputs of more than SOTA_MAX_BYTES fail k (and are
 * not kept). */
static void key_count(struct outbuf *k, size_t n)
{
	put(k, (const char *)&n, sizeof(n));
}

static void key_str(struct outbuf *k, const char *s)
{
	put(k, s ? "\1" : "\0", 1);
	if (s) {
		size_t n = strlen(s);

		key_count(k, n);
		put(k, s, n);
	}
}

static void make_key(struct outbuf *k, const struct st_sota_params *p,
		     const struct st_sota_overrides *const *layers, size_t nlayers)
{
	key_str(k, p->gateway);
	key_str(k, p->ostree_server);
	key_str(k, p->hardware_id);
	key_str(k, p->config_dir);
	put(k, p->p11 ? "1" : "0", 1);
	if (p->p11) {
		key_str(k, p->p11->module);
		key_str(k, p->p11->pass);
		key_str(k, p->p11->label);
		key_str(k, p->p11->tls_pkey_id);
		key_str(k, p->p11->tls_clientcert_id);
	}
	key_count(k, nlayers);
	for (size_t l = 0; l < nlayers; l++) {
		const struct st_sota_overrides *o = layers[l];

		key_count(k, o ? o->n : 0);
		for (size_t i = 0; o && i < o->n; i++) {
			key_str(k, o->sec[i].name);
			key_count(k, o->sec[i].n);
			for (size_t j = 0; j < o->sec[i].n; j++) {
				key_str(k, o->sec[i].kv[j].key);
				key_str(k, o->sec[i].kv[j].value);
			}
		}
	}
}

int st_sota_render_cached(struct st_sota_cache *c, const struct st_sota_params *p,
			  const struct st_sota_overrides *const *layers, size_t nlayers, char **out,
			  size_t *outlen, char *err, size_t errlen)
{
	/* The inputs go into the cache's scratch buffer, which grows once and stays. */
	struct outbuf k = { 0 };
	char *copy;
	int rc;

	if (!c)
		return st_sota_render(p, layers, nlayers, out, outlen, err, errlen);
	k.p = c->scratch;
	k.cap = c->scratch_cap;
	make_key(&k, p, layers, nlayers);
	c->scratch = k.p;
	c->scratch_cap = k.cap;
	if (!k.failed && c->key && k.len == c->key_len && memcmp(k.p, c->key, k.len) == 0) {
		*out = malloc(c->out_len + 1);
		if (!*out) {
			*outlen = 0;
			return st_errf(err, errlen, ST_E_NOMEM, "out of memory");
		}
		memcpy(*out, c->out, c->out_len + 1);
		*outlen = c->out_len;
		c->hits++;
		return 0;
	}
	c->misses++;
	rc = st_sota_render(p, layers, nlayers, out, outlen, err, errlen);
	if (rc != 0 || k.failed || !(copy = malloc(*outlen + 1)))
		return rc;
	memcpy(copy, *out, *outlen + 1);
	free(c->out);
	c->out = copy;
	c->out_len = *outlen;
	/* The scratch holds the kept inputs now, and the old key's buffer is the scratch. */
	k.p = c->key;
	k.cap = c->key_cap;
	c->key = c->scratch;
	c->key_cap = c->scratch_cap;
	c->key_len = k.len;
	c->scratch = k.p;
	c->scratch_cap = k.cap;
	return 0;
}

void st_sota_cache_free(struct st_sota_cache *c)
{
	free(c->key);
	free(c->out);
	free(c->scratch);
	c->key = c->out = c->scratch = NULL;
	c->key_len = c->key_cap = c->out_len = c->scratch_cap = 0;
}
