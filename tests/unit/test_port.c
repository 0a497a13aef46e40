/* Port drivers on real pseudo-terminal pairs: backend choice, raw 8-bit I/O without
 * translation, baud changes, non-blocking reads, hang-up detection, clear open errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "err.h"
#include "port.h"
#include "testutil.h"

/* Failure bound for waits; never a synchronisation delay. */
#define WAIT_MS 10000

struct pair {
	int master;
	char slave[128];
};

static void pair_open(struct pair *p)
{
	p->master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	assert_true(p->master >= 0);
	assert_int_equal(grantpt(p->master), 0);
	assert_int_equal(unlockpt(p->master), 0);
	assert_int_equal(ptsname_r(p->master, p->slave, sizeof(p->slave)), 0);
}

static void wait_readable(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	assert_int_equal(poll(&pfd, 1, WAIT_MS), 1);
}

/* Reads exactly n bytes from a blocking-ish fd, waiting for readability each time. */
static void read_master(int fd, char *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r;

		wait_readable(fd);
		r = read(fd, buf + got, n - got);
		assert_true(r > 0);
		got += (size_t)r;
	}
}

static void read_port(struct drv_port *port, char *buf, size_t n)
{
	char err[256];
	size_t got = 0;

	while (got < n) {
		ssize_t r;

		wait_readable(drv_port_fd(port));
		r = drv_port_read(port, buf + got, n - got, err, sizeof(err));
		assert_true(r >= 0);
		got += (size_t)r;
	}
}

static void test_auto_backend(void **state)
{
	const char *dir = tu_tmpdir("port-auto");
	char link[512];
	struct pair p;

	(void)state;
	pair_open(&p);
	assert_string_equal(drv_port_auto_backend(p.slave), "pty");
	assert_string_equal(drv_port_auto_backend("/dev/ttyUSB0"), "serial");
	assert_string_equal(drv_port_auto_backend("/dev/serial/by-path/nonexistent"), "serial");
	/* A stable symlink to a PTY (what simboard writes) also picks pty. */
	snprintf(link, sizeof(link), "%s/tty", dir);
	assert_int_equal(symlink(p.slave, link), 0);
	assert_string_equal(drv_port_auto_backend(link), "pty");
	unlink(link);
	rmdir(dir);
	close(p.master);
}

static void test_pty_io(void **state)
{
	struct drv_port_config cfg = { .backend = NULL, .baud = 115200 };
	struct drv_port *port = NULL;
	char err[256], buf[256];
	/* Every byte value, including XON/XOFF, CR, LF and NUL, passes untranslated. */
	char all[256];
	struct pair p;
	int i;

	(void)state;
	for (i = 0; i < 256; i++)
		all[i] = (char)i;
	pair_open(&p);
	cfg.path = p.slave;
	assert_int_equal(drv_port_open(&cfg, &port, err, sizeof(err)), 0);
	assert_string_equal(port->ops->name, "pty");
	assert_true(fcntl(drv_port_fd(port), F_GETFL) & O_NONBLOCK);

	/* Nothing to read: 0, not an error, and no blocking. */
	assert_int_equal(drv_port_read(port, buf, sizeof(buf), err, sizeof(err)), 0);

	assert_int_equal(drv_port_write(port, all, sizeof(all), err, sizeof(err)), sizeof(all));
	read_master(p.master, buf, sizeof(all));
	assert_memory_equal(buf, all, sizeof(all));

	assert_int_equal(write(p.master, all, sizeof(all)), sizeof(all));
	read_port(port, buf, sizeof(all));
	assert_memory_equal(buf, all, sizeof(all));

	/* Hang-up: the other end goes away. */
	close(p.master);
	wait_readable(drv_port_fd(port));
	assert_int_equal(drv_port_read(port, buf, sizeof(buf), err, sizeof(err)),
			 ST_E_PORT_HANGUP);
	assert_non_null(strstr(err, p.slave));
	drv_port_close(port);
}

/* Low-latency mode where there is none: a PTY has no serial settings (ENOTTY), neither has a
 * pipe, and the request says which call failed and why; the pty backend reports no such
 * setting (-1). The mode taken and kept is a real UART's: tests/integration/test_qemu_uart.sh
 * asks the guest's 8250 for it through the serial backend. */
static void test_low_latency_refused(void **state)
{
	struct drv_port_config cfg = { .backend = "pty", .baud = 115200 };
	struct drv_port *port = NULL;
	char err[256], why[128];
	const char *reason = "untouched";
	struct pair p;
	int fds[2], slave;

	(void)state;
	pair_open(&p);
	slave = open(p.slave, O_RDWR | O_NOCTTY | O_CLOEXEC);
	assert_true(slave >= 0);
	why[0] = 0;
	assert_int_equal(drv_port_request_low_latency(slave, why, sizeof(why)), 0);
	assert_string_equal(why, "TIOCGSERIAL: Inappropriate ioctl for device");
	close(slave);

	assert_int_equal(pipe(fds), 0);
	why[0] = 0;
	assert_int_equal(drv_port_request_low_latency(fds[1], why, sizeof(why)), 0);
	assert_string_equal(why, "TIOCGSERIAL: Inappropriate ioctl for device");
	/* A message cut to its room, never past it. */
	memset(why, 'x', sizeof(why));
	assert_int_equal(drv_port_request_low_latency(fds[0], why, 8), 0);
	assert_string_equal(why, "TIOCGSE");
	close(fds[0]);
	close(fds[1]);

	cfg.path = p.slave;
	assert_int_equal(drv_port_open(&cfg, &port, err, sizeof(err)), 0);
	assert_int_equal(drv_port_low_latency(port, &reason), -1);
	assert_null(reason);
	drv_port_close(port);
	close(p.master);
}

