/* The ledger's production authorizations and attempts on real SQLite files: registering a
 * document, consuming units with intents (exhausted, given back by superseded and failed
 * intents, kept by rows with a certificate), two handles and two processes on one file
 * sharing one count, kill -9 in the middle of a batch that consumes units, ledgers of the
 * first and third schemas migrated, and the attempt rows with their time filter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/sha.h>
#include <sqlite3.h>

#include "err.h"
#include "ledger.h"
#include "testutil.h"

static char dir[4096];
static char dbpath[4200];
static char ebuf[1024];

static int setup(void **state)
{
	const char *d = tu_tmpdir("ledger-auth");

	(void)state;
	if (!d)
		return -1;
	snprintf(dir, sizeof(dir), "%s", d);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	return tu_rmtree(dir);
}

static const char *db_named(const char *name)
{
	snprintf(dbpath, sizeof(dbpath), "%s/%s.db", dir, name);
	unlink(dbpath);
	return dbpath;
}

static struct st_ledger *ledger_as(const char *p, const char *station)
{
	struct st_ledger *l = NULL;

	if (st_ledger_open(p, station, &l, ebuf, sizeof(ebuf)) != 0)
		fail_msg("open %s: %s", p, ebuf);
	return l;
}

static void register_ok(struct st_ledger *l, const char *id, int64_t units)
{
	struct st_ledger_auth a = tu_ledger_auth(id, id, units);

	if (st_ledger_auth_register(l, &a, NULL, ebuf, sizeof(ebuf)) != 0)
		fail_msg("register %s: %s", id, ebuf);
}

/* Serial, device id and key of board n (distinct per n). */
static struct st_ledger_row board_row(int n, char serial[16], char device[32])
{
	struct st_ledger_row r;
	char seed[32];

	memset(&r, 0, sizeof(r));
	snprintf(serial, 16, "%04x", n + 1);
	snprintf(device, 32, "board-%d", n);
	snprintf(seed, sizeof(seed), "key-%d", n);
	r.serial = serial;
	r.device_id = device;
	r.profile = (char *)"sim-gw";
	r.slot = (char *)"A1";
	SHA256((const unsigned char *)seed, strlen(seed), r.pubkey_sha256);
	SHA256((const unsigned char *)serial, strlen(serial), r.csr_sha256);
	return r;
}

/* The intent of board n under authorization id: its status, *row the row. */
static int take(struct st_ledger *l, int n, const char *id, int64_t *row, int64_t *used)
{
	char serial[16], device[32];
	struct st_ledger_row r = board_row(n, serial, device);
	int64_t rid = 0, units = 0;
	int rc = st_ledger_add_intent_auth(l, &r, id, &rid, used, &units, ebuf, sizeof(ebuf));

	if (row)
		*row = rid;
	return rc;
}

static const uint8_t cert_bytes[] = { 0x30, 0x03, 0x02, 0x01, 0x07 };

/* Counts the rows naming id that hold or may hold a certificate, straight from SQL. */
static void count_live(const char *p, const char *id, int64_t *live, int64_t *certs,
		       int64_t *used)
{
	sqlite3 *db;
	sqlite3_stmt *s;

	assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db,
					    "SELECT (SELECT count(*) FROM certificates WHERE "
					    "auth_id = ?1 AND (state <> 'failed' OR cert_der IS NOT "
					    "NULL)), (SELECT count(*) FROM certificates WHERE auth_id "
					    "= ?1 AND cert_der IS NOT NULL), (SELECT used FROM "
					    "authorizations WHERE id = ?1)",
					    -1, &s, NULL),
			 SQLITE_OK);
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	*live = sqlite3_column_int64(s, 0);
	*certs = sqlite3_column_int64(s, 1);
	*used = sqlite3_column_int64(s, 2);
	sqlite3_finalize(s);
	sqlite3_close(db);
}

