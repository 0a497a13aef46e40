/* CMS SignedData with the station's signers (see cms.h for the design). */
#include "cms.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/pem.h> /* before cms.h, which declares PEM_read_bio_CMS only then */
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>

#include "der.h"
#include "err.h"
#include "x509sign.h"

/* OpenSSL's last error as text, for messages ("" when none). */
static const char *ossl_reason(char *buf, size_t len)
{
	unsigned long e = ERR_peek_last_error();

	buf[0] = 0;
	if (e)
		ERR_error_string_n(e, buf, len);
	ERR_clear_error();
	return buf;
}

char *st_cms_subject(X509 *cert)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *data, *out = NULL;
	long n;

	if (!b)
		return NULL;
	if (X509_NAME_print_ex(b, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) >= 0) {
		n = BIO_get_mem_data(b, &data);
		out = n >= 0 ? strndup(data, (size_t)n) : NULL;
	}
	BIO_free(b);
	return out;
}

/* ---- Signing ------------------------------------------------------------------------- */

/* The DER of the signer info's signed attributes as a verifier hashes them: a SET (tag
 * 0x31) of the attributes in the order they have in the encoding. A new buffer. */
static unsigned char *signed_attrs_der(CMS_SignerInfo *si, size_t *len)
{
	unsigned char *body = NULL, *out = NULL, *p;
	size_t n = 0, hdr;
	int count = CMS_signed_get_attr_count(si), i, l;

	for (i = 0; i < count; i++) {
		l = i2d_X509_ATTRIBUTE(CMS_signed_get_attr(si, i), NULL);
		if (l <= 0)
			return NULL;
		n += (size_t)l;
	}
	body = malloc(n ? n : 1);
	if (!body)
		return NULL;
	p = body;
	for (i = 0; i < count; i++)
		i2d_X509_ATTRIBUTE(CMS_signed_get_attr(si, i), &p);
	hdr = n < 0x80 ? 2 : n < 0x100 ? 3 : n < 0x10000 ? 4 : 5;
	out = malloc(hdr + n);
	if (out && n < 0x1000000) {
		out[0] = 0x31;
		if (hdr == 2) {
			out[1] = (unsigned char)n;
		} else {
			out[1] = (unsigned char)(0x80 | (hdr - 2));
			for (size_t k = 0; k < hdr - 2; k++)
				out[2 + k] = (unsigned char)(n >> (8 * (hdr - 3 - k)));
		}
		memcpy(out + hdr, body, n);
		*len = hdr + n;
	} else {
		free(out);
		out = NULL;
	}
	free(body);
	return out;
}

/* Adds contentType, signingTime and messageDigest (of content, with md). */
static int add_attrs(CMS_SignerInfo *si, const ASN1_OBJECT *ctype, const EVP_MD *md,
		     const uint8_t *content, size_t len)
{
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	ASN1_TIME *now = X509_gmtime_adj(NULL, 0);
	int ok;

	ok = now && EVP_Digest(content, len, digest, &dlen, md, NULL) &&
	     CMS_signed_add1_attr_by_NID(si, NID_pkcs9_contentType, V_ASN1_OBJECT, ctype, -1) >
		     0 &&
	     CMS_signed_add1_attr_by_NID(si, NID_pkcs9_signingTime, now->type, now, -1) > 0 &&
	     CMS_signed_add1_attr_by_NID(si, NID_pkcs9_messageDigest, V_ASN1_OCTET_STRING,
					 digest, (int)dlen) > 0;
	ASN1_TIME_free(now);
	return ok ? 0 : -1;
}

