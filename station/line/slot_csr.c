/* The slot's CSR and its signing: reading the CSR from the board in chunks, handing it to the
 * signing pool (or queueing the slot for room in it), which checks it against the profile's
 * policy on a signing worker before anything of it is recorded, and taking the certificate
 * when it is signed and recorded. */
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
#include "digest.h"
#include "err.h"
#include "log.h"
#include "queue.h"
#include "slot_int.h"
#include "sota.h"

static enum st_ec_curve curve_of(enum st_key_alg alg);
static void submit(struct st_slot *s);
static void room_drain(void *arg);
static void csr_complete(struct st_slot *s);
static void on_signed(struct st_sign_req *req);
static void on_accepted(struct st_sign_req *req);

/* ---- CSR ----------------------------------------------------------------------------- */

void slot_send_csr(struct st_slot *s)
{
	struct slot_run *r = s->run;
	struct drv_proto_builder b;

	slot_begin_req(s, &b, DRV_PROTO_CSR);
	drv_proto_add_text(&b, "cn", r->device_id);
	if (r->factory[0])
		drv_proto_add_text(&b, "ou", r->factory);
	if (r->profile->policy.production)
		drv_proto_add_text(&b, "bc", "production");
	drv_proto_add_text(&b, "alg", "ec-p256");
	drv_proto_add_uint(&b, "off", r->csr_have);
	slot_send_req(s, &b, RQ_CSR);
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
		st_pool_set_room_cb(env->pool, room_drain, env);
		if (!s->room_waiting) {
			s->room_waiting = 1;
			ST_LIST_APPEND(env->room_head, env->room_tail, s, room_prev, room_next);
		}
		return;
	}
	slot_fail_run(s, rc, "%s", rc == ST_E_INVAL ? r->req->err : st_strerror(rc));
}

void slot_room_remove(struct st_slot *s)
{
	struct st_slot_env *env = s->env;

	if (!s->room_waiting)
		return;
	ST_LIST_REMOVE(env->room_head, env->room_tail, s, room_prev, room_next);
	s->room_waiting = 0;
}

/* The pool has room again (st_pool_set_room_cb()): slots waiting for it submit, oldest
 * first, while it takes them. */
static void room_drain(void *arg)
{
	struct st_slot_env *env = arg;

	while (env->room_head && st_pool_can_submit(env->pool)) {
		struct st_slot *s = env->room_head;

		slot_room_remove(s);
		if (s->run && s->run->req && !s->run->in_pool)
			submit(s);
	}
}

static void csr_complete(struct st_slot *s)
{
	struct slot_run *r = s->run;
	uint8_t sha[32];

	st_digest(ST_SHA256, r->csr, r->csr_total, sha);
	if (memcmp(sha, r->csr_sha, sizeof(sha)) != 0) {
		/* Damage the CRC did not catch, or a CSR that changed between chunks: read it
		 * again, a few times. */
		r->csr_have = 0;
		if (++r->csr_restarts > s->env->lim.tries) {
			slot_fail_run(s, ST_E_SLOT_CSR_HASH,
				      "the CSR's %zu bytes do not hash to the SHA-256 the board sent, "
				      "%u times",
				      r->csr_total, r->csr_restarts);
			return;
		}
		slot_kick(s);
		return;
	}
	r->t_checked = uv_hrtime();
	slot_set_state(s, ST_SLOT_CHECKED);

	r->req = st_sign_req_new();
	if (!r->req) {
		slot_fail_run(s, ST_E_NOMEM, "out of memory");
		return;
	}
	r->req->policy = &r->profile->policy;
	st_msgf(r->req->profile, sizeof(r->req->profile), "%s", r->profile->sku);
	st_msgf(r->req->slot, sizeof(r->req->slot), "%s", s->name);
	st_msgf(r->req->device_id, sizeof(r->req->device_id), "%s", r->device_id);
	/* Only an id the board read from its secure element (and the board reported one, as
	 * slot_start_run() checked) is the board's own; any other a board could have made up. */
	r->req->id_authenticated = r->profile->devid_source == ST_DEVID_SECURE_ELEMENT &&
				   strcmp(s->board.key, "se") == 0;
	/* As read: a signing worker checks it (the loop spends no verification on it), and one
	 * that fails comes back to on_signed with the check's code and message and no ledger
	 * row, as when the loop checked it. */
	r->req->csr_raw = r->csr;
	r->req->csr_raw_len = r->csr_total;
	r->csr = NULL;
	r->req->auths = st_auth_set_ref(r->pset->auths);
	r->req->data = s;
	r->req->done = on_signed;
	r->req->accepted = on_accepted;
	slot_set_state(s, ST_SLOT_QUEUED);
	slot_schedule(s, TW_QUEUED, s->env->lim.queued_ms);
	/* The public files go while the CSR is checked and its intent recorded. */
	slot_prepare_early(s);
	submit(s);
	if (s->state == ST_SLOT_QUEUED) /* not failed there */
		slot_kick(s);
}

