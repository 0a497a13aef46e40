/* CSR policy: every bad CSR a board could send is rejected with its own code and a message
 * naming the field; good ones pass. Each CSR is made here with OpenSSL (or crafted from
 * OpenSSL's output where OpenSSL refuses to make it), so the test needs no files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "err.h"
#include "policy.h"
#include "testutil.h"

#define DEV_ID "8b1f5a4e-2c3d-4e5f-9a0b-1c2d3e4f5a6b"
#define FACTORY "acme-factory"

static EVP_PKEY *k_p256, *k_p384, *k_k256, *k_rsa1024, *k_rsa2048, *k_ed25519;

/* One subject attribute to add: type 0 means MBSTRING_UTF8; len 0 means strlen; set as for
 * X509_NAME_add_entry (-1 joins the previous RDN). */
struct ent {
	const char *field;
	const char *val;
	int type;
	int len;
	int set;
};

#define END { NULL, NULL, 0, 0, 0 }
#define STD_SUBJECT { "CN", DEV_ID, 0, 0, 0 }, { "OU", FACTORY, 0, 0, 0 }

static X509_REQ *new_req(EVP_PKEY *key, const struct ent *e)
{
	X509_REQ *req = X509_REQ_new();
	X509_NAME *name = X509_NAME_new();

	assert_non_null(req);
	assert_non_null(name);
	for (; e->field; e++)
		assert_int_equal(X509_NAME_add_entry_by_txt(name, e->field,
							    e->type ? e->type : MBSTRING_UTF8,
							    (const unsigned char *)e->val,
							    e->len ? e->len : -1, -1, e->set),
				 1);
	assert_int_equal(X509_REQ_set_subject_name(req, name), 1);
	X509_NAME_free(name);
	assert_int_equal(X509_REQ_set_pubkey(req, key), 1);
	return req;
}

/* Signs req, frees it and returns its DER (malloc'd). */
static uint8_t *finish(X509_REQ *req, EVP_PKEY *key, const EVP_MD *md, size_t *len)
{
	unsigned char *der = NULL;
	uint8_t *out;
	int n;

	assert_true(X509_REQ_sign(req, key, md) > 0);
	n = i2d_X509_REQ(req, &der);
	assert_true(n > 0);
	out = malloc((size_t)n);
	assert_non_null(out);
	memcpy(out, der, (size_t)n);
	OPENSSL_free(der);
	X509_REQ_free(req);
	*len = (size_t)n;
	return out;
}

static uint8_t *csr_with(EVP_PKEY *key, const struct ent *e, const EVP_MD *md, size_t *len)
{
	return finish(new_req(key, e), key, md, len);
}

static uint8_t *std_csr(EVP_PKEY *key, size_t *len)
{
	static const struct ent subj[] = { STD_SUBJECT, END };

	return csr_with(key, subj, EVP_sha256(), len);
}

static uint8_t *to_pem(const uint8_t *der, size_t len, const char *label, size_t *pemlen)
{
	char *out = tu_pem(der, len, label, pemlen);

	assert_non_null(out);
	return (uint8_t *)out;
}

static uint8_t *append(uint8_t *buf, size_t *len, const void *more, size_t n)
{
	buf = realloc(buf, *len + n + 1);
	assert_non_null(buf);
	memcpy(buf + *len, more, n);
	*len += n;
	buf[*len] = 0;
	return buf;
}

/* DER pieces of a CSR: the certificationRequestInfo, the algorithm and the signature, each
 * with its header, so that crafted CSRs can swap one. */
struct parts {
	const uint8_t *info, *alg, *sig;
	size_t info_len, alg_len, sig_len;
};

static size_t tlv_len(const uint8_t *p)
{
	size_t n, i, len = 0;

	if (p[1] < 0x80)
		return 2 + p[1];
	n = p[1] & 0x7f;
	for (i = 0; i < n; i++)
		len = (len << 8) | p[2 + i];
	return 2 + n + len;
}

static size_t hdr_len(const uint8_t *p)
{
	return p[1] < 0x80 ? 2 : 2 + (size_t)(p[1] & 0x7f);
}

static void split(const uint8_t *der, struct parts *pt)
{
	pt->info = der + hdr_len(der);
	pt->info_len = tlv_len(pt->info);
	pt->alg = pt->info + pt->info_len;
	pt->alg_len = tlv_len(pt->alg);
	pt->sig = pt->alg + pt->alg_len;
	pt->sig_len = tlv_len(pt->sig);
}

static size_t put_hdr(uint8_t *out, uint8_t tag, size_t len)
{
	out[0] = tag;
	if (len < 0x80) {
		out[1] = (uint8_t)len;
		return 2;
	}
	if (len < 0x100) {
		out[1] = 0x81;
		out[2] = (uint8_t)len;
		return 3;
	}
	out[1] = 0x82;
	out[2] = (uint8_t)(len >> 8);
	out[3] = (uint8_t)len;
	return 4;
}

/* SEQUENCE { info, alg, sig } from raw encodings. */
static uint8_t *rewrap(const uint8_t *info, size_t ilen, const uint8_t *alg, size_t alen,
		       const uint8_t *sig, size_t slen, size_t *len)
{
	size_t body = ilen + alen + slen, h;
	uint8_t *out = malloc(body + 4);

	assert_non_null(out);
	h = put_hdr(out, 0x30, body);
	memcpy(out + h, info, ilen);
	memcpy(out + h + ilen, alg, alen);
	memcpy(out + h + ilen + alen, sig, slen);
	*len = h + body;
	return out;
}

