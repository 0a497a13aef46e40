/* `station bench`: throughput benchmark runs of the station against simulated boards (see
 * bench.h for what one run does and bench_report.c for what it prints). */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"
#include "commands.h"
#include "err.h"
#include "log.h"
#include "proto.h"

#define DEFAULT_SOFTHSM "/usr/lib/softhsm/libsofthsm2.so"

static void bench_usage(FILE *out)
{
	fprintf(out,
		"usage: station bench [--slots LIST] [--boards N | --boards-per-slot K]\n"
		"                     [--baud RATE] [--signer file|softhsm|slowhsm:L=MS,S=N]\n"
		"                     [--max-baud RATE] [--board-protocol N] [--board-frame N]\n"
		"                     [--turnaround MS]\n"
		"                     [--workers N] [--batch N] [--linger MS]\n"
		"                     [--rounds R] [--bound-n N] [--timeout S] [--fsync]\n"
		"                     [--stagger MS] [--sim-procs N] [--target BOARDS_PER_HOUR]\n"
		"                     [--json FILE] [--plot FILE.png|FILE.svg] [--dir DIR] [--keep]\n"
		"                     [--simboard PATH] [--slowhsm PATH] [--softhsm-module PATH]\n"
		"                     [-q|--quiet] [-h|--help]\n"
		"\n"
		"Runs simulated boards (simboard) and the station (`station run`) together and\n"
		"measures the station, once per slot count (and round). Each run makes its own\n"
		"development PKI and ledger. Per run it reports:\n"
		"  - boards/hour: steady (boards finished while every slot was busy, over that\n"
		"    window, with its tolerance: one board per slot) and over the whole span;\n"
		"    what limited the run (wire, signing, station CPU, simboard CPU, ledger, or\n"
		"    the machine's CPUs, which the station, simboard and the kernel share, when\n"
		"    the station and simboard did at least half of their busy time: the one\n"
		"    whose use of its bound is closest to 1); per-phase latency p50/p95/p99\n"
		"    (hello, csr, queue, sign, record, write, verify, total) from the events;\n"
		"  - the wire bound: bytes each board exchanged (both ways) x 10 / baud = seconds\n"
		"    per board; with S slots the bound is S x 3600 / that, boards/hour; and the\n"
		"    ratio of the steady throughput to it;\n"
		"  - signing: certificates/s while CSRs waited for or were under signing, and the\n"
		"    ratio to the crypto-only bound measured with the same signer just before the\n"
		"    run and again just after it, the mean of the two (verify + sign + verify per\n"
		"    certificate on one thread) x min(workers, CPUs), or S/L for an emulated slow\n"
		"    HSM; every ratio to the bound below uses that mean;\n"
		"  - the station's CPU per board as a multiple of one certificate's crypto-only\n"
		"    CPU, and of that plus one verify (the board's proof-of-possession signature,\n"
		"    which the station checks for every board), with the loop, ledger and signing\n"
		"    threads' shares and the times each was put on a CPU (wake-ups and returns\n"
		"    from preemption: counts, steadier than CPU time on a shared machine);\n"
		"    issuance CPU per certificate, the time the loop waited for a CPU, simboard's\n"
		"    CPU per board; the ledger's commits (fsyncs) per board; how busy the\n"
		"    machine's CPUs were over the run (/proc/stat: every process and the kernel);\n"
		"  - bytes per board over the protocol's minimum: the CSR, every distinct\n"
		"    certificate the board's files hold and their other bytes, each once, in the\n"
		"    densest encoding the line carries, the nonce and signature, and the framing\n"
		"    of one request and one answer per command, COMMIT and VERIFY riding on the\n"
		"    last WRITE (from a board the run provisioned);\n"
		"  - the station's requests a board, the turns they took (a request sent behind\n"
		"    another is not one) and its writes to the port (from the pass events);\n"
		"  - the boards' waits for the station's next bytes (simboard's turns), in all\n"
		"    and by what the board said before: a BOOT, a CSR (the station checks it and\n"
		"    records the intent before the first file), a WRITE's answer, the proof of\n"
		"    possession (checked before DONE), anything else;\n"
		"  - peak RSS of the station and RSS per slot (and per added slot across runs).\n"
		"\n"
		"  --slots LIST        slot counts, 1..1024, comma separated (default 16)\n"
		"  --boards N          boards per run, at least the slot count: a finished board\n"
		"                      is swapped for a new one until N were provisioned\n"
		"  --boards-per-slot K boards per run = K x slots (default 1)\n"
		"  --baud RATE         pace the boards' serial lines at RATE (8N1), e.g. 115200\n"
		"                      (the default); 0: unpaced (PTY speed)\n"
		"  --signer SPEC       file (CA key in a PEM file, the default), softhsm (SoftHSM2\n"
		"                      through PKCS#11), or slowhsm:L=MS,S=N (SoftHSM2 behind\n"
		"                      fixtures/slowhsm: every signature takes MS ms, at most N\n"
		"                      sessions open; the workers default to N, one session\n"
		"                      each)\n"
		"  --max-baud RATE     the boards also offer RATE and the slots may switch to it\n"
		"                      (max_baud, the protocol's BAUD); the wire bound stays the\n"
		"                      starting rate's, so the ratio shows the speed-up\n"
		"  --board-protocol N  the boards speak protocol versions 1 to N only (default:\n"
		"                      the newest, 8), to compare a line of older boards\n"
		"  --board-frame N     the largest frame the boards accept, 512..4096 (default\n"
		"                      simboard's, 1024); with 4096 a board of version 6 or\n"
		"                      later takes two files a WRITE\n"
		"  --turnaround MS     every answer leaves its board MS ms late, as a USB-serial\n"
		"                      adapter's latency timer holds it (16 ms on FTDI's, 1 ms\n"
		"                      in the low-latency mode the station asks serial ports\n"
		"                      for), and what the board answers meanwhile leaves\n"
		"                      with it; the wire bound counts bytes only, so the\n"
		"                      ratio shows what the round trips cost\n"
		"  --workers N         signing workers (pool.workers; default: the CPUs)\n"
		"  --batch N           pool.batch_max (default: the station's, 32)\n"
		"  --linger MS         pool.batch_linger_ms (default: the station's, 5)\n"
		"  --rounds R          runs per slot count, interleaved; medians are reported\n"
		"                      (default 1)\n"
		"  --bound-n N         certificates in each bound measurement (default 2000; about\n"
		"                      one second's worth with slowhsm)\n"
		"  --timeout S         stop a run that takes longer (default 900)\n"
		"  --fsync             simulated boards keep their files on disk and fsync them\n"
		"                      (default: in memory; see below)\n"
		"  --stagger MS        boards power on at random moments within MS ms (default:\n"
		"                      about one board's wire time when paced, 0 unpaced; see below)\n"
		"  --sim-procs N       simboard processes sharing the slots, 1..16 (default: one\n"
		"                      per 128 slots, at most twice the CPUs; see below)\n"
		"  --target BPH        the slots needed for BPH boards/hour, from the per-slot\n"
		"                      throughput of the run with the most slots (or: out of\n"
		"                      reach when the signing bound is below it)\n"
		"  --json FILE         write every round and the medians as JSON\n"
		"  --plot FILE         draw throughput and latency against slots with gnuplot, PNG\n"
		"                      or SVG by the extension (with two or more slot counts)\n"
		"  --dir DIR           work directory (default: a new one under $TMPDIR or /tmp);\n"
		"                      removed at the end unless --keep or a run failed\n"
		"  --keep              keep the work directory (PKI, ledger, events, logs)\n"
		"  --simboard PATH     simboard binary (default: $STATION_SIMBOARD, the build tree\n"
		"                      beside this binary, or simboard on PATH)\n"
		"  --slowhsm PATH      libslowhsm.so (default: $STATION_SLOWHSM or the build tree)\n"
		"  --softhsm-module P  the real PKCS#11 module (default %s)\n"
		"  -q, --quiet         print only the summary\n"
		"  -h, --help          this text\n"
		"\n"
		"simboard runs with --store memory unless --fsync: a real board writes its few\n"
		"files to its own flash in parallel with every other board, while one simboard\n"
		"process doing the file work of hundreds of boards (in /dev/shm when it exists)\n"
		"would compete with the station for the same CPUs. Each fixture's last board is\n"
		"written out when simboard ends (the protocol's minimum is read from one). The\n"
		"station's ledger stays on the work directory's disk with its fsyncs. What a\n"
		"board still costs in time (making its key and CSR) counts against the wire\n"
		"ratio, as on a real line.\n"
		"A simboard process serves each board's turns one after another on one loop; past\n"
		"some hundred boards its own queue would delay every answer (real boards answer\n"
		"in parallel), so the slots are shared out over several processes by default, as\n"
		"many as twice the CPUs (more would only take turns on them).\n"
		"The boards' view of the station's turns (from an answer's last byte to the next\n"
		"request's first) is reported with simboard's own lateness, with the turns a\n"
		"board and the time they add to it (paced: as a share of its wire time, the part\n"
		"of the gap to the wire bound that is not bytes).\n"
		"Boards put in all in the same millisecond run in lockstep: every turn of the\n"
		"conversation arrives for all slots at once, and each waits for the others' share\n"
		"of the station's and simboard's loops. A line fills its fixtures one after\n"
		"another, so paced runs stagger the boards' power-on by default; --stagger 0\n"
		"measures the lockstep case.\n"
		"\n"
		"Benchmarks are not tests: on a shared machine compare ratios measured in one run,\n"
		"or medians of several rounds. Exit status: 0 when every board of every run\n"
		"passed, 1 otherwise, 2 on a bad command line.\n",
		DEFAULT_SOFTHSM);
}

