#include "events.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "crash.h"
#include "err.h"
#include "log.h"

/* How long st_events_close() waits for a reader to take what is left: the run is over, so
 * this delays only the exit, and a reader that is gone or stalled must not hold it up. */
#define CLOSE_FLUSH_MS 2000

struct st_events {
	int fd;        /* -1: tallies only */
	int own_fd;    /* close fd at the end */
	int warned;    /* a write error was logged: the stream is given up */
	int nonblock;  /* fd is a pipe, FIFO, terminal or socket written without blocking */
	int restore_fl; /* fd's file status flags to put back at close, -1: none */
	uv_poll_t poll; /* fd writable while bytes wait (nonblock only) */
	int poll_state; /* 0: none, 1: initialised, 2: started, 3: closed */
	char *buf;     /* bytes the reader has not taken yet: whole lines but maybe the first */
	size_t head, len, cap; /* buf[head .. head + len) waits */
	size_t max;    /* bound of len: a new line that does not fit is dropped */
	uint64_t dropped;
	int drop_told; /* the first drop was logged */
	char *path;
	char *station;
	struct st_tally tally;
	st_events_tap_fn tap; /* st_events_set_tap() */
	void *tap_arg;
	char *station_field; /* ,"station":".." as the lines carry it, or NULL */
	struct st_jbuf line; /* the line being built, kept for the next one */
	uv_prepare_t turn; /* writes out a loop turn's lines before the loop waits */
	int turn_state;    /* 0: none (every line written at once), 1: idle, 2: armed,
			    * 3: closed */
	uv_timer_t gather; /* with gather_ms: writes out the lines of that many ms at once */
	int gather_state;  /* 0: none, 1: idle, 2: armed, 3: closed */
	unsigned gather_ms;
	uint64_t writes;   /* write(2) calls */
	time_t ts_sec;     /* the second ts_day_time holds, with its length (0: none yet) */
	char ts_day_time[24];
	size_t ts_len;
};

static const char *const phase_names[ST_PHASE_COUNT] = {
	[ST_PHASE_HELLO] = "hello",   [ST_PHASE_CSR] = "csr",       [ST_PHASE_QUEUE] = "queue",
	[ST_PHASE_SIGN] = "sign",     [ST_PHASE_RECORD] = "record", [ST_PHASE_WRITE] = "write",
	[ST_PHASE_VERIFY] = "verify", [ST_PHASE_TOTAL] = "total",
};

const char *st_phase_name(enum st_phase p)
{
	return (unsigned)p < ST_PHASE_COUNT ? phase_names[p] : "?";
}

static const char *stream_name(const struct st_events *ev)
{
	return ev->path ? ev->path : "stdout";
}

static void on_writable(uv_poll_t *h, int status, int events);
static void crash_guard(struct st_events *ev, int on);

/* Makes a stream that is not a regular file non-blocking without touching the open file
 * description that others share (a terminal's, the shell's pipe): stdout is opened again
 * through /proc (what libuv does for terminals), and only when that is impossible (a
 * socket) are its own flags changed, to be put back at close. */
static int make_nonblocking(struct st_events *ev, char *err, size_t errlen)
{
	char proc[64];
	int fd, fl;

	if (!ev->own_fd) {
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", ev->fd);
		fd = open(proc, O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
		if (fd >= 0) {
			ev->fd = fd;
			ev->own_fd = 1;
			return 0;
		}
	}
	fl = fcntl(ev->fd, F_GETFL);
	if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(ev->fd, F_SETFL, fl | O_NONBLOCK) < 0))
		return st_errf(err, errlen, ST_E_IO, "events %s: cannot write without blocking: %s",
			       stream_name(ev), strerror(errno));
	if (!ev->own_fd && !(fl & O_NONBLOCK))
		ev->restore_fl = fl;
	return 0;
}

/* Sets up the writing of a stream that is open: regular files are written as they are (a
 * write there cannot wait on a reader); anything else without blocking, watched on loop. */
