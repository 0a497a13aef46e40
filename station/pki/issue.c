#include "issue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "der.h"
#include "digest.h"
#include "ecdsa.h"
#include "err.h"

struct st_issuer {
	const struct st_ca *ca;
	struct drv_signer *signer;
	void *sess;
	EC_KEY *ca_key;      /* this thread's copy of the CA public key */
	int md_bits;         /* 256, 384 or 512 */
	const uint8_t *sigalg; /* AlgorithmIdentifier, DER */
	size_t sigalg_len;
};

static const uint8_t ALG_ECDSA_SHA256[] = { 0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48,
					    0xce, 0x3d, 0x04, 0x03, 0x02 };
static const uint8_t ALG_ECDSA_SHA384[] = { 0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48,
					    0xce, 0x3d, 0x04, 0x03, 0x03 };
static const uint8_t ALG_ECDSA_SHA512[] = { 0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48,
					    0xce, 0x3d, 0x04, 0x03, 0x04 };

/* The fixed extensions: basicConstraints CA:FALSE, keyUsage digitalSignature and
 * extendedKeyUsage clientAuth, all critical. */
static const uint8_t EXT_FIXED[] = {
	0x30, 0x0c, 0x06, 0x03, 0x55, 0x1d, 0x13, 0x01, 0x01, 0xff, 0x04, 0x02, 0x30, 0x00,
	0x30, 0x0e, 0x06, 0x03, 0x55, 0x1d, 0x0f, 0x01, 0x01, 0xff, 0x04, 0x04, 0x03, 0x02,
	0x07, 0x80,
	0x30, 0x16, 0x06, 0x03, 0x55, 0x1d, 0x25, 0x01, 0x01, 0xff, 0x04, 0x0c, 0x30, 0x0a,
	0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02,
};

/* X.520 attribute types 2.5.4.<n> for the subject. */
#define ATTR_CN 0x03
#define ATTR_OU 0x0b
#define ATTR_BUSINESS_CATEGORY 0x0f

#define MAX_SUBJECT 1024
#define MAX_EXTS 256
#define MAX_TBS 4096

int st_issuer_new(const struct st_ca *ca, struct drv_signer *signer, void *sess,
		  struct st_issuer **out, char *err, size_t errlen)
{
	struct st_issuer *is;
	int rc;

	*out = NULL;
	rc = st_ca_match_signer(ca, signer, err, errlen);
	if (rc < 0)
		return rc;
	is = calloc(1, sizeof(*is));
	if (!is)
		return st_errf(err, errlen, ST_E_NOMEM, "out of memory creating an issuer");
	is->ca = ca;
	is->signer = signer;
	is->sess = sess;
	is->ca_key = st_ec_key_from_point(ca->curve, ca->point, ca->point_len);
	if (!is->ca_key) {
		free(is);
		return st_errf(err, errlen, ST_E_ISSUE_CA_KEY,
			       "CA public key is not a valid %s point",
			       st_ec_curve_name(ca->curve));
	}
	/* An HSM mechanism that hashes itself (CKM_ECDSA_SHA256) fixes the hash. */
	if (signer->hashes || ca->curve == ST_EC_P256) {
		is->md_bits = 256;
		is->sigalg = ALG_ECDSA_SHA256;
	} else if (ca->curve == ST_EC_P384) {
		is->md_bits = 384;
		is->sigalg = ALG_ECDSA_SHA384;
	} else {
		is->md_bits = 512;
		is->sigalg = ALG_ECDSA_SHA512;
	}
	is->sigalg_len = sizeof(ALG_ECDSA_SHA256);
	*out = is;
	return 0;
}

void st_issuer_free(struct st_issuer *is)
{
	if (!is)
		return;
	st_ec_key_free(is->ca_key);
	free(is);
}

