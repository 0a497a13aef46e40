/* CSR checks. The CSR is walked as DER bytes (der.h) rather than decoded with d2i_X509_REQ:
 * OpenSSL 3.0 turns every SubjectPublicKeyInfo it decodes into a provider key object, which
 * costs more than verifying the signature, and its generic decoder is lenient where the
 * station must be strict. The self-signature is checked with the low-level EC API (ecdsa.h).
 * Every rejection returns its own ST_E_CSR_* code and a message that names the field, the
 * value found and the value expected. */
#include "policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include "b64.h"
#include "der.h"
#include "digest.h"
#include "ecdsa.h"
#include "err.h"

void st_policy_default(struct st_policy *p)
{
	memset(p, 0, sizeof(*p));
	p->factory[0] = 0;
	p->production = 0;
	p->key_algs = ST_KEY_EC_P256;
	p->validity_days = 7300;
	p->serial_mode = ST_SERIAL_RANDOM;
	p->serial_bits = 128;
	p->past_ca = ST_PAST_CA_CLAMP;
	p->reprovision = ST_REPROVISION_REFUSE;
}

/* Encoded OID bodies (the contents of the OBJECT IDENTIFIER, no tag or length). */
static const uint8_t OID_EC_PUBLIC_KEY[] = { 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01 };
static const uint8_t OID_RSA_ENCRYPTION[] = { 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01,
					      0x01 };
static const uint8_t OID_ED25519[] = { 0x2b, 0x65, 0x70 };
static const uint8_t OID_ED448[] = { 0x2b, 0x65, 0x71 };
static const uint8_t OID_P256[] = { 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
static const uint8_t OID_P384[] = { 0x2b, 0x81, 0x04, 0x00, 0x22 };
static const uint8_t OID_P521[] = { 0x2b, 0x81, 0x04, 0x00, 0x23 };
static const uint8_t OID_ECDSA_SHA1[] = { 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01 };
static const uint8_t OID_ECDSA_SHA256[] = { 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02 };
static const uint8_t OID_ECDSA_SHA384[] = { 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03 };
/* 1.2.840.113549.1.1: every PKCS #1 (RSA) signature algorithm lives under this arc. */
static const uint8_t ARC_PKCS1[] = { 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01 };
/* 2.5.4: X.520 attribute types. */
static const uint8_t ARC_X520[] = { 0x55, 0x04 };
static const uint8_t OID_EXTENSION_REQUEST[] = { 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01,
						 0x09, 0x0e };
static const uint8_t OID_CHALLENGE_PASSWORD[] = { 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01,
						  0x09, 0x07 };
static const uint8_t OID_BASIC_CONSTRAINTS[] = { 0x55, 0x1d, 0x13 };
static const uint8_t OID_KEY_USAGE[] = { 0x55, 0x1d, 0x0f };

#define OID_EQ(t, oid) st_der_oid_eq((t), (oid), sizeof(oid))

static const struct {
	enum st_key_alg alg;
	enum st_ec_curve curve;
	const uint8_t *oid;
	size_t oidlen;
} ec_curves[] = {
	{ ST_KEY_EC_P256, ST_EC_P256, OID_P256, sizeof(OID_P256) },
	{ ST_KEY_EC_P384, ST_EC_P384, OID_P384, sizeof(OID_P384) },
	{ ST_KEY_EC_P521, ST_EC_P521, OID_P521, sizeof(OID_P521) },
};

/* The subject attributes a device certificate may carry, with RFC 5280's (X.520's for
 * businessCategory) upper bounds in characters. */
enum { A_CN, A_OU, A_BC, A_COUNT };
static const struct {
	const char *name;
	uint8_t oid_last; /* 2.5.4.<this> */
	size_t ub;
} subject_attrs[A_COUNT] = {
	[A_CN] = { "CN", 0x03, 64 },
	[A_OU] = { "OU", 0x0b, 64 },
	[A_BC] = { "businessCategory", 0x0f, 128 },
};

/* Everything one check needs and what it found so far. */
struct chk {
	const struct st_policy *p;
	const char *device_id;
	const char *factory;
	char *err;
	size_t errlen;

	const uint8_t *der;
	size_t der_len;
	struct st_der_tlv info, sigalg, sig;
	struct st_der_tlv version, subject, spki, attrs;
	struct st_der_tlv key_bits; /* subjectPublicKey BIT STRING */
	enum st_key_alg key_alg;
	int curve; /* enum st_ec_curve, or -1 */
	int sig_hash; /* 256 or 384 */
	EC_KEY *key;
};

/* Writes a value for a message: quoted, printable ASCII as is, anything else escaped, long
 * values cut, so that a hostile CSR can never put terminal controls into a log. */
static const char *quote(const uint8_t *v, size_t len, char *buf, size_t blen)
{
	size_t i, o = 0;

	if (blen < 8)
		return "";
	buf[o++] = '"';
	for (i = 0; i < len; i++) {
		if (o + 8 >= blen) {
			memcpy(buf + o, "...", 3);
			o += 3;
			break;
		}
		if (v[i] >= 0x20 && v[i] < 0x7f && v[i] != '"' && v[i] != '\\')
			buf[o++] = (char)v[i];
		else
			o += (size_t)snprintf(buf + o, blen - o, "\\x%02x", v[i]);
	}
	buf[o++] = '"';
	buf[o] = 0;
	return buf;
}

/* The name OpenSSL knows for an OID ("O", "secp256k1"), else its dotted form. */
static const char *oid_name(const struct st_der_tlv *t, char *buf, size_t len)
{
	const unsigned char *p = t->raw;
	ASN1_OBJECT *obj;
	int nid = NID_undef;

	obj = d2i_ASN1_OBJECT(NULL, &p, (long)t->raw_len);
	if (obj)
		nid = OBJ_obj2nid(obj);
	ASN1_OBJECT_free(obj);
	ERR_clear_error();
	if (nid != NID_undef)
		snprintf(buf, len, "%s", OBJ_nid2sn(nid));
	else
		st_der_oid_text(t, buf, len);
	return buf;
}

static void required_keys(unsigned mask, char *buf, size_t len)
{
	static const struct {
		unsigned bit;
		const char *text;
	} names[] = {
		{ ST_KEY_EC_P256, "EC prime256v1" },
		{ ST_KEY_EC_P384, "EC secp384r1" },
		{ ST_KEY_EC_P521, "EC secp521r1" },
		{ ST_KEY_ED25519, "Ed25519" },
		{ ST_KEY_RSA2048, "RSA-2048 or larger" },
		{ ST_KEY_RSA3072, "RSA-3072 or larger" },
	};
	size_t i, used = 0;
	int n;

	buf[0] = 0;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!(mask & names[i].bit))
			continue;
		/* RSA-2048 already covers RSA-3072. */
		if (names[i].bit == ST_KEY_RSA3072 && (mask & ST_KEY_RSA2048))
			continue;
		n = snprintf(buf + used, len - used, "%s%s", used ? " or " : "", names[i].text);
		if (n < 0 || (size_t)n >= len - used)
			return;
		used += (size_t)n;
	}
	if (!used)
		snprintf(buf, len, "no key type at all (the policy allows none)");
}

