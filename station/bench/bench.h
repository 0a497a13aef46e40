/* `station bench`: throughput benchmark runs of the whole station against simulated boards.
 *
 * One run: a fresh development PKI (`station ca init`, key in a file or in SoftHSM2), a
 * fresh ledger, simboard serving the boards (a child process), and `station run` (another
 * child, so that its CPU time and peak RSS are its own). The bench watches both children
 * through /proc while they run, then reads the station's event stream and works out the
 * figures below. The crypto-only bound (verify + sign + verify per certificate, keys and
 * contexts prepared beforehand) is measured in the bench process just before each run, with
 * the same signer, so ratios compare like with like on a shared machine.
 *
 *   bench_bound.c   the crypto-only bound
 *   bench_proc.c    per-thread CPU of a process from /proc (also for tests/bench/bench_http)
 *   bench_run.c     one run: set-up, children, sampling, events, figures
 *   bench_wire.c    the protocol's minimum bytes for one board
 *   bench_report.c  text table, JSON, gnuplot plot
 *   cmd_bench.c     the command line and the order of runs
 *
 * Everything here runs on the calling thread (the bound starts threads of its own). */
#ifndef ST_BENCH_H
#define ST_BENCH_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "events.h"
#include "signer.h"

#define ST_BENCH_MAX_SLOTS 1024

enum st_bench_signer_kind {
	ST_BENCH_FILE,    /* CA key in a PEM file */
	ST_BENCH_SOFTHSM, /* CA key in SoftHSM2 through the pkcs11 signer */
	ST_BENCH_SLOWHSM, /* SoftHSM2 behind fixtures/slowhsm: latency L, at most S sessions */
};

struct st_bench_signer {
	enum st_bench_signer_kind kind;
	double latency_ms;  /* slowhsm: L */
	unsigned sessions;  /* slowhsm: S (sessions the emulated HSM allows) */
	char name[64];      /* as given: "file", "softhsm", "slowhsm:L=20,S=4" */
};

/* Parses --signer: file | softhsm | slowhsm:L=MS,S=N. Returns 0 or ST_E_USAGE with a
 * message. */
int st_bench_signer_parse(const char *text, struct st_bench_signer *out, char *err,
			  size_t errlen);

/* simboard processes a run may spread its slots over. */
#define ST_BENCH_SIM_MAX 16

/* What a board said before a turn (simboard's turn statistics, in this order). */
enum st_bench_turn {
	ST_BENCH_TURN_BOOT,
	ST_BENCH_TURN_CSR,
	ST_BENCH_TURN_WRITE,
	ST_BENCH_TURN_VERIFY,
	ST_BENCH_TURN_OTHER,
	ST_BENCH_TURNS,
};

struct st_bench_opts {
	unsigned slots[32];        /* --slots, in the order given */
	size_t nslots;
	unsigned long boards;      /* --boards: boards per run (>= slots); 0: see per_slot */
	unsigned per_slot;         /* --boards-per-slot: boards = per_slot x slots (default 1) */
	unsigned baud;             /* --baud; 0: unpaced */
	struct st_bench_signer signer;
	unsigned workers;          /* pool.workers; 0: the station's default (or S for slowhsm) */
	unsigned batch;            /* pool.batch_max; 0: the station's default */
	int linger;                /* pool.batch_linger_ms; -1: the station's default */
	unsigned rounds;           /* runs per configuration (medians are reported) */
	unsigned bound_n;          /* certificates in the bound measurement; 0: automatic */
	double timeout_s;          /* a run that takes longer is stopped and reported failed */
	int fsync;                 /* 1: simboard fsyncs like a real board's flash (default 0) */
	int stagger_ms;            /* boards power on at random within this; -1: automatic */
	unsigned sim_procs;        /* simboard processes sharing the slots; 0: one per 128 */
	unsigned max_baud;         /* boards offer it and slots may switch to it (BAUD); 0: no */
	unsigned board_protocol;   /* the newest protocol version the boards speak; 0: simboard's */
	unsigned board_frame;      /* the largest frame the boards accept; 0: simboard's */
	unsigned turnaround_ms;    /* every answer leaves a board this late (a USB-serial
				    * adapter's latency timer); 0: none */
	const char *json_path;
	const char *plot_path;
	const char *dir;           /* work directory; NULL: a temporary one */
	int keep;                  /* keep the work directory */
	int quiet;                 /* no progress lines */
	double target_bph;         /* --target: slots needed for this many boards/hour; 0: no */
	char station[PATH_MAX];    /* the station binary (this program) */
	char simboard[PATH_MAX];
	char slowhsm[PATH_MAX];    /* libslowhsm.so */
	char softhsm[PATH_MAX];    /* the real PKCS#11 module behind softhsm and slowhsm */
	char workdir[PATH_MAX];    /* resolved work directory */
	char boarddir[PATH_MAX];   /* where simboard keeps the boards (tmpfs when there is one) */
};

