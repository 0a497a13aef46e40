/* Signer front end and the file backend: real keys written to a temp dir, real OpenSSL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>

#include "err.h"
#include "log.h"
#include "signer.h"
#include "testutil.h"

static char dir[4096];

static void path_in(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", dir, name);
}

static void write_text(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	chmod(path, mode);
}

static void write_key(const char *path, EVP_PKEY *key)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL), 1);
	fclose(f);
	chmod(path, 0600);
}

static void write_ec_key(const char *path, const char *curve)
{
	EVP_PKEY *key = EVP_EC_gen(curve);

	assert_non_null(key);
	write_key(path, key);
	EVP_PKEY_free(key);
}

static int verify(EVP_PKEY *pub, const uint8_t *digest, size_t dlen, const uint8_t *sig,
		  size_t siglen)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pub, NULL);
	int ok;

	assert_non_null(ctx);
	assert_int_equal(EVP_PKEY_verify_init(ctx), 1);
	ok = EVP_PKEY_verify(ctx, sig, siglen, digest, dlen);
	EVP_PKEY_CTX_free(ctx);
	return ok;
}

static int setup(void **state)
{
	const char *d = tu_tmpdir("signer");

	(void)state;
	if (!d)
		return -1;
	snprintf(dir, sizeof(dir), "%s", d);
	/* The file backend warns on open; keep the test output quiet. */
	st_log_set_level(ST_LOG_ERR);
	return 0;
}