static int setup_stream(struct st_events *ev, uv_loop_t *loop, char *err, size_t errlen)
{
	struct stat sb;
	int rc;

	if (fstat(ev->fd, &sb) != 0)
		return st_errf(err, errlen, ST_E_IO, "events %s: %s", stream_name(ev),
			       strerror(errno));
	if (!loop)
		return 0;
	if (S_ISREG(sb.st_mode) || S_ISBLK(sb.st_mode)) {
		crash_guard(ev, 1);
	} else {
		rc = make_nonblocking(ev, err, errlen);
		if (rc < 0)
			return rc;
		ev->nonblock = 1;
		/* A device that cannot be polled (/dev/null) never makes a write wait
		 * either. */
		if (uv_poll_init(loop, &ev->poll, ev->fd) == 0) {
			ev->poll.data = ev;
			ev->poll_state = 1;
		}
	}
	/* Started only while lines wait, so it keeps the loop going for one turn at most. */
	if (uv_prepare_init(loop, &ev->turn) == 0) {
		ev->turn.data = ev;
		ev->turn_state = 1;
	}
	if (uv_timer_init(loop, &ev->gather) == 0) {
		ev->gather.data = ev;
		ev->gather_state = 1;
	}
	return 0;
}

int st_events_open(const char *path, int to_stdout, uv_loop_t *loop, size_t buffer_max,
		   struct st_events **out, char *err, size_t errlen)
{
	struct st_events *ev;
	int rc;

	*out = NULL;
	ev = calloc(1, sizeof(*ev));
	if (!ev)
		return st_errf(err, errlen, ST_E_NOMEM, "out of memory");
	ev->fd = -1;
	ev->restore_fl = -1;
	ev->max = buffer_max ? buffer_max : ST_EVENTS_BUFFER_DEFAULT;
	if (ev->max < ST_EVENTS_BUFFER_MIN)
		ev->max = ST_EVENTS_BUFFER_MIN;
	if (path) {
		ev->path = strdup(path);
		if (!ev->path) {
			free(ev);
			return st_errf(err, errlen, ST_E_NOMEM, "out of memory");
		}
		/* O_NONBLOCK: opening a FIFO must not wait for its reader. */
		ev->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NONBLOCK, 0644);
		if (ev->fd < 0) {
			int e = errno;

			rc = e == ENXIO ? st_errf(err, errlen, ST_E_IO,
						  "events file %s: a FIFO that nobody reads; start "
						  "its reader first",
						  path) :
					  st_errf(err, errlen, ST_E_IO, "events file %s: %s", path,
						  strerror(e));
			free(ev->path);
			free(ev);
			return rc;
		}
		ev->own_fd = 1;
	} else if (to_stdout) {
		ev->fd = STDOUT_FILENO;
	}
	if (ev->fd >= 0) {
		rc = setup_stream(ev, loop, err, errlen);
		if (rc < 0) {
			st_events_close(ev);
			return rc;
		}
	}
	*out = ev;
	return 0;
}

static void end_turns(struct st_events *ev);

void st_events_detach(struct st_events *ev)
{
	if (!ev)
		return;
	end_turns(ev);
	if (ev->poll_state != 1 && ev->poll_state != 2)
		return;
	ev->poll_state = 3;
	uv_close((uv_handle_t *)&ev->poll, NULL);
}

uint64_t st_events_dropped(const struct st_events *ev)
{
	return ev->dropped;
}

/* Lines in the bytes that wait (the last one ends with its newline). */
static uint64_t lines_waiting(const struct st_events *ev)
{
	uint64_t n = 0;

	for (size_t i = 0; i < ev->len; i++)
		n += ev->buf[ev->head + i] == '\n';
	return n;
}

/* The stream is given up (the reader went away, a write error): said once, and what waits
 * counts as dropped. */
static void give_up(struct st_events *ev, int e)
{
	if (!ev->warned)
		st_warn("events %s: %s; further events are lost", stream_name(ev), strerror(e));
	ev->warned = 1;
	ev->dropped += lines_waiting(ev);
	ev->head = ev->len = 0;
	if (ev->poll_state == 2) {
		uv_poll_stop(&ev->poll);
		ev->poll_state = 1;
	}
}

/* Writes what waits, as much as the reader takes now. Returns 0, or -1 when the stream was
 * given up. */
