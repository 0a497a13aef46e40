/* The station configuration: the same table-driven loader as profiles, with paths made
 * absolute against the file's directory and the CA section's rules checked together. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "err.h"
#include "testutil.h"

static char dir[PATH_MAX];

static int setup(void **state)
{
	const char *d = tu_tmpdir("config");

	(void)state;
	if (!d)
		return -1;
	snprintf(dir, sizeof(dir), "%s", d);
	return 0;
}

static int teardown(void **state)
{
	char path[PATH_MAX + 32];

	(void)state;
	snprintf(path, sizeof(path), "%s/station.yaml", dir);
	unlink(path);
	rmdir(dir);
	return 0;
}

/* Writes text to DIR/station.yaml, loads it; returns diagnostics (free()). */
static char *load(const char *text, struct st_config **cfg, int *rc, char *err, size_t errlen)
{
	char path[PATH_MAX + 32];
	char *diag = NULL;
	size_t dlen = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/station.yaml", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	f = open_memstream(&diag, &dlen);
	assert_non_null(f);
	*rc = st_config_load(path, f, cfg, err, errlen);
	fclose(f);
	return diag;
}

static char *in_dir(const char *rel)
{
	static char buf[PATH_MAX + 64];

	snprintf(buf, sizeof(buf), "%s/%s", dir, rel);
	return buf;
}

static void test_pkcs11_config(void **state)
{
	struct st_config *c = NULL;
	char err[512];
	char *diag;
	int rc;

	(void)state;
	diag = load("# the line's CA\n"
		    "ca:\n"
		    "  signer: pkcs11\n"
		    "  key: \"pkcs11:token=factory;object=local-ca?module-path="
		    "/usr/lib/softhsm/libsofthsm2.so\"\n"
		    "  pin_file: secrets/pin.txt\n"
		    "  cert: pki/local-ca.pem\n"
		    "  chain: /etc/station/intermediate.pem\n"
		    "  root: pki/../pki/root.pem\n"
		    "  softhsm2_conf: softhsm2.conf\n"
		    "profiles: profiles\n"
		    "default_profile: profiles/lmp-gateway.yaml\n",
		    &c, &rc, err, sizeof(err));
	if (rc != 0)
		fail_msg("%s%s", diag, err);
	assert_string_equal(diag, "");
	free(diag);
	assert_string_equal(c->ca.signer, "pkcs11");
	/* A URI is not a path: it is kept as written. */
	assert_string_equal(c->ca.key, "pkcs11:token=factory;object=local-ca?module-path="
				       "/usr/lib/softhsm/libsofthsm2.so");
	assert_string_equal(c->ca.pin_file, in_dir("secrets/pin.txt"));
	assert_null(c->ca.pin_env);
	assert_string_equal(c->ca.mechanism, "ECDSA");
	assert_string_equal(c->ca.cert, in_dir("pki/local-ca.pem"));
	assert_string_equal(c->ca.chain, "/etc/station/intermediate.pem");
	assert_string_equal(c->ca.root, in_dir("pki/../pki/root.pem"));
	assert_string_equal(c->ca.softhsm2_conf, in_dir("softhsm2.conf"));
	assert_string_equal(c->ledger, in_dir("ledger.db"));
	assert_string_equal(c->profiles, in_dir("profiles"));
	assert_string_equal(c->default_profile, in_dir("profiles/lmp-gateway.yaml"));
	st_config_free(c);
	st_config_free(NULL);
}

static void test_file_config(void **state)
{
	struct st_config *c = NULL;
	char err[512];
	char *diag;
	int rc;

	(void)state;
	diag = load("ca: {signer: file, key: ca.key, cert: ca.pem, root: root.pem}\n"
		    "ledger: /var/lib/station/ledger.db\n",
		    &c, &rc, err, sizeof(err));
	if (rc != 0)
		fail_msg("%s%s", diag, err);
	free(diag);
	assert_string_equal(c->ca.key, in_dir("ca.key"));
	assert_null(c->ca.mechanism);
	assert_null(c->ca.chain);
	assert_string_equal(c->ledger, "/var/lib/station/ledger.db");
	assert_null(c->profiles);
	st_config_free(c);

	/* From memory, relative to the directory given. */
	{
		static const char text[] =
			"ca: {signer: file, key: k.pem, cert: c.pem, root: r.pem}\n";

		rc = st_config_load_buffer("mem.yaml", "/srv/station", text, strlen(text), NULL, &c,
					   err, sizeof(err));
		assert_int_equal(rc, 0);
		assert_string_equal(c->ca.key, "/srv/station/k.pem");
		assert_string_equal(c->ledger, "/srv/station/ledger.db");
		st_config_free(c);
	}
}

