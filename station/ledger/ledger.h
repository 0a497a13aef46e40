/* The ledger: the durable record of every certificate the station issues. Nothing leaves
 * the station without a committed row. Two backends keep it (ledger_backend.h), picked by
 * the form of the `ledger:` value: a file path is SQLite in WAL mode, the embedded default,
 * one station's own; a postgresql:// URI or a libpq key=value connection string is a
 * PostgreSQL database that a line of stations shares (ledger_pg.c). Every guarantee below
 * holds for both; where the words are SQLite's (file, WAL, fsync), PostgreSQL's are said
 * beside them.
 *
 * Life of a row: an intent (written and committed before signing: serial, device id,
 * profile, CSR hash, public key hash, station, slot, time) -> signed (the certificate,
 * committed with its batch in one transaction, one fsync, before any certificate of the
 * batch is written to a board) -> delivered (after the board proved it holds the key) or
 * failed (with a reason). An intent that never got its certificate (a crash between the two
 * commits) stays listed as "possibly signed".
 *
 * Durability: every commit is synced to disk (WAL, synchronous=FULL) before it returns, and
 * a process killed at any moment leaves every committed transaction whole and nothing of an
 * uncommitted one; the next open replays the WAL. On PostgreSQL a commit returns once the
 * server confirms it (synchronous_commit on: flushed to the server's WAL, and to a standby's
 * when synchronous_standby_names names one); a station killed at any moment leaves the
 * server with whole committed transactions only.
 *
 * Uniqueness: serial and public key are unique among the rows that hold or may yet hold a
 * certificate, i.e. every row except a failed one without a certificate (a superseded or
 * abandoned intent: no certificate of it ever left the station, so its serial and key may be
 * used again). The device id is not unique in the table: whether a device id may get a second
 * certificate is the profile's reprovision policy, which the caller applies to the verdict of
 * st_ledger_lookup(); st_ledger_add_intent() only refuses two intents of one device id in
 * flight at once. On PostgreSQL these rules hold across every station of the database
 * (its own unique indexes, and one open intent per device id), rows and flags name their
 * station, and row ids and sequence numbers are unique across stations.
 *
 * Errors come back by what failed: ST_E_LEDGER_IO is the storage (disk full, an I/O error,
 * a database that cannot be reached: the same call may work once it is fixed),
 * ST_E_LEDGER_OPEN a file that cannot be opened or written (missing directory, no
 * permission, read-only file system), ST_E_LEDGER_BUSY another process's lock,
 * ST_E_LEDGER_CORRUPT a damaged file, ST_E_NOMEM, and ST_E_LEDGER_SQL any other failure of
 * a statement.
 *
 * Every function here blocks (disk, fsync, the network): never call one on the event loop
 * thread. A handle is used by one thread at a time (the signing pool's ledger thread;
 * commands); several processes may open the same file or database (readers never block
 * the writer). */
#ifndef ST_LEDGER_H
#define ST_LEDGER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

enum st_ledger_state {
	ST_LEDGER_INTENT,    /* about to be signed; "possibly signed" after a crash */
	ST_LEDGER_SIGNED,    /* certificate recorded, may be on its way to the board */
	ST_LEDGER_DELIVERED, /* the board holds it and proved its key */
	ST_LEDGER_FAILED,    /* given up, with a reason */
};

/* "intent", "signed", "delivered", "failed" ("?" for other values). */
const char *st_ledger_state_name(enum st_ledger_state s);

/* Parses a state name as written by st_ledger_state_name(). Returns the state (>= 0) or
 * ST_E_INVAL. */
int st_ledger_state_parse(const char *name);

struct st_ledger;

/* A row. Strings are owned by the row (st_ledger_row_free) when returned by the ledger;
 * when passed in, they are borrowed. */
