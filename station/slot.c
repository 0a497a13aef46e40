/* One slot's state machine (see slot.h for the design).
 *
 * The slot owns one outstanding request at a time (s->req, s->req_kind): a state decides
 * which request comes next (kick()), the answer's handler records progress and moves the
 * state on, and a timeout or a damaged answer sends the same frame again. Everything that
 * can end a board (failure, abandon, pass) goes through end_run(), and every state change
 * through slot_set_state(). */
#include "slot.h"

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

#include "auth.h"
#include "ecdsa.h"
#include "err.h"
#include "log.h"
#include "sota.h"

#define NONCE_LEN 32
#define MAX_PROTO_PATH DRV_PROTO_MAX_PATH
#define HELLO_MAX 4096 /* the largest frame the station accepts (announced in HELLO) */
#define REOPEN_BACKOFF_MAX_MS 2000
/* BAUD's fallback delay: the board goes back to the old rate unless a good frame arrives at
 * the new one within it, and the station gives up on the new rate after as long. */
#define BAUD_TRIAL_MS 2000

static const char *const state_names[ST_SLOT_NSTATES] = {
	[ST_SLOT_OFFLINE] = "offline",     [ST_SLOT_WAITING] = "waiting",
	[ST_SLOT_HELLO] = "hello",         [ST_SLOT_PROFILE] = "profile",
	[ST_SLOT_CSR] = "csr",             [ST_SLOT_CHECKED] = "checked",
	[ST_SLOT_QUEUED] = "queued",       [ST_SLOT_SIGNED] = "signed",
	[ST_SLOT_WRITTEN] = "written",     [ST_SLOT_COMMITTED] = "committed",
	[ST_SLOT_VERIFIED] = "verified",   [ST_SLOT_PASS] = "pass",
	[ST_SLOT_FAILED] = "failed",       [ST_SLOT_LEAVING] = "leaving",
	[ST_SLOT_STOPPED] = "stopped",
};

const char *st_slot_state_name(enum st_slot_state s)
{
	return (unsigned)s < ST_SLOT_NSTATES ? state_names[s] : "?";
}

int st_slot_state_busy(enum st_slot_state s)
{
	return s >= ST_SLOT_HELLO && s <= ST_SLOT_FAILED;
}

void st_slot_limits_default(struct st_slot_limits *l)
{
	/* At 115200 baud a 1 KiB frame takes 90 ms each way; a slow MCU may spend seconds
	 * making its key (first CSR chunk) or signing the nonce, and syncing flash (COMMIT). */
	l->hello_ms = 1000;
	l->csr_ms = 15000;
	l->write_ms = 3000;
	l->commit_ms = 10000;
	l->verify_ms = 10000;
	l->done_ms = 2000;
	l->probe_ms = 1000;
	l->presence_ms = 2000;
	l->reconnect_ms = 10000;
	l->reopen_ms = 250;
	l->queued_ms = 10000;
	l->noframe_ms = 10000;
	l->tries = 5;
	l->resyncs = 5;
}

/* ---- Profile sets ------------------------------------------------------------------- */

struct st_profiles *st_profiles_new(void)
{
	struct st_profiles *set = calloc(1, sizeof(*set));

	if (set)
		set->refs = 1;
	return set;
}

struct st_profiles *st_profiles_ref(struct st_profiles *set)
{
	if (set)
		set->refs++;
	return set;
}

void st_profiles_unref(struct st_profiles *set)
{
	if (!set || --set->refs > 0)
		return;
	st_profile_set_free(set->dir);
	for (size_t i = 0; i < set->n; i++)
		st_profile_free(set->list[i]);
	free(set->list);
	st_profile_free(set->deflt);
	for (size_t i = 0; i < set->nfixed; i++) {
		st_profile_free(set->fixed[i]);
		free(set->fixed_paths[i]);
	}
	free(set->fixed);
	free(set->fixed_paths);
	st_auth_set_unref(set->auths);
	free(set);
}

int st_profiles_choose(const struct st_profiles *set, const char *fixed_path,
			  const char *hardware_id, const char *sku,
			  const struct st_profile **out, char *err, size_t errlen)
{
	const struct st_profile *best = NULL, *tie = NULL;
	int best_score = -1;

	*out = NULL;
	if (fixed_path) {
		for (size_t i = 0; i < set->nfixed; i++) {
			const struct st_profile *p = set->fixed[i];

			if (strcmp(set->fixed_paths[i], fixed_path) != 0)
				continue;
			/* The slot's own profile, as long as the board is one it describes. */
			if ((p->n_match_hardware_ids || p->match_sku) &&
			    !st_profile_matches(p, hardware_id, sku))
				return st_errf(err, errlen, ST_E_PROFILE_NOMATCH,
					       "board reports hardware id '%s' sku '%s'; the slot's "
					       "profile %s (sku %s) is for other boards",
					       hardware_id, sku, p->path, p->sku);
			*out = p;
			return 0;
		}
		return st_errf(err, errlen, ST_E_PROFILE_NOMATCH, "profile %s is not loaded",
			       fixed_path);
	}
	for (size_t i = 0; i < set->n; i++) {
		const struct st_profile *p = set->list[i];
		int score;

		if (!st_profile_matches(p, hardware_id, sku))
			continue;
		score = p->match_sku ? 1 : 0;
		if (score > best_score) {
			best = p;
			best_score = score;
			tie = NULL;
		} else if (score == best_score) {
			tie = p;
		}
	}
	if (best && tie)
		return st_errf(err, errlen, ST_E_SLOT_PROFILE_AMBIGUOUS,
			       "hardware id '%s' sku '%s' matches both %s and %s",
			       hardware_id, sku, best->path, tie->path);
	if (!best && set->dir)
		best = st_profile_set_match(set->dir, hardware_id, sku);
	if (!best)
		best = set->deflt;
	if (!best)
		return st_errf(err, errlen, ST_E_PROFILE_NOMATCH,
			       "no profile matches hardware id '%s' sku '%s' (%zu profiles loaded, "
			       "no default)",
			       hardware_id, sku,
			       set->n + (set->dir ? st_profile_set_count(set->dir) : 0));
	*out = best;
	return 0;
}

/* ---- The board in flight ------------------------------------------------------------ */

/* A file as it goes over the wire. */
struct wfile {
	char path[MAX_PROTO_PATH + 1]; /* relative to the board's config directory */
	char mode[8];
	uint8_t sha[32];
	const unsigned char *data;     /* in the run's render */
	size_t len;
	int seen;                      /* VERIFY listed it with the right size and hash */
};

enum req_kind {
	RQ_NONE,
	RQ_PROBE,    /* HELLO to an empty slot */
	RQ_PRESENCE, /* HELLO to a finished board */
	RQ_RESYNC,   /* HELLO to a board in flight after a reboot or reconnect */
	RQ_CSR,
	RQ_WRITE,
	RQ_COMMIT,
	RQ_VERIFY,
	RQ_DONE,
	RQ_BAUD,       /* BAUD: switch the line to a faster rate */
	RQ_BAUD_HELLO, /* HELLO at the new rate: the switch is good when it is answered */
};

/* What the slot timer is waiting for. */
enum timer_what {
	TW_NONE,
	TW_REQUEST,  /* the outstanding request's answer */
	TW_PROBE,    /* the next probe or presence HELLO */
	TW_REOPEN,   /* the next attempt to open the port */
	TW_QUEUED,   /* a note that the board still waits for signing */
};

struct slot_run {
	struct st_profiles *pset;
	const struct st_profile *profile;
	char device_id[ST_PROFILE_MAX_ID + 1];
	char factory[ST_POLICY_MAX_FACTORY + 1];
	int seq_wait; /* a sequence number is on its way */

	/* CSR as read from the board. */
	uint8_t *csr;
	size_t csr_total, csr_have;
	uint8_t csr_sha[32];
	unsigned csr_restarts;

	/* The key the certificate certifies, for the proof of possession. */
	uint8_t pub[ST_CA_MAX_POINT];
	size_t pub_len;
	enum st_ec_curve curve;

	/* Signing. */
	struct st_sign_req *req; /* submitted or waiting for room; NULL otherwise */
	int in_pool;             /* req is with the pool (cancel it when giving up) */
	struct st_cert *cert;
	int64_t row_id;
	int reused;
	char auth_id[ST_AUTH_MAX_ID + 1]; /* the authorization its certificate consumed */
	struct st_sign_times pt;

	/* Files. */
	struct st_render *render;
	struct wfile *wf;
	size_t nfiles, wi;
	uint64_t woff;
	unsigned write_restarts, stalls;

	/* VERIFY. */
	uint8_t nonce[NONCE_LEN];
	uint64_t vfiles, vseen;

	/* Link. */
	int baud_tried;  /* BAUD was sent (or not wanted) for this board: once a run */
	int baud_from;   /* the rate before the switch, to go back to */
	int baud_to;     /* the rate the board switched to (answered HELLO there); 0: none */
	int rate_flipped; /* silence made the station try the other rate; the board has not
			   * answered since */
	int port_lost;
	unsigned resyncs;
	unsigned retransmits0; /* the slot's retransmits when the board arrived */
	uint64_t tx0, rx0;     /* the slot's byte counters when the board's HELLO left */

	/* Ending. */
	int failed;
	int fail_code;
	char fail_msg[ST_ERR_MAX];
	enum st_slot_state fail_state;

	/* Times (uv_hrtime()). */
	uint64_t t_hello_sent, t_hello, t_checked, t_signed, t_committed, t_done;
};


/* ---- Small helpers ------------------------------------------------------------------ */

/* The rate a board starts at (a new or rebooted board's). */
static int base_baud(const struct st_slot *s)
{
	return s->baud ? s->baud : 115200;
}

/* Text a board sent, percent-decoded, then made printable where it enters the station
 * (st_escape()): whatever it holds goes on into messages, the log, the view, events and the
 * ledger. Field key of f, at most max bytes decoded, into out (outlen bytes; the escaped
 * text is cut, saying so, when it does not fit); def when the field is absent, or an error
 * when def is NULL. Returns 0, or ST_E_PROTO_FIELD with err and out empty. */
static int board_text(const struct drv_proto_frame *f, const char *key, const char *def,
		      size_t max, char *out, size_t outlen, char *err, size_t errlen)
{
	char raw[DRV_PROTO_MAX_LINE];
	int rc;

	if (max >= sizeof(raw))
		max = sizeof(raw) - 1;
	if (def)
		rc = drv_proto_get_text_opt(f, key, def, raw, max + 1, err, errlen);
	else
		rc = drv_proto_get_text(f, key, raw, max + 1, err, errlen);
	out[0] = 0;
	if (rc == 0)
		st_escape(out, outlen, raw, strlen(raw), 0);
	return rc;
}

/* Item idx of a list field, like board_text(). */
static int board_item(const struct drv_proto_frame *f, const struct drv_proto_field *fld,
		      unsigned idx, size_t max, char *out, size_t outlen, char *err, size_t errlen)
{
	char raw[DRV_PROTO_MAX_LINE];
	int rc;

	if (max >= sizeof(raw))
		max = sizeof(raw) - 1;
	rc = drv_proto_field_item(f, fld, idx, raw, max + 1, err, errlen);
	out[0] = 0;
	if (rc == 0)
		st_escape(out, outlen, raw, strlen(raw), 0);
	return rc;
}

static double ms_between(uint64_t a, uint64_t b)
{
	if (!a || !b || b < a)
		return -1;
	return (double)(b - a) / 1e6;
}

