/* One run of `station bench` (see bench.h): set-up, the two children, sampling through
 * /proc, the event stream, the figures. */
#include "bench.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "err.h"
#include "log.h"

extern char **environ;

#define SAMPLE_MS 10
#define READY_TIMEOUT_S 120
#define FACTORY "bench-factory"

/* ---- Small helpers -------------------------------------------------------------------- */

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static int path_join(char *out, size_t cap, const char *dir, const char *name)
{
	int n = snprintf(out, cap, "%s/%s", dir, name);

	return n < 0 || (size_t)n >= cap ? -1 : 0;
}

static int write_text(const char *path, const char *text, mode_t mode, char *err, size_t errlen)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	size_t len = strlen(text), off = 0;

	if (fd < 0)
		return st_errf(err, errlen, ST_E_IO, "%s: %s", path, strerror(errno));
	while (off < len) {
		ssize_t w = write(fd, text + off, len - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			close(fd);
			return st_errf(err, errlen, ST_E_IO, "%s: %s", path, strerror(errno));
		}
		off += (size_t)w;
	}
	if (close(fd) != 0)
		return st_errf(err, errlen, ST_E_IO, "%s: %s", path, strerror(errno));
	return 0;
}

/* The last line of a log file that says something, for error messages. */
static void last_line(const char *path, char *out, size_t cap)
{
	char buf[4096];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	char *end, *start;

	out[0] = 0;
	if (fd < 0)
		return;
	if (lseek(fd, 0, SEEK_END) > (off_t)sizeof(buf) - 1)
		lseek(fd, -(off_t)(sizeof(buf) - 1), SEEK_END);
	else
		lseek(fd, 0, SEEK_SET);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = 0;
	end = buf + n;
	while (end > buf && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
		*--end = 0;
	start = strrchr(buf, '\n');
	snprintf(out, cap, "%.*s", (int)(cap - 1), start ? start + 1 : buf);
}

/* Starts argv[0] (an absolute path) with stdin from /dev/null and stdout/stderr appended to
 * the given files, in the bench's environment. */
static int spawn(char *const argv[], const char *out_path, const char *err_path, pid_t *pid,
		 char *err, size_t errlen)
{
	posix_spawn_file_actions_t fa;
	int rc;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
	posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
	rc = posix_spawn(pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0)
		return st_errf(err, errlen, ST_E_IO, "cannot start %s: %s", argv[0], strerror(rc));
	return 0;
}

/* Runs a command to its end; its output goes to log. */
static int run_command(char *const argv[], const char *log, char *err, size_t errlen)
{
	char line[300];
	pid_t pid;
	int rc, status;

	rc = spawn(argv, log, log, &pid, err, errlen);
	if (rc < 0)
		return rc;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	last_line(log, line, sizeof(line));
	return st_errf(err, errlen, ST_E_IO, "%s %s failed (%s): %s", argv[0], argv[1],
		       WIFEXITED(status) ? "non-zero exit" : "killed", line);
}

/* Sends sig to pid and waits for it up to limit_s, then SIGKILL. */
static void stop_child(pid_t pid, int sig, double limit_s, int *status, struct rusage *ru)
{
	double t0 = now_s();
	struct rusage dummy;
	int st;

	if (!ru)
		ru = &dummy;
	if (!status)
		status = &st;
	kill(pid, sig);
	for (;;) {
		pid_t r = wait4(pid, status, WNOHANG, ru);

		if (r == pid || (r < 0 && errno != EINTR))
			return;
		if (now_s() - t0 > limit_s) {
			kill(pid, SIGKILL);
			while (wait4(pid, status, 0, ru) < 0 && errno == EINTR)
				;
			return;
		}
		sleep_ms(SAMPLE_MS);
	}
}

/* ---- /proc ------------------------------------------------------------------------------ */

static double loadavg1(void)
{
	char buf[128];
	double v;

	if (st_bench_read_file("/proc/loadavg", buf, sizeof(buf)) != 0 ||
	    sscanf(buf, "%lf", &v) != 1)
		return NAN;
	return v;
}

/* The machine's CPU time from /proc/stat's first line, in clock ticks: *busy every state
 * but idle and iowait, *all every state (guest time is inside user). Returns 0 or -1. */
static int machine_ticks(double *busy, double *all)
{
	char buf[512];
	unsigned long long v[8] = { 0 };

	if (st_bench_read_file("/proc/stat", buf, sizeof(buf)) != 0 ||
	    sscanf(buf, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
		   &v[3], &v[4], &v[5], &v[6], &v[7]) != 8)
		return -1;
	*all = (double)(v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7]);
	*busy = *all - (double)(v[3] + v[4]);
	return 0;
}

/* ---- Set-up --------------------------------------------------------------------------- */

static const char PROFILE[] = "# The simulated boards' profile (Foundries-style files).\n"
			      "sku: bench-gw\n"
			      "match:\n"
			      "  hardware_ids: [sim-board]\n"
			      "factory: " FACTORY "\n"
			      "device_id:\n"
			      "  source: board\n"
			      "sota:\n"
			      "  gateway: https://gateway.example:8443\n"
			      "  ostree_server: https://ostree.example:8443\n"
			      "files:\n"
			      "  - set: foundries\n";

struct run_paths {
	char dir[PATH_MAX];      /* this run's work directory */
	char pki[PATH_MAX];
	char boards[PATH_MAX];   /* simboard's --dir */
	char config[PATH_MAX];
	char events[PATH_MAX];
	char pin[PATH_MAX];
	char uri[PATH_MAX + 128];
	char key[PATH_MAX];      /* file signer: the key */
	char softhsm_conf[PATH_MAX];
	char run_out[PATH_MAX], run_err[PATH_MAX];
	char log[PATH_MAX];
};

static int make_paths(const struct st_bench_opts *o, unsigned slots, unsigned round,
		      struct run_paths *p, char *err, size_t errlen)
{
	char name[96];
	int bad = 0;

