/* Profiles: every broken profile in tests/profiles/bad/ fails with exactly the
 * file:line:col messages written on its first lines; the example profiles in profiles/ load
 * and render byte for byte as tests/profiles/golden/ holds them; rendering enforces the
 * device id, the paths and the size bounds. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cmocka.h>

#include "err.h"
#include "profile.h"
#include "testutil.h"

#define UUID "6b3c7c2e-4f1a-4c1e-9d2b-2f0c8a1e5d3f"

static char src_dir[4096];

static const char *src(const char *rel)
{
	static char path[8192];

	snprintf(path, sizeof(path), "%s/%s", src_dir, rel);
	return path;
}

static char *slurp(const char *path)
{
	size_t len;
	char *s = (char *)tu_read_file(path, &len);

	assert_non_null(s);
	return s;
}

/* Loads a profile written inline, as if it were the file name (relative references resolve
 * against name's directory). Returns the diagnostics (free()) and sets *p. */
static char *load_text(const char *name, const char *text, const struct st_profile **p, int *rc,
		       char *err, size_t errlen)
{
	char *diag = NULL;
	size_t dlen = 0;
	FILE *f = open_memstream(&diag, &dlen);

	assert_non_null(f);
	*rc = st_profile_load_buffer(name, text, strlen(text), f, p, err, errlen);
	fclose(f);
	return diag;
}

static const char minimal[] = "sku: t-1\n"
			      "factory: acme-factory\n"
			      "files:\n"
			      "  - path: /etc/id\n"
			      "    content: \"{device_id}\"\n";

/* --- Broken profiles -------------------------------------------------------------------- */

static void check_bad_file(const char *name)
{
	char *text = slurp(name);
	char expected[8192] = "";
	size_t nexp = 0;
	const struct st_profile *p = (const struct st_profile *)1;
	char err[512], want_err[512];
	char *diag = NULL;
	size_t dlen = 0;
	FILE *f;
	int rc;

	/* "# expect: L:C: message" names this file; "# expect: FILE:L:C: message" another;
	 * "# expect:   TEXT" (indented) is the source line or caret shown under a message. */
	for (char *line = text; strncmp(line, "# expect: ", 10) == 0;) {
		char *nl = strchr(line, '\n');
		char *e = line + 10;

		assert_non_null(nl);
		*nl = '\0';
		if (*e >= '0' && *e <= '9')
			snprintf(expected + strlen(expected), sizeof(expected) - strlen(expected),
				 "%s:%s\n", name, e);
		else
			snprintf(expected + strlen(expected), sizeof(expected) - strlen(expected),
				 "%s\n", e);
		if (*e != ' ')
			nexp++;
		line = nl + 1;
	}
	if (nexp == 0)
		fail_msg("%s has no '# expect: ' line", name);
	f = open_memstream(&diag, &dlen);
	assert_non_null(f);
	rc = st_profile_load(name, f, &p, err, sizeof(err));
	fclose(f);
	if (strcmp(diag, expected) != 0)
		fail_msg("%s:\nexpected:\n%sgot:\n%s", name, expected, diag);
	assert_int_equal(rc, ST_E_PROFILE);
	assert_null(p);
	snprintf(want_err, sizeof(want_err), "%zu error%s in %s", nexp, nexp == 1 ? "" : "s", name);
	assert_string_equal(err, want_err);
	free(diag);
	free(text);
}

static void test_bad_profiles(void **state)
{
	char cwd[4096];
	struct dirent **list;
	int n, checked = 0;

	(void)state;
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	/* Messages name files as the user gave them; load from the directory itself so they
	 * read "unknown-key.yaml:5:3: ...". */
	assert_int_equal(chdir(src("tests/profiles/bad")), 0);
	n = scandir(".", &list, NULL, alphasort);
	assert_true(n > 0);
	for (int i = 0; i < n; i++) {
		size_t l = strlen(list[i]->d_name);

		if (l > 5 && strcmp(list[i]->d_name + l - 5, ".yaml") == 0) {
			check_bad_file(list[i]->d_name);
			checked++;
		}
		free(list[i]);
	}
	free(list);
	assert_int_equal(chdir(cwd), 0);
	assert_true(checked >= 25);
}

/* --- Examples and golden renders ------------------------------------------------------------ */

static const struct st_profile *load_ok(const char *path)
{
	const struct st_profile *p = NULL;
	char err[512];
	int rc = st_profile_load(path, stderr, &p, err, sizeof(err));

	if (rc != 0)
		fail_msg("%s: %s", path, err);
	assert_non_null(p);
	return p;
}

static void test_examples(void **state)
{
	const struct st_profile *gw, *prod, *mcu;

	(void)state;
	gw = load_ok(src("profiles/lmp-gateway.yaml"));
	prod = load_ok(src("profiles/lmp-gateway-production.yaml"));
	mcu = load_ok(src("profiles/mcu-sensor.yaml"));

	assert_string_equal(gw->sku, "acme-gw100");
	assert_string_equal(gw->policy.factory, "acme-factory");
	assert_int_equal(gw->policy.production, 0);
	assert_int_equal(gw->policy.key_algs, ST_KEY_EC_P256);
	assert_int_equal(gw->policy.validity_days, 7300);
	assert_int_equal(gw->policy.serial_mode, ST_SERIAL_RANDOM);
	assert_int_equal(gw->policy.past_ca, ST_PAST_CA_CLAMP);
	assert_int_equal(gw->policy.reprovision, ST_REPROVISION_REFUSE);
	assert_int_equal(gw->devid_source, ST_DEVID_BOARD);
	assert_string_equal(gw->devid_pattern, ST_PROFILE_UUID_PATTERN);
	assert_int_equal(gw->n_files, 4);
	assert_true(gw->has_sota);
	assert_string_equal(gw->sota_config_dir, "/var/sota");

	/* The production variant inherits what it does not say and overrides what it does. */
	assert_string_equal(prod->sku, "acme-gw100-prod");
	assert_int_equal(prod->policy.production, 1);
	assert_int_equal(prod->policy.past_ca, ST_PAST_CA_REJECT);
	assert_int_equal(prod->policy.validity_days, 1825);
	assert_int_equal(prod->n_match_hardware_ids, 1);
	assert_string_equal(prod->match_hardware_ids[0], "imx8mm-lpddr4-evk");
	assert_string_equal(prod->match_sku, "acme-gw100-prod");
	assert_string_equal(prod->sota_gateway, "https://ota-lite.foundries.io:8443");
	assert_int_equal(prod->sota_overrides.n, 1);
	assert_int_equal(prod->n_files, 5);

	assert_int_equal(mcu->devid_source, ST_DEVID_SEQUENCE);
	assert_string_equal(mcu->devid_prefix, "SN10-");
	assert_int_equal(mcu->devid_digits, 6);
	assert_int_equal(mcu->key_storage, ST_KEY_STORAGE_SECURE_ELEMENT);
	assert_int_equal(mcu->policy.validity_days, 3650);
	assert_false(mcu->has_sota);

	/* Matching: the development profile takes any sku, the production one only its own. */
	assert_true(st_profile_matches(gw, "imx8mm-lpddr4-evk", NULL));
	assert_true(st_profile_matches(gw, "imx8mm-lpddr4-evk", "acme-gw100-prod"));
	assert_false(st_profile_matches(gw, "imx8mp-evk", NULL));
	assert_false(st_profile_matches(prod, "imx8mm-lpddr4-evk", NULL));
	assert_true(st_profile_matches(prod, "imx8mm-lpddr4-evk", "acme-gw100-prod"));
	assert_true(st_profile_matches(mcu, "sn10-nrf9161", NULL));

	st_profile_free(gw);
	st_profile_free(prod);
	st_profile_free(mcu);
	st_profile_free(NULL);
}

