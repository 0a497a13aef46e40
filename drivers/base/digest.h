/* One-shot message digests through OpenSSL's EVP interface, the one place the station hashes
 * a buffer whole (CSRs, public keys, certificates' signed parts, files for a board, tokens).
 * Any thread. */
#ifndef ST_DIGEST_H
#define ST_DIGEST_H

#include <stddef.h>
#include <stdint.h>

enum st_digest {
	ST_SHA1,   /* 20 bytes: only where a standard asks for it (key identifiers) */
	ST_SHA256, /* 32 bytes */
	ST_SHA384, /* 48 bytes */
	ST_SHA512, /* 64 bytes */
};

#define ST_DIGEST_MAX 64 /* bytes of the longest digest */

/* The digest's length in bytes. */
size_t st_digest_len(enum st_digest alg);

/* Hashes len bytes of data into out (st_digest_len(alg) bytes) and returns that length.
 * OpenSSL fails to hash only when memory runs out: the process then aborts with a message
 * rather than go on with a hash that is not one. */
size_t st_digest(enum st_digest alg, const void *data, size_t len, uint8_t *out);

#endif
