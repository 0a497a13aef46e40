/* station-agent's storage: the board core's storage ops over POSIX files.
 *
 * The station's files are installed where the device's software reads them, in the
 * configuration directory (default /var/sota: client.pem, sota.toml, ...), as plain files.
 * Beside them, hidden from the station (whose paths never start with '.'):
 *
 *   .staging/<slot>  files being written; emptied at every start
 *   .commit          the journal of a commit in progress
 *   .manifest        the installed set: "gen N", then "sha256 size mode path" per file
 *
 * COMMIT fsyncs every staged file, refuses a set where a file would be another's
 * directory, writes the new manifest as .manifest.new, then the journal (the new generation
 * and every file of the new set, staged ones with their slot), each through a temporary
 * file, fsync and rename: the journal's rename is the commit point. It then renames each
 * staged file into place, fsyncs the directories, renames the new manifest into place and
 * removes the journal: after the commit point nothing needs a new block.
 * A power loss before the commit point leaves the old set (staging is discarded at the
 * next start); after it, the next start finds the journal and finishes the renames (a
 * staged file already renamed is simply gone from staging), so the device ends with the
 * new set. The agent runs that recovery before it answers anything, so VERIFY never sees a
 * mix. Every path is opened one component at a time with O_NOFOLLOW below the
 * configuration directory: a symlink on the way is refused, whatever the station asks. */
#include "agent.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_INSTALLED 64

struct installed {
	char path[BRD_MAX_PATH + 1];
	uint64_t size;
	unsigned int mode;
	uint8_t sha[32];
};

struct slot {
	int fd; /* -1: free */
	char path[BRD_MAX_PATH + 1];
	unsigned int mode;
};

struct agent_store {
	int cfgfd; /* the configuration directory */
	int fsync;
	char rec_path[BRD_REC_COUNT_][AGENT_PATH_MAX];
	struct slot slots[BRD_MAX_STAGED];
	struct installed files[MAX_INSTALLED];
	unsigned int nfiles;
	uint64_t gen;
	char err[AGENT_PATH_MAX + 256];
};

static int fail(struct agent_store *s, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct agent_store *s, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->err, sizeof(s->err), fmt, ap);
	va_end(ap);
	return code;
}

/* The board core's code for an errno. */
static int code_of(int e)
{
	if (e == ENOSPC || e == EDQUOT || e == EFBIG)
		return BRD_ERR_NOSPACE;
	if (e == ELOOP || e == ENOTDIR || e == EISDIR || e == EMLINK)
		return BRD_ERR_PATH;
	if (e == ENOENT)
		return BRD_ERR_NOTFOUND;
	return BRD_ERR_IO;
}

static const char *why_of(int e)
{
	if (e == ELOOP || e == EMLINK)
		return "a symlink on the way";
	return strerror(e);
}


static void fsync_fd(const struct agent_store *s, int fd)
{
	if (s->fsync)
		fsync(fd);
}

/* Opens the directory holding rel (relative to dirfd), one component at a time without
 * following symlinks, creating missing directories when create is set. *last points at
 * rel's last component. Returns the directory fd or -1 with errno. */
static int open_parent(int dirfd, const char *rel, int create, const char **last)
{
	char comp[BRD_MAX_PATH + 1];
	const char *p = rel, *slash;
	int fd = dup(dirfd), next;

	while (fd >= 0 && (slash = strchr(p, '/')) != NULL) {
		size_t n = (size_t)(slash - p);

		if (n == 0 || n > BRD_MAX_PATH) {
			close(fd);
			errno = EINVAL;
			return -1;
		}
		memcpy(comp, p, n);
		comp[n] = 0;
		next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0 && errno == ENOENT && create) {
			if (mkdirat(fd, comp, 0755) != 0 && errno != EEXIST) {
				next = -1;
			} else {
				fsync(fd);
				next = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
								O_CLOEXEC);
			}
		}
		close(fd);
		fd = next;
		p = slash + 1;
	}
	*last = p;
	return fd;
}