/* The unsigned SignedData: signer info, certificates, content and signed attributes. */
static CMS_ContentInfo *assemble(X509 *cert, EVP_PKEY *pub, STACK_OF(X509) *chain,
				 const ASN1_OBJECT *ctype, const EVP_MD *md,
				 const uint8_t *content, size_t len)
{
	const unsigned flags = CMS_PARTIAL | CMS_BINARY | CMS_NOSMIMECAP;
	CMS_ContentInfo *cms = CMS_sign(NULL, NULL, NULL, NULL, flags);
	ASN1_OCTET_STRING **pos;
	CMS_SignerInfo *si;
	BIO *b;

	if (!cms || !CMS_set1_eContentType(cms, ctype))
		goto fail;
	/* With the public key: CMS_add1_signer() only compares it with the certificate's,
	 * and signs nothing under CMS_PARTIAL. */
	si = CMS_add1_signer(cms, cert, pub, md, flags);
	if (!si)
		goto fail;
	for (int i = 0; chain && i < sk_X509_num(chain); i++) {
		if (CMS_add1_cert(cms, sk_X509_value(chain, i)) < 0)
			goto fail;
	}
	pos = CMS_get0_content(cms);
	if (!pos)
		goto fail;
	if (!*pos)
		*pos = ASN1_OCTET_STRING_new();
	if (!*pos || !ASN1_OCTET_STRING_set(*pos, content, (int)len))
		goto fail;
	(*pos)->flags &= ~ASN1_STRING_FLAG_CONT;
	if (add_attrs(si, ctype, md, content, len) < 0)
		goto fail;
	/* Setting up the content BIO settles the SignedData version (3 for a content type
	 * other than id-data); nothing is signed by it. */
	b = CMS_dataInit(cms, NULL);
	if (!b)
		goto fail;
	BIO_free_all(b);
	return cms;
fail:
	CMS_ContentInfo_free(cms);
	return NULL;
}

/* Re-reads der: the signed attributes then stand in the order of the encoding. */
static CMS_ContentInfo *reparse(CMS_ContentInfo *cms)
{
	unsigned char *der = NULL;
	const unsigned char *p;
	CMS_ContentInfo *out = NULL;
	int n = i2d_CMS_ContentInfo(cms, &der);

	if (n > 0) {
		p = der;
		out = d2i_CMS_ContentInfo(NULL, &p, n);
	}
	OPENSSL_free(der);
	return out;
}

int st_cms_sign(struct drv_signer *signer, X509 *cert, STACK_OF(X509) *chain,
		const char *ctype_oid, const uint8_t *content, size_t len, uint8_t **der,
		size_t *der_len, char *err, size_t errlen)
{
	CMS_ContentInfo *cms = NULL, *signed_cms = NULL;
	STACK_OF(CMS_SignerInfo) *sis;
	ASN1_OBJECT *ctype = NULL;
	EVP_PKEY *pub = drv_signer_public_key(signer);
	const EVP_MD *md = NULL;
	unsigned char *attrs = NULL;
	uint8_t sig[DRV_SIGNER_MAX_SIG];
	size_t alen = 0, siglen = 0;
	void *sess = NULL;
	char why[256];
	int rc, nid, n;
	BIO *check = NULL;

	*der = NULL;
	*der_len = 0;
	if (!pub || !cert || EVP_PKEY_eq(X509_get0_pubkey(cert), pub) != 1) {
		rc = st_errf(err, errlen, ST_E_ISSUE_CA_KEY_MISMATCH,
			     "the signing key is not the key of the signer's certificate");
		goto out;
	}
	if (len > INT32_MAX) {
		rc = st_errf(err, errlen, ST_E_INVAL, "%zu bytes are too many to sign", len);
		goto out;
	}
	rc = st_x509_pick_alg(signer, pub, &nid, &md, err, errlen);
	if (rc < 0)
		goto out;
	ctype = OBJ_txt2obj(ctype_oid, 1);
	cms = ctype ? assemble(cert, pub, chain, ctype, md, content, len) : NULL;
	signed_cms = cms ? reparse(cms) : NULL;
	sis = signed_cms ? CMS_get0_SignerInfos(signed_cms) : NULL;
	if (sis && sk_CMS_SignerInfo_num(sis) == 1)
		attrs = signed_attrs_der(sk_CMS_SignerInfo_value(sis, 0), &alen);
	if (!attrs) {
		rc = st_errf(err, errlen, ST_E_CRYPTO, "cannot build the CMS SignedData: %s",
			     ossl_reason(why, sizeof(why)));
		goto out;
	}
	rc = drv_signer_session_open(signer, &sess, err, errlen);
	if (rc < 0)
		goto out;
	rc = st_x509_sign_data(signer, sess, md, attrs, alen, sig, &siglen, err, errlen);
	if (rc < 0)
		goto out;
	if (!ASN1_STRING_set(CMS_SignerInfo_get0_signature(sk_CMS_SignerInfo_value(sis, 0)), sig,
			     (int)siglen)) {
		rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory attaching the signature");
		goto out;
	}
	n = i2d_CMS_ContentInfo(signed_cms, der);
	if (n <= 0) {
		*der = NULL;
		rc = st_errf(err, errlen, ST_E_CRYPTO, "cannot encode the CMS SignedData: %s",
			     ossl_reason(why, sizeof(why)));
		goto out;
	}
	*der_len = (size_t)n;
	/* What leaves here verifies: the signature, the digest, the certificate inside. */
	check = BIO_new(BIO_s_null());
	if (!check || CMS_verify(signed_cms, NULL, NULL, NULL, check,
				 CMS_NO_SIGNER_CERT_VERIFY | CMS_BINARY) != 1) {
		rc = st_errf(err, errlen, ST_E_SIGNER_BADSIG,
			     "the signed document does not verify with the signer's certificate: "
			     "%s",
			     ossl_reason(why, sizeof(why)));
		OPENSSL_free(*der);
		*der = NULL;
		*der_len = 0;
		goto out;
	}
	rc = 0;
out:
	ERR_clear_error();
	BIO_free(check);
	drv_signer_session_close(signer, sess);
	free(attrs);
	CMS_ContentInfo_free(cms);
	CMS_ContentInfo_free(signed_cms);
	ASN1_OBJECT_free(ctype);
	EVP_PKEY_free(pub);
	return rc;
}

