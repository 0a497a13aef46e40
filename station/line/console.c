/* The operator console (console.h) on the registration server's H2O.
 *
 * Live pages. Each page's event stream is an H2O response that never ends: H2O takes one
 * buffer at a time (h2o_send) and calls proceed() once it is written, so each page has two
 * buffers: the one H2O is writing and the one messages are appended to meanwhile. A page
 * whose queue passes ST_CONSOLE_CLIENT_MAX is dropped (its socket shut down: H2O then closes
 * the connection itself, as http.c does when it stops); the browser's EventSource connects
 * again and gets a new snapshot, so a slow page costs itself a gap, never the station a
 * stall or unbounded memory.
 *
 * What pages are told about the slots comes from the slots themselves, ST_CONSOLE_HZ times a
 * second: only those that changed since the last time, each as the operator reads it
 * (operator.h: the same words, kinds and actions as the terminal view). However many events
 * a second the line makes, a page gets at most one update of each slot per tick. The engine's
 * event lines go to the pages as they come, for the recent outcomes and for other tools.
 *
 * A page's request memory (and the page's struct with it) belongs to H2O: the struct is a
 * shared chunk of the request's pool whose dispose callback unlinks it. Ledger reads hold
 * the same kind of link to their request and are freed once the read is back and the
 * request gone, whichever is last. */
#include "console.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <h2o.h>
#include <jansson.h>

#include "auth.h"
#include "err.h"
#include "events.h"
#include "http.h"
#include "ledger.h"
#include "ledger_export.h"
#include "log.h"
#include "operator.h"
#include "pool.h"
#include "slot.h"
#include "testhook.h"

#define RETRY_MS 2000	   /* how long a page's EventSource waits before it connects again */
#define MAX_VALUE 256	   /* bytes of a decoded query value */
#define MAX_QUERIES 4	   /* ledger reads at once */
#define MAX_ROWS 100	   /* rows of one ledger search */
#define PAGE_PATH "/console"
#define RECENT 40	   /* outcomes a new page gets in its snapshot */

struct buf {
	char *p;
	size_t len, cap;
};

/* One live page. */
struct client {
	h2o_generator_t gen; /* first: H2O hands it back to proceed() and stop() */
	struct st_console *c;
	h2o_req_t *req;
	struct buf pending; /* messages not yet handed to H2O */
	struct buf sending; /* handed to H2O, until proceed() */
	int in_flight;	    /* h2o_send() is outstanding */
	int gone;	    /* H2O stopped the response: nothing more is sent */
	int dropped;	    /* too slow: its socket is shut down */
	int ending;	    /* the final chunk goes once the queue is out */
	int ended;
	struct client *prev, *next;
};

/* What pages were last told about a slot (only changes are sent). */
struct seen {
	int valid;
	enum st_slot_state state;
	uint64_t since, handled;
	int last_pass, last_code, stuck;
	const char *word;
	uint32_t note; /* hash of the note */
	uint32_t text; /* hash of the device id and the last error */
};

struct st_console {
	uv_loop_t *loop;
	struct st_console_source src;
	char *station, *ledger_path;
	uv_timer_t tick;
	int tick_open;
	unsigned ticks;
	struct client *clients;
	unsigned nclients;
	unsigned queries; /* ledger reads on the threadpool */
	uint64_t seq;	  /* the last message id */
	struct seen *seen;
	size_t nseen;
	char *recent[RECENT]; /* the last outcome lines, a ring */
	size_t recent_head, nrecent;
	int stopping, closing;
	size_t client_max; /* ST_CONSOLE_CLIENT_MAX, or a test's (STATION_TEST_FAIL) */
	struct st_console_stats st;
};

/* ---- Buffers and text ------------------------------------------------------------------ */

static int buf_add(struct buf *b, const char *s, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		char *p;

		while (cap < b->len + n)
			cap *= 2;
		p = realloc(b->p, cap);
		if (!p)
			return -1;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	return 0;
}

/* Bytes a board or a file sent, as JSON text that shows what they were: printable ASCII,
 * newlines and tabs stay; any other byte is written as \xNN. Never NULL but out of memory. */
static json_t *printable(const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	struct buf b = { NULL, 0, 0 };
	json_t *j;

	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		char esc[4] = { '\\', 'x', hex[ch >> 4], hex[ch & 15] };

		/* A CR before a newline is the console's line end, not worth showing. */
		if (ch == '\r' && i + 1 < n && s[i + 1] == '\n')
			continue;
		if ((ch >= 0x20 && ch < 0x7f) || ch == '\n' || ch == '\t') {
			if (buf_add(&b, (const char *)&s[i], 1) < 0)
				break;
		} else if (buf_add(&b, esc, 4) < 0) {
			break;
		}
	}
	j = json_stringn(b.p ? b.p : "", b.len);
	free(b.p);
	return j;
}

static json_t *printable_str(const char *s)
{
	return printable(s ? s : "", s ? strlen(s) : 0);
}