static int teardown(void **state)
{
	char cmd[4200];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void sign_and_verify_file(const char *curve, const char *mechanism)
{
	char path[4200], err[256];
	struct drv_signer_config cfg = { .backend = "file", .key = path, .mechanism = mechanism };
	struct drv_signer *signer = NULL;
	uint8_t data[100], digest[SHA256_DIGEST_LENGTH], sig[DRV_SIGNER_MAX_SIG];
	size_t siglen = 0;
	void *sess = NULL;
	EVP_PKEY *pub;

	path_in(path, sizeof(path), curve);
	write_ec_key(path, curve);
	assert_int_equal(drv_signer_open(&cfg, &signer, err, sizeof(err)), 0);
	assert_int_equal(signer->hashes, mechanism != NULL);
	assert_int_equal(drv_signer_session_open(signer, &sess, err, sizeof(err)), 0);
	RAND_bytes(data, sizeof(data));
	SHA256(data, sizeof(data), digest);
	if (signer->hashes)
		assert_int_equal(drv_signer_sign(signer, sess, data, sizeof(data), sig, &siglen, err,
						 sizeof(err)),
				 0);
	else
		assert_int_equal(drv_signer_sign(signer, sess, digest, sizeof(digest), sig, &siglen,
						 err, sizeof(err)),
				 0);
	assert_true(siglen > 8 && siglen <= DRV_SIGNER_MAX_SIG);
	assert_int_equal(sig[0], 0x30); /* DER SEQUENCE */
	pub = drv_signer_public_key(signer);
	assert_non_null(pub);
	assert_int_equal(verify(pub, digest, sizeof(digest), sig, siglen), 1);
	/* A different digest must not verify: the check above is not vacuous. */
	digest[0] ^= 1;
	assert_int_not_equal(verify(pub, digest, sizeof(digest), sig, siglen), 1);
	EVP_PKEY_free(pub);
	drv_signer_session_close(signer, sess);
	drv_signer_close(signer);
}

static void test_file_p256(void **state)
{
	(void)state;
	sign_and_verify_file("prime256v1", NULL);
}

static void test_file_p384(void **state)
{
	(void)state;
	sign_and_verify_file("secp384r1", NULL);
}

static void test_file_sha256_mechanism(void **state)
{
	(void)state;
	sign_and_verify_file("prime256v1", "ECDSA-SHA256");
}

/* The public key handed out carries no private part. */
static void test_file_public_only(void **state)
{
	char path[4200], err[256];
	struct drv_signer_config cfg = { .backend = "file", .key = path };
	struct drv_signer *signer = NULL;
	BIGNUM *priv = NULL;
	EVP_PKEY *pub;

	(void)state;
	path_in(path, sizeof(path), "pubonly.pem");
	write_ec_key(path, "prime256v1");
	assert_int_equal(drv_signer_open(&cfg, &signer, err, sizeof(err)), 0);
	pub = drv_signer_public_key(signer);
	assert_non_null(pub);
	assert_int_equal(EVP_PKEY_get_bn_param(pub, "priv", &priv), 0);
	assert_null(priv);
	EVP_PKEY_free(pub);
	drv_signer_close(signer);
}

static void expect_open_error(const struct drv_signer_config *cfg, int code, const char *needle)
{
	struct drv_signer *signer = (struct drv_signer *)1;
	char err[512] = "";

	int rc;

	rc = drv_signer_open(cfg, &signer, err, sizeof(err));
	if (rc != code)
		fail_msg("open returned %s (%s), expected %s", st_errname(rc), err,
			 st_errname(code));
	assert_null(signer);
	if (!strstr(err, needle))
		fail_msg("error \"%s\" does not mention \"%s\"", err, needle);
}

static void test_file_errors(void **state)
{
	char missing[4200], notkey[4200], rsa[4200], p521[4200];
	struct drv_signer_config cfg = { .backend = "file" };
	EVP_PKEY *key;

	(void)state;
	path_in(missing, sizeof(missing), "no-such-key.pem");
	cfg.key = missing;
	expect_open_error(&cfg, ST_E_SIGNER_KEY, "no-such-key.pem");

	path_in(notkey, sizeof(notkey), "notkey.pem");
	write_text(notkey, "this is not a key\n", 0600);
	cfg.key = notkey;
	expect_open_error(&cfg, ST_E_SIGNER_KEY, "no unencrypted PEM private key");

	path_in(rsa, sizeof(rsa), "rsa.pem");
	key = EVP_RSA_gen(1024);
	assert_non_null(key);
	write_key(rsa, key);
	EVP_PKEY_free(key);
	cfg.key = rsa;
	expect_open_error(&cfg, ST_E_SIGNER_KEY, "rsaEncryption");

	path_in(p521, sizeof(p521), "p521.pem");
	write_ec_key(p521, "secp521r1");
	cfg.key = p521;
	expect_open_error(&cfg, ST_E_SIGNER_KEY, "secp521r1");

	cfg.key = missing;
	cfg.mechanism = "RSA-PSS";
	expect_open_error(&cfg, ST_E_SIGNER_MECH, "ECDSA-SHA256");
}

static void test_unknown_backend(void **state)
{
	struct drv_signer_config cfg = { .backend = "tpm", .key = "x" };

	(void)state;
	expect_open_error(&cfg, ST_E_SIGNER_UNKNOWN, "\"tpm\"");
	expect_open_error(&cfg, ST_E_SIGNER_UNKNOWN, "known backends: pkcs11, file");
}

static void test_read_pin(void **state)
{
	char path[4200], pin[DRV_SIGNER_MAX_PIN + 1], err[256], big[DRV_SIGNER_MAX_PIN + 10];

	(void)state;
	path_in(path, sizeof(path), "pin");
	write_text(path, "1234\nsecond line\n", 0600);
	assert_int_equal(drv_signer_read_pin(path, NULL, pin, sizeof(pin), err, sizeof(err)), 0);
	assert_string_equal(pin, "1234");

	write_text(path, "9876\r\n", 0600);
	assert_int_equal(drv_signer_read_pin(path, "UNUSED", pin, sizeof(pin), err, sizeof(err)),
			 0);
	assert_string_equal(pin, "9876");

	write_text(path, "", 0600);
	assert_int_equal(drv_signer_read_pin(path, NULL, pin, sizeof(pin), err, sizeof(err)),
			 ST_E_SIGNER_NOPIN);
	assert_non_null(strstr(err, "empty"));

	memset(big, '7', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	write_text(path, big, 0600);
	assert_int_equal(drv_signer_read_pin(path, NULL, pin, sizeof(pin), err, sizeof(err)),
			 ST_E_INVAL);
	assert_null(strstr(err, "7777"));

	path_in(path, sizeof(path), "no-pin-file");
	assert_int_equal(drv_signer_read_pin(path, NULL, pin, sizeof(pin), err, sizeof(err)),
			 ST_E_SIGNER_NOPIN);
	assert_non_null(strstr(err, "no-pin-file"));

	setenv("ST_TEST_PIN", "4321", 1);
	assert_int_equal(drv_signer_read_pin(NULL, "ST_TEST_PIN", pin, sizeof(pin), err,
					     sizeof(err)),
			 0);
	assert_string_equal(pin, "4321");
	unsetenv("ST_TEST_PIN");
	assert_int_equal(drv_signer_read_pin(NULL, "ST_TEST_PIN", pin, sizeof(pin), err,
					     sizeof(err)),
			 ST_E_SIGNER_NOPIN);
	assert_non_null(strstr(err, "ST_TEST_PIN"));
	assert_int_equal(drv_signer_read_pin(NULL, NULL, pin, sizeof(pin), err, sizeof(err)),
			 ST_E_SIGNER_NOPIN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_file_p256),
		cmocka_unit_test(test_file_p384),
		cmocka_unit_test(test_file_sha256_mechanism),
		cmocka_unit_test(test_file_public_only),
		cmocka_unit_test(test_file_errors),
		cmocka_unit_test(test_unknown_backend),
		cmocka_unit_test(test_read_pin),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
