/* The registration server (http.h) on H2O.
 *
 * Why H2O (libh2o, Debian's libuv build of H2O 2.2): it runs on the station's own libuv
 * loop (h2o_uv_socket_create() over a uv_tcp_t we accept), parses HTTP/1.1 with
 * picohttpparser, enforces the body limit itself (413 from Content-Length before the body is
 * read, and while a chunked body arrives), buffers the body so a handler sees it whole,
 * keeps connections alive, and does TLS with the SSL_CTX we hand it, so client-certificate
 * verification is plain OpenSSL 3 configuration. Its headers build cleanly with -Wall
 * -Wextra -Werror under gcc and clang. http-parser would have left TLS (memory BIOs), body
 * buffering, limits, keep-alive and timeouts to this file.
 *
 * Life of a registration (struct reg): checked and prepared on the loop thread (nothing
 * blocks), handed to the signing pool, answered from memory when the pool calls back (after
 * the ledger commit). The H2O request and the pool request end independently (a client may
 * go away while its CSR is signed; the server may close while the pool still signs): the reg
 * is freed when both have ended. A reg learns of its H2O request's end through a dispose
 * callback on the request's memory pool.
 *
 * Shutting down: H2O 2.2 cannot close a connection from outside, so the server closes the
 * read side of each socket (shutdown(2)): H2O then sees end of input and closes the
 * connection itself once its response is out. H2O's context owns uv handles that live
 * inside it; their close callbacks are not ours, so the memory is released two loop
 * iterations later (two idle handles closed one after the other). */
#include "http.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <h2o.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "digest.h"
#include "ecdsa.h"
#include "err.h"
#include "fsutil.h"
#include "http_reg.h"
#include "issue.h"
#include "log.h"
#include "profiles.h"

#define TICK_MS 250
#define CLOSE_GRACE_MS 5000
#define RETRY_AFTER "5"
#define MAX_TOKEN_FILE (1024 * 1024)
/* The name of the server's one host configuration, which H2O gives as the authority of a
 * request that named none (HTTP/1.0 without Host). No browser can send it: .invalid never
 * resolves (RFC 6761). */
#define NO_HOST "station.invalid"

/* Latency buckets of /metrics, in seconds. */
static const double buckets[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
				  0.1,	 0.25,	 0.5,	1,    2.5,   5,	   10 };
#define NBUCKETS (sizeof(buckets) / sizeof(buckets[0]))

/* Response codes counted for /status and /metrics. */
static const int codes[] = { 200, 201, 302, 400, 401, 403, 404, 405, 409, 413, 421, 500, 503 };
#define NCODES (sizeof(codes) / sizeof(codes[0]))

struct http_conn {
	uv_tcp_t tcp; /* first: H2O's close callback hands us this handle */
	struct st_http *h;
	h2o_socket_t *sock; /* H2O's socket over tcp */
	/* The CN of the client certificate the TLS handshake verified ("" before, or without
	 * one): the device id whose reissue this connection may ask for, as long as that
	 * certificate is the device's current one (st_sign_req.id_by_cert): its DER's SHA-256
	 * and its serial (lower-case hex, "" when longer than 20 octets) say which. */
	char peer_cn[ST_PROFILE_MAX_ID + 1];
	uint8_t peer_sha256[32];
	char peer_serial[ST_ISSUE_SERIAL_HEX];
	struct http_conn *prev, *next;
};

struct http_handler {
	h2o_handler_t super;
	struct st_http *h;
};

/* One POST /sign from the moment it went to the pool. */
struct reg {
	struct st_http *h;	  /* NULL once the server is gone (the pool still holds sreq) */
	h2o_req_t *req;		  /* until H2O disposes of it (req_alive) */
	int req_alive;
	int answered;		  /* a response was started */
	struct st_sign_req *sreq; /* while in the pool */
	struct st_profiles *pset; /* keeps the profile (and its policy) alive for sreq */
	struct st_http_answer answer;
	char uuid[ST_PROFILE_MAX_ID + 1];
	char peer[64];
	char hardware_id[ST_HTTP_REG_MAX_HWID + 1]; /* for the production record */
	uint64_t t_start, deadline;
	struct reg *prev, *next; /* h->regs */
};

struct st_http {
	uv_loop_t *loop;
	struct st_http_env env;
	unsigned max_body, max_connections, sign_timeout_ms;
	int tls;
	int client_certs; /* the handshake requires a client certificate (client_ca) */
	int guard_all;	  /* beyond loopback, tokens guard /status and /metrics too */
	/* Plain HTTP on loopback: every request must name this machine (st_http_host_is_local),
	 * which is hostname or a loopback name. */
	int check_host;
	char hostname[256];
	char url[96];

	h2o_globalconf_t gconf;
	h2o_context_t ctx;
	h2o_accept_ctx_t actx;
	SSL_CTX *ssl;
	int gconf_ready, ctx_ready;

	uv_tcp_t listener;
	uv_timer_t tick, grace, step;
	uv_idle_t s1, s2;

	uint8_t (*tokens)[32]; /* SHA-256 of each accepted token */
	size_t n_tokens;
	struct st_http_answer_base answer_base; /* root.crt and the chain, escaped once */
	struct st_sota_cache sota_cache;        /* the last sota.toml answered (loop thread) */

	struct http_conn *conns;
	struct reg *regs;

	struct st_http_stats st;
	uint64_t code_count[NCODES + 1]; /* the last: any other code */
	uint64_t lat_bucket[NBUCKETS];
	uint64_t lat_count;
	double lat_sum, lat_max;
	uint64_t started;

	st_http_status_fn hook;
	void *hook_arg;
	struct st_console *console; /* st_http_set_console() */
	const struct st_http_console_ops *console_ops;

	int closing, listener_closed, finishing;
	void (*close_cb)(void *arg);
	void *close_arg;
};

/* ---- Responses --------------------------------------------------------------------------- */

static const char *reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 302: return "Found";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 413: return "Payload Too Large";
	case 421: return "Misdirected Request";
	case 503: return "Service Unavailable";
	default: return "Internal Server Error";
	}
}

static void count_code(struct st_http *h, int status)
{
	size_t i;

	for (i = 0; i < NCODES; i++) {
		if (codes[i] == status)
			break;
	}
	h->code_count[i]++;
}

static void observe(struct st_http *h, uint64_t t_start)
{
	double s = (double)(uv_hrtime() - t_start) / 1e9;

	for (size_t i = 0; i < NBUCKETS; i++) {
		if (s <= buckets[i])
			h->lat_bucket[i]++;
	}
	h->lat_count++;
	h->lat_sum += s;
	if (s > h->lat_max)
		h->lat_max = s;
}

static void add_header(h2o_req_t *req, const h2o_token_t *token, const char *value)
{
	h2o_add_header(&req->pool, &req->res.headers, token, NULL, value, strlen(value));
}

/* Sends body (copied) with status. */
static void respond(struct st_http *h, h2o_req_t *req, int status, const char *ctype,
		    const char *body, size_t len)
{
	req->res.status = status;
	req->res.reason = reason(status);
	req->res.content_length = len;
	if (ctype)
		add_header(req, H2O_TOKEN_CONTENT_TYPE, ctype);
	add_header(req, H2O_TOKEN_CACHE_CONTROL, "no-store");
	/* Nothing here is to be read as another type, or shown inside another site's page. */
	h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-content-type-options"),
			      0, NULL, H2O_STRLIT("nosniff"));
	h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-frame-options"), 0,
			      NULL, H2O_STRLIT("DENY"));
	count_code(h, status);
	h2o_send_inline(req, body, len);
}

/* A message as a JSON string, whole: made printable (st_escape(), which also leaves only
 * valid UTF-8) in case it quotes what a client sent; escapes made already stay as they are.
 * NULL when out of memory. */
static json_t *json_text(const char *msg)
{
	size_t n = strlen(msg);
	char *buf = malloc(ST_ESCAPE_SIZE(n));
	json_t *s;

	if (!buf)
		return NULL;
	st_escape(buf, ST_ESCAPE_SIZE(n), msg, n, ST_ESCAPE_KEEP_BACKSLASH);
	s = json_string(buf);
	free(buf);
	return s;
}

/* {"error": NAME, "message": msg} with the status st_http_status_for(code). allow names the
 * methods of a 405. */
