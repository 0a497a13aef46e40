/* station-agent's configuration: a file of `key = value` lines ('#' starts a comment), every
 * key optional. README.md in this folder lists the keys and their defaults. */
#include "agent.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define AGENT_VERSION "1.0"

static int errmsg(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int errmsg(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

int agent_rooted(char *out, size_t cap, const char *root, const char *path)
{
	int n;

	if (!root)
		root = "";
	n = snprintf(out, cap, "%s%s", root, path);
	return n < 0 || (size_t)n >= cap ? -1 : 0;
}

int agent_read_line(const char *path, char *out, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	ssize_t n;

	out[0] = 0;
	if (fd < 0)
		return -1;
	n = read(fd, out, cap - 1);
	close(fd);
	if (n < 0)
		return -1;
	out[n] = 0;
	/* Device tree strings end in NUL; files in a line end. */
	out[strcspn(out, "\r\n")] = 0;
	return 0;
}

int agent_write_atomic(const char *path, const void *data, size_t n, unsigned int mode,
		       int do_fsync)
{
	char tmp[AGENT_PATH_MAX + 8], dir[AGENT_PATH_MAX], *slash;
	const char *p = data;
	int fd, rc = -1, saved;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0)
		return -1;
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			goto out;
		}
		p += w;
		n -= (size_t)w;
	}
	if (do_fsync && fsync(fd) != 0)
		goto out;
	if (close(fd) != 0) {
		fd = -1;
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) != 0)
		goto out;
	if (do_fsync) {
		snprintf(dir, sizeof(dir), "%s", path);
		slash = strrchr(dir, '/');
		if (slash && slash != dir) {
			*slash = 0;
			fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (fd >= 0)
				fsync(fd);
		}
	}
	rc = 0;
out:
	saved = errno;
	if (fd >= 0)
		close(fd);
	if (rc)
		unlink(tmp);
	errno = saved;
	return rc;
}

#ifdef STATION_TEST_HOOKS
/* The test hooks agent.h describes. */
static int test_point(const char *var, const char *point)
{
	const char *want = getenv(var);

	return want && strcmp(want, point) == 0;
}

void agent_test_stop(const char *point)
{
	if (!test_point("STATION_AGENT_TEST_STOP", point))
		return;
	fprintf(stderr, "station-agent: test stop at %s\n", point);
	/* Nothing but a signal ends it, and SIGTERM does (a test cleaning up). */
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	for (;;)
		pause();
}

int agent_test_fail(const char *point)
{
	if (!test_point("STATION_AGENT_TEST_FAIL", point))
		return 0;
	fprintf(stderr, "station-agent: test failure at %s\n", point);
	return 1;
}
#endif

static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = 0;
	return s;
}

static int parse_uint(const char *v, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long x;

	errno = 0;
	x = strtoull(v, &end, 10);
	if (!*v || *end || errno || *v == '-' || x < min || x > max)
		return -1;
	*out = x;
	return 0;
}

static int parse_bool(const char *v, int *out)
{
	if (!strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "1"))
		*out = 1;
	else if (!strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "0"))
		*out = 0;
	else
		return -1;
	return 0;
}

/* Strings the configuration sets, before --root is applied. */
struct raw {
	char state_dir[AGENT_PATH_MAX], config_dir[AGENT_PATH_MAX];
	char device_id_file[AGENT_PATH_MAX], serial_file[AGENT_PATH_MAX];
	char key[AGENT_PATH_MAX], pin_file[AGENT_PATH_MAX];
};

static int set_str(char *dst, size_t cap, const char *v)
{
	if (strlen(v) >= cap)
		return -1;
	strcpy(dst, v);
	return 0;
}

static int set_path(char *dst, const char *v)
{
	return v[0] == '/' ? set_str(dst, AGENT_PATH_MAX, v) : -1;
}

