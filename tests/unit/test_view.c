/* The live view's layout: no line wider than the terminal at any size, every slot shown at
 * 256 slots (names or glyphs), failed and stuck slots listed with their reason, the HSM
 * pause in the header, no colour when told so, and nothing but printable text and SGR
 * escapes in a line. A failed slot's cause is its reason in words and its action, whole on
 * an 80-column line, for every reason there is; a silent port says "no answer". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "auth.h"
#include "events.h"
#include "log.h"
#include "operator.h"
#include "pool.h"
#include "slot.h"
#include "view.h"

#define NOW 5000000000000ull /* uv_hrtime() of the frames: 5000 s */
#define SEC 1000000000ull

struct fixture {
	struct st_slot_info **slots;
	size_t n;
	struct st_tally tally;
	struct st_reason_count reasons[8];
	struct st_pool_stats pool;
	struct st_view_event ev[6];
	struct st_view_input in;
	struct st_view_screen *sc;
};

/* n slots named prefix0.., in states that cycle through every kind; slots 5 and 17 failed
 * (CSR_SIGNATURE, as slot.c words it). */
static struct fixture *fixture_new(size_t n, const char *prefix)
{
	static const enum st_slot_state states[] = {
		ST_SLOT_WAITING, ST_SLOT_HELLO,	 ST_SLOT_CSR,	    ST_SLOT_QUEUED,
		ST_SLOT_SIGNED,	 ST_SLOT_COMMITTED, ST_SLOT_LEAVING, ST_SLOT_OFFLINE,
	};
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->n = n;
	f->slots = calloc(n ? n : 1, sizeof(*f->slots));
	assert_non_null(f->slots);
	for (size_t i = 0; i < n; i++) {
		struct st_slot_info *s = calloc(1, sizeof(*s));

		assert_non_null(s);
		s->idx = (unsigned)i;
		snprintf(s->name, sizeof(s->name), "%s%zu", prefix, i);
		s->state = states[i % (sizeof(states) / sizeof(states[0]))];
		s->since = NOW - (i % 7) * SEC;
		s->last_pass = s->state == ST_SLOT_LEAVING ? 1 : -1;
		if (s->state != ST_SLOT_WAITING && s->state != ST_SLOT_OFFLINE)
			snprintf(s->device_id, sizeof(s->device_id),
				 "5f0c%04zx-1b2c-4d5e-8f90-a1b2c3d4e5f6", i);
		if (i == 5 || i == 17) {
			s->state = ST_SLOT_LEAVING;
			s->last_pass = 0;
			s->last_code = ST_E_CSR_SIGNATURE;
			snprintf(s->last_error, sizeof(s->last_error),
				 "CSR_SIGNATURE: CSR rejected: self-signature does not verify with "
				 "the CSR's own public key (no proof of possession)");
		}
		f->slots[i] = s;
	}
	f->tally.boards = 1000;
	f->tally.passed = 990;
	f->tally.failed = 10;
	f->tally.reasons = f->reasons;
	snprintf(f->reasons[0].reason, sizeof(f->reasons[0].reason), "TIMEOUT");
	f->reasons[0].count = 2;
	snprintf(f->reasons[1].reason, sizeof(f->reasons[1].reason), "CSR_SIGNATURE");
	f->reasons[1].count = 8;
	f->tally.nreasons = 2;
	f->pool.workers = 2;
	f->pool.signed_ = 990;
	for (size_t i = 0; i < sizeof(f->ev) / sizeof(f->ev[0]); i++) {
		snprintf(f->ev[i].hms, sizeof(f->ev[i].hms), "12:00:%02zu", i);
		f->ev[i].level = i == 2 ? ST_LOG_WARN : ST_LOG_INFO;
		snprintf(f->ev[i].text, sizeof(f->ev[i].text),
			 "slot %s3: device 5f0c0003-1b2c-4d5e-8f90-a1b2c3d4e5f6: pass, serial "
			 "0123456789abcdef0123456789abcdef, 9267 ms (event %zu)",
			 prefix, i);
	}
	f->in.station = "line-1";
	f->in.slots = (const struct st_slot_info *const *)f->slots;
	f->in.nslots = n;
	f->in.tally = &f->tally;
	f->in.pool = &f->pool;
	f->in.now = NOW;
	f->in.started = NOW - 3723 * SEC;
	f->in.events = f->ev;
	f->in.nevents = sizeof(f->ev) / sizeof(f->ev[0]);
	f->sc = st_view_screen_new();
	assert_non_null(f->sc);
	return f;
}

