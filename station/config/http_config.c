/* The `http` section of the station configuration (config.h, http_config.h): the keys, their
 * ranges, and the rules that tie them together. Tokens are secrets: no message ever quotes
 * one. */
#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "http_config.h"

#include "config.h"
#include "err.h"
#include "netaddr.h"
#include "yamlload.h"

int st_http_parse_listen(const char *s, struct sockaddr_storage *out, char *err, size_t errlen)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *colon, *port;
	size_t hlen;
	char *end;
	long n;

	memset(out, 0, sizeof(*out));
	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		if (!close || close[1] != ':')
			return st_errf(err, errlen, ST_E_CONFIG,
				       "listen address '%s' must be [IPV6]:PORT", s);
		hlen = (size_t)(close - s - 1);
		if (hlen >= sizeof(host))
			return st_errf(err, errlen, ST_E_CONFIG,
				       "listen address '%s': the IPv6 address is too long", s);
		memcpy(host, s + 1, hlen);
		host[hlen] = 0;
		port = close + 2;
	} else {
		colon = strrchr(s, ':');
		if (!colon || colon == s)
			return st_errf(err, errlen, ST_E_CONFIG,
				       "listen address '%s' must be HOST:PORT, e.g. %s or "
				       "localhost:8443",
				       s, ST_HTTP_DEFAULT_LISTEN);
		hlen = (size_t)(colon - s);
		if (hlen >= sizeof(host))
			return st_errf(err, errlen, ST_E_CONFIG,
				       "listen address '%s': the host is too long", s);
		memcpy(host, s, hlen);
		host[hlen] = 0;
		port = colon + 1;
	}
	if (port[0] < '0' || port[0] > '9')
		return st_errf(err, errlen, ST_E_CONFIG, "listen address '%s' has no port number",
			       s);
	n = strtol(port, &end, 10);
	if (*end || n < 0 || n > 65535)
		return st_errf(err, errlen, ST_E_CONFIG,
			       "listen address '%s': port '%s' is not a number in 0..65535", s,
			       port);
	if (s[0] == '[') {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)out;

		if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
			return st_errf(err, errlen, ST_E_CONFIG,
				       "listen address '%s': '%s' is not a numeric IPv6 address", s,
				       host);
		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)n);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)out;

		/* The one name taken, without asking a resolver: the IPv4 loopback. */
		if (strcasecmp(host, "localhost") == 0)
			snprintf(host, sizeof(host), "127.0.0.1");
		if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
			return st_errf(err, errlen, ST_E_CONFIG,
				       "listen address '%s': '%s' is not a numeric IPv4 address or "
				       "localhost (other names are not resolved; write [::1]:PORT "
				       "for IPv6)",
				       s, host);
		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)n);
	}
	return 0;
}

int st_http_is_loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)ss;

		return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
	}
	if (ss->ss_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;

		/* ::ffff:127.x.y.z is the IPv4 loopback seen from an IPv6 socket. */
		return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return 0;
}

/* Whether the n bytes at p are a port: 1 to 5 digits. */
static int is_port(const char *p, size_t n)
{
	if (n < 1 || n > 5)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return 0;
	}
	return 1;
}

int st_http_host_is_local(const char *host, size_t n, const char *hostname)
{
	char name[256];
	const char *colon;
	size_t len;
	int ip;

	if (n == 0)
		return 1;
	if (host[0] == '[') {
		const char *close = memchr(host, ']', n);

		len = close ? (size_t)(close - host - 1) : 0;
		if (!close || len == 0 || memchr(host + 1, ':', len) == NULL)
			return 0;
		if ((size_t)(close - host) + 1 < n &&
		    (close[1] != ':' || !is_port(close + 2, n - (size_t)(close - host) - 2)))
			return 0;
		return st_ip_is_loopback(host + 1, len) == 1;
	}
	colon = memchr(host, ':', n);
	len = colon ? (size_t)(colon - host) : n;
	if (colon && !is_port(colon + 1, n - len - 1))
		return 0;
	/* One final dot names the same host ("localhost."). */
	if (len > 1 && host[len - 1] == '.')
		len--;
	if (len == 0 || len >= sizeof(name))
		return 0;
	memcpy(name, host, len);
	name[len] = 0;
	if (strlen(name) != len)
		return 0;
	ip = st_ip_is_loopback(name, len);
	if (ip >= 0)
		return ip;
	/* RFC 6761: localhost and every name under it are this machine's. */
	if (strcasecmp(name, "localhost") == 0 ||
	    (len > 10 && strcasecmp(name + len - 10, ".localhost") == 0))
		return 1;
	return hostname && hostname[0] && strcasecmp(name, hostname) == 0;
}

