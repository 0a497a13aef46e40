/* The slot's state machine, one slot on a socket pair (the pair port backend), the board played
 * by the test frame by frame with the protocol codec. The signing side is real: a CA whose key
 * is in a file, the signing pool, a SQLite ledger in the test's directory.
 *
 * Nothing waits on a clock: every limit is a minute, and a test that wants a wait to run out
 * makes the slot's timer fire now (expire()). The loop runs until the frame the test expects
 * arrives, with a watchdog that fails the test instead of hanging it. */
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include <sqlite3.h>

#include <uv.h>

#include "ca.h"
#include "err.h"
#include "events.h"
#include "log.h"
#include "operator.h"
#include "pool.h"
#include "port.h"
#include "profile.h"
#include "proto.h"
#include "slot.h"
#include "slot_int.h"
#include "testutil.h"

#define FACTORY "acme-factory"
#define LONG_MS 60000 /* every wait: only expire() ends one */
#define TRIES 4
#define WATCHDOG_MS 20000
#define CSR_CHUNK 120
#define BOARD_FILES 6 /* the files the test's board holds at most */

/* What every profile of the test says before its files. */
#define PROFILE_HEAD                                                                           \
	"sku: t-slot\n"                                                                         \
	"factory: " FACTORY "\n"                                                                \
	"match: {hardware_ids: [hw-1, hw-2]}\n"                                                 \
	"device_id: {source: board, pattern: '^DEV-[0-9]{4}$'}\n"                               \
	"files:\n"

static const char profile_yaml[] = PROFILE_HEAD
	"  - {path: /etc/dev/device.crt, content: '{cert_pem}'}\n"
	"  - {path: /etc/dev/id, content: '{device_id}'}\n"
	"  - {path: /etc/dev/chain.crt, content: '{chain_pem}{root_pem}'}\n"
	"  - {path: /etc/dev/chained.crt, content: '{cert_pem}{chain_pem}'}\n";

/* The board the test plays. */
struct board {
	char hw[32], sn[32], dev[32], boot[16];
	const char *bauds; /* NULL: offers none */
	EVP_PKEY *key;
	char csr_cn[64];   /* the CN it puts in its CSR; "" the one asked for */
	uint8_t *csr;
	size_t csr_len;
	struct {
		char path[256];
		uint8_t data[65536];
		size_t size, have;
	} file[BOARD_FILES];
	unsigned nfiles;
	uint64_t gen;
	/* Version 2 (PROTOCOL.md 6): the version it answers HELLO with (0: 1), what it was sent,
	 * and the faults it plays. */
	unsigned version, max; /* max: the frame it accepts (0: 4096) */
	unsigned raw_chunks, copies, bare_chunks, sums, lists;
	unsigned copy_and_bytes; /* version 4: WRITEs that carried a copy and bytes after it */
	unsigned pem_chunks;     /* version 5: WRITEs that carried a PEM block as its text */
	unsigned chained_writes; /* WRITEs of etc/dev/chained.crt, and how many of them */
	unsigned chain_frames;   /* carried the chain's bytes alone (no copy) */
	int source_gone; /* no copy finds its source (a reboot lost the staged files) */
	int forget_bare; /* the first chunk that does not name its file finds nothing staged */
	int flip_byte;   /* after COMMIT, a byte of the last file changes on its storage */
	/* Version 3 (PROTOCOL.md 7): COMMIT and VERIFY requests, the steps it did folded into
	 * another request, and the folds it does not do (answered without their fields). */
	unsigned commits, verifies, folded_commits, folded_verifies;
	unsigned asked_commit, asked_verify; /* requests that carried commit, VERIFY's nonce */
	int no_fold_commit, no_fold_verify;
	unsigned folded_wait_ms; /* the slot's wait for the last request that carried a fold */
	/* Version 6 (PROTOCOL.md 10): WRITEs of several files, and the files in them. */
	unsigned multi_writes, multi_files, single_writes;
	int fail_multi; /* the next WRITE of several files is answered ERROR HASH */
	int bad_multi;  /* the next is answered with its second file's part for another path
			 * (1) or without it (2), nothing written */
	/* Version 7 (PROTOCOL.md 11): the requests it says it takes at once (0: says nothing),
	 * the WRITEs it answered with the next request already in (sent behind it), and the
	 * fault it plays on the first of them. */
	unsigned win, piped;
	int offset_piped; /* answered ERROR OFFSET, have=0: the file lost, nothing written */
	int short_piped;  /* answered have=0 done=0: the chunk not taken, nothing written */
};

struct fx {
	char dir[4096];
	uv_loop_t loop;
	EVP_PKEY *ca_key;
	X509 *ca_cert;
	struct st_ca *ca;
	struct drv_signer *signer;
	struct st_pool *pool;
	struct st_events *events;
	char events_path[4200];
	struct st_profiles *pset;
	struct st_slot_env env;
	struct st_slot *slot;
	int fds[2];
	char port[32];
	uv_poll_t bpoll;
	uv_poll_t bpoll2; /* the board's end after a reconnect */
	int bpoll2_on;
	uv_timer_t watchdog;
	int timed_out;
	struct drv_proto_decoder bdec;
	struct {
		char line[DRV_PROTO_MAX_LINE];
		size_t len;
	} q[32];
	unsigned qhead, qn;
	unsigned outcomes, passes;
	char last_error[ST_ERR_MAX];
	int slot_closed, pool_closed;
	struct board b;
	unsigned write_ms, commit_ms, verify_ms; /* those waits, when set, instead of LONG_MS */
	const char *chain_pem; /* the chain's PEM, when set, instead of none */
	const char *profile;   /* the profile's YAML, when set, instead of profile_yaml */
};

/* A frame taken off the queue, parsed in its own buffer. */
struct got {
	char line[DRV_PROTO_MAX_LINE];
	struct drv_proto_frame f;
};

/* ---- Board side ---------------------------------------------------------------------- */

static void on_board_frame(void *arg, const struct drv_proto_frame *f)
{
	struct fx *fx = arg;
	unsigned at;

	assert_true(fx->qn < sizeof(fx->q) / sizeof(fx->q[0]));
	at = (fx->qhead + fx->qn) % (sizeof(fx->q) / sizeof(fx->q[0]));
	memcpy(fx->q[at].line, f->line, f->len);
	fx->q[at].len = f->len;
	fx->qn++;
}

static void on_board_readable(uv_poll_t *h, int status, int events)
{
	struct fx *fx = h->data;
	char buf[4096];
	ssize_t n;

	(void)status;
	(void)events;
	while ((n = read(fx->fds[1], buf, sizeof(buf))) > 0)
		drv_proto_decoder_feed(&fx->bdec, buf, (size_t)n);
}

static void on_watchdog(uv_timer_t *t)
{
	struct fx *fx = t->data;

	fx->timed_out = 1;
}

/* Runs the loop until cond(fx) holds: what is due first without blocking (a timer that
 * expire() made due may be all there is to run), then blocking for the next event. */
static void run_until(struct fx *fx, int (*cond)(struct fx *fx))
{
	uv_timer_start(&fx->watchdog, on_watchdog, WATCHDOG_MS, 0);
	while (!cond(fx)) {
		uv_run(&fx->loop, UV_RUN_NOWAIT);
		if (cond(fx))
			break;
		uv_run(&fx->loop, UV_RUN_ONCE);
		if (!cond(fx) && fx->timed_out)
			fail_msg("waited in vain (slot in %s)", st_slot_state_name(fx->slot->state));
	}
	uv_timer_stop(&fx->watchdog);
}

static int has_frame(struct fx *fx)
{
	return fx->qn > 0;
}

/* Runs the loop until the station has sent a frame; returns it. */
static void next_frame(struct fx *fx, struct got *g)
{
	char err[256];

	run_until(fx, has_frame);
	memcpy(g->line, fx->q[fx->qhead].line, fx->q[fx->qhead].len);
	if (drv_proto_parse(g->line, fx->q[fx->qhead].len, &g->f, err, sizeof(err)) != 0)
		fail_msg("station frame: %s", err);
	fx->qhead = (fx->qhead + 1) % (sizeof(fx->q) / sizeof(fx->q[0]));
	fx->qn--;
	assert_int_equal(g->f.kind, DRV_PROTO_REQUEST);
}

/* The next request, which must be of type. */
static void expect(struct fx *fx, struct got *g, const char *type)
{
	next_frame(fx, g);
	if (strcmp(g->f.type, type) != 0)
		fail_msg("expected %s, the station sent %.*s", type, (int)g->f.len, g->f.line);
}

/* Runs the loop until the station has read every byte the board sent (the station reads
 * from a duplicate of fds[0]: one socket, one count). */
static void drain(struct fx *fx)
{
	int unread = 0;

	for (;;) {
		assert_int_equal(ioctl(fx->fds[0], FIONREAD, &unread), 0);
		if (unread == 0 || !fx->slot->port)
			return;
		uv_run(&fx->loop, UV_RUN_NOWAIT);
	}
}

/* The slot's current wait runs out now (its timer fires on the next loop turn), once the
 * station has read whatever the board sent before. */
static void expire(struct fx *fx)
{
	uv_timer_t *t = &fx->slot->timer;

	drain(fx);
	assert_true(uv_is_active((uv_handle_t *)t));
	uv_timer_start(t, t->timer_cb, 0, 0);
}

static void board_send(struct fx *fx, const void *data, size_t n)
{
	assert_int_equal(write(fx->fds[1], data, n), (ssize_t)n);
}

static void frame_end(struct fx *fx, struct drv_proto_builder *b)
{
	char err[160];
	size_t len;

	if (drv_proto_end(b, &len, err, sizeof(err)) != 0)
		fail_msg("board frame: %s", err);
	board_send(fx, b->buf, len);
}

static void answer_error(struct fx *fx, const struct got *g, const char *code)
{
	struct drv_proto_builder b;
	char buf[DRV_PROTO_MAX_LINE];

	drv_proto_begin(&b, buf, sizeof(buf), DRV_PROTO_ANSWER, g->f.seq, DRV_PROTO_ERROR);
	drv_proto_add_text(&b, "code", code);
	drv_proto_add_text(&b, "text", "as the test wants");
	frame_end(fx, &b);
}

/* Who the board is, as HELLO's answer (and version 8's BOOT) says. */
static void hello_fields(struct fx *fx, struct drv_proto_builder *b)
{
	drv_proto_add_uint(b, "v", fx->b.version ? fx->b.version : 1);
	drv_proto_add_uint(b, "max", fx->b.max ? fx->b.max : 4096);
	drv_proto_add_text(b, "hw", fx->b.hw);
	drv_proto_add_text(b, "sku", "t-slot");
	drv_proto_add_text(b, "sn", fx->b.sn);
	if (fx->b.dev[0])
		drv_proto_add_text(b, "dev", fx->b.dev);
	drv_proto_add_text(b, "key", "file");
	drv_proto_add_text(b, "boot", fx->b.boot);
	if (fx->b.version >= 7 && fx->b.win)
		drv_proto_add_uint(b, "win", fx->b.win);
	if (fx->b.bauds) {
		char list[64], *items[8], *save = NULL;
		size_t n = 0;

		snprintf(list, sizeof(list), "%s", fx->b.bauds);
		for (char *t = strtok_r(list, ",", &save); t && n < 8; t = strtok_r(NULL, ",", &save))
			items[n++] = t;
		drv_proto_add_list(b, "bauds", (const char *const *)items, n);
	}
}

static void answer_hello(struct fx *fx, const struct got *g)
{
	struct drv_proto_builder b;
	char buf[DRV_PROTO_MAX_LINE];

	drv_proto_begin(&b, buf, sizeof(buf), DRV_PROTO_ANSWER, g->f.seq, DRV_PROTO_HELLO);
	hello_fields(fx, &b);
	frame_end(fx, &b);
}

/* BOOT: bare, or (a board of version 8) saying who the board is, as HELLO's answer would. */
static void send_boot(struct fx *fx)
{
	struct drv_proto_builder b;
	char buf[DRV_PROTO_MAX_LINE];

	drv_proto_begin(&b, buf, sizeof(buf), DRV_PROTO_EVENT, 0, DRV_PROTO_BOOT);
	if (fx->b.version >= 8)
		hello_fields(fx, &b);
	frame_end(fx, &b);
}

static void answer_csr(struct fx *fx, const struct got *g)
{
	struct drv_proto_builder b;
	char buf[DRV_PROTO_MAX_LINE], cn[128], ou[128];
	uint8_t sha[32];
	uint64_t off;
	size_t n;

	assert_int_equal(drv_proto_get_uint(&g->f, "off", 0, 65536, &off, NULL, 0), 0);
	if (!fx->b.csr) {
		assert_int_equal(drv_proto_get_text(&g->f, "cn", cn, sizeof(cn), NULL, 0), 0);
		assert_int_equal(drv_proto_get_text(&g->f, "ou", ou, sizeof(ou), NULL, 0), 0);
		fx->b.csr = tu_csr_der(fx->b.key, fx->b.csr_cn[0] ? fx->b.csr_cn : cn, ou, 0,
				       &fx->b.csr_len);
		assert_non_null(fx->b.csr);
	}
	assert_true(off <= fx->b.csr_len);
	n = fx->b.csr_len - (size_t)off;
	if (n > CSR_CHUNK)
		n = CSR_CHUNK;
	SHA256(fx->b.csr, fx->b.csr_len, sha);
	drv_proto_begin(&b, buf, sizeof(buf), DRV_PROTO_ANSWER, g->f.seq, DRV_PROTO_CSR);
	drv_proto_add_uint(&b, "total", fx->b.csr_len);
	drv_proto_add_uint(&b, "off", off);
	drv_proto_add_hex(&b, "sha", sha, sizeof(sha));
	drv_proto_add_b64(&b, "data", fx->b.csr + off, n);
	frame_end(fx, &b);
}

