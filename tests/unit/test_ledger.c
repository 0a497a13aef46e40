/* The ledger on a real SQLite file in a temp dir: row life cycle, unique constraints, every
 * lookup verdict, sequences across reopen, group commit, kill -9 at chosen points of a
 * writing child, foreign and damaged files, and the `station ledger` command's exports.
 *
 * Run under tests/lib/pg.sh (STATION_TEST_PG set), the cases that hold for every backend run
 * on a fresh PostgreSQL database each instead (the file-only ones are left out; the ones
 * only PostgreSQL has are in test_ledger_pg.c).
 *
 * Run with arguments it is a helper for tests/integration/test_ledger_cli.sh, which builds
 * ledgers over certificates made with the openssl CLI:
 *   test_ledger fill LEDGER STATE SLOT CERT.pem...  one row per certificate
 *   test_ledger intent LEDGER DEVICE_ID SERIAL       an intent without certificate
 *   test_ledger flag LEDGER DEVICE_ID REASON         a flagged refusal */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <sqlite3.h>

#include "commands.h"
#include "err.h"
#include "ledger.h"
#include "testutil.h"

static char dir[4096];
static char path[4200];
static char errbuf[1024];

static int setup(void **state)
{
	const char *d = tu_tmpdir("ledger");

	(void)state;
	if (!d)
		return -1;
	snprintf(dir, sizeof(dir), "%s", d);
	return 0;
}

static int teardown(void **state)
{
	char cmd[4300];

	(void)state;
	/* test_unwritable's file system, when it failed before unmounting it. */
	snprintf(cmd, sizeof(cmd), "%s/ro", dir);
	umount2(cmd, MNT_DETACH);
	return tu_rmtree(dir);
}

/* A fresh ledger per test: a file name, or a new PostgreSQL database. */
static const char *fresh(const char *name)
{
	if (tu_pg_conn()) {
		if (tu_pg_fresh(path, sizeof(path), errbuf, sizeof(errbuf)) != 0)
			fail_msg("database for %s: %s", name, errbuf);
		return path;
	}
	snprintf(path, sizeof(path), "%s/%s.db", dir, name);
	unlink(path);
	return path;
}

static struct st_ledger *open_ok(const char *p)
{
	struct st_ledger *l = NULL;
	int rc = st_ledger_open(p, "st-test", &l, errbuf, sizeof(errbuf));

	if (rc != 0)
		fail_msg("open %s: %s", p, errbuf);
	assert_non_null(l);
	return l;
}

static void key_of(const char *seed, uint8_t out[32])
{
	SHA256((const unsigned char *)seed, strlen(seed), out);
}

/* An intent row with borrowed strings; the key hash derives from key_seed. */
static struct st_ledger_row intent(const char *serial, const char *device, const char *key_seed,
				   const char *slot)
{
	struct st_ledger_row r = { 0 };

	r.serial = (char *)serial;
	r.device_id = (char *)device;
	r.profile = (char *)"acme-gw";
	r.slot = (char *)slot;
	key_of(key_seed, r.pubkey_sha256);
	SHA256((const unsigned char *)serial, strlen(serial), r.csr_sha256);
	return r;
}

static int64_t add_ok(struct st_ledger *l, const char *serial, const char *device,
		      const char *key_seed)
{
	struct st_ledger_row r = intent(serial, device, key_seed, "A1");
	int64_t id = 0;
	int rc = st_ledger_add_intent(l, &r, &id, errbuf, sizeof(errbuf));

	if (rc != 0)
		fail_msg("add_intent %s: %s", serial, errbuf);
	assert_true(id > 0);
	return id;
}

static const uint8_t fake_cert[] = { 0x30, 0x82, 0x01, 0x00, 0xde, 0xad, 0xbe, 0xef };

static void sign_ok(struct st_ledger *l, int64_t id)
{
	int rc = st_ledger_set_cert(l, id, fake_cert, sizeof(fake_cert), 1000, 2000, errbuf,
				    sizeof(errbuf));

	if (rc != 0)
		fail_msg("set_cert %lld: %s", (long long)id, errbuf);
}

