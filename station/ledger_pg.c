/* The ledger on PostgreSQL (libpq): one record shared by a line of stations. The contract is
 * ledger.h's, word for word; this file says how PostgreSQL keeps it.
 *
 * - Schema: everything lives in the schema station_ledger; its version is the row 'version'
 *   of station_ledger.meta. Migrations are forward-only and append-only like the SQLite
 *   ones; a station migrates under an advisory lock, so stations starting together do it
 *   once, and refuses a schema newer than its own.
 * - Uniqueness across the line is the database's: partial unique indexes on serial and on
 *   public key over every row but a failed one without a certificate (SQLite's rule), and one
 *   on device id over open intents, so two stations claiming one device id at once cannot
 *   both hold an intent: the second insert waits for the first station's commit and then
 *   finds the row. Inserts use ON CONFLICT DO NOTHING, so a refused row never aborts the
 *   batch's transaction (any error does, in PostgreSQL); why it was refused is then read.
 * - Row and flag ids come from sequences: unique across stations. Device id sequences are
 *   a row per prefix locked by the allocating transaction, so two stations never hand out
 *   one number and a rolled-back number is handed out again, as on SQLite.
 * - Durability: synchronous_commit is on (a session whose server default is off or local
 *   turns it on), so COMMIT returns once the server has flushed the commit to its WAL, and,
 *   when the server names synchronous standbys (synchronous_standby_names), once a standby
 *   has flushed it too: then a failover to that standby loses no committed row.
 * - Every transaction is journaled in memory: each write and lookup with its result. When
 *   the server aborts it under the caller (the connection is lost, a deadlock with another
 *   station, a statement that failed), the journal is replayed on a new transaction with
 *   the same row ids, and the results are compared: the caller's transaction goes on as if
 *   nothing happened, or, when another station changed what the replay reads, it is lost
 *   (every later call and the commit fail, the caller rolls back). A COMMIT whose answer was
 *   lost is resolved by asking the server about the transaction (pg_xact_status): committed,
 *   or replayed and committed again; never twice.
 * - Outage: with a handler (st_ledger_set_outage), a call that cannot reach the server
 *   reconnects with a backoff for as long as the handler lets it; without one it tries to
 *   reconnect once and fails.
 * - Passwords never come from the connection string (it shows in logs, messages and the
 *   configuration); libpq reads them from a password file (passfile=, PGPASSFILE,
 *   ~/.pgpass). TLS is libpq's: sslmode, sslrootcert, ... in the connection string. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "err.h"
#include "ledger_backend.h"
#include "log.h"

#define SCHEMA "station_ledger"
#define T_META SCHEMA ".meta"
#define T_CERTS SCHEMA ".certificates"
#define T_SEQ SCHEMA ".sequences"
#define T_FLAGS SCHEMA ".flags"
#define APPLICATION "station-ledger"

/* The advisory lock key under which stations migrate the schema ("STLG"). */
#define MIGRATE_LOCK "1398033479"

/* How long a statement waits for another station's lock before giving up, by default. */
#define LEDGER_BUSY_MS 5000

/* Rows fetched at a time by st_ledger_foreach. */
#define FETCH_ROWS "512"

/* Attempts at a call the server aborted for a passing reason (a deadlock between stations). */
#define TRANSIENT_TRIES 8

/* Reconnecting after the server went away: the wait doubles from the first to the last. */
#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 2000

#define LIVE "(state <> 'failed' OR cert_der IS NOT NULL)"

/* Schema migrations: migrations[i] brings a ledger from version i to i + 1. A new version is
 * one more entry; never edit an entry that has shipped. */
static const char *const migrations[] = {
	/* 0 -> 1: the first schema. */
	"CREATE SCHEMA " SCHEMA ";\n"
	"CREATE TABLE " T_META " (key text PRIMARY KEY, value text NOT NULL);\n"
	"INSERT INTO " T_META " VALUES ('application', '" APPLICATION "'), ('version', '0');\n"
	"CREATE SEQUENCE " SCHEMA ".certificates_id_seq;\n"
	"CREATE TABLE " T_CERTS " (\n"
	"  id bigint PRIMARY KEY DEFAULT nextval('" SCHEMA ".certificates_id_seq'),\n"
	"  serial text NOT NULL CHECK (serial ~ '^[0-9a-f]{1,40}$'),\n"
	"  device_id text NOT NULL CHECK (length(device_id) > 0),\n"
	"  profile text,\n"
	"  station text NOT NULL CHECK (length(station) > 0),\n"
	"  slot text,\n"
	"  csr_sha256 bytea NOT NULL CHECK (length(csr_sha256) = 32),\n"
	"  pubkey_sha256 bytea NOT NULL CHECK (length(pubkey_sha256) = 32),\n"
	"  state text NOT NULL CHECK (state IN ('intent', 'signed', 'delivered', 'failed')),\n"
	"  cert_der bytea,\n"
	"  not_before bigint,\n"
	"  not_after bigint,\n"
	"  created bigint NOT NULL,\n"
	"  signed_at bigint,\n"
	"  delivered_at bigint,\n"
	"  reason text,\n"
	"  origin_id bigint,\n"
	"  CHECK (state IN ('intent', 'failed') OR cert_der IS NOT NULL));\n"
	"ALTER SEQUENCE " SCHEMA ".certificates_id_seq OWNED BY " T_CERTS ".id;\n"
	"CREATE UNIQUE INDEX certificates_serial ON " T_CERTS " (serial) WHERE " LIVE ";\n"
	"CREATE UNIQUE INDEX certificates_pubkey ON " T_CERTS " (pubkey_sha256) WHERE " LIVE ";\n"
	"CREATE UNIQUE INDEX certificates_intent ON " T_CERTS " (device_id)\n"
	"  WHERE state = 'intent';\n"
	"CREATE INDEX certificates_device ON " T_CERTS " (device_id);\n"
	"CREATE UNIQUE INDEX certificates_origin ON " T_CERTS " (station, origin_id)\n"
	"  WHERE origin_id IS NOT NULL;\n"
	"CREATE TABLE " T_SEQ " (\n"
	"  prefix text PRIMARY KEY,\n"
	"  next bigint NOT NULL CHECK (next >= 1));\n"
	"CREATE SEQUENCE " SCHEMA ".flags_id_seq;\n"
	"CREATE TABLE " T_FLAGS " (\n"
	"  id bigint PRIMARY KEY DEFAULT nextval('" SCHEMA ".flags_id_seq'),\n"
	"  time bigint NOT NULL,\n"
	"  station text NOT NULL CHECK (length(station) > 0),\n"
	"  slot text,\n"
	"  device_id text,\n"
	"  pubkey_sha256 bytea CHECK (pubkey_sha256 IS NULL OR length(pubkey_sha256) = 32),\n"
	"  reason text NOT NULL,\n"
	"  origin_id bigint);\n"
	"ALTER SEQUENCE " SCHEMA ".flags_id_seq OWNED BY " T_FLAGS ".id;\n"
	"CREATE UNIQUE INDEX flags_origin ON " T_FLAGS " (station, origin_id)\n"
	"  WHERE origin_id IS NOT NULL;\n",
};
#define LEDGER_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

#define ROW_COLUMNS                                                                         \
	"id, serial, device_id, profile, station, slot, csr_sha256, pubkey_sha256, state, " \
	"cert_der, not_before, not_after, created, signed_at, delivered_at, reason"
#define NCOLS 16

/* Strongest row first: what a device id already holds. */
#define STATE_RANK                                                                          \
	"CASE state WHEN 'delivered' THEN 0 WHEN 'signed' THEN 1 WHEN 'failed' THEN 2 "    \
	"ELSE 3 END"

enum pstmt {
	P_LOOKUP,
	P_INTENTS_OF_DEVICE,
	P_SUPERSEDE_SAME,
	P_INSERT,
	P_LIVE_SERIAL,
	P_LIVE_KEY,
	P_SUPERSEDE,
	P_SET_CERT,
	P_DELIVERED,
	P_FAILED,
	P_STATE,
	P_GET,
	P_GET_SERIAL,
	P_GET_SERIAL_DEAD,
	P_SEQUENCE,
	P_SEQUENCE_AGAIN,
	P_FLAG,
	P_IMPORT_ORIGIN,
	P_IMPORT_ROW,
	P_IMPORT_UPDATE,
	P_IMPORT_FLAG,
	P_IMPORT_SEQUENCE,
	P_COUNT_
};