double st_slot_ms_in_state(const struct st_slot *s, uint64_t now)
{
	return now > s->since ? (double)(now - s->since) / 1e6 : 0;
}

static void slot_set_state(struct st_slot *s, enum st_slot_state to)
{
	enum st_slot_state from = s->state;

	if (from == to)
		return;
	s->state = to;
	s->since = uv_hrtime();
	st_debug("slot %s: %s -> %s%s%s", s->name, st_slot_state_name(from),
		 st_slot_state_name(to), s->device_id[0] ? ", device " : "", s->device_id);
	st_events_state(s->env->events, s->name, st_slot_state_name(from), st_slot_state_name(to),
			s->device_id[0] ? s->device_id : NULL);
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
	st_events_emit(s->env->events, o);
}

static void new_board_talking(struct st_slot *s);
static void rate_lost(struct st_slot *s);
static void resync(struct st_slot *s);

/* Mostly bytes no console prints: what a UART at another rate than the sender's reads. */
static int garbage(const char *data, size_t n)
{
	size_t bad = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)data[i];

		bad += c >= 0x80 || (c < 0x20 && c != '\r' && c != '\n' && c != '\t' &&
				     c != '\b' && c != 0x1b);
	}
	return bad >= 4 && bad * 2 > n;
}

static void console_add(void *arg, const char *data, size_t n)
{
	struct st_slot *s = arg;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)data[i];

		if ((c >= 0x20 && c < 0x7f) || c == '\r' || c == '\n' || c == '\t')
			s->text++;
		else
			s->junk++;
	}

	if (s->cur_baud != base_baud(s) && garbage(data, n)) {
		if (!s->run)
			new_board_talking(s);
		else if (!s->run->failed && s->req_kind != RQ_BAUD_HELLO)
			rate_lost(s);
	}
	if (n >= ST_SLOT_CONSOLE) {
		data += n - ST_SLOT_CONSOLE;
		n = ST_SLOT_CONSOLE;
	}
	for (size_t i = 0; i < n; i++) {
		size_t at = (s->con_head + s->con_len) % ST_SLOT_CONSOLE;

		s->console[at] = data[i];
		if (s->con_len < ST_SLOT_CONSOLE)
			s->con_len++;
		else
			s->con_head = (s->con_head + 1) % ST_SLOT_CONSOLE;
	}
}

const char *st_slot_note(const struct st_slot *s)
{
	if (s->line_note[0])
		return s->line_note;
	if (!s->run)
		return "";
	if (s->run->port_lost)
		return "port gone";
	if (s->run->seq_wait)
		return "sequence";
	if (s->room_waiting)
		return "pool full";
	if (s->req_kind == RQ_BAUD || s->req_kind == RQ_BAUD_HELLO)
		return "switching rate";
	if (s->req_kind != RQ_NONE && s->req_tries > 1)
		return "retrying";
	return "";
}

/* ---- Forward declarations ----------------------------------------------------------- */

static void kick(struct st_slot *s);
static void fail_run(struct st_slot *s, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void fail_run_quiet(struct st_slot *s, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void port_lost(struct st_slot *s, const char *why);
static void send_hello(struct st_slot *s, int kind);
static void end_run(struct st_slot *s);
static void on_timer(uv_timer_t *t);
static void room_drain(struct st_slot_env *env);

/* ---- Timer --------------------------------------------------------------------------- */

static void schedule(struct st_slot *s, enum timer_what what, unsigned ms)
{
	uv_timer_stop(&s->timer);
	s->timer_what = what;
	uv_timer_start(&s->timer, on_timer, ms, 0);
}

static void unschedule(struct st_slot *s)
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
static void line_heard(struct st_slot *s)
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

static void on_poll(uv_poll_t *h, int status, int events);

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
static void port_close(struct st_slot *s)
{
	if (s->in_feed)
		drv_proto_decoder_pause(&s->dec);
	if (s->poll) {
		uv_close((uv_handle_t *)s->poll, on_poll_closed);
		s->poll = NULL;
	}
	if (s->port) {
		drv_port_close(s->port);
		s->port = NULL;
	}
	if (s->timer_what == TW_REQUEST || s->timer_what == TW_PROBE)
		unschedule(s);
	s->req_kind = RQ_NONE;
	s->req_len = s->req_off = 0;
	s->poll_events = 0;
	s->line_note[0] = 0;
	drv_proto_decoder_reset(&s->dec);
}

static void tx_flush(struct st_slot *s)
{
	char err[256];

	while (s->port && s->req_off < s->req_len) {
		ssize_t w = drv_port_write(s->port, s->req + s->req_off, s->req_len - s->req_off,
					   err, sizeof(err));

		if (w < 0) {
			port_lost(s, err);
			return;
		}
		if (w == 0)
			break;
		s->req_off += (size_t)w;
		s->tx_bytes += (uint64_t)w;
	}
	update_poll(s);
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
		tx_flush(s);
	if (h != s->poll)
		return;
	if (events & (UV_READABLE | UV_DISCONNECT))
		read_port(s);
}

/* ---- Requests ------------------------------------------------------------------------ */

static uint32_t next_seq(struct st_slot *s)
{
	s->seq = s->seq == UINT32_MAX ? 1 : s->seq + 1;
	return s->seq;
}

static void begin_req(struct st_slot *s, struct drv_proto_builder *b, const char *type)
{
	/* A request that replaces one still leaving would splice two frames on the wire; the
	 * board reports the damage (ERROR FRAME) and the new one is sent again. */
	drv_proto_begin(b, s->req, s->tx_max, DRV_PROTO_REQUEST, next_seq(s), type);
	s->req_seq = s->seq;
	st_msgf(s->req_type, sizeof(s->req_type), "%s", type);
}

static unsigned timeout_of(const struct st_slot *s, int kind)
{
	const struct st_slot_limits *l = &s->env->lim;

	switch (kind) {
	case RQ_PROBE:
		return l->probe_ms > l->hello_ms ? l->probe_ms : l->hello_ms;
	case RQ_CSR:
		return l->csr_ms;
	case RQ_WRITE:
		return l->write_ms;
	case RQ_COMMIT:
		return l->commit_ms;
	case RQ_VERIFY:
		return l->verify_ms;
	case RQ_DONE:
		return l->done_ms;
	case RQ_BAUD_HELLO:
		/* Every try at the new rate within the board's trial, so that both sides give
		 * up on it together. */
		return BAUD_TRIAL_MS / (l->tries ? l->tries : 1);
	default:
		return l->hello_ms;
	}
}

/* Finishes the frame in b and sends it as the outstanding request. */
static void send_req(struct st_slot *s, struct drv_proto_builder *b, int kind)
{
	char err[160];
	size_t len;

	if (drv_proto_end(b, &len, err, sizeof(err)) != 0) {
		s->req_kind = RQ_NONE;
		s->req_len = s->req_off = 0;
		fail_run(s, ST_E_INTERNAL, "cannot build the %s request: %s", s->req_type, err);
		return;
	}
	s->req_len = len;
	s->req_off = 0;
	s->req_kind = kind;
	s->req_tries = 1;
	s->req_timeout = timeout_of(s, kind);
	s->req_sent = uv_hrtime();
	s->req_rx0 = s->rx_bytes;
	schedule(s, TW_REQUEST, s->req_timeout);
	tx_flush(s);
}

/* Sends the outstanding request again, byte for byte: the board answers a repeated seq from
 * the answer it kept, without doing anything twice. */
static void retransmit(struct st_slot *s)
{
	if (!s->port || s->req_kind == RQ_NONE)
		return;
	s->req_tries++;
	s->retransmits++;
	s->req_off = 0;
	schedule(s, TW_REQUEST, s->req_timeout);
	tx_flush(s);
}

static void send_hello(struct st_slot *s, int kind)
{
	static const char *const versions[] = { "1" };
	struct drv_proto_builder b;

	if (!s->port)
		return;
	begin_req(s, &b, DRV_PROTO_HELLO);
	drv_proto_add_list(&b, "v", versions, 1);
	drv_proto_add_uint(&b, "max", HELLO_MAX);
	send_req(s, &b, kind);
}

/* ---- Line rate (BAUD) ----------------------------------------------------------------- */

/* Sets the port to rate; 0, or a negative code after logging why not. */
static int set_rate(struct st_slot *s, int rate)
{
	char err[256];
	int rc;

	if (!s->port || s->cur_baud == rate)
		return 0;
	rc = drv_port_set_baud(s->port, rate, err, sizeof(err));
	if (rc < 0) {
		st_warn("slot %s: cannot set the port to %d baud: %s", s->name, rate, err);
		return rc;
	}
	s->cur_baud = rate;
	return 0;
}

/* Back to the starting rate: a board that is new, rebooted or gone talks at that one. */
static void line_reset(struct st_slot *s)
{
	if (s->port && s->cur_baud != base_baud(s)) {
		st_debug("slot %s: line back to %d baud", s->name, base_baud(s));
		set_rate(s, base_baud(s));
	}
}

/* No board in flight and the line not at its starting rate, and bytes that make no sense at
 * this rate arrive: the finished board was swapped for a new one, which talks at the starting
 * rate. Greet it there at once rather than after the presence checks give up. */
static void new_board_talking(struct st_slot *s)
{
	line_reset(s);
	if (s->state != ST_SLOT_LEAVING)
		return;
	if (s->req_kind == RQ_PRESENCE && s->req_off == s->req_len &&
	    s->req_tries < s->env->lim.tries)
		retransmit(s);
	else if (s->req_kind == RQ_NONE)
		send_hello(s, RQ_PRESENCE);
}

/* A board in flight at a switched rate sends what makes no sense at that rate: it rebooted
 * (a power loss, a watchdog) and talks at the starting rate again. Greet it there now rather
 * than after every retransmission of the outstanding request has timed out. */
static void rate_lost(struct st_slot *s)
{
	st_info("slot %s: device %s: bytes at another rate than the line's %d baud; greeting the "
		"board at %d", s->name, s->run->device_id, s->cur_baud, base_baud(s));
	line_reset(s);
	resync(s);
}

/* The fastest rate the board offers that this slot may use and the port can set, above the
 * current one; 0 when there is none. */
static int baud_wanted(const struct st_slot *s)
{
	int best = 0;

	if (!s->max_baud)
		return 0;
	for (unsigned i = 0; i < s->board.nbauds; i++) {
		int r = s->board.bauds[i];

		if (r > s->cur_baud && r <= s->max_baud && r > best && drv_port_speed(r))
			best = r;
	}
	return best;
}

static void send_baud(struct st_slot *s, int rate)
{
	struct drv_proto_builder b;

	s->run->baud_tried = 1;
	begin_req(s, &b, DRV_PROTO_BAUD);
	drv_proto_add_uint(&b, "rate", (uint64_t)rate);
	drv_proto_add_uint(&b, "ms", BAUD_TRIAL_MS);
	send_req(s, &b, RQ_BAUD);
}

/* The board switches once its answer has left; the station follows and greets it at the new
 * rate. The switch counts when that HELLO is answered (on_hello_answer). */
static void on_baud_answer(struct st_slot *s, const struct drv_proto_frame *f)
{
	struct slot_run *r = s->run;
	uint64_t rate;
	char err[160] = "";

	if (!r)
		return;
	if (drv_proto_get_uint(f, "rate", 1, 4000000, &rate, err, sizeof(err)) != 0 ||
	    (int)rate > s->max_baud || !drv_port_speed((int)rate)) {
		/* Not a rate we can follow: let the board fall back on its own. */
		st_warn("slot %s: device %s: BAUD answer: %s", s->name, r->device_id,
			*err ? err : "rate not usable");
		kick(s);
		return;
	}
	r->baud_from = s->cur_baud;
	if (set_rate(s, (int)rate) < 0) {
		kick(s);
		return;
	}
	send_hello(s, RQ_BAUD_HELLO);
}

/* No answer at the new rate within the trial: both sides go back to the old one. */
static void baud_fell_back(struct st_slot *s, const char *why)
{
	struct slot_run *r = s->run;

	if (!r)
		return;
	st_info("slot %s: device %s: %s at %d baud; back to %d", s->name, r->device_id, why,
		s->cur_baud, r->baud_from);
	set_rate(s, r->baud_from);
	kick(s);
}

/* ---- Profiles, device ids ------------------------------------------------------------ */

static void make_uuid4(char out[37])
{
	uint8_t u[16];

	if (RAND_bytes(u, sizeof(u)) != 1) {
		/* The CSPRNG does not fail on Linux once seeded; make it visible if it does. */
		memset(u, 0, sizeof(u));
	}
	u[6] = (uint8_t)((u[6] & 0x0f) | 0x40);
	u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
	snprintf(out, 37,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0],
		 u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13],
		 u[14], u[15]);
}

