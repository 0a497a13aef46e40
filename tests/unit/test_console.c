/* The operator console (console.h) on a real registration server, over real sockets: a page's
 * event stream starts with a snapshot of every slot and the action table, carries the event
 * lines in order with rising ids and the slots that changed, and ends when the station
 * stops; the tallies carry a signing pause and its reason; a page that does not read is dropped once its queue passes the limit while another
 * page goes on; the console's resources answer GET and HEAD only, refuse malformed queries,
 * show a slot's console bytes as printable text, and read the ledger. The loop runs in this
 * thread; every wait is a bounded number of loop turns. */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "ca.h"
#include "config.h"
#include "auth.h"
#include "console.h"
#include "err.h"
#include "events.h"
#include "http.h"
#include "pool.h"
#include "slot.h"
#include "testutil.h"

#define NSLOTS 12
#define TURNS 4000 /* loop turns a wait may take (each at most 5 ms idle) */

struct fx {
	char dir[4096], ledger[4200];
	uv_loop_t loop;
	EVP_PKEY *key;
	X509 *cert;
	struct st_ca *ca;
	struct drv_signer *signer;
	struct st_pool *pool;
	struct st_profiles *profiles;
	struct st_http *http;
	struct st_console *console;
	struct st_slot_info *slots[NSLOTS];
	char console1[64]; /* slot 1's console log (src_console) */
	struct st_auth_set *auths; /* src_auths; NULL: none */
	size_t console1_len;
	struct st_tally tally;
	int stopping;
	const char *pause; /* the pool reports a pause with this reason */
	int pool_closed, http_closed;
	unsigned short port;
};

/* A client socket and what it has read. */
struct client {
	int fd;
	char *buf;
	size_t len, cap;
	int eof;
};

/* ---- The station's side ---------------------------------------------------------------- */

static const struct st_auth_set *src_auths(void *arg)
{
	return ((struct fx *)arg)->auths;
}

/* Slot 1's console log (the test sets it); the others have none. */
static size_t src_console(void *arg, unsigned idx, char *buf, size_t cap)
{
	struct fx *fx = arg;
	size_t n = fx->console1_len < cap ? fx->console1_len : cap;

	if (idx != 1)
		return 0;
	memcpy(buf, fx->console1, n);
	return n;
}

static const struct st_slot_info *const *src_slots(void *arg, size_t *n)
{
	struct fx *fx = arg;

	*n = NSLOTS;
	return (const struct st_slot_info *const *)fx->slots;
}

static const struct st_tally *src_tally(void *arg)
{
	return &((struct fx *)arg)->tally;
}

static int src_pool(void *arg, struct st_pool_stats *out)
{
	struct fx *fx = arg;

	if (!fx->pool)
		return -1;
	st_pool_stats(fx->pool, out);
	if (fx->pause) {
		out->paused = 1;
		snprintf(out->pause_reason, sizeof(out->pause_reason), "%s", fx->pause);
	}
	return 0;
}

static int src_stopping(void *arg)
{
	return ((struct fx *)arg)->stopping;
}

static struct st_profiles *profiles(void *arg)
{
	return st_profiles_ref(((struct fx *)arg)->profiles);
}