static void test_register(void **state)
{
	struct st_ledger *l = ledger_as(db_named("register"), "line-1");
	struct st_ledger_auth a = tu_ledger_auth("auth-1", "doc-1", 10), b;
	int64_t used = -1;

	(void)state;
	assert_int_equal(st_ledger_auth_register(l, &a, &used, ebuf, sizeof(ebuf)), 0);
	assert_int_equal(used, 0);
	/* The same document again (a reload, another station): nothing changes. */
	assert_int_equal(st_ledger_auth_register(l, &a, &used, ebuf, sizeof(ebuf)), 0);
	/* Another document under the same id: refused, whatever differs. */
	b = tu_ledger_auth("auth-1", "doc-2", 10);
	assert_int_equal(st_ledger_auth_register(l, &b, NULL, ebuf, sizeof(ebuf)),
			 ST_E_AUTH_CONFLICT);
	assert_non_null(strstr(ebuf, "auth-1"));
	b = tu_ledger_auth("auth-1", "doc-1", 11);
	assert_int_equal(st_ledger_auth_register(l, &b, NULL, ebuf, sizeof(ebuf)),
			 ST_E_AUTH_CONFLICT);
	b = tu_ledger_auth("", "doc-1", 11);
	assert_int_equal(st_ledger_auth_register(l, &b, NULL, ebuf, sizeof(ebuf)), ST_E_INVAL);
	b = tu_ledger_auth("auth-0", "doc-0", 0);
	assert_int_equal(st_ledger_auth_register(l, &b, NULL, ebuf, sizeof(ebuf)), ST_E_INVAL);
	/* Consuming needs a registered authorization. */
	assert_int_equal(take(l, 0, "auth-9", NULL, NULL), ST_E_NOTFOUND);
	st_ledger_close(l);
}

static void test_consume(void **state)
{
	const char *p = db_named("consume");
	struct st_ledger *l = ledger_as(p, "line-1");
	struct st_ledger_row *r = NULL, again;
	char serial[16], device[32];
	int64_t row[8], used = 0, live, certs, n, id;
	uint8_t key[32];

	(void)state;
	register_ok(l, "lot-3", 3);
	assert_int_equal(take(l, 0, "lot-3", &row[0], &used), 0);
	assert_int_equal(used, 1);
	assert_int_equal(take(l, 1, "lot-3", &row[1], &used), 0);
	assert_int_equal(take(l, 2, "lot-3", &row[2], &used), 0);
	assert_int_equal(used, 3);
	/* The fourth board: refused, and nothing of it is written. */
	assert_int_equal(take(l, 3, "lot-3", &row[3], &used), ST_E_AUTH_EXHAUSTED);
	assert_int_equal(row[3], 0);
	assert_non_null(strstr(ebuf, "lot-3"));
	again = board_row(3, serial, device);
	memcpy(key, again.pubkey_sha256, 32);
	assert_int_equal(st_ledger_lookup(l, device, key, NULL, ebuf, sizeof(ebuf)),
			 ST_LEDGER_NEW);

	/* A certificate keeps its unit through signed, failed after signing, delivered. */
	assert_int_equal(st_ledger_set_cert(l, row[0], cert_bytes, sizeof(cert_bytes), 1, 2,
					    ebuf, sizeof(ebuf)),
			 0);
	assert_int_equal(st_ledger_mark_failed(l, row[0], "board left", ebuf, sizeof(ebuf)), 0);
	assert_int_equal(st_ledger_mark_delivered(l, row[0], ebuf, sizeof(ebuf)), 0);
	assert_int_equal(take(l, 3, "lot-3", NULL, NULL), ST_E_AUTH_EXHAUSTED);

	/* An intent that failed without a certificate gives its unit back. */
	assert_int_equal(st_ledger_mark_failed(l, row[1], "CSR_SIGNATURE", ebuf, sizeof(ebuf)),
			 0);
	count_live(p, "lot-3", &live, &certs, &n);
	assert_int_equal(n, 2);
	assert_int_equal(live, 2);
	assert_int_equal(take(l, 3, "lot-3", &row[3], &used), 0);
	assert_int_equal(used, 3);

	/* Board 2 comes back after a crash ("possibly signed"): every unit is used, yet its new
	 * intent supersedes the old one in the same step and takes over its unit. */
	assert_int_equal(take(l, 4, "lot-3", NULL, NULL), ST_E_AUTH_EXHAUSTED);
	assert_int_equal(take(l, 2, "lot-3", &row[4], &used), 0);
	assert_int_equal(used, 3);
	assert_int_equal(st_ledger_get(l, row[2], &r, ebuf, sizeof(ebuf)), 0);
	assert_int_equal(r->state, ST_LEDGER_FAILED);
	st_ledger_row_free(r);

	/* A failed insert (a serial that is taken) consumes nothing. */
	again = board_row(5, serial, device);
	snprintf(serial, 16, "%04x", 1);
	assert_int_equal(st_ledger_supersede(l, row[3], ebuf, sizeof(ebuf)), 0);
	assert_int_equal(st_ledger_add_intent_auth(l, &again, "lot-3", &id, &used, NULL, ebuf,
						   sizeof(ebuf)),
			 ST_E_LEDGER_DUP_SERIAL);
	assert_int_equal(id, 0);
	count_live(p, "lot-3", &live, &certs, &n);
	assert_int_equal(n, 2);
	assert_int_equal(live, 2);
	assert_int_equal(certs, 1);

	/* Inside a transaction that is rolled back, nothing was consumed. */
	assert_int_equal(st_ledger_begin(l, ebuf, sizeof(ebuf)), 0);
	assert_int_equal(take(l, 6, "lot-3", NULL, &used), 0);
	assert_int_equal(used, 3);
	assert_int_equal(st_ledger_rollback(l), 0);
	count_live(p, "lot-3", &live, &certs, &n);
	assert_int_equal(n, 2);
	st_ledger_close(l);
}

