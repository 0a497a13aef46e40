/* The ledger on SQLite: WAL journal, synchronous=FULL (every commit is fsynced before it
 * returns), a busy timeout for other processes reading or writing the same file, the schema
 * version in PRAGMA user_version and a station-specific PRAGMA application_id so that a
 * foreign database is never mistaken for a ledger, and every statement prepared once per
 * handle (the signing pool commits batches of hundreds of rows).
 *
 * What each commit (one fsync of the WAL) of a board protects; the signing pool's ledger
 * rounds carry many boards in each, so a board pays a share of each:
 *  - its intent, before the CA signs: no certificate exists that the ledger cannot account
 *    for. After a crash the row reads "possibly signed" and its serial and key stay taken.
 *  - its certificate, before a byte of it goes to the board: what a board may hold is
 *    recorded, so a board cut off mid-write gets the same certificate again, never another.
 *    These two cannot be merged or swapped: the intent must be durable before the signature
 *    exists, the certificate before the board sees it.
 *  - its delivered (or failed) mark and its attempt: the production record. Nothing waits
 *    on them and nothing is ordered after them, so they ride with whatever round commits
 *    next; lost in a crash, the row still reads "signed" and the board's next run is
 *    delivered the recorded certificate again.
 * Statements per new board (counted by ST_LEDGER_HOOK_STATEMENT; BEGIN and COMMIT are
 * shared by the round): the lookup's two index probes, the intent's look at the device's
 * open intents and its INSERT (the unique indexes check serial and key; what they refused
 * is looked up only then), the certificate's UPDATE, the mark's UPDATE: 6, where they were
 * 10. One statement merging the lookup's two probes (UNION ALL, or OR over the two
 * indexes) was measured slower than the two. No statement of a board's life builds a
 * temporary b-tree (see migration 3 -> 4 and the lookups): SQLite made one for each IN list
 * of three values or more and for each ORDER BY a lookup's index did not give, pages
 * allocated and zeroed every time, and the ledger thread spent more instructions on them
 * than on the rows (bench_http, callgrind: 370,000 instructions a registration before,
 * 156,000 after). A mark rewrites the row with its certificate
 * (SQLite writes whole records): ~3 us a mark in rounds of 64 against ~0.5 us for rows
 * without one; the certificate stays in its row all the same, where the operators'
 * queries, `station ledger check` and the imports find it. Each row's keys land on index
 * pages of their own (random serials, key hashes, device ids), which a commit writes whole:
 * pages of 1 or 2 KiB instead of SQLite's 4 were measured (bench_ledger): 2 KiB no
 * faster, 1 KiB slower. */
#include "ledger.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "err.h"
#include "ledger_backend.h"
#include "log.h"

/* "STLG": marks the file as a station ledger (PRAGMA application_id). */
#define LEDGER_APP_ID 0x53544c47

/* How long a statement waits for another process's lock before giving up, by default. */
#define LEDGER_BUSY_MS 5000

/* Frames in the WAL after which a commit checkpoints (SQLite's default). */
#define LEDGER_CHECKPOINT_FRAMES 1000

/* A row that holds or may yet hold a certificate: serial and key are unique among these. A
 * failed row without a certificate is a superseded or abandoned intent. LIVE_V1 says it from
 * the row's state, as schema versions 1 and 2 indexed it; since version 3 the row's column
 * dropped says it, which only that one change of state writes, so the certificate and the
 * delivered mark do not touch the unique indexes (two random pages each, every board). */
#define LIVE_V1 "(state <> 'failed' OR cert_der IS NOT NULL)"
#define LIVE "dropped IS NULL"

/* The body of version 3's triggers: a row whose dropped disagrees with its state has it set
 * from the state. */
#define SET_DROPPED                                                                          \
	"  WHEN (NEW.dropped IS NULL) IS NOT (NEW.state <> 'failed' OR NEW.cert_der IS NOT NULL)\n" \
	"BEGIN UPDATE certificates SET dropped = CASE WHEN " LIVE_V1 " THEN NULL ELSE 1 END\n"   \
	"  WHERE id = NEW.id; END;\n"

/* The columns of certificates from the first schema, their CHECKs but state's the same in
 * every version, a comma after the last. */
#define CERT_COLUMNS(state_check)                                                           \
	"  id INTEGER PRIMARY KEY,\n"                                                       \
	"  serial TEXT NOT NULL CHECK (length(serial) BETWEEN 1 AND 40),\n"                 \
	"  device_id TEXT NOT NULL CHECK (length(device_id) > 0),\n"                        \
	"  profile TEXT,\n"                                                                 \
	"  station TEXT NOT NULL,\n"                                                        \
	"  slot TEXT,\n"                                                                    \
	"  csr_sha256 BLOB NOT NULL CHECK (length(csr_sha256) = 32),\n"                     \
	"  pubkey_sha256 BLOB NOT NULL CHECK (length(pubkey_sha256) = 32),\n"               \
	"  state TEXT NOT NULL CHECK (" state_check "),\n"                                  \
	"  cert_der BLOB,\n"                                                                \
	"  not_before INTEGER,\n"                                                           \
	"  not_after INTEGER,\n"                                                            \
	"  created INTEGER NOT NULL,\n"                                                     \
	"  signed_at INTEGER,\n"                                                            \
	"  delivered_at INTEGER,\n"                                                         \
	"  reason TEXT,\n"

/* The table of attempts, named name, outcome's CHECK the only difference between
 * versions. */
#define ATTEMPTS_TABLE(name, outcome_check)                                                 \
	"CREATE TABLE " name " (\n"                                                         \
	"  id INTEGER PRIMARY KEY,\n"                                                       \
	"  time INTEGER NOT NULL,\n"                                                        \
	"  station TEXT NOT NULL,\n"                                                        \
	"  slot TEXT,\n"                                                                    \
	"  outcome TEXT NOT NULL CHECK (" outcome_check "),\n"                              \
	"  reason TEXT,\n"                                                                  \
	"  error TEXT,\n"                                                                   \
	"  device_id TEXT,\n"                                                               \
	"  serial TEXT,\n"                                                                  \
	"  board_sn TEXT,\n"                                                                \
	"  hardware_id TEXT,\n"                                                             \
	"  sku TEXT,\n"                                                                     \
	"  firmware TEXT,\n"                                                                \
	"  profile TEXT,\n"                                                                 \
	"  auth_id TEXT,\n"                                                                 \
	"  certificate INTEGER,\n"                                                          \
	"  reused INTEGER NOT NULL DEFAULT 0,\n"                                            \
	"  ms INTEGER);\n"

/* Version 2's triggers counting an authorization's units (see migration 1 -> 2), and
 * version 3's keeping dropped (see LIVE); version 4 makes them again on its rebuilt table. */
#define AUTH_TRIGGERS                                                                        \
	"CREATE TRIGGER certificates_auth_insert AFTER INSERT ON certificates\n"                \
	"  WHEN NEW.auth_id IS NOT NULL AND (NEW.state <> 'failed' OR NEW.cert_der IS NOT NULL)\n" \
	"BEGIN UPDATE authorizations SET used = used + 1 WHERE id = NEW.auth_id; END;\n"        \
	"CREATE TRIGGER certificates_auth_update\n"                                              \
	"  AFTER UPDATE OF state, cert_der, auth_id ON certificates\n"                           \
	"  WHEN OLD.auth_id IS NOT NULL OR NEW.auth_id IS NOT NULL\n"                            \
	"BEGIN\n"                                                                                \
	"  UPDATE authorizations SET used = used - 1 WHERE id = OLD.auth_id\n"                   \
	"    AND (OLD.state <> 'failed' OR OLD.cert_der IS NOT NULL);\n"                         \
	"  UPDATE authorizations SET used = used + 1 WHERE id = NEW.auth_id\n"                   \
	"    AND (NEW.state <> 'failed' OR NEW.cert_der IS NOT NULL);\n"                         \
	"END;\n"                                                                                 \
	"CREATE TRIGGER certificates_auth_delete AFTER DELETE ON certificates\n"                 \
	"  WHEN OLD.auth_id IS NOT NULL AND (OLD.state <> 'failed' OR OLD.cert_der IS NOT NULL)\n" \
	"BEGIN UPDATE authorizations SET used = used - 1 WHERE id = OLD.auth_id; END;\n"
#define DROPPED_TRIGGERS                                                                     \
	"CREATE TRIGGER certificates_dropped_insert AFTER INSERT ON certificates\n" SET_DROPPED  \
	"CREATE TRIGGER certificates_dropped_update\n"                                           \
	"  AFTER UPDATE OF state, cert_der, dropped ON certificates\n" SET_DROPPED

#define ROW_COLUMNS                                                                         \
	"id, serial, device_id, profile, station, slot, csr_sha256, pubkey_sha256, state, " \
	"cert_der, not_before, not_after, created, signed_at, delivered_at, reason"

/* The columns of attempts, id first. */
#define ATTEMPT_COLUMNS                                                                     \
	"id, time, station, slot, outcome, reason, error, device_id, serial, board_sn, "     \
	"hardware_id, sku, firmware, profile, auth_id, certificate, reused, ms"

/* Version 4's copies of the rows into its rebuilt tables, but for the rows they take: the
 * migration takes them all (ORDER BY id), refused_row() one at a time. */
#define COPY_CERTIFICATES_V4                                                                \
	"INSERT INTO certificates_v4 (" ROW_COLUMNS ", auth_id, dropped)\n"                   \
	"  SELECT " ROW_COLUMNS ", auth_id, dropped FROM certificates"
#define COPY_ATTEMPTS_V4                                                                    \
	"INSERT INTO attempts_v4 (" ATTEMPT_COLUMNS ")\n"                                      \
	"  SELECT " ATTEMPT_COLUMNS " FROM attempts"

/* Schema migrations: migrations[i] brings a ledger from version i to i + 1. A new version is
 * one more entry (ALTER TABLE, new tables); never edit an entry that has shipped. */
