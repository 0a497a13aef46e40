/* Production authorizations and attempts in a PostgreSQL ledger (ledger_pg.h), with the
 * guarantees ledger.h states: the database counts the units (the trigger of schema version
 * 2 keeps authorizations.used equal to the live rows naming each, its CHECK never beyond the
 * units), and a unit is consumed in the transaction of its intent. Stations consuming units
 * of one authorization queue on its row (SELECT ... FOR UPDATE), so each sees the count the
 * one before it committed and none takes a unit that is not there. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "ledger_pg.h"

/* Reads authorization id (lock: FOR UPDATE): 1 with its units and count (and hash when sha
 * is not NULL), 0 when it is not recorded, or a negative code. */
static int auth_read(struct pg_ledger *l, const char *id, int lock, uint8_t sha[32],
		     int64_t *units, int64_t *used, char *err, size_t errlen)
{
	struct params p = { 0 };
	PGresult *res;
	int rc, off = lock ? 0 : 1;

	pgl_text(&p, id);
	res = pgl_exec(l, lock ? P_AUTH_LOCK : P_AUTH_GET, &p, "reading an authorization", &rc,
		       err, errlen);
	if (!res)
		return rc;
	rc = PQntuples(res) == 1;
	if (rc) {
		if (sha && !lock) {
			memset(sha, 0, 32);
			if (PQgetlength(res, 0, 0) == 32)
				memcpy(sha, PQgetvalue(res, 0, 0), 32);
		}
		*units = pgl_col_i64(res, 0, off);
		*used = pgl_col_i64(res, 0, off + 1);
	}
	PQclear(res);
	return rc;
}

int pgl_do_auth_register(struct pg_ledger *l, struct pg_call *c, char *err, size_t errlen)
{
	struct params p = { 0 };
	PGresult *res;
	uint8_t sha[32];
	int64_t units = 0, used = 0;
	int rc;

	c->out = 0;
	pgl_text(&p, c->s[0]);
	pgl_bytes(&p, c->key, 32);
	pgl_i64(&p, c->t[0]);
	pgl_text(&p, c->s[1]);
	pgl_i64(&p, c->t[1]);
	pgl_i64(&p, c->t[2]);
	pgl_i64(&p, (int64_t)c->value);
	pgl_text(&p, l->station);
	res = pgl_exec(l, P_AUTH_REGISTER, &p, "recording an authorization", &rc, err, errlen);
	if (!res)
		return rc;
	PQclear(res);
	rc = auth_read(l, c->s[0], 0, sha, &units, &used, err, errlen);
	if (rc < 0)
		return rc;
	if (rc == 0)
		return st_errf(err, errlen, ST_E_LEDGER_IO,
			       "ledger %s: authorization %s was recorded but cannot be read back",
			       l->spec, c->s[0]);
	if (memcmp(sha, c->key, 32) != 0 || units != c->t[0])
		return st_errf(err, errlen, ST_E_AUTH_CONFLICT,
			       "ledger %s: authorization id %s is recorded for another document "
			       "(%lld units); two documents with one id are refused",
			       l->spec, c->s[0], (long long)units);
	c->out = used;
	return 0;
}

