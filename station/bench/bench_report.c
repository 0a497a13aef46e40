/* Reports of `station bench`: a text block per run, a table of medians, the JSON document and
 * a gnuplot plot. */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "err.h"
#include "proto.h"

extern char **environ;

static const char *baud_text(unsigned baud, char *buf, size_t cap)
{
	if (baud)
		snprintf(buf, cap, "%u baud", baud);
	else
		snprintf(buf, cap, "unpaced");
	return buf;
}

void st_bench_print_header(const struct st_bench_opts *o)
{
	char b[32], workers[64];

	if (o->workers)
		snprintf(workers, sizeof(workers), "%u", o->workers);
	else if (o->signer.kind == ST_BENCH_SLOWHSM)
		snprintf(workers, sizeof(workers), "%u (S: one session each)",
			 o->signer.sessions);
	else
		snprintf(workers, sizeof(workers), "the CPUs (%ld)",
			 sysconf(_SC_NPROCESSORS_ONLN));
	printf("station bench: signer %s, %s, workers %s, batch %s%u, linger %s%d ms, %u "
	       "round%s; %ld CPUs online\n",
	       o->signer.name, baud_text(o->baud, b, sizeof(b)), workers, o->batch ? "" : "default ",
	       o->batch ? o->batch : 32, o->linger >= 0 ? "" : "default ",
	       o->linger >= 0 ? o->linger : 5, o->rounds, o->rounds == 1 ? "" : "s",
	       sysconf(_SC_NPROCESSORS_ONLN));
	if (o->board_protocol || o->turnaround_ms || o->board_frame)
		printf("boards: protocol versions up to %s%u, frames of %s%u bytes, answers %u ms "
		       "late\n",
		       o->board_protocol ? "" : "simboard's, ",
		       o->board_protocol ? o->board_protocol : DRV_PROTO_VERSION_MAX,
		       o->board_frame ? "" : "simboard's ", o->board_frame ? o->board_frame : 1024,
		       o->turnaround_ms);
	printf("work directory %s; boards' storage in %s\n", o->workdir, o->boarddir);
	fflush(stdout);
}

/* The station's CPU per board over the bound with the board's proof-of-possession verify
 * counted in it, and each thread's share of it (they add up to the whole, the shutdown after
 * the last sample included). */
static void print_cpu_pop(const struct st_bench_result *r, double n)
{
	double b = (r->bound.cpu_s + r->bound.verify_cpu_s) * 1000;
	const struct {
		const char *name;
		double cpu_s;
	} part[] = { { "loop", r->th.loop_cpu_s },
		     { "ledger", r->th.ledger_cpu_s },
		     { "workers", r->th.workers_cpu_s },
		     { "other", r->th.other_cpu_s },
		     { "after the last sample", r->unsampled_cpu_s } };

	printf("              station CPU/board = %.2fx (crypto-only + PoP verify: %.1f us):",
	       r->cpu_x_bound_pop, b * 1000);
	for (size_t i = 0; i < sizeof(part) / sizeof(part[0]); i++)
		printf("%s %s %.3f ms = %.2fx", i ? "," : "", part[i].name,
		       part[i].cpu_s * 1000 / n, part[i].cpu_s * 1000 / n / b);
	printf("\n");
}

/* simboard's turns by what the board said before them (enum st_bench_turn). */
static const char *const turn_names[ST_BENCH_TURNS] = { "boot", "csr", "write", "verify",
							"other" };

/* The turns line's second half: which of the board's frames the waits follow. After the
 * CSR the station checks it on a worker and records the intent before the first file goes;
 * after the proof of possession (the answer with sig) it checks the proof, then says DONE. */
static void print_turns_after(const struct st_bench_result *r)
{
	static const char *const shown[ST_BENCH_TURNS] = { "BOOT", "CSR", "WRITE", "proof",
							   "other" };

	if (isnan(r->sim_turn_after_ms[0]))
		return;
	printf("              after");
	for (unsigned k = 0; k < ST_BENCH_TURNS; k++)
		printf("%s %s %.2f a board %.2f ms", k ? "," : "", shown[k],
		       r->sim_turns_after_per_board[k], r->sim_turn_after_ms[k]);
	printf(" (turns a board, their mean wait)\n");
}