/* The device id is settled: ask for the CSR. */
static void use_device_id(struct st_slot *s, const char *id)
{
	struct slot_run *r = s->run;
	char err[ST_ERR_MAX];

	if (st_profile_check_device_id(r->profile, id, err, sizeof(err)) != 0) {
		fail_run(s, ST_E_PROFILE_DEVICE_ID, "profile %s: %s", r->profile->sku, err);
		return;
	}
	st_msgf(r->device_id, sizeof(r->device_id), "%s", id);
	st_msgf(s->device_id, sizeof(s->device_id), "%s", id);
	slot_set_state(s, ST_SLOT_CSR);
	kick(s);
}

static void on_sequence(int rc, const char *err, uint64_t value, void *arg)
{
	struct st_slot *s = arg;
	struct slot_run *r = s->run;
	char id[ST_PROFILE_MAX_ID + 1];

	/* A run that ended meanwhile leaves its number unused: sequence ids are never reused,
	 * gaps are allowed. */
	if (!r || !r->seq_wait || s->state != ST_SLOT_PROFILE)
		return;
	r->seq_wait = 0;
	if (rc < 0) {
		fail_run(s, rc, "allocating a sequence device id: %s", err ? err : st_strerror(rc));
		return;
	}
	if (st_profile_sequence_id(r->profile, (unsigned long long)value, id, sizeof(id)) != 0) {
		fail_run(s, ST_E_PROFILE_DEVICE_ID,
			 "sequence number %" PRIu64 " does not fit the %u digits of profile %s",
			 value, r->profile->devid_digits, r->profile->sku);
		return;
	}
	use_device_id(s, id);
}

/* A new board answered HELLO (hello_sent: when that HELLO left). */
static void start_run(struct st_slot *s, const struct st_slot_board *nb, uint64_t hello_sent)
{
	struct st_slot_env *env = s->env;
	struct slot_run *r;
	const struct st_profile *p;
	char err[ST_ERR_MAX];
	int rc;

	if (env->stopping)
		return;
	unschedule(s);
	r = calloc(1, sizeof(*r));
	if (!r) {
		st_err("slot %s: out of memory for a new board", s->name);
		return;
	}
	s->board = *nb;
	s->tx_max = nb->max;
	s->run = r;
	s->device_id[0] = 0;
	s->last_error[0] = 0;
	s->last_code = 0;
	s->boot_seen = 0;
	r->t_hello_sent = hello_sent;
	r->t_hello = uv_hrtime();
	r->retransmits0 = s->retransmits;
	/* From the HELLO that found the board: its bytes are this board's too. */
	r->tx0 = s->tx_bytes - s->req_len;
	r->rx0 = s->req_rx0;
	slot_set_state(s, ST_SLOT_HELLO);
	st_debug("slot %s: board hardware id '%s' sku '%s' sn '%s' device id '%s' key %s fw %s",
		 s->name, nb->hw, nb->sku, nb->sn, nb->dev, nb->key, nb->fw);

	r->pset = env->profiles(env->arg);
	if (!r->pset) {
		fail_run(s, ST_E_NOMEM, "out of memory");
		return;
	}
	rc = st_profiles_choose(r->pset, s->profile_path, nb->hw, nb->sku, &r->profile, err,
				   sizeof(err));
	if (rc < 0) {
		fail_run(s, rc, "%s", err);
		return;
	}
	p = r->profile;
	st_msgf(r->factory, sizeof(r->factory), "%s",
		p->policy.factory[0] ? p->policy.factory : env->ca->ou);
	slot_set_state(s, ST_SLOT_PROFILE);
	if (p->key_storage == ST_KEY_STORAGE_SECURE_ELEMENT && strcmp(nb->key, "se") != 0) {
		fail_run(s, ST_E_SLOT_KEY_STORAGE,
			 "profile %s requires a key in a secure element; the board reports key "
			 "storage '%s'",
			 p->sku, nb->key);
		return;
	}
	switch (p->devid_source) {
	case ST_DEVID_BOARD:
	case ST_DEVID_SECURE_ELEMENT:
		if (!nb->dev[0]) {
			fail_run(s, ST_E_SLOT_NO_DEVICE_ID,
				 "profile %s takes the device id from the board%s, which reports "
				 "none",
				 p->sku,
				 p->devid_source == ST_DEVID_SECURE_ELEMENT ? "'s secure element" :
									      "");
			return;
		}
		use_device_id(s, nb->dev);
		return;
	case ST_DEVID_UUID4:
		/* A board that already holds an id the station gave it (a retry, a crash)
		 * keeps it, so the ledger recognises it. */
		if (nb->dev[0] && st_profile_check_device_id(p, nb->dev, NULL, 0) == 0) {
			use_device_id(s, nb->dev);
		} else {
			char id[37];

			make_uuid4(id);
			use_device_id(s, id);
		}
		return;
	case ST_DEVID_SEQUENCE:
		if (nb->dev[0] && st_profile_check_device_id(p, nb->dev, NULL, 0) == 0) {
			use_device_id(s, nb->dev);
			return;
		}
		r->seq_wait = 1;
		rc = st_pool_next_sequence(env->pool, p->devid_prefix, on_sequence, s);
		if (rc < 0) {
			r->seq_wait = 0;
			fail_run(s, rc, "cannot allocate a sequence device id: %s", st_strerror(rc));
		}
		return;
	}
}

/* ---- CSR ----------------------------------------------------------------------------- */

static void send_csr(struct st_slot *s)
{
	struct slot_run *r = s->run;
	struct drv_proto_builder b;

	begin_req(s, &b, DRV_PROTO_CSR);
	drv_proto_add_text(&b, "cn", r->device_id);
	if (r->factory[0])
		drv_proto_add_text(&b, "ou", r->factory);
	if (r->profile->policy.production)
		drv_proto_add_text(&b, "bc", "production");
	drv_proto_add_text(&b, "alg", "ec-p256");
	drv_proto_add_uint(&b, "off", r->csr_have);
	send_req(s, &b, RQ_CSR);
}

static enum st_ec_curve curve_of(enum st_key_alg alg)
{
	switch (alg) {
	case ST_KEY_EC_P384:
		return ST_EC_P384;
	case ST_KEY_EC_P521:
		return ST_EC_P521;
	default:
		return ST_EC_P256;
	}
}

static void on_signed(struct st_sign_req *req);

/* Hands the request to the pool, or queues the slot for room in it. */
static void submit(struct st_slot *s)
{
	struct slot_run *r = s->run;
	struct st_slot_env *env = s->env;
	int rc;

	rc = st_pool_submit(env->pool, r->req);
	if (rc == 0) {
		r->in_pool = 1;
		if (s->room_waiting) {
			/* Left the room queue (room_drain unlinked it). */
			s->room_waiting = 0;
		}
		return;
	}
	if (rc == ST_E_POOL_FULL) {
		if (!s->room_waiting) {
			s->room_waiting = 1;
			s->room_next = NULL;
			s->room_prev = env->room_tail;
			if (env->room_tail)
				env->room_tail->room_next = s;
			else
				env->room_head = s;
			env->room_tail = s;
		}
		return;
	}
	fail_run(s, rc, "%s", rc == ST_E_INVAL ? r->req->err : st_strerror(rc));
}

static void room_remove(struct st_slot *s)
{
	struct st_slot_env *env = s->env;

	if (!s->room_waiting)
		return;
	if (s->room_prev)
		s->room_prev->room_next = s->room_next;
	else
		env->room_head = s->room_next;
	if (s->room_next)
		s->room_next->room_prev = s->room_prev;
	else
		env->room_tail = s->room_prev;
	s->room_prev = s->room_next = NULL;
	s->room_waiting = 0;
}

static void room_drain(struct st_slot_env *env)
{
	while (env->room_head && st_pool_can_submit(env->pool)) {
		struct st_slot *s = env->room_head;

		room_remove(s);
		if (s->run && s->run->req && !s->run->in_pool)
			submit(s);
	}
}

static void csr_complete(struct st_slot *s)
{
	struct slot_run *r = s->run;
	struct st_csr *csr = NULL;
	uint8_t sha[32];
	char err[ST_ERR_MAX];
	int rc;

	st_sha256(r->csr, r->csr_total, sha);
	if (memcmp(sha, r->csr_sha, sizeof(sha)) != 0) {
		/* Damage the CRC did not catch, or a CSR that changed between chunks: read it
		 * again, a few times. */
		r->csr_have = 0;
		if (++r->csr_restarts > s->env->lim.tries) {
			fail_run(s, ST_E_SLOT_CSR_HASH,
				 "the CSR's %zu bytes do not hash to the SHA-256 the board sent, "
				 "%u times",
				 r->csr_total, r->csr_restarts);
			return;
		}
		kick(s);
		return;
	}
	rc = st_csr_check(&r->profile->policy, s->env->ca->ou, r->csr, r->csr_total,
			  r->device_id, &csr, err, sizeof(err));
	if (rc < 0) {
		fail_run(s, rc, "CSR rejected: %s", err);
		return;
	}
	r->t_checked = uv_hrtime();
	r->curve = curve_of(csr->key_alg);
	r->pub_len = csr->pubkey_len < sizeof(r->pub) ? csr->pubkey_len : 0;
	memcpy(r->pub, csr->pubkey, r->pub_len);
	slot_set_state(s, ST_SLOT_CHECKED);

	r->req = st_sign_req_new();
	if (!r->req) {
		st_csr_free(csr);
		fail_run(s, ST_E_NOMEM, "out of memory");
		return;
	}
	r->req->policy = &r->profile->policy;
	st_msgf(r->req->profile, sizeof(r->req->profile), "%s", r->profile->sku);
	st_msgf(r->req->slot, sizeof(r->req->slot), "%s", s->name);
	st_msgf(r->req->device_id, sizeof(r->req->device_id), "%s", r->device_id);
	/* Only an id the board read from its secure element (and the board reported one, as
	 * start_run() checked) is the board's own; any other a board could have made up. */
	r->req->id_authenticated = r->profile->devid_source == ST_DEVID_SECURE_ELEMENT &&
				   strcmp(s->board.key, "se") == 0;
	r->req->csr = csr;
	r->req->auths = st_auth_set_ref(r->pset->auths);
	r->req->data = s;
	r->req->done = on_signed;
	slot_set_state(s, ST_SLOT_QUEUED);
	schedule(s, TW_QUEUED, s->env->lim.queued_ms);
	submit(s);
}