static const char *const migrations[] = {
	/* 0 -> 1: the first schema. */
	"CREATE TABLE certificates (\n"
	CERT_COLUMNS("state IN ('intent', 'signed', 'delivered', 'failed')")
	"  CHECK (state IN ('intent', 'failed') OR cert_der IS NOT NULL));\n"
	"CREATE UNIQUE INDEX certificates_serial ON certificates (serial)\n"
	"  WHERE " LIVE_V1 ";\n"
	"CREATE UNIQUE INDEX certificates_pubkey ON certificates (pubkey_sha256)\n"
	"  WHERE " LIVE_V1 ";\n"
	"CREATE INDEX certificates_device ON certificates (device_id);\n"
	"CREATE TABLE sequences (\n"
	"  prefix TEXT PRIMARY KEY,\n"
	"  next INTEGER NOT NULL CHECK (next >= 1));\n"
	"CREATE TABLE flags (\n"
	"  id INTEGER PRIMARY KEY,\n"
	"  time INTEGER NOT NULL,\n"
	"  station TEXT NOT NULL,\n"
	"  slot TEXT,\n"
	"  device_id TEXT,\n"
	"  pubkey_sha256 BLOB CHECK (pubkey_sha256 IS NULL OR length(pubkey_sha256) = 32),\n"
	"  reason TEXT NOT NULL);\n",
	/* 1 -> 2: production authorizations and the record of every attempt. A row consumes a
	 * unit of its authorization (auth_id) while it holds or may yet hold a certificate
	 * (LIVE); the triggers keep authorizations.used equal to the count of such rows, and the
	 * CHECK refuses the row that would go beyond the units, so the database itself counts,
	 * for every station writing to it, within the writer's transaction. */
	"CREATE TABLE authorizations (\n"
	"  id TEXT PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 64),\n"
	"  doc_sha256 BLOB NOT NULL CHECK (length(doc_sha256) = 32),\n"
	"  units INTEGER NOT NULL CHECK (units >= 1),\n"
	"  used INTEGER NOT NULL DEFAULT 0,\n"
	"  lot TEXT,\n"
	"  not_before INTEGER,\n"
	"  not_after INTEGER,\n"
	"  registered INTEGER NOT NULL,\n"
	"  station TEXT NOT NULL,\n"
	"  CHECK (used >= 0 AND used <= units));\n"
	"ALTER TABLE certificates ADD COLUMN auth_id TEXT REFERENCES authorizations (id);\n"
	"CREATE INDEX certificates_auth ON certificates (auth_id) WHERE auth_id IS NOT NULL;\n"
	AUTH_TRIGGERS
	ATTEMPTS_TABLE("attempts", "outcome IN ('pass', 'fail', 'abandoned')")
	"CREATE INDEX attempts_time ON attempts (time);\n",
	/* 2 -> 3: liveness in a column of its own (see LIVE). The trigger keeps dropped equal to
	 * LIVE_V1's negation whatever a writer sets, in the writer's statement. A row only ever
	 * leaves the live set, so the unique indexes are never checked late. */
	"ALTER TABLE certificates ADD COLUMN dropped INTEGER CHECK (dropped IS NULL OR dropped = 1);\n"
	"UPDATE certificates SET dropped = 1 WHERE NOT " LIVE_V1 ";\n"
	"DROP INDEX IF EXISTS certificates_serial;\n"
	"DROP INDEX IF EXISTS certificates_pubkey;\n"
	"CREATE UNIQUE INDEX certificates_serial ON certificates (serial) WHERE " LIVE ";\n"
	"CREATE UNIQUE INDEX certificates_pubkey ON certificates (pubkey_sha256) WHERE " LIVE ";\n"
	DROPPED_TRIGGERS,
	/* 3 -> 4: the same two tables with their CHECKs of three or four values written as
	 * comparisons. SQLite (3.40) tests `x IN (a, b, c)` against a temporary b-tree of the
	 * list that it builds each time the constraint is checked (its pages allocated and
	 * zeroed): every INSERT and every change of state paid for one, a delivered mark for
	 * two (its WHERE had one too), over half of the mark's CPU. A CHECK cannot be altered in
	 * SQLite: the tables are rebuilt, their ids kept. DROP TABLE's implicit delete fires no
	 * trigger and the new table has none until its rows are in, so authorizations.used is
	 * not touched. */
	"CREATE TABLE certificates_v4 (\n"
	CERT_COLUMNS("state = 'intent' OR state = 'signed' OR state = 'delivered' OR "
		     "state = 'failed'")
	"  auth_id TEXT REFERENCES authorizations (id),\n"
	"  dropped INTEGER CHECK (dropped IS NULL OR dropped = 1),\n"
	"  CHECK (state = 'intent' OR state = 'failed' OR cert_der IS NOT NULL));\n"
	COPY_CERTIFICATES_V4 " ORDER BY id;\n"
	"DROP TABLE certificates;\n"
	"ALTER TABLE certificates_v4 RENAME TO certificates;\n"
	"CREATE UNIQUE INDEX certificates_serial ON certificates (serial) WHERE " LIVE ";\n"
	"CREATE UNIQUE INDEX certificates_pubkey ON certificates (pubkey_sha256) WHERE " LIVE ";\n"
	"CREATE INDEX certificates_device ON certificates (device_id);\n"
	"CREATE INDEX certificates_auth ON certificates (auth_id) WHERE auth_id IS NOT NULL;\n"
	AUTH_TRIGGERS DROPPED_TRIGGERS
	ATTEMPTS_TABLE("attempts_v4",
		       "outcome = 'pass' OR outcome = 'fail' OR outcome = 'abandoned'")
	COPY_ATTEMPTS_V4 " ORDER BY id;\n"
	"DROP TABLE attempts;\n"
	"ALTER TABLE attempts_v4 RENAME TO attempts;\n"
	"CREATE INDEX attempts_time ON attempts (time);\n",
};
#define LEDGER_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

enum stmt_id {
	S_BEGIN,
	S_COMMIT,
	S_ROLLBACK,
	S_SAVEPOINT,
	S_RELEASE,
	S_ROLLBACK_TO,
	S_INSERT,
	S_INTENTS_OF_DEVICE,
	S_LIVE_SERIAL,
	S_LIVE_KEY,
	S_LIVE_KEY_ID,
	S_LIVE_DEVICE,
	S_NEWEST_DEVICE,
	S_SUPERSEDE,
	S_SET_CERT,
	S_DELIVERED,
	S_FAILED,
	S_STATE,
	S_GET,
	S_GET_SERIAL,
	S_GET_SERIAL_DEAD,
	S_ALL,
	S_SEQUENCE,
	S_FLAG,
	S_ALL_FLAGS,
	S_AUTH_REGISTER,
	S_AUTH_GET,
	S_AUTH_TAKE,
	S_AUTH_ALL,
	S_AUTH_STATIONS,
	S_AUTH_CERTS,
	S_ATTEMPT,
	S_ATTEMPTS,
	S_COUNT_
};

static const char *const stmt_sql[S_COUNT_] = {
	[S_BEGIN] = "BEGIN IMMEDIATE",
	[S_COMMIT] = "COMMIT",
	[S_ROLLBACK] = "ROLLBACK",
	[S_SAVEPOINT] = "SAVEPOINT st_ledger_row",
	[S_RELEASE] = "RELEASE st_ledger_row",
	[S_ROLLBACK_TO] = "ROLLBACK TO st_ledger_row",
	[S_INSERT] = "INSERT INTO certificates (serial, device_id, profile, station, slot, "
		     "csr_sha256, pubkey_sha256, state, created) "
		     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'intent', ?8)",
	[S_INTENTS_OF_DEVICE] = "SELECT id, pubkey_sha256, slot FROM certificates "
				"WHERE device_id = ?1 AND state = 'intent' ORDER BY id",
	[S_LIVE_SERIAL] = "SELECT id, device_id, state FROM certificates "
			  "WHERE serial = ?1 AND " LIVE " LIMIT 1",
	/* Neither lookup has an ORDER BY: SQLite would sort in a temporary b-tree, made for
	 * every lookup even when no row matches (its pages allocated and zeroed). The key's
	 * unique index allows one live row at most; the device's rows, few, are ranked by
	 * strongest_row(). */
	[S_LIVE_KEY] = "SELECT " ROW_COLUMNS " FROM certificates "
		       "WHERE pubkey_sha256 = ?1 AND " LIVE,
	[S_LIVE_KEY_ID] = "SELECT id, device_id, state FROM certificates "
			  "WHERE pubkey_sha256 = ?1 AND " LIVE " LIMIT 1",
	[S_LIVE_DEVICE] = "SELECT " ROW_COLUMNS " FROM certificates "
			  "WHERE device_id = ?1 AND pubkey_sha256 <> ?2 AND " LIVE,
	[S_NEWEST_DEVICE] = "SELECT " ROW_COLUMNS " FROM certificates "
			    "WHERE device_id = ?1 AND " LIVE " ORDER BY id DESC LIMIT 1",
	[S_SUPERSEDE] = "UPDATE certificates SET state = 'failed', reason = 'superseded' "
			"WHERE id = ?1 AND state = 'intent'",
	[S_SET_CERT] = "UPDATE certificates SET state = 'signed', cert_der = ?2, "
		       "not_before = ?3, not_after = ?4, signed_at = ?5 "
		       "WHERE id = ?1 AND state = 'intent'",
	[S_DELIVERED] = "UPDATE certificates SET state = 'delivered', reason = NULL, "
			"delivered_at = coalesce(delivered_at, ?2) "
			"WHERE id = ?1 AND cert_der IS NOT NULL AND state <> 'intent'",
	[S_FAILED] = "UPDATE certificates SET state = 'failed', reason = ?2 "
		     "WHERE id = ?1 AND state <> 'delivered'",
	[S_STATE] = "SELECT state, cert_der IS NOT NULL, reason FROM certificates WHERE id = ?1",
	[S_GET] = "SELECT " ROW_COLUMNS " FROM certificates WHERE id = ?1",
	[S_GET_SERIAL] = "SELECT " ROW_COLUMNS " FROM certificates "
			 "WHERE serial = ?1 AND " LIVE " LIMIT 1",
	/* Only superseded intents hold the serial: rare, and the table is scanned. */
	[S_GET_SERIAL_DEAD] = "SELECT " ROW_COLUMNS " FROM certificates "
			      "WHERE serial = ?1 ORDER BY id DESC LIMIT 1",
	/* With the authorization each row consumes a unit of, for an import elsewhere. */
	[S_ALL] = "SELECT " ROW_COLUMNS ", auth_id FROM certificates ORDER BY id",
	[S_SEQUENCE] = "INSERT INTO sequences (prefix, next) VALUES (?1, 2) "
		       "ON CONFLICT (prefix) DO UPDATE SET next = next + 1 RETURNING next - 1",
	[S_FLAG] = "INSERT INTO flags (time, station, slot, device_id, pubkey_sha256, reason) "
		   "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	[S_ALL_FLAGS] = "SELECT id, time, station, slot, device_id, pubkey_sha256, reason "
			"FROM flags ORDER BY id",
	[S_AUTH_REGISTER] = "INSERT INTO authorizations (id, doc_sha256, units, lot, "
			    "not_before, not_after, registered, station) "
			    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (id) DO NOTHING",
	[S_AUTH_GET] = "SELECT doc_sha256, units, used FROM authorizations WHERE id = ?1",
	[S_AUTH_TAKE] = "UPDATE certificates SET auth_id = ?2 WHERE id = ?1 AND auth_id IS NULL",
	[S_AUTH_ALL] = "SELECT id, doc_sha256, units, used, lot, not_before, not_after, "
		       "registered, station FROM authorizations ORDER BY registered, id",
	[S_AUTH_STATIONS] = "SELECT station, sum(cert_der IS NOT NULL), sum(cert_der IS NULL) "
			    "FROM certificates WHERE auth_id = ?1 AND " LIVE
			    " GROUP BY station ORDER BY station",
	[S_AUTH_CERTS] = "SELECT " ROW_COLUMNS " FROM certificates "
			 "WHERE auth_id = ?1 AND cert_der IS NOT NULL ORDER BY id",
	[S_ATTEMPT] = "INSERT INTO attempts (time, station, slot, outcome, reason, error, "
		      "device_id, serial, board_sn, hardware_id, sku, firmware, profile, auth_id, "
		      "certificate, reused, ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, "
		      "?11, ?12, ?13, ?14, ?15, ?16, ?17)",
	[S_ATTEMPTS] = "SELECT t.id, t.time, t.station, t.slot, t.outcome, t.reason, t.error, "
		       "t.device_id, t.serial, t.board_sn, t.hardware_id, t.sku, t.firmware, "
		       "t.profile, t.auth_id, a.lot, t.certificate, t.reused, t.ms "
		       "FROM attempts t LEFT JOIN authorizations a ON a.id = t.auth_id "
		       "WHERE t.time >= ?1 AND t.time < ?2 ORDER BY t.id",
};

struct sq_ledger {
	sqlite3 *db;
	char *path;
	char *station;
	sqlite3_stmt *stmt[S_COUNT_];
	int iterating; /* inside st_ledger_foreach: its statement is in use */
	int busy_ms;   /* the busy timeout */
	void (*hook)(enum st_ledger_hook_point point, void *arg);
	void *hook_arg;
};

static void sq_close(void *inst);
static void sq_set_busy_timeout(void *inst, int ms);
static int sq_rollback(void *inst);

static const char *const state_names[] = {
	[ST_LEDGER_INTENT] = "intent",
	[ST_LEDGER_SIGNED] = "signed",
	[ST_LEDGER_DELIVERED] = "delivered",
	[ST_LEDGER_FAILED] = "failed",
};

const char *st_ledger_state_name(enum st_ledger_state s)
{
	if ((unsigned)s >= sizeof(state_names) / sizeof(state_names[0]))
		return "?";
	return state_names[s];
}

int st_ledger_state_parse(const char *name)
{
	size_t i;

	for (i = 0; name && i < sizeof(state_names) / sizeof(state_names[0]); i++) {
		if (strcmp(name, state_names[i]) == 0)
			return (int)i;
	}
	return ST_E_INVAL;
}

static const char *sq_path(const void *inst)
{
	const struct sq_ledger *l = inst;

	return l->path;
}

