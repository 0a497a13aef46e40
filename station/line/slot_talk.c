/* The slot's conversation with its board: requests (seq, transmission, retransmission of the
 * same bytes), every answer and event the board sends (HELLO, BAUD, ERROR, BOOT, damaged
 * frames), timeouts, reboots and resyncs, and kick(), which sends what the current state asks
 * for. Where each outcome leads is in the state table (slot_table.c). */
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
#include "slot_int.h"
#include "sota.h"
#include "testhook.h"

static uint32_t next_seq(struct st_slot *s);
static unsigned timeout_of(const struct st_slot *s, int kind);
static void baud_done(struct st_slot *s);
static void on_baud_answer(struct st_slot *s, const struct drv_proto_frame *f);
static void baud_fell_back(struct st_slot *s, const char *why);
static int same_board(const struct st_slot_board *old, const struct st_slot_board *nb,
		      const char *assigned_id);
static void resync_as(struct st_slot *s, int kind);
static void resume(struct st_slot *s, int rebooted);
static int parse_hello(const struct drv_proto_frame *f, int boot, struct st_slot_board *nb,
		       char *err, size_t errlen);
static void on_hello_answer(struct st_slot *s, int kind, const struct drv_proto_frame *f,
			    uint64_t sent);
static void request_failed(struct st_slot *s, int kind);
static void on_damaged(struct st_slot *s);
static void on_boot(struct st_slot *s, const struct drv_proto_frame *f);
static void on_error_answer(struct st_slot *s, int kind, const struct drv_proto_frame *f);

/* Text a board sent, percent-decoded, then made printable where it enters the station
 * (st_escape()): whatever it holds goes on into messages, the log, the view, events and the
 * ledger. Field key of f, at most max bytes decoded, into out (outlen bytes; the escaped
 * text is cut, saying so, when it does not fit); def when the field is absent, or an error
 * when def is NULL. Returns 0, or ST_E_PROTO_FIELD with err and out empty. */
