/* sota.toml: byte for byte what the reference registration server writes for the same
 * inputs (the expected texts follow the BRIEF's description and the reference's rules:
 * ordered sections, overrides replacing in place or appending, "# key is not set", its
 * str.format() substitutions, and the rstrip() before the final newline). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "sota.h"
#include "testutil.h"

#define TAIL_IMPORT(dir)                                                                           \
	"[import]\n"                                                                               \
	"tls_cacert_path = \"" dir "/root.crt\"\n"                                                 \
	"tls_pkey_path = \"" dir "/pkey.pem\"\n"                                                   \
	"tls_clientcert_path = \"" dir "/client.pem\"\n"

static const char lmp_reference[] = "[tls]\n"
				    "server = \"https://ota-lite.foundries.io:8443\"\n"
				    "ca_source = \"file\"\n"
				    "pkey_source = \"file\"\n"
				    "cert_source = \"file\"\n"
				    "\n"
				    "[provision]\n"
				    "server = \"https://ota-lite.foundries.io:8443\"\n"
				    "primary_ecu_hardware_id = \"imx8mm-lpddr4-evk\"\n"
				    "\n"
				    "[uptane]\n"
				    "repo_server = \"https://ota-lite.foundries.io:8443/repo\"\n"
				    "key_source = \"file\"\n"
				    "\n"
				    "[pacman]\n"
				    "type = \"ostree+compose_apps\"\n"
				    "ostree_server = \"https://ostree.foundries.io:8443/ostree\"\n"
				    "\n"
				    "[storage]\n"
				    "type = \"sqlite\"\n"
				    "path = \"/var/sota/\"\n"
				    "\n" TAIL_IMPORT("/var/sota");

static char *render(const struct st_sota_params *p, const struct st_sota_overrides *const *l,
		    size_t n, int *rc, char *err, size_t errlen)
{
	char *out = NULL;
	size_t len = 0;

	*rc = st_sota_render(p, l, n, &out, &len, err, errlen);
	if (*rc == 0)
		assert_int_equal(len, strlen(out));
	else
		assert_null(out);
	return out;
}

static void test_reference_default(void **state)
{
	struct st_sota_params p = {
		.gateway = "https://ota-lite.foundries.io:8443",
		.ostree_server = "https://ostree.foundries.io:8443",
		.hardware_id = "imx8mm-lpddr4-evk",
	};
	char err[256], *out, *golden;
	size_t glen;
	int rc;

	(void)state;
	out = render(&p, NULL, 0, &rc, err, sizeof(err));
	assert_int_equal(rc, 0);
	assert_string_equal(out, lmp_reference);
	free(out);
	/* The same text is the example profile's golden file. */
	{
		char path[4096];
		const char *src = getenv("SOURCE_DIR");

		assert_non_null(src);
		snprintf(path, sizeof(path),
			 "%s/tests/profiles/golden/lmp-gateway/var/sota/sota.toml", src);
		golden = (char *)tu_read_file(path, &glen);
		assert_non_null(golden);
		assert_int_equal(glen, strlen(lmp_reference));
		assert_memory_equal(golden, lmp_reference, glen);
		free(golden);
	}
	/* An explicit default config dir is the same as none. */
	p.config_dir = "/var/sota";
	out = render(&p, NULL, 0, &rc, err, sizeof(err));
	assert_string_equal(out, lmp_reference);
	free(out);
}