static int is_ws(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static const uint8_t *find(const uint8_t *s, size_t n, const char *what)
{
	return memmem(s, n, what, strlen(what));
}

/* Decodes the one PEM block of in into der (capacity cap). */
static int decode_pem(struct chk *c, const uint8_t *in, size_t len, uint8_t *der, size_t cap,
		      size_t *der_len)
{
	static const char begin[] = "-----BEGIN ";
	static const char end[] = "-----END ";
	const uint8_t *p = in, *stop = in + len, *label, *eol, *q;
	size_t label_len, n = 0, pad = 0, out = 0;
	uint32_t acc = 0;
	char q1[96];
	int v;

	while (p < stop && is_ws(*p))
		p++;
	if ((size_t)(stop - p) < sizeof(begin) - 1 || memcmp(p, begin, sizeof(begin) - 1) != 0)
		return st_errf(c->err, c->errlen, ST_E_CSR_PEM,
			       "PEM BEGIN line is malformed; expected "
			       "\"-----BEGIN CERTIFICATE REQUEST-----\"");
	p += sizeof(begin) - 1;
	label = p;
	eol = memchr(p, '\n', (size_t)(stop - p));
	if (!eol)
		return st_errf(c->err, c->errlen, ST_E_CSR_PEM,
			       "PEM BEGIN line has no line end; expected "
			       "\"-----BEGIN CERTIFICATE REQUEST-----\" on a line of its own");
	q = eol;
	if (q > label && q[-1] == '\r')
		q--;
	if (q - label < 5 || memcmp(q - 5, "-----", 5) != 0)
		return st_errf(c->err, c->errlen, ST_E_CSR_PEM,
			       "PEM BEGIN line %s does not end in \"-----\"",
			       quote(label - (sizeof(begin) - 1),
				     (size_t)(q - label) + sizeof(begin) - 1, q1, sizeof(q1)));
	label_len = (size_t)(q - 5 - label);
	if (!((label_len == 19 && memcmp(label, "CERTIFICATE REQUEST", 19) == 0) ||
	      (label_len == 23 && memcmp(label, "NEW CERTIFICATE REQUEST", 23) == 0)))
		return st_errf(c->err, c->errlen, ST_E_CSR_PEM_LABEL,
			       "PEM block label is %s; expected \"CERTIFICATE REQUEST\"",
			       quote(label, label_len, q1, sizeof(q1)));
	/* Base64 lines up to the END line; padding only at the very end. */
	p = eol + 1;
	for (;;) {
		if (p >= stop)
			return st_errf(c->err, c->errlen, ST_E_CSR_PEM,
				       "PEM block has no \"-----END CERTIFICATE REQUEST-----\" line");
		if (*p == '-')
			break;
		if (is_ws(*p)) {
			p++;
			continue;
		}
		if (*p == ':')
			return st_errf(c->err, c->errlen, ST_E_CSR_PEM,
				       "PEM block has headers; expected base64 only");
		if (*p == '=') {
			/* Padding: one or two '=' completing the last quantum. */
			if (++pad > 2 || n % 4 < 2)
				return st_errf(c->err, c->errlen, ST_E_CSR_PEM,
					       "PEM base64 padding is wrong at byte %zu",
					       (size_t)(p - in));
			v = 0;
		} else {
			v = drv_b64_value(*p);
			if (v < 0)
				return st_errf(c->err, c->errlen, ST_E_CSR_PEM,
					       "PEM body has the byte 0x%02x at offset %zu; "
					       "expected base64", *p, (size_t)(p - in));
			if (pad)
				return st_errf(c->err, c->errlen, ST_E_CSR_PEM,
					       "PEM base64 continues after padding at byte %zu",
					       (size_t)(p - in));
		}
		acc = (acc << 6) | (uint32_t)v;
		n++;
		if (n % 4 == 0) {
			if (out + 3 > cap)
				return st_errf(c->err, c->errlen, ST_E_CSR_TOO_LARGE,
					       "CSR is larger than %d bytes", ST_CSR_MAX_BYTES);
			der[out++] = (uint8_t)(acc >> 16);
			der[out++] = (uint8_t)(acc >> 8);
			der[out++] = (uint8_t)acc;
			acc = 0;
		}
		p++;
	}
	if (n % 4 != 0)
		return st_errf(c->err, c->errlen, ST_E_CSR_PEM,
			       "PEM base64 body has %zu characters; expected a multiple of 4", n);
	/* The last quantum was completed with '=' counted as zero bits. */
	out -= pad;
	if ((size_t)(stop - p) < sizeof(end) - 1 + label_len + 5 ||
	    memcmp(p, end, sizeof(end) - 1) != 0 ||
	    memcmp(p + sizeof(end) - 1, label, label_len) != 0 ||
	    memcmp(p + sizeof(end) - 1 + label_len, "-----", 5) != 0)
		return st_errf(c->err, c->errlen, ST_E_CSR_PEM,
			       "PEM END line is missing or does not match its BEGIN line");
	p += sizeof(end) - 1 + label_len + 5;
	/* Only whitespace may follow; another block is a distinct mistake worth naming. */
	if (find(p, (size_t)(stop - p), "-----BEGIN"))
		return st_errf(c->err, c->errlen, ST_E_CSR_MULTIPLE,
			       "input holds more than one PEM block; expected exactly one CSR");
	for (q = p; q < stop; q++) {
		if (!is_ws(*q))
			return st_errf(c->err, c->errlen, ST_E_CSR_TRAILING,
				       "%zu bytes of data follow the PEM block (from offset %zu); "
				       "expected nothing but whitespace",
				       (size_t)(stop - q), (size_t)(q - in));
	}
	if (out == 0)
		return st_errf(c->err, c->errlen, ST_E_CSR_PEM, "PEM body is empty");
	*der_len = out;
	return 0;
}

static int der_error(struct chk *c, int status, const char *what)
{
	if (status == ST_DER_TRUNCATED)
		return st_errf(c->err, c->errlen, ST_E_CSR_DER,
			       "%s is truncated (its length runs past the end of the CSR)", what);
	return st_errf(c->err, c->errlen, ST_E_CSR_DER, "%s is missing or not valid DER", what);
}

/* Splits the DER into the parts the other checks look at. */
static int parse_structure(struct chk *c)
{
	struct st_der d, in, info;
	struct st_der_tlv outer;
	size_t i;
	int rc;

	st_der_init(&d, c->der, c->der_len);
	rc = st_der_expect(&d, ST_DER_SEQUENCE, &outer);
	if (rc != ST_DER_OK)
		return der_error(c, rc, "CertificationRequest SEQUENCE");
	for (i = 0; i < d.len; i++) {
		if (!is_ws(d.p[i]))
			return st_errf(c->err, c->errlen, ST_E_CSR_TRAILING,
				       "%zu bytes follow the CSR's DER (%zu bytes); expected nothing",
				       d.len, outer.raw_len);
	}
	c->der_len = outer.raw_len;
	st_der_enter(&outer, &in);
	rc = st_der_expect(&in, ST_DER_SEQUENCE, &c->info);
	if (rc != ST_DER_OK)
		return der_error(c, rc, "certificationRequestInfo");
	rc = st_der_expect(&in, ST_DER_SEQUENCE, &c->sigalg);
	if (rc != ST_DER_OK)
		return der_error(c, rc, "signatureAlgorithm");
	rc = st_der_expect(&in, ST_DER_BIT_STRING, &c->sig);
	if (rc != ST_DER_OK)
		return der_error(c, rc, "signature BIT STRING");
	if (in.len)
		return st_errf(c->err, c->errlen, ST_E_CSR_DER,
			       "CertificationRequest has %zu extra bytes after the signature",
			       in.len);
	st_der_enter(&c->info, &info);
	rc = st_der_expect(&info, ST_DER_INTEGER, &c->version);
	if (rc != ST_DER_OK)
		return der_error(c, rc, "version INTEGER");
	rc = st_der_expect(&info, ST_DER_SEQUENCE, &c->subject);
	if (rc != ST_DER_OK)
		return der_error(c, rc, "subject Name");
	rc = st_der_expect(&info, ST_DER_SEQUENCE, &c->spki);
	if (rc != ST_DER_OK)
		return der_error(c, rc, "subjectPublicKeyInfo");
	rc = st_der_expect(&info, ST_DER_CTX0, &c->attrs);
	if (rc != ST_DER_OK)
		return der_error(c, rc, "attributes [0]");
	if (info.len)
		return st_errf(c->err, c->errlen, ST_E_CSR_DER,
			       "certificationRequestInfo has %zu extra bytes after the attributes",
			       info.len);
	return 0;
}

static int check_version(struct chk *c)
{
	long v = 0;
	size_t i;

	if (st_der_int_sign(&c->version) == -2)
		return der_error(c, ST_DER_BAD, "version INTEGER");
	if (c->version.len == 1 && c->version.val[0] == 0)
		return 0;
	if (c->version.len <= 4 && !(c->version.val[0] & 0x80)) {
		for (i = 0; i < c->version.len; i++)
			v = (v << 8) | c->version.val[i];
		return st_errf(c->err, c->errlen, ST_E_CSR_VERSION,
			       "version is %ld; expected 0 (PKCS #10 v1)", v);
	}
	return st_errf(c->err, c->errlen, ST_E_CSR_VERSION,
		       "version is out of range; expected 0 (PKCS #10 v1)");
}

/* Bits in an unsigned big-endian integer's contents (leading zero octet allowed). */
static size_t int_bits(const struct st_der_tlv *t)
{
	const uint8_t *v = t->val;
	size_t n = t->len, bits;
	uint8_t top;

	while (n && *v == 0) {
		v++;
		n--;
	}
	if (!n)
		return 0;
	bits = n * 8;
	for (top = v[0]; !(top & 0x80); top <<= 1)
		bits--;
	return bits;
}

static int check_rsa_key(struct chk *c, const struct st_der_tlv *params, const char *required)
{
	struct st_der d, in;
	struct st_der_tlv seq, n, e;
	unsigned mask = c->p->key_algs;
	size_t bits, min;

	if (!params || params->tag != ST_DER_NULL || params->len)
		return st_errf(c->err, c->errlen, ST_E_CSR_DER,
			       "RSA key algorithm parameters must be NULL");
	st_der_init(&d, c->key_bits.val + 1, c->key_bits.len - 1);
	if (st_der_expect(&d, ST_DER_SEQUENCE, &seq) != ST_DER_OK || d.len)
		return st_errf(c->err, c->errlen, ST_E_CSR_DER, "RSA public key is malformed");
	st_der_enter(&seq, &in);
	if (st_der_expect(&in, ST_DER_INTEGER, &n) != ST_DER_OK ||
	    st_der_expect(&in, ST_DER_INTEGER, &e) != ST_DER_OK || in.len ||
	    st_der_int_sign(&n) != 1 || st_der_int_sign(&e) != 1)
		return st_errf(c->err, c->errlen, ST_E_CSR_DER, "RSA public key is malformed");
	bits = int_bits(&n);
	if (!(mask & (ST_KEY_RSA2048 | ST_KEY_RSA3072)))
		return st_errf(c->err, c->errlen, ST_E_CSR_KEY_TYPE,
			       "key is RSA-%zu, policy requires %s", bits, required);
	min = (mask & ST_KEY_RSA2048) ? 2048 : 3072;
	if (bits < min)
		return st_errf(c->err, c->errlen, ST_E_CSR_KEY_SIZE,
			       "key is RSA-%zu, policy requires RSA of at least %zu bits", bits,
			       min);
	c->key_alg = bits >= 3072 ? ST_KEY_RSA3072 : ST_KEY_RSA2048;
	return 0;
}

static int check_ec_key(struct chk *c, const struct st_der_tlv *params, const char *required)
{
	const uint8_t *pt = c->key_bits.val + 1;
	size_t len = c->key_bits.len - 1, i, flen;
	char name[64];

	if (!params || params->tag != ST_DER_OID)
		return st_errf(c->err, c->errlen, ST_E_CSR_KEY_CURVE_UNSUPPORTED,
			       "key has explicit or implicit EC parameters; policy requires a "
			       "named curve: %s", required);
	for (i = 0; i < sizeof(ec_curves) / sizeof(ec_curves[0]); i++) {
		if (st_der_oid_eq(params, ec_curves[i].oid, ec_curves[i].oidlen))
			break;
	}
	if (i == sizeof(ec_curves) / sizeof(ec_curves[0]))
		return st_errf(c->err, c->errlen, ST_E_CSR_KEY_CURVE_UNSUPPORTED,
			       "key is EC %s, policy requires %s",
			       oid_name(params, name, sizeof(name)), required);
	if (!(c->p->key_algs & ec_curves[i].alg))
		return st_errf(c->err, c->errlen, ST_E_CSR_KEY_CURVE,
			       "key is EC %s, policy requires %s",
			       st_ec_curve_name(ec_curves[i].curve), required);
	c->key_alg = ec_curves[i].alg;
	c->curve = (int)ec_curves[i].curve;
	flen = st_ec_field_len(ec_curves[i].curve);
	if (len == 0 || pt[0] != 0x04)
		return st_errf(c->err, c->errlen, ST_E_CSR_KEY_POINT,
			       "EC %s public key is not an uncompressed point (first octet 0x%02x); "
			       "expected 0x04 || X || Y",
			       st_ec_curve_name(ec_curves[i].curve), len ? pt[0] : 0);
	if (len != 1 + 2 * flen)
		return st_errf(c->err, c->errlen, ST_E_CSR_KEY_POINT,
			       "EC %s public key point is %zu bytes; expected %zu",
			       st_ec_curve_name(ec_curves[i].curve), len, 1 + 2 * flen);
	c->key = st_ec_key_from_point(ec_curves[i].curve, pt, len);
	if (!c->key)
		return st_errf(c->err, c->errlen, ST_E_CSR_KEY_POINT,
			       "EC %s public key point is not on the curve",
			       st_ec_curve_name(ec_curves[i].curve));
	return 0;
}

static int check_key(struct chk *c)
{
	struct st_der d, in;
	struct st_der_tlv alg, oid, params;
	const struct st_der_tlv *pp = NULL;
	char required[160], name[64];
	int rc;

	required_keys(c->p->key_algs, required, sizeof(required));
	st_der_enter(&c->spki, &d);
	if (st_der_expect(&d, ST_DER_SEQUENCE, &alg) != ST_DER_OK ||
	    st_der_expect(&d, ST_DER_BIT_STRING, &c->key_bits) != ST_DER_OK || d.len)
		return st_errf(c->err, c->errlen, ST_E_CSR_DER,
			       "subjectPublicKeyInfo is malformed");
	st_der_enter(&alg, &in);
	if (st_der_expect(&in, ST_DER_OID, &oid) != ST_DER_OK)
		return st_errf(c->err, c->errlen, ST_E_CSR_DER,
			       "subjectPublicKeyInfo algorithm is malformed");
	rc = st_der_next(&in, &params);
	if (rc == ST_DER_OK)
		pp = &params;
	else if (rc != ST_DER_END)
		return st_errf(c->err, c->errlen, ST_E_CSR_DER,
			       "subjectPublicKeyInfo algorithm parameters are malformed");
	if (in.len)
		return st_errf(c->err, c->errlen, ST_E_CSR_DER,
			       "subjectPublicKeyInfo algorithm has extra fields");
	if (c->key_bits.len < 1 || c->key_bits.val[0] != 0)
		return st_errf(c->err, c->errlen, ST_E_CSR_DER,
			       "subjectPublicKey BIT STRING is empty or has unused bits");
	if (OID_EQ(&oid, OID_EC_PUBLIC_KEY))
		return check_ec_key(c, pp, required);
	if (OID_EQ(&oid, OID_RSA_ENCRYPTION))
		return check_rsa_key(c, pp, required);
	if (OID_EQ(&oid, OID_ED25519)) {
		if (!(c->p->key_algs & ST_KEY_ED25519))
			return st_errf(c->err, c->errlen, ST_E_CSR_KEY_TYPE,
				       "key is Ed25519, policy requires %s", required);
		if (pp || c->key_bits.len != 33)
			return st_errf(c->err, c->errlen, ST_E_CSR_KEY_POINT,
				       "Ed25519 public key is malformed (%zu bytes; expected 32)",
				       c->key_bits.len - 1);
		c->key_alg = ST_KEY_ED25519;
		return 0;
	}
	return st_errf(c->err, c->errlen, ST_E_CSR_KEY_TYPE, "key is %s, policy requires %s",
		       oid_name(&oid, name, sizeof(name)), required);
}

static int check_sigalg(struct chk *c)
{
	static const char expected[] = "expected ecdsa-with-SHA256 or ecdsa-with-SHA384";
	struct st_der d;
	struct st_der_tlv oid, extra;
	char name[64];

	st_der_enter(&c->sigalg, &d);
	if (st_der_expect(&d, ST_DER_OID, &oid) != ST_DER_OK)
		return st_errf(c->err, c->errlen, ST_E_CSR_DER,
			       "signatureAlgorithm is malformed");
	oid_name(&oid, name, sizeof(name));
	if (OID_EQ(&oid, OID_ECDSA_SHA256) || OID_EQ(&oid, OID_ECDSA_SHA384)) {
		/* RFC 5758: the parameters field MUST be absent for ECDSA. */
		if (st_der_next(&d, &extra) != ST_DER_END)
			return st_errf(c->err, c->errlen, ST_E_CSR_SIGALG_PARAMS,
				       "signatureAlgorithm %s has parameters; RFC 5758 requires "
				       "them absent", name);
		c->sig_hash = OID_EQ(&oid, OID_ECDSA_SHA256) ? 256 : 384;
		if (c->curve < 0)
			return st_errf(c->err, c->errlen, ST_E_CSR_SIGNATURE,
				       "signatureAlgorithm is %s but the key is not an EC key", name);
		return 0;
	}
	if (OID_EQ(&oid, OID_ECDSA_SHA1))
		return st_errf(c->err, c->errlen, ST_E_CSR_SIGALG_SHA1,
			       "signatureAlgorithm is %s; SHA-1 is not accepted, %s", name,
			       expected);
	if (oid.len == sizeof(ARC_PKCS1) + 1 && memcmp(oid.val, ARC_PKCS1, sizeof(ARC_PKCS1)) == 0)
		return st_errf(c->err, c->errlen, ST_E_CSR_SIGALG_RSA,
			       "signatureAlgorithm is %s; RSA signatures are not accepted, %s",
			       name, expected);
	if (OID_EQ(&oid, OID_ED25519) || OID_EQ(&oid, OID_ED448))
		return st_errf(c->err, c->errlen, ST_E_CSR_SIGALG_EDDSA,
			       "signatureAlgorithm is %s; EdDSA signatures are not accepted, %s",
			       name, expected);
	return st_errf(c->err, c->errlen, ST_E_CSR_SIGALG, "signatureAlgorithm is %s; %s", name,
		       expected);
}

static int check_signature(struct chk *c)
{
	uint8_t md[48];
	int rc;

	if (c->sig.len < 1 || c->sig.val[0] != 0)
		return st_errf(c->err, c->errlen, ST_E_CSR_SIGNATURE_DER,
			       "signature BIT STRING is empty or has unused bits");
	st_digest(c->sig_hash == 256 ? ST_SHA256 : ST_SHA384, c->info.raw, c->info.raw_len, md);
	rc = st_ecdsa_verify(c->key, md, (size_t)c->sig_hash / 8, c->sig.val + 1, c->sig.len - 1);
	if (rc < 0)
		return st_errf(c->err, c->errlen, ST_E_CSR_SIGNATURE_DER,
			       "signature is not a DER ECDSA-Sig-Value with positive r and s");
	if (rc == 0)
		return st_errf(c->err, c->errlen, ST_E_CSR_SIGNATURE,
			       "self-signature does not verify with the CSR's own public key "
			       "(no proof of possession)");
	return 0;
}

static int printable_char(uint8_t ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
	       strchr(" '()+,-./:=?", ch) != NULL;
}

/* Strict UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF).
 * Returns the number of characters, or -1 with *bad the offending offset. *ctrl is set to
 * the offset of the first C0/C1 control or DEL, or -1. */
static long utf8_scan(const uint8_t *s, size_t n, size_t *bad, long *ctrl)
{
	size_t i = 0, k, need;
	uint32_t cp, min;
	long chars = 0;

	*ctrl = -1;
	while (i < n) {
		uint8_t b = s[i];

		if (b < 0x80) {
			cp = b;
			need = 0;
			min = 0;
		} else if ((b & 0xe0) == 0xc0) {
			cp = b & 0x1f;
			need = 1;
			min = 0x80;
		} else if ((b & 0xf0) == 0xe0) {
			cp = b & 0x0f;
			need = 2;
			min = 0x800;
		} else if ((b & 0xf8) == 0xf0) {
			cp = b & 0x07;
			need = 3;
			min = 0x10000;
		} else {
			*bad = i;
			return -1;
		}
		if (need && i + need >= n) {
			*bad = i;
			return -1;
		}
		for (k = 1; k <= need; k++) {
			if ((s[i + k] & 0xc0) != 0x80) {
				*bad = i;
				return -1;
			}
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
			*bad = i;
			return -1;
		}
		if (*ctrl < 0 && (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f)))
			*ctrl = (long)i;
		i += need + 1;
		chars++;
	}
	return chars;
}