/* The crypto-only bound of one certificate, measured on one thread. */
struct st_bench_bound {
	unsigned n;             /* certificates */
	double wall_s;          /* per certificate, wall clock */
	double cpu_s;           /* per certificate, the thread's CPU time */
	double verify_cpu_s;    /* of cpu_s, one ECDSA verification (the CSR's self-signature) */
	/* A run's: the bound is measured before it and again after it, and the figures above
	 * are the means (a shared machine's speed drifts); these are the two CPU times. NAN
	 * after: the second measurement failed, and the figures are the first's. */
	double cpu_before_s, cpu_after_s;
};

/* Measures n x (verify a device signature, sign a digest with the signer, verify that
 * signature with the CA's public key) on the calling thread, with one signer session.
 * Returns 0 or a negative ST_E_* code with a message. */
int st_bench_measure_bound(struct drv_signer *signer, unsigned n, struct st_bench_bound *out,
			   char *err, size_t errlen);

/* Nearest-rank percentiles of one phase over the passed boards, in ms. */
struct st_bench_pct {
	size_t n;
	double p50, p95, p99, mean, max;
};

/* Per-thread CPU of the station while boards ran (from /proc/PID/task/TID/schedstat). */
struct st_bench_threads {
	double loop_cpu_s;      /* the event loop (main thread) */
	double ledger_cpu_s;    /* "st-ledger" */
	double workers_cpu_s;   /* "st-sign-N", all of them */
	double other_cpu_s;     /* any other thread */
	double loop_wait_s;     /* the loop thread's time runnable but waiting for a CPU */
	/* Times each was put on a CPU (schedstat's timeslices): its wake-ups, and its returns
	 * after a preemption. Counts: steadier than CPU time on a shared machine, though the
	 * preemptions grow with its load. */
	double loop_runs, ledger_runs, workers_runs;
	int named;              /* 1: the pool's threads were found by name */
};

/* Per-thread CPU of a process from /proc/PID/task/TID/schedstat (bench_proc.c). */
#define ST_BENCH_MAX_TASKS 64

struct st_bench_task {
	int tid;
	char comm[20];
	double cpu0, cpu;   /* on-CPU seconds at the start, at the last sample */
	double wait0, wait; /* seconds runnable but waiting for a CPU */
	double runs0, runs; /* times put on a CPU */
};

struct st_bench_sampler {
	pid_t pid;          /* the process; its main thread runs the event loop */
	struct st_bench_task tasks[ST_BENCH_MAX_TASKS];
	size_t ntasks;
};

/* Reads every thread of s->pid; a thread seen for the first time starts from its values now
 * when at_start, else from zero (it was born after the start). A thread that ended keeps
 * its last values. */
void st_bench_sample(struct st_bench_sampler *s, int at_start);
/* Makes the last values the new start of every thread seen (a new round). */
void st_bench_sampler_restart(struct st_bench_sampler *s);
/* The process's CPU seconds summed over its threads at the last sample (a start mark). */
double st_bench_sampler_cpu(const struct st_bench_sampler *s);
/* CPU since the start by thread: the main thread (the loop), "st-ledger", "st-sign-N" (the
 * workers) and any other. */
void st_bench_sampler_threads(const struct st_bench_sampler *s, struct st_bench_threads *th);
/* A small file's text, NUL-terminated, at most cap - 1 bytes. Returns 0 or -1. */
int st_bench_read_file(const char *path, char *buf, size_t cap);
/* A /proc schedstat file: on-CPU and runnable-waiting seconds, and the times put on a CPU
 * (runs may be NULL). Returns 0 or -1. */
int st_bench_read_schedstat(const char *path, double *cpu, double *wait, double *runs);

/* The fewest bytes one board's provisioning can take on the wire (bench_wire.c): every
 * payload the board must receive or send once, in the densest encoding the line can carry,
 * in the fewest frames. */
struct st_bench_wire_min {
	double csr;      /* the CSR's DER, base64 */
	double certs;    /* every distinct certificate the board's files hold (its own, the CA
			  * chain, the root), DER in base64, each once however many files hold
			  * it */
	double text;     /* the files' other bytes, base64 or escaped text, whichever is
			  * shorter */
	double pop;      /* the VERIFY nonce as sent and a DER P-256 signature (72 bytes at
			  * most), base64 */
	double framing;  /* marker, kind, seq, type, CRC and line end of one request and one
			  * answer per command (HELLO, CSR, the files' WRITE, DONE: COMMIT and
			  * VERIFY ride on the last WRITE), more where a payload needs more than one
			  * frame of the line's maximum */
	double total;    /* the sum; 0 when no provisioned board was found */
	unsigned files;  /* files the board holds */
	unsigned frames; /* frames counted in framing */
};