struct station_count {
	char names[4][32];
	int64_t certs[4], pending[4];
	int n;
};

static int on_station(const char *station, int64_t certificates, int64_t pending, void *arg)
{
	struct station_count *c = arg;

	assert_true(c->n < 4);
	snprintf(c->names[c->n], sizeof(c->names[c->n]), "%s", station);
	c->certs[c->n] = certificates;
	c->pending[c->n] = pending;
	c->n++;
	return 0;
}

static int on_auth(const struct st_ledger_auth *a, void *arg)
{
	int *seen = arg;

	assert_string_equal(a->id, "shared");
	assert_int_equal(a->units, 5);
	assert_int_equal(a->used, 5);
	assert_string_equal(a->lot, "LOT-7");
	assert_string_equal(a->station, "line-1");
	(*seen)++;
	return 0;
}

static int on_cert(const struct st_ledger_row *row, void *arg)
{
	int *seen = arg;

	assert_non_null(row->cert_der);
	(*seen)++;
	return 0;
}

/* Two stations on one database file: one count, whoever asks. */
static void test_two_stations(void **state)
{
	const char *p = db_named("two");
	struct st_ledger *a = ledger_as(p, "line-1"), *b = ledger_as(p, "line-2");
	struct station_count sc;
	int ok = 0, refused = 0, seen = 0, rc;
	int64_t row;

	(void)state;
	register_ok(a, "shared", 5);
	register_ok(b, "shared", 5);
	for (int i = 0; i < 8; i++) {
		struct st_ledger *l = i % 2 ? b : a;

		assert_int_equal(st_ledger_begin(l, ebuf, sizeof(ebuf)), 0);
		rc = take(l, i, "shared", &row, NULL);
		if (rc == 0) {
			ok++;
			if (i < 4)
				assert_int_equal(st_ledger_set_cert(l, row, cert_bytes,
								    sizeof(cert_bytes), 1, 2, ebuf,
								    sizeof(ebuf)),
						 0);
		} else {
			assert_int_equal(rc, ST_E_AUTH_EXHAUSTED);
			refused++;
		}
		assert_int_equal(st_ledger_commit(l, ebuf, sizeof(ebuf)), 0);
	}
	assert_int_equal(ok, 5);
	assert_int_equal(refused, 3);
	memset(&sc, 0, sizeof(sc));
	assert_int_equal(st_ledger_auth_stations(a, "shared", on_station, &sc, ebuf,
						 sizeof(ebuf)),
			 0);
	assert_int_equal(sc.n, 2);
	assert_string_equal(sc.names[0], "line-1");
	assert_int_equal(sc.certs[0], 2);
	assert_int_equal(sc.pending[0], 1);
	assert_string_equal(sc.names[1], "line-2");
	assert_int_equal(sc.certs[1], 2);
	assert_int_equal(sc.pending[1], 0);
	assert_int_equal(st_ledger_foreach_auth(b, on_auth, &seen, ebuf, sizeof(ebuf)), 0);
	assert_int_equal(seen, 1);
	seen = 0;
	assert_int_equal(st_ledger_foreach_auth_cert(b, "shared", on_cert, &seen, ebuf,
						     sizeof(ebuf)),
			 0);
	assert_int_equal(seen, 4);
	st_ledger_close(a);
	st_ledger_close(b);
}

