/* pair port backend: one end of a connected socket pair, for tests that play the board in
 * the same process, byte for byte, without PTYs or a second program.
 *
 * A pair port is named "pair:<fd>": fd is the station's end, made by drv_port_pair_new() and
 * held open by the caller the way a device node stays while a board is plugged in. Opening
 * the port takes a duplicate of it, so closing and reopening the port (after a hang-up) finds
 * the same end again; a test that swaps the board puts a new pair's end under the same
 * number (dup2). Closing the board's end is a hang-up: reads at the station's end return end
 * of file. A socket has no line rate and no modem lines: set_baud records any termios rate
 * (the other end sees no difference, as with a PTY), set_lines is unsupported. */
#include "port.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "err.h"

#define PAIR_PREFIX "pair:"

struct pair_port {
	int fd;
	char path[64];
};

int drv_port_pair_new(int fds[2], char *name, size_t namelen, char *err, size_t errlen)
{
	int sv[2];

	fds[0] = fds[1] = -1;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
		return st_errf(err, errlen, ST_E_PORT_OPEN, "socketpair: %s", strerror(errno));
	fds[0] = sv[0];
	fds[1] = sv[1];
	snprintf(name, namelen, PAIR_PREFIX "%d", sv[0]);
	return 0;
}

static int pair_open(const struct drv_port_config *cfg, void **inst, char *err, size_t errlen)
{
	struct pair_port *p;
	const char *num = cfg->path;
	char *end;
	long fd;

	*inst = NULL;
	if (strncmp(num, PAIR_PREFIX, strlen(PAIR_PREFIX)) == 0)
		num += strlen(PAIR_PREFIX);
	errno = 0;
	fd = strtol(num, &end, 10);
	if (!*num || *end || errno || fd < 0 || fd > INT_MAX)
		return st_errf(err, errlen, ST_E_PORT_OPEN,
			       "%s: not a pair port name (expected pair:<fd>)", cfg->path);
	if (!drv_port_speed(cfg->baud))
		return st_errf(err, errlen, ST_E_PORT_BAUD,
			       "%s: baud rate %d is not a termios rate (1200 .. 4000000)",
			       cfg->path, cfg->baud);
	p = calloc(1, sizeof(*p));
	if (!p)
		return st_errf(err, errlen, ST_E_NOMEM, "%s: out of memory", cfg->path);
	snprintf(p->path, sizeof(p->path), "%s", cfg->path);
	p->fd = fcntl((int)fd, F_DUPFD_CLOEXEC, 0);
	if (p->fd < 0) {
		int rc = st_errf(err, errlen, ST_E_PORT_OPEN, "%s: %s", cfg->path, strerror(errno));

		free(p);
		return rc;
	}
	if (fcntl(p->fd, F_SETFL, fcntl(p->fd, F_GETFL) | O_NONBLOCK) != 0) {
		int rc = st_errf(err, errlen, ST_E_PORT_OPEN, "%s: %s", cfg->path, strerror(errno));

		close(p->fd);
		free(p);
		return rc;
	}
	*inst = p;
	return 0;
}

static int pair_fd(void *inst)
{
	return ((struct pair_port *)inst)->fd;
}

static int pair_set_baud(void *inst, int baud, char *err, size_t errlen)
{
	struct pair_port *p = inst;

	if (!drv_port_speed(baud))
		return st_errf(err, errlen, ST_E_PORT_BAUD,
			       "%s: baud rate %d is not a termios rate (1200 .. 4000000)", p->path,
			       baud);
	return 0;
}

static void pair_close(void *inst)
{
	struct pair_port *p = inst;

	close(p->fd);
	free(p);
}

const struct drv_port_ops drv_port_pair_ops = {
	.name = "pair",
	.open = pair_open,
	.fd = pair_fd,
	.set_baud = pair_set_baud,
	.close = pair_close,
};
