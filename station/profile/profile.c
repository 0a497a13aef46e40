#include "profile.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "proto.h"
#include "template.h"
#include "yamlload.h"

const char *const st_profile_vars[] = {
	"device_id", "hardware_id", "sku", "factory", "cert_pem", "chain_pem", "root_pem",
	"gateway", "ostree_server", "config_dir", "sota_toml", NULL,
};

enum {
	PV_DEVICE_ID,
	PV_HARDWARE_ID,
	PV_SKU,
	PV_FACTORY,
	PV_CERT,
	PV_CHAIN,
	PV_ROOT,
	PV_GATEWAY,
	PV_OSTREE,
	PV_CONFIG_DIR,
	PV_SOTA,
	PV_COUNT,
};

#define BIT(v) ((uint64_t)1 << (v))
/* File paths may name the board and the product, never certificates or whole files. */
#define PATH_VARS                                                                                  \
	(BIT(PV_DEVICE_ID) | BIT(PV_HARDWARE_ID) | BIT(PV_SKU) | BIT(PV_FACTORY) |                 \
	 BIT(PV_CONFIG_DIR))
#define SOTA_VARS (BIT(PV_GATEWAY) | BIT(PV_OSTREE) | BIT(PV_SOTA))

#define MAX_PATH_BYTES 1024
#define MAX_HWID_BYTES 128
#define MAX_HWIDS 256
#define MAX_GROUPS 256
#define MAX_PATTERN_BYTES 256

/* The Foundries building block: what a registered device holds in its config dir. */
static const struct {
	const char *path, *content;
} foundries_set[] = {
	{ "{config_dir}/client.pem", "{cert_pem}" },
	{ "{config_dir}/client.chained", "{cert_pem}{chain_pem}" },
	{ "{config_dir}/root.crt", "{root_pem}" },
	{ "{config_dir}/sota.toml", "{sota_toml}" },
};

static const char *const file_sets[] = { "foundries", NULL };
/* In the order of enum st_devid_source. */
static const char *const devid_sources[] = { "board", "uuid4", "sequence", "secure-element",
					     NULL };
static const char *const key_algs[] = { "ec-p256", "ec-p384", "ec-p521", NULL };
static const unsigned key_alg_bits[] = { ST_KEY_EC_P256, ST_KEY_EC_P384, ST_KEY_EC_P521 };
static const char *const key_storages[] = { "any", "secure-element", NULL };
static const char *const serial_modes[] = { "random", "uuid", NULL };
static const char *const past_ca_modes[] = { "clamp", "reject", NULL };
static const char *const reprovision_modes[] = { "refuse", "reissue", NULL };
static const char *const authorization_modes[] = { "none", "required", NULL };

/* Values of the small sections, read through tables before they go into the profile. */
struct devid_vals {
	int source;
	char *prefix;
	unsigned digits;
};

struct key_vals {
	int storage;
};

struct cert_vals {
	unsigned validity, bits;
	int serial, past_ca, reprovision;
};

/* Where a file entry came from, kept until the cross-checks at the end of loading. */
struct file_src {
	const struct st_yl_node *entry;	 /* the list item */
	const struct st_yl_node *origin; /* what to point at for {sota_toml} and the like */
	uint64_t uses;
	char *sample_path; /* the path expanded with sample values, for duplicate checks */
};

struct loader {
	struct st_yl_ctx yl;
	struct st_profile *p;

	/* Raw values, checked against each other once the whole mapping is read. */
	char *sku, *description, *factory;
	int production;
	int authorization; /* index in authorization_modes */
	const struct st_yl_node *serial_node, *files_node;
	/* Where device_id.source, key.storage and certificate.reprovision were given (NULL:
	 * not given), for the checks between them. */
	const struct st_yl_node *devid_source_node, *storage_node, *reprovision_node;
	int devid_source, serial_mode;
	struct file_src *fsrc;
	size_t nfsrc;
	/* Names of the documents on the extends chain being resolved, for cycle messages. */
	const char *chain_names[ST_PROFILE_MAX_EXTENDS + 1];
};

/* --- Small checks ----------------------------------------------------------------------- */

static int is_word_char(char c, const char *extra)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr(extra, c));
}

/* Reports the first character of a scalar outside [A-Za-z0-9] + extra. */
static int check_word(struct st_yl_ctx *ctx, const struct st_yl_node *n, const char *what,
		      const char *extra, const char *allowed)
{
	for (size_t i = 0; i < n->len; i++) {
		if (!is_word_char(n->value[i], extra)) {
			st_yl_error_in(ctx, n, i, "'%s' may contain only %s", what, allowed);
			return -1;
		}
	}
	return 0;
}

/* A rough size of the automaton glibc builds for an extended regex, and the constructs
 * that make it explode: counted repetitions multiply what they repeat, quantifiers stacked
 * on quantifiers ("a??{99}") and repeated groups multiply glibc's epsilon closures, and
 * backreferences make matching exponential. Device id patterns need none of it; a hostile
 * or mistaken pattern must not take the station down. Returns 0, or -1 with the offending
 * offset in *bad. */
#define REGEX_MAX_COST 1024
#define REGEX_MAX_COUNT 255
#define REGEX_MAX_GROUP_COUNT 16

static int regex_cost(const char *s, size_t *bad)
{
	size_t stack[32];
	size_t depth = 0, last = 0, cost, i;
	int quantified = 0, group = 0;

	stack[0] = 0;
	for (i = 0; s[i]; i++) {
		char c = s[i];
		int was_quantified = quantified;

		quantified = 0;
		switch (c) {
		case '\\':
			if (s[i + 1] >= '1' && s[i + 1] <= '9')
				goto bad;
			if (s[i + 1])
				i++;
			last = 1;
			group = 0;
			stack[depth] += 1;
			break;
		case '[': {
			size_t j = i + 1;

			if (s[j] == '^')
				j++;
			if (s[j] == ']')
				j++;
			while (s[j] && s[j] != ']') {
				if (s[j] == '[' &&
				    (s[j + 1] == ':' || s[j + 1] == '.' || s[j + 1] == '=')) {
					char close = s[j + 1];

					j += 2;
					while (s[j] && !(s[j] == close && s[j + 1] == ']'))
						j++;
					if (s[j])
						j++;
				}
				if (s[j])
					j++;
			}
			i = s[j] ? j : j - 1;
			last = 1;
			group = 0;
			stack[depth] += 1;
			break;
		}
		case '(':
			if (depth + 1 >= sizeof(stack) / sizeof(stack[0]))
				goto bad;
			stack[++depth] = 0;
			last = 0;
			group = 0;
			break;
		case ')':
			if (depth == 0) {
				last = 1;
				group = 0;
				stack[0] += 1;
				break;
			}
			last = stack[depth--];
			group = 1;
			stack[depth] += last;
			break;
		case '*':
		case '+':
		case '?':
			if (was_quantified)
				goto bad;
			quantified = 1;
			break;
		case '{': {
			char *end;
			unsigned long m, n;

			if (s[i + 1] < '0' || s[i + 1] > '9') {
				last = 1;
				group = 0;
				stack[depth] += 1;
				break;
			}
			if (was_quantified)
				goto bad;
			m = strtoul(s + i + 1, &end, 10);
			n = m;
			if (*end == ',')
				n = end[1] >= '0' && end[1] <= '9' ? strtoul(end + 1, &end, 10)
								   : (end++, m + 1);
			if (n < m)
				n = m;
			if (m > REGEX_MAX_COUNT || n > REGEX_MAX_COUNT ||
			    (group && n > REGEX_MAX_GROUP_COUNT) || last * n > REGEX_MAX_COST)
				goto bad;
			/* The repeated item is already counted once. */
			stack[depth] += last * (n ? n - 1 : 0);
			last *= n;
			quantified = 1;
			if (*end == '}')
				i = (size_t)(end - s);
			break;
		}
		default:
			last = 1;
			group = 0;
			stack[depth] += 1;
			break;
		}
		cost = 0;
		for (size_t d = 0; d <= depth; d++)
			cost += stack[d];
		if (cost > REGEX_MAX_COST)
			goto bad;
	}
	return 0;
bad:
	*bad = i;
	return -1;
}

/* A board path: absolute, canonical, printable. Returns NULL or what is wrong. */
static const char *path_problem(const char *s)
{
	size_t len = strlen(s);

	if (s[0] != '/')
		return "must be absolute (start with '/')";
	if (len > MAX_PATH_BYTES)
		return "is too long";
	if (len > 1 && s[len - 1] == '/')
		return "must name a file, not end with '/'";
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f)
			return "contains a control character";
		if (c == '/' && s[i + 1] == '/')
			return "contains '//'";
		if (c == '/' && s[i + 1] == '.' &&
		    (s[i + 2] == '/' || s[i + 2] == '\0' ||
		     (s[i + 2] == '.' && (s[i + 3] == '/' || s[i + 3] == '\0'))))
			return "contains a '.' or '..' component";
	}
	return NULL;
}

const char *st_profile_wire_path(const char *dir, const char *abs)
{
	size_t dl = strlen(dir);

	while (dl > 1 && dir[dl - 1] == '/')
		dl--;
	if (strncmp(abs, dir, dl) == 0 && abs[dl] == '/')
		return abs + dl + 1;
	while (*abs == '/')
		abs++;
	return abs;
}

/* Sample values that stand in for a board's when paths are checked at load time. */
static void sample_values(const char **v, const char *config_dir)
{
	for (int i = 0; i < PV_COUNT; i++)
		v[i] = "x";
	v[PV_CONFIG_DIR] = config_dir;
	v[PV_COUNT] = NULL;
}

/* --- Sections ------------------------------------------------------------------------- */