/* Turns a SQLite result code into an ST_E_LEDGER_* code with a message naming the file,
 * what was being done and SQLite's own words. */
static int db_error(struct sq_ledger *l, int rc, const char *what, char *err, size_t errlen)
{
	const char *msg = l->db ? sqlite3_errmsg(l->db) : sqlite3_errstr(rc);
	int code;

	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return st_errf(err, errlen, ST_E_LEDGER_BUSY,
			       "ledger %s: %s: another process held it locked for more than %d ms",
			       l->path, what, l->busy_ms);
	case SQLITE_NOTADB:
		return st_errf(err, errlen, ST_E_LEDGER_CORRUPT,
			       "ledger %s: %s: the file is not a SQLite database", l->path, what);
	case SQLITE_CORRUPT:
		return st_errf(err, errlen, ST_E_LEDGER_CORRUPT,
			       "ledger %s: %s: the database file is damaged (%s)", l->path, what,
			       msg);
	case SQLITE_NOMEM:
		return st_errf(err, errlen, ST_E_NOMEM, "ledger %s: %s: out of memory", l->path,
			       what);
	case SQLITE_CANTOPEN:
	case SQLITE_PERM:
	case SQLITE_READONLY:
		code = ST_E_LEDGER_OPEN;
		break;
	case SQLITE_FULL:
	case SQLITE_IOERR:
	case SQLITE_PROTOCOL:
	case SQLITE_NOLFS:
		/* The storage, not the statement: the same statement may work later. */
		code = ST_E_LEDGER_IO;
		break;
	default:
		code = ST_E_LEDGER_SQL;
		break;
	}
	if (l->db && sqlite3_system_errno(l->db) != 0)
		return st_errf(err, errlen, code, "ledger %s: %s: %s (%s)", l->path, what, msg,
			       strerror(sqlite3_system_errno(l->db)));
	return st_errf(err, errlen, code, "ledger %s: %s: %s", l->path, what, msg);
}

/* The handle's prepared statement id, prepared on first use and kept until close. */
static int prep(struct sq_ledger *l, enum stmt_id id, sqlite3_stmt **out, char *err,
		size_t errlen)
{
	int rc;

	*out = NULL;
	if (!l->stmt[id]) {
		rc = sqlite3_prepare_v3(l->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
					&l->stmt[id], NULL);
		if (rc != SQLITE_OK) {
			l->stmt[id] = NULL;
			return db_error(l, rc, "preparing a statement", err, errlen);
		}
	}
	*out = l->stmt[id];
	return 0;
}

/* Makes a cached statement ready for its next use. */
static void done(sqlite3_stmt *s)
{
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
}

/* Runs a statement that returns no rows to its end. */
static int run(struct sq_ledger *l, sqlite3_stmt *s, const char *what, char *err,
	       size_t errlen)
{
	int rc = sqlite3_step(s);

	if (rc == SQLITE_DONE || rc == SQLITE_ROW) {
		done(s);
		return 0;
	}
	rc = db_error(l, rc, what, err, errlen);
	done(s);
	return rc;
}

/* Runs a fixed statement (BEGIN, COMMIT, SAVEPOINT, ...). */
static int run_fixed(struct sq_ledger *l, enum stmt_id id, const char *what, char *err,
		     size_t errlen)
{
	sqlite3_stmt *s;
	int rc = prep(l, id, &s, err, errlen);

	if (rc < 0)
		return rc;
	return run(l, s, what, err, errlen);
}

static void hex(char *out, const uint8_t *b, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = 0;
}

static char *col_strdup(sqlite3_stmt *s, int col, int *oom)
{
	const unsigned char *t = sqlite3_column_text(s, col);
	char *copy;

	if (!t)
		return NULL;
	copy = strdup((const char *)t);
	if (!copy)
		*oom = 1;
	return copy;
}

static void col_hash(sqlite3_stmt *s, int col, uint8_t out[32])
{
	const void *b = sqlite3_column_blob(s, col);
	int n = sqlite3_column_bytes(s, col);

	memset(out, 0, 32);
	if (b)
		memcpy(out, b, n < 32 ? (size_t)n : 32);
}

void st_ledger_row_free(struct st_ledger_row *row)
{
	if (!row)
		return;
	free(row->serial);
	free(row->device_id);
	free(row->profile);
	free(row->station);
	free(row->slot);
	free(row->cert_der);
	free(row->reason);
	free(row->auth_id);
	free(row);
}

/* Copies the current result row (ROW_COLUMNS order) into a new row. */
static int read_row(struct sq_ledger *l, sqlite3_stmt *s, struct st_ledger_row **out,
		    char *err, size_t errlen)
{
	struct st_ledger_row *r = calloc(1, sizeof(*r));
	const void *der;
	int oom = 0, st;

	*out = NULL;
	if (!r)
		return st_errf(err, errlen, ST_E_NOMEM, "ledger %s: out of memory", l->path);
	r->id = sqlite3_column_int64(s, 0);
	r->serial = col_strdup(s, 1, &oom);
	r->device_id = col_strdup(s, 2, &oom);
	r->profile = col_strdup(s, 3, &oom);
	r->station = col_strdup(s, 4, &oom);
	r->slot = col_strdup(s, 5, &oom);
	col_hash(s, 6, r->csr_sha256);
	col_hash(s, 7, r->pubkey_sha256);
	st = st_ledger_state_parse((const char *)sqlite3_column_text(s, 8));
	r->state = st < 0 ? ST_LEDGER_FAILED : (enum st_ledger_state)st;
	der = sqlite3_column_blob(s, 9);
	if (der) {
		r->cert_len = (size_t)sqlite3_column_bytes(s, 9);
		r->cert_der = malloc(r->cert_len);
		if (r->cert_der)
			memcpy(r->cert_der, der, r->cert_len);
		else
			oom = 1;
	}
	r->not_before = (time_t)sqlite3_column_int64(s, 10);
	r->not_after = (time_t)sqlite3_column_int64(s, 11);
	r->created = (time_t)sqlite3_column_int64(s, 12);
	r->signed_at = (time_t)sqlite3_column_int64(s, 13);
	r->delivered_at = (time_t)sqlite3_column_int64(s, 14);
	r->reason = col_strdup(s, 15, &oom);
	if (oom || !r->serial || !r->device_id || !r->station) {
		st_ledger_row_free(r);
		if (oom)
			return st_errf(err, errlen, ST_E_NOMEM, "ledger %s: out of memory",
				       l->path);
		return st_errf(err, errlen, ST_E_LEDGER_CORRUPT,
			       "ledger %s: row %lld lacks a serial, device id or station",
			       l->path, (long long)sqlite3_column_int64(s, 0));
	}
	*out = r;
	return 0;
}

/* Runs a bound query expected to return at most one row: 1 and *out when it did, 0 when
 * it returned nothing, or a negative code. Resets the statement. */
static int fetch_row(struct sq_ledger *l, sqlite3_stmt *s, struct st_ledger_row **out,
		     const char *what, char *err, size_t errlen)
{
	int rc = sqlite3_step(s);

	*out = NULL;
	if (rc == SQLITE_ROW) {
		rc = read_row(l, s, out, err, errlen);
		if (rc == 0)
			rc = 1;
	} else if (rc == SQLITE_DONE) {
		rc = 0;
	} else {
		rc = db_error(l, rc, what, err, errlen);
	}
	done(s);
	return rc;
}

/* A state's strength: what a device id holds, delivered first. */
static int state_rank(const unsigned char *state)
{
	static const int rank[] = { [ST_LEDGER_DELIVERED] = 0, [ST_LEDGER_SIGNED] = 1,
				    [ST_LEDGER_FAILED] = 2, [ST_LEDGER_INTENT] = 3 };
	int st = st_ledger_state_parse((const char *)state);

	return st < 0 ? 3 : rank[st];
}

/* Like fetch_row, over every row of s: the strongest (state_rank), the newest of equals. */
static int strongest_row(struct sq_ledger *l, sqlite3_stmt *s, struct st_ledger_row **out,
			 const char *what, char *err, size_t errlen)
{
	struct st_ledger_row *best = NULL;
	int rank = INT_MAX, r, rc;

	*out = NULL;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		r = state_rank(sqlite3_column_text(s, 8));
		if (r > rank || (r == rank && sqlite3_column_int64(s, 0) < best->id))
			continue;
		st_ledger_row_free(best);
		rc = read_row(l, s, &best, err, errlen);
		if (rc < 0)
			break;
		rank = r;
	}
	if (rc == SQLITE_DONE)
		rc = best != NULL;
	else if (rc >= 0)
		rc = db_error(l, rc, what, err, errlen);
	done(s);
	if (rc > 0)
		*out = best;
	else
		st_ledger_row_free(best);
	return rc;
}

static void commit_hook_run(struct sq_ledger *l, enum st_ledger_hook_point point)
{
	if (l->hook)
		l->hook(point, l->hook_arg);
}

static int on_commit(void *arg)
{
	commit_hook_run(arg, ST_LEDGER_HOOK_COMMIT_START);
	return 0;
}

/* Replaces SQLite's default WAL hook while a test hook is set, so it checkpoints as the
 * default one would. */
static int on_wal(void *arg, sqlite3 *db, const char *name, int frames)
{
	commit_hook_run(arg, ST_LEDGER_HOOK_COMMIT_DONE);
	if (frames >= LEDGER_CHECKPOINT_FRAMES)
		sqlite3_wal_checkpoint(db, name);
	return SQLITE_OK;
}

/* A statement began; a trigger's program (its text a comment) is part of its statement. */
static int on_trace(unsigned type, void *arg, void *stmt, void *sql)
{
	(void)type;
	(void)stmt;
	if (strncmp(sql, "--", 2) != 0)
		commit_hook_run(arg, ST_LEDGER_HOOK_STATEMENT);
	return 0;
}

static void sq_set_hook(void *inst, void (*fn)(enum st_ledger_hook_point point, void *arg),
			void *arg)
{
	struct sq_ledger *l = inst;

	l->hook = fn;
	l->hook_arg = arg;
	if (fn) {
		sqlite3_commit_hook(l->db, on_commit, l);
		sqlite3_wal_hook(l->db, on_wal, l);
		sqlite3_trace_v2(l->db, SQLITE_TRACE_STMT, on_trace, l);
	} else {
		sqlite3_commit_hook(l->db, NULL, NULL);
		sqlite3_wal_autocheckpoint(l->db, LEDGER_CHECKPOINT_FRAMES);
		sqlite3_trace_v2(l->db, 0, NULL, NULL);
	}
}

/* Reads an integer pragma. */
static int pragma_int(struct sq_ledger *l, const char *sql, int *value, char *err,
		      size_t errlen)
{
	sqlite3_stmt *s = NULL;
	int rc = sqlite3_prepare_v2(l->db, sql, -1, &s, NULL);

	if (rc == SQLITE_OK) {
		rc = sqlite3_step(s);
		if (rc == SQLITE_ROW) {
			*value = sqlite3_column_int(s, 0);
			rc = SQLITE_OK;
		}
	}
	if (rc != SQLITE_OK)
		rc = db_error(l, rc, "reading the schema version", err, errlen);
	sqlite3_finalize(s);
	return rc;
}

/* Refuses a database at version 0 that already holds tables: someone else's SQLite file. */
static int check_foreign(struct sq_ledger *l, char *err, size_t errlen)
{
	sqlite3_stmt *s = NULL;
	int rc = sqlite3_prepare_v2(l->db,
				    "SELECT name FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' "
				    "LIMIT 1",
				    -1, &s, NULL);

	if (rc == SQLITE_OK) {
		rc = sqlite3_step(s);
		if (rc == SQLITE_ROW) {
			rc = st_errf(err, errlen, ST_E_LEDGER_CORRUPT,
				     "ledger %s: a SQLite database but not a station ledger (it "
				     "holds '%s' and no ledger schema version)",
				     l->path, (const char *)sqlite3_column_text(s, 0));
			goto out;
		}
		if (rc == SQLITE_DONE)
			rc = SQLITE_OK;
	}
	if (rc != SQLITE_OK)
		rc = db_error(l, rc, "reading the schema", err, errlen);
out:
	sqlite3_finalize(s);
	return rc;
}

