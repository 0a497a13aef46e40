#include "testhook.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

const char *st_test_hook(const char *name)
{
#ifdef STATION_TEST_HOOKS
	const char *v = getenv("STATION_TEST_FAIL");
	size_t n = strlen(name);
	const char *dot = strchr(name, '.');

	if (!v || strncmp(v, name, n) != 0 || (v[n] != 0 && v[n] != ':'))
		return NULL;
	st_warn("%.*s: test fault hook %s armed", dot ? (int)(dot - name) : (int)n, name, v);
	return v[n] ? v + n + 1 : v + n;
#else
	(void)name;
	return NULL;
#endif
}