/* Reads "--device-id X --hardware-id Y" from golden/<name>.args. */
static void read_args(const char *name, char *devid, char *hwid)
{
	char path[512], *text;

	snprintf(path, sizeof(path), "tests/profiles/golden/%s.args", name);
	text = slurp(src(path));
	assert_int_equal(sscanf(text, "--device-id %255s --hardware-id %255s", devid, hwid), 2);
	free(text);
}

/* A shipped profile with the golden inputs of tests/profiles: its args and PEM files. */
struct golden {
	const struct st_profile *p;
	struct st_render_input in;
	char devid[256], hwid[256];
	char *cert, *chain, *root;
};

static void golden_open(const char *name, struct golden *g)
{
	char path[512];

	memset(g, 0, sizeof(*g));
	g->cert = slurp(src("tests/profiles/inputs/cert.pem"));
	g->chain = slurp(src("tests/profiles/inputs/chain.pem"));
	g->root = slurp(src("tests/profiles/inputs/root.pem"));
	snprintf(path, sizeof(path), "profiles/%s.yaml", name);
	g->p = load_ok(src(path));
	read_args(name, g->devid, g->hwid);
	g->in.device_id = g->devid;
	g->in.hardware_id = g->hwid;
	g->in.cert_pem = g->cert;
	g->in.chain_pem = g->chain;
	g->in.root_pem = g->root;
}

static void golden_close(struct golden *g)
{
	st_profile_free(g->p);
	free(g->cert);
	free(g->chain);
	free(g->root);
}

