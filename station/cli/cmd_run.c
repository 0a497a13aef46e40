/* `station run`: the station's main job. Every slot of the configuration is driven at once
 * until the station is told to stop (see engine.h). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "engine.h"
#include "err.h"
#include "log.h"
#include "view.h"

static void run_usage(FILE *out)
{
	fprintf(out,
		"usage: station run -c STATION.yaml [--events FILE] [--json] [--until-idle]\n"
		"                   [--boards N] [--max-seconds S] [--view|--no-view] [-v]\n"
		"\n"
		"Provisions the boards in every slot of the configuration at once: HELLO, profile,\n"
		"CSR, checks, signing (batched, recorded in the ledger before anything leaves),\n"
		"files written and committed on the board, read back and proof of possession,\n"
		"DONE. Runs until SIGINT or SIGTERM (boards in flight are abandoned safely: their\n"
		"next run resumes them); SIGHUP reloads the profiles (one that comes while the\n"
		"station starts is carried out once it runs). With an 'http' section it\n"
		"also answers lmp-device-register, and serves the operator console (a page for\n"
		"the line's screen: every slot, the action for each failure, the ledger) at\n"
		"URL/console unless the section says 'console: false'.\n"
		"\n"
		"  -c, --config FILE   station configuration (ca, ledger, profiles, slots, pool,\n"
		"                      timeouts, retries, outputs)\n"
		"      --events FILE   append the JSON Lines event stream to FILE (default: the\n"
		"                      configuration's outputs.events)\n"
		"      --json          write the event stream to stdout (no live view)\n"
		"      --until-idle    stop once a board was handled, none is busy, and every\n"
		"                      slot with a port has handled one or heard no board for\n"
		"                      10 s; a slots glob that matches no port is an error here\n"
		"                      (without it, a warning: ports that match later are slots)\n"
		"      --boards N      stop once N boards have finished (passed or failed)\n"
		"      --max-seconds S stop after S seconds\n"
		"      --view          draw the live view even when stdout is not a terminal\n"
		"                      (by default it is drawn on a terminal; while it is on, log\n"
		"                      lines show at its bottom, and its warnings again at exit;\n"
		"                      NO_COLOR=1 draws it without colours)\n"
		"      --no-view       never draw it (log lines only)\n"
		"  -v, --verbose       log every state transition\n"
		"  -h, --help          this text\n"
		"\n"
		"Exit status: 0 when every board that finished passed, 1 when one failed, the\n"
		"station could not start, or (--until-idle) a slots glob matched no port; 2 on a\n"
		"bad command line.\n");
}

/* The live view, which the engine starts once its loop runs and stops before the summary
 * (struct st_engine_watcher); each frame shows the engine's slots as they are. */
struct live_view {
	struct st_engine *e;
	struct st_view *view;
	struct st_pool_stats pool; /* the frame's copy */
};

static void view_input(struct st_view_input *in, void *arg)
{
	struct live_view *lv = arg;
	struct st_engine_snapshot snap;

	in->station = st_engine_station(lv->e);
	in->slots = NULL;
	in->nslots = 0;
	if (st_engine_snapshot(lv->e, &snap) == 0) {
		in->slots = (const struct st_slot_info *const *)snap.slots;
		in->nslots = snap.nslots;
	}
	in->tally = st_engine_tally(lv->e);
	in->pool = st_engine_pool_stats(lv->e, &lv->pool) == 0 ? &lv->pool : NULL;
	in->started = st_engine_started(lv->e);
	in->stopping = st_engine_stopping(lv->e);
	in->auths = st_engine_auths(lv->e);
}

static int view_start(void *arg, struct st_engine *e, uv_loop_t *loop)
{
	struct live_view *lv = arg;
	int rc;

	lv->e = e;
	/* While it is on, the view takes the log lines (its bottom lines) off its terminal. */
	rc = st_view_new(loop, view_input, lv, &lv->view);
	if (rc < 0)
		st_warn("no live view: out of memory");
	return rc;
}

static void view_stop(void *arg)
{
	struct live_view *lv = arg;

	st_view_close(lv->view);
	lv->view = NULL;
}

int st_cmd_run(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "events", required_argument, NULL, 'e' },
		{ "json", no_argument, NULL, 'j' },
		{ "until-idle", no_argument, NULL, 'i' },
		{ "boards", required_argument, NULL, 'b' },
		{ "max-seconds", required_argument, NULL, 'm' },
		{ "view", no_argument, NULL, 'V' },
		{ "no-view", no_argument, NULL, 'N' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct st_engine_options o;
	struct st_engine *e = NULL;
	struct live_view lv;
	const struct st_engine_watcher watcher = { view_start, view_stop, &lv };
	const char *config = NULL;
	char err[1024], *end;
	int c, rc, view = -1; /* -1: when stdout is a terminal; 0: never; 1: always */

	memset(&lv, 0, sizeof(lv));
	memset(&o, 0, sizeof(o));
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":c:vh", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config = optarg;
			break;
		case 'e':
			o.events_path = optarg;
			break;
		case 'j':
			o.json = 1;
			break;
		case 'i':
			o.until_idle = 1;
			break;
		case 'b':
			o.boards = strtoul(optarg, &end, 10);
			if (!optarg[0] || *end || o.boards == 0 || optarg[0] == '-') {
				st_err("--boards '%s': expected a number of boards, 1 or more", optarg);
				return 2;
			}
			break;
		case 'm':
			o.max_seconds = strtod(optarg, &end);
			if (!optarg[0] || *end || !(o.max_seconds > 0)) {
				st_err("--max-seconds '%s': expected a number of seconds above 0",
				       optarg);
				return 2;
			}
			break;
		case 'V':
			view = 1;
			break;
		case 'N':
			view = 0;
			break;
		case 'v':
			o.verbose = 1;
			st_log_set_level(ST_LOG_DEBUG);
			break;
		case 'h':
			run_usage(stdout);
			return 0;
		case ':':
			st_err("option %s needs a value", argv[optind - 1]);
			return 2;
		default:
			st_err("unknown option '%s'; see 'station run --help'", argv[optind - 1]);
			return 2;
		}
	}
	if (optind < argc) {
		st_err("unexpected argument '%s'; see 'station run --help'", argv[optind]);
		return 2;
	}
	if (!config) {
		st_err("run needs -c STATION.yaml; see 'station run --help'");
		return 2;
	}
	if (o.json && view == 1) {
		st_err("--json and --view both want stdout; choose one");
		return 2;
	}
	if (view < 0)
		view = !o.json && st_view_usable(STDOUT_FILENO) &&
		       st_log_get_format() == ST_LOG_FORMAT_TEXT;
	if (view)
		o.watcher = &watcher;
	rc = st_engine_new(config, &o, &e, err, sizeof(err));
	if (rc < 0) {
		st_err("%s", err);
		return 1;
	}
	rc = st_engine_run(e);
	st_engine_free(e);
	return rc;
}