static void answer_have(struct fx *fx, const struct got *g, const char *code, size_t have)
{
	struct drv_proto_builder b;
	char buf[DRV_PROTO_MAX_LINE];

	drv_proto_begin(&b, buf, sizeof(buf), DRV_PROTO_ANSWER, g->f.seq, DRV_PROTO_ERROR);
	drv_proto_add_text(&b, "code", code);
	drv_proto_add_text(&b, "text", "as the test wants");
	drv_proto_add_uint(&b, "have", have);
	frame_end(fx, &b);
}

/* A copy's bytes (version 2): from a file the board holds whole. 0, or -1 when it does not
 * hold them. */
static int copy_from(struct fx *fx, const struct drv_proto_frame *f, uint8_t *out, size_t cap,
		     size_t *n)
{
	const struct drv_proto_field *fld = drv_proto_find(f, "copy");
	char src[256], off_s[24], len_s[24];
	size_t off, len;
	unsigned i;

	assert_int_equal(drv_proto_field_item(f, fld, 0, src, sizeof(src), NULL, 0), 0);
	assert_int_equal(drv_proto_field_item(f, fld, 1, off_s, sizeof(off_s), NULL, 0), 0);
	assert_int_equal(drv_proto_field_item(f, fld, 2, len_s, sizeof(len_s), NULL, 0), 0);
	off = strtoul(off_s, NULL, 10);
	len = strtoul(len_s, NULL, 10);
	for (i = 0; i < fx->b.nfiles && strcmp(fx->b.file[i].path, src) != 0; i++)
		;
	if (fx->b.source_gone || i == fx->b.nfiles || fx->b.file[i].have != fx->b.file[i].size ||
	    off + len > fx->b.file[i].size)
		return -1;
	assert_true(len <= cap);
	memcpy(out, fx->b.file[i].data + off, len);
	*n = len;
	return 0;
}

static void commit_fields(struct fx *fx, struct drv_proto_builder *b);
static void verify_fields(struct fx *fx, const struct got *g, struct drv_proto_builder *b);

/* One file of a WRITE (f: the request, or its part for the file in version 6): written, and
 * its path, have and done added to b. Returns the file's index, or -1 when it answered
 * ERROR. */
static int write_part(struct fx *fx, const struct got *g, const struct drv_proto_frame *f,
		      struct drv_proto_builder *b)
{
	char path[256];
	uint8_t chunk[DRV_PROTO_MAX_LINE];
	uint64_t size = 0, off;
	unsigned i;
	size_t n = 0;
	int ident = drv_proto_has(f, "size");

	assert_int_equal(drv_proto_get_text(f, "path", path, sizeof(path), NULL, 0), 0);
	if (ident)
		assert_int_equal(drv_proto_get_uint(f, "size", 0, 65536, &size, NULL, 0), 0);
	assert_int_equal(drv_proto_get_uint(f, "off", 0, 65536, &off, NULL, 0), 0);
	for (i = 0; i < fx->b.nfiles && strcmp(fx->b.file[i].path, path) != 0; i++)
		;
	if (!ident) {
		/* A chunk that does not name its file continues the one staged. */
		assert_true(fx->b.version >= 2);
		assert_false(drv_proto_has(f, "mode") || drv_proto_has(f, "sha"));
		assert_true(off > 0);
		fx->b.bare_chunks++;
		if (i < fx->b.nfiles && fx->b.forget_bare) {
			fx->b.forget_bare = 0;
			fx->b.file[i].have = 0;
			answer_have(fx, g, "OFFSET", 0);
			return -1;
		}
		if (i == fx->b.nfiles) {
			answer_have(fx, g, "OFFSET", 0);
			return -1;
		}
		size = fx->b.file[i].size;
	}
	if (i == fx->b.nfiles) {
		assert_true(i < BOARD_FILES);
		fx->b.nfiles++;
		snprintf(fx->b.file[i].path, sizeof(fx->b.file[i].path), "%s", path);
		fx->b.file[i].have = 0;
	}
	fx->b.file[i].size = (size_t)size;
	if (strcmp(path, "etc/dev/chained.crt") == 0) {
		fx->b.chained_writes++;
		fx->b.chain_frames += !drv_proto_has(f, "copy");
	}
	/* A copy first (version 2), then bytes: alone, or after the copy in version 4. */
	if (drv_proto_has(f, "copy")) {
		assert_true(fx->b.version >= 2);
		fx->b.copies++;
		if (drv_proto_has(f, "raw") || drv_proto_has(f, "data")) {
			assert_true(fx->b.version >= 4);
			fx->b.copy_and_bytes++;
		}
		if (copy_from(fx, f, chunk, sizeof(chunk), &n) != 0) {
			answer_have(fx, g, "SOURCE", fx->b.file[i].have);
			return -1;
		}
	}
	if (drv_proto_has(f, "pem")) {
		char t[DRV_PROTO_MAX_LINE];
		size_t tl = 0;

		/* The block written out from its text: BEGIN, lines of 64, END. */
		assert_true(fx->b.version >= 5);
		assert_int_equal(drv_proto_get_text(f, "pem", t, sizeof(t), NULL, 0), 0);
		tl = strlen(t);
		n += (size_t)sprintf((char *)chunk + n, "-----BEGIN CERTIFICATE-----\n");
		for (size_t k = 0; k < tl; k += 64)
			n += (size_t)sprintf((char *)chunk + n, "%.*s\n",
					     (int)(tl - k < 64 ? tl - k : 64), t + k);
		n += (size_t)sprintf((char *)chunk + n, "-----END CERTIFICATE-----\n");
		fx->b.pem_chunks++;
	} else if (drv_proto_has(f, "raw")) {
		size_t m = 0;

		assert_true(fx->b.version >= 2);
		assert_int_equal(drv_proto_get_raw(f, "raw", chunk + n, sizeof(chunk) - n, &m,
						   NULL, 0),
				 0);
		n += m;
		fx->b.raw_chunks++;
	} else if (drv_proto_has(f, "data") || !drv_proto_has(f, "copy")) {
		size_t m = 0;

		assert_int_equal(drv_proto_get_b64(f, "data", chunk + n, sizeof(chunk) - n, &m,
						   NULL, 0),
				 0);
		n += m;
	}
	assert_true(off + n <= size);
	if (off == fx->b.file[i].have) {
		memcpy(fx->b.file[i].data + off, chunk, n);
		fx->b.file[i].have += n;
	}
	drv_proto_add_text(b, "path", path);
	drv_proto_add_uint(b, "have", fx->b.file[i].have);
	drv_proto_add_uint(b, "done", fx->b.file[i].have == fx->b.file[i].size);
	return (int)i;
}

static void answer_write(struct fx *fx, const struct got *g)
{
	struct drv_proto_builder b;
	struct drv_proto_frame part;
	char buf[DRV_PROTO_MAX_LINE];
	unsigned k, parts = drv_proto_part(&g->f, "path", 0, &part);
	int i = -1;

	if (parts > 1) {
		assert_true(fx->b.version >= 6);
		fx->b.multi_writes++;
		fx->b.multi_files += parts;
		if (fx->b.fail_multi) {
			fx->b.fail_multi = 0;
			answer_have(fx, g, "HASH", 0);
			return;
		}
		if (fx->b.bad_multi) {
			drv_proto_begin(&b, buf, sizeof(buf), DRV_PROTO_ANSWER, g->f.seq, DRV_PROTO_WRITE);
			/* The first part as if written, the second another file's or none. */
			for (k = 0; k < (fx->b.bad_multi == 2 ? 1u : parts); k++) {
				char p0[256];
				uint64_t size = 0;

				drv_proto_part(&g->f, "path", k, &part);
				assert_int_equal(drv_proto_get_text(&part, "path", p0, sizeof(p0), NULL, 0), 0);
				assert_int_equal(drv_proto_get_uint(&part, "size", 0, 65536, &size, NULL, 0), 0);
				drv_proto_add_text(&b, "path", k == 1 ? "etc/elsewhere" : p0);
				drv_proto_add_uint(&b, "have", k == 1 ? 0 : size);
				drv_proto_add_uint(&b, "done", k != 1);
			}
			fx->b.bad_multi = 0;
			frame_end(fx, &b);
			return;
		}
	} else {
		fx->b.single_writes++;
	}
	if (fx->qn > 0) {
		/* The station's next request came before this answer. */
		assert_true(fx->b.version >= 7 && fx->b.win >= 2);
		if (fx->b.piped++ == 0 && fx->b.offset_piped) {
			answer_have(fx, g, "OFFSET", 0);
			return;
		}
		if (fx->b.piped == 1 && fx->b.short_piped) {
			char p0[256];

			assert_int_equal(drv_proto_get_text(&g->f, "path", p0, sizeof(p0), NULL, 0), 0);
			drv_proto_begin(&b, buf, sizeof(buf), DRV_PROTO_ANSWER, g->f.seq,
					DRV_PROTO_WRITE);
			drv_proto_add_text(&b, "path", p0);
			drv_proto_add_uint(&b, "have", 0);
			drv_proto_add_uint(&b, "done", 0);
			frame_end(fx, &b);
			return;
		}
	}
	drv_proto_begin(&b, buf, sizeof(buf), DRV_PROTO_ANSWER, g->f.seq, DRV_PROTO_WRITE);
	for (k = 0; k < parts; k++) {
		drv_proto_part(&g->f, "path", k, &part);
		i = write_part(fx, g, parts > 1 ? &part : &g->f, &b);
		if (i < 0)
			return;
	}
	fx->b.asked_commit += drv_proto_has(&g->f, "commit");
	fx->b.asked_verify += drv_proto_has(&g->f, "nonce");
	if (drv_proto_has(&g->f, "commit"))
		fx->b.folded_wait_ms = fx->slot->req_timeout;
	if (fx->b.version >= 3 && drv_proto_has(&g->f, "commit") &&
	    fx->b.file[i].have == fx->b.file[i].size && !fx->b.no_fold_commit) {
		fx->b.folded_commits++;
		commit_fields(fx, &b);
		if (drv_proto_has(&g->f, "nonce") && !fx->b.no_fold_verify) {
			fx->b.folded_verifies++;
			verify_fields(fx, g, &b);
		}
	}
	frame_end(fx, &b);
}

static void commit_fields(struct fx *fx, struct drv_proto_builder *b)
{
	fx->b.gen++;
	if (fx->b.flip_byte && fx->b.nfiles)
		fx->b.file[fx->b.nfiles - 1].data[0] ^= 1;
	drv_proto_add_uint(b, "gen", fx->b.gen);
	drv_proto_add_uint(b, "files", fx->b.nfiles);
}

static void answer_commit(struct fx *fx, const struct got *g)
{
	struct drv_proto_builder b;
	char buf[DRV_PROTO_MAX_LINE];

	fx->b.commits++;
	fx->b.asked_verify += drv_proto_has(&g->f, "nonce");
	if (drv_proto_has(&g->f, "nonce"))
		fx->b.folded_wait_ms = fx->slot->req_timeout;
	drv_proto_begin(&b, buf, sizeof(buf), DRV_PROTO_ANSWER, g->f.seq, DRV_PROTO_COMMIT);
	commit_fields(fx, &b);
	if (fx->b.version >= 3 && drv_proto_has(&g->f, "nonce") && !fx->b.no_fold_verify) {
		fx->b.folded_verifies++;
		verify_fields(fx, g, &b);
	}
	frame_end(fx, &b);
}

static void answer_verify(struct fx *fx, const struct got *g)
{
	struct drv_proto_builder b;
	char buf[DRV_PROTO_MAX_LINE];

	fx->b.verifies++;
	drv_proto_begin(&b, buf, sizeof(buf), DRV_PROTO_ANSWER, g->f.seq, DRV_PROTO_VERIFY);
	drv_proto_add_uint(&b, "gen", fx->b.gen);
	drv_proto_add_uint(&b, "files", fx->b.nfiles);
	verify_fields(fx, g, &b);
	frame_end(fx, &b);
}

/* VERIFY's answer fields after gen and files: the nonce signed, the sum or the list. */
static void verify_fields(struct fx *fx, const struct got *g, struct drv_proto_builder *b)
{
	uint8_t nonce[64], msg[128], sig[256];
	size_t nlen, ctx = sizeof(DRV_PROTO_POP_CONTEXT) - 1, slen = sizeof(sig);
	EVP_MD_CTX *md = EVP_MD_CTX_new();

	assert_int_equal(drv_proto_get_b64(&g->f, "nonce", nonce, sizeof(nonce), &nlen, NULL, 0),
			 0);
	memcpy(msg, DRV_PROTO_POP_CONTEXT, ctx);
	memcpy(msg + ctx, nonce, nlen);
	assert_non_null(md);
	assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, fx->b.key), 1);
	assert_int_equal(EVP_DigestSign(md, sig, &slen, msg, ctx + nlen), 1);
	EVP_MD_CTX_free(md);
	drv_proto_add_text(b, "alg", "ecdsa-p256-sha256");
	drv_proto_add_b64(b, "sig", sig, slen);
	if (fx->b.version >= 2 && drv_proto_has(&g->f, "want")) {
		/* The sum over the wanted files, as they are (PROTOCOL.md 6.4). */
		const struct drv_proto_field *want = drv_proto_find(&g->f, "want");
		uint8_t items[8 * DRV_PROTO_SUM_ITEM_MAX], sum[32];
		char path[256];
		size_t n = 0;

		for (unsigned k = 0; drv_proto_field_item(&g->f, want, k, path, sizeof(path), NULL, 0) == 0; k++) {
			unsigned i;

			for (i = 0; i < fx->b.nfiles && strcmp(fx->b.file[i].path, path) != 0; i++)
				;
			if (i < fx->b.nfiles)
				SHA256(fx->b.file[i].data, fx->b.file[i].have, sum);
			n += drv_proto_sum_item(items + n, path, i < fx->b.nfiles ? fx->b.file[i].have : 0,
						i < fx->b.nfiles ? sum : NULL);
		}
		SHA256(items, n, sum);
		drv_proto_add_hex(b, "sum", sum, 32);
		fx->b.sums++;
		return;
	}
	fx->b.lists++;
	drv_proto_add_uint(b, "from", 0);
	for (unsigned i = 0; i < fx->b.nfiles; i++) {
		char size[24], hex[65];
		uint8_t sha[32];
		const char *items[3] = { fx->b.file[i].path, size, hex };

		snprintf(size, sizeof(size), "%zu", fx->b.file[i].have);
		SHA256(fx->b.file[i].data, fx->b.file[i].have, sha);
		for (int j = 0; j < 32; j++)
			snprintf(hex + 2 * j, 3, "%02x", sha[j]);
		drv_proto_add_list(b, "file", items, 3);
	}
}