static int setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	struct st_pool_config pc;
	struct st_config_http hc;
	struct st_http_env env;
	struct st_console_source src;
	char key_path[4200], err[512] = "";
	const char *d = tu_tmpdir("console");

	if (!fx || !d)
		return -1;
	snprintf(fx->dir, sizeof(fx->dir), "%s", d);
	snprintf(fx->ledger, sizeof(fx->ledger), "%s/ledger.db", fx->dir);
	snprintf(key_path, sizeof(key_path), "%s/ca.key", fx->dir);
	if (uv_loop_init(&fx->loop) != 0)
		return -1;
	fx->key = EVP_EC_gen("prime256v1");
	fx->cert = tu_ca_template(fx->key, "Local-CA", "acme-factory", 3650);
	if (!fx->cert || X509_sign(fx->cert, fx->key, EVP_sha256()) <= 0 ||
	    st_ca_from_x509(fx->cert, NULL, fx->cert, "test CA", &fx->ca, err, sizeof(err)) != 0 ||
	    tu_file_signer(key_path, fx->key, &fx->signer, err, sizeof(err)) != 0) {
		fprintf(stderr, "PKI: %s\n", err);
		return -1;
	}
	st_pool_config_default(&pc);
	pc.workers = 1;
	pc.station = "test-station";
	pc.ledger_path = fx->ledger;
	if (st_pool_new(&fx->loop, &pc, fx->ca, fx->signer, &fx->pool, err, sizeof(err)) != 0) {
		fprintf(stderr, "pool: %s\n", err);
		return -1;
	}
	fx->profiles = st_profiles_new();
	memset(&hc, 0, sizeof(hc));
	hc.listen = "127.0.0.1:0";
	env = (struct st_http_env){ fx->pool, fx->ca, profiles, fx };
	if (st_http_start(&fx->loop, &hc, &env, &fx->http, err, sizeof(err)) != 0) {
		fprintf(stderr, "http: %s\n", err);
		return -1;
	}
	fx->port = (unsigned short)atoi(strrchr(st_http_url(fx->http), ':') + 1);
	for (int i = 0; i < NSLOTS; i++) {
		struct st_slot_info *s = calloc(1, sizeof(*s));

		if (!s)
			return -1;
		s->idx = (unsigned)i;
		snprintf(s->name, sizeof(s->name), "A%d", i);
		s->state = i % 2 ? ST_SLOT_CSR : ST_SLOT_WAITING;
		s->since = uv_hrtime();
		s->last_pass = -1;
		fx->slots[i] = s;
	}
	src = (struct st_console_source){ "test-station", fx->ledger, src_slots, src_tally,
					  src_pool,	  src_stopping, NULL,	   src_console, src_auths,
					  fx };
	if (st_console_new(&fx->loop, &src, &fx->console) != 0)
		return -1;
	st_http_set_console(fx->http, fx->console, &st_console_http);
	*state = fx;
	return 0;
}

static void on_pool_closed(void *arg)
{
	((struct fx *)arg)->pool_closed = 1;
}

static void on_http_closed(void *arg)
{
	((struct fx *)arg)->http_closed = 1;
}

static int teardown(void **state)
{
	struct fx *fx = *state;
	int rc;

	st_http_close(fx->http, on_http_closed, fx);
	st_console_close(fx->console);
	st_pool_close(fx->pool, on_pool_closed, fx);
	fx->pool = NULL;
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	rc = uv_loop_close(&fx->loop);
	if (rc != 0 || !fx->pool_closed || !fx->http_closed)
		fprintf(stderr, "the loop did not close cleanly: %s\n", uv_strerror(rc));
	for (int i = 0; i < NSLOTS; i++)
		free(fx->slots[i]);
	st_profiles_unref(fx->profiles);
	st_auth_set_unref(fx->auths);
	drv_signer_close(fx->signer);
	st_ca_free(fx->ca);
	X509_free(fx->cert);
	EVP_PKEY_free(fx->key);
	if (tu_rmtree(fx->dir) != 0)
		rc = -1;
	free(fx);
	return rc == 0 ? 0 : -1;
}

/* ---- The client's side ----------------------------------------------------------------- */

static void client_open(struct fx *fx, struct client *c, const char *request, int rcvbuf)
{
	struct sockaddr_in a;

	memset(c, 0, sizeof(*c));
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	assert_true(c->fd >= 0);
	if (rcvbuf)
		setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons(fx->port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(c->fd, (struct sockaddr *)&a, sizeof(a)) != 0)
		assert_int_equal(errno, EINPROGRESS);
	/* The request is small: it fits the socket buffer once the connection is up. */
	for (int i = 0; i < TURNS; i++) {
		struct pollfd p = { c->fd, POLLOUT, 0 };

		uv_run(&fx->loop, UV_RUN_NOWAIT);
		if (poll(&p, 1, 5) == 1)
			break;
	}
	assert_int_equal(write(c->fd, request, strlen(request)), (ssize_t)strlen(request));
}

/* Reads what has arrived; returns the bytes read. */
static size_t client_read(struct client *c)
{
	size_t got = 0;

	for (;;) {
		ssize_t n;

		if (c->cap - c->len < 65537) {
			c->cap = c->cap ? c->cap * 2 : 1 << 17;
			c->buf = realloc(c->buf, c->cap);
			assert_non_null(c->buf);
		}
		n = read(c->fd, c->buf + c->len, c->cap - c->len - 1);
		if (n > 0) {
			c->len += (size_t)n;
			c->buf[c->len] = 0;
			got += (size_t)n;
			continue;
		}
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			c->eof = 1;
		return got;
	}
}

static void client_close(struct client *c)
{
	close(c->fd);
	free(c->buf);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
}

/* Turns the loop and reads until what the client has read contains want (or, want NULL,
 * until the server closed the connection). */
