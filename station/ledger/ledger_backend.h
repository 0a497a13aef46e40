/* Ledger backends: what a ledger store implements behind station/ledger.h, like the signers
 * behind drivers/signer/signer.h. ledger_ops.c picks the backend from the `ledger:` value (the
 * first in st_ledger_backends[] that claims it) and forwards every call of ledger.h to it.
 * Backends: SQLite (ledger.c, a file path: the embedded default) and PostgreSQL
 * (ledger_pg.c, a postgresql:// URI or a libpq key=value connection string).
 *
 * Every op keeps the contract that ledger.h states for the function of the same name, word
 * for word; what the ops add to it is said here. `open` returns a private instance that
 * every other op takes first; `close` is called only when `open` succeeded. Errors are
 * negative ST_E_* codes with a message in err that names the ledger (never a password).
 * Only ledger_ops.c and the backends include this header. */
#ifndef ST_LEDGER_BACKEND_H
#define ST_LEDGER_BACKEND_H

#include "ledger.h"

struct st_ledger_ops {
	const char *name; /* "sqlite", "postgresql": in messages and `station ledger` */
	/* Whether spec (the `ledger:` value, a path or a connection string) names a ledger of
	 * this backend. The last backend of the table claims every spec. */
	int (*claims)(const char *spec);
	/* st_ledger_open_flags(): *inst is the instance on success, NULL on failure. */
	int (*open)(const char *spec, const char *station, unsigned flags, void **inst,
		    char *err, size_t errlen);
	void (*close)(void *inst);
	void (*set_busy_timeout)(void *inst, int ms);
	/* The spec the instance was opened with, for messages (owned by the instance). */
	const char *(*path)(const void *inst);
	void (*set_hook)(void *inst, void (*fn)(enum st_ledger_hook_point point, void *arg),
			 void *arg);
	/* NULL for a backend that never loses its store (a file). */
	void (*set_outage)(void *inst, const struct st_ledger_outage *outage);
	int (*lookup)(void *inst, const char *device_id, const uint8_t pubkey_sha256[32],
		      struct st_ledger_row **row, char *err, size_t errlen);
	int (*newest)(void *inst, const char *device_id, struct st_ledger_row **row, char *err,
		      size_t errlen);
	int (*begin)(void *inst, char *err, size_t errlen);
	int (*commit)(void *inst, char *err, size_t errlen);
	int (*rollback)(void *inst);
	int (*add_intent)(void *inst, const struct st_ledger_row *row, int64_t *id, char *err,
			  size_t errlen);
	int (*supersede)(void *inst, int64_t id, char *err, size_t errlen);
	int (*set_cert)(void *inst, int64_t id, const uint8_t *der, size_t len,
			time_t not_before, time_t not_after, char *err, size_t errlen);
	int (*mark_delivered)(void *inst, int64_t id, char *err, size_t errlen);
	int (*mark_failed)(void *inst, int64_t id, const char *reason, char *err,
			   size_t errlen);
	int (*flag)(void *inst, const char *device_id, const uint8_t pubkey_sha256[32],
		    const char *slot, const char *reason, char *err, size_t errlen);
	int (*next_sequence)(void *inst, const char *prefix, uint64_t *n, char *err,
			     size_t errlen);
	int (*get)(void *inst, int64_t id, struct st_ledger_row **row, char *err,
		   size_t errlen);
	int (*get_serial)(void *inst, const char *serial, struct st_ledger_row **row,
			  char *err, size_t errlen);
	int (*foreach)(void *inst, int (*fn)(const struct st_ledger_row *row, void *arg),
		       void *arg, char *err, size_t errlen);
	int (*foreach_flag)(void *inst, int (*fn)(const struct st_ledger_flag *flag, void *arg),
			    void *arg, char *err, size_t errlen);
	int (*integrity)(void *inst, char *err, size_t errlen);
	int (*backup)(void *inst, const char *dest, char *err, size_t errlen);
	/* Calls fn for every sequence (prefix, next number to hand out), by prefix. */
	int (*foreach_sequence)(void *inst,
				int (*fn)(const char *prefix, uint64_t next, void *arg), void *arg,
				char *err, size_t errlen);