static void respond_error(struct st_http *h, h2o_req_t *req, int code, const char *msg,
			  const char *allow)
{
	static const char fallback[] = "{\"error\": \"NOMEM\", \"message\": \"out of memory\"}";
	int status = st_http_status_for(code);
	json_t *o = json_object();
	char *body = NULL;

	if (o) {
		json_object_set_new(o, "error", json_string(st_errname(code)));
		json_object_set_new(o, "message", json_text(msg));
		body = json_dumps(o, JSON_COMPACT);
		json_decref(o);
	}
	if (allow)
		add_header(req, H2O_TOKEN_ALLOW, allow);
	if (status == 503)
		add_header(req, H2O_TOKEN_RETRY_AFTER, RETRY_AFTER);
	if (body) {
		size_t n = strlen(body);

		/* A final newline, as curl users expect. */
		body[n] = '\n';
		respond(h, req, status, "application/json", body, n + 1);
	} else {
		respond(h, req, status, "application/json", fallback, sizeof(fallback) - 1);
	}
	free(body);
}

static void peer_name(h2o_req_t *req, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	char ip[64] = "?";
	int port = 0;

	memset(&ss, 0, sizeof(ss));
	if (req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss) > 0) {
		if (ss.ss_family == AF_INET) {
			uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
			port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		} else if (ss.ss_family == AF_INET6) {
			uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof(ip));
			port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		}
	}
	snprintf(buf, len, ss.ss_family == AF_INET6 ? "[%s]:%d" : "%s:%d", ip, port);
}

/* ---- Registrations ------------------------------------------------------------------------ */

static void reg_unlink(struct reg *g)
{
	struct st_http *h = g->h;

	if (!h)
		return;
	if (g->prev)
		g->prev->next = g->next;
	else
		h->regs = g->next;
	if (g->next)
		g->next->prev = g->prev;
	g->prev = g->next = NULL;
}

/* Frees g once both its H2O request and its pool request have ended. */
static void reg_release(struct reg *g)
{
	if (g->req_alive || g->sreq)
		return;
	reg_unlink(g);
	st_http_answer_clear(&g->answer);
	st_profiles_unref(g->pset);
	free(g);
}

static void on_req_disposed(void *p)
{
	struct reg *g = *(struct reg **)p;

	g->req = NULL;
	g->req_alive = 0;
	reg_release(g);
}

static void send_answer(struct st_http *h, struct reg *g)
{
	static h2o_generator_t generator = { NULL, NULL };
	h2o_req_t *req = g->req;
	h2o_iovec_t body = h2o_iovec_init(g->answer.buf, g->answer.len);

	/* The body stays in g, which lives until H2O disposes of the request. */
	req->res.status = 201;
	req->res.reason = reason(201);
	req->res.content_length = g->answer.len;
	add_header(req, H2O_TOKEN_CONTENT_TYPE, "application/json");
	add_header(req, H2O_TOKEN_CACHE_CONTROL, "no-store");
	count_code(h, 201);
	h2o_start_response(req, &generator);
	h2o_send(req, &body, 1, H2O_SEND_STATE_FINAL);
}

/* Counts a registration that got no certificate, by the HTTP status it was answered with. */
static void count_refusal(struct st_http *h, int status)
{
	switch (status) {
	case 401:
		h->st.unauthorized++;
		break;
	case 409:
		h->st.refused++;
		break;
	case 503:
		h->st.busy++;
		break;
	case 500:
		h->st.failed++;
		break;
	default:
		h->st.rejected++;
	}
}

/* The production record of a registration (ledger.h's attempts), as a board's on a slot:
 * slot "http:NAME" (the request's name, else the peer), outcome, reason, what it sent. */
static void record_registration(struct st_http *h, const char *slot, const char *uuid,
				const char *hardware_id, const char *profile,
				const struct st_sign_req *sreq, int rc, const char *err,
				uint64_t t0)
{
	struct st_ledger_attempt a;

	memset(&a, 0, sizeof(a));
	a.slot = slot;
	a.outcome = rc == 0 ? "pass" : "fail";
	a.reason = rc == 0 ? NULL : st_errname(rc);
	a.error = rc == 0 ? NULL : err;
	a.device_id = uuid;
	a.hardware_id = hardware_id;
	a.profile = profile;
	if (sreq && rc == 0) {
		a.serial = sreq->cert ? sreq->cert->serial_hex : NULL;
		a.certificate = sreq->row_id;
		a.reused = sreq->reused;
		a.auth_id = sreq->auth_id;
	}
	a.ms = (int64_t)((uv_hrtime() - t0) / 1000000u);
	if (st_pool_record_attempt(h->env.pool, &a) < 0)
		st_warn("http: device %s: the attempt is not recorded in the ledger",
			uuid ? uuid : "?");
}

/* The pool is done with a registration: the ledger holds its certificate (or its refusal). */
static void on_signed(struct st_sign_req *sreq)
{
	struct reg *g = sreq->data;
	struct st_http *h = g->h;
	char msg[512];
	int rc;

	g->sreq = NULL;
	if (h)
		h->st.in_flight--;
	if (!h || !g->req_alive || g->answered) {
		if (h)
			h->st.abandoned++;
		if (sreq->rc == 0)
			st_notice("http %s: device %s: certificate %s %s after its client had gone "
				  "or had its answer; it is recorded and a new request gets it",
				  g->peer, g->uuid, sreq->cert->serial_hex,
				  sreq->reused ? "found" : "signed");
		goto out;
	}
	if (sreq->rc == 0) {
		rc = st_http_answer_finish(&g->answer, &h->answer_base, sreq->cert->der,
					   sreq->cert->der_len);
		if (rc == 0) {
			if (sreq->reused)
				h->st.reused++;
			else
				h->st.signed_++;
			st_info("http %s: device %s (profile %s): certificate %s %s", g->peer, g->uuid,
				sreq->profile, sreq->cert->serial_hex,
				sreq->reused ? "given again" : "signed");
			send_answer(h, g);
			if (sreq->row_id > 0)
				st_ledger_queue_mark_delivered(st_pool_ledger(h->env.pool),
							       sreq->row_id, NULL, NULL);
			record_registration(h, sreq->slot, g->uuid, g->hardware_id, sreq->profile,
					    sreq, 0, NULL, g->t_start);
		} else {
			h->st.busy++;
			snprintf(msg, sizeof(msg),
				 "certificate %s is recorded but the answer could not be built (out "
				 "of memory); register again to receive it",
				 sreq->cert->serial_hex);
			st_err("http %s: device %s: %s", g->peer, g->uuid, msg);
			respond_error(h, g->req, ST_E_POOL_FULL, msg, NULL);
		}
	} else {
		count_refusal(h, st_http_status_for(sreq->rc));
		st_notice("http %s: device %s: refused (%s): %s", g->peer, g->uuid,
			  st_errname(sreq->rc), sreq->err);
		respond_error(h, g->req, sreq->rc, sreq->err, NULL);
		record_registration(h, sreq->slot, g->uuid, g->hardware_id, sreq->profile, sreq,
				    sreq->rc, sreq->err, g->t_start);
	}
	g->answered = 1;
	observe(h, g->t_start);
out:
	st_sign_req_free(sreq);
	reg_release(g);
}

static struct http_conn *conn_of(struct st_http *h, const void *sock)
{
	for (struct http_conn *c = h->conns; c; c = c->next) {
		if (c->sock == sock)
			return c;
	}
	return NULL;
}

/* Whether the n bytes at t are an accepted token. */
static int token_is(const struct st_http *h, const char *t, size_t n)
{
	uint8_t d[32];
	int ok = 0;

	st_digest(ST_SHA256, t, n, d);
	/* Every token is compared, in constant time, whatever matched before. */
	for (size_t k = 0; k < h->n_tokens; k++)
		ok |= CRYPTO_memcmp(d, h->tokens[k], sizeof(d)) == 0;
	return ok;
}

static int token_ok(const struct st_http *h, h2o_req_t *req)
{
	ssize_t i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("osf-token"), -1);

	/* One token, or none: a second header would leave it open which one counts. */
	if (i < 0 || h2o_find_header_by_str(&req->headers, H2O_STRLIT("osf-token"), i) >= 0)
		return 0;
	return token_is(h, req->headers.entries[i].value.base, req->headers.entries[i].value.len);
}

