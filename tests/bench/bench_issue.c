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
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "ca.h"
#include "err.h"
#include "issue.h"
#include "log.h"
#include "policy.h"
#include "signer.h"
#include "x509sign.h"

#define FACTORY "bench-factory"
#define MODULE "/usr/lib/softhsm/libsofthsm2.so"
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

static void add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);

	if (!ext || !X509_add_ext(x, ext, -1))
		die("extension", value);
	X509_EXTENSION_free(ext);
}

/* A self-signed local CA certificate for pub, signed through the signer (x509sign). */
static X509 *make_ca_cert(struct drv_signer *signer, void *sess)
{
	EVP_PKEY *pub = drv_signer_public_key(signer);
	X509_NAME *name = X509_NAME_new();
	X509 *x = X509_new();
	X509V3_CTX ctx;
	char err[512] = "";

	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)"bench-ca",
				   -1, -1, 0);
	X509_NAME_add_entry_by_txt(name, "OU", MBSTRING_UTF8, (const unsigned char *)FACTORY,
				   -1, -1, 0);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_set_subject_name(x, name);
	X509_set_issuer_name(x, name);
	X509_gmtime_adj(X509_getm_notBefore(x), -60);
	X509_gmtime_adj(X509_getm_notAfter(x), 7400L * 86400);
	X509_set_pubkey(x, pub);
	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
	add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
	add_ext(x, &ctx, NID_subject_key_identifier, "hash");
	if (st_x509_sign(x, signer, sess, err, sizeof(err)) < 0)
		die("CA certificate", err);
	X509_NAME_free(name);
	EVP_PKEY_free(pub);
	return x;
}

static void make_csrs(void)
{
	EVP_PKEY_CTX *ctx;
	size_t i;

	csrs = calloc(ncsr, sizeof(*csrs));
	for (i = 0; i < ncsr; i++) {
		EVP_PKEY *key = EVP_EC_gen("prime256v1");
		X509_REQ *req = X509_REQ_new();
		X509_NAME *name = X509_NAME_new();
		unsigned char *der = NULL;
		int n;

		snprintf(csrs[i].id, sizeof(csrs[i].id), "%08zx-0000-4000-8000-%012zx", i, i);
		X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
					   (const unsigned char *)csrs[i].id, -1, -1, 0);
		X509_NAME_add_entry_by_txt(name, "OU", MBSTRING_UTF8,
					   (const unsigned char *)FACTORY, -1, -1, 0);
		X509_REQ_set_subject_name(req, name);
		X509_REQ_set_pubkey(req, key);
		if (X509_REQ_sign(req, key, EVP_sha256()) <= 0)
			die("CSR", "sign");
		n = i2d_X509_REQ(req, &der);
		csrs[i].der = malloc((size_t)n);
		memcpy(csrs[i].der, der, (size_t)n);
		csrs[i].len = (size_t)n;
		OPENSSL_free(der);
		X509_NAME_free(name);
		X509_REQ_free(req);
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

static struct drv_signer *open_signer(const struct drv_signer_config *cfg)
{
	struct drv_signer *s = NULL;
	char err[512] = "";

	if (drv_signer_open(cfg, &s, err, sizeof(err)) < 0)
		die("signer", err);
	return s;
}

static void setup_ca(struct setup *s)
{
	char err[512] = "";
	void *sess = NULL;
	X509 *cert;

	if (drv_signer_session_open(s->signer, &sess, err, sizeof(err)) < 0)
		die("session", err);
	cert = make_ca_cert(s->signer, sess);
	drv_signer_session_close(s->signer, sess);
	if (st_ca_from_x509(cert, NULL, cert, s->name, &s->ca, err, sizeof(err)) < 0)
		die("CA", err);
	X509_free(cert);
}

static void bench_file(const char *dir, int maxthreads)
{
	struct drv_signer_config cfg = { .backend = "file" };
	struct setup s = { .name = "file" };
	char path[4200];
	FILE *f;

	snprintf(path, sizeof(path), "%s/ca.key", dir);
	s.ca_priv = EVP_EC_gen("prime256v1");
	f = fopen(path, "w");
	if (!f || fchmod(fileno(f), 0600) != 0 ||
	    !PEM_write_PrivateKey(f, s.ca_priv, NULL, NULL, 0, NULL, NULL))
		die("key file", path);
	fclose(f);
	cfg.key = path;
	s.signer = open_signer(&cfg);
	setup_ca(&s);
	report(&s, maxthreads);
	st_ca_free(s.ca);
	drv_signer_close(s.signer);
	EVP_PKEY_free(s.ca_priv);
}

static void bench_softhsm(const char *dir, int maxthreads)
{
	struct drv_signer_config cfg = { .backend = "pkcs11" };
	struct setup s = { .name = "softhsm2" };
	char hsm[4200], conf[4300], tokens[4300], uri[4600], err[512] = "";
	FILE *f;

	snprintf(hsm, sizeof(hsm), "%s/hsm", dir);
	snprintf(conf, sizeof(conf), "%s/softhsm2.conf", hsm);
	snprintf(tokens, sizeof(tokens), "%s/tokens", hsm);
	if (mkdir(hsm, 0700) != 0 || mkdir(tokens, 0700) != 0)
		die("mkdir", hsm);
	f = fopen(conf, "w");
	if (!f)
		die("conf", conf);
	fprintf(f, "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n",
		tokens);
	fclose(f);
	setenv("SOFTHSM2_CONF", conf, 1);
	/* A throwaway token: its PINs live only in this process's memory and environment. */
	setenv("BENCH_ISSUE_PIN", "bench-user-pin", 1);
	if (drv_pkcs11_init_token(MODULE, "bench", "bench-so-pin", "bench-user-pin", err,
				  sizeof(err)) < 0)
		die("token", err);
	snprintf(uri, sizeof(uri), "pkcs11:token=bench;object=local-ca?module-path=%s", MODULE);
	cfg.key = uri;
	cfg.pin_env = "BENCH_ISSUE_PIN";
	if (drv_pkcs11_generate_ec_key(&cfg, NULL, err, sizeof(err)) < 0)
		die("key", err);
	s.signer = open_signer(&cfg);
	setup_ca(&s);
	report(&s, maxthreads);
	st_ca_free(s.ca);
	drv_signer_close(s.signer);
	unsetenv("BENCH_ISSUE_PIN");
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
	if (softhsm && access(MODULE, R_OK) == 0)
		bench_softhsm(dir, maxthreads);
	else if (softhsm)
		printf("softhsm2: %s not found, skipped\n", MODULE);
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