int slot_board_text(const struct drv_proto_frame *f, const char *key, const char *def,
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

/* Item idx of a list field, like slot_board_text(). */
int slot_board_item(const struct drv_proto_frame *f, const struct drv_proto_field *fld,
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

/* ---- Requests ------------------------------------------------------------------------ */

/* The request number after seq: 1, 2, ... 4294967295, then 1 again (0 is the events'). */
uint32_t slot_seq_after(uint32_t seq)
{
	return seq == UINT32_MAX ? 1 : seq + 1;
}

static uint32_t next_seq(struct st_slot *s)
{
	s->seq = slot_seq_after(s->seq);
	return s->seq;
}

void slot_begin_req(struct st_slot *s, struct drv_proto_builder *b, const char *type)
{
	/* A request that replaces one still leaving would splice two frames on the wire; the
	 * board reports the damage (ERROR FRAME) and the new one is sent again. */
	slot_pipe_drop(s);
	drv_proto_begin(b, s->req, s->tx_max, DRV_PROTO_REQUEST, next_seq(s), type);
	s->req_seq = s->seq;
	st_msgf(s->req_type, sizeof(s->req_type), "%s", type);
	if (s->boot_open && strcmp(type, DRV_PROTO_HELLO) != 0) {
		/* Version 8: the first request to a board its BOOT introduced opens the session,
		 * with what HELLO would have said, and names the boot it is for: a board that
		 * booted again since answers ERROR HELLO and is greeted with HELLO. */
		drv_proto_add_uint(b, "v", s->board.version);
		drv_proto_add_uint(b, "max", HELLO_MAX);
		drv_proto_add_text(b, "boot", s->board.boot);
	}
	s->boot_open = 0;
}

static unsigned timeout_of(const struct st_slot *s, int kind)
{
	const struct st_slot_limits *l = &s->env->lim;
	unsigned ms = l->hello_ms;

	switch (kind) {
	case RQ_PROBE:
		return l->probe_ms > l->hello_ms ? l->probe_ms : l->hello_ms;
	case RQ_CSR:
	case RQ_WRITE:
	case RQ_COMMIT:
	case RQ_VERIFY:
	case RQ_DONE:
		/* The wait of the state that sends it. */
		for (int st = 0; st < ST_SLOT_NSTATES; st++) {
			if (slot_table[st].sends == (enum req_kind)kind) {
				ms = slot_state_limit((enum st_slot_state)st, l);
				break;
			}
		}
		/* Version 3: a WRITE or COMMIT that carries COMMIT or VERIFY is answered once
		 * the board has done them too (synced its storage, signed the nonce), so it
		 * waits for theirs as well. */
		if (s->run && (kind == RQ_WRITE || kind == RQ_COMMIT)) {
			/* Version 6: each file of a WRITE is written and hashed in turn. */
			if (kind == RQ_WRITE && s->run->nsect > 1)
				ms *= (unsigned)s->run->nsect;
			if (s->run->fold & FOLD_COMMIT)
				ms += l->commit_ms;
			if (s->run->fold & FOLD_VERIFY)
				ms += l->verify_ms;
		}
		return ms;
	case RQ_BAUD_HELLO:
		/* Every try at the new rate within the board's trial, so that both sides give
		 * up on it together. */
		return l->baud_trial_ms / (l->tries ? l->tries : 1);
	default:
		return l->hello_ms;
	}
}

/* STATION_TEST_FAIL=slot.stall_after:TYPE:MS (test builds only): the loop thread sleeps MS
 * ms once, right after the first request of TYPE (WRITE, COMMIT, ...) is sent, as a loop
 * held up by other work would be: the board's answer is in before the loop comes back, and
 * the request's timer is due by then. */
static void test_stall(struct st_slot *s, const char *type)
{
#ifdef STATION_TEST_HOOKS
	static int state; /* 0: not read yet, 1: armed, 2: spent or not set */
	static char want[16];
	static unsigned long ms;
	const char *arg, *colon;

	if (state == 0) {
		arg = st_test_hook("slot.stall_after");
		colon = arg ? strchr(arg, ':') : NULL;
		state = 2;
		if (colon && (size_t)(colon - arg) < sizeof(want)) {
			memcpy(want, arg, (size_t)(colon - arg));
			want[colon - arg] = 0;
			ms = strtoul(colon + 1, NULL, 10);
			state = 1;
		}
	}
	if (state == 1 && strcmp(type, want) == 0) {
		struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };

		state = 2;
		slot_tx_now(s); /* sent, not waiting for the end of a read */
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
	}
#else
	(void)s;
	(void)type;
#endif
}

/* Finishes the frame in b as the outstanding request, not sent yet (slot_tx_flush sends it).
 * Returns 0, or -1 when it cannot be built (the run has failed). */
int slot_finish_req(struct st_slot *s, struct drv_proto_builder *b, int kind)
{
	char err[160];
	size_t len;

	if (drv_proto_end(b, &len, err, sizeof(err)) != 0) {
		s->req_kind = RQ_NONE;
		s->req_len = s->req_off = 0;
		slot_fail_run(s, ST_E_INTERNAL, "cannot build the %s request: %s", s->req_type, err);
		return -1;
	}
	s->req_len = len;
	s->req_off = 0;
	s->req_kind = kind;
	s->req_tries = 1;
	s->requests++;
	s->req_timeout = timeout_of(s, kind);
	s->req_sent = uv_hrtime();
	s->req_rx0 = slot_rx_upto(s);
	s->req_writes0 = s->tx_writes;
	slot_schedule(s, TW_REQUEST, s->req_timeout);
	return 0;
}

/* Sends the request finished (slot_finish_req), and what was put behind it (at the end of the
 * read being handled: slot_tx_flush). */
void slot_send_finished(struct st_slot *s)
{
	slot_tx_flush(s);
	test_stall(s, s->req_type);
}

/* Finishes the frame in b and sends it as the outstanding request. */
void slot_send_req(struct st_slot *s, struct drv_proto_builder *b, int kind)
{
	if (slot_finish_req(s, b, kind) == 0)
		slot_send_finished(s);
}

/* Version 7: the WRITE behind the outstanding one is forgotten (that one was not answered as
 * expected, or another request takes its place). Its bytes still leaving are let go (a frame
 * cut short would damage the next); its answer, to a seq no longer waited for, is ignored. */
void slot_pipe_drop(struct st_slot *s)
{
	s->pipe_at = 0;
}

/* Version 7: the outstanding WRITE was answered as expected: the one behind it, sent already
 * (or still leaving: slot_tx_flush), is the outstanding request now, waited for from here. */
void slot_pipe_promote(struct st_slot *s)
{
	struct slot_run *r = s->run;
	size_t at = s->pipe_at;

	memmove(s->req, s->req + at, s->req_len - at);
	s->req_len -= at;
	/* Its bytes may still be leaving (a full port); a retransmission of the one before it
	 * that had not left whole is cut where it stands, and the board asks again. */
	s->req_off = s->req_off > at ? s->req_off - at : 0;
	s->pipe_at = 0;
	s->req_seq = s->pipe_seq;
	s->req_kind = RQ_WRITE;
	r->nsect = r->pipe_nsect;
	r->fold = r->pipe_fold;
	r->inst_sent = r->pipe_inst;
	r->stalls = 0;
	s->req_timeout = timeout_of(s, RQ_WRITE);
	s->req_sent = uv_hrtime();
	s->req_rx0 = slot_rx_upto(s);
	slot_schedule(s, TW_REQUEST, s->req_timeout);
}

/* Sends the outstanding request again, byte for byte: the board answers a repeated seq from
 * the answer it kept, without doing anything twice. */
void slot_retransmit(struct st_slot *s)
{
	if (!s->port || s->req_kind == RQ_NONE)
		return;
	s->req_tries++;
	s->retransmits++;
	s->req_off = 0;
	slot_schedule(s, TW_REQUEST, s->req_timeout);
	slot_tx_flush(s);
}

void slot_send_hello(struct st_slot *s, int kind)
{
	static const char *const versions[DRV_PROTO_VERSION_MAX] = { "1", "2", "3", "4",
								     "5", "6", "7", "8" };
	struct drv_proto_builder b;

	if (!s->port)
		return;
	slot_begin_req(s, &b, DRV_PROTO_HELLO);
	drv_proto_add_list(&b, "v", versions, DRV_PROTO_VERSION_MAX);
	drv_proto_add_uint(&b, "max", HELLO_MAX);
	slot_send_req(s, &b, kind);
}

/* The fastest rate the board offers that this slot may use and the port can set, above the
 * current one; 0 when there is none. */
int slot_baud_wanted(const struct st_slot *s)
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

/* The line's rate is settled (switched, refused, fallen back): the CSR, at that rate. */
static void baud_done(struct st_slot *s)
{
	if (slot_set_state(s, ST_SLOT_CSR) == 0)
		slot_kick(s);
}

void slot_send_baud(struct st_slot *s, int rate)
{
	struct drv_proto_builder b;

	slot_begin_req(s, &b, DRV_PROTO_BAUD);
	drv_proto_add_uint(&b, "rate", (uint64_t)rate);
	drv_proto_add_uint(&b, "ms", s->env->lim.baud_trial_ms);
	slot_send_req(s, &b, RQ_BAUD);
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
		baud_done(s);
		return;
	}
	r->baud_from = s->cur_baud;
	if (slot_set_rate(s, (int)rate) < 0) {
		baud_done(s);
		return;
	}
	if (slot_set_state(s, ST_SLOT_BAUD_CONFIRM) == 0)
		slot_send_hello(s, RQ_BAUD_HELLO);
}

