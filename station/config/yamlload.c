#include "yamlload.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "err.h"
#include "join.h"

/* --- Problems ------------------------------------------------------------------------- */

static void report(struct st_yl_ctx *ctx, const char *file, int line, int col, const char *fmt,
		   va_list ap)
{
	ctx->errors++;
	if (!ctx->diag)
		return;
	fprintf(ctx->diag, "%s:%d:%d: ", file, line, col);
	vfprintf(ctx->diag, fmt, ap);
	fputc('\n', ctx->diag);
}

void st_yl_warning(struct st_yl_ctx *ctx, const struct st_yl_node *at, const char *fmt, ...)
{
	va_list ap;

	if (!ctx->diag)
		return;
	va_start(ap, fmt);
	fprintf(ctx->diag, "%s:%d:%d: warning: ", at->doc->name, at->line, at->col);
	vfprintf(ctx->diag, fmt, ap);
	fputc('\n', ctx->diag);
	va_end(ap);
}

void st_yl_error(struct st_yl_ctx *ctx, const struct st_yl_node *at, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	report(ctx, at->doc->name, at->line, at->col, fmt, ap);
	va_end(ap);
}

void st_yl_error_at(struct st_yl_ctx *ctx, const char *file, int line, int col, const char *fmt,
		    ...)
{
	va_list ap;

	va_start(ap, fmt);
	report(ctx, file, line, col, fmt, ap);
	va_end(ap);
}

/* Characters (not bytes) in s[0..n): libyaml's columns count characters. */
static int utf8_chars(const char *s, size_t n)
{
	int c = 0;

	for (size_t i = 0; i < n; i++) {
		if (((unsigned char)s[i] & 0xc0) != 0x80)
			c++;
	}
	return c;
}

void st_yl_position(const char *text, size_t len, size_t off, int *line, int *col)
{
	size_t bol = 0;
	int l = 1;

	if (off > len)
		off = len;
	for (size_t i = 0; i < off; i++) {
		if (text[i] == '\n') {
			l++;
			bol = i + 1;
		}
	}
	*line = l;
	*col = 1 + utf8_chars(text + bol, off - bol);
}

/* libyaml's mark.index counts characters after any byte order mark, not bytes. The text
 * parsed, so it is valid UTF-8; this walk runs only when a message needs a column. */
static size_t char_to_byte(const struct st_yl_doc *d, size_t idx)
{
	size_t b = 0;

	if (d->len >= 3 && memcmp(d->src, "\xef\xbb\xbf", 3) == 0)
		b = 3;
	while (b < d->len && idx > 0) {
		b++;
		while (b < d->len && ((unsigned char)d->src[b] & 0xc0) == 0x80)
			b++;
		idx--;
	}
	return b;
}

/* Maps byte offset off of a scalar's value back to the source. Only done where the mapping
 * is certain: otherwise the scalar's own start is the honest answer. */
static void scalar_position(const struct st_yl_node *n, size_t off, int *line, int *col)
{
	const char *src = n->doc->src;
	const char *raw;
	size_t rawlen, b0, b1;

	*line = n->line;
	*col = n->col;
	if (n->type != ST_YL_SCALAR || !src || off > n->len || n->end < n->start)
		return;
	b0 = char_to_byte(n->doc, n->start);
	b1 = char_to_byte(n->doc, n->end);
	raw = src + b0;
	rawlen = b1 - b0;
	if (memchr(n->value, '\n', n->len) == NULL) {
		if (n->style == ST_YL_PLAIN && rawlen == n->len &&
		    memcmp(raw, n->value, n->len) == 0) {
			*col = n->col + utf8_chars(n->value, off);
			return;
		}
		if ((n->style == ST_YL_SINGLE_QUOTED || n->style == ST_YL_DOUBLE_QUOTED) &&
		    rawlen == n->len + 2 && memcmp(raw + 1, n->value, n->len) == 0) {
			*col = n->col + 1 + utf8_chars(n->value, off);
			return;
		}
	}
	if (n->style == ST_YL_LITERAL) {
		/* A literal block keeps its lines; line k of the value is source line k after the
		 * header, behind the block's indentation. Verify that before trusting it. */
		const char *hdr_end = memchr(raw, '\n', rawlen);
		size_t vline = 0, vbol = 0;
		const char *s, *end = raw + rawlen;
		size_t vlen;

		if (!hdr_end)
			return;
		for (size_t i = 0; i < off; i++) {
			if (n->value[i] == '\n') {
				vline++;
				vbol = i + 1;
			}
		}
		s = hdr_end + 1;
		for (size_t k = 0; k < vline; k++) {
			const char *nl = memchr(s, '\n', (size_t)(end - s));
			if (!nl)
				return;
			s = nl + 1;
		}
		{
			const char *nl = memchr(n->value + vbol, '\n', n->len - vbol);
			const char *snl = memchr(s, '\n', (size_t)(end - s));
			size_t slen = snl ? (size_t)(snl - s) : (size_t)(end - s);
			size_t indent;

			vlen = nl ? (size_t)(nl - (n->value + vbol)) : n->len - vbol;
			if (slen < vlen)
				return;
			indent = slen - vlen;
			if (memcmp(s + indent, n->value + vbol, vlen) != 0)
				return;
			for (size_t i = 0; i < indent; i++) {
				if (s[i] != ' ')
					return;
			}
			*line = n->line + 1 + (int)vline;
			*col = 1 + (int)indent + utf8_chars(n->value + vbol, off - vbol);
		}
	}
}

void st_yl_error_in(struct st_yl_ctx *ctx, const struct st_yl_node *at, size_t off, const char *fmt,
		    ...)
{
	va_list ap;
	int line, col;

	scalar_position(at, off, &line, &col);
	va_start(ap, fmt);
	report(ctx, at->doc->name, line, col, fmt, ap);
	va_end(ap);
}

int st_yl_summary(const struct st_yl_ctx *ctx, const char *name, int code, char *err, size_t errlen)
{
	return st_errf(err, errlen, code, "%u error%s in %s", ctx->errors,
		       ctx->errors == 1 ? "" : "s", name);
}

/* --- Suggestions ---------------------------------------------------------------------- */

/* Optimal string alignment distance: insertions, deletions, substitutions and adjacent
 * transpositions each cost one ("vaildity" is one step from "validity"). */
static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t *d;
	size_t r;

	if (la > 64 || lb > 64)
		return SIZE_MAX;
	d = calloc((la + 1) * (lb + 1), sizeof(*d));
	if (!d)
		return SIZE_MAX;
