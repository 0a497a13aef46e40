/* The ledger's public functions (ledger.h): the handle is a backend and its instance, picked
 * when the ledger is opened from the form of its spec; every call is forwarded to the
 * backend's op of the same name (ledger_backend.h). */
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "ledger_backend.h"

const struct st_ledger_ops *const st_ledger_backends[] = {
	&st_ledger_pg_ops,
	&st_ledger_sqlite_ops,
	NULL,
};

struct st_ledger {
	const struct st_ledger_ops *ops;
	void *inst;
};

static const struct st_ledger_ops *backend_of(const char *spec)
{
	size_t i;

	for (i = 0; st_ledger_backends[i]; i++) {
		if (st_ledger_backends[i]->claims(spec))
			return st_ledger_backends[i];
	}
	return NULL;
}

int st_ledger_spec_is_file(const char *spec)
{
	return backend_of(spec) == &st_ledger_sqlite_ops;
}

int st_ledger_open_flags(const char *path, const char *station, unsigned flags,
			 struct st_ledger **out, char *err, size_t errlen)
{
	const struct st_ledger_ops *ops;
	struct st_ledger *l;
	int rc;

	*out = NULL;
	if (!path || !*path)
		return st_errf(err, errlen, ST_E_INVAL, "ledger: no file name given");
	ops = backend_of(path);
	if (!ops)
		return st_errf(err, errlen, ST_E_INVAL, "ledger: no backend takes this ledger");
	l = calloc(1, sizeof(*l));
	if (!l)
		return st_errf(err, errlen, ST_E_NOMEM, "ledger: out of memory");
	l->ops = ops;
	rc = ops->open(path, station, flags, &l->inst, err, errlen);
	if (rc < 0) {
		free(l);
		return rc;
	}
	*out = l;
	return 0;
}

int st_ledger_open(const char *path, const char *station, struct st_ledger **out, char *err,
		   size_t errlen)
{
	return st_ledger_open_flags(path, station, 0, out, err, errlen);
}

void st_ledger_close(struct st_ledger *l)
{
	if (!l)
		return;
	l->ops->close(l->inst);
	free(l);
}

void st_ledger_set_busy_timeout(struct st_ledger *l, int ms)
{
	l->ops->set_busy_timeout(l->inst, ms);
}

const char *st_ledger_path(const struct st_ledger *l)
{
	return l->ops->path(l->inst);
}

void st_ledger_set_hook(struct st_ledger *l, void (*fn)(enum st_ledger_hook_point point,
							 void *arg),
			void *arg)
{
	l->ops->set_hook(l->inst, fn, arg);
}

void st_ledger_set_outage(struct st_ledger *l, const struct st_ledger_outage *outage)
{
	if (l->ops->set_outage)
		l->ops->set_outage(l->inst, outage);
}

int st_ledger_lookup(struct st_ledger *l, const char *device_id, const uint8_t pubkey_sha256[32],
		     struct st_ledger_row **row, char *err, size_t errlen)
{
	return l->ops->lookup(l->inst, device_id, pubkey_sha256, row, err, errlen);
}

int st_ledger_begin(struct st_ledger *l, char *err, size_t errlen)
{
	return l->ops->begin(l->inst, err, errlen);
}

int st_ledger_commit(struct st_ledger *l, char *err, size_t errlen)
{
	return l->ops->commit(l->inst, err, errlen);
}

int st_ledger_rollback(struct st_ledger *l)
{
	return l->ops->rollback(l->inst);
}

int st_ledger_add_intent(struct st_ledger *l, const struct st_ledger_row *row, int64_t *id,
			 char *err, size_t errlen)
{
	return l->ops->add_intent(l->inst, row, id, err, errlen);
}

int st_ledger_supersede(struct st_ledger *l, int64_t id, char *err, size_t errlen)
{
	return l->ops->supersede(l->inst, id, err, errlen);
}

int st_ledger_set_cert(struct st_ledger *l, int64_t id, const uint8_t *der, size_t len,
		       time_t not_before, time_t not_after, char *err, size_t errlen)
{
	return l->ops->set_cert(l->inst, id, der, len, not_before, not_after, err, errlen);
}

