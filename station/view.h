/* The live view of `station run` on a terminal: every slot (name, state, device id, time in
 * state, last error), the totals, boards per hour, failures by reason and the signing pool,
 * redrawn in place with ANSI escapes at most ST_VIEW_HZ times a second. Readable at 256
 * slots: when one line per slot does not fit the terminal, slots are laid out in columns of
 * compact cells. Only for a terminal; without one the engine logs lines instead.
 * Loop thread only. */
#ifndef ST_VIEW_H
#define ST_VIEW_H

#include <uv.h>

#define ST_VIEW_HZ 4

struct st_engine;
struct st_view;

/* Starts redrawing the engine's state on stdout. Returns 0 and *out, or ST_E_NOMEM. */
int st_view_new(uv_loop_t *loop, const struct st_engine *e, struct st_view **out);

/* Draws the last frame, gives the terminal its cursor back, and frees the view (after its
 * timer's close callback). */
void st_view_close(struct st_view *v);

#endif
