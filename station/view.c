#include "view.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "engine.h"
#include "err.h"

#define RED "\033[31m"
#define GREEN "\033[32m"
#define YELLOW "\033[33m"
#define DIM "\033[2m"
#define BOLD "\033[1m"
#define RESET "\033[0m"

struct st_view {
	uv_timer_t timer;
	const struct st_engine *e;
	char *buf;
	size_t len, cap;
	int closing;
};

/* Growable output buffer: one write(2) per frame, so the terminal never shows half of one. */
static void out(struct st_view *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void out(struct st_view *v, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(v->buf + v->len, v->cap - v->len, fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if ((size_t)n < v->cap - v->len) {
			v->len += (size_t)n;
			return;
		}
		{
			size_t cap = (v->cap + (size_t)n + 1) * 2;
			char *b = realloc(v->buf, cap);

			if (!b)
				return;
			v->buf = b;
			v->cap = cap;
		}
	}
}

/* Ends a screen line: clears what an earlier, longer frame left on it. */
static void eol(struct st_view *v)
{
	out(v, "\033[K\n");
}

static const char *short_state(const struct st_slot *s)
{
	switch (s->state) {
	case ST_SLOT_OFFLINE:
		return "off";
	case ST_SLOT_WAITING:
		return "wait";
	case ST_SLOT_HELLO:
		return "hello";
	case ST_SLOT_PROFILE:
		return "prof";
	case ST_SLOT_CSR:
		return "csr";
	case ST_SLOT_CHECKED:
		return "chkd";
	case ST_SLOT_QUEUED:
		return "queue";
	case ST_SLOT_SIGNED:
		return "write";
	case ST_SLOT_WRITTEN:
		return "commit";
	case ST_SLOT_COMMITTED:
		return "verify";
	case ST_SLOT_VERIFIED:
		return "done";
	case ST_SLOT_PASS:
		return "PASS";
	case ST_SLOT_FAILED:
		return "FAIL";
	case ST_SLOT_LEAVING:
		return s->last_pass > 0 ? "PASS" : s->last_pass == 0 ? "FAIL" : "left";
	case ST_SLOT_STOPPED:
		return s->last_pass > 0 ? "PASS" : s->last_pass == 0 ? "FAIL" : "stop";
	case ST_SLOT_NSTATES:
		break;
	}
	return "?";
}

static const char *color_of(const struct st_slot *s)
{
	int done = s->state == ST_SLOT_LEAVING || s->state == ST_SLOT_STOPPED;

	if (s->state == ST_SLOT_FAILED || (done && s->last_pass == 0))
		return RED;
	if (s->state == ST_SLOT_PASS || (done && s->last_pass > 0))
		return GREEN;
	if (s->state == ST_SLOT_QUEUED || (s->run && s->req_tries > 1))
		return YELLOW;
	if (s->state == ST_SLOT_OFFLINE || s->state == ST_SLOT_WAITING ||
	    s->state == ST_SLOT_STOPPED)
		return DIM;
	return "";
}

static void fmt_duration(char *buf, size_t len, double ms)
{
	double s = ms / 1000;

	if (s < 10)
		snprintf(buf, len, "%.1fs", s);
	else if (s < 600)
		snprintf(buf, len, "%.0fs", s);
	else if (s < 36000)
		snprintf(buf, len, "%.0fm", s / 60);
	else
		snprintf(buf, len, "%.0fh", s / 3600);
}

static void header(struct st_view *v, int cols)
{
	const struct st_engine *e = v->e;
	const struct st_tally *t = st_engine_tally(e);
	struct st_slot *const *slots;
	struct st_pool_stats ps;
	size_t n, busy = 0, waiting = 0, offline = 0, done = 0;
	uint64_t now = uv_hrtime();
	double up = (double)(now - st_engine_started(e)) / 1e9;

	slots = st_engine_slots(e, &n);
	for (size_t i = 0; i < n; i++) {
		enum st_slot_state st = slots[i]->state;

		if (st_slot_state_busy(st))
			busy++;
		else if (st == ST_SLOT_WAITING)
			waiting++;
		else if (st == ST_SLOT_LEAVING ||
			 (st == ST_SLOT_STOPPED && slots[i]->last_pass >= 0))
			done++;
		else
			offline++;
	}
	out(v, BOLD "station %s" RESET "  up %02d:%02d:%02d%s", st_engine_station(e),
	    (int)(up / 3600), (int)(up / 60) % 60, (int)up % 60,
	    st_engine_stopping(e) ? "  " YELLOW "stopping" RESET : "");
	eol(v);
	out(v, "slots %zu: %zu busy, %zu waiting, %zu finished, %zu offline", n, busy, waiting,
	    done, offline);
	eol(v);
	out(v, "boards %llu: " GREEN "%llu passed" RESET " (%llu again), %s%llu failed" RESET
	       ", %llu abandoned   " BOLD "%.0f boards/hour" RESET,
	    (unsigned long long)t->boards, (unsigned long long)t->passed,
	    (unsigned long long)t->reused, t->failed ? RED : "", (unsigned long long)t->failed,
	    (unsigned long long)t->abandoned, st_tally_boards_per_hour(t));
	eol(v);
	if (st_engine_pool_stats(e, &ps) == 0) {
		out(v, "signing: %u workers, %u in the pool, %llu signed, %llu batches (mean %.1f), "
		       "%llu commits",
		    ps.workers, ps.in_pool, (unsigned long long)ps.signed_,
		    (unsigned long long)ps.batches,
		    ps.batches ? (double)ps.batched / (double)ps.batches : 0.0,
		    (unsigned long long)ps.commits);
		if (ps.paused)
			out(v, "  " YELLOW "PAUSED: %.*s" RESET, cols > 60 ? cols - 60 : 20,
			    ps.pause_reason);
		eol(v);
	}
	if (t->nreasons) {
		size_t start = v->len;

		out(v, "failures:");
		for (size_t i = 0; i < t->nreasons; i++) {
			/* Keep to one line: the rest is in the summary and the events. */
			if ((int)(v->len - start) > cols - 24) {
				out(v, " ...");
				break;
			}
			out(v, " " RED "%s" RESET " %llu", t->reasons[i].reason,
			    (unsigned long long)t->reasons[i].count);
		}
		eol(v);
	}
}

/* One slot per line: name, state, device id, time in state, note or last error. */
static void slot_line(struct st_view *v, const struct st_slot *s, uint64_t now, int cols,
		      int namew)
{
	char t[16];
	const char *note = st_slot_note(s);
	int room;

	fmt_duration(t, sizeof(t), st_slot_ms_in_state(s, now));
	out(v, "%-*.*s %s%-6s" RESET " %-36.36s %6s ", namew, namew, s->name, color_of(s),
	    short_state(s), s->device_id[0] ? s->device_id : "-", t);
	room = cols - namew - 1 - 6 - 1 - 36 - 1 - 6 - 1;
	if (room > 4) {
		if (note[0])
			out(v, YELLOW "%.*s" RESET, room, note);
		else if (s->last_error[0])
			out(v, RED "%.*s" RESET, room, s->last_error);
	}
	eol(v);
}

/* A compact cell: name, state, the device id's first characters, time in state. */
static void slot_cell(struct st_view *v, const struct st_slot *s, uint64_t now, int w, int namew)
{
	char t[16];
	int devw = w - namew - 1 - 6 - 1 - 5 - 1;

	fmt_duration(t, sizeof(t), st_slot_ms_in_state(s, now));
	out(v, "%-*.*s %s%-6s" RESET, namew, namew, s->name, color_of(s), short_state(s));
	if (devw >= 4)
		out(v, " %-*.*s", devw, devw, s->device_id[0] ? s->device_id : "-");
	out(v, " %5s ", t);
}

static void draw(struct st_view *v)
{
	struct winsize ws;
	struct st_slot *const *slots;
	size_t n;
	int cols = 120, rows = 40, namew = 4, avail, percol, ncols, w;
	uint64_t now = uv_hrtime();

	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20 && ws.ws_row > 5) {
		cols = ws.ws_col;
		rows = ws.ws_row;
	}
	slots = st_engine_slots(v->e, &n);
	for (size_t i = 0; i < n; i++) {
		int l = (int)strlen(slots[i]->name);

		if (l > namew)
			namew = l;
	}
	if (namew > 16)
		namew = 16;
	v->len = 0;
	out(v, "\033[H");
	header(v, cols);
	eol(v);
	avail = rows - 7;
	if (avail < 1)
		avail = 1;
	if ((int)n <= avail && cols >= namew + 60) {
		for (size_t i = 0; i < n; i++)
			slot_line(v, slots[i], now, cols, namew);
	} else {
		/* Columns of cells, as wide as the device id allows, as many as it takes. */
		for (w = namew + 1 + 6 + 1 + 37 + 1 + 5 + 1; w > namew + 15; w -= 4) {
			ncols = cols / w;
			if (ncols < 1)
				ncols = 1;
			percol = (int)((n + (size_t)ncols - 1) / (size_t)ncols);
			if (percol <= avail)
				break;
		}
		ncols = cols / w;
		if (ncols < 1)
			ncols = 1;
		percol = (int)((n + (size_t)ncols - 1) / (size_t)ncols);
		if (percol > avail)
			percol = avail;
		for (int r = 0; r < percol; r++) {
			for (int c = 0; c < ncols; c++) {
				size_t i = (size_t)c * (size_t)percol + (size_t)r;

				if (i < n)
					slot_cell(v, slots[i], now, w, namew);
			}
			eol(v);
		}
		if ((size_t)percol * (size_t)ncols < n)
			out(v, DIM "... %zu more slots (enlarge the terminal)" RESET,
			    n - (size_t)percol * (size_t)ncols);
		eol(v);
	}
	out(v, "\033[J");
	(void)!write(STDOUT_FILENO, v->buf, v->len);
}

