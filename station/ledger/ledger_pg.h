/* The PostgreSQL ledger backend's own header: ledger_pg.c (the backend: opening, the schema,
 * transactions with their journal, restore and commit, the ops), ledger_pg_sql.c (the
 * connection, running statements, one function per call of a transaction) and
 * ledger_pg_import.c (st_ledger_import into it) share the instance, a call and these
 * functions. Nothing else includes it. */
#ifndef ST_LEDGER_PG_H
#define ST_LEDGER_PG_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <libpq-fe.h>

#include "ledger_backend.h"

#define SCHEMA "station_ledger"
#define T_META SCHEMA ".meta"
#define T_CERTS SCHEMA ".certificates"
/* The first key of the advisory locks the ledger takes ("STLG"): the second is the device
 * id's hash. */
#define DEVICE_LOCK_CLASS "1398033479"
#define T_SEQ SCHEMA ".sequences"
#define T_FLAGS SCHEMA ".flags"
#define T_AUTHS SCHEMA ".authorizations"
#define T_ATTEMPTS SCHEMA ".attempts"

/* Rows fetched at a time by st_ledger_foreach. */
#define FETCH_ROWS "512"

/* A row that holds or may yet hold a certificate: serial and key are unique among these. */
#define LIVE "(state <> 'failed' OR cert_der IS NOT NULL)"

#define ROW_COLUMNS                                                                         \
	"id, serial, device_id, profile, station, slot, csr_sha256, pubkey_sha256, state, " \
	"cert_der, not_before, not_after, created, signed_at, delivered_at, reason"

enum pstmt {
	P_LOCK_DEVICE,
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
	P_NEWEST_DEVICE,
	P_SEQUENCE,
	P_SEQUENCE_AGAIN,
	P_FLAG,
	P_IMPORT_ORIGIN,
	P_IMPORT_ROW,
	P_IMPORT_UPDATE,
	P_IMPORT_AUTH_FILL,
	P_IMPORT_FLAG,
	P_IMPORT_SEQUENCE,
	P_IMPORT_AUTH,
	P_IMPORT_ATTEMPT,
	P_AUTH_REGISTER,
	P_AUTH_GET,
	P_AUTH_LOCK,
	P_AUTH_GIVEN_BACK,
	P_AUTH_TAKE,
	P_AUTH_ALL,
	P_AUTH_STATIONS,
	P_AUTH_CERTS,
	P_ATTEMPT,
	P_ATTEMPTS,
	P_COUNT_
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
	C_AUTH_REGISTER,   /* s[0] id, s[1] lot, key the document's hash, t units, not_before,
			    * not_after, value registered; out: units used */
	C_ADD_INTENT_AUTH, /* C_ADD_INTENT with s[4] the authorization; value: units used */
	C_GET,        /* reads: not kept in the journal */
	C_GET_SERIAL,
	C_NEWEST,     /* s[0] the device id; *row NULL when it has no live row */
};