static int flush_some(struct st_events *ev)
{
	while (ev->len > 0) {
		ssize_t w = write(ev->fd, ev->buf + ev->head, ev->len);

		ev->writes++;
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (w <= 0) {
			give_up(ev, w < 0 ? errno : EIO);
			return -1;
		}
		ev->head += (size_t)w;
		ev->len -= (size_t)w;
	}
	ev->head = 0;
	return 0;
}

static void watch(struct st_events *ev, int on)
{
	if (on && ev->poll_state == 1) {
		if (uv_poll_start(&ev->poll, UV_WRITABLE, on_writable) == 0)
			ev->poll_state = 2;
	} else if (!on && ev->poll_state == 2) {
		uv_poll_stop(&ev->poll);
		ev->poll_state = 1;
	}
}

static void on_writable(uv_poll_t *h, int status, int events)
{
	struct st_events *ev = h->data;

	(void)events;
	if (status < 0) {
		give_up(ev, -status);
		return;
	}
	if (flush_some(ev) == 0)
		watch(ev, ev->len > 0);
}

/* A stream written to a regular file: its whole lines that wait for the loop turn's end are
 * written by a fatal signal's hook (crash.h). One stream per process is guarded: the
 * engine's. */
static struct st_events *crash_ev;
static int crash_hook = -1;

static void on_crash(void *arg)
{
	struct st_events *ev = arg;

	/* Lines are appended whole before len counts them: what len covers is whole. */
	if (ev->len > 0 && !ev->warned)
		(void)!write(ev->fd, ev->buf + ev->head, ev->len);
}

static void crash_guard(struct st_events *ev, int on)
{
	if (!on) {
		if (crash_ev != ev)
			return;
		st_crash_hook_clear(crash_hook);
		crash_hook = -1;
		crash_ev = NULL;
		return;
	}
	if (crash_ev)
		return;
	crash_hook = st_crash_hook_set(on_crash, ev);
	if (crash_hook >= 0)
		crash_ev = ev;
}

/* Makes room for n more bytes after what waits. Returns 0, or -1 when memory ran out. */
static int room(struct st_events *ev, size_t n)
{
	size_t cap;
	char *b;

	if (ev->head + ev->len + n <= ev->cap)
		return 0;
	if (ev->head) {
		memmove(ev->buf, ev->buf + ev->head, ev->len);
		ev->head = 0;
	}
	if (ev->len + n <= ev->cap)
		return 0;
	cap = ev->cap ? ev->cap : 4096;
	while (cap < ev->len + n)
		cap *= 2;
	b = realloc(ev->buf, cap);
	if (!b)
		return -1;
	ev->buf = b;
	ev->cap = cap;
	return 0;
}

static void on_gathered(uv_timer_t *h)
{
	struct st_events *ev = h->data;

	ev->gather_state = 1;
	if (flush_some(ev) == 0)
		watch(ev, ev->len > 0);
}

static void on_turn_end(uv_prepare_t *h)
{
	struct st_events *ev = h->data;

	uv_prepare_stop(h);
	ev->turn_state = 1;
	if (flush_some(ev) == 0)
		watch(ev, ev->len > 0);
}

/* One whole line out. Lines gather until the loop turn ends (or ST_EVENTS_FLUSH_AT bytes
 * wait) and are then written together: to a regular file with blocking writes; otherwise
 * what the reader does not take at once waits for it, and a line that does not fit while
 * bytes wait is dropped whole. */