static void test_overrides(void **state)
{
	struct st_sota_params p = {
		.gateway = "https://gw.example",
		.ostree_server = "https://ostree.example",
		.hardware_id = "hw-1",
		.config_dir = "/data",
	};
	struct st_sota_overrides o = { 0 };
	const struct st_sota_overrides *layers[] = { &o };
	char err[256], *out;
	int rc;

	(void)state;
	assert_int_equal(st_sota_override_set(&o, "tls", "server", "\"https://other\""), 0);
	assert_int_equal(st_sota_override_set(&o, "pacman", "tags", "\"main\""), 0);
	assert_int_equal(st_sota_override_set(&o, "pacman", "type", ""), 0);
	assert_int_equal(st_sota_override_set(&o, "new", "a", "1"), 0);
	assert_int_equal(st_sota_override_set(&o, "new", "b", NULL), 0);
	assert_int_equal(st_sota_override_set(&o, "storage", "path", "\"{sota_config_dir}/db/\""),
			 0);
	out = render(&p, layers, 1, &rc, err, sizeof(err));
	assert_int_equal(rc, 0);
	assert_string_equal(out, "[tls]\n"
				 "server = \"https://other\"\n"
				 "ca_source = \"file\"\n"
				 "pkey_source = \"file\"\n"
				 "cert_source = \"file\"\n"
				 "\n"
				 "[provision]\n"
				 "server = \"https://gw.example\"\n"
				 "primary_ecu_hardware_id = \"hw-1\"\n"
				 "\n"
				 "[uptane]\n"
				 "repo_server = \"https://gw.example/repo\"\n"
				 "key_source = \"file\"\n"
				 "\n"
				 "[pacman]\n"
				 "# type is not set\n"
				 "ostree_server = \"https://ostree.example/ostree\"\n"
				 "tags = \"main\"\n"
				 "\n"
				 "[storage]\n"
				 "type = \"sqlite\"\n"
				 "path = \"/data/db/\"\n"
				 "\n" TAIL_IMPORT("/data") "\n"
							   "[new]\n"
							   "a = 1\n"
							   "# b is not set\n");
	free(out);
	st_sota_overrides_clear(&o);
	st_sota_overrides_clear(&o);
}

static void test_format_and_rstrip(void **state)
{
	struct st_sota_params p = {
		.gateway = "https://gw.example",
		.ostree_server = "https://ostree.example",
		.hardware_id = "hw-1",
	};
	struct st_sota_overrides o = { 0 };
	const struct st_sota_overrides *layers[] = { &o };
	char err[256], *out;
	const char *tail;
	int rc;

	(void)state;
	/* The reference formats values with its four names and Python's brace escapes, and
	 * strips all trailing whitespace (Unicode's too) before the final newline. */
	assert_int_equal(st_sota_override_set(&o, "x", "t", "{{a}} {hardware_id} {ostree_server}"),
			 0);
	assert_int_equal(st_sota_override_set(&o, "zz", "k", "\"v\"  \xc2\xa0 \n  "), 0);
	out = render(&p, layers, 1, &rc, err, sizeof(err));
	assert_int_equal(rc, 0);
	tail = out + strlen(out) -
	       strlen("\n[x]\nt = {a} hw-1 https://ostree.example\n\n[zz]\n"
		      "k = \"v\"\n");
	assert_string_equal(tail, "\n[x]\nt = {a} hw-1 https://ostree.example\n\n[zz]\n"
				  "k = \"v\"\n");
	free(out);
	st_sota_overrides_clear(&o);

	/* An empty new section at the end leaves its header alone. */
	assert_int_equal(st_sota_override_section(&o, "empty"), 0);
	assert_int_equal(st_sota_override_section(&o, "empty"), 0);
	assert_int_equal(o.n, 1);
	out = render(&p, layers, 1, &rc, err, sizeof(err));
	assert_int_equal(rc, 0);
	tail = "/var/sota/client.pem\"\n\n[empty]\n";
	assert_string_equal(out + strlen(out) - strlen(tail), tail);
	free(out);
	st_sota_overrides_clear(&o);

	/* Where the reference would raise (and answer 500), the station refuses cleanly. */
	assert_int_equal(st_sota_override_set(&o, "pacman", "tags", "\"{tag}\""), 0);
	out = render(&p, layers, 1, &rc, err, sizeof(err));
	assert_int_equal(rc, ST_E_PROFILE_VALUE);
	assert_non_null(strstr(err, "pacman.tags"));
	assert_non_null(strstr(err, "{tag}"));
	st_sota_overrides_clear(&o);
	assert_int_equal(st_sota_override_set(&o, "pacman", "t", "{\"a\" = 1}"), 0);
	out = render(&p, layers, 1, &rc, err, sizeof(err));
	assert_int_equal(rc, ST_E_PROFILE_VALUE);
	st_sota_overrides_clear(&o);
}

