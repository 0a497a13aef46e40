/* sota.toml, the client configuration a Foundries-style device reads, rendered byte for byte
 * as the reference registration server writes it: sections [tls] [provision] [uptane]
 * [pacman] [storage] [import] in that order, one `key = value` per line, values as TOML text
 * (strings with their quotes), a blank line between sections, one newline at the end.
 * Overrides {section: {key: value}} add keys or replace them in place; new sections follow
 * in the order they first appear; an empty value is written as "# <key> is not set".
 * Override values are TOML text written as given, after the reference's substitutions
 * ({hardware_id}, {gateway_server}, {ostree_server}, {sota_config_dir}; "{{" and "}}" for
 * literal braces), exactly as the reference server applies them.
 *
 * Devices whose key lives in PKCS#11 get what the device tool (lmp-device-register) asks
 * the reference server for with --hsm-module: pkey_source and cert_source "pkcs11", the
 * key and certificate paths in [storage] and [import] unset, and a [p11] section.
 *
 * The station writes strings into quotes without escaping, as the reference does, so it
 * refuses values that would break the TOML: a quote, a backslash or a control character in
 * the gateway, ostree server, hardware id, config dir or p11 settings. */
#ifndef ST_SOTA_H
#define ST_SOTA_H

#include <stddef.h>
#include <stdint.h>

#define ST_SOTA_DEFAULT_DIR "/var/sota"

struct st_sota_kv {
	char *key;
	char *value; /* TOML text; "" means unset */
};

struct st_sota_section {
	char *name;
	struct st_sota_kv *kv;
	size_t n;
};

/* An ordered set of overrides. Zero-initialise, fill with st_sota_override_set(), free the
 * contents with st_sota_overrides_clear(). */
struct st_sota_overrides {
	struct st_sota_section *sec;
	size_t n;
};

/* Adds or replaces section.key = value (TOML text, copied; NULL or "" means unset). Order is
 * kept: a replaced key stays where it was, a new key goes last in its section, a new section
 * last. Returns 0 or ST_E_NOMEM. */
int st_sota_override_set(struct st_sota_overrides *o, const char *section, const char *key,
			 const char *value);

/* Adds section (without keys) when it is not there yet: a request's {"name": {}} still
 * makes the reference server write "[name]". Returns 0 or ST_E_NOMEM. */
int st_sota_override_section(struct st_sota_overrides *o, const char *section);

/* Frees what the overrides hold and empties them; safe on an empty or cleared set. */
void st_sota_overrides_clear(struct st_sota_overrides *o);

/* The [p11] settings of a device whose key is in PKCS#11. module is required; the others
 * may be NULL: tls_pkey_id and tls_clientcert_id then take the device tool's "01" and "03",
 * pass and label are left out. */
struct st_sota_p11 {
	const char *module;
	const char *pass;
	const char *label;
	const char *tls_pkey_id;
	const char *tls_clientcert_id;
};

struct st_sota_params {
	const char *gateway;	   /* device gateway base URL (required) */
	const char *ostree_server; /* ostree server base URL; "/ostree" is appended (required) */
	const char *hardware_id;   /* primary ECU hardware id (required) */
	const char *config_dir;	   /* NULL: ST_SOTA_DEFAULT_DIR */
	const struct st_sota_p11 *p11; /* NULL: key and certificate in files */
};

/* Renders sota.toml for p with the override sets layers[0..nlayers) applied in order (a
 * later layer wins; typically the profile's, then a registration request's). Returns 0 and a
 * new NUL-terminated *out (free()) of *outlen bytes, or ST_E_PROFILE_VALUE with a message
 * naming the value that cannot be written (a quote in the hardware id, an unknown
 * {variable} in an override, ...); *out is NULL on failure. Thread-safe. */
int st_sota_render(const struct st_sota_params *p, const struct st_sota_overrides *const *layers,
		   size_t nlayers, char **out, size_t *outlen, char *err, size_t errlen);

/* The last sota.toml st_sota_render_cached() rendered and the inputs it came from: a line's
 * boards and a server's registrations mostly ask for the same one, and a copy costs one
 * allocation where a render costs some seventy. Zero-initialised; one per thread that uses
 * it (no lock); st_sota_cache_free() when done. */
struct st_sota_cache {
	char *key, *out; /* the inputs, serialized; the text rendered from them */
	size_t key_len, key_cap, out_len;
	char *scratch;   /* where the next inputs are serialized */
	size_t scratch_cap;
	uint64_t hits, misses;
};

/* st_sota_render() through c: inputs equal to the last ones rendered (every parameter and
 * every layer's sections, keys and values, byte for byte) get a copy of that text. A render
 * that fails is not kept. c may be NULL (a plain render). */
int st_sota_render_cached(struct st_sota_cache *c, const struct st_sota_params *p,
			  const struct st_sota_overrides *const *layers, size_t nlayers, char **out,
			  size_t *outlen, char *err, size_t errlen);
void st_sota_cache_free(struct st_sota_cache *c);

/* The names override values may refer to, NULL-terminated, in the order st_sota_render()
 * fills them (for load-time checks of a profile's overrides). */
extern const char *const st_sota_vars[];

/* Checks that s can stand inside a TOML basic string as written (no '"', '\\' or control
 * character). Returns 0, or -1 with the offending character's offset in *bad. */
int st_sota_check_text(const char *s, size_t *bad);

/* Checks that an override value is TOML text: a quoted string, a number, true or false, an
 * array or an inline table (light checks: quotes and brackets balanced at the ends). "" is
 * allowed (it means unset). Returns 0 or -1 with a reason in err. */
int st_sota_check_value(const char *v, char *err, size_t errlen);

#endif
