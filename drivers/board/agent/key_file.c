/* Key backend "file": the board's key in a PEM file (PKCS#8, mode 0600), for boards without
 * a secure element. The file is written once, atomically, never through a symlink
 * (O_NOFOLLOW), and read back at every start. */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

struct key_file {
	char path[AGENT_PATH_MAX];
	int fsync;
	EVP_PKEY *key;
	char err[AGENT_PATH_MAX + 256];
};

static const char *kf_last_error(void *inst)
{
	struct key_file *k = inst;

	return k->err[0] ? k->err : NULL;
}

static int kf_load(struct key_file *k)
{
	int fd = open(k->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	FILE *f;

	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(k->err, sizeof(k->err), "%s: %s", k->path,
			 errno == ELOOP ? "a symlink" : strerror(errno));
		return BRD_ERR_IO;
	}
	f = fdopen(fd, "r");
	if (!f) {
		close(fd);
		return BRD_ERR_IO;
	}
	k->key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (!k->key || EVP_PKEY_get_base_id(k->key) != EVP_PKEY_EC) {
		snprintf(k->err, sizeof(k->err), "%s: not an EC private key", k->path);
		EVP_PKEY_free(k->key);
		k->key = NULL;
		return BRD_ERR_CRYPTO;
	}
	return 0;
}

static int kf_exists(void *inst)
{
	return ((struct key_file *)inst)->key != NULL;
}

static int kf_generate(void *inst)
{
	struct key_file *k = inst;
	EVP_PKEY *key = EVP_EC_gen("P-256");
	BIO *bio = BIO_new(BIO_s_mem());
	char *pem;
	long len;
	int rc = BRD_ERR_CRYPTO;

	if (!key || !bio || !PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL)) {
		snprintf(k->err, sizeof(k->err), "EC P-256 key generation failed");
		goto out;
	}
	len = BIO_get_mem_data(bio, &pem);
	if (agent_write_atomic(k->path, pem, (size_t)len, 0600, k->fsync) != 0) {
		rc = errno == ENOSPC ? BRD_ERR_NOSPACE : BRD_ERR_IO;
		snprintf(k->err, sizeof(k->err), "%s: %s", k->path, strerror(errno));
		goto out;
	}
	EVP_PKEY_free(k->key);
	k->key = key;
	key = NULL;
	rc = 0;
out:
	BIO_free(bio);
	EVP_PKEY_free(key);
	return rc;
}

static int kf_public_key(void *inst, uint8_t pub[65])
{
	struct key_file *k = inst;
	size_t n = 0;

	if (!k->key)
		return BRD_ERR_NOTFOUND;
	if (EVP_PKEY_get_octet_string_param(k->key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pub, 65,
					    &n) != 1 ||
	    n != 65 || pub[0] != 0x04) {
		snprintf(k->err, sizeof(k->err), "the key's public point is not P-256");
		return BRD_ERR_CRYPTO;
	}
	return 0;
}

static int kf_sign(void *inst, const uint8_t digest[32], uint8_t sig[64])
{
	struct key_file *k = inst;
	EVP_PKEY_CTX *ctx = k->key ? EVP_PKEY_CTX_new(k->key, NULL) : NULL;
	unsigned char der[80];
	const unsigned char *p = der;
	size_t len = sizeof(der);
	ECDSA_SIG *es = NULL;
	const BIGNUM *r, *s;
	int rc = BRD_ERR_CRYPTO;

	if (!ctx || EVP_PKEY_sign_init(ctx) != 1 ||
	    EVP_PKEY_sign(ctx, der, &len, digest, 32) != 1)
		goto out;
	es = d2i_ECDSA_SIG(NULL, &p, (long)len);
	if (!es)
		goto out;
	ECDSA_SIG_get0(es, &r, &s);
	if (BN_bn2binpad(r, sig, 32) != 32 || BN_bn2binpad(s, sig + 32, 32) != 32)
		goto out;
	rc = 0;
out:
	if (rc)
		snprintf(k->err, sizeof(k->err), "ECDSA signing failed");
	ECDSA_SIG_free(es);
	EVP_PKEY_CTX_free(ctx);
	return rc;
}

static const struct brd_key_ops kf_ops = {
	.exists = kf_exists,
	.generate = kf_generate,
	.public_key = kf_public_key,
	.sign = kf_sign,
	.last_error = kf_last_error,
};

static int kf_open(const struct agent_config *c, void **inst, char *err, size_t errlen)
{
	struct key_file *k = calloc(1, sizeof(*k));

	*inst = NULL;
	if (!k) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	snprintf(k->path, sizeof(k->path), "%s", c->key);
	k->fsync = c->fsync;
	if (kf_load(k) != 0) {
		snprintf(err, errlen, "%s", k->err);
		free(k);
		return -1;
	}
	*inst = k;
	return 0;
}

static void kf_close(void *inst)
{
	struct key_file *k = inst;

	EVP_PKEY_free(k->key);
	free(k);
}

const struct agent_key_backend agent_key_file = { "file", kf_open, kf_close, &kf_ops };
