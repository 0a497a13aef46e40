/* st_ledger_import into a PostgreSQL ledger (ledger_pg.h): authorizations, rows, flags,
 * sequences and attempts of another ledger, as they are, each known by its station and its
 * id there (an authorization by its own id). The database counts the units of the
 * authorizations as the rows come in, as it does for the rows its stations write. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "ledger_pg.h"

/* What another ledger holds, in the caller's transaction. Imports are not journaled: a
 * transaction that lost its connection with imports in it is lost, and the import
 * (idempotent) is run again. */

/* Before an import statement: the caller's transaction, usable. */
static int import_ready(struct pg_ledger *l, char *err, size_t errlen)
{
	if (!l->in_tx)
		return st_errf(err, errlen, ST_E_INVAL, "ledger %s: an import needs a transaction",
			       l->spec);
	l->unjournaled = 1;
	return pgl_prepare(l, err, errlen);
}

/* After an import statement failed: the transaction is gone with it. */
static int import_failed(struct pg_ledger *l, int rc)
{
	if (l->gone || pgl_in_error(l))
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
	res = pgl_exec(l, id, p, what, rc, err, errlen);
	if (!res)
		import_failed(l, *rc);
	return res;
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
	rc = pgl_insert_conflict(l, &c, err, errlen);
	if (rc == 0)
		rc = st_errf(err, errlen, ST_E_LEDGER_DUP_SERIAL,
			     "ledger %s: serial %s: a unique rule refused the row", l->spec,
			     row->serial);
	return rc;
}

/* After the database refused an imported row: ST_E_AUTH_EXHAUSTED is said in words naming
 * the authorization and the row (the server's names its CHECK); other errors as they are. */
static int beyond_units(struct pg_ledger *l, const struct st_ledger_row *row, int rc,
			char *err, size_t errlen)
{
	if (rc != ST_E_AUTH_EXHAUSTED)
		return rc;
	return st_errf(err, errlen, ST_E_AUTH_EXHAUSTED,
		       "ledger %s: authorization %s has no unit left for row %lld of station %s "
		       "(serial %s): with the rows recorded there under it, the ledgers hold more "
		       "certificates than it allows",
		       l->spec, row->auth_id ? row->auth_id : "-", (long long)row->id,
		       row->station, row->serial);
}