/* ledger: a database server's connection string is kept as written, a file path resolved. */
static void test_ledger_spec(void **state)
{
	static const char *const specs[][2] = {
		{ "postgresql://station@db.line/ledger?sslmode=verify-full",
		  "postgresql://station@db.line/ledger?sslmode=verify-full" },
		{ "\"host=/run/postgresql dbname=ledger passfile=/etc/station/pgpass\"",
		  "host=/run/postgresql dbname=ledger passfile=/etc/station/pgpass" },
		{ "ledgers/a=b.db", "/srv/station/ledgers/a=b.db" },
	};
	struct st_config *c = NULL;
	char text[512], err[512];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
		snprintf(text, sizeof(text),
			 "ca: {signer: file, key: k.pem, cert: c.pem, root: r.pem}\nledger: %s\n",
			 specs[i][0]);
		if (st_config_load_buffer("mem.yaml", "/srv/station", text, strlen(text), NULL, &c,
					  err, sizeof(err)) != 0)
			fail_msg("%s: %s", specs[i][0], err);
		assert_string_equal(c->ledger, specs[i][1]);
		st_config_free(c);
	}
}

struct bad_case {
	const char *text;
	const char *diag; /* expected lines after "DIR/station.yaml:" */
};

static void test_errors(void **state)
{
	static const struct bad_case cases[] = {
		{ "ca: {signer: file, key: k, cert: c, root: r}\nleger: l.db\n",
		  "2:1: unknown key 'leger' (did you mean 'ledger'?)\n" },
		{ "ledger: l.db\n", "1:1: missing required key 'ca'\n" },
		{ "ca:\n  signer: file\n  key: k\n  cert: c\n",
		  "2:3: missing required key 'root' in 'ca'\n" },
		{ "ca:\n  signer: hsm\n  key: k\n  cert: c\n  root: r\n",
		  "2:11: unknown value 'hsm' for 'signer'; expected one of: pkcs11, file\n" },
		{ "ca:\n  signer: pkcs11\n  key: /etc/ca.key\n  pin_env: PIN\n  cert: c\n"
		  "  root: r\n",
		  "3:8: 'key' must be a PKCS#11 URI (pkcs11:token=...;object=...) for signer "
		  "pkcs11\n" },
		{ "ca:\n  signer: pkcs11\n  key: 'pkcs11:token=t'\n  cert: c\n  root: r\n",
		  "2:3: signer pkcs11 needs a PIN source: 'pin_file' or 'pin_env'\n" },
		{ "ca:\n  signer: pkcs11\n  key: 'pkcs11:token=t'\n  pin_file: p\n  pin_env: P\n"
		  "  cert: c\n  root: r\n",
		  "5:12: 'pin_file' and 'pin_env' exclude each other; give one\n" },
		{ "ca:\n  signer: pkcs11\n  key: 'pkcs11:token=t'\n  pin_env: 1PIN\n  cert: c\n"
		  "  root: r\n",
		  "4:12: 'pin_env' must be an environment variable name, not '1PIN'\n" },
		{ "ca:\n  signer: pkcs11\n  key: 'pkcs11:token=t'\n  pin: '1234'\n  cert: c\n"
		  "  root: r\n",
		  "4:8: the PIN is never written in the configuration; name a file with 'pin_file' "
		  "or an environment variable with 'pin_env'\n"
		  "2:3: signer pkcs11 needs a PIN source: 'pin_file' or 'pin_env'\n" },
		{ "ca:\n  signer: file\n  key: k\n  pin_file: p\n  cert: c\n  root: r\n",
		  "4:13: a PIN applies only to signer pkcs11\n" },
		{ "ca:\n  signer: pkcs11\n  key: 'pkcs11:token=t'\n  pin_env: P\n"
		  "  mechanism: ECDSA-SHA1\n  cert: c\n  root: r\n",
		  "5:14: unknown value 'ECDSA-SHA1' for 'mechanism' (did you mean "
		  "'ECDSA-SHA256'?); expected one of: ECDSA, ECDSA-SHA256\n" },
		{ "ca: [pkcs11]\n",
		  "1:5: 'ca' must be a mapping ('key: value' lines), not a sequence\n" },
		{ "ca:\n  signer: file\n  key: k\n  cert:\n  root: r\n",
		  "4:8: 'cert' has no value\n" },
		{ "", "1:1: empty configuration; it needs at least a 'ca' section\n" },
		{ "ca:\n  signer: file\n\tkey: k\n",
		  "3:1: a tab character cannot indent YAML; indent with spaces only\n"
		  "  \tkey: k\n"
		  "  ^\n" },
		{ "ca: {signer: file, key: k, cert: c, root: r}\nprofiles: p\nprofiles: q\n",
		  "3:1: duplicate key 'profiles' (first given at 2:1)\n" },
		{ NULL, NULL },
	};

	(void)state;
	for (const struct bad_case *bc = cases; bc->text; bc++) {
		struct st_config *c = (struct st_config *)1;
		char err[PATH_MAX + 512], *diag, *want = NULL;
		size_t wlen = 0, lines = 0;
		const char *s;
		FILE *w;
		int rc;

		diag = load(bc->text, &c, &rc, err, sizeof(err));
		/* Prefix every expected line with the file's name, except the indented source
		 * line and caret shown under a syntax error (they are not errors either). */
		w = open_memstream(&want, &wlen);
		assert_non_null(w);
		for (s = bc->diag; *s;) {
			const char *nl = strchr(s, '\n');

			if (*s == ' ') {
				fprintf(w, "%.*s\n", (int)(nl - s), s);
			} else {
				fprintf(w, "%s:%.*s\n", in_dir("station.yaml"), (int)(nl - s), s);
				lines++;
			}
			s = nl + 1;
		}
		fclose(w);
		if (strcmp(diag, want) != 0)
			fail_msg("for:\n%s\nexpected:\n%sgot:\n%s", bc->text, want, diag);
		assert_int_equal(rc, ST_E_CONFIG);
		assert_null(c);
		free(want);
		want = NULL;
		w = open_memstream(&want, &wlen);
		assert_non_null(w);
		fprintf(w, "%zu error%s in %s", lines, lines == 1 ? "" : "s",
			in_dir("station.yaml"));
		fclose(w);
		assert_string_equal(err, want);
		free(want);
		free(diag);
	}
}

