/* Ledger throughput on this machine's disk: rows per second with group commit (one
 * transaction and one fsync per batch, as the signing pool commits) against one commit per
 * row, and the ledger thread's CPU per row. Every commit is durable (WAL, synchronous=FULL),
 * so the rates are bound by fsync latency; quote the ratio, not the absolute numbers.
 *
 *   bench_ledger [DIR] [ROWS]   (DIR: where the ledger file goes, default $TMPDIR or /tmp)
 *   bench_ledger --pg CONN [DIR] [ROWS]
 *
 * With --pg: certificates recorded per second (the whole life cycle of a row: intent,
 * certificate, delivered, each step committed as the pool commits it), batches of 1 and
 * 32, on SQLite in DIR and on the PostgreSQL database CONN (synchronous_commit on) in the
 * same run, and their ratio. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "ledger.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double thread_cpu(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Row n: a random-looking serial (as `serial: random` makes them, so that each row's index
 * entries land on pages of their own, as on a line), its key hash from it. */
static void make_row(struct st_ledger_row *r, char *serial, char *device, uint64_t n)
{
	uint8_t h[SHA256_DIGEST_LENGTH];

	memset(r, 0, sizeof(*r));
	SHA256((const unsigned char *)&n, sizeof(n), h);
	for (int i = 0; i < 16; i++)
		snprintf(serial + 2 * i, 3, "%02x", h[i]);
	snprintf(device, 64, "bench-%llu", (unsigned long long)n);
	r->serial = serial;
	r->device_id = device;
	r->profile = (char *)"bench";
	r->slot = (char *)"S1";
	SHA256((const unsigned char *)serial, strlen(serial), r->pubkey_sha256);
	SHA256((const unsigned char *)device, strlen(device), r->csr_sha256);
}

static int fail(const char *what, const char *err)
{
	fprintf(stderr, "bench_ledger: %s: %s\n", what, err);
	return 1;
}

/* Runs rows through intent (full: -> signed -> delivered) in batches of batch rows (batch 1:
 * every call commits on its own). Returns rows/s or a negative value; *cpu gets the CPU this
 * thread spent per row (SQLite's work and the system calls it makes, fsync included). */
static double run(struct st_ledger *l, uint64_t *next, int rows, int batch, int full,
		  double *cpu)
{
	static uint8_t cert[600];
	int64_t *ids = calloc((size_t)batch, sizeof(*ids));
	char serial[41], device[64], err[512];
	struct st_ledger_row r;
	double t0 = now(), c0 = thread_cpu();
	int done, i, n;

	if (!ids)
		return -1;
	for (done = 0; done < rows; done += n) {
		n = rows - done < batch ? rows - done : batch;
		if (batch > 1 && st_ledger_begin(l, err, sizeof(err)) != 0)
			goto fail;
		for (i = 0; i < n; i++) {
			make_row(&r, serial, device, (*next)++);
			if (st_ledger_add_intent(l, &r, &ids[i], err, sizeof(err)) != 0)
				goto fail;
		}
		if (batch > 1 && st_ledger_commit(l, err, sizeof(err)) != 0)
			goto fail;
		if (!full)
			continue;
		if (batch > 1 && st_ledger_begin(l, err, sizeof(err)) != 0)
			goto fail;
		for (i = 0; i < n; i++)
			if (st_ledger_set_cert(l, ids[i], cert, sizeof(cert), 1, 2, err,
					       sizeof(err)) != 0)
				goto fail;
		if (batch > 1 && (st_ledger_commit(l, err, sizeof(err)) != 0 ||
				  st_ledger_begin(l, err, sizeof(err)) != 0))
			goto fail;
		for (i = 0; i < n; i++)
			if (st_ledger_mark_delivered(l, ids[i], err, sizeof(err)) != 0)
				goto fail;
		if (batch > 1 && st_ledger_commit(l, err, sizeof(err)) != 0)
			goto fail;
	}
	free(ids);
	if (cpu)
		*cpu = (thread_cpu() - c0) / rows;
	return rows / (now() - t0);
fail:
	fail("run", err);
	free(ids);
	return -1;
}