static void put_line(struct st_events *ev, const char *s, size_t n)
{
	if (ev->len > 0 && ev->len + n > ST_EVENTS_FLUSH_AT && flush_some(ev) < 0) {
		ev->dropped++;
		return;
	}
	if (ev->nonblock && ev->len > 0 && ev->len + n > ev->max) {
		/* The reader may have taken some since the last turn. */
		if (flush_some(ev) < 0) {
			ev->dropped++;
			return;
		}
		if (ev->len > 0 && ev->len + n > ev->max) {
			ev->dropped++;
			if (!ev->drop_told)
				st_warn("events %s: the reader is not keeping up; events are "
					"dropped while %zu bytes wait for it (the summary counts "
					"them)",
					stream_name(ev), ev->len);
			ev->drop_told = 1;
			return;
		}
	}
	if (room(ev, n) < 0) {
		give_up(ev, ENOMEM);
		ev->dropped++;
		return;
	}
	memcpy(ev->buf + ev->head + ev->len, s, n);
	ev->len += n;
	/* The first turn's lines go out when it ends: a reader learns at once that the stream
	 * runs (`station bench` starts its clocks then). */
	if (ev->gather_ms && ev->writes > 0 && ev->gather_state == 1) {
		if (uv_timer_start(&ev->gather, on_gathered, ev->gather_ms, 0) == 0) {
			ev->gather_state = 2;
			return;
		}
	} else if (ev->gather_ms && ev->gather_state == 2) {
		return;
	}
	if (ev->turn_state == 1) {
		if (uv_prepare_start(&ev->turn, on_turn_end) == 0) {
			ev->turn_state = 2;
			return;
		}
	} else if (ev->turn_state == 2) {
		return;
	}
	/* No loop to end a turn (a tool, or the loop's last run): out at once. */
	if (flush_some(ev) == 0)
		watch(ev, ev->len > 0);
}

void st_events_flush(struct st_events *ev)
{
	if (ev && ev->fd >= 0 && !ev->warned && flush_some(ev) == 0)
		watch(ev, ev->len > 0);
}

/* Writes out the lines that wait for the turn's end and stops waiting for it. */
static void end_turns(struct st_events *ev)
{
	if (ev->turn_state == 1 || ev->turn_state == 2) {
		ev->turn_state = 3;
		uv_close((uv_handle_t *)&ev->turn, NULL);
	}
	if (ev->gather_state == 1 || ev->gather_state == 2) {
		ev->gather_state = 3;
		ev->gather_ms = 0;
		uv_close((uv_handle_t *)&ev->gather, NULL);
	}
	st_events_flush(ev);
}

void st_events_set_gather(struct st_events *ev, unsigned ms)
{
	if (!ev || ev->gather_state == 3)
		return;
	ev->gather_ms = ms;
	if (!ms && ev->gather_state == 2) {
		uv_timer_stop(&ev->gather);
		ev->gather_state = 1;
		st_events_flush(ev);
	}
}

uint64_t st_events_writes(const struct st_events *ev)
{
	return ev->writes;
}

void st_events_close(struct st_events *ev)
{
	uint64_t waited = 0, start;

	if (!ev)
		return;
	crash_guard(ev, 0);
	start = uv_hrtime();
	while (ev->len > 0 && !ev->warned && waited < CLOSE_FLUSH_MS) {
		struct pollfd p = { .fd = ev->fd, .events = POLLOUT };

		if (poll(&p, 1, (int)(CLOSE_FLUSH_MS - waited)) > 0 && flush_some(ev) < 0)
			break;
		waited = (uv_hrtime() - start) / 1000000u;
	}
	if (ev->len > 0) {
		/* The last line may be torn here: the reader took its beginning. */
		ev->dropped += lines_waiting(ev) + (ev->buf[ev->head + ev->len - 1] != '\n');
		ev->len = 0;
	}
	if (ev->dropped)
		st_warn("events %s: %llu events dropped in all: the reader did not keep up",
			stream_name(ev), (unsigned long long)ev->dropped);
	if (ev->restore_fl >= 0)
		(void)fcntl(ev->fd, F_SETFL, ev->restore_fl);
	if (ev->own_fd)
		close(ev->fd);
	free(ev->buf);
	free(ev->line.p);
	free(ev->tally.reasons);
	free(ev->path);
	free(ev->station);
	free(ev->station_field);
	free(ev);
}

void st_events_set_tap(struct st_events *ev, st_events_tap_fn fn, void *arg)
{
	ev->tap = fn;
	ev->tap_arg = arg;
}

/* Whether lines are wanted at all: a file, stdout, or a tap. */
static int wanted(const struct st_events *ev)
{
	return (ev->fd >= 0 && !ev->warned) || ev->tap;
}

static const char hexdig[] = "0123456789ABCDEF";

