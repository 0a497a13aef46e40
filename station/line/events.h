/* The engine's report for machines: a JSON Lines event stream (one object per line) of every
 * slot's state transitions and every board's outcome, and a summary at exit. The same module
 * keeps the tallies (boards, passes, failures by reason) that the live view and the exit
 * status use, so both always agree with the stream.
 *
 * Every line carries "ts" (UTC, ISO 8601 with milliseconds) and "event":
 *   {"ts":..,"event":"state","slot":"A3","from":"csr","to":"checked","device_id":".."}
 *   {"ts":..,"event":"pass"|"fail"|"abandoned","slot":..,"device_id":..,"serial":..,
 *    "reason":"CSR_SIGNATURE","error":"..","ms":{"hello":..,"csr":..,"queue":..,"sign":..,
 *    "record":..,"write":..,"verify":..,"total":..},"tx_bytes":..,"rx_bytes":..,...}
 *   {"ts":..,"event":"port","slot":..,"status":"lost"|"back"|"open"|"closed",...}
 *   {"ts":..,"event":"line","slot":..,"status":"no_frame","seconds":..,"bytes":..,
 *    "bytes_per_s":..,"detail":"..",...} (bytes but no frame on a waiting slot; then
 *    "status":"frames" when a frame makes sense again)
 *   {"ts":..,"event":"pool","paused":true,"reason":".."}
 *   {"ts":..,"event":"summary","boards":..,"passed":..,"failed":..,"by_reason":{..},
 *    "boards_per_hour":..,...}
 * The lines are built without a JSON library (they are the loop's most frequent output) and
 * the lines of one loop turn go out together: with one write(2) to a regular file when the
 * loop is about to wait (a uv_prepare_t), or as soon as ST_EVENTS_FLUSH_AT bytes gather, so a
 * reader never sees half of a line. The lines a turn built before a crash (a fatal signal)
 * still reach a regular file, from the signal handler (SIGKILL leaves no chance: that turn's
 * lines are lost; the ledger, not the stream, is the record); st_events_detach() and
 * st_events_close() write out the rest at the end. A pipe, FIFO or terminal never stalls the loop: the stream is written
 * without blocking, what the reader has not taken yet waits in a bounded buffer (written out
 * as the fd becomes writable, watched with a uv_poll_t), and an event that does not fit is
 * dropped whole and counted: the summary carries "events_dropped" and the log says so. Lines
 * stay whole either way (a line begun is always finished). Loop thread only. */
#ifndef ST_EVENTS_H
#define ST_EVENTS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>
#include <uv.h>

/* Phases of one board, for per-phase latencies ("ms" of an outcome). */
enum st_phase {
	ST_PHASE_HELLO,  /* the HELLO that found the board: request sent to answer */
	ST_PHASE_CSR,    /* profile, device id and the CSR read */
	ST_PHASE_QUEUE,  /* read to a worker taking it for signing (batching, the CSR's check
			  * on a worker, intent commit, backlog) */
	ST_PHASE_SIGN,   /* the signature (issue and verify) */
	ST_PHASE_RECORD, /* signed to recorded and handed back (the record commit) */
	ST_PHASE_WRITE,  /* WRITE chunks and COMMIT */
	ST_PHASE_VERIFY, /* VERIFY (read-back, proof of possession) and DONE */
	ST_PHASE_TOTAL,  /* the HELLO sent to the outcome */
	ST_PHASE_COUNT,
};

/* "hello", "csr", ... */
const char *st_phase_name(enum st_phase p);

/* A board's outcome as the engine reports it. Strings are borrowed for the call; NULL or ""
 * leaves a field out. */
struct st_outcome {
	const char *slot;
	int pass;        /* 1 pass, 0 fail */
	int abandoned;   /* the station stopped while the board was in flight (not a failure:
			  * its next run resumes it) */
	int reused;      /* pass: the ledger's recorded certificate was delivered again */
	const char *reason;  /* fail/abandoned: stable code without prefix ("CSR_SIGNATURE") */
	const char *error;   /* fail/abandoned: the full message */
	const char *state;   /* fail/abandoned: the state the board was in */
	const char *device_id, *hardware_id, *sku, *sn, *profile, *serial;
	int64_t row_id;      /* ledger row, 0: none */
	double ms[ST_PHASE_COUNT]; /* < 0: the phase did not happen */
	unsigned requests;     /* requests sent, from the HELLO that found the board
				* (retransmissions not counted) */
	unsigned turns;        /* of the requests, those that waited for the answer before
				* them (version 7 sends a WRITE behind another) */
	unsigned writes;       /* writes to the port they took: requests that leave together
				* share one, a port that takes part of one needs another */
	unsigned retransmits;  /* requests sent again (timeouts, damaged answers) */
	unsigned resyncs;      /* reboots and reconnects the board went through */
	uint64_t tx_bytes;     /* bytes the station sent to the board, and received from it */
	uint64_t rx_bytes;     /* (console output included): for the wire bound */
	int baud;              /* the line's rate at the end (after any BAUD switch) */
	const char *console_log; /* where the console of a failed board was saved */
};

/* Failure counts by reason, in order of first appearance. */
struct st_reason_count {
	char reason[48];
	uint64_t count;
};

struct st_tally {
	uint64_t boards;    /* outcomes: passed + failed */
	uint64_t passed;
	uint64_t failed;
	uint64_t abandoned;
	uint64_t reused;    /* of the passed, delivered again from the ledger */
	struct st_reason_count *reasons;
	size_t nreasons;
	uint64_t first_start; /* uv_hrtime() of the first board's HELLO, 0: none yet */
	uint64_t last_end;    /* uv_hrtime() of the last outcome */
	double phase_sum[ST_PHASE_COUNT]; /* ms, over passed boards, for means */
	uint64_t phase_n[ST_PHASE_COUNT];
};

