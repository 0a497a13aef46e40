/* Production authorizations (see auth.h for the document and its rules). */
#include "auth.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "cms.h"
#include "ecdsa.h"
#include "digest.h"
#include "err.h"
#include "fsutil.h"
#include "log.h"

#define AUTH_TYPE "station-authorization"
#define AUTH_VERSION 1

static const struct st_cms_codes auth_codes = {
	.format = ST_E_AUTH_FORMAT,
	.signature = ST_E_AUTH_SIGNATURE,
	.untrusted = ST_E_AUTH_UNTRUSTED,
	.purpose = ST_E_AUTH_PURPOSE,
};

/* ---- Small rules --------------------------------------------------------------------- */

void st_auth_time_format(time_t t, char buf[32])
{
	struct tm tm;

	if (!gmtime_r(&t, &tm) || strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, 32, "?");
}

int st_auth_time_parse(const char *s, time_t *out)
{
	struct tm tm;
	int y, mo, d, h, mi, sec, n = -1;

	*out = 0;
	if (!s || strlen(s) != 20 ||
	    sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2dZ%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 ||
	    n != 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
	    s[16] != ':')
		return ST_E_INVAL;
	if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
	    sec > 59 || h < 0 || mi < 0 || sec < 0)
		return ST_E_INVAL;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	*out = timegm(&tm);
	/* timegm() normalises 31 February into March: such a date is not a date. */
	if (!gmtime_r(out, &tm) || tm.tm_mday != d || tm.tm_mon != mo - 1)
		return ST_E_INVAL;
	return 0;
}

int st_auth_time_parse_arg(const char *s, time_t *out)
{
	char full[32];

	if (s && strlen(s) == 10) {
		snprintf(full, sizeof(full), "%sT00:00:00Z", s);
		return st_auth_time_parse(full, out);
	}
	return st_auth_time_parse(s, out);
}

/* A word of 1..max bytes of letters, digits and the characters of extra. */
static int is_word(const char *s, size_t max, const char *extra)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > max)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      strchr(extra, c)))
			return 0;
	}
	return 1;
}

/* 1..max bytes without control characters (factory and station names). */
static int is_name(const char *s, size_t max)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > max)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return 0;
	}
	return 1;
}

#define ID_CHARS "._-"
#define SKU_CHARS "._-"
#define LOT_CHARS "._:/#-"

/* Checks the fields common to a spec and a parsed document; names the first bad one. */
static int check_fields(const char *id, const char *factory, const char *const *skus,
			size_t nskus, const char *lot, int64_t units, time_t nb, time_t na,
			const char *const *stations, size_t nstations, char *err, size_t errlen)
{
	if (!is_word(id, ST_AUTH_MAX_ID, ID_CHARS))
		return st_errf(err, errlen, ST_E_INVAL, "\"id\" must be 1 to %d letters, digits, "
			       "'.', '_' or '-'", ST_AUTH_MAX_ID);
	if (!is_name(factory, 64))
		return st_errf(err, errlen, ST_E_INVAL,
			       "\"factory\" must be 1 to 64 bytes without control characters");
	if (nskus < 1 || nskus > ST_AUTH_MAX_LIST)
		return st_errf(err, errlen, ST_E_INVAL, "\"skus\" must list 1 to %d SKUs",
			       ST_AUTH_MAX_LIST);
	for (size_t i = 0; i < nskus; i++) {
		if (!is_word(skus[i], 64, SKU_CHARS))
			return st_errf(err, errlen, ST_E_INVAL,
				       "SKU '%.64s' must be 1 to 64 letters, digits, '.', '_' or "
				       "'-'",
				       skus[i] ? skus[i] : "");
	}
	if (!is_word(lot, 64, LOT_CHARS))
		return st_errf(err, errlen, ST_E_INVAL,
			       "\"lot\" must be 1 to 64 letters, digits or '._:/#-'");
	if (units < 1 || units > ST_AUTH_MAX_UNITS)
		return st_errf(err, errlen, ST_E_INVAL, "\"units\" must be 1 to %lld, not %lld",
			       ST_AUTH_MAX_UNITS, (long long)units);
	if (na <= nb)
		return st_errf(err, errlen, ST_E_INVAL,
			       "\"not_after\" must come after \"not_before\"");
	if (nstations > ST_AUTH_MAX_LIST)
		return st_errf(err, errlen, ST_E_INVAL, "\"stations\" lists more than %d names",
			       ST_AUTH_MAX_LIST);
	for (size_t i = 0; i < nstations; i++) {
		if (!is_name(stations[i], 128))
			return st_errf(err, errlen, ST_E_INVAL,
				       "station names must be 1 to 128 bytes without control "
				       "characters");
	}
	return 0;
}

