/* `station serve`: the registration server alone (http.h), for lines whose boards register
 * over the network with lmp-device-register and for testing the server without the serial
 * engine. Same configuration, CA, signer, profiles, pool and ledger as `station run`. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <uv.h>

#include "ca.h"
#include "commands.h"
#include "config.h"
#include "console.h"
#include "err.h"
#include "http.h"
#include "log.h"
#include "pool.h"
#include "profile.h"
#include "profiles.h"
#include "signer.h"

struct serve {
	uv_loop_t loop;
	const char *config_path;
	struct st_config *cfg;
	char station[ST_POOL_MAX_NAME + 1];
	struct st_ca *ca;
	struct drv_signer *signer;
	struct st_pool *pool;
	struct st_profiles *profiles;
	struct st_http *http;
	struct st_console *console; /* the operator console (http: console:) */
	uv_signal_t sig_int, sig_term, sig_hup;
	int stopping;
	uint64_t started;
};

static void serve_usage(FILE *out)
{
	fprintf(out,
		"usage: station serve -c STATION.yaml [-v]\n"
		"\n"
		"Serves the registration API of lmp-device-register (HEAD and POST /sign) and the\n"
		"line monitors' GET /status and GET /metrics on the configuration's 'http' address\n"
		"(default %s), with the same CA, profiles, checks, signing pool and ledger as\n"
		"'station run'. Beyond loopback it refuses to start unless clients authenticate\n"
		"(client_ca, or tokens over HTTPS) or the configuration says\n"
		"'allow_unauthenticated: true'. A token registers any device; a client\n"
		"certificate only the device it names. Beyond loopback /status, /metrics and the\n"
		"console need a token. On loopback over HTTP it answers only requests\n"
		"addressed to this machine (localhost, 127.0.0.1, [::1], its host name), and it\n"
		"takes no registration from a web browser on any address. Prints\n"
		"'station: serving on URL' once it listens.\n"
		"The operator console (the signing pool, the ledger search and the day's report)\n"
		"is at URL/console unless the configuration says 'console: false'.\n"
		"Runs until SIGINT or SIGTERM; SIGHUP reloads the profiles and authorizations.\n"
		"\n"
		"  -c, --config FILE   station configuration (ca, ledger, profiles, pool, http)\n"
		"  -v, --verbose       log every request's details\n"
		"  -h, --help          this text\n"
		"\n"
		"Exit status: 0 after a clean stop, 1 when the server could not start, 2 on a bad\n"
		"command line.\n",
		ST_HTTP_DEFAULT_LISTEN);
}

/* The production authorizations the configuration names (auth.h), into set. */
static int load_authorizations(const struct serve *s, const struct st_config *cfg,
			       struct st_profiles *set, char *err, size_t errlen)
{
	struct st_auth_env env = { s->ca->root, s->ca->ou, s->station, 0, 0,
				   st_ledger_spec_is_file(cfg->ledger) };

	if (!cfg->authorizations)
		return 0;
	return st_auth_set_load(cfg->authorizations, &env, &set->auths, NULL, err, errlen);
}

static struct st_profiles *current_profiles(void *arg)
{
	struct serve *s = arg;

	return st_profiles_ref(s->profiles);
}

/* SIGHUP: the profiles as the configuration file names them now, and the authorizations
 * read again; requests in flight keep the set they started with. */
static void reload(struct serve *s)
{
	struct st_profiles *old = st_profiles_ref(s->profiles);
	char err[ST_ERR_MAX];

	if (st_profiles_reload(s->config_path, NULL, 0, &s->profiles) < 0) {
		st_profiles_unref(old);
		return;
	}
	if (s->profiles != old && load_authorizations(s, s->cfg, s->profiles, err, sizeof(err)) < 0) {
		st_err("SIGHUP: %s; keeping the authorizations in force", err);
		s->profiles->auths = old ? st_auth_set_ref(old->auths) : NULL;
	}
	st_profiles_unref(old);
	if (s->profiles->auths)
		st_pool_auth_sync(s->pool, s->profiles->auths);
}