/* 1 when table name exists, 0 when not, -1 on an error. */
static int table_exists(struct sq_ledger *l, const char *name)
{
	sqlite3_stmt *s;
	int rc;

	if (sqlite3_prepare_v2(l->db, "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1",
			       -1, &s, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	sqlite3_finalize(s);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

/* A migration that copies rows into a rebuilt table (3 -> 4) stopped on a constraint: the
 * first row, by id, that the new table refuses, as " (row N of TABLE)" in out, or "" when it
 * cannot be told. Each row is tried alone inside a savepoint that is rolled back, in the
 * failed migration's still open transaction: the table being filled is the one whose copy
 * failed (attempts' is made only once certificates' copy is done). */
static void refused_row(struct sq_ledger *l, char *out, size_t outlen)
{
	static const struct {
		const char *from, *to, *copy;
	} copies[] = {
		{ "attempts", "attempts_v4", COPY_ATTEMPTS_V4 " WHERE id = ?1" },
		{ "certificates", "certificates_v4", COPY_CERTIFICATES_V4 " WHERE id = ?1" },
	};
	sqlite3_stmt *ids = NULL, *copy = NULL;
	sqlite3_int64 id;
	char sql[128];
	size_t i;
	int rc;

	out[0] = 0;
	for (i = 0; i < sizeof(copies) / sizeof(copies[0]); i++)
		if (table_exists(l, copies[i].to) == 1)
			break;
	if (i == sizeof(copies) / sizeof(copies[0]))
		return;
	/* The next id each time: rolling a savepoint back ends the reads still open. */
	snprintf(sql, sizeof(sql), "SELECT min(id) FROM %s WHERE id > ?1", copies[i].from);
	if (sqlite3_prepare_v2(l->db, sql, -1, &ids, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(l->db, copies[i].copy, -1, &copy, NULL) != SQLITE_OK)
		goto out;
	for (id = INT64_MIN;;) {
		sqlite3_bind_int64(ids, 1, id);
		if (sqlite3_step(ids) != SQLITE_ROW || sqlite3_column_type(ids, 0) == SQLITE_NULL)
			break;
		id = sqlite3_column_int64(ids, 0);
		sqlite3_reset(ids);
		if (sqlite3_exec(l->db, "SAVEPOINT st_ledger_probe", NULL, NULL, NULL) != SQLITE_OK)
			break;
		sqlite3_bind_int64(copy, 1, id);
		rc = sqlite3_step(copy);
		sqlite3_reset(copy);
		sqlite3_exec(l->db, "ROLLBACK TO st_ledger_probe; RELEASE st_ledger_probe", NULL,
			     NULL, NULL);
		if ((rc & 0xff) == SQLITE_CONSTRAINT) {
			snprintf(out, outlen, " (row %lld of %s)", (long long)id, copies[i].from);
			break;
		}
		if (rc != SQLITE_DONE)
			break;
	}
out:
	sqlite3_finalize(copy);
	sqlite3_finalize(ids);
}

/* Checks the version and application id, and migrates an older schema in one
 * transaction. With ST_LEDGER_NOCREATE an empty database is refused rather than made a
 * ledger: a command that only reads was given the wrong file. */
static int migrate(struct sq_ledger *l, unsigned flags, char *err, size_t errlen)
{
	char sql[64];
	char *msg = NULL;
	int version = 0, app = 0, rc;

	rc = pragma_int(l, "PRAGMA user_version", &version, err, errlen);
	if (rc < 0)
		return rc;
	if (version > LEDGER_VERSION)
		return st_errf(err, errlen, ST_E_LEDGER_VERSION,
			       "ledger %s: schema version %d is newer than this station's (%d); "
			       "use a newer station",
			       l->path, version, LEDGER_VERSION);
	if (version > 0) {
		rc = pragma_int(l, "PRAGMA application_id", &app, err, errlen);
		if (rc < 0)
			return rc;
		if ((unsigned)app != LEDGER_APP_ID)
			return st_errf(err, errlen, ST_E_LEDGER_CORRUPT,
				       "ledger %s: a SQLite database but not a station ledger "
				       "(application id 0x%08x, expected 0x%08x)",
				       l->path, (unsigned)app, LEDGER_APP_ID);
	}
	if (version == LEDGER_VERSION)
		return 0;
	if (version == 0 && (flags & ST_LEDGER_NOCREATE)) {
		rc = check_foreign(l, err, errlen);
		if (rc < 0)
			return rc;
		return st_errf(err, errlen, ST_E_LEDGER_CORRUPT,
			       "ledger %s: an empty database, not a station ledger", l->path);
	}

	rc = run_fixed(l, S_BEGIN, "starting the schema migration", err, errlen);
	if (rc < 0)
		return rc;
	/* Another process may have migrated it while this one waited for the lock. */
	rc = pragma_int(l, "PRAGMA user_version", &version, err, errlen);
	if (rc < 0)
		goto out;
	if (version == 0) {
		rc = check_foreign(l, err, errlen);
		if (rc < 0)
			goto out;
	} else if (version < LEDGER_VERSION) {
		/* Version 4 copies every row: seconds for a few hundred thousand. */
		st_notice("ledger %s: upgrading its schema from version %d to %d", l->path, version,
			  LEDGER_VERSION);
	}
	for (; version < LEDGER_VERSION; version++) {
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", version + 1);
		rc = sqlite3_exec(l->db, migrations[version], NULL, NULL, &msg);
		if (rc == SQLITE_OK)
			rc = sqlite3_exec(l->db, sql, NULL, NULL, &msg);
		if (rc != SQLITE_OK) {
			char row[96] = "";

			if ((rc & 0xff) == SQLITE_CONSTRAINT)
				refused_row(l, row, sizeof(row));
			rc = st_errf(err, errlen, ST_E_LEDGER_IO,
				     "ledger %s: migrating the schema from version %d: %s%s",
				     l->path, version, msg ? msg : sqlite3_errstr(rc), row);
			goto out;
		}
	}
	snprintf(sql, sizeof(sql), "PRAGMA application_id = %d", (int)LEDGER_APP_ID);
	rc = sqlite3_exec(l->db, sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK) {
		rc = db_error(l, rc, "marking the file as a ledger", err, errlen);
		goto out;
	}
	rc = run_fixed(l, S_COMMIT, "committing the schema migration", err, errlen);
out:
	sqlite3_free(msg);
	if (rc < 0)
		sq_rollback(l);
	return rc;
}

/* Makes a newly created file's directory entry durable. */
static void sync_parent_dir(const char *path)
{
	char *copy = strdup(path);
	char *slash;
	int fd;

	if (!copy)
		return;
	slash = strrchr(copy, '/');
	if (!slash)
		strcpy(copy, ".");
	else if (slash == copy)
		slash[1] = 0;
	else
		*slash = 0;
	fd = open(copy, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
	free(copy);
}

static int set_journal(struct sq_ledger *l, char *err, size_t errlen)
{
	sqlite3_stmt *s = NULL;
	const char *mode;
	int rc, waited = 0;

	/* The first statement reads the file header: a foreign file fails here. Another
	 * process opening the same new ledger at this moment holds it locked, and SQLite
	 * answers the journal mode's change busy at once, without its busy handler: wait the
	 * busy timeout out here. */
	for (;;) {
		rc = s ? sqlite3_step(s) :
			 sqlite3_prepare_v2(l->db, "PRAGMA journal_mode = WAL", -1, &s, NULL);
		if (rc == SQLITE_OK && s)
			continue;
		if (((rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED) ||
		    waited >= l->busy_ms)
			break;
		if (s)
			sqlite3_reset(s);
		sqlite3_sleep(10);
		waited += 10;
	}
	if (rc != SQLITE_ROW) {
		rc = db_error(l, rc, "setting WAL mode", err, errlen);
		goto out;
	}
	mode = (const char *)sqlite3_column_text(s, 0);
	if (!mode || strcmp(mode, "wal") != 0) {
		rc = st_errf(err, errlen, ST_E_LEDGER_OPEN,
			     "ledger %s: cannot use WAL mode (journal mode stays '%s'); the file "
			     "system must support shared memory maps",
			     l->path, mode ? mode : "?");
		goto out;
	}
	rc = 0;
out:
	sqlite3_finalize(s);
	return rc;
}

/* Why this process cannot write what (the ledger file, or its directory) for errno e. */
static int not_writable(const char *path, const char *what, const char *name, int e,
			char *err, size_t errlen)
{
	char user[64];
	struct passwd pw, *res = NULL;
	char pwbuf[1024];
	uid_t uid = geteuid();

	if (e == EROFS)
		return st_errf(err, errlen, ST_E_LEDGER_OPEN,
			       "ledger %s: %s %s is on a read-only file system; the ledger needs "
			       "a writable directory",
			       path, what, name);
	if (e != EACCES && e != EPERM)
		return st_errf(err, errlen, ST_E_LEDGER_OPEN, "ledger %s: %s %s: %s", path, what,
			       name, strerror(e));
	if (getpwuid_r(uid, &pw, pwbuf, sizeof(pwbuf), &res) == 0 && res)
		snprintf(user, sizeof(user), "%s", pw.pw_name);
	else
		snprintf(user, sizeof(user), "uid %u", (unsigned)uid);
	return st_errf(err, errlen, ST_E_LEDGER_OPEN,
		       "ledger %s: %s %s is not writable by user %s (uid %u); give that user write "
		       "access to it",
		       path, what, name, user, (unsigned)uid);
}

/* Before opening for writing: the directory exists and this process may create files in it
 * (the ledger, its -wal and -shm), and an existing ledger file may be written. SQLite alone
 * says "unable to open database file" with whatever errno its last attempt left (a read-only
 * directory comes out as "No such file or directory"). */
static int check_writable(const char *path, int existed, char *err, size_t errlen)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	struct stat sb;

	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == path)
		snprintf(dir, sizeof(dir), "/");
	else if ((size_t)(slash - path) < sizeof(dir))
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	else
		return st_errf(err, errlen, ST_E_LEDGER_OPEN, "ledger %s: %s", path,
			       strerror(ENAMETOOLONG));
	if (stat(dir, &sb) != 0) {
		if (errno == ENOENT)
			return st_errf(err, errlen, ST_E_LEDGER_OPEN,
				       "ledger %s: directory %s does not exist; create it (writable "
				       "by the station's user) or fix the ledger path",
				       path, dir);
		return not_writable(path, "directory", dir, errno, err, errlen);
	}
	if (!S_ISDIR(sb.st_mode))
		return st_errf(err, errlen, ST_E_LEDGER_OPEN, "ledger %s: %s is not a directory",
			       path, dir);
	if (faccessat(AT_FDCWD, dir, W_OK | X_OK, AT_EACCESS) != 0)
		return not_writable(path, "directory", dir, errno, err, errlen);
	if (existed && faccessat(AT_FDCWD, path, R_OK | W_OK, AT_EACCESS) != 0)
		return not_writable(path, "file", path, errno, err, errlen);
	return 0;
}

static int sq_open(const char *path, const char *station, unsigned flags,
		   void **out, char *err, size_t errlen)
{
	struct sq_ledger *l = NULL;
	char host[HOST_NAME_MAX + 1];
	char *msg = NULL;
	struct stat sb;
	int oflags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE;
	int existed, rc;

	*out = NULL;
	if (!path || !*path)
		return st_errf(err, errlen, ST_E_INVAL, "ledger: no file name given");
	existed = stat(path, &sb) == 0;
	if (!existed && (flags & ST_LEDGER_NOCREATE))
		return st_errf(err, errlen, ST_E_LEDGER_OPEN, "ledger %s: %s", path,
			       strerror(errno));
	if (existed && S_ISDIR(sb.st_mode))
		return st_errf(err, errlen, ST_E_LEDGER_OPEN,
			       "ledger %s: is a directory, expected a database file", path);
	if (!(flags & ST_LEDGER_NOCREATE)) {
		rc = check_writable(path, existed, err, errlen);
		if (rc < 0)
			return rc;
		oflags |= SQLITE_OPEN_CREATE;
	}
	if (!station) {
		if (gethostname(host, sizeof(host)) != 0)
			strcpy(host, "station");
		host[sizeof(host) - 1] = 0;
		station = host;
	}

	l = calloc(1, sizeof(*l));
	if (!l)
		return st_errf(err, errlen, ST_E_NOMEM, "ledger %s: out of memory", path);
	l->path = strdup(path);
	l->station = strdup(station);
	if (!l->path || !l->station) {
		rc = st_errf(err, errlen, ST_E_NOMEM, "ledger %s: out of memory", path);
		goto out;
	}
	rc = sqlite3_open_v2(path, &l->db, oflags, NULL);
	if (rc != SQLITE_OK) {
		rc = db_error(l, rc, "opening", err, errlen);
		goto out;
	}
	sqlite3_extended_result_codes(l->db, 1);
	sq_set_busy_timeout(l, LEDGER_BUSY_MS);
	/* SQLite opens a file it may not write read-only, without a word: the first commit
	 * would fail instead. */
	if (!(flags & ST_LEDGER_NOCREATE) && sqlite3_db_readonly(l->db, "main") == 1) {
		rc = not_writable(path, "file", path, EACCES, err, errlen);
		goto out;
	}

	rc = set_journal(l, err, errlen);
	if (rc < 0)
		goto out;
	rc = sqlite3_exec(l->db,
			  "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; "
			  "PRAGMA cell_size_check = ON; PRAGMA trusted_schema = OFF",
			  NULL, NULL, &msg);
	if (rc != SQLITE_OK) {
		rc = db_error(l, rc, "setting durability options", err, errlen);
		goto out;
	}
	rc = migrate(l, flags, err, errlen);
	if (rc < 0)
		goto out;
	if (!existed)
		sync_parent_dir(path);
	*out = l;
	l = NULL;
out:
	sqlite3_free(msg);
	sq_close(l);
	return rc;
}

static void sq_close(void *inst)
{
	struct sq_ledger *l = inst;
	int i;

	if (!l)
		return;
	if (l->db && !sqlite3_get_autocommit(l->db))
		sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
	for (i = 0; i < S_COUNT_; i++)
		sqlite3_finalize(l->stmt[i]);
	if (l->db)
		sqlite3_close(l->db);
	free(l->path);
	free(l->station);
	free(l);
}

static void sq_set_busy_timeout(void *inst, int ms)
{
	struct sq_ledger *l = inst;

	l->busy_ms = ms > 0 ? ms : 0;
	sqlite3_busy_timeout(l->db, l->busy_ms);
}

static int sq_begin(void *inst, char *err, size_t errlen)
{
	struct sq_ledger *l = inst;

	if (!sqlite3_get_autocommit(l->db))
		return st_errf(err, errlen, ST_E_INVAL,
			       "ledger %s: a transaction is already open", l->path);
	return run_fixed(l, S_BEGIN, "starting a transaction", err, errlen);
}

static int sq_commit(void *inst, char *err, size_t errlen)
{
	struct sq_ledger *l = inst;
	int rc;

	if (sqlite3_get_autocommit(l->db))
		return st_errf(err, errlen, ST_E_INVAL, "ledger %s: no transaction is open",
			       l->path);
	rc = run_fixed(l, S_COMMIT, "committing", err, errlen);
	if (rc < 0 && sqlite3_get_autocommit(l->db)) {
		size_t n = err ? strlen(err) : 0;

		if (err && n + 1 < errlen)
			snprintf(err + n, errlen - n, " (the transaction was rolled back)");
	}
	return rc;
}

static int sq_rollback(void *inst)
{
	struct sq_ledger *l = inst;

	if (sqlite3_get_autocommit(l->db))
		return 0;
	return run_fixed(l, S_ROLLBACK, "rolling back", NULL, 0);
}

static int valid_serial(const char *s)
{
	size_t n = 0;

	if (!s)
		return 0;
	for (; s[n]; n++) {
		if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
			return 0;
	}
	return n >= 1 && n <= 40;
}

static int bind_text_or_null(sqlite3_stmt *s, int i, const char *t)
{
	return t ? sqlite3_bind_text(s, i, t, -1, SQLITE_STATIC) : sqlite3_bind_null(s, i);
}

/* Opens an intent's savepoint (once, *sp says whether it is open). Needed before any write
 * but the INSERT, which a failure undoes by itself, and always outside a caller's
 * transaction, where it is the transaction that keeps what was read true until the insert
 * commits. */
static int intent_savepoint(struct sq_ledger *l, int *sp, char *err, size_t errlen)
{
	int rc;

	if (*sp)
		return 0;
	rc = run_fixed(l, S_SAVEPOINT, "starting an intent", err, errlen);
	if (rc == 0)
		*sp = 1;
	return rc;
}

/* Before inserting an intent: supersedes this device's intents for the same key and
 * refuses one for another key. */
static int settle_intents(struct sq_ledger *l, const struct st_ledger_row *row, int *sp,
			  char *err, size_t errlen)
{
	int64_t same[16];
	size_t nsame = 0, i;
	sqlite3_stmt *s, *u;
	int rc;

	do {
		rc = prep(l, S_INTENTS_OF_DEVICE, &s, err, errlen);
		if (rc < 0)
			return rc;
		sqlite3_bind_text(s, 1, row->device_id, -1, SQLITE_STATIC);
		nsame = 0;
		while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
			const void *key = sqlite3_column_blob(s, 1);
			const unsigned char *slot = sqlite3_column_text(s, 2);

			if (key && sqlite3_column_bytes(s, 1) == 32 &&
			    memcmp(key, row->pubkey_sha256, 32) == 0) {
				if (nsame < sizeof(same) / sizeof(same[0]))
					same[nsame++] = sqlite3_column_int64(s, 0);
				continue;
			}
			rc = st_errf(err, errlen, ST_E_LEDGER_DUP_ID,
				     "ledger %s: device id %s has an open intent for another key "
				     "(row %lld, slot %s); supersede it or refuse the board",
				     l->path, row->device_id, (long long)sqlite3_column_int64(s, 0),
				     slot ? (const char *)slot : "-");
			done(s);
			return rc;
		}
		if (rc != SQLITE_DONE) {
			rc = db_error(l, rc, "reading the device's intents", err, errlen);
			done(s);
			return rc;
		}
		done(s);
		if (nsame > 0) {
			rc = intent_savepoint(l, sp, err, errlen);
			if (rc < 0)
				return rc;
		}
		for (i = 0; i < nsame; i++) {
			rc = prep(l, S_SUPERSEDE, &u, err, errlen);
			if (rc < 0)
				return rc;
			sqlite3_bind_int64(u, 1, same[i]);
			rc = run(l, u, "superseding an intent", err, errlen);
			if (rc < 0)
				return rc;
		}
		/* More than fit in same[] (only a tampered ledger has that many): again. */
	} while (nsame == sizeof(same) / sizeof(same[0]));
	return 0;
}

/* Tells which unique constraint a new row would break: ST_E_LEDGER_DUP_SERIAL,
 * ST_E_LEDGER_DUP_KEY, or 0 when none. */
static int check_unique(struct sq_ledger *l, const struct st_ledger_row *row, char *err,
			size_t errlen)
{
	char keyhex[65];
	sqlite3_stmt *s;
	int rc;

	rc = prep(l, S_LIVE_SERIAL, &s, err, errlen);
	if (rc < 0)
		return rc;
	sqlite3_bind_text(s, 1, row->serial, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		rc = st_errf(err, errlen, ST_E_LEDGER_DUP_SERIAL,
			     "ledger %s: serial %s is already recorded (row %lld, device id %s, "
			     "%s)",
			     l->path, row->serial, (long long)sqlite3_column_int64(s, 0),
			     (const char *)sqlite3_column_text(s, 1),
			     (const char *)sqlite3_column_text(s, 2));
		done(s);
		return rc;
	}
	done(s);
	if (rc != SQLITE_DONE)
		return db_error(l, rc, "looking the serial up", err, errlen);

	rc = prep(l, S_LIVE_KEY_ID, &s, err, errlen);
	if (rc < 0)
		return rc;
	sqlite3_bind_blob(s, 1, row->pubkey_sha256, 32, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		hex(keyhex, row->pubkey_sha256, 32);
		rc = st_errf(err, errlen, ST_E_LEDGER_DUP_KEY,
			     "ledger %s: public key sha256:%s is already recorded for device id %s "
			     "(row %lld, %s)",
			     l->path, keyhex, (const char *)sqlite3_column_text(s, 1),
			     (long long)sqlite3_column_int64(s, 0),
			     (const char *)sqlite3_column_text(s, 2));
	} else if (rc == SQLITE_DONE) {
		rc = 0;
	} else {
		rc = db_error(l, rc, "looking the key up", err, errlen);
	}
	done(s);
	return rc;
}

/* The unique indexes refuse a second live row of a serial or key; which one, in words, is
 * looked up only when they did. */
static int insert_intent(struct sq_ledger *l, const struct st_ledger_row *row, int64_t *id,
			 int *sp, char *err, size_t errlen)
{
	char why[256];
	sqlite3_stmt *s;
	int rc;

	rc = settle_intents(l, row, sp, err, errlen);
	if (rc < 0)
		return rc;
	rc = prep(l, S_INSERT, &s, err, errlen);
	if (rc < 0)
		return rc;
	sqlite3_bind_text(s, 1, row->serial, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, row->device_id, -1, SQLITE_STATIC);
	bind_text_or_null(s, 3, row->profile);
	sqlite3_bind_text(s, 4, l->station, -1, SQLITE_STATIC);
	bind_text_or_null(s, 5, row->slot);
	sqlite3_bind_blob(s, 6, row->csr_sha256, 32, SQLITE_STATIC);
	sqlite3_bind_blob(s, 7, row->pubkey_sha256, 32, SQLITE_STATIC);
	sqlite3_bind_int64(s, 8, (sqlite3_int64)time(NULL));
	rc = sqlite3_step(s);
	if (rc == SQLITE_DONE) {
		*id = sqlite3_last_insert_rowid(l->db);
		done(s);
		return 0;
	}
	if (rc != SQLITE_CONSTRAINT_UNIQUE) {
		rc = db_error(l, rc, "recording an intent", err, errlen);
		done(s);
		return rc;
	}
	snprintf(why, sizeof(why), "%s", sqlite3_errmsg(l->db));
	done(s);
	rc = check_unique(l, row, err, errlen);
	if (rc == 0)
		/* check_unique() saw nothing, so the schema was changed by hand. */
		rc = st_errf(err, errlen, ST_E_LEDGER_DUP_SERIAL, "ledger %s: serial %s: %s",
			     l->path, row->serial, why);
	return rc;
}

static int sq_add_intent(void *inst, const struct st_ledger_row *row, int64_t *id,
			 char *err, size_t errlen)
{
	struct sq_ledger *l = inst;
	int rc, rc2, sp = 0;

	*id = 0;
	if (!valid_serial(row->serial))
		return st_errf(err, errlen, ST_E_INVAL,
			       "ledger %s: serial '%s' is not 1 to 40 lower-case hex digits",
			       l->path, row->serial ? row->serial : "(null)");
	if (!row->device_id || !*row->device_id)
		return st_errf(err, errlen, ST_E_INVAL, "ledger %s: intent for serial %s has no "
			       "device id", l->path, row->serial);
	/* A savepoint makes the superseding and the insert one step, inside a caller's
	 * transaction or on their own; in a caller's transaction an insert that supersedes
	 * nothing needs none. */
	if (sqlite3_get_autocommit(l->db)) {
		rc = intent_savepoint(l, &sp, err, errlen);
		if (rc < 0)
			return rc;
	}
	rc = insert_intent(l, row, id, &sp, err, errlen);
	if (rc < 0) {
		*id = 0;
		if (sp) {
			run_fixed(l, S_ROLLBACK_TO, "undoing an intent", NULL, 0);
			run_fixed(l, S_RELEASE, "undoing an intent", NULL, 0);
		}
		return rc;
	}
	if (!sp)
		return 0;
	rc2 = run_fixed(l, S_RELEASE, "recording an intent", err, errlen);
	if (rc2 < 0) {
		*id = 0;
		if (!sqlite3_get_autocommit(l->db)) {
			run_fixed(l, S_ROLLBACK_TO, "undoing an intent", NULL, 0);
			run_fixed(l, S_RELEASE, "undoing an intent", NULL, 0);
		}
		return rc2;
	}
	return 0;
}

/* After an update changed nothing: why. */
static int state_error(struct sq_ledger *l, int64_t id, const char *wanted, char *err,
		       size_t errlen)
{
	sqlite3_stmt *s;
	const unsigned char *reason;
	int rc;

	rc = prep(l, S_STATE, &s, err, errlen);
	if (rc < 0)
		return rc;
	sqlite3_bind_int64(s, 1, id);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		reason = sqlite3_column_text(s, 2);
		rc = st_errf(err, errlen, ST_E_LEDGER_STATE,
			     "ledger %s: row %lld is %s%s%s%s%s, expected %s", l->path,
			     (long long)id, (const char *)sqlite3_column_text(s, 0),
			     sqlite3_column_int(s, 1) ? " with a certificate" : "",
			     reason ? " (" : "", reason ? (const char *)reason : "",
			     reason ? ")" : "", wanted);
	} else if (rc == SQLITE_DONE) {
		rc = st_errf(err, errlen, ST_E_NOTFOUND, "ledger %s: no row %lld", l->path,
			     (long long)id);
	} else {
		rc = db_error(l, rc, "reading a row's state", err, errlen);
	}
	done(s);
	return rc;
}

/* Runs a bound UPDATE of one row; when it changed nothing, explains why. */
static int update_row(struct sq_ledger *l, sqlite3_stmt *s, int64_t id, const char *what,
		      const char *wanted, char *err, size_t errlen)
{
	int rc = run(l, s, what, err, errlen);

	if (rc < 0)
		return rc;
	if (sqlite3_changes(l->db) == 0)
		return state_error(l, id, wanted, err, errlen);
	return 0;
}

static int sq_supersede(void *inst, int64_t id, char *err, size_t errlen)
{
	struct sq_ledger *l = inst;
	sqlite3_stmt *s;
	int rc = prep(l, S_SUPERSEDE, &s, err, errlen);

	if (rc < 0)
		return rc;
	sqlite3_bind_int64(s, 1, id);
	return update_row(l, s, id, "superseding an intent", "an intent", err, errlen);
}

static int sq_set_cert(void *inst, int64_t id, const uint8_t *der, size_t len,
		       time_t not_before, time_t not_after, char *err, size_t errlen)
{
	struct sq_ledger *l = inst;
	sqlite3_stmt *s;
	int rc;

	if (!der || len == 0 || len > INT_MAX)
		return st_errf(err, errlen, ST_E_INVAL, "ledger %s: row %lld: empty certificate",
			       l->path, (long long)id);
	rc = prep(l, S_SET_CERT, &s, err, errlen);
	if (rc < 0)
		return rc;
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_blob(s, 2, der, (int)len, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, (sqlite3_int64)not_before);
	sqlite3_bind_int64(s, 4, (sqlite3_int64)not_after);
	sqlite3_bind_int64(s, 5, (sqlite3_int64)time(NULL));
	return update_row(l, s, id, "recording a certificate", "an intent", err, errlen);
}

static int sq_mark_delivered(void *inst, int64_t id, char *err, size_t errlen)
{
	struct sq_ledger *l = inst;
	sqlite3_stmt *s;
	int rc = prep(l, S_DELIVERED, &s, err, errlen);

	if (rc < 0)
		return rc;
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)time(NULL));
	return update_row(l, s, id, "marking a row delivered", "a row with a certificate", err,
			  errlen);
}

