/* The registration request and answer (http_reg.h), the listen address and the `http`
 * configuration section: the device tool's JSON as it sends it, every malformed or hostile
 * variation refused with the field named, the profile's rules, sota.toml with the request's
 * overrides, and the 201 body filled in from a real certificate. The server itself runs in
 * tests/integration/test_http*.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "config.h"
#include "err.h"
#include "http.h"
#include "http_reg.h"
#include "policy.h"
#include "profile.h"
#include "profiles.h"
#include "testutil.h"

#define UUID "6b3c7c2e-4f1a-4c1e-9d2b-2f0c8a1e5d3f"
#define CSR_PEM                                                                                    \
	"-----BEGIN CERTIFICATE REQUEST-----\nMIIBOzCB4QIBADBG\n-----END CERTIFICATE REQUEST-----\n"

/* What lmp-device-register sends: pretty-printed, "/" as "\/", every value a string. */
static const char tool_body[] =
	"{\n"
	"    \"name\": \"gw-17\",\n"
	"    \"uuid\": \"" UUID "\",\n"
	"    \"csr\": \"-----BEGIN CERTIFICATE REQUEST-----\\nMIIBOzCB4QIBADBG\\n-----END "
	"CERTIFICATE REQUEST-----\\n\",\n"
	"    \"hardware-id\": \"imx8mm-lpddr4-evk\",\n"
	"    \"sota-config-dir\": \"\\/var\\/sota\",\n"
	"    \"overrides\": {\n"
	"        \"pacman\": {\n"
	"            \"tags\": \"\\\"main\\\"\"\n"
	"        }\n"
	"    },\n"
	"    \"use-ostree-server\": \"true\"\n"
	"}\n";

static const char profile_yaml[] = "sku: gw\n"
				   "match: {hardware_ids: [imx8mm-lpddr4-evk]}\n"
				   "factory: acme-factory\n"
				   "sota:\n"
				   "  gateway: https://ota-lite.foundries.io:8443\n"
				   "  ostree_server: https://ostree.foundries.io:8443\n"
				   "  overrides: {pacman: {tags: '\"devel\"', extra: '\"1\"'}}\n"
				   "groups: [line-1, qa]\n"
				   "files:\n"
				   "  - set: foundries\n";

#define SOTA_FILES                                                                                 \
	"sota: {gateway: https://g.example, ostree_server: https://o.example}\n"                    \
	"files: [{set: foundries}]\n"

static const struct st_profile *load_profile(const char *yaml)
{
	const struct st_profile *p = NULL;
	char err[512] = "";

	if (st_profile_load_buffer("test.yaml", yaml, strlen(yaml), stderr, &p, err,
				   sizeof(err)) != 0)
		fail_msg("profile: %s", err);
	return p;
}

static int parse(const char *body, struct st_http_reg **r, char *err, size_t errlen)
{
	return st_http_reg_parse(body, strlen(body), r, err, errlen);
}

static void test_parse_tool_body(void **state)
{
	struct st_http_reg *r = NULL;
	char err[512] = "";

	(void)state;
	assert_int_equal(parse(tool_body, &r, err, sizeof(err)), 0);
	assert_string_equal(r->uuid, UUID);
	assert_string_equal(r->hardware_id, "imx8mm-lpddr4-evk");
	assert_string_equal(r->name, "gw-17");
	assert_string_equal(r->config_dir, "/var/sota");
	assert_string_equal(r->csr, CSR_PEM);
	assert_int_equal(r->csr_len, strlen(CSR_PEM));
	assert_null(r->group);
	assert_int_equal(r->overrides.n, 1);
	assert_string_equal(r->overrides.sec[0].name, "pacman");
	assert_int_equal(r->overrides.sec[0].n, 1);
	assert_string_equal(r->overrides.sec[0].kv[0].key, "tags");
	assert_string_equal(r->overrides.sec[0].kv[0].value, "\"main\"");
	st_http_reg_free(r);

	/* The minimum: csr, hardware-id, uuid. An empty group is no group; a null override
	 * value is written as unset. */
	assert_int_equal(parse("{\"csr\":\"x\",\"hardware-id\":\"h\",\"uuid\":\"u\",\"group\":\"\","
			       "\"overrides\":{\"tls\":{\"server\":null},\"new\":{}}}",
			       &r, err, sizeof(err)),
			 0);
	assert_null(r->name);
	assert_null(r->config_dir);
	assert_null(r->group);
	assert_int_equal(r->overrides.n, 2);
	assert_string_equal(r->overrides.sec[0].kv[0].value, "");
	assert_int_equal(r->overrides.sec[1].n, 0);
	st_http_reg_free(r);
}

/* The device tool accepts an upper-case UUID: the request's uuid is normalised to lower
 * case, whatever its mix; an id that is not a UUID is left as it is (the profile's pattern
 * judges it). */
static void test_parse_uuid_case(void **state)
{
	static const char *const spellings[] = { "6B3C7C2E-4F1A-4C1E-9D2B-2F0C8A1E5D3F",
						 "6b3C7c2E-4F1a-4c1E-9D2b-2f0C8a1E5d3F", UUID };
	struct st_http_reg *r = NULL;
	char body[512], err[512] = "";

	(void)state;
	for (size_t i = 0; i < sizeof(spellings) / sizeof(spellings[0]); i++) {
		snprintf(body, sizeof(body), "{\"csr\":\"x\",\"hardware-id\":\"h\",\"uuid\":\"%s\"}",
			 spellings[i]);
		assert_int_equal(parse(body, &r, err, sizeof(err)), 0);
		assert_string_equal(r->uuid, UUID);
		st_http_reg_free(r);
	}
	assert_int_equal(parse("{\"csr\":\"x\",\"hardware-id\":\"h\",\"uuid\":\"GW-ABC\"}", &r,
			       err, sizeof(err)),
			 0);
	assert_string_equal(r->uuid, "GW-ABC");
	st_http_reg_free(r);
}