void st_jbuf_raw(struct st_jbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		char *p;

		while (cap < b->len + n)
			cap *= 2;
		p = realloc(b->p, cap);
		if (!p) {
			b->oom = 1;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void jb_lit(struct st_jbuf *b, const char *s)
{
	st_jbuf_raw(b, s, strlen(s));
}

/* Whether s (n bytes) is well-formed UTF-8: what json_string() accepted. */
static int utf8_whole(const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;

	for (size_t i = 0; i < n;) {
		size_t k = u[i] < 0x80 ? 1 : st_utf8_len(u + i, n - i);

		if (k == 0)
			return 0;
		i += k;
	}
	return 1;
}

void st_jbuf_str(struct st_jbuf *b, const char *s)
{
	size_t n, run = 0;
	int whole;

	if (!s) {
		jb_lit(b, "null");
		return;
	}
	n = strlen(s);
	whole = utf8_whole(s, n);
	st_jbuf_raw(b, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[6] = { '\\', 0, '0', '0', 0, 0 };
		size_t elen = 2;

		if (c >= 0x20 && c != '"' && c != '\\' && (c < 0x80 || whole))
			continue; /* as it is, with the run before it */
		st_jbuf_raw(b, s + run, i - run);
		run = i + 1;
		if (!whole && (c >= 0x80 || c < 0x20)) {
			/* Bytes from a board that are not UTF-8: as the stream always had them. */
			st_jbuf_raw(b, "?", 1);
			continue;
		}
		switch (c) {
		case '"': esc[1] = '"'; break;
		case '\\': esc[1] = '\\'; break;
		case '\b': esc[1] = 'b'; break;
		case '\f': esc[1] = 'f'; break;
		case '\n': esc[1] = 'n'; break;
		case '\r': esc[1] = 'r'; break;
		case '\t': esc[1] = 't'; break;
		default:
			esc[1] = 'u';
			esc[4] = hexdig[c >> 4];
			esc[5] = hexdig[c & 15];
			elen = 6;
		}
		st_jbuf_raw(b, esc, elen);
	}
	st_jbuf_raw(b, s + run, n - run);
	st_jbuf_raw(b, "\"", 1);
}

/* Writes n's last width decimal digits at p. */
static void put_digits(char *p, unsigned long long n, int width)
{
	while (width-- > 0) {
		p[width] = (char)('0' + n % 10);
		n /= 10;
	}
}

void st_jbuf_real(struct st_jbuf *b, double v)
{
	char t[48];
	char *e;
	int n;

	/* Thousandths from 0 to a million, as the outcomes' phase times are (round3): %.10g
	 * writes them exactly (ten digits hold them), so they are written here by hand at a
	 * tenth of its cost. */
	if (!signbit(v) && v < 1e6) {
		long long k = llround(v * 1000.0);

		if ((double)k / 1000.0 == v) {
			unsigned long long ip = (unsigned long long)k / 1000u;
			unsigned frac = (unsigned)(k % 1000);
			int digits = 1;

			for (unsigned long long x = ip; x >= 10; x /= 10)
				digits++;
			put_digits(t, ip, digits);
			n = digits;
			t[n++] = '.';
			if (!frac) {
				t[n++] = '0';
			} else {
				int w = 3;

				for (; frac % 10 == 0; frac /= 10)
					w--;
				put_digits(t + n, frac, w);
				n += w;
			}
			st_jbuf_raw(b, t, (size_t)n);
			return;
		}
	}
	n = snprintf(t, sizeof(t) - 2, "%.10g", v);

	if (n < 0 || (size_t)n >= sizeof(t) - 2)
		return;
	/* A decimal comma from a locale would not be JSON; the program keeps the C locale. */
	if (!strchr(t, '.') && !strchr(t, 'e')) {
		memcpy(t + n, ".0", 3);
		n += 2;
	}
	e = strchr(t, 'e');
	if (e) {
		char *from = e + 2, *to = e + 1;

		if (*to == '-')
			to++;
		while (*from == '0')
			from++;
		if (from != to) {
			memmove(to, from, strlen(from) + 1);
			n = (int)strlen(t);
		}
	}
	st_jbuf_raw(b, t, (size_t)n);
}

static void jb_int(struct st_jbuf *b, long long v)
{
	char t[24];
	int n = snprintf(t, sizeof(t), "%lld", v);

	st_jbuf_raw(b, t, (size_t)n);
}

/* ,"key": or, first in its object, "key": (keys are the stream's own, plain ASCII). */
static void jb_key_at(struct st_jbuf *b, int first, const char *key)
{
	if (!first)
		st_jbuf_raw(b, ",", 1);
	st_jbuf_raw(b, "\"", 1);
	jb_lit(b, key);
	st_jbuf_raw(b, "\":", 2);
}

static void jb_key(struct st_jbuf *b, const char *key)
{
	jb_key_at(b, 0, key);
}

/* A string field; NULL or "" leaves it out. */
static void jb_field_str(struct st_jbuf *b, const char *key, const char *s)
{
	if (!s || !s[0])
		return;
	jb_key(b, key);
	st_jbuf_str(b, s);
}

static void jb_field_int(struct st_jbuf *b, const char *key, long long v)
{
	jb_key(b, key);
	jb_int(b, v);
}

/* A jansson value as it was dumped into the line. */
static void jb_json(struct st_jbuf *b, const json_t *v)
{
	char *t = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10) |
					JSON_ENCODE_ANY);

	if (!t) {
		b->oom = 1;
		return;
	}
	jb_lit(b, t);
	free(t);
}

