/* Drives the simulated boards over their PTYs through every command of the board protocol and
 * every fault, with a small station-side client built on the real codec and port driver.
 * Asserts what a station (and its operator) would notice: the CSR has the requested subject
 * and a valid self-signature, files appear only after COMMIT, a power loss leaves the previous
 * files, a hung board never answers, a corrupted answer is caught by the CRC and a retransmit
 * gets the same cached answer, an unknown command gets an ERROR.
 *
 * Waits are on readability with timeouts as failure bounds; the few "no answer within N ms"
 * checks are for boards that by construction cannot answer within N ms (hang, slow=3000). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "err.h"
#include "port.h"
#include "proto.h"
#include "testutil.h"

#define WAIT_MS 15000
#define NBOARDS 14

/* simboard as a child process, its stdout collected for event lines. */
struct simproc {
	pid_t pid;
	int out;
	char dir[512];
	char *text;
	size_t len, cap, seen;
};

static const char *simboard_path(void)
{
	static char path[1024];
	const char *bd = getenv("BUILD_DIR");

	snprintf(path, sizeof(path), "%s/fixtures/simboard/simboard", bd ? bd : ".");
	return path;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int sp_read(struct simproc *p, int ms)
{
	struct pollfd pfd = { .fd = p->out, .events = POLLIN };
	ssize_t r;

	if (poll(&pfd, 1, ms) <= 0)
		return 0;
	if (p->len + 4096 > p->cap) {
		p->cap = p->cap ? p->cap * 2 : 65536;
		p->text = realloc(p->text, p->cap + 1);
		assert_non_null(p->text);
	}
	r = read(p->out, p->text + p->len, 4096);
	if (r <= 0)
		return -1;
	p->len += (size_t)r;
	p->text[p->len] = 0;
	return 1;
}

/* Waits for needle in simboard's output after what was already matched. */
static void sp_wait(struct simproc *p, const char *needle)
{
	int64_t end = now_ms() + WAIT_MS;
	char *hit;

	for (;;) {
		if (p->text && (hit = strstr(p->text + p->seen, needle)) != NULL) {
			p->seen = (size_t)(hit - p->text) + strlen(needle);
			return;
		}
		if (now_ms() >= end || sp_read(p, (int)(end - now_ms())) < 0)
			fail_msg("simboard did not print \"%s\"; output so far:\n%s", needle,
				 p->text ? p->text : "");
	}
}

static void sp_start(struct simproc *p, const char *dir, const char *const *args)
{
	const char *argv[64];
	int fds[2], n = 0;

	memset(p, 0, sizeof(*p));
	snprintf(p->dir, sizeof(p->dir), "%s", dir);
	argv[n++] = simboard_path();
	argv[n++] = "--dir";
	argv[n++] = dir;
	while (*args)
		argv[n++] = *args++;
	argv[n] = NULL;
	assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
	p->pid = fork();
	assert_true(p->pid >= 0);
	if (p->pid == 0) {
		/* A failed test returns without sp_stop(): simboard goes with this process,
		 * instead of holding the output pipe that ctest waits on. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		dup2(fds[1], 1);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(fds[1]);
	p->out = fds[0];
	sp_wait(p, "simboard: ready");
}

static void sp_stop(struct simproc *p)
{
	int status;

	kill(p->pid, SIGTERM);
	assert_int_equal(waitpid(p->pid, &status, 0), p->pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	close(p->out);
	free(p->text);
	p->text = NULL;
}

/* Runs `simboard verify ...`; returns its exit status and its output in out. */
static int run_verify(const char *bdir, const char *root, char *out, size_t cap)
{
	char cmd[2048];
	FILE *f;
	size_t n;
	int status;

	snprintf(cmd, sizeof(cmd), "'%s' verify '%s' --root '%s' 2>&1", simboard_path(), bdir, root);
	f = popen(cmd, "r");
	assert_non_null(f);
	n = fread(out, 1, cap - 1, f);
	out[n] = 0;
	status = pclose(f);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The station side of one board. */
struct client {
	struct drv_port *port;
	struct drv_proto_decoder dec;
	char path[600];
	uint32_t seq;
	size_t max;
	char req[DRV_PROTO_MAX_LINE];
	size_t reqlen;
	struct drv_proto_builder bld;
	int answered;
	char line[DRV_PROTO_MAX_LINE];
	struct drv_proto_frame ans;
	char err_line[DRV_PROTO_MAX_LINE]; /* last seq-0 ERROR */
	int boots, crc_errors, frame_errors, seq0_errors, attempts;
	size_t console;
	uint32_t fed[8]; /* the seqs of the answers in the last bytes fed (cl_feed) */
	unsigned nfed;
};

static void cl_frame(void *arg, const struct drv_proto_frame *f)
{
	struct client *c = arg;
	char err[160];

	if (f->kind == DRV_PROTO_EVENT && strcmp(f->type, DRV_PROTO_BOOT) == 0) {
		c->boots++;
		return;
	}
	if (f->kind != DRV_PROTO_ANSWER)
		return;
	if (f->seq && c->nfed < sizeof(c->fed) / sizeof(c->fed[0]))
		c->fed[c->nfed++] = f->seq;
	if (f->seq == 0) {
		c->seq0_errors++;
		memcpy(c->err_line, f->line, f->len);
		c->err_line[f->len] = 0;
		return;
	}
	if (f->seq != c->seq || c->answered)
		return;
	memcpy(c->line, f->line, f->len);
	c->line[f->len] = 0;
	assert_int_equal(drv_proto_parse(c->line, f->len, &c->ans, err, sizeof(err)), 0);
	c->answered = 1;
}

static void cl_console(void *arg, const char *data, size_t n)
{
	struct client *c = arg;

	(void)data;
	c->console += n;
}

static void cl_error(void *arg, int code, const char *msg, const char *line, size_t len)
{
	struct client *c = arg;

	(void)msg;
	(void)line;
	(void)len;
	if (code == ST_E_PROTO_CRC)
		c->crc_errors++;
	else
		c->frame_errors++;
}

static const struct drv_proto_callbacks cl_cbs = { cl_frame, cl_console, cl_error };

static int cl_open(struct client *c, const char *path)
{
	struct drv_port_config cfg = { .path = path, .baud = 115200 };
	char err[256];
	int rc;

	memset(c, 0, sizeof(*c));
	assert_true(snprintf(c->path, sizeof(c->path), "%s", path) < (int)sizeof(c->path));
	c->max = DRV_PROTO_MIN_LINE;
	c->seq = 100;
	drv_proto_decoder_init(&c->dec, 0, &cl_cbs, c);
	rc = drv_port_open(&cfg, &c->port, err, sizeof(err));
	if (rc)
		print_message("open %s: %s\n", path, err);
	return rc;
}

static void cl_open_board(struct client *c, const struct simproc *p, int board)
{
	char path[600];

	snprintf(path, sizeof(path), "%s/board%d/tty", p->dir, board);
	assert_int_equal(cl_open(c, path), 0);
}

static void cl_close(struct client *c)
{
	drv_port_close(c->port);
	c->port = NULL;
}

/* Reads and decodes until an answer to the current seq arrives (1), time runs out (0), or
 * the port hangs up (-1). */
static int cl_wait(struct client *c, int ms)
{
	int64_t end = now_ms() + ms;
	char buf[4096], err[256];

	while (!c->answered) {
		struct pollfd pfd = { .fd = drv_port_fd(c->port), .events = POLLIN };
		int64_t left = end - now_ms();
		ssize_t r;

		if (left <= 0)
			return 0;
		if (poll(&pfd, 1, (int)left) <= 0)
			continue;
		r = drv_port_read(c->port, buf, sizeof(buf), err, sizeof(err));
		if (r < 0)
			return -1;
		drv_proto_decoder_feed(&c->dec, buf, (size_t)r);
	}
	return 1;
}

/* Writes len bytes to the board's port, waiting for room as needed. */
static void cl_write(struct client *c, const char *data, size_t len)
{
	size_t off = 0;
	char err[256];

	while (off < len) {
		struct pollfd pfd = { .fd = drv_port_fd(c->port), .events = POLLOUT };
		ssize_t w;

		assert_int_equal(poll(&pfd, 1, WAIT_MS), 1);
		w = drv_port_write(c->port, data + off, len - off, err, sizeof(err));
		assert_true(w >= 0);
		off += (size_t)w;
	}
}

static void cl_send(struct client *c)
{
	c->answered = 0;
	c->attempts++;
	cl_write(c, c->req, c->reqlen);
}

static struct drv_proto_builder *cl_begin(struct client *c, const char *type)
{
	c->seq++;
	c->attempts = 0;
	drv_proto_begin(&c->bld, c->req, c->max, DRV_PROTO_REQUEST, c->seq, type);
	return &c->bld;
}

static void cl_end(struct client *c)
{
	char err[160];

	assert_int_equal(drv_proto_end(&c->bld, &c->reqlen, err, sizeof(err)), 0);
}

/* Sends the request and retransmits it (same seq) on timeout or a damaged answer. */
static int cl_call_tries(struct client *c, int tries, int ms)
{
	int i, rc = 0;

	for (i = 0; i < tries; i++) {
		cl_send(c);
		rc = cl_wait(c, ms);
		if (rc != 0)
			return rc;
	}
	return 0;
}

static void cl_call(struct client *c)
{
	int crc = c->crc_errors, fe = c->frame_errors;
	int i;

	/* A damaged answer shows up as a decoder error; retransmit at once then. */
	for (i = 0; i < 8; i++) {
		int64_t end = now_ms() + WAIT_MS;

		cl_send(c);
		while (!c->answered && now_ms() < end && c->crc_errors == crc &&
		       c->frame_errors == fe) {
			int rc = cl_wait(c, 200);

			assert_true(rc >= 0);
		}
		if (c->answered)
			return;
		crc = c->crc_errors;
		fe = c->frame_errors;
	}
	fail_msg("%s: no answer to %s", c->path, c->req);
}

static void get_text(struct client *c, const char *key, char *out, size_t cap)
{
	char err[160];

	if (drv_proto_get_text(&c->ans, key, out, cap, err, sizeof(err)) != 0)
		fail_msg("%s: %s (answer: %s)", key, err, c->line);
}

static uint64_t get_uint(struct client *c, const char *key)
{
	char err[160];
	uint64_t v;

	if (drv_proto_get_uint(&c->ans, key, 0, UINT64_MAX, &v, err, sizeof(err)) != 0)
		fail_msg("%s: %s (answer: %s)", key, err, c->line);
	return v;
}

/* Asserts an ERROR answer with this code. */
static void assert_error(struct client *c, const char *code)
{
	char got[32];

	if (strcmp(c->ans.type, DRV_PROTO_ERROR) != 0)
		fail_msg("expected ERROR %s, got: %s", code, c->line);
	get_text(c, "code", got, sizeof(got));
	if (strcmp(got, code) != 0)
		fail_msg("expected ERROR %s, got: %s", code, c->line);
}

static void assert_type(struct client *c, const char *type)
{
	if (strcmp(c->ans.type, type) != 0)
		fail_msg("expected %s, got: %s", type, c->line);
}

static void hello(struct client *c, char *dev, size_t devcap)
{
	char v[16];

	/* The smallest limit, so that CSR and VERIFY answers come in several frames. */
	cl_begin(c, DRV_PROTO_HELLO);
	drv_proto_add_text(&c->bld, "v", "1");
	drv_proto_add_uint(&c->bld, "max", DRV_PROTO_MIN_LINE);
	cl_end(c);
	cl_call(c);
	assert_type(c, DRV_PROTO_HELLO);
	get_text(c, "v", v, sizeof(v));
	assert_string_equal(v, "1");
	c->max = get_uint(c, "max");
	if (dev)
		get_text(c, "dev", dev, devcap);
}

/* Reads the whole CSR, chunk by chunk; returns it (caller frees) and its length. */
static uint8_t *read_csr(struct client *c, const char *cn, const char *ou, const char *bc,
			 int regen, size_t *len)
{
	uint8_t *csr = NULL, sha[32], want[32];
	size_t total = 0, off = 0;
	char err[160];

	do {
		size_t n;

		cl_begin(c, DRV_PROTO_CSR);
		drv_proto_add_text(&c->bld, "cn", cn);
		drv_proto_add_text(&c->bld, "ou", ou);
		if (bc)
			drv_proto_add_text(&c->bld, "bc", bc);
		drv_proto_add_text(&c->bld, "alg", "ec-p256");
		drv_proto_add_uint(&c->bld, "regen", off == 0 ? (uint64_t)regen : 0);
		drv_proto_add_uint(&c->bld, "off", off);
		cl_end(c);
		cl_call(c);
		assert_type(c, DRV_PROTO_CSR);
		if (!csr) {
			total = get_uint(c, "total");
			assert_true(total > 0 && total < 4096);
			csr = malloc(total);
			assert_non_null(csr);
		}
		assert_int_equal(get_uint(c, "total"), total);
		assert_int_equal(get_uint(c, "off"), off);
		assert_int_equal(drv_proto_get_hex(&c->ans, "sha", want, 32, err, sizeof(err)), 0);
		assert_int_equal(drv_proto_get_b64(&c->ans, "data", csr + off, total - off, &n, err,
						   sizeof(err)),
				 0);
		assert_true(n > 0);
		off += n;
	} while (off < total);
	EVP_Digest(csr, total, sha, NULL, EVP_sha256(), NULL);
	assert_memory_equal(sha, want, 32);
	*len = total;
	return csr;
}

/* Writes one file in chunks as large as the board's frames allow. Returns NULL when every
 * chunk was accepted, else the ERROR code of the first refusal (static). */
static const char *write_file(struct client *c, const char *path, const char *mode,
			      const void *data, size_t len, size_t stop_after)
{
	static char code[32];
	uint8_t sha[32];
	size_t off = 0;

	EVP_Digest(data, len, sha, NULL, EVP_sha256(), NULL);
	do {
		size_t n;

		cl_begin(c, DRV_PROTO_WRITE);
		drv_proto_add_text(&c->bld, "path", path);
		drv_proto_add_text(&c->bld, "mode", mode);
		drv_proto_add_uint(&c->bld, "size", len);
		drv_proto_add_hex(&c->bld, "sha", sha, 32);
		drv_proto_add_uint(&c->bld, "off", off);
		n = drv_proto_b64_room(&c->bld, "data");
		if (n > len - off)
			n = len - off;
		if (stop_after && n > stop_after)
			n = stop_after;
		drv_proto_add_b64(&c->bld, "data", (const uint8_t *)data + off, n);
		cl_end(c);
		cl_call(c);
		if (strcmp(c->ans.type, DRV_PROTO_ERROR) == 0) {
			get_text(c, "code", code, sizeof(code));
			return code;
		}
		assert_type(c, DRV_PROTO_WRITE);
		off += n;
		assert_int_equal(get_uint(c, "have"), off);
		assert_int_equal(get_uint(c, "done"), off == len);
		if (stop_after)
			return NULL;
	} while (off < len);
	return NULL;
}

static void commit(struct client *c, int count)
{
	cl_begin(c, DRV_PROTO_COMMIT);
	if (count >= 0)
		drv_proto_add_uint(&c->bld, "count", (uint64_t)count);
	cl_end(c);
	cl_call(c);
}

static int file_exists(const struct simproc *p, int board, const char *name)
{
	char path[1024];
	struct stat st;

	snprintf(path, sizeof(path), "%s/board%d/files/%s", p->dir, board, name);
	return stat(path, &st) == 0;
}

/* A small PKI made in process: root, device CA, and certificates for CSRs. */
struct pki {
	EVP_PKEY *root_key, *ca_key;
	X509 *root, *ca;
	char root_pem_path[600];
};

static X509 *make_cert(X509 *issuer, EVP_PKEY *issuer_key, const X509_NAME *subject,
		       EVP_PKEY *pub, int ca, long serial)
{
	X509 *x = X509_new();
	X509V3_CTX v3;
	X509_EXTENSION *ext;

	assert_non_null(x);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
	X509_gmtime_adj(X509_getm_notBefore(x), -60);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 365);
	X509_set_subject_name(x, subject);
	X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : subject);
	X509_set_pubkey(x, pub);
	X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints,
				  ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_key_usage,
				  ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	if (!ca) {
		ext = X509V3_EXT_conf_nid(NULL, &v3, NID_ext_key_usage, "critical,clientAuth");
		X509_add_ext(x, ext, -1);
		X509_EXTENSION_free(ext);
	}
	assert_true(X509_sign(x, issuer_key, EVP_sha256()) > 0);
	return x;
}

static void pki_init(struct pki *k, const char *dir)
{
	X509_NAME *n = X509_NAME_new();
	FILE *f;

	k->root_key = EVP_EC_gen("P-256");
	k->ca_key = EVP_EC_gen("P-256");
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)"Factory-CA", -1,
				   -1, 0);
	X509_NAME_add_entry_by_txt(n, "OU", MBSTRING_UTF8, (const unsigned char *)"Factory-A", -1,
				   -1, 0);
	k->root = make_cert(NULL, k->root_key, n, k->root_key, 1, 1);
	X509_NAME_free(n);
	n = X509_NAME_new();
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)"Local-CA", -1, -1,
				   0);
	k->ca = make_cert(k->root, k->root_key, n, k->ca_key, 1, 2);
	X509_NAME_free(n);
	snprintf(k->root_pem_path, sizeof(k->root_pem_path), "%s/root.pem", dir);
	f = fopen(k->root_pem_path, "w");
	assert_non_null(f);
	PEM_write_X509(f, k->root);
	fclose(f);
}