static void digest(int bits, const uint8_t *data, size_t len, uint8_t *out)
{
	st_digest(bits == 256 ? ST_SHA256 : bits == 384 ? ST_SHA384 : ST_SHA512, data, len, out);
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The 16 bytes of a UUID in its 8-4-4-4-12 text form. */
static int parse_uuid(const char *s, uint8_t out[16])
{
	size_t i, n = 0;
	int hi, lo;

	if (strlen(s) != 36)
		return -1;
	for (i = 0; i < 36;) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i++] != '-')
				return -1;
			continue;
		}
		hi = hex_value(s[i]);
		lo = hex_value(s[i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		out[n++] = (uint8_t)(hi << 4 | lo);
		i += 2;
	}
	return 0;
}

/* The serial's value for p and device_id: octets without leading zeros, never zero. */
static int choose_serial(const struct st_policy *p, const char *device_id, uint8_t v[20],
			 size_t *len, char *err, size_t errlen)
{
	size_t n, i, skip = 0;
	int nonzero;

	if (p->serial_mode == ST_SERIAL_UUID) {
		if (parse_uuid(device_id, v) < 0)
			return st_errf(err, errlen, ST_E_ISSUE_SERIAL,
				       "policy takes the serial from the device id, but \"%.64s\" "
				       "is not a UUID (8-4-4-4-12 hex digits)", device_id);
		n = 16;
	} else {
		if (p->serial_bits < 64 || p->serial_bits > 159)
			return st_errf(err, errlen, ST_E_INVAL,
				       "policy serial_bits is %u; expected 64 to 159",
				       p->serial_bits);
		n = (p->serial_bits + 7) / 8;
		do {
			if (RAND_bytes(v, (int)n) != 1) {
				ERR_clear_error();
				return st_errf(err, errlen, ST_E_ISSUE_SERIAL,
					       "the random generator failed");
			}
			/* serial_bits bits at most, and a clear top bit keeps the
			 * INTEGER positive without a padding octet. */
			v[0] &= (uint8_t)(0xff >> (8 * n - p->serial_bits));
			v[0] &= 0x7f;
			nonzero = 0;
			for (i = 0; i < n; i++)
				nonzero |= v[i];
		} while (!nonzero);
	}
	while (skip < n && v[skip] == 0)
		skip++;
	if (skip == n)
		return st_errf(err, errlen, ST_E_ISSUE_SERIAL,
			       "serial from the device id \"%.64s\" is zero; serials must be "
			       "positive", device_id);
	memmove(v, v + skip, n - skip);
	*len = n - skip;
	return 0;
}

/* Lowercase hex of v[0..n), NUL-terminated: every certificate's serial, twice (a table, not
 * snprintf: 40 calls a certificate were some microseconds of a worker's). */
static void put_hex(const uint8_t *v, size_t n, char *hex)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		hex[2 * i] = digits[v[i] >> 4];
		hex[2 * i + 1] = digits[v[i] & 15];
	}
	hex[2 * n] = 0;
}

/* The value of a serial given in hex: at most 20 octets once DER-encoded, positive. */
static int serial_from_hex(const char *hex, uint8_t v[20], size_t *len, char *err,
			   size_t errlen)
{
	size_t n = hex ? strlen(hex) : 0, i, skip = 0;
	int hi, lo;

	if (n == 0 || n % 2 || n > 40)
		goto bad;
	for (i = 0; i < n; i += 2) {
		hi = hex_value(hex[i]);
		lo = hex_value(hex[i + 1]);
		if (hi < 0 || lo < 0)
			goto bad;
		v[i / 2] = (uint8_t)(hi << 4 | lo);
	}
	n /= 2;
	while (skip < n && v[skip] == 0)
		skip++;
	/* A set top bit needs a padding octet, which must still fit in 20. */
	if (skip == n || (n - skip == 20 && (v[skip] & 0x80)))
		goto bad;
	memmove(v, v + skip, n - skip);
	*len = n - skip;
	return 0;
bad:
	return st_errf(err, errlen, ST_E_INVAL,
		       "serial \"%.48s\" is not the hex of a positive integer of at most 20 "
		       "octets", hex ? hex : "");
}

