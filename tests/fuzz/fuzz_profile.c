/* Fuzz target for the YAML loaders: profiles (with a render of whatever loads) and the
 * station configuration, from the same bytes. Relative references (extends, template files)
 * resolve into a directory that does not exist, so every run sees the same world. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "profile.h"

#define FUZZ_DIR "/nonexistent-station-fuzz"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void render(const struct st_profile *p)
{
	static const char cert[] = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
	struct st_render_input in = {
		.device_id = "6b3c7c2e-4f1a-4c1e-9d2b-2f0c8a1e5d3f",
		.hardware_id = "imx8mm-lpddr4-evk",
		.cert_pem = cert,
		.chain_pem = cert,
		.root_pem = cert,
	};
	struct st_render *r = NULL;
	char id[128], err[256];

	if (p->devid_source == ST_DEVID_SEQUENCE &&
	    st_profile_sequence_id(p, 42, id, sizeof(id)) == 0)
		in.device_id = id;
	if (st_profile_render(p, &in, &r, err, sizeof(err)) == 0)
		st_render_free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct st_profile *p = NULL;
	struct st_config *c = NULL;
	char err[256];

	if (size > 256 * 1024)
		return 0;
	if (st_profile_load_buffer(FUZZ_DIR "/fuzz.yaml", data, size, NULL, &p, err, sizeof(err)) ==
	    0) {
		render(p);
		st_profile_free(p);
	}
	if (st_config_load_buffer("fuzz.yaml", FUZZ_DIR, data, size, NULL, &c, err, sizeof(err)) ==
	    0)
		st_config_free(c);
	return 0;
}