	memset(p, 0, sizeof(*p));
	snprintf(name, sizeof(name), "run-%s-%u-slots-r%u",
		 o->signer.kind == ST_BENCH_FILE ? "file" :
		 o->signer.kind == ST_BENCH_SOFTHSM ? "softhsm" : "slowhsm",
		 slots, round + 1);
	bad |= path_join(p->dir, sizeof(p->dir), o->workdir, name);
	bad |= path_join(p->boards, sizeof(p->boards), o->boarddir, name);
	bad |= path_join(p->pki, sizeof(p->pki), p->dir, "pki");
	bad |= path_join(p->config, sizeof(p->config), p->pki, "bench.yaml");
	bad |= path_join(p->events, sizeof(p->events), p->dir, "events.jsonl");
	bad |= path_join(p->pin, sizeof(p->pin), p->dir, "pin");
	bad |= path_join(p->key, sizeof(p->key), p->pki, "local-ca.key");
	bad |= path_join(p->softhsm_conf, sizeof(p->softhsm_conf), p->pki, "softhsm2.conf");
	/* simboard-K.out and .err, and the boards' DIR/K, must fit too. */
	bad |= strlen(p->dir) + 32 > sizeof(p->dir) || strlen(p->boards) + 32 > sizeof(p->boards);
	bad |= path_join(p->run_out, sizeof(p->run_out), p->dir, "run.out");
	bad |= path_join(p->run_err, sizeof(p->run_err), p->dir, "run.err");
	bad |= path_join(p->log, sizeof(p->log), p->dir, "setup.log");
	if (bad)
		return st_errf(err, errlen, ST_E_INVAL, "%s: path too long", o->workdir);
	if (mkdir(p->dir, 0700) != 0)
		return st_errf(err, errlen, ST_E_IO, "%s: %s", p->dir, strerror(errno));
	return 0;
}

/* simboard process k's output file ("out" or "err") and its boards' directory. */
static void sim_file(const struct run_paths *p, unsigned k, const char *what, char *out,
		     size_t cap)
{
	snprintf(out, cap, "%s/simboard-%u.%s", p->dir, k, what);
}

static void sim_dir(const struct run_paths *p, unsigned k, char *out, size_t cap)
{
	snprintf(out, cap, "%s/%u", p->boards, k);
}

/* A random PIN in a 0600 file: never on a command line. */
static int make_pin(const char *path, char *err, size_t errlen)
{
	unsigned char r[8];
	char pin[32];
	int rc;

	if (RAND_bytes(r, sizeof(r)) != 1)
		return st_errf(err, errlen, ST_E_CRYPTO, "no random bytes for a PIN");
	snprintf(pin, sizeof(pin), "%02x%02x%02x%02x%02x%02x%02x%02x\n", r[0], r[1], r[2], r[3],
		 r[4], r[5], r[6], r[7]);
	rc = write_text(path, pin, 0600, err, errlen);
	OPENSSL_cleanse(pin, sizeof(pin));
	return rc;
}

/* The development PKI and the run configuration. */
static int setup_pki(const struct st_bench_opts *o, const struct st_bench_result *res,
		     struct run_paths *p, char *err, size_t errlen)
{
	char softhsm_uri[PATH_MAX + 128], profile[PATH_MAX];
	const char *module = o->signer.kind == ST_BENCH_SLOWHSM ? o->slowhsm : o->softhsm;
	FILE *f;
	int rc;

	if (o->signer.kind == ST_BENCH_FILE) {
		char *argv[] = { (char *)o->station, "ca", "init", "--dir", p->pki, "--factory",
				 FACTORY, "--file", NULL };

		rc = run_command(argv, p->log, err, errlen);
	} else {
		char *argv[] = { (char *)o->station, "ca", "init", "--dir", p->pki, "--factory",
				 FACTORY, "--softhsm", "--pkcs11", softhsm_uri, "--pin-file",
				 p->pin, NULL };

		snprintf(softhsm_uri, sizeof(softhsm_uri),
			 "pkcs11:token=bench;object=local-ca?module-path=%s", o->softhsm);
		snprintf(p->uri, sizeof(p->uri),
			 "pkcs11:token=bench;object=local-ca?module-path=%s", module);
		rc = make_pin(p->pin, err, errlen);
		if (rc == 0)
			rc = run_command(argv, p->log, err, errlen);
	}
	if (rc < 0)
		return rc;
	if (path_join(profile, sizeof(profile), p->pki, "bench-gw.yaml") != 0)
		return st_errf(err, errlen, ST_E_INVAL, "%s: path too long", p->pki);
	rc = write_text(profile, PROFILE, 0644, err, errlen);
	if (rc < 0)
		return rc;

	f = fopen(p->config, "w");
	if (!f)
		return st_errf(err, errlen, ST_E_IO, "%s: %s", p->config, strerror(errno));
	fprintf(f, "# Written by station bench.\nca:\n");
	if (o->signer.kind == ST_BENCH_FILE)
		fprintf(f, "  signer: file\n  key: local-ca.key\n");
	else
		fprintf(f, "  signer: pkcs11\n  key: \"%s\"\n  pin_file: %s\n"
			   "  softhsm2_conf: softhsm2.conf\n",
			p->uri, p->pin);
	fprintf(f, "  cert: local-ca.pem\n  root: factory-root.pem\n"
		   "ledger: ledger.db\n"
		   "station: bench\n"
		   "profiles: [bench-gw.yaml]\n"
		   "outputs:\n  console_dir: %s/consoles\n"
		   "slots:\n",
		p->dir);
	for (unsigned k = 0; k < res->sim_procs; k++) {
		fprintf(f, "  - board_map: %s/%u/map.yaml\n", p->boards, k);
		if (o->max_baud)
			fprintf(f, "    max_baud: %u\n", o->max_baud);
	}
	if (res->workers || res->batch || res->linger >= 0 || o->signer.kind == ST_BENCH_SLOWHSM)
		fprintf(f, "pool:\n");
	if (res->workers)
		fprintf(f, "  workers: %u\n", res->workers);
	if (o->signer.kind == ST_BENCH_SLOWHSM)
		fprintf(f, "  hsm_sessions: %u\n", o->signer.sessions);
	if (res->batch)
		fprintf(f, "  batch_max: %u\n", res->batch);
	if (res->linger >= 0)
		fprintf(f, "  batch_linger_ms: %d\n", res->linger);
	if (fclose(f) != 0)
		return st_errf(err, errlen, ST_E_IO, "%s: %s", p->config, strerror(errno));
	return 0;
}

