/* SHA-256's compression from OpenSSL for the board core (sha256.h): station-agent's OpenSSL
 * port and simboard give it to their boards (struct brd_config's sha256_blocks). */
#ifndef SHA256_OPENSSL_H
#define SHA256_OPENSSL_H

#include <stddef.h>
#include <stdint.h>

/* A brd_sha256_blocks_fn: h updated by n 64-byte blocks at p. */
void sha256_openssl_blocks(uint32_t h[8], const uint8_t *p, size_t n);

#endif
