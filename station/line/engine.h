/* The station engine behind `station run`: one libuv loop drives every slot's port, the
 * signing pool signs and records, the event stream and the live view report.
 *
 * Start-up (blocking, before the loop runs): the configuration, the CA and its chain, the
 * signer, the profiles, the slots (explicit ports, globs scanned now and then again on a
 * timer, simboard's board map), the pool (ledger thread and signing workers, each with its
 * own HSM session), the event stream. Then the loop: slots probe their ports, boards come,
 * get provisioned and leave. Nothing on the loop blocks: the pool does fsync, SQLite and
 * signing on its own threads, console logs of failed boards are written through libuv's fs
 * requests.
 *
 * Stopping (SIGINT, SIGTERM, --boards N reached, --until-idle, --max-seconds): no new boards;
 * boards in flight are abandoned (a signed certificate is in the ledger already; their next
 * run delivers it) except verified ones, which pass; the pool is closed (the ledger gets every
 * queued update), the summary is written, and the loop ends once every handle is closed.
 * SIGHUP reloads the profiles and the production authorizations (from the configuration
 * file as it is now); boards in flight keep the set they started with.
 *
 * Loop thread only, except where noted. */
#ifndef ST_ENGINE_H
#define ST_ENGINE_H

#include <stddef.h>

#include "events.h"
#include "pool.h"
#include "slot.h"

struct st_engine;

/* Whoever shows the run while it goes (the live view, which `station run` wires here; the
 * engine knows nothing of it). Loop thread. */
struct st_engine_watcher {
	/* The loop is about to run: start showing e. Returns 0, or a negative ST_E_* code
	 * (the run goes on without it). */
	int (*start)(void *arg, struct st_engine *e, uv_loop_t *loop);
	/* The run is over: the summary is next. Called once, only after start returned 0. */
	void (*stop)(void *arg);
	void *arg;
};

struct st_engine_options {
	const char *events_path; /* --events FILE (over the configuration's outputs.events) */
	int json;                /* --json: events on stdout, no live view */
	const struct st_engine_watcher *watcher; /* NULL: none */
	unsigned long boards;    /* --boards N: stop once N boards finished; 0: no limit */
	int until_idle;          /* stop once every slot with a port handled a board and none
				  * is busy */
	double max_seconds;      /* stop after this long; 0: no limit */
	int verbose;             /* log every transition (under the live view: at its bottom) */
};

/* Loads config_path and sets everything up (see above). Problems in the configuration or
 * the profiles are written to stderr as file:line:col lines. Returns 0 and *out (free with
 * st_engine_free), or a negative ST_E_* code with a message; *out is NULL then. Blocks. */
int st_engine_new(const char *config_path, const struct st_engine_options *opt,
		  struct st_engine **out, char *err, size_t errlen);

/* Runs the loop until the engine has stopped and closed everything. Returns the exit
 * status: 0 when every board that finished passed, 1 otherwise. */
int st_engine_run(struct st_engine *e);

void st_engine_free(struct st_engine *e);

/* For the live view and the operator console: the tallies, the pool's counters
 * (-1: the pool is closed), the station's name, the uv_hrtime() the run started and whether
 * it is stopping. Loop thread. */
const struct st_tally *st_engine_tally(const struct st_engine *e);
int st_engine_pool_stats(const struct st_engine *e, struct st_pool_stats *out);
const char *st_engine_station(const struct st_engine *e);
uint64_t st_engine_started(const struct st_engine *e);
int st_engine_stopping(const struct st_engine *e);
/* The production authorizations in force (NULL: none configured), with what the ledger last
 * said of their counts (st_auth.used_seen). */
const struct st_auth_set *st_engine_auths(const struct st_engine *e);

/* What the run looks like now, for a watcher: the station's name, every slot, the tallies,
 * the pool's counters (NULL once the pool is closed), the uv_hrtime() the run started and
 * whether it is stopping. Borrowed from e until the loop runs again. */
struct st_engine_snapshot {
	const char *station;
	struct st_slot_info *const *slots;
	size_t nslots;
	const struct st_tally *tally;
	const struct st_pool_stats *pool;
	uint64_t started;
	int stopping;
};

/* Fills *out (see above). Returns 0, or ST_E_NOMEM (then *out has no slots). */
int st_engine_snapshot(struct st_engine *e, struct st_engine_snapshot *out);

#endif