/* Works out the minimum from a provisioned simulated board's directory (its csr.der and its
 * installed files, as simboard keeps them) and the nonce length the station sends. Returns 0,
 * or -1 when the directory does not hold a provisioned board (*out zeroed). */
int st_bench_wire_minimum(const char *board_dir, size_t nonce_len, struct st_bench_wire_min *out);

/* The VERIFY nonce `station run` sends (station/line/slot_int.h), for the wire minimum. */
#define ST_BENCH_NONCE_LEN 32

/* What may have limited a run (st_bench_limit). */
enum st_bench_limit_kind {
	ST_BENCH_LIM_WIRE,      /* steady boards/h over the wire bound */
	ST_BENCH_LIM_SIGN,      /* certs/s while CSRs waited over the signing bound */
	ST_BENCH_LIM_CPU,       /* the station's loop thread busy, or all its CPUs */
	ST_BENCH_LIM_SIM,       /* the simulated boards' processes busy */
	ST_BENCH_LIM_LEDGER,    /* the ledger thread busy */
	ST_BENCH_LIM_MACHINE,   /* the machine's CPUs busy: the station, simboard and the
				 * kernel's PTY work share them */
	ST_BENCH_LIM_COUNT
};

/* One run's figures. Doubles that do not apply are NAN (null in JSON). */
struct st_bench_result {
	/* Configuration. */
	unsigned slots;
	unsigned long boards;
	unsigned baud;
	unsigned workers;
	unsigned batch;
	int linger;
	char signer[64];
	unsigned round;

	/* Outcome. */
	int ok;                 /* the run finished and every board was accounted for */
	char error[512];        /* why not */
	unsigned long passed, failed, abandoned, reused, signed_;
	double elapsed_s;       /* station start to exit */
	double span_s;          /* first HELLO to last outcome */

	/* Throughput and latency. */
	double bph;             /* boards/hour over the span (what the line saw) */
	double bph_steady;      /* boards that finished while every slot was busy (from the
				 * last slot's first HELLO to the first slot's last outcome)
				 * over that window; the span's rate when the window held fewer
				 * boards than slots: the line without ramp-up and tail */
	double steady_window_s; /* the window bph_steady was measured over */
	double steady_tol_bph;  /* its tolerance: one board per slot over the window (a board
				 * in flight when the window opened may finish inside it); 0 for
				 * the span's rate, which no bound can be beaten over */
	struct st_bench_pct phase[ST_PHASE_COUNT];

	/* Wire bound (paced runs). */
	double bytes_per_board; /* tx + rx, mean over passed boards */
	double wire_s;          /* bytes_per_board x 10 / baud */
	double wire_bound_bph;  /* slots x 3600 / wire_s */
	double wire_ratio;      /* bph_steady / wire_bound_bph */
	double wire_ratio_span; /* bph / wire_bound_bph */
	struct st_bench_wire_min wire_min; /* the protocol's minimum for one board */
	double wire_min_ratio;  /* bytes_per_board / wire_min.total */
	/* The station's side of a board's exchange, means over passed boards (pass events): its
	 * requests, the turns they took, and its writes to the port. */
	double requests_per_board, turns_per_board, writes_per_board;

	/* Signing. */
	double sign_window_s;   /* time some CSR was waiting for or under signing */
	double sign_rate;       /* signed_ / sign_window_s */
	double sign_bound;      /* certs/s: crypto-only bound x min(workers, CPUs), or S/L */
	double sign_ratio;      /* sign_rate / sign_bound */
	double sign_bound_workers; /* slowhsm: what the workers' sessions can sign, W / L */
	double sign_ratio_workers; /* sign_rate / sign_bound_workers */
	struct st_bench_bound bound;