static int sq_mark_failed(void *inst, int64_t id, const char *reason, char *err,
			  size_t errlen)
{
	struct sq_ledger *l = inst;
	sqlite3_stmt *s;
	int rc = prep(l, S_FAILED, &s, err, errlen);

	if (rc < 0)
		return rc;
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_text(s, 2, reason && *reason ? reason : "unspecified", -1, SQLITE_STATIC);
	return update_row(l, s, id, "marking a row failed", "a row not yet delivered", err,
			  errlen);
}

static int sq_lookup(void *inst, const char *device_id, const uint8_t pubkey_sha256[32],
		     struct st_ledger_row **row, char *err, size_t errlen)
{
	struct sq_ledger *l = inst;
	struct st_ledger_row *r = NULL;
	sqlite3_stmt *s;
	int rc;

	if (row)
		*row = NULL;
	if (!device_id || !*device_id)
		return st_errf(err, errlen, ST_E_INVAL, "ledger %s: lookup without a device id",
			       l->path);
	rc = prep(l, S_LIVE_KEY, &s, err, errlen);
	if (rc < 0)
		return rc;
	sqlite3_bind_blob(s, 1, pubkey_sha256, 32, SQLITE_STATIC);
	rc = fetch_row(l, s, &r, "looking the key up", err, errlen);
	if (rc < 0)
		return rc;
	if (rc == 0) {
		rc = prep(l, S_LIVE_DEVICE, &s, err, errlen);
		if (rc < 0)
			return rc;
		sqlite3_bind_text(s, 1, device_id, -1, SQLITE_STATIC);
		sqlite3_bind_blob(s, 2, pubkey_sha256, 32, SQLITE_STATIC);
		rc = strongest_row(l, s, &r, "looking the device id up", err, errlen);
		if (rc < 0)
			return rc;
		rc = rc == 0 ? ST_LEDGER_NEW : ST_LEDGER_ID_OTHER_KEY;
	} else if (strcmp(r->device_id, device_id) != 0) {
		rc = ST_LEDGER_KEY_REUSED;
	} else if (r->cert_der) {
		rc = ST_LEDGER_RECORDED;
	} else {
		rc = ST_LEDGER_POSSIBLY_SIGNED;
	}
	if (row && (rc == ST_LEDGER_RECORDED || rc == ST_LEDGER_KEY_REUSED ||
		    rc == ST_LEDGER_ID_OTHER_KEY)) {
		*row = r;
		r = NULL;
	}
	st_ledger_row_free(r);
	return rc;
}

