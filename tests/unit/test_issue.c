/* Issuance: certificates made with the file signer (a fresh CA written by the test) and with
 * SoftHSM2, every field checked through OpenSSL's own parser; a signer that signs wrongly
 * never gets a certificate out; the x509sign helpers make a verifiable self-signed root and
 * CSR from an external key; the CA loader refuses unusable CA certificates. */
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

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "ca.h"
#include "err.h"
#include "issue.h"
#include "log.h"
#include "policy.h"
#include "signer.h"
#include "testutil.h"
#include "x509sign.h"

#define DEV_ID "8b1f5a4e-2c3d-4e5f-9a0b-1c2d3e4f5a6b"
#define FACTORY "acme-factory"
#define DAY 86400L

struct fx {
	char dir[4096];
	char ca_key[4200], ca_pem[4200], root_pem[4200];
	EVP_PKEY *root_key, *ca_key_pkey, *dev_key;
	X509 *root, *ca_cert;
	struct st_ca *ca;
	struct drv_signer *signer;
	void *sess;
	struct st_issuer *is;
};

static struct fx F;

enum { CA_NO_SKI = 1, CA_NOT_CA = 2, CA_TWO_OU = 4, CA_NO_OU = 8 };

static void add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);

	assert_non_null(ext);
	assert_int_equal(X509_add_ext(x, ext, -1), 1);
	X509_EXTENSION_free(ext);
}

/* A CA certificate for key, signed by issuer_key (self-signed when issuer is NULL), valid
 * from an hour ago for `life` seconds. */
static X509 *make_ca(EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key, const char *cn,
		     long life, int flags)
{
	X509 *x = X509_new();
	X509_NAME *name = X509_NAME_new();
	X509V3_CTX ctx;

	assert_non_null(x);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 4242);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
				   0);
	if (!(flags & CA_NO_OU))
		X509_NAME_add_entry_by_txt(name, "OU", MBSTRING_UTF8,
					   (const unsigned char *)FACTORY, -1, -1, 0);
	if (flags & CA_TWO_OU)
		X509_NAME_add_entry_by_txt(name, "OU", MBSTRING_UTF8,
					   (const unsigned char *)"second", -1, -1, 0);
	X509_set_subject_name(x, name);
	X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
	X509_NAME_free(name);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), life);
	X509_set_pubkey(x, key);
	X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
	add_ext(x, &ctx, NID_basic_constraints,
		(flags & CA_NOT_CA) ? "critical,CA:FALSE" : "critical,CA:TRUE");
	add_ext(x, &ctx, NID_key_usage,
		(flags & CA_NOT_CA) ? "critical,digitalSignature" :
				      "critical,keyCertSign,cRLSign");
	if (!(flags & CA_NO_SKI))
		add_ext(x, &ctx, NID_subject_key_identifier, "hash");
	if (issuer)
		add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always");
	assert_true(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
	return x;
}

static void write_cert(const char *path, X509 *x)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(PEM_write_X509(f, x), 1);
	fclose(f);
}

/* A device CSR with the subject the device tool sends. */
static uint8_t *make_csr(EVP_PKEY *key, const char *cn, int production, size_t *len)
{
	uint8_t *der = tu_csr_der(key, cn, FACTORY, production, len);

	assert_non_null(der);
	return der;
}

/* Writes key to path and opens the file signer on it. */
static struct drv_signer *file_signer(const char *path, EVP_PKEY *key)
{
	struct drv_signer *s = NULL;
	char err[512] = "";

	if (tu_file_signer(path, key, &s, err, sizeof(err)) != 0)
		fail_msg("signer: %s", err);
	return s;
}

static int group_setup(void **state)
{
	char err[512] = "";
	const char *d = tu_tmpdir("issue");
	int rc;

	(void)state;
	if (!d)
		return -1;
	snprintf(F.dir, sizeof(F.dir), "%s", d);
	snprintf(F.ca_key, sizeof(F.ca_key), "%s/ca.key", F.dir);
	snprintf(F.ca_pem, sizeof(F.ca_pem), "%s/ca.pem", F.dir);
	snprintf(F.root_pem, sizeof(F.root_pem), "%s/root.pem", F.dir);
	F.root_key = EVP_EC_gen("prime256v1");
	F.ca_key_pkey = EVP_EC_gen("prime256v1");
	F.dev_key = EVP_EC_gen("prime256v1");
	F.root = make_ca(F.root_key, NULL, NULL, "Factory-CA", 7400 * DAY, 0);
	F.ca_cert = make_ca(F.ca_key_pkey, F.root, F.root_key, "local-ca", 7400 * DAY, 0);
	write_cert(F.ca_pem, F.ca_cert);
	write_cert(F.root_pem, F.root);
	rc = st_ca_load(F.ca_pem, NULL, F.root_pem, &F.ca, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "ca: %s\n", err);
		return -1;
	}
	F.signer = file_signer(F.ca_key, F.ca_key_pkey);
	if (drv_signer_session_open(F.signer, &F.sess, err, sizeof(err)) ||
	    st_issuer_new(F.ca, F.signer, F.sess, &F.is, err, sizeof(err))) {
		fprintf(stderr, "issuer: %s\n", err);
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	st_issuer_free(F.is);
	drv_signer_session_close(F.signer, F.sess);
	drv_signer_close(F.signer);
	st_ca_free(F.ca);
	X509_free(F.root);
	X509_free(F.ca_cert);
	EVP_PKEY_free(F.root_key);
	EVP_PKEY_free(F.ca_key_pkey);
	EVP_PKEY_free(F.dev_key);
	return tu_rmtree(F.dir);
}

