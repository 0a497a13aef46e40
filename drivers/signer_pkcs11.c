/* The "pkcs11" signer backend. Placeholder until the module code lands: every entry point
 * fails with a clear message, so the file backend can be used meanwhile. */
#include "signer.h"

#include "err.h"

static int p11_open(const struct drv_signer_config *cfg, void **inst, char *err, size_t errlen)
{
	(void)cfg;
	*inst = NULL;
	return st_errf(err, errlen, ST_E_SIGNER_MODULE, "pkcs11 signer is not built yet");
}

static int p11_session_open(void *inst, void **sess, char *err, size_t errlen)
{
	(void)inst;
	*sess = NULL;
	return st_errf(err, errlen, ST_E_INTERNAL, "pkcs11 signer is not built yet");
}

static int p11_sign(void *sess, const uint8_t *digest, size_t dlen, uint8_t *sig,
		    size_t *siglen, char *err, size_t errlen)
{
	(void)sess;
	(void)digest;
	(void)dlen;
	(void)sig;
	*siglen = 0;
	return st_errf(err, errlen, ST_E_INTERNAL, "pkcs11 signer is not built yet");
}

static void p11_session_close(void *sess)
{
	(void)sess;
}

static EVP_PKEY *p11_public_key(void *inst)
{
	(void)inst;
	return NULL;
}

static void p11_close(void *inst)
{
	(void)inst;
}

const struct drv_signer_ops drv_signer_pkcs11_ops = {
	.name = "pkcs11",
	.open = p11_open,
	.session_open = p11_session_open,
	.sign = p11_sign,
	.session_close = p11_session_close,
	.public_key = p11_public_key,
	.close = p11_close,
};

int drv_pkcs11_generate_ec_key(const struct drv_signer_config *cfg, const char *curve, char *err,
			       size_t errlen)
{
	(void)cfg;
	(void)curve;
	return st_errf(err, errlen, ST_E_SIGNER_MODULE, "pkcs11 signer is not built yet");
}

int drv_pkcs11_init_token(const char *module_path, const char *label, const char *so_pin,
			  const char *user_pin, char *err, size_t errlen)
{
	(void)module_path;
	(void)label;
	(void)so_pin;
	(void)user_pin;
	return st_errf(err, errlen, ST_E_SIGNER_MODULE, "pkcs11 signer is not built yet");
}

void drv_pkcs11_test_drop_session(void *sess)
{
	(void)sess;
}

void drv_pkcs11_test_finalize(struct drv_signer *signer)
{
	(void)signer;
}
