/* Registration API benchmark: registrations/s over loopback HTTP through the whole station
 * path (H2O, JSON, profile, sota.toml, CSR checks, signing pool with W workers, SQLite
 * ledger with fsync, the 201 answer), one round per connection count, each against bounds
 * measured in the same run:
 * - throughput: CPUs x the crypto-only rate (verify the CSR, sign, verify the signature, keys
 *   and contexts ready, on one thread); for one connection, whose requests follow each other,
 *   also its latency floor: two ledger commits (the intent, then the certificate), timed
 *   here as fsynced SQLite commits in the ledger's directory, plus the crypto;
 * - the server's CPU per registration (the process's threads over the round, the client's
 *   thread left out) as a multiple of one certificate's crypto-only CPU, split into the
 *   event loop, the ledger thread and the signing workers; the ledger's commits per
 *   registration;
 * - the reference server's ~276 registrations/s per core.
 * The crypto-only bound is measured once before the rounds (the header's figures) and again
 * on the client's thread between rounds, the server idle: a shared machine's speed drifts
 * over a run, so each round is weighed against the mean of the bounds just before and just
 * after it.
 *
 * The server runs on the main thread's loop as `station serve` runs it; a client thread with
 * its own loop keeps C keep-alive connections busy with N distinct devices per round (P-256
 * keys and CSRs made beforehand, bodies shaped as the device tool sends them, with an
 * OSF-TOKEN). Loopback only.
 *
 * Usage: bench_http [-n N] [-c LIST] [-w WORKERS] [--softhsm] [-d DIR] [--json FILE]
 *                   [--bound-n N] [--no-round-bounds]
 *   -n N       registrations per round (default 2000)
 *   -c LIST    connection counts, one round each (default 1,8,128)
 *   --bound-n N          certificates the bound is measured over (default 5000)
 *   --no-round-bounds    every round against the first bound (tests/bench/instructions.sh:
 *                        callgrind counts the bound's instructions once)
 * Not a test: the machine's load moves the absolute figures; compare the ratios of a run. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sqlite3.h>
#include <uv.h>

#include "bench.h"
#include "ca.h"
#include "config.h"
#include "err.h"
#include "heap.h"
#include "http.h"
#include "log.h"
#include "pool.h"
#include "profile.h"
#include "profiles.h"
#include "signer.h"
#include "testutil.h"
#include "x509sign.h"

#define FACTORY "bench-factory"
#define TOKEN "bench-token-0123456789abcdef"
#define REFERENCE_PER_CORE 276.0

static const char profile_yaml[] = "sku: bench-gw\n"
				   "match: {hardware_ids: [bench-board]}\n"
				   "factory: " FACTORY "\n"
				   "sota:\n"
				   "  gateway: https://ota-lite.foundries.io:8443\n"
				   "  ostree_server: https://ostree.foundries.io:8443\n"
				   "files:\n"
				   "  - set: foundries\n";

static void die(const char *what, const char *err)
{
	fprintf(stderr, "bench_http: %s: %s\n", what, err ? err : "");
	exit(1);
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

/* ---- The CA ------------------------------------------------------------------------------ */

struct setup {
	struct drv_signer *signer;
	struct st_ca *ca;
	EVP_PKEY *ca_priv; /* file key only: the bound signs in-process */
	X509 *root;
};

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;

	X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (!ext)
		die("extension", value);
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
}

static X509 *ca_cert(EVP_PKEY *pub, const char *cn, X509 *issuer, int pathlen0)
{
	X509 *x = X509_new();
	X509_NAME *name = X509_NAME_new();

	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), pathlen0 ? 2 : 1);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0);
	X509_NAME_add_entry_by_txt(name, "OU", MBSTRING_UTF8, (const unsigned char *)FACTORY, -1,
				   -1, 0);
	X509_set_subject_name(x, name);
	X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
	X509_NAME_free(name);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 3650L * 86400);
	X509_set_pubkey(x, pub);
	add_ext(x, issuer ? issuer : x, NID_basic_constraints,
		pathlen0 ? "critical,CA:TRUE,pathlen:0" : "critical,CA:TRUE");
	add_ext(x, issuer ? issuer : x, NID_key_usage, "critical,keyCertSign,cRLSign");
	add_ext(x, issuer ? issuer : x, NID_subject_key_identifier, "hash");
	return x;
}

/* A factory root (key in memory) and the local CA under it, with its key in a file or in
 * SoftHSM2. */