static void pki_free(struct pki *k)
{
	EVP_PKEY_free(k->root_key);
	EVP_PKEY_free(k->ca_key);
	X509_free(k->root);
	X509_free(k->ca);
}

static char *pem_of(X509 *x, size_t *len)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *p, *out;
	long n;

	PEM_write_bio_X509(b, x);
	n = BIO_get_mem_data(b, &p);
	out = malloc((size_t)n + 1);
	memcpy(out, p, (size_t)n);
	out[n] = 0;
	*len = (size_t)n;
	BIO_free(b);
	return out;
}

/* Shared state of the test group. */
static struct simproc sim;
static struct pki pki;
static char tmp[512];
static char dev0[80];
static uint8_t *csr0;
static size_t csr0_len;
static X509 *cert0;

static int group_setup(void **state)
{
	static const char *const args[] = {
		"--boards", "15", "--max-frame", "512", "--noise", "--seed", "42",
		"--reconnect-ms", "200", "--reboot-ms", "200",
		"--fault", "crc:board1",
		"--fault", "drop:board2",
		"--fault", "slow=3000:board3",
		"--fault", "hang:board4",
		"--fault", "disconnect=WRITE/2:board5",
		"--fault", "power-loss=WRITE/2:board6",
		"--fault", "bad-csr=wrong-cn:board7",
		"--fault", "bad-csr=bad-sig:board8",
		"--fault", "bad-csr=rsa:board9",
		"--fault", "bad-csr=extra-attr:board10",
		"--fault", "dup-id=board0:board11",
		"--fault", "baud:board12",
		"--fault", "latency=3000:board14",
		NULL,
	};
	const char *d = tu_tmpdir("simboard");

	(void)state;
	assert_non_null(d);
	snprintf(tmp, sizeof(tmp), "%s", d);
	pki_init(&pki, tmp);
	{
		char dir[600];

		snprintf(dir, sizeof(dir), "%s/boards", tmp);
		sp_start(&sim, dir, args);
	}
	return 0;
}

