/* One slot's state machine (see slot.h for the design): the board in flight from its first
 * answered HELLO to its end, and the slot's life cycle.
 *
 * This file owns: the profile sets, a new board's start (profile, device id), its end (pass,
 * failure, abandon; the outcome and the ledger marks), DONE, and creating, stopping and
 * closing a slot. The other slot files own the link (slot_link.c: port, rate, timer), the
 * conversation (slot_talk.c: requests, answers, kick()), the CSR and its signing
 * (slot_csr.c), the files and verification (slot_files.c), the console (slot_console.c)
 * and the state table (slot_table.c); slot_int.h is what they share.
 *
 * The slot owns one outstanding request at a time (s->req, s->req_kind): a state decides
 * which request comes next (slot_kick()), the answer's handler records progress and moves the
 * state on, and a timeout or a damaged answer sends the same frame again. Everything that
 * can end a board (failure, abandon, pass) goes through slot_end_run(), and every state change
 * through slot_set_state(), which refuses what the table does not list. */
#include "slot.h"
#include "slot_int.h"

#include <assert.h>
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

#include "digest.h"
#include "ecdsa.h"
#include "err.h"
#include "log.h"
#include "queue.h"
#include "sota.h"

static double ms_between(uint64_t a, uint64_t b);
static void make_uuid4(char out[37]);
static void use_device_id(struct st_slot *s, const char *id);
static void on_sequence(int rc, const char *err, uint64_t value, void *arg);
static void on_sequence_checked(int rc, const char *err, uint64_t next, void *arg);
static void report_outcome(struct st_slot *s, int pass, int abandoned, const char *console_log);
static void release_signing(struct st_slot *s, const char *failed);
static void vfail(struct st_slot *s, int code, int tell_board, const char *fmt, va_list ap);
static void abandon_run(struct st_slot *s);
static void on_slot_handle_closed(uv_handle_t *h);

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
	l->baud_trial_ms = 2000;
	l->tries = 5;
	l->resyncs = 5;
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

/* The one way to change state: a transition the table (slot_table.c) does not list is a bug,
 * an assertion in debug builds; in release builds it is logged, refused, and the board in
 * flight fails with the reason. Returns 0, or -1 when refused. */
int slot_set_state(struct st_slot *s, enum st_slot_state to)
{
	enum st_slot_state from = s->state;

	if (from == to)
		return 0;
	if (!slot_transition_allowed(from, to)) {
		st_err("slot %s: %s -> %s is not in the state table; refused", s->name,
		       st_slot_state_name(from), st_slot_state_name(to));
		assert(!"slot transition not in the state table");
		if (s->run)
			slot_fail_run(s, ST_E_INTERNAL, "state %s -> %s is not in the state table",
				      st_slot_state_name(from), st_slot_state_name(to));
		return -1;
	}
	s->state = to;
	s->since = uv_hrtime();
	st_debug("slot %s: %s -> %s%s%s", s->name, st_slot_state_name(from),
		 st_slot_state_name(to), s->device_id[0] ? ", device " : "", s->device_id);
	st_events_state(s->env->events, s->name, st_slot_state_name(from), st_slot_state_name(to),
			s->device_id[0] ? s->device_id : NULL);
	return 0;
}

const char *st_slot_note(const struct st_slot *s)
{
	if (s->line_note[0])
		return s->line_note;
	if (!s->run)
		return s->held ? s->hold_note : "";
	if (!s->port)
		return "port gone";
	if (s->state == ST_SLOT_PROFILE)
		return "sequence";
	if (s->room_waiting)
		return "pool full";
	if (s->state == ST_SLOT_BAUD_ASK || s->state == ST_SLOT_BAUD_CONFIRM)
		return "switching rate";
	if (s->req_kind != RQ_NONE && s->req_tries > 1)
		return "retrying";
	return "";
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
	int rate;

	if (st_profile_check_device_id(r->profile, id, err, sizeof(err)) != 0) {
		slot_fail_run(s, ST_E_PROFILE_DEVICE_ID, "profile %s: %s", r->profile->sku, err);
		return;
	}
	st_msgf(r->device_id, sizeof(r->device_id), "%s", id);
	st_msgf(s->device_id, sizeof(s->device_id), "%s", id);
	/* The line's rate first: everything after the CSR request is most of the bytes. */
	rate = slot_baud_wanted(s);
	if (rate) {
		if (slot_set_state(s, ST_SLOT_BAUD_ASK) == 0)
			slot_send_baud(s, rate);
		return;
	}
	if (slot_set_state(s, ST_SLOT_CSR) == 0)
		slot_kick(s);
}