/* Issues for the fixture's device key under p at time now. */
static struct st_cert *issue(const struct st_policy *p, const char *id, int production,
			     time_t now)
{
	struct st_cert *cert = NULL;
	char err[512] = "";
	size_t len;
	uint8_t *csr = make_csr(F.dev_key, id, production, &len);
	int rc;

	rc = st_issue_csr(F.is, p, csr, len, id, now, &cert, err, sizeof(err));
	free(csr);
	if (rc)
		fail_msg("issue: %s: %s", st_errname(rc), err);
	return cert;
}

static X509 *parse(const struct st_cert *c)
{
	const unsigned char *p = c->der;
	X509 *x = d2i_X509(NULL, &p, (long)c->der_len);

	assert_non_null(x);
	assert_ptr_equal(p, c->der + c->der_len);
	return x;
}

static void check_entry(X509_NAME *n, int i, int nid, const char *value)
{
	X509_NAME_ENTRY *e = X509_NAME_get_entry(n, i);
	const ASN1_STRING *s;

	assert_non_null(e);
	assert_int_equal(OBJ_obj2nid(X509_NAME_ENTRY_get_object(e)), nid);
	s = X509_NAME_ENTRY_get_data(e);
	assert_int_equal(ASN1_STRING_type(s), V_ASN1_UTF8STRING);
	assert_int_equal(ASN1_STRING_length(s), (int)strlen(value));
	assert_memory_equal(ASN1_STRING_get0_data(s), value, strlen(value));
	/* One attribute per RDN. */
	assert_int_equal(X509_NAME_ENTRY_set(e), i);
}

static int ext_critical(X509 *x, int nid)
{
	int i = X509_get_ext_by_NID(x, nid, -1);

	assert_true(i >= 0);
	/* Present once. */
	assert_true(X509_get_ext_by_NID(x, nid, i) < 0);
	return X509_EXTENSION_get_critical(X509_get_ext(x, i));
}

/* Verifies the certificate as the device gateway would: strict X.509, TLS client purpose,
 * chained to the factory root through the local CA. */
static void verify_chain(X509 *x)
{
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	STACK_OF(X509) *untrusted = sk_X509_new_null();

	sk_X509_push(untrusted, F.ca_cert);
	X509_STORE_add_cert(store, F.root);
	assert_int_equal(X509_STORE_CTX_init(ctx, store, x, untrusted), 1);
	X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_X509_STRICT);
	X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
	if (X509_verify_cert(ctx) != 1)
		fail_msg("chain: %s",
			 X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	sk_X509_free(untrusted);
}

static void every_field(void **state)
{
	struct st_policy p;
	struct st_cert *c;
	const ASN1_OCTET_STRING *ski, *aki;
	const ASN1_BIT_STRING *pk_bits;
	const X509_ALGOR *alg;
	ASN1_OCTET_STRING *aki_ski;
	GENERAL_NAMES *aki_issuer;
	ASN1_INTEGER *aki_serial;
	const unsigned char *pk;
	unsigned char md[SHA_DIGEST_LENGTH];
	BIGNUM *serial;
	char *hex;
	time_t now = time(NULL);
	X509 *x;
	int pklen, i;

	(void)state;
	st_policy_default(&p);
	c = issue(&p, DEV_ID, 0, now);
	x = parse(c);

	assert_int_equal(X509_get_version(x), 2);
	/* Serial: positive, at most 20 octets, 127 random bits, reported as hex. */
	serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
	assert_false(BN_is_negative(serial));
	assert_false(BN_is_zero(serial));
	assert_true(BN_num_bytes(serial) <= 20);
	assert_true(BN_num_bits(serial) <= 127);
	hex = BN_bn2hex(serial);
	for (i = 0; hex[i]; i++)
		hex[i] = (char)(hex[i] >= 'A' && hex[i] <= 'F' ? hex[i] - 'A' + 'a' : hex[i]);
	/* BN_bn2hex pads to whole octets, like serial_hex. */
	assert_string_equal(hex, c->serial_hex);
	OPENSSL_free(hex);
	BN_free(serial);

	assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(F.ca_cert)),
			 0);
	/* Subject: UTF8String, CN first, then OU, nothing else. */
	assert_int_equal(X509_NAME_entry_count(X509_get_subject_name(x)), 2);
	check_entry(X509_get_subject_name(x), 0, NID_commonName, DEV_ID);
	check_entry(X509_get_subject_name(x), 1, NID_organizationalUnitName, FACTORY);

	/* Validity: a minute of backdating, 7300 days. */
	assert_int_equal(c->not_before, now - ST_ISSUE_BACKDATE);
	assert_int_equal(c->not_after, now + 7300 * DAY);
	assert_int_equal(ASN1_TIME_cmp_time_t(X509_get0_notBefore(x), c->not_before), 0);
	assert_int_equal(ASN1_TIME_cmp_time_t(X509_get0_notAfter(x), c->not_after), 0);

	/* The device's own key, carried over. */
	assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(x), F.dev_key), 1);

	/* Extensions and criticality. */
	assert_int_equal(X509_get_ext_count(x), 5);
	assert_true(ext_critical(x, NID_basic_constraints));
	assert_true(ext_critical(x, NID_key_usage));
	assert_true(ext_critical(x, NID_ext_key_usage));
	assert_false(ext_critical(x, NID_subject_key_identifier));
	assert_false(ext_critical(x, NID_authority_key_identifier));
	assert_false(X509_get_extension_flags(x) & EXFLAG_CA);
	assert_true(X509_get_extension_flags(x) & EXFLAG_BCONS);
	assert_int_equal(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE);
	assert_int_equal(X509_get_extended_key_usage(x), XKU_SSL_CLIENT);
	/* SKI is SHA-1 of the subjectPublicKey BIT STRING (RFC 5280 method 1). */
	X509_PUBKEY_get0_param(NULL, &pk, &pklen, NULL, X509_get_X509_PUBKEY(x));
	SHA1(pk, (size_t)pklen, md);
	ski = X509_get0_subject_key_id(x);
	assert_non_null(ski);
	assert_int_equal(ASN1_STRING_length(ski), SHA_DIGEST_LENGTH);
	assert_memory_equal(ASN1_STRING_get0_data(ski), md, SHA_DIGEST_LENGTH);
	/* AKI: the CA's SKI, and only that. */
	assert_int_equal(X509_get0_authority_key_id(x) != NULL, 1);
	aki = X509_get0_authority_key_id(x);
	assert_int_equal(ASN1_OCTET_STRING_cmp(aki, X509_get0_subject_key_id(F.ca_cert)), 0);
	assert_int_equal(X509_get0_extensions(x) != NULL, 1);
	{
		AUTHORITY_KEYID *ak = X509_get_ext_d2i(x, NID_authority_key_identifier, NULL,
						       NULL);

		assert_non_null(ak);
		aki_ski = ak->keyid;
		aki_issuer = ak->issuer;
		aki_serial = ak->serial;
		assert_non_null(aki_ski);
		assert_null(aki_issuer);
		assert_null(aki_serial);
		AUTHORITY_KEYID_free(ak);
	}

	/* ECDSA with SHA-256, in both places, and it verifies. */
	X509_get0_signature(&pk_bits, &alg, x);
	assert_int_equal(OBJ_obj2nid(alg->algorithm), NID_ecdsa_with_SHA256);
	assert_int_equal(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);
	assert_int_equal(X509_verify(x, X509_get0_pubkey(F.ca_cert)), 1);
	verify_chain(x);

	X509_free(x);
	st_cert_free(c);
}

