/* Helpers shared by the unit tests and the benchmarks: files, a test CA, CSRs, a file signer
 * and a SoftHSM2 token of the test's own. None of them asserts (the benchmarks have no
 * cmocka): each returns a status or NULL and leaves the verdict to its caller. */
#ifndef ST_TESTUTIL_H
#define ST_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "ledger.h"
#include "policy.h"
#include "pool.h"
#include "signer.h"

#define TU_SOFTHSM_MODULE "/usr/lib/softhsm/libsofthsm2.so"

/* Reads a whole file; returns a malloc'd buffer (NUL-terminated) and its length, or NULL. */
uint8_t *tu_read_file(const char *path, size_t *len);

/* Makes a fresh directory (mode 0700) under $TMPDIR (or /tmp) for one test; returns its
 * canonical path (realpath) in a static buffer, or NULL. */
const char *tu_tmpdir(const char *name);

/* Removes dir and everything below it without following symbolic links (no shell). 0, or -1
 * with errno. An absent dir is removed already. */
int tu_rmtree(const char *dir);

/* Writes text to path, then gives the file mode. Returns 0, or -1 with errno set. */
int tu_write_text(const char *path, const char *text, mode_t mode);

/* head, then open n times, then close n times, then tail: deeply nested YAML or JSON
 * ("[" and "]", or close "" for one never closed). A malloc'd string, or NULL. */
char *tu_nested(const char *head, const char *open, const char *close, size_t n,
		const char *tail);

/* Writes key's private key to path as unencrypted PEM, mode 0600. Returns 0 or -1. */
int tu_write_key(const char *path, EVP_PKEY *key);

/* der (len bytes) as OpenSSL writes it in PEM under label ("CERTIFICATE", ...): a malloc'd
 * NUL-terminated text of *pemlen bytes (pemlen may be NULL), or NULL. */
char *tu_pem(const uint8_t *der, size_t len, const char *label, size_t *pemlen);

/* A device CSR as the device tool makes it: subject CN=cn, OU=ou and, when production,
 * businessCategory=production, signed by key with SHA-256. Returns its DER in a malloc'd
 * buffer of *len bytes, or NULL. */
uint8_t *tu_csr_der(EVP_PKEY *key, const char *cn, const char *ou, int production,
		    size_t *len);

/* A self-issued local CA certificate for pub, everything but the signature (X509_sign(), or
 * st_x509_sign() through a signer): version 3, serial 1, CN=cn, OU=ou, valid from an hour
 * ago for days days, critical basicConstraints CA:TRUE with pathlen:0, critical keyUsage
 * keyCertSign and cRLSign, a subjectKeyIdentifier. NULL on failure; free with X509_free(). */
X509 *tu_ca_template(EVP_PKEY *pub, const char *cn, const char *ou, long days);

/* A certificate for pub (CN=cn, OU=ou, a year) signed with ikey by issuer (NULL: self-signed
 * with ikey) whose basicConstraints and keyUsage are bc and ku and, when eku is not NULL,
 * extendedKeyUsage eku, all in openssl's configuration syntax ("critical,CA:TRUE"). A random
 * serial. NULL on failure; free with X509_free(). */
X509 *tu_issue_cert(EVP_PKEY *pub, const char *cn, const char *ou, X509 *issuer, EVP_PKEY *ikey,
		    const char *bc, const char *ku, const char *eku);

/* tu_ca_template() for the signer's own key, signed through it on a session of its own, as
 * `station ca init` makes a CA whose key is in an HSM. NULL with err on failure. */
X509 *tu_signer_ca(struct drv_signer *signer, const char *cn, const char *ou, long days,
		   char *err, size_t errlen);

/* Writes key to path (tu_write_key) and opens the file signer on it. Returns 0 and *out
 * (drv_signer_close()), or a negative ST_E_* code with err. */
int tu_file_signer(const char *path, EVP_PKEY *key, struct drv_signer **out, char *err,
		   size_t errlen);

/* A SoftHSM2 token of the test's own in an existing directory dir: dir/tokens, its
 * configuration dir/softhsm2.conf (SOFTHSM2_CONF is set to it, so call this before the
 * module is loaded), the user PIN in dir/user.pin (0600) and the token initialised with the
 * label token. cfg is ready for drv_pkcs11_generate_ec_key() and drv_signer_open(): backend
 * pkcs11, the URI of the object named object in the token, the PIN file. */
struct tu_softhsm {
	char tokens[4200]; /* the token directory (a test may move it away, as an outage) */
	char conf[4200];
	char pin_file[4200];
	char uri[8400];
	struct drv_signer_config cfg; /* points into this struct */
};

/* Returns 0, or -1 (file trouble) or a negative ST_E_* code (the token) with err. */
int tu_softhsm_token(struct tu_softhsm *h, const char *dir, const char *token,
		     const char *object, char *err, size_t errlen);

/* Benchmarks feeding the signing pool. n checked device CSRs (st_csr_check under policy),
 * each with a new P-256 key, subject CN "<prefix>-<i, 8 digits>" and OU ou; free each with
 * st_csr_free() and the array with free(). NULL with err on failure. */
struct st_csr **tu_checked_csrs(const struct st_policy *policy, const char *ou,
				const char *prefix, size_t n, char *err, size_t errlen);

/* A pool request for csrs[i] (taken: the element is set to NULL): device id as its CN,
 * profile "bench", slot "<slot_prefix><i % slots>". NULL when out of memory. */
struct st_sign_req *tu_sign_req(const struct st_policy *policy, struct st_csr **csrs, size_t i,
				const char *prefix, const char *slot_prefix, unsigned slots,
				st_sign_done_cb done, void *data);

/* qsort() comparison of uint64_t. */
int tu_cmp_u64(const void *a, const void *b);

/* Random places to cut a stream of n bytes, ascending, 1 to `step` bytes apart, at most max
 * of them, from the generator *rng (advanced); returns how many. */
size_t tu_random_cuts(uint32_t *rng, size_t n, unsigned int step, size_t *cuts, size_t max);

/* A ledger's authorization of units units (lot LOT-7, valid from 1000 to 2000000000), its
 * document hash the SHA-256 of doc; id is borrowed. */
struct st_ledger_auth tu_ledger_auth(const char *id, const char *doc, int64_t units);

/* PostgreSQL (tests/lib/pg.sh run sets STATION_TEST_PG to a connection string of a server
 * of the test's own; NULL when it is not set). */
const char *tu_pg_conn(void);

/* Runs SQL on the database of the connection string conn (psql's words, no result).
 * Returns 0, or -1 with the server's message in err. */
int tu_pg_exec(const char *conn, const char *sql, char *err, size_t errlen);

/* STATION_TEST_PG's database without a ledger: the schema station_ledger and everything in
 * it dropped (faster than a new database). Writes the connection string to out. Returns 0,
 * or -1 with err. */
int tu_pg_fresh(char *out, size_t outlen, char *err, size_t errlen);

#endif
