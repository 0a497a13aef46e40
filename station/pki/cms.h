/* Signed documents of the station in CMS SignedData (RFC 5652), through OpenSSL's CMS API:
 * production authorizations from the brand owner (auth.h) and the job-end reports a station
 * gives back (report.h). An existing format rather than a home-made wrapper: any CMS tool
 * (openssl cms -verify -inform DER) reads them, and the signer's certificate chain travels
 * inside.
 *
 * Signing goes through the station's signer interface (drivers/signer.h), so the key may sit
 * in an HSM: OpenSSL's CMS_final() wants an EVP_PKEY holding the private key, which a
 * PKCS#11 key is not. The SignedData is assembled with the CMS API (signer info, content,
 * the signed attributes contentType, signingTime and messageDigest), its DER encoding read
 * back so that the attributes are in the order a verifier hashes them, the DER of the
 * SignedAttributes (a SET) hashed and signed through drv_signer like a certificate's TBS
 * (x509sign.h), and the signature set into the SignerInfo. The result is verified before it
 * is returned.
 *
 * Object identifiers. The project has no registered arc of its own; it uses one under 2.25
 * (ITU-T X.667: an OID made of a UUID's integer value, which needs no registration and
 * collides with nobody), a UUID drawn once for this project. Beneath it:
 *   .1.1 id-kp-stationAuthorization: the only extended key usage of a key the factory root
 *        certifies to sign production authorizations;
 *   .1.2 id-kp-stationReport: the only extended key usage of a station's report key, which
 *        the local CA certifies;
 *   .2.1 id-ct-stationAuthorization and .2.2 id-ct-stationJobReport: the eContentType of the
 *        two documents, so that neither can be taken for the other.
 * An EKU of our own rather than a policy OID or a standard EKU: a certificate for one of
 * these keys must be useless for anything else (a device gateway checks clientAuth, a TLS
 * client serverAuth; emailProtection or codeSigning would give the key a second job), and an
 * EKU is what verifiers of every kind check without configuration.
 *
 * Blocking (the signer); for commands, not for the event loop. Any thread. */
#ifndef ST_CMS_H
#define ST_CMS_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/x509.h>

#include "signer.h"

#define ST_OID_ARC "2.25.336218952107473821428368367930796673490"
#define ST_OID_KP_AUTHORIZATION ST_OID_ARC ".1.1"
#define ST_OID_KP_REPORT ST_OID_ARC ".1.2"
#define ST_OID_CT_AUTHORIZATION ST_OID_ARC ".2.1"
#define ST_OID_CT_REPORT ST_OID_ARC ".2.2"

/* Largest signed document read (bytes): a job-end report of a large lot. */
#define ST_CMS_MAX_BYTES (64 * 1024 * 1024)

/* Signs content (len bytes) as the eContent of type ctype_oid (dotted text) with the
 * signer's key, whose certificate is cert; chain (may be NULL) is added to the certificates
 * so that a verifier can build the path to its root. Opens a signer session of its own.
 * Returns 0 and *der (free with OPENSSL_free) of *der_len bytes, or ST_E_ISSUE_CA_KEY_MISMATCH
 * (cert is not the signer's key), the signer's ST_E_SIGNER_* codes, ST_E_SIGNER_BADSIG (the
 * result does not verify), ST_E_CRYPTO or ST_E_NOMEM; *der is NULL then. */
int st_cms_sign(struct drv_signer *signer, X509 *cert, STACK_OF(X509) *chain,
		const char *ctype_oid, const uint8_t *content, size_t len, uint8_t **der,
		size_t *der_len, char *err, size_t errlen);

/* The codes a verification fails with, so that each kind of document keeps reasons of its
 * own (ST_E_AUTH_* or ST_E_REPORT_*). */
struct st_cms_codes {
	int format;    /* not CMS SignedData of the expected type, or malformed */
	int signature; /* the signature or the content digest does not verify */
	int untrusted; /* the signer's certificate does not chain to the trusted root */
	int purpose;   /* the signer's certificate is not for this kind of document */
};

struct st_cms_check {
	const char *ctype_oid;	 /* the eContentType required */
	const char *eku_oid;	 /* the one EKU the signer's certificate must carry */
	X509 *trusted;		 /* the root the chain must end at */
	int trusted_may_sign;	 /* 1: the root itself may be the signer */
	int issued_by_trusted;	 /* 1: the signer's certificate must be issued by the root
				  * itself, not by a CA below it */
	STACK_OF(X509) *untrusted; /* more intermediates to build the path (may be NULL) */
	time_t now;		 /* the moment certificates must be valid at; 0: now */
	const struct st_cms_codes *codes;
};

/* Verifies a signed document (DER, or PEM with the label CMS or PKCS7) against chk, in this
 * order, each with its own code: the structure (one SignerInfo, attached content of type
 * ctype_oid, the signer's certificate inside; nothing after the DER), the signature over the
 * signed attributes and the content digest (a changed byte fails here), the signer's chain
 * to chk->trusted (of two certificates when issued_by_trusted), and its purpose (the
 * trusted root itself when allowed, else a certificate that is not a CA whose extended key
 * usage is eku_oid and nothing else, with digitalSignature when it has a key usage).
 * Returns 0 with *content (free with free(), NUL-terminated) of *len bytes and, when
 * signer is not NULL, the signer's certificate (X509_free), or a code of chk->codes
 * (ST_E_NOMEM) with a message; outputs NULL then. */
int st_cms_verify(const uint8_t *in, size_t inlen, const struct st_cms_check *chk,
		  uint8_t **content, size_t *len, X509 **signer, char *err, size_t errlen);

/* The subject of cert in one line (RFC 2253), for messages: a new string or NULL. */
char *st_cms_subject(X509 *cert);

#endif