/* A valid P-256 CSR with its signatureAlgorithm replaced. */
static uint8_t *with_alg(const uint8_t *alg, size_t alen, size_t *len)
{
	struct parts pt;
	size_t n;
	uint8_t *der = std_csr(k_p256, &n), *out;

	split(der, &pt);
	out = rewrap(pt.info, pt.info_len, alg, alen, pt.sig, pt.sig_len, len);
	free(der);
	return out;
}

/* ---- the bad CSRs ---- */

struct bad {
	const char *name;
	uint8_t *(*make)(size_t *len, struct st_policy *p);
	int code;
	const char *field; /* the message must mention this */
};

static uint8_t *bad_empty(size_t *len, struct st_policy *p)
{
	(void)p;
	*len = 0;
	return calloc(1, 1);
}

static uint8_t *bad_too_large(size_t *len, struct st_policy *p)
{
	size_t n;
	uint8_t *der = std_csr(k_p256, &n), *out;
	uint8_t pad[ST_CSR_MAX_BYTES];

	(void)p;
	out = to_pem(der, n, "CERTIFICATE REQUEST", len);
	free(der);
	memset(pad, '\n', sizeof(pad));
	return append(out, len, pad, sizeof(pad));
}

static uint8_t *bad_garbage(size_t *len, struct st_policy *p)
{
	static const char text[] = "hello, this is not a CSR\n";

	(void)p;
	*len = sizeof(text) - 1;
	return (uint8_t *)strdup(text);
}

static uint8_t *bad_pem_base64(size_t *len, struct st_policy *p)
{
	size_t n;
	uint8_t *der = std_csr(k_p256, &n), *pem;

	(void)p;
	pem = to_pem(der, n, "CERTIFICATE REQUEST", len);
	free(der);
	pem[40] = '*';
	return pem;
}

static uint8_t *bad_pem_label(size_t *len, struct st_policy *p)
{
	size_t n;
	uint8_t *der = std_csr(k_p256, &n), *pem;

	(void)p;
	pem = to_pem(der, n, "CERTIFICATE", len);
	free(der);
	return pem;
}

static uint8_t *bad_two_pem(size_t *len, struct st_policy *p)
{
	size_t n, n2;
	uint8_t *der = std_csr(k_p256, &n), *pem, *pem2;

	(void)p;
	pem = to_pem(der, n, "CERTIFICATE REQUEST", len);
	pem2 = to_pem(der, n, "CERTIFICATE REQUEST", &n2);
	pem = append(pem, len, pem2, n2);
	free(pem2);
	free(der);
	return pem;
}

static uint8_t *bad_trailing_der(size_t *len, struct st_policy *p)
{
	(void)p;
	return append(std_csr(k_p256, len), len, "junk", 4);
}

static uint8_t *bad_trailing_pem(size_t *len, struct st_policy *p)
{
	size_t n;
	uint8_t *der = std_csr(k_p256, &n), *pem;

	(void)p;
	pem = to_pem(der, n, "CERTIFICATE REQUEST", len);
	free(der);
	return append(pem, len, "\nrm -rf /\n", 10);
}

static uint8_t *bad_truncated(size_t *len, struct st_policy *p)
{
	uint8_t *der = std_csr(k_p256, len);

	(void)p;
	*len -= 10;
	return der;
}

static uint8_t *bad_version(size_t *len, struct st_policy *p)
{
	uint8_t *der = std_csr(k_p256, len);
	struct parts pt;
	uint8_t *v;

	(void)p;
	split(der, &pt);
	/* The INTEGER right after the info's header: 02 01 00 -> 02 01 02. */
	v = (uint8_t *)pt.info + hdr_len(pt.info);
	assert_memory_equal(v, "\x02\x01\x00", 3);
	v[2] = 2;
	return der;
}

static uint8_t *bad_rsa2048(size_t *len, struct st_policy *p)
{
	(void)p;
	return std_csr(k_rsa2048, len);
}

static uint8_t *bad_rsa1024_default(size_t *len, struct st_policy *p)
{
	(void)p;
	return std_csr(k_rsa1024, len);
}

static uint8_t *bad_rsa1024(size_t *len, struct st_policy *p)
{
	p->key_algs |= ST_KEY_RSA2048;
	return std_csr(k_rsa1024, len);
}

static uint8_t *bad_p384(size_t *len, struct st_policy *p)
{
	(void)p;
	return std_csr(k_p384, len);
}

static uint8_t *bad_secp256k1(size_t *len, struct st_policy *p)
{
	(void)p;
	return std_csr(k_k256, len);
}

static uint8_t *bad_ed25519_key(size_t *len, struct st_policy *p)
{
	static const struct ent subj[] = { STD_SUBJECT, END };

	(void)p;
	return csr_with(k_ed25519, subj, NULL, len);
}