static void test_pty_baud_and_lines(void **state)
{
	struct drv_port_config cfg = { .backend = "pty", .baud = 9600 };
	struct drv_port *port = NULL;
	struct termios t;
	char err[256];
	struct pair p;

	(void)state;
	pair_open(&p);
	cfg.path = p.slave;
	assert_int_equal(drv_port_open(&cfg, &port, err, sizeof(err)), 0);
	assert_int_equal(tcgetattr(drv_port_fd(port), &t), 0);
	assert_int_equal(cfgetospeed(&t), B9600);
	assert_int_equal(t.c_lflag & (ECHO | ICANON), 0);
	assert_int_equal(t.c_oflag & OPOST, 0);

	assert_int_equal(drv_port_set_baud(port, 921600, err, sizeof(err)), 0);
	assert_int_equal(port->baud, 921600);
	assert_int_equal(tcgetattr(drv_port_fd(port), &t), 0);
	assert_int_equal(cfgetospeed(&t), B921600);
	assert_int_equal(cfgetispeed(&t), B921600);

	assert_int_equal(drv_port_set_baud(port, 12345, err, sizeof(err)), ST_E_PORT_BAUD);
	assert_non_null(strstr(err, "12345"));
	assert_int_equal(port->baud, 921600);

	drv_port_close(port);
	close(p.master);

	/* An unsupported rate at open fails cleanly. */
	pair_open(&p);
	cfg.path = p.slave;
	cfg.baud = 7;
	assert_int_equal(drv_port_open(&cfg, &port, err, sizeof(err)), ST_E_PORT_BAUD);
	assert_null(port);
	close(p.master);
}

static void test_open_errors(void **state)
{
	struct drv_port_config cfg = { 0 };
	struct drv_port *port = (struct drv_port *)1;
	char err[256];
	struct pair p;

	(void)state;
	pair_open(&p);
	/* libserialport cannot take a PTY: the error says so and names the way out. */
	cfg.backend = "serial";
	cfg.path = p.slave;
	assert_int_equal(drv_port_open(&cfg, &port, err, sizeof(err)), ST_E_PORT_OPEN);
	assert_null(port);
	assert_non_null(strstr(err, "pty backend"));

	cfg.path = "/dev/serial/by-path/no-such-fixture";
	assert_int_equal(drv_port_open(&cfg, &port, err, sizeof(err)), ST_E_PORT_OPEN);
	assert_non_null(strstr(err, "no-such-fixture"));

	cfg.backend = "pty";
	assert_int_equal(drv_port_open(&cfg, &port, err, sizeof(err)), ST_E_PORT_OPEN);

	cfg.backend = "pty";
	cfg.path = "/dev/null";
	assert_int_equal(drv_port_open(&cfg, &port, err, sizeof(err)), ST_E_PORT_OPEN);
	assert_non_null(strstr(err, "not a terminal"));

	cfg.backend = "usb3000";
	cfg.path = p.slave;
	assert_int_equal(drv_port_open(&cfg, &port, err, sizeof(err)), ST_E_PORT_UNKNOWN);
	assert_non_null(strstr(err, "known: auto, serial, pty"));
	close(p.master);
}

static void test_find_link_and_list(void **state)
{
	const char *dir = tu_tmpdir("port-links");
	char target[512], l1[512], l2[512], plain[512];
	struct drv_port_info *list = NULL;
	char err[256], *found;
	size_t n = 99, i;
	int fd;

	(void)state;
	assert_non_null(dir);
	snprintf(target, sizeof(target), "%s/ttyFAKE0", dir);
	snprintf(l1, sizeof(l1), "%s/pci-0000:00:14.0-usb-0:2:1.0-port0", dir);
	snprintf(l2, sizeof(l2), "%s/other", dir);
	snprintf(plain, sizeof(plain), "%s/plain", dir);
	fd = open(target, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	fd = open(plain, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(symlink("ttyFAKE0", l1), 0);
	assert_int_equal(symlink("/nonexistent", l2), 0);
	found = drv_port_find_link(dir, target);
	assert_non_null(found);
	assert_string_equal(found, l1);
	free(found);
	assert_null(drv_port_find_link(dir, plain));
	assert_null(drv_port_find_link("/nonexistent-dir", target));
	unlink(l1);
	unlink(l2);
	unlink(plain);
	unlink(target);
	rmdir(dir);

	/* Enumeration works on any machine (there may be no serial ports at all). */
	assert_int_equal(drv_port_list(&list, &n, err, sizeof(err)), 0);
	for (i = 0; i < n; i++) {
		assert_non_null(list[i].path);
		assert_non_null(list[i].transport);
		assert_true(strncmp(list[i].path, "/dev/pts/", 9) != 0);
	}
	drv_port_list_free(list, n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_auto_backend),
		cmocka_unit_test(test_pty_io),
		cmocka_unit_test(test_pty_baud_and_lines),
		cmocka_unit_test(test_low_latency_refused),
		cmocka_unit_test(test_open_errors),
		cmocka_unit_test(test_find_link_and_list),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