struct st_events;

/* Bytes of whole lines after which they are written out without waiting for the loop
 * turn's end. */
#define ST_EVENTS_FLUSH_AT (64 * 1024)

/* Default and smallest bound of the bytes waiting for a slow reader (st_events_open). */
#define ST_EVENTS_BUFFER_DEFAULT (1024 * 1024)
#define ST_EVENTS_BUFFER_MIN 4096

/* Opens the stream: to path (appended, created 0644) when path is not NULL, to stdout when
 * to_stdout, or nowhere (tallies only). A path that is a FIFO must have its reader already.
 * When the stream is not a regular file it is written without blocking on loop (NULL: plain
 * blocking writes, for tools without a loop), with up to buffer_max bytes (0: the default;
 * at least ST_EVENTS_BUFFER_MIN) waiting for the reader. Returns 0 and *out (free with
 * st_events_close) or ST_E_IO / ST_E_NOMEM with a message naming the file; *out is NULL
 * then. */
int st_events_open(const char *path, int to_stdout, uv_loop_t *loop, size_t buffer_max,
		   struct st_events **out, char *err, size_t errlen);

/* Stops watching the fd on the loop (closes the poll handle); later events are still
 * written when the reader has room, or kept for st_events_close(). Call before the loop's
 * last run; safe to call twice. */
void st_events_detach(struct st_events *ev);

/* Writes out what waits for the reader, waiting for it at most a few seconds (the loop has
 * ended: nothing else is served), counts and logs what is still left as dropped, and frees
 * ev. NULL is allowed. */
void st_events_close(struct st_events *ev);

/* Events dropped so far because the reader did not keep up (or went away). */
uint64_t st_events_dropped(const struct st_events *ev);

/* Writes out now the lines that wait for the loop turn's end: for a reader of the file in
 * the same process. NULL is allowed. */
void st_events_flush(struct st_events *ev);

/* Lines gather for up to ms milliseconds (0, the default: until the loop turn's end) and
 * go out together: on a busy line many turns each end with a line or two, and every
 * write(2) of a few bytes costs the loop as much as a hundred lines. A reader sees each line
 * at most ms later; a fatal signal still writes them out (see above). The lines before the
 * first write still go out at their turn's end. */
void st_events_set_gather(struct st_events *ev, unsigned ms);

/* write(2) calls made so far: a loop turn's lines take one. */
uint64_t st_events_writes(const struct st_events *ev);

/* A JSON text being built. oom is set when the buffer could not grow: the text is then
 * incomplete and must not be used. Free p when done. */
struct st_jbuf {
	char *p;
	size_t len, cap;
	int oom;
};

/* Appends n bytes as they are. */
void st_jbuf_raw(struct st_jbuf *b, const char *s, size_t n);

/* Appends s as a JSON string the way jansson wrote the stream's strings before: '"', '\\' and
 * control characters escaped (\b \f \n \r \t, the others as \u00XX), every other byte as
 * it is; a string that is not well-formed UTF-8 (it came from a board) has each of its bytes
 * >= 0x80 and each control character replaced by '?'. NULL appends null. */
void st_jbuf_str(struct st_jbuf *b, const char *s);

/* Appends a finite v as jansson's JSON_REAL_PRECISION(10) did: "%.10g", ".0" added to a
 * whole number, the exponent without '+' or leading zeros. */
void st_jbuf_real(struct st_jbuf *b, double v);

/* Writes obj as one line after setting "ts" (and "station" when set). Takes obj's
 * reference. A write error is logged once; the run goes on (the ledger, not the stream, is
 * the record). */
void st_events_emit(struct st_events *ev, json_t *obj);

/* Also hands every line (without its newline) to fn(arg, line, len) as it is written, also
 * when the stream goes nowhere: the browser console forwards them to its pages. NULL: none.
 * fn must not emit events. */
typedef void (*st_events_tap_fn)(void *arg, const char *line, size_t len);
void st_events_set_tap(struct st_events *ev, st_events_tap_fn fn, void *arg);

/* Sets the station name that every line then carries (NULL: none). */
void st_events_set_station(struct st_events *ev, const char *station);

/* One state transition of a slot. device_id may be NULL. */
void st_events_state(struct st_events *ev, const char *slot, const char *from, const char *to,
		     const char *device_id);

/* An outcome: counted in the tally and written. start is the uv_hrtime() of the board's
 * first HELLO (for boards/hour), now the current uv_hrtime(). */
void st_events_outcome(struct st_events *ev, const struct st_outcome *o, uint64_t start,
		       uint64_t now);

/* The tallies so far (borrowed; valid until the next call into ev). */
const struct st_tally *st_events_tally(const struct st_events *ev);

/* Boards per hour over the span from the first board's HELLO to the last outcome; 0 when
 * fewer than one board finished. */
double st_tally_boards_per_hour(const struct st_tally *t);

/* The same as a whole number: the one boards/hour figure (operator.h's ST_BPH_LABEL) that
 * the live view, the summary, the summary event and the browser console all show. */
long long st_tally_bph(const struct st_tally *t);

/* The summary line: the tallies plus the fields of extra (borrowed; may be NULL), with
 * "elapsed_s" measured from run_start (uv_hrtime()) and "events_dropped" so far. */
void st_events_summary(struct st_events *ev, uint64_t run_start, uint64_t now,
		       const json_t *extra);

#endif