/* test_protocol_versions' simboard, stopped here too when the test fails. */
static struct simproc vsim;

static int group_teardown(void **state)
{
	(void)state;
	if (sim.pid > 0)
		sp_stop(&sim);
	if (vsim.pid > 0)
		sp_stop(&vsim);
	pki_free(&pki);
	X509_free(cert0);
	free(csr0);
	(void)tu_rmtree(tmp);
	return 0;
}

static void check_subject(X509_REQ *req, const char *cn, const char *ou, const char *bc)
{
	const X509_NAME *n = X509_REQ_get_subject_name(req);
	const int nids[3] = { NID_commonName, NID_organizationalUnitName, NID_businessCategory };
	const char *vals[3] = { cn, ou, bc };
	int i;

	assert_int_equal(X509_NAME_entry_count(n), bc ? 3 : 2);
	for (i = 0; i < X509_NAME_entry_count(n); i++) {
		const X509_NAME_ENTRY *e = X509_NAME_get_entry(n, i);
		const ASN1_STRING *s = X509_NAME_ENTRY_get_data(e);

		assert_int_equal(OBJ_obj2nid(X509_NAME_ENTRY_get_object(e)), nids[i]);
		assert_int_equal(ASN1_STRING_type(s), V_ASN1_UTF8STRING);
		assert_int_equal(ASN1_STRING_length(s), strlen(vals[i]));
		assert_memory_equal(ASN1_STRING_get0_data(s), vals[i], strlen(vals[i]));
	}
}

static X509_REQ *parse_csr(const uint8_t *der, size_t len)
{
	const unsigned char *p = der;
	X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)len);

	assert_non_null(req);
	assert_ptr_equal(p, der + len);
	return req;
}

/* HELLO, CSR (chunked, stable, regenerable), WRITE, COMMIT, VERIFY, DONE on a clean board. */
/* A board's key.pem holds the key of its CSR, and is what OpenSSL's encoder writes for that
 * key, byte for byte (PKCS#8 PEM): simboard lays it out by hand. */
static void check_key_file(const char *dir, EVP_PKEY *pub)
{
	char path[800], file[1024], *again;
	EVP_PKEY *key;
	size_t n;
	BIO *bio;
	long m;
	FILE *f;

	snprintf(path, sizeof(path), "%s/key.pem", dir);
	f = fopen(path, "r");
	assert_non_null(f);
	n = fread(file, 1, sizeof(file), f);
	rewind(f);
	key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(key);
	assert_int_equal(EVP_PKEY_eq(key, pub), 1);
	bio = BIO_new(BIO_s_mem());
	assert_non_null(bio);
	assert_int_equal(PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL), 1);
	m = BIO_get_mem_data(bio, &again);
	assert_int_equal(n, (size_t)m);
	assert_memory_equal(file, again, n);
	BIO_free(bio);
	EVP_PKEY_free(key);
}

static void test_full_flow(void **state)
{
	struct client c;
	char v[256], hw[64], sota[3000], out[2048];
	uint8_t *again, *regen;
	size_t again_len, regen_len, len, i;
	X509_REQ *req;
	EVP_PKEY *pub;
	X509_NAME *subj;
	char *client_pem, *ca_pem, *root_pem, chained[8192];
	size_t client_len, ca_len, root_len, chained_len;
	struct {
		const char *name;
		const char *data;
		size_t len;
	} files[4];
	uint8_t nonce[32];

	(void)state;
	cl_open_board(&c, &sim, 0);
	hello(&c, dev0, sizeof(dev0));
	assert_int_equal(strlen(dev0), 36); /* a preset UUID */
	get_text(&c, "hw", hw, sizeof(hw));
	assert_string_equal(hw, "sim-board");
	get_text(&c, "sku", v, sizeof(v));
	assert_string_equal(v, "sim-sku");
	get_text(&c, "key", v, sizeof(v));
	assert_string_equal(v, "se");
	assert_int_equal(c.max, 512);
	assert_int_equal(get_uint(&c, "gen"), 0);
	{
		const struct drv_proto_field *b = drv_proto_find(&c.ans, "bauds");
		char err[160];

		assert_non_null(b);
		assert_int_equal(drv_proto_field_item(&c.ans, b, 0, v, sizeof(v), err, sizeof(err)),
				 0);
		assert_string_equal(v, "115200");
	}

	/* The CSR has the requested subject and a valid self-signature, and needs more than
	 * one frame at 512 bytes. */
	{
		uint32_t seq = c.seq;

		csr0 = read_csr(&c, dev0, "Factory-A", "production", 0, &csr0_len);
		assert_true(c.seq - seq > 1); /* more than one chunk */
	}
	req = parse_csr(csr0, csr0_len);
	check_subject(req, dev0, "Factory-A", "production");
	pub = X509_REQ_get0_pubkey(req);
	assert_int_equal(X509_REQ_verify(req, pub), 1);
	assert_int_equal(EVP_PKEY_get_base_id(pub), EVP_PKEY_EC);
	assert_int_equal(EVP_PKEY_get_bits(pub), 256);
	assert_true(drv_b64_len(csr0_len) > 512 - 100);

	/* Asking again: the same CSR, byte for byte. Regenerating: a new key. */
	again = read_csr(&c, dev0, "Factory-A", "production", 0, &again_len);
	assert_int_equal(again_len, csr0_len);
	assert_memory_equal(again, csr0, csr0_len);
	free(again);
	regen = read_csr(&c, dev0, "Factory-A", "production", 1, &regen_len);
	{
		X509_REQ *r2 = parse_csr(regen, regen_len);

		assert_int_not_equal(EVP_PKEY_eq(X509_REQ_get0_pubkey(r2), pub), 1);
		X509_REQ_free(r2);
	}
	X509_REQ_free(req);
	free(csr0);
	csr0 = regen;
	csr0_len = regen_len;
	req = parse_csr(csr0, csr0_len);
	pub = X509_REQ_get0_pubkey(req);
	{
		char bdir[700];

		snprintf(bdir, sizeof(bdir), "%s/board0", sim.dir);
		check_key_file(bdir, pub);
	}

	/* Issue and write back the device's files. */
	subj = X509_NAME_dup(X509_REQ_get_subject_name(req));
	cert0 = make_cert(pki.ca, pki.ca_key, subj, pub, 0, 1000);
	X509_NAME_free(subj);
	client_pem = pem_of(cert0, &client_len);
	ca_pem = pem_of(pki.ca, &ca_len);
	root_pem = pem_of(pki.root, &root_len);
	memcpy(chained, client_pem, client_len);
	memcpy(chained + client_len, ca_pem, ca_len);
	chained_len = client_len + ca_len;
	len = 0;
	len += (size_t)snprintf(sota + len, sizeof(sota) - len,
				"[tls]\nserver = \"https://gw.example:8443\"\n");
	while (len < 2500)
		len += (size_t)snprintf(sota + len, sizeof(sota) - len, "# padding line %zu\n", len);
	files[0].name = "client.pem", files[0].data = client_pem, files[0].len = client_len;
	files[1].name = "client.chained", files[1].data = chained, files[1].len = chained_len;
	files[2].name = "root.crt", files[2].data = root_pem, files[2].len = root_len;
	/* A long name: the four entries and the signature then never fit in one 512-byte
	 * answer, whatever the signature's length (a DER ECDSA signature is 68 to 72 bytes). */
	files[3].name = "sota-configuration.toml", files[3].data = sota, files[3].len = len;
	for (i = 0; i < 4; i++)
		assert_null(write_file(&c, files[i].name, "0644", files[i].data, files[i].len, 0));
	/* Nothing is installed before COMMIT. */
	for (i = 0; i < 4; i++)
		assert_false(file_exists(&sim, 0, files[i].name));
	commit(&c, 4);
	assert_type(&c, DRV_PROTO_COMMIT);
	assert_int_equal(get_uint(&c, "gen"), 1);
	assert_int_equal(get_uint(&c, "files"), 4);
	for (i = 0; i < 4; i++) {
		char path[1024];
		uint8_t *got;
		size_t glen;

		snprintf(path, sizeof(path), "%s/board0/files/%s", sim.dir, files[i].name);
		got = tu_read_file(path, &glen);
		assert_non_null(got);
		assert_int_equal(glen, files[i].len);
		assert_memory_equal(got, files[i].data, glen);
		free(got);
	}

	/* VERIFY: read-back hashes of every file and a signature of our nonce with the key
	 * the certificate was issued for. */
	RAND_bytes(nonce, sizeof(nonce));
	{
		unsigned int seen = 0, total = 0, rounds = 0;

		do {
			const struct drv_proto_field *fld = NULL;
			uint8_t sig[160], msg[64];
			size_t siglen;
			char err[160];
			EVP_MD_CTX *ctx;

			cl_begin(&c, DRV_PROTO_VERIFY);
			drv_proto_add_b64(&c.bld, "nonce", nonce, sizeof(nonce));
			drv_proto_add_uint(&c.bld, "from", seen);
			cl_end(&c);
			cl_call(&c);
			assert_type(&c, DRV_PROTO_VERIFY);
			total = (unsigned int)get_uint(&c, "files");
			assert_int_equal(total, 4);
			assert_int_equal(get_uint(&c, "gen"), 1);
			get_text(&c, "alg", v, sizeof(v));
			assert_string_equal(v, "ecdsa-p256-sha256");
			assert_int_equal(drv_proto_get_b64(&c.ans, "sig", sig, sizeof(sig), &siglen,
							   err, sizeof(err)),
					 0);
			memcpy(msg, DRV_PROTO_POP_CONTEXT, strlen(DRV_PROTO_POP_CONTEXT));
			memcpy(msg + strlen(DRV_PROTO_POP_CONTEXT), nonce, sizeof(nonce));
			ctx = EVP_MD_CTX_new();
			assert_int_equal(EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL,
							      X509_get0_pubkey(cert0)),
					 1);
			assert_int_equal(EVP_DigestVerify(ctx, sig, siglen, msg,
							  strlen(DRV_PROTO_POP_CONTEXT) + sizeof(nonce)),
					 1);
			EVP_MD_CTX_free(ctx);
			while ((fld = drv_proto_find_next(&c.ans, fld, "file")) != NULL) {
				char name[64], size_s[24], hex[80], want[65];
				uint8_t sha[32];
				int k;

				assert_int_equal(drv_proto_field_item(&c.ans, fld, 0, name, sizeof(name),
								      err, sizeof(err)),
						 0);
				assert_int_equal(drv_proto_field_item(&c.ans, fld, 1, size_s,
								      sizeof(size_s), err,
								      sizeof(err)),
						 0);
				assert_int_equal(drv_proto_field_item(&c.ans, fld, 2, hex, sizeof(hex),
								      err, sizeof(err)),
						 0);
				for (k = 0; k < 4 && strcmp(files[k].name, name) != 0; k++)
					;
				assert_true(k < 4);
				EVP_Digest(files[k].data, files[k].len, sha, NULL, EVP_sha256(),
					   NULL);
				for (i = 0; i < 32; i++)
					snprintf(want + 2 * i, 3, "%02x", sha[i]);
				assert_string_equal(hex, want);
				assert_int_equal(strtoul(size_s, NULL, 10), files[k].len);
				seen++;
			}
			rounds++;
		} while (seen < total);
		/* Four files and a signature do not fit in one 512-byte answer (see files[3]). */
		assert_true(rounds > 1);
	}

	cl_begin(&c, DRV_PROTO_DONE);
	drv_proto_add_text(&c.bld, "result", "pass");
	drv_proto_add_text(&c.bld, "text", "provisioned, all good");
	cl_end(&c);
	cl_call(&c);
	assert_type(&c, DRV_PROTO_DONE);
	sp_wait(&sim, "board0: done pass provisioned, all good");

	/* The console (boot log, chatter) came through beside the frames. */
	assert_true(c.console > 0);
	assert_int_equal(c.crc_errors + c.frame_errors, 0);
	cl_close(&c);

	{
		char bdir[700];

		snprintf(bdir, sizeof(bdir), "%s/board0", sim.dir);
		assert_int_equal(run_verify(bdir, pki.root_pem_path, out, sizeof(out)), 0);
		assert_non_null(strstr(out, "OK"));
	}
	X509_REQ_free(req);
	free(client_pem);
	free(ca_pem);
	free(root_pem);
}

