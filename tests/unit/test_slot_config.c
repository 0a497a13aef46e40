/* What `station run` reads from the configuration (slots, pool, timeouts, retries, outputs,
 * profile lists, simboard's board map), and how a slot picks a board's profile. Every
 * mistake comes back as file:line:col with what was expected. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "err.h"
#include "log.h"
#include "pool.h"
#include "profile.h"
#include "slot.h"
#include "testutil.h"

static char dir[PATH_MAX];

static const char ca_section[] = "ca:\n"
				 "  signer: file\n"
				 "  key: ca.key\n"
				 "  cert: ca.pem\n"
				 "  root: root.pem\n";

static int setup(void **state)
{
	const char *d = tu_tmpdir("slot_config");

	(void)state;
	if (!d)
		return -1;
	snprintf(dir, sizeof(dir), "%s", d);
	return 0;
}

static void rm(const char *name)
{
	char path[PATH_MAX + 64];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	unlink(path);
}

static int teardown(void **state)
{
	(void)state;
	rm("station.yaml");
	rm("map.yaml");
	rm("a.yaml");
	rm("b.yaml");
	rmdir(dir);
	return 0;
}

static void write_file(const char *name, const char *text)
{
	char path[PATH_MAX + 64];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* Loads the CA section followed by rest; returns the diagnostics (free()). */
static char *load(const char *rest, struct st_config **cfg, int *rc)
{
	char path[PATH_MAX + 32], err[512];
	char *text, *diag = NULL;
	size_t dlen = 0;
	FILE *f;

	text = malloc(strlen(ca_section) + strlen(rest) + 1);
	assert_non_null(text);
	strcpy(text, ca_section);
	strcat(text, rest);
	write_file("station.yaml", text);
	free(text);
	snprintf(path, sizeof(path), "%s/station.yaml", dir);
	f = open_memstream(&diag, &dlen);
	assert_non_null(f);
	*rc = st_config_load(path, f, cfg, err, sizeof(err));
	fclose(f);
	return diag;
}

static void expect_error(const char *rest, const char *where, const char *what)
{
	struct st_config *c = NULL;
	char *diag;
	int rc;

	diag = load(rest, &c, &rc);
	if (rc != ST_E_CONFIG || !strstr(diag, where) || !strstr(diag, what))
		fail_msg("expected '%s' ... '%s', got rc %d:\n%s", where, what, rc, diag);
	assert_null(c);
	free(diag);
}