int pgl_import_row(void *inst, const struct st_ledger_row *row, int *outcome, char *err,
		   size_t errlen)
{
	struct pg_ledger *l = inst;
	struct params p = { 0 };
	PGresult *res;
	char keyhex[65];
	int64_t id;
	int rc, same;

	/* Imported before: the same row, maybe in a later state by now. */
	pgl_text(&p, row->station);
	pgl_i64(&p, row->id);
	res = import_exec(l, P_IMPORT_ORIGIN, &p, "looking an imported row up", &rc, err,
			  errlen);
	if (!res)
		return rc;
	if (PQntuples(res) == 1) {
		same = strcmp(pgl_col_text(res, 0, 1), row->serial) == 0 &&
		       PQgetlength(res, 0, 2) == 32 &&
		       memcmp(PQgetvalue(res, 0, 2), row->pubkey_sha256, 32) == 0;
		memset(&p, 0, sizeof(p));
		id = pgl_col_i64(res, 0, 0);
		pgl_i64(&p, id);
		PQclear(res);
		if (!same) {
			pgl_hash_hex(keyhex, row->pubkey_sha256);
			return st_errf(err, errlen, ST_E_LEDGER_DUP_SERIAL,
				       "ledger %s: row %lld of station %s was imported before "
				       "with another serial or key (now serial %s, key sha256:%s): "
				       "another ledger of the same station?",
				       l->spec, (long long)row->id, row->station, row->serial,
				       keyhex);
		}
		pgl_text(&p, st_ledger_state_name(row->state));
		pgl_bytes_or_null(&p, row->cert_der, row->cert_len);
		pgl_time(&p, row->not_before);
		pgl_time(&p, row->not_after);
		pgl_time(&p, row->signed_at);
		pgl_time(&p, row->delivered_at);
		pgl_text(&p, row->reason);
		pgl_text(&p, row->auth_id);
		res = import_exec(l, P_IMPORT_UPDATE, &p, "updating an imported row", &rc, err,
				  errlen);
		if (!res)
			return beyond_units(l, row, rc, err, errlen);
		*outcome = strcmp(PQcmdTuples(res), "0") == 0 ? ST_LEDGER_IMPORT_SAME :
								 ST_LEDGER_IMPORT_UPDATED;
		PQclear(res);
		if (*outcome == ST_LEDGER_IMPORT_UPDATED || !row->auth_id)
			return 0;
		/* Not ahead of the database's copy: only its authorization, if it had none. */
		memset(&p, 0, sizeof(p));
		pgl_i64(&p, id);
		pgl_text(&p, row->auth_id);
		res = import_exec(l, P_IMPORT_AUTH_FILL, &p, "giving an imported row its "
				  "authorization", &rc, err, errlen);
		if (!res)
			return beyond_units(l, row, rc, err, errlen);
		if (strcmp(PQcmdTuples(res), "0") != 0)
			*outcome = ST_LEDGER_IMPORT_UPDATED;
		PQclear(res);
		return 0;
	}
	PQclear(res);
	memset(&p, 0, sizeof(p));
	pgl_text(&p, row->serial);
	pgl_text(&p, row->device_id);
	pgl_text(&p, row->profile);
	pgl_text(&p, row->station);
	pgl_text(&p, row->slot);
	pgl_bytes(&p, row->csr_sha256, 32);
	pgl_bytes(&p, row->pubkey_sha256, 32);
	pgl_text(&p, st_ledger_state_name(row->state));
	pgl_bytes_or_null(&p, row->cert_der, row->cert_len);
	pgl_time(&p, row->not_before);
	pgl_time(&p, row->not_after);
	pgl_i64(&p, (int64_t)row->created);
	pgl_time(&p, row->signed_at);
	pgl_time(&p, row->delivered_at);
	pgl_text(&p, row->reason);
	pgl_i64(&p, row->id);
	pgl_text(&p, row->auth_id);
	res = import_exec(l, P_IMPORT_ROW, &p, "importing a row", &rc, err, errlen);
	if (!res)
		return beyond_units(l, row, rc, err, errlen);
	rc = PQntuples(res);
	PQclear(res);
	if (rc == 1) {
		*outcome = ST_LEDGER_IMPORT_ADDED;
		return 0;
	}
	return import_failed(l, import_conflict(l, row, err, errlen));
}

/* Runs an INSERT ... ON CONFLICT DO NOTHING RETURNING id of an import: *outcome is whether
 * it added a row or found it there from an earlier import. */
static int import_insert(struct pg_ledger *l, enum pstmt id, const struct params *p,
			 const char *what, int *outcome, char *err, size_t errlen)
{
	PGresult *res;
	int rc;

	res = import_exec(l, id, p, what, &rc, err, errlen);
	if (!res)
		return rc;
	*outcome = PQntuples(res) == 1 ? ST_LEDGER_IMPORT_ADDED : ST_LEDGER_IMPORT_SAME;
	PQclear(res);
	return 0;
}

int pgl_import_flag(void *inst, const struct st_ledger_flag *f, int *outcome,
		    char *err, size_t errlen)
{
	struct pg_ledger *l = inst;
	struct params p = { 0 };

	pgl_i64(&p, (int64_t)f->time);
	pgl_text(&p, f->station);
	pgl_text(&p, f->slot);
	pgl_text(&p, f->device_id);
	pgl_bytes_or_null(&p, f->pubkey_sha256, 32);
	pgl_text(&p, f->reason);
	pgl_i64(&p, f->id);
	return import_insert(l, P_IMPORT_FLAG, &p, "importing a flag", outcome, err, errlen);
}