static uint32_t fnv(uint32_t h, const char *s)
{
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

/* ---- What pages are told ----------------------------------------------------------------- */

static json_t *slot_json(const struct st_slot_info *s, uint64_t now, int paused)
{
	double ms = st_slot_info_ms(s, now);
	enum st_slot_kind k = st_slot_kind_of(s);
	const char *reason = st_slot_reason(s), *att;
	json_t *o = json_object();

	if (!o)
		return NULL;
	json_object_set_new(o, "i", json_integer(s->idx));
	json_object_set_new(o, "name", printable_str(s->name));
	json_object_set_new(o, "state", json_string(st_slot_state_name(s->state)));
	json_object_set_new(o, "kind", json_string(st_slot_kind_name(k)));
	json_object_set_new(o, "word", json_string(st_slot_word(s, ms)));
	json_object_set_new(o, "ms", json_integer((json_int_t)ms));
	json_object_set_new(o, "stuck", json_boolean(st_slot_is_stuck(s, k, ms, paused)));
	att = st_attention_name(st_slot_attention(s, k, ms, paused));
	json_object_set_new(o, "attention", att ? json_string(att) : json_null());
	json_object_set_new(o, "device_id", printable_str(s->device_id));
	json_object_set_new(o, "note", json_string(s->note));
	json_object_set_new(o, "reason", reason ? json_string(reason) : json_null());
	json_object_set_new(o, "error", printable_str(st_action_detail(s->last_error)));
	json_object_set_new(o, "handled", json_integer((json_int_t)s->handled));
	json_object_set_new(o, "passed", json_integer((json_int_t)s->passed));
	return o;
}

static int pool_paused(struct st_console *c, struct st_pool_stats *ps)
{
	memset(ps, 0, sizeof(*ps));
	if (!c->src.pool_stats || c->src.pool_stats(c->src.arg, ps) < 0)
		return -1;
	return ps->paused;
}

/* The tallies, the pool and the station's state: the header of the page. */
/* The production authorizations in force: units left of each as the ledger last said
 * (used null: not known yet), and whether few are left (the view's yellow). */
static json_t *auths_json(struct st_console *c)
{
	const struct st_auth_set *set = c->src.auths ? c->src.auths(c->src.arg) : NULL;
	size_t n = st_auth_set_count(set);
	json_t *arr = json_array();

	for (size_t i = 0; arr && i < n; i++) {
		const struct st_auth *a = st_auth_set_get(set, i);
		int64_t used = atomic_load(&a->used_seen);
		int64_t left = a->units - (used > 0 ? used : 0);

		json_array_append_new(arr, json_pack("{s:o,s:o,s:I,s:o,s:I,s:b}", "id",
						     printable_str(a->id), "lot",
						     printable_str(a->lot), "units",
						     (json_int_t)a->units, "used",
						     used < 0 ? json_null() :
								json_integer((json_int_t)used),
						     "left", (json_int_t)(left > 0 ? left : 0),
						     "low", used >= 0 && left <= st_auth_warn_below(a)));
	}
	return arr ? arr : json_null();
}

static json_t *tally_json(struct st_console *c, uint64_t now)
{
	const struct st_tally *t = c->src.tally ? c->src.tally(c->src.arg) : NULL;
	struct st_pool_stats ps;
	int open = pool_paused(c, &ps) >= 0;
	uint64_t started = c->src.started ? c->src.started(c->src.arg) : 0;
	json_t *o = json_object(), *by = json_array(), *pool;

	if (!o || !by) {
		json_decref(o);
		json_decref(by);
		return NULL;
	}
	if (t) {
		json_object_set_new(o, "boards", json_integer((json_int_t)t->boards));
		json_object_set_new(o, "passed", json_integer((json_int_t)t->passed));
		json_object_set_new(o, "failed", json_integer((json_int_t)t->failed));
		json_object_set_new(o, "abandoned", json_integer((json_int_t)t->abandoned));
		json_object_set_new(o, "reused", json_integer((json_int_t)t->reused));
		json_object_set_new(o, "boards_per_hour", json_integer(st_tally_bph(t)));
		for (size_t i = 0; i < t->nreasons; i++)
			json_array_append_new(by, json_pack("{s:s,s:I}", "reason",
							    t->reasons[i].reason, "count",
							    (json_int_t)t->reasons[i].count));
	}
	json_object_set_new(o, "by_reason", by);
	pool = json_pack("{s:b,s:b,s:s,s:f,s:I,s:I,s:I,s:I}", "open", open, "paused",
			 open && ps.paused, "reason", open && ps.paused ? ps.pause_reason : "",
			 "paused_s",
			 open && ps.paused && now > ps.paused_since ?
				 (double)(now - ps.paused_since) / 1e9 :
				 0.0,
			 "workers", (json_int_t)ps.workers, "in_pool", (json_int_t)ps.in_pool,
			 "signed", (json_int_t)ps.signed_, "pauses", (json_int_t)ps.pauses);
	json_object_set_new(o, "pool", pool ? pool : json_null());
	json_object_set_new(o, "authorizations", auths_json(c));
	json_object_set_new(o, "uptime_s",
			    json_real(started && now > started ? (double)(now - started) / 1e9 : 0));
	json_object_set_new(o, "stopping",
			    json_boolean(c->stopping ||
					 (c->src.stopping && c->src.stopping(c->src.arg))));
	return o;
}

static json_t *action_json(const struct st_action *a)
{
	return json_pack("{s:s,s:s,s:s,s:s}", "class", st_action_class_key(a->cls), "class_name",
			 st_action_class_name(a->cls), "words", a->words, "todo", a->todo);
}

/* Everything a new page needs: the labels, the action table, every slot, the tallies. */
static json_t *snapshot_json(struct st_console *c, uint64_t now)
{
	struct st_pool_stats ps;
	int paused = pool_paused(c, &ps) > 0;
	const struct st_slot_info *const *slots = NULL;
	size_t n = 0;
	json_t *o = json_object(), *actions = json_object(), *arr = json_array(), *classes;

	if (c->src.slots)
		slots = c->src.slots(c->src.arg, &n);
	if (!o || !actions || !arr) {
		json_decref(o);
		json_decref(actions);
		json_decref(arr);
		return NULL;
	}
	json_object_set_new(o, "event", json_string("snapshot"));
	json_object_set_new(o, "station", printable_str(c->station));
	json_object_set_new(o, "labels",
			    json_pack("{s:s,s:s}", "boards_per_hour", ST_BPH_LABEL,
				      "boards_per_hour_definition", ST_BPH_DEFINITION));
	json_object_set_new(o, "silent_ms", json_integer(ST_SILENT_MS));
	json_object_set_new(o, "stuck_ms", json_integer(ST_STUCK_MS));
	json_object_set_new(o, "ledger", json_boolean(c->ledger_path != NULL));
	json_object_set_new(o, "line", json_boolean(c->src.slots != NULL));
	for (size_t i = 0; i < st_action_count(); i++) {
		const struct st_action *a = st_action_at(i);

		json_object_set_new(actions, a->reason, action_json(a));
	}
	json_object_set_new(o, "actions", actions);
	json_object_set_new(o, "fallback", action_json(st_action_for(NULL)));
	classes = json_object();
	for (int k = 0; classes && k < ST_ACTION_NCLASSES; k++)
		json_object_set_new(classes, st_action_class_key((enum st_action_class)k),
				    json_string(st_action_class_name((enum st_action_class)k)));
	json_object_set_new(o, "classes", classes ? classes : json_null());
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, slot_json(slots[i], now, paused));
	json_object_set_new(o, "slots", arr);
	json_object_set_new(o, "tally", tally_json(c, now));
	arr = json_array();
	for (size_t i = 0; arr && i < c->nrecent; i++) {
		json_t *e = json_loads(c->recent[(c->recent_head + i) % RECENT], 0, NULL);

		if (e)
			json_array_append_new(arr, e);
	}
	json_object_set_new(o, "recent", arr ? arr : json_array());
	return o;
}

