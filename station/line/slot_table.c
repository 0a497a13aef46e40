/* The slot's state machine as one table: for every state, what it sends, which answers it
 * accepts, its timeout, and where each outcome leads. slot_set_state() (slot.c) refuses a
 * transition this table does not list; the handlers in slot.c carry the outcomes out.
 *
 * Columns: the request the state sends, the answer it takes, its wait (a field of
 * struct st_slot_limits), then the state each outcome leads to:
 *   ok        the answer is good, or the step is done
 *   error     an ERROR answer, an answer that fails a check, a refusal
 *   timeout   no answer after lim.tries transmissions (each lim.<wait> long)
 *   reboot    BOOT or ERROR HELLO: the board is greeted again and, the same board, resumed
 *   hangup    the port hung up: a board in flight keeps its state until the port is back
 *             (then "reboot") or lim.reconnect_ms have passed (then failed)
 *   nonsense  a damaged frame or an unusable answer: the same request again, byte for byte
 * and `also`, the other states a step may lead to. Stopping (stopped) is allowed from any
 * state, and every state of a board in flight may fail. */
#include "slot_int.h"

#include <stddef.h>

#define B(st) (1u << ST_SLOT_##st)
#define LIM(f) offsetof(struct st_slot_limits, f)
#define ST(x) ST_SLOT_##x

const struct slot_state_def slot_table[ST_SLOT_NSTATES] = {
	/* No port: opened on a timer. The port opens: waiting. */
	[ST_SLOT_OFFLINE] = { "offline", RQ_NONE, NULL, LIM(reopen_ms),
			      ST(WAITING), ST(OFFLINE), ST(OFFLINE), ST(OFFLINE), ST(OFFLINE),
			      ST(OFFLINE), 0 },
	/* HELLO probes (a new seq each time: nobody may be there); BOOT probes at once. */
	[ST_SLOT_WAITING] = { "waiting", RQ_PROBE, "HELLO", LIM(probe_ms),
			      ST(HELLO), ST(WAITING), ST(WAITING), ST(WAITING), ST(OFFLINE),
			      ST(WAITING), 0 },
	/* A board answered: its profile is chosen at once. */
	[ST_SLOT_HELLO] = { "hello", RQ_NONE, NULL, SLOT_NO_LIMIT,
			    ST(PROFILE), ST(FAILED), ST(HELLO), ST(HELLO), ST(HELLO), ST(HELLO),
			    0 },
	/* The device id is settled (from the board, made, or a sequence number from the
	 * ledger); then the line's rate if the board offers a faster one, else the CSR. */
	[ST_SLOT_PROFILE] = { "profile", RQ_NONE, NULL, SLOT_NO_LIMIT,
			      ST(CSR), ST(FAILED), ST(PROFILE), ST(PROFILE), ST(PROFILE),
			      ST(PROFILE), B(BAUD_ASK) },
	/* BAUD: answered with a rate the station can follow, the line switches and the board
	 * is greeted there; refused, unusable or unanswered, the CSR is asked at this rate. */
	[ST_SLOT_BAUD_ASK] = { "baud-ask", RQ_BAUD, "BAUD", LIM(hello_ms),
			       ST(BAUD_CONFIRM), ST(CSR), ST(CSR), ST(CSR), ST(BAUD_ASK),
			       ST(BAUD_ASK), 0 },
	/* HELLO at the new rate, each try within the board's trial: answered, the CSR at the
	 * new rate; ERROR or no answer, both sides fall back to the old rate (the fallback)
	 * and the CSR is asked there. Damaged frames do not hurry it (the timer decides, or
	 * the two sides would part at different rates). */
	[ST_SLOT_BAUD_CONFIRM] = { "baud-confirm", RQ_BAUD_HELLO, "HELLO", SLOT_NO_LIMIT,
				   ST(CSR), ST(CSR), ST(CSR), ST(CSR), ST(BAUD_CONFIRM),
				   ST(BAUD_CONFIRM), 0 },
	/* CSR chunks until the whole CSR is read and hashes as the board said (the signing
	 * pool checks it against the profile's policy, on a worker).
	 * Silence at a switched rate tries the other rate once (reboot column) before it
	 * fails. */
	[ST_SLOT_CSR] = { "csr", RQ_CSR, "CSR", LIM(csr_ms),
			  ST(CHECKED), ST(FAILED), ST(FAILED), ST(CSR), ST(CSR), ST(CSR), 0 },
	/* The CSR is read: the signing request is made and handed on. */
	[ST_SLOT_CHECKED] = { "checked", RQ_NONE, NULL, SLOT_NO_LIMIT,
			      ST(QUEUED), ST(FAILED), ST(CHECKED), ST(CHECKED), ST(CHECKED),
			      ST(CHECKED), 0 },
	/* In the signing pool or waiting for room in it; a note every queued_ms, never a
	 * failure for an HSM outage. Meanwhile the files that do not hold the certificate are
	 * written (slot_kick(): WRITE, with signed's wait and outcomes). */
	[ST_SLOT_QUEUED] = { "queued", RQ_NONE, NULL, LIM(queued_ms),
			     ST(SIGNED), ST(FAILED), ST(QUEUED), ST(QUEUED), ST(QUEUED),
			     ST(QUEUED), 0 },
	/* WRITE chunks, file by file, from what the board reports it has; ERROR OFFSET and
	 * ERROR HASH go on from what it has (bounded). */
	[ST_SLOT_SIGNED] = { "signed", RQ_WRITE, "WRITE", LIM(write_ms),
			     ST(WRITTEN), ST(FAILED), ST(FAILED), ST(SIGNED), ST(SIGNED),
			     ST(SIGNED), 0 },
	/* COMMIT; ERROR INCOMPLETE, or a reboot before it, writes again (bounded). */
	[ST_SLOT_WRITTEN] = { "written", RQ_COMMIT, "COMMIT", LIM(commit_ms),
			      ST(COMMITTED), ST(FAILED), ST(FAILED), ST(SIGNED), ST(WRITTEN),
			      ST(WRITTEN), B(SIGNED) },
	/* VERIFY pages: read-back hashes and the proof of possession; a reboot asks again with
	 * a new nonce. */
	[ST_SLOT_COMMITTED] = { "committed", RQ_VERIFY, "VERIFY", LIM(verify_ms),
				ST(VERIFIED), ST(FAILED), ST(FAILED), ST(COMMITTED),
				ST(COMMITTED), ST(COMMITTED), 0 },
	/* DONE pass. The board is provisioned: whatever happens now passes it. */
	[ST_SLOT_VERIFIED] = { "verified", RQ_DONE, "DONE", LIM(done_ms),
			       ST(PASS), ST(PASS), ST(PASS), ST(VERIFIED), ST(VERIFIED),
			       ST(VERIFIED), 0 },
	/* Passed: waits for the board to leave (or the port, gone, to come back). */
	[ST_SLOT_PASS] = { "pass", RQ_NONE, NULL, SLOT_NO_LIMIT,
			   ST(LEAVING), ST(LEAVING), ST(LEAVING), ST(LEAVING), ST(OFFLINE),
			   ST(LEAVING), 0 },
	/* DONE fail, one retransmission at most: telling a failed board is a courtesy. */
	[ST_SLOT_FAILED] = { "failed", RQ_DONE, "DONE", LIM(done_ms),
			     ST(LEAVING), ST(LEAVING), ST(LEAVING), ST(LEAVING), ST(OFFLINE),
			     ST(FAILED), 0 },
	/* A finished board: HELLO every presence_ms. The same board answers: it stays here (a
	 * failed one that rebooted starts again); another board, silence, or bytes at the
	 * starting rate on a switched line: waiting, where the next board is greeted. */
	[ST_SLOT_LEAVING] = { "leaving", RQ_PRESENCE, "HELLO", LIM(presence_ms),
			      ST(LEAVING), ST(LEAVING), ST(WAITING), ST(LEAVING), ST(OFFLINE),
			      ST(LEAVING), B(WAITING) },
	/* The station stops: nothing follows. */
	[ST_SLOT_STOPPED] = { "stopped", RQ_NONE, NULL, SLOT_NO_LIMIT,
			      ST(STOPPED), ST(STOPPED), ST(STOPPED), ST(STOPPED), ST(STOPPED),
			      ST(STOPPED), 0 },
};