/* Protocol rules on a clean board: HELLO first, unknown commands, bad frames, paths,
 * offsets, hashes, incomplete commits, retransmits answered from the cache. */
static void test_protocol_rules(void **state)
{
	struct client c;
	char text[256], first[DRV_PROTO_MAX_LINE];
	static const char ten[] = "0123456789";
	uint8_t bad_sha[32] = { 0 };

	(void)state;
	cl_open_board(&c, &sim, 13);

	cl_begin(&c, DRV_PROTO_CSR);
	drv_proto_add_text(&c.bld, "cn", "x");
	drv_proto_add_text(&c.bld, "alg", "ec-p256");
	cl_end(&c);
	cl_call(&c);
	assert_error(&c, "HELLO");

	cl_begin(&c, "FOO");
	cl_end(&c);
	cl_call(&c);
	assert_error(&c, "UNKNOWN");
	get_text(&c, "text", text, sizeof(text));
	assert_non_null(strstr(text, "FOO"));

	cl_begin(&c, DRV_PROTO_HELLO);
	drv_proto_add_text(&c.bld, "v", "9");
	cl_end(&c);
	cl_call(&c);
	assert_error(&c, "VERSION");

	/* A request damaged on the way gets an immediate seq-0 ERROR FRAME. */
	cl_begin(&c, DRV_PROTO_HELLO);
	drv_proto_add_text(&c.bld, "v", "1");
	cl_end(&c);
	c.req[c.reqlen - 3] = c.req[c.reqlen - 3] == '0' ? '1' : '0';
	cl_send(&c);
	{
		int64_t end = now_ms() + WAIT_MS;

		while (c.seq0_errors == 0 && now_ms() < end)
			assert_true(cl_wait(&c, 100) >= 0);
	}
	assert_int_equal(c.seq0_errors, 1);
	assert_non_null(strstr(c.err_line, "code=FRAME"));
	assert_non_null(strstr(c.err_line, "bad%20CRC"));

	hello(&c, NULL, 0);

	/* A fresh board has no key to sign with. */
	cl_begin(&c, DRV_PROTO_VERIFY);
	drv_proto_add_b64(&c.bld, "nonce", bad_sha, sizeof(bad_sha));
	cl_end(&c);
	cl_call(&c);
	assert_error(&c, "NOKEY");

	assert_string_equal(write_file(&c, "../evil", "0644", ten, 10, 0), "PATH");
	assert_string_equal(write_file(&c, ".hidden", "0644", ten, 10, 0), "PATH");
	assert_string_equal(write_file(&c, "a//b", "0644", ten, 10, 0), "PATH");
	assert_string_equal(write_file(&c, "a.txt", "0999", ten, 10, 0), "FIELD");

	/* An offset past what was received is refused and says how much the board has. */
	cl_begin(&c, DRV_PROTO_WRITE);
	drv_proto_add_text(&c.bld, "path", "a.txt");
	drv_proto_add_text(&c.bld, "mode", "0600");
	drv_proto_add_uint(&c.bld, "size", 10);
	drv_proto_add_hex(&c.bld, "sha", bad_sha, 32);
	drv_proto_add_uint(&c.bld, "off", 5);
	drv_proto_add_b64(&c.bld, "data", ten, 5);
	cl_end(&c);
	cl_call(&c);
	assert_error(&c, "OFFSET");
	assert_int_equal(get_uint(&c, "have"), 0);

	/* Content that does not hash to the announced SHA-256. */
	cl_begin(&c, DRV_PROTO_WRITE);
	drv_proto_add_text(&c.bld, "path", "a.txt");
	drv_proto_add_text(&c.bld, "mode", "0600");
	drv_proto_add_uint(&c.bld, "size", 10);
	drv_proto_add_hex(&c.bld, "sha", bad_sha, 32);
	drv_proto_add_uint(&c.bld, "off", 0);
	drv_proto_add_b64(&c.bld, "data", ten, 10);
	cl_end(&c);
	cl_call(&c);
	assert_error(&c, "HASH");

	/* Half a file: COMMIT refuses and names it. */
	assert_null(write_file(&c, "b.txt", "0600", ten, 10, 5));
	commit(&c, -1);
	assert_error(&c, "INCOMPLETE");
	get_text(&c, "text", text, sizeof(text));
	assert_non_null(strstr(text, "b.txt: 5 of 10"));

	/* The second half, then the same request again (same seq): the cached answer, byte
	 * for byte, and nothing written twice. */
	cl_begin(&c, DRV_PROTO_WRITE);
	{
		uint8_t sha[32];

		EVP_Digest(ten, 10, sha, NULL, EVP_sha256(), NULL);
		drv_proto_add_text(&c.bld, "path", "b.txt");
		drv_proto_add_text(&c.bld, "mode", "0600");
		drv_proto_add_uint(&c.bld, "size", 10);
		drv_proto_add_hex(&c.bld, "sha", sha, 32);
		drv_proto_add_uint(&c.bld, "off", 5);
		drv_proto_add_b64(&c.bld, "data", ten + 5, 5);
	}
	cl_end(&c);
	cl_call(&c);
	assert_type(&c, DRV_PROTO_WRITE);
	assert_int_equal(get_uint(&c, "have"), 10);
	snprintf(first, sizeof(first), "%s", c.line);
	cl_send(&c);
	assert_int_equal(cl_wait(&c, WAIT_MS), 1);
	assert_string_equal(c.line, first);

	assert_false(file_exists(&sim, 13, "b.txt"));
	commit(&c, 1);
	assert_type(&c, DRV_PROTO_COMMIT);
	assert_true(file_exists(&sim, 13, "b.txt"));
	assert_false(file_exists(&sim, 13, "a.txt"));
	/* COMMIT with nothing staged is harmless and says what is installed. */
	commit(&c, 0);
	assert_type(&c, DRV_PROTO_COMMIT);
	assert_int_equal(get_uint(&c, "gen"), 1);
	assert_int_equal(get_uint(&c, "files"), 1);

	/* Sequence number 0 belongs to events. */
	c.seq = UINT32_MAX;
	cl_begin(&c, DRV_PROTO_HELLO);
	drv_proto_add_text(&c.bld, "v", "1");
	cl_end(&c);
	cl_send(&c);
	{
		int64_t end = now_ms() + WAIT_MS;
		int before = c.seq0_errors;

		while (c.seq0_errors == before && now_ms() < end)
			assert_true(cl_wait(&c, 100) >= 0);
		assert_non_null(strstr(c.err_line, "code=FIELD"));
	}
	c.seq = 500;

	/* BAUD to a listed rate works when both ends switch; an unlisted rate is refused. */
	cl_begin(&c, DRV_PROTO_BAUD);
	drv_proto_add_uint(&c.bld, "rate", 12345);
	cl_end(&c);
	cl_call(&c);
	assert_error(&c, "BAUD");
	cl_begin(&c, DRV_PROTO_BAUD);
	drv_proto_add_uint(&c.bld, "rate", 460800);
	drv_proto_add_uint(&c.bld, "ms", 30000);
	cl_end(&c);
	cl_call(&c);
	assert_type(&c, DRV_PROTO_BAUD);
	assert_int_equal(drv_port_set_baud(c.port, 460800, text, sizeof(text)), 0);
	hello(&c, NULL, 0);
	assert_int_equal(get_uint(&c, "baud"), 460800);
	assert_int_equal(c.attempts, 1);
	cl_close(&c);
}