/* The bound, with the run's own signer, in this process. */
static int measure_bound(const struct st_bench_opts *o, const struct run_paths *p,
			 struct st_bench_bound *b, char *err, size_t errlen)
{
	struct drv_signer_config sc;
	struct drv_signer *signer = NULL;
	unsigned n = o->bound_n;
	int rc;

	memset(&sc, 0, sizeof(sc));
	if (o->signer.kind == ST_BENCH_FILE) {
		sc.backend = "file";
		sc.key = p->key;
	} else {
		sc.backend = "pkcs11";
		sc.key = p->uri;
		sc.pin_file = p->pin;
		setenv("SOFTHSM2_CONF", p->softhsm_conf, 1);
	}
	if (!n) {
		n = 2000;
		/* An emulated slow HSM: about a second of signatures. */
		if (o->signer.kind == ST_BENCH_SLOWHSM && o->signer.latency_ms > 0.5)
			n = (unsigned)(1000 / o->signer.latency_ms) + 10;
	}
	/* The file signer's warning about development keys is for stations, not for this
	 * measurement; errors still show. */
	st_log_set_level(ST_LOG_ERR);
	rc = drv_signer_open(&sc, &signer, err, errlen);
	if (rc == 0)
		rc = st_bench_measure_bound(signer, n, b, err, errlen);
	drv_signer_close(signer);
	st_log_set_level(ST_LOG_INFO);
	return rc;
}

/* ---- Events --------------------------------------------------------------------------- */

/* One passed board, times in seconds since the epoch. */
struct board_rec {
	const char *slot; /* borrowed from the JSON */
	double start, end, checked, sign_end;
	double ms[ST_PHASE_COUNT];
	int reused, signed_;
};

static double parse_ts(const char *ts)
{
	struct tm tm;
	int ms = 0;

	memset(&tm, 0, sizeof(tm));
	if (!ts || sscanf(ts, "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
			  &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) < 6)
		return NAN;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	return (double)timegm(&tm) + ms / 1000.0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void percentiles(double *v, size_t n, struct st_bench_pct *out)
{
	double sum = 0;

	memset(out, 0, sizeof(*out));
	out->p50 = out->p95 = out->p99 = out->mean = out->max = NAN;
	if (!n)
		return;
	qsort(v, n, sizeof(*v), cmp_double);
	for (size_t i = 0; i < n; i++)
		sum += v[i];
	out->n = n;
	/* Nearest rank: the smallest value with at least p% of the values at or below it. */
	out->p50 = v[(size_t)ceil(0.50 * (double)n) - 1];
	out->p95 = v[(size_t)ceil(0.95 * (double)n) - 1];
	out->p99 = v[(size_t)ceil(0.99 * (double)n) - 1];
	out->mean = sum / (double)n;
	out->max = v[n - 1];
}

struct interval {
	double a, b;
};

static int cmp_interval(const void *x, const void *y)
{
	const struct interval *p = x, *q = y;

	return p->a < q->a ? -1 : p->a > q->a;
}

/* Length of the union of the intervals (sorted in place). */
static double union_length(struct interval *v, size_t n)
{
	double total = 0, a, b;

	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), cmp_interval);
	a = v[0].a;
	b = v[0].b;
	for (size_t i = 1; i < n; i++) {
		if (v[i].a > b) {
			total += b - a;
			a = v[i].a;
		}
		if (v[i].b > b)
			b = v[i].b;
	}
	return total + (b - a);
}

static int cmp_board_slot(const void *x, const void *y)
{
	const struct board_rec *p = x, *q = y;

	return strcmp(p->slot, q->slot);
}