static uint8_t *bad_point(size_t *len, struct st_policy *p)
{
	static const uint8_t prefix[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03,
					  0x01, 0x07, 0x03, 0x42, 0x00, 0x04 };
	uint8_t *der = std_csr(k_p256, len), *pt;

	(void)p;
	pt = memmem(der, *len, prefix, sizeof(prefix));
	assert_non_null(pt);
	/* Changing Y's last bit leaves x valid but puts (x, y) off the curve. */
	pt[sizeof(prefix) + 63] ^= 0x01;
	return der;
}

static uint8_t *bad_sha1(size_t *len, struct st_policy *p)
{
	static const struct ent subj[] = { STD_SUBJECT, END };

	(void)p;
	return csr_with(k_p256, subj, EVP_sha1(), len);
}

static uint8_t *bad_sha512(size_t *len, struct st_policy *p)
{
	static const struct ent subj[] = { STD_SUBJECT, END };

	(void)p;
	return csr_with(k_p256, subj, EVP_sha512(), len);
}

static uint8_t *bad_rsa_sig(size_t *len, struct st_policy *p)
{
	p->key_algs |= ST_KEY_RSA2048;
	return std_csr(k_rsa2048, len);
}

static uint8_t *bad_ed25519_sig(size_t *len, struct st_policy *p)
{
	static const struct ent subj[] = { STD_SUBJECT, END };

	p->key_algs |= ST_KEY_ED25519;
	return csr_with(k_ed25519, subj, NULL, len);
}

static uint8_t *bad_sigalg_params(size_t *len, struct st_policy *p)
{
	/* ecdsa-with-SHA256 followed by a NULL parameter. */
	static const uint8_t alg[] = { 0x30, 0x0c, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
				       0x3d, 0x04, 0x03, 0x02, 0x05, 0x00 };

	(void)p;
	return with_alg(alg, sizeof(alg), len);
}

static uint8_t *bad_signature(size_t *len, struct st_policy *p)
{
	uint8_t *der = std_csr(k_p256, len);

	(void)p;
	/* The last octet is s's lowest; flipping it keeps the DER valid. */
	der[*len - 1] ^= 0x01;
	return der;
}

static uint8_t *bad_signature_der(size_t *len, struct st_policy *p)
{
	static const uint8_t sig[] = { 0x03, 0x03, 0x00, 0x30, 0x00 };
	struct parts pt;
	size_t n;
	uint8_t *der = std_csr(k_p256, &n), *out;

	(void)p;
	split(der, &pt);
	out = rewrap(pt.info, pt.info_len, pt.alg, pt.alg_len, sig, sizeof(sig), len);
	free(der);
	return out;
}

#define SUBJECT_CASE(fn, ...)                                                                \
	static uint8_t *fn(size_t *len, struct st_policy *p)                                 \
	{                                                                                    \
		static const struct ent subj[] = { __VA_ARGS__, END };                  \
		(void)p;                                                                     \
		return csr_with(k_p256, subj, EVP_sha256(), len);                            \
	}

SUBJECT_CASE(bad_extra_o, STD_SUBJECT, { "O", "Acme Inc", 0, 0, 0 })
SUBJECT_CASE(bad_extra_serial, STD_SUBJECT, { "serialNumber", "1234", 0, 0, 0 })
SUBJECT_CASE(bad_extra_email, { "emailAddress", "a@b.c", 0, 0, 0 }, STD_SUBJECT)
SUBJECT_CASE(bad_dup_cn, STD_SUBJECT, { "CN", DEV_ID, 0, 0, 0 })
SUBJECT_CASE(bad_multi_rdn, { "CN", DEV_ID, 0, 0, 0 }, { "OU", FACTORY, 0, 0, -1 })
SUBJECT_CASE(bad_no_cn, { "OU", FACTORY, 0, 0, 0 })
SUBJECT_CASE(bad_cn, { "CN", "8b1f5a4e-0000-0000-0000-000000000000", 0, 0, 0 },
	     { "OU", FACTORY, 0, 0, 0 })
SUBJECT_CASE(bad_no_ou, { "CN", DEV_ID, 0, 0, 0 })
SUBJECT_CASE(bad_ou, { "CN", DEV_ID, 0, 0, 0 }, { "OU", "other-factory", 0, 0, 0 })
SUBJECT_CASE(bad_bc_unexpected, STD_SUBJECT, { "businessCategory", "production", 0, 0, 0 })
SUBJECT_CASE(bad_bmp, { "CN", "\0d\0e\0v", V_ASN1_BMPSTRING, 6, 0 },
	     { "OU", FACTORY, 0, 0, 0 })
SUBJECT_CASE(bad_t61, STD_SUBJECT, { "businessCategory", "production", V_ASN1_T61STRING, 0, 0 })
SUBJECT_CASE(bad_printable, { "CN", "dev_1", V_ASN1_PRINTABLESTRING, 0, 0 },
	     { "OU", FACTORY, 0, 0, 0 })
SUBJECT_CASE(bad_control, { "CN", "dev\x01", V_ASN1_UTF8STRING, 0, 0 },
	     { "OU", FACTORY, 0, 0, 0 })
/* OpenSSL checks the bound only for MBSTRING types, so a plain UTF8String gets through. */
SUBJECT_CASE(bad_long_cn,
	     { "CN", "0123456789012345678901234567890123456789012345678901234567890123x",
	       V_ASN1_UTF8STRING, 0, 0 },
	     { "OU", FACTORY, 0, 0, 0 })

