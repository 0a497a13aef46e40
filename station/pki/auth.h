/* Production authorizations: the brand owner's signed word that a factory may certify so
 * many boards of given SKUs, in a lot, within a time window, optionally on named stations
 * only. A station whose profile says `authorization: required` certifies a new board only
 * by consuming a unit of a matching, valid authorization in the ledger (ledger.h), in the
 * transaction of the board's intent.
 *
 * The document is CMS SignedData (cms.h) whose content (eContentType
 * id-ct-stationAuthorization) is one JSON object, UTF-8, keys:
 *   "type": "station-authorization"   (required, exactly)
 *   "version": 1                       (required)
 *   "id": unique id, 1..64 of [A-Za-z0-9._-] (`station auth issue` draws 128 random bits)
 *   "factory": the factory (the OU of the factory root and the local CA), 1..64 bytes
 *   "skus": [sku, ...], 1..64 profile SKUs ([A-Za-z0-9._-], 1..64)
 *   "lot": lot or job id, 1..64 of [A-Za-z0-9._:/#-]
 *   "units": certificates allowed, 1..1000000000
 *   "not_before", "not_after": "YYYY-MM-DDTHH:MM:SSZ" (UTC), not_before < not_after
 *   "stations": [name, ...]            (optional: any station when absent), 1..64 names
 *   "issued_at": "YYYY-MM-DDTHH:MM:SSZ"
 * Nothing else: an unknown key, a duplicate key or a wrong type is refused (AUTH_FORMAT), so
 * a station never ignores a restriction written by a newer issuer.
 *
 * It is signed by the factory root key itself or by an authorization key whose certificate
 * the factory root issued with extended key usage id-kp-stationAuthorization only (cms.h);
 * `station ca init` makes such a key beside the development root. A station verifies each
 * document against the factory root it already trusts (ca.root), then checks the factory,
 * its own name and the validity window; every refusal has a code of its own (AUTH_FORMAT,
 * AUTH_SIGNATURE, AUTH_UNTRUSTED, AUTH_PURPOSE, AUTH_FACTORY, AUTH_STATION, AUTH_EXPIRED,
 * AUTH_CONFLICT) and names the file.
 *
 * A loaded set is immutable but for what the station last learnt of each authorization's
 * count (atomics); it is reference-counted, so that a SIGHUP reload leaves boards in flight
 * on the set they started with. Any thread. */
#ifndef ST_AUTH_H
#define ST_AUTH_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <openssl/x509.h>

#include "signer.h"

#define ST_AUTH_MAX_ID 64
#define ST_AUTH_MAX_LIST 64
#define ST_AUTH_MAX_UNITS 1000000000LL
#define ST_AUTH_MAX_BYTES (256 * 1024) /* largest document read */
#define ST_AUTH_SUFFIX ".auth"         /* files of an authorizations directory */

struct st_auth {
	char *path;    /* the file it was read from (NULL: memory) */
	char *id;
	char *factory;
	char **skus;
	size_t nskus;
	char *lot;
	int64_t units;
	time_t not_before, not_after, issued_at;
	char **stations; /* NULL when any station may use it */
	size_t nstations;
	uint8_t doc_sha256[32]; /* of the signed document as read */
	char *signer;           /* the signing certificate's subject */
	/* What the station last learnt from the ledger, for the view: units used by every
	 * station (-1: not known yet), and 1 once recorded in this station's ledger. */
	_Atomic int64_t used_seen;
	atomic_int registered;
};

void st_auth_free(struct st_auth *a);

/* What a station checks a document against. */
struct st_auth_env {
	X509 *root;          /* the factory root (ca.root) */
	const char *factory; /* this factory (the local CA's OU) */
	const char *station; /* this station's name */
	time_t now;          /* 0: the current time */
	int any_time;        /* 1: accept it outside its validity window (a job-end report
			      * checked after the authorization ended) */
	int own_ledger;      /* 1: the ledger counting the units is a file, not the line's
			      * database: st_auth_set_load() warns of a document any station
			      * may use, whose units another file would count again */
};

/* Units are counted by the ledger that takes them: a document that names no station, taken
 * by a station whose ledger is a file (env->own_ledger; a line's database is shared by
 * design), could be spent in full again by a station with a file of its own. Warns of it
 * (name: the file), naming the fix. */