void st_bench_print_result(const struct st_bench_result *r)
{
	static const enum st_phase order[] = { ST_PHASE_HELLO, ST_PHASE_CSR, ST_PHASE_QUEUE,
					       ST_PHASE_SIGN, ST_PHASE_RECORD, ST_PHASE_WRITE,
					       ST_PHASE_VERIFY, ST_PHASE_TOTAL };
	double n = r->passed ? (double)r->passed : NAN;

	printf("\n%u slots, %lu boards, round %u: %lu passed, %lu failed in %.1f s (load %.1f; "
	       "boards put in within %u ms)%s%s\n",
	       r->slots, r->boards, r->round + 1, r->passed, r->failed, r->elapsed_s, r->loadavg,
	       r->stagger_ms, r->ok ? "" : "; NOT OK: ", r->ok ? "" : r->error);
	if (!r->passed) {
		fflush(stdout);
		return;
	}
	printf("  throughput  %.0f boards/h steady (+/- %.0f, over %.2f s; %.0f over the whole "
	       "span of %.2f s)\n",
	       r->bph_steady, r->steady_tol_bph, r->steady_window_s, r->bph, r->span_s);
	printf("  limited by  %s: %s\n", st_bench_limit_name(r->limit), r->limit_reason);
	if (!isnan(r->wire_ratio))
		printf("  wire bound  %.0f B/board x 10 / %u = %.3f s/board; %u slots: %.0f boards/h;"
		       " ratio %.3f (span %.3f)%s\n",
		       r->bytes_per_board, r->baud, r->wire_s, r->slots, r->wire_bound_bph,
		       r->wire_ratio, r->wire_ratio_span,
		       r->max_baud ? ", at the starting rate: the boards switch up with BAUD" : "");
	else
		printf("  wire        %.0f B/board, unpaced: no wire bound\n", r->bytes_per_board);
	if (r->wire_min.total > 0)
		printf("              bytes/board = %.2f x the protocol's minimum of %.0f B (CSR "
		       "%.0f, certificates %.0f, other file bytes %.0f, nonce and signature %.0f, "
		       "framing of %u frames %.0f; %u files)\n",
		       r->wire_min_ratio, r->wire_min.total, r->wire_min.csr, r->wire_min.certs,
		       r->wire_min.text, r->wire_min.pop, r->wire_min.frames, r->wire_min.framing,
		       r->wire_min.files);
	printf("  port        the station sent %.2f requests a board in %.2f turns and %.2f writes "
	       "to the port (requests that leave together share a write)\n",
	       r->requests_per_board, r->turns_per_board, r->writes_per_board);
	printf("  latency ms  p50/p95/p99:");
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		const struct st_bench_pct *p = &r->phase[order[i]];

		if (!p->n)
			continue;
		printf(" %s %.3g/%.3g/%.3g", st_phase_name(order[i]), p->p50, p->p95, p->p99);
	}
	printf("\n");
	printf("  signing     %lu certs, %.0f/s while CSRs waited for signing (%.2f s); bound %.0f/s"
	       ": ratio %.3f\n",
	       r->signed_, r->sign_rate, r->sign_window_s, r->sign_bound, r->sign_ratio);
	if (!isnan(r->sign_ratio_workers))
		printf("              the %u workers' sessions can sign %.0f/s: ratio %.3f\n",
		       r->workers, r->sign_bound_workers, r->sign_ratio_workers);
	printf("  bound       crypto-only %.1f us wall, %.1f us CPU per certificate on one thread "
	       "(%u measured; verify %.1f us)",
	       r->bound.wall_s * 1e6, r->bound.cpu_s * 1e6, r->bound.n, r->bound.verify_cpu_s * 1e6);
	if (!isnan(r->bound.cpu_after_s))
		printf(": the mean of %.1f us CPU before the run and %.1f us after",
		       r->bound.cpu_before_s * 1e6, r->bound.cpu_after_s * 1e6);
	printf("\n");
	printf("  cpu         station %.3f ms/board = %.1f x the bound's CPU per certificate "
	       "(loop %.3f, ledger %.3f, workers %.3f, other %.3f ms/board)\n",
	       r->cpu_ms_per_board, r->cpu_x_bound, r->th.loop_cpu_s * 1000 / n,
	       r->th.ledger_cpu_s * 1000 / n, r->th.workers_cpu_s * 1000 / n,
	       r->th.other_cpu_s * 1000 / n);
	print_cpu_pop(r, n);
	if (r->commits)
		printf("              ledger: %lu commits (one fsync each) = %.2f per board\n",
		       r->commits, r->commits_per_board);
	if (!isnan(r->issue_ratio))
		printf("              issuance %.3f ms CPU/cert (the workers: the CSR check, "
		       "signing) = %.2f of the bound per core\n",
		       r->issue_cpu_ms, r->issue_ratio);
	printf("              loop waited %.3f ms/board for a CPU; simboard (%u process%s) used "
	       "%.3f ms/board and waited %.3f ms/board for a CPU\n",
	       r->th.loop_wait_s * 1000 / n, r->sim_procs, r->sim_procs == 1 ? "" : "es",
	       r->sim_cpu_ms_per_board, r->sim_wait_ms_per_board);
	if (r->th.named)
		printf("              times on a CPU a board (each a wake-up or a return from a "
		       "preemption): loop %.2f, ledger %.2f, workers %.2f\n",
		       r->th.loop_runs / n, r->th.ledger_runs / n, r->th.workers_runs / n);
	if (!isnan(r->machine_busy))
		printf("  machine     its %ld CPUs busy %.2f of the run: the station, simboard, the "
		       "kernel's PTY work and anything else running\n",
		       sysconf(_SC_NPROCESSORS_ONLN), r->machine_busy);
	if (!isnan(r->sim_turn_ms)) {
		/* What the turns add to a board's time on top of its bytes: on a paced line,
		 * the part of the gap to the wire bound that is not bytes. */
		double turns_ms = r->sim_turn_ms * r->sim_turns_per_board;

		printf("  turns       the station's next bytes reached a board %.2f ms after its "
		       "answer's last byte, with no request in hand, on average (seen from the "
		       "boards: PTY delivery both ways and both loops), %.1f turns a board: %.1f "
		       "ms a board",
		       r->sim_turn_ms, r->sim_turns_per_board, turns_ms);
		if (!isnan(r->wire_s))
			printf(" = %.3f of its wire time", turns_ms / 1000 / r->wire_s);
		printf("\n");
		print_turns_after(r);
	}
	if (!isnan(r->sim_late_ms_per_board))
		printf("  fixture     simboard's pacing timers fired %.2f ms late on average; late "
		       "answers not made good added %.1f ms a board%s%.1f%% of its wire time): "
		       "the simulation's delay, not the station's\n",
		       r->sim_late_ms, r->sim_late_ms_per_board, isnan(r->wire_s) ? "" : " (",
		       isnan(r->wire_s) ? 0 : r->sim_late_ms_per_board / 10 / r->wire_s);
	printf("  memory      peak RSS %.1f MiB = %.1f KiB/slot\n", r->rss_peak_kib / 1024.0,
	       r->rss_per_slot_kib);
	fflush(stdout);
}