int pgl_do_add_intent_auth(struct pg_ledger *l, struct pg_call *c, int replay, char *err,
			   size_t errlen)
{
	struct params p = { 0 };
	PGresult *res;
	int64_t units = 0, used = 0, back = 0;
	int rc;

	c->value = 0;
	rc = auth_read(l, c->s[4], 1, NULL, &units, &used, err, errlen);
	if (rc < 0)
		return rc;
	if (rc == 0)
		return st_errf(err, errlen, ST_E_NOTFOUND,
			       "ledger %s: authorization %s is not recorded", l->spec, c->s[4]);
	/* The intent may supersede an intent of the same board and key (a crash came between
	 * signing and recording), whose unit it takes over. */
	pgl_text(&p, c->s[1]);
	pgl_bytes(&p, c->key, 32);
	pgl_text(&p, c->s[4]);
	res = pgl_exec(l, P_AUTH_GIVEN_BACK, &p, "counting an authorization's open intents", &rc,
		       err, errlen);
	if (!res)
		return rc;
	back = pgl_col_i64(res, 0, 0);
	PQclear(res);
	if (used - back >= units)
		return st_errf(err, errlen, ST_E_AUTH_EXHAUSTED,
			       "authorization %s: all %lld units are used", c->s[4],
			       (long long)units);
	c->kind = C_ADD_INTENT;
	rc = pgl_run_call(l, c, replay, NULL, err, errlen);
	c->kind = C_ADD_INTENT_AUTH;
	if (rc < 0)
		return rc;
	memset(&p, 0, sizeof(p));
	pgl_i64(&p, c->out);
	pgl_text(&p, c->s[4]);
	res = pgl_exec(l, P_AUTH_TAKE, &p, "consuming an authorization unit", &rc, err, errlen);
	if (!res)
		return rc;
	rc = atoi(PQcmdTuples(res)) == 1 ? 0 :
		st_errf(err, errlen, ST_E_INTERNAL,
			"ledger %s: the new intent %lld already names an authorization", l->spec,
			(long long)c->out);
	PQclear(res);
	if (rc < 0)
		return rc;
	rc = auth_read(l, c->s[4], 0, NULL, &units, &used, err, errlen);
	if (rc < 0)
		return rc;
	c->value = (uint64_t)used;
	c->t[1] = units;
	return 0;
}

/* ---- Reads, outside any transaction's journal ----------------------------------------- */

/* Runs read id with p: the result, or NULL with *rc. */
static PGresult *read_exec(struct pg_ledger *l, enum pstmt id, const struct params *p,
			   const char *what, int *rc, char *err, size_t errlen)
{
	*rc = pgl_prepare(l, err, errlen);
	if (*rc < 0)
		return NULL;
	return pgl_exec(l, id, p, what, rc, err, errlen);
}

int pgl_foreach_auth(void *inst, int (*fn)(const struct st_ledger_auth *a, void *arg),
		     void *arg, char *err, size_t errlen)
{
	struct pg_ledger *l = inst;
	PGresult *res;
	int rc, i, n;

	res = read_exec(l, P_AUTH_ALL, NULL, "reading the authorizations", &rc, err, errlen);
	if (!res)
		return rc;
	n = PQntuples(res);
	for (i = 0; i < n; i++) {
		struct st_ledger_auth a;

		memset(&a, 0, sizeof(a));
		a.id = pgl_col_text(res, i, 0);
		if (PQgetlength(res, i, 1) == 32)
			memcpy(a.doc_sha256, PQgetvalue(res, i, 1), 32);
		a.units = pgl_col_i64(res, i, 2);
		a.used = pgl_col_i64(res, i, 3);
		a.lot = pgl_col_text(res, i, 4);
		a.not_before = PQgetisnull(res, i, 5) ? 0 : (time_t)pgl_col_i64(res, i, 5);
		a.not_after = PQgetisnull(res, i, 6) ? 0 : (time_t)pgl_col_i64(res, i, 6);
		a.registered = (time_t)pgl_col_i64(res, i, 7);
		a.station = pgl_col_text(res, i, 8);
		if (fn(&a, arg) != 0)
			break;
	}
	PQclear(res);
	return 0;
}

int pgl_auth_stations(void *inst, const char *auth_id,
		      int (*fn)(const char *station, int64_t certificates, int64_t pending,
				void *arg),
		      void *arg, char *err, size_t errlen)
{
	struct pg_ledger *l = inst;
	struct params p = { 0 };
	PGresult *res;
	int rc, i, n;

	pgl_text(&p, auth_id ? auth_id : "");
	res = read_exec(l, P_AUTH_STATIONS, &p, "counting an authorization's units", &rc, err,
			errlen);
	if (!res)
		return rc;
	n = PQntuples(res);
	for (i = 0; i < n; i++) {
		const char *station = pgl_col_text(res, i, 0);

		if (fn(station ? station : "", pgl_col_i64(res, i, 1), pgl_col_i64(res, i, 2),
		       arg) != 0)
			break;
	}
	PQclear(res);
	return 0;
}

