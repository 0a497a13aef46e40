#include "engine.h"

#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <uv.h>

#include "ca.h"
#include "config.h"
#include "console.h"
#include "err.h"
#include "http.h"
#include "log.h"
#include "operator.h"
#include "profile.h"
#include "signer.h"

#define MAX_SLOTS 4096
#define TICK_MS 100
#define DEFAULT_RESCAN_MS 1000
/* Columns of the summary's lines. */
#define SUMMARY_COLS 80
/* The event stream's lines gather this long and go out with one write (st_events_set_gather):
 * a reader sees them at most this late, and a busy line spends no write per loop turn. */
#define EVENTS_GATHER_MS 20

struct st_engine {
	uv_loop_t loop;
	int loop_ready;
	char *config_path;
	struct st_config *cfg;
	struct st_engine_options opt;
	char station[ST_POOL_MAX_NAME + 1];

	struct st_ca *ca;
	char *chain_pem, *root_pem;
	struct drv_signer *signer;
	struct st_pool *pool;
	struct st_http *http; /* the registration server (config http:), until stopping */
	struct st_console *console; /* the operator console on it (http: console:) */
	struct st_events *events;
	struct st_profiles *profiles;
	struct st_slot_env env;

	struct st_slot **slots;
	size_t nslots, cap;
	int have_globs;
	unsigned char *glob_matched; /* per configured slots entry: its glob matched a port */

	uv_signal_t sig_int, sig_term, sig_hup;
	uv_timer_t tick, rescan, stop_timer;
	int handles; /* engine handles (signals, timers) not yet closed */
	int hup_on;  /* sig_hup is started and not yet closed */
	int watching; /* opt.watcher was started */
	/* The last snapshot (st_engine_snapshot()). */
	struct st_slot_info *info;
	struct st_slot_info **info_ptr;
	size_t info_cap;
	struct st_pool_stats info_pool;

	uint64_t started;
	int stopping;
	int pool_closed;
	unsigned slots_open; /* slots not yet closed */
	char stop_reason[128];
	int paused_reported;
	json_t *abandoned; /* [{"slot", "state"}] of the boards the stop abandoned */
};

/* ---- What a watcher sees ------------------------------------------------------------ */

int st_engine_snapshot(struct st_engine *e, struct st_engine_snapshot *out)
{
	memset(out, 0, sizeof(*out));
	out->station = e->station;
	out->tally = st_events_tally(e->events);
	if (e->pool && !e->pool_closed) {
		st_pool_stats(e->pool, &e->info_pool);
		out->pool = &e->info_pool;
	}
	out->started = e->started;
	out->stopping = e->stopping;
	if (e->nslots > e->info_cap) {
		struct st_slot_info *info = realloc(e->info, e->cap * sizeof(*info));
		struct st_slot_info **ptr = NULL;

		if (info) {
			e->info = info;
			ptr = realloc(e->info_ptr, e->cap * sizeof(*ptr));
		}
		if (!ptr)
			return ST_E_NOMEM;
		e->info_ptr = ptr;
		e->info_cap = e->cap;
	}
	for (size_t i = 0; i < e->nslots; i++) {
		st_slot_info(e->slots[i], &e->info[i]);
		e->info_ptr[i] = &e->info[i];
	}
	out->slots = e->info_ptr;
	out->nslots = e->nslots;
	return 0;
}

const struct st_tally *st_engine_tally(const struct st_engine *e)
{
	return st_events_tally(e->events);
}

int st_engine_pool_stats(const struct st_engine *e, struct st_pool_stats *out)
{
	if (!e->pool || e->pool_closed)
		return -1;
	st_pool_stats(e->pool, out);
	return 0;
}

const char *st_engine_station(const struct st_engine *e)
{
	return e->station;
}

uint64_t st_engine_started(const struct st_engine *e)
{
	return e->started;
}

int st_engine_stopping(const struct st_engine *e)
{
	return e->stopping;
}

/* ---- The operator console's view of the engine ---------------------------------------- */

static const struct st_slot_info *const *console_slots(void *arg, size_t *n)
{
	struct st_engine_snapshot snap;

	*n = 0;
	if (st_engine_snapshot(arg, &snap) != 0)
		return NULL;
	*n = snap.nslots;
	return (const struct st_slot_info *const *)snap.slots;
}

static const struct st_tally *console_tally(void *arg)
{
	return st_engine_tally(arg);
}

static int console_pool(void *arg, struct st_pool_stats *out)
{
	return st_engine_pool_stats(arg, out);
}

static int console_stopping(void *arg)
{
	return st_engine_stopping(arg);
}

static uint64_t console_started(void *arg)
{
	return st_engine_started(arg);
}

static const struct st_auth_set *console_auths(void *arg)
{
	return st_engine_auths(arg);
}

static size_t console_log(void *arg, unsigned idx, char *buf, size_t cap)
{
	struct st_engine *e = arg;

	return idx < e->nslots ? st_slot_console(e->slots[idx], buf, cap) : 0;
}