int st_bench_signer_parse(const char *text, struct st_bench_signer *out, char *err,
			  size_t errlen)
{
	memset(out, 0, sizeof(*out));
	snprintf(out->name, sizeof(out->name), "%s", text);
	if (strcmp(text, "file") == 0) {
		out->kind = ST_BENCH_FILE;
		return 0;
	}
	if (strcmp(text, "softhsm") == 0) {
		out->kind = ST_BENCH_SOFTHSM;
		return 0;
	}
	if (strncmp(text, "slowhsm:", 8) == 0) {
		char buf[64], *tok, *save = NULL, *end;
		int have_l = 0, have_s = 0;

		out->kind = ST_BENCH_SLOWHSM;
		snprintf(buf, sizeof(buf), "%s", text + 8);
		for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
			if (strncmp(tok, "L=", 2) == 0) {
				out->latency_ms = strtod(tok + 2, &end);
				if (!tok[2] || *end || !(out->latency_ms >= 0) ||
				    out->latency_ms > 60000)
					goto bad;
				have_l = 1;
			} else if (strncmp(tok, "S=", 2) == 0) {
				unsigned long v = strtoul(tok + 2, &end, 10);

				if (!tok[2] || *end || tok[2] == '-' || v < 1 || v > 256)
					goto bad;
				out->sessions = (unsigned)v;
				have_s = 1;
			} else {
				goto bad;
			}
		}
		if (!have_l || !have_s)
			goto bad;
		return 0;
	}
