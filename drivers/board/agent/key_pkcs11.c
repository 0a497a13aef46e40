/* Key backend "pkcs11": the board's key inside a PKCS#11 token, the device's secure element
 * (a TPM or OP-TEE through its PKCS#11 module; SoftHSM2 in tests). The token and the key
 * are named by an RFC 7512 URI, parsed with p11-kit's parser as the station's signer does:
 * pkcs11:token=<label>;object=<key label>[;id=<id>]?module-path=<module.so>. The key pair is
 * made with C_GenerateKeyPair on the token (CKA_TOKEN), the private half sensitive and not
 * extractable, labelled (and id'd) as the URI says, so every later start finds it again by
 * label and id. The PIN comes from pin_file, never from argv or the URI.
 *
 * A new pair (CSR regen=1) replaces the old one without a moment where the board has no
 * key: it is made under the label with TMP_SUFFIX (same id), then the old pair is destroyed,
 * then the new one takes the label, private half first. A generation that fails leaves the
 * old pair as it was. A power cut in between leaves objects under the temporary label, and
 * settle() finishes or undoes the switch before the key is used (at open and at every
 * lookup), so that no restart ever finds two keys under one label. */
#include "agent.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/pkcs11.h>
#include <p11-kit/uri.h>

#define TMP_SUFFIX ".new"
#define MAX_OBJS 8

struct key_p11 {
	void *dl;
	CK_FUNCTION_LIST *f;
	CK_SESSION_HANDLE sess;
	CK_BYTE label[256], tmp[256 + sizeof(TMP_SUFFIX)], id[256];
	CK_ULONG label_len, tmp_len, id_len;
	int settled; /* nothing was under the temporary label at the last look */
	int sees_private; /* logged in, or the token needs no login */
	char err[AGENT_PATH_MAX + 256];
};

/* The objects of the pair under the label (REAL) and the temporary one (TMP), per class. */
enum { REAL, TMP };
enum { PRIV, PUB };
struct census {
	CK_OBJECT_HANDLE h[2][2][MAX_OBJS];
	CK_ULONG n[2][2];
};

static const CK_BYTE p256_params[] = { 0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01,
				       0x07 };

static int p11_fail(struct key_p11 *k, int code, const char *what, CK_RV rv)
{
	snprintf(k->err, sizeof(k->err), "PKCS#11 %s failed: 0x%lx", what, (unsigned long)rv);
	return code;
}

static const char *p11_last_error(void *inst)
{
	struct key_p11 *k = inst;

	return k->err[0] ? k->err : NULL;
}

/* Up to MAX_OBJS objects of class cls with the label (REAL: the URI's, TMP: the temporary
 * one) and the URI's id. */
static int find_as(struct key_p11 *k, int which, CK_OBJECT_CLASS cls, CK_OBJECT_HANDLE *out,
		   CK_ULONG *n)
{
	CK_ATTRIBUTE t[3] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_LABEL, which == TMP ? k->tmp : k->label,
		  which == TMP ? k->tmp_len : k->label_len },
		{ CKA_ID, k->id, k->id_len },
	};
	CK_RV rv;

	*n = 0;
	rv = k->f->C_FindObjectsInit(k->sess, t, k->id_len ? 3 : 2);
	if (rv != CKR_OK)
		return p11_fail(k, BRD_ERR_IO, "C_FindObjectsInit", rv);
	rv = k->f->C_FindObjects(k->sess, out, MAX_OBJS, n);
	k->f->C_FindObjectsFinal(k->sess);
	if (rv != CKR_OK)
		return p11_fail(k, BRD_ERR_IO, "C_FindObjects", rv);
	return 0;
}

static int census(struct key_p11 *k, struct census *c)
{
	static const CK_OBJECT_CLASS cls[2] = { CKO_PRIVATE_KEY, CKO_PUBLIC_KEY };
	int w, i, rc;

	for (w = REAL; w <= TMP; w++) {
		for (i = PRIV; i <= PUB; i++) {
			rc = find_as(k, w, cls[i], c->h[w][i], &c->n[w][i]);
			if (rc)
				return rc;
		}
	}
	return 0;
}

static int destroy(struct key_p11 *k, const CK_OBJECT_HANDLE *h, CK_ULONG n)
{
	CK_ULONG i;
	CK_RV rv;

	for (i = 0; i < n; i++) {
		rv = k->f->C_DestroyObject(k->sess, h[i]);
		if (rv != CKR_OK)
			return p11_fail(k, BRD_ERR_IO, "C_DestroyObject", rv);
	}
	return 0;
}

