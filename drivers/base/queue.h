/* Intrusive queues: an element carries its own link members, its owner keeps a head and a
 * tail pointer, and nothing is allocated. The macros take the head, the tail, the element
 * and the names of its link members; arguments may be evaluated more than once, so pass
 * plain lvalues. Callers provide whatever locking the queue needs. */
#ifndef ST_QUEUE_H
#define ST_QUEUE_H

#include <stddef.h>

/* Singly linked, first in first out (link member next). */

/* Appends e. */
#define ST_QUEUE_PUSH(head, tail, e, next)        \
	do {                                      \
		(e)->next = NULL;                 \
		if (tail)                         \
			(tail)->next = (e);       \
		else                              \
			(head) = (e);             \
		(tail) = (e);                     \
	} while (0)

/* Puts e first. */
#define ST_QUEUE_PUSH_FRONT(head, tail, e, next)  \
	do {                                      \
		(e)->next = (head);               \
		(head) = (e);                     \
		if (!(tail))                      \
			(tail) = (e);             \
	} while (0)

/* Takes the first element out into e, which is NULL when the queue is empty. */
#define ST_QUEUE_POP(head, tail, e, next)         \
	do {                                      \
		(e) = (head);                     \
		if (e) {                          \
			(head) = (e)->next;       \
			if (!(head))              \
				(tail) = NULL;    \
			(e)->next = NULL;         \
		}                                 \
	} while (0)

/* Doubly linked (link members prev and next), for elements that leave from anywhere. */

/* Appends e. */
#define ST_LIST_APPEND(head, tail, e, prev, next) \
	do {                                      \
		(e)->next = NULL;                 \
		(e)->prev = (tail);               \
		if (tail)                         \
			(tail)->next = (e);       \
		else                              \
			(head) = (e);             \
		(tail) = (e);                     \
	} while (0)

/* Unlinks e, which must be in the list. */
#define ST_LIST_REMOVE(head, tail, e, prev, next)   \
	do {                                        \
		if ((e)->prev)                      \
			(e)->prev->next = (e)->next; \
		else                                \
			(head) = (e)->next;         \
		if ((e)->next)                      \
			(e)->next->prev = (e)->prev; \
		else                                \
			(tail) = (e)->prev;         \
		(e)->prev = (e)->next = NULL;       \
	} while (0)

#endif