static void test_slots_sections(void **state)
{
	struct st_config *c = NULL;
	char *diag, want[PATH_MAX + 64];
	int rc;

	(void)state;
	diag = load("station: line-1\n"
		    "profiles: [a.yaml, b.yaml]\n"
		    "slots:\n"
		    "  - port: /dev/ttyUSB0\n"
		    "  - name: B2\n"
		    "    port: /dev/ttyUSB1\n"
		    "    baud: 921600\n"
		    "    backend: serial\n"
		    "    flow: rtscts\n"
		    "    profile: a.yaml\n"
		    "  - glob: /dev/serial/by-path/pci-*-port0\n"
		    "    name: usb-{index}\n"
		    "  - board_map: map.yaml\n"
		    "    max_baud: 460800\n"
		    "pool:\n"
		    "  workers: 2\n"
		    "  hsm_sessions: 4\n"
		    "  batch_linger_ms: 0\n"
		    "timeouts:\n"
		    "  csr: 20000\n"
		    "  reconnect: 500\n"
		    "  baud_trial: 6000\n"
		    "retries:\n"
		    "  request: 7\n"
		    "outputs:\n"
		    "  events: events.jsonl\n"
		    "  console_dir: consoles\n",
		    &c, &rc);
	if (rc != 0)
		fail_msg("load failed: %s", diag);
	free(diag);
	assert_string_equal(c->station, "line-1");
	assert_null(c->profiles);
	assert_int_equal(c->n_profile_files, 2);
	snprintf(want, sizeof(want), "%s/b.yaml", dir);
	assert_string_equal(c->profile_files[1], want);
	assert_int_equal(c->n_slots, 4);

	assert_int_equal(c->slots[0].kind, ST_CONFIG_SLOT_PORT);
	assert_string_equal(c->slots[0].name, "ttyUSB0");
	assert_string_equal(c->slots[0].backend, "auto");
	assert_int_equal(c->slots[0].baud, 0);
	assert_int_equal(c->slots[0].max_baud, 0);
	assert_null(c->slots[0].profile);

	assert_string_equal(c->slots[1].name, "B2");
	assert_int_equal(c->slots[1].baud, 921600);
	assert_string_equal(c->slots[1].backend, "serial");
	assert_int_equal(c->slots[1].flow, 2);
	snprintf(want, sizeof(want), "%s/a.yaml", dir);
	assert_string_equal(c->slots[1].profile, want);
	assert_non_null(strstr(c->slots[1].where, "station.yaml:10:5"));

	assert_int_equal(c->slots[2].kind, ST_CONFIG_SLOT_GLOB);
	assert_string_equal(c->slots[2].glob, "/dev/serial/by-path/pci-*-port0");
	assert_string_equal(c->slots[2].name, "usb-{index}");

	assert_int_equal(c->slots[3].kind, ST_CONFIG_SLOT_BOARD_MAP);
	snprintf(want, sizeof(want), "%s/map.yaml", dir);
	assert_string_equal(c->slots[3].board_map, want);
	assert_string_equal(c->slots[3].name, "{name}");
	assert_int_equal(c->slots[3].max_baud, 460800);

	assert_int_equal(c->pool.workers, 2);
	assert_int_equal(c->pool.hsm_sessions, 4);
	assert_int_equal(c->pool.batch_linger_ms, 0);
	assert_int_equal(c->pool.batch_max, 32);
	assert_int_equal(c->pool.queue_max, 4096);
	assert_int_equal(c->timeouts.csr, 20000);
	assert_int_equal(c->timeouts.reconnect, 500);
	assert_int_equal(c->timeouts.baud_trial, 6000);
	assert_int_equal(c->timeouts.hello, 0);
	assert_int_equal(c->retries.request, 7);
	snprintf(want, sizeof(want), "%s/consoles", dir);
	assert_string_equal(c->outputs.console_dir, want);
	st_config_free(c);
}

static void test_defaults_without_sections(void **state)
{
	struct st_config *c = NULL;
	char *diag, want[PATH_MAX + 64];
	int rc;

	(void)state;

	diag = load("profiles: profiles\n", &c, &rc);
	assert_int_equal(rc, 0);
	free(diag);
	snprintf(want, sizeof(want), "%s/profiles", dir);
	assert_string_equal(c->profiles, want);
	assert_int_equal(c->n_slots, 0);
	assert_null(c->station);
	assert_int_equal(c->pool.batch_linger_ms, 5);
	assert_null(c->outputs.events);
	st_config_free(c);
}

static void test_slot_errors(void **state)
{
	(void)state;
	expect_error("slots:\n  - name: A\n", "station.yaml:7:5",
		     "exactly one of 'port' (one slot), 'glob'");
	expect_error("slots:\n  - port: /dev/ttyS0\n    glob: /dev/tty*\n", "station.yaml:7:5",
		     "this one names several");
	expect_error("slots:\n  - port: /dev/ttyS0\n    buad: 9600\n", "station.yaml:8:5",
		     "unknown key 'buad' (did you mean 'baud'?)");
	expect_error("slots:\n  - port: /dev/ttyS0\n    backend: usb\n", "station.yaml:8:14",
		     "unknown value 'usb' for 'backend'");
	expect_error("slots:\n  - port: /dev/ttyS0\n    baud: 10\n", "station.yaml:8:11",
		     "out of range 50..4000000");
	expect_error("slots:\n  - port: /dev/ttyS0\n    name: A 1\n", "station.yaml:8:12",
		     "a slot name may contain only");
	expect_error("slots:\n  - glob: /dev/ttyUSB*\n    name: usb-{slot}\n", "station.yaml:8:15",
		     "unknown name variable; this entry knows {basename}, {parent}, {index}");
	expect_error("slots:\n  - port: /dev/ttyS0\n    name: A\n  - port: /dev/ttyS1\n"
		     "    name: A\n",
		     "station.yaml:10:11", "slot name 'A' is already used by the entry at");
	expect_error("slots:\n  - port: /dev/ttyS0\n  - port: /dev/ttyS0\n    name: B\n",
		     "station.yaml:8:11", "port /dev/ttyS0 is already the slot at");
	expect_error("slots: /dev/ttyS0\n", "station.yaml:6:8", "'slots' must be a sequence");
}

