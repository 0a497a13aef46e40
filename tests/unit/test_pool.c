/* The signing pool with real parts: a CA whose key is in a file the test writes (or in a
 * SoftHSM2 token the test creates), a real SQLite ledger file and a real libuv loop. Every
 * wait runs the loop until the awaited event has happened; nothing sleeps. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <uv.h>

#include "ca.h"
#include "digest.h"
#include "err.h"
#include "issue.h"
#include "ledger.h"
#include "log.h"
#include "policy.h"
#include "pool.h"
#include "signer.h"
#include "testutil.h"
#include "x509sign.h"

#define FACTORY "acme-factory"
#define DAY 86400L
#define TOKEN "pool-test"

struct fx {
	char dir[4096];
	char ledger[4200];
	uv_loop_t loop;
	EVP_PKEY *ca_key;     /* file CA only */
	X509 *ca_cert;
	struct st_ca *ca;
	struct drv_signer *signer;
	struct st_policy policy;
	struct st_ledger *reader; /* a second connection, as `station ledger` would have */
	struct st_pool *pool;
	unsigned mark_delay_ms; /* start_pool's st_pool_config.mark_delay_ms */
	int closed;
	struct tu_softhsm hsm; /* SoftHSM2 */
	char mnt[4100];        /* a small file system of the test's own, "" when none */
};

/* What one test run saw. */
struct run {
	struct fx *fx;
	unsigned done, ok, failed;
	unsigned expect;
	int check_ledger;     /* look each signed request up through the second connection */
	unsigned paused_events, resumed_events;
	unsigned done_while_paused;
	int paused;
	int fs_done_first;    /* the uv_fs_stat finished before any request */
	int fs_done;
	void (*on_done)(struct run *run, struct st_sign_req *req);
	struct st_sign_req *keep[512];
	unsigned nkeep;
	struct st_sign_req *acc[512]; /* accepted() called for them, in order */
	unsigned nacc;
};

/* ---- PKI -------------------------------------------------------------------------- */

/* A device CSR from key, checked by the station's own policy code. */
static struct st_csr *make_csr(struct fx *fx, EVP_PKEY *key, const char *cn)
{
	struct st_csr *csr = NULL;
	char err[512] = "";
	uint8_t *der;
	size_t n = 0;
	int rc;

	der = tu_csr_der(key, cn, FACTORY, 0, &n);
	assert_non_null(der);
	rc = st_csr_check(&fx->policy, fx->ca->ou, der, n, cn, &csr, err, sizeof(err));
	if (rc != 0)
		fail_msg("CSR for %s: %s", cn, err);
	free(der);
	return csr;
}

static void open_reader(struct fx *fx)
{
	char err[512] = "";

	if (st_ledger_open(fx->ledger, "reader", &fx->reader, err, sizeof(err)) != 0)
		fail_msg("second ledger connection: %s", err);
}

static void fx_paths(struct fx *fx, const char *name)
{
	const char *d = tu_tmpdir(name);

	assert_non_null(d);
	snprintf(fx->dir, sizeof(fx->dir), "%s", d);
	snprintf(fx->ledger, sizeof(fx->ledger), "%s/ledger.db", fx->dir);
	assert_int_equal(uv_loop_init(&fx->loop), 0);
	st_policy_default(&fx->policy);
}

static int setup_file(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	char key_path[4200], err[512] = "";

	if (!fx)
		return -1;
	fx_paths(fx, "pool");
	snprintf(key_path, sizeof(key_path), "%s/ca.key", fx->dir);
	fx->ca_key = EVP_EC_gen("prime256v1");
	fx->ca_cert = tu_ca_template(fx->ca_key, "Local-CA", FACTORY, 3650);
	if (!fx->ca_cert || X509_sign(fx->ca_cert, fx->ca_key, EVP_sha256()) <= 0)
		return -1;
	if (st_ca_from_x509(fx->ca_cert, NULL, NULL, "test CA", &fx->ca, err, sizeof(err)) != 0) {
		fprintf(stderr, "ca: %s\n", err);
		return -1;
	}
	if (tu_file_signer(key_path, fx->ca_key, &fx->signer, err, sizeof(err)) != 0) {
		fprintf(stderr, "signer: %s\n", err);
		return -1;
	}
	*state = fx;
	return 0;
}

/* A SoftHSM2 token in the test's own directory, its key the CA key, self-signed through the
 * token (st_x509_sign), as `station ca init --pkcs11` does. */
