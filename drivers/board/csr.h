/* The board core's CSR builder: the PKCS#10 request drivers/PROTOCOL.md asks for, encoded
 * in DER by hand so that a board needs only a key that can sign a digest. */
#ifndef BRD_CSR_H
#define BRD_CSR_H

#include <stddef.h>
#include <stdint.h>

/* Signs a SHA-256 digest with ECDSA P-256: r || s into sig. Returns 0 or negative. */
typedef int (*brd_csr_sign_fn)(void *inst, const uint8_t digest[32], uint8_t sig[64]);

/* Builds into buf (cap bytes) the CSR for public key pub (uncompressed P-256 point) with
 * subject CN=cn, then OU=ou and businessCategory=bc when not empty (UTF8String each, in that
 * order), requesting KeyUsage digitalSignature and ExtendedKeyUsage clientAuth (both
 * critical), signed with ECDSA-SHA256 through sign. Returns the DER length, 0 when it does
 * not fit or a name is empty or longer than 64 bytes, or the negative code of sign. */
long brd_csr_build(uint8_t *buf, size_t cap, const char *cn, const char *ou, const char *bc,
		   const uint8_t pub[65], brd_csr_sign_fn sign, void *inst);

#endif