static void setup(struct setup *s, const char *dir, int softhsm)
{
	EVP_PKEY *root_key = EVP_EC_gen("prime256v1"), *pub = NULL;
	char path[4200], err[512] = "";
	struct tu_softhsm hsm;
	X509 *x;

	s->root = ca_cert(root_key, "Factory-CA", NULL, 0);
	X509_sign(s->root, root_key, EVP_sha256());
	if (softhsm) {
		if (tu_softhsm_token(&hsm, dir, "bench", "local-ca", err, sizeof(err)) != 0)
			die("token", err);
		if (drv_pkcs11_generate_ec_key(&hsm.cfg, NULL, err, sizeof(err)) != 0)
			die("key", err);
		if (drv_signer_open(&hsm.cfg, &s->signer, err, sizeof(err)) != 0)
			die("signer", err);
	} else {
		s->ca_priv = EVP_EC_gen("prime256v1");
		snprintf(path, sizeof(path), "%s/ca.key", dir);
		if (tu_file_signer(path, s->ca_priv, &s->signer, err, sizeof(err)) != 0)
			die("signer", err);
	}
	pub = drv_signer_public_key(s->signer);
	x = ca_cert(pub, "Local-Device-CA", s->root, 1);
	X509_sign(x, root_key, EVP_sha256());
	if (st_ca_from_x509(x, NULL, s->root, "bench CA", &s->ca, err, sizeof(err)) != 0)
		die("CA", err);
	X509_free(x);
	EVP_PKEY_free(pub);
	EVP_PKEY_free(root_key);
}

/* ---- Devices ----------------------------------------------------------------------------- */

struct device {
	char *req; /* the whole HTTP request */
	size_t len;
};

static void uuid4(char out[37])
{
	unsigned char b[16];

	RAND_bytes(b, sizeof(b));
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	snprintf(out, 37,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
		 b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
		 b[14], b[15]);
}

/* A device as the device tool makes it: key, CSR with CN=uuid, OU=factory and the
 * keyUsage/EKU request, the JSON body pretty-printed with "\/" escapes. */
static void make_device(struct device *d)
{
	EVP_PKEY *key = EVP_EC_gen("prime256v1");
	X509_REQ *req = X509_REQ_new();
	X509_NAME *name = X509_NAME_new();
	STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
	X509V3_CTX ctx;
	BIO *b = BIO_new(BIO_s_mem());
	char uuid[37], *pem, *body;
	long n;
	json_t *o;

	uuid4(uuid);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)uuid, -1, -1,
				   0);
	X509_NAME_add_entry_by_txt(name, "OU", MBSTRING_UTF8, (const unsigned char *)FACTORY,
				   -1, -1, 0);
	X509_REQ_set_subject_name(req, name);
	X509_NAME_free(name);
	X509_REQ_set_pubkey(req, key);
	X509V3_set_ctx(&ctx, NULL, NULL, req, NULL, 0);
	sk_X509_EXTENSION_push(exts, X509V3_EXT_conf_nid(NULL, &ctx, NID_key_usage,
							 "critical,digitalSignature"));
	sk_X509_EXTENSION_push(exts, X509V3_EXT_conf_nid(NULL, &ctx, NID_ext_key_usage,
							 "critical,clientAuth"));
	X509_REQ_add_extensions(req, exts);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	X509_REQ_sign(req, key, EVP_sha256());
	PEM_write_bio_X509_REQ(b, req);
	n = BIO_get_mem_data(b, &pem);
	o = json_pack("{s:s,s:s,s:s%,s:s,s:s,s:{s:{s:s}},s:s}", "name", "bench-device", "uuid",
		      uuid, "csr", pem, (size_t)n, "hardware-id", "bench-board", "sota-config-dir",
		      "/var/sota", "overrides", "pacman", "tags", "\"main\"", "use-ostree-server",
		      "true");
	body = o ? json_dumps(o, JSON_INDENT(4) | JSON_ESCAPE_SLASH | JSON_PRESERVE_ORDER) : NULL;
	if (!body)
		die("device", "cannot build the body");
	if (asprintf(&d->req,
		     "POST /sign HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench_http\r\n"
		     "Content-Type: application/json\r\nOSF-TOKEN: %s\r\nContent-Length: %zu\r\n"
		     "\r\n%s",
		     TOKEN, strlen(body), body) < 0)
		die("device", "out of memory");
	d->len = strlen(d->req);
	free(body);
	json_decref(o);
	BIO_free(b);
	X509_REQ_free(req);
	EVP_PKEY_free(key);
}

/* ---- The crypto-only bound ---------------------------------------------------------------- */

/* verify + sign + verify per certificate on this thread, keys and contexts ready: what one
 * core could do at best (the file key signs in-process; SoftHSM2 through the signer). Never
 * inlined: tests/bench/instructions.sh counts its instructions by its name. */
