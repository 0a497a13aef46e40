/* The ledger on PostgreSQL, what only a shared database has (test_ledger.c runs the cases
 * every backend shares on it too): a line of stations on one database (uniqueness, verdicts
 * and sequences across stations, rows naming their station), stations racing for one device
 * id, a deadlock between two stations, schema versions and foreign schemas, passwords, the
 * connection lost mid-transaction, at COMMIT, and the answer to COMMIT lost, and a station's
 * SQLite ledger imported with its authorizations' counts and its attempts.
 *
 * Needs a server of its own: CTest runs it under tests/lib/pg.sh, which sets
 * STATION_TEST_PG. Stations here are handles with their own station names; "killing" a
 * station's connection is pg_terminate_backend() on its server process, which is what the
 * station sees when the server restarts or the network drops it. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <libpq-fe.h>
#include <openssl/sha.h>

#include "err.h"
#include "ledger.h"
#include "testutil.h"

static char conn[4096];
static char errbuf[1024];

static const uint8_t fake_cert[] = { 0x30, 0x82, 0x01, 0x00, 0xde, 0xad, 0xbe, 0xef };

static int fresh_db(void **state)
{
	(void)state;
	if (tu_pg_fresh(conn, sizeof(conn), errbuf, sizeof(errbuf)) != 0) {
		fprintf(stderr, "test_ledger_pg: %s\n", errbuf);
		return -1;
	}
	return 0;
}

static struct st_ledger *open_st(const char *station)
{
	struct st_ledger *l = NULL;

	if (st_ledger_open(conn, station, &l, errbuf, sizeof(errbuf)) != 0)
		fail_msg("open as %s: %s", station, errbuf);
	return l;
}

/* The superuser's connection string (the test server trusts it on its socket). */
static const char *admin(void)
{
	static char a[4200];

	snprintf(a, sizeof(a), "%s user=postgres", conn);
	return a;
}

/* One number from SQL run as the superuser on a connection of its own (-1 on error). */
static long long q_num(const char *fmt, ...)
{
	char sql[1024];
	va_list ap;
	PGconn *c;
	PGresult *res;
	long long v = -1;

	va_start(ap, fmt);
	vsnprintf(sql, sizeof(sql), fmt, ap);
	va_end(ap);
	c = PQconnectdb(admin());
	res = PQexec(c, sql);
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		v = atoll(PQgetvalue(res, 0, 0));
	else
		fprintf(stderr, "q_num: %s: %s", sql, PQresultErrorMessage(res));
	PQclear(res);
	PQfinish(c);
	return v;
}

/* Cuts a station's connection from the server's side, as a restart or a network cut does. */
static void cut(const char *station)
{
	assert_int_equal(q_num("SELECT count(pg_terminate_backend(pid, 5000)) FROM "
			       "pg_stat_activity WHERE application_name = 'station %s'",
			       station),
			 1);
}

static void key_of(const char *seed, uint8_t out[32])
{
	SHA256((const unsigned char *)seed, strlen(seed), out);
}

static struct st_ledger_row intent(const char *serial, const char *device, const char *key_seed)
{
	struct st_ledger_row r = { 0 };

	r.serial = (char *)serial;
	r.device_id = (char *)device;
	r.profile = (char *)"acme-gw";
	r.slot = (char *)"A1";
	key_of(key_seed, r.pubkey_sha256);
	SHA256((const unsigned char *)serial, strlen(serial), r.csr_sha256);
	return r;
}

static int add(struct st_ledger *l, const char *serial, const char *device, const char *key,
	       int64_t *id)
{
	struct st_ledger_row r = intent(serial, device, key);

	return st_ledger_add_intent(l, &r, id, errbuf, sizeof(errbuf));
}

static int64_t add_ok(struct st_ledger *l, const char *serial, const char *device,
		      const char *key)
{
	int64_t id = 0;

	if (add(l, serial, device, key, &id) != 0)
		fail_msg("add_intent %s: %s", serial, errbuf);
	return id;
}

static void sign_ok(struct st_ledger *l, int64_t id)
{
	if (st_ledger_set_cert(l, id, fake_cert, sizeof(fake_cert), 1000, 2000, errbuf,
			       sizeof(errbuf)) != 0)
		fail_msg("set_cert %lld: %s", (long long)id, errbuf);
}

/* ---- A line of stations ---- */