static int h_match(struct st_yl_ctx *ctx, const struct st_yl_node *node,
		   const struct st_yl_key *key, void *base);
static int h_device_id(struct st_yl_ctx *ctx, const struct st_yl_node *node,
		       const struct st_yl_key *key, void *base);
static int h_key(struct st_yl_ctx *ctx, const struct st_yl_node *node, const struct st_yl_key *key,
		 void *base);
static int h_certificate(struct st_yl_ctx *ctx, const struct st_yl_node *node,
			 const struct st_yl_key *key, void *base);
static int h_sota(struct st_yl_ctx *ctx, const struct st_yl_node *node, const struct st_yl_key *key,
		  void *base);
static int h_groups(struct st_yl_ctx *ctx, const struct st_yl_node *node,
		    const struct st_yl_key *key, void *base);

#define L(field) offsetof(struct loader, field)

static const struct st_yl_key top_keys[] = {
	ST_YL_RANGE("sku", st_yl_h_string, L(sku), ST_YL_REQUIRED | ST_YL_ONELINE | ST_YL_NONEMPTY,
		    0, 64),
	ST_YL_RANGE("description", st_yl_h_string, L(description), 0, 0, 4096),
	ST_YL_KEY("extends", st_yl_h_ignore, 0, 0),
	ST_YL_KEY("match", h_match, 0, 0),
	ST_YL_RANGE("factory", st_yl_h_string, L(factory),
		    ST_YL_REQUIRED | ST_YL_ONELINE | ST_YL_NONEMPTY, 0, ST_POLICY_MAX_FACTORY),
	ST_YL_KEY("production", st_yl_h_bool, L(production), 0),
	ST_YL_KEY("device_id", h_device_id, 0, 0),
	ST_YL_KEY("key", h_key, 0, 0),
	ST_YL_KEY("certificate", h_certificate, 0, 0),
	ST_YL_KEY("sota", h_sota, 0, 0),
	ST_YL_KEY("groups", h_groups, 0, 0),
	ST_YL_CHOICE("authorization", st_yl_h_enum, L(authorization), 0, authorization_modes),
	ST_YL_KEY("files", st_yl_h_node, L(files_node), ST_YL_REQUIRED),
	ST_YL_END,
};

