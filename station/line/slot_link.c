/* The slot's link to its board: opening the port (and reopening it on a timer while it is
 * absent), watching it (uv_poll_t), writing the outstanding request and reading what comes,
 * a hang-up and the wait for the port to come back, the line's rate (set, reset, bytes at
 * another rate), the slot's timer, and the line watch that says what a line without frames
 * carries. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/rand.h>

#include "ecdsa.h"
#include "err.h"
#include "log.h"
#include "queue.h"
#include "slot_int.h"
#include "sota.h"

static void port_event(struct st_slot *s, const char *status, const char *detail);
static void line_diagnose(const struct st_slot *s, char *why, size_t whylen, char *brief,
			  size_t brieflen);
static uint64_t noframe_ns(const struct st_slot *s);
static void line_watch(struct st_slot *s);
static void line_quiet(struct st_slot *s);
static void on_poll_closed(uv_handle_t *h);
static void update_poll(struct st_slot *s);
static void read_port(struct st_slot *s);
static void on_poll(uv_poll_t *h, int status, int events);
static void on_reconnect_deadline(uv_timer_t *t);
static void port_lost(struct st_slot *s, const char *why);
static void tx_write(struct st_slot *s, int quiet);
static void on_timer(uv_timer_t *t);

/* ---- Small helpers ------------------------------------------------------------------ */

/* The rate a board starts at (a new or rebooted board's). */
int slot_base_baud(const struct st_slot *s)
{
	return s->baud ? s->baud : 115200;
}

static void port_event(struct st_slot *s, const char *status, const char *detail)
{
	json_t *o = json_object();

	if (!o)
		return;
	json_object_set_new(o, "event", json_string("port"));
	json_object_set_new(o, "slot", json_string(s->name));
	json_object_set_new(o, "status", json_string(status));
	if (s->path) {
		json_t *p = json_string(s->path);

		if (p)
			json_object_set_new(o, "path", p);
	}
	if (detail) {
		json_t *d = json_string(detail);

		if (d)
			json_object_set_new(o, "detail", d);
	}
	if (s->port) {
		/* Opened: whether the driver passes answers on at once (serial ports). */
		const char *why;
		int ll = drv_port_low_latency(s->port, &why);

		if (ll >= 0)
			json_object_set_new(o, "low_latency", json_boolean(ll));
		if (why)
			json_object_set_new(o, "low_latency_detail", json_string(why));
	}
	st_events_emit(s->env->events, o);
}

/* ---- Timer --------------------------------------------------------------------------- */

/* Starts t for ms from now, not from the start of the loop's turn: libuv's timers count from
 * the time it read when the turn began, so a turn held up by other work would shorten every
 * wait started later in it, and a request sent after a hold-up as long as its wait would
 * time out before its answer could come. Reading the clock costs a vDSO call. */
static void start_from_now(struct st_slot *s, uv_timer_t *t, uv_timer_cb cb, unsigned ms)
{
	uv_update_time(s->env->loop);
	uv_timer_start(t, cb, ms, 0);
}

void slot_schedule(struct st_slot *s, enum timer_what what, unsigned ms)
{
	uv_timer_stop(&s->timer);
	s->timer_what = what;
	start_from_now(s, &s->timer, on_timer, ms);
}

void slot_unschedule(struct st_slot *s)
{
	uv_timer_stop(&s->timer);
	s->timer_what = TW_NONE;
}

/* ---- Line watch: bytes but no frame --------------------------------------------------- */

/* A line with no board in flight that carries bytes and no frame (a board at another rate,
 * a flood, a board whose agent is not running, answers to requests never made) would leave
 * the slot "waiting" with no word. After lim.noframe_ms, and once at least this many bytes
 * came, the slot says what it sees: in its note (the view), once in the log, in an event.
 * No board is failed: none has started. */
#define NOFRAME_MIN_BYTES 64