/* ---- Live pages -------------------------------------------------------------------------- */

static void client_flush(struct client *cl)
{
	struct buf t = cl->sending;
	h2o_iovec_t iov;

	cl->sending = cl->pending;
	cl->pending = t;
	cl->pending.len = 0;
	iov = h2o_iovec_init(cl->sending.p, cl->sending.len);
	cl->in_flight = 1;
	h2o_send(cl->req, &iov, 1, H2O_SEND_STATE_IN_PROGRESS);
}

static void client_final(struct client *cl)
{
	cl->ended = 1;
	cl->in_flight = 1;
	h2o_send(cl->req, NULL, 0, H2O_SEND_STATE_FINAL);
}

/* Shuts the page's socket: H2O's write fails, it closes the connection and stops the
 * response (on_stop), then disposes of the request (on_client_disposed). */
static void client_drop(struct client *cl)
{
	h2o_socket_t *sock = cl->req->conn->callbacks->get_socket ?
				     cl->req->conn->callbacks->get_socket(cl->req->conn) :
				     NULL;
	int fd = sock ? h2o_socket_get_fd(sock) : -1;

	cl->dropped = 1;
	cl->c->st.dropped++;
	st_notice("console: a page fell %u bytes behind; dropped (its browser connects again "
		  "and starts from a new snapshot)",
		  (unsigned)cl->pending.len);
	free(cl->pending.p);
	cl->pending = (struct buf){ NULL, 0, 0 };
	if (fd >= 0)
		shutdown(fd, SHUT_RDWR);
}

static void client_push(struct client *cl, const char *s, size_t n)
{
	if (cl->gone || cl->dropped || cl->ending || cl->ended)
		return;
	if (cl->pending.len + n > cl->c->client_max) {
		client_drop(cl);
		return;
	}
	if (buf_add(&cl->pending, s, n) < 0) {
		client_drop(cl);
		return;
	}
	if (!cl->in_flight)
		client_flush(cl);
}

static void client_end(struct client *cl)
{
	if (cl->gone || cl->dropped || cl->ended)
		return;
	cl->ending = 1;
	if (!cl->in_flight)
		client_final(cl);
}

static void on_proceed(h2o_generator_t *g, h2o_req_t *req)
{
	struct client *cl = (struct client *)g;

	(void)req;
	cl->in_flight = 0;
	cl->sending.len = 0;
	if (cl->gone || cl->dropped || cl->ended)
		return;
	if (cl->pending.len)
		client_flush(cl);
	else if (cl->ending)
		client_final(cl);
}