/* Reads the event stream and fills the throughput, latency, wire and signing figures. */
static int read_events(const char *path, struct st_bench_result *res, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	json_t **keep = NULL;
	struct board_rec *b = NULL;
	struct interval *iv = NULL;
	double *v = NULL, first = INFINITY, last = -INFINITY, bytes = 0;
	double requests = 0, turns = 0, writes = 0;
	double wa = -INFINITY, wb = INFINITY;
	size_t nslot = 0, inwin = 0;
	size_t nb = 0, cap = 0, nkeep = 0, niv = 0;
	char *line = NULL;
	size_t linecap = 0;
	int rc = 0;

	if (!f)
		return st_errf(err, errlen, ST_E_IO, "%s: %s", path, strerror(errno));
	while (getline(&line, &linecap, f) > 0) {
		json_t *j = json_loads(line, 0, NULL), *ms, *x;
		const char *ev;
		struct board_rec *r;

		if (!j)
			continue;
		ev = json_string_value(json_object_get(j, "event"));
		if (!ev || (strcmp(ev, "pass") != 0 && strcmp(ev, "fail") != 0 &&
			    strcmp(ev, "abandoned") != 0)) {
			json_decref(j);
			continue;
		}
		if (strcmp(ev, "fail") == 0)
			res->failed++;
		if (strcmp(ev, "abandoned") == 0)
			res->abandoned++;
		if (strcmp(ev, "pass") != 0) {
			json_decref(j);
			continue;
		}
		res->passed++;
		if (nb == cap) {
			size_t ncap = cap ? 2 * cap : 256;
			struct board_rec *nbr = realloc(b, ncap * sizeof(*b));
			json_t **nk = realloc(keep, ncap * sizeof(*keep));

			if (nbr)
				b = nbr;
			if (nk)
				keep = nk;
			if (!nbr || !nk) {
				json_decref(j);
				rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory");
				goto out;
			}
			cap = ncap;
		}
		keep[nkeep++] = j;
		r = &b[nb++];
		memset(r, 0, sizeof(*r));
		r->slot = json_string_value(json_object_get(j, "slot"));
		if (!r->slot)
			r->slot = "";
		ms = json_object_get(j, "ms");
		for (int p = 0; p < ST_PHASE_COUNT; p++) {
			x = json_object_get(ms, st_phase_name((enum st_phase)p));
			r->ms[p] = json_is_number(x) ? json_number_value(x) : -1;
		}
		r->end = parse_ts(json_string_value(json_object_get(j, "ts")));
		r->start = r->end - (r->ms[ST_PHASE_TOTAL] > 0 ? r->ms[ST_PHASE_TOTAL] : 0) / 1000;
		r->reused = json_is_true(json_object_get(j, "reused"));
		r->signed_ = !r->reused && r->ms[ST_PHASE_SIGN] >= 0;
		r->checked = r->start + (fmax(r->ms[ST_PHASE_HELLO], 0) +
					 fmax(r->ms[ST_PHASE_CSR], 0)) / 1000;
		r->sign_end = r->checked + (fmax(r->ms[ST_PHASE_QUEUE], 0) +
					    fmax(r->ms[ST_PHASE_SIGN], 0)) / 1000;
		bytes += (double)json_integer_value(json_object_get(j, "tx_bytes")) +
			 (double)json_integer_value(json_object_get(j, "rx_bytes"));
		requests += (double)json_integer_value(json_object_get(j, "requests"));
		turns += (double)json_integer_value(json_object_get(j, "turns"));
		writes += (double)json_integer_value(json_object_get(j, "writes"));
		res->reused += r->reused != 0;
		res->signed_ += r->signed_ != 0;
	}

	if (nb) {
		v = calloc(nb, sizeof(*v));
		iv = calloc(nb, sizeof(*iv));
		if (!v || !iv) {
			rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory");
			goto out;
		}
	}
	for (int p = 0; p < ST_PHASE_COUNT; p++) {
		size_t n = 0;

		for (size_t i = 0; i < nb; i++) {
			if (b[i].ms[p] >= 0)
				v[n++] = b[i].ms[p];
		}
		percentiles(v, n, &res->phase[p]);
	}
	for (size_t i = 0; i < nb; i++) {
		first = fmin(first, b[i].start);
		last = fmax(last, b[i].end);
		if (b[i].signed_) {
			iv[niv].a = b[i].checked;
			iv[niv].b = b[i].sign_end;
			niv++;
		}
	}
	if (nb) {
		res->span_s = last - first;
		res->bph = res->span_s > 0 ? (double)nb * 3600 / res->span_s : NAN;
		res->bytes_per_board = bytes / (double)nb;
		res->requests_per_board = requests / (double)nb;
		res->turns_per_board = turns / (double)nb;
		res->writes_per_board = writes / (double)nb;
		/* The window in which every slot was busy: from the last slot's first HELLO to
		 * the first slot's last outcome. Summing each slot's own rate instead would
		 * count the same signer time once per slot and report more than the signer
		 * or the wire can carry. */
		qsort(b, nb, sizeof(*b), cmp_board_slot);
		for (size_t i = 0; i < nb;) {
			size_t j = i;
			double s0 = b[i].start, s1 = b[i].end;

			while (j < nb && strcmp(b[j].slot, b[i].slot) == 0) {
				s0 = fmin(s0, b[j].start);
				s1 = fmax(s1, b[j].end);
				j++;
			}
			wa = fmax(wa, s0);
			wb = fmin(wb, s1);
			nslot++;
			i = j;
		}
		for (size_t i = 0; wb > wa && i < nb; i++) {
			if (b[i].end > wa && b[i].end <= wb)
				inwin++;
		}
		if (wb > wa && inwin >= nslot) {
			res->steady_window_s = wb - wa;
			res->bph_steady = (double)inwin * 3600 / (wb - wa);
			res->steady_tol_bph = (double)nslot * 3600 / (wb - wa);
		} else {
			res->steady_window_s = res->span_s;
			res->bph_steady = res->bph;
			res->steady_tol_bph = 0;
		}
	}
	res->sign_window_s = union_length(iv, niv);
	res->sign_rate = res->sign_window_s > 0 ? (double)res->signed_ / res->sign_window_s : NAN;
out:
	for (size_t i = 0; i < nkeep; i++)
		json_decref(keep[i]);
	free(keep);
	free(b);
	free(iv);
	free(v);
	free(line);
	fclose(f);
	return rc;
}

/* The simboard processes' last words on their pacing ("simboard: pacing: N waits, late by
 * X ms on average, ...") and on the station's turns ("simboard: turns: N, ... came X ms
 * after ..."), summed over the processes. The per-board figure is filled in once the boards
 * are counted. */
static void read_pacing(const struct run_paths *p, struct st_bench_result *res)
{
	char path[PATH_MAX + 64], line[512];
	unsigned long waits, nwaits = 0, turns, nturns = 0, kn[ST_BENCH_TURNS];
	unsigned long kturns[ST_BENCH_TURNS] = { 0 };
	double late, max, over10, tx, owed, late_sum = 0, tx_sum = 0, turn, turn_sum = 0;
	double kms[ST_BENCH_TURNS], ksum[ST_BENCH_TURNS] = { 0 };
	int got, kinds = 0;

	res->sim_late_ms = res->sim_late_ms_per_board = res->sim_turn_ms = NAN;
	res->sim_turns_per_board = NAN;
	for (unsigned k = 0; k < ST_BENCH_TURNS; k++)
		res->sim_turn_after_ms[k] = res->sim_turns_after_per_board[k] = NAN;
	for (unsigned k = 0; k < res->sim_procs; k++) {
		FILE *f;

		sim_file(p, k, "out", path, sizeof(path));
		f = fopen(path, "r");
		if (!f)
			continue;
		while (fgets(line, sizeof(line), f)) {
			owed = 0;
			got = sscanf(line, "simboard: pacing: %lu waits, late by %lf ms on average, "
					   "%lf%% by more than 10 ms, at most %lf ms; answers late by "
					   "%lf ms in all, %lf ms of it made good", &waits, &late,
				     &over10, &max, &tx, &owed);
			if (got >= 5) {
				nwaits += waits;
				late_sum += late * (double)waits;
				/* What the next requests did not make good. */
				tx_sum += tx - owed;
			} else if (sscanf(line, "simboard: turns: %lu, the station's next bytes "
						"came %lf ms", &turns, &turn) == 2) {
				nturns += turns;
				turn_sum += turn * (double)turns;
			} else if (sscanf(line, "simboard: turns after boot %lu %lf ms, csr %lu "
					  "%lf ms, write %lu %lf ms, verify %lu %lf ms, other "
					  "%lu %lf ms", &kn[0], &kms[0], &kn[1], &kms[1], &kn[2],
					  &kms[2], &kn[3], &kms[3], &kn[4], &kms[4]) == 10) {
				kinds = 1;
				for (unsigned k = 0; k < ST_BENCH_TURNS; k++) {
					kturns[k] += kn[k];
					ksum[k] += kms[k] * (double)kn[k];
				}
			}
		}
		fclose(f);
	}
	/* A simboard that does not tell them apart (--simboard of an older build): NAN. */
	for (unsigned k = 0; k < ST_BENCH_TURNS && nturns && kinds; k++) {
		res->sim_turn_after_ms[k] = kturns[k] ? ksum[k] / (double)kturns[k] : 0;
		res->sim_turns_after_per_board[k] = (double)kturns[k]; /* in all, for now */
	}
	if (nwaits) {
		res->sim_late_ms = late_sum / (double)nwaits;
		res->sim_late_ms_per_board = tx_sum; /* in all, for now */
	}
	if (nturns) {
		res->sim_turn_ms = turn_sum / (double)nturns;
		res->sim_turns_per_board = (double)nturns; /* in all, for now */
	}
}