/* Each malformed body, the code and words of its message. */
static void test_parse_errors(void **state)
{
	static const struct {
		const char *body;
		int code;
		const char *words;
	} cases[] = {
		{ "", ST_E_HTTP_JSON, "not JSON" },
		{ "{\"csr\": \"x\",", ST_E_HTTP_JSON, "not JSON" },
		{ "[1, 2]", ST_E_HTTP_JSON, "must be a JSON object, not an array" },
		{ "\"csr\"", ST_E_HTTP_JSON, "not JSON" },
		{ "{\"csr\":\"a\",\"csr\":\"b\",\"hardware-id\":\"h\",\"uuid\":\"u\"}", ST_E_HTTP_JSON,
		  "duplicate" },
		{ "{\"hardware-id\":\"h\",\"uuid\":\"u\"}", ST_E_HTTP_FIELD, "'csr' is missing" },
		{ "{\"csr\":null,\"hardware-id\":\"h\",\"uuid\":\"u\"}", ST_E_HTTP_FIELD,
		  "'csr' is missing" },
		{ "{\"csr\":\"\",\"hardware-id\":\"h\",\"uuid\":\"u\"}", ST_E_HTTP_FIELD,
		  "'csr' is empty" },
		{ "{\"csr\":\"x\",\"uuid\":\"u\"}", ST_E_HTTP_FIELD, "'hardware-id' is missing" },
		{ "{\"csr\":\"x\",\"hardware-id\":\"h\"}", ST_E_HTTP_FIELD, "'uuid' is missing" },
		{ "{\"csr\":\"x\",\"hardware-id\":\"h\",\"uuid\":42}", ST_E_HTTP_FIELD,
		  "'uuid' must be a string, not a number" },
		{ "{\"csr\":[\"x\"],\"hardware-id\":\"h\",\"uuid\":\"u\"}", ST_E_HTTP_FIELD,
		  "'csr' must be a string, not an array" },
		{ "{\"csr\":\"x\",\"hardware-id\":\"h\",\"uuid\":\"u\\u0000v\"}", ST_E_HTTP_JSON,
		  "not allowed" },
		{ "{\"csr\":\"x\",\"hardware-id\":\"h\\nX\",\"uuid\":\"u\"}", ST_E_HTTP_FIELD,
		  "'hardware-id' contains a control character (0x0a)" },
		/* C1 controls, bidi overrides and line separators, as JSON escapes and raw. */
		{ "{\"csr\":\"x\",\"hardware-id\":\"h\",\"uuid\":\"u\",\"name\":\"a\\u009b2Jb\"}",
		  ST_E_HTTP_FIELD, "'name' contains a control or text-direction character: a\\u009b2Jb" },
		{ "{\"csr\":\"x\",\"hardware-id\":\"h\\u202eevil\",\"uuid\":\"u\"}",
		  ST_E_HTTP_FIELD, "'hardware-id' contains a control or text-direction character: h\\u202eevil" },
		{ "{\"csr\":\"x\",\"hardware-id\":\"h\",\"uuid\":\"u\",\"name\":\"gw\xe2\x80\xa8x\"}",
		  ST_E_HTTP_FIELD, "'name' contains a control or text-direction character: gw\\u2028x" },
		{ "{\"csr\":\"x\",\"hardware-id\":\"h\",\"uuid\":\"u\",\"sota-config-dir\":\"/v\xc2\x85\"}",
		  ST_E_HTTP_FIELD, "'sota-config-dir' contains a control or text-direction character" },
		/* jansson's own words about a body are made printable too. */
		{ "{\"csr\": tru\x1b[2J}", ST_E_HTTP_JSON, "not JSON" },
		{ "{\"csr\":\"x\",\"hardware-id\":\"h\",\"uuid\":\"u\",\"name\":true}",
		  ST_E_HTTP_FIELD, "'name' must be a string, not a boolean" },
		{ "{\"csr\":\"x\",\"hardware-id\":\"h\",\"uuid\":\"u\",\"sota-config-dir\":\"var\"}",
		  ST_E_HTTP_FIELD, "absolute directory" },
		{ "{\"csr\":\"x\",\"hardware-id\":\"h\",\"uuid\":\"u\",\"sota-config-dir\":\"/\"}",
		  ST_E_HTTP_FIELD, "absolute directory" },
		{ "{\"csr\":\"x\",\"hardware-id\":\"h\",\"uuid\":\"u\","
		  "\"sota-config-dir\":\"/a/../etc\"}",
		  ST_E_HTTP_FIELD, "without '.' or '..' components" },
		{ "{\"csr\":\"x\",\"hardware-id\":\"h\",\"uuid\":\"u\",\"group\":\"a b\"}",
		  ST_E_HTTP_FIELD, "'group' may contain only" },
		{ "{\"csr\":\"x\",\"hardware-id\":\"h\",\"uuid\":\"u\",\"overrides\":\"tags\"}",
		  ST_E_HTTP_FIELD, "'overrides' must be an object of sections, not a string" },
		{ "{\"csr\":\"x\",\"hardware-id\":\"h\",\"uuid\":\"u\",\"overrides\":{\"a]\":{}}}",
		  ST_E_HTTP_FIELD, "section name 'a]'" },
		{ "{\"csr\":\"x\",\"hardware-id\":\"h\",\"uuid\":\"u\",\"overrides\":{\"p\":[]}}",
		  ST_E_HTTP_FIELD, "overrides.p must be an object of keys, not an array" },
		{ "{\"csr\":\"x\",\"hardware-id\":\"h\",\"uuid\":\"u\","
		  "\"overrides\":{\"p\":{\"k=\\\"x\\\"\\n[tls]\\nserver\":\"\\\"evil\\\"\"}}}",
		  ST_E_HTTP_FIELD, "key 'k=" },
		{ "{\"csr\":\"x\",\"hardware-id\":\"h\",\"uuid\":\"u\",\"overrides\":{\"p\":{\"k\":1}}}",
		  ST_E_HTTP_FIELD, "overrides.p.k must be a string of TOML text, not a number" },
		{ "{\"csr\":\"x\",\"hardware-id\":\"h\",\"uuid\":\"u\","
		  "\"overrides\":{\"p\":{\"k\":\"main\"}}}",
		  ST_E_HTTP_FIELD, "overrides.p.k: 'main' is not a TOML value" },
		{ "{\"csr\":\"x\",\"hardware-id\":\"h\",\"uuid\":\"u\","
		  "\"overrides\":{\"p\":{\"k\":\"\\\"a\\nb\\\"\"}}}",
		  ST_E_HTTP_FIELD, "overrides.p.k" },
	};
	char err[ST_ERR_MAX];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct st_http_reg *r = (struct st_http_reg *)1;
		int rc;

		err[0] = 0;
		rc = parse(cases[i].body, &r, err, sizeof(err));
		if (rc != cases[i].code || !strstr(err, cases[i].words))
			fail_msg("case %zu (%s): rc %d (%s), message '%s', expected %s with '%s'", i,
				 cases[i].body, rc, st_errname(rc), err, st_errname(cases[i].code),
				 cases[i].words);
		/* Whatever the body held, the message is printable. */
		for (const unsigned char *c = (const unsigned char *)err; *c; c++)
			if (*c < 0x20 || *c == 0x7f || (c[0] == 0xc2 && c[1] >= 0x80 && c[1] <= 0x9f))
				fail_msg("case %zu: raw byte 0x%02x in '%s'", i, *c, err);
		assert_null(r);
	}
}