/* Parameters are typed by their casts; results come back in binary. */
static const char *const stmt_sql[P_COUNT_] = {
	/* The key's live row (which = 0), and the strongest live row of the device id for
	 * another key (which = 1), in one round trip. */
	[P_LOOKUP] = "(SELECT 0::int8, " ROW_COLUMNS " FROM " T_CERTS
		     " WHERE pubkey_sha256 = $1::bytea AND " LIVE " ORDER BY id DESC LIMIT 1)"
		     " UNION ALL (SELECT 1::int8, " ROW_COLUMNS " FROM " T_CERTS
		     " WHERE device_id = $2::text AND pubkey_sha256 <> $1::bytea AND " LIVE
		     " ORDER BY " STATE_RANK ", id DESC LIMIT 1)",
	[P_INTENTS_OF_DEVICE] = "SELECT id, CASE WHEN pubkey_sha256 = $2::bytea THEN 1 ELSE 0 "
				"END::int8, slot, station FROM " T_CERTS
				" WHERE device_id = $1::text AND state = 'intent' ORDER BY id",
	[P_SUPERSEDE_SAME] = "UPDATE " T_CERTS " SET state = 'failed', reason = 'superseded' "
			     "WHERE device_id = $1::text AND state = 'intent' "
			     "AND pubkey_sha256 = $2::bytea",
	[P_INSERT] = "INSERT INTO " T_CERTS " (id, serial, device_id, profile, station, slot, "
		     "csr_sha256, pubkey_sha256, state, created) VALUES (coalesce($1::int8, "
		     "nextval('" SCHEMA ".certificates_id_seq')), $2::text, $3::text, $4::text, "
		     "$5::text, $6::text, $7::bytea, $8::bytea, 'intent', $9::int8) "
		     "ON CONFLICT DO NOTHING RETURNING id",
	[P_LIVE_SERIAL] = "SELECT id, device_id, state, station FROM " T_CERTS
			  " WHERE serial = $1::text AND " LIVE " LIMIT 1",
	[P_LIVE_KEY] = "SELECT " ROW_COLUMNS " FROM " T_CERTS
		       " WHERE pubkey_sha256 = $1::bytea AND " LIVE " ORDER BY id DESC LIMIT 1",
	[P_SUPERSEDE] = "UPDATE " T_CERTS " SET state = 'failed', reason = 'superseded' "
			"WHERE id = $1::int8 AND state = 'intent'",
	[P_SET_CERT] = "UPDATE " T_CERTS " SET state = 'signed', cert_der = $2::bytea, "
		       "not_before = $3::int8, not_after = $4::int8, signed_at = $5::int8 "
		       "WHERE id = $1::int8 AND state = 'intent'",
	[P_DELIVERED] = "UPDATE " T_CERTS " SET state = 'delivered', reason = NULL, "
			"delivered_at = coalesce(delivered_at, $2::int8) "
			"WHERE id = $1::int8 AND cert_der IS NOT NULL "
			"AND state IN ('signed', 'failed', 'delivered')",
	[P_FAILED] = "UPDATE " T_CERTS " SET state = 'failed', reason = $2::text "
		     "WHERE id = $1::int8 AND state <> 'delivered'",
	[P_STATE] = "SELECT state, CASE WHEN cert_der IS NULL THEN 0 ELSE 1 END::int8, reason "
		    "FROM " T_CERTS " WHERE id = $1::int8",
	[P_GET] = "SELECT " ROW_COLUMNS " FROM " T_CERTS " WHERE id = $1::int8",
	[P_GET_SERIAL] = "SELECT " ROW_COLUMNS " FROM " T_CERTS
			 " WHERE serial = $1::text AND " LIVE " LIMIT 1",
	[P_GET_SERIAL_DEAD] = "SELECT " ROW_COLUMNS " FROM " T_CERTS
			      " WHERE serial = $1::text ORDER BY id DESC LIMIT 1",
	[P_SEQUENCE] = "INSERT INTO " T_SEQ " AS s (prefix, next) VALUES ($1::text, 2) "
		       "ON CONFLICT (prefix) DO UPDATE SET next = s.next + 1 RETURNING next - 1",
	/* A replay takes the number the caller was given, if nobody took it meanwhile. */
	[P_SEQUENCE_AGAIN] = "INSERT INTO " T_SEQ " AS s (prefix, next) "
			     "VALUES ($1::text, $2::int8 + 1) ON CONFLICT (prefix) DO UPDATE "
			     "SET next = $2::int8 + 1 WHERE s.next = $2::int8 RETURNING next - 1",
	[P_FLAG] = "INSERT INTO " T_FLAGS " (id, time, station, slot, device_id, pubkey_sha256, "
		   "reason) VALUES (coalesce($1::int8, nextval('" SCHEMA ".flags_id_seq')), "
		   "$2::int8, $3::text, $4::text, $5::text, $6::bytea, $7::text) RETURNING id",
	/* st_ledger_import(): a row of another ledger as it is, remembering where it came
	 * from (its station and id there). */
	[P_IMPORT_ORIGIN] = "SELECT id, serial, pubkey_sha256 FROM " T_CERTS
			    " WHERE station = $1::text AND origin_id = $2::int8",
	[P_IMPORT_ROW] = "INSERT INTO " T_CERTS " (serial, device_id, profile, station, slot, "
			 "csr_sha256, pubkey_sha256, state, cert_der, not_before, not_after, "
			 "created, signed_at, delivered_at, reason, origin_id) VALUES ($1::text, "
			 "$2::text, $3::text, $4::text, $5::text, $6::bytea, $7::bytea, $8::text, "
			 "$9::bytea, $10::int8, $11::int8, $12::int8, $13::int8, $14::int8, "
			 "$15::text, $16::int8) ON CONFLICT DO NOTHING RETURNING id",
	[P_IMPORT_UPDATE] = "UPDATE " T_CERTS " SET state = $2::text, cert_der = $3::bytea, "
			    "not_before = $4::int8, not_after = $5::int8, signed_at = $6::int8, "
			    "delivered_at = $7::int8, reason = $8::text WHERE id = $1::int8 AND "
			    "(state, cert_der, not_before, not_after, signed_at, delivered_at, "
			    "reason) IS DISTINCT FROM ($2::text, $3::bytea, $4::int8, $5::int8, "
			    "$6::int8, $7::int8, $8::text)",
	[P_IMPORT_FLAG] = "INSERT INTO " T_FLAGS " (time, station, slot, device_id, "
			  "pubkey_sha256, reason, origin_id) VALUES ($1::int8, $2::text, $3::text, "
			  "$4::text, $5::bytea, $6::text, $7::int8) ON CONFLICT DO NOTHING "
			  "RETURNING id",
	[P_IMPORT_SEQUENCE] = "INSERT INTO " T_SEQ " AS s (prefix, next) VALUES ($1::text, "
			      "$2::int8) ON CONFLICT (prefix) DO UPDATE SET next = "
			      "greatest(s.next, EXCLUDED.next)",
};

/* A call of the caller's transaction, kept to be replayed; its inputs and its result. */
enum call_kind {
	C_LOOKUP,
	C_ADD_INTENT,
	C_SUPERSEDE,
	C_SET_CERT,
	C_DELIVERED,
	C_FAILED,
	C_FLAG,
	C_SEQUENCE,
	C_GET,        /* reads: not kept in the journal */
	C_GET_SERIAL,
};

struct pg_call {
	struct pg_call *next;
	enum call_kind kind;
	int64_t id;          /* the row (updates; the row given out by add_intent, flag) */
	char *s[4];          /* add_intent: serial, device_id, profile, slot; failed: reason;
			      * flag: device_id, slot, reason; sequence: prefix; lookup:
			      * device_id */
	uint8_t key[32];     /* public key hash */
	uint8_t csr[32];     /* CSR hash (add_intent) */
	int has_key;
	uint8_t *der;        /* set_cert */
	size_t len;
	int64_t t[3];        /* the times written: created, signed_at, delivered_at, flag
			      * time; set_cert: not_before, not_after, signed_at */
	int rc;              /* the result: the verdict of a lookup, or 0, or ST_E_* */
	int64_t out;         /* add_intent, flag: the new row; lookup: the row named */
	uint64_t value;      /* next_sequence: the number */
	int owned;           /* strings and der are the journal's copies */
};

struct pg_ledger {
	PGconn *conn;
	char *spec;
	char *station;
	unsigned flags;
	int busy_ms;
	int settings_due;   /* the session needs lock_timeout set again */
	int prepared[P_COUNT_];
	int backend_pid;    /* the server process of the connection, and when it started */
	char backend_start[64];
	int old_pid;        /* the same of the connection before, which may have been lost */
	char old_start[64];

	/* The caller's transaction (st_ledger_begin .. commit) or a write's own one. */
	int in_tx;
	int own_tx;          /* begun by a write outside the caller's transaction */
	char xid[32];        /* the server's id of the open transaction, "" before BEGIN */
	int aborted;         /* the server aborted it: restore before the next statement */
	int lost;            /* the restore found other results: the transaction is lost */
	char lost_why[256];
	struct pg_call *journal, **jtail;

	/* Set by the last statement that failed: the connection is gone, or the error passes
	 * when the transaction is tried again (deadlock, serialization failure). */
	int gone;
	int transient;

	int unjournaled;     /* the transaction holds imports, which are not replayed */
	int iterating;
	void (*hook)(enum st_ledger_hook_point point, void *arg);
	void *hook_arg;
	struct st_ledger_outage outage;

	/* STATION_TEST_FAIL="ledger.commit_answer_lost:N": the N-th commit's answer is dropped
	 * with the connection after the server committed, as a network cut would. */
	unsigned long fail_at;
	unsigned long commits;
};

/* ---- Connection and statements ---------------------------------------------------------- */

static void disconnect(struct pg_ledger *l)
{
	if (l->conn)
		PQfinish(l->conn);
	l->conn = NULL;
	memset(l->prepared, 0, sizeof(l->prepared));
}

/* libpq's message on one line (its line ends and tabs as spaces, none at the end), in buf. */
static const char *pq_message(const char *m, char *buf, size_t len)
{
	size_t n, i;

	st_msgf(buf, len, "%s", m && *m ? m : "no message from libpq");
	n = strlen(buf);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = 0;
	for (i = 0; i < n; i++) {
		if (buf[i] == '\n' || buf[i] == '\t')
			buf[i] = ' ';
	}
	return buf;
}

/* Classifies a failed statement: the error code for the caller with a message naming the
 * ledger, what was being done and the server's words, and l->gone / l->transient. */
static int stmt_error(struct pg_ledger *l, const PGresult *res, const char *what, char *err,
		      size_t errlen)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	char msg[512];
	int code = ST_E_LEDGER_IO;

	pq_message(res ? PQresultErrorMessage(res) : PQerrorMessage(l->conn), msg, sizeof(msg));
	if (!res || !state || PQstatus(l->conn) != CONNECTION_OK || strncmp(state, "08", 2) == 0 ||
	    strcmp(state, "57P01") == 0 || strcmp(state, "57P02") == 0 ||
	    strcmp(state, "57P03") == 0) {
		l->gone = 1;
		disconnect(l);
		return st_errf(err, errlen, ST_E_LEDGER_IO,
			       "ledger %s: %s: lost the connection to the database: %s", l->spec,
			       what, msg);
	}
	if (strcmp(state, "40P01") == 0 || strcmp(state, "40001") == 0)
		l->transient = 1;
	if (strcmp(state, "55P03") == 0)
		return st_errf(err, errlen, ST_E_LEDGER_BUSY,
			       "ledger %s: %s: another station held a row locked for more than "
			       "%d ms",
			       l->spec, what, l->busy_ms);
	if (strcmp(state, "53200") == 0)
		code = ST_E_NOMEM;
	else if (strncmp(state, "42", 2) == 0 || strncmp(state, "XX", 2) == 0)
		code = ST_E_LEDGER_CORRUPT;
	return st_errf(err, errlen, code, "ledger %s: %s: %s (SQLSTATE %s)", l->spec, what, msg,
		       state);
}

/* Runs fixed SQL without parameters (BEGIN, COMMIT, settings). Returns the result or NULL
 * with the error in err (and its code in *rc). */
static PGresult *exec_fixed(struct pg_ledger *l, const char *sql, const char *what, int *rc,
			    char *err, size_t errlen)
{
	PGresult *res;
	ExecStatusType st;

	l->gone = l->transient = 0;
	if (!l->conn) {
		l->gone = 1;
		*rc = st_errf(err, errlen, ST_E_LEDGER_IO, "ledger %s: %s: not connected", l->spec,
			      what);
		return NULL;
	}
	res = PQexec(l->conn, sql);
	st = PQresultStatus(res);
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
		return res;
	*rc = stmt_error(l, res, what, err, errlen);
	PQclear(res);
	return NULL;
}

/* Bound parameters of one statement: text and numbers as text, hashes and DER in binary. */
struct params {
	int n;
	const char *v[16];
	int len[16];
	int fmt[16];
	char num[16][24];
};

static void p_text(struct params *p, const char *s)
{
	p->v[p->n] = s;
	p->len[p->n] = 0;
	p->fmt[p->n++] = 0;
}

static void p_i64(struct params *p, int64_t v)
{
	snprintf(p->num[p->n], sizeof(p->num[p->n]), "%lld", (long long)v);
	p_text(p, p->num[p->n]);
}

static void p_bytes(struct params *p, const void *b, size_t n)
{
	p->v[p->n] = b;
	p->len[p->n] = (int)n;
	p->fmt[p->n++] = 1;
}

static void p_bytes_or_null(struct params *p, const void *b, size_t n)
{
	if (b)
		p_bytes(p, b, n);
	else
		p_text(p, NULL);
}

/* Runs prepared statement id (prepared on this connection at its first use). Returns the
 * result or NULL with *rc and err. */
static PGresult *exec_stmt(struct pg_ledger *l, enum pstmt id, const struct params *p,
			   const char *what, int *rc, char *err, size_t errlen)
{
	char name[16];
	PGresult *res;
	ExecStatusType st;

	l->gone = l->transient = 0;
	if (!l->conn) {
		l->gone = 1;
		*rc = st_errf(err, errlen, ST_E_LEDGER_IO, "ledger %s: %s: not connected", l->spec,
			      what);
		return NULL;
	}
	snprintf(name, sizeof(name), "st_ledger_%d", (int)id);
	if (!l->prepared[id]) {
		res = PQprepare(l->conn, name, stmt_sql[id], 0, NULL);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			*rc = stmt_error(l, res, "preparing a statement", err, errlen);
			PQclear(res);
			return NULL;
		}
		PQclear(res);
		l->prepared[id] = 1;
	}
	res = PQexecPrepared(l->conn, name, p ? p->n : 0, p ? p->v : NULL, p ? p->len : NULL,
			     p ? p->fmt : NULL, 1);
	st = PQresultStatus(res);
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
		return res;
	*rc = stmt_error(l, res, what, err, errlen);
	PQclear(res);
	return NULL;
}

