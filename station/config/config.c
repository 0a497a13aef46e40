#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "join.h"
#include "ledger.h"
#include "log.h"
#include "signer.h"
#include "yamlload.h"

static const char *const signers[] = { "pkcs11", "file", NULL };
static const char *const mechanisms[] = { "ECDSA", "ECDSA-SHA256", NULL };

/* A PIN written into the configuration would sit in a file meant to be shared and read;
 * the key exists only to say so. */
static int h_pin(struct st_yl_ctx *ctx, const struct st_yl_node *node, const struct st_yl_key *key,
		 void *base)
{
	(void)key;
	(void)base;
	st_yl_error(ctx, node,
		    "the PIN is never written in the configuration; name a file "
		    "with 'pin_file' or an environment variable with 'pin_env'");
	return -1;
}

/* Under systemd the PIN arrives as a credential (LoadCredential=pin:FILE in the unit) in the
 * directory the service manager names in $CREDENTIALS_DIRECTORY; a pin_file starting with
 * "${CREDENTIALS_DIRECTORY}/" is taken from there. Without the variable (a command run by
 * hand) the path stays as written, so commands that need no PIN still load the file and one
 * that reads the PIN names the unexpanded path. Other paths resolve as paths do. */
#define CRED_PREFIX "${CREDENTIALS_DIRECTORY}/"

static int h_pin_file(struct st_yl_ctx *ctx, const struct st_yl_node *node,
		      const struct st_yl_key *key, void *base)
{
	const size_t n = sizeof(CRED_PREFIX) - 1;
	const char *dir = getenv("CREDENTIALS_DIRECTORY");
	char **field = (char **)((char *)base + key->offset);
	char *s, *p;

	if (node->type != ST_YL_SCALAR || node->len < n || memcmp(node->value, CRED_PREFIX, n) != 0)
		return st_yl_h_path(ctx, node, key, base);
	if (st_yl_string(ctx, node, key->name, ST_YL_ONELINE | ST_YL_NONEMPTY, PATH_MAX - 1,
			 &s) != 0)
		return -1;
	if (dir && dir[0] == '/') {
		p = st_yl_join(dir, s + n);
		free(s);
		if (!p) {
			st_yl_error(ctx, node, "out of memory");
			return -1;
		}
		s = p;
	}
	free(*field);
	*field = s;
	return 0;
}

#define CA(field) offsetof(struct st_config_ca, field)

enum {
	CA_SIGNER,
	CA_KEY,
	CA_PIN_FILE,
	CA_PIN_ENV,
	CA_MECHANISM,
	CA_CERT,
	CA_CHAIN,
	CA_ROOT,
	CA_SOFTHSM2_CONF,
	CA_PIN,
	CA_N,
};

static const struct st_yl_key ca_keys[] = {
	[CA_SIGNER] = ST_YL_CHOICE("signer", st_yl_h_choice, CA(signer), ST_YL_REQUIRED, signers),
	/* Resolved against the file's directory only for the file signer (below). */
	[CA_KEY] = ST_YL_RANGE("key", st_yl_h_string, CA(key),
			       ST_YL_REQUIRED | ST_YL_ONELINE | ST_YL_NONEMPTY, 0, 4096),
	[CA_PIN_FILE] = ST_YL_KEY("pin_file", h_pin_file, CA(pin_file), 0),
	[CA_PIN_ENV] = ST_YL_RANGE("pin_env", st_yl_h_string, CA(pin_env),
				   ST_YL_ONELINE | ST_YL_NONEMPTY, 0, 128),
	[CA_MECHANISM] = ST_YL_CHOICE("mechanism", st_yl_h_choice, CA(mechanism), 0, mechanisms),
	[CA_CERT] = ST_YL_KEY("cert", st_yl_h_path, CA(cert), ST_YL_REQUIRED),
	[CA_CHAIN] = ST_YL_KEY("chain", st_yl_h_path, CA(chain), 0),
	[CA_ROOT] = ST_YL_KEY("root", st_yl_h_path, CA(root), ST_YL_REQUIRED),
	[CA_SOFTHSM2_CONF] = ST_YL_KEY("softhsm2_conf", st_yl_h_path, CA(softhsm2_conf), 0),
	[CA_PIN] = ST_YL_KEY("pin", h_pin, 0, 0),
	[CA_N] = ST_YL_END,
};

#define C(field) offsetof(struct st_config, field)

/* --- The sections `station run` reads: slots, pool, timeouts, retries, outputs --------- */

/* `ledger`: a file path, resolved against the configuration's directory, or a PostgreSQL
 * connection string, taken as it is. */
static int h_ledger(struct st_yl_ctx *ctx, const struct st_yl_node *node,
		    const struct st_yl_key *key, void *base)
{
	if (node->type == ST_YL_SCALAR && node->value && !st_ledger_spec_is_file(node->value))
		return st_yl_h_string(ctx, node, key, base);
	return st_yl_h_path(ctx, node, key, base);
}