double st_bench_rss_marginal(const struct st_bench_result *med, size_t n)
{
	const struct st_bench_result *lo = NULL, *hi = NULL;

	for (size_t i = 0; i < n; i++) {
		if (!med[i].passed)
			continue;
		if (!lo || med[i].slots < lo->slots)
			lo = &med[i];
		if (!hi || med[i].slots > hi->slots)
			hi = &med[i];
	}
	if (!lo || !hi || lo->slots == hi->slots)
		return NAN;
	return (double)(hi->rss_peak_kib - lo->rss_peak_kib) / (hi->slots - lo->slots);
}

void st_bench_print_footer(const struct st_bench_opts *o, const struct st_bench_result *med,
			   size_t n)
{
	double marginal = st_bench_rss_marginal(med, n);

	printf("\n%s (signer %s):\n", o->rounds > 1 ? "medians over the rounds" : "summary",
	       o->signer.name);
	printf("%6s %7s %11s %11s %6s %8s %8s %8s %8s %6s %6s %6s %6s %6s %8s %7s %s\n", "slots",
	       "boards", "boards/h", "wire bnd/h", "ratio", "p50 ms", "p95 ms", "p99 ms", "sign/s",
	       "ratio", "cpu x", "x+pop", "issue", "B/min", "RSS MiB", "KiB/sl", "limited by");
	for (size_t i = 0; i < n; i++) {
		const struct st_bench_result *r = &med[i];
		const struct st_bench_pct *t = &r->phase[ST_PHASE_TOTAL];

		if (!r->passed) {
			printf("%6u %7lu  no figures: %s\n", r->slots, r->boards, r->error);
			continue;
		}
		printf("%6u %7lu %11.0f %11.0f %6.3f %8.1f %8.1f %8.1f %8.0f %6.3f %6.2f %6.2f "
		       "%6.2f %6.2f %8.1f %7.1f %s%s\n",
		       r->slots, r->boards, r->bph_steady, r->wire_bound_bph, r->wire_ratio, t->p50,
		       t->p95, t->p99, r->sign_rate, r->sign_ratio, r->cpu_x_bound,
		       r->cpu_x_bound_pop, r->issue_ratio, r->wire_min_ratio,
		       r->rss_peak_kib / 1024.0, r->rss_per_slot_kib, st_bench_limit_name(r->limit),
		       r->ok ? "" : "  NOT OK");
	}
	printf("ratio: steady boards/h over the wire bound; sign ratio: certs/s while CSRs waited "
	       "over the bound;\ncpu x: station CPU per board over one certificate's "
	       "crypto-only CPU; x+pop: over that plus one verify (the board's\nproof of "
	       "possession); issue: the bound's CPU over issuance CPU per certificate; B/min: "
	       "bytes per board over the\nprotocol's minimum\n");
	if (!isnan(marginal))
		printf("RSS per additional slot: %.1f KiB (peak RSS at the most slots minus at the "
		       "fewest, over the difference)\n",
		       marginal);
	if (o->target_bph > 0) {
		const struct st_bench_result *from;
		long need = st_bench_target_slots(med, n, o->target_bph, &from);

		if (need == 0)
			printf("target %.0f boards/h: no run passed to size it from\n", o->target_bph);
		else if (need < 0)
			printf("target %.0f boards/h: out of reach with signer %s at any slot count "
			       "(its bound is %.0f boards/h)\n",
			       o->target_bph, o->signer.name, from->sign_bound * 3600);
		else
			printf("target %.0f boards/h: %ld slots (%.0f boards/h per slot measured at "
			       "%u slots, limited by %s)\n",
			       o->target_bph, need, from->bph_steady / from->slots, from->slots,
			       st_bench_limit_name(from->limit));
	}
	fflush(stdout);
}