/* Signs a crafted certificationRequestInfo with the P-256 key and wraps it as a CSR. */
static uint8_t *resign(const uint8_t *info, size_t ilen, size_t *len)
{
	static const uint8_t alg[] = { 0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48,
				       0xce, 0x3d, 0x04, 0x03, 0x02 };
	uint8_t sig[3 + 80], md[32];
	size_t siglen = sizeof(sig) - 3;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(k_p256, NULL);

	assert_non_null(ctx);
	assert_int_equal(EVP_Digest(info, ilen, md, NULL, EVP_sha256(), NULL), 1);
	assert_int_equal(EVP_PKEY_sign_init(ctx), 1);
	assert_int_equal(EVP_PKEY_sign(ctx, sig + 3, &siglen, md, sizeof(md)), 1);
	EVP_PKEY_CTX_free(ctx);
	sig[0] = 0x03;
	sig[1] = (uint8_t)(siglen + 1);
	sig[2] = 0;
	return rewrap(info, ilen, alg, sizeof(alg), sig, siglen + 3, len);
}

/* OpenSSL refuses to encode invalid UTF-8, so a placeholder is patched and re-signed. */
static uint8_t *bad_utf8(size_t *len, struct st_policy *p)
{
	static const struct ent subj[] = { { "CN", DEV_ID, 0, 0, 0 },
					   { "OU", "fabXY", V_ASN1_UTF8STRING, 0, 0 },
					   END };
	struct parts pt;
	size_t n;
	uint8_t *der = csr_with(k_p256, subj, EVP_sha256(), &n), *at, *out;

	(void)p;
	split(der, &pt);
	at = memmem(der, n, "fabXY", 5);
	assert_non_null(at);
	at[3] = 0xc3;
	at[4] = 0x28;
	out = resign(pt.info, pt.info_len, len);
	free(der);
	return out;
}

static uint8_t *bad_bc_missing(size_t *len, struct st_policy *p)
{
	p->production = 1;
	return std_csr(k_p256, len);
}

static uint8_t *bad_bc_value(size_t *len, struct st_policy *p)
{
	static const struct ent subj[] = { STD_SUBJECT,
					   { "businessCategory", "staging", 0, 0, 0 },
					   END };

	p->production = 1;
	return csr_with(k_p256, subj, EVP_sha256(), len);
}

/* A CSR requesting the extensions given as OpenSSL config strings (nid, value). */
static uint8_t *csr_with_exts(const int *nids, const char *const *values, int n, size_t *len)
{
	static const struct ent subj[] = { STD_SUBJECT, END };
	STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
	X509_REQ *req = new_req(k_p256, subj);
	X509_EXTENSION *ext;
	int i;

	for (i = 0; i < n; i++) {
		ext = X509V3_EXT_conf_nid(NULL, NULL, nids[i], values[i]);
		assert_non_null(ext);
		sk_X509_EXTENSION_push(exts, ext);
	}
	assert_int_equal(X509_REQ_add_extensions(req, exts), 1);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	return finish(req, k_p256, EVP_sha256(), len);
}

static uint8_t *bad_req_ca(size_t *len, struct st_policy *p)
{
	static const int nids[] = { NID_basic_constraints };
	static const char *const vals[] = { "critical,CA:TRUE" };

	(void)p;
	return csr_with_exts(nids, vals, 1, len);
}

static uint8_t *bad_req_keycertsign(size_t *len, struct st_policy *p)
{
	static const int nids[] = { NID_key_usage };
	static const char *const vals[] = { "critical,digitalSignature,keyCertSign" };

	(void)p;
	return csr_with_exts(nids, vals, 1, len);
}

static uint8_t *bad_ext_twice(size_t *len, struct st_policy *p)
{
	static const int nids[] = { NID_subject_alt_name, NID_subject_alt_name };
	static const char *const vals[] = { "DNS:a.example", "DNS:b.example" };

	(void)p;
	return csr_with_exts(nids, vals, 2, len);
}

static uint8_t *bad_challenge(size_t *len, struct st_policy *p)
{
	static const struct ent subj[] = { STD_SUBJECT, END };
	X509_REQ *req = new_req(k_p256, subj);

	(void)p;
	assert_int_equal(X509_REQ_add1_attr_by_NID(req, NID_pkcs9_challengePassword, MBSTRING_ASC,
						   (const unsigned char *)"secret", -1),
			 1);
	return finish(req, k_p256, EVP_sha256(), len);
}

static uint8_t *bad_attribute(size_t *len, struct st_policy *p)
{
	static const struct ent subj[] = { STD_SUBJECT, END };
	X509_REQ *req = new_req(k_p256, subj);

	(void)p;
	assert_int_equal(X509_REQ_add1_attr_by_NID(req, NID_pkcs9_unstructuredName, MBSTRING_ASC,
						   (const unsigned char *)"board", -1),
			 1);
	return finish(req, k_p256, EVP_sha256(), len);
}

