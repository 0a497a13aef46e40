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
 *   ledger: ledger.db            # a SQLite file; or a line's PostgreSQL database:
 *                                #   "postgresql://station@db.line/ledger?sslmode=verify-full"
 *                                #   (password in a passfile or PGPASSFILE, never here)
 *   profiles: profiles/          # a directory, or a list of profile files
 *   default_profile: profiles/lmp-gateway.yaml
 *   station: line-1-station-a    # this station's name in the ledger (default: host name)
 *   slots:                       # what `station run` drives
 *     - name: A1                 # one port (name defaults to the port's file name)
 *       port: /dev/serial/by-path/pci-0000:00:14.0-usb-0:1.1:1.0-port0
 *       baud: 115200             # default 115200
 *       max_baud: 921600         # switch boards that offer it to a faster rate (BAUD);
 *                                #   default: stay at baud
 *       backend: auto            # serial | pty | auto (pty for pseudo-terminals)
 *       flow: none               # none | xonxoff | rtscts
 *       profile: profiles/mcu-sensor.yaml  # optional: else chosen by hardware id
 *     - glob: /dev/serial/by-path/pci-*-port0  # a slot per match, as the hardware comes
 *                                #   (none at start: a warning; under --until-idle an error)
 *       name: "usb-{basename}"   # template: {basename}, {parent} (directory), {index}
 *     - board_map: /tmp/line/map.yaml      # the boards simboard serves ({name}, {index})
 *   pool:
 *     workers: 2                 # signing threads; default: CPUs, never more than
 *     hsm_sessions: 16           #   the HSM's sessions when they are given here
 *     batch_max: 32
 *     batch_linger_ms: 5
 *     queue_max: 4096
 *   timeouts:                    # ms; defaults suit 115200 baud and slow MCUs
 *     hello: 1000
 *     csr: 15000
 *     write: 3000
 *     commit: 10000
 *     verify: 10000
 *     done: 2000
 *     probe: 1000                # between HELLOs to an empty slot
 *     presence: 2000             # between HELLOs to a finished board
 *     reconnect: 10000           # how long a board in flight may be unplugged
 *     reopen: 250                # between attempts to open a missing port
 *     rescan: 1000               # between glob scans
 *     no_frame: 10000            # a waiting slot's line with bytes but no frame: say so
 *     baud_trial: 2000           # a new line rate (BAUD) is tried this long (100..60000)
 *                                #   before both sides go back to the old one
 *   retries:
 *     request: 5                 # transmissions of one request
 *     resync: 5                  # reboots/reconnects of one board
 *   outputs:
 *     events: events.jsonl       # JSON Lines event stream (also: station run --events)
 *     console_dir: consoles/     # console logs of failed boards
 *     events_buffer: 1048576     # bytes waiting for a slow reader, then events are dropped
 *   http:                        # registration server for lmp-device-register (http.h)
 *     listen: 127.0.0.1:8443     # HOST:PORT, [V6]:PORT, localhost:PORT; port 0: any free one
 *     tls_cert: gateway.pem      # with tls_key: HTTPS
 *     tls_key: gateway.key
 *     client_ca: device-cas.pem  # optional: clients need a certificate chaining to these
 *     token_file: tokens.txt     # optional: accepted OSF-TOKEN values, one per line
 *     tokens: [TOKEN]            # optional: or listed here; this file is then refused
 *                                #   when every user may read or write it (chmod o-rwx)
 *     max_body: 65536            # bytes of a request body
 *     allow_unauthenticated: false  # beyond loopback the server requires client_ca, or
 *                                #   tokens over HTTPS, or this written as true
 *     console: true              # the operator console at /console (read-only, the same
 *                                #   access rule as /status); default true
 *   authorizations: authorizations/  # production authorizations (*.auth, auth.h) that
 *                                #   profiles with `authorization: required` consume; read at
 *                                #   start and on SIGHUP
 *   report:                      # the station's report key, which signs job-end reports
 *     key: "pkcs11:token=factory;object=station-report?module-path=..."  # or a PEM file
 *     cert: report.pem           #   (same signer, login and PIN as ca:), and its
 *                                #   certificate from the local CA, for reports only
 *
 * A new section is a struct member below plus one entry in config.c's top-level table (and
 * a table of its own keys). */
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

enum st_config_slot_kind {
	ST_CONFIG_SLOT_PORT,	  /* one port */
	ST_CONFIG_SLOT_GLOB,	  /* one slot per path matching a pattern, rescanned */
	ST_CONFIG_SLOT_BOARD_MAP, /* one slot per board of a simboard map file */
};