bad:
	return st_errf(err, errlen, ST_E_USAGE,
		       "--signer '%s': expected file, softhsm or slowhsm:L=MS,S=N (latency "
		       "0..60000 ms, sessions 1..256), e.g. slowhsm:L=20,S=4",
		       text);
}

static int parse_slots(const char *text, struct st_bench_opts *o)
{
	char buf[512], *tok, *save = NULL, *end;

	snprintf(buf, sizeof(buf), "%s", text);
	o->nslots = 0;
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		unsigned long v = strtoul(tok, &end, 10);

		if (!*tok || *end || tok[0] == '-' || v < 1 || v > ST_BENCH_MAX_SLOTS ||
		    o->nslots == sizeof(o->slots) / sizeof(o->slots[0]))
			return -1;
		o->slots[o->nslots++] = (unsigned)v;
	}
	return o->nslots ? 0 : -1;
}

static int parse_ulong(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
	char *end;

	errno = 0;
	*out = strtoul(s, &end, 10);
	return *s && *s != '-' && !*end && !errno && *out >= min && *out <= max ? 0 : -1;
}

/* Where a helper program lives: the option, the environment, the build tree beside this
 * binary (build/station/station -> build/<rel>), or (for programs) PATH. */
static int find_helper(char *out, size_t cap, const char *given, const char *env,
		       const char *exe, const char *rel, const char *path_name)
{
	const char *v = given ? given : getenv(env);
	char dir[PATH_MAX], *slash;

	if (v && *v) {
		snprintf(out, cap, "%s", v);
		return access(out, R_OK) == 0 ? 0 : -1;
	}
	snprintf(dir, sizeof(dir), "%s", exe);
	slash = strrchr(dir, '/');
	if (slash) {
		*slash = 0;
		if (snprintf(out, cap, "%s/../%s", dir, rel) < (int)cap && access(out, R_OK) == 0) {
			char real[PATH_MAX];

			if (realpath(out, real))
				snprintf(out, cap, "%s", real);
			return 0;
		}
	}
	if (path_name) {
		const char *path = getenv("PATH");
		char buf[4096], *tok, *save = NULL;

		snprintf(buf, sizeof(buf), "%s", path ? path : "/usr/bin:/bin");
		for (tok = strtok_r(buf, ":", &save); tok; tok = strtok_r(NULL, ":", &save)) {
			if (snprintf(out, cap, "%s/%s", tok, path_name) < (int)cap &&
			    access(out, X_OK) == 0)
				return 0;
		}
	}
	out[0] = 0;
	return -1;
}

