#include "config.h"

#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
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
	[CA_PIN_FILE] = ST_YL_KEY("pin_file", st_yl_h_path, CA(pin_file), 0),
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

enum { T_CA, T_LEDGER, T_PROFILES, T_DEFAULT_PROFILE, T_N };

static const struct st_yl_key top_keys[] = {
	[T_CA] = ST_YL_NAME("ca", ST_YL_REQUIRED),
	[T_LEDGER] = ST_YL_KEY("ledger", st_yl_h_path, C(ledger), 0),
	[T_PROFILES] = ST_YL_KEY("profiles", st_yl_h_path, C(profiles), 0),
	[T_DEFAULT_PROFILE] = ST_YL_KEY("default_profile", st_yl_h_path, C(default_profile), 0),
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
	free(cfg->default_profile);
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
	}
	if (ctx.errors) {
		rc = st_yl_summary(&ctx, name, ST_E_CONFIG, err, errlen);
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
