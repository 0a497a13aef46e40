#include "ca.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "err.h"

/* Reads every certificate of a PEM file; an empty stack when it holds none. */
int st_ca_read_certs(const char *path, int min, STACK_OF(X509) **out, char *err,
		     size_t errlen)
{
	STACK_OF(X509) *sk = NULL;
	BIO *bio = NULL;
	X509 *x;
	unsigned long e;
	int rc = 0;

	*out = NULL;
	bio = BIO_new_file(path, "r");
	if (!bio) {
		rc = st_errf(err, errlen, ST_E_IO, "cannot open %s: %s", path,
			     strerror(errno ? errno : ENOENT));
		goto out;
	}
	sk = sk_X509_new_null();
	if (!sk) {
		rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory reading %s", path);
		goto out;
	}
	while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
		if (!sk_X509_push(sk, x)) {
			X509_free(x);
			rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory reading %s", path);
			goto out;
		}
	}
	/* The loop ends at the end of the file (PEM_R_NO_START_LINE) or at garbage. */
	e = ERR_peek_last_error();
	if (e && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
		rc = st_errf(err, errlen, ST_E_ISSUE_CA_CERT,
			     "%s: certificate %d is malformed PEM or DER", path,
			     sk_X509_num(sk) + 1);
		goto out;
	}
	if (sk_X509_num(sk) < min) {
		rc = st_errf(err, errlen, ST_E_NOTFOUND, "%s: no PEM certificate found", path);
		goto out;
	}
	*out = sk;
	sk = NULL;
out:
	ERR_clear_error();
	BIO_free(bio);
	sk_X509_pop_free(sk, X509_free);
	return rc;
}

static int read_one(const char *path, X509 **out, char *err, size_t errlen)
{
	STACK_OF(X509) *sk;
	int rc;

	*out = NULL;
	rc = st_ca_read_certs(path, 0, &sk, err, errlen);
	if (rc < 0)
		return rc;
	if (sk_X509_num(sk) != 1) {
		rc = st_errf(err, errlen, ST_E_ISSUE_CA_CERT,
			     "%s holds %d certificates; expected exactly one", path,
			     sk_X509_num(sk));
		sk_X509_pop_free(sk, X509_free);
		return rc;
	}
	*out = sk_X509_pop(sk);
	sk_X509_free(sk);
	return 0;
}

static int asn1_time_to_time_t(const ASN1_TIME *t, time_t *out)
{
	struct tm tm;

	if (!t || !ASN1_TIME_to_tm(t, &tm))
		return -1;
	*out = timegm(&tm);
	return 0;
}

static int extract_ou(struct st_ca *ca, const char *name, char *err, size_t errlen)
{
	X509_NAME *subj = X509_get_subject_name(ca->cert);
	const ASN1_STRING *v;
	unsigned char *utf8 = NULL;
	int n = 0, idx = -1, found = -1, len;

	while ((idx = X509_NAME_get_index_by_NID(subj, NID_organizationalUnitName, idx)) >= 0) {
		found = idx;
		n++;
	}
	if (n != 1)
		return st_errf(err, errlen, ST_E_ISSUE_CA_CERT,
			       "%s: subject has %d OUs; expected exactly one (the factory)", name,
			       n);
	v = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, found));
	len = ASN1_STRING_to_UTF8(&utf8, v);
	if (len <= 0 || len > ST_POLICY_MAX_FACTORY || memchr(utf8, 0, (size_t)len)) {
		OPENSSL_free(utf8);
		ERR_clear_error();
		return st_errf(err, errlen, ST_E_ISSUE_CA_CERT,
			       "%s: subject OU is empty, unreadable or longer than %d bytes", name,
			       ST_POLICY_MAX_FACTORY);
	}
	memcpy(ca->ou, utf8, (size_t)len);
	ca->ou[len] = 0;
	OPENSSL_free(utf8);
	return 0;
}

static int extract_key(struct st_ca *ca, const char *name, char *err, size_t errlen)
{
	const unsigned char *pk;
	char group[64];
	size_t glen = 0;
	int pklen, curve;

	ca->pkey = X509_get_pubkey(ca->cert);
	if (!ca->pkey || EVP_PKEY_get_base_id(ca->pkey) != EVP_PKEY_EC)
		return st_errf(err, errlen, ST_E_ISSUE_CA_KEY,
			       "%s: key is %s; expected EC P-256, P-384 or P-521", name,
			       ca->pkey ? OBJ_nid2sn(EVP_PKEY_get_base_id(ca->pkey)) : "unreadable");
	if (!EVP_PKEY_get_utf8_string_param(ca->pkey, OSSL_PKEY_PARAM_GROUP_NAME, group,
					    sizeof(group), &glen))
		return st_errf(err, errlen, ST_E_ISSUE_CA_KEY,
			       "%s: EC key has no named curve; expected P-256, P-384 or P-521", name);
	curve = st_ec_curve_from_nid(OBJ_sn2nid(group));
	if (curve < 0)
		return st_errf(err, errlen, ST_E_ISSUE_CA_KEY,
			       "%s: key is EC %s; expected P-256, P-384 or P-521", name, group);
	ca->curve = (enum st_ec_curve)curve;
	if (!X509_PUBKEY_get0_param(NULL, &pk, &pklen, NULL, X509_get_X509_PUBKEY(ca->cert)) ||
	    (size_t)pklen != 1 + 2 * st_ec_field_len(ca->curve) || pk[0] != 0x04)
		return st_errf(err, errlen, ST_E_ISSUE_CA_KEY,
			       "%s: public key is not an uncompressed EC point", name);
	memcpy(ca->point, pk, (size_t)pklen);
	ca->point_len = (size_t)pklen;
	return 0;
}