/* The objects take the URI's label. */
static int relabel(struct key_p11 *k, const CK_OBJECT_HANDLE *h, CK_ULONG n)
{
	CK_ATTRIBUTE a = { CKA_LABEL, k->label, k->label_len };
	CK_ULONG i;
	CK_RV rv;

	for (i = 0; i < n; i++) {
		rv = k->f->C_SetAttributeValue(k->sess, h[i], &a, 1);
		if (rv != CKR_OK)
			return p11_fail(k, BRD_ERR_IO, "C_SetAttributeValue(CKA_LABEL)", rv);
	}
	return 0;
}

/* Destroys what is under the temporary label (c: the token's census). */
static int drop_tmp(struct key_p11 *k, const struct census *c)
{
	int rc = destroy(k, c->h[TMP][PRIV], c->n[TMP][PRIV]);

	return rc ? rc : destroy(k, c->h[TMP][PUB], c->n[TMP][PUB]);
}

/* Finishes or undoes a switch of pairs that p11_generate left half done (a power cut, a
 * failing module), from what is on the token. The states its steps leave, and what becomes
 * of each:
 *   old pair, and the new pair or part of it  the switch never got past generating: the
 *                                             old pair stays the board's, the new goes
 *   old public key, new pair                  past the destruction of the old private key:
 *   new pair                                  the switch is finished (the old public key
 *                                             destroyed, the new pair labelled)
 *   new private key labelled, new public key  the relabelling was cut between the halves:
 *                                             the public half is labelled too
 *   only a new public key                     a generation cut short on a token without a
 *                                             key: it goes
 * At no step are there two private or two public keys under the label. */
static int settle(struct key_p11 *k)
{
	struct census c;
	int rc;

	/* Without a login the private halves are out of sight and the census would misread
	 * the switch: an agent that logs in settles it. */
	if (k->settled || !k->sees_private)
		return 0;
	rc = census(k, &c);
	if (rc)
		return rc;
	if (c.n[TMP][PRIV] || c.n[TMP][PUB]) {
		if (c.n[REAL][PRIV] && (c.n[REAL][PUB] || c.n[TMP][PRIV])) {
			rc = drop_tmp(k, &c);
		} else if (c.n[REAL][PRIV]) {
			rc = relabel(k, c.h[TMP][PUB], c.n[TMP][PUB]);
		} else if (c.n[TMP][PRIV]) {
			rc = destroy(k, c.h[REAL][PUB], c.n[REAL][PUB]);
			if (!rc)
				rc = relabel(k, c.h[TMP][PRIV], c.n[TMP][PRIV]);
			if (!rc)
				rc = relabel(k, c.h[TMP][PUB], c.n[TMP][PUB]);
		} else {
			rc = drop_tmp(k, &c);
		}
	}
	if (!rc)
		k->settled = 1;
	return rc;
}

/* A generation that did not go through (rc, k->err say why): what it left under the
 * temporary label goes, the board keeps the pair it had, and the error says so too. */
static int undo(struct key_p11 *k, int rc, const char *old_kept)
{
	char what[256];
	struct census c;

	snprintf(what, sizeof(what), "%.200s", k->err);
	if (census(k, &c) == 0 && drop_tmp(k, &c) == 0)
		k->settled = 1;
	snprintf(k->err, sizeof(k->err), "%s; %s", what, old_kept);
	return rc;
}

/* Up to max objects of class cls under the URI's label, once the token is settled. */
static int find(struct key_p11 *k, CK_OBJECT_CLASS cls, CK_OBJECT_HANDLE *out, CK_ULONG max,
		CK_ULONG *n)
{
	CK_OBJECT_HANDLE h[MAX_OBJS];
	int rc = settle(k);

	if (!rc)
		rc = find_as(k, REAL, cls, h, n);
	if (rc)
		return rc;
	if (*n > max)
		*n = max;
	memcpy(out, h, *n * sizeof(h[0]));
	return 0;
}

static int p11_exists(void *inst)
{
	struct key_p11 *k = inst;
	CK_OBJECT_HANDLE h;
	CK_ULONG n;
	int rc = find(k, CKO_PRIVATE_KEY, &h, 1, &n);

	return rc ? rc : n > 0;
}