/* Processes racing for the units of one authorization, each taking intents as fast as it
 * can, one transaction each: exactly the units are taken, no more. */
static void test_race(void **state)
{
	const char *p = db_named("race");
	struct st_ledger *l = ledger_as(p, "line-0");
	int64_t live, certs, used;
	pid_t kids[3];
	int status, k;

	(void)state;
	register_ok(l, "race", 10);
	st_ledger_close(l);
	for (k = 0; k < 3; k++) {
		kids[k] = fork();
		assert_true(kids[k] >= 0);
		if (kids[k] == 0) {
			char name[16];
			int got = 0;

			snprintf(name, sizeof(name), "line-%d", k + 1);
			if (st_ledger_open(p, name, &l, ebuf, sizeof(ebuf)) != 0)
				_exit(100);
			st_ledger_set_busy_timeout(l, 30000);
			/* One transaction per board, taking the write lock first, as the
			 * signing pool's ledger thread does. */
			for (int i = 0; i < 10; i++) {
				int rc = st_ledger_begin(l, ebuf, sizeof(ebuf));

				if (rc == 0)
					rc = take(l, 100 * k + i, "race", NULL, NULL);
				if (rc == 0)
					got++;
				else if (rc != ST_E_AUTH_EXHAUSTED)
					_exit(101);
				if (st_ledger_commit(l, ebuf, sizeof(ebuf)) != 0)
					_exit(102);
			}
			st_ledger_close(l);
			_exit(got);
		}
	}
	used = 0;
	for (k = 0; k < 3; k++) {
		assert_int_equal(waitpid(kids[k], &status, 0), kids[k]);
		assert_true(WIFEXITED(status));
		assert_true(WEXITSTATUS(status) <= 10);
		used += WEXITSTATUS(status);
	}
	assert_int_equal(used, 10);
	count_live(p, "race", &live, &certs, &used);
	assert_int_equal(live, 10);
	assert_int_equal(used, 10);
}

static void kill_self(enum st_ledger_hook_point point, void *arg)
{
	enum st_ledger_hook_point *at = arg;

	if (point == *at)
		kill(getpid(), SIGKILL);
}

/* A child writes a batch of intents that consume units, each batch in one transaction, and
 * is killed at the start or the end of the commit of its second one. The count in the
 * database is the count of the rows that live, exactly. */