/* ---- What limited a run -------------------------------------------------------------- */

const char *st_bench_limit_name(int kind)
{
	static const char *const names[ST_BENCH_LIM_COUNT] = {
		"wire", "signing", "station-cpu", "simboard-cpu", "ledger", "machine-cpu"
	};

	return kind >= 0 && kind < ST_BENCH_LIM_COUNT ? names[kind] : "none";
}

static double busy(double cpu_s, double span_s, double cpus)
{
	return span_s > 0 && cpus > 0 && !isnan(cpu_s) ? cpu_s / (span_s * cpus) : NAN;
}

void st_bench_limit(struct st_bench_result *r, long ncpu)
{
	double *q = r->ratio, best = INFINITY;
	double sims = r->sim_procs < (unsigned)ncpu ? r->sim_procs : (double)ncpu;
	double sim_cpu = r->sim_cpu_ms_per_board * (double)r->passed / 1000;
	double own = NAN;
	int others = 0;
	char *t = r->limit_reason;
	size_t cap = sizeof(r->limit_reason);

	if (ncpu < 1)
		ncpu = 1;
	/* With --max-baud the wire bound is the starting rate's: not a bound. */
	q[ST_BENCH_LIM_WIRE] = r->max_baud ? NAN : r->wire_ratio;
	q[ST_BENCH_LIM_SIGN] = isnan(r->sign_ratio_workers) ? r->sign_ratio :
				fmax(r->sign_ratio, r->sign_ratio_workers);
	q[ST_BENCH_LIM_CPU] = fmax(busy(r->th.loop_cpu_s, r->span_s, 1),
				   busy(r->cpu_s, r->span_s, (double)ncpu));
	q[ST_BENCH_LIM_SIM] = busy(sim_cpu, r->span_s, sims ? sims : 1);
	q[ST_BENCH_LIM_LEDGER] = busy(r->th.ledger_cpu_s, r->span_s, 1);
	q[ST_BENCH_LIM_MACHINE] = r->machine_busy;
	/* The machine's CPUs count every process on it: they are this run's limit only when
	 * the station and simboard did at least half of the work that kept them busy (the
	 * kernel's PTY work for them is in neither); else something outside the run did. */
	if (!isnan(r->machine_busy) && r->machine_busy > 0)
		own = busy(r->cpu_s + sim_cpu, r->span_s, (double)ncpu) / r->machine_busy;
	others = !isnan(own) && own < 0.5;
	r->machine_share = own;
	r->limit = -1;
	t[0] = 0;
	if (!r->passed)
		return;
	for (int k = 0; k < ST_BENCH_LIM_COUNT; k++) {
		if (k == ST_BENCH_LIM_MACHINE && others)
			continue;
		if (!isnan(q[k]) && fabs(1 - q[k]) < best) {
			best = fabs(1 - q[k]);
			r->limit = k;
		}
	}
	switch (r->limit) {
	case ST_BENCH_LIM_WIRE:
		snprintf(t, cap, "the boards' serial lines carried %.2f of what %u baud allows",
			 q[ST_BENCH_LIM_WIRE], r->baud);
		break;
	case ST_BENCH_LIM_SIGN:
		snprintf(t, cap, "the signer was busy: %.0f certs/s is %.2f of its bound %.0f/s",
			 r->sign_rate, q[ST_BENCH_LIM_SIGN], r->sign_bound);
		break;
	case ST_BENCH_LIM_CPU:
		snprintf(t, cap, "the station's CPU: its loop or its %ld CPUs busy %.2f of the span",
			 ncpu, q[ST_BENCH_LIM_CPU]);
		break;
	case ST_BENCH_LIM_SIM:
		snprintf(t, cap, "the simulated boards: simboard busy %.2f of the span on its CPUs "
			 "(the fixture, not the station)", q[ST_BENCH_LIM_SIM]);
		break;
	case ST_BENCH_LIM_LEDGER:
		snprintf(t, cap, "the ledger thread busy %.2f of the span", q[ST_BENCH_LIM_LEDGER]);
		break;
	case ST_BENCH_LIM_MACHINE:
		snprintf(t, cap, "the machine's %ld CPUs busy %.2f of the run, shared by the station, "
			 "simboard and the kernel's PTY work", ncpu, q[ST_BENCH_LIM_MACHINE]);
		break;
	default:
		snprintf(t, cap, "no bound measured");
		break;
	}
	if (r->limit >= 0 && q[r->limit] < 0.5)
		snprintf(t + strlen(t), cap - strlen(t), "; nothing near its bound: turns and "
			 "latency limit the line");
	if (others && r->machine_busy >= 0.5)
		snprintf(t + strlen(t), cap - strlen(t), "; the machine's CPUs were busy %.2f, "
			 "%.2f of it the station's and simboard's", r->machine_busy, own);
}

