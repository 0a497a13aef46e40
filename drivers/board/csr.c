/* PKCS#10 (RFC 2986) in DER, written back to front: each element's length is known once its
 * contents are written, so no lengths are guessed and nothing is moved but the request info
 * once. The bytes are those OpenSSL's X509_REQ_sign writes for the same request. */
#include "csr.h"

#include <string.h>

#include "sha256.h"

/* [0] { extensionRequest { KeyUsage critical digitalSignature, ExtendedKeyUsage critical
 * clientAuth } } */
static const uint8_t attrs[] = {
	0xA0, 0x39, 0x30, 0x37, 0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09,
	0x0E, 0x31, 0x2A, 0x30, 0x28, 0x30, 0x0E, 0x06, 0x03, 0x55, 0x1D, 0x0F, 0x01, 0x01,
	0xFF, 0x04, 0x04, 0x03, 0x02, 0x07, 0x80, 0x30, 0x16, 0x06, 0x03, 0x55, 0x1D, 0x25,
	0x01, 0x01, 0xFF, 0x04, 0x0C, 0x30, 0x0A, 0x06, 0x08, 0x2B, 0x06, 0x01, 0x05, 0x05,
	0x07, 0x03, 0x02,
};
/* SubjectPublicKeyInfo up to the point: id-ecPublicKey, prime256v1, BIT STRING. */
static const uint8_t spki[] = {
	0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01, 0x06,
	0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
};
/* ecdsa-with-SHA256, no parameters. */
static const uint8_t sigalg[] = {
	0x30, 0x0A, 0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02,
};

/* Writing backwards: the element under construction ends at buf[end], starts at pos. */
struct der {
	uint8_t *buf;
	size_t pos;
	int err;
};

static void put(struct der *d, const void *p, size_t n)
{
	if (d->err || n > d->pos) {
		d->err = 1;
		return;
	}
	d->pos -= n;
	memcpy(d->buf + d->pos, p, n);
}

static void put_byte(struct der *d, uint8_t b)
{
	put(d, &b, 1);
}

/* Tag and length of what was written since mark (the position it started at). */
static void wrap(struct der *d, uint8_t tag, size_t mark)
{
	size_t n = mark - d->pos;

	if (n >= 256) {
		put_byte(d, (uint8_t)n);
		put_byte(d, (uint8_t)(n >> 8));
		put_byte(d, 0x82);
	} else if (n >= 128) {
		put_byte(d, (uint8_t)n);
		put_byte(d, 0x81);
	} else {
		put_byte(d, (uint8_t)n);
	}
	put_byte(d, tag);
}

/* RelativeDistinguishedName: SET { SEQ { OID 2.5.4.<attr>, UTF8String value } }. */
static void rdn(struct der *d, uint8_t attr, const char *value)
{
	static const uint8_t oid[] = { 0x06, 0x03, 0x55, 0x04 };
	size_t set = d->pos, str;

	str = d->pos;
	put(d, value, strlen(value));
	wrap(d, 0x0C, str);
	put_byte(d, attr);
	put(d, oid, sizeof(oid));
	wrap(d, 0x30, set);
	wrap(d, 0x31, set);
}

/* A positive INTEGER from 32 big-endian bytes, minimal. */
static void integer(struct der *d, const uint8_t v[32])
{
	size_t i = 0, mark = d->pos;

	while (i < 31 && v[i] == 0)
		i++;
	put(d, v + i, 32 - i);
	if (v[i] & 0x80)
		put_byte(d, 0);
	wrap(d, 0x02, mark);
}

static int name_ok(const char *s, int required)
{
	size_t n = strlen(s);

	return n <= 64 && (n > 0 || !required);
}

long brd_csr_build(uint8_t *buf, size_t cap, const char *cn, const char *ou, const char *bc,
		   const uint8_t pub[65], brd_csr_sign_fn sign, void *inst)
{
	struct der d = { buf, cap, 0 };
	uint8_t digest[32], rs[64], sig[80];
	struct der s = { sig, sizeof(sig), 0 };
	size_t mark = cap, cri, cri_len, sig_len, total, hdr;
	int rc;

	if (!name_ok(cn, 1) || !name_ok(ou, 0) || !name_ok(bc, 0) || pub[0] != 0x04)
		return 0;
	/* CertificationRequestInfo ::= SEQ { version 0, subject, subjectPKInfo, [0] attrs } */
	put(&d, attrs, sizeof(attrs));
	put(&d, pub, 65);
	put(&d, spki, sizeof(spki));
	cri = d.pos;
	if (*bc)
		rdn(&d, 0x0F, bc);
	if (*ou)
		rdn(&d, 0x0B, ou);
	rdn(&d, 0x03, cn);
	wrap(&d, 0x30, cri);
	put(&d, "\x02\x01\x00", 3);
	wrap(&d, 0x30, mark);
	if (d.err)
		return 0;
	cri = d.pos;
	cri_len = cap - cri;

	brd_sha256(buf + cri, cri_len, digest);
	rc = sign(inst, digest, rs);
	if (rc < 0)
		return rc;
	/* BIT STRING { 0 unused bits, ECDSA-Sig-Value SEQ { r, s } } */
	integer(&s, rs + 32);
	integer(&s, rs);
	wrap(&s, 0x30, sizeof(sig));
	put_byte(&s, 0);
	wrap(&s, 0x03, sizeof(sig));
	if (s.err)
		return 0;
	sig_len = sizeof(sig) - s.pos;

	/* CertificationRequest ::= SEQ { info, algorithm, signature } */
	total = cri_len + sizeof(sigalg) + sig_len;
	hdr = total >= 256 ? 4 : total >= 128 ? 3 : 2;
	if (hdr + total > cap)
		return 0;
	memmove(buf + hdr, buf + cri, cri_len);
	buf[0] = 0x30;
	if (hdr == 4) {
		buf[1] = 0x82;
		buf[2] = (uint8_t)(total >> 8);
		buf[3] = (uint8_t)total;
	} else if (hdr == 3) {
		buf[1] = 0x81;
		buf[2] = (uint8_t)total;
	} else {
		buf[1] = (uint8_t)total;
	}
	memcpy(buf + hdr + cri_len, sigalg, sizeof(sigalg));
	memcpy(buf + hdr + cri_len + sizeof(sigalg), sig + s.pos, sig_len);
	return (long)(hdr + total);
}
