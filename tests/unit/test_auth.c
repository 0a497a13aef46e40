/* Production authorizations: documents issued with a file key and with a key in SoftHSM2
 * (CMS SignedData signed through the signer interface), verified against the factory root,
 * and every refusal with its own reason: forged (another root of the same name), expired,
 * another factory, another station, a key certified for another purpose (a TLS key, the
 * local CA), changed bytes (every byte of a document, one at a time), and documents that are
 * not well formed. Then a directory of documents loaded as a set, and the choice of the
 * authorization a board consumes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/cms.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "auth.h"
#include "cms.h"
#include "err.h"
#include "signer.h"
#include "testutil.h"

#define FACTORY "acme-factory"
#define DAY 86400

static char dir[4096];
static char ebuf[1024];

/* The PKI of the tests: the factory root (file key), an authorization key certified by it,
 * a TLS server key and the local CA (both certified by it for other purposes), and a forged
 * root of the same name with a key of its own. */
static struct pki {
	EVP_PKEY *root_key, *authz_key, *tls_key, *ca_key, *forged_key;
	X509 *root, *authz, *tls, *ca, *forged;
	struct drv_signer *root_s, *authz_s, *tls_s, *ca_s, *forged_s;
} pki;

/* A certificate for pub issued by issuer (key ikey): a CA, or a leaf with digitalSignature
 * and the extended key usage eku (none when NULL). */
static X509 *issue_leaf(X509 *issuer, EVP_PKEY *ikey, EVP_PKEY *pub, const char *cn,
			const char *eku, int ca)
{
	X509 *x = ca ? tu_issue_cert(pub, cn, FACTORY, issuer, ikey, "critical,CA:TRUE,pathlen:0",
				     "critical,keyCertSign,cRLSign", NULL) :
		       tu_issue_cert(pub, cn, FACTORY, issuer, ikey, NULL,
				     "critical,digitalSignature", eku);

	assert_non_null(x);
	return x;
}

static struct drv_signer *file_signer(const char *name, EVP_PKEY *key)
{
	struct drv_signer *s = NULL;
	char path[4200];

	snprintf(path, sizeof(path), "%s/%s.key", dir, name);
	if (tu_file_signer(path, key, &s, ebuf, sizeof(ebuf)) != 0)
		fail_msg("signer %s: %s", name, ebuf);
	return s;
}

/* A factory root as `station ca init` makes it: CA without a path length limit. */
static X509 *self_signed(EVP_PKEY *key)
{
	X509 *x = tu_issue_cert(key, "Factory-CA", FACTORY, NULL, key, "critical,CA:TRUE",
				"critical,keyCertSign,cRLSign", NULL);

	assert_non_null(x);
	return x;
}

static int setup(void **state)
{
	const char *d = tu_tmpdir("auth");

	(void)state;
	if (!d)
		return -1;
	snprintf(dir, sizeof(dir), "%s", d);
	pki.root_key = EVP_EC_gen("P-256");
	pki.authz_key = EVP_EC_gen("P-256");
	pki.tls_key = EVP_EC_gen("P-256");
	pki.ca_key = EVP_EC_gen("P-256");
	pki.forged_key = EVP_EC_gen("P-256");
	pki.root = self_signed(pki.root_key);
	pki.forged = self_signed(pki.forged_key);
	pki.authz = issue_leaf(pki.root, pki.root_key, pki.authz_key, "Authorizations",
			       "critical," ST_OID_KP_AUTHORIZATION, 0);
	pki.tls = issue_leaf(pki.root, pki.root_key, pki.tls_key, "gateway", "serverAuth", 0);
	pki.ca = issue_leaf(pki.root, pki.root_key, pki.ca_key, "Local-Device-CA", NULL, 1);
	pki.root_s = file_signer("root", pki.root_key);
	pki.authz_s = file_signer("authz", pki.authz_key);
	pki.tls_s = file_signer("tls", pki.tls_key);
	pki.ca_s = file_signer("ca", pki.ca_key);
	pki.forged_s = file_signer("forged", pki.forged_key);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	drv_signer_close(pki.root_s);
	drv_signer_close(pki.authz_s);
	drv_signer_close(pki.tls_s);
	drv_signer_close(pki.ca_s);
	drv_signer_close(pki.forged_s);
	X509_free(pki.root);
	X509_free(pki.authz);
	X509_free(pki.tls);
	X509_free(pki.ca);
	X509_free(pki.forged);
	EVP_PKEY_free(pki.root_key);
	EVP_PKEY_free(pki.authz_key);
	EVP_PKEY_free(pki.tls_key);
	EVP_PKEY_free(pki.ca_key);
	EVP_PKEY_free(pki.forged_key);
	return tu_rmtree(dir);
}