static const char *string_type_name(uint8_t tag)
{
	switch (tag) {
	case ST_DER_T61STRING:
		return "TeletexString";
	case ST_DER_IA5STRING:
		return "IA5String";
	case ST_DER_VISIBLESTRING:
		return "VisibleString";
	case ST_DER_UNIVERSALSTRING:
		return "UniversalString";
	case ST_DER_BMPSTRING:
		return "BMPString";
	default:
		return NULL;
	}
}

static int check_string(struct chk *c, int attr, const struct st_der_tlv *v)
{
	const char *name = subject_attrs[attr].name, *tname;
	size_t bad = 0, i;
	long chars, ctrl;
	char q[96];

	if (v->tag != ST_DER_UTF8STRING && v->tag != ST_DER_PRINTABLESTRING) {
		tname = string_type_name(v->tag);
		if (tname)
			return st_errf(c->err, c->errlen, ST_E_CSR_STRING_TYPE,
				       "subject %s is a %s; expected UTF8String or PrintableString",
				       name, tname);
		return st_errf(c->err, c->errlen, ST_E_CSR_STRING_TYPE,
			       "subject %s has ASN.1 tag 0x%02x; expected UTF8String or "
			       "PrintableString", name, v->tag);
	}
	if (v->tag == ST_DER_PRINTABLESTRING) {
		for (i = 0; i < v->len; i++) {
			if (!printable_char(v->val[i]))
				return st_errf(c->err, c->errlen, ST_E_CSR_PRINTABLE,
					       "subject %s PrintableString %s has the byte 0x%02x "
					       "at offset %zu, outside the PrintableString set",
					       name, quote(v->val, v->len, q, sizeof(q)),
					       v->val[i], i);
		}
		chars = (long)v->len;
	} else {
		chars = utf8_scan(v->val, v->len, &bad, &ctrl);
		if (chars < 0)
			return st_errf(c->err, c->errlen, ST_E_CSR_UTF8,
				       "subject %s %s is not valid UTF-8 (at byte %zu)", name,
				       quote(v->val, v->len, q, sizeof(q)), bad);
		if (ctrl >= 0)
			return st_errf(c->err, c->errlen, ST_E_CSR_CONTROL_CHAR,
				       "subject %s %s has a control character at byte %ld", name,
				       quote(v->val, v->len, q, sizeof(q)), ctrl);
	}
	if ((size_t)chars > subject_attrs[attr].ub)
		return st_errf(c->err, c->errlen, ST_E_CSR_UPPER_BOUND,
			       "subject %s is %ld characters; RFC 5280 allows at most %zu", name,
			       chars, subject_attrs[attr].ub);
	return 0;
}

