/* serial port backend: real serial and USB-serial ports through libserialport, and the
 * enumeration behind `station ports`.
 *
 * libserialport finds a port's details in sysfs from its /dev name, so a stable name such as
 * /dev/serial/by-path/... is resolved to /dev/ttyUSBn before it is handed over. */
#include "port.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <linux/serial.h>
#include <sys/ioctl.h>

#include <libserialport.h>

#include "err.h"

struct serial_port {
	struct sp_port *sp;
	int fd;
	int low_latency;    /* drv_port_request_low_latency()'s answer at open */
	char why[128];      /* why not, when it is 0 */
	char path[256];
};

int drv_port_request_low_latency(int fd, char *why, size_t cap)
{
	struct serial_struct ss;

	memset(&ss, 0, sizeof(ss));
	if (ioctl(fd, TIOCGSERIAL, &ss) != 0) {
		snprintf(why, cap, "TIOCGSERIAL: %s", strerror(errno));
		return 0;
	}
	if (ss.flags & ASYNC_LOW_LATENCY)
		return 1;
	ss.flags |= ASYNC_LOW_LATENCY;
	if (ioctl(fd, TIOCSSERIAL, &ss) != 0) {
		snprintf(why, cap, "TIOCSSERIAL: %s", strerror(errno));
		return 0;
	}
	/* Some drivers take the call and drop the flag: only what it reads back counts. */
	if (ioctl(fd, TIOCGSERIAL, &ss) != 0) {
		snprintf(why, cap, "TIOCGSERIAL after TIOCSSERIAL: %s", strerror(errno));
		return 0;
	}
	if (!(ss.flags & ASYNC_LOW_LATENCY)) {
		snprintf(why, cap, "the driver did not keep ASYNC_LOW_LATENCY");
		return 0;
	}
	return 1;
}

/* Formats libserialport's last error after a call that returned rc. */
static int sp_fail(int code, const char *path, const char *what, enum sp_return rc, char *err,
		   size_t errlen)
{
	char *msg;
	int ret;

	if (rc == SP_ERR_FAIL) {
		msg = sp_last_error_message();
		ret = st_errf(err, errlen, code, "%s: %s: %s", path, what, msg ? msg : "failed");
		sp_free_error_message(msg);
		return ret;
	}
	if (rc == SP_ERR_MEM)
		return st_errf(err, errlen, ST_E_NOMEM, "%s: %s: out of memory", path, what);
	if (rc == SP_ERR_SUPP)
		return st_errf(err, errlen, ST_E_PORT_UNSUPPORTED, "%s: %s: not supported", path,
			       what);
	return st_errf(err, errlen, code, "%s: %s: invalid argument", path, what);
}

static enum sp_flowcontrol sp_flow(enum drv_port_flow flow)
{
	switch (flow) {
	case DRV_PORT_FLOW_XONXOFF:
		return SP_FLOWCONTROL_XONXOFF;
	case DRV_PORT_FLOW_RTSCTS:
		return SP_FLOWCONTROL_RTSCTS;
	default:
		return SP_FLOWCONTROL_NONE;
	}
}

static int serial_open(const struct drv_port_config *cfg, void **inst, char *err,
		       size_t errlen)
{
	struct serial_port *p;
	char real[PATH_MAX];
	struct termios t;
	enum sp_return r;
	int rc = 0, flags;

	*inst = NULL;
	if (!realpath(cfg->path, real))
		return st_errf(err, errlen, ST_E_PORT_OPEN, "%s: %s", cfg->path, strerror(errno));
	if (strncmp(real, "/dev/pts/", 9) == 0)
		return st_errf(err, errlen, ST_E_PORT_OPEN,
			       "%s: is a pseudo-terminal (%s), which libserialport cannot open; "
			       "use the pty backend",
			       cfg->path, real);
	p = calloc(1, sizeof(*p));
	if (!p)
		return st_errf(err, errlen, ST_E_NOMEM, "%s: out of memory", cfg->path);
	p->fd = -1;
	snprintf(p->path, sizeof(p->path), "%s", cfg->path);
	r = sp_get_port_by_name(real, &p->sp);
	if (r != SP_OK) {
		rc = sp_fail(ST_E_PORT_OPEN, cfg->path, "not a serial port known to the system",
			     r, err, errlen);
		goto out;
	}
	r = sp_open(p->sp, SP_MODE_READ_WRITE);
	if (r != SP_OK) {
		sp_free_port(p->sp);
		p->sp = NULL;
		rc = sp_fail(ST_E_PORT_OPEN, cfg->path, "open", r, err, errlen);
		goto out;
	}
	r = sp_set_baudrate(p->sp, cfg->baud);
	if (r != SP_OK) {
		rc = sp_fail(ST_E_PORT_BAUD, cfg->path, "set baud rate", r, err, errlen);
		goto out;
	}
	r = sp_set_bits(p->sp, 8);
	if (r == SP_OK)
		r = sp_set_parity(p->sp, SP_PARITY_NONE);
	if (r == SP_OK)
		r = sp_set_stopbits(p->sp, 1);
	if (r == SP_OK)
		r = sp_set_flowcontrol(p->sp, sp_flow(cfg->flow));
	if (r != SP_OK) {
		rc = sp_fail(ST_E_PORT, cfg->path, "set 8N1 and flow control", r, err, errlen);
		goto out;
	}
	r = sp_get_port_handle(p->sp, &p->fd);
	if (r != SP_OK) {
		rc = sp_fail(ST_E_PORT, cfg->path, "get handle", r, err, errlen);
		goto out;
	}
	/* libserialport leaves VMIN at 0, where a read with no data returns 0 just like a
	 * hung-up port; VMIN 1 on a non-blocking fd makes "no data" EAGAIN and 0 a hang-up. */
	if (tcgetattr(p->fd, &t) == 0) {
		t.c_cc[VMIN] = 1;
		t.c_cc[VTIME] = 0;
		tcsetattr(p->fd, TCSANOW, &t);
	}
	/* libserialport leaves the descriptor blocking; the event loop needs it not to be. */
	flags = fcntl(p->fd, F_GETFL);
	if (flags < 0 || fcntl(p->fd, F_SETFL, flags | O_NONBLOCK) < 0) {
		rc = st_errf(err, errlen, ST_E_PORT, "%s: fcntl O_NONBLOCK: %s", cfg->path,
			     strerror(errno));
		goto out;
	}
	fcntl(p->fd, F_SETFD, FD_CLOEXEC);
	/* Not a reason to refuse the port: it works, each answer perhaps a timer later. */
	p->low_latency = drv_port_request_low_latency(p->fd, p->why, sizeof(p->why));
	sp_flush(p->sp, SP_BUF_BOTH);
	*inst = p;
	p = NULL;
out:
	if (p && p->sp) {
		sp_close(p->sp);
		sp_free_port(p->sp);
	}
	free(p);
	return rc;
}

