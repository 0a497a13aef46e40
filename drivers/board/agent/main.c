/* station-agent: provisions this device over its console UART. See README.md beside this
 * file for the options, the configuration file and the systemd unit. */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"

struct agent {
	struct agent_config cfg;
	const char *tty;
	int fd;
	struct termios saved;
	int have_saved;
	int serve;
	int done;    /* 1: DONE pass, 2: DONE fail */
	int written; /* bytes were written since the last drain */
	struct brd_board board;
	struct agent_store *store;
	const struct agent_key_backend *kb;
	void *key;
};

static volatile sig_atomic_t stop_signal;

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void logf_(const char *fmt, ...)
{
	va_list ap;

	fputs("station-agent: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static speed_t speed_of(uint32_t rate)
{
	switch (rate) {
	case 9600: return B9600;
	case 19200: return B19200;
	case 38400: return B38400;
	case 57600: return B57600;
	case 115200: return B115200;
	case 230400: return B230400;
	case 460800: return B460800;
	case 921600: return B921600;
	case 1000000: return B1000000;
	case 1500000: return B1500000;
	case 2000000: return B2000000;
	case 3000000: return B3000000;
	default: return 0;
	}
}

static int set_rate(int fd, uint32_t rate)
{
	struct termios t;
	speed_t sp = speed_of(rate);

	if (!sp || tcgetattr(fd, &t) != 0)
		return -1;
	cfsetispeed(&t, sp);
	cfsetospeed(&t, sp);
	return tcsetattr(fd, TCSADRAIN, &t);
}

/* Platform callbacks. */

static void plat_send(void *arg, const char *bytes, size_t n, int fresh)
{
	struct agent *a = arg;

	(void)fresh;
	/* One frame, written whole: console output from others may come before or after it,
	 * never inside (the tty takes a write of this size in one go). */
	while (n) {
		ssize_t w = write(a->fd, bytes, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				struct pollfd p = { a->fd, POLLOUT, 0 };

				poll(&p, 1, 1000);
				continue;
			}
			logf_("%s: write: %s", a->tty, strerror(errno));
			return;
		}
		bytes += w;
		n -= (size_t)w;
	}
	a->written = 1;
}

static void plat_set_baud(void *arg, uint32_t rate)
{
	struct agent *a = arg;

	if (set_rate(a->fd, rate) != 0)
		logf_("%s: cannot switch to %u baud: %s", a->tty, rate, strerror(errno));
}

static void plat_event(void *arg, enum brd_event ev, const char *text)
{
	struct agent *a = arg;
	char path[AGENT_PATH_MAX + 16], line[160];

	switch (ev) {
	case BRD_EV_BOOT:
		logf_("on %s at %u baud, boot %s", a->tty, brd_baud(&a->board), text);
		break;
	case BRD_EV_HELLO:
		logf_("session opened (device id '%s')", text);
		break;
	case BRD_EV_CSR:
		logf_("made a new %s", !strcmp(text, "key") ? "key pair" : "CSR");
		break;
	case BRD_EV_ADOPTED:
		logf_("adopted device id %s", text);
		break;
	case BRD_EV_COMMIT:
		logf_("installed %s", text);
		break;
	case BRD_EV_REFUSED:
		logf_("refused: %s", text);
		break;
	case BRD_EV_BAUD:
		logf_("switched to %s baud", text);
		break;
	case BRD_EV_FALLBACK:
		logf_("no good frame at the new rate: back to %s baud", text);
		break;
	case BRD_EV_DONE_PASS:
	case BRD_EV_DONE_FAIL:
		a->done = ev == BRD_EV_DONE_PASS ? 1 : 2;
		logf_("done: %s %s", a->done == 1 ? "pass" : "fail", text);
		snprintf(line, sizeof(line), "%s %s\n", a->done == 1 ? "pass" : "fail", text);
		snprintf(path, sizeof(path), "%s/result", a->cfg.state_dir);
		agent_write_atomic(path, line, strlen(line), 0644, a->cfg.fsync);
		break;
	}
}

static int random_fill(void *inst, void *buf, size_t n)
{
	(void)inst;
	return agent_random(buf, n) == 0 ? 0 : BRD_ERR_CRYPTO;
}

static const struct brd_random_ops random_ops = { random_fill };

/* The UART. */

static int open_tty(struct agent *a)
{
	struct termios t;

	a->fd = open(a->tty, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (a->fd < 0) {
		logf_("%s: %s", a->tty, strerror(errno));
		return -1;
	}
	if (tcgetattr(a->fd, &t) != 0) {
		logf_("%s: not a terminal: %s", a->tty, strerror(errno));
		return -1;
	}
	a->saved = t;
	a->have_saved = 1;
	/* Raw: no echo (the station would see its own frames), no line editing, no
	 * translation; 8N1, receiver on, modem lines ignored. */
	cfmakeraw(&t);
	t.c_cflag |= CLOCAL | CREAD;
	t.c_cflag &= ~(CSTOPB | PARENB | CRTSCTS);
	t.c_cc[VMIN] = 1;
	t.c_cc[VTIME] = 0;
	cfsetispeed(&t, speed_of(a->cfg.baud));
	cfsetospeed(&t, speed_of(a->cfg.baud));
	if (tcsetattr(a->fd, TCSANOW, &t) != 0) {
		logf_("%s: cannot set %u baud raw: %s", a->tty, a->cfg.baud, strerror(errno));
		return -1;
	}
	tcflush(a->fd, TCIFLUSH);
	return 0;
}

static void on_signal(int sig)
{
	stop_signal = sig;
}

static int serve(struct agent *a)
{
	char buf[4096];

	brd_boot(&a->board, now_ms());
	while (!stop_signal) {
		struct pollfd p = { a->fd, POLLIN, 0 };
		uint64_t due = brd_deadline(&a->board), now = now_ms();
		int timeout = -1, r;
		ssize_t n;

		if (a->written) {
			/* What was written has left the UART: a BAUD answer switches now. */
			tcdrain(a->fd);
			a->written = 0;
			brd_tx_done(&a->board, now_ms());
		}
		if (a->done && !a->serve)
			break;
		if (due)
			timeout = due > now ? (int)(due - now) : 0;
		r = poll(&p, 1, timeout);
		if (r < 0 && errno != EINTR) {
			logf_("poll: %s", strerror(errno));
			return 2;
		}
		brd_tick(&a->board, now_ms());
		if (r <= 0 || !(p.revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		n = read(a->fd, buf, sizeof(buf));
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n <= 0) {
			logf_("%s: %s", a->tty, n ? strerror(errno) : "hung up");
			return 2;
		}
		brd_input(&a->board, buf, (size_t)n, now_ms());
	}
	if (stop_signal) {
		logf_("stopped by signal %d", (int)stop_signal);
		return 3;
	}
	return a->done == 1 ? 0 : 1;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: station-agent --tty DEV [--config FILE] [--root DIR] [--serve]\n"
		   "  --tty DEV      the console UART the station speaks on (/dev/ttyS0, ...)\n"
		   "  --config FILE  key = value settings (default /etc/station-agent.conf if it "
		   "exists)\n"
		   "  --root DIR     prefix every path the agent touches (tests, image builds)\n"
		   "  --serve        keep serving after DONE (default: exit 0 on pass, 1 on "
		   "fail)\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "tty", required_argument, NULL, 't' },
		{ "config", required_argument, NULL, 'c' },
		{ "root", required_argument, NULL, 'r' },
		{ "serve", no_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct agent a;
	const char *config = NULL, *root = NULL, *prefixes[BRD_MAX_PREFIXES];
	struct brd_config bc;
	struct sigaction sa;
	char err[1024];
	unsigned int i;
	int c, rc = 2;

	a.fd = -1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			a.tty = optarg;
			break;
		case 'c':
			config = optarg;
			break;
		case 'r':
			root = optarg;
			break;
		case 's':
			a.serve = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!a.tty || optind != argc) {
		usage(stderr);
		return 2;
	}
	if (!config && access("/etc/station-agent.conf", F_OK) == 0)
		config = "/etc/station-agent.conf";
	if (agent_config_load(&a.cfg, config, root, err, sizeof(err)) != 0) {
		logf_("%s", err);
		return 2;
	}
	for (i = 0; agent_key_backends[i]; i++) {
		if (!strcmp(agent_key_backends[i]->name, a.cfg.key_backend))
			a.kb = agent_key_backends[i];
	}
	if (!a.kb) {
		logf_("key backend %s is not in this build", a.cfg.key_backend);
		goto out;
	}
	if (agent_store_open(&a.cfg, &a.store, err, sizeof(err)) != 0 ||
	    a.kb->open(&a.cfg, &a.key, err, sizeof(err)) != 0) {
		logf_("%s", err);
		goto out;
	}
	/* What the board holds, after a commit a power loss interrupted was finished. */
	logf_("%s: generation %llu installed, %u files", a.cfg.config_dir,
	      (unsigned long long)agent_store_ops.generation(a.store),
	      agent_store_ops.installed(a.store));
	memset(&bc, 0, sizeof(bc));
	bc.hw = a.cfg.hw;
	bc.sku = a.cfg.sku;
	bc.fw = a.cfg.fw;
	bc.sn = a.cfg.sn;
	bc.key_storage = a.cfg.key_storage;
	bc.config_dir = a.cfg.config_dir_norm;
	for (i = 0; i < a.cfg.nprefixes; i++)
		prefixes[i] = a.cfg.prefixes[i];
	bc.prefixes = prefixes;
	bc.nprefixes = a.cfg.nprefixes;
	bc.baud = a.cfg.baud;
	bc.bauds = a.cfg.bauds;
	bc.nbauds = a.cfg.nbauds;
	bc.max_frame = a.cfg.max_frame;
	bc.max_file = a.cfg.max_file;
	bc.max_total = a.cfg.max_total;
	bc.allow_regen = a.cfg.allow_regen;
	bc.storage = &agent_store_ops;
	bc.storage_inst = a.store;
	bc.key = a.kb->ops;
	bc.key_inst = a.key;
	bc.random = &random_ops;
	bc.sha256_blocks = agent_sha256_blocks;
	bc.plat.arg = &a;
	bc.plat.send = plat_send;
	bc.plat.set_baud = plat_set_baud;
	bc.plat.event = plat_event;
	if (brd_init(&a.board, &bc) != 0) {
		logf_("the configuration does not fit the board core (prefixes, rates, frame size)");
		goto out;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (open_tty(&a) != 0)
		goto out;
	rc = serve(&a);
out:
	if (a.fd >= 0) {
		if (a.have_saved)
			tcsetattr(a.fd, TCSADRAIN, &a.saved);
		close(a.fd);
	}
	if (a.key)
		a.kb->close(a.key);
	agent_store_close(a.store);
	return rc;
}