static int value_is(const struct st_der_tlv *v, const char *s)
{
	size_t n = strlen(s);

	return v->len == n && memcmp(v->val, s, n) == 0;
}

int st_uuid_text(const char *s, int any_case)
{
	static const char shape[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";

	for (size_t i = 0; i < sizeof(shape) - 1; i++) {
		char c = s[i];

		if (shape[i] == '-') {
			if (c != '-')
				return 0;
		} else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
			     (any_case && c >= 'A' && c <= 'F'))) {
			return 0;
		}
	}
	return s[sizeof(shape) - 1] == '\0';
}

int st_device_id_normalize(char *id)
{
	if (!id || !st_uuid_text(id, 1))
		return 0;
	for (char *c = id; *c; c++) {
		if (*c >= 'A' && *c <= 'F')
			*c = (char)(*c - 'A' + 'a');
	}
	return 1;
}

/* The CN names the device id: exactly, or for a UUID device id (lower case, normalised) the
 * same UUID in any case, as the device tool writes what it was given. */
static int cn_is(const struct st_der_tlv *cn, const char *device_id)
{
	char v[37];

	if (value_is(cn, device_id))
		return 1;
	if (cn->len != sizeof(v) - 1 || !st_uuid_text(device_id, 0))
		return 0;
	memcpy(v, cn->val, cn->len);
	v[cn->len] = '\0';
	return st_device_id_normalize(v) && strcmp(v, device_id) == 0;
}

