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
		  "3:1: tab character where YAML expects spaces; indent with spaces only\n" },
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
		/* Prefix every expected line with the file's name. */
		w = open_memstream(&want, &wlen);
		assert_non_null(w);
		for (s = bc->diag; *s;) {
			const char *nl = strchr(s, '\n');
			fprintf(w, "%s:%.*s\n", in_dir("station.yaml"), (int)(nl - s), s);
			s = nl + 1;
			lines++;
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pkcs11_config),
		cmocka_unit_test(test_file_config),
	cmocka_unit_test(test_ledger_spec),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_missing_file),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
