#include "der.h"

#include <stdio.h>
#include <string.h>

int st_der_next(struct st_der *d, struct st_der_tlv *t)
{
	const uint8_t *p = d->p;
	size_t left = d->len;
	size_t len, hdr, n, i;

	if (left == 0)
		return ST_DER_END;
	if (left < 2)
		return ST_DER_TRUNCATED;
	/* Tag numbers >= 31 use the multi-octet form, which nothing here needs. */
	if ((p[0] & 0x1f) == 0x1f)
		return ST_DER_BAD;
	if (p[1] < 0x80) {
		len = p[1];
		hdr = 2;
	} else {
		n = p[1] & 0x7f;
		/* 0x80 is BER's indefinite length; more than 4 octets is absurd here. */
		if (n == 0 || n > 4)
			return ST_DER_BAD;
		if (left < 2 + n)
			return ST_DER_TRUNCATED;
		if (p[2] == 0)
			return ST_DER_BAD;
		len = 0;
		for (i = 0; i < n; i++)
			len = (len << 8) | p[2 + i];
		if (len < 0x80)
			return ST_DER_BAD;
		hdr = 2 + n;
	}
	if (len > left - hdr)
		return ST_DER_TRUNCATED;
	t->tag = p[0];
	t->val = p + hdr;
	t->len = len;
	t->raw = p;
	t->raw_len = hdr + len;
	d->p = p + hdr + len;
	d->len = left - hdr - len;
	return ST_DER_OK;
}

int st_der_expect(struct st_der *d, uint8_t tag, struct st_der_tlv *t)
{
	int rc = st_der_next(d, t);

	if (rc == ST_DER_END)
		return ST_DER_BAD;
	if (rc != ST_DER_OK)
		return rc;
	return t->tag == tag ? ST_DER_OK : ST_DER_BAD;
}

int st_der_oid_eq(const struct st_der_tlv *t, const uint8_t *oid, size_t oidlen)
{
	return t->tag == ST_DER_OID && t->len == oidlen && memcmp(t->val, oid, oidlen) == 0;
}

int st_der_int_sign(const struct st_der_tlv *t)
{
	const uint8_t *v = t->val;
	size_t i;

	if (t->len == 0)
		return -2;
	/* DER: no leading 0x00 before a clear top bit, no 0xff before a set one. */
	if (t->len > 1 && ((v[0] == 0 && !(v[1] & 0x80)) || (v[0] == 0xff && (v[1] & 0x80))))
		return -2;
	if (v[0] & 0x80)
		return -1;
	for (i = 0; i < t->len; i++) {
		if (v[i])
			return 1;
	}
	return 0;
}

size_t st_der_hdr_len(size_t len)
{
	if (len < 0x80)
		return 2;
	if (len < 0x100)
		return 3;
	if (len < 0x10000)
		return 4;
	return 5;
}

size_t st_der_put_hdr(uint8_t *out, uint8_t tag, size_t len)
{
	out[0] = tag;
	if (len < 0x80) {
		out[1] = (uint8_t)len;
		return 2;
	}
	if (len < 0x100) {
		out[1] = 0x81;
		out[2] = (uint8_t)len;
		return 3;
	}
	if (len < 0x10000) {
		out[1] = 0x82;
		out[2] = (uint8_t)(len >> 8);
		out[3] = (uint8_t)len;
		return 4;
	}
	out[1] = 0x83;
	out[2] = (uint8_t)(len >> 16);
	out[3] = (uint8_t)(len >> 8);
	out[4] = (uint8_t)len;
	return 5;
}

void st_der_oid_text(const struct st_der_tlv *t, char *buf, size_t len)
{
	unsigned long long arc = 0;
	size_t used = 0, i;
	int first = 1, n;

	if (len == 0)
		return;
	buf[0] = 0;
	if (t->tag != ST_DER_OID || t->len == 0 || (t->val[t->len - 1] & 0x80))
		goto bad;
	for (i = 0; i < t->len; i++) {
		if (arc == 0 && t->val[i] == 0x80)
			goto bad; /* non-minimal arc */
		if (arc >> 56)
			goto bad;
		arc = (arc << 7) | (t->val[i] & 0x7f);
		if (t->val[i] & 0x80)
			continue;
		if (first) {
			unsigned long long top = arc < 40 ? 0 : arc < 80 ? 1 : 2;

			n = snprintf(buf + used, len - used, "%llu.%llu", top, arc - top * 40);
			first = 0;
		} else {
			n = snprintf(buf + used, len - used, ".%llu", arc);
		}
		if (n < 0 || (size_t)n >= len - used)
			return; /* truncated text is still useful in a message */
		used += (size_t)n;
		arc = 0;
	}
	return;
bad:
	snprintf(buf, len, "?");
}