void st_auth_warn_unbound(const struct st_auth *a, const char *name,
			  const struct st_auth_env *env);

/* Verifies a document (DER or PEM) as described above; name (a file name) starts every
 * message. Returns 0 and a new *out, or an ST_E_AUTH_* code (ST_E_NOMEM) with a message;
 * *out is NULL then. */
int st_auth_verify(const uint8_t *doc, size_t len, const char *name,
		   const struct st_auth_env *env, struct st_auth **out, char *err, size_t errlen);

/* What `station auth issue` writes. Strings borrowed. */
struct st_auth_spec {
	const char *id; /* NULL: 128 random bits in hex */
	const char *factory;
	const char *const *skus;
	size_t nskus;
	const char *lot;
	int64_t units;
	time_t not_before, not_after;
	const char *const *stations; /* NULL/0: any station */
	size_t nstations;
};

/* Checks spec and signs the document with signer, whose certificate is cert (the factory
 * root, or an authorization key's certificate with its chain up to, not including, the
 * root). Returns 0 and *der (OPENSSL_free) of *len bytes, or ST_E_INVAL (a field out of its
 * rules, named), ST_E_AUTH_PURPOSE (cert is neither a root nor an authorization key), or
 * what st_cms_sign() returns. */
int st_auth_issue(struct drv_signer *signer, X509 *cert, STACK_OF(X509) *chain,
		  const struct st_auth_spec *spec, uint8_t **der, size_t *len, char *err,
		  size_t errlen);

/* "YYYY-MM-DDTHH:MM:SSZ" to and from time_t. parse returns 0 or ST_E_INVAL. */
void st_auth_time_format(time_t t, char buf[32]);
int st_auth_time_parse(const char *s, time_t *out);
/* A time on a command line: that, or YYYY-MM-DD for its midnight (UTC). */
int st_auth_time_parse_arg(const char *s, time_t *out);

/* ---- Sets ---------------------------------------------------------------------------- */

struct st_auth_set;

/* Loads every *.auth file of dir (not recursing; names starting with '.' skipped), in name
 * order. A document that is refused is logged (st_err: "authorization refused: CODE: FILE:
 * reason") and left out, as is a second document with an id already loaded; one not valid
 * yet is loaded with a notice; the count loaded is logged. A directory that does not exist
 * (or dir NULL) gives an empty set, with a warning. *refused (may be NULL) gets the number
 * refused. Returns 0 and *out (one reference), or ST_E_IO (dir cannot be read) /
 * ST_E_NOMEM; *out is NULL then. Blocks (files). */
int st_auth_set_load(const char *dir, const struct st_auth_env *env, struct st_auth_set **out,
		     unsigned *refused, char *err, size_t errlen);

/* An empty set (no authorizations), or NULL when out of memory. */
struct st_auth_set *st_auth_set_new(void);
struct st_auth_set *st_auth_set_ref(struct st_auth_set *s);
/* NULL allowed; the last reference frees the set. */
void st_auth_set_unref(struct st_auth_set *s);

/* Adds a to s, which then owns it (st_auth_free at the last unref): for sets built in
 * memory. Returns 0 or ST_E_NOMEM (a is not taken then). Before s is shared. */
int st_auth_set_add(struct st_auth_set *s, struct st_auth *a);

size_t st_auth_set_count(const struct st_auth_set *s);
struct st_auth *st_auth_set_get(const struct st_auth_set *s, size_t i);

/* The authorizations a new certificate for sku may consume at now (0: the current time),
 * best first (the one that ends soonest, then by id), at most max of them in cand. Returns
 * the number (>= 1), or ST_E_AUTH_SKU (none covers sku), ST_E_AUTH_EXPIRED (those that do
 * have all ended), ST_E_AUTH_NOT_YET_VALID (none has begun) with a message. s may be NULL
 * (nothing loaded). */
int st_auth_set_pick(const struct st_auth_set *s, const char *sku, time_t now,
		     struct st_auth **cand, size_t max, char *err, size_t errlen);

/* Units left below which the view and the log warn: a tenth of the units, at least one. */
int64_t st_auth_warn_below(const struct st_auth *a);

#endif
