/* Issuing one device certificate: build the TBSCertificate, sign it through the signer,
 * verify the signature with the CA certificate's public key, and hand out the DER.
 *
 * The certificate is written as DER directly rather than through OpenSSL's X509 object:
 * in OpenSSL 3.0 setting or decoding a public key in an X509 goes through the provider
 * decoders (X509_set_pubkey ~260 us, d2i_PUBKEY ~150 us on the reference machine), several
 * times the cost of the signature. The CSR's SubjectPublicKeyInfo bytes are carried over as
 * they are, the issuer name is the CA subject's DER, and every other field is a fixed
 * template with the serial, validity, subject, SKI and AKI filled in.
 *
 * The certificate: v3; serial positive, at most 20 octets (serial_bits from a CSPRNG with
 * the top bit clear, or the device UUID's 128-bit value); issuer = CA subject; validity
 * from (now - ST_ISSUE_BACKDATE) to now + validity_days, never before the CA's notBefore
 * nor after its notAfter (clamped, or refused per policy); subject = CN=device id,
 * OU=factory[, businessCategory=production], UTF8String, CN first; extensions:
 * basicConstraints CA:FALSE (critical), keyUsage digitalSignature (critical),
 * extendedKeyUsage clientAuth (critical), subjectKeyIdentifier (SHA-1 of the public key
 * BIT STRING, RFC 5280 method 1), authorityKeyIdentifier keyIdentifier = the CA's SKI;
 * signature ECDSA with SHA-256 (SHA-384 for a P-384 CA, SHA-512 for P-521, SHA-256 always
 * when the signer hashes itself). */
#ifndef ST_ISSUE_H
#define ST_ISSUE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "ca.h"
#include "policy.h"
#include "signer.h"

/* notBefore lies this many seconds before the moment of issue, so that a board whose clock
 * runs a little behind the station's still accepts its new certificate. */
#define ST_ISSUE_BACKDATE 60

/* Per-thread issuing context: the CA, the signer and the calling thread's signer session,
 * plus the CA's public key decoded once for verifying each new signature. */
struct st_issuer;

/* Creates an issuer for the calling thread. ca and signer are shared and must outlive it;
 * sess is the calling thread's own signer session (drv_signer_session_open), borrowed.
 * Checks that the signer's key is the CA certificate's key (ST_E_ISSUE_CA_KEY_MISMATCH).
 * Returns 0 and *out (free with st_issuer_free on the same thread) or a negative ST_E_*;
 * *out is NULL then. */
int st_issuer_new(const struct st_ca *ca, struct drv_signer *signer, void *sess,
		  struct st_issuer **out, char *err, size_t errlen);
void st_issuer_free(struct st_issuer *is);

/* Room for a serial in hex: 20 octets, two digits each, and the NUL. */
#define ST_ISSUE_SERIAL_HEX (2 * 20 + 1)

/* An issued certificate, one allocation. */
struct st_cert {
	uint8_t *der;           /* the certificate, DER */
	size_t der_len;
	/* The serial's value, lower-case hex without leading zero octets (even length). */
	char serial_hex[ST_ISSUE_SERIAL_HEX];
	time_t not_before, not_after;
};

/* Issues a certificate for a checked CSR (st_csr_check) under policy p for device_id at
 * time now (0: the current time). The signature is verified with the CA certificate's
 * public key before the certificate is returned. Returns 0 and *out (free with
 * st_cert_free) or: ST_E_ISSUE_CA_OU (p->factory differs from the CA's OU),
 * ST_E_ISSUE_CA_EXPIRED, ST_E_ISSUE_PAST_CA (policy refuses to clamp), ST_E_ISSUE_SERIAL
 * (UUID serial from a device id that is not a UUID), ST_E_INVAL (policy out of range),
 * the signer's ST_E_SIGNER_* codes, ST_E_SIGNER_BADSIG (the signer's signature does not
 * verify: nothing is returned). *out is NULL on failure. Only on the issuer's thread. */
int st_issue(struct st_issuer *is, const struct st_policy *p, const struct st_csr *csr,
	     const char *device_id, time_t now, struct st_cert **out, char *err,
	     size_t errlen);

/* Defined when st_issue_make_serial() and st_issue_with_serial() exist: the ledger records
 * its intent, naming the serial, before the certificate is signed. */
#define ST_ISSUE_WITH_SERIAL 1

/* Chooses the serial st_issue() would choose for device_id under p (serial_bits from the
 * CSPRNG, or the device UUID's value) and writes it to hex in st_cert.serial_hex's form.
 * Returns 0, ST_E_ISSUE_SERIAL or ST_E_INVAL; hex is "" on failure. Any thread. */
int st_issue_make_serial(const struct st_policy *p, const char *device_id,
			 char hex[ST_ISSUE_SERIAL_HEX], char *err, size_t errlen);

/* st_issue() with a serial chosen beforehand (st_issue_make_serial()): hex digits of a
 * positive integer whose DER encoding is at most 20 octets, else ST_E_INVAL. */
int st_issue_with_serial(struct st_issuer *is, const struct st_policy *p,
			 const struct st_csr *csr, const char *device_id, const char *serial_hex,
			 time_t now, struct st_cert **out, char *err, size_t errlen);

/* st_csr_check() with the CA's OU, then st_issue(). */
int st_issue_csr(struct st_issuer *is, const struct st_policy *p, const uint8_t *csr,
		 size_t len, const char *device_id, time_t now, struct st_cert **out, char *err,
		 size_t errlen);

void st_cert_free(struct st_cert *cert);

/* PEM text ("-----BEGIN CERTIFICATE-----", 64-column lines, final newline) of a DER
 * certificate. Returns 0 and a new NUL-terminated *pem (free with free()) or ST_E_NOMEM;
 * *pem is NULL then. Any thread. */
int st_cert_pem(const uint8_t *der, size_t len, char **pem, size_t *pem_len);

#endif