int st_ledger_mark_delivered(struct st_ledger *l, int64_t id, char *err, size_t errlen)
{
	return l->ops->mark_delivered(l->inst, id, err, errlen);
}

int st_ledger_mark_failed(struct st_ledger *l, int64_t id, const char *reason, char *err,
			  size_t errlen)
{
	return l->ops->mark_failed(l->inst, id, reason, err, errlen);
}

int st_ledger_flag(struct st_ledger *l, const char *device_id, const uint8_t pubkey_sha256[32],
		   const char *slot, const char *reason, char *err, size_t errlen)
{
	return l->ops->flag(l->inst, device_id, pubkey_sha256, slot, reason, err, errlen);
}

int st_ledger_next_sequence(struct st_ledger *l, const char *prefix, uint64_t *n, char *err,
			    size_t errlen)
{
	return l->ops->next_sequence(l->inst, prefix, n, err, errlen);
}

struct seq_find {
	const char *prefix;
	uint64_t next;
};

static int seq_find(const char *prefix, uint64_t next, void *arg)
{
	struct seq_find *f = arg;

	if (strcmp(prefix, f->prefix) != 0)
		return 0;
	f->next = next;
	return 1;
}

int st_ledger_sequence_next(struct st_ledger *l, const char *prefix, uint64_t *next,
			    char *err, size_t errlen)
{
	struct seq_find f = { prefix, 1 };
	int rc;

	*next = 0;
	if (!prefix)
		return st_errf(err, errlen, ST_E_INVAL, "sequence without a prefix");
	rc = l->ops->foreach_sequence(l->inst, seq_find, &f, err, errlen);
	if (rc == 0)
		*next = f.next;
	return rc;
}

int st_ledger_newest(struct st_ledger *l, const char *device_id, struct st_ledger_row **row,
		     char *err, size_t errlen)
{
	return l->ops->newest(l->inst, device_id, row, err, errlen);
}

int st_ledger_get(struct st_ledger *l, int64_t id, struct st_ledger_row **row, char *err,
		  size_t errlen)
{
	return l->ops->get(l->inst, id, row, err, errlen);
}

int st_ledger_get_serial(struct st_ledger *l, const char *serial, struct st_ledger_row **row,
			 char *err, size_t errlen)
{
	return l->ops->get_serial(l->inst, serial, row, err, errlen);
}

int st_ledger_foreach(struct st_ledger *l, int (*fn)(const struct st_ledger_row *row, void *arg),
		      void *arg, char *err, size_t errlen)
{
	return l->ops->foreach(l->inst, fn, arg, err, errlen);
}

int st_ledger_foreach_flag(struct st_ledger *l,
			   int (*fn)(const struct st_ledger_flag *flag, void *arg), void *arg,
			   char *err, size_t errlen)
{
	return l->ops->foreach_flag(l->inst, fn, arg, err, errlen);
}

int st_ledger_integrity(struct st_ledger *l, char *err, size_t errlen)
{
	return l->ops->integrity(l->inst, err, errlen);
}

int st_ledger_backup(struct st_ledger *l, const char *dest, char *err, size_t errlen)
{
	return l->ops->backup(l->inst, dest, err, errlen);
}

/* ---- st_ledger_import ---- */

struct import_ctx {
	struct st_ledger *to;
	struct st_ledger_import_stats *stats;
	void (*conflict)(void *arg, const char *msg);
	void *arg;
	int rc;
	char *err;
	size_t errlen;
};

/* What one import op did: an item it added counts in *added (may be NULL); a refused row
 * is told and counted; any other error ends the import. */
static int import_result(struct import_ctx *c, int rc, int outcome, uint64_t *added,
			 const char *msg)
{
	if (rc == 0 && outcome == ST_LEDGER_IMPORT_ADDED && added)
		(*added)++;
	if (rc == ST_E_LEDGER_DUP_SERIAL || rc == ST_E_LEDGER_DUP_KEY || rc == ST_E_LEDGER_DUP_ID) {
		c->stats->conflicts++;
		if (c->conflict)
			c->conflict(c->arg, msg);
		return 0;
	}
	if (rc < 0) {
		c->rc = rc;
		st_msgf(c->err, c->errlen, "%s", msg);
		return 1;
	}
	return 0;
}