static void test_section_errors(void **state)
{
	(void)state;
	expect_error("pool:\n  workers: 0\n", "station.yaml:7:12", "out of range 1..256");
	expect_error("slots:\n  - port: /dev/ttyS0\n    baud: 115200\n    max_baud: 9600\n",
		     "station.yaml:9:15", "'max_baud' is 9600, below the line's starting rate 115200");
	expect_error("slots:\n  - port: /dev/ttyS0\n    max_baud: 57600\n", "station.yaml:8:15",
		     "'max_baud' is 57600, below the line's starting rate 115200");
	expect_error("timeouts:\n  wirte: 100\n", "station.yaml:7:3",
		     "unknown key 'wirte' (did you mean 'write'?)");
	expect_error("timeouts:\n  csr: soon\n", "station.yaml:7:8", "must be a whole number");
	expect_error("retries:\n  request: 0\n", "station.yaml:7:12", "out of range 1..100");
	/* BAUD's ms is 100..60000 on the wire (drivers/PROTOCOL.md). */
	expect_error("timeouts:\n  baud_trial: 99\n", "station.yaml:7:15", "out of range 100..60000");
	expect_error("timeouts:\n  baud_trial: 60001\n", "station.yaml:7:15",
		     "out of range 100..60000");
	expect_error("outputs:\n  event: e.jsonl\n", "station.yaml:7:3",
		     "unknown key 'event' (did you mean 'events'?)");
	expect_error("profiles: {a: b}\n", "station.yaml:6:11",
		     "'profiles' must be a directory or a list of profile files");
	expect_error("profiles: []\n", "station.yaml:6:11", "'profiles' lists no file");
	expect_error("station: \"\"\n", "station.yaml:6:10", "has no value");
}

/* Log lines a test captures (st_log_set_sink). */
static char logged[PATH_MAX + 1024];

static int capture(void *arg, enum st_log_level level, const char *msg)
{
	size_t n = strlen(logged);

	(void)arg;
	snprintf(logged + n, sizeof(logged) - n, "%d %s\n", (int)level, msg);
	return 1;
}

/* More workers than the HSM has sessions: the configuration loads, the pool gets one worker
 * per session, and a warning names both keys and the value that fits. Fewer or as many:
 * the workers asked for, and nothing said. */
static void test_workers_beyond_sessions(void **state)
{
	static const struct {
		unsigned workers, sessions, want;
	} cases[] = { { 8, 2, 2 }, { 3, 2, 2 }, { 256, 1, 1 }, { 2, 2, 2 }, { 1, 4, 1 } };
	struct st_pool_config pc;
	struct st_config *c = NULL;
	char text[128], want[PATH_MAX + 512], *diag;
	int rc;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(text, sizeof(text), "pool:\n  workers: %u\n  hsm_sessions: %u\n",
			 cases[i].workers, cases[i].sessions);
		diag = load(text, &c, &rc);
		assert_int_equal(rc, 0);
		assert_string_equal(diag, "");
		free(diag);
		logged[0] = 0;
		st_log_set_sink(capture, NULL);
		assert_int_equal(st_pool_config_from(c, "s", &pc), cases[i].workers);
		st_log_set_sink(NULL, NULL);
		assert_int_equal(pc.workers, cases[i].want);
		if (cases[i].want < cases[i].workers) {
			snprintf(want, sizeof(want), "%d %s/station.yaml: pool.workers is %u but "
				 "pool.hsm_sessions is %u (the HSM's sessions, one per signing "
				 "worker): signing with %u workers; set workers to %u to start "
				 "without this warning\n", ST_LOG_WARN, dir, cases[i].workers,
				 cases[i].sessions, cases[i].want, cases[i].want);
			assert_string_equal(logged, want);
		} else {
			assert_string_equal(logged, "");
		}
		st_config_free(c);
	}
	/* The CPUs as the default, never more than the sessions: said as a notice. */
	diag = load("pool:\n  hsm_sessions: 1\n", &c, &rc);
	assert_int_equal(rc, 0);
	free(diag);
	logged[0] = 0;
	st_log_set_sink(capture, NULL);
	st_pool_config_from(c, "s", &pc);
	st_log_set_sink(NULL, NULL);
	assert_int_equal(pc.workers, 1);
	if (sysconf(_SC_NPROCESSORS_ONLN) > 1)
		assert_non_null(strstr(logged, "the HSM allows 1 sessions (pool.hsm_sessions): 1 "
						"workers"));
	st_config_free(c);
}