/* Writes the serial's INTEGER (tag, length, value) to out (at least 23 bytes). */
static size_t put_serial(uint8_t *out, const uint8_t *v, size_t n)
{
	size_t o = 0;

	out[o++] = ST_DER_INTEGER;
	out[o++] = (uint8_t)(n + ((v[0] & 0x80) ? 1 : 0));
	if (v[0] & 0x80)
		out[o++] = 0;
	memcpy(out + o, v, n);
	return o + n;
}

int st_issue_make_serial(const struct st_policy *p, const char *device_id,
			 char hex[ST_ISSUE_SERIAL_HEX], char *err, size_t errlen)
{
	uint8_t v[20];
	size_t n = 0;
	int rc;

	hex[0] = 0;
	rc = choose_serial(p, device_id, v, &n, err, errlen);
	if (rc < 0)
		return rc;
	put_hex(v, n, hex);
	return 0;
}

/* UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280 4.1.2.5). */
static size_t put_time(uint8_t *out, time_t t)
{
	char buf[32];
	struct tm tm;
	int year, n;

	gmtime_r(&t, &tm);
	year = tm.tm_year + 1900;
	if (year >= 1950 && year < 2050)
		n = snprintf(buf, sizeof(buf), "%02d%02d%02d%02d%02d%02dZ", year % 100,
			     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	else
		n = snprintf(buf, sizeof(buf), "%04d%02d%02d%02d%02d%02dZ", year, tm.tm_mon + 1,
			     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	out[0] = (year >= 1950 && year < 2050) ? ST_DER_UTCTIME : ST_DER_GENERALIZEDTIME;
	out[1] = (uint8_t)n;
	memcpy(out + 2, buf, (size_t)n);
	return 2 + (size_t)n;
}

/* SET { SEQUENCE { OID 2.5.4.attr, UTF8String v } } */
static size_t put_rdn(uint8_t *out, uint8_t attr, const char *v)
{
	size_t vl = strlen(v);
	size_t atv = 5 + st_der_hdr_len(vl) + vl;
	size_t o;

	o = st_der_put_hdr(out, ST_DER_SET, st_der_hdr_len(atv) + atv);
	o += st_der_put_hdr(out + o, ST_DER_SEQUENCE, atv);
	out[o++] = ST_DER_OID;
	out[o++] = 3;
	out[o++] = 0x55;
	out[o++] = 0x04;
	out[o++] = attr;
	o += st_der_put_hdr(out + o, ST_DER_UTF8STRING, vl);
	memcpy(out + o, v, vl);
	return o + vl;
}

static size_t put_subject(uint8_t *out, const char *cn, const char *ou, int production)
{
	uint8_t rdns[MAX_SUBJECT];
	size_t n = 0, h;

	n += put_rdn(rdns + n, ATTR_CN, cn);
	n += put_rdn(rdns + n, ATTR_OU, ou);
	if (production)
		n += put_rdn(rdns + n, ATTR_BUSINESS_CATEGORY, "production");
	h = st_der_put_hdr(out, ST_DER_SEQUENCE, n);
	memcpy(out + h, rdns, n);
	return h + n;
}

/* [3] { SEQUENCE { fixed..., SKI, AKI } } */
static size_t put_extensions(uint8_t *out, const uint8_t ski[20], const struct st_ca *ca)
{
	uint8_t body[MAX_EXTS];
	size_t n = 0, h, aki_seq, aki_oct, aki_ext;

	memcpy(body, EXT_FIXED, sizeof(EXT_FIXED));
	n = sizeof(EXT_FIXED);
	/* subjectKeyIdentifier: OCTET STRING { OCTET STRING ski } */
	n += st_der_put_hdr(body + n, ST_DER_SEQUENCE, 5 + 2 + 2 + 20);
	memcpy(body + n, "\x06\x03\x55\x1d\x0e\x04\x16\x04\x14", 9);
	n += 9;
	memcpy(body + n, ski, 20);
	n += 20;
	/* authorityKeyIdentifier: OCTET STRING { SEQUENCE { [0] keyIdentifier } } */
	aki_seq = st_der_hdr_len(ca->ski_len) + ca->ski_len;
	aki_oct = st_der_hdr_len(aki_seq) + aki_seq;
	aki_ext = 5 + st_der_hdr_len(aki_oct) + aki_oct;
	n += st_der_put_hdr(body + n, ST_DER_SEQUENCE, aki_ext);
	memcpy(body + n, "\x06\x03\x55\x1d\x23", 5);
	n += 5;
	n += st_der_put_hdr(body + n, ST_DER_OCTET_STRING, aki_oct);
	n += st_der_put_hdr(body + n, ST_DER_SEQUENCE, aki_seq);
	n += st_der_put_hdr(body + n, 0x80, ca->ski_len);
	memcpy(body + n, ca->ski, ca->ski_len);
	n += ca->ski_len;

	h = st_der_put_hdr(out, ST_DER_CTX3, st_der_hdr_len(n) + n);
	h += st_der_put_hdr(out + h, ST_DER_SEQUENCE, n);
	memcpy(out + h, body, n);
	return h + n;
}

static int validity(const struct st_issuer *is, const struct st_policy *p, time_t now,
		    time_t *nb, time_t *na, char *err, size_t errlen)
{
	const struct st_ca *ca = is->ca;
	char a[32], b[32];
	struct tm tm;

	if (p->validity_days < 1 || p->validity_days > 36500)
		return st_errf(err, errlen, ST_E_INVAL,
			       "policy validity_days is %u; expected 1 to 36500",
			       p->validity_days);
	if (now < ca->not_before || now >= ca->not_after)
		return st_errf(err, errlen, ST_E_ISSUE_CA_EXPIRED,
			       "CA certificate is valid from %lld to %lld; it is %lld now",
			       (long long)ca->not_before, (long long)ca->not_after,
			       (long long)now);
	*nb = now - ST_ISSUE_BACKDATE;
	if (*nb < ca->not_before)
		*nb = ca->not_before;
	*na = now + (time_t)p->validity_days * 86400;
	if (*na > ca->not_after) {
		if (p->past_ca == ST_PAST_CA_REJECT) {
			gmtime_r(na, &tm);
			strftime(a, sizeof(a), "%Y-%m-%d %H:%M:%SZ", &tm);
			gmtime_r(&ca->not_after, &tm);
			strftime(b, sizeof(b), "%Y-%m-%d %H:%M:%SZ", &tm);
			return st_errf(err, errlen, ST_E_ISSUE_PAST_CA,
				       "certificate would end %s (%u days), after the CA's notAfter "
				       "%s; the policy refuses to shorten it", a,
				       p->validity_days, b);
		}
		*na = ca->not_after;
	}
	return 0;
}

/* Re-reads the released bytes and checks their signature with the CA public key: a faulty
 * HSM or a wrong key never gets a certificate out of the station. */
static int verify_output(struct st_issuer *is, const uint8_t *der, size_t len, char *err,
			 size_t errlen)
{
	struct st_der d, in;
	struct st_der_tlv cert, tbs, alg, bits;
	uint8_t md[64];

	st_der_init(&d, der, len);
	if (st_der_expect(&d, ST_DER_SEQUENCE, &cert) != ST_DER_OK || d.len)
		goto bad;
	st_der_enter(&cert, &in);
	if (st_der_expect(&in, ST_DER_SEQUENCE, &tbs) != ST_DER_OK ||
	    st_der_expect(&in, ST_DER_SEQUENCE, &alg) != ST_DER_OK ||
	    st_der_expect(&in, ST_DER_BIT_STRING, &bits) != ST_DER_OK || in.len ||
	    bits.len < 1 || bits.val[0] != 0)
		goto bad;
	digest(is->md_bits, tbs.raw, tbs.raw_len, md);
	if (st_ecdsa_verify(is->ca_key, md, (size_t)is->md_bits / 8, bits.val + 1,
			    bits.len - 1) != 1)
		goto bad;
	return 0;
bad:
	return st_errf(err, errlen, ST_E_SIGNER_BADSIG,
		       "the signer's signature does not verify with the CA certificate's public "
		       "key; the certificate was discarded (HSM fault or wrong key?)");
}

/* Issues with the serial value v (n octets, no leading zeros, positive). */
static int issue_serial(struct st_issuer *is, const struct st_policy *p,
			const struct st_csr *csr, const char *device_id, const uint8_t *v,
			size_t n, time_t now, struct st_cert **out, char *err, size_t errlen)
{
	const struct st_ca *ca = is->ca;
	uint8_t serial[24], times[2 * 17], subject[MAX_SUBJECT], exts[MAX_EXTS], tbs[MAX_TBS];
	uint8_t ski[20], md[64], sig[DRV_SIGNER_MAX_SIG];
	size_t serial_len = 0, times_len, subject_len, exts_len, tbs_body, tbs_len, o;
	size_t siglen = 0, bits_len, cert_body, cert_len;
	struct st_cert *cert = NULL;
	const char *factory;
	char hex[ST_ISSUE_SERIAL_HEX];
	time_t nb = 0, na = 0;
	int rc;

	*out = NULL;
	if (!now)
		now = time(NULL);
	factory = p->factory[0] ? p->factory : ca->ou;
	if (strcmp(factory, ca->ou) != 0)
		return st_errf(err, errlen, ST_E_ISSUE_CA_OU,
			       "policy factory \"%s\" is not the CA's OU \"%s\"; the device gateway "
			       "requires them equal", factory, ca->ou);
	/* The CSR check bounds both; re-check since the subject buffer relies on it. */
	if (strlen(device_id) > 64 * 4 || strlen(factory) > ST_POLICY_MAX_FACTORY)
		return st_errf(err, errlen, ST_E_INVAL, "device id or factory is too long");
	rc = validity(is, p, now, &nb, &na, err, errlen);
	if (rc < 0)
		return rc;
	serial_len = put_serial(serial, v, n);
	put_hex(v, n, hex);

	times_len = put_time(times + 2, nb);
	times_len += put_time(times + 2 + times_len, na);
	times_len += st_der_put_hdr(times, ST_DER_SEQUENCE, times_len);
	subject_len = put_subject(subject, device_id, factory, p->production);
	st_digest(ST_SHA1, csr->pubkey, csr->pubkey_len, ski);
	exts_len = put_extensions(exts, ski, ca);

	tbs_body = 5 + serial_len + is->sigalg_len + ca->subject_der_len + times_len +
		   subject_len + csr->spki_len + exts_len;
	if (st_der_hdr_len(tbs_body) + tbs_body > sizeof(tbs))
		return st_errf(err, errlen, ST_E_INVAL, "certificate would exceed %d bytes",
			       MAX_TBS);
	o = st_der_put_hdr(tbs, ST_DER_SEQUENCE, tbs_body);
	memcpy(tbs + o, "\xa0\x03\x02\x01\x02", 5); /* version v3 */
	o += 5;
	memcpy(tbs + o, serial, serial_len);
	o += serial_len;
	memcpy(tbs + o, is->sigalg, is->sigalg_len);
	o += is->sigalg_len;
	memcpy(tbs + o, ca->subject_der, ca->subject_der_len);
	o += ca->subject_der_len;
	memcpy(tbs + o, times, times_len);
	o += times_len;
	memcpy(tbs + o, subject, subject_len);
	o += subject_len;
	memcpy(tbs + o, csr->spki, csr->spki_len);
	o += csr->spki_len;
	memcpy(tbs + o, exts, exts_len);
	o += exts_len;
	tbs_len = o;

	if (is->signer->hashes) {
		rc = drv_signer_sign(is->signer, is->sess, tbs, tbs_len, sig, &siglen, err,
				     errlen);
	} else {
		digest(is->md_bits, tbs, tbs_len, md);
		rc = drv_signer_sign(is->signer, is->sess, md, (size_t)is->md_bits / 8, sig,
				     &siglen, err, errlen);
	}
	if (rc < 0)
		return rc;
	if (siglen == 0 || siglen > sizeof(sig))
		return st_errf(err, errlen, ST_E_SIGNER_BADSIG,
			       "the signer returned a %zu-byte signature", siglen);

	bits_len = 1 + siglen;
	cert_body = tbs_len + is->sigalg_len + st_der_hdr_len(bits_len) + bits_len;
	cert_len = st_der_hdr_len(cert_body) + cert_body;
	cert = malloc(sizeof(*cert) + cert_len);
	if (!cert)
		return st_errf(err, errlen, ST_E_NOMEM, "out of memory");
	cert->der = (uint8_t *)(cert + 1);
	o = st_der_put_hdr(cert->der, ST_DER_SEQUENCE, cert_body);
	memcpy(cert->der + o, tbs, tbs_len);
	o += tbs_len;
	memcpy(cert->der + o, is->sigalg, is->sigalg_len);
	o += is->sigalg_len;
	o += st_der_put_hdr(cert->der + o, ST_DER_BIT_STRING, bits_len);
	cert->der[o++] = 0; /* no unused bits */
	memcpy(cert->der + o, sig, siglen);
	o += siglen;
	cert->der_len = o;
	memcpy(cert->serial_hex, hex, sizeof(cert->serial_hex));
	cert->not_before = nb;
	cert->not_after = na;

	rc = verify_output(is, cert->der, cert->der_len, err, errlen);
	if (rc < 0) {
		free(cert);
		return rc;
	}
	*out = cert;
	return 0;
}

int st_issue(struct st_issuer *is, const struct st_policy *p, const struct st_csr *csr,
	     const char *device_id, time_t now, struct st_cert **out, char *err,
	     size_t errlen)
{
	uint8_t v[20];
	size_t n = 0;
	int rc;

	*out = NULL;
	rc = choose_serial(p, device_id, v, &n, err, errlen);
	if (rc < 0)
		return rc;
	return issue_serial(is, p, csr, device_id, v, n, now, out, err, errlen);
}

int st_issue_with_serial(struct st_issuer *is, const struct st_policy *p,
			 const struct st_csr *csr, const char *device_id, const char *serial_hex,
			 time_t now, struct st_cert **out, char *err, size_t errlen)
{
	uint8_t v[20];
	size_t n = 0;
	int rc;

	*out = NULL;
	rc = serial_from_hex(serial_hex, v, &n, err, errlen);
	if (rc < 0)
		return rc;
	return issue_serial(is, p, csr, device_id, v, n, now, out, err, errlen);
}

int st_issue_csr(struct st_issuer *is, const struct st_policy *p, const uint8_t *in,
		 size_t len, const char *device_id, time_t now, struct st_cert **out, char *err,
		 size_t errlen)
{
	struct st_csr *csr = NULL;
	int rc;

	*out = NULL;
	rc = st_csr_check(p, is->ca->ou, in, len, device_id, &csr, err, errlen);
	if (rc < 0)
		return rc;
	rc = st_issue(is, p, csr, device_id, now, out, err, errlen);
	st_csr_free(csr);
	return rc;
}

void st_cert_free(struct st_cert *cert)
{
	free(cert);
}

int st_cert_pem(const uint8_t *der, size_t len, char **pem, size_t *pem_len)
{
	static const char head[] = "-----BEGIN CERTIFICATE-----\n";
	static const char tail[] = "-----END CERTIFICATE-----\n";
	size_t lines = (len + 47) / 48, cap, o = 0, i, chunk;
	char *s;

	*pem = NULL;
	cap = sizeof(head) + sizeof(tail) + lines * 66 + 1;
	s = malloc(cap);
	if (!s)
		return ST_E_NOMEM;
	memcpy(s, head, sizeof(head) - 1);
	o = sizeof(head) - 1;
	for (i = 0; i < len; i += 48) {
		chunk = len - i < 48 ? len - i : 48;
		o += (size_t)EVP_EncodeBlock((unsigned char *)s + o, der + i, (int)chunk);
		s[o++] = '\n';
	}
	memcpy(s + o, tail, sizeof(tail));
	o += sizeof(tail) - 1;
	*pem = s;
	if (pem_len)
		*pem_len = o;
	return 0;
}