void st_events_set_station(struct st_events *ev, const char *station)
{
	json_t *j;

	free(ev->station);
	free(ev->station_field);
	ev->station = station ? strdup(station) : NULL;
	ev->station_field = NULL;
	/* Made once: every line carries it. A name that is not UTF-8 is left out, as jansson
	 * left it out. */
	j = ev->station ? json_string(ev->station) : NULL;
	if (j) {
		struct st_jbuf f = { 0 };

		jb_key(&f, "station");
		jb_json(&f, j);
		st_jbuf_raw(&f, "", 1);
		if (!f.oom)
			ev->station_field = f.p;
		else
			free(f.p);
		json_decref(j);
	}
}

/* "2024-05-01T12:00:00.123Z". The date and time to the second are formatted once a second
 * (gmtime_r and snprintf: some 3,000 instructions, and a board makes a dozen lines), the
 * milliseconds every time. */
static void timestamp(struct st_events *ev, char buf[32])
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (!ev->ts_len || ts.tv_sec != ev->ts_sec) {
		struct tm tm;
		int n;

		gmtime_r(&ts.tv_sec, &tm);
		n = snprintf(ev->ts_day_time, sizeof(ev->ts_day_time), "%04u-%02u-%02uT%02u:%02u:%02u",
			     (unsigned)(tm.tm_year + 1900) % 10000u, (unsigned)(tm.tm_mon + 1) % 100u,
			     (unsigned)tm.tm_mday % 100u, (unsigned)tm.tm_hour % 100u,
			     (unsigned)tm.tm_min % 100u, (unsigned)tm.tm_sec % 100u);
		ev->ts_len = n > 0 && (size_t)n < sizeof(ev->ts_day_time) ? (size_t)n : 0;
		ev->ts_sec = ts.tv_sec;
	}
	memcpy(buf, ev->ts_day_time, ev->ts_len);
	buf[ev->ts_len] = '.';
	put_digits(buf + ev->ts_len + 1, (unsigned long long)(ts.tv_nsec / 1000000L) % 1000u, 3);
	memcpy(buf + ev->ts_len + 4, "Z", 2);
}

/* Starts a line: {"ts":"..","event":<event>[,"station":".."], event already in JSON. */
static struct st_jbuf *line_begin(struct st_events *ev, const char *event, const json_t *jevent)
{
	struct st_jbuf *b = &ev->line;
	char ts[32];

	b->len = 0;
	b->oom = 0;
	timestamp(ev, ts);
	jb_lit(b, "{\"ts\":\"");
	jb_lit(b, ts);
	st_jbuf_raw(b, "\"", 1);
	if (event || jevent) {
		jb_key(b, "event");
		if (event)
			jb_lit(b, event);
		else
			jb_json(b, jevent);
	}
	if (ev->station_field)
		jb_lit(b, ev->station_field);
	return b;
}