int st_ca_from_x509(X509 *cert, STACK_OF(X509) *chain, X509 *root, const char *name,
		    struct st_ca **out, char *err, size_t errlen)
{
	const ASN1_OCTET_STRING *ski;
	struct st_ca *ca = NULL;
	unsigned char *der = NULL;
	uint32_t ku;
	int rc = 0, len, i;

	*out = NULL;
	if (!name)
		name = "CA certificate";
	ca = calloc(1, sizeof(*ca));
	if (!ca)
		return st_errf(err, errlen, ST_E_NOMEM, "out of memory loading the CA");
	if (!X509_up_ref(cert)) {
		rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory loading the CA");
		goto out;
	}
	ca->cert = cert;
	ca->chain = chain ? X509_chain_up_ref(chain) : sk_X509_new_null();
	if (!ca->chain || (root && !X509_up_ref(root))) {
		rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory loading the CA");
		goto out;
	}
	ca->root = root;

	/* X509_get_extension_flags() also parses the extensions; a malformed one is fatal. */
	if (X509_get_extension_flags(cert) & EXFLAG_INVALID) {
		rc = st_errf(err, errlen, ST_E_ISSUE_CA_CERT, "%s: has malformed extensions",
			     name);
		goto out;
	}
	if (!(X509_get_extension_flags(cert) & EXFLAG_CA)) {
		rc = st_errf(err, errlen, ST_E_ISSUE_CA_NOT_CA,
			     "%s: basicConstraints is not CA:TRUE; expected a CA certificate",
			     name);
		goto out;
	}
	ku = X509_get_key_usage(cert);
	if (ku != UINT32_MAX && !(ku & KU_KEY_CERT_SIGN)) {
		rc = st_errf(err, errlen, ST_E_ISSUE_CA_NOT_CA,
			     "%s: keyUsage lacks keyCertSign; expected a CA certificate", name);
		goto out;
	}
	ski = X509_get0_subject_key_id(cert);
	if (!ski || ASN1_STRING_length(ski) <= 0 || ASN1_STRING_length(ski) > ST_CA_MAX_SKI) {
		rc = st_errf(err, errlen, ST_E_ISSUE_CA_SKI,
			     "%s: has no subjectKeyIdentifier; issued certificates need it for "
			     "their authorityKeyIdentifier", name);
		goto out;
	}
	ca->ski_len = (size_t)ASN1_STRING_length(ski);
	memcpy(ca->ski, ASN1_STRING_get0_data(ski), ca->ski_len);
	rc = extract_ou(ca, name, err, errlen);
	if (rc < 0)
		goto out;
	rc = extract_key(ca, name, err, errlen);
	if (rc < 0)
		goto out;
	if (asn1_time_to_time_t(X509_get0_notBefore(cert), &ca->not_before) < 0 ||
	    asn1_time_to_time_t(X509_get0_notAfter(cert), &ca->not_after) < 0) {
		rc = st_errf(err, errlen, ST_E_ISSUE_CA_CERT, "%s: validity is unreadable", name);
		goto out;
	}
	len = i2d_X509_NAME(X509_get_subject_name(cert), &der);
	if (len <= 0 || len > ST_CA_MAX_SUBJECT) {
		rc = st_errf(err, errlen, ST_E_ISSUE_CA_CERT,
			     "%s: subject is unreadable or longer than %d bytes", name,
			     ST_CA_MAX_SUBJECT);
		goto out;
	}
	ca->subject_der = malloc((size_t)len);
	if (!ca->subject_der) {
		rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory loading the CA");
		goto out;
	}
	memcpy(ca->subject_der, der, (size_t)len);
	ca->subject_der_len = (size_t)len;
	for (i = 0; i < sk_X509_num(ca->chain); i++) {
		if (!(X509_get_extension_flags(sk_X509_value(ca->chain, i)) & EXFLAG_CA)) {
			rc = st_errf(err, errlen, ST_E_ISSUE_CA_NOT_CA,
				     "%s: chain certificate %d is not a CA", name, i + 1);
			goto out;
		}
	}
	*out = ca;
	ca = NULL;
out:
	OPENSSL_free(der);
	ERR_clear_error();
	st_ca_free(ca);
	return rc;
}