static void test_layers(void **state)
{
	struct st_sota_params p = {
		.gateway = "https://gw.example",
		.ostree_server = "https://ostree.example",
		.hardware_id = "hw-1",
	};
	struct st_sota_overrides prof = { 0 }, req = { 0 };
	const struct st_sota_overrides *layers[] = { &prof, &req };
	char err[256], *out;
	int rc;

	(void)state;
	assert_int_equal(st_sota_override_set(&prof, "pacman", "tags", "\"devel\""), 0);
	assert_int_equal(st_sota_override_set(&prof, "pacman", "extra", "\"p\""), 0);
	assert_int_equal(st_sota_override_set(&req, "pacman", "tags", "\"main\""), 0);
	/* Replacing again keeps one key in its first place. */
	assert_int_equal(st_sota_override_set(&req, "pacman", "tags", "\"main\""), 0);
	assert_int_equal(req.n, 1);
	assert_int_equal(req.sec[0].n, 1);
	out = render(&p, layers, 2, &rc, err, sizeof(err));
	assert_int_equal(rc, 0);
	assert_non_null(strstr(out, "ostree_server = \"https://ostree.example/ostree\"\n"
				    "tags = \"main\"\n"
				    "extra = \"p\"\n\n[storage]"));
	free(out);
	/* A NULL layer is skipped. */
	layers[1] = NULL;
	out = render(&p, layers, 2, &rc, err, sizeof(err));
	assert_int_equal(rc, 0);
	assert_non_null(strstr(out, "tags = \"devel\"\n"));
	free(out);
	st_sota_overrides_clear(&prof);
	st_sota_overrides_clear(&req);
}

static void test_p11_matches_device_tool(void **state)
{
	struct st_sota_p11 k = { .module = "/usr/lib/softhsm/libsofthsm2.so", .pass = "1234" };
	struct st_sota_params p = {
		.gateway = "https://gw.example",
		.ostree_server = "https://ostree.example",
		.hardware_id = "hw-1",
		.p11 = &k,
	};
	struct st_sota_params plain = p;
	struct st_sota_overrides o = { 0 };
	const struct st_sota_overrides *layers[] = { &o };
	char err[256], *a, *b;
	int rc;

	(void)state;
	/* The p11 variant equals the overrides lmp-device-register --hsm-module sends, with the
	 * [p11] section it writes itself, as the last section. */
	plain.p11 = NULL;
	assert_int_equal(st_sota_override_set(&o, "tls", "pkey_source", "\"pkcs11\""), 0);
	assert_int_equal(st_sota_override_set(&o, "tls", "cert_source", "\"pkcs11\""), 0);
	assert_int_equal(st_sota_override_set(&o, "storage", "tls_pkey_path", ""), 0);
	assert_int_equal(st_sota_override_set(&o, "storage", "tls_clientcert_path", ""), 0);
	assert_int_equal(st_sota_override_set(&o, "import", "tls_pkey_path", ""), 0);
	assert_int_equal(st_sota_override_set(&o, "import", "tls_clientcert_path", ""), 0);
	assert_int_equal(
		st_sota_override_set(&o, "p11", "module", "\"/usr/lib/softhsm/libsofthsm2.so\""),
		0);
	assert_int_equal(st_sota_override_set(&o, "p11", "pass", "\"1234\""), 0);
	assert_int_equal(st_sota_override_set(&o, "p11", "tls_pkey_id", "\"01\""), 0);
	assert_int_equal(st_sota_override_set(&o, "p11", "tls_clientcert_id", "\"03\""), 0);
	a = render(&p, NULL, 0, &rc, err, sizeof(err));
	assert_int_equal(rc, 0);
	b = render(&plain, layers, 1, &rc, err, sizeof(err));
	assert_int_equal(rc, 0);
	assert_string_equal(a, b);
	assert_non_null(strstr(a, "pkey_source = \"pkcs11\"\ncert_source = \"pkcs11\"\n"));
	assert_non_null(strstr(a, "tls_cacert_path = \"/var/sota/root.crt\"\n"
				  "# tls_pkey_path is not set\n"
				  "# tls_clientcert_path is not set\n\n[p11]\n"));
	free(a);
	free(b);
	st_sota_overrides_clear(&o);

	/* Ids and label are written as given. */
	k.label = "aktualizr";
	k.tls_pkey_id = "11";
	k.tls_clientcert_id = "13";
	k.pass = NULL;
	a = render(&p, NULL, 0, &rc, err, sizeof(err));
	assert_int_equal(rc, 0);
	assert_non_null(strstr(a, "[p11]\nmodule = \"/usr/lib/softhsm/libsofthsm2.so\"\n"
				  "label = \"aktualizr\"\ntls_pkey_id = \"11\"\n"
				  "tls_clientcert_id = \"13\"\n"));
	assert_null(strstr(a, "pass"));
	free(a);
}

