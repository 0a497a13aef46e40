/* Issuance benchmark: N pre-made CSRs checked and issued on 1 and 2 threads, with the CA key
 * in a file and in SoftHSM2, against the crypto-only bound measured in the same run: per
 * certificate one ECDSA verification (the CSR), one signature (in process for the file key,
 * C_Sign through the signer for SoftHSM2) and one verification (the new certificate), with
 * every key and context prepared beforehand. Prints certificates/s, the bound and their ratio,
 * and the ratio to the reference server (276 certificates/s per worker).
 *
 * Usage: bench_issue [-n N] [-t MAXTHREADS] [-r ROUNDS] [--no-softhsm]
 * Each figure is the best of ROUNDS (default 5) alternating runs. Rates are given per second
 * of wall clock and per CPU second (summed over the threads); on a shared machine the CPU
 * figures are the steadier ones. Not a test: compare the ratios of one run. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "ca.h"
#include "err.h"
#include "issue.h"
#include "log.h"
#include "policy.h"
#include "signer.h"
#include "testutil.h"

#define FACTORY "bench-factory"
#define REFERENCE_PER_WORKER 276.0
#define MAX_THREADS 8

struct csr_item {
	uint8_t *der;
	size_t len;
	char id[64];
};

static struct csr_item *csrs;
static size_t ncsr = 2000;

/* For the bound: a device key with one signature over one digest. */
static EVP_PKEY *dev_key;
static uint8_t dev_digest[32], dev_sig[DRV_SIGNER_MAX_SIG];
static size_t dev_siglen;

static void die(const char *what, const char *err)
{
	fprintf(stderr, "bench_issue: %s: %s\n", what, err ? err : "");
	exit(1);
}

