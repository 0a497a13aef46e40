/* Fuzz target: the CSR checks (PEM framing, base64, the DER walker, key, signature, subject
 * and attribute parsing) never crash, never read out of bounds and never leak, whatever the
 * bytes; an accepted CSR carries exactly its SubjectPublicKeyInfo. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct st_policy p;
	struct st_csr *csr = NULL;
	char err[256];
	int pass;

	for (pass = 0; pass < 2; pass++) {
		st_policy_default(&p);
		if (pass) {
			/* Everything allowed, so that the other key paths are reached too. */
			p.key_algs = ST_KEY_EC_P256 | ST_KEY_EC_P384 | ST_KEY_EC_P521 |
				     ST_KEY_ED25519 | ST_KEY_RSA2048;
			p.production = 1;
		}
		if (st_csr_check(&p, "acme-factory", data, size, "fuzz-device", &csr, err,
				 sizeof(err)) == 0) {
			if (!csr || csr->spki_len == 0 || csr->pubkey_len >= csr->spki_len)
				abort();
			st_csr_free(csr);
		} else if (csr) {
			abort();
		}
	}
	return 0;
}