int st_http_check_auth(const struct st_config_http *cfg, const struct sockaddr_storage *ss,
		       const char **key, char *err, size_t errlen)
{
	const char *listen_s = cfg->listen ? cfg->listen : ST_HTTP_DEFAULT_LISTEN;
	int tls = cfg->tls_cert && cfg->tls_key;
	int tokens = cfg->n_tokens > 0 || cfg->token_file;
	int certs = tls && cfg->client_ca;

	*key = NULL;
	if (cfg->allow_unauthenticated && (tokens || certs)) {
		*key = "allow_unauthenticated";
		return st_errf(err, errlen, ST_E_CONFIG,
			       "'allow_unauthenticated: true' contradicts %s, which the server "
			       "requires of every client: remove one or the other",
			       certs ? "client_ca" : cfg->token_file ? "token_file" : "tokens");
	}
	if (st_http_is_loopback(ss))
		return 0;
	if (tokens && !tls) {
		*key = cfg->token_file ? "token_file" : "tokens";
		return st_errf(err, errlen, ST_E_CONFIG,
			       "tokens over plain HTTP on '%s', which is not loopback, cross the "
			       "network readable by anyone on it: add tls_cert and tls_key "
			       "(HTTPS), or listen on loopback (127.0.0.1, [::1], localhost)",
			       listen_s);
	}
	if (tokens || certs || cfg->allow_unauthenticated)
		return 0;
	*key = "listen";
	return st_errf(err, errlen, ST_E_CONFIG,
		       "listen address '%s' is not loopback: anyone who reaches it could "
		       "register devices and read /status. Require client certificates "
		       "(tls_cert, tls_key, client_ca) or tokens over HTTPS (tls_cert, tls_key, "
		       "token_file or tokens), or write 'allow_unauthenticated: true'; or listen "
		       "on loopback (127.0.0.1, [::1], localhost)",
		       listen_s);
}

/* A token: printable ASCII without spaces, as an HTTP header value carries it unchanged. The
 * message says where and why, never what. */
static int check_token(struct st_yl_ctx *ctx, const struct st_yl_node *n, const char *what)
{
	if (n->len < ST_HTTP_MIN_TOKEN || n->len > ST_HTTP_MAX_TOKEN) {
		st_yl_error(ctx, n, "%s is %zu bytes long; a token has %d to %d", what, n->len,
			    ST_HTTP_MIN_TOKEN, ST_HTTP_MAX_TOKEN);
		return -1;
	}
	for (size_t i = 0; i < n->len; i++) {
		unsigned char c = (unsigned char)n->value[i];

		if (c <= 0x20 || c >= 0x7f) {
			st_yl_error(ctx, n,
				    "%s has a character that is not printable ASCII at byte %zu; "
				    "tokens are sent in an HTTP header",
				    what, i + 1);
			return -1;
		}
	}
	return 0;
}