/* station.yaml nested 100,000 deep is refused at the 64th level, where it is, and loading
 * stops there (reading on to the matching end took time quadratic in the depth). */
static void test_deep_nesting(void **state)
{
	static const struct {
		const char *head, *open, *close, *tail, *diag;
	} cases[] = {
		{ "ca: ", "[", "]", "\n", "1:68: nesting deeper than 64 levels" },
		{ "ca: ", "{a: ", "}", "\n", "1:257: nesting deeper than 64 levels" },
		{ "ca: {signer: file, key: k, cert: c, root: r}\nprofiles:\n  ", "- ", "", "x\n",
		  "3:129: nesting deeper than 64 levels" },
		{ "ca: ", "[", "", "\n", "1:68: nesting deeper than 64 levels" },
		{ "ca: ", "{a: ", "", "\n", "1:257: nesting deeper than 64 levels" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *text = tu_nested(cases[i].head, cases[i].open, cases[i].close, 100000,
				       cases[i].tail);
		struct st_config *c = (struct st_config *)1;
		char err[PATH_MAX + 512], want[PATH_MAX + 512], *diag;
		int rc;

		assert_non_null(text);
		diag = load(text, &c, &rc, err, sizeof(err));
		snprintf(want, sizeof(want), "%s:%s\n", in_dir("station.yaml"), cases[i].diag);
		if (strcmp(diag, want) != 0)
			fail_msg("case %zu:\nexpected:\n%sgot:\n%s", i, want, diag);
		assert_int_equal(rc, ST_E_CONFIG);
		assert_null(c);
		snprintf(want, sizeof(want), "1 error in %s", in_dir("station.yaml"));
		assert_string_equal(err, want);
		free(diag);
		free(text);
	}
}

static void test_missing_file(void **state)
{
	struct st_config *c = NULL;
	char err[512];
	int rc;

	(void)state;
	rc = st_config_load(in_dir("nope.yaml"), NULL, &c, err, sizeof(err));
	assert_int_equal(rc, ST_E_CONFIG);
	assert_null(c);
	assert_non_null(strstr(err, "1 error in "));
}

/* A configuration naming every kind of file a command reads, each on its own line. */
static const char files_yaml[] = "ca:\n"
				 "  signer: pkcs11\n"
				 "  key: \"pkcs11:token=t;object=o?module-path=/m.so\"\n"
				 "  pin_file: pin\n"
				 "  cert: ca.pem\n"
				 "  chain: chain.pem\n"
				 "  root: root.pem\n"
				 "  softhsm2_conf: softhsm2.conf\n"
				 "profiles: profdir\n"
				 "default_profile: def.yaml\n"
				 "slots:\n"
				 "  - port: /dev/null\n"
				 "    profile: slot.yaml\n"
				 "  - board_map: map.yaml\n"
				 "http:\n"
				 "  listen: 127.0.0.1:0\n"
				 "  tls_cert: tls.pem\n"
				 "  tls_key: tls.key\n"
				 "  client_ca: clients.pem\n"
				 "  token_file: tokens.txt\n";

/* The same for the file signer's key and a list of profiles. */
static const char list_yaml[] = "ca:\n"
				"  signer: file\n"
				"  key: ca.key\n"
				"  cert: ca.pem\n"
				"  root: root.pem\n"
				"profiles:\n"
				"  - a.yaml\n"
				"  - b.yaml\n";

static const struct {
	const char *yaml, *name, *key, *at;
	unsigned what;
} named_files[] = {
	{ files_yaml, "pin", "ca.pin_file", "4:3", ST_CONFIG_FILES_CA },
	{ files_yaml, "ca.pem", "ca.cert", "5:3", ST_CONFIG_FILES_CA },
	{ files_yaml, "chain.pem", "ca.chain", "6:3", ST_CONFIG_FILES_CA },
	{ files_yaml, "root.pem", "ca.root", "7:3", ST_CONFIG_FILES_CA },
	{ files_yaml, "softhsm2.conf", "ca.softhsm2_conf", "8:3", ST_CONFIG_FILES_CA },
	{ files_yaml, "profdir", "profiles", "9:1", ST_CONFIG_FILES_PROFILES },
	{ files_yaml, "def.yaml", "default_profile", "10:1", ST_CONFIG_FILES_PROFILES },
	{ files_yaml, "slot.yaml", "slots.profile", "13:5", ST_CONFIG_FILES_PROFILES },
	{ files_yaml, "map.yaml", "slots.board_map", "14:5", ST_CONFIG_FILES_SLOTS },
	{ files_yaml, "tls.pem", "http.tls_cert", "17:3", ST_CONFIG_FILES_HTTP },
	{ files_yaml, "tls.key", "http.tls_key", "18:3", ST_CONFIG_FILES_HTTP },
	{ files_yaml, "clients.pem", "http.client_ca", "19:3", ST_CONFIG_FILES_HTTP },
	{ files_yaml, "tokens.txt", "http.token_file", "20:3", ST_CONFIG_FILES_HTTP },
	{ list_yaml, "ca.key", "ca.key", "3:3", ST_CONFIG_FILES_CA },
	{ list_yaml, "ca.pem", "ca.cert", "4:3", ST_CONFIG_FILES_CA },
	{ list_yaml, "a.yaml", "profiles", "7:5", ST_CONFIG_FILES_PROFILES },
	{ list_yaml, "b.yaml", "profiles", "8:5", ST_CONFIG_FILES_PROFILES },
};

/* Loads yaml from fdir/station.yaml and checks its files for what; returns the problems
 * reported (free()), rc the result. */
static char *check_files(const char *fdir, const char *yaml, unsigned what, int *rc)
{
	char path[PATH_MAX + 32], err[512], *diag = NULL;
	struct st_config *c = NULL;
	size_t dlen = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/station.yaml", fdir);
	assert_int_equal(tu_write_text(path, yaml, 0600), 0);
	assert_int_equal(st_config_load(path, NULL, &c, err, sizeof(err)), 0);
	f = open_memstream(&diag, &dlen);
	assert_non_null(f);
	*rc = st_config_check_files(c, what, f, err, sizeof(err));
	fclose(f);
	if (*rc)
		assert_non_null(strstr(err, "error"));
	st_config_free(c);
	return diag;
}

/* Every file (or directory) the configuration names: when one is missing, the check says so
 * at the key (or list item) that names it, once, and only for commands that read it. */
static void test_files_named(void **state)
{
	static const char *const files[] = { "pin", "ca.pem", "chain.pem", "root.pem",
					     "softhsm2.conf", "def.yaml", "slot.yaml",
					     "map.yaml", "tls.pem", "tls.key", "clients.pem",
					     "tokens.txt", "ca.key", "a.yaml", "b.yaml" };
	char fdir[PATH_MAX], path[PATH_MAX + 64], moved[PATH_MAX + 80], want[3 * PATH_MAX];
	char *diag;
	int rc;

	(void)state;
	snprintf(fdir, sizeof(fdir), "%s", tu_tmpdir("config_files"));
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", fdir, files[i]);
		assert_int_equal(tu_write_text(path, "x\n", 0600), 0);
	}
	snprintf(path, sizeof(path), "%s/profdir", fdir);
	assert_int_equal(mkdir(path, 0700), 0);
	diag = check_files(fdir, files_yaml, ST_CONFIG_FILES_ALL, &rc);
	assert_int_equal(rc, 0);
	assert_string_equal(diag, "");
	free(diag);
	diag = check_files(fdir, list_yaml, ST_CONFIG_FILES_ALL, &rc);
	assert_int_equal(rc, 0);
	free(diag);

	for (size_t i = 0; i < sizeof(named_files) / sizeof(named_files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", fdir, named_files[i].name);
		snprintf(moved, sizeof(moved), "%s.away", path);
		assert_int_equal(rename(path, moved), 0);
		diag = check_files(fdir, named_files[i].yaml, ST_CONFIG_FILES_ALL, &rc);
		assert_int_equal(rc, ST_E_CONFIG);
		snprintf(want, sizeof(want), "%s/station.yaml:%s: '%s' names %s, which does not "
			 "exist\n", fdir, named_files[i].at, named_files[i].key, path);
		assert_string_equal(diag, want);
		free(diag);
		/* Only the commands that read it look for it. */
		diag = check_files(fdir, named_files[i].yaml,
				   ST_CONFIG_FILES_ALL & ~named_files[i].what, &rc);
		assert_int_equal(rc, 0);
		free(diag);
		assert_int_equal(rename(moved, path), 0);
	}

	/* A directory where a file belongs, and the other way round. */
	snprintf(path, sizeof(path), "%s/ca.pem", fdir);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/profdir", fdir);
	assert_int_equal(rmdir(path), 0);
	assert_int_equal(tu_write_text(path, "x\n", 0600), 0);
	diag = check_files(fdir, files_yaml, ST_CONFIG_FILES_ALL, &rc);
	assert_int_equal(rc, ST_E_CONFIG);
	assert_non_null(strstr(diag, ":5:3: 'ca.cert' names "));
	assert_non_null(strstr(diag, "ca.pem, which is a directory, not a file\n"));
	assert_non_null(strstr(diag, ":9:1: 'profiles' names "));
	assert_non_null(strstr(diag, "profdir, which is not a directory\n"));
	free(diag);

	/* A PIN credential outside the service manager. */
	unsetenv("CREDENTIALS_DIRECTORY");
	diag = check_files(fdir, "ca:\n  signer: pkcs11\n  key: \"pkcs11:token=t;object=o\"\n"
			   "  pin_file: ${CREDENTIALS_DIRECTORY}/pin\n  cert: a.yaml\n"
			   "  root: b.yaml\n", ST_CONFIG_FILES_CA, &rc);
	assert_int_equal(rc, ST_E_CONFIG);
	assert_non_null(strstr(diag, ":4:3: 'ca.pin_file' names ${CREDENTIALS_DIRECTORY}/pin, "
				     "but CREDENTIALS_DIRECTORY is not set"));
	free(diag);
	assert_int_equal(tu_rmtree(fdir), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pkcs11_config),
		cmocka_unit_test(test_file_config),
	cmocka_unit_test(test_ledger_spec),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_deep_nesting),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_files_named),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
