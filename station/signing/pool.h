/* The batch signing pool: turns CSRs into recorded certificates without ever blocking the
 * event loop.
 *
 * Threads:
 * - the loop thread (libuv) submits requests, gathers them into batches (sealed at
 *   batch_max requests, or batch_linger_ms after the first one, or at once when no sealed
 *   batch is waiting for its intents: a batch gathers only behind a busy ledger) and runs
 *   every completion callback;
 * - one ledger thread owns the st_ledger handle (SQLite blocks on fsync);
 * - S worker threads, each with its own signer session and st_issuer for its whole life
 *   (HSMs crash or serialise when threads share a session). Not libuv's shared threadpool:
 *   that one also serves fs and DNS work, which would wait behind signing batches.
 * Results come back through one locked queue; an eventfd polled by the loop wakes it for
 * them.
 *
 * Each batch goes through three steps (four with CSRs to check), and batches overlap (while
 * batch k is signed, the intents of k+1 are committed and the certificates of k-1 recorded;
 * the ledger thread puts whatever is waiting for it into one transaction, so commits grow as
 * the load does):
 * 0. workers: check the CSRs that came as received (csr_raw), ahead of any signing, so that
 *    the loop thread spends no verification on them; a request whose CSR fails completes
 *    at once with the check's code and message, and nothing of it reaches the ledger;
 * 1. ledger thread: look every request up (a board the ledger already knows gets its
 *    recorded certificate again, a key certified for another device is refused), choose the
 *    serials and insert the intent rows, each with a unit of a production authorization
 *    when its policy requires one (no unit: the request fails, nothing is signed); one
 *    commit;
 * 2. workers: issue (sign and verify) every new certificate, pulling requests from one shared
 *    queue so that all sessions stay busy;
 * 3. ledger thread: store every certificate (and the reasons of those that failed); one
 *    commit. Only after that commit do the batch's requests complete: no certificate leaves
 *    the pool without a durable ledger row.
 *
 * When the HSM goes away (a signature fails with ST_E_SIGNER_SESSION, _DEVICE, _TOKEN, _KEY,
 * _PIN or _MODULE after the signer's own reopen and retry: the HSM, not the board), signing
 * pauses: the request goes back to the head of the queue, each worker reopens its session
 * with a backoff (100 ms doubling to 2 s), the pool reports "paused" with the reason, and
 * signing resumes with the first signature that works. No request fails for an outage, and
 * CSRs are still checked meanwhile (step 0 needs no HSM: bad input gets its answer at once).
 * Other errors (policy, CA validity, a signature that does not verify) fail that request
 * only.
 * When the ledger's database cannot be reached (a PostgreSQL ledger: the server restarted or
 * stopped, the network cut), signing pauses the same way, with the database's words as the
 * reason: the ledger thread waits inside the ledger call that found it gone, reconnecting
 * with the same backoff, the batches in flight wait with it (the ledger restores an open
 * transaction and resolves a commit whose answer was lost, ledger.h), and it resumes when
 * the database answers. Only shutting down gives up on it.
 *
 * When the ledger's storage fails (a full disk, an I/O error, a file system gone read-only, a
 * lock another process holds too long: ST_E_LEDGER_IO, _OPEN, _BUSY), signing pauses the same
 * way: the ledger thread rolls the round back, reports "paused" with the reason, and runs the
 * same round again with the same backoff until its commit works, then resumes. Nothing of a
 * round completes before its commit, so no certificate leaves and no board fails for it; the
 * batches behind it wait. Only a pool that is shutting down gives such a round up (its
 * requests fail, their certificates unrecorded and not given out). A damaged or newer ledger
 * and errors of one statement still fail the round's requests.
 *
 * Fault hook for tests: STATION_TEST_FAIL="pool.kill_after_intents:N" kills the process
 * (SIGKILL) right after the N-th commit that carried intents, before their certificates
 * are recorded.
 *
 * Refusals (a key recorded for another device, a device id recorded with another key under
 * the refuse policy or, under the reissue policy, by a request that did not authenticate the
 * device id, a duplicate the ledger's constraints catch) are flagged in the ledger
 * (st_ledger_flag) and complete with req->refused set. */