void slot_on_csr_answer(struct st_slot *s, const struct drv_proto_frame *f)
{
	struct slot_run *r = s->run;
	uint64_t total, off;
	uint8_t sha[32];
	size_t n;
	char err[200];

	if (drv_proto_get_uint(f, "total", 1, ST_CSR_MAX_BYTES, &total, err, sizeof(err)) ||
	    drv_proto_get_uint(f, "off", 0, ST_CSR_MAX_BYTES, &off, err, sizeof(err)) ||
	    drv_proto_get_hex(f, "sha", sha, sizeof(sha), err, sizeof(err))) {
		slot_bad_answer(s, RQ_CSR, "CSR answer: %s", err);
		return;
	}
	if (off != r->csr_have) {
		slot_bad_answer(s, RQ_CSR, "CSR answer for offset %" PRIu64 ", asked for %zu", off,
				r->csr_have);
		return;
	}
	if (r->csr_have == 0) {
		uint8_t *buf = realloc(r->csr, (size_t)total);

		if (!buf) {
			slot_fail_run(s, ST_E_NOMEM, "out of memory");
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
			slot_fail_run(s, ST_E_SLOT_CSR_HASH, "the CSR changed between chunks %u times",
				      r->csr_restarts);
			return;
		}
		slot_kick(s);
		return;
	}
	if (drv_proto_get_b64(f, "data", r->csr + r->csr_have, r->csr_total - r->csr_have, &n,
			      err, sizeof(err))) {
		slot_bad_answer(s, RQ_CSR, "CSR answer: %s", err);
		return;
	}
	if (n == 0 && r->csr_have < r->csr_total) {
		slot_bad_answer(s, RQ_CSR, "CSR answer at offset %zu carries no data", r->csr_have);
		return;
	}
	r->csr_have += n;
	if (r->csr_have < r->csr_total) {
		slot_kick(s);
		return;
	}
	csr_complete(s);
}

/* The CSR passed the pool's checks and the intent is recorded (its authorization unit
 * taken): while it is signed, the rest of the files that do not hold the certificate go.
 * Not before: a board refused gets none of the profile's files but the public ones
 * (slot_files_open()). */
static void on_accepted(struct st_sign_req *req)
{
	struct st_slot *s = req->data;

	if (!s->run || s->run->req != req || s->state != ST_SLOT_QUEUED)
		return;
	s->run->accepted = 1; /* the early files were rendered as the CSR came in */
	slot_kick(s);
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
		return;
	}
	r->req = NULL;
	r->in_pool = 0;
	r->pt = req->t;
	if (req->rc < 0) {
		/* The pool marked the intent row failed itself, if there was one. */
		int code = req->rc;

		st_msgf(err, sizeof(err), "%s", req->err);
		r->csr_rejected = req->csr_rejected;
		st_sign_req_free(req);
		if (r->csr_rejected)
			slot_fail_run(s, code, "CSR rejected: %s", err);
		else
			slot_fail_run(s, code, "%s", err);
		return;
	}
	/* The key the certificate certifies, for the proof of possession. */
	r->curve = curve_of(req->csr->key_alg);
	r->pub_len = req->csr->pubkey_len < sizeof(r->pub) ? req->csr->pubkey_len : 0;
	memcpy(r->pub, req->csr->pubkey, r->pub_len);
	r->cert = req->cert;
	req->cert = NULL;
	r->row_id = req->row_id;
	r->reused = req->reused;
	st_msgf(r->auth_id, sizeof(r->auth_id), "%s", req->auth_id);
	st_sign_req_free(req);
	r->t_signed = uv_hrtime();
	if (s->timer_what == TW_QUEUED)
		slot_unschedule(s); /* not a WRITE's wait: that request goes on */
	slot_set_state(s, ST_SLOT_SIGNED);
	rc = slot_prepare_files(s, err, sizeof(err));
	if (rc < 0)
		slot_fail_run(s, rc, "%s", err);
	else
		slot_kick(s);
}