/* The ledger's commits over the run, from the pool's last words in the station's log
 * ("signing pool: N requests in B batches; C ledger commits ..."); 0 when it did not say. */
static unsigned long read_commits(const struct run_paths *p)
{
	unsigned long long req, batches, commits;
	unsigned long n = 0;
	char line[512];
	FILE *f = fopen(p->run_err, "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		const char *at = strstr(line, "signing pool: ");

		if (at && sscanf(at, "signing pool: %llu requests in %llu batches; %llu ledger "
				     "commits", &req, &batches, &commits) == 3)
			n = (unsigned long)commits;
	}
	fclose(f);
	return n;
}

/* The protocol's minimum from a board the run provisioned: the first board directory of the
 * first simboard process that holds installed files (every fixture's last board keeps its
 * files: no board is swapped in once the run's boards were all put in). */
static void read_wire_minimum(const struct run_paths *p, struct st_bench_wire_min *out)
{
	char dir[PATH_MAX + 16], board[PATH_MAX + 300];
	struct dirent *d;
	DIR *dp;

	memset(out, 0, sizeof(*out));
	sim_dir(p, 0, dir, sizeof(dir));
	dp = opendir(dir);
	if (!dp)
		return;
	while ((d = readdir(dp))) {
		if (d->d_name[0] == '.' ||
		    snprintf(board, sizeof(board), "%s/%s", dir, d->d_name) >= (int)sizeof(board))
			continue;
		if (st_bench_wire_minimum(board, ST_BENCH_NONCE_LEN, out) == 0)
			break;
	}
	closedir(dp);
}

/* ---- The run -------------------------------------------------------------------------- */

static void rm_tree(const char *path)
{
	char *argv[] = { "/bin/rm", "-rf", (char *)path, NULL };
	char err[64];
	pid_t pid;
	int st;

	if (spawn(argv, "/dev/null", "/dev/null", &pid, err, sizeof(err)) == 0)
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
}

/* Waits for simboard's ready line in its output file. */
static int wait_ready(pid_t pid, const char *out, const char *errf, char *err, size_t errlen)
{
	double t0 = now_s();
	char buf[512], line[300];
	int st;

	for (;;) {
		if (st_bench_read_file(out, buf, sizeof(buf)) == 0 && strstr(buf, "simboard: ready:"))
			return 0;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			last_line(errf, line, sizeof(line));
			return st_errf(err, errlen, ST_E_IO, "simboard exited before it was ready: "
				       "%s", line);
		}
		if (now_s() - t0 > READY_TIMEOUT_S) {
			stop_child(pid, SIGTERM, 10, NULL, NULL);
			return st_errf(err, errlen, ST_E_TIMEOUT, "simboard was not ready after %d s",
				       READY_TIMEOUT_S);
		}
		sleep_ms(SAMPLE_MS);
	}
}

static int file_nonempty(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && st.st_size > 0;
}

/* The simboard processes' CPU and wait for a CPU, summed; processes gone count nothing. */
static void sims_schedstat(const pid_t *pid, unsigned n, double *cpu, double *wait)
{
	char path[64];
	double c, w;

	*cpu = *wait = 0;
	for (unsigned k = 0; k < n; k++) {
		snprintf(path, sizeof(path), "/proc/%d/schedstat", (int)pid[k]);
		if (pid[k] > 0 && st_bench_read_schedstat(path, &c, &w, NULL) == 0) {
			*cpu += c;
			*wait += w;
		}
	}
}

static void set_slowhsm_env(const struct st_bench_opts *o)
{
	char v[64];

	if (o->signer.kind != ST_BENCH_SLOWHSM)
		return;
	snprintf(v, sizeof(v), "%g", o->signer.latency_ms);
	setenv("SLOWHSM_LATENCY_MS", v, 1);
	snprintf(v, sizeof(v), "%u", o->signer.sessions);
	setenv("SLOWHSM_SESSIONS", v, 1);
	setenv("SLOWHSM_MODULE", o->softhsm, 1);
}

