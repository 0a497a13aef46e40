#include "x509sign.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>

#include "ecdsa.h"
#include "err.h"

int st_x509_pick_alg(struct drv_signer *signer, EVP_PKEY *pub, int *sig_nid, const EVP_MD **md,
		     char *err, size_t errlen)
{
	char group[64];
	size_t glen = 0;
	int curve = -1;

	if (pub && EVP_PKEY_get_base_id(pub) == EVP_PKEY_EC &&
	    EVP_PKEY_get_utf8_string_param(pub, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
					   &glen))
		curve = st_ec_curve_from_nid(OBJ_sn2nid(group));
	if (curve < 0) {
		ERR_clear_error();
		return st_errf(err, errlen, ST_E_ISSUE_CA_KEY,
			       "signing key is not EC on P-256, P-384 or P-521");
	}
	if (signer->hashes || curve == ST_EC_P256) {
		*sig_nid = NID_ecdsa_with_SHA256;
		*md = EVP_sha256();
	} else if (curve == ST_EC_P384) {
		*sig_nid = NID_ecdsa_with_SHA384;
		*md = EVP_sha384();
	} else {
		*sig_nid = NID_ecdsa_with_SHA512;
		*md = EVP_sha512();
	}
	return 0;
}

int st_x509_sign_data(struct drv_signer *signer, void *sess, const EVP_MD *md,
		      const unsigned char *tbs, size_t tbs_len, uint8_t *sig, size_t *siglen,
		      char *err, size_t errlen)
{
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;

	if (signer->hashes)
		return drv_signer_sign(signer, sess, tbs, tbs_len, sig, siglen, err, errlen);
	if (!EVP_Digest(tbs, tbs_len, digest, &dlen, md, NULL)) {
		ERR_clear_error();
		return st_errf(err, errlen, ST_E_CRYPTO, "cannot hash the data to sign");
	}
	return drv_signer_sign(signer, sess, digest, dlen, sig, siglen, err, errlen);
}

/* Attaches a DER signature. Without ASN1_STRING_FLAG_BITS_LEFT OpenSSL would derive the
 * unused-bits count from trailing zero bits of the last octet, corrupting about half of all
 * signatures; with it and a zero count the octets are written as they are. */
static int set_bits(ASN1_BIT_STRING *bs, const uint8_t *sig, size_t siglen)
{
	if (!ASN1_BIT_STRING_set(bs, (unsigned char *)sig, (int)siglen))
		return -1;
	bs->flags &= ~(ASN1_STRING_FLAG_BITS_LEFT | 0x07);
	bs->flags |= ASN1_STRING_FLAG_BITS_LEFT;
	return 0;
}

static int set_alg(const X509_ALGOR *alg, int nid)
{
	return X509_ALGOR_set0((X509_ALGOR *)alg, OBJ_nid2obj(nid), V_ASN1_UNDEF, NULL);
}

/* Signs the certificate x or, when x is NULL, the request req: the two differ only in where
 * the algorithm and the signature sit and in how the TBS part is encoded and verified. */
static int sign_object(X509 *x, X509_REQ *req, struct drv_signer *signer, void *sess,
		       char *err, size_t errlen)
{
	const char *what = x ? "certificate" : "request";
	const ASN1_BIT_STRING *csig;
	const X509_ALGOR *calg;
	unsigned char *tbs = NULL;
	uint8_t sig[DRV_SIGNER_MAX_SIG];
	size_t siglen = 0;
	const EVP_MD *md = NULL;
	EVP_PKEY *pub = drv_signer_public_key(signer);
	int rc, nid = NID_undef, len;

	rc = st_x509_pick_alg(signer, pub, &nid, &md, err, errlen);
	if (rc < 0)
		goto out;
	if (x)
		X509_get0_signature(&csig, &calg, x);
	else
		X509_REQ_get0_signature(req, &csig, &calg);
	/* A certificate carries the algorithm twice: in the TBS (signed) and in the outer
	 * Certificate; both get the same. */
	if ((x && !set_alg(X509_get0_tbs_sigalg(x), nid)) || !set_alg(calg, nid)) {
		rc = st_errf(err, errlen, ST_E_CRYPTO, "cannot set the signature algorithm");
		goto out;
	}
	len = x ? i2d_re_X509_tbs(x, &tbs) : i2d_re_X509_REQ_tbs(req, &tbs);
	if (len <= 0) {
		rc = st_errf(err, errlen, ST_E_CRYPTO, "cannot encode the %s to sign", what);
		goto out;
	}
	rc = st_x509_sign_data(signer, sess, md, tbs, (size_t)len, sig, &siglen, err, errlen);
	if (rc < 0)
		goto out;
	if (set_bits((ASN1_BIT_STRING *)csig, sig, siglen) < 0) {
		rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory attaching the signature");
		goto out;
	}
	if ((x ? X509_verify(x, pub) : X509_REQ_verify(req, pub)) != 1) {
		rc = st_errf(err, errlen, ST_E_SIGNER_BADSIG,
			     "the signer's signature on the %s does not verify with its public key",
			     what);
		goto out;
	}
	rc = 0;
out:
	ERR_clear_error();
	OPENSSL_free(tbs);
	EVP_PKEY_free(pub);
	return rc;
}

int st_x509_sign(X509 *x, struct drv_signer *signer, void *sess, char *err, size_t errlen)
{
	return sign_object(x, NULL, signer, sess, err, errlen);
}

int st_x509_req_sign(X509_REQ *req, struct drv_signer *signer, void *sess, char *err,
		     size_t errlen)
{
	return sign_object(NULL, req, signer, sess, err, errlen);
}