long st_bench_target_slots(const struct st_bench_result *med, size_t n, double target,
			   const struct st_bench_result **from)
{
	const struct st_bench_result *hi = NULL;
	double per_slot;

	*from = NULL;
	for (size_t i = 0; i < n; i++) {
		if (med[i].passed && med[i].bph_steady > 0 && (!hi || med[i].slots > hi->slots))
			hi = &med[i];
	}
	if (!hi)
		return 0;
	*from = hi;
	if (!isnan(hi->sign_bound) && hi->sign_bound * 3600 < target)
		return -1;
	per_slot = hi->bph_steady / hi->slots;
	return (long)ceil(target / per_slot);
}

/* ---- JSON ----------------------------------------------------------------------------- */

static json_t *num(double v)
{
	return isnan(v) || isinf(v) ? json_null() : json_real(v);
}

static json_t *result_json(const struct st_bench_result *r)
{
	json_t *o = json_object(), *ph = json_object(), *th = json_object();

	json_object_set_new(o, "slots", json_integer(r->slots));
	json_object_set_new(o, "boards", json_integer((json_int_t)r->boards));
	json_object_set_new(o, "baud", json_integer(r->baud));
	json_object_set_new(o, "signer", json_string(r->signer));
	json_object_set_new(o, "workers", r->workers ? json_integer(r->workers) : json_null());
	json_object_set_new(o, "batch_max", r->batch ? json_integer(r->batch) : json_null());
	json_object_set_new(o, "batch_linger_ms", r->linger >= 0 ? json_integer(r->linger) :
								     json_null());
	json_object_set_new(o, "round", json_integer(r->round + 1));
	json_object_set_new(o, "ok", json_boolean(r->ok));
	if (r->error[0])
		json_object_set_new(o, "error", json_string(r->error));
	json_object_set_new(o, "passed", json_integer((json_int_t)r->passed));
	json_object_set_new(o, "failed", json_integer((json_int_t)r->failed));
	json_object_set_new(o, "abandoned", json_integer((json_int_t)r->abandoned));
	json_object_set_new(o, "reused", json_integer((json_int_t)r->reused));
	json_object_set_new(o, "signed", json_integer((json_int_t)r->signed_));
	json_object_set_new(o, "elapsed_s", num(r->elapsed_s));
	json_object_set_new(o, "span_s", num(r->span_s));
	json_object_set_new(o, "boards_per_hour", num(r->bph));
	json_object_set_new(o, "boards_per_hour_steady", num(r->bph_steady));
	json_object_set_new(o, "steady_window_s", num(r->steady_window_s));
	json_object_set_new(o, "boards_per_hour_steady_tolerance", num(r->steady_tol_bph));
	json_object_set_new(o, "bounds_boards_per_hour",
			    json_pack("{s:o,s:o}", "wire",
				      num(r->max_baud ? NAN : r->wire_bound_bph), "signing",
				      num(r->sign_bound * 3600)));
	{
		json_t *ratios = json_object();

		for (int k = 0; k < ST_BENCH_LIM_COUNT; k++)
			json_object_set_new(ratios, st_bench_limit_name(k), num(r->ratio[k]));
		json_object_set_new(o, "limit",
				    json_pack("{s:s,s:s,s:o,s:o}", "by", st_bench_limit_name(r->limit),
					      "reason", r->limit_reason, "ratios", ratios,
					      "machine_share", num(r->machine_share)));
	}
	for (int p = 0; p < ST_PHASE_COUNT; p++) {
		const struct st_bench_pct *q = &r->phase[p];

		json_object_set_new(ph, st_phase_name((enum st_phase)p),
				    json_pack("{s:I,s:o,s:o,s:o,s:o,s:o}", "n", (json_int_t)q->n,
					      "p50", num(q->p50), "p95", num(q->p95), "p99",
					      num(q->p99), "mean", num(q->mean), "max",
					      num(q->max)));
	}
	json_object_set_new(o, "latency_ms", ph);
	json_object_set_new(o, "wire", json_pack("{s:o,s:o,s:o,s:o,s:o}", "bytes_per_board",
						  num(r->bytes_per_board), "seconds_per_board",
						  num(r->wire_s), "bound_boards_per_hour",
						  num(r->wire_bound_bph), "ratio", num(r->wire_ratio),
						  "ratio_span", num(r->wire_ratio_span)));
	json_object_set_new(json_object_get(o, "wire"), "minimum",
			    json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:i,s:i}", "bytes_per_board",
				      num(r->wire_min.total > 0 ? r->wire_min.total : NAN),
				      "ratio", num(r->wire_min_ratio), "csr", num(r->wire_min.csr),
				      "certificates", num(r->wire_min.certs), "other_file_bytes",
				      num(r->wire_min.text), "nonce_and_signature",
				      num(r->wire_min.pop), "framing", num(r->wire_min.framing),
				      "frames", (int)r->wire_min.frames, "files",
				      (int)r->wire_min.files));
	json_object_set_new(o, "signing",
			    json_pack("{s:o,s:o,s:o,s:o,s:o,s:o}", "window_s",
				      num(r->sign_window_s), "certs_per_s", num(r->sign_rate),
				      "bound_certs_per_s", num(r->sign_bound), "ratio",
				      num(r->sign_ratio), "workers_bound_certs_per_s",
				      num(r->sign_bound_workers), "workers_ratio",
				      num(r->sign_ratio_workers)));
	json_object_set_new(o, "bound",
			    json_pack("{s:i,s:o,s:o,s:o,s:o,s:o}", "n", (int)r->bound.n, "wall_us",
				      num(r->bound.wall_s * 1e6), "cpu_us",
				      num(r->bound.cpu_s * 1e6), "verify_cpu_us",
				      num(r->bound.verify_cpu_s * 1e6), "cpu_us_before",
				      num(r->bound.cpu_before_s * 1e6), "cpu_us_after",
				      num(r->bound.cpu_after_s * 1e6)));
	json_object_set_new(th, "loop_cpu_s", num(r->th.loop_cpu_s));
	json_object_set_new(th, "ledger_cpu_s", num(r->th.ledger_cpu_s));
	json_object_set_new(th, "workers_cpu_s", num(r->th.workers_cpu_s));
	json_object_set_new(th, "other_cpu_s", num(r->th.other_cpu_s));
	json_object_set_new(th, "loop_wait_s", num(r->th.loop_wait_s));
	json_object_set_new(th, "loop_runs", num(r->th.loop_runs));
	json_object_set_new(th, "ledger_runs", num(r->th.ledger_runs));
	json_object_set_new(th, "workers_runs", num(r->th.workers_runs));
	json_object_set_new(th, "unsampled_cpu_s", num(r->unsampled_cpu_s));
	json_object_set_new(o, "cpu",
			    json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "station_s", num(r->cpu_s),
				      "ms_per_board", num(r->cpu_ms_per_board), "x_bound",
				      num(r->cpu_x_bound), "issue_ms_per_cert",
				      num(r->issue_cpu_ms), "issue_ratio", num(r->issue_ratio),
				      "simboard_ms_per_board", num(r->sim_cpu_ms_per_board),
				      "threads", th));
	/* The bound with the board's proof-of-possession verify counted in it, and each
	 * thread's share of the station's CPU per board over it. */
	{
		json_t *cpu = json_object_get(o, "cpu"), *x = json_object();
		double n = r->passed ? (double)r->passed : NAN;
		double b = r->bound.cpu_s + r->bound.verify_cpu_s;

		json_object_set_new(cpu, "bound_pop_us", num(b * 1e6));
		json_object_set_new(cpu, "x_bound_pop", num(r->cpu_x_bound_pop));
		json_object_set_new(x, "loop", num(r->th.loop_cpu_s / n / b));
		json_object_set_new(x, "ledger", num(r->th.ledger_cpu_s / n / b));
		json_object_set_new(x, "workers", num(r->th.workers_cpu_s / n / b));
		json_object_set_new(x, "other", num(r->th.other_cpu_s / n / b));
		json_object_set_new(x, "unsampled", num(r->unsampled_cpu_s / n / b));
		json_object_set_new(cpu, "threads_x_bound_pop", x);
	}
	json_object_set_new(o, "ledger",
			    json_pack("{s:I,s:o}", "commits", (json_int_t)r->commits,
				      "commits_per_board", num(r->commits_per_board)));
	json_object_set_new(o, "simboard_wait_ms_per_board", num(r->sim_wait_ms_per_board));
	json_object_set_new(o, "simboard_pacing_late_ms",
			    json_pack("{s:o,s:o}", "mean", num(r->sim_late_ms), "per_board",
				      num(r->sim_late_ms_per_board)));
	json_object_set_new(o, "simboard_turn_ms", num(r->sim_turn_ms));
	json_object_set_new(o, "simboard_turns_per_board", num(r->sim_turns_per_board));
	if (!isnan(r->sim_turn_after_ms[0])) {
		json_t *after = json_object();

		for (unsigned k = 0; k < ST_BENCH_TURNS; k++)
			json_object_set_new(after, turn_names[k],
					    json_pack("{s:o,s:o}", "ms",
						      num(r->sim_turn_after_ms[k]), "per_board",
						      num(r->sim_turns_after_per_board[k])));
		json_object_set_new(o, "simboard_turns_after", after);
	}
	json_object_set_new(o, "port", json_pack("{s:o,s:o,s:o}", "requests_per_board",
						 num(r->requests_per_board), "turns_per_board",
						 num(r->turns_per_board), "writes_per_board",
						 num(r->writes_per_board)));
	json_object_set_new(o, "simboard_processes", json_integer(r->sim_procs));
	json_object_set_new(o, "stagger_ms", json_integer(r->stagger_ms));
	json_object_set_new(o, "loadavg", num(r->loadavg));
	json_object_set_new(o, "machine_busy", num(r->machine_busy));
	json_object_set_new(o, "rss", json_pack("{s:I,s:o}", "peak_kib",
						 (json_int_t)r->rss_peak_kib, "per_slot_kib",
						 num(r->rss_per_slot_kib)));
	return o;
}

