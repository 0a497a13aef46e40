/* The station configuration file (YAML), loaded through the same table-driven machinery as
 * profiles: unknown keys, wrong types and out-of-range values are errors at file:line:col.
 * Relative paths in the file are resolved against the file's own directory. */
#ifndef ST_CONFIG_H
#define ST_CONFIG_H

#include <stdio.h>

struct st_config_ca {
	char *signer;    /* "pkcs11" or "file" (required) */
	char *key;       /* pkcs11: RFC 7512 URI; file: PEM key path (required) */
	char *pin_file;  /* file holding the PIN (pkcs11) */
	char *pin_env;   /* environment variable holding the PIN (pkcs11) */
	char *mechanism; /* "ECDSA" (default) or "ECDSA-SHA256" */
	char *cert;      /* the local (device) CA certificate, PEM (required) */
	char *chain;     /* intermediates above cert up to, not including, the root; may be NULL */
	char *root;      /* the factory root CA certificate given to boards (required) */
};

struct st_config {
	char *path;          /* the file it was loaded from */
	struct st_config_ca ca;
	char *ledger;        /* ledger database path; default "ledger.db" beside the file */
	char *profiles;      /* profile directory; may be NULL */
	char *default_profile; /* profile used when a command names none; may be NULL */
};

/* Loads and validates path. Each problem is written to diag (e.g. stderr) as one
 * "file:line:col: message" line; on failure returns ST_E_CONFIG with "N errors in FILE" in
 * err and *out NULL. On success *out is freed with st_config_free(). */
int st_config_load(const char *path, FILE *diag, struct st_config **out, char *err, size_t errlen);
void st_config_free(struct st_config *cfg);

#endif