static int start_console(struct st_engine *e, char *err, size_t errlen)
{
	struct st_console_source src = {
		e->station,	  e->cfg->ledger,   console_slots,	   console_tally,
		console_pool,	  console_stopping, console_started, console_log, console_auths, e,
	};

	if (st_console_new(&e->loop, &src, &e->console) < 0)
		return st_errf(err, errlen, ST_E_NOMEM, "out of memory");
	st_http_set_console(e->http, e->console, &st_console_http);
	/* The pages get every line of the event stream, also without --events. */
	st_events_set_tap(e->events, st_console_event_line, e->console);
	return 0;
}

/* The console's pages are told the station stops; their streams end with the server. */
static void close_console(struct st_engine *e)
{
	st_console_stop(e->console);
	st_http_close(e->http, NULL, NULL);
	e->http = NULL;
	if (e->events)
		st_events_set_tap(e->events, NULL, NULL);
	st_console_close(e->console);
	e->console = NULL;
}

const struct st_auth_set *st_engine_auths(const struct st_engine *e)
{
	return e->profiles ? e->profiles->auths : NULL;
}

/* ---- Profiles ------------------------------------------------------------------------- */

/* The slots' own profile files, for st_profiles_load() and st_profiles_reload(); NULL when
 * out of memory. Free it. */
static const char **slot_profiles(const struct st_engine *e, size_t *n)
{
	const char **v = calloc(e->nslots + 1, sizeof(*v));

	*n = 0;
	for (size_t i = 0; v && i < e->nslots; i++) {
		if (e->slots[i]->profile_path)
			v[(*n)++] = e->slots[i]->profile_path;
	}
	return v;
}

/* The production authorizations the configuration names, into set (refusals are logged by
 * the loader; a directory that cannot be read fails), and a warning for each profile that
 * requires one when none loaded covers its SKU: its boards would all fail. */
static int load_authorizations(const struct st_engine *e, const struct st_config *cfg,
			       struct st_profiles *set, char *err, size_t errlen)
{
	struct st_auth_env env = { e->ca->root, e->ca->ou, e->station, 0, 0,
				   st_ledger_spec_is_file(cfg->ledger) };
	struct st_auth *cand[1];
	const struct st_profile *p;
	char msg[256];
	size_t ndir = set->dir ? st_profile_set_count(set->dir) : 0;
	int rc = 0;

	if (cfg->authorizations)
		rc = st_auth_set_load(cfg->authorizations, &env, &set->auths, NULL, err, errlen);
	for (size_t i = 0; rc == 0 && i < ndir + set->n + set->nfixed + 1; i++) {
		p = i < ndir ? st_profile_set_get(set->dir, i) :
		    i < ndir + set->n ? set->list[i - ndir] :
		    i < ndir + set->n + set->nfixed ? set->fixed[i - ndir - set->n] :
						       set->deflt;
		if (p && p->policy.authorization_required &&
		    st_auth_set_pick(set->auths, p->sku, 0, cand, 1, msg, sizeof(msg)) < 0)
			st_warn("profile %s requires a production authorization: %s; its boards "
				"will fail until one is in %s and the station reloads (SIGHUP)",
				p->sku, msg,
				cfg->authorizations ? cfg->authorizations :
						      "a directory named by 'authorizations:'");
	}
	return rc;
}

static struct st_profiles *current_profiles(void *arg)
{
	struct st_engine *e = arg;

	return st_profiles_ref(e->profiles);
}

static void reload_profiles(struct st_engine *e)
{
	size_t nfixed;
	const char **fixed = slot_profiles(e, &nfixed);
	struct st_profiles *old;
	char err[ST_ERR_MAX];
	int n;

	if (!fixed) {
		st_err("SIGHUP: out of memory; keeping the profiles in force");
		return;
	}
	old = st_profiles_ref(e->profiles);
	n = st_profiles_reload(e->config_path, fixed, nfixed, &e->profiles);
	free(fixed);
	if (n < 0) {
		st_profiles_unref(old);
		return;
	}
	/* The authorizations are read again with the profiles (the directory the configuration
	 * the station started with names); when they cannot be, the ones in force stay. */
	if (e->profiles != old &&
	    load_authorizations(e, e->cfg, e->profiles, err, sizeof(err)) < 0) {
		st_err("SIGHUP: %s; keeping the authorizations in force", err);
		e->profiles->auths = old ? st_auth_set_ref(old->auths) : NULL;
	}
	st_profiles_unref(old);
	if (e->profiles->auths && st_pool_auth_sync(e->pool, e->profiles->auths) < 0)
		st_warn("SIGHUP: the authorizations' counts are not read from the ledger");
	{
		json_t *o = json_object();

		if (o) {
			json_object_set_new(o, "event", json_string("reload"));
			json_object_set_new(o, "profiles", json_integer((json_int_t)n));
			st_events_emit(e->events, o);
		}
	}
}

/* ---- Slots ---------------------------------------------------------------------------- */

static struct st_slot *find_slot_path(const struct st_engine *e, const char *path)
{
	for (size_t i = 0; i < e->nslots; i++) {
		if (strcmp(e->slots[i]->path, path) == 0)
			return e->slots[i];
	}
	return NULL;
}

