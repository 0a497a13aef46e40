#ifndef ST_CRASH_H
#define ST_CRASH_H

/* What the process does on its way down from a fatal signal (SIGSEGV, SIGBUS, SIGFPE, SIGILL,
 * SIGABRT): every hook set runs once, then the signal takes its course as it would have
 * without them (the handler that was there before, a sanitizer's, or the default core dump).
 * One handler serves every hook, so hooks may be set and cleared in any order without one
 * undoing another. A hook runs in a signal handler: it may only do async-signal-safe work
 * (write(2) of what is already in memory). Set and clear from one thread. */

/* Sets fn(arg) to run on a fatal signal. Returns a handle for st_crash_hook_clear(), or -1
 * when every place is taken (ST_CRASH_HOOKS). */
#define ST_CRASH_HOOKS 4
int st_crash_hook_set(void (*fn)(void *arg), void *arg);

/* Clears a hook set by st_crash_hook_set() (-1 does nothing); with the last one the signals
 * get back the handlers they had before. */
void st_crash_hook_clear(int handle);

#endif