static void test_fault_crc(void **state)
{
	struct client c;

	(void)state;
	cl_open_board(&c, &sim, 1);
	hello(&c, NULL, 0);
	/* The first copy of the answer failed its CRC; the retransmit got a clean copy. */
	assert_int_equal(c.crc_errors, 1);
	assert_int_equal(c.attempts, 2);
	hello(&c, NULL, 0);
	assert_int_equal(c.crc_errors, 2);
	cl_close(&c);
}

static void test_fault_drop(void **state)
{
	struct client c;

	(void)state;
	cl_open_board(&c, &sim, 2);
	/* A byte went missing: the answer fails its CRC or its line end is lost (then the
	 * timeout triggers the retransmit); either way the retransmit succeeds. */
	cl_begin(&c, DRV_PROTO_HELLO);
	drv_proto_add_text(&c.bld, "v", "1");
	cl_end(&c);
	assert_int_equal(cl_call_tries(&c, 1, 1000), 0);
	assert_false(c.answered);
	cl_send(&c);
	assert_int_equal(cl_wait(&c, WAIT_MS), 1);
	assert_type(&c, DRV_PROTO_HELLO);
	cl_close(&c);
}

static void test_fault_slow_and_hang(void **state)
{
	struct client c, h;

	(void)state;
	cl_open_board(&c, &sim, 3);
	cl_open_board(&h, &sim, 4);
	cl_begin(&c, DRV_PROTO_HELLO);
	drv_proto_add_text(&c.bld, "v", "1");
	cl_end(&c);
	cl_begin(&h, DRV_PROTO_HELLO);
	drv_proto_add_text(&h.bld, "v", "1");
	cl_end(&h);
	cl_send(&c);
	cl_send(&h);
	/* slow=3000 cannot answer within 200 ms; hang never answers. */
	assert_int_equal(cl_wait(&c, 200), 0);
	assert_int_equal(cl_wait(&h, 200), 0);
	assert_int_equal(cl_wait(&c, WAIT_MS), 1);
	assert_type(&c, DRV_PROTO_HELLO);
	cl_send(&h);
	assert_int_equal(cl_wait(&h, 1000), 0);
	assert_int_equal(h.boots, 0);
	cl_close(&c);
	cl_close(&h);
}

/* The latency fault holds an answer as an adapter's latency timer does: the board reads the
 * request sent behind it meanwhile and answers it, and that answer leaves with the one held,
 * in the same bytes, in order. (The slow fault's board reads nothing while it waits: its
 * second answer could not come with the first.) */
static void test_fault_latency(void **state)
{
	struct client c;
	char both[2 * DRV_PROTO_MAX_LINE];
	char buf[4096], err[256];
	size_t n;

	(void)state;
	cl_open_board(&c, &sim, 14);
	cl_begin(&c, DRV_PROTO_HELLO);
	drv_proto_add_text(&c.bld, "v", "1");
	cl_end(&c);
	memcpy(both, c.req, c.reqlen);
	n = c.reqlen;
	cl_begin(&c, "FOO");
	cl_end(&c);
	memcpy(both + n, c.req, c.reqlen);
	memcpy(c.req, both, n + c.reqlen);
	c.reqlen += n;
	cl_send(&c);
	/* latency=3000 cannot answer within 200 ms. */
	assert_int_equal(cl_wait(&c, 200), 0);
	for (int64_t end = now_ms() + WAIT_MS; c.nfed == 0 && now_ms() < end;) {
		struct pollfd pfd = { .fd = drv_port_fd(c.port), .events = POLLIN };
		ssize_t r;

		if (poll(&pfd, 1, 100) <= 0)
			continue;
		r = drv_port_read(c.port, buf, sizeof(buf), err, sizeof(err));
		assert_true(r >= 0);
		drv_proto_decoder_feed(&c.dec, buf, (size_t)r);
	}
	assert_int_equal(c.nfed, 2);
	assert_int_equal(c.fed[0], c.seq - 1);
	assert_int_equal(c.fed[1], c.seq);
	assert_int_equal(c.answered, 1);
	assert_error(&c, "UNKNOWN");
	cl_close(&c);
}

static void test_fault_disconnect(void **state)
{
	struct client c;
	static char big[500];
	char path[700];
	int rc;

	(void)state;
	memset(big, 'z', sizeof(big));
	cl_open_board(&c, &sim, 5);
	hello(&c, NULL, 0);
	assert_null(write_file(&c, "big.bin", "0600", big, sizeof(big), 250));
	/* The second WRITE: the link drops (the station sees a hang-up, not silence). */
	cl_begin(&c, DRV_PROTO_WRITE);
	{
		uint8_t sha[32];

		EVP_Digest(big, sizeof(big), sha, NULL, EVP_sha256(), NULL);
		drv_proto_add_text(&c.bld, "path", "big.bin");
		drv_proto_add_text(&c.bld, "mode", "0600");
		drv_proto_add_uint(&c.bld, "size", sizeof(big));
		drv_proto_add_hex(&c.bld, "sha", sha, 32);
		drv_proto_add_uint(&c.bld, "off", 250);
		drv_proto_add_b64(&c.bld, "data", big + 250, sizeof(big) - 250);
	}
	cl_end(&c);
	cl_send(&c);
	rc = cl_wait(&c, WAIT_MS);
	assert_int_equal(rc, -1);
	cl_close(&c);
	/* It comes back on a new PTY; the stable name follows it. */
	sp_wait(&sim, "board5: reconnected /dev/pts/");
	snprintf(path, sizeof(path), "%s/board5/tty", sim.dir);
	{
		struct client d;
		uint32_t seq = c.seq;

		assert_int_equal(cl_open(&d, path), 0);
		/* Same request, same seq: the board kept its state and finishes the file. */
		memcpy(d.req, c.req, c.reqlen);
		d.reqlen = c.reqlen;
		d.seq = seq;
		cl_call(&d);
		assert_type(&d, DRV_PROTO_WRITE);
		assert_int_equal(get_uint(&d, "have"), sizeof(big));
		assert_int_equal(get_uint(&d, "done"), 1);
		commit(&d, 1);
		assert_type(&d, DRV_PROTO_COMMIT);
		assert_true(file_exists(&sim, 5, "big.bin"));
		cl_close(&d);
	}
}

