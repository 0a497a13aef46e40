/* pty port backend: termios on a plain file descriptor. Used for pseudo-terminals (the
 * simulated boards) and any tty libserialport cannot take. A PTY has no modem lines and no
 * real line rate, but it does keep the termios speed, so set_baud is still honoured. */
#include "port.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "err.h"

struct pty_port {
	int fd;
	char path[256];
};

/* The termios speed for baud and the port's current settings. */
static int pty_get(struct pty_port *p, int baud, speed_t *speed, struct termios *t, char *err,
		   size_t errlen)
{
	*speed = (speed_t)drv_port_speed(baud);
	if (!*speed)
		return st_errf(err, errlen, ST_E_PORT_BAUD,
			       "%s: baud rate %d is not a termios rate (1200 .. 4000000)", p->path,
			       baud);
	if (tcgetattr(p->fd, t) != 0)
		return st_errf(err, errlen, ST_E_PORT, "%s: tcgetattr: %s", p->path,
			       strerror(errno));
	return 0;
}

static int pty_apply(struct pty_port *p, int baud, enum drv_port_flow flow, char *err,
		     size_t errlen)
{
	speed_t speed;
	struct termios t;
	int rc = pty_get(p, baud, &speed, &t, err, errlen);

	if (rc < 0)
		return rc;
	cfmakeraw(&t);
	t.c_cflag |= CLOCAL | CREAD;
	t.c_cflag &= ~(tcflag_t)(CSTOPB | PARENB | CRTSCTS);
	t.c_iflag &= ~(tcflag_t)(IXON | IXOFF | IXANY);
	if (flow == DRV_PORT_FLOW_XONXOFF)
		t.c_iflag |= IXON | IXOFF;
	else if (flow == DRV_PORT_FLOW_RTSCTS)
		t.c_cflag |= CRTSCTS;
	t.c_cc[VMIN] = 1;
	t.c_cc[VTIME] = 0;
	if (cfsetispeed(&t, speed) != 0 || cfsetospeed(&t, speed) != 0)
		return st_errf(err, errlen, ST_E_PORT_BAUD, "%s: cfsetspeed %d: %s", p->path, baud,
			       strerror(errno));
	if (tcsetattr(p->fd, TCSANOW, &t) != 0)
		return st_errf(err, errlen, ST_E_PORT, "%s: tcsetattr: %s", p->path,
			       strerror(errno));
	return 0;
}

static int pty_open(const struct drv_port_config *cfg, void **inst, char *err, size_t errlen)
{
	struct pty_port *p;
	int rc;

	*inst = NULL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return st_errf(err, errlen, ST_E_NOMEM, "%s: out of memory", cfg->path);
	snprintf(p->path, sizeof(p->path), "%s", cfg->path);
	p->fd = open(cfg->path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (p->fd < 0) {
		rc = st_errf(err, errlen, ST_E_PORT_OPEN, "%s: open: %s", cfg->path,
			     strerror(errno));
		goto out;
	}
	if (!isatty(p->fd)) {
		rc = st_errf(err, errlen, ST_E_PORT_OPEN, "%s: not a terminal device", cfg->path);
		goto out;
	}
	rc = pty_apply(p, cfg->baud, cfg->flow, err, errlen);
	if (rc < 0)
		goto out;
	tcflush(p->fd, TCIOFLUSH);
	*inst = p;
	p = NULL;
out:
	if (p && p->fd >= 0)
		close(p->fd);
	free(p);
	return rc;
}

static int pty_fd(void *inst)
{
	return ((struct pty_port *)inst)->fd;
}

static int pty_set_baud(void *inst, int baud, char *err, size_t errlen)
{
	struct pty_port *p = inst;
	speed_t speed;
	struct termios t;
	int rc = pty_get(p, baud, &speed, &t, err, errlen);

	if (rc < 0)
		return rc;
	cfsetispeed(&t, speed);
	cfsetospeed(&t, speed);
	/* TCSANOW: draining would block the loop; callers switch when their output is idle. */
	if (tcsetattr(p->fd, TCSANOW, &t) != 0)
		return st_errf(err, errlen, ST_E_PORT, "%s: tcsetattr: %s", p->path,
			       strerror(errno));
	return 0;
}

static void pty_close(void *inst)
{
	struct pty_port *p = inst;

	close(p->fd);
	free(p);
}

const struct drv_port_ops drv_port_pty_ops = {
	.name = "pty",
	.open = pty_open,
	.fd = pty_fd,
	.set_baud = pty_set_baud,
	.close = pty_close,
};