static int p11_generate(void *inst)
{
	struct key_p11 *k = inst;
	CK_MECHANISM mech = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ATTRIBUTE pub[] = {
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &no, sizeof(no) },
		{ CKA_VERIFY, &yes, sizeof(yes) },
		{ CKA_EC_PARAMS, (void *)p256_params, sizeof(p256_params) },
		{ CKA_LABEL, k->tmp, k->tmp_len },
		{ CKA_ID, k->id, k->id_len },
	};
	CK_ATTRIBUTE priv[] = {
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &yes, sizeof(yes) },
		{ CKA_SENSITIVE, &yes, sizeof(yes) },
		{ CKA_EXTRACTABLE, &no, sizeof(no) },
		{ CKA_SIGN, &yes, sizeof(yes) },
		{ CKA_LABEL, k->tmp, k->tmp_len },
		{ CKA_ID, k->id, k->id_len },
	};
	const char *old_kept;
	struct census c;
	CK_OBJECT_HANDLE hpub, hpriv;
	CK_RV rv;
	int rc;

	/* After settle, the old pair (if any) is under the label and nothing under the
	 * temporary one. */
	rc = settle(k);
	if (!rc)
		rc = census(k, &c);
	if (rc)
		return rc;
	old_kept = c.n[REAL][PRIV] ? "the old key pair is kept" : "the token had no key pair";
	k->settled = 0;
	rv = agent_test_fail("keygen") ? CKR_DEVICE_MEMORY
				       : k->f->C_GenerateKeyPair(k->sess, &mech, pub, k->id_len ? 6 : 5,
								 priv, k->id_len ? 7 : 6, &hpub,
								 &hpriv);
	if (rv != CKR_OK)
		return undo(k, p11_fail(k, BRD_ERR_CRYPTO, "C_GenerateKeyPair", rv), old_kept);
	agent_test_stop("keygen-generated");
	/* The old private key goes first: from then on a restart finishes the switch. */
	rc = destroy(k, c.h[REAL][PRIV], c.n[REAL][PRIV]);
	if (rc)
		return undo(k, rc, old_kept);
	rc = destroy(k, c.h[REAL][PUB], c.n[REAL][PUB]);
	if (!rc) {
		agent_test_stop("keygen-destroyed");
		rc = relabel(k, &hpriv, 1);
	}
	if (!rc) {
		agent_test_stop("keygen-relabelled");
		rc = relabel(k, &hpub, 1);
	}
	if (rc) {
		snprintf(k->err + strlen(k->err), sizeof(k->err) - strlen(k->err),
			 "; the new key pair is made and takes the key's label at the next use");
		return rc;
	}
	k->settled = 1;
	return 0;
}

static int p11_public_key(void *inst, uint8_t out[65])
{
	struct key_p11 *k = inst;
	CK_BYTE point[80];
	CK_ATTRIBUTE a = { CKA_EC_POINT, point, sizeof(point) };
	CK_OBJECT_HANDLE h;
	CK_ULONG n;
	CK_RV rv;
	int rc = find(k, CKO_PUBLIC_KEY, &h, 1, &n);

	if (rc)
		return rc;
	if (!n) {
		snprintf(k->err, sizeof(k->err), "the token has no public key with this label");
		return BRD_ERR_NOTFOUND;
	}
	rv = k->f->C_GetAttributeValue(k->sess, h, &a, 1);
	if (rv != CKR_OK)
		return p11_fail(k, BRD_ERR_IO, "C_GetAttributeValue(CKA_EC_POINT)", rv);
	/* DER OCTET STRING around the point (PKCS#11 2.40), or the bare point (some modules). */
	if (a.ulValueLen == 67 && point[0] == 0x04 && point[1] == 65 && point[2] == 0x04) {
		memcpy(out, point + 2, 65);
	} else if (a.ulValueLen == 65 && point[0] == 0x04) {
		memcpy(out, point, 65);
	} else {
		snprintf(k->err, sizeof(k->err), "the token's key is not a P-256 point");
		return BRD_ERR_CRYPTO;
	}
	return 0;
}

static int p11_sign(void *inst, const uint8_t digest[32], uint8_t sig[64])
{
	struct key_p11 *k = inst;
	CK_MECHANISM mech = { CKM_ECDSA, NULL, 0 };
	CK_OBJECT_HANDLE h;
	CK_ULONG n, len = 64;
	CK_RV rv;
	int rc = find(k, CKO_PRIVATE_KEY, &h, 1, &n);

	if (rc)
		return rc;
	if (!n) {
		snprintf(k->err, sizeof(k->err), "the token has no private key with this label");
		return BRD_ERR_NOTFOUND;
	}
	rv = k->f->C_SignInit(k->sess, &mech, h);
	if (rv == CKR_OK)
		rv = k->f->C_Sign(k->sess, (CK_BYTE *)digest, 32, sig, &len);
	if (rv != CKR_OK || len != 64)
		return p11_fail(k, BRD_ERR_CRYPTO, "C_Sign", rv);
	return 0;
}

static const struct brd_key_ops p11_ops = {
	.exists = p11_exists,
	.generate = p11_generate,
	.public_key = p11_public_key,
	.sign = p11_sign,
	.last_error = p11_last_error,
};

static void p11_close(void *inst)
{
	struct key_p11 *k = inst;

	if (k->f) {
		if (k->sess)
			k->f->C_CloseSession(k->sess);
		k->f->C_Finalize(NULL);
	}
	if (k->dl)
		dlclose(k->dl);
	free(k);
}

