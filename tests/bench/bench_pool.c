/* Signing pool benchmark: N pre-checked CSRs (distinct EC P-256 keys) through the whole pool
 * (ledger intents, signing on W workers, ledger certificates, completion on the loop) with
 * the CA key in a file or in SoftHSM2, against plain st_issue() on one thread measured in the
 * same run. Prints certificates/s, the ratio to W times the one-thread rate, CPU time per
 * certificate in both (steadier than rates on a shared machine), the mean batch
 * size and ledger commits, per-phase latencies, and how late a 10 ms loop timer fired while
 * signing ran (the loop must stay free).
 *
 * Usage: bench_pool [-n N] [-w WORKERS] [-b BATCH] [-l LINGER_MS] [-q QUEUE] [--softhsm]
 *                   [-d DIR]
 * The ledger lives in DIR (default $TMPDIR or /tmp), so its fsyncs cost what that disk costs.
 * Not a test: compare the ratios of one run. */
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

struct bench {
	uv_loop_t loop;
	struct st_pool *pool;
	struct st_policy policy;
	struct st_ca *ca;
	struct drv_signer *signer;
	struct st_csr **csrs;
	size_t n, next, done, failed;
	/* Per-phase latencies, ns, one per completed request. */
	uint64_t *wait_seal, *intent, *queue, *sign, *record, *deliver, *total;
	uv_timer_t tick;
	uint64_t tick_due, lag_max, lag_sum, ticks;
	int closed;
};

static void die(const char *what, const char *err)
{
	fprintf(stderr, "bench_pool: %s: %s\n", what, err ? err : "");
	exit(1);
}

static void setup_file(struct bench *b, const char *dir)
{
	EVP_PKEY *key = EVP_EC_gen("prime256v1");
	char path[4200], err[512] = "";
	X509 *x = tu_ca_template(key, "Bench-CA", FACTORY, 3650);

	snprintf(path, sizeof(path), "%s/ca.key", dir);
	if (!x || X509_sign(x, key, EVP_sha256()) <= 0)
		die("CA", "cannot make the certificate");
	if (tu_file_signer(path, key, &b->signer, err, sizeof(err)) != 0)
		die("signer", err);
	if (st_ca_from_x509(x, NULL, NULL, "bench CA", &b->ca, err, sizeof(err)) != 0)
		die("CA", err);
	X509_free(x);
	EVP_PKEY_free(key);
}

static void setup_softhsm(struct bench *b, const char *dir)
{
	struct tu_softhsm hsm;
	char err[512] = "";
	X509 *x;

	if (tu_softhsm_token(&hsm, dir, "bench", "local-ca", err, sizeof(err)) != 0)
		die("token", err);
	if (drv_pkcs11_generate_ec_key(&hsm.cfg, NULL, err, sizeof(err)) != 0 ||
	    drv_signer_open(&hsm.cfg, &b->signer, err, sizeof(err)) != 0)
		die("signer", err);
	x = tu_signer_ca(b->signer, "Bench-CA", FACTORY, 3650, err, sizeof(err));
	if (!x || st_ca_from_x509(x, NULL, NULL, "bench CA", &b->ca, err, sizeof(err)) != 0)
		die("CA", err);
	X509_free(x);
}

static double now_s(void)
{
	return (double)uv_hrtime() / 1e9;
}