struct st_ledger_row {
	int64_t id;
	char *serial;          /* lower-case hex, unique */
	char *device_id;
	char *profile;         /* profile (SKU) name; may be NULL */
	char *station;         /* station name */
	char *slot;            /* slot name; may be NULL */
	uint8_t csr_sha256[32];
	uint8_t pubkey_sha256[32]; /* SHA-256 of the SubjectPublicKeyInfo DER, unique */
	enum st_ledger_state state;
	uint8_t *cert_der;     /* NULL until signed */
	size_t cert_len;
	time_t not_before, not_after; /* 0 until signed */
	time_t created, signed_at, delivered_at; /* 0 when not yet */
	char *reason;          /* failure reason or NULL */
	char *auth_id;         /* the authorization it consumes a unit of, or NULL; out of
				* st_ledger_foreach only (other reads leave it NULL) */
};

/* Frees a row returned by the ledger and its strings; NULL is allowed. */
void st_ledger_row_free(struct st_ledger_row *row);

/* st_ledger_open_flags() flags. */
#define ST_LEDGER_NOCREATE 0x1u /* the file must exist and be a ledger already (commands
				 * that only read): an empty database is refused */

/* Opens (creating when absent) the ledger at path, WAL mode, synchronous=FULL, schema
 * migrated. station names this station in new rows (NULL: the host name). Returns 0 and
 * *out (close with st_ledger_close) or, with a message naming the file, *out NULL:
 * ST_E_LEDGER_OPEN (cannot open or create it), ST_E_LEDGER_CORRUPT (not a SQLite database,
 * a SQLite database that is not a station ledger, or damaged), ST_E_LEDGER_VERSION (written
 * by a newer station), ST_E_LEDGER_BUSY (another process held the lock too long),
 * ST_E_LEDGER_IO.
 *
 * PostgreSQL: path is the connection string; the database must exist, and its schema
 * station_ledger is created or migrated (ST_LEDGER_NOCREATE: it must be there already).
 * ST_E_LEDGER_OPEN also when the server cannot be reached or refuses the login,
 * ST_E_LEDGER_CORRUPT when the schema is not a ledger's, ST_E_INVAL for a connection string
 * that holds a password: libpq reads it from a password file (passfile=FILE in the string,
 * or PGPASSFILE), so that it is never in the configuration, a command line or a log. TLS is
 * libpq's: sslmode and the other ssl* words of the connection string. */
int st_ledger_open(const char *path, const char *station, struct st_ledger **out, char *err,
		   size_t errlen);

/* Same with flags (ST_LEDGER_NOCREATE: a missing file is ST_E_LEDGER_OPEN). */
int st_ledger_open_flags(const char *path, const char *station, unsigned flags,
			 struct st_ledger **out, char *err, size_t errlen);

/* Closes the handle; an open transaction is rolled back. NULL is allowed. */
void st_ledger_close(struct st_ledger *l);

/* How long a call waits for another process's lock before it fails with
 * ST_E_LEDGER_BUSY (default 5000 ms; 0: fail at once). On PostgreSQL: a row lock or a
 * unique index entry of another station's open transaction (lock_timeout). */
void st_ledger_set_busy_timeout(struct st_ledger *l, int ms);

/* The path the handle was opened with (owned by the handle). */
const char *st_ledger_path(const struct st_ledger *l);

/* Whether spec names a ledger file (SQLite) rather than a database server (a connection
 * string, which the configuration takes as it is instead of resolving it as a path). */
int st_ledger_spec_is_file(const char *spec);

/* What a call does when the database server cannot be reached (restarted, stopped, a
 * network cut, a failover); a ledger file never calls it. The call reconnects at once;
 * when that fails, wait() is called on the calling thread with the reason and the time to
 * wait before the next attempt (100 ms, doubling to 2 s): it returns 0 after waiting (it
 * may return early, to try sooner) to try again, or non-zero to give up: then the call
 * fails with ST_E_LEDGER_OPEN or ST_E_LEDGER_IO. back() (may be NULL) is called once when
 * the server answers again after wait() was called. Without a handler a call tries to
 * reconnect once. Either way, an open transaction that the server lost is replayed on the
 * new connection (same row ids, same results, or every later call and the commit fail with
 * ST_E_LEDGER_IO), and a commit whose answer was lost returns 0 only if the server says it
 * committed (else it is replayed and committed again): never twice. */