json_t *st_bench_json(const struct st_bench_opts *o, const struct st_bench_result *rounds,
		      size_t nrounds, const struct st_bench_result *med, size_t nmed)
{
	json_t *doc = json_object(), *runs = json_array(), *meds = json_array(),
	       *slots = json_array();

	for (size_t i = 0; i < o->nslots; i++)
		json_array_append_new(slots, json_integer(o->slots[i]));
	json_object_set_new(
		doc, "options",
		json_pack("{s:o,s:I,s:I,s:i,s:s,s:o,s:o,s:o,s:i,s:b}", "slots", slots, "boards",
			  (json_int_t)o->boards, "boards_per_slot", (json_int_t)o->per_slot, "baud",
			  (int)o->baud, "signer", o->signer.name, "workers",
			  o->workers ? json_integer(o->workers) : json_null(), "batch_max",
			  o->batch ? json_integer(o->batch) : json_null(), "batch_linger_ms",
			  o->linger >= 0 ? json_integer(o->linger) : json_null(), "rounds",
			  (int)o->rounds, "fsync", o->fsync));
	json_object_set_new(json_object_get(doc, "options"), "max_baud",
			    o->max_baud ? json_integer(o->max_baud) : json_null());
	json_object_set_new(json_object_get(doc, "options"), "board_protocol",
			    o->board_protocol ? json_integer(o->board_protocol) : json_null());
	json_object_set_new(json_object_get(doc, "options"), "turnaround_ms",
			    json_integer(o->turnaround_ms));
	json_object_set_new(json_object_get(doc, "options"), "board_frame",
			    o->board_frame ? json_integer(o->board_frame) : json_null());
	json_object_set_new(json_object_get(doc, "options"), "simboard_store",
			    json_string(o->fsync ? "file" : "memory"));
	json_object_set_new(doc, "cpus", json_integer(sysconf(_SC_NPROCESSORS_ONLN)));
	for (size_t i = 0; i < nrounds; i++)
		json_array_append_new(runs, result_json(&rounds[i]));
	for (size_t i = 0; i < nmed; i++)
		json_array_append_new(meds, result_json(&med[i]));
	json_object_set_new(doc, "runs", runs);
	json_object_set_new(doc, "medians", meds);
	json_object_set_new(doc, "rss_marginal_kib_per_slot", num(st_bench_rss_marginal(med, nmed)));
	if (o->target_bph > 0) {
		const struct st_bench_result *from;
		long need = st_bench_target_slots(med, nmed, o->target_bph, &from);

		json_object_set_new(doc, "target",
				    json_pack("{s:f,s:o,s:o}", "boards_per_hour", o->target_bph,
					      "slots", need > 0 ? json_integer(need) : json_null(),
					      "from_slots",
					      from ? json_integer(from->slots) : json_null()));
	}
	return doc;
}