static void production_subject(void **state)
{
	struct st_policy p;
	struct st_cert *c;
	X509 *x;

	(void)state;
	st_policy_default(&p);
	p.production = 1;
	c = issue(&p, DEV_ID, 1, 0);
	x = parse(c);
	assert_int_equal(X509_NAME_entry_count(X509_get_subject_name(x)), 3);
	check_entry(X509_get_subject_name(x), 0, NID_commonName, DEV_ID);
	check_entry(X509_get_subject_name(x), 1, NID_organizationalUnitName, FACTORY);
	check_entry(X509_get_subject_name(x), 2, NID_businessCategory, "production");
	verify_chain(x);
	X509_free(x);
	st_cert_free(c);
}

static void uuid_serial(void **state)
{
	static const char *const ids[] = { DEV_ID, "f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
					   "00000000-0000-0000-0000-0000000000ff" };
	static const char *const hexes[] = { "8b1f5a4e2c3d4e5f9a0b1c2d3e4f5a6b",
					     "f81d4fae7dec11d0a76500a0c91e6bf6", "ff" };
	struct st_policy p;
	struct st_cert *c = NULL;
	char err[512];
	size_t i, len;
	uint8_t *csr;
	BIGNUM *bn = NULL, *serial;
	X509 *x;

	(void)state;
	st_policy_default(&p);
	p.serial_mode = ST_SERIAL_UUID;
	for (i = 0; i < 3; i++) {
		c = issue(&p, ids[i], 0, 0);
		assert_string_equal(c->serial_hex, hexes[i]);
		x = parse(c);
		serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
		BN_hex2bn(&bn, hexes[i]);
		assert_int_equal(BN_cmp(serial, bn), 0);
		/* The top bit set needs a padding octet: 17 octets, still positive. */
		assert_false(BN_is_negative(serial));
		verify_chain(x);
		BN_free(serial);
		X509_free(x);
		st_cert_free(c);
	}
	BN_free(bn);
	/* A device id that is no UUID gives no serial. */
	csr = make_csr(F.dev_key, "board-17", 0, &len);
	assert_int_equal(st_issue_csr(F.is, &p, csr, len, "board-17", 0, &c, err, sizeof(err)),
			 ST_E_ISSUE_SERIAL);
	assert_null(c);
	assert_non_null(strstr(err, "board-17"));
	free(csr);
	csr = make_csr(F.dev_key, "00000000-0000-0000-0000-000000000000", 0, &len);
	assert_int_equal(st_issue_csr(F.is, &p, csr, len, "00000000-0000-0000-0000-000000000000",
				      0, &c, err, sizeof(err)),
			 ST_E_ISSUE_SERIAL);
	free(csr);
}