/* A frame that made sense arrived (or the port was opened): the watch starts over. */
void slot_line_heard(struct st_slot *s)
{
	uint64_t now = uv_hrtime();

	if (s->noframe) {
		json_t *o = json_object();
		double secs = (double)(now - s->heard_at) / 1e9;

		st_info("slot %s: a valid frame again, after %.0f s without one", s->name, secs);
		if (o) {
			json_object_set_new(o, "event", json_string("line"));
			json_object_set_new(o, "slot", json_string(s->name));
			json_object_set_new(o, "status", json_string("frames"));
			json_object_set_new(o, "seconds", json_real(secs));
			st_events_emit(s->env->events, o);
		}
	}
	s->noframe = 0;
	s->line_note[0] = 0;
	s->heard_at = now;
	s->heard_rx = s->rx_bytes;
	s->heard_bad = s->frames_bad;
	s->junk = s->text = s->stray = s->unread = 0;
}

/* What the bytes since the last good frame suggest: a sentence for the log and the event,
 * a few words for the note. */
static void line_diagnose(const struct st_slot *s, char *why, size_t whylen, char *brief,
			  size_t brieflen)
{
	uint64_t bad = s->frames_bad - s->heard_bad;

	if (s->stray) {
		st_msgf(why, whylen, "%" PRIu64 " answers to requests the station never made (wrong "
			"seq): another program on the port, or a board that does not follow the "
			"protocol", s->stray);
		st_msgf(brief, brieflen, "answers with wrong seq");
	} else if (s->junk > s->text || s->unread || bad > s->text / 64) {
		st_msgf(why, whylen, "%" PRIu64 " unprintable bytes, %" PRIu64 " damaged frames, %"
			PRIu64 " requests the board could not read: likely a wrong baud rate (the "
			"line is at %d)", s->junk, bad, s->unread, s->cur_baud);
		st_msgf(brief, brieflen, "garbled: wrong baud rate?");
	} else {
		st_msgf(why, whylen, "%" PRIu64 " bytes of console text only: is the board's "
			"provisioning agent running?", s->text);
		st_msgf(brief, brieflen, "console text only: agent not running?");
	}
}

/* How long a line may go without a frame: the configured limit, but never less than a
 * finished board may take to answer the presence HELLO it is asked every presence_ms (with
 * its retransmissions). */
static uint64_t noframe_ns(const struct st_slot *s)
{
	const struct st_slot_limits *l = &s->env->lim;
	uint64_t ms = l->noframe_ms, floor = l->presence_ms + (uint64_t)l->tries * l->hello_ms;

	return (ms > floor ? ms : floor) * 1000000u;
}

/* Bytes arrived on a line with no board in flight: past the limit without a frame, say what
 * the slot sees (once in the log and an event; the note's rate at most once a second). */
static void line_watch(struct st_slot *s)
{
	uint64_t now = uv_hrtime(), bytes = s->rx_bytes - s->heard_rx;
	double secs = (double)(now - s->heard_at) / 1e9, rate;
	char why[ST_ERR_MAX], brief[64];

	s->rx_at = now;
	if (s->run || now - s->heard_at < noframe_ns(s) || bytes < NOFRAME_MIN_BYTES)
		return;
	if (s->line_note[0] && now - s->note_at < 1000000000u)
		return;
	if (s->line_note[0])
		rate = (double)(s->rx_bytes - s->note_rx) / ((double)(now - s->note_at) / 1e9);
	else
		rate = (double)bytes / secs;
	s->note_at = now;
	s->note_rx = s->rx_bytes;
	line_diagnose(s, why, sizeof(why), brief, sizeof(brief));
	st_msgf(s->line_note, sizeof(s->line_note), "no frame for %.0f s, %.0f bytes/s: %s", secs,
		rate, brief);
	if (!s->noframe) {
		json_t *o = json_object();

		s->noframe = 1;
		st_warn("slot %s: %" PRIu64 " bytes in %.0f s (%.0f bytes/s) and no valid frame: %s",
			s->name, bytes, secs, rate, why);
		if (o) {
			json_object_set_new(o, "event", json_string("line"));
			json_object_set_new(o, "slot", json_string(s->name));
			json_object_set_new(o, "status", json_string("no_frame"));
			json_object_set_new(o, "seconds", json_real(secs));
			json_object_set_new(o, "bytes", json_integer((json_int_t)bytes));
			json_object_set_new(o, "bytes_per_s", json_real(rate));
			json_object_set_new(o, "unprintable", json_integer((json_int_t)s->junk));
			json_object_set_new(o, "printable", json_integer((json_int_t)s->text));
			json_object_set_new(o, "damaged_frames",
					    json_integer((json_int_t)(s->frames_bad - s->heard_bad)));
			json_object_set_new(o, "stray_answers", json_integer((json_int_t)s->stray));
			json_object_set_new(o, "baud", json_integer(s->cur_baud));
			json_object_set_new(o, "detail", json_string(why));
			st_events_emit(s->env->events, o);
		}
	}
}

