/* Helpers shared by the unit tests. */
#ifndef ST_TESTUTIL_H
#define ST_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Reads a whole file; returns a malloc'd buffer (NUL-terminated) and its length, or NULL. */
uint8_t *tu_read_file(const char *path, size_t *len);

/* Makes a fresh directory under $TMPDIR (or /tmp) for one test; returns a static path. */
const char *tu_tmpdir(const char *name);

#endif