static void test_board_map(void **state)
{
	struct st_board_map *m = NULL;
	char path[PATH_MAX + 32], err[512], want[PATH_MAX + 64];
	char *diag = NULL;
	size_t dlen = 0;
	FILE *f;
	int rc;

	(void)state;
	write_file("map.yaml", "boards:\n"
			       "  - name: \"board0\"\n"
			       "    port: \"/tmp/line/board0/tty\"\n"
			       "    backend: \"pty\"\n"
			       "    pty: \"/dev/pts/7\"\n"
			       "    hardware_id: \"sim-board\"\n"
			       "    sku: \"sim-sku\"\n"
			       "    device_id: \"\"\n"
			       "    dir: \"/tmp/line/board0\"\n"
			       "    something_new: 1\n"
			       "  - name: \"board1\"\n"
			       "    port: \"board1/tty\"\n");
	snprintf(path, sizeof(path), "%s/map.yaml", dir);
	rc = st_board_map_load(path, NULL, &m, err, sizeof(err));
	assert_int_equal(rc, 0);
	assert_int_equal(m->n, 2);
	assert_string_equal(m->boards[0].name, "board0");
	assert_string_equal(m->boards[0].port, "/tmp/line/board0/tty");
	assert_string_equal(m->boards[0].backend, "pty");
	assert_string_equal(m->boards[0].hardware_id, "sim-board");
	assert_string_equal(m->boards[0].device_id, "");
	snprintf(want, sizeof(want), "%s/board1/tty", dir);
	assert_string_equal(m->boards[1].port, want);
	assert_null(m->boards[1].backend);
	st_board_map_free(m);

	write_file("map.yaml", "boards:\n  - name: x\n");
	f = open_memstream(&diag, &dlen);
	assert_non_null(f);
	rc = st_board_map_load(path, f, &m, err, sizeof(err));
	fclose(f);
	assert_int_equal(rc, ST_E_CONFIG);
	assert_null(m);
	assert_non_null(strstr(diag, "map.yaml:2:5: board entry lacks 'port'"));
	free(diag);

	rc = st_board_map_load("/nonexistent/map.yaml", NULL, &m, err, sizeof(err));
	assert_int_equal(rc, ST_E_CONFIG);
	assert_null(m);
}

static const char profile_a[] = "sku: gw-a\n"
				"match:\n"
				"  hardware_ids: [hw-1]\n"
				"factory: f\n"
				"device_id:\n"
				"  source: board\n"
				"files:\n"
				"  - path: /etc/a\n"
				"    content: \"{device_id}\"\n";

static const char profile_b[] = "sku: gw-b\n"
				"match:\n"
				"  hardware_ids: [hw-1]\n"
				"  sku: special\n"
				"factory: f\n"
				"device_id:\n"
				"  source: board\n"
				"files:\n"
				"  - path: /etc/b\n"
				"    content: \"{device_id}\"\n";