static struct st_slot *find_slot_name(const struct st_engine *e, const char *name)
{
	for (size_t i = 0; i < e->nslots; i++) {
		if (strcmp(e->slots[i]->name, name) == 0)
			return e->slots[i];
	}
	return NULL;
}

/* Expands a name template: {basename} and {parent} (the last two components of a port's
 * path), {name} (a board map's), {index}. */
static void expand_name(char *out, size_t outlen, const char *tmpl, const char *path,
			const char *name, size_t index)
{
	char parent[ST_SLOT_MAX_NAME + 1] = "";
	const char *basename = path, *slash = strrchr(path, '/');
	size_t o = 0;

	if (slash) {
		const char *p = slash;

		basename = slash + 1;
		while (p > path && p[-1] != '/')
			p--;
		snprintf(parent, sizeof(parent), "%.*s", (int)(slash - p), p);
	}

	for (const char *t = tmpl; *t && o + 1 < outlen;) {
		const char *val = NULL;
		char idx[24];
		size_t skip = 0;

		if (strncmp(t, "{basename}", 10) == 0) {
			val = basename;
			skip = 10;
		} else if (strncmp(t, "{parent}", 8) == 0) {
			val = parent;
			skip = 8;
		} else if (strncmp(t, "{name}", 6) == 0) {
			val = name;
			skip = 6;
		} else if (strncmp(t, "{index}", 7) == 0) {
			snprintf(idx, sizeof(idx), "%zu", index);
			val = idx;
			skip = 7;
		}
		if (val) {
			for (; *val && o + 1 < outlen; val++)
				out[o++] = *val;
			t += skip;
		} else {
			out[o++] = *t++;
		}
	}
	out[o] = 0;
}

/* Adds a slot; a generated name that is taken gets a suffix, an explicit one is an error. */
static int add_slot(struct st_engine *e, const char *name, int explicit_name, const char *path,
		    const struct st_config_slot *def, const char *backend, char *err,
		    size_t errlen)
{
	struct st_slot_def sd;
	struct st_slot *s;
	char unique[ST_SLOT_MAX_NAME + 1];
	int rc;

	if (find_slot_path(e, path))
		return explicit_name ?
			       st_errf(err, errlen, ST_E_CONFIG, "%s: port %s is already a slot",
				       def->where, path) :
			       0;
	snprintf(unique, sizeof(unique), "%s", name);
	for (unsigned k = 2; find_slot_name(e, unique); k++) {
		if (explicit_name)
			return st_errf(err, errlen, ST_E_CONFIG, "%s: slot name %s is already used",
				       def->where, name);
		snprintf(unique, sizeof(unique), "%.56s-%u", name, k);
	}
	if (e->nslots >= MAX_SLOTS)
		return st_errf(err, errlen, ST_E_CONFIG, "more than %d slots", MAX_SLOTS);
	if (e->nslots == e->cap) {
		size_t cap = e->cap ? 2 * e->cap : 64;
		struct st_slot **v = realloc(e->slots, cap * sizeof(*v));

		if (!v)
			return st_errf(err, errlen, ST_E_NOMEM, "out of memory");
		e->slots = v;
		e->cap = cap;
	}
	memset(&sd, 0, sizeof(sd));
	sd.name = unique;
	sd.path = path;
	sd.backend = backend && strcmp(backend, "auto") != 0 ? backend : NULL;
	sd.baud = (int)def->baud;
	sd.max_baud = (int)def->max_baud;
	sd.flow = (enum drv_port_flow)def->flow;
	sd.profile = def->profile;
	rc = st_slot_new(&e->env, (unsigned)e->nslots, &sd, &s, err, errlen);
	if (rc < 0)
		return rc;
	e->slots[e->nslots++] = s;
	e->slots_open++;
	if (e->profiles && s->profile_path) {
		/* A slot found by a rescan may name a profile not loaded yet. */
		rc = st_profiles_add_fixed(e->profiles, s->profile_path, err, errlen);
		if (rc < 0)
			st_err("slot %s: %s", s->name, err);
	}
	return 0;
}

/* Adds a slot for every match of the glob entries that is not one yet. Returns how many. */
static size_t scan_globs(struct st_engine *e)
{
	size_t added = 0;
	char err[512];

	for (size_t i = 0; i < e->cfg->n_slots; i++) {
		const struct st_config_slot *def = &e->cfg->slots[i];
		glob_t g;

		if (def->kind != ST_CONFIG_SLOT_GLOB)
			continue;
		memset(&g, 0, sizeof(g));
		if (glob(def->glob, 0, NULL, &g) != 0) {
			globfree(&g);
			continue;
		}
		if (g.gl_pathc > 0)
			e->glob_matched[i] = 1;
		for (size_t k = 0; k < g.gl_pathc; k++) {
			const char *path = g.gl_pathv[k];
			char name[ST_SLOT_MAX_NAME + 1];
			size_t before = e->nslots;

			if (find_slot_path(e, path))
				continue;
			expand_name(name, sizeof(name), def->name, path, "", k);
			if (add_slot(e, name, 0, path, def, def->backend, err, sizeof(err)) < 0) {
				st_err("%s", err);
				continue;
			}
			if (e->nslots > before) {
				added++;
				if (e->loop_ready && !e->stopping) {
					st_notice("slot %s: new port %s", e->slots[before]->name, path);
					st_slot_start(e->slots[before]);
				}
			}
		}
		globfree(&g);
	}
	return added;
}