/* sota-config-dir names the device's directory plainly: absolute, not '/', no component
 * '.' or '..' wherever it stands (a search for "/../" missed a last one); names that only
 * contain dots are directories like any other. */
static void test_parse_config_dir(void **state)
{
	static const char *const refused[] = {
		"/..", "/var/sota/..", "/var/sota/../x", "..", "a/../b", "/../etc", "/.",
		"/var/./sota", "/var/sota/.", "//..//", "/var/sota/../", "var/sota", "/", "//",
	};
	static const char *const accepted[] = {
		"/var/sota", "/var/sota/", "/factory/sota", "/a..b", "/..a", "/var/.sota",
		"/var/sota..", "/var/...", "/.hidden/x",
	};
	char body[512], err[ST_ERR_MAX];
	struct st_http_reg *r;

	(void)state;
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		snprintf(body, sizeof(body),
			 "{\"csr\":\"x\",\"hardware-id\":\"h\",\"uuid\":\"u\","
			 "\"sota-config-dir\":\"%s\"}",
			 refused[i]);
		r = (struct st_http_reg *)1;
		err[0] = 0;
		if (parse(body, &r, err, sizeof(err)) != ST_E_HTTP_FIELD ||
		    !strstr(err, "'sota-config-dir' must be an absolute directory"))
			fail_msg("'%s' was not refused: '%s'", refused[i], err);
		assert_null(r);
	}
	for (size_t i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++) {
		snprintf(body, sizeof(body),
			 "{\"csr\":\"x\",\"hardware-id\":\"h\",\"uuid\":\"u\","
			 "\"sota-config-dir\":\"%s\"}",
			 accepted[i]);
		r = NULL;
		if (parse(body, &r, err, sizeof(err)) != 0)
			fail_msg("'%s' was refused: '%s'", accepted[i], err);
		assert_string_equal(r->config_dir, accepted[i]);
		st_http_reg_free(r);
	}
}

static void test_parse_bounds(void **state)
{
	struct st_http_reg *r = NULL;
	char err[512] = "", *body, *p;
	size_t n = 64 * 1024;

	(void)state;
	/* Sections beyond the bound. */
	body = malloc(n);
	assert_non_null(body);
	p = body + sprintf(body, "{\"csr\":\"x\",\"hardware-id\":\"h\",\"uuid\":\"u\",\"overrides\":{");
	for (int i = 0; i <= ST_HTTP_REG_MAX_SECTIONS; i++)
		p += sprintf(p, "%s\"s%d\":{}", i ? "," : "", i);
	strcpy(p, "}}");
	assert_int_equal(parse(body, &r, err, sizeof(err)), ST_E_HTTP_FIELD);
	assert_non_null(strstr(err, "sections, at most 32"));
	/* A name over its bound. */
	p = body + sprintf(body, "{\"csr\":\"x\",\"hardware-id\":\"h\",\"uuid\":\"u\",\"name\":\"");
	memset(p, 'n', ST_HTTP_REG_MAX_NAME + 1);
	strcpy(p + ST_HTTP_REG_MAX_NAME + 1, "\"}");
	assert_int_equal(parse(body, &r, err, sizeof(err)), ST_E_HTTP_FIELD);
	assert_non_null(strstr(err, "'name' is 129 bytes long, at most 128"));
	/* A uuid longer than a CN may be. */
	p = body + sprintf(body, "{\"csr\":\"x\",\"hardware-id\":\"h\",\"uuid\":\"");
	memset(p, 'u', ST_PROFILE_MAX_ID + 1);
	strcpy(p + ST_PROFILE_MAX_ID + 1, "\"}");
	assert_int_equal(parse(body, &r, err, sizeof(err)), ST_E_HTTP_FIELD);
	/* Deep nesting is JSON the parser refuses or a field of the wrong type, never a
	 * crash. */
	p = body;
	for (int i = 0; i < 5000; i++)
		*p++ = '[';
	*p = 0;
	assert_int_equal(parse(body, &r, err, sizeof(err)), ST_E_HTTP_JSON);
	free(body);
}

static void test_check(void **state)
{
	const struct st_profile *p = load_profile(profile_yaml);
	const struct st_profile *se, *nosota;
	struct st_http_reg *r = NULL;
	char err[512] = "";

	(void)state;
	assert_int_equal(parse(tool_body, &r, err, sizeof(err)), 0);
	assert_int_equal(st_http_reg_check(p, r, err, sizeof(err)), 0);
	r->group = strdup("qa");
	assert_int_equal(st_http_reg_check(p, r, err, sizeof(err)), 0);
	free(r->group);
	r->group = strdup("line-9");
	assert_int_equal(st_http_reg_check(p, r, err, sizeof(err)), ST_E_HTTP_GROUP);
	assert_non_null(strstr(err, "group 'line-9' is not allowed by profile gw"));
	free(r->group);
	r->group = NULL;
	free(r->uuid);
	r->uuid = strdup("6B3C7C2E-4F1A-4C1E-9D2B-2F0C8A1E5D3F");
	assert_int_equal(st_http_reg_check(p, r, err, sizeof(err)), ST_E_PROFILE_DEVICE_ID);

	se = load_profile("sku: mcu\nfactory: acme-factory\nkey: {storage: secure-element}\n"
			  "sota: {gateway: 'https://g', ostree_server: 'https://o'}\n"
			  "files: [{set: foundries}]\n");
	assert_int_equal(st_http_reg_check(se, r, err, sizeof(err)), ST_E_HTTP_KEY_STORAGE);
	nosota = load_profile("sku: bare\nfactory: acme-factory\n"
			      "files: [{path: /etc/id, content: \"{device_id}\"}]\n");
	assert_int_equal(st_http_reg_check(nosota, r, err, sizeof(err)), ST_E_HTTP_NO_SOTA);
	st_http_reg_free(r);
	st_profile_free(se);
	st_profile_free(nosota);
	st_profile_free(p);
}