#ifndef ST_POOL_H
#define ST_POOL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <uv.h>

#include "auth.h"
#include "ca.h"
#include "err.h"
#include "issue.h"
#include "ledger.h"
#include "ledger_queue.h"
#include "policy.h"
#include "signer.h"

#define ST_POOL_MAX_DEVICE_ID 256 /* bytes of a device id, without the NUL */
#define ST_POOL_MAX_NAME 128      /* bytes of a profile or slot name, without the NUL */

struct st_pool;
struct st_sign_req;

/* Called on the loop thread when a request is finished. From then on the caller owns req
 * and frees it with st_sign_req_free() (inside the callback or later). */
typedef void (*st_sign_done_cb)(struct st_sign_req *req);

/* Monotonic times (uv_hrtime(), nanoseconds) of a request's way through the pool, for
 * per-phase latencies. A step that did not happen stays 0 (a recorded board is never
 * signed). */
struct st_sign_times {
	uint64_t submitted;  /* st_pool_submit() */
	uint64_t sealed;     /* its batch was sealed */
	uint64_t intent;     /* its intent row was committed (or the lookup decided) */
	uint64_t sign_start; /* a worker took it */
	uint64_t sign_end;   /* the certificate was issued (or issuing failed) */
	uint64_t recorded;   /* the certificate was committed to the ledger */
	uint64_t completed;  /* just before done() */
};

/* One CSR to sign. Allocate with st_sign_req_new(), fill the inputs, st_pool_submit(). */
struct st_sign_req {
	/* Inputs. */
	const struct st_policy *policy; /* borrowed; must outlive the request */
	char profile[ST_POOL_MAX_NAME + 1];       /* profile (SKU) name, for the ledger */
	char slot[ST_POOL_MAX_NAME + 1];          /* slot name, for the ledger and messages */
	char device_id[ST_POOL_MAX_DEVICE_ID + 1]; /* the certificate's CN */
	struct st_csr *csr;  /* checked CSR (st_csr_check); owned by the request */
	/* Or, instead of csr: the CSR as received (PEM or DER, csr_raw_len bytes), which a
	 * signing worker checks (st_csr_check with policy, the CA's OU and device_id) before
	 * anything of the request reaches the ledger. A CSR that fails completes the request
	 * with the check's code and message as they are, csr_rejected set, and leaves no
	 * ledger row; one that passes is in csr from then on (done() may read it). Owned by
	 * the request (st_sign_req_free). */
	uint8_t *csr_raw;
	size_t csr_raw_len;
	time_t now;          /* moment of issue; 0: the current time */
	int id_authenticated; /* 1: the requester proved it speaks for device_id (a device id
			       * read from the board's secure element, an HTTP request with a
			       * token or the device's own client certificate). Under the reissue
			       * policy only such a request gets a new certificate for a device
			       * id recorded with another key; others are refused and flagged. */
	/* Set when the requester authenticated device_id by a certificate issued to it (an
	 * HTTP client certificate whose CN is device_id) and by nothing else: the SHA-256 of
	 * that certificate's DER, and its serial (lower-case hex, for messages). A stolen or
	 * replaced certificate still names the device, so such a request counts as
	 * authenticated only while that certificate is the device id's current one, its
	 * newest live row in the ledger (st_ledger_newest), checked in the transaction of the
	 * intent; else it is refused as unauthenticated (ST_E_POOL_REISSUE_UNAUTH), naming
	 * both serials. */
	int id_by_cert;
	uint8_t id_cert_sha256[32];
	char id_cert_serial[ST_ISSUE_SERIAL_HEX];
	void *data;          /* the caller's */
	st_sign_done_cb done;
	/* Optional: called on the loop thread once the request's intent row is committed (its
	 * CSR passed the checks, a unit of its authorization is taken) and it goes to be
	 * signed; before done(), and never for a request refused or a certificate delivered
	 * again. The request stays the pool's, and a worker may be writing its outputs: read
	 * its inputs only. */
	st_sign_done_cb accepted;
	/* The production authorizations in force (auth.h): a reference the request holds
	 * (st_sign_req_free() drops it; st_auth_set_ref() it when setting). Under a policy
	 * with authorization_required a new certificate consumes a unit of one of them in
	 * the transaction of its intent; without a unit the request fails with
	 * ST_E_AUTH_EXHAUSTED, _EXPIRED, _NOT_YET_VALID or _SKU and nothing is signed. A
	 * recorded certificate delivered again consumes nothing. May be NULL. */
	struct st_auth_set *auths;