static void test_fault_power_loss(void **state)
{
	struct client c;
	static const char a[] = "first file\n";
	static char b[1200];
	int64_t end;
	char path[800];
	struct stat st;

	(void)state;
	memset(b, 'b', sizeof(b));
	cl_open_board(&c, &sim, 6);
	hello(&c, NULL, 0);
	assert_null(write_file(&c, "a.txt", "0644", a, strlen(a), 0));
	commit(&c, 1);
	assert_type(&c, DRV_PROTO_COMMIT);
	/* The second WRITE: power lost. No answer; the board boots and says so. */
	cl_begin(&c, DRV_PROTO_WRITE);
	{
		uint8_t sha[32];

		EVP_Digest(b, sizeof(b), sha, NULL, EVP_sha256(), NULL);
		drv_proto_add_text(&c.bld, "path", "b.txt");
		drv_proto_add_text(&c.bld, "mode", "0644");
		drv_proto_add_uint(&c.bld, "size", sizeof(b));
		drv_proto_add_hex(&c.bld, "sha", sha, 32);
		drv_proto_add_uint(&c.bld, "off", 0);
		drv_proto_add_b64(&c.bld, "data", b, 200);
	}
	cl_end(&c);
	cl_send(&c);
	end = now_ms() + WAIT_MS;
	while (c.boots == 0 && now_ms() < end)
		assert_true(cl_wait(&c, 100) == 0);
	assert_int_equal(c.boots, 1);
	assert_false(c.answered);

	/* After the reboot: HELLO again; what was staged is gone; the committed file stays. */
	cl_begin(&c, DRV_PROTO_WRITE);
	drv_proto_add_text(&c.bld, "path", "b.txt");
	cl_end(&c);
	cl_call(&c);
	assert_error(&c, "HELLO");
	hello(&c, NULL, 0);
	assert_int_equal(get_uint(&c, "gen"), 1);
	{
		uint8_t sha[32];

		EVP_Digest(b, sizeof(b), sha, NULL, EVP_sha256(), NULL);
		cl_begin(&c, DRV_PROTO_WRITE);
		drv_proto_add_text(&c.bld, "path", "b.txt");
		drv_proto_add_text(&c.bld, "mode", "0644");
		drv_proto_add_uint(&c.bld, "size", sizeof(b));
		drv_proto_add_hex(&c.bld, "sha", sha, 32);
		drv_proto_add_uint(&c.bld, "off", 200);
		drv_proto_add_b64(&c.bld, "data", b + 200, 200);
		cl_end(&c);
		cl_call(&c);
		assert_error(&c, "OFFSET");
		assert_int_equal(get_uint(&c, "have"), 0);
	}
	assert_true(file_exists(&sim, 6, "a.txt"));
	assert_false(file_exists(&sim, 6, "b.txt"));
	/* Nothing staged survives. */
	snprintf(path, sizeof(path), "%s/board6/staging", sim.dir);
	{
		DIR *d = opendir(path);
		struct dirent *e;
		int n = 0;

		assert_non_null(d);
		while ((e = readdir(d)) != NULL)
			n += e->d_name[0] != '.';
		closedir(d);
		assert_int_equal(n, 0);
	}
	assert_int_equal(stat(path, &st), 0);
	sp_wait(&sim, "board6: power lost");
	sp_wait(&sim, "board6: rebooted");
	cl_close(&c);
}

static void test_fault_bad_csr(void **state)
{
	static const char cn[] = "0c1a5e3a-7f7e-4c43-9b1b-0a8c1f2f6d10";
	int board;

	(void)state;
	for (board = 7; board <= 10; board++) {
		struct client c;
		X509_REQ *req;
		EVP_PKEY *pub;
		uint8_t *der;
		size_t len;
		const X509_NAME *n;
		const ASN1_STRING *s;

		cl_open_board(&c, &sim, board);
		hello(&c, NULL, 0);
		der = read_csr(&c, cn, "Factory-A", NULL, 0, &len);
		req = parse_csr(der, len);
		pub = X509_REQ_get0_pubkey(req);
		n = X509_REQ_get_subject_name(req);
		switch (board) {
		case 7: /* wrong-cn */
			s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(n, 0));
			assert_int_equal(ASN1_STRING_length(s), strlen(cn));
			assert_memory_not_equal(ASN1_STRING_get0_data(s), cn, strlen(cn));
			assert_int_equal(X509_REQ_verify(req, pub), 1);
			break;
		case 8: /* bad-sig */
			check_subject(req, cn, "Factory-A", NULL);
			assert_int_not_equal(X509_REQ_verify(req, pub), 1);
			break;
		case 9: /* rsa */
			assert_int_equal(EVP_PKEY_get_base_id(pub), EVP_PKEY_RSA);
			assert_int_equal(EVP_PKEY_get_bits(pub), 1024);
			assert_int_equal(X509_REQ_verify(req, pub), 1);
			break;
		default: /* extra-attr */
			assert_int_equal(X509_NAME_entry_count(n), 3);
			assert_int_equal(X509_REQ_verify(req, pub), 1);
			break;
		}
		X509_REQ_free(req);
		free(der);
		cl_close(&c);
	}
}

static void test_fault_dup_id(void **state)
{
	struct client c;
	char dev[80];

	(void)state;
	assert_true(dev0[0]);
	cl_open_board(&c, &sim, 11);
	hello(&c, dev, sizeof(dev));
	assert_string_equal(dev, dev0);
	cl_close(&c);
}

static void test_fault_baud(void **state)
{
	struct client c;
	char err[256];

	(void)state;
	cl_open_board(&c, &sim, 12);
	hello(&c, NULL, 0);
	cl_begin(&c, DRV_PROTO_BAUD);
	drv_proto_add_uint(&c.bld, "rate", 921600);
	drv_proto_add_uint(&c.bld, "ms", 500);
	cl_end(&c);
	cl_call(&c);
	assert_type(&c, DRV_PROTO_BAUD);
	/* The first exchange at the new rate fails (the board cannot hear us there)... */
	assert_int_equal(drv_port_set_baud(c.port, 921600, err, sizeof(err)), 0);
	cl_begin(&c, DRV_PROTO_HELLO);
	drv_proto_add_text(&c.bld, "v", "1");
	cl_end(&c);
	assert_int_equal(cl_call_tries(&c, 1, 500), 0);
	/* ...so both fall back to the old rate and talk again. */
	assert_int_equal(drv_port_set_baud(c.port, 115200, err, sizeof(err)), 0);
	assert_int_equal(cl_call_tries(&c, 20, 1000), 1);
	assert_type(&c, DRV_PROTO_HELLO);
	assert_int_equal(get_uint(&c, "baud"), 115200);
	sp_wait(&sim, "board12: baud fallback to 115200");
	cl_close(&c);
}

/* A restart of simboard is a reboot of every board: keys, CSRs and installed files stay. */
static void test_restart_keeps_state(void **state)
{
	static const char *const args[] = { "--boards", "14", "--max-frame", "512", NULL };
	char dir[600], bdir[700], out[2048], dev[80], path[800];
	struct client c;
	uint8_t *der;
	size_t len;
	FILE *f;

	(void)state;
	snprintf(dir, sizeof(dir), "%s", sim.dir);
	sp_stop(&sim);
	sp_start(&sim, dir, args);
	cl_open_board(&c, &sim, 0);
	hello(&c, dev, sizeof(dev));
	assert_string_equal(dev, dev0);
	assert_int_equal(get_uint(&c, "gen"), 1);
	der = read_csr(&c, dev0, "Factory-A", "production", 0, &len);
	assert_int_equal(len, csr0_len);
	assert_memory_equal(der, csr0, len);
	free(der);
	cl_close(&c);

	/* A committed file changed behind the board's back is caught by verify. */
	snprintf(bdir, sizeof(bdir), "%s/board0", sim.dir);
	assert_int_equal(run_verify(bdir, pki.root_pem_path, out, sizeof(out)), 0);
	snprintf(path, sizeof(path), "%s/files/sota-configuration.toml", bdir);
	f = fopen(path, "a");
	assert_non_null(f);
	fputs("tampered = true\n", f);
	fclose(f);
	assert_int_equal(run_verify(bdir, pki.root_pem_path, out, sizeof(out)), 1);
	assert_non_null(strstr(out, "sota-configuration.toml: changed since commit"));
	/* And a board whose certificate is not for its key fails too (board13 has no cert). */
	snprintf(bdir, sizeof(bdir), "%s/board13", sim.dir);
	assert_int_equal(run_verify(bdir, pki.root_pem_path, out, sizeof(out)), 1);
	assert_non_null(strstr(out, "FAILED"));
}

/* The least time bytes in frames can take to cross a line at 9600 baud (960 bytes/s), less
 * the burst allowance for each frame. */
static double floor_ms_9600(size_t bytes, size_t frames)
{
	return ((double)bytes - (double)frames * (2 * 4.8 + 16)) * 1000.0 / 960.0;
}

/* Identity options, a board without a device id, and pacing at 9600 baud: an exchange can
 * not finish faster than its bytes take on the wire (a lower bound only, so a slow machine
 * cannot fail it). */
