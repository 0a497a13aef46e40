#include "template.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "join.h"
#include "yamlload.h"

#define LITERAL UINT32_MAX

struct seg {
	uint32_t var;	   /* variable index, or LITERAL */
	uint32_t off, len; /* literal: bytes in t->text */
};

struct st_tmpl {
	struct seg *segs;
	size_t nsegs;
	char *text; /* literal bytes, braces already unescaped */
	size_t textlen;
	uint64_t uses;
};

void st_tmpl_free(struct st_tmpl *t)
{
	if (!t)
		return;
	free(t->segs);
	free(t->text);
	free(t);
}

uint64_t st_tmpl_uses(const struct st_tmpl *t)
{
	return t->uses;
}

size_t st_tmpl_literal_len(const struct st_tmpl *t)
{
	return t->textlen;
}

/* Variable names are lower-case words; anything else between braces is more likely text
 * (JSON, shell) that needed its braces doubled. */
static int is_name(const char *s, size_t n)
{
	if (n == 0 || n > 64)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
			return 0;
	}
	return 1;
}

/* The text up to its first line break (in place). */
static const char *first_line(char *s)
{
	char *nl = strchr(s, '\n');

	if (nl)
		*nl = '\0';
	return s;
}



static int add_seg(struct st_tmpl *t, size_t *cap, uint32_t var, size_t off, size_t len)
{
	/* Adjacent literal runs (text, then an escaped brace) join into one segment. */
	if (var == LITERAL && t->nsegs && t->segs[t->nsegs - 1].var == LITERAL &&
	    t->segs[t->nsegs - 1].off + t->segs[t->nsegs - 1].len == off) {
		t->segs[t->nsegs - 1].len += (uint32_t)len;
		return 0;
	}
	if (t->nsegs == *cap) {
		size_t nc = *cap ? 2 * *cap : 8;
		struct seg *s = realloc(t->segs, nc * sizeof(*s));
		if (!s)
			return -1;
		t->segs = s;
		*cap = nc;
	}
	t->segs[t->nsegs].var = var;
	t->segs[t->nsegs].off = (uint32_t)off;
	t->segs[t->nsegs].len = (uint32_t)len;
	t->nsegs++;
	return 0;
}