int pgl_import_sequence(void *inst, const char *prefix, uint64_t next, char *err,
			size_t errlen)
{
	struct pg_ledger *l = inst;
	struct params p = { 0 };
	PGresult *res;
	int rc;

	pgl_text(&p, prefix);
	pgl_i64(&p, (int64_t)next);
	res = import_exec(l, P_IMPORT_SEQUENCE, &p, "importing a sequence", &rc, err, errlen);
	if (!res)
		return rc;
	PQclear(res);
	return 0;
}

int pgl_import_auth(void *inst, const struct st_ledger_auth *a, int *outcome, char *err,
		    size_t errlen)
{
	struct pg_ledger *l = inst;
	struct params p = { 0 };
	PGresult *res;
	int rc, same;

	pgl_text(&p, a->id);
	pgl_bytes(&p, a->doc_sha256, 32);
	pgl_i64(&p, a->units);
	pgl_text(&p, a->lot);
	pgl_i64(&p, (int64_t)a->not_before);
	pgl_i64(&p, (int64_t)a->not_after);
	pgl_i64(&p, (int64_t)a->registered);
	pgl_text(&p, a->station && *a->station ? a->station : l->station);
	rc = import_insert(l, P_IMPORT_AUTH, &p, "importing an authorization", outcome, err,
			   errlen);
	if (rc < 0 || *outcome == ST_LEDGER_IMPORT_ADDED)
		return rc;
	/* Recorded already: the same document (its units count the rows of both), or a
	 * second document under one id, which would let each spend the other's units. */
	memset(&p, 0, sizeof(p));
	pgl_text(&p, a->id);
	res = import_exec(l, P_AUTH_GET, &p, "reading an authorization", &rc, err, errlen);
	if (!res)
		return rc;
	if (PQntuples(res) != 1) {
		PQclear(res);
		return st_errf(err, errlen, ST_E_LEDGER_IO,
			       "ledger %s: authorization %s was recorded but cannot be read back",
			       l->spec, a->id);
	}
	same = PQgetlength(res, 0, 0) == 32 &&
	       memcmp(PQgetvalue(res, 0, 0), a->doc_sha256, 32) == 0 &&
	       pgl_col_i64(res, 0, 1) == a->units;
	rc = same ? 0 :
		    st_errf(err, errlen, ST_E_AUTH_CONFLICT,
			    "ledger %s: authorization id %s is recorded there for another "
			    "document (%lld units; the one imported has %lld): two documents "
			    "with one id are refused",
			    l->spec, a->id, (long long)pgl_col_i64(res, 0, 1),
			    (long long)a->units);
	PQclear(res);
	return rc;
}

int pgl_import_attempt(void *inst, const struct st_ledger_attempt *a, int *outcome,
		       char *err, size_t errlen)
{
	struct pg_ledger *l = inst;
	struct params p = { 0 };

	pgl_attempt_params(&p, a, a->station && *a->station ? a->station : l->station);
	pgl_i64(&p, a->id);
	return import_insert(l, P_IMPORT_ATTEMPT, &p, "importing an attempt", outcome, err,
			     errlen);
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
	return c->fn(pgl_col_text(res, i, 0), (uint64_t)pgl_col_i64(res, i, 1), c->arg) != 0 ?
		       1 :
		       0;
}

int pgl_foreach_sequence(void *inst,
			 int (*fn)(const char *prefix, uint64_t next, void *arg), void *arg,
			 char *err, size_t errlen)
{
	struct seq_ctx c = { fn, arg };

	return pgl_scan(inst,
			"DECLARE st_ledger_sequences BINARY NO SCROLL CURSOR WITH HOLD FOR SELECT "
			"prefix, next FROM " T_SEQ " ORDER BY prefix",
			"FETCH FORWARD " FETCH_ROWS " FROM st_ledger_sequences",
			"CLOSE st_ledger_sequences", each_sequence, &c, "reading the sequences",
			err, errlen);
}
