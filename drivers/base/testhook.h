/* The fault hooks integration tests drive: STATION_TEST_FAIL=NAME or NAME:ARG arms the hook
 * NAME ("pool.kill_after_intents", "slot.stall_after", ...). Only a build with
 * -DSTATION_TEST_HOOKS=ON reads the variable; a release build does not even name it. Any
 * thread. */
#ifndef ST_TESTHOOK_H
#define ST_TESTHOOK_H

/* ARG ("" for NAME alone) when STATION_TEST_FAIL arms the hook name, after a warning that
 * names the hook ("pool: test fault hook pool.kill_after_intents:3 armed"); NULL when it
 * arms another or none, and always in a build without the hooks. */
const char *st_test_hook(const char *name);

#endif