static void random_serials_differ(void **state)
{
	struct st_policy p;
	struct st_cert *a, *b;
	X509 *x;

	(void)state;
	st_policy_default(&p);
	p.serial_bits = 64;
	a = issue(&p, DEV_ID, 0, 0);
	b = issue(&p, DEV_ID, 0, 0);
	assert_string_not_equal(a->serial_hex, b->serial_hex);
	assert_true(strlen(a->serial_hex) <= 16);
	st_cert_free(b);
	p.serial_bits = 159;
	b = issue(&p, DEV_ID, 0, 0);
	x = parse(b);
	assert_true(ASN1_STRING_length(X509_get0_serialNumber(x)) <= 20);
	X509_free(x);
	st_cert_free(a);
	st_cert_free(b);
	p.serial_bits = 63;
	{
		struct st_cert *c = NULL;
		char err[256];
		size_t len;
		uint8_t *csr = make_csr(F.dev_key, DEV_ID, 0, &len);

		assert_int_equal(st_issue_csr(F.is, &p, csr, len, DEV_ID, 0, &c, err, sizeof(err)),
				 ST_E_INVAL);
		free(csr);
	}
}

/* The serial can be chosen first (the ledger records it before signing), then used. */
static void serial_chosen_beforehand(void **state)
{
	static const char *const bad[] = { "", "0", "abc", "00", "zz",
					   "80000000000000000000000000000000000000ff",
					   "0102030405060708090a0b0c0d0e0f101112131415" };
	struct st_policy p;
	struct st_csr *csr = NULL;
	struct st_cert *c = NULL;
	char hex[ST_ISSUE_SERIAL_HEX], err[512] = "";
	size_t len, i;
	uint8_t *der = make_csr(F.dev_key, DEV_ID, 0, &len);
	X509 *x;
	BIGNUM *bn = NULL, *serial;

	(void)state;
	st_policy_default(&p);
	assert_int_equal(st_csr_check(&p, F.ca->ou, der, len, DEV_ID, &csr, err, sizeof(err)), 0);
	assert_int_equal(st_issue_make_serial(&p, DEV_ID, hex, err, sizeof(err)), 0);
	assert_true(strlen(hex) >= 16 && strlen(hex) <= 32 && strlen(hex) % 2 == 0);
	assert_int_equal(st_issue_with_serial(F.is, &p, csr, DEV_ID, hex, 0, &c, err,
					      sizeof(err)), 0);
	assert_string_equal(c->serial_hex, hex);
	x = parse(c);
	serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
	BN_hex2bn(&bn, hex);
	assert_int_equal(BN_cmp(serial, bn), 0);
	assert_int_equal(X509_verify(x, X509_get0_pubkey(F.ca_cert)), 1);
	BN_free(serial);
	X509_free(x);
	st_cert_free(c);
	/* 20 octets with a clear top bit is the largest serial there is. */
	assert_int_equal(st_issue_with_serial(F.is, &p, csr, DEV_ID,
					      "7fffffffffffffffffffffffffffffffffffffff", 0, &c,
					      err, sizeof(err)), 0);
	x = parse(c);
	assert_int_equal(ASN1_STRING_length(X509_get0_serialNumber(x)), 20);
	X509_free(x);
	st_cert_free(c);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(st_issue_with_serial(F.is, &p, csr, DEV_ID, bad[i], 0, &c, err,
						      sizeof(err)), ST_E_INVAL);
		assert_null(c);
	}
	p.serial_mode = ST_SERIAL_UUID;
	assert_int_equal(st_issue_make_serial(&p, DEV_ID, hex, err, sizeof(err)), 0);
	assert_string_equal(hex, "8b1f5a4e2c3d4e5f9a0b1c2d3e4f5a6b");
	assert_int_equal(st_issue_make_serial(&p, "not-a-uuid", hex, err, sizeof(err)),
			 ST_E_ISSUE_SERIAL);
	assert_string_equal(hex, "");
	BN_free(bn);
	st_csr_free(csr);
	free(der);
}

/* A CA that ends in 10 days: the certificate is clamped to it, or refused. Also the far
 * future (GeneralizedTime after 2049) and an expired CA. */