static void answer_plain(struct fx *fx, const struct got *g)
{
	struct drv_proto_builder b;
	char buf[DRV_PROTO_MAX_LINE];

	drv_proto_begin(&b, buf, sizeof(buf), DRV_PROTO_ANSWER, g->f.seq, g->f.type);
	frame_end(fx, &b);
}

static void answer_baud(struct fx *fx, const struct got *g)
{
	struct drv_proto_builder b;
	char buf[DRV_PROTO_MAX_LINE];
	uint64_t rate;

	assert_int_equal(drv_proto_get_uint(&g->f, "rate", 1, 4000000, &rate, NULL, 0), 0);
	drv_proto_begin(&b, buf, sizeof(buf), DRV_PROTO_ANSWER, g->f.seq, DRV_PROTO_BAUD);
	drv_proto_add_uint(&b, "rate", rate);
	frame_end(fx, &b);
}

/* Answers g as a good board does. */
static void answer(struct fx *fx, const struct got *g)
{
	const char *t = g->f.type;

	if (strcmp(t, DRV_PROTO_HELLO) == 0)
		answer_hello(fx, g);
	else if (strcmp(t, DRV_PROTO_CSR) == 0)
		answer_csr(fx, g);
	else if (strcmp(t, DRV_PROTO_WRITE) == 0)
		answer_write(fx, g);
	else if (strcmp(t, DRV_PROTO_COMMIT) == 0)
		answer_commit(fx, g);
	else if (strcmp(t, DRV_PROTO_VERIFY) == 0)
		answer_verify(fx, g);
	else if (strcmp(t, DRV_PROTO_BAUD) == 0)
		answer_baud(fx, g);
	else
		answer_plain(fx, g);
}

/* Plays a good board until the station sends a request of type stop (returned in g, not
 * answered) or, with stop NULL, until DONE is answered. */
static void play_until(struct fx *fx, struct got *g, const char *stop)
{
	for (;;) {
		next_frame(fx, g);
		if (stop && strcmp(g->f.type, stop) == 0)
			return;
		answer(fx, g);
		if (!stop && strcmp(g->f.type, DRV_PROTO_DONE) == 0)
			return;
	}
}

static int outcome_seen(struct fx *fx)
{
	return fx->outcomes > 0;
}

static int is_leaving(struct fx *fx)
{
	return fx->slot->state == ST_SLOT_LEAVING;
}

/* The events file holds text. */
static int events_has(struct fx *fx, const char *text)
{
	size_t len;
	char *all;
	int found;

	/* The loop turn that made them may not have ended. */
	st_events_flush(fx->events);
	all = (char *)tu_read_file(fx->events_path, &len);
	assert_non_null(all);
	found = strstr(all, text) != NULL;
	free(all);
	return found;
}

/* ---- Fixture ------------------------------------------------------------------------- */

static struct st_profiles *current_profiles(void *arg)
{
	struct fx *fx = arg;

	return st_profiles_ref(fx->pset);
}

static void on_outcome(void *arg, struct st_slot *s, int pass)
{
	struct fx *fx = arg;

	fx->outcomes++;
	fx->passes += pass != 0;
	snprintf(fx->last_error, sizeof(fx->last_error), "%s", s->last_error);
}

static void board_init(struct board *b, const char *hw, const char *sn, const char *dev)
{
	free(b->csr);
	EVP_PKEY_free(b->key);
	memset(b, 0, sizeof(*b));
	snprintf(b->hw, sizeof(b->hw), "%s", hw);
	snprintf(b->sn, sizeof(b->sn), "%s", sn);
	snprintf(b->dev, sizeof(b->dev), "%s", dev);
	snprintf(b->boot, sizeof(b->boot), "boot-1");
	b->key = EVP_EC_gen("prime256v1");
	assert_non_null(b->key);
}

/* One slot on a fresh pair, limits all LONG_MS, max_baud as given. */
static void start(struct fx *fx, int max_baud)
{
	struct st_slot_def def;
	struct st_pool_config pc;
	const struct st_profile *p = NULL;
	char err[512] = "";

	st_pool_config_default(&pc);
	pc.workers = 1;
	pc.batch_linger_ms = 0;
	pc.station = "test-station";
	{
		static char ledger[4200];

		snprintf(ledger, sizeof(ledger), "%s/ledger.db", fx->dir);
		pc.ledger_path = ledger;
	}
	if (st_pool_new(&fx->loop, &pc, fx->ca, fx->signer, &fx->pool, err, sizeof(err)) != 0)
		fail_msg("pool: %s", err);
	snprintf(fx->events_path, sizeof(fx->events_path), "%s/events.jsonl", fx->dir);
	if (st_events_open(fx->events_path, 0, &fx->loop, 0, &fx->events, err, sizeof(err)) != 0)
		fail_msg("events: %s", err);
	if (st_profile_load_buffer("/nonexistent/t.yaml", fx->profile ? fx->profile : profile_yaml,
				   strlen(fx->profile ? fx->profile : profile_yaml), stderr, &p, err,
				   sizeof(err)) != 0)
		fail_msg("profile: %s", err);
	fx->pset = st_profiles_new();
	assert_non_null(fx->pset);
	fx->pset->list = calloc(1, sizeof(*fx->pset->list));
	assert_non_null(fx->pset->list);
	fx->pset->list[0] = p;
	fx->pset->n = 1;

	fx->env.loop = &fx->loop;
	fx->env.pool = fx->pool;
	fx->env.ledger = st_pool_ledger(fx->pool);
	fx->env.ca = fx->ca;
	fx->env.chain_pem = fx->chain_pem ? fx->chain_pem : "";
	fx->env.root_pem = "";
	fx->env.events = fx->events;
	st_slot_limits_default(&fx->env.lim);
	fx->env.lim.hello_ms = fx->env.lim.csr_ms = fx->env.lim.write_ms = LONG_MS;
	fx->env.lim.commit_ms = fx->env.lim.verify_ms = fx->env.lim.done_ms = LONG_MS;
	fx->env.lim.probe_ms = fx->env.lim.presence_ms = fx->env.lim.reconnect_ms = LONG_MS;
	fx->env.lim.reopen_ms = fx->env.lim.queued_ms = fx->env.lim.noframe_ms = LONG_MS;
	if (fx->write_ms)
		fx->env.lim.write_ms = fx->write_ms;
	if (fx->commit_ms)
		fx->env.lim.commit_ms = fx->commit_ms;
	if (fx->verify_ms)
		fx->env.lim.verify_ms = fx->verify_ms;
	fx->env.lim.tries = TRIES;
	fx->env.lim.resyncs = 3;
	fx->env.arg = fx;
	fx->env.profiles = current_profiles;
	fx->env.outcome = on_outcome;

	if (drv_port_pair_new(fx->fds, fx->port, sizeof(fx->port), err, sizeof(err)) != 0)
		fail_msg("pair: %s", err);
	drv_proto_decoder_init(&fx->bdec, DRV_PROTO_MAX_LINE,
			       &(struct drv_proto_callbacks){ .frame = on_board_frame }, fx);
	assert_int_equal(uv_poll_init(&fx->loop, &fx->bpoll, fx->fds[1]), 0);
	fx->bpoll.data = fx;
	assert_int_equal(uv_poll_start(&fx->bpoll, UV_READABLE, on_board_readable), 0);
	assert_int_equal(uv_timer_init(&fx->loop, &fx->watchdog), 0);
	fx->watchdog.data = fx;

	memset(&def, 0, sizeof(def));
	def.name = "A1";
	def.path = fx->port;
	def.backend = "pair";
	def.baud = 115200;
	def.max_baud = max_baud;
	if (st_slot_new(&fx->env, 0, &def, &fx->slot, err, sizeof(err)) != 0)
		fail_msg("slot: %s", err);
	st_slot_start(fx->slot);
}

/* Signing waits while the gate is shut: the certificate comes when the test opens it. Open
 * in every other test. */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static int gate_shut;
static const struct drv_signer_ops *real_ops;
static struct drv_signer_ops gated_ops;

static int gated_sign(void *sess, const uint8_t *digest, size_t dlen, uint8_t *sig,
		      size_t *siglen, char *err, size_t errlen)
{
	pthread_mutex_lock(&gate_mu);
	while (gate_shut)
		pthread_cond_wait(&gate_cv, &gate_mu);
	pthread_mutex_unlock(&gate_mu);
	return real_ops->sign(sess, digest, dlen, sig, siglen, err, errlen);
}

static void gate(int shut)
{
	pthread_mutex_lock(&gate_mu);
	gate_shut = shut;
	pthread_cond_broadcast(&gate_cv);
	pthread_mutex_unlock(&gate_mu);
}

static int setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	const char *d = tu_tmpdir("slot");
	char key_path[4200], err[512] = "";

	if (!fx || !d)
		return -1;
	signal(SIGPIPE, SIG_IGN);
	st_log_set_level(getenv("TEST_SLOT_DEBUG") ? ST_LOG_DEBUG : ST_LOG_WARN);
	snprintf(fx->dir, sizeof(fx->dir), "%s", d);
	snprintf(key_path, sizeof(key_path), "%s/ca.key", fx->dir);
	if (uv_loop_init(&fx->loop) != 0)
		return -1;
	fx->ca_key = EVP_EC_gen("prime256v1");
	fx->ca_cert = tu_ca_template(fx->ca_key, "Local-CA", FACTORY, 3650);
	if (!fx->ca_cert || X509_sign(fx->ca_cert, fx->ca_key, EVP_sha256()) <= 0)
		return -1;
	if (st_ca_from_x509(fx->ca_cert, NULL, NULL, "test CA", &fx->ca, err, sizeof(err)) != 0 ||
	    tu_file_signer(key_path, fx->ca_key, &fx->signer, err, sizeof(err)) != 0) {
		fprintf(stderr, "CA: %s\n", err);
		return -1;
	}
	real_ops = fx->signer->ops;
	gated_ops = *real_ops;
	gated_ops.sign = gated_sign;
	fx->signer->ops = &gated_ops;
	gate(0);
	fx->fds[0] = fx->fds[1] = -1;
	board_init(&fx->b, "hw-1", "SN-0001", "DEV-0001");
	*state = fx;
	return 0;
}

static void on_slot_closed(struct st_slot *s)
{
	struct fx *fx = s->env->arg;

	fx->slot_closed = 1;
}

static void on_pool_closed(void *arg)
{
	struct fx *fx = arg;

	fx->pool_closed = 1;
}

static int slot_closed(struct fx *fx)
{
	return fx->slot_closed && fx->pool_closed;
}

static int teardown(void **state)
{
	struct fx *fx = *state;
	int rc;

	gate(0); /* a worker waiting at the gate ends */
	if (fx->slot) {
		fx->env.stopping = 1; /* as the engine does */
		st_slot_stop(fx->slot);
		st_slot_close(fx->slot, on_slot_closed);
		st_pool_close(fx->pool, on_pool_closed, fx);
		uv_close((uv_handle_t *)&fx->bpoll, NULL);
		if (fx->bpoll2_on)
			uv_close((uv_handle_t *)&fx->bpoll2, NULL);
		uv_close((uv_handle_t *)&fx->watchdog, NULL);
		while (!slot_closed(fx))
			uv_run(&fx->loop, UV_RUN_ONCE);
		st_slot_free(fx->slot);
		st_events_detach(fx->events);
		uv_run(&fx->loop, UV_RUN_DEFAULT);
		st_events_close(fx->events);
		st_profiles_unref(fx->pset);
	}
	if (fx->fds[0] >= 0)
		close(fx->fds[0]);
	if (fx->fds[1] >= 0)
		close(fx->fds[1]);
	free(fx->b.csr);
	EVP_PKEY_free(fx->b.key);
	drv_signer_close(fx->signer);
	st_ca_free(fx->ca);
	X509_free(fx->ca_cert);
	EVP_PKEY_free(fx->ca_key);
	rc = uv_loop_close(&fx->loop);
	if (rc != 0)
		fprintf(stderr, "loop not closed cleanly: %s\n", uv_strerror(rc));
	if (tu_rmtree(fx->dir) != 0)
		rc = -1;
	free(fx);
	return rc == 0 ? 0 : -1;
}

/* Answers g, plays a good board to the end and checks that it passed. */
static void pass_from(struct fx *fx, struct got *g)
{
	answer(fx, g);
	play_until(fx, g, NULL);
	run_until(fx, outcome_seen);
	assert_int_equal(fx->passes, 1);
}

/* ---- Tests --------------------------------------------------------------------------- */

/* A good board passes: every state on the way, the certificate recorded, DONE pass, then the
 * slot asks whether the finished board is still there. */