static int check_subject(struct chk *c)
{
	const struct st_der_tlv *cn, *ou, *bc;
	struct st_der_tlv seen[A_COUNT], rdn, atv, atv2, oid, oid2, value;
	struct st_der d, set, in;
	int have[A_COUNT] = { 0 };
	char q1[96], q2[96], name[64], name2[64];
	unsigned nrdn = 0;
	int a, rc;

	st_der_enter(&c->subject, &d);
	while ((rc = st_der_next(&d, &rdn)) == ST_DER_OK) {
		nrdn++;
		if (rdn.tag != ST_DER_SET)
			return st_errf(c->err, c->errlen, ST_E_CSR_DER,
				       "subject RDN %u is not a SET", nrdn);
		st_der_enter(&rdn, &set);
		if (st_der_expect(&set, ST_DER_SEQUENCE, &atv) != ST_DER_OK)
			return st_errf(c->err, c->errlen, ST_E_CSR_DER,
				       "subject RDN %u is empty or malformed", nrdn);
		st_der_enter(&atv, &in);
		if (st_der_expect(&in, ST_DER_OID, &oid) != ST_DER_OK ||
		    st_der_next(&in, &value) != ST_DER_OK || in.len)
			return st_errf(c->err, c->errlen, ST_E_CSR_DER,
				       "subject RDN %u attribute is malformed", nrdn);
		if (set.len) {
			struct st_der in2;

			name2[0] = 0;
			if (st_der_expect(&set, ST_DER_SEQUENCE, &atv2) == ST_DER_OK) {
				st_der_enter(&atv2, &in2);
				if (st_der_expect(&in2, ST_DER_OID, &oid2) == ST_DER_OK)
					oid_name(&oid2, name2, sizeof(name2));
			}
			return st_errf(c->err, c->errlen, ST_E_CSR_SUBJECT_MULTI_RDN,
				       "subject RDN %u holds %s and %s together (multi-valued RDN); "
				       "expected one attribute per RDN", nrdn,
				       oid_name(&oid, name, sizeof(name)),
				       name2[0] ? name2 : "more");
		}
		for (a = 0; a < A_COUNT; a++) {
			if (oid.len == 3 && memcmp(oid.val, ARC_X520, 2) == 0 &&
			    oid.val[2] == subject_attrs[a].oid_last)
				break;
		}
		if (a == A_COUNT)
			return st_errf(c->err, c->errlen, ST_E_CSR_SUBJECT_EXTRA,
				       "subject has %s=%s; expected only CN, OU%s",
				       oid_name(&oid, name, sizeof(name)),
				       quote(value.val, value.len, q1, sizeof(q1)),
				       c->p->production ? " and businessCategory" : "");
		if (have[a])
			return st_errf(c->err, c->errlen, ST_E_CSR_SUBJECT_DUP,
				       "subject has %s twice (%s and %s); expected it once",
				       subject_attrs[a].name,
				       quote(seen[a].val, seen[a].len, q1, sizeof(q1)),
				       quote(value.val, value.len, q2, sizeof(q2)));
		rc = check_string(c, a, &value);
		if (rc < 0)
			return rc;
		have[a] = 1;
		seen[a] = value;
	}
	if (rc != ST_DER_END)
		return der_error(c, rc, "subject RDN");

	cn = have[A_CN] ? &seen[A_CN] : NULL;
	ou = have[A_OU] ? &seen[A_OU] : NULL;
	bc = have[A_BC] ? &seen[A_BC] : NULL;
	if (!cn)
		return st_errf(c->err, c->errlen, ST_E_CSR_CN_MISSING,
			       "subject has no CN; expected CN=%s",
			       quote((const uint8_t *)c->device_id, strlen(c->device_id), q1,
				     sizeof(q1)));
	if (!cn_is(cn, c->device_id))
		return st_errf(c->err, c->errlen, ST_E_CSR_CN_MISMATCH,
			       "subject CN is %s; expected the device id %s",
			       quote(cn->val, cn->len, q1, sizeof(q1)),
			       quote((const uint8_t *)c->device_id, strlen(c->device_id), q2,
				     sizeof(q2)));
	if (!ou)
		return st_errf(c->err, c->errlen, ST_E_CSR_OU_MISSING,
			       "subject has no OU; expected OU=%s (the factory)",
			       quote((const uint8_t *)c->factory, strlen(c->factory), q1,
				     sizeof(q1)));
	if (!value_is(ou, c->factory))
		return st_errf(c->err, c->errlen, ST_E_CSR_OU_MISMATCH,
			       "subject OU is %s; expected the factory %s",
			       quote(ou->val, ou->len, q1, sizeof(q1)),
			       quote((const uint8_t *)c->factory, strlen(c->factory), q2,
				     sizeof(q2)));
	if (c->p->production && !bc)
		return st_errf(c->err, c->errlen, ST_E_CSR_BC_MISSING,
			       "subject has no businessCategory; the policy is production, "
			       "expected businessCategory=\"production\"");
	if (c->p->production && !value_is(bc, "production"))
		return st_errf(c->err, c->errlen, ST_E_CSR_BC_MISMATCH,
			       "subject businessCategory is %s; expected \"production\"",
			       quote(bc->val, bc->len, q1, sizeof(q1)));
	if (!c->p->production && bc)
		return st_errf(c->err, c->errlen, ST_E_CSR_BC_UNEXPECTED,
			       "subject has businessCategory=%s; the policy is not production, "
			       "expected no businessCategory",
			       quote(bc->val, bc->len, q1, sizeof(q1)));
	return 0;
}