static void on_stop(h2o_generator_t *g, h2o_req_t *req)
{
	struct client *cl = (struct client *)g;

	(void)req;
	cl->gone = 1;
}

static void maybe_free(struct st_console *c);

static void on_client_disposed(void *p)
{
	struct client *cl = p;
	struct st_console *c = cl->c;

	if (cl->prev)
		cl->prev->next = cl->next;
	else
		c->clients = cl->next;
	if (cl->next)
		cl->next->prev = cl->prev;
	c->nclients--;
	free(cl->pending.p);
	free(cl->sending.p);
	maybe_free(c);
}

/* "id: N\ndata: JSON\n\n" to one page (cl) or to every page (cl NULL). */
static void send_message(struct st_console *c, struct client *cl, const char *json, size_t len)
{
	char head[48];
	struct buf m = { NULL, 0, 0 };
	int n = snprintf(head, sizeof(head), "id: %llu\ndata: ", (unsigned long long)++c->seq);

	if (buf_add(&m, head, (size_t)n) < 0 || buf_add(&m, json, len) < 0 ||
	    buf_add(&m, "\n\n", 2) < 0) {
		free(m.p);
		return;
	}
	for (struct client *k = cl ? cl : c->clients; k; k = cl ? NULL : k->next) {
		client_push(k, m.p, m.len);
		c->st.messages++;
		c->st.bytes += m.len;
	}
	free(m.p);
}

static void send_json(struct st_console *c, struct client *cl, json_t *o)
{
	char *s;

	if (!o)
		return;
	s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6));
	json_decref(o);
	if (s)
		send_message(c, cl, s, strlen(s));
	free(s);
}

/* Whether an event line is a board's outcome: "event" is the line's second key. */
static int is_outcome(const char *line, size_t len)
{
	static const char *const kinds[] = { "\"event\":\"pass\"", "\"event\":\"fail\"",
					     "\"event\":\"abandoned\"" };
	size_t head = len < 64 ? len : 64;

	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		if (memmem(line, head, kinds[i], strlen(kinds[i])))
			return 1;
	}
	return 0;
}

void st_console_event_line(void *arg, const char *line, size_t len)
{
	struct st_console *c = arg;

	if (is_outcome(line, len)) {
		char *copy = strndup(line, len);
		size_t at = (c->recent_head + c->nrecent) % RECENT;

		if (copy) {
			if (c->nrecent == RECENT) {
				free(c->recent[c->recent_head]);
				c->recent[c->recent_head] = copy;
				c->recent_head = (c->recent_head + 1) % RECENT;
			} else {
				c->recent[at] = copy;
				c->nrecent++;
			}
		}
	}
	if (c->nclients)
		send_message(c, NULL, line, len);
}

/* What a slot looks like to the pages now. */
static void seen_of(const struct st_slot_info *s, uint64_t now, int paused, struct seen *out)
{
	double ms = st_slot_info_ms(s, now);
	enum st_slot_kind k = st_slot_kind_of(s);

	memset(out, 0, sizeof(*out));
	out->valid = 1;
	out->state = s->state;
	out->since = s->since;
	out->handled = s->handled;
	out->last_pass = s->last_pass;
	out->last_code = s->last_code;
	out->stuck = st_slot_is_stuck(s, k, ms, paused);
	out->word = st_slot_word(s, ms);
	out->note = fnv(2166136261u, s->note);
	out->text = fnv(fnv(2166136261u, s->device_id), s->last_error);
}

static void remember_all(struct st_console *c, uint64_t now);

/* The slots that changed since pages were last told. */
static void send_changes(struct st_console *c, uint64_t now)
{
	struct st_pool_stats ps;
	int paused = pool_paused(c, &ps) > 0;
	const struct st_slot_info *const *slots;
	size_t n = 0;
	json_t *arr = NULL, *o;

	if (!c->src.slots)
		return;
	slots = c->src.slots(c->src.arg, &n);
	if (n != c->nseen) {
		/* New ports (a glob rescan): every page starts again from a snapshot, which
		 * tells them all of every slot. */
		remember_all(c, now);
		send_json(c, NULL, snapshot_json(c, now));
		return;
	}
	for (size_t i = 0; i < n; i++) {
		struct seen now_seen;

		seen_of(slots[i], now, paused, &now_seen);
		if (memcmp(&now_seen, &c->seen[i], sizeof(now_seen)) == 0)
			continue;
		c->seen[i] = now_seen;
		if (!arr)
			arr = json_array();
		if (arr)
			json_array_append_new(arr, slot_json(slots[i], now, paused));
	}
	if (!arr)
		return;
	o = json_pack("{s:s,s:o}", "event", "slots", "slots", arr);
	send_json(c, NULL, o);
}

/* The first page gets the slots as they are in its snapshot: what pages were told is what
 * they are now (no other page was told anything since). */
static void remember_all(struct st_console *c, uint64_t now)
{
	struct st_pool_stats ps;
	int paused = pool_paused(c, &ps) > 0;
	const struct st_slot_info *const *slots;
	size_t n = 0;

	if (!c->src.slots)
		return;
	slots = c->src.slots(c->src.arg, &n);
	if (n != c->nseen) {
		struct seen *s = realloc(c->seen, n * sizeof(*s));

		if (!s && n)
			return;
		c->seen = s;
		c->nseen = n;
	}
	for (size_t i = 0; i < n; i++)
		seen_of(slots[i], now, paused, &c->seen[i]);
}