static int build_slots(struct st_engine *e, char *err, size_t errlen)
{
	int rc;

	for (size_t i = 0; i < e->cfg->n_slots; i++) {
		const struct st_config_slot *def = &e->cfg->slots[i];

		switch (def->kind) {
		case ST_CONFIG_SLOT_PORT:
			rc = add_slot(e, def->name, 1, def->port, def, def->backend, err, errlen);
			if (rc < 0)
				return rc;
			break;
		case ST_CONFIG_SLOT_GLOB:
			e->have_globs = 1;
			break;
		case ST_CONFIG_SLOT_BOARD_MAP: {
			struct st_board_map *map = NULL;

			rc = st_board_map_load(def->board_map, stderr, &map, err, errlen);
			if (rc < 0)
				return rc;
			for (size_t k = 0; k < map->n && rc == 0; k++) {
				const struct st_board_map_entry *b = &map->boards[k];
				const char *backend = def->backend;
				char name[ST_SLOT_MAX_NAME + 1];

				if (strcmp(backend, "auto") == 0 && b->backend && b->backend[0])
					backend = b->backend;
				expand_name(name, sizeof(name), def->name, b->port, b->name, k);
				rc = add_slot(e, name, 0, b->port, def, backend, err, errlen);
			}
			st_board_map_free(map);
			if (rc < 0)
				return rc;
			break;
		}
		}
	}
	if (e->have_globs) {
		e->glob_matched = calloc(e->cfg->n_slots, 1);
		if (!e->glob_matched)
			return st_errf(err, errlen, ST_E_NOMEM, "out of memory");
		scan_globs(e);
	}
	return 0;
}

/* Warns about each slots glob that has matched no port so far, naming its place in the
 * configuration; returns the first such entry, or NULL. A station that runs until stopped
 * keeps rescanning, since ports come with the hardware (a hub plugged in after the station
 * started). Under --until-idle nothing is waited for, so such a glob is a mistake to be
 * told about: with no slot at all the run stops at once with an error, else it runs the
 * slots it has and exits non-zero (st_engine_new(), st_engine_run()). */
static const struct st_config_slot *warn_unmatched_globs(struct st_engine *e, int at_end)
{
	const struct st_config_slot *first = NULL;
	unsigned rescan = e->cfg->timeouts.rescan ? e->cfg->timeouts.rescan : DEFAULT_RESCAN_MS;

	for (size_t i = 0; e->have_globs && i < e->cfg->n_slots; i++) {
		const struct st_config_slot *def = &e->cfg->slots[i];

		if (def->kind != ST_CONFIG_SLOT_GLOB || e->glob_matched[i])
			continue;
		if (!first)
			first = def;
		if (at_end)
			st_err("%s: slots glob %s matched no port during the run", def->where,
			       def->glob);
		else if (e->opt.until_idle)
			st_warn("%s: slots glob %s matches no port", def->where, def->glob);
		else
			st_warn("%s: slots glob %s matches no port yet; a slot appears for each "
				"port that matches it (rescanned every %u ms)", def->where,
				def->glob, rescan);
	}
	return first;
}

/* ---- Stopping ------------------------------------------------------------------------- */

static void on_engine_handle_closed(uv_handle_t *h)
{
	struct st_engine *e = h->data;

	e->handles--;
}

static void on_slot_closed(struct st_slot *s)
{
	struct st_engine *e = s->env->arg;

	e->slots_open--;
}

/* The summary for people, every line within SUMMARY_COLS (but a long station name): the
 * totals, boards/hour as the live view shows it, each failure reason in words with its
 * action, and the slots whose boards the stop abandoned. */
static void print_summary(struct st_engine *e)
{
	const struct st_tally *t = st_events_tally(e->events);
	double secs = (double)(uv_hrtime() - e->started) / 1e9;
	size_t col = 0;

	if (e->opt.json)
		return;
	printf("station %s: %llu boards in %.1f s, %lld " ST_BPH_LABEL "\n", e->station,
	       (unsigned long long)t->boards, secs, st_tally_bph(t));
	printf("  %llu passed (%llu delivered again), %llu failed, %llu abandoned\n",
	       (unsigned long long)t->passed, (unsigned long long)t->reused,
	       (unsigned long long)t->failed, (unsigned long long)t->abandoned);
	for (size_t i = 0; i < t->nreasons; i++) {
		const struct st_action *a = st_action_for(t->reasons[i].reason);

		printf("  failed %llu: %s: %s\n", (unsigned long long)t->reasons[i].count, a->words,
		       st_action_class_name(a->cls));
	}
	for (size_t i = 0; i < json_array_size(e->abandoned); i++) {
		json_t *o = json_array_get(e->abandoned, i);
		const char *slot = json_string_value(json_object_get(o, "slot"));
		const char *state = json_string_value(json_object_get(o, "state"));
		size_t w = strlen(slot) + strlen(state) + 4;

		if (i == 0) {
			col = (size_t)printf("  abandoned (resumed on their next run):");
		} else if (col + w > SUMMARY_COLS) {
			printf(",\n   ");
			col = 3;
		} else {
			col += (size_t)printf(",");
		}
		col += (size_t)printf(" %s (%s)", slot, state);
	}
	if (col)
		printf("\n");
	if (st_events_dropped(e->events))
		printf("  events dropped: %llu (the event stream's reader did not keep up)\n",
		       (unsigned long long)st_events_dropped(e->events));
	fflush(stdout);
}