static void test_crash_batch(void **state)
{
	const char *p = db_named("crash");
	enum st_ledger_hook_point points[] = { ST_LEDGER_HOOK_COMMIT_START,
					       ST_LEDGER_HOOK_COMMIT_DONE };
	struct st_ledger *l = ledger_as(p, "line-1");
	int64_t live, certs, used, expect = 0;
	int status, base = 0;

	(void)state;
	register_ok(l, "crash", 100);
	st_ledger_close(l);
	for (size_t c = 0; c < sizeof(points) / sizeof(points[0]); c++) {
		pid_t pid = fork();

		assert_true(pid >= 0);
		if (pid == 0) {
			int64_t row;

			if (st_ledger_open(p, "line-1", &l, ebuf, sizeof(ebuf)) != 0)
				_exit(100);
			for (int batch = 0; batch < 2; batch++) {
				if (st_ledger_begin(l, ebuf, sizeof(ebuf)) != 0)
					_exit(101);
				for (int i = 0; i < 8; i++) {
					if (take(l, base + 8 * batch + i, "crash", &row, NULL) != 0)
						_exit(102);
					/* Half of them signed in the same batch. */
					if (i % 2 &&
					    st_ledger_set_cert(l, row, cert_bytes, sizeof(cert_bytes),
							       1, 2, ebuf, sizeof(ebuf)) != 0)
						_exit(103);
				}
				if (batch == 1)
					st_ledger_set_hook(l, kill_self, &points[c]);
				if (st_ledger_commit(l, ebuf, sizeof(ebuf)) != 0)
					_exit(104);
			}
			_exit(0);
		}
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFSIGNALED(status));
		assert_int_equal(WTERMSIG(status), SIGKILL);
		/* The first batch is always there; the second one when its commit was done. */
		expect += points[c] == ST_LEDGER_HOOK_COMMIT_DONE ? 16 : 8;
		base += 16;
		l = ledger_as(p, "line-1");
		count_live(p, "crash", &live, &certs, &used);
		assert_int_equal(used, live);
		assert_int_equal(used, expect);
		/* Boards of the intents left without a certificate come back and are signed:
		 * their units move to the new rows, none is counted twice. */
		st_ledger_close(l);
	}
}

/* A ledger written before authorizations existed (schema version 1) is migrated in place:
 * its rows stay, and it can count units. */
static void test_migrate_v1(void **state)
{
	const char *p = db_named("v1");
	struct st_ledger *l;
	struct st_ledger_row *r = NULL;
	sqlite3_stmt *s;
	sqlite3 *db;

	(void)state;
	assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
	assert_int_equal(
		sqlite3_exec(db,
			     "PRAGMA journal_mode = WAL;"
			     "CREATE TABLE certificates (id INTEGER PRIMARY KEY, serial TEXT NOT "
			     "NULL, device_id TEXT NOT NULL, profile TEXT, station TEXT NOT NULL, "
			     "slot TEXT, csr_sha256 BLOB NOT NULL, pubkey_sha256 BLOB NOT NULL, "
			     "state TEXT NOT NULL, cert_der BLOB, not_before INTEGER, not_after "
			     "INTEGER, created INTEGER NOT NULL, signed_at INTEGER, delivered_at "
			     "INTEGER, reason TEXT);"
			     "CREATE TABLE sequences (prefix TEXT PRIMARY KEY, next INTEGER NOT "
			     "NULL);"
			     "CREATE TABLE flags (id INTEGER PRIMARY KEY, time INTEGER NOT NULL, "
			     "station TEXT NOT NULL, slot TEXT, device_id TEXT, pubkey_sha256 BLOB, "
			     "reason TEXT NOT NULL);"
			     "INSERT INTO certificates (serial, device_id, station, csr_sha256, "
			     "pubkey_sha256, state, cert_der, created) VALUES ('0abc', 'old-board', "
			     "'line-1', zeroblob(32), zeroblob(32), 'delivered', x'3000', 1);"
			     /* An intent superseded by a later row for the same key and serial,
			      * and a board that failed after its certificate was signed. */
			     "INSERT INTO certificates (serial, device_id, station, csr_sha256, "
			     "pubkey_sha256, state, created) VALUES ('0abd', 'old-board-2', "
			     "'line-1', zeroblob(32), x'"
			     "0101010101010101010101010101010101010101010101010101010101010101', "
			     "'failed', 1);"
			     "INSERT INTO certificates (serial, device_id, station, csr_sha256, "
			     "pubkey_sha256, state, cert_der, created) VALUES ('0abd', "
			     "'old-board-2', 'line-1', zeroblob(32), x'"
			     "0101010101010101010101010101010101010101010101010101010101010101', "
			     "'failed', x'3000', 2);"
			     "PRAGMA user_version = 1; PRAGMA application_id = 1398033479;",
			     NULL, NULL, NULL),
		SQLITE_OK);
	sqlite3_close(db);
	l = ledger_as(p, "line-1");
	assert_int_equal(st_ledger_get_serial(l, "0abc", &r, ebuf, sizeof(ebuf)), 0);
	assert_string_equal(r->device_id, "old-board");
	st_ledger_row_free(r);
	r = NULL;
	/* Of the two rows for 0abd, the one with the certificate is the live one. */
	assert_int_equal(st_ledger_get_serial(l, "0abd", &r, ebuf, sizeof(ebuf)), 0);
	assert_non_null(r->cert_der);
	st_ledger_row_free(r);
	register_ok(l, "after", 1);
	assert_int_equal(take(l, 0, "after", NULL, NULL), 0);
	assert_int_equal(take(l, 1, "after", NULL, NULL), ST_E_AUTH_EXHAUSTED);
	st_ledger_close(l);
	/* Version 3 keeps whether a row is live in a column of its own: the migration set it
	 * from each row's state, and the unique indexes are on it. */
	assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db,
					    "SELECT group_concat(serial || ':' || "
					    "coalesce(dropped, 'live'), ' ') FROM (SELECT * FROM "
					    "certificates ORDER BY id)",
					    -1, &s, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(s, 0), "0abc:live 0abd:1 0abd:live 0001:live");
	sqlite3_finalize(s);
	assert_int_not_equal(sqlite3_exec(db,
					  "UPDATE certificates SET dropped = NULL, "
					  "state = 'intent' WHERE serial = '0abd' AND cert_der IS NULL",
					  NULL, NULL, NULL),
			     SQLITE_OK);
	sqlite3_close(db);
}

