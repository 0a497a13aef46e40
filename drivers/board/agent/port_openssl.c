/* station-agent's crypto port on OpenSSL: the key in a PKCS#11 token or a PEM file
 * (key_file.c), random bytes from OpenSSL's generator, SHA-256's compression from OpenSSL
 * (sha256_openssl.c). */
#include "agent.h"

#include <openssl/rand.h>

#include "sha256_openssl.h"

const struct agent_key_backend *const agent_key_backends[] = { &agent_key_pkcs11,
							       &agent_key_file, NULL };

brd_sha256_blocks_fn *const agent_sha256_blocks = sha256_openssl_blocks;

int agent_random(void *buf, size_t n)
{
	return RAND_bytes(buf, (int)n) == 1 ? 0 : -1;
}