static void fixture_free(struct fixture *f)
{
	for (size_t i = 0; i < f->n; i++)
		free(f->slots[i]);
	free(f->slots);
	st_view_screen_free(f->sc);
	free(f);
}

/* The line without its SGR escapes; fails on any other escape or a control byte. */
static void plain(const char *line, char *out, size_t outlen)
{
	size_t o = 0;

	for (const char *p = line; *p; p++) {
		if (*p == '\033') {
			assert_int_equal(p[1], '[');
			p += 2;
			while ((*p >= '0' && *p <= '9') || *p == ';')
				p++;
			assert_int_equal(*p, 'm');
			continue;
		}
		assert_true(*p >= 0x20 && *p <= 0x7e);
		assert_true(o + 1 < outlen);
		out[o++] = *p;
	}
	out[o] = 0;
}

/* Draws a frame and checks every line; returns the number of lines. */
static int draw(struct fixture *f, int cols, int rows, int color)
{
	int n = st_view_screen_draw(f->sc, &f->in, cols, rows, color);

	assert_true(n >= 0);
	assert_true(n <= (rows < 1 ? 1 : rows));
	for (int i = 0; i < n; i++) {
		char text[4096];
		int w;
		const char *line = st_view_screen_line(f->sc, i, &w);

		plain(line, text, sizeof(text));
		if ((int)strlen(text) != w || w > (cols < 1 ? 1 : cols))
			fail_msg("%dx%d line %d is %zu columns (says %d): '%s'", cols, rows, i,
				 strlen(text), w, text);
		if (!color)
			assert_null(strchr(line, '\033'));
	}
	return n;
}

/* The frame as plain text, one line each. */
static char *frame_text(struct fixture *f, int n)
{
	size_t cap = 1 << 16, len = 0;
	char *all = malloc(cap);

	assert_non_null(all);
	for (int i = 0; i < n; i++) {
		char text[4096];

		plain(st_view_screen_line(f->sc, i, NULL), text, sizeof(text));
		assert_true(len + strlen(text) + 2 < cap);
		memcpy(all + len, text, strlen(text));
		len += strlen(text);
		all[len++] = '\n';
	}
	all[len] = 0;
	/* VIEW_DUMP=1 shows the frames the tests look at. */
	if (getenv("VIEW_DUMP"))
		fprintf(stderr, "---- %d lines\n%s", n, all);
	return all;
}

static void test_widths(void **state)
{
	static const int sizes[][2] = { { 80, 24 }, { 120, 40 }, { 200, 60 }, { 300, 100 },
					{ 40, 10 }, { 20, 5 },	 { 10, 3 },   { 1, 1 },
					{ 0, 0 },   { 132, 12 } };
	static const size_t counts[] = { 0, 1, 16, 37, 256, 1024 };

	(void)state;
	for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
		struct fixture *f = fixture_new(counts[c], "board");

		for (size_t z = 0; z < sizeof(sizes) / sizeof(sizes[0]); z++) {
			draw(f, sizes[z][0], sizes[z][1], 1);
			draw(f, sizes[z][0], sizes[z][1], 0);
			f->pool.paused = 1;
			f->pool.paused_since = NOW - 83 * SEC;
			snprintf(f->pool.pause_reason, sizeof(f->pool.pause_reason),
				 "pkcs11: C_Sign: CKR_DEVICE_REMOVED: the token is gone");
			f->in.stopping = 1;
			draw(f, sizes[z][0], sizes[z][1], 1);
			f->pool.paused = 0;
			f->in.stopping = 0;
			f->in.pool = NULL;
			draw(f, sizes[z][0], sizes[z][1], 1);
			f->in.pool = &f->pool;
		}
		fixture_free(f);
	}
}