int st_bench_run(const struct st_bench_opts *o, unsigned slots, unsigned long boards,
		 unsigned round, struct st_bench_result *res, char *err, size_t errlen)
{
	struct run_paths p;
	struct st_bench_sampler st;
	struct rusage ru;
	char ntotal[32], line[300], path[PATH_MAX + 64], path2[PATH_MAX + 64];
	double t0, sim_cpu0 = 0, sim_cpu = 0, sim_wait0 = 0, sim_wait = 0, cpu0 = 0;
	double mbusy0 = 0, mall0 = 0, mbusy = 0, mall = 0;
	int machine_ok = 0;
	pid_t sim[ST_BENCH_SIM_MAX], run = -1;
	unsigned k;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int status = 0, started = 0, exited = 0, termed = 0, rc;

	memset(res, 0, sizeof(*res));
	res->slots = slots;
	res->boards = boards;
	res->baud = o->baud;
	res->max_baud = o->max_baud;
	res->batch = o->batch;
	res->linger = o->linger;
	res->round = round;
	snprintf(res->signer, sizeof(res->signer), "%s", o->signer.name);
	res->workers = o->workers;
	if (!res->workers && o->signer.kind == ST_BENCH_SLOWHSM)
		/* One worker per session the HSM allows (the pkcs11 signer lends its login
		 * session to one of them). */
		res->workers = o->signer.sessions;
	res->wire_s = res->wire_bound_bph = res->wire_ratio = res->wire_ratio_span = NAN;
	if (o->stagger_ms >= 0)
		res->stagger_ms = (unsigned)o->stagger_ms;
	else if (o->baud)
		/* About one board's time on the wire (some 7.5 kB a board): boards are put in
		 * one after another, as on a line, rather than all in the same millisecond. */
		res->stagger_ms = (unsigned)(7500.0 * 10 * 1000 / o->baud);
	if (ncpu < 1)
		ncpu = 1;
	/* One simboard loop serves up to 128 boards by default: a loop that serves hundreds
	 * answers every turn of the conversation late by its share of the others' work. But
	 * no more processes than twice the CPUs: beyond that they only take turns on them
	 * (1024 slots paced on 2 CPUs, interleaved: 0.69-0.73 of the wire bound with 2 to 4
	 * processes, 0.66 with 8, 0.64 with 16). */
	res->sim_procs = o->sim_procs ? o->sim_procs : (slots + 127) / 128;
	if (!o->sim_procs && res->sim_procs > 2 * (unsigned)ncpu)
		res->sim_procs = 2 * (unsigned)ncpu;
	if (res->sim_procs > ST_BENCH_SIM_MAX)
		res->sim_procs = ST_BENCH_SIM_MAX;
	if (res->sim_procs > slots)
		res->sim_procs = slots;
	for (k = 0; k < ST_BENCH_SIM_MAX; k++)
		sim[k] = -1;
	set_slowhsm_env(o);

	rc = make_paths(o, slots, round, &p, err, errlen);
	if (rc < 0)
		return rc;
	rc = setup_pki(o, res, &p, err, errlen);
	if (rc < 0)
		return rc;
	rc = measure_bound(o, &p, &res->bound, err, errlen);
	if (rc < 0)
		return rc;

	/* The boards: the slots shared out over the simboard processes, and the boards to
	 * swap in with them. */
	snprintf(ntotal, sizeof(ntotal), "%lu", boards);
	if (mkdir(p.boards, 0700) != 0 && errno != EEXIST) {
		rc = st_errf(err, errlen, ST_E_IO, "%s: %s", p.boards, strerror(errno));
		goto out;
	}
	for (k = 0; k < res->sim_procs; k++) {
		unsigned n = res->sim_procs, ns = slots / n + (k < slots % n);
		unsigned long extra = boards - slots;
		unsigned long nt = ns + extra / n + (k < extra % n);
		char nboards[32], total[32], baud[32], bauds[40], stagger[32], seed[32], prefix[32];
		char proto[16], frame[16], slow[48];
		char dir[PATH_MAX + 16], out[PATH_MAX + 64], errf[PATH_MAX + 64];
		char *argv[32];
		int a = 0;

		sim_dir(&p, k, dir, sizeof(dir));
		sim_file(&p, k, "out", out, sizeof(out));
		sim_file(&p, k, "err", errf, sizeof(errf));
		snprintf(nboards, sizeof(nboards), "%u", ns);
		snprintf(total, sizeof(total), "%lu", nt);
		snprintf(baud, sizeof(baud), "%u", o->baud);
		snprintf(seed, sizeof(seed), "%u", k + 1);
		/* Slot names come from the board names: one prefix per process. */
		snprintf(prefix, sizeof(prefix), "p%u-board", k);
		argv[a++] = (char *)o->simboard;
		argv[a++] = "--dir";
		argv[a++] = dir;
		argv[a++] = "--boards";
		argv[a++] = nboards;
		argv[a++] = "--name-prefix";
		argv[a++] = prefix;
		argv[a++] = "--baud";
		argv[a++] = baud;
		if (o->max_baud) {
			/* The starting rate and the one to switch to; both ends must agree. */
			snprintf(bauds, sizeof(bauds), "%u,%u", o->baud ? o->baud : 115200,
				 o->max_baud);
			argv[a++] = "--bauds";
			argv[a++] = bauds;
			argv[a++] = "--strict-baud";
		} else if (o->baud) {
			/* Only the rate under test: no board offers a faster one. */
			argv[a++] = "--bauds";
			argv[a++] = baud;
		}
		if (nt > ns) {
			argv[a++] = "--total";
			argv[a++] = total;
		}
		if (o->board_protocol) {
			snprintf(proto, sizeof(proto), "%u", o->board_protocol);
			argv[a++] = "--protocol";
			argv[a++] = proto;
		}
		if (o->board_frame) {
			snprintf(frame, sizeof(frame), "%u", o->board_frame);
			argv[a++] = "--max-frame";
			argv[a++] = frame;
		}
		if (o->turnaround_ms) {
			/* simboard's latency fault on every answer: it leaves late, what the
			 * board answers meanwhile (a request sent behind it) with it. */
			snprintf(slow, sizeof(slow), "latency=%u:100%%", o->turnaround_ms);
			argv[a++] = "--fault";
			argv[a++] = slow;
		}
		if (!o->fsync) {
			/* The boards' storage in memory: no file system call for any board. */
			argv[a++] = "--no-fsync";
			argv[a++] = "--store";
			argv[a++] = "memory";
		}
		if (res->stagger_ms) {
			snprintf(stagger, sizeof(stagger), "%u", res->stagger_ms);
			argv[a++] = "--stagger-ms";
			argv[a++] = stagger;
		}
		argv[a++] = "--seed";
		argv[a++] = seed;
		argv[a] = NULL;
		rc = spawn(argv, out, errf, &sim[k], err, errlen);
		if (rc < 0)
			goto out;
	}
	for (k = 0; k < res->sim_procs; k++) {
		sim_file(&p, k, "out", path, sizeof(path));
		sim_file(&p, k, "err", path2, sizeof(path2));
		rc = wait_ready(sim[k], path, path2, err, errlen);
		if (rc < 0) {
			sim[k] = -1;
			goto out;
		}
	}

	/* The station. */
	{
		char *argv[] = { (char *)o->station, "run", "-c", p.config, "--events", p.events,
				 "--boards", ntotal, "--no-view", NULL };

		rc = spawn(argv, p.run_out, p.run_err, &run, err, errlen);
	}
	if (rc < 0)
		goto out;
	memset(&st, 0, sizeof(st));
	st.pid = run;
	t0 = now_s();
	while (!exited) {
		pid_t r = wait4(run, &status, WNOHANG, &ru);

		if (r == run) {
			exited = 1;
			break;
		}
		if (!started && file_nonempty(p.events)) {
			/* The loop runs: what the station spent starting (PKI, HSM login,
			 * pool) is not the boards'. */
			started = 1;
			st_bench_sample(&st, 1);
			cpu0 = st_bench_sampler_cpu(&st);
			sims_schedstat(sim, res->sim_procs, &sim_cpu0, &sim_wait0);
			sim_cpu = sim_cpu0;
			sim_wait = sim_wait0;
			machine_ok = machine_ticks(&mbusy0, &mall0) == 0;
			mbusy = mbusy0;
			mall = mall0;
		} else if (started) {
			st_bench_sample(&st, 0);
			sims_schedstat(sim, res->sim_procs, &sim_cpu, &sim_wait);
			if (machine_ok && machine_ticks(&mbusy, &mall) != 0)
				machine_ok = 0;
		}
		for (k = 0; k < res->sim_procs; k++) {
			if (waitpid(sim[k], &status, WNOHANG) == sim[k])
				break;
		}
		if (k < res->sim_procs) {
			sim_file(&p, k, "err", path, sizeof(path));
			last_line(path, line, sizeof(line));
			snprintf(res->error, sizeof(res->error),
				 "simboard %u exited during the run: %s", k, line);
			sim[k] = -1;
			stop_child(run, SIGTERM, 30, &status, &ru);
			exited = 1;
			break;
		}
		if (!termed && o->timeout_s > 0 && now_s() - t0 > o->timeout_s) {
			snprintf(res->error, sizeof(res->error),
				 "the run took longer than %.0f s; stopped", o->timeout_s);
			termed = 1;
			stop_child(run, SIGTERM, 60, &status, &ru);
			exited = 1;
			break;
		}
		/* Often at first (short runs), then seldom: reading /proc takes CPU from the
		 * processes under test. */
		sleep_ms(now_s() - t0 < 1 ? SAMPLE_MS : 5 * SAMPLE_MS);
	}
	/* The station's exit ends the machine's window, as it ends its CPU time's. */
	if (machine_ok && machine_ticks(&mbusy, &mall) != 0)
		machine_ok = 0;
	res->elapsed_s = now_s() - t0;
	res->loadavg = loadavg1();
	res->machine_busy = machine_ok && mall > mall0 ? (mbusy - mbusy0) / (mall - mall0) : NAN;

	if (!(WIFEXITED(status) && (WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == 1)) &&
	    !res->error[0]) {
		last_line(p.run_err, line, sizeof(line));
		snprintf(res->error, sizeof(res->error), "station run %s: %s",
			 WIFEXITED(status) ? "could not run" : "was killed", line);
	}
	res->rss_peak_kib = ru.ru_maxrss;
	res->rss_per_slot_kib = (double)ru.ru_maxrss / slots;
	res->cpu_s = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
		     (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6 - cpu0;
	st_bench_sampler_threads(&st, &res->th);
	res->unsampled_cpu_s = res->cpu_s - res->th.loop_cpu_s - res->th.ledger_cpu_s -
			       res->th.workers_cpu_s - res->th.other_cpu_s;
	for (k = 0; k < res->sim_procs; k++) {
		if (sim[k] > 0)
			stop_child(sim[k], SIGTERM, 30, NULL, NULL);
		sim[k] = -1;
	}
	/* The bound again, the machine idle: a shared machine's speed drifts, and the run is
	 * weighed against the mean of the bounds measured just before and just after it. */
	{
		struct st_bench_bound after;
		char aerr[256];

		res->bound.cpu_before_s = res->bound.cpu_s;
		res->bound.cpu_after_s = NAN;
		if (measure_bound(o, &p, &after, aerr, sizeof(aerr)) == 0) {
			res->bound.cpu_after_s = after.cpu_s;
			res->bound.wall_s = (res->bound.wall_s + after.wall_s) / 2;
			res->bound.cpu_s = (res->bound.cpu_s + after.cpu_s) / 2;
			res->bound.verify_cpu_s = (res->bound.verify_cpu_s + after.verify_cpu_s) / 2;
			res->bound.n += after.n;
		}
	}
	read_pacing(&p, res);
	read_wire_minimum(&p, &res->wire_min);
	res->commits = read_commits(&p);

	if (file_nonempty(p.events)) {
		rc = read_events(p.events, res, err, errlen);
		if (rc < 0)
			goto out;
	}
	/* A run shorter than one sample ends before its events were seen: its figures then
	 * count the station's start too. */
	if (!started && !file_nonempty(p.events) && !res->error[0]) {
		last_line(p.run_err, line, sizeof(line));
		snprintf(res->error, sizeof(res->error), "the station wrote no events: %s", line);
	}

	/* Figures that need the counters. */
	if (res->passed) {
		double n = (double)res->passed;

		res->cpu_ms_per_board = res->cpu_s * 1000 / n;
		res->cpu_x_bound = res->cpu_s / n / res->bound.cpu_s;
		res->cpu_x_bound_pop = res->cpu_s / n /
				       (res->bound.cpu_s + res->bound.verify_cpu_s);
		res->commits_per_board = res->commits ? (double)res->commits / n : NAN;
		res->sim_cpu_ms_per_board = (sim_cpu - sim_cpu0) * 1000 / n;
		res->sim_wait_ms_per_board = (sim_wait - sim_wait0) * 1000 / n;
		res->sim_late_ms_per_board /= n;
	} else {
		res->cpu_ms_per_board = res->cpu_x_bound = res->cpu_x_bound_pop = NAN;
		res->commits_per_board = NAN;
		res->sim_cpu_ms_per_board = res->sim_wait_ms_per_board = NAN;
	}
	/* Every board put in took turns, those that failed too. */
	if (res->passed + res->failed) {
		res->sim_turns_per_board /= (double)(res->passed + res->failed);
		for (unsigned k = 0; k < ST_BENCH_TURNS; k++)
			res->sim_turns_after_per_board[k] /= (double)(res->passed + res->failed);
	} else {
		res->sim_turns_per_board = NAN;
		for (unsigned k = 0; k < ST_BENCH_TURNS; k++)
			res->sim_turns_after_per_board[k] = NAN;
	}
	res->wire_min_ratio = res->passed && res->wire_min.total > 0 ?
				      res->bytes_per_board / res->wire_min.total : NAN;
	if (o->baud && res->passed) {
		res->wire_s = res->bytes_per_board * 10 / o->baud;
		res->wire_bound_bph = slots * 3600 / res->wire_s;
		res->wire_ratio = res->bph_steady / res->wire_bound_bph;
		res->wire_ratio_span = res->bph / res->wire_bound_bph;
	}
	res->sign_bound_workers = res->sign_ratio_workers = NAN;
	if (o->signer.kind == ST_BENCH_SLOWHSM && o->signer.latency_ms > 0) {
		unsigned w = res->workers < o->signer.sessions ? res->workers : o->signer.sessions;

		res->sign_bound = o->signer.sessions * 1000 / o->signer.latency_ms;
		res->sign_bound_workers = w * 1000 / o->signer.latency_ms;
		res->sign_ratio_workers = res->sign_rate / res->sign_bound_workers;
	} else {
		unsigned w = res->workers ? res->workers : (unsigned)ncpu;

		res->sign_bound = (double)(w < (unsigned)ncpu ? w : (unsigned)ncpu) /
				  res->bound.wall_s;
	}
	res->sign_ratio = res->sign_rate / res->sign_bound;
	if (res->th.named && res->signed_ && res->th.workers_cpu_s > 0) {
		/* The workers check the CSR (its verification) before they sign: their CPU is
		 * the whole issuance. */
		res->issue_cpu_ms = res->th.workers_cpu_s / (double)res->signed_ * 1000;
		res->issue_ratio = res->bound.cpu_s * 1000 / res->issue_cpu_ms;
	} else {
		res->issue_cpu_ms = res->issue_ratio = NAN;
	}
	st_bench_limit(res, ncpu);
	res->ok = !res->error[0] && res->passed == boards && !res->failed;
	if (!res->error[0] && !res->ok)
		snprintf(res->error, sizeof(res->error),
			 "%lu of %lu boards passed, %lu failed (see %.*s)", res->passed, boards,
			 res->failed, 300, p.events);
	rc = 0;
out:
	if (run > 0 && !exited)
		stop_child(run, SIGTERM, 60, NULL, NULL);
	for (k = 0; k < res->sim_procs; k++) {
		if (sim[k] > 0)
			stop_child(sim[k], SIGTERM, 30, NULL, NULL);
	}
	rm_tree(p.boards);
	if (!o->keep && rc == 0 && res->ok)
		rm_tree(p.dir);
	return rc;
}

/* ---- Medians -------------------------------------------------------------------------- */

static double median_of(double *v, size_t n)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		if (!isnan(v[i]))
			v[k++] = v[i];
	}
	if (!k)
		return NAN;
	qsort(v, k, sizeof(*v), cmp_double);
	return k % 2 ? v[k / 2] : (v[k / 2 - 1] + v[k / 2]) / 2;
}