void st_auth_free(struct st_auth *a)
{
	if (!a)
		return;
	free(a->path);
	free(a->id);
	free(a->factory);
	for (size_t i = 0; i < a->nskus; i++)
		free(a->skus[i]);
	free(a->skus);
	free(a->lot);
	for (size_t i = 0; i < a->nstations; i++)
		free(a->stations[i]);
	free(a->stations);
	free(a->signer);
	free(a);
}

/* ---- The content ---------------------------------------------------------------------- */

static const char *const content_keys[] = { "type",	  "version",   "id",	  "factory",
					    "skus",	  "lot",       "units",	  "not_before",
					    "not_after", "stations", "issued_at", NULL };

/* A string field, copied; "" when it is not a string (the checks refuse it later). */
static int take_str(const json_t *o, const char *key, char **out)
{
	const json_t *v = json_object_get(o, key);

	*out = strdup(json_is_string(v) ? json_string_value(v) : "");
	return *out ? 0 : -1;
}

static int take_time(const json_t *o, const char *key, time_t *out, char *err, size_t errlen)
{
	const json_t *v = json_object_get(o, key);

	if (!json_is_string(v) || st_auth_time_parse(json_string_value(v), out) < 0)
		return st_errf(err, errlen, ST_E_AUTH_FORMAT,
			       "\"%s\" must be a UTC time YYYY-MM-DDTHH:MM:SSZ", key);
	return 0;
}

/* A list of strings, copied. */
static int take_list(const json_t *o, const char *key, char ***out, size_t *n, char *err,
		     size_t errlen)
{
	const json_t *v = json_object_get(o, key), *item;
	size_t i;

	*out = NULL;
	*n = 0;
	if (!json_is_array(v) || json_array_size(v) > ST_AUTH_MAX_LIST)
		return st_errf(err, errlen, ST_E_AUTH_FORMAT,
			       "\"%s\" must be a list of at most %d strings", key,
			       ST_AUTH_MAX_LIST);
	*out = calloc(json_array_size(v) + 1, sizeof(**out));
	if (!*out)
		return st_errf(err, errlen, ST_E_NOMEM, "out of memory");
	json_array_foreach(v, i, item) {
		if (!json_is_string(item))
			return st_errf(err, errlen, ST_E_AUTH_FORMAT,
				       "\"%s\" must be a list of strings", key);
		(*out)[i] = strdup(json_string_value(item));
		if (!(*out)[i])
			return st_errf(err, errlen, ST_E_NOMEM, "out of memory");
		(*n)++;
	}
	return 0;
}