/* Ends the line and hands it to the stream and the tap. */
static void line_end(struct st_events *ev)
{
	struct st_jbuf *b = &ev->line;

	st_jbuf_raw(b, "}\n", 2);
	if (b->oom) {
		/* Nothing of it can go out: the line was not built whole. */
		b->oom = 0;
		return;
	}
	if (ev->fd >= 0 && !ev->warned)
		put_line(ev, b->p, b->len);
	else
		ev->dropped += ev->warned;
	if (ev->tap)
		ev->tap(ev->tap_arg, b->p, b->len - 1);
}

void st_events_emit(struct st_events *ev, json_t *obj)
{
	struct st_jbuf *b;
	const char *k;
	json_t *v;

	if (!obj)
		return;
	if (!wanted(ev)) {
		ev->dropped += ev->warned;
		json_decref(obj);
		return;
	}
	/* "ts" and "event" lead the line, the way people read it. */
	b = line_begin(ev, NULL, json_object_get(obj, "event"));
	json_object_foreach(obj, k, v) {
		if (strcmp(k, "event") == 0)
			continue;
		st_jbuf_raw(b, ",", 1);
		st_jbuf_str(b, k);
		st_jbuf_raw(b, ":", 1);
		jb_json(b, v);
	}
	json_decref(obj);
	line_end(ev);
}

void st_events_state(struct st_events *ev, const char *slot, const char *from, const char *to,
		     const char *device_id)
{
	struct st_jbuf *b;

	if (!wanted(ev))
		return;
	b = line_begin(ev, "\"state\"", NULL);
	jb_field_str(b, "slot", slot);
	jb_field_str(b, "from", from);
	jb_field_str(b, "to", to);
	jb_field_str(b, "device_id", device_id);
	line_end(ev);
}

static void count_reason(struct st_tally *t, const char *reason)
{
	struct st_reason_count *r;

	if (!reason || !reason[0])
		reason = "UNKNOWN";
	for (size_t i = 0; i < t->nreasons; i++) {
		if (strcmp(t->reasons[i].reason, reason) == 0) {
			t->reasons[i].count++;
			return;
		}
	}
	r = realloc(t->reasons, (t->nreasons + 1) * sizeof(*r));
	if (!r)
		return;
	t->reasons = r;
	snprintf(r[t->nreasons].reason, sizeof(r[t->nreasons].reason), "%s", reason);
	r[t->nreasons].count = 1;
	t->nreasons++;
}

static double round3(double v)
{
	return round(v * 1000.0) / 1000.0;
}