/* One `key = value`: 0, or -1 with why. */
static int apply(struct agent_config *c, struct raw *r, const char *k, const char *v,
		 const char **why)
{
	uint64_t x;

	*why = "bad value";
	if (!strcmp(k, "hardware_id"))
		return set_str(c->hw, sizeof(c->hw), v);
	if (!strcmp(k, "sku"))
		return set_str(c->sku, sizeof(c->sku), v);
	if (!strcmp(k, "firmware"))
		return set_str(c->fw, sizeof(c->fw), v);
	if (!strcmp(k, "serial"))
		return set_str(c->sn, sizeof(c->sn), v);
	if (!strcmp(k, "key_storage")) {
		*why = "must be se or sw";
		return strcmp(v, "se") && strcmp(v, "sw") ? -1 : set_str(c->key_storage, 8, v);
	}
	if (!strcmp(k, "key_backend")) {
		*why = "must be pkcs11 or file";
		return strcmp(v, "pkcs11") && strcmp(v, "file") ? -1
								: set_str(c->key_backend, 16, v);
	}
	*why = "must be an absolute path";
	if (!strcmp(k, "state_dir"))
		return set_path(r->state_dir, v);
	if (!strcmp(k, "config_dir"))
		return set_path(r->config_dir, v);
	if (!strcmp(k, "device_id_file"))
		return set_path(r->device_id_file, v);
	if (!strcmp(k, "serial_file"))
		return set_path(r->serial_file, v);
	if (!strcmp(k, "pin_file"))
		return set_path(r->pin_file, v);
	if (!strcmp(k, "key")) {
		*why = "must be a pkcs11: URI or an absolute path";
		return strncmp(v, "pkcs11:", 7) && v[0] != '/' ? -1 : set_str(r->key, sizeof(r->key), v);
	}
	if (!strcmp(k, "prefix")) {
		*why = "must be an absolute path (at most 8 prefixes)";
		if (c->nprefixes == BRD_MAX_PREFIXES || set_path(c->prefixes[c->nprefixes], v))
			return -1;
		c->nprefixes++;
		return 0;
	}
	if (!strcmp(k, "baud")) {
		*why = "must be a rate 50 .. 4000000";
		if (parse_uint(v, 50, 4000000, &x))
			return -1;
		c->baud = (uint32_t)x;
		return 0;
	}
	if (!strcmp(k, "bauds")) {
		char buf[256], *tok, *save = NULL;

		*why = "must be a comma-separated list of at most 8 rates";
		if (set_str(buf, sizeof(buf), v))
			return -1;
		c->nbauds = 0;
		for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
			if (c->nbauds == BRD_MAX_BAUDS || parse_uint(trim(tok), 50, 4000000, &x))
				return -1;
			c->bauds[c->nbauds++] = (uint32_t)x;
		}
		return c->nbauds ? 0 : -1;
	}
	if (!strcmp(k, "max_frame")) {
		*why = "must be 512 .. 4096";
		if (parse_uint(v, 512, BRD_LINE_MAX, &x))
			return -1;
		c->max_frame = (size_t)x;
		return 0;
	}
	if (!strcmp(k, "max_file") || !strcmp(k, "max_total")) {
		*why = "must be 1 .. 1073741824 bytes";
		if (parse_uint(v, 1, 1u << 30, &x))
			return -1;
		*(k[4] == 'f' ? &c->max_file : &c->max_total) = x;
		return 0;
	}
	if (!strcmp(k, "allow_regen")) {
		*why = "must be yes or no";
		return parse_bool(v, &c->allow_regen);
	}
	if (!strcmp(k, "fsync")) {
		*why = "must be yes or no";
		return parse_bool(v, &c->fsync);
	}
	*why = "unknown key";
	return -1;
}

/* mkdir -p: each missing directory of path made with mode. */
static int mkdir_p(const char *path, unsigned int mode)
{
	char buf[AGENT_PATH_MAX];
	size_t i;

	snprintf(buf, sizeof(buf), "%s", path);
	for (i = 1; buf[i]; i++) {
		if (buf[i] != '/')
			continue;
		buf[i] = 0;
		if (mkdir(buf, 0755) != 0 && errno != EEXIST)
			return -1;
		buf[i] = '/';
	}
	return mkdir(buf, mode) != 0 && errno != EEXIST ? -1 : 0;
}

/* The serial number: the device tree's, DMI's, else one made once and kept in a file. */
static void find_serial(struct agent_config *c, char *err, size_t errlen)
{
	static const char *const sources[] = {
		"/sys/firmware/devicetree/base/serial-number",
		"/sys/class/dmi/id/product_serial",
	};
	char path[AGENT_PATH_MAX], buf[BRD_MAX_NAME + 1];
	uint8_t rnd[8];
	size_t i;

	(void)err;
	(void)errlen;
	for (i = 0; i < sizeof(sources) / sizeof(sources[0]); i++) {
		if (agent_rooted(path, sizeof(path), c->root, sources[i]) == 0 &&
		    agent_read_line(path, buf, sizeof(buf)) == 0 && buf[0] &&
		    strcmp(buf, "0") != 0) {
			strcpy(c->sn, buf);
			return;
		}
	}
	if (agent_read_line(c->serial_file, buf, sizeof(buf)) == 0 && buf[0]) {
		strcpy(c->sn, buf);
		return;
	}
	if (agent_random(rnd, sizeof(rnd)) != 0)
		return;
	for (i = 0; i < sizeof(rnd); i++)
		snprintf(buf + 2 * i, 3, "%02X", rnd[i]);
	if (agent_write_atomic(c->serial_file, buf, strlen(buf), 0644, c->fsync) == 0)
		strcpy(c->sn, buf);
}