static void on_pool_closed(void *arg)
{
	struct st_engine *e = arg;
	struct st_pool_stats ps;
	json_t *extra;

	e->pool_closed = 1;
	memset(&ps, 0, sizeof(ps));
	extra = json_object();
	if (extra) {
		json_object_set_new(extra, "slots", json_integer((json_int_t)e->nslots));
		json_object_set_new(extra, "stop_reason", json_string(e->stop_reason));
		if (e->abandoned)
			json_object_set(extra, "abandoned_slots", e->abandoned);
	}
	if (e->watching) {
		e->watching = 0;
		e->opt.watcher->stop(e->opt.watcher->arg);
	}
	st_events_summary(e->events, e->started, uv_hrtime(), extra);
	json_decref(extra);
	print_summary(e);
	/* The stream's reader does not keep the loop going: what it has not taken by the end
	 * gets a last chance in st_events_close(). */
	st_events_detach(e->events);
	for (size_t i = 0; i < e->nslots; i++)
		st_slot_close(e->slots[i], on_slot_closed);
	uv_close((uv_handle_t *)&e->sig_int, on_engine_handle_closed);
	uv_close((uv_handle_t *)&e->sig_term, on_engine_handle_closed);
	uv_close((uv_handle_t *)&e->sig_hup, on_engine_handle_closed);
	e->hup_on = 0;
	uv_close((uv_handle_t *)&e->tick, on_engine_handle_closed);
	uv_close((uv_handle_t *)&e->rescan, on_engine_handle_closed);
	uv_close((uv_handle_t *)&e->stop_timer, on_engine_handle_closed);
}

/* Stops every slot. A board in flight is abandoned unless it passes on the spot (a verified
 * one does): its slot and the state it was in are named in the log and in the summary, so
 * that the operator knows which fixtures to leave alone until the next run. */
static void stop_slots(struct st_engine *e)
{
	const char **word = calloc(e->nslots ? e->nslots : 1, sizeof(*word));
	uint64_t now = uv_hrtime();
	char *list = NULL;
	size_t len = 0, n = 0;
	FILE *f;

	for (size_t i = 0; word && i < e->nslots; i++) {
		const struct st_slot *s = e->slots[i];
		struct st_slot_info info;

		st_slot_info(s, &info);
		word[i] = st_slot_word(&info, st_slot_ms_in_state(s, now));
	}
	e->abandoned = json_array();
	f = open_memstream(&list, &len);
	/* Exactly the boards whose outcome is "abandoned" (the tally's count): not a slot that
	 * was only looking for its next board, nor one whose board had already failed. */
	for (size_t i = 0; i < e->nslots; i++) {
		if (!st_slot_stop(e->slots[i]) || !word || !e->abandoned || !f)
			continue;
		json_array_append_new(e->abandoned, json_pack("{s:s,s:s}", "slot", e->slots[i]->name,
							      "state", word[i]));
		fprintf(f, "%s%s (%s)", n++ ? ", " : "", e->slots[i]->name, word[i]);
	}
	if (f && fclose(f) == 0 && n)
		st_notice("abandoned %zu board%s in flight (each resumes on its next run): %s", n,
			  n == 1 ? "" : "s", list);
	free(list);
	free(word);
}

static void engine_stop_now(struct st_engine *e)
{
	size_t busy = 0;

	if (e->stopping)
		return;
	e->stopping = 1;
	e->env.stopping = 1;
	uv_timer_stop(&e->tick);
	uv_timer_stop(&e->rescan);
	for (size_t i = 0; i < e->nslots; i++)
		busy += st_slot_in_flight(e->slots[i]) != 0;
	st_notice("stopping (%s); %zu board%s in flight", e->stop_reason, busy,
		  busy == 1 ? "" : "s");
	stop_slots(e);
	/* The registration server first (and the console on it): what it left in the pool is
	 * finished below. */
	close_console(e);
	/* The pool finishes what it signs, records it, carries out the queued ledger updates
	 * (deliveries, failures), and only then calls back. */
	st_pool_close(e->pool, on_pool_closed, e);
}

static void on_stop_timer(uv_timer_t *t)
{
	engine_stop_now(t->data);
}

/* Stops from outside a slot's call chain: a slot reporting its outcome must not see every
 * slot (itself included) torn down under it. */