static void test_lifecycle(void **state)
{
	struct st_ledger *l = open_ok(fresh("life"));
	struct st_ledger_row *r = NULL;
	time_t before = time(NULL);
	int64_t a, b;

	(void)state;
	a = add_ok(l, "0a01", "dev-a", "key-a");
	assert_int_equal(st_ledger_get(l, a, &r, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(r->state, ST_LEDGER_INTENT);
	assert_string_equal(r->serial, "0a01");
	assert_string_equal(r->device_id, "dev-a");
	assert_string_equal(r->profile, "acme-gw");
	assert_string_equal(r->station, "st-test");
	assert_string_equal(r->slot, "A1");
	assert_null(r->cert_der);
	assert_true(r->created >= before && r->created <= time(NULL));
	assert_int_equal(r->signed_at, 0);
	st_ledger_row_free(r);

	sign_ok(l, a);
	assert_int_equal(st_ledger_get_serial(l, "0a01", &r, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(r->id, a);
	assert_int_equal(r->state, ST_LEDGER_SIGNED);
	assert_int_equal(r->cert_len, sizeof(fake_cert));
	assert_memory_equal(r->cert_der, fake_cert, sizeof(fake_cert));
	assert_int_equal(r->not_before, 1000);
	assert_int_equal(r->not_after, 2000);
	assert_true(r->signed_at >= before);
	st_ledger_row_free(r);

	assert_int_equal(st_ledger_mark_delivered(l, a, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(st_ledger_get(l, a, &r, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(r->state, ST_LEDGER_DELIVERED);
	assert_true(r->delivered_at >= before);
	st_ledger_row_free(r);
	/* Delivered is final: a late failure report does not undo it. */
	assert_int_equal(st_ledger_mark_failed(l, a, "late", errbuf, sizeof(errbuf)),
			 ST_E_LEDGER_STATE);
	assert_non_null(strstr(errbuf, "delivered"));
	assert_int_equal(st_ledger_mark_delivered(l, a, errbuf, sizeof(errbuf)), 0);

	/* An intent that failed before signing: no certificate may follow, none delivered. */
	b = add_ok(l, "0b02", "dev-b", "key-b");
	assert_int_equal(st_ledger_mark_delivered(l, b, errbuf, sizeof(errbuf)),
			 ST_E_LEDGER_STATE);
	assert_int_equal(st_ledger_mark_failed(l, b, "HSM unavailable", errbuf, sizeof(errbuf)),
			 0);
	assert_int_equal(st_ledger_set_cert(l, b, fake_cert, sizeof(fake_cert), 1, 2, errbuf,
					    sizeof(errbuf)),
			 ST_E_LEDGER_STATE);
	assert_non_null(strstr(errbuf, "HSM unavailable"));
	assert_int_equal(st_ledger_get(l, b, &r, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(r->state, ST_LEDGER_FAILED);
	assert_string_equal(r->reason, "HSM unavailable");
	st_ledger_row_free(r);

	/* Failed after signing keeps the certificate and may still be delivered later. */
	b = add_ok(l, "0c03", "dev-c", "key-c");
	sign_ok(l, b);
	assert_int_equal(st_ledger_mark_failed(l, b, "board left", errbuf, sizeof(errbuf)), 0);
	assert_int_equal(st_ledger_get(l, b, &r, errbuf, sizeof(errbuf)), 0);
	assert_non_null(r->cert_der);
	st_ledger_row_free(r);
	assert_int_equal(st_ledger_mark_delivered(l, b, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(st_ledger_get(l, b, &r, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(r->state, ST_LEDGER_DELIVERED);
	assert_null(r->reason);
	st_ledger_row_free(r);

	assert_int_equal(st_ledger_get(l, 9999, &r, errbuf, sizeof(errbuf)), ST_E_NOTFOUND);
	assert_null(r);
	assert_int_equal(st_ledger_get_serial(l, "ffff", &r, errbuf, sizeof(errbuf)),
			 ST_E_NOTFOUND);
	assert_int_equal(st_ledger_set_cert(l, 9999, fake_cert, sizeof(fake_cert), 1, 2, errbuf,
					    sizeof(errbuf)),
			 ST_E_NOTFOUND);
	assert_int_equal(st_ledger_mark_delivered(l, 9999, errbuf, sizeof(errbuf)),
			 ST_E_NOTFOUND);

	/* Names round-trip. */
	assert_int_equal(st_ledger_state_parse("delivered"), ST_LEDGER_DELIVERED);
	assert_string_equal(st_ledger_state_name(ST_LEDGER_INTENT), "intent");
	assert_int_equal(st_ledger_state_parse("gone"), ST_E_INVAL);
	st_ledger_close(l);
}

static void test_unique(void **state)
{
	struct st_ledger *l = open_ok(fresh("unique"));
	struct st_ledger_row r;
	int64_t id = 0, a;

	(void)state;
	a = add_ok(l, "01", "dev-1", "key-1");
	sign_ok(l, a);

	r = intent("01", "dev-2", "key-2", "A2");
	assert_int_equal(st_ledger_add_intent(l, &r, &id, errbuf, sizeof(errbuf)),
			 ST_E_LEDGER_DUP_SERIAL);
	assert_int_equal(id, 0);
	assert_non_null(strstr(errbuf, "serial 01"));
	assert_non_null(strstr(errbuf, "dev-1"));

	r = intent("02", "dev-2", "key-1", "A2");
	assert_int_equal(st_ledger_add_intent(l, &r, &id, errbuf, sizeof(errbuf)),
			 ST_E_LEDGER_DUP_KEY);
	assert_non_null(strstr(errbuf, "dev-1"));

	/* Two boards claiming one device id at once, with different keys. */
	add_ok(l, "03", "dev-3", "key-3a");
	r = intent("04", "dev-3", "key-3b", "A4");
	assert_int_equal(st_ledger_add_intent(l, &r, &id, errbuf, sizeof(errbuf)),
			 ST_E_LEDGER_DUP_ID);
	assert_non_null(strstr(errbuf, "dev-3"));

	/* Bad input. */
	r = intent("0A", "dev-5", "key-5", "A5");
	assert_int_equal(st_ledger_add_intent(l, &r, &id, errbuf, sizeof(errbuf)), ST_E_INVAL);
	r = intent("", "dev-5", "key-5", "A5");
	assert_int_equal(st_ledger_add_intent(l, &r, &id, errbuf, sizeof(errbuf)), ST_E_INVAL);
	r = intent("05", "", "key-5", "A5");
	assert_int_equal(st_ledger_add_intent(l, &r, &id, errbuf, sizeof(errbuf)), ST_E_INVAL);

	/* A refused row inside a batch leaves the rest of the batch intact. */
	assert_int_equal(st_ledger_begin(l, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(st_ledger_begin(l, errbuf, sizeof(errbuf)), ST_E_INVAL);
	add_ok(l, "10", "dev-10", "key-10");
	r = intent("10", "dev-11", "key-11", "A6");
	assert_int_equal(st_ledger_add_intent(l, &r, &id, errbuf, sizeof(errbuf)),
			 ST_E_LEDGER_DUP_SERIAL);
	add_ok(l, "11", "dev-11", "key-11");
	assert_int_equal(st_ledger_commit(l, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(st_ledger_commit(l, errbuf, sizeof(errbuf)), ST_E_INVAL);
	assert_int_equal(st_ledger_rollback(l), 0);

	/* A rolled back batch leaves nothing. */
	assert_int_equal(st_ledger_begin(l, errbuf, sizeof(errbuf)), 0);
	add_ok(l, "20", "dev-20", "key-20");
	assert_int_equal(st_ledger_rollback(l), 0);
	add_ok(l, "20", "dev-20", "key-20");

	st_ledger_close(l);

	/* The schema enforces it too, whatever writes the file. */
	if (tu_pg_conn()) {
		assert_int_not_equal(tu_pg_exec(path,
						"INSERT INTO station_ledger.certificates (serial, "
						"device_id, station, csr_sha256, pubkey_sha256, state, "
						"created) SELECT serial, 'x', 's', csr_sha256, "
						"sha256(pubkey_sha256), 'intent', 0 FROM "
						"station_ledger.certificates WHERE serial = '01'",
						errbuf, sizeof(errbuf)),
				     0);
		assert_non_null(strstr(errbuf, "certificates_serial"));
	} else {
		sqlite3 *db;
		char *msg = NULL;

		assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
		assert_int_not_equal(sqlite3_exec(db,
						  "INSERT INTO certificates (serial, device_id, "
						  "station, csr_sha256, pubkey_sha256, state, created)"
						  " SELECT serial, 'x', 's', csr_sha256, randomblob(32),"
						  " 'intent', 0 FROM certificates WHERE serial = '01'",
						  NULL, NULL, &msg),
				     SQLITE_OK);
		sqlite3_free(msg);
		assert_int_equal(sqlite3_exec(db, "SELECT count(*) FROM certificates", NULL, NULL,
					      NULL),
				 SQLITE_OK);
		sqlite3_close(db);
	}
	l = open_ok(path);
	st_ledger_close(l);
}

static void test_lookup(void **state)
{
	struct st_ledger *l = open_ok(fresh("lookup"));
	struct st_ledger_row *row = NULL, r;
	uint8_t k[32];
	int64_t a, b, c, id = 0;
	int v;

	(void)state;
	key_of("k-new", k);
	assert_int_equal(st_ledger_lookup(l, "dev-new", k, &row, errbuf, sizeof(errbuf)),
			 ST_LEDGER_NEW);
	assert_null(row);

	/* Recorded and delivered: the same board comes back and gets the same certificate. */
	a = add_ok(l, "a1", "dev-a", "k-a");
	sign_ok(l, a);
	assert_int_equal(st_ledger_mark_delivered(l, a, errbuf, sizeof(errbuf)), 0);
	key_of("k-a", k);
	v = st_ledger_lookup(l, "dev-a", k, &row, errbuf, sizeof(errbuf));
	assert_int_equal(v, ST_LEDGER_RECORDED);
	assert_non_null(row);
	assert_int_equal(row->id, a);
	assert_memory_equal(row->cert_der, fake_cert, sizeof(fake_cert));
	st_ledger_row_free(row);
	/* row may be NULL when the caller only wants the verdict. */
	assert_int_equal(st_ledger_lookup(l, "dev-a", k, NULL, errbuf, sizeof(errbuf)),
			 ST_LEDGER_RECORDED);

	/* The same key claimed by another device id. */
	v = st_ledger_lookup(l, "dev-other", k, &row, errbuf, sizeof(errbuf));
	assert_int_equal(v, ST_LEDGER_KEY_REUSED);
	assert_int_equal(row->id, a);
	st_ledger_row_free(row);

	/* The device id comes back with another key. */
	key_of("k-a2", k);
	v = st_ledger_lookup(l, "dev-a", k, &row, errbuf, sizeof(errbuf));
	assert_int_equal(v, ST_LEDGER_ID_OTHER_KEY);
	assert_int_equal(row->id, a);
	assert_int_equal(row->state, ST_LEDGER_DELIVERED);
	st_ledger_row_free(row);
	assert_int_equal(st_ledger_flag(l, "dev-a", k, "B3", "device id recorded with another key",
					errbuf, sizeof(errbuf)),
			 0);
	/* Under a reissue policy the caller issues anyway: allowed. */
	add_ok(l, "a2", "dev-a", "k-a2");

	/* A crash between signing and recording: the intent is possibly signed; issuing
	 * anew supersedes it, also when the new serial is the same (UUID serials). */
	b = add_ok(l, "b1", "dev-b", "k-b");
	st_ledger_close(l);
	l = open_ok(path);
	key_of("k-b", k);
	v = st_ledger_lookup(l, "dev-b", k, &row, errbuf, sizeof(errbuf));
	assert_int_equal(v, ST_LEDGER_POSSIBLY_SIGNED);
	assert_null(row);
	c = add_ok(l, "b1", "dev-b", "k-b");
	assert_true(c > b);
	assert_int_equal(st_ledger_get(l, b, &row, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(row->state, ST_LEDGER_FAILED);
	assert_string_equal(row->reason, "superseded");
	st_ledger_row_free(row);
	assert_int_equal(st_ledger_get_serial(l, "b1", &row, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(row->id, c);
	st_ledger_row_free(row);
	/* The superseded intent can never get a certificate. */
	assert_int_equal(st_ledger_set_cert(l, b, fake_cert, sizeof(fake_cert), 1, 2, errbuf,
					    sizeof(errbuf)),
			 ST_E_LEDGER_STATE);
	assert_int_equal(st_ledger_supersede(l, b, errbuf, sizeof(errbuf)), ST_E_LEDGER_STATE);
	sign_ok(l, c);
	assert_int_equal(st_ledger_lookup(l, "dev-b", k, NULL, errbuf, sizeof(errbuf)),
			 ST_LEDGER_RECORDED);

	/* Failed after signing still counts as recorded: the board gets that certificate. */
	a = add_ok(l, "c1", "dev-c", "k-c");
	sign_ok(l, a);
	assert_int_equal(st_ledger_mark_failed(l, a, "write timeout", errbuf, sizeof(errbuf)), 0);
	key_of("k-c", k);
	v = st_ledger_lookup(l, "dev-c", k, &row, errbuf, sizeof(errbuf));
	assert_int_equal(v, ST_LEDGER_RECORDED);
	assert_int_equal(row->state, ST_LEDGER_FAILED);
	st_ledger_row_free(row);

	/* Failed before signing is forgotten: the board may start again. */
	a = add_ok(l, "d1", "dev-d", "k-d");
	assert_int_equal(st_ledger_mark_failed(l, a, "CSR timeout", errbuf, sizeof(errbuf)), 0);
	key_of("k-d", k);
	assert_int_equal(st_ledger_lookup(l, "dev-d", k, NULL, errbuf, sizeof(errbuf)),
			 ST_LEDGER_NEW);
	add_ok(l, "d1", "dev-d", "k-d");

	/* An open intent of another key for this device id: in flight elsewhere or left by a
	 * crash; a new intent is refused until it is superseded. */
	a = add_ok(l, "e1", "dev-e", "k-e1");
	key_of("k-e2", k);
	v = st_ledger_lookup(l, "dev-e", k, &row, errbuf, sizeof(errbuf));
	assert_int_equal(v, ST_LEDGER_ID_OTHER_KEY);
	assert_int_equal(row->state, ST_LEDGER_INTENT);
	st_ledger_row_free(row);
	r = intent("e2", "dev-e", "k-e2", "C1");
	assert_int_equal(st_ledger_add_intent(l, &r, &id, errbuf, sizeof(errbuf)),
			 ST_E_LEDGER_DUP_ID);
	assert_int_equal(st_ledger_supersede(l, a, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(st_ledger_add_intent(l, &r, &id, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(st_ledger_supersede(l, 9999, errbuf, sizeof(errbuf)), ST_E_NOTFOUND);

	/* An intent's key claimed by another device id while it is in flight. */
	key_of("k-e2", k);
	assert_int_equal(st_ledger_lookup(l, "dev-f", k, NULL, errbuf, sizeof(errbuf)),
			 ST_LEDGER_KEY_REUSED);

	/* ID_OTHER_KEY names the strongest row: delivered before a newer failed one. */
	a = add_ok(l, "f1", "dev-g", "k-g1");
	sign_ok(l, a);
	assert_int_equal(st_ledger_mark_delivered(l, a, errbuf, sizeof(errbuf)), 0);
	b = add_ok(l, "f2", "dev-g", "k-g2");
	sign_ok(l, b);
	assert_int_equal(st_ledger_mark_failed(l, b, "x", errbuf, sizeof(errbuf)), 0);
	key_of("k-g3", k);
	assert_int_equal(st_ledger_lookup(l, "dev-g", k, &row, errbuf, sizeof(errbuf)),
			 ST_LEDGER_ID_OTHER_KEY);
	assert_int_equal(row->id, a);
	st_ledger_row_free(row);

	/* Of rows equally strong, the newest; a signed row before any failed one, older or
	 * newer. */
	a = add_ok(l, "0a1", "dev-h", "k-h1");
	sign_ok(l, a);
	assert_int_equal(st_ledger_mark_failed(l, a, "x", errbuf, sizeof(errbuf)), 0);
	b = add_ok(l, "0a2", "dev-h", "k-h2");
	sign_ok(l, b);
	assert_int_equal(st_ledger_mark_failed(l, b, "y", errbuf, sizeof(errbuf)), 0);
	key_of("k-h3", k);
	assert_int_equal(st_ledger_lookup(l, "dev-h", k, &row, errbuf, sizeof(errbuf)),
			 ST_LEDGER_ID_OTHER_KEY);
	assert_int_equal(row->id, b);
	st_ledger_row_free(row);
	a = add_ok(l, "0a3", "dev-h", "k-h3");
	sign_ok(l, a);
	key_of("k-h4", k);
	assert_int_equal(st_ledger_lookup(l, "dev-h", k, &row, errbuf, sizeof(errbuf)),
			 ST_LEDGER_ID_OTHER_KEY);
	assert_int_equal(row->id, a);
	assert_int_equal(row->state, ST_LEDGER_SIGNED);
	st_ledger_row_free(row);
	/* A failed row newer than the signed one does not outrank it. */
	b = add_ok(l, "0a4", "dev-h", "k-h4");
	sign_ok(l, b);
	assert_int_equal(st_ledger_mark_failed(l, b, "z", errbuf, sizeof(errbuf)), 0);
	key_of("k-h5", k);
	assert_int_equal(st_ledger_lookup(l, "dev-h", k, &row, errbuf, sizeof(errbuf)),
			 ST_LEDGER_ID_OTHER_KEY);
	assert_int_equal(row->id, a);
	st_ledger_row_free(row);

	/* The newest live row, whatever its state (the certificate given last), where the
	 * lookup names the strongest; a superseded intent is not live. */
	assert_int_equal(st_ledger_newest(l, "dev-h", &row, errbuf, sizeof(errbuf)), 0);
	assert_non_null(row);
	assert_int_equal(row->id, b);
	assert_non_null(row->cert_der);
	st_ledger_row_free(row);
	a = add_ok(l, "0a5", "dev-h", "k-h5");
	assert_int_equal(st_ledger_newest(l, "dev-h", &row, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(row->id, a);
	assert_int_equal(row->state, ST_LEDGER_INTENT);
	st_ledger_row_free(row);
	assert_int_equal(st_ledger_supersede(l, a, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(st_ledger_newest(l, "dev-h", &row, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(row->id, b);
	st_ledger_row_free(row);
	row = (struct st_ledger_row *)1;
	assert_int_equal(st_ledger_newest(l, "dev-none", &row, errbuf, sizeof(errbuf)), 0);
	assert_null(row);
	st_ledger_close(l);
}

static void test_sequences(void **state)
{
	struct st_ledger *l = open_ok(fresh("seq"));
	uint64_t n = 0, prev = 0;
	int i;

	(void)state;
	for (i = 0; i < 5; i++) {
		assert_int_equal(st_ledger_next_sequence(l, "GW-", &n, errbuf, sizeof(errbuf)), 0);
		assert_int_equal(n, prev + 1);
		prev = n;
	}
	assert_int_equal(st_ledger_next_sequence(l, "SENSOR-", &n, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(n, 1);
	st_ledger_close(l);

	l = open_ok(path);
	assert_int_equal(st_ledger_next_sequence(l, "GW-", &n, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(n, 6);
	/* Inside a transaction the number is committed with it. */
	assert_int_equal(st_ledger_begin(l, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(st_ledger_next_sequence(l, "GW-", &n, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(n, 7);
	/* The next number, read in the same transaction (a board's own id is checked so). */
	assert_int_equal(st_ledger_sequence_next(l, "GW-", &n, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(n, 8);
	assert_int_equal(st_ledger_commit(l, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(st_ledger_sequence_next(l, "SENSOR-", &n, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(n, 2);
	assert_int_equal(st_ledger_sequence_next(l, "GW", &n, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(n, 1);
	assert_int_equal(st_ledger_sequence_next(l, "NONE-", &n, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(n, 1);
	st_ledger_close(l);

	l = open_ok(path);
	assert_int_equal(st_ledger_next_sequence(l, "GW-", &n, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(n, 8);
	assert_int_equal(st_ledger_next_sequence(l, "SENSOR-", &n, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(n, 2);
	assert_int_equal(st_ledger_next_sequence(l, "", &n, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(n, 1);
	st_ledger_close(l);
}

static void count_commits(enum st_ledger_hook_point point, void *arg)
{
	if (point == ST_LEDGER_HOOK_COMMIT_DONE)
		(*(int *)arg)++;
}

static int count_row(const struct st_ledger_row *r, void *arg)
{
	(void)r;
	(*(int *)arg)++;
	return 0;
}

static void test_group_commit(void **state)
{
	struct st_ledger *l = open_ok(fresh("group"));
	int64_t ids[500];
	char serial[16], device[32], key[32];
	int commits = 0, rows = 0, i;

	(void)state;
	st_ledger_set_hook(l, count_commits, &commits);
	assert_int_equal(st_ledger_begin(l, errbuf, sizeof(errbuf)), 0);
	for (i = 0; i < 500; i++) {
		snprintf(serial, sizeof(serial), "%04x", i + 1);
		snprintf(device, sizeof(device), "dev-%d", i);
		snprintf(key, sizeof(key), "key-%d", i);
		ids[i] = add_ok(l, serial, device, key);
	}
	assert_int_equal(commits, 0);
	assert_int_equal(st_ledger_commit(l, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(commits, 1);

	assert_int_equal(st_ledger_begin(l, errbuf, sizeof(errbuf)), 0);
	for (i = 0; i < 500; i++)
		sign_ok(l, ids[i]);
	assert_int_equal(st_ledger_commit(l, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(commits, 2);

	/* Outside a transaction each write commits on its own. */
	assert_int_equal(st_ledger_mark_delivered(l, ids[0], errbuf, sizeof(errbuf)), 0);
	assert_int_equal(commits, 3);
	st_ledger_set_hook(l, NULL, NULL);
	st_ledger_close(l);

	l = open_ok(path);
	assert_int_equal(st_ledger_foreach(l, count_row, &rows, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(rows, 500);
	assert_int_equal(st_ledger_integrity(l, errbuf, sizeof(errbuf)), 0);
	st_ledger_close(l);
}

/* Two handles on one file, as the station and `station ledger` are: the reader sees only
 * committed rows and is never blocked; a second writer waits, then fails with BUSY. */
static void test_two_handles(void **state)
{
	struct st_ledger *w = open_ok(fresh("two")), *r = open_ok(path), *w2 = open_ok(path);
	struct st_ledger_row *row = NULL;
	int rows = 0;

	(void)state;
	add_ok(w, "01", "dev-1", "k1");
	assert_int_equal(st_ledger_begin(w, errbuf, sizeof(errbuf)), 0);
	add_ok(w, "02", "dev-2", "k2");
	assert_int_equal(st_ledger_foreach(r, count_row, &rows, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(rows, 1);
	assert_int_equal(st_ledger_get_serial(r, "02", &row, errbuf, sizeof(errbuf)),
			 ST_E_NOTFOUND);

	st_ledger_set_busy_timeout(w2, 0);
	assert_int_equal(st_ledger_begin(w2, errbuf, sizeof(errbuf)), ST_E_LEDGER_BUSY);
	assert_non_null(strstr(errbuf, path));
	assert_int_equal(st_ledger_commit(w, errbuf, sizeof(errbuf)), 0);

	rows = 0;
	assert_int_equal(st_ledger_foreach(r, count_row, &rows, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(rows, 2);
	assert_int_equal(st_ledger_begin(w2, errbuf, sizeof(errbuf)), 0);
	add_ok(w2, "03", "dev-3", "k3");
	assert_int_equal(st_ledger_commit(w2, errbuf, sizeof(errbuf)), 0);
	st_ledger_close(w2);
	st_ledger_close(r);
	/* Closing with a transaction open rolls it back. */
	assert_int_equal(st_ledger_begin(w, errbuf, sizeof(errbuf)), 0);
	add_ok(w, "04", "dev-4", "k4");
	st_ledger_close(w);
	w = open_ok(path);
	rows = 0;
	assert_int_equal(st_ledger_foreach(w, count_row, &rows, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(rows, 3);
	st_ledger_close(w);
}

/* ---- crash test ---- */

#define CRASH_ROWS 100
#define CRASH_MAX_BATCHES 4096
#define CRASH_CERT_LEN 700

enum crash_mode {
	KILL_AFTER_COMMITS, /* the parent kills as soon as it read the Nth commit report */
	KILL_MID_BATCH,     /* rows written, not committed; the child waits to be killed */
	KILL_COMMIT_START,  /* the child kills itself as the commit begins */
	KILL_COMMIT_DONE,   /* the child kills itself after the commit, before it returns */
};

struct report {
	int kind; /* 'C' committed, 'M' mid-batch */
	int batch;
};

static volatile sig_atomic_t crash_armed;
static enum st_ledger_hook_point crash_point;

static void crash_hook(enum st_ledger_hook_point point, void *arg)
{
	(void)arg;
	if (crash_armed && point == crash_point)
		raise(SIGKILL);
}

static void crash_serial(char *buf, size_t len, int batch, int r)
{
	snprintf(buf, len, "%06x%04x", batch, r);
}

static void crash_child(const char *p, int fd, int start, enum crash_mode mode, int kill_batch)
{
	struct st_ledger *l = NULL;
	uint8_t cert[CRASH_CERT_LEN];
	char serial[32], device[32], slot[32], err[512];
	struct report rep;
	uint64_t seq;
	int b, r;

	if (st_ledger_open(p, "crash", &l, err, sizeof(err)) != 0)
		_exit(2);
	if (mode == KILL_COMMIT_START || mode == KILL_COMMIT_DONE) {
		crash_point = mode == KILL_COMMIT_START ? ST_LEDGER_HOOK_COMMIT_START :
							  ST_LEDGER_HOOK_COMMIT_DONE;
		st_ledger_set_hook(l, crash_hook, NULL);
	}
	for (b = start; b < CRASH_MAX_BATCHES; b++) {
		if (st_ledger_begin(l, err, sizeof(err)) != 0)
			_exit(3);
		for (r = 0; r < CRASH_ROWS; r++) {
			struct st_ledger_row row = { 0 };
			int64_t id;

			if (st_ledger_next_sequence(l, "crash-", &seq, err, sizeof(err)) != 0)
				_exit(4);
			crash_serial(serial, sizeof(serial), b, r);
			snprintf(device, sizeof(device), "crash-%llu", (unsigned long long)seq);
			snprintf(slot, sizeof(slot), "b%d", b);
			row.serial = serial;
			row.device_id = device;
			row.slot = slot;
			key_of(serial, row.pubkey_sha256);
			if (st_ledger_add_intent(l, &row, &id, err, sizeof(err)) != 0)
				_exit(5);
			/* Half the rows signed: certificates make the commit span many pages. */
			if (r % 2 == 0) {
				memset(cert, b & 0xff, sizeof(cert));
				if (st_ledger_set_cert(l, id, cert, sizeof(cert), b, r, err,
						       sizeof(err)) != 0)
					_exit(6);
			}
		}
		if (mode == KILL_MID_BATCH && b == kill_batch) {
			rep.kind = 'M';
			rep.batch = b;
			if (write(fd, &rep, sizeof(rep)) != sizeof(rep))
				_exit(7);
			for (;;)
				pause();
		}
		if (b == kill_batch)
			crash_armed = 1;
		if (st_ledger_commit(l, err, sizeof(err)) != 0)
			_exit(8);
		rep.kind = 'C';
		rep.batch = b;
		if (write(fd, &rep, sizeof(rep)) != sizeof(rep))
			_exit(9);
	}
	_exit(10);
}

struct crash_count {
	int rows[CRASH_MAX_BATCHES];
	uint64_t max_seq;
	int bad;
};

static int crash_row(const struct st_ledger_row *r, void *arg)
{
	struct crash_count *c = arg;
	int b = -1, n;
	unsigned long long seq;

	if (sscanf(r->slot ? r->slot : "", "b%d", &b) != 1 || b < 0 || b >= CRASH_MAX_BATCHES) {
		c->bad++;
		return 0;
	}
	c->rows[b]++;
	if (sscanf(r->device_id, "crash-%llu", &seq) == 1 && seq > c->max_seq)
		c->max_seq = seq;
	n = (int)strtol(r->serial + 6, NULL, 16);
	if (n % 2 == 0) {
		if (r->state != ST_LEDGER_SIGNED || r->cert_len != CRASH_CERT_LEN ||
		    r->cert_der[CRASH_CERT_LEN - 1] != (b & 0xff) || r->not_after != n)
			c->bad++;
	} else if (r->state != ST_LEDGER_INTENT || r->cert_der) {
		c->bad++;
	}
	return 0;
}

/* Runs one child to its death and checks the ledger it leaves. Returns the next batch. */
static int crash_once(const char *p, int start, enum crash_mode mode, int n)
{
	struct crash_count *count = calloc(1, sizeof(*count));
	struct st_ledger *l;
	struct report rep;
	int fds[2], status, reported = start - 1, killed = 0, b, present, kill_batch;
	uint64_t next;
	pid_t pid;

	assert_non_null(count);
	kill_batch = mode == KILL_AFTER_COMMITS ? -1 : start + n - 1;
	assert_int_equal(pipe(fds), 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		crash_child(p, fds[1], start, mode, kill_batch);
	}
	close(fds[1]);
	while (read(fds[0], &rep, sizeof(rep)) == sizeof(rep)) {
		if (rep.kind == 'C')
			reported = rep.batch;
		if (!killed && ((mode == KILL_AFTER_COMMITS && rep.kind == 'C' &&
				 rep.batch == start + n - 1) ||
				(mode == KILL_MID_BATCH && rep.kind == 'M'))) {
			kill(pid, SIGKILL);
			killed = 1;
		}
	}
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
		fail_msg("crash child (mode %d) ended with status 0x%x, not SIGKILL", mode, status);

	/* Reopening replays the WAL; every reported batch is whole, nothing else but
	 * possibly the one batch committed and not yet reported. */
	l = open_ok(p);
	assert_int_equal(st_ledger_integrity(l, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(st_ledger_foreach(l, crash_row, count, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(count->bad, 0);
	for (b = 1; b <= reported; b++)
		if (count->rows[b] != CRASH_ROWS)
			fail_msg("mode %d: batch %d reported committed has %d of %d rows", mode, b,
				 count->rows[b], CRASH_ROWS);
	present = count->rows[reported + 1];
	if (present != 0 && present != CRASH_ROWS)
		fail_msg("mode %d: batch %d is partial: %d rows", mode, reported + 1, present);
	for (b = reported + 2; b < CRASH_MAX_BATCHES; b++)
		assert_int_equal(count->rows[b], 0);
	if (mode == KILL_MID_BATCH || mode == KILL_COMMIT_START)
		assert_int_equal(present, 0);
	if (mode == KILL_COMMIT_DONE)
		assert_int_equal(present, CRASH_ROWS);
	if (mode != KILL_AFTER_COMMITS)
		assert_int_equal(reported, kill_batch - 1);
	/* Sequence numbers of committed rows are never handed out again. */
	assert_int_equal(st_ledger_next_sequence(l, "crash-", &next, errbuf, sizeof(errbuf)), 0);
	assert_true(next > count->max_seq);
	st_ledger_close(l);
	b = reported + 1 + (present ? 1 : 0);
	print_message("crash mode %d: killed after batch %d reported; batch %d %s\n", mode,
		      reported, reported + 1, present ? "committed unreported, whole" : "absent");
	free(count);
	return b;
}

static void test_crash(void **state)
{
	const char *p = fresh("crash");
	int next = 1;

	(void)state;
	next = crash_once(p, next, KILL_AFTER_COMMITS, 1);
	next = crash_once(p, next, KILL_MID_BATCH, 2);
	next = crash_once(p, next, KILL_COMMIT_START, 3);
	next = crash_once(p, next, KILL_COMMIT_DONE, 2);
	next = crash_once(p, next, KILL_AFTER_COMMITS, 3);
	next = crash_once(p, next, KILL_COMMIT_START, 1);
	next = crash_once(p, next, KILL_AFTER_COMMITS, 7);
	next = crash_once(p, next, KILL_MID_BATCH, 1);
	next = crash_once(p, next, KILL_COMMIT_DONE, 1);
	assert_true(next > 10);
}

/* ---- bad files ---- */

static void write_bytes(const char *p, const void *data, size_t len)
{
	FILE *f = fopen(p, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	fclose(f);
}

static void exec_sql(const char *p, const char *sql)
{
	sqlite3 *db;

	assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
	if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
		fail_msg("%s: %s", sql, sqlite3_errmsg(db));
	sqlite3_close(db);
}

static void test_bad_files(void **state)
{
	static const char text[] = "serial,device_id\n01,dev-1\n"
				   "this is a CSV export, not a SQLite database; padding to more "
				   "than one hundred bytes so that SQLite reads a whole header";
	struct st_ledger *l = NULL;
	const char *p;
	int rc;

	(void)state;
	p = fresh("text");
	write_bytes(p, text, sizeof(text) - 1);
	rc = st_ledger_open(p, NULL, &l, errbuf, sizeof(errbuf));
	assert_int_equal(rc, ST_E_LEDGER_CORRUPT);
	assert_null(l);
	assert_non_null(strstr(errbuf, p));
	assert_non_null(strstr(errbuf, "not a SQLite database"));

	/* Someone else's SQLite database. */
	p = fresh("foreign");
	exec_sql(p, "CREATE TABLE inventory (sku TEXT)");
	rc = st_ledger_open(p, NULL, &l, errbuf, sizeof(errbuf));
	assert_int_equal(rc, ST_E_LEDGER_CORRUPT);
	assert_non_null(strstr(errbuf, "not a station ledger"));
	assert_non_null(strstr(errbuf, "inventory"));

	p = fresh("appid");
	st_ledger_close(open_ok(p));
	exec_sql(p, "PRAGMA application_id = 1");
	rc = st_ledger_open(p, NULL, &l, errbuf, sizeof(errbuf));
	assert_int_equal(rc, ST_E_LEDGER_CORRUPT);
	assert_non_null(strstr(errbuf, "not a station ledger"));

	/* Written by a newer station. */
	p = fresh("future");
	st_ledger_close(open_ok(p));
	exec_sql(p, "PRAGMA user_version = 99");
	rc = st_ledger_open(p, NULL, &l, errbuf, sizeof(errbuf));
	assert_int_equal(rc, ST_E_LEDGER_VERSION);
	assert_non_null(strstr(errbuf, p));
	assert_non_null(strstr(errbuf, "99"));

	/* An empty file: a command that only reads refuses it, opening for writing makes it a
	 * ledger. */
	p = fresh("empty");
	write_bytes(p, "", 0);
	rc = st_ledger_open_flags(p, NULL, ST_LEDGER_NOCREATE, &l, errbuf, sizeof(errbuf));
	assert_int_equal(rc, ST_E_LEDGER_CORRUPT);
	assert_non_null(strstr(errbuf, "empty database"));
	st_ledger_close(open_ok(p));
	rc = st_ledger_open_flags(p, NULL, ST_LEDGER_NOCREATE, &l, errbuf, sizeof(errbuf));
	assert_int_equal(rc, 0);
	st_ledger_close(l);
	l = NULL;

	/* Missing with NOCREATE, a directory. */
	p = fresh("missing");
	rc = st_ledger_open_flags(p, NULL, ST_LEDGER_NOCREATE, &l, errbuf, sizeof(errbuf));
	assert_int_equal(rc, ST_E_LEDGER_OPEN);
	assert_non_null(strstr(errbuf, p));
	assert_int_equal(access(p, F_OK), -1);
	rc = st_ledger_open(dir, NULL, &l, errbuf, sizeof(errbuf));
	assert_int_equal(rc, ST_E_LEDGER_OPEN);
	assert_non_null(strstr(errbuf, "directory"));

	/* A file in a directory that does not exist. */
	snprintf(path, sizeof(path), "%s/no/such/dir/ledger.db", dir);
	rc = st_ledger_open(path, NULL, &l, errbuf, sizeof(errbuf));
	assert_int_equal(rc, ST_E_LEDGER_OPEN);
	assert_non_null(strstr(errbuf, path));
}

/* Opening for writing where the station cannot write says so, naming the directory or the
 * file and why: missing, not a directory, a read-only file system, no permission for this
 * user; nothing is created. */
#define NOBODY 65534

/* Opens p for writing as user nobody in a child process: the return code, the message in
 * errbuf. */
static int open_as_nobody(const char *p)
{
	int fds[2], status = 0;
	ssize_t n;
	pid_t pid;

	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct st_ledger *l = NULL;
		int rc;

		close(fds[0]);
		if (setgroups(0, NULL) != 0 || setresgid(NOBODY, NOBODY, NOBODY) != 0 ||
		    setresuid(NOBODY, NOBODY, NOBODY) != 0)
			_exit(100);
		rc = st_ledger_open(p, NULL, &l, errbuf, sizeof(errbuf));
		st_ledger_close(l);
		if (write(fds[1], errbuf, strlen(errbuf) + 1) < 0)
			_exit(101);
		_exit(rc == 0 ? 0 : 1);
	}
	close(fds[1]);
	memset(errbuf, 0, sizeof(errbuf));
	n = read(fds[0], errbuf, sizeof(errbuf) - 1);
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_true(WEXITSTATUS(status) <= 1);
	assert_true(n >= 0);
	return WEXITSTATUS(status) == 0 ? 0 : ST_E_LEDGER_OPEN;
}

static void expect_refused(int rc, const char *what1, const char *what2)
{
	assert_int_equal(rc, ST_E_LEDGER_OPEN);
	if (!strstr(errbuf, what1) || !strstr(errbuf, what2))
		fail_msg("message lacks '%s' or '%s': %s", what1, what2, errbuf);
}

static void test_unwritable(void **state)
{
	struct st_ledger *l = NULL;
	char sub[4300], file[4400];
	int rc;

	(void)state;
	/* A directory that does not exist. */
	snprintf(sub, sizeof(sub), "%s/nope", dir);
	snprintf(file, sizeof(file), "%s/ledger.db", sub);
	rc = st_ledger_open(file, NULL, &l, errbuf, sizeof(errbuf));
	expect_refused(rc, sub, "does not exist");
	assert_int_equal(access(sub, F_OK), -1);

	/* A file where the directory should be, and a directory where the file should be. */
	snprintf(sub, sizeof(sub), "%s/plain", dir);
	write_bytes(sub, "x", 1);
	snprintf(file, sizeof(file), "%s/ledger.db", sub);
	rc = st_ledger_open(file, NULL, &l, errbuf, sizeof(errbuf));
	expect_refused(rc, sub, "is not a directory");
	rc = st_ledger_open(dir, NULL, &l, errbuf, sizeof(errbuf));
	expect_refused(rc, dir, "is a directory");

	if (geteuid() != 0) {
		print_message("skipping read-only file system and other users: not root\n");
		return;
	}
	/* A read-only file system: empty, and holding a ledger already. */
	snprintf(sub, sizeof(sub), "%s/ro", dir);
	snprintf(file, sizeof(file), "%s/ledger.db", sub);
	assert_int_equal(mkdir(sub, 0700), 0);
	if (mount("tmpfs", sub, "tmpfs", MS_RDONLY, "size=1m") == 0) {
		rc = st_ledger_open(file, NULL, &l, errbuf, sizeof(errbuf));
		expect_refused(rc, sub, "read-only file system");
		assert_int_equal(access(file, F_OK), -1);
		assert_int_equal(mount(NULL, sub, NULL, MS_REMOUNT, "size=1m"), 0);
		st_ledger_close(open_ok(file));
		assert_int_equal(mount(NULL, sub, NULL, MS_REMOUNT | MS_RDONLY, "size=1m"), 0);
		rc = st_ledger_open(file, NULL, &l, errbuf, sizeof(errbuf));
		expect_refused(rc, sub, "read-only file system");
		assert_int_equal(umount2(sub, MNT_DETACH), 0);
	} else {
		print_message("skipping read-only file system: mount: %s\n", strerror(errno));
	}

	/* Another user: a directory it may not write, and a ledger file it may not write. */
	assert_int_equal(chmod(dir, 0711), 0);
	snprintf(sub, sizeof(sub), "%s/root-only", dir);
	snprintf(file, sizeof(file), "%s/ledger.db", sub);
	assert_int_equal(mkdir(sub, 0755), 0);
	rc = open_as_nobody(file);
	expect_refused(rc, sub, "is not writable by user");
	assert_non_null(strstr(errbuf, "uid 65534"));
	assert_int_equal(access(file, F_OK), -1);
	snprintf(sub, sizeof(sub), "%s/theirs", dir);
	snprintf(file, sizeof(file), "%s/ledger.db", sub);
	assert_int_equal(mkdir(sub, 0700), 0);
	st_ledger_close(open_ok(file));
	assert_int_equal(chown(sub, NOBODY, NOBODY), 0);
	rc = open_as_nobody(file);
	expect_refused(rc, file, "is not writable by user");
	/* Once the file is the user's, it opens. */
	assert_int_equal(chown(file, NOBODY, NOBODY), 0);
	assert_int_equal(open_as_nobody(file), 0);
	assert_int_equal(chmod(dir, 0700), 0);
}

static void test_damaged(void **state)
{
	struct st_ledger *l;
	const char *p = fresh("damaged");
	char serial[16], device[32];
	uint8_t junk[4096];
	struct stat sb;
	FILE *f;
	int i, rc, rows = 0;

	(void)state;
	l = open_ok(p);
	assert_int_equal(st_ledger_begin(l, errbuf, sizeof(errbuf)), 0);
	for (i = 0; i < 300; i++) {
		snprintf(serial, sizeof(serial), "%04x", i + 1);
		snprintf(device, sizeof(device), "dev-%d", i);
		sign_ok(l, add_ok(l, serial, device, serial));
	}
	assert_int_equal(st_ledger_commit(l, errbuf, sizeof(errbuf)), 0);
	st_ledger_close(l);

	/* Overwrite pages in the middle (the last close checkpointed the WAL into the file). */
	assert_int_equal(stat(p, &sb), 0);
	assert_true(sb.st_size > 8 * 4096);
	memset(junk, 0x5a, sizeof(junk));
	f = fopen(p, "r+b");
	assert_non_null(f);
	for (i = 2; i < 6; i++) {
		assert_int_equal(fseek(f, (long)i * 4096, SEEK_SET), 0);
		assert_int_equal(fwrite(junk, 1, sizeof(junk), f), sizeof(junk));
	}
	fclose(f);

	rc = st_ledger_open(p, NULL, &l, errbuf, sizeof(errbuf));
	if (rc == 0) {
		rc = st_ledger_integrity(l, errbuf, sizeof(errbuf));
		if (rc == 0)
			rc = st_ledger_foreach(l, count_row, &rows, errbuf, sizeof(errbuf));
		st_ledger_close(l);
	}
	assert_int_equal(rc, ST_E_LEDGER_CORRUPT);
	assert_non_null(strstr(errbuf, p));
}

/* ---- flags and iteration ---- */

struct flag_seen {
	int n;
	char reason[128];
	int has_key;
};

static int seen_flag(const struct st_ledger_flag *f, void *arg)
{
	struct flag_seen *s = arg;

	s->n++;
	snprintf(s->reason, sizeof(s->reason), "%s", f->reason);
	s->has_key = f->pubkey_sha256 != NULL;
	return 0;
}

static int stop_at_two(const struct st_ledger_row *r, void *arg)
{
	(void)r;
	return ++*(int *)arg == 2;
}

static void test_flags_foreach(void **state)
{
	struct st_ledger *l = open_ok(fresh("flags"));
	struct flag_seen seen = { 0 };
	uint8_t k[32];
	int n = 0;

	(void)state;
	key_of("k", k);
	assert_int_equal(st_ledger_flag(l, "dev-1", k, "A1", "device id recorded with another key",
					errbuf, sizeof(errbuf)),
			 0);
	assert_int_equal(st_ledger_flag(l, NULL, NULL, NULL, "key reused", errbuf,
					sizeof(errbuf)),
			 0);
	assert_int_equal(st_ledger_flag(l, "x", NULL, NULL, NULL, errbuf, sizeof(errbuf)),
			 ST_E_INVAL);
	assert_int_equal(st_ledger_foreach_flag(l, seen_flag, &seen, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(seen.n, 2);
	assert_string_equal(seen.reason, "key reused");
	assert_false(seen.has_key);

	add_ok(l, "01", "d1", "k1");
	add_ok(l, "02", "d2", "k2");
	add_ok(l, "03", "d3", "k3");
	assert_int_equal(st_ledger_foreach(l, stop_at_two, &n, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(n, 2);
	st_ledger_close(l);
}

/* ---- the command ---- */

static int run_cmd(int argc, char **argv)
{
	return st_cmd_ledger(argc, argv);
}

/* Splits an RFC 4180 file into records of fields (CRLF line ends, quoted fields). Returns
 * the number of records; fields[i][j] are new strings. */
static int parse_csv(const char *text, char *fields[][20], int max_records, int *nfields)
{
	int rec = 0, fld = 0;
	size_t cap = strlen(text) + 1;
	char *buf = malloc(cap);
	size_t n = 0;
	const char *s = text;

	assert_non_null(buf);
	while (*s && rec < max_records) {
		n = 0;
		if (*s == '"') {
			s++;
			for (;;) {
				assert_true(*s != 0);
				if (*s == '"' && s[1] == '"') {
					buf[n++] = '"';
					s += 2;
				} else if (*s == '"') {
					s++;
					break;
				} else {
					buf[n++] = *s++;
				}
			}
		} else {
			while (*s && *s != ',' && *s != '\r' && *s != '\n')
				buf[n++] = *s++;
		}
		buf[n] = 0;
		assert_true(fld < 20);
		fields[rec][fld++] = strdup(buf);
		if (*s == ',') {
			s++;
		} else {
			/* A record ends with CRLF, never a bare LF. */
			assert_int_equal(s[0], '\r');
			assert_int_equal(s[1], '\n');
			s += 2;
			nfields[rec++] = fld;
			fld = 0;
		}
	}
	free(buf);
	return rec;
}

static void test_cmd_export(void **state)
{
	static const char reason[] = "board said \"no\", then\r\nhung up";
	struct st_ledger *l = open_ok(fresh("export"));
	char out[4300], *fields[8][20] = { { NULL } };
	int nfields[8] = { 0 }, nrec, i, j, lines = 0;
	uint8_t *text;
	size_t len;
	int64_t a, b;

	(void)state;
	a = add_ok(l, "0a", "dev,with,commas", "k1");
	sign_ok(l, a);
	b = add_ok(l, "0b", "dev-2", "k2");
	assert_int_equal(st_ledger_mark_failed(l, b, reason, errbuf, sizeof(errbuf)), 0);
	add_ok(l, "0c", "dev-3", "k3");
	st_ledger_close(l);

	snprintf(out, sizeof(out), "%s/export.csv", dir);
	{
		char *argv[] = { "ledger", "--ledger", path, "export", "--format", "csv", "-o", out,
				 NULL };

		assert_int_equal(run_cmd(8, argv), 0);
	}
	text = tu_read_file(out, &len);
	assert_non_null(text);
	nrec = parse_csv((const char *)text, fields, 8, nfields);
	assert_int_equal(nrec, 4);
	assert_string_equal(fields[0][0], "id");
	assert_string_equal(fields[0][nfields[0] - 1], "cert_der_base64");
	for (i = 0; i < nrec; i++)
		assert_int_equal(nfields[i], nfields[0]);
	assert_string_equal(fields[1][2], "dev,with,commas");
	assert_string_equal(fields[1][6], "signed");
	assert_string_equal(fields[2][7], reason);
	assert_string_equal(fields[3][6], "intent");
	assert_string_equal(fields[3][nfields[3] - 1], "");
	{
		uint8_t der[64];
		int n = EVP_DecodeBlock(der, (const unsigned char *)fields[1][nfields[1] - 1],
					(int)strlen(fields[1][nfields[1] - 1]));

		/* EVP_DecodeBlock counts base64 padding as zero bytes. */
		assert_true(n >= (int)sizeof(fake_cert));
		assert_memory_equal(der, fake_cert, sizeof(fake_cert));
	}
	for (i = 0; i < nrec; i++)
		for (j = 0; j < nfields[i]; j++)
			free(fields[i][j]);
	free(text);

	snprintf(out, sizeof(out), "%s/export.jsonl", dir);
	{
		char *argv[] = { "ledger", "--ledger", path, "export", "--format", "jsonl",
				 "--cert", "pem", "-o", out, NULL };

		assert_int_equal(run_cmd(10, argv), 0);
	}
	text = tu_read_file(out, &len);
	assert_non_null(text);
	{
		char *save = NULL, *line;

		for (line = strtok_r((char *)text, "\n", &save); line;
		     line = strtok_r(NULL, "\n", &save)) {
			json_error_t jerr;
			json_t *o = json_loads(line, 0, &jerr);

			if (!o)
				fail_msg("line %d is not JSON: %s", lines + 1, jerr.text);
			assert_true(json_is_object(o));
			assert_int_equal(json_integer_value(json_object_get(o, "id")), lines + 1);
			if (lines == 0) {
				const char *pem = json_string_value(json_object_get(o, "cert_pem"));

				assert_non_null(pem);
				assert_non_null(strstr(pem, "-----BEGIN CERTIFICATE-----\n"));
				assert_string_equal(json_string_value(json_object_get(o,
										"device_id")),
						    "dev,with,commas");
			}
			if (lines == 1)
				assert_string_equal(json_string_value(json_object_get(o, "reason")),
						    reason);
			if (lines == 2) {
				assert_true(json_is_null(json_object_get(o, "cert_pem")));
				assert_true(json_is_null(json_object_get(o, "signed_at")));
			}
			json_decref(o);
			lines++;
		}
	}
	assert_int_equal(lines, 3);
	free(text);

	/* Bad arguments are usage errors, and leave no file behind. */
	snprintf(out, sizeof(out), "%s/never.csv", dir);
	{
		char *argv[] = { "ledger", "--ledger", path, "export", "--format", "xml", "-o", out,
				 NULL };

		assert_int_equal(run_cmd(8, argv), 2);
		assert_int_equal(access(out, F_OK), -1);
	}
	{
		char *argv[] = { "ledger", "--ledger", path, "list", "--format", "csv", NULL };

		assert_int_equal(run_cmd(6, argv), 2);
	}
	{
		char *argv[] = { "ledger", "--ledger", path, "bogus", NULL };

		assert_int_equal(run_cmd(4, argv), 2);
	}
}

static void count_statements(enum st_ledger_hook_point point, void *arg)
{
	if (point == ST_LEDGER_HOOK_STATEMENT)
		(*(int *)arg)++;
}

/* SQLite statements per board, as the signing pool spends them (BEGIN and COMMIT are shared
 * by the batch): the lookup's two index probes, the intent's look at the device's open
 * intents and its insert (the unique indexes check serial and key; no savepoint when nothing
 * is superseded inside a transaction), the certificate, the delivered mark. An intent the
 * unique indexes refuse inside a transaction leaves nothing behind. */
static int count_sql(const char *p, const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *s;
	int n;

	assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
		fail_msg("%s: %s", sql, sqlite3_errmsg(db));
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	n = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(db);
	return n;
}

/* Empties the ledger's WAL into the database (the ledger handle is between transactions). */
static void wal_truncate(const char *p)
{
	assert_int_equal(count_sql(p, "PRAGMA wal_checkpoint(TRUNCATE)"), 0);
}

/* Which b-trees the pages in the WAL belong to, as a bit mask of names[] (bit 31: a page
 * of none of them). With wal_truncate() before one commit: the b-trees it wrote. */
static unsigned wal_btrees(const char *p, const char *const *names, int n)
{
	char wal[4300];
	unsigned char hdr[32], fh[24];
	unsigned mask = 0;
	uint32_t page_size;
	sqlite3 *db;
	sqlite3_stmt *s;
	FILE *f;
	int i;

	snprintf(wal, sizeof(wal), "%s-wal", p);
	f = fopen(wal, "rb");
	assert_non_null(f);
	assert_int_equal(fread(hdr, 1, sizeof(hdr), f), sizeof(hdr));
	page_size = (uint32_t)hdr[8] << 24 | (uint32_t)hdr[9] << 16 | (uint32_t)hdr[10] << 8 |
		    hdr[11];
	assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT name FROM dbstat WHERE pageno = ?1", -1,
					    &s, NULL),
			 SQLITE_OK);
	while (fread(fh, 1, sizeof(fh), f) == sizeof(fh)) {
		uint32_t pgno = (uint32_t)fh[0] << 24 | (uint32_t)fh[1] << 16 |
				(uint32_t)fh[2] << 8 | fh[3];
		unsigned bit = 1u << 31;

		sqlite3_bind_int64(s, 1, pgno);
		if (sqlite3_step(s) == SQLITE_ROW)
			for (i = 0; i < n; i++)
				if (strcmp((const char *)sqlite3_column_text(s, 0), names[i]) == 0)
					bit = 1u << i;
		sqlite3_reset(s);
		mask |= bit;
		assert_int_equal(fseek(f, (long)page_size, SEEK_CUR), 0);
	}
	sqlite3_finalize(s);
	sqlite3_close(db);
	fclose(f);
	return mask;
}

/* A row's certificate and its delivered or failed mark write the certificates table alone:
 * the unique indexes of serial and key (a random page each, per board) are written only
 * when the row is added, or dropped as an intent that will never hold a certificate. The
 * pages each commit wrote are read from the WAL and named by SQLite's dbstat table. */
static void test_pages_per_mark(void **state)
{
	static const char *const names[] = { "certificates", "certificates_serial",
					     "certificates_pubkey" };
	const unsigned table = 1u << 0, indexes = 1u << 1 | 1u << 2;
	struct st_ledger *l = open_ok(fresh("pages"));
	char serial[41], device[32], seed[32];
	unsigned char h[32];
	int64_t ids[2000];
	unsigned mask;
	int i, j;

	(void)state;
	assert_int_equal(st_ledger_begin(l, errbuf, sizeof(errbuf)), 0);
	for (i = 0; i < 2000; i++) {
		SHA256((const unsigned char *)&i, sizeof(i), h);
		for (j = 0; j < 16; j++)
			snprintf(serial + 2 * j, 3, "%02x", h[j]);
		snprintf(device, sizeof(device), "dev-%d", i);
		snprintf(seed, sizeof(seed), "key-%d", i);
		ids[i] = add_ok(l, serial, device, seed);
	}
	assert_int_equal(st_ledger_commit(l, errbuf, sizeof(errbuf)), 0);

	/* Adding a row writes both indexes (the method sees them). */
	wal_truncate(path);
	add_ok(l, "0b0a", "dev-new", "key-new");
	mask = wal_btrees(path, names, 3);
	assert_int_equal(mask & indexes, indexes);

	for (i = 1000; i < 1003; i++) {
		wal_truncate(path);
		sign_ok(l, ids[i]);
		mask = wal_btrees(path, names, 3);
		print_message("certificate of row %d: b-trees 0x%x\n", i, mask);
		assert_int_equal(mask & indexes, 0);
		assert_true(mask & table);

		wal_truncate(path);
		if (i == 1002)
			assert_int_equal(st_ledger_mark_failed(l, ids[i], "BOARD_GONE", errbuf,
							       sizeof(errbuf)),
					 0);
		else
			assert_int_equal(st_ledger_mark_delivered(l, ids[i], errbuf,
								  sizeof(errbuf)),
					 0);
		mask = wal_btrees(path, names, 3);
		print_message("mark of row %d: b-trees 0x%x\n", i, mask);
		assert_int_equal(mask & indexes, 0);
	}

	/* An intent given up leaves the unique indexes: its key may be signed again. */
	wal_truncate(path);
	assert_int_equal(st_ledger_mark_failed(l, ids[1500], "BOARD_GONE", errbuf, sizeof(errbuf)),
			 0);
	mask = wal_btrees(path, names, 3);
	assert_int_equal(mask & indexes, indexes);
	add_ok(l, "0b0b", "dev-1500", "key-1500");
	st_ledger_close(l);

	/* The column says what the row's state says, for every row. */
	assert_int_equal(count_sql(path, "SELECT count(*) FROM certificates WHERE (dropped IS "
					 "NULL) IS NOT (state <> 'failed' OR cert_der IS NOT NULL)"),
			 0);
	assert_int_equal(count_sql(path, "SELECT count(*) FROM certificates WHERE dropped = 1"),
			 1);

	/* A writer that sets it wrong has it set right by the trigger, in its statement. */
	exec_sql(path, "UPDATE certificates SET dropped = 1 WHERE state = 'delivered'");
	assert_int_equal(count_sql(path, "SELECT count(*) FROM certificates WHERE dropped = 1"),
			 1);
	/* A file written without the trigger fails the integrity check, which names the row. */
	exec_sql(path, "DROP TRIGGER certificates_dropped_update; UPDATE certificates SET "
		       "dropped = 1 WHERE id = 1001");
	l = open_ok(path);
	assert_int_equal(st_ledger_integrity(l, errbuf, sizeof(errbuf)), ST_E_LEDGER_CORRUPT);
	assert_non_null(strstr(errbuf, "first id 1001"));
	st_ledger_close(l);
}

static void test_statements_per_board(void **state)
{
	struct st_ledger *l = open_ok(fresh("statements"));
	struct st_ledger_row r = intent("0b01", "dev-s", "key-s", "A1"), *row = NULL;
	struct st_ledger_row dup = intent("0b01", "dev-t", "key-t", "A2");
	int n = 0, rows = 0;
	int64_t id = 0, id2 = 0;

	(void)state;
	st_ledger_set_hook(l, count_statements, &n);
	assert_int_equal(st_ledger_begin(l, errbuf, sizeof(errbuf)), 0);
	n = 0;
	assert_int_equal(st_ledger_lookup(l, "dev-s", r.pubkey_sha256, &row, errbuf,
					  sizeof(errbuf)),
			 ST_LEDGER_NEW);
	assert_int_equal(n, 2);
	n = 0;
	assert_int_equal(st_ledger_add_intent(l, &r, &id, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(n, 2);
	assert_int_equal(st_ledger_add_intent(l, &dup, &id2, errbuf, sizeof(errbuf)),
			 ST_E_LEDGER_DUP_SERIAL);
	assert_int_equal(id2, 0);
	assert_int_equal(st_ledger_commit(l, errbuf, sizeof(errbuf)), 0);

	assert_int_equal(st_ledger_begin(l, errbuf, sizeof(errbuf)), 0);
	n = 0;
	sign_ok(l, id);
	assert_int_equal(n, 1);
	assert_int_equal(st_ledger_commit(l, errbuf, sizeof(errbuf)), 0);

	assert_int_equal(st_ledger_begin(l, errbuf, sizeof(errbuf)), 0);
	n = 0;
	assert_int_equal(st_ledger_mark_delivered(l, id, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(n, 1);
	assert_int_equal(st_ledger_commit(l, errbuf, sizeof(errbuf)), 0);

	/* The same board again: its row (and certificate) read once. */
	n = 0;
	assert_int_equal(st_ledger_lookup(l, "dev-s", r.pubkey_sha256, &row, errbuf,
					  sizeof(errbuf)),
			 ST_LEDGER_RECORDED);
	assert_int_equal(n, 1);
	assert_non_null(row);
	assert_int_equal(row->cert_len, sizeof(fake_cert));
	st_ledger_row_free(row);
	st_ledger_set_hook(l, NULL, NULL);
	assert_int_equal(st_ledger_foreach(l, count_row, &rows, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(rows, 1);
	st_ledger_close(l);
}

struct opener {
	char path[4300];
	pthread_barrier_t *go;
	int rc;
	char err[1024];
};

static void *open_one(void *arg)
{
	struct opener *o = arg;
	struct st_ledger *l = NULL;

	pthread_barrier_wait(o->go);
	o->rc = st_ledger_open(o->path, "st", &l, o->err, sizeof(o->err));
	st_ledger_close(l);
	return NULL;
}

/* Two stations started together on one new ledger file: both open it at once, and each
 * waits for the other's hold on it (as long as the busy timeout allows), where SQLite
 * answers the journal mode's change busy at once. Many rounds, each on a new file. */
static void test_open_together(void **state)
{
	struct opener o[2];
	pthread_barrier_t go;
	pthread_t th[2];

	(void)state;
	for (int round = 0; round < 40; round++) {
		pthread_barrier_init(&go, NULL, 2);
		for (int i = 0; i < 2; i++) {
			snprintf(o[i].path, sizeof(o[i].path), "%s/together-%d.db", dir, round);
			o[i].go = &go;
			assert_int_equal(pthread_create(&th[i], NULL, open_one, &o[i]), 0);
		}
		for (int i = 0; i < 2; i++)
			pthread_join(th[i], NULL);
		pthread_barrier_destroy(&go);
		for (int i = 0; i < 2; i++) {
			if (o[i].rc != 0)
				fail_msg("round %d: %s", round, o[i].err);
		}
	}
}

static const struct CMUnitTest tests[] = {
	cmocka_unit_test(test_lifecycle),
	cmocka_unit_test(test_unique),
	cmocka_unit_test(test_lookup),
	cmocka_unit_test(test_sequences),
	cmocka_unit_test(test_group_commit),
	cmocka_unit_test(test_two_handles),
	cmocka_unit_test(test_open_together),
	cmocka_unit_test(test_crash),
	cmocka_unit_test(test_bad_files),
	cmocka_unit_test(test_unwritable),
	cmocka_unit_test(test_damaged),
	cmocka_unit_test(test_flags_foreach),
	cmocka_unit_test(test_cmd_export),
	cmocka_unit_test(test_statements_per_board),
	cmocka_unit_test(test_pages_per_mark),
};

/* What holds for every backend. */
static const struct CMUnitTest shared_tests[] = {
	cmocka_unit_test(test_lifecycle),
	cmocka_unit_test(test_unique),
	cmocka_unit_test(test_lookup),
	cmocka_unit_test(test_sequences),
	cmocka_unit_test(test_group_commit),
	cmocka_unit_test(test_crash),
	cmocka_unit_test(test_flags_foreach),
	cmocka_unit_test(test_cmd_export),
};

/* ---- helper modes for the CLI test ---- */

static int helper_fail(const char *what, const char *detail)
{
	fprintf(stderr, "test_ledger: %s: %s\n", what, detail);
	return 1;
}

static time_t cert_time(const ASN1_TIME *t)
{
	struct tm tm;

	if (ASN1_TIME_to_tm(t, &tm) != 1)
		return 0;
	return timegm(&tm);
}

/* One row per certificate, in one transaction: intent, certificate, then STATE. */
/* fill LEDGER STATE SLOT CERT...: rows of profile acme-gw, or of $TEST_LEDGER_PROFILE (empty:
 * none recorded). */
static int helper_fill(int argc, char **argv)
{
	struct st_ledger *l = NULL;
	const char *profile = getenv("TEST_LEDGER_PROFILE");
	char err[1024];
	int rc = 1, i, st = st_ledger_state_parse(argv[3]);

	if (st < 0)
		return helper_fail("unknown state", argv[3]);
	if (st_ledger_open(argv[2], "it-station", &l, err, sizeof(err)) != 0)
		return helper_fail("open", err);
	if (st_ledger_begin(l, err, sizeof(err)) != 0)
		goto out;
	for (i = 5; i < argc; i++) {
		struct st_ledger_row row = { 0 };
		unsigned char *spki = NULL, *cn = NULL;
		char *serial = NULL;
		BIGNUM *bn = NULL;
		FILE *f = fopen(argv[i], "r");
		X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
		int len, idx, ok = 0;
		int64_t id;
		char *p;

		if (f)
			fclose(f);
		if (!x) {
			snprintf(err, sizeof(err), "cannot read certificate %s", argv[i]);
			goto out;
		}
		bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
		serial = bn ? BN_bn2hex(bn) : NULL;
		for (p = serial; p && *p; p++)
			*p = (char)(*p >= 'A' && *p <= 'F' ? *p - 'A' + 'a' : *p);
		idx = X509_NAME_get_index_by_NID(X509_get_subject_name(x), NID_commonName, -1);
		if (idx >= 0)
			ASN1_STRING_to_UTF8(&cn, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(
						 X509_get_subject_name(x), idx)));
		len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &spki);
		if (serial && cn && len > 0) {
			uint8_t *der = NULL;
			int dlen;

			row.serial = serial;
			row.device_id = (char *)cn;
			row.profile = (char *)(!profile ? "acme-gw" : *profile ? profile : NULL);
			row.slot = argv[4];
			SHA256(spki, (size_t)len, row.pubkey_sha256);
			SHA256((const unsigned char *)argv[i], strlen(argv[i]), row.csr_sha256);
			dlen = i2d_X509(x, &der);
			ok = dlen > 0 &&
			     st_ledger_add_intent(l, &row, &id, err, sizeof(err)) == 0 &&
			     st_ledger_set_cert(l, id, der, (size_t)dlen,
						cert_time(X509_get0_notBefore(x)),
						cert_time(X509_get0_notAfter(x)), err,
						sizeof(err)) == 0;
			if (ok && st == ST_LEDGER_DELIVERED)
				ok = st_ledger_mark_delivered(l, id, err, sizeof(err)) == 0;
			if (ok && st == ST_LEDGER_FAILED)
				ok = st_ledger_mark_failed(l, id, "board left during write", err,
							   sizeof(err)) == 0;
			if (ok && st == ST_LEDGER_INTENT)
				ok = 0, snprintf(err, sizeof(err), "use 'intent' for intents");
			OPENSSL_free(der);
		} else {
			snprintf(err, sizeof(err), "%s lacks a serial, CN or key", argv[i]);
		}
		OPENSSL_free(spki);
		OPENSSL_free(cn);
		OPENSSL_free(serial);
		BN_free(bn);
		X509_free(x);
		if (!ok)
			goto out;
	}
	if (st_ledger_commit(l, err, sizeof(err)) != 0)
		goto out;
	rc = 0;
out:
	if (rc)
		fprintf(stderr, "test_ledger fill: %s\n", err);
	st_ledger_close(l);
	return rc;
}

static int helper_intent(char **argv)
{
	struct st_ledger *l = NULL;
	struct st_ledger_row row = { 0 };
	char err[1024];
	int64_t id;
	int rc;

	if (st_ledger_open(argv[2], "it-station", &l, err, sizeof(err)) != 0)
		return helper_fail("open", err);
	row.device_id = argv[3];
	row.serial = argv[4];
	row.profile = (char *)"acme-gw";
	row.slot = (char *)"Z9";
	RAND_bytes(row.pubkey_sha256, 32);
	rc = st_ledger_add_intent(l, &row, &id, err, sizeof(err));
	st_ledger_close(l);
	return rc == 0 ? 0 : helper_fail("intent", err);
}

static int helper_flag(char **argv)
{
	struct st_ledger *l = NULL;
	char err[1024];
	int rc;

	if (st_ledger_open(argv[2], "it-station", &l, err, sizeof(err)) != 0)
		return helper_fail("open", err);
	rc = st_ledger_flag(l, argv[3], NULL, "Z8", argv[4], err, sizeof(err));
	st_ledger_close(l);
	return rc == 0 ? 0 : helper_fail("flag", err);
}

int main(int argc, char **argv)
{
	if (argc >= 6 && strcmp(argv[1], "fill") == 0)
		return helper_fill(argc, argv);
	if (argc == 5 && strcmp(argv[1], "intent") == 0)
		return helper_intent(argv);
	if (argc == 5 && strcmp(argv[1], "flag") == 0)
		return helper_flag(argv);
	if (argc > 1) {
		fprintf(stderr, "usage: test_ledger [fill LEDGER STATE SLOT CERT.pem... | intent "
				"LEDGER DEVICE_ID SERIAL | flag LEDGER DEVICE_ID REASON]\n");
		return 2;
	}
	if (tu_pg_conn())
		return cmocka_run_group_tests_name("ledger on PostgreSQL", shared_tests, setup,
						   teardown);
	return cmocka_run_group_tests(tests, setup, teardown);
}