static void check_golden(const char *name)
{
	char path[512];
	char *manifest, *line, *save = NULL;
	struct golden g;
	struct st_render *r = NULL;
	char err[512];
	size_t i = 0;

	golden_open(name, &g);
	if (st_profile_render(g.p, &g.in, &r, err, sizeof(err)) != 0)
		fail_msg("%s: %s", name, err);
	/* golden/<name>.files lists "MODE PATH" in the order the profile writes them. */
	snprintf(path, sizeof(path), "tests/profiles/golden/%s.files", name);
	manifest = slurp(src(path));
	for (line = strtok_r(manifest, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		unsigned mode;
		char fpath[512], gpath[1100];
		char *want;
		size_t wlen;

		assert_int_equal(sscanf(line, "%o %511s", &mode, fpath), 2);
		assert_true(i < r->n);
		assert_string_equal(r->files[i].path, fpath);
		assert_int_equal(r->files[i].mode, mode);
		snprintf(gpath, sizeof(gpath), "tests/profiles/golden/%s%s", name, fpath);
		want = (char *)tu_read_file(src(gpath), &wlen);
		assert_non_null(want);
		if (wlen != r->files[i].len || memcmp(want, r->files[i].data, wlen) != 0)
			fail_msg("%s: %s differs from the golden file:\n%.*s", name, fpath,
				 (int)r->files[i].len, (const char *)r->files[i].data);
		free(want);
		i++;
	}
	assert_int_equal(i, r->n);
	free(manifest);
	st_render_free(r);
	golden_close(&g);
}

static void test_golden_renders(void **state)
{
	(void)state;
	check_golden("lmp-gateway");
	check_golden("lmp-gateway-production");
	check_golden("mcu-sensor");
}

/* Rendered in two halves (cert_files -1 without the certificate, then 1 with it), each shipped
 * profile's files are those of one render, byte for byte, each in exactly one half: the half
 * st_profile_file_uses_cert() names, in its place. */
static void check_halves(const char *name)
{
	struct st_render *all = NULL, *half[2] = { NULL, NULL };
	struct golden g;
	char err[512];
	unsigned early = 0, public = 0;

	golden_open(name, &g);
	assert_int_equal(st_profile_render(g.p, &g.in, &all, err, sizeof(err)), 0);
	g.in.cert_pem = NULL;
	g.in.cert_files = -1;
	assert_int_equal(st_profile_render(g.p, &g.in, &half[0], err, sizeof(err)), 0);
	g.in.cert_pem = g.cert;
	g.in.cert_files = 1;
	assert_int_equal(st_profile_render(g.p, &g.in, &half[1], err, sizeof(err)), 0);
	assert_int_equal(half[0]->n, all->n);
	assert_int_equal(half[1]->n, all->n);
	for (size_t i = 0; i < all->n; i++) {
		int c = st_profile_file_uses_cert(g.p, i);
		const struct st_render_file *f = &half[c]->files[i];

		early += !c;
		assert_null(half[!c]->files[i].path);
		assert_null(half[!c]->files[i].data);
		assert_non_null(f->path);
		assert_string_equal(f->path, all->files[i].path);
		assert_int_equal(f->mode, all->files[i].mode);
		assert_int_equal(f->len, all->files[i].len);
		assert_memory_equal(f->data, all->files[i].data, f->len);
		/* A file that holds the certificate has its PEM; the others cannot. */
		assert_int_equal(memmem(f->data, f->len, g.cert, strlen(g.cert)) != NULL, c);
	}
	/* Every shipped profile has files that go before the certificate (root.crt at least)
	 * and files that hold it; and a public one among the first (root.crt, trust.crt):
	 * the CA's certificates and nothing else. */
	assert_true(early > 0 && early < all->n);
	for (size_t i = 0; i < all->n; i++) {
		const struct st_render_file *f = &all->files[i];
		size_t rl = strlen(g.in.root_pem), cl = g.in.chain_pem ? strlen(g.in.chain_pem) : 0;

		if (!st_profile_file_is_public(g.p, i))
			continue;
		public++;
		assert_false(st_profile_file_uses_cert(g.p, i));
		assert_true((f->len == rl && memcmp(f->data, g.in.root_pem, rl) == 0) ||
			    (f->len == cl + rl && memcmp(f->data, g.in.chain_pem, cl) == 0 &&
			     memcmp(f->data + cl, g.in.root_pem, rl) == 0));
	}
	assert_true(public > 0 && public < early);
	assert_int_equal(st_profile_file_is_public(g.p, all->n), 0);
	assert_int_equal(st_profile_file_uses_cert(g.p, all->n), 0);
	st_render_free(all);
	st_render_free(half[0]);
	st_render_free(half[1]);
	golden_close(&g);
}

static void test_render_halves(void **state)
{
	(void)state;
	check_halves("lmp-gateway");
	check_halves("lmp-gateway-production");
	check_halves("mcu-sensor");
}

/* A file is public when its content is the CA's certificates alone: any text of the
 * profile's own, any other variable, makes it private (it may hold what only a board the
 * station accepts may have). */
static void test_public_files(void **state)
{
	static const struct {
		const char *content;
		int public;
	} cases[] = {
		{ "{root_pem}", 1 },
		{ "{chain_pem}{root_pem}", 1 },
		{ "{root_pem}{chain_pem}{root_pem}", 1 },
		{ "", 1 },
		{ "{root_pem}\\n", 0 },
		{ "# trust\\n{root_pem}", 0 },
		{ "{{root_pem}}", 0 },
		{ "{device_id}", 0 },
		{ "{root_pem}{device_id}", 0 },
		{ "{cert_pem}", 0 },
		{ "{cert_pem}{chain_pem}", 0 },
		{ "{sota_toml}", 0 },
		{ "{gateway}", 0 },
		{ "{sku}{factory}{hardware_id}", 0 },
		{ "token=s3cret", 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct st_profile *p = NULL;
		char text[1024], err[512];
		char *diag;
		int rc;

		snprintf(text, sizeof(text),
			 "sku: t-1\n"
			 "factory: acme-factory\n"
			 "sota: {gateway: 'https://gw.example:8443', ostree_server: 'https://o.example'}\n"
			 "files:\n"
			 "  - path: /etc/id\n"
			 "    content: \"{device_id}\"\n"
			 "  - path: /etc/{device_id}/f\n"
			 "    content: \"%s\"\n",
			 cases[i].content);
		diag = load_text("/nonexistent/t.yaml", text, &p, &rc, err, sizeof(err));
		if (rc != 0)
			fail_msg("%s: %s\n%s", cases[i].content, err, diag);
		if (st_profile_file_is_public(p, 1) != cases[i].public)
			fail_msg("'%s' is %s", cases[i].content,
				 cases[i].public ? "not public" : "public");
		assert_false(st_profile_file_is_public(p, 0));
		free(diag);
		st_profile_free(p);
	}
}

/* --- Device ids ----------------------------------------------------------------------------- */

static void test_device_ids(void **state)
{
	const struct st_profile *p = NULL;
	char err[512], buf[64];
	char *diag;
	int rc;

	(void)state;
	diag = load_text("/nonexistent/t.yaml", minimal, &p, &rc, err, sizeof(err));
	assert_int_equal(rc, 0);
	free(diag);
	/* Default: a lower-case UUID as the device tool makes them. */
	assert_int_equal(st_profile_check_device_id(p, UUID, err, sizeof(err)), 0);
	assert_int_equal(st_profile_check_device_id(p, "6B3C7C2E-4F1A-4C1E-9D2B-2F0C8A1E5D3F", err,
						    sizeof(err)),
			 ST_E_PROFILE_DEVICE_ID);
	assert_non_null(strstr(err, "does not match"));
	assert_int_equal(st_profile_check_device_id(p, UUID "x", err, sizeof(err)),
			 ST_E_PROFILE_DEVICE_ID);
	assert_int_equal(st_profile_check_device_id(p, "", err, sizeof(err)),
			 ST_E_PROFILE_DEVICE_ID);
	assert_int_equal(st_profile_check_device_id(p, "a\nb", err, sizeof(err)),
			 ST_E_PROFILE_DEVICE_ID);
	assert_int_equal(st_profile_sequence_id(p, 1, buf, sizeof(buf)), ST_E_INVAL);
	st_profile_free(p);

	diag = load_text("/nonexistent/t.yaml",
			 "sku: t-2\nfactory: f\ndevice_id: {pattern: '^GW[0-9]{4}$'}\n"
			 "files: [{path: /id, content: '{device_id}'}]\n",
			 &p, &rc, err, sizeof(err));
	assert_int_equal(rc, 0);
	free(diag);
	assert_int_equal(st_profile_check_device_id(p, "GW0042", err, sizeof(err)), 0);
	assert_int_equal(st_profile_check_device_id(p, "GW042", err, sizeof(err)),
			 ST_E_PROFILE_DEVICE_ID);
	assert_int_equal(st_profile_check_device_id(p, "xGW0042", err, sizeof(err)),
			 ST_E_PROFILE_DEVICE_ID);
	st_profile_free(p);

	diag = load_text(
		"/nonexistent/t.yaml",
		"sku: t-3\nfactory: f\ndevice_id: {source: sequence, prefix: SN-, digits: 4}\n"
		"files: [{path: /id, content: '{device_id}'}]\n",
		&p, &rc, err, sizeof(err));
	assert_int_equal(rc, 0);
	free(diag);
	assert_int_equal(st_profile_sequence_id(p, 42, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "SN-0042");
	assert_int_equal(st_profile_check_device_id(p, buf, err, sizeof(err)), 0);
	assert_int_equal(st_profile_sequence_id(p, 9999, buf, sizeof(buf)), 0);
	assert_int_equal(st_profile_sequence_id(p, 10000, buf, sizeof(buf)), ST_E_INVAL);
	assert_int_equal(st_profile_sequence_id(p, 1, buf, 4), ST_E_INVAL);
	assert_int_equal(st_profile_check_device_id(p, "SN-42", err, sizeof(err)),
			 ST_E_PROFILE_DEVICE_ID);
	assert_int_equal(st_profile_check_device_id(p, "SN-004a", err, sizeof(err)),
			 ST_E_PROFILE_DEVICE_ID);
	st_profile_free(p);

	diag = load_text("/nonexistent/t.yaml",
			 "sku: t-4\nfactory: f\ndevice_id: {source: uuid4}\n"
			 "certificate: {serial: uuid}\n"
			 "files: [{path: /id, content: '{device_id}'}]\n",
			 &p, &rc, err, sizeof(err));
	assert_int_equal(rc, 0);
	free(diag);
	assert_int_equal(p->policy.serial_mode, ST_SERIAL_UUID);
	assert_int_equal(st_profile_check_device_id(p, UUID, err, sizeof(err)), 0);
	assert_int_equal(
		st_profile_check_device_id(p, "6b3c7c2e4f1a4c1e9d2b2f0c8a1e5d3f", err, sizeof(err)),
		ST_E_PROFILE_DEVICE_ID);
	st_profile_free(p);
}

/* Device ids read from the board's secure element, and which `reprovision: reissue` profiles
 * load: reissue works only for an authenticated device id, so a profile where no request can
 * authenticate one is refused, and one where only HTTP can gets a warning. */
static void test_reissue_sources(void **state)
{
	static const char *const sources[] = { "board", "uuid4", "sequence, prefix: SN-",
					       "secure-element" };
	static const char *const storages[] = { "any", "secure-element" };
	static const char *const modes[] = { "refuse", "reissue" };
	const struct st_profile *p = NULL;
	char text[512], err[512];
	char *diag;
	int rc;

	(void)state;
	for (size_t s = 0; s < 4; s++) {
		for (size_t k = 0; k < 2; k++) {
			for (size_t m = 0; m < 2; m++) {
				int se_src = s == 3, se_key = k == 1, reissue = m == 1;

				snprintf(text, sizeof(text),
					 "sku: t-r\nfactory: f\ndevice_id: {source: %s}\n"
					 "key: {storage: %s}\ncertificate: {reprovision: %s}\n"
					 "files: [{path: /id, content: '{device_id}'}]\n",
					 sources[s], storages[k], modes[m]);
				diag = load_text("/nonexistent/t.yaml", text, &p, &rc, err,
						 sizeof(err));
				if (se_src && !se_key) {
					assert_int_equal(rc, ST_E_PROFILE);
					assert_non_null(strstr(diag, "t.yaml:4:16: 'device_id.source: "
								     "secure-element' needs 'key."
								     "storage: secure-element'"));
				} else if (reissue && !se_src && se_key) {
					assert_int_equal(rc, ST_E_PROFILE);
					assert_non_null(strstr(diag, "t.yaml:5:28: 'reprovision: "
								     "reissue' can never apply"));
				} else if (reissue && !se_src) {
					assert_int_equal(rc, 0);
					assert_non_null(strstr(diag, "t.yaml:5:28: warning: "
								     "'reprovision: reissue' applies "
								     "only to HTTP registrations"));
					assert_int_equal(p->policy.reprovision,
							 ST_REPROVISION_REISSUE);
				} else {
					if (rc != 0 || (diag && diag[0]))
						fail_msg("%s: rc %d: %s", text, rc, diag);
				}
				free(diag);
				st_profile_free(p);
				p = NULL;
			}
		}
	}

	/* A secure-element id is checked like a board's: the default UUID pattern, or the
	 * profile's own. */
	diag = load_text("/nonexistent/t.yaml",
			 "sku: t-se\nfactory: f\ndevice_id: {source: secure-element, pattern: "
			 "'^[0-9a-f]{18}$'}\nkey: {storage: secure-element}\n"
			 "files: [{path: /id, content: '{device_id}'}]\n",
			 &p, &rc, err, sizeof(err));
	assert_int_equal(rc, 0);
	free(diag);
	assert_int_equal(p->devid_source, ST_DEVID_SECURE_ELEMENT);
	assert_int_equal(st_profile_check_device_id(p, "0123c0ffee0123abcd", err, sizeof(err)), 0);
	assert_int_equal(st_profile_check_device_id(p, UUID, err, sizeof(err)),
			 ST_E_PROFILE_DEVICE_ID);
	st_profile_free(p);
	diag = load_text("/nonexistent/t.yaml",
			 "sku: t-se\nfactory: f\ndevice_id: {source: secure-element}\n"
			 "key: {storage: secure-element}\n"
			 "files: [{path: /id, content: '{device_id}'}]\n",
			 &p, &rc, err, sizeof(err));
	assert_int_equal(rc, 0);
	free(diag);
	assert_int_equal(st_profile_check_device_id(p, UUID, err, sizeof(err)), 0);
	assert_int_equal(st_profile_check_device_id(p, "GW0042", err, sizeof(err)),
			 ST_E_PROFILE_DEVICE_ID);
	st_profile_free(p);
}

/* --- Rendering ------------------------------------------------------------------------------ */

static const char sota_profile[] =
	"sku: t-sota\n"
	"factory: acme-factory\n"
	"sota:\n"
	"  gateway: https://gw.example:8443\n"
	"  ostree_server: https://ostree.example\n"
	"  overrides:\n"
	"    pacman: {tags: '\"devel\"'}\n"
	"files:\n"
	"  - set: foundries\n"
	"  - path: '{config_dir}/board-{device_id}.txt'\n"
	"    mode: 600\n"
	"    content: \"{sku}/{factory}/{hardware_id} {{literal}}\\n\"\n";

static void test_render_overrides_and_dir(void **state)
{
	const struct st_profile *p = NULL;
	struct st_render *r = NULL;
	struct st_sota_overrides req = { 0 };
	struct st_render_input in = { 0 };
	char err[512];
	char *diag;
	int rc;

	(void)state;
	diag = load_text("/nonexistent/t.yaml", sota_profile, &p, &rc, err, sizeof(err));
	if (rc != 0)
		fail_msg("%s%s", diag, err);
	free(diag);
	/* A registration request's overrides win over the profile's, and its config dir
	 * moves every file. */
	assert_int_equal(st_sota_override_set(&req, "pacman", "tags", "\"main\""), 0);
	assert_int_equal(st_sota_override_set(&req, "extra", "note", "\"{hardware_id}\""), 0);
	in.device_id = UUID;
	in.hardware_id = "hw-1";
	in.cert_pem = "CERT";
	in.chain_pem = "CHAIN\n";
	in.root_pem = "ROOT";
	in.config_dir = "/data/sota";
	in.overrides = &req;
	rc = st_profile_render(p, &in, &r, err, sizeof(err));
	if (rc != 0)
		fail_msg("%s", err);
	assert_int_equal(r->n, 5);
	assert_string_equal(r->files[0].path, "/data/sota/client.pem");
	assert_string_equal((char *)r->files[0].data, "CERT\n");
	assert_string_equal(r->files[1].path, "/data/sota/client.chained");
	assert_string_equal((char *)r->files[1].data, "CERT\nCHAIN\n");
	assert_string_equal((char *)r->files[2].data, "ROOT\n");
	assert_string_equal(r->files[3].path, "/data/sota/sota.toml");
	assert_non_null(strstr((char *)r->files[3].data, "tags = \"main\"\n"));
	assert_null(strstr((char *)r->files[3].data, "devel"));
	assert_non_null(strstr((char *)r->files[3].data, "path = \"/data/sota/\"\n"));
	assert_non_null(strstr((char *)r->files[3].data, "\n\n[extra]\nnote = \"hw-1\"\n"));
	assert_string_equal(r->files[4].path, "/data/sota/board-" UUID ".txt");
	assert_int_equal(r->files[4].mode, 0600);
	assert_string_equal((char *)r->files[4].data, "t-sota/acme-factory/hw-1 {literal}\n");
	st_render_free(r);

	/* Without request overrides: the profile's own. */
	in.overrides = NULL;
	in.config_dir = NULL;
	assert_int_equal(st_profile_render(p, &in, &r, err, sizeof(err)), 0);
	assert_string_equal(r->files[0].path, "/var/sota/client.pem");
	assert_non_null(strstr((char *)r->files[3].data, "tags = \"devel\"\n"));
	st_render_free(r);

	/* A request override that would break the reference server's formatting. */
	st_sota_overrides_clear(&req);
	assert_int_equal(st_sota_override_set(&req, "pacman", "tags", "\"{nope}\""), 0);
	in.overrides = &req;
	assert_int_equal(st_profile_render(p, &in, &r, err, sizeof(err)), ST_E_PROFILE_VALUE);
	assert_null(r);
	assert_non_null(strstr(err, "{nope}"));

	/* Inputs that cannot be written. */
	in.overrides = NULL;
	in.hardware_id = "hw\"1";
	assert_int_equal(st_profile_render(p, &in, &r, err, sizeof(err)), ST_E_PROFILE_VALUE);
	assert_non_null(strstr(err, "hardware id"));
	in.hardware_id = "hw\n1";
	assert_int_equal(st_profile_render(p, &in, &r, err, sizeof(err)), ST_E_PROFILE_VALUE);
	in.hardware_id = "hw-1";
	in.config_dir = "relative/dir";
	assert_int_equal(st_profile_render(p, &in, &r, err, sizeof(err)), ST_E_PROFILE_VALUE);
	in.config_dir = "/var/../etc";
	assert_int_equal(st_profile_render(p, &in, &r, err, sizeof(err)), ST_E_PROFILE_VALUE);
	in.config_dir = NULL;
	in.device_id = "not-a-uuid";
	assert_int_equal(st_profile_render(p, &in, &r, err, sizeof(err)), ST_E_PROFILE_DEVICE_ID);
	assert_null(r);

	st_sota_overrides_clear(&req);
	st_profile_free(p);
}

static void test_render_p11(void **state)
{
	const struct st_profile *p = NULL;
	struct st_render *r = NULL;
	struct st_render_input in = { 0 };
	char err[512];
	char *diag;
	int rc;

	(void)state;
	diag = load_text("/nonexistent/t.yaml",
			 "sku: t-p11\n"
			 "factory: acme-factory\n"
			 "sota:\n"
			 "  gateway: https://gw.example\n"
			 "  ostree_server: https://ostree.example\n"
			 "  hardware_id: fixed-hw\n"
			 "  p11: {module: /usr/lib/libckteec.so.0, pass: '87654321'}\n"
			 "files:\n"
			 "  - path: /var/sota/sota.toml\n"
			 "    content: '{sota_toml}'\n",
			 &p, &rc, err, sizeof(err));
	if (rc != 0)
		fail_msg("%s%s", diag, err);
	free(diag);
	in.device_id = UUID;
	in.hardware_id = "board-hw";
	assert_int_equal(st_profile_render(p, &in, &r, err, sizeof(err)), 0);
	assert_string_equal((char *)r->files[0].data,
			    "[tls]\n"
			    "server = \"https://gw.example\"\n"
			    "ca_source = \"file\"\n"
			    "pkey_source = \"pkcs11\"\n"
			    "cert_source = \"pkcs11\"\n"
			    "\n"
			    "[provision]\n"
			    "server = \"https://gw.example\"\n"
			    "primary_ecu_hardware_id = \"fixed-hw\"\n"
			    "\n"
			    "[uptane]\n"
			    "repo_server = \"https://gw.example/repo\"\n"
			    "key_source = \"file\"\n"
			    "\n"
			    "[pacman]\n"
			    "type = \"ostree+compose_apps\"\n"
			    "ostree_server = \"https://ostree.example/ostree\"\n"
			    "\n"
			    "[storage]\n"
			    "type = \"sqlite\"\n"
			    "path = \"/var/sota/\"\n"
			    "# tls_pkey_path is not set\n"
			    "# tls_clientcert_path is not set\n"
			    "\n"
			    "[import]\n"
			    "tls_cacert_path = \"/var/sota/root.crt\"\n"
			    "# tls_pkey_path is not set\n"
			    "# tls_clientcert_path is not set\n"
			    "\n"
			    "[p11]\n"
			    "module = \"/usr/lib/libckteec.so.0\"\n"
			    "pass = \"87654321\"\n"
			    "tls_pkey_id = \"01\"\n"
			    "tls_clientcert_id = \"03\"\n");
	st_render_free(r);
	st_profile_free(p);
}

static void test_render_limits(void **state)
{
	const struct st_profile *p = NULL;
	struct st_render *r = NULL;
	struct st_render_input in = { 0 };
	size_t big = ST_PROFILE_MAX_FILE_BYTES;
	char *cert = malloc(big + 1);
	char err[512];
	char *diag;
	int rc;

	(void)state;
	assert_non_null(cert);
	/* Exactly at the limit passes; one byte over fails. */
	memset(cert, 'A', big - 1);
	cert[big - 1] = '\n';
	cert[big] = '\0';
	diag = load_text("/nonexistent/t.yaml",
			 "sku: t-big\nfactory: f\n"
			 "files:\n"
			 "  - {path: /a, content: '{cert_pem}'}\n"
			 "  - {path: /b, content: '{cert_pem}x'}\n",
			 &p, &rc, err, sizeof(err));
	assert_int_equal(rc, 0);
	free(diag);
	in.device_id = UUID;
	in.hardware_id = "hw";
	in.cert_pem = cert;
	assert_int_equal(st_profile_render(p, &in, &r, err, sizeof(err)), ST_E_RENDER_LIMIT);
	assert_null(r);
	assert_non_null(strstr(err, "/b"));
	st_profile_free(p);

	/* Five files of 64 KiB exceed the per-board total. */
	diag = load_text("/nonexistent/t.yaml",
			 "sku: t-total\nfactory: f\n"
			 "files:\n"
			 "  - {path: /a, content: '{cert_pem}'}\n"
			 "  - {path: /b, content: '{cert_pem}'}\n"
			 "  - {path: /c, content: '{cert_pem}'}\n"
			 "  - {path: /d, content: '{cert_pem}'}\n"
			 "  - {path: /e, content: '{cert_pem}'}\n",
			 &p, &rc, err, sizeof(err));
	assert_int_equal(rc, 0);
	free(diag);
	assert_int_equal(st_profile_render(p, &in, &r, err, sizeof(err)), ST_E_RENDER_LIMIT);
	assert_non_null(strstr(err, "/e"));
	st_profile_free(p);

	/* Paths that name the board are checked after expansion. */
	diag = load_text("/nonexistent/t.yaml",
			 "sku: t-path\nfactory: f\ndevice_id: {pattern: '^.+$'}\n"
			 "files:\n"
			 "  - {path: '/data/{device_id}', content: x}\n",
			 &p, &rc, err, sizeof(err));
	assert_int_equal(rc, 0);
	free(diag);
	in.cert_pem = NULL;
	in.device_id = "../etc";
	assert_int_equal(st_profile_render(p, &in, &r, err, sizeof(err)), ST_E_PROFILE_VALUE);
	assert_non_null(strstr(err, "'..'"));
	in.device_id = "a/b";
	assert_int_equal(st_profile_render(p, &in, &r, err, sizeof(err)), 0);
	assert_string_equal(r->files[0].path, "/data/a/b");
	st_render_free(r);
	st_profile_free(p);
	free(cert);
}

/* Nesting 100,000 deep is refused at the 64th level with where it is, and loading stops there:
 * reading on to the matching end made libyaml's scanner take time quadratic in the depth
 * (minutes here; about 45 minutes for a file at the 1 MiB limit). */
static void test_deep_nesting(void **state)
{
	static const struct {
		const char *head, *open, *close, *tail, *diag;
	} cases[] = {
		{ "sku: ", "[", "]", "\n", "1:69: nesting deeper than 64 levels\n" },
		{ "sku: ", "{a: ", "}", "\n", "1:258: nesting deeper than 64 levels\n" },
		{ "sku: t-1\nfactory: f\nfiles: ", "[", "]", "\n",
		  "3:71: nesting deeper than 64 levels\n" },
		{ "sku: t-1\nfactory: f\nfiles:\n  ", "- ", "", "x\n",
		  "4:129: nesting deeper than 64 levels\n" },
		/* Never closed: the first problem is still the depth, not the missing ']'. */
		{ "sku: ", "[", "", "\n", "1:69: nesting deeper than 64 levels\n" },
		{ "sku: ", "{a: ", "", "\n", "1:258: nesting deeper than 64 levels\n" },
		{ "sku: &a ", "[", "", "\n",
		  "1:6: anchors ('&a') are not supported; share settings with 'extends'\n"
		  "1:72: nesting deeper than 64 levels\n" },
	};
	const char *dir = tu_tmpdir("profile-deep");
	char path[4096], want[8192], err[512];

	(void)state;
	assert_non_null(dir);
	snprintf(path, sizeof(path), "%s/deep.yaml", dir);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *text = tu_nested(cases[i].head, cases[i].open, cases[i].close, 100000,
				       cases[i].tail);
		const struct st_profile *p = (const struct st_profile *)1;
		char *diag = NULL, *nl;
		size_t dlen = 0, nerr = 0;
		FILE *f;
		int rc;

		assert_non_null(text);
		assert_int_equal(tu_write_text(path, text, 0644), 0);
		want[0] = '\0';
		for (const char *d = cases[i].diag; (nl = strchr(d, '\n')); d = nl + 1, nerr++)
			snprintf(want + strlen(want), sizeof(want) - strlen(want), "%s:%.*s\n", path,
				 (int)(nl - d), d);
		/* From the file, as 'station profile check' and the station read it, and from a
		 * buffer (the fuzz target's way in). */
		for (int from_file = 1; from_file >= 0; from_file--) {
			f = open_memstream(&diag, &dlen);
			assert_non_null(f);
			if (from_file)
				rc = st_profile_load(path, f, &p, err, sizeof(err));
			else
				rc = st_profile_load_buffer(path, text, strlen(text), f, &p, err,
							    sizeof(err));
			fclose(f);
			if (strcmp(diag, want) != 0)
				fail_msg("case %zu:\nexpected:\n%sgot:\n%s", i, want, diag);
			assert_int_equal(rc, ST_E_PROFILE);
			assert_null(p);
			assert_non_null(strstr(err, nerr == 1 ? "1 error in " : "2 errors in "));
			free(diag);
		}
		free(text);
	}
	unlink(path);
	rmdir(dir);
}

/* --- Loading details ------------------------------------------------------------------------ */

static void test_buffer_and_templates(void **state)
{
	const char *dir = tu_tmpdir("profile");
	char path[4096], name[4096];
	const struct st_profile *p = NULL;
	struct st_render *r = NULL;
	struct st_render_input in = { 0 };
	char err[512];
	char *diag;
	FILE *f;
	int rc;

	(void)state;
	assert_non_null(dir);
	snprintf(path, sizeof(path), "%s/board.tmpl", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("id={device_id}\nbraces={{}}\n", f);
	fclose(f);
	/* Relative template paths resolve against the profile's own directory. */
	snprintf(name, sizeof(name), "%s/p.yaml", dir);
	diag = load_text(name,
			 "sku: t-tmpl\nfactory: f\n"
			 "files: [{path: /etc/board, template: board.tmpl, mode: '0644'}]\n",
			 &p, &rc, err, sizeof(err));
	if (rc != 0)
		fail_msg("%s%s", diag, err);
	free(diag);
	in.device_id = UUID;
	in.hardware_id = "hw";
	assert_int_equal(st_profile_render(p, &in, &r, err, sizeof(err)), 0);
	assert_string_equal((char *)r->files[0].data, "id=" UUID "\nbraces={}\n");
	st_render_free(r);
	st_profile_free(p);

	/* A FIFO is refused instead of blocking the loader. */
	snprintf(path, sizeof(path), "%s/fifo.tmpl", dir);
	assert_int_equal(mkfifo(path, 0600), 0);
	diag = load_text(name,
			 "sku: t-fifo\nfactory: f\nfiles: [{path: /etc/b, template: fifo.tmpl}]\n",
			 &p, &rc, err, sizeof(err));
	assert_int_equal(rc, ST_E_PROFILE);
	assert_non_null(strstr(diag, "not a regular file"));
	free(diag);

	unlink(path);
	snprintf(path, sizeof(path), "%s/board.tmpl", dir);
	unlink(path);
	rmdir(dir);

	/* The error count covers every problem of the run. */
	diag = load_text("t.yaml", "sku: [a]\nfactory: {}\nproduction: 1\nfiles: {}\n", &p, &rc,
			 err, sizeof(err));
	assert_int_equal(rc, ST_E_PROFILE);
	assert_string_equal(diag,
			    "t.yaml:1:6: 'sku' must be a single value, not a sequence\n"
			    "t.yaml:2:10: 'factory' must be a single value, not a mapping\n"
			    "t.yaml:3:13: 'production' must be true or false, not '1'\n"
			    "t.yaml:4:8: 'files' must be a sequence (a list of '- ' items), not a "
			    "mapping\n");
	assert_string_equal(err, "4 errors in t.yaml");
	free(diag);

	/* A file that does not exist is one error at 1:1. */
	rc = st_profile_load("/nonexistent/none.yaml", NULL, &p, err, sizeof(err));
	assert_int_equal(rc, ST_E_PROFILE);
	assert_string_equal(err, "1 error in /nonexistent/none.yaml");
	assert_null(p);
}

static void test_literal_block_columns(void **state)
{
	const struct st_profile *p = NULL;
	char err[512];
	char *diag;
	int rc;

	(void)state;
	/* Errors inside literal blocks point at the exact column, multibyte text included. */
	diag = load_text("t.yaml",
			 "sku: t\nfactory: f\nfiles:\n"
			 "  - path: /x\n"
			 "    content: |\n"
			 "      first\n"
			 "\n"
			 "      \xc3\xa9t\xc3\xa9 {nope} }\n",
			 &p, &rc, err, sizeof(err));
	assert_int_equal(rc, ST_E_PROFILE);
	assert_string_equal(diag, "t.yaml:8:11: unknown variable '{nope}'; known variables: "
				  "{device_id}, {hardware_id}, {sku}, {factory}, {cert_pem}, "
				  "{chain_pem}, {root_pem}, {gateway}, {ostree_server}, "
				  "{config_dir}, {sota_toml}\n");
	free(diag);
	/* Folded blocks cannot be mapped back; the error points at the block. */
	diag = load_text("t.yaml",
			 "sku: t\nfactory: f\nfiles:\n"
			 "  - path: /x\n"
			 "    content: >\n"
			 "      a\n"
			 "      b {nope}\n",
			 &p, &rc, err, sizeof(err));
	assert_int_equal(rc, ST_E_PROFILE);
	assert_non_null(strstr(diag, "t.yaml:5:14: unknown variable '{nope}'"));
	free(diag);
}

static void write_file(const char *dir, const char *name, const char *text)
{
	char path[4096];
	FILE *f;

	assert_true(snprintf(path, sizeof(path), "%s/%s", dir, name) < (int)sizeof(path));
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void remove_file(const char *dir, const char *name)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	unlink(path);
}

/* --- Paths a board cannot be sent are refused when the profile loads --------------------- */

/* Loads a profile with sota.config_dir config_dir and one file at path. */
static char *load_path(const char *config_dir, const char *path, const struct st_profile **p,
		       int *rc)
{
	char text[1024], err[512];

	snprintf(text, sizeof(text),
		 "sku: t\nfactory: f\n"
		 "sota: {gateway: https://g, ostree_server: https://o, config_dir: %s}\n"
		 "files:\n  - path: \"%s\"\n    content: x\n",
		 config_dir, path);
	return load_text("t.yaml", text, p, rc, err, sizeof(err));
}

static void test_wire_paths(void **state)
{
	/* The path is double-quoted at column 11 of line 5: its first character is column 12.
	 * col is where the error points: at the value when variables hide the offsets, and the
	 * message shows the path with the loader's sample values ("x"). */
	static const struct {
		const char *config_dir, *path;
		int col;
		const char *shown, *wire, *why;
	} bad[] = {
#define CHAR "has a character other than A-Z a-z 0-9 . _ -"
#define DOT "has a component that starts with '.'"
		{ "/var/sota", "/var/sota/my notes.txt", 24, NULL, "my notes.txt", CHAR },
		{ "/var/sota", "/var/sota/.hidden", 22, NULL, ".hidden", DOT },
		{ "/var/sota", "/var/sota/certs/.old/client.pem", 28, NULL, "certs/.old/client.pem",
		  DOT },
		{ "/var/sota", "/etc/acme/.device.conf", 22, NULL, "etc/acme/.device.conf", DOT },
		{ "/data/sota", "/data/sota/a~b", 24, NULL, "a~b", CHAR },
		{ "/var/sota", "/var/sota/a%2Fb", 23, NULL, "a%2Fb", CHAR },
		{ "/var/sota", "/var/sota/a,b", 23, NULL, "a,b", CHAR },
		{ "/var/sota", "/var/sota/na\xc3\xafve", 24, NULL, "na\xc3\xafve", CHAR },
		{ "/var/sota", "/var/sota/a=b", 23, NULL, "a=b", CHAR },
		{ "/var/sota", "/", 13, NULL, "", "is empty" },
		{ "/var/sota", "{config_dir}/.{device_id}", 11, "/var/sota/.x", ".x", DOT },
		{ "/data/sota", "{config_dir}/{sku} {device_id}", 11, "/data/sota/x x", "x x", CHAR },
		{ "/var/sota",
		  "/opt/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/x",
		  141, NULL,
		  "opt/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/x",
		  "is longer than 128 bytes" },
#undef CHAR
#undef DOT
	};
	static const struct {
		const char *config_dir, *path;
	} good[] = {
		{ "/var/sota", "/var/sota/client.pem" },
		{ "/var/sota", "/etc/acme/device.conf" },
		{ "/data/sota", "{config_dir}/certs/{device_id}.pem" },
		{ "/var/sota", "/var/sota.d/x_y-z.0" },
	};
	const struct st_profile *p;
	char want[1024];
	char *diag;
	int rc;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		p = NULL;
		diag = load_path(bad[i].config_dir, bad[i].path, &p, &rc);
		snprintf(want, sizeof(want),
			 "t.yaml:5:%d: path '%s' cannot be written over the board protocol: '%s' "
			 "%s\n",
			 bad[i].col, bad[i].shown ? bad[i].shown : bad[i].path, bad[i].wire,
			 bad[i].why);
		if (rc != ST_E_PROFILE || strcmp(diag, want) != 0)
			fail_msg("'%s':\nexpected: %sgot:      %s", bad[i].path, want, diag);
		assert_null(p);
		free(diag);
	}
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		diag = load_path(good[i].config_dir, good[i].path, &p, &rc);
		if (rc != 0)
			fail_msg("'%s': %s", good[i].path, diag);
		st_profile_free(p);
		free(diag);
	}
}

/* --- Files a profile reads stay inside its directory ------------------------------------ */

/* A name a profile may not read, and where in the name the loader must point. */
struct outside_case {
	const char *name;
	long col; /* offset of the component at fault, or -1: the value's start */
	const char *why;
};

/* Loads dir/p.yaml from text_fmt, whose one "%s" is the value under test; returns the
 * diagnostics (free()). */
static char *load_named(const char *dir, const char *text_fmt, const char *value, int *rc)
{
	char name[4096], text[8192], err[512];
	const struct st_profile *p = (const struct st_profile *)1;
	char *diag;

	assert_true(snprintf(name, sizeof(name), "%s/p.yaml", dir) < (int)sizeof(name));
	snprintf(text, sizeof(text), text_fmt, value);
	diag = load_text(name, text, &p, rc, err, sizeof(err));
	if (*rc == 0)
		st_profile_free(p);
	else
		assert_null(p);
	return diag;
}

static void test_reads_stay_inside(void **state)
{
	char root[2048], dir[4096], path[8192], abs_secret[8192], want[8192];
	/* Both keys that name a file to read; the value is double-quoted at column 16 of line
	 * 5 (template) or column 11 of line 1 (extends). */
	static const struct {
		const char *key, *fmt;
		int line, col;
	} keys[] = {
		{ "template",
		  "sku: t\nfactory: f\nfiles:\n  - path: /etc/x\n    template: \"%s\"\n", 5, 16 },
		{ "parent profile",
		  "extends: \"%s\"\nsku: t\nfactory: f\nfiles: [{path: /etc/x, content: x}]\n", 1,
		  11 },
	};
	const struct outside_case cases[] = {
		{ "../secret.txt", 0, "'..' leads out of the directory" },
		{ "sub/../../secret.txt", 4, "'..' leads out of the directory" },
		{ "sub/deeper/../ok.tmpl", 11, "'..' leads out of the directory" },
		{ "sub/deeper/..", 11, "'..' leads out of the directory" },
		{ "..", 0, "'..' leads out of the directory" },
		{ abs_secret, 0, "an absolute path leads out of the directory" },
		{ "/", 0, "an absolute path leads out of the directory" },
		{ "//etc/passwd", 0, "an absolute path leads out of the directory" },
		{ "sub//ok.tmpl", 4, "the name has an empty component ('//')" },
		{ "sub/", 3, "the name ends with '/'" },
		{ "sub/deeper/", 10, "the name ends with '/'" },
		{ "./ok.tmpl", 0, "the name has a '.' component" },
		{ "sub/./ok.tmpl", 4, "the name has a '.' component" },
		{ "link-out", 0, "'link-out' is a symbolic link, which is not followed" },
		{ "link-in", 0, "'link-in' is a symbolic link, which is not followed" },
		{ "link-abs", 0, "'link-abs' is a symbolic link, which is not followed" },
		{ "link-dir/secret.txt", 0, "'link-dir' is a symbolic link, which is not followed" },
		{ "sub/link-dir/secret.txt", 4,
		  "'sub/link-dir' is a symbolic link, which is not followed" },
		{ "sub/deeper/link-out", 11,
		  "'sub/deeper/link-out' is a symbolic link, which is not followed" },
		{ "sub/deeper/link-dir/deeper/ok.tmpl", 11,
		  "'sub/deeper/link-dir' is a symbolic link, which is not followed" },
	};
	/* Names that stay inside or read nothing: refused for what they are, never read
	 * through; percent, backslash and look-alike dots are plain characters. */
	const struct outside_case other[] = {
		{ "%2e%2e/secret.txt", -1, "No such file or directory" },
		{ "..%2fsecret.txt", -1, "No such file or directory" },
		{ "..\\\\secret.txt", -1, "No such file or directory" },
		{ "\xef\xbc\x8e\xef\xbc\x8e/secret.txt", -1, "No such file or directory" },
		{ "... /secret.txt", -1, "No such file or directory" },
		{ "adir", -1, "'adir' is a directory, not a regular file" },
		{ "fifo", -1, "'fifo' is a FIFO, not a regular file" },
		{ "ok.tmpl/x", -1, "'ok.tmpl' is a file, not a directory" },
		{ "dev", -1, "'dev' is a device, not a regular file" },
		{ "", -1, "has no value" },
		{ "a\\0b", -1, "contains a NUL character" },
	};
	int have_dev, rc;
	char *diag;

	(void)state;
	snprintf(root, sizeof(root), "%s", tu_tmpdir("profile-inside"));
	snprintf(dir, sizeof(dir), "%s/prof", root);
	assert_int_equal(mkdir(dir, 0700), 0);
	write_file(root, "secret.txt", "HSM-PIN-1234\n");
	write_file(root, "secret.yaml", "sku: secret\n");
	snprintf(abs_secret, sizeof(abs_secret), "%s/secret.txt", root);
	snprintf(path, sizeof(path), "%s/sub", dir);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/sub/deeper", dir);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/adir", dir);
	assert_int_equal(mkdir(path, 0700), 0);
	write_file(dir, "ok.tmpl", "id={device_id}\n");
	write_file(dir, "sub/deeper/ok.tmpl", "deep={device_id}\n");
	write_file(dir, "sub/parent.yaml",
		   "sku: parent\nfactory: f\nfiles:\n  - path: /etc/p\n"
		   "    template: deeper/ok.tmpl\n");
	write_file(dir, "sub/bad-parent.yaml",
		   "sku: parent\nfactory: f\nfiles:\n  - path: /etc/p\n"
		   "    template: ../ok.tmpl\n");
#define LINK(target, name)                                                                         \
	do {                                                                                       \
		snprintf(path, sizeof(path), "%s/%s", dir, name);                                  \
		assert_int_equal(symlink(target, path), 0);                                        \
	} while (0)
	LINK("../secret.txt", "link-out");
	LINK("ok.tmpl", "link-in");
	LINK(abs_secret, "link-abs");
	LINK("..", "link-dir");
	LINK("../..", "sub/link-dir");
	LINK("../../../secret.txt", "sub/deeper/link-out");
	LINK(dir, "sub/deeper/link-dir");
#undef LINK
	snprintf(path, sizeof(path), "%s/fifo", dir);
	assert_int_equal(mkfifo(path, 0600), 0);
	snprintf(path, sizeof(path), "%s/dev", dir);
	/* A device node needs privileges; without them that one case is left out. */
	have_dev = mknod(path, S_IFCHR | 0600, makedev(1, 3)) == 0;

	for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			const struct outside_case *c = &cases[i];

			diag = load_named(dir, keys[k].fmt, c->name, &rc);
			snprintf(want, sizeof(want), "%s/p.yaml:%d:%ld: cannot read %s '%s': %s; ",
				 dir, keys[k].line, keys[k].col + c->col, keys[k].key, c->name,
				 c->why);
			if (rc != ST_E_PROFILE || strncmp(diag, want, strlen(want)) != 0)
				fail_msg("%s '%s':\nexpected: %s...\ngot: %s", keys[k].key, c->name,
					 want, diag);
			assert_null(strstr(diag, "HSM-PIN"));
			free(diag);
		}
		for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
			const struct outside_case *c = &other[i];

			if (strcmp(c->name, "dev") == 0 && !have_dev)
				continue;
			diag = load_named(dir, keys[k].fmt, c->name, &rc);
			if (rc != ST_E_PROFILE || !strstr(diag, c->why))
				fail_msg("%s '%s': expected '%s', got: %s", keys[k].key, c->name,
					 c->why, diag);
			snprintf(want, sizeof(want), "%s/p.yaml:%d:", dir, keys[k].line);
			assert_int_equal(strncmp(diag, want, strlen(want)), 0);
			free(diag);
		}
	}

	/* Inside the directory, at any depth, files are read; a parent's own references are
	 * relative to the parent and held to the same rule, reported in the parent. */
	diag = load_named(dir, keys[0].fmt, "sub/deeper/ok.tmpl", &rc);
	if (rc != 0)
		fail_msg("%s", diag);
	free(diag);
	diag = load_named(dir, "extends: \"%s\"\nsku: t\n", "sub/parent.yaml", &rc);
	if (rc != 0)
		fail_msg("%s", diag);
	free(diag);
	diag = load_named(dir, "extends: \"%s\"\nsku: t\n", "sub/bad-parent.yaml", &rc);
	snprintf(want, sizeof(want),
		 "%s/sub/bad-parent.yaml:5:15: cannot read template '../ok.tmpl': '..' leads "
		 "out of the directory; ",
		 dir);
	if (rc != ST_E_PROFILE || strncmp(diag, want, strlen(want)) != 0)
		fail_msg("expected: %s...\ngot: %s", want, diag);
	free(diag);

	assert_int_equal(tu_rmtree(root), 0);
}

