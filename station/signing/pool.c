/* The batch signing pool (see pool.h for the design).
 *
 * Locking: one mutex guards everything the threads share: the sign queue, the ledger job
 * and operation queues, the result queues, the counters and the pause state. It is held only
 * to move pointers and counters, never across a signature or a ledger call. The loop thread
 * alone touches the open batch, the uv handles and the `state` and `cancelled` fields of
 * requests. A request is written by one thread at a time: by the ledger thread in steps 1 and
 * 3, by one worker in step 2, by the loop thread before sealing and after completion; the
 * hand-overs go through the mutex, which orders the writes. */
#include "pool.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "digest.h"
#include "err.h"
#include "ledger.h"
#include "log.h"
#include "queue.h"
#include "testhook.h"

#define DEFAULT_BATCH_MAX 32
#define DEFAULT_LINGER_MS 5
#define DEFAULT_QUEUE_MAX 4096
#define MAX_BATCH 4096
#define MAX_WORKERS 256

/* Backoff of a worker waiting for the HSM to come back. */
#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 2000

/* Requests one ledger round (one transaction, one fsync) takes on at most, unless a single
 * batch is larger. */
#define ROUND_MAX 1024

/* A random serial that collides with a recorded one is drawn again this many times. */
#define SERIAL_TRIES 4

/* Why signing pauses: the HSM (workers cannot sign) or the ledger's storage (nothing can be
 * recorded: a full disk, an I/O error, a lock held too long). Either holds every board in
 * the queue until it ends; both may hold at once. */
enum pause_cause {
	PAUSE_HSM,
	PAUSE_LEDGER,
	PAUSE_CAUSES,
};

/* Where a request is, as the loop thread sees it. */
enum req_state {
	RS_NEW,    /* not submitted */
	RS_OPEN,   /* in the open batch (loop thread) */
	RS_SEALED, /* in a sealed batch, with the threads */
	RS_DONE,   /* completed: the caller's again */
};

struct pool_batch {
	struct pool_batch *next;  /* ledger job queue */
	struct st_sign_req *reqs; /* members still in the batch (batch_next) */
	unsigned size;            /* members when sealed (then: those that passed step 0) */
	unsigned to_check;        /* members not yet through step 0 */
	unsigned to_sign;         /* members not yet through step 2 */
	int step;                 /* 0: CSR checks, 1: lookups and intents, 3: record */
};

enum op_kind {
	OP_DELIVERED,
	OP_FAILED,
	OP_SEQUENCE,
	OP_SEQUENCE_CHECK,
	OP_AUTH_SYNC,
	OP_ATTEMPT,
};

struct pool_op {
	struct pool_op *next;
	enum op_kind kind;
	int64_t row_id;
	char *text; /* failure reason, sequence prefix, or the device id a sequence checks */
	char *slot; /* OP_SEQUENCE_CHECK: the slot, for the flag */
	struct st_auth_set *auths;          /* OP_AUTH_SYNC: a reference */
	struct st_ledger_attempt *attempt;  /* OP_ATTEMPT: one allocation with its strings */
	st_ledger_op_cb cb;
	void *arg;
	int rc;
	char err[256];
	uint64_t value;
};

struct pool_worker {
	struct st_pool *pool;
	unsigned idx;
	pthread_t th;
	int started; /* the thread exists (join it) */
	void *sess;
	struct st_issuer *issuer;
	int rc; /* startup result */
	char err[256];
};

/* The pool's face as the ledger's update queue (ledger_queue.h). */
struct st_ledger_queue {
	struct st_pool *pool;
};

struct st_pool {
	uv_loop_t *loop;
	/* The threads wake the loop through an eventfd of the pool's own rather than a
	 * uv_async_t: uv_async_send() keeps its handle busy across its write(), and a loop
	 * woken meanwhile spins (then yields) until it returns: about one spin in four
	 * boards on a loaded machine. */
	uv_poll_t wake;
	int wake_fd;
	uv_timer_t timer;
	int handles; /* uv handles not yet closed */
	const struct st_ca *ca;
	struct drv_signer *signer;
	unsigned nworkers, batch_max, linger_ms, queue_max, mark_delay_ms;
	char *station;
	char *ledger_path;

	/* Loop thread only. */
	struct st_sign_req *open_head, *open_tail;
	unsigned open_n;
	unsigned in_pool;   /* submitted, not yet completed */
	unsigned ops_out;   /* operations not yet called back */
	int held;           /* the wake handle is referenced (work outstanding) */
	int closing;
	int finished;       /* threads joined, handles closing */
	st_pool_status_cb status_cb;
	void *status_arg;
	st_pool_room_cb room_cb;
	void *room_arg;
	int told_paused;    /* what the status callback last heard */
	unsigned told_causes;
	void (*close_cb)(void *arg);
	void *close_arg;

	pthread_mutex_t lock;
	pthread_cond_t work_cond;   /* workers: requests to sign, resume, stop */
	pthread_cond_t ledger_cond; /* ledger thread: jobs and operations, stop */
	pthread_cond_t start_cond;  /* st_pool_new: thread startup */
	/* Under lock. */
	struct st_sign_req *check_head, *check_tail; /* step 0, ahead of the sign queue */
	struct st_sign_req *sign_head, *sign_tail;
	struct pool_batch *jobs_head, *jobs_tail;
	struct pool_op *ops_head, *ops_tail;
	struct pool_op *marks_head, *marks_tail; /* marks and attempts waiting for a commit
						  * to ride with (op_rides) */
	uint64_t marks_since;   /* uv_hrtime() when the oldest of them was queued */
	struct st_sign_req *res_head, *res_tail;
	struct st_sign_req *acc_head, *acc_tail; /* accepted() due on the loop */
	struct pool_op *opres_head, *opres_tail;
	unsigned inflight;      /* sealed batches not yet finished */
	unsigned ahead;         /* of those, batches not yet through their intents (step 0 or
				 * 1): only behind one of them does a new batch gather */
	int stopping;           /* threads: finish up and exit */
	int wake_ready;         /* wake_fd may be written to */
	int wake_sent;          /* wake_fd written to since the loop last took the results */
	unsigned starting;      /* threads that have not reported their start yet */
	int start_rc;
	char start_err[256];
	unsigned workers_running;
	unsigned sessionless;   /* workers waiting for their HSM session to open again */
	int ledger_running;
	unsigned long resume_gen; /* bumped when a cause of a pause ends: wakes waiting threads */
	unsigned pause_causes;    /* PAUSE_* bits: why signing waits (stats.paused: any) */
	char pause_why[PAUSE_CAUSES][256]; /* each cause's reason, while it holds */
	struct st_pool_stats stats;

	struct st_ledger_queue lq;
	struct st_ledger *ledger; /* ledger thread only */
	/* Fault hook for tests (hostapd's TEST_FAIL idea): STATION_TEST_FAIL=
	 * "pool.kill_after_intents:N" kills the process with SIGKILL once the N-th commit
	 * that wrote intents is durable, before any of their certificates is recorded, as
	 * a crash there would (intents "possibly signed", holding their units). Ledger thread
	 * only; 0: not armed. */
	unsigned long test_kill_intents;
	pthread_t ledger_th;
	int ledger_started;
	struct pool_worker *workers;
};

/* ---- Requests ----------------------------------------------------------------------- */

struct st_sign_req *st_sign_req_new(void)
{
	return calloc(1, sizeof(struct st_sign_req));
}

void st_sign_req_free(struct st_sign_req *req)
{
	if (!req)
		return;
	st_csr_free(req->csr);
	free(req->csr_raw);
	st_cert_free(req->cert);
	st_auth_set_unref(req->auths);
	free(req->cancel_reason);
	free(req);
}


/* Sets rc and the message. The message is the cause alone: whoever reports it names the
 * slot and the device (a slot's log line, an HTTP answer to the device itself, a ledger row
 * with its own columns), and a prefix here would make them say it twice. */
static void req_fail(struct st_sign_req *r, int rc, const char *msg)
{
	r->rc = rc;
	st_msgf(r->err, sizeof(r->err), "%s", msg);
}

/* ---- Issuing ----------------------------------------------------------------------- */

/* Issues r's certificate on worker w, with the serial its intent row names. */
static int issue(struct pool_worker *w, struct st_sign_req *r, char *err, size_t errlen)
{
	return st_issue_with_serial(w->issuer, r->policy, r->csr, r->device_id, r->serial_hex,
				    r->now, &r->cert, err, errlen);
}

/* Step 0 for one request: its CSR as received, checked as the loop thread would have. A CSR
 * that fails completes with the check's code and message as they are (the caller names the
 * field, the value found and the one expected to the board or the device). */
static void check_csr(struct st_pool *pool, struct st_sign_req *r)
{
	int rc;

	rc = st_csr_check(r->policy, pool->ca->ou, r->csr_raw, r->csr_raw_len, r->device_id,
			  &r->csr, r->err, sizeof(r->err));
	if (rc < 0) {
		r->rc = rc;
		r->csr_rejected = 1;
		return;
	}
	free(r->csr_raw);
	r->csr_raw = NULL;
	r->csr_raw_len = 0;
}

/* ---- Handing results to the loop ---------------------------------------------------- */