static void test_profile_choice(void **state)
{
	struct st_profiles *set;
	const struct st_profile *p;
	char path[PATH_MAX + 32], err[512];
	int rc;

	(void)state;
	write_file("a.yaml", profile_a);
	write_file("b.yaml", profile_b);
	set = st_profiles_new();
	assert_non_null(set);
	set->list = calloc(2, sizeof(*set->list));
	assert_non_null(set->list);
	snprintf(path, sizeof(path), "%s/a.yaml", dir);
	assert_int_equal(st_profile_load(path, NULL, &set->list[0], err, sizeof(err)), 0);
	snprintf(path, sizeof(path), "%s/b.yaml", dir);
	assert_int_equal(st_profile_load(path, NULL, &set->list[1], err, sizeof(err)), 0);
	set->n = 2;

	/* The profile that names the board's sku beats the one that does not. */
	assert_int_equal(st_profiles_choose(set, NULL, "hw-1", "special", &p, err, sizeof(err)), 0);
	assert_string_equal(p->sku, "gw-b");
	assert_int_equal(st_profiles_choose(set, NULL, "hw-1", "other", &p, err, sizeof(err)), 0);
	assert_string_equal(p->sku, "gw-a");
	rc = st_profiles_choose(set, NULL, "hw-2", "other", &p, err, sizeof(err));
	assert_int_equal(rc, ST_E_PROFILE_NOMATCH);
	assert_null(p);
	assert_non_null(strstr(err, "no profile matches hardware id 'hw-2'"));

	/* A slot's own profile, when it describes the board. */
	set->fixed = calloc(1, sizeof(*set->fixed));
	set->fixed_paths = calloc(1, sizeof(*set->fixed_paths));
	assert_non_null(set->fixed);
	assert_non_null(set->fixed_paths);
	set->fixed_paths[0] = strdup(path);
	assert_int_equal(st_profile_load(path, NULL, &set->fixed[0], err, sizeof(err)), 0);
	set->nfixed = 1;
	assert_int_equal(st_profiles_choose(set, path, "hw-1", "special", &p, err, sizeof(err)), 0);
	assert_string_equal(p->sku, "gw-b");
	rc = st_profiles_choose(set, path, "hw-1", "other", &p, err, sizeof(err));
	assert_int_equal(rc, ST_E_PROFILE_NOMATCH);
	assert_non_null(strstr(err, "is for other boards"));

	/* Two that match equally: the board cannot tell. */
	st_profile_free(set->list[1]);
	snprintf(path, sizeof(path), "%s/a.yaml", dir);
	assert_int_equal(st_profile_load(path, NULL, &set->list[1], err, sizeof(err)), 0);
	rc = st_profiles_choose(set, NULL, "hw-1", "x", &p, err, sizeof(err));
	assert_int_equal(rc, ST_E_SLOT_PROFILE_AMBIGUOUS);

	/* The reference count keeps it alive for boards in flight. */
	assert_ptr_equal(st_profiles_ref(set), set);
	st_profiles_unref(set);
	st_profiles_unref(set);
}

static void test_state_names(void **state)
{
	(void)state;
	assert_string_equal(st_slot_state_name(ST_SLOT_WAITING), "waiting");
	assert_string_equal(st_slot_state_name(ST_SLOT_LEAVING), "leaving");
	assert_string_equal(st_slot_state_name(ST_SLOT_NSTATES), "?");
	for (int i = 0; i < ST_SLOT_NSTATES; i++)
		assert_string_not_equal(st_slot_state_name((enum st_slot_state)i), "?");
	assert_false(st_slot_state_busy(ST_SLOT_WAITING));
	assert_true(st_slot_state_busy(ST_SLOT_HELLO));
	assert_true(st_slot_state_busy(ST_SLOT_FAILED));
	assert_false(st_slot_state_busy(ST_SLOT_LEAVING));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_slots_sections),
		cmocka_unit_test(test_defaults_without_sections),
		cmocka_unit_test(test_slot_errors),
		cmocka_unit_test(test_section_errors),
		cmocka_unit_test(test_workers_beyond_sessions),
		cmocka_unit_test(test_board_map),
		cmocka_unit_test(test_profile_choice),
		cmocka_unit_test(test_state_names),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