	/* Outputs, valid in and after done(). */
	int rc;             /* 0, or a negative ST_E_* code */
	char err[ST_ERR_MAX]; /* what went wrong when rc < 0: the cause alone, whole (the
			       * request's slot and device are for the caller to name, once) */
	struct st_cert *cert; /* the certificate when rc == 0; owned by the request (the caller
			       * may take it and set this to NULL) */
	int64_t row_id;     /* its ledger row (for st_ledger_queue_mark_delivered/failed); when the
			     * request failed after its intent, the row now marked failed;
			     * 0: none */
	int reused;         /* 1: the ledger already held this certificate; nothing was signed */
	int refused;        /* 1: the ledger refused it (key or device id already taken):
			     * submitting it again will not help */
	int csr_rejected;   /* 1: the check of csr_raw failed (rc and err are the check's) */
	char auth_id[ST_AUTH_MAX_ID + 1]; /* the authorization a unit was consumed of for
					   * this certificate, "" when none */
	int64_t auth_used, auth_units;    /* its count after this one, and its units */
	struct st_sign_times t;

	/* Private to the pool. */
	struct st_sign_req *q_next;     /* open batch, sign queue or result queue */
	struct st_sign_req *acc_next;   /* accepted queue (accepted() due) */
	struct st_sign_req *batch_next; /* members of the sealed batch */
	struct pool_batch *batch;
	char serial_hex[ST_ISSUE_SERIAL_HEX]; /* the serial named by the intent row */
	int sign_it;                   /* step 1's decision: 1 sign, 0 done, -1 undecided */
	int unrecorded;                /* step 3: its row refused the certificate (the code);
					* the request fails once the round is committed */
	int cancelled;                 /* loop thread only */
	char *cancel_reason;           /* loop thread only: st_pool_cancel()'s failed */
	int state;                     /* loop thread only: where the request is */
};

/* A zeroed request, or NULL when out of memory. Free with st_sign_req_free(). Any thread. */
struct st_sign_req *st_sign_req_new(void);
/* Frees the request, its CSR and its certificate. NULL is ignored. Never on a request the
 * pool still holds (between a successful st_pool_submit() and done(), or after
 * st_pool_cancel()). */
void st_sign_req_free(struct st_sign_req *req);

struct st_pool_config {
	unsigned workers;         /* signing threads; 0: the number of online CPUs. Keep it
				   * within the sessions the HSM allows. */
	unsigned batch_max;       /* requests per batch, 1 .. 4096; 0: 32 */
	unsigned batch_linger_ms; /* a batch is sealed this long after its first request even
				   * when not full; at once (on the next loop iteration) when no
				   * sealed batch is waiting for its intents, so that a request
				   * waits the linger only behind a busy ledger, never on an idle
				   * or lightly loaded pool; 0: always on the next iteration */
	unsigned queue_max;       /* requests in the pool at once (backpressure); 0: 4096 */
	unsigned mark_delay_ms;   /* how long a delivered or failed mark without a callback
				   * waits for a commit to ride with (ledger_queue.h);
				   * 0: ST_POOL_MARK_DELAY_MS */
	const char *station;      /* this station's name, for the ledger rows */
	const char *ledger_path;  /* the ledger: a SQLite file or a PostgreSQL connection
				   * string (st_ledger_open) */
};

/* Fills cfg with the defaults: workers 0 (the CPUs), batch_max 32, batch_linger_ms 5,
 * queue_max 4096, no station or ledger. */