/* `profiles`: a directory (the station loads every profile in it), or a list of files. */
static int h_profiles(struct st_yl_ctx *ctx, const struct st_yl_node *node,
		      const struct st_yl_key *key, void *base)
{
	struct st_config *c = base;
	char **files;

	if (node->type == ST_YL_SCALAR)
		return st_yl_h_path(ctx, node, key, base);
	if (node->type != ST_YL_SEQUENCE) {
		st_yl_error(ctx, node, "'profiles' must be a directory or a list of profile "
			    "files, not %s", st_yl_describe(node));
		return -1;
	}
	if (node->n == 0) {
		st_yl_error(ctx, node, "'profiles' lists no file");
		return -1;
	}
	files = calloc(node->n, sizeof(*files));
	if (!files) {
		st_yl_error(ctx, node, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < c->n_profile_files; i++)
		free(c->profile_files[i]);
	free(c->profile_files);
	c->profile_files = files;
	c->n_profile_files = 0;
	for (size_t i = 0; i < node->n; i++) {
		struct st_yl_key k = { .name = "profiles", .offset = 0 };
		char *p = NULL;

		if (st_yl_h_path(ctx, node->items[i], &k, &p) == 0)
			files[c->n_profile_files++] = p;
	}
	return 0;
}

static const char *const backends[] = { "auto", "serial", "pty", NULL };
static const char *const flows[] = { "none", "xonxoff", "rtscts", NULL };

#define SL(field) offsetof(struct st_config_slot, field)

enum { S_NAME, S_PORT, S_GLOB, S_MAP, S_BAUD, S_MAX_BAUD, S_BACKEND, S_FLOW, S_PROFILE, S_N };

static const struct st_yl_key slot_keys[] = {
	[S_NAME] = ST_YL_RANGE("name", st_yl_h_string, SL(name), ST_YL_ONELINE | ST_YL_NONEMPTY,
			       0, 64),
	[S_PORT] = ST_YL_KEY("port", st_yl_h_path, SL(port), 0),
	[S_GLOB] = ST_YL_KEY("glob", st_yl_h_path, SL(glob), 0),
	[S_MAP] = ST_YL_KEY("board_map", st_yl_h_path, SL(board_map), 0),
	[S_BAUD] = ST_YL_RANGE("baud", st_yl_h_uint, SL(baud), 0, 50, 4000000),
	[S_MAX_BAUD] = ST_YL_RANGE("max_baud", st_yl_h_uint, SL(max_baud), 0, 50, 4000000),
	[S_BACKEND] = ST_YL_CHOICE("backend", st_yl_h_choice, SL(backend), 0, backends),
	[S_FLOW] = ST_YL_CHOICE("flow", st_yl_h_enum, SL(flow), 0, flows),
	[S_PROFILE] = ST_YL_KEY("profile", st_yl_h_path, SL(profile), 0),
	[S_N] = ST_YL_END,
};

static void free_slot(struct st_config_slot *s)
{
	free(s->name);
	free(s->port);
	free(s->glob);
	free(s->board_map);
	free(s->backend);
	free(s->profile);
	free(s->where);
}

/* A slot name, or a name template whose variables are those of vars (NULL-terminated). */
static int check_slot_name(struct st_yl_ctx *ctx, const struct st_yl_node *n,
			   const char *const *vars)
{
	const char *v = n->value;

	for (size_t i = 0; i < n->len; i++) {
		char ch = v[i];

		if (ch == '{' && vars) {
			const char *end = strchr(v + i, '}');
			size_t k;

			for (k = 0; end && vars[k]; k++) {
				if (strlen(vars[k]) == (size_t)(end - v - i - 1) &&
				    strncmp(v + i + 1, vars[k], (size_t)(end - v - i - 1)) == 0)
					break;
			}
			if (!end || !vars[k]) {
				char known[128];

				st_join(known, sizeof(known), vars, "{", "}");
				st_yl_error_in(ctx, n, i, "unknown name variable; this entry knows %s",
					       known);
				return -1;
			}
			i = (size_t)(end - v);
			continue;
		}
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-' ||
		      ch == ':')) {
			st_yl_error_in(ctx, n, i, "a slot name may contain only letters, digits, "
				       "'.', '_', '-' and ':'%s", vars ? " (and {variables})" : "");
			return -1;
		}
	}
	return 0;
}