#define D(i, j) d[(i) * (lb + 1) + (j)]
	for (size_t i = 0; i <= la; i++)
		D(i, 0) = i;
	for (size_t j = 0; j <= lb; j++)
		D(0, j) = j;
	for (size_t i = 1; i <= la; i++) {
		for (size_t j = 1; j <= lb; j++) {
			size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
			size_t v = D(i - 1, j) + 1;

			if (D(i, j - 1) + 1 < v)
				v = D(i, j - 1) + 1;
			if (D(i - 1, j - 1) + cost < v)
				v = D(i - 1, j - 1) + cost;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    D(i - 2, j - 2) + 1 < v)
				v = D(i - 2, j - 2) + 1;
			D(i, j) = v;
		}
	}
	r = D(la, lb);
#undef D
	free(d);
	return r;
}

const char *st_yl_nearest(const char *word, const char *const *cands)
{
	const char *best = NULL;
	size_t best_d = SIZE_MAX;
	size_t wl = strlen(word);
	/* A third of the word's length, at least one and at most three edits: close enough to
	 * be a typo, far enough from chance resemblance between short words. */
	size_t limit = wl / 3;

	if (limit < 1)
		limit = 1;
	if (limit > 3)
		limit = 3;
	for (size_t i = 0; cands[i]; i++) {
		size_t d = edit_distance(word, cands[i]);
		if (d < best_d) {
			best_d = d;
			best = cands[i];
		}
	}
	if (best_d <= limit)
		return best;
	/* A word that stops short of a longer name ("gateway" for "gateway_server", "foundry"
	 * for "foundries") is a likely slip too, when only one name fits. */
	best = NULL;
	for (size_t i = 0; cands[i] && wl >= 4; i++) {
		size_t p = 0;

		while (word[p] && word[p] == cands[i][p])
			p++;
		if (p >= wl - 2 && p >= 4) {
			if (best)
				return NULL;
			best = cands[i];
		}
	}
	return best;
}

const char *st_yl_describe(const struct st_yl_node *node)
{
	switch (node->type) {
	case ST_YL_SEQUENCE:
		return "a sequence";
	case ST_YL_MAPPING:
		return "a mapping";
	case ST_YL_SCALAR:
		break;
	}
	if (node->style == ST_YL_PLAIN && node->len == 0)
		return "an empty value";
	return "a single value";
}

/* --- Reading -------------------------------------------------------------------------- */

