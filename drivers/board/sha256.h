/* SHA-256 (FIPS 180-4) for the board core: streaming, no heap, no tables beyond the 64
 * round constants. The core hashes CSRs, files read back from storage and the
 * proof-of-possession message with it; a platform with a hardware hash may still use this. */
#ifndef BRD_SHA256_H
#define BRD_SHA256_H

#include <stddef.h>
#include <stdint.h>

struct brd_sha256 {
	uint32_t h[8];
	uint64_t total;
	uint8_t buf[64];
	size_t n;
};

void brd_sha256_init(struct brd_sha256 *c);
void brd_sha256_update(struct brd_sha256 *c, const void *data, size_t n);
void brd_sha256_final(struct brd_sha256 *c, uint8_t out[32]);
/* One call: out = SHA-256(data[0..n)). */
void brd_sha256(const void *data, size_t n, uint8_t out[32]);

#endif