int st_ca_load(const char *cert_path, const char *chain_path, const char *root_path,
	       struct st_ca **out, char *err, size_t errlen)
{
	STACK_OF(X509) *chain = NULL;
	X509 *cert = NULL, *root = NULL;
	int rc;

	*out = NULL;
	rc = read_one(cert_path, &cert, err, errlen);
	if (rc < 0)
		goto out;
	if (chain_path) {
		rc = st_ca_read_certs(chain_path, 0, &chain, err, errlen);
		if (rc < 0)
			goto out;
	}
	if (root_path) {
		rc = read_one(root_path, &root, err, errlen);
		if (rc < 0)
			goto out;
	}
	rc = st_ca_from_x509(cert, chain, root, cert_path, out, err, errlen);
out:
	X509_free(cert);
	X509_free(root);
	sk_X509_pop_free(chain, X509_free);
	return rc;
}

void st_ca_free(struct st_ca *ca)
{
	if (!ca)
		return;
	X509_free(ca->cert);
	sk_X509_pop_free(ca->chain, X509_free);
	X509_free(ca->root);
	EVP_PKEY_free(ca->pkey);
	free(ca->subject_der);
	free(ca);
}

int st_ca_match_key(const struct st_ca *ca, EVP_PKEY *pub, char *err, size_t errlen)
{
	char name[256];

	if (pub && EVP_PKEY_eq(ca->pkey, pub) == 1)
		return 0;
	ERR_clear_error();
	X509_NAME_oneline(X509_get_subject_name(ca->cert), name, sizeof(name));
	return st_errf(err, errlen, ST_E_ISSUE_CA_KEY_MISMATCH,
		       "the signing key is not the key of the CA certificate %s", name);
}

int st_ca_match_signer(const struct st_ca *ca, struct drv_signer *signer, char *err,
		       size_t errlen)
{
	EVP_PKEY *pub = drv_signer_public_key(signer);
	int rc;

	rc = st_ca_match_key(ca, pub, err, errlen);
	EVP_PKEY_free(pub);
	return rc;
}

int st_ca_verify_chain(const struct st_ca *ca, time_t now, char *err, size_t errlen)
{
	X509_STORE_CTX *ctx = NULL;
	X509_STORE *store = NULL;
	int rc = 0;

	if (!ca->root)
		return st_errf(err, errlen, ST_E_ISSUE_CA_CERT,
			       "no root certificate to check the CA chain against");
	store = X509_STORE_new();
	ctx = X509_STORE_CTX_new();
	if (!store || !ctx || !X509_STORE_add_cert(store, ca->root) ||
	    !X509_STORE_CTX_init(ctx, store, ca->cert, ca->chain)) {
		rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory checking the CA chain");
		goto out;
	}
	X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_X509_STRICT);
	if (now)
		X509_STORE_CTX_set_time(ctx, 0, now);
	if (X509_verify_cert(ctx) != 1)
		rc = st_errf(err, errlen, ST_E_ISSUE_CA_CHAIN,
			     "CA certificate does not chain to the root: %s",
			     X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
out:
	ERR_clear_error();
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	return rc;
}

static int append_pem(BIO *bio, X509 *x)
{
	return PEM_write_bio_X509(bio, x) == 1 ? 0 : -1;
}

static int bio_to_string(BIO *bio, char **pem, size_t *len)
{
	char *data;
	long n = BIO_get_mem_data(bio, &data);

	*pem = malloc((size_t)n + 1);
	if (!*pem)
		return ST_E_NOMEM;
	memcpy(*pem, data, (size_t)n);
	(*pem)[n] = 0;
	if (len)
		*len = (size_t)n;
	return 0;
}

int st_ca_chain_pem(const struct st_ca *ca, char **pem, size_t *len)
{
	BIO *bio = BIO_new(BIO_s_mem());
	int rc = ST_E_NOMEM, i;

	*pem = NULL;
	if (!bio || append_pem(bio, ca->cert) < 0)
		goto out;
	for (i = 0; i < sk_X509_num(ca->chain); i++) {
		if (append_pem(bio, sk_X509_value(ca->chain, i)) < 0)
			goto out;
	}
	rc = bio_to_string(bio, pem, len);
out:
	BIO_free(bio);
	return rc;
}

int st_ca_root_pem(const struct st_ca *ca, char **pem, size_t *len)
{
	BIO *bio;
	int rc = ST_E_NOMEM;

	*pem = NULL;
	if (!ca->root)
		return ST_E_NOTFOUND;
	bio = BIO_new(BIO_s_mem());
	if (bio && append_pem(bio, ca->root) == 0)
		rc = bio_to_string(bio, pem, len);
	BIO_free(bio);
	return rc;
}