static int sq_newest(void *inst, const char *device_id, struct st_ledger_row **row, char *err,
		     size_t errlen)
{
	struct sq_ledger *l = inst;
	sqlite3_stmt *s;
	int rc;

	*row = NULL;
	if (!device_id || !*device_id)
		return st_errf(err, errlen, ST_E_INVAL, "ledger %s: lookup without a device id",
			       l->path);
	rc = prep(l, S_NEWEST_DEVICE, &s, err, errlen);
	if (rc < 0)
		return rc;
	sqlite3_bind_text(s, 1, device_id, -1, SQLITE_STATIC);
	rc = fetch_row(l, s, row, "looking the device id's newest row up", err, errlen);
	return rc < 0 ? rc : 0;
}

static int sq_next_sequence(void *inst, const char *prefix, uint64_t *n, char *err,
			    size_t errlen)
{
	struct sq_ledger *l = inst;
	sqlite3_stmt *s;
	int rc;

	*n = 0;
	if (!prefix)
		return st_errf(err, errlen, ST_E_INVAL, "ledger %s: sequence without a prefix",
			       l->path);
	rc = prep(l, S_SEQUENCE, &s, err, errlen);
	if (rc < 0)
		return rc;
	sqlite3_bind_text(s, 1, prefix, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		sqlite3_int64 v = sqlite3_column_int64(s, 0);

		/* Step to the end: the upsert commits (outside a transaction) only then. */
		rc = sqlite3_step(s);
		if (rc == SQLITE_DONE && v >= 1)
			*n = (uint64_t)v;
	}
	if (rc != SQLITE_DONE)
		rc = db_error(l, rc, "allocating a sequence number", err, errlen);
	else if (*n == 0)
		rc = st_errf(err, errlen, ST_E_LEDGER_CORRUPT,
			     "ledger %s: sequence '%s' is out of range", l->path, prefix);
	else
		rc = 0;
	done(s);
	return rc;
}

static int sq_get(void *inst, int64_t id, struct st_ledger_row **row, char *err,
		  size_t errlen)
{
	struct sq_ledger *l = inst;
	sqlite3_stmt *s;
	int rc;

	*row = NULL;
	rc = prep(l, S_GET, &s, err, errlen);
	if (rc < 0)
		return rc;
	sqlite3_bind_int64(s, 1, id);
	rc = fetch_row(l, s, row, "reading a row", err, errlen);
	if (rc == 0)
		return st_errf(err, errlen, ST_E_NOTFOUND, "ledger %s: no row %lld", l->path,
			       (long long)id);
	return rc < 0 ? rc : 0;
}

static int sq_get_serial(void *inst, const char *serial, struct st_ledger_row **row,
			 char *err, size_t errlen)
{
	struct sq_ledger *l = inst;
	sqlite3_stmt *s;
	int rc;

	*row = NULL;
	if (!serial)
		return st_errf(err, errlen, ST_E_INVAL, "ledger %s: no serial given", l->path);
	rc = prep(l, S_GET_SERIAL, &s, err, errlen);
	if (rc < 0)
		return rc;
	sqlite3_bind_text(s, 1, serial, -1, SQLITE_STATIC);
	rc = fetch_row(l, s, row, "reading a row", err, errlen);
	if (rc == 0) {
		rc = prep(l, S_GET_SERIAL_DEAD, &s, err, errlen);
		if (rc < 0)
			return rc;
		sqlite3_bind_text(s, 1, serial, -1, SQLITE_STATIC);
		rc = fetch_row(l, s, row, "reading a row", err, errlen);
	}
	if (rc == 0)
		return st_errf(err, errlen, ST_E_NOTFOUND, "ledger %s: no row with serial %s",
			       l->path, serial);
	return rc < 0 ? rc : 0;
}

static int sq_foreach(void *inst, int (*fn)(const struct st_ledger_row *row, void *arg),
		      void *arg, char *err, size_t errlen)
{
	struct sq_ledger *l = inst;
	struct st_ledger_row *r;
	sqlite3_stmt *s;
	int rc;

	if (l->iterating)
		return st_errf(err, errlen, ST_E_INVAL, "ledger %s: nested st_ledger_foreach",
			       l->path);
	rc = prep(l, S_ALL, &s, err, errlen);
	if (rc < 0)
		return rc;
	l->iterating = 1;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		int oom = 0;

		rc = read_row(l, s, &r, err, errlen);
		if (rc < 0)
			goto out;
		r->auth_id = col_strdup(s, 16, &oom);
		if (oom) {
			st_ledger_row_free(r);
			rc = st_errf(err, errlen, ST_E_NOMEM, "ledger %s: out of memory", l->path);
			goto out;
		}
		rc = fn(r, arg);
		st_ledger_row_free(r);
		if (rc != 0) {
			rc = 0;
			goto out;
		}
	}
	rc = rc == SQLITE_DONE ? 0 : db_error(l, rc, "reading the rows", err, errlen);
out:
	done(s);
	l->iterating = 0;
	return rc;
}

static int sq_flag(void *inst, const char *device_id, const uint8_t pubkey_sha256[32],
		   const char *slot, const char *reason, char *err, size_t errlen)
{
	struct sq_ledger *l = inst;
	sqlite3_stmt *s;
	int rc;

	if (!reason || !*reason)
		return st_errf(err, errlen, ST_E_INVAL, "ledger %s: flag without a reason",
			       l->path);
	rc = prep(l, S_FLAG, &s, err, errlen);
	if (rc < 0)
		return rc;
	sqlite3_bind_int64(s, 1, (sqlite3_int64)time(NULL));
	sqlite3_bind_text(s, 2, l->station, -1, SQLITE_STATIC);
	bind_text_or_null(s, 3, slot);
	bind_text_or_null(s, 4, device_id);
	if (pubkey_sha256)
		sqlite3_bind_blob(s, 5, pubkey_sha256, 32, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, 5);
	sqlite3_bind_text(s, 6, reason, -1, SQLITE_STATIC);
	return run(l, s, "recording a flag", err, errlen);
}

