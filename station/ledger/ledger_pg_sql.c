/* The PostgreSQL ledger's connection and statements (ledger_pg.h): connecting and the
 * session's settings, fixed SQL and prepared statements with bound parameters (no SQL is
 * ever built from strings), binary results, and the statements of each call of a
 * transaction, on its first run and on a replay with the same row ids. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "err.h"
#include "ledger_pg.h"
#include "log.h"

/* Strongest row first: what a device id already holds. */
#define STATE_RANK                                                                          \
	"CASE state WHEN 'delivered' THEN 0 WHEN 'signed' THEN 1 WHEN 'failed' THEN 2 "    \
	"ELSE 3 END"

/* Parameters are typed by their casts; results come back in binary. */
static const char *const stmt_sql[P_COUNT_] = {
	/* The device id's lock for the rest of the transaction (see do_lookup); the first key
	 * names the station's ledger among other users of advisory locks. */
	[P_LOCK_DEVICE] = "SELECT pg_advisory_xact_lock(" DEVICE_LOCK_CLASS ", hashtext($1::text))",
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
	[P_NEWEST_DEVICE] = "SELECT " ROW_COLUMNS " FROM " T_CERTS
			    " WHERE device_id = $1::text AND " LIVE " ORDER BY id DESC LIMIT 1",
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
	 * from (its station and id there). Its authorization ($17) is counted by the trigger:
	 * a row beyond the units fails the statement on the CHECK. A row imported before is
	 * updated only forward in its life (an intent signed, delivered or failed; a signed
	 * one delivered or failed): the database's copy may be ahead of the file by now (the
	 * station has moved on, an operator superseded it), and a file migrated again must not
	 * take it back. Either way it gets the authorization it names if it had none (rows a
	 * migration before authorizations were carried left without). */
	[P_IMPORT_ORIGIN] = "SELECT id, serial, pubkey_sha256 FROM " T_CERTS
			    " WHERE station = $1::text AND origin_id = $2::int8",
	[P_IMPORT_ROW] = "INSERT INTO " T_CERTS " (serial, device_id, profile, station, slot, "
			 "csr_sha256, pubkey_sha256, state, cert_der, not_before, not_after, "
			 "created, signed_at, delivered_at, reason, origin_id, auth_id) VALUES "
			 "($1::text, $2::text, $3::text, $4::text, $5::text, $6::bytea, $7::bytea, "
			 "$8::text, $9::bytea, $10::int8, $11::int8, $12::int8, $13::int8, "
			 "$14::int8, $15::text, $16::int8, $17::text) ON CONFLICT DO NOTHING "
			 "RETURNING id",
	[P_IMPORT_UPDATE] = "UPDATE " T_CERTS " SET state = $2::text, cert_der = $3::bytea, "
			    "not_before = $4::int8, not_after = $5::int8, signed_at = $6::int8, "
			    "delivered_at = $7::int8, reason = $8::text, auth_id = "
			    "coalesce(auth_id, $9::text) WHERE id = $1::int8 AND ((state = 'intent' "
			    "AND $2::text <> 'intent') OR (state = 'signed' AND ($2::text = "
			    "'delivered' OR $2::text = 'failed')))",
	[P_IMPORT_AUTH_FILL] = "UPDATE " T_CERTS " SET auth_id = $2::text WHERE id = $1::int8 "
			       "AND auth_id IS NULL AND $2::text IS NOT NULL",
	[P_IMPORT_FLAG] = "INSERT INTO " T_FLAGS " (time, station, slot, device_id, "
			  "pubkey_sha256, reason, origin_id) VALUES ($1::int8, $2::text, $3::text, "
			  "$4::text, $5::bytea, $6::text, $7::int8) ON CONFLICT DO NOTHING "
			  "RETURNING id",
	[P_IMPORT_SEQUENCE] = "INSERT INTO " T_SEQ " AS s (prefix, next) VALUES ($1::text, "
			      "$2::int8) ON CONFLICT (prefix) DO UPDATE SET next = "
			      "greatest(s.next, EXCLUDED.next)",
	/* An authorization of another ledger as it was registered there; its count is the
	 * trigger's, from the rows imported after it. */
	[P_IMPORT_AUTH] = "INSERT INTO " T_AUTHS " (id, doc_sha256, units, lot, not_before, "
			  "not_after, registered, station) VALUES ($1::text, $2::bytea, $3::int8, "
			  "$4::text, $5::int8, $6::int8, $7::int8, $8::text) ON CONFLICT (id) DO "
			  "NOTHING RETURNING id",
	/* An attempt of another ledger, remembering where it came from (its station and id
	 * there, $18), naming its certificate by the row that row ($15 there) was imported
	 * as. */
	[P_IMPORT_ATTEMPT] = "INSERT INTO " T_ATTEMPTS " (time, station, slot, outcome, reason, "
			     "error, device_id, serial, board_sn, hardware_id, sku, firmware, "
			     "profile, auth_id, certificate, reused, ms, origin_id) VALUES "
			     "($1::int8, $2::text, $3::text, $4::text, $5::text, $6::text, "
			     "$7::text, $8::text, $9::text, $10::text, $11::text, $12::text, "
			     "$13::text, $14::text, (SELECT id FROM " T_CERTS " WHERE station = "
			     "$2::text AND origin_id = $15::int8), $16::int4, $17::int8, "
			     "$18::int8) ON CONFLICT DO NOTHING RETURNING id",
	[P_AUTH_REGISTER] = "INSERT INTO " T_AUTHS " (id, doc_sha256, units, lot, not_before, "
			    "not_after, registered, station) VALUES ($1::text, $2::bytea, "
			    "$3::int8, $4::text, $5::int8, $6::int8, $7::int8, $8::text) "
			    "ON CONFLICT (id) DO NOTHING",
	[P_AUTH_GET] = "SELECT doc_sha256, units, used FROM " T_AUTHS " WHERE id = $1::text",
	/* Taken before a unit is: the stations consuming units of one authorization queue
	 * here, each seeing the count of the one before it committed. */
	[P_AUTH_LOCK] = "SELECT units, used FROM " T_AUTHS " WHERE id = $1::text FOR UPDATE",
	/* The units an intent gives back by superseding this board's open intents of the key. */
	[P_AUTH_GIVEN_BACK] = "SELECT count(*)::int8 FROM " T_CERTS " WHERE device_id = $1::text "
			      "AND state = 'intent' AND pubkey_sha256 = $2::bytea AND "
			      "auth_id = $3::text",
	[P_AUTH_TAKE] = "UPDATE " T_CERTS " SET auth_id = $2::text WHERE id = $1::int8 AND "
			"auth_id IS NULL",
	[P_AUTH_ALL] = "SELECT id, doc_sha256, units, used, lot, not_before, not_after, "
		       "registered, station FROM " T_AUTHS " ORDER BY registered, id",
	[P_AUTH_STATIONS] = "SELECT station, count(cert_der)::int8, "
			    "(count(*) - count(cert_der))::int8 FROM " T_CERTS
			    " WHERE auth_id = $1::text AND " LIVE " GROUP BY station ORDER BY station",
	[P_AUTH_CERTS] = "SELECT " ROW_COLUMNS " FROM " T_CERTS " WHERE auth_id = $1::text AND "
			 "cert_der IS NOT NULL ORDER BY id",
	[P_ATTEMPT] = "INSERT INTO " T_ATTEMPTS " (time, station, slot, outcome, reason, error, "
		      "device_id, serial, board_sn, hardware_id, sku, firmware, profile, auth_id, "
		      "certificate, reused, ms) VALUES ($1::int8, $2::text, $3::text, $4::text, "
		      "$5::text, $6::text, $7::text, $8::text, $9::text, $10::text, $11::text, "
		      "$12::text, $13::text, $14::text, $15::int8, $16::int4, $17::int8)",
	[P_ATTEMPTS] = "SELECT t.id, t.time, t.station, t.slot, t.outcome, t.reason, t.error, "
		       "t.device_id, t.serial, t.board_sn, t.hardware_id, t.sku, t.firmware, "
		       "t.profile, t.auth_id, a.lot, coalesce(t.certificate, 0), t.reused::int8, "
		       "coalesce(t.ms, -1) FROM " T_ATTEMPTS " t LEFT JOIN " T_AUTHS " a ON "
		       "a.id = t.auth_id WHERE t.time >= $1::int8 AND t.time < $2::int8 "
		       "ORDER BY t.id",
};

