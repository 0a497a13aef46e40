/* The registration server: HTTP (or HTTPS) on the station's own libuv loop, a drop-in for
 * the reference registration server that the device tool lmp-device-register talks to, with
 * the same checks, CA, pool and ledger as the serial path. Line monitors read GET /status
 * (JSON) and GET /metrics (Prometheus text) from the same server.
 *
 * Resources:
 *   HEAD /sign      200, always (the device tool sends it first and gives up only on a
 *                   connection error or a status >= 500)
 *   POST /sign      the device tool's JSON: "csr" (PEM), "hardware-id", "uuid", and
 *                   optionally "name", "sota-config-dir", "overrides" {section: {key:
 *                   TOML text}}, "group"; other keys (use-ostree-server) are ignored.
 *                   201 with exactly {"root.crt", "sota.toml", "client.pem",
 *                   "client.chained"}, each the text of the file of that name.
 *   GET /status     JSON: the server's and the pool's counters, plus what the status hook
 *                   adds (the engine's slots, with device ids and errors)
 *   GET /metrics    Prometheus text format
 *   GET /console... the operator console (console.h), when one is set (st_http_set_console)
 *
 * Who may ask. On loopback (127.0.0.0/8, ::1, localhost) the server answers whoever connects,
 * checking OSF-TOKEN on POST /sign when tokens are configured. Beyond loopback (a specific address
 * or any, 0.0.0.0 and ::) it refuses to start unless it authenticates every client: client
 * certificates (client_ca, checked in the TLS handshake for every resource), or tokens over HTTPS.
 * A token is the registration client's and registers any uuid; a client certificate is a
 * device's: where it is the only credential it registers the uuid of its CN and no other (401
 * HTTP_AUTH), so one device's key buys no certificate for another. Beyond loopback /status,
 * /metrics and the console need a token, whatever else the server takes, since they name device
 * ids and their errors (a browser, which cannot add a header to the console's event stream, sends the
 * token as the cookie station_token, which the console's own page sets; the cookie counts for the
 * console alone); or the configuration says `allow_unauthenticated: true` in words. Tokens over
 * plain HTTP beyond loopback are refused: anyone on the network could read them; so is a
 * token_file or tls_key that every user of the machine may read or write, and a configuration
 * file with tokens written in it (`tokens:`) that every user may. HEAD /sign answers 200
 * to anyone (the device tool's probe; it says nothing). Loopback is this machine's programs, not
 * the web pages its browser opens: over plain HTTP on loopback every request must be addressed to
 * this machine (Host localhost, a name under it, a loopback address or the host name;
 * st_http_host_is_local), so that a page that rebinds a name of its own to 127.0.0.1 reads nothing
 * (421 HTTP_HOST); and POST /sign from a browser (Origin or Sec-Fetch-Site, which registration
 * clients never send) is refused everywhere (403 HTTP_BROWSER), since a page may post a simple
 * request to any address without reading the answer. Another site's page may link to the other
 * resources (a navigation) but not fetch them (Sec-Fetch-Site cross-site or same-site otherwise:
 * 403 HTTP_BROWSER), so its event streams take no connection. Every answer says nosniff and DENY
 * (no framing).
 *
 * Reissue. Under a profile's `reprovision: reissue`, a registration for a uuid recorded with
 * another key is authenticated (st_sign_req.id_authenticated) when it carries a valid token,
 * or when its client certificate was issued to that same uuid (CN) and is still the device's
 * current one (the newest live row of the uuid in the ledger, checked by the pool in the
 * transaction of the intent): the device proves with the key of its current certificate that
 * it is that device. A certificate a reissue replaced proves nothing. Any other such request
 * is refused (409 POOL_REISSUE_UNAUTH, naming both serials when a certificate was not the
 * current one) and flagged.
 * Errors are JSON {"error": NAME, "message": text} where NAME is st_errname() of the code
 * (CSR_SIGNATURE, POOL_ID_OTHER_KEY, ...): 400 malformed JSON, a missing or malformed field, a CSR
 * the profile's policy refuses, no profile for the hardware id; 401 a missing or wrong OSF-TOKEN;
 * 403 a POST /sign from a browser (HTTP_BROWSER), a group or key storage the profile does not
 * allow, or no production authorization left for a profile that requires one (AUTH_EXHAUSTED,
 * AUTH_EXPIRED, AUTH_NOT_YET_VALID, AUTH_SKU); 404 an unknown path; 405 a wrong method (with
 * Allow); 409 the ledger refuses (the device id has a certificate for another key and the profile
 * refuses reprovisioning, or reissues but the request was not authenticated; the key is certified
 * for another device); 413 a body over max_body (refused from Content-Length before the body is
 * read, or while a chunked body arrives; this one comes from H2O as text); 421 a Host that is not
 * this machine's on a loopback server (HTTP_HOST); 503 (with Retry-After) the pool is full, the
 * station is stopping, another request of the same device is in flight, or the pool did not sign
 * within sign_timeout_ms (the HSM is away: what it signs later is recorded and given to the device
 * when it asks again). A device that registers again with the same uuid and key gets its recorded
 * certificate again (201, same serial).
 *
 * What can go wrong is checked before the CSR reaches the pool: the request, the profile
 * (group, key storage, device id), sota.toml rendered with the request's overrides, and the
 * 201 body is laid out in memory with room for the certificate. The CSR itself (st_csr_check,
 * the serial path's check) is checked by the pool on a signing worker before anything of the
 * request reaches the ledger (pool.h, step 0), so that the loop spends no verification on it;
 * one that fails gets its 400 with the check's code and message, and no ledger row. Once the pool returns a certificate (after the ledger committed it)
 * the answer is filled in without anything that can fail: never a 500 after signing.
 *
 * Nothing on the loop blocks: files (TLS keys, token file) are read by st_http_start(), the
 * signing pool does signing and fsync on its own threads, and rendering is in memory.
 * Loop thread only. */
