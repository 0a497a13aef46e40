#include "testutil.h"

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <libpq-fe.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include "x509sign.h"

uint8_t *tu_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
		goto out;
	buf = malloc((size_t)n + 1);
	if (!buf)
		goto out;
	if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
		goto out;
	}
	buf[n] = 0;
	*len = (size_t)n;
out:
	fclose(f);
	return buf;
}

static int rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	/* A directory a test left without write or search permission. */
	if (type == FTW_DP)
		(void)chmod(path, 0700);
	return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

int tu_rmtree(const char *dir)
{
	if (nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) == 0)
		return 0;
	return errno == ENOENT ? 0 : -1;
}

const char *tu_tmpdir(const char *name)
{
	static char path[PATH_MAX];
	const char *base = getenv("TMPDIR");
	char made[PATH_MAX];

	snprintf(made, sizeof(made), "%s/station-test-%s-XXXXXX", base ? base : "/tmp", name);
	if (!mkdtemp(made))
		return NULL;
	(void)chmod(made, 0700);
	/* The canonical path: the configuration loader stores absolute paths resolved so. */
	if (!realpath(made, path))
		return NULL;
	return path;
}

int tu_write_text(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");
	int ok;

	if (!f)
		return -1;
	ok = fputs(text, f) >= 0;
	if (fclose(f) != 0)
		ok = 0;
	return ok && chmod(path, mode) == 0 ? 0 : -1;
}

char *tu_nested(const char *head, const char *open, const char *close, size_t n,
		const char *tail)
{
	size_t lh = strlen(head), lo = strlen(open), lc = strlen(close), lt = strlen(tail);
	char *s = malloc(lh + n * (lo + lc) + lt + 1), *w = s;

	if (!s)
		return NULL;
	memcpy(w, head, lh);
	w += lh;
	for (size_t i = 0; i < n; i++, w += lo)
		memcpy(w, open, lo);
	for (size_t i = 0; i < n; i++, w += lc)
		memcpy(w, close, lc);
	memcpy(w, tail, lt + 1);
	return s;
}

int tu_write_key(const char *path, EVP_PKEY *key)
{
	FILE *f = fopen(path, "w");
	int ok;

	if (!f)
		return -1;
	ok = fchmod(fileno(f), 0600) == 0 &&
	     PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) == 1;
	if (fclose(f) != 0)
		ok = 0;
	return ok ? 0 : -1;
}

char *tu_pem(const uint8_t *der, size_t len, const char *label, size_t *pemlen)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *data, *out = NULL;
	long n;

	if (b && PEM_write_bio(b, label, "", der, (long)len) > 0 &&
	    (n = BIO_get_mem_data(b, &data)) >= 0 && (out = malloc((size_t)n + 1))) {
		memcpy(out, data, (size_t)n);
		out[n] = 0;
		if (pemlen)
			*pemlen = (size_t)n;
	}
	BIO_free(b);
	return out;
}

static int add_name(X509_NAME *name, const char *field, const char *value)
{
	return X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8,
					  (const unsigned char *)value, -1, -1, 0);
}

uint8_t *tu_csr_der(EVP_PKEY *key, const char *cn, const char *ou, int production,
		    size_t *len)
{
	X509_REQ *req = X509_REQ_new();
	X509_NAME *name = X509_NAME_new();
	unsigned char *der = NULL;
	uint8_t *out = NULL;
	int n;

	if (!req || !name || !add_name(name, "CN", cn) || !add_name(name, "OU", ou) ||
	    (production && !add_name(name, "businessCategory", "production")) ||
	    !X509_REQ_set_subject_name(req, name) || !X509_REQ_set_pubkey(req, key) ||
	    X509_REQ_sign(req, key, EVP_sha256()) <= 0)
		goto out;
	n = i2d_X509_REQ(req, &der);
	if (n <= 0)
		goto out;
	out = malloc((size_t)n);
	if (!out)
		goto out;
	memcpy(out, der, (size_t)n);
	*len = (size_t)n;
out:
	OPENSSL_free(der);
	X509_NAME_free(name);
	X509_REQ_free(req);
	return out;
}

static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
	int ok = ext && X509_add_ext(x, ext, -1);

	X509_EXTENSION_free(ext);
	return ok;
}