static void on_sequence(int rc, const char *err, uint64_t value, void *arg)
{
	struct st_slot *s = arg;
	struct slot_run *r = s->run;
	char id[ST_PROFILE_MAX_ID + 1];

	/* A run that ended meanwhile leaves its number unused: sequence ids are never reused,
	 * gaps are allowed. A run that checks the board's own id asked for none. */
	if (!r || s->state != ST_SLOT_PROFILE || r->device_id[0])
		return;
	if (rc < 0) {
		slot_fail_run(s, rc, "allocating a sequence device id: %s", err ? err : st_strerror(rc));
		return;
	}
	if (st_profile_sequence_id(r->profile, (unsigned long long)value, id, sizeof(id)) != 0) {
		slot_fail_run(s, ST_E_PROFILE_DEVICE_ID,
			      "sequence number %" PRIu64 " does not fit the %u digits of profile %s",
			      value, r->profile->devid_digits, r->profile->sku);
		return;
	}
	use_device_id(s, id);
}

/* The ledger's answer on the sequence device id the board reports (slot_start_run): 0 when
 * the ledger issued it, ST_E_SLOT_ID_UNISSUED when not (the pool decided and flagged it,
 * sequence_check). A board that names a number ahead of the counter would hold a
 * certificate for the id of a board not yet made, and that board would then be refused as
 * a second key for its own id. */
static void on_sequence_checked(int rc, const char *err, uint64_t next, void *arg)
{
	struct st_slot *s = arg;
	struct slot_run *r = s->run;
	char id[ST_PROFILE_MAX_ID + 1];

	(void)next;
	if (!r || s->state != ST_SLOT_PROFILE || !r->device_id[0])
		return;
	if (rc == ST_E_SLOT_ID_UNISSUED) {
		slot_fail_run(s, rc, "%s", err);
		return;
	}
	if (rc < 0) {
		slot_fail_run(s, rc, "checking the board's device id %s: %s", r->device_id,
			      err ? err : st_strerror(rc));
		return;
	}
	st_msgf(id, sizeof(id), "%s", r->device_id);
	use_device_id(s, id);
}

unsigned slot_retry_delay_ms(unsigned streak)
{
	if (streak < 2)
		return 0;
	if (streak - 2 >= 5)
		return SLOT_RETRY_MAX_MS;
	return SLOT_RETRY_FIRST_MS << (streak - 2);
}

/* The board seen gone: whatever comes next is a new board, which starts at once. */
void slot_streak_reset(struct st_slot *s)
{
	s->fail_streak = 0;
	s->retry_at = 0;
	s->held = 0;
}

/* A board is there to start while the slot waits after failures in a row (retry_at): the
 * slot probes again when the wait is over, and the board that answers then starts. Returns
 * 1 when it waits. */
static int hold_start(struct st_slot *s)
{
	uint64_t now = uv_hrtime();
	unsigned ms;

	if (s->retry_at <= now)
		return 0;
	ms = (unsigned)((s->retry_at - now + 999999) / 1000000);
	if (!s->held) {
		s->held = 1;
		st_notice("slot %s: %u failures in a row; the next board starts in %u ms", s->name,
			  s->fail_streak, ms);
		st_msgf(s->hold_note, sizeof(s->hold_note), "%u failures in a row: pausing",
			s->fail_streak);
	}
	slot_schedule(s, TW_PROBE, ms);
	return 1;
}

/* A new board answered HELLO (hello_sent: when that HELLO left), or (version 8) its BOOT
 * said who it is (hello_sent: now). */
