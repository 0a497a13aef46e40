/* A minimal DER reader and writer for the few structures the issuance path touches on every
 * certificate (CSR, SubjectPublicKeyInfo, TBSCertificate). OpenSSL 3.0's generic ASN.1 code
 * decodes public keys through its provider machinery on every d2i, which costs more than the
 * signature itself; walking the bytes directly keeps the per-certificate cost near the
 * cryptography. Only strict DER is read: low tag numbers, definite minimal lengths.
 * All functions are pure and thread-safe. */
#ifndef ST_DER_H
#define ST_DER_H

#include <stddef.h>
#include <stdint.h>

/* Universal and context tags as they appear in the first octet. */
enum {
	ST_DER_BOOLEAN = 0x01,
	ST_DER_INTEGER = 0x02,
	ST_DER_BIT_STRING = 0x03,
	ST_DER_OCTET_STRING = 0x04,
	ST_DER_NULL = 0x05,
	ST_DER_OID = 0x06,
	ST_DER_UTF8STRING = 0x0c,
	ST_DER_PRINTABLESTRING = 0x13,
	ST_DER_T61STRING = 0x14,
	ST_DER_IA5STRING = 0x16,
	ST_DER_UTCTIME = 0x17,
	ST_DER_GENERALIZEDTIME = 0x18,
	ST_DER_VISIBLESTRING = 0x1a,
	ST_DER_UNIVERSALSTRING = 0x1c,
	ST_DER_BMPSTRING = 0x1e,
	ST_DER_SEQUENCE = 0x30,
	ST_DER_SET = 0x31,
	ST_DER_CTX0 = 0xa0, /* [0] constructed */
	ST_DER_CTX3 = 0xa3, /* [3] constructed */
};

/* A cursor over a run of DER elements: the bytes not yet read. */
struct st_der {
	const uint8_t *p;
	size_t len;
};

/* One element: its tag, its contents, and the whole encoding (header and contents). */
struct st_der_tlv {
	uint8_t tag;
	const uint8_t *val;
	size_t len;
	const uint8_t *raw;
	size_t raw_len;
};

/* Result of st_der_next(). */
enum st_der_status {
	ST_DER_OK = 0,
	ST_DER_END = 1,        /* no bytes left */
	ST_DER_BAD = -1,       /* high tag number, indefinite or non-minimal length */
	ST_DER_TRUNCATED = -2, /* the length runs past the end of the bytes */
};

static inline void st_der_init(struct st_der *d, const uint8_t *p, size_t len)
{
	d->p = p;
	d->len = len;
}

/* Reads the next element and advances past it. Returns an enum st_der_status. */
int st_der_next(struct st_der *d, struct st_der_tlv *t);

/* Reads the next element and requires tag; ST_DER_BAD when the tag differs or nothing is
 * left. */
int st_der_expect(struct st_der *d, uint8_t tag, struct st_der_tlv *t);

/* Opens the contents of a constructed element as a new cursor. */
static inline void st_der_enter(const struct st_der_tlv *t, struct st_der *inner)
{
	st_der_init(inner, t->val, t->len);
}

/* 1 when the contents of an OID element equal the encoded OID body oid/oidlen. */
int st_der_oid_eq(const struct st_der_tlv *t, const uint8_t *oid, size_t oidlen);

/* Checks an INTEGER's contents for minimal encoding and returns its sign: 1 positive,
 * 0 zero, -1 negative, -2 when empty or not minimally encoded. */
int st_der_int_sign(const struct st_der_tlv *t);

/* Size of a header for contents of len bytes. */
size_t st_der_hdr_len(size_t len);

/* Writes a tag and length at out and returns the number of bytes written. */
size_t st_der_put_hdr(uint8_t *out, uint8_t tag, size_t len);

/* Formats an OID's dotted text ("1.2.840.10045.2.1") into buf; "?" when malformed. */
void st_der_oid_text(const struct st_der_tlv *t, char *buf, size_t len);

#endif