static void test_profile_set(void **state)
{
	struct st_profile_set *s = NULL;
	const struct st_profile *p;
	char err[512], dir[1024], *diag = NULL, want[8192];
	size_t dlen = 0;
	FILE *f;
	int rc;

	(void)state;
	rc = st_profile_set_load(src("profiles"), stderr, &s, err, sizeof(err));
	if (rc != 0)
		fail_msg("%s", err);
	assert_int_equal(st_profile_set_count(s), 3);
	assert_string_equal(st_profile_set_get(s, 0)->sku, "acme-gw100-prod");
	assert_null(st_profile_set_get(s, 3));
	/* The production profile is the more specific match for a production board. */
	p = st_profile_set_match(s, "imx8mm-lpddr4-evk", NULL);
	assert_non_null(p);
	assert_string_equal(p->sku, "acme-gw100");
	p = st_profile_set_match(s, "imx8mm-lpddr4-evk", "acme-gw100-prod");
	assert_non_null(p);
	assert_string_equal(p->sku, "acme-gw100-prod");
	p = st_profile_set_match(s, "imx8mm-lpddr4-evk", "other-sku");
	assert_string_equal(p->sku, "acme-gw100");
	assert_string_equal(st_profile_set_match(s, "sn10-nrf9161", NULL)->sku, "acme-sn10");
	assert_null(st_profile_set_match(s, "imx93-evk", NULL));
	assert_string_equal(st_profile_set_find(s, "acme-sn10")->sku, "acme-sn10");
	assert_null(st_profile_set_find(s, "nope"));
	st_profile_set_free(s);
	st_profile_set_free(NULL);

	/* Profiles a board could not choose between, and a shared sku, are errors. */
	snprintf(dir, sizeof(dir), "%s", tu_tmpdir("profile-set"));
	write_file(dir, "a.yaml", "sku: a\nfactory: f\nmatch: {hardware_ids: [hw-1, hw-2]}\n"
				  "files: [{path: /x, content: x}]\n");
	write_file(dir, "b.yaml", "sku: b\nfactory: f\nmatch: {hardware_ids: [hw-2]}\n"
				  "files: [{path: /x, content: x}]\n");
	write_file(dir, "c.yaml", "sku: a\nfactory: f\nmatch: {hardware_ids: [hw-2], sku: a}\n"
				  "files: [{path: /x, content: x}]\n");
	write_file(dir, "d.yaml", "sku: d\nfactory: f\nfiles: 3\n");
	write_file(dir, "notes.txt", "not a profile\n");
	f = open_memstream(&diag, &dlen);
	assert_non_null(f);
	rc = st_profile_set_load(dir, f, &s, err, sizeof(err));
	fclose(f);
	assert_int_equal(rc, ST_E_PROFILE);
	assert_null(s);
	snprintf(want, sizeof(want),
		 "%s/b.yaml:1:1: matches hardware id 'hw-2' like %s/a.yaml; a board could not "
		 "tell which profile applies (give one a match.sku)\n"
		 "%s/c.yaml:1:1: sku 'a' is already the sku of %s/a.yaml\n"
		 "%s/d.yaml:3:8: 'files' must be a sequence (a list of '- ' items), not a single "
		 "value\n",
		 dir, dir, dir, dir, dir);
	if (strcmp(diag, want) != 0)
		fail_msg("expected:\n%sgot:\n%s", want, diag);
	snprintf(want, sizeof(want), "3 errors in %s", dir);
	assert_string_equal(err, want);
	free(diag);
	remove_file(dir, "a.yaml");
	remove_file(dir, "b.yaml");
	remove_file(dir, "c.yaml");
	remove_file(dir, "d.yaml");
	remove_file(dir, "notes.txt");

	/* An empty directory is an empty set; a missing one an error. */
	rc = st_profile_set_load(dir, NULL, &s, err, sizeof(err));
	assert_int_equal(rc, 0);
	assert_int_equal(st_profile_set_count(s), 0);
	assert_null(st_profile_set_match(s, "hw-1", NULL));
	st_profile_set_free(s);
	rmdir(dir);
	rc = st_profile_set_load(dir, NULL, &s, err, sizeof(err));
	assert_int_equal(rc, ST_E_IO);
	assert_null(s);
}

int main(void)
{
	const char *s = getenv("SOURCE_DIR");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_profiles),
		cmocka_unit_test(test_examples),
		cmocka_unit_test(test_golden_renders),
		cmocka_unit_test(test_render_halves),
		cmocka_unit_test(test_public_files),
		cmocka_unit_test(test_device_ids),
		cmocka_unit_test(test_reissue_sources),
		cmocka_unit_test(test_render_overrides_and_dir),
		cmocka_unit_test(test_render_p11),
		cmocka_unit_test(test_render_limits),
		cmocka_unit_test(test_deep_nesting),
		cmocka_unit_test(test_buffer_and_templates),
		cmocka_unit_test(test_literal_block_columns),
		cmocka_unit_test(test_profile_set),
		cmocka_unit_test(test_reads_stay_inside),
		cmocka_unit_test(test_wire_paths),
	};

	if (!s) {
		fprintf(stderr, "SOURCE_DIR is not set\n");
		return 1;
	}
	snprintf(src_dir, sizeof(src_dir), "%s", s);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