void pgl_disconnect(struct pg_ledger *l)
{
	if (l->conn)
		PQfinish(l->conn);
	l->conn = NULL;
	memset(l->prepared, 0, sizeof(l->prepared));
}

/* libpq's message on one line (its line ends and tabs as spaces, none at the end), in buf. */
const char *pgl_message(const char *m, char *buf, size_t len)
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
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL, *table;
	char msg[512];
	int code = ST_E_LEDGER_IO;

	pgl_message(res ? PQresultErrorMessage(res) : PQerrorMessage(l->conn), msg, sizeof(msg));
	if (!res || !state || PQstatus(l->conn) != CONNECTION_OK || strncmp(state, "08", 2) == 0 ||
	    strcmp(state, "57P01") == 0 || strcmp(state, "57P02") == 0 ||
	    strcmp(state, "57P03") == 0) {
		l->gone = 1;
		pgl_disconnect(l);
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
	/* The authorizations' CHECK: a row would have gone beyond its units. */
	else if (strcmp(state, "23514") == 0 &&
		 (table = PQresultErrorField(res, PG_DIAG_TABLE_NAME)) &&
		 strcmp(table, "authorizations") == 0)
		code = ST_E_AUTH_EXHAUSTED;
	else if (strncmp(state, "42", 2) == 0 || strncmp(state, "XX", 2) == 0)
		code = ST_E_LEDGER_CORRUPT;
	return st_errf(err, errlen, code, "ledger %s: %s: %s (SQLSTATE %s)", l->spec, what, msg,
		       state);
}