	/* CPU and memory. */
	double cpu_s;           /* the station's CPU time from its first event to its exit */
	double cpu_ms_per_board;
	double cpu_x_bound;     /* cpu per board / bound.cpu_s */
	double cpu_x_bound_pop; /* cpu per board / (bound.cpu_s + bound.verify_cpu_s): the bound
				 * with the board's proof-of-possession signature counted as one
				 * more verify, which the station must do for every board */
	struct st_bench_threads th;
	double unsampled_cpu_s; /* cpu_s less the threads' sampled CPU: what ran after the last
				 * sample (the shutdown) or in threads past ST_BENCH_MAX_TASKS */
	double issue_cpu_ms;    /* per signed certificate: workers' CPU + one verification */
	double issue_ratio;     /* bound.cpu_s / issue_cpu: issuance per core vs the bound */
	double sim_cpu_ms_per_board; /* simboard's CPU per board (the simulated boards) */
	double sim_wait_ms_per_board; /* simboard's time runnable but waiting for a CPU */
	double sim_late_ms;     /* paced: how late simboard's pacing timers fired, mean */
	double sim_late_ms_per_board; /* the answers' share, per board: time the simulation,
				       * not the line or the station, added to each board (a
				       * late request is made good on its answer) */
	unsigned stagger_ms;    /* the boards powered on at random within this */
	unsigned sim_procs;     /* simboard processes that served the slots */
	unsigned max_baud;      /* --max-baud: the slots could switch to it; 0: no switching */
	double sim_turn_ms;     /* paced or not: from a board's answer's last byte to the
				 * station's next bytes, seen from the boards, mean */
	double sim_turns_per_board; /* those turns over the boards put in (passed or failed) */
	/* The same by what the board said before the turn (enum st_bench_turn): mean ms
	 * (0 with none) and turns a board. */
	double sim_turn_after_ms[ST_BENCH_TURNS];
	double sim_turns_after_per_board[ST_BENCH_TURNS];
	double loadavg;         /* the machine's 1-minute load average after the run */
	double machine_busy;    /* the machine's CPUs busy from the station's first event to
				 * its exit (/proc/stat: every process's and the kernel's
				 * work over CPUs x time); NAN: not read */
	unsigned long commits;  /* ledger commits (one fsync each), from the pool's last words
				 * in the station's log; 0 when it did not say */
	double commits_per_board; /* commits / passed */
	long rss_peak_kib;      /* the station's peak RSS (ru_maxrss) */
	double rss_per_slot_kib; /* rss_peak_kib / slots */

	/* What limited the run (st_bench_limit): each candidate's use of its bound over the
	 * span, and the one closest to 1. */
	double ratio[ST_BENCH_LIM_COUNT]; /* by enum st_bench_limit_kind; NAN: does not apply */
	int limit;              /* enum st_bench_limit_kind; -1: no figures */
	double machine_share;   /* of machine_busy, the station's and simboard's CPU: below 0.5
				 * the machine's CPUs are not a candidate (st_bench_limit) */
	char limit_reason[200];
};

/* The candidates' names ("wire", "signing", "station-cpu", "simboard-cpu", "ledger",
 * "machine-cpu"). */
const char *st_bench_limit_name(int kind);

/* Fills r->ratio, r->limit and r->limit_reason from the figures already in *r: the bound
 * whose ratio is closest to 1 limited the run. ncpu: the CPUs online. */
void st_bench_limit(struct st_bench_result *r, long ncpu);

/* Slots needed for target boards/hour from the medians' per-slot figures (the run with the
 * most slots that passed): 0 when no run passed, -1 when a bound that does not grow with
 * slots (signing) is below the target. *from: the run used. */
long st_bench_target_slots(const struct st_bench_result *med, size_t n, double target,
			   const struct st_bench_result **from);

/* Runs one configuration (round counts from 0) and fills *res. Returns 0 when the run
 * produced figures (res->ok says whether every board passed), or a negative ST_E_* code
 * with a message when it could not be carried out at all. */
int st_bench_run(const struct st_bench_opts *o, unsigned slots, unsigned long boards,
		 unsigned round, struct st_bench_result *res, char *err, size_t errlen);

/* Field-wise medians of n results of one configuration into *out (the configuration and
 * counters of the first; ok only when all were). */
void st_bench_median(const struct st_bench_result *r, size_t n, struct st_bench_result *out);

/* Reporting (bench_report.c). */
void st_bench_print_header(const struct st_bench_opts *o);
void st_bench_print_result(const struct st_bench_result *r);
void st_bench_print_footer(const struct st_bench_opts *o, const struct st_bench_result *med,
			   size_t n);
/* The JSON document of the whole bench: options, every round and the medians. New
 * reference. */
json_t *st_bench_json(const struct st_bench_opts *o, const struct st_bench_result *rounds,
		      size_t nrounds, const struct st_bench_result *med, size_t nmed);
/* Writes a gnuplot plot (PNG or SVG by the file's extension) of throughput and latency
 * against slots. Returns 0 or a negative ST_E_* code with a message. */
int st_bench_plot(const struct st_bench_opts *o, const struct st_bench_result *med, size_t n,
		  const char *path, char *err, size_t errlen);

/* Marginal RSS per slot between the smallest and the largest slot count (KiB), NAN when
 * fewer than two slot counts ran. */
double st_bench_rss_marginal(const struct st_bench_result *med, size_t n);

#endif
