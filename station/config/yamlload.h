/* The one place in the program that sees YAML. A file (or buffer) becomes a small node tree
 * that keeps every node's file, line and column; tables of key handlers (in the manner of
 * netplan's mapping_entry_handler tables) then turn mappings into C structs. Every problem is
 * reported as "file:line:col: message" with libyaml's 0-based marks plus one, and loading goes
 * on after a problem so that one run shows all of them; the caller fails once at the end with
 * the count (st_yl_summary()).
 *
 * What is refused outright, because profile authors gain nothing from it and it makes
 * behaviour harder to predict: more than one document per file, anchors and aliases, explicit
 * tags, non-scalar mapping keys, duplicate keys, nesting deeper than ST_YL_MAX_DEPTH. A
 * syntax error, nesting too deep and more than ST_YL_MAX_NODES nodes end loading at once.
 *
 * Not thread-safe per context; separate contexts may be used on separate threads. */
#ifndef ST_YAMLLOAD_H
#define ST_YAMLLOAD_H

#include <stddef.h>
#include <stdio.h>

#define ST_YL_MAX_FILE_BYTES (1024 * 1024) /* largest YAML file read */
#define ST_YL_MAX_DEPTH 64		   /* deepest nesting of collections */
#define ST_YL_MAX_NODES 100000		   /* most nodes in one document */
#define ST_YL_MAX_KEYS 1024		   /* most keys in one mapping */

enum st_yl_type {
	ST_YL_SCALAR,
	ST_YL_SEQUENCE,
	ST_YL_MAPPING,
};

enum st_yl_style {
	ST_YL_PLAIN,
	ST_YL_SINGLE_QUOTED,
	ST_YL_DOUBLE_QUOTED,
	ST_YL_LITERAL,
	ST_YL_FOLDED,
	ST_YL_FLOW, /* collections written in flow style ([..] or {..}) */
	ST_YL_BLOCK,
};

struct st_yl_doc;

struct st_yl_node {
	enum st_yl_type type;
	enum st_yl_style style;
	const struct st_yl_doc *doc; /* the document (file) the node was written in */
	int line, col;		     /* 1-based position of the node's first character */
	size_t start, end;	     /* the node's text in doc->src, in characters (libyaml's
				      * mark.index: after a byte order mark, not bytes) */
	char *value;		     /* scalar: the value, NUL-terminated */
	size_t len;		     /* scalar: bytes in value (a value may hold a NUL) */
	struct st_yl_node **items;   /* sequence: n items; mapping: key 2i, value 2i+1 */
	size_t n;		     /* sequence: items; mapping: pairs */
};

struct st_yl_doc {
	char *name; /* the file name as given; used in messages */
	char *dir;  /* directory that relative references resolve against */
	char *src;  /* the file's bytes, NUL-terminated */
	size_t len;
	struct st_yl_node *root; /* NULL when the document is empty or did not parse */
};

/* One loading run: the documents read so far and the problems found. */
struct st_yl_ctx {
	FILE *diag;		 /* where "file:line:col: message" lines go; may be NULL */
	unsigned errors;	 /* problems reported so far */
	struct st_yl_doc **docs; /* owned */
	size_t ndocs;
	struct st_yl_node **merged; /* nodes made by st_yl_merge(), owned */
	size_t nmerged;
	char path[256]; /* dotted path of the mapping being parsed, for messages */
};

/* Prepares ctx; diag may be NULL (problems are then only counted). */
void st_yl_init(struct st_yl_ctx *ctx, FILE *diag);

/* Frees every document and node the context holds. Safe to call twice. */
void st_yl_cleanup(struct st_yl_ctx *ctx);

/* Reads and parses a YAML file. The document belongs to ctx and lives until st_yl_cleanup().
 * name is used in messages (usually the path as the user gave it). Returns 0 with *out set,
 * also when the file was empty (then (*out)->root is NULL and nothing was reported); returns
 * a negative ST_E_* code with *out NULL when the file could not be read or did not parse;
 * syntax errors are reported, read errors are only returned (the caller knows from where
 * the file was referenced and reports it there), with a description in err. */
int st_yl_load_file(struct st_yl_ctx *ctx, const char *path, struct st_yl_doc **out, char *err,
		    size_t errlen);

/* Same for bytes in memory. name is used in messages; relative references resolve against
 * dir (NULL: the directory part of name). The buffer is copied. */
int st_yl_load_buffer(struct st_yl_ctx *ctx, const char *name, const char *dir, const void *buf,
		      size_t len, struct st_yl_doc **out);

/* Reads a whole regular file of at most max bytes into a new NUL-terminated buffer (free()).
 * Refuses FIFOs, devices and directories, so a reference can never block or read forever.
 * Returns 0 or a negative ST_E_* code with a message in err; *out is NULL on failure. */