static double clock_s(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double now_s(void)
{
	return clock_s(CLOCK_MONOTONIC);
}

static double cpu_s(void)
{
	return clock_s(CLOCK_THREAD_CPUTIME_ID);
}

static void make_csrs(void)
{
	EVP_PKEY_CTX *ctx;
	size_t i;

	csrs = calloc(ncsr, sizeof(*csrs));
	for (i = 0; i < ncsr; i++) {
		EVP_PKEY *key = EVP_EC_gen("prime256v1");

		snprintf(csrs[i].id, sizeof(csrs[i].id), "%08zx-0000-4000-8000-%012zx", i, i);
		csrs[i].der = tu_csr_der(key, csrs[i].id, FACTORY, 0, &csrs[i].len);
		if (!csrs[i].der)
			die("CSR", csrs[i].id);
		EVP_PKEY_free(key);
	}
	dev_key = EVP_EC_gen("prime256v1");
	memset(dev_digest, 0x5a, sizeof(dev_digest));
	ctx = EVP_PKEY_CTX_new(dev_key, NULL);
	dev_siglen = sizeof(dev_sig);
	if (EVP_PKEY_sign_init(ctx) <= 0 ||
	    EVP_PKEY_sign(ctx, dev_sig, &dev_siglen, dev_digest, sizeof(dev_digest)) <= 0)
		die("device signature", NULL);
	EVP_PKEY_CTX_free(ctx);
}

/* One configuration under test. */
struct setup {
	const char *name;
	struct drv_signer *signer;
	EVP_PKEY *ca_priv; /* file key: the in-process signature of the bound; else NULL */
	struct st_ca *ca;
};

struct worker {
	const struct setup *s;
	int bound; /* 0: issue certificates; 1: crypto-only bound */
	size_t from, to;
	double t0, t1;   /* wall clock */
	double cpu;      /* this thread's CPU seconds over the same span */
	pthread_barrier_t *barrier;
	int failed;
	char err[512];
};

static void run_issue(struct worker *w, void *sess)
{
	struct st_issuer *is = NULL;
	struct st_policy p;
	struct st_cert *cert;
	size_t i;

	st_policy_default(&p);
	if (st_issuer_new(w->s->ca, w->s->signer, sess, &is, w->err, sizeof(w->err)) < 0) {
		w->failed = 1;
		pthread_barrier_wait(w->barrier);
		return;
	}
	pthread_barrier_wait(w->barrier);
	w->t0 = now_s();
	w->cpu = cpu_s();
	for (i = w->from; i < w->to; i++) {
		if (st_issue_csr(is, &p, csrs[i].der, csrs[i].len, csrs[i].id, 0, &cert, w->err,
				 sizeof(w->err)) < 0) {
			w->failed = 1;
			break;
		}
		st_cert_free(cert);
	}
	w->t1 = now_s();
	w->cpu = cpu_s() - w->cpu;
	st_issuer_free(is);
}

/* verify + sign + verify per certificate, keys and contexts prepared beforehand. */
static void run_bound(struct worker *w, void *sess)
{
	EVP_PKEY_CTX *vdev = EVP_PKEY_CTX_new(dev_key, NULL);
	EVP_PKEY_CTX *vca = EVP_PKEY_CTX_new(w->s->ca->pkey, NULL);
	EVP_PKEY_CTX *sca = w->s->ca_priv ? EVP_PKEY_CTX_new(w->s->ca_priv, NULL) : NULL;
	uint8_t sig[DRV_SIGNER_MAX_SIG];
	size_t siglen, i;

	if (!vdev || !vca || EVP_PKEY_verify_init(vdev) <= 0 || EVP_PKEY_verify_init(vca) <= 0 ||
	    (sca && EVP_PKEY_sign_init(sca) <= 0)) {
		w->failed = 1;
		snprintf(w->err, sizeof(w->err), "cannot set up contexts");
		pthread_barrier_wait(w->barrier);
		goto out;
	}
	pthread_barrier_wait(w->barrier);
	w->t0 = now_s();
	w->cpu = cpu_s();
	for (i = w->from; i < w->to; i++) {
		if (EVP_PKEY_verify(vdev, dev_sig, dev_siglen, dev_digest, 32) != 1) {
			w->failed = 1;
			break;
		}
		siglen = sizeof(sig);
		if (sca) {
			if (EVP_PKEY_sign(sca, sig, &siglen, dev_digest, 32) <= 0) {
				w->failed = 1;
				break;
			}
		} else if (drv_signer_sign(w->s->signer, sess, dev_digest, 32, sig, &siglen,
					   w->err, sizeof(w->err)) < 0) {
			w->failed = 1;
			break;
		}
		if (EVP_PKEY_verify(vca, sig, siglen, dev_digest, 32) != 1) {
			w->failed = 1;
			snprintf(w->err, sizeof(w->err), "bound: CA signature does not verify");
			break;
		}
	}
	w->t1 = now_s();
	w->cpu = cpu_s() - w->cpu;
out:
	EVP_PKEY_CTX_free(vdev);
	EVP_PKEY_CTX_free(vca);
	EVP_PKEY_CTX_free(sca);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	void *sess = NULL;

	/* One signer session per thread, for the thread's life, as the signing pool does. */
	if (drv_signer_session_open(w->s->signer, &sess, w->err, sizeof(w->err)) < 0) {
		w->failed = 1;
		pthread_barrier_wait(w->barrier);
		return NULL;
	}
	if (w->bound)
		run_bound(w, sess);
	else
		run_issue(w, sess);
	drv_signer_session_close(w->s->signer, sess);
	return NULL;
}

/* Runs N items on nthreads: items per second of wall clock, and per CPU second summed over
 * the threads (which other processes on the machine disturb far less). */
static void run(const struct setup *s, int bound, int nthreads, double *wall_rate,
		double *cpu_rate)
{
	struct worker w[MAX_THREADS];
	pthread_t th[MAX_THREADS];
	pthread_barrier_t barrier;
	double t0 = 0, t1 = 0, cpu = 0;
	int i;

	pthread_barrier_init(&barrier, NULL, (unsigned)nthreads);
	for (i = 0; i < nthreads; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].s = s;
		w[i].bound = bound;
		w[i].from = ncsr * (size_t)i / (size_t)nthreads;
		w[i].to = ncsr * (size_t)(i + 1) / (size_t)nthreads;
		w[i].barrier = &barrier;
		pthread_create(&th[i], NULL, worker_main, &w[i]);
	}
	for (i = 0; i < nthreads; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&barrier);
	for (i = 0; i < nthreads; i++) {
		if (w[i].failed)
			die(bound ? "bound" : "issue", w[i].err);
		if (i == 0 || w[i].t0 < t0)
			t0 = w[i].t0;
		if (i == 0 || w[i].t1 > t1)
			t1 = w[i].t1;
		cpu += w[i].cpu;
	}
	*wall_rate = (double)ncsr / (t1 - t0);
	*cpu_rate = (double)ncsr / cpu;
}

static int rounds = 5;

static void report(const struct setup *s, int maxthreads)
{
	double certs = 0, bound = 0, certs_cpu = 0, bound_cpu = 0, w, c;
	int t, r;

	for (t = 1; t <= maxthreads; t++) {
		/* Bound and issuance alternate, so both see the same machine load; the best
		 * round of each counts, as the least disturbed by other processes. */
		certs = bound = certs_cpu = bound_cpu = 0;
		for (r = 0; r < rounds; r++) {
			run(s, 1, t, &w, &c);
			bound = w > bound ? w : bound;
			bound_cpu = c > bound_cpu ? c : bound_cpu;
			run(s, 0, t, &w, &c);
			certs = w > certs ? w : certs;
			certs_cpu = c > certs_cpu ? c : certs_cpu;
		}
		printf("%-10s %7d %10.0f %10.0f %7.2f %10.0f %10.0f %7.2f %8.1fx\n", s->name, t,
		       certs, bound, certs / bound, certs_cpu, bound_cpu, certs_cpu / bound_cpu,
		       certs / (REFERENCE_PER_WORKER * t));
		fflush(stdout);
	}
}