struct st_ledger_outage {
	int (*wait)(void *arg, const char *reason, unsigned ms);
	void (*back)(void *arg);
	void *arg;
};

/* Sets (outage non-NULL, copied) or clears the handler. */
void st_ledger_set_outage(struct st_ledger *l, const struct st_ledger_outage *outage);

/* What the ledger knows of a device id and public key before anything is signed. Rows that
 * are failed without a certificate (superseded or abandoned intents) are ignored. */
enum st_ledger_verdict {
	ST_LEDGER_NEW,          /* neither is known: issue */
	ST_LEDGER_RECORDED,     /* this device id with this key has a certificate (signed,
				 * delivered, or failed after signing): deliver it again (*row
				 * filled), never issue a second one */
	ST_LEDGER_KEY_REUSED,   /* the key is recorded (with or without a certificate yet) for
				 * another device id: refuse, flag */
	ST_LEDGER_ID_OTHER_KEY, /* the device id has a row for a different key: refuse and flag
				 * under the refuse policy; under reissue, issue when the request
				 * authenticated the device id, else refuse and flag. *row is the
				 * strongest such row (delivered, then signed, then failed with a
				 * certificate, then intent; newest first). When row->state is
				 * ST_LEDGER_INTENT the other key's intent is in flight on another
				 * slot or was left by a crash: st_ledger_add_intent() refuses with
				 * ST_E_LEDGER_DUP_ID until it is superseded (st_ledger_supersede) */
	ST_LEDGER_POSSIBLY_SIGNED, /* an intent without a certificate exists for this id and
				 * key: a crash came between signing and recording; issue anew:
				 * st_ledger_add_intent() marks that intent failed "superseded" in
				 * the same transaction (no certificate of it ever left the station) */
};

/* Looks device_id and pubkey_sha256 up. On ST_LEDGER_RECORDED, ST_LEDGER_KEY_REUSED and
 * ST_LEDGER_ID_OTHER_KEY, *row (if not NULL) gets the matching row (free it); on the other
 * verdicts and on error *row is NULL. Returns the verdict (>= 0) or a negative
 * ST_E_LEDGER_* code. Sees the rows of the caller's open transaction. Inside a transaction
 * the verdict holds until it ends: no other station can record the device id in between
 * (SQLite: the write lock; PostgreSQL: a lock on the device id until commit). */
int st_ledger_lookup(struct st_ledger *l, const char *device_id, const uint8_t pubkey_sha256[32],
		     struct st_ledger_row **row, char *err, size_t errlen);

/* The device id's newest live row (the highest id), whatever its key and state: the
 * certificate the station gave it last, or an intent in flight. A reissue that a device
 * authenticated with its certificate is for the holder of this one alone (pool.h). Returns
 * 0 and *row (free it), NULL when the device id has no live row; or a negative
 * ST_E_LEDGER_* code and *row NULL. Sees the rows of the caller's open transaction; after
 * st_ledger_lookup() of the same device id inside it, the answer holds until it ends. */
int st_ledger_newest(struct st_ledger *l, const char *device_id, struct st_ledger_row **row,
		     char *err, size_t errlen);

/* Group commit: everything between begin and commit is one transaction, one fsync. Begin
 * takes the write lock at once (waiting up to the busy timeout, then ST_E_LEDGER_BUSY); on
 * PostgreSQL stations write at once and wait only for rows another station's open
 * transaction holds (the busy timeout applies there).
 * Outside a transaction every call that writes commits (and syncs) on its own. A call that
 * fails inside a transaction undoes only its own change; the transaction stays open.
 * Begin inside a transaction or commit outside one is ST_E_INVAL. Rollback outside a
 * transaction does nothing and returns 0. When commit fails (disk full, fsync error) the
 * batch is not durable: none of its certificates may be delivered; roll back (if the error
 * message does not already say it was rolled back) and retry the batch or fail its slots. */