const char *st_slot_state_name(enum st_slot_state s)
{
	return (unsigned)s < ST_SLOT_NSTATES ? slot_table[s].name : "?";
}

int st_slot_state_busy(enum st_slot_state s)
{
	return s >= ST_SLOT_HELLO && s <= ST_SLOT_FAILED;
}

int slot_transition_allowed(enum st_slot_state from, enum st_slot_state to)
{
	const struct slot_state_def *d;

	if ((unsigned)from >= ST_SLOT_NSTATES || (unsigned)to >= ST_SLOT_NSTATES)
		return 0;
	if (from == to || to == ST_SLOT_STOPPED)
		return 1;
	/* A board in flight may fail anywhere: its port may stay away, it may be echoed, ... */
	if (to == ST_SLOT_FAILED && st_slot_state_busy(from) && from != ST_SLOT_PASS &&
	    from != ST_SLOT_VERIFIED)
		return 1;
	d = &slot_table[from];
	return to == d->ok || to == d->error || to == d->timeout || to == d->reboot ||
	       to == d->hangup || to == d->nonsense || (d->also & (1u << to)) != 0;
}

unsigned slot_state_limit(enum st_slot_state s, const struct st_slot_limits *l)
{
	if ((unsigned)s >= ST_SLOT_NSTATES || slot_table[s].limit == SLOT_NO_LIMIT)
		return 0;
	return *(const unsigned *)((const char *)l + slot_table[s].limit);
}