/* The console's page sends the token as the cookie station_token (percent-encoded): its
 * event stream cannot carry a header. */
static int cookie_token_ok(const struct st_http *h, h2o_req_t *req)
{
	static const char name[] = "station_token=";
	char t[ST_HTTP_MAX_TOKEN];
	ssize_t i = -1;

	while ((i = h2o_find_header(&req->headers, H2O_TOKEN_COOKIE, i)) >= 0) {
		const char *v = req->headers.entries[i].value.base;
		const char *end = v + req->headers.entries[i].value.len;

		while (v < end) {
			const char *semi = memchr(v, ';', (size_t)(end - v));
			const char *stop = semi ? semi : end;
			size_t n = 0;

			while (v < stop && *v == ' ')
				v++;
			if ((size_t)(stop - v) > sizeof(name) - 1 &&
			    memcmp(v, name, sizeof(name) - 1) == 0) {
				for (v += sizeof(name) - 1; v < stop && n < sizeof(t); v++) {
					if (*v == '%') {
						if (stop - v < 3 || h2o_hex_decode(t + n, v + 1, 2) != 0)
							return 0;
						v += 2;
						n++;
					} else {
						t[n++] = *v;
					}
				}
				return n > 0 && v == stop && token_is(h, t, n);
			}
			v = stop + 1;
		}
	}
	return 0;
}

/* The value of the request's header name (lower case); base NULL when it has none. */
static h2o_iovec_t header(h2o_req_t *req, const char *name, size_t nlen)
{
	ssize_t i = h2o_find_header_by_str(&req->headers, name, nlen, -1);

	return i >= 0 ? req->headers.entries[i].value : h2o_iovec_init(NULL, 0);
}

/* Whether a browser sent the request: browsers name the page behind a POST in Origin, and
 * every fetch of theirs in Sec-Fetch-Site; registration clients send neither. */
static int from_browser(h2o_req_t *req)
{
	return header(req, H2O_STRLIT("origin")).base ||
	       header(req, H2O_STRLIT("sec-fetch-site")).base;
}

/* Whether another site's page fetched this (Fetch Metadata: Sec-Fetch-Site other than
 * same-origin or none), other than by a link followed (a navigation with GET or HEAD): an
 * event stream or a fetch of another site's, which can read nothing without CORS but takes
 * a connection, and whose answer it may still time. */
static int cross_site_fetch(h2o_req_t *req)
{
	h2o_iovec_t site = header(req, H2O_STRLIT("sec-fetch-site"));
	h2o_iovec_t mode = header(req, H2O_STRLIT("sec-fetch-mode"));

	if (!site.base || h2o_memis(site.base, site.len, H2O_STRLIT("same-origin")) ||
	    h2o_memis(site.base, site.len, H2O_STRLIT("none")))
		return 0;
	return !(h2o_memis(mode.base, mode.len, H2O_STRLIT("navigate")) &&
		 (h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) ||
		  h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"))));
}

/* Ends a POST /sign that never reached the pool. */
static void reject(struct st_http *h, h2o_req_t *req, uint64_t t0, const char *peer,
		   const char *uuid, int code, const char *msg)
{
	int status = st_http_status_for(code);

	count_refusal(h, status);
	if (status == 500)
		st_err("http %s: device %s: %s", peer, uuid ? uuid : "?", msg);
	else
		st_notice("http %s: device %s: refused (%d %s): %s", peer, uuid ? uuid : "?",
			  status, st_errname(code), msg);
	respond_error(h, req, code, msg, NULL);
	observe(h, t0);
}

static void handle_sign(struct st_http *h, h2o_req_t *req)
{
	struct st_http_reg *r = NULL;
	struct st_profiles *pset = NULL;
	const struct st_profile *p = NULL;
	struct st_sign_req *sreq = NULL;
	struct reg *g = NULL, **slot;
	uint64_t t0 = uv_hrtime();
	char *sota = NULL;
	const struct http_conn *pc = NULL;
	size_t sota_len;
	char err[ST_ERR_MAX], peer[64];
	int rc, id_auth = 0;

	peer_name(req, peer, sizeof(peer));
	if (h->closing) {
		reject(h, req, t0, peer, NULL, ST_E_HTTP_STOPPING, "the station is stopping");
		return;
	}
	/* Another site's page must not register devices through the operator's browser. */
	if (from_browser(req)) {
		reject(h, req, t0, peer, NULL, ST_E_HTTP_BROWSER,
		       "POST /sign came from a web page (it carries Origin or Sec-Fetch-Site): "
		       "devices register with their registration tool, never through a browser");
		return;
	}
	if (h->n_tokens && !token_ok(h, req)) {
		reject(h, req, t0, peer, NULL, ST_E_HTTP_AUTH,
		       "the request lacks an OSF-TOKEN header with a token this station accepts");
		return;
	}
	/* A token holder is the station's registration client, trusted with any uuid; a
	 * client certificate only with its own: whoever holds one device's key (devices keep
	 * theirs in plain files unless the profile wants a secure element) must not buy
	 * certificates for other ids, new or recorded. Where the certificate is the only
	 * credential, that is checked below; otherwise it decides only a reissue (pool.h). */
	if (h->n_tokens) {
		id_auth = 1;
	} else if (h->client_certs) {
		pc = conn_of(h, req->conn->callbacks->get_socket(req->conn));
		if (pc && !pc->peer_cn[0])
			pc = NULL;
	}
	rc = st_http_reg_parse(req->entity.base ? req->entity.base : "", req->entity.len, &r,
			       err, sizeof(err));
	if (rc < 0)
		goto refuse;
	if (!h->n_tokens && h->client_certs && (!pc || strcmp(pc->peer_cn, r->uuid) != 0)) {
		rc = st_errf(err, sizeof(err), ST_E_HTTP_AUTH,
			     "a client certificate vouches only for the device it names (%s%s): "
			     "registering device %s needs an OSF-TOKEN header with a token this "
			     "station accepts (token_file)",
			     pc ? "CN " : "", pc ? pc->peer_cn : "no CN", r->uuid);
		goto refuse;
	}
	pset = h->env.profiles(h->env.arg);
	if (!pset) {
		rc = st_errf(err, sizeof(err), ST_E_PROFILE_NOMATCH, "no profiles are loaded");
		goto refuse;
	}
	rc = st_http_reg_choose(pset, r, &p, err, sizeof(err));
	if (rc < 0)
		goto refuse;
	rc = st_http_reg_check(p, r, err, sizeof(err));
	if (rc < 0)
		goto refuse;
	rc = st_http_reg_sota(p, r, &h->sota_cache, &sota, &sota_len, err, sizeof(err));
	if (rc < 0)
		goto refuse;
	g = calloc(1, sizeof(*g));
	sreq = st_sign_req_new();
	if (!g || !sreq ||
	    st_http_answer_prepare(&g->answer, &h->answer_base, sota) != 0) {
		rc = st_errf(err, sizeof(err), ST_E_NOMEM, "out of memory");
		goto refuse;
	}
	sreq->policy = &p->policy;
	snprintf(sreq->profile, sizeof(sreq->profile), "%s", p->sku);
	snprintf(sreq->slot, sizeof(sreq->slot), "http:%s", r->name ? r->name : peer);
	snprintf(sreq->device_id, sizeof(sreq->device_id), "%s", r->uuid);
	sreq->id_authenticated = id_auth || (pc && strcmp(pc->peer_cn, r->uuid) == 0);
	if (!id_auth && sreq->id_authenticated) {
		/* Only while it is the device's current certificate (pool.h). */
		sreq->id_by_cert = 1;
		memcpy(sreq->id_cert_sha256, pc->peer_sha256, sizeof(sreq->id_cert_sha256));
		memcpy(sreq->id_cert_serial, pc->peer_serial, sizeof(sreq->id_cert_serial));
	}
	/* The CSR as received: a signing worker checks it (pool.h, step 0), so the loop spends
	 * no verification on it, and one that fails is answered with the check's code and
	 * message and leaves no ledger row, as when the loop checked it. */
	sreq->csr_raw = (uint8_t *)r->csr;
	sreq->csr_raw_len = r->csr_len;
	r->csr = NULL;
	sreq->auths = st_auth_set_ref(pset->auths);
	sreq->data = g;
	sreq->done = on_signed;
	rc = st_pool_submit(h->env.pool, sreq);
	if (rc < 0) {
		st_msgf(err, sizeof(err), "%s",
			 rc == ST_E_INVAL	? sreq->err :
			 rc == ST_E_POOL_FULL ? "the signing queue is full; try again shortly" :
						  st_strerror(rc));
		goto refuse;
	}
	/* From here the pool owns sreq until on_signed(). */
	g->h = h;
	g->req = req;
	g->req_alive = 1;
	g->sreq = sreq;
	g->pset = pset;
	pset = NULL;
	g->t_start = t0;
	g->deadline = t0 + (uint64_t)h->sign_timeout_ms * 1000000u;
	snprintf(g->uuid, sizeof(g->uuid), "%s", r->uuid);
	snprintf(g->peer, sizeof(g->peer), "%s", peer);
	snprintf(g->hardware_id, sizeof(g->hardware_id), "%s", r->hardware_id);
	slot = h2o_mem_alloc_shared(&req->pool, sizeof(*slot), on_req_disposed);
	*slot = g;
	g->next = h->regs;
	if (h->regs)
		h->regs->prev = g;
	h->regs = g;
	h->st.in_flight++;
	if (r->group)
		st_info("http %s: device %s asks for group %s (allowed by profile %s)", peer,
			r->uuid, r->group, p->sku);
	g = NULL;
	sreq = NULL;
	goto out;
refuse:
	reject(h, req, t0, peer, r ? r->uuid : NULL, rc, err);
	{
		char slot[ST_POOL_MAX_NAME + 1];

		st_msgf(slot, sizeof(slot), "http:%s", r && r->name ? r->name : peer);
		record_registration(h, slot, r ? r->uuid : NULL, r ? r->hardware_id : NULL,
				    p ? p->sku : NULL, NULL, rc, err, t0);
	}
out:
	if (g)
		st_http_answer_clear(&g->answer);
	free(g);
	st_sign_req_free(sreq);
	free(sota);
	st_profiles_unref(pset);
	st_http_reg_free(r);
}

/* ---- Status and metrics ------------------------------------------------------------------- */

static void stats_fill(const struct st_http *h, struct st_http_stats *out)
{
	unsigned n = 0;

	*out = h->st;
	for (const struct http_conn *c = h->conns; c; c = c->next)
		n++;
	out->connections = n;
	out->too_large = h->ctx_ready ? h->ctx.emitted_error_status[H2O_STATUS_ERROR_413] : 0;
}

void st_http_stats(const struct st_http *h, struct st_http_stats *out)
{
	stats_fill(h, out);
}

static void handle_status(struct st_http *h, h2o_req_t *req)
{
	struct st_http_stats s;
	struct st_pool_stats ps;
	json_t *o = json_object(), *srv, *reg, *resp, *lat, *pool;
	char *body;

	stats_fill(h, &s);
	st_pool_stats(h->env.pool, &ps);
	srv = json_pack("{s:s,s:b,s:I,s:I,s:I,s:f}", "url", h->url, "tls", h->tls, "requests",
			(json_int_t)s.requests, "connections", (json_int_t)s.connections,
			"in_flight", (json_int_t)s.in_flight, "uptime_s",
			(double)(uv_hrtime() - h->started) / 1e9);
	reg = json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "signed", (json_int_t)s.signed_, "reused",
			(json_int_t)s.reused, "refused", (json_int_t)s.refused, "rejected",
			(json_int_t)s.rejected, "unauthorized", (json_int_t)s.unauthorized,
			"too_large", (json_int_t)s.too_large, "busy", (json_int_t)s.busy, "failed",
			(json_int_t)s.failed, "abandoned", (json_int_t)s.abandoned);
	resp = json_object();
	for (size_t i = 0; resp && i <= NCODES; i++) {
		char k[16] = "other";

		if (!h->code_count[i])
			continue;
		if (i < NCODES)
			snprintf(k, sizeof(k), "%d", codes[i]);
		json_object_set_new(resp, k, json_integer((json_int_t)h->code_count[i]));
	}
	lat = json_pack("{s:I,s:f,s:f}", "count", (json_int_t)h->lat_count, "mean_ms",
			h->lat_count ? h->lat_sum * 1e3 / (double)h->lat_count : 0.0, "max_ms",
			h->lat_max * 1e3);
	pool = json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:b,s:s}", "submitted",
			 (json_int_t)ps.submitted, "signed", (json_int_t)ps.signed_, "reused",
			 (json_int_t)ps.reused, "refused", (json_int_t)ps.refused, "failed",
			 (json_int_t)ps.failed, "batches", (json_int_t)ps.batches, "commits",
			 (json_int_t)ps.commits, "queue_depth", (json_int_t)ps.in_pool, "workers",
			 (json_int_t)ps.workers, "paused", ps.paused, "pause_reason",
			 ps.paused ? ps.pause_reason : "");
	if (!o || !srv || !reg || !resp || !lat || !pool) {
		json_decref(srv);
		json_decref(reg);
		json_decref(resp);
		json_decref(lat);
		json_decref(pool);
		json_decref(o);
		respond_error(h, req, ST_E_NOMEM, "out of memory", NULL);
		return;
	}
	json_object_set_new(o, "server", srv);
	json_object_set_new(o, "registrations", reg);
	json_object_set_new(o, "responses", resp);
	json_object_set_new(o, "latency", lat);
	json_object_set_new(o, "pool", pool);
	if (h->hook)
		h->hook(o, h->hook_arg);
	body = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
	json_decref(o);
	if (!body) {
		respond_error(h, req, ST_E_NOMEM, "out of memory", NULL);
		return;
	}
	respond(h, req, 200, "application/json", body, strlen(body));
	free(body);
}