/* One entry of `slots`. */
struct st_config_slot {
	enum st_config_slot_kind kind;
	char *name;	 /* PORT: the slot's name (default: the port's file name); GLOB and
			  * BOARD_MAP: a template ({basename}, {parent}, {index}; {name}
			  * and {index} for maps) */
	char *port;	 /* PORT: the port path */
	char *glob;	 /* GLOB: the pattern (glob(3)) */
	char *board_map; /* BOARD_MAP: the map file */
	unsigned baud;	 /* 0: 115200 */
	unsigned max_baud; /* fastest rate the station may switch a board to with BAUD; 0: none */
	char *backend;	 /* "auto", "serial" or "pty" (never NULL) */
	int flow;	 /* enum drv_port_flow: 0 none, 1 xonxoff, 2 rtscts */
	char *profile;	 /* profile file for the boards of these slots; NULL: by hardware id */
	char *where;	 /* "file:line:col" of the entry, for messages */
};

/* `pool`: the signing pool (pool.h). 0 means the default where noted. */
struct st_config_pool {
	unsigned workers;	  /* 0: the CPUs, clamped to hsm_sessions */
	unsigned hsm_sessions;	  /* sessions the HSM allows; 0: not given */
	unsigned batch_max;	  /* default 32 */
	unsigned batch_linger_ms; /* default 5 */
	unsigned queue_max;	  /* default 4096 */
};

/* `timeouts` (ms) and `retries`; 0 means the engine's default. */
struct st_config_timeouts {
	unsigned hello, csr, write, commit, verify, done;
	unsigned probe, presence, reconnect, reopen, rescan, no_frame;
	unsigned baud_trial; /* BAUD's ms: 100..60000 (drivers/PROTOCOL.md) */
};

struct st_config_retries {
	unsigned request, resync;
};

/* `outputs`. */
struct st_config_outputs {
	char *events;	   /* JSON Lines event stream; may be NULL */
	char *console_dir; /* console logs of failed boards; may be NULL */
	unsigned events_buffer; /* bytes of events that may wait for a slow reader of a pipe
				 * or terminal before events are dropped; 0: 1 MiB */
};

/* `http`: the registration server (http.h). Its keys and their checks live in
 * http_config.c (http_config.h). 0 means the default where noted. */
struct st_config_http {
	int enabled;		  /* the section is present */
	char *listen;		  /* "HOST:PORT" or "[V6]:PORT" (never NULL when enabled) */
	char *tls_cert;		  /* server certificate chain, PEM; with tls_key: HTTPS */
	char *tls_key;		  /* its private key, PEM */
	char *client_ca;	  /* trusted client certificate issuers, PEM; may be NULL */
	char *token_file;	  /* accepted OSF-TOKEN values, one per line; may be NULL */
	char **tokens;		  /* or listed in the file itself (n_tokens) */
	size_t n_tokens;
	const char *file;	  /* the configuration file read (st_config.path; NULL when
				   * read from memory): with tokens in it, it holds secrets */
	unsigned max_body;	  /* bytes; default 65536 */
	unsigned max_connections; /* default 1024 */
	unsigned sign_timeout_ms; /* default 60000 */
	unsigned idle_timeout_ms; /* default 10000 */
	int allow_unauthenticated; /* 1: serve beyond loopback without tokens or client
				    * certificates (written out in the file, never a default) */
	int console;		  /* serve the operator console (console.h); default 1 */
};

struct st_yl_ctx;
struct st_yl_node;
struct st_yl_key;
/* The `http` key's handler and the section's free (http_config.c). */
int st_config_h_http(struct st_yl_ctx *ctx, const struct st_yl_node *node,
		     const struct st_yl_key *key, void *base);
void st_config_http_clear(struct st_config_http *h);

/* The files (and directories) the configuration names that commands read, by who reads
 * them (st_config_check_files()). */
enum st_config_files {
	/* ca: cert, chain, root, key (file signer), pin_file, softhsm2_conf */
	ST_CONFIG_FILES_CA = 1u << 0,
	ST_CONFIG_FILES_PROFILES = 1u << 1, /* profiles, default_profile, slots' profile */
	ST_CONFIG_FILES_SLOTS = 1u << 2,    /* slots' board_map */
	ST_CONFIG_FILES_HTTP = 1u << 3,	    /* http: tls_cert, tls_key, client_ca, token_file */
	ST_CONFIG_FILES_ALL = 0xfu,
};

struct st_config_file {
	unsigned what;	 /* enum st_config_files */
	const char *key; /* the key that names it, dotted ("ca.cert") */
	const char *path; /* the path as resolved (points into the configuration) */
	int dir;	 /* a directory, not a file */
	char *where;	 /* "file:line:col" of the key */
};

/* `report`: the key that signs the station's job-end reports (report.h). It lives beside
 * the CA key: the ca: section's signer, token login and PIN, another key. */
struct st_config_report {
	char *key;  /* pkcs11: URI; file: PEM key path; NULL: no report key configured */
	char *cert; /* its certificate, PEM */
};