static int sq_foreach_flag(void *inst,
			   int (*fn)(const struct st_ledger_flag *flag, void *arg), void *arg,
			   char *err, size_t errlen)
{
	struct sq_ledger *l = inst;
	struct st_ledger_flag f;
	sqlite3_stmt *s;
	int rc;

	rc = prep(l, S_ALL_FLAGS, &s, err, errlen);
	if (rc < 0)
		return rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		f.id = sqlite3_column_int64(s, 0);
		f.time = (time_t)sqlite3_column_int64(s, 1);
		f.station = (const char *)sqlite3_column_text(s, 2);
		f.slot = (const char *)sqlite3_column_text(s, 3);
		f.device_id = (const char *)sqlite3_column_text(s, 4);
		f.pubkey_sha256 = sqlite3_column_bytes(s, 5) == 32 ? sqlite3_column_blob(s, 5) :
								     NULL;
		f.reason = (const char *)sqlite3_column_text(s, 6);
		if (!f.station)
			f.station = "";
		if (!f.reason)
			f.reason = "";
		if (fn(&f, arg) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	rc = rc == SQLITE_DONE ? 0 : db_error(l, rc, "reading the flags", err, errlen);
	done(s);
	return rc;
}

/* Every row's dropped column says what its state says (the triggers of schema version 3 keep
 * it so; a file written without them would not be). */
static int check_dropped(struct sq_ledger *l, char *err, size_t errlen)
{
	sqlite3_stmt *s = NULL;
	int rc;

	rc = sqlite3_prepare_v2(l->db,
				"SELECT count(*), min(id) FROM certificates "
				"WHERE (dropped IS NULL) IS NOT " LIVE_V1,
				-1, &s, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		rc = db_error(l, rc, "checking the rows' liveness", err, errlen);
	} else if (sqlite3_column_int64(s, 0) > 0) {
		rc = st_errf(err, errlen, ST_E_LEDGER_CORRUPT,
			     "ledger %s: integrity check failed: %lld row(s) whose column dropped "
			     "disagrees with their state and certificate, the first id %lld",
			     l->path, (long long)sqlite3_column_int64(s, 0),
			     (long long)sqlite3_column_int64(s, 1));
	} else {
		rc = 0;
	}
	sqlite3_finalize(s);
	return rc;
}

static int sq_integrity(void *inst, char *err, size_t errlen)
{
	struct sq_ledger *l = inst;
	sqlite3_stmt *s = NULL;
	const char *first;
	int rc, more = 0;

	rc = sqlite3_prepare_v2(l->db, "PRAGMA integrity_check", -1, &s, NULL);
	if (rc != SQLITE_OK) {
		rc = db_error(l, rc, "checking integrity", err, errlen);
		goto out;
	}
	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		rc = db_error(l, rc, "checking integrity", err, errlen);
		goto out;
	}
	first = (const char *)sqlite3_column_text(s, 0);
	if (first && strcmp(first, "ok") == 0) {
		rc = check_dropped(l, err, errlen);
		goto out;
	}
	rc = st_errf(err, errlen, ST_E_LEDGER_CORRUPT, "ledger %s: integrity check failed: %s",
		     l->path, first ? first : "?");
	while (sqlite3_step(s) == SQLITE_ROW)
		more++;
	if (more && err) {
		size_t n = strlen(err);

		if (n + 1 < errlen)
			snprintf(err + n, errlen - n, " (and %d more problems)", more);
	}
out:
	sqlite3_finalize(s);
	return rc;
}

/* The backup's own error: SQLite's words about the copy, naming dest. */
static int backup_error(sqlite3 *out, int rc, const char *dest, const char *what, char *err,
			size_t errlen)
{
	const char *msg = out ? sqlite3_errmsg(out) : sqlite3_errstr(rc);

	if ((rc & 0xff) == SQLITE_NOMEM)
		return st_errf(err, errlen, ST_E_NOMEM, "ledger backup %s: out of memory", dest);
	if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED)
		return st_errf(err, errlen, ST_E_LEDGER_BUSY, "ledger backup %s: %s: %s", dest,
			       what, msg);
	return st_errf(err, errlen, ST_E_LEDGER_IO, "ledger backup %s: %s: %s", dest, what, msg);
}

/* Removes an unfinished copy and the files SQLite may have made beside it. */
static void backup_remove(const char *tmp)
{
	static const char *const suffixes[] = { "-journal", "-wal", "-shm" };
	char *p;
	size_t i;

	for (i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		p = sqlite3_mprintf("%s%s", tmp, suffixes[i]);
		if (p)
			unlink(p);
		sqlite3_free(p);
	}
	unlink(tmp);
}

/* Checks the copy with SQLite's quick check. */
static int backup_check(sqlite3 *out, const char *dest, char *err, size_t errlen)
{
	sqlite3_stmt *s = NULL;
	const char *verdict;
	int rc;

	rc = sqlite3_prepare_v2(out, "PRAGMA quick_check", -1, &s, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		rc = backup_error(out, rc, dest, "checking the copy", err, errlen);
		goto out;
	}
	verdict = (const char *)sqlite3_column_text(s, 0);
	if (!verdict || strcmp(verdict, "ok") != 0) {
		rc = st_errf(err, errlen, ST_E_LEDGER_IO,
			     "ledger backup %s: the copy does not check: %s", dest,
			     verdict ? verdict : "?");
		goto out;
	}
	rc = 0;
out:
	sqlite3_finalize(s);
	return rc;
}

static int sq_backup(void *inst, const char *dest, char *err, size_t errlen)
{
	struct sq_ledger *l = inst;
	sqlite3 *out = NULL;
	sqlite3_backup *b;
	struct stat sb;
	char *tmp = NULL;
	int rc, fd, created = 0, waited = 0;

	if (!dest || !*dest)
		return st_errf(err, errlen, ST_E_INVAL, "ledger backup: no destination file given");
	if (stat(dest, &sb) == 0 && S_ISDIR(sb.st_mode))
		return st_errf(err, errlen, ST_E_INVAL,
			       "ledger backup %s: is a directory, expected a file name", dest);
	/* A snapshot taken inside this handle's transaction would copy uncommitted rows. */
	if (!sqlite3_get_autocommit(l->db))
		return st_errf(err, errlen, ST_E_INVAL,
			       "ledger backup %s: a transaction is open on the ledger", dest);
	tmp = sqlite3_mprintf("%s.tmp-%ld", dest, (long)getpid());
	if (!tmp)
		return st_errf(err, errlen, ST_E_NOMEM, "ledger backup %s: out of memory", dest);
	/* Made here rather than by SQLite so that it is new (not a leftover) and private. */
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = st_errf(err, errlen, ST_E_LEDGER_IO, "ledger backup %s: creating %s: %s", dest,
			     tmp, strerror(errno));
		goto out;
	}
	close(fd);
	created = 1;
	rc = sqlite3_open_v2(tmp, &out,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE,
			     NULL);
	if (rc != SQLITE_OK) {
		rc = backup_error(out, rc, dest, "opening the copy", err, errlen);
		goto out;
	}
	b = sqlite3_backup_init(out, "main", l->db, "main");
	if (!b) {
		rc = backup_error(out, sqlite3_errcode(out), dest, "starting", err, errlen);
		goto out;
	}
	/* All pages in one step: one read transaction, so the copy is one consistent state. */
	for (;;) {
		rc = sqlite3_backup_step(b, -1);
		if ((rc != SQLITE_BUSY && rc != SQLITE_LOCKED) || waited >= l->busy_ms)
			break;
		sqlite3_sleep(50);
		waited += 50;
	}
	sqlite3_backup_finish(b);
	if (rc != SQLITE_DONE) {
		rc = backup_error(NULL, rc, dest, "copying", err, errlen);
		goto out;
	}
	rc = backup_check(out, dest, err, errlen);
	if (rc < 0)
		goto out;
	/* Closing the last connection checkpoints and removes the copy's -wal and -shm. */
	rc = sqlite3_close(out);
	out = NULL;
	if (rc != SQLITE_OK) {
		rc = backup_error(NULL, rc, dest, "closing the copy", err, errlen);
		goto out;
	}
	fd = open(tmp, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) != 0 || rename(tmp, dest) != 0) {
		rc = st_errf(err, errlen, ST_E_LEDGER_IO, "ledger backup %s: %s", dest,
			     strerror(errno));
		if (fd >= 0)
			close(fd);
		goto out;
	}
	close(fd);
	created = 0;
	sync_parent_dir(dest);
	rc = 0;
out:
	if (out)
		sqlite3_close(out);
	if (created)
		backup_remove(tmp);
	sqlite3_free(tmp);
	return rc;
}

static int sq_foreach_sequence(void *inst,
			       int (*fn)(const char *prefix, uint64_t next, void *arg), void *arg,
			       char *err, size_t errlen)
{
	struct sq_ledger *l = inst;
	sqlite3_stmt *s = NULL;
	int rc;

	rc = sqlite3_prepare_v2(l->db, "SELECT prefix, next FROM sequences ORDER BY prefix", -1,
				&s, NULL);
	while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		rc = SQLITE_OK;
		if (fn((const char *)sqlite3_column_text(s, 0),
		       (uint64_t)sqlite3_column_int64(s, 1), arg) != 0)
			rc = SQLITE_DONE;
	}
	rc = rc == SQLITE_DONE ? 0 : db_error(l, rc, "reading the sequences", err, errlen);
	sqlite3_finalize(s);
	return rc;
}

/* ---- Production authorizations ------------------------------------------------------ */

/* Reads authorization id: 1 and its hash, units and count, 0 when it is not recorded, or a
 * negative code. */
static int auth_get(struct sq_ledger *l, const char *id, uint8_t sha[32], int64_t *units,
		    int64_t *used, char *err, size_t errlen)
{
	sqlite3_stmt *s;
	int rc = prep(l, S_AUTH_GET, &s, err, errlen);

	if (rc < 0)
		return rc;
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		col_hash(s, 0, sha);
		*units = sqlite3_column_int64(s, 1);
		*used = sqlite3_column_int64(s, 2);
		rc = 1;
	} else if (rc == SQLITE_DONE) {
		rc = 0;
	} else {
		rc = db_error(l, rc, "reading an authorization", err, errlen);
	}
	done(s);
	return rc;
}

static int sq_auth_register(void *inst, const struct st_ledger_auth *a, int64_t *used,
			    char *err, size_t errlen)
{
	struct sq_ledger *l = inst;
	uint8_t sha[32];
	int64_t units = 0, n = 0;
	sqlite3_stmt *s;
	int rc;

	rc = prep(l, S_AUTH_REGISTER, &s, err, errlen);
	if (rc < 0)
		return rc;
	sqlite3_bind_text(s, 1, a->id, -1, SQLITE_STATIC);
	sqlite3_bind_blob(s, 2, a->doc_sha256, 32, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, a->units);
	bind_text_or_null(s, 4, a->lot);
	sqlite3_bind_int64(s, 5, (sqlite3_int64)a->not_before);
	sqlite3_bind_int64(s, 6, (sqlite3_int64)a->not_after);
	sqlite3_bind_int64(s, 7, (sqlite3_int64)time(NULL));
	sqlite3_bind_text(s, 8, l->station, -1, SQLITE_STATIC);
	rc = run(l, s, "recording an authorization", err, errlen);
	if (rc < 0)
		return rc;
	rc = auth_get(l, a->id, sha, &units, &n, err, errlen);
	if (rc < 0)
		return rc;
	if (rc == 0)
		return st_errf(err, errlen, ST_E_LEDGER_IO,
			       "ledger %s: authorization %s was recorded but cannot be read back",
			       l->path, a->id);
	if (memcmp(sha, a->doc_sha256, 32) != 0 || units != a->units)
		return st_errf(err, errlen, ST_E_AUTH_CONFLICT,
			       "ledger %s: authorization id %s is recorded for another document "
			       "(%lld units); two documents with one id are refused",
			       l->path, a->id, (long long)units);
	if (used)
		*used = n;
	return 0;
}