void slot_start_run(struct st_slot *s, const struct st_slot_board *nb, uint64_t hello_sent)
{
	struct st_slot_env *env = s->env;
	struct slot_run *r;
	const struct st_profile *p;
	char err[ST_ERR_MAX];
	int rc;

	if (env->stopping || hold_start(s))
		return;
	s->held = 0;
	slot_unschedule(s);
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
	r->t_hello_sent = hello_sent;
	r->t_hello = uv_hrtime();
	r->retransmits0 = s->retransmits;
	r->piped0 = s->piped;
	if (s->boot_open) {
		/* From the BOOT that introduced the board. */
		uint64_t rx = slot_rx_upto(s);

		r->requests0 = s->requests;
		r->tx0 = s->tx_bytes;
		r->rx0 = rx - (s->boot_len < rx ? s->boot_len : rx);
		r->writes0 = s->tx_writes;
	} else {
		/* From the HELLO that found the board: its bytes, and it, are this board's too. */
		r->requests0 = s->requests ? s->requests - 1 : 0;
		r->tx0 = s->tx_bytes - s->req_len;
		r->rx0 = s->req_rx0;
		r->writes0 = s->req_writes0;
	}
	slot_set_state(s, ST_SLOT_HELLO);
	st_debug("slot %s: board hardware id '%s' sku '%s' sn '%s' device id '%s' key %s fw %s",
		 s->name, nb->hw, nb->sku, nb->sn, nb->dev, nb->key, nb->fw);

	r->pset = env->profiles(env->arg);
	if (!r->pset) {
		slot_fail_run(s, ST_E_NOMEM, "out of memory");
		return;
	}
	rc = st_profiles_choose(r->pset, s->profile_path, nb->hw, nb->sku, &r->profile, err,
				   sizeof(err));
	if (rc < 0) {
		slot_fail_run(s, rc, "%s", err);
		return;
	}
	p = r->profile;
	st_msgf(r->factory, sizeof(r->factory), "%s",
		p->policy.factory[0] ? p->policy.factory : env->ca->ou);
	slot_set_state(s, ST_SLOT_PROFILE);
	if (p->key_storage == ST_KEY_STORAGE_SECURE_ELEMENT && strcmp(nb->key, "se") != 0) {
		slot_fail_run(s, ST_E_SLOT_KEY_STORAGE,
			      "profile %s requires a key in a secure element; the board reports key "
			      "storage '%s'",
			      p->sku, nb->key);
		return;
	}
	switch (p->devid_source) {
	case ST_DEVID_BOARD:
	case ST_DEVID_SECURE_ELEMENT:
		if (!nb->dev[0]) {
			slot_fail_run(s, ST_E_SLOT_NO_DEVICE_ID,
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
		 * keeps it, so the ledger recognises it. Unlike a sequence's (below), an id
		 * it names itself takes nothing from another board: the station's are random. */
		if (nb->dev[0] && st_profile_check_device_id(p, nb->dev, NULL, 0) == 0) {
			use_device_id(s, nb->dev);
		} else {
			char id[37];

			make_uuid4(id);
			use_device_id(s, id);
		}
		return;
	case ST_DEVID_SEQUENCE:
		/* A board that holds an id of the sequence keeps it if the ledger issued it (a
		 * retry, a crash): it names the claim in run's device id until the ledger says. */
		if (nb->dev[0] && st_profile_check_device_id(p, nb->dev, NULL, 0) == 0) {
			st_msgf(r->device_id, sizeof(r->device_id), "%s", nb->dev);
			rc = st_ledger_queue_check_sequence(env->ledger, nb->dev,
							    strlen(p->devid_prefix), s->name,
							    on_sequence_checked, s);
			if (rc < 0)
				slot_fail_run(s, rc, "cannot check the board's device id %s: %s",
					      nb->dev, st_strerror(rc));
			return;
		}
		rc = st_ledger_queue_next_sequence(env->ledger, p->devid_prefix, on_sequence, s);
		if (rc < 0) {
			slot_fail_run(s, rc, "cannot allocate a sequence device id: %s", st_strerror(rc));
		}
		return;
	}
}

/* ---- DONE and the end of a board ---------------------------------------------------- */

void slot_send_done(struct st_slot *s, int pass)
{
	struct slot_run *r = s->run;
	struct drv_proto_builder b;
	char text[96];

	if (pass)
		st_msgf(text, sizeof(text), "provisioned %s", r->device_id);
	else
		st_msgf(text, sizeof(text), "%s: %.70s", st_errname(r->fail_code), r->fail_msg);
	slot_begin_req(s, &b, DRV_PROTO_DONE);
	drv_proto_add_text(&b, "result", pass ? "pass" : "fail");
	drv_proto_add_text(&b, "text", text);
	slot_send_req(s, &b, RQ_DONE);
	/* Telling a failed board is a courtesy: one retransmission at most. */
	if (!pass && s->req_kind == RQ_DONE && s->env->lim.tries > 2)
		s->req_tries = s->env->lim.tries - 1;
}

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
	o.requests = (unsigned)(s->requests - r->requests0);
	o.turns = o.requests - (unsigned)(s->piped - r->piped0);
	o.writes = (unsigned)(s->tx_writes - r->writes0);
	o.retransmits = (unsigned)(s->retransmits - r->retransmits0);
	o.resyncs = r->resyncs;
	o.tx_bytes = s->tx_bytes - r->tx0;
	o.rx_bytes = slot_rx_upto(s) - r->rx0;
	o.baud = s->cur_baud;
	o.console_log = console_log;
	st_events_outcome(env->events, &o, r->t_hello_sent, now);
	record_attempt(s, &o);
	if (abandoned)
		return;
	s->last_pass = pass;
	s->fail_streak = pass ? 0 : s->fail_streak + 1;
	s->retry_at = pass ? 0 : now + (uint64_t)slot_retry_delay_ms(s->fail_streak) * 1000000u;
	s->handled++;
	s->passed += pass != 0;
	if (env->outcome)
		env->outcome(env->arg, s, pass);
}

/* Gives up whatever the pool holds for the run; failed, when the board failed, is why (a
 * certificate still recorded for it is then marked failed with that). */
static void release_signing(struct st_slot *s, const char *failed)
{
	struct slot_run *r = s->run;

	slot_room_remove(s);
	if (!r->req)
		return;
	if (r->in_pool)
		st_pool_cancel(s->env->pool, r->req, failed);
	else
		st_sign_req_free(r->req);
	r->req = NULL;
	r->in_pool = 0;
}

void slot_pass_run(struct st_slot *s)
{
	struct slot_run *r = s->run;

	r->t_done = uv_hrtime();
	slot_set_state(s, ST_SLOT_PASS);
	if (r->row_id > 0 && st_ledger_queue_mark_delivered(s->env->ledger, r->row_id, NULL, NULL) < 0)
		st_warn("slot %s: device %s: could not queue the delivery of ledger row %lld",
			s->name, r->device_id, (long long)r->row_id);
	st_info("slot %s: device %s: pass%s, serial %s, %.0f ms", s->name, r->device_id,
		r->reused ? " (recorded certificate delivered again)" : "",
		r->cert ? r->cert->serial_hex : "?", ms_between(r->t_hello_sent, r->t_done));
	report_outcome(s, 1, 0, NULL);
	slot_end_run(s);
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
		slot_pass_run(s);
		return;
	}
	r->failed = 1;
	r->fail_code = code;
	/* A CSR the signing pool's check refused failed at its CSR, as when the loop checked
	 * it, though the slot waited for the pool meanwhile. */
	r->fail_state = r->csr_rejected ? ST_SLOT_CSR : s->state;
	st_vmsgf(r->fail_msg, sizeof(r->fail_msg), fmt, ap);
	st_msgf(s->last_error, sizeof(s->last_error), "%s: %s", st_errname(code), r->fail_msg);
	s->last_code = code;
	st_warn("slot %s: device %s: failed in %s: %s", s->name,
		r->device_id[0] ? r->device_id : "(none yet)", st_slot_state_name(r->fail_state),
		r->fail_msg);
	release_signing(s, r->fail_msg);
	if (r->row_id > 0 && !r->reused &&
	    st_ledger_queue_mark_failed(s->env->ledger, r->row_id, r->fail_msg, NULL, NULL) < 0)
		st_warn("slot %s: could not queue the failure of ledger row %lld", s->name,
			(long long)r->row_id);
	slot_save_console(s, console, sizeof(console));
	report_outcome(s, 0, 0, console[0] ? console : NULL);
	if (s->req_kind != RQ_NONE) {
		s->req_kind = RQ_NONE;
		slot_unschedule(s);
	}
	slot_set_state(s, ST_SLOT_FAILED);
	if (tell_board && s->port && !s->env->stopping)
		slot_kick(s);
	else
		slot_end_run(s);
}