static void on_tick(uv_timer_t *t)
{
	struct st_console *c = t->data;
	uint64_t now = uv_hrtime();

	c->ticks++;
	if (!c->nclients || c->stopping)
		return;
	send_changes(c, now);
	if (c->ticks % ST_CONSOLE_HZ == 0) {
		json_t *o = tally_json(c, now);

		if (o) {
			json_object_set_new(o, "event", json_string("tally"));
			send_json(c, NULL, o);
		}
	}
}

static void handle_events(struct st_console *c, struct st_http *h, h2o_req_t *req)
{
	struct client *cl;
	char head[32];
	int n;

	if (c->stopping) {
		st_http_respond_error(h, req, ST_E_HTTP_STOPPING, "the station is stopping");
		return;
	}
	if (c->nclients >= ST_CONSOLE_MAX_CLIENTS) {
		st_http_respond_error(h, req, ST_E_POOL_FULL,
				      "too many console pages are open; close one");
		return;
	}
	if (h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"))) {
		st_http_respond(h, req, 200, "text/event-stream", "", 0);
		return;
	}
	if (!c->nclients)
		remember_all(c, uv_hrtime());
	cl = h2o_mem_alloc_shared(&req->pool, sizeof(*cl), on_client_disposed);
	memset(cl, 0, sizeof(*cl));
	cl->gen.proceed = on_proceed;
	cl->gen.stop = on_stop;
	cl->c = c;
	cl->req = req;
	cl->next = c->clients;
	if (c->clients)
		c->clients->prev = cl;
	c->clients = cl;
	c->nclients++;
	req->res.status = 200;
	req->res.reason = "OK";
	h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
		       H2O_STRLIT("text/event-stream; charset=utf-8"));
	h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL,
		       H2O_STRLIT("no-store"));
	h2o_start_response(req, &cl->gen);
	n = snprintf(head, sizeof(head), "retry: %d\n\n", RETRY_MS);
	client_push(cl, head, (size_t)n);
	send_json(c, cl, snapshot_json(c, uv_hrtime()));
}

/* ---- Queries ----------------------------------------------------------------------------- */

/* The value of key in the request's query, percent-decoded ('+' a space), into out. Returns
 * 1, 0 when absent, -1 when malformed, longer than outlen - 1 or holding a control byte. */
static int query_get(h2o_req_t *req, const char *key, char *out, size_t outlen)
{
	const char *q, *end;
	size_t klen = strlen(key);

	if (req->query_at == SIZE_MAX)
		return 0;
	q = req->path.base + req->query_at + 1;
	end = req->path.base + req->path.len;
	while (q < end) {
		const char *amp = memchr(q, '&', (size_t)(end - q));
		const char *stop = amp ? amp : end;
		size_t o = 0;

		if ((size_t)(stop - q) > klen && memcmp(q, key, klen) == 0 && q[klen] == '=') {
			for (const char *p = q + klen + 1; p < stop; p++) {
				int ch = (unsigned char)*p;

				if (ch == '+') {
					ch = ' ';
				} else if (ch == '%') {
					unsigned char b;

					if (stop - p < 3 || h2o_hex_decode(&b, p + 1, 2) != 0)
						return -1;
					ch = b;
					p += 2;
				}
				if (ch < 0x20 || ch == 0x7f || o + 1 >= outlen)
					return -1;
				out[o++] = (char)ch;
			}
			out[o] = 0;
			return 1;
		}
		q = stop + 1;
	}
	return 0;
}

static void handle_slot(struct st_console *c, struct st_http *h, h2o_req_t *req)
{
	char name[ST_SLOT_MAX_NAME + 1], msg[160];
	const struct st_slot_info *const *slots = NULL;
	const struct st_slot_info *s = NULL;
	struct st_pool_stats ps;
	const struct st_action *a;
	const char *reason;
	size_t n = 0;
	json_t *o;
	char *body;

	if (query_get(req, "name", name, sizeof(name)) != 1) {
		st_http_respond_error(h, req, ST_E_HTTP_FIELD,
				      "/console/slot needs ?name=SLOT (a slot's name)");
		return;
	}
	if (c->src.slots)
		slots = c->src.slots(c->src.arg, &n);
	for (size_t i = 0; i < n && !s; i++) {
		if (strcmp(slots[i]->name, name) == 0)
			s = slots[i];
	}
	if (!s) {
		st_msgf(msg, sizeof(msg), "no slot is named %s", name);
		st_http_respond_error(h, req, ST_E_HTTP_NOT_FOUND, msg);
		return;
	}
	o = slot_json(s, uv_hrtime(), pool_paused(c, &ps) > 0);
	reason = st_slot_reason(s);
	a = st_action_for(reason);
	if (o) {
		json_object_set_new(o, "port", printable_str(s->path));
		json_object_set_new(o, "last_error", printable_str(s->last_error));
		if (reason)
			json_object_set_new(o, "action", action_json(a));
		json_object_set_new(o, "board",
				    json_pack("{s:o,s:o,s:o,s:o,s:o,s:o}", "hardware_id",
					      printable_str(s->board.hw), "sku",
					      printable_str(s->board.sku), "sn",
					      printable_str(s->board.sn), "firmware",
					      printable_str(s->board.fw), "key",
					      printable_str(s->board.key), "device_id",
					      printable_str(s->board.dev)));
		char *log = malloc(ST_SLOT_CONSOLE);
		size_t n = log && c->src.console_log ?
				   c->src.console_log(c->src.arg, s->idx, log, ST_SLOT_CONSOLE) : 0;

		json_object_set_new(o, "console", printable(log ? log : "", n));
		free(log);
	}
	body = o ? json_dumps(o, JSON_INDENT(1)) : NULL;
	json_decref(o);
	if (body)
		st_http_respond(h, req, 200, "application/json", body, strlen(body));
	else
		st_http_respond_error(h, req, ST_E_NOMEM, "out of memory");
	free(body);
}