static void test_refused_values(void **state)
{
	struct st_sota_params p = {
		.gateway = "https://gw.example",
		.ostree_server = "https://ostree.example",
		.hardware_id = "hw\"1",
	};
	struct st_sota_p11 k = { .module = "/lib/p11\\x.so" };
	char err[256], *out;
	int rc;

	(void)state;
	out = render(&p, NULL, 0, &rc, err, sizeof(err));
	assert_int_equal(rc, ST_E_PROFILE_VALUE);
	assert_non_null(strstr(err, "hardware id"));
	p.hardware_id = "hw\n1";
	out = render(&p, NULL, 0, &rc, err, sizeof(err));
	assert_int_equal(rc, ST_E_PROFILE_VALUE);
	p.hardware_id = "";
	out = render(&p, NULL, 0, &rc, err, sizeof(err));
	assert_int_equal(rc, ST_E_PROFILE_VALUE);
	p.hardware_id = "hw-1";
	p.gateway = NULL;
	out = render(&p, NULL, 0, &rc, err, sizeof(err));
	assert_int_equal(rc, ST_E_PROFILE_VALUE);
	assert_non_null(strstr(err, "gateway"));
	p.gateway = "https://gw.example";
	p.config_dir = "/var/\"sota";
	out = render(&p, NULL, 0, &rc, err, sizeof(err));
	assert_int_equal(rc, ST_E_PROFILE_VALUE);
	p.config_dir = NULL;
	p.p11 = &k;
	out = render(&p, NULL, 0, &rc, err, sizeof(err));
	assert_int_equal(rc, ST_E_PROFILE_VALUE);
	assert_non_null(strstr(err, "p11 module"));
	(void)out;
}

/* Renders through c and checks the text against a plain render of the same inputs, and
 * whether it was a copy (hit). */
static void cached_is_plain(struct st_sota_cache *c, const struct st_sota_params *p,
			    const struct st_sota_overrides *const *l, size_t n, int hit)
{
	char err[256], *plain, *got = NULL;
	size_t len = 0;
	uint64_t hits = c->hits, misses = c->misses;
	int rc;

	plain = render(p, l, n, &rc, err, sizeof(err));
	assert_int_equal(rc, 0);
	assert_int_equal(st_sota_render_cached(c, p, l, n, &got, &len, err, sizeof(err)), 0);
	assert_non_null(got);
	assert_int_equal(len, strlen(plain));
	assert_string_equal(got, plain);
	assert_int_equal(c->hits, hits + (hit ? 1 : 0));
	assert_int_equal(c->misses, misses + (hit ? 0 : 1));
	free(plain);
	free(got);
}

/* The kept render: the same inputs again are a copy of the same text; a change to any
 * parameter, to a layer's section, key or value, to the layers' number, or to where a string
 * ends (section "ab" key "c" against section "a" key "bc") is rendered anew (a layer that is
 * not there renders as an empty one, and is kept as one);
 * a render that fails keeps the last good one; no cache is a plain render. */