int st_ledger_begin(struct st_ledger *l, char *err, size_t errlen);
int st_ledger_commit(struct st_ledger *l, char *err, size_t errlen);
int st_ledger_rollback(struct st_ledger *l);

/* Inserts an intent row (state intent; serial, device_id, profile, slot, hashes from row;
 * station and time filled in). serial must be non-empty lower-case hex of at most 40
 * digits and device_id non-empty (ST_E_INVAL). Intents of the same device id and key
 * without a certificate are marked failed "superseded" first (see
 * ST_LEDGER_POSSIBLY_SIGNED). ST_E_LEDGER_DUP_SERIAL, ST_E_LEDGER_DUP_KEY when the serial or
 * key is recorded, ST_E_LEDGER_DUP_ID when an intent of this device id for another key is
 * open. *id gets the row id (0 on failure). */
int st_ledger_add_intent(struct st_ledger *l, const struct st_ledger_row *row, int64_t *id,
			 char *err, size_t errlen);

/* Marks an intent without a certificate failed with reason "superseded": the caller issues
 * anew instead (an operator: `station ledger supersede`). ST_E_NOTFOUND, or
 * ST_E_LEDGER_STATE when the row is not such an intent. */
int st_ledger_supersede(struct st_ledger *l, int64_t id, char *err, size_t errlen);

/* Records the certificate of an intent: state signed, cert DER, validity, signed_at.
 * ST_E_NOTFOUND, or ST_E_LEDGER_STATE when the row is no longer an intent (superseded or
 * failed meanwhile): then the certificate must not be delivered. */
int st_ledger_set_cert(struct st_ledger *l, int64_t id, const uint8_t *der, size_t len,
		       time_t not_before, time_t not_after, char *err, size_t errlen);

/* Marks a row delivered, or failed with a reason (its certificate, if any, stays).
 * Delivered needs a certificate (signed, failed after signing, or already delivered: the
 * first delivery time is kept; the reason is cleared). Failed is refused for a delivered
 * row: a board that proved its key keeps its record. Both: ST_E_NOTFOUND or
 * ST_E_LEDGER_STATE. */
int st_ledger_mark_delivered(struct st_ledger *l, int64_t id, char *err, size_t errlen);
int st_ledger_mark_failed(struct st_ledger *l, int64_t id, const char *reason, char *err,
			  size_t errlen);

/* Records a refused board (e.g. a recorded device id claimed with a different key, or a
 * key recorded for another device id) in the flags table with this station and the time.
 * device_id, pubkey_sha256 and slot may be NULL; reason is required. */
int st_ledger_flag(struct st_ledger *l, const char *device_id, const uint8_t pubkey_sha256[32],
		   const char *slot, const char *reason, char *err, size_t errlen);

/* A flag as st_ledger_foreach_flag() passes it (borrowed for the call). */
struct st_ledger_flag {
	int64_t id;
	time_t time;
	const char *station;
	const char *slot;         /* may be NULL */
	const char *device_id;    /* may be NULL */
	const uint8_t *pubkey_sha256; /* 32 bytes or NULL */
	const char *reason;
};

/* Allocates the next number of a profile's sequence device ids for prefix: unique and
 * increasing per prefix, never reused, also across restarts (committed before it
 * returns; inside a transaction, committed with it, and a rolled-back number was never
 * given to a committed row). First value is 1. */
int st_ledger_next_sequence(struct st_ledger *l, const char *prefix, uint64_t *n, char *err,
			    size_t errlen);

/* The number st_ledger_next_sequence() would hand out next for prefix (1 when it never
 * has): the numbers below it, from 1, are the ones this ledger issued. */