/* ---- Verifying ----------------------------------------------------------------------- */

/* The DER of a document given as DER or as PEM (label CMS or PKCS7): *der points into in
 * or to a new buffer in *owned (OPENSSL_free). Returns 0 or -1. */
static int to_der(const uint8_t *in, size_t inlen, const uint8_t **der, size_t *der_len,
		  unsigned char **owned)
{
	char *name = NULL, *header = NULL;
	unsigned char *data = NULL;
	long n = 0;
	BIO *b;
	int ok;

	*owned = NULL;
	if (in[0] == 0x30) {
		*der = in;
		*der_len = inlen;
		return 0;
	}
	b = BIO_new_mem_buf(in, (int)inlen);
	ok = b && PEM_read_bio(b, &name, &header, &data, &n) == 1 && n > 0 &&
	     (strcmp(name, "CMS") == 0 || strcmp(name, "PKCS7") == 0);
	BIO_free(b);
	OPENSSL_free(name);
	OPENSSL_free(header);
	if (!ok) {
		OPENSSL_free(data);
		return -1;
	}
	*owned = data;
	*der = data;
	*der_len = (size_t)n;
	return 0;
}

/* Parses DER; nothing may follow it. */
static CMS_ContentInfo *parse(const uint8_t *der, size_t len)
{
	const unsigned char *p = der;
	CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &p, (long)len);

	if (cms && p != der + len) {
		CMS_ContentInfo_free(cms);
		cms = NULL;
	}
	return cms;
}

/* The bytes of the envelope that no signature covers, held to what st_cms_sign() writes, so
 * that no byte of a document can change without it being refused: DER (each length
 * minimal: der.h), SignedData version 3, one digest algorithm equal to the signer's, no
 * CRLs, one SignerInfo of version 1 without unsigned attributes, nothing after any of them.
 * (OpenSSL reads both versions and the digest set without checking them.) */