__attribute__((noinline)) static double bound_rate(const struct setup *s, size_t m, double *cpu)
{
	EVP_PKEY *dev = EVP_EC_gen("prime256v1");
	EVP_PKEY_CTX *sdev = EVP_PKEY_CTX_new(dev, NULL), *vdev = EVP_PKEY_CTX_new(dev, NULL);
	EVP_PKEY_CTX *vca = EVP_PKEY_CTX_new(s->ca->pkey, NULL);
	EVP_PKEY_CTX *sca = s->ca_priv ? EVP_PKEY_CTX_new(s->ca_priv, NULL) : NULL;
	uint8_t digest[32], dsig[DRV_SIGNER_MAX_SIG], sig[DRV_SIGNER_MAX_SIG];
	size_t dlen = sizeof(dsig), slen;
	char err[512] = "";
	void *sess = NULL;
	double t0, c0, t;

	RAND_bytes(digest, sizeof(digest));
	if (EVP_PKEY_sign_init(sdev) <= 0 || EVP_PKEY_sign(sdev, dsig, &dlen, digest, 32) <= 0 ||
	    EVP_PKEY_verify_init(vdev) <= 0 || EVP_PKEY_verify_init(vca) <= 0 ||
	    (sca && EVP_PKEY_sign_init(sca) <= 0))
		die("bound", "cannot set up contexts");
	if (!sca && drv_signer_session_open(s->signer, &sess, err, sizeof(err)) != 0)
		die("bound", err);
	t0 = now_s();
	c0 = cpu_s(CLOCK_THREAD_CPUTIME_ID);
	for (size_t i = 0; i < m; i++) {
		slen = sizeof(sig);
		if (EVP_PKEY_verify(vdev, dsig, dlen, digest, 32) != 1)
			die("bound", "device signature");
		if (sca ? EVP_PKEY_sign(sca, sig, &slen, digest, 32) <= 0 :
			  drv_signer_sign(s->signer, sess, digest, 32, sig, &slen, err,
					  sizeof(err)) < 0)
			die("bound", "CA signature");
		if (EVP_PKEY_verify(vca, sig, slen, digest, 32) != 1)
			die("bound", "CA signature does not verify");
	}
	t = now_s() - t0;
	*cpu = (cpu_s(CLOCK_THREAD_CPUTIME_ID) - c0) / (double)m;
	if (sess)
		drv_signer_session_close(s->signer, sess);
	EVP_PKEY_CTX_free(sdev);
	EVP_PKEY_CTX_free(vdev);
	EVP_PKEY_CTX_free(vca);
	EVP_PKEY_CTX_free(sca);
	EVP_PKEY_free(dev);
	return (double)m / t;
}

/* ---- The ledger's commit latency ------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The median time of one fsynced SQLite commit (WAL, synchronous=FULL, as the ledger keeps
 * its file) of a row of a registration's size, in a scratch database in dir: the file
 * system the ledger is on. Seconds. */
static double commit_latency(const char *dir, unsigned n)
{
	char path[4200], *msg = NULL;
	double t[64], t0;
	sqlite3 *db = NULL;
	sqlite3_stmt *ins = NULL;
	uint8_t row[600];

	if (n > sizeof(t) / sizeof(t[0]))
		n = sizeof(t) / sizeof(t[0]);
	snprintf(path, sizeof(path), "%s/commit-latency.db", dir);
	if (sqlite3_open(path, &db) != SQLITE_OK ||
	    sqlite3_exec(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; "
			     "CREATE TABLE t (v BLOB)", NULL, NULL, &msg) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "INSERT INTO t (v) VALUES (?)", -1, &ins, NULL) != SQLITE_OK)
		die("commit latency", msg ? msg : sqlite3_errmsg(db));
	RAND_bytes(row, sizeof(row));
	for (unsigned i = 0; i < n; i++) {
		t0 = now_s();
		if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, &msg) != SQLITE_OK ||
		    sqlite3_bind_blob(ins, 1, row, sizeof(row), SQLITE_STATIC) != SQLITE_OK ||
		    sqlite3_step(ins) != SQLITE_DONE || sqlite3_reset(ins) != SQLITE_OK ||
		    sqlite3_exec(db, "COMMIT", NULL, NULL, &msg) != SQLITE_OK)
			die("commit latency", msg ? msg : sqlite3_errmsg(db));
		t[i] = now_s() - t0;
	}
	sqlite3_finalize(ins);
	sqlite3_close(db);
	qsort(t, n, sizeof(t[0]), cmp_double);
	return t[n / 2];
}

/* ---- The client -------------------------------------------------------------------------- */

struct client;