static void request_stop(struct st_engine *e, const char *why)
{
	if (e->stopping || uv_is_active((uv_handle_t *)&e->stop_timer))
		return;
	snprintf(e->stop_reason, sizeof(e->stop_reason), "%s", why);
	uv_timer_start(&e->stop_timer, on_stop_timer, 0, 0);
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct st_engine *e = h->data;

	if (signum == SIGHUP) {
		reload_profiles(e);
		return;
	}
	if (e->stopping || uv_is_active((uv_handle_t *)&e->stop_timer)) {
		st_notice("%s again: already stopping", strsignal(signum));
		return;
	}
	request_stop(e, signum == SIGINT ? "SIGINT" : "SIGTERM");
}

static void on_outcome(void *arg, struct st_slot *s, int pass)
{
	struct st_engine *e = arg;
	const struct st_tally *t = st_events_tally(e->events);
	char why[64];

	(void)s;
	(void)pass;
	if (e->opt.boards && t->boards >= e->opt.boards) {
		snprintf(why, sizeof(why), "%lu boards finished", e->opt.boards);
		request_stop(e, why);
	}
}

/* Every slot whose port is open has handled a board and none is busy. */
/* --until-idle: no slot busy, at least one board handled, and every slot with a port has
 * handled one or has heard nothing for ST_SILENT_MS (an empty fixture, or a board that
 * never answers: waiting for it would never end). */
static int idle(const struct st_engine *e)
{
	uint64_t now = uv_hrtime();
	int served = 0;

	for (size_t i = 0; i < e->nslots; i++) {
		const struct st_slot *s = e->slots[i];

		if (st_slot_state_busy(s->state) || s->run)
			return 0;
		if (s->state == ST_SLOT_OFFLINE)
			continue;
		if (!s->handled) {
			if (s->state == ST_SLOT_WAITING &&
			    now - s->since >= (uint64_t)ST_SILENT_MS * 1000000u)
				continue;
			return 0;
		}
		served = 1;
	}
	return served;
}

static void on_tick(uv_timer_t *t)
{
	struct st_engine *e = t->data;
	struct st_pool_stats ps;

	if (e->opt.max_seconds > 0 &&
	    (double)(uv_hrtime() - e->started) / 1e9 >= e->opt.max_seconds) {
		request_stop(e, "--max-seconds reached");
		return;
	}
	if (e->opt.until_idle && idle(e)) {
		request_stop(e, "every slot handled a board (or heard none) and is idle");
		return;
	}
	(void)ps;
}

static void on_rescan(uv_timer_t *t)
{
	scan_globs(t->data);
}

static void on_pool_status(struct st_pool *pool, int paused, const char *reason, void *arg)
{
	struct st_engine *e = arg;
	json_t *o = json_object();

	(void)pool;
	if (!o)
		return;
	json_object_set_new(o, "event", json_string("pool"));
	json_object_set_new(o, "paused", json_boolean(paused));
	if (paused && reason) {
		json_t *r = json_string(reason);

		if (r)
			json_object_set_new(o, "reason", r);
	}
	st_events_emit(e->events, o);
}

/* GET /status of the registration server: the slots and the tallies beside its own. */
static void http_status(json_t *o, void *arg)
{
	struct st_engine *e = arg;
	const struct st_tally *t = st_events_tally(e->events);
	json_t *slots = json_array();

	json_object_set_new(o, "station", json_string(e->station));
	json_object_set_new(o, "boards",
			    json_pack("{s:I,s:I,s:I,s:I,s:I}", "finished", (json_int_t)t->boards,
				      "passed", (json_int_t)t->passed, "failed",
				      (json_int_t)t->failed, "abandoned", (json_int_t)t->abandoned,
				      "reused", (json_int_t)t->reused));
	for (size_t i = 0; slots && i < e->nslots; i++) {
		const struct st_slot *s = e->slots[i];

		json_array_append_new(
			slots, json_pack("{s:s,s:s,s:s,s:s,s:I,s:I}", "name", s->name, "state",
					 st_slot_state_name(s->state), "device_id", s->device_id,
					 "last_error", s->last_error, "handled",
					 (json_int_t)s->handled, "passed", (json_int_t)s->passed));
	}
	json_object_set_new(o, "slots", slots);
}

/* ---- Set-up --------------------------------------------------------------------------- */