static const struct bad bads[] = {
	{ "empty input", bad_empty, ST_E_CSR_EMPTY, "empty" },
	{ "oversize", bad_too_large, ST_E_CSR_TOO_LARGE, "8192" },
	{ "non-PEM garbage", bad_garbage, ST_E_CSR_FORMAT, "PEM" },
	{ "bad base64 in PEM", bad_pem_base64, ST_E_CSR_PEM, "base64" },
	{ "PEM label CERTIFICATE", bad_pem_label, ST_E_CSR_PEM_LABEL, "\"CERTIFICATE\"" },
	{ "two PEM blocks", bad_two_pem, ST_E_CSR_MULTIPLE, "more than one" },
	{ "trailing garbage after DER", bad_trailing_der, ST_E_CSR_TRAILING, "4 bytes" },
	{ "trailing garbage after PEM", bad_trailing_pem, ST_E_CSR_TRAILING, "PEM block" },
	{ "truncated DER", bad_truncated, ST_E_CSR_DER, "truncated" },
	{ "version 2", bad_version, ST_E_CSR_VERSION, "version is 2" },
	{ "RSA-2048 key", bad_rsa2048, ST_E_CSR_KEY_TYPE,
	  "key is RSA-2048, policy requires EC prime256v1" },
	{ "RSA-1024 key", bad_rsa1024_default, ST_E_CSR_KEY_TYPE,
	  "key is RSA-1024, policy requires EC prime256v1" },
	{ "RSA-1024 key under an RSA policy", bad_rsa1024, ST_E_CSR_KEY_SIZE, "RSA-1024" },
	{ "P-384 key when P-256 is required", bad_p384, ST_E_CSR_KEY_CURVE,
	  "key is EC secp384r1, policy requires EC prime256v1" },
	{ "secp256k1 key", bad_secp256k1, ST_E_CSR_KEY_CURVE_UNSUPPORTED, "secp256k1" },
	{ "Ed25519 key", bad_ed25519_key, ST_E_CSR_KEY_TYPE, "key is Ed25519" },
	{ "EC point off the curve", bad_point, ST_E_CSR_KEY_POINT, "not on the curve" },
	{ "ecdsa-with-SHA512", bad_sha512, ST_E_CSR_SIGALG, "ecdsa-with-SHA512" },
	{ "SHA-1 signature", bad_sha1, ST_E_CSR_SIGALG_SHA1, "ecdsa-with-SHA1" },
	{ "RSA signature", bad_rsa_sig, ST_E_CSR_SIGALG_RSA, "RSA-SHA256" },
	{ "Ed25519 signature", bad_ed25519_sig, ST_E_CSR_SIGALG_EDDSA, "ED25519" },
	{ "ECDSA with NULL parameters", bad_sigalg_params, ST_E_CSR_SIGALG_PARAMS, "parameters" },
	{ "corrupted signature", bad_signature, ST_E_CSR_SIGNATURE, "self-signature" },
	{ "signature not ECDSA-Sig-Value", bad_signature_der, ST_E_CSR_SIGNATURE_DER,
	  "ECDSA-Sig-Value" },
	{ "extra attribute O", bad_extra_o, ST_E_CSR_SUBJECT_EXTRA, "O=\"Acme Inc\"" },
	{ "extra attribute serialNumber", bad_extra_serial, ST_E_CSR_SUBJECT_EXTRA,
	  "serialNumber=\"1234\"" },
	{ "extra attribute emailAddress", bad_extra_email, ST_E_CSR_SUBJECT_EXTRA,
	  "emailAddress" },
	{ "duplicated CN", bad_dup_cn, ST_E_CSR_SUBJECT_DUP, "CN twice" },
	{ "multi-valued RDN", bad_multi_rdn, ST_E_CSR_SUBJECT_MULTI_RDN, "multi-valued RDN" },
	{ "missing CN", bad_no_cn, ST_E_CSR_CN_MISSING, "no CN; expected CN=\"" DEV_ID },
	{ "CN not the device id", bad_cn, ST_E_CSR_CN_MISMATCH,
	  "CN is \"8b1f5a4e-0000-0000-0000-000000000000\"; expected the device id \"" DEV_ID },
	{ "missing OU", bad_no_ou, ST_E_CSR_OU_MISSING, "no OU; expected OU=\"" FACTORY },
	{ "wrong OU", bad_ou, ST_E_CSR_OU_MISMATCH,
	  "OU is \"other-factory\"; expected the factory \"" FACTORY },
	{ "businessCategory on non-production", bad_bc_unexpected, ST_E_CSR_BC_UNEXPECTED,
	  "businessCategory=\"production\"" },
	{ "businessCategory missing on production", bad_bc_missing, ST_E_CSR_BC_MISSING,
	  "no businessCategory" },
	{ "businessCategory=staging on production", bad_bc_value, ST_E_CSR_BC_MISMATCH,
	  "\"staging\"" },
	{ "CN as BMPString", bad_bmp, ST_E_CSR_STRING_TYPE, "CN is a BMPString" },
	{ "businessCategory as T61String", bad_t61, ST_E_CSR_STRING_TYPE,
	  "businessCategory is a TeletexString" },
	{ "PrintableString with '_'", bad_printable, ST_E_CSR_PRINTABLE, "CN PrintableString" },
	{ "control character in CN", bad_control, ST_E_CSR_CONTROL_CHAR, "CN \"dev\\x01\"" },
	{ "invalid UTF-8 in OU", bad_utf8, ST_E_CSR_UTF8, "OU \"fab\\xc3(\"" },
	{ "CN of 65 characters", bad_long_cn, ST_E_CSR_UPPER_BOUND, "CN is 65 characters" },
	{ "CA:TRUE requested", bad_req_ca, ST_E_CSR_REQ_CA, "CA:TRUE" },
	{ "keyCertSign requested", bad_req_keycertsign, ST_E_CSR_REQ_KEYCERTSIGN, "keyCertSign" },
	{ "extension requested twice", bad_ext_twice, ST_E_CSR_EXTENSION,
	  "subjectAltName is requested twice" },
	{ "challengePassword attribute", bad_challenge, ST_E_CSR_CHALLENGE_PASSWORD,
	  "challengePassword" },
	{ "unstructuredName attribute", bad_attribute, ST_E_CSR_ATTRIBUTE, "unstructuredName" },
};