struct conn {
	uv_tcp_t tcp;
	uv_connect_t connect;
	uv_write_t write;
	struct client *cl;
	char *buf;
	size_t len, cap;
	uint64_t sent_at;
};

/* One round's figures. */
struct round {
	unsigned nconn;
	size_t created, other;
	double wall_s, rate;
	double p50_ms, p99_ms, max_ms;
	struct st_bench_threads th; /* the process's threads over the round */
	double client_cpu_s;        /* of th.other_cpu_s, the client's thread */
	uint64_t commits;           /* the ledger's commits over the round */
	/* The crypto-only bound just before and just after the round, certificates/s and CPU s
	 * a certificate on one thread; the round is weighed against their means. */
	double rate_before, rate_after, cpu_before, cpu_after;
};

struct client {
	uv_loop_t loop;
	struct sockaddr_in addr;
	struct device *dev;   /* this round's devices */
	size_t n, next, done, created, other;
	unsigned nconn;
	struct conn *conns;
	uint64_t *lat;
	double t1, cpu1;
	struct st_bench_sampler sampler;
	struct st_pool_stats pool0, pool1; /* the pool's counters at a round's start and end */
	const unsigned *counts; /* connections per round */
	size_t nrounds;
	struct round *rounds;
	uv_async_t *finished; /* the server loop's: told when the client is done */
	uv_async_t *snap;     /* the server loop's: copies the pool's counters into snap_out */
	struct st_pool_stats *snap_out;
	uv_sem_t snapped;
	const struct setup *setup; /* for the bound before each round */
	unsigned bound_n;          /* its certificates; 0: every round takes the run's first */
	double bound, bound_cpu;   /* the run's first bound */
};

/* The pool's counters now, copied on the server's loop thread (the pool's own) while this
 * thread waits. */
static void pool_snapshot(struct client *cl, struct st_pool_stats *out)
{
	cl->snap_out = out;
	uv_async_send(cl->snap);
	uv_sem_wait(&cl->snapped);
}

static void send_next(struct conn *c);

static void on_alloc(uv_handle_t *h, size_t want, uv_buf_t *buf)
{
	struct conn *c = h->data;

	(void)want;
	if (c->cap - c->len < 16384) {
		c->cap = c->cap ? c->cap * 2 : 65536;
		c->buf = realloc(c->buf, c->cap);
		if (!c->buf)
			die("client", "out of memory");
	}
	*buf = uv_buf_init(c->buf + c->len, (unsigned)(c->cap - c->len));
}

/* One whole response in the buffer: its status; consumes it. 0 while incomplete. */
static int take_response(struct conn *c)
{
	char *end = memmem(c->buf, c->len, "\r\n\r\n", 4), *cl;
	size_t head, body = 0, total;
	int status;

	if (!end)
		return 0;
	head = (size_t)(end - c->buf) + 4;
	*end = 0;
	if (sscanf(c->buf, "HTTP/1.1 %d", &status) != 1)
		die("client", "bad status line");
	cl = strcasestr(c->buf, "\r\ncontent-length:");
	if (cl)
		body = strtoul(cl + 17, NULL, 10);
	*end = '\r';
	total = head + body;
	if (c->len < total)
		return 0;
	memmove(c->buf, c->buf + total, c->len - total);
	c->len -= total;
	return status;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = s->data;
	struct client *cl = c->cl;
	int status;

	(void)buf;
	if (nread < 0)
		die("client", uv_strerror((int)nread));
	c->len += (size_t)nread;
	status = take_response(c);
	if (!status)
		return;
	cl->lat[cl->done++] = uv_hrtime() - c->sent_at;
	if (status == 201)
		cl->created++;
	else
		cl->other++;
	if (cl->done == cl->n) {
		/* The round's end: what the server spent on it, before the connections close. */
		cl->t1 = now_s();
		cl->cpu1 = cpu_s(CLOCK_THREAD_CPUTIME_ID);
		st_bench_sample(&cl->sampler, 0);
		pool_snapshot(cl, &cl->pool1);
	}
	send_next(c);
}

static void on_written(uv_write_t *w, int status)
{
	if (status < 0)
		die("client write", uv_strerror(status));
	(void)w;
}