static void on_signal(uv_signal_t *sig, int signum)
{
	struct serve *s = sig->data;

	if (signum == SIGHUP) {
		/* Requests in flight keep the set they started with. */
		reload(s);
		return;
	}
	if (s->stopping)
		return;
	s->stopping = 1;
	st_notice("%s: stopping", strsignal(signum));
	/* The server first (it ends the console's pages): it leaves the pool alone from here
	 * on but for what it left in it, which the pool finishes and records before it
	 * closes. */
	st_http_close(s->http, NULL, NULL);
	st_console_close(s->console);
	s->console = NULL;
	st_pool_close(s->pool, NULL, NULL);
	uv_close((uv_handle_t *)&s->sig_int, NULL);
	uv_close((uv_handle_t *)&s->sig_term, NULL);
	uv_close((uv_handle_t *)&s->sig_hup, NULL);
}

/* The console of `station serve`: no slots, no tallies; the pool until it closes. */
static int console_pool(void *arg, struct st_pool_stats *out)
{
	struct serve *s = arg;

	if (s->stopping || !s->pool)
		return -1;
	st_pool_stats(s->pool, out);
	return 0;
}

static int console_stopping(void *arg)
{
	return ((struct serve *)arg)->stopping;
}

static uint64_t console_started(void *arg)
{
	return ((struct serve *)arg)->started;
}

static const struct st_auth_set *console_auths(void *arg)
{
	struct serve *s = arg;

	return s->profiles ? s->profiles->auths : NULL;
}

static int start_pool(struct serve *s, char *err, size_t errlen)
{
	struct st_pool_config pc;

	st_pool_config_from(s->cfg, s->station, &pc);
	return st_pool_new(&s->loop, &pc, s->ca, s->signer, &s->pool, err, errlen);
}