static void test_sota(void **state)
{
	const struct st_profile *p = load_profile(profile_yaml);
	struct st_http_reg *r = NULL;
	char err[512] = "", *toml = NULL;
	size_t len;

	(void)state;
	assert_int_equal(parse(tool_body, &r, err, sizeof(err)), 0);
	free(r->config_dir);
	r->config_dir = strdup("/factory/sota");
	assert_int_equal(st_http_reg_sota(p, r, NULL, &toml, &len, err, sizeof(err)), 0);
	assert_int_equal(strlen(toml), len);
	/* The request's tags replace the profile's in place; the profile's extra key stays. */
	assert_non_null(strstr(toml, "[pacman]\ntype = \"ostree+compose_apps\"\n"
				     "ostree_server = \"https://ostree.foundries.io:8443/ostree\"\n"
				     "tags = \"main\"\nextra = \"1\"\n\n[storage]"));
	assert_non_null(strstr(toml, "primary_ecu_hardware_id = \"imx8mm-lpddr4-evk\"\n"));
	assert_non_null(strstr(toml, "tls_clientcert_path = \"/factory/sota/client.pem\"\n"));
	free(toml);
	/* A hardware id that would break out of its quotes. */
	free(r->hardware_id);
	r->hardware_id = strdup("imx\"8");
	assert_int_not_equal(st_http_reg_sota(p, r, NULL, &toml, &len, err, sizeof(err)), 0);
	assert_null(toml);
	st_http_reg_free(r);
	st_profile_free(p);
}

/* A self-signed P-256 certificate in DER and PEM. */
static void make_cert(uint8_t **der, size_t *der_len, char **pem)
{
	EVP_PKEY *key = EVP_EC_gen("prime256v1");
	X509 *x = X509_new();
	BIO *b = BIO_new(BIO_s_mem());
	unsigned char *d = NULL;
	char *data;
	long n;
	int dl;

	assert_non_null(key);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_UTF8,
				   (const unsigned char *)UUID, -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, key);
	assert_true(X509_sign(x, key, EVP_sha256()) > 0);
	dl = i2d_X509(x, &d);
	assert_true(dl > 0);
	*der = d;
	*der_len = (size_t)dl;
	PEM_write_bio_X509(b, x);
	n = BIO_get_mem_data(b, &data);
	*pem = strndup(data, (size_t)n);
	BIO_free(b);
	X509_free(x);
	EVP_PKEY_free(key);
}

/* The answer finished with der (n bytes): JSON of the four files, client.pem OpenSSL's PEM of
 * der byte for byte, client.chained that and chain, the rest as prepared. */
static void check_answer_pem(struct st_http_answer *a, const struct st_http_answer_base *base,
			     const uint8_t *der, size_t n, const char *root, const char *sota,
			     const char *chain)
{
	size_t wl;
	char *want = tu_pem(der, n, "CERTIFICATE", &wl), *chained;
	json_error_t jerr;
	json_t *o;

	assert_non_null(want);
	assert_int_equal(st_http_answer_finish(a, base, der, n), 0);
	assert_true(a->len <= a->cap);
	o = json_loadb(a->buf, a->len, JSON_REJECT_DUPLICATES, &jerr);
	if (!o)
		fail_msg("%zu bytes: answer is not JSON: %s", n, jerr.text);
	assert_int_equal(json_object_size(o), 4);
	assert_string_equal(json_string_value(json_object_get(o, "client.pem")), want);
	assert_true(asprintf(&chained, "%s%s", want, chain) > 0);
	assert_string_equal(json_string_value(json_object_get(o, "client.chained")), chained);
	assert_string_equal(json_string_value(json_object_get(o, "root.crt")), root);
	assert_string_equal(json_string_value(json_object_get(o, "sota.toml")), sota);
	free(chained);
	free(want);
	json_decref(o);
}

static void test_answer(void **state)
{
	const char *root = "-----BEGIN CERTIFICATE-----\nROOT\n-----END CERTIFICATE-----\n";
	const char *chain = "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n";
	const char *sota = "[tls]\nserver = \"https://g\"\n\ttab\x01\n";
	struct st_http_answer_base base;
	struct st_http_answer a;
	uint8_t *der = NULL;
	size_t der_len;
	char *pem = NULL, *chained;
	json_error_t jerr;
	json_t *o;

	(void)state;
	make_cert(&der, &der_len, &pem);
	assert_int_equal(st_http_answer_base_init(&base, root, chain), 0);
	assert_int_equal(st_http_answer_prepare(&a, &base, sota), 0);
	assert_int_equal(st_http_answer_finish(&a, &base, der, der_len), 0);
	assert_true(a.len <= a.cap);
	o = json_loadb(a.buf, a.len, JSON_REJECT_DUPLICATES, &jerr);
	if (!o)
		fail_msg("answer is not JSON: %s: %.*s", jerr.text, (int)a.len, a.buf);
	/* Exactly the four files the device tool writes. */
	assert_int_equal(json_object_size(o), 4);
	assert_string_equal(json_string_value(json_object_get(o, "root.crt")), root);
	assert_string_equal(json_string_value(json_object_get(o, "sota.toml")), sota);
	assert_string_equal(json_string_value(json_object_get(o, "client.pem")), pem);
	assert_true(asprintf(&chained, "%s%s", pem, chain) > 0);
	assert_string_equal(json_string_value(json_object_get(o, "client.chained")), chained);
	json_decref(o);
	free(chained);

	/* Every length of a line's last piece, and a certificate beyond the reserved room: the
	 * PEM is OpenSSL's, byte for byte, in both places. */
	{
		size_t big = ST_HTTP_REG_CERT_DER_ROOM * 2 + 1;
		uint8_t *b = calloc(1, big);

		assert_non_null(b);
		for (size_t i = 0; i < big; i++)
			b[i] = (uint8_t)(i * 7 + 3);
		for (size_t n = 1; n <= 200; n++)
			check_answer_pem(&a, &base, b, n, root, sota, chain);
		check_answer_pem(&a, &base, b, big, root, sota, chain);
		free(b);
	}
	st_http_answer_clear(&a);
	st_http_answer_clear(&a);
	st_http_answer_base_clear(&base);
	OPENSSL_free(der);
	free(pem);
}