static void send_next(struct conn *c)
{
	struct client *cl = c->cl;
	uv_buf_t b;

	if (cl->next == cl->n) {
		uv_close((uv_handle_t *)&c->tcp, NULL);
		return;
	}
	b = uv_buf_init(cl->dev[cl->next].req, (unsigned)cl->dev[cl->next].len);
	cl->next++;
	c->sent_at = uv_hrtime();
	if (uv_write(&c->write, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0)
		die("client", "uv_write");
}

static void on_connected(uv_connect_t *r, int status)
{
	struct conn *c = r->data;

	if (status < 0)
		die("client connect", uv_strerror(status));
	uv_tcp_nodelay(&c->tcp, 1);
	uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	send_next(c);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Runs the rounds one after the other, each with its own devices and connections, and keeps
 * each round's figures. */
static void *client_main(void *arg)
{
	struct client *cl = arg;
	struct device *all = cl->dev;

	pthread_setname_np(pthread_self(), "bench-client");
	uv_loop_init(&cl->loop);
	for (size_t k = 0; k < cl->nrounds; k++) {
		struct round *rd = &cl->rounds[k];
		double t0, cpu0;

		/* The bound again, the server idle: a shared machine's speed drifts over a
		 * run, and each round is weighed against the bound of its own moment (the one
		 * just before it and the one just after, which is the next round's before). */
		if (!cl->bound_n) {
			rd->rate_before = rd->rate_after = cl->bound;
			rd->cpu_before = rd->cpu_after = cl->bound_cpu;
		} else if (k == 0) {
			rd->rate_before = bound_rate(cl->setup, cl->bound_n, &rd->cpu_before);
		} else {
			rd->rate_before = cl->rounds[k - 1].rate_after;
			rd->cpu_before = cl->rounds[k - 1].cpu_after;
		}
		cl->dev = all + k * cl->n;
		cl->next = cl->done = cl->created = cl->other = 0;
		cl->nconn = cl->counts[k] < cl->n ? cl->counts[k] : (unsigned)cl->n;
		memset(cl->conns, 0, cl->nconn * sizeof(*cl->conns));
		pool_snapshot(cl, &cl->pool0);
		st_bench_sample(&cl->sampler, 1);
		st_bench_sampler_restart(&cl->sampler);
		t0 = now_s();
		cpu0 = cpu_s(CLOCK_THREAD_CPUTIME_ID);
		for (unsigned i = 0; i < cl->nconn; i++) {
			struct conn *c = &cl->conns[i];

			c->cl = cl;
			uv_tcp_init(&cl->loop, &c->tcp);
			c->tcp.data = c;
			c->connect.data = c;
			uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&cl->addr,
				       on_connected);
		}
		uv_run(&cl->loop, UV_RUN_DEFAULT);
		for (unsigned i = 0; i < cl->nconn; i++)
			free(cl->conns[i].buf);
		rd->nconn = cl->nconn;
		rd->created = cl->created;
		rd->other = cl->other;
		rd->wall_s = cl->t1 - t0;
		rd->rate = (double)cl->created / rd->wall_s;
		st_bench_sampler_threads(&cl->sampler, &rd->th);
		rd->client_cpu_s = cl->cpu1 - cpu0;
		rd->commits = cl->pool1.commits - cl->pool0.commits;
		qsort(cl->lat, cl->done, sizeof(*cl->lat), cmp_u64);
		rd->p50_ms = (double)cl->lat[(cl->done - 1) / 2] / 1e6;
		rd->p99_ms = (double)cl->lat[(cl->done * 99 + 99) / 100 - 1] / 1e6;
		rd->max_ms = (double)cl->lat[cl->done - 1] / 1e6;
		if (cl->bound_n)
			rd->rate_after = bound_rate(cl->setup, cl->bound_n, &rd->cpu_after);
	}
	cl->dev = all;
	uv_loop_close(&cl->loop);
	uv_async_send(cl->finished);
	return NULL;
}

/* ---- The server side --------------------------------------------------------------------- */

struct server {
	struct st_http *http;
	struct st_pool *pool;
	struct st_profiles *profiles;
	uv_async_t finished, snap;
	struct client *cl;
};

static void on_snap(uv_async_t *a)
{
	struct server *sv = a->data;

	st_pool_stats(sv->pool, sv->cl->snap_out);
	uv_sem_post(&sv->cl->snapped);
}

static struct st_profiles *current_profiles(void *arg)
{
	return st_profiles_ref(((struct server *)arg)->profiles);
}

static void on_client_finished(uv_async_t *a)
{
	struct server *sv = a->data;

	st_http_close(sv->http, NULL, NULL);
	st_pool_close(sv->pool, NULL, NULL);
	uv_close((uv_handle_t *)&sv->snap, NULL);
	uv_close((uv_handle_t *)a, NULL);
}

/* "1,8,128": connection counts 1..1024. Returns how many, 0 when the list is bad. */
static size_t parse_counts(const char *text, unsigned *out, size_t max)
{
	char buf[256], *tok, *save = NULL, *end;
	size_t n = 0;

	if (snprintf(buf, sizeof(buf), "%s", text) >= (int)sizeof(buf))
		return 0;
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		unsigned long v = strtoul(tok, &end, 10);

		if (*end || v < 1 || v > 1024 || n == max)
			return 0;
		out[n++] = (unsigned)v;
	}
	return n;
}