/* ---- Plot ----------------------------------------------------------------------------- */

int st_bench_plot(const struct st_bench_opts *o, const struct st_bench_result *med, size_t n,
		  const char *path, char *err, size_t errlen)
{
	char data[PATH_MAX], script[PATH_MAX], log[PATH_MAX];
	const char *ext = strrchr(path, '.');
	int svg = ext && strcmp(ext, ".svg") == 0;
	posix_spawn_file_actions_t fa;
	char *argv[] = { "gnuplot", script, NULL };
	FILE *f;
	pid_t pid;
	int rc, status;

	if (snprintf(data, sizeof(data), "%s/plot.dat", o->workdir) >= (int)sizeof(data) ||
	    snprintf(script, sizeof(script), "%s/plot.gp", o->workdir) >= (int)sizeof(script) ||
	    snprintf(log, sizeof(log), "%s/plot.log", o->workdir) >= (int)sizeof(log))
		return st_errf(err, errlen, ST_E_INVAL, "%s: path too long", o->workdir);
	f = fopen(data, "w");
	if (!f)
		return st_errf(err, errlen, ST_E_IO, "%s: %s", data, strerror(errno));
	fprintf(f, "# slots boards_per_hour_steady wire_bound total_p50 total_p95 total_p99 "
		   "sign_per_s signing_bound_boards_per_hour boards_passed steady_tolerance "
		   "rounds\n");
	for (size_t i = 0; i < n; i++) {
		const struct st_bench_pct *t = &med[i].phase[ST_PHASE_TOTAL];

		if (!med[i].passed)
			continue;
		fprintf(f, "%u %.1f %.1f %.3f %.3f %.3f %.1f %.1f %lu %.1f %u\n", med[i].slots,
			med[i].bph_steady,
			isnan(med[i].wire_bound_bph) || o->max_baud ? -1 : med[i].wire_bound_bph,
			t->p50, t->p95, t->p99, med[i].sign_rate,
			isnan(med[i].sign_bound) ? -1 : med[i].sign_bound * 3600, med[i].passed,
			med[i].steady_tol_bph, o->rounds);
	}
	fclose(f);
	f = fopen(script, "w");
	if (!f)
		return st_errf(err, errlen, ST_E_IO, "%s: %s", script, strerror(errno));
	fprintf(f, "set terminal %s size 900,900\n", svg ? "svg" : "png");
	fprintf(f, "set output '%s'\n", path);
	fprintf(f, "set datafile missing '-1'\n");
	if (o->baud)
		fprintf(f, "set multiplot layout 2,1 title 'station bench: signer %s, %u baud'\n",
			o->signer.name, o->baud);
	else
		fprintf(f, "set multiplot layout 2,1 title 'station bench: signer %s, unpaced'\n",
			o->signer.name);
	/* A linear slots axis from 0 and a throughput axis from 0: the bounds and the
	 * measured figure read against each other without a log scale hiding the gap. */
	fprintf(f, "set grid\nset xlabel 'slots'\nset xrange [0:*]\nset yrange [0:*]\n"
		   "set key left top\n");
	fprintf(f, "set ylabel 'boards/hour'\n");
	fprintf(f, "plot '%s' using 1:2:10 with yerrorlines title 'measured (steady, +/- "
		   "tolerance)', '' using 1:2:(sprintf('n=%%d x %%d', $9, $11)) with labels "
		   "offset 0,1 notitle, '' using 1:8 with linespoints dashtype 3 title "
		   "'signing bound'",
		data);
	if (o->baud && !o->max_baud)
		fprintf(f, ", '' using 1:3 with linespoints dashtype 2 title 'wire bound'");
	fprintf(f, "\nset ylabel 'board latency, HELLO to DONE (ms)'\nset yrange [0:*]\n");
	fprintf(f, "plot '%s' using 1:4 with linespoints title 'p50', '' using 1:5 with "
		   "linespoints title 'p95', '' using 1:6 with linespoints title 'p99'\n",
		data);
	fprintf(f, "unset multiplot\n");
	fclose(f);

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_addopen(&fa, 2, log, O_WRONLY | O_CREAT | O_APPEND, 0600);
	rc = posix_spawnp(&pid, "gnuplot", &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rc != 0)
		return st_errf(err, errlen, ST_E_IO, "cannot run gnuplot (Debian package "
			       "gnuplot-nox): %s", strerror(rc));
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return st_errf(err, errlen, ST_E_IO, "gnuplot failed to draw %s; see %s", path,
			       log);
	return 0;
}
