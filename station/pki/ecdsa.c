/* The low-level EC_KEY API is deprecated in OpenSSL 3.0 but remains supported for the whole
 * 3.x series; it is used here on purpose, for speed (see ecdsa.h). */
#define OPENSSL_SUPPRESS_DEPRECATED

#include "ecdsa.h"

#include <pthread.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>

#include "der.h"

static const struct {
	int nid;
	const char *name;
	size_t field_len;
} curves[ST_EC_NCURVES] = {
	[ST_EC_P256] = { NID_X9_62_prime256v1, "prime256v1", 32 },
	[ST_EC_P384] = { NID_secp384r1, "secp384r1", 48 },
	[ST_EC_P521] = { NID_secp521r1, "secp521r1", 66 },
};

/* Built once: creating a group from the curve's name is much dearer than copying one. */
static EC_GROUP *groups[ST_EC_NCURVES];
static pthread_once_t groups_once = PTHREAD_ONCE_INIT;

static void groups_init(void)
{
	int i;

	for (i = 0; i < ST_EC_NCURVES; i++)
		groups[i] = EC_GROUP_new_by_curve_name(curves[i].nid);
}

size_t st_ec_field_len(enum st_ec_curve c)
{
	return curves[c].field_len;
}

const char *st_ec_curve_name(enum st_ec_curve c)
{
	return curves[c].name;
}

int st_ec_curve_from_nid(int nid)
{
	int i;

	for (i = 0; i < ST_EC_NCURVES; i++) {
		if (curves[i].nid == nid)
			return i;
	}
	return -1;
}

EC_KEY *st_ec_key_from_point(enum st_ec_curve c, const uint8_t *pt, size_t len)
{
	const unsigned char *p = pt;
	EC_KEY *key = NULL;

	if (len != 1 + 2 * curves[c].field_len || pt[0] != 0x04)
		return NULL;
	pthread_once(&groups_once, groups_init);
	if (!groups[c])
		return NULL;
	key = EC_KEY_new();
	if (!key || !EC_KEY_set_group(key, groups[c]))
		goto fail;
	/* oct2point rejects coordinates >= p and points off the curve; the uncompressed form
	 * cannot encode infinity, but check anyway in case that ever changes. */
	if (!o2i_ECPublicKey(&key, &p, (long)len) || p != pt + len)
		goto fail;
	if (EC_POINT_is_at_infinity(groups[c], EC_KEY_get0_public_key(key)))
		goto fail;
	return key;
fail:
	ERR_clear_error();
	EC_KEY_free(key);
	return NULL;
}

void st_ec_key_free(EC_KEY *key)
{
	EC_KEY_free(key);
}

int st_ecdsa_verify(EC_KEY *key, const uint8_t *digest, size_t dlen, const uint8_t *sig,
		    size_t siglen)
{
	struct st_der d, in;
	struct st_der_tlv seq, r, s;
	BIGNUM *br = NULL, *bs = NULL;
	ECDSA_SIG *es = NULL;
	int rc = -1;

	st_der_init(&d, sig, siglen);
	if (st_der_expect(&d, ST_DER_SEQUENCE, &seq) != ST_DER_OK || d.len != 0)
		return -1;
	st_der_enter(&seq, &in);
	if (st_der_expect(&in, ST_DER_INTEGER, &r) != ST_DER_OK ||
	    st_der_expect(&in, ST_DER_INTEGER, &s) != ST_DER_OK || in.len != 0)
		return -1;
	if (st_der_int_sign(&r) != 1 || st_der_int_sign(&s) != 1)
		return -1;
	es = ECDSA_SIG_new();
	br = BN_bin2bn(r.val, (int)r.len, NULL);
	bs = BN_bin2bn(s.val, (int)s.len, NULL);
	if (!es || !br || !bs)
		goto out;
	ECDSA_SIG_set0(es, br, bs);
	br = bs = NULL;
	rc = ECDSA_do_verify(digest, (int)dlen, es, key) == 1 ? 1 : 0;
out:
	ERR_clear_error();
	BN_free(br);
	BN_free(bs);
	ECDSA_SIG_free(es);
	return rc;
}
