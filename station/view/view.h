/* The live view of `station run` on a terminal, for the operator at the line: which fixture
 * to look at.
 *
 * A header (totals, boards per hour, failures by reason, the signing pool, with a pause for
 * an absent HSM shown as a red bar, and, when production authorizations are in force, the
 * units each has left, in yellow once few are left and in red when none), then the slots:
 * one line each (name, state, device id, time in state, last error) when they fit the
 * terminal, else a grid with every slot as its short name and a state glyph in colour,
 * followed by the slots that need attention (failed boards with their reason, boards stuck
 * in one state, port problems). At the bottom, the recent log lines: while the view is on,
 * st_log lines go there (st_log_set_sink) instead of tearing the screen, and warnings and
 * errors among them are written out again when it closes.
 *
 * The view draws on the alternate screen of the terminal on stdout, at most ST_VIEW_HZ times
 * a second, rewriting only the lines that changed; no line is wider than the terminal
 * (TIOCGWINSZ, again on SIGWINCH). Writes never block the loop: the terminal is opened
 * again in non-blocking mode, and frames are skipped while it does not take them (scroll
 * lock). The normal screen comes back when the view closes, on Ctrl-Z, and on a crash
 * (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT) or exit(). Colours only when TERM is not "dumb"
 * and NO_COLOR is unset or empty.
 *
 * Loop thread only, except the log sink. */
#ifndef ST_VIEW_H
#define ST_VIEW_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#define ST_VIEW_HZ 4
#define ST_VIEW_EVENTS 64   /* recent log lines kept for the bottom of the view */
#define ST_VIEW_LINE_MAX 240 /* bytes of one such line kept */

struct st_view;
struct st_view_input;
struct st_slot_info;
struct st_tally;
struct st_pool_stats;
struct st_auth_set;

/* Fills in what the next frame shows (station, slots, tally, pool, started, stopping),
 * borrowed until the frame is drawn; the view sets the rest. Loop thread. */
typedef void (*st_view_input_fn)(struct st_view_input *in, void *arg);

/* Whether the view can draw on fd: a terminal, with TERM set and not "dumb". */
int st_view_usable(int fd);

/* Starts redrawing on stdout what input(in, arg) gives for each frame, and takes the log
 * lines (see above). Returns 0 and *out, or ST_E_NOMEM; *out is NULL then. */
int st_view_new(uv_loop_t *loop, st_view_input_fn input, void *arg, struct st_view **out);

/* Gives the log lines back to stderr, leaves the alternate screen, writes the warnings and
 * errors it showed to stderr (the last ones), and frees the view after its handles' close
 * callbacks. NULL and a second call are harmless. */
void st_view_close(struct st_view *v);

/* ---- Layout, for the view itself, tests and benchmarks ------------------------------- */

/* One recent log line. */
struct st_view_event {
	char hms[9]; /* local time "HH:MM:SS" */
	int level;   /* enum st_log_level */
	char text[ST_VIEW_LINE_MAX];
};

/* What one frame shows. Everything is borrowed for the call. */
struct st_view_input {
	const char *station;
	const struct st_slot_info *const *slots;
	size_t nslots;
	const struct st_tally *tally;
	const struct st_pool_stats *pool; /* NULL: the pool is closed */
	uint64_t now, started;            /* uv_hrtime() */
	int stopping;
	const struct st_view_event *events; /* oldest first */
	size_t nevents;
	const struct st_auth_set *auths;    /* production authorizations in force; NULL: none */
};

struct st_view_screen;

/* A screen to lay frames out on. Returns NULL when out of memory. Free with
 * st_view_screen_free(). */
struct st_view_screen *st_view_screen_new(void);
void st_view_screen_free(struct st_view_screen *sc);

/* Lays out one frame of in for a terminal of cols x rows, with ANSI colours when color.
 * Returns the number of lines (at most rows), each at most cols columns wide, or
 * ST_E_NOMEM. */
int st_view_screen_draw(struct st_view_screen *sc, const struct st_view_input *in, int cols,
			int rows, int color);

/* Line i of the last frame: text with its SGR escapes, NUL-terminated; *width (may be NULL)
 * gets its width in columns. Borrowed until the next draw. */
const char *st_view_screen_line(const struct st_view_screen *sc, int i, int *width);

#endif