void slot_fail_run(struct st_slot *s, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfail(s, code, 1, fmt, ap);
	va_end(ap);
}

/* A failure the board in the slot must not be told about (it is another board). */
void slot_fail_run_quiet(struct st_slot *s, int code, const char *fmt, ...)
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
	release_signing(s, NULL);
	if (r->row_id > 0 && !r->reused)
		st_ledger_queue_mark_failed(s->env->ledger, r->row_id, "station stopping", NULL, NULL);
	report_outcome(s, 0, 1, NULL);
	slot_end_run(s);
}

void slot_end_run(struct st_slot *s)
{
	struct slot_run *r = s->run;

	if (!r)
		return;
	release_signing(s, NULL);
	s->run = NULL;
	s->boot_open = 0;
	st_profiles_unref(r->pset);
	free(r->csr);
	st_cert_free(r->cert);
	st_render_free(r->render);
	st_render_free(r->render_early);
	free(r->wf);
	free(r);
	uv_timer_stop(&s->aux);
	/* The console ring starts afresh for the next board, and so does the line watch. */
	s->con_head = s->con_len = 0;
	slot_line_heard(s);
	if (s->req_kind != RQ_NONE) {
		s->req_kind = RQ_NONE;
		slot_unschedule(s);
	}
	if (s->env->stopping)
		return;
	if (s->port) {
		slot_set_state(s, ST_SLOT_LEAVING);
		slot_schedule(s, TW_PROBE, s->env->lim.presence_ms);
	} else {
		slot_set_state(s, ST_SLOT_OFFLINE);
		slot_schedule(s, TW_REOPEN, s->env->lim.reopen_ms);
	}
}