X509 *tu_ca_template(EVP_PKEY *pub, const char *cn, const char *ou, long days)
{
	X509 *x = X509_new();
	X509_NAME *name = X509_NAME_new();
	X509V3_CTX ctx;
	int ok;

	ok = x && name && X509_set_version(x, 2) &&
	     ASN1_INTEGER_set(X509_get_serialNumber(x), 1) && add_name(name, "CN", cn) &&
	     add_name(name, "OU", ou) && X509_set_subject_name(x, name) &&
	     X509_set_issuer_name(x, name) && X509_gmtime_adj(X509_getm_notBefore(x), -3600) &&
	     X509_gmtime_adj(X509_getm_notAfter(x), days * 86400) && X509_set_pubkey(x, pub);
	if (ok) {
		X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
		ok = add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") &&
		     add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign") &&
		     add_ext(x, &ctx, NID_subject_key_identifier, "hash");
	}
	X509_NAME_free(name);
	if (!ok) {
		X509_free(x);
		return NULL;
	}
	return x;
}

X509 *tu_issue_cert(EVP_PKEY *pub, const char *cn, const char *ou, X509 *issuer, EVP_PKEY *ikey,
		    const char *bc, const char *ku, const char *eku)
{
	X509 *x = tu_ca_template(pub, cn, ou, 365);
	const char *vals[] = { bc, ku, eku };
	const int nids[] = { NID_basic_constraints, NID_key_usage, NID_ext_key_usage };
	X509V3_CTX ctx;
	int idx, ok = x != NULL;

	if (ok && issuer)
		ok = X509_set_issuer_name(x, X509_get_subject_name(issuer));
	if (ok)
		ok = ASN1_INTEGER_set(X509_get_serialNumber(x), (long)(random() & 0xffffff) + 2);
	for (int i = 0; ok && i < 3; i++) {
		X509_EXTENSION *e;

		while ((idx = X509_get_ext_by_NID(x, nids[i], -1)) >= 0)
			X509_EXTENSION_free(X509_delete_ext(x, idx));
		if (!vals[i])
			continue;
		X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
		e = X509V3_EXT_nconf_nid(NULL, &ctx, nids[i], vals[i]);
		ok = e && X509_add_ext(x, e, -1);
		X509_EXTENSION_free(e);
	}
	if (ok)
		ok = X509_sign(x, ikey, EVP_sha256()) > 0;
	if (!ok) {
		X509_free(x);
		return NULL;
	}
	return x;
}

X509 *tu_signer_ca(struct drv_signer *signer, const char *cn, const char *ou, long days,
		   char *err, size_t errlen)
{
	EVP_PKEY *pub = drv_signer_public_key(signer);
	X509 *x = NULL;
	void *sess = NULL;
	int rc;

	if (!pub) {
		snprintf(err, errlen, "the signer has no public key");
		return NULL;
	}
	x = tu_ca_template(pub, cn, ou, days);
	EVP_PKEY_free(pub);
	if (!x) {
		snprintf(err, errlen, "cannot make the CA certificate");
		return NULL;
	}
	rc = drv_signer_session_open(signer, &sess, err, errlen);
	if (rc == 0) {
		rc = st_x509_sign(x, signer, sess, err, errlen);
		drv_signer_session_close(signer, sess);
	}
	if (rc != 0) {
		X509_free(x);
		return NULL;
	}
	return x;
}

int tu_file_signer(const char *path, EVP_PKEY *key, struct drv_signer **out, char *err,
		   size_t errlen)
{
	struct drv_signer_config cfg = { .backend = "file", .key = path };

	*out = NULL;
	if (tu_write_key(path, key) != 0) {
		snprintf(err, errlen, "%s: cannot write the key: %s", path, strerror(errno));
		return -1;
	}
	return drv_signer_open(&cfg, out, err, errlen);
}

/* Throwaway PINs of a throwaway token. */
#define USER_PIN "4711-user"
#define SO_PIN "0815-so"

int tu_softhsm_token(struct tu_softhsm *h, const char *dir, const char *token,
		     const char *object, char *err, size_t errlen)
{
	char text[4400];

	memset(h, 0, sizeof(*h));
	snprintf(h->tokens, sizeof(h->tokens), "%s/tokens", dir);
	snprintf(h->conf, sizeof(h->conf), "%s/softhsm2.conf", dir);
	snprintf(h->pin_file, sizeof(h->pin_file), "%s/user.pin", dir);
	snprintf(h->uri, sizeof(h->uri), "pkcs11:token=%s;object=%s?module-path=%s", token,
		 object, TU_SOFTHSM_MODULE);
	snprintf(text, sizeof(text),
		 "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n",
		 h->tokens);
	if (mkdir(h->tokens, 0700) != 0 || tu_write_text(h->conf, text, 0600) != 0 ||
	    tu_write_text(h->pin_file, USER_PIN "\n", 0600) != 0) {
		snprintf(err, errlen, "%s: cannot make the token's files: %s", dir,
			 strerror(errno));
		return -1;
	}
	setenv("SOFTHSM2_CONF", h->conf, 1);
	h->cfg.backend = "pkcs11";
	h->cfg.key = h->uri;
	h->cfg.pin_file = h->pin_file;
	return drv_pkcs11_init_token(TU_SOFTHSM_MODULE, token, SO_PIN, USER_PIN, err, errlen);
}