int st_tmpl_compile(const char *src, size_t len, const char *const *vars, struct st_tmpl **out,
		    size_t *err_off, char *err, size_t errlen)
{
	struct st_tmpl *t;
	size_t cap = 0, nvars = 0;
	size_t i = 0, run = 0;
	int rc;

	*out = NULL;
	*err_off = 0;
	while (vars[nvars])
		nvars++;
	if (nvars > ST_TMPL_MAX_VARS || len > UINT32_MAX / 2)
		return st_errf(err, errlen, ST_E_INVAL, "template or variable list too large");
	t = calloc(1, sizeof(*t));
	if (!t)
		return st_errf(err, errlen, ST_E_NOMEM, "out of memory");
	t->text = malloc(len + 1);
	if (!t->text) {
		rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory");
		goto fail;
	}
	/* run marks the start of the pending literal text in src. */
	while (i < len) {
		char c = src[i];

		if (c != '{' && c != '}') {
			i++;
			continue;
		}
		/* Flush the literal run before this brace. */
		if (i > run) {
			memcpy(t->text + t->textlen, src + run, i - run);
			if (add_seg(t, &cap, LITERAL, t->textlen, i - run) != 0)
				goto nomem;
			t->textlen += i - run;
		}
		if (i + 1 < len && src[i + 1] == c) {
			t->text[t->textlen] = c;
			if (add_seg(t, &cap, LITERAL, t->textlen, 1) != 0)
				goto nomem;
			t->textlen++;
			i += 2;
			run = i;
			continue;
		}
		if (c == '}') {
			*err_off = i;
			rc = st_errf(err, errlen, ST_E_TEMPLATE,
				     "single '}' in template; write '}}' for a literal brace");
			goto fail;
		}
		{
			const char *close = memchr(src + i + 1, '}', len - i - 1);
			const char *open = memchr(src + i + 1, '{', len - i - 1);
			size_t nl, v;
			char name[65];
			const char *near;

			if (!close || (open && open < close)) {
				*err_off = i;
				rc = st_errf(err, errlen, ST_E_TEMPLATE,
					     "'{' without a closing '}'; write '{{' for a literal "
					     "brace");
				goto fail;
			}
			nl = (size_t)(close - (src + i + 1));
			for (v = 0; v < nvars; v++) {
				if (strlen(vars[v]) == nl && memcmp(vars[v], src + i + 1, nl) == 0)
					break;
			}
			if (v == nvars) {
				size_t show = nl < sizeof(name) - 1 ? nl : sizeof(name) - 1;

				memcpy(name, src + i + 1, show);
				name[show] = '\0';
				*err_off = i;
				if (nl == 0) {
					rc = st_errf(err, errlen, ST_E_TEMPLATE,
						     "empty variable name '{}'; write '{{}}' for "
						     "literal braces");
					goto fail;
				}
				if (!is_name(src + i + 1, nl) && first_line(name)[0] == '\0') {
					rc = st_errf(
						err, errlen, ST_E_TEMPLATE,
						"'{' followed by a line break is not a variable; "
						"write '{{' and '}}' for literal braces");
					goto fail;
				}
				if (!is_name(src + i + 1, nl)) {
					rc = st_errf(
						err, errlen, ST_E_TEMPLATE,
						"'{' starts a variable but '%.20s%s' is not a "
						"variable name; write '{{' and '}}' for literal "
						"braces",
						first_line(name), nl > 20 ? "..." : "");
					goto fail;
				}
				near = st_yl_nearest(name, vars);
				if (near) {
					rc = st_errf(
						err, errlen, ST_E_TEMPLATE,
						"unknown variable '{%s}' (did you mean '{%s}'?)",
						name, near);
				} else {
					char list[512];

					st_join(list, sizeof(list), vars, "{", "}");
					rc = st_errf(err, errlen, ST_E_TEMPLATE,
						     "unknown variable '{%s}'; known variables: %s",
						     name, list);
				}
				goto fail;
			}
			if (add_seg(t, &cap, (uint32_t)v, 0, 0) != 0)
				goto nomem;
			t->uses |= (uint64_t)1 << v;
			i += nl + 2;
			run = i;
		}
	}
	if (len > run) {
		memcpy(t->text + t->textlen, src + run, len - run);
		if (add_seg(t, &cap, LITERAL, t->textlen, len - run) != 0)
			goto nomem;
		t->textlen += len - run;
	}
	t->text[t->textlen] = '\0';
	*out = t;
	return 0;
nomem:
	rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory");
fail:
	st_tmpl_free(t);
	return rc;
}

int st_tmpl_expand(const struct st_tmpl *t, const char *const *vals, const size_t *lens, size_t max,
		   char **out, size_t *outlen, char *err, size_t errlen)
{
	size_t total = 0, w = 0;
	char *buf;

	*out = NULL;
	*outlen = 0;
	/* Measure first: the limit is checked before anything is allocated for the result. */
	for (size_t i = 0; i < t->nsegs; i++) {
		const struct seg *s = &t->segs[i];
		size_t l;

		if (s->var == LITERAL) {
			l = s->len;
		} else {
			if (!vals[s->var])
				return st_errf(err, errlen, ST_E_INVAL,
					       "template variable %u has no value", s->var);
			l = lens ? lens[s->var] : strlen(vals[s->var]);
		}
		if (l > max || total > max - l)
			return st_errf(err, errlen, ST_E_RENDER_LIMIT,
				       "expansion exceeds %zu bytes", max);
		total += l;
	}
	buf = malloc(total + 1);
	if (!buf)
		return st_errf(err, errlen, ST_E_NOMEM, "out of memory");
	for (size_t i = 0; i < t->nsegs; i++) {
		const struct seg *s = &t->segs[i];

		if (s->var == LITERAL) {
			memcpy(buf + w, t->text + s->off, s->len);
			w += s->len;
		} else {
			size_t l = lens ? lens[s->var] : strlen(vals[s->var]);
			memcpy(buf + w, vals[s->var], l);
			w += l;
		}
	}
	buf[w] = '\0';
	*out = buf;
	*outlen = w;
	return 0;
}