static int serial_fd(void *inst)
{
	return ((struct serial_port *)inst)->fd;
}

static int serial_set_baud(void *inst, int baud, char *err, size_t errlen)
{
	struct serial_port *p = inst;
	enum sp_return r = sp_set_baudrate(p->sp, baud);

	if (r != SP_OK)
		return sp_fail(ST_E_PORT_BAUD, p->path, "set baud rate", r, err, errlen);
	return 0;
}

static int serial_low_latency(void *inst, const char **why)
{
	struct serial_port *p = inst;

	*why = p->low_latency ? NULL : p->why;
	return p->low_latency;
}

static void serial_close(void *inst)
{
	struct serial_port *p = inst;

	sp_close(p->sp);
	sp_free_port(p->sp);
	free(p);
}

const struct drv_port_ops drv_port_serial_ops = {
	.name = "serial",
	.open = serial_open,
	.fd = serial_fd,
	.set_baud = serial_set_baud,
	.close = serial_close,
	.low_latency = serial_low_latency,
};

/* Enumeration. */

static char *dup_or_null(const char *s)
{
	return s && *s ? strdup(s) : NULL;
}

static int info_cmp(const void *a, const void *b)
{
	const struct drv_port_info *x = a, *y = b;

	return strcmp(x->path, y->path);
}

static int fill_info(struct sp_port *sp, struct drv_port_info *info)
{
	const char *desc = sp_get_port_description(sp);
	enum sp_transport tr = sp_get_port_transport(sp);

	info->usb_vid = info->usb_pid = info->usb_bus = info->usb_address = -1;
	info->path = strdup(sp_get_port_name(sp));
	info->description = strdup(desc ? desc : "");
	if (!info->path || !info->description)
		return ST_E_NOMEM;
	info->transport = tr == SP_TRANSPORT_USB	 ? "usb" :
			  tr == SP_TRANSPORT_BLUETOOTH ? "bluetooth" :
							 "native";
	if (tr == SP_TRANSPORT_USB) {
		sp_get_port_usb_vid_pid(sp, &info->usb_vid, &info->usb_pid);
		sp_get_port_usb_bus_address(sp, &info->usb_bus, &info->usb_address);
		info->manufacturer = dup_or_null(sp_get_port_usb_manufacturer(sp));
		info->product = dup_or_null(sp_get_port_usb_product(sp));
		info->serial = dup_or_null(sp_get_port_usb_serial(sp));
	}
	info->by_id = drv_port_find_link("/dev/serial/by-id", info->path);
	info->by_path = drv_port_find_link("/dev/serial/by-path", info->path);
	return 0;
}

int drv_port_list(struct drv_port_info **out, size_t *n, char *err, size_t errlen)
{
	struct sp_port **ports = NULL;
	struct drv_port_info *list = NULL;
	size_t count = 0, i;
	enum sp_return r;
	int rc = 0;

	*out = NULL;
	*n = 0;
	r = sp_list_ports(&ports);
	if (r != SP_OK)
		return sp_fail(ST_E_PORT, "serial ports", "list", r, err, errlen);
	while (ports[count])
		count++;
	if (count == 0)
		goto out;
	list = calloc(count, sizeof(*list));
	if (!list) {
		rc = st_errf(err, errlen, ST_E_NOMEM, "listing serial ports: out of memory");
		goto out;
	}
	for (i = 0; i < count; i++) {
		rc = fill_info(ports[i], &list[i]);
		if (rc < 0) {
			drv_port_list_free(list, count);
			list = NULL;
			rc = st_errf(err, errlen, rc, "listing serial ports: out of memory");
			goto out;
		}
	}
	qsort(list, count, sizeof(*list), info_cmp);
	*out = list;
	*n = count;
out:
	sp_free_port_list(ports);
	return rc;
}

void drv_port_list_free(struct drv_port_info *list, size_t n)
{
	size_t i;

	if (!list)
		return;
	for (i = 0; i < n; i++) {
		free(list[i].path);
		free(list[i].description);
		free(list[i].manufacturer);
		free(list[i].product);
		free(list[i].serial);
		free(list[i].by_id);
		free(list[i].by_path);
	}
	free(list);
}