static int h_match(struct st_yl_ctx *ctx, const struct st_yl_node *node,
		   const struct st_yl_key *key, void *base)
{
	struct loader *L = base;
	struct st_profile *p = L->p;
	enum { M_HWIDS, M_SKU, M_N };
	static const struct st_yl_key keys[] = {
		[M_HWIDS] = ST_YL_KEY("hardware_ids", st_yl_h_node, 0, ST_YL_REQUIRED),
		[M_SKU] = ST_YL_NAME("sku", 0),
		[M_N] = ST_YL_END,
	};
	const struct st_yl_node *f[M_N];
	const struct st_yl_node *ids;

	(void)key;
	if (st_yl_expect(ctx, node, ST_YL_MAPPING, "match") != 0)
		return -1;
	{
		const struct st_yl_node *dummy;
		/* Values are taken below; the table only names the keys. */
		st_yl_parse_mapping(ctx, node, keys, &dummy, f);
	}
	if (f[M_SKU]) {
		char *s;
		if (st_yl_string(ctx, f[M_SKU], "sku", ST_YL_ONELINE | ST_YL_NONEMPTY, 64, &s) ==
		    0) {
			free(p->match_sku);
			p->match_sku = s;
		}
	}
	ids = f[M_HWIDS];
	if (!ids)
		return -1;
	if (st_yl_expect(ctx, ids, ST_YL_SEQUENCE, "hardware_ids") != 0)
		return -1;
	if (ids->n == 0) {
		st_yl_error(ctx, ids, "'hardware_ids' is empty; list at least one hardware id");
		return -1;
	}
	if (ids->n > MAX_HWIDS) {
		st_yl_error(ctx, ids, "'hardware_ids' lists %zu hardware ids, at most %d are allowed",
			    ids->n, MAX_HWIDS);
		return -1;
	}
	for (size_t i = 0; p->match_hardware_ids && p->match_hardware_ids[i]; i++)
		free(p->match_hardware_ids[i]);
	free(p->match_hardware_ids);
	p->n_match_hardware_ids = 0;
	p->match_hardware_ids = calloc(ids->n + 1, sizeof(char *));
	if (!p->match_hardware_ids) {
		st_yl_error(ctx, ids, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < ids->n; i++) {
		const struct st_yl_node *it = ids->items[i];
		char *s;
		int dup = 0;

		if (st_yl_string(ctx, it, "hardware_ids", ST_YL_ONELINE | ST_YL_NONEMPTY,
				 MAX_HWID_BYTES, &s) != 0)
			continue;
		for (size_t j = 0; j < p->n_match_hardware_ids; j++) {
			if (strcmp(p->match_hardware_ids[j], s) == 0)
				dup = 1;
		}
		if (dup) {
			st_yl_error(ctx, it, "hardware id '%s' is listed twice", s);
			free(s);
			continue;
		}
		p->match_hardware_ids[p->n_match_hardware_ids++] = s;
	}
	return 0;
}

/* groups: the device groups a registration request may name, as a list of words. */
static int h_groups(struct st_yl_ctx *ctx, const struct st_yl_node *node,
		    const struct st_yl_key *key, void *base)
{
	struct st_profile *p = ((struct loader *)base)->p;

	(void)key;
	if (st_yl_expect(ctx, node, ST_YL_SEQUENCE, "groups") != 0)
		return -1;
	if (node->n > MAX_GROUPS) {
		st_yl_error(ctx, node, "'groups' lists %zu groups, at most %d are allowed", node->n,
			    MAX_GROUPS);
		return -1;
	}
	for (size_t i = 0; p->groups && p->groups[i]; i++)
		free(p->groups[i]);
	free(p->groups);
	p->n_groups = 0;
	p->groups = calloc(node->n + 1, sizeof(char *));
	if (!p->groups) {
		st_yl_error(ctx, node, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < node->n; i++) {
		const struct st_yl_node *it = node->items[i];

		if (st_yl_expect(ctx, it, ST_YL_SCALAR, "groups") != 0)
			continue;
		if (it->len == 0 || it->len > 64) {
			st_yl_error(ctx, it, "a group name has 1 to 64 characters");
			continue;
		}
		if (check_word(ctx, it, "group", "_.-", "letters, digits, '_', '.' and '-'") != 0)
			continue;
		p->groups[p->n_groups] = strdup(it->value);
		if (!p->groups[p->n_groups]) {
			st_yl_error(ctx, it, "out of memory");
			return -1;
		}
		p->n_groups++;
	}
	return 0;
}

static int h_device_id(struct st_yl_ctx *ctx, const struct st_yl_node *node,
		       const struct st_yl_key *key, void *base)
{
	struct loader *L = base;
	struct st_profile *p = L->p;
	enum { D_SOURCE, D_PATTERN, D_PREFIX, D_DIGITS, D_N };
	struct devid_vals v = { ST_DEVID_BOARD, NULL, 6 };
	static const struct st_yl_key keys[] = {
		[D_SOURCE] = ST_YL_CHOICE("source", st_yl_h_enum,
					  offsetof(struct devid_vals, source), 0, devid_sources),
		[D_PATTERN] = ST_YL_NAME("pattern", 0),
		[D_PREFIX] =
			ST_YL_RANGE("prefix", st_yl_h_string, offsetof(struct devid_vals, prefix),
				    ST_YL_ONELINE | ST_YL_NONEMPTY, 0, 32),
		[D_DIGITS] = ST_YL_RANGE("digits", st_yl_h_uint,
					 offsetof(struct devid_vals, digits), 0, 1, 18),
		[D_N] = ST_YL_END,
	};
	const struct st_yl_node *f[D_N];
	unsigned errs;

	(void)key;
	if (st_yl_expect(ctx, node, ST_YL_MAPPING, "device_id") != 0)
		return -1;
	errs = st_yl_parse_mapping(ctx, node, keys, &v, f);
	p->devid_source = (enum st_devid_source)v.source;
	L->devid_source = v.source;
	L->devid_source_node = f[D_SOURCE];
	if (f[D_PATTERN] && v.source != ST_DEVID_BOARD && v.source != ST_DEVID_SECURE_ELEMENT)
		st_yl_error(ctx, f[D_PATTERN],
			    "'pattern' applies only to 'source: board' and 'source: "
			    "secure-element'");
	if (f[D_PREFIX] && v.source != ST_DEVID_SEQUENCE)
		st_yl_error(ctx, f[D_PREFIX], "'prefix' applies only to 'source: sequence'");
	if (f[D_DIGITS] && v.source != ST_DEVID_SEQUENCE)
		st_yl_error(ctx, f[D_DIGITS], "'digits' applies only to 'source: sequence'");
	if (v.source == ST_DEVID_SEQUENCE) {
		if (!f[D_PREFIX] && !errs)
			st_yl_error(
				ctx, node,
				"missing required key 'prefix' in 'device_id' (source: sequence)");
		if (f[D_PREFIX] && v.prefix &&
		    check_word(ctx, f[D_PREFIX], "prefix", "._:-",
			       "letters, digits, '.', '_', ':' and '-'") == 0) {
			free(p->devid_prefix);
			p->devid_prefix = v.prefix;
			v.prefix = NULL;
		}
		p->devid_digits = v.digits;
	}
	free(v.prefix);
	if ((v.source == ST_DEVID_BOARD || v.source == ST_DEVID_SECURE_ELEMENT) && f[D_PATTERN]) {
		const struct st_yl_node *pn = f[D_PATTERN];
		char *pat;
		size_t bad;
		int rc;

		if (st_yl_string(ctx, pn, "pattern", ST_YL_ONELINE | ST_YL_NONEMPTY,
				 MAX_PATTERN_BYTES, &pat) != 0)
			return -1;
		if (pat[0] != '^' || pat[strlen(pat) - 1] != '$') {
			st_yl_error(ctx, pn,
				    "'pattern' must start with '^' and end with '$' so that it "
				    "matches the whole device id");
			free(pat);
			return -1;
		}
		if (regex_cost(pat, &bad) != 0) {
			st_yl_error_in(
				ctx, pn, bad,
				"'pattern' is too complex for a device id (no "
				"backreferences, no quantifier on a quantifier, counts up to "
				"255, or 16 on a group, at most 1024 states)");
			free(pat);
			return -1;
		}
		if (p->has_devid_re) {
			regfree(&p->devid_re);
			p->has_devid_re = 0;
		}
		rc = regcomp(&p->devid_re, pat, REG_EXTENDED | REG_NOSUB);
		if (rc != 0) {
			char msg[128];
			regerror(rc, &p->devid_re, msg, sizeof(msg));
			regfree(&p->devid_re);
			st_yl_error(ctx, pn, "bad pattern '%s': %s", pat, msg);
			free(pat);
			return -1;
		}
		p->has_devid_re = 1;
		free(p->devid_pattern);
		p->devid_pattern = pat;
	}
	return 0;
}

static int h_key(struct st_yl_ctx *ctx, const struct st_yl_node *node, const struct st_yl_key *key,
		 void *base)
{
	struct loader *L = base;
	struct st_profile *p = L->p;
	enum { K_ALGS, K_STORAGE, K_N };
	struct key_vals v = { ST_KEY_STORAGE_ANY };
	static const struct st_yl_key keys[] = {
		[K_ALGS] = ST_YL_NAME("algorithms", 0),
		[K_STORAGE] = ST_YL_CHOICE("storage", st_yl_h_enum,
					   offsetof(struct key_vals, storage), 0, key_storages),
		[K_N] = ST_YL_END,
	};
	const struct st_yl_node *f[K_N];
	const struct st_yl_node *algs;

	(void)key;
	if (st_yl_expect(ctx, node, ST_YL_MAPPING, "key") != 0)
		return -1;
	st_yl_parse_mapping(ctx, node, keys, &v, f);
	p->key_storage = (enum st_key_storage)v.storage;
	L->storage_node = f[K_STORAGE];
	algs = f[K_ALGS];
	if (!algs)
		return 0;
	if (st_yl_expect(ctx, algs, ST_YL_SEQUENCE, "algorithms") != 0)
		return -1;
	if (algs->n == 0) {
		st_yl_error(ctx, algs, "'algorithms' is empty; list at least one, e.g. [ec-p256]");
		return -1;
	}
	p->policy.key_algs = 0;
	for (size_t i = 0; i < algs->n; i++) {
		int a;
		if (st_yl_choose(ctx, algs->items[i], "algorithms", key_algs, &a) != 0)
			continue;
		/* A slot asks its board for the key (CSR alg=) and checks the proof of
		 * possession, and version 1 of the protocol knows ec-p256 only: a profile that
		 * allowed more would promise keys no board is asked for. */
		if (key_alg_bits[a] != ST_KEY_EC_P256) {
			st_yl_error(ctx, algs->items[i],
				    "'%s' is not offered: the board protocol (drivers/PROTOCOL.md, "
				    "version 1) asks boards for ec-p256 keys only",
				    key_algs[a]);
			continue;
		}
		if (p->policy.key_algs & key_alg_bits[a])
			st_yl_error(ctx, algs->items[i], "'%s' is listed twice", key_algs[a]);
		p->policy.key_algs |= key_alg_bits[a];
	}
	if (!p->policy.key_algs)
		p->policy.key_algs = ST_KEY_EC_P256;
	return 0;
}

static int h_certificate(struct st_yl_ctx *ctx, const struct st_yl_node *node,
			 const struct st_yl_key *key, void *base)
{
	struct loader *L = base;
	struct st_policy *pol = &L->p->policy;
	enum { C_VALIDITY, C_SERIAL, C_SERIAL_BITS, C_PAST_CA, C_REPROVISION, C_N };
	struct cert_vals v;
	static const struct st_yl_key keys[] = {
		[C_VALIDITY] = ST_YL_RANGE("validity_days", st_yl_h_uint,
					   offsetof(struct cert_vals, validity), 0, 1, 36500),
		[C_SERIAL] = ST_YL_CHOICE("serial", st_yl_h_enum,
					  offsetof(struct cert_vals, serial), 0, serial_modes),
		[C_SERIAL_BITS] = ST_YL_RANGE("serial_bits", st_yl_h_uint,
					      offsetof(struct cert_vals, bits), 0, 64, 159),
		[C_PAST_CA] = ST_YL_CHOICE("past_ca", st_yl_h_enum,
					   offsetof(struct cert_vals, past_ca), 0, past_ca_modes),
		[C_REPROVISION] =
			ST_YL_CHOICE("reprovision", st_yl_h_enum,
				     offsetof(struct cert_vals, reprovision), 0, reprovision_modes),
		[C_N] = ST_YL_END,
	};
	const struct st_yl_node *f[C_N];

	(void)key;
	v.validity = pol->validity_days;
	v.bits = pol->serial_bits;
	v.serial = pol->serial_mode == ST_SERIAL_UUID;
	v.past_ca = pol->past_ca == ST_PAST_CA_REJECT;
	v.reprovision = pol->reprovision == ST_REPROVISION_REISSUE;
	if (st_yl_expect(ctx, node, ST_YL_MAPPING, "certificate") != 0)
		return -1;
	st_yl_parse_mapping(ctx, node, keys, &v, f);
	pol->validity_days = v.validity;
	pol->serial_bits = v.bits;
	pol->serial_mode = v.serial ? ST_SERIAL_UUID : ST_SERIAL_RANDOM;
	pol->past_ca = v.past_ca ? ST_PAST_CA_REJECT : ST_PAST_CA_CLAMP;
	pol->reprovision = v.reprovision ? ST_REPROVISION_REISSUE : ST_REPROVISION_REFUSE;
	L->serial_node = f[C_SERIAL];
	L->serial_mode = v.serial;
	L->reprovision_node = f[C_REPROVISION];
	if (f[C_SERIAL_BITS] && v.serial)
		st_yl_error(ctx, f[C_SERIAL_BITS],
			    "'serial_bits' applies only to 'serial: random'; a uuid serial is the "
			    "device id's 128 bits");
	return 0;
}

/* sota.overrides: {section: {key: value}} where values are TOML text. */
static void parse_overrides(struct loader *L, const struct st_yl_node *node)
{
	struct st_yl_ctx *ctx = &L->yl;
	struct st_profile *p = L->p;
	const char *samples[] = { "x", "https://x", "https://x", "/x", NULL };

	if (st_yl_expect(ctx, node, ST_YL_MAPPING, "overrides") != 0)
		return;
	for (size_t i = 0; i < node->n; i++) {
		const struct st_yl_node *sk = node->items[2 * i], *sv = node->items[2 * i + 1];

		if (check_word(ctx, sk, "section name", "_.-",
			       "letters, digits, '_', '.' and '-'") != 0)
			continue;
		if (st_yl_expect(ctx, sv, ST_YL_MAPPING, sk->value) != 0)
			continue;
		if (st_sota_override_section(&p->sota_overrides, sk->value) != 0) {
			st_yl_error(ctx, sk, "out of memory");
			continue;
		}
		for (size_t j = 0; j < sv->n; j++) {
			const struct st_yl_node *k = sv->items[2 * j], *v = sv->items[2 * j + 1];
			struct st_tmpl *t = NULL;
			char *val = NULL, *exp = NULL;
			size_t off, elen;
			char terr[256];

			if (check_word(ctx, k, "key", "_-", "letters, digits, '_' and '-'") != 0)
				continue;
			if (st_yl_expect(ctx, v, ST_YL_SCALAR, k->value) != 0)
				continue;
			if (v->len == 0) {
				/* "" or no value: the key is written as not set. */
				if (st_sota_override_set(&p->sota_overrides, sk->value, k->value,
							 ""))
					st_yl_error(ctx, v, "out of memory");
				continue;
			}
			if (st_yl_string(ctx, v, k->value, 0, 4096, &val) != 0)
				continue;
			if (st_tmpl_compile(val, strlen(val), st_sota_vars, &t, &off, terr,
					    sizeof(terr)) != 0) {
				st_yl_error_in(ctx, v, off, "%s", terr);
				free(val);
				continue;
			}
			if (st_tmpl_expand(t, samples, NULL, 65536, &exp, &elen, terr,
					   sizeof(terr)) == 0 &&
			    st_sota_check_value(exp, terr, sizeof(terr)) != 0)
				st_yl_error(ctx, v, "override '%s.%s': %s", sk->value, k->value,
					    terr);
			else if (st_sota_override_set(&p->sota_overrides, sk->value, k->value, val))
				st_yl_error(ctx, v, "out of memory");
			st_tmpl_free(t);
			free(exp);
			free(val);
		}
	}
}

/* A string that goes into sota.toml between quotes. */
static int sota_text(struct st_yl_ctx *ctx, const struct st_yl_node *n, const char *what,
		     char **out)
{
	size_t bad;

	if (st_yl_string(ctx, n, what, ST_YL_ONELINE | ST_YL_NONEMPTY, 1024, out) != 0)
		return -1;
	if (st_sota_check_text(*out, &bad) != 0) {
		st_yl_error_in(ctx, n, bad,
			       "'%s' cannot contain '\"' or '\\': sota.toml quotes it as written",
			       what);
		free(*out);
		*out = NULL;
		return -1;
	}
	return 0;
}

static void set_str(char **dst, char *src)
{
	free(*dst);
	*dst = src;
}

static int h_sota(struct st_yl_ctx *ctx, const struct st_yl_node *node, const struct st_yl_key *key,
		  void *base)
{
	struct loader *L = base;
	struct st_profile *p = L->p;
	enum { S_GATEWAY, S_OSTREE, S_DIR, S_HWID, S_OVERRIDES, S_P11, S_N };
	static const struct st_yl_key keys[] = {
		[S_GATEWAY] = ST_YL_NAME("gateway", ST_YL_REQUIRED),
		[S_OSTREE] = ST_YL_NAME("ostree_server", ST_YL_REQUIRED),
		[S_DIR] = ST_YL_NAME("config_dir", 0),
		[S_HWID] = ST_YL_NAME("hardware_id", 0),
		[S_OVERRIDES] = ST_YL_NAME("overrides", 0),
		[S_P11] = ST_YL_NAME("p11", 0),
		[S_N] = ST_YL_END,
	};
	enum { P_MODULE, P_PASS, P_LABEL, P_PKEY, P_CERT, P_N };
	static const struct st_yl_key p11_keys[] = {
		[P_MODULE] = ST_YL_NAME("module", ST_YL_REQUIRED),
		[P_PASS] = ST_YL_NAME("pass", 0),
		[P_LABEL] = ST_YL_NAME("label", 0),
		[P_PKEY] = ST_YL_NAME("tls_pkey_id", 0),
		[P_CERT] = ST_YL_NAME("tls_clientcert_id", 0),
		[P_N] = ST_YL_END,
	};
	const struct st_yl_node *f[S_N];
	char *s;
	int dummy;

	(void)key;
	if (st_yl_expect(ctx, node, ST_YL_MAPPING, "sota") != 0)
		return -1;
	st_yl_parse_mapping(ctx, node, keys, &dummy, f);
	p->has_sota = 1;
	for (int i = S_GATEWAY; i <= S_OSTREE; i++) {
		const char *what = keys[i].name;

		if (!f[i] || sota_text(ctx, f[i], what, &s) != 0)
			continue;
		if (strncmp(s, "https://", 8) != 0 && strncmp(s, "http://", 7) != 0) {
			st_yl_error(ctx, f[i], "'%s' must be a URL starting with https://", what);
			free(s);
			continue;
		}
		if (s[strlen(s) - 1] == '/') {
			st_yl_error_in(ctx, f[i], strlen(s) - 1,
				       "'%s' must not end with '/': sota.toml appends paths to it",
				       what);
			free(s);
			continue;
		}
		set_str(i == S_GATEWAY ? &p->sota_gateway : &p->sota_ostree_server, s);
	}
	if (f[S_DIR] && sota_text(ctx, f[S_DIR], "config_dir", &s) == 0) {
		const char *why = path_problem(s);

		if (!why && strcmp(s, "/") == 0)
			why = "must not be '/'";
		if (why) {
			st_yl_error(ctx, f[S_DIR], "'config_dir' %s", why);
			free(s);
		} else {
			set_str(&p->sota_config_dir, s);
		}
	}
	if (f[S_HWID] && sota_text(ctx, f[S_HWID], "hardware_id", &s) == 0)
		set_str(&p->sota_hardware_id, s);
	if (f[S_OVERRIDES])
		parse_overrides(L, f[S_OVERRIDES]);
	if (f[S_P11]) {
		const struct st_yl_node *pf[P_N];
		size_t saved;
		char **dst[P_N] = {
			(char **)&p->sota_p11.module,
			(char **)&p->sota_p11.pass,
			(char **)&p->sota_p11.label,
			(char **)&p->sota_p11.tls_pkey_id,
			(char **)&p->sota_p11.tls_clientcert_id,
		};

		if (st_yl_expect(ctx, f[S_P11], ST_YL_MAPPING, "p11") != 0)
			return -1;
		p->has_p11 = 1;
		saved = st_yl_path_push(ctx, "p11");
		st_yl_parse_mapping(ctx, f[S_P11], p11_keys, &dummy, pf);
		st_yl_path_pop(ctx, saved);
		for (int i = 0; i < P_N; i++) {
			if (pf[i] && sota_text(ctx, pf[i], p11_keys[i].name, &s) == 0)
				set_str(dst[i], s);
		}
	}
	return 0;
}

/* --- Files -------------------------------------------------------------------------------- */

static int parse_mode(struct st_yl_ctx *ctx, const struct st_yl_node *n, unsigned *out)
{
	unsigned long v;
	char *end;

	if (st_yl_expect(ctx, n, ST_YL_SCALAR, "mode") != 0)
		return -1;
	/* Read as text: YAML 1.1 would make a plain 0644 the number 420. */
	if (n->len < 3 || n->len > 5 || strspn(n->value, "01234567") != n->len ||
	    (n->len == 5 && n->value[0] != '0'))
		goto bad;
	v = strtoul(n->value, &end, 8);
	if (*end || v > 07777)
		goto bad;
	if (v & 07000) {
		st_yl_error(ctx, n,
			    "mode '%s' sets setuid, setgid or sticky bits; files for a "
			    "board may use only permission bits (at most 0777)",
			    n->value);
		return -1;
	}
	if (v & 02) {
		st_yl_error(ctx, n,
			    "mode '%s' lets every user of the device write the file; boards "
			    "refuse it (at most 0775, e.g. \"0644\")",
			    n->value);
		return -1;
	}
	*out = (unsigned)v;
	return 0;
bad:
	st_yl_error(ctx, n, "mode '%.32s' must be an octal string like \"0644\"", n->value);
	return -1;
}

static int add_file(struct loader *L, const struct st_yl_node *entry,
		    const struct st_yl_node *origin, struct st_tmpl *path, struct st_tmpl *content,
		    unsigned mode, const char *sample_path)
{
	struct st_profile *p = L->p;
	struct st_profile_file *nf;
	struct file_src *ns;
	char where[512];
	int rc = -1;

	nf = realloc(p->files, (p->n_files + 1) * sizeof(*nf));
	if (!nf)
		goto out;
	p->files = nf;
	ns = realloc(L->fsrc, (L->nfsrc + 1) * sizeof(*ns));
	if (!ns)
		goto out;
	L->fsrc = ns;
	snprintf(where, sizeof(where), "%s:%d:%d", entry->doc->name, entry->line, entry->col);
	nf = &p->files[p->n_files];
	ns = &L->fsrc[L->nfsrc];
	nf->where = strdup(where);
	ns->sample_path = strdup(sample_path);
	if (!nf->where || !ns->sample_path) {
		free(nf->where);
		free(ns->sample_path);
		goto out;
	}
	nf->path = path;
	nf->content = content;
	nf->mode = mode;
	ns->entry = entry;
	ns->origin = origin;
	ns->uses = st_tmpl_uses(path) | st_tmpl_uses(content);
	p->n_files++;
	L->nfsrc++;
	path = NULL;
	content = NULL;
	rc = 0;
out:
	if (rc != 0)
		st_yl_error(&L->yl, entry, "out of memory");
	st_tmpl_free(path);
	st_tmpl_free(content);
	return rc;
}

/* Compiles a template held in a scalar, reporting errors at the exact column. */
static struct st_tmpl *compile_scalar(struct st_yl_ctx *ctx, const struct st_yl_node *n,
				      const char *text, size_t len)
{
	struct st_tmpl *t = NULL;
	size_t off;
	char terr[256];

	if (st_tmpl_compile(text, len, st_profile_vars, &t, &off, terr, sizeof(terr)) != 0) {
		st_yl_error_in(ctx, n, off, "%s", terr);
		return NULL;
	}
	return t;
}

static int compare_names(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* For a name rel that is not found beneath dir: the entry of rel's directory nearest to its
 * last component (st_yl_nearest), written as rel would name it, for "did you mean". New
 * string, or NULL when nothing is close or the directory cannot be listed. */
static char *nearest_file(const char *dir, const char *rel)
{
	const char *slash = strrchr(rel, '/');
	const char *base = slash ? slash + 1 : rel;
	char *sub = strndup(rel, slash ? (size_t)(slash - rel) : 0);
	char *where = sub ? st_yl_join(dir, sub) : NULL;
	const char *cands[257];
	char *names[256];
	size_t n = 0;
	const char *best;
	char *out = NULL;
	struct dirent *e;
	DIR *dp = where ? opendir(*where ? where : ".") : NULL;

	while (dp && n < 256 && (e = readdir(dp)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		names[n] = strdup(e->d_name);
		if (names[n])
			cands[n] = names[n], n++;
	}
	cands[n] = NULL;
	/* Sorted, so that of two names equally near the same one is suggested every time. */
	qsort(cands, n, sizeof(cands[0]), compare_names);
	best = st_yl_nearest(base, cands);
	if (best && strcmp(best, base) != 0)
		out = slash ? st_yl_join(sub, best) : strdup(best);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	if (dp)
		closedir(dp);
	free(where);
	free(sub);
	return out;
}

/* Reads the file a profile names (what: "template", "parent profile") relative to the
 * directory of the document that names it, never outside that directory (no absolute
 * path, no "..", no symbolic link followed: st_yl_read_beneath). Problems are reported at
 * the naming scalar n, at the component at fault when the name leaves the directory.
 * Returns 0 and a new *text (free()) with *path the file's name for messages (free()). */
static int read_named(struct st_yl_ctx *ctx, const struct st_yl_node *n, const char *what,
		      const char *rel, size_t max, char **text, size_t *len, char **path)
{
	const char *dir = n->doc->dir;
	char rerr[MAX_PATH_BYTES + 256];
	size_t bad;
	int rc;

	*text = NULL;
	*path = st_yl_join(dir, rel);
	if (!*path) {
		st_yl_error(ctx, n, "out of memory");
		return -1;
	}
	rc = st_yl_read_beneath(dir, rel, max, text, len, &bad, rerr, sizeof(rerr));
	if (rc == 0)
		return 0;
	if (rc == ST_E_INVAL)
		st_yl_error_in(ctx, n, bad,
			       "cannot read %s '%s': %s; a profile reads only files inside its "
			       "own directory (%s), named relative to it, without '.' or '..' "
			       "and not through symbolic links",
			       what, rel, rerr, dir);
	else {
		char *near = rc == ST_E_NOTFOUND ? nearest_file(dir, rel) : NULL;
		char hint[MAX_PATH_BYTES + 32] = "";

		if (near)
			snprintf(hint, sizeof(hint), " (did you mean '%s'?)", near);
		if (strcmp(rel, *path) == 0)
			st_yl_error(ctx, n, "cannot read %s '%s': %s%s", what, rel, rerr, hint);
		else
			st_yl_error(ctx, n, "cannot read %s '%s' (%s): %s%s", what, rel, *path,
				    rerr, hint);
		free(near);
	}
	free(*path);
	*path = NULL;
	return -1;
}

/* Reads and compiles a template file next to the profile; its errors point into it. */
static struct st_tmpl *compile_file(struct st_yl_ctx *ctx, const struct st_yl_node *n)
{
	struct st_tmpl *t = NULL;
	char *rel = NULL, *path = NULL, *text = NULL;
	size_t len, off;
	char terr[256];

	if (st_yl_string(ctx, n, "template", ST_YL_ONELINE | ST_YL_NONEMPTY, MAX_PATH_BYTES,
			 &rel) != 0)
		return NULL;
	if (read_named(ctx, n, "template", rel, ST_PROFILE_MAX_FILE_BYTES, &text, &len, &path))
		goto out;
	if (memchr(text, '\0', len)) {
		st_yl_error(ctx, n, "template '%s' contains a NUL byte; templates are text", rel);
		goto out;
	}
	if (st_tmpl_compile(text, len, st_profile_vars, &t, &off, terr, sizeof(terr)) != 0) {
		int line, col;

		st_yl_position(text, len, off, &line, &col);
		st_yl_error_at(ctx, path, line, col, "%s", terr);
		t = NULL;
	}
out:
	free(rel);
	free(path);
	free(text);
	return t;
}

/* The board protocol's path rule applied when the profile loads, so that a path no board
 * can be sent fails here rather than after a certificate was issued for the board. path is
 * the entry's path expanded with sample values; when it has no variables, the error points
 * at the offending character. */
static int wire_path_check(struct st_yl_ctx *ctx, const struct st_yl_node *pn, const char *dir,
			   const char *path)
{
	const char *rel = st_profile_wire_path(dir, path);
	const char *why;
	size_t bad;

	why = drv_proto_path_problem(rel, &bad);
	if (!why)
		return 0;
	if (pn->len == strlen(path) && memcmp(pn->value, path, pn->len) == 0)
		st_yl_error_in(ctx, pn, (size_t)(rel - path) + bad,
			       "path '%s' cannot be written over the board protocol: '%s' %s", path,
			       rel, why);
	else
		st_yl_error(ctx, pn, "path '%s' cannot be written over the board protocol: '%s' %s",
			    path, rel, why);
	return -1;
}

static void parse_file_entry(struct loader *L, const struct st_yl_node *e)
{
	struct st_yl_ctx *ctx = &L->yl;
	enum { F_PATH, F_MODE, F_CONTENT, F_TEMPLATE, F_SET, F_N };
	static const struct st_yl_key keys[] = {
		[F_PATH] = ST_YL_NAME("path", 0),	[F_MODE] = ST_YL_NAME("mode", 0),
		[F_CONTENT] = ST_YL_NAME("content", 0), [F_TEMPLATE] = ST_YL_NAME("template", 0),
		[F_SET] = ST_YL_NAME("set", 0),		[F_N] = ST_YL_END,
	};
	const struct st_yl_node *f[F_N];
	const char *samples[PV_COUNT + 1];
	const char *cdir = L->p->sota_config_dir ? L->p->sota_config_dir : ST_SOTA_DEFAULT_DIR;
	unsigned mode = 0644;
	int dummy, kinds;
	unsigned before = ctx->errors;

	if (st_yl_expect(ctx, e, ST_YL_MAPPING, "files") != 0)
		return;
	st_yl_parse_mapping(ctx, e, keys, &dummy, f);
	sample_values(samples, cdir);
	kinds = !!f[F_CONTENT] + !!f[F_TEMPLATE] + !!f[F_SET];
	if (kinds == 0) {
		st_yl_error(ctx, e, "file entry needs one of 'content', 'template' or 'set'");
		return;
	}
	if (kinds > 1) {
		const struct st_yl_node *second = f[F_SET] ? f[F_SET] : f[F_TEMPLATE];
		st_yl_error(ctx, second,
			    "'content', 'template' and 'set' exclude each other; give one");
		return;
	}
	if (f[F_MODE] && parse_mode(ctx, f[F_MODE], &mode) != 0)
		return;
	if (f[F_SET]) {
		int set;

		if (f[F_PATH]) {
			st_yl_error(ctx, f[F_PATH],
				    "'path' does not apply to a 'set' (it writes "
				    "several files under sota.config_dir)");
			return;
		}
		if (st_yl_choose(ctx, f[F_SET], "set", file_sets, &set) != 0)
			return;
		for (size_t i = 0; i < sizeof(foundries_set) / sizeof(foundries_set[0]); i++) {
			struct st_tmpl *pt = NULL, *ct = NULL;
			size_t off;
			char terr[128], *sp = NULL, sample[256];
			size_t splen;

			if (st_tmpl_compile(foundries_set[i].path, strlen(foundries_set[i].path),
					    st_profile_vars, &pt, &off, terr, sizeof(terr)) ||
			    st_tmpl_compile(foundries_set[i].content,
					    strlen(foundries_set[i].content), st_profile_vars, &ct,
					    &off, terr, sizeof(terr)) ||
			    st_tmpl_expand(pt, samples, NULL, sizeof(sample), &sp, &splen, terr,
					   sizeof(terr))) {
				st_yl_error(ctx, f[F_SET], "internal error: %s", terr);
				st_tmpl_free(pt);
				st_tmpl_free(ct);
				return;
			}
			add_file(L, e, f[F_SET], pt, ct, mode, sp);
			free(sp);
		}
		return;
	}
	if (!f[F_PATH]) {
		st_yl_error(ctx, e, "missing required key 'path' in the file entry");
		return;
	}
	{
		const struct st_yl_node *pn = f[F_PATH];
		struct st_tmpl *pt = NULL, *ct = NULL;
		char *ps = NULL, *sp = NULL;
		size_t splen;
		char terr[128];
		const char *why;

		if (st_yl_string(ctx, pn, "path", ST_YL_ONELINE | ST_YL_NONEMPTY, MAX_PATH_BYTES,
				 &ps) != 0)
			return;
		pt = compile_scalar(ctx, pn, ps, strlen(ps));
		free(ps);
		if (!pt)
			return;
		if (st_tmpl_uses(pt) & ~PATH_VARS) {
			st_yl_error(ctx, pn,
				    "a path may use only {device_id}, {hardware_id}, {sku}, "
				    "{factory} and {config_dir}");
			st_tmpl_free(pt);
			return;
		}
		if (st_tmpl_expand(pt, samples, NULL, MAX_PATH_BYTES * 4, &sp, &splen, terr,
				   sizeof(terr)) != 0) {
			st_yl_error(ctx, pn, "path: %s", terr);
			st_tmpl_free(pt);
			return;
		}
		why = path_problem(sp);
		if (why) {
			st_yl_error(ctx, pn, "path '%s' %s", sp, why);
			st_tmpl_free(pt);
			free(sp);
			return;
		}
		if (wire_path_check(ctx, pn, cdir, sp) != 0) {
			st_tmpl_free(pt);
			free(sp);
			return;
		}
		if (f[F_CONTENT]) {
			char *text;

			if (st_yl_string(ctx, f[F_CONTENT], "content", 0, ST_PROFILE_MAX_FILE_BYTES,
					 &text) == 0) {
				ct = compile_scalar(ctx, f[F_CONTENT], text, strlen(text));
				free(text);
			}
		} else {
			ct = compile_file(ctx, f[F_TEMPLATE]);
		}
		if (!ct || ctx->errors != before) {
			st_tmpl_free(pt);
			st_tmpl_free(ct);
			free(sp);
			return;
		}
		add_file(L, e, f[F_CONTENT] ? f[F_CONTENT] : f[F_TEMPLATE], pt, ct, mode, sp);
		free(sp);
	}
}

static void parse_files(struct loader *L, const struct st_yl_node *node)
{
	struct st_yl_ctx *ctx = &L->yl;

	strcpy(ctx->path, "files");
	if (st_yl_expect(ctx, node, ST_YL_SEQUENCE, "files") != 0)
		goto out;
	if (node->n == 0) {
		st_yl_error(ctx, node, "'files' is empty; list at least one file");
		goto out;
	}
	for (size_t i = 0; i < node->n; i++) {
		parse_file_entry(L, node->items[i]);
		if (L->p->n_files > ST_PROFILE_MAX_FILES) {
			st_yl_error(ctx, node->items[i],
				    "too many files: this entry makes %zu, at most %d are allowed",
				    L->p->n_files, ST_PROFILE_MAX_FILES);
			break;
		}
	}
out:
	ctx->path[0] = '\0';
}

/* A device id from the secure element is only as good as the board's report of one; and
 * `reprovision: reissue` hands a new certificate for a recorded device id only to a request
 * that authenticated the id (pool.h): on the serial line that is a board whose id comes from
 * its secure element, over HTTP a request with a token or the device's own certificate, and
 * HTTP serves no secure-element profile. Reissue that no request can ever use is an error;
 * reissue that only HTTP can use is worth a warning. */
static void check_reissue(struct loader *L, const struct st_yl_node *root)
{
	struct st_yl_ctx *ctx = &L->yl;
	struct st_profile *p = L->p;
	const struct st_yl_node *at;

	if (p->devid_source == ST_DEVID_SECURE_ELEMENT &&
	    p->key_storage != ST_KEY_STORAGE_SECURE_ELEMENT) {
		at = L->storage_node ? L->storage_node :
		     L->devid_source_node ? L->devid_source_node : root;
		st_yl_error(ctx, at,
			    "'device_id.source: secure-element' needs 'key.storage: "
			    "secure-element': only a board that reports its secure element can "
			    "vouch for an id read from it");
	}
	if (p->policy.reprovision != ST_REPROVISION_REISSUE ||
	    p->devid_source == ST_DEVID_SECURE_ELEMENT)
		return;
	at = L->reprovision_node ? L->reprovision_node : root;
	if (p->key_storage == ST_KEY_STORAGE_SECURE_ELEMENT)
		st_yl_error(ctx, at,
			    "'reprovision: reissue' can never apply: a board names its own device "
			    "id (device_id.source: %s) and HTTP serves no secure-element profile; "
			    "set 'device_id.source: secure-element' when the id is read from the "
			    "board's secure element, or 'reprovision: refuse'",
			    devid_sources[p->devid_source]);
	else
		st_yl_warning(ctx, at,
			      "'reprovision: reissue' applies only to HTTP registrations with a "
			      "token or the device's own client certificate: a serial board names "
			      "its own device id (device_id.source: %s), so one naming an id "
			      "recorded with another key is refused; 'device_id.source: "
			      "secure-element' lets boards whose id is in their secure element "
			      "reissue",
			      devid_sources[p->devid_source]);
}

/* Checks that need the whole profile: paths unique, sota-dependent variables, reissue. */
static void cross_checks(struct loader *L, const struct st_yl_node *root)
{
	struct st_yl_ctx *ctx = &L->yl;
	struct st_profile *p = L->p;

	const struct st_yl_node *reported = NULL;

	for (size_t i = 0; i < L->nfsrc; i++) {
		struct file_src *fi = &L->fsrc[i];

		for (size_t j = 0; j < i && fi->entry != reported; j++) {
			struct file_src *fj = &L->fsrc[j];
			if (strcmp(fi->sample_path, fj->sample_path) == 0) {
				reported = fi->entry;
				st_yl_error(ctx, fi->entry,
					    "file '%s' is already written by the entry at %d:%d",
					    fi->sample_path, fj->entry->line, fj->entry->col);
				break;
			}
		}
		if (!p->has_sota && (fi->uses & SOTA_VARS))
			st_yl_error(ctx, fi->origin,
				    "%s needs a 'sota' section (gateway, ostree_server)",
				    fi->uses & BIT(PV_SOTA)	 ? "sota.toml"
				    : fi->uses & BIT(PV_GATEWAY) ? "'{gateway}'"
								 : "'{ostree_server}'");
	}
	if (L->serial_mode && L->devid_source == ST_DEVID_SEQUENCE && L->serial_node)
		st_yl_error(ctx, L->serial_node,
			    "'serial: uuid' needs UUID device ids, but device_id.source is "
			    "sequence");
	check_reissue(L, root);
}

/* --- Loading ------------------------------------------------------------------------------ */

static void profile_free(struct st_profile *p)
{
	if (!p)
		return;
	free(p->path);
	free(p->sku);
	free(p->description);
	for (size_t i = 0; p->match_hardware_ids && p->match_hardware_ids[i]; i++)
		free(p->match_hardware_ids[i]);
	free(p->match_hardware_ids);
	free(p->match_sku);
	for (size_t i = 0; p->groups && p->groups[i]; i++)
		free(p->groups[i]);
	free(p->groups);
	free(p->devid_pattern);
	free(p->devid_prefix);
	free(p->sota_gateway);
	free(p->sota_ostree_server);
	free(p->sota_config_dir);
	free(p->sota_hardware_id);
	st_sota_overrides_clear(&p->sota_overrides);
	free((char *)p->sota_p11.module);
	free((char *)p->sota_p11.pass);
	free((char *)p->sota_p11.label);
	free((char *)p->sota_p11.tls_pkey_id);
	free((char *)p->sota_p11.tls_clientcert_id);
	for (size_t i = 0; i < p->n_files; i++) {
		st_tmpl_free((struct st_tmpl *)p->files[i].path);
		st_tmpl_free((struct st_tmpl *)p->files[i].content);
		free(p->files[i].where);
	}
	free(p->files);
	if (p->has_devid_re)
		regfree(&p->devid_re);
	free(p);
}

void st_profile_free(const struct st_profile *p)
{
	profile_free((struct st_profile *)p);
}

/* Identity of a document for cycle detection: its canonical path when it is a file. */
static char *identity(const char *path)
{
	char *r = realpath(path, NULL);

	return r ? r : strdup(path);
}

/* Loads doc's parents (extends) and returns the merged root, or NULL after reporting. */
static const struct st_yl_node *resolve(struct loader *L, struct st_yl_doc *doc, char **chain,
					size_t depth)
{
	struct st_yl_ctx *ctx = &L->yl;
	const struct st_yl_node *root = doc->root, *ext = NULL, *parent_root;
	struct st_yl_doc *parent = NULL;
	char *ppath = NULL, *id = NULL, *rel = NULL, *text = NULL;
	size_t len;

	if (!root)
		return NULL;
	if (root->type != ST_YL_MAPPING) {
		st_yl_error(ctx, root,
			    "a profile is a mapping of keys (sku: ..., files: ...), not %s",
			    st_yl_describe(root));
		return NULL;
	}
	for (size_t i = 0; i < root->n; i++) {
		const struct st_yl_node *k = root->items[2 * i];
		if (strcmp(k->value, "extends") == 0)
			ext = root->items[2 * i + 1];
	}
	if (!ext)
		return root;
	if (st_yl_string(ctx, ext, "extends", ST_YL_ONELINE | ST_YL_NONEMPTY, MAX_PATH_BYTES,
			 &rel) != 0)
		return NULL;
	if (depth + 1 >= ST_PROFILE_MAX_EXTENDS) {
		st_yl_error(ctx, ext, "'extends' chain is longer than %d profiles",
			    ST_PROFILE_MAX_EXTENDS);
		goto fail;
	}
	if (read_named(ctx, ext, "parent profile", rel, ST_YL_MAX_FILE_BYTES, &text, &len,
		       &ppath) != 0)
		goto fail;
	id = identity(ppath);
	if (!id)
		goto fail;
	for (size_t i = 0; i <= depth; i++) {
		if (strcmp(chain[i], id) == 0) {
			char msg[1024];
			size_t used = 0;

			for (size_t j = i; j <= depth && used < sizeof(msg); j++) {
				int w = snprintf(msg + used, sizeof(msg) - used, "%s -> ",
						 L->chain_names[j]);
				if (w < 0)
					break;
				used += (size_t)w;
			}
			st_yl_error(ctx, ext, "'extends' cycle: %s%s", msg, ppath);
			goto fail;
		}
	}
	{
		unsigned before = ctx->errors;
		int rc = st_yl_load_buffer(ctx, ppath, NULL, text, len, &parent);

		if (rc != 0) {
			/* Syntax errors were reported inside the parent. */
			if (ctx->errors == before)
				st_yl_error(ctx, ext, "cannot load parent profile '%s': %s", ppath,
					    st_strerror(rc));
			goto fail;
		}
	}
	if (!parent->root) {
		st_yl_error(ctx, ext, "parent profile '%s' is empty", ppath);
		goto fail;
	}
	chain[depth + 1] = id;
	L->chain_names[depth + 1] = ppath;
	parent_root = resolve(L, parent, chain, depth + 1);
	chain[depth + 1] = NULL;
	L->chain_names[depth + 1] = NULL;
	free(id);
	free(ppath);
	free(rel);
	free(text);
	if (!parent_root)
		return NULL;
	return st_yl_merge(ctx, parent_root, root);
fail:
	free(id);
	free(ppath);
	free(rel);
	free(text);
	return NULL;
}

static int finish(struct loader *L, const struct st_yl_node *root)
{
	struct st_yl_ctx *ctx = &L->yl;
	struct st_profile *p = L->p;

	st_policy_default(&p->policy);
	p->devid_source = ST_DEVID_BOARD;
	p->key_storage = ST_KEY_STORAGE_ANY;
	st_yl_parse_mapping(ctx, root, top_keys, L, NULL);
	if (L->files_node)
		parse_files(L, L->files_node);
	if (L->sku) {
		const struct st_yl_node *n = NULL;
		for (size_t i = 0; i < root->n; i++) {
			if (strcmp(root->items[2 * i]->value, "sku") == 0)
				n = root->items[2 * i + 1];
		}
		if (n)
			check_word(ctx, n, "sku", "._-", "letters, digits, '.', '_' and '-'");
		p->sku = L->sku;
		L->sku = NULL;
	}
	p->description = L->description;
	L->description = NULL;
	if (L->factory) {
		/* st_yl_string bounded it to ST_POLICY_MAX_FACTORY bytes. */
		memcpy(p->policy.factory, L->factory, strlen(L->factory) + 1);
	}
	p->policy.production = L->production;
	p->policy.authorization_required = L->authorization == 1;
	if (p->has_sota && !p->sota_config_dir) {
		p->sota_config_dir = strdup(ST_SOTA_DEFAULT_DIR);
		if (!p->sota_config_dir)
			st_yl_error(ctx, root, "out of memory");
	}
	if ((p->devid_source == ST_DEVID_BOARD || p->devid_source == ST_DEVID_SECURE_ELEMENT) &&
	    !p->has_devid_re) {
		free(p->devid_pattern);
		p->devid_pattern = strdup(ST_PROFILE_UUID_PATTERN);
		if (!p->devid_pattern ||
		    regcomp(&p->devid_re, p->devid_pattern, REG_EXTENDED | REG_NOSUB) != 0)
			st_yl_error(ctx, root, "cannot compile the default device id pattern");
		else
			p->has_devid_re = 1;
	}
	cross_checks(L, root);
	return 0;
}

static int load(const char *name, const void *buf, size_t len, int from_buffer, FILE *diag,
		const struct st_profile **out, char *err, size_t errlen)
{
	struct loader L = { 0 };
	struct st_yl_doc *doc = NULL;
	char *chain[ST_PROFILE_MAX_EXTENDS + 1] = { 0 };
	const struct st_yl_node *root;
	char rerr[256];
	int rc;

	*out = NULL;
	st_yl_init(&L.yl, diag);
	L.p = calloc(1, sizeof(*L.p));
	if (!L.p || !(L.p->path = strdup(name))) {
		rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory");
		goto out;
	}
	if (from_buffer) {
		rc = st_yl_load_buffer(&L.yl, name, NULL, buf, len, &doc);
		if (rc == ST_E_NOMEM) {
			rc = st_errf(err, errlen, rc, "out of memory");
			goto out;
		}
	} else {
		rc = st_yl_load_file(&L.yl, name, &doc, rerr, sizeof(rerr));
		if (rc != 0 && !doc && L.yl.errors == 0) {
			st_yl_error_at(&L.yl, name, 1, 1, "cannot read profile: %s", rerr);
		}
	}
	if (doc && !doc->root && L.yl.errors == 0)
		st_yl_error_at(&L.yl, name, 1, 1,
			       "empty document; a profile is a mapping with at least 'sku', "
			       "'factory' and 'files'");
	if (doc && doc->root && L.yl.errors == 0) {
		chain[0] = identity(name);
		L.chain_names[0] = name;
		if (!chain[0]) {
			rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory");
			goto out;
		}
		root = resolve(&L, doc, chain, 0);
		if (root)
			finish(&L, root);
		else if (L.yl.errors == 0)
			st_yl_error_at(&L.yl, name, 1, 1, "cannot load the profile");
	}
	if (L.yl.errors) {
		rc = st_yl_summary(&L.yl, name, ST_E_PROFILE, err, errlen);
		goto out;
	}
	*out = L.p;
	L.p = NULL;
	rc = 0;
out:
	profile_free(L.p);
	for (size_t i = 0; i < L.nfsrc; i++)
		free(L.fsrc[i].sample_path);
	free(L.fsrc);
	free(L.sku);
	free(L.description);
	free(L.factory);
	free(chain[0]);
	st_yl_cleanup(&L.yl);
	return rc;
}

int st_profile_load(const char *path, FILE *diag, const struct st_profile **out, char *err,
		    size_t errlen)
{
	return load(path, NULL, 0, 0, diag, out, err, errlen);
}

int st_profile_load_buffer(const char *name, const void *buf, size_t len, FILE *diag,
			   const struct st_profile **out, char *err, size_t errlen)
{
	return load(name, buf, len, 1, diag, out, err, errlen);
}

/* --- Using a profile ------------------------------------------------------------------- */

int st_profile_matches(const struct st_profile *p, const char *hardware_id, const char *sku)
{
	if (p->match_sku && (!sku || strcmp(sku, p->match_sku) != 0))
		return 0;
	for (size_t i = 0; i < p->n_match_hardware_ids; i++) {
		if (hardware_id && strcmp(p->match_hardware_ids[i], hardware_id) == 0)
			return 1;
	}
	return 0;
}

int st_profile_check_device_id(const struct st_profile *p, const char *id, char *err, size_t errlen)
{
	size_t len;

	if (!id || !id[0])
		return st_errf(err, errlen, ST_E_PROFILE_DEVICE_ID, "device id is empty");
	len = strlen(id);
	if (len > ST_PROFILE_MAX_ID)
		return st_errf(err, errlen, ST_E_PROFILE_DEVICE_ID,
			       "device id is %zu bytes long, at most %d are allowed", len,
			       ST_PROFILE_MAX_ID);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)id[i];
		if (c < 0x20 || c == 0x7f)
			return st_errf(err, errlen, ST_E_PROFILE_DEVICE_ID,
				       "device id contains control character 0x%02x", c);
	}
	switch (p->devid_source) {
	case ST_DEVID_BOARD:
	case ST_DEVID_SECURE_ELEMENT:
		if (!p->has_devid_re || regexec(&p->devid_re, id, 0, NULL, 0) != 0)
			return st_errf(err, errlen, ST_E_PROFILE_DEVICE_ID,
				       "device id '%s' does not match profile %s's pattern %s", id,
				       p->sku, p->devid_pattern);
		return 0;
	case ST_DEVID_UUID4:
		if (!st_uuid_text(id, 0))
			return st_errf(err, errlen, ST_E_PROFILE_DEVICE_ID,
				       "device id '%s' is not a lower-case UUID", id);
		return 0;
	case ST_DEVID_SEQUENCE: {
		size_t pl = strlen(p->devid_prefix);

		if (strncmp(id, p->devid_prefix, pl) != 0 || len != pl + p->devid_digits ||
		    strspn(id + pl, "0123456789") != p->devid_digits)
			return st_errf(err, errlen, ST_E_PROFILE_DEVICE_ID,
				       "device id '%s' is not '%s' followed by %u digits", id,
				       p->devid_prefix, p->devid_digits);
		return 0;
	}
	}
	return st_errf(err, errlen, ST_E_PROFILE_DEVICE_ID, "profile has no device id source");
}

int st_profile_sequence_id(const struct st_profile *p, unsigned long long n, char *buf, size_t len)
{
	unsigned long long limit = 1;
	int w;

	if (p->devid_source != ST_DEVID_SEQUENCE)
		return ST_E_INVAL;
	for (unsigned i = 0; i < p->devid_digits; i++)
		limit *= 10;
	if (n >= limit)
		return ST_E_INVAL;
	w = snprintf(buf, len, "%s%0*llu", p->devid_prefix, (int)p->devid_digits, n);
	if (w < 0 || (size_t)w >= len)
		return ST_E_INVAL;
	return 0;
}

void st_render_free(struct st_render *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++) {
		free(r->files[i].path);
		free(r->files[i].data);
	}
	free(r->files);
	free(r);
}

/* A PEM input with a final newline, so that concatenations stay well-formed. */
static int pem_value(const char *in, char **own, const char **val)
{
	size_t len;

	*own = NULL;
	*val = in ? in : "";
	len = strlen(*val);
	if (len == 0 || (*val)[len - 1] == '\n')
		return 0;
	*own = malloc(len + 2);
	if (!*own)
		return -1;
	memcpy(*own, in, len);
	(*own)[len] = '\n';
	(*own)[len + 1] = '\0';
	*val = *own;
	return 0;
}

int st_profile_file_uses_cert(const struct st_profile *p, size_t i)
{
	return i < p->n_files &&
	       ((st_tmpl_uses(p->files[i].path) | st_tmpl_uses(p->files[i].content)) & BIT(PV_CERT));
}

int st_profile_file_is_public(const struct st_profile *p, size_t i)
{
	return i < p->n_files && st_tmpl_literal_len(p->files[i].content) == 0 &&
	       (st_tmpl_uses(p->files[i].content) & ~(BIT(PV_CHAIN) | BIT(PV_ROOT))) == 0;
}

/* Whether in asks for file i of p to be left out (st_render_input.cert_files). */
static int left_out(const struct st_profile *p, const struct st_render_input *in, size_t i)
{
	return in->cert_files && st_profile_file_uses_cert(p, i) != (in->cert_files > 0);
}

int st_profile_render(const struct st_profile *p, const struct st_render_input *in,
		      struct st_render **out, char *err, size_t errlen)
{
	struct st_render *r = NULL;
	const char *vals[PV_COUNT + 1] = { 0 };
	char *own[3] = { 0 };
	char *sota = NULL;
	size_t sota_len = 0, total = 0;
	const char *dir;
	uint64_t uses = 0;
	int rc;

	*out = NULL;
	rc = st_profile_check_device_id(p, in->device_id, err, errlen);
	if (rc != 0)
		return rc;
	if (!in->hardware_id || !in->hardware_id[0] || strlen(in->hardware_id) > MAX_HWID_BYTES)
		return st_errf(err, errlen, ST_E_PROFILE_VALUE, "hardware id must be 1 to %d bytes",
			       MAX_HWID_BYTES);
	for (const char *c = in->hardware_id; *c; c++) {
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			return st_errf(err, errlen, ST_E_PROFILE_VALUE,
				       "hardware id contains a control character");
	}
	dir = in->config_dir ? in->config_dir : p->sota_config_dir;
	if (!dir)
		dir = ST_SOTA_DEFAULT_DIR;
	if (path_problem(dir) || strcmp(dir, "/") == 0)
		return st_errf(err, errlen, ST_E_PROFILE_VALUE, "config dir '%.128s' %s", dir,
			       path_problem(dir) ? path_problem(dir) : "must not be '/'");
	r = calloc(1, sizeof(*r));
	if (!r || (p->n_files && !(r->files = calloc(p->n_files, sizeof(*r->files))))) {
		rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory");
		goto out;
	}
	if (pem_value(in->cert_pem, &own[0], &vals[PV_CERT]) ||
	    pem_value(in->chain_pem, &own[1], &vals[PV_CHAIN]) ||
	    pem_value(in->root_pem, &own[2], &vals[PV_ROOT])) {
		rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory");
		goto out;
	}
	vals[PV_DEVICE_ID] = in->device_id;
	vals[PV_HARDWARE_ID] = in->hardware_id;
	vals[PV_SKU] = p->sku;
	vals[PV_FACTORY] = p->policy.factory;
	vals[PV_GATEWAY] = p->sota_gateway ? p->sota_gateway : "";
	vals[PV_OSTREE] = p->sota_ostree_server ? p->sota_ostree_server : "";
	vals[PV_CONFIG_DIR] = dir;
	for (size_t i = 0; i < p->n_files; i++) {
		if (!left_out(p, in, i))
			uses |= st_tmpl_uses(p->files[i].path) | st_tmpl_uses(p->files[i].content);
	}
	if (uses & BIT(PV_SOTA)) {
		struct st_sota_params sp = {
			.gateway = p->sota_gateway,
			.ostree_server = p->sota_ostree_server,
			.hardware_id = p->sota_hardware_id ? p->sota_hardware_id : in->hardware_id,
			.config_dir = dir,
			.p11 = p->has_p11 ? &p->sota_p11 : NULL,
		};
		const struct st_sota_overrides *layers[2] = { &p->sota_overrides, in->overrides };

		if (!p->has_sota) {
			rc = st_errf(err, errlen, ST_E_PROFILE, "profile %s has no sota section",
				     p->sku);
			goto out;
		}
		rc = st_sota_render_cached(in->sota_cache, &sp, layers, in->overrides ? 2 : 1,
					   &sota, &sota_len, err, errlen);
		if (rc != 0)
			goto out;
	}
	vals[PV_SOTA] = sota ? sota : "";
	for (size_t i = 0; i < p->n_files; i++) {
		const struct st_profile_file *f = &p->files[i];
		struct st_render_file *rf = &r->files[r->n];
		char *path = NULL, *data = NULL;
		size_t plen, dlen;
		const char *why;
		char terr[128];

		if (left_out(p, in, i)) {
			r->n++; /* its place kept, empty */
			continue;
		}

		rc = st_tmpl_expand(f->path, vals, NULL, MAX_PATH_BYTES, &path, &plen, terr,
				    sizeof(terr));
		if (rc != 0) {
			rc = st_errf(err, errlen, rc, "file of %s: path: %s", f->where, terr);
			goto out;
		}
		why = path_problem(path);
		if (why) {
			rc = st_errf(err, errlen, ST_E_PROFILE_VALUE,
				     "file of %s: path '%.256s' %s", f->where, path, why);
			free(path);
			goto out;
		}
		for (size_t j = 0; j < r->n; j++) {
			if (r->files[j].path && strcmp(r->files[j].path, path) == 0) {
				rc = st_errf(err, errlen, ST_E_PROFILE_VALUE,
					     "file of %s: path '%.256s' is written twice", f->where,
					     path);
				free(path);
				goto out;
			}
		}
		rc = st_tmpl_expand(f->content, vals, NULL, ST_PROFILE_MAX_FILE_BYTES, &data, &dlen,
				    terr, sizeof(terr));
		if (rc != 0) {
			rc = st_errf(err, errlen, rc, "%s: %s", path, terr);
			free(path);
			goto out;
		}
		if (dlen > ST_PROFILE_MAX_TOTAL_BYTES - total) {
			rc = st_errf(err, errlen, ST_E_RENDER_LIMIT,
				     "%s: the files of one board exceed %d bytes in total", path,
				     ST_PROFILE_MAX_TOTAL_BYTES);
			free(path);
			free(data);
			goto out;
		}
		total += dlen;
		rf->path = path;
		rf->data = (unsigned char *)data;
		rf->len = dlen;
		rf->mode = f->mode;
		r->n++;
	}
	*out = r;
	r = NULL;
	rc = 0;
out:
	st_render_free(r);
	free(sota);
	for (int i = 0; i < 3; i++)
		free(own[i]);
	return rc;
}

/* --- Sets of profiles ------------------------------------------------------------------ */

struct st_profile_set {
	const struct st_profile **p;
	size_t n;
};

void st_profile_set_free(struct st_profile_set *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++)
		st_profile_free(s->p[i]);
	free(s->p);
	free(s);
}