int agent_config_load(struct agent_config *c, const char *file, const char *root, char *err,
		      size_t errlen)
{
	struct raw r;
	char line[AGENT_PATH_MAX + 64];
	unsigned int lineno = 0, i;
	FILE *f = NULL;
	int rc = -1;

	memset(c, 0, sizeof(*c));
	memset(&r, 0, sizeof(r));
	snprintf(c->root, sizeof(c->root), "%s", root ? root : "");
	snprintf(c->fw, sizeof(c->fw), "station-agent-%s", AGENT_VERSION);
	c->max_frame = BRD_LINE_MAX;
	c->fsync = 1;
	if (file) {
		f = fopen(file, "r");
		if (!f)
			return errmsg(err, errlen, "%s: %s", file, strerror(errno));
		while (fgets(line, sizeof(line), f)) {
			char *k = line, *eq, *v;
			const char *why;

			lineno++;
			k[strcspn(k, "#\n")] = 0;
			k = trim(k);
			if (!*k)
				continue;
			eq = strchr(k, '=');
			if (!eq) {
				errmsg(err, errlen, "%s:%u: expected key = value", file, lineno);
				goto out;
			}
			*eq = 0;
			v = trim(eq + 1);
			k = trim(k);
			if (apply(c, &r, k, v, &why) != 0) {
				errmsg(err, errlen, "%s:%u: %s: %s", file, lineno, k, why);
				goto out;
			}
		}
	}
	if (!r.state_dir[0])
		strcpy(r.state_dir, "/var/lib/station-agent");
	if (!r.config_dir[0])
		strcpy(r.config_dir, "/var/sota");
	if (!r.device_id_file[0])
		snprintf(r.device_id_file, sizeof(r.device_id_file), "%.4000s/device-id", r.state_dir);
	if (!r.serial_file[0])
		snprintf(r.serial_file, sizeof(r.serial_file), "%.4000s/serial", r.state_dir);
	if (!c->key_backend[0])
		strcpy(c->key_backend, strncmp(r.key, "pkcs11:", 7) == 0 ? "pkcs11" : "file");
	if (!strcmp(c->key_backend, "pkcs11") && strncmp(r.key, "pkcs11:", 7) != 0) {
		errmsg(err, errlen, "%s: key_backend pkcs11 needs key = pkcs11:...", file ? file : "configuration");
		goto out;
	}
	if (!strcmp(c->key_backend, "file") && !r.key[0])
		snprintf(r.key, sizeof(r.key), "%.4000s/key.pem", r.state_dir);
	if (!c->key_storage[0])
		strcpy(c->key_storage, !strcmp(c->key_backend, "pkcs11") ? "se" : "sw");
	if (!c->nprefixes) {
		strcpy(c->prefixes[0], r.config_dir);
		c->nprefixes = 1;
	}
	if (!c->baud)
		c->baud = 115200;
	if (!c->nbauds)
		c->bauds[c->nbauds++] = c->baud;
	for (i = 0; i < c->nbauds && c->bauds[i] != c->baud; i++)
		;
	if (i == c->nbauds) {
		errmsg(err, errlen, "%s: the starting rate %u is not among bauds", file ? file : "configuration", c->baud);
		goto out;
	}
	strcpy(c->config_dir_norm, r.config_dir);
	if (agent_rooted(c->state_dir, sizeof(c->state_dir), c->root, r.state_dir) ||
	    agent_rooted(c->config_dir, sizeof(c->config_dir), c->root, r.config_dir) ||
	    agent_rooted(c->device_id_file, sizeof(c->device_id_file), c->root, r.device_id_file) ||
	    agent_rooted(c->serial_file, sizeof(c->serial_file), c->root, r.serial_file) ||
	    (r.pin_file[0] && agent_rooted(c->pin_file, sizeof(c->pin_file), c->root, r.pin_file))) {
		errmsg(err, errlen, "a path under --root %s is too long", c->root);
		goto out;
	}
	if (!strcmp(c->key_backend, "file")) {
		if (agent_rooted(c->key, sizeof(c->key), c->root, r.key)) {
			errmsg(err, errlen, "the key path under --root is too long");
			goto out;
		}
	} else {
		strcpy(c->key, r.key);
	}
	if (mkdir_p(c->state_dir, 0700) != 0) {
		errmsg(err, errlen, "%s: %s", c->state_dir, strerror(errno));
		goto out;
	}
	if (!c->sn[0])
		find_serial(c, err, errlen);
	rc = 0;
out:
	if (f)
		fclose(f);
	return rc;
}