/* Parses and checks the JSON content into a new authorization. */
static int parse_content(const uint8_t *data, size_t len, struct st_auth **out, char *err,
			 size_t errlen)
{
	struct st_auth *a = calloc(1, sizeof(*a));
	json_error_t jerr;
	json_t *o = NULL;
	const json_t *v;
	const char *key;
	int rc;

	*out = NULL;
	if (!a)
		return st_errf(err, errlen, ST_E_NOMEM, "out of memory");
	atomic_init(&a->used_seen, -1);
	atomic_init(&a->registered, 0);
	o = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!o || !json_is_object(o)) {
		rc = st_errf(err, errlen, ST_E_AUTH_FORMAT,
			     "the signed content is not a JSON object: %s",
			     o ? "another JSON value" : jerr.text);
		goto out;
	}
	json_object_foreach(o, key, v) {
		size_t k = 0;

		while (content_keys[k] && strcmp(content_keys[k], key) != 0)
			k++;
		if (!content_keys[k]) {
			rc = st_errf(err, errlen, ST_E_AUTH_FORMAT,
				     "unknown key \"%.64s\": written for a newer station, refused "
				     "rather than ignored",
				     key);
			goto out;
		}
	}
	v = json_object_get(o, "type");
	if (!json_is_string(v) || strcmp(json_string_value(v), AUTH_TYPE) != 0) {
		rc = st_errf(err, errlen, ST_E_AUTH_FORMAT, "\"type\" is not \"%s\"", AUTH_TYPE);
		goto out;
	}
	v = json_object_get(o, "version");
	if (!json_is_integer(v) || json_integer_value(v) != AUTH_VERSION) {
		rc = st_errf(err, errlen, ST_E_AUTH_FORMAT, "\"version\" is not %d",
			     AUTH_VERSION);
		goto out;
	}
	v = json_object_get(o, "units");
	if (!json_is_integer(v)) {
		rc = st_errf(err, errlen, ST_E_AUTH_FORMAT, "\"units\" must be an integer");
		goto out;
	}
	a->units = (int64_t)json_integer_value(v);
	if (take_str(o, "id", &a->id) < 0 || take_str(o, "factory", &a->factory) < 0 ||
	    take_str(o, "lot", &a->lot) < 0) {
		rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory");
		goto out;
	}
	rc = take_list(o, "skus", &a->skus, &a->nskus, err, errlen);
	if (rc == 0 && json_object_get(o, "stations"))
		rc = take_list(o, "stations", &a->stations, &a->nstations, err, errlen);
	if (rc == 0)
		rc = take_time(o, "not_before", &a->not_before, err, errlen);
	if (rc == 0)
		rc = take_time(o, "not_after", &a->not_after, err, errlen);
	if (rc == 0)
		rc = take_time(o, "issued_at", &a->issued_at, err, errlen);
	if (rc < 0)
		goto out;
	if (json_object_get(o, "stations") && a->nstations == 0) {
		rc = st_errf(err, errlen, ST_E_AUTH_FORMAT,
			     "\"stations\" is empty: leave it out to allow any station");
		goto out;
	}
	rc = check_fields(a->id, a->factory, (const char *const *)a->skus, a->nskus, a->lot,
			  a->units, a->not_before, a->not_after,
			  (const char *const *)a->stations, a->nstations, err, errlen);
	if (rc < 0) {
		rc = ST_E_AUTH_FORMAT;
		goto out;
	}
	*out = a;
	a = NULL;
out:
	json_decref(o);
	st_auth_free(a);
	return rc;
}

/* ---- Verifying ------------------------------------------------------------------------ */

/* Prefixes err with "name: " (messages name the file). */
static int named(int rc, const char *name, char *err, size_t errlen)
{
	char msg[768];

	if (!err || !errlen || !name)
		return rc;
	snprintf(msg, sizeof(msg), "%s", err);
	st_msgf(err, errlen, "%s: %s", name, msg);
	return rc;
}

static int lists(char *const *list, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(list[i], s) == 0)
			return 1;
	}
	return 0;
}

int st_auth_verify(const uint8_t *doc, size_t len, const char *name,
		   const struct st_auth_env *env, struct st_auth **out, char *err, size_t errlen)
{
	struct st_cms_check chk = {
		.ctype_oid = ST_OID_CT_AUTHORIZATION,
		.eku_oid = ST_OID_KP_AUTHORIZATION,
		.trusted = env->root,
		.trusted_may_sign = 1,
		/* The local CA is in the factory's hands: a key it certified must not be able
		 * to authorize anything. */
		.issued_by_trusted = 1,
		.now = env->now,
		.codes = &auth_codes,
	};
	struct st_auth *a = NULL;
	time_t now = env->now ? env->now : time(NULL);
	uint8_t *content = NULL;
	X509 *signer = NULL;
	char t[32];
	size_t clen = 0;
	int rc;

	*out = NULL;
	if (!env->root) {
		rc = st_errf(err, errlen, ST_E_AUTH_UNTRUSTED,
			     "no factory root is configured (ca.root) to verify it against");
		goto out;
	}
	rc = st_cms_verify(doc, len, &chk, &content, &clen, &signer, err, errlen);
	if (rc < 0)
		goto out;
	rc = parse_content(content, clen, &a, err, errlen);
	if (rc < 0)
		goto out;
	if (!env->factory || strcmp(a->factory, env->factory) != 0) {
		rc = st_errf(err, errlen, ST_E_AUTH_FACTORY,
			     "authorization %s is for factory '%s', this station is of '%s'", a->id,
			     a->factory, env->factory ? env->factory : "");
		goto out;
	}
	if (a->nstations && (!env->station || !lists(a->stations, a->nstations, env->station))) {
		rc = st_errf(err, errlen, ST_E_AUTH_STATION,
			     "authorization %s names %zu station%s (first '%s'), not this one "
			     "('%s')",
			     a->id, a->nstations, a->nstations == 1 ? "" : "s", a->stations[0],
			     env->station ? env->station : "");
		goto out;
	}
	if (now >= a->not_after && !env->any_time) {
		st_auth_time_format(a->not_after, t);
		rc = st_errf(err, errlen, ST_E_AUTH_EXPIRED,
			     "authorization %s (lot %s) expired at %s", a->id, a->lot, t);
		goto out;
	}
	st_digest(ST_SHA256, doc, len, a->doc_sha256);
	a->signer = st_cms_subject(signer);
	if (name && !(a->path = strdup(name))) {
		rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory");
		goto out;
	}
	*out = a;
	a = NULL;
	rc = 0;
out:
	X509_free(signer);
	free(content);
	st_auth_free(a);
	return rc < 0 ? named(rc, name, err, errlen) : 0;
}