/* The line went quiet: the note has nothing to show any more (the log said it already). */
static void line_quiet(struct st_slot *s)
{
	if (s->line_note[0] && uv_hrtime() - s->rx_at >= noframe_ns(s))
		s->line_note[0] = 0;
}

/* ---- Port I/O ------------------------------------------------------------------------ */

static void on_poll_closed(uv_handle_t *h)
{
	free(h);
}

static void update_poll(struct st_slot *s)
{
	int want = UV_READABLE | UV_DISCONNECT;

	if (!s->poll)
		return;
	if (s->req_off < s->req_len)
		want |= UV_WRITABLE;
	if (want != s->poll_events) {
		s->poll_events = want;
		uv_poll_start(s->poll, want, on_poll);
	}
}

/* Closes the port (nothing happens when it is not open). The outstanding request goes with
 * it: after the port is back, the state decides what to send. */
void slot_port_close(struct st_slot *s)
{
	if (s->in_feed) {
		drv_proto_decoder_pause(&s->dec);
		/* What this read's frames called for leaves as it would have without the wait
		 * for the feed's end (slot_tx_flush), as far as the port takes it now. */
		if (s->port)
			tx_write(s, 1);
	}
	if (s->poll) {
		uv_close((uv_handle_t *)s->poll, on_poll_closed);
		s->poll = NULL;
	}
	if (s->port) {
		drv_port_close(s->port);
		s->port = NULL;
	}
	if (s->port_rdev) {
		ST_LIST_REMOVE(s->env->open_head, s->env->open_tail, s, open_prev, open_next);
		s->port_rdev = 0;
	}
	if (s->timer_what == TW_REQUEST || s->timer_what == TW_PROBE)
		slot_unschedule(s);
	s->req_kind = RQ_NONE;
	s->req_len = s->req_off = 0;
	s->pipe_at = 0;
	s->poll_events = 0;
	s->line_note[0] = 0;
	drv_proto_decoder_reset(&s->dec);
}

/* Writes what of the outstanding request (and what is behind it) has not left, as far as the
 * port takes it now; the rest when the port is writable. quiet: a failure is not a lost port
 * (the port is being closed). */
static void tx_write(struct st_slot *s, int quiet)
{
	char err[256];

	while (s->port && s->req_off < s->req_len) {
		ssize_t w = drv_port_write(s->port, s->req + s->req_off, s->req_len - s->req_off,
					   err, sizeof(err));

		if (w < 0) {
			if (!quiet)
				port_lost(s, err);
			return;
		}
		if (w == 0)
			break;
		s->req_off += (size_t)w;
		s->tx_bytes += (uint64_t)w;
		s->tx_writes++;
	}
	if (!quiet)
		update_poll(s);
}

/* While a read's frames are handled, what they call for waits for the end of the read
 * (read_port): answers read together give their requests in one write. Version 7's two
 * WRITEs answered in one read each send the WRITE behind the next; written one by one they
 * cost the port a write each, and the board a read and a write each. */
void slot_tx_flush(struct st_slot *s)
{
	if (!s->in_feed)
		tx_write(s, 0);
}

void slot_tx_now(struct st_slot *s)
{
	tx_write(s, 0);
}

uint64_t slot_rx_upto(const struct st_slot *s)
{
	return s->rx_bytes - (s->in_feed ? s->dec.after : 0);
}

static void read_port(struct st_slot *s)
{
	struct drv_port *port = s->port;
	char buf[1024], err[256];

	/* Bounded per wake-up, so one chatty board cannot hold the loop. */
	for (int i = 0; i < 16 && s->port == port; i++) {
		ssize_t r = drv_port_read(port, buf, sizeof(buf), err, sizeof(err));

		if (r < 0) {
			port_lost(s, err);
			return;
		}
		if (r == 0)
			return;
		s->rx_bytes += (uint64_t)r;
		s->in_feed = 1;
		drv_proto_decoder_feed(&s->dec, buf, (size_t)r);
		s->in_feed = 0;
		if (s->port != port)
			return;
		tx_write(s, 0);
		if (s->port == port)
			line_watch(s);
		if ((size_t)r < sizeof(buf))
			return;
	}
}