/* Looks into one requested extension: only CA:TRUE and keyCertSign/cRLSign matter, since
 * the station never copies requested extensions into the certificate. */
static int check_extension(struct chk *c, const struct st_der_tlv *oid,
			   const struct st_der_tlv *value)
{
	struct st_der d, in;
	struct st_der_tlv inner, f;
	char name[64];
	uint8_t bits;
	int rc;

	oid_name(oid, name, sizeof(name));
	st_der_init(&d, value->val, value->len);
	if (OID_EQ(oid, OID_BASIC_CONSTRAINTS)) {
		if (st_der_expect(&d, ST_DER_SEQUENCE, &inner) != ST_DER_OK || d.len)
			goto malformed;
		st_der_enter(&inner, &in);
		rc = st_der_next(&in, &f);
		if (rc == ST_DER_END || (rc == ST_DER_OK && f.tag == ST_DER_INTEGER))
			return 0;
		if (rc != ST_DER_OK || f.tag != ST_DER_BOOLEAN || f.len != 1)
			goto malformed;
		/* DER never encodes the DEFAULT FALSE; anything else non-zero is TRUE. */
		if (f.val[0] != 0)
			return st_errf(c->err, c->errlen, ST_E_CSR_REQ_CA,
				       "extension request asks for basicConstraints CA:TRUE; a "
				       "device certificate is never a CA");
		goto malformed;
	}
	if (OID_EQ(oid, OID_KEY_USAGE)) {
		if (st_der_expect(&d, ST_DER_BIT_STRING, &f) != ST_DER_OK || d.len || f.len < 1 ||
		    f.val[0] > 7)
			goto malformed;
		bits = f.len >= 2 ? f.val[1] : 0;
		/* keyCertSign is bit 5 and cRLSign bit 6, counted from the first octet's MSB. */
		if (bits & 0x06)
			return st_errf(c->err, c->errlen, ST_E_CSR_REQ_KEYCERTSIGN,
				       "extension request asks for keyUsage %s%s%s; a device "
				       "certificate may only have digitalSignature",
				       (bits & 0x04) ? "keyCertSign" : "",
				       (bits & 0x06) == 0x06 ? " and " : "",
				       (bits & 0x02) ? "cRLSign" : "");
	}
	return 0;
malformed:
	return st_errf(c->err, c->errlen, ST_E_CSR_EXTENSION,
		       "requested extension %s is malformed", name);
}

