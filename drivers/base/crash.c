#include "crash.h"

#include <signal.h>
#include <string.h>

static const int crash_sigs[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT };
#define NSIGS (sizeof(crash_sigs) / sizeof(crash_sigs[0]))

struct hook {
	void (*volatile fn)(void *arg);
	void *volatile arg;
};

static struct hook hooks[ST_CRASH_HOOKS];
static struct sigaction old[NSIGS];
static int installed;

static void restore(void)
{
	for (size_t i = 0; i < NSIGS; i++)
		sigaction(crash_sigs[i], &old[i], NULL);
	installed = 0;
}

static void on_crash(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	/* Each hook once: a second fault inside one ends in the old handler. */
	restore();
	for (size_t i = 0; i < ST_CRASH_HOOKS; i++) {
		void (*fn)(void *) = hooks[i].fn;

		hooks[i].fn = NULL;
		if (fn)
			fn(hooks[i].arg);
	}
	/* A fault happens again when the handler returns, now to the old handler; a signal
	 * that was sent is sent again. */
	if (si->si_code <= 0)
		raise(sig);
}

int st_crash_hook_set(void (*fn)(void *arg), void *arg)
{
	struct sigaction sa;

	for (int i = 0; i < ST_CRASH_HOOKS; i++) {
		if (hooks[i].fn)
			continue;
		hooks[i].arg = arg;
		hooks[i].fn = fn;
		if (!installed) {
			memset(&sa, 0, sizeof(sa));
			sa.sa_sigaction = on_crash;
			sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
			sigemptyset(&sa.sa_mask);
			for (size_t s = 0; s < NSIGS; s++)
				sigaction(crash_sigs[s], &sa, &old[s]);
			installed = 1;
		}
		return i;
	}
	return -1;
}

void st_crash_hook_clear(int handle)
{
	if (handle < 0 || handle >= ST_CRASH_HOOKS)
		return;
	hooks[handle].fn = NULL;
	hooks[handle].arg = NULL;
	for (int i = 0; i < ST_CRASH_HOOKS; i++) {
		if (hooks[i].fn)
			return;
	}
	if (installed)
		restore();
}