static json_t *num(double v)
{
	return isnan(v) || isinf(v) ? json_null() : json_real(v);
}

/* One round's line and its JSON. */
static json_t *report_round(const struct round *rd, double commit_s, long ncpu)
{
	/* The mean bound: of the CPU a certificate, and of the time one takes. */
	double bound_cpu = (rd->cpu_before + rd->cpu_after) / 2;
	double bound = 2 / (1 / rd->rate_before + 1 / rd->rate_after), cpu_rate = bound * (double)ncpu;
	double floor_rate = 1 / (2 * commit_s + 1 / bound);
	double n = (double)(rd->created + rd->other);
	double loop_us = rd->th.loop_cpu_s / n * 1e6, ledger_us = rd->th.ledger_cpu_s / n * 1e6;
	double workers_us = rd->th.workers_cpu_s / n * 1e6;
	double rest_us = fmax(rd->th.other_cpu_s - rd->client_cpu_s, 0) / n * 1e6;
	double server_us = loop_us + ledger_us + workers_us + rest_us, b = bound_cpu * 1e6;
	double vs_floor = rd->nconn == 1 ? rd->rate / floor_rate : NAN;
	json_t *o;

	printf("%6u %7zu %9.0f %9.0f %6.3f %8.2f %8.2f %9.0f %6.0f %6.2f %6.2f %6.2f %6.2f %6.2f "
	       "%6.2f%s\n",
	       rd->nconn, rd->created, rd->rate, cpu_rate, rd->rate / cpu_rate, rd->p50_ms,
	       rd->p99_ms, server_us, b, server_us / b, loop_us / b, ledger_us / b,
	       workers_us / b, rest_us / b, (double)rd->commits / n,
	       rd->other ? "  NOT OK: answers other than 201" : "");
	if (rd->nconn == 1)
		printf("%6s %7s %9s %9.0f %6.3f  (one connection against its latency floor)\n",
		       "", "", "", floor_rate, vs_floor);
	o = json_pack("{s:i,s:I,s:I,s:o,s:o,s:o,s:o,s:o,s:{s:o,s:o,s:o}}", "connections",
		      (int)rd->nconn, "created", (json_int_t)rd->created, "other",
		      (json_int_t)rd->other, "wall_s", num(rd->wall_s), "per_s", num(rd->rate),
		      "cpus_bound_per_s", num(cpu_rate), "ratio", num(rd->rate / cpu_rate),
		      "vs_reference_per_core", num(rd->rate / (double)ncpu / REFERENCE_PER_CORE),
		      "latency_ms", "p50", num(rd->p50_ms), "p99", num(rd->p99_ms), "max",
		      num(rd->max_ms));
	if (rd->nconn == 1) {
		json_object_set_new(o, "floor_per_s", num(floor_rate));
		json_object_set_new(o, "floor_ratio", num(vs_floor));
	}
	json_object_set_new(o, "bound",
			    json_pack("{s:o,s:o,s:o,s:o,s:o}", "cpu_us", num(b), "wall_us",
				      num(1e6 / bound), "per_cpu_per_s", num(bound),
				      "cpu_us_before", num(rd->cpu_before * 1e6), "cpu_us_after",
				      num(rd->cpu_after * 1e6)));
	json_object_set_new(o, "server_cpu_us", num(server_us));
	json_object_set_new(o, "server_cpu_x_crypto", num(server_us / b));
	json_object_set_new(o, "threads_us",
			    json_pack("{s:o,s:o,s:o,s:o,s:o}", "loop", num(loop_us), "ledger",
				      num(ledger_us), "workers", num(workers_us), "other",
				      num(rest_us), "client", num(rd->client_cpu_s / n * 1e6)));
	json_object_set_new(o, "ledger",
			    json_pack("{s:I,s:o}", "commits", (json_int_t)rd->commits,
				      "commits_per_registration", num((double)rd->commits / n)));
	return o;
}