/* ---- Ledger reads ------------------------------------------------------------------------ */

enum lq_kind { LQ_SEARCH, LQ_REPORT };

struct lq {
	uv_work_t work;
	struct st_console *c;
	struct st_http *h;
	h2o_req_t *req; /* NULL once H2O disposed of it */
	int done;	/* the read is back */
	enum lq_kind kind;
	char q[MAX_VALUE + 1]; /* a device id or a serial */
	char day[11];
	time_t from, to;
	char *ledger_path;
	/* Results. */
	int rc;
	char err[512];
	char *body;
	size_t len;
};

static void lq_free(struct lq *q)
{
	free(q->ledger_path);
	free(q->body);
	free(q);
}

static void on_lq_req_disposed(void *p)
{
	struct lq *q = *(struct lq **)p;

	q->req = NULL;
	if (q->done)
		lq_free(q);
}

struct search {
	const char *q;
	char serial[MAX_VALUE + 1]; /* q in lower case, when it may be a serial */
	json_t *rows;
	size_t n;
	int more;
};

static int search_row(const struct st_ledger_row *r, void *arg)
{
	struct search *s = arg;

	if (!(r->device_id && strcmp(r->device_id, s->q) == 0) &&
	    !(s->serial[0] && r->serial && strcmp(r->serial, s->serial) == 0))
		return 0;
	if (s->n == MAX_ROWS) {
		s->more = 1;
		return 1;
	}
	json_array_append_new(s->rows, st_export_row_json(r, ST_EXPORT_CERT_PEM));
	s->n++;
	return 0;
}

/* On the threadpool: opens the ledger read-only, reads, closes. */
static void lq_work(uv_work_t *w)
{
	struct lq *q = w->data;
	struct st_ledger *l = NULL;

	q->rc = st_ledger_open_flags(q->ledger_path, NULL, ST_LEDGER_NOCREATE, &l, q->err,
				     sizeof(q->err));
	if (q->rc < 0)
		return;
	if (q->kind == LQ_SEARCH) {
		struct search s = { q->q, "", json_array(), 0, 0 };
		size_t i;
		json_t *o;

		for (i = 0; q->q[i] && isxdigit((unsigned char)q->q[i]) && i < 40; i++)
			s.serial[i] = (char)tolower((unsigned char)q->q[i]);
		s.serial[q->q[i] ? 0 : i] = 0;
		q->rc = s.rows ? st_ledger_foreach(l, search_row, &s, q->err, sizeof(q->err)) :
				 ST_E_NOMEM;
		o = json_pack("{s:o,s:o,s:b}", "query", printable_str(q->q), "rows", s.rows, "more",
			      s.more);
		q->body = o && q->rc == 0 ? json_dumps(o, JSON_INDENT(1)) : NULL;
		json_decref(o);
		if (q->rc == 0 && !q->body)
			q->rc = st_errf(q->err, sizeof(q->err), ST_E_NOMEM, "out of memory");
	} else {
		FILE *f = open_memstream(&q->body, &q->len);
		struct st_export x = { f, 0, ST_EXPORT_CERT_NONE, -1, q->from, q->to, NULL, 0 };

		if (!f) {
			q->rc = st_errf(q->err, sizeof(q->err), ST_E_NOMEM, "out of memory");
		} else {
			st_export_header(&x);
			q->rc = st_ledger_foreach(l, st_export_row, &x, q->err, sizeof(q->err));
			if (fclose(f) != 0 || (q->rc == 0 && x.failed))
				q->rc = st_errf(q->err, sizeof(q->err), ST_E_NOMEM,
						"out of memory writing the report");
		}
	}
	st_ledger_close(l);
}