static void parse_slots(struct st_yl_ctx *ctx, const struct st_yl_node *node, struct st_config *c)
{
	static const char *const glob_vars[] = { "basename", "parent", "index", NULL };
	static const char *const map_vars[] = { "name", "index", NULL };
	size_t saved;

	if (st_yl_expect(ctx, node, ST_YL_SEQUENCE, "slots") != 0)
		return;
	c->slots = calloc(node->n ? node->n : 1, sizeof(*c->slots));
	if (!c->slots) {
		st_yl_error(ctx, node, "out of memory");
		return;
	}
	saved = st_yl_path_push(ctx, "slots");
	for (size_t i = 0; i < node->n; i++) {
		const struct st_yl_node *item = node->items[i], *f[S_N];
		struct st_config_slot *sl = &c->slots[c->n_slots];
		unsigned before = ctx->errors;
		char where[PATH_MAX + 32];
		int kinds;

		if (st_yl_expect(ctx, item, ST_YL_MAPPING, "slots entry") != 0)
			continue;
		memset(sl, 0, sizeof(*sl));
		c->n_slots++;
		st_yl_parse_mapping(ctx, item, slot_keys, sl, f);
		snprintf(where, sizeof(where), "%s:%d:%d", item->doc->name, item->line, item->col);
		sl->where = strdup(where);
		if (!sl->backend)
			sl->backend = strdup("auto");
		if (!sl->where || !sl->backend) {
			st_yl_error(ctx, item, "out of memory");
			continue;
		}
		kinds = !!f[S_PORT] + !!f[S_GLOB] + !!f[S_MAP];
		if (kinds != 1) {
			st_yl_error(ctx, item, "a slots entry names exactly one of 'port' (one slot), "
				    "'glob' (a slot per matching port) or 'board_map' (a slot per "
				    "simulated board)%s", kinds ? "; this one names several" : "");
			continue;
		}
		if (f[S_MAX_BAUD] && sl->max_baud < (sl->baud ? sl->baud : 115200)) {
			st_yl_error(ctx, f[S_MAX_BAUD],
				    "'max_baud' is %u, below the line's starting rate %u; it is the "
				    "fastest rate the station may switch a board to",
				    sl->max_baud, sl->baud ? sl->baud : 115200);
			continue;
		}
		if (ctx->errors != before)
			continue;
		sl->kind = f[S_PORT] ? ST_CONFIG_SLOT_PORT :
			   f[S_GLOB] ? ST_CONFIG_SLOT_GLOB : ST_CONFIG_SLOT_BOARD_MAP;
		if (f[S_NAME])
			check_slot_name(ctx, f[S_NAME],
					sl->kind == ST_CONFIG_SLOT_GLOB ? glob_vars :
					sl->kind == ST_CONFIG_SLOT_BOARD_MAP ? map_vars : NULL);
		if (!sl->name && sl->kind == ST_CONFIG_SLOT_PORT) {
			const char *b = strrchr(sl->port, '/');

			sl->name = strndup(b ? b + 1 : sl->port, 64);
		} else if (!sl->name) {
			sl->name = strdup(sl->kind == ST_CONFIG_SLOT_GLOB ? "{basename}" : "{name}");
		}
		if (!sl->name) {
			st_yl_error(ctx, item, "out of memory");
			continue;
		}
		if (sl->kind != ST_CONFIG_SLOT_PORT)
			continue;
		for (size_t j = 0; j + 1 < c->n_slots; j++) {
			if (c->slots[j].kind == ST_CONFIG_SLOT_PORT && c->slots[j].name &&
			    strcmp(c->slots[j].name, sl->name) == 0) {
				st_yl_error(ctx, f[S_NAME] ? f[S_NAME] : item,
					    "slot name '%s' is already used by the entry at %s",
					    sl->name, c->slots[j].where);
				break;
			}
			if (c->slots[j].kind == ST_CONFIG_SLOT_PORT && c->slots[j].port &&
			    strcmp(c->slots[j].port, sl->port) == 0) {
				st_yl_error(ctx, f[S_PORT], "port %s is already the slot at %s",
					    sl->port, c->slots[j].where);
				break;
			}
		}
	}
	st_yl_path_pop(ctx, saved);
}

#define PO(field) offsetof(struct st_config_pool, field)

static const struct st_yl_key pool_keys[] = {
	ST_YL_RANGE("workers", st_yl_h_uint, PO(workers), 0, 1, 256),
	ST_YL_RANGE("hsm_sessions", st_yl_h_uint, PO(hsm_sessions), 0, 1, 65535),
	ST_YL_RANGE("batch_max", st_yl_h_uint, PO(batch_max), 0, 1, 4096),
	ST_YL_RANGE("batch_linger_ms", st_yl_h_uint, PO(batch_linger_ms), 0, 0, 10000),
	ST_YL_RANGE("queue_max", st_yl_h_uint, PO(queue_max), 0, 1, 1000000),
	ST_YL_END,
};

#define TO(field) offsetof(struct st_config_timeouts, field)
#define MS_RANGE(n) ST_YL_RANGE(#n, st_yl_h_uint, TO(n), 0, 1, 3600000)

static const struct st_yl_key timeout_keys[] = {
	MS_RANGE(hello),    MS_RANGE(csr),	 MS_RANGE(write),  MS_RANGE(commit),
	MS_RANGE(verify),   MS_RANGE(done),	 MS_RANGE(probe),  MS_RANGE(presence),
	MS_RANGE(reconnect), MS_RANGE(reopen), MS_RANGE(rescan), MS_RANGE(no_frame),
	ST_YL_RANGE("baud_trial", st_yl_h_uint, TO(baud_trial), 0, 100, 60000),
	ST_YL_END,
};

