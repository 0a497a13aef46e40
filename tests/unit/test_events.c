/* The event stream to a pipe never blocks the loop: with a reader that does not read, every
 * emit returns at once, what does not fit the bounded buffer is dropped and counted, and
 * every line that reaches the reader is whole; once the reader reads again, what waited is
 * written out by the loop; with a reader that keeps up nothing is dropped. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <uv.h>

#include "events.h"

#define PIPE_BYTES 4096 /* the pipe's capacity, made as small as Linux allows */
#define EVENTS 400      /* ~200 bytes each: far more than pipe and buffer hold */

static void drain(int fd, char **buf, size_t *len);

/* A stream on a loop to a pipe whose write end it opens by name; the test keeps the read
 * end. */
struct pipe_fixture {
	int rd, wr;
	char path[64];
	uv_loop_t loop;
	struct st_events *ev;
};

static void pipe_open(struct pipe_fixture *p, size_t buffer_max)
{
	char err[256];
	int fds[2];

	assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
	p->rd = fds[0];
	p->wr = fds[1];
	/* The smallest pipe, so that a few events fill it. */
	assert_true(fcntl(p->wr, F_SETPIPE_SZ, PIPE_BYTES) >= PIPE_BYTES);
	snprintf(p->path, sizeof(p->path), "/proc/self/fd/%d", p->wr);
	assert_int_equal(uv_loop_init(&p->loop), 0);
	p->ev = NULL;
	if (st_events_open(p->path, 0, &p->loop, buffer_max, &p->ev, err, sizeof(err)) != 0)
		fail_msg("%s", err);
}

/* The loop ends, then the stream: what waits gets its last chance. */
static void pipe_close(struct pipe_fixture *p)
{
	st_events_detach(p->ev);
	uv_run(&p->loop, UV_RUN_DEFAULT);
	st_events_close(p->ev);
	assert_int_equal(uv_loop_close(&p->loop), 0);
	if (p->rd >= 0)
		close(p->rd);
	close(p->wr);
}

/* The reader reads again for a while, and the loop writes out what waited. */
static void read_while_looping(struct pipe_fixture *p, char **got, size_t *got_len)
{
	for (int round = 0; round < 1000; round++) {
		drain(p->rd, got, got_len);
		uv_run(&p->loop, UV_RUN_NOWAIT);
	}
	drain(p->rd, got, got_len);
}

static void emit_one(struct st_events *ev, int i)
{
	json_t *o = json_object();

	json_object_set_new(o, "event", json_string("state"));
	json_object_set_new(o, "n", json_integer(i));
	json_object_set_new(o, "pad", json_string("................................................"
						  "................................................"
						  "................................................"));
	st_events_emit(ev, o);
}

/* Reads what the pipe holds now (non-blocking) and appends it to *buf. */
static void drain(int fd, char **buf, size_t *len)
{
	char chunk[8192];
	int fl = fcntl(fd, F_GETFL);

	fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));

		if (n <= 0)
			break;
		*buf = realloc(*buf, *len + (size_t)n + 1);
		assert_non_null(*buf);
		memcpy(*buf + *len, chunk, (size_t)n);
		*len += (size_t)n;
		(*buf)[*len] = 0;
	}
	fcntl(fd, F_SETFL, fl);
}

/* Every line is a whole JSON object; returns how many, and checks that their "n" values are
 * increasing (dropping leaves gaps, never reorders). */
static unsigned whole_lines(const char *buf, size_t len)
{
	unsigned lines = 0;
	long last = -1;
	const char *p = buf, *end = buf + len;

	if (len)
		assert_int_equal(buf[len - 1], '\n');
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		json_error_t jerr;
		json_t *o;

		assert_non_null(nl);
		o = json_loadb(p, (size_t)(nl - p), 0, &jerr);
		if (!o)
			fail_msg("torn line %u: %s", lines, jerr.text);
		if (json_object_get(o, "n") && json_integer_value(json_object_get(o, "n")) <= last)
			fail_msg("line %u out of order", lines);
		last = (long)json_integer_value(json_object_get(o, "n"));
		json_decref(o);
		lines++;
		p = nl + 1;
	}
	return lines;
}

static void on_alarm(int sig)
{
	(void)sig;
	/* An emit blocked on the pipe: the loop would have stalled. */
	_exit(3);
}