/* ---- Issuing -------------------------------------------------------------------------- */

static json_t *string_list(const char *const *v, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < n; i++) {
		if (json_array_append_new(a, json_string(v[i])) != 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

/* The certificate that signs authorizations: the root itself (self-issued, a CA) or a key
 * certified for authorizations only. */
static int check_issuer_cert(X509 *cert, char *err, size_t errlen)
{
	EXTENDED_KEY_USAGE *eku;
	char oid[128] = "";
	int ok;

	if (X509_check_issued(cert, cert) == X509_V_OK && X509_check_ca(cert))
		return 0;
	eku = X509_get_ext_d2i(cert, NID_ext_key_usage, NULL, NULL);
	if (eku && sk_ASN1_OBJECT_num(eku) == 1)
		OBJ_obj2txt(oid, sizeof(oid), sk_ASN1_OBJECT_value(eku, 0), 1);
	sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
	ok = strcmp(oid, ST_OID_KP_AUTHORIZATION) == 0 && !X509_check_ca(cert);
	if (!ok)
		return st_errf(err, errlen, ST_E_AUTH_PURPOSE,
			       "the certificate is neither the factory root nor an authorization "
			       "key's (extended key usage %s only); stations would refuse what it "
			       "signs",
			       ST_OID_KP_AUTHORIZATION);
	return 0;
}

int st_auth_issue(struct drv_signer *signer, X509 *cert, STACK_OF(X509) *chain,
		  const struct st_auth_spec *spec, uint8_t **der, size_t *len, char *err,
		  size_t errlen)
{
	unsigned char raw[16];
	char id[ST_AUTH_MAX_ID + 1], nb[32], na[32], now[32];
	json_t *o = NULL;
	char *text = NULL;
	int rc;

	*der = NULL;
	*len = 0;
	if (spec->id) {
		st_msgf(id, sizeof(id), "%s", spec->id);
	} else {
		if (RAND_bytes(raw, sizeof(raw)) != 1)
			return st_errf(err, errlen, ST_E_CRYPTO, "no random bytes for the id");
		for (size_t i = 0; i < sizeof(raw); i++)
			snprintf(id + 2 * i, 3, "%02x", raw[i]);
	}
	rc = check_fields(spec->id ? spec->id : id, spec->factory, spec->skus, spec->nskus,
			  spec->lot, spec->units, spec->not_before, spec->not_after,
			  spec->stations, spec->nstations, err, errlen);
	if (rc < 0)
		return rc;
	rc = check_issuer_cert(cert, err, errlen);
	if (rc < 0)
		return rc;
	st_auth_time_format(spec->not_before, nb);
	st_auth_time_format(spec->not_after, na);
	st_auth_time_format(time(NULL), now);
	o = json_object();
	if (!o || json_object_set_new(o, "type", json_string(AUTH_TYPE)) ||
	    json_object_set_new(o, "version", json_integer(AUTH_VERSION)) ||
	    json_object_set_new(o, "id", json_string(id)) ||
	    json_object_set_new(o, "factory", json_string(spec->factory)) ||
	    json_object_set_new(o, "skus", string_list(spec->skus, spec->nskus)) ||
	    json_object_set_new(o, "lot", json_string(spec->lot)) ||
	    json_object_set_new(o, "units", json_integer(spec->units)) ||
	    json_object_set_new(o, "not_before", json_string(nb)) ||
	    json_object_set_new(o, "not_after", json_string(na)) ||
	    (spec->nstations &&
	     json_object_set_new(o, "stations", string_list(spec->stations, spec->nstations))) ||
	    json_object_set_new(o, "issued_at", json_string(now)) ||
	    !(text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER))) {
		rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory");
		goto out;
	}
	rc = st_cms_sign(signer, cert, chain, ST_OID_CT_AUTHORIZATION, (const uint8_t *)text,
			 strlen(text), der, len, err, errlen);
out:
	free(text);
	json_decref(o);
	return rc;
}

/* ---- Sets ----------------------------------------------------------------------------- */

struct st_auth_set {
	atomic_uint refs;
	struct st_auth **v;
	size_t n;
};

struct st_auth_set *st_auth_set_new(void)
{
	struct st_auth_set *s = calloc(1, sizeof(*s));

	if (s)
		atomic_init(&s->refs, 1);
	return s;
}

struct st_auth_set *st_auth_set_ref(struct st_auth_set *s)
{
	if (s)
		atomic_fetch_add(&s->refs, 1);
	return s;
}

void st_auth_set_unref(struct st_auth_set *s)
{
	if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
		return;
	for (size_t i = 0; i < s->n; i++)
		st_auth_free(s->v[i]);
	free(s->v);
	free(s);
}

int st_auth_set_add(struct st_auth_set *s, struct st_auth *a)
{
	struct st_auth **v = realloc(s->v, (s->n + 1) * sizeof(*v));

	if (!v)
		return ST_E_NOMEM;
	s->v = v;
	s->v[s->n++] = a;
	return 0;
}

size_t st_auth_set_count(const struct st_auth_set *s)
{
	return s ? s->n : 0;
}

struct st_auth *st_auth_set_get(const struct st_auth_set *s, size_t i)
{
	return s && i < s->n ? s->v[i] : NULL;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The *.auth names of dir, sorted; *names NULL on failure (errno set). */
static int list_dir(const char *dir, char ***names, size_t *n)
{
	size_t cap = 0, sl = strlen(ST_AUTH_SUFFIX);
	struct dirent *de;
	DIR *d = opendir(dir);
	char **v = NULL;

	*names = NULL;
	*n = 0;
	if (!d)
		return -1;
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);

		if (de->d_name[0] == '.' || len <= sl ||
		    strcmp(de->d_name + len - sl, ST_AUTH_SUFFIX) != 0)
			continue;
		if (*n == cap) {
			char **nv = realloc(v, (cap ? 2 * cap : 16) * sizeof(*v));

			if (!nv)
				goto fail;
			v = nv;
			cap = cap ? 2 * cap : 16;
		}
		if (!(v[*n] = strdup(de->d_name)))
			goto fail;
		(*n)++;
	}
	closedir(d);
	if (*n)
		qsort(v, *n, sizeof(*v), name_cmp);
	*names = v;
	return 0;
fail:
	for (size_t i = 0; i < *n; i++)
		free(v[i]);
	free(v);
	closedir(d);
	*n = 0;
	errno = ENOMEM;
	return -1;
}