/* Binary result columns. */
static int64_t col_i64(const PGresult *r, int row, int col)
{
	const unsigned char *p = (const unsigned char *)PQgetvalue(r, row, col);
	uint64_t v = 0;
	int i;

	if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != 8)
		return 0;
	for (i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return (int64_t)v;
}

static const char *col_text(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

static char *col_strdup(const PGresult *r, int row, int col, int *oom)
{
	const char *t = col_text(r, row, col);
	char *copy;

	if (!t)
		return NULL;
	copy = strdup(t);
	if (!copy)
		*oom = 1;
	return copy;
}

static void col_hash(const PGresult *r, int row, int col, uint8_t out[32])
{
	int n = PQgetlength(r, row, col);

	memset(out, 0, 32);
	if (!PQgetisnull(r, row, col))
		memcpy(out, PQgetvalue(r, row, col), n < 32 ? (size_t)n : 32);
}

/* Copies result row `row` (ROW_COLUMNS from column `first`) into a new row. */
static int read_row(struct pg_ledger *l, const PGresult *r, int row, int first,
		    struct st_ledger_row **out, char *err, size_t errlen)
{
	struct st_ledger_row *x = calloc(1, sizeof(*x));
	int oom = 0, st, c = first;

	*out = NULL;
	if (!x)
		return st_errf(err, errlen, ST_E_NOMEM, "ledger %s: out of memory", l->spec);
	x->id = col_i64(r, row, c);
	x->serial = col_strdup(r, row, c + 1, &oom);
	x->device_id = col_strdup(r, row, c + 2, &oom);
	x->profile = col_strdup(r, row, c + 3, &oom);
	x->station = col_strdup(r, row, c + 4, &oom);
	x->slot = col_strdup(r, row, c + 5, &oom);
	col_hash(r, row, c + 6, x->csr_sha256);
	col_hash(r, row, c + 7, x->pubkey_sha256);
	st = st_ledger_state_parse(col_text(r, row, c + 8));
	x->state = st < 0 ? ST_LEDGER_FAILED : (enum st_ledger_state)st;
	if (!PQgetisnull(r, row, c + 9)) {
		x->cert_len = (size_t)PQgetlength(r, row, c + 9);
		x->cert_der = malloc(x->cert_len ? x->cert_len : 1);
		if (x->cert_der)
			memcpy(x->cert_der, PQgetvalue(r, row, c + 9), x->cert_len);
		else
			oom = 1;
	}
	x->not_before = (time_t)col_i64(r, row, c + 10);
	x->not_after = (time_t)col_i64(r, row, c + 11);
	x->created = (time_t)col_i64(r, row, c + 12);
	x->signed_at = (time_t)col_i64(r, row, c + 13);
	x->delivered_at = (time_t)col_i64(r, row, c + 14);
	x->reason = col_strdup(r, row, c + 15, &oom);
	if (oom || !x->serial || !x->device_id || !x->station) {
		long long id = (long long)x->id;

		st_ledger_row_free(x);
		if (oom)
			return st_errf(err, errlen, ST_E_NOMEM, "ledger %s: out of memory",
				       l->spec);
		return st_errf(err, errlen, ST_E_LEDGER_CORRUPT,
			       "ledger %s: row %lld lacks a serial, device id or station", l->spec,
			       id);
	}
	*out = x;
	return 0;
}

static void hash_hex(char out[65], const uint8_t h[32])
{
	int i;

	for (i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", h[i]);
}

/* Whether spec is a PostgreSQL connection string: a postgresql:// (or postgres://) URI, or
 * key=value words that libpq takes. A file path has neither (a path with '=' in it does not
 * parse as libpq's words). */
static int pg_claims(const char *spec)
{
	PQconninfoOption *opts;
	char *msg = NULL;

	if (!spec)
		return 0;
	if (strncmp(spec, "postgresql://", 13) == 0 || strncmp(spec, "postgres://", 11) == 0)
		return 1;
	if (!strchr(spec, '='))
		return 0;
	opts = PQconninfoParse(spec, &msg);
	PQfreemem(msg);
	if (!opts)
		return 0;
	PQconninfoFree(opts);
	return 1;
}

/* Refuses a password in the connection string: it would be in the configuration, in the
 * command lines of `station ledger --ledger` and in every message naming the ledger. */
static int check_spec(const char *spec, char *err, size_t errlen)
{
	PQconninfoOption *opts, *o;
	char *msg = NULL, m[256];
	int rc = 0;

	opts = PQconninfoParse(spec, &msg);
	if (!opts) {
		/* libpq's message quotes the part it could not parse, never the password. */
		rc = st_errf(err, errlen, ST_E_INVAL, "ledger: not a valid PostgreSQL connection "
			     "string: %s", pq_message(msg, m, sizeof(m)));
		PQfreemem(msg);
		return rc;
	}
	for (o = opts; o->keyword; o++) {
		if (strcmp(o->keyword, "password") == 0 && o->val && *o->val)
			rc = st_errf(err, errlen, ST_E_INVAL,
				     "ledger: the PostgreSQL connection string holds a password; "
				     "put it in a password file instead (passfile=FILE in the "
				     "connection string, or PGPASSFILE)");
	}
	PQconninfoFree(opts);
	return rc;
}

/* The session's settings: durable commits, the busy timeout as lock_timeout. */
static int session_setup(struct pg_ledger *l, char *err, size_t errlen)
{
	PGresult *res;
	const char *sync, *fsync;
	char sql[160];
	int rc = 0;

	res = exec_fixed(l,
			 "SELECT current_setting('synchronous_commit'), current_setting('fsync'), "
			 "(SELECT backend_start::text FROM pg_stat_activity "
			 "WHERE pid = pg_backend_pid())",
			 "reading the server's settings", &rc, err, errlen);
	if (!res)
		return rc;
	sync = PQgetvalue(res, 0, 0);
	fsync = PQgetvalue(res, 0, 1);
	st_msgf(l->backend_start, sizeof(l->backend_start), "%s", PQgetvalue(res, 0, 2));
	l->backend_pid = PQbackendPID(l->conn);
	if (strcmp(fsync, "on") != 0)
		st_warn("ledger %s: the server runs with fsync %s: a crash of its machine may lose "
			"committed certificates",
			l->spec, fsync);
	/* A lock_timeout of 0 waits for ever: the shortest wait is 1 ms. */
	snprintf(sql, sizeof(sql), "%sSET lock_timeout = %d",
		 strcmp(sync, "off") == 0 || strcmp(sync, "local") == 0 ?
			 "SET synchronous_commit = on; " : "",
		 l->busy_ms > 0 ? l->busy_ms : 1);
	PQclear(res);
	res = exec_fixed(l, sql, "setting durable commits", &rc, err, errlen);
	if (!res)
		return rc;
	PQclear(res);
	l->settings_due = 0;
	return 0;
}

/* The server's notices go to the log, not to libpq's stderr. */
static void on_notice(void *arg, const char *message)
{
	struct pg_ledger *l = arg;
	char m[512];

	st_info("ledger %s: the database says: %s", l->spec, pq_message(message, m, sizeof(m)));
}

/* Opens the connection. Defaults come first so that the spec may override them: bounded
 * connection attempts, and TCP keepalives so that a network cut is noticed. */
static int connect_db(struct pg_ledger *l, char *err, size_t errlen)
{
	char app[96], m[512];
	const char *keys[] = { "connect_timeout", "keepalives", "keepalives_idle",
			       "keepalives_interval", "keepalives_count", "tcp_user_timeout",
			       "fallback_application_name", "dbname", NULL };
	const char *vals[] = { "10", "1", "10", "3", "3", "20000", app, l->spec, NULL };
	int rc;

	disconnect(l);
	st_msgf(app, sizeof(app), "station %s", l->station);
	l->conn = PQconnectdbParams(keys, vals, 1);
	if (!l->conn)
		return st_errf(err, errlen, ST_E_NOMEM, "ledger %s: out of memory", l->spec);
	PQsetNoticeProcessor(l->conn, on_notice, l);
	if (PQstatus(l->conn) != CONNECTION_OK) {
		rc = st_errf(err, errlen, ST_E_LEDGER_OPEN, "ledger %s: cannot connect: %s",
			     l->spec, pq_message(PQerrorMessage(l->conn), m, sizeof(m)));
		disconnect(l);
		return rc;
	}
	if (PQserverVersion(l->conn) < 130000) {
		rc = st_errf(err, errlen, ST_E_LEDGER_OPEN,
			     "ledger %s: the server runs PostgreSQL %d.%d; the ledger needs 13 or "
			     "newer",
			     l->spec, PQserverVersion(l->conn) / 10000,
			     PQserverVersion(l->conn) % 10000 / 100);
		disconnect(l);
		return rc;
	}
	l->old_pid = l->backend_pid;
	memcpy(l->old_start, l->backend_start, sizeof(l->old_start));
	rc = session_setup(l, err, errlen);
	if (rc < 0)
		disconnect(l);
	return rc;
}

/* ---- Opening: schema version and migrations -------------------------------------------- */

/* The schema's state: 0 (no ledger schema yet), its version, or an error for a schema that
 * is not a ledger's. */
static int schema_version(struct pg_ledger *l, int *version, char *err, size_t errlen)
{
	PGresult *res;
	const char *app = NULL, *ver = NULL;
	int rc = 0, i;

	*version = 0;
	/* The catalogs read in this statement's snapshot (to_regclass() may answer from a
	 * cache that another station's migration, just committed, has not reached yet). */
	res = exec_fixed(l,
			 "SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = '" SCHEMA "'), "
			 "EXISTS (SELECT FROM pg_class c JOIN pg_namespace n ON n.oid = "
			 "c.relnamespace WHERE n.nspname = '" SCHEMA "' AND c.relname = 'meta')",
			 "reading the schema", &rc, err, errlen);
	if (!res)
		return rc;
	if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
		PQclear(res);
		return 0;
	}
	if (strcmp(PQgetvalue(res, 0, 1), "t") != 0) {
		PQclear(res);
		return st_errf(err, errlen, ST_E_LEDGER_CORRUPT,
			       "ledger %s: the database has a schema " SCHEMA " that is not a "
			       "station ledger (no table meta)",
			       l->spec);
	}
	PQclear(res);
	res = exec_fixed(l, "SELECT key, value FROM " T_META, "reading the schema version", &rc,
			 err, errlen);
	if (!res)
		return rc;
	for (i = 0; i < PQntuples(res); i++) {
		if (strcmp(PQgetvalue(res, i, 0), "application") == 0)
			app = PQgetvalue(res, i, 1);
		else if (strcmp(PQgetvalue(res, i, 0), "version") == 0)
			ver = PQgetvalue(res, i, 1);
	}
	if (!app || strcmp(app, APPLICATION) != 0 || !ver) {
		rc = st_errf(err, errlen, ST_E_LEDGER_CORRUPT,
			     "ledger %s: the schema " SCHEMA " is not a station ledger "
			     "(application '%s', expected '" APPLICATION "')",
			     l->spec, app ? app : "(none)");
	} else {
		*version = atoi(ver);
		if (*version < 1)
			rc = st_errf(err, errlen, ST_E_LEDGER_CORRUPT,
				     "ledger %s: schema version '%s' is not a version", l->spec,
				     ver);
	}
	PQclear(res);
	return rc;
}

static int refuse_newer(struct pg_ledger *l, int version, char *err, size_t errlen)
{
	return st_errf(err, errlen, ST_E_LEDGER_VERSION,
		       "ledger %s: schema version %d is newer than this station's (%d); use a "
		       "newer station",
		       l->spec, version, LEDGER_VERSION);
}

/* Checks the version and migrates an older schema in one transaction, under an advisory
 * lock so that stations starting together migrate once. */
static int migrate(struct pg_ledger *l, char *err, size_t errlen)
{
	PGresult *res;
	char sql[96];
	int version, rc;

	rc = schema_version(l, &version, err, errlen);
	if (rc < 0)
		return rc;
	if (version > LEDGER_VERSION)
		return refuse_newer(l, version, err, errlen);
	if (version == LEDGER_VERSION)
		return 0;
	if (version == 0 && (l->flags & ST_LEDGER_NOCREATE))
		return st_errf(err, errlen, ST_E_LEDGER_CORRUPT,
			       "ledger %s: the database holds no station ledger (no schema "
			       SCHEMA ")",
			       l->spec);
	res = exec_fixed(l, "BEGIN; SELECT pg_advisory_xact_lock(" MIGRATE_LOCK ")",
			 "starting the schema migration", &rc, err, errlen);
	if (!res)
		goto fail;
	PQclear(res);
	/* Another station may have migrated it while this one waited for the lock. */
	rc = schema_version(l, &version, err, errlen);
	if (rc < 0)
		goto fail;
	if (version > LEDGER_VERSION) {
		rc = refuse_newer(l, version, err, errlen);
		goto fail;
	}
	for (; version < LEDGER_VERSION; version++) {
		res = exec_fixed(l, migrations[version], "migrating the schema", &rc, err, errlen);
		if (!res)
			goto fail;
		PQclear(res);
		snprintf(sql, sizeof(sql),
			 "UPDATE " T_META " SET value = '%d' WHERE key = 'version'", version + 1);
		res = exec_fixed(l, sql, "migrating the schema", &rc, err, errlen);
		if (!res)
			goto fail;
		PQclear(res);
	}
	res = exec_fixed(l, "COMMIT", "committing the schema migration", &rc, err, errlen);
	if (!res)
		goto fail;
	PQclear(res);
	return 0;
fail:
	if (l->conn)
		PQclear(PQexec(l->conn, "ROLLBACK"));
	return rc;
}

static void parse_fail_hook(struct pg_ledger *l)
{
	const char *v = getenv("STATION_TEST_FAIL");

	if (!v || strncmp(v, "ledger.commit_answer_lost", 25) != 0)
		return;
	l->fail_at = v[25] == ':' ? strtoul(v + 26, NULL, 10) : 1;
	st_warn("ledger: test fault hook %s armed", v);
}

static void pg_close(void *inst);

static int pg_open(const char *spec, const char *station, unsigned flags, void **out,
		   char *err, size_t errlen)
{
	struct pg_ledger *l;
	char host[HOST_NAME_MAX + 1];
	int rc;

	*out = NULL;
	rc = check_spec(spec, err, errlen);
	if (rc < 0)
		return rc;
	if (!station) {
		if (gethostname(host, sizeof(host)) != 0)
			strcpy(host, "station");
		host[sizeof(host) - 1] = 0;
		station = host;
	}
	l = calloc(1, sizeof(*l));
	if (!l)
		return st_errf(err, errlen, ST_E_NOMEM, "ledger: out of memory");
	l->spec = strdup(spec);
	l->station = strdup(station);
	l->flags = flags;
	l->busy_ms = LEDGER_BUSY_MS;
	l->jtail = &l->journal;
	parse_fail_hook(l);
	if (!l->spec || !l->station) {
		pg_close(l);
		return st_errf(err, errlen, ST_E_NOMEM, "ledger: out of memory");
	}
	rc = connect_db(l, err, errlen);
	if (rc == 0)
		rc = migrate(l, err, errlen);
	if (rc < 0) {
		pg_close(l);
		return rc;
	}
	*out = l;
	return 0;
}

static void journal_free(struct pg_ledger *l);

static void pg_close(void *inst)
{
	struct pg_ledger *l = inst;

	if (!l)
		return;
	/* Closing the connection rolls an open transaction back. */
	disconnect(l);
	journal_free(l);
	free(l->spec);
	free(l->station);
	free(l);
}

static void pg_set_busy_timeout(void *inst, int ms)
{
	struct pg_ledger *l = inst;

	l->busy_ms = ms > 0 ? ms : 0;
	l->settings_due = 1;
}

static const char *pg_path(const void *inst)
{
	const struct pg_ledger *l = inst;

	return l->spec;
}

static void pg_set_hook(void *inst, void (*fn)(enum st_ledger_hook_point point, void *arg),
			void *arg)
{
	struct pg_ledger *l = inst;

	l->hook = fn;
	l->hook_arg = arg;
}

static void pg_set_outage(void *inst, const struct st_ledger_outage *outage)
{
	struct pg_ledger *l = inst;

	if (outage)
		l->outage = *outage;
	else
		memset(&l->outage, 0, sizeof(l->outage));
}

/* ---- The calls ------------------------------------------------------------------------- */

/* After an update changed nothing: why. */
static int state_error(struct pg_ledger *l, int64_t id, const char *wanted, char *err,
		       size_t errlen)
{
	struct params p = { 0 };
	PGresult *res;
	const char *reason;
	int rc;

	p_i64(&p, id);
	res = exec_stmt(l, P_STATE, &p, "reading a row's state", &rc, err, errlen);
	if (!res)
		return rc;
	if (PQntuples(res) == 0) {
		rc = st_errf(err, errlen, ST_E_NOTFOUND, "ledger %s: no row %lld", l->spec,
			     (long long)id);
	} else {
		reason = col_text(res, 0, 2);
		rc = st_errf(err, errlen, ST_E_LEDGER_STATE,
			     "ledger %s: row %lld is %s%s%s%s%s, expected %s", l->spec,
			     (long long)id, col_text(res, 0, 0),
			     col_i64(res, 0, 1) ? " with a certificate" : "", reason ? " (" : "",
			     reason ? reason : "", reason ? ")" : "", wanted);
	}
	PQclear(res);
	return rc;
}

/* Runs an UPDATE of one row; when it changed nothing, explains why. */
static int update_row(struct pg_ledger *l, enum pstmt id, const struct params *p, int64_t row,
		      const char *what, const char *wanted, char *err, size_t errlen)
{
	PGresult *res;
	int rc, changed;

	res = exec_stmt(l, id, p, what, &rc, err, errlen);
	if (!res)
		return rc;
	changed = strcmp(PQcmdTuples(res), "0") != 0;
	PQclear(res);
	return changed ? 0 : state_error(l, row, wanted, err, errlen);
}

static int do_lookup(struct pg_ledger *l, struct pg_call *c, struct st_ledger_row **row,
		     char *err, size_t errlen)
{
	struct st_ledger_row *r = NULL;
	struct params p = { 0 };
	PGresult *res;
	int rc, i, key_row = -1, id_row = -1;

	p_bytes(&p, c->key, 32);
	p_text(&p, c->s[0]);
	res = exec_stmt(l, P_LOOKUP, &p, "looking the key and device id up", &rc, err, errlen);
	if (!res)
		return rc;
	for (i = 0; i < PQntuples(res); i++) {
		if (col_i64(res, i, 0) == 0)
			key_row = i;
		else
			id_row = i;
	}
	if (key_row >= 0 || id_row >= 0) {
		rc = read_row(l, res, key_row >= 0 ? key_row : id_row, 1, &r, err, errlen);
		if (rc < 0) {
			PQclear(res);
			return rc;
		}
	}
	PQclear(res);
	if (!r)
		rc = ST_LEDGER_NEW;
	else if (key_row < 0)
		rc = ST_LEDGER_ID_OTHER_KEY;
	else if (strcmp(r->device_id, c->s[0]) != 0)
		rc = ST_LEDGER_KEY_REUSED;
	else if (r->cert_der)
		rc = ST_LEDGER_RECORDED;
	else
		rc = ST_LEDGER_POSSIBLY_SIGNED;
	c->out = r ? r->id : 0;
	if (row && (rc == ST_LEDGER_RECORDED || rc == ST_LEDGER_KEY_REUSED ||
		    rc == ST_LEDGER_ID_OTHER_KEY)) {
		*row = r;
		r = NULL;
	}
	st_ledger_row_free(r);
	return rc;
}

/* The open intents of the call's device id: 1 when one is for the call's key (to be
 * superseded), 0 when there is none, or ST_E_LEDGER_DUP_ID for another key's. */
static int device_intents(struct pg_ledger *l, const struct pg_call *c, char *err,
			  size_t errlen)
{
	struct params p = { 0 };
	PGresult *res;
	const char *slot;
	int rc, i, same = 0;

	p_text(&p, c->s[1]);
	p_bytes(&p, c->key, 32);
	res = exec_stmt(l, P_INTENTS_OF_DEVICE, &p, "reading the device's intents", &rc, err,
			errlen);
	if (!res)
		return rc;
	for (i = 0; i < PQntuples(res); i++) {
		if (col_i64(res, i, 1)) {
			same = 1;
			continue;
		}
		slot = col_text(res, i, 2);
		rc = st_errf(err, errlen, ST_E_LEDGER_DUP_ID,
			     "ledger %s: device id %s has an open intent for another key (row "
			     "%lld, station %s, slot %s); supersede it or refuse the board",
			     l->spec, c->s[1], (long long)col_i64(res, i, 0), col_text(res, i, 3),
			     slot ? slot : "-");
		PQclear(res);
		return rc;
	}
	PQclear(res);
	return same;
}

/* After an insert found a conflict: which row holds the serial, the key or the device id's
 * intent. 0 when none does any more (the other transaction's row went away). */
static int insert_conflict(struct pg_ledger *l, const struct pg_call *c, char *err,
			   size_t errlen)
{
	struct st_ledger_row *other = NULL;
	struct params p = { 0 };
	PGresult *res;
	char keyhex[65];
	int rc;

	p_text(&p, c->s[0]);
	res = exec_stmt(l, P_LIVE_SERIAL, &p, "looking the serial up", &rc, err, errlen);
	if (!res)
		return rc;
	if (PQntuples(res) > 0) {
		rc = st_errf(err, errlen, ST_E_LEDGER_DUP_SERIAL,
			     "ledger %s: serial %s is already recorded (row %lld, device id %s, "
			     "%s, station %s)",
			     l->spec, c->s[0], (long long)col_i64(res, 0, 0), col_text(res, 0, 1),
			     col_text(res, 0, 2), col_text(res, 0, 3));
		PQclear(res);
		return rc;
	}
	PQclear(res);
	p.n = 0;
	p_bytes(&p, c->key, 32);
	res = exec_stmt(l, P_LIVE_KEY, &p, "looking the key up", &rc, err, errlen);
	if (!res)
		return rc;
	if (PQntuples(res) > 0) {
		rc = read_row(l, res, 0, 0, &other, err, errlen);
		PQclear(res);
		if (rc < 0)
			return rc;
		hash_hex(keyhex, c->key);
		rc = st_errf(err, errlen, ST_E_LEDGER_DUP_KEY,
			     "ledger %s: public key sha256:%s is already recorded for device id %s "
			     "(row %lld, %s, station %s)",
			     l->spec, keyhex, other->device_id, (long long)other->id,
			     st_ledger_state_name(other->state), other->station);
		st_ledger_row_free(other);
		return rc;
	}
	PQclear(res);
	rc = device_intents(l, c, err, errlen);
	return rc < 0 ? rc : 0;
}

static int run_fixed(struct pg_ledger *l, const char *sql, const char *what, char *err,
		     size_t errlen)
{
	PGresult *res;
	int rc;

	res = exec_fixed(l, sql, what, &rc, err, errlen);
	if (!res)
		return rc;
	PQclear(res);
	return 0;
}

/* One INSERT of the intent, on a replay with the row id it was given the first time: 1 when
 * it went in (c->out), 0 when a unique rule turned it away, or an error. */
static int insert_intent(struct pg_ledger *l, struct pg_call *c, int replay, char *err,
			 size_t errlen)
{
	struct params p = { 0 };
	PGresult *res;
	int rc;

	if (replay)
		p_i64(&p, c->id);
	else
		p_text(&p, NULL);
	p_text(&p, c->s[0]);
	p_text(&p, c->s[1]);
	p_text(&p, c->s[2]);
	p_text(&p, l->station);
	p_text(&p, c->s[3]);
	p_bytes(&p, c->csr, 32);
	p_bytes(&p, c->key, 32);
	p_i64(&p, c->t[0]);
	res = exec_stmt(l, P_INSERT, &p, "recording an intent", &rc, err, errlen);
	if (!res)
		return rc;
	rc = PQntuples(res) == 1;
	if (rc)
		c->out = c->id = col_i64(res, 0, 0);
	PQclear(res);
	return rc;
}

static int do_add_intent(struct pg_ledger *l, struct pg_call *c, int replay, char *err,
			 size_t errlen)
{
	struct params p = { 0 };
	PGresult *res;
	int rc, same, tries;

	c->out = 0;
	/* Most intents meet no rule: one round trip. An open intent of this device id would
	 * have turned it away (one per device id), so none is left to supersede. */
	rc = insert_intent(l, c, replay, err, errlen);
	if (rc != 0)
		return rc < 0 ? rc : 0;
	same = device_intents(l, c, err, errlen);
	if (same < 0)
		return same;
	/* Superseding and inserting are one step: undone together when the insert is
	 * refused. */
	if (same) {
		rc = run_fixed(l, "SAVEPOINT st_ledger_intent", "starting an intent", err, errlen);
		if (rc == 0) {
			p_text(&p, c->s[1]);
			p_bytes(&p, c->key, 32);
			res = exec_stmt(l, P_SUPERSEDE_SAME, &p, "superseding an intent", &rc, err,
					errlen);
			PQclear(res);
		}
		if (rc < 0)
			return rc;
	}
	for (tries = 0; tries < 3; tries++) {
		rc = insert_intent(l, c, replay, err, errlen);
		if (rc < 0)
			return rc;
		if (rc == 1)
			return same ? run_fixed(l, "RELEASE st_ledger_intent", "recording an intent",
						err, errlen) :
				      0;
		rc = insert_conflict(l, c, err, errlen);
		if (rc < 0)
			break;
	}
	if (rc == 0)
		rc = st_errf(err, errlen, ST_E_LEDGER_DUP_SERIAL,
			     "ledger %s: serial %s: the insert kept meeting rows that went away",
			     l->spec, c->s[0]);
	if (same && !l->gone &&
	    (run_fixed(l, "ROLLBACK TO st_ledger_intent", "undoing an intent", NULL, 0) < 0 ||
	     run_fixed(l, "RELEASE st_ledger_intent", "undoing an intent", NULL, 0) < 0))
		return ST_E_LEDGER_IO;
	return rc;
}

static int do_set_cert(struct pg_ledger *l, struct pg_call *c, char *err, size_t errlen)
{
	struct params p = { 0 };

	p_i64(&p, c->id);
	p_bytes(&p, c->der, c->len);
	p_i64(&p, c->t[0]);
	p_i64(&p, c->t[1]);
	p_i64(&p, c->t[2]);
	return update_row(l, P_SET_CERT, &p, c->id, "recording a certificate", "an intent", err,
			  errlen);
}

static int do_flag(struct pg_ledger *l, struct pg_call *c, int replay, char *err,
		   size_t errlen)
{
	struct params p = { 0 };
	PGresult *res;
	int rc;

	if (replay)
		p_i64(&p, c->out);
	else
		p_text(&p, NULL);
	p_i64(&p, c->t[0]);
	p_text(&p, l->station);
	p_text(&p, c->s[1]);
	p_text(&p, c->s[0]);
	p_bytes_or_null(&p, c->has_key ? c->key : NULL, 32);
	p_text(&p, c->s[2]);
	res = exec_stmt(l, P_FLAG, &p, "recording a flag", &rc, err, errlen);
	if (!res)
		return rc;
	c->out = col_i64(res, 0, 0);
	PQclear(res);
	return 0;
}

static int do_sequence(struct pg_ledger *l, struct pg_call *c, int replay, char *err,
		       size_t errlen)
{
	struct params p = { 0 };
	PGresult *res;
	int rc;

	p_text(&p, c->s[0]);
	if (replay)
		p_i64(&p, (int64_t)c->value);
	res = exec_stmt(l, replay ? P_SEQUENCE_AGAIN : P_SEQUENCE, &p,
			"allocating a sequence number", &rc, err, errlen);
	if (!res)
		return rc;
	if (PQntuples(res) != 1) {
		PQclear(res);
		return st_errf(err, errlen, ST_E_LEDGER_STATE,
			       "ledger %s: sequence '%s': number %llu was taken meanwhile", l->spec,
			       c->s[0], (unsigned long long)c->value);
	}
	c->value = (uint64_t)col_i64(res, 0, 0);
	PQclear(res);
	if (c->value < 1)
		return st_errf(err, errlen, ST_E_LEDGER_CORRUPT,
			       "ledger %s: sequence '%s' is out of range", l->spec, c->s[0]);
	return 0;
}

/* Reads one row by id (C_GET) or by serial, the live row first (C_GET_SERIAL). */
static int do_get(struct pg_ledger *l, struct pg_call *c, struct st_ledger_row **row,
		  char *err, size_t errlen)
{
	struct params p = { 0 };
	PGresult *res;
	int rc;

	if (c->kind == C_GET)
		p_i64(&p, c->id);
	else
		p_text(&p, c->s[0]);
	res = exec_stmt(l, c->kind == C_GET ? P_GET : P_GET_SERIAL, &p, "reading a row", &rc, err,
			errlen);
	if (res && PQntuples(res) == 0 && c->kind == C_GET_SERIAL) {
		PQclear(res);
		res = exec_stmt(l, P_GET_SERIAL_DEAD, &p, "reading a row", &rc, err, errlen);
	}
	if (!res)
		return rc;
	if (PQntuples(res) == 0)
		rc = c->kind == C_GET ? st_errf(err, errlen, ST_E_NOTFOUND, "ledger %s: no row %lld",
						l->spec, (long long)c->id) :
					st_errf(err, errlen, ST_E_NOTFOUND,
						"ledger %s: no row with serial %s", l->spec,
						c->s[0]);
	else
		rc = read_row(l, res, 0, 0, row, err, errlen);
	PQclear(res);
	return rc;
}

/* Runs the statements of one call. Returns what the call returns (a verdict for a lookup).
 * A replay gives the rows the ids of the first run. */
static int run_call(struct pg_ledger *l, struct pg_call *c, int replay,
		    struct st_ledger_row **row, char *err, size_t errlen)
{
	struct params p = { 0 };

	switch (c->kind) {
	case C_LOOKUP:
		return do_lookup(l, c, row, err, errlen);
	case C_ADD_INTENT:
		return do_add_intent(l, c, replay, err, errlen);
	case C_SUPERSEDE:
		p_i64(&p, c->id);
		return update_row(l, P_SUPERSEDE, &p, c->id, "superseding an intent", "an intent",
				  err, errlen);
	case C_SET_CERT:
		return do_set_cert(l, c, err, errlen);
	case C_DELIVERED:
		p_i64(&p, c->id);
		p_i64(&p, c->t[0]);
		return update_row(l, P_DELIVERED, &p, c->id, "marking a row delivered",
				  "a row with a certificate", err, errlen);
	case C_FAILED:
		p_i64(&p, c->id);
		p_text(&p, c->s[0]);
		return update_row(l, P_FAILED, &p, c->id, "marking a row failed",
				  "a row not yet delivered", err, errlen);
	case C_FLAG:
		return do_flag(l, c, replay, err, errlen);
	case C_SEQUENCE:
		return do_sequence(l, c, replay, err, errlen);
	case C_GET:
	case C_GET_SERIAL:
		return do_get(l, c, row, err, errlen);
	}
	return st_errf(err, errlen, ST_E_INTERNAL, "ledger %s: unknown call %d", l->spec,
		       (int)c->kind);
}

/* ---- Transactions: the journal, restoring, committing ---------------------------------- */

static int in_error(const struct pg_ledger *l)
{
	return l->conn && PQtransactionStatus(l->conn) == PQTRANS_INERROR;
}

static int is_read(enum call_kind k)
{
	return k == C_LOOKUP || k == C_GET || k == C_GET_SERIAL;
}

static void call_free(struct pg_call *c)
{
	int i;

	for (i = 0; i < 4; i++)
		free(c->s[i]);
	free(c->der);
	free(c);
}

static void journal_free(struct pg_ledger *l)
{
	struct pg_call *c;

	while ((c = l->journal)) {
		l->journal = c->next;
		call_free(c);
	}
	l->jtail = &l->journal;
}

/* Keeps a copy of a call of the open transaction (its inputs and its result). */
static int journal_add(struct pg_ledger *l, const struct pg_call *c)
{
	struct pg_call *j = calloc(1, sizeof(*j));
	int i, oom = !j;

	if (!j)
		return -1;
	*j = *c;
	j->next = NULL;
	j->der = NULL;
	for (i = 0; i < 4; i++) {
		j->s[i] = c->s[i] ? strdup(c->s[i]) : NULL;
		oom |= c->s[i] && !j->s[i];
	}
	if (c->der && c->len) {
		j->der = malloc(c->len);
		if (j->der)
			memcpy(j->der, c->der, c->len);
		oom |= !j->der;
	}
	if (oom) {
		call_free(j);
		return -1;
	}
	*l->jtail = j;
	l->jtail = &j->next;
	return 0;
}

static void tx_end(struct pg_ledger *l, int rollback)
{
	if (rollback && l->conn && PQtransactionStatus(l->conn) != PQTRANS_IDLE)
		PQclear(PQexec(l->conn, "ROLLBACK"));
	journal_free(l);
	l->in_tx = l->own_tx = l->aborted = l->lost = l->unjournaled = 0;
	l->xid[0] = 0;
	l->lost_why[0] = 0;
}

static int lost_error(struct pg_ledger *l, char *err, size_t errlen)
{
	return st_errf(err, errlen, ST_E_LEDGER_IO,
		       "ledger %s: the open transaction was lost: the database aborted it and "
		       "replaying it gave other results (%s); roll it back and try again",
		       l->spec, l->lost_why);
}

/* BEGIN, and the transaction's id for asking about it after a lost COMMIT. */
static int tx_begin(struct pg_ledger *l, char *err, size_t errlen)
{
	PGresult *res;
	int rc;

	res = exec_fixed(l, "BEGIN; SELECT pg_current_xact_id()::text", "starting a transaction",
			 &rc, err, errlen);
	if (!res) {
		if (in_error(l))
			PQclear(PQexec(l->conn, "ROLLBACK"));
		return rc;
	}
	st_msgf(l->xid, sizeof(l->xid), "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	return 0;
}

/* A connection lost in the middle of a transaction may leave its server process running for
 * a while (a network cut is noticed late), holding the transaction's locks: ends it, if the
 * role may and it is still the same process. */
static void end_old_backend(struct pg_ledger *l)
{
	const char *vals[2];
	char pid[16];

	if (!l->old_pid || l->old_pid == l->backend_pid || !l->conn)
		return;
	snprintf(pid, sizeof(pid), "%d", l->old_pid);
	vals[0] = pid;
	vals[1] = l->old_start;
	PQclear(PQexecParams(l->conn,
			     "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
			     "WHERE pid = $1::int4 AND backend_start = $2::timestamptz",
			     2, NULL, vals, NULL, NULL, 0));
}

/* Waiting for the database between attempts. */
struct retry {
	unsigned n;
	int waited;
};

/* After the database could not be reached: whether to try again. The first time at once;
 * then only with the outage handler, which waits the backoff. */
static int retry_again(struct pg_ledger *l, struct retry *t, const char *reason)
{
	unsigned ms = BACKOFF_FIRST_MS, i;
	size_t n = strlen(l->spec);

	if (t->n++ == 0)
		return 1;
	if (!l->outage.wait)
		return 0;
	/* The handler shows the reason to the operator: what the database said, without the
	 * connection string before it. */
	if (strncmp(reason, "ledger ", 7) == 0 && strncmp(reason + 7, l->spec, n) == 0 &&
	    strncmp(reason + 7 + n, ": ", 2) == 0)
		reason += 9 + n;
	for (i = 2; i < t->n && ms < BACKOFF_MAX_MS; i++)
		ms *= 2;
	if (ms > BACKOFF_MAX_MS)
		ms = BACKOFF_MAX_MS;
	if (!t->waited)
		st_warn("ledger %s: %s; waiting for the database", l->spec, reason);
	t->waited = 1;
	return l->outage.wait(l->outage.arg, reason, ms) == 0;
}

static void retry_done(struct pg_ledger *l, struct retry *t)
{
	if (!t->waited)
		return;
	st_notice("ledger %s: the database answers again", l->spec);
	if (l->outage.back)
		l->outage.back(l->outage.arg);
}

/* The caller's transaction after the server aborted it: a new transaction with the journal
 * replayed, each call with the ids of its first run and each result compared. */
static int restore(struct pg_ledger *l, char *err, size_t errlen)
{
	struct pg_call *c;
	char msg[256];
	uint64_t value;
	int64_t out;
	int rc, was, n = 0;

	if (in_error(l))
		PQclear(PQexec(l->conn, "ROLLBACK"));
	if (l->unjournaled) {
		st_msgf(l->lost_why, sizeof(l->lost_why), "it held imported rows");
		l->lost = 1;
		return lost_error(l, err, errlen);
	}
	end_old_backend(l);
	rc = tx_begin(l, err, errlen);
	if (rc < 0)
		return rc;
	for (c = l->journal; c; c = c->next, n++) {
		was = c->rc;
		out = c->out;
		value = c->value;
		msg[0] = 0;
		rc = run_call(l, c, 1, NULL, msg, sizeof(msg));
		if (l->gone || in_error(l))
			return st_errf(err, errlen, rc < 0 ? rc : ST_E_LEDGER_IO, "%s", msg);
		if (rc != was || c->out != out || c->value != value) {
			st_msgf(l->lost_why, sizeof(l->lost_why),
				"call %d of the transaction returned %s, first %s%s%s", n + 1,
				rc < 0 ? st_errname(rc) : "a different result",
				was < 0 ? st_errname(was) : "success", msg[0] ? ": " : "", msg);
			c->rc = was;
			c->out = out;
			c->value = value;
			l->lost = 1;
			PQclear(PQexec(l->conn, "ROLLBACK"));
			return lost_error(l, err, errlen);
		}
	}
	l->aborted = 0;
	st_info("ledger %s: transaction restored (%d calls replayed)", l->spec, n);
	return 0;
}

/* Before the statements of a call: a connection, and the caller's transaction restored when
 * the server aborted it. */
static int prepare(struct pg_ledger *l, char *err, size_t errlen)
{
	int rc;

	l->gone = l->transient = 0;
	if (l->in_tx && l->lost)
		return lost_error(l, err, errlen);
	if (!l->conn || PQstatus(l->conn) != CONNECTION_OK) {
		if (l->in_tx)
			l->aborted = 1;
		rc = connect_db(l, err, errlen);
		if (rc < 0) {
			l->gone = rc != ST_E_NOMEM;
			return rc;
		}
	} else if (l->settings_due && !l->in_tx) {
		rc = session_setup(l, err, errlen);
		if (rc < 0)
			return rc;
	}
	if (l->in_tx && l->aborted)
		return restore(l, err, errlen);
	return 0;
}

/* The answer to COMMIT was lost with the connection: asks the server what became of the
 * transaction. 1: it committed; 0: it did not (never arrived, or rolled back): replay it;
 * negative: the database could not be asked (the handler gave up). */
static int resolve(struct pg_ledger *l, struct retry *t, char *err, size_t errlen)
{
	const char *vals[1] = { l->xid }, *state;
	struct timespec pause = { 0, 100 * 1000000L };
	char why[512], m[256];
	PGresult *res;
	int running = 0, rc;

	st_msgf(why, sizeof(why), "%s", err ? err : "connection lost");
	for (;;) {
		if (!retry_again(l, t, why))
			return st_errf(err, errlen, ST_E_LEDGER_IO,
				       "ledger %s: the answer to COMMIT was lost and the database "
				       "cannot be asked whether it committed (%s)",
				       l->spec, why);
		if (connect_db(l, why, sizeof(why)) < 0)
			continue;
		end_old_backend(l);
		res = PQexecParams(l->conn, "SELECT pg_xact_status($1::xid8)", 1, NULL, vals, NULL,
				   NULL, 0);
		if (PQresultStatus(res) == PGRES_TUPLES_OK) {
			state = PQgetisnull(res, 0, 0) ? "unknown" : PQgetvalue(res, 0, 0);
			rc = strcmp(state, "committed") == 0 ? 1 :
			     strcmp(state, "aborted") == 0   ? 0 :
							       -1;
			st_notice("ledger %s: the answer to COMMIT was lost; transaction %s %s",
				  l->spec, l->xid, state);
			PQclear(res);
			if (rc >= 0)
				return rc;
			/* In progress: its server process has not noticed the lost connection. */
			if (running++ < 50) {
				t->n = 0;
				nanosleep(&pause, NULL);
			}
			st_msgf(why, sizeof(why), "transaction %s is still in progress", l->xid);
			continue;
		}
		state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		/* An id in this server's future: it never saw the transaction (a failover to a
		 * standby that had not received it). */
		if (state && strcmp(state, "22023") == 0) {
			PQclear(res);
			return 0;
		}
		st_msgf(why, sizeof(why), "asking about transaction %s: %s", l->xid,
			pq_message(PQresultErrorMessage(res), m, sizeof(m)));
		PQclear(res);
		if (PQstatus(l->conn) == CONNECTION_OK)
			return st_errf(err, errlen, ST_E_LEDGER_IO, "ledger %s: %s", l->spec, why);
	}
}

static void note_rolled_back(char *err, size_t errlen)
{
	size_t n = err ? strlen(err) : 0;

	if (err && n + 1 < errlen)
		snprintf(err + n, errlen - n, " (the transaction was rolled back)");
}

/* Commits the open transaction: once PostgreSQL confirms it, or after a lost answer once
 * the server says it committed; a transaction the server aborted is restored and committed
 * again. */
static int commit_tx(struct pg_ledger *l, char *err, size_t errlen)
{
	struct retry t = { 0 };
	PGresult *res;
	int rc, transient = 0;

	for (;;) {
		rc = prepare(l, err, errlen);
		if (rc == 0) {
			if (l->hook)
				l->hook(ST_LEDGER_HOOK_COMMIT_START, l->hook_arg);
			res = exec_fixed(l, "COMMIT", "committing", &rc, err, errlen);
			if (res && strcmp(PQcmdStatus(res), "COMMIT") == 0 &&
			    ++l->commits == l->fail_at) {
				PQclear(res);
				res = NULL;
				disconnect(l);
				l->gone = 1;
				rc = st_errf(err, errlen, ST_E_LEDGER_IO,
					     "ledger %s: test fault: the answer to COMMIT was lost",
					     l->spec);
			}
			if (res && strcmp(PQcmdStatus(res), "COMMIT") == 0) {
				PQclear(res);
				break;
			}
			if (res) {
				/* The server had aborted the transaction: restore it and commit
				 * again. */
				PQclear(res);
				rc = st_errf(err, errlen, ST_E_LEDGER_IO,
					     "ledger %s: the database rolled the transaction back at "
					     "COMMIT",
					     l->spec);
				l->transient = 1;
			} else if (l->gone) {
				rc = resolve(l, &t, err, errlen);
				if (rc == 1)
					break;
				if (rc < 0) {
					tx_end(l, 0);
					return rc;
				}
				l->aborted = 1;
				continue;
			}
			l->aborted = 1;
		}
		if (l->lost)
			goto rolled_back;
		if (l->gone && retry_again(l, &t, err))
			continue;
		if (l->transient && transient++ < TRANSIENT_TRIES) {
			l->aborted = 1;
			continue;
		}
		goto rolled_back;
	}
	if (l->hook)
		l->hook(ST_LEDGER_HOOK_COMMIT_DONE, l->hook_arg);
	tx_end(l, 0);
	retry_done(l, &t);
	return 0;
rolled_back:
	tx_end(l, 1);
	note_rolled_back(err, errlen);
	return rc;
}

/* Runs one call: in the caller's transaction (kept in the journal), on its own (a read), or
 * in a transaction of its own (a write outside the caller's: committed before it returns).
 * The database going away or aborting the transaction is dealt with here. */
static int call(struct pg_ledger *l, struct pg_call *c, struct st_ledger_row **row, char *err,
		size_t errlen)
{
	struct retry t = { 0 };
	int rc, own, transient = 0;

	for (;;) {
		own = 0;
		rc = prepare(l, err, errlen);
		if (rc == 0 && !l->in_tx && !is_read(c->kind)) {
			rc = tx_begin(l, err, errlen);
			own = l->in_tx = l->own_tx = rc == 0;
		}
		if (rc == 0) {
			rc = run_call(l, c, 0, row, err, errlen);
			if (!l->gone && !in_error(l)) {
				if (l->in_tx && c->kind != C_GET && c->kind != C_GET_SERIAL &&
				    journal_add(l, c) < 0) {
					l->lost = 1;
					st_msgf(l->lost_why, sizeof(l->lost_why),
						"out of memory keeping the transaction's journal");
				}
				if (own && rc < 0) {
					tx_end(l, 1);
				} else if (own) {
					int crc = commit_tx(l, err, errlen);

					if (crc < 0)
						rc = crc;
				}
				retry_done(l, &t);
				return rc;
			}
			if (row && *row) {
				st_ledger_row_free(*row);
				*row = NULL;
			}
			if (own)
				tx_end(l, 1);
			else if (l->in_tx)
				l->aborted = 1;
		}
		if (l->in_tx && l->lost)
			return rc;
		if (l->gone && retry_again(l, &t, err))
			continue;
		if (l->transient && transient++ < TRANSIENT_TRIES)
			continue;
		return rc;
	}
}

/* ---- The ops --------------------------------------------------------------------------- */

static int pg_begin(void *inst, char *err, size_t errlen)
{
	struct pg_ledger *l = inst;
	struct retry t = { 0 };
	int rc;

	if (l->in_tx)
		return st_errf(err, errlen, ST_E_INVAL, "ledger %s: a transaction is already open",
			       l->spec);
	for (;;) {
		rc = prepare(l, err, errlen);
		if (rc == 0)
			rc = tx_begin(l, err, errlen);
		if (rc == 0) {
			l->in_tx = 1;
			retry_done(l, &t);
			return 0;
		}
		if (!l->gone || !retry_again(l, &t, err))
			return rc;
	}
}

static int pg_commit(void *inst, char *err, size_t errlen)
{
	struct pg_ledger *l = inst;

	if (!l->in_tx)
		return st_errf(err, errlen, ST_E_INVAL, "ledger %s: no transaction is open",
			       l->spec);
	return commit_tx(l, err, errlen);
}

static int pg_rollback(void *inst)
{
	struct pg_ledger *l = inst;

	if (l->in_tx)
		tx_end(l, 1);
	return 0;
}

static int pg_lookup(void *inst, const char *device_id, const uint8_t pubkey_sha256[32],
		     struct st_ledger_row **row, char *err, size_t errlen)
{
	struct pg_ledger *l = inst;
	struct pg_call c = { .kind = C_LOOKUP };

	if (row)
		*row = NULL;
	if (!device_id || !*device_id)
		return st_errf(err, errlen, ST_E_INVAL, "ledger %s: lookup without a device id",
			       l->spec);
	c.s[0] = (char *)device_id;
	memcpy(c.key, pubkey_sha256, 32);
	return call(l, &c, row, err, errlen);
}

static int pg_add_intent(void *inst, const struct st_ledger_row *row, int64_t *id, char *err,
			 size_t errlen)
{
	struct pg_ledger *l = inst;
	struct pg_call c = { .kind = C_ADD_INTENT };
	size_t n = row->serial ? strlen(row->serial) : 0;
	int rc;

	*id = 0;
	if (n < 1 || n > 40 || strspn(row->serial, "0123456789abcdef") != n)
		return st_errf(err, errlen, ST_E_INVAL,
			       "ledger %s: serial '%s' is not 1 to 40 lower-case hex digits",
			       l->spec, row->serial ? row->serial : "(null)");
	if (!row->device_id || !*row->device_id)
		return st_errf(err, errlen, ST_E_INVAL, "ledger %s: intent for serial %s has no "
			       "device id", l->spec, row->serial);
	c.s[0] = row->serial;
	c.s[1] = row->device_id;
	c.s[2] = row->profile;
	c.s[3] = row->slot;
	memcpy(c.csr, row->csr_sha256, 32);
	memcpy(c.key, row->pubkey_sha256, 32);
	c.t[0] = (int64_t)time(NULL);
	rc = call(l, &c, NULL, err, errlen);
	if (rc == 0)
		*id = c.out;
	return rc;
}

/* A write of one row by id (kind), with what else it takes in c. */
static int row_call(struct pg_ledger *l, struct pg_call *c, enum call_kind kind, int64_t id,
		    char *err, size_t errlen)
{
	c->kind = kind;
	c->id = id;
	return call(l, c, NULL, err, errlen);
}

static int pg_supersede(void *inst, int64_t id, char *err, size_t errlen)
{
	struct pg_call c = { 0 };

	return row_call(inst, &c, C_SUPERSEDE, id, err, errlen);
}

static int pg_set_cert(void *inst, int64_t id, const uint8_t *der, size_t len,
		       time_t not_before, time_t not_after, char *err, size_t errlen)
{
	struct pg_ledger *l = inst;
	struct pg_call c = { 0 };

	if (!der || len == 0 || len > INT_MAX)
		return st_errf(err, errlen, ST_E_INVAL, "ledger %s: row %lld: empty certificate",
			       l->spec, (long long)id);
	c.der = (uint8_t *)der;
	c.len = len;
	c.t[0] = (int64_t)not_before;
	c.t[1] = (int64_t)not_after;
	c.t[2] = (int64_t)time(NULL);
	return row_call(l, &c, C_SET_CERT, id, err, errlen);
}

static int pg_mark_delivered(void *inst, int64_t id, char *err, size_t errlen)
{
	struct pg_call c = { 0 };

	c.t[0] = (int64_t)time(NULL);
	return row_call(inst, &c, C_DELIVERED, id, err, errlen);
}

static int pg_mark_failed(void *inst, int64_t id, const char *reason, char *err,
			  size_t errlen)
{
	struct pg_call c = { 0 };

	c.s[0] = (char *)(reason && *reason ? reason : "unspecified");
	return row_call(inst, &c, C_FAILED, id, err, errlen);
}

static int pg_flag(void *inst, const char *device_id, const uint8_t pubkey_sha256[32],
		   const char *slot, const char *reason, char *err, size_t errlen)
{
	struct pg_ledger *l = inst;
	struct pg_call c = { .kind = C_FLAG };

	if (!reason || !*reason)
		return st_errf(err, errlen, ST_E_INVAL, "ledger %s: flag without a reason",
			       l->spec);
	c.s[0] = (char *)device_id;
	c.s[1] = (char *)slot;
	c.s[2] = (char *)reason;
	if (pubkey_sha256) {
		memcpy(c.key, pubkey_sha256, 32);
		c.has_key = 1;
	}
	c.t[0] = (int64_t)time(NULL);
	return call(l, &c, NULL, err, errlen);
}

static int pg_next_sequence(void *inst, const char *prefix, uint64_t *n, char *err,
			    size_t errlen)
{
	struct pg_ledger *l = inst;
	struct pg_call c = { .kind = C_SEQUENCE };
	int rc;

	*n = 0;
	if (!prefix)
		return st_errf(err, errlen, ST_E_INVAL, "ledger %s: sequence without a prefix",
			       l->spec);
	c.s[0] = (char *)prefix;
	rc = call(l, &c, NULL, err, errlen);
	if (rc == 0)
		*n = c.value;
	return rc;
}

static int pg_get(void *inst, int64_t id, struct st_ledger_row **row, char *err,
		  size_t errlen)
{
	struct pg_call c = { .kind = C_GET, .id = id };

	*row = NULL;
	return call(inst, &c, row, err, errlen);
}

static int pg_get_serial(void *inst, const char *serial, struct st_ledger_row **row,
			 char *err, size_t errlen)
{
	struct pg_ledger *l = inst;
	struct pg_call c = { .kind = C_GET_SERIAL };

	*row = NULL;
	if (!serial)
		return st_errf(err, errlen, ST_E_INVAL, "ledger %s: no serial given", l->spec);
	c.s[0] = (char *)serial;
	return call(l, &c, row, err, errlen);
}

/* Reads a whole table through a cursor WITH HOLD: the server keeps one snapshot of it for
 * the caller to fetch a chunk at a time, and other statements (fn's calls) may run on the
 * connection meanwhile, inside a transaction or not. */
static int scan(struct pg_ledger *l, const char *declare, const char *fetch, const char *close,
		int (*each)(struct pg_ledger *l, const PGresult *res, int i, void *ctx,
			    char *err, size_t errlen),
		void *ctx, const char *what, char *err, size_t errlen)
{
	struct retry t = { 0 };
	PGresult *res;
	int rc, i, n, stop = 0;

	for (;;) {
		rc = prepare(l, err, errlen);
		if (rc == 0 && run_fixed(l, declare, what, err, errlen) == 0)
			break;
		if (rc == 0)
			rc = ST_E_LEDGER_IO;
		if (l->in_tx && (l->gone || in_error(l)))
			l->aborted = 1;
		if (!l->gone || !retry_again(l, &t, err))
			return rc;
	}
	retry_done(l, &t);
	do {
		res = exec_fixed(l, fetch, what, &rc, err, errlen);
		if (!res)
			break;
		n = PQntuples(res);
		for (i = 0; i < n && !stop; i++) {
			rc = each(l, res, i, ctx, err, errlen);
			if (rc != 0)
				stop = 1;
		}
		PQclear(res);
		if (rc > 0)
			rc = 0;
	} while (!stop && n > 0);
	if (l->gone || in_error(l)) {
		if (l->in_tx)
			l->aborted = 1;
	} else {
		run_fixed(l, close, what, NULL, 0);
	}
	return rc;
}

struct row_ctx {
	int (*fn)(const struct st_ledger_row *row, void *arg);
	void *arg;
};

static int each_row(struct pg_ledger *l, const PGresult *res, int i, void *ctx, char *err,
		    size_t errlen)
{
	struct row_ctx *c = ctx;
	struct st_ledger_row *r;
	int rc = read_row(l, res, i, 0, &r, err, errlen);

	if (rc < 0)
		return rc;
	rc = c->fn(r, c->arg);
	st_ledger_row_free(r);
	return rc != 0 ? 1 : 0;
}

static int pg_foreach(void *inst, int (*fn)(const struct st_ledger_row *row, void *arg),
		      void *arg, char *err, size_t errlen)
{
	struct pg_ledger *l = inst;
	struct row_ctx c = { fn, arg };
	int rc;

	if (l->iterating)
		return st_errf(err, errlen, ST_E_INVAL, "ledger %s: nested st_ledger_foreach",
			       l->spec);
	l->iterating = 1;
	rc = scan(l,
		  "DECLARE st_ledger_rows BINARY NO SCROLL CURSOR WITH HOLD FOR SELECT " ROW_COLUMNS
		  " FROM " T_CERTS " ORDER BY id",
		  "FETCH FORWARD " FETCH_ROWS " FROM st_ledger_rows", "CLOSE st_ledger_rows",
		  each_row, &c, "reading the rows", err, errlen);
	l->iterating = 0;
	return rc;
}

struct flag_ctx {
	int (*fn)(const struct st_ledger_flag *flag, void *arg);
	void *arg;
};

static int each_flag(struct pg_ledger *l, const PGresult *res, int i, void *ctx, char *err,
		     size_t errlen)
{
	struct flag_ctx *c = ctx;
	struct st_ledger_flag f;

	(void)l;
	(void)err;
	(void)errlen;
	f.id = col_i64(res, i, 0);
	f.time = (time_t)col_i64(res, i, 1);
	f.station = col_text(res, i, 2);
	f.slot = col_text(res, i, 3);
	f.device_id = col_text(res, i, 4);
	f.pubkey_sha256 = PQgetlength(res, i, 5) == 32 && !PQgetisnull(res, i, 5) ?
				  (const uint8_t *)PQgetvalue(res, i, 5) :
				  NULL;
	f.reason = col_text(res, i, 6);
	if (!f.station)
		f.station = "";
	if (!f.reason)
		f.reason = "";
	return c->fn(&f, c->arg) != 0 ? 1 : 0;
}

static int pg_foreach_flag(void *inst, int (*fn)(const struct st_ledger_flag *flag, void *arg),
			   void *arg, char *err, size_t errlen)
{
	struct flag_ctx c = { fn, arg };

	return scan(inst,
		    "DECLARE st_ledger_flags BINARY NO SCROLL CURSOR WITH HOLD FOR SELECT id, time, "
		    "station, slot, device_id, pubkey_sha256, reason FROM " T_FLAGS " ORDER BY id",
		    "FETCH FORWARD " FETCH_ROWS " FROM st_ledger_flags", "CLOSE st_ledger_flags",
		    each_flag, &c, "reading the flags", err, errlen);
}

/* ---- Imports (st_ledger_import) ---------------------------------------------------------
 *
 * Rows, flags and sequences of another ledger, in the caller's transaction. They are not
 * journaled: a transaction that lost its connection with imports in it is lost, and the
 * import (idempotent) is run again. */

/* Before an import statement: the caller's transaction, usable. */
static int import_ready(struct pg_ledger *l, char *err, size_t errlen)
{
	if (!l->in_tx)
		return st_errf(err, errlen, ST_E_INVAL, "ledger %s: an import needs a transaction",
			       l->spec);
	l->unjournaled = 1;
	return prepare(l, err, errlen);
}

/* After an import statement failed: the transaction is gone with it. */
static int import_failed(struct pg_ledger *l, int rc)
{
	if (l->gone || in_error(l))
		l->aborted = 1;
	return rc;
}

/* Runs an import statement in the caller's transaction: the result, or NULL with *rc. */
static PGresult *import_exec(struct pg_ledger *l, enum pstmt id, const struct params *p,
			     const char *what, int *rc, char *err, size_t errlen)
{
	PGresult *res;

	*rc = import_ready(l, err, errlen);
	if (*rc < 0)
		return NULL;
	res = exec_stmt(l, id, p, what, rc, err, errlen);
	if (!res)
		import_failed(l, *rc);
	return res;
}

static void p_time(struct params *p, time_t t)
{
	if (t)
		p_i64(p, (int64_t)t);
	else
		p_text(p, NULL);
}

/* Why an imported row is refused: the row that holds its serial, key or device id's open
 * intent. */
static int import_conflict(struct pg_ledger *l, const struct st_ledger_row *row, char *err,
			   size_t errlen)
{
	struct pg_call c = { .kind = C_ADD_INTENT };
	int rc;

	c.s[0] = row->serial;
	c.s[1] = row->device_id;
	memcpy(c.key, row->pubkey_sha256, 32);
	rc = insert_conflict(l, &c, err, errlen);
	if (rc == 0)
		rc = st_errf(err, errlen, ST_E_LEDGER_DUP_SERIAL,
			     "ledger %s: serial %s: a unique rule refused the row", l->spec,
			     row->serial);
	return rc;
}

static int pg_import_row(void *inst, const struct st_ledger_row *row, int *outcome, char *err,
			 size_t errlen)
{
	struct pg_ledger *l = inst;
	struct params p = { 0 };
	PGresult *res;
	char keyhex[65];
	int rc, same;

	/* Imported before: the same row, maybe in a later state by now. */
	p_text(&p, row->station);
	p_i64(&p, row->id);
	res = import_exec(l, P_IMPORT_ORIGIN, &p, "looking an imported row up", &rc, err,
			  errlen);
	if (!res)
		return rc;
	if (PQntuples(res) == 1) {
		same = strcmp(col_text(res, 0, 1), row->serial) == 0 &&
		       PQgetlength(res, 0, 2) == 32 &&
		       memcmp(PQgetvalue(res, 0, 2), row->pubkey_sha256, 32) == 0;
		memset(&p, 0, sizeof(p));
		p_i64(&p, col_i64(res, 0, 0));
		PQclear(res);
		if (!same) {
			hash_hex(keyhex, row->pubkey_sha256);
			return st_errf(err, errlen, ST_E_LEDGER_DUP_SERIAL,
				       "ledger %s: row %lld of station %s was imported before "
				       "with another serial or key (now serial %s, key sha256:%s): "
				       "another ledger of the same station?",
				       l->spec, (long long)row->id, row->station, row->serial,
				       keyhex);
		}
		p_text(&p, st_ledger_state_name(row->state));
		p_bytes_or_null(&p, row->cert_der, row->cert_len);
		p_time(&p, row->not_before);
		p_time(&p, row->not_after);
		p_time(&p, row->signed_at);
		p_time(&p, row->delivered_at);
		p_text(&p, row->reason);
		res = import_exec(l, P_IMPORT_UPDATE, &p, "updating an imported row", &rc, err,
				  errlen);
		if (!res)
			return rc;
		*outcome = strcmp(PQcmdTuples(res), "0") == 0 ? ST_LEDGER_IMPORT_SAME :
								 ST_LEDGER_IMPORT_UPDATED;
		PQclear(res);
		return 0;
	}
	PQclear(res);
	memset(&p, 0, sizeof(p));
	p_text(&p, row->serial);
	p_text(&p, row->device_id);
	p_text(&p, row->profile);
	p_text(&p, row->station);
	p_text(&p, row->slot);
	p_bytes(&p, row->csr_sha256, 32);
	p_bytes(&p, row->pubkey_sha256, 32);
	p_text(&p, st_ledger_state_name(row->state));
	p_bytes_or_null(&p, row->cert_der, row->cert_len);
	p_time(&p, row->not_before);
	p_time(&p, row->not_after);
	p_i64(&p, (int64_t)row->created);
	p_time(&p, row->signed_at);
	p_time(&p, row->delivered_at);
	p_text(&p, row->reason);
	p_i64(&p, row->id);
	res = import_exec(l, P_IMPORT_ROW, &p, "importing a row", &rc, err, errlen);
	if (!res)
		return rc;
	rc = PQntuples(res);
	PQclear(res);
	if (rc == 1) {
		*outcome = ST_LEDGER_IMPORT_ADDED;
		return 0;
	}
	return import_failed(l, import_conflict(l, row, err, errlen));
}

static int pg_import_flag(void *inst, const struct st_ledger_flag *f, int *outcome,
			  char *err, size_t errlen)
{
	struct pg_ledger *l = inst;
	struct params p = { 0 };
	PGresult *res;
	int rc;

	p_i64(&p, (int64_t)f->time);
	p_text(&p, f->station);
	p_text(&p, f->slot);
	p_text(&p, f->device_id);
	p_bytes_or_null(&p, f->pubkey_sha256, 32);
	p_text(&p, f->reason);
	p_i64(&p, f->id);
	res = import_exec(l, P_IMPORT_FLAG, &p, "importing a flag", &rc, err, errlen);
	if (!res)
		return rc;
	*outcome = PQntuples(res) == 1 ? ST_LEDGER_IMPORT_ADDED : ST_LEDGER_IMPORT_SAME;
	PQclear(res);
	return 0;
}

static int pg_import_sequence(void *inst, const char *prefix, uint64_t next, char *err,
			      size_t errlen)
{
	struct pg_ledger *l = inst;
	struct params p = { 0 };
	PGresult *res;
	int rc;

	p_text(&p, prefix);
	p_i64(&p, (int64_t)next);
	res = import_exec(l, P_IMPORT_SEQUENCE, &p, "importing a sequence", &rc, err, errlen);
	if (!res)
		return rc;
	PQclear(res);
	return 0;
}

struct seq_ctx {
	int (*fn)(const char *prefix, uint64_t next, void *arg);
	void *arg;
};

static int each_sequence(struct pg_ledger *l, const PGresult *res, int i, void *ctx,
			 char *err, size_t errlen)
{
	struct seq_ctx *c = ctx;

	(void)l;
	(void)err;
	(void)errlen;
	return c->fn(col_text(res, i, 0), (uint64_t)col_i64(res, i, 1), c->arg) != 0 ? 1 : 0;
}

static int pg_foreach_sequence(void *inst,
			       int (*fn)(const char *prefix, uint64_t next, void *arg), void *arg,
			       char *err, size_t errlen)
{
	struct seq_ctx c = { fn, arg };

	return scan(inst,
		    "DECLARE st_ledger_sequences BINARY NO SCROLL CURSOR WITH HOLD FOR SELECT "
		    "prefix, next FROM " T_SEQ " ORDER BY prefix",
		    "FETCH FORWARD " FETCH_ROWS " FROM st_ledger_sequences",
		    "CLOSE st_ledger_sequences", each_sequence, &c, "reading the sequences", err,
		    errlen);
}

/* PostgreSQL checks its own pages (WAL, and checksums when the cluster has them): this
 * checks what is the ledger's, the schema version and the indexes that carry its unique
 * rules, present and valid. */
static int pg_integrity(void *inst, char *err, size_t errlen)
{
	struct pg_ledger *l = inst;
	PGresult *res;
	int rc, version;

	rc = prepare(l, err, errlen);
	if (rc == 0)
		rc = schema_version(l, &version, err, errlen);
	if (rc < 0)
		return rc;
	if (version != LEDGER_VERSION)
		return st_errf(err, errlen, ST_E_LEDGER_CORRUPT,
			       "ledger %s: integrity check failed: schema version %d, expected %d",
			       l->spec, version, LEDGER_VERSION);
	res = exec_fixed(l,
			 "SELECT n.name, i.indisvalid AND i.indisready AND i.indisunique "
			 "FROM unnest(ARRAY['certificates_serial', 'certificates_pubkey', "
			 "'certificates_intent']) AS n(name) "
			 "LEFT JOIN pg_class c ON c.relname = n.name AND c.relnamespace = '" SCHEMA
			 "'::regnamespace LEFT JOIN pg_index i ON i.indexrelid = c.oid "
			 "WHERE i.indisvalid IS NOT TRUE OR NOT (i.indisready AND i.indisunique)",
			 "checking integrity", &rc, err, errlen);
	if (!res)
		return rc;
	if (PQntuples(res) > 0)
		rc = st_errf(err, errlen, ST_E_LEDGER_CORRUPT,
			     "ledger %s: integrity check failed: unique index %s is missing or not "
			     "valid",
			     l->spec, PQgetvalue(res, 0, 0));
	PQclear(res);
	return rc;
}

/* The line's ledger is a database: it is backed up as one, where its server is. */
static int pg_backup(void *inst, const char *dest, char *err, size_t errlen)
{
	struct pg_ledger *l = inst;

	return st_errf(err, errlen, ST_E_INVAL,
		       "ledger backup %s: %s is a PostgreSQL database shared by the line; back "
		       "it up with pg_dump (pg_dump --schema=" SCHEMA " -Fc) or the server's "
		       "base backups, or write its rows with `station ledger export`",
		       dest ? dest : "", l->spec);
}

const struct st_ledger_ops st_ledger_pg_ops = {
	.name = "postgresql",
	.claims = pg_claims,
	.open = pg_open,
	.close = pg_close,
	.set_busy_timeout = pg_set_busy_timeout,
	.path = pg_path,
	.set_hook = pg_set_hook,
	.set_outage = pg_set_outage,
	.lookup = pg_lookup,
	.begin = pg_begin,
	.commit = pg_commit,
	.rollback = pg_rollback,
	.add_intent = pg_add_intent,
	.supersede = pg_supersede,
	.set_cert = pg_set_cert,
	.mark_delivered = pg_mark_delivered,
	.mark_failed = pg_mark_failed,
	.flag = pg_flag,
	.next_sequence = pg_next_sequence,
	.get = pg_get,
	.get_serial = pg_get_serial,
	.foreach = pg_foreach,
	.foreach_flag = pg_foreach_flag,
	.integrity = pg_integrity,
	.backup = pg_backup,
	.foreach_sequence = pg_foreach_sequence,
	.import_row = pg_import_row,
	.import_flag = pg_import_flag,
	.import_sequence = pg_import_sequence,
};