static int import_row(const struct st_ledger_row *row, void *arg)
{
	struct import_ctx *c = arg;
	char msg[512] = "";
	int outcome = 0, rc;

	c->stats->rows++;
	rc = c->to->ops->import_row(c->to->inst, row, &outcome, msg, sizeof(msg));
	if (rc == 0 && outcome == ST_LEDGER_IMPORT_UPDATED)
		c->stats->rows_updated++;
	return import_result(c, rc, outcome, &c->stats->rows_added, msg);
}

static int import_flag(const struct st_ledger_flag *flag, void *arg)
{
	struct import_ctx *c = arg;
	char msg[512] = "";
	int outcome = 0, rc;

	c->stats->flags++;
	rc = c->to->ops->import_flag(c->to->inst, flag, &outcome, msg, sizeof(msg));
	return import_result(c, rc, outcome, &c->stats->flags_added, msg);
}

static int import_sequence(const char *prefix, uint64_t next, void *arg)
{
	struct import_ctx *c = arg;
	char msg[512] = "";
	int rc;

	c->stats->sequences++;
	rc = c->to->ops->import_sequence(c->to->inst, prefix, next, msg, sizeof(msg));
	return import_result(c, rc, 0, NULL, msg);
}

static int import_auth(const struct st_ledger_auth *a, void *arg)
{
	struct import_ctx *c = arg;
	char msg[512] = "";
	int outcome = 0, rc;

	c->stats->auths++;
	rc = c->to->ops->import_auth(c->to->inst, a, &outcome, msg, sizeof(msg));
	return import_result(c, rc, outcome, &c->stats->auths_added, msg);
}

static int import_attempt(const struct st_ledger_attempt *a, void *arg)
{
	struct import_ctx *c = arg;
	char msg[512] = "";
	int outcome = 0, rc;

	c->stats->attempts++;
	rc = c->to->ops->import_attempt(c->to->inst, a, &outcome, msg, sizeof(msg));
	return import_result(c, rc, outcome, &c->stats->attempts_added, msg);
}

int st_ledger_import(struct st_ledger *to, struct st_ledger *from,
		     void (*conflict)(void *arg, const char *msg), void *arg,
		     struct st_ledger_import_stats *stats, char *err, size_t errlen)
{
	struct import_ctx c = { to, stats, conflict, arg, 0, err, errlen };
	int rc;

	memset(stats, 0, sizeof(*stats));
	if (!to->ops->import_row || !to->ops->import_auth || !to->ops->import_attempt ||
	    !from->ops->foreach_sequence)
		return st_errf(err, errlen, ST_E_INVAL,
			       "ledger %s: a %s ledger takes no imports; import into a PostgreSQL "
			       "ledger",
			       st_ledger_path(to), to->ops->name);
	rc = st_ledger_begin(to, err, errlen);
	if (rc < 0)
		return rc;
	/* Authorizations before the rows that name them, so that to's database counts each
	 * row's unit as it comes in (and refuses one beyond the units); attempts after the
	 * rows whose ids in to they name. */
	rc = st_ledger_foreach_auth(from, import_auth, &c, err, errlen);
	if (rc == 0 && c.rc == 0)
		rc = st_ledger_foreach(from, import_row, &c, err, errlen);
	if (rc == 0 && c.rc == 0)
		rc = st_ledger_foreach_flag(from, import_flag, &c, err, errlen);
	if (rc == 0 && c.rc == 0)
		rc = from->ops->foreach_sequence(from->inst, import_sequence, &c, err, errlen);
	if (rc == 0 && c.rc == 0)
		rc = st_ledger_foreach_attempt(from, 0, 0, import_attempt, &c, err, errlen);
	if (rc == 0)
		rc = c.rc;
	if (rc == 0 && stats->conflicts)
		rc = st_errf(err, errlen, ST_E_LEDGER_DUP_SERIAL,
			     "ledger %s: %llu rows of %s conflict with rows recorded there; "
			     "nothing was imported",
			     st_ledger_path(to), (unsigned long long)stats->conflicts,
			     st_ledger_path(from));
	if (rc < 0) {
		st_ledger_rollback(to);
		return rc;
	}
	return st_ledger_commit(to, err, errlen);
}