int main(int argc, char **argv)
{
	const char *base = getenv("TMPDIR"), *json_path = NULL;
	struct setup s;
	struct server sv;
	struct client cl;
	struct st_pool_config pc;
	struct st_config_http hc;
	struct st_http_env env;
	const struct st_profile *prof = NULL;
	char dir[4096], ledger[4200], cmd[4300], err[512] = "", *tokens[] = { TOKEN };
	unsigned counts[16] = { 1, 8, 128 };
	size_t ncounts = 3, total;
	uv_loop_t loop;
	pthread_t th;
	int softhsm = 0, port, bad = 0, round_bounds = 1;
	unsigned bound_n = 5000;
	double t0, bound, bound_cpu, commit_s, floor_rate, cpu_rate;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	json_t *doc, *jrounds;

	st_heap_tune(); /* as the station's main() */
	memset(&s, 0, sizeof(s));
	memset(&sv, 0, sizeof(sv));
	memset(&cl, 0, sizeof(cl));
	cl.n = 2000;
	st_pool_config_default(&pc);
	pc.workers = 2;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-n") && i + 1 < argc) {
			cl.n = strtoul(argv[++i], NULL, 10);
		} else if (!strcmp(argv[i], "-c") && i + 1 < argc) {
			ncounts = parse_counts(argv[++i], counts, sizeof(counts) / sizeof(counts[0]));
			if (!ncounts)
				die("options", "-c: connection counts 1..1024, comma separated, at "
				    "most 16");
		} else if (!strcmp(argv[i], "-w") && i + 1 < argc) {
			pc.workers = (unsigned)strtoul(argv[++i], NULL, 10);
		} else if (!strcmp(argv[i], "-d") && i + 1 < argc) {
			base = argv[++i];
		} else if (!strcmp(argv[i], "--json") && i + 1 < argc) {
			json_path = argv[++i];
		} else if (!strcmp(argv[i], "--bound-n") && i + 1 < argc) {
			bound_n = (unsigned)strtoul(argv[++i], NULL, 10);
		} else if (!strcmp(argv[i], "--softhsm")) {
			softhsm = 1;
		} else if (!strcmp(argv[i], "--no-round-bounds")) {
			round_bounds = 0;
		} else {
			fprintf(stderr, "usage: bench_http [-n N] [-c LIST] [-w WORKERS] [--softhsm] "
					"[-d DIR] [--json FILE] [--bound-n N] "
					"[--no-round-bounds]\n");
			return 2;
		}
	}
	if (cl.n < 10 || cl.n > 1000000 || bound_n < 10)
		die("options", "-n 10..1000000, --bound-n at least 10");
	if (ncpu < 1)
		ncpu = 1;
	st_log_set_level(ST_LOG_ERR);
	snprintf(dir, sizeof(dir), "%s/bench-http-XXXXXX", base ? base : "/tmp");
	if (!mkdtemp(dir))
		die("mkdtemp", dir);
	snprintf(ledger, sizeof(ledger), "%s/ledger.db", dir);
	setup(&s, dir, softhsm);

	t0 = now_s();
	total = cl.n * ncounts;
	cl.dev = calloc(total, sizeof(*cl.dev));
	cl.lat = calloc(cl.n, sizeof(*cl.lat));
	cl.conns = calloc(1024, sizeof(*cl.conns));
	cl.rounds = calloc(ncounts, sizeof(*cl.rounds));
	if (!cl.dev || !cl.lat || !cl.conns || !cl.rounds)
		die("memory", "out of memory");
	for (size_t i = 0; i < total; i++)
		make_device(&cl.dev[i]);
	printf("bench_http: %zu devices (P-256 keys, CSRs, device-tool bodies of ~%zu bytes) made "
	       "in %.1f s; %ld CPUs online; signer %s; %u signing workers; ledger in %s\n",
	       total, cl.dev[0].len, now_s() - t0, ncpu, softhsm ? "SoftHSM2" : "file", pc.workers,
	       dir);

	/* The bounds, in this run. */
	bound = bound_rate(&s, bound_n, &bound_cpu);
	cpu_rate = bound * (double)ncpu;
	commit_s = commit_latency(dir, 40);
	floor_rate = 1 / (2 * commit_s + 1 / bound);
	printf("crypto-only:  %.0f us CPU, %.0f us wall per certificate on one thread (verify + "
	       "sign + verify): %.0f/s per CPU, %.0f/s on %ld CPUs\n",
	       bound_cpu * 1e6, 1e6 / bound, bound, cpu_rate, ncpu);
	printf("ledger:       one fsynced SQLite commit takes %.2f ms here (median of 40): one "
	       "connection's floor is two commits + the crypto = %.2f ms, %.0f/s\n",
	       commit_s * 1e3, 1e3 / floor_rate, floor_rate);

	if (st_profile_load_buffer("bench.yaml", profile_yaml, sizeof(profile_yaml) - 1, stderr,
				   &prof, err, sizeof(err)) != 0)
		die("profile", err);
	sv.profiles = st_profiles_new();
	sv.profiles->list = calloc(1, sizeof(*sv.profiles->list));
	if (!sv.profiles->list)
		die("memory", "out of memory");
	sv.profiles->list[0] = prof;
	sv.profiles->n = 1;
	uv_loop_init(&loop);
	pc.station = "bench";
	pc.ledger_path = ledger;
	if (st_pool_new(&loop, &pc, s.ca, s.signer, &sv.pool, err, sizeof(err)) != 0)
		die("pool", err);
	memset(&hc, 0, sizeof(hc));
	hc.listen = "127.0.0.1:0";
	hc.tokens = tokens;
	hc.n_tokens = 1;
	env.pool = sv.pool;
	env.ca = s.ca;
	env.profiles = current_profiles;
	env.arg = &sv;
	if (st_http_start(&loop, &hc, &env, &sv.http, err, sizeof(err)) != 0)
		die("http", err);
	port = atoi(strrchr(st_http_url(sv.http), ':') + 1);
	uv_ip4_addr("127.0.0.1", port, &cl.addr);
	uv_async_init(&loop, &sv.finished, on_client_finished);
	sv.finished.data = &sv;
	uv_async_init(&loop, &sv.snap, on_snap);
	sv.snap.data = &sv;
	sv.cl = &cl;
	if (uv_sem_init(&cl.snapped, 0) != 0)
		die("semaphore", "uv_sem_init");
	cl.finished = &sv.finished;
	cl.snap = &sv.snap;
	cl.counts = counts;
	cl.nrounds = ncounts;
	cl.setup = &s;
	cl.bound_n = round_bounds ? bound_n : 0;
	cl.bound = bound;
	cl.bound_cpu = bound_cpu;
	cl.sampler.pid = getpid();

	if (pthread_create(&th, NULL, client_main, &cl) != 0)
		die("thread", "pthread_create");
	uv_run(&loop, UV_RUN_DEFAULT);
	pthread_join(th, NULL);
	uv_loop_close(&loop);
	uv_sem_destroy(&cl.snapped);

	doc = json_pack("{s:i,s:s,s:i,s:I,s:{s:o,s:o,s:o,s:o},s:{s:o,s:o}}", "cpus", (int)ncpu,
			"signer", softhsm ? "softhsm" : "file", "workers", (int)pc.workers,
			"registrations_per_round", (json_int_t)cl.n, "bound", "cpu_us",
			num(bound_cpu * 1e6), "wall_us", num(1e6 / bound), "per_cpu_per_s",
			num(bound), "cpus_per_s", num(cpu_rate), "one_connection_floor",
			"commit_ms", num(commit_s * 1e3), "per_s", num(floor_rate));
	jrounds = json_array();
	printf("\n%6s %7s %9s %9s %6s %8s %8s %9s %6s %6s %6s %6s %6s %6s %6s\n", "conns",
	       "regs", "regs/s", "bound/s", "ratio", "p50 ms", "p99 ms", "cpu us", "bnd us", "x cpu",
	       "loop", "ledger", "workrs", "other", "fsyncs");
	for (size_t k = 0; k < ncounts; k++) {
		bad |= cl.rounds[k].other != 0;
		json_array_append_new(jrounds, report_round(&cl.rounds[k], commit_s, ncpu));
	}
	json_object_set_new(doc, "rounds", jrounds);
	printf("ratio: registrations/s over the bound: CPUs x the crypto-only rate (the client "
	       "shares the CPUs); for one\nconnection also over its latency floor, two ledger "
	       "commits and the crypto. cpu us: the server's CPU per\nregistration (its threads "
	       "over the round, the client's left out); bnd us: one certificate's crypto-only\n"
	       "CPU, %s;\nx cpu: cpu us over bnd us, then the loop's, the ledger thread's, the "
	       "workers' and other threads'\nshares of it; fsyncs: ledger commits per "
	       "registration. The reference server does %.0f/s per core.\n",
	       round_bounds ? "the mean of those measured just before and just after the round "
			      "(the server idle)" :
			      "the run's first (--no-round-bounds)",
	       REFERENCE_PER_CORE);
	if (json_path && json_dump_file(doc, json_path, JSON_INDENT(2) | JSON_SORT_KEYS) != 0)
		die("--json", json_path);
	json_decref(doc);

	for (size_t i = 0; i < total; i++)
		free(cl.dev[i].req);
	free(cl.dev);
	free(cl.lat);
	free(cl.conns);
	free(cl.rounds);
	st_profiles_unref(sv.profiles);
	drv_signer_close(s.signer);
	st_ca_free(s.ca);
	EVP_PKEY_free(s.ca_priv);
	X509_free(s.root);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "bench_http: could not remove %s\n", dir);
	return bad ? 1 : 0;
}