static void test_pass(void **state)
{
	struct fx *fx = *state;
	struct got g;
	char result[16];

	start(fx, 0);
	play_until(fx, &g, DRV_PROTO_DONE);
	assert_int_equal(drv_proto_get_text(&g.f, "result", result, sizeof(result), NULL, 0), 0);
	assert_string_equal(result, "pass");
	assert_int_equal(fx->slot->state, ST_SLOT_VERIFIED);
	answer(fx, &g);
	run_until(fx, outcome_seen);
	assert_int_equal(fx->passes, 1);
	assert_int_equal(fx->slot->passed, 1);
	assert_int_equal(fx->slot->state, ST_SLOT_LEAVING);
	assert_int_equal(fx->b.nfiles, 4);
	/* A board that answers v=1 gets version 1's requests only. */
	assert_int_equal(fx->b.raw_chunks + fx->b.copies + fx->b.bare_chunks + fx->b.sums, 0);
	assert_int_equal(fx->b.lists, 1);
	assert_true(events_has(fx, "\"from\":\"verified\",\"to\":\"pass\""));
	assert_true(events_has(fx, "\"from\":\"pass\",\"to\":\"leaving\""));
	/* Still there: asked again, stays finished. */
	expire(fx);
	expect(fx, &g, DRV_PROTO_HELLO);
	answer(fx, &g);
	expire(fx);
	expect(fx, &g, DRV_PROTO_HELLO);
	assert_int_equal(fx->slot->state, ST_SLOT_LEAVING);
	/* Silence: it is gone, and the slot waits for the next one. */
	for (int i = 0; i < TRIES; i++) {
		expire(fx);
		next_frame(fx, &g);
	}
	assert_int_equal(fx->slot->state, ST_SLOT_WAITING);
	assert_string_equal(g.f.type, DRV_PROTO_HELLO);
}

/* Garbage, console text and a damaged frame before an answer: the same request again, byte
 * for byte, and the run goes on. */
static void test_resync_after_garbage(void **state)
{
	struct fx *fx = *state;
	struct got g, again;
	static const char junk[] = "\xff\xfe boot log line\r\n\x01\x02~@P1 A 1 HELLO crc=00000000\n";

	start(fx, 0);
	expect(fx, &g, DRV_PROTO_HELLO);
	board_send(fx, junk, sizeof(junk) - 1);
	expect(fx, &again, DRV_PROTO_HELLO);
	assert_int_equal(again.f.seq, g.f.seq);
	assert_memory_equal(again.f.line, g.f.line, g.f.len);
	answer(fx, &again);
	play_until(fx, &g, DRV_PROTO_CSR);
	board_send(fx, junk, sizeof(junk) - 1);
	expect(fx, &again, DRV_PROTO_CSR);
	assert_int_equal(again.f.seq, g.f.seq);
	pass_from(fx, &again);
	assert_true(fx->slot->frames_bad >= 2);
	assert_true(fx->slot->retransmits >= 2);
}

/* No answer, a damaged answer, an answer the board could not read (seq 0), an answer of the
 * wrong type, one to another seq: the same seq again each time, and the run goes on. */
static void test_retransmission(void **state)
{
	struct fx *fx = *state;
	struct got g, again;
	struct drv_proto_builder b;
	char buf[DRV_PROTO_MAX_LINE];

	start(fx, 0);
	play_until(fx, &g, DRV_PROTO_WRITE);
	/* A stray answer to another seq changes nothing; one of the wrong type is asked again. */
	drv_proto_begin(&b, buf, sizeof(buf), DRV_PROTO_ANSWER, g.f.seq + 100, DRV_PROTO_WRITE);
	frame_end(fx, &b);
	drv_proto_begin(&b, buf, sizeof(buf), DRV_PROTO_ANSWER, g.f.seq, DRV_PROTO_COMMIT);
	frame_end(fx, &b);
	expect(fx, &again, DRV_PROTO_WRITE);
	assert_int_equal(again.f.seq, g.f.seq);
	assert_memory_equal(again.f.line, g.f.line, g.f.len);
	/* No answer. */
	expire(fx);
	expect(fx, &again, DRV_PROTO_WRITE);
	assert_int_equal(again.f.seq, g.f.seq);
	/* The board could not read it. */
	answer_error(fx, &(struct got){ .f = { .seq = 0 } }, "FRAME");
	expect(fx, &again, DRV_PROTO_WRITE);
	assert_int_equal(again.f.seq, g.f.seq);
	assert_int_equal(fx->slot->retransmits, TRIES - 1);
	pass_from(fx, &again);
}

/* Every request the board leaves unanswered TRIES times fails the board: for each of them,
 * the failure names it, DONE fail is sent once more at most, and the slot waits for the board
 * to leave. */
static void check_timeout(struct fx *fx, const char *type)
{
	struct got g;
	char result[16], text[64];

	start(fx, 0);
	play_until(fx, &g, type);
	for (int i = 1; i < TRIES; i++) {
		expire(fx);
		expect(fx, &g, type);
	}
	expire(fx);
	run_until(fx, outcome_seen);
	assert_int_equal(fx->passes, 0);
	assert_non_null(strstr(fx->last_error, "PROTO_TIMEOUT"));
	snprintf(text, sizeof(text), "did not answer %s after %d tries", type, TRIES);
	assert_non_null(strstr(fx->last_error, text));
	expect(fx, &g, DRV_PROTO_DONE);
	assert_int_equal(drv_proto_get_text(&g.f, "result", result, sizeof(result), NULL, 0), 0);
	assert_string_equal(result, "fail");
	expire(fx);
	expect(fx, &g, DRV_PROTO_DONE);
	expire(fx);
	run_until(fx, is_leaving);
}

static void test_timeout_csr(void **state)
{
	check_timeout(*state, DRV_PROTO_CSR);
}

static void test_timeout_write(void **state)
{
	check_timeout(*state, DRV_PROTO_WRITE);
}

static void test_timeout_commit(void **state)
{
	check_timeout(*state, DRV_PROTO_COMMIT);
}

static void test_timeout_verify(void **state)
{
	check_timeout(*state, DRV_PROTO_VERIFY);
}

/* An empty slot's probe goes unanswered: another probe (a new seq), forever. A verified board
 * that never answers DONE passes all the same. */
static void test_timeout_probe_and_done(void **state)
{
	struct fx *fx = *state;
	struct got g, again;

	start(fx, 0);
	expect(fx, &g, DRV_PROTO_HELLO);
	for (int i = 0; i < TRIES + 1; i++) {
		expire(fx);
		expect(fx, &again, DRV_PROTO_HELLO);
		assert_int_not_equal(again.f.seq, g.f.seq);
		g = again;
		assert_int_equal(fx->slot->state, ST_SLOT_WAITING);
	}
	answer(fx, &g);
	play_until(fx, &g, DRV_PROTO_DONE);
	for (int i = 1; i < TRIES; i++) {
		expire(fx);
		expect(fx, &g, DRV_PROTO_DONE);
	}
	expire(fx);
	run_until(fx, outcome_seen);
	assert_int_equal(fx->passes, 1);
	assert_int_equal(fx->slot->state, ST_SLOT_LEAVING);
}

/* The board reboots while files are written (BOOT), and loses its session before COMMIT
 * (ERROR HELLO): greeted again each time, the same board resumes, and passes. */
static void test_reboot(void **state)
{
	struct fx *fx = *state;
	struct got g;

	start(fx, 0);
	play_until(fx, &g, DRV_PROTO_WRITE);
	answer(fx, &g);
	expect(fx, &g, DRV_PROTO_WRITE);
	/* BOOT: the staged files are gone. */
	snprintf(fx->b.boot, sizeof(fx->b.boot), "boot-2");
	fx->b.nfiles = 0;
	send_boot(fx);
	expect(fx, &g, DRV_PROTO_HELLO);
	/* Still queued when the certificate is not signed yet: the files that do not hold it
	 * go meanwhile (test_early_writes). */
	assert_true(fx->slot->state == ST_SLOT_SIGNED || fx->slot->state == ST_SLOT_QUEUED);
	answer(fx, &g);
	play_until(fx, &g, DRV_PROTO_COMMIT);
	answer_error(fx, &g, "HELLO");
	expect(fx, &g, DRV_PROTO_HELLO);
	answer(fx, &g);
	expect(fx, &g, DRV_PROTO_COMMIT);
	pass_from(fx, &g);
	assert_true(events_has(fx, "\"resyncs\":2"));
}

static const uint8_t *board_file(struct fx *fx, const char *path, size_t *len);

static int queued_idle(struct fx *fx)
{
	return fx->slot->state == ST_SLOT_QUEUED && fx->slot->req_kind == RQ_NONE &&
	       fx->slot->timer_what == TW_QUEUED;
}

static int is_signed(struct fx *fx)
{
	return fx->slot->state != ST_SLOT_QUEUED;
}

/* The WRITE in g names path (first). */
static void expect_path(const struct got *g, const char *path)
{
	char got[256];

	assert_int_equal(drv_proto_get_text(&g->f, "path", got, sizeof(got), NULL, 0), 0);
	assert_string_equal(got, path);
}

/* The next request is a WRITE that names path (first). */
static void expect_write(struct fx *fx, struct got *g, const char *path)
{
	expect(fx, g, DRV_PROTO_WRITE);
	expect_path(g, path);
}

/* Whether the pool recorded the intent of the board's CSR, as the slot heard. */
static int accepted(struct fx *fx)
{
	return fx->slot->run && fx->slot->run->accepted;
}

static int accepted_idle(struct fx *fx)
{
	return queued_idle(fx) && accepted(fx);
}

static int (*until)(struct fx *fx);

static int frame_or_until(struct fx *fx)
{
	return has_frame(fx) || until(fx);
}

/* Answers what the station sends until cond holds with nothing left to answer. */
static void answer_until(struct fx *fx, int (*cond)(struct fx *fx))
{
	struct got g;

	until = cond;
	for (;;) {
		run_until(fx, frame_or_until);
		if (!has_frame(fx))
			return;
		next_frame(fx, &g);
		answer(fx, &g);
	}
}

/* The early files written, signing held: signing goes on, the files that hold the
 * certificate follow, and the board passes with all four. */
static void signed_to_pass(struct fx *fx)
{
	struct got g;
	size_t len;

	gate(0);
	run_until(fx, is_signed);
	expect_write(fx, &g, "etc/dev/device.crt");
	pass_from(fx, &g);
	assert_int_equal(fx->b.nfiles, 4);
	assert_memory_equal(board_file(fx, "etc/dev/id", &len), "DEV-0001", 8);
}

/* While the certificate is signed, the files that do not hold it (the chain, public, first;
 * then the id) are written; then the slot waits, with its note timer; once signed, the files
 * that hold it follow, and the board passes with all four. */
static void test_early_writes(void **state)
{
	struct fx *fx = *state;
	struct st_slot_info info;
	struct got g;

	gate(1);
	start(fx, 0);
	play_until(fx, &g, DRV_PROTO_WRITE);
	assert_int_equal(fx->slot->state, ST_SLOT_QUEUED);
	assert_string_equal(fx->slot->run->wf[0].path, "etc/dev/chain.crt");
	assert_string_equal(fx->slot->run->wf[1].path, "etc/dev/id");
	assert_int_equal(fx->slot->run->npublic, 1);
	assert_int_equal(fx->slot->run->nearly, 2);
	/* The view says what the slot does: it writes, while it waits. */
	st_slot_info(fx->slot, &info);
	assert_string_equal(st_slot_word(&info, 0), "write");
	answer(fx, &g);
	expect_write(fx, &g, "etc/dev/id");
	assert_true(accepted(fx));
	answer(fx, &g);
	run_until(fx, queued_idle);
	assert_int_equal(fx->b.nfiles, 2);
	st_slot_info(fx->slot, &info);
	assert_string_equal(st_slot_word(&info, 0), "queued");
	signed_to_pass(fx);
	assert_true(events_has(fx, "\"from\":\"queued\",\"to\":\"signed\""));
}

/* The ledger held by another writer: the test's own connection in a write transaction,
 * which the pool's intent waits for (its busy timeout is seconds). */