int st_ledger_sequence_next(struct st_ledger *l, const char *prefix, uint64_t *next,
			    char *err, size_t errlen);

/* Reads one row by id or by serial (the live row when a superseded intent shares the
 * serial). Returns 0 and *row (free it), or ST_E_NOTFOUND; *row is NULL on failure. */
int st_ledger_get(struct st_ledger *l, int64_t id, struct st_ledger_row **row, char *err,
		  size_t errlen);
int st_ledger_get_serial(struct st_ledger *l, const char *serial, struct st_ledger_row **row,
			 char *err, size_t errlen);

/* Calls fn for every row in id order, in one read snapshot (fn returns non-zero to stop; the
 * row is borrowed for the call). fn may call other ledger functions on l, but not
 * st_ledger_foreach itself. Returns 0 (also when fn stopped) or ST_E_LEDGER_*. */
int st_ledger_foreach(struct st_ledger *l, int (*fn)(const struct st_ledger_row *row, void *arg),
		      void *arg, char *err, size_t errlen);

/* Calls fn for every flag in id order, as st_ledger_foreach(). */
int st_ledger_foreach_flag(struct st_ledger *l,
			   int (*fn)(const struct st_ledger_flag *flag, void *arg), void *arg,
			   char *err, size_t errlen);

/* Runs SQLite's full integrity check of the file. Returns 0, or ST_E_LEDGER_CORRUPT with
 * the first problem found. Slow on a big ledger (reads every page). On PostgreSQL, whose
 * server checks its own pages: the schema version, and the unique indexes that carry the
 * ledger's rules present and valid. */
int st_ledger_integrity(struct st_ledger *l, char *err, size_t errlen);

/* Copies the ledger to dest while a station may keep writing to it: SQLite's online backup
 * in one step, i.e. one read snapshot of the committed transactions, which neither waits for
 * nor blocks the writer (WAL). The copy is written to a temporary file beside dest, checked
 * (PRAGMA quick_check), synced, renamed over dest and its directory synced, so dest is the
 * old file or a whole new copy, never a part of one; mode 0600. The copy is a ledger that
 * st_ledger_open() and the sqlite3 tool open as they are. Not inside a transaction
 * (ST_E_INVAL). Returns 0, or ST_E_LEDGER_IO (cannot write dest, disk full, the copy does
 * not check), ST_E_LEDGER_BUSY, ST_E_NOMEM, ST_E_INVAL (no dest, dest is a directory), with
 * a message naming dest. Blocks on disk I/O for the size of the ledger. A PostgreSQL
 * ledger is not copied this way: ST_E_INVAL, with a message naming pg_dump (the database is
 * backed up as a database: pg_dump, the server's base backups and WAL archive; `station
 * ledger export` writes its rows). */
int st_ledger_backup(struct st_ledger *l, const char *dest, char *err, size_t errlen);

/* What st_ledger_import() did. */
struct st_ledger_import_stats {
	uint64_t rows;         /* rows read from the source */
	uint64_t rows_added;   /* new in the destination */
	uint64_t rows_updated; /* imported before, brought up to date (a later state) */
	uint64_t flags, flags_added;
	uint64_t sequences;
	uint64_t auths, auths_added;       /* authorizations; the others were there already */
	uint64_t attempts, attempts_added; /* attempts; the others were imported before */
	uint64_t conflicts;    /* rows refused: their serial, key or open intent is another's */
};