static int check_extensions(struct chk *c, const struct st_der_tlv *values)
{
	struct st_der set, d, in;
	struct st_der_tlv exts, ext, oid, f, value;
	struct st_der_tlv seen[32];
	size_t nseen = 0, i;
	char name[64];
	int rc;

	st_der_enter(values, &set);
	if (st_der_expect(&set, ST_DER_SEQUENCE, &exts) != ST_DER_OK || set.len)
		return st_errf(c->err, c->errlen, ST_E_CSR_EXTENSION,
			       "extensionRequest must hold exactly one Extensions SEQUENCE");
	st_der_enter(&exts, &d);
	while ((rc = st_der_next(&d, &ext)) == ST_DER_OK) {
		if (ext.tag != ST_DER_SEQUENCE)
			return st_errf(c->err, c->errlen, ST_E_CSR_EXTENSION,
				       "extensionRequest holds a non-SEQUENCE element");
		st_der_enter(&ext, &in);
		if (st_der_expect(&in, ST_DER_OID, &oid) != ST_DER_OK ||
		    st_der_next(&in, &f) != ST_DER_OK)
			return st_errf(c->err, c->errlen, ST_E_CSR_EXTENSION,
				       "requested extension %zu is malformed", nseen + 1);
		oid_name(&oid, name, sizeof(name));
		if (f.tag == ST_DER_BOOLEAN) {
			/* DER omits a FALSE critical flag; an explicit FALSE is BER. */
			if (f.len != 1 || f.val[0] != 0xff)
				return st_errf(c->err, c->errlen, ST_E_CSR_EXTENSION,
					       "requested extension %s has a critical flag that "
					       "is not DER TRUE", name);
			if (st_der_next(&in, &f) != ST_DER_OK)
				return st_errf(c->err, c->errlen, ST_E_CSR_EXTENSION,
					       "requested extension %s has no value", name);
		}
		value = f;
		if (value.tag != ST_DER_OCTET_STRING || in.len)
			return st_errf(c->err, c->errlen, ST_E_CSR_EXTENSION,
				       "requested extension %s is malformed", name);
		for (i = 0; i < nseen; i++) {
			if (st_der_oid_eq(&seen[i], oid.val, oid.len))
				return st_errf(c->err, c->errlen, ST_E_CSR_EXTENSION,
					       "extension %s is requested twice", name);
		}
		if (nseen == sizeof(seen) / sizeof(seen[0]))
			return st_errf(c->err, c->errlen, ST_E_CSR_EXTENSION,
				       "more than %zu extensions requested", nseen);
		seen[nseen++] = oid;
		rc = check_extension(c, &oid, &value);
		if (rc < 0)
			return rc;
	}
	if (rc != ST_DER_END)
		return st_errf(c->err, c->errlen, ST_E_CSR_EXTENSION,
			       "extensionRequest is malformed");
	return 0;
}

static int check_attributes(struct chk *c)
{
	struct st_der d, in;
	struct st_der_tlv attr, oid, values;
	int have_ext = 0, rc;
	char name[64];

	st_der_enter(&c->attrs, &d);
	while ((rc = st_der_next(&d, &attr)) == ST_DER_OK) {
		if (attr.tag != ST_DER_SEQUENCE)
			return st_errf(c->err, c->errlen, ST_E_CSR_DER,
				       "attributes hold a non-SEQUENCE element");
		st_der_enter(&attr, &in);
		if (st_der_expect(&in, ST_DER_OID, &oid) != ST_DER_OK ||
		    st_der_expect(&in, ST_DER_SET, &values) != ST_DER_OK || in.len)
			return st_errf(c->err, c->errlen, ST_E_CSR_DER, "attribute is malformed");
		if (OID_EQ(&oid, OID_CHALLENGE_PASSWORD))
			return st_errf(c->err, c->errlen, ST_E_CSR_CHALLENGE_PASSWORD,
				       "attribute challengePassword is present; the station takes "
				       "no passwords in CSRs, expected only extensionRequest");
		if (!OID_EQ(&oid, OID_EXTENSION_REQUEST))
			return st_errf(c->err, c->errlen, ST_E_CSR_ATTRIBUTE,
				       "attribute %s is present; expected only extensionRequest",
				       oid_name(&oid, name, sizeof(name)));
		if (have_ext)
			return st_errf(c->err, c->errlen, ST_E_CSR_ATTRIBUTE,
				       "attribute extensionRequest is present twice; expected once");
		have_ext = 1;
		rc = check_extensions(c, &values);
		if (rc < 0)
			return rc;
	}
	if (rc != ST_DER_END)
		return der_error(c, rc, "attributes");
	return 0;
}