	/* Production authorizations and attempts (ledger.h): the database itself counts the
	 * units (authorizations.used kept equal to the live rows naming each, never beyond its
	 * units) in the writer's transaction, so the count holds across every station on it.
	 * ledger_ops.c has checked the arguments (an authorization's id and units, an intent's
	 * authorization id, an attempt's outcome) and zeroed *used and *id. */
	int (*auth_register)(void *inst, const struct st_ledger_auth *a, int64_t *used,
			     char *err, size_t errlen);
	int (*add_intent_auth)(void *inst, const struct st_ledger_row *row, const char *auth_id,
			       int64_t *id, int64_t *used, int64_t *units, char *err,
			       size_t errlen);
	int (*foreach_auth)(void *inst, int (*fn)(const struct st_ledger_auth *a, void *arg),
			    void *arg, char *err, size_t errlen);
	int (*auth_stations)(void *inst, const char *auth_id,
			     int (*fn)(const char *station, int64_t certificates, int64_t pending,
				       void *arg),
			     void *arg, char *err, size_t errlen);
	int (*foreach_auth_cert)(void *inst, const char *auth_id,
				 int (*fn)(const struct st_ledger_row *row, void *arg), void *arg,
				 char *err, size_t errlen);
	int (*add_attempt)(void *inst, const struct st_ledger_attempt *a, char *err,
			   size_t errlen);
	int (*foreach_attempt)(void *inst, time_t since, time_t until,
			       int (*fn)(const struct st_ledger_attempt *a, void *arg), void *arg,
			       char *err, size_t errlen);

	/* st_ledger_import() into this backend, inside the caller's transaction (NULL: the
	 * backend takes no imports). import_auth records an authorization of another ledger as
	 * it is (id, document hash, units, lot, validity, registered, station) but its count,
	 * which the rows make: *outcome says whether it was added or was there already for the
	 * same document (hash and units); one recorded for another document is
	 * ST_E_AUTH_CONFLICT naming the id. import_row takes a row of another ledger as it is
	 * (station, state, certificate, times, the authorization it consumes a unit of, which
	 * must be imported first), gives it an id of its own and remembers where it came from
	 * (its station and id there): *outcome says whether it was added, was there already
	 * from an earlier import, or was there with an older state (brought up to date; a row
	 * imported before without its authorization gets it). A row whose serial or key
	 * another row holds, or whose device id has another key's open intent, is
	 * ST_E_LEDGER_DUP_* with a message naming both, and nothing is written; a row beyond
	 * its authorization's units is ST_E_AUTH_EXHAUSTED (the database refused it; the
	 * transaction is lost). import_flag likewise (added or there already); import_sequence
	 * raises prefix's next number to next when it is lower; import_attempt records an
	 * attempt with its station and time, remembered by its station and id there like a row
	 * (added or there already), naming the row its certificate's row was imported as. */
	int (*import_row)(void *inst, const struct st_ledger_row *row, int *outcome, char *err,
			  size_t errlen);
	int (*import_flag)(void *inst, const struct st_ledger_flag *flag, int *outcome,
			   char *err, size_t errlen);
	int (*import_sequence)(void *inst, const char *prefix, uint64_t next, char *err,
			       size_t errlen);
	int (*import_auth)(void *inst, const struct st_ledger_auth *a, int *outcome, char *err,
			   size_t errlen);
	int (*import_attempt)(void *inst, const struct st_ledger_attempt *a, int *outcome,
			      char *err, size_t errlen);
};

/* An attempt's text fields in the order of its columns (slot, outcome, reason, error,
 * device_id, serial, board_sn, hardware_id, sku, firmware, profile, auth_id), "" as NULL:
 * absent, not empty. */
#define ST_LEDGER_ATTEMPT_TEXTS 12
void st_ledger_attempt_texts(const struct st_ledger_attempt *a,
			     const char *text[ST_LEDGER_ATTEMPT_TEXTS]);

/* import_row's and import_flag's *outcome. */
enum { ST_LEDGER_IMPORT_ADDED, ST_LEDGER_IMPORT_SAME, ST_LEDGER_IMPORT_UPDATED };

extern const struct st_ledger_ops st_ledger_sqlite_ops;
extern const struct st_ledger_ops st_ledger_pg_ops;

/* NULL-terminated, in the order their claims are tried. */
extern const struct st_ledger_ops *const st_ledger_backends[];

#endif