static int make_workdir(struct st_bench_opts *o, char *err, size_t errlen)
{
	const char *base = o->dir;
	char tmpl[PATH_MAX];
	struct stat st;

	if (!base) {
		base = getenv("TMPDIR");
		if (!base || !*base)
			base = "/tmp";
	} else if (mkdir(base, 0700) != 0 && errno != EEXIST) {
		return st_errf(err, errlen, ST_E_IO, "--dir %s: %s", base, strerror(errno));
	}
	if (snprintf(tmpl, sizeof(tmpl), "%s/station-bench-XXXXXX", base) >= (int)sizeof(tmpl) ||
	    !mkdtemp(tmpl))
		return st_errf(err, errlen, ST_E_IO, "cannot make a work directory in %s: %s",
			       base, strerror(errno));
	if (!realpath(tmpl, o->workdir))
		return st_errf(err, errlen, ST_E_IO, "%s: %s", tmpl, strerror(errno));
	/* The boards' flash in memory when the machine has a tmpfs for it. */
	if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0) {
		snprintf(tmpl, sizeof(tmpl), "/dev/shm/station-bench-boards-XXXXXX");
		if (mkdtemp(tmpl)) {
			snprintf(o->boarddir, sizeof(o->boarddir), "%s", tmpl);
			return 0;
		}
	}
	if (snprintf(o->boarddir, sizeof(o->boarddir), "%s/boards", o->workdir) >=
		    (int)sizeof(o->boarddir) ||
	    mkdir(o->boarddir, 0700) != 0)
		return st_errf(err, errlen, ST_E_IO, "%s/boards: cannot create it", o->workdir);
	return 0;
}

static void remove_dir(const char *path)
{
	char cmd[PATH_MAX + 32];

	/* Paths made by mkdtemp: no quote in them. */
	if (strchr(path, '\'') || snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path) >= (int)sizeof(cmd))
		return;
	if (system(cmd) != 0)
		st_warn("could not remove %s", path);
}

static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig)
{
	(void)sig;
	interrupted = 1;
}