/* Board strings are not text: control bytes and UTF-8 come out as '?', in width. */
static void test_hostile_strings(void **state)
{
	struct fixture *f = fixture_new(3, "x");
	char *all;
	int n;

	(void)state;
	snprintf(f->slots[0]->name, sizeof(f->slots[0]->name), "a\033[2Jb\tc\xc3\xa9");
	snprintf(f->slots[1]->device_id, sizeof(f->slots[1]->device_id), "\r\n\x7f\xff");
	snprintf(f->slots[2]->last_error, sizeof(f->slots[2]->last_error), "\033]0;title\007");
	snprintf(f->ev[0].text, sizeof(f->ev[0].text), "\033[31mred\xe2\x80\x94");
	n = draw(f, 80, 24, 1);
	all = frame_text(f, n);
	assert_non_null(strstr(all, "a?[2Jb?c??"));
	free(all);
	fixture_free(f);
}

/* Every slot of 256 is on the screen: by its short name, or as a glyph in a dense row. */
static void check_all_slots(struct fixture *f, int cols, int rows)
{
	int n = draw(f, cols, rows, 1);
	char *all = frame_text(f, n), *save = NULL, *line;
	int seen[256] = { 0 }, in_grid = 0, glyphs = 0;

	for (line = strtok_r(all, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "slots board*:", 13) == 0) {
			in_grid = 1;
			continue;
		}
		if (strncmp(line, "attention:", 10) == 0)
			break;
		if (!in_grid || strstr(line, "+0"))
			continue;
		if (strstr(line, "more slots"))
			fail_msg("%dx%d: not every slot is shown: %s", cols, rows, line);
		/* "  0+   1+ ..." (names) or "  0 +++++X++++ ..." (a label and glyphs). */
		for (char *p = line; *p;) {
			char *end;
			long k;

			while (*p == ' ')
				p++;
			if (!*p)
				break;
			k = strtol(p, &end, 10);
			if (end != p && k >= 0 && k < 256 && *end && *end != ' ') {
				seen[k]++;
				p = end + 1;
			} else if (end != p && *end == ' ') {
				p = end; /* a row label */
			} else {
				while (*p && *p != ' ') {
					glyphs++;
					p++;
				}
			}
		}
	}
	if (glyphs) {
		assert_int_equal(glyphs, 256);
	} else {
		for (int k = 0; k < 256; k++) {
			if (seen[k] != 1)
				fail_msg("%dx%d: slot board%d shown %d times", cols, rows, k, seen[k]);
		}
	}
	free(all);
}

static void test_grid_256(void **state)
{
	struct fixture *f = fixture_new(256, "board");

	(void)state;
	check_all_slots(f, 80, 24);
	check_all_slots(f, 120, 40);
	check_all_slots(f, 200, 60);
	check_all_slots(f, 100, 30);
	fixture_free(f);
}

static void test_attention(void **state)
{
	struct fixture *f = fixture_new(256, "board");
	char *all;
	int n;

	(void)state;
	/* board9: in csr for a minute (stuck); board11: queued for a minute while the pool is
	 * paused (not stuck: the header says why). */
	f->slots[9]->state = ST_SLOT_CSR;
	f->slots[9]->since = NOW - 60 * SEC;
	f->slots[11]->state = ST_SLOT_QUEUED;
	f->slots[11]->since = NOW - 60 * SEC;
	f->pool.paused = 1;
	f->pool.paused_since = NOW - 61 * SEC;
	snprintf(f->pool.pause_reason, sizeof(f->pool.pause_reason), "HSM session lost");
	n = draw(f, 120, 40, 1);
	all = frame_text(f, n);
	assert_non_null(strstr(all, "SIGNING PAUSED 0:01:01"));
	assert_non_null(strstr(all, "HSM session lost"));
	assert_non_null(strstr(all, "attention: 2 failed, 1 stuck"));
	assert_non_null(strstr(all, "(2 swap board)"));
	assert_non_null(strstr(all, "board5   FAIL"));
	assert_non_null(strstr(all, "board17  FAIL"));
	assert_non_null(strstr(all, "CSR self-signature does not verify: swap board  "
				    "self-signature does not verify"));
	/* The reason once, in words: no code name, no "CSR rejected". */
	assert_null(strstr(all, "CSR_SIGNATURE:"));
	assert_null(strstr(all, "CSR rejected"));
	assert_non_null(strstr(all, "board9   STUCK"));
	assert_non_null(strstr(all, "in csr for 60s"));
	assert_null(strstr(all, "board11  STUCK"));
	assert_non_null(strstr(all, "failed by reason: CSR_SIGNATURE 8, TIMEOUT 2"));
	assert_non_null(strstr(all, "\n12:00:05 slot board3")); /* the newest log line */
	free(all);

	/* No pause: board11 is stuck too, listed after board9 (longer: 60 s each; by slot). */
	f->pool.paused = 0;
	n = draw(f, 120, 40, 0);
	all = frame_text(f, n);
	assert_non_null(strstr(all, "attention: 2 failed, 2 stuck"));
	assert_non_null(strstr(all, "board11  STUCK"));
	assert_non_null(strstr(all, "signing: 2 workers"));
	free(all);
	fixture_free(f);
}

