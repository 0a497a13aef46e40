/* Issuance policy: the rules one certificate is issued under, and the checks a board's CSR
 * must pass before anything is signed for it. Pure functions: no I/O, no globals, safe on any
 * thread. The profile loader (profile.c) fills struct st_policy from YAML; without a profile
 * st_policy_default() gives the device certificate of the Foundries-style device PKI. */
#ifndef ST_POLICY_H
#define ST_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

/* Key algorithms a policy may allow (bit mask). */
enum st_key_alg {
	ST_KEY_EC_P256 = 1u << 0, /* prime256v1 */
	ST_KEY_EC_P384 = 1u << 1, /* secp384r1 */
	ST_KEY_EC_P521 = 1u << 2, /* secp521r1 */
	ST_KEY_ED25519 = 1u << 3,
	ST_KEY_RSA2048 = 1u << 4, /* RSA, modulus >= 2048 bits */
	ST_KEY_RSA3072 = 1u << 5, /* RSA, modulus >= 3072 bits */
};

enum st_serial_mode {
	ST_SERIAL_RANDOM, /* serial_bits from a CSPRNG, positive, at most 20 octets */
	ST_SERIAL_UUID,   /* the device UUID's 128-bit value, as the reference server does */
};

enum st_past_ca {
	ST_PAST_CA_CLAMP,  /* end validity at the CA's notAfter */
	ST_PAST_CA_REJECT, /* refuse to issue */
};

enum st_reprovision {
	ST_REPROVISION_REFUSE,  /* a device id that already has a certificate is refused */
	ST_REPROVISION_REISSUE, /* a new certificate is issued (same key: the recorded one) */
};

#define ST_POLICY_MAX_FACTORY 64 /* RFC 5280 ub-organizational-unit-name */

struct st_policy {
	char factory[ST_POLICY_MAX_FACTORY + 1]; /* OU; "" means: the CA's OU */
	int production;                          /* add businessCategory=production */
	unsigned key_algs;                       /* mask of enum st_key_alg */
	unsigned validity_days;                  /* 1 .. 36500 */
	enum st_serial_mode serial_mode;
	unsigned serial_bits;                    /* 64 .. 159, for ST_SERIAL_RANDOM */
	enum st_past_ca past_ca;
	enum st_reprovision reprovision;
	int authorization_required; /* a new certificate consumes a unit of a production
				     * authorization (auth.h), or is refused */
};

/* The built-in default: factory = CA's OU, not production, EC P-256 only, 7300 days,
 * 128-bit random serial, clamp at the CA's notAfter, refuse reprovisioning. */
void st_policy_default(struct st_policy *p);

/* 1 when s is a UUID in its text form (8-4-4-4-12 hex digits): in lower case only, or
 * with any_case in either case (as the device tool accepts them). */
int st_uuid_text(const char *s, int any_case);

/* Device ids that are UUIDs are checked, compared and recorded in lower case, so that the
 * same device cannot appear twice under two spellings. Lower-cases id in place when it is a
 * UUID in any case and leaves any other id alone. Returns 1 when id is a UUID. Every place
 * a device id enters the station (a board's HELLO, an HTTP request, the command line)
 * calls it first. */
int st_device_id_normalize(char *id);

/* Largest CSR accepted, PEM or DER. */
#define ST_CSR_MAX_BYTES 8192

/* A CSR that passed every check. The subject the certificate will carry is built by the
 * station from the policy, never copied from here. */
struct st_csr {
	uint8_t *spki;        /* DER SubjectPublicKeyInfo, carried into the certificate */
	size_t spki_len;
	uint8_t spki_sha256[32]; /* the ledger's public key hash */
	uint8_t csr_sha256[32];  /* hash of the CSR's DER */
	enum st_key_alg key_alg;
	/* The subjectPublicKey BIT STRING's contents without its unused-bits octet (for EC the
	 * point 04||X||Y): what a SubjectKeyIdentifier hashes. Points into spki. */
	const uint8_t *pubkey;
	size_t pubkey_len;
};

/* Checks a CSR (PEM or DER, in/len) against policy p for the device id the station expects
 * and the factory (OU) in force (p->factory, or ca_ou when that is empty).
 * Returns 0 and a new *out (free with st_csr_free) or a negative ST_E_CSR_* code with a
 * message naming the field, the value found and the value expected; *out is NULL then.
 * ST_E_INVAL when device_id or the factory is empty, too long or not clean UTF-8.
 *
 * The checks, in the order a failure is reported: size and framing (PEM or DER, exactly one
 * CSR, nothing but whitespace after it), DER structure, version 0, public key (type, curve,
 * size, valid point), signature algorithm (ECDSA with SHA-256 or SHA-384, no parameters),
 * the self-signature, the subject (exactly CN=device_id (a UUID device id, normalised to
 * lower case, matches its CN in either case), OU=factory and, iff p->production,
 * businessCategory=production; UTF8String or PrintableString; clean UTF-8 without control
 * characters; RFC 5280 upper bounds), then the attributes (only an extensionRequest, which
 * must not ask for CA:TRUE, keyCertSign or cRLSign; other requested extensions are ignored,
 * since the station never copies them). Signatures are ECDSA only, so a policy allowing
 * RSA or Ed25519 keys still rejects such CSRs, at their signature algorithm.
 * Thread-safe; about one ECDSA verification of work. */
int st_csr_check(const struct st_policy *p, const char *ca_ou, const uint8_t *in, size_t len,
		 const char *device_id, struct st_csr **out, char *err, size_t errlen);
void st_csr_free(struct st_csr *csr);

/* 1 when the CSR (PEM or DER) asks for a production certificate: its subject carries
 * businessCategory=production. Only looks, checks nothing: 0 for anything else, also for
 * input st_csr_check() would refuse (which then says why). Used to choose a profile for a
 * registration request before the CSR is checked against it. Thread-safe. */
int st_csr_asks_production(const uint8_t *in, size_t len);

#endif