void st_events_outcome(struct st_events *ev, const struct st_outcome *o, uint64_t start,
		       uint64_t now)
{
	struct st_tally *t = &ev->tally;
	const char *kind = o->abandoned ? "\"abandoned\"" : o->pass ? "\"pass\"" : "\"fail\"";
	struct st_jbuf *b;
	int first = 1;

	if (o->abandoned) {
		t->abandoned++;
	} else {
		t->boards++;
		if (o->pass) {
			t->passed++;
			t->reused += o->reused != 0;
			for (int p = 0; p < ST_PHASE_COUNT; p++) {
				if (o->ms[p] >= 0) {
					t->phase_sum[p] += o->ms[p];
					t->phase_n[p]++;
				}
			}
		} else {
			t->failed++;
			count_reason(t, o->reason);
		}
		if (start && (!t->first_start || start < t->first_start))
			t->first_start = start;
		t->last_end = now;
	}
	if (!wanted(ev))
		return;
	b = line_begin(ev, kind, NULL);
	jb_field_str(b, "slot", o->slot);
	jb_field_str(b, "device_id", o->device_id);
	jb_field_str(b, "serial", o->serial);
	if (!o->pass || o->abandoned) {
		jb_field_str(b, "reason", o->reason ? o->reason : "UNKNOWN");
		jb_field_str(b, "error", o->error);
		jb_field_str(b, "state", o->state);
	} else {
		jb_key(b, "reused");
		jb_lit(b, o->reused ? "true" : "false");
	}
	jb_field_str(b, "profile", o->profile);
	jb_field_str(b, "hardware_id", o->hardware_id);
	jb_field_str(b, "sku", o->sku);
	jb_field_str(b, "sn", o->sn);
	if (o->row_id > 0)
		jb_field_int(b, "ledger_row", (long long)o->row_id);
	jb_key(b, "ms");
	st_jbuf_raw(b, "{", 1);
	for (int p = 0; p < ST_PHASE_COUNT; p++) {
		/* Not a number or infinite: jansson had no real to make of it. */
		if (o->ms[p] >= 0 && isfinite(o->ms[p])) {
			jb_key_at(b, first, phase_names[p]);
			first = 0;
			st_jbuf_real(b, round3(o->ms[p]));
		}
	}
	st_jbuf_raw(b, "}", 1);
	jb_field_int(b, "requests", (long long)o->requests);
	jb_field_int(b, "turns", (long long)o->turns);
	jb_field_int(b, "writes", (long long)o->writes);
	jb_field_int(b, "retransmits", (long long)o->retransmits);
	jb_field_int(b, "resyncs", (long long)o->resyncs);
	if (o->baud)
		jb_field_int(b, "baud", o->baud);
	jb_field_int(b, "tx_bytes", (long long)o->tx_bytes);
	jb_field_int(b, "rx_bytes", (long long)o->rx_bytes);
	jb_field_str(b, "console_log", o->console_log);
	line_end(ev);
}

const struct st_tally *st_events_tally(const struct st_events *ev)
{
	return &ev->tally;
}

double st_tally_boards_per_hour(const struct st_tally *t)
{
	double span;

	if (!t->boards || !t->first_start || t->last_end <= t->first_start)
		return 0;
	span = (double)(t->last_end - t->first_start) / 1e9;
	return (double)t->boards * 3600.0 / span;
}

long long st_tally_bph(const struct st_tally *t)
{
	return llround(st_tally_boards_per_hour(t));
}

void st_events_summary(struct st_events *ev, uint64_t run_start, uint64_t now,
		       const json_t *extra)
{
	const struct st_tally *t = &ev->tally;
	json_t *j, *by, *mean;
	const char *k;
	json_t *v;

	if (!wanted(ev))
		return;
	j = json_object();
	by = json_object();
	mean = json_object();
	if (!j || !by || !mean) {
		json_decref(j);
		json_decref(by);
		json_decref(mean);
		return;
	}
	json_object_set_new(j, "event", json_string("summary"));
	json_object_set_new(j, "boards", json_integer((json_int_t)t->boards));
	json_object_set_new(j, "passed", json_integer((json_int_t)t->passed));
	json_object_set_new(j, "failed", json_integer((json_int_t)t->failed));
	json_object_set_new(j, "abandoned", json_integer((json_int_t)t->abandoned));
	json_object_set_new(j, "reused", json_integer((json_int_t)t->reused));
	for (size_t i = 0; i < t->nreasons; i++)
		json_object_set_new(by, t->reasons[i].reason,
				    json_integer((json_int_t)t->reasons[i].count));
	json_object_set_new(j, "by_reason", by);
	json_object_set_new(j, "elapsed_s",
			    json_real(round3((double)(now - run_start) / 1e9)));
	json_object_set_new(j, "span_s",
			    json_real(t->first_start && t->last_end > t->first_start ?
					      round3((double)(t->last_end - t->first_start) / 1e9) :
					      0.0));
	json_object_set_new(j, "boards_per_hour", json_integer(st_tally_bph(t)));
	for (int p = 0; p < ST_PHASE_COUNT; p++) {
		if (t->phase_n[p])
			json_object_set_new(mean, phase_names[p],
					    json_real(round3(t->phase_sum[p] /
							     (double)t->phase_n[p])));
	}
	json_object_set_new(j, "mean_ms", mean);
	json_object_set_new(j, "events_dropped", json_integer((json_int_t)ev->dropped));
	if (extra) {
		json_object_foreach((json_t *)extra, k, v)
			json_object_set(j, k, v);
	}
	st_events_emit(ev, j);
}