static void on_tick(uv_timer_t *t)
{
	draw(t->data);
}

int st_view_new(uv_loop_t *loop, const struct st_engine *e, struct st_view **outp)
{
	struct st_view *v;
	static const char start[] = "\033[2J\033[H\033[?25l";

	*outp = NULL;
	v = calloc(1, sizeof(*v));
	if (!v)
		return ST_E_NOMEM;
	v->e = e;
	v->cap = 16384;
	v->buf = malloc(v->cap);
	if (!v->buf) {
		free(v);
		return ST_E_NOMEM;
	}
	uv_timer_init(loop, &v->timer);
	v->timer.data = v;
	/* The view refreshes while there is something to show; it never keeps the loop alive. */
	uv_timer_start(&v->timer, on_tick, 0, 1000 / ST_VIEW_HZ);
	uv_unref((uv_handle_t *)&v->timer);
	(void)!write(STDOUT_FILENO, start, sizeof(start) - 1);
	*outp = v;
	return 0;
}

static void on_closed(uv_handle_t *h)
{
	struct st_view *v = h->data;

	free(v->buf);
	free(v);
}

void st_view_close(struct st_view *v)
{
	static const char end[] = "\033[?25h";

	if (!v || v->closing)
		return;
	v->closing = 1;
	draw(v);
	(void)!write(STDOUT_FILENO, end, sizeof(end) - 1);
	uv_close((uv_handle_t *)&v->timer, on_closed);
}
