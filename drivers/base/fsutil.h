/* Durable file writes: a file is written to a temporary name beside its target, fsync'd,
 * renamed over the target and the directory fsync'd, so a reader sees the old or the new
 * file, never a part of one, even across a power loss. Blocking: never call on the event
 * loop thread. */
#ifndef ST_FSUTIL_H
#define ST_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

/* Writes len bytes of data to path with the given mode. Returns 0 or -errno. */
int st_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode);

/* Copies src to dst the same way. Returns 0 or -errno. */
int st_copy_file_atomic(const char *src, const char *dst, mode_t mode);

/* Reads at most max bytes of path into a new buffer (NUL-terminated; free with free()).
 * Returns 0, -EFBIG when the file is larger than max (then *len is max + 1 and the buffer
 * holds the first max + 1 bytes), or -errno. *data is NULL on other failures. */
int st_read_file(const char *path, size_t max, unsigned char **data, size_t *len);

#endif
