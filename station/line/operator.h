/* What the people at the line are told, in one place, so that the terminal view, the summary
 * of `station run` and the browser console say the same thing:
 *
 * - for each failure reason (the ST_ERR_MAP name an outcome carries, "CSR_SIGNATURE"), an
 *   action class (swap board / call engineer / retry), the reason in a few words and the
 *   instruction for the operator ("take the board out and put it in the reject bin");
 * - for a slot, the word for its state ("PASS", "FAIL", "write", "no answer") and its kind
 *   (what colour it gets), and whether it is stuck;
 * - boards/hour: one definition, one label.
 *
 * Pure functions over constant tables: any thread. */
#ifndef ST_OPERATOR_H
#define ST_OPERATOR_H

#include <stddef.h>
#include <stdint.h>

struct st_slot_info;

/* ---- Failures -------------------------------------------------------------------------- */

enum st_action_class {
	ST_ACTION_SWAP,	    /* this board is faulty: out, into the reject bin */
	ST_ACTION_ENGINEER, /* the line is wrong (firmware, profile, station): another board
			     * would fail the same way */
	ST_ACTION_RETRY,    /* nothing is known to be wrong with the board: reseat it and let
			     * it run again */
	ST_ACTION_NCLASSES,
};

/* The longest reason in words, in columns: with "call engineer: " before it, a failure's
 * cause fits an 80-column line beside the slot's name, device id and time. */
#define ST_ACTION_WORDS_MAX 34

struct st_action {
	const char *reason; /* the failure code's name; "" for the fallback entry */
	enum st_action_class cls;
	const char *words; /* the reason in words, ASCII, at most ST_ACTION_WORDS_MAX */
	const char *todo;  /* what the operator does, one sentence without a full stop */
};

/* The entry for a failure reason (the code's name, as outcomes and tallies carry it). An
 * unknown or NULL reason gets the fallback entry (call an engineer). Never NULL. */
const struct st_action *st_action_for(const char *reason);

/* Every entry, for tables sent elsewhere (the browser console): index 0 .. count-1. */
size_t st_action_count(void);
const struct st_action *st_action_at(size_t i);

/* "swap board", "call engineer", "retry". */
const char *st_action_class_name(enum st_action_class c);

/* "swap", "engineer", "retry": for machines (JSON, CSS classes). */
const char *st_action_class_key(enum st_action_class c);

/* A failure message without the words that only repeat what its reason says: "CSR
 * rejected: key is RSA-1024, ..." -> "key is RSA-1024, ...", "CSR_SIGNATURE: ..." -> "...".
 * Returns a pointer into msg. */
const char *st_action_detail(const char *msg);

/* ---- Slots ----------------------------------------------------------------------------- */

/* A slot waiting this long without an answer to its HELLO probes says "no answer" instead of
 * "waiting" (an open port and silence: an empty fixture, or a board that does not talk);
 * `station run --until-idle` counts it as an empty fixture. */
#define ST_SILENT_MS 10000

/* A busy slot this long in one state is stuck (unless it waits for signing while the pool
 * is paused: the pause banner says why). */
#define ST_STUCK_MS 30000

/* What colour a slot gets. */
enum st_slot_kind {
	ST_KIND_OFFLINE, /* no port */
	ST_KIND_WAITING, /* port open, no board (or a silent one) */
	ST_KIND_BUSY,	 /* a board in flight */
	ST_KIND_PASS,	 /* the last board passed (and may still be in the fixture) */
	ST_KIND_FAIL,	 /* the last board failed (and may still be in the fixture) */
	ST_KIND_STOPPED, /* the station stopped before any board came */
};
#define ST_KIND_COUNT (ST_KIND_STOPPED + 1)

/* "offline", "waiting", "busy", "pass", "fail", "stopped". */
const char *st_slot_kind_name(enum st_slot_kind k);

enum st_slot_kind st_slot_kind_of(const struct st_slot_info *s);

/* The word for the slot's state as the operator reads it: "PASS", "FAIL", "hello", "csr",
 * "queued", "write", "commit", "verify", "done", "waiting", "no answer" (waiting for
 * ms_in_state >= ST_SILENT_MS), "offline", "left", "stopped". At most 9 columns. */
const char *st_slot_word(const struct st_slot_info *s, double ms_in_state);

/* Whether a slot of kind k that has been ms in its state is stuck (paused: the signing pool
 * waits for the HSM or the ledger). */
int st_slot_is_stuck(const struct st_slot_info *s, enum st_slot_kind k, double ms, int paused);

/* Why a slot needs the operator, most urgent first. */
enum st_attention {
	ST_ATT_NONE,
	ST_ATT_FAILED,	/* its board failed: take the action */
	ST_ATT_STUCK,	/* busy for ST_STUCK_MS in one state */
	ST_ATT_NOTE,	/* busy with something worth knowing (port gone, retrying, ...) */
	ST_ATT_PROBLEM, /* no board, but a problem: a port that cannot be opened, a board that
			 * answers HELLO with an error, an echoing port */
};

/* Whether and why the slot (of kind k, ms in its state) is listed for the operator. */
enum st_attention st_slot_attention(const struct st_slot_info *s, enum st_slot_kind k, double ms,
				    int paused);

/* "failed", "stuck", "busy", "problem"; NULL for ST_ATT_NONE. */
const char *st_attention_name(enum st_attention a);

/* The failure reason (code name) of the slot's last board, or NULL when it has none. */
const char *st_slot_reason(const struct st_slot_info *s);

/* ---- Throughput ------------------------------------------------------------------------ */

/* The label of the one throughput figure, st_tally_bph(), everywhere it is shown. */
#define ST_BPH_LABEL "boards/hour"
/* And its definition, for help texts and documentation. */
#define ST_BPH_DEFINITION                                                                     \
	"boards finished (passed or failed) per hour, from the first board's HELLO to the last " \
	"board's outcome"

#endif