static void pump_until(struct fx *fx, struct client *c, const char *want)
{
	for (int i = 0; i < TURNS; i++) {
		struct pollfd p = { c->fd, POLLIN, 0 };

		uv_run(&fx->loop, UV_RUN_NOWAIT);
		if (poll(&p, 1, 5) == 1)
			client_read(c);
		if (want ? c->buf && strstr(c->buf, want) != NULL : c->eof)
			return;
	}
	fail_msg("waited in vain for %s; read %zu bytes: %.2000s", want ? want : "the end",
		 c->len, c->buf ? c->buf : "");
}

/* One whole request: the status, and the body (dechunked) in *body (free). */
static int request(struct fx *fx, const char *method, const char *path, char **body)
{
	struct client c;
	char req[1024], *b, *out;
	int status = 0;
	size_t o = 0;

	snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
		 method, path);
	client_open(fx, &c, req, 0);
	pump_until(fx, &c, NULL);
	assert_true(sscanf(c.buf, "HTTP/1.1 %d", &status) == 1);
	b = strstr(c.buf, "\r\n\r\n");
	assert_non_null(b);
	b += 4;
	out = calloc(1, c.len + 1);
	assert_non_null(out);
	if (strcasestr(c.buf, "transfer-encoding: chunked")) {
		for (;;) {
			char *end;
			unsigned long n = strtoul(b, &end, 16);

			if (n == 0 || !strstr(end, "\r\n"))
				break;
			b = strstr(end, "\r\n") + 2;
			memcpy(out + o, b, n);
			o += n;
			b += n + 2;
		}
	} else {
		o = c.len - (size_t)(b - c.buf);
		memcpy(out, b, o);
	}
	out[o] = 0;
	*body = out;
	client_close(&c);
	return status;
}

/* The JSON of the last whole "data: " line in the stream that holds needle, or NULL. */
static json_t *message(const struct client *c, const char *needle)
{
	const char *p = c->buf, *found = NULL, *eol;

	while (p && (p = strstr(p, "data: ")) != NULL) {
		eol = strchr(p, '\n');
		if (eol && memmem(p, (size_t)(eol - p), needle, strlen(needle)))
			found = p;
		p = eol;
	}
	return found ? json_loadb(found + 6, (size_t)(strchr(found, '\n') - found - 6), 0, NULL) :
		       NULL;
}

/* Turns the loop until a whole message holding needle has arrived; returns it. */
static json_t *wait_message(struct fx *fx, struct client *c, const char *needle)
{
	for (int i = 0; i < TURNS; i++) {
		struct pollfd p = { c->fd, POLLIN, 0 };
		json_t *o;

		uv_run(&fx->loop, UV_RUN_NOWAIT);
		if (poll(&p, 1, 5) == 1)
			client_read(c);
		o = c->buf ? message(c, needle) : NULL;
		if (o)
			return o;
	}
	fail_msg("no message with %s; read %zu bytes", needle, c->len);
	return NULL;
}

/* ---- Tests ----------------------------------------------------------------------------- */