/* Certificates recorded per second on ledger spec, batch rows a transaction. */
static double recorded_rate(const char *spec, uint64_t *next, int rows, int batch)
{
	struct st_ledger *l = NULL;
	char err[512];
	double r;

	if (st_ledger_open(spec, "bench", &l, err, sizeof(err)) != 0) {
		fail("open", err);
		return -1;
	}
	r = run(l, next, rows, batch, 1, NULL);
	st_ledger_close(l);
	return r;
}

/* SQLite against PostgreSQL, batch 1 and 32. */
static int compare(const char *pg, const char *dir, int rows)
{
	static const int batches[] = { 1, 32 };
	char path[4096];
	uint64_t next = 1;
	double sq, pq;
	size_t i;

	snprintf(path, sizeof(path), "%s/bench-ledger-%d.db", dir, (int)getpid());
	printf("certificates recorded per second (intent, certificate, delivered; a commit each "
	       "per batch)\n  SQLite %s (WAL, synchronous=FULL)\n  PostgreSQL %s "
	       "(synchronous_commit on)\n",
	       path, pg);
	for (i = 0; i < sizeof(batches) / sizeof(batches[0]); i++) {
		/* A commit per row costs an fsync per call: fewer rows keep it short. */
		int n = batches[i] == 1 ? (rows / 10 > 0 ? rows / 10 : 1) : rows;

		sq = recorded_rate(path, &next, n, batches[i]);
		pq = sq < 0 ? -1 : recorded_rate(pg, &next, n, batches[i]);
		if (pq < 0)
			break;
		printf("  batch %2d: %6d certificates  SQLite %8.0f/s  PostgreSQL %8.0f/s  "
		       "PostgreSQL/SQLite %.2f\n",
		       batches[i], n, sq, pq, pq / sq);
	}
	unlink(path);
	return i < sizeof(batches) / sizeof(batches[0]);
}

int main(int argc, char **argv)
{
	static const int batches[] = { 1, 2, 10, 100, 250, 500 };
	const char *pg = NULL, *dir;
	struct st_ledger *l = NULL;
	char path[4096], err[512];
	uint64_t next = 1;
	double single = 0, r, cpu = 0;
	size_t i;
	int full, rows;

	if (argc > 2 && strcmp(argv[1], "--pg") == 0) {
		pg = argv[2];
		argc -= 2;
		argv += 2;
	}
	dir = argc > 1 ? argv[1] : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	rows = argc > 2 ? atoi(argv[2]) : 5000;
	if (rows <= 0)
		return fail("usage", "bench_ledger [--pg CONN] [DIR] [ROWS]");
	if (pg)
		return compare(pg, dir, rows);
	snprintf(path, sizeof(path), "%s/bench-ledger-%d.db", dir, (int)getpid());
	if (st_ledger_open(path, "bench", &l, err, sizeof(err)) != 0)
		return fail("open", err);
	printf("ledger %s: every commit fsynced (WAL, synchronous=FULL)\n", path);
	for (full = 0, r = 0; full <= 1 && r >= 0; full++) {
		printf("%s\n", full ? "life cycle: intent, signed, delivered (3 commits per batch)" :
				      "intents only (1 commit per batch)");
		for (i = 0; i < sizeof(batches) / sizeof(batches[0]); i++) {
			/* A commit per row costs an fsync per call: fewer rows keep it short. */
			int n = batches[i] == 1 ? (rows / 10 > 0 ? rows / 10 : 1) : rows;
			int commits = full ? 3 : 1;

			r = run(l, &next, n, batches[i], full, &cpu);
			if (r < 0)
				break;
			if (batches[i] == 1)
				single = r;
			printf("  batch %4d: %6d rows %9.0f rows/s %7.0f commits/s  x%.1f vs "
			       "batch 1  CPU %4.0f us/row\n",
			       batches[i], n, r, commits * r / batches[i],
			       single > 0 ? r / single : 0, cpu * 1e6);
		}
	}
	st_ledger_close(l);
	unlink(path);
	return r < 0;
}