struct attempts_seen {
	int n, fails;
	char last_reason[64];
	char lot[32];
};

static int on_attempt(const struct st_ledger_attempt *a, void *arg)
{
	struct attempts_seen *s = arg;

	s->n++;
	if (strcmp(a->outcome, "fail") == 0) {
		s->fails++;
		snprintf(s->last_reason, sizeof(s->last_reason), "%s", a->reason ? a->reason : "");
		assert_null(a->serial);
		assert_int_equal(a->certificate, 0);
	} else {
		assert_string_equal(a->board_sn, "SN-1");
		assert_string_equal(a->firmware, "1.2.3");
		assert_string_equal(a->station, "line-1");
		snprintf(s->lot, sizeof(s->lot), "%s", a->lot ? a->lot : "");
	}
	return 0;
}

static void test_attempts(void **state)
{
	struct st_ledger *l = ledger_as(db_named("attempts"), "line-1");
	struct st_ledger_attempt a;
	struct attempts_seen seen;
	int64_t row = 0;

	(void)state;
	register_ok(l, "lot-a", 5);
	assert_int_equal(take(l, 0, "lot-a", &row, NULL), 0);
	memset(&a, 0, sizeof(a));
	a.time = 1000;
	a.slot = "A1";
	a.outcome = "pass";
	a.device_id = "board-0";
	a.serial = "0001";
	a.board_sn = "SN-1";
	a.hardware_id = "sim-board";
	a.sku = "sim-sku";
	a.firmware = "1.2.3";
	a.profile = "sim-gw";
	a.auth_id = "lot-a";
	a.certificate = row;
	a.ms = 1200;
	assert_int_equal(st_ledger_add_attempt(l, &a, ebuf, sizeof(ebuf)), 0);
	memset(&a, 0, sizeof(a));
	a.time = 2000;
	a.slot = "A2";
	a.outcome = "fail";
	a.reason = "CSR_SIGNATURE";
	a.error = "CSR rejected: the self-signature does not verify";
	a.serial = "";
	a.ms = -1;
	assert_int_equal(st_ledger_add_attempt(l, &a, ebuf, sizeof(ebuf)), 0);
	a.outcome = "lost";
	assert_int_equal(st_ledger_add_attempt(l, &a, ebuf, sizeof(ebuf)), ST_E_INVAL);

	memset(&seen, 0, sizeof(seen));
	assert_int_equal(st_ledger_foreach_attempt(l, 0, 0, on_attempt, &seen, ebuf,
						   sizeof(ebuf)),
			 0);
	assert_int_equal(seen.n, 2);
	assert_int_equal(seen.fails, 1);
	assert_string_equal(seen.last_reason, "CSR_SIGNATURE");
	assert_string_equal(seen.lot, "LOT-7");
	/* since is inclusive, until exclusive. */
	memset(&seen, 0, sizeof(seen));
	assert_int_equal(st_ledger_foreach_attempt(l, 1000, 2000, on_attempt, &seen, ebuf,
						   sizeof(ebuf)),
			 0);
	assert_int_equal(seen.n, 1);
	assert_int_equal(seen.fails, 0);
	memset(&seen, 0, sizeof(seen));
	assert_int_equal(st_ledger_foreach_attempt(l, 2000, 0, on_attempt, &seen, ebuf,
						   sizeof(ebuf)),
			 0);
	assert_int_equal(seen.n, 1);
	assert_int_equal(seen.fails, 1);
	st_ledger_close(l);
}