/* Before a statement: 0, or without a connection ST_E_LEDGER_IO (and l->gone). */
static int connected(struct pg_ledger *l, const char *what, char *err, size_t errlen)
{
	l->gone = l->transient = 0;
	if (l->conn)
		return 0;
	l->gone = 1;
	return st_errf(err, errlen, ST_E_LEDGER_IO, "ledger %s: %s: not connected", l->spec,
		       what);
}

/* A statement's result: res when it worked, else NULL with *rc and err (res cleared). */
static PGresult *checked(struct pg_ledger *l, PGresult *res, const char *what, int *rc,
			 char *err, size_t errlen)
{
	ExecStatusType st = PQresultStatus(res);

	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
		return res;
	*rc = stmt_error(l, res, what, err, errlen);
	PQclear(res);
	return NULL;
}

/* Runs fixed SQL without parameters (BEGIN, COMMIT, settings). Returns the result or NULL
 * with the error in err (and its code in *rc). */
PGresult *pgl_exec_fixed(struct pg_ledger *l, const char *sql, const char *what, int *rc,
			 char *err, size_t errlen)
{
	*rc = connected(l, what, err, errlen);
	if (*rc < 0)
		return NULL;
	return checked(l, PQexec(l->conn, sql), what, rc, err, errlen);
}

int pgl_run_fixed(struct pg_ledger *l, const char *sql, const char *what, char *err,
		  size_t errlen)
{
	PGresult *res;
	int rc;

	res = pgl_exec_fixed(l, sql, what, &rc, err, errlen);
	if (!res)
		return rc;
	PQclear(res);
	return 0;
}

void pgl_text(struct params *p, const char *s)
{
	p->v[p->n] = s;
	p->len[p->n] = 0;
	p->fmt[p->n++] = 0;
}

void pgl_i64(struct params *p, int64_t v)
{
	snprintf(p->num[p->n], sizeof(p->num[p->n]), "%lld", (long long)v);
	pgl_text(p, p->num[p->n]);
}

void pgl_bytes(struct params *p, const void *b, size_t n)
{
	p->v[p->n] = b;
	p->len[p->n] = (int)n;
	p->fmt[p->n++] = 1;
}