static void test_stalled_reader_drops_and_counts(void **state)
{
	struct pipe_fixture p;
	char *got = NULL;
	size_t got_len = 0;
	uint64_t dropped;

	(void)state;
	pipe_open(&p, ST_EVENTS_BUFFER_MIN);
	signal(SIGALRM, on_alarm);
	alarm(30);
	for (int i = 0; i < EVENTS; i++)
		emit_one(p.ev, i);
	alarm(0);
	dropped = st_events_dropped(p.ev);
	assert_true(dropped > 0);
	assert_true(dropped < EVENTS);

	/* The reader comes back: the loop writes out what waited. */
	read_while_looping(&p, &got, &got_len);
	assert_int_equal(whole_lines(got, got_len) + dropped, EVENTS);
	pipe_close(&p);
	free(got);
}

static void test_reader_that_keeps_up_gets_everything(void **state)
{
	struct pipe_fixture p;
	char *got = NULL;
	size_t got_len = 0;

	(void)state;
	pipe_open(&p, 0);
	for (int i = 0; i < EVENTS; i++) {
		emit_one(p.ev, i);
		if (i % 10 == 0) {
			uv_run(&p.loop, UV_RUN_NOWAIT);
			drain(p.rd, &got, &got_len);
		}
	}
	read_while_looping(&p, &got, &got_len);
	assert_int_equal(st_events_dropped(p.ev), 0);
	assert_int_equal(whole_lines(got, got_len), EVENTS);
	pipe_close(&p);
	free(got);
}

/* A reader that went away: the stream is given up, the run goes on, the loss is counted. */
static void test_reader_gone(void **state)
{
	struct pipe_fixture p;

	(void)state;
	signal(SIGPIPE, SIG_IGN);
	pipe_open(&p, 0);
	close(p.rd);
	p.rd = -1;
	for (int i = 0; i < 10; i++)
		emit_one(p.ev, i);
	/* The turn's lines go out when it ends. */
	uv_run(&p.loop, UV_RUN_NOWAIT);
	assert_int_equal(st_events_dropped(p.ev), 10);
	pipe_close(&p);
}


/* How the stream wrote a string when jansson built its lines: json_string(), or when that
 * refused the bytes (not UTF-8), a copy with every byte >= 0x80 and control byte as '?'. */
static char *jansson_str(const char *s)
{
	json_t *j = json_string(s);
	char *out;

	if (!j) {
		char *copy = strdup(s);

		for (char *c = copy; *c; c++) {
			if ((unsigned char)*c >= 0x80 || (unsigned char)*c < 0x20)
				*c = '?';
		}
		j = json_string(copy);
		free(copy);
	}
	assert_non_null(j);
	out = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);
	json_decref(j);
	return out;
}

static void check_str(const char *s)
{
	struct st_jbuf b = { 0 };
	char *want = jansson_str(s);

	st_jbuf_str(&b, s);
	st_jbuf_raw(&b, "", 1);
	assert_false(b.oom);
	if (strcmp(b.p, want) != 0) {
		char hexs[64] = "";

		for (size_t i = 0; s[i] && i < 20; i++)
			snprintf(hexs + 3 * i, 4, "%02x ", (unsigned char)s[i]);
		fail_msg("string [%s]: %s, jansson wrote %s", hexs, b.p, want);
	}
	free(b.p);
	free(want);
}

/* Every control character, quote and backslash, every byte alone and every pair, UTF-8 of
 * every length, and what is not UTF-8 (lone continuation bytes, overlong forms, surrogates,
 * beyond U+10FFFF, cut sequences): written as jansson wrote them. */
static void test_string_escaping_as_jansson(void **state)
{
	static const char *const cases[] = {
		"", "plain", "quote \" and \\ backslash", "tab\tnew\nline\rcr\bbs\fff",
		"\x01\x02\x1f\x7f", "/slash/", "caf\xc3\xa9", "\xe2\x82\xac euro",
		"\xf0\x9f\x98\x80 emoji", "\xef\xbf\xbf", "\xf4\x8f\xbf\xbf",
		"\xc3", "\xc3\x28", "\x80", "\xbf", "\xc0\x80", "\xc1\xbf", "\xe0\x80\x80",
		"\xe0\x9f\xbf", "\xed\xa0\x80", "\xed\xbf\xbf", "\xf0\x80\x80\x80",
		"\xf0\x8f\xbf\xbf", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xff",
		"\xe2\x82", "ok \xf0\x9f\x98", "tab\tthen bad \xff", "\"\xc3\xa9\x01\"",
	};
	char two[3] = { 0 }, one[2] = { 0 };

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_str(cases[i]);
	for (int a = 1; a < 256; a++) {
		one[0] = (char)a;
		check_str(one);
		for (int c = 1; c < 256; c++) {
			two[0] = (char)a;
			two[1] = (char)c;
			check_str(two);
		}
	}
}

