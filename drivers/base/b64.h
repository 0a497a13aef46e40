/* Base64 as RFC 4648 defines it (standard alphabet, '=' padding, no line breaks), one codec
 * for the board protocol's binary fields and for the PEM bodies the issuance policy reads.
 * The decoder is strict: it accepts exactly the encoder's output and nothing else. Nothing
 * here allocates or keeps state; every function is safe on any thread. */
#ifndef DRV_B64_H
#define DRV_B64_H

#include <stddef.h>
#include <stdint.h>

/* The encoded length of n bytes (padding included, no terminating NUL). */
size_t drv_b64_len(size_t n);

/* Encodes n bytes of data into out, which has room for drv_b64_len(n) characters; writes no
 * NUL. Returns the number of characters written. */
size_t drv_b64_encode(char *out, const void *data, size_t n);

/* The 6-bit value of the base64 character c, or -1 when c is not in the alphabet ('=' is
 * not: padding is the caller's to handle). */
int drv_b64_value(unsigned char c);

/* Decodes the n characters at in into out (capacity cap). Padding is allowed only as one or
 * two '=' ending the last group, and the bits it drops must be zero (the canonical form).
 * Returns 0 with *outlen set; -1 when a character is not allowed where it stands, with *bad
 * its 0-based index; -2 when the result would exceed cap. */
int drv_b64_decode(uint8_t *out, size_t cap, const char *in, size_t n, size_t *outlen,
		   size_t *bad);

#endif
