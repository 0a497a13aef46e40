#include "view.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "engine.h"
#include "crash.h"
#include "err.h"
#include "log.h"
#include "operator.h"

/* Warnings and errors kept to be written out again when the view closes. */
#define VIEW_KEEP 20
#define NAME_MAX_W 16 /* columns for a slot's name in lists */
#define SHORT_MAX_W 12 /* columns for a short name in the grid */
#define GROUP 10       /* glyphs per group in the dense grid */
#define STATE_W 9      /* columns of a state's word ("no answer") */

/* ---- Screen: lines of one frame -------------------------------------------------------- */

enum attr { A_NONE, A_BOLD, A_DIM, A_GREEN, A_RED, A_YELLOW, A_MAGENTA, A_ALERT, A_COUNT };

/* Each sets every attribute it needs from a reset, so that any may follow any. */
static const char *const sgr[A_COUNT] = {
	[A_NONE] = "\033[0m",	     [A_BOLD] = "\033[0;1m",	[A_DIM] = "\033[0;2m",
	[A_GREEN] = "\033[0;32m",    [A_RED] = "\033[0;1;31m",	[A_YELLOW] = "\033[0;33m",
	[A_MAGENTA] = "\033[0;1;35m", [A_ALERT] = "\033[0;1;37;41m",
};

struct vline {
	char *s; /* text and escapes, NUL-terminated */
	size_t len, cap;
	int width; /* columns */
	int attr;  /* in force at the end */
};

/* A slot listed under "attention", and why (most urgent first). */
struct att {
	const struct st_slot_info *s;
	enum st_attention why;
	double ms;
};

struct st_view_screen {
	int cols, rows, color;
	struct vline *lines;
	int nlines, nalloc;
	struct vline *cur; /* the line being laid out; NULL once the frame is full */
	int oom;

	/* Names, measured again when the number of slots changes (names never do). */
	size_t names_n;
	int namew;     /* the longest name, at most NAME_MAX_W */
	size_t prefix; /* bytes that every name starts with, not ending inside a number */
	int shortw;    /* the longest name without the prefix */

	struct att *att;
	size_t att_cap;
	const struct st_reason_count **reasons;
	size_t reasons_cap;
};

struct st_view_screen *st_view_screen_new(void)
{
	return calloc(1, sizeof(struct st_view_screen));
}

void st_view_screen_free(struct st_view_screen *sc)
{
	if (!sc)
		return;
	for (int i = 0; i < sc->nalloc; i++)
		free(sc->lines[i].s);
	free(sc->lines);
	free(sc->att);
	free(sc->reasons);
	free(sc);
}

const char *st_view_screen_line(const struct st_view_screen *sc, int i, int *width)
{
	if (i < 0 || i >= sc->nlines) {
		if (width)
			*width = 0;
		return "";
	}
	if (width)
		*width = sc->lines[i].width;
	return sc->lines[i].s ? sc->lines[i].s : "";
}

static int reserve(struct st_view_screen *sc, size_t more)
{
	struct vline *l = sc->cur;
	size_t cap;
	char *p;

	if (l->len + more + 1 <= l->cap)
		return 0;
	cap = (l->len + more + 1) * 2;
	if (cap < 256)
		cap = 256;
	p = realloc(l->s, cap);
	if (!p) {
		sc->oom = 1;
		return -1;
	}
	l->s = p;
	l->cap = cap;
	return 0;
}

/* Bytes that take no columns (escapes). */
static void raw(struct st_view_screen *sc, const char *s, size_t n)
{
	struct vline *l = sc->cur;

	if (!l || reserve(sc, n) < 0)
		return;
	memcpy(l->s + l->len, s, n);
	l->len += n;
	l->s[l->len] = 0;
}

static void set_attr(struct st_view_screen *sc, int a)
{
	if (!sc->cur || !sc->color || sc->cur->attr == a)
		return;
	raw(sc, sgr[a], strlen(sgr[a]));
	sc->cur->attr = a;
}

static int room(const struct st_view_screen *sc)
{
	return sc->cur ? sc->cols - sc->cur->width : 0;
}

/* Up to n bytes of s, cut at the line's width. Anything but printable ASCII shows as '?':
 * board strings and file names need not be text, and a byte of unknown width could push a
 * line past the edge. */
static void text_n(struct st_view_screen *sc, const char *s, size_t n)
{
	struct vline *l = sc->cur;
	size_t k = (size_t)(room(sc) > 0 ? room(sc) : 0);

	if (n < k)
		k = n;
	if (!k || reserve(sc, k) < 0)
		return;
	for (size_t i = 0; i < k; i++) {
		unsigned char c = (unsigned char)s[i];

		l->s[l->len + i] = c < 0x20 || c > 0x7e ? '?' : (char)c;
	}
	l->len += k;
	l->width += (int)k;
	l->s[l->len] = 0;
}

static void text(struct st_view_screen *sc, const char *s)
{
	text_n(sc, s, strlen(s));
}