/* Reads and verifies one file; 0 and *out, or a refusal (logged by the caller). */
static int load_one(const char *path, const struct st_auth_env *env, struct st_auth **out,
		    char *err, size_t errlen)
{
	unsigned char *doc = NULL;
	size_t len = 0;
	int rc = st_read_file(path, ST_AUTH_MAX_BYTES, &doc, &len);

	*out = NULL;
	if (rc == -EFBIG)
		rc = st_errf(err, errlen, ST_E_AUTH_FORMAT, "%s: larger than %d bytes", path,
			     ST_AUTH_MAX_BYTES);
	else if (rc < 0)
		rc = st_errf(err, errlen, ST_E_IO, "%s: %s", path, strerror(-rc));
	else
		rc = st_auth_verify(doc, len, path, env, out, err, errlen);
	free(doc);
	return rc;
}

void st_auth_warn_unbound(const struct st_auth *a, const char *name,
			  const struct st_auth_env *env)
{
	if (!env->own_ledger || a->nstations)
		return;
	st_warn("%s: authorization %s (lot %s) names no station: only the stations on this "
		"ledger share its %lld units, and a station with a ledger file of its own could "
		"spend them all again; the brand owner names the stations (station auth issue "
		"--station) unless all that get it share one ledger",
		name, a->id, a->lot, (long long)a->units);
}