/* Undoes and ends the savepoint of an authorized intent. */
static void auth_undo(struct sq_ledger *l)
{
	run_fixed(l, S_ROLLBACK_TO, "undoing an authorized intent", NULL, 0);
	run_fixed(l, S_RELEASE, "undoing an authorized intent", NULL, 0);
}

static int sq_add_intent_auth(void *inst, const struct st_ledger_row *row,
			      const char *auth_id, int64_t *id, int64_t *used, int64_t *units,
			      char *err, size_t errlen)
{
	struct sq_ledger *l = inst;
	uint8_t sha[32];
	int64_t u = 0, n = 0;
	sqlite3_stmt *s;
	int rc;

	rc = auth_get(l, auth_id, sha, &u, &n, err, errlen);
	if (rc < 0)
		return rc;
	if (rc == 0)
		return st_errf(err, errlen, ST_E_NOTFOUND,
			       "ledger %s: authorization %s is not recorded", l->path, auth_id);
	/* No shortcut when every unit is used: the intent may supersede an intent of the same
	 * board and key (a crash came between signing and recording), whose unit it takes
	 * over. One savepoint around the intent (with its own inside) and the unit; the
	 * database's CHECK decides. */
	rc = run_fixed(l, S_SAVEPOINT, "starting an authorized intent", err, errlen);
	if (rc < 0)
		return rc;
	rc = sq_add_intent(l, row, id, err, errlen);
	if (rc < 0) {
		auth_undo(l);
		*id = 0;
		return rc;
	}
	rc = prep(l, S_AUTH_TAKE, &s, err, errlen);
	if (rc < 0)
		goto fail;
	sqlite3_bind_int64(s, 1, *id);
	sqlite3_bind_text(s, 2, auth_id, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_CONSTRAINT_CHECK) {
		/* Another writer took the last unit between the count above and now. */
		rc = st_errf(err, errlen, ST_E_AUTH_EXHAUSTED,
			     "authorization %s: all %lld units are used", auth_id, (long long)u);
	} else if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) {
		rc = st_errf(err, errlen, ST_E_NOTFOUND,
			     "ledger %s: authorization %s is not recorded", l->path, auth_id);
	} else if (rc != SQLITE_DONE) {
		rc = db_error(l, rc, "consuming an authorization unit", err, errlen);
	} else if (sqlite3_changes(l->db) != 1) {
		rc = st_errf(err, errlen, ST_E_INTERNAL,
			     "ledger %s: the new intent %lld already names an authorization",
			     l->path, (long long)*id);
	} else {
		rc = 0;
	}
	done(s);
	if (rc < 0)
		goto fail;
	rc = auth_get(l, auth_id, sha, &u, &n, err, errlen);
	if (rc < 0)
		goto fail;
	rc = run_fixed(l, S_RELEASE, "recording an authorized intent", err, errlen);
	if (rc < 0) {
		if (!sqlite3_get_autocommit(l->db))
			auth_undo(l);
		*id = 0;
		return rc;
	}
	if (used)
		*used = n;
	if (units)
		*units = u;
	return 0;
fail:
	auth_undo(l);
	*id = 0;
	return rc;
}

/* Steps s to its end, handing each result row to visit (which returns non-zero to stop),
 * then resets it. Returns 0 or the error of what it was doing. */
static int each_result(struct sq_ledger *l, sqlite3_stmt *s, const char *what,
		       int (*visit)(sqlite3_stmt *s, void *ctx), void *ctx, char *err,
		       size_t errlen)
{
	int rc;

	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (visit(s, ctx) != 0) {
			rc = SQLITE_DONE;
			break;
		}
	}
	rc = rc == SQLITE_DONE ? 0 : db_error(l, rc, what, err, errlen);
	done(s);
	return rc;
}

/* The caller's callback and argument, for the visitors below. */
struct each_ctx {
	void *fn;
	void *arg;
};

static int visit_auth(sqlite3_stmt *s, void *ctx)
{
	struct each_ctx *c = ctx;
	int (*fn)(const struct st_ledger_auth *a, void *arg) = c->fn;
	struct st_ledger_auth a;

	memset(&a, 0, sizeof(a));
	a.id = (const char *)sqlite3_column_text(s, 0);
	col_hash(s, 1, a.doc_sha256);
	a.units = sqlite3_column_int64(s, 2);
	a.used = sqlite3_column_int64(s, 3);
	a.lot = (const char *)sqlite3_column_text(s, 4);
	a.not_before = (time_t)sqlite3_column_int64(s, 5);
	a.not_after = (time_t)sqlite3_column_int64(s, 6);
	a.registered = (time_t)sqlite3_column_int64(s, 7);
	a.station = (const char *)sqlite3_column_text(s, 8);
	return a.id ? fn(&a, c->arg) : 0;
}

static int sq_foreach_auth(void *inst,
			   int (*fn)(const struct st_ledger_auth *a, void *arg), void *arg,
			   char *err, size_t errlen)
{
	struct sq_ledger *l = inst;
	struct each_ctx c = { (void *)fn, arg };
	sqlite3_stmt *s;
	int rc = prep(l, S_AUTH_ALL, &s, err, errlen);

	if (rc < 0)
		return rc;
	return each_result(l, s, "reading the authorizations", visit_auth, &c, err, errlen);
}

static int visit_station(sqlite3_stmt *s, void *ctx)
{
	struct each_ctx *c = ctx;
	int (*fn)(const char *station, int64_t certificates, int64_t pending, void *arg) = c->fn;
	const char *station = (const char *)sqlite3_column_text(s, 0);

	return fn(station ? station : "", sqlite3_column_int64(s, 1), sqlite3_column_int64(s, 2),
		  c->arg);
}

static int sq_auth_stations(void *inst, const char *auth_id,
			    int (*fn)(const char *station, int64_t certificates, int64_t pending,
				      void *arg),
			    void *arg, char *err, size_t errlen)
{
	struct sq_ledger *l = inst;
	struct each_ctx c = { (void *)fn, arg };
	sqlite3_stmt *s;
	int rc = prep(l, S_AUTH_STATIONS, &s, err, errlen);

	if (rc < 0)
		return rc;
	sqlite3_bind_text(s, 1, auth_id ? auth_id : "", -1, SQLITE_STATIC);
	return each_result(l, s, "counting an authorization's units", visit_station, &c, err,
			   errlen);
}

static int sq_foreach_auth_cert(void *inst, const char *auth_id,
				int (*fn)(const struct st_ledger_row *row, void *arg), void *arg,
				char *err, size_t errlen)
{
	struct sq_ledger *l = inst;
	struct st_ledger_row *r;
	sqlite3_stmt *s;
	int rc = prep(l, S_AUTH_CERTS, &s, err, errlen);

	if (rc < 0)
		return rc;
	sqlite3_bind_text(s, 1, auth_id ? auth_id : "", -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		rc = read_row(l, s, &r, err, errlen);
		if (rc < 0)
			goto out;
		rc = fn(r, arg);
		st_ledger_row_free(r);
		if (rc != 0) {
			rc = 0;
			goto out;
		}
	}
	rc = rc == SQLITE_DONE ? 0 :
				 db_error(l, rc, "reading an authorization's certificates", err,
					  errlen);
out:
	done(s);
	return rc;
}

/* ---- Production records ------------------------------------------------------------ */

static int sq_add_attempt(void *inst, const struct st_ledger_attempt *a, char *err,
			  size_t errlen)
{
	struct sq_ledger *l = inst;
	const char *text[ST_LEDGER_ATTEMPT_TEXTS];
	sqlite3_stmt *s;
	int rc;

	rc = prep(l, S_ATTEMPT, &s, err, errlen);
	if (rc < 0)
		return rc;
	st_ledger_attempt_texts(a, text);
	sqlite3_bind_int64(s, 1, (sqlite3_int64)(a->time ? a->time : time(NULL)));
	sqlite3_bind_text(s, 2, l->station, -1, SQLITE_STATIC);
	/* Parameters 3 to 14, in order. */
	for (size_t i = 0; i < ST_LEDGER_ATTEMPT_TEXTS; i++)
		bind_text_or_null(s, (int)i + 3, text[i]);
	if (a->certificate > 0)
		sqlite3_bind_int64(s, 15, a->certificate);
	else
		sqlite3_bind_null(s, 15);
	sqlite3_bind_int(s, 16, a->reused ? 1 : 0);
	if (a->ms >= 0)
		sqlite3_bind_int64(s, 17, a->ms);
	else
		sqlite3_bind_null(s, 17);
	return run(l, s, "recording an attempt", err, errlen);
}

static int visit_attempt(sqlite3_stmt *s, void *ctx)
{
	struct each_ctx *c = ctx;
	int (*fn)(const struct st_ledger_attempt *a, void *arg) = c->fn;
	struct st_ledger_attempt a;
	/* Columns 2 to 15 of S_ATTEMPTS, in order. */
	const char **text[] = { &a.station,  &a.slot,	     &a.outcome, &a.reason,  &a.error,
				&a.device_id, &a.serial,     &a.board_sn, &a.hardware_id,
				&a.sku,	     &a.firmware,    &a.profile, &a.auth_id, &a.lot };

	memset(&a, 0, sizeof(a));
	a.id = sqlite3_column_int64(s, 0);
	a.time = (time_t)sqlite3_column_int64(s, 1);
	for (size_t i = 0; i < sizeof(text) / sizeof(text[0]); i++)
		*text[i] = (const char *)sqlite3_column_text(s, (int)i + 2);
	a.certificate = sqlite3_column_int64(s, 16);
	a.reused = sqlite3_column_int(s, 17);
	a.ms = sqlite3_column_type(s, 18) == SQLITE_NULL ? -1 : sqlite3_column_int64(s, 18);
	if (!a.station)
		a.station = "";
	if (!a.outcome)
		a.outcome = "";
	return fn(&a, c->arg);
}

static int sq_foreach_attempt(void *inst, time_t since, time_t until,
			      int (*fn)(const struct st_ledger_attempt *a, void *arg), void *arg,
			      char *err, size_t errlen)
{
	struct sq_ledger *l = inst;
	struct each_ctx c = { (void *)fn, arg };
	sqlite3_stmt *s;
	int rc = prep(l, S_ATTEMPTS, &s, err, errlen);

	if (rc < 0)
		return rc;
	sqlite3_bind_int64(s, 1, (sqlite3_int64)since);
	sqlite3_bind_int64(s, 2, until > 0 ? (sqlite3_int64)until : INT64_MAX);
	return each_result(l, s, "reading the attempts", visit_attempt, &c, err, errlen);
}

/* The embedded default: any spec that no other backend claims is a file path. */
static int sq_claims(const char *spec)
{
	return spec != NULL;
}

const struct st_ledger_ops st_ledger_sqlite_ops = {
	.name = "sqlite",
	.claims = sq_claims,
	.open = sq_open,
	.close = sq_close,
	.set_busy_timeout = sq_set_busy_timeout,
	.path = sq_path,
	.set_hook = sq_set_hook,
	.lookup = sq_lookup,
	.newest = sq_newest,
	.begin = sq_begin,
	.commit = sq_commit,
	.rollback = sq_rollback,
	.add_intent = sq_add_intent,
	.supersede = sq_supersede,
	.set_cert = sq_set_cert,
	.mark_delivered = sq_mark_delivered,
	.mark_failed = sq_mark_failed,
	.flag = sq_flag,
	.next_sequence = sq_next_sequence,
	.get = sq_get,
	.get_serial = sq_get_serial,
	.foreach = sq_foreach,
	.foreach_flag = sq_foreach_flag,
	.integrity = sq_integrity,
	.backup = sq_backup,
	.foreach_sequence = sq_foreach_sequence,
	.auth_register = sq_auth_register,
	.add_intent_auth = sq_add_intent_auth,
	.foreach_auth = sq_foreach_auth,
	.auth_stations = sq_auth_stations,
	.foreach_auth_cert = sq_foreach_auth_cert,
	.add_attempt = sq_add_attempt,
	.foreach_attempt = sq_foreach_attempt,
};