static void validity_against_ca(void **state)
{
	struct st_policy p;
	struct st_cert *c = NULL;
	struct st_issuer *is = NULL;
	struct st_ca *ca = NULL;
	char err[512] = "";
	size_t len;
	uint8_t *csr = make_csr(F.dev_key, DEV_ID, 0, &len);
	X509 *short_ca = make_ca(F.ca_key_pkey, F.root, F.root_key, "short-ca", 10 * DAY, 0);
	X509 *x;
	time_t now = time(NULL);

	(void)state;
	assert_int_equal(st_ca_from_x509(short_ca, NULL, F.root, "short-ca", &ca, err,
					 sizeof(err)), 0);
	assert_int_equal(st_issuer_new(ca, F.signer, F.sess, &is, err, sizeof(err)), 0);
	st_policy_default(&p);
	assert_int_equal(st_issue_csr(is, &p, csr, len, DEV_ID, now, &c, err, sizeof(err)), 0);
	assert_int_equal(c->not_after, ca->not_after);
	x = parse(c);
	assert_int_equal(ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(short_ca)),
			 0);
	assert_int_equal(X509_verify(x, X509_get0_pubkey(short_ca)), 1);
	X509_free(x);
	st_cert_free(c);

	p.past_ca = ST_PAST_CA_REJECT;
	assert_int_equal(st_issue_csr(is, &p, csr, len, DEV_ID, now, &c, err, sizeof(err)),
			 ST_E_ISSUE_PAST_CA);
	assert_null(c);
	assert_non_null(strstr(err, "notAfter"));
	p.validity_days = 5;
	assert_int_equal(st_issue_csr(is, &p, csr, len, DEV_ID, now, &c, err, sizeof(err)), 0);
	assert_int_equal(c->not_after, now + 5 * DAY);
	st_cert_free(c);
	/* After the CA's end, nothing is issued. */
	assert_int_equal(st_issue_csr(is, &p, csr, len, DEV_ID, now + 11 * DAY, &c, err,
				      sizeof(err)),
			 ST_E_ISSUE_CA_EXPIRED);
	p.validity_days = 0;
	assert_int_equal(st_issue_csr(is, &p, csr, len, DEV_ID, now, &c, err, sizeof(err)),
			 ST_E_INVAL);
	st_issuer_free(is);
	st_ca_free(ca);
	X509_free(short_ca);

	/* 7300 days from 2045 end after 2049: GeneralizedTime, as RFC 5280 requires. */
	st_policy_default(&p);
	{
		struct tm tm = { .tm_year = 2045 - 1900, .tm_mon = 0, .tm_mday = 2 };
		time_t t = timegm(&tm);
		X509 *long_ca = make_ca(F.ca_key_pkey, F.root, F.root_key, "long-ca",
					50 * 366 * DAY, 0);

		assert_int_equal(st_ca_from_x509(long_ca, NULL, F.root, "long-ca", &ca, err,
						 sizeof(err)), 0);
		assert_int_equal(st_issuer_new(ca, F.signer, F.sess, &is, err, sizeof(err)), 0);
		assert_int_equal(st_issue_csr(is, &p, csr, len, DEV_ID, t, &c, err, sizeof(err)),
				 0);
		assert_int_equal(c->not_after, t + 7300 * DAY);
		x = parse(c);
		assert_int_equal(ASN1_STRING_type(X509_get0_notBefore(x)), V_ASN1_UTCTIME);
		assert_int_equal(ASN1_STRING_type(X509_get0_notAfter(x)), V_ASN1_GENERALIZEDTIME);
		assert_int_equal(ASN1_TIME_cmp_time_t(X509_get0_notBefore(x), c->not_before), 0);
		assert_int_equal(ASN1_TIME_cmp_time_t(X509_get0_notAfter(x), c->not_after), 0);
		assert_int_equal(X509_verify(x, X509_get0_pubkey(long_ca)), 1);
		X509_free(x);
		st_cert_free(c);
		st_issuer_free(is);
		st_ca_free(ca);
		X509_free(long_ca);
	}
	free(csr);
}

static void factory_must_be_ca_ou(void **state)
{
	struct st_policy p;
	struct st_cert *c = NULL;
	struct st_csr *csr = NULL;
	char err[512];
	size_t len;
	uint8_t *der = make_csr(F.dev_key, DEV_ID, 0, &len);

	(void)state;
	st_policy_default(&p);
	assert_int_equal(st_csr_check(&p, F.ca->ou, der, len, DEV_ID, &csr, err, sizeof(err)), 0);
	strcpy(p.factory, "other-factory");
	assert_int_equal(st_issue(F.is, &p, csr, DEV_ID, 0, &c, err, sizeof(err)),
			 ST_E_ISSUE_CA_OU);
	assert_null(c);
	assert_non_null(strstr(err, "other-factory"));
	st_csr_free(csr);
	free(der);
}

/* A test-only signer: reports one public key, signs with another (or corrupts its
 * signature), like an HSM with the wrong key or a fault. Never in the backend table. */
struct liar {
	EVP_PKEY *shown, *real;
	int mode; /* 0: wrong key, 1: flip a bit, 2: not DER */
};

static int liar_sign(void *sess, const uint8_t *digest, size_t dlen, uint8_t *sig,
		     size_t *siglen, char *err, size_t errlen)
{
	struct liar *l = sess;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(l->real, NULL);
	size_t len = DRV_SIGNER_MAX_SIG;

	(void)err;
	(void)errlen;
	assert_int_equal(EVP_PKEY_sign_init(ctx), 1);
	assert_int_equal(EVP_PKEY_sign(ctx, sig, &len, digest, dlen), 1);
	EVP_PKEY_CTX_free(ctx);
	if (l->mode == 1)
		sig[len - 5] ^= 0x10;
	if (l->mode == 2)
		sig[0] = 0x31;
	*siglen = len;
	return 0;
}

static EVP_PKEY *liar_public_key(void *inst)
{
	struct liar *l = inst;

	EVP_PKEY_up_ref(l->shown);
	return l->shown;
}

static const struct drv_signer_ops liar_ops = {
	.name = "liar",
	.sign = liar_sign,
	.public_key = liar_public_key,
};

static void bad_signature_never_released(void **state)
{
	EVP_PKEY *other = EVP_EC_gen("prime256v1");
	struct liar l = { .shown = F.ca_key_pkey };
	struct drv_signer s = { .ops = &liar_ops, .inst = &l };
	struct st_issuer *is = NULL;
	struct st_policy p;
	struct st_cert *c = NULL;
	char err[512] = "";
	size_t len;
	uint8_t *csr = make_csr(F.dev_key, DEV_ID, 0, &len);
	int mode;

	(void)state;
	st_policy_default(&p);
	assert_int_equal(st_issuer_new(F.ca, &s, &l, &is, err, sizeof(err)), 0);
	for (mode = 0; mode < 3; mode++) {
		l.mode = mode;
		l.real = mode ? F.ca_key_pkey : other;
		assert_int_equal(st_issue_csr(is, &p, csr, len, DEV_ID, 0, &c, err, sizeof(err)),
				 ST_E_SIGNER_BADSIG);
		assert_null(c);
		assert_non_null(strstr(err, "does not verify"));
	}
	/* Honest again: it works, so the failures above were the signatures. */
	l.mode = 0;
	l.real = F.ca_key_pkey;
	assert_int_equal(st_issue_csr(is, &p, csr, len, DEV_ID, 0, &c, err, sizeof(err)), 0);
	st_cert_free(c);
	st_issuer_free(is);
	EVP_PKEY_free(other);
	free(csr);
}