static void raise_fd_limit(void)
{
	struct rlimit rl;

	/* Two descriptors per slot at most (port, and a fs request now and then), plus the
	 * ledger, the HSM module and the event stream. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			st_warn("cannot raise the open file limit: %s", strerror(errno));
	}
}

static void limits_from_config(struct st_slot_limits *l, const struct st_config *cfg)
{
	const struct st_config_timeouts *t = &cfg->timeouts;

	st_slot_limits_default(l);
#define TAKE(field, src)             \
	do {                         \
		if (src)             \
			l->field = src; \
	} while (0)
	TAKE(hello_ms, t->hello);
	TAKE(csr_ms, t->csr);
	TAKE(write_ms, t->write);
	TAKE(commit_ms, t->commit);
	TAKE(verify_ms, t->verify);
	TAKE(done_ms, t->done);
	TAKE(probe_ms, t->probe);
	TAKE(presence_ms, t->presence);
	TAKE(reconnect_ms, t->reconnect);
	TAKE(reopen_ms, t->reopen);
	TAKE(noframe_ms, t->no_frame);
	TAKE(baud_trial_ms, t->baud_trial);
	TAKE(tries, cfg->retries.request);
	TAKE(resyncs, cfg->retries.resync);
#undef TAKE
}

static int mkdir_p(const char *path)
{
	char buf[PATH_MAX];
	size_t n = strlen(path);

	if (n >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] != '/' && buf[i] != 0)
			continue;
		buf[i] = 0;
		if (mkdir(buf, 0755) != 0 && errno != EEXIST)
			return -errno;
		buf[i] = path[i];
	}
	return 0;
}

static int start_pool(struct st_engine *e, char *err, size_t errlen)
{
	struct st_pool_config pc;

	st_pool_config_from(e->cfg, e->station, &pc);
	return st_pool_new(&e->loop, &pc, e->ca, e->signer, &e->pool, err, errlen);
}

int st_engine_new(const char *config_path, const struct st_engine_options *opt,
		  struct st_engine **out, char *err, size_t errlen)
{
	struct st_engine *e;
	const char *events_path;
	size_t len;
	int rc;

	*out = NULL;
	e = calloc(1, sizeof(*e));
	if (!e)
		return st_errf(err, errlen, ST_E_NOMEM, "out of memory");
	e->opt = *opt;
	e->config_path = strdup(config_path);
	if (!e->config_path) {
		rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory");
		goto fail;
	}
	rc = st_config_load(config_path, stderr, &e->cfg, err, errlen);
	if (rc == 0)
		rc = st_config_check_files(e->cfg, ST_CONFIG_FILES_ALL, stderr, err, errlen);
	if (rc < 0)
		goto fail;
	if (e->cfg->station) {
		snprintf(e->station, sizeof(e->station), "%s", e->cfg->station);
	} else if (gethostname(e->station, sizeof(e->station) - 1) != 0 || !e->station[0]) {
		snprintf(e->station, sizeof(e->station), "station");
	}
	raise_fd_limit();
	rc = uv_loop_init(&e->loop);
	if (rc < 0) {
		rc = st_errf(err, errlen, ST_E_INTERNAL, "uv_loop_init: %s", uv_strerror(rc));
		goto fail;
	}
	e->loop_ready = 1;
	/* SIGHUP is caught from here: a reload asked for while the station sets up (an HSM
	 * login, the ledger being opened) is carried out when the loop starts, instead of the
	 * signal's default action ending the station. SIGINT and SIGTERM keep theirs until the
	 * loop runs, so that a set-up that hangs can still be stopped; nothing is recorded
	 * before then. */
	uv_signal_init(&e->loop, &e->sig_int);
	uv_signal_init(&e->loop, &e->sig_term);
	uv_signal_init(&e->loop, &e->sig_hup);
	e->sig_int.data = e->sig_term.data = e->sig_hup.data = e;
	uv_signal_start(&e->sig_hup, on_signal, SIGHUP);
	e->hup_on = 1;

	rc = st_ca_load(e->cfg->ca.cert, e->cfg->ca.chain, e->cfg->ca.root, &e->ca, err, errlen);
	if (rc < 0)
		goto fail;
	rc = st_ca_chain_pem(e->ca, &e->chain_pem, &len);
	if (rc == 0)
		rc = st_ca_root_pem(e->ca, &e->root_pem, &len);
	if (rc < 0) {
		rc = st_errf(err, errlen, rc, "%s: %s", e->cfg->ca.root ? e->cfg->ca.root : "CA",
			     rc == ST_E_NOTFOUND ? "no factory root to give the boards" :
						   "out of memory");
		goto fail;
	}

	events_path = opt->events_path ? opt->events_path :
		      opt->json ? NULL : e->cfg->outputs.events;
	rc = st_events_open(events_path, opt->json && !opt->events_path, &e->loop,
			    e->cfg->outputs.events_buffer, &e->events, err, errlen);
	if (rc < 0)
		goto fail;
	st_events_set_station(e->events, e->station);
	st_events_set_gather(e->events, EVENTS_GATHER_MS);
	if (e->cfg->outputs.console_dir) {
		int r = mkdir_p(e->cfg->outputs.console_dir);

		if (r < 0) {
			rc = st_errf(err, errlen, ST_E_IO, "console_dir %s: %s",
				     e->cfg->outputs.console_dir, strerror(-r));
			goto fail;
		}
	}

	e->env.loop = &e->loop;
	e->env.ca = e->ca;
	e->env.chain_pem = e->chain_pem;
	e->env.root_pem = e->root_pem;
	e->env.events = e->events;
	e->env.console_dir = e->cfg->outputs.console_dir;
	e->env.arg = e;
	e->env.profiles = current_profiles;
	e->env.outcome = on_outcome;
	limits_from_config(&e->env.lim, e->cfg);

	rc = build_slots(e, err, errlen);
	if (rc == 0) {
		const struct st_config_slot *none = warn_unmatched_globs(e, 0);

		if (none && e->opt.until_idle && e->nslots == 0)
			rc = st_errf(err, errlen, ST_E_CONFIG,
				     "%s: no slot to run: slots glob %s matches no port, and "
				     "--until-idle waits for none", none->where, none->glob);
	}
	if (rc < 0)
		goto fail;
	if (!e->nslots && !e->have_globs) {
		rc = st_errf(err, errlen, ST_E_CONFIG, "%s: no slots: add a 'slots' section",
			     config_path);
		goto fail;
	}
	{
		size_t nfixed;
		const char **fixed = slot_profiles(e, &nfixed);

		rc = fixed ? st_profiles_load(e->cfg, fixed, nfixed, &e->profiles, err, errlen) :
			     st_errf(err, errlen, ST_E_NOMEM, "out of memory");
		free(fixed);
	}
	if (rc < 0)
		goto fail;
	rc = load_authorizations(e, e->cfg, e->profiles, err, errlen);
	if (rc < 0)
		goto fail;

	rc = st_config_open_signer(e->cfg, &e->signer, err, errlen);
	if (rc < 0)
		goto fail;
	rc = start_pool(e, err, errlen);
	if (rc < 0)
		goto fail;
	e->env.pool = e->pool;
	e->env.ledger = st_pool_ledger(e->pool);
	st_pool_set_status_cb(e->pool, on_pool_status, e);
	/* Recorded in the ledger before the first board, and their counts read for the view. */
	if (e->profiles->auths) {
		rc = st_pool_auth_sync(e->pool, e->profiles->auths);
		if (rc < 0) {
			rc = st_errf(err, errlen, rc, "authorizations: %s", st_strerror(rc));
			goto fail;
		}
	}
	if (e->cfg->http.enabled) {
		struct st_http_env he = { e->pool, e->ca, current_profiles, e };

		rc = st_http_start(&e->loop, &e->cfg->http, &he, &e->http, err, errlen);
		if (rc < 0)
			goto fail;
		st_http_set_status_hook(e->http, http_status, e);
		if (e->cfg->http.console) {
			rc = start_console(e, err, errlen);
			if (rc < 0)
				goto fail;
		}
	}

	uv_timer_init(&e->loop, &e->tick);
	uv_timer_init(&e->loop, &e->rescan);
	uv_timer_init(&e->loop, &e->stop_timer);
	e->tick.data = e->rescan.data = e->stop_timer.data = e;
	e->handles = 6;
	*out = e;
	return 0;
fail:
	st_engine_free(e);
	return rc;
}