struct text {
	char *buf;
	size_t len, cap;
	int failed;
};

static void textf(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void textf(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->failed)
		return;
	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(t->buf ? t->buf + t->len : NULL, t->buf ? t->cap - t->len : 0, fmt,
			      ap);
		va_end(ap);
		if (n < 0) {
			t->failed = 1;
			return;
		}
		if (t->buf && (size_t)n < t->cap - t->len) {
			t->len += (size_t)n;
			return;
		}
		{
			size_t cap = t->cap ? t->cap * 2 : 4096;
			char *b;

			while (cap < t->len + (size_t)n + 1)
				cap *= 2;
			b = realloc(t->buf, cap);
			if (!b) {
				t->failed = 1;
				return;
			}
			t->buf = b;
			t->cap = cap;
		}
	}
}

static void metric(struct text *t, const char *name, const char *type, const char *help)
{
	textf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void handle_metrics(struct st_http *h, h2o_req_t *req)
{
	struct st_http_stats s;
	struct st_pool_stats ps;
	struct text t = { NULL, 0, 0, 0 };

	stats_fill(h, &s);
	st_pool_stats(h->env.pool, &ps);
	{
		const struct {
			const char *result;
			uint64_t n;
		} results[] = {
			{ "signed", s.signed_ },	     { "reused", s.reused },
			{ "refused", s.refused },	     { "rejected", s.rejected },
			{ "unauthorized", s.unauthorized }, { "too_large", s.too_large },
			{ "busy", s.busy },		     { "failed", s.failed },
			{ "abandoned", s.abandoned },
		};

		metric(&t, "station_registrations_total", "counter",
		       "HTTP registrations (POST /sign) by result.");
		for (size_t i = 0; i < sizeof(results) / sizeof(results[0]); i++)
			textf(&t, "station_registrations_total{result=\"%s\"} %llu\n",
			      results[i].result, (unsigned long long)results[i].n);
	}
	metric(&t, "station_http_responses_total", "counter", "HTTP responses by status code.");
	for (size_t i = 0; i <= NCODES; i++) {
		if (i < NCODES)
			textf(&t, "station_http_responses_total{code=\"%d\"} %llu\n", codes[i],
			      (unsigned long long)h->code_count[i]);
		else
			textf(&t, "station_http_responses_total{code=\"other\"} %llu\n",
			      (unsigned long long)h->code_count[i]);
	}
	metric(&t, "station_http_connections", "gauge", "Open HTTP connections.");
	textf(&t, "station_http_connections %u\n", s.connections);
	metric(&t, "station_http_in_flight", "gauge", "Registrations waiting for the pool.");
	textf(&t, "station_http_in_flight %u\n", s.in_flight);
	metric(&t, "station_certificates_signed_total", "counter",
	       "New certificates signed and recorded by the pool (HTTP and serial).");
	textf(&t, "station_certificates_signed_total %llu\n", (unsigned long long)ps.signed_);
	metric(&t, "station_certificates_reused_total", "counter",
	       "Recorded certificates given out again by the pool.");
	textf(&t, "station_certificates_reused_total %llu\n", (unsigned long long)ps.reused);
	metric(&t, "station_pool_queue_depth", "gauge", "Requests in the signing pool.");
	textf(&t, "station_pool_queue_depth %u\n", ps.in_pool);
	metric(&t, "station_pool_paused", "gauge", "1 while signing waits for the HSM.");
	textf(&t, "station_pool_paused %d\n", ps.paused ? 1 : 0);
	metric(&t, "station_pool_workers", "gauge", "Signing threads.");
	textf(&t, "station_pool_workers %u\n", ps.workers);
	metric(&t, "station_sign_batches_total", "counter", "Signing batches sealed.");
	textf(&t, "station_sign_batches_total %llu\n", (unsigned long long)ps.batches);
	metric(&t, "station_ledger_commits_total", "counter", "Ledger commits (each one fsync).");
	textf(&t, "station_ledger_commits_total %llu\n", (unsigned long long)ps.commits);
	metric(&t, "station_registration_duration_seconds", "histogram",
	       "Time from a POST /sign to its answer.");
	for (size_t i = 0; i < NBUCKETS; i++)
		textf(&t, "station_registration_duration_seconds_bucket{le=\"%g\"} %llu\n",
		      buckets[i], (unsigned long long)h->lat_bucket[i]);
	textf(&t, "station_registration_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
	      (unsigned long long)h->lat_count);
	textf(&t, "station_registration_duration_seconds_sum %.6f\n", h->lat_sum);
	textf(&t, "station_registration_duration_seconds_count %llu\n",
	      (unsigned long long)h->lat_count);
	if (t.failed || !t.buf)
		respond_error(h, req, ST_E_NOMEM, "out of memory", NULL);
	else
		respond(h, req, 200, "text/plain; version=0.0.4; charset=utf-8", t.buf, t.len);
	free(t.buf);
}

/* ---- Routing ------------------------------------------------------------------------------ */

static int is(h2o_iovec_t v, const char *s)
{
	return h2o_memis(v.base, v.len, s, strlen(s));
}

/* Refuses a request to a loopback server that names another host: a page of another site
 * that rebound its own name to this machine's address, to read what the server answers
 * whoever is on loopback (/status, the console) or to register devices through it. */
static int refuse_host(struct st_http *h, h2o_req_t *req)
{
	h2o_iovec_t a = req->input.authority;
	char msg[ST_ERR_MAX], p[300];

	if (h2o_memis(a.base, a.len, H2O_STRLIT(NO_HOST)))
		a.len = 0;
	if (!h->check_host || st_http_host_is_local(a.base, a.len, h->hostname))
		return 0;
	st_escape(p, sizeof(p), a.base, a.len, 0);
	st_msgf(msg, sizeof(msg),
		"Host %s is not this machine: on loopback the server answers requests to "
		"localhost, 127.0.0.1, [::1] or %s only (a web page may not reach it through a "
		"name of its own)",
		p, h->hostname[0] ? h->hostname : "its host name");
	st_notice("http: refused a request for Host %s", p);
	respond_error(h, req, ST_E_HTTP_HOST, msg, NULL);
	return 1;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
	struct st_http *h = ((struct http_handler *)self)->h;
	h2o_iovec_t path = req->path_normalized, method = req->method;
	char msg[ST_ERR_MAX], p[512], m[64];

	h->st.requests++;
	if (refuse_host(h, req))
		return 0;
	/* POST /sign refuses every browser's request itself, and says so in its statistics. */
	if (!is(path, "/sign") && cross_site_fetch(req)) {
		st_escape(p, sizeof(p), path.base, path.len, 0);
		st_msgf(msg, sizeof(msg),
			"another site's page fetched %s (Sec-Fetch-Site): the station's pages are "
			"its own, to be opened, not fetched from elsewhere",
			p);
		st_notice("http: refused %s fetched by another site's page", p);
		respond_error(h, req, ST_E_HTTP_BROWSER, msg, NULL);
		return 0;
	}
	if (is(path, "/sign")) {
		if (is(method, "POST"))
			handle_sign(h, req);
		else if (is(method, "HEAD"))
			respond(h, req, 200, NULL, "", 0);
		else
			goto bad_method;
		return 0;
	}
	if (h->console && h->console_ops->owns(path.base, path.len)) {
		/* Read-only, and guarded like /status: it names devices and their errors. */
		if (!is(method, "GET") && !is(method, "HEAD"))
			goto bad_method;
		if (h->guard_all && !token_ok(h, req) && !cookie_token_ok(h, req))
			h->console_ops->unauthorized(h->console, h, req);
		else if (h->closing)
			respond_error(h, req, ST_E_HTTP_STOPPING, "the station is stopping", NULL);
		else
			h->console_ops->handle(h->console, h, req);
		return 0;
	}
	if (is(path, "/status") || is(path, "/metrics")) {
		if (!is(method, "GET") && !is(method, "HEAD"))
			goto bad_method;
		if (h->guard_all && !token_ok(h, req)) {
			snprintf(msg, sizeof(msg),
				 "%.*s names devices and their errors: beyond loopback it needs an "
				 "OSF-TOKEN header with a token this station accepts%s",
				 (int)path.len, path.base,
				 h->n_tokens ? "" :
					       " (it has none: a client certificate is a device's; "
					       "add token_file)");
			respond_error(h, req, ST_E_HTTP_AUTH, msg, NULL);
			return 0;
		}
		if (h->closing)
			respond_error(h, req, ST_E_HTTP_STOPPING, "the station is stopping", NULL);
		else if (is(path, "/status"))
			handle_status(h, req);
		else
			handle_metrics(h, req);
		return 0;
	}
	/* What the client asked for, bounded (cut saying so) and printable. */
	st_escape(p, sizeof(p), path.base, path.len, 0);
	st_msgf(msg, sizeof(msg), "no resource %s; this server has /sign, /status, /metrics%s", p,
		h->console ? ", /console" : "");
	respond_error(h, req, ST_E_HTTP_NOT_FOUND, msg, NULL);
	return 0;
bad_method:
	st_escape(p, sizeof(p), path.base, path.len, 0);
	st_escape(m, sizeof(m), method.base, method.len, 0);
	st_msgf(msg, sizeof(msg), "%s is not allowed on %s", m, p);
	respond_error(h, req, ST_E_HTTP_METHOD, msg,
		      is(path, "/sign") ? "HEAD, POST" : "GET, HEAD");
	return 0;
}

/* ---- Connections -------------------------------------------------------------------------- */

static void maybe_finish(struct st_http *h);

static void free_handle(uv_handle_t *hd)
{
	free(hd);
}

static void on_conn_closed(uv_handle_t *hd)
{
	struct http_conn *c = (struct http_conn *)hd;
	struct st_http *h = c->h;

	if (c->prev)
		c->prev->next = c->next;
	else
		h->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	free(c);
	maybe_finish(h);
}

static void on_accept(uv_stream_t *server, int status)
{
	struct st_http *h = server->data;
	struct http_conn *c;
	h2o_socket_t *sock;
	unsigned n = 0;

	if (status < 0) {
		st_warn("http: accept: %s", uv_strerror(status));
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return;
	if (uv_tcp_init(h->loop, &c->tcp) != 0) {
		free(c);
		return;
	}
	if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
		uv_close((uv_handle_t *)&c->tcp, free_handle);
		return;
	}
	for (struct http_conn *o = h->conns; o; o = o->next)
		n++;
	if (h->closing || n >= h->max_connections) {
		if (!h->closing)
			st_warn("http: %u connections open, the limit: refusing one more", n);
		uv_close((uv_handle_t *)&c->tcp, free_handle);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	c->h = h;
	c->next = h->conns;
	if (h->conns)
		h->conns->prev = c;
	h->conns = c;
	sock = h2o_uv_socket_create((uv_stream_t *)&c->tcp, on_conn_closed);
	c->sock = sock;
	h2o_accept(&h->actx, sock);
}

/* Ends input on every connection (how): H2O sees end of input and closes each connection
 * once it has nothing more to send. */
static void shutdown_conns(struct st_http *h, int how)
{
	for (struct http_conn *c = h->conns; c; c = c->next) {
		uv_os_fd_t fd;

		if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
			shutdown(fd, how);
	}
}

/* ---- Timers ------------------------------------------------------------------------------- */

static void on_tick(uv_timer_t *t)
{
	struct st_http *h = t->data;
	uint64_t now = uv_hrtime();
	struct st_pool_stats ps;
	char msg[512];

	for (struct reg *g = h->regs; g; g = g->next) {
		if (!g->req_alive || g->answered || now < g->deadline)
			continue;
		st_pool_stats(h->env.pool, &ps);
		snprintf(msg, sizeof(msg),
			 "the certificate was not signed within %u ms%s%s; register again: what is "
			 "signed meanwhile is recorded and given out then",
			 h->sign_timeout_ms, ps.paused ? ": signing is paused: " : "",
			 ps.paused ? ps.pause_reason : "");
		h->st.busy++;
		g->answered = 1;
		st_warn("http %s: device %s: %s", g->peer, g->uuid, msg);
		respond_error(h, g->req, ST_E_HTTP_TIMEOUT, msg, NULL);
		observe(h, g->t_start);
	}
}

static void on_grace(uv_timer_t *t)
{
	struct st_http *h = t->data;

	st_notice("http: closing the connections still open after %d ms", CLOSE_GRACE_MS);
	shutdown_conns(h, SHUT_RDWR);
}

/* ---- Closing ------------------------------------------------------------------------------ */

static void on_s2_closed(uv_handle_t *hd)
{
	struct st_http *h = hd->data;
	void (*cb)(void *) = h->close_cb;
	void *arg = h->close_arg;

	/* Registrations still in the pool end without the server. */
	for (struct reg *g = h->regs, *next; g; g = next) {
		next = g->next;
		g->prev = g->next = NULL;
		g->h = NULL;
	}
	if (h->gconf_ready)
		h2o_config_dispose(&h->gconf);
	SSL_CTX_free(h->ssl);
	if (h->tokens)
		OPENSSL_cleanse(h->tokens, h->n_tokens * sizeof(*h->tokens));
	free(h->tokens);
	st_http_answer_base_clear(&h->answer_base);
	st_sota_cache_free(&h->sota_cache);
	free(h);
	if (cb)
		cb(arg);
}

static void on_s1_closed(uv_handle_t *hd)
{
	struct st_http *h = hd->data;

	/* One more iteration: H2O's handles closed with s1 have had their callbacks now. */
	uv_close((uv_handle_t *)&h->s2, on_s2_closed);
}

/* h2o_context_dispose() of H2O 2.2 ends with uv_run(loop, UV_RUN_NOWAIT) to let its timers'
 * close callbacks run, and running the loop from inside one of its own callbacks is not
 * allowed: this is the same disposal without that call (the caller waits for the close
 * callbacks itself). Written against H2O 2.2.5's context.c; another version needs a look. */
#if H2O_VERSION_MAJOR != 2 || H2O_VERSION_MINOR != 2
#error "context_dispose() follows H2O 2.2's h2o_context_dispose(): check it against this version"
#endif
static void context_dispose(h2o_context_t *ctx)
{
	h2o_globalconf_t *config = ctx->globalconf;
	h2o_timeout_t *timeouts[] = {
		&ctx->zero_timeout,	  &ctx->one_sec_timeout,   &ctx->hundred_ms_timeout,
		&ctx->handshake_timeout,  &ctx->http1.req_timeout, &ctx->http2.idle_timeout,
		&ctx->http2.graceful_shutdown_timeout,		   &ctx->proxy.io_timeout,
	};

	/* h2o_context_request_shutdown() armed the HTTP/2 graceful shutdown; there are no
	 * HTTP/2 connections to shut down. */
	if (h2o_timeout_is_linked(&ctx->http2._graceful_shutdown_timeout))
		h2o_timeout_unlink(&ctx->http2._graceful_shutdown_timeout);
	for (size_t i = 0; config->hosts[i]; i++) {
		h2o_hostconf_t *host = config->hosts[i];

		for (size_t j = 0; j < host->paths.size; j++)
			h2o_context_dispose_pathconf_context(ctx, host->paths.entries + j);
		h2o_context_dispose_pathconf_context(ctx, &host->fallback_path);
	}
	free(ctx->_pathconfs_inited.entries);
	free(ctx->_module_configs);
	for (size_t i = 0; i < sizeof(timeouts) / sizeof(timeouts[0]); i++)
		h2o_timeout_dispose(ctx->loop, timeouts[i]);
	h2o_filecache_destroy(ctx->filecache);
	ctx->filecache = NULL;
	for (size_t i = 0; i < ctx->storage.size; i++) {
		if (ctx->storage.entries[i].dispose)
			ctx->storage.entries[i].dispose(ctx->storage.entries[i].data);
	}
	free(ctx->storage.entries);
	h2o_multithread_unregister_receiver(ctx->queue, &ctx->receivers.hostinfo_getaddr);
	h2o_multithread_destroy_queue(ctx->queue);
	if (ctx->_timestamp_cache.value)
		h2o_mem_release_shared(ctx->_timestamp_cache.value);
}

static void on_step(uv_timer_t *t)
{
	struct st_http *h = t->data;

	if (h->ctx_ready)
		context_dispose(&h->ctx);
	h->ctx_ready = 0;
	uv_close((uv_handle_t *)&h->tick, NULL);
	uv_close((uv_handle_t *)&h->grace, NULL);
	uv_close((uv_handle_t *)&h->step, NULL);
	uv_close((uv_handle_t *)&h->s1, on_s1_closed);
}

static void maybe_finish(struct st_http *h)
{
	if (!h->closing || !h->listener_closed || h->conns || h->finishing)
		return;
	h->finishing = 1;
	/* Not from inside a close callback: the context's dispose closes handles of its own. */
	uv_timer_start(&h->step, on_step, 0, 0);
}

static void on_listener_closed(uv_handle_t *hd)
{
	struct st_http *h = hd->data;

	h->listener_closed = 1;
	maybe_finish(h);
}

void st_http_close(struct st_http *h, void (*close_cb)(void *arg), void *arg)
{
	if (!h || h->closing)
		return;
	h->closing = 1;
	h->close_cb = close_cb;
	h->close_arg = arg;
	/* The console's pages are live streams: they end now, not at the grace's end. */
	if (h->console)
		h->console_ops->stop(h->console);
	uv_close((uv_handle_t *)&h->listener, on_listener_closed);
	uv_timer_stop(&h->tick);
	if (h->ctx_ready)
		h2o_context_request_shutdown(&h->ctx);
	for (struct reg *g = h->regs; g; g = g->next) {
		if (!g->req_alive || g->answered)
			continue;
		g->answered = 1;
		h->st.busy++;
		respond_error(h, g->req, ST_E_HTTP_STOPPING,
			      "the station is stopping; register again: a certificate signed "
			      "meanwhile is recorded and given out then",
			      NULL);
		observe(h, g->t_start);
	}
	shutdown_conns(h, SHUT_RD);
	uv_timer_start(&h->grace, on_grace, CLOSE_GRACE_MS, 0);
	uv_unref((uv_handle_t *)&h->grace);
	maybe_finish(h);
}

/* ---- Start -------------------------------------------------------------------------------- */

static int ssl_fail(char *err, size_t errlen, const char *what, const char *path)
{
	char buf[256] = "";
	unsigned long e = ERR_get_error();

	if (e)
		ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	return st_errf(err, errlen, ST_E_HTTP_TLS, "%s %s: %s", what, path,
		       buf[0] ? buf : "OpenSSL gave no reason");
}

/* After each TLS handshake: the verified client certificate's CN, the SHA-256 of its DER and
 * its serial, kept on its connection.
 * H2O 2.2 offers no way from a request to its SSL object, but its socket BIO carries the
 * h2o_socket_t as data: that pointer is only compared with the connections' own sockets,
 * never followed, so another H2O leaves peer_cn empty (no reissue by certificate) rather
 * than misread memory. */
static void on_tls_info(const SSL *ssl, int where, int ret)
{
	struct st_http *h = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
	BIO *bio = SSL_get_rbio(ssl);
	struct http_conn *c;
	X509 *peer;
	X509_NAME *name;
	unsigned char *cn = NULL, *der = NULL;
	BIGNUM *serial;
	int i, n, der_len;

	(void)ret;
	if (!(where & SSL_CB_HANDSHAKE_DONE) || !h || !bio)
		return;
	c = conn_of(h, BIO_get_data(bio));
	peer = SSL_get0_peer_certificate(ssl);
	if (!c || !peer || SSL_get_verify_result(ssl) != X509_V_OK)
		return;
	c->peer_cn[0] = 0;
	c->peer_serial[0] = 0;
	der_len = i2d_X509(peer, &der);
	if (der_len <= 0)
		return;
	st_digest(ST_SHA256, der, (size_t)der_len, c->peer_sha256);
	OPENSSL_free(der);
	serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(peer), NULL);
	n = serial ? BN_num_bytes(serial) : 0;
	if (n > 0 && n <= 20) {
		unsigned char v[20];
		static const char digits[] = "0123456789abcdef";

		BN_bn2bin(serial, v);
		for (i = 0; i < n; i++) {
			c->peer_serial[2 * i] = digits[v[i] >> 4];
			c->peer_serial[2 * i + 1] = digits[v[i] & 15];
		}
		c->peer_serial[2 * n] = 0;
	}
	BN_free(serial);
	name = X509_get_subject_name(peer);
	i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
	/* Exactly one CN, or none counts. */
	if (i < 0 || X509_NAME_get_index_by_NID(name, NID_commonName, i) >= 0)
		return;
	n = ASN1_STRING_to_UTF8(&cn, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));
	if (n > 0 && (size_t)n < sizeof(c->peer_cn) && memchr(cn, 0, (size_t)n) == NULL)
		memcpy(c->peer_cn, cn, (size_t)n + 1);
	OPENSSL_free(cn);
}