static void test_escape(void **state)
{
	const char in[] = "a\"b\\c\n\r\t\x01\x7f/é";
	char out[64];
	size_t n;

	(void)state;
	n = st_http_json_escape(out, in, sizeof(in) - 1);
	assert_int_equal(n, st_http_json_escaped_len(in, sizeof(in) - 1));
	out[n] = 0;
	assert_string_equal(out, "a\\\"b\\\\c\\n\\r\\t\\u0001\\u007f/é");
}

static void test_status(void **state)
{
	(void)state;
	assert_int_equal(st_http_status_for(ST_E_HTTP_JSON), 400);
	assert_int_equal(st_http_status_for(ST_E_HTTP_FIELD), 400);
	assert_int_equal(st_http_status_for(ST_E_CSR_SIGNATURE), 400);
	assert_int_equal(st_http_status_for(ST_E_CSR_KEY_TYPE), 400);
	assert_int_equal(st_http_status_for(ST_E_CSR_BC_UNEXPECTED), 400);
	assert_int_equal(st_http_status_for(ST_E_PROFILE_NOMATCH), 400);
	assert_int_equal(st_http_status_for(ST_E_HTTP_AUTH), 401);
	assert_int_equal(st_http_status_for(ST_E_HTTP_GROUP), 403);
	assert_int_equal(st_http_status_for(ST_E_HTTP_KEY_STORAGE), 403);
	assert_int_equal(st_http_status_for(ST_E_HTTP_NOT_FOUND), 404);
	assert_int_equal(st_http_status_for(ST_E_HTTP_METHOD), 405);
	assert_int_equal(st_http_status_for(ST_E_POOL_ID_OTHER_KEY), 409);
	assert_int_equal(st_http_status_for(ST_E_POOL_KEY_REUSED), 409);
	assert_int_equal(st_http_status_for(ST_E_HTTP_TOO_LARGE), 413);
	assert_int_equal(st_http_status_for(ST_E_HTTP_HOST), 421);
	assert_int_equal(st_http_status_for(ST_E_HTTP_BROWSER), 403);
	assert_int_equal(st_http_status_for(ST_E_POOL_FULL), 503);
	assert_int_equal(st_http_status_for(ST_E_HTTP_TIMEOUT), 503);
	assert_int_equal(st_http_status_for(ST_E_LEDGER_DUP_ID), 503);
	assert_int_equal(st_http_status_for(ST_E_SIGNER_DEVICE), 500);
}

static void test_listen(void **state)
{
	static const char *const good[] = { "127.0.0.1:8443", "0.0.0.0:0",	 "[::1]:443",
					    "[::]:65535",     "localhost:8443", "LocalHost:0" };
	static const char *const bad[] = { "127.0.0.1",	      "gateway.local:8443", "127.0.0.1:",
					   "127.0.0.1:65536", "127.0.0.1:-1",	    "[::1]8443",
					   ":8443",	      "127.0.0.1:80x",	    "[::1:443",
					   "localhost",	      "[localhost]:80",	    "localhost.:80" };
	struct sockaddr_storage ss;
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_int_equal(st_http_parse_listen(good[i], &ss, err, sizeof(err)), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (st_http_parse_listen(bad[i], &ss, err, sizeof(err)) != ST_E_CONFIG)
			fail_msg("listen '%s' accepted", bad[i]);
		assert_non_null(strstr(err, bad[i]));
	}
}

/* Loopback is 127.0.0.0/8, ::1 (however written), the IPv4 loopback mapped into IPv6, and
 * localhost; the any addresses and every other address are not. */
static void test_loopback(void **state)
{
	static const char *const loop[] = { "127.0.0.1:1",	   "127.255.255.254:1",
					    "127.0.0.2:1",	   "localhost:1",
					    "[::1]:1",		   "[0:0:0:0:0:0:0:1]:1",
					    "[::ffff:127.0.0.1]:1", "[::ffff:127.9.8.7]:1" };
	static const char *const not_loop[] = {
		"0.0.0.0:1",	    "[::]:1",		  "192.0.2.1:1",     "10.0.0.1:1",
		"128.0.0.1:1",	    "126.255.255.255:1", "255.255.255.255:1", "[2001:db8::1]:1",
		"[fe80::1]:1",	    "[::ffff:192.0.2.1]:1", "[::ffff:0.0.0.0]:1", "[::2]:1",
		"[::127.0.0.1]:1",
	};
	struct sockaddr_storage ss;
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(loop) / sizeof(loop[0]); i++) {
		assert_int_equal(st_http_parse_listen(loop[i], &ss, err, sizeof(err)), 0);
		if (!st_http_is_loopback(&ss))
			fail_msg("%s is loopback", loop[i]);
	}
	for (size_t i = 0; i < sizeof(not_loop) / sizeof(not_loop[0]); i++) {
		assert_int_equal(st_http_parse_listen(not_loop[i], &ss, err, sizeof(err)), 0);
		if (st_http_is_loopback(&ss))
			fail_msg("%s is not loopback", not_loop[i]);
	}
}

/* The Host a loopback server answers: this machine's loopback names and its own name, with
 * or without a port; every other name (a page's own, rebound to 127.0.0.1), every other
 * address, and every malformed Host are refused. */