/* v as st_jbuf_real writes it, and as jansson does with JSON_REAL_PRECISION(10). */
static void real_as_jansson(double v)
{
	struct st_jbuf b = { 0 };
	json_t *j = json_real(v);
	char *want = json_dumps(j, JSON_ENCODE_ANY | JSON_REAL_PRECISION(10));

	st_jbuf_real(&b, v);
	st_jbuf_raw(&b, "", 1);
	if (strcmp(b.p, want) != 0)
		fail_msg("%.17g: %s, jansson wrote %s", v, b.p, want);
	free(b.p);
	free(want);
	json_decref(j);
}

/* Reals as JSON_REAL_PRECISION(10) wrote them. */
static void test_reals_as_jansson(void **state)
{
	static const double cases[] = {
		0.0, 1.0, -1.0, 0.5, 12.345, 1234.567, 0.001, 1e-5, 2.5e-7, 1e20, 1.5e21,
		-3e-12, 123456789.0, 1234567890.0, 12345678901.0, 99999.999, 86400.125, 3.0e300,
		/* Thousandths, as the phase times are, written without snprintf below a million. */
		-0.0, 0.001, 0.01, 0.1, 0.12, 0.123, 7.0, 42.04, 100000.5, 999999.999, 1e6,
		1000000.001, 0.0005, 2.0004, 123.4567,
	};
	uint64_t x = 88172645463325252ull;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		real_as_jansson(cases[i]);
	/* Times rounded to thousandths (round3), spread over every size below and about a
	 * million. */
	for (int i = 0; i < 20000; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		double v = (double)(x % 1100000000ull) / pow(10.0, (double)((x >> 60) % 7));

		real_as_jansson(round(v * 1000.0) / 1000.0);
	}
}


/* A stream to a regular file in a temporary directory, on a loop. */
struct file_fixture {
	char path[64];
	uv_loop_t loop;
	struct st_events *ev;
};

static void file_open(struct file_fixture *f)
{
	char err[256];
	int fd;

	snprintf(f->path, sizeof(f->path), "/tmp/test_events.XXXXXX");
	fd = mkstemp(f->path);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(uv_loop_init(&f->loop), 0);
	if (st_events_open(f->path, 0, &f->loop, 0, &f->ev, err, sizeof(err)) != 0)
		fail_msg("%s", err);
}

static char *file_read(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	char *buf = NULL;

	assert_non_null(fp);
	*len = 0;
	for (;;) {
		buf = realloc(buf, *len + 4097);
		size_t n = fread(buf + *len, 1, 4096, fp);

		*len += n;
		if (n == 0)
			break;
	}
	buf[*len] = 0;
	fclose(fp);
	return buf;
}

static void file_close(struct file_fixture *f)
{
	st_events_detach(f->ev);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	st_events_close(f->ev);
	assert_int_equal(uv_loop_close(&f->loop), 0);
}

struct tapped {
	unsigned lines;
	size_t bytes;
};

static void on_tap(void *arg, const char *line, size_t len)
{
	struct tapped *t = arg;

	assert_true(len > 0 && line[len - 1] == '}');
	t->lines++;
	t->bytes += len + 1;
}

#define TURN_EVENTS 50

static void emit_turn(uv_timer_t *h)
{
	struct st_events *ev = h->data;

	for (int i = 0; i < TURN_EVENTS; i++)
		st_events_state(ev, "A1", "csr", "checked", "dev-1");
	/* Nothing is written before the turn ends; the tap has every line at once. */
	assert_int_equal(st_events_writes(ev), 0);
	uv_close((uv_handle_t *)h, NULL);
}

/* The lines of one loop turn take one write(2) when the turn ends; lines that gather past
 * ST_EVENTS_FLUSH_AT without a turn's end go out then. */
static void test_one_write_per_turn(void **state)
{
	struct file_fixture f;
	struct tapped tap = { 0 };
	uv_timer_t t;
	size_t len;
	char *got;

	(void)state;
	file_open(&f);
	st_events_set_tap(f.ev, on_tap, &tap);
	uv_timer_init(&f.loop, &t);
	t.data = f.ev;
	uv_timer_start(&t, emit_turn, 0, 0);
	uv_run(&f.loop, UV_RUN_DEFAULT);
	assert_int_equal(st_events_writes(f.ev), 1);
	assert_int_equal(tap.lines, TURN_EVENTS);
	got = file_read(f.path, &len);
	assert_int_equal(len, tap.bytes);
	assert_int_equal(whole_lines(got, len), TURN_EVENTS);
	free(got);

	/* No turn ends: the size bound writes them out. */
	for (size_t n = 0; n <= ST_EVENTS_FLUSH_AT; n += 60)
		st_events_state(f.ev, "A1", "csr", "checked", "dev-1");
	assert_int_equal(st_events_writes(f.ev), 2);
	file_close(&f);
	unlink(f.path);
}

