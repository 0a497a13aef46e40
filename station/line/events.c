#include "events.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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
	if (S_ISREG(sb.st_mode) || S_ISBLK(sb.st_mode) || !loop)
		return 0;
	rc = make_nonblocking(ev, err, errlen);
	if (rc < 0)
		return rc;
	ev->nonblock = 1;
	/* A device that cannot be polled (/dev/null) never makes a write wait either. */
	if (uv_poll_init(loop, &ev->poll, ev->fd) == 0) {
		ev->poll.data = ev;
		ev->poll_state = 1;
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

void st_events_detach(struct st_events *ev)
{
	if (!ev || (ev->poll_state != 1 && ev->poll_state != 2))
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

/* Keeps s for the reader: whole, or not at all when the buffer is full. */
static void keep(struct st_events *ev, const char *s, size_t n, int begun)
{
	if (!begun && ev->len + n > ev->max) {
		ev->dropped++;
		if (!ev->drop_told)
			st_warn("events %s: the reader is not keeping up; events are dropped while "
				"%zu bytes wait for it (the summary counts them)",
				stream_name(ev), ev->len);
		ev->drop_told = 1;
		return;
	}
	if (ev->head + ev->len + n > ev->cap) {
		if (ev->head) {
			memmove(ev->buf, ev->buf + ev->head, ev->len);
			ev->head = 0;
		}
		if (ev->len + n > ev->cap) {
			size_t cap = ev->cap ? ev->cap : 4096;
			char *b;

			while (cap < ev->len + n)
				cap *= 2;
			b = realloc(ev->buf, cap);
			if (!b) {
				/* A line begun and not finished would run into the next one. */
				give_up(ev, ENOMEM);
				return;
			}
			ev->buf = b;
			ev->cap = cap;
		}
	}
	memcpy(ev->buf + ev->head + ev->len, s, n);
	ev->len += n;
	watch(ev, 1);
}

/* One whole line out: to a regular file with blocking writes; otherwise what the reader
 * does not take at once waits for it. */
static void write_line(struct st_events *ev, const char *s, size_t n)
{
	int begun = 0;

	while (n > 0 && ev->len == 0) {
		ssize_t w = write(ev->fd, s, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && ev->nonblock && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (w <= 0) {
			give_up(ev, w < 0 ? errno : EIO);
			ev->dropped++;
			return;
		}
		begun = 1;
		s += w;
		n -= (size_t)w;
	}
	if (n > 0)
		keep(ev, s, n, begun);
}

void st_events_close(struct st_events *ev)
{
	uint64_t waited = 0, start;

	if (!ev)
		return;
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
	free(ev->tally.reasons);
	free(ev->path);
	free(ev->station);
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

void st_events_set_station(struct st_events *ev, const char *station)
{
	free(ev->station);
	ev->station = station ? strdup(station) : NULL;
}

/* "2024-05-01T12:00:00.123Z" */
static void timestamp(char *buf, size_t len)
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(buf, len, "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ", (unsigned)(tm.tm_year + 1900) % 10000u,
		 (unsigned)(tm.tm_mon + 1) % 100u, (unsigned)tm.tm_mday % 100u,
		 (unsigned)tm.tm_hour % 100u, (unsigned)tm.tm_min % 100u, (unsigned)tm.tm_sec % 100u,
		 (unsigned)(ts.tv_nsec / 1000000L) % 1000u);
}

void st_events_emit(struct st_events *ev, json_t *obj)
{
	char ts[40];
	char *line;
	size_t n;

	if (!obj)
		return;
	if (!wanted(ev)) {
		ev->dropped += ev->warned;
		json_decref(obj);
		return;
	}
	timestamp(ts, sizeof(ts));
	/* "ts" and "event" lead the line, the way people read it. */
	{
		json_t *o = json_object();
		const char *k;
		json_t *v;

		if (!o) {
			json_decref(obj);
			return;
		}
		json_object_set_new(o, "ts", json_string(ts));
		v = json_object_get(obj, "event");
		if (v)
			json_object_set(o, "event", v);
		if (ev->station)
			json_object_set_new(o, "station", json_string(ev->station));
		json_object_foreach(obj, k, v) {
			if (strcmp(k, "event") != 0)
				json_object_set(o, k, v);
		}
		json_decref(obj);
		obj = o;
	}
	line = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
	json_decref(obj);
	if (!line)
		return;
	n = strlen(line);
	/* One write per line: append the newline in place. */
	{
		char *l = realloc(line, n + 2);

		if (!l) {
			free(line);
			return;
		}
		line = l;
	}
	line[n++] = '\n';
	if (ev->fd >= 0 && !ev->warned)
		write_line(ev, line, n);
	else
		ev->dropped += ev->warned;
	if (ev->tap)
		ev->tap(ev->tap_arg, line, n - 1);
	free(line);
}

/* Strings that came from a board may be anything: jansson refuses invalid UTF-8, so those
 * are written with the offending bytes replaced. */
static json_t *jstr(const char *s)
{
	json_t *j;
	char *copy;

	if (!s)
		return json_null();
	j = json_string(s);
	if (j)
		return j;
	copy = strdup(s);
	if (!copy)
		return json_null();
	for (char *c = copy; *c; c++) {
		if ((unsigned char)*c >= 0x80 || (unsigned char)*c < 0x20)
			*c = '?';
	}
	j = json_string(copy);
	free(copy);
	return j ? j : json_null();
}

static void set_str(json_t *o, const char *key, const char *s)
{
	if (s && s[0])
		json_object_set_new(o, key, jstr(s));
}

void st_events_state(struct st_events *ev, const char *slot, const char *from, const char *to,
		     const char *device_id)
{
	json_t *o;

	if (!wanted(ev))
		return;
	o = json_object();
	if (!o)
		return;
	json_object_set_new(o, "event", json_string("state"));
	set_str(o, "slot", slot);
	set_str(o, "from", from);
	set_str(o, "to", to);
	set_str(o, "device_id", device_id);
	st_events_emit(ev, o);
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
	const char *kind = o->abandoned ? "abandoned" : o->pass ? "pass" : "fail";
	json_t *j, *ms;

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
	j = json_object();
	ms = json_object();
	if (!j || !ms) {
		json_decref(j);
		json_decref(ms);
		return;
	}
	json_object_set_new(j, "event", json_string(kind));
	set_str(j, "slot", o->slot);
	set_str(j, "device_id", o->device_id);
	set_str(j, "serial", o->serial);
	if (!o->pass || o->abandoned) {
		set_str(j, "reason", o->reason ? o->reason : "UNKNOWN");
		set_str(j, "error", o->error);
		set_str(j, "state", o->state);
	} else {
		json_object_set_new(j, "reused", json_boolean(o->reused));
	}
	set_str(j, "profile", o->profile);
	set_str(j, "hardware_id", o->hardware_id);
	set_str(j, "sku", o->sku);
	set_str(j, "sn", o->sn);
	if (o->row_id > 0)
		json_object_set_new(j, "ledger_row", json_integer(o->row_id));
	for (int p = 0; p < ST_PHASE_COUNT; p++) {
		if (o->ms[p] >= 0)
			json_object_set_new(ms, phase_names[p], json_real(round3(o->ms[p])));
	}
	json_object_set_new(j, "ms", ms);
	json_object_set_new(j, "retransmits", json_integer(o->retransmits));
	json_object_set_new(j, "resyncs", json_integer(o->resyncs));
	if (o->baud)
		json_object_set_new(j, "baud", json_integer(o->baud));
	json_object_set_new(j, "tx_bytes", json_integer((json_int_t)o->tx_bytes));
	json_object_set_new(j, "rx_bytes", json_integer((json_int_t)o->rx_bytes));
	set_str(j, "console_log", o->console_log);
	st_events_emit(ev, j);
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