struct pg_call {
	struct pg_call *next;
	enum call_kind kind;
	int64_t id;          /* the row (updates; the row given out by add_intent, flag) */
#define PG_CALL_STRINGS 5
	char *s[PG_CALL_STRINGS]; /* add_intent: serial, device_id, profile, slot; failed: reason;
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

/* Bound parameters of one statement: text and numbers as text, hashes and DER in binary. */
struct params {
	int n;
	const char *v[20];
	int len[20];
	int fmt[20];
	char num[20][24];
};

/* ---- ledger_pg_sql.c: the connection and its statements ---------------------------------- */

/* Opens the connection (the spec's words over bounded attempts and TCP keepalives) and sets
 * the session up; pgl_session_setup() sets it up again (durable commits, lock_timeout). */
int pgl_connect(struct pg_ledger *l, char *err, size_t errlen);
int pgl_session_setup(struct pg_ledger *l, char *err, size_t errlen);
void pgl_disconnect(struct pg_ledger *l);

/* libpq's message on one line, in buf (returned). */
const char *pgl_message(const char *m, char *buf, size_t len);

/* Fixed SQL (BEGIN, COMMIT, settings): the result, or NULL with *rc and err. After a
 * failure l->gone says the connection is lost, l->transient that trying again may work. */
PGresult *pgl_exec_fixed(struct pg_ledger *l, const char *sql, const char *what, int *rc,
			 char *err, size_t errlen);
int pgl_run_fixed(struct pg_ledger *l, const char *sql, const char *what, char *err,
		  size_t errlen);

/* Parameters of a prepared statement: text (NULL: SQL NULL), numbers, binary. */
void pgl_text(struct params *p, const char *s);
void pgl_i64(struct params *p, int64_t v);
void pgl_bytes(struct params *p, const void *b, size_t n);
void pgl_bytes_or_null(struct params *p, const void *b, size_t n);
void pgl_time(struct params *p, time_t t); /* 0: NULL */

/* Prepared statement id (prepared on the connection at its first use): the result (binary
 * columns), or NULL with *rc and err, as pgl_exec_fixed(). */
PGresult *pgl_exec(struct pg_ledger *l, enum pstmt id, const struct params *p, const char *what,
		   int *rc, char *err, size_t errlen);

/* Binary result columns; a row (ROW_COLUMNS from column first) copied into a new row. */
int64_t pgl_col_i64(const PGresult *r, int row, int col);
const char *pgl_col_text(const PGresult *r, int row, int col);
int pgl_read_row(struct pg_ledger *l, const PGresult *r, int row, int first,
		 struct st_ledger_row **out, char *err, size_t errlen);
void pgl_hash_hex(char out[65], const uint8_t h[32]);

/* After an insert was turned away: which row holds c's serial (s[0]), key or device id's
 * (s[1]) open intent: ST_E_LEDGER_DUP_* with a message, or 0 when none does any more. */
int pgl_insert_conflict(struct pg_ledger *l, const struct pg_call *c, char *err,
			size_t errlen);

/* Runs the statements of call c: what the call returns (a verdict for a lookup). A replay
 * gives the rows the ids of the first run. */
int pgl_run_call(struct pg_ledger *l, struct pg_call *c, int replay, struct st_ledger_row **row,
		 char *err, size_t errlen);

/* ---- ledger_pg_auth.c: authorizations and attempts ------------------------------------- */

/* The statements of the calls C_AUTH_REGISTER and C_ADD_INTENT_AUTH. */
int pgl_do_auth_register(struct pg_ledger *l, struct pg_call *c, char *err, size_t errlen);
int pgl_do_add_intent_auth(struct pg_ledger *l, struct pg_call *c, int replay, char *err,
			   size_t errlen);
int pgl_foreach_auth(void *inst, int (*fn)(const struct st_ledger_auth *a, void *arg),
		     void *arg, char *err, size_t errlen);
int pgl_auth_stations(void *inst, const char *auth_id,
		      int (*fn)(const char *station, int64_t certificates, int64_t pending,
				void *arg),
		      void *arg, char *err, size_t errlen);
int pgl_foreach_auth_cert(void *inst, const char *auth_id,
			  int (*fn)(const struct st_ledger_row *row, void *arg), void *arg,
			  char *err, size_t errlen);
/* The parameters of an attempt's INSERT (P_ATTEMPT, and the first 17 of P_IMPORT_ATTEMPT):
 * its time (0: now), station, texts, certificate's row, reused and ms. */
void pgl_attempt_params(struct params *p, const struct st_ledger_attempt *a,
			const char *station);
int pgl_add_attempt(void *inst, const struct st_ledger_attempt *a, char *err, size_t errlen);
int pgl_foreach_attempt(void *inst, time_t since, time_t until,
			int (*fn)(const struct st_ledger_attempt *a, void *arg), void *arg,
			char *err, size_t errlen);

/* ---- ledger_pg.c: the transactions ----------------------------------------------------- */

/* Whether the server aborted the open transaction (a statement failed in it). */
int pgl_in_error(const struct pg_ledger *l);

/* Before the statements of a call: a connection, and the caller's transaction restored
 * when the server aborted it. */
int pgl_prepare(struct pg_ledger *l, char *err, size_t errlen);

/* Reads a whole table through a cursor WITH HOLD, calling each for every row (non-zero
 * stops: > 0 as success, < 0 as that error). */
int pgl_scan(struct pg_ledger *l, const char *declare, const char *fetch, const char *close,
	     int (*each)(struct pg_ledger *l, const PGresult *res, int i, void *ctx, char *err,
			 size_t errlen),
	     void *ctx, const char *what, char *err, size_t errlen);

/* ---- ledger_pg_import.c: the import ops (ledger_backend.h) ------------------------------ */

int pgl_import_row(void *inst, const struct st_ledger_row *row, int *outcome, char *err,
		   size_t errlen);
int pgl_import_flag(void *inst, const struct st_ledger_flag *flag, int *outcome, char *err,
		    size_t errlen);
int pgl_import_sequence(void *inst, const char *prefix, uint64_t next, char *err,
			size_t errlen);
int pgl_import_auth(void *inst, const struct st_ledger_auth *a, int *outcome, char *err,
		    size_t errlen);
int pgl_import_attempt(void *inst, const struct st_ledger_attempt *a, int *outcome, char *err,
		       size_t errlen);
int pgl_foreach_sequence(void *inst, int (*fn)(const char *prefix, uint64_t next, void *arg),
			 void *arg, char *err, size_t errlen);

#endif
