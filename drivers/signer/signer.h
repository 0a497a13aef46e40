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
 * is called only when `open` succeeded. Errors: negative ST_E_* codes (err.h) and a
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

/* 1 in a sanitizer (ASan) build, which drv_signer_no_core_dumps() leaves dumpable, else 0. */
#if defined(__SANITIZE_ADDRESS__)
#define DRV_SIGNER_KEEPS_DUMPABLE 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DRV_SIGNER_KEEPS_DUMPABLE 1
#endif
#endif
#ifndef DRV_SIGNER_KEEPS_DUMPABLE
#define DRV_SIGNER_KEEPS_DUMPABLE 0
#endif

/* Sets RLIMIT_CORE to 0 and, except in a sanitizer build, makes the process not dumpable
 * (PR_SET_DUMPABLE 0): a core dump or a same-user ptrace would show the PIN or key held in
 * memory. drv_signer_open() and drv_signer_read_pin() call it first; it lasts for the process.
 * Returns 0, or ST_E_IO with err saying what failed. */
int drv_signer_no_core_dumps(char *err, size_t errlen);

/* Opens the backend named by cfg->backend. An unknown name is ST_E_SIGNER_UNKNOWN with a
 * message listing the known ones. *out is NULL on failure; free with drv_signer_close(). */
int drv_signer_open(const struct drv_signer_config *cfg, struct drv_signer **out, char *err,
		    size_t errlen);
/* Closes a signer after every one of its sessions was closed. NULL is ignored. */
void drv_signer_close(struct drv_signer *signer);

/* Convenience wrappers over the ops. A session belongs to the thread that opened it: open
 * it on the worker thread, sign only on that thread, close it there. sess is NULL on failure. */
int drv_signer_session_open(struct drv_signer *signer, void **sess, char *err, size_t errlen);
void drv_signer_session_close(struct drv_signer *signer, void *sess);
int drv_signer_sign(struct drv_signer *signer, void *sess, const uint8_t *digest, size_t dlen,
		    uint8_t *sig, size_t *siglen, char *err, size_t errlen);

/* The signing key's public part (no private material), to verify signatures and match the CA
 * certificate. Returns a new reference the caller frees with EVP_PKEY_free(), or NULL.
 * Any thread. */
EVP_PKEY *drv_signer_public_key(struct drv_signer *signer);

/* Longest PIN accepted, without the terminating NUL. */
#define DRV_SIGNER_MAX_PIN 256

/* Reads a PIN for backends and for `station ca`: from pin_file when it is not NULL (first
 * line, the line end stripped; a file that cannot be read is an error, not a fallback), else
 * from the environment variable named by pin_env. The file must be a regular file, not a
 * symbolic link, that neither group nor others may access (0600 or 0400). The variable is
 * removed from the environment once read (its value overwritten in /proc/self/environ too)
 * and its value kept for later reads of the same name in this process; call this before
 * other threads read the environment. pin must hold DRV_SIGNER_MAX_PIN + 1 bytes; the caller
 * clears it with OPENSSL_cleanse() after use. Returns 0, ST_E_SIGNER_NOPIN when no source
 * gives a PIN (or the file is refused), or ST_E_INVAL for an over-long PIN; the message never
 * holds the PIN. Thread-safe against itself. */
int drv_signer_read_pin(const char *pin_file, const char *pin_env, char *pin, size_t pinlen,
			char *err, size_t errlen);

/* Parses a mechanism name ("ECDSA", "ECDSA-SHA256", NULL for ECDSA). *hashes is 1 when the
 * signer hashes the data itself. Returns 0 or ST_E_SIGNER_MECH naming the known ones. */
int drv_signer_parse_mechanism(const char *mechanism, int *hashes, char *err, size_t errlen);

/* Fault hooks for tests (hostapd's TEST_FAIL idea), see signer_pkcs11.c:
 * - drv_pkcs11_test_drop_session(sess) closes the PKCS#11 session under a pkcs11 signer
 *   session, as a token would after a reset; the next sign must recover.
 * - drv_pkcs11_test_finalize(signer) calls C_Finalize on the module under an open signer, as
 *   if the module lost all state; every session's next sign must recover.
 * - the environment variable STATION_TEST_FAIL="signer.drop_session:N" (or
 *   "signer.finalize:N") makes an opened pkcs11 signer do the same just before its N-th
 *   signature (N defaults to 1), so integration tests can exercise recovery in the binary.
 *   Only in a build configured with -DSTATION_TEST_HOOKS=ON: elsewhere the variable is not
 *   even read, so no environment can make an installed station's signing fail. The two
 *   functions stay in every build: only code linked with the station can call them. */
void drv_pkcs11_test_drop_session(void *sess);
void drv_pkcs11_test_finalize(struct drv_signer *signer);
/* Number of C_Login calls made by this process (tests check a wrong PIN is tried once). */
unsigned long drv_pkcs11_test_login_calls(void);
/* Sessions the process holds open on PKCS#11 modules, since the last module reset (tests
 * check that a signer with N worker sessions holds N: the login's session is lent out). */
long drv_pkcs11_test_open_sessions(void);

/* Initialises a token on the module's first free slot (SoftHSM2 always offers one): sets the
 * label and SO PIN (C_InitToken), then the user PIN (C_Login as SO + C_InitPIN). PINs are
 * passed in memory so that none ever needs argv. Fails with ST_E_EXISTS when a token with
 * that label exists already, ST_E_SIGNER_TOKEN when no slot is free. Not thread-safe
 * against signers using the same module in this process: run it in an admin command. */
int drv_pkcs11_init_token(const char *module_path, const char *label, const char *so_pin,
			  const char *user_pin, char *err, size_t errlen);

/* PKCS#11 administration used by `station ca`: generates an EC key pair (curve "prime256v1"
 * unless given) inside the token named by uri, labelled and id'd as the URI's object/id,
 * private key sensitive and non-extractable. Fails with ST_E_EXISTS when the label is taken. */
int drv_pkcs11_generate_ec_key(const struct drv_signer_config *cfg, const char *curve, char *err,
			       size_t errlen);

#endif