static int bad_answer(struct st_slot *s, int kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* An answer that is unusable (a field missing or out of range): ask again, like for a
 * damaged frame; a board that keeps answering so has failed. Returns 0. */
static int bad_answer(struct st_slot *s, int kind, const char *fmt, ...)
{
	char msg[ST_ERR_MAX];
	va_list ap;

	va_start(ap, fmt);
	st_vmsgf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	s->req_kind = kind;
	if (s->req_tries < s->env->lim.tries) {
		st_debug("slot %s: %s; asking again", s->name, msg);
		retransmit(s);
		return 0;
	}
	s->req_kind = RQ_NONE;
	if (kind == RQ_PROBE || kind == RQ_PRESENCE || !s->run) {
		st_msgf(s->last_error, sizeof(s->last_error), "%s", msg);
		schedule(s, TW_PROBE, kind == RQ_PRESENCE ? s->env->lim.presence_ms :
							  s->env->lim.probe_ms);
		return 0;
	}
	fail_run(s, ST_E_PROTO_FIELD, "%s (after %u tries)", msg, s->req_tries);
	return 0;
}

static void on_csr_answer(struct st_slot *s, const struct drv_proto_frame *f)
{
	struct slot_run *r = s->run;
	uint64_t total, off;
	uint8_t sha[32];
	size_t n;
	char err[200];

	if (drv_proto_get_uint(f, "total", 1, ST_CSR_MAX_BYTES, &total, err, sizeof(err)) ||
	    drv_proto_get_uint(f, "off", 0, ST_CSR_MAX_BYTES, &off, err, sizeof(err)) ||
	    drv_proto_get_hex(f, "sha", sha, sizeof(sha), err, sizeof(err))) {
		bad_answer(s, RQ_CSR, "CSR answer: %s", err);
		return;
	}
	if (off != r->csr_have) {
		bad_answer(s, RQ_CSR, "CSR answer for offset %" PRIu64 ", asked for %zu", off,
			   r->csr_have);
		return;
	}
	if (r->csr_have == 0) {
		uint8_t *buf = realloc(r->csr, (size_t)total);

		if (!buf) {
			fail_run(s, ST_E_NOMEM, "out of memory");
			return;
		}
		r->csr = buf;
		r->csr_total = (size_t)total;
		memcpy(r->csr_sha, sha, sizeof(sha));
	} else if (total != r->csr_total || memcmp(sha, r->csr_sha, sizeof(sha)) != 0) {
		/* The board made another CSR between two chunks (a reboot with a new key?):
		 * start over. */
		r->csr_have = 0;
		if (++r->csr_restarts > s->env->lim.tries) {
			fail_run(s, ST_E_SLOT_CSR_HASH, "the CSR changed between chunks %u times",
				 r->csr_restarts);
			return;
		}
		kick(s);
		return;
	}
	if (drv_proto_get_b64(f, "data", r->csr + r->csr_have, r->csr_total - r->csr_have, &n,
			      err, sizeof(err))) {
		bad_answer(s, RQ_CSR, "CSR answer: %s", err);
		return;
	}
	if (n == 0 && r->csr_have < r->csr_total) {
		bad_answer(s, RQ_CSR, "CSR answer at offset %zu carries no data", r->csr_have);
		return;
	}
	r->csr_have += n;
	if (r->csr_have < r->csr_total) {
		kick(s);
		return;
	}
	csr_complete(s);
}

/* ---- Signing ------------------------------------------------------------------------- */

/* Where a profile's absolute path goes on the wire (st_profile_wire_path), held to the
 * protocol's path rule, which the profile loader applied already to what it could know. */
static int proto_path(const char *dir, const char *abs, char *out, size_t outlen, char *err,
		      size_t errlen)
{
	const char *rel = st_profile_wire_path(dir, abs);
	const char *why;
	size_t bad;

	why = drv_proto_path_problem(rel, &bad);
	if (why)
		return st_errf(err, errlen, ST_E_SLOT_PATH,
			       "file %s cannot be written over the board protocol: '%s' %s", abs,
			       rel, why);
	st_msgf(out, outlen, "%s", rel);
	return 0;
}

static int prepare_files(struct st_slot *s, char *err, size_t errlen)
{
	struct slot_run *r = s->run;
	const struct st_profile *p = r->profile;
	struct st_render_input in;
	const char *dir = p->sota_config_dir ? p->sota_config_dir : ST_SOTA_DEFAULT_DIR;
	char *cert_pem = NULL;
	size_t cert_len;
	int rc;

	rc = st_cert_pem(r->cert->der, r->cert->der_len, &cert_pem, &cert_len);
	if (rc < 0)
		return st_errf(err, errlen, rc, "out of memory");
	memset(&in, 0, sizeof(in));
	in.device_id = r->device_id;
	in.hardware_id = s->board.hw;
	in.cert_pem = cert_pem;
	in.chain_pem = s->env->chain_pem;
	in.root_pem = s->env->root_pem;
	rc = st_profile_render(p, &in, &r->render, err, errlen);
	free(cert_pem);
	if (rc < 0)
		return rc;
	r->nfiles = r->render->n;
	r->wf = calloc(r->nfiles ? r->nfiles : 1, sizeof(*r->wf));
	if (!r->wf)
		return st_errf(err, errlen, ST_E_NOMEM, "out of memory");
	for (size_t i = 0; i < r->nfiles; i++) {
		const struct st_render_file *rf = &r->render->files[i];
		struct wfile *w = &r->wf[i];

		rc = proto_path(dir, rf->path, w->path, sizeof(w->path), err, errlen);
		if (rc < 0)
			return rc;
		for (size_t j = 0; j < i; j++) {
			if (strcmp(r->wf[j].path, w->path) == 0)
				return st_errf(err, errlen, ST_E_SLOT_PATH,
					       "files %s and %s both go to %s on the board",
					       r->render->files[j].path, rf->path, w->path);
		}
		st_msgf(w->mode, sizeof(w->mode), "%04o", rf->mode & 07777);
		w->data = rf->data;
		w->len = rf->len;
		st_sha256(rf->data, rf->len, w->sha);
	}
	return 0;
}

static void on_signed(struct st_sign_req *req)
{
	struct st_slot *s = req->data;
	struct slot_run *r = s->run;
	char err[ST_ERR_MAX];
	int rc;

	if (!r || r->req != req) {
		/* Cannot happen: a run that ends cancels its request. */
		st_sign_req_free(req);
		room_drain(s->env);
		return;
	}
	r->req = NULL;
	r->in_pool = 0;
	r->pt = req->t;
	if (req->rc < 0) {
		/* The pool marked the intent row failed itself, if there was one. */
		int code = req->rc;

		st_msgf(err, sizeof(err), "%s", req->err);
		st_sign_req_free(req);
		fail_run(s, code, "%s", err);
		room_drain(s->env);
		return;
	}
	r->cert = req->cert;
	req->cert = NULL;
	r->row_id = req->row_id;
	r->reused = req->reused;
	st_msgf(r->auth_id, sizeof(r->auth_id), "%s", req->auth_id);
	st_sign_req_free(req);
	r->t_signed = uv_hrtime();
	unschedule(s);
	slot_set_state(s, ST_SLOT_SIGNED);
	rc = prepare_files(s, err, sizeof(err));
	if (rc < 0)
		fail_run(s, rc, "%s", err);
	else
		kick(s);
	room_drain(s->env);
}

/* ---- Files --------------------------------------------------------------------------- */

static void send_commit(struct st_slot *s)
{
	struct drv_proto_builder b;

	begin_req(s, &b, DRV_PROTO_COMMIT);
	drv_proto_add_uint(&b, "count", s->run->nfiles);
	send_req(s, &b, RQ_COMMIT);
}

static void send_write(struct st_slot *s)
{
	struct slot_run *r = s->run;
	struct drv_proto_builder b;
	struct wfile *w;
	size_t n;

	if (r->wi >= r->nfiles) {
		slot_set_state(s, ST_SLOT_WRITTEN);
		send_commit(s);
		return;
	}
	w = &r->wf[r->wi];
	begin_req(s, &b, DRV_PROTO_WRITE);
	drv_proto_add_text(&b, "path", w->path);
	drv_proto_add_text(&b, "mode", w->mode);
	drv_proto_add_uint(&b, "size", w->len);
	drv_proto_add_hex(&b, "sha", w->sha, sizeof(w->sha));
	drv_proto_add_uint(&b, "off", r->woff);
	n = drv_proto_b64_room(&b, "data");
	if (n > w->len - r->woff)
		n = w->len - (size_t)r->woff;
	drv_proto_add_b64(&b, "data", w->data + r->woff, n);
	send_req(s, &b, RQ_WRITE);
}

static void on_write_answer(struct st_slot *s, const struct drv_proto_frame *f)
{
	struct slot_run *r = s->run;
	struct wfile *w = &r->wf[r->wi];
	char path[ST_ESCAPE_SIZE(MAX_PROTO_PATH)], err[ST_ERR_MAX];
	uint64_t have, done;

	if (board_text(f, "path", NULL, MAX_PROTO_PATH, path, sizeof(path), err, sizeof(err)) ||
	    drv_proto_get_uint(f, "have", 0, UINT64_MAX, &have, err, sizeof(err)) ||
	    drv_proto_get_uint(f, "done", 0, 1, &done, err, sizeof(err))) {
		bad_answer(s, RQ_WRITE, "WRITE answer: %s", err);
		return;
	}
	if (strcmp(path, w->path) != 0 || have > w->len) {
		bad_answer(s, RQ_WRITE, "WRITE answer for %s with %" PRIu64 " bytes; sent %s of %zu",
			   path, have, w->path, w->len);
		return;
	}
	if (done) {
		r->wi++;
		r->woff = 0;
		r->stalls = 0;
	} else if (have > r->woff) {
		r->woff = have;
		r->stalls = 0;
	} else {
		/* The board did not take the chunk: go on from what it has, a few times. */
		r->woff = have;
		if (++r->stalls > s->env->lim.tries) {
			fail_run(s, ST_E_PROTO_REMOTE,
				 "the board keeps reporting %" PRIu64 " of %zu bytes of %s", have,
				 w->len, w->path);
			return;
		}
	}
	kick(s);
}

/* Writing starts over (the board lost its staged files); bounded. Returns 0 to go on. */
static int restart_writing(struct st_slot *s, const char *why)
{
	struct slot_run *r = s->run;

	r->wi = 0;
	r->woff = 0;
	if (++r->write_restarts > 2 * s->env->lim.tries) {
		fail_run(s, ST_E_PROTO_REMOTE, "writing the files started over %u times; last: %s",
			 r->write_restarts, why);
		return -1;
	}
	slot_set_state(s, ST_SLOT_SIGNED);
	return 0;
}

/* ---- VERIFY -------------------------------------------------------------------------- */

static void new_nonce(struct slot_run *r)
{
	if (RAND_bytes(r->nonce, sizeof(r->nonce)) != 1)
		st_err("RAND_bytes failed: the VERIFY nonce is weak");
	r->vseen = 0;
	r->vfiles = 0;
	for (size_t i = 0; i < r->nfiles; i++)
		r->wf[i].seen = 0;
}

static void send_verify(struct st_slot *s)
{
	struct slot_run *r = s->run;
	struct drv_proto_builder b;

	begin_req(s, &b, DRV_PROTO_VERIFY);
	drv_proto_add_b64(&b, "nonce", r->nonce, sizeof(r->nonce));
	drv_proto_add_uint(&b, "from", r->vseen);
	send_req(s, &b, RQ_VERIFY);
}

static void on_commit_answer(struct st_slot *s, const struct drv_proto_frame *f)
{
	struct slot_run *r = s->run;
	uint64_t gen, files;
	char err[200];

	if (drv_proto_get_uint(f, "gen", 0, UINT64_MAX, &gen, err, sizeof(err)) ||
	    drv_proto_get_uint(f, "files", 0, UINT64_MAX, &files, err, sizeof(err))) {
		bad_answer(s, RQ_COMMIT, "COMMIT answer: %s", err);
		return;
	}
	r->t_committed = uv_hrtime();
	slot_set_state(s, ST_SLOT_COMMITTED);
	new_nonce(r);
	kick(s);
}

static int check_pop(struct slot_run *r, const uint8_t *sig, size_t siglen)
{
	uint8_t msg[sizeof(DRV_PROTO_POP_CONTEXT) - 1 + NONCE_LEN], digest[32];
	size_t ctx = sizeof(DRV_PROTO_POP_CONTEXT) - 1;
	EC_KEY *key;
	int v;

	memcpy(msg, DRV_PROTO_POP_CONTEXT, ctx);
	memcpy(msg + ctx, r->nonce, NONCE_LEN);
	st_sha256(msg, sizeof(msg), digest);
	key = st_ec_key_from_point(r->curve, r->pub, r->pub_len);
	if (!key)
		return -1;
	v = st_ecdsa_verify(key, digest, sizeof(digest), sig, siglen);
	st_ec_key_free(key);
	return v == 1 ? 0 : -1;
}

static void on_verify_answer(struct st_slot *s, const struct drv_proto_frame *f)
{
	struct slot_run *r = s->run;
	const struct drv_proto_field *fld = NULL;
	uint64_t gen, files, from;
	uint8_t sig[DRV_SIGNER_MAX_SIG + 16];
	size_t siglen;
	unsigned entries = 0;
	char alg[ST_ESCAPE_SIZE(31)], err[ST_ERR_MAX];

	if (drv_proto_get_uint(f, "gen", 0, UINT64_MAX, &gen, err, sizeof(err)) ||
	    drv_proto_get_uint(f, "files", 0, 4096, &files, err, sizeof(err)) ||
	    drv_proto_get_uint(f, "from", 0, 4096, &from, err, sizeof(err)) ||
	    board_text(f, "alg", NULL, 31, alg, sizeof(alg), err, sizeof(err)) ||
	    drv_proto_get_b64(f, "sig", sig, sizeof(sig), &siglen, err, sizeof(err))) {
		bad_answer(s, RQ_VERIFY, "VERIFY answer: %s", err);
		return;
	}
	if (from != r->vseen) {
		bad_answer(s, RQ_VERIFY, "VERIFY answer from file %" PRIu64 ", asked from %" PRIu64,
			   from, r->vseen);
		return;
	}
	if (r->vseen == 0) {
		if (strcmp(alg, "ecdsa-p256-sha256") != 0) {
			fail_run(s, ST_E_SLOT_VERIFY_POP,
				 "the board signed the nonce with '%s'; expected ecdsa-p256-sha256",
				 alg);
			return;
		}
		if (check_pop(r, sig, siglen) != 0) {
			fail_run(s, ST_E_SLOT_VERIFY_POP,
				 "the nonce signature does not verify under the public key of "
				 "certificate %s",
				 r->cert->serial_hex);
			return;
		}
		r->vfiles = files;
	}
	while ((fld = drv_proto_find_next(f, fld, "file"))) {
		char path[ST_ESCAPE_SIZE(MAX_PROTO_PATH)], size_s[ST_ESCAPE_SIZE(23)];
		char hex[ST_ESCAPE_SIZE(71)];
		uint8_t sha[32];
		char *end;
		unsigned long long size;

		if (board_item(f, fld, 0, MAX_PROTO_PATH, path, sizeof(path), err, sizeof(err)) ||
		    board_item(f, fld, 1, 23, size_s, sizeof(size_s), err, sizeof(err)) ||
		    board_item(f, fld, 2, 71, hex, sizeof(hex), err, sizeof(err))) {
			bad_answer(s, RQ_VERIFY, "VERIFY answer: file entry: %s", err);
			return;
		}
		size = strtoull(size_s, &end, 10);
		if (!size_s[0] || *end || strlen(hex) != 64) {
			bad_answer(s, RQ_VERIFY, "VERIFY answer: malformed file entry for %s", path);
			return;
		}
		for (int i = 0; i < 32; i++) {
			unsigned v;

			if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
				bad_answer(s, RQ_VERIFY, "VERIFY answer: bad SHA-256 for %s", path);
				return;
			}
			sha[i] = (uint8_t)v;
		}
		entries++;
		for (size_t i = 0; i < r->nfiles; i++) {
			struct wfile *w = &r->wf[i];

			if (strcmp(w->path, path) != 0)
				continue;
			if (size != w->len || memcmp(sha, w->sha, 32) != 0) {
				fail_run(s, ST_E_SLOT_VERIFY_FILE,
					 "read back %s: %llu bytes, SHA-256 %.16s...; written %zu "
					 "bytes with another hash",
					 path, size, hex, w->len);
				return;
			}
			w->seen = 1;
		}
	}
	r->vseen += entries;
	if (r->vseen < r->vfiles) {
		if (entries == 0) {
			bad_answer(s, RQ_VERIFY, "VERIFY answer lists no file at %" PRIu64 " of %" PRIu64,
				   r->vseen, r->vfiles);
			return;
		}
		kick(s);
		return;
	}
	for (size_t i = 0; i < r->nfiles; i++) {
		if (!r->wf[i].seen) {
			fail_run(s, ST_E_SLOT_VERIFY_FILE,
				 "%s was written and committed but the board does not list it "
				 "(generation %" PRIu64 ", %" PRIu64 " files)",
				 r->wf[i].path, gen, files);
			return;
		}
	}
	slot_set_state(s, ST_SLOT_VERIFIED);
	kick(s);
}