static void test_stream(void **state)
{
	struct fx *fx = *state;
	struct client c;
	json_t *snap, *slots, *o;
	unsigned long last = 0;
	const char *p;

	client_open(fx, &c,
		    "GET /console/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n",
		    0);
	snap = wait_message(fx, &c, "\"event\":\"snapshot\"");
	assert_non_null(strcasestr(c.buf, "content-type: text/event-stream"));
	assert_non_null(strstr(c.buf, "retry: 2000"));
	slots = json_object_get(snap, "slots");
	assert_int_equal(json_array_size(slots), NSLOTS);
	for (size_t i = 0; i < NSLOTS; i++) {
		json_t *s = json_array_get(slots, i);

		assert_string_equal(json_string_value(json_object_get(s, "name")),
				    fx->slots[i]->name);
		assert_string_equal(json_string_value(json_object_get(s, "word")),
				    i % 2 ? "csr" : "waiting");
	}
	o = json_object_get(json_object_get(snap, "actions"), "CSR_SIGNATURE");
	assert_string_equal(json_string_value(json_object_get(o, "class")), "swap");
	assert_string_equal(json_string_value(json_object_get(o, "todo")),
			    "take the board out and put it in the reject bin");
	assert_string_equal(json_string_value(json_object_get(json_object_get(snap, "labels"),
							      "boards_per_hour")),
			    "boards/hour");
	json_decref(snap);

	/* Event lines as they come, in order, each with a higher id. */
	st_console_event_line(fx->console, "{\"event\":\"state\",\"n\":1}", 23);
	st_console_event_line(fx->console, "{\"event\":\"state\",\"n\":2}", 23);
	st_console_event_line(fx->console, "{\"event\":\"fail\",\"n\":3}", 22);
	pump_until(fx, &c, "\"n\":3}");
	p = c.buf;
	for (int n = 1; n <= 3; n++) {
		char want[32];
		const char *at, *id;

		snprintf(want, sizeof(want), "\"n\":%d}", n);
		at = strstr(p, want);
		assert_non_null(at);
		for (id = at; id > c.buf && strncmp(id, "id: ", 4) != 0; id--)
			;
		assert_true(strtoul(id + 4, NULL, 10) > last);
		last = strtoul(id + 4, NULL, 10);
		p = at;
	}

	/* A slot that fails is sent again, as the operator reads it. */
	fx->slots[3]->state = ST_SLOT_LEAVING;
	fx->slots[3]->last_pass = 0;
	fx->slots[3]->last_code = ST_E_CSR_KEY_TYPE;
	snprintf(fx->slots[3]->last_error, sizeof(fx->slots[3]->last_error),
		 "CSR_KEY_TYPE: CSR rejected: key is RSA-1024");
	o = wait_message(fx, &c, "\"reason\":\"CSR_KEY_TYPE\"");
	slots = json_object_get(o, "slots");
	assert_int_equal(json_array_size(slots), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(slots, 0), "kind")),
			    "fail");
	assert_string_equal(json_string_value(json_object_get(json_array_get(slots, 0), "error")),
			    "key is RSA-1024");
	json_decref(o);

	/* Signing pauses (the HSM is away): the tallies say so with the reason, once a
	 * second, and the slot waiting for its certificate is not stuck. */
	fx->tally.boards = 7;
	fx->tally.passed = 6;
	fx->tally.failed = 1;
	fx->pause = "pkcs11: C_Sign: CKR_DEVICE_REMOVED";
	/* An authorization with one unit of ten left: the tallies name it, as running low. */
	{
		struct st_auth *a = calloc(1, sizeof(*a));

		assert_non_null(a);
		a->id = strdup("auth-1");
		a->lot = strdup("LOT-7");
		a->units = 10;
		atomic_store(&a->used_seen, 9);
		fx->auths = st_auth_set_new();
		assert_non_null(fx->auths);
		assert_int_equal(st_auth_set_add(fx->auths, a), 0);
	}
	o = wait_message(fx, &c, "CKR_DEVICE_REMOVED");
	assert_string_equal(json_string_value(json_object_get(o, "event")), "tally");
	assert_true(json_is_true(json_object_get(json_object_get(o, "pool"), "paused")));
	assert_int_equal(json_integer_value(json_object_get(o, "boards")), 7);
	assert_int_equal(json_integer_value(json_object_get(o, "failed")), 1);
	{
		json_t *au = json_array_get(json_object_get(o, "authorizations"), 0);

		assert_string_equal(json_string_value(json_object_get(au, "lot")), "LOT-7");
		assert_int_equal(json_integer_value(json_object_get(au, "left")), 1);
		assert_int_equal(json_integer_value(json_object_get(au, "units")), 10);
		assert_true(json_is_true(json_object_get(au, "low")));
	}
	json_decref(o);

	/* The station stops: the page is told, and its stream ends (the last chunk). */
	st_console_stop(fx->console);
	pump_until(fx, &c, "\"event\":\"stopping\"");
	pump_until(fx, &c, "\r\n0\r\n\r\n");
	client_close(&c);
}

/* A page that reads nothing is dropped once more than the limit waits for it; a page that
 * reads goes on and has every message. */