static void lq_after(uv_work_t *w, int status)
{
	struct lq *q = w->data;
	struct st_console *c = q->c;

	q->done = 1;
	c->queries--;
	if (q->req && status == 0 && q->rc == 0) {
		if (q->kind == LQ_SEARCH) {
			st_http_respond(q->h, q->req, 200, "application/json", q->body,
					strlen(q->body));
		} else {
			char disp[160];
			char name[64];
			size_t k = 0;

			/* A file name of the station's name without anything a header or a
			 * file system could mind. */
			for (const char *p = c->station; *p && k + 1 < sizeof(name); p++)
				name[k++] = isalnum((unsigned char)*p) || *p == '-' || *p == '.' ? *p : '_';
			name[k] = 0;
			snprintf(disp, sizeof(disp), "attachment; filename=\"%s-%s.csv\"", name,
				 q->day);
			h2o_add_header(&q->req->pool, &q->req->res.headers,
				       H2O_TOKEN_CONTENT_DISPOSITION, NULL,
				       h2o_strdup(&q->req->pool, disp, SIZE_MAX).base,
				       strlen(disp));
			st_http_respond(q->h, q->req, 200, "text/csv; charset=utf-8; header=present",
					q->body, q->len);
		}
	} else if (q->req) {
		st_http_respond_error(q->h, q->req, status < 0 ? ST_E_INTERNAL : q->rc,
				      status < 0 ? "the ledger read was cancelled" : q->err);
	}
	if (!q->req)
		lq_free(q);
	maybe_free(c);
}

static void start_query(struct st_console *c, struct st_http *h, h2o_req_t *req, struct lq *q)
{
	struct lq **link;

	q->c = c;
	q->h = h;
	q->req = req;
	q->work.data = q;
	q->ledger_path = strdup(c->ledger_path);
	if (!q->ledger_path || uv_queue_work(c->loop, &q->work, lq_work, lq_after) != 0) {
		st_http_respond_error(h, req, ST_E_NOMEM, "cannot start the ledger read");
		lq_free(q);
		return;
	}
	c->queries++;
	link = h2o_mem_alloc_shared(&req->pool, sizeof(*link), on_lq_req_disposed);
	*link = q;
}

/* "YYYY-MM-DD" -> the local midnights that begin and end that day. */
static int parse_day(const char *s, time_t *from, time_t *to)
{
	struct tm tm;
	int y, m, d;
	char tail;

	if (strlen(s) != 10 || sscanf(s, "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3 || y < 1970 ||
	    m < 1 || m > 12 || d < 1 || d > 31)
		return -1;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = m - 1;
	tm.tm_mday = d;
	tm.tm_isdst = -1;
	*from = mktime(&tm);
	if (tm.tm_mday != d) /* mktime carried 2024-02-30 into March */
		return -1;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = m - 1;
	tm.tm_mday = d + 1;
	tm.tm_isdst = -1;
	*to = mktime(&tm);
	return *from == (time_t)-1 || *to == (time_t)-1 ? -1 : 0;
}

static void handle_ledger(struct st_console *c, struct st_http *h, h2o_req_t *req, int report)
{
	struct lq *q;
	int r;

	if (!c->ledger_path) {
		st_http_respond_error(h, req, ST_E_HTTP_NOT_FOUND, "this station has no ledger");
		return;
	}
	if (c->queries >= MAX_QUERIES) {
		st_http_respond_error(h, req, ST_E_POOL_FULL,
				      "the ledger is busy with other console reads; try again");
		return;
	}
	q = calloc(1, sizeof(*q));
	if (!q) {
		st_http_respond_error(h, req, ST_E_NOMEM, "out of memory");
		return;
	}
	if (report) {
		q->kind = LQ_REPORT;
		r = query_get(req, "day", q->day, sizeof(q->day));
		if (r == 0) {
			time_t now = time(NULL);
			struct tm tm;

			localtime_r(&now, &tm);
			strftime(q->day, sizeof(q->day), "%Y-%m-%d", &tm);
		}
		if (r < 0 || parse_day(q->day, &q->from, &q->to) < 0) {
			st_http_respond_error(h, req, ST_E_HTTP_FIELD,
					      "/console/report.csv takes ?day=YYYY-MM-DD (the "
					      "station's local day; default today)");
			lq_free(q);
			return;
		}
	} else {
		q->kind = LQ_SEARCH;
		r = query_get(req, "q", q->q, sizeof(q->q));
		if (r != 1 || !q->q[0]) {
			st_http_respond_error(h, req, ST_E_HTTP_FIELD,
					      "/console/ledger takes ?q=DEVICE_ID or ?q=SERIAL "
					      "(hex), at most 256 bytes");
			lq_free(q);
			return;
		}
	}
	start_query(c, h, req, q);
}

/* ---- Routing ----------------------------------------------------------------------------- */

static int path_is(const h2o_req_t *req, const char *s)
{
	return h2o_memis(req->path_normalized.base, req->path_normalized.len, s, strlen(s));
}

int st_console_owns(const char *path, size_t len)
{
	return (len == 1 && path[0] == '/') ||
	       (len >= strlen(PAGE_PATH) && memcmp(path, PAGE_PATH, strlen(PAGE_PATH)) == 0 &&
		(len == strlen(PAGE_PATH) || path[strlen(PAGE_PATH)] == '/'));
}

void st_console_handle(struct st_console *c, struct st_http *h, struct st_h2o_req_t *req)
{
	char msg[256];

	if (path_is(req, "/")) {
		h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_LOCATION, NULL,
			       H2O_STRLIT(PAGE_PATH));
		st_http_respond(h, req, 302, "text/plain; charset=utf-8", "see /console\n", 14);
		return;
	}
	if (path_is(req, PAGE_PATH "/events")) {
		handle_events(c, h, req);
		return;
	}
	if (path_is(req, PAGE_PATH "/slot")) {
		handle_slot(c, h, req);
		return;
	}
	if (path_is(req, PAGE_PATH "/ledger") || path_is(req, PAGE_PATH "/report.csv")) {
		handle_ledger(c, h, req, path_is(req, PAGE_PATH "/report.csv"));
		return;
	}
	for (const struct st_console_asset *a = st_console_assets; a->path; a++) {
		if (path_is(req, a->path) ||
		    (strcmp(a->path, PAGE_PATH) == 0 && path_is(req, PAGE_PATH "/"))) {
			st_http_respond(h, req, 200, a->ctype, (const char *)a->data, a->len);
			return;
		}
	}
	st_msgf(msg, sizeof(msg),
		"no console resource %.*s; the console is at " PAGE_PATH,
		(int)(req->path_normalized.len > 128 ? 128 : req->path_normalized.len),
		req->path_normalized.base);
	st_http_respond_error(h, req, ST_E_HTTP_NOT_FOUND, msg);
}