static int yaml_name(const struct dirent *e)
{
	size_t l = strlen(e->d_name);

	return e->d_name[0] != '.' && l > 5 && strcmp(e->d_name + l - 5, ".yaml") == 0;
}

/* Two profiles a board could not choose between: a shared hardware id and the same
 * match.sku (or none on both). */
static const char *clash(const struct st_profile *a, const struct st_profile *b)
{
	if ((a->match_sku == NULL) != (b->match_sku == NULL))
		return NULL;
	if (a->match_sku && strcmp(a->match_sku, b->match_sku) != 0)
		return NULL;
	for (size_t i = 0; i < a->n_match_hardware_ids; i++) {
		for (size_t j = 0; j < b->n_match_hardware_ids; j++) {
			if (strcmp(a->match_hardware_ids[i], b->match_hardware_ids[j]) == 0)
				return a->match_hardware_ids[i];
		}
	}
	return NULL;
}

static void set_error(FILE *diag, unsigned *errors, const char *file, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void set_error(FILE *diag, unsigned *errors, const char *file, const char *fmt, ...)
{
	va_list ap;

	(*errors)++;
	if (!diag)
		return;
	fprintf(diag, "%s:1:1: ", file);
	va_start(ap, fmt);
	vfprintf(diag, fmt, ap);
	va_end(ap);
	fputc('\n', diag);
}

int st_profile_set_load(const char *dir, FILE *diag, struct st_profile_set **out, char *err,
			size_t errlen)
{
	struct st_profile_set *s = NULL;
	struct dirent **list = NULL;
	unsigned errors = 0;
	int n, rc;

	*out = NULL;
	n = scandir(dir, &list, yaml_name, alphasort);
	if (n < 0)
		return st_errf(err, errlen, ST_E_IO, "cannot read profile directory %s: %s", dir,
			       strerror(errno));
	s = calloc(1, sizeof(*s));
	if (!s || (n && !(s->p = calloc((size_t)n, sizeof(*s->p))))) {
		rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory");
		goto out;
	}
	for (int i = 0; i < n; i++) {
		char *path = st_yl_join(dir, list[i]->d_name);
		const struct st_profile *p = NULL;
		char perr[512];
		unsigned before = errors;

		if (!path) {
			rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory");
			goto out;
		}
		rc = st_profile_load(path, diag, &p, perr, sizeof(perr));
		if (rc == ST_E_NOMEM) {
			free(path);
			rc = st_errf(err, errlen, rc, "out of memory");
			goto out;
		}
		if (rc != 0) {
			/* "N errors in FILE": count them into the directory's total. */
			errors += (unsigned)strtoul(perr, NULL, 10);
			if (errors == before)
				errors++;
			free(path);
			continue;
		}
		for (size_t j = 0; j < s->n; j++) {
			const char *hw = clash(s->p[j], p);

			if (strcmp(s->p[j]->sku, p->sku) == 0)
				set_error(diag, &errors, path, "sku '%s' is already the sku of %s",
					  p->sku, s->p[j]->path);
			else if (hw)
				set_error(diag, &errors, path,
					  "matches hardware id '%s'%s%s%s like %s; a board could not "
					  "tell which profile applies (give one a match.sku)",
					  hw, p->match_sku ? " with sku '" : "",
					  p->match_sku ? p->match_sku : "", p->match_sku ? "'" : "",
					  s->p[j]->path);
		}
		s->p[s->n++] = p;
		free(path);
	}
	if (errors) {
		rc = st_errf(err, errlen, ST_E_PROFILE, "%u error%s in %s", errors,
			     errors == 1 ? "" : "s", dir);
		goto out;
	}
	*out = s;
	s = NULL;
	rc = 0;
out:
	st_profile_set_free(s);
	for (int i = 0; i < n; i++)
		free(list[i]);
	free(list);
	return rc;
}

const struct st_profile *st_profile_set_match(const struct st_profile_set *s,
					      const char *hardware_id, const char *sku)
{
	const struct st_profile *generic = NULL;

	for (size_t i = 0; i < s->n; i++) {
		const struct st_profile *p = s->p[i];

		if (!st_profile_matches(p, hardware_id, sku))
			continue;
		if (p->match_sku)
			return p;
		if (!generic)
			generic = p;
	}
	return generic;
}

const struct st_profile *st_profile_set_find(const struct st_profile_set *s, const char *sku)
{
	for (size_t i = 0; i < s->n; i++) {
		if (strcmp(s->p[i]->sku, sku) == 0)
			return s->p[i];
	}
	return NULL;
}

size_t st_profile_set_count(const struct st_profile_set *s)
{
	return s->n;
}

const struct st_profile *st_profile_set_get(const struct st_profile_set *s, size_t i)
{
	return i < s->n ? s->p[i] : NULL;
}