static void emit_and_turn(uv_timer_t *h)
{
	st_events_state(h->data, "A1", "csr", "checked", "dev-1");
}

/* With a gathering time, the lines of many turns take one write(2): none before the time is
 * up (an hour here: nothing ends it but the test), all of them once it is, or at once when
 * gathering is turned off. */
static void test_lines_gather(void **state)
{
	struct file_fixture f;
	uv_timer_t t;
	size_t len;
	char *got;

	(void)state;
	file_open(&f);
	st_events_set_gather(f.ev, 3600 * 1000);
	/* The first line goes out at its turn's end. */
	st_events_state(f.ev, "A1", "csr", "checked", "dev-0");
	uv_run(&f.loop, UV_RUN_NOWAIT);
	assert_int_equal(st_events_writes(f.ev), 1);
	uv_timer_init(&f.loop, &t);
	t.data = f.ev;
	for (int turn = 0; turn < 10; turn++) {
		uv_timer_start(&t, emit_and_turn, 0, 0);
		uv_run(&f.loop, UV_RUN_NOWAIT);
	}
	assert_int_equal(st_events_writes(f.ev), 1);
	st_events_set_gather(f.ev, 0);
	assert_int_equal(st_events_writes(f.ev), 2);
	got = file_read(f.path, &len);
	assert_int_equal(whole_lines(got, len), 11);
	free(got);

	/* A short time: the loop runs until it is up, and the lines go out together. */
	st_events_set_gather(f.ev, 1);
	for (int i = 0; i < 5; i++)
		st_events_state(f.ev, "A1", "csr", "checked", "dev-1");
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&f.loop, UV_RUN_DEFAULT);
	assert_int_equal(st_events_writes(f.ev), 3);
	got = file_read(f.path, &len);
	assert_int_equal(whole_lines(got, len), 16);
	free(got);
	file_close(&f);
	unlink(f.path);
}

