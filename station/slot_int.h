/* What the slot's files share (slot.c, slot_table.c, ...): the request kinds, the state
 * table and the transition function. Private to the slot: nothing outside station/slot*.c
 * includes it. */
#ifndef ST_SLOT_INT_H
#define ST_SLOT_INT_H

#include <stddef.h>
#include <stdint.h>

#include "slot.h"

/* What the outstanding request is for (st_slot.req_kind). A state's own request is in the
 * table; the HELLOs differ by what their answer means. */
enum req_kind {
	RQ_NONE,
	RQ_PROBE,         /* HELLO to an empty slot */
	RQ_PRESENCE,      /* HELLO to a finished board */
	RQ_PRESENCE_BOOT, /* HELLO to a finished board that announced a reboot (BOOT): a failed
			   * one that answers gets another go */
	RQ_RESYNC,        /* HELLO to a board in flight after a reboot or reconnect */
	RQ_RESYNC_RATE,   /* HELLO to a board in flight at the other rate, after silence at the
			   * switched one; unanswered, the board has hung */
	RQ_CSR,
	RQ_WRITE,
	RQ_COMMIT,
	RQ_VERIFY,
	RQ_DONE,
	RQ_BAUD,          /* BAUD: switch the line to a faster rate */
	RQ_BAUD_HELLO,    /* HELLO at the new rate: the switch is good when it is answered */
};

#define SLOT_NO_LIMIT ((size_t)-1)

/* One row of the state table: what the state does and where each outcome leads. A state
 * that an outcome leaves where it is names itself (a retransmission, a resume). */
struct slot_state_def {
	const char *name;        /* for logs, events and the view */
	enum req_kind sends;     /* the request sent on entry and until it is answered */
	const char *accepts;     /* the answers taken (besides ERROR); NULL: none */
	size_t limit;            /* offsetof(struct st_slot_limits, ...) of its wait, or
				  * SLOT_NO_LIMIT */
	enum st_slot_state ok;       /* the answer is good (or the step is done) */
	enum st_slot_state error;    /* an ERROR answer, or the answer fails a check */
	enum st_slot_state timeout;  /* no answer after every try */
	enum st_slot_state reboot;   /* BOOT, ERROR HELLO: greeted again (the same board) */
	enum st_slot_state hangup;   /* the port hung up (a board in flight waits for it) */
	enum st_slot_state nonsense; /* a damaged frame, an answer of the wrong type or seq */
	uint32_t also;               /* other states it may lead to (bit per state) */
};

/* The table, indexed by state. */
extern const struct slot_state_def slot_table[ST_SLOT_NSTATES];

/* Whether the table allows from -> to (the same state is always allowed: no transition). */
int slot_transition_allowed(enum st_slot_state from, enum st_slot_state to);

/* The wait of state s in ms under l, or 0 when it has none. */
unsigned slot_state_limit(enum st_slot_state s, const struct st_slot_limits *l);

#endif
