/* Fast ECDSA verification for the per-certificate path. OpenSSL 3.0's EVP layer
 * builds a provider key object for every new public key, which costs more than the
 * verification itself; the low-level EC API works on a point decoded against a cached curve
 * group and is several times cheaper. Everything here is thread-safe: the cached groups are
 * built once and never change, every key object belongs to its caller. */
#ifndef ST_ECDSA_H
#define ST_ECDSA_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ec.h>

/* The curves the station knows. */
enum st_ec_curve {
	ST_EC_P256,
	ST_EC_P384,
	ST_EC_P521,
	ST_EC_NCURVES,
};

/* Bytes of one coordinate on curve c (32, 48, 66). */
size_t st_ec_field_len(enum st_ec_curve c);

/* OpenSSL's short curve name ("prime256v1"). */
const char *st_ec_curve_name(enum st_ec_curve c);

/* Maps an OpenSSL curve NID to a known curve; -1 for others. */
int st_ec_curve_from_nid(int nid);

/* A public key on curve c from an uncompressed point (0x04 || X || Y). Returns a new key
 * (free with st_ec_key_free) or NULL when the encoding is wrong, a coordinate is out of
 * range, or the point is not on the curve or is the point at infinity. */
EC_KEY *st_ec_key_from_point(enum st_ec_curve c, const uint8_t *pt, size_t len);
void st_ec_key_free(EC_KEY *key);

/* Verifies a DER ECDSA-Sig-Value over a digest. Returns 1 when valid, 0 when it does not
 * verify, -1 when sig is not a strict DER ECDSA-Sig-Value with positive r and s. */
int st_ecdsa_verify(EC_KEY *key, const uint8_t *digest, size_t dlen, const uint8_t *sig,
		    size_t siglen);

#endif