int st_engine_run(struct st_engine *e)
{
	const struct st_tally *t;
	struct st_pool_stats ps;

	signal(SIGPIPE, SIG_IGN);
	e->started = uv_hrtime();
	uv_signal_start(&e->sig_int, on_signal, SIGINT);
	uv_signal_start(&e->sig_term, on_signal, SIGTERM);
	uv_timer_start(&e->tick, on_tick, TICK_MS, TICK_MS);
	if (e->have_globs) {
		unsigned ms = e->cfg->timeouts.rescan ? e->cfg->timeouts.rescan : DEFAULT_RESCAN_MS;

		uv_timer_start(&e->rescan, on_rescan, ms, ms);
	}
	if (e->opt.watcher && e->opt.watcher->start(e->opt.watcher->arg, e, &e->loop) == 0)
		e->watching = 1;
	st_pool_stats(e->pool, &ps);
	st_notice("station %s: %zu slots, %u signing workers, ledger %s", e->station, e->nslots,
		  ps.workers, e->cfg->ledger);
	if (e->http)
		st_notice("registration API (lmp-device-register) on %s", st_http_url(e->http));
	if (e->console)
		st_notice("operator console on %s/console", st_http_url(e->http));
	for (size_t i = 0; i < e->nslots; i++)
		st_slot_start(e->slots[i]);
	uv_run(&e->loop, UV_RUN_DEFAULT);
	t = st_events_tally(e->events);
	if (e->opt.until_idle && warn_unmatched_globs(e, 1))
		return 1;
	return t->failed ? 1 : 0;
}

static void close_any(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

void st_engine_free(struct st_engine *e)
{
	if (!e)
		return;
	if (e->hup_on) {
		/* Set-up failed: the loops below must not wait on it. */
		uv_signal_stop(&e->sig_hup);
		e->hup_on = 0;
	}
	close_console(e);
	if (e->pool && !e->pool_closed) {
		/* Set-up failed after the pool started: close it and let its threads end. */
		st_pool_close(e->pool, NULL, NULL);
		uv_run(&e->loop, UV_RUN_DEFAULT);
	}
	if (e->loop_ready) {
		/* Handles left by a set-up that failed half-way (slot timers). */
		uv_walk(&e->loop, close_any, NULL);
		uv_run(&e->loop, UV_RUN_DEFAULT);
		uv_loop_close(&e->loop);
	}
	for (size_t i = 0; i < e->nslots; i++)
		st_slot_free(e->slots[i]);
	free(e->slots);
	free(e->info);
	free(e->info_ptr);
	free(e->glob_matched);
	st_profiles_unref(e->profiles);
	st_events_close(e->events);
	if (e->signer)
		drv_signer_close(e->signer);
	st_ca_free(e->ca);
	free(e->chain_pem);
	free(e->root_pem);
	st_config_free(e->cfg);
	free(e->config_path);
	json_decref(e->abandoned);
	free(e);
}
