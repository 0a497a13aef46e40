/* Per-SKU profiles: one YAML file per product decides which boards it applies to, their
 * identity, key and certificate policy, and the files written to the board (schema in
 * profiles/README.md). st_profile_load() turns a file into an immutable, validated struct;
 * nothing else in the program sees YAML. Every problem is reported as file:line:col, all of
 * them in one run, then the load fails once with their count.
 *
 * A loaded profile is never modified: any number of threads may read it and render from it
 * at the same time; it is freed with st_profile_free() once nobody uses it (a SIGHUP reload
 * loads new profiles and frees the old ones when their last slot is done). */
#ifndef ST_PROFILE_H
#define ST_PROFILE_H

#include <regex.h>
#include <stddef.h>
#include <stdio.h>

#include "policy.h"
#include "sota.h"

/* Bounds on what a profile may make the station write to one board. */
#define ST_PROFILE_MAX_FILES 32
#define ST_PROFILE_MAX_FILE_BYTES (64 * 1024)	/* one file, after expansion */
#define ST_PROFILE_MAX_TOTAL_BYTES (256 * 1024) /* all files of one board */
#define ST_PROFILE_MAX_EXTENDS 8		/* longest extends chain */
#define ST_PROFILE_MAX_ID 64 /* device ids become the CN: RFC 5280 ub-common-name */

/* The default pattern a board-reported device id must match: a lower-case UUID, as the
 * device tool (lmp-device-register) generates them. */
#define ST_PROFILE_UUID_PATTERN "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"

enum st_devid_source {
	ST_DEVID_BOARD,	   /* the id the board reports, checked against a pattern */
	ST_DEVID_UUID4,	   /* the station assigns a random UUID and tells the board */
	ST_DEVID_SEQUENCE, /* prefix + zero-padded counter allocated by the ledger */
	/* The id the board reports, read from its secure element (which the board cannot
	 * rewrite), checked against a pattern. The only source whose id a board cannot choose:
	 * under `reprovision: reissue` a board of such a profile may get a new certificate for
	 * its id; the others are refused one for an id recorded with another key. Requires
	 * key storage secure-element (the board reports `key=se`). */
	ST_DEVID_SECURE_ELEMENT,
};

enum st_key_storage {
	ST_KEY_STORAGE_ANY,	       /* any key storage the board reports */
	ST_KEY_STORAGE_SECURE_ELEMENT, /* the board must report a non-exportable key */
};

struct st_tmpl;

/* One file written to the board. Path and content are templates, expanded per board. */
struct st_profile_file {
	const struct st_tmpl *path;    /* absolute path on the board */
	const struct st_tmpl *content; /* what is written */
	unsigned mode;		       /* permission bits, e.g. 0644 */
	char *where;		       /* "file:line:col" of the entry, for messages */
};

struct st_profile {
	char *path; /* the file it was loaded from, as given */
	char *sku;
	char *description; /* may be NULL */

	/* match: the boards this profile applies to */
	char **match_hardware_ids; /* NULL-terminated; empty when the profile matches nothing */
	size_t n_match_hardware_ids;
	char *match_sku; /* the board's sku string must equal it; NULL: any */

	struct st_policy policy; /* factory, production, key algorithms, certificate */

	enum st_devid_source devid_source;
	char *devid_pattern; /* ST_DEVID_BOARD, _SECURE_ELEMENT: POSIX extended regex */
	regex_t devid_re;    /* devid_pattern compiled, when has_devid_re */
	int has_devid_re;
	char *devid_prefix;    /* ST_DEVID_SEQUENCE */
	unsigned devid_digits; /* ST_DEVID_SEQUENCE: zero-padded width */

	enum st_key_storage key_storage;

	/* Device groups an HTTP registration request may name ("group"); NULL-terminated,
	 * NULL when the profile allows none (then a request naming a group is refused). */
	char **groups;
	size_t n_groups;

	int has_sota; /* the profile configures sota.toml */
	char *sota_gateway;
	char *sota_ostree_server;
	char *sota_config_dir;	/* never NULL when has_sota (default /var/sota) */
	char *sota_hardware_id; /* written instead of the board's hardware id; may be NULL */
	struct st_sota_overrides sota_overrides;
	int has_p11;
	struct st_sota_p11 sota_p11; /* its strings are owned by the profile */

	struct st_profile_file *files;
	size_t n_files;
};

/* Loads and validates the profile at path (following `extends`). Each problem goes to diag
 * (may be NULL) as one "file:line:col: message" line, as do warnings ("file:line:col:
 * warning: message": `reprovision: reissue` that serial boards cannot use) that do not fail
 * the load. Returns 0 and a new *out, or
 * ST_E_PROFILE with "N errors in PATH" in err (ST_E_NOMEM likewise) and *out NULL.
 * Thread-safe (no shared state). */
int st_profile_load(const char *path, FILE *diag, const struct st_profile **out, char *err,
		    size_t errlen);

/* Same from bytes in memory; name is used in messages and relative references (extends,
 * template files) resolve against its directory. */
int st_profile_load_buffer(const char *name, const void *buf, size_t len, FILE *diag,
			   const struct st_profile **out, char *err, size_t errlen);

