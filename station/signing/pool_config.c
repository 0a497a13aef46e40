/* The pool's settings from the station configuration's pool: section (pool.h). */
#include "pool.h"

#include <unistd.h>

#include "config.h"
#include "log.h"

unsigned st_pool_config_from(const struct st_config *cfg, const char *station,
			     struct st_pool_config *pc)
{
	const struct st_config_pool *cp = &cfg->pool;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned workers = cp->workers;

	st_pool_config_default(pc);
	if (!workers)
		workers = ncpu < 1 ? 1 : (unsigned)ncpu;
	pc->workers = workers;
	/* One HSM session per worker (the pkcs11 signer lends its login session to one), so
	 * never more workers than the HSM's sessions. More workers than that asked for in so
	 * many words is not refused: hsm_sessions is what the hardware allows and workers only
	 * what would be liked, a worker without a session could do nothing but wait, and a
	 * station that refuses to start over a performance setting stops a line. So it starts
	 * with the sessions there are and says so, naming the keys. */
	if (cp->hsm_sessions && pc->workers > cp->hsm_sessions) {
		pc->workers = cp->hsm_sessions;
		if (cp->workers)
			st_warn("%s: pool.workers is %u but pool.hsm_sessions is %u (the HSM's "
				"sessions, one per signing worker): signing with %u workers; set "
				"workers to %u to start without this warning",
				cfg->path, cp->workers, cp->hsm_sessions, pc->workers,
				pc->workers);
		else
			st_notice("signing workers: %u CPUs, but the HSM allows %u sessions "
				  "(pool.hsm_sessions): %u workers",
				  workers, cp->hsm_sessions, pc->workers);
	}
	/* 0 means the pool's own default here as there. */
	pc->batch_max = cp->batch_max;
	pc->batch_linger_ms = cp->batch_linger_ms;
	pc->queue_max = cp->queue_max;
	pc->station = station;
	pc->ledger_path = cfg->ledger;
	return workers;
}
