/* One station of a line on a shared PostgreSQL ledger, for the scale-out benchmark
 * (tests/bench/pg_line.sh starts N of these at once): a signing pool whose CA key is in an
 * emulated slow HSM (fixtures/slowhsm: every signature takes L ms, at most S sessions, so
 * the HSM, not the CPUs, bounds the station at S/L signatures/s) and whose ledger is the
 * database, fed pre-checked CSRs as fast as it takes them.
 *
 *   bench_line --pg CONN --station NAME --slowhsm PATH [-n N] [-L MS] [-S SESSIONS]
 *              [-b BATCH] [-q QUEUE] --go FILE
 *
 * At most QUEUE requests (default 128, as many as a station's slots have CSRs waiting) are
 * in the pool at once: boards arrive as a stream, not all at once.
 * It makes its own SoftHSM2 token, CA and N CSRs, prints "ready", waits until FILE exists
 * (so that every station of the line starts signing at once), signs, and prints one line
 *   result station NAME ok K start S end E intent_p50 .. intent_p99 .. record_p50 ..
 *   record_p99 .. commits C
 * with wall-clock start and end (s) and the commit latencies (ms) of the batches: intent =
 * the batch sealed to its intents committed (waiting for the ledger thread included),
 * record = the batch's last certificate issued to the batch's certificates committed. Not a
 * test. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <uv.h>

#include "ca.h"
#include "err.h"
#include "issue.h"
#include "log.h"
#include "policy.h"
#include "pool.h"
#include "signer.h"
#include "testutil.h"

#define FACTORY "bench-factory"

struct line {
	uv_loop_t loop;
	struct st_pool *pool;
	struct st_policy policy;
	struct st_ca *ca;
	struct drv_signer *signer;
	struct st_csr **csrs;
	const char *station;
	size_t n, next, done, failed;
	uint64_t *intent;
	struct done_times {
		uint64_t recorded, sign_end;
	} *rec;
};

static void die(const char *what, const char *err)
{
	fprintf(stderr, "bench_line: %s: %s\n", what, err ? err : "");
	exit(1);
}

static double wall(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The token (through SoftHSM2 itself), then the signer through the slow HSM in front of
 * it. */
static void setup_signer(struct line *b, const char *dir, const char *slowhsm, unsigned latency,
			 unsigned sessions)
{
	struct tu_softhsm hsm;
	char err[512] = "", uri[9000], v[32];
	X509 *x;

	if (tu_softhsm_token(&hsm, dir, "line", "local-ca", err, sizeof(err)) != 0)
		die("token", err);
	if (drv_pkcs11_generate_ec_key(&hsm.cfg, NULL, err, sizeof(err)) != 0)
		die("key", err);
	snprintf(v, sizeof(v), "%u", latency);
	setenv("SLOWHSM_LATENCY_MS", v, 1);
	snprintf(v, sizeof(v), "%u", sessions);
	setenv("SLOWHSM_SESSIONS", v, 1);
	setenv("SLOWHSM_MODULE", TU_SOFTHSM_MODULE, 1);
	snprintf(uri, sizeof(uri), "pkcs11:token=line;object=local-ca?module-path=%s", slowhsm);
	hsm.cfg.key = uri;
	if (drv_signer_open(&hsm.cfg, &b->signer, err, sizeof(err)) != 0)
		die("signer", err);
	x = tu_signer_ca(b->signer, "Line-CA", FACTORY, 3650, err, sizeof(err));
	if (!x || st_ca_from_x509(x, NULL, NULL, "line CA", &b->ca, err, sizeof(err)))
		die("CA", err);
	X509_free(x);
}

static void submit_next(struct line *b);

static void on_done(struct st_sign_req *req)
{
	struct line *b = req->data;
	size_t i = b->done++ - b->failed;

	if (req->rc != 0) {
		if (!b->failed++)
			fprintf(stderr, "bench_line %s: first failure: %s\n", b->station, req->err);
	} else {
		b->intent[i] = req->t.intent - req->t.sealed;
		b->rec[i].recorded = req->t.recorded;
		b->rec[i].sign_end = req->t.sign_end;
	}
	st_sign_req_free(req);
	submit_next(b);
}

static void submit_next(struct line *b)
{
	struct st_sign_req *req;

	while (b->next < b->n && st_pool_can_submit(b->pool)) {
		req = tu_sign_req(&b->policy, b->csrs, b->next++, b->station, "S", 256, on_done, b);
		if (!req)
			die("request", "out of memory");
		if (st_pool_submit(b->pool, req) != 0)
			die("submit", req->err);
	}
}

static int cmp_recorded(const void *x, const void *y)
{
	const struct done_times *a = x, *c = y;

	return a->recorded < c->recorded ? -1 : a->recorded > c->recorded;
}

/* The record commit of each batch: its members were recorded by one commit, at one moment;
 * from the last of their signatures to it. Writes them to out, returns how many. */