int st_cmd_bench(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "slots", required_argument, NULL, 's' },
		{ "boards", required_argument, NULL, 'b' },
		{ "boards-per-slot", required_argument, NULL, 'k' },
		{ "baud", required_argument, NULL, 'B' },
		{ "signer", required_argument, NULL, 'S' },
		{ "workers", required_argument, NULL, 'w' },
		{ "batch", required_argument, NULL, 'm' },
		{ "linger", required_argument, NULL, 'l' },
		{ "rounds", required_argument, NULL, 'r' },
		{ "bound-n", required_argument, NULL, 'n' },
		{ "timeout", required_argument, NULL, 't' },
		{ "fsync", no_argument, NULL, 'F' },
		{ "stagger", required_argument, NULL, 'g' },
		{ "sim-procs", required_argument, NULL, 'P' },
		{ "max-baud", required_argument, NULL, 'M' },
		{ "board-protocol", required_argument, NULL, 'V' },
		{ "turnaround", required_argument, NULL, 'A' },
		{ "board-frame", required_argument, NULL, 'R' },
		{ "target", required_argument, NULL, 'T' },
		{ "json", required_argument, NULL, 'j' },
		{ "plot", required_argument, NULL, 'p' },
		{ "dir", required_argument, NULL, 'd' },
		{ "keep", no_argument, NULL, 'K' },
		{ "simboard", required_argument, NULL, 'X' },
		{ "slowhsm", required_argument, NULL, 'Y' },
		{ "softhsm-module", required_argument, NULL, 'Z' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static struct st_bench_opts o;
	struct st_bench_result *rounds = NULL, *med = NULL;
	const char *simboard = NULL, *slowhsm = NULL, *softhsm = NULL;
	char err[1024], exe[PATH_MAX];
	unsigned long v;
	size_t i;
	ssize_t n;
	int c, rc = 1, all_ok = 1;
	json_t *doc = NULL;

	memset(&o, 0, sizeof(o));
	o.slots[0] = 16;
	o.nslots = 1;
	o.per_slot = 1;
	o.baud = 115200;
	o.linger = -1;
	o.rounds = 1;
	o.timeout_s = 900;
	o.stagger_ms = -1;
	st_bench_signer_parse("file", &o.signer, err, sizeof(err));
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":qh", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			if (parse_slots(optarg, &o) != 0) {
				st_err("--slots '%s': expected slot counts 1..%d, comma separated "
				       "(at most 32), e.g. 1,16,64,256",
				       optarg, ST_BENCH_MAX_SLOTS);
				return 2;
			}
			break;
		case 'b':
			if (parse_ulong(optarg, 1, 100000000UL, &v) != 0) {
				st_err("--boards '%s': expected a number of boards, 1 or more", optarg);
				return 2;
			}
			o.boards = v;
			break;
		case 'k':
			if (parse_ulong(optarg, 1, 100000, &v) != 0) {
				st_err("--boards-per-slot '%s': expected 1..100000", optarg);
				return 2;
			}
			o.per_slot = (unsigned)v;
			break;
		case 'B':
			if (parse_ulong(optarg, 0, 16000000, &v) != 0 || (v && v < 300)) {
				st_err("--baud '%s': expected 0 (unpaced) or a rate of 300..16000000",
				       optarg);
				return 2;
			}
			o.baud = (unsigned)v;
			break;
		case 'S':
			if (st_bench_signer_parse(optarg, &o.signer, err, sizeof(err)) < 0) {
				st_err("%s", err);
				return 2;
			}
			break;
		case 'w':
			if (parse_ulong(optarg, 1, 256, &v) != 0) {
				st_err("--workers '%s': expected 1..256", optarg);
				return 2;
			}
			o.workers = (unsigned)v;
			break;
		case 'm':
			if (parse_ulong(optarg, 1, 4096, &v) != 0) {
				st_err("--batch '%s': expected 1..4096", optarg);
				return 2;
			}
			o.batch = (unsigned)v;
			break;
		case 'l':
			if (parse_ulong(optarg, 0, 60000, &v) != 0) {
				st_err("--linger '%s': expected 0..60000 ms", optarg);
				return 2;
			}
			o.linger = (int)v;
			break;
		case 'r':
			if (parse_ulong(optarg, 1, 64, &v) != 0) {
				st_err("--rounds '%s': expected 1..64", optarg);
				return 2;
			}
			o.rounds = (unsigned)v;
			break;
		case 'n':
			if (parse_ulong(optarg, 10, 10000000, &v) != 0) {
				st_err("--bound-n '%s': expected 10 or more", optarg);
				return 2;
			}
			o.bound_n = (unsigned)v;
			break;
		case 't':
			if (parse_ulong(optarg, 1, 86400, &v) != 0) {
				st_err("--timeout '%s': expected 1..86400 seconds", optarg);
				return 2;
			}
			o.timeout_s = (double)v;
			break;
		case 'F':
			o.fsync = 1;
			break;
		case 'g':
			if (parse_ulong(optarg, 0, 3600000, &v) != 0) {
				st_err("--stagger '%s': expected 0..3600000 ms", optarg);
				return 2;
			}
			o.stagger_ms = (int)v;
			break;
		case 'M':
			if (parse_ulong(optarg, 50, 4000000, &v) != 0) {
				st_err("--max-baud '%s': expected a rate of 50..4000000", optarg);
				return 2;
			}
			o.max_baud = (unsigned)v;
			break;
		case 'V':
			if (parse_ulong(optarg, 1, DRV_PROTO_VERSION_MAX, &v) != 0) {
				st_err("--board-protocol '%s': expected a version of 1..%d", optarg,
				       DRV_PROTO_VERSION_MAX);
				return 2;
			}
			o.board_protocol = (unsigned)v;
			break;
		case 'R':
			if (parse_ulong(optarg, 512, 4096, &v) != 0) {
				st_err("--board-frame '%s': expected 512..4096 bytes", optarg);
				return 2;
			}
			o.board_frame = (unsigned)v;
			break;
		case 'A':
			if (parse_ulong(optarg, 0, 10000, &v) != 0) {
				st_err("--turnaround '%s': expected 0..10000 ms", optarg);
				return 2;
			}
			o.turnaround_ms = (unsigned)v;
			break;
		case 'P':
			if (parse_ulong(optarg, 1, ST_BENCH_SIM_MAX, &v) != 0) {
				st_err("--sim-procs '%s': expected 1..%d", optarg, ST_BENCH_SIM_MAX);
				return 2;
			}
			o.sim_procs = (unsigned)v;
			break;
		case 'T':
			if (parse_ulong(optarg, 1, 100000000, &v) != 0) {
				st_err("--target '%s': expected boards/hour, 1..100000000", optarg);
				return 2;
			}
			o.target_bph = (double)v;
			break;
		case 'j':
			o.json_path = optarg;
			break;
		case 'p':
			o.plot_path = optarg;
			break;
		case 'd':
			o.dir = optarg;
			break;
		case 'K':
			o.keep = 1;
			break;
		case 'X':
			simboard = optarg;
			break;
		case 'Y':
			slowhsm = optarg;
			break;
		case 'Z':
			softhsm = optarg;
			break;
		case 'q':
			o.quiet = 1;
			break;
		case 'h':
			bench_usage(stdout);
			return 0;
		case ':':
			st_err("option %s needs a value", argv[optind - 1]);
			return 2;
		default:
			st_err("unknown option '%s'; see 'station bench --help'", argv[optind - 1]);
			return 2;
		}
	}
	if (optind < argc) {
		st_err("unexpected argument '%s'; see 'station bench --help'", argv[optind]);
		return 2;
	}
	for (i = 0; o.boards && i < o.nslots; i++) {
		if (o.boards < o.slots[i]) {
			st_err("--boards %lu is fewer than --slots %u: every slot needs a board",
			       o.boards, o.slots[i]);
			return 2;
		}
	}
	if (o.signer.kind == ST_BENCH_SLOWHSM && o.workers > o.signer.sessions)
		st_warn("--workers %u is more than the %u sessions the emulated HSM allows: the "
			"station will not start",
			o.workers, o.signer.sessions);
	if (o.plot_path && o.nslots < 2)
		st_warn("--plot needs two or more slot counts; no plot");

	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0) {
		st_err("cannot find this program (/proc/self/exe): %s", strerror(errno));
		return 1;
	}
	exe[n] = 0;
	snprintf(o.station, sizeof(o.station), "%s", exe);
	if (find_helper(o.simboard, sizeof(o.simboard), simboard, "STATION_SIMBOARD", exe,
			"fixtures/simboard/simboard", "simboard") != 0) {
		st_err("no simboard found (give --simboard PATH or STATION_SIMBOARD)");
		return 1;
	}
	snprintf(o.softhsm, sizeof(o.softhsm), "%s", softhsm ? softhsm : DEFAULT_SOFTHSM);
	if (o.signer.kind != ST_BENCH_FILE && access(o.softhsm, R_OK) != 0) {
		st_err("--signer %s needs the PKCS#11 module %s: %s", o.signer.name, o.softhsm,
		       strerror(errno));
		return 1;
	}
	if (o.signer.kind == ST_BENCH_SLOWHSM &&
	    find_helper(o.slowhsm, sizeof(o.slowhsm), slowhsm, "STATION_SLOWHSM", exe,
			"fixtures/slowhsm/libslowhsm.so", NULL) != 0) {
		st_err("no libslowhsm.so found (give --slowhsm PATH or STATION_SLOWHSM)");
		return 1;
	}
	if (make_workdir(&o, err, sizeof(err)) < 0) {
		st_err("%s", err);
		return 1;
	}

	rounds = calloc(o.nslots * o.rounds, sizeof(*rounds));
	med = calloc(o.nslots, sizeof(*med));
	if (!rounds || !med) {
		st_err("out of memory");
		goto out;
	}
	/* Ctrl-C reaches the children too (one process group): they stop cleanly, the run
	 * in progress ends, and the bench reports what it has and cleans up. */
	{
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_interrupt;
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
	}
	if (!o.quiet)
		st_bench_print_header(&o);
	/* Rounds interleave the slot counts, so that the machine's load drifts over all of
	 * them alike. */
	for (unsigned r = 0; r < o.rounds && !interrupted; r++) {
		for (i = 0; i < o.nslots && !interrupted; i++) {
			struct st_bench_result *res = &rounds[i * o.rounds + r];
			unsigned long boards = o.boards ? o.boards :
							  (unsigned long)o.per_slot * o.slots[i];

			if (st_bench_run(&o, o.slots[i], boards, r, res, err, sizeof(err)) < 0) {
				st_err("%u slots, round %u: %s", o.slots[i], r + 1, err);
				snprintf(res->error, sizeof(res->error), "%.*s",
					 (int)sizeof(res->error) - 1, err);
				res->slots = o.slots[i];
				res->boards = boards;
				res->round = r;
				snprintf(res->signer, sizeof(res->signer), "%s", o.signer.name);
				all_ok = 0;
				continue;
			}
			all_ok &= res->ok;
			if (!o.quiet)
				st_bench_print_result(res);
			else if (!res->ok)
				st_err("%u slots, round %u: %s", o.slots[i], r + 1, res->error);
		}
	}
	if (interrupted) {
		st_warn("interrupted: the figures below cover the runs that finished");
		all_ok = 0;
	}
	for (i = 0; i < o.nslots; i++) {
		size_t done = 0;

		/* Rounds run in order: those of an interrupted bench that never ran are last. */
		while (done < o.rounds && rounds[i * o.rounds + done].slots)
			done++;
		if (done) {
			st_bench_median(&rounds[i * o.rounds], done, &med[i]);
		} else {
			med[i].slots = o.slots[i];
			snprintf(med[i].signer, sizeof(med[i].signer), "%s", o.signer.name);
			snprintf(med[i].error, sizeof(med[i].error), "not run");
		}
	}
	st_bench_print_footer(&o, med, o.nslots);

	if (o.json_path) {
		struct st_bench_result *ran = calloc(o.nslots * o.rounds, sizeof(*ran));
		size_t nran = 0;

		for (i = 0; ran && i < o.nslots * o.rounds; i++) {
			if (rounds[i].slots)
				ran[nran++] = rounds[i];
		}
		doc = ran ? st_bench_json(&o, ran, nran, med, o.nslots) : NULL;
		free(ran);
		if (!doc || json_dump_file(doc, o.json_path, JSON_INDENT(2) | JSON_SORT_KEYS) != 0) {
			st_err("--json %s: cannot write it", o.json_path);
			all_ok = 0;
		}
	}
	if (o.plot_path && o.nslots >= 2) {
		if (st_bench_plot(&o, med, o.nslots, o.plot_path, err, sizeof(err)) < 0) {
			st_err("--plot: %s", err);
			all_ok = 0;
		}
	}
	rc = all_ok ? 0 : 1;
out:
	json_decref(doc);
	free(rounds);
	free(med);
	remove_dir(o.boarddir);
	if (o.keep || rc != 0)
		printf("work directory kept: %s\n", o.workdir);
	else
		remove_dir(o.workdir);
	return rc;
}