/* ---- DONE and the end of a board ---------------------------------------------------- */

static void send_done(struct st_slot *s, int pass)
{
	struct slot_run *r = s->run;
	struct drv_proto_builder b;
	char text[96];

	if (pass)
		st_msgf(text, sizeof(text), "provisioned %s", r->device_id);
	else
		st_msgf(text, sizeof(text), "%s: %.70s", st_errname(r->fail_code), r->fail_msg);
	begin_req(s, &b, DRV_PROTO_DONE);
	drv_proto_add_text(&b, "result", pass ? "pass" : "fail");
	drv_proto_add_text(&b, "text", text);
	send_req(s, &b, RQ_DONE);
	/* Telling a failed board is a courtesy: one retransmission at most. */
	if (!pass && s->req_kind == RQ_DONE && s->env->lim.tries > 2)
		s->req_tries = s->env->lim.tries - 1;
}

static void save_console(struct st_slot *s, char *path, size_t pathlen);

/* The production record of the board (ledger.h's attempts): every board that finished or
 * was abandoned, with what it reported and why it failed, whether or not it got as far as
 * the signing pool. */
static void record_attempt(struct st_slot *s, const struct st_outcome *o)
{
	struct slot_run *r = s->run;
	struct st_ledger_attempt a;
	int rc;

	memset(&a, 0, sizeof(a));
	a.slot = s->name;
	a.outcome = o->abandoned ? "abandoned" : o->pass ? "pass" : "fail";
	a.reason = o->reason;
	a.error = o->error;
	a.device_id = r->device_id;
	a.serial = o->serial;
	a.board_sn = s->board.sn;
	a.hardware_id = s->board.hw;
	a.sku = s->board.sku;
	a.firmware = s->board.fw;
	a.profile = o->profile;
	a.auth_id = r->auth_id;
	a.certificate = r->row_id;
	a.reused = r->reused;
	a.ms = o->ms[ST_PHASE_TOTAL] >= 0 ? (int64_t)o->ms[ST_PHASE_TOTAL] : -1;
	rc = s->env->pool ? st_pool_record_attempt(s->env->pool, &a) : ST_E_POOL_CLOSED;
	if (rc < 0)
		st_warn("slot %s: device %s: the attempt is not recorded in the ledger: %s",
			s->name, r->device_id[0] ? r->device_id : "(none yet)", st_strerror(rc));
}

static void report_outcome(struct st_slot *s, int pass, int abandoned, const char *console_log)
{
	struct slot_run *r = s->run;
	struct st_slot_env *env = s->env;
	struct st_outcome o;
	uint64_t now = uv_hrtime(), q_end, rec_start;

	memset(&o, 0, sizeof(o));
	for (int p = 0; p < ST_PHASE_COUNT; p++)
		o.ms[p] = -1;
	o.slot = s->name;
	o.pass = pass;
	o.abandoned = abandoned;
	o.reused = r->reused;
	if (!pass) {
		o.reason = st_errname(r->fail_code);
		o.error = r->fail_msg;
		o.state = st_slot_state_name(r->fail_state);
	}
	o.device_id = r->device_id;
	o.hardware_id = s->board.hw;
	o.sku = s->board.sku;
	o.sn = s->board.sn;
	o.profile = r->profile ? r->profile->sku : NULL;
	o.serial = r->cert ? r->cert->serial_hex : NULL;
	o.row_id = r->row_id;
	q_end = r->pt.sign_start ? r->pt.sign_start : r->pt.intent;
	rec_start = r->pt.sign_end ? r->pt.sign_end : r->pt.intent;
	o.ms[ST_PHASE_HELLO] = ms_between(r->t_hello_sent, r->t_hello);
	o.ms[ST_PHASE_CSR] = ms_between(r->t_hello, r->t_checked);
	o.ms[ST_PHASE_QUEUE] = ms_between(r->t_checked, q_end);
	o.ms[ST_PHASE_SIGN] = ms_between(r->pt.sign_start, r->pt.sign_end);
	o.ms[ST_PHASE_RECORD] = ms_between(rec_start, r->t_signed);
	o.ms[ST_PHASE_WRITE] = ms_between(r->t_signed, r->t_committed);
	o.ms[ST_PHASE_VERIFY] = ms_between(r->t_committed, r->t_done);
	o.ms[ST_PHASE_TOTAL] = ms_between(r->t_hello_sent, pass ? r->t_done : now);
	o.retransmits = (unsigned)(s->retransmits - r->retransmits0);
	o.resyncs = r->resyncs;
	o.tx_bytes = s->tx_bytes - r->tx0;
	o.rx_bytes = s->rx_bytes - r->rx0;
	o.baud = s->cur_baud;
	o.console_log = console_log;
	st_events_outcome(env->events, &o, r->t_hello_sent, now);
	record_attempt(s, &o);
	if (abandoned)
		return;
	s->last_pass = pass;
	s->handled++;
	s->passed += pass != 0;
	if (env->outcome)
		env->outcome(env->arg, s, pass);
}

/* Gives up whatever the pool holds for the run. */
static void release_signing(struct st_slot *s)
{
	struct slot_run *r = s->run;

	room_remove(s);
	if (!r->req)
		return;
	if (r->in_pool)
		st_pool_cancel(s->env->pool, r->req);
	else
		st_sign_req_free(r->req);
	r->req = NULL;
	r->in_pool = 0;
}