static void test_stations(void **state)
{
	struct st_ledger *a = open_st("st-a"), *b = open_st("st-b");
	struct st_ledger_row *row = NULL;
	uint8_t k[32];
	uint64_t na = 0, nb = 0;
	int64_t id, x;
	int i;

	(void)state;
	/* Every row and flag names its station. */
	x = add_ok(a, "01", "dev-1", "key-1");
	sign_ok(a, x);
	assert_int_equal(st_ledger_get(b, x, &row, errbuf, sizeof(errbuf)), 0);
	assert_string_equal(row->station, "st-a");
	st_ledger_row_free(row);

	/* Serial and key are unique across the line, and the refusal names the holder. */
	assert_int_equal(add(b, "01", "dev-2", "key-2", &id), ST_E_LEDGER_DUP_SERIAL);
	assert_non_null(strstr(errbuf, "st-a"));
	assert_int_equal(add(b, "02", "dev-2", "key-1", &id), ST_E_LEDGER_DUP_KEY);
	assert_non_null(strstr(errbuf, "dev-1"));
	assert_non_null(strstr(errbuf, "st-a"));

	/* A board moved to another line after a failed write gets its certificate there. */
	assert_int_equal(st_ledger_mark_failed(a, x, "board left during write", errbuf,
					       sizeof(errbuf)),
			 0);
	key_of("key-1", k);
	assert_int_equal(st_ledger_lookup(b, "dev-1", k, &row, errbuf, sizeof(errbuf)),
			 ST_LEDGER_RECORDED);
	assert_int_equal(row->id, x);
	assert_memory_equal(row->cert_der, fake_cert, sizeof(fake_cert));
	st_ledger_row_free(row);
	assert_int_equal(st_ledger_mark_delivered(b, x, errbuf, sizeof(errbuf)), 0);
	/* The same device id with another key at another station: refused as at the first. */
	key_of("key-1b", k);
	assert_int_equal(st_ledger_lookup(b, "dev-1", k, &row, errbuf, sizeof(errbuf)),
			 ST_LEDGER_ID_OTHER_KEY);
	assert_string_equal(row->station, "st-a");
	st_ledger_row_free(row);
	assert_int_equal(st_ledger_flag(b, "dev-1", k, "B2", "device id recorded with another key",
					errbuf, sizeof(errbuf)),
			 0);
	/* The key at another station for another device id. */
	key_of("key-1", k);
	assert_int_equal(st_ledger_lookup(b, "dev-9", k, NULL, errbuf, sizeof(errbuf)),
			 ST_LEDGER_KEY_REUSED);

	/* An intent left at one station (a crash) for this key: possibly signed at the other,
	 * which supersedes it. */
	x = add_ok(a, "03", "dev-3", "key-3");
	key_of("key-3", k);
	assert_int_equal(st_ledger_lookup(b, "dev-3", k, NULL, errbuf, sizeof(errbuf)),
			 ST_LEDGER_POSSIBLY_SIGNED);
	id = add_ok(b, "04", "dev-3", "key-3");
	assert_int_equal(st_ledger_set_cert(a, x, fake_cert, sizeof(fake_cert), 1, 2, errbuf,
					    sizeof(errbuf)),
			 ST_E_LEDGER_STATE);
	assert_non_null(strstr(errbuf, "superseded"));
	sign_ok(b, id);

	/* Sequences: one counter per prefix for the whole line. */
	for (i = 0; i < 10; i++) {
		assert_int_equal(st_ledger_next_sequence(i % 2 ? a : b, "GW-", &na, errbuf,
							 sizeof(errbuf)),
				 0);
		assert_int_equal(na, (uint64_t)i + 1);
	}
	assert_int_equal(st_ledger_begin(a, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(st_ledger_next_sequence(a, "GW-", &na, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(st_ledger_rollback(a), 0);
	assert_int_equal(st_ledger_next_sequence(b, "GW-", &nb, errbuf, sizeof(errbuf)), 0);
	/* A rolled-back number was never given to a committed row: it is handed out again. */
	assert_int_equal(nb, na);
	assert_int_equal(q_num("SELECT count(*) FROM station_ledger.flags WHERE station = 'st-b'"),
			 1);
	st_ledger_close(a);
	st_ledger_close(b);
}

/* ---- Stations racing for one device id ---- */

struct racer {
	const char *station;
	char key[32];
	const char *serial;
	char device[32];
	pthread_barrier_t *go;
	int rc;
	char err[512];
	struct st_ledger *l;
};

/* The end of a thread's transaction: committed when everything in it worked. */
static int finish(struct st_ledger *l, int rc, char *err, size_t errlen)
{
	if (rc == 0)
		return st_ledger_commit(l, err, errlen);
	st_ledger_rollback(l);
	return rc;
}

static void *race(void *arg)
{
	struct racer *r = arg;
	struct st_ledger_row row = intent(r->serial, r->device, r->key);
	int64_t id;

	pthread_barrier_wait(r->go);
	r->rc = st_ledger_begin(r->l, r->err, sizeof(r->err));
	if (r->rc == 0)
		r->rc = st_ledger_add_intent(r->l, &row, &id, r->err, sizeof(r->err));
	r->rc = finish(r->l, r->rc, r->err, sizeof(r->err));
	return NULL;
}

static void test_race(void **state)
{
	pthread_barrier_t go;
	struct racer r[2] = { { .station = "st-a" }, { .station = "st-b" } };
	char serials[2][16];
	pthread_t th[2];
	int round, i, wins;

	(void)state;
	for (i = 0; i < 2; i++)
		r[i].l = open_st(r[i].station);
	for (round = 0; round < 20; round++) {
		pthread_barrier_init(&go, NULL, 2);
		for (i = 0; i < 2; i++) {
			snprintf(serials[i], sizeof(serials[i]), "%x%04x", i + 1, round);
			r[i].serial = serials[i];
			snprintf(r[i].device, sizeof(r[i].device), "dev-race-%d", round);
			snprintf(r[i].key, sizeof(r[i].key), "key-%s-%d", r[i].station, round);
			r[i].go = &go;
			assert_int_equal(pthread_create(&th[i], NULL, race, &r[i]), 0);
		}
		for (i = 0; i < 2; i++)
			pthread_join(th[i], NULL);
		pthread_barrier_destroy(&go);
		/* Exactly one wins; the other is told the device id is taken, and by whom. */
		wins = (r[0].rc == 0) + (r[1].rc == 0);
		if (wins != 1)
			fail_msg("round %d: results %d (%s) and %d (%s)", round, r[0].rc, r[0].err,
				 r[1].rc, r[1].err);
		i = r[0].rc == 0 ? 1 : 0;
		assert_int_equal(r[i].rc, ST_E_LEDGER_DUP_ID);
		assert_non_null(strstr(r[i].err, r[1 - i].station));
		assert_int_equal(q_num("SELECT count(*) FROM station_ledger.certificates WHERE "
				       "device_id = 'dev-race-%d'",
				       round),
				 1);
	}
	for (i = 0; i < 2; i++)
		st_ledger_close(r[i].l);
}

struct waiter {
	struct st_ledger *l;
	int rc;
	char err[512];
};

static void *add_other_key(void *arg)
{
	struct waiter *w = arg;
	struct st_ledger_row row = intent("0b", "dev-x", "key-x2");
	int64_t id;

	w->rc = st_ledger_add_intent(w->l, &row, &id, w->err, sizeof(w->err));
	return NULL;
}

/* The second station's insert waits for the first station's transaction, then learns the
 * outcome: refused when it committed, recorded when it rolled back. Waiting is bounded by
 * the busy timeout. */
static void test_wait_for_other(void **state)
{
	struct st_ledger *a = open_st("st-a"), *b = open_st("st-b");
	struct waiter w = { .l = b };
	pthread_t th;
	int64_t id;
	int end, i;

	(void)state;
	for (end = 0; end < 2; end++) {
		assert_int_equal(st_ledger_begin(a, errbuf, sizeof(errbuf)), 0);
		add_ok(a, "0a", "dev-x", "key-x1");
		assert_int_equal(pthread_create(&th, NULL, add_other_key, &w), 0);
		for (i = 0; i < 1000 && q_num("SELECT count(*) FROM pg_stat_activity WHERE "
					      "application_name = 'station st-b' AND "
					      "wait_event_type = 'Lock'") != 1;
		     i++)
			usleep(10000);
		assert_true(i < 1000);
		if (end == 0) {
			assert_int_equal(st_ledger_commit(a, errbuf, sizeof(errbuf)), 0);
			pthread_join(th, NULL);
			assert_int_equal(w.rc, ST_E_LEDGER_DUP_ID);
			assert_non_null(strstr(w.err, "st-a"));
			assert_non_null(strstr(w.err, "dev-x"));
			/* Clear the way for the second round. */
			assert_int_equal(q_num("WITH u AS (UPDATE station_ledger.certificates "
					       "SET state = 'failed' WHERE device_id = 'dev-x' "
					       "RETURNING 1) SELECT count(*) FROM u"),
					 1);
		} else {
			assert_int_equal(st_ledger_rollback(a), 0);
			pthread_join(th, NULL);
			assert_int_equal(w.rc, 0);
		}
	}
	/* Without waiting: busy timeout 0 gives up at once, naming why. */
	assert_int_equal(st_ledger_begin(a, errbuf, sizeof(errbuf)), 0);
	add_ok(a, "0c", "dev-y", "key-y1");
	st_ledger_set_busy_timeout(b, 0);
	assert_int_equal(add(b, "0d", "dev-y", "key-y2", &id), ST_E_LEDGER_BUSY);
	assert_non_null(strstr(errbuf, "another station"));
	assert_int_equal(st_ledger_rollback(a), 0);
	st_ledger_close(a);
	st_ledger_close(b);
}

/* What the signing pool does for one board inside its round: the verdict, and the intent
 * when the verdict lets it issue. Returns the verdict or an error. */
struct station_step {
	struct st_ledger *l;
	const char *serial, *device, *key;
	int rc;
	char err[512];
};

static void *pool_step(void *arg)
{
	struct station_step *s = arg;
	struct st_ledger_row r = intent(s->serial, s->device, s->key);
	int64_t id = 0;
	int v;

	s->rc = st_ledger_begin(s->l, s->err, sizeof(s->err));
	if (s->rc < 0)
		return NULL;
	v = st_ledger_lookup(s->l, s->device, r.pubkey_sha256, NULL, s->err, sizeof(s->err));
	if (v == ST_LEDGER_NEW)
		s->rc = st_ledger_add_intent(s->l, &r, &id, s->err, sizeof(s->err));
	if (v < 0 || s->rc < 0) {
		st_ledger_rollback(s->l);
		s->rc = v < 0 ? v : s->rc;
		return NULL;
	}
	s->rc = st_ledger_commit(s->l, s->err, sizeof(s->err));
	if (s->rc == 0 && id)
		s->rc = st_ledger_set_cert(s->l, id, fake_cert, sizeof(fake_cert), 1000, 2000,
					   s->err, sizeof(s->err));
	if (s->rc == 0)
		s->rc = v;
	return NULL;
}

/* A verdict holds until its intent is in: station A looks a device id up (new), station B
 * then records the same id with another key from start to certificate, and only then does
 * A insert its intent. Without the device id's lock between lookup and intent both boards
 * would get a certificate (B's row is no longer an open intent, so the intent index lets
 * A's in). With it, B waits for A's transaction and is told the id is taken. */
static void test_verdict_holds(void **state)
{
	struct st_ledger *a = open_st("st-a");
	struct station_step b = { .l = open_st("st-b"), .serial = "0e", .device = "dev-v",
				  .key = "key-v2" };
	struct st_ledger_row r = intent("0d", "dev-v", "key-v1");
	pthread_t th;
	int64_t id;
	int i;

	(void)state;
	assert_int_equal(st_ledger_begin(a, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(st_ledger_lookup(a, "dev-v", r.pubkey_sha256, NULL, errbuf,
					  sizeof(errbuf)),
			 ST_LEDGER_NEW);
	assert_int_equal(pthread_create(&th, NULL, pool_step, &b), 0);
	/* B runs to its end, or waits for A. */
	for (i = 0; i < 1000 && q_num("SELECT count(*) FROM pg_stat_activity WHERE "
				      "application_name = 'station st-b' AND "
				      "wait_event_type = 'Lock'") != 1 &&
		    q_num("SELECT count(*) FROM station_ledger.certificates WHERE "
			  "cert_der IS NOT NULL") == 0;
	     i++)
		usleep(10000);
	assert_true(i < 1000);
	i = st_ledger_add_intent(a, &r, &id, errbuf, sizeof(errbuf));
	if (i == 0)
		i = st_ledger_commit(a, errbuf, sizeof(errbuf));
	else
		st_ledger_rollback(a);
	pthread_join(th, NULL);
	assert_int_equal(q_num("SELECT count(*) FROM station_ledger.certificates WHERE "
			       "device_id = 'dev-v' AND state <> 'failed'"),
			 1);
	assert_int_equal(i, 0);
	assert_int_equal(b.rc, ST_LEDGER_ID_OTHER_KEY);
	st_ledger_close(a);
	st_ledger_close(b.l);
}

struct seq_taker {
	struct st_ledger *l;
	uint64_t got[300];
	int rc;
	char err[512];
};

static void *take_numbers(void *arg)
{
	struct seq_taker *t = arg;
	int i;

	for (i = 0; i < 300 && t->rc == 0; i++) {
		if (i % 10 == 0)
			t->rc = st_ledger_begin(t->l, t->err, sizeof(t->err));
		if (t->rc == 0)
			t->rc = st_ledger_next_sequence(t->l, "SEQ-", &t->got[i], t->err,
							sizeof(t->err));
		if (t->rc == 0 && i % 10 == 9)
			t->rc = st_ledger_commit(t->l, t->err, sizeof(t->err));
	}
	return NULL;
}

static void test_sequences_across(void **state)
{
	static struct seq_taker t[2];
	static uint8_t seen[601];
	pthread_t th[2];
	int i, j;

	(void)state;
	memset(t, 0, sizeof(t));
	memset(seen, 0, sizeof(seen));
	t[0].l = open_st("st-a");
	t[1].l = open_st("st-b");
	for (i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&th[i], NULL, take_numbers, &t[i]), 0);
	for (i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	for (i = 0; i < 2; i++) {
		if (t[i].rc != 0)
			fail_msg("station %d: %s", i, t[i].err);
		for (j = 0; j < 300; j++) {
			assert_true(t[i].got[j] >= 1 && t[i].got[j] <= 600);
			assert_int_equal(seen[t[i].got[j]]++, 0);
			if (j > 0)
				assert_true(t[i].got[j] > t[i].got[j - 1]);
		}
		st_ledger_close(t[i].l);
	}
}

/* ---- A deadlock between two stations: one wins, the other's transaction is lost ---- */

struct crosser {
	struct st_ledger *l;
	const char *first, *second, *key;
	pthread_barrier_t *mid;
	int rc;
	char err[512];
};

static void *cross(void *arg)
{
	struct crosser *c = arg;
	struct st_ledger_row r1 = intent(c->first, c->first, c->key);
	struct st_ledger_row r2 = intent(c->second, c->second, c->key);
	char serial[8];
	int64_t id;

	r1.pubkey_sha256[0] ^= 1;
	snprintf(serial, sizeof(serial), "%s%s", c->first, c->second);
	r2.serial = serial;
	c->rc = st_ledger_begin(c->l, c->err, sizeof(c->err));
	if (c->rc == 0)
		c->rc = st_ledger_add_intent(c->l, &r1, &id, c->err, sizeof(c->err));
	pthread_barrier_wait(c->mid);
	if (c->rc == 0)
		c->rc = st_ledger_add_intent(c->l, &r2, &id, c->err, sizeof(c->err));
	c->rc = finish(c->l, c->rc, c->err, sizeof(c->err));
	return NULL;
}

static void test_deadlock(void **state)
{
	pthread_barrier_t mid;
	struct crosser c[2] = {
		{ .first = "aa", .second = "bb", .key = "key-a" },
		{ .first = "bb", .second = "aa", .key = "key-b" },
	};
	pthread_t th[2];
	int i;

	(void)state;
	pthread_barrier_init(&mid, NULL, 2);
	for (i = 0; i < 2; i++) {
		c[i].l = open_st(i ? "st-b" : "st-a");
		c[i].mid = &mid;
		assert_int_equal(pthread_create(&th[i], NULL, cross, &c[i]), 0);
	}
	for (i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&mid);
	if ((c[0].rc == 0) + (c[1].rc == 0) != 1)
		fail_msg("results %d (%s) and %d (%s)", c[0].rc, c[0].err, c[1].rc, c[1].err);
	i = c[0].rc == 0 ? 1 : 0;
	print_message("deadlock: the loser was told: %s\n", c[i].err);
	assert_true(c[i].rc == ST_E_LEDGER_IO || c[i].rc == ST_E_LEDGER_DUP_ID);
	/* The winner's two rows, nothing of the loser's. */
	assert_int_equal(q_num("SELECT count(*) FROM station_ledger.certificates"), 2);
	assert_int_equal(q_num("SELECT count(DISTINCT station) FROM station_ledger.certificates"),
			 1);
	for (i = 0; i < 2; i++)
		st_ledger_close(c[i].l);
}

/* ---- Schema, foreign databases, passwords ---- */

static void test_schema(void **state)
{
	struct st_ledger *l = NULL;
	char spec[4300];
	int rc;

	(void)state;
	/* A database without a ledger: commands that only read refuse it. */
	rc = st_ledger_open_flags(conn, NULL, ST_LEDGER_NOCREATE, &l, errbuf, sizeof(errbuf));
	assert_int_equal(rc, ST_E_LEDGER_CORRUPT);
	assert_non_null(strstr(errbuf, "no station ledger"));
	/* Someone else's schema of that name. */
	assert_int_equal(tu_pg_exec(conn, "CREATE SCHEMA station_ledger", errbuf, sizeof(errbuf)),
			 0);
	rc = st_ledger_open(conn, NULL, &l, errbuf, sizeof(errbuf));
	assert_int_equal(rc, ST_E_LEDGER_CORRUPT);
	assert_non_null(strstr(errbuf, "not a station ledger"));
	assert_int_equal(tu_pg_fresh(conn, sizeof(conn), errbuf, sizeof(errbuf)), 0);

	/* Written by a newer station. */
	st_ledger_close(open_st("st-a"));
	assert_int_equal(tu_pg_exec(conn, "UPDATE station_ledger.meta SET value = '99' WHERE "
					  "key = 'version'",
				    errbuf, sizeof(errbuf)),
			 0);
	rc = st_ledger_open(conn, NULL, &l, errbuf, sizeof(errbuf));
	assert_int_equal(rc, ST_E_LEDGER_VERSION);
	assert_non_null(strstr(errbuf, "99"));
	assert_null(l);
	assert_int_equal(tu_pg_exec(conn, "UPDATE station_ledger.meta SET value = '3' WHERE "
					  "key = 'version'",
				    errbuf, sizeof(errbuf)),
			 0);
	l = open_st("st-a");
	assert_int_equal(st_ledger_integrity(l, errbuf, sizeof(errbuf)), 0);
	st_ledger_close(l);
	l = NULL;
	/* A unique index gone is a damaged ledger. */
	assert_int_equal(tu_pg_exec(conn, "DROP INDEX station_ledger.certificates_intent", errbuf,
				    sizeof(errbuf)),
			 0);
	l = open_st("st-a");
	assert_int_equal(st_ledger_integrity(l, errbuf, sizeof(errbuf)), ST_E_LEDGER_CORRUPT);
	assert_non_null(strstr(errbuf, "certificates_intent"));
	st_ledger_close(l);
	l = NULL;

	/* A password in the connection string is refused, and not repeated. */
	snprintf(spec, sizeof(spec), "%s password=hunter2secret", conn);
	rc = st_ledger_open(spec, NULL, &l, errbuf, sizeof(errbuf));
	assert_int_equal(rc, ST_E_INVAL);
	assert_non_null(strstr(errbuf, "password file"));
	assert_null(strstr(errbuf, "hunter2secret"));
	rc = st_ledger_open("postgresql://station:hunter2secret@localhost/ledger", NULL, &l,
			    errbuf, sizeof(errbuf));
	assert_int_equal(rc, ST_E_INVAL);
	assert_null(strstr(errbuf, "hunter2secret"));
	/* Without the password file the server refuses the login. */
	snprintf(spec, sizeof(spec), "%s passfile=/nonexistent", conn);
	rc = st_ledger_open(spec, NULL, &l, errbuf, sizeof(errbuf));
	assert_int_equal(rc, ST_E_LEDGER_OPEN);
	assert_non_null(strstr(errbuf, "cannot connect"));
	/* No server there: one may come (ST_E_LEDGER_IO), where a refusal will stay. */
	snprintf(spec, sizeof(spec), "%s host=/nonexistent", conn);
	rc = st_ledger_open(spec, NULL, &l, errbuf, sizeof(errbuf));
	assert_int_equal(rc, ST_E_LEDGER_IO);
	assert_non_null(strstr(errbuf, "cannot reach the database"));
	assert_null(l);
	/* Which strings name a server. */
	assert_false(st_ledger_spec_is_file("postgresql://db/ledger"));
	assert_false(st_ledger_spec_is_file("host=/run/postgresql dbname=ledger"));
	assert_true(st_ledger_spec_is_file("/var/lib/station/ledger.db"));
	assert_true(st_ledger_spec_is_file("ledger=1.db"));
}

/* A server on another machine must be verified (sslmode=verify-ca or verify-full, or Kerberos
 * encryption), or the string must give that up in words (sslmode=require, allow, disable):
 * libpq's default verifies nothing and falls back to plain text. Refused before any
 * connection; accepted strings go on to connect (here to nothing that answers). */
static void test_server_auth(void **state)
{
	static const char *const refused[] = {
		/* Lists pair up: an entry without a hostaddr connects to its host. */
		"host=localhost,db.line.example hostaddr=127.0.0.1,",
		"host=localhost,localhost hostaddr=127.0.0.1,192.0.2.1",
		"host=db.line.example dbname=ledger",
		"postgresql://station@db.line.example/ledger",
		"postgresql://station@db.line.example/ledger?sslmode=prefer",
		"host=db.line.example sslmode=prefer dbname=ledger",
		"hostaddr=192.0.2.1 dbname=ledger",
		"host=/run/postgresql hostaddr=192.0.2.1",
		"host=localhost,db.line.example dbname=ledger",
		"postgresql://[2001:db8::1]/ledger",
		"host=127.0.0.1.example.com",
		"host=128.0.0.1",
		"host=::ffff:192.0.2.1",
		"host=db.line.example sslmode=verify-fulll",
		"host=db.line.example gssencmode=prefer",
	};
	static const char *const taken[] = {
		"hostaddr=192.0.2.1 host=db.line.example sslmode=verify-full",
		"hostaddr=192.0.2.1 sslmode=verify-ca",
		"hostaddr=192.0.2.1 sslmode=require",
		"hostaddr=192.0.2.1 sslmode=disable",
		"hostaddr=192.0.2.1 gssencmode=require sslmode=disable",
		"host=db.line.example hostaddr=127.0.0.1 port=1",
		"host=localhost port=1",
		"host=127.0.0.2,::1,/nonexistent port=1",
		"host=localhost,db.line.example hostaddr=127.0.0.1,127.0.0.2 port=1",
	};
	struct st_ledger *l = NULL;
	char spec[512];
	int rc;

	(void)state;
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		rc = st_ledger_open(refused[i], NULL, &l, errbuf, sizeof(errbuf));
		if (rc != ST_E_INVAL || !strstr(errbuf, "is not on this machine") ||
		    !strstr(errbuf, "sslmode=verify-full"))
			fail_msg("'%s': %d %s", refused[i], rc, errbuf);
		assert_null(l);
	}
	assert_non_null(strstr(errbuf, "db.line.example"));
	for (size_t i = 0; i < sizeof(taken) / sizeof(taken[0]); i++) {
		snprintf(spec, sizeof(spec), "%s dbname=ledger connect_timeout=2", taken[i]);
		rc = st_ledger_open(spec, NULL, &l, errbuf, sizeof(errbuf));
		if (rc == 0 || rc == ST_E_INVAL || strstr(errbuf, "not on this machine"))
			fail_msg("'%s': %d %s", taken[i], rc, errbuf);
		assert_null(l);
	}
	/* A service file may name any server: the string must say sslmode. */
	rc = st_ledger_open("service=line", NULL, &l, errbuf, sizeof(errbuf));
	assert_int_equal(rc, ST_E_INVAL);
	assert_non_null(strstr(errbuf, "names a service"));
	/* The environment counts as libpq reads it. */
	setenv("PGHOST", "db.line.example", 1);
	rc = st_ledger_open("dbname=ledger", NULL, &l, errbuf, sizeof(errbuf));
	assert_int_equal(rc, ST_E_INVAL);
	assert_non_null(strstr(errbuf, "db.line.example"));
	unsetenv("PGHOST");
	/* Each option from the environment where the string has none of its own. */
	setenv("PGHOSTADDR", "192.0.2.1", 1);
	rc = st_ledger_open("host=localhost dbname=ledger", NULL, &l, errbuf, sizeof(errbuf));
	assert_int_equal(rc, ST_E_INVAL);
	assert_non_null(strstr(errbuf, "192.0.2.1"));
	unsetenv("PGHOSTADDR");
	setenv("PGSSLMODE", "verify-full", 1);
	rc = st_ledger_open("hostaddr=192.0.2.1 dbname=ledger connect_timeout=2", NULL, &l, errbuf,
			    sizeof(errbuf));
	assert_true(rc != 0 && rc != ST_E_INVAL);
	unsetenv("PGSSLMODE");
}

/* Stations starting together on an empty database migrate it once. */
static void test_migrate_together(void **state)
{
	pid_t pids[4];
	int i, status;

	(void)state;
	fflush(NULL);
	for (i = 0; i < 4; i++) {
		pids[i] = fork();
		assert_true(pids[i] >= 0);
		if (pids[i] == 0) {
			struct st_ledger *l = NULL;
			char name[16], err[512];

			snprintf(name, sizeof(name), "st-%d", i);
			if (st_ledger_open(conn, name, &l, err, sizeof(err)) != 0) {
				fprintf(stderr, "%s\n", err);
				_exit(1);
			}
			st_ledger_close(l);
			_exit(0);
		}
	}
	for (i = 0; i < 4; i++) {
		assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	assert_int_equal(q_num("SELECT value::int FROM station_ledger.meta WHERE key = 'version'"),
			 3);
}

/* ---- The connection lost ---- */

/* Mid-transaction: the transaction goes on as if nothing happened, with the same row ids. */
static void test_lost_mid_transaction(void **state)
{
	struct st_ledger *a = open_st("st-a");
	struct st_ledger_row *row = NULL;
	char serial[8], device[16];
	int64_t ids[10];
	uint64_t n;
	int i;

	(void)state;
	assert_int_equal(st_ledger_begin(a, errbuf, sizeof(errbuf)), 0);
	for (i = 0; i < 10; i++) {
		if (i == 5)
			cut("st-a");
		snprintf(serial, sizeof(serial), "e%d", i);
		snprintf(device, sizeof(device), "dev-e%d", i);
		ids[i] = add_ok(a, serial, device, serial);
		if (i % 2)
			sign_ok(a, ids[i]);
	}
	cut("st-a");
	assert_int_equal(st_ledger_next_sequence(a, "E-", &n, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(n, 1);
	assert_int_equal(st_ledger_commit(a, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(q_num("SELECT count(*) FROM station_ledger.certificates"), 10);
	for (i = 0; i < 10; i++) {
		assert_int_equal(st_ledger_get(a, ids[i], &row, errbuf, sizeof(errbuf)), 0);
		assert_int_equal(row->state, i % 2 ? ST_LEDGER_SIGNED : ST_LEDGER_INTENT);
		st_ledger_row_free(row);
	}
	/* Outside a transaction too. */
	cut("st-a");
	assert_int_equal(st_ledger_mark_delivered(a, ids[1], errbuf, sizeof(errbuf)), 0);
	cut("st-a");
	assert_int_equal(st_ledger_get(a, ids[1], &row, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(row->state, ST_LEDGER_DELIVERED);
	st_ledger_row_free(row);
	assert_int_equal(st_ledger_next_sequence(a, "E-", &n, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(n, 2);
	st_ledger_close(a);
}

static void cut_at_commit(enum st_ledger_hook_point point, void *arg)
{
	int *cuts = arg;

	if (point == ST_LEDGER_HOOK_COMMIT_START && *cuts > 0) {
		(*cuts)--;
		cut("st-a");
	}
}

/* The connection lost as COMMIT is sent: the server never committed; the station asks,
 * replays and commits once. */
static void test_lost_at_commit(void **state)
{
	struct st_ledger *a = open_st("st-a");
	int cuts = 1;
	int64_t x, y;

	(void)state;
	st_ledger_set_hook(a, cut_at_commit, &cuts);
	assert_int_equal(st_ledger_begin(a, errbuf, sizeof(errbuf)), 0);
	x = add_ok(a, "c1", "dev-c1", "key-c1");
	y = add_ok(a, "c2", "dev-c2", "key-c2");
	sign_ok(a, y);
	assert_int_equal(st_ledger_commit(a, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(cuts, 0);
	st_ledger_set_hook(a, NULL, NULL);
	assert_int_equal(q_num("SELECT count(*) FROM station_ledger.certificates"), 2);
	assert_int_equal(q_num("SELECT count(*) FROM station_ledger.certificates WHERE id = %lld "
			       "AND state = 'intent'",
			       (long long)x),
			 1);
	assert_int_equal(q_num("SELECT count(*) FROM station_ledger.certificates WHERE id = %lld "
			       "AND state = 'signed'",
			       (long long)y),
			 1);
	st_ledger_close(a);
}

/* The server committed and its answer was lost: the station asks and does not commit
 * again. Run in a child: the fault hook is read from the environment at open. */
static void test_answer_lost(void **state)
{
	pid_t pid;
	int status;

	(void)state;
#ifndef STATION_TEST_HOOKS
	skip(); /* the lost answer is made by a test hook, compiled only into test builds */
#endif
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct st_ledger *a = NULL;
		int64_t x = 0, y = 0;

		setenv("STATION_TEST_FAIL", "ledger.commit_answer_lost:2", 1);
		if (st_ledger_open(conn, "st-a", &a, errbuf, sizeof(errbuf)) != 0 ||
		    add(a, "d0", "dev-d0", "key-d0", &x) != 0 || /* commit 1 */
		    st_ledger_begin(a, errbuf, sizeof(errbuf)) != 0 ||
		    st_ledger_set_cert(a, x, fake_cert, sizeof(fake_cert), 1, 2, errbuf,
				       sizeof(errbuf)) != 0 ||
		    add(a, "d1", "dev-d1", "key-d1", &y) != 0 ||
		    st_ledger_commit(a, errbuf, sizeof(errbuf)) != 0) { /* commit 2: lost */
			fprintf(stderr, "answer lost: %s\n", errbuf);
			_exit(3);
		}
		st_ledger_close(a);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(q_num("SELECT count(*) FROM station_ledger.certificates"), 2);
	assert_int_equal(q_num("SELECT count(*) FROM station_ledger.certificates WHERE "
			       "state = 'signed'"),
			 1);
}

/* Replaying finds the world changed (another station took the number this one was
 * given): the transaction is lost, said so, and nothing of it is recorded. */
static void test_replay_differs(void **state)
{
	struct st_ledger *a = open_st("st-a"), *b = open_st("st-b");
	uint64_t na, nb;
	int64_t id;

	(void)state;
	assert_int_equal(st_ledger_begin(a, errbuf, sizeof(errbuf)), 0);
	add_ok(a, "f1", "dev-f1", "key-f1");
	assert_int_equal(st_ledger_next_sequence(a, "F-", &na, errbuf, sizeof(errbuf)), 0);
	cut("st-a");
	assert_int_equal(st_ledger_next_sequence(b, "F-", &nb, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(nb, na);
	assert_int_equal(add(a, "f2", "dev-f2", "key-f2", &id), ST_E_LEDGER_IO);
	assert_non_null(strstr(errbuf, "lost"));
	assert_int_equal(st_ledger_commit(a, errbuf, sizeof(errbuf)), ST_E_LEDGER_IO);
	assert_non_null(strstr(errbuf, "rolled back"));
	assert_int_equal(q_num("SELECT count(*) FROM station_ledger.certificates"), 0);
	/* The handle works again for the next transaction. */
	add_ok(a, "f3", "dev-f3", "key-f3");
	st_ledger_close(a);
	st_ledger_close(b);
}

struct outage_seen {
	int waits, backs;
	char reason[512];
};

static int outage_wait(void *arg, const char *reason, unsigned ms)
{
	struct outage_seen *o = arg;

	(void)ms;
	snprintf(o->reason, sizeof(o->reason), "%s", reason);
	/* Give up after a few: the test only checks that the handler is asked. */
	return ++o->waits > 3;
}

static void outage_back(void *arg)
{
	((struct outage_seen *)arg)->backs++;
}

/* With an outage handler: a server that does not answer makes the call wait through the
 * handler, which may give up; without one the call fails at once. */
static void test_outage_handler(void **state)
{
	struct st_ledger *a = open_st("st-a");
	struct outage_seen seen = { 0 };
	struct st_ledger_outage o = { outage_wait, outage_back, &seen };
	int64_t id;

	(void)state;
	st_ledger_set_outage(a, &o);
	/* A cut the first reconnect mends: no wait. */
	cut("st-a");
	add_ok(a, "a1", "dev-a1", "key-a1");
	assert_int_equal(seen.waits, 0);
	/* A server that refuses new connections for this role until it is allowed again. */
	assert_int_equal(tu_pg_exec(admin(), "ALTER ROLE station CONNECTION LIMIT 0", errbuf,
				    sizeof(errbuf)),
			 0);
	cut("st-a");
	assert_int_not_equal(add(a, "a2", "dev-a2", "key-a2", &id), 0);
	assert_int_equal(seen.waits, 4);
	assert_non_null(strstr(seen.reason, "cannot connect"));
	assert_int_equal(tu_pg_exec(admin(), "ALTER ROLE station CONNECTION LIMIT -1", errbuf,
				    sizeof(errbuf)),
			 0);
	add_ok(a, "a3", "dev-a3", "key-a3");
	assert_int_equal(seen.backs, 0);
	st_ledger_close(a);
}

/* ---- A station's SQLite ledger imported (station ledger migrate) ---- */

static char import_dir[4096];

/* A SQLite ledger file of station, made afresh in the test's directory. */
static struct st_ledger *sqlite_ledger(const char *station)
{
	struct st_ledger *l = NULL;
	char p[4200];

	snprintf(p, sizeof(p), "%s/%s.db", import_dir, station);
	unlink(p);
	if (st_ledger_open(p, station, &l, errbuf, sizeof(errbuf)) != 0)
		fail_msg("open %s: %s", p, errbuf);
	return l;
}

/* Authorization id of units units, its document hash from doc. */
static void register_auth(struct st_ledger *l, const char *id, const char *doc, int64_t units)
{
	struct st_ledger_auth a = tu_ledger_auth(id, doc, units);

	if (st_ledger_auth_register(l, &a, NULL, errbuf, sizeof(errbuf)) != 0)
		fail_msg("register %s: %s", id, errbuf);
}

/* An intent under authorization auth_id: its status, *id the row. */
static int take_unit(struct st_ledger *l, const char *serial, const char *device,
		     const char *key, const char *auth_id, int64_t *id)
{
	struct st_ledger_row r = intent(serial, device, key);

	return st_ledger_add_intent_auth(l, &r, auth_id, id, NULL, NULL, errbuf,
					 sizeof(errbuf));
}

static void attempt_ok(struct st_ledger *l, const char *outcome, const char *device,
		       int64_t certificate)
{
	struct st_ledger_attempt a;

	memset(&a, 0, sizeof(a));
	a.time = 5000;
	a.slot = "A1";
	a.outcome = outcome;
	a.device_id = device;
	a.auth_id = certificate ? "AUTH-1" : NULL;
	a.certificate = certificate;
	a.ms = 1200;
	if (st_ledger_add_attempt(l, &a, errbuf, sizeof(errbuf)) != 0)
		fail_msg("attempt %s: %s", device, errbuf);
}

/* After a refused import of station's ledger: none of its rows, and the first ledger's
 * attempts and count only. */
static void nothing_of(const char *station)
{
	assert_int_equal(q_num("SELECT count(*) FROM station_ledger.certificates WHERE station = "
			       "'%s'",
			       station),
			 0);
	assert_int_equal(q_num("SELECT count(*) FROM station_ledger.attempts"), 3);
	assert_int_equal(q_num("SELECT used FROM station_ledger.authorizations WHERE id = "
			       "'AUTH-1'"),
			 2);
}

static int import(struct st_ledger *to, struct st_ledger *from,
		  struct st_ledger_import_stats *st)
{
	return st_ledger_import(to, from, NULL, NULL, st, errbuf, sizeof(errbuf));
}

/* A station's ledger with an authorization of 2 units, both used, and its attempts, moved
 * onto the line's database: the database counts the 2 units, so a third certificate under
 * the document is refused there too; the attempts come along, naming their certificates'
 * rows on the database. Importing again adds nothing; another document under the same id,
 * and a ledger whose rows would take the document beyond its units, are refused whole. */
static void test_import_auth(void **state)
{
	struct st_ledger_import_stats st;
	struct st_ledger *old, *to, *other;
	int64_t r1 = 0, r2 = 0, r4 = 0, r5 = 0, id = 0;
	const char *d = tu_tmpdir("ledger-pg-import");

	(void)state;
	assert_non_null(d);
	snprintf(import_dir, sizeof(import_dir), "%s", d);
	old = sqlite_ledger("st-old");
	register_auth(old, "AUTH-1", "doc-1", 2);
	assert_int_equal(take_unit(old, "a1", "dev-1", "key-1", "AUTH-1", &r1), 0);
	sign_ok(old, r1);
	assert_int_equal(st_ledger_mark_delivered(old, r1, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(take_unit(old, "a2", "dev-2", "key-2", "AUTH-1", &r2), 0);
	sign_ok(old, r2);
	assert_int_equal(take_unit(old, "a3", "dev-3", "key-3", "AUTH-1", &id),
			 ST_E_AUTH_EXHAUSTED);
	r4 = add_ok(old, "a4", "dev-4", "key-4");
	attempt_ok(old, "pass", "dev-1", r1);
	attempt_ok(old, "pass", "dev-2", r2);
	attempt_ok(old, "fail", "dev-3", 0);

	to = open_st("st-line");
	assert_int_equal(import(to, old, &st), 0);
	assert_int_equal(st.auths, 1);
	assert_int_equal(st.auths_added, 1);
	assert_int_equal(st.rows_added, 3);
	assert_int_equal(st.attempts, 3);
	assert_int_equal(st.attempts_added, 3);
	assert_int_equal(q_num("SELECT used FROM station_ledger.authorizations WHERE id = "
			       "'AUTH-1' AND units = 2 AND lot = 'LOT-7' AND station = 'st-old' "
			       "AND not_after = 2000000000"),
			 2);
	assert_int_equal(q_num("SELECT count(*) FROM station_ledger.certificates WHERE auth_id = "
			       "'AUTH-1' AND station = 'st-old'"),
			 2);
	assert_int_equal(take_unit(to, "b1", "dev-b1", "key-b1", "AUTH-1", &id),
			 ST_E_AUTH_EXHAUSTED);
	assert_int_equal(q_num("SELECT count(*) FROM station_ledger.attempts WHERE station = "
			       "'st-old'"),
			 3);
	/* Each pass names its certificate's row on the database. */
	assert_int_equal(q_num("SELECT count(*) FROM station_ledger.attempts t JOIN "
			       "station_ledger.certificates c ON c.id = t.certificate WHERE "
			       "c.device_id = t.device_id AND t.outcome = 'pass' AND t.ms = 1200"),
			 2);
	assert_int_equal(st_ledger_integrity(to, errbuf, sizeof(errbuf)), 0);

	/* Again: nothing added, no unit counted twice. */
	assert_int_equal(import(to, old, &st), 0);
	assert_int_equal(st.auths_added + st.rows_added + st.rows_updated + st.attempts_added, 0);
	assert_int_equal(st.attempts, 3);
	assert_int_equal(q_num("SELECT used FROM station_ledger.authorizations"), 2);
	assert_int_equal(q_num("SELECT count(*) FROM station_ledger.attempts"), 3);
	assert_int_equal(q_num("SELECT count(*) FROM station_ledger.certificates"), 3);

	/* The database moves on (a2 delivered, a4 superseded by an operator) while the file
	 * stays as it was: migrated again, the file takes neither back. The file moving on
	 * (a5 signed after its intent was migrated) is carried forward. */
	assert_int_equal(st_ledger_mark_delivered(to, q_num("SELECT id FROM station_ledger."
							    "certificates WHERE origin_id = %lld",
							    (long long)r2),
						  errbuf, sizeof(errbuf)),
			 0);
	assert_int_equal(st_ledger_supersede(to, q_num("SELECT id FROM station_ledger."
						       "certificates WHERE origin_id = %lld",
						       (long long)r4),
					     errbuf, sizeof(errbuf)),
			 0);
	r5 = add_ok(old, "a5", "dev-5", "key-5");
	assert_int_equal(import(to, old, &st), 0);
	assert_int_equal(st.rows_added, 1);
	sign_ok(old, r5);
	assert_int_equal(import(to, old, &st), 0);
	assert_int_equal(st.rows_added + st.rows_updated, 1);
	assert_int_equal(q_num("SELECT count(*) FROM station_ledger.certificates WHERE "
			       "(serial = 'a2' AND state = 'delivered') OR (serial = 'a4' AND "
			       "state = 'failed') OR (serial = 'a5' AND state = 'signed')"),
			 3);
	assert_int_equal(q_num("SELECT used FROM station_ledger.authorizations"), 2);
	assert_int_equal(st_ledger_integrity(to, errbuf, sizeof(errbuf)), 0);

	/* Another document under the same id: refused, naming the id; nothing imported. */
	other = sqlite_ledger("st-other");
	register_auth(other, "AUTH-1", "another doc", 2);
	add_ok(other, "c1", "dev-c1", "key-c1");
	attempt_ok(other, "fail", "dev-c1", 0);
	assert_int_equal(import(to, other, &st), ST_E_AUTH_CONFLICT);
	assert_non_null(strstr(errbuf, "AUTH-1"));
	nothing_of("st-other");
	st_ledger_close(other);

	/* The same document, whose units the database has counted already: its superseded
	 * intent takes none, and it is the same authorization. */
	other = sqlite_ledger("st-same");
	register_auth(other, "AUTH-1", "doc-1", 2);
	assert_int_equal(take_unit(other, "d1", "dev-d1", "key-d1", "AUTH-1", &id), 0);
	assert_int_equal(st_ledger_supersede(other, id, errbuf, sizeof(errbuf)), 0);
	assert_int_equal(import(to, other, &st), 0);
	assert_int_equal(st.auths, 1);
	assert_int_equal(st.auths_added, 0);
	assert_int_equal(st.rows_added, 1);
	assert_int_equal(q_num("SELECT used FROM station_ledger.authorizations"), 2);
	st_ledger_close(other);

	/* A live row of the same document beyond its units: the database refuses it, and
	 * nothing of that ledger is imported (its new authorization, rows or attempts). */
	other = sqlite_ledger("st-more");
	register_auth(other, "AUTH-2", "doc-2", 5);
	assert_int_equal(take_unit(other, "e0", "dev-e0", "key-e0", "AUTH-2", &id), 0);
	register_auth(other, "AUTH-1", "doc-1", 2);
	assert_int_equal(take_unit(other, "e1", "dev-e1", "key-e1", "AUTH-1", &id), 0);
	attempt_ok(other, "fail", "dev-e2", 0);
	assert_int_equal(import(to, other, &st), ST_E_AUTH_EXHAUSTED);
	assert_non_null(strstr(errbuf, "authorization AUTH-1 has no unit left"));
	nothing_of("st-more");
	assert_int_equal(q_num("SELECT count(*) FROM station_ledger.authorizations"), 1);
	st_ledger_close(other);

	/* The database holds the count after the refusal, and takes writes again. */
	assert_int_equal(take_unit(to, "b1", "dev-b1", "key-b1", "AUTH-1", &id),
			 ST_E_AUTH_EXHAUSTED);
	add_ok(to, "b2", "dev-b2", "key-b2");
	assert_int_equal(st_ledger_integrity(to, errbuf, sizeof(errbuf)), 0);
	st_ledger_close(to);
	st_ledger_close(old);
	assert_int_equal(tu_rmtree(import_dir), 0);
}

static const struct CMUnitTest tests[] = {
	cmocka_unit_test_setup(test_stations, fresh_db),
	cmocka_unit_test_setup(test_race, fresh_db),
	cmocka_unit_test_setup(test_wait_for_other, fresh_db),
	cmocka_unit_test_setup(test_verdict_holds, fresh_db),
	cmocka_unit_test_setup(test_sequences_across, fresh_db),
	cmocka_unit_test_setup(test_deadlock, fresh_db),
	cmocka_unit_test_setup(test_schema, fresh_db),
	cmocka_unit_test(test_server_auth),
	cmocka_unit_test_setup(test_migrate_together, fresh_db),
	cmocka_unit_test_setup(test_lost_mid_transaction, fresh_db),
	cmocka_unit_test_setup(test_lost_at_commit, fresh_db),
	cmocka_unit_test_setup(test_answer_lost, fresh_db),
	cmocka_unit_test_setup(test_replay_differs, fresh_db),
	cmocka_unit_test_setup(test_outage_handler, fresh_db),
	cmocka_unit_test_setup(test_import_auth, fresh_db),
};

int main(void)
{
	if (!tu_pg_conn()) {
		fprintf(stderr, "test_ledger_pg: STATION_TEST_PG is not set; run it as "
				"'bash tests/lib/pg.sh run test_ledger_pg'\n");
		return 1;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