void pgl_bytes_or_null(struct params *p, const void *b, size_t n)
{
	if (b)
		pgl_bytes(p, b, n);
	else
		pgl_text(p, NULL);
}

void pgl_time(struct params *p, time_t t)
{
	if (t)
		pgl_i64(p, (int64_t)t);
	else
		pgl_text(p, NULL);
}

/* Runs prepared statement id (prepared on this connection at its first use). Returns the
 * result or NULL with *rc and err. */
PGresult *pgl_exec(struct pg_ledger *l, enum pstmt id, const struct params *p,
		   const char *what, int *rc, char *err, size_t errlen)
{
	char name[16];
	PGresult *res;

	*rc = connected(l, what, err, errlen);
	if (*rc < 0)
		return NULL;
	snprintf(name, sizeof(name), "st_ledger_%d", (int)id);
	if (!l->prepared[id]) {
		res = checked(l, PQprepare(l->conn, name, stmt_sql[id], 0, NULL),
			      "preparing a statement", rc, err, errlen);
		if (!res)
			return NULL;
		PQclear(res);
		l->prepared[id] = 1;
	}
	return checked(l,
		       PQexecPrepared(l->conn, name, p ? p->n : 0, p ? p->v : NULL,
				      p ? p->len : NULL, p ? p->fmt : NULL, 1),
		       what, rc, err, errlen);
}

/* Binary result columns. */
int64_t pgl_col_i64(const PGresult *r, int row, int col)
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