static const char *const one_sku[] = { "sim-gw" };

static struct st_auth_spec spec_of(const char *lot, int64_t units)
{
	struct st_auth_spec s;
	time_t now = time(NULL);

	memset(&s, 0, sizeof(s));
	s.factory = FACTORY;
	s.skus = one_sku;
	s.nskus = 1;
	s.lot = lot;
	s.units = units;
	s.not_before = now - DAY;
	s.not_after = now + 30 * DAY;
	return s;
}

static struct st_auth_env env_of(const char *station)
{
	struct st_auth_env e = { pki.root, FACTORY, station, 0, 0, 0 };

	return e;
}

/* Issues spec with signer/cert (chain: the one certificate between cert and the root, or
 * none). */
static uint8_t *issue_ok(struct drv_signer *s, X509 *cert, X509 *between,
			 const struct st_auth_spec *spec, size_t *len)
{
	STACK_OF(X509) *chain = sk_X509_new_null();
	uint8_t *der = NULL;

	if (between)
		sk_X509_push(chain, between);
	if (st_auth_issue(s, cert, chain, spec, &der, len, ebuf, sizeof(ebuf)) != 0)
		fail_msg("issue: %s", ebuf);
	sk_X509_free(chain);
	return der;
}

/* Verifies doc and returns the code; *out (may be NULL) the authorization. */
static int verify(const uint8_t *doc, size_t len, const char *station, struct st_auth **out)
{
	struct st_auth_env env = env_of(station);
	struct st_auth *a = NULL;
	int rc = st_auth_verify(doc, len, "test.auth", &env, &a, ebuf, sizeof(ebuf));

	if (out)
		*out = a;
	else
		st_auth_free(a);
	return rc;
}