static void run_bad(void **state)
{
	const struct bad *b = *state;
	struct st_policy p;
	struct st_csr *csr = (struct st_csr *)1;
	char err[512];
	uint8_t *in;
	size_t len;
	int rc;

	st_policy_default(&p);
	in = b->make(&len, &p);
	err[0] = 0;
	rc = st_csr_check(&p, FACTORY, in, len, DEV_ID, &csr, err, sizeof(err));
	print_message("%s: %s: %s\n", b->name, st_errname(rc), err);
	assert_int_equal(rc, b->code);
	assert_null(csr);
	if (!strstr(err, b->field))
		fail_msg("message \"%s\" does not mention \"%s\"", err, b->field);
	free(in);
}

/* The rejection reasons above are distinct codes, not one code reused. */
static void distinct_codes(void **state)
{
	int seen[256] = { 0 };
	size_t i, distinct = 0;

	(void)state;
	for (i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
		assert_true(-bads[i].code > 0 && -bads[i].code < 256);
		if (!seen[-bads[i].code]++)
			distinct++;
	}
	print_message("%zu bad CSRs, %zu distinct codes\n", sizeof(bads) / sizeof(bads[0]),
		      distinct);
	assert_true(distinct >= 30);
}

/* ---- good CSRs ---- */

static void check_ok(const struct st_policy *p, const uint8_t *in, size_t len, EVP_PKEY *key,
		     enum st_key_alg alg)
{
	struct st_csr *csr = NULL;
	unsigned char *spki = NULL;
	char err[512] = "";
	int n, rc;

	rc = st_csr_check(p, FACTORY, in, len, DEV_ID, &csr, err, sizeof(err));
	if (rc != 0)
		fail_msg("rejected: %s: %s", st_errname(rc), err);
	assert_non_null(csr);
	n = i2d_PUBKEY(key, &spki);
	assert_int_equal((size_t)n, csr->spki_len);
	assert_memory_equal(spki, csr->spki, csr->spki_len);
	assert_int_equal(csr->key_alg, alg);
	assert_true(csr->pubkey > csr->spki && csr->pubkey + csr->pubkey_len ==
						     csr->spki + csr->spki_len);
	OPENSSL_free(spki);
	st_csr_free(csr);
}

static void good_der_and_pem(void **state)
{
	struct st_policy p;
	size_t n, pn;
	uint8_t *der = std_csr(k_p256, &n), *pem;

	(void)state;
	st_policy_default(&p);
	check_ok(&p, der, n, k_p256, ST_KEY_EC_P256);
	pem = to_pem(der, n, "CERTIFICATE REQUEST", &pn);
	check_ok(&p, pem, pn, k_p256, ST_KEY_EC_P256);
	/* Whitespace around the block and CRLF line ends are fine. */
	free(pem);
	pem = to_pem(der, n, "NEW CERTIFICATE REQUEST", &pn);
	pem = append(pem, &pn, " \r\n\t\n", 5);
	check_ok(&p, pem, pn, k_p256, ST_KEY_EC_P256);
	free(pem);
	/* The DER with a trailing newline, as a file written by a shell tool would have. */
	der = append(der, &n, "\n", 1);
	check_ok(&p, der, n, k_p256, ST_KEY_EC_P256);
	free(der);
}

static void good_crlf_pem(void **state)
{
	struct st_policy p;
	size_t n, pn, i, o = 0;
	uint8_t *der = std_csr(k_p256, &n), *pem, *crlf;

	(void)state;
	st_policy_default(&p);
	pem = to_pem(der, n, "CERTIFICATE REQUEST", &pn);
	crlf = malloc(pn * 2);
	for (i = 0; i < pn; i++) {
		if (pem[i] == '\n')
			crlf[o++] = '\r';
		crlf[o++] = pem[i];
	}
	check_ok(&p, crlf, o, k_p256, ST_KEY_EC_P256);
	free(crlf);
	free(pem);
	free(der);
}

static void good_production(void **state)
{
	static const struct ent subj[] = { STD_SUBJECT,
					   { "businessCategory", "production", 0, 0, 0 },
					   END };
	struct st_policy p;
	size_t n;
	uint8_t *der = csr_with(k_p256, subj, EVP_sha256(), &n);

	(void)state;
	st_policy_default(&p);
	p.production = 1;
	check_ok(&p, der, n, k_p256, ST_KEY_EC_P256);
	free(der);
}

static void good_p384_allowed(void **state)
{
	static const struct ent subj[] = { STD_SUBJECT, END };
	struct st_policy p;
	size_t n;
	uint8_t *der = csr_with(k_p384, subj, EVP_sha384(), &n);

	(void)state;
	st_policy_default(&p);
	p.key_algs = ST_KEY_EC_P256 | ST_KEY_EC_P384;
	check_ok(&p, der, n, k_p384, ST_KEY_EC_P384);
	free(der);
}