static const struct st_console_asset *asset(const char *path)
{
	for (const struct st_console_asset *a = st_console_assets; a->path; a++) {
		if (strcmp(a->path, path) == 0)
			return a;
	}
	return NULL;
}

void st_console_unauthorized(struct st_console *c, struct st_http *h, struct st_h2o_req_t *req)
{
	const struct st_console_asset *login = asset(PAGE_PATH "/login");

	(void)c;
	if (login && (path_is(req, "/") || path_is(req, PAGE_PATH) || path_is(req, PAGE_PATH "/") ||
		      path_is(req, PAGE_PATH "/login"))) {
		st_http_respond(h, req, 401, login->ctype, (const char *)login->data, login->len);
		return;
	}
	st_http_respond_error(h, req, ST_E_HTTP_AUTH,
			      "the console names devices and their errors: beyond loopback it "
			      "needs a token this station accepts (the cookie station_token, or "
			      "an OSF-TOKEN header)");
}

/* ---- Life -------------------------------------------------------------------------------- */

/* STATION_TEST_FAIL=console.queue:BYTES (test builds only): a page falls behind once BYTES
 * wait for it, so a test sees a slow page dropped without making megabytes of events. */
static void test_hook(struct st_console *c)
{
#ifdef STATION_TEST_HOOKS
	const char *arg = st_test_hook("console.queue");

	if (arg)
		c->client_max = strtoul(arg, NULL, 10);
#else
	(void)c;
#endif
}

int st_console_new(uv_loop_t *loop, const struct st_console_source *src,
		   struct st_console **out)
{
	struct st_console *c = calloc(1, sizeof(*c));

	*out = NULL;
	if (!c)
		return ST_E_NOMEM;
	c->loop = loop;
	c->src = *src;
	c->station = strdup(src->station ? src->station : "");
	c->ledger_path = src->ledger_path ? strdup(src->ledger_path) : NULL;
	if (!c->station || (src->ledger_path && !c->ledger_path)) {
		free(c->station);
		free(c->ledger_path);
		free(c);
		return ST_E_NOMEM;
	}
	c->src.station = c->station;
	c->src.ledger_path = c->ledger_path;
	c->client_max = ST_CONSOLE_CLIENT_MAX;
	test_hook(c);
	uv_timer_init(loop, &c->tick);
	c->tick.data = c;
	c->tick_open = 1;
	uv_timer_start(&c->tick, on_tick, 1000 / ST_CONSOLE_HZ, 1000 / ST_CONSOLE_HZ);
	/* Pages are watched while there are any; they never keep the loop alive. */
	uv_unref((uv_handle_t *)&c->tick);
	*out = c;
	return 0;
}

void st_console_stop(struct st_console *c)
{
	json_t *o;

	if (!c || c->stopping)
		return;
	c->stopping = 1;
	o = tally_json(c, uv_hrtime());
	if (o) {
		json_object_set_new(o, "event", json_string("stopping"));
		send_json(c, NULL, o);
	}
	for (struct client *cl = c->clients; cl; cl = cl->next)
		client_end(cl);
}

static void maybe_free(struct st_console *c)
{
	if (!c->closing || c->tick_open || c->clients || c->queries)
		return;
	for (size_t i = 0; i < c->nrecent; i++)
		free(c->recent[(c->recent_head + i) % RECENT]);
	free(c->seen);
	free(c->station);
	free(c->ledger_path);
	free(c);
}

static void on_tick_closed(uv_handle_t *hd)
{
	struct st_console *c = hd->data;

	c->tick_open = 0;
	maybe_free(c);
}

void st_console_close(struct st_console *c)
{
	if (!c || c->closing)
		return;
	st_console_stop(c);
	c->closing = 1;
	uv_close((uv_handle_t *)&c->tick, on_tick_closed);
}

void st_console_stats(const struct st_console *c, struct st_console_stats *out)
{
	*out = c->st;
	out->clients = c->nclients;
}

const struct st_http_console_ops st_console_http = {
	st_console_owns, st_console_handle, st_console_unauthorized, st_console_stop,
};