static void close_any(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

int st_cmd_serve(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct serve s;
	struct st_config_http defaults;
	struct st_http_env env;
	struct rlimit rl;
	int loop_ready = 0, rc = 1, c;
	char err[1024];

	memset(&s, 0, sizeof(s));
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":c:vh", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			s.config_path = optarg;
			break;
		case 'v':
			st_log_set_level(ST_LOG_DEBUG);
			break;
		case 'h':
			serve_usage(stdout);
			return 0;
		case ':':
			st_err("option %s needs a value", argv[optind - 1]);
			return 2;
		default:
			st_err("unknown option '%s'; see 'station serve --help'", argv[optind - 1]);
			return 2;
		}
	}
	if (optind < argc) {
		st_err("unexpected argument '%s'; see 'station serve --help'", argv[optind]);
		return 2;
	}
	if (!s.config_path) {
		st_err("serve needs -c STATION.yaml");
		return 2;
	}
	if (st_config_load(s.config_path, stderr, &s.cfg, err, sizeof(err)) < 0) {
		st_err("%s", err);
		return 1;
	}
	if (st_config_check_files(s.cfg, ST_CONFIG_FILES_CA | ST_CONFIG_FILES_PROFILES |
					       ST_CONFIG_FILES_HTTP,
				  stderr, err, sizeof(err)) < 0) {
		st_err("%s", err);
		st_config_free(s.cfg);
		return 1;
	}
	if (s.cfg->station)
		snprintf(s.station, sizeof(s.station), "%s", s.cfg->station);
	else if (gethostname(s.station, sizeof(s.station) - 1) != 0 || !s.station[0])
		snprintf(s.station, sizeof(s.station), "station");
	signal(SIGPIPE, SIG_IGN);
	/* One descriptor per connection. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (uv_loop_init(&s.loop) != 0) {
		st_err("cannot create the event loop");
		goto out;
	}
	loop_ready = 1;
	/* SIGHUP is caught from here: a reload asked for while the server sets up (an HSM login,
	 * the ledger being opened) is carried out when the loop starts, instead of the signal's
	 * default action ending it. SIGINT and SIGTERM keep theirs until the loop runs, so that
	 * a set-up that hangs can still be stopped. */
	uv_signal_init(&s.loop, &s.sig_int);
	uv_signal_init(&s.loop, &s.sig_term);
	uv_signal_init(&s.loop, &s.sig_hup);
	s.sig_int.data = s.sig_term.data = s.sig_hup.data = &s;
	uv_signal_start(&s.sig_hup, on_signal, SIGHUP);
	if (st_ca_load(s.cfg->ca.cert, s.cfg->ca.chain, s.cfg->ca.root, &s.ca, err,
		       sizeof(err)) < 0) {
		st_err("%s", err);
		goto out;
	}
	if (st_profiles_load(s.cfg, NULL, 0, &s.profiles, err, sizeof(err)) < 0 ||
	    load_authorizations(&s, s.cfg, s.profiles, err, sizeof(err)) < 0) {
		st_err("%s", err);
		goto out;
	}
	if (st_config_open_signer(s.cfg, &s.signer, err, sizeof(err)) < 0 ||
	    st_ca_match_signer(s.ca, s.signer, err, sizeof(err)) < 0 ||
	    start_pool(&s, err, sizeof(err)) < 0) {
		st_err("%s", err);
		goto out;
	}
	if (s.profiles->auths && st_pool_auth_sync(s.pool, s.profiles->auths) < 0) {
		st_err("authorizations: cannot read their counts from the ledger");
		goto out;
	}
	memset(&defaults, 0, sizeof(defaults));
	defaults.console = 1;
	memset(&env, 0, sizeof(env));
	env.pool = s.pool;
	env.ca = s.ca;
	env.profiles = current_profiles;
	env.arg = &s;
	if (st_http_start(&s.loop, s.cfg->http.enabled ? &s.cfg->http : &defaults, &env, &s.http,
			  err, sizeof(err)) < 0) {
		st_err("%s", err);
		goto out;
	}
	s.started = uv_hrtime();
	if (s.cfg->http.enabled ? s.cfg->http.console : defaults.console) {
		struct st_console_source src = {
			s.station, s.cfg->ledger, NULL, NULL, console_pool, console_stopping,
			console_started, NULL, console_auths, &s,
		};

		if (st_console_new(&s.loop, &src, &s.console) < 0) {
			st_err("out of memory");
			goto out;
		}
		st_http_set_console(s.http, s.console, &st_console_http);
	}
	uv_signal_start(&s.sig_int, on_signal, SIGINT);
	uv_signal_start(&s.sig_term, on_signal, SIGTERM);
	st_notice("station %s: serving on %s, ledger %s", s.station, st_http_url(s.http),
		  s.cfg->ledger);
	printf("station: serving on %s\n", st_http_url(s.http));
	fflush(stdout);
	uv_run(&s.loop, UV_RUN_DEFAULT);
	s.pool = NULL;
	s.http = NULL;
	rc = 0;
out:
	/* A set-up that failed: the loops below must not wait on the signal. */
	if (loop_ready && !uv_is_closing((uv_handle_t *)&s.sig_hup))
		uv_signal_stop(&s.sig_hup);
	if (s.http)
		st_http_close(s.http, NULL, NULL);
	st_console_close(s.console);
	if (s.pool)
		st_pool_close(s.pool, NULL, NULL);
	if (loop_ready) {
		uv_run(&s.loop, UV_RUN_DEFAULT);
		uv_walk(&s.loop, close_any, NULL);
		uv_run(&s.loop, UV_RUN_DEFAULT);
		if (uv_loop_close(&s.loop) != 0)
			st_warn("the event loop still had handles at exit");
	}
	if (s.signer)
		drv_signer_close(s.signer);
	st_profiles_unref(s.profiles);
	st_ca_free(s.ca);
	st_config_free(s.cfg);
	return rc;
}