/* Moves the history of the ledger from into the ledger to (a PostgreSQL ledger; another
 * backend is ST_E_INVAL), in one transaction of to: every authorization (its id, document
 * hash, units, lot, validity, when and by which station it was registered), every row as it
 * is (its station, state, certificate, times and the authorization it consumes a unit of),
 * every flag, every sequence (to's next number raised to from's when lower, so that a
 * number from's station handed out is never handed out again), and every attempt (naming
 * its certificate's row in to). to counts the units itself as the rows come in: an
 * authorization that to records already for the same document (hash and units) is the same
 * one, its count then holding the rows of both ledgers, and a row that would go beyond its
 * units ends the import with ST_E_AUTH_EXHAUSTED; one that to records for another document
 * ends it with ST_E_AUTH_CONFLICT, naming the id. Nothing is committed then.
 * Idempotent: a row, flag or attempt imported before is recognised by its station and its
 * id in from, an authorization by its id, so running it twice adds each once and counts no
 * unit twice (a row whose state moved on since is brought up to date). to's unique rules
 * are checked as it goes: a row whose serial or key another row holds (another station's,
 * or another row of from), or whose device id has another key's open intent, is a
 * conflict: conflict(arg, msg) (may be NULL) is told each, and when there is any, nothing
 * is committed and the call returns ST_E_LEDGER_DUP_SERIAL (with the count in err).
 * Returns 0 and *stats, or a negative ST_E_* code. Not inside a transaction of to
 * (ST_E_INVAL). */
int st_ledger_import(struct st_ledger *to, struct st_ledger *from,
		     void (*conflict)(void *arg, const char *msg), void *arg,
		     struct st_ledger_import_stats *stats, char *err, size_t errlen);

/* Test hooks (fault injection): fn runs at these points of every commit, including the
 * implicit commit of a write outside a transaction. A crash test kills the process there. */
enum st_ledger_hook_point {
	ST_LEDGER_HOOK_COMMIT_START, /* committing began; nothing of it is in the WAL yet */
	ST_LEDGER_HOOK_COMMIT_DONE,  /* the transaction is in the WAL and synced, the call has
				      * not returned yet */
	ST_LEDGER_HOOK_STATEMENT,    /* a statement began (SQLite only: the cost per board is
				      * counted in statements) */
};

/* Sets (fn non-NULL) or clears the hook. fn must not call the ledger. */
void st_ledger_set_hook(struct st_ledger *l, void (*fn)(enum st_ledger_hook_point point,
							 void *arg),
			void *arg);

/* ---- Production authorizations ------------------------------------------------------ *
 *
 * An authorization (station/auth.h) allows a number of certificates (units). The ledger
 * counts them: a row consumes one unit of the authorization it names (auth_id) for as long
 * as it holds or may yet hold a certificate, i.e. exactly while it is live in the sense of
 * the uniqueness rule above: an intent in flight (or left "possibly signed" by a crash) and
 * every row with a certificate consume one; a superseded or abandoned intent without a
 * certificate gives its unit back. The count is kept by the database in the writer's own
 * transaction (SQLite: triggers and a CHECK; a shared database must do the same), so it is
 * exact across crashes and across every station on one database: a unit can neither be
 * lost (consumed by a row that never got a certificate) nor counted twice. Re-delivering a
 * recorded certificate adds no row and so consumes nothing. */

/* An authorization as the ledger records it. In: the caller's strings, borrowed. Out (from
 * st_ledger_foreach_auth): borrowed for the callback. */
struct st_ledger_auth {
	const char *id;         /* the document's unique id, 1..64 bytes */
	uint8_t doc_sha256[32]; /* SHA-256 of the signed document (its DER) */
	int64_t units;          /* certificates it allows, >= 1 */
	const char *lot;        /* lot or job id; may be NULL */
	time_t not_before, not_after;
	/* Filled by st_ledger_foreach_auth() only. */
	int64_t used;           /* units consumed, by every station */
	time_t registered;      /* when a station first recorded it */
	const char *station;    /* that station */
};

/* Records authorization a when the ledger does not know its id yet (with this station and
 * the time), or checks that the recorded one is the same document (hash and units). *used
 * (may be NULL) gets the units consumed so far by every station. Returns 0,
 * ST_E_AUTH_CONFLICT (the id is recorded for another document: refuse this one),
 * ST_E_INVAL, or ST_E_LEDGER_*. Inside a transaction or on its own, like every write. */
int st_ledger_auth_register(struct st_ledger *l, const struct st_ledger_auth *a, int64_t *used,
			    char *err, size_t errlen);

