/* The fatal-signal hooks (crash.h): every hook set runs once on the way down, whatever order
 * hooks were set and cleared in (the live view and the event stream each set one, and
 * clearing one must never take the other's away), and the signal then ends the process as
 * it would have. Each case runs in a forked child that aborts. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "crash.h"

static int out_fd = -1;

static void say(void *arg)
{
	(void)!write(out_fd, arg, strlen(arg));
}

/* Runs steps in a child that then aborts; returns what the hooks wrote, in order. */
static void run_child(void (*steps)(void), char *got, size_t cap)
{
	int fds[2], status;
	ssize_t n;
	size_t len = 0;
	pid_t pid;

	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		out_fd = fds[1];
		steps();
		abort();
	}
	close(fds[1]);
	while ((n = read(fds[0], got + len, cap - 1 - len)) > 0)
		len += (size_t)n;
	got[len] = 0;
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	/* The signal took its course: the child died of it. */
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGABRT);
}

static void first_cleared(void)
{
	int a = st_crash_hook_set(say, "view;");

	assert_true(st_crash_hook_set(say, "events;") >= 0);
	st_crash_hook_clear(a);
}

static void last_cleared(void)
{
	st_crash_hook_set(say, "view;");
	st_crash_hook_clear(st_crash_hook_set(say, "events;"));
}

static void both(void)
{
	st_crash_hook_set(say, "view;");
	st_crash_hook_set(say, "events;");
}

static void none_left(void)
{
	st_crash_hook_clear(st_crash_hook_set(say, "view;"));
}

static void too_many(void)
{
	for (int i = 0; i < ST_CRASH_HOOKS; i++)
		assert_true(st_crash_hook_set(say, "x") >= 0);
	if (st_crash_hook_set(say, "y") == -1)
		say("full;");
}

static void test_order(void **state)
{
	char got[64];

	(void)state;
	run_child(first_cleared, got, sizeof(got));
	assert_string_equal(got, "events;");
	run_child(last_cleared, got, sizeof(got));
	assert_string_equal(got, "view;");
	run_child(both, got, sizeof(got));
	assert_string_equal(got, "view;events;");
}

/* With every hook cleared the old handler is back: nothing runs, the signal still kills. */
static void test_none_left(void **state)
{
	char got[64];

	(void)state;
	run_child(none_left, got, sizeof(got));
	assert_string_equal(got, "");
}

static void test_full(void **state)
{
	char got[64];

	(void)state;
	run_child(too_many, got, sizeof(got));
	assert_string_equal(got, "full;xxxx");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_order),
		cmocka_unit_test(test_none_left),
		cmocka_unit_test(test_full),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