/* Opens rel below dirfd without following a symlink anywhere. */
static int open_beneath(int dirfd, const char *rel, int flags, unsigned int mode, int create)
{
	const char *last;
	int dfd = open_parent(dirfd, rel, create, &last), fd, saved;

	if (dfd < 0)
		return -1;
	fd = openat(dfd, last, flags | O_NOFOLLOW | O_CLOEXEC, mode);
	saved = errno;
	close(dfd);
	errno = saved;
	return fd;
}

static int write_all(int fd, const void *data, size_t n, off_t off)
{
	const char *p = data;

	while (n) {
		ssize_t w = pwrite(fd, p, n, off);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
		off += w;
	}
	return 0;
}

/* Writes name in the configuration directory atomically (tmp, fsync, rename, fsync). */
static int cfg_write_atomic(struct agent_store *s, const char *name, const char *data, size_t n)
{
	char tmp[64];
	int fd, saved;

	snprintf(tmp, sizeof(tmp), "%s.tmp", name);
	unlinkat(s->cfgfd, tmp, 0);
	fd = openat(s->cfgfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	if (write_all(fd, data, n, 0) != 0 || (s->fsync && fsync(fd) != 0)) {
		saved = errno;
		close(fd);
		unlinkat(s->cfgfd, tmp, 0);
		errno = saved;
		return -1;
	}
	close(fd);
	if (renameat(s->cfgfd, tmp, s->cfgfd, name) != 0)
		return -1;
	fsync_fd(s, s->cfgfd);
	return 0;
}

static void sha_hex(const uint8_t sha[32], char out[65])
{
	static const char hex[] = "0123456789abcdef";
	int i;

	for (i = 0; i < 32; i++) {
		out[2 * i] = hex[sha[i] >> 4];
		out[2 * i + 1] = hex[sha[i] & 15];
	}
	out[64] = 0;
}

static int hex_sha(const char *s, uint8_t out[32])
{
	int i;

	for (i = 0; i < 32; i++) {
		unsigned int v;

		if (sscanf(s + 2 * i, "%2x", &v) != 1)
			return -1;
		out[i] = (uint8_t)v;
	}
	return 0;
}

/* One file line: "sha size mode path", the journal's with a leading "slot " (-1: kept). */
static int parse_file(const char *line, struct installed *f, int *slot)
{
	char hex[65], path[BRD_MAX_PATH + 1];
	unsigned long long size;
	unsigned int mode;
	int n;

	if (slot) {
		if (sscanf(line, "%d %64s %llu %o %128s%n", slot, hex, &size, &mode, path, &n) != 5)
			return -1;
	} else if (sscanf(line, "%64s %llu %o %128s%n", hex, &size, &mode, path, &n) != 4) {
		return -1;
	}
	if (strlen(hex) != 64 || hex_sha(hex, f->sha) != 0)
		return -1;
	snprintf(f->path, sizeof(f->path), "%s", path);
	f->size = size;
	f->mode = mode;
	return 0;
}

/* Reads the manifest: the installed set and its generation (none: generation 0). */
static int read_manifest(struct agent_store *s)
{
	char line[BRD_MAX_PATH + 128];
	int fd = openat(s->cfgfd, ".manifest", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	FILE *f;
	int rc = 0;

	s->nfiles = 0;
	s->gen = 0;
	if (fd < 0)
		return errno == ENOENT ? 0 : fail(s, BRD_ERR_IO, ".manifest: %s", strerror(errno));
	f = fdopen(fd, "r");
	if (!f) {
		close(fd);
		return fail(s, BRD_ERR_IO, ".manifest: %s", strerror(errno));
	}
	if (!fgets(line, sizeof(line), f) || sscanf(line, "gen %" SCNu64, &s->gen) != 1)
		rc = fail(s, BRD_ERR_IO, ".manifest: no generation line");
	while (rc == 0 && fgets(line, sizeof(line), f)) {
		if (s->nfiles == MAX_INSTALLED || parse_file(line, &s->files[s->nfiles], NULL))
			rc = fail(s, BRD_ERR_IO, ".manifest: bad line %u", s->nfiles + 2);
		else
			s->nfiles++;
	}
	fclose(f);
	return rc;
}

/* The journal's or manifest's text for a set of files. slots: per file its staging slot or
 * -1 (NULL for the manifest). */
static char *set_text(uint64_t gen, const struct installed *files, const int *slots,
		      unsigned int n, size_t *len)
{
	char *buf = NULL, hex[65];
	FILE *m = open_memstream(&buf, len);
	unsigned int i;

	if (!m)
		return NULL;
	fprintf(m, "gen %" PRIu64 "\n", gen);
	for (i = 0; i < n; i++) {
		sha_hex(files[i].sha, hex);
		if (slots)
			fprintf(m, "%d ", slots[i]);
		fprintf(m, "%s %" PRIu64 " %04o %s\n", hex, files[i].size, files[i].mode,
			files[i].path);
	}
	if (fclose(m) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* Second half of a commit, also the recovery after a power loss: the journal's staged files
 * renamed into place, the manifest, the journal removed. Idempotent. */
static int apply_journal(struct agent_store *s)
{
	struct installed files[MAX_INSTALLED];
	int slots[MAX_INSTALLED];
	char line[BRD_MAX_PATH + 128], src[32], *text = NULL;
	unsigned int n = 0, i;
	uint64_t gen;
	size_t len;
	FILE *f;
	int fd, rc = 0;

	fd = openat(s->cfgfd, ".commit", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : fail(s, BRD_ERR_IO, ".commit: %s", strerror(errno));
	f = fdopen(fd, "r");
	if (!f) {
		close(fd);
		return fail(s, BRD_ERR_IO, ".commit: %s", strerror(errno));
	}
	if (!fgets(line, sizeof(line), f) || sscanf(line, "gen %" SCNu64, &gen) != 1)
		rc = fail(s, BRD_ERR_IO, ".commit: no generation line");
	while (rc == 0 && fgets(line, sizeof(line), f)) {
		if (n == MAX_INSTALLED || parse_file(line, &files[n], &slots[n]))
			rc = fail(s, BRD_ERR_IO, ".commit: bad line %u", n + 2);
		else
			n++;
	}
	fclose(f);
	for (i = 0; rc == 0 && i < n; i++) {
		const char *last;
		int dfd;

		if (slots[i] < 0)
			continue;
		snprintf(src, sizeof(src), ".staging/%d", slots[i]);
		if (faccessat(s->cfgfd, src, F_OK, AT_SYMLINK_NOFOLLOW) != 0)
			continue; /* renamed before the power went */
		dfd = open_parent(s->cfgfd, files[i].path, 1, &last);
		if (dfd < 0 || fchmodat(s->cfgfd, src, files[i].mode, 0) != 0 ||
		    renameat(s->cfgfd, src, dfd, last) != 0) {
			rc = fail(s, code_of(errno), "install %s: %s", files[i].path,
				  why_of(errno));
		} else {
			fsync_fd(s, dfd);
			agent_test_stop("commit-install");
		}
		if (dfd >= 0)
			close(dfd);
	}
	/* The manifest the commit wrote before its commit point, renamed into place; a journal
	 * without one (its manifest renamed before a power loss, or a journal of an earlier
	 * agent) has it written here, unless the manifest in place is already the new one. */
	if (rc == 0 && renameat(s->cfgfd, ".manifest.new", s->cfgfd, ".manifest") != 0) {
		if (errno != ENOENT)
			rc = fail(s, code_of(errno), ".manifest: %s", strerror(errno));
		else if (s->gen != gen &&
			 (!(text = set_text(gen, files, NULL, n, &len)) ||
			  cfg_write_atomic(s, ".manifest", text, len) != 0))
			rc = fail(s, code_of(errno), ".manifest: %s", strerror(errno));
	}
	if (rc == 0 && unlinkat(s->cfgfd, ".commit", 0) != 0)
		rc = fail(s, BRD_ERR_IO, ".commit: %s", strerror(errno));
	if (rc == 0) {
		fsync_fd(s, s->cfgfd);
		memcpy(s->files, files, n * sizeof(files[0]));
		s->nfiles = n;
		s->gen = gen;
	}
	free(text);
	return rc;
}

static void rm_staging(struct agent_store *s)
{
	int fd = openat(s->cfgfd, ".staging", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct dirent *e;
	DIR *d;

	if (fd < 0)
		return;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return;
	}
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] != '.')
			unlinkat(fd, e->d_name, 0);
	}
	closedir(d);
}

/* The ops. */

static int st_stage_open(void *inst, unsigned int slot, const char *path, unsigned int mode)
{
	struct agent_store *s = inst;
	struct slot *sl = &s->slots[slot];
	char name[32];
	const char *last;
	struct stat st;
	int dfd, rc = 0;

	if (apply_journal(s) != 0)
		return BRD_ERR_IO;
	if (sl->fd >= 0)
		close(sl->fd);
	sl->fd = -1;
	/* The target's directories must not be symlinks (or files), nor the target itself a
	 * symlink or a directory: refuse now, not at COMMIT. Missing directories are fine. */
	dfd = open_parent(s->cfgfd, path, 0, &last);
	if (dfd < 0 && errno != ENOENT)
		return fail(s, code_of(errno), "%s: %s", path, why_of(errno));
	if (dfd >= 0) {
		if (fstatat(dfd, last, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(st.st_mode))
			rc = fail(s, BRD_ERR_PATH, "%s: %s is in its place", path,
				  S_ISLNK(st.st_mode) ? "a symlink" : "something not a file");
		close(dfd);
		if (rc)
			return rc;
	}
	snprintf(name, sizeof(name), ".staging/%u", slot);
	sl->fd = openat(s->cfgfd, name, O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (sl->fd < 0)
		return fail(s, code_of(errno), "staging %s: %s", path, why_of(errno));
	snprintf(sl->path, sizeof(sl->path), "%s", path);
	sl->mode = mode;
	return 0;
}

static int st_stage_write(void *inst, unsigned int slot, uint64_t off, const void *data,
			  size_t n)
{
	struct agent_store *s = inst;
	struct slot *sl = &s->slots[slot];

	if (sl->fd < 0)
		return fail(s, BRD_ERR_IO, "staging slot %u is not open", slot);
	if (write_all(sl->fd, data, n, (off_t)off) != 0) {
		int e = errno;

		/* A full disk keeps nothing half written. */
		ftruncate(sl->fd, (off_t)off);
		return fail(s, code_of(e), "staging %s: %s", sl->path, strerror(e));
	}
	return 0;
}

static int st_stage_read(void *inst, unsigned int slot, uint64_t off, void *buf, size_t n,
			 size_t *got)
{
	struct agent_store *s = inst;
	ssize_t r;

	*got = 0;
	if (s->slots[slot].fd < 0)
		return fail(s, BRD_ERR_IO, "staging slot %u is not open", slot);
	do
		r = pread(s->slots[slot].fd, buf, n, (off_t)off);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return fail(s, code_of(errno), "staging %s: %s", s->slots[slot].path,
			    strerror(errno));
	*got = (size_t)r;
	return 0;
}

static void st_stage_discard(void *inst, int slot)
{
	struct agent_store *s = inst;
	char name[32];
	unsigned int i;

	for (i = 0; i < BRD_MAX_STAGED; i++) {
		if (slot >= 0 && (unsigned int)slot != i)
			continue;
		if (s->slots[i].fd >= 0)
			close(s->slots[i].fd);
		s->slots[i].fd = -1;
		snprintf(name, sizeof(name), ".staging/%u", i);
		unlinkat(s->cfgfd, name, 0);
	}
	if (slot < 0)
		rm_staging(s);
}

static int st_commit(void *inst, const struct brd_commit_file *cf, unsigned int n)
{
	struct agent_store *s = inst;
	struct installed next[MAX_INSTALLED];
	int slots[MAX_INSTALLED];
	unsigned int k = 0, i, j;
	char *text = NULL;
	size_t len;
	int rc = 0;

	if (apply_journal(s) != 0)
		return BRD_ERR_IO;
	/* The new set: the old files not rewritten, then the staged ones. */
	for (i = 0; i < s->nfiles; i++) {
		for (j = 0; j < n && strcmp(s->files[i].path, cf[j].path) != 0; j++)
			;
		if (j == n) {
			next[k] = s->files[i];
			slots[k++] = -1;
		}
	}
	for (j = 0; j < n; j++) {
		struct slot *sl = &s->slots[cf[j].slot];

		if (k == MAX_INSTALLED)
			return fail(s, BRD_ERR_NOSPACE, "more than %d files installed",
				    MAX_INSTALLED);
		if (sl->fd < 0 || (s->fsync && fsync(sl->fd) != 0))
			return fail(s, code_of(errno), "staging %s: %s", cf[j].path,
				    strerror(errno));
		snprintf(next[k].path, sizeof(next[k].path), "%s", cf[j].path);
		next[k].size = cf[j].size;
		next[k].mode = cf[j].mode;
		memcpy(next[k].sha, cf[j].sha, 32);
		slots[k++] = (int)cf[j].slot;
	}
	/* A file and a directory of one name cannot both be installed: found now, before the
	 * commit point, the set is refused whole; found by a rename after it, the journal could
	 * never be finished and the board would hold a mix. */
	for (i = 0; i < k; i++) {
		for (j = 0; j < k; j++) {
			size_t l = strlen(next[i].path);

			if (i != j && strncmp(next[i].path, next[j].path, l) == 0 &&
			    next[j].path[l] == '/')
				return fail(s, BRD_ERR_PATH, "%s and %s: a file cannot also be a "
					    "directory", next[i].path, next[j].path);
		}
	}
	/* The new manifest too, before the commit point: after it nothing needs a new block
	 * (renames only), so a disk that fills meanwhile cannot leave a journal that no start
	 * can finish. */
	text = set_text(s->gen + 1, next, NULL, k, &len);
	if (!text)
		return fail(s, BRD_ERR_IO, "out of memory");
	if (cfg_write_atomic(s, ".manifest.new", text, len) != 0)
		rc = fail(s, code_of(errno), ".manifest.new: %s", strerror(errno));
	free(text);
	if (rc)
		return rc;
	text = set_text(s->gen + 1, next, slots, k, &len);
	if (!text)
		return fail(s, BRD_ERR_IO, "out of memory");
	agent_test_stop("commit-journal");
	/* The commit point. */
	if (cfg_write_atomic(s, ".commit", text, len) != 0) {
		rc = fail(s, code_of(errno), ".commit: %s", strerror(errno));
		unlinkat(s->cfgfd, ".manifest.new", 0);
	}
	free(text);
	if (rc)
		return rc;
	rc = apply_journal(s);
	for (j = 0; j < n; j++) {
		close(s->slots[cf[j].slot].fd);
		s->slots[cf[j].slot].fd = -1;
	}
	return rc;
}

static uint64_t st_generation(void *inst)
{
	return ((struct agent_store *)inst)->gen;
}

static unsigned int st_installed(void *inst)
{
	return ((struct agent_store *)inst)->nfiles;
}

static int st_installed_info(void *inst, unsigned int idx, char *path, size_t cap,
			     uint64_t *size)
{
	struct agent_store *s = inst;

	if (idx >= s->nfiles || strlen(s->files[idx].path) >= cap)
		return BRD_ERR_NOTFOUND;
	strcpy(path, s->files[idx].path);
	*size = s->files[idx].size;
	return 0;
}

static int st_installed_read(void *inst, unsigned int idx, uint64_t off, void *buf, size_t n,
			     size_t *got)
{
	struct agent_store *s = inst;
	ssize_t r;
	int fd;

	*got = 0;
	if (idx >= s->nfiles)
		return BRD_ERR_NOTFOUND;
	fd = open_beneath(s->cfgfd, s->files[idx].path, O_RDONLY, 0, 0);
	if (fd < 0)
		return fail(s, code_of(errno), "%s: %s", s->files[idx].path, why_of(errno));
	r = pread(fd, buf, n, (off_t)off);
	close(fd);
	if (r < 0)
		return fail(s, BRD_ERR_IO, "%s: %s", s->files[idx].path, strerror(errno));
	*got = (size_t)r;
	return 0;
}

static int st_rec_read(void *inst, enum brd_record rec, void *buf, size_t cap, size_t *len)
{
	struct agent_store *s = inst;
	int fd = open(s->rec_path[rec], O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	ssize_t r;
	char extra;

	*len = 0;
	if (fd < 0)
		return errno == ENOENT ? BRD_ERR_NOTFOUND
				       : fail(s, BRD_ERR_IO, "%s: %s", s->rec_path[rec],
					      strerror(errno));
	r = read(fd, buf, cap);
	if (r >= 0 && (size_t)r == cap && read(fd, &extra, 1) > 0)
		r = -2;
	close(fd);
	if (r < 0)
		return fail(s, BRD_ERR_IO, "%s: %s", s->rec_path[rec],
			    r == -2 ? "too long" : strerror(errno));
	/* The device id file may end in a line end, written by hand. */
	while (rec == BRD_REC_DEVICE_ID && r > 0 &&
	       (((char *)buf)[r - 1] == '\n' || ((char *)buf)[r - 1] == '\r'))
		r--;
	*len = (size_t)r;
	return 0;
}

static int st_rec_write(void *inst, enum brd_record rec, const void *data, size_t len)
{
	struct agent_store *s = inst;

	if (agent_write_atomic(s->rec_path[rec], data, len, 0600, s->fsync) != 0)
		return fail(s, code_of(errno), "%s: %s", s->rec_path[rec], strerror(errno));
	return 0;
}

static const char *st_last_error(void *inst)
{
	struct agent_store *s = inst;

	return s->err[0] ? s->err : NULL;
}

const struct brd_storage_ops agent_store_ops = {
	.stage_open = st_stage_open,
	.stage_write = st_stage_write,
	.stage_read = st_stage_read,
	.stage_discard = st_stage_discard,
	.commit = st_commit,
	.generation = st_generation,
	.installed = st_installed,
	.installed_info = st_installed_info,
	.installed_read = st_installed_read,
	.rec_read = st_rec_read,
	.rec_write = st_rec_write,
	.last_error = st_last_error,
};

int agent_store_open(const struct agent_config *c, struct agent_store **out, char *err,
		     size_t errlen)
{
	struct agent_store *s = calloc(1, sizeof(*s));
	const char *rel = c->config_dir_norm + 1, *last;
	char root[AGENT_PATH_MAX];
	int rootfd, dfd = -1;
	unsigned int i;

	*out = NULL;
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	s->fsync = c->fsync;
	s->cfgfd = -1;
	for (i = 0; i < BRD_MAX_STAGED; i++)
		s->slots[i].fd = -1;
	snprintf(s->rec_path[BRD_REC_DEVICE_ID], AGENT_PATH_MAX, "%s", c->device_id_file);
	snprintf(s->rec_path[BRD_REC_CSR], AGENT_PATH_MAX, "%.4000s/csr.der", c->state_dir);
	snprintf(s->rec_path[BRD_REC_SUBJECT], AGENT_PATH_MAX, "%.4000s/csr.subject", c->state_dir);
	/* The configuration directory, made when missing, no symlink from the root down. */
	snprintf(root, sizeof(root), "%s", c->root[0] ? c->root : "/");
	rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rootfd >= 0 && *rel) {
		char inner[AGENT_PATH_MAX];

		snprintf(inner, sizeof(inner), "%s/x", rel);
		dfd = open_parent(rootfd, inner, 1, &last);
	} else if (rootfd >= 0) {
		dfd = dup(rootfd);
	}
	if (rootfd >= 0)
		close(rootfd);
	if (dfd < 0) {
		snprintf(err, errlen, "%s: %s", c->config_dir, why_of(errno));
		free(s);
		return -1;
	}
	s->cfgfd = dfd;
	if (mkdirat(dfd, ".staging", 0700) != 0 && errno != EEXIST) {
		snprintf(err, errlen, "%s/.staging: %s", c->config_dir, strerror(errno));
		goto fail;
	}
	if (read_manifest(s) != 0 || apply_journal(s) != 0) {
		snprintf(err, errlen, "%s: %s", c->config_dir, s->err);
		goto fail;
	}
	rm_staging(s);
	*out = s;
	return 0;
fail:
	agent_store_close(s);
	return -1;
}

void agent_store_close(struct agent_store *s)
{
	unsigned int i;

	if (!s)
		return;
	for (i = 0; i < BRD_MAX_STAGED; i++) {
		if (s->slots[i].fd >= 0)
			close(s->slots[i].fd);
	}
	if (s->cfgfd >= 0)
		close(s->cfgfd);
	free(s);
}
