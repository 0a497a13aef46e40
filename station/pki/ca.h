/* The CA as the station sees it: the local (device) CA certificate that signs device
 * certificates, the intermediates above it and the factory root given to boards. Loaded once
 * and checked hard (a CA, EC key on a known curve, exactly one OU, a subject key identifier);
 * what issuing needs on every certificate (issuer name DER, SKI, validity, public point) is
 * extracted once here. Immutable after loading: any thread may read it. */
#ifndef ST_CA_H
#define ST_CA_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/x509.h>

#include "ecdsa.h"
#include "policy.h"
#include "signer.h"

#define ST_CA_MAX_SKI 64
#define ST_CA_MAX_POINT (1 + 2 * 66) /* uncompressed P-521 point */
#define ST_CA_MAX_SUBJECT 1024       /* an issuer name longer than this is refused */

struct st_ca {
	X509 *cert;             /* the local CA certificate */
	STACK_OF(X509) *chain;  /* intermediates above cert up to, not including, the root */
	X509 *root;             /* the factory root; NULL when none was given */
	EVP_PKEY *pkey;         /* cert's public key */
	char ou[ST_POLICY_MAX_FACTORY + 1];  /* the factory: the single OU of cert's subject */
	uint8_t *subject_der;   /* cert's subject, DER: the issuer of every certificate */
	size_t subject_der_len;
	uint8_t ski[ST_CA_MAX_SKI]; /* cert's subject key identifier */
	size_t ski_len;
	time_t not_before, not_after;
	enum st_ec_curve curve;
	uint8_t point[ST_CA_MAX_POINT]; /* uncompressed public point, for fast verification */
	size_t point_len;
};

/* Loads the CA certificate (PEM file holding exactly one certificate), the optional chain
 * (PEM, any number of certificates; NULL for none) and the optional root (PEM, one
 * certificate; NULL for none). Checks that cert is a CA (basicConstraints CA:TRUE and, when
 * keyUsage is present, keyCertSign), has an EC key on P-256, P-384 or P-521, exactly one OU
 * and a subjectKeyIdentifier. It does not check the validity period (issuing does) nor the
 * chain (st_ca_verify_chain). Returns 0 and *out (free with st_ca_free), or ST_E_IO,
 * ST_E_ISSUE_CA_CERT, ST_E_ISSUE_CA_NOT_CA, ST_E_ISSUE_CA_SKI, ST_E_ISSUE_CA_KEY with a
 * message naming the file; *out is NULL then. */
int st_ca_load(const char *cert_path, const char *chain_path, const char *root_path,
	       struct st_ca **out, char *err, size_t errlen);

/* The same from certificates in memory; takes its own references (the caller keeps and
 * frees its own). chain and root may be NULL. name is used in messages. */
int st_ca_from_x509(X509 *cert, STACK_OF(X509) *chain, X509 *root, const char *name,
		    struct st_ca **out, char *err, size_t errlen);

void st_ca_free(struct st_ca *ca);

/* Reads every certificate of a PEM file, at least min of them. Returns 0 and *out
 * (sk_X509_pop_free(out, X509_free)), or ST_E_IO, ST_E_ISSUE_CA_CERT (malformed),
 * ST_E_NOTFOUND (fewer than min), ST_E_NOMEM with a message naming the file; *out is NULL
 * then. */
int st_ca_read_certs(const char *path, int min, STACK_OF(X509) **out, char *err,
		     size_t errlen);

/* Checks that pub (a signer's public key) is the CA certificate's key. Returns 0 or
 * ST_E_ISSUE_CA_KEY_MISMATCH. */
int st_ca_match_key(const struct st_ca *ca, EVP_PKEY *pub, char *err, size_t errlen);

/* Same, with the signer's public key. Call once after opening the signer: issuing with a
 * key that does not match would produce certificates that fail verification. */
int st_ca_match_signer(const struct st_ca *ca, struct drv_signer *signer, char *err,
		       size_t errlen);

/* Verifies that cert chains through chain to root at time now (0: the current time).
 * Returns 0, ST_E_ISSUE_CA_CHAIN with OpenSSL's reason, or ST_E_ISSUE_CA_CERT when there is
 * no root. */
int st_ca_verify_chain(const struct st_ca *ca, time_t now, char *err, size_t errlen);

/* PEM text of cert followed by the chain (what a device's client.chained appends to its own
 * certificate), and of the root (root.crt). New NUL-terminated strings the caller frees with
 * free(); *pem is NULL on failure (ST_E_NOMEM, or ST_E_NOTFOUND when there is no root). */
int st_ca_chain_pem(const struct st_ca *ca, char **pem, size_t *len);
int st_ca_root_pem(const struct st_ca *ca, char **pem, size_t *len);

#endif