void st_pool_config_default(struct st_pool_config *cfg);

struct st_config;

/* The settings of the configuration's pool: section (config.h), for st_pool_new():
 * workers 0 becomes the online CPUs, and never more than pool.hsm_sessions when that is
 * given; ledger_path is cfg->ledger and station the given name (neither is copied).
 * Running fewer workers than the CPUs or pool.workers ask for, it says so in the log (a
 * warning naming both keys when workers was given). Returns the workers before the
 * hsm_sessions clamp. Any thread. */
unsigned st_pool_config_from(const struct st_config *cfg, const char *station,
			     struct st_pool_config *pc);

/* Status of the pool, for the live view and benchmarks. */
struct st_pool_stats {
	uint64_t submitted;  /* accepted by st_pool_submit() */
	uint64_t signed_;    /* new certificates issued and recorded */
	uint64_t reused;     /* recorded certificates given out again */
	uint64_t refused;    /* refused by the ledger (key reused, device id taken, ...) */
	uint64_t failed;     /* failed otherwise (policy, CA, signer, ledger errors) */
	uint64_t cancelled;  /* cancelled by their slot */
	uint64_t batches;    /* batches sealed */
	uint64_t batched;    /* requests in those batches (batched / batches: mean size) */
	uint64_t commits;        /* ledger commits (each one fsync) */
	uint64_t commits_intent; /* of those, commits that carried step 1 of some batch */
	uint64_t commits_record; /* commits that carried step 3 of some batch */
	uint64_t commits_ops;    /* commits that carried ledger queue updates */
	uint64_t commits_marks;  /* of those, commits that carried grouped marks or attempts */
	uint64_t checked;    /* CSRs checked on the workers (csr_raw), passed or not */
	unsigned in_pool;    /* requests submitted and not yet completed */
	unsigned workers;    /* signing threads */
	int paused;          /* 1 while signing waits for the HSM or the ledger's storage */
	char pause_reason[256]; /* what the HSM or the ledger says of the outage ("; " between
				 * both), "" when never paused */
	uint64_t paused_since; /* uv_hrtime() when the current pause began */
	uint64_t pauses;     /* how many times signing paused */
};

/* Called on the loop thread when signing pauses (paused = 1, reason = what the HSM or the
 * ledger says), when the reason changes cause while paused, and when it resumes (paused = 0,
 * reason = ""). */
typedef void (*st_pool_status_cb)(struct st_pool *pool, int paused, const char *reason,
				  void *arg);

/* Called on the loop thread after requests completed, when the pool can take more
 * (st_pool_can_submit()): a caller that keeps what the pool refused with ST_E_POOL_FULL
 * submits it from here, while the pool takes it. */
typedef void (*st_pool_room_cb)(void *arg);

/* Creates the pool on loop: opens the ledger (on the ledger thread), starts the workers and
 * waits until each has opened its signer session and issuer, so that a wrong key, PIN or
 * ledger path fails here. ca and signer are shared by the workers and must outlive the pool.
 * Blocks the calling thread while starting: call it before the loop runs busy. Returns 0 and
 * *out (close with st_pool_close()), or a negative ST_E_* code with a message; *out is NULL
 * then and nothing is left running. Loop thread. */
int st_pool_new(uv_loop_t *loop, const struct st_pool_config *cfg, const struct st_ca *ca,
		struct drv_signer *signer, struct st_pool **out, char *err, size_t errlen);

/* Sets the callback told when signing pauses and resumes. Loop thread. */
void st_pool_set_status_cb(struct st_pool *pool, st_pool_status_cb cb, void *arg);

/* Sets the callback told when there is room (st_pool_room_cb; NULL: none), so that a
 * caller that queues what the pool refused need not watch the completions itself. Loop
 * thread. */
void st_pool_set_room_cb(struct st_pool *pool, st_pool_room_cb cb, void *arg);

/* Whether st_pool_submit() would accept one more request now. Loop thread. */
int st_pool_can_submit(const struct st_pool *pool);

