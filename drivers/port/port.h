/* Ports: the byte pipe to one board, behind one interface with several backends.
 *
 *   serial  real serial and USB-serial ports through libserialport (names under
 *           /dev/serial/by-path and /dev/serial/by-id are resolved first; libserialport looks
 *           ports up in sysfs by their /dev name);
 *   pty     plain termios on a file descriptor, for pseudo-terminals (simulated boards) and
 *           any tty libserialport cannot take (Debian's libserialport 0.1.1 cannot open
 *           /dev/pts/N: there is no sysfs entry and TIOCMGET fails);
 *   pair    one end of a socket pair ("pair:<fd>", drv_port_pair_new()), for tests that play
 *           the board in the same process.
 *
 * Every backend hands out a file descriptor in O_NONBLOCK mode for the event loop to watch
 * (uv_poll_t); reads and writes go through drv_port_read()/drv_port_write(), which never
 * block. A port is 8N1 raw: no echo, no line editing, no CR/LF translation.
 *
 * Ports are opened, used and closed on one thread (the loop thread); nothing here is shared
 * between ports. */
#ifndef DRV_PORT_H
#define DRV_PORT_H

#include <stddef.h>
#include <sys/types.h>

enum drv_port_flow {
	DRV_PORT_FLOW_NONE,
	DRV_PORT_FLOW_XONXOFF, /* software flow control: the tty layer eats 0x11/0x13 */
	DRV_PORT_FLOW_RTSCTS,  /* hardware flow control */
};

struct drv_port_config {
	/* "serial", "pty", "pair", or NULL / "auto": pair for a "pair:<fd>" name, pty when the
	 * path resolves to a pseudo-terminal (under /dev/pts/), serial otherwise. */
	const char *backend;
	const char *path;
	int baud; /* 0 means 115200 */
	enum drv_port_flow flow;
};

/* One backend. `open` returns a private instance that every other op takes first; `close` is
 * called only when `open` succeeded. Errors are negative ST_E_* codes (err.h) with a
 * message in err naming the port and what failed. */
struct drv_port_ops {
	const char *name;
	/* Opens cfg->path raw 8N1 at cfg->baud with cfg->flow, discards stale input and
	 * output, and leaves the fd non-blocking. On failure *inst is NULL. */
	int (*open)(const struct drv_port_config *cfg, void **inst, char *err, size_t errlen);
	/* The descriptor to watch; owned by the instance, valid until close. */
	int (*fd)(void *inst);
	/* Changes the line rate at once (bytes still queued may leave at either rate: switch
	 * when output is idle). ST_E_PORT_BAUD when the rate is not supported. */
	int (*set_baud)(void *inst, int baud, char *err, size_t errlen);
	void (*close)(void *inst);
	/* Whether the driver holds back what arrives no longer than it must (see
	 * drv_port_low_latency); NULL for a backend where there is no such setting. */
	int (*low_latency)(void *inst, const char **why);
};

/* NULL-terminated table of backends. */
extern const struct drv_port_ops *const drv_port_backends[];

/* An opened port: backend plus instance. */
struct drv_port {
	const struct drv_port_ops *ops;
	void *inst;
	char *path; /* as configured (e.g. a by-path name), for messages */
	int baud;   /* current rate */
};

/* A connected socket pair for the pair backend: fds[0] is the station's end, named in name
 * ("pair:<fd>", open it with backend "pair"), fds[1] the board's. Both are non-blocking and
 * the caller's to close; closing fds[1] hangs the port up. Returns 0, or ST_E_PORT_OPEN with
 * err; fds are -1 then. */
int drv_port_pair_new(int fds[2], char *name, size_t namelen, char *err, size_t errlen);

/* The backend called name, or NULL. */
const struct drv_port_ops *drv_port_find_backend(const char *name);

/* The backend "auto" picks for path: "pair" for "pair:<fd>", "pty" when it (or what it links
 * to) is under /dev/pts/, else "serial". Never NULL. */
const char *drv_port_auto_backend(const char *path);

/* Opens a port. An unknown backend is ST_E_PORT_UNKNOWN with a message listing the known
 * ones. *out is NULL on failure; free with drv_port_close(). */
int drv_port_open(const struct drv_port_config *cfg, struct drv_port **out, char *err,
		  size_t errlen);
/* Closes the fd and frees the port; NULL is allowed. Stop watching the fd first. */
void drv_port_close(struct drv_port *port);

int drv_port_fd(const struct drv_port *port);
int drv_port_set_baud(struct drv_port *port, int baud, char *err, size_t errlen);

/* Non-blocking I/O. Return the number of bytes moved (0 when the call would block), or
 * ST_E_PORT_HANGUP when the other end went away (device unplugged, PTY master closed), or
 * ST_E_PORT for any other failure, with err saying which port and why. */
ssize_t drv_port_read(struct drv_port *port, void *buf, size_t n, char *err, size_t errlen);
ssize_t drv_port_write(struct drv_port *port, const void *buf, size_t n, char *err,
		       size_t errlen);

/* Low-latency mode. A USB-serial adapter holds what a board sends until its packet fills or
 * its latency timer runs out (16 ms by default on FTDI's), and on a line of request and
 * answer that wait comes at every turn. The serial backend asks every port it opens for the
 * driver's low-latency mode (ASYNC_LOW_LATENCY: 1 ms on ftdi_sio). Returns 1 when the port
 * is in it; 0 when its driver refused it or did not keep it, *why (static, or the port's own
 * until it closes) saying which; -1 for a backend without the setting (pty, pair). */
int drv_port_low_latency(const struct drv_port *port, const char **why);
/* The request itself, on any tty fd: 1 when it is in low-latency mode afterwards, else 0
 * with why (cap bytes) naming the ioctl that failed and its error, or saying that the
 * driver did not keep the flag. */
int drv_port_request_low_latency(int fd, char *why, size_t cap);

/* The termios speed constant for a rate, or 0 when termios has none (pty backend). */
unsigned int drv_port_speed(int baud);

/* Enumeration of serial ports (libserialport), for `station ports` and hot-plug scans. */
struct drv_port_info {
	char *path;         /* /dev/ttyUSB0 */
	char *description;  /* libserialport's description, may be "" */
	const char *transport; /* "usb", "native" or "bluetooth" (static string) */
	int usb_vid, usb_pid;  /* -1 unless USB */
	int usb_bus, usb_address; /* -1 unless USB */
	char *manufacturer, *product, *serial; /* USB strings, NULL when absent */
	char *by_id;   /* /dev/serial/by-id/ name of the port, NULL when none */
	char *by_path; /* /dev/serial/by-path/ name of the port, NULL when none */
};

/* Lists the serial ports the system has, sorted by path. *out is an array of *n entries
 * (NULL and 0 when there are none), freed with drv_port_list_free(). */
int drv_port_list(struct drv_port_info **out, size_t *n, char *err, size_t errlen);
void drv_port_list_free(struct drv_port_info *list, size_t n);

/* The first symlink in dir (e.g. "/dev/serial/by-path") whose target resolves to the same
 * file as target, as a malloc'd "dir/name"; NULL when there is none or dir does not exist. */
char *drv_port_find_link(const char *dir, const char *target);

#endif