static void test_host(void **state)
{
	static const char *const local[] = {
		"",		   "localhost",		 "localhost:8443",     "LOCALHOST",
		"localhost.",	   "localhost.:1",	 "station.localhost",  "a.b.LocalHost:80",
		"127.0.0.1",	   "127.0.0.1:8443",	 "127.255.255.254:1",  "127.0.1.1",
		"[::1]",	   "[::1]:8443",	 "[0:0:0:0:0:0:0:1]:1", "[::ffff:127.0.0.1]",
		"[::ffff:127.9.8.7]:65535", "line-3",	 "LINE-3:8443",	       "line-3.",
	};
	static const char *const other[] = {
		"evil.example",	      "evil.example:8443",  "localhost.evil.example",
		"127.0.0.1.nip.io",   "xlocalhost",	    "localhost.example",
		".localhost",	      "evil.localhost.example", "line-3.evil.example",
		"line-4",	      "10.0.0.1",	    "192.0.2.1:8443",
		"0.0.0.0",	      "128.0.0.1",	    "[::]",
		"[2001:db8::1]:443",  "[::ffff:192.0.2.1]", "[fe80::1]",
		"localhost:",	      "localhost:abc",	    "localhost:123456",
		"localhost:80:80",    "localhost :80",	    " localhost",
		"localhost\t",	      "localhost\r\nx",  "[::1]x",
		"[::1]:",	      "[::1",		    "[]",
		"[localhost]",	      "[127.0.0.1]",	    "::1",
		"127.0.0.1:80:80",    "127.1",		    "0x7f.0.0.1",
		"localhost/",	      "user@localhost",	    "..",
		".",		      ":80",
	};
	static const char nul[] = "localhost\0.evil.example";

	(void)state;
	for (size_t i = 0; i < sizeof(local) / sizeof(local[0]); i++) {
		if (!st_http_host_is_local(local[i], strlen(local[i]), "line-3"))
			fail_msg("Host '%s' is this machine's", local[i]);
	}
	for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
		if (st_http_host_is_local(other[i], strlen(other[i]), "line-3"))
			fail_msg("Host '%s' is not this machine's", other[i]);
	}
	assert_false(st_http_host_is_local(nul, sizeof(nul) - 1, "line-3"));
	/* Without a host name, only the loopback names. */
	assert_true(st_http_host_is_local("localhost", 9, NULL));
	assert_false(st_http_host_is_local("line-3", 6, NULL));
	assert_false(st_http_host_is_local("line-3", 6, ""));
	/* A port counts only after the name: the bytes after n are not read. */
	assert_true(st_http_host_is_local("localhost.evil.example", 9, NULL));
}

/* Loads a configuration whose http section is given; returns the diagnostics. */
static int load_config(const char *http, struct st_config **cfg, char *diag, size_t dlen)
{
	char buf[4096], err[256];
	FILE *f = fmemopen(diag, dlen, "w");
	int rc;

	snprintf(buf, sizeof(buf),
		 "ca: {signer: file, key: ca.key, cert: ca.pem, root: root.pem}\n%s", http);
	memset(diag, 0, dlen);
	rc = st_config_load_buffer("station.yaml", "/etc/station", buf, strlen(buf), f, cfg, err,
				   sizeof(err));
	fclose(f);
	return rc;
}

static void test_config(void **state)
{
	struct st_config *cfg = NULL;
	char diag[4096];

	(void)state;
	assert_int_equal(load_config("", &cfg, diag, sizeof(diag)), 0);
	assert_int_equal(cfg->http.enabled, 0);
	st_config_free(cfg);

	assert_int_equal(load_config("http: {}\n", &cfg, diag, sizeof(diag)), 0);
	assert_int_equal(cfg->http.enabled, 1);
	assert_string_equal(cfg->http.listen, ST_HTTP_DEFAULT_LISTEN);
	assert_int_equal(cfg->http.max_body, ST_HTTP_DEFAULT_MAX_BODY);
	assert_int_equal(cfg->http.max_connections, ST_HTTP_DEFAULT_MAX_CONNECTIONS);
	st_config_free(cfg);

	assert_int_equal(load_config("http:\n  listen: '[::1]:9443'\n  tls_cert: gw.pem\n"
				     "  tls_key: gw.key\n  client_ca: cas.pem\n"
				     "  token_file: tokens\n  max_body: 8192\n"
				     "  tokens: [aaaaaaaaaaaaaaaaaaaa, bbbbbbbbbbbbbbbbbbbb]\n",
				     &cfg, diag, sizeof(diag)),
			 0);
	assert_string_equal(cfg->http.listen, "[::1]:9443");
	assert_string_equal(cfg->http.tls_cert, "/etc/station/gw.pem");
	assert_string_equal(cfg->http.client_ca, "/etc/station/cas.pem");
	assert_string_equal(cfg->http.token_file, "/etc/station/tokens");
	assert_int_equal(cfg->http.max_body, 8192);
	assert_int_equal(cfg->http.n_tokens, 2);
	st_config_free(cfg);

	/* Every problem, in one run, never quoting a token. */
	assert_int_equal(load_config("http:\n  listen: gateway.local:80\n  tls_key: gw.key\n"
				     "  max_body: 10\n  tokens: [short-secret-1, 'with space secret "
				     "value']\n  port: 1\n",
				     &cfg, diag, sizeof(diag)),
			 ST_E_CONFIG);
	assert_null(cfg);
	assert_non_null(strstr(diag, "station.yaml:3:11: listen address 'gateway.local:80'"));
	assert_non_null(strstr(diag, "HTTPS needs both 'tls_cert' and 'tls_key'"));
	assert_non_null(strstr(diag, "max_body"));
	assert_non_null(strstr(diag, "tokens[0] is 14 bytes long"));
	assert_non_null(strstr(diag, "tokens[1] has a character that is not printable ASCII"));
	assert_non_null(strstr(diag, "'port'"));
	assert_null(strstr(diag, "short-secret-1"));
	assert_null(strstr(diag, "with space"));

	assert_int_equal(load_config("http: {client_ca: cas.pem}\n", &cfg, diag, sizeof(diag)),
			 ST_E_CONFIG);
	assert_non_null(strstr(diag, "'client_ca' needs HTTPS"));
}