int st_auth_set_load(const char *dir, const struct st_auth_env *env, struct st_auth_set **out,
		     unsigned *refused, char *err, size_t errlen)
{
	struct st_auth_set *s = NULL;
	struct st_auth *a;
	char **names = NULL, path[4096], msg[1024], t[32];
	size_t n = 0;
	unsigned bad = 0;
	int rc = 0;

	*out = NULL;
	if (refused)
		*refused = 0;
	if (dir && list_dir(dir, &names, &n) < 0) {
		if (errno != ENOENT)
			return st_errf(err, errlen, errno == ENOMEM ? ST_E_NOMEM : ST_E_IO,
				       "authorizations directory %s: %s", dir, strerror(errno));
		/* Nothing authorized yet: boards of profiles that require it fail, each with
		 * its reason, and the station says so at start. */
		st_warn("authorizations directory %s does not exist: none loaded", dir);
	}
	s = st_auth_set_new();
	if (!s || !(s->v = calloc(n ? n : 1, sizeof(*s->v)))) {
		rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		size_t dup = 0;

		st_msgf(path, sizeof(path), "%s/%s", dir, names[i]);
		rc = load_one(path, env, &a, msg, sizeof(msg));
		if (rc == ST_E_NOMEM) {
			rc = st_errf(err, errlen, rc, "out of memory");
			goto out;
		}
		if (rc < 0) {
			st_err("authorization refused: %s: %s", st_errname(rc), msg);
			bad++;
			continue;
		}
		while (dup < s->n && strcmp(s->v[dup]->id, a->id) != 0)
			dup++;
		if (dup < s->n) {
			st_err("authorization refused: %s: %s: id %s is also the id of %s",
			       st_errname(ST_E_AUTH_CONFLICT), path, a->id, s->v[dup]->path);
			st_auth_free(a);
			bad++;
			continue;
		}
		st_auth_warn_unbound(a, path, env);
		if (a->not_before > (env->now ? env->now : time(NULL))) {
			st_auth_time_format(a->not_before, t);
			st_notice("%s: authorization %s (lot %s) is valid from %s", path, a->id,
				  a->lot, t);
		}
		s->v[s->n++] = a;
	}
	rc = 0;
	if (bad)
		st_notice("authorizations %s: %zu loaded, %u refused", dir, s->n, bad);
	else
		st_notice("authorizations %s: %zu loaded", dir, s->n);
	*out = s;
	s = NULL;
	if (refused)
		*refused = bad;
out:
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	st_auth_set_unref(s);
	return rc;
}

static int covers(const struct st_auth *a, const char *sku)
{
	return sku && lists(a->skus, a->nskus, sku);
}

static int ends_before(const struct st_auth *a, const struct st_auth *b)
{
	return a->not_after < b->not_after ||
	       (a->not_after == b->not_after && strcmp(a->id, b->id) < 0);
}

int st_auth_set_pick(const struct st_auth_set *s, const char *sku, time_t now,
		     struct st_auth **cand, size_t max, char *err, size_t errlen)
{
	size_t n = 0, matching = 0, ended = 0;
	char t[32];

	if (!now)
		now = time(NULL);
	for (size_t i = 0; s && i < s->n; i++) {
		struct st_auth *a = s->v[i];
		size_t k;

		if (!covers(a, sku))
			continue;
		matching++;
		if (now >= a->not_after) {
			ended++;
			continue;
		}
		if (now < a->not_before || max == 0)
			continue;
		/* Insertion by (not_after, id): use up first what ends first. When cand is
		 * full, a better one pushes the last out. */
		if (n == max && !ends_before(a, cand[max - 1]))
			continue;
		k = n < max ? n++ : max - 1;
		while (k > 0 && ends_before(a, cand[k - 1])) {
			cand[k] = cand[k - 1];
			k--;
		}
		cand[k] = a;
	}
	if (n)
		return (int)n;
	if (!matching)
		return st_errf(err, errlen, ST_E_AUTH_SKU,
			       "no authorization covers SKU %s (%zu loaded)", sku ? sku : "(none)",
			       st_auth_set_count(s));
	if (ended == matching) {
		struct st_auth *last = NULL;

		for (size_t i = 0; i < s->n; i++) {
			if (covers(s->v[i], sku) && (!last || s->v[i]->not_after > last->not_after))
				last = s->v[i];
		}
		st_auth_time_format(last->not_after, t);
		return st_errf(err, errlen, ST_E_AUTH_EXPIRED,
			       "every authorization for SKU %s has expired (the last, %s of lot "
			       "%s, at %s)",
			       sku, last->id, last->lot, t);
	}
	return st_errf(err, errlen, ST_E_AUTH_NOT_YET_VALID,
		       "no authorization for SKU %s is valid yet", sku);
}

int64_t st_auth_warn_below(const struct st_auth *a)
{
	int64_t w = a->units / 10;

	return w < 1 ? 1 : w;
}
