/* SHA-256 (FIPS 180-4) for the board core: streaming, no heap, no tables beyond the 64
 * round constants. The core hashes CSRs, files read back from storage and the
 * proof-of-possession message with it. A platform with a hardware hash or a crypto library
 * gives a board its compression (struct brd_config's sha256_blocks); the rest stays here. */
#ifndef BRD_SHA256_H
#define BRD_SHA256_H

#include <stddef.h>
#include <stdint.h>

/* A platform's SHA-256 compression (a hardware unit's, or a crypto library's): updates h by
 * n whole 64-byte blocks at p, as FIPS 180-4's compression does. Padding, lengths and
 * buffering stay the core's. */
typedef void brd_sha256_blocks_fn(uint32_t h[8], const uint8_t *p, size_t n);

struct brd_sha256 {
	uint32_t h[8];
	uint64_t total;
	uint8_t buf[64];
	size_t n;
	brd_sha256_blocks_fn *blocks; /* NULL: the core's own compression */
};

/* A hash by the core's own compression. */
void brd_sha256_init(struct brd_sha256 *c);
/* A hash by blocks (NULL: the core's own). */
void brd_sha256_init_with(struct brd_sha256 *c, brd_sha256_blocks_fn *blocks);
void brd_sha256_update(struct brd_sha256 *c, const void *data, size_t n);
void brd_sha256_final(struct brd_sha256 *c, uint8_t out[32]);
/* One call: out = SHA-256(data[0..n)). */
void brd_sha256(const void *data, size_t n, uint8_t out[32]);
/* The same by blocks (NULL: the core's own). */
void brd_sha256_with(brd_sha256_blocks_fn *blocks, const void *data, size_t n,
		     uint8_t out[32]);

#endif