static void on_poll(uv_poll_t *h, int status, int events)
{
	struct st_slot *s = h->data;

	if (h != s->poll)
		return;
	if (status < 0) {
		/* A hang-up shows as an error on the descriptor; a read names it properly. */
		read_port(s);
		if (h == s->poll)
			port_lost(s, uv_strerror(status));
		return;
	}
	if (events & UV_WRITABLE)
		slot_tx_flush(s);
	if (h != s->poll)
		return;
	if (events & (UV_READABLE | UV_DISCONNECT))
		read_port(s);
}

/* ---- Line rate (BAUD) ----------------------------------------------------------------- */

/* Sets the port to rate; 0, or a negative code after logging why not. */
int slot_set_rate(struct st_slot *s, int rate)
{
	char err[256];
	int rc;

	if (!s->port || s->cur_baud == rate)
		return 0;
	/* What this read's frames called for before the change leaves at the rate it was
	 * made for. */
	if (s->in_feed) {
		tx_write(s, 0);
		if (!s->port)
			return 0;
	}
	rc = drv_port_set_baud(s->port, rate, err, sizeof(err));
	if (rc < 0) {
		st_warn("slot %s: cannot set the port to %d baud: %s", s->name, rate, err);
		return rc;
	}
	s->cur_baud = rate;
	return 0;
}

/* Back to the starting rate: a board that is new, rebooted or gone talks at that one. */
void slot_line_reset(struct st_slot *s)
{
	if (s->port && s->cur_baud != slot_base_baud(s)) {
		st_debug("slot %s: line back to %d baud", s->name, slot_base_baud(s));
		slot_set_rate(s, slot_base_baud(s));
	}
}

/* No board in flight and the line not at its starting rate, and bytes that make no sense at
 * this rate arrive: the finished board was swapped for a new one, which talks at the starting
 * rate. Greet it there at once rather than after the presence checks give up. */
void slot_new_board_talking(struct st_slot *s)
{
	slot_line_reset(s);
	if (s->state != ST_SLOT_LEAVING)
		return;
	if ((s->req_kind == RQ_PRESENCE || s->req_kind == RQ_PRESENCE_BOOT) &&
	    s->req_off == s->req_len &&
	    s->req_tries < s->env->lim.tries)
		slot_retransmit(s);
	else if (s->req_kind == RQ_NONE)
		slot_send_hello(s, RQ_PRESENCE);
}

/* A board in flight at a switched rate sends what makes no sense at that rate: it rebooted
 * (a power loss, a watchdog) and talks at the starting rate again. Greet it there now rather
 * than after every retransmission of the outstanding request has timed out. */
void slot_rate_lost(struct st_slot *s)
{
	st_info("slot %s: device %s: bytes at another rate than the line's %d baud; greeting the "
		"board at %d", s->name, s->run->device_id, s->cur_baud, slot_base_baud(s));
	slot_line_reset(s);
	slot_resync(s);
}

/* ---- Opening and losing the port ------------------------------------------------------ */

/* The device number of port when it is a character device, (uint64_t)-1 when it is not (a
 * socket pair), or 0 when another slot has that device open (*other says which). */
static uint64_t open_elsewhere(const struct st_slot *s, struct drv_port *port,
			       struct st_slot **other)
{
	struct stat st;
	struct st_slot *o;

	if (fstat(drv_port_fd(port), &st) != 0 || !S_ISCHR(st.st_mode) || st.st_rdev == 0)
		return (uint64_t)-1;
	for (o = s->env->open_head; o; o = o->open_next) {
		if (o != s && o->port_rdev == (uint64_t)st.st_rdev) {
			*other = o;
			return 0;
		}
	}
	return (uint64_t)st.st_rdev;
}