/* A file of secrets (the tokens, the TLS key) that every user of the machine may read or
 * write is refused, naming the file, its mode and the fix (never its content): anyone could
 * then register devices or speak as the server. Its group may read it: the service's
 * files are root's, group station, mode 0640. A file that cannot be read is its reader's to
 * report. */
static int secret_file_ok(const char *key, const char *path, int code, char *err,
			  size_t errlen)
{
	struct stat st;

	if (stat(path, &st) != 0 || !(st.st_mode & 007))
		return 0;
	return st_errf(err, errlen, code,
		       "%s %s has mode %04o: every user of this machine may %s it, and it holds "
		       "secrets: chmod o-rwx %s (0640, owner root, group station, or 0600)",
		       key, path, (unsigned)(st.st_mode & 07777),
		       (st.st_mode & 004) && (st.st_mode & 002) ? "read and write" :
		       (st.st_mode & 004)			     ? "read" :
		       (st.st_mode & 002)			     ? "write" :
								       "execute",
		       path);
}

static int tls_setup(struct st_http *h, const struct st_config_http *cfg, char *err,
		     size_t errlen)
{
	static const unsigned char sid[] = "station-http";
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	STACK_OF(X509_NAME) *names;

	if (!ctx)
		return st_errf(err, errlen, ST_E_HTTP_TLS, "SSL_CTX_new failed");
	h->ssl = ctx;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert) != 1)
		return ssl_fail(err, errlen, "tls_cert", cfg->tls_cert);
	if (secret_file_ok("tls_key", cfg->tls_key, ST_E_HTTP_TLS, err, errlen) < 0)
		return ST_E_HTTP_TLS;
	if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key, SSL_FILETYPE_PEM) != 1)
		return ssl_fail(err, errlen, "tls_key", cfg->tls_key);
	if (SSL_CTX_check_private_key(ctx) != 1)
		return st_errf(err, errlen, ST_E_HTTP_TLS, "tls_key %s is not the key of tls_cert %s",
			       cfg->tls_key, cfg->tls_cert);
	if (!cfg->client_ca)
		return 0;
	if (SSL_CTX_load_verify_locations(ctx, cfg->client_ca, NULL) != 1)
		return ssl_fail(err, errlen, "client_ca", cfg->client_ca);
	names = SSL_load_client_CA_file(cfg->client_ca);
	if (!names)
		return ssl_fail(err, errlen, "client_ca", cfg->client_ca);
	SSL_CTX_set_client_CA_list(ctx, names);
	/* Devices without a certificate from these CAs do not get past the handshake. */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_verify_depth(ctx, 4);
	SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1);
	SSL_CTX_set_app_data(ctx, h);
	SSL_CTX_set_info_callback(ctx, on_tls_info);
	h->client_certs = 1;
	return 0;
}