static void wrong_key_refused_up_front(void **state)
{
	char path[4300], err[512] = "";
	EVP_PKEY *other = EVP_EC_gen("prime256v1");
	struct drv_signer *s;
	struct st_issuer *is = NULL;
	void *sess = NULL;

	(void)state;
	snprintf(path, sizeof(path), "%s/other.key", F.dir);
	s = file_signer(path, other);
	assert_int_equal(drv_signer_session_open(s, &sess, err, sizeof(err)), 0);
	assert_int_equal(st_issuer_new(F.ca, s, sess, &is, err, sizeof(err)),
			 ST_E_ISSUE_CA_KEY_MISMATCH);
	assert_null(is);
	assert_non_null(strstr(err, "local-ca"));
	drv_signer_session_close(s, sess);
	drv_signer_close(s);
	EVP_PKEY_free(other);
}

/* About half of all DER signatures end in an octet with trailing zero bits; a wrongly
 * encoded BIT STRING would make those fail. 1000 certificates, each parsed and verified. */
static void thousand_verify(void **state)
{
	EVP_PKEY *ca_pub = X509_get0_pubkey(F.ca_cert);
	struct st_policy p;
	struct st_csr *csr = NULL;
	struct st_cert *c;
	char err[512] = "";
	size_t len;
	uint8_t *der = make_csr(F.dev_key, DEV_ID, 0, &len);
	X509 *x;
	int i, rc;

	(void)state;
	st_policy_default(&p);
	assert_int_equal(st_csr_check(&p, F.ca->ou, der, len, DEV_ID, &csr, err, sizeof(err)), 0);
	for (i = 0; i < 1000; i++) {
		rc = st_issue(F.is, &p, csr, DEV_ID, 0, &c, err, sizeof(err));
		if (rc)
			fail_msg("certificate %d: %s", i, err);
		x = parse(c);
		if (X509_verify(x, ca_pub) != 1)
			fail_msg("certificate %d does not verify", i);
		X509_free(x);
		st_cert_free(c);
	}
	st_csr_free(csr);
	free(der);
}

static void pem_output(void **state)
{
	struct st_policy p;
	struct st_cert *c;
	char *pem = NULL;
	size_t len = 0;
	BIO *bio;
	X509 *x, *y;
	unsigned char *der = NULL;
	int n;

	(void)state;
	st_policy_default(&p);
	c = issue(&p, DEV_ID, 0, 0);
	assert_int_equal(st_cert_pem(c->der, c->der_len, &pem, &len), 0);
	assert_int_equal(strlen(pem), len);
	assert_true(strncmp(pem, "-----BEGIN CERTIFICATE-----\n", 28) == 0);
	assert_true(pem[len - 1] == '\n');
	bio = BIO_new_mem_buf(pem, (int)len);
	y = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	assert_non_null(y);
	n = i2d_X509(y, &der);
	assert_int_equal((size_t)n, c->der_len);
	assert_memory_equal(der, c->der, c->der_len);
	x = parse(c);
	assert_int_equal(X509_cmp(x, y), 0);
	OPENSSL_free(der);
	X509_free(x);
	X509_free(y);
	BIO_free(bio);
	free(pem);
	st_cert_free(c);
}

/* The independent verifiers of the field: openssl verify and GnuTLS certtool. */
static void cli_verifiers(void **state)
{
	struct st_policy p;
	struct st_cert *c;
	char path[4300], chain[4300], cmd[24000];
	char *pem = NULL;
	FILE *f;

	(void)state;
	st_policy_default(&p);
	p.production = 1;
	c = issue(&p, DEV_ID, 1, 0);
	assert_int_equal(st_cert_pem(c->der, c->der_len, &pem, NULL), 0);
	snprintf(path, sizeof(path), "%s/device.pem", F.dir);
	f = fopen(path, "w");
	fputs(pem, f);
	fclose(f);
	snprintf(cmd, sizeof(cmd),
		 "openssl verify -x509_strict -purpose sslclient -CAfile '%s' -untrusted '%s' "
		 "'%s' >/dev/null",
		 F.root_pem, F.ca_pem, path);
	assert_int_equal(system(cmd), 0);
	if (system("command -v certtool >/dev/null 2>&1") == 0) {
		/* certtool wants the chain in one file, leaf first. */
		snprintf(chain, sizeof(chain), "%s/chain.pem", F.dir);
		snprintf(cmd, sizeof(cmd),
			 "cat '%s' '%s' '%s' > '%s' && certtool --verify-chain --infile '%s' "
			 ">/dev/null 2>&1",
			 path, F.ca_pem, F.root_pem, chain, chain);
		assert_int_equal(system(cmd), 0);
	} else {
		print_message("certtool not installed: skipped GnuTLS check\n");
	}
	free(pem);
	st_cert_free(c);
}

/* x509sign: a self-signed root and a CSR made with an external (signer) key verify, and
 * the CSR passes the station's own CSR checks (proof of possession through the signer). */