static void test_identity_and_pacing(void **state)
{
	static const char *const args[] = { "--boards", "2", "--device-id", "none", "--baud",
					    "9600", "--hardware-id", "hw-x", "--sku", "sku-y",
					    "--key-storage", "sw", "--no-fsync", NULL };
	struct simproc p;
	struct client c;
	char dir[600], v[80], path[800];
	uint8_t *der;
	size_t len, bytes;
	int64_t t0, elapsed;
	double bound;
	uint8_t *map;

	(void)state;
	snprintf(dir, sizeof(dir), "%s/ident", tmp);
	sp_start(&p, dir, args);
	snprintf(path, sizeof(path), "%s/map.yaml", dir);
	map = tu_read_file(path, &len);
	assert_non_null(map);
	assert_non_null(strstr((char *)map, "name: \"board1\""));
	assert_non_null(strstr((char *)map, "hardware_id: \"hw-x\""));
	assert_non_null(strstr((char *)map, "device_id: \"\""));
	assert_non_null(strstr((char *)map, "/board1/tty\""));
	free(map);

	cl_open_board(&c, &p, 1);
	t0 = now_ms();
	hello(&c, v, sizeof(v));
	elapsed = now_ms() - t0;
	assert_string_equal(v, "");
	get_text(&c, "hw", v, sizeof(v));
	assert_string_equal(v, "hw-x");
	get_text(&c, "sku", v, sizeof(v));
	assert_string_equal(v, "sku-y");
	get_text(&c, "key", v, sizeof(v));
	assert_string_equal(v, "sw");
	assert_int_equal(get_uint(&c, "baud"), 9600);
	/* Both frames crossed the line at 960 bytes/s, less the small burst allowance. */
	bytes = c.reqlen + strlen(c.line) + 1;
	bound = floor_ms_9600(bytes, 2);
	if ((double)elapsed < bound)
		fail_msg("%zu bytes at 9600 baud took %lld ms, less than %.0f ms", bytes,
			 (long long)elapsed, bound);

	/* The board takes the id the station gives it in the CSR, and keeps it. */
	der = read_csr(&c, "5b0d9a1e-1111-4222-8333-944455556666", "Factory-A", NULL, 0, &len);
	free(der);
	hello(&c, v, sizeof(v));
	assert_string_equal(v, "5b0d9a1e-1111-4222-8333-944455556666");

	/* Requests sent together cross the line one after another: WRITE frames of one file in
	 * one write, which the board reads while the first is still arriving and takes each in
	 * its turn. The last one's answer comes no sooner than all their bytes and its own
	 * took at 960 bytes/s, less the burst allowance for each frame. */
	{
		static char data[900], burst[4 * DRV_PROTO_MAX_LINE];
		uint8_t sha[32];
		size_t blen = 0, off = 0, frames = 0;

		memset(data, 'p', sizeof(data));
		EVP_Digest(data, sizeof(data), sha, NULL, EVP_sha256(), NULL);
		c.max = DRV_PROTO_MIN_LINE;
		while (off < sizeof(data)) {
			size_t n;

			cl_begin(&c, DRV_PROTO_WRITE);
			drv_proto_add_text(&c.bld, "path", "paced.bin");
			drv_proto_add_text(&c.bld, "mode", "0600");
			drv_proto_add_uint(&c.bld, "size", sizeof(data));
			drv_proto_add_hex(&c.bld, "sha", sha, 32);
			drv_proto_add_uint(&c.bld, "off", off);
			n = drv_proto_b64_room(&c.bld, "data");
			if (n > sizeof(data) - off)
				n = sizeof(data) - off;
			drv_proto_add_b64(&c.bld, "data", (const uint8_t *)data + off, n);
			cl_end(&c);
			assert_true(blen + c.reqlen <= sizeof(burst));
			memcpy(burst + blen, c.req, c.reqlen);
			blen += c.reqlen;
			off += n;
			frames++;
		}
		assert_true(frames >= 3);
		c.answered = 0;
		t0 = now_ms();
		cl_write(&c, burst, blen);
		assert_int_equal(cl_wait(&c, WAIT_MS), 1);
		elapsed = now_ms() - t0;
		assert_type(&c, DRV_PROTO_WRITE);
		assert_int_equal(get_uint(&c, "have"), sizeof(data));
		assert_int_equal(get_uint(&c, "done"), 1);
		bytes = blen + strlen(c.line) + 1;
		bound = floor_ms_9600(bytes, frames + 1);
		if ((double)elapsed < bound)
			fail_msg("%zu frames sent together, %zu bytes at 9600 baud, took %lld ms, "
				 "less than %.0f ms",
				 frames, bytes, (long long)elapsed, bound);
	}
	cl_close(&c);
	sp_stop(&p);
}

/* --protocol: simboard's boards answer HELLO v=1,2 with the newest version they speak; a
 * board of version 2 takes a raw chunk, one of --protocol 1 (a board of before version 2)
 * refuses it. */
static void test_protocol_versions(void **state)
{
	static const char *const old_args[] = { "--boards", "1", "--protocol", "1", "--no-fsync",
						NULL };
	static const char *const new_args[] = { "--boards", "1", "--no-fsync", NULL };
	static const char text[] = "-----BEGIN CERTIFICATE-----\nMIIB 100%~\n";
	static const char *const versions[] = { "1", "2" };
	uint8_t sha[32];
	char dir[600], v[16];

	(void)state;
	SHA256((const uint8_t *)text, sizeof(text) - 1, sha);
	for (int version = 1; version <= 2; version++) {
		struct simproc *p = &vsim;
		struct client c;

		snprintf(dir, sizeof(dir), "%s/protocol%d", tmp, version);
		sp_start(p, dir, version == 1 ? old_args : new_args);
		cl_open_board(&c, p, 0);
		cl_begin(&c, DRV_PROTO_HELLO);
		drv_proto_add_list(&c.bld, "v", versions, 2);
		cl_end(&c);
		cl_call(&c);
		assert_type(&c, DRV_PROTO_HELLO);
		get_text(&c, "v", v, sizeof(v));
		assert_int_equal(atoi(v), version);
		cl_begin(&c, DRV_PROTO_WRITE);
		drv_proto_add_text(&c.bld, "path", "t.pem");
		drv_proto_add_text(&c.bld, "mode", "0644");
		drv_proto_add_uint(&c.bld, "size", sizeof(text) - 1);
		drv_proto_add_hex(&c.bld, "sha", sha, 32);
		drv_proto_add_uint(&c.bld, "off", 0);
		drv_proto_add_raw(&c.bld, "raw", text, sizeof(text) - 1);
		cl_end(&c);
		cl_call(&c);
		if (version == 1) {
			assert_error(&c, "FIELD");
		} else {
			assert_type(&c, DRV_PROTO_WRITE);
			assert_int_equal(get_uint(&c, "done"), 1);
		}
		cl_close(&c);
		sp_stop(p);
		p->pid = 0;
	}
}

/* The SHA-256 that VERIFY reads back for path now, in hex. */
static void verify_hex(struct client *c, const char *path, char hex[80])
{
	unsigned int seen = 0, total, before;
	uint8_t nonce[16];

	RAND_bytes(nonce, sizeof(nonce));
	do {
		const struct drv_proto_field *fld = NULL;
		char name[64], err[160];

		cl_begin(c, DRV_PROTO_VERIFY);
		drv_proto_add_b64(&c->bld, "nonce", nonce, sizeof(nonce));
		drv_proto_add_uint(&c->bld, "from", seen);
		cl_end(c);
		cl_call(c);
		assert_type(c, DRV_PROTO_VERIFY);
		total = (unsigned int)get_uint(c, "files");
		before = seen;
		while ((fld = drv_proto_find_next(&c->ans, fld, "file")) != NULL) {
			assert_int_equal(drv_proto_field_item(&c->ans, fld, 0, name, sizeof(name),
							      err, sizeof(err)),
					 0);
			seen++;
			if (strcmp(name, path) == 0) {
				assert_int_equal(drv_proto_field_item(&c->ans, fld, 2, hex, 80, err,
								      sizeof(err)),
						 0);
				return;
			}
		}
		assert_true(seen > before);
	} while (seen < total);
	fail_msg("VERIFY did not list %s", path);
}

static void sha_hex_of(const void *data, size_t len, char hex[65])
{
	uint8_t sha[32];
	int i;

	EVP_Digest(data, len, sha, NULL, EVP_sha256(), NULL);
	for (i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", sha[i]);
}

static int count_entries(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)) != NULL)
		n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
	closedir(d);
	return n;
}

static void put_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

/* What a board's directory holds, which simboard keeps track of in memory rather than by
 * scanning it: what a killed process left (a half-made generation, a staged file) is gone
 * once it is back; installed files have the modes asked for; a file staged again holds its
 * new bytes only; VERIFY reads a file changed in place after an earlier VERIFY; a swap
 * removes the old board's generation whole, a file put in beside its files too. */
static void test_storage(void **state)
{
	static const char *const args[] = { "--boards", "1", "--total", "2", "--no-fsync", NULL };
	static const char *const names[] = { "a.txt", "b.txt", "c.txt" };
	static const char *const modes[] = { "0640", "0664", "0400" };
	static const char first[] = "the first version of a.txt, never committed\n";
	static const char a[] = "a.txt as committed\n", b[] = "b.txt\n", cc[] = "c.txt\n";
	const char *data[] = { a, b, cc };
	char dir[600], bdir[700], path[900], hex[80], want[65], tampered[sizeof(a)], dev[80];
	struct simproc *p = &vsim;
	size_t len;
	struct client c;
	struct stat st;
	int fd, i;

	(void)state;
	snprintf(dir, sizeof(dir), "%s/storage", tmp);
	snprintf(bdir, sizeof(bdir), "%s/board0", dir);
	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(mkdir(bdir, 0700), 0);
	snprintf(path, sizeof(path), "%s/.gen", bdir);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/.gen/7", bdir);
	assert_int_equal(mkdir(path, 0755), 0);
	snprintf(path, sizeof(path), "%s/.gen/7/client.pem", bdir);
	put_file(path, "half a commit\n");
	snprintf(path, sizeof(path), "%s/staging", bdir);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/staging/3", bdir);
	put_file(path, "staged before a crash\n");

	sp_start(p, dir, args);
	snprintf(path, sizeof(path), "%s/.gen", bdir);
	assert_int_equal(count_entries(path), 0);
	snprintf(path, sizeof(path), "%s/staging", bdir);
	assert_int_equal(count_entries(path), 0);

	cl_open_board(&c, p, 0);
	hello(&c, dev, sizeof(dev));
	free(read_csr(&c, dev, "Factory-A", NULL, 0, &len)); /* VERIFY signs with its key */
	assert_null(write_file(&c, "a.txt", "0640", first, sizeof(first) - 1, 10));
	for (i = 0; i < 3; i++)
		assert_null(write_file(&c, names[i], modes[i], data[i], strlen(data[i]), 0));
	/* A commit that fails at its last step (the files already moved into the new
	 * generation): the staged files are kept whole, and COMMIT again installs them. */
	snprintf(path, sizeof(path), "%s/files.tmp", bdir);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/files.tmp/in-the-way", bdir);
	put_file(path, "x\n");
	commit(&c, 3);
	assert_error(&c, "STORAGE");
	assert_int_equal(unlink(path), 0);
	snprintf(path, sizeof(path), "%s/files.tmp", bdir);
	assert_int_equal(rmdir(path), 0);
	commit(&c, 3);
	assert_type(&c, DRV_PROTO_COMMIT);
	for (i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/files/%s", bdir, names[i]);
		len = strlen(data[i]);
		assert_int_equal(stat(path, &st), 0);
		assert_int_equal(st.st_size, len);
	}
	for (i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/files/%s", bdir, names[i]);
		assert_int_equal(stat(path, &st), 0);
		if ((st.st_mode & 07777) != strtoul(modes[i], NULL, 8))
			fail_msg("%s: mode %04o, asked for %s", names[i], st.st_mode & 07777,
				 modes[i]);
	}
	verify_hex(&c, "a.txt", hex);
	sha_hex_of(a, sizeof(a) - 1, want);
	assert_string_equal(hex, want);

	/* Changed in place (same file, same size) after that VERIFY read it. */
	memcpy(tampered, a, sizeof(a));
	tampered[0] = 'A';
	snprintf(path, sizeof(path), "%s/files/a.txt", bdir);
	fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, tampered, 1, 0), 1);
	close(fd);
	verify_hex(&c, "a.txt", hex);
	sha_hex_of(tampered, sizeof(a) - 1, want);
	assert_string_equal(hex, want);

	snprintf(path, sizeof(path), "%s/files/stray.txt", bdir);
	put_file(path, "not in the manifest\n");
	cl_begin(&c, DRV_PROTO_DONE);
	drv_proto_add_text(&c.bld, "result", "pass");
	cl_end(&c);
	cl_call(&c);
	assert_type(&c, DRV_PROTO_DONE);
	sp_wait(p, "board0: swapped");
	snprintf(path, sizeof(path), "%s/.gen", bdir);
	assert_int_equal(count_entries(path), 0);
	snprintf(path, sizeof(path), "%s/files", bdir);
	assert_int_equal(lstat(path, &st), -1);
	cl_close(&c);
	sp_stop(p);
	p->pid = 0;
}

