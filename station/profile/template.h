/* Text templates for the files a profile writes to a board: "{name}" is replaced by a
 * variable's value, "{{" and "}}" stand for literal braces. This is the subset of Python's
 * str.format() that the reference registration server applies to sota.toml, so the same
 * text means the same thing in both places.
 *
 * A template is compiled once, when the profile is loaded, against the list of variables
 * that may appear in it: an unknown variable is an error then, at its exact position, never
 * a surprise on the line. Expansion is bounded: it fails instead of producing more than the
 * caller's limit. Compiled templates are immutable and may be expanded from any thread. */
#ifndef ST_TEMPLATE_H
#define ST_TEMPLATE_H

#include <stddef.h>
#include <stdint.h>

#define ST_TMPL_MAX_VARS 64

struct st_tmpl;

/* Compiles src[0..len) against the NULL-terminated variable names vars (at most
 * ST_TMPL_MAX_VARS). Returns 0 and a new *out (free with st_tmpl_free), or ST_E_TEMPLATE
 * with *out NULL, *err_off the byte offset in src of the offending brace or name, and a
 * message in err ("unknown variable '{devce_id}' (did you mean '{device_id}'?)"). */
int st_tmpl_compile(const char *src, size_t len, const char *const *vars, struct st_tmpl **out,
		    size_t *err_off, char *err, size_t errlen);

void st_tmpl_free(struct st_tmpl *t);

/* Bit i is set when variable i of the compile-time list appears in t. */
uint64_t st_tmpl_uses(const struct st_tmpl *t);

/* Bytes of literal text in t (what it expands to when every variable is empty). */
size_t st_tmpl_literal_len(const struct st_tmpl *t);

/* Expands t with vals[i] (of length lens[i], or strlen when lens is NULL) for variable i.
 * A value may be NULL only for a variable t does not use. Returns 0 and a new NUL-terminated
 * *out (free()) of *outlen bytes, or ST_E_RENDER_LIMIT when the result would exceed max
 * bytes (ST_E_NOMEM, ST_E_INVAL likewise); *out is NULL on failure. */
int st_tmpl_expand(const struct st_tmpl *t, const char *const *vals, const size_t *lens, size_t max,
		   char **out, size_t *outlen, char *err, size_t errlen);

#endif