/* The device tool's CSR: PrintableString is accepted as well as UTF8String, OU before CN is
 * fine, and its harmless requested extensions are ignored (never copied). */
static void good_device_tool_style(void **state)
{
	static const struct ent subj[] = { { "OU", FACTORY, V_ASN1_PRINTABLESTRING, 0, 0 },
					   { "CN", DEV_ID, V_ASN1_UTF8STRING, 0, 0 },
					   END };
	STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
	struct st_policy p;
	X509_REQ *req = new_req(k_p256, subj);
	size_t n;
	uint8_t *der;

	(void)state;
	sk_X509_EXTENSION_push(exts, X509V3_EXT_conf_nid(NULL, NULL, NID_key_usage,
							 "critical,digitalSignature"));
	sk_X509_EXTENSION_push(exts, X509V3_EXT_conf_nid(NULL, NULL, NID_ext_key_usage,
							 "critical,clientAuth"));
	sk_X509_EXTENSION_push(exts, X509V3_EXT_conf_nid(NULL, NULL, NID_basic_constraints,
							 "CA:FALSE"));
	X509_REQ_add_extensions(req, exts);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	der = finish(req, k_p256, EVP_sha256(), &n);
	st_policy_default(&p);
	check_ok(&p, der, n, k_p256, ST_KEY_EC_P256);
	free(der);
}

/* The factory comes from the policy when it names one, else from the CA. */
static void policy_factory_wins(void **state)
{
	static const struct ent subj[] = { { "CN", DEV_ID, 0, 0, 0 },
					   { "OU", "line-2", 0, 0, 0 },
					   END };
	struct st_policy p;
	struct st_csr *csr = NULL;
	char err[256];
	size_t n;
	uint8_t *der = csr_with(k_p256, subj, EVP_sha256(), &n);

	(void)state;
	st_policy_default(&p);
	strcpy(p.factory, "line-2");
	assert_int_equal(st_csr_check(&p, FACTORY, der, n, DEV_ID, &csr, err, sizeof(err)), 0);
	st_csr_free(csr);
	p.factory[0] = 0;
	assert_int_equal(st_csr_check(&p, FACTORY, der, n, DEV_ID, &csr, err, sizeof(err)),
			 ST_E_CSR_OU_MISMATCH);
	assert_null(csr);
	/* A device id the station itself got wrong is its own error, not the CSR's. */
	assert_int_equal(st_csr_check(&p, FACTORY, der, n, "", &csr, err, sizeof(err)),
			 ST_E_INVAL);
	assert_int_equal(st_csr_check(&p, "", der, n, DEV_ID, &csr, err, sizeof(err)),
			 ST_E_INVAL);
	free(der);
}

/* A UUID device id has one spelling: any case becomes lower case; other ids stay as they
 * are, and a UUID in the CSR's CN matches the (normalised) device id in either case, while
 * anything else must match exactly. */
static void uuid_device_ids(void **state)
{
	static const struct {
		const char *in, *out;
		int uuid;
	} ids[] = {
		{ DEV_ID, DEV_ID, 1 },
		{ "8B1F5A4E-2C3D-4E5F-9A0B-1C2D3E4F5A6B", DEV_ID, 1 },
		{ "8b1F5a4E-2c3D-4e5F-9A0b-1c2D3e4F5a6B", DEV_ID, 1 },
		{ "SN10-ABCDEF", "SN10-ABCDEF", 0 },
		{ "8B1F5A4E-2C3D-4E5F-9A0B-1C2D3E4F5A6", "8B1F5A4E-2C3D-4E5F-9A0B-1C2D3E4F5A6", 0 },
		{ "8B1F5A4E-2C3D-4E5F-9A0B-1C2D3E4F5A6BB", "8B1F5A4E-2C3D-4E5F-9A0B-1C2D3E4F5A6BB", 0 },
		{ "8B1F5A4E2C3D4E5F9A0B1C2D3E4F5A6B", "8B1F5A4E2C3D4E5F9A0B1C2D3E4F5A6B", 0 },
		{ "{8B1F5A4E-2C3D-4E5F-9A0B-1C2D3E4F5A6B}", "{8B1F5A4E-2C3D-4E5F-9A0B-1C2D3E4F5A6B}",
		  0 },
		{ "8G1F5A4E-2C3D-4E5F-9A0B-1C2D3E4F5A6B", "8G1F5A4E-2C3D-4E5F-9A0B-1C2D3E4F5A6B", 0 },
		{ "ABC", "ABC", 0 },
		{ "", "", 0 },
	};
	static const char *const cns[] = { DEV_ID, "8B1F5A4E-2C3D-4E5F-9A0B-1C2D3E4F5A6B",
					    "8b1f5a4e-2C3D-4e5f-9A0B-1c2d3e4f5a6b" };
	struct st_policy p;
	struct st_csr *csr = NULL;
	char buf[64], err[256];
	size_t n;

	(void)state;
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		snprintf(buf, sizeof(buf), "%s", ids[i].in);
		assert_int_equal(st_device_id_normalize(buf), ids[i].uuid);
		assert_string_equal(buf, ids[i].out);
	}
	assert_int_equal(st_device_id_normalize(NULL), 0);
	st_policy_default(&p);
	for (size_t i = 0; i < sizeof(cns) / sizeof(cns[0]); i++) {
		const struct ent subj[] = { { "CN", cns[i], 0, 0, 0 }, { "OU", FACTORY, 0, 0, 0 },
					    END };
		uint8_t *der = csr_with(k_p256, subj, EVP_sha256(), &n);

		if (st_csr_check(&p, FACTORY, der, n, DEV_ID, &csr, err, sizeof(err)) != 0)
			fail_msg("CN %s: %s", cns[i], err);
		st_csr_free(csr);
		/* Another UUID, in any case, is another device. */
		assert_int_equal(st_csr_check(&p, FACTORY, der, n,
					      "8b1f5a4e-2c3d-4e5f-9a0b-1c2d3e4f5a6c", &csr, err,
					      sizeof(err)),
				 ST_E_CSR_CN_MISMATCH);
		free(der);
	}
	/* Ids that are not UUIDs keep their case: SN10-abc is not SN10-ABC. */
	{
		const struct ent subj[] = { { "CN", "SN10-ABC", 0, 0, 0 },
					    { "OU", FACTORY, 0, 0, 0 },
					    END };
		uint8_t *der = csr_with(k_p256, subj, EVP_sha256(), &n);

		assert_int_equal(st_csr_check(&p, FACTORY, der, n, "SN10-abc", &csr, err,
					      sizeof(err)),
				 ST_E_CSR_CN_MISMATCH);
		assert_int_equal(st_csr_check(&p, FACTORY, der, n, "SN10-ABC", &csr, err,
					      sizeof(err)),
				 0);
		st_csr_free(csr);
		free(der);
	}
}