static void pass_run(struct st_slot *s)
{
	struct slot_run *r = s->run;

	r->t_done = uv_hrtime();
	slot_set_state(s, ST_SLOT_PASS);
	if (r->row_id > 0 && st_pool_mark_delivered(s->env->pool, r->row_id, NULL, NULL) < 0)
		st_warn("slot %s: device %s: could not queue the delivery of ledger row %lld",
			s->name, r->device_id, (long long)r->row_id);
	st_info("slot %s: device %s: pass%s, serial %s, %.0f ms", s->name, r->device_id,
		r->reused ? " (recorded certificate delivered again)" : "",
		r->cert ? r->cert->serial_hex : "?", ms_between(r->t_hello_sent, r->t_done));
	report_outcome(s, 1, 0, NULL);
	end_run(s);
}

static void vfail(struct st_slot *s, int code, int tell_board, const char *fmt, va_list ap)
{
	struct slot_run *r = s->run;
	char console[4096] = "";

	if (!r || r->failed)
		return;
	if (s->state == ST_SLOT_VERIFIED) {
		/* The board proved that it holds its key and every file; only DONE, which tells
		 * it so, was left. Whatever happens now (its answer is damaged and the next
		 * board already answers in its fixture, its port hangs up for good), it is
		 * provisioned, and the record says so. */
		char msg[ST_ERR_MAX];

		st_vmsgf(msg, sizeof(msg), fmt, ap);
		st_warn("slot %s: device %s: verified, then: %s; it counts as provisioned", s->name,
			r->device_id, msg);
		pass_run(s);
		return;
	}
	r->failed = 1;
	r->fail_code = code;
	r->fail_state = s->state;
	st_vmsgf(r->fail_msg, sizeof(r->fail_msg), fmt, ap);
	st_msgf(s->last_error, sizeof(s->last_error), "%s: %s", st_errname(code), r->fail_msg);
	s->last_code = code;
	st_warn("slot %s: device %s: failed in %s: %s", s->name,
		r->device_id[0] ? r->device_id : "(none yet)", st_slot_state_name(s->state),
		r->fail_msg);
	release_signing(s);
	if (r->row_id > 0 && !r->reused &&
	    st_pool_mark_failed(s->env->pool, r->row_id, r->fail_msg, NULL, NULL) < 0)
		st_warn("slot %s: could not queue the failure of ledger row %lld", s->name,
			(long long)r->row_id);
	save_console(s, console, sizeof(console));
	report_outcome(s, 0, 0, console[0] ? console : NULL);
	if (s->req_kind != RQ_NONE) {
		s->req_kind = RQ_NONE;
		unschedule(s);
	}
	slot_set_state(s, ST_SLOT_FAILED);
	if (tell_board && s->port && !r->port_lost && !s->env->stopping)
		kick(s);
	else
		end_run(s);
}

static void fail_run(struct st_slot *s, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail(s, code, 1, fmt, ap);
	va_end(ap);
}

/* A failure the board in the slot must not be told about (it is another board). */
static void fail_run_quiet(struct st_slot *s, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail(s, code, 0, fmt, ap);
	va_end(ap);
}

/* The station stops with the board in flight: not its fault, and nothing is lost. A
 * certificate that was signed is recorded; its row is marked failed so that the board's
 * next run gets that certificate again (the ledger's "recorded" verdict). */
static void abandon_run(struct st_slot *s)
{
	struct slot_run *r = s->run;

	r->failed = 1;
	r->fail_code = ST_E_ENGINE_STOPPING;
	r->fail_state = s->state;
	st_msgf(r->fail_msg, sizeof(r->fail_msg),
		"the station stopped while the board was in state %s; its next run resumes it",
		st_slot_state_name(s->state));
	st_notice("slot %s: device %s: abandoned in %s (station stopping)", s->name,
		  r->device_id[0] ? r->device_id : "(none yet)", st_slot_state_name(s->state));
	release_signing(s);
	if (r->row_id > 0 && !r->reused)
		st_pool_mark_failed(s->env->pool, r->row_id, "station stopping", NULL, NULL);
	report_outcome(s, 0, 1, NULL);
	end_run(s);
}

static void end_run(struct st_slot *s)
{
	struct slot_run *r = s->run;

	if (!r)
		return;
	release_signing(s);
	s->run = NULL;
	st_profiles_unref(r->pset);
	free(r->csr);
	st_cert_free(r->cert);
	st_render_free(r->render);
	free(r->wf);
	free(r);
	uv_timer_stop(&s->aux);
	/* The console ring starts afresh for the next board, and so does the line watch. */
	s->con_head = s->con_len = 0;
	line_heard(s);
	if (s->req_kind != RQ_NONE) {
		s->req_kind = RQ_NONE;
		unschedule(s);
	}
	if (s->env->stopping)
		return;
	if (s->port) {
		slot_set_state(s, ST_SLOT_LEAVING);
		schedule(s, TW_PROBE, s->env->lim.presence_ms);
	} else {
		slot_set_state(s, ST_SLOT_OFFLINE);
		schedule(s, TW_REOPEN, s->env->lim.reopen_ms);
	}
}

/* ---- Console logs of failed boards --------------------------------------------------- */

struct console_save {
	uv_fs_t req;
	struct st_slot_env *env;
	uv_buf_t buf;
	uv_file fd;
	char path[1];
};

static void on_save_closed(uv_fs_t *req)
{
	struct console_save *cs = req->data;

	uv_fs_req_cleanup(req);
	cs->env->saving--;
	free(cs->buf.base);
	free(cs);
}

static void on_save_written(uv_fs_t *req)
{
	struct console_save *cs = req->data;

	if (req->result < 0)
		st_warn("console log %s: %s", cs->path, uv_strerror((int)req->result));
	uv_fs_req_cleanup(req);
	if (uv_fs_close(req->loop, &cs->req, cs->fd, on_save_closed) < 0)
		on_save_closed(&cs->req);
}

static void on_save_opened(uv_fs_t *req)
{
	struct console_save *cs = req->data;
	uv_loop_t *loop = req->loop;

	if (req->result < 0) {
		st_warn("console log %s: %s", cs->path, uv_strerror((int)req->result));
		uv_fs_req_cleanup(req);
		cs->env->saving--;
		free(cs->buf.base);
		free(cs);
		return;
	}
	cs->fd = (uv_file)req->result;
	uv_fs_req_cleanup(req);
	if (uv_fs_write(loop, &cs->req, cs->fd, &cs->buf, 1, -1, on_save_written) < 0)
		on_save_written(&cs->req);
}

static void clean_name(char *out, size_t outlen, const char *in)
{
	size_t i;

	for (i = 0; in[i] && i + 1 < outlen; i++) {
		char c = in[i];

		out[i] = ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.') ?
				 c :
				 '_';
	}
	out[i] = 0;
}

/* A console log's header: whose console it is and why it was kept. */
#define CONSOLE_HDR_MAX (ST_ERR_MAX + 4 * ST_SLOT_TEXT_SIZE)

/* Writes the console ring (and a header saying whose it is) to the console directory, in
 * the background (libuv's fs work); path receives the file name. Nothing when no directory
 * is configured. The console is written as printable text (st_escape() keeping its lines):
 * an operator reads it on a terminal, which must not obey what the board printed. */
static void save_console(struct st_slot *s, char *path, size_t pathlen)
{
	struct slot_run *r = s->run;
	struct st_slot_env *env = s->env;
	struct console_save *cs;
	char slot[ST_SLOT_MAX_NAME + 1], who[ST_PROFILE_MAX_ID + 1], stamp[32];
	struct timespec ts;
	struct tm tm;
	size_t hdr, len, first;
	char *buf, *ring;
	int n;

	path[0] = 0;
	if (!env->console_dir)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%S", &tm);
	clean_name(slot, sizeof(slot), s->name);
	clean_name(who, sizeof(who), r->device_id[0] ? r->device_id :
				     s->board.sn[0] ? s->board.sn : "unknown");
	n = snprintf(path, pathlen, "%s/%s-%s-%s.%03ldZ.log", env->console_dir, slot, who, stamp,
		     ts.tv_nsec / 1000000L);
	if (n < 0 || (size_t)n >= pathlen) {
		path[0] = 0;
		return;
	}
	len = CONSOLE_HDR_MAX + ST_ESCAPE_SIZE(s->con_len);
	buf = malloc(len);
	ring = malloc(s->con_len + 1);
	cs = calloc(1, sizeof(*cs) + (size_t)n);
	if (!buf || !ring || !cs) {
		free(buf);
		free(ring);
		free(cs);
		path[0] = 0;
		return;
	}
	st_msgf(buf, CONSOLE_HDR_MAX,
		"# station console log: slot %s, device %s, hardware id %s, sn %s\n"
		"# failed in %s: %s: %s\n",
		s->name, r->device_id, s->board.hw, s->board.sn, st_slot_state_name(r->fail_state),
		st_errname(r->fail_code), r->fail_msg);
	hdr = strlen(buf);
	first = ST_SLOT_CONSOLE - s->con_head;
	if (first > s->con_len)
		first = s->con_len;
	memcpy(ring, s->console + s->con_head, first);
	memcpy(ring + first, s->console, s->con_len - first);
	st_escape(buf + hdr, len - hdr, ring, s->con_len, ST_ESCAPE_LINES);
	free(ring);
	memcpy(cs->path, path, (size_t)n + 1);
	cs->env = env;
	cs->buf = uv_buf_init(buf, (unsigned)strlen(buf));
	cs->req.data = cs;
	env->saving++;
	if (uv_fs_open(env->loop, &cs->req, cs->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
		       0644, on_save_opened) < 0) {
		env->saving--;
		free(buf);
		free(cs);
		path[0] = 0;
	}
}

/* ---- Boards coming and going --------------------------------------------------------- */

/* Whether nb is the board the slot knows (old), across a reboot or reconnect. */
static int same_board(const struct st_slot_board *old, const struct st_slot_board *nb,
		      const char *assigned_id)
{
	if (strcmp(old->hw, nb->hw) != 0)
		return 0;
	if (old->sn[0] && nb->sn[0])
		return strcmp(old->sn, nb->sn) == 0;
	return strcmp(old->dev, nb->dev) == 0 || !old->dev[0] ||
	       (assigned_id && strcmp(nb->dev, assigned_id) == 0);
}

/* The board in flight rebooted, reconnected or lost its session: greet it again. */
static void resync(struct st_slot *s)
{
	struct slot_run *r = s->run;

	if (++r->resyncs > s->env->lim.resyncs) {
		fail_run(s, ST_E_SLOT_RESYNC, "the board rebooted or reconnected %u times",
			 r->resyncs - 1);
		return;
	}
	send_hello(s, RQ_RESYNC);
}

/* The same board is back after a resync: carry on from what it still has. */
static void resume(struct st_slot *s, int rebooted)
{
	struct slot_run *r = s->run;

	switch (s->state) {
	case ST_SLOT_CSR:
		r->csr_have = 0;
		break;
	case ST_SLOT_SIGNED:
		/* Each file's first answer says how much of it the board still has. */
		r->wi = 0;
		r->woff = 0;
		break;
	case ST_SLOT_WRITTEN:
		if (rebooted && restart_writing(s, "the board rebooted before COMMIT") < 0)
			return;
		break;
	case ST_SLOT_COMMITTED:
		new_nonce(r);
		break;
	case ST_SLOT_QUEUED:
		schedule(s, TW_QUEUED, s->env->lim.queued_ms);
		return;
	default:
		break;
	}
	kick(s);
}