/* Few slots: a line each with state, device id, time and the error. */
static void test_table(void **state)
{
	struct fixture *f = fixture_new(16, "board");
	char *all;
	int n;

	(void)state;
	n = draw(f, 80, 24, 1);
	all = frame_text(f, n);
	assert_non_null(strstr(all, "SLOT    STATE"));
	for (int i = 0; i < 16; i++) {
		char name[16];

		snprintf(name, sizeof(name), "\nboard%d ", i);
		assert_non_null(strstr(all, name));
	}
	assert_non_null(strstr(all, "board5  FAIL"));
	assert_non_null(strstr(all, "CSR self-signature does not verify: swap board"));
	assert_null(strstr(all, "CSR rejected"));
	assert_non_null(strstr(all, "up 1:02:03"));
	free(all);
	fixture_free(f);
}

/* The line of slot name in the frame (plain text), or fails. */
static const char *slot_line(char *all, const char *name, char *out, size_t outlen)
{
	char key[80];
	const char *p, *end;

	snprintf(key, sizeof(key), "\n%s ", name);
	p = strstr(all, key);
	if (!p)
		fail_msg("no line for %s in:\n%s", name, all);
	p++;
	end = strchr(p, '\n');
	snprintf(out, outlen, "%.*s", (int)(end ? end - p : (long)strlen(p)), p);
	return out;
}

/* Every reason the action table knows, with the longest message a slot keeps: on an
 * 80-column terminal the failed slot's line has the reason in words and its action whole,
 * both in the table (16 slots) and in the attention list (256 slots). */
static void test_causes_80(void **state)
{
	static const size_t counts[] = { 16, 256 };

	(void)state;
	for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
		struct fixture *f = fixture_new(counts[c], "board");

		for (size_t i = 0; i < st_action_count(); i++) {
			const struct st_action *a = st_action_at(i);
			struct st_slot_info *s = f->slots[5];
			char want[128], line[512], *all;
			int n, code = 0;

			for (int k = -1; k > -200; k--) {
				if (strcmp(st_errname(k), a->reason) == 0)
					code = k;
			}
			assert_int_not_equal(code, 0);
			s->last_code = code;
			memset(s->last_error, 'x', sizeof(s->last_error) - 1);
			s->last_error[sizeof(s->last_error) - 1] = 0;
			memcpy(s->last_error, a->reason, strlen(a->reason));
			memcpy(s->last_error + strlen(a->reason), ": CSR rejected: ", 16);
			n = draw(f, 80, 24, 1);
			all = frame_text(f, n);
			snprintf(want, sizeof(want), "%s: %s", a->words, st_action_class_name(a->cls));
			slot_line(all, "board5", line, sizeof(line));
			if (!strstr(line, want))
				fail_msg("%zu slots, %s: the line lacks '%s': '%s'", counts[c], a->reason,
					 want, line);
			if (strstr(line, a->reason) || strstr(line, "CSR rejected"))
				fail_msg("%zu slots, %s: a repeated prefix: '%s'", counts[c], a->reason,
					 line);
			free(all);
		}
		fixture_free(f);
	}
}

/* An open port that nothing answers is "waiting" at first and "no answer" from
 * ST_SILENT_MS on. */
