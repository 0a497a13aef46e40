/* Signers: the CA's private key behind one interface with several backends (PKCS#11 HSM,
 * PEM key file). A signer is opened once per process; each signing thread then opens its
 * own session and keeps it for its whole life (SoftHSM2 and many HSMs crash or serialise
 * when one session is shared between threads).
 *
 * Signatures are always ECDSA over a digest computed by the caller (the station hashes in
 * process; HSMs that only offer CKM_ECDSA need that) and come back DER-encoded
 * (ECDSA-Sig-Value), ready for an X.509 signature BIT STRING. */
#ifndef DRV_SIGNER_H
#define DRV_SIGNER_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

/* Largest DER ECDSA-Sig-Value for curves up to P-521. */
#define DRV_SIGNER_MAX_SIG 144

struct drv_signer_config {
	/* Backend name: "pkcs11" or "file". */
	const char *backend;
	/* pkcs11: an RFC 7512 URI naming token and key, with module-path in its query
	 * (pkcs11:token=Station;object=local-ca?module-path=/usr/lib/softhsm/libsofthsm2.so).
	 * file: path of a PEM private key. */
	const char *key;
	/* PIN sources, tried in order; never argv. pin_file: a file whose first line is the
	 * PIN. pin_env: the name of an environment variable holding it. A pin-value in the URI
	 * is refused. The file backend ignores both. */
	const char *pin_file;
	const char *pin_env;
	/* pkcs11 only: "ECDSA" (hash in process, default) or "ECDSA-SHA256" (the HSM hashes;
	 * then sign() receives the data, not the digest). NULL means ECDSA. */
	const char *mechanism;
};

/* One backend. `open` returns a private instance that every other op takes first; `close`
 * is called only when `open` succeeded. Errors: negative ST_E_* codes (station/err.h) and a
 * message in err (which never contains a PIN). */
struct drv_signer_ops {
	const char *name;
	/* Loads the key described by cfg (module, login, key lookup). Called once, on any
	 * thread. On success *inst is the instance; on failure it is NULL. */
	int (*open)(const struct drv_signer_config *cfg, void **inst, char *err, size_t errlen);
	/* Opens a session for the calling thread. *sess is owned by the caller and released
	 * with session_close on the same thread. */
	int (*session_open)(void *inst, void **sess, char *err, size_t errlen);
	/* Signs a digest (or, with a hashing mechanism, the data) of dlen bytes. Writes at most
	 * DRV_SIGNER_MAX_SIG bytes of DER signature to sig and its length to *siglen. Reopens a
	 * lost session or a token that went away and retries once before failing with
	 * ST_E_SIGNER_SESSION or ST_E_SIGNER_DEVICE. */
	int (*sign)(void *sess, const uint8_t *digest, size_t dlen, uint8_t *sig, size_t *siglen,
		    char *err, size_t errlen);
	void (*session_close)(void *sess);
	/* The public key of the signing key; a new reference the caller frees. */
	EVP_PKEY *(*public_key)(void *inst);
	void (*close)(void *inst);
};

/* NULL-terminated table of backends. */
extern const struct drv_signer_ops *const drv_signer_backends[];

/* An opened signer: backend plus instance. */
struct drv_signer {
	const struct drv_signer_ops *ops;
	void *inst;
	int hashes; /* 1 when the mechanism hashes itself (sign() takes the data). */
};

/* Opens the backend named by cfg->backend. An unknown name is ST_E_SIGNER_UNKNOWN with a
 * message listing the known ones. *out is NULL on failure; free with drv_signer_close(). */
int drv_signer_open(const struct drv_signer_config *cfg, struct drv_signer **out, char *err,
		    size_t errlen);
void drv_signer_close(struct drv_signer *signer);

/* Convenience wrappers over the ops. */
int drv_signer_session_open(struct drv_signer *signer, void **sess, char *err, size_t errlen);
void drv_signer_session_close(struct drv_signer *signer, void *sess);
int drv_signer_sign(struct drv_signer *signer, void *sess, const uint8_t *digest, size_t dlen,
		    uint8_t *sig, size_t *siglen, char *err, size_t errlen);

/* Fault hook for tests: when the environment variable STATION_TEST_FAIL names an op of the
 * form "signer.<what>" the backend fails there once; see signer_pkcs11.c. */

/* PKCS#11 administration used by `station ca`: generates an EC key pair (curve "prime256v1"
 * unless given) inside the token named by uri, labelled and id'd as the URI's object/id,
 * private key sensitive and non-extractable. Fails with ST_E_EXISTS when the label is taken. */
int drv_pkcs11_generate_ec_key(const struct drv_signer_config *cfg, const char *curve, char *err,
			       size_t errlen);

#endif
