/* The ledger's updates as the loop thread asks for them: a board's certificate delivered or
 * failed, the next number of a device id sequence, the check of one a board reports. Every ledger call blocks on disk, so they
 * are carried out on the ledger thread that owns the handle (the signing pool's:
 * st_pool_ledger()), in the transactions it commits for signing anyway, so updates and
 * signing that wait together share one fsync. Each callback runs on the loop thread once its
 * update is committed (or has failed). The queue lives as long as the pool that offers it.
 * Loop thread only. */
#ifndef ST_LEDGER_QUEUE_H
#define ST_LEDGER_QUEUE_H

#include <stddef.h>
#include <stdint.h>

struct st_ledger_queue;

/* Result of an update, on the loop thread: rc is 0 or a negative ST_E_* code with err;
 * value is the number st_ledger_queue_next_sequence() allocated. */
typedef void (*st_ledger_op_cb)(int rc, const char *err, uint64_t value, void *arg);

/* st_ledger_mark_delivered() and st_ledger_mark_failed() of a row (ledger.h); cb may be
 * NULL, and then the mark is grouped with others: it rides with the next commit, or waits
 * at most the pool's mark delay (pool.h: st_pool_ledger) for one. Return 0, or ST_E_POOL_CLOSED (the pool is closing), ST_E_NOMEM, ST_E_INVAL
 * (row_id <= 0, no reason) without calling cb. */
int st_ledger_queue_mark_delivered(struct st_ledger_queue *q, int64_t row_id,
				   st_ledger_op_cb cb, void *arg);
int st_ledger_queue_mark_failed(struct st_ledger_queue *q, int64_t row_id, const char *reason,
				st_ledger_op_cb cb, void *arg);

/* Allocates the next number of the sequence of device ids with prefix
 * (st_ledger_next_sequence(): unique, increasing, never reused); cb gets it as value and
 * must not be NULL. Returns as above. */
int st_ledger_queue_next_sequence(struct st_ledger_queue *q, const char *prefix,
				  st_ledger_op_cb cb, void *arg);

/* Whether the ledger issued device_id, a sequence id whose first prefix_len bytes are its
 * prefix and the rest its number (from 1 to below the sequence's next): cb gets rc 0, or
 * ST_E_SLOT_ID_UNISSUED with the message to fail the board with, once the id is flagged
 * (with slot, which may be NULL) in the same commit; value is the sequence's next. cb must
 * not be NULL. Returns as above (ST_E_INVAL also for a prefix_len that leaves no
 * number). */
int st_ledger_queue_check_sequence(struct st_ledger_queue *q, const char *device_id,
				   size_t prefix_len, const char *slot, st_ledger_op_cb cb,
				   void *arg);

#endif