static void x509sign_root_and_csr(void **state)
{
	EVP_PKEY *pub = drv_signer_public_key(F.signer);
	struct st_ca *ca = NULL;
	struct st_csr *csr = NULL;
	struct st_policy p;
	unsigned char *der = NULL;
	char err[512] = "";
	X509_NAME *name = X509_NAME_new();
	X509_REQ *req = X509_REQ_new();
	X509V3_CTX ctx;
	X509 *x = X509_new();
	int i, n;

	(void)state;
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)"Factory-CA",
				   -1, -1, 0);
	X509_NAME_add_entry_by_txt(name, "OU", MBSTRING_UTF8, (const unsigned char *)FACTORY,
				   -1, -1, 0);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_set_subject_name(x, name);
	X509_set_issuer_name(x, name);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 7300 * DAY);
	X509_set_pubkey(x, pub);
	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE");
	add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
	add_ext(x, &ctx, NID_subject_key_identifier, "hash");
	/* Signing again replaces the signature: 200 rounds cover both BIT STRING endings. */
	for (i = 0; i < 200; i++) {
		const unsigned char *p;
		X509 *y;

		assert_int_equal(st_x509_sign(x, F.signer, F.sess, err, sizeof(err)), 0);
		n = i2d_X509(x, &der);
		p = der;
		y = d2i_X509(NULL, &p, n);
		assert_non_null(y);
		assert_int_equal(X509_verify(y, pub), 1);
		assert_int_equal(X509_check_issued(y, y), X509_V_OK);
		X509_free(y);
		OPENSSL_free(der);
		der = NULL;
	}
	assert_int_equal(st_ca_from_x509(x, NULL, x, "root", &ca, err, sizeof(err)), 0);
	assert_int_equal(st_ca_verify_chain(ca, 0, err, sizeof(err)), 0);
	assert_string_equal(ca->ou, FACTORY);

	X509_REQ_set_subject_name(req, name);
	X509_REQ_set_pubkey(req, pub);
	for (i = 0; i < 100; i++) {
		assert_int_equal(st_x509_req_sign(req, F.signer, F.sess, err, sizeof(err)), 0);
		n = i2d_X509_REQ(req, &der);
		st_policy_default(&p);
		if (st_csr_check(&p, FACTORY, der, (size_t)n, "Factory-CA", &csr, err,
				 sizeof(err)))
			fail_msg("CSR %d: %s", i, err);
		st_csr_free(csr);
		OPENSSL_free(der);
		der = NULL;
	}
	st_ca_free(ca);
	X509_REQ_free(req);
	X509_NAME_free(name);
	X509_free(x);
	EVP_PKEY_free(pub);
}

static void expect_ca_error(X509 *x, int code, const char *needle)
{
	struct st_ca *ca = NULL;
	char err[512] = "";

	assert_int_equal(st_ca_from_x509(x, NULL, NULL, "test-ca", &ca, err, sizeof(err)), code);
	assert_null(ca);
	if (!strstr(err, needle))
		fail_msg("\"%s\" lacks \"%s\"", err, needle);
	X509_free(x);
}

static void unusable_cas(void **state)
{
	struct st_ca *ca = NULL;
	char err[512] = "", path[4300];
	EVP_PKEY *rsa = EVP_RSA_gen(2048);
	X509 *foreign_root;

	(void)state;
	expect_ca_error(make_ca(F.ca_key_pkey, NULL, NULL, "x", DAY, CA_NO_SKI),
			ST_E_ISSUE_CA_SKI, "subjectKeyIdentifier");
	expect_ca_error(make_ca(F.ca_key_pkey, NULL, NULL, "x", DAY, CA_NOT_CA),
			ST_E_ISSUE_CA_NOT_CA, "CA:TRUE");
	expect_ca_error(make_ca(F.ca_key_pkey, NULL, NULL, "x", DAY, CA_TWO_OU),
			ST_E_ISSUE_CA_CERT, "2 OUs");
	expect_ca_error(make_ca(F.ca_key_pkey, NULL, NULL, "x", DAY, CA_NO_OU),
			ST_E_ISSUE_CA_CERT, "0 OUs");
	expect_ca_error(make_ca(rsa, NULL, NULL, "x", DAY, 0), ST_E_ISSUE_CA_KEY, "rsaEncryption");
	EVP_PKEY_free(rsa);

	/* Files: missing, and a chain that does not lead to the given root. */
	snprintf(path, sizeof(path), "%s/missing.pem", F.dir);
	assert_int_equal(st_ca_load(path, NULL, NULL, &ca, err, sizeof(err)), ST_E_IO);
	assert_non_null(strstr(err, "missing.pem"));
	assert_int_equal(st_ca_verify_chain(F.ca, 0, err, sizeof(err)), 0);
	foreign_root = make_ca(F.root_key, NULL, NULL, "Other-Root", DAY, 0);
	{
		EVP_PKEY *k = EVP_EC_gen("prime256v1");
		X509 *r = make_ca(k, NULL, NULL, "Other-Root", DAY, 0);

		assert_int_equal(st_ca_from_x509(F.ca_cert, NULL, r, "ca", &ca, err, sizeof(err)),
				 0);
		assert_int_equal(st_ca_verify_chain(ca, 0, err, sizeof(err)),
				 ST_E_ISSUE_CA_CHAIN);
		st_ca_free(ca);
		X509_free(r);
		EVP_PKEY_free(k);
	}
	X509_free(foreign_root);
	{
		char *pem = NULL;
		size_t len;

		assert_int_equal(st_ca_chain_pem(F.ca, &pem, &len), 0);
		assert_non_null(strstr(pem, "BEGIN CERTIFICATE"));
		free(pem);
		assert_int_equal(st_ca_root_pem(F.ca, &pem, &len), 0);
		free(pem);
	}
}