#ifndef ST_HTTP_H
#define ST_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <jansson.h>
#include <uv.h>

#include "ca.h"
#include "config.h"
#include "http_config.h"
#include "pool.h"

struct st_http;
struct st_profiles;

/* What the server shares with the rest of the station. Everything must outlive it. */
struct st_http_env {
	struct st_pool *pool;   /* the signing pool (the engine's, when it runs one) */
	const struct st_ca *ca; /* the CA the pool signs with: its OU, chain and root */
	/* The profile set in force, with a new reference the server drops when the request
	 * is finished (st_profiles_unref), so a reload leaves requests in flight on the set
	 * they started with. */
	struct st_profiles *(*profiles)(void *arg);
	void *arg;
};

/* Adds to the JSON object of GET /status (the engine: its slots and tallies). */
typedef void (*st_http_status_fn)(json_t *status, void *arg);

/* Starts the server on loop: checks the configuration's authentication against the address
 * (st_http_check_auth()), reads the TLS certificate, key and client CAs and the token file
 * (blocking, before the loop runs busy), binds and listens. cfg is copied; defaults apply to
 * its zero fields. Returns 0 and *out (stop with st_http_close()), or ST_E_HTTP_LISTEN,
 * ST_E_HTTP_TLS, ST_E_IO, ST_E_CONFIG, ST_E_NOMEM with a message; *out is NULL then and
 * nothing is left on the loop. Loop thread. */
int st_http_start(uv_loop_t *loop, const struct st_config_http *cfg, const struct st_http_env *env,
		  struct st_http **out, char *err, size_t errlen);

/* The server's base URL with the port actually bound ("https://127.0.0.1:8443"). */
const char *st_http_url(const struct st_http *h);

/* Sets the hook that adds to GET /status (NULL: none). Loop thread. */
void st_http_set_status_hook(struct st_http *h, st_http_status_fn fn, void *arg);

struct st_console;
struct st_h2o_req_t; /* h2o_req_t */

/* What the server needs of the operator console, which sits in a layer above it (it reads
 * the line's slots): the console implements these (console.h, st_console_http). */
struct st_http_console_ops {
	/* Whether path (len bytes, not NUL-terminated) is one of the console's resources. */
	int (*owns)(const char *path, size_t len);
	/* Answers req, a GET or HEAD whose client may see the console. */
	void (*handle)(struct st_console *c, struct st_http *h, struct st_h2o_req_t *req);
	/* Answers req, whose client has no credential the server accepts. */
	void (*unauthorized)(struct st_console *c, struct st_http *h, struct st_h2o_req_t *req);
	/* Ends the console's live streams: the server is closing. */
	void (*stop)(struct st_console *c);
};

/* Serves the operator console c through ops under /console (c NULL: none; 404 there). c
 * must outlive the server or be unset first. Loop thread. */
void st_http_set_console(struct st_http *h, struct st_console *c,
			 const struct st_http_console_ops *ops);

/* For the console's resources: answers req with status and body (copied; ctype may be
 * NULL), counted in /status and /metrics like the server's own answers; or with the
 * server's JSON error for code (see "Errors" above) and message msg. Loop thread. */
void st_http_respond(struct st_http *h, struct st_h2o_req_t *req, int status, const char *ctype,
		     const char *body, size_t len);
void st_http_respond_error(struct st_http *h, struct st_h2o_req_t *req, int code,
			   const char *msg);

/* Counters, for /status, /metrics and the engine's reports. */
struct st_http_stats {
	uint64_t requests;     /* every request handled (H2O's own errors not included) */
	uint64_t signed_;      /* 201 with a new certificate */
	uint64_t reused;       /* 201 with the recorded certificate of a repeated request */
	uint64_t refused;      /* 409: the ledger refused */
	uint64_t rejected;     /* 400/403: request, profile or CSR refused */
	uint64_t unauthorized; /* 401 */
	uint64_t too_large;    /* 413 (H2O's count) */
	uint64_t busy;         /* 503: pool full, stopping, or sign_timeout_ms passed */
	uint64_t failed;       /* 500 before anything was signed (signer, CA, ledger) */
	uint64_t abandoned;    /* signed or refused after the client had gone or had its 503 */
	unsigned connections;  /* open now */
	unsigned in_flight;    /* registrations waiting for the pool now */
};

void st_http_stats(const struct st_http *h, struct st_http_stats *out);

/* Stops the server: no new connections; registrations waiting for the pool are answered
 * 503 at once (their requests stay in the pool, so a certificate it signs is recorded and
 * given to the device when it registers again); idle connections are closed, busy ones
 * after their response (or after 5 s). Then close_cb(arg) (may be NULL) is called, when the
 * server's memory is released; run the loop until then. Call it before st_pool_close():
 * from its return on, the server touches the pool only through the requests it left there,
 * whose done() the pool calls as usual (also after close_cb). Calling it again is harmless.
 * Loop thread. */
void st_http_close(struct st_http *h, void (*close_cb)(void *arg), void *arg);

#endif
