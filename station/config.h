/* The station configuration file (YAML), loaded through the same table-driven machinery as
 * profiles (yamlload.h): unknown keys (with the nearest known key suggested), wrong types and
 * out-of-range values are errors at file:line:col, all reported in one run.
 * Relative paths in the file are resolved against the file's own directory and stored as
 * absolute paths, so they stay right whatever the working directory is later.
 *
 *   ca:
 *     signer: pkcs11              # or: file
 *     key: "pkcs11:token=factory;object=local-ca?module-path=/usr/lib/softhsm/libsofthsm2.so"
 *     pin_file: pin.txt           # or pin_env: STATION_PIN (never the PIN itself)
 *     mechanism: ECDSA            # or ECDSA-SHA256
 *     cert: local-ca.pem
 *     chain: intermediates.pem    # optional
 *     root: factory-root.pem
 *   ledger: ledger.db
 *   profiles: profiles/
 *   default_profile: profiles/lmp-gateway.yaml
 *
 * A new section (slots, pool, timeouts, outputs) is a struct member below plus one entry in
 * config.c's top-level table (and a table of its own keys). */
#ifndef ST_CONFIG_H
#define ST_CONFIG_H

#include <stddef.h>
#include <stdio.h>

struct st_config_ca {
	char *signer;	 /* "pkcs11" or "file" (required) */
	char *key;	 /* pkcs11: RFC 7512 URI; file: PEM key path (required) */
	char *pin_file;	 /* file holding the PIN (pkcs11) */
	char *pin_env;	 /* environment variable holding the PIN (pkcs11) */
	char *mechanism; /* "ECDSA" (default) or "ECDSA-SHA256" */
	char *cert;	 /* the local (device) CA certificate, PEM (required) */
	char *chain;	 /* intermediates above cert up to, not including, the root; may be NULL */
	char *root;	 /* the factory root CA certificate given to boards (required) */
	char *softhsm2_conf; /* development only: SOFTHSM2_CONF to set before loading the
			      * module, when the environment does not already set it */
};

struct st_config {
	char *path; /* the file it was loaded from */
	struct st_config_ca ca;
	char *ledger;	       /* ledger database path; default "ledger.db" beside the file */
	char *profiles;	       /* profile directory; may be NULL */
	char *default_profile; /* profile file used when a command names none; may be NULL */
};

/* Loads and validates path. Each problem is written to diag (e.g. stderr; may be NULL) as one
 * "file:line:col: message" line; on failure returns ST_E_CONFIG with "N errors in FILE" in
 * err and *out NULL. On success *out is freed with st_config_free().
 * Checks: signer is pkcs11 or file; a pkcs11 key is a "pkcs11:" URI and has a PIN source
 * (pin_file, pin_env, or pin-source/pin-value in the URI); pin_file and pin_env exclude each
 * other and apply to pkcs11 only; pin_env is a valid variable name. Files are not opened
 * here: their users report what is wrong with them. Thread-safe (no shared state). */
int st_config_load(const char *path, FILE *diag, struct st_config **out, char *err, size_t errlen);

/* Same from bytes in memory; name is used in messages, relative paths resolve against dir
 * (NULL: the directory part of name, made absolute). */
int st_config_load_buffer(const char *name, const char *dir, const void *buf, size_t len,
			  FILE *diag, struct st_config **out, char *err, size_t errlen);

/* Frees a configuration; NULL is allowed. */
void st_config_free(struct st_config *cfg);

#endif