#define RE(field) offsetof(struct st_config_retries, field)

static const struct st_yl_key retry_keys[] = {
	ST_YL_RANGE("request", st_yl_h_uint, RE(request), 0, 1, 100),
	ST_YL_RANGE("resync", st_yl_h_uint, RE(resync), 0, 1, 100),
	ST_YL_END,
};

#define OU(field) offsetof(struct st_config_outputs, field)

static const struct st_yl_key output_keys[] = {
	ST_YL_KEY("events", st_yl_h_path, OU(events), 0),
	ST_YL_KEY("console_dir", st_yl_h_path, OU(console_dir), 0),
	ST_YL_RANGE("events_buffer", st_yl_h_uint, OU(events_buffer), 0, 4096, 268435456),
	ST_YL_END,
};

/* `report.key`: a PKCS#11 URI as written, else a key file relative to the configuration. */
static int h_key_or_uri(struct st_yl_ctx *ctx, const struct st_yl_node *node,
			const struct st_yl_key *key, void *base)
{
	if (node->type == ST_YL_SCALAR && strncmp(node->value, "pkcs11:", 7) == 0)
		return st_yl_h_string(ctx, node, key, base);
	return st_yl_h_path(ctx, node, key, base);
}

#define RP(field) offsetof(struct st_config_report, field)

static const struct st_yl_key report_keys[] = {
	ST_YL_RANGE("key", h_key_or_uri, RP(key), ST_YL_REQUIRED | ST_YL_ONELINE | ST_YL_NONEMPTY,
		    0, 4096),
	ST_YL_KEY("cert", st_yl_h_path, RP(cert), ST_YL_REQUIRED),
	ST_YL_END,
};

enum {
	T_CA,
	T_LEDGER,
	T_PROFILES,
	T_DEFAULT_PROFILE,
	T_STATION,
	T_SLOTS,
	T_POOL,
	T_TIMEOUTS,
	T_RETRIES,
	T_OUTPUTS,
	T_HTTP,
	T_AUTHORIZATIONS,
	T_REPORT,
	T_N
};

static const struct st_yl_key top_keys[] = {
	[T_CA] = ST_YL_NAME("ca", ST_YL_REQUIRED),
	[T_LEDGER] = ST_YL_KEY("ledger", h_ledger, C(ledger), ST_YL_ONELINE | ST_YL_NONEMPTY),
	[T_PROFILES] = ST_YL_KEY("profiles", h_profiles, C(profiles), 0),
	[T_DEFAULT_PROFILE] = ST_YL_KEY("default_profile", st_yl_h_path, C(default_profile), 0),
	[T_STATION] = ST_YL_RANGE("station", st_yl_h_string, C(station),
				  ST_YL_ONELINE | ST_YL_NONEMPTY, 0, 128),
	[T_SLOTS] = ST_YL_NAME("slots", 0),
	[T_POOL] = ST_YL_SUB("pool", C(pool), 0, pool_keys),
	[T_TIMEOUTS] = ST_YL_SUB("timeouts", C(timeouts), 0, timeout_keys),
	[T_RETRIES] = ST_YL_SUB("retries", C(retries), 0, retry_keys),
	[T_OUTPUTS] = ST_YL_SUB("outputs", C(outputs), 0, output_keys),
	[T_HTTP] = ST_YL_KEY("http", st_config_h_http, C(http), 0),
	[T_AUTHORIZATIONS] = ST_YL_KEY("authorizations", st_yl_h_path, C(authorizations), 0),
	[T_REPORT] = ST_YL_SUB("report", C(report), 0, report_keys),
	[T_N] = ST_YL_END,
};

void st_config_free(struct st_config *cfg)
{
	if (!cfg)
		return;
	free(cfg->path);
	free(cfg->ca.signer);
	free(cfg->ca.key);
	free(cfg->ca.pin_file);
	free(cfg->ca.pin_env);
	free(cfg->ca.mechanism);
	free(cfg->ca.cert);
	free(cfg->ca.chain);
	free(cfg->ca.root);
	free(cfg->ca.softhsm2_conf);
	free(cfg->ledger);
	free(cfg->profiles);
	for (size_t i = 0; i < cfg->n_profile_files; i++)
		free(cfg->profile_files[i]);
	free(cfg->profile_files);
	free(cfg->default_profile);
	free(cfg->station);
	for (size_t i = 0; i < cfg->n_slots; i++)
		free_slot(&cfg->slots[i]);
	free(cfg->slots);
	free(cfg->outputs.events);
	free(cfg->outputs.console_dir);
	st_config_http_clear(&cfg->http);
	for (size_t i = 0; i < cfg->n_files; i++)
		free(cfg->files[i].where);
	free(cfg->files);
	free(cfg->authorizations);
	free(cfg->report.key);
	free(cfg->report.cert);
	free(cfg);
}

