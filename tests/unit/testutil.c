#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint8_t *tu_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
		goto out;
	buf = malloc((size_t)n + 1);
	if (!buf)
		goto out;
	if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
		goto out;
	}
	buf[n] = 0;
	*len = (size_t)n;
out:
	fclose(f);
	return buf;
}

const char *tu_tmpdir(const char *name)
{
	static char path[4096];
	const char *base = getenv("TMPDIR");
	char cmd[4200];

	snprintf(path, sizeof(path), "%s/station-test-%s-XXXXXX", base ? base : "/tmp", name);
	if (!mkdtemp(path))
		return NULL;
	snprintf(cmd, sizeof(cmd), "chmod 700 '%s'", path);
	(void)!system(cmd);
	return path;
}