/* Reads the file open on fd (closed here) as st_yl_read_file() does. */
static int read_fd(int fd, size_t max, char **out, size_t *len, char *err, size_t errlen)
{
	struct stat st;
	char *buf = NULL;
	size_t have = 0;
	int rc;

	if (fstat(fd, &st) != 0) {
		rc = st_errf(err, errlen, ST_E_IO, "%s", strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = st_errf(err, errlen, ST_E_IO, "not a regular file");
		goto out;
	}
	if ((unsigned long long)st.st_size > max) {
		rc = st_errf(err, errlen, ST_E_IO, "file is %lld bytes, at most %zu are allowed",
			     (long long)st.st_size, max);
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory");
		goto out;
	}
	/* Read to EOF (bounded), whatever size stat gave: the file may change under us. */
	for (;;) {
		ssize_t r;

		if (have == (size_t)st.st_size) {
			char probe;
			r = read(fd, &probe, 1);
			if (r == 0)
				break;
			if (r > 0) {
				rc = st_errf(err, errlen, ST_E_IO, "file grew while it was read");
				goto out;
			}
		} else {
			r = read(fd, buf + have, (size_t)st.st_size - have);
			if (r == 0)
				break;
			if (r > 0) {
				have += (size_t)r;
				continue;
			}
		}
		if (errno == EINTR)
			continue;
		rc = st_errf(err, errlen, ST_E_IO, "%s", strerror(errno));
		goto out;
	}
	buf[have] = '\0';
	*out = buf;
	*len = have;
	buf = NULL;
	rc = 0;
out:
	free(buf);
	close(fd);
	return rc;
}

int st_yl_read_file(const char *path, size_t max, char **out, size_t *len, char *err, size_t errlen)
{
	int fd;

	*out = NULL;
	*len = 0;
	/* O_NONBLOCK: opening a FIFO must not wait for a writer. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return st_errf(err, errlen, errno == ENOENT ? ST_E_NOTFOUND : ST_E_IO, "%s",
			       strerror(errno));
	return read_fd(fd, max, out, len, err, errlen);
}

/* What is wrong with rel as a name below a directory, or NULL; *bad is the offset of the
 * offending component. Spelled one way only: no empty, "." or ".." component, no leading
 * or trailing '/'. */
static const char *rel_problem(const char *rel, size_t *bad)
{
	size_t i = 0;

	*bad = 0;
	if (!rel[0])
		return "the name is empty";
	if (rel[0] == '/')
		return "an absolute path leads out of the directory";
	while (rel[i]) {
		size_t n = strcspn(rel + i, "/");

		*bad = i;
		if (n == 0)
			return "the name has an empty component ('//')";
		if (n == 2 && rel[i] == '.' && rel[i + 1] == '.')
			return "'..' leads out of the directory";
		if (n == 1 && rel[i] == '.')
			return "the name has a '.' component";
		i += n;
		if (rel[i] == '/' && !rel[i + 1]) {
			*bad = i;
			return "the name ends with '/'";
		}
		if (rel[i] == '/')
			i++;
	}
	return NULL;
}

static const char *kind_of(mode_t m)
{
	if (S_ISDIR(m))
		return "a directory";
	if (S_ISLNK(m))
		return "a symbolic link";
	if (S_ISFIFO(m))
		return "a FIFO";
	if (S_ISCHR(m) || S_ISBLK(m))
		return "a device";
	if (S_ISSOCK(m))
		return "a socket";
	if (S_ISREG(m))
		return "a file";
	return "not a file";
}

int st_yl_open_beneath(const char *dir, const char *rel, size_t *bad, char *err, size_t errlen)
{
	const char *why = rel_problem(rel, bad);
	char comp[NAME_MAX + 1];
	struct stat st, fst;
	size_t i = 0;
	int dfd, fd = -1;

	if (why)
		return st_errf(err, errlen, ST_E_INVAL, "%s", why);
	/* The directory itself is taken as given: the operator named it. */
	dfd = open(dir && dir[0] ? dir : ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return st_errf(err, errlen, errno == ENOENT ? ST_E_NOTFOUND : ST_E_IO,
			       "directory %s: %s", dir, strerror(errno));
	for (;;) {
		size_t n = strcspn(rel + i, "/");
		int last = rel[i + n] == '\0';
		int flags;

		*bad = i;
		if (n > NAME_MAX) {
			fd = st_errf(err, errlen, ST_E_INVAL, "a component is longer than %d bytes",
				     NAME_MAX);
			break;
		}
		memcpy(comp, rel + i, n);
		comp[n] = '\0';
		/* Look before opening: a link is never followed, and a FIFO or a device is
		 * never opened (opening some devices does something). */
		if (fstatat(dfd, comp, &st, AT_SYMLINK_NOFOLLOW) != 0) {
			fd = st_errf(err, errlen, errno == ENOENT ? ST_E_NOTFOUND : ST_E_IO, "%s",
				     strerror(errno));
			break;
		}
		if (S_ISLNK(st.st_mode)) {
			fd = st_errf(err, errlen, ST_E_INVAL,
				     "'%.*s' is a symbolic link, which is not followed",
				     (int)(i + n), rel);
			break;
		}
		if (last ? !S_ISREG(st.st_mode) : !S_ISDIR(st.st_mode)) {
			fd = st_errf(err, errlen, ST_E_IO, "'%.*s' is %s, not %s", (int)(i + n),
				     rel, kind_of(st.st_mode), last ? "a regular file" : "a directory");
			break;
		}
		flags = last ? O_RDONLY | O_NONBLOCK | O_NOCTTY : O_PATH | O_DIRECTORY;
		fd = openat(dfd, comp, flags | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0) {
			fd = st_errf(err, errlen, errno == ENOENT ? ST_E_NOTFOUND : ST_E_IO, "%s",
				     strerror(errno));
			break;
		}
		/* Still what was looked at: nothing was swapped in between (a file made in its place
		 * may get its inode number, so the kind is compared too). */
		if (fstat(fd, &fst) != 0 || fst.st_dev != st.st_dev || fst.st_ino != st.st_ino ||
		    (fst.st_mode & S_IFMT) != (st.st_mode & S_IFMT)) {
			close(fd);
			fd = st_errf(err, errlen, ST_E_IO, "'%.*s' changed while it was opened",
				     (int)(i + n), rel);
			break;
		}
		if (last)
			break;
		close(dfd);
		dfd = fd;
		fd = -1;
		i += n + 1;
	}
	close(dfd);
	return fd;
}

int st_yl_read_beneath(const char *dir, const char *rel, size_t max, char **out, size_t *len,
		       size_t *bad, char *err, size_t errlen)
{
	int fd;

	*out = NULL;
	*len = 0;
	fd = st_yl_open_beneath(dir, rel, bad, err, errlen);
	if (fd < 0)
		return fd;
	return read_fd(fd, max, out, len, err, errlen);
}

char *st_yl_join(const char *dir, const char *rel)
{
	size_t dl, rl;
	char *p;

	if (!rel)
		return NULL;
	if (rel[0] == '/' || !dir || !dir[0] || strcmp(dir, ".") == 0)
		return strdup(rel);
	dl = strlen(dir);
	rl = strlen(rel);
	while (dl > 1 && dir[dl - 1] == '/')
		dl--;
	p = malloc(dl + 1 + rl + 1);
	if (!p)
		return NULL;
	memcpy(p, dir, dl);
	p[dl] = '/';
	memcpy(p + dl + 1, rel, rl + 1);
	return p;
}

static char *dir_of(const char *name)
{
	const char *slash = strrchr(name, '/');

	if (!slash)
		return strdup(".");
	if (slash == name)
		return strdup("/");
	return strndup(name, (size_t)(slash - name));
}

/* --- Building the node tree from libyaml's events --------------------------------------- */

struct builder {
	struct st_yl_ctx *ctx;
	struct st_yl_doc *doc;
	yaml_parser_t parser;
	size_t nodes;
	int failed; /* parsing ended: a syntax error, nesting too deep, too many nodes */
};

static void node_free(struct st_yl_node *n)
{
	if (!n)
		return;
	if (n->type == ST_YL_MAPPING) {
		for (size_t i = 0; i < 2 * n->n; i++)
			node_free(n->items[i]);
	} else if (n->type == ST_YL_SEQUENCE) {
		for (size_t i = 0; i < n->n; i++)
			node_free(n->items[i]);
	}
	free(n->items);
	free(n->value);
	free(n);
}

static void doc_free(struct st_yl_doc *d)
{
	if (!d)
		return;
	node_free(d->root);
	free(d->name);
	free(d->dir);
	free(d->src);
	free(d);
}

static void berror(struct builder *b, const yaml_mark_t *m, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void berror(struct builder *b, const yaml_mark_t *m, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	report(b->ctx, b->doc->name, (int)m->line + 1, (int)m->column + 1, fmt, ap);
	va_end(ap);
}

/* Writes source line `line` of d under a syntax error, and a caret under column col (in
 * characters), as "  TEXT" and "  ^": the author sees the mistake, not only its position.
 * Tabs are copied into the caret's line so the caret stays under its character. */
static void show_source(struct builder *b, int line, int col)
{
	const struct st_yl_doc *d = b->doc;
	FILE *f = b->ctx->diag;
	size_t bol = 0, eol;
	int l = 1, c = 1;

	if (!f || line < 1 || col < 1)
		return;
	if (d->len >= 3 && memcmp(d->src, "\xef\xbb\xbf", 3) == 0)
		bol = 3;
	for (size_t i = bol; i < d->len && l < line; i++) {
		if (d->src[i] == '\n') {
			l++;
			bol = i + 1;
		}
	}
	if (l < line)
		return;
	eol = bol;
	while (eol < d->len && d->src[eol] != '\n' && d->src[eol] != '\r')
		eol++;
	if (eol - bol > 200)
		eol = bol + 200;
	fprintf(f, "  %.*s\n  ", (int)(eol - bol), d->src + bol);
	for (size_t i = bol; i < eol && c < col; i++) {
		if (((unsigned char)d->src[i] & 0xc0) == 0x80)
			continue;
		fputc(d->src[i] == '\t' ? '\t' : ' ', f);
		c++;
	}
	for (; c < col; c++)
		fputc(' ', f);
	fputs("^\n", f);
}

/* Indentation (leading spaces) of source line `line` (1-based), or -1 when the line is
 * blank, a comment or past the end. */
static int line_indent(const struct st_yl_doc *d, int line)
{
	size_t i = 0;
	int l = 1, ind = 0;

	while (i < d->len && l < line) {
		if (d->src[i++] == '\n')
			l++;
	}
	if (l < line)
		return -1;
	while (i < d->len && d->src[i] == ' ') {
		i++;
		ind++;
	}
	if (i >= d->len || d->src[i] == '\n' || d->src[i] == '\r' || d->src[i] == '#')
		return -1;
	return ind;
}

/* The nearest line above `line` with content, or 0. */
static int previous_line(const struct st_yl_doc *d, int line)
{
	for (int l = line - 1; l >= 1; l--) {
		if (line_indent(d, l) >= 0)
			return l;
	}
	return 0;
}

/* Turns libyaml's parser error into one message at its position, in the words of the mistake
 * authors make (indentation, tabs, unclosed quotes and brackets), followed by the source line
 * and a caret under the column. */
static void syntax_error(struct builder *b)
{
	yaml_parser_t *p = &b->parser;
	struct st_yl_doc *d = b->doc;
	const char *problem = p->problem ? p->problem : "cannot parse";
	const char *context = p->context ? p->context : "";
	int line = (int)p->problem_mark.line + 1, col = (int)p->problem_mark.column + 1;
	int cline = (int)p->context_mark.line + 1, ccol = (int)p->context_mark.column + 1;

	b->failed = 1;
	if (p->error == YAML_READER_ERROR) {
		st_yl_position(d->src, d->len, p->problem_offset, &line, &col);
		if (p->problem_value != -1)
			st_yl_error_at(b->ctx, d->name, line, col,
				       "%s (byte 0x%02x); the file must be UTF-8 text", problem,
				       (unsigned)p->problem_value & 0xff);
		else
			st_yl_error_at(b->ctx, d->name, line, col,
				       "%s; the file must be UTF-8 text", problem);
		return;
	}
	if (p->error == YAML_MEMORY_ERROR) {
		st_yl_error_at(b->ctx, d->name, 1, 1, "out of memory while parsing");
		return;
	}
	if (d->src[char_to_byte(d, p->problem_mark.index)] == '\t') {
		berror(b, &p->problem_mark,
		       "a tab character cannot indent YAML; indent with spaces only");
	} else if (strstr(context, "quoted scalar")) {
		st_yl_error_at(b->ctx, d->name, cline, ccol,
			       "unclosed quote: the quoted value started here never ends");
		line = cline;
		col = ccol;
	} else if (strstr(context, "flow sequence")) {
		st_yl_error_at(b->ctx, d->name, cline, ccol,
			       "unclosed '[': no ']' closes the list started here");
		line = cline;
		col = ccol;
	} else if (strstr(context, "flow mapping")) {
		st_yl_error_at(b->ctx, d->name, cline, ccol,
			       "unclosed '{': no '}' closes the mapping started here");
		line = cline;
		col = ccol;
	} else if (strcmp(problem, "mapping values are not allowed in this context") == 0) {
		int prev = previous_line(d, line);

		if (prev > 0 && line_indent(d, line) > line_indent(d, prev)) {
			col = line_indent(d, line) + 1;
			st_yl_error_at(b->ctx, d->name, line, col,
				       "indentation: this key is indented deeper than its siblings");
		} else
			berror(b, &p->problem_mark,
			       "a value holds ': ', which starts a mapping here; quote the value");
	} else if (strcmp(problem, "did not find expected key") == 0 ||
		   strcmp(problem, "did not find expected '-' indicator") == 0) {
		berror(b, &p->problem_mark,
		       "indentation: this line is not aligned with the %s started at %d:%d",
		       strstr(problem, "'-'") ? "list items" : "keys", cline, ccol);
	} else if (strcmp(problem, "could not find expected ':'") == 0) {
		st_yl_error_at(b->ctx, d->name, cline, ccol,
			       "this key has no ':' after it; write 'key: value'");
		line = cline;
		col = ccol;
	} else if (strcmp(problem, "found character that cannot start any token") == 0) {
		berror(b, &p->problem_mark,
		       "this character cannot start a value; quote the value");
	} else if (p->context) {
		berror(b, &p->problem_mark, "%s (%s started at %d:%d)", problem, p->context, cline,
		       ccol);
	} else {
		berror(b, &p->problem_mark, "%s", problem);
	}
	show_source(b, line, col);
}

static int next_event(struct builder *b, yaml_event_t *ev)
{
	if (!yaml_parser_parse(&b->parser, ev)) {
		syntax_error(b);
		return -1;
	}
	return 0;
}

static struct st_yl_node *new_node(struct builder *b, enum st_yl_type type, const yaml_event_t *ev)
{
	struct st_yl_node *n;

	/* Either failure ends parsing: the document is refused, and reading on would only
	 * spend time (see build_collection). */
	if (++b->nodes > ST_YL_MAX_NODES) {
		berror(b, &ev->start_mark, "document has more than %d nodes", ST_YL_MAX_NODES);
		b->failed = 1;
		return NULL;
	}
	n = calloc(1, sizeof(*n));
	if (!n) {
		berror(b, &ev->start_mark, "out of memory");
		b->failed = 1;
		return NULL;
	}
	n->type = type;
	n->doc = b->doc;
	n->line = (int)ev->start_mark.line + 1;
	n->col = (int)ev->start_mark.column + 1;
	n->start = ev->start_mark.index;
	n->end = ev->end_mark.index;
	return n;
}

/* Growable array of node pointers. */
struct nvec {
	struct st_yl_node **v;
	size_t n, cap;
};

static int nvec_push(struct nvec *a, struct st_yl_node *n)
{
	if (a->n == a->cap) {
		size_t cap = a->cap ? 2 * a->cap : 8;
		struct st_yl_node **v = realloc(a->v, cap * sizeof(*v));
		if (!v)
			return -1;
		a->v = v;
		a->cap = cap;
	}
	a->v[a->n++] = n;
	return 0;
}

static int refuse_extras(struct builder *b, const yaml_event_t *ev, const yaml_char_t *anchor,
			 const yaml_char_t *tag, int implicit)
{
	if (anchor) {
		berror(b, &ev->start_mark,
		       "anchors ('&%s') are not supported; share settings with 'extends'",
		       (const char *)anchor);
		return -1;
	}
	if (tag && !implicit) {
		berror(b, &ev->start_mark, "explicit tags ('%s') are not supported",
		       (const char *)tag);
		return -1;
	}
	return 0;
}

static struct st_yl_node *build_node(struct builder *b, yaml_event_t *ev, int depth);

static struct st_yl_node *build_collection(struct builder *b, yaml_event_t *start, int depth)
{
	int mapping = start->type == YAML_MAPPING_START_EVENT;
	struct st_yl_node *n;
	struct nvec items = { 0 };

	/* Parsing stops here rather than reading on to the matching end: libyaml's scanner
	 * does work proportional to the depth for every bracket, so skipping 100,000 unclosed
	 * '[' would take minutes (quadratic time) for a message already given. */
	if (depth >= ST_YL_MAX_DEPTH) {
		berror(b, &start->start_mark, "nesting deeper than %d levels", ST_YL_MAX_DEPTH);
		b->failed = 1;
		return NULL;
	}
	n = new_node(b, mapping ? ST_YL_MAPPING : ST_YL_SEQUENCE, start);
	if (!n)
		return NULL;
	if (mapping)
		n->style = start->data.mapping_start.style == YAML_FLOW_MAPPING_STYLE ? ST_YL_FLOW
										      : ST_YL_BLOCK;
	else
		n->style = start->data.sequence_start.style == YAML_FLOW_SEQUENCE_STYLE
				   ? ST_YL_FLOW
				   : ST_YL_BLOCK;
	for (;;) {
		yaml_event_t ev;
		struct st_yl_node *child;

		if (next_event(b, &ev) != 0)
			goto fail;
		if (ev.type == YAML_MAPPING_END_EVENT || ev.type == YAML_SEQUENCE_END_EVENT) {
			n->end = ev.end_mark.index;
			yaml_event_delete(&ev);
			break;
		}
		child = build_node(b, &ev, depth + 1);
		yaml_event_delete(&ev);
		if (b->failed) {
			node_free(child);
			goto fail;
		}
		/* A refused child (already reported) stays as NULL so that mapping pairs keep
		 * their alignment; it is dropped below. */
		if (nvec_push(&items, child) != 0) {
			node_free(child);
			berror(b, &start->start_mark, "out of memory");
			b->failed = 1;
			goto fail;
		}
	}
	if (mapping && items.n > 2 * ST_YL_MAX_KEYS) {
		/* Also bounds the quadratic duplicate check below and merging. */
		berror(b, &start->start_mark, "mapping has more than %d keys", ST_YL_MAX_KEYS);
		goto fail;
	}
	if (mapping) {
		/* Keys must be scalars and unique; a bad pair is reported and dropped so that the
		 * rest of the mapping can still be checked. */
		size_t w = 0;

		for (size_t i = 0; i + 1 < items.n; i += 2) {
			struct st_yl_node *k = items.v[i], *v = items.v[i + 1];
			int keep = k && v;

			if (keep && k->type != ST_YL_SCALAR) {
				st_yl_error(b->ctx, k, "mapping keys must be plain words, not %s",
					    st_yl_describe(k));
				keep = 0;
			}
			for (size_t j = 0; keep && j < w; j += 2) {
				const struct st_yl_node *o = items.v[j];
				if (o->len == k->len && memcmp(o->value, k->value, k->len) == 0) {
					st_yl_error(b->ctx, k,
						    "duplicate key '%.64s' (first given at %d:%d)",
						    k->value, o->line, o->col);
					keep = 0;
				}
			}
			if (keep) {
				items.v[w++] = k;
				items.v[w++] = v;
			} else {
				node_free(k);
				node_free(v);
			}
		}
		n->n = w / 2;
	} else {
		size_t w = 0;

		for (size_t i = 0; i < items.n; i++) {
			if (items.v[i])
				items.v[w++] = items.v[i];
		}
		n->n = w;
	}
	n->items = items.v;
	return n;
fail:
	for (size_t i = 0; i < items.n; i++)
		node_free(items.v[i]);
	free(items.v);
	node_free(n);
	return NULL;
}

static struct st_yl_node *build_node(struct builder *b, yaml_event_t *ev, int depth)
{
	struct st_yl_node *n;

	switch (ev->type) {
	case YAML_SCALAR_EVENT:
		if (refuse_extras(b, ev, ev->data.scalar.anchor, ev->data.scalar.tag,
				  ev->data.scalar.plain_implicit ||
					  ev->data.scalar.quoted_implicit))
			return NULL;
		n = new_node(b, ST_YL_SCALAR, ev);
		if (!n)
			return NULL;
		n->value = malloc(ev->data.scalar.length + 1);
		if (!n->value) {
			node_free(n);
			return NULL;
		}
		memcpy(n->value, ev->data.scalar.value, ev->data.scalar.length);
		n->value[ev->data.scalar.length] = '\0';
		n->len = ev->data.scalar.length;
		switch (ev->data.scalar.style) {
		case YAML_SINGLE_QUOTED_SCALAR_STYLE:
			n->style = ST_YL_SINGLE_QUOTED;
			break;
		case YAML_DOUBLE_QUOTED_SCALAR_STYLE:
			n->style = ST_YL_DOUBLE_QUOTED;
			break;
		case YAML_LITERAL_SCALAR_STYLE:
			n->style = ST_YL_LITERAL;
			break;
		case YAML_FOLDED_SCALAR_STYLE:
			n->style = ST_YL_FOLDED;
			break;
		default:
			n->style = ST_YL_PLAIN;
			break;
		}
		return n;
	case YAML_SEQUENCE_START_EVENT:
		if (refuse_extras(b, ev, ev->data.sequence_start.anchor,
				  ev->data.sequence_start.tag, ev->data.sequence_start.implicit)) {
			/* Built and dropped: the parse stays in step, the problems inside are
			 * still reported, and the depth limit bounds the work. */
			node_free(build_collection(b, ev, depth));
			return NULL;
		}
		return build_collection(b, ev, depth);
	case YAML_MAPPING_START_EVENT:
		if (refuse_extras(b, ev, ev->data.mapping_start.anchor, ev->data.mapping_start.tag,
				  ev->data.mapping_start.implicit)) {
			node_free(build_collection(b, ev, depth));
			return NULL;
		}
		return build_collection(b, ev, depth);
	case YAML_ALIAS_EVENT:
		berror(b, &ev->start_mark,
		       "aliases ('*%s') are not supported; share settings with 'extends'",
		       (const char *)ev->data.alias.anchor);
		return NULL;
	default:
		berror(b, &ev->start_mark, "unexpected YAML event");
		b->failed = 1;
		return NULL;
	}
}

/* Parses d->src into d->root. Returns 0 when the text parsed (problems in it may still have
 * been reported), -1 on a syntax error. */
static int parse_doc(struct st_yl_ctx *ctx, struct st_yl_doc *d)
{
	struct builder b = { .ctx = ctx, .doc = d };
	yaml_event_t ev;
	int docs = 0;
	int rc = -1;

	if (!yaml_parser_initialize(&b.parser)) {
		st_yl_error_at(ctx, d->name, 1, 1, "out of memory");
		return -1;
	}
	yaml_parser_set_input_string(&b.parser, (const unsigned char *)d->src, d->len);
	for (;;) {
		if (next_event(&b, &ev) != 0)
			goto out;
		if (ev.type == YAML_STREAM_END_EVENT) {
			yaml_event_delete(&ev);
			break;
		}
		if (ev.type == YAML_DOCUMENT_START_EVENT) {
			if (++docs > 1) {
				berror(&b, &ev.start_mark,
				       "a second YAML document ('---'); one file holds one "
				       "document");
				yaml_event_delete(&ev);
				goto out;
			}
		} else if (ev.type != YAML_STREAM_START_EVENT &&
			   ev.type != YAML_DOCUMENT_END_EVENT) {
			struct st_yl_node *n = build_node(&b, &ev, 0);
			if (b.failed) {
				node_free(n);
				yaml_event_delete(&ev);
				goto out;
			}
			d->root = n;
		}
		yaml_event_delete(&ev);
	}
	rc = 0;
out:
	yaml_parser_delete(&b.parser);
	return rc;
}

static int add_doc(struct st_yl_ctx *ctx, struct st_yl_doc *d)
{
	struct st_yl_doc **v = realloc(ctx->docs, (ctx->ndocs + 1) * sizeof(*v));

	if (!v)
		return -1;
	ctx->docs = v;
	ctx->docs[ctx->ndocs++] = d;
	return 0;
}

static int load_src(struct st_yl_ctx *ctx, struct st_yl_doc *d, struct st_yl_doc **out)
{
	if (add_doc(ctx, d) != 0) {
		doc_free(d);
		return ST_E_NOMEM;
	}
	if (parse_doc(ctx, d) != 0)
		return ST_E_CONFIG;
	*out = d;
	return 0;
}

int st_yl_load_file(struct st_yl_ctx *ctx, const char *path, struct st_yl_doc **out, char *err,
		    size_t errlen)
{
	struct st_yl_doc *d;
	int rc;

	*out = NULL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return st_errf(err, errlen, ST_E_NOMEM, "out of memory");
	rc = st_yl_read_file(path, ST_YL_MAX_FILE_BYTES, &d->src, &d->len, err, errlen);
	if (rc != 0) {
		doc_free(d);
		return rc;
	}
	d->name = strdup(path);
	d->dir = dir_of(path);
	if (!d->name || !d->dir) {
		doc_free(d);
		return st_errf(err, errlen, ST_E_NOMEM, "out of memory");
	}
	rc = load_src(ctx, d, out);
	if (rc != 0)
		st_errf(err, errlen, rc, "%s does not parse", path);
	return rc;
}

int st_yl_load_buffer(struct st_yl_ctx *ctx, const char *name, const char *dir, const void *buf,
		      size_t len, struct st_yl_doc **out)
{
	struct st_yl_doc *d;

	*out = NULL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return ST_E_NOMEM;
	d->src = malloc(len + 1);
	d->name = strdup(name);
	d->dir = dir ? strdup(dir) : dir_of(name);
	if (!d->src || !d->name || !d->dir) {
		doc_free(d);
		return ST_E_NOMEM;
	}
	if (len)
		memcpy(d->src, buf, len);
	d->src[len] = '\0';
	d->len = len;
	return load_src(ctx, d, out);
}

void st_yl_init(struct st_yl_ctx *ctx, FILE *diag)
{
	memset(ctx, 0, sizeof(*ctx));
	ctx->diag = diag;
}

void st_yl_cleanup(struct st_yl_ctx *ctx)
{
	for (size_t i = 0; i < ctx->ndocs; i++)
		doc_free(ctx->docs[i]);
	free(ctx->docs);
	ctx->docs = NULL;
	ctx->ndocs = 0;
	for (size_t i = 0; i < ctx->nmerged; i++) {
		free(ctx->merged[i]->items);
		free(ctx->merged[i]);
	}
	free(ctx->merged);
	ctx->merged = NULL;
	ctx->nmerged = 0;
}

/* --- Merging (extends) ------------------------------------------------------------------- */

static const struct st_yl_node *find_key(const struct st_yl_node *map, const char *k, size_t kl)
{
	for (size_t i = 0; i < map->n; i++) {
		const struct st_yl_node *key = map->items[2 * i];
		if (key->len == kl && memcmp(key->value, k, kl) == 0)
			return map->items[2 * i + 1];
	}
	return NULL;
}

const struct st_yl_node *st_yl_merge(struct st_yl_ctx *ctx, const struct st_yl_node *base,
				     const struct st_yl_node *over)
{
	struct st_yl_node *m, **v;
	size_t n = 0;

	if (!base)
		return over;
	if (!over || base->type != ST_YL_MAPPING || over->type != ST_YL_MAPPING)
		return over ? over : base;
	m = calloc(1, sizeof(*m));
	v = realloc(ctx->merged, (ctx->nmerged + 1) * sizeof(*v));
	if (!m || !v) {
		free(m);
		if (v)
			ctx->merged = v;
		st_yl_error(ctx, over, "out of memory");
		return over;
	}
	ctx->merged = v;
	ctx->merged[ctx->nmerged++] = m;
	/* The merged mapping stands where the overriding one was written. */
	*m = *over;
	m->items = calloc(2 * (base->n + over->n) + 1, sizeof(*m->items));
	if (!m->items) {
		m->n = 0;
		st_yl_error(ctx, over, "out of memory");
		return over;
	}
	for (size_t i = 0; i < base->n; i++) {
		struct st_yl_node *k = base->items[2 * i];
		const struct st_yl_node *ov = find_key(over, k->value, k->len);
		const struct st_yl_node *val = base->items[2 * i + 1];

		if (ov) {
			/* Find over's key node so positions point at what the author wrote last. */
			for (size_t j = 0; j < over->n; j++) {
				if (over->items[2 * j + 1] == ov)
					k = over->items[2 * j];
			}
			val = st_yl_merge(ctx, val, ov);
		}
		m->items[2 * n] = k;
		m->items[2 * n + 1] = (struct st_yl_node *)val;
		n++;
	}
	for (size_t j = 0; j < over->n; j++) {
		struct st_yl_node *k = over->items[2 * j];
		if (find_key(base, k->value, k->len))
			continue;
		m->items[2 * n] = k;
		m->items[2 * n + 1] = over->items[2 * j + 1];
		n++;
	}
	m->n = n;
	return m;
}

/* --- Typed values ------------------------------------------------------------------------ */

int st_yl_expect(struct st_yl_ctx *ctx, const struct st_yl_node *node, enum st_yl_type type,
		 const char *what)
{
	static const char *const names[] = {
		[ST_YL_SCALAR] = "a single value",
		[ST_YL_SEQUENCE] = "a sequence (a list of '- ' items)",
		[ST_YL_MAPPING] = "a mapping ('key: value' lines)",
	};

	if (node->type == type)
		return 0;
	st_yl_error(ctx, node, "'%s' must be %s, not %s", what, names[type], st_yl_describe(node));
	return -1;
}

/* Checks UTF-8 well-formedness (no overlongs, no surrogates). Returns the offset of the
 * first bad byte or len. */
static size_t utf8_check(const unsigned char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned c = s[i];
		size_t n;
		unsigned cp;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			cp = c & 0x07;
		} else {
			return i;
		}
		for (size_t k = 1; k <= n; k++) {
			if (i + k >= len || (s[i + k] & 0xc0) != 0x80)
				return i;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return i;
		i += n + 1;
	}
	return len;
}

int st_yl_string(struct st_yl_ctx *ctx, const struct st_yl_node *node, const char *what,
		 unsigned flags, size_t max, char **out)
{
	*out = NULL;
	if (st_yl_expect(ctx, node, ST_YL_SCALAR, what) != 0)
		return -1;
	if (node->len == 0 && (flags & ST_YL_NONEMPTY || node->style == ST_YL_PLAIN)) {
		st_yl_error(ctx, node, "'%s' has no value", what);
		return -1;
	}
	if (memchr(node->value, '\0', node->len)) {
		st_yl_error(ctx, node, "'%s' contains a NUL character", what);
		return -1;
	}
	if (flags & ST_YL_ONELINE) {
		for (size_t i = 0; i < node->len; i++) {
			unsigned char c = (unsigned char)node->value[i];
			if (c < 0x20 || c == 0x7f) {
				st_yl_error_in(ctx, node, i,
					       "'%s' must be one line without control characters",
					       what);
				return -1;
			}
		}
	}
	{
		size_t bad = utf8_check((const unsigned char *)node->value, node->len);
		if (bad != node->len) {
			st_yl_error_in(ctx, node, bad, "'%s' is not valid UTF-8", what);
			return -1;
		}
	}
	if (max && node->len > max) {
		st_yl_error(ctx, node, "'%s' is %zu bytes long, at most %zu are allowed", what,
			    node->len, max);
		return -1;
	}
	*out = strdup(node->value);
	if (!*out) {
		st_yl_error(ctx, node, "out of memory");
		return -1;
	}
	return 0;
}

int st_yl_integer(struct st_yl_ctx *ctx, const struct st_yl_node *node, const char *what,
		  long long min, long long max, long long *out)
{
	char *end;
	long long v;

	if (st_yl_expect(ctx, node, ST_YL_SCALAR, what) != 0)
		return -1;
	/* Only plain scalars are numbers in YAML; "42" in quotes is text. */
	if (node->style != ST_YL_PLAIN || node->len == 0 ||
	    !(node->value[0] == '-' || node->value[0] == '+' ||
	      (node->value[0] >= '0' && node->value[0] <= '9'))) {
		st_yl_error(ctx, node, "'%s' must be a whole number, not %s%s%s", what,
			    node->len ? "'" : "", node->len ? node->value : "an empty value",
			    node->len ? "'" : "");
		return -1;
	}
	errno = 0;
	v = strtoll(node->value, &end, 10);
	if (end == node->value || *end != '\0') {
		st_yl_error(ctx, node, "'%s' must be a whole number, not '%s'", what, node->value);
		return -1;
	}
	if (errno == ERANGE || v < min || v > max) {
		st_yl_error(ctx, node, "'%s' is %s, out of range %lld..%lld", what, node->value,
			    min, max);
		return -1;
	}
	*out = v;
	return 0;
}



int st_yl_choose(struct st_yl_ctx *ctx, const struct st_yl_node *node, const char *what,
		 const char *const *choices, int *out)
{
	char list[512];
	const char *near;

	if (st_yl_expect(ctx, node, ST_YL_SCALAR, what) != 0)
		return -1;
	for (int i = 0; choices[i]; i++) {
		if (strlen(choices[i]) == node->len &&
		    memcmp(choices[i], node->value, node->len) == 0) {
			*out = i;
			return 0;
		}
	}
	st_join(list, sizeof(list), choices, "", "");
	near = node->len < 64 ? st_yl_nearest(node->value, choices) : NULL;
	if (near)
		st_yl_error(
			ctx, node,
			"unknown value '%.64s' for '%s' (did you mean '%s'?); expected one of: %s",
			node->value, what, near, list);
	else
		st_yl_error(ctx, node, "unknown value '%.64s' for '%s'; expected one of: %s",
			    node->value, what, list);
	return -1;
}

/* --- Ready handlers ---------------------------------------------------------------------- */

#define FIELD(base, key, type) ((type *)((char *)(base) + (key)->offset))

int st_yl_h_string(struct st_yl_ctx *ctx, const struct st_yl_node *node,
		   const struct st_yl_key *key, void *base)
{
	char *s;

	if (st_yl_string(ctx, node, key->name, key->flags, (size_t)key->max, &s) != 0)
		return -1;
	free(*FIELD(base, key, char *));
	*FIELD(base, key, char *) = s;
	return 0;
}

int st_yl_h_path(struct st_yl_ctx *ctx, const struct st_yl_node *node, const struct st_yl_key *key,
		 void *base)
{
	char *s, *p;

	if (st_yl_string(ctx, node, key->name, key->flags | ST_YL_ONELINE | ST_YL_NONEMPTY,
			 PATH_MAX - 1, &s) != 0)
		return -1;
	p = st_yl_join(node->doc->dir, s);
	free(s);
	if (!p) {
		st_yl_error(ctx, node, "out of memory");
		return -1;
	}
	free(*FIELD(base, key, char *));
	*FIELD(base, key, char *) = p;
	return 0;
}

int st_yl_h_choice(struct st_yl_ctx *ctx, const struct st_yl_node *node,
		   const struct st_yl_key *key, void *base)
{
	int i;
	char *s;

	if (st_yl_choose(ctx, node, key->name, key->choices, &i) != 0)
		return -1;
	s = strdup(key->choices[i]);
	if (!s) {
		st_yl_error(ctx, node, "out of memory");
		return -1;
	}
	free(*FIELD(base, key, char *));
	*FIELD(base, key, char *) = s;
	return 0;
}

int st_yl_h_enum(struct st_yl_ctx *ctx, const struct st_yl_node *node, const struct st_yl_key *key,
		 void *base)
{
	int i;

	if (st_yl_choose(ctx, node, key->name, key->choices, &i) != 0)
		return -1;
	*FIELD(base, key, int) = i;
	return 0;
}

int st_yl_h_bool(struct st_yl_ctx *ctx, const struct st_yl_node *node, const struct st_yl_key *key,
		 void *base)
{
	static const char *const truths[] = { "true", "True", "TRUE", NULL };
	static const char *const falses[] = { "false", "False", "FALSE", NULL };

	if (st_yl_expect(ctx, node, ST_YL_SCALAR, key->name) != 0)
		return -1;
	if (node->style == ST_YL_PLAIN) {
		for (int i = 0; truths[i]; i++) {
			if (strcmp(node->value, truths[i]) == 0) {
				*FIELD(base, key, int) = 1;
				return 0;
			}
			if (strcmp(node->value, falses[i]) == 0) {
				*FIELD(base, key, int) = 0;
				return 0;
			}
		}
	}
	st_yl_error(ctx, node, "'%s' must be true or false, not %s%.64s%s", key->name,
		    node->style == ST_YL_PLAIN ? "'" : "\"", node->value,
		    node->style == ST_YL_PLAIN ? "'" : "\" in quotes");
	return -1;
}

int st_yl_h_int(struct st_yl_ctx *ctx, const struct st_yl_node *node, const struct st_yl_key *key,
		void *base)
{
	long long v;
	long long min = key->min, max = key->max;

	if (min < INT_MIN)
		min = INT_MIN;
	if (max > INT_MAX || max <= min)
		max = INT_MAX;
	if (st_yl_integer(ctx, node, key->name, min, max, &v) != 0)
		return -1;
	*FIELD(base, key, int) = (int)v;
	return 0;
}

int st_yl_h_uint(struct st_yl_ctx *ctx, const struct st_yl_node *node, const struct st_yl_key *key,
		 void *base)
{
	long long v;
	long long min = key->min < 0 ? 0 : key->min, max = key->max;

	if (max > (long long)UINT_MAX || max <= min)
		max = UINT_MAX;
	if (st_yl_integer(ctx, node, key->name, min, max, &v) != 0)
		return -1;
	*FIELD(base, key, unsigned) = (unsigned)v;
	return 0;
}

int st_yl_h_mapping(struct st_yl_ctx *ctx, const struct st_yl_node *node,
		    const struct st_yl_key *key, void *base)
{
	if (st_yl_expect(ctx, node, ST_YL_MAPPING, key->name) != 0)
		return -1;
	return st_yl_parse_mapping(ctx, node, key->sub, FIELD(base, key, char), NULL) ? -1 : 0;
}

int st_yl_h_node(struct st_yl_ctx *ctx, const struct st_yl_node *node, const struct st_yl_key *key,
		 void *base)
{
	(void)ctx;
	*FIELD(base, key, const struct st_yl_node *) = node;
	return 0;
}

int st_yl_h_ignore(struct st_yl_ctx *ctx, const struct st_yl_node *node,
		   const struct st_yl_key *key, void *base)
{
	(void)ctx;
	(void)node;
	(void)key;
	(void)base;
	return 0;
}

/* --- Mappings ---------------------------------------------------------------------------- */

size_t st_yl_path_push(struct st_yl_ctx *ctx, const char *name)
{
	size_t len = strlen(ctx->path);

	snprintf(ctx->path + len, sizeof(ctx->path) - len, "%s%s", len ? "." : "", name);
	return len;
}

void st_yl_path_pop(struct st_yl_ctx *ctx, size_t len)
{
	if (len < sizeof(ctx->path))
		ctx->path[len] = '\0';
}

unsigned st_yl_parse_mapping(struct st_yl_ctx *ctx, const struct st_yl_node *map,
			     const struct st_yl_key *table, void *base,
			     const struct st_yl_node **found)
{
	unsigned before = ctx->errors;
	size_t nkeys = 0;
	const char *names[128];
	size_t pathlen = strlen(ctx->path);

	while (table[nkeys].name)
		nkeys++;
	if (found) {
		for (size_t i = 0; i < nkeys; i++)
			found[i] = NULL;
	}
	if (st_yl_expect(ctx, map, ST_YL_MAPPING, pathlen ? ctx->path : "the document") != 0)
		return ctx->errors - before;
	for (size_t i = 0; i < nkeys && i < 127; i++)
		names[i] = table[i].name;
	names[nkeys < 127 ? nkeys : 127] = NULL;

	for (size_t p = 0; p < map->n; p++) {
		const struct st_yl_node *k = map->items[2 * p], *v = map->items[2 * p + 1];
		size_t i;

		for (i = 0; i < nkeys; i++) {
			if (strlen(table[i].name) == k->len &&
			    memcmp(table[i].name, k->value, k->len) == 0)
				break;
		}
		if (i == nkeys) {
			const char *near = k->len < 64 ? st_yl_nearest(k->value, names) : NULL;
			char list[512];

			if (near) {
				st_yl_error(ctx, k, "unknown key '%.64s' (did you mean '%s'?)",
					    k->value, near);
			} else {
				st_join(list, sizeof(list), names, "", "");
				st_yl_error(ctx, k, "unknown key '%.64s'%s%s%s; known keys: %s",
					    k->value, pathlen ? " in '" : "",
					    pathlen ? ctx->path : "", pathlen ? "'" : "", list);
			}
			continue;
		}
		if (found)
			found[i] = v;
		if (table[i].handler) {
			/* Nested mappings extend the dotted path used in messages. */
			st_yl_path_push(ctx, table[i].name);
			table[i].handler(ctx, v, &table[i], base);
			st_yl_path_pop(ctx, pathlen);
		}
	}
	for (size_t i = 0; i < nkeys; i++) {
		if (!(table[i].flags & ST_YL_REQUIRED))
			continue;
		if (!find_key(map, table[i].name, strlen(table[i].name))) {
			if (pathlen)
				st_yl_error(ctx, map, "missing required key '%s' in '%s'",
					    table[i].name, ctx->path);
			else
				st_yl_error(ctx, map, "missing required key '%s'", table[i].name);
		}
	}
	return ctx->errors - before;
}