static void test_no_answer(void **state)
{
	struct fixture *f = fixture_new(16, "board");
	char line[512], *all;
	int n;

	(void)state;
	f->slots[0]->state = ST_SLOT_WAITING;
	f->slots[0]->since = NOW - (ST_SILENT_MS - 1000) * 1000000ull;
	f->slots[8]->state = ST_SLOT_WAITING;
	f->slots[8]->since = NOW - (ST_SILENT_MS + 1000) * 1000000ull;
	n = draw(f, 80, 24, 0);
	all = frame_text(f, n);
	assert_non_null(strstr(slot_line(all, "board0", line, sizeof(line)), "waiting"));
	assert_non_null(strstr(slot_line(all, "board8", line, sizeof(line)), "no answer"));
	assert_null(strstr(line, "waiting"));
	free(all);
	fixture_free(f);
}

/* Many reasons: as many as fit, then how many more. */
static void test_reasons(void **state)
{
	struct fixture *f = fixture_new(4, "s");
	char *all;
	int n;

	(void)state;
	for (int i = 0; i < 8; i++) {
		snprintf(f->reasons[i].reason, sizeof(f->reasons[i].reason), "SOME_LONG_REASON_%d",
			 i);
		f->reasons[i].count = (uint64_t)(i + 1);
	}
	f->tally.nreasons = 8;
	n = draw(f, 80, 24, 1);
	all = frame_text(f, n);
	assert_non_null(strstr(all, "failed by reason: SOME_LONG_REASON_7 8, SOME_LONG_REASON_6 7"));
	assert_non_null(strstr(all, " more"));
	free(all);
	fixture_free(f);
}

/* An authorization of lot with units, of which used are consumed (-1: not known yet). */
static struct st_auth *auth_of(const char *lot, int64_t units, int64_t used)
{
	struct st_auth *a = calloc(1, sizeof(*a));

	assert_non_null(a);
	a->id = strdup(lot);
	a->lot = strdup(lot);
	a->units = units;
	atomic_init(&a->used_seen, used);
	return a;
}

/* The units left of each authorization: yellow once a tenth or less is left, red when
 * none is, dim while the ledger has not said yet; no line without authorizations. */
static void test_authorizations(void **state)
{
	struct fixture *f = fixture_new(4, "s");
	struct st_auth_set *set = st_auth_set_new();
	const char *line;
	char *all;
	int n;

	(void)state;
	n = draw(f, 120, 24, 1);
	all = frame_text(f, n);
	assert_null(strstr(all, "authorizations:"));
	free(all);
	assert_int_equal(st_auth_set_add(set, auth_of("LOT-OK", 100, 20)), 0);
	assert_int_equal(st_auth_set_add(set, auth_of("LOT-LOW", 100, 91)), 0);
	assert_int_equal(st_auth_set_add(set, auth_of("LOT-OUT", 10, 10)), 0);
	assert_int_equal(st_auth_set_add(set, auth_of("LOT-NEW", 5, -1)), 0);
	f->in.auths = set;
	n = draw(f, 120, 24, 1);
	all = frame_text(f, n);
	assert_non_null(strstr(all, "authorizations: LOT-OK 80/100 left, LOT-LOW 9/100 left, "
				    "LOT-OUT USED UP (10), LOT-NEW ?/5 left\n"));
	free(all);
	line = NULL;
	for (int i = 0; i < n && !line; i++) {
		if (strstr(st_view_screen_line(f->sc, i, NULL), "authorizations:"))
			line = st_view_screen_line(f->sc, i, NULL);
	}
	assert_non_null(line);
	assert_non_null(strstr(line, "\033[0;33m LOT-LOW"));
	assert_non_null(strstr(line, "\033[0;1;31m LOT-OUT"));
	assert_non_null(strstr(line, "\033[0;2m LOT-NEW"));
	/* A narrow terminal: as many as fit, then how many more. */
	n = draw(f, 50, 24, 0);
	all = frame_text(f, n);
	assert_non_null(strstr(all, "authorizations: LOT-OK 80/100 left, +3 more"));
	free(all);
	f->in.auths = NULL;
	st_auth_set_unref(set);
	fixture_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_widths),	   cmocka_unit_test(test_hostile_strings),
		cmocka_unit_test(test_grid_256),   cmocka_unit_test(test_attention),
		cmocka_unit_test(test_table),	   cmocka_unit_test(test_reasons),
		cmocka_unit_test(test_causes_80), cmocka_unit_test(test_no_answer),
		cmocka_unit_test(test_authorizations),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