static int check_envelope(const uint8_t *in, size_t inlen, char *err, size_t errlen, int code)
{
	static const uint8_t three = 3, one = 1;
	struct st_der top, ci, sd, sis, si, digs;
	struct st_der_tlv t, dig, dig_si;
	int ok;

	st_der_init(&top, in, inlen);
	ok = st_der_expect(&top, ST_DER_SEQUENCE, &t) == ST_DER_OK && top.len == 0;
	if (ok) {
		st_der_enter(&t, &ci);
		ok = st_der_expect(&ci, ST_DER_OID, &t) == ST_DER_OK &&
		     st_der_expect(&ci, ST_DER_CTX0, &t) == ST_DER_OK && ci.len == 0;
	}
	if (ok) {
		st_der_enter(&t, &ci);
		ok = st_der_expect(&ci, ST_DER_SEQUENCE, &t) == ST_DER_OK && ci.len == 0;
	}
	if (ok) {
		st_der_enter(&t, &sd);
		ok = st_der_expect(&sd, ST_DER_INTEGER, &t) == ST_DER_OK && t.len == 1 &&
		     t.val[0] == three && st_der_expect(&sd, ST_DER_SET, &t) == ST_DER_OK;
	}
	if (ok) {
		st_der_enter(&t, &digs);
		ok = st_der_expect(&digs, ST_DER_SEQUENCE, &dig) == ST_DER_OK && digs.len == 0 &&
		     st_der_expect(&sd, ST_DER_SEQUENCE, &t) == ST_DER_OK &&
		     st_der_next(&sd, &t) == ST_DER_OK;
	}
	if (ok && t.tag == ST_DER_CTX0)
		ok = st_der_next(&sd, &t) == ST_DER_OK;
	ok = ok && t.tag == ST_DER_SET && sd.len == 0;
	if (ok) {
		st_der_enter(&t, &sis);
		ok = st_der_expect(&sis, ST_DER_SEQUENCE, &t) == ST_DER_OK && sis.len == 0;
	}
	if (ok) {
		st_der_enter(&t, &si);
		ok = st_der_expect(&si, ST_DER_INTEGER, &t) == ST_DER_OK && t.len == 1 &&
		     t.val[0] == one && st_der_expect(&si, ST_DER_SEQUENCE, &t) == ST_DER_OK &&
		     st_der_expect(&si, ST_DER_SEQUENCE, &dig_si) == ST_DER_OK &&
		     st_der_expect(&si, ST_DER_CTX0, &t) == ST_DER_OK &&
		     st_der_expect(&si, ST_DER_SEQUENCE, &t) == ST_DER_OK &&
		     st_der_expect(&si, ST_DER_OCTET_STRING, &t) == ST_DER_OK && si.len == 0 &&
		     dig.raw_len == dig_si.raw_len &&
		     memcmp(dig.raw, dig_si.raw, dig.raw_len) == 0;
	}
	if (!ok)
		return st_errf(err, errlen, code,
			       "the SignedData envelope is not as the station writes it (DER, "
			       "versions 3 and 1, one digest algorithm, one signer, no CRLs or "
			       "unsigned attributes)");
	return 0;
}

/* The signer info's signature algorithm: ECDSA with its digest algorithm, no parameters
 * (OpenSSL verifies with the digest and the key and reads this field without checking). */
static int check_sig_alg(CMS_SignerInfo *si, char *err, size_t errlen, int code)
{
	X509_ALGOR *dig = NULL, *sig = NULL;
	const ASN1_OBJECT *obj;
	const void *pval;
	int ptype = 0, snid = NID_undef;

	CMS_SignerInfo_get0_algs(si, NULL, NULL, &dig, &sig);
	if (dig && sig) {
		X509_ALGOR_get0(&obj, NULL, NULL, dig);
		if (!OBJ_find_sigid_by_algs(&snid, OBJ_obj2nid(obj), NID_X9_62_id_ecPublicKey))
			snid = NID_undef;
		X509_ALGOR_get0(&obj, &ptype, &pval, sig);
	}
	if (snid == NID_undef || OBJ_obj2nid(obj) != snid || ptype != V_ASN1_UNDEF)
		return st_errf(err, errlen, code,
			       "the signature algorithm is not ECDSA with the digest algorithm");
	return 0;
}

/* The signer identifier names the signer's certificate byte for byte: OpenSSL matches the
 * issuer name case-insensitively, which would let a changed letter pass unsigned. */
static int check_sid(CMS_SignerInfo *si, X509 *signer, char *err, size_t errlen, int code)
{
	ASN1_OCTET_STRING *keyid = NULL;
	X509_NAME *issuer = NULL;
	ASN1_INTEGER *serial = NULL;
	const unsigned char *a = NULL, *b = NULL;
	size_t alen = 0, blen = 0;

	if (CMS_SignerInfo_get0_signer_id(si, &keyid, &issuer, &serial) != 1 || !issuer ||
	    !serial || !X509_NAME_get0_der(issuer, &a, &alen) ||
	    !X509_NAME_get0_der(X509_get_issuer_name(signer), &b, &blen) || alen != blen ||
	    memcmp(a, b, alen) != 0 || ASN1_INTEGER_cmp(serial, X509_get0_serialNumber(signer)))
		return st_errf(err, errlen, code,
			       "the signer identifier does not name the signer's certificate "
			       "exactly");
	return 0;
}

/* Whether cms encodes to exactly in: no byte that a lenient reader passed over. */
static int same_encoding(CMS_ContentInfo *cms, const uint8_t *in, size_t inlen)
{
	unsigned char *der = NULL;
	int n = i2d_CMS_ContentInfo(cms, &der), same;

	same = n > 0 && (size_t)n == inlen && memcmp(der, in, inlen) == 0;
	OPENSSL_free(der);
	return same;
}