/* The token the URI names: its slot. */
static int find_slot(struct key_p11 *k, P11KitUri *uri, CK_SLOT_ID *out)
{
	CK_SLOT_ID slots[64];
	CK_ULONG n = 64, i;
	CK_TOKEN_INFO ti;
	CK_RV rv = k->f->C_GetSlotList(CK_TRUE, slots, &n);

	if (rv != CKR_OK)
		return p11_fail(k, -1, "C_GetSlotList", rv);
	for (i = 0; i < n; i++) {
		if (k->f->C_GetTokenInfo(slots[i], &ti) == CKR_OK &&
		    p11_kit_uri_match_token_info(uri, &ti)) {
			*out = slots[i];
			k->sees_private = !(ti.flags & CKF_LOGIN_REQUIRED);
			return 0;
		}
	}
	snprintf(k->err, sizeof(k->err), "no token matches the URI");
	return -1;
}

static int p11_open(const struct agent_config *c, void **inst, char *err, size_t errlen)
{
	struct key_p11 *k = calloc(1, sizeof(*k));
	P11KitUri *uri = p11_kit_uri_new();
	CK_C_GetFunctionList get_list;
	CK_ATTRIBUTE *a;
	const char *module;
	char pin[257] = "";
	CK_SLOT_ID slot = 0;
	CK_RV rv;
	int r, rc = -1;

	*inst = NULL;
	if (!k || !uri) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	r = p11_kit_uri_parse(c->key, P11_KIT_URI_FOR_ANY, uri);
	if (r != P11_KIT_URI_OK) {
		snprintf(err, errlen, "key URI: %s", p11_kit_uri_message(r));
		goto out;
	}
	if (p11_kit_uri_get_pin_value(uri)) {
		snprintf(err, errlen, "key URI: a pin-value is refused; give pin_file");
		goto out;
	}
	module = p11_kit_uri_get_module_path(uri);
	a = p11_kit_uri_get_attribute(uri, CKA_LABEL);
	if (!module || !a || !a->ulValueLen || a->ulValueLen > sizeof(k->label)) {
		snprintf(err, errlen, "key URI: needs object=<key label> and "
				      "?module-path=<PKCS#11 module>");
		goto out;
	}
	memcpy(k->label, a->pValue, a->ulValueLen);
	k->label_len = a->ulValueLen;
	memcpy(k->tmp, k->label, k->label_len);
	memcpy(k->tmp + k->label_len, TMP_SUFFIX, sizeof(TMP_SUFFIX) - 1);
	k->tmp_len = k->label_len + sizeof(TMP_SUFFIX) - 1;
	a = p11_kit_uri_get_attribute(uri, CKA_ID);
	if (a && a->ulValueLen <= sizeof(k->id)) {
		memcpy(k->id, a->pValue, a->ulValueLen);
		k->id_len = a->ulValueLen;
	}
	k->dl = dlopen(module, RTLD_NOW | RTLD_LOCAL);
	*(void **)&get_list = k->dl ? dlsym(k->dl, "C_GetFunctionList") : NULL;
	if (!get_list || get_list(&k->f) != CKR_OK) {
		snprintf(err, errlen, "%s: not a loadable PKCS#11 module%s%s", module,
			 k->dl ? "" : ": ", k->dl ? "" : dlerror());
		k->f = NULL;
		goto out;
	}
	rv = k->f->C_Initialize(NULL);
	if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		snprintf(err, errlen, "%s: C_Initialize failed: 0x%lx", module, (unsigned long)rv);
		k->f = NULL;
		goto out;
	}
	if (find_slot(k, uri, &slot) != 0) {
		snprintf(err, errlen, "%s", k->err);
		goto out;
	}
	rv = k->f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &k->sess);
	if (rv != CKR_OK) {
		snprintf(err, errlen, "C_OpenSession failed: 0x%lx", (unsigned long)rv);
		goto out;
	}
	if (c->pin_file[0]) {
		if (agent_read_line(c->pin_file, pin, sizeof(pin)) != 0) {
			snprintf(err, errlen, "%s: cannot read the PIN", c->pin_file);
			goto out;
		}
		rv = k->f->C_Login(k->sess, CKU_USER, (CK_UTF8CHAR *)pin, strlen(pin));
		if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
			snprintf(err, errlen, "C_Login failed: 0x%lx%s", (unsigned long)rv,
				 rv == CKR_PIN_INCORRECT ? " (wrong PIN)" : "");
			goto out;
		}
		k->sees_private = 1;
	}
	/* A switch of pairs a power cut left half done is settled now; should that fail, the
	 * first use tries again and says why. */
	settle(k);
	*inst = k;
	k = NULL;
	rc = 0;
out:
	explicit_bzero(pin, sizeof(pin));
	if (k)
		p11_close(k);
	p11_kit_uri_free(uri);
	return rc;
}

const struct agent_key_backend agent_key_pkcs11 = { "pkcs11", p11_open, p11_close, &p11_ops };

