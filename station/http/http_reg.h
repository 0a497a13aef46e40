/* The registration request of the device tool (lmp-device-register) and the server's 201
 * answer, apart from any socket so that they can be unit-tested and fuzzed: the JSON body
 * parsed into a checked struct, the profile's rules applied to it, sota.toml rendered, and
 * the answer laid out before signing so that filling in the certificate cannot fail.
 * Pure functions: no I/O, no globals; any thread. */
#ifndef ST_HTTP_REG_H
#define ST_HTTP_REG_H

#include <stddef.h>
#include <stdint.h>

#include "profile.h"
#include "sota.h"

#define ST_HTTP_REG_MAX_HWID 128	   /* bytes of "hardware-id" */
#define ST_HTTP_REG_MAX_NAME 128	   /* bytes of "name" */
#define ST_HTTP_REG_MAX_DIR 1024	   /* bytes of "sota-config-dir" */
#define ST_HTTP_REG_MAX_GROUP 64	   /* bytes of "group" */
#define ST_HTTP_REG_MAX_SECTIONS 32	   /* sections in "overrides" */
#define ST_HTTP_REG_MAX_KEYS 64		   /* keys in one section */
#define ST_HTTP_REG_MAX_VALUE 4096	   /* bytes of one override value */
#define ST_HTTP_REG_CERT_DER_ROOM 8192 /* certificate bytes the answer reserves room for */

/* A parsed request. Strings are NUL-terminated, without NULs or control characters. */
struct st_http_reg {
	char *csr; /* PEM as sent */
	size_t csr_len;
	char *hardware_id;
	char *uuid;
	char *name;	  /* NULL when not sent */
	char *config_dir; /* "sota-config-dir"; NULL when not sent */
	char *group;	  /* NULL when not sent (or sent empty) */
	struct st_sota_overrides overrides;
};

/* Parses body (len bytes; JSON as the device tool sends it: an object whose values are
 * strings, "overrides" an object of objects of strings). Unknown keys are ignored. Returns
 * 0 and *out (free with st_http_reg_free), or ST_E_HTTP_JSON (not JSON, or not an object)
 * or ST_E_HTTP_FIELD (a field missing, of the wrong type, too long, or with a character it
 * may not hold) with a message naming the field; *out is NULL then. */
int st_http_reg_parse(const void *body, size_t len, struct st_http_reg **out, char *err,
		      size_t errlen);
void st_http_reg_free(struct st_http_reg *r);

struct st_profiles;

/* Chooses the profile for a registration request. A request names no sku, so match.sku
 * cannot tell the profiles of one hardware id apart; what the request carries can: of the
 * profiles (listed and in the directory) that match its hardware id, those whose
 * `production` is what the CSR asks for (businessCategory=production, st_csr_asks_production)
 * are chosen from, or all of them when none is (the CSR check then says what is wrong with
 * businessCategory). Of those, the only one, else the only one without match.sku (as for a
 * board that reports no sku). Several left: ST_E_SLOT_PROFILE_AMBIGUOUS with a message naming
 * each candidate. No profile for the hardware id: the default profile, else
 * ST_E_PROFILE_NOMATCH. Returns 0 and *out (owned by set), or the code with a message. */
int st_http_reg_choose(const struct st_profiles *set, const struct st_http_reg *r,
		       const struct st_profile **out, char *err, size_t errlen);

/* Applies the profile's rules that do not depend on the CSR: the group (one of the
 * profile's groups), the key storage (a profile that requires a secure element cannot be
 * served: HTTP cannot attest where the key lives), sota configured, the device id (uuid)
 * against the profile's pattern. Returns 0, ST_E_HTTP_GROUP, ST_E_HTTP_KEY_STORAGE,
 * ST_E_HTTP_NO_SOTA or ST_E_PROFILE_DEVICE_ID with a message. */
int st_http_reg_check(const struct st_profile *p, const struct st_http_reg *r, char *err,
		      size_t errlen);

/* Renders sota.toml for the request: the profile's gateway, ostree server and p11 settings,
 * the request's hardware id (unless the profile names its own) and config dir (else the
 * profile's), the profile's overrides and then the request's, through cache (the server's,
 * NULL: none). Returns 0 and a new *out (free()) of *len bytes, or a negative ST_E_* code with
 * a message; *out NULL then. */
int st_http_reg_sota(const struct st_profile *p, const struct st_http_reg *r,
		     struct st_sota_cache *cache, char **out, size_t *len, char *err,
		     size_t errlen);

/* The 201 body: {"root.crt": ..., "sota.toml": ..., "client.pem": CERT,
 * "client.chained": CERT + chain}. What every answer of a server shares is escaped once, in
 * a base: root.crt at the start, the chain and the closing of the object at the end. */
struct st_http_answer_base {
	char *head;	 /* the object's opening and root.crt, escaped */
	size_t head_len;
	char *tail;	 /* the chain, escaped, and the closing of the object */
	size_t tail_len;
};

/* root_pem and chain_pem are the texts of root.crt and of the CA certificates that follow
 * the device's own in client.chained. Returns 0 or ST_E_NOMEM (then b is empty). */
int st_http_answer_base_init(struct st_http_answer_base *b, const char *root_pem,
			     const char *chain_pem);
void st_http_answer_base_clear(struct st_http_answer_base *b);

/* One answer: prepared with everything but the certificate, with room reserved for one of
 * up to ST_HTTP_REG_CERT_DER_ROOM bytes. */
struct st_http_answer {
	char *buf;	 /* the body once finished */
	size_t len;	 /* its length once finished */
	size_t cap;	 /* bytes allocated at buf */
	size_t head_len; /* bytes of buf up to the first certificate */
};

/* Lays the answer out from base and sota, the text of sota.toml. Returns 0 or ST_E_NOMEM
 * (then a is empty). */
int st_http_answer_prepare(struct st_http_answer *a, const struct st_http_answer_base *base,
			   const char *sota);

/* Writes the certificate (DER) into both of its places and base's tail after them (base as
 * prepare was given it). Allocates nothing unless the certificate exceeds the reserved room
 * (certificates the station issues are far smaller), so it returns 0; ST_E_NOMEM only then. */
int st_http_answer_finish(struct st_http_answer *a, const struct st_http_answer_base *base,
			  const uint8_t *der, size_t der_len);

void st_http_answer_clear(struct st_http_answer *a);

/* Appends s (n bytes) to a JSON string being built at dst, escaped (quote, backslash and
 * control characters; other bytes as they are). Returns the bytes written; dst must have
 * room for st_http_json_escaped_len(s, n). */
size_t st_http_json_escape(char *dst, const char *s, size_t n);
size_t st_http_json_escaped_len(const char *s, size_t n);

/* The HTTP status for an error code: 400, 401, 403, 404, 405, 409, 413, 503 or 500. */
int st_http_status_for(int code);

#endif