/* Frees a profile; NULL is allowed. */
void st_profile_free(const struct st_profile *p);

/* 1 when the profile applies to a board reporting hardware_id (and sku, which may be NULL). */
int st_profile_matches(const struct st_profile *p, const char *hardware_id, const char *sku);

/* Checks a device id against the profile: the pattern for ST_DEVID_BOARD and
 * ST_DEVID_SECURE_ELEMENT, a UUID for ST_DEVID_UUID4, prefix + digits for
 * ST_DEVID_SEQUENCE; never longer than ST_PROFILE_MAX_ID, no control characters. Returns 0
 * or ST_E_PROFILE_DEVICE_ID with a message naming the id and what was expected. */
int st_profile_check_device_id(const struct st_profile *p, const char *id, char *err,
			       size_t errlen);

/* Formats sequence number n as a device id of a ST_DEVID_SEQUENCE profile into buf.
 * Returns 0, or ST_E_INVAL when the profile has no sequence or n does not fit its digits. */
int st_profile_sequence_id(const struct st_profile *p, unsigned long long n, char *buf, size_t len);

/* Where a file's absolute path abs goes over the board protocol: relative to the board's
 * config directory dir when it lies below it, else relative to the board's root. Returns a
 * pointer into abs; drv_proto_path_problem() says whether the protocol carries it. */
const char *st_profile_wire_path(const char *dir, const char *abs);

/* What one board gets. */
struct st_render_input {
	const char *device_id;
	const char *hardware_id;
	const char *cert_pem;	/* the board's new certificate */
	const char *chain_pem;	/* the device CA (and intermediates) above it */
	const char *root_pem;	/* the factory root the board will trust */
	const char *config_dir; /* NULL: the profile's (a registration request may change it) */
	const struct st_sota_overrides *overrides; /* over the profile's; may be NULL */
	/* 0: every file. 1: only the files that hold the certificate; -1: only those that do
	 * not (st_profile_file_uses_cert()). A file left out keeps its place in the render,
	 * with path and data NULL. */
	int cert_files;
	/* The caller's (one thread's) kept sota.toml, when it renders many boards of the same
	 * sota settings (st_sota_render_cached); NULL: rendered each time. */
	struct st_sota_cache *sota_cache;
};

struct st_render_file {
	char *path;
	unsigned mode;
	unsigned char *data;
	size_t len;
};

struct st_render {
	struct st_render_file *files;
	size_t n;
};

/* Renders every file of profile p for one board, in the profile's order. PEM inputs get a
 * final newline when they lack one. Checks the device id (st_profile_check_device_id), file
 * paths after expansion (absolute, no "..", no duplicates) and the size bounds. Returns 0 and
 * a new *out (free with st_render_free) or a negative ST_E_* code with a message naming the
 * file and the problem; *out is NULL on failure. Thread-safe. */
int st_profile_render(const struct st_profile *p, const struct st_render_input *in,
		      struct st_render **out, char *err, size_t errlen);
void st_render_free(struct st_render *r);
/* Whether file i of p (st_profile_render()'s files are p's, in order) holds the board's
 * certificate: its path or content uses {cert_pem}. The others render the same before the
 * certificate exists (with a NULL cert_pem). */
int st_profile_file_uses_cert(const struct st_profile *p, size_t i);
/* Whether file i of p is public: its content is the CA's certificates alone ({chain_pem},
 * {root_pem}, no text of the profile's own), so any board may have it, even one whose CSR
 * is then refused. */
int st_profile_file_is_public(const struct st_profile *p, size_t i);

/* All profiles of a directory, as the station uses them on the line: every *.yaml file in
 * it (not recursing; files whose names start with '.' are skipped), loaded and checked
 * together. Immutable once loaded; any thread may look profiles up. */
struct st_profile_set;

/* Loads every profile in dir. Problems go to diag as for st_profile_load(), plus those
 * between profiles: two profiles with the same sku, or two that match the same hardware id
 * with the same (or no) match.sku, so that a board could not tell which applies (reported at
 * the second file's 1:1). Returns 0 and a new *out, or ST_E_PROFILE with "N errors in DIR"
 * in err (ST_E_NOMEM, ST_E_IO when dir cannot be read) and *out NULL. */
int st_profile_set_load(const char *dir, FILE *diag, struct st_profile_set **out, char *err,
			size_t errlen);
void st_profile_set_free(struct st_profile_set *s);

/* The profile for a board reporting hardware_id and sku (may be NULL): one whose match.sku
 * equals sku if there is one, else one without match.sku; NULL when none applies. */
const struct st_profile *st_profile_set_match(const struct st_profile_set *s,
					      const char *hardware_id, const char *sku);

/* The profile with this sku, or NULL. */
const struct st_profile *st_profile_set_find(const struct st_profile_set *s, const char *sku);

/* Number of profiles, and profile i (in file name order). */
size_t st_profile_set_count(const struct st_profile_set *s);
const struct st_profile *st_profile_set_get(const struct st_profile_set *s, size_t i);

/* The variables file paths and contents may use, NULL-terminated (for documentation and
 * messages). */
extern const char *const st_profile_vars[];

#endif