/* "2024-05-01T12:00:00.123Z" at the start of line: its time in ms since the epoch. */
static long long line_ms(const char *line)
{
	struct tm tm = { 0 };
	unsigned ms;
	int n = 0;

	if (sscanf(line, "{\"ts\":\"%4d-%2d-%2dT%2d:%2d:%2d.%3uZ\"%n", &tm.tm_year, &tm.tm_mon,
		   &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms, &n) != 7 ||
	    n != (int)strlen("{\"ts\":\"2024-05-01T12:00:00.123Z\""))
		fail_msg("not a timestamp: %.40s", line);
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	return (long long)timegm(&tm) * 1000 + ms;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Each line's time is the clock's when it was made, to the millisecond, from one second to
 * the next (the date and time to the second are formatted once a second). */
static void test_timestamps(void **state)
{
	struct file_fixture f;
	long long before[3], after[3], t;
	struct timespec nap = { 0, 20 * 1000 * 1000 };
	char *got, *line;
	size_t len;
	int i;

	(void)state;
	file_open(&f);
	for (i = 0; i < 3; i++) {
		if (i == 2) /* into the next second */
			for (long long s = now_ms() / 1000; now_ms() / 1000 == s;)
				nanosleep(&nap, NULL);
		before[i] = now_ms();
		st_events_state(f.ev, "A1", "csr", "checked", "dev-1");
		after[i] = now_ms();
		nanosleep(&nap, NULL);
	}
	file_close(&f);
	got = file_read(f.path, &len);
	assert_int_equal(whole_lines(got, len), 3);
	for (i = 0, line = got; i < 3; i++, line = strchr(line, '\n') + 1) {
		t = line_ms(line);
		if (t < before[i] || t > after[i])
			fail_msg("line %d: %lld ms, made between %lld and %lld", i, t, before[i],
				 after[i]);
	}
	free(got);
	unlink(f.path);
}

/* line is {"ts":"2024-05-01T12:00:00.123Z", then the rest of want (a line without its
 * "ts") to its newline. */
static void expect_line(const char *line, const char *want)
{
	const char *nl = strchr(line, '\n');
	size_t ts = strlen("{\"ts\":\"2024-05-01T12:00:00.123Z\",");

	assert_non_null(nl);
	assert_int_equal(strncmp(line, "{\"ts\":\"", 7), 0);
	assert_true((size_t)(nl - line) > ts);
	assert_int_equal(line[ts - 2], '"');
	if (strlen(want + 1) != (size_t)(nl - line) - ts || strncmp(line + ts, want + 1, strlen(want + 1)) != 0)
		fail_msg("line %.*s, want %s", (int)(nl - line), line, want);
}

/* The lines as jansson built them: "ts", "event", "station", then the fields in order. */
static void test_lines_as_before(void **state)
{
	struct file_fixture f;
	struct st_outcome o = { 0 };
	size_t len;
	char *got, *want_state, *want_fail;
	json_t *j, *ms;

	(void)state;
	file_open(&f);
	st_events_set_station(f.ev, "line-\xc3\xa9");
	st_events_state(f.ev, "A1", "hello", "csr", NULL);
	o.slot = "A1";
	o.pass = 0;
	o.reason = "CSR_SIGNATURE";
	o.error = "bad \"sig\"\n from board \xff\x01";
	o.state = "csr";
	o.device_id = "dev-\xe2\x82\xac";
	o.serial = "0a1b";
	o.row_id = 42;
	for (int p = 0; p < ST_PHASE_COUNT; p++)
		o.ms[p] = p == ST_PHASE_SIGN ? -1 : p * 1.2345678 + (p == 2 ? 1e-9 : 0);
	o.requests = 11;
	o.turns = 9;
	o.writes = 8;
	o.retransmits = 3;
	o.tx_bytes = 7000;
	o.rx_bytes = 1234;
	o.baud = 115200;
	st_events_outcome(f.ev, &o, 1, 2);
	file_close(&f);

	j = json_pack("{s:s,s:s,s:s,s:s,s:s}", "event", "state", "station", "line-\xc3\xa9",
		      "slot", "A1", "from", "hello", "to", "csr");
	want_state = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(j);
	ms = json_object();
	for (int p = 0; p < ST_PHASE_COUNT; p++) {
		if (o.ms[p] >= 0)
			json_object_set_new(ms, st_phase_name((enum st_phase)p),
					    json_real(round(o.ms[p] * 1000.0) / 1000.0));
	}
	j = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:o,s:i,s:i,s:i,s:i,s:i,s:i,s:I,s:I}",
		      "event", "fail", "station", "line-\xc3\xa9", "slot", "A1", "device_id",
		      "dev-\xe2\x82\xac", "serial", "0a1b", "reason", "CSR_SIGNATURE", "error",
		      "bad \"sig\"? from board ??", "state", "csr", "ledger_row", (json_int_t)42,
		      "ms", ms, "requests", 11, "turns", 9, "writes", 8, "retransmits", 3, "resyncs", 0,
		      "baud", 115200, "tx_bytes", (json_int_t)7000, "rx_bytes", (json_int_t)1234);
	want_fail = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
	json_decref(j);

	got = file_read(f.path, &len);
	expect_line(got, want_state);
	expect_line(strchr(got, '\n') + 1, want_fail);
	assert_int_equal(whole_lines(got, len), 2);
	free(got);
	unlink(f.path);
	free(want_state);
	free(want_fail);
}

/* A crash (here abort()) before the turn ends still leaves the turn's whole lines in the
 * file. */
static void test_crash_keeps_the_turn(void **state)
{
	struct file_fixture f;
	size_t len;
	char *got;
	pid_t pid;
	int status;

	(void)state;
	file_open(&f);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		for (int i = 0; i < 5; i++)
			st_events_state(f.ev, "A1", "csr", "checked", "dev-1");
		abort();
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	got = file_read(f.path, &len);
	assert_int_equal(whole_lines(got, len), 5);
	free(got);
	file_close(&f);
	unlink(f.path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stalled_reader_drops_and_counts),
		cmocka_unit_test(test_reader_that_keeps_up_gets_everything),
		cmocka_unit_test(test_reader_gone),
		cmocka_unit_test(test_string_escaping_as_jansson),
		cmocka_unit_test(test_reals_as_jansson),
		cmocka_unit_test(test_timestamps),
		cmocka_unit_test(test_one_write_per_turn),
		cmocka_unit_test(test_lines_gather),
		cmocka_unit_test(test_lines_as_before),
		cmocka_unit_test(test_crash_keeps_the_turn),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