/* ---- Life cycle ---------------------------------------------------------------------- */

static const struct drv_proto_callbacks slot_cbs = {
	.frame = slot_on_frame,
	.console = slot_console_add,
	.error = slot_on_frame_error,
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
	s->cur_baud = slot_base_baud(s);
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
	slot_port_open(s);
}

int st_slot_in_flight(const struct st_slot *s)
{
	return s->run && !s->run->failed;
}

int st_slot_stop(struct st_slot *s)
{
	int abandoned = 0;

	if (s->run) {
		if (s->state == ST_SLOT_VERIFIED || s->state == ST_SLOT_PASS) {
			/* Verified: the board holds its files and its key; only DONE is left. */
			slot_pass_run(s);
		} else if (s->run->failed) {
			slot_end_run(s);
		} else {
			abandon_run(s);
			abandoned = 1;
		}
	}
	slot_port_close(s);
	slot_unschedule(s);
	uv_timer_stop(&s->aux);
	slot_set_state(s, ST_SLOT_STOPPED);
	return abandoned;
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
		slot_end_run(s);
	slot_port_close(s);
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
	st_sota_cache_free(&s->sota_cache);
	free(s);
}

void st_slot_info(const struct st_slot *s, struct st_slot_info *out)
{
	out->idx = s->idx;
	memcpy(out->name, s->name, sizeof(out->name));
	out->state = s->state;
	out->since = s->since;
	memcpy(out->device_id, s->device_id, sizeof(out->device_id));
	memcpy(out->last_error, s->last_error, sizeof(out->last_error));
	out->last_pass = s->last_pass;
	out->last_code = s->last_code;
	out->handled = s->handled;
	out->passed = s->passed;
	st_msgf(out->note, sizeof(out->note), "%s", st_slot_note(s));
	st_msgf(out->path, sizeof(out->path), "%s", s->path ? s->path : "");
	out->board = s->board;
	out->writing = s->state == ST_SLOT_QUEUED && s->req_kind == RQ_WRITE;
}

size_t st_slot_console(const struct st_slot *s, char *buf, size_t cap)
{
	size_t n = s->con_len < cap ? s->con_len : cap;
	/* The ring, oldest byte first (the oldest that fit when cap is short). */
	size_t start = (s->con_head + (s->con_len - n)) % ST_SLOT_CONSOLE;
	size_t first = ST_SLOT_CONSOLE - start;

	if (first > n)
		first = n;
	memcpy(buf, s->console + start, first);
	memcpy(buf + first, s->console, n - first);
	return n;
}

double st_slot_info_ms(const struct st_slot_info *i, uint64_t now)
{
	return now > i->since ? (double)(now - i->since) / 1e6 : 0;
}
