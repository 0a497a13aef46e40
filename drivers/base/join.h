/* A list of names for a message ("known: a, b, c"). Any thread. */
#ifndef ST_JOIN_H
#define ST_JOIN_H

#include <stddef.h>

/* Writes the NULL-terminated items into buf as "a, b, c", each between before and after
 * ("{" and "}" give "{a}, {b}"); always NUL-terminated, and a list longer than len is cut
 * there. */
void st_join(char *buf, size_t len, const char *const *items, const char *before,
	     const char *after);

#endif