static int add_token(struct st_http *h, const char *t, size_t n)
{
	uint8_t(*nt)[32] = realloc(h->tokens, (h->n_tokens + 1) * sizeof(*nt));

	if (!nt)
		return ST_E_NOMEM;
	h->tokens = nt;
	st_digest(ST_SHA256, t, n, h->tokens[h->n_tokens++]);
	return 0;
}

/* One token per line; blank lines and lines starting with '#' are skipped. The messages
 * name the line, never its text. */
static int load_tokens(struct st_http *h, const struct st_config_http *cfg, char *err,
		       size_t errlen)
{
	unsigned char *data = NULL;
	size_t len = 0, line = 0;
	int rc = 0, r;

	/* Tokens written in the configuration make it a file of secrets like token_file. */
	if (cfg->n_tokens && cfg->file) {
		rc = secret_file_ok("the configuration file, which lists 'tokens',", cfg->file,
				    ST_E_CONFIG, err, errlen);
		if (rc < 0)
			return rc;
	}
	for (size_t i = 0; i < cfg->n_tokens; i++) {
		if (add_token(h, cfg->tokens[i], strlen(cfg->tokens[i])) != 0)
			return st_errf(err, errlen, ST_E_NOMEM, "out of memory");
	}
	if (!cfg->token_file)
		return 0;
	rc = secret_file_ok("token_file", cfg->token_file, ST_E_CONFIG, err, errlen);
	if (rc < 0)
		return rc;
	r = st_read_file(cfg->token_file, MAX_TOKEN_FILE, &data, &len);
	if (r < 0) {
		rc = st_errf(err, errlen, ST_E_IO, "token_file %s: %s", cfg->token_file,
			     r == -EFBIG ? "larger than 1 MiB" : strerror(-r));
		goto out;
	}
	for (size_t pos = 0; pos < len;) {
		size_t end = pos, n;

		while (end < len && data[end] != '\n')
			end++;
		n = end - pos;
		line++;
		while (n && (data[pos + n - 1] == '\r' || data[pos + n - 1] == ' ' ||
			     data[pos + n - 1] == '\t'))
			n--;
		if (n && data[pos] != '#') {
			for (size_t k = 0; k < n; k++) {
				if (data[pos + k] <= 0x20 || data[pos + k] >= 0x7f) {
					rc = st_errf(err, errlen, ST_E_CONFIG,
						     "token_file %s:%zu: a token is printable ASCII "
						     "without spaces",
						     cfg->token_file, line);
					goto out;
				}
			}
			if (n < ST_HTTP_MIN_TOKEN || n > ST_HTTP_MAX_TOKEN) {
				rc = st_errf(err, errlen, ST_E_CONFIG,
					     "token_file %s:%zu: the token is %zu bytes long; a "
					     "token has %d to %d",
					     cfg->token_file, line, n, ST_HTTP_MIN_TOKEN,
					     ST_HTTP_MAX_TOKEN);
				goto out;
			}
			if (add_token(h, (const char *)data + pos, n) != 0) {
				rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory");
				goto out;
			}
		}
		pos = end + 1;
	}
	if (!h->n_tokens)
		rc = st_errf(err, errlen, ST_E_CONFIG, "token_file %s holds no token",
			     cfg->token_file);
out:
	if (data) {
		OPENSSL_cleanse(data, len);
		free(data);
	}
	return rc;
}