/* Hands req to the pool. The inputs must be set: policy, device_id, csr or csr_raw, and
 * done (profile and slot may be empty). Returns 0, and then the pool owns req until done(req) runs on the
 * loop thread (never before this function returns); or ST_E_POOL_FULL (queue_max requests
 * are in the pool: try again after a completion), ST_E_POOL_CLOSED, or ST_E_INVAL with a
 * message in req->err, and then the caller keeps req. After ST_E_POOL_FULL the room callback
 * (st_pool_set_room_cb()) says when to try again. Loop thread. */
int st_pool_submit(struct st_pool *pool, struct st_sign_req *req);

/* Gives up a submitted request whose slot went away: done() will not be called and the pool
 * frees req when it is finished with it; the caller must not touch req again. A request that
 * was not yet sealed into a batch is dropped at once; one already on its way is carried to
 * the end, so that whatever was signed for it is recorded (a board that comes back later gets
 * that certificate). failed, when the board failed, is why: a certificate recorded for it
 * then has its row marked failed with that, as its slot would have done had it been signed
 * before the board failed (NULL: the row stays as recorded). Only between a successful
 * st_pool_submit() and done(). Loop thread. */
void st_pool_cancel(struct st_pool *pool, struct st_sign_req *req, const char *failed);

/* The queue of ledger updates (ledger_queue.h) that the pool's ledger thread carries out
 * with its own transactions. Valid until the pool is closed. A delivered or failed mark
 * without a callback costs no commit (no fsync) of its own: it rides with the next commit
 * the ledger makes for other work, or is committed with the other marks waiting
 * mark_delay_ms after the first of them at the latest, and when the pool closes. A crash
 * in that window loses at most such marks: the row stays signed, which a lookup treats as
 * it treats a delivered or failed row holding a certificate (a board that comes back gets
 * the same certificate), so nothing a board holds is contradicted and `station ledger
 * check` stays clean. Loop thread. */
#define ST_POOL_MARK_DELAY_MS 100
struct st_ledger_queue *st_pool_ledger(struct st_pool *pool);

/* Records authorizations in the ledger (st_ledger_auth_register) on the ledger thread and
 * stores what the ledger counts for each in its used_seen, for the view; one recorded for
 * another document under the same id is logged and marked refused (registered = -1), and
 * no board consumes it. Takes its own reference on set. Returns 0, ST_E_POOL_CLOSED or
 * ST_E_NOMEM. Loop thread. */
int st_pool_auth_sync(struct st_pool *pool, struct st_auth_set *set);

/* Records an attempt (st_ledger_add_attempt; a's strings are copied). Nobody waits for it:
 * like a mark without a callback (st_pool_ledger) it rides with the next commit the ledger
 * makes, or is committed with the others waiting after the mark delay at the latest. A crash
 * in that window loses the record of the boards that ended within it, as it loses that of
 * the boards in flight. Returns 0, ST_E_POOL_CLOSED, ST_E_NOMEM or ST_E_INVAL. Loop
 * thread. */
int st_pool_record_attempt(struct st_pool *pool, const struct st_ledger_attempt *a);

/* Copies the counters and the pause state. Loop thread. */
void st_pool_stats(struct st_pool *pool, struct st_pool_stats *out);

/* Shuts the pool down: takes no new requests or operations; requests not yet sealed into a
 * batch complete with ST_E_POOL_CLOSED; of the sealed ones, those a worker is signing finish
 * and are recorded, the others are not signed (ST_E_POOL_CLOSED; their intent rows are marked
 * failed). Queued ledger operations are carried out. Every remaining done() and op callback
 * runs on the loop thread, then the threads are joined, the ledger closed, the uv handles
 * closed, and close_cb(arg) (may be NULL) is called from the last handle's close callback,
 * when the pool's memory is already released. Run the loop until then. Calling it again is
 * harmless (the later close_cb is not called). Loop thread. */
void st_pool_close(struct st_pool *pool, void (*close_cb)(void *arg), void *arg);

#endif