static sqlite3 *hold_ledger(struct fx *fx)
{
	sqlite3 *db = NULL;
	char path[4200];

	snprintf(path, sizeof(path), "%s/ledger.db", fx->dir);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	/* Behind any commit of the pool's under way. */
	assert_int_equal(sqlite3_busy_timeout(db, 5000), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	return db;
}

/* Runs the loop for about ms milliseconds, whatever comes. */
static void idle(struct fx *fx, int ms)
{
	for (int i = 0; i < ms / 5; i++) {
		uv_run(&fx->loop, UV_RUN_NOWAIT);
		usleep(5000);
	}
}

static void release_ledger(sqlite3 *db)
{
	assert_int_equal(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* Signing held, the board's run started with the ledger held: the public chain's WRITE,
 * in g, goes all the same, the request not accepted yet. Returns the ledger's holder. */
static sqlite3 *public_held(struct fx *fx, struct got *g)
{
	sqlite3 *db;

	gate(1);
	start(fx, 0);
	db = hold_ledger(fx);
	play_until(fx, g, DRV_PROTO_WRITE);
	expect_path(g, "etc/dev/chain.crt");
	assert_false(accepted(fx));
	return db;
}

/* Until the intent is recorded only the public file goes (the chain: the CA's certificates
 * alone); the id, the profile's own, waits for the intent, however long the ledger takes,
 * then goes before the certificate is signed. */
static void test_public_first(void **state)
{
	struct fx *fx = *state;
	struct got g;
	sqlite3 *db;

	db = public_held(fx, &g);
	answer(fx, &g);
	run_until(fx, queued_idle);
	idle(fx, 200); /* with the ledger held: nothing more goes */
	assert_int_equal(fx->qn, 0);
	assert_false(accepted(fx));
	assert_true(queued_idle(fx));
	assert_int_equal(fx->b.nfiles, 1);
	release_ledger(db);
	expect_write(fx, &g, "etc/dev/id");
	assert_true(accepted(fx));
	answer(fx, &g);
	run_until(fx, queued_idle);
	signed_to_pass(fx);
}

/* A reboot while those files go (they are lost with it): greeted again, still queued, the
 * board gets them again from the first; then the rest, and it passes. */
static void test_early_writes_reboot(void **state)
{
	struct fx *fx = *state;
	struct got g;

	gate(1);
	start(fx, 0);
	play_until(fx, &g, DRV_PROTO_WRITE);
	expect_path(&g, "etc/dev/chain.crt");
	answer(fx, &g);
	expect_write(fx, &g, "etc/dev/id");
	snprintf(fx->b.boot, sizeof(fx->b.boot), "boot-2");
	fx->b.nfiles = 0;
	send_boot(fx);
	expect(fx, &g, DRV_PROTO_HELLO);
	assert_int_equal(fx->slot->state, ST_SLOT_QUEUED);
	answer(fx, &g);
	expect_write(fx, &g, "etc/dev/chain.crt");
	answer(fx, &g);
	expect_write(fx, &g, "etc/dev/id");
	answer(fx, &g);
	run_until(fx, queued_idle);
	gate(0);
	run_until(fx, is_signed);
	next_frame(fx, &g);
	pass_from(fx, &g);
	assert_int_equal(fx->b.nfiles, 4);
}

/* The one ledger row: its state and reason ("" when none). */
struct row_seen {
	unsigned n;
	int state;
	char reason[256];
};

static int see_row(const struct st_ledger_row *row, void *arg)
{
	struct row_seen *seen = arg;

	seen->n++;
	seen->state = row->state;
	snprintf(seen->reason, sizeof(seen->reason), "%s", row->reason ? row->reason : "");
	return 0;
}

static void ledger_row(struct fx *fx, struct row_seen *seen)
{
	struct st_ledger *l = NULL;
	char path[4200], err[512];

	memset(seen, 0, sizeof(*seen));
	snprintf(path, sizeof(path), "%s/ledger.db", fx->dir);
	assert_int_equal(st_ledger_open(path, "reader", &l, err, sizeof(err)), 0);
	assert_int_equal(st_ledger_foreach(l, see_row, seen, err, sizeof(err)), 0);
	st_ledger_close(l);
}

static int row_failed(struct fx *fx)
{
	struct row_seen seen;

	ledger_row(fx, &seen);
	if (seen.state != ST_LEDGER_FAILED)
		usleep(10000); /* the ledger thread's commit */
	return seen.state == ST_LEDGER_FAILED;
}

/* The board fails at a file that goes while its certificate is signed (ERROR STORAGE): the
 * run fails at once, and the certificate, recorded once signed, is marked failed with the
 * board's reason, as when the board fails after it was signed. */
static void test_early_write_fails(void **state)
{
	struct fx *fx = *state;
	struct row_seen seen;
	struct got g;

	gate(1);
	start(fx, 0);
	play_until(fx, &g, DRV_PROTO_WRITE);
	assert_int_equal(fx->slot->state, ST_SLOT_QUEUED);
	answer_error(fx, &g, "STORAGE");
	expect(fx, &g, DRV_PROTO_DONE);
	assert_int_equal(fx->passes, 0);
	assert_non_null(strstr(fx->last_error, "ERROR STORAGE"));
	gate(0);
	run_until(fx, row_failed);
	ledger_row(fx, &seen);
	assert_int_equal(seen.n, 1);
	assert_non_null(strstr(seen.reason, "ERROR STORAGE"));
}

/* The board's console echoes what it receives: the request comes straight back. */
static void echo_back(struct fx *fx, const struct got *g)
{
	board_send(fx, g->f.line, g->f.len);
	if (g->f.len == 0 || g->f.line[g->f.len - 1] != '\n')
		board_send(fx, "\n", 1);
}

/* The board reboots during COMMIT into a console with echo on: the retransmitted requests
 * come back until the agent has the line and says BOOT; the same board then resumes and
 * passes. The echo is no fault while a board may still answer. */
static void test_echo_while_rebooting(void **state)
{
	struct fx *fx = *state;
	struct got g;

	start(fx, 0);
	play_until(fx, &g, DRV_PROTO_COMMIT);
	echo_back(fx, &g);
	expire(fx);
	expect(fx, &g, DRV_PROTO_COMMIT);
	echo_back(fx, &g);
	snprintf(fx->b.boot, sizeof(fx->b.boot), "boot-2");
	send_boot(fx);
	expect(fx, &g, DRV_PROTO_HELLO);
	answer(fx, &g);
	play_until(fx, &g, DRV_PROTO_DONE);
	answer(fx, &g);
	run_until(fx, outcome_seen);
	assert_int_equal(fx->passes, 1);
}

/* A port that echoes and where no board ever answers (a wiring loop, a console without an
 * agent): the request's tries run out and the failure says echo, not timeout. */
static void test_echo_forever(void **state)
{
	struct fx *fx = *state;
	struct got g;

	start(fx, 0);
	play_until(fx, &g, DRV_PROTO_CSR);
	for (int i = 1; i < TRIES; i++) {
		echo_back(fx, &g);
		expire(fx);
		expect(fx, &g, DRV_PROTO_CSR);
	}
	echo_back(fx, &g);
	expire(fx);
	run_until(fx, outcome_seen);
	assert_int_equal(fx->passes, 0);
	assert_non_null(strstr(fx->last_error, "SLOT_ECHO"));
	assert_non_null(strstr(fx->last_error, "echo on"));
	assert_non_null(strstr(fx->last_error, "no board answered CSR"));
}

/* The port hangs up and does not come back: the board fails when the reconnect wait ends. */
static void test_hangup(void **state)
{
	struct fx *fx = *state;
	struct got g;
	uv_timer_t *aux;

	start(fx, 0);
	play_until(fx, &g, DRV_PROTO_COMMIT);
	uv_poll_stop(&fx->bpoll);
	close(fx->fds[1]);
	fx->fds[1] = -1;
	aux = &fx->slot->aux;
	while (!uv_is_active((uv_handle_t *)aux))
		uv_run(&fx->loop, UV_RUN_ONCE);
	assert_string_equal(st_slot_note(fx->slot), "port gone");
	uv_timer_start(aux, aux->timer_cb, 0, 0);
	run_until(fx, outcome_seen);
	assert_int_equal(fx->passes, 0);
	assert_non_null(strstr(fx->last_error, "PORT_HANGUP"));
	assert_non_null(strstr(fx->last_error, "did not come back"));
}

/* The port hangs up and comes back (a new socket under the same name, as a USB adapter gets a
 * new node): the board is greeted again, resumes where it was, and passes. */
static void test_reconnect(void **state)
{
	struct fx *fx = *state;
	struct got g;
	char name[32], err[256];
	int nf[2];

	start(fx, 0);
	play_until(fx, &g, DRV_PROTO_COMMIT);
	uv_poll_stop(&fx->bpoll);
	close(fx->fds[1]);
	fx->fds[1] = -1;
	while (!uv_is_active((uv_handle_t *)&fx->slot->aux))
		uv_run(&fx->loop, UV_RUN_ONCE);
	assert_null(fx->slot->port);
	assert_int_equal(fx->slot->state, ST_SLOT_WRITTEN);
	if (drv_port_pair_new(nf, name, sizeof(name), err, sizeof(err)) != 0)
		fail_msg("pair: %s", err);
	assert_int_equal(dup2(nf[0], fx->fds[0]), fx->fds[0]);
	close(nf[0]);
	fx->fds[1] = nf[1];
	assert_int_equal(uv_poll_init(&fx->loop, &fx->bpoll2, fx->fds[1]), 0);
	fx->bpoll2.data = fx;
	fx->bpoll2_on = 1;
	assert_int_equal(uv_poll_start(&fx->bpoll2, UV_READABLE, on_board_readable), 0);
	expire(fx); /* the reopen attempt */
	expect(fx, &g, DRV_PROTO_HELLO);
	answer(fx, &g);
	expect(fx, &g, DRV_PROTO_COMMIT);
	pass_from(fx, &g);
	assert_true(events_has(fx, "\"status\":\"back\""));
	assert_true(events_has(fx, "\"resyncs\":1"));
}

/* BAUD: the board switches, answers HELLO at the new rate, and the run goes on there. */
static void test_baud_success(void **state)
{
	struct fx *fx = *state;
	struct got g;

	fx->b.bauds = "115200,921600";
	start(fx, 921600);
	play_until(fx, &g, DRV_PROTO_BAUD);
	assert_int_equal(fx->slot->state, ST_SLOT_BAUD_ASK);
	answer(fx, &g);
	expect(fx, &g, DRV_PROTO_HELLO);
	assert_int_equal(fx->slot->state, ST_SLOT_BAUD_CONFIRM);
	assert_int_equal(fx->slot->cur_baud, 921600);
	assert_string_equal(st_slot_note(fx->slot), "switching rate");
	answer(fx, &g);
	expect(fx, &g, DRV_PROTO_CSR);
	pass_from(fx, &g);
	assert_true(events_has(fx, "\"baud\":921600"));
	assert_true(events_has(fx, "\"from\":\"profile\",\"to\":\"baud-ask\""));
	assert_true(events_has(fx, "\"from\":\"baud-ask\",\"to\":\"baud-confirm\""));
	assert_true(events_has(fx, "\"from\":\"baud-confirm\",\"to\":\"csr\""));
}

/* A board that passed at the switched rate answers a presence HELLO with a damaged frame (a
 * CRC error on the line): the same board at the same rate, asked again, not a new board at
 * the starting rate. The line stays switched and the board is found again there. */
static void test_baud_damaged_after_pass(void **state)
{
	static const char damaged[] = "~@P1 A 99 HELLO v=2 00000000\n";
	struct fx *fx = *state;
	struct got g, again;

	fx->b.bauds = "115200,921600";
	start(fx, 921600);
	play_until(fx, &g, NULL);
	run_until(fx, is_leaving);
	assert_int_equal(fx->passes, 1);
	assert_int_equal(fx->slot->cur_baud, 921600);
	expire(fx);
	expect(fx, &g, DRV_PROTO_HELLO);
	board_send(fx, damaged, sizeof(damaged) - 1);
	expect(fx, &again, DRV_PROTO_HELLO);
	assert_int_equal(again.f.seq, g.f.seq);
	assert_int_equal(fx->slot->cur_baud, 921600);
	answer(fx, &again);
	drain(fx);
	assert_int_equal(fx->slot->state, ST_SLOT_LEAVING);
	assert_int_equal(fx->slot->cur_baud, 921600);
}

/* BAUD answered but no HELLO answered at the new rate within the trial: back to the old rate,
 * and the CSR is asked there. A BAUD the board refuses leaves the rate as it is. */
static void test_baud_fallback(void **state)
{
	struct fx *fx = *state;
	struct got g;

	fx->b.bauds = "921600";
	start(fx, 921600);
	play_until(fx, &g, DRV_PROTO_BAUD);
	answer(fx, &g);
	for (int i = 0; i < TRIES; i++) {
		expect(fx, &g, DRV_PROTO_HELLO);
		assert_int_equal(fx->slot->cur_baud, 921600);
		expire(fx);
	}
	expect(fx, &g, DRV_PROTO_CSR);
	assert_int_equal(fx->slot->cur_baud, 115200);
	pass_from(fx, &g);
	assert_true(events_has(fx, "\"baud\":115200"));
}

static void test_baud_refused(void **state)
{
	struct fx *fx = *state;
	struct got g;

	fx->b.bauds = "921600";
	start(fx, 921600);
	play_until(fx, &g, DRV_PROTO_BAUD);
	answer_error(fx, &g, "BAUD");
	expect(fx, &g, DRV_PROTO_CSR);
	assert_int_equal(fx->slot->cur_baud, 115200);
	pass_from(fx, &g);
}

/* Another board answers after a reboot mid-run: the first one fails (not told: it is not
 * there), and the new one starts at once. */
static void test_board_swapped(void **state)
{
	struct fx *fx = *state;
	struct got g;
	char cn[64];

	start(fx, 0);
	play_until(fx, &g, DRV_PROTO_VERIFY);
	board_init(&fx->b, "hw-2", "SN-0002", "DEV-0002");
	send_boot(fx);
	expect(fx, &g, DRV_PROTO_HELLO);
	answer(fx, &g);
	expect(fx, &g, DRV_PROTO_CSR);
	assert_int_equal(fx->outcomes, 1);
	assert_int_equal(fx->passes, 0);
	assert_non_null(strstr(fx->last_error, "SLOT_BOARD_LEFT"));
	assert_non_null(strstr(fx->last_error, "SN-0002"));
	assert_int_equal(drv_proto_get_text(&g.f, "cn", cn, sizeof(cn), NULL, 0), 0);
	assert_string_equal(cn, "DEV-0002");
	assert_string_equal(fx->slot->device_id, "DEV-0002");
	answer(fx, &g);
	play_until(fx, &g, NULL);
	run_until(fx, is_leaving);
	assert_int_equal(fx->outcomes, 2);
	assert_int_equal(fx->passes, 1);
}

/* The fields that open a session of version 8 in request g: none (0), or v=8, max=4096 and
 * the board's boot id (1). */
static int opens_session(struct fx *fx, const struct got *g)
{
	char boot[64];
	uint64_t v, max;

	if (!drv_proto_has(&g->f, "boot")) {
		assert_false(drv_proto_has(&g->f, "v"));
		return 0;
	}
	assert_int_equal(drv_proto_get_text(&g->f, "boot", boot, sizeof(boot), NULL, 0), 0);
	assert_string_equal(boot, fx->b.boot);
	assert_int_equal(drv_proto_get_uint(&g->f, "v", 1, 99, &v, NULL, 0), 0);
	assert_int_equal(v, 8);
	assert_int_equal(drv_proto_get_uint(&g->f, "max", 1, 1u << 20, &max, NULL, 0), 0);
	assert_int_equal(max, 4096);
	return 1;
}

/* Plays a good board to DONE's answer, counting the HELLOs the station sent and the requests
 * that opened a session by their fields. */
static void play_counting(struct fx *fx, struct got *g, unsigned *hellos, unsigned *opens)
{
	for (;;) {
		*hellos += strcmp(g->f.type, DRV_PROTO_HELLO) == 0;
		*opens += opens_session(fx, g);
		answer(fx, g);
		if (strcmp(g->f.type, DRV_PROTO_DONE) == 0)
			return;
		next_frame(fx, g);
	}
}

/* Version 8 (PROTOCOL.md 12): a board whose BOOT says who it is is not greeted with HELLO.
 * The slot takes the board from the BOOT, its first request (the CSR) opens the session with
 * v=8, the station's frame size and the boot id, and the board passes. So does the next
 * board after it (BOOT while the slot waits for the finished one to leave), and a third whose
 * first request is answered ERROR HELLO (it booted again meanwhile): greeted with HELLO, it
 * passes. A BOOT that does not say v=8 or later, or whose fields do not parse, is greeted
 * with HELLO. A future version's BOOT opens a session of version 8. */
static void test_v8_boot(void **state)
{
	struct fx *fx = *state;
	struct got g;
	unsigned hellos = 0, opens = 0;

	board_init(&fx->b, "hw-2", "SN-8001", "DEV-8001");
	fx->b.version = 8;
	fx->b.win = 2;
	start(fx, 0);
	expect(fx, &g, DRV_PROTO_HELLO); /* the probe of an empty slot: nobody answers */
	send_boot(fx);
	expect(fx, &g, DRV_PROTO_CSR);
	assert_int_equal(fx->slot->state, ST_SLOT_CSR);
	play_counting(fx, &g, &hellos, &opens);
	run_until(fx, outcome_seen);
	assert_int_equal(fx->passes, 1);
	assert_int_equal(hellos, 0);
	assert_int_equal(opens, 1);
	assert_int_equal(fx->b.nfiles, 4);
	/* Counted from its BOOT: no HELLO among its requests; the BOOT's bytes are its own. */
	assert_true(events_has(fx, "\"event\":\"pass\""));

	/* The next board boots while the slot checks for the finished one. */
	board_init(&fx->b, "hw-2", "SN-8002", "DEV-8002");
	fx->b.version = 9; /* a newer board: the session is of version 8 */
	fx->b.win = 2;
	send_boot(fx);
	expect(fx, &g, DRV_PROTO_CSR);
	fx->b.version = 8;
	hellos = opens = 0;
	play_counting(fx, &g, &hellos, &opens);
	run_until(fx, is_leaving);
	assert_int_equal(fx->passes, 2);
	assert_int_equal(hellos, 0);
	assert_int_equal(opens, 1);

	/* A third, which booted again before the station's first request reached it. */
	board_init(&fx->b, "hw-2", "SN-8003", "DEV-8003");
	fx->b.version = 8;
	send_boot(fx);
	expect(fx, &g, DRV_PROTO_CSR);
	assert_int_equal(opens_session(fx, &g), 1);
	answer_error(fx, &g, "HELLO");
	expect(fx, &g, DRV_PROTO_HELLO);
	answer(fx, &g);
	expect(fx, &g, DRV_PROTO_CSR);
	hellos = opens = 0;
	play_counting(fx, &g, &hellos, &opens);
	run_until(fx, is_leaving);
	assert_int_equal(fx->passes, 3);
	assert_int_equal(opens, 0);

	/* A BOOT of version 7 (no identity), and one whose v=8 comes with a field that does not
	 * parse: HELLO. */
	board_init(&fx->b, "hw-2", "SN-8004", "DEV-8004");
	fx->b.version = 7;
	send_boot(fx);
	expect(fx, &g, DRV_PROTO_HELLO);
	{
		struct drv_proto_builder b;
		char buf[DRV_PROTO_MAX_LINE];

		drv_proto_begin(&b, buf, sizeof(buf), DRV_PROTO_EVENT, 0, DRV_PROTO_BOOT);
		drv_proto_add_uint(&b, "v", 8);
		drv_proto_add_text(&b, "boot", "boot-9");
		drv_proto_add_text(&b, "max", "lots");
		frame_end(fx, &b);
	}
	expect(fx, &g, DRV_PROTO_HELLO);
	assert_int_equal(fx->slot->state, ST_SLOT_LEAVING);
}

static int count_rows(const struct st_ledger_row *row, void *arg)
{
	(void)row;
	(*(unsigned *)arg)++;
	return 0;
}

/* A CSR the profile's policy refuses (its CN is not the device id): the signing pool's check
 * (on a worker) refuses it before anything is recorded; the run fails at its CSR with the
 * check's reason, the CSR is never asked again, and the board is told. */
static void test_csr_refused(void **state)
{
	struct fx *fx = *state;
	struct got g;
	char result[16];

	snprintf(fx->b.csr_cn, sizeof(fx->b.csr_cn), "SOMEONE-ELSE");
	start(fx, 0);
	play_until(fx, &g, DRV_PROTO_DONE);
	assert_int_equal(drv_proto_get_text(&g.f, "result", result, sizeof(result), NULL, 0), 0);
	assert_string_equal(result, "fail");
	assert_int_equal(fx->outcomes, 1);
	assert_int_equal(fx->passes, 0);
	assert_non_null(strstr(fx->last_error, "CSR_CN_MISMATCH: CSR rejected: subject CN"));
	/* Refused: none of the profile's own files went to it, not even those without the
	 * certificate; only the public one (the CA's certificates alone), which went as the CSR
	 * came in, staged and never committed. */
	assert_int_equal(fx->b.nfiles, 1);
	assert_string_equal(fx->b.file[0].path, "etc/dev/chain.crt");
	assert_int_equal(fx->b.commits + fx->b.folded_commits, 0);
	/* Read, handed to the pool, refused there: the outcome names the CSR as what failed. */
	assert_true(events_has(fx, "\"from\":\"csr\",\"to\":\"checked\""));
	assert_true(events_has(fx, "\"from\":\"queued\",\"to\":\"failed\""));
	assert_true(events_has(fx, "\"reason\":\"CSR_CN_MISMATCH\""));
	assert_true(events_has(fx, "\"state\":\"csr\""));
	/* Nothing of it reached the ledger. */
	{
		struct st_ledger *l = NULL;
		unsigned rows = 0;
		char path[4200], err[512];

		snprintf(path, sizeof(path), "%s/ledger.db", fx->dir);
		assert_int_equal(st_ledger_open(path, "reader", &l, err, sizeof(err)), 0);
		assert_int_equal(st_ledger_foreach(l, count_rows, &rows, err, sizeof(err)), 0);
		assert_int_equal(rows, 0);
		st_ledger_close(l);
	}
	answer(fx, &g);
	run_until(fx, is_leaving);
	assert_true(events_has(fx, "\"from\":\"failed\",\"to\":\"leaving\""));
}

/* Plays a board of version 2 (or fx->b.version, when set) to the end; returns DONE's
 * result. */
static void play_v2(struct fx *fx, char *result, size_t cap)
{
	struct got g;
	int offered = 0;

	if (!fx->b.version)
		fx->b.version = 2;
	if (!fx->b.max)
		fx->b.max = 512; /* files of more than one chunk */
	start(fx, 0);
	for (;;) {
		next_frame(fx, &g);
		if (strcmp(g.f.type, DRV_PROTO_HELLO) == 0) {
			char v[16];

			assert_int_equal(drv_proto_get_text(&g.f, "v", v, sizeof(v), NULL, 0), 0);
			assert_string_equal(v, "1,2,3,4,5,6,7,8");
			offered = 1;
		}
		if (strcmp(g.f.type, DRV_PROTO_DONE) == 0)
			break;
		answer(fx, &g);
	}
	assert_true(offered);
	assert_int_equal(drv_proto_get_text(&g.f, "result", result, cap, NULL, 0), 0);
	answer(fx, &g);
	run_until(fx, outcome_seen);
}

/* The file the board holds under path, with its length. */
static const uint8_t *board_file(struct fx *fx, const char *path, size_t *len)
{
	for (unsigned i = 0; i < fx->b.nfiles; i++) {
		if (strcmp(fx->b.file[i].path, path) == 0) {
			*len = fx->b.file[i].have;
			return fx->b.file[i].data;
		}
	}
	fail_msg("the board holds no %s", path);
	return NULL;
}

/* A board of version 2: raw chunks, later chunks without the file's identity, the
 * certificate copied from device.crt into chained.crt, VERIFY answered by one sum. */
static void test_v2_pass(void **state)
{
	struct fx *fx = *state;
	const uint8_t *a, *c;
	size_t alen, clen;
	char result[16];

	play_v2(fx, result, sizeof(result));
	assert_string_equal(result, "pass");
	assert_int_equal(fx->passes, 1);
	assert_true(fx->b.raw_chunks > 0 && fx->b.bare_chunks > 0 && fx->b.copies > 0);
	assert_int_equal(fx->b.sums, 1);
	assert_int_equal(fx->b.lists, 0);
	/* Version 3's folds are not for it: a COMMIT and a VERIFY of their own. */
	assert_int_equal(fx->b.asked_commit + fx->b.asked_verify, 0);
	assert_int_equal(fx->b.commits + fx->b.verifies, 2);
	a = board_file(fx, "etc/dev/device.crt", &alen);
	c = board_file(fx, "etc/dev/chained.crt", &clen);
	assert_true(alen > 512);
	assert_int_equal(alen, clen);
	assert_memory_equal(a, c, alen);
}

/* A board of version 2 that lost what the station counts on: the copy's source (SOURCE: the
 * bytes are sent instead) and the file a chunk continues (OFFSET have=0: the file starts
 * over, named). It passes with the right files. */
static void test_v2_lost(void **state)
{
	struct fx *fx = *state;
	const uint8_t *a, *c;
	size_t alen, clen;
	char result[16];

	fx->b.source_gone = 1;
	fx->b.forget_bare = 1;
	play_v2(fx, result, sizeof(result));
	assert_string_equal(result, "pass");
	assert_false(fx->b.forget_bare);
	assert_int_equal(fx->b.copies, 1); /* refused once, then never tried again */
	a = board_file(fx, "etc/dev/device.crt", &alen);
	c = board_file(fx, "etc/dev/chained.crt", &clen);
	assert_int_equal(alen, clen);
	assert_memory_equal(a, c, alen);
}

/* A chain after the certificate in chained.crt: the bytes that follow the copy of device.crt.
 * A PEM block of about 600 bytes. */
static const char test_chain_pem[] =
	"-----BEGIN CERTIFICATE-----\n"
	"MIIBhTCCASugAwIBAgIUTESTCHAINTESTCHAINTESTCHAINTESTCHAINwCgYIKoZIzj0EAwIw\n"
	"GDEWMBQGA1UEAwwNdGVzdCBkZXZpY2UgQ0EwHhcNMjQwMTAxMDAwMDAwWhcNMzQwMTAxMDAw\n"
	"MDAwWjAYMRYwFAYDVQQDDA10ZXN0IGRldmljZSBDQTBZMBMGByqGSM49AgEGCCqGSM49AwEH\n"
	"A0IABHRlc3QgY2hhaW4gdGVzdCBjaGFpbiB0ZXN0IGNoYWluIHRlc3QgY2hhaW4gdGVzdCBj\n"
	"aGFpbiB0ZXN0IGNoYWluIHRlc3QgY2hhaW4gdGVzdCBjaGFpbqNTMFEwHQYDVR0OBBYEFHRl\n"
	"c3QgY2hhaW4gdGVzdCBjaGFpbjAfBgNVHSMEGDAWgBR0ZXN0IGNoYWluIHRlc3QgY2hhaW4w\n"
	"DwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiB0ZXN0IGNoYWluIHRlc3QgY2hh\n"
	"aW4gdGVzdAIhAHRlc3QgY2hhaW4gdGVzdCBjaGFpbiB0ZXN0IGNoYWluIHQ=\n"
	"-----END CERTIFICATE-----\n";

/* The board's chained.crt is its device.crt and then the test chain; returns device.crt. */
static const uint8_t *assert_chained(struct fx *fx)
{
	const uint8_t *a, *c;
	size_t alen = 0, clen = 0;

	a = board_file(fx, "etc/dev/device.crt", &alen);
	c = board_file(fx, "etc/dev/chained.crt", &clen);
	assert_int_equal(clen, alen + strlen(test_chain_pem));
	assert_memory_equal(a, c, alen);
	assert_memory_equal(c + alen, test_chain_pem, strlen(test_chain_pem));
	return a;
}

/* chained.crt holds device.crt and then the chain, in frames of 512 bytes: the WRITEs of it
 * a board of this version takes. Both versions end with the right files. */
static unsigned play_chained(struct fx *fx, unsigned version)
{
	char result[16];

	fx->b.version = version;
	fx->chain_pem = test_chain_pem;
	play_v2(fx, result, sizeof(result));
	assert_string_equal(result, "pass");
	assert_int_equal(fx->passes, 1);
	assert_chained(fx);
	assert_int_equal(fx->b.copies, 2); /* device.crt is more than one frame's copy */
	return fx->b.chained_writes;
}

/* The chain's bytes after the copies of device.crt: in frames of their own for a board of
 * version 3; for one of version 4 the first of them ride with the last copy, one WRITE of
 * chained.crt fewer. Two boards, one fixture each. */
static void test_v4_chained(void **state)
{
	unsigned v3, v4;

	v3 = play_chained(*state, 3);
	assert_int_equal(((struct fx *)*state)->b.copy_and_bytes, 0);
	assert_int_equal(teardown(state), 0);
	assert_int_equal(setup(state), 0);
	v4 = play_chained(*state, 4);
	assert_int_equal(((struct fx *)*state)->b.copy_and_bytes, 1);
	print_message("WRITEs of chained.crt: version 3 %u, version 4 %u\n", v3, v4);
	assert_int_equal(v4, v3 - 1);
}

/* A board of version 4 that lost the copy's source: the WRITE that carries the copy and the
 * bytes after it is refused SOURCE, nothing of it staged; the station sends those bytes and
 * the board passes with the right files. */
static void test_v4_lost(void **state)
{
	struct fx *fx = *state;
	char result[16];

	fx->b.version = 4;
	fx->b.source_gone = 1;
	fx->chain_pem = test_chain_pem;
	play_v2(fx, result, sizeof(result));
	assert_string_equal(result, "pass");
	assert_int_equal(fx->b.copies, 1); /* refused once, then never tried again */
	assert_chained(fx);
}

/* A board of version 5: device.crt (the certificate's PEM as OpenSSL writes it) goes as a
 * pem value, its text alone; the chain, a PEM block whose lines are not of 64 characters,
 * goes raw as before. The board ends with the right files. In frames of 512 bytes, where no
 * certificate's block fits whole, everything goes raw as for version 4. */
static void test_v5_pem(void **state)
{
	struct fx *fx = *state;
	char result[16];

	fx->b.version = 5;
	fx->b.max = 1024; /* a certificate's PEM block goes whole or not at all */
	fx->chain_pem = test_chain_pem;
	play_v2(fx, result, sizeof(result));
	assert_string_equal(result, "pass");
	assert_int_equal(fx->b.pem_chunks, 1);
	assert_true(fx->b.raw_chunks > 0);
	assert_memory_equal(assert_chained(fx), "-----BEGIN CERTIFICATE-----\n", 28);

	assert_int_equal(teardown(state), 0);
	assert_int_equal(setup(state), 0);
	fx = *state;
	fx->b.version = 5;
	play_v2(fx, result, sizeof(result));
	assert_string_equal(result, "pass");
	assert_int_equal(fx->b.pem_chunks, 0);
}

/* A board of version 7 (PROTOCOL.md 11) that takes two requests at once, frames of 1024
 * bytes: a WRITE that completes its file and carries nothing else has the next WRITE sent
 * behind it, before its answer: device.crt has chained.crt behind it, which carries COMMIT
 * and VERIFY (the early files, id and chain.crt, go in one WRITE; nothing is behind it
 * while the certificate is signed, and device.crt once it is). The requests are those of
 * version 6, the files the same. A board that says nothing of win gets one request at a time. The first of
 * a pair answered ERROR OFFSET (the file lost), or answered without its chunk taken (have=0
 * done=0): the one behind it is forgotten, its answer ignored, and both files go again; the
 * board passes with the right files. The answer to
 * the first of a pair lost: the second's answer alone is not taken, both are sent again
 * byte for byte, and the board passes. A win out of 1..8 is a malformed HELLO answer. */
static struct fx *again_v(void **state, unsigned version, unsigned max);
static uint64_t stray_mark;

static int stray_grew(struct fx *fx)
{
	return fx->slot->stray > stray_mark;
}

/* Plays a good board until the station sends a WRITE with another behind it: the first in a,
 * not answered, the other still queued. */
static void find_pair(struct fx *fx, struct got *a)
{
	for (;;) {
		play_until(fx, a, DRV_PROTO_WRITE);
		if (fx->qn > 0)
			return;
		answer(fx, a);
	}
}

/* Plays a good board to DONE, which must say pass, and its outcome. */
static void play_to_pass(struct fx *fx)
{
	struct got g;
	char result[16];

	play_until(fx, &g, DRV_PROTO_DONE);
	assert_int_equal(drv_proto_get_text(&g.f, "result", result, sizeof(result), NULL, 0), 0);
	assert_string_equal(result, "pass");
	answer(fx, &g);
	run_until(fx, outcome_seen);
}

/* Signing held, the early files' last two WRITEs out, a before b: both answered, then
 * signing goes on and the board passes holding nfiles files. */
static void pair_to_pass(struct fx *fx, struct got *a, struct got *b, unsigned nfiles)
{
	answer(fx, a);
	answer(fx, b);
	run_until(fx, queued_idle);
	gate(0);
	play_to_pass(fx);
	assert_int_equal(fx->b.nfiles, nfiles);
}

/* Starts the board, writes the early files with the signing held (gate), then lets it go. */
static void early_then_signed(struct fx *fx)
{
	struct got g;

	gate(1);
	start(fx, 0);
	play_until(fx, &g, DRV_PROTO_WRITE);
	answer(fx, &g);
	answer_until(fx, accepted_idle);
	gate(0);
}

static int has_last_error(struct fx *fx)
{
	return fx->slot->last_error[0] != 0;
}

static void test_v7_window(void **state)
{
	struct fx *fx = *state;
	struct got a, b2, g;
	char result[64], path[64];
	unsigned v6_writes, v7_writes;
	uint64_t off;

	fx->b.version = 6;
	fx->b.max = 1024;
	fx->chain_pem = test_chain_pem;
	early_then_signed(fx);
	play_to_pass(fx);
	v6_writes = fx->b.single_writes + fx->b.multi_writes;

	fx = again_v(state, 7, 1024);
	fx->b.win = 2;
	early_then_signed(fx);
	play_to_pass(fx);
	print_message("WRITEs: version 6 %u, version 7 %u (%u sent behind another)\n", v6_writes,
		      fx->b.single_writes + fx->b.multi_writes, fx->b.piped);
	v7_writes = fx->b.single_writes + fx->b.multi_writes;
	assert_int_equal(v7_writes, v6_writes);
	assert_int_equal(fx->b.piped, 1);
	assert_int_equal(fx->slot->piped, 1);
	assert_int_equal(fx->b.folded_commits, 1);
	assert_int_equal(fx->b.folded_verifies, 1);
	assert_memory_equal(assert_chained(fx), "-----BEGIN CERTIFICATE-----\n", 28);
	assert_int_equal(fx->slot->retransmits, 0);

	fx = again_v(state, 7, 1024);
	early_then_signed(fx);
	play_to_pass(fx);
	assert_int_equal(fx->b.piped, 0);
	assert_int_equal(fx->slot->piped, 0);

	/* Signed while the early files' WRITE is out: device.crt goes behind it at once, and
	 * chained.crt behind device.crt once that is answered. */
	fx = again_v(state, 7, 1024);
	fx->b.win = 2;
	gate(1);
	start(fx, 0);
	play_until(fx, &a, DRV_PROTO_WRITE);
	gate(0);
	run_until(fx, is_signed);
	expect_write(fx, &b2, "etc/dev/device.crt");
	assert_int_equal(b2.f.seq, a.f.seq + 1);
	answer(fx, &a);
	answer(fx, &b2);
	expect_write(fx, &g, "etc/dev/chained.crt");
	assert_int_equal(g.f.seq, b2.f.seq + 1);
	answer(fx, &g);
	play_to_pass(fx);
	assert_int_equal(fx->slot->piped, 2);
	assert_int_equal(fx->b.single_writes + fx->b.multi_writes, v7_writes);
	assert_memory_equal(assert_chained(fx), "-----BEGIN CERTIFICATE-----\n", 28);

	fx = again_v(state, 7, 1024);
	fx->b.win = 2;
	fx->b.offset_piped = 1;
	early_then_signed(fx);
	play_to_pass(fx);
	assert_int_equal(fx->b.single_writes + fx->b.multi_writes, v7_writes + 2);
	assert_int_equal(fx->b.piped, 2);
	assert_memory_equal(assert_chained(fx), "-----BEGIN CERTIFICATE-----\n", 28);

	/* The chunk not taken: the answer behind it, in before the station sends again, is
	 * not taken for anything (a stray), and the file goes again from its start. */
	fx = again_v(state, 7, 1024);
	fx->b.win = 2;
	fx->b.short_piped = 1;
	early_then_signed(fx);
	find_pair(fx, &a);
	answer(fx, &a);
	next_frame(fx, &b2);
	answer(fx, &b2);
	next_frame(fx, &g);
	assert_int_equal(fx->slot->stray, 1);
	assert_int_equal(g.f.seq, b2.f.seq + 1);
	assert_int_equal(drv_proto_get_text(&g.f, "path", result, sizeof(result), NULL, 0), 0);
	assert_int_equal(drv_proto_get_text(&a.f, "path", path, sizeof(path), NULL, 0), 0);
	assert_string_equal(result, path);
	assert_int_equal(drv_proto_get_uint(&g.f, "off", 0, UINT64_MAX, &off, NULL, 0), 0);
	assert_int_equal(off, 0);
	answer(fx, &g);
	play_to_pass(fx);
	assert_memory_equal(assert_chained(fx), "-----BEGIN CERTIFICATE-----\n", 28);

	fx = again_v(state, 7, 1024);
	fx->b.win = 2;
	early_then_signed(fx);
	find_pair(fx, &a);
	next_frame(fx, &b2);
	assert_string_equal(b2.f.type, DRV_PROTO_WRITE);
	assert_int_equal(b2.f.seq, a.f.seq + 1);
	stray_mark = fx->slot->stray;
	answer(fx, &b2);
	run_until(fx, stray_grew);
	assert_int_equal(fx->slot->stray, stray_mark + 1);
	expire(fx);
	next_frame(fx, &g);
	assert_int_equal(g.f.seq, a.f.seq);
	assert_int_equal(g.f.len, a.f.len);
	assert_memory_equal(g.line, a.line, a.f.len);
	answer(fx, &g);
	next_frame(fx, &g);
	assert_int_equal(g.f.seq, b2.f.seq);
	assert_int_equal(g.f.len, b2.f.len);
	assert_memory_equal(g.line, b2.line, b2.f.len);
	answer(fx, &g);
	play_to_pass(fx);
	assert_int_equal(fx->slot->retransmits, 1);
	assert_memory_equal(assert_chained(fx), "-----BEGIN CERTIFICATE-----\n", 28);

	/* A win out of 1..8: the HELLO answer is malformed, asked again, and no run starts. */
	fx = again_v(state, 7, 1024);
	fx->b.win = 9;
	start(fx, 0);
	for (unsigned i = 0; i < TRIES; i++) {
		next_frame(fx, &g);
		assert_string_equal(g.f.type, DRV_PROTO_HELLO);
		answer(fx, &g);
	}
	run_until(fx, has_last_error);
	assert_non_null(strstr(fx->slot->last_error, "'win'"));
	assert_null(fx->slot->run);
	assert_int_equal(fx->slot->state, ST_SLOT_WAITING);
}

/* Answers read together: the requests they call for leave in one write. Four files before
 * the certificate, each a WRITE of its own (frames of 512 bytes, files of 300): the first two
 * out, the second behind the first, and both answered in one read. The first's answer sends
 * the third behind the second, the second's the fourth behind the third: one write of the
 * port for the two. And the first answer with the board's reboot behind it in one read: the
 * WRITE it called for never leaves, and HELLO goes alone. */
static void test_v7_one_write(void **state)
{
	static char yaml[2048];
	char body[301];
	struct fx *fx;
	struct got a, b2, c, d;
	uint64_t writes;
	char want[48];

	memset(body, 'x', 300);
	body[300] = 0;
	snprintf(yaml, sizeof(yaml),
		 PROFILE_HEAD
		 "  - {path: /etc/dev/device.crt, content: '{cert_pem}'}\n"
		 "  - {path: /etc/dev/f1, content: '1%s'}\n"
		 "  - {path: /etc/dev/f2, content: '2%s'}\n"
		 "  - {path: /etc/dev/f3, content: '3%s'}\n"
		 "  - {path: /etc/dev/f4, content: '4%s'}\n",
		 body, body, body, body);
	fx = again_v(state, 7, 512);
	fx->b.win = 2;
	fx->profile = yaml;
	gate(1); /* the certificate waits: only the four files go */
	start(fx, 0);
	find_pair(fx, &a);
	next_frame(fx, &b2);
	assert_int_equal(b2.f.seq, a.f.seq + 1);
	writes = fx->slot->tx_writes;
	answer(fx, &a);
	answer(fx, &b2);
	next_frame(fx, &c);
	next_frame(fx, &d);
	assert_string_equal(c.f.type, DRV_PROTO_WRITE);
	assert_string_equal(d.f.type, DRV_PROTO_WRITE);
	assert_int_equal(c.f.seq, b2.f.seq + 1);
	assert_int_equal(d.f.seq, c.f.seq + 1);
	print_message("port writes for the two WRITEs called for by one read: %" PRIu64 "\n",
		      fx->slot->tx_writes - writes);
	assert_int_equal(fx->slot->tx_writes, writes + 1);
	pair_to_pass(fx, &c, &d, 5);
	assert_int_equal(fx->slot->retransmits, 0);
	/* The pass event counts them: every write of the slot's so far was this board's. */
	snprintf(want, sizeof(want), "\"writes\":%" PRIu64 ",", fx->slot->tx_writes);
	assert_true(events_has(fx, want));

	/* The first answer, and the board's reboot behind it in the same read: the WRITE the
	 * answer called for never leaves; the rebooted board is greeted with HELLO alone. */
	fx = again_v(state, 7, 512);
	fx->b.win = 2;
	fx->profile = yaml;
	gate(1);
	start(fx, 0);
	find_pair(fx, &a);
	next_frame(fx, &b2);
	writes = fx->slot->tx_writes;
	answer(fx, &a);
	snprintf(fx->b.boot, sizeof(fx->b.boot), "boot-2");
	fx->b.nfiles = 0;
	send_boot(fx);
	next_frame(fx, &c);
	assert_string_equal(c.f.type, DRV_PROTO_HELLO);
	drain(fx);
	assert_int_equal(fx->qn, 0);
	assert_int_equal(fx->slot->tx_writes, writes + 1);
	answer(fx, &c);
	gate(0);
	play_to_pass(fx);
	assert_int_equal(fx->b.nfiles, 5);
}

/* The fixture of *state set up again, for a board of version with frames of max bytes and
 * the CA chain in client.chained. */
static struct fx *again_v(void **state, unsigned version, unsigned max)
{
	struct fx *fx;

	assert_int_equal(teardown(state), 0);
	assert_int_equal(setup(state), 0);
	fx = *state;
	fx->b.version = version;
	fx->b.max = max;
	fx->chain_pem = test_chain_pem;
	return fx;
}

/* With the ledger held, frames of 4096, a board of version 6, or of version 7 that takes a
 * WRITE behind another or not: the public chain waits for the request's acceptance, since
 * then it goes with the id in one WRITE (alone, it would cost a request more). Frames of
 * 512: the chunks of the chain that fit with nothing else go as the CSR comes in, its last
 * waits to go with the id. A board of version 5 (one file a WRITE): the chain goes as the
 * CSR comes in, the id once accepted. */
static void test_public_waits(void **state)
{
	static const struct {
		unsigned version, max, win;
		int before; /* the chain went (some of it) before the acceptance */
		int with;   /* the id rides in the chain's WRITE after it */
	} cases[] = {
		{ 6, 4096, 0, 0, 1 },
		{ 7, 4096, 1, 0, 1 },
		{ 6, 512, 0, 1, 1 },
		{ 7, 4096, 2, 0, 1 },
		{ 5, 4096, 0, 1, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct fx *fx = again_v(state, cases[i].version, cases[i].max);
		struct drv_proto_frame part;
		struct got g;
		char path[64];
		sqlite3 *db;

		fx->b.win = cases[i].win;
		gate(1);
		start(fx, 0);
		db = hold_ledger(fx);
		answer_until(fx, queued_idle);
		idle(fx, 100);
		assert_false(accepted(fx));
		assert_int_equal(fx->b.nfiles, cases[i].before);
		release_ledger(db);
		if (cases[i].with) {
			expect_write(fx, &g, "etc/dev/chain.crt");
			assert_int_equal(drv_proto_part(&g.f, "path", 1, &part), 2);
			assert_int_equal(drv_proto_get_text(&part, "path", path, sizeof(path), NULL, 0),
					 0);
			assert_string_equal(path, "etc/dev/id");
		} else {
			expect_write(fx, &g, "etc/dev/id");
		}
		answer(fx, &g);
		assert_int_equal(fx->b.nfiles, 2);
		run_until(fx, queued_idle);
		gate(0);
		play_to_pass(fx);
		assert_int_equal(fx->b.nfiles, 4);
	}
}

/* A board that takes a WRITE behind another, a private file too long to go with the public
 * one: the public file goes as the CSR comes in, and once the request is accepted, while it
 * is still out, the private one goes behind it. */
static void test_public_behind(void **state)
{
	struct fx *fx;
	struct got a, b2;
	char yaml[2048], body[701];
	sqlite3 *db;

	memset(body, 'x', sizeof(body) - 1);
	body[sizeof(body) - 1] = '\0';
	snprintf(yaml, sizeof(yaml),
		 PROFILE_HEAD
		 "  - {path: /etc/dev/device.crt, content: '{cert_pem}'}\n"
		 "  - {path: /etc/dev/conf, content: '%s'}\n"
		 "  - {path: /etc/dev/chain.crt, content: '{chain_pem}{root_pem}'}\n",
		 body);
	fx = again_v(state, 7, 1024);
	fx->b.win = 2;
	fx->profile = yaml;
	db = public_held(fx, &a);
	release_ledger(db);
	run_until(fx, accepted);
	expect_write(fx, &b2, "etc/dev/conf");
	assert_int_equal(b2.f.seq, a.f.seq + 1);
	assert_int_equal(fx->slot->piped, 1);
	pair_to_pass(fx, &a, &b2, 3);
}

/* A board of version 6 (PROTOCOL.md 10), frames of 4096 bytes: the files after the first
 * ride in its WRITE, each whole, the last with COMMIT and VERIFY; fewer WRITEs than a board
 * of version 5 takes, the same files. An ERROR to a WRITE of several files: one file a WRITE
 * from then on, and the board passes. An answer whose second part names another file, or
 * lacks it: asked again whole, nothing of the first part taken from it, and the board passes
 * with one WRITE more. Frames of 512 bytes: files of several chunks. */
static void test_v6_files(void **state)
{
	struct fx *fx = *state;
	char result[16];
	unsigned v5_writes;

	fx->b.version = 5;
	fx->b.max = 4096;
	fx->chain_pem = test_chain_pem;
	play_v2(fx, result, sizeof(result));
	assert_string_equal(result, "pass");
	assert_int_equal(fx->b.multi_writes, 0);
	v5_writes = fx->b.single_writes;

	fx = again_v(state, 6, 4096);
	play_v2(fx, result, sizeof(result));
	assert_string_equal(result, "pass");
	print_message("WRITEs: version 5 %u, version 6 %u (%u of several files, %u files in them)\n",
		      v5_writes, fx->b.single_writes + fx->b.multi_writes, fx->b.multi_writes,
		      fx->b.multi_files);
	assert_true(fx->b.multi_writes > 0);
	assert_true(fx->b.single_writes + fx->b.multi_writes < v5_writes);
	assert_int_equal(fx->b.folded_commits, 1);
	assert_int_equal(fx->b.folded_verifies, 1);
	assert_int_equal(fx->b.commits + fx->b.verifies, 0);
	assert_memory_equal(assert_chained(fx), "-----BEGIN CERTIFICATE-----\n", 28);

	fx = again_v(state, 6, 4096);
	fx->b.fail_multi = 1;
	play_v2(fx, result, sizeof(result));
	assert_string_equal(result, "pass");
	assert_int_equal(fx->b.multi_writes, 1);
	assert_true(fx->b.single_writes >= 2);

	for (int bad = 1; bad <= 2; bad++) {
		fx = again_v(state, 6, 4096);
		fx->b.bad_multi = bad;
		play_v2(fx, result, sizeof(result));
		assert_string_equal(result, "pass");
		assert_int_equal(fx->b.multi_writes, 3);
		assert_int_equal(fx->b.single_writes, 0);
		assert_memory_equal(assert_chained(fx), "-----BEGIN CERTIFICATE-----\n", 28);
	}

	fx = again_v(state, 6, 512);
	play_v2(fx, result, sizeof(result));
	assert_string_equal(result, "pass");
	print_message("frames of 512 bytes: %u WRITEs of several files\n", fx->b.multi_writes);
}

/* A file that changed on the board's storage: the sum differs, the list names the file and
 * the board fails. */
static void test_v2_sum_differs(void **state)
{
	struct fx *fx = *state;
	char result[16];

	fx->b.flip_byte = 1;
	play_v2(fx, result, sizeof(result));
	assert_string_equal(result, "fail");
	assert_int_equal(fx->b.sums, 1);
	assert_int_equal(fx->b.lists, 1);
	assert_non_null(strstr(fx->last_error, "read back etc/dev/chained.crt"));
}

/* A board of version 3: the WRITE that completes the last file carries COMMIT and VERIFY,
 * answered with their fields: no COMMIT or VERIFY request of their own, and the slot goes
 * through written, committed and verified all the same. */
static void test_v3_pass(void **state)
{
	struct fx *fx = *state;
	char result[16];

	fx->b.version = 3;
	fx->write_ms = 1000;
	fx->commit_ms = 20000;
	fx->verify_ms = 300000;
	play_v2(fx, result, sizeof(result));
	assert_string_equal(result, "pass");
	assert_int_equal(fx->passes, 1);
	/* That WRITE waits for the board to write, commit and sign. */
	assert_int_equal(fx->b.folded_wait_ms, 1000 + 20000 + 300000);
	assert_int_equal(fx->b.folded_commits, 1);
	assert_int_equal(fx->b.folded_verifies, 1);
	assert_int_equal(fx->b.commits + fx->b.verifies, 0);
	assert_int_equal(fx->b.sums, 1);
	assert_true(events_has(fx, "\"from\":\"signed\",\"to\":\"written\""));
	assert_true(events_has(fx, "\"from\":\"written\",\"to\":\"committed\""));
	assert_true(events_has(fx, "\"from\":\"committed\",\"to\":\"verified\""));
}

/* A board of version 3 that does not do the folded steps (its answers lack their fields):
 * the station sends COMMIT (carrying VERIFY), then VERIFY, and the board passes. */
static void test_v3_unfolded(void **state)
{
	struct fx *fx = *state;
	char result[16];

	fx->b.version = 3;
	fx->b.no_fold_commit = 1;
	fx->b.no_fold_verify = 1;
	play_v2(fx, result, sizeof(result));
	assert_string_equal(result, "pass");
	assert_int_equal(fx->b.folded_commits + fx->b.folded_verifies, 0);
	assert_int_equal(fx->b.asked_commit, 1);
	assert_int_equal(fx->b.asked_verify, 2);
	assert_int_equal(fx->b.commits, 1);
	assert_int_equal(fx->b.verifies, 1);
	assert_int_equal(fx->b.sums, 1);
}

/* Only COMMIT left out of the WRITE's answer: COMMIT alone, with VERIFY folded into it. */
static void test_v3_commit_unfolded(void **state)
{
	struct fx *fx = *state;
	char result[16];

	fx->b.version = 3;
	fx->b.no_fold_commit = 1;
	fx->commit_ms = 20000;
	fx->verify_ms = 300000;
	play_v2(fx, result, sizeof(result));
	assert_string_equal(result, "pass");
	/* COMMIT carrying VERIFY waits for both. */
	assert_int_equal(fx->b.folded_wait_ms, 20000 + 300000);
	assert_int_equal(fx->b.commits, 1);
	assert_int_equal(fx->b.folded_verifies, 1);
	assert_int_equal(fx->b.verifies, 0);
}

/* A file changed on the board's storage, seen in the folded VERIFY's sum: the list (a VERIFY
 * of its own) names the file and the board fails, as in version 2. */
static void test_v3_sum_differs(void **state)
{
	struct fx *fx = *state;
	char result[16];

	fx->b.version = 3;
	fx->b.flip_byte = 1;
	play_v2(fx, result, sizeof(result));
	assert_string_equal(result, "fail");
	assert_int_equal(fx->b.folded_verifies, 1);
	assert_int_equal(fx->b.sums, 1);
	assert_int_equal(fx->b.lists, 1);
	assert_non_null(strstr(fx->last_error, "read back etc/dev/chained.crt"));
}

/* The table names every state, its outcomes are transitions it allows, and it refuses the
 * rest: a board is not signed before its CSR is read, nothing follows stopped. */
static void test_table(void **state)
{
	unsigned allowed = 0;

	(void)state;
	for (int i = 0; i < ST_SLOT_NSTATES; i++) {
		const struct slot_state_def *d = &slot_table[i];
		enum st_slot_state outs[] = { d->ok, d->error, d->timeout, d->reboot, d->hangup,
					      d->nonsense };

		assert_non_null(d->name);
		assert_string_equal(st_slot_state_name((enum st_slot_state)i), d->name);
		for (size_t j = 0; j < sizeof(outs) / sizeof(outs[0]); j++)
			assert_true(slot_transition_allowed((enum st_slot_state)i, outs[j]));
		assert_true(slot_transition_allowed((enum st_slot_state)i, ST_SLOT_STOPPED));
		for (int j = 0; j < ST_SLOT_NSTATES; j++)
			allowed += slot_transition_allowed((enum st_slot_state)i,
							   (enum st_slot_state)j) && i != j;
	}
	assert_false(slot_transition_allowed(ST_SLOT_WAITING, ST_SLOT_SIGNED));
	assert_false(slot_transition_allowed(ST_SLOT_CSR, ST_SLOT_QUEUED));
	assert_false(slot_transition_allowed(ST_SLOT_VERIFIED, ST_SLOT_FAILED));
	assert_false(slot_transition_allowed(ST_SLOT_STOPPED, ST_SLOT_WAITING));
	assert_false(slot_transition_allowed(ST_SLOT_NSTATES, ST_SLOT_WAITING));
	print_message("state table: %d states, %u transitions\n", ST_SLOT_NSTATES, allowed);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test_setup_teardown(test_pass, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resync_after_garbage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retransmission, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout_csr, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout_commit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout_verify, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout_probe_and_done, setup, teardown),
		cmocka_unit_test_setup_teardown(test_echo_while_rebooting, setup, teardown),
		cmocka_unit_test_setup_teardown(test_echo_forever, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reboot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hangup, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reconnect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_baud_success, setup, teardown),
		cmocka_unit_test_setup_teardown(test_baud_fallback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_baud_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_board_swapped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v8_boot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_baud_damaged_after_pass, setup, teardown),
		cmocka_unit_test_setup_teardown(test_csr_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v2_pass, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v2_lost, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v2_sum_differs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v3_pass, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v3_unfolded, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v3_commit_unfolded, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v4_chained, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v4_lost, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v5_pem, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v6_files, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v7_window, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v7_one_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v3_sum_differs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_early_writes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_public_first, setup, teardown),
		cmocka_unit_test_setup_teardown(test_public_waits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_public_behind, setup, teardown),
		cmocka_unit_test_setup_teardown(test_early_writes_reboot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_early_write_fails, setup, teardown),
	};

	if (getenv("TEST_SLOT_ONLY"))
		cmocka_set_test_filter(getenv("TEST_SLOT_ONLY"));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