static void test_issue_verify(void **state)
{
	struct st_auth_spec spec = spec_of("LOT-1", 10);
	const char *const stations[] = { "line-1", "line-2" };
	struct st_auth *a = NULL;
	uint8_t *der;
	size_t len;

	(void)state;
	/* Signed with the factory root itself. */
	der = issue_ok(pki.root_s, pki.root, NULL, &spec, &len);
	assert_int_equal(verify(der, len, "line-1", &a), 0);
	assert_string_equal(a->factory, FACTORY);
	assert_string_equal(a->lot, "LOT-1");
	assert_int_equal(a->units, 10);
	assert_int_equal(a->nskus, 1);
	assert_string_equal(a->skus[0], "sim-gw");
	assert_int_equal(a->nstations, 0);
	assert_int_equal(strlen(a->id), 32);
	assert_int_equal(a->not_after, spec.not_after);
	assert_non_null(strstr(a->signer, "Factory-CA"));
	st_auth_free(a);
	/* The same document in PEM (label CMS), as mail would carry it. */
	{
		const unsigned char *p = der;
		CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &p, (long)len);
		BIO *b = BIO_new(BIO_s_mem());
		char *pem;
		long n;

		assert_non_null(cms);
		assert_int_equal(PEM_write_bio_CMS(b, cms), 1);
		n = BIO_get_mem_data(b, &pem);
		assert_int_equal(verify((const uint8_t *)pem, (size_t)n, "line-1", NULL), 0);
		BIO_free(b);
		CMS_ContentInfo_free(cms);
	}
	OPENSSL_free(der);

	/* Signed with the authorization key, restricted to two stations. */
	spec.id = "lot-2-a";
	spec.stations = stations;
	spec.nstations = 2;
	der = issue_ok(pki.authz_s, pki.authz, NULL, &spec, &len);
	assert_int_equal(verify(der, len, "line-2", &a), 0);
	assert_string_equal(a->id, "lot-2-a");
	assert_int_equal(a->nstations, 2);
	assert_non_null(strstr(a->signer, "Authorizations"));
	st_auth_free(a);
	/* Wrong station: its own reason. */
	assert_int_equal(verify(der, len, "line-3", NULL), ST_E_AUTH_STATION);
	assert_non_null(strstr(ebuf, "test.auth"));
	assert_non_null(strstr(ebuf, "line-3"));
	OPENSSL_free(der);

	/* The issuer refuses a certificate that stations would refuse. */
	assert_int_equal(st_auth_issue(pki.tls_s, pki.tls, NULL, &spec, &der, &len, ebuf,
				       sizeof(ebuf)),
			 ST_E_AUTH_PURPOSE);
	spec.units = 0;
	assert_int_equal(st_auth_issue(pki.root_s, pki.root, NULL, &spec, &der, &len, ebuf,
				       sizeof(ebuf)),
			 ST_E_INVAL);
	assert_non_null(strstr(ebuf, "units"));
}

