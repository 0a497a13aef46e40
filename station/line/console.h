/* The operator console: one page for the big screen beside the fixtures, served from memory
 * by the registration server (http.h) under /console and kept live over Server-Sent Events.
 * Read-only: nothing here signs, deletes or reconfigures anything; the page and every
 * resource answer GET and HEAD alone. The server applies its access rule to every console
 * resource as to /status (loopback open; beyond it client certificates, or tokens, which a
 * browser sends as the cookie station_token, see http.h).
 *
 * Resources:
 *   /console             the page (console/index.html, console.css, console.js embedded
 *                        at build time: no build step, no framework, nothing downloaded)
 *   /console/events      text/event-stream, one JSON object per message ("event" says
 *                        which): first a "snapshot" (every slot as the operator reads it,
 *                        the tallies, the action table, the labels), then every line of the
 *                        engine's event stream as --events writes it, "slots" with the slots
 *                        that changed (at most ST_CONSOLE_HZ times a second), and "tally"
 *                        once a second. A page opened mid-run is complete from its snapshot.
 *                        A client that does not keep up (more than ST_CONSOLE_CLIENT_MAX
 *                        bytes waiting for it) is dropped: its browser reconnects and starts
 *                        from a new snapshot; nothing ever waits for a client.
 *   /console/slot?name=NAME             JSON: one slot, its board, its last failure with
 *                        the action, and the console bytes the slot keeps (made printable)
 *   /console/ledger?device_id=ID | ?serial=HEX   JSON: the ledger rows of a device id or a
 *                        serial, as `station ledger export --format jsonl` writes them
 *   /console/report.csv?day=YYYY-MM-DD  the rows created that day (the station's local
 *                        time; default today) as `station ledger export --format csv` writes
 *                        them (RFC 4180)
 * Ledger reads run on libuv's threadpool with a read-only handle of their own (WAL: they
 * never wait for the station's writer, nor it for them); everything else on the loop.
 *
 * Loop thread only. */
#ifndef ST_CONSOLE_H
#define ST_CONSOLE_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#define ST_CONSOLE_HZ 4
#define ST_CONSOLE_CLIENT_MAX (4u << 20) /* bytes queued for one page, at most */
#define ST_CONSOLE_MAX_CLIENTS 64	 /* live pages at once */

struct st_console;
struct st_http;
struct st_h2o_req_t; /* h2o_req_t */
struct st_slot_info;
struct st_tally;
struct st_pool_stats;

/* What the console shows, read on the loop thread whenever it needs it. Every member but
 * station may be NULL: `station serve` has no slots and no tallies. */
struct st_console_source {
	const char *station;	 /* the station's name (copied) */
	const char *ledger_path; /* the ledger file (copied); NULL: no ledger search, no report */
	const struct st_slot_info *const *(*slots)(void *arg, size_t *n);
	const struct st_tally *(*tally)(void *arg);
	/* Fills *out and returns 0, or returns < 0 when the pool is closed. */
	int (*pool_stats)(void *arg, struct st_pool_stats *out);
	int (*stopping)(void *arg);
	uint64_t (*started)(void *arg); /* uv_hrtime() the run started */
	/* Copies slot idx's console log into buf (cap bytes) and returns its length (0: none).
	 * NULL: no slots. */
	size_t (*console_log)(void *arg, unsigned idx, char *buf, size_t cap);
	/* The production authorizations in force (auth.h), or NULL: none. */
	const struct st_auth_set *(*auths)(void *arg);
	void *arg;
};

/* A console on loop. Returns 0 and *out (st_console_close), or ST_E_NOMEM; *out is NULL then. */
int st_console_new(uv_loop_t *loop, const struct st_console_source *src,
		   struct st_console **out);

/* Whether path (without its query) is a console resource. Any thread. */
int st_console_owns(const char *path, size_t len);

/* Answers a GET or HEAD of a console resource on server h, whose access rule has passed. */
void st_console_handle(struct st_console *c, struct st_http *h, struct st_h2o_req_t *req);

/* Answers a console request that the access rule refused: 401, with a page that asks for a
 * token (and sets the cookie station_token) for the page's own paths, the server's JSON
 * error for the others. */
void st_console_unauthorized(struct st_console *c, struct st_http *h, struct st_h2o_req_t *req);

/* A line of the engine's event stream (st_events_set_tap: arg is the console): forwarded to
 * every live page. */
void st_console_event_line(void *arg, const char *line, size_t len);

/* The station is stopping: every live page is told so and its stream ends; new streams are
 * refused. Harmless twice. */
void st_console_stop(struct st_console *c);

/* The functions above as the registration server calls them (st_http_set_console). */
extern const struct st_http_console_ops st_console_http;

/* Stops, then frees the console once its last request is answered or gone and its ledger
 * reads are back (keep running the loop). NULL and a second call are harmless. */
void st_console_close(struct st_console *c);

/* Counters of the event streams, for tests and benchmarks. */
struct st_console_stats {
	unsigned clients;   /* live pages now */
	uint64_t messages;  /* messages queued to pages */
	uint64_t bytes;     /* bytes queued to pages */
	uint64_t dropped;   /* pages dropped for not keeping up */
};

void st_console_stats(const struct st_console *c, struct st_console_stats *out);

/* ---- For the page and the tests -------------------------------------------------------- */

/* One file of the page, embedded at build time (console_assets.c, made by CMake from
 * station/console/). The table ends with a NULL path. */
struct st_console_asset {
	const char *path; /* "/console", "/console/console.js", ... */
	const char *ctype;
	const unsigned char *data;
	size_t len;
};

extern const struct st_console_asset st_console_assets[];

#endif