/* The single OID of cert's extended key usage as dotted text, "" when it has none, or
 * "several" when it has more than one. */
static void eku_text(X509 *cert, char *buf, size_t len)
{
	EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(cert, NID_ext_key_usage, NULL, NULL);
	int n = eku ? sk_ASN1_OBJECT_num(eku) : 0;

	buf[0] = 0;
	if (n == 1)
		OBJ_obj2txt(buf, (int)len, sk_ASN1_OBJECT_value(eku, 0), 1);
	else if (n > 1)
		snprintf(buf, len, "several");
	sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
}

/* The purpose rule of cms.h for a signer that is not the trusted root. */
static int check_purpose(X509 *signer, const struct st_cms_check *chk, char *err,
			 size_t errlen)
{
	char eku[128], *subj = st_cms_subject(signer);
	uint32_t ku = X509_get_key_usage(signer);
	int rc = 0;

	eku_text(signer, eku, sizeof(eku));
	if (X509_check_ca(signer) != 0)
		rc = st_errf(err, errlen, chk->codes->purpose,
			     "signed by %s, a CA certificate, not a key certified for this "
			     "purpose only (extended key usage %s)",
			     subj ? subj : "?", chk->eku_oid);
	else if (strcmp(eku, chk->eku_oid) != 0)
		rc = st_errf(err, errlen, chk->codes->purpose,
			     "signed by %s, whose certificate's extended key usage is %s, not "
			     "%s alone",
			     subj ? subj : "?", eku[0] ? eku : "absent", chk->eku_oid);
	else if (ku != UINT32_MAX && !(ku & KU_DIGITAL_SIGNATURE))
		rc = st_errf(err, errlen, chk->codes->purpose,
			     "signed by %s, whose key usage lacks digitalSignature",
			     subj ? subj : "?");
	free(subj);
	return rc;
}