/* One text of every row of both tables, in id order, every column. */
static char *dump_tables(sqlite3 *db)
{
	sqlite3_stmt *s;
	char *out;

	assert_int_equal(
		sqlite3_prepare_v2(db,
				   "SELECT (SELECT group_concat(x, '|') FROM (SELECT quote(id) || ',' || "
				   "quote(serial) || ',' || quote(device_id) || ',' || quote(profile) || "
				   "',' || quote(station) || ',' || quote(slot) || ',' || "
				   "quote(csr_sha256) || ',' || quote(pubkey_sha256) || ',' || "
				   "quote(state) || ',' || quote(cert_der) || ',' || quote(not_before) || "
				   "',' || quote(not_after) || ',' || quote(created) || ',' || "
				   "quote(signed_at) || ',' || quote(delivered_at) || ',' || quote(reason) "
				   "|| ',' || quote(auth_id) || ',' || quote(dropped) AS x FROM "
				   "certificates ORDER BY id)) || '#' || (SELECT group_concat(y, '|') FROM "
				   "(SELECT quote(id) || ',' || quote(time) || ',' || quote(station) || "
				   "',' || quote(slot) || ',' || quote(outcome) || ',' || quote(reason) || "
				   "',' || quote(error) || ',' || quote(device_id) || ',' || quote(serial) "
				   "|| ',' || quote(board_sn) || ',' || quote(hardware_id) || ',' || "
				   "quote(sku) || ',' || quote(firmware) || ',' || quote(profile) || ',' "
				   "|| quote(auth_id) || ',' || quote(certificate) || ',' || quote(reused) "
				   "|| ',' || quote(ms) AS y FROM attempts ORDER BY id)) || '#' || (SELECT "
				   "group_concat(id || '=' || used) FROM authorizations)",
				   -1, &s, NULL),
		SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	out = strdup((const char *)sqlite3_column_text(s, 0));
	sqlite3_finalize(s);
	assert_non_null(out);
	return out;
}

/* sql runs without a temporary b-tree (OpenEphemeral, a sorter). */
static void assert_no_temp_btree(sqlite3 *db, const char *sql)
{
	char explain[1024];
	sqlite3_stmt *s;
	int rc;

	snprintf(explain, sizeof(explain), "EXPLAIN %s", sql);
	assert_int_equal(sqlite3_prepare_v2(db, explain, -1, &s, NULL), SQLITE_OK);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *op = (const char *)sqlite3_column_text(s, 1);

		if (strcmp(op, "OpenEphemeral") == 0 || strcmp(op, "SorterOpen") == 0)
			fail_msg("%s: %s", sql, op);
	}
	assert_int_equal(rc, SQLITE_DONE);
	sqlite3_finalize(s);
}

/* Version 4 rebuilt certificates and attempts with the same columns and CHECKs written
 * without lists of three or four values. The ledger below is made at version 4 and told it
 * is version 3, so the rebuild runs over rows of every kind: delivered, failed with and
 * without a certificate, an open intent, units taken, attempts. Nothing of them changes,
 * the counting triggers work after it, and the CHECKs still refuse what they refused. */