/* Makes wake_fd readable: the loop runs on_wake. */
static void wake_loop(struct st_pool *pool)
{
	uint64_t one = 1;

	/* EAGAIN (the counter is full) wakes the loop all the same. */
	while (write(pool->wake_fd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

/* Whether the loop needs waking for what was just queued for it: the caller does it with
 * wake_loop() once it has let go of the lock, which the woken loop takes at once. Lock
 * held. */
static int notify_due_locked(struct st_pool *pool)
{
	if (!pool->wake_ready || pool->wake_sent)
		return 0;
	pool->wake_sent = 1;
	return 1;
}

/* Wakes the loop to take what was queued for it (on_wake). Lock held. */
static void notify_locked(struct st_pool *pool)
{
	if (notify_due_locked(pool))
		wake_loop(pool);
}

/* Queues a finished request for its completion on the loop thread. Lock held. */
static void push_result_locked(struct st_pool *pool, struct st_sign_req *r)
{
	ST_QUEUE_PUSH(pool->res_head, pool->res_tail, r, q_next);
}

/* Wakes a worker for each of n new requests, not every idle worker for one (those with
 * nothing to take would only contend for the lock), unless a worker waits for its HSM
 * session: it can check a CSR but not sign, and must not take a wake-up meant for a worker
 * that can. Lock held. */
static void wake_workers_locked(struct st_pool *pool, unsigned n)
{
	if (pool->sessionless || n >= pool->nworkers) {
		pthread_cond_broadcast(&pool->work_cond);
		return;
	}
	while (n--)
		pthread_cond_signal(&pool->work_cond);
}

static void push_job_locked(struct st_pool *pool, struct pool_batch *b)
{
	ST_QUEUE_PUSH(pool->jobs_head, pool->jobs_tail, b, next);
	pthread_cond_signal(&pool->ledger_cond);
}

/* A member of a batch is through step 2 (signed, failed or abandoned); the last one sends
 * the batch to step 3. Lock held. */
static void item_done_locked(struct st_pool *pool, struct st_sign_req *r)
{
	struct pool_batch *b = r->batch;

	if (--b->to_sign == 0) {
		b->step = 3;
		push_job_locked(pool, b);
	}
}

/* Gives up a request that was not signed because the pool is shutting down. Lock held. */
static void abandon_locked(struct st_pool *pool, struct st_sign_req *r, const char *why)
{
	char msg[200];

	st_msgf(msg, sizeof(msg), "not signed: %s", why);
	req_fail(r, ST_E_POOL_CLOSED, msg);
	item_done_locked(pool, r);
}

static void sign_push_locked(struct st_pool *pool, struct st_sign_req *r, int at_head)
{
	if (at_head)
		ST_QUEUE_PUSH_FRONT(pool->sign_head, pool->sign_tail, r, q_next);
	else
		ST_QUEUE_PUSH(pool->sign_head, pool->sign_tail, r, q_next);
}

static struct st_sign_req *sign_pop_locked(struct st_pool *pool)
{
	struct st_sign_req *r;

	ST_QUEUE_POP(pool->sign_head, pool->sign_tail, r, q_next);
	return r;
}

static struct st_sign_req *check_pop_locked(struct st_pool *pool)
{
	struct st_sign_req *r;

	ST_QUEUE_POP(pool->check_head, pool->check_tail, r, q_next);
	return r;
}

/* Step 0 of a member is done (its CSR checked, or given up); the last one sends the batch on
 * to its intents without the members whose check failed: those complete now, before
 * anything of them reaches the ledger. Returns 1 when the loop is to be woken (wake_loop),
 * once the caller lets go of the lock. Lock held. */
static int check_done_locked(struct st_pool *pool, struct st_sign_req *r)
{
	struct pool_batch *b = r->batch;
	struct st_sign_req *m, *next, *keep = NULL, **tail = &keep;
	unsigned n = 0;

	if (--b->to_check)
		return 0;
	for (m = b->reqs; m; m = next) {
		next = m->batch_next;
		m->batch_next = NULL;
		if (m->rc == 0 && pool->stopping)
			req_fail(m, ST_E_POOL_CLOSED, "not signed: the station is shutting down");
		if (m->rc < 0) {
			m->batch = NULL;
			push_result_locked(pool, m);
			continue;
		}
		*tail = m;
		tail = &m->batch_next;
		n++;
	}
	b->reqs = keep;
	b->size = n;
	if (keep) {
		b->step = 1;
		push_job_locked(pool, b);
	} else {
		pool->inflight--;
		pool->ahead--;
		free(b);
		/* A ledger thread that waits for the last batch to end at close. */
		pthread_cond_signal(&pool->ledger_cond);
	}
	return notify_due_locked(pool);
}

/* ---- Ledger thread ------------------------------------------------------------------ */

static void pause_locked(struct st_pool *pool, enum pause_cause cause, const char *reason);
static void resume_locked(struct st_pool *pool, enum pause_cause cause);

/* A certificate from a ledger row, in the one allocation st_cert_free() releases. */
static struct st_cert *cert_from_row(const struct st_ledger_row *row)
{
	struct st_cert *c;

	if (!row->cert_der || !row->cert_len)
		return NULL;
	c = malloc(sizeof(*c) + row->cert_len);
	if (!c)
		return NULL;
	c->der = (uint8_t *)(c + 1);
	memcpy(c->der, row->cert_der, row->cert_len);
	c->der_len = row->cert_len;
	st_msgf(c->serial_hex, sizeof(c->serial_hex), "%s", row->serial ? row->serial : "");
	c->not_before = row->not_before;
	c->not_after = row->not_after;
	return c;
}

/* Whether a ledger error ends the whole transaction (the disk or the database, not this
 * one row: a refused row leaves the transaction open and usable). */
static int ledger_fatal(int rc)
{
	return rc == ST_E_LEDGER_IO || rc == ST_E_LEDGER_BUSY || rc == ST_E_LEDGER_CORRUPT ||
	       rc == ST_E_LEDGER_OPEN || rc == ST_E_LEDGER_VERSION || rc == ST_E_LEDGER_SQL ||
	       rc == ST_E_NOMEM;
}

/* Whether a fatal ledger error is the ledger's storage rather than anything a request
 * carried: a full disk, an I/O error, a file system gone read-only, a lock another process
 * held too long. Signing pauses and the round is tried again until its commit works. */
static int ledger_outage(int rc)
{
	return rc == ST_E_LEDGER_IO || rc == ST_E_LEDGER_BUSY || rc == ST_E_LEDGER_OPEN;
}

/* Refuses r: rc and message, counted as refused, and a row in the ledger's flags table for
 * whoever looks into duplicates later. Returns 0 or a fatal ledger error. */
static int refuse(struct st_pool *pool, struct st_sign_req *r, int rc, const char *msg)
{
	char err[ST_ERR_MAX] = "";
	int frc;

	req_fail(r, rc, msg);
	r->refused = 1;
	frc = st_ledger_flag(pool->ledger, r->device_id, r->csr->spki_sha256,
			     r->slot[0] ? r->slot : NULL, r->err, err, sizeof(err));
	if (frc < 0 && ledger_fatal(frc)) {
		req_fail(r, frc, err);
		return frc;
	}
	return 0;
}

/* Inserts the intent row of r for the serial r->serial_hex; *id gets the row. */
static int add_intent_serial(struct st_pool *pool, struct st_sign_req *r, int64_t *id,
			     char *err, size_t errlen)
{
	struct st_ledger_row in;

	memset(&in, 0, sizeof(in));
	in.serial = r->serial_hex;
	in.device_id = r->device_id;
	in.profile = r->profile[0] ? r->profile : NULL;
	in.station = pool->station;
	in.slot = r->slot[0] ? r->slot : NULL;
	memcpy(in.csr_sha256, r->csr->csr_sha256, sizeof(in.csr_sha256));
	memcpy(in.pubkey_sha256, r->csr->spki_sha256, sizeof(in.pubkey_sha256));
	in.state = ST_LEDGER_INTENT;
	if (r->auth_id[0])
		return st_ledger_add_intent_auth(pool->ledger, &in, r->auth_id, id, &r->auth_used,
						 &r->auth_units, err, errlen);
	return st_ledger_add_intent(pool->ledger, &in, id, err, errlen);
}

/* Inserts the intent row of r with a fresh serial (r->serial_hex); *id gets the row. */
static int add_intent(struct st_pool *pool, struct st_sign_req *r, int64_t *id, char *err,
		      size_t errlen)
{
	int rc, tries;

	for (tries = 0; tries < SERIAL_TRIES; tries++) {
		rc = st_issue_make_serial(r->policy, r->device_id, r->serial_hex, err, errlen);
		if (rc < 0)
			return rc;
		rc = add_intent_serial(pool, r, id, err, errlen);
		/* Two random serials collide about never, but a collision must not refuse a
		 * board; a UUID serial is the same every time and is refused. */
		if (rc != ST_E_LEDGER_DUP_SERIAL || r->policy->serial_mode == ST_SERIAL_UUID)
			break;
	}
	return rc;
}

/* Records a in the ledger the first time this pool meets it (registered: 1), or learns that
 * the ledger holds another document under its id (registered: -1, refused for good).
 * Returns 0 or a negative code; ST_E_AUTH_CONFLICT for a refused one. */
static int auth_register(struct st_pool *pool, struct st_auth *a, char *err, size_t errlen)
{
	struct st_ledger_auth la;
	int64_t used = 0;
	int rc, state = atomic_load(&a->registered);

	if (state == 1)
		return 0;
	if (state < 0)
		return st_errf(err, errlen, ST_E_AUTH_CONFLICT,
			       "authorization %s (%s) conflicts with the ledger's record", a->id,
			       a->path ? a->path : "?");
	memset(&la, 0, sizeof(la));
	la.id = a->id;
	memcpy(la.doc_sha256, a->doc_sha256, sizeof(la.doc_sha256));
	la.units = a->units;
	la.lot = a->lot;
	la.not_before = a->not_before;
	la.not_after = a->not_after;
	rc = st_ledger_auth_register(pool->ledger, &la, &used, err, errlen);
	if (rc == ST_E_AUTH_CONFLICT) {
		atomic_store(&a->registered, -1);
		st_err("%s: %s: refused", a->path ? a->path : a->id, err);
	} else if (rc == 0) {
		atomic_store(&a->used_seen, used);
		atomic_store(&a->registered, 1);
	}
	return rc;
}

/* Says once, when an authorization's units run low or out. Ledger thread. */
static void auth_note_count(struct st_auth *a, int64_t used)
{
	int64_t before = atomic_exchange(&a->used_seen, used), left = a->units - used;
	int64_t warn = st_auth_warn_below(a);

	if (before >= 0 && a->units - before > warn && left <= warn && left > 0)
		st_warn("authorization %s (lot %s): %lld of %lld units left", a->id, a->lot,
			(long long)left, (long long)a->units);
	if (before >= 0 && a->units - before > 0 && left <= 0)
		st_warn("authorization %s (lot %s): all %lld units are used", a->id, a->lot,
			(long long)a->units);
}

#define MAX_AUTH_CANDIDATES 64

/* The intent of r with a unit of the first authorization that has one left, among those
 * that apply to its SKU now (st_auth_set_pick). Returns 0 (r->auth_id names it) or a
 * negative code with err: ST_E_AUTH_* when no unit can be had. */
static int add_intent_authorized(struct st_pool *pool, struct st_sign_req *r, int64_t *id,
				 char *err, size_t errlen)
{
	struct st_auth *cand[MAX_AUTH_CANDIDATES];
	char why[256] = "";
	int n, rc = ST_E_AUTH_EXHAUSTED, tries;

	n = st_auth_set_pick(r->auths, r->profile, r->now, cand, MAX_AUTH_CANDIDATES, err,
			     errlen);
	if (n < 0)
		return n;
	for (int i = 0; i < n; i++) {
		/* A registration rolled back with a failed round is made again. */
		for (tries = 0; tries < 2; tries++) {
			rc = auth_register(pool, cand[i], err, errlen);
			if (rc < 0)
				break;
			st_msgf(r->auth_id, sizeof(r->auth_id), "%s", cand[i]->id);
			rc = add_intent(pool, r, id, err, errlen);
			if (rc != ST_E_NOTFOUND)
				break;
			atomic_store(&cand[i]->registered, 0);
		}
		if (rc == 0) {
			auth_note_count(cand[i], r->auth_used);
			return 0;
		}
		r->auth_id[0] = 0;
		if (rc == ST_E_AUTH_EXHAUSTED) {
			auth_note_count(cand[i], cand[i]->units);
			st_msgf(why, sizeof(why), "%s of lot %s: all %lld units used", cand[i]->id,
				cand[i]->lot, (long long)cand[i]->units);
			continue;
		}
		if (rc != ST_E_AUTH_CONFLICT)
			return rc;
	}
	if (rc == ST_E_AUTH_CONFLICT && !why[0])
		return rc;
	return st_errf(err, errlen, ST_E_AUTH_EXHAUSTED,
		       "no unit left for SKU %s: %d authorization%s apply, the last %s", r->profile,
		       n, n == 1 ? "" : "s", why);
}

/* For a reissue that r authenticated by a certificate of the device id alone
 * (r->id_by_cert): whether that certificate is the id's current one, the certificate of its
 * newest live row. An older certificate of the device (replaced by a reissue, perhaps
 * because it was stolen) must not take the id back. Returns 1 (current), 0 (not: msg says
 * why) or the ledger's negative code with r failed. Ledger thread, inside
 * the round's transaction, after the lookup of the same id. */
static int cert_is_current(struct st_pool *pool, struct st_sign_req *r, char *msg,
			   size_t msglen)
{
	struct st_ledger_row *cur = NULL;
	char err[ST_ERR_MAX] = "", now[128];
	uint8_t d[32];
	int rc;

	rc = st_ledger_newest(pool->ledger, r->device_id, &cur, err, sizeof(err));
	if (rc < 0) {
		req_fail(r, rc, err);
		return rc;
	}
	if (cur && cur->cert_der) {
		st_digest(ST_SHA256, cur->cert_der, cur->cert_len, d);
		rc = memcmp(d, r->id_cert_sha256, sizeof(d)) == 0;
	}
	if (rc == 1) {
		st_ledger_row_free(cur);
		return 1;
	}
	if (!cur)
		st_msgf(now, sizeof(now), "the ledger has no live row of it");
	else
		st_msgf(now, sizeof(now), "%s %s, ledger row %lld",
			cur->cert_der ? "its current one is serial" :
					"its newest row is an intent for serial",
			cur->serial, (long long)cur->id);
	st_msgf(msg, msglen,
		"recorded with another key, and the client certificate presented (serial %s) is "
		"not the device's current one (%s); profile %s reissues only to authenticated "
		"requests (secure-element id, token, the device's current certificate); refused "
		"and flagged",
		r->id_cert_serial[0] ? r->id_cert_serial : "?", now,
		r->profile[0] ? r->profile : "(default)");
	st_ledger_row_free(cur);
	return 0;
}

/* Step 1 for one request: what the ledger knows, and the intent when it is to be signed.
 * Returns 1 (sign it), 0 (decided: r->rc says how) or a fatal ledger error. */
static int lookup_one(struct st_pool *pool, struct st_sign_req *r)
{
	struct st_ledger_row *row = NULL;
	char err[ST_ERR_MAX] = "", msg[ST_ERR_MAX];
	int64_t id = 0;
	int verdict, rc;

	verdict = st_ledger_lookup(pool->ledger, r->device_id, r->csr->spki_sha256, &row, err,
				   sizeof(err));
	if (verdict < 0) {
		req_fail(r, verdict, err);
		rc = ledger_fatal(verdict) ? verdict : 0;
		goto out;
	}
	switch (verdict) {
	case ST_LEDGER_RECORDED:
		/* The board came back (power cut, crash, swapped fixture): the same
		 * certificate again, never a second one for the same key. */
		r->cert = cert_from_row(row);
		if (!r->cert) {
			st_msgf(msg, sizeof(msg), "out of memory giving out the recorded "
			     "certificate of ledger row %lld", (long long)row->id);
			req_fail(r, ST_E_NOMEM, msg);
			rc = 0;
			goto out;
		}
		r->row_id = row->id;
		r->reused = 1;
		r->rc = 0;
		rc = 0;
		goto out;
	case ST_LEDGER_KEY_REUSED:
		st_msgf(msg, sizeof(msg), "public key is already recorded for device %s (serial "
		     "%s, ledger row %lld); refused and flagged", row->device_id, row->serial,
		     (long long)row->id);
		rc = refuse(pool, r, ST_E_POOL_KEY_REUSED, msg);
		goto out;
	case ST_LEDGER_ID_OTHER_KEY:
		if (r->policy->reprovision == ST_REPROVISION_REISSUE && r->id_authenticated &&
		    r->id_by_cert) {
			rc = cert_is_current(pool, r, msg, sizeof(msg));
			if (rc < 0) {
				rc = ledger_fatal(rc) ? rc : 0;
				goto out;
			}
			if (rc == 0) {
				rc = refuse(pool, r, ST_E_POOL_REISSUE_UNAUTH, msg);
				goto out;
			}
			break;
		}
		if (r->policy->reprovision == ST_REPROVISION_REISSUE && r->id_authenticated)
			break;
		if (r->policy->reprovision == ST_REPROVISION_REISSUE) {
			/* Anyone can name a device id: a new certificate for an id recorded
			 * with another key goes only to a requester that proved the id is its
			 * own, or it would impersonate that device. */
			st_msgf(msg, sizeof(msg), "recorded with another key (ledger row %lld); "
			     "profile %s reissues only to authenticated requests (secure-element "
			     "id, token, the device's certificate); refused and flagged",
			     (long long)row->id, r->profile[0] ? r->profile : "(default)");
			rc = refuse(pool, r, ST_E_POOL_REISSUE_UNAUTH, msg);
			goto out;
		}
		st_msgf(msg, sizeof(msg), "device id already has %s %s (ledger row %lld) for a "
		     "different public key; profile %s refuses reprovisioning; refused and "
		     "flagged", row->state == ST_LEDGER_INTENT ? "an intent for serial" :
		     "certificate", row->serial, (long long)row->id,
		     r->profile[0] ? r->profile : "(default)");
		rc = refuse(pool, r, ST_E_POOL_ID_OTHER_KEY, msg);
		goto out;
	default:
		break;
	}

	if (r->policy->authorization_required)
		rc = add_intent_authorized(pool, r, &id, err, sizeof(err));
	else
		rc = add_intent(pool, r, &id, err, sizeof(err));
	if (rc == 0) {
		r->row_id = id;
		rc = 1;
	} else if (ledger_fatal(rc)) {
		req_fail(r, rc, err);
	} else if (rc == ST_E_LEDGER_DUP_SERIAL || rc == ST_E_LEDGER_DUP_KEY ||
		   rc == ST_E_LEDGER_DUP_ID) {
		rc = refuse(pool, r, rc, err);
	} else {
		req_fail(r, rc, err);
		rc = 0;
	}
out:
	st_ledger_row_free(row);
	return rc;
}

/* Step 1 of batch b inside the round's transaction: lookups and intents. Returns 0 or a
 * fatal ledger error (with its message in err). */
static int intents_do(struct st_pool *pool, struct pool_batch *b, char *err, size_t errlen)
{
	struct st_sign_req *r;
	int rc;

	for (r = b->reqs; r; r = r->batch_next)
		r->sign_it = -1;
	for (r = b->reqs; r; r = r->batch_next) {
		/* Afresh: a round that was rolled back is done again from the start. */
		r->rc = 0;
		r->err[0] = 0;
		r->row_id = 0;
		r->reused = 0;
		r->refused = 0;
		st_cert_free(r->cert);
		r->cert = NULL;
		r->auth_id[0] = 0;
		rc = lookup_one(pool, r);
		if (rc < 0) {
			st_msgf(err, errlen, "%s", r->err);
			return rc;
		}
		r->sign_it = rc;
	}
	return 0;
}

/* After the round's rollback (fatal): nothing of batch b is signed. The intents are gone;
 * what was decided from rows committed earlier (recorded certificates, refusals) still
 * holds. Before the lock. */
static void intents_failed(struct pool_batch *b, int fatal, const char *err)
{
	struct st_sign_req *r;
	char msg[300];

	st_msgf(msg, sizeof(msg), "not signed: the ledger failed: %s", err);
	for (r = b->reqs; r; r = r->batch_next) {
		if (r->sign_it == 0)
			continue;
		r->sign_it = 0;
		r->row_id = 0;
		r->auth_id[0] = 0;
		r->rc = fatal;
		st_msgf(r->err, sizeof(r->err), "%s", msg);
	}
}

/* After the round's commit or rollback (intents_failed): the members to sign go to the
 * workers, the others complete. Lock held. */
static void intents_finish_locked(struct st_pool *pool, struct pool_batch *b, uint64_t now)
{
	struct st_sign_req *r, *next, *keep = NULL, **tail = &keep;

	pool->ahead--;
	b->to_sign = 0;
	for (r = b->reqs; r; r = next) {
		next = r->batch_next;
		r->batch_next = NULL;
		r->t.intent = now;
		if (r->sign_it == 1) {
			*tail = r;
			tail = &r->batch_next;
			b->to_sign++;
			if (r->accepted)
				ST_QUEUE_PUSH(pool->acc_head, pool->acc_tail, r, acc_next);
		} else {
			r->batch = NULL;
			push_result_locked(pool, r);
		}
	}
	b->reqs = keep;
	for (r = keep; r; r = r->batch_next)
		sign_push_locked(pool, r, 0);
	if (pool->stopping) {
		/* Nobody will sign them: their intents are marked failed in step 3. */
		while ((r = sign_pop_locked(pool)))
			abandon_locked(pool, r, "the station is shutting down");
	}
	if (!keep) {
		pool->inflight--;
		free(b);
	} else {
		wake_workers_locked(pool, b->to_sign);
	}
}

/* Records r's certificate on its intent row. Inside the round's transaction. */
static int record_one(struct st_pool *pool, struct st_sign_req *r, char *err, size_t errlen)
{
	/* st_issue_with_serial() put the intent's serial in the certificate; a certificate
	 * whose serial the ledger does not name must never leave the station. */
	if (strcmp(r->cert->serial_hex, r->serial_hex) != 0)
		return st_errf(err, errlen, ST_E_INTERNAL,
			       "certificate serial %s is not the intent's serial %s",
			       r->cert->serial_hex, r->serial_hex);
	return st_ledger_set_cert(pool->ledger, r->row_id, r->cert->der, r->cert->der_len,
				  r->cert->not_before, r->cert->not_after, err, errlen);
}

/* Step 3 of batch b inside the round's transaction: every certificate of the batch, and the
 * reasons of those that failed after their intent. Returns 0 or a fatal ledger error. */
static int record_do(struct st_pool *pool, struct pool_batch *b, char *err, size_t errlen)
{
	struct st_sign_req *r;
	int rc;

	for (r = b->reqs; r; r = r->batch_next) {
		r->unrecorded = 0;
		if (r->rc < 0) {
			rc = st_ledger_mark_failed(pool->ledger, r->row_id, r->err, err, errlen);
			if (ledger_fatal(rc))
				return rc;
			if (rc < 0)
				st_warn("pool: ledger row %lld: %s", (long long)r->row_id, err);
			continue;
		}
		rc = record_one(pool, r, err, errlen);
		if (ledger_fatal(rc))
			return rc;
		if (rc < 0) {
			/* This row only (say, superseded meanwhile by the same board on another
			 * slot): not recorded, so the certificate does not leave the station. The
			 * request fails once the round is committed (a round rolled back is done
			 * again, and must find the request as it was). */
			r->unrecorded = rc;
			st_msgf(r->err, sizeof(r->err), "certificate %s was signed but could not "
				"be recorded, so it is not given out: %s", r->cert->serial_hex, err);
		}
	}
	return 0;
}

/* After the round's commit or rollback: the certificates that are not given out are
 * dropped. Before the lock. */
static void record_settle(struct pool_batch *b, int fatal, const char *err)
{
	struct st_sign_req *r;
	char msg[ST_ERR_MAX];

	if (fatal) {
		/* The intents stay: "possibly signed" rows, which a board that comes back
		 * supersedes. No certificate of this batch leaves the station. */
		for (r = b->reqs; r; r = r->batch_next) {
			if (r->rc < 0)
				continue;
			st_msgf(msg, sizeof(msg), "certificate %s was signed but could not be "
			     "recorded, so it is not given out: %s",
			     r->cert ? r->cert->serial_hex : "?", err);
			st_cert_free(r->cert);
			r->cert = NULL;
			req_fail(r, fatal, msg);
		}
	}
	for (r = b->reqs; r; r = r->batch_next) {
		if (!r->unrecorded || r->rc < 0)
			continue;
		st_msgf(msg, sizeof(msg), "%s", r->err);
		st_cert_free(r->cert);
		r->cert = NULL;
		req_fail(r, r->unrecorded, msg);
	}
}

/* Only now do the batch's requests complete (record_settle first). Lock held. */
static void record_finish_locked(struct st_pool *pool, struct pool_batch *b, uint64_t now)
{
	struct st_sign_req *r, *next;

	for (r = b->reqs; r; r = next) {
		next = r->batch_next;
		r->batch_next = NULL;
		r->batch = NULL;
		if (r->rc == 0)
			r->t.recorded = now;
		push_result_locked(pool, r);
	}
	pool->inflight--;
	free(b);
}

/* OP_SEQUENCE_CHECK: whether the ledger issued the sequence device id a board reports (its
 * number from 1 to below the sequence's next): 0, or ST_E_SLOT_ID_UNISSUED with the message
 * the board's run fails with. One it did not issue is flagged: a board that names a number
 * ahead of the counter would otherwise take it from the board it is later given to. */
static int sequence_check(struct st_pool *pool, struct pool_op *op)
{
	size_t plen = (size_t)op->row_id;
	char *prefix = strndup(op->text, plen), *end;
	unsigned long long n;
	char reason[160];
	int rc;

	if (!prefix)
		return st_errf(op->err, sizeof(op->err), ST_E_NOMEM, "out of memory");
	rc = st_ledger_sequence_next(pool->ledger, prefix, &op->value, op->err,
				     sizeof(op->err));
	free(prefix);
	if (rc < 0)
		return rc;
	errno = 0;
	n = strtoull(op->text + plen, &end, 10);
	if (errno || *end || end == op->text + plen || n == 0 || n >= op->value) {
		st_msgf(reason, sizeof(reason),
			"sequence device id not issued by this ledger (its next number is %" PRIu64
			")",
			op->value);
		rc = st_ledger_flag(pool->ledger, op->text, NULL, op->slot, reason, op->err,
				    sizeof(op->err));
		if (ledger_fatal(rc))
			return rc;
		if (rc < 0)
			st_warn("ledger: flag of %s not recorded: %s", op->text, op->err);
		return st_errf(op->err, sizeof(op->err), ST_E_SLOT_ID_UNISSUED,
			       "board reports device id %s, which the ledger never issued: "
			       "sequence %.*s has issued %" PRIu64 " numbers; refused and flagged",
			       op->text, (int)plen, op->text, op->value - 1);
	}
	return 0;
}

/* Queued operations inside the round's transaction, in order; each succeeds or fails on its
 * own. Returns 0 or a fatal ledger error. */
static int ops_do(struct st_pool *pool, struct pool_op *ops, char *err, size_t errlen)
{
	struct pool_op *op;

	for (op = ops; op; op = op->next) {
		switch (op->kind) {
		case OP_DELIVERED:
			op->rc = st_ledger_mark_delivered(pool->ledger, op->row_id, op->err,
							  sizeof(op->err));
			break;
		case OP_FAILED:
			op->rc = st_ledger_mark_failed(pool->ledger, op->row_id, op->text,
						       op->err, sizeof(op->err));
			break;
		case OP_SEQUENCE:
			op->rc = st_ledger_next_sequence(pool->ledger, op->text, &op->value,
							 op->err, sizeof(op->err));
			break;
		case OP_SEQUENCE_CHECK:
			op->rc = sequence_check(pool, op);
			break;
		case OP_AUTH_SYNC:
			op->rc = 0;
			for (size_t i = 0; i < st_auth_set_count(op->auths) && !op->rc; i++) {
				int rc = auth_register(pool, st_auth_set_get(op->auths, i),
						       op->err, sizeof(op->err));

				if (ledger_fatal(rc))
					op->rc = rc;
			}
			break;
		case OP_ATTEMPT:
			op->rc = st_ledger_add_attempt(pool->ledger, op->attempt, op->err,
						       sizeof(op->err));
			if (op->rc < 0 && !ledger_fatal(op->rc))
				st_warn("ledger: attempt not recorded: %s", op->err);
			break;
		}
		if (ledger_fatal(op->rc)) {
			st_msgf(err, errlen, "%s", op->err);
			return op->rc;
		}
	}
	return 0;
}

/* The round's operations go back to the loop. Lock held. */
static void ops_finish_locked(struct st_pool *pool, struct pool_op *ops, int fatal,
			      const char *err)
{
	struct pool_op *op;

	while ((op = ops)) {
		ops = op->next;
		op->next = NULL;
		if (fatal) {
			op->rc = fatal;
			op->value = 0;
			st_msgf(op->err, sizeof(op->err), "ledger: %s", err);
		}
		ST_QUEUE_PUSH(pool->opres_head, pool->opres_tail, op, next);
	}
}

/* A record nobody waits for (a delivered or failed mark, an attempt): it waits for a commit
 * to ride with. */
static int op_rides(const struct pool_op *op)
{
	return !op->cb && (op->kind == OP_DELIVERED || op->kind == OP_FAILED ||
			   op->kind == OP_ATTEMPT);
}

/* Whether step 1 of some batch of jobs wrote an intent (for the fault hook). */
static int new_intents(const struct pool_batch *jobs)
{
	for (const struct pool_batch *b = jobs; b; b = b->next) {
		for (const struct st_sign_req *r = b->reqs; b->step == 1 && r; r = r->batch_next) {
			if (r->sign_it == 1)
				return 1;
		}
	}
	return 0;
}

/* One round of the ledger thread: every job and operation waiting, in one transaction and so
 * one fsync (group commit). The more work piles up while a commit syncs, the more the next
 * commit carries: the ledger keeps up with signing instead of paying one fsync per batch.
 * Returns 0 when committed, else the ledger's error, with which the round's requests and
 * operations fail; except that when the ledger's storage fails (ledger_outage) and may_retry
 * is set, the round is rolled back and nothing of it completes: *again is set, the message is
 * in why, and the caller runs the same round again. */
static int ledger_round(struct st_pool *pool, struct pool_batch *jobs, struct pool_op *ops,
			int may_retry, int *again, char *why, size_t whylen)
{
	struct pool_batch *b, *next;
	struct pool_op *op;
	char err[256] = "";
	int fatal, intents = 0, records = 0, marks = 0, wake;
	uint64_t now;

	fatal = st_ledger_begin(pool->ledger, err, sizeof(err));
	for (b = jobs; b && !fatal; b = b->next) {
		if (b->step == 1) {
			fatal = intents_do(pool, b, err, sizeof(err));
			intents = 1;
		} else {
			fatal = record_do(pool, b, err, sizeof(err));
			records = 1;
		}
	}
	if (!fatal && ops)
		fatal = ops_do(pool, ops, err, sizeof(err));
	if (!fatal)
		fatal = st_ledger_commit(pool->ledger, err, sizeof(err));
	if (fatal) {
		st_ledger_rollback(pool->ledger);
		if (!err[0])
			st_msgf(err, sizeof(err), "%s", st_strerror(fatal));
		if (may_retry && ledger_outage(fatal)) {
			st_msgf(why, whylen, "%s", err);
			*again = 1;
			return fatal;
		}
		st_err("ledger: %s", err);
	}
	now = uv_hrtime();

	if (!fatal && pool->test_kill_intents && new_intents(jobs) &&
	    --pool->test_kill_intents == 0)
		kill(getpid(), SIGKILL);
	for (b = jobs; b; b = b->next) {
		if (b->step != 1)
			record_settle(b, fatal, err);
		else if (fatal)
			intents_failed(b, fatal, err);
	}
	for (op = ops; op && !marks; op = op->next)
		marks = op_rides(op);
	/* The round's outcome reaches the workers and the loop under one taking of the lock,
	 * which the workers and the loop contend for. */
	pthread_mutex_lock(&pool->lock);
	if (!fatal) {
		pool->stats.commits++;
		pool->stats.commits_intent += intents;
		pool->stats.commits_record += records;
		pool->stats.commits_ops += ops != NULL;
		pool->stats.commits_marks += marks;
		/* A commit ends a pause for the ledger's storage. Said in the same turn as the
		 * round's results, so the loop never hears of those before the resume. */
		resume_locked(pool, PAUSE_LEDGER);
	}
	for (b = jobs; b; b = next) {
		next = b->next;
		if (b->step == 1)
			intents_finish_locked(pool, b, now);
		else
			record_finish_locked(pool, b, now);
	}
	ops_finish_locked(pool, ops, fatal, err);
	wake = notify_due_locked(pool);
	pthread_mutex_unlock(&pool->lock);
	if (wake)
		wake_loop(pool);
	return fatal;
}

static void backoff_wait_locked(struct st_pool *pool, pthread_cond_t *cond, unsigned ms);
static void deadline_in(unsigned ms, struct timespec *until);

/* Runs a round until it is committed, or fails it for good. While the ledger's storage fails
 * signing pauses, as for an HSM outage: the round waits (100 ms doubling to 2 s) and is tried
 * again, its boards waiting in the queue and none failed for it, and signing resumes with the
 * first commit that works. Once the pool is stopping the round is tried one last time. */
static void ledger_run_round(struct st_pool *pool, struct pool_batch *jobs, struct pool_op *ops)
{
	unsigned backoff = BACKOFF_FIRST_MS;
	char why[256], reason[300];
	int rc, may_retry, again;

	pthread_mutex_lock(&pool->lock);
	may_retry = !pool->stopping;
	pthread_mutex_unlock(&pool->lock);
	for (;;) {
		again = 0;
		rc = ledger_round(pool, jobs, ops, may_retry, &again, why, sizeof(why));
		if (!again)
			break;
		st_msgf(reason, sizeof(reason), "%s: %s", st_strerror(rc), why);
		pthread_mutex_lock(&pool->lock);
		pause_locked(pool, PAUSE_LEDGER, reason);
		backoff_wait_locked(pool, &pool->ledger_cond, backoff);
		may_retry = !pool->stopping;
		pthread_mutex_unlock(&pool->lock);
		backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
	}
}

/* Batches sealed while the pool shuts down are not started. Lock held. */
static void drop_unstarted_locked(struct st_pool *pool, struct pool_batch **jobs)
{
	struct pool_batch *b, **pp = jobs;
	struct st_sign_req *r;

	while ((b = *pp)) {
		if (b->step != 1) {
			pp = &b->next;
			continue;
		}
		*pp = b->next;
		while ((r = b->reqs)) {
			b->reqs = r->batch_next;
			r->batch_next = NULL;
			r->batch = NULL;
			req_fail(r, ST_E_POOL_CLOSED, "not signed: the station is shutting down");
			push_result_locked(pool, r);
		}
		pool->inflight--;
		pool->ahead--;
		free(b);
		notify_locked(pool);
	}
}

/* With only marks waiting: waits until the oldest is mark_delay_ms old, or until other work
 * or the end comes. Returns 1 when the marks are due. Lock held. */
static int marks_wait_locked(struct st_pool *pool)
{
	uint64_t due = pool->marks_since + (uint64_t)pool->mark_delay_ms * 1000000u;
	uint64_t now = uv_hrtime();
	struct timespec until;

	if (now >= due || pool->stopping)
		return 1;
	deadline_in((unsigned)((due - now + 999999u) / 1000000u), &until);
	pthread_cond_timedwait(&pool->ledger_cond, &pool->lock, &until);
	return uv_hrtime() >= due;
}

static int ledger_outage_wait(void *arg, const char *reason, unsigned ms);
static void ledger_outage_back(void *arg);

/* Opens the ledger. A database server that does not answer (not running yet when the line
 * powers up, restarting, out of reach) does not end the start: the pool starts, signing
 * paused as in an outage (the view and the log say why), boards wait, and the open is tried
 * again (100 ms doubling to 2 s) until it works or the pool stops (*waited set; any error
 * is then waited out, its words in the pause's reason). Any other error ends the start. */
static int ledger_open(struct st_pool *pool, int *waited, char *err, size_t errlen)
{
	unsigned backoff = BACKOFF_FIRST_MS;
	char reason[300];
	int rc, stop;

	*waited = 0;
	for (;;) {
		rc = st_ledger_open(pool->ledger_path, pool->station, &pool->ledger, err, errlen);
		if (rc == 0 || (!*waited && (rc != ST_E_LEDGER_IO ||
					     st_ledger_spec_is_file(pool->ledger_path))))
			return rc;
		pthread_mutex_lock(&pool->lock);
		if (!*waited) {
			*waited = 1;
			st_warn("%s; the station starts, its boards wait for the database", err);
			pool->starting--;
			pthread_cond_broadcast(&pool->start_cond);
		}
		st_msgf(reason, sizeof(reason), "ledger unavailable: %s", err);
		pause_locked(pool, PAUSE_LEDGER, reason);
		backoff_wait_locked(pool, &pool->ledger_cond, backoff);
		stop = pool->stopping;
		pthread_mutex_unlock(&pool->lock);
		if (stop)
			return rc;
		backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
	}
}

/* The pool stopped before the ledger opened: what waits for it ends unsigned, unrecorded.
 * Lock held; released and taken again. */
/* Every operation waiting for the ledger thread: the marks first, in the order they were
 * queued, before operations queued later. Lock held. */
static struct pool_op *take_ops_locked(struct st_pool *pool)
{
	struct pool_op *ops = pool->marks_head;

	if (ops)
		pool->marks_tail->next = pool->ops_head;
	else
		ops = pool->ops_head;
	pool->marks_head = pool->marks_tail = NULL;
	pool->ops_head = pool->ops_tail = NULL;
	return ops;
}

static void drop_waiting_locked(struct st_pool *pool)
{
	struct pool_op *ops;

	drop_unstarted_locked(pool, &pool->jobs_head);
	if (!pool->jobs_head)
		pool->jobs_tail = NULL;
	ops = take_ops_locked(pool);
	if (ops) {
		ops_finish_locked(pool, ops, ST_E_POOL_CLOSED,
				  "the station stopped before the ledger's database answered");
		notify_locked(pool);
	}
}

static void *ledger_main(void *arg)
{
	const struct st_ledger_outage outage = { ledger_outage_wait, ledger_outage_back, arg };
	struct st_pool *pool = arg;
	struct pool_batch *jobs, *b, **tail;
	struct pool_op *ops;
	char err[256] = "";
	unsigned rows;
	int rc, waited;

	rc = ledger_open(pool, &waited, err, sizeof(err));
	pthread_mutex_lock(&pool->lock);
	if (!waited) {
		if (rc < 0 && !pool->start_rc) {
			pool->start_rc = rc;
			st_msgf(pool->start_err, sizeof(pool->start_err), "%s", err);
		}
		pool->starting--;
		pthread_cond_broadcast(&pool->start_cond);
	}
	if (rc < 0) {
		if (waited)
			drop_waiting_locked(pool);
		pool->ledger_running = 0;
		notify_locked(pool);
		pthread_mutex_unlock(&pool->lock);
		return NULL;
	}
	if (waited) {
		st_notice("ledger %s: the database answers; signing resumes", pool->ledger_path);
		resume_locked(pool, PAUSE_LEDGER);
	}
	st_ledger_set_outage(pool->ledger, &outage);
	for (;;) {
		while (!pool->jobs_head && !pool->ops_head &&
		       !(pool->stopping && pool->inflight == 0)) {
			if (!pool->marks_head) {
				pthread_cond_wait(&pool->ledger_cond, &pool->lock);
				continue;
			}
			/* Marks wait for other work to share its commit, but not for long. */
			if (marks_wait_locked(pool))
				break;
		}
		if (!pool->jobs_head && !pool->ops_head && !pool->marks_head)
			break;
		/* Everything waiting, up to ROUND_MAX requests, so that one huge round does not
		 * leave the workers idle while it is written. A round starts at once: waiting up
		 * to half the last round's time for jobs on their way (batches whose last members
		 * were on the workers, or about to be sealed) was measured, 64 slots unpaced and
		 * the registration API: a fifth to a quarter fewer commits, no change in the
		 * ledger thread's CPU a board beyond the machine's noise, and 2-10% fewer
		 * registrations/s at 8 connections, whose requests it held. */
		jobs = NULL;
		tail = &jobs;
		rows = 0;
		while ((b = pool->jobs_head) && (rows == 0 || rows + b->size <= ROUND_MAX)) {
			pool->jobs_head = b->next;
			b->next = NULL;
			*tail = b;
			tail = &b->next;
			rows += b->size;
		}
		if (!pool->jobs_head)
			pool->jobs_tail = NULL;
		ops = take_ops_locked(pool);
		if (pool->stopping)
			drop_unstarted_locked(pool, &jobs);
		pthread_mutex_unlock(&pool->lock);

		if (jobs || ops)
			ledger_run_round(pool, jobs, ops);

		pthread_mutex_lock(&pool->lock);
	}
	pthread_mutex_unlock(&pool->lock);
	st_ledger_close(pool->ledger);
	pool->ledger = NULL;
	pthread_mutex_lock(&pool->lock);
	pool->ledger_running = 0;
	notify_locked(pool);
	pthread_mutex_unlock(&pool->lock);
	return NULL;
}

/* ---- Workers ------------------------------------------------------------------------ */

/* Signer errors that mean the HSM (token, session, login, key) is not usable right now,
 * rather than anything wrong with this request: signing pauses instead of failing boards. */
static int is_outage(int rc)
{
	return rc == ST_E_SIGNER_SESSION || rc == ST_E_SIGNER_DEVICE ||
	       rc == ST_E_SIGNER_TOKEN || rc == ST_E_SIGNER_KEY || rc == ST_E_SIGNER_PIN ||
	       rc == ST_E_SIGNER_MODULE;
}

static void worker_close_session(struct pool_worker *w)
{
	st_issuer_free(w->issuer);
	w->issuer = NULL;
	drv_signer_session_close(w->pool->signer, w->sess);
	w->sess = NULL;
}

static int worker_open_session(struct pool_worker *w, char *err, size_t errlen)
{
	struct st_pool *pool = w->pool;
	int rc;

	rc = drv_signer_session_open(pool->signer, &w->sess, err, errlen);
	if (rc < 0)
		return rc;
	rc = st_issuer_new(pool->ca, pool->signer, w->sess, &w->issuer, err, errlen);
	if (rc < 0) {
		drv_signer_session_close(pool->signer, w->sess);
		w->sess = NULL;
	}
	return rc;
}

/* The reason the operator sees: that of every cause that holds. Lock held. */
static void pause_reason_locked(struct st_pool *pool)
{
	const char *a = pool->pause_causes & (1u << PAUSE_HSM) ? pool->pause_why[PAUSE_HSM] : "";
	const char *b = pool->pause_causes & (1u << PAUSE_LEDGER) ? pool->pause_why[PAUSE_LEDGER] :
								     "";

	st_msgf(pool->stats.pause_reason, sizeof(pool->stats.pause_reason), "%s%s%s", a,
		a[0] && b[0] ? "; " : "", b);
}

/* What a cause that holds says now (an HSM that answers otherwise, a disk full now instead
 * of an I/O error). Lock held. */
static void pause_update_locked(struct st_pool *pool, enum pause_cause cause, const char *reason)
{
	if (!(pool->pause_causes & (1u << cause)))
		return;
	st_msgf(pool->pause_why[cause], sizeof(pool->pause_why[cause]), "%s", reason);
	pause_reason_locked(pool);
}

/* Signing pauses for cause (lock held): said once per cause, with the reason of the first
 * failure. */
static void pause_locked(struct st_pool *pool, enum pause_cause cause, const char *reason)
{
	if (pool->pause_causes & (1u << cause)) {
		pause_update_locked(pool, cause, reason);
		return;
	}
	pool->pause_causes |= 1u << cause;
	st_msgf(pool->pause_why[cause], sizeof(pool->pause_why[cause]), "%s", reason);
	pause_reason_locked(pool);
	if (!pool->stats.paused) {
		pool->stats.paused = 1;
		pool->stats.pauses++;
		pool->stats.paused_since = uv_hrtime();
	}
	st_warn("signing paused: %s", reason);
	notify_locked(pool);
}

/* A cause of the pause has ended (lock held); signing resumes once none holds. */
static void resume_locked(struct st_pool *pool, enum pause_cause cause)
{
	if (!(pool->pause_causes & (1u << cause)))
		return;
	pool->pause_causes &= ~(1u << cause);
	pool->resume_gen++;
	pthread_cond_broadcast(&pool->work_cond);
	pthread_cond_broadcast(&pool->ledger_cond);
	if (pool->pause_causes) {
		pause_reason_locked(pool);
		st_notice("%s works again; signing stays paused: %s",
			  cause == PAUSE_HSM ? "the HSM" : "the ledger", pool->stats.pause_reason);
	} else {
		pool->stats.paused = 0;
		st_notice("signing resumed after %.1f s",
			  (double)(uv_hrtime() - pool->stats.paused_since) / 1e9);
	}
	notify_locked(pool);
}

/* The monotonic time ms from now. */
static void deadline_in(unsigned ms, struct timespec *until)
{
	clock_gettime(CLOCK_MONOTONIC, until);
	until->tv_sec += ms / 1000;
	until->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (until->tv_nsec >= 1000000000L) {
		until->tv_sec++;
		until->tv_nsec -= 1000000000L;
	}
}

/* Waits on cond until *until, or until the pool stops or a cause of the pause ends; with
 * checks set, also until a CSR waits for its check, and then returns 1. Lock held. */
static int wait_until_locked(struct st_pool *pool, pthread_cond_t *cond,
			     const struct timespec *until, int checks)
{
	unsigned long gen = pool->resume_gen;

	while (!pool->stopping && gen == pool->resume_gen) {
		if (checks && pool->check_head)
			return 1;
		if (pthread_cond_timedwait(cond, &pool->lock, until) == ETIMEDOUT)
			break;
	}
	return 0;
}

/* Waits up to ms on cond, or until the pool stops or a cause of the pause ends. Lock held. */
static void backoff_wait_locked(struct st_pool *pool, pthread_cond_t *cond, unsigned ms)
{
	struct timespec until;

	deadline_in(ms, &until);
	wait_until_locked(pool, cond, &until, 0);
}

/* The ledger's database cannot be reached (ledger thread, inside a ledger call): signing
 * pauses as for the HSM, the operator sees what the database says now, and the call waits
 * the backoff before its next attempt. Gives up (non-zero) only when the pool shuts down. */
static int ledger_outage_wait(void *arg, const char *reason, unsigned ms)
{
	struct st_pool *pool = arg;
	char why[300];
	int stop;

	st_msgf(why, sizeof(why), "ledger unavailable: %s", reason);
	pthread_mutex_lock(&pool->lock);
	pause_locked(pool, PAUSE_LEDGER, why);
	backoff_wait_locked(pool, &pool->ledger_cond, ms);
	stop = pool->stopping;
	pthread_mutex_unlock(&pool->lock);
	return stop;
}

static void ledger_outage_back(void *arg)
{
	struct st_pool *pool = arg;

	pthread_mutex_lock(&pool->lock);
	resume_locked(pool, PAUSE_LEDGER);
	pthread_mutex_unlock(&pool->lock);
}

/* Step 0 for the first CSR waiting for its check, if any: returns 1 when there was one.
 * Lock held (dropped during the check). */
static int check_one_locked(struct st_pool *pool)
{
	struct st_sign_req *r = check_pop_locked(pool);

	if (!r)
		return 0;
	pthread_mutex_unlock(&pool->lock);
	check_csr(pool, r);
	pthread_mutex_lock(&pool->lock);
	pool->stats.checked++;
	if (check_done_locked(pool, r)) {
		pthread_mutex_unlock(&pool->lock);
		wake_loop(pool);
		pthread_mutex_lock(&pool->lock);
	}
	return 1;
}

static void *worker_main(void *arg)
{
	struct pool_worker *w = arg;
	struct st_pool *pool = w->pool;
	struct st_sign_req *r;
	unsigned backoff = BACKOFF_FIRST_MS;
	char err[256], reason[256];
	int rc, sessionless;

	w->rc = worker_open_session(w, w->err, sizeof(w->err));
	pthread_mutex_lock(&pool->lock);
	if (w->rc < 0 && !pool->start_rc) {
		pool->start_rc = w->rc;
		st_msgf(pool->start_err, sizeof(pool->start_err), "signing worker %u: %s", w->idx,
			w->err);
	}
	pool->starting--;
	pthread_cond_broadcast(&pool->start_cond);
	if (w->rc < 0)
		goto out;

	for (;;) {
		/* After an outage: reopen the session before taking work again. A CSR's check
		 * needs no HSM, so bad input still gets its answer at once meanwhile. */
		sessionless = !w->issuer;
		pool->sessionless += sessionless;
		while (!w->issuer && !pool->stopping) {
			struct timespec until;

			deadline_in(backoff, &until);
			while (wait_until_locked(pool, &pool->work_cond, &until, 1))
				check_one_locked(pool);
			if (pool->stopping)
				break;
			pthread_mutex_unlock(&pool->lock);
			err[0] = 0;
			rc = worker_open_session(w, err, sizeof(err));
			pthread_mutex_lock(&pool->lock);
			if (rc < 0) {
				/* The operator sees what the HSM says now, not what it said when
				 * the outage began. */
				st_msgf(reason, sizeof(reason), "%s: %s", st_strerror(rc), err);
				pause_update_locked(pool, PAUSE_HSM, reason);
				if (!is_outage(rc))
					st_warn("signing worker %u: %s", w->idx, err);
				backoff *= 2;
				if (backoff > BACKOFF_MAX_MS)
					backoff = BACKOFF_MAX_MS;
			}
		}
		pool->sessionless -= sessionless;
		while (!pool->sign_head && !pool->check_head && !pool->stopping)
			pthread_cond_wait(&pool->work_cond, &pool->lock);
		if (pool->stopping)
			break;
		/* Checks first: their batch waits for them before its intents, while a request
		 * to sign is already on its way. */
		if (check_one_locked(pool))
			continue;
		r = sign_pop_locked(pool);
		pthread_mutex_unlock(&pool->lock);

		r->t.sign_start = uv_hrtime();
		err[0] = 0;
		rc = issue(w, r, err, sizeof(err));
		r->t.sign_end = uv_hrtime();

		pthread_mutex_lock(&pool->lock);
		if (is_outage(rc)) {
			st_cert_free(r->cert);
			r->cert = NULL;
			if (pool->stopping) {
				char why[200];

				st_msgf(why, sizeof(why), "the HSM was unavailable when the station "
					 "shut down (%.150s)", err);
				abandon_locked(pool, r, why);
			} else {
				/* Not this board's fault: it waits at the head of the queue. */
				r->t.sign_start = r->t.sign_end = 0;
				sign_push_locked(pool, r, 1);
				pthread_cond_broadcast(&pool->work_cond);
			}
			st_msgf(reason, sizeof(reason), "%s: %s", st_strerror(rc), err);
			pause_locked(pool, PAUSE_HSM, reason);
			pthread_mutex_unlock(&pool->lock);
			worker_close_session(w);
			pthread_mutex_lock(&pool->lock);
			continue;
		}
		backoff = BACKOFF_FIRST_MS;
		if (rc < 0)
			req_fail(r, rc, err);
		else
			resume_locked(pool, PAUSE_HSM);
		item_done_locked(pool, r);
	}
out:
	pool->workers_running--;
	pthread_mutex_unlock(&pool->lock);
	worker_close_session(w);
	pthread_mutex_lock(&pool->lock);
	notify_locked(pool);
	pthread_mutex_unlock(&pool->lock);
	return NULL;
}

/* ---- Loop side ---------------------------------------------------------------------- */

/* Keeps the loop alive while the pool has work out, and lets it end when idle. */
static void update_hold(struct st_pool *pool)
{
	int want = pool->in_pool > 0 || pool->ops_out > 0 || pool->closing;

	if (want && !pool->held)
		uv_ref((uv_handle_t *)&pool->wake);
	else if (!want && pool->held)
		uv_unref((uv_handle_t *)&pool->wake);
	pool->held = want;
}

/* Frees the pool once its threads are joined and its handles closed (or never started). */
static void pool_free(struct st_pool *pool)
{
	pthread_mutex_destroy(&pool->lock);
	pthread_cond_destroy(&pool->work_cond);
	pthread_cond_destroy(&pool->ledger_cond);
	pthread_cond_destroy(&pool->start_cond);
	if (pool->wake_fd >= 0)
		close(pool->wake_fd);
	free(pool->workers);
	free(pool->station);
	free(pool->ledger_path);
	free(pool);
}

static void on_handle_closed(uv_handle_t *h)
{
	struct st_pool *pool = h->data;
	void (*cb)(void *);
	void *arg;

	if (--pool->handles > 0)
		return;
	cb = pool->close_cb;
	arg = pool->close_arg;
	pool_free(pool);
	if (cb)
		cb(arg);
}

/* Every thread has ended: join them and close the handles. */
static void finish(struct st_pool *pool)
{
	unsigned i;

	pool->finished = 1;
	for (i = 0; i < pool->nworkers; i++) {
		if (pool->workers[i].started)
			pthread_join(pool->workers[i].th, NULL);
	}
	if (pool->ledger_started)
		pthread_join(pool->ledger_th, NULL);
	/* What the ledger cost, for operators and `station bench` (each commit is one fsync). */
	st_info("signing pool: %llu requests in %llu batches; %llu ledger commits (%llu with "
		"intents, %llu with certificates, %llu with marks or sequences)",
		(unsigned long long)pool->stats.submitted, (unsigned long long)pool->stats.batches,
		(unsigned long long)pool->stats.commits,
		(unsigned long long)pool->stats.commits_intent,
		(unsigned long long)pool->stats.commits_record,
		(unsigned long long)pool->stats.commits_ops);
	uv_close((uv_handle_t *)&pool->timer, on_handle_closed);
	uv_close((uv_handle_t *)&pool->wake, on_handle_closed);
}

/* Whether a completed request counts as refused, signed, reused or failed. Lock held. */
static void count_locked(struct st_pool *pool, const struct st_sign_req *r)
{
	if (r->cancelled)
		pool->stats.cancelled++;
	else if (r->rc == 0 && r->reused)
		pool->stats.reused++;
	else if (r->rc == 0)
		pool->stats.signed_++;
	else if (r->refused)
		pool->stats.refused++;
	else
		pool->stats.failed++;
	pool->stats.in_pool = pool->in_pool;
}

static void seal(struct st_pool *pool);

static void on_wake(uv_poll_t *h, int status, int events)
{
	struct st_pool *pool = h->data;
	struct st_sign_req *reqs, *acc, *r;
	struct pool_op *ops, *op;
	char reason[256];
	int paused, done_threads, idle, reqs_done;
	unsigned causes;
	uint64_t now, count;

	(void)status;
	(void)events;
	while (read(pool->wake_fd, &count, sizeof(count)) < 0 && errno == EINTR)
		;
	pthread_mutex_lock(&pool->lock);
	/* Whatever is queued from now on wakes the loop again. */
	pool->wake_sent = 0;
	reqs = pool->res_head;
	reqs_done = reqs != NULL;
	pool->res_head = pool->res_tail = NULL;
	/* Pushed before any result of theirs: a request completed in this round is accepted
	 * first, before done() may free it. */
	acc = pool->acc_head;
	pool->acc_head = pool->acc_tail = NULL;
	ops = pool->opres_head;
	pool->opres_head = pool->opres_tail = NULL;
	paused = pool->stats.paused;
	causes = pool->pause_causes;
	st_msgf(reason, sizeof(reason), "%s", paused ? pool->stats.pause_reason : "");
	done_threads = pool->workers_running == 0 && !pool->ledger_running;
	idle = pool->ahead == 0;
	for (r = reqs; r; r = r->q_next) {
		pool->in_pool--;
		count_locked(pool, r);
	}
	pthread_mutex_unlock(&pool->lock);

	while ((r = acc)) {
		acc = r->acc_next;
		r->acc_next = NULL;
		if (!r->cancelled)
			r->accepted(r);
	}
	while ((op = ops)) {
		ops = op->next;
		pool->ops_out--;
		if (op->cb)
			op->cb(op->rc, op->rc < 0 ? op->err : NULL, op->value, op->arg);
		free(op->text);
		free(op->slot);
		st_auth_set_unref(op->auths);
		free(op->attempt);
		free(op);
	}
	/* The state first: a request completed in this round was signed after any resume
	 * that this round reports. */
	if (paused != pool->told_paused || causes != pool->told_causes) {
		pool->told_paused = paused;
		pool->told_causes = causes;
		if (pool->status_cb)
			pool->status_cb(pool, paused, reason, pool->status_arg);
	}
	now = uv_hrtime();
	while ((r = reqs)) {
		reqs = r->q_next;
		r->q_next = NULL;
		r->state = RS_DONE;
		if (r->cancelled) {
			/* Its board failed meanwhile: the certificate is recorded for nobody. */
			if (r->cancel_reason && r->rc == 0 && !r->reused && r->row_id > 0 &&
			    st_ledger_queue_mark_failed(st_pool_ledger(pool), r->row_id,
							r->cancel_reason, NULL, NULL) < 0)
				st_warn("signing pool: could not queue the failure of ledger row %lld",
					(long long)r->row_id);
			st_sign_req_free(r);
			continue;
		}
		r->t.completed = now;
		r->done(r);
	}
	update_hold(pool);
	if (reqs_done && pool->room_cb && st_pool_can_submit(pool))
		pool->room_cb(pool->room_arg);
	/* No batch waits for its intents any more: the one that gathered meanwhile need not
	 * linger on. */
	if (idle && pool->open_head && !pool->closing)
		seal(pool);
	if (pool->closing && done_threads && !pool->finished)
		finish(pool);
}

static void on_linger(uv_timer_t *t);

/* Sends the open batch to the ledger thread. */
static void seal(struct st_pool *pool)
{
	struct pool_batch *b;
	struct st_sign_req *r;
	uint64_t now = uv_hrtime();

	if (!pool->open_head)
		return;
	uv_timer_stop(&pool->timer);
	b = calloc(1, sizeof(*b));
	if (!b) {
		/* Keep the open batch; the next submit or the timer tries again. */
		uv_timer_start(&pool->timer, on_linger, 1, 0);
		return;
	}
	b->size = pool->open_n;
	b->reqs = pool->open_head;
	for (r = pool->open_head; r; r = r->q_next) {
		r->batch = b;
		r->batch_next = r->q_next;
		r->t.sealed = now;
		r->state = RS_SEALED;
		b->to_check += !r->csr;
	}
	for (r = pool->open_head; r; r = r->batch_next)
		r->q_next = NULL;
	pthread_mutex_lock(&pool->lock);
	pool->stats.batches++;
	pool->stats.batched += pool->open_n;
	pool->inflight++;
	pool->ahead++;
	if (b->to_check) {
		/* Step 0 on the workers; the last check sends the batch on. */
		b->step = 0;
		for (r = b->reqs; r; r = r->batch_next) {
			if (!r->csr)
				ST_QUEUE_PUSH(pool->check_head, pool->check_tail, r, q_next);
		}
		wake_workers_locked(pool, b->to_check);
	} else {
		b->step = 1;
		push_job_locked(pool, b);
	}
	pthread_mutex_unlock(&pool->lock);
	pool->open_head = pool->open_tail = NULL;
	pool->open_n = 0;
}

static void on_linger(uv_timer_t *t)
{
	seal(t->data);
}

void st_pool_config_default(struct st_pool_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->batch_max = DEFAULT_BATCH_MAX;
	cfg->batch_linger_ms = DEFAULT_LINGER_MS;
	cfg->queue_max = DEFAULT_QUEUE_MAX;
}

/* Stops the threads that did start (st_pool_new failed) and frees the pool. */
static void stop_threads(struct st_pool *pool)
{
	unsigned i;

	pthread_mutex_lock(&pool->lock);
	pool->stopping = 1;
	pthread_cond_broadcast(&pool->work_cond);
	pthread_cond_broadcast(&pool->ledger_cond);
	pthread_mutex_unlock(&pool->lock);
	for (i = 0; i < pool->nworkers; i++) {
		if (pool->workers[i].started)
			pthread_join(pool->workers[i].th, NULL);
	}
	if (pool->ledger_started)
		pthread_join(pool->ledger_th, NULL);
}

static void abort_start(struct st_pool *pool)
{
	stop_threads(pool);
	pool_free(pool);
}

int st_pool_new(uv_loop_t *loop, const struct st_pool_config *cfg, const struct st_ca *ca,
		struct drv_signer *signer, struct st_pool **out, char *err, size_t errlen)
{
	struct st_pool *pool = NULL;
	pthread_condattr_t cattr;
	unsigned i;
	long ncpu;
	int rc = 0;

	*out = NULL;
	if (!loop || !cfg || !ca || !signer || !cfg->ledger_path || !cfg->ledger_path[0])
		return st_errf(err, errlen, ST_E_INVAL,
			       "signing pool needs a loop, a CA, a signer and a ledger path");
	if (cfg->batch_max > MAX_BATCH)
		return st_errf(err, errlen, ST_E_INVAL, "batch maximum is %u; expected 1 to %d",
			       cfg->batch_max, MAX_BATCH);
	if (cfg->workers > MAX_WORKERS)
		return st_errf(err, errlen, ST_E_INVAL, "signing workers are %u; expected 1 to %d",
			       cfg->workers, MAX_WORKERS);
	pool = calloc(1, sizeof(*pool));
	if (!pool)
		return st_errf(err, errlen, ST_E_NOMEM, "out of memory creating the signing pool");
	pool->loop = loop;
	pool->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	pool->lq.pool = pool;
	pool->ca = ca;
	pool->signer = signer;
	pool->nworkers = cfg->workers;
	if (!pool->nworkers) {
		ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		pool->nworkers = ncpu < 1 ? 1 : ncpu > MAX_WORKERS ? MAX_WORKERS : (unsigned)ncpu;
	}
	pool->batch_max = cfg->batch_max ? cfg->batch_max : DEFAULT_BATCH_MAX;
	pool->linger_ms = cfg->batch_linger_ms;
	pool->queue_max = cfg->queue_max ? cfg->queue_max : DEFAULT_QUEUE_MAX;
	pool->mark_delay_ms = cfg->mark_delay_ms ? cfg->mark_delay_ms : ST_POOL_MARK_DELAY_MS;
	pool->station = strdup(cfg->station ? cfg->station : "");
	pool->ledger_path = strdup(cfg->ledger_path);
	pool->workers = calloc(pool->nworkers, sizeof(*pool->workers));
	pthread_mutex_init(&pool->lock, NULL);
	/* Backoff waits and the marks' delay measure time on the monotonic clock, immune to
	 * clock changes. */
	pthread_condattr_init(&cattr);
	pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
	pthread_cond_init(&pool->work_cond, &cattr);
	pthread_cond_init(&pool->ledger_cond, &cattr);
	pthread_condattr_destroy(&cattr);
	pthread_cond_init(&pool->start_cond, NULL);
	pool->stats.workers = pool->nworkers;
#ifdef STATION_TEST_HOOKS
	{
		/* STATION_TEST_FAIL=pool.kill_after_intents:N (test builds only): the process
		 * dies after the Nth intent commit, for the crash tests of authorizations. */
		const char *arg = st_test_hook("pool.kill_after_intents");

		if (arg)
			pool->test_kill_intents = strtoul(arg, NULL, 10);
	}
#endif
	if (!pool->station || !pool->ledger_path || !pool->workers) {
		abort_start(pool);
		return st_errf(err, errlen, ST_E_NOMEM, "out of memory creating the signing pool");
	}
	if (pool->wake_fd < 0) {
		rc = errno;
		abort_start(pool);
		return st_errf(err, errlen, ST_E_INTERNAL, "signing pool: eventfd: %s",
			       strerror(rc));
	}

	/* The ledger first: no worker should hold an HSM session for a pool that cannot
	 * record anything. */
	pthread_mutex_lock(&pool->lock);
	pool->starting = 1;
	pool->ledger_running = 1;
	if (pthread_create(&pool->ledger_th, NULL, ledger_main, pool) != 0) {
		pool->ledger_running = 0;
		pthread_mutex_unlock(&pool->lock);
		abort_start(pool);
		return st_errf(err, errlen, ST_E_INTERNAL, "cannot start the ledger thread");
	}
	pool->ledger_started = 1;
	/* Named, so that top -H and `station bench` can tell the threads apart. */
	pthread_setname_np(pool->ledger_th, "st-ledger");
	while (pool->starting)
		pthread_cond_wait(&pool->start_cond, &pool->lock);
	rc = pool->start_rc;
	for (i = 0; i < pool->nworkers && rc == 0; i++) {
		struct pool_worker *w = &pool->workers[i];

		w->pool = pool;
		w->idx = i;
		pool->starting++;
		pool->workers_running++;
		if (pthread_create(&w->th, NULL, worker_main, w) != 0) {
			pool->starting--;
			pool->workers_running--;
			rc = st_errf(pool->start_err, sizeof(pool->start_err), ST_E_INTERNAL,
				     "cannot start signing worker %u", i);
			break;
		}
		w->started = 1;
		{
			char name[16];

			snprintf(name, sizeof(name), "st-sign-%u", i % 10000);
			pthread_setname_np(w->th, name);
		}
	}
	while (pool->starting)
		pthread_cond_wait(&pool->start_cond, &pool->lock);
	if (rc == 0)
		rc = pool->start_rc;
	pthread_mutex_unlock(&pool->lock);
	if (rc < 0) {
		st_errf(err, errlen, rc, "signing pool: %s", pool->start_err);
		abort_start(pool);
		return rc;
	}

	rc = uv_poll_init(loop, &pool->wake, pool->wake_fd);
	if (rc < 0) {
		abort_start(pool);
		return st_errf(err, errlen, ST_E_INTERNAL, "signing pool: polling its eventfd: %s",
			       uv_strerror(rc));
	}
	pool->wake.data = pool;
	rc = uv_poll_start(&pool->wake, UV_READABLE, on_wake);
	if (rc < 0) {
		/* The handle is the loop's now: the pool goes once it is closed. */
		stop_threads(pool);
		pool->handles = 1;
		uv_close((uv_handle_t *)&pool->wake, on_handle_closed);
		return st_errf(err, errlen, ST_E_INTERNAL, "signing pool: polling its eventfd: %s",
			       uv_strerror(rc));
	}
	uv_unref((uv_handle_t *)&pool->wake);
	uv_timer_init(loop, &pool->timer);
	pool->timer.data = pool;
	pool->handles = 2;
	pthread_mutex_lock(&pool->lock);
	pool->wake_ready = 1;
	pthread_mutex_unlock(&pool->lock);
	*out = pool;
	return 0;
}

void st_pool_set_status_cb(struct st_pool *pool, st_pool_status_cb cb, void *arg)
{
	pool->status_cb = cb;
	pool->status_arg = arg;
}

void st_pool_set_room_cb(struct st_pool *pool, st_pool_room_cb cb, void *arg)
{
	pool->room_cb = cb;
	pool->room_arg = arg;
}

int st_pool_can_submit(const struct st_pool *pool)
{
	return !pool->closing && pool->in_pool < pool->queue_max;
}

int st_pool_submit(struct st_pool *pool, struct st_sign_req *req)
{
	int idle;

	if (pool->closing)
		return ST_E_POOL_CLOSED;
	if (pool->in_pool >= pool->queue_max)
		return ST_E_POOL_FULL;
	if (!req->policy || (!req->csr && !req->csr_raw) || !req->done || !req->device_id[0] ||
	    !memchr(req->device_id, 0, sizeof(req->device_id)) ||
	    !memchr(req->profile, 0, sizeof(req->profile)) ||
	    !memchr(req->slot, 0, sizeof(req->slot)) || req->state != RS_NEW)
		return st_errf(req->err, sizeof(req->err), ST_E_INVAL,
			       "signing request needs a policy, a device id, a CSR (checked or as "
			       "received) and a completion callback, and may be submitted once");
	req->rc = 0;
	req->err[0] = 0;
	req->reused = 0;
	req->refused = 0;
	req->csr_rejected = 0;
	req->row_id = 0;
	req->cancelled = 0;
	memset(&req->t, 0, sizeof(req->t));
	req->t.submitted = uv_hrtime();
	req->state = RS_OPEN;
	ST_QUEUE_PUSH(pool->open_head, pool->open_tail, req, q_next);
	pool->open_n++;
	pool->in_pool++;
	pthread_mutex_lock(&pool->lock);
	pool->stats.submitted++;
	pool->stats.in_pool = pool->in_pool;
	idle = pool->ahead == 0;
	pthread_mutex_unlock(&pool->lock);
	update_hold(pool);
	/* With no batch waiting for its intents the batch is sealed once the loop has taken in
	 * this round's input: a lone request (a light load, slow serial lines, a few HTTP
	 * clients) does not wait the linger for company that is not coming, even while earlier
	 * batches are signed or recorded. Behind a busy ledger the batch in front is the time in
	 * which the next one gathers (its intents' commit would carry this one's anyway), and
	 * on_wake seals it as soon as that batch's intents are committed. */
	if (pool->open_n >= pool->batch_max)
		seal(pool);
	else if (pool->open_n == 1)
		uv_timer_start(&pool->timer, on_linger, idle ? 0 : pool->linger_ms, 0);
	return 0;
}

void st_pool_cancel(struct st_pool *pool, struct st_sign_req *req, const char *failed)
{
	struct st_sign_req **pp, *prev = NULL;

	if (req->state == RS_SEALED) {
		req->cancelled = 1;
		if (failed && !req->cancel_reason)
			req->cancel_reason = strdup(failed); /* out of memory: cancelled all the same */
		return;
	}
	if (req->state != RS_OPEN)
		return;
	for (pp = &pool->open_head; *pp; prev = *pp, pp = &(*pp)->q_next) {
		if (*pp != req)
			continue;
		*pp = req->q_next;
		if (pool->open_tail == req)
			pool->open_tail = prev;
		pool->open_n--;
		break;
	}
	if (!pool->open_n)
		uv_timer_stop(&pool->timer);
	pool->in_pool--;
	pthread_mutex_lock(&pool->lock);
	pool->stats.cancelled++;
	pool->stats.in_pool = pool->in_pool;
	pthread_mutex_unlock(&pool->lock);
	st_sign_req_free(req);
	update_hold(pool);
}

/* Hands a prepared operation to the ledger thread. */
static void enqueue_op(struct st_pool *pool, struct pool_op *op)
{
	int wake = 1;

	pool->ops_out++;
	update_hold(pool);
	pthread_mutex_lock(&pool->lock);
	if (op_rides(op)) {
		/* Nobody waits for it: it rides with the next commit (pool.h: st_pool_ledger).
		 * The first one wakes an idle ledger thread to start its wait for company; with
		 * marks already waiting the thread is in that wait or in a round, and takes this
		 * one with them. */
		wake = !pool->marks_head;
		if (wake)
			pool->marks_since = uv_hrtime();
		ST_QUEUE_PUSH(pool->marks_head, pool->marks_tail, op, next);
	} else {
		ST_QUEUE_PUSH(pool->ops_head, pool->ops_tail, op, next);
	}
	if (wake)
		pthread_cond_signal(&pool->ledger_cond);
	pthread_mutex_unlock(&pool->lock);
}

/* A new operation of kind, or NULL with *rc set (ST_E_POOL_CLOSED, ST_E_NOMEM). */
static struct pool_op *op_new(struct st_pool *pool, enum op_kind kind, int *rc)
{
	struct pool_op *op = NULL;

	*rc = ST_E_POOL_CLOSED;
	if (!pool->closing) {
		*rc = ST_E_NOMEM;
		op = calloc(1, sizeof(*op));
	}
	if (op)
		op->kind = kind;
	return op;
}

static int queue_op(struct st_pool *pool, enum op_kind kind, int64_t row_id, const char *text,
		    st_ledger_op_cb cb, void *arg)
{
	struct pool_op *op;
	int rc;

	op = op_new(pool, kind, &rc);
	if (!op)
		return rc;
	op->row_id = row_id;
	op->cb = cb;
	op->arg = arg;
	if (text) {
		op->text = strdup(text);
		if (!op->text) {
			free(op);
			return ST_E_NOMEM;
		}
	}
	enqueue_op(pool, op);
	return 0;
}

int st_pool_auth_sync(struct st_pool *pool, struct st_auth_set *set)
{
	struct pool_op *op;
	int rc;

	op = op_new(pool, OP_AUTH_SYNC, &rc);
	if (!op)
		return rc;
	op->auths = st_auth_set_ref(set);
	enqueue_op(pool, op);
	return 0;
}

/* The string members of struct st_ledger_attempt that an attempt op copies. */
static const size_t attempt_strings[] = {
	offsetof(struct st_ledger_attempt, slot),     offsetof(struct st_ledger_attempt, outcome),
	offsetof(struct st_ledger_attempt, reason),   offsetof(struct st_ledger_attempt, error),
	offsetof(struct st_ledger_attempt, device_id), offsetof(struct st_ledger_attempt, serial),
	offsetof(struct st_ledger_attempt, board_sn),
	offsetof(struct st_ledger_attempt, hardware_id),
	offsetof(struct st_ledger_attempt, sku),      offsetof(struct st_ledger_attempt, firmware),
	offsetof(struct st_ledger_attempt, profile),  offsetof(struct st_ledger_attempt, auth_id),
};

#define ATTEMPT_STR(a, i) (*(const char **)((char *)(a) + attempt_strings[i]))

/* Copies a and its strings into one allocation (free()); station and lot are left out. */
static struct st_ledger_attempt *attempt_dup(const struct st_ledger_attempt *a)
{
	const size_t k = sizeof(attempt_strings) / sizeof(attempt_strings[0]);
	size_t n = sizeof(*a);
	struct st_ledger_attempt *c;
	char *p;

	for (size_t i = 0; i < k; i++)
		n += ATTEMPT_STR(a, i) ? strlen(ATTEMPT_STR(a, i)) + 1 : 0;
	c = malloc(n);
	if (!c)
		return NULL;
	*c = *a;
	c->station = NULL;
	c->lot = NULL;
	p = (char *)(c + 1);
	for (size_t i = 0; i < k; i++) {
		if (!ATTEMPT_STR(a, i))
			continue;
		strcpy(p, ATTEMPT_STR(a, i));
		ATTEMPT_STR(c, i) = p;
		p += strlen(p) + 1;
	}
	return c;
}

int st_pool_record_attempt(struct st_pool *pool, const struct st_ledger_attempt *a)
{
	struct pool_op *op;
	int rc;

	if (!a || !a->outcome)
		return ST_E_INVAL;
	op = op_new(pool, OP_ATTEMPT, &rc);
	if (!op)
		return rc;
	op->attempt = attempt_dup(a);
	if (!op->attempt) {
		free(op);
		return ST_E_NOMEM;
	}
	if (!op->attempt->time)
		op->attempt->time = time(NULL);
	enqueue_op(pool, op);
	return 0;
}

struct st_ledger_queue *st_pool_ledger(struct st_pool *pool)
{
	return &pool->lq;
}

int st_ledger_queue_mark_delivered(struct st_ledger_queue *q, int64_t row_id,
				   st_ledger_op_cb cb, void *arg)
{
	if (row_id <= 0)
		return ST_E_INVAL;
	return queue_op(q->pool, OP_DELIVERED, row_id, NULL, cb, arg);
}

int st_ledger_queue_mark_failed(struct st_ledger_queue *q, int64_t row_id, const char *reason,
				st_ledger_op_cb cb, void *arg)
{
	if (row_id <= 0 || !reason)
		return ST_E_INVAL;
	return queue_op(q->pool, OP_FAILED, row_id, reason, cb, arg);
}

int st_ledger_queue_next_sequence(struct st_ledger_queue *q, const char *prefix,
				  st_ledger_op_cb cb, void *arg)
{
	if (!prefix || !cb)
		return ST_E_INVAL;
	return queue_op(q->pool, OP_SEQUENCE, 0, prefix, cb, arg);
}

int st_ledger_queue_check_sequence(struct st_ledger_queue *q, const char *device_id,
				   size_t prefix_len, const char *slot, st_ledger_op_cb cb,
				   void *arg)
{
	struct pool_op *op;
	int rc;

	if (!device_id || !cb || !prefix_len || prefix_len >= strlen(device_id))
		return ST_E_INVAL;
	op = op_new(q->pool, OP_SEQUENCE_CHECK, &rc);
	if (!op)
		return rc;
	op->row_id = (int64_t)prefix_len;
	op->cb = cb;
	op->arg = arg;
	op->text = strdup(device_id);
	op->slot = slot ? strdup(slot) : NULL;
	if (!op->text || (slot && !op->slot)) {
		free(op->text);
		free(op->slot);
		free(op);
		return ST_E_NOMEM;
	}
	enqueue_op(q->pool, op);
	return 0;
}

void st_pool_stats(struct st_pool *pool, struct st_pool_stats *out)
{
	pthread_mutex_lock(&pool->lock);
	*out = pool->stats;
	pthread_mutex_unlock(&pool->lock);
	out->in_pool = pool->in_pool;
}

void st_pool_close(struct st_pool *pool, void (*close_cb)(void *arg), void *arg)
{
	struct st_sign_req *r;

	if (!pool || pool->closing)
		return;
	pool->closing = 1;
	pool->close_cb = close_cb;
	pool->close_arg = arg;
	uv_timer_stop(&pool->timer);
	update_hold(pool);

	pthread_mutex_lock(&pool->lock);
	pool->stopping = 1;
	/* Never sealed: no intent, nothing to record. */
	while ((r = pool->open_head)) {
		pool->open_head = r->q_next;
		r->state = RS_SEALED;
		req_fail(r, ST_E_POOL_CLOSED, "not signed: the station is shutting down");
		push_result_locked(pool, r);
	}
	pool->open_tail = NULL;
	pool->open_n = 0;
	/* Sealed but not started: their intents are marked failed in step 3. */
	while ((r = sign_pop_locked(pool)))
		abandon_locked(pool, r, "the station is shutting down");
	/* Not checked yet: no intent, nothing to record. */
	while ((r = check_pop_locked(pool))) {
		req_fail(r, ST_E_POOL_CLOSED, "not signed: the station is shutting down");
		if (check_done_locked(pool, r))
			wake_loop(pool);
	}
	pthread_cond_broadcast(&pool->work_cond);
	pthread_cond_broadcast(&pool->ledger_cond);
	notify_locked(pool);
	pthread_mutex_unlock(&pool->lock);
}