/* Every combination of where the server listens (loopback, any, a specific address; IPv4,
 * IPv6, localhost), TLS or not, how clients authenticate (nothing, tokens in the file or in a
 * token file, client certificates, both) and allow_unauthenticated (absent, true, false):
 * beyond loopback the configuration loads only with client certificates, tokens over HTTPS
 * or allow_unauthenticated: true, never with tokens over plain HTTP, and each refusal is an
 * error at the key concerned that names the fix. */
static void test_auth_matrix(void **state)
{
	static const struct {
		const char *listen;
		int loopback;
	} listens[] = {
		{ NULL, 1 },		  { "127.0.0.1:8443", 1 }, { "127.3.2.1:0", 1 },
		{ "localhost:8443", 1 },  { "'[::1]:8443'", 1 },   { "'[::ffff:127.0.0.1]:1'", 1 },
		{ "0.0.0.0:8443", 0 },	  { "'[::]:8443'", 0 },	   { "192.0.2.1:8443", 0 },
		{ "'[2001:db8::1]:0'", 0 }, { "'[::ffff:192.0.2.1]:1'", 0 }, { "10.1.2.3:443", 0 },
	};
	enum { A_NONE, A_TOKENS, A_TOKEN_FILE, A_CERTS, A_CERTS_TOKENS, A_N };
	static const char *const auths[A_N] = {
		"",
		"  tokens: [aaaaaaaaaaaaaaaaaaaa]\n",
		"  token_file: tokens.txt\n",
		"  client_ca: cas.pem\n",
		"  client_ca: cas.pem\n  token_file: tokens.txt\n",
	};
	static const char *const allows[] = { "", "  allow_unauthenticated: true\n",
					      "  allow_unauthenticated: false\n" };
	struct st_config *cfg = NULL;
	char http[1024], diag[4096];
	unsigned combos = 0;

	(void)state;
	for (size_t l = 0; l < sizeof(listens) / sizeof(listens[0]); l++) {
		for (int tls = 0; tls < 2; tls++) {
			for (int a = 0; a < A_N; a++) {
				for (int w = 0; w < 3; w++) {
					int certs = a == A_CERTS || a == A_CERTS_TOKENS;
					int tokens = a != A_NONE && a != A_CERTS;
					int allow = w == 1;
					const char *want = NULL;
					int rc;

					snprintf(http, sizeof(http), "http:\n%s%s%s%s%s%s%s",
						 listens[l].listen ? "  listen: " : "",
						 listens[l].listen ? listens[l].listen : "",
						 listens[l].listen ? "\n" : "",
						 tls ? "  tls_cert: gw.pem\n  tls_key: gw.key\n" : "",
						 auths[a], allows[w], "  max_body: 65536\n");
					if (certs && !tls)
						want = "'client_ca' needs HTTPS";
					else if (allow && (tokens || certs))
						want = "'allow_unauthenticated: true' contradicts";
					else if (!listens[l].loopback && tokens && !tls)
						want = "tokens over plain HTTP";
					else if (!listens[l].loopback && !tokens && !certs &&
						 !allow)
						want = "is not loopback: anyone who reaches it";
					rc = load_config(http, &cfg, diag, sizeof(diag));
					if (!want) {
						if (rc != 0)
							fail_msg("refused:\n%s%s", http, diag);
						assert_int_equal(cfg->http.allow_unauthenticated,
								 allow);
						st_config_free(cfg);
						cfg = NULL;
					} else {
						if (rc != ST_E_CONFIG || !strstr(diag, want))
							fail_msg("not refused for '%s':\n%s%s", want,
								 http, diag);
						assert_null(cfg);
					}
					/* Each refusal names the fix, at the key concerned. */
					if (want && want[0] == 't') {
						char at[64];
						int line = 3 + (listens[l].listen != NULL) +
							   (a == A_CERTS_TOKENS);

						snprintf(at, sizeof(at), "station.yaml:%d:%d: tokens",
							 line, a == A_TOKENS ? 11 : 15);
						assert_non_null(strstr(diag, "add tls_cert and tls_key"));
						if (!strstr(diag, at))
							fail_msg("not at %s:\n%s", at, diag);
					}
					if (want && want[0] == 'i') {
						assert_non_null(strstr(diag, "Require client certificates"));
						assert_non_null(strstr(diag, "allow_unauthenticated: true"));
						assert_non_null(strstr(diag, "station.yaml:3:11: listen"));
					}
					combos++;
				}
			}
		}
	}
	assert_int_equal(combos, 12 * 2 * A_N * 3);
}

/* --- Which profile a request gets --------------------------------------------------------- */

/* A body as lmp-device-register sends it (pretty-printed, "\/" escapes, every value a
 * string) with a real CSR: a new P-256 key, CN=uuid, OU=factory and, for a production
 * device, businessCategory=production. Returns the JSON (free()). */
static char *device_body(const char *uuid, const char *hwid, int production)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	size_t der_len;
	uint8_t *der;
	BIO *b = BIO_new(BIO_s_mem());
	char *pem, *out;
	long n;
	json_t *j;

	assert_non_null(key);
	assert_non_null(b);
	der = tu_csr_der(key, uuid, "acme-factory", production, &der_len);
	assert_non_null(der);
	assert_true(PEM_write_bio(b, "CERTIFICATE REQUEST", "", der, (long)der_len) > 0);
	n = BIO_get_mem_data(b, &pem);
	j = json_pack("{s:s, s:s, s:s%, s:s, s:s, s:{s:{s:s}}, s:s}", "name", "gw-17", "uuid",
		      uuid, "csr", pem, (size_t)n, "hardware-id", hwid, "sota-config-dir",
		      "/var/sota", "overrides", "pacman", "tags", "\"main\"", "use-ostree-server",
		      "true");
	assert_non_null(j);
	out = json_dumps(j, JSON_INDENT(4) | JSON_ESCAPE_SLASH);
	assert_non_null(out);
	json_decref(j);
	BIO_free(b);
	free(der);
	EVP_PKEY_free(key);
	return out;
}

/* Parses body, chooses its profile in set; returns the code and sets *p. When one is chosen,
 * the whole request passes its checks against it, as the server would sign it. */