static int valid_auth_id(const char *id)
{
	size_t n = id ? strlen(id) : 0;

	return n >= 1 && n <= 64;
}

int st_ledger_auth_register(struct st_ledger *l, const struct st_ledger_auth *a, int64_t *used,
			    char *err, size_t errlen)
{
	if (used)
		*used = 0;
	if (!a || !valid_auth_id(a->id) || a->units < 1)
		return st_errf(err, errlen, ST_E_INVAL,
			       "ledger %s: an authorization needs an id of 1 to 64 bytes and at "
			       "least one unit",
			       st_ledger_path(l));
	return l->ops->auth_register(l->inst, a, used, err, errlen);
}

int st_ledger_add_intent_auth(struct st_ledger *l, const struct st_ledger_row *row,
			      const char *auth_id, int64_t *id, int64_t *used, int64_t *units,
			      char *err, size_t errlen)
{
	*id = 0;
	if (!valid_auth_id(auth_id))
		return st_errf(err, errlen, ST_E_INVAL, "ledger %s: no authorization id given",
			       st_ledger_path(l));
	return l->ops->add_intent_auth(l->inst, row, auth_id, id, used, units, err, errlen);
}

int st_ledger_foreach_auth(struct st_ledger *l,
			   int (*fn)(const struct st_ledger_auth *a, void *arg), void *arg,
			   char *err, size_t errlen)
{
	return l->ops->foreach_auth(l->inst, fn, arg, err, errlen);
}

int st_ledger_auth_stations(struct st_ledger *l, const char *auth_id,
			    int (*fn)(const char *station, int64_t certificates, int64_t pending,
				      void *arg),
			    void *arg, char *err, size_t errlen)
{
	return l->ops->auth_stations(l->inst, auth_id, fn, arg, err, errlen);
}

int st_ledger_foreach_auth_cert(struct st_ledger *l, const char *auth_id,
				int (*fn)(const struct st_ledger_row *row, void *arg), void *arg,
				char *err, size_t errlen)
{
	return l->ops->foreach_auth_cert(l->inst, auth_id, fn, arg, err, errlen);
}

int st_ledger_add_attempt(struct st_ledger *l, const struct st_ledger_attempt *a, char *err,
			  size_t errlen)
{
	if (!a || !a->outcome || (strcmp(a->outcome, "pass") != 0 &&
				  strcmp(a->outcome, "fail") != 0 &&
				  strcmp(a->outcome, "abandoned") != 0))
		return st_errf(err, errlen, ST_E_INVAL,
			       "ledger %s: an attempt's outcome is pass, fail or abandoned",
			       st_ledger_path(l));
	return l->ops->add_attempt(l->inst, a, err, errlen);
}

void st_ledger_attempt_texts(const struct st_ledger_attempt *a,
			     const char *text[ST_LEDGER_ATTEMPT_TEXTS])
{
	const char *t[ST_LEDGER_ATTEMPT_TEXTS] = {
		a->slot,	a->outcome, a->reason,	a->error,    a->device_id, a->serial,
		a->board_sn,	a->hardware_id, a->sku, a->firmware, a->profile,   a->auth_id,
	};

	for (size_t i = 0; i < ST_LEDGER_ATTEMPT_TEXTS; i++)
		text[i] = t[i] && *t[i] ? t[i] : NULL;
}

int st_ledger_foreach_attempt(struct st_ledger *l, time_t since, time_t until,
			      int (*fn)(const struct st_ledger_attempt *a, void *arg), void *arg,
			      char *err, size_t errlen)
{
	return l->ops->foreach_attempt(l->inst, since, until, fn, arg, err, errlen);
}