/* No answer at the new rate within the trial: both sides go back to the old one. */
static void baud_fell_back(struct st_slot *s, const char *why)
{
	struct slot_run *r = s->run;

	if (!r)
		return;
	st_info("slot %s: device %s: %s at %d baud; back to %d", s->name, r->device_id, why,
		s->cur_baud, r->baud_from);
	slot_set_rate(s, r->baud_from);
	baud_done(s);
}

/* An answer that is unusable (a field missing or out of range): ask again, like for a
 * damaged frame; a board that keeps answering so has failed. Returns 0. */
int slot_bad_answer(struct st_slot *s, int kind, const char *fmt, ...)
{
	char msg[ST_ERR_MAX];
	va_list ap;

	va_start(ap, fmt);
	st_vmsgf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	s->req_kind = kind;
	if (s->req_tries < s->env->lim.tries) {
		st_debug("slot %s: %s; asking again", s->name, msg);
		slot_retransmit(s);
		return 0;
	}
	s->req_kind = RQ_NONE;
	if (kind == RQ_PROBE || kind == RQ_PRESENCE || !s->run) {
		st_msgf(s->last_error, sizeof(s->last_error), "%s", msg);
		slot_schedule(s, TW_PROBE, kind == RQ_PRESENCE ? s->env->lim.presence_ms :
							  s->env->lim.probe_ms);
		return 0;
	}
	slot_fail_run(s, ST_E_PROTO_FIELD, "%s (after %u tries)", msg, s->req_tries);
	return 0;
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

/* The board in flight rebooted, reconnected or lost its session: greet it again with a HELLO
 * of kind (RQ_RESYNC, or RQ_RESYNC_RATE at the other rate). */
static void resync_as(struct st_slot *s, int kind)
{
	struct slot_run *r = s->run;

	if (++r->resyncs > s->env->lim.resyncs) {
		slot_fail_run(s, ST_E_SLOT_RESYNC, "the board rebooted or reconnected %u times",
			      r->resyncs - 1);
		return;
	}
	slot_send_hello(s, kind);
}

void slot_resync(struct st_slot *s)
{
	resync_as(s, RQ_RESYNC);
}

/* The same board is back after a slot_resync: carry on from what it still has. */
static void resume(struct st_slot *s, int rebooted)
{
	struct slot_run *r = s->run;

	switch (s->state) {
	case ST_SLOT_BAUD_ASK:
	case ST_SLOT_BAUD_CONFIRM:
		/* Greeted mid-switch (or at the new rate: the switch is good): the CSR, at the
		 * rate the board answered at. */
		if (slot_set_state(s, ST_SLOT_CSR) < 0)
			return;
		r->csr_have = 0;
		break;
	case ST_SLOT_CSR:
		r->csr_have = 0;
		break;
	case ST_SLOT_SIGNED:
		/* Each file's first answer says how much of it the board still has. */
		r->wi = 0;
		r->woff = 0;
		break;
	case ST_SLOT_WRITTEN:
		if (rebooted && slot_restart_writing(s, "the board rebooted before COMMIT") < 0)
			return;
		break;
	case ST_SLOT_COMMITTED:
		slot_new_nonce(r);
		break;
	case ST_SLOT_QUEUED:
		/* The files written meanwhile, as in signed. */
		r->wi = 0;
		r->woff = 0;
		break;
	default:
		break;
	}
	slot_kick(s);
}

/* The board from HELLO's answer, or (boot) from a BOOT of version 8, which may name a newer
 * version than this station's: the session is then of this station's newest. */
static int parse_hello(const struct drv_proto_frame *f, int boot, struct st_slot_board *nb,
		       char *err, size_t errlen)
{
	uint64_t max = DRV_PROTO_MIN_LINE, gen = 0, version = 1;
	const struct drv_proto_field *bauds;

	memset(nb, 0, sizeof(*nb));
	if (slot_board_text(f, "dev", "", ST_SLOT_MAX_TEXT, nb->dev, sizeof(nb->dev), err, errlen) ||
	    slot_board_text(f, "hw", "", ST_SLOT_MAX_TEXT, nb->hw, sizeof(nb->hw), err, errlen) ||
	    slot_board_text(f, "sku", "", ST_SLOT_MAX_TEXT, nb->sku, sizeof(nb->sku), err, errlen) ||
	    slot_board_text(f, "fw", "", ST_SLOT_MAX_TEXT, nb->fw, sizeof(nb->fw), err, errlen) ||
	    slot_board_text(f, "sn", "", ST_SLOT_MAX_TEXT, nb->sn, sizeof(nb->sn), err, errlen) ||
	    slot_board_text(f, "key", "", 15, nb->key, sizeof(nb->key), err, errlen) ||
	    slot_board_text(f, "boot", "", 39, nb->boot, sizeof(nb->boot), err, errlen))
		return -1;
	/* A UUID in upper case is the same device as in lower case: one spelling from here. */
	st_device_id_normalize(nb->dev);
	if (drv_proto_has(f, "max") &&
	    drv_proto_get_uint(f, "max", DRV_PROTO_MIN_LINE, UINT32_MAX, &max, err, errlen))
		return -1;
	/* The version the board chose among those offered; a board that leaves it out speaks
	 * version 1. */
	if (drv_proto_has(f, "v") &&
	    drv_proto_get_uint(f, "v", 1, boot ? UINT32_MAX : DRV_PROTO_VERSION_MAX, &version,
			       err, errlen))
		return -1;
	if (version > DRV_PROTO_VERSION_MAX)
		version = DRV_PROTO_VERSION_MAX;
	nb->version = (unsigned)version;
	/* Version 7: requests it takes at once; one unless it says more. */
	nb->win = 1;
	if (version >= 7 && drv_proto_has(f, "win")) {
		uint64_t win;

		if (drv_proto_get_uint(f, "win", 1, 8, &win, err, errlen))
			return -1;
		nb->win = (unsigned)win;
	}
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

/* The board nb answered the HELLO of kind sent at sent (or, version 8, its BOOT said who it
 * is). */
static void took_board(struct st_slot *s, int kind, const struct st_slot_board *nb,
		       uint64_t sent)
{
	switch (kind) {
	case RQ_PROBE:
		if (s->state == ST_SLOT_WAITING)
			slot_start_run(s, nb, sent);
		return;
	case RQ_PRESENCE:
	case RQ_PRESENCE_BOOT:
		if (s->state != ST_SLOT_LEAVING)
			return;
		if (same_board(&s->board, nb, s->device_id) &&
		    !(kind == RQ_PRESENCE_BOOT && s->last_pass == 0)) {
			/* Still there, finished. A failed board that rebooted gets another go. */
			s->board.max = nb->max;
			slot_schedule(s, TW_PROBE, s->env->lim.presence_ms);
			return;
		}
		slot_set_state(s, ST_SLOT_WAITING);
		slot_start_run(s, nb, sent);
		return;
	case RQ_BAUD_HELLO:
	case RQ_RESYNC:
	case RQ_RESYNC_RATE:
		if (!s->run)
			return;
		if (kind == RQ_BAUD_HELLO) {
			st_debug("slot %s: device %s: line at %d baud", s->name, s->run->device_id,
				 s->cur_baud);
			s->run->baud_to = s->cur_baud;
		}
		if (!same_board(&s->board, nb, s->run->device_id)) {
			slot_fail_run_quiet(s, ST_E_SLOT_BOARD_LEFT,
					    "another board (hardware id '%s', sn '%s', device id '%s') "
					    "answered in its place",
					    nb->hw, nb->sn, nb->dev);
			if (s->state == ST_SLOT_LEAVING) {
				slot_set_state(s, ST_SLOT_WAITING);
				slot_start_run(s, nb, sent);
			}
			return;
		}
		{
			int rebooted = strcmp(nb->boot, s->board.boot) != 0;

			s->board = *nb;
			s->tx_max = nb->max;
			resume(s, rebooted);
		}
		return;
	}
}

static void on_hello_answer(struct st_slot *s, int kind, const struct drv_proto_frame *f,
			    uint64_t sent)
{
	struct st_slot_board nb;
	char err[ST_ERR_MAX];

	if (parse_hello(f, 0, &nb, err, sizeof(err)) != 0) {
		slot_bad_answer(s, kind, "HELLO answer: %s", err);
		return;
	}
	took_board(s, kind, &nb, sent);
}

/* Version 8 (PROTOCOL.md 12): a BOOT that says what HELLO's answer would (v of 8 or later)
 * stands for that answer to the HELLO of kind, sent now: the board is taken from it, and the
 * first request opens its session. Returns 1 when it did, 0 when the BOOT says less (a board
 * of an earlier version) or something unusable: the board is greeted with HELLO. */
static int boot_greets(struct st_slot *s, int kind, const struct drv_proto_frame *f)
{
	struct st_slot_board nb;
	char err[ST_ERR_MAX];
	uint64_t v;

	if (!drv_proto_has(f, "v") || drv_proto_get_uint(f, "v", 8, UINT32_MAX, &v, NULL, 0) != 0)
		return 0;
	err[0] = 0;
	if (parse_hello(f, 1, &nb, err, sizeof(err)) != 0 || !nb.boot[0]) {
		if (!err[0])
			st_msgf(err, sizeof(err), "no boot id");
		st_debug("slot %s: a BOOT of version %" PRIu64 " that cannot stand for HELLO's "
			 "answer (%s): greeting the board with HELLO",
			 s->name, v, err);
		return 0;
	}
	/* What was outstanding (a probe, a presence check) was for the line before this boot. */
	if (s->req_kind != RQ_NONE) {
		s->req_kind = RQ_NONE;
		slot_unschedule(s);
	}
	s->boot_open = 1;
	s->boot_len = f->len + 1;
	took_board(s, kind, &nb, uv_hrtime());
	if (!s->run)
		s->boot_open = 0; /* the finished board rebooted: its presence checks greet it */
	return 1;
}

/* ---- Frames from the board ------------------------------------------------------------- */

static void request_failed(struct st_slot *s, int kind)
{
	const struct st_slot_limits *l = &s->env->lim;

	switch (kind) {
	case RQ_PROBE:
		slot_send_hello(s, RQ_PROBE);
		return;
	case RQ_PRESENCE:
	case RQ_PRESENCE_BOOT:
		/* Silence: the finished board is gone (powered off, removed); the next one
		 * starts at the line's starting rate, and at once. */
		slot_streak_reset(s);
		slot_line_reset(s);
		slot_set_state(s, ST_SLOT_WAITING);
		slot_send_hello(s, RQ_PROBE);
		return;
	case RQ_BAUD:
		/* Unanswered: if the board switched all the same, it falls back by itself,
		 * and the retransmissions at this rate outlast its trial. */
		baud_done(s);
		return;
	case RQ_BAUD_HELLO:
		baud_fell_back(s, "no answer to HELLO");
		return;
	case RQ_DONE:
		if (s->run && s->state == ST_SLOT_FAILED) {
			slot_end_run(s);
		} else if (s->run) {
			st_warn("slot %s: device %s: DONE was not answered; the board is verified "
				"and counts as provisioned",
				s->name, s->run->device_id);
			slot_pass_run(s);
		}
		return;
	default:
		if (s->run && s->run->baud_to && kind != RQ_RESYNC_RATE) {
			/* The board may be at the other rate: a reboot takes it back to the
			 * starting one, a port that came back alone finds it at the new one.
			 * Once per silence (the HELLO there is a request of its own kind): a
			 * board that answers at neither has hung. */
			int to = s->cur_baud == s->run->baud_to ? slot_base_baud(s) : s->run->baud_to;

			st_info("slot %s: device %s: no answer to %s at %d baud after %u tries; "
				"trying the board at %d",
				s->name, s->run->device_id, s->req_type, s->cur_baud, s->req_tries,
				to);
			slot_set_rate(s, to);
			resync_as(s, RQ_RESYNC_RATE);
			return;
		}
		if (s->run && s->run->echoes)
			slot_fail_run(s, ST_E_SLOT_ECHO,
				      "the port sends the station's own frames back (a console with "
				      "echo on?) and no board answered %s after %u tries (%u ms each)",
				      s->req_type, s->req_tries, timeout_of(s, kind));
		else
			slot_fail_run(s, ST_E_PROTO_TIMEOUT,
				      "the board did not answer %s after %u tries (%u ms each)",
				      s->req_type, s->req_tries, timeout_of(s, kind));
		(void)l;
		return;
	}
}

void slot_on_request_timeout(struct st_slot *s)
{
	int kind = s->req_kind;

	if (kind == RQ_NONE)
		return;
	if (kind != RQ_PROBE && s->req_tries < s->env->lim.tries) {
		st_debug("slot %s: no answer to %s (seq %u) in %u ms; sending it again", s->name,
			 s->req_type, s->req_seq, s->req_timeout);
		slot_retransmit(s);
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
		slot_retransmit(s);
		return;
	}
	/* The timer decides: the good copy may still be on its way. */
}

static void on_boot(struct st_slot *s, const struct drv_proto_frame *f)
{
	switch (s->state) {
	case ST_SLOT_WAITING:
		if (!boot_greets(s, RQ_PROBE, f))
			slot_send_hello(s, RQ_PROBE);
		return;
	case ST_SLOT_LEAVING:
		if (!boot_greets(s, RQ_PRESENCE_BOOT, f))
			slot_send_hello(s, RQ_PRESENCE_BOOT);
		return;
	default:
		if (s->run && s->state != ST_SLOT_FAILED) {
			st_info("slot %s: device %s: the board rebooted in state %s", s->name,
				s->run->device_id, st_slot_state_name(s->state));
			slot_resync(s);
		} else if (s->run) {
			/* Failed, telling it: it will not hear; it is finished anyway. */
			slot_end_run(s);
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
	if (slot_board_text(f, "code", "?", 23, code, sizeof(code), NULL, 0) != 0)
		st_msgf(code, sizeof(code), "?");
	slot_board_text(f, "text", "", DRV_PROTO_MAX_LINE, text, sizeof(text), NULL, 0);
	if (kind == RQ_PROBE || kind == RQ_PRESENCE || kind == RQ_PRESENCE_BOOT) {
		st_msgf(s->last_error, sizeof(s->last_error), "HELLO: ERROR %s: %s", code, text);
		slot_schedule(s, TW_PROBE, kind == RQ_PROBE ? s->env->lim.probe_ms :
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
		baud_done(s);
		return;
	}
	if (kind == RQ_BAUD_HELLO) {
		baud_fell_back(s, "ERROR to HELLO");
		return;
	}
	if (strcmp(code, "HELLO") == 0) {
		/* The board lost its session (a reboot we did not hear about). */
		slot_resync(s);
		return;
	}
	/* Version 6: an ERROR to a WRITE of several files may be any one's, the files before it
	 * written. From here on they go one a WRITE, from the first: the board answers each as
	 * it holds it (bytes it has are not written twice), and the one that failed gets its
	 * ERROR again, alone, handled below. */
	if (kind == RQ_WRITE && s->run->nsect > 1) {
		st_debug("slot %s: device %s: ERROR %s to a WRITE of %zu files (%s); writing them "
			 "one by one",
			 s->name, s->run->device_id, code, s->run->nsect, text);
		s->run->single = 1;
		s->run->nsect = 1;
		s->run->wident = 1;
		slot_kick(s);
		return;
	}
	/* A copy of the installed file answered with an error: the board holds another file
	 * under the path (HASH), none or a shorter one (SOURCE), or cannot read it (STORAGE,
	 * which also dropped the file staged). The bytes go instead, from where the board is;
	 * a miss is not a restart of the writing. */
	if (kind == RQ_WRITE && s->run->inst_sent &&
	    (strcmp(code, "HASH") == 0 || strcmp(code, "SOURCE") == 0 ||
	     strcmp(code, "STORAGE") == 0)) {
		struct wfile *w = &s->run->wf[s->run->wi];

		st_debug("slot %s: device %s: %s is not installed as written (ERROR %s: %s); "
			 "sending its bytes",
			 s->name, s->run->device_id, w->path, code, text);
		w->inst = 0;
		s->run->inst_sent = 0;
		if (code[0] != 'S' || drv_proto_get_uint(f, "have", 0, w->len, &have, NULL, 0) != 0)
			have = 0;
		s->run->woff = have;
		s->run->wident = 1;
		slot_kick(s);
		return;
	}
	/* OFFSET: resume where the board is (0 after a reboot lost the file). SOURCE (version
	 * 2): the copy's source is gone, a reboot lost the staged files: send the bytes. */
	if (kind == RQ_WRITE && (strcmp(code, "OFFSET") == 0 || strcmp(code, "SOURCE") == 0) &&
	    drv_proto_get_uint(f, "have", 0, UINT64_MAX, &have, NULL, 0) == 0 &&
	    have <= s->run->wf[s->run->wi].len) {
		if (code[0] == 'S')
			s->run->wf[s->run->wi].nocopy = 1;
		s->run->woff = have;
		s->run->wident = 1;
		if (++s->run->write_restarts > 2 * s->env->lim.tries) {
			slot_fail_run(s, ST_E_PROTO_REMOTE, "WRITE of %s: ERROR %s %u times: %s",
				      s->run->wf[s->run->wi].path, code, s->run->write_restarts,
				      text);
			return;
		}
		slot_kick(s);
		return;
	}
	if (kind == RQ_WRITE && strcmp(code, "HASH") == 0) {
		s->run->woff = 0;
		if (++s->run->write_restarts > 2 * s->env->lim.tries) {
			slot_fail_run(s, ST_E_PROTO_REMOTE, "WRITE of %s: ERROR HASH %u times: %s",
				      s->run->wf[s->run->wi].path, s->run->write_restarts, text);
			return;
		}
		slot_kick(s);
		return;
	}
	if (kind == RQ_COMMIT && strcmp(code, "INCOMPLETE") == 0) {
		char why[ST_ERR_MAX];

		st_msgf(why, sizeof(why), "COMMIT: ERROR INCOMPLETE: %s", text);
		if (slot_restart_writing(s, why) == 0)
			slot_kick(s);
		return;
	}
	slot_fail_run(s, ST_E_PROTO_REMOTE, "the board answered %s with ERROR %s: %s", s->req_type,
		      code, text);
}

void slot_on_frame(void *arg, const struct drv_proto_frame *f)
{
	struct st_slot *s = arg;
	int kind;
	uint64_t sent;

	if (f->kind == DRV_PROTO_REQUEST) {
		if (s->run && s->state != ST_SLOT_FAILED) {
			/* A board rebooting into a console with echo on sends the requests back
			 * until its agent has the line: no answer, and its BOOT greets the
			 * station again. Only a request that no board answers fails the run,
			 * then as an echo (slot_on_request_timeout). */
			if (s->run->echoes++ == 0)
				st_warn("slot %s: device %s: the port sends the station's own frames "
					"back (a console with echo on, or a board still booting?); "
					"waiting for the board's answer",
					s->name, s->run->device_id[0] ? s->run->device_id : "(none yet)");
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
			slot_line_heard(s);
			on_boot(s, f);
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
	slot_line_heard(s);
	if (s->run)
		s->run->echoes = 0;
	kind = s->req_kind;
	sent = s->req_sent;
	if (strcmp(f->type, DRV_PROTO_ERROR) != 0 && strcmp(f->type, s->req_type) != 0) {
		slot_bad_answer(s, kind, "answer of type %s to %s", f->type, s->req_type);
		return;
	}
	s->req_kind = RQ_NONE;
	slot_unschedule(s);
	if (strcmp(f->type, DRV_PROTO_ERROR) == 0) {
		slot_pipe_drop(s);
		on_error_answer(s, kind, f);
		return;
	}
	switch (kind) {
	case RQ_PROBE:
	case RQ_PRESENCE:
	case RQ_PRESENCE_BOOT:
	case RQ_RESYNC:
	case RQ_RESYNC_RATE:
		on_hello_answer(s, kind, f, sent);
		break;
	case RQ_BAUD_HELLO:
		on_hello_answer(s, kind, f, sent);
		break;
	case RQ_BAUD:
		on_baud_answer(s, f);
		break;
	case RQ_CSR:
		slot_on_csr_answer(s, f);
		break;
	case RQ_WRITE:
		slot_on_write_answer(s, f);
		break;
	case RQ_COMMIT:
		slot_on_commit_answer(s, f);
		break;
	case RQ_VERIFY:
		slot_on_verify_answer(s, f);
		break;
	case RQ_DONE:
		if (s->run && s->state == ST_SLOT_FAILED)
			slot_end_run(s);
		else if (s->run)
			slot_pass_run(s);
		break;
	}
}

void slot_on_frame_error(void *arg, int code, const char *msg, const char *line, size_t len)
{
	struct st_slot *s = arg;

	(void)code;
	(void)line;
	(void)len;
	s->frames_bad++;
	st_debug("slot %s: damaged frame: %s", s->name, msg);
	/* A damaged frame is still a frame: a board at this rate whose bytes took a hit (a
	 * CRC error), asked again. Even with no board in flight on a switched line it is the
	 * finished board, not a new one: a board at the starting rate comes out as garbage
	 * here, which the console watch takes for a new board (slot_console_add). */
	on_damaged(s);
}

/* What the current state sends next, when nothing is outstanding (or, in version 7, behind
 * the WRITE outstanding). */
void slot_kick(struct st_slot *s)
{
	struct slot_run *r = s->run;

	if (s->port && r && s->req_kind == RQ_WRITE) {
		/* Version 7: a WRITE may go behind the one outstanding now (the certificate was
		 * signed meanwhile). */
		slot_pipe_more(s);
		return;
	}
	if (!s->port || s->req_kind != RQ_NONE || !r)
		return;
	if (s->state == ST_SLOT_QUEUED) {
		/* While the certificate is signed, the files that do not hold it go (the public
		 * ones from the CSR's arrival, the others once the intent is recorded); then its
		 * wait has a note every queued_ms again. */
		if (r->wi < slot_files_open(s) && !slot_public_waits(s))
			slot_send_write(s);
		else if (s->timer_what == TW_NONE)
			slot_schedule(s, TW_QUEUED, s->env->lim.queued_ms);
		return;
	}
	/* The request the state sends, from the table. The HELLOs of waiting and leaving go
	 * out on the slot's timer, BAUD and the HELLO on trial when their state is entered. */
	switch (slot_table[s->state].sends) {
	case RQ_CSR:
		slot_send_csr(s);
		break;
	case RQ_WRITE:
		slot_send_write(s);
		break;
	case RQ_COMMIT:
		slot_send_commit(s);
		break;
	case RQ_VERIFY:
		slot_send_verify(s);
		break;
	case RQ_DONE:
		slot_send_done(s, s->state == ST_SLOT_VERIFIED);
		break;
	default:
		break;
	}
}