const char *pgl_col_text(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

static char *col_strdup(const PGresult *r, int row, int col, int *oom)
{
	const char *t = pgl_col_text(r, row, col);
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
int pgl_read_row(struct pg_ledger *l, const PGresult *r, int row, int first,
		 struct st_ledger_row **out, char *err, size_t errlen)
{
	struct st_ledger_row *x = calloc(1, sizeof(*x));
	int oom = 0, st, c = first;

	*out = NULL;
	if (!x)
		return st_errf(err, errlen, ST_E_NOMEM, "ledger %s: out of memory", l->spec);
	x->id = pgl_col_i64(r, row, c);
	x->serial = col_strdup(r, row, c + 1, &oom);
	x->device_id = col_strdup(r, row, c + 2, &oom);
	x->profile = col_strdup(r, row, c + 3, &oom);
	x->station = col_strdup(r, row, c + 4, &oom);
	x->slot = col_strdup(r, row, c + 5, &oom);
	col_hash(r, row, c + 6, x->csr_sha256);
	col_hash(r, row, c + 7, x->pubkey_sha256);
	st = st_ledger_state_parse(pgl_col_text(r, row, c + 8));
	x->state = st < 0 ? ST_LEDGER_FAILED : (enum st_ledger_state)st;
	if (!PQgetisnull(r, row, c + 9)) {
		x->cert_len = (size_t)PQgetlength(r, row, c + 9);
		x->cert_der = malloc(x->cert_len ? x->cert_len : 1);
		if (x->cert_der)
			memcpy(x->cert_der, PQgetvalue(r, row, c + 9), x->cert_len);
		else
			oom = 1;
	}
	x->not_before = (time_t)pgl_col_i64(r, row, c + 10);
	x->not_after = (time_t)pgl_col_i64(r, row, c + 11);
	x->created = (time_t)pgl_col_i64(r, row, c + 12);
	x->signed_at = (time_t)pgl_col_i64(r, row, c + 13);
	x->delivered_at = (time_t)pgl_col_i64(r, row, c + 14);
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

void pgl_hash_hex(char out[65], const uint8_t h[32])
{
	int i;

	for (i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", h[i]);
}

/* The session's settings: durable commits, the busy timeout as lock_timeout. */
int pgl_session_setup(struct pg_ledger *l, char *err, size_t errlen)
{
	PGresult *res;
	const char *sync, *fsync;
	char sql[160];
	int rc = 0;

	res = pgl_exec_fixed(l,
			     "SELECT current_setting('synchronous_commit'), "
			     "current_setting('fsync'), "
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
	res = pgl_exec_fixed(l, sql, "setting durable commits", &rc, err, errlen);
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

	st_info("ledger %s: the database says: %s", l->spec, pgl_message(message, m, sizeof(m)));
}

/* Opens the connection. Defaults come first so that the spec may override them: bounded
 * connection attempts, and TCP keepalives so that a network cut is noticed. */
int pgl_connect(struct pg_ledger *l, char *err, size_t errlen)
{
	char app[96], m[512];
	const char *keys[] = { "connect_timeout", "keepalives", "keepalives_idle",
			       "keepalives_interval", "keepalives_count", "tcp_user_timeout",
			       "fallback_application_name", "dbname", NULL };
	const char *vals[] = { "10", "1", "10", "3", "3", "20000", app, l->spec, NULL };
	int rc;

	pgl_disconnect(l);
	st_msgf(app, sizeof(app), "station %s", l->station);
	l->conn = PQconnectdbParams(keys, vals, 1);
	if (!l->conn)
		return st_errf(err, errlen, ST_E_NOMEM, "ledger %s: out of memory", l->spec);
	PQsetNoticeProcessor(l->conn, on_notice, l);
	if (PQstatus(l->conn) != CONNECTION_OK) {
		/* A server that does not answer, or answers that it cannot take connections yet
		 * (starting, shutting down, in recovery), may later: ST_E_LEDGER_IO. One that
		 * answered and refused us (password, database, permissions) will not. */
		PGPing ping = PQpingParams(keys, vals, 1);
		int away = ping == PQPING_NO_RESPONSE || ping == PQPING_REJECT;

		rc = st_errf(err, errlen, away ? ST_E_LEDGER_IO : ST_E_LEDGER_OPEN,
			     "ledger %s: cannot %s: %s", l->spec,
			     away ? "reach the database" : "connect",
			     pgl_message(PQerrorMessage(l->conn), m, sizeof(m)));
		pgl_disconnect(l);
		return rc;
	}
	if (PQserverVersion(l->conn) < 130000) {
		rc = st_errf(err, errlen, ST_E_LEDGER_OPEN,
			     "ledger %s: the server runs PostgreSQL %d.%d; the ledger needs 13 or "
			     "newer",
			     l->spec, PQserverVersion(l->conn) / 10000,
			     PQserverVersion(l->conn) % 10000 / 100);
		pgl_disconnect(l);
		return rc;
	}
	l->old_pid = l->backend_pid;
	memcpy(l->old_start, l->backend_start, sizeof(l->old_start));
	rc = pgl_session_setup(l, err, errlen);
	if (rc < 0)
		pgl_disconnect(l);
	return rc;
}

/* After an update changed nothing: why. */
static int state_error(struct pg_ledger *l, int64_t id, const char *wanted, char *err,
		       size_t errlen)
{
	struct params p = { 0 };
	PGresult *res;
	const char *reason;
	int rc;

	pgl_i64(&p, id);
	res = pgl_exec(l, P_STATE, &p, "reading a row's state", &rc, err, errlen);
	if (!res)
		return rc;
	if (PQntuples(res) == 0) {
		rc = st_errf(err, errlen, ST_E_NOTFOUND, "ledger %s: no row %lld", l->spec,
			     (long long)id);
	} else {
		reason = pgl_col_text(res, 0, 2);
		rc = st_errf(err, errlen, ST_E_LEDGER_STATE,
			     "ledger %s: row %lld is %s%s%s%s%s, expected %s", l->spec,
			     (long long)id, pgl_col_text(res, 0, 0),
			     pgl_col_i64(res, 0, 1) ? " with a certificate" : "",
			     reason ? " (" : "", reason ? reason : "", reason ? ")" : "", wanted);
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

	res = pgl_exec(l, id, p, what, &rc, err, errlen);
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

	/* Inside a transaction the verdict must still hold when the intent goes in: another
	 * station could otherwise record this device id between the two statements (read
	 * committed shows each statement what was committed when it started), and the
	 * intent's unique index covers only open intents. The device id's lock makes lookup
	 * and intent one step for it across stations, as SQLite's write lock does. Two
	 * stations taking two ids in opposite orders deadlock; the server aborts one and its
	 * transaction is replayed. */
	if (l->in_tx) {
		pgl_text(&p, c->s[0]);
		res = pgl_exec(l, P_LOCK_DEVICE, &p, "locking the device id", &rc, err, errlen);
		if (!res)
			return rc;
		PQclear(res);
		p.n = 0;
	}
	pgl_bytes(&p, c->key, 32);
	pgl_text(&p, c->s[0]);
	res = pgl_exec(l, P_LOOKUP, &p, "looking the key and device id up", &rc, err, errlen);
	if (!res)
		return rc;
	for (i = 0; i < PQntuples(res); i++) {
		if (pgl_col_i64(res, i, 0) == 0)
			key_row = i;
		else
			id_row = i;
	}
	if (key_row >= 0 || id_row >= 0) {
		rc = pgl_read_row(l, res, key_row >= 0 ? key_row : id_row, 1, &r, err, errlen);
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

	pgl_text(&p, c->s[1]);
	pgl_bytes(&p, c->key, 32);
	res = pgl_exec(l, P_INTENTS_OF_DEVICE, &p, "reading the device's intents", &rc, err,
		       errlen);
	if (!res)
		return rc;
	for (i = 0; i < PQntuples(res); i++) {
		if (pgl_col_i64(res, i, 1)) {
			same = 1;
			continue;
		}
		slot = pgl_col_text(res, i, 2);
		rc = st_errf(err, errlen, ST_E_LEDGER_DUP_ID,
			     "ledger %s: device id %s has an open intent for another key (row "
			     "%lld, station %s, slot %s); supersede it or refuse the board",
			     l->spec, c->s[1], (long long)pgl_col_i64(res, i, 0),
			     pgl_col_text(res, i, 3), slot ? slot : "-");
		PQclear(res);
		return rc;
	}
	PQclear(res);
	return same;
}

/* After an insert found a conflict: which row holds the serial, the key or the device id's
 * intent. 0 when none does any more (the other transaction's row went away). */
int pgl_insert_conflict(struct pg_ledger *l, const struct pg_call *c, char *err,
			size_t errlen)
{
	struct st_ledger_row *other = NULL;
	struct params p = { 0 };
	PGresult *res;
	char keyhex[65];
	int rc;

	pgl_text(&p, c->s[0]);
	res = pgl_exec(l, P_LIVE_SERIAL, &p, "looking the serial up", &rc, err, errlen);
	if (!res)
		return rc;
	if (PQntuples(res) > 0) {
		rc = st_errf(err, errlen, ST_E_LEDGER_DUP_SERIAL,
			     "ledger %s: serial %s is already recorded (row %lld, device id %s, "
			     "%s, station %s)",
			     l->spec, c->s[0], (long long)pgl_col_i64(res, 0, 0),
			     pgl_col_text(res, 0, 1), pgl_col_text(res, 0, 2),
			     pgl_col_text(res, 0, 3));
		PQclear(res);
		return rc;
	}
	PQclear(res);
	p.n = 0;
	pgl_bytes(&p, c->key, 32);
	res = pgl_exec(l, P_LIVE_KEY, &p, "looking the key up", &rc, err, errlen);
	if (!res)
		return rc;
	if (PQntuples(res) > 0) {
		rc = pgl_read_row(l, res, 0, 0, &other, err, errlen);
		PQclear(res);
		if (rc < 0)
			return rc;
		pgl_hash_hex(keyhex, c->key);
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

/* The id of an inserted row: the one of the first run on a replay, else NULL (the
 * sequence's next). */
static void replay_id(struct params *p, int replay, int64_t id)
{
	if (replay)
		pgl_i64(p, id);
	else
		pgl_text(p, NULL);
}

/* One INSERT of the intent, on a replay with the row id it was given the first time: 1 when
 * it went in (c->out), 0 when a unique rule turned it away, or an error. */
static int insert_intent(struct pg_ledger *l, struct pg_call *c, int replay, char *err,
			 size_t errlen)
{
	struct params p = { 0 };
	PGresult *res;
	int rc;

	replay_id(&p, replay, c->id);
	pgl_text(&p, c->s[0]);
	pgl_text(&p, c->s[1]);
	pgl_text(&p, c->s[2]);
	pgl_text(&p, l->station);
	pgl_text(&p, c->s[3]);
	pgl_bytes(&p, c->csr, 32);
	pgl_bytes(&p, c->key, 32);
	pgl_i64(&p, c->t[0]);
	res = pgl_exec(l, P_INSERT, &p, "recording an intent", &rc, err, errlen);
	if (!res)
		return rc;
	rc = PQntuples(res) == 1;
	if (rc)
		c->out = c->id = pgl_col_i64(res, 0, 0);
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
		rc = pgl_run_fixed(l, "SAVEPOINT st_ledger_intent", "starting an intent", err,
				   errlen);
		if (rc == 0) {
			pgl_text(&p, c->s[1]);
			pgl_bytes(&p, c->key, 32);
			res = pgl_exec(l, P_SUPERSEDE_SAME, &p, "superseding an intent", &rc, err,
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
			return same ? pgl_run_fixed(l, "RELEASE st_ledger_intent",
						    "recording an intent", err, errlen) :
				      0;
		rc = pgl_insert_conflict(l, c, err, errlen);
		if (rc < 0)
			break;
	}
	if (rc == 0)
		rc = st_errf(err, errlen, ST_E_LEDGER_DUP_SERIAL,
			     "ledger %s: serial %s: the insert kept meeting rows that went away",
			     l->spec, c->s[0]);
	if (same && !l->gone &&
	    (pgl_run_fixed(l, "ROLLBACK TO st_ledger_intent", "undoing an intent", NULL, 0) < 0 ||
	     pgl_run_fixed(l, "RELEASE st_ledger_intent", "undoing an intent", NULL, 0) < 0))
		return ST_E_LEDGER_IO;
	return rc;
}

static int do_set_cert(struct pg_ledger *l, struct pg_call *c, char *err, size_t errlen)
{
	struct params p = { 0 };

	pgl_i64(&p, c->id);
	pgl_bytes(&p, c->der, c->len);
	pgl_i64(&p, c->t[0]);
	pgl_i64(&p, c->t[1]);
	pgl_i64(&p, c->t[2]);
	return update_row(l, P_SET_CERT, &p, c->id, "recording a certificate", "an intent", err,
			  errlen);
}

static int do_flag(struct pg_ledger *l, struct pg_call *c, int replay, char *err,
		   size_t errlen)
{
	struct params p = { 0 };
	PGresult *res;
	int rc;

	replay_id(&p, replay, c->out);
	pgl_i64(&p, c->t[0]);
	pgl_text(&p, l->station);
	pgl_text(&p, c->s[1]);
	pgl_text(&p, c->s[0]);
	pgl_bytes_or_null(&p, c->has_key ? c->key : NULL, 32);
	pgl_text(&p, c->s[2]);
	res = pgl_exec(l, P_FLAG, &p, "recording a flag", &rc, err, errlen);
	if (!res)
		return rc;
	c->out = pgl_col_i64(res, 0, 0);
	PQclear(res);
	return 0;
}

static int do_sequence(struct pg_ledger *l, struct pg_call *c, int replay, char *err,
		       size_t errlen)
{
	struct params p = { 0 };
	PGresult *res;
	int rc;

	pgl_text(&p, c->s[0]);
	if (replay)
		pgl_i64(&p, (int64_t)c->value);
	res = pgl_exec(l, replay ? P_SEQUENCE_AGAIN : P_SEQUENCE, &p,
		       "allocating a sequence number", &rc, err, errlen);
	if (!res)
		return rc;
	if (PQntuples(res) != 1) {
		PQclear(res);
		return st_errf(err, errlen, ST_E_LEDGER_STATE,
			       "ledger %s: sequence '%s': number %llu was taken meanwhile", l->spec,
			       c->s[0], (unsigned long long)c->value);
	}
	c->value = (uint64_t)pgl_col_i64(res, 0, 0);
	PQclear(res);
	if (c->value < 1)
		return st_errf(err, errlen, ST_E_LEDGER_CORRUPT,
			       "ledger %s: sequence '%s' is out of range", l->spec, c->s[0]);
	return 0;
}

/* Reads one row by id (C_GET), by serial, the live row first (C_GET_SERIAL), or the device
 * id's newest live row (C_NEWEST, none: *row NULL). */
static int do_get(struct pg_ledger *l, struct pg_call *c, struct st_ledger_row **row,
		  char *err, size_t errlen)
{
	struct params p = { 0 };
	PGresult *res;
	int rc;

	if (c->kind == C_NEWEST) {
		pgl_text(&p, c->s[0]);
		res = pgl_exec(l, P_NEWEST_DEVICE, &p, "looking the device id's newest row up",
			       &rc, err, errlen);
		if (!res)
			return rc;
		rc = PQntuples(res) ? pgl_read_row(l, res, 0, 0, row, err, errlen) : 0;
		PQclear(res);
		return rc;
	}
	if (c->kind == C_GET)
		pgl_i64(&p, c->id);
	else
		pgl_text(&p, c->s[0]);
	res = pgl_exec(l, c->kind == C_GET ? P_GET : P_GET_SERIAL, &p, "reading a row", &rc, err,
		       errlen);
	if (res && PQntuples(res) == 0 && c->kind == C_GET_SERIAL) {
		PQclear(res);
		res = pgl_exec(l, P_GET_SERIAL_DEAD, &p, "reading a row", &rc, err, errlen);
	}
	if (!res)
		return rc;
	if (PQntuples(res) == 0 && c->kind == C_GET)
		rc = st_errf(err, errlen, ST_E_NOTFOUND, "ledger %s: no row %lld", l->spec,
			     (long long)c->id);
	else if (PQntuples(res) == 0)
		rc = st_errf(err, errlen, ST_E_NOTFOUND, "ledger %s: no row with serial %s",
			     l->spec, c->s[0]);
	else
		rc = pgl_read_row(l, res, 0, 0, row, err, errlen);
	PQclear(res);
	return rc;
}

/* Runs the statements of one call. Returns what the call returns (a verdict for a lookup).
 * A replay gives the rows the ids of the first run. */
int pgl_run_call(struct pg_ledger *l, struct pg_call *c, int replay,
		 struct st_ledger_row **row, char *err, size_t errlen)
{
	struct params p = { 0 };

	switch (c->kind) {
	case C_LOOKUP:
		return do_lookup(l, c, row, err, errlen);
	case C_ADD_INTENT:
		return do_add_intent(l, c, replay, err, errlen);
	case C_SUPERSEDE:
		pgl_i64(&p, c->id);
		return update_row(l, P_SUPERSEDE, &p, c->id, "superseding an intent", "an intent",
				  err, errlen);
	case C_SET_CERT:
		return do_set_cert(l, c, err, errlen);
	case C_DELIVERED:
		pgl_i64(&p, c->id);
		pgl_i64(&p, c->t[0]);
		return update_row(l, P_DELIVERED, &p, c->id, "marking a row delivered",
				  "a row with a certificate", err, errlen);
	case C_FAILED:
		pgl_i64(&p, c->id);
		pgl_text(&p, c->s[0]);
		return update_row(l, P_FAILED, &p, c->id, "marking a row failed",
				  "a row not yet delivered", err, errlen);
	case C_FLAG:
		return do_flag(l, c, replay, err, errlen);
	case C_SEQUENCE:
		return do_sequence(l, c, replay, err, errlen);
	case C_AUTH_REGISTER:
		return pgl_do_auth_register(l, c, err, errlen);
	case C_ADD_INTENT_AUTH:
		return pgl_do_add_intent_auth(l, c, replay, err, errlen);
	case C_GET:
	case C_GET_SERIAL:
	case C_NEWEST:
		return do_get(l, c, row, err, errlen);
	}
	return st_errf(err, errlen, ST_E_INTERNAL, "ledger %s: unknown call %d", l->spec,
		       (int)c->kind);
}