/* The same with the authorization key inside SoftHSM2: CMS signed through PKCS#11. */
static void test_issue_pkcs11(void **state)
{
	struct st_auth_spec spec = spec_of("LOT-HSM", 3);
	struct drv_signer *s = NULL;
	struct tu_softhsm hsm;
	struct st_auth *a = NULL;
	EVP_PKEY *pub;
	X509 *cert;
	uint8_t *der;
	size_t len;
	char sub[4200];

	(void)state;
	snprintf(sub, sizeof(sub), "%s/hsm", dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	if (tu_softhsm_token(&hsm, sub, "owner", "authz", ebuf, sizeof(ebuf)) != 0)
		fail_msg("token: %s", ebuf);
	if (drv_pkcs11_generate_ec_key(&hsm.cfg, "prime256v1", ebuf, sizeof(ebuf)) != 0 ||
	    drv_signer_open(&hsm.cfg, &s, ebuf, sizeof(ebuf)) != 0)
		fail_msg("key: %s", ebuf);
	pub = drv_signer_public_key(s);
	cert = issue_leaf(pki.root, pki.root_key, pub, "Authorizations HSM",
			  "critical," ST_OID_KP_AUTHORIZATION, 0);
	der = issue_ok(s, cert, NULL, &spec, &len);
	assert_int_equal(verify(der, len, "line-1", &a), 0);
	assert_int_equal(a->units, 3);
	st_auth_free(a);
	OPENSSL_free(der);
	X509_free(cert);
	EVP_PKEY_free(pub);
	drv_signer_close(s);
}

/* Content signed as it is, to make documents an honest issuer would not. */
static uint8_t *sign_raw(struct drv_signer *s, X509 *cert, X509 *between, const char *ctype,
			 const char *json, size_t *len)
{
	STACK_OF(X509) *chain = sk_X509_new_null();
	uint8_t *der = NULL;

	if (between)
		sk_X509_push(chain, between);
	if (st_cms_sign(s, cert, chain, ctype, (const uint8_t *)json, strlen(json), &der, len,
			ebuf, sizeof(ebuf)) != 0)
		fail_msg("sign: %s", ebuf);
	sk_X509_free(chain);
	return der;
}

static void test_refusals(void **state)
{
	struct st_auth_spec spec = spec_of("LOT-R", 10);
	const char *const stations[] = { "line-9" };
	uint8_t *der, *good;
	size_t len, glen;
	char json[1024], nb[32], na[32];
	time_t now = time(NULL);
	X509 *ca_leaf;

	(void)state;
	/* Forged: a root of the same name, with a key of its own. */
	der = issue_ok(pki.forged_s, pki.forged, NULL, &spec, &len);
	assert_int_equal(verify(der, len, "line-1", NULL), ST_E_AUTH_UNTRUSTED);
	OPENSSL_free(der);

	/* Expired. */
	spec.not_before = now - 10 * DAY;
	spec.not_after = now - DAY;
	der = issue_ok(pki.root_s, pki.root, NULL, &spec, &len);
	assert_int_equal(verify(der, len, "line-1", NULL), ST_E_AUTH_EXPIRED);
	assert_non_null(strstr(ebuf, "LOT-R"));
	OPENSSL_free(der);
	spec = spec_of("LOT-R", 10);

	/* Another factory. */
	spec.factory = "other-factory";
	der = issue_ok(pki.root_s, pki.root, NULL, &spec, &len);
	assert_int_equal(verify(der, len, "line-1", NULL), ST_E_AUTH_FACTORY);
	assert_non_null(strstr(ebuf, "other-factory"));
	OPENSSL_free(der);
	spec = spec_of("LOT-R", 10);

	/* Another station. */
	spec.stations = stations;
	spec.nstations = 1;
	der = issue_ok(pki.root_s, pki.root, NULL, &spec, &len);
	assert_int_equal(verify(der, len, "line-1", NULL), ST_E_AUTH_STATION);
	OPENSSL_free(der);
	spec = spec_of("LOT-R", 10);

	/* Keys the root certified for other purposes: a TLS server key, the local CA, and a
	 * key certified by the local CA. */
	good = issue_ok(pki.root_s, pki.root, NULL, &spec, &glen);
	st_auth_time_format(now - DAY, nb);
	st_auth_time_format(now + DAY, na);
	snprintf(json, sizeof(json),
		 "{\"type\": \"station-authorization\", \"version\": 1, \"id\": \"x1\", "
		 "\"factory\": \"" FACTORY "\", \"skus\": [\"sim-gw\"], \"lot\": \"L\", "
		 "\"units\": 1, \"not_before\": \"%s\", \"not_after\": \"%s\", \"issued_at\": "
		 "\"%s\"}",
		 nb, na, nb);
	der = sign_raw(pki.tls_s, pki.tls, NULL, ST_OID_CT_AUTHORIZATION, json, &len);
	assert_int_equal(verify(der, len, "line-1", NULL), ST_E_AUTH_PURPOSE);
	assert_non_null(strstr(ebuf, "gateway"));
	OPENSSL_free(der);
	der = sign_raw(pki.ca_s, pki.ca, NULL, ST_OID_CT_AUTHORIZATION, json, &len);
	assert_int_equal(verify(der, len, "line-1", NULL), ST_E_AUTH_PURPOSE);
	assert_non_null(strstr(ebuf, "CA certificate"));
	OPENSSL_free(der);
	ca_leaf = issue_leaf(pki.ca, pki.ca_key, pki.authz_key, "Authorizations under CA",
			     "critical," ST_OID_KP_AUTHORIZATION, 0);
	der = sign_raw(pki.authz_s, ca_leaf, pki.ca, ST_OID_CT_AUTHORIZATION, json, &len);
	/* It chains (through the local CA, which the factory holds) and carries the EKU: only
	 * a key the root itself certified may authorize. */
	assert_int_equal(verify(der, len, "line-1", NULL), ST_E_AUTH_UNTRUSTED);
	assert_non_null(strstr(ebuf, "Local-Device-CA"));
	OPENSSL_free(der);
	X509_free(ca_leaf);
	/* The right key, the right content, the wrong content type: a report is not an
	 * authorization. */
	der = sign_raw(pki.authz_s, pki.authz, NULL, ST_OID_CT_REPORT, json, &len);
	assert_int_equal(verify(der, len, "line-1", NULL), ST_E_AUTH_FORMAT);
	OPENSSL_free(der);

	/* Content an issuer must not write: unknown key, duplicate key, wrong types. */
	{
		static const char *const bad[] = {
			"{\"type\": \"station-authorization\", \"version\": 1, \"extra\": 1}",
			"{\"type\": \"station-authorization\", \"type\": \"station-authorization\"}",
			"{\"type\": \"station-authorization\", \"version\": 2}",
			"[1, 2]",
			"not json",
		};

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			der = sign_raw(pki.root_s, pki.root, NULL, ST_OID_CT_AUTHORIZATION, bad[i],
				       &len);
			assert_int_equal(verify(der, len, "line-1", NULL), ST_E_AUTH_FORMAT);
			OPENSSL_free(der);
		}
	}
	assert_int_equal(verify((const uint8_t *)"hello", 5, "line-1", NULL), ST_E_AUTH_FORMAT);
	assert_int_equal(verify(good, 0, "line-1", NULL), ST_E_AUTH_FORMAT);

	/* Tampered: every single byte changed in turn is refused (a low bit, the case bit of
	 * a letter, the top bit); one in the content (the units) for the signature's reason. */
	for (size_t i = 0; i < glen; i++) {
		static const uint8_t masks[] = { 0x01, 0x20, 0x80 };

		for (size_t m = 0; m < sizeof(masks); m++) {
			good[i] ^= masks[m];
			if (verify(good, glen, "line-1", NULL) == 0)
				fail_msg("byte %zu of %zu changed (^0x%02x), and the document "
					 "still verifies",
					 i, glen, masks[m]);
			good[i] ^= masks[m];
		}
	}
	{
		uint8_t *u = memmem(good, glen, "\"units\": 10", 11);

		assert_non_null(u);
		u[10] = '9';
		assert_int_equal(verify(good, glen, "line-1", NULL), ST_E_AUTH_SIGNATURE);
		u[10] = '0';
	}
	assert_int_equal(verify(good, glen, "line-1", NULL), 0);
	/* Bytes appended after the document. */
	{
		uint8_t *more = malloc(glen + 1);

		memcpy(more, good, glen);
		more[glen] = 0;
		assert_int_equal(verify(more, glen + 1, "line-1", NULL), ST_E_AUTH_FORMAT);
		free(more);
	}
	OPENSSL_free(good);
}