int st_yl_read_file(const char *path, size_t max, char **out, size_t *len, char *err,
		    size_t errlen);

/* Opens rel, a name relative to the directory dir (NULL or "": the current directory), as
 * a regular file for reading without ever leaving dir: rel must not be absolute nor have an
 * empty, "." or ".." component, and no component is followed when it is a symbolic link
 * (each is looked at with fstatat() and opened with openat() and O_NOFOLLOW). Anything but
 * a regular file (directory, FIFO, device, socket) is refused before it is opened. dir itself
 * is taken as given. Returns an open descriptor (close it), or a negative ST_E_* code with a
 * message in err and *bad the byte offset in rel of the component at fault: ST_E_INVAL for a
 * name or a link that would lead out of dir, ST_E_NOTFOUND, ST_E_IO (also for a component
 * of the wrong kind). */
int st_yl_open_beneath(const char *dir, const char *rel, size_t *bad, char *err, size_t errlen);

/* st_yl_read_file() for a file opened with st_yl_open_beneath(). */
int st_yl_read_beneath(const char *dir, const char *rel, size_t max, char **out, size_t *len,
		       size_t *bad, char *err, size_t errlen);

/* A mapping whose keys are those of base overlaid by those of over: a key in both takes
 * over's value, except that two mappings are merged the same way, recursively; keys keep
 * base's order and over's new keys follow. Sequences and scalars are replaced whole. Either
 * argument may be NULL. The result belongs to ctx. */
const struct st_yl_node *st_yl_merge(struct st_yl_ctx *ctx, const struct st_yl_node *base,
				     const struct st_yl_node *over);