static int parse_hello(const struct drv_proto_frame *f, struct st_slot_board *nb, char *err,
		       size_t errlen)
{
	uint64_t max = DRV_PROTO_MIN_LINE, gen = 0;
	const struct drv_proto_field *bauds;

	memset(nb, 0, sizeof(*nb));
	if (board_text(f, "dev", "", ST_SLOT_MAX_TEXT, nb->dev, sizeof(nb->dev), err, errlen) ||
	    board_text(f, "hw", "", ST_SLOT_MAX_TEXT, nb->hw, sizeof(nb->hw), err, errlen) ||
	    board_text(f, "sku", "", ST_SLOT_MAX_TEXT, nb->sku, sizeof(nb->sku), err, errlen) ||
	    board_text(f, "fw", "", ST_SLOT_MAX_TEXT, nb->fw, sizeof(nb->fw), err, errlen) ||
	    board_text(f, "sn", "", ST_SLOT_MAX_TEXT, nb->sn, sizeof(nb->sn), err, errlen) ||
	    board_text(f, "key", "", 15, nb->key, sizeof(nb->key), err, errlen) ||
	    board_text(f, "boot", "", 39, nb->boot, sizeof(nb->boot), err, errlen))
		return -1;
	/* A UUID in upper case is the same device as in lower case: one spelling from here. */
	st_device_id_normalize(nb->dev);
	if (drv_proto_has(f, "max") &&
	    drv_proto_get_uint(f, "max", DRV_PROTO_MIN_LINE, UINT32_MAX, &max, err, errlen))
		return -1;
	if (drv_proto_has(f, "gen") &&
	    drv_proto_get_uint(f, "gen", 0, UINT64_MAX, &gen, err, errlen))
		return -1;
	nb->max = max > DRV_PROTO_MAX_LINE ? DRV_PROTO_MAX_LINE : (unsigned)max;
	nb->gen = gen;
	bauds = drv_proto_find(f, "bauds");
	for (unsigned i = 0; bauds && nb->nbauds < sizeof(nb->bauds) / sizeof(nb->bauds[0]);
	     i++) {
		char item[16], *end;
		unsigned long v;

		if (drv_proto_field_item(f, bauds, i, item, sizeof(item), NULL, 0) != 0)
			break;
		/* A rate this station cannot name is left out, not an error: BAUD is optional. */
		v = strtoul(item, &end, 10);
		if (end != item && !*end && v >= 50 && v <= 4000000)
			nb->bauds[nb->nbauds++] = (int)v;
	}
	return 0;
}

static void on_hello_answer(struct st_slot *s, int kind, const struct drv_proto_frame *f,
			    uint64_t sent)
{
	struct st_slot_board nb;
	char err[ST_ERR_MAX];

	if (parse_hello(f, &nb, err, sizeof(err)) != 0) {
		bad_answer(s, kind, "HELLO answer: %s", err);
		return;
	}
	switch (kind) {
	case RQ_PROBE:
		if (s->state == ST_SLOT_WAITING)
			start_run(s, &nb, sent);
		return;
	case RQ_PRESENCE:
		if (s->state != ST_SLOT_LEAVING)
			return;
		if (same_board(&s->board, &nb, s->device_id) &&
		    !(s->boot_seen && s->last_pass == 0)) {
			/* Still there, finished. A failed board that rebooted gets another go. */
			s->board.max = nb.max;
			s->boot_seen = 0;
			schedule(s, TW_PROBE, s->env->lim.presence_ms);
			return;
		}
		slot_set_state(s, ST_SLOT_WAITING);
		start_run(s, &nb, sent);
		return;
	case RQ_BAUD_HELLO:
	case RQ_RESYNC:
		if (!s->run)
			return;
		if (kind == RQ_BAUD_HELLO) {
			st_debug("slot %s: device %s: line at %d baud", s->name, s->run->device_id,
				 s->cur_baud);
			s->run->baud_to = s->cur_baud;
		}
		s->run->rate_flipped = 0;
		if (!same_board(&s->board, &nb, s->run->device_id)) {
			fail_run_quiet(s, ST_E_SLOT_BOARD_LEFT,
				       "another board (hardware id '%s', sn '%s', device id '%s') "
				       "answered in its place",
				       nb.hw, nb.sn, nb.dev);
			if (s->state == ST_SLOT_LEAVING) {
				slot_set_state(s, ST_SLOT_WAITING);
				start_run(s, &nb, sent);
			}
			return;
		}
		{
			int rebooted = strcmp(nb.boot, s->board.boot) != 0;

			s->board = nb;
			s->tx_max = nb.max;
			resume(s, rebooted);
		}
		return;
	}
}

/* ---- Frames from the board ------------------------------------------------------------- */

static void request_failed(struct st_slot *s, int kind)
{
	const struct st_slot_limits *l = &s->env->lim;

	switch (kind) {
	case RQ_PROBE:
		send_hello(s, RQ_PROBE);
		return;
	case RQ_PRESENCE:
		/* Silence: the finished board is gone (powered off, removed); the next one
		 * starts at the line's starting rate. */
		line_reset(s);
		slot_set_state(s, ST_SLOT_WAITING);
		send_hello(s, RQ_PROBE);
		return;
	case RQ_BAUD:
		/* Unanswered: if the board switched all the same, it falls back by itself,
		 * and the retransmissions at this rate outlast its trial. */
		kick(s);
		return;
	case RQ_BAUD_HELLO:
		baud_fell_back(s, "no answer to HELLO");
		return;
	case RQ_DONE:
		if (s->run && s->run->failed) {
			end_run(s);
		} else if (s->run) {
			st_warn("slot %s: device %s: DONE was not answered; the board is verified "
				"and counts as provisioned",
				s->name, s->run->device_id);
			pass_run(s);
		}
		return;
	default:
		if (s->run && s->run->baud_to && !s->run->rate_flipped) {
			/* The board may be at the other rate: a reboot takes it back to the
			 * starting one, a port that came back alone finds it at the new one.
			 * Once per silence: a board that answers at neither has hung. */
			int to = s->cur_baud == s->run->baud_to ? base_baud(s) : s->run->baud_to;

			st_info("slot %s: device %s: no answer to %s at %d baud after %u tries; "
				"trying the board at %d",
				s->name, s->run->device_id, s->req_type, s->cur_baud, s->req_tries,
				to);
			s->run->rate_flipped = 1;
			set_rate(s, to);
			resync(s);
			return;
		}
		fail_run(s, ST_E_PROTO_TIMEOUT, "the board did not answer %s after %u tries (%u ms each)",
			 s->req_type, s->req_tries, timeout_of(s, kind));
		(void)l;
		return;
	}
}

static void on_request_timeout(struct st_slot *s)
{
	int kind = s->req_kind;

	if (kind == RQ_NONE)
		return;
	if (kind != RQ_PROBE && s->req_tries < s->env->lim.tries) {
		st_debug("slot %s: no answer to %s (seq %u) in %u ms; sending it again", s->name,
			 s->req_type, s->req_seq, s->req_timeout);
		retransmit(s);
		return;
	}
	s->req_kind = RQ_NONE;
	request_failed(s, kind);
}

/* A damaged frame arrived: most likely the answer. Ask again now rather than wait. */
static void on_damaged(struct st_slot *s)
{
	/* At a new rate on trial the timer decides: hurried retransmissions would end the
	 * trial before the board's, and the two sides would part at different rates. */
	if (s->req_kind == RQ_NONE || s->req_kind == RQ_BAUD_HELLO || s->req_off < s->req_len)
		return;
	if (s->req_tries < s->env->lim.tries) {
		retransmit(s);
		return;
	}
	/* The timer decides: the good copy may still be on its way. */
}

static void on_boot(struct st_slot *s)
{
	switch (s->state) {
	case ST_SLOT_WAITING:
		send_hello(s, RQ_PROBE);
		return;
	case ST_SLOT_LEAVING:
		s->boot_seen = 1;
		send_hello(s, RQ_PRESENCE);
		return;
	default:
		if (s->run && !s->run->failed) {
			st_info("slot %s: device %s: the board rebooted in state %s", s->name,
				s->run->device_id, st_slot_state_name(s->state));
			resync(s);
		} else if (s->run) {
			/* Failed, telling it: it will not hear; it is finished anyway. */
			end_run(s);
		}
		return;
	}
}

static void on_error_answer(struct st_slot *s, int kind, const struct drv_proto_frame *f)
{
	char code[ST_ESCAPE_SIZE(23)], text[ST_ERR_MAX];
	uint64_t have;

	/* The board's own word on what failed: kept whole, however long (escaped, and cut past
	 * ST_ERR_MAX saying so). */
	if (board_text(f, "code", "?", 23, code, sizeof(code), NULL, 0) != 0)
		st_msgf(code, sizeof(code), "?");
	board_text(f, "text", "", DRV_PROTO_MAX_LINE, text, sizeof(text), NULL, 0);
	if (kind == RQ_PROBE || kind == RQ_PRESENCE) {
		st_msgf(s->last_error, sizeof(s->last_error), "HELLO: ERROR %s: %s", code, text);
		schedule(s, TW_PROBE, kind == RQ_PROBE ? s->env->lim.probe_ms :
							 s->env->lim.presence_ms);
		return;
	}
	if (kind == RQ_DONE) {
		request_failed(s, RQ_DONE);
		return;
	}
	if (!s->run)
		return;
	if (kind == RQ_BAUD) {
		st_info("slot %s: device %s: BAUD refused: ERROR %s: %s; staying at %d baud",
			s->name, s->run->device_id, code, text, s->cur_baud);
		kick(s);
		return;
	}
	if (kind == RQ_BAUD_HELLO) {
		baud_fell_back(s, "ERROR to HELLO");
		return;
	}
	if (strcmp(code, "HELLO") == 0) {
		/* The board lost its session (a reboot we did not hear about). */
		resync(s);
		return;
	}
	if (kind == RQ_WRITE && strcmp(code, "OFFSET") == 0 &&
	    drv_proto_get_uint(f, "have", 0, UINT64_MAX, &have, NULL, 0) == 0 &&
	    have <= s->run->wf[s->run->wi].len) {
		s->run->woff = have;
		if (++s->run->write_restarts > 2 * s->env->lim.tries) {
			fail_run(s, ST_E_PROTO_REMOTE, "WRITE of %s: ERROR OFFSET %u times: %s",
				 s->run->wf[s->run->wi].path, s->run->write_restarts, text);
			return;
		}
		kick(s);
		return;
	}
	if (kind == RQ_WRITE && strcmp(code, "HASH") == 0) {
		s->run->woff = 0;
		if (++s->run->write_restarts > 2 * s->env->lim.tries) {
			fail_run(s, ST_E_PROTO_REMOTE, "WRITE of %s: ERROR HASH %u times: %s",
				 s->run->wf[s->run->wi].path, s->run->write_restarts, text);
			return;
		}
		kick(s);
		return;
	}
	if (kind == RQ_COMMIT && strcmp(code, "INCOMPLETE") == 0) {
		char why[ST_ERR_MAX];

		st_msgf(why, sizeof(why), "COMMIT: ERROR INCOMPLETE: %s", text);
		if (restart_writing(s, why) == 0)
			kick(s);
		return;
	}
	fail_run(s, ST_E_PROTO_REMOTE, "the board answered %s with ERROR %s: %s", s->req_type,
		 code, text);
}