static void textf(struct st_view_screen *sc, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void textf(struct st_view_screen *sc, const char *fmt, ...)
{
	char b[512];
	va_list ap;
	int n;

	if (room(sc) <= 0)
		return;
	va_start(ap, fmt);
	n = vsnprintf(b, sizeof(b), fmt, ap);
	va_end(ap);
	if (n > 0)
		text_n(sc, b, (size_t)n < sizeof(b) ? (size_t)n : sizeof(b) - 1);
}

static void pad(struct st_view_screen *sc, int n)
{
	static const char sp[] = "                                ";

	while (n > 0 && room(sc) > 0) {
		int k = n < (int)sizeof(sp) - 1 ? n : (int)sizeof(sp) - 1;

		text_n(sc, sp, (size_t)k);
		n -= k;
	}
}

/* s in exactly w columns (cut or padded; right-aligned when right). */
static void field(struct st_view_screen *sc, const char *s, int w, int right)
{
	size_t n = strlen(s);

	if (w <= 0)
		return;
	if (n > (size_t)w)
		n = (size_t)w;
	if (right)
		pad(sc, w - (int)n);
	text_n(sc, s, n);
	if (!right)
		pad(sc, w - (int)n);
}

static void line_end(struct st_view_screen *sc)
{
	if (sc->cur && sc->cur->attr != A_NONE)
		set_attr(sc, A_NONE);
}

/* Starts the next line; once the frame has rows lines, what follows is dropped. */
static void line_begin(struct st_view_screen *sc)
{
	struct vline *l;

	line_end(sc);
	sc->cur = NULL;
	if (sc->nlines >= sc->rows || sc->nlines >= sc->nalloc)
		return;
	l = &sc->lines[sc->nlines++];
	l->len = 0;
	l->width = 0;
	l->attr = A_NONE;
	sc->cur = l;
	if (reserve(sc, 0) == 0)
		l->s[0] = 0;
}

/* ---- Slots -------------------------------------------------------------------------- */

/* One character per slot in the grid; the legend says what each means. */
static char glyph(const struct st_slot_info *s, enum st_slot_kind k, int stuck)
{
	switch (k) {
	case ST_KIND_OFFLINE:
		return '-';
	case ST_KIND_WAITING:
		return '.';
	case ST_KIND_PASS:
		return '+';
	case ST_KIND_FAIL:
		return 'X';
	case ST_KIND_STOPPED:
		return '_';
	case ST_KIND_BUSY:
		break;
	}
	if (stuck)
		return '!';
	switch (s->state) {
	case ST_SLOT_HELLO:
	case ST_SLOT_PROFILE:
		return 'h';
	case ST_SLOT_BAUD_ASK:
	case ST_SLOT_BAUD_CONFIRM:
	case ST_SLOT_CSR:
	case ST_SLOT_CHECKED:
		return 'c';
	case ST_SLOT_QUEUED:
		return 'q';
	case ST_SLOT_SIGNED:
	case ST_SLOT_WRITTEN:
		return 'w';
	default:
		return 'v';
	}
}

static int kind_attr(enum st_slot_kind k, int stuck)
{
	switch (k) {
	case ST_KIND_PASS:
		return A_GREEN;
	case ST_KIND_FAIL:
		return A_RED;
	case ST_KIND_BUSY:
		return stuck ? A_MAGENTA : A_YELLOW;
	default:
		return A_DIM;
	}
}

/* "0.4s", "12s", "7m", "3h". */
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

static void fmt_hms(char *buf, size_t len, double secs)
{
	unsigned long t = secs > 0 ? (unsigned long)secs : 0;

	snprintf(buf, len, "%lu:%02lu:%02lu", t / 3600, t / 60 % 60, t % 60);
}

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static void measure_names(struct st_view_screen *sc, const struct st_slot_info *const *slots, size_t n)
{
	size_t prefix, minlen = (size_t)-1;
	int w = 4, sw = 1;

	if (n == sc->names_n)
		return;
	sc->names_n = n;
	prefix = n ? strlen(slots[0]->name) : 0;
	for (size_t i = 0; i < n; i++) {
		const char *name = slots[i]->name;
		size_t len = strlen(name), k = 0;

		if ((int)len > w)
			w = (int)len;
		if (len < minlen)
			minlen = len;
		while (k < prefix && name[k] == slots[0]->name[k])
			k++;
		prefix = k;
	}
	/* Keep a character of every name, and numbers whole: "board1" of board10..board19
	 * would leave "0".."9". */
	if (n < 2)
		prefix = 0;
	else if (prefix >= minlen)
		prefix = minlen ? minlen - 1 : 0;
	while (prefix > 0 && is_digit(slots[0]->name[prefix - 1]))
		prefix--;
	for (size_t i = 0; i < n; i++) {
		int len = (int)(strlen(slots[i]->name) - prefix);

		if (len > sw)
			sw = len;
	}
	sc->namew = w < NAME_MAX_W ? w : NAME_MAX_W;
	sc->prefix = prefix;
	sc->shortw = sw;
}

/* The slot's name without the common prefix; the last max characters when longer. */
static const char *short_name(const struct st_view_screen *sc, const struct st_slot_info *s, int max)
{
	const char *p = s->name + sc->prefix;
	size_t len = strlen(p);

	return len > (size_t)max ? p + len - (size_t)max : p;
}

static int att_cmp(const void *a, const void *b)
{
	const struct att *x = a, *y = b;

	if (x->why != y->why)
		return x->why < y->why ? -1 : 1;
	/* The longest stuck first; otherwise in slot order, so that the list stays put. */
	if (x->why == ST_ATT_STUCK && x->ms != y->ms)
		return x->ms > y->ms ? -1 : 1;
	return x->s->idx < y->s->idx ? -1 : x->s->idx > y->s->idx;
}

struct counts {
	size_t busy, waiting, finished, offline, queued;
	size_t failed, stuck, other; /* attention */
	size_t by_class[ST_ACTION_NCLASSES]; /* failed, by action */
	size_t natt;
};

/* Counts the slots and lists those that need attention, sorted. */
static int survey(struct st_view_screen *sc, const struct st_view_input *in, struct counts *c)
{
	int paused = in->pool && in->pool->paused;

	memset(c, 0, sizeof(*c));
	if (in->nslots > sc->att_cap) {
		struct att *a = realloc(sc->att, in->nslots * sizeof(*a));

		if (!a)
			return ST_E_NOMEM;
		sc->att = a;
		sc->att_cap = in->nslots;
	}
	for (size_t i = 0; i < in->nslots; i++) {
		const struct st_slot_info *s = in->slots[i];
		enum st_slot_kind k = st_slot_kind_of(s);
		double ms = st_slot_info_ms(s, in->now);
		struct att *a = &sc->att[c->natt];

		switch (k) {
		case ST_KIND_BUSY:
			c->busy++;
			c->queued += s->state == ST_SLOT_QUEUED;
			break;
		case ST_KIND_WAITING:
			c->waiting++;
			break;
		case ST_KIND_PASS:
		case ST_KIND_FAIL:
			c->finished++;
			break;
		default:
			c->offline++;
			break;
		}
		a->s = s;
		a->ms = ms;
		a->why = st_slot_attention(s, k, ms, paused);
		switch (a->why) {
		case ST_ATT_NONE:
			continue;
		case ST_ATT_FAILED:
			c->failed++;
			c->by_class[st_action_for(st_slot_reason(s))->cls]++;
			break;
		case ST_ATT_STUCK:
			c->stuck++;
			break;
		default:
			c->other++;
		}
		c->natt++;
	}
	if (c->natt > 1)
		qsort(sc->att, c->natt, sizeof(*sc->att), att_cmp);
	return 0;
}

/* ---- Frame parts -------------------------------------------------------------------- */

/* Item i of n in a list on one line, in attr, after a comma unless it is the first: when
 * there is no room for it and, unless it is the last, for ", +N more", writes "+N more"
 * instead and returns 1 (stop). */
static int list_item(struct st_view_screen *sc, size_t i, size_t n, const char *item, int w,
		     int attr)
{
	if (w + 1 > room(sc) || (i + 1 < n && w + 12 > room(sc))) {
		set_attr(sc, A_NONE);
		textf(sc, "%s +%zu more", i ? "," : "", n - i);
		return 1;
	}
	set_attr(sc, A_NONE);
	if (i)
		text(sc, ",");
	set_attr(sc, attr);
	text(sc, item);
	return 0;
}

static void header(struct st_view_screen *sc, const struct st_view_input *in,
		   const struct counts *c)
{
	const struct st_tally *t = in->tally;
	const struct st_pool_stats *ps = in->pool;
	char up[32], line[256];
	size_t nr = 0;
	int n;

	fmt_hms(up, sizeof(up), (double)(in->now - in->started) / 1e9);
	line_begin(sc);
	set_attr(sc, A_BOLD);
	textf(sc, "station %s", in->station ? in->station : "");
	set_attr(sc, A_NONE);
	/* In words when they fit, else in short ones. */
	n = snprintf(line, sizeof(line),
		     "  up %s  slots %zu: %zu busy, %zu waiting, %zu finished, %zu offline", up,
		     in->nslots, c->busy, c->waiting, c->finished, c->offline);
	if (n > room(sc) - (in->stopping ? 12 : 0))
		snprintf(line, sizeof(line), "  up %s  %zu slots: %zu busy %zu wait %zu done %zu off",
			 up, in->nslots, c->busy, c->waiting, c->finished, c->offline);
	text(sc, line);
	if (in->stopping) {
		text(sc, "  ");
		set_attr(sc, A_ALERT);
		text(sc, " STOPPING ");
	}

	line_begin(sc);
	textf(sc, "boards %llu: ", (unsigned long long)t->boards);
	set_attr(sc, A_GREEN);
	textf(sc, "%llu passed", (unsigned long long)t->passed);
	set_attr(sc, A_NONE);
	text(sc, ", ");
	set_attr(sc, t->failed ? A_RED : A_NONE);
	textf(sc, "%llu failed", (unsigned long long)t->failed);
	set_attr(sc, A_NONE);
	text(sc, "  ");
	set_attr(sc, A_BOLD);
	textf(sc, "%lld " ST_BPH_LABEL, st_tally_bph(t));
	set_attr(sc, A_NONE);
	if (t->abandoned)
		textf(sc, "  %llu abandoned", (unsigned long long)t->abandoned);
	if (t->reused)
		textf(sc, "  %llu delivered again", (unsigned long long)t->reused);

	line_begin(sc);
	if (!ps) {
		set_attr(sc, A_DIM);
		text(sc, "signing: closed");
	} else if (ps->paused) {
		char d[32];

		fmt_hms(d, sizeof(d),
			in->now > ps->paused_since ? (double)(in->now - ps->paused_since) / 1e9 : 0);
		/* A bar across the screen: every board waits, and the operator must see why. */
		set_attr(sc, A_ALERT);
		textf(sc, " SIGNING PAUSED %s, %zu boards wait for certificates (none fails for it): "
			  "%s",
		      d, c->queued, ps->pause_reason[0] ? ps->pause_reason : "HSM unavailable");
		pad(sc, room(sc));
	} else {
		textf(sc, "signing: %u workers, %u in the pool, %llu signed, %llu batches (mean %.1f)",
		      ps->workers, ps->in_pool, (unsigned long long)ps->signed_,
		      (unsigned long long)ps->batches,
		      ps->batches ? (double)ps->batched / (double)ps->batches : 0.0);
		if (ps->pauses)
			textf(sc, ", paused %llu time%s", (unsigned long long)ps->pauses,
			      ps->pauses == 1 ? "" : "s");
	}

	/* Failures by reason, the most frequent first, as many as fit. */
	line_begin(sc);
	if (t->nreasons > sc->reasons_cap) {
		const struct st_reason_count **r =
			realloc(sc->reasons, t->nreasons * sizeof(*r));

		if (r) {
			sc->reasons = r;
			sc->reasons_cap = t->nreasons;
		}
	}
	if (sc->reasons_cap >= t->nreasons) {
		nr = t->nreasons;
		for (size_t i = 0; i < nr; i++) {
			size_t k = i;

			while (k > 0 && sc->reasons[k - 1]->count < t->reasons[i].count) {
				sc->reasons[k] = sc->reasons[k - 1];
				k--;
			}
			sc->reasons[k] = &t->reasons[i];
		}
	}
	text(sc, "failed by reason:");
	if (!nr) {
		set_attr(sc, A_DIM);
		text(sc, " none");
	}
	for (size_t i = 0; i < nr; i++) {
		char item[80];

		n = snprintf(item, sizeof(item), " %s %llu", sc->reasons[i]->reason,
			     (unsigned long long)sc->reasons[i]->count);
		if (list_item(sc, i, nr, item, n, A_RED) != 0)
			break;
	}
}

/* The colour of each action class. */
static const int class_attr[ST_ACTION_NCLASSES] = {
	[ST_ACTION_SWAP] = A_RED,
	[ST_ACTION_ENGINEER] = A_MAGENTA,
	[ST_ACTION_RETRY] = A_YELLOW,
};

/* Columns a failure's cause needs: the reason in words and ": call engineer". */
#define CAUSE_W (ST_ACTION_WORDS_MAX + 15)

/* A failed slot's cause, the reason first, then its action ("CSR self-signature does not
 * verify: swap board"), then what the failure said besides, as far as the line has room. */
static void cause(struct st_view_screen *sc, const struct st_slot_info *s)
{
	const struct st_action *a = st_action_for(st_slot_reason(s));
	const char *detail = st_action_detail(s->last_error);

	set_attr(sc, A_RED);
	text(sc, a->words);
	set_attr(sc, A_NONE);
	text(sc, ": ");
	set_attr(sc, class_attr[a->cls]);
	text(sc, st_action_class_name(a->cls));
	if (detail[0] && room(sc) > 8) {
		set_attr(sc, A_DIM);
		text(sc, "  ");
		text(sc, detail);
	}
}

/* The production authorizations: units left of each, as many as fit, the ones closest to
 * running out first in the eye: yellow once few are left, red when none is. */
static void auth_line(struct st_view_screen *sc, const struct st_view_input *in)
{
	size_t n = st_auth_set_count(in->auths);

	if (!n)
		return;
	line_begin(sc);
	text(sc, "authorizations:");
	for (size_t i = 0; i < n; i++) {
		const struct st_auth *a = st_auth_set_get(in->auths, i);
		int64_t used = atomic_load(&a->used_seen), left = a->units - (used > 0 ? used : 0);
		char item[96];
		int w;

		if (used < 0)
			w = snprintf(item, sizeof(item), " %s ?/%lld left", a->lot,
				     (long long)a->units);
		else if (left <= 0)
			w = snprintf(item, sizeof(item), " %s USED UP (%lld)", a->lot,
				     (long long)a->units);
		else
			w = snprintf(item, sizeof(item), " %s %lld/%lld left", a->lot,
				     (long long)left, (long long)a->units);
		if (list_item(sc, i, n, item, w,
			      used < 0     ? A_DIM :
			      left <= 0    ? A_RED :
			      left <= st_auth_warn_below(a) ? A_YELLOW :
							      A_NONE) != 0)
			break;
	}
	set_attr(sc, A_NONE);
}

/* One line per slot: name, state, device id, time in state, note, cause or last error. */
static void table(struct st_view_screen *sc, const struct st_view_input *in)
{
	int namew = sc->namew, devw = 0, fixed;

	for (size_t i = 0; i < in->nslots; i++) {
		int l = (int)strlen(in->slots[i]->device_id);

		if (l > devw)
			devw = l;
	}
	if (devw < 9)
		devw = 9;
	/* The cause column keeps room for a failure's reason and action; the device id gives
	 * way, down to 8, then goes. */
	fixed = namew + 1 + STATE_W + 1 + 1 + 5 + 1;
	if (sc->cols - fixed - devw < CAUSE_W)
		devw = sc->cols - fixed - CAUSE_W;
	if (devw < 8)
		devw = 0;

	line_begin(sc);
	set_attr(sc, A_DIM);
	field(sc, "SLOT", namew, 0);
	text(sc, " ");
	field(sc, "STATE", STATE_W, 0);
	text(sc, " ");
	if (devw) {
		field(sc, "DEVICE ID", devw, 0);
		text(sc, " ");
	}
	field(sc, "TIME", 5, 1);
	text(sc, " CAUSE");
	for (size_t i = 0; i < in->nslots; i++) {
		const struct st_slot_info *s = in->slots[i];
		enum st_slot_kind k = st_slot_kind_of(s);
		double ms = st_slot_info_ms(s, in->now);
		int stuck = st_slot_is_stuck(s, k, ms, in->pool && in->pool->paused);
		const char *note = s->note;
		char t[16];

		line_begin(sc);
		if (!sc->cur)
			break;
		fmt_duration(t, sizeof(t), ms);
		field(sc, s->name, namew, 0);
		text(sc, " ");
		set_attr(sc, kind_attr(k, stuck));
		field(sc, st_slot_word(s, ms), STATE_W, 0);
		set_attr(sc, A_NONE);
		text(sc, " ");
		if (devw) {
			field(sc, s->device_id[0] ? s->device_id : "-", devw, 0);
			text(sc, " ");
		}
		if (stuck)
			set_attr(sc, A_MAGENTA);
		field(sc, t, 5, 1);
		set_attr(sc, A_NONE);
		text(sc, " ");
		if (note[0] && (k == ST_KIND_BUSY || k == ST_KIND_WAITING)) {
			set_attr(sc, A_YELLOW);
			text(sc, note);
		} else if (k == ST_KIND_FAIL) {
			cause(sc, s);
		} else if (s->last_error[0]) {
			text(sc, s->last_error);
		}
	}
}

/* What the glyphs mean, and the prefix the short names leave out. */
static void legend(struct st_view_screen *sc, const struct st_view_input *in)
{
	static const struct {
		char g;
		int attr;
		const char *what;
	} items[] = {
		{ '+', A_GREEN, "pass" },    { 'X', A_RED, "fail" },
		{ 'h', A_YELLOW, "hello" },  { 'c', A_YELLOW, "csr" },
		{ 'q', A_YELLOW, "queued" }, { 'w', A_YELLOW, "write" },
		{ 'v', A_YELLOW, "verify" }, { '!', A_MAGENTA, "stuck" },
		{ '.', A_DIM, "empty" },     { '-', A_DIM, "offline" },
	};

	line_begin(sc);
	set_attr(sc, A_BOLD);
	if (sc->prefix)
		textf(sc, "slots %.*s*", (int)sc->prefix, in->slots[0]->name);
	else
		text(sc, "slots");
	set_attr(sc, A_NONE);
	text(sc, ":");
	for (size_t i = 0; i < sizeof(items) / sizeof(items[0]); i++) {
		if (room(sc) < 3 + (int)strlen(items[i].what))
			break;
		text(sc, " ");
		set_attr(sc, items[i].attr);
		textf(sc, "%c", items[i].g);
		set_attr(sc, A_NONE);
		textf(sc, " %s", items[i].what);
	}
}

static void cell_glyph(struct st_view_screen *sc, const struct st_view_input *in, size_t i,
		       int with_name, int sw)
{
	const struct st_slot_info *s = in->slots[i];
	enum st_slot_kind k = st_slot_kind_of(s);
	int stuck = st_slot_is_stuck(s, k, st_slot_info_ms(s, in->now),
				     in->pool && in->pool->paused);
	char g = glyph(s, k, stuck);

	set_attr(sc, kind_attr(k, stuck));
	if (with_name)
		field(sc, short_name(sc, s, sw), sw, 1);
	text_n(sc, &g, 1);
}

/* Every slot as its short name and glyph, row by row. */
static void grid_names(struct st_view_screen *sc, const struct st_view_input *in, int per_row)
{
	for (size_t i = 0; i < in->nslots; i++) {
		if (i % (size_t)per_row == 0)
			line_begin(sc);
		else
			text(sc, " ");
		cell_glyph(sc, in, i, 1, sc->shortw);
	}
}

/* Every slot as a glyph, in groups of ten after the short name of the row's first slot. */
static void grid_dense(struct st_view_screen *sc, const struct st_view_input *in, int labw,
		       int per_row, int grouped, int nrows, int ruler)
{
	size_t shown = (size_t)nrows * (size_t)per_row;

	if (shown > in->nslots)
		shown = in->nslots;
	else if (shown < in->nslots && nrows > 0)
		shown = (size_t)(nrows - 1) * (size_t)per_row; /* the last row says how many more */
	if (ruler) {
		line_begin(sc);
		set_attr(sc, A_DIM);
		pad(sc, labw + 1);
		for (int g = 0; g < per_row; g += GROUP) {
			char off[16];

			snprintf(off, sizeof(off), "+%d", g);
			field(sc, off, grouped ? GROUP + 1 : GROUP, 0);
		}
	}
	for (size_t i = 0; i < shown; i++) {
		size_t col = i % (size_t)per_row;

		if (col == 0) {
			line_begin(sc);
			set_attr(sc, A_DIM);
			field(sc, short_name(sc, in->slots[i], labw), labw, 1);
			text(sc, " ");
		} else if (grouped && col % GROUP == 0) {
			text(sc, " ");
		}
		cell_glyph(sc, in, i, 0, 0);
	}
	if (shown < in->nslots) {
		line_begin(sc);
		set_attr(sc, A_DIM);
		textf(sc, "... %zu more slots: enlarge the terminal", in->nslots - shown);
	}
}

/* The slots that need the operator, most urgent first, as many as lines allows. */
static void attention(struct st_view_screen *sc, const struct counts *c, int lines)
{
	int namew = sc->namew, devw = 0, shown;

	if (lines <= 0)
		return;
	line_begin(sc);
	set_attr(sc, A_BOLD);
	text(sc, "attention:");
	if (!c->natt) {
		set_attr(sc, A_GREEN);
		text(sc, " none");
		return;
	}
	if (c->failed) {
		set_attr(sc, A_RED);
		textf(sc, " %zu failed", c->failed);
	}
	if (c->stuck) {
		set_attr(sc, A_MAGENTA);
		textf(sc, "%s %zu stuck", c->failed ? "," : "", c->stuck);
	}
	if (c->other) {
		set_attr(sc, A_YELLOW);
		textf(sc, "%s %zu with problems", c->failed || c->stuck ? "," : "", c->other);
	}
	set_attr(sc, A_NONE);
	if (c->failed) {
		const char *sep = " (";

		for (int k = 0; k < ST_ACTION_NCLASSES; k++) {
			if (!c->by_class[k])
				continue;
			textf(sc, "%s%zu ", sep, c->by_class[k]);
			set_attr(sc, class_attr[k]);
			text(sc, st_action_class_name((enum st_action_class)k));
			set_attr(sc, A_NONE);
			sep = ", ";
		}
		text(sc, ")");
	}
	shown = lines - 1;
	if ((size_t)shown > c->natt)
		shown = (int)c->natt;
	else if ((size_t)shown < c->natt && shown > 0)
		shown--; /* the last line says how many more */
	for (int i = 0; i < shown; i++) {
		int l = (int)strlen(sc->att[i].s->device_id);

		if (l > devw)
			devw = l;
	}
	/* The reason matters most; the device id gets what a wide terminal can spare. */
	if (devw > sc->cols / 5 - 8)
		devw = sc->cols / 5 - 8;
	if (devw < 8)
		devw = 8;
	for (int i = 0; i < shown; i++) {
		const struct att *a = &sc->att[i];
		const struct st_slot_info *s = a->s;
		const char *word = st_slot_word(s, a->ms);
		char t[16];

		fmt_duration(t, sizeof(t), a->ms);
		line_begin(sc);
		field(sc, s->name, namew, 0);
		text(sc, " ");
		switch (a->why) {
		case ST_ATT_FAILED:
			set_attr(sc, A_RED);
			field(sc, "FAIL", 5, 0);
			break;
		case ST_ATT_STUCK:
			set_attr(sc, A_MAGENTA);
			field(sc, "STUCK", 5, 0);
			break;
		default:
			set_attr(sc, A_YELLOW);
			field(sc, a->why == ST_ATT_NOTE ? "BUSY" : "CHECK", 5, 0);
			break;
		}
		set_attr(sc, A_NONE);
		text(sc, " ");
		field(sc, s->device_id[0] ? s->device_id : "-", devw, 0);
		text(sc, " ");
		field(sc, t, 5, 1);
		text(sc, " ");
		switch (a->why) {
		case ST_ATT_FAILED:
			cause(sc, s);
			break;
		case ST_ATT_STUCK:
			textf(sc, "in %s for %s", word, t);
			if (s->note[0])
				textf(sc, " (%s)", s->note);
			break;
		case ST_ATT_NOTE:
			textf(sc, "in %s: %s", word, s->note);
			break;
		default:
			text(sc, s->last_error);
			break;
		}
	}
	if ((size_t)shown < c->natt && shown < lines) {
		line_begin(sc);
		set_attr(sc, A_DIM);
		textf(sc, "... %zu more need attention", c->natt - (size_t)shown);
	}
}

/* The last log lines, newest at the bottom. */
static void events(struct st_view_screen *sc, const struct st_view_input *in, int lines)
{
	size_t n;

	if (lines <= 0)
		return;
	if (lines >= 2) {
		line_begin(sc);
		set_attr(sc, A_DIM);
		text(sc, "recent:");
		lines--;
	}
	n = in->nevents < (size_t)lines ? in->nevents : (size_t)lines;
	for (size_t i = in->nevents - n; i < in->nevents; i++) {
		const struct st_view_event *ev = &in->events[i];

		line_begin(sc);
		set_attr(sc, A_DIM);
		text(sc, ev->hms);
		set_attr(sc, ev->level <= ST_LOG_ERR ? A_RED :
			     ev->level == ST_LOG_WARN ? A_YELLOW :
			     ev->level >= ST_LOG_DEBUG ? A_DIM :
							 A_NONE);
		text(sc, " ");
		text(sc, ev->text);
	}
}

int st_view_screen_draw(struct st_view_screen *sc, const struct st_view_input *in, int cols,
			int rows, int color)
{
	struct counts c;
	int avail, n = (int)in->nslots;

	if (cols < 1)
		cols = 1;
	if (rows < 1)
		rows = 1;
	if (rows > sc->nalloc) {
		struct vline *l = realloc(sc->lines, (size_t)rows * sizeof(*l));

		if (!l)
			return ST_E_NOMEM;
		memset(l + sc->nalloc, 0, (size_t)(rows - sc->nalloc) * sizeof(*l));
		sc->lines = l;
		sc->nalloc = rows;
	}
	sc->cols = cols;
	sc->rows = rows;
	sc->color = color;
	sc->nlines = 0;
	sc->cur = NULL;
	sc->oom = 0;
	measure_names(sc, in->slots, in->nslots);
	if (survey(sc, in, &c) < 0)
		return ST_E_NOMEM;

	header(sc, in, &c);
	auth_line(sc, in);
	avail = rows - sc->nlines;
	if (1 + n + 2 <= avail) {
		/* A line per slot, and the log below. */
		table(sc, in);
		events(sc, in, rows - sc->nlines);
	} else {
		/* The layout is chosen for the terminal and the slots alone, with room kept for
		 * three slots needing attention: it does not change as boards fail. */
		int att_min = c.natt ? 1 + (c.natt < 3 ? (int)c.natt : 3) : 1;
		int grid_max = avail - 1 - 4 - 2, sw = sc->shortw, rest, att_lines;
		int per_row = (cols + 1) / (sw + 2);

		if (grid_max < 1)
			grid_max = 1;
		legend(sc, in);
		if (sw <= SHORT_MAX_W && per_row > 0 && (n + per_row - 1) / per_row <= grid_max) {
			grid_names(sc, in, per_row);
		} else {
			int labw = sw < SHORT_MAX_W ? sw : SHORT_MAX_W, area, groups, nrows, ruler;
			int grouped = 1;

			if (labw > cols / 4)
				labw = cols / 4;
			area = cols - labw - 1;
			groups = (area + 1) / (GROUP + 1);
			per_row = groups * GROUP;
			if (per_row < 1 || (n + per_row - 1) / per_row > grid_max) {
				/* Without the gaps between groups, if that makes them fit. */
				int flat = area > GROUP ? area / GROUP * GROUP : area;

				if (flat > per_row) {
					per_row = flat;
					grouped = 0;
				}
			}
			if (per_row < 1)
				per_row = 1;
			nrows = (n + per_row - 1) / per_row;
			ruler = nrows + 1 <= grid_max && per_row >= GROUP;
			if (nrows > grid_max)
				nrows = grid_max;
			grid_dense(sc, in, labw, per_row, grouped, nrows, ruler);
		}
		rest = rows - sc->nlines;
		att_lines = c.natt ? 1 + (int)c.natt : 1;
		if (att_lines > rest - 2)
			att_lines = rest - 2 > att_min ? rest - 2 : att_min;
		if (att_lines > rest)
			att_lines = rest;
		attention(sc, &c, att_lines);
		events(sc, in, rows - sc->nlines);
	}
	line_end(sc);
	sc->cur = NULL;
	return sc->oom ? ST_E_NOMEM : sc->nlines;
}

/* ---- The terminal ------------------------------------------------------------------- */

struct st_view {
	uv_loop_t *loop;
	st_view_input_fn input; /* what each frame shows */
	void *input_arg;
	struct st_view_screen *sc;
	uv_timer_t timer;
	uv_poll_t poll; /* the terminal takes bytes again (after EAGAIN) */
	uv_signal_t winch, tstp, cont;
	int handles;    /* not yet closed */
	int fd;         /* where frames go */
	int own_fd;     /* the terminal opened again here, non-blocking: polled, closed */
	int have_poll;  /* poll was initialised */
	int polling;
	int color;
	int closing;
	int full;       /* the next frame clears the screen and writes every line */
	int dead;       /* the terminal is gone */
	int suspended;  /* Ctrl-Z: the shell has the screen until SIGCONT */
	int cols, rows;
	uint64_t last_draw; /* uv_now() */

	/* One frame's bytes; a frame is skipped while the previous one is being written. */
	char *out;
	size_t out_len, out_off, out_cap;
	/* The lines on the screen now (as written), to write only those that change. */
	char **shown;
	size_t *shown_len;
	int nshown, shown_cap;

	/* Log lines, from any thread. */
	uv_mutex_t lock;
	int took; /* the sink keeps lines off stderr (the same terminal) */
	struct st_view_event ring[ST_VIEW_EVENTS];
	size_t ring_head, ring_n;
	uint64_t ring_total;
	struct st_view_event kept[VIEW_KEEP]; /* warnings and errors, written again at close */
	size_t kept_head, kept_n;
	uint64_t kept_total;
	/* Loop thread: the ring as of the last frame. */
	struct st_view_event snap[ST_VIEW_EVENTS];
	size_t nsnap;
	uint64_t snap_total;

	/* What the view costs, for the debug line at close. */
	uint64_t frames, skipped, draw_ns, bytes;
};

/* The alternate screen starts blank; the first frame writes every line and erases below.
 * Never "clear screen" (ED 2): some terminals (tmux's scroll-on-clear) keep what it erased
 * as history, which then shows on the normal screen and in its scrollback. */
static const char enter_seq[] = "\033[?1049h\033[?25l";
/* Back to the normal screen with the cursor shown and no colour left on. The alternate
 * screen is blanked first, with the cursor home: a terminal that reflows it to the normal
 * screen's size on the way out (tmux, after a resize) would otherwise push some of its lines
 * into the normal screen's history; without an alternate screen, the summary then starts
 * on a clean screen. */
static const char leave_seq[] = "\033[0m\033[H\033[J\033[?25h\033[?1049l";

/* The terminal to give back on a crash (a hook of crash.h) or at exit; neither can be
 * given the view. */
static volatile sig_atomic_t crash_fd = -1;
static int crash_hook = -1;
static int atexit_done;

static void give_back_terminal(void)
{
	int fd = crash_fd;

	crash_fd = -1;
	if (fd >= 0)
		(void)!write(fd, leave_seq, sizeof(leave_seq) - 1);
}

static void on_crash(void *arg)
{
	(void)arg;
	give_back_terminal();
}

static void crash_guard(int fd)
{
	if (fd < 0) {
		crash_fd = -1;
		st_crash_hook_clear(crash_hook);
		crash_hook = -1;
		return;
	}
	if (crash_hook < 0)
		crash_hook = st_crash_hook_set(on_crash, NULL);
	if (!atexit_done && atexit(give_back_terminal) == 0)
		atexit_done = 1;
	crash_fd = fd;
}

int st_view_usable(int fd)
{
	const char *term = getenv("TERM");

	return isatty(fd) && term && term[0] && strcmp(term, "dumb") != 0;
}

static int color_wanted(void)
{
	const char *term = getenv("TERM"), *no = getenv("NO_COLOR");

	return term && term[0] && strcmp(term, "dumb") != 0 && !(no && no[0]);
}

static void on_writable(uv_poll_t *p, int status, int events);

/* Writes what is left of the frame; the rest waits for the terminal. */
static void flush_out(struct st_view *v)
{
	while (v->out_off < v->out_len) {
		ssize_t n = write(v->fd, v->out + v->out_off, v->out_len - v->out_off);

		if (n > 0) {
			v->out_off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && v->own_fd &&
		    !v->closing) {
			if (!v->polling && uv_poll_start(&v->poll, UV_WRITABLE, on_writable) == 0)
				v->polling = 1;
			if (v->polling)
				return;
		}
		/* The terminal hung up (or will not take bytes at all): draw no more. */
		v->dead = 1;
		break;
	}
	v->out_off = v->out_len = 0;
	if (v->polling) {
		uv_poll_stop(&v->poll);
		v->polling = 0;
	}
}

static void on_writable(uv_poll_t *p, int status, int events)
{
	struct st_view *v = p->data;

	(void)status;
	(void)events;
	flush_out(v);
}

static void out_add(struct st_view *v, const char *s, size_t n)
{
	if (v->out_len + n > v->out_cap) {
		size_t cap = (v->out_len + n) * 2;
		char *b = realloc(v->out, cap);

		if (!b)
			return;
		v->out = b;
		v->out_cap = cap;
	}
	memcpy(v->out + v->out_len, s, n);
	v->out_len += n;
}

static void out_goto(struct st_view *v, int row)
{
	char b[24];
	int n = snprintf(b, sizeof(b), "\033[%d;1H", row + 1);

	out_add(v, b, (size_t)n);
}

static void term_size(struct st_view *v)
{
	struct winsize ws;
	int cols = 80, rows = 24;

	if (ioctl(v->fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 0) {
		cols = ws.ws_col;
		rows = ws.ws_row;
	} else {
		const char *c = getenv("COLUMNS"), *l = getenv("LINES");

		if (c && atoi(c) > 0)
			cols = atoi(c);
		if (l && atoi(l) > 0)
			rows = atoi(l);
	}
	if (cols != v->cols || rows != v->rows)
		v->full = 1;
	v->cols = cols;
	v->rows = rows;
}

/* Writes the lines of the new frame that differ from those on the screen. */
static void emit(struct st_view *v, int n)
{
	if (n > v->shown_cap) {
		char **s = realloc(v->shown, (size_t)n * sizeof(*s));
		size_t *l;

		if (!s)
			return;
		v->shown = s;
		l = realloc(v->shown_len, (size_t)n * sizeof(*l));
		if (!l)
			return;
		v->shown_len = l;
		for (int i = v->shown_cap; i < n; i++) {
			v->shown[i] = NULL;
			v->shown_len[i] = 0;
		}
		v->shown_cap = n;
	}
	v->out_len = v->out_off = 0;
	for (int i = 0; i < n; i++) {
		int w;
		const char *line = st_view_screen_line(v->sc, i, &w);
		size_t len = strlen(line);
		char *copy;

		if (!v->full && i < v->nshown && v->shown[i] && v->shown_len[i] == len &&
		    memcmp(v->shown[i], line, len) == 0)
			continue;
		out_goto(v, i);
		out_add(v, line, len);
		/* A full line needs no erasing; erasing there would take its last character
		 * (the cursor waits on it to wrap). */
		if (w < v->cols)
			out_add(v, "\033[K", 3);
		copy = realloc(v->shown[i], len + 1);
		if (!copy) {
			free(v->shown[i]);
			v->shown[i] = NULL;
			continue;
		}
		memcpy(copy, line, len + 1);
		v->shown[i] = copy;
		v->shown_len[i] = len;
	}
	if (v->full || v->nshown > n) {
		out_goto(v, n);
		out_add(v, "\033[J", 3);
	}
	v->nshown = n;
	v->full = 0;
	v->bytes += v->out_len;
	flush_out(v);
}

/* The log lines since the last frame, for the bottom of the view. */
static void snapshot_events(struct st_view *v)
{
	uv_mutex_lock(&v->lock);
	if (v->ring_total != v->snap_total) {
		for (size_t i = 0; i < v->ring_n; i++)
			v->snap[i] = v->ring[(v->ring_head + i) % ST_VIEW_EVENTS];
		v->nsnap = v->ring_n;
		v->snap_total = v->ring_total;
	}
	uv_mutex_unlock(&v->lock);
}

static void draw(struct st_view *v)
{
	struct st_view_input in;
	uint64_t t0 = uv_hrtime();
	int n;

	if (v->dead || v->closing || v->suspended)
		return;
	if (v->out_off < v->out_len) {
		v->skipped++;
		return;
	}
	term_size(v);
	snapshot_events(v);
	memset(&in, 0, sizeof(in));
	v->input(&in, v->input_arg);
	in.now = t0;
	in.events = v->snap;
	in.nevents = v->nsnap;
	n = st_view_screen_draw(v->sc, &in, v->cols, v->rows, v->color);
	if (n < 0)
		return;
	emit(v, n);
	v->frames++;
	v->draw_ns += uv_hrtime() - t0;
	v->last_draw = uv_now(v->loop);
}

static void on_tick(uv_timer_t *t)
{
	draw(t->data);
}

/* Writes s after whatever is still being written; with wait, before returning. */
static void write_now(struct st_view *v, const char *s, size_t n, int wait)
{
	int fl = v->own_fd && wait ? fcntl(v->fd, F_GETFL) : -1;

	if (fl >= 0)
		fcntl(v->fd, F_SETFL, fl & ~O_NONBLOCK);
	out_add(v, s, n);
	if (!v->polling || fl >= 0)
		flush_out(v);
	if (fl >= 0)
		fcntl(v->fd, F_SETFL, fl);
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct st_view *v = h->data;

	if (v->closing)
		return;
	if (signum == SIGWINCH) {
		/* Now, unless a frame went out less than a period ago: resizing sends many. */
		v->full = 1;
		if (uv_now(v->loop) - v->last_draw >= 1000 / ST_VIEW_HZ)
			draw(v);
	} else if (signum == SIGTSTP) {
		/* Ctrl-Z: the shell gets its screen back while the station is stopped. */
		v->suspended = 1;
		write_now(v, leave_seq, sizeof(leave_seq) - 1, 1);
		raise(SIGSTOP);
	} else if (signum == SIGCONT) {
		/* A timer may run before this callback after the stop: it draws nothing while
		 * suspended, so no frame lands on the shell's screen. */
		v->suspended = 0;
		write_now(v, enter_seq, sizeof(enter_seq) - 1, 0);
		v->full = 1;
		draw(v);
	}
}

/* Log lines while the view is on: kept for its bottom lines (and warnings and errors to be
 * written out again at close), and kept off the terminal. Any thread. */
static int sink(void *arg, enum st_log_level level, const char *msg)
{
	struct st_view *v = arg;
	struct st_view_event ev;
	time_t now = time(NULL);
	struct tm tm;
	int took;

	ev.level = (int)level;
	if (localtime_r(&now, &tm))
		strftime(ev.hms, sizeof(ev.hms), "%H:%M:%S", &tm);
	else
		snprintf(ev.hms, sizeof(ev.hms), "--:--:--");
	snprintf(ev.text, sizeof(ev.text), "%s", msg);
	uv_mutex_lock(&v->lock);
	if (v->ring_n == ST_VIEW_EVENTS) {
		v->ring[v->ring_head] = ev;
		v->ring_head = (v->ring_head + 1) % ST_VIEW_EVENTS;
	} else {
		v->ring[(v->ring_head + v->ring_n++) % ST_VIEW_EVENTS] = ev;
	}
	v->ring_total++;
	if (v->took && level <= ST_LOG_WARN) {
		if (v->kept_n == VIEW_KEEP) {
			v->kept[v->kept_head] = ev;
			v->kept_head = (v->kept_head + 1) % VIEW_KEEP;
		} else {
			v->kept[(v->kept_head + v->kept_n++) % VIEW_KEEP] = ev;
		}
		v->kept_total++;
	}
	took = v->took;
	uv_mutex_unlock(&v->lock);
	return took;
}

/* Whether stderr shows on the same terminal as fd. */
static int same_terminal(int fd)
{
	struct stat a, b;

	return isatty(STDERR_FILENO) && fstat(fd, &a) == 0 && fstat(STDERR_FILENO, &b) == 0 &&
	       a.st_rdev == b.st_rdev;
}

/* The terminal on stdout, opened again so that it can be non-blocking without changing
 * stdout's own mode (which the shell shares); stdout itself when that fails. */
static void open_terminal(struct st_view *v)
{
	char path[256];
	int fd;

	v->fd = STDOUT_FILENO;
	v->own_fd = 0;
	if (!isatty(STDOUT_FILENO) || ttyname_r(STDOUT_FILENO, path, sizeof(path)) != 0)
		return;
	fd = open(path, O_WRONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return;
	if (!isatty(fd)) {
		close(fd);
		return;
	}
	v->fd = fd;
	v->own_fd = 1;
}

int st_view_new(uv_loop_t *loop, st_view_input_fn input, void *arg, struct st_view **outp)
{
	struct st_view *v;

	*outp = NULL;
	v = calloc(1, sizeof(*v));
	if (!v)
		return ST_E_NOMEM;
	v->sc = st_view_screen_new();
	if (!v->sc || uv_mutex_init(&v->lock) != 0) {
		st_view_screen_free(v->sc);
		free(v);
		return ST_E_NOMEM;
	}
	v->loop = loop;
	v->input = input;
	v->input_arg = arg;
	v->color = color_wanted();
	v->full = 1;
	open_terminal(v);
	v->took = same_terminal(v->fd);

	uv_timer_init(loop, &v->timer);
	v->timer.data = v;
	v->handles++;
	if (v->own_fd && uv_poll_init(loop, &v->poll, v->fd) == 0) {
		v->poll.data = v;
		uv_unref((uv_handle_t *)&v->poll);
		v->have_poll = 1;
		v->handles++;
	} else if (v->own_fd) {
		/* Without a poll handle, write blocking. */
		fcntl(v->fd, F_SETFL, fcntl(v->fd, F_GETFL) & ~O_NONBLOCK);
		v->own_fd = 0;
		v->took = same_terminal(v->fd);
	}
	uv_signal_init(loop, &v->winch);
	uv_signal_init(loop, &v->tstp);
	uv_signal_init(loop, &v->cont);
	v->handles += 3;
	v->winch.data = v->tstp.data = v->cont.data = v;
	uv_signal_start(&v->winch, on_signal, SIGWINCH);
	uv_signal_start(&v->tstp, on_signal, SIGTSTP);
	uv_signal_start(&v->cont, on_signal, SIGCONT);
	/* The view refreshes while there is something to show; it never keeps the loop alive. */
	uv_unref((uv_handle_t *)&v->winch);
	uv_unref((uv_handle_t *)&v->tstp);
	uv_unref((uv_handle_t *)&v->cont);
	uv_timer_start(&v->timer, on_tick, 0, 1000 / ST_VIEW_HZ);
	uv_unref((uv_handle_t *)&v->timer);

	crash_guard(v->fd);
	write_now(v, enter_seq, sizeof(enter_seq) - 1, 0);
	st_log_set_sink(sink, v);
	*outp = v;
	return 0;
}

static void on_closed(uv_handle_t *h)
{
	struct st_view *v = h->data;

	if (--v->handles > 0)
		return;
	if (v->own_fd)
		close(v->fd);
	for (int i = 0; i < v->shown_cap; i++)
		free(v->shown[i]);
	free(v->shown);
	free(v->shown_len);
	free(v->out);
	uv_mutex_destroy(&v->lock);
	st_view_screen_free(v->sc);
	free(v);
}

void st_view_close(struct st_view *v)
{
	if (!v || v->closing)
		return;
	/* From here log lines go to stderr again; the view's own are complete. */
	st_log_set_sink(NULL, NULL);
	v->closing = 1;
	uv_timer_stop(&v->timer);
	if (v->polling) {
		uv_poll_stop(&v->poll);
		v->polling = 0;
	}
	if (!v->dead) {
		/* The rest of the last frame, then the normal screen. Blocking now: the run is
		 * over, and a terminal must not be left in the alternate screen. */
		if (v->own_fd)
			fcntl(v->fd, F_SETFL, fcntl(v->fd, F_GETFL) & ~O_NONBLOCK);
		out_add(v, leave_seq, sizeof(leave_seq) - 1);
		flush_out(v);
	}
	crash_guard(-1);
	if (v->kept_total > v->kept_n)
		st_notice("%llu earlier warnings and errors were shown in the live view only; "
			  "the event stream has every outcome",
			  (unsigned long long)(v->kept_total - v->kept_n));
	for (size_t i = 0; i < v->kept_n; i++) {
		const struct st_view_event *ev = &v->kept[(v->kept_head + i) % VIEW_KEEP];

		st_log((enum st_log_level)ev->level, "[%s] %s", ev->hms, ev->text);
	}
	st_debug("live view: %llu frames (%llu skipped while the terminal was busy), %.0f us "
		 "each to lay out and write, %.0f bytes each",
		 (unsigned long long)v->frames, (unsigned long long)v->skipped,
		 v->frames ? (double)v->draw_ns / 1e3 / (double)v->frames : 0.0,
		 v->frames ? (double)v->bytes / (double)v->frames : 0.0);
	uv_close((uv_handle_t *)&v->timer, on_closed);
	if (v->have_poll)
		uv_close((uv_handle_t *)&v->poll, on_closed);
	uv_close((uv_handle_t *)&v->winch, on_closed);
	uv_close((uv_handle_t *)&v->tstp, on_closed);
	uv_close((uv_handle_t *)&v->cont, on_closed);
}
