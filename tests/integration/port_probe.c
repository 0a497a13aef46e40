/* `port_probe PATH`: opens PATH through the serial backend (libserialport) as the station
 * opens a slot's port, says whether the port is in low-latency mode and why not, then reads
 * the driver's flags back on a descriptor of its own, and exits 0 only when both say it is.
 * For tests/integration/test_qemu_uart.sh, which runs it on the guest's 8250 UART. */
#include <errno.h>
#include <fcntl.h>
#include <linux/serial.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "port.h"

int main(int argc, char **argv)
{
	struct drv_port_config cfg = { .backend = "serial", .baud = 115200 };
	struct drv_port *port = NULL;
	struct serial_struct ss;
	const char *why;
	char err[512];
	int ll, fd, kept;

	if (argc != 2) {
		fprintf(stderr, "usage: port_probe PATH\n");
		return 2;
	}
	cfg.path = argv[1];
	if (drv_port_open(&cfg, &port, err, sizeof(err)) != 0) {
		printf("port-probe: open failed: %s\n", err);
		return 1;
	}
	ll = drv_port_low_latency(port, &why);
	printf("port-probe: %s: backend %s, low latency %d (%s)\n", cfg.path, port->ops->name, ll,
	       why ? why : "no reason given");
	drv_port_close(port);

	/* The driver's own word, after the station's descriptor is gone. */
	fd = open(cfg.path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	memset(&ss, 0, sizeof(ss));
	if (fd < 0 || ioctl(fd, TIOCGSERIAL, &ss) != 0) {
		printf("port-probe: %s: TIOCGSERIAL: %s\n", cfg.path, strerror(errno));
		return 1;
	}
	close(fd);
	kept = !!(ss.flags & ASYNC_LOW_LATENCY);
	printf("port-probe: %s: the driver's flags 0x%x, ASYNC_LOW_LATENCY %d\n", cfg.path,
	       (unsigned)ss.flags, kept);
	return ll == 1 && kept ? 0 : 1;
}