struct st_csr **tu_checked_csrs(const struct st_policy *policy, const char *ou,
				const char *prefix, size_t n, char *err, size_t errlen)
{
	struct st_csr **csrs = calloc(n ? n : 1, sizeof(*csrs));
	EVP_PKEY *key;
	uint8_t *der;
	char id[128];
	size_t i, len;

	if (!csrs) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	for (i = 0; i < n; i++) {
		snprintf(id, sizeof(id), "%s-%08zu", prefix, i);
		key = EVP_EC_gen("prime256v1");
		len = 0;
		der = key ? tu_csr_der(key, id, ou, 0, &len) : NULL;
		EVP_PKEY_free(key);
		if (!der || st_csr_check(policy, ou, der, len, id, &csrs[i], err, errlen) != 0) {
			if (!der)
				snprintf(err, errlen, "cannot make the CSR of %s", id);
			free(der);
			while (i > 0)
				st_csr_free(csrs[--i]);
			free(csrs);
			return NULL;
		}
		free(der);
	}
	return csrs;
}

struct st_sign_req *tu_sign_req(const struct st_policy *policy, struct st_csr **csrs, size_t i,
				const char *prefix, const char *slot_prefix, unsigned slots,
				st_sign_done_cb done, void *data)
{
	struct st_sign_req *req = st_sign_req_new();

	if (!req)
		return NULL;
	req->policy = policy;
	snprintf(req->profile, sizeof(req->profile), "bench");
	snprintf(req->slot, sizeof(req->slot), "%s%zu", slot_prefix, i % slots);
	snprintf(req->device_id, sizeof(req->device_id), "%s-%08zu", prefix, i);
	req->csr = csrs[i];
	csrs[i] = NULL;
	req->data = data;
	req->done = done;
	return req;
}

int tu_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

size_t tu_random_cuts(uint32_t *rng, size_t n, unsigned int step, size_t *cuts, size_t max)
{
	size_t at = 0, k = 0;

	while (k < max) {
		*rng = *rng * 1103515245u + 12345u;
		at += (*rng >> 16) % step + 1;
		if (at >= n)
			break;
		cuts[k++] = at;
	}
	return k;
}

struct st_ledger_auth tu_ledger_auth(const char *id, const char *doc, int64_t units)
{
	struct st_ledger_auth a;

	memset(&a, 0, sizeof(a));
	a.id = id;
	a.units = units;
	a.lot = "LOT-7";
	a.not_before = 1000;
	a.not_after = 2000000000;
	SHA256((const unsigned char *)doc, strlen(doc), a.doc_sha256);
	return a;
}

const char *tu_pg_conn(void)
{
	const char *c = getenv("STATION_TEST_PG");

	return c && *c ? c : NULL;
}

int tu_pg_exec(const char *conn, const char *sql, char *err, size_t errlen)
{
	PGconn *c = PQconnectdb(conn);
	PGresult *res = NULL;
	int rc = -1;

	if (PQstatus(c) != CONNECTION_OK) {
		snprintf(err, errlen, "%s", PQerrorMessage(c));
		goto out;
	}
	res = PQexec(c, sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(err, errlen, "%s", PQresultErrorMessage(res));
		goto out;
	}
	rc = 0;
out:
	PQclear(res);
	PQfinish(c);
	return rc;
}

int tu_pg_fresh(char *out, size_t outlen, char *err, size_t errlen)
{
	const char *conn = tu_pg_conn();

	if (!conn) {
		snprintf(err, errlen, "STATION_TEST_PG is not set (run under tests/lib/pg.sh run)");
		return -1;
	}
	/* Handles a failed test left open would hold locks on the schema. */
	if (tu_pg_exec(conn, "SET client_min_messages = warning; "
			     "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
			     "WHERE datname = current_database() AND usename = current_user "
			     "AND pid <> pg_backend_pid(); "
			     "DROP SCHEMA IF EXISTS station_ledger CASCADE",
		       err, errlen) != 0)
		return -1;
	snprintf(out, outlen, "%s", conn);
	return 0;
}