/* socket(), bind() and listen() by hand, so that a taken address fails before any handle
 * exists on the loop. Returns the descriptor or a negative ST_E_* code. */
static int open_listener(const struct sockaddr_storage *ss, const char *listen_s, char *err,
			 size_t errlen)
{
	socklen_t len = ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) :
						   sizeof(struct sockaddr_in);
	int fd, one = 1;

	fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return st_errf(err, errlen, ST_E_HTTP_LISTEN, "socket for %s: %s", listen_s,
			       strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)ss, len) != 0 || listen(fd, 511) != 0) {
		int e = errno;

		close(fd);
		return st_errf(err, errlen, ST_E_HTTP_LISTEN, "cannot listen on %s: %s", listen_s,
			       strerror(e));
	}
	return fd;
}

int st_http_start(uv_loop_t *loop, const struct st_config_http *cfg, const struct st_http_env *env,
		  struct st_http **out, char *err, size_t errlen)
{
	const char *listen_s = cfg->listen ? cfg->listen : ST_HTTP_DEFAULT_LISTEN;
	struct sockaddr_storage ss, bound;
	int namelen = sizeof(bound);
	struct st_http *h;
	struct http_handler *handler;
	h2o_hostconf_t *host;
	h2o_pathconf_t *path;
	char ip[64] = "", *chain_pem = NULL, *root_pem = NULL;
	const char *what;
	size_t len;
	int fd = -1, rc;

