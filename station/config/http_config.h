/* The `http` section of the station configuration (config.h) as the configuration checks it
 * and the server (http.h) starts from it: the defaults, the limits on tokens, the listen
 * address, and who may use a server listening there. */
#ifndef ST_HTTP_CONFIG_H
#define ST_HTTP_CONFIG_H

#include <stddef.h>
#include <sys/socket.h>

#include "config.h"

#define ST_HTTP_DEFAULT_LISTEN "127.0.0.1:8443"
#define ST_HTTP_DEFAULT_MAX_BODY (64 * 1024)
#define ST_HTTP_DEFAULT_MAX_CONNECTIONS 1024
#define ST_HTTP_DEFAULT_SIGN_TIMEOUT_MS 60000
#define ST_HTTP_DEFAULT_IDLE_TIMEOUT_MS 10000
#define ST_HTTP_MIN_TOKEN 16  /* bytes of an accepted OSF-TOKEN, at least */
#define ST_HTTP_MAX_TOKEN 512 /* and at most */
#define ST_HTTP_MAX_TOKENS 1024

/* Parses a listen address: "HOST:PORT" with a numeric IPv4 host or localhost (127.0.0.1; no
 * other name is resolved), or "[V6]:PORT"; PORT 0..65535 (0: any free port). Returns 0 and
 * *out, or ST_E_CONFIG with a message naming the address and what was expected. Any
 * thread. */
int st_http_parse_listen(const char *s, struct sockaddr_storage *out, char *err, size_t errlen);

/* 1 when the address is loopback: 127.0.0.0/8, ::1, or ::ffff:127.0.0.0/104. The any
 * addresses (0.0.0.0, ::) are not. Any thread. */
int st_http_is_loopback(const struct sockaddr_storage *ss);

/* Whether a request's Host (the n bytes at host, "" when it sent none) names this machine by a
 * loopback name: localhost or a name under it, a 127.0.0.0/8 or ::1 literal, or hostname
 * (this machine's name, may be NULL), each with an optional port. A page of another site
 * that reached a loopback server through a name of its own (DNS rebinding) does not. Any
 * thread. */
int st_http_host_is_local(const char *host, size_t n, const char *hostname);

/* Who may use a server configured as cfg listening on ss (http.h, "Who may ask"): 0 when
 * the configuration is allowed, else ST_E_CONFIG with a message naming the fix, and *key the
 * configuration key it is about ("listen", "tokens", "token_file",
 * "allow_unauthenticated"). Reads no file. Any thread. */
int st_http_check_auth(const struct st_config_http *cfg, const struct sockaddr_storage *ss,
		       const char **key, char *err, size_t errlen);

#endif
