/* station-agent: the board core (drivers/board) on a Linux device's console UART.
 *
 *   main.c        options, the UART (termios), the loop, exit on DONE
 *   config.c      the configuration file (key = value) and the identity HELLO reports
 *   store.c       storage ops over POSIX files: staging, journaled atomic commit, records
 *   key_file.c    key backend: a PEM file (0600), OpenSSL
 *   key_pkcs11.c  key backend: a PKCS#11 token (the device's secure element)
 *   port_openssl.c  the crypto port of station-agent: key backends pkcs11 and file
 *                   (OpenSSL), randomness from OpenSSL
 *   key_mbedtls.c   the crypto port of station-agent-mbedtls: key backends pkcs11 and
 *                   file (mbedTLS, RFC 6979 signatures), randomness from mbedTLS
 *
 * One board, one thread. Logs go to stderr, never to the UART. */
#ifndef AGENT_H
#define AGENT_H

#include <stddef.h>
#include <stdint.h>

#include "board.h"

#define AGENT_PATH_MAX 4096

/* The agent's configuration, after defaults; every path already carries --root. */
struct agent_config {
	char root[AGENT_PATH_MAX];       /* "" or the --root directory */
	char state_dir[AGENT_PATH_MAX];  /* key file, CSR, result (default /var/lib/station-agent) */
	char config_dir[AGENT_PATH_MAX]; /* where the station's files go (default /var/sota) */
	char config_dir_norm[AGENT_PATH_MAX]; /* config_dir without --root, for the core */
	char prefixes[BRD_MAX_PREFIXES][AGENT_PATH_MAX]; /* without --root */
	unsigned int nprefixes;
	char device_id_file[AGENT_PATH_MAX];
	char serial_file[AGENT_PATH_MAX];
	char hw[BRD_MAX_NAME + 1], sku[BRD_MAX_NAME + 1], fw[BRD_MAX_NAME + 1];
	char sn[BRD_MAX_NAME + 1], key_storage[8];
	char key_backend[16];            /* "pkcs11" or "file" */
	char key[AGENT_PATH_MAX];        /* PKCS#11 URI, or the PEM file (with --root) */
	char pin_file[AGENT_PATH_MAX];
	uint32_t baud;
	uint32_t bauds[BRD_MAX_BAUDS];
	unsigned int nbauds;
	size_t max_frame;
	uint64_t max_file, max_total;
	int allow_regen;
	int fsync;
};

/* config.c */
/* Loads FILE (NULL: only the defaults) under root (NULL or ""), fills in the defaults and
 * the identity (serial number from the device tree, DMI or serial_file). Returns 0, or -1
 * with err naming the file, line and what is wrong. */
int agent_config_load(struct agent_config *c, const char *file, const char *root, char *err,
		      size_t errlen);
/* Joins root and an absolute path. 0, or -1 when it does not fit. */
int agent_rooted(char *out, size_t cap, const char *root, const char *path);
/* Reads the first line of a small file (trailing line end and NULs dropped). 0 or -1. */
int agent_read_line(const char *path, char *out, size_t cap);
/* Writes a file atomically: tmp with O_EXCL|O_NOFOLLOW at mode, fsync, rename, directory
 * fsync. 0, or -1 with errno set. */
int agent_write_atomic(const char *path, const void *data, size_t n, unsigned int mode,
		       int do_fsync);

#ifdef STATION_TEST_HOOKS
/* Only in builds made with -DSTATION_TEST_HOOKS=ON (config.c); an agent built to be
 * installed has neither variable.
 * STATION_AGENT_TEST_STOP=<point>: agent_test_stop(point) stops the agent for good there,
 * once what came before it is durable, after saying so on stderr ("station-agent: test stop
 * at <point>"), so that a test can cut the power exactly there (test_qemu_agent.sh,
 * test_agent.sh). The points:
 *   commit-journal   (store.c) the staged files are synced, the journal is not in place yet
 *   commit-install   (store.c) the journal is in place, the first staged file renamed
 *   keygen-generated (key_pkcs11.c) a regeneration made the new pair, the old one is whole
 *   keygen-destroyed (key_pkcs11.c) the old pair is destroyed, the new one not yet labelled
 *   keygen-relabelled (key_pkcs11.c) the new private key has the label, its public key not
 * STATION_AGENT_TEST_FAIL=<point>: agent_test_fail(point) is 1 there, and the code fails as
 * the real step can. The points:
 *   keygen           (key_pkcs11.c) C_GenerateKeyPair answers CKR_DEVICE_MEMORY (a full
 *                    token) */
void agent_test_stop(const char *point);
int agent_test_fail(const char *point);
#else
#define agent_test_stop(point) ((void)0)
#define agent_test_fail(point) 0
#endif

/* store.c */
struct agent_store;
/* Opens the storage: the configuration directory (created, no symlink on the way), its
 * staging area, a commit left half done by a power loss finished (the new set), and the
 * records in state_dir. Returns 0 or -1 with err. */
int agent_store_open(const struct agent_config *c, struct agent_store **out, char *err,
		     size_t errlen);
void agent_store_close(struct agent_store *s);
extern const struct brd_storage_ops agent_store_ops;

/* Key backends: one interface, picked by name. */
struct agent_key_backend {
	const char *name;
	/* Opens the key named by c->key (nothing is generated yet). */
	int (*open)(const struct agent_config *c, void **inst, char *err, size_t errlen);
	void (*close)(void *inst);
	const struct brd_key_ops *ops;
};
extern const struct agent_key_backend agent_key_file, agent_key_pkcs11, agent_key_mbedtls;
/* The crypto port's backends, NULL-terminated, its random bytes (0 or -1), and its SHA-256
 * compression for the board core (sha256.h) or NULL for the core's own. */
extern const struct agent_key_backend *const agent_key_backends[];
int agent_random(void *buf, size_t n);
extern brd_sha256_blocks_fn *const agent_sha256_blocks;

#endif