/* Reports a problem at a node ("file:line:col: message"). */
void st_yl_error(struct st_yl_ctx *ctx, const struct st_yl_node *at, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Writes a warning at a node ("file:line:col: warning: message"): something that loads but
 * will not do what its author may expect. Not counted as an error. */
void st_yl_warning(struct st_yl_ctx *ctx, const struct st_yl_node *at, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Reports a problem at the byte offset off of a scalar's value: at the exact column when the
 * value can be mapped back to the source (plain or quoted on one line, literal blocks),
 * else at the scalar's start. */
void st_yl_error_in(struct st_yl_ctx *ctx, const struct st_yl_node *at, size_t off, const char *fmt,
		    ...) __attribute__((format(printf, 4, 5)));

/* Reports a problem at an explicit position, e.g. inside a template file. */
void st_yl_error_at(struct st_yl_ctx *ctx, const char *file, int line, int col, const char *fmt,
		    ...) __attribute__((format(printf, 5, 6)));

/* 1-based line and column of byte offset off in text (columns count characters). */
void st_yl_position(const char *text, size_t len, size_t off, int *line, int *col);

/* Fills err with "N errors in NAME" (or "1 error in NAME") and returns code. */
int st_yl_summary(const struct st_yl_ctx *ctx, const char *name, int code, char *err,
		  size_t errlen);

/* The candidate nearest to word by edit distance (transpositions count one), or NULL when
 * none is near enough to be a likely typo. cands is NULL-terminated. */
const char *st_yl_nearest(const char *word, const char *const *cands);

/* "a sequence", "a mapping", "a single value": for "must be X, not Y" messages. */
const char *st_yl_describe(const struct st_yl_node *node);

/* --- Table-driven mappings --------------------------------------------------------------- */

struct st_yl_key;

/* Handles the value node of one key: checks it and stores it at base + key->offset. Reports
 * its own problems and returns 0 when it stored something, -1 otherwise. */
typedef int (*st_yl_handler)(struct st_yl_ctx *ctx, const struct st_yl_node *node,
			     const struct st_yl_key *key, void *base);

enum st_yl_flags {
	ST_YL_REQUIRED = 1u << 0, /* a missing key is an error */
	ST_YL_ONELINE = 1u << 1,  /* strings: no control characters, no line breaks */
	ST_YL_NONEMPTY = 1u << 2, /* strings: "" is an error; sequences: [] is an error */
};

struct st_yl_key {
	const char *name; /* NULL ends a table */
	st_yl_handler handler;
	size_t offset;		     /* where the handler stores the value, from base */
	unsigned flags;		     /* enum st_yl_flags */
	long long min, max;	     /* integers: the allowed range; strings: max bytes (0: any) */
	const char *const *choices;  /* enums: the allowed values, NULL-terminated */
	const struct st_yl_key *sub; /* nested mappings: the table of the value */
};

/* Table entries, in the manner of hostapd's INT_RANGE(): */
#define ST_YL_KEY(n, h, off, fl)                                                                   \
	{                                                                                          \
		.name = (n), .handler = (h), .offset = (off), .flags = (fl)                        \
	}
/* integers in lo..hi, or strings of at most hi bytes */
#define ST_YL_RANGE(n, h, off, fl, lo, hi)                                                         \
	{                                                                                          \
		.name = (n), .handler = (h), .offset = (off), .flags = (fl), .min = (lo),          \
		.max = (hi)                                                                        \
	}
#define ST_YL_CHOICE(n, h, off, fl, ch)                                                            \
	{                                                                                          \
		.name = (n), .handler = (h), .offset = (off), .flags = (fl), .choices = (ch)       \
	}
#define ST_YL_SUB(n, off, fl, table)                                                               \
	{                                                                                          \
		.name = (n), .handler = st_yl_h_mapping, .offset = (off), .flags = (fl),           \
		.sub = (table)                                                                     \
	}
/* a known key whose value the caller takes from the found[] array */
#define ST_YL_NAME(n, fl)                                                                          \
	{                                                                                          \
		.name = (n), .flags = (fl)                                                         \
	}
#define ST_YL_END                                                                                  \
	{                                                                                          \
		.name = NULL                                                                       \
	}

/* Parses mapping node map with table into base: each key's handler is called; unknown keys
 * are reported with the nearest known key suggested (or the list of known keys), missing
 * required keys at the mapping. found, when not NULL, receives for each table entry the
 * value node given for it (NULL when absent), so callers can check combinations of keys and
 * report them at the right place. Returns the number of problems reported. */
unsigned st_yl_parse_mapping(struct st_yl_ctx *ctx, const struct st_yl_node *map,
			     const struct st_yl_key *table, void *base,
			     const struct st_yl_node **found);

/* Extends the dotted path that messages name ("sota.p11") while a custom handler parses a
 * nested mapping itself; returns the length to restore with st_yl_path_pop(). */
size_t st_yl_path_push(struct st_yl_ctx *ctx, const char *name);
void st_yl_path_pop(struct st_yl_ctx *ctx, size_t len);

/* Ready handlers. Each checks the node's type and reports "'key' must be ..., not ...". */
int st_yl_h_string(struct st_yl_ctx *ctx, const struct st_yl_node *node,
		   const struct st_yl_key *key, void *base); /* char * (replaced, freed) */
int st_yl_h_path(struct st_yl_ctx *ctx, const struct st_yl_node *node, const struct st_yl_key *key,
		 void *base); /* char *, joined to doc->dir */
int st_yl_h_choice(struct st_yl_ctx *ctx, const struct st_yl_node *node,
		   const struct st_yl_key *key, void *base); /* char *, one of key->choices */
int st_yl_h_enum(struct st_yl_ctx *ctx, const struct st_yl_node *node, const struct st_yl_key *key,
		 void *base); /* int: index in key->choices */
int st_yl_h_bool(struct st_yl_ctx *ctx, const struct st_yl_node *node, const struct st_yl_key *key,
		 void *base); /* int: 0 or 1 */
int st_yl_h_int(struct st_yl_ctx *ctx, const struct st_yl_node *node, const struct st_yl_key *key,
		void *base); /* int in key->min..max */
int st_yl_h_uint(struct st_yl_ctx *ctx, const struct st_yl_node *node, const struct st_yl_key *key,
		 void *base); /* unsigned in key->min..max */
int st_yl_h_mapping(struct st_yl_ctx *ctx, const struct st_yl_node *node,
		    const struct st_yl_key *key, void *base); /* key->sub at base + offset */
int st_yl_h_node(struct st_yl_ctx *ctx, const struct st_yl_node *node, const struct st_yl_key *key,
		 void *base); /* const struct st_yl_node * */
int st_yl_h_ignore(struct st_yl_ctx *ctx, const struct st_yl_node *node,
		   const struct st_yl_key *key, void *base); /* known key, handled elsewhere */

/* Building blocks for custom handlers. Each reports its own problem (naming what) and
 * returns 0 or -1. */
int st_yl_expect(struct st_yl_ctx *ctx, const struct st_yl_node *node, enum st_yl_type type,
		 const char *what);
/* A scalar as a string; flags as for keys (ST_YL_ONELINE, ST_YL_NONEMPTY), max bytes
 * (0: any). *out is a new string (free()). */
int st_yl_string(struct st_yl_ctx *ctx, const struct st_yl_node *node, const char *what,
		 unsigned flags, size_t max, char **out);
/* A plain scalar as an integer in min..max (strtoll with an end check). */
int st_yl_integer(struct st_yl_ctx *ctx, const struct st_yl_node *node, const char *what,
		  long long min, long long max, long long *out);
/* A scalar that must be one of choices; *out is its index. */
int st_yl_choose(struct st_yl_ctx *ctx, const struct st_yl_node *node, const char *what,
		 const char *const *choices, int *out);

/* dir joined with rel, or rel itself when absolute or dir is empty/NULL. New string. */
char *st_yl_join(const char *dir, const char *rel);

#endif