#define MED(field)                                                   \
	do {                                                         \
		for (size_t i_ = 0; i_ < n; i_++)                    \
			v[i_] = (double)r[i_].field;                 \
		out->field = median_of(v, n);                        \
	} while (0)

void st_bench_median(const struct st_bench_result *r, size_t n, struct st_bench_result *out)
{
	double v[64];

	*out = r[0];
	if (n > 64)
		n = 64;
	for (size_t i = 1; i < n; i++) {
		if (!r[i].ok) {
			out->ok = 0;
			if (!out->error[0])
				snprintf(out->error, sizeof(out->error), "%s", r[i].error);
		}
	}
	MED(elapsed_s);
	MED(span_s);
	MED(bph);
	MED(bph_steady);
	for (int p = 0; p < ST_PHASE_COUNT; p++) {
		MED(phase[p].p50);
		MED(phase[p].p95);
		MED(phase[p].p99);
		MED(phase[p].mean);
		MED(phase[p].max);
	}
	MED(bytes_per_board);
	MED(wire_s);
	MED(wire_bound_bph);
	MED(wire_ratio);
	MED(wire_ratio_span);
	MED(requests_per_board);
	MED(turns_per_board);
	MED(writes_per_board);
	MED(sign_window_s);
	MED(sign_rate);
	MED(sign_bound);
	MED(sign_ratio);
	MED(sign_bound_workers);
	MED(sign_ratio_workers);
	MED(bound.wall_s);
	MED(bound.cpu_s);
	MED(bound.verify_cpu_s);
	MED(bound.cpu_before_s);
	MED(bound.cpu_after_s);
	MED(cpu_s);
	MED(cpu_ms_per_board);
	MED(cpu_x_bound);
	MED(cpu_x_bound_pop);
	MED(unsampled_cpu_s);
	MED(commits_per_board);
	MED(wire_min_ratio);
	MED(th.loop_cpu_s);
	MED(th.ledger_cpu_s);
	MED(th.workers_cpu_s);
	MED(th.other_cpu_s);
	MED(th.loop_wait_s);
	MED(th.loop_runs);
	MED(th.ledger_runs);
	MED(th.workers_runs);
	MED(issue_cpu_ms);
	MED(issue_ratio);
	MED(sim_cpu_ms_per_board);
	MED(sim_wait_ms_per_board);
	MED(sim_late_ms);
	MED(sim_late_ms_per_board);
	MED(sim_turn_ms);
	MED(sim_turns_per_board);
	for (unsigned k = 0; k < ST_BENCH_TURNS; k++) {
		MED(sim_turn_after_ms[k]);
		MED(sim_turns_after_per_board[k]);
	}
	MED(loadavg);
	MED(machine_busy);
	MED(rss_peak_kib);
	MED(rss_per_slot_kib);
	MED(steady_window_s);
	MED(steady_tol_bph);
	st_bench_limit(out, sysconf(_SC_NPROCESSORS_ONLN));
}