/* The local CA, self-signed through the signer (x509sign); valid longer than a device
 * certificate, so that issuance never clamps. */
static void setup_ca(struct setup *s)
{
	char err[512] = "";
	X509 *cert = tu_signer_ca(s->signer, "bench-ca", FACTORY, 7400, err, sizeof(err));

	if (!cert)
		die("CA certificate", err);
	if (st_ca_from_x509(cert, NULL, cert, s->name, &s->ca, err, sizeof(err)) < 0)
		die("CA", err);
	X509_free(cert);
}

static void bench_file(const char *dir, int maxthreads)
{
	struct setup s = { .name = "file" };
	char path[4200], err[512] = "";

	snprintf(path, sizeof(path), "%s/ca.key", dir);
	s.ca_priv = EVP_EC_gen("prime256v1");
	if (tu_file_signer(path, s.ca_priv, &s.signer, err, sizeof(err)) < 0)
		die("signer", err);
	setup_ca(&s);
	report(&s, maxthreads);
	st_ca_free(s.ca);
	drv_signer_close(s.signer);
	EVP_PKEY_free(s.ca_priv);
}

static void bench_softhsm(const char *dir, int maxthreads)
{
	struct setup s = { .name = "softhsm2" };
	struct tu_softhsm hsm;
	char path[4200], err[512] = "";

	snprintf(path, sizeof(path), "%s/hsm", dir);
	if (mkdir(path, 0700) != 0)
		die("mkdir", path);
	if (tu_softhsm_token(&hsm, path, "bench", "local-ca", err, sizeof(err)) < 0)
		die("token", err);
	if (drv_pkcs11_generate_ec_key(&hsm.cfg, NULL, err, sizeof(err)) < 0)
		die("key", err);
	if (drv_signer_open(&hsm.cfg, &s.signer, err, sizeof(err)) < 0)
		die("signer", err);
	setup_ca(&s);
	report(&s, maxthreads);
	st_ca_free(s.ca);
	drv_signer_close(s.signer);
}

int main(int argc, char **argv)
{
	char dir[] = "/tmp/station-bench-issue-XXXXXX", cmd[128];
	int maxthreads = 2, softhsm = 1, i;
	double t0;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) {
			ncsr = strtoul(argv[++i], NULL, 10);
		} else if (strcmp(argv[i], "-t") == 0 && i + 1 < argc) {
			maxthreads = atoi(argv[++i]);
		} else if (strcmp(argv[i], "-r") == 0 && i + 1 < argc) {
			rounds = atoi(argv[++i]);
		} else if (strcmp(argv[i], "--no-softhsm") == 0) {
			softhsm = 0;
		} else {
			fprintf(stderr, "usage: bench_issue [-n N] [-t MAXTHREADS] [-r ROUNDS] "
					"[--no-softhsm]\n");
			return 2;
		}
	}
	if (ncsr < 10 || maxthreads < 1 || maxthreads > MAX_THREADS || rounds < 1) {
		fprintf(stderr, "bench_issue: -n must be >= 10, -t 1..%d, -r >= 1\n",
			MAX_THREADS);
		return 2;
	}
	st_log_set_level(ST_LOG_ERR);
	if (!mkdtemp(dir))
		die("mkdtemp", dir);
	t0 = now_s();
	make_csrs();
	printf("bench_issue: %zu CSRs (EC P-256, distinct keys) made in %.2f s; %ld CPUs online\n",
	       ncsr, now_s() - t0, sysconf(_SC_NPROCESSORS_ONLN));
	printf("per run: check CSR + build + sign + verify, vs bound = verify + sign + verify\n");
	printf("%-10s %7s %10s %10s %7s %10s %10s %7s %9s\n", "signer", "threads", "certs/s",
	       "bound/s", "ratio", "certs/cpu", "bound/cpu", "ratio", "vs ref");
	bench_file(dir, maxthreads);
	if (softhsm && access(TU_SOFTHSM_MODULE, R_OK) == 0)
		bench_softhsm(dir, maxthreads);
	else if (softhsm)
		printf("softhsm2: %s not found, skipped\n", TU_SOFTHSM_MODULE);
	printf("ratio = issuance over the crypto-only bound on the same threads, per wall-clock\n"
	       "second and per CPU second (target >= 0.60); vs ref = certs/s over the reference\n"
	       "server's %.0f certs/s per worker x threads\n", REFERENCE_PER_WORKER);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "bench_issue: could not remove %s\n", dir);
	for (i = 0; i < (int)ncsr; i++)
		free(csrs[i].der);
	free(csrs);
	EVP_PKEY_free(dev_key);
	return 0;
}
