/* Replays a fuzz target's corpus when libFuzzer is not available (gcc builds), so every
 * build of the suite still runs each parser over its seeds and regressions. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	long n;
	int rc = -1;

	if (!f)
		return -1;
	if (fseek(f, 0, SEEK_END) != 0)
		goto out;
	n = ftell(f);
	if (n < 0 || fseek(f, 0, SEEK_SET) != 0)
		goto out;
	buf = malloc((size_t)n + 1);
	if (!buf)
		goto out;
	if (fread(buf, 1, (size_t)n, f) != (size_t)n)
		goto out;
	LLVMFuzzerTestOneInput(buf, (size_t)n);
	rc = 0;
out:
	free(buf);
	fclose(f);
	return rc;
}

int main(int argc, char **argv)
{
	int count = 0;

	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st) != 0) {
			fprintf(stderr, "replay: %s: not found\n", argv[i]);
			return 1;
		}
		if (S_ISDIR(st.st_mode)) {
			DIR *d = opendir(argv[i]);
			struct dirent *e;
			char path[4096];
			if (!d)
				return 1;
			while ((e = readdir(d)) != NULL) {
				if (e->d_name[0] == '.')
					continue;
				snprintf(path, sizeof(path), "%s/%s", argv[i], e->d_name);
				if (replay_file(path) == 0)
					count++;
			}
			closedir(d);
		} else if (replay_file(argv[i]) == 0) {
			count++;
		}
	}
	/* A few synthetic inputs so a target without a corpus still runs. */
	{
		uint8_t buf[512];
		for (size_t n = 0; n < sizeof(buf); n += 37) {
			for (size_t i = 0; i < n; i++)
				buf[i] = (uint8_t)(i * 131 + n);
			LLVMFuzzerTestOneInput(buf, n);
			count++;
		}
	}
	printf("replayed %d inputs\n", count);
	return 0;
}
