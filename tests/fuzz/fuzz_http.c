/* Fuzz target: the registration request (http_reg.h) as bytes from the network: the JSON
 * parse, every field check, the overrides, the profile's rules, sota.toml rendered with the
 * request's overrides and the 201 answer laid out and filled in never crash, never read out
 * of bounds and never leak; an accepted request always yields a JSON answer of exactly four
 * keys. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "err.h"
#include "http_reg.h"
#include "profile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char profile_yaml[] = "sku: gw\n"
				   "match: {hardware_ids: [imx8mm-lpddr4-evk]}\n"
				   "factory: acme-factory\n"
				   "sota:\n"
				   "  gateway: https://ota-lite.foundries.io:8443\n"
				   "  ostree_server: https://ostree.foundries.io:8443\n"
				   "  overrides: {pacman: {tags: '\"devel\"'}}\n"
				   "groups: [line-1]\n"
				   "files:\n"
				   "  - set: foundries\n";

static const struct st_profile *profile(void)
{
	static const struct st_profile *p;
	char err[256];

	if (!p && st_profile_load_buffer("fuzz.yaml", profile_yaml, sizeof(profile_yaml) - 1,
					 NULL, &p, err, sizeof(err)) != 0)
		abort();
	return p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t der[] = { 0x30, 0x03, 0x02, 0x01, 0x07 };
	struct st_http_reg *r = NULL;
	struct st_http_answer_base base;
	struct st_http_answer a;
	char err[512], *toml = NULL;
	size_t len;
	json_t *o;

	if (st_http_reg_parse(data, size, &r, err, sizeof(err)) != 0) {
		if (r)
			abort();
		return 0;
	}
	if (!r || !r->csr || !r->uuid || !r->hardware_id || strlen(r->csr) != r->csr_len)
		abort();
	st_http_reg_check(profile(), r, err, sizeof(err));
	if (st_http_reg_sota(profile(), r, NULL, &toml, &len, err, sizeof(err)) == 0) {
		if (!toml || strlen(toml) != len)
			abort();
		if (st_http_answer_base_init(&base, "root\n", "chain\n") != 0)
			abort();
		if (st_http_answer_prepare(&a, &base, toml) == 0) {
			if (st_http_answer_finish(&a, &base, der, sizeof(der)) != 0)
				abort();
			o = json_loadb(a.buf, a.len, JSON_REJECT_DUPLICATES, NULL);
			if (!o || json_object_size(o) != 4)
				abort();
			json_decref(o);
			st_http_answer_clear(&a);
		}
		st_http_answer_base_clear(&base);
		free(toml);
	}
	st_http_reg_free(r);
	return 0;
}