/* Every prefix of a good CSR, DER or PEM, is rejected cleanly, never accepted and never a
 * crash. (The PEM ones may end in whitespace after the END line: those are accepted.) */
static void every_truncation_rejected(void **state)
{
	struct st_policy p;
	struct st_csr *csr = NULL;
	char err[256];
	size_t n, pn, i, end;
	uint8_t *der = std_csr(k_p256, &n), *pem, *copy;

	(void)state;
	st_policy_default(&p);
	for (i = 0; i < n; i++) {
		/* A copy of exactly i bytes, so ASan sees any read past the end. */
		copy = malloc(i ? i : 1);
		memcpy(copy, der, i);
		assert_true(st_csr_check(&p, FACTORY, copy, i, DEV_ID, &csr, err, sizeof(err)) <
			    0);
		assert_null(csr);
		free(copy);
	}
	pem = to_pem(der, n, "CERTIFICATE REQUEST", &pn);
	end = (size_t)((uint8_t *)strstr((char *)pem, "-----END CERTIFICATE REQUEST-----") -
		       pem) + 33;
	for (i = 0; i < end; i++) {
		copy = malloc(i ? i : 1);
		memcpy(copy, pem, i);
		assert_true(st_csr_check(&p, FACTORY, copy, i, DEV_ID, &csr, err, sizeof(err)) <
			    0);
		assert_null(csr);
		free(copy);
	}
	free(pem);
	free(der);
}

static int group_setup(void **state)
{
	(void)state;
	k_p256 = EVP_EC_gen("prime256v1");
	k_p384 = EVP_EC_gen("secp384r1");
	k_k256 = EVP_EC_gen("secp256k1");
	k_rsa1024 = EVP_RSA_gen(1024);
	k_rsa2048 = EVP_RSA_gen(2048);
	k_ed25519 = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	return !(k_p256 && k_p384 && k_k256 && k_rsa1024 && k_rsa2048 && k_ed25519);
}

static int group_teardown(void **state)
{
	(void)state;
	EVP_PKEY_free(k_p256);
	EVP_PKEY_free(k_p384);
	EVP_PKEY_free(k_k256);
	EVP_PKEY_free(k_rsa1024);
	EVP_PKEY_free(k_rsa2048);
	EVP_PKEY_free(k_ed25519);
	return 0;
}

int main(void)
{
	enum { NBAD = sizeof(bads) / sizeof(bads[0]) };
	static const struct CMUnitTest fixed[] = {
		cmocka_unit_test(distinct_codes),
		cmocka_unit_test(good_der_and_pem),
		cmocka_unit_test(good_crlf_pem),
		cmocka_unit_test(good_production),
		cmocka_unit_test(good_p384_allowed),
		cmocka_unit_test(good_device_tool_style),
		cmocka_unit_test(policy_factory_wins),
		cmocka_unit_test(uuid_device_ids),
		cmocka_unit_test(every_truncation_rejected),
	};
	struct CMUnitTest tests[NBAD + sizeof(fixed) / sizeof(fixed[0])];
	size_t i;

	for (i = 0; i < NBAD; i++) {
		memset(&tests[i], 0, sizeof(tests[i]));
		tests[i].name = bads[i].name;
		tests[i].test_func = run_bad;
		tests[i].initial_state = (void *)&bads[i];
	}
	for (i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		tests[NBAD + i] = fixed[i];
	return _cmocka_run_group_tests("policy", tests, sizeof(tests) / sizeof(tests[0]),
				       group_setup, group_teardown);
}