static int h_tokens(struct st_yl_ctx *ctx, const struct st_yl_node *node,
		    const struct st_yl_key *key, void *base)
{
	struct st_config_http *h = base;
	char what[64];

	(void)key;
	if (st_yl_expect(ctx, node, ST_YL_SEQUENCE, "tokens") != 0)
		return -1;
	if (node->n == 0 || node->n > ST_HTTP_MAX_TOKENS) {
		st_yl_error(ctx, node, "'tokens' lists %zu tokens; give 1 to %d", node->n,
			    ST_HTTP_MAX_TOKENS);
		return -1;
	}
	h->tokens = calloc(node->n, sizeof(*h->tokens));
	if (!h->tokens) {
		st_yl_error(ctx, node, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < node->n; i++) {
		const struct st_yl_node *it = node->items[i];

		snprintf(what, sizeof(what), "tokens[%zu]", i);
		if (st_yl_expect(ctx, it, ST_YL_SCALAR, what) != 0 || check_token(ctx, it, what))
			continue;
		h->tokens[h->n_tokens] = strdup(it->value);
		if (!h->tokens[h->n_tokens]) {
			st_yl_error(ctx, it, "out of memory");
			return -1;
		}
		h->n_tokens++;
	}
	return 0;
}

#define H(field) offsetof(struct st_config_http, field)

enum {
	K_LISTEN,
	K_TLS_CERT,
	K_TLS_KEY,
	K_CLIENT_CA,
	K_TOKEN_FILE,
	K_TOKENS,
	K_MAX_BODY,
	K_MAX_CONNECTIONS,
	K_SIGN_TIMEOUT,
	K_IDLE_TIMEOUT,
	K_ALLOW_UNAUTHENTICATED,
	K_CONSOLE,
	K_N,
};

static const struct st_yl_key http_keys[] = {
	[K_LISTEN] = ST_YL_RANGE("listen", st_yl_h_string, H(listen),
				 ST_YL_ONELINE | ST_YL_NONEMPTY, 0, 64),
	[K_TLS_CERT] = ST_YL_KEY("tls_cert", st_yl_h_path, H(tls_cert), 0),
	[K_TLS_KEY] = ST_YL_KEY("tls_key", st_yl_h_path, H(tls_key), 0),
	[K_CLIENT_CA] = ST_YL_KEY("client_ca", st_yl_h_path, H(client_ca), 0),
	[K_TOKEN_FILE] = ST_YL_KEY("token_file", st_yl_h_path, H(token_file), 0),
	[K_TOKENS] = ST_YL_KEY("tokens", h_tokens, 0, 0),
	[K_MAX_BODY] = ST_YL_RANGE("max_body", st_yl_h_uint, H(max_body), 0, 1024, 1024 * 1024),
	[K_MAX_CONNECTIONS] =
		ST_YL_RANGE("max_connections", st_yl_h_uint, H(max_connections), 0, 1, 65536),
	[K_SIGN_TIMEOUT] =
		ST_YL_RANGE("sign_timeout_ms", st_yl_h_uint, H(sign_timeout_ms), 0, 100, 3600000),
	[K_IDLE_TIMEOUT] =
		ST_YL_RANGE("idle_timeout_ms", st_yl_h_uint, H(idle_timeout_ms), 0, 100, 3600000),
	[K_ALLOW_UNAUTHENTICATED] = ST_YL_KEY("allow_unauthenticated", st_yl_h_bool,
					      H(allow_unauthenticated), 0),
	[K_CONSOLE] = ST_YL_KEY("console", st_yl_h_bool, H(console), 0),
	[K_N] = ST_YL_END,
};

int st_config_h_http(struct st_yl_ctx *ctx, const struct st_yl_node *node,
		     const struct st_yl_key *key, void *base)
{
	struct st_config_http *h = (struct st_config_http *)((char *)base + key->offset);
	const struct st_yl_node *f[K_N];
	struct sockaddr_storage ss;
	const char *what;
	char err[512];
	size_t saved;
	unsigned errs;
	int listen_ok = 1;

	if (st_yl_expect(ctx, node, ST_YL_MAPPING, "http") != 0)
		return -1;
	st_config_http_clear(h);
	/* The operator console is read-only and guarded like /status: on unless turned off. */
	h->console = 1;
	saved = st_yl_path_push(ctx, "http");
	errs = st_yl_parse_mapping(ctx, node, http_keys, h, f);
	st_yl_path_pop(ctx, saved);
	h->enabled = 1;
	if (!h->listen)
		h->listen = strdup(ST_HTTP_DEFAULT_LISTEN);
	if (!h->listen) {
		st_yl_error(ctx, node, "out of memory");
		return -1;
	}
	if (st_http_parse_listen(h->listen, &ss, err, sizeof(err)) != 0) {
		st_yl_error(ctx, f[K_LISTEN] ? f[K_LISTEN] : node, "%s", err);
		errs++;
		listen_ok = 0;
	}
	if (!f[K_TLS_CERT] != !f[K_TLS_KEY]) {
		st_yl_error(ctx, f[K_TLS_CERT] ? f[K_TLS_CERT] : f[K_TLS_KEY],
			    "HTTPS needs both 'tls_cert' and 'tls_key'");
		errs++;
	}
	if (f[K_CLIENT_CA] && !f[K_TLS_CERT]) {
		st_yl_error(ctx, f[K_CLIENT_CA],
			    "'client_ca' needs HTTPS: give 'tls_cert' and 'tls_key' too");
		errs++;
	}
	/* Beyond loopback, nobody registers devices without authentication unless the file
	 * says so in words (the same rule st_http_start() applies). */
	if (listen_ok && st_http_check_auth(h, &ss, &what, err, sizeof(err)) != 0) {
		const struct st_yl_node *at = node;

		for (size_t i = 0; i < K_N; i++) {
			if (f[i] && strcmp(http_keys[i].name, what) == 0)
				at = f[i];
		}
		st_yl_error(ctx, at, "%s", err);
		errs++;
	}
	if (!h->max_body)
		h->max_body = ST_HTTP_DEFAULT_MAX_BODY;
	if (!h->max_connections)
		h->max_connections = ST_HTTP_DEFAULT_MAX_CONNECTIONS;
	if (!h->sign_timeout_ms)
		h->sign_timeout_ms = ST_HTTP_DEFAULT_SIGN_TIMEOUT_MS;
	if (!h->idle_timeout_ms)
		h->idle_timeout_ms = ST_HTTP_DEFAULT_IDLE_TIMEOUT_MS;
	return errs ? -1 : 0;
}

void st_config_http_clear(struct st_config_http *h)
{
	free(h->listen);
	free(h->tls_cert);
	free(h->tls_key);
	free(h->client_ca);
	free(h->token_file);
	for (size_t i = 0; i < h->n_tokens; i++) {
		/* Secrets leave no copy behind in freed memory. */
		OPENSSL_cleanse(h->tokens[i], strlen(h->tokens[i]));
		free(h->tokens[i]);
	}
	free(h->tokens);
	memset(h, 0, sizeof(*h));
}