/* A P-384 CA signs with ECDSA-SHA384. */
static void p384_ca(void **state)
{
	EVP_PKEY *k = EVP_EC_gen("secp384r1");
	X509 *cert = make_ca(k, F.root, F.root_key, "p384-ca", 100 * DAY, 0);
	char path[4300], err[512] = "";
	struct drv_signer *s;
	struct st_issuer *is = NULL;
	struct st_ca *ca = NULL;
	struct st_policy p;
	struct st_cert *c = NULL;
	void *sess = NULL;
	size_t len;
	uint8_t *csr = make_csr(F.dev_key, DEV_ID, 0, &len);
	X509 *x;

	(void)state;
	snprintf(path, sizeof(path), "%s/p384.key", F.dir);
	s = file_signer(path, k);
	assert_int_equal(drv_signer_session_open(s, &sess, err, sizeof(err)), 0);
	assert_int_equal(st_ca_from_x509(cert, NULL, F.root, "p384", &ca, err, sizeof(err)), 0);
	assert_int_equal(st_issuer_new(ca, s, sess, &is, err, sizeof(err)), 0);
	st_policy_default(&p);
	assert_int_equal(st_issue_csr(is, &p, csr, len, DEV_ID, 0, &c, err, sizeof(err)), 0);
	x = parse(c);
	assert_int_equal(X509_get_signature_nid(x), NID_ecdsa_with_SHA384);
	assert_int_equal(X509_verify(x, k), 1);
	X509_free(x);
	st_cert_free(c);
	st_issuer_free(is);
	st_ca_free(ca);
	drv_signer_session_close(s, sess);
	drv_signer_close(s);
	X509_free(cert);
	EVP_PKEY_free(k);
	free(csr);
}

/* The CA key in SoftHSM2: the local CA's certificate is made with x509sign through the HSM,
 * then device certificates are issued with it. */
static void softhsm_ca(void **state)
{
	char dir[4300], err[512] = "";
	struct tu_softhsm hsm;
	struct drv_signer *s = NULL;
	struct st_issuer *is = NULL;
	struct st_ca *ca = NULL;
	struct st_policy p;
	struct st_cert *c = NULL;
	EVP_PKEY *pub;
	void *sess = NULL;
	size_t len;
	uint8_t *csr;
	X509 *cert, *x;
	int i, rc;

	(void)state;
	if (access(TU_SOFTHSM_MODULE, R_OK) != 0) {
		print_message("SoftHSM2 not installed: skipped\n");
		skip();
	}
	snprintf(dir, sizeof(dir), "%s/hsm", F.dir);
	assert_int_equal(mkdir(dir, 0700), 0);
	rc = tu_softhsm_token(&hsm, dir, "issue-test", "local-ca", err, sizeof(err));
	if (rc)
		fail_msg("token: %s", err);
	rc = drv_pkcs11_generate_ec_key(&hsm.cfg, NULL, err, sizeof(err));
	if (rc)
		fail_msg("keygen: %s", err);
	rc = drv_signer_open(&hsm.cfg, &s, err, sizeof(err));
	if (rc)
		fail_msg("open: %s", err);
	pub = drv_signer_public_key(s);

	/* The local CA certificate, self-signed by the HSM key. */
	cert = tu_signer_ca(s, "local-ca", FACTORY, 3650, err, sizeof(err));
	if (!cert)
		fail_msg("CA certificate: %s", err);
	assert_int_equal(drv_signer_session_open(s, &sess, err, sizeof(err)), 0);
	assert_int_equal(st_ca_from_x509(cert, NULL, cert, "hsm-ca", &ca, err, sizeof(err)), 0);
	assert_int_equal(st_issuer_new(ca, s, sess, &is, err, sizeof(err)), 0);

	st_policy_default(&p);
	csr = make_csr(F.dev_key, DEV_ID, 0, &len);
	for (i = 0; i < 50; i++) {
		rc = st_issue_csr(is, &p, csr, len, DEV_ID, 0, &c, err, sizeof(err));
		if (rc)
			fail_msg("issue %d: %s", i, err);
		x = parse(c);
		assert_int_equal(X509_verify(x, pub), 1);
		X509_free(x);
		st_cert_free(c);
	}
	free(csr);
	st_issuer_free(is);
	st_ca_free(ca);
	EVP_PKEY_free(pub);
	X509_free(cert);
	drv_signer_session_close(s, sess);
	drv_signer_close(s);
	unsetenv("SOFTHSM2_CONF");
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_field),
		cmocka_unit_test(production_subject),
		cmocka_unit_test(uuid_serial),
		cmocka_unit_test(random_serials_differ),
		cmocka_unit_test(serial_chosen_beforehand),
		cmocka_unit_test(validity_against_ca),
		cmocka_unit_test(factory_must_be_ca_ou),
		cmocka_unit_test(bad_signature_never_released),
		cmocka_unit_test(wrong_key_refused_up_front),
		cmocka_unit_test(thousand_verify),
		cmocka_unit_test(pem_output),
		cmocka_unit_test(cli_verifiers),
		cmocka_unit_test(x509sign_root_and_csr),
		cmocka_unit_test(unusable_cas),
		cmocka_unit_test(p384_ca),
		cmocka_unit_test(softhsm_ca),
	};

	/* The file signer warns that a key file is for development; the tests know. */
	st_log_set_level(ST_LOG_ERR);
	return cmocka_run_group_tests_name("issue", tests, group_setup, group_teardown);
}