#ifdef STATION_TEST_HOOKS
/* The PEM private key (cert 0) or certificate (cert 1) in path: NULL when there is no such
 * file, a failure when it does not parse. */
static void *read_pem(const char *path, int cert)
{
	FILE *f = fopen(path, "r");
	void *obj;

	if (!f)
		return NULL;
	obj = cert ? (void *)PEM_read_X509(f, NULL, NULL, NULL) :
		     (void *)PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(obj);
	return obj;
}
#endif

/* A board swap (--total) killed with SIGKILL half done, at a test stop point after the old
 * board's key is gone: once simboard is back the fixture holds the old board whole (its files
 * with the key they were issued for) or nothing of it, never the files without the key. */
static void test_swap_killed(void **state)
{
#ifndef STATION_TEST_HOOKS
	(void)state;
	skip();
#else
	static const char *const args[] = { "--boards", "1", "--total", "2", "--no-fsync", NULL };
	static const char *const again[] = { "--boards", "1", "--no-fsync", NULL };
	char dir[600], dev[80], path[800], *pem;
	struct simproc p;
	struct client c;
	X509_REQ *req;
	X509 *cert, *installed;
	EVP_PKEY *key;
	uint64_t gen;
	uint8_t *der;
	size_t len, plen;
	int status;

	(void)state;
	snprintf(dir, sizeof(dir), "%s/swap", tmp);
	setenv("SIMBOARD_TEST_STOP", "swap", 1);
	sp_start(&p, dir, args);
	unsetenv("SIMBOARD_TEST_STOP");
	cl_open_board(&c, &p, 0);
	hello(&c, dev, sizeof(dev));
	der = read_csr(&c, dev, "Factory-A", NULL, 0, &len);
	req = parse_csr(der, len);
	cert = make_cert(pki.ca, pki.ca_key, X509_REQ_get_subject_name(req),
			 X509_REQ_get0_pubkey(req), 0, 2000);
	pem = pem_of(cert, &plen);
	assert_null(write_file(&c, "client.pem", "0644", pem, plen, 0));
	commit(&c, 1);
	assert_type(&c, DRV_PROTO_COMMIT);
	cl_begin(&c, DRV_PROTO_DONE);
	drv_proto_add_text(&c.bld, "result", "pass");
	cl_end(&c);
	cl_call(&c);
	assert_type(&c, DRV_PROTO_DONE);
	sp_wait(&p, "board0: test stop in swap");
	kill(p.pid, SIGKILL);
	assert_int_equal(waitpid(p.pid, &status, 0), p.pid);
	close(p.out);
	free(p.text);
	cl_close(&c);

	/* What the board says, then what its directory holds (simboard stopped first, so that
	 * a failed assertion leaves no process behind). */
	sp_start(&p, dir, again);
	cl_open_board(&c, &p, 0);
	hello(&c, NULL, 0);
	gen = get_uint(&c, "gen");
	cl_close(&c);
	sp_stop(&p);
	snprintf(path, sizeof(path), "%s/board0/key.pem", dir);
	key = read_pem(path, 0);
	snprintf(path, sizeof(path), "%s/board0/files/client.pem", dir);
	installed = read_pem(path, 1);
	if (installed && !key)
		fail_msg("after the killed swap board0 holds the old board's client.pem without its key");
	if (key && !installed)
		fail_msg("after the killed swap board0 holds a key without the old board's files");
	if (key)
		assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(installed), key), 1);
	assert_int_equal(gen, key ? 1 : 0);
	EVP_PKEY_free(key);
	X509_free(installed);
	X509_free(cert);
	X509_REQ_free(req);
	free(pem);
	free(der);
#endif
}

/* 1024 boards in one process, each answering over its own PTY, with 30% of answers
 * corrupted on the wire: every board is reached through retransmits. */
static void test_many_boards(void **state)
{
	static const char *const args[] = { "--boards",	 "1024", "--fault", "crc:30%",
					    "--seed",	 "7",	 "--no-fsync", NULL };
	struct simproc p;
	struct client *cl;
	struct pollfd *pfd;
	struct rlimit rl;
	char dir[600], path[800];
	int i, done = 0, crc = 0, round;
	const int n = 1024;

	(void)state;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	snprintf(dir, sizeof(dir), "%s/many", tmp);
	sp_start(&p, dir, args);
	cl = calloc((size_t)n, sizeof(*cl));
	pfd = calloc((size_t)n, sizeof(*pfd));
	assert_non_null(cl);
	assert_non_null(pfd);
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/board%d/tty", dir, i);
		assert_int_equal(cl_open(&cl[i], path), 0);
		cl_begin(&cl[i], DRV_PROTO_HELLO);
		drv_proto_add_text(&cl[i].bld, "v", "1");
		cl_end(&cl[i]);
		cl_send(&cl[i]);
	}
	for (round = 0; done < n && round < 20; round++) {
		int64_t end = now_ms() + WAIT_MS;

		while (done < n && now_ms() < end) {
			int k = 0;

			for (i = 0; i < n; i++) {
				pfd[i].fd = cl[i].answered ? -1 : drv_port_fd(cl[i].port);
				pfd[i].events = POLLIN;
				pfd[i].revents = 0;
			}
			if (poll(pfd, (nfds_t)n, 1000) <= 0)
				break;
			for (i = 0; i < n; i++) {
				char buf[1024], err[160];
				ssize_t r;
				int before = cl[i].crc_errors + cl[i].frame_errors;

				if (!(pfd[i].revents & POLLIN))
					continue;
				r = drv_port_read(cl[i].port, buf, sizeof(buf), err, sizeof(err));
				assert_true(r >= 0);
				drv_proto_decoder_feed(&cl[i].dec, buf, (size_t)r);
				if (cl[i].answered) {
					assert_type(&cl[i], DRV_PROTO_HELLO);
					done++;
				} else if (cl[i].crc_errors + cl[i].frame_errors > before) {
					cl_send(&cl[i]); /* damaged: retransmit at once */
				}
				k++;
			}
			(void)k;
		}
		/* Anything still unanswered after a quiet second: retransmit. */
		for (i = 0; i < n; i++) {
			if (!cl[i].answered)
				cl_send(&cl[i]);
		}
	}
	for (i = 0; i < n; i++) {
		crc += cl[i].crc_errors;
		cl_close(&cl[i]);
	}
	assert_int_equal(done, n);
	assert_true(crc > 0);
	free(cl);
	free(pfd);
	sp_stop(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_full_flow),
		cmocka_unit_test(test_protocol_rules),
		cmocka_unit_test(test_fault_crc),
		cmocka_unit_test(test_fault_drop),
		cmocka_unit_test(test_fault_slow_and_hang),
		cmocka_unit_test(test_fault_latency),
		cmocka_unit_test(test_fault_disconnect),
		cmocka_unit_test(test_fault_power_loss),
		cmocka_unit_test(test_fault_bad_csr),
		cmocka_unit_test(test_fault_dup_id),
		cmocka_unit_test(test_fault_baud),
		cmocka_unit_test(test_restart_keeps_state),
		cmocka_unit_test(test_identity_and_pacing),
		cmocka_unit_test(test_protocol_versions),
		cmocka_unit_test(test_storage),
		cmocka_unit_test(test_swap_killed),
		cmocka_unit_test(test_many_boards),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