/* The device id and the factory come from the station, not from the board; still, a bad
 * one must not produce a subject that the CSR checks would reject. */
static int check_expected(const char *what, const char *s, size_t ub, char *err,
			  size_t errlen)
{
	size_t bad;
	long chars, ctrl;

	if (!s || !*s)
		return st_errf(err, errlen, ST_E_INVAL, "%s is empty", what);
	chars = utf8_scan((const uint8_t *)s, strlen(s), &bad, &ctrl);
	if (chars < 0 || ctrl >= 0 || (size_t)chars > ub)
		return st_errf(err, errlen, ST_E_INVAL,
			       "%s is not clean UTF-8 of at most %zu characters", what, ub);
	return 0;
}

int st_csr_check(const struct st_policy *p, const char *ca_ou, const uint8_t *in, size_t len,
		 const char *device_id, struct st_csr **out, char *err, size_t errlen)
{
	uint8_t buf[ST_CSR_MAX_BYTES];
	struct st_csr *csr = NULL;
	struct chk c;
	size_t i;
	int rc;

	*out = NULL;
	memset(&c, 0, sizeof(c));
	c.p = p;
	c.err = err;
	c.errlen = errlen;
	c.curve = -1;
	c.device_id = device_id;
	c.factory = p->factory[0] ? p->factory : ca_ou;
	if (err && errlen)
		err[0] = 0;
	rc = check_expected("device id", device_id, subject_attrs[A_CN].ub, err, errlen);
	if (rc < 0)
		goto out;
	rc = check_expected("factory (OU)", c.factory, subject_attrs[A_OU].ub, err, errlen);
	if (rc < 0)
		goto out;

	if (!in || len == 0) {
		rc = st_errf(err, errlen, ST_E_CSR_EMPTY, "CSR is empty (0 bytes)");
		goto out;
	}
	if (len > ST_CSR_MAX_BYTES) {
		rc = st_errf(err, errlen, ST_E_CSR_TOO_LARGE, "CSR is %zu bytes; the limit is %d",
			     len, ST_CSR_MAX_BYTES);
		goto out;
	}
	for (i = 0; i < len && is_ws(in[i]); i++)
		;
	if (i == len) {
		rc = st_errf(err, errlen, ST_E_CSR_EMPTY, "CSR is empty (%zu bytes of whitespace)",
			     len);
		goto out;
	}
	if (len - i >= 10 && memcmp(in + i, "-----BEGIN", 10) == 0) {
		rc = decode_pem(&c, in, len, buf, sizeof(buf), &c.der_len);
		if (rc < 0)
			goto out;
		c.der = buf;
	} else if (in[0] == ST_DER_SEQUENCE) {
		c.der = in;
		c.der_len = len;
	} else {
		rc = st_errf(err, errlen, ST_E_CSR_FORMAT,
			     "CSR is neither PEM (\"-----BEGIN CERTIFICATE REQUEST-----\") nor DER "
			     "(a SEQUENCE, first byte 0x30); first byte is 0x%02x", in[i]);
		goto out;
	}

	rc = parse_structure(&c);
	if (rc < 0)
		goto out;
	rc = check_version(&c);
	if (rc < 0)
		goto out;
	rc = check_key(&c);
	if (rc < 0)
		goto out;
	rc = check_sigalg(&c);
	if (rc < 0)
		goto out;
	rc = check_signature(&c);
	if (rc < 0)
		goto out;
	rc = check_subject(&c);
	if (rc < 0)
		goto out;
	rc = check_attributes(&c);
	if (rc < 0)
		goto out;

	/* One allocation: the struct with the SubjectPublicKeyInfo right after it. */
	csr = malloc(sizeof(*csr) + c.spki.raw_len);
	if (!csr) {
		rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory");
		goto out;
	}
	csr->spki = (uint8_t *)(csr + 1);
	csr->spki_len = c.spki.raw_len;
	memcpy(csr->spki, c.spki.raw, c.spki.raw_len);
	csr->pubkey = csr->spki + (c.key_bits.val + 1 - c.spki.raw);
	csr->pubkey_len = c.key_bits.len - 1;
	st_digest(ST_SHA256, csr->spki, csr->spki_len, csr->spki_sha256);
	st_digest(ST_SHA256, c.der, c.der_len, csr->csr_sha256);
	csr->key_alg = c.key_alg;
	*out = csr;
	rc = 0;
out:
	st_ec_key_free(c.key);
	return rc;
}

void st_csr_free(struct st_csr *csr)
{
	free(csr);
}

int st_csr_asks_production(const uint8_t *in, size_t len)
{
	uint8_t buf[ST_CSR_MAX_BYTES];
	struct st_der_tlv rdn, atv, oid, value;
	struct st_der d, set, inner;
	struct chk c;
	size_t i;

	memset(&c, 0, sizeof(c));
	if (!in || len == 0 || len > ST_CSR_MAX_BYTES)
		return 0;
	for (i = 0; i < len && is_ws(in[i]); i++)
		;
	if (len - i >= 10 && memcmp(in + i, "-----BEGIN", 10) == 0) {
		if (decode_pem(&c, in, len, buf, sizeof(buf), &c.der_len) < 0)
			return 0;
		c.der = buf;
	} else {
		c.der = in;
		c.der_len = len;
	}
	if (parse_structure(&c) < 0)
		return 0;
	st_der_enter(&c.subject, &d);
	while (st_der_next(&d, &rdn) == ST_DER_OK) {
		st_der_enter(&rdn, &set);
		if (st_der_expect(&set, ST_DER_SEQUENCE, &atv) != ST_DER_OK)
			return 0;
		st_der_enter(&atv, &inner);
		if (st_der_expect(&inner, ST_DER_OID, &oid) != ST_DER_OK ||
		    st_der_next(&inner, &value) != ST_DER_OK)
			return 0;
		if (oid.len == 3 && memcmp(oid.val, ARC_X520, 2) == 0 &&
		    oid.val[2] == subject_attrs[A_BC].oid_last && value_is(&value, "production"))
			return 1;
	}
	return 0;
}