static void test_slow_page(void **state)
{
	struct fx *fx = *state;
	struct client slow, fast;
	struct st_console_stats st;
	char line[1100], want[64];
	int i;

#ifndef STATION_TEST_HOOKS
	skip(); /* the queue limit is set through a test hook, compiled only into test builds */
#endif
	/* The hook is read when a console is made: this test's own console. */
	st_console_close(fx->console);
	setenv("STATION_TEST_FAIL", "console.queue:65536", 1);
	{
		struct st_console_source src = { "test-station", NULL,	  src_slots, src_tally,
						 src_pool,	 src_stopping, NULL,	  NULL,	     NULL, fx };

		assert_int_equal(st_console_new(&fx->loop, &src, &fx->console), 0);
	}
	unsetenv("STATION_TEST_FAIL");
	st_http_set_console(fx->http, fx->console, &st_console_http);
	client_open(fx, &slow, "GET /console/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 2048);
	client_open(fx, &fast, "GET /console/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 0);
	pump_until(fx, &fast, "\"event\":\"snapshot\"");
	for (i = 0;; i++) {
		struct pollfd p = { fast.fd, POLLIN, 0 };
		int n = snprintf(line, sizeof(line), "{\"event\":\"state\",\"n\":%d,\"pad\":\"%0*d\"}",
				 i, 1000, 0);

		st_console_event_line(fx->console, line, (size_t)n);
		uv_run(&fx->loop, UV_RUN_NOWAIT);
		if (poll(&p, 1, 0) == 1)
			client_read(&fast);
		fast.len = 0; /* keep only what is new */
		st_console_stats(fx->console, &st);
		if (st.dropped)
			break;
		if (i > 200000)
			fail_msg("the page that reads nothing was never dropped");
	}
	assert_int_equal(st.dropped, 1);
	/* The reading page has the last line; the other's connection is closed. */
	snprintf(want, sizeof(want), "\"n\":%d,", i);
	pump_until(fx, &fast, want);
	pump_until(fx, &slow, NULL);
	st_console_stats(fx->console, &st);
	assert_int_equal(st.clients, 1);
	client_close(&slow);
	client_close(&fast);
}

static void test_resources(void **state)
{
	struct fx *fx = *state;
	char *body;
	json_t *o;

	assert_int_equal(request(fx, "GET", "/console", &body), 200);
	assert_non_null(strstr(body, "/console/console.js"));
	free(body);
	assert_int_equal(request(fx, "GET", "/console/console.js", &body), 200);
	assert_non_null(strstr(body, "EventSource"));
	free(body);
	assert_int_equal(request(fx, "GET", "/", &body), 302);
	free(body);
	assert_int_equal(request(fx, "GET", "/console/nothing", &body), 404);
	assert_non_null(strstr(body, "HTTP_NOT_FOUND"));
	free(body);
	/* Read-only: no other method on any console resource. */
	static const char *const paths[] = { "/console", "/console/events", "/console/slot?name=A1",
					     "/console/ledger?q=x", "/console/report.csv" };
	static const char *const methods[] = { "POST", "PUT", "DELETE", "PATCH" };

	for (size_t p = 0; p < sizeof(paths) / sizeof(paths[0]); p++) {
		for (size_t m = 0; m < sizeof(methods) / sizeof(methods[0]); m++) {
			assert_int_equal(request(fx, methods[m], paths[p], &body), 405);
			free(body);
		}
	}

	/* A slot: its console bytes as printable text, whatever the board sent. */
	memcpy(fx->console1, "boot\x1b[2J\xff\n<script>", 18);
	fx->console1_len = 18;
	assert_int_equal(request(fx, "GET", "/console/slot?name=A1", &body), 200);
	o = json_loads(body, 0, NULL);
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "console")),
			    "boot\\x1b[2J\\xff\n<script>");
	json_decref(o);
	free(body);
	assert_int_equal(request(fx, "GET", "/console/slot?name=A%31", &body), 200);
	free(body);
	/* Malformed or missing queries, and slots that are not there. */
	static const char *const bad[] = { "/console/slot", "/console/slot?name=%zz",
					   "/console/slot?name=%0a", "/console/slot?name=%4",
					   "/console/ledger", "/console/ledger?q=",
					   "/console/report.csv?day=2024-02-30",
					   "/console/report.csv?day=24-01-01",
					   "/console/report.csv?day=2024-01-01x" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int st = request(fx, "GET", bad[i], &body);

		if (st != 400)
			fail_msg("%s: %d, not 400: %s", bad[i], st, body);
		free(body);
	}
	assert_int_equal(request(fx, "GET", "/console/slot?name=B7", &body), 404);
	free(body);

	/* The ledger: read on the threadpool with a handle of its own. */
	assert_int_equal(request(fx, "GET", "/console/ledger?q=no-such-device", &body), 200);
	o = json_loads(body, 0, NULL);
	assert_non_null(o);
	assert_int_equal(json_array_size(json_object_get(o, "rows")), 0);
	json_decref(o);
	free(body);
	assert_int_equal(request(fx, "GET", "/console/report.csv?day=2024-01-01", &body), 200);
	assert_string_equal(body, "id,serial,device_id,profile,station,slot,state,reason,csr_sha256,"
				  "pubkey_sha256,created,signed_at,delivered_at,not_before,"
				  "not_after\r\n");
	free(body);
}

int main(void)
{
	/* The server writes to sockets the test shuts, as the station does (which ignores
	 * SIGPIPE too). */
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_stream, setup, teardown),
		cmocka_unit_test_setup_teardown(test_slow_page, setup, teardown),
		cmocka_unit_test_setup_teardown(test_resources, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
