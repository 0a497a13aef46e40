/* The "file" signer backend: an EC private key in a PEM file, for development and tests.
 * A key on disk is as safe as the disk, so opening one always logs a warning.
 *
 * OpenSSL lets many threads use one EVP_PKEY at once as long as nobody changes it, but an
 * EVP_PKEY_CTX is single-threaded: each session (one per signing thread) owns its own. */
#include "signer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "digest.h"
#include "err.h"
#include "log.h"

struct file_inst {
	EVP_PKEY *key; /* private key, shared read-only by all sessions */
	EVP_PKEY *pub; /* public part only, handed out by public_key() */
	int hashes;    /* ECDSA-SHA256: sign() hashes the data first */
	char *path;
};

struct file_sess {
	struct file_inst *inst;
	EVP_PKEY_CTX *ctx;
};

/* Never prompt on a terminal for an encrypted key: the station runs unattended. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

/* Accepts EC keys on P-256 and P-384, the curves device PKIs use for CAs. */
static int check_key(const char *path, EVP_PKEY *key, char *err, size_t errlen)
{
	char group[64];
	size_t glen = 0;

	if (EVP_PKEY_get_base_id(key) != EVP_PKEY_EC)
		return st_errf(err, errlen, ST_E_SIGNER_KEY,
			       "key file %s holds a %s key; expected EC P-256 or P-384", path,
			       OBJ_nid2sn(EVP_PKEY_get_base_id(key)));
	if (!EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
					    &glen))
		return st_errf(err, errlen, ST_E_SIGNER_KEY,
			       "key file %s: EC key has no named curve; expected P-256 or P-384",
			       path);
	if (strcmp(group, "prime256v1") != 0 && strcmp(group, "secp384r1") != 0)
		return st_errf(err, errlen, ST_E_SIGNER_KEY,
			       "key file %s holds an EC key on %s; expected P-256 or P-384", path,
			       group);
	return 0;
}

/* Copies only the public part, so callers of public_key() never hold the private scalar. */
static EVP_PKEY *public_copy(EVP_PKEY *key)
{
	unsigned char *der = NULL;
	const unsigned char *p;
	EVP_PKEY *pub = NULL;
	int len;

	len = i2d_PUBKEY(key, &der);
	if (len <= 0)
		return NULL;
	p = der;
	pub = d2i_PUBKEY(NULL, &p, len);
	OPENSSL_free(der);
	return pub;
}

static void file_close(void *p)
{
	struct file_inst *inst = p;

	if (!inst)
		return;
	EVP_PKEY_free(inst->key);
	EVP_PKEY_free(inst->pub);
	free(inst->path);
	free(inst);
}

static int file_open(const struct drv_signer_config *cfg, void **out, char *err, size_t errlen)
{
	struct file_inst *inst = NULL;
	BIO *bio = NULL;
	int rc = 0;

	*out = NULL;
	inst = calloc(1, sizeof(*inst));
	if (!inst) {
		rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory opening key file");
		goto out;
	}
	rc = drv_signer_parse_mechanism(cfg->mechanism, &inst->hashes, err, errlen);
	if (rc < 0)
		goto out;
	inst->path = strdup(cfg->key);
	if (!inst->path) {
		rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory opening key file");
		goto out;
	}
	bio = BIO_new_file(cfg->key, "r");
	if (!bio) {
		rc = st_errf(err, errlen, ST_E_SIGNER_KEY, "cannot open key file %s: %s",
			     cfg->key, strerror(errno ? errno : ENOENT));
		goto out;
	}
	inst->key = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
	if (!inst->key) {
		rc = st_errf(err, errlen, ST_E_SIGNER_KEY,
			     "key file %s holds no unencrypted PEM private key", cfg->key);
		goto out;
	}
	rc = check_key(cfg->key, inst->key, err, errlen);
	if (rc < 0)
		goto out;
	inst->pub = public_copy(inst->key);
	if (!inst->pub) {
		rc = st_errf(err, errlen, ST_E_CRYPTO, "key file %s: cannot extract public key",
			     cfg->key);
		goto out;
	}
	st_warn("signer: using the key file %s; a key file is for development only, use a "
		"PKCS#11 HSM in production", cfg->key);
	*out = inst;
	inst = NULL;
out:
	/* OpenSSL's error queue would otherwise leak into unrelated later calls. */
	if (rc < 0)
		ERR_clear_error();
	BIO_free(bio);
	file_close(inst);
	return rc;
}

static int file_session_open(void *p, void **out, char *err, size_t errlen)
{
	struct file_inst *inst = p;
	struct file_sess *sess;

	*out = NULL;
	sess = calloc(1, sizeof(*sess));
	if (!sess)
		return st_errf(err, errlen, ST_E_NOMEM, "out of memory opening signer session");
	sess->inst = inst;
	sess->ctx = EVP_PKEY_CTX_new(inst->key, NULL);
	if (!sess->ctx || EVP_PKEY_sign_init(sess->ctx) <= 0) {
		EVP_PKEY_CTX_free(sess->ctx);
		free(sess);
		ERR_clear_error();
		return st_errf(err, errlen, ST_E_CRYPTO, "key file %s: cannot set up signing",
			       inst->path);
	}
	*out = sess;
	return 0;
}

static void file_session_close(void *p)
{
	struct file_sess *sess = p;

	if (!sess)
		return;
	EVP_PKEY_CTX_free(sess->ctx);
	free(sess);
}

static int file_sign(void *p, const uint8_t *digest, size_t dlen, uint8_t *sig, size_t *siglen,
		     char *err, size_t errlen)
{
	struct file_sess *sess = p;
	uint8_t md[32];
	size_t len = DRV_SIGNER_MAX_SIG;

	*siglen = 0;
	if (sess->inst->hashes) {
		st_digest(ST_SHA256, digest, dlen, md);
		digest = md;
		dlen = sizeof(md);
	} else if (dlen > 64) {
		return st_errf(err, errlen, ST_E_INVAL,
			       "digest is %zu bytes; expected at most 64", dlen);
	}
	if (EVP_PKEY_sign(sess->ctx, sig, &len, digest, dlen) <= 0) {
		ERR_clear_error();
		return st_errf(err, errlen, ST_E_SIGNER_FAILED, "key file %s: ECDSA signing failed",
			       sess->inst->path);
	}
	*siglen = len;
	return 0;
}

static EVP_PKEY *file_public_key(void *p)
{
	struct file_inst *inst = p;

	if (!EVP_PKEY_up_ref(inst->pub))
		return NULL;
	return inst->pub;
}

const struct drv_signer_ops drv_signer_file_ops = {
	.name = "file",
	.open = file_open,
	.session_open = file_session_open,
	.sign = file_sign,
	.session_close = file_session_close,
	.public_key = file_public_key,
	.close = file_close,
};