struct st_config {
	char *path; /* the file it was loaded from */
	struct st_config_ca ca;
	char *ledger;	       /* ledger database path or PostgreSQL connection string;
				* default "ledger.db" beside the file */
	char *profiles;	       /* profile directory; may be NULL */
	char **profile_files;  /* or: profile files given as a list (n_profile_files) */
	size_t n_profile_files;
	char *default_profile; /* profile file used when a command names none; may be NULL */
	char *station;	       /* this station's name; NULL: the host name */
	struct st_config_slot *slots;
	size_t n_slots;
	struct st_config_pool pool;
	struct st_config_timeouts timeouts;
	struct st_config_retries retries;
	struct st_config_outputs outputs;
	struct st_config_http http;
	struct st_config_file *files; /* what the configuration names to be read */
	size_t n_files;
	char *authorizations; /* directory of authorization documents; may be NULL */
	struct st_config_report report;
};

/* Loads and validates path. Each problem is written to diag (e.g. stderr; may be NULL) as one
 * "file:line:col: message" line; on failure returns ST_E_CONFIG with "N errors in FILE" in
 * err and *out NULL. On success *out is freed with st_config_free().
 * Checks: signer is pkcs11 or file; a pkcs11 key is a "pkcs11:" URI and has a PIN source
 * (pin_file, pin_env, or pin-source/pin-value in the URI); pin_file and pin_env exclude each
 * other and apply to pkcs11 only; pin_env is a valid variable name. Files are not opened
 * here (commands that need none of them must work without them); st_config_check_files()
 * checks them for the commands that read them. Thread-safe (no shared state). */
int st_config_load(const char *path, FILE *diag, struct st_config **out, char *err, size_t errlen);

/* Checks that every file (and directory) the configuration names for what (enum
 * st_config_files, or-ed) exists and can be read, before a command starts to use them, so
 * that a missing one is reported at the key that names it. Each problem is written to diag
 * (may be NULL) as "file:line:col: 'ca.cert' names PATH, which does not exist"; returns 0, or
 * ST_E_CONFIG with "N errors in FILE" in err. Any thread. */
int st_config_check_files(const struct st_config *cfg, unsigned what, FILE *diag, char *err,
			  size_t errlen);

/* Same from bytes in memory; name is used in messages, relative paths resolve against dir
 * (NULL: the directory part of name, made absolute). */
int st_config_load_buffer(const char *name, const char *dir, const void *buf, size_t len,
			  FILE *diag, struct st_config **out, char *err, size_t errlen);

/* Frees a configuration; NULL is allowed. */
void st_config_free(struct st_config *cfg);

struct drv_signer;
struct drv_signer_config;

/* The signer the ca: section names, as drv_signer_open() takes it: *sc's strings point into
 * cfg and live as long as it. When ca.softhsm2_conf is set and the environment has no
 * SOFTHSM2_CONF yet, sets it (setenv: call before other threads start). */
void st_config_signer_config(const struct st_config *cfg, struct drv_signer_config *sc);

/* Opens the signer the ca: section names: st_config_signer_config(), then drv_signer_open().
 * Returns 0 and *out (close with drv_signer_close()), or a negative ST_E_* code with err
 * saying what failed and *out NULL. Before other threads start, as above. */
int st_config_open_signer(const struct st_config *cfg, struct drv_signer **out, char *err,
			  size_t errlen);

/* The report key's signer (report:), as st_config_signer_config() gives the CA's: the same
 * backend, PIN and mechanism with report.key. sc->key is NULL when there is no report key. */
void st_config_report_signer_config(const struct st_config *cfg, struct drv_signer_config *sc);

/* This station's name: the configuration's `station`, else the host name, else "station".
 * Writes it to buf (len bytes) and returns buf. */
const char *st_config_station_name(const struct st_config *cfg, char *buf, size_t len);

/* A board of the map file simboard writes (fixtures/simboard/README.md). */
struct st_board_map_entry {
	char *name;
	char *port;	   /* the stable port name (a symlink that follows reconnects) */
	char *backend;	   /* NULL when the map names none */
	char *hardware_id; /* may be NULL */
	char *sku;	   /* may be NULL */
	char *device_id;   /* may be NULL or "" */
};

struct st_board_map {
	struct st_board_map_entry *boards;
	size_t n;
};

/* Loads a board map: a mapping with `boards`, a list of mappings with at least name and
 * port (other keys the map may grow are ignored). Problems go to diag as file:line:col.
 * Returns 0 and *out (free with st_board_map_free), or ST_E_CONFIG / ST_E_NOMEM with a
 * message; *out is NULL then. */
int st_board_map_load(const char *path, FILE *diag, struct st_board_map **out, char *err,
		      size_t errlen);
void st_board_map_free(struct st_board_map *map);

#endif