static void test_migrate_v3(void **state)
{
	const char *p = db_named("v3");
	struct st_ledger *l = ledger_as(p, "line-1");
	struct st_ledger_attempt a;
	int64_t row[4], live, certs, used;
	char *before, *after;
	sqlite3 *db;
	int i;

	(void)state;
	register_ok(l, "lot-m", 10);
	for (i = 0; i < 4; i++)
		assert_int_equal(take(l, i, "lot-m", &row[i], NULL), 0);
	for (i = 0; i < 2; i++)
		assert_int_equal(st_ledger_set_cert(l, row[i], cert_bytes, sizeof(cert_bytes), 1,
						    2, ebuf, sizeof(ebuf)),
				 0);
	assert_int_equal(st_ledger_mark_delivered(l, row[0], ebuf, sizeof(ebuf)), 0);
	assert_int_equal(st_ledger_mark_failed(l, row[1], "board left", ebuf, sizeof(ebuf)), 0);
	assert_int_equal(st_ledger_mark_failed(l, row[2], "CSR_SIGNATURE", ebuf, sizeof(ebuf)),
			 0);
	memset(&a, 0, sizeof(a));
	a.time = 1000;
	a.slot = "A1";
	a.outcome = "pass";
	a.device_id = "board-0";
	a.serial = "0001";
	a.auth_id = "lot-m";
	a.certificate = row[0];
	a.ms = 900;
	assert_int_equal(st_ledger_add_attempt(l, &a, ebuf, sizeof(ebuf)), 0);
	a.outcome = "abandoned";
	a.reason = "BOARD_GONE";
	assert_int_equal(st_ledger_add_attempt(l, &a, ebuf, sizeof(ebuf)), 0);
	st_ledger_close(l);
	count_live(p, "lot-m", &live, &certs, &used);
	assert_int_equal(used, 3);
	assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
	before = dump_tables(db);
	assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 3", NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(db);

	l = ledger_as(p, "line-1");
	assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
	after = dump_tables(db);
	assert_string_equal(after, before);
	/* The triggers are back: a unit taken, and one given back by a failed intent. */
	assert_int_equal(take(l, 4, "lot-m", NULL, &used), 0);
	assert_int_equal(used, 4);
	assert_int_equal(st_ledger_mark_failed(l, row[3], "BOARD_GONE", ebuf, sizeof(ebuf)), 0);
	count_live(p, "lot-m", &live, &certs, &used);
	assert_int_equal(used, 3);
	assert_int_equal(used, live);
	st_ledger_close(l);
	assert_no_temp_btree(db, "INSERT INTO certificates (serial, device_id, station, "
				 "csr_sha256, pubkey_sha256, state, created) VALUES ('0f', 'd', "
				 "'s', zeroblob(32), zeroblob(32), 'intent', 1)");
	assert_no_temp_btree(db, "UPDATE certificates SET state = 'delivered' WHERE id = 1");
	assert_no_temp_btree(db, "INSERT INTO attempts (time, station, outcome) "
				 "VALUES (1, 's', 'pass')");
	assert_int_equal(sqlite3_exec(db, "UPDATE certificates SET state = 'lost' WHERE id = 1",
				      NULL, NULL, NULL),
			 SQLITE_CONSTRAINT);
	assert_int_equal(sqlite3_exec(db,
				      "UPDATE certificates SET state = 'signed', cert_der = NULL "
				      "WHERE id = 1",
				      NULL, NULL, NULL),
			 SQLITE_CONSTRAINT);
	assert_int_equal(sqlite3_exec(db,
				      "INSERT INTO attempts (time, station, outcome) "
				      "VALUES (1, 's', 'maybe')",
				      NULL, NULL, NULL),
			 SQLITE_CONSTRAINT);
	sqlite3_close(db);
	free(before);
	free(after);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_register),    cmocka_unit_test(test_consume),
		cmocka_unit_test(test_two_stations), cmocka_unit_test(test_race),
		cmocka_unit_test(test_crash_batch), cmocka_unit_test(test_migrate_v1),
		cmocka_unit_test(test_migrate_v3), cmocka_unit_test(test_attempts),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