static void write_doc(const char *name, const uint8_t *der, size_t len)
{
	char path[4300];
	FILE *f;

	snprintf(path, sizeof(path), "%s/set/%s", dir, name);
	f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(der, 1, len, f), len);
	fclose(f);
}

static void test_set(void **state)
{
	struct st_auth_spec spec;
	struct st_auth_env env = env_of("line-1");
	struct st_auth_set *set = NULL;
	struct st_auth *cand[4];
	const char *const skus2[] = { "sim-gw", "other-sku" };
	unsigned refused = 0;
	char path[4300];
	time_t now = time(NULL);
	uint8_t *der;
	size_t len;
	int n;

	(void)state;
	snprintf(path, sizeof(path), "%s/set", dir);
	assert_int_equal(mkdir(path, 0700), 0);
	spec = spec_of("LOT-LATE", 5);
	spec.id = "b-late";
	spec.not_after = now + 60 * DAY;
	der = issue_ok(pki.root_s, pki.root, NULL, &spec, &len);
	write_doc("b.auth", der, len);
	write_doc("b-again.auth", der, len); /* the same id twice: the second is refused */
	OPENSSL_free(der);
	spec = spec_of("LOT-SOON", 5);
	spec.id = "a-soon";
	spec.skus = skus2;
	spec.nskus = 2;
	der = issue_ok(pki.authz_s, pki.authz, NULL, &spec, &len);
	write_doc("a.auth", der, len);
	write_doc("a.auth.txt", der, len); /* not *.auth: not read */
	write_doc(".hidden.auth", der, len);
	OPENSSL_free(der);
	spec = spec_of("LOT-FUTURE", 5);
	spec.id = "c-future";
	spec.not_before = now + DAY;
	der = issue_ok(pki.root_s, pki.root, NULL, &spec, &len);
	write_doc("c.auth", der, len);
	OPENSSL_free(der);
	der = issue_ok(pki.forged_s, pki.forged, NULL, &spec, &len);
	write_doc("d-forged.auth", der, len);
	OPENSSL_free(der);

	assert_int_equal(st_auth_set_load(path, &env, &set, &refused, ebuf, sizeof(ebuf)), 0);
	assert_int_equal(refused, 2);
	assert_int_equal(st_auth_set_count(set), 3);
	assert_string_equal(st_auth_set_get(set, 0)->id, "a-soon");
	assert_non_null(strstr(st_auth_set_get(set, 0)->path, "/a.auth"));

	/* The one that ends first comes first; the future one is not a candidate yet. */
	n = st_auth_set_pick(set, "sim-gw", 0, cand, 4, ebuf, sizeof(ebuf));
	assert_int_equal(n, 2);
	assert_string_equal(cand[0]->id, "a-soon");
	assert_string_equal(cand[1]->id, "b-late");
	n = st_auth_set_pick(set, "sim-gw", 0, cand, 1, ebuf, sizeof(ebuf));
	assert_int_equal(n, 1);
	assert_string_equal(cand[0]->id, "a-soon");
	n = st_auth_set_pick(set, "other-sku", 0, cand, 4, ebuf, sizeof(ebuf));
	assert_int_equal(n, 1);
	assert_int_equal(st_auth_set_pick(set, "unknown", 0, cand, 4, ebuf, sizeof(ebuf)),
			 ST_E_AUTH_SKU);
	assert_int_equal(st_auth_set_pick(set, "other-sku", now + 40 * DAY, cand, 4, ebuf,
					  sizeof(ebuf)),
			 ST_E_AUTH_EXPIRED);
	assert_int_equal(st_auth_set_pick(NULL, "sim-gw", 0, cand, 4, ebuf, sizeof(ebuf)),
			 ST_E_AUTH_SKU);
	st_auth_set_unref(set);

	/* No directory yet: nothing authorized, not an error. A file where the directory
	 * should be is one. */
	snprintf(path, sizeof(path), "%s/none", dir);
	assert_int_equal(st_auth_set_load(path, &env, &set, NULL, ebuf, sizeof(ebuf)), 0);
	assert_int_equal(st_auth_set_count(set), 0);
	st_auth_set_unref(set);
	snprintf(path, sizeof(path), "%s/set/a.auth", dir);
	assert_int_equal(st_auth_set_load(path, &env, &set, NULL, ebuf, sizeof(ebuf)), ST_E_IO);
	assert_null(set);
}

static void test_times(void **state)
{
	time_t t;
	char buf[32];

	(void)state;
	assert_int_equal(st_auth_time_parse("2030-01-02T03:04:05Z", &t), 0);
	st_auth_time_format(t, buf);
	assert_string_equal(buf, "2030-01-02T03:04:05Z");
	assert_int_equal(st_auth_time_parse("2030-02-31T00:00:00Z", &t), ST_E_INVAL);
	assert_int_equal(st_auth_time_parse("2030-01-02 03:04:05Z", &t), ST_E_INVAL);
	assert_int_equal(st_auth_time_parse("2030-01-02T03:04:05", &t), ST_E_INVAL);
	assert_int_equal(st_auth_time_parse("2030-01-02T03:04:05+01:00", &t), ST_E_INVAL);
	assert_int_equal(st_auth_time_parse("2030-1-02T03:04:05Z", &t), ST_E_INVAL);
	assert_int_equal(st_auth_time_parse("", &t), ST_E_INVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_issue_verify), cmocka_unit_test(test_issue_pkcs11),
		cmocka_unit_test(test_refusals),     cmocka_unit_test(test_set),
		cmocka_unit_test(test_times),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