int pgl_foreach_auth_cert(void *inst, const char *auth_id,
			  int (*fn)(const struct st_ledger_row *row, void *arg), void *arg,
			  char *err, size_t errlen)
{
	struct pg_ledger *l = inst;
	struct params p = { 0 };
	struct st_ledger_row *r;
	PGresult *res;
	int rc, i, n;

	pgl_text(&p, auth_id ? auth_id : "");
	res = read_exec(l, P_AUTH_CERTS, &p, "reading an authorization's certificates", &rc, err,
			errlen);
	if (!res)
		return rc;
	n = PQntuples(res);
	for (rc = 0, i = 0; i < n; i++) {
		rc = pgl_read_row(l, res, i, 0, &r, err, errlen);
		if (rc < 0)
			break;
		rc = fn(r, arg);
		st_ledger_row_free(r);
		if (rc != 0) {
			rc = 0;
			break;
		}
	}
	PQclear(res);
	return rc;
}

/* ---- Attempts ------------------------------------------------------------------------- */

void pgl_attempt_params(struct params *p, const struct st_ledger_attempt *a,
			const char *station)
{
	const char *text[ST_LEDGER_ATTEMPT_TEXTS];

	st_ledger_attempt_texts(a, text);
	pgl_i64(p, (int64_t)(a->time ? a->time : time(NULL)));
	pgl_text(p, station);
	for (size_t i = 0; i < ST_LEDGER_ATTEMPT_TEXTS; i++)
		pgl_text(p, text[i]);
	if (a->certificate > 0)
		pgl_i64(p, a->certificate);
	else
		pgl_text(p, NULL);
	pgl_i64(p, a->reused ? 1 : 0);
	if (a->ms >= 0)
		pgl_i64(p, a->ms);
	else
		pgl_text(p, NULL);
}

/* An attempt is written in the caller's transaction, or on its own. It is not journaled: a
 * transaction that lost its connection with one in it is lost (its round runs again). */
int pgl_add_attempt(void *inst, const struct st_ledger_attempt *a, char *err, size_t errlen)
{
	struct pg_ledger *l = inst;
	struct params p = { 0 };
	PGresult *res;
	int rc;

	pgl_attempt_params(&p, a, l->station);
	rc = pgl_prepare(l, err, errlen);
	if (rc < 0)
		return rc;
	if (l->in_tx)
		l->unjournaled = 1;
	res = pgl_exec(l, P_ATTEMPT, &p, "recording an attempt", &rc, err, errlen);
	if (!res) {
		if (l->in_tx && (l->gone || pgl_in_error(l)))
			l->aborted = 1;
		return rc;
	}
	PQclear(res);
	return 0;
}

int pgl_foreach_attempt(void *inst, time_t since, time_t until,
			int (*fn)(const struct st_ledger_attempt *a, void *arg), void *arg,
			char *err, size_t errlen)
{
	struct pg_ledger *l = inst;
	struct params p = { 0 };
	PGresult *res;
	int rc, i, n;

	pgl_i64(&p, (int64_t)since);
	pgl_i64(&p, until > 0 ? (int64_t)until : INT64_MAX);
	res = read_exec(l, P_ATTEMPTS, &p, "reading the attempts", &rc, err, errlen);
	if (!res)
		return rc;
	n = PQntuples(res);
	for (i = 0; i < n; i++) {
		struct st_ledger_attempt a;
		/* Columns 2 to 15 of P_ATTEMPTS, in order. */
		const char **text[] = { &a.station,	&a.slot,     &a.outcome, &a.reason,
					&a.error,	&a.device_id, &a.serial,  &a.board_sn,
					&a.hardware_id, &a.sku,	     &a.firmware, &a.profile,
					&a.auth_id,	&a.lot };

		memset(&a, 0, sizeof(a));
		a.id = pgl_col_i64(res, i, 0);
		a.time = (time_t)pgl_col_i64(res, i, 1);
		for (size_t k = 0; k < sizeof(text) / sizeof(text[0]); k++)
			*text[k] = pgl_col_text(res, i, (int)k + 2);
		a.certificate = pgl_col_i64(res, i, 16);
		a.reused = (int)pgl_col_i64(res, i, 17);
		a.ms = pgl_col_i64(res, i, 18);
		if (!a.station)
			a.station = "";
		if (!a.outcome)
			a.outcome = "";
		if (fn(&a, arg) != 0)
			break;
	}
	PQclear(res);
	return 0;
}