	*out = NULL;
	if (!env->pool || !env->ca || !env->profiles)
		return st_errf(err, errlen, ST_E_INVAL, "the HTTP server needs a pool, a CA and "
							"profiles");
	rc = st_http_parse_listen(listen_s, &ss, err, errlen);
	if (rc < 0)
		return rc;
	rc = st_http_check_auth(cfg, &ss, &what, err, errlen);
	if (rc < 0)
		return rc;
	h = calloc(1, sizeof(*h));
	if (!h)
		return st_errf(err, errlen, ST_E_NOMEM, "out of memory");
	h->loop = loop;
	h->env = *env;
	h->max_body = cfg->max_body ? cfg->max_body : ST_HTTP_DEFAULT_MAX_BODY;
	h->max_connections =
		cfg->max_connections ? cfg->max_connections : ST_HTTP_DEFAULT_MAX_CONNECTIONS;
	h->sign_timeout_ms =
		cfg->sign_timeout_ms ? cfg->sign_timeout_ms : ST_HTTP_DEFAULT_SIGN_TIMEOUT_MS;
	h->tls = cfg->tls_cert != NULL;

	if (st_ca_chain_pem(env->ca, &chain_pem, &len) != 0 ||
	    st_ca_root_pem(env->ca, &root_pem, &len) != 0) {
		free(chain_pem);
		rc = st_errf(err, errlen, ST_E_NOTFOUND,
			     "the CA has no factory root for root.crt (ca.root in the "
			     "configuration)");
		goto fail;
	}
	rc = st_http_answer_base_init(&h->answer_base, root_pem, chain_pem);
	free(chain_pem);
	free(root_pem);
	if (rc < 0) {
		rc = st_errf(err, errlen, rc, "out of memory");
		goto fail;
	}
	if (h->tls) {
		rc = tls_setup(h, cfg, err, errlen);
		if (rc < 0)
			goto fail;
	}
	rc = load_tokens(h, cfg, err, errlen);
	if (rc < 0)
		goto fail;
	/* Beyond loopback /status, /metrics and the console name devices and their errors:
	 * they need a token, whatever else the server takes (a client certificate is a
	 * device's), unless the configuration says in words that anyone may ask. */
	h->guard_all = !cfg->allow_unauthenticated && !st_http_is_loopback(&ss);
	/* Over HTTPS a page under another name fails the certificate's check before it asks. */
	h->check_host = !h->tls && st_http_is_loopback(&ss);
	if (gethostname(h->hostname, sizeof(h->hostname) - 1) != 0)
		h->hostname[0] = 0;
	fd = open_listener(&ss, listen_s, err, errlen);
	if (fd < 0) {
		rc = fd;
		goto fail;
	}

	h2o_config_init(&h->gconf);
	h->gconf_ready = 1;
	h->gconf.server_name = h2o_iovec_init(H2O_STRLIT("station"));
	h->gconf.max_request_entity_size = h->max_body;
	h->gconf.http1.req_timeout =
		cfg->idle_timeout_ms ? cfg->idle_timeout_ms : ST_HTTP_DEFAULT_IDLE_TIMEOUT_MS;
	h->gconf.http1.upgrade_to_http2 = 0;
	host = h2o_config_register_host(&h->gconf, h2o_iovec_init(H2O_STRLIT(NO_HOST)), 65535);
	path = h2o_config_register_path(host, "/", 0);
	handler = (struct http_handler *)h2o_create_handler(path, sizeof(*handler));
	handler->super.on_req = on_req;
	handler->h = h;

	/* From here on the server has handles on the loop: failures go through the close. */
	h2o_context_init(&h->ctx, loop, &h->gconf);
	h->ctx_ready = 1;
	h->actx.ctx = &h->ctx;
	h->actx.hosts = h->gconf.hosts;
	h->actx.ssl_ctx = h->ssl;
	uv_timer_init(loop, &h->tick);
	uv_timer_init(loop, &h->grace);
	uv_timer_init(loop, &h->step);
	uv_idle_init(loop, &h->s1);
	uv_idle_init(loop, &h->s2);
	h->tick.data = h->grace.data = h->step.data = h;
	h->s1.data = h->s2.data = h;
	uv_tcp_init(loop, &h->listener);
	h->listener.data = h;
	rc = uv_tcp_open(&h->listener, fd);
	if (rc == 0) {
		fd = -1;
		rc = uv_listen((uv_stream_t *)&h->listener, 511, on_accept);
	}
	if (rc == 0)
		rc = uv_tcp_getsockname(&h->listener, (struct sockaddr *)&bound, &namelen);
	if (rc < 0) {
		st_errf(err, errlen, ST_E_HTTP_LISTEN, "cannot listen on %s: %s", listen_s,
			uv_strerror(rc));
		if (fd >= 0)
			close(fd);
		st_http_close(h, NULL, NULL);
		return ST_E_HTTP_LISTEN;
	}
	if (bound.ss_family == AF_INET6) {
		uv_ip6_name((struct sockaddr_in6 *)&bound, ip, sizeof(ip));
		snprintf(h->url, sizeof(h->url), "%s://[%s]:%d", h->tls ? "https" : "http", ip,
			 ntohs(((struct sockaddr_in6 *)&bound)->sin6_port));
	} else {
		uv_ip4_name((struct sockaddr_in *)&bound, ip, sizeof(ip));
		snprintf(h->url, sizeof(h->url), "%s://%s:%d", h->tls ? "https" : "http", ip,
			 ntohs(((struct sockaddr_in *)&bound)->sin_port));
	}
	h->started = uv_hrtime();
	uv_timer_start(&h->tick, on_tick, TICK_MS, TICK_MS);
	uv_unref((uv_handle_t *)&h->tick);
	if (cfg->allow_unauthenticated && !st_http_is_loopback(&ss))
		st_warn("http: %s answers without authentication (allow_unauthenticated: true): "
			"anyone who reaches it can register devices and read /status",
			h->url);
	else if (h->guard_all && !h->n_tokens)
		st_notice("http: %s takes client certificates only: each registers the device "
			  "it names; other registrations, /status, /metrics and the console need "
			  "a token (token_file)",
			  h->url);
	*out = h;
	return 0;
fail:
	SSL_CTX_free(h->ssl);
	free(h->tokens);
	st_http_answer_base_clear(&h->answer_base);
	free(h);
	return rc;
}

const char *st_http_url(const struct st_http *h)
{
	return h->url;
}

void st_http_set_status_hook(struct st_http *h, st_http_status_fn fn, void *arg)
{
	h->hook = fn;
	h->hook_arg = arg;
}

void st_http_set_console(struct st_http *h, struct st_console *c,
			 const struct st_http_console_ops *ops)
{
	h->console = c;
	h->console_ops = ops;
}

void st_http_respond(struct st_http *h, struct st_h2o_req_t *req, int status, const char *ctype,
		     const char *body, size_t len)
{
	respond(h, req, status, ctype, body, len);
}

void st_http_respond_error(struct st_http *h, struct st_h2o_req_t *req, int code,
			   const char *msg)
{
	respond_error(h, req, code, msg, NULL);
}