static double cpu_s(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Plain st_issue() on this thread: what one worker could do without pool or ledger. Also
 * gives the CPU seconds per certificate in *cpu. */
static double one_thread_rate(struct bench *b, size_t m, double *cpu)
{
	struct st_issuer *is = NULL;
	struct st_cert *cert;
	void *sess = NULL;
	char err[512] = "";
	double t0, t, c0;
	size_t i;

	if (drv_signer_session_open(b->signer, &sess, err, sizeof(err)) != 0 ||
	    st_issuer_new(b->ca, b->signer, sess, &is, err, sizeof(err)) != 0)
		die("issuer", err);
	t0 = now_s();
	c0 = cpu_s(CLOCK_PROCESS_CPUTIME_ID);
	for (i = 0; i < m; i++) {
		if (st_issue(is, &b->policy, b->csrs[i], "bench-00000000", 0, &cert, err,
			     sizeof(err)) != 0)
			die("issue", err);
		st_cert_free(cert);
	}
	t = now_s() - t0;
	*cpu = (cpu_s(CLOCK_PROCESS_CPUTIME_ID) - c0) / (double)m;
	st_issuer_free(is);
	drv_signer_session_close(b->signer, sess);
	return (double)m / t;
}

static void submit_next(struct bench *b);

static void on_done(struct st_sign_req *req)
{
	struct bench *b = req->data;
	const struct st_sign_times *t = &req->t;
	size_t i = b->done++ - b->failed;

	if (req->rc != 0) {
		if (!b->failed++)
			fprintf(stderr, "bench_pool: first failure: %s\n", req->err);
	} else {
		b->wait_seal[i] = t->sealed - t->submitted;
		b->intent[i] = t->intent - t->sealed;
		b->queue[i] = t->sign_start - t->intent;
		b->sign[i] = t->sign_end - t->sign_start;
		b->record[i] = t->recorded - t->sign_end;
		b->deliver[i] = t->completed - t->recorded;
		b->total[i] = t->completed - t->submitted;
	}
	st_sign_req_free(req);
	submit_next(b);
}

/* Keeps the pool full: a new request for every one that completes. */
static void submit_next(struct bench *b)
{
	struct st_sign_req *req;

	while (b->next < b->n && st_pool_can_submit(b->pool)) {
		req = tu_sign_req(&b->policy, b->csrs, b->next++, "bench", "B", 1024, on_done, b);
		if (!req)
			die("request", "out of memory");
		if (st_pool_submit(b->pool, req) != 0)
			die("submit", req->err);
	}
}

static void on_tick(uv_timer_t *t)
{
	struct bench *b = t->data;
	uint64_t now = uv_hrtime(), lag = now > b->tick_due ? now - b->tick_due : 0;

	if (lag > b->lag_max)
		b->lag_max = lag;
	b->lag_sum += lag;
	b->ticks++;
	b->tick_due = now + 10 * 1000000ull;
	if (b->done >= b->n)
		uv_timer_stop(t);
}

static void phase(const char *name, uint64_t *v, size_t n)
{
	double sum = 0;
	size_t i;

	qsort(v, n, sizeof(*v), tu_cmp_u64);
	for (i = 0; i < n; i++)
		sum += (double)v[i];
	printf("  %-22s %9.2f %9.2f %9.2f %9.2f\n", name, sum / (double)n / 1e6,
	       (double)v[n / 2] / 1e6, (double)v[n * 99 / 100] / 1e6, (double)v[n - 1] / 1e6);
}

static void on_closed(void *arg)
{
	((struct bench *)arg)->closed = 1;
}

int main(int argc, char **argv)
{
	struct bench b;
	struct st_pool_config cfg;
	struct st_pool_stats st;
	const char *base = getenv("TMPDIR");
	char dir[4096], ledger[4200], cmd[4300], err[512] = "";
	int softhsm = 0, i;
	double single, single_cpu, pool_cpu, c0, t0, elapsed, rate;
	size_t k, ok;

	memset(&b, 0, sizeof(b));
	b.n = 20000;
	st_pool_config_default(&cfg);
	cfg.workers = 2;
	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-n") && i + 1 < argc)
			b.n = strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "-w") && i + 1 < argc)
			cfg.workers = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "-b") && i + 1 < argc)
			cfg.batch_max = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "-l") && i + 1 < argc)
			cfg.batch_linger_ms = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "-q") && i + 1 < argc)
			cfg.queue_max = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "-d") && i + 1 < argc)
			base = argv[++i];
		else if (!strcmp(argv[i], "--softhsm"))
			softhsm = 1;
		else {
			fprintf(stderr, "usage: bench_pool [-n N] [-w WORKERS] [-b BATCH] "
					"[-l LINGER_MS] [-q QUEUE] [--softhsm] [-d DIR]\n");
			return 2;
		}
	}
	if (b.n < 100)
		die("-n", "must be at least 100");
	st_log_set_level(ST_LOG_ERR);
	snprintf(dir, sizeof(dir), "%s/bench-pool-XXXXXX", base ? base : "/tmp");
	if (!mkdtemp(dir))
		die("mkdtemp", dir);
	snprintf(ledger, sizeof(ledger), "%s/ledger.db", dir);
	st_policy_default(&b.policy);
	if (softhsm)
		setup_softhsm(&b, dir);
	else
		setup_file(&b, dir);

	t0 = now_s();
	b.csrs = tu_checked_csrs(&b.policy, b.ca->ou, "bench", b.n, err, sizeof(err));
	if (!b.csrs)
		die("CSR", err);
	b.wait_seal = calloc(b.n, sizeof(uint64_t));
	b.intent = calloc(b.n, sizeof(uint64_t));
	b.queue = calloc(b.n, sizeof(uint64_t));
	b.sign = calloc(b.n, sizeof(uint64_t));
	b.record = calloc(b.n, sizeof(uint64_t));
	b.deliver = calloc(b.n, sizeof(uint64_t));
	b.total = calloc(b.n, sizeof(uint64_t));
	if (!b.csrs || !b.total)
		die("memory", "out of memory");
	printf("bench_pool: %zu CSRs made in %.1f s; %ld CPUs online; signer %s; ledger in %s\n",
	       b.n, now_s() - t0, sysconf(_SC_NPROCESSORS_ONLN), softhsm ? "SoftHSM2" : "file",
	       dir);

	single = one_thread_rate(&b, b.n < 2000 ? b.n : 2000, &single_cpu);

	if (uv_loop_init(&b.loop) != 0)
		die("loop", "uv_loop_init");
	cfg.station = "bench";
	cfg.ledger_path = ledger;
	if (st_pool_new(&b.loop, &cfg, b.ca, b.signer, &b.pool, err, sizeof(err)) != 0)
		die("pool", err);
	uv_timer_init(&b.loop, &b.tick);
	b.tick.data = &b;
	b.tick_due = uv_hrtime() + 10 * 1000000ull;
	uv_timer_start(&b.tick, on_tick, 10, 10);
	t0 = now_s();
	c0 = cpu_s(CLOCK_PROCESS_CPUTIME_ID);
	submit_next(&b);
	while (b.done < b.n)
		uv_run(&b.loop, UV_RUN_ONCE);
	elapsed = now_s() - t0;
	pool_cpu = (cpu_s(CLOCK_PROCESS_CPUTIME_ID) - c0) / (double)b.n;
	st_pool_stats(b.pool, &st);
	uv_close((uv_handle_t *)&b.tick, NULL);
	st_pool_close(b.pool, on_closed, &b);
	uv_run(&b.loop, UV_RUN_DEFAULT);
	uv_loop_close(&b.loop);

	ok = b.n - b.failed;
	rate = (double)ok / elapsed;
	printf("workers %u, batch max %u, linger %u ms, queue %u\n", st.workers,
	       cfg.batch_max ? cfg.batch_max : 32, cfg.batch_linger_ms,
	       cfg.queue_max ? cfg.queue_max : 4096);
	printf("one thread, st_issue() alone:  %8.0f certs/s\n", single);
	printf("pool (ledger, %u workers):      %8.0f certs/s  = %.2f x one thread, %.0f%% of "
	       "%u x one thread\n",
	       st.workers, rate, rate / single, 100.0 * rate / (single * st.workers), st.workers);
	printf("CPU per certificate: one thread %.0f us, pool %.0f us (x%.2f: ledger, loop, "
	       "hand-overs)\n",
	       single_cpu * 1e6, pool_cpu * 1e6, pool_cpu / single_cpu);
	printf("signed %llu, failed %zu; batches %llu, mean size %.1f; ledger commits: intents "
	       "%llu, records %llu\n",
	       (unsigned long long)st.signed_, b.failed, (unsigned long long)st.batches,
	       st.batches ? (double)st.batched / (double)st.batches : 0.0,
	       (unsigned long long)st.commits_intent, (unsigned long long)st.commits_record);
	printf("loop timer (10 ms) lateness while signing: mean %.2f ms, max %.2f ms over %llu "
	       "ticks\n",
	       b.ticks ? (double)b.lag_sum / (double)b.ticks / 1e6 : 0.0, (double)b.lag_max / 1e6,
	       (unsigned long long)b.ticks);
	if (ok) {
		printf("  %-22s %9s %9s %9s %9s   (ms)\n", "phase", "mean", "p50", "p99", "max");
		phase("wait for batch", b.wait_seal, ok);
		phase("lookup + intent commit", b.intent, ok);
		phase("wait for a worker", b.queue, ok);
		phase("issue (sign+verify)", b.sign, ok);
		phase("wait + record commit", b.record, ok);
		phase("back on the loop", b.deliver, ok);
		phase("total", b.total, ok);
	}

	for (k = 0; k < b.n; k++)
		st_csr_free(b.csrs[k]);
	free(b.csrs);
	free(b.wait_seal);
	free(b.intent);
	free(b.queue);
	free(b.sign);
	free(b.record);
	free(b.deliver);
	free(b.total);
	drv_signer_close(b.signer);
	st_ca_free(b.ca);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "bench_pool: could not remove %s\n", dir);
	return b.failed ? 1 : 0;
}