static int valid_env_name(const char *s)
{
	if (!((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
		return 0;
	for (size_t i = 1; s[i]; i++) {
		char c = s[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '_'))
			return 0;
	}
	return 1;
}

/* The CA section: its table, then the rules that tie its keys together. */
static void parse_ca(struct st_yl_ctx *ctx, const struct st_yl_node *node, struct st_config *c)
{
	struct st_config_ca *ca = &c->ca;
	const struct st_yl_node *f[CA_N];
	size_t saved;

	if (st_yl_expect(ctx, node, ST_YL_MAPPING, "ca") != 0)
		return;
	saved = st_yl_path_push(ctx, "ca");
	st_yl_parse_mapping(ctx, node, ca_keys, ca, f);
	st_yl_path_pop(ctx, saved);
	if (!ca->signer || !ca->key)
		return;
	if (strcmp(ca->signer, "pkcs11") == 0) {
		if (strncmp(ca->key, "pkcs11:", 7) != 0) {
			st_yl_error(ctx, f[CA_KEY],
				    "'key' must be a PKCS#11 URI (pkcs11:token=...;object=...) for "
				    "signer pkcs11");
			return;
		}
		if (f[CA_PIN_FILE] && f[CA_PIN_ENV]) {
			st_yl_error(ctx, f[CA_PIN_ENV],
				    "'pin_file' and 'pin_env' exclude each other; give one");
			return;
		}
		if (!f[CA_PIN_FILE] && !f[CA_PIN_ENV] && !strstr(ca->key, "pin-source=") &&
		    !strstr(ca->key, "pin-value="))
			st_yl_error(ctx, node,
				    "signer pkcs11 needs a PIN source: 'pin_file' or 'pin_env'");
		if (ca->pin_env && !valid_env_name(ca->pin_env))
			st_yl_error(ctx, f[CA_PIN_ENV],
				    "'pin_env' must be an environment variable name, not '%s'",
				    ca->pin_env);
	} else {
		char *p;

		if (f[CA_PIN_FILE] || f[CA_PIN_ENV]) {
			st_yl_error(ctx, f[CA_PIN_FILE] ? f[CA_PIN_FILE] : f[CA_PIN_ENV],
				    "a PIN applies only to signer pkcs11");
			return;
		}
		if (f[CA_MECHANISM]) {
			st_yl_error(ctx, f[CA_MECHANISM],
				    "'mechanism' applies only to signer pkcs11");
			return;
		}
		if (strncmp(ca->key, "pkcs11:", 7) == 0) {
			st_yl_error(ctx, f[CA_KEY],
				    "'key' is a PKCS#11 URI but the signer is 'file'; write "
				    "'signer: pkcs11' or give a PEM key file");
			return;
		}
		p = st_yl_join(f[CA_KEY]->doc->dir, ca->key);
		if (!p) {
			st_yl_error(ctx, f[CA_KEY], "out of memory");
			return;
		}
		free(ca->key);
		ca->key = p;
	}
}

/* --- Files the configuration names ---------------------------------------------------- */

/* Files are not opened when the configuration loads: a command that needs none of them (a
 * ledger listing) must work without them, and a PIN credential exists only under the service
 * manager. So the place of each key naming one is kept, for st_config_check_files(). */

static const struct st_yl_node *key_named(const struct st_yl_node *map, const char *name)
{
	if (!map || map->type != ST_YL_MAPPING)
		return NULL;
	for (size_t i = 0; i < map->n; i++) {
		if (map->items[2 * i]->type == ST_YL_SCALAR &&
		    strcmp(map->items[2 * i]->value, name) == 0)
			return map->items[2 * i];
	}
	return NULL;
}

/* Records path, named at node at (a key, or an item of a list) as key. */
static int add_file(struct st_config *c, unsigned what, const char *key, const char *path,
		    int dir, const struct st_yl_node *at)
{
	struct st_config_file *files, *f;
	char where[PATH_MAX + 32];

	if (!path || !at)
		return 0;
	files = realloc(c->files, (c->n_files + 1) * sizeof(*files));
	if (!files)
		return -1;
	c->files = files;
	snprintf(where, sizeof(where), "%s:%d:%d", at->doc->name, at->line, at->col);
	f = &c->files[c->n_files];
	*f = (struct st_config_file){ what, key, path, dir, strdup(where) };
	if (!f->where)
		return -1;
	c->n_files++;
	return 0;
}

static int add_key(struct st_config *c, unsigned what, const struct st_yl_node *map,
		   const char *name, const char *key, const char *path, int dir)
{
	return add_file(c, what, key, path, dir, key_named(map, name));
}

/* Every file of a configuration that loaded without problems, so slots[i] is items[i]. */
static int record_files(struct st_config *c, const struct st_yl_node *root,
			const struct st_yl_node **f)
{
	const struct st_yl_node *ca = f[T_CA], *http = f[T_HTTP];
	const unsigned CAF = ST_CONFIG_FILES_CA, PRF = ST_CONFIG_FILES_PROFILES;
	const unsigned HTF = ST_CONFIG_FILES_HTTP;
	int rc = 0;

	rc |= add_key(c, CAF, ca, "cert", "ca.cert", c->ca.cert, 0);
	rc |= add_key(c, CAF, ca, "chain", "ca.chain", c->ca.chain, 0);
	rc |= add_key(c, CAF, ca, "root", "ca.root", c->ca.root, 0);
	rc |= add_key(c, CAF, ca, "pin_file", "ca.pin_file", c->ca.pin_file, 0);
	rc |= add_key(c, CAF, ca, "softhsm2_conf", "ca.softhsm2_conf", c->ca.softhsm2_conf, 0);
	if (strcmp(c->ca.signer, "file") == 0)
		rc |= add_key(c, CAF, ca, "key", "ca.key", c->ca.key, 0);
	if (c->profiles)
		rc |= add_key(c, PRF, root, "profiles", "profiles", c->profiles, 1);
	for (size_t i = 0; i < c->n_profile_files && f[T_PROFILES]; i++)
		rc |= add_file(c, PRF, "profiles", c->profile_files[i], 0,
			       f[T_PROFILES]->items[i]);
	rc |= add_key(c, PRF, root, "default_profile", "default_profile", c->default_profile, 0);
	for (size_t i = 0; i < c->n_slots && f[T_SLOTS]; i++) {
		const struct st_yl_node *item = f[T_SLOTS]->items[i];

		rc |= add_key(c, PRF, item, "profile", "slots.profile", c->slots[i].profile, 0);
		rc |= add_key(c, ST_CONFIG_FILES_SLOTS, item, "board_map", "slots.board_map",
			      c->slots[i].board_map, 0);
	}
	if (c->http.enabled) {
		rc |= add_key(c, HTF, http, "tls_cert", "http.tls_cert", c->http.tls_cert, 0);
		rc |= add_key(c, HTF, http, "tls_key", "http.tls_key", c->http.tls_key, 0);
		rc |= add_key(c, HTF, http, "client_ca", "http.client_ca", c->http.client_ca, 0);
		rc |= add_key(c, HTF, http, "token_file", "http.token_file", c->http.token_file, 0);
	}
	return rc;
}

/* What is wrong with one file, in why ("which does not exist"); 0 when nothing is. */
static int check_file(const struct st_config_file *f, char *why, size_t len)
{
	struct stat st;

	if (strncmp(f->path, CRED_PREFIX, sizeof(CRED_PREFIX) - 1) == 0) {
		snprintf(why, len, "but CREDENTIALS_DIRECTORY is not set (the service manager sets "
			 "it for the unit's LoadCredential=; by hand, set it to the directory "
			 "that holds the file)");
		return -1;
	}
	if (stat(f->path, &st) != 0) {
		int e = errno;

		snprintf(why, len, "which %s%s", e == ENOENT ? "does not exist" : "cannot be used: ",
			 e == ENOENT ? "" : strerror(e));
		return -1;
	}
	if (f->dir && !S_ISDIR(st.st_mode)) {
		snprintf(why, len, "which is not a directory");
		return -1;
	}
	if (!f->dir && S_ISDIR(st.st_mode)) {
		snprintf(why, len, "which is a directory, not a file");
		return -1;
	}
	if (access(f->path, f->dir ? R_OK | X_OK : R_OK) != 0) {
		snprintf(why, len, "which cannot be read: %s", strerror(errno));
		return -1;
	}
	return 0;
}

int st_config_check_files(const struct st_config *cfg, unsigned what, FILE *diag, char *err,
			  size_t errlen)
{
	char why[512];
	unsigned n = 0;

	for (size_t i = 0; i < cfg->n_files; i++) {
		const struct st_config_file *f = &cfg->files[i];

		if (!(f->what & what) || check_file(f, why, sizeof(why)) == 0)
			continue;
		n++;
		if (diag)
			fprintf(diag, "%s: '%s' names %s, %s\n", f->where, f->key, f->path, why);
	}
	if (n)
		return st_errf(err, errlen, ST_E_CONFIG, "%u error%s in %s", n, n == 1 ? "" : "s",
			       cfg->path);
	return 0;
}

/* The directory relative paths resolve against: absolute, so paths stay right after a
 * chdir. */
static char *abs_dir(const char *name, const char *dir)
{
	char *d = NULL, *r;
	const char *slash;

	if (dir) {
		d = strdup(dir);
	} else {
		slash = strrchr(name, '/');
		d = slash ? (slash == name ? strdup("/") : strndup(name, (size_t)(slash - name)))
			  : strdup(".");
	}
	if (!d)
		return NULL;
	r = realpath(d, NULL);
	if (r) {
		free(d);
		return r;
	}
	if (d[0] != '/') {
		/* The directory does not exist (a buffer's name); still make it absolute. */
		char cwd[PATH_MAX];
		if (getcwd(cwd, sizeof(cwd))) {
			r = st_yl_join(cwd, d);
			free(d);
			return r;
		}
	}
	return d;
}

static int load(const char *name, const char *dir, const void *buf, size_t len, int from_buffer,
		FILE *diag, struct st_config **out, char *err, size_t errlen)
{
	struct st_yl_ctx ctx;
	struct st_yl_doc *doc = NULL;
	struct st_config *c = NULL;
	const struct st_yl_node *f[T_N];
	char *base = NULL;
	int rc;

	*out = NULL;
	st_yl_init(&ctx, diag);
	c = calloc(1, sizeof(*c));
	base = abs_dir(name, dir);
	if (!c || !base || !(c->path = strdup(name))) {
		rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory");
		goto out;
	}
	/* Defaults of the pool where 0 has a meaning of its own. */
	c->pool.batch_max = 32;
	c->pool.batch_linger_ms = 5;
	c->pool.queue_max = 4096;
	if (from_buffer) {
		rc = st_yl_load_buffer(&ctx, name, base, buf, len, &doc);
		if (rc == ST_E_NOMEM) {
			rc = st_errf(err, errlen, rc, "out of memory");
			goto out;
		}
	} else {
		char rerr[256];

		rc = st_yl_load_file(&ctx, name, &doc, rerr, sizeof(rerr));
		if (rc != 0 && ctx.errors == 0)
			st_yl_error_at(&ctx, name, 1, 1, "cannot read configuration: %s", rerr);
	}
	if (doc) {
		/* Relative paths resolve against the absolute directory. */
		free(doc->dir);
		doc->dir = strdup(base);
		if (!doc->dir) {
			rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory");
			goto out;
		}
	}
	if (doc && !doc->root && ctx.errors == 0)
		st_yl_error_at(&ctx, name, 1, 1,
			       "empty configuration; it needs at least a 'ca' section");
	if (doc && doc->root && ctx.errors == 0) {
		st_yl_parse_mapping(&ctx, doc->root, top_keys, c, f);
		if (f[T_CA])
			parse_ca(&ctx, f[T_CA], c);
		if (f[T_SLOTS])
			parse_slots(&ctx, f[T_SLOTS], c);
		/* The report key is reached like the CA key. */
		if (f[T_REPORT] && c->report.key && c->ca.signer &&
		    (strncmp(c->report.key, "pkcs11:", 7) == 0) !=
			    (strcmp(c->ca.signer, "pkcs11") == 0))
			st_yl_error(&ctx, f[T_REPORT],
				    "'report.key' must be %s, like the CA's key (signer %s)",
				    strcmp(c->ca.signer, "pkcs11") == 0 ? "a PKCS#11 URI" :
									  "a key file",
				    c->ca.signer);
	}
	if (ctx.errors) {
		rc = st_yl_summary(&ctx, name, ST_E_CONFIG, err, errlen);
		goto out;
	}
	/* Tokens written in the file make it a file of secrets (st_http_start checks its mode). */
	if (!from_buffer)
		c->http.file = c->path;
	if (record_files(c, doc->root, f) != 0) {
		rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory");
		goto out;
	}
	if (!c->ca.mechanism && strcmp(c->ca.signer, "pkcs11") == 0)
		c->ca.mechanism = strdup("ECDSA");
	if (!c->ledger)
		c->ledger = st_yl_join(base, "ledger.db");
	if (!c->ledger || (!c->ca.mechanism && strcmp(c->ca.signer, "pkcs11") == 0)) {
		rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory");
		goto out;
	}
	*out = c;
	c = NULL;
	rc = 0;
out:
	st_config_free(c);
	free(base);
	st_yl_cleanup(&ctx);
	return rc;
}

int st_config_load(const char *path, FILE *diag, struct st_config **out, char *err, size_t errlen)
{
	return load(path, NULL, NULL, 0, 0, diag, out, err, errlen);
}

int st_config_load_buffer(const char *name, const char *dir, const void *buf, size_t len,
			  FILE *diag, struct st_config **out, char *err, size_t errlen)
{
	return load(name, dir, buf, len, 1, diag, out, err, errlen);
}

/* --- What the ca section turns into: the signer ------------------------------------------ */

void st_config_signer_config(const struct st_config *cfg, struct drv_signer_config *sc)
{
	const struct st_config_ca *ca = &cfg->ca;

	/* Before the module loads, or SoftHSM2 looks for its tokens elsewhere; an
	 * environment that names its own configuration keeps it. */
	if (ca->softhsm2_conf)
		setenv("SOFTHSM2_CONF", ca->softhsm2_conf, 0);
	memset(sc, 0, sizeof(*sc));
	sc->backend = ca->signer;
	sc->key = ca->key;
	sc->pin_file = ca->pin_file;
	sc->pin_env = ca->pin_env;
	sc->mechanism = ca->mechanism;
}

void st_config_report_signer_config(const struct st_config *cfg, struct drv_signer_config *sc)
{
	st_config_signer_config(cfg, sc);
	sc->key = cfg->report.key;
}

const char *st_config_station_name(const struct st_config *cfg, char *buf, size_t len)
{
	if (cfg && cfg->station)
		snprintf(buf, len, "%s", cfg->station);
	else if (gethostname(buf, len - 1) != 0 || !buf[0])
		snprintf(buf, len, "station");
	buf[len - 1] = 0;
	return buf;
}

int st_config_open_signer(const struct st_config *cfg, struct drv_signer **out, char *err,
			  size_t errlen)
{
	struct drv_signer_config sc;

	st_config_signer_config(cfg, &sc);
	return drv_signer_open(&sc, out, err, errlen);
}

/* --- Board maps ------------------------------------------------------------------------ */

void st_board_map_free(struct st_board_map *map)
{
	if (!map)
		return;
	for (size_t i = 0; i < map->n; i++) {
		struct st_board_map_entry *b = &map->boards[i];

		free(b->name);
		free(b->port);
		free(b->backend);
		free(b->hardware_id);
		free(b->sku);
		free(b->device_id);
	}
	free(map->boards);
	free(map);
}

/* The value of key k in mapping m as a string (NULL when absent); problems are reported. */
static int map_string(struct st_yl_ctx *ctx, const struct st_yl_node *m, const char *k,
		      int required, char **out)
{
	*out = NULL;
	for (size_t i = 0; i < m->n; i++) {
		const struct st_yl_node *key = m->items[2 * i];

		if (key->type == ST_YL_SCALAR && strcmp(key->value, k) == 0) {
			if (m->items[2 * i + 1]->type == ST_YL_SCALAR &&
			    m->items[2 * i + 1]->len == 0 && !required) {
				*out = strdup("");
				return *out ? 0 : -1;
			}
			return st_yl_string(ctx, m->items[2 * i + 1], k, ST_YL_ONELINE,
					    PATH_MAX - 1, out);
		}
	}
	if (required) {
		st_yl_error(ctx, m, "board entry lacks '%s'", k);
		return -1;
	}
	return 0;
}

int st_board_map_load(const char *path, FILE *diag, struct st_board_map **out, char *err,
		      size_t errlen)
{
	struct st_yl_ctx ctx;
	struct st_yl_doc *doc = NULL;
	struct st_board_map *map = NULL;
	const struct st_yl_node *boards = NULL;
	char rerr[256];
	int rc;

	*out = NULL;
	st_yl_init(&ctx, diag);
	rc = st_yl_load_file(&ctx, path, &doc, rerr, sizeof(rerr));
	if (rc != 0) {
		if (ctx.errors == 0)
			st_yl_error_at(&ctx, path, 1, 1, "cannot read the board map: %s", rerr);
		goto fail;
	}
	if (!doc->root || doc->root->type != ST_YL_MAPPING) {
		st_yl_error_at(&ctx, path, 1, 1, "a board map is a mapping with 'boards'");
		goto fail;
	}
	for (size_t i = 0; i < doc->root->n; i++) {
		if (strcmp(doc->root->items[2 * i]->value, "boards") == 0)
			boards = doc->root->items[2 * i + 1];
	}
	if (!boards) {
		st_yl_error(&ctx, doc->root, "the board map has no 'boards' list");
		goto fail;
	}
	if (st_yl_expect(&ctx, boards, ST_YL_SEQUENCE, "boards") != 0)
		goto fail;
	map = calloc(1, sizeof(*map));
	if (!map || !(map->boards = calloc(boards->n ? boards->n : 1, sizeof(*map->boards)))) {
		rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < boards->n; i++) {
		const struct st_yl_node *b = boards->items[i];
		struct st_board_map_entry *e = &map->boards[map->n];
		char *port = NULL;

		if (st_yl_expect(&ctx, b, ST_YL_MAPPING, "boards entry") != 0)
			continue;
		map->n++;
		if (map_string(&ctx, b, "name", 1, &e->name) || map_string(&ctx, b, "port", 1, &port) ||
		    map_string(&ctx, b, "backend", 0, &e->backend) ||
		    map_string(&ctx, b, "hardware_id", 0, &e->hardware_id) ||
		    map_string(&ctx, b, "sku", 0, &e->sku) ||
		    map_string(&ctx, b, "device_id", 0, &e->device_id)) {
			free(port);
			continue;
		}
		e->port = st_yl_join(doc->dir, port);
		free(port);
		if (!e->port)
			st_yl_error(&ctx, b, "out of memory");
	}
	if (ctx.errors)
		goto fail;
	*out = map;
	map = NULL;
	rc = 0;
	goto out;
fail:
	rc = st_yl_summary(&ctx, path, ST_E_CONFIG, err, errlen);
out:
	st_board_map_free(map);
	st_yl_cleanup(&ctx);
	return rc;
}