/* The name's identity from its lstat (st NULL: none, ino 0). */
static void name_id(const struct stat *st, struct slot_name_id *id)
{
	memset(id, 0, sizeof(*id));
	if (!st)
		return;
	id->dev = (uint64_t)st->st_dev;
	id->ino = (uint64_t)st->st_ino;
	id->ctime_ns = (int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec;
}

/* Whether st is the name id was taken from: a link removed and made again, even with the
 * inode number of the one removed, has another change time. */
static int same_name(const struct stat *st, const struct slot_name_id *id)
{
	struct slot_name_id now;

	name_id(st, &now);
	return now.dev == id->dev && now.ino == id->ino && now.ctime_ns == id->ctime_ns;
}

void slot_port_open(struct st_slot *s)
{
	struct st_slot_env *env = s->env;
	struct drv_port_config pc;
	struct drv_port *port = NULL;
	struct stat st;
	struct st_slot *other = NULL;
	uint64_t rdev = (uint64_t)-1;
	uv_poll_t *poll;
	char err[512];
	unsigned delay;
	int rc;

	if (s->port || s->closing || env->stopping)
		return;
	if (s->lost_at && uv_hrtime() - s->lost_at < (uint64_t)env->lim.reconnect_ms * 1000000u &&
	    lstat(s->path, &st) == 0 && same_name(&st, &s->lost_name)) {
		/* Still the name that hung up: not back yet. */
		slot_schedule(s, TW_REOPEN, env->lim.reopen_ms);
		return;
	}
	memset(&pc, 0, sizeof(pc));
	pc.backend = s->backend;
	pc.path = s->path;
	pc.baud = s->baud;
	pc.flow = s->flow;
	rc = drv_port_open(&pc, &port, err, sizeof(err));
	if (rc == 0 && (rdev = open_elsewhere(s, port, &other)) == 0) {
		/* Another slot has this device open: not ours to use. */
		drv_port_close(port);
		rc = ST_E_PORT_OPEN;
		st_msgf(err, sizeof(err), "%s is the device slot %s has open (%s): two names of one "
			"port; waiting for it to be this slot's own", s->path, other->name,
			other->path);
		if (s->reopen_fails == 0)
			st_warn("slot %s: %s", s->name, err);
	}
	poll = rc == 0 ? calloc(1, sizeof(*poll)) : NULL;
	if (rc == 0 && (!poll || uv_poll_init(env->loop, poll, drv_port_fd(port)) != 0)) {
		free(poll);
		drv_port_close(port);
		rc = ST_E_PORT_OPEN;
		st_msgf(err, sizeof(err), "%s: cannot watch the port", s->path);
	}
	if (rc < 0) {
		s->reopen_fails++;
		if (s->reopen_fails == 1) {
			if (!s->run)
				st_msgf(s->last_error, sizeof(s->last_error), "%s", err);
			st_debug("slot %s: %s", s->name, err);
		}
		/* Quick while a board in flight may come back; slower for an empty fixture. */
		delay = env->lim.reopen_ms;
		if (!s->run) {
			unsigned shift = s->reopen_fails < 4 ? s->reopen_fails : 4;

			delay <<= shift;
			if (delay > REOPEN_BACKOFF_MAX_MS)
				delay = REOPEN_BACKOFF_MAX_MS > env->lim.reopen_ms ?
						REOPEN_BACKOFF_MAX_MS :
						env->lim.reopen_ms;
		}
		slot_schedule(s, TW_REOPEN, delay);
		return;
	}
	poll->data = s;
	s->poll = poll;
	s->port = port;
	if (rdev != (uint64_t)-1) {
		s->port_rdev = rdev;
		ST_LIST_APPEND(env->open_head, env->open_tail, s, open_prev, open_next);
	}
	s->poll_events = 0;
	s->reopen_fails = 0;
	s->lost_at = 0;
	name_id(lstat(s->path, &st) == 0 ? &st : NULL, &s->port_name);
	s->tx_max = DRV_PROTO_MIN_LINE;
	s->req_len = s->req_off = 0;
	s->pipe_at = 0;
	s->cur_baud = slot_base_baud(s);
	drv_proto_decoder_reset(&s->dec);
	s->noframe = 0; /* a new line: the watch starts over, with nothing to take back */
	slot_line_heard(s);
	update_poll(s);
	if (!s->port_announced) {
		const char *why;

		if (drv_port_low_latency(port, &why) == 0)
			st_info("slot %s: port %s: no low-latency mode (%s): an answer may wait for "
				"a USB adapter's latency timer at every turn",
				s->name, s->path, why);
	}
	port_event(s, s->port_announced ? "back" : "open", NULL);
	s->port_announced = 1;
	if (s->run) {
		st_info("slot %s: port %s is back", s->name, s->path);
		uv_timer_stop(&s->aux);
		slot_resync(s);
		return;
	}
	if (s->last_error[0] && strstr(s->last_error, s->path))
		s->last_error[0] = 0;
	slot_set_state(s, ST_SLOT_WAITING);
	slot_send_hello(s, RQ_PROBE);
}

static void on_reconnect_deadline(uv_timer_t *t)
{
	struct st_slot *s = t->data;

	if (!s->run || s->port)
		return;
	slot_fail_run(s, ST_E_PORT_HANGUP,
		      "the port hung up in state %s and did not come back within %u ms",
		      st_slot_state_name(s->state), s->env->lim.reconnect_ms);
}

static void port_lost(struct st_slot *s, const char *why)
{
	if (!s->port)
		return;
	slot_port_close(s);
	slot_streak_reset(s);
	s->lost_name = s->port_name;
	s->lost_at = s->port_name.ino ? uv_hrtime() : 0;
	port_event(s, "lost", why);
	if (s->env->stopping || s->closing)
		return;
	if (s->run && s->state != ST_SLOT_FAILED) {
		st_notice("slot %s: device %s: port lost in state %s (%s); waiting %u ms for it",
			  s->name, s->run->device_id, st_slot_state_name(s->state), why,
			  s->env->lim.reconnect_ms);
		start_from_now(s, &s->aux, on_reconnect_deadline, s->env->lim.reconnect_ms);
		slot_schedule(s, TW_REOPEN, s->env->lim.reopen_ms);
		return;
	}
	st_debug("slot %s: port lost (%s)", s->name, why);
	if (s->run) {
		slot_end_run(s); /* failed already; it goes offline */
		return;
	}
	slot_set_state(s, ST_SLOT_OFFLINE);
	slot_schedule(s, TW_REOPEN, s->env->lim.reopen_ms);
}

/* Whether the outstanding request was answered, or otherwise settled, by what the port holds
 * now. A loop held up by other work comes to a request's timer late, and libuv runs the
 * timers that are due before it polls: the answer may have been waiting in the port since
 * well before the deadline. Read first, it is taken as the answer it is, instead of the
 * request being sent again or, after the last try, the board failed for an answer it gave
 * in time. Costs one read, at a timeout only. */
static int answered_meanwhile(struct st_slot *s)
{
	int kind = s->req_kind;
	uint32_t seq = s->req_seq;
	unsigned tries = s->req_tries;

	if (!s->port || kind == RQ_NONE)
		return 0;
	read_port(s);
	return !s->port || s->req_kind != kind || s->req_seq != seq || s->req_tries != tries ||
	       s->timer_what != TW_NONE;
}

static void on_timer(uv_timer_t *t)
{
	struct st_slot *s = t->data;
	enum timer_what what = (enum timer_what)s->timer_what;

	s->timer_what = TW_NONE;
	line_quiet(s);
	switch (what) {
	case TW_REQUEST:
		if (!answered_meanwhile(s))
			slot_on_request_timeout(s);
		break;
	case TW_PROBE:
		if (s->req_kind != RQ_NONE)
			break;
		/* The HELLO of the state: a probe (waiting) or a presence check (leaving). */
		if (slot_table[s->state].sends == RQ_PROBE ||
		    slot_table[s->state].sends == RQ_PRESENCE)
			slot_send_hello(s, slot_table[s->state].sends);
		break;
	case TW_REOPEN:
		slot_port_open(s);
		break;
	case TW_QUEUED:
		if (s->state == ST_SLOT_QUEUED && s->run) {
			st_notice("slot %s: device %s: still waiting for its certificate after %.0f s",
				  s->name, s->run->device_id,
				  st_slot_ms_in_state(s, uv_hrtime()) / 1000);
			slot_schedule(s, TW_QUEUED, s->env->lim.queued_ms);
		}
		break;
	case TW_NONE:
		break;
	}
}
