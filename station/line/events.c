#include "events.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "log.h"

struct st_events {
	int fd;        /* -1: tallies only */
	int own_fd;    /* close fd at the end */
	int warned;    /* a write error was logged */
	char *path;
	char *station;
	struct st_tally tally;
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

int st_events_open(const char *path, int to_stdout, struct st_events **out, char *err,
		   size_t errlen)
{
	struct st_events *ev;

	*out = NULL;
	ev = calloc(1, sizeof(*ev));
	if (!ev)
		return st_errf(err, errlen, ST_E_NOMEM, "out of memory");
	ev->fd = -1;
	if (path) {
		ev->path = strdup(path);
		if (!ev->path) {
			free(ev);
			return st_errf(err, errlen, ST_E_NOMEM, "out of memory");
		}
		ev->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (ev->fd < 0) {
			int e = errno;

			free(ev->path);
			free(ev);
			return st_errf(err, errlen, ST_E_IO, "events file %s: %s", path, strerror(e));
		}
		ev->own_fd = 1;
	} else if (to_stdout) {
		ev->fd = STDOUT_FILENO;
	}
	*out = ev;
	return 0;
}

void st_events_close(struct st_events *ev)
{
	if (!ev)
		return;
	if (ev->own_fd)
		close(ev->fd);
	free(ev->tally.reasons);
	free(ev->path);
	free(ev->station);
	free(ev);
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

static void write_all(struct st_events *ev, const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = write(ev->fd, s, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			if (!ev->warned)
				st_warn("events %s: %s; further events are lost",
					ev->path ? ev->path : "stdout", strerror(errno));
			ev->warned = 1;
			return;
		}
		s += w;
		n -= (size_t)w;
	}
}

void st_events_emit(struct st_events *ev, json_t *obj)
{
	char ts[40];
	char *line;
	size_t n;

	if (!obj)
		return;
	if (ev->fd < 0 || ev->warned) {
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
	write_all(ev, line, n);
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

	if (ev->fd < 0)
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
	if (ev->fd < 0)
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

void st_events_summary(struct st_events *ev, uint64_t run_start, uint64_t now,
		       const json_t *extra)
{
	const struct st_tally *t = &ev->tally;
	json_t *j, *by, *mean;
	const char *k;
	json_t *v;

	if (ev->fd < 0)
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
	json_object_set_new(j, "boards_per_hour",
			    json_real(round(st_tally_boards_per_hour(t) * 10.0) / 10.0));
	for (int p = 0; p < ST_PHASE_COUNT; p++) {
		if (t->phase_n[p])
			json_object_set_new(mean, phase_names[p],
					    json_real(round3(t->phase_sum[p] /
							     (double)t->phase_n[p])));
	}
	json_object_set_new(j, "mean_ms", mean);
	if (extra) {
		json_object_foreach((json_t *)extra, k, v)
			json_object_set(j, k, v);
	}
	st_events_emit(ev, j);
}