static void on_frame(void *arg, const struct drv_proto_frame *f)
{
	struct st_slot *s = arg;
	int kind;
	uint64_t sent;

	if (f->kind == DRV_PROTO_REQUEST) {
		if (s->run && !s->run->failed) {
			fail_run(s, ST_E_SLOT_ECHO,
				 "the port sends the station's own frames back (a console with echo "
				 "on?)");
		} else if (!s->echo_warned) {
			s->echo_warned = 1;
			st_msgf(s->last_error, sizeof(s->last_error),
				"the port echoes the station's frames");
			st_warn("slot %s: the port sends the station's own frames back (a console "
				"with echo on?)",
				s->name);
		}
		return;
	}
	if (f->kind == DRV_PROTO_EVENT) {
		if (strcmp(f->type, DRV_PROTO_BOOT) == 0) {
			line_heard(s);
			on_boot(s);
		}
		return;
	}
	if (f->seq == 0) {
		/* The board could not read our request: send it again at once. */
		s->unread++;
		on_damaged(s);
		return;
	}
	if (s->req_kind == RQ_NONE || f->seq != s->req_seq) {
		s->stray++;
		return; /* a late answer to an earlier transmission */
	}
	line_heard(s);
	kind = s->req_kind;
	sent = s->req_sent;
	if (strcmp(f->type, DRV_PROTO_ERROR) != 0 && strcmp(f->type, s->req_type) != 0) {
		bad_answer(s, kind, "answer of type %s to %s", f->type, s->req_type);
		return;
	}
	s->req_kind = RQ_NONE;
	unschedule(s);
	if (strcmp(f->type, DRV_PROTO_ERROR) == 0) {
		on_error_answer(s, kind, f);
		return;
	}
	switch (kind) {
	case RQ_PROBE:
	case RQ_PRESENCE:
	case RQ_RESYNC:
		on_hello_answer(s, kind, f, sent);
		break;
	case RQ_BAUD_HELLO:
		on_hello_answer(s, kind, f, sent);
		break;
	case RQ_BAUD:
		on_baud_answer(s, f);
		break;
	case RQ_CSR:
		on_csr_answer(s, f);
		break;
	case RQ_WRITE:
		on_write_answer(s, f);
		break;
	case RQ_COMMIT:
		on_commit_answer(s, f);
		break;
	case RQ_VERIFY:
		on_verify_answer(s, f);
		break;
	case RQ_DONE:
		if (s->run && s->run->failed)
			end_run(s);
		else if (s->run)
			pass_run(s);
		break;
	}
}

static void on_frame_error(void *arg, int code, const char *msg, const char *line, size_t len)
{
	struct st_slot *s = arg;

	(void)code;
	(void)line;
	(void)len;
	s->frames_bad++;
	st_debug("slot %s: damaged frame: %s", s->name, msg);
	/* No board in flight, and not at the starting rate: a new board is talking. */
	if (!s->run && s->cur_baud != base_baud(s)) {
		new_board_talking(s);
		return;
	}
	on_damaged(s);
}

/* What the current state sends next, when nothing is outstanding. */
static void kick(struct st_slot *s)
{
	struct slot_run *r = s->run;
	int rate;

	if (!s->port || s->req_kind != RQ_NONE || !r || r->port_lost)
		return;
	switch (s->state) {
	case ST_SLOT_CSR:
		/* The line's rate first: everything after the CSR request is most of the bytes. */
		rate = !r->baud_tried && !r->csr_have ? baud_wanted(s) : 0;
		if (rate) {
			send_baud(s, rate);
			break;
		}
		r->baud_tried = 1;
		send_csr(s);
		break;
	case ST_SLOT_SIGNED:
		send_write(s);
		break;
	case ST_SLOT_WRITTEN:
		send_commit(s);
		break;
	case ST_SLOT_COMMITTED:
		send_verify(s);
		break;
	case ST_SLOT_VERIFIED:
		send_done(s, 1);
		break;
	case ST_SLOT_FAILED:
		send_done(s, 0);
		break;
	default:
		break;
	}
}

/* ---- Opening and losing the port ------------------------------------------------------ */

static void port_open(struct st_slot *s)
{
	struct st_slot_env *env = s->env;
	struct drv_port_config pc;
	struct drv_port *port = NULL;
	struct stat st;
	uv_poll_t *poll;
	char err[256];
	unsigned delay;
	int rc;

	if (s->port || s->closing || env->stopping)
		return;
	if (s->lost_at && uv_hrtime() - s->lost_at < (uint64_t)env->lim.reconnect_ms * 1000000u &&
	    lstat(s->path, &st) == 0 && (uint64_t)st.st_dev == s->lost_dev &&
	    (uint64_t)st.st_ino == s->lost_ino) {
		/* Still the name that hung up: not back yet. */
		schedule(s, TW_REOPEN, env->lim.reopen_ms);
		return;
	}
	memset(&pc, 0, sizeof(pc));
	pc.backend = s->backend;
	pc.path = s->path;
	pc.baud = s->baud;
	pc.flow = s->flow;
	rc = drv_port_open(&pc, &port, err, sizeof(err));
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
		schedule(s, TW_REOPEN, delay);
		return;
	}
	poll->data = s;
	s->poll = poll;
	s->port = port;
	s->poll_events = 0;
	s->reopen_fails = 0;
	s->lost_at = 0;
	if (lstat(s->path, &st) == 0) {
		s->port_dev = (uint64_t)st.st_dev;
		s->port_ino = (uint64_t)st.st_ino;
	} else {
		s->port_dev = s->port_ino = 0;
	}
	s->tx_max = DRV_PROTO_MIN_LINE;
	s->req_len = s->req_off = 0;
	s->cur_baud = base_baud(s);
	drv_proto_decoder_reset(&s->dec);
	s->noframe = 0; /* a new line: the watch starts over, with nothing to take back */
	line_heard(s);
	update_poll(s);
	port_event(s, s->port_announced ? "back" : "open", NULL);
	s->port_announced = 1;
	if (s->run) {
		st_info("slot %s: port %s is back", s->name, s->path);
		s->run->port_lost = 0;
		uv_timer_stop(&s->aux);
		resync(s);
		return;
	}
	if (s->last_error[0] && strstr(s->last_error, s->path))
		s->last_error[0] = 0;
	slot_set_state(s, ST_SLOT_WAITING);
	send_hello(s, RQ_PROBE);
}

static void on_reconnect_deadline(uv_timer_t *t)
{
	struct st_slot *s = t->data;

	if (!s->run || !s->run->port_lost)
		return;
	fail_run(s, ST_E_PORT_HANGUP,
		 "the port hung up in state %s and did not come back within %u ms",
		 st_slot_state_name(s->state), s->env->lim.reconnect_ms);
}

static void port_lost(struct st_slot *s, const char *why)
{
	if (!s->port)
		return;
	port_close(s);
	s->lost_dev = s->port_dev;
	s->lost_ino = s->port_ino;
	s->lost_at = s->port_ino ? uv_hrtime() : 0;
	port_event(s, "lost", why);
	if (s->env->stopping || s->closing)
		return;
	if (s->run && !s->run->failed) {
		st_notice("slot %s: device %s: port lost in state %s (%s); waiting %u ms for it",
			  s->name, s->run->device_id, st_slot_state_name(s->state), why,
			  s->env->lim.reconnect_ms);
		s->run->port_lost = 1;
		uv_timer_start(&s->aux, on_reconnect_deadline, s->env->lim.reconnect_ms, 0);
		schedule(s, TW_REOPEN, s->env->lim.reopen_ms);
		return;
	}
	st_debug("slot %s: port lost (%s)", s->name, why);
	if (s->run) {
		end_run(s); /* failed already; it goes offline */
		return;
	}
	slot_set_state(s, ST_SLOT_OFFLINE);
	schedule(s, TW_REOPEN, s->env->lim.reopen_ms);
}

static void on_timer(uv_timer_t *t)
{
	struct st_slot *s = t->data;
	enum timer_what what = (enum timer_what)s->timer_what;

	s->timer_what = TW_NONE;
	line_quiet(s);
	switch (what) {
	case TW_REQUEST:
		on_request_timeout(s);
		break;
	case TW_PROBE:
		if (s->req_kind != RQ_NONE)
			break;
		if (s->state == ST_SLOT_WAITING)
			send_hello(s, RQ_PROBE);
		else if (s->state == ST_SLOT_LEAVING)
			send_hello(s, RQ_PRESENCE);
		break;
	case TW_REOPEN:
		port_open(s);
		break;
	case TW_QUEUED:
		if (s->state == ST_SLOT_QUEUED && s->run) {
			st_notice("slot %s: device %s: still waiting for its certificate after %.0f s",
				  s->name, s->run->device_id,
				  st_slot_ms_in_state(s, uv_hrtime()) / 1000);
			schedule(s, TW_QUEUED, s->env->lim.queued_ms);
		}
		break;
	case TW_NONE:
		break;
	}
}

/* ---- Life cycle ---------------------------------------------------------------------- */

static const struct drv_proto_callbacks slot_cbs = {
	.frame = on_frame,
	.console = console_add,
	.error = on_frame_error,
};

int st_slot_new(struct st_slot_env *env, unsigned idx, const struct st_slot_def *def,
		struct st_slot **out, char *err, size_t errlen)
{
	struct st_slot *s;

	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return st_errf(err, errlen, ST_E_NOMEM, "out of memory");
	s->env = env;
	s->idx = idx;
	st_msgf(s->name, sizeof(s->name), "%s", def->name);
	s->path = strdup(def->path);
	s->backend = def->backend ? strdup(def->backend) : NULL;
	s->profile_path = def->profile ? strdup(def->profile) : NULL;
	if (!s->path || (def->backend && !s->backend) || (def->profile && !s->profile_path)) {
		st_slot_free(s);
		return st_errf(err, errlen, ST_E_NOMEM, "out of memory");
	}
	s->baud = def->baud;
	s->max_baud = def->max_baud;
	s->cur_baud = base_baud(s);
	s->flow = def->flow;
	s->state = ST_SLOT_OFFLINE;
	s->since = uv_hrtime();
	s->last_pass = -1;
	s->tx_max = DRV_PROTO_MIN_LINE;
	drv_proto_decoder_init(&s->dec, HELLO_MAX, &slot_cbs, s);
	uv_timer_init(env->loop, &s->timer);
	uv_timer_init(env->loop, &s->aux);
	s->timer.data = s;
	s->aux.data = s;
	s->handles = 2;
	*out = s;
	return 0;
}

void st_slot_start(struct st_slot *s)
{
	port_open(s);
}

void st_slot_stop(struct st_slot *s)
{
	if (s->run) {
		if (s->state == ST_SLOT_VERIFIED || s->state == ST_SLOT_PASS) {
			/* Verified: the board holds its files and its key; only DONE is left. */
			pass_run(s);
		} else if (s->run->failed) {
			end_run(s);
		} else {
			abandon_run(s);
		}
	}
	port_close(s);
	unschedule(s);
	uv_timer_stop(&s->aux);
	slot_set_state(s, ST_SLOT_STOPPED);
}

static void on_slot_handle_closed(uv_handle_t *h)
{
	struct st_slot *s = h->data;

	if (--s->handles == 0 && s->close_cb)
		s->close_cb(s);
}

void st_slot_close(struct st_slot *s, void (*cb)(struct st_slot *s))
{
	if (s->closing)
		return;
	s->closing = 1;
	s->close_cb = cb;
	if (s->run)
		end_run(s);
	port_close(s);
	uv_close((uv_handle_t *)&s->timer, on_slot_handle_closed);
	uv_close((uv_handle_t *)&s->aux, on_slot_handle_closed);
}

void st_slot_free(struct st_slot *s)
{
	if (!s)
		return;
	free(s->path);
	free(s->backend);
	free(s->profile_path);
	free(s);
}