/* The signer's chain to the trusted root. */
static int check_chain(CMS_ContentInfo *cms, X509 *signer, const struct st_cms_check *chk,
		       char *err, size_t errlen)
{
	STACK_OF(X509) *inside = CMS_get1_certs(cms);
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	char *subj = NULL;
	int rc;

	for (int i = 0; chk->untrusted && i < sk_X509_num(chk->untrusted); i++) {
		if (!inside)
			inside = sk_X509_new_null();
		if (inside)
			X509_add_cert(inside, sk_X509_value(chk->untrusted, i),
				      X509_ADD_FLAG_UP_REF);
	}
	if (!store || !ctx || !X509_STORE_add_cert(store, chk->trusted) ||
	    !X509_STORE_CTX_init(ctx, store, signer, inside)) {
		rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory checking the signer");
		goto out;
	}
	if (chk->now)
		X509_STORE_CTX_set_time(ctx, 0, chk->now);
	if (X509_verify_cert(ctx) != 1) {
		subj = st_cms_subject(signer);
		rc = st_errf(err, errlen, chk->codes->untrusted,
			     "the signer %s does not chain to the factory root: %s",
			     subj ? subj : "?",
			     X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
		goto out;
	}
	if (chk->issued_by_trusted && sk_X509_num(X509_STORE_CTX_get0_chain(ctx)) != 2) {
		char *issuer = NULL;

		subj = st_cms_subject(signer);
		issuer = st_cms_subject(sk_X509_value(X509_STORE_CTX_get0_chain(ctx), 1));
		rc = st_errf(err, errlen, chk->codes->untrusted,
			     "the signer %s was certified by %s; only the factory root itself "
			     "certifies this kind of key",
			     subj ? subj : "?", issuer ? issuer : "?");
		free(issuer);
		goto out;
	}
	rc = 0;
out:
	free(subj);
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	sk_X509_pop_free(inside, X509_free);
	return rc;
}

int st_cms_verify(const uint8_t *in, size_t inlen, const struct st_cms_check *chk,
		  uint8_t **content, size_t *len, X509 **signer_out, char *err, size_t errlen)
{
	const struct st_cms_codes *c = chk->codes;
	CMS_ContentInfo *cms = NULL;
	STACK_OF(CMS_SignerInfo) *sis;
	STACK_OF(X509) *signers = NULL;
	ASN1_OBJECT *want = OBJ_txt2obj(chk->ctype_oid, 1);
	ASN1_OCTET_STRING **pos;
	X509 *signer = NULL;
	BIO *out = NULL;
	unsigned char *pem_der = NULL;
	char why[256], type[128];
	char *data;
	long n;
	int rc;

	*content = NULL;
	*len = 0;
	if (signer_out)
		*signer_out = NULL;
	if (!want) {
		rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory");
		goto out;
	}
	if (inlen == 0 || inlen > ST_CMS_MAX_BYTES) {
		rc = st_errf(err, errlen, c->format, "%zu bytes: not a signed document", inlen);
		goto out;
	}
	if (to_der(in, inlen, &in, &inlen, &pem_der) < 0 || !(cms = parse(in, inlen))) {
		rc = st_errf(err, errlen, c->format,
			     "not CMS (DER, or PEM labelled CMS), or bytes follow it: %s",
			     ossl_reason(why, sizeof(why)));
		goto out;
	}
	if (OBJ_obj2nid(CMS_get0_type(cms)) != NID_pkcs7_signed) {
		rc = st_errf(err, errlen, c->format, "CMS but not SignedData");
		goto out;
	}
	if (OBJ_cmp(CMS_get0_eContentType(cms), want) != 0) {
		OBJ_obj2txt(type, sizeof(type), CMS_get0_eContentType(cms), 1);
		rc = st_errf(err, errlen, c->format, "content type %s, expected %s", type,
			     chk->ctype_oid);
		goto out;
	}
	sis = CMS_get0_SignerInfos(cms);
	if (sk_CMS_SignerInfo_num(sis) != 1) {
		rc = st_errf(err, errlen, c->format, "%d signers, expected one",
			     sk_CMS_SignerInfo_num(sis));
		goto out;
	}
	pos = CMS_get0_content(cms);
	if (!pos || !*pos) {
		rc = st_errf(err, errlen, c->format, "the content is not inside (detached)");
		goto out;
	}
	if (CMS_set1_signers_certs(cms, NULL, 0) != 1 || !(signers = CMS_get0_signers(cms)) ||
	    sk_X509_num(signers) != 1) {
		ERR_clear_error();
		rc = st_errf(err, errlen, c->format, "the signer's certificate is not inside");
		goto out;
	}
	signer = sk_X509_value(signers, 0);
	rc = check_envelope(in, inlen, err, errlen, c->signature);
	if (rc == 0 && !same_encoding(cms, in, inlen))
		rc = st_errf(err, errlen, c->signature,
			     "not in DER: bytes were changed that a reader would let pass");
	if (rc < 0)
		goto out;
	rc = check_sig_alg(sk_CMS_SignerInfo_value(sis, 0), err, errlen, c->signature);
	if (rc == 0)
		rc = check_sid(sk_CMS_SignerInfo_value(sis, 0), signer, err, errlen, c->signature);
	if (rc < 0)
		goto out;
	out = BIO_new(BIO_s_mem());
	if (!out) {
		rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory");
		goto out;
	}
	if (CMS_verify(cms, NULL, NULL, NULL, out, CMS_NO_SIGNER_CERT_VERIFY | CMS_BINARY) != 1) {
		rc = st_errf(err, errlen, c->signature,
			     "the signature does not verify: the document was changed after "
			     "signing, or not signed with this key (%s)",
			     ossl_reason(why, sizeof(why)));
		goto out;
	}
	if (!(chk->trusted_may_sign && X509_cmp(signer, chk->trusted) == 0)) {
		rc = check_chain(cms, signer, chk, err, errlen);
		if (rc < 0)
			goto out;
		rc = check_purpose(signer, chk, err, errlen);
		if (rc < 0)
			goto out;
	}
	n = BIO_get_mem_data(out, &data);
	*content = malloc((size_t)(n > 0 ? n : 0) + 1);
	if (!*content) {
		rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory");
		goto out;
	}
	if (n > 0)
		memcpy(*content, data, (size_t)n);
	(*content)[n > 0 ? n : 0] = 0;
	*len = (size_t)(n > 0 ? n : 0);
	if (signer_out && X509_up_ref(signer))
		*signer_out = signer;
	rc = 0;
out:
	ERR_clear_error();
	BIO_free(out);
	sk_X509_free(signers);
	CMS_ContentInfo_free(cms);
	ASN1_OBJECT_free(want);
	OPENSSL_free(pem_der);
	return rc;
}