/* st_ledger_add_intent() that consumes one unit of the registered authorization auth_id in
 * the same step: the intent and the unit are written together or not at all. *used and
 * *units (may be NULL) get the authorization's count after this intent and its units.
 * Returns 0 and *id, or what st_ledger_add_intent() returns, or ST_E_AUTH_EXHAUSTED (every
 * unit is consumed: nothing was written), ST_E_NOTFOUND (auth_id is not registered). */
int st_ledger_add_intent_auth(struct st_ledger *l, const struct st_ledger_row *row,
			      const char *auth_id, int64_t *id, int64_t *used, int64_t *units,
			      char *err, size_t errlen);

/* Calls fn for every recorded authorization, oldest first (fn returns non-zero to stop).
 * Returns 0 or ST_E_LEDGER_*. */
int st_ledger_foreach_auth(struct st_ledger *l,
			   int (*fn)(const struct st_ledger_auth *a, void *arg), void *arg,
			   char *err, size_t errlen);

/* The units of authorization auth_id each station consumed: certificates (rows with a
 * certificate) and pending (intents without one yet: in flight, or left by a crash until the
 * board comes back), by station name. Returns 0 or ST_E_LEDGER_*. */
int st_ledger_auth_stations(struct st_ledger *l, const char *auth_id,
			    int (*fn)(const char *station, int64_t certificates, int64_t pending,
				      void *arg),
			    void *arg, char *err, size_t errlen);

/* Calls fn for every row of authorization auth_id that holds a certificate (whatever its
 * state), in id order; the row is borrowed for the call. Returns 0 or ST_E_LEDGER_*. */
int st_ledger_foreach_auth_cert(struct st_ledger *l, const char *auth_id,
				int (*fn)(const struct st_ledger_row *row, void *arg), void *arg,
				char *err, size_t errlen);

/* ---- Production records: every attempt ---------------------------------------------- *
 *
 * One row per board the station finished, passed or not, and per board abandoned when the
 * station stopped: what the board reported, what became of it and why. Certificates stay in
 * their own table; an attempt names its certificate's row when it has one. */

struct st_ledger_attempt {
	int64_t id;             /* out */
	time_t time;            /* when it ended; 0 on input: now */
	const char *station;    /* out; on input this handle's station is used */
	const char *slot;       /* slot name or "http:..."; may be NULL */
	const char *outcome;    /* "pass", "fail" or "abandoned" (required) */
	const char *reason;     /* fail/abandoned: the code's name ("CSR_SIGNATURE") */
	const char *error;      /* fail/abandoned: the message */
	const char *device_id, *serial; /* the certificate's serial (hex) when it got one */
	const char *board_sn, *hardware_id, *sku, *firmware; /* as the board reported them */
	const char *profile;    /* profile (SKU) name */
	const char *auth_id;    /* the authorization it consumed a unit of, or NULL */
	const char *lot;        /* out: that authorization's lot, or NULL */
	int64_t certificate;    /* its row in the certificates table, 0: none */
	int reused;             /* 1: a recorded certificate was delivered again */
	int64_t ms;             /* how long the board took, -1: unknown */
};

/* Records an attempt (strings borrowed; "" is stored as NULL). ST_E_INVAL without an
 * outcome. Returns 0 or ST_E_LEDGER_*. */
int st_ledger_add_attempt(struct st_ledger *l, const struct st_ledger_attempt *a, char *err,
			  size_t errlen);

/* Calls fn for every attempt with since <= time < until (until 0: no end), in id order; the
 * attempt and its strings are borrowed for the call (fn returns non-zero to stop). Returns 0
 * or ST_E_LEDGER_*. */
int st_ledger_foreach_attempt(struct st_ledger *l, time_t since, time_t until,
			      int (*fn)(const struct st_ledger_attempt *a, void *arg), void *arg,
			      char *err, size_t errlen);

#endif
