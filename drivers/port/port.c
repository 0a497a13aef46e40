/* Port front end: picks a backend by name (or by path), and does what all backends share:
 * non-blocking reads and writes on the fd, baud rate tables, symlink lookup. The backends
 * live in port_<name>.c. */
#include "port.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "err.h"
#include "join.h"

extern const struct drv_port_ops drv_port_serial_ops;
extern const struct drv_port_ops drv_port_pty_ops;
extern const struct drv_port_ops drv_port_pair_ops;

const struct drv_port_ops *const drv_port_backends[] = {
	&drv_port_serial_ops,
	&drv_port_pty_ops,
	&drv_port_pair_ops,
	NULL,
};

const struct drv_port_ops *drv_port_find_backend(const char *name)
{
	size_t i;

	for (i = 0; drv_port_backends[i]; i++) {
		if (strcmp(drv_port_backends[i]->name, name) == 0)
			return drv_port_backends[i];
	}
	return NULL;
}

const char *drv_port_auto_backend(const char *path)
{
	char real[PATH_MAX];

	if (strncmp(path, "pair:", 5) == 0)
		return "pair";
	if (strncmp(path, "/dev/pts/", 9) == 0)
		return "pty";
	/* A stable name (a symlink, like simboard's DIR/<board>/tty) may point at a PTY. */
	if (realpath(path, real) && strncmp(real, "/dev/pts/", 9) == 0)
		return "pty";
	return "serial";
}

int drv_port_open(const struct drv_port_config *cfg, struct drv_port **out, char *err,
		  size_t errlen)
{
	struct drv_port_config c = *cfg;
	const struct drv_port_ops *ops;
	struct drv_port *port = NULL;
	void *inst = NULL;
	int rc;

	*out = NULL;
	if (!c.path || !*c.path)
		return st_errf(err, errlen, ST_E_INVAL, "port: no path given");
	if (c.baud == 0)
		c.baud = 115200;
	if (!c.backend || strcmp(c.backend, "auto") == 0)
		c.backend = drv_port_auto_backend(c.path);
	ops = drv_port_find_backend(c.backend);
	if (!ops) {
		const char *names[8] = { NULL };
		char known[64];

		for (size_t i = 0; drv_port_backends[i] && i + 1 < 8; i++)
			names[i] = drv_port_backends[i]->name;
		st_join(known, sizeof(known), names, "", "");
		return st_errf(err, errlen, ST_E_PORT_UNKNOWN,
			       "%s: port backend \"%s\" is unknown; known: auto, %s", c.path,
			       c.backend, known);
	}
	port = calloc(1, sizeof(*port));
	if (!port)
		return st_errf(err, errlen, ST_E_NOMEM, "%s: out of memory", c.path);
	port->path = strdup(c.path);
	if (!port->path) {
		rc = st_errf(err, errlen, ST_E_NOMEM, "%s: out of memory", c.path);
		goto out;
	}
	rc = ops->open(&c, &inst, err, errlen);
	if (rc < 0)
		goto out;
	port->ops = ops;
	port->inst = inst;
	port->baud = c.baud;
	*out = port;
	port = NULL;
out:
	if (port)
		free(port->path);
	free(port);
	return rc;
}

void drv_port_close(struct drv_port *port)
{
	if (!port)
		return;
	port->ops->close(port->inst);
	free(port->path);
	free(port);
}

int drv_port_fd(const struct drv_port *port)
{
	return port->ops->fd(port->inst);
}

int drv_port_low_latency(const struct drv_port *port, const char **why)
{
	*why = NULL;
	return port->ops->low_latency ? port->ops->low_latency(port->inst, why) : -1;
}

int drv_port_set_baud(struct drv_port *port, int baud, char *err, size_t errlen)
{
	int rc = port->ops->set_baud(port->inst, baud, err, errlen);

	if (rc == 0)
		port->baud = baud;
	return rc;
}

ssize_t drv_port_read(struct drv_port *port, void *buf, size_t n, char *err, size_t errlen)
{
	ssize_t r;

	if (n == 0)
		return 0;
	do {
		r = read(drv_port_fd(port), buf, n);
	} while (r < 0 && errno == EINTR);
	if (r > 0)
		return r;
	/* A non-blocking tty read returns 0 only once it has been hung up. */
	if (r == 0 || errno == EIO || errno == ENXIO || errno == ENODEV)
		return st_errf(err, errlen, ST_E_PORT_HANGUP, "%s: hung up (%s)", port->path,
			       r == 0 ? "end of file" : strerror(errno));
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		return 0;
	return st_errf(err, errlen, ST_E_PORT, "%s: read: %s", port->path, strerror(errno));
}

ssize_t drv_port_write(struct drv_port *port, const void *buf, size_t n, char *err,
		       size_t errlen)
{
	ssize_t r;

	if (n == 0)
		return 0;
	do {
		r = write(drv_port_fd(port), buf, n);
	} while (r < 0 && errno == EINTR);
	if (r >= 0)
		return r;
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		return 0;
	if (errno == EIO || errno == ENXIO || errno == ENODEV)
		return st_errf(err, errlen, ST_E_PORT_HANGUP, "%s: hung up (%s)", port->path,
			       strerror(errno));
	return st_errf(err, errlen, ST_E_PORT, "%s: write: %s", port->path, strerror(errno));
}

unsigned int drv_port_speed(int baud)
{
	static const struct {
		int baud;
		speed_t speed;
	} tab[] = {
		{ 1200, B1200 },       { 2400, B2400 },       { 4800, B4800 },
		{ 9600, B9600 },       { 19200, B19200 },     { 38400, B38400 },
		{ 57600, B57600 },     { 115200, B115200 },   { 230400, B230400 },
		{ 460800, B460800 },   { 500000, B500000 },   { 576000, B576000 },
		{ 921600, B921600 },   { 1000000, B1000000 }, { 1152000, B1152000 },
		{ 1500000, B1500000 }, { 2000000, B2000000 }, { 2500000, B2500000 },
		{ 3000000, B3000000 }, { 3500000, B3500000 }, { 4000000, B4000000 },
	};
	size_t i;

	for (i = 0; i < sizeof(tab) / sizeof(tab[0]); i++) {
		if (tab[i].baud == baud)
			return (unsigned int)tab[i].speed;
	}
	return 0;
}

char *drv_port_find_link(const char *dir, const char *target)
{
	struct dirent **names = NULL;
	struct stat want, st;
	char *found = NULL;
	int n, i;

	if (stat(target, &want) != 0)
		return NULL;
	n = scandir(dir, &names, NULL, alphasort);
	if (n < 0)
		return NULL;
	for (i = 0; i < n; i++) {
		char path[PATH_MAX];

		if (!found && names[i]->d_name[0] != '.' &&
		    (size_t)snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name) <
			    sizeof(path) &&
		    lstat(path, &st) == 0 && S_ISLNK(st.st_mode) && stat(path, &st) == 0 &&
		    st.st_dev == want.st_dev && st.st_ino == want.st_ino)
			found = strdup(path);
		free(names[i]);
	}
	free(names);
	return found;
}