static int setup_softhsm(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	char err[512] = "";

	if (!fx)
		return -1;
	fx_paths(fx, "pool-hsm");
	if (tu_softhsm_token(&fx->hsm, fx->dir, TOKEN, "ca", err, sizeof(err)) != 0) {
		fprintf(stderr, "token: %s\n", err);
		return -1;
	}
	if (drv_pkcs11_generate_ec_key(&fx->hsm.cfg, NULL, err, sizeof(err)) != 0 ||
	    drv_signer_open(&fx->hsm.cfg, &fx->signer, err, sizeof(err)) != 0) {
		fprintf(stderr, "signer: %s\n", err);
		return -1;
	}
	fx->ca_cert = tu_signer_ca(fx->signer, "Local-CA", FACTORY, 3650, err, sizeof(err));
	if (!fx->ca_cert ||
	    st_ca_from_x509(fx->ca_cert, NULL, NULL, "test CA", &fx->ca, err, sizeof(err)) != 0) {
		fprintf(stderr, "ca: %s\n", err);
		return -1;
	}
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;
	int rc;

	if (fx->reader)
		st_ledger_close(fx->reader);
	if (fx->mnt[0] && umount2(fx->mnt, MNT_DETACH) != 0)
		fprintf(stderr, "umount %s: %s\n", fx->mnt, strerror(errno));
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

/* ---- Pool helpers ----------------------------------------------------------------- */

static void start_pool(struct fx *fx, unsigned workers, unsigned batch_max, unsigned linger,
		       unsigned queue_max)
{
	struct st_pool_config cfg;
	char err[512] = "";
	int rc;

	st_pool_config_default(&cfg);
	cfg.workers = workers;
	cfg.batch_max = batch_max;
	cfg.batch_linger_ms = linger;
	cfg.queue_max = queue_max;
	cfg.mark_delay_ms = fx->mark_delay_ms;
	cfg.station = "test-station";
	cfg.ledger_path = fx->ledger;
	rc = st_pool_new(&fx->loop, &cfg, fx->ca, fx->signer, &fx->pool, err, sizeof(err));
	if (rc != 0)
		fail_msg("pool: %s: %s", st_errname(rc), err);
}

static void on_closed(void *arg)
{
	struct fx *fx = arg;

	fx->closed++;
	fx->pool = NULL;
}

/* Runs the loop until *flag is non-zero. The pool keeps the loop alive while it has work,
 * so a loop that runs out of things to do means the awaited event will never come. */
static void run_until(struct fx *fx, const unsigned *flag, unsigned want)
{
	while (*flag < want) {
		if (uv_run(&fx->loop, UV_RUN_ONCE) == 0 && *flag < want)
			fail_msg("loop ran dry waiting (%u of %u)", *flag, want);
	}
}

static void close_pool(struct fx *fx)
{
	st_pool_close(fx->pool, on_closed, fx);
	st_pool_close(fx->pool, on_closed, fx); /* harmless */
	run_until(fx, (const unsigned *)&fx->closed, 1);
	assert_int_equal(fx->closed, 1);
	assert_null(fx->pool);
	assert_int_equal(uv_run(&fx->loop, UV_RUN_DEFAULT), 0);
}

/* The certificate verifies with the CA's key and names the device. */
static void check_cert(struct fx *fx, const struct st_sign_req *req)
{
	const unsigned char *p = req->cert->der;
	X509 *x = d2i_X509(NULL, &p, (long)req->cert->der_len);
	EVP_PKEY *ca_pub = X509_get0_pubkey(fx->ca_cert);
	char cn[300] = "";

	assert_non_null(x);
	assert_int_equal(X509_verify(x, ca_pub), 1);
	X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
	assert_string_equal(cn, req->device_id);
	X509_free(x);
}

/* The ledger, read through another connection, holds req's certificate already. */
static void check_recorded(struct fx *fx, const struct st_sign_req *req)
{
	struct st_ledger_row *row = NULL;
	char err[512] = "";
	int rc;

	assert_true(req->row_id > 0);
	rc = st_ledger_get(fx->reader, req->row_id, &row, err, sizeof(err));
	if (rc != 0)
		fail_msg("row %lld: %s", (long long)req->row_id, err);
	assert_true(row->state == ST_LEDGER_SIGNED || row->state == ST_LEDGER_DELIVERED);
	assert_int_equal(row->cert_len, req->cert->der_len);
	assert_memory_equal(row->cert_der, req->cert->der, row->cert_len);
	assert_string_equal(row->device_id, req->device_id);
	assert_string_equal(row->serial, req->cert->serial_hex);
	st_ledger_row_free(row);
}

/* Its intent is recorded, it goes to be signed: the pool's word before done(). */
static void on_accepted(struct st_sign_req *req)
{
	struct run *run = req->data;

	assert_true(run->nacc < sizeof(run->acc) / sizeof(run->acc[0]));
	run->acc[run->nacc++] = req;
}

static int was_accepted(const struct run *run, const struct st_sign_req *req)
{
	for (unsigned i = 0; i < run->nacc; i++) {
		if (run->acc[i] == req)
			return 1;
	}
	return 0;
}

static void on_done(struct st_sign_req *req)
{
	struct run *run = req->data;

	run->done++;
	/* Every certificate signed was accepted first; nothing refused, rejected or delivered
	 * again was. */
	if (req->rc == 0 && !req->reused)
		assert_true(was_accepted(run, req));
	if (req->reused || req->refused || req->csr_rejected)
		assert_false(was_accepted(run, req));
	if (run->paused)
		run->done_while_paused++;
	if (req->rc == 0) {
		run->ok++;
		assert_non_null(req->cert);
		check_cert(run->fx, req);
		if (run->check_ledger)
			check_recorded(run->fx, req);
		assert_true(req->t.submitted <= req->t.sealed);
		assert_true(req->t.sealed <= req->t.intent);
		assert_true(req->t.intent <= req->t.completed);
		if (!req->reused) {
			assert_true(req->t.intent <= req->t.sign_start);
			assert_true(req->t.sign_start <= req->t.sign_end);
			assert_true(req->t.sign_end <= req->t.recorded);
			assert_true(req->t.recorded <= req->t.completed);
		}
	} else {
		run->failed++;
		assert_null(req->cert);
		assert_true(req->err[0] != 0);
	}
	if (run->on_done)
		run->on_done(run, req);
	if (run->nkeep < sizeof(run->keep) / sizeof(run->keep[0]))
		run->keep[run->nkeep++] = req;
	else
		st_sign_req_free(req);
}

static void free_kept(struct run *run)
{
	unsigned i;

	for (i = 0; i < run->nkeep; i++)
		st_sign_req_free(run->keep[i]);
	run->nkeep = 0;
}

static struct st_sign_req *make_req(struct fx *fx, struct run *run, EVP_PKEY *key,
				    const char *device_id, const char *slot)
{
	struct st_sign_req *req = st_sign_req_new();

	assert_non_null(req);
	req->policy = &fx->policy;
	snprintf(req->profile, sizeof(req->profile), "acme-gw");
	snprintf(req->slot, sizeof(req->slot), "%s", slot);
	snprintf(req->device_id, sizeof(req->device_id), "%s", device_id);
	req->csr = make_csr(fx, key, device_id);
	req->data = run;
	req->done = on_done;
	req->accepted = on_accepted;
	return req;
}

/* A request whose CSR the pool checks itself: csr (n bytes, copied) as received. */
static struct st_sign_req *make_raw_req(struct fx *fx, struct run *run, const void *csr,
					size_t n, const char *device_id, const char *slot)
{
	struct st_sign_req *req = st_sign_req_new();

	assert_non_null(req);
	req->policy = &fx->policy;
	snprintf(req->profile, sizeof(req->profile), "acme-gw");
	snprintf(req->slot, sizeof(req->slot), "%s", slot);
	snprintf(req->device_id, sizeof(req->device_id), "%s", device_id);
	req->csr_raw = malloc(n ? n : 1);
	assert_non_null(req->csr_raw);
	memcpy(req->csr_raw, csr, n);
	req->csr_raw_len = n;
	req->data = run;
	req->done = on_done;
	req->accepted = on_accepted;
	return req;
}

/* The PEM of a DER CSR, as a device sends it. Free with free(). */
static char *csr_pem(const uint8_t *der, size_t n, size_t *len)
{
	char *out = tu_pem(der, n, "CERTIFICATE REQUEST", len);

	assert_non_null(out);
	return out;
}

/* Submits n new boards (fresh keys, device ids prefix-<i>). */
static void submit_many(struct fx *fx, struct run *run, const char *prefix, unsigned n)
{
	char id[64], slot[32];
	EVP_PKEY *key;
	unsigned i;
	int rc;

	for (i = 0; i < n; i++) {
		snprintf(id, sizeof(id), "%s-%04u", prefix, i);
		snprintf(slot, sizeof(slot), "S%u", i);
		key = EVP_EC_gen("prime256v1");
		rc = st_pool_submit(fx->pool, make_req(fx, run, key, id, slot));
		EVP_PKEY_free(key);
		assert_int_equal(rc, 0);
	}
}

/* ---- Tests ------------------------------------------------------------------------ */

/* 200 boards through 2 workers: every certificate verifies and is in the ledger, read by
 * another connection, before its request completes. */
static void test_many(void **state)
{
	struct fx *fx = *state;
	struct run run = { .fx = fx, .check_ledger = 1 };
	struct st_pool_stats st;

	start_pool(fx, 2, 16, 2, 0);
	open_reader(fx);
	submit_many(fx, &run, "board", 200);
	run_until(fx, &run.done, 200);
	assert_int_equal(run.ok, 200);
	st_pool_stats(fx->pool, &st);
	assert_int_equal(st.submitted, 200);
	assert_int_equal(st.signed_, 200);
	assert_int_equal(st.failed + st.refused + st.reused, 0);
	assert_int_equal(st.in_pool, 0);
	assert_int_equal(st.workers, 2);
	assert_int_equal(st.paused, 0);
	assert_int_equal(st.batched, 200);
	free_kept(&run);
	close_pool(fx);
}

/* With UUID serials the intent names the certificate's serial exactly. */
static void test_uuid_serials(void **state)
{
	struct fx *fx = *state;
	struct run run = { .fx = fx, .check_ledger = 1 };
	char id[64];
	EVP_PKEY *key;
	unsigned i;

	fx->policy.serial_mode = ST_SERIAL_UUID;
	start_pool(fx, 2, 8, 0, 0);
	open_reader(fx);
	for (i = 0; i < 20; i++) {
		snprintf(id, sizeof(id), "8b1f5a4e-2c3d-4e5f-9a0b-%012x", i + 1);
		key = EVP_EC_gen("prime256v1");
		assert_int_equal(st_pool_submit(fx->pool, make_req(fx, &run, key, id, "U")), 0);
		EVP_PKEY_free(key);
	}
	run_until(fx, &run.done, 20);
	assert_int_equal(run.ok, 20);
	for (i = 0; i < run.nkeep; i++)
		assert_string_equal(run.keep[i]->cert->serial_hex, run.keep[i]->serial_hex);
	free_kept(&run);
	close_pool(fx);
}

static int count_flag(const struct st_ledger_flag *flag, void *arg)
{
	unsigned *n = arg;

	assert_non_null(strstr(flag->reason, "refused and flagged"));
	(*n)++;
	return 0;
}

/* A board that comes back with its device id and key gets its recorded certificate; a key
 * certified for one device is refused for another; a device id certified with another key
 * is refused under the refuse policy. */
static void test_recorded_and_refused(void **state)
{
	struct fx *fx = *state;
	struct run run = { .fx = fx, .check_ledger = 1 };
	EVP_PKEY *key = EVP_EC_gen("prime256v1"), *other = EVP_EC_gen("prime256v1");
	struct st_sign_req *first, *again, *thief, *swapped;
	struct st_pool_stats st;
	unsigned flags = 0;
	char err[512];

	start_pool(fx, 2, 4, 0, 0);
	open_reader(fx);
	assert_int_equal(st_pool_submit(fx->pool, make_req(fx, &run, key, "dev-A", "A1")), 0);
	run_until(fx, &run.done, 1);
	first = run.keep[0];
	assert_int_equal(first->rc, 0);
	assert_int_equal(first->reused, 0);

	assert_int_equal(st_pool_submit(fx->pool, make_req(fx, &run, key, "dev-A", "A2")), 0);
	assert_int_equal(st_pool_submit(fx->pool, make_req(fx, &run, key, "dev-B", "A3")), 0);
	assert_int_equal(st_pool_submit(fx->pool, make_req(fx, &run, other, "dev-A", "A4")), 0);
	run_until(fx, &run.done, 4);
	again = run.keep[1];
	thief = run.keep[2];
	swapped = run.keep[3];
	/* Completions of one batch come in batch order. */
	assert_string_equal(again->slot, "A2");
	assert_string_equal(thief->slot, "A3");
	assert_string_equal(swapped->slot, "A4");

	assert_int_equal(again->rc, 0);
	assert_int_equal(again->reused, 1);
	assert_int_equal(again->row_id, first->row_id);
	assert_string_equal(again->cert->serial_hex, first->cert->serial_hex);
	assert_int_equal(again->cert->der_len, first->cert->der_len);
	assert_memory_equal(again->cert->der, first->cert->der, first->cert->der_len);
	assert_int_equal(again->t.sign_start, 0); /* nothing was signed */

	assert_int_equal(thief->rc, ST_E_POOL_KEY_REUSED);
	assert_int_equal(thief->refused, 1);
	/* The cause alone: the request's slot and device are for the caller to name. */
	assert_null(strstr(thief->err, "slot A3"));
	assert_null(strstr(thief->err, "dev-B"));
	assert_non_null(strstr(thief->err, "public key is already recorded for device dev-A"));

	assert_int_equal(swapped->rc, ST_E_POOL_ID_OTHER_KEY);
	assert_int_equal(swapped->refused, 1);
	assert_non_null(strstr(swapped->err, "refuses reprovisioning"));
	assert_non_null(strstr(swapped->err, first->cert->serial_hex));

	/* Both refusals are flagged for whoever looks into duplicates. */
	assert_int_equal(st_ledger_foreach_flag(fx->reader, count_flag, &flags, err, sizeof(err)),
			 0);
	assert_int_equal(flags, 2);

	/* Only the one signed was accepted. */
	assert_int_equal(run.nacc, 1);
	assert_ptr_equal(run.acc[0], first);

	st_pool_stats(fx->pool, &st);
	assert_int_equal(st.signed_, 1);
	assert_int_equal(st.reused, 1);
	assert_int_equal(st.refused, 2);
	assert_int_equal(st.failed, 0);
	free_kept(&run);
	EVP_PKEY_free(key);
	EVP_PKEY_free(other);
	close_pool(fx);
}

static int count_reissue_flag(const struct st_ledger_flag *flag, void *arg)
{
	unsigned *n = arg;

	if (strstr(flag->reason, "reissues only to authenticated requests"))
		(*n)++;
	return 0;
}

/* Under the reissue policy a device id recorded with one key gets a new certificate for
 * another key only when the request authenticated the id: anyone else naming the id (a
 * board claiming it, an HTTP client without credentials) would impersonate the device.
 * Unauthenticated requests are refused and flagged, with nothing signed, whatever key they
 * bring and whether the recorded row is a certificate or still an intent. */
static void test_reissue(void **state)
{
	struct fx *fx = *state;
	struct run run = { .fx = fx, .check_ledger = 1 };
	EVP_PKEY *key = EVP_EC_gen("prime256v1"), *k2, *k3;
	struct st_sign_req *req;
	struct st_pool_stats st;
	unsigned flags = 0;
	char err[512];

	fx->policy.reprovision = ST_REPROVISION_REISSUE;
	start_pool(fx, 1, 4, 0, 0);
	open_reader(fx);
	assert_int_equal(st_pool_submit(fx->pool, make_req(fx, &run, key, "dev-R", "R1")), 0);
	run_until(fx, &run.done, 1);
	assert_int_equal(run.keep[0]->rc, 0);

	/* Three requests naming dev-R with new keys, none of them authenticated: in one batch,
	 * and a device id the same batch also records with its first key (dev-S). */
	for (unsigned i = 0; i < 3; i++) {
		k2 = EVP_EC_gen("prime256v1");
		assert_int_equal(st_pool_submit(fx->pool, make_req(fx, &run, k2, "dev-R", "R2")), 0);
		EVP_PKEY_free(k2);
	}
	k2 = EVP_EC_gen("prime256v1");
	k3 = EVP_EC_gen("prime256v1");
	assert_int_equal(st_pool_submit(fx->pool, make_req(fx, &run, k2, "dev-S", "S1")), 0);
	assert_int_equal(st_pool_submit(fx->pool, make_req(fx, &run, k3, "dev-S", "S2")), 0);
	run_until(fx, &run.done, 6);
	for (unsigned i = 1; i < 6; i++) {
		req = run.keep[i];
		if (strcmp(req->slot, "S1") == 0) {
			assert_int_equal(req->rc, 0);
			continue;
		}
		assert_int_equal(req->rc, ST_E_POOL_REISSUE_UNAUTH);
		assert_int_equal(req->refused, 1);
		assert_null(req->cert);
		assert_int_equal(req->t.sign_start, 0);
		/* The cause only: the slot or the HTTP answer names the device once. */
		assert_non_null(strstr(req->err, "recorded with another key"));
		assert_null(strstr(req->err, "dev-"));
		assert_non_null(strstr(req->err, "authenticated"));
	}
	st_pool_stats(fx->pool, &st);
	assert_int_equal(st.signed_, 2);
	assert_int_equal(st.refused, 4);
	assert_int_equal(st_ledger_foreach_flag(fx->reader, count_reissue_flag, &flags, err,
						sizeof(err)),
			 0);
	assert_int_equal(flags, 4);

	/* Authenticated: a new certificate for the new key. */
	req = make_req(fx, &run, k3, "dev-R", "R3");
	req->id_authenticated = 1;
	assert_int_equal(st_pool_submit(fx->pool, req), 0);
	run_until(fx, &run.done, 7);
	if (run.keep[6]->rc != 0)
		fail_msg("reissue: %s", run.keep[6]->err);
	assert_int_equal(run.keep[6]->reused, 0);
	assert_true(run.keep[6]->row_id != run.keep[0]->row_id);
	assert_string_not_equal(run.keep[6]->cert->serial_hex, run.keep[0]->cert->serial_hex);
	free_kept(&run);
	EVP_PKEY_free(key);
	EVP_PKEY_free(k2);
	EVP_PKEY_free(k3);
	close_pool(fx);
}

/* A request authenticated by the device's client certificate alone (r->id_by_cert) names
 * that certificate; a reissue goes to it only while it is the device id's current one.
 * make_req() for key, dev-C, authenticated by cert (its DER hashed, its serial). */
static struct st_sign_req *cert_req(struct fx *fx, struct run *run, EVP_PKEY *key,
				    const char *slot, const struct st_cert *cert)
{
	struct st_sign_req *req = make_req(fx, run, key, "dev-C", slot);

	req->id_authenticated = 1;
	req->id_by_cert = 1;
	st_digest(ST_SHA256, cert->der, cert->der_len, req->id_cert_sha256);
	snprintf(req->id_cert_serial, sizeof(req->id_cert_serial), "%s", cert->serial_hex);
	return req;
}

/* The old certificate of a device that was reissued (C1 after C2) cannot take its id back:
 * refused and flagged, nothing signed, naming both serials; the current one (C2) can, and
 * is then replaced in turn. */
static void test_reissue_by_cert(void **state)
{
	struct fx *fx = *state;
	struct run run = { .fx = fx, .check_ledger = 1 };
	EVP_PKEY *k[5];
	struct st_sign_req *c1, *c2, *old, *c3, *old2;
	unsigned flags = 0;
	char err[512];

	for (unsigned i = 0; i < 5; i++)
		k[i] = EVP_EC_gen("prime256v1");
	fx->policy.reprovision = ST_REPROVISION_REISSUE;
	start_pool(fx, 1, 4, 0, 0);
	open_reader(fx);
	assert_int_equal(st_pool_submit(fx->pool, make_req(fx, &run, k[0], "dev-C", "C1")), 0);
	run_until(fx, &run.done, 1);
	c1 = run.keep[0];
	assert_int_equal(c1->rc, 0);

	/* The device with its current certificate C1 and a new key: C2. */
	assert_int_equal(st_pool_submit(fx->pool, cert_req(fx, &run, k[1], "C2", c1->cert)), 0);
	run_until(fx, &run.done, 2);
	c2 = run.keep[1];
	if (c2->rc != 0)
		fail_msg("reissue by the current certificate: %s", c2->err);

	/* C1 again, for a third key: no longer the device's. */
	assert_int_equal(st_pool_submit(fx->pool, cert_req(fx, &run, k[2], "old", c1->cert)), 0);
	run_until(fx, &run.done, 3);
	old = run.keep[2];
	assert_int_equal(old->rc, ST_E_POOL_REISSUE_UNAUTH);
	assert_int_equal(old->refused, 1);
	assert_null(old->cert);
	assert_int_equal(old->t.sign_start, 0);
	assert_non_null(strstr(old->err, "is not the device's current one"));
	assert_non_null(strstr(old->err, c1->cert->serial_hex));
	assert_non_null(strstr(old->err, c2->cert->serial_hex));
	assert_int_equal(st_ledger_foreach_flag(fx->reader, count_reissue_flag, &flags, err,
						sizeof(err)),
			 0);
	assert_int_equal(flags, 1);

	/* C2, current, gets C3; then C2 is old in turn. */
	assert_int_equal(st_pool_submit(fx->pool, cert_req(fx, &run, k[3], "C3", c2->cert)), 0);
	run_until(fx, &run.done, 4);
	c3 = run.keep[3];
	if (c3->rc != 0)
		fail_msg("reissue by the new current certificate: %s", c3->err);
	assert_int_equal(st_pool_submit(fx->pool, cert_req(fx, &run, k[4], "old2", c2->cert)), 0);
	run_until(fx, &run.done, 5);
	old2 = run.keep[4];
	assert_int_equal(old2->rc, ST_E_POOL_REISSUE_UNAUTH);
	assert_non_null(strstr(old2->err, c3->cert->serial_hex));
	/* A token-like authentication (not by certificate) is not asked which it holds. */
	old2 = make_req(fx, &run, k[4], "dev-C", "token");
	old2->id_authenticated = 1;
	assert_int_equal(st_pool_submit(fx->pool, old2), 0);
	run_until(fx, &run.done, 6);
	if (run.keep[5]->rc != 0)
		fail_msg("reissue with a token: %s", run.keep[5]->err);
	free_kept(&run);
	for (unsigned i = 0; i < 5; i++)
		EVP_PKEY_free(k[i]);
	close_pool(fx);
}

/* Group commit: 100 requests in batches of at most 16 cost at most 7 commits per step (fewer
 * when batches wait for the ledger together), not 100. */
static void test_batching(void **state)
{
	struct fx *fx = *state;
	struct run run = { .fx = fx };
	struct st_pool_stats st;

	start_pool(fx, 2, 16, 0, 0);
	submit_many(fx, &run, "batch", 100);
	run_until(fx, &run.done, 100);
	assert_int_equal(run.ok, 100);
	st_pool_stats(fx->pool, &st);
	assert_int_equal(st.batches, 7); /* 6 x 16 + 4 */
	assert_int_equal(st.batched, 100);
	assert_true(st.commits_intent >= 1 && st.commits_intent <= 7);
	assert_true(st.commits_record >= 1 && st.commits_record <= 7);
	assert_true(st.commits <= 14);
	assert_int_equal(st.commits_ops, 0);
	free_kept(&run);
	close_pool(fx);
}

/* A request the issuer refuses (the CA is expired at the moment of issue) fails with the
 * issuer's message, and its intent row is marked failed with that reason. */
static void test_issue_failure(void **state)
{
	struct fx *fx = *state;
	struct run run = { .fx = fx };
	EVP_PKEY *key = EVP_EC_gen("prime256v1");
	struct st_sign_req *req;
	struct st_ledger_row *row = NULL;
	struct st_pool_stats st;
	char err[512];

	start_pool(fx, 1, 4, 0, 0);
	open_reader(fx);
	req = make_req(fx, &run, key, "dev-late", "L1");
	req->now = time(NULL) + 20 * 365 * DAY;
	assert_int_equal(st_pool_submit(fx->pool, req), 0);
	run_until(fx, &run.done, 1);
	assert_int_equal(req->rc, ST_E_ISSUE_CA_EXPIRED);
	assert_null(strstr(req->err, "slot L1"));
	assert_null(strstr(req->err, "dev-late"));
	assert_true(req->row_id > 0);
	assert_int_equal(st_ledger_get(fx->reader, req->row_id, &row, err, sizeof(err)), 0);
	assert_int_equal(row->state, ST_LEDGER_FAILED);
	assert_null(row->cert_der);
	assert_non_null(row->reason);
	assert_non_null(strstr(row->reason, "CA"));
	assert_null(strstr(row->reason, "slot L1")); /* the row has a slot column */
	st_ledger_row_free(row);
	st_pool_stats(fx->pool, &st);
	assert_int_equal(st.failed, 1);
	assert_int_equal(st.signed_, 0);
	free_kept(&run);
	EVP_PKEY_free(key);
	close_pool(fx);
}

struct op_result {
	unsigned calls;
	int rc;
	uint64_t value;
	char err[256];
};

static void on_op(int rc, const char *err, uint64_t value, void *arg)
{
	struct op_result *r = arg;

	r->calls++;
	r->rc = rc;
	r->value = value;
	snprintf(r->err, sizeof(r->err), "%s", err ? err : "");
}

/* Delivered, failed and sequence numbers go through the ledger thread; consecutive row
 * updates share a commit. */
static void test_ops(void **state)
{
	struct fx *fx = *state;
	struct run run = { .fx = fx };
	struct op_result d = { 0 }, f = { 0 }, s1 = { 0 }, s2 = { 0 }, s3 = { 0 }, bad = { 0 };
	struct st_ledger_row *row = NULL;
	struct st_ledger_queue *lq;
	struct st_pool_stats st;
	char err[512];

	start_pool(fx, 1, 4, 0, 0);
	lq = st_pool_ledger(fx->pool);
	open_reader(fx);
	submit_many(fx, &run, "op", 2);
	run_until(fx, &run.done, 2);
	assert_int_equal(run.ok, 2);

	assert_int_equal(st_ledger_queue_mark_delivered(lq, run.keep[0]->row_id, on_op, &d), 0);
	assert_int_equal(st_ledger_queue_mark_failed(lq, run.keep[1]->row_id,
					     "board unplugged while writing", on_op, &f),
			 0);
	assert_int_equal(st_ledger_queue_next_sequence(lq, "ACME-", on_op, &s1), 0);
	assert_int_equal(st_ledger_queue_next_sequence(lq, "ACME-", on_op, &s2), 0);
	assert_int_equal(st_ledger_queue_next_sequence(lq, "OTHER-", on_op, &s3), 0);
	assert_int_equal(st_ledger_queue_mark_delivered(lq, 999999, on_op, &bad), 0);
	assert_int_equal(st_ledger_queue_mark_delivered(lq, 0, on_op, &bad), ST_E_INVAL);
	assert_int_equal(st_ledger_queue_next_sequence(lq, "ACME-", NULL, NULL), ST_E_INVAL);
	run_until(fx, &bad.calls, 1);
	assert_int_equal(d.calls + f.calls + s1.calls + s2.calls + s3.calls, 5);
	assert_int_equal(d.rc, 0);
	assert_int_equal(f.rc, 0);
	assert_int_equal(s1.rc, 0);
	assert_int_equal(s2.value, s1.value + 1);
	assert_int_equal(s3.value, 1);
	assert_true(bad.rc < 0);
	assert_true(bad.err[0] != 0);

	assert_int_equal(st_ledger_get(fx->reader, run.keep[0]->row_id, &row, err, sizeof(err)),
			 0);
	assert_int_equal(row->state, ST_LEDGER_DELIVERED);
	st_ledger_row_free(row);
	assert_int_equal(st_ledger_get(fx->reader, run.keep[1]->row_id, &row, err, sizeof(err)),
			 0);
	assert_int_equal(row->state, ST_LEDGER_FAILED);
	assert_string_equal(row->reason, "board unplugged while writing");
	assert_non_null(row->cert_der); /* the certificate stays on record */
	st_ledger_row_free(row);
	st_pool_stats(fx->pool, &st);
	/* Operations waiting together share a commit. */
	assert_true(st.commits_ops >= 1 && st.commits_ops <= 6);
	assert_int_equal(s1.value, 1);
	free_kept(&run);
	close_pool(fx);
}

/* Backpressure: queue_max requests at most; then ST_E_POOL_FULL until one completes. Bad
 * requests are refused and stay the caller's. */
static void test_full_and_invalid(void **state)
{
	struct fx *fx = *state;
	struct run run = { .fx = fx };
	EVP_PKEY *key = EVP_EC_gen("prime256v1");
	struct st_sign_req *extra, *bad;

	start_pool(fx, 1, 16, 50, 4);
	submit_many(fx, &run, "full", 4);
	assert_int_equal(st_pool_can_submit(fx->pool), 0);
	extra = make_req(fx, &run, key, "full-extra", "X");
	assert_int_equal(st_pool_submit(fx->pool, extra), ST_E_POOL_FULL);
	run_until(fx, &run.done, 1);
	assert_int_equal(st_pool_can_submit(fx->pool), 1);
	assert_int_equal(st_pool_submit(fx->pool, extra), 0);

	bad = st_sign_req_new();
	bad->policy = &fx->policy;
	bad->done = on_done;
	snprintf(bad->device_id, sizeof(bad->device_id), "no-csr");
	run_until(fx, &run.done, 5);
	assert_int_equal(st_pool_submit(fx->pool, bad), ST_E_INVAL);
	assert_non_null(strstr(bad->err, "CSR"));
	st_sign_req_free(bad);
	assert_int_equal(run.ok, 5);
	free_kept(&run);
	EVP_PKEY_free(key);
	close_pool(fx);
}

/* Requests the pool refused for want of room, submitted from the room callback, oldest
 * first, as the slots do. */
struct room {
	struct fx *fx;
	struct st_sign_req *wait[8];
	unsigned nwait, calls;
};

static void on_room(void *arg)
{
	struct room *r = arg;

	r->calls++;
	while (r->nwait && st_pool_submit(r->fx->pool, r->wait[0]) == 0) {
		memmove(r->wait, r->wait + 1, --r->nwait * sizeof(r->wait[0]));
	}
}

/* The room callback: a pool with room for one request, and five more refused with
 * ST_E_POOL_FULL; each gets in from the callback once the one before it completed, so
 * every request is signed, the callback called as room appears. */
static void test_room_callback(void **state)
{
	struct fx *fx = *state;
	struct run run = { .fx = fx };
	struct room room = { .fx = fx };
	EVP_PKEY *key;
	char id[32];

	start_pool(fx, 1, 16, 0, 1);
	st_pool_set_room_cb(fx->pool, on_room, &room);
	submit_many(fx, &run, "room-first", 1);
	for (unsigned i = 0; i < 5; i++) {
		snprintf(id, sizeof(id), "room-wait-%u", i);
		key = EVP_EC_gen("prime256v1");
		room.wait[room.nwait] = make_req(fx, &run, key, id, "W");
		EVP_PKEY_free(key);
		assert_int_equal(st_pool_submit(fx->pool, room.wait[room.nwait]), ST_E_POOL_FULL);
		room.nwait++;
	}
	run_until(fx, &run.done, 6);
	assert_int_equal(room.nwait, 0);
	assert_true(room.calls >= 5);
	assert_int_equal(run.ok, 6);
	free_kept(&run);
	close_pool(fx);
}

static void on_stat(uv_fs_t *req)
{
	struct run *run = req->data;

	run->fs_done = 1;
	run->fs_done_first = run->done == 0;
	uv_fs_req_cleanup(req);
}

/* The loop stays free while the workers sign: a uv_fs_stat issued with a big batch in flight
 * (libuv's threadpool would have it wait behind signing) completes before the batch does. */
static void test_loop_free(void **state)
{
	struct fx *fx = *state;
	struct run run = { .fx = fx };
	uv_fs_t stat_req;

	start_pool(fx, 2, 400, 0, 0);
	submit_many(fx, &run, "big", 400);
	stat_req.data = &run;
	assert_int_equal(uv_fs_stat(&fx->loop, &stat_req, fx->ledger, on_stat), 0);
	run_until(fx, &run.done, 400);
	assert_int_equal(run.fs_done, 1);
	assert_int_equal(run.fs_done_first, 1);
	assert_int_equal(run.ok, 400);
	free_kept(&run);
	close_pool(fx);
}

/* Cancelling: a request not yet sealed is dropped at once; one on its way is carried to the
 * end and recorded, but its done() never runs. */
static void test_cancel(void **state)
{
	struct fx *fx = *state;
	struct run run = { .fx = fx };
	EVP_PKEY *k1 = EVP_EC_gen("prime256v1"), *k2 = EVP_EC_gen("prime256v1");
	EVP_PKEY *k3 = EVP_EC_gen("prime256v1");
	struct st_sign_req *open_req, *sealed_req, *last;
	struct st_ledger_row *row = NULL;
	struct st_pool_stats st;
	char err[512];
	uint8_t hash[32];
	int verdict;

	start_pool(fx, 1, 2, 1000, 0);
	open_reader(fx);
	open_req = make_req(fx, &run, k1, "cancel-open", "C1");
	assert_int_equal(st_pool_submit(fx->pool, open_req), 0);
	st_pool_cancel(fx->pool, open_req, NULL); /* freed now; ASan would see a later touch */

	sealed_req = make_req(fx, &run, k2, "cancel-sealed", "C2");
	memcpy(hash, sealed_req->csr->spki_sha256, sizeof(hash));
	last = make_req(fx, &run, k3, "cancel-last", "C3");
	assert_int_equal(st_pool_submit(fx->pool, sealed_req), 0);
	assert_int_equal(st_pool_submit(fx->pool, last), 0); /* batch of 2: sealed */
	st_pool_cancel(fx->pool, sealed_req, NULL);
	run_until(fx, &run.done, 1);
	assert_ptr_equal(run.keep[0], last);
	assert_int_equal(last->rc, 0);
	/* Both were in one batch: the cancelled one was recorded with it. */
	verdict = st_ledger_lookup(fx->reader, "cancel-sealed", hash, &row, err, sizeof(err));
	assert_int_equal(verdict, ST_LEDGER_RECORDED);
	assert_non_null(row->cert_der);
	st_ledger_row_free(row);
	st_pool_stats(fx->pool, &st);
	assert_int_equal(st.cancelled, 2);
	assert_int_equal(st.in_pool, 0);
	assert_int_equal(run.done, 1);
	free_kept(&run);
	EVP_PKEY_free(k1);
	EVP_PKEY_free(k2);
	EVP_PKEY_free(k3);
	close_pool(fx);
}

static int count_row(const struct st_ledger_row *row, void *arg)
{
	unsigned *n = arg;

	n[row->state]++;
	return 0;
}

/* ---- CSRs checked by the pool ------------------------------------------------------- */

/* CSRs handed over as received are checked on the workers before the ledger sees them: in
 * one batch the good ones (DER and PEM) are signed and recorded, and each kind of bad one
 * (a broken self-signature, another CN, another OU, an RSA key, a cut DER, bytes that are
 * no CSR) completes with its own code and the check's message and leaves no row; a batch of
 * bad ones only costs the ledger nothing. */
static void test_check_stage(void **state)
{
	static const struct {
		const char *what;
		int rc;
	} bad[] = {
		{ "self-signature", ST_E_CSR_SIGNATURE }, { "cn", ST_E_CSR_CN_MISMATCH },
		{ "ou", ST_E_CSR_OU_MISMATCH },		  { "rsa", ST_E_CSR_KEY_TYPE },
		{ "cut", ST_E_CSR_DER },		  { "text", ST_E_CSR_FORMAT },
	};
	struct fx *fx = *state;
	struct run run = { .fx = fx, .check_ledger = 1 };
	EVP_PKEY *key = EVP_EC_gen("prime256v1"), *key2 = EVP_EC_gen("prime256v1");
	EVP_PKEY *rsa = EVP_RSA_gen(1024);
	unsigned rows[4] = { 0 }, nbad = sizeof(bad) / sizeof(bad[0]);
	struct st_pool_stats st0, st1;
	struct st_sign_req *reqs[16];
	uint8_t *der;
	char *pem, id[64], err[512];
	size_t n, pn;

	assert_non_null(key);
	assert_non_null(key2);
	assert_non_null(rsa);
	start_pool(fx, 2, 16, 0, 0);
	open_reader(fx);
	for (int round = 0; round < 2; round++) {
		unsigned k = 0, first = run.done;

		/* The first round mixes good and bad; the second has bad ones only. */
		if (round == 0) {
			der = tu_csr_der(key, "good-der", FACTORY, 0, &n);
			reqs[k++] = make_raw_req(fx, &run, der, n, "good-der", "G1");
			free(der);
			der = tu_csr_der(key2, "good-pem", FACTORY, 0, &n);
			pem = csr_pem(der, n, &pn);
			reqs[k++] = make_raw_req(fx, &run, pem, pn, "good-pem", "G2");
			free(pem);
			free(der);
		}
		st_pool_stats(fx->pool, &st0);
		for (unsigned i = 0; i < nbad; i++) {
			snprintf(id, sizeof(id), "bad-%d-%s", round, bad[i].what);
			der = tu_csr_der(strcmp(bad[i].what, "rsa") == 0 ? rsa : key,
					 strcmp(bad[i].what, "cn") == 0 ? "someone-else" : id,
					 strcmp(bad[i].what, "ou") == 0 ? "other-factory" : FACTORY, 0,
					 &n);
			assert_non_null(der);
			if (strcmp(bad[i].what, "self-signature") == 0)
				der[n - 1] ^= 1;
			if (strcmp(bad[i].what, "cut") == 0)
				n -= 10;
			if (strcmp(bad[i].what, "text") == 0)
				reqs[k++] = make_raw_req(fx, &run, "hello", 5, id, "B");
			else
				reqs[k++] = make_raw_req(fx, &run, der, n, id, "B");
			free(der);
		}
		for (unsigned i = 0; i < k; i++)
			assert_int_equal(st_pool_submit(fx->pool, reqs[i]), 0);
		run_until(fx, &run.done, first + k);
		for (unsigned i = round == 0 ? 2 : 0, b = 0; i < k; i++, b++) {
			char want[512];
			struct st_csr *csr = NULL;

			if (reqs[i]->rc != bad[b].rc)
				fail_msg("%s: %s, expected %s: %s", bad[b].what,
					 st_errname(reqs[i]->rc), st_errname(bad[b].rc), reqs[i]->err);
			assert_int_equal(reqs[i]->csr_rejected, 1);
			assert_int_equal(reqs[i]->row_id, 0);
			assert_null(reqs[i]->csr);
			/* The message is the check's own, word for word. */
			assert_int_equal(st_csr_check(&fx->policy, fx->ca->ou, reqs[i]->csr_raw,
						      reqs[i]->csr_raw_len, reqs[i]->device_id,
						      &csr, want, sizeof(want)),
					 bad[b].rc);
			assert_string_equal(reqs[i]->err, want);
		}
		if (round == 0) {
			if (reqs[0]->rc != 0 || reqs[1]->rc != 0)
				fail_msg("good CSRs: %s / %s", reqs[0]->err, reqs[1]->err);
			assert_int_equal(reqs[0]->csr_rejected, 0);
			assert_non_null(reqs[0]->csr);
			assert_null(reqs[0]->csr_raw);
		} else {
			/* Bad ones only: checked and answered without a commit. */
			st_pool_stats(fx->pool, &st1);
			assert_int_equal(st1.commits, st0.commits);
			assert_int_equal(st1.batches, st0.batches + 1);
			assert_int_equal(st1.checked, st0.checked + nbad);
		}
	}
	assert_int_equal(run.ok, 2);
	assert_int_equal(run.failed, 2 * nbad);
	assert_int_equal(st_ledger_foreach(fx->reader, count_row, rows, err, sizeof(err)), 0);
	assert_int_equal(rows[ST_LEDGER_SIGNED], 2);
	assert_int_equal(rows[ST_LEDGER_INTENT] + rows[ST_LEDGER_FAILED] + rows[ST_LEDGER_DELIVERED],
			 0);
	free_kept(&run);
	EVP_PKEY_free(key);
	EVP_PKEY_free(key2);
	EVP_PKEY_free(rsa);
	close_pool(fx);
}

/* Closing while CSRs wait for or are in their check: every request completes, those not
 * through their check with ST_E_POOL_CLOSED; nothing is left as an intent, and the close
 * does not hang on a check that ends after it. */
static void test_close_while_checking(void **state)
{
	struct fx *fx = *state;
	struct run run = { .fx = fx };
	unsigned rows[4] = { 0 };
	EVP_PKEY *key;
	uint8_t *der;
	char id[64], err[512];
	size_t n;

	start_pool(fx, 2, 64, 0, 0);
	for (unsigned i = 0; i < 64; i++) {
		snprintf(id, sizeof(id), "closing-%02u", i);
		key = EVP_EC_gen("prime256v1");
		der = tu_csr_der(key, id, FACTORY, 0, &n);
		assert_non_null(der);
		assert_int_equal(st_pool_submit(fx->pool, make_raw_req(fx, &run, der, n, id, "C")),
				 0);
		free(der);
		EVP_PKEY_free(key);
	}
	/* 64 requests: sealed at once, and the workers start checking. */
	close_pool(fx);
	assert_int_equal(run.done, 64);
	for (unsigned i = 0; i < run.nkeep; i++) {
		if (run.keep[i]->rc != 0)
			assert_int_equal(run.keep[i]->rc, ST_E_POOL_CLOSED);
	}
	open_reader(fx);
	assert_int_equal(st_ledger_foreach(fx->reader, count_row, rows, err, sizeof(err)), 0);
	assert_int_equal(rows[ST_LEDGER_INTENT], 0);
	free_kept(&run);
}

/* ---- Marks ride with other commits --------------------------------------------------- */

static void assert_row_state(struct fx *fx, int64_t id, int want)
{
	struct st_ledger_row *row = NULL;
	char err[512];

	assert_int_equal(st_ledger_get(fx->reader, id, &row, err, sizeof(err)), 0);
	assert_int_equal(row->state, want);
	st_ledger_row_free(row);
}

/* A pool of one worker and a second connection; n boards signed (prefix-<i>), the first
 * `delivered` of them then marked delivered without a callback, *before the counters as they
 * were just before the marks. Returns the ledger queue. */
static struct st_ledger_queue *marked_rows(struct fx *fx, struct run *run, const char *prefix,
					   unsigned n, unsigned delivered,
					   struct st_pool_stats *before)
{
	struct st_ledger_queue *lq;

	start_pool(fx, 1, 16, 0, 0);
	lq = st_pool_ledger(fx->pool);
	open_reader(fx);
	submit_many(fx, run, prefix, n);
	run_until(fx, &run->done, n);
	assert_int_equal(run->ok, n);
	st_pool_stats(fx->pool, before);
	for (unsigned i = 0; i < delivered; i++)
		assert_int_equal(st_ledger_queue_mark_delivered(lq, run->keep[i]->row_id, NULL, NULL),
				 0);
	return lq;
}

static int count_attempt(const struct st_ledger_attempt *a, void *arg)
{
	(void)a;
	(*(unsigned *)arg)++;
	return 0;
}

/* Marks and attempts nobody waits for cost no commit of their own. With a delay of a minute,
 * a burst of them queued while the ledger has nothing else to do waits for the next request
 * and shares its first commit: 8 marks, an attempt and a request, 2 commits; the pool
 * commits what still waits when it closes. */
static void test_marks_ride(void **state)
{
	struct fx *fx = *state;
	struct run run = { .fx = fx };
	struct st_ledger_queue *lq;
	struct st_pool_stats st0, st1;
	unsigned i;

	fx->mark_delay_ms = 60000;
	lq = marked_rows(fx, &run, "mark", 9, 7, &st0);
	assert_int_equal(st_ledger_queue_mark_failed(lq, run.keep[7]->row_id, "board unplugged",
						     NULL, NULL),
			 0);
	{
		struct st_ledger_attempt a = { .slot = "S0", .outcome = "pass",
					       .device_id = "mark-0000" };

		assert_int_equal(st_pool_record_attempt(fx->pool, &a), 0);
	}
	submit_many(fx, &run, "after", 1);
	run_until(fx, &run.done, 10);
	st_pool_stats(fx->pool, &st1);
	/* The request's intent and record; the marks rode with the first. */
	assert_int_equal(st1.commits - st0.commits, 2);
	assert_int_equal(st1.commits_marks - st0.commits_marks, 1);
	for (i = 0; i < 8; i++)
		assert_row_state(fx, run.keep[i]->row_id,
				 i == 7 ? ST_LEDGER_FAILED : ST_LEDGER_DELIVERED);
	{
		unsigned attempts = 0;
		char err[512];

		assert_int_equal(st_ledger_foreach_attempt(fx->reader, 0, 0, count_attempt,
							   &attempts, err, sizeof(err)),
				 0);
		assert_int_equal(attempts, 1);
	}
	/* Nothing else comes, and the minute is far: the close commits it. */
	assert_int_equal(st_ledger_queue_mark_delivered(lq, run.keep[8]->row_id, NULL, NULL), 0);
	assert_row_state(fx, run.keep[8]->row_id, ST_LEDGER_SIGNED);
	close_pool(fx);
	assert_row_state(fx, run.keep[8]->row_id, ST_LEDGER_DELIVERED);
	free_kept(&run);
}

/* With no request coming, marks do not wait for one for good: after the delay (the default
 * one) they are committed together on their own, while the pool stays open. The loop runs
 * until the pool lets it end, which it does only once the marks are committed. */
static void test_marks_alone(void **state)
{
	struct fx *fx = *state;
	struct run run = { .fx = fx };
	struct st_pool_stats st0, st1;
	unsigned i;

	marked_rows(fx, &run, "alone", 4, 4, &st0);
	assert_int_equal(uv_run(&fx->loop, UV_RUN_DEFAULT), 0);
	st_pool_stats(fx->pool, &st1);
	assert_true(st1.commits - st0.commits >= 1);
	assert_int_equal(st1.commits - st0.commits, st1.commits_marks - st0.commits_marks);
	assert_int_equal(st1.commits_intent + st1.commits_record,
			 st0.commits_intent + st0.commits_record);
	for (i = 0; i < 4; i++)
		assert_row_state(fx, run.keep[i]->row_id, ST_LEDGER_DELIVERED);
	free_kept(&run);
	close_pool(fx);
}

/* ---- No linger on an idle pool --------------------------------------------------------- */

/* A lone request on an idle pool is sealed on the loop's next iteration, not after the
 * linger (a minute here): one turn of the loop that does not wait seals it. */
static void test_idle_no_linger(void **state)
{
	struct fx *fx = *state;
	struct run run = { .fx = fx };
	struct st_pool_stats st;

	start_pool(fx, 1, 8, 60000, 0);
	for (int i = 0; i < 2; i++) {
		submit_many(fx, &run, i ? "idle-again" : "idle", 1);
		uv_run(&fx->loop, UV_RUN_NOWAIT);
		st_pool_stats(fx->pool, &st);
		assert_int_equal(st.batches, (uint64_t)i + 1);
		run_until(fx, &run.done, (unsigned)i + 1);
	}
	assert_int_equal(run.ok, 2);
	free_kept(&run);
	close_pool(fx);
}

static void shutdown_on_first(struct run *run, struct st_sign_req *req)
{
	(void)req;
	if (run->done == 1)
		st_pool_close(run->fx->pool, on_closed, run->fx);
}

/* Shutting down with batches in flight: every request completes once (signed and recorded,
 * or ST_E_POOL_CLOSED), no intent is left behind, and nothing leaks (ASan). */
static void test_shutdown_in_flight(void **state)
{
	struct fx *fx = *state;
	struct run run = { .fx = fx, .check_ledger = 1, .on_done = shutdown_on_first };
	unsigned rows[4] = { 0 }, i, closed = 0;
	char err[512];

	start_pool(fx, 2, 8, 0, 0);
	open_reader(fx);
	submit_many(fx, &run, "shut", 300);
	run_until(fx, (const unsigned *)&fx->closed, 1);
	assert_null(fx->pool);
	assert_int_equal(uv_run(&fx->loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(run.done, 300);
	for (i = 0; i < run.nkeep; i++) {
		if (run.keep[i]->rc == ST_E_POOL_CLOSED)
			closed++;
		else
			assert_int_equal(run.keep[i]->rc, 0);
	}
	assert_int_equal(run.ok + closed, 300);
	assert_true(run.ok >= 1);
	assert_int_equal(st_ledger_foreach(fx->reader, count_row, rows, err, sizeof(err)), 0);
	assert_int_equal(rows[ST_LEDGER_INTENT], 0);
	assert_int_equal(rows[ST_LEDGER_SIGNED], run.ok);
	free_kept(&run);
}

/* ---- HSM outage (SoftHSM2) --------------------------------------------------------- */

/* The HSM goes away: the module loses its state and the token directory is moved aside, so
 * reinitialising finds nothing until token_back(). */
static void token_away(struct fx *fx)
{
	char away[4300];

	snprintf(away, sizeof(away), "%s.away", fx->hsm.tokens);
	drv_pkcs11_test_finalize(fx->signer);
	assert_int_equal(rename(fx->hsm.tokens, away), 0);
}

static void token_back(struct fx *fx)
{
	char away[4300];

	snprintf(away, sizeof(away), "%s.away", fx->hsm.tokens);
	assert_int_equal(rename(away, fx->hsm.tokens), 0);
}

/* A pool of 2 workers and batches of 8 whose status goes to cb, and a second connection. */
static void start_watched(struct fx *fx, st_pool_status_cb cb, void *arg)
{
	start_pool(fx, 2, 8, 0, 0);
	open_reader(fx);
	st_pool_set_status_cb(fx->pool, cb, arg);
}

static void on_status(struct st_pool *pool, int paused, const char *reason, void *arg)
{
	struct run *run = arg;
	struct st_pool_stats st;

	st_pool_stats(pool, &st);
	assert_int_equal(st.paused, paused);
	run->paused = paused;
	if (paused) {
		run->paused_events++;
		assert_true(reason[0] != 0);
		assert_string_equal(st.pause_reason, reason);
		assert_true(st.paused_since > 0);
		/* No board failed for the outage, and none completed. */
		assert_int_equal(st.failed, 0);
		/* The token comes back. */
		token_back(run->fx);
	} else {
		run->resumed_events++;
	}
}

static void pull_token_on_first(struct run *run, struct st_sign_req *req)
{
	(void)req;
	if (run->done != 1)
		return;
	/* The HSM goes away, and more boards arrive. */
	token_away(run->fx);
	submit_many(run->fx, run, "outage", 40);
}

static void test_hsm_outage(void **state)
{
	struct fx *fx = *state;
	struct run run = { .fx = fx, .check_ledger = 1, .on_done = pull_token_on_first };
	struct st_pool_stats st;

	start_watched(fx, on_status, &run);
	submit_many(fx, &run, "before", 1);
	run_until(fx, &run.resumed_events, 1);
	run_until(fx, &run.done, 41);
	assert_int_equal(run.paused_events, 1);
	assert_int_equal(run.done_while_paused, 0);
	assert_int_equal(run.ok, 41);
	st_pool_stats(fx->pool, &st);
	assert_int_equal(st.failed, 0);
	assert_int_equal(st.signed_, 41);
	assert_int_equal(st.pauses, 1);
	assert_int_equal(st.paused, 0);
	/* The reason says what the HSM answered. */
	assert_non_null(strstr(st.pause_reason, "HSM"));
	assert_non_null(strstr(st.pause_reason, "PKCS#11"));
	free_kept(&run);
	close_pool(fx);
}

static void count_pauses(struct st_pool *pool, int paused, const char *reason, void *arg)
{
	struct run *run = arg;

	(void)pool;
	(void)reason;
	run->paused = paused;
	if (paused)
		run->paused_events++;
	else
		run->resumed_events++;
}

/* A request waits the linger only behind a batch that waits for its intents, not behind one
 * that is being signed: with signing paused (the HSM went away) after the first request's
 * intent, and a linger of a minute, a second request is sealed on the loop's next turn;
 * both are signed once the HSM is back. */
static void test_seal_behind_signing(void **state)
{
	struct fx *fx = *state;
	struct run run = { .fx = fx, .check_ledger = 1 };
	struct st_pool_stats st;

	start_pool(fx, 1, 8, 60000, 0);
	open_reader(fx);
	st_pool_set_status_cb(fx->pool, count_pauses, &run);
	token_away(fx);
	submit_many(fx, &run, "first", 1);
	run_until(fx, &run.paused_events, 1);
	submit_many(fx, &run, "second", 1);
	uv_run(&fx->loop, UV_RUN_NOWAIT);
	st_pool_stats(fx->pool, &st);
	assert_int_equal(st.batches, 2);
	assert_int_equal(run.done, 0);
	token_back(fx);
	run_until(fx, &run.done, 2);
	assert_int_equal(run.ok, 2);
	free_kept(&run);
	close_pool(fx);
}

static void token_back_timer(uv_timer_t *t)
{
	token_back(t->data);
}

/* A CSR's check needs no HSM: while signing is paused for the HSM, a bad CSR still gets its
 * answer at once, and the request waiting for the HSM is signed once it is back. (Should the
 * check wait for the HSM, a timer brings the token back after half a minute and the bad CSR
 * completes after the pause, which the test catches.) */
static void test_check_during_outage(void **state)
{
	struct fx *fx = *state;
	struct run run = { .fx = fx, .check_ledger = 1 };
	EVP_PKEY *key = EVP_EC_gen("prime256v1");
	struct st_sign_req *bad;
	uv_timer_t fallback;
	uint8_t *der;
	size_t n;

	start_pool(fx, 1, 8, 0, 0);
	open_reader(fx);
	st_pool_set_status_cb(fx->pool, count_pauses, &run);
	token_away(fx);
	submit_many(fx, &run, "waits", 1);
	run_until(fx, &run.paused_events, 1);
	der = tu_csr_der(key, "someone-else", FACTORY, 0, &n);
	assert_non_null(der);
	bad = make_raw_req(fx, &run, der, n, "outage-bad", "B");
	free(der);
	assert_int_equal(st_pool_submit(fx->pool, bad), 0);
	uv_timer_init(&fx->loop, &fallback);
	fallback.data = fx;
	uv_timer_start(&fallback, token_back_timer, 30000, 0);
	run_until(fx, &run.done, 1);
	assert_ptr_equal(run.keep[0], bad);
	assert_int_equal(bad->rc, ST_E_CSR_CN_MISMATCH);
	assert_int_equal(run.done_while_paused, 1);
	if (uv_timer_get_due_in(&fallback) > 0) {
		uv_timer_stop(&fallback);
		token_back(fx);
	}
	uv_close((uv_handle_t *)&fallback, NULL);
	run_until(fx, &run.done, 2);
	assert_int_equal(run.ok, 1);
	free_kept(&run);
	EVP_PKEY_free(key);
	close_pool(fx);
}

/* Shutting down while the HSM is away: nothing hangs, the waiting requests complete with
 * ST_E_POOL_CLOSED and their intents are marked failed. */
static void close_when_paused(struct st_pool *pool, int paused, const char *reason, void *arg)
{
	struct run *run = arg;

	(void)reason;
	if (paused) {
		run->paused_events++;
		st_pool_close(pool, on_closed, run->fx);
	}
}

static void test_hsm_outage_shutdown(void **state)
{
	struct fx *fx = *state;
	struct run run = { .fx = fx };
	unsigned rows[4] = { 0 };
	char err[512];

	start_watched(fx, close_when_paused, &run);
	token_away(fx);
	submit_many(fx, &run, "down", 20);
	run_until(fx, (const unsigned *)&fx->closed, 1);
	assert_int_equal(uv_run(&fx->loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(run.paused_events, 1);
	assert_int_equal(run.done, 20);
	assert_int_equal(run.failed, 20);
	assert_int_equal(run.keep[0]->rc, ST_E_POOL_CLOSED);
	assert_int_equal(st_ledger_foreach(fx->reader, count_row, rows, err, sizeof(err)), 0);
	assert_int_equal(rows[ST_LEDGER_INTENT], 0);
	assert_int_equal(rows[ST_LEDGER_SIGNED], 0);
	/* Batches that had their intents when signing paused; the others never started. */
	assert_true(rows[ST_LEDGER_FAILED] >= 8 && rows[ST_LEDGER_FAILED] <= 20);
	free_kept(&run);
	token_back(fx);
}

/* ---- Ledger storage outage (a real full file system) -------------------------------- */

/* The ledger on a small tmpfs of the test's own, fx->dir/fs. Returns 0, or -1 when this
 * process may not mount one (not root): the test is skipped then. */
static int ledger_on_small_fs(struct fx *fx)
{
	snprintf(fx->mnt, sizeof(fx->mnt), "%s/fs", fx->dir);
	assert_int_equal(mkdir(fx->mnt, 0700), 0);
	if (mount("tmpfs", fx->mnt, "tmpfs", MS_NOSUID | MS_NODEV, "size=2m,mode=0700") != 0) {
		fx->mnt[0] = 0;
		return -1;
	}
	snprintf(fx->ledger, sizeof(fx->ledger), "%s/ledger.db", fx->mnt);
	return 0;
}

/* Fills the ledger's file system with a filler file until not one page more fits. */
static void fill_fs(struct fx *fx)
{
	static const char zero[4096];
	char path[4300];
	int fd;

	snprintf(path, sizeof(path), "%s/filler", fx->mnt);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	while (write(fd, zero, sizeof(zero)) > 0)
		;
	assert_int_equal(errno, ENOSPC);
	close(fd);
}

static void unfill_fs(struct fx *fx)
{
	char path[4300];

	snprintf(path, sizeof(path), "%s/filler", fx->mnt);
	assert_int_equal(unlink(path), 0);
}

struct ledger_outage {
	struct run run; /* first: the requests' data */
	int filled, unfilled;
	char reason[256]; /* the reason while the ledger held signing up */
};

/* The HSM goes away while requests are between their intent and their record; while it is
 * away the ledger's disk fills up; the HSM comes back, the certificates are signed, and their
 * record does not fit; then the disk gets room again. */
static void on_status_disk(struct st_pool *pool, int paused, const char *reason, void *arg)
{
	struct ledger_outage *o = arg;
	struct fx *fx = o->run.fx;
	struct st_pool_stats st;

	st_pool_stats(pool, &st);
	/* Nothing fails for the outages; nothing completes while they last. */
	assert_int_equal(st.failed, 0);
	assert_int_equal(o->run.done, 0);
	if (!paused) {
		o->run.resumed_events++;
		return;
	}
	o->run.paused_events++;
	assert_string_equal(st.pause_reason, reason);
	if (!o->filled) {
		assert_non_null(strstr(reason, "HSM"));
		fill_fs(fx);
		o->filled = 1;
		token_back(fx);
	} else if (!o->unfilled && strstr(reason, "ledger read or write failed")) {
		snprintf(o->reason, sizeof(o->reason), "%s", reason);
		unfill_fs(fx);
		o->unfilled = 1;
	}
}

static void test_ledger_disk_full(void **state)
{
	struct fx *fx = *state;
	struct ledger_outage o = { .run = { .fx = fx, .check_ledger = 1 } };
	struct st_pool_stats st;
	unsigned rows[4] = { 0 };
	char err[512];

	if (ledger_on_small_fs(fx) != 0)
		skip();
	start_watched(fx, on_status_disk, &o);
	token_away(fx);
	submit_many(fx, &o.run, "disk", 40);
	run_until(fx, &o.run.done, 40);
	assert_int_equal(o.unfilled, 1);
	/* Every certificate completed only once its record was committed (check_recorded). */
	assert_int_equal(o.run.ok, 40);
	assert_int_equal(o.run.failed, 0);
	assert_non_null(strstr(o.reason, "ledger.db"));
	assert_non_null(strstr(o.reason, "full"));
	st_pool_stats(fx->pool, &st);
	assert_int_equal(st.paused, 0);
	assert_int_equal(st.failed, 0);
	assert_int_equal(st.signed_, 40);
	assert_int_equal(st_ledger_foreach(fx->reader, count_row, rows, err, sizeof(err)), 0);
	assert_int_equal(rows[ST_LEDGER_SIGNED], 40);
	assert_int_equal(rows[ST_LEDGER_INTENT] + rows[ST_LEDGER_FAILED], 0);
	free_kept(&o.run);
	close_pool(fx);
}

/* Behind a batch that waits for its intents (the ledger's disk is full), requests gather:
 * with a linger of a minute, three requests that come meanwhile stay open, and once the
 * first batch's intents are committed they are sealed together, as one batch. */
static void test_gather_behind_intents(void **state)
{
	struct fx *fx = *state;
	struct run run = { .fx = fx, .check_ledger = 1 };
	struct st_pool_stats st;

	if (ledger_on_small_fs(fx) != 0)
		skip();
	start_pool(fx, 1, 8, 60000, 0);
	open_reader(fx);
	st_pool_set_status_cb(fx->pool, count_pauses, &run);
	fill_fs(fx);
	submit_many(fx, &run, "front", 1);
	run_until(fx, &run.paused_events, 1);
	submit_many(fx, &run, "behind", 3);
	uv_run(&fx->loop, UV_RUN_NOWAIT);
	st_pool_stats(fx->pool, &st);
	assert_int_equal(st.batches, 1);
	unfill_fs(fx);
	run_until(fx, &run.done, 4);
	assert_int_equal(run.ok, 4);
	st_pool_stats(fx->pool, &st);
	assert_int_equal(st.batches, 2);
	assert_int_equal(st.batched, 4);
	free_kept(&run);
	close_pool(fx);
}

/* Shutting down while the disk is full: nothing hangs; what waited fails, and no
 * certificate is given out without its record. */
static void close_when_full(struct st_pool *pool, int paused, const char *reason, void *arg)
{
	struct run *run = arg;

	if (paused && strstr(reason, "ledger read or write failed")) {
		run->paused_events++;
		st_pool_close(pool, on_closed, run->fx);
	}
}

static void test_ledger_disk_full_shutdown(void **state)
{
	struct fx *fx = *state;
	struct run run = { .fx = fx };

	if (ledger_on_small_fs(fx) != 0)
		skip();
	start_watched(fx, close_when_full, &run);
	fill_fs(fx);
	submit_many(fx, &run, "full", 20);
	run_until(fx, (const unsigned *)&fx->closed, 1);
	assert_int_equal(uv_run(&fx->loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(run.paused_events, 1);
	assert_int_equal(run.done, 20);
	assert_int_equal(run.failed, 20);
	free_kept(&run);
	unfill_fs(fx);
}

/* ---- Start-up errors --------------------------------------------------------------- */

static void test_start_errors(void **state)
{
	struct fx *fx = *state;
	struct st_pool_config cfg;
	struct st_pool *pool = (struct st_pool *)1;
	struct drv_signer *wrong = NULL;
	char path[4300], err[512] = "";
	EVP_PKEY *key;
	int rc;

	st_pool_config_default(&cfg);
	cfg.workers = 2;
	snprintf(path, sizeof(path), "%s/no/such/dir/ledger.db", fx->dir);
	cfg.ledger_path = path;
	rc = st_pool_new(&fx->loop, &cfg, fx->ca, fx->signer, &pool, err, sizeof(err));
	assert_true(rc < 0);
	assert_null(pool);
	assert_non_null(strstr(err, path));

	/* A signer whose key is not the CA's: every worker refuses to start. */
	key = EVP_EC_gen("prime256v1");
	snprintf(path, sizeof(path), "%s/wrong.key", fx->dir);
	assert_int_equal(tu_file_signer(path, key, &wrong, err, sizeof(err)), 0);
	EVP_PKEY_free(key);
	cfg.ledger_path = fx->ledger;
	rc = st_pool_new(&fx->loop, &cfg, fx->ca, wrong, &pool, err, sizeof(err));
	assert_int_equal(rc, ST_E_ISSUE_CA_KEY_MISMATCH);
	assert_null(pool);
	assert_non_null(strstr(err, "signing worker"));
	drv_signer_close(wrong);
	assert_int_equal(uv_run(&fx->loop, UV_RUN_DEFAULT), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_many, setup_file, teardown),
		cmocka_unit_test_setup_teardown(test_uuid_serials, setup_file, teardown),
		cmocka_unit_test_setup_teardown(test_recorded_and_refused, setup_file, teardown),
		cmocka_unit_test_setup_teardown(test_reissue, setup_file, teardown),
		cmocka_unit_test_setup_teardown(test_reissue_by_cert, setup_file, teardown),
		cmocka_unit_test_setup_teardown(test_batching, setup_file, teardown),
		cmocka_unit_test_setup_teardown(test_issue_failure, setup_file, teardown),
		cmocka_unit_test_setup_teardown(test_ops, setup_file, teardown),
		cmocka_unit_test_setup_teardown(test_full_and_invalid, setup_file, teardown),
		cmocka_unit_test_setup_teardown(test_room_callback, setup_file, teardown),
		cmocka_unit_test_setup_teardown(test_loop_free, setup_file, teardown),
		cmocka_unit_test_setup_teardown(test_cancel, setup_file, teardown),
		cmocka_unit_test_setup_teardown(test_shutdown_in_flight, setup_file, teardown),
		cmocka_unit_test_setup_teardown(test_start_errors, setup_file, teardown),
		cmocka_unit_test_setup_teardown(test_check_stage, setup_file, teardown),
		cmocka_unit_test_setup_teardown(test_close_while_checking, setup_file, teardown),
		cmocka_unit_test_setup_teardown(test_marks_ride, setup_file, teardown),
		cmocka_unit_test_setup_teardown(test_marks_alone, setup_file, teardown),
		cmocka_unit_test_setup_teardown(test_idle_no_linger, setup_file, teardown),
		cmocka_unit_test_setup_teardown(test_seal_behind_signing, setup_softhsm, teardown),
		cmocka_unit_test_setup_teardown(test_check_during_outage, setup_softhsm, teardown),
		cmocka_unit_test_setup_teardown(test_gather_behind_intents, setup_file, teardown),
		cmocka_unit_test_setup_teardown(test_hsm_outage, setup_softhsm, teardown),
		cmocka_unit_test_setup_teardown(test_hsm_outage_shutdown, setup_softhsm, teardown),
		cmocka_unit_test_setup_teardown(test_ledger_disk_full, setup_softhsm, teardown),
		cmocka_unit_test_setup_teardown(test_ledger_disk_full_shutdown, setup_file,
						teardown),
	};

	st_log_set_level(ST_LOG_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
