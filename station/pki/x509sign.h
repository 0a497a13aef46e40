/* Signing OpenSSL X509 and X509_REQ objects with an external signer (an HSM key behind
 * drv_signer). OpenSSL 3.0 has no X509_set1_signature(), and X509_sign() needs an EVP_PKEY
 * with the private key; here both AlgorithmIdentifiers are set by hand, the re-encoded TBS
 * is hashed and signed through the signer, and the signature is attached as a BIT STRING
 * with no unused bits. Used by `station ca` for the self-signed root, the local CA and CSRs
 * for HSM keys; device certificates take the faster path in issue.c.
 * Call on the thread that owns sess. */
#ifndef ST_X509SIGN_H
#define ST_X509SIGN_H

#include <stddef.h>

#include <openssl/x509.h>

#include "signer.h"

/* Signs x with signer/sess using ECDSA with the hash that suits the signer's curve (SHA-256
 * for P-256 and whenever the signer hashes itself, SHA-384 for P-384, SHA-512 for P-521),
 * then verifies the result with the signer's public key. Everything but the signature must
 * be set in x before. Returns 0, ST_E_SIGNER_* from the signer, ST_E_SIGNER_BADSIG when the
 * signature does not verify, ST_E_ISSUE_CA_KEY for a key that is not EC on a known curve,
 * or ST_E_CRYPTO. */
int st_x509_sign(X509 *x, struct drv_signer *signer, void *sess, char *err, size_t errlen);

/* The same for a certificate request; the result is verified with the signer's public key
 * (which should be the request's own). */
int st_x509_req_sign(X509_REQ *req, struct drv_signer *signer, void *sess, char *err,
		     size_t errlen);

/* The signature algorithm for the signer's key pub, as st_x509_sign() chooses it: *sig_nid
 * (ecdsa-with-SHA256, -SHA384, -SHA512) and the digest *md. ST_E_ISSUE_CA_KEY for a key that
 * is not EC on a known curve. Also for other signed structures (CMS, station/cms.c). */
int st_x509_pick_alg(struct drv_signer *signer, EVP_PKEY *pub, int *sig_nid, const EVP_MD **md,
		     char *err, size_t errlen);

/* Hashes data with md (unless the signer hashes itself) and signs it on sess: at most
 * DRV_SIGNER_MAX_SIG bytes of DER ECDSA signature in sig, *siglen its length. Returns 0,
 * ST_E_SIGNER_* or ST_E_CRYPTO. */
int st_x509_sign_data(struct drv_signer *signer, void *sess, const EVP_MD *md,
		      const unsigned char *data, size_t len, uint8_t *sig, size_t *siglen,
		      char *err, size_t errlen);

#endif
