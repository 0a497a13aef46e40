/* SHA-256's compression from OpenSSL, which runs it on the CPU's SHA extensions or vector
 * units where there are any: the board core's own C takes several times longer a block, and a
 * host running many boards (simboard) hashes every file they write and read back.
 * SHA256_Transform is the one OpenSSL call that compresses blocks into a caller's state. It
 * is deprecated in OpenSSL 3, which keeps it. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "sha256_openssl.h"

#include <string.h>

#include <openssl/sha.h>

void sha256_openssl_blocks(uint32_t h[8], const uint8_t *p, size_t n)
{
	SHA256_CTX c;
	int i;

	memset(&c, 0, sizeof(c));
	for (i = 0; i < 8; i++)
		c.h[i] = h[i];
	for (; n; n--, p += 64)
		SHA256_Transform(&c, p);
	for (i = 0; i < 8; i++)
		h[i] = c.h[i];
}