static int choose(const struct st_profiles *set, const char *body, const struct st_profile **p,
		  char *err, size_t errlen)
{
	struct st_http_reg *r = NULL;
	struct st_csr *csr = NULL;
	int rc;

	assert_int_equal(st_http_reg_parse(body, strlen(body), &r, err, errlen), 0);
	rc = st_http_reg_choose(set, r, p, err, errlen);
	if (rc == 0 && (st_http_reg_check(*p, r, err, errlen) != 0 ||
			st_csr_check(&(*p)->policy, "acme-factory", (const uint8_t *)r->csr,
				     r->csr_len, r->uuid, &csr, err, errlen) != 0))
		rc = ST_E_INVAL;
	st_csr_free(csr);
	st_http_reg_free(r);
	return rc;
}

/* The shipped gateway profiles share a hardware id and differ by match.sku, which a request
 * cannot carry: the CSR's businessCategory chooses between them, for a production and a
 * development device alike. */
static void test_choose_shipped(void **state)
{
	const char *srcdir = getenv("SOURCE_DIR");
	struct st_profiles *set = st_profiles_new();
	const struct st_profile *p;
	char dir[4096], err[1024] = "";
	char *body;

	(void)state;
	assert_non_null(srcdir);
	assert_non_null(set);
	snprintf(dir, sizeof(dir), "%s/profiles", srcdir);
	if (st_profile_set_load(dir, stderr, &set->dir, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	body = device_body(UUID, "imx8mm-lpddr4-evk", 1);
	if (choose(set, body, &p, err, sizeof(err)) != 0)
		fail_msg("production device: %s", err);
	assert_string_equal(p->sku, "acme-gw100-prod");
	free(body);
	body = device_body(UUID, "imx8mm-lpddr4-evk", 0);
	if (choose(set, body, &p, err, sizeof(err)) != 0)
		fail_msg("development device: %s", err);
	assert_string_equal(p->sku, "acme-gw100");
	free(body);
	st_profiles_unref(set);
}

/* The rule over other sets: the production flag first, then the one profile without
 * match.sku; a choice left open is refused naming every candidate; a CSR that fits none
 * goes to the profile the hardware id has, whose check names the problem. */
static void test_choose_rules(void **state)
{
	static const char *const yaml[] = {
		"sku: a\nfactory: acme-factory\nmatch: {hardware_ids: [hw-a]}\n" SOTA_FILES,
		"sku: b1\nfactory: acme-factory\nproduction: true\n"
		"match: {hardware_ids: [hw-b], sku: b1}\n" SOTA_FILES,
		"sku: b2\nfactory: acme-factory\nproduction: true\n"
		"match: {hardware_ids: [hw-b], sku: b2}\n" SOTA_FILES,
		"sku: c\nfactory: acme-factory\nmatch: {hardware_ids: [hw-c]}\n" SOTA_FILES,
		"sku: c-rev2\nfactory: acme-factory\nmatch: {hardware_ids: [hw-c], sku: rev2}\n"
		SOTA_FILES,
		"sku: d-dev\nfactory: acme-factory\nmatch: {hardware_ids: [hw-d], sku: dev}\n"
		SOTA_FILES,
		"sku: d-prod\nfactory: acme-factory\nproduction: true\n"
		"match: {hardware_ids: [hw-d], sku: prod}\n" SOTA_FILES,
	};
	struct st_profiles *set = st_profiles_new();
	const struct st_profile *p;
	char err[1024] = "";
	char *body;

	(void)state;
	assert_non_null(set);
	set->list = calloc(sizeof(yaml) / sizeof(yaml[0]), sizeof(*set->list));
	assert_non_null(set->list);
	for (size_t i = 0; i < sizeof(yaml) / sizeof(yaml[0]); i++)
		set->list[set->n++] = load_profile(yaml[i]);

#define CHOOSES(hw, prod, code, want)                                                                \
	do {                                                                                       \
		body = device_body(UUID, hw, prod);                                                \
		p = NULL;                                                                          \
		assert_int_equal(choose(set, body, &p, err, sizeof(err)), code);                   \
		if (want)                                                                          \
			assert_string_equal(p->sku, (const char *)(want));                         \
		free(body);                                                                        \
	} while (0)
	CHOOSES("hw-a", 0, 0, "a");
	CHOOSES("hw-c", 0, 0, "c");
	CHOOSES("hw-d", 0, 0, "d-dev");
	CHOOSES("hw-d", 1, 0, "d-prod");
	/* A production CSR for hardware with no production profile: its profile, refused. */
	CHOOSES("hw-a", 1, ST_E_INVAL, NULL);
	assert_non_null(strstr(err, "businessCategory"));
	CHOOSES("hw-c", 1, ST_E_INVAL, NULL);
	/* Two production profiles, each for its own sku: a request cannot tell. */
	CHOOSES("hw-b", 1, ST_E_SLOT_PROFILE_AMBIGUOUS, NULL);
	assert_non_null(strstr(err, "hardware id 'hw-b' with a production CSR matches 2 profiles: "
				    "b1 (test.yaml), b2 (test.yaml)"));
	assert_int_equal(st_http_status_for(ST_E_SLOT_PROFILE_AMBIGUOUS), 400);
	CHOOSES("hw-b", 0, ST_E_SLOT_PROFILE_AMBIGUOUS, NULL);
	assert_non_null(strstr(err, "hardware id 'hw-b' matches 2 profiles"));
	/* Unknown hardware: the default profile, else refused. */
	CHOOSES("hw-x", 0, ST_E_PROFILE_NOMATCH, NULL);
	assert_non_null(strstr(err, "no profile matches hardware id 'hw-x'"));
	set->deflt = load_profile(yaml[0]);
	CHOOSES("hw-x", 0, 0, "a");
#undef CHOOSES
	st_profiles_unref(set);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_tool_body),
		cmocka_unit_test(test_parse_uuid_case),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_parse_config_dir),
		cmocka_unit_test(test_parse_bounds),
		cmocka_unit_test(test_check),
		cmocka_unit_test(test_choose_shipped),
		cmocka_unit_test(test_choose_rules),
		cmocka_unit_test(test_sota),
		cmocka_unit_test(test_answer),
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_status),
		cmocka_unit_test(test_listen),
		cmocka_unit_test(test_config),
		cmocka_unit_test(test_loopback),
		cmocka_unit_test(test_host),
		cmocka_unit_test(test_auth_matrix),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
