/* station-agent-mbedtls: the crypto port on mbedTLS instead of OpenSSL, to show the board
 * core and the agent need no OpenSSL. Key backend "file" (the same PEM file, mode 0600, as
 * key_file.c; signatures deterministic per RFC 6979), "pkcs11" as in the OpenSSL port (it
 * needs no crypto library), random bytes from mbedTLS's CTR-DRBG seeded from the kernel. */
#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>

/* One generator for the process, seeded at first use. */
static mbedtls_entropy_context entropy;
static mbedtls_ctr_drbg_context drbg;
static int drbg_ready;

static int drbg_init(void)
{
	static const char pers[] = "station-agent";

	if (drbg_ready)
		return 0;
	mbedtls_entropy_init(&entropy);
	mbedtls_ctr_drbg_init(&drbg);
	if (mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy,
				  (const unsigned char *)pers, sizeof(pers) - 1) != 0)
		return -1;
	drbg_ready = 1;
	return 0;
}

int agent_random(void *buf, size_t n)
{
	if (drbg_init() != 0)
		return -1;
	return mbedtls_ctr_drbg_random(&drbg, buf, n) == 0 ? 0 : -1;
}

struct key_mb {
	char path[AGENT_PATH_MAX];
	int fsync;
	int have;
	mbedtls_pk_context pk;
	char err[AGENT_PATH_MAX + 256];
};

static const char *mb_last_error(void *inst)
{
	struct key_mb *k = inst;

	return k->err[0] ? k->err : NULL;
}

static int mb_exists(void *inst)
{
	return ((struct key_mb *)inst)->have;
}

static int mb_generate(void *inst)
{
	struct key_mb *k = inst;
	mbedtls_pk_context pk;
	unsigned char pem[512];
	int rc = BRD_ERR_CRYPTO;

	mbedtls_pk_init(&pk);
	if (drbg_init() != 0 ||
	    mbedtls_pk_setup(&pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)) != 0 ||
	    mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(pk),
				mbedtls_ctr_drbg_random, &drbg) != 0 ||
	    mbedtls_pk_write_key_pem(&pk, pem, sizeof(pem)) != 0) {
		snprintf(k->err, sizeof(k->err), "EC P-256 key generation failed");
		goto out;
	}
	if (agent_write_atomic(k->path, pem, strlen((char *)pem), 0600, k->fsync) != 0) {
		rc = errno == ENOSPC ? BRD_ERR_NOSPACE : BRD_ERR_IO;
		snprintf(k->err, sizeof(k->err), "%s: %s", k->path, strerror(errno));
		goto out;
	}
	mbedtls_pk_free(&k->pk);
	k->pk = pk;
	mbedtls_pk_init(&pk);
	k->have = 1;
	rc = 0;
out:
	mbedtls_platform_zeroize(pem, sizeof(pem));
	mbedtls_pk_free(&pk);
	return rc;
}

static int mb_public_key(void *inst, uint8_t pub[65])
{
	struct key_mb *k = inst;
	mbedtls_ecp_keypair *ec;
	size_t n = 0;

	if (!k->have)
		return BRD_ERR_NOTFOUND;
	ec = mbedtls_pk_ec(k->pk);
	if (mbedtls_ecp_point_write_binary(&ec->grp, &ec->Q, MBEDTLS_ECP_PF_UNCOMPRESSED, &n, pub,
					   65) != 0 ||
	    n != 65) {
		snprintf(k->err, sizeof(k->err), "the key's public point is not P-256");
		return BRD_ERR_CRYPTO;
	}
	return 0;
}

static int mb_sign(void *inst, const uint8_t digest[32], uint8_t sig[64])
{
	struct key_mb *k = inst;
	mbedtls_ecp_keypair *ec;
	mbedtls_mpi r, s;
	int rc = BRD_ERR_CRYPTO;

	if (!k->have || drbg_init() != 0)
		return BRD_ERR_NOTFOUND;
	ec = mbedtls_pk_ec(k->pk);
	mbedtls_mpi_init(&r);
	mbedtls_mpi_init(&s);
	if (mbedtls_ecdsa_sign_det_ext(&ec->grp, &r, &s, &ec->d, digest, 32, MBEDTLS_MD_SHA256,
				       mbedtls_ctr_drbg_random, &drbg) == 0 &&
	    mbedtls_mpi_write_binary(&r, sig, 32) == 0 && mbedtls_mpi_write_binary(&s, sig + 32, 32) == 0)
		rc = 0;
	else
		snprintf(k->err, sizeof(k->err), "ECDSA signing failed");
	mbedtls_mpi_free(&r);
	mbedtls_mpi_free(&s);
	return rc;
}

static const struct brd_key_ops mb_ops = {
	.exists = mb_exists,
	.generate = mb_generate,
	.public_key = mb_public_key,
	.sign = mb_sign,
	.last_error = mb_last_error,
};

static int mb_open(const struct agent_config *c, void **inst, char *err, size_t errlen)
{
	struct key_mb *k = calloc(1, sizeof(*k));
	unsigned char buf[1024];
	ssize_t n;
	int fd;

	*inst = NULL;
	if (!k) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	snprintf(k->path, sizeof(k->path), "%s", c->key);
	k->fsync = c->fsync;
	mbedtls_pk_init(&k->pk);
	/* Read without following a symlink, then parse from memory. */
	fd = open(k->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && errno != ENOENT) {
		snprintf(err, errlen, "%s: %s", k->path, strerror(errno));
		goto fail;
	}
	if (fd >= 0) {
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n <= 0) {
			snprintf(err, errlen, "%s: cannot read", k->path);
			goto fail;
		}
		buf[n] = 0;
		if (mbedtls_pk_parse_key(&k->pk, buf, (size_t)n + 1, NULL, 0) != 0 ||
		    mbedtls_pk_get_type(&k->pk) != MBEDTLS_PK_ECKEY ||
		    mbedtls_pk_ec(k->pk)->grp.id != MBEDTLS_ECP_DP_SECP256R1) {
			snprintf(err, errlen, "%s: not an EC P-256 private key", k->path);
			goto fail;
		}
		k->have = 1;
		mbedtls_platform_zeroize(buf, sizeof(buf));
	}
	*inst = k;
	return 0;
fail:
	mbedtls_platform_zeroize(buf, sizeof(buf));
	mbedtls_pk_free(&k->pk);
	free(k);
	return -1;
}

static void mb_close(void *inst)
{
	struct key_mb *k = inst;

	mbedtls_pk_free(&k->pk);
	free(k);
}

const struct agent_key_backend agent_key_mbedtls = { "file", mb_open, mb_close, &mb_ops };

const struct agent_key_backend *const agent_key_backends[] = { &agent_key_pkcs11,
							       &agent_key_mbedtls, NULL };

/* The board core's own SHA-256: a device on mbedTLS hashes a few files a boot. */
brd_sha256_blocks_fn *const agent_sha256_blocks = NULL;