static size_t batch_records(struct done_times *t, size_t n, uint64_t *out)
{
	size_t i = 0, j, k = 0;
	uint64_t last;

	qsort(t, n, sizeof(*t), cmp_recorded);
	while (i < n) {
		last = 0;
		for (j = i; j < n && t[j].recorded == t[i].recorded; j++)
			if (t[j].sign_end > last)
				last = t[j].sign_end;
		out[k++] = t[i].recorded - last;
		i = j;
	}
	return k;
}

static double pct(uint64_t *v, size_t n, int p)
{
	return n ? (double)v[n * (size_t)p / 100 < n ? n * (size_t)p / 100 : n - 1] / 1e6 : 0;
}

int main(int argc, char **argv)
{
	struct line b;
	struct st_pool_config cfg;
	struct st_pool_stats st;
	const char *pg = NULL, *slowhsm = NULL, *go = NULL, *base = getenv("TMPDIR");
	unsigned latency = 20, sessions = 4;
	char dir[4096], cmd[4200], err[512] = "";
	uint64_t *record;
	double start, end;
	size_t k, ok, nrec;
	int i;

	memset(&b, 0, sizeof(b));
	b.n = 1000;
	st_pool_config_default(&cfg);
	cfg.queue_max = 128;
	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--pg") && i + 1 < argc)
			pg = argv[++i];
		else if (!strcmp(argv[i], "--station") && i + 1 < argc)
			b.station = argv[++i];
		else if (!strcmp(argv[i], "--slowhsm") && i + 1 < argc)
			slowhsm = argv[++i];
		else if (!strcmp(argv[i], "--go") && i + 1 < argc)
			go = argv[++i];
		else if (!strcmp(argv[i], "-n") && i + 1 < argc)
			b.n = strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "-L") && i + 1 < argc)
			latency = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "-S") && i + 1 < argc)
			sessions = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "-b") && i + 1 < argc)
			cfg.batch_max = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "-q") && i + 1 < argc)
			cfg.queue_max = (unsigned)strtoul(argv[++i], NULL, 10);
		else
			break;
	}
	if (i < argc || !pg || !b.station || !slowhsm || !go || b.n < 1 || sessions < 1) {
		fprintf(stderr, "usage: bench_line --pg CONN --station NAME --slowhsm PATH "
				"[-n N] [-L MS] [-S SESSIONS] [-b BATCH] [-q QUEUE] --go FILE\n");
		return 2;
	}
	st_log_set_level(ST_LOG_ERR);
	snprintf(dir, sizeof(dir), "%s/bench-line-XXXXXX", base ? base : "/tmp");
	if (!mkdtemp(dir))
		die("mkdtemp", dir);
	st_policy_default(&b.policy);
	setup_signer(&b, dir, slowhsm, latency, sessions);
	b.csrs = tu_checked_csrs(&b.policy, b.ca->ou, b.station, b.n, err, sizeof(err));
	b.intent = calloc(b.n, sizeof(uint64_t));
	b.rec = calloc(b.n, sizeof(*b.rec));
	record = calloc(b.n, sizeof(uint64_t));
	if (!b.csrs)
		die("CSR", err);
	if (!b.intent || !b.rec || !record)
		die("memory", "out of memory");

	if (uv_loop_init(&b.loop) != 0)
		die("loop", "uv_loop_init");
	/* One worker per HSM session: the login's session is lent to the first. */
	cfg.workers = sessions;
	cfg.station = b.station;
	cfg.ledger_path = pg;
	if (st_pool_new(&b.loop, &cfg, b.ca, b.signer, &b.pool, err, sizeof(err)) != 0)
		die("pool", err);
	printf("ready %s\n", b.station);
	fflush(stdout);
	/* The whole line starts together; a benchmark may poll. */
	while (access(go, F_OK) != 0)
		usleep(1000);

	start = wall();
	submit_next(&b);
	while (b.done < b.n)
		uv_run(&b.loop, UV_RUN_ONCE);
	end = wall();
	st_pool_stats(b.pool, &st);
	st_pool_close(b.pool, NULL, NULL);
	uv_run(&b.loop, UV_RUN_DEFAULT);
	uv_loop_close(&b.loop);

	ok = b.n - b.failed;
	qsort(b.intent, ok, sizeof(uint64_t), tu_cmp_u64);
	nrec = batch_records(b.rec, ok, record);
	qsort(record, nrec, sizeof(uint64_t), tu_cmp_u64);
	printf("result station %s ok %zu start %.6f end %.6f intent_p50 %.2f intent_p99 %.2f "
	       "record_p50 %.2f record_p99 %.2f commits %llu batches %llu\n",
	       b.station, ok, start, end, pct(b.intent, ok, 50), pct(b.intent, ok, 99),
	       pct(record, nrec, 50), pct(record, nrec, 99), (unsigned long long)st.commits,
	       (unsigned long long)st.batches);
	for (k = 0; k < b.n; k++)
		st_csr_free(b.csrs[k]);
	free(b.csrs);
	free(b.intent);
	free(b.rec);
	free(record);
	st_ca_free(b.ca);
	drv_signer_close(b.signer);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	(void)!system(cmd);
	return b.failed ? 1 : 0;
}
