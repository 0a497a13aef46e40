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