static void test_cache(void **state)
{
	struct st_sota_p11 k = { "/usr/lib/p11.so", "1234", "dev", NULL, NULL };
	struct st_sota_params p = { "https://gw:8443", "https://os:8443", "hw-1", NULL, NULL };
	struct st_sota_overrides a = { 0 }, b = { 0 }, bad = { 0 };
	const struct st_sota_overrides *l1[1] = { &a }, *l2[2] = { &a, &b }, *lb[1] = { &bad };
	const struct st_sota_overrides *lnull[2] = { &a, NULL };
	struct st_sota_cache c = { 0 };
	char err[256], *out = (char *)1;
	size_t len = 7;

	(void)state;
	assert_int_equal(st_sota_override_set(&a, "pacman", "tags", "\"main\""), 0);
	cached_is_plain(&c, &p, l1, 1, 0);
	cached_is_plain(&c, &p, l1, 1, 1);
	cached_is_plain(&c, &p, l1, 1, 1);
	p.gateway = "https://gw2:8443";
	cached_is_plain(&c, &p, l1, 1, 0);
	p.ostree_server = "https://os2:8443";
	cached_is_plain(&c, &p, l1, 1, 0);
	p.hardware_id = "hw-2";
	cached_is_plain(&c, &p, l1, 1, 0);
	p.config_dir = "/var/sota";
	cached_is_plain(&c, &p, l1, 1, 0);
	p.config_dir = "/etc/sota";
	cached_is_plain(&c, &p, l1, 1, 0);
	p.p11 = &k;
	cached_is_plain(&c, &p, l1, 1, 0);
	k.pass = "5678";
	cached_is_plain(&c, &p, l1, 1, 0);
	k.tls_pkey_id = "02";
	cached_is_plain(&c, &p, l1, 1, 0);
	cached_is_plain(&c, &p, l1, 1, 1);
	assert_int_equal(st_sota_override_set(&a, "pacman", "tags", "\"devel\""), 0);
	cached_is_plain(&c, &p, l1, 1, 0);
	assert_int_equal(st_sota_override_set(&a, "pacman", "extra", "\"x\""), 0);
	cached_is_plain(&c, &p, l1, 1, 0);
	assert_int_equal(st_sota_override_section(&a, "empty"), 0);
	cached_is_plain(&c, &p, l1, 1, 0);
	cached_is_plain(&c, &p, l2, 2, 0); /* a second layer, empty */
	cached_is_plain(&c, &p, lnull, 2, 1); /* none there: the same as an empty one */
	cached_is_plain(&c, &p, l2, 2, 1);
	assert_int_equal(st_sota_override_set(&b, "ab", "c", "1"), 0);
	cached_is_plain(&c, &p, l2, 2, 0);
	st_sota_overrides_clear(&b);
	assert_int_equal(st_sota_override_set(&b, "a", "bc", "1"), 0);
	cached_is_plain(&c, &p, l2, 2, 0);
	cached_is_plain(&c, &p, l2, 2, 1);
	/* Where a string ends is kept even across bytes that look like the serialization's. */
	st_sota_overrides_clear(&b);
	assert_int_equal(st_sota_override_set(&b, "x", "a\001b", "1"), 0);
	cached_is_plain(&c, &p, l2, 2, 0);
	st_sota_overrides_clear(&b);
	assert_int_equal(st_sota_override_set(&b, "x", "a", "b\0011"), 0);
	cached_is_plain(&c, &p, l2, 2, 0);
	/* A render that fails: not kept, the last good one still is. */
	assert_int_equal(st_sota_override_set(&bad, "pacman", "tags", "{nope}"), 0);
	assert_int_not_equal(st_sota_render_cached(&c, &p, lb, 1, &out, &len, err, sizeof(err)),
			     0);
	assert_null(out);
	assert_non_null(strstr(err, "pacman.tags"));
	cached_is_plain(&c, &p, l2, 2, 1);
	/* No cache: rendered each time. */
	out = NULL;
	assert_int_equal(st_sota_render_cached(NULL, &p, l2, 2, &out, &len, err, sizeof(err)), 0);
	assert_non_null(out);
	free(out);
	st_sota_cache_free(&c);
	assert_null(c.key);
	assert_null(c.out);
	cached_is_plain(&c, &p, l2, 2, 0);
	st_sota_cache_free(&c);
	st_sota_overrides_clear(&a);
	st_sota_overrides_clear(&b);
	st_sota_overrides_clear(&bad);
}

static void test_check_value(void **state)
{
	static const char *const good[] = {
		"",
		"\"main\"",
		"\"a \\\"quoted\\\" word\"",
		"'literal'",
		"true",
		"false",
		"42",
		"-1",
		"3.14",
		"1e6",
		"0x1F",
		"inf",
		"nan",
		"1979-05-27T07:32:00Z",
		"[\"a\", \"b\"]",
		"{ a = 1 }",
		"\"\"\"multi\nline\"\"\"",
		"'''raw\ntext'''",
		NULL,
	};
	static const char *const bad[] = {
		"main", "\"main",   "\"main\" x", "'a", "'a'b'", "yes",
		"True", "1 2 ; rm", "\"a\nb\"",	  "on", NULL,
	};
	char err[256];

	(void)state;
	for (size_t i = 0; good[i]; i++) {
		if (st_sota_check_value(good[i], err, sizeof(err)) != 0)
			fail_msg("'%s' refused: %s", good[i], err);
	}
	for (size_t i = 0; bad[i]; i++) {
		if (st_sota_check_value(bad[i], err, sizeof(err)) == 0)
			fail_msg("'%s' accepted", bad[i]);
	}
	assert_int_equal(st_sota_check_value("main", err, sizeof(err)), -1);
	assert_string_equal(err, "'main' is not a TOML value; a string needs its quotes, e.g. "
				 "'\"main\"'");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reference_default),
		cmocka_unit_test(test_overrides),
		cmocka_unit_test(test_format_and_rstrip),
		cmocka_unit_test(test_layers),
		cmocka_unit_test(test_p11_matches_device_tool),
		cmocka_unit_test(test_refused_values),
		cmocka_unit_test(test_check_value),
		cmocka_unit_test(test_cache),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
