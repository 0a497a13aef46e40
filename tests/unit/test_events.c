/* The event stream to a pipe never blocks the loop: with a reader that does not read, every
 * emit returns at once, what does not fit the bounded buffer is dropped and counted, and
 * every line that reaches the reader is whole; once the reader reads again, what waited is
 * written out by the loop; with a reader that keeps up nothing is dropped. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
		if (json_integer_value(json_object_get(o, "n")) <= last)
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
	assert_int_equal(st_events_dropped(p.ev), 10);
	pipe_close(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stalled_reader_drops_and_counts),
		cmocka_unit_test(test_reader_that_keeps_up_gets_everything),
		cmocka_unit_test(test_reader_gone),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
