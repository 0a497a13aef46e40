/* The pkcs11 signer backend against the real SoftHSM2 module: every test makes its own token
 * in its own temp dir (SOFTHSM2_CONF), through drv_pkcs11_init_token, with PINs in files. */
#include <dlfcn.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include <p11-kit/pkcs11.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "err.h"
#include "log.h"
#include "signer.h"
#include "testutil.h"

#define MODULE "/usr/lib/softhsm/libsofthsm2.so"
#define TOKEN "station-test"

struct fixture {
	char dir[4096];
	char conf[4200];
	char pin_file[4200];
	char so_pin_file[4200];
	char uri[8400];
};

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	chmod(path, 0600);
}

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	char pin[DRV_SIGNER_MAX_PIN + 1], so_pin[DRV_SIGNER_MAX_PIN + 1], err[512];
	char tokens[4200];
	const char *d = tu_tmpdir("signer-p11");
	FILE *f;
	int rc;

	if (!fx || !d)
		return -1;
	snprintf(fx->dir, sizeof(fx->dir), "%s", d);
	snprintf(fx->conf, sizeof(fx->conf), "%s/softhsm2.conf", fx->dir);
	snprintf(fx->pin_file, sizeof(fx->pin_file), "%s/user.pin", fx->dir);
	snprintf(fx->so_pin_file, sizeof(fx->so_pin_file), "%s/so.pin", fx->dir);
	snprintf(fx->uri, sizeof(fx->uri), "pkcs11:token=%s;object=ca?module-path=%s", TOKEN,
		 MODULE);
	snprintf(tokens, sizeof(tokens), "%s/tokens", fx->dir);
	if (mkdir(tokens, 0700) != 0)
		return -1;
	f = fopen(fx->conf, "w");
	if (!f)
		return -1;
	fprintf(f, "directories.tokendir = %s/tokens\nobjectstore.backend = file\n"
		   "log.level = ERROR\n", fx->dir);
	fclose(f);
	setenv("SOFTHSM2_CONF", fx->conf, 1);
	write_text(fx->pin_file, "4711-user\n");
	write_text(fx->so_pin_file, "0815-security-officer\n");

	/* As `station ca init` would: PINs from files, never from argv. */
	if (drv_signer_read_pin(fx->pin_file, NULL, pin, sizeof(pin), err, sizeof(err)) < 0 ||
	    drv_signer_read_pin(fx->so_pin_file, NULL, so_pin, sizeof(so_pin), err,
				sizeof(err)) < 0)
		return -1;
	rc = drv_pkcs11_init_token(MODULE, TOKEN, so_pin, pin, err, sizeof(err));
	OPENSSL_cleanse(pin, sizeof(pin));
	OPENSSL_cleanse(so_pin, sizeof(so_pin));
	if (rc < 0) {
		fprintf(stderr, "token init: %s\n", err);
		return -1;
	}
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	int rc;

	unsetenv("STATION_TEST_FAIL");
	rc = tu_rmtree(fx->dir);
	free(fx);
	return rc == 0 ? 0 : -1;
}

static struct drv_signer_config config(struct fixture *fx)
{
	return (struct drv_signer_config){
		.backend = "pkcs11",
		.key = fx->uri,
		.pin_file = fx->pin_file,
	};
}

static void generate(struct fixture *fx, const char *curve)
{
	struct drv_signer_config cfg = config(fx);
	char err[512] = "";
	int rc;

	rc = drv_pkcs11_generate_ec_key(&cfg, curve, err, sizeof(err));
	if (rc != 0)
		fail_msg("generate: %s: %s", st_errname(rc), err);
}

static struct drv_signer *open_ok(const struct drv_signer_config *cfg)
{
	struct drv_signer *signer = NULL;
	char err[512] = "";
	int rc;

	rc = drv_signer_open(cfg, &signer, err, sizeof(err));
	if (rc != 0)
		fail_msg("open: %s: %s", st_errname(rc), err);
	return signer;
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
	/* No PIN from the fixture ever shows up in a message. */
	assert_null(strstr(err, "4711"));
}

static int verify(EVP_PKEY *pub, const uint8_t *digest, size_t dlen, const uint8_t *sig,
		  size_t siglen)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pub, NULL);
	int ok = 0;

	if (ctx && EVP_PKEY_verify_init(ctx) == 1)
		ok = EVP_PKEY_verify(ctx, sig, siglen, digest, dlen) == 1;
	EVP_PKEY_CTX_free(ctx);
	return ok;
}

/* Signs a fresh random digest on sess and checks it against the public key. */
static void sign_verify(struct drv_signer *signer, void *sess, EVP_PKEY *pub)
{
	uint8_t digest[SHA256_DIGEST_LENGTH], sig[DRV_SIGNER_MAX_SIG];
	size_t siglen = 0;
	char err[512] = "";
	int rc;

	RAND_bytes(digest, sizeof(digest));
	rc = drv_signer_sign(signer, sess, digest, sizeof(digest), sig, &siglen, err, sizeof(err));
	if (rc != 0)
		fail_msg("sign: %s: %s", st_errname(rc), err);
	assert_int_equal(sig[0], 0x30);
	assert_true(verify(pub, digest, sizeof(digest), sig, siglen));
}

static void *session_ok(struct drv_signer *signer)
{
	char err[512] = "";
	void *sess = NULL;
	int rc;

	rc = drv_signer_session_open(signer, &sess, err, sizeof(err));
	if (rc != 0)
		fail_msg("session: %s: %s", st_errname(rc), err);
	return sess;
}

static void sign_with_curve(struct fixture *fx, const char *curve, int bits)
{
	struct drv_signer_config cfg = config(fx);
	struct drv_signer *signer;
	EVP_PKEY *pub;
	void *sess;
	int i;

	generate(fx, curve);
	signer = open_ok(&cfg);
	assert_int_equal(signer->hashes, 0);
	pub = drv_signer_public_key(signer);
	assert_non_null(pub);
	assert_int_equal(EVP_PKEY_get_bits(pub), bits);
	sess = session_ok(signer);
	for (i = 0; i < 10; i++)
		sign_verify(signer, sess, pub);
	drv_signer_session_close(signer, sess);
	EVP_PKEY_free(pub);
	drv_signer_close(signer);
}

static void test_generate_sign_p256(void **state)
{
	sign_with_curve(*state, NULL, 256);
}

static void test_generate_sign_p384(void **state)
{
	sign_with_curve(*state, "secp384r1", 384);
}

static void test_generate_exists(void **state)
{
	struct fixture *fx = *state;
	struct drv_signer_config cfg = config(fx);
	char err[512] = "";

	generate(fx, "prime256v1");
	assert_int_equal(drv_pkcs11_generate_ec_key(&cfg, NULL, err, sizeof(err)), ST_E_EXISTS);
	assert_non_null(strstr(err, "\"ca\""));
	assert_int_equal(drv_pkcs11_generate_ec_key(&cfg, "secp256k1", err, sizeof(err)),
			 ST_E_INVAL);
	assert_non_null(strstr(err, "secp256k1"));
}

static void test_init_token_exists(void **state)
{
	char err[512] = "";

	(void)state;
	assert_int_equal(drv_pkcs11_init_token(MODULE, TOKEN, "0815-so", "4711-user", err,
					       sizeof(err)),
			 ST_E_EXISTS);
	assert_non_null(strstr(err, TOKEN));
	assert_null(strstr(err, "4711"));
}

/* Key lookup by CKA_ID alone, and with both label and id. */
static void test_find_by_id(void **state)
{
	struct fixture *fx = *state;
	struct drv_signer_config cfg = config(fx);
	struct drv_signer *signer;
	uint8_t id[SHA256_DIGEST_LENGTH];
	char uri[8400], idpct[40] = "";
	int i;

	snprintf(fx->uri, sizeof(fx->uri), "pkcs11:token=%s;object=ca;id=%%01%%02?module-path=%s",
		 TOKEN, MODULE);
	generate(fx, NULL);
	snprintf(uri, sizeof(uri), "pkcs11:token=%s;id=%%01%%02?module-path=%s", TOKEN, MODULE);
	cfg.key = uri;
	signer = open_ok(&cfg);
	drv_signer_close(signer);
	snprintf(uri, sizeof(uri), "pkcs11:token=%s;id=%%02%%01?module-path=%s", TOKEN, MODULE);
	expect_open_error(&cfg, ST_E_SIGNER_KEY, "id 0201");

	/* Without id= in the URI, generate derives it from the label (SHA-256, 8 bytes). */
	snprintf(fx->uri, sizeof(fx->uri), "pkcs11:token=%s;object=other?module-path=%s", TOKEN,
		 MODULE);
	generate(fx, NULL);
	SHA256((const unsigned char *)"other", 5, id);
	for (i = 0; i < 8; i++)
		snprintf(idpct + 3 * i, 4, "%%%02x", id[i]);
	snprintf(uri, sizeof(uri), "pkcs11:token=%s;id=%s?module-path=%s", TOKEN, idpct, MODULE);
	signer = open_ok(&cfg);
	drv_signer_close(signer);
}

struct worker {
	struct drv_signer *signer;
	EVP_PKEY *pub;
	int count;
	int signed_ok;
	int verified;
	int rc;
	char err[512];
};

static void *worker_main(void *p)
{
	struct worker *w = p;
	uint8_t digest[SHA256_DIGEST_LENGTH], sig[DRV_SIGNER_MAX_SIG];
	size_t siglen;
	void *sess = NULL;
	int i;

	w->rc = drv_signer_session_open(w->signer, &sess, w->err, sizeof(w->err));
	if (w->rc < 0)
		return NULL;
	for (i = 0; i < w->count; i++) {
		RAND_bytes(digest, sizeof(digest));
		w->rc = drv_signer_sign(w->signer, sess, digest, sizeof(digest), sig, &siglen,
					w->err, sizeof(w->err));
		if (w->rc < 0)
			break;
		w->signed_ok++;
		w->verified += verify(w->pub, digest, sizeof(digest), sig, siglen);
	}
	drv_signer_session_close(w->signer, sess);
	return NULL;
}

/* Several threads, each with its own session; with finalize set, the main thread pulls the
 * module's state away while they sign, and every signature must still come out right. */
static void run_threads(struct fixture *fx, int nthreads, int count, int finalize)
{
	struct drv_signer_config cfg = config(fx);
	struct worker w[8];
	pthread_t th[8];
	struct drv_signer *signer;
	EVP_PKEY *pub;
	int i;

	generate(fx, NULL);
	signer = open_ok(&cfg);
	pub = drv_signer_public_key(signer);
	assert_non_null(pub);
	for (i = 0; i < nthreads; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].signer = signer;
		w[i].pub = pub;
		w[i].count = count;
		assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
	}
	if (finalize)
		drv_pkcs11_test_finalize(signer);
	for (i = 0; i < nthreads; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		if (w[i].rc != 0)
			fail_msg("thread %d: %s: %s", i, st_errname(w[i].rc), w[i].err);
		assert_int_equal(w[i].signed_ok, count);
		assert_int_equal(w[i].verified, count);
	}
	EVP_PKEY_free(pub);
	drv_signer_close(signer);
}

static void test_threads(void **state)
{
	run_threads(*state, 4, 500, 0);
}

static void test_threads_module_reset(void **state)
{
	run_threads(*state, 4, 200, 1);
}

static void test_session_dropped(void **state)
{
	struct fixture *fx = *state;
	struct drv_signer_config cfg = config(fx);
	struct drv_signer *signer;
	void *s1, *s2;
	EVP_PKEY *pub;

	generate(fx, NULL);
	signer = open_ok(&cfg);
	pub = drv_signer_public_key(signer);
	s1 = session_ok(signer);
	s2 = session_ok(signer);
	sign_verify(signer, s1, pub);
	drv_pkcs11_test_drop_session(s1);
	sign_verify(signer, s1, pub); /* recovers */
	sign_verify(signer, s2, pub); /* never noticed */
	drv_pkcs11_test_drop_session(s1);
	drv_pkcs11_test_drop_session(s2);
	sign_verify(signer, s2, pub);
	sign_verify(signer, s1, pub);
	drv_signer_session_close(signer, s1);
	drv_signer_session_close(signer, s2);
	EVP_PKEY_free(pub);
	drv_signer_close(signer);
}

/* The login's anchor session is lent to the first worker session, so N worker sessions hold
 * N PKCS#11 sessions (an HSM allowing S sessions signs on all S), and losing the lent anchor
 * logs in again on a new one. */
static void test_anchor_lent(void **state)
{
	struct fixture *fx = *state;
	struct drv_signer_config cfg = config(fx);
	struct drv_signer *signer;
	void *s1, *s2, *s3, *s4;
	EVP_PKEY *pub;
	long base;
	unsigned long logins;

	generate(fx, NULL);
	base = drv_pkcs11_test_open_sessions();
	signer = open_ok(&cfg);
	pub = drv_signer_public_key(signer);
	assert_int_equal(drv_pkcs11_test_open_sessions() - base, 1);
	s1 = session_ok(signer);
	assert_int_equal(drv_pkcs11_test_open_sessions() - base, 1);
	s2 = session_ok(signer);
	s3 = session_ok(signer);
	assert_int_equal(drv_pkcs11_test_open_sessions() - base, 3);
	sign_verify(signer, s1, pub);
	sign_verify(signer, s2, pub);
	/* Closing the borrower keeps the anchor (and the login) for the next one. */
	drv_signer_session_close(signer, s1);
	assert_int_equal(drv_pkcs11_test_open_sessions() - base, 3);
	s4 = session_ok(signer);
	assert_int_equal(drv_pkcs11_test_open_sessions() - base, 3);
	sign_verify(signer, s4, pub);
	/* The lent anchor dies: its borrower logs in again on a new anchor. */
	logins = drv_pkcs11_test_login_calls();
	drv_pkcs11_test_drop_session(s4);
	sign_verify(signer, s4, pub);
	assert_int_equal(drv_pkcs11_test_login_calls() - logins, 1);
	assert_int_equal(drv_pkcs11_test_open_sessions() - base, 3);
	sign_verify(signer, s2, pub);
	sign_verify(signer, s3, pub);
	/* Every session dies (the token logs the application out): all recover, still 3. */
	drv_pkcs11_test_drop_session(s2);
	drv_pkcs11_test_drop_session(s3);
	drv_pkcs11_test_drop_session(s4);
	sign_verify(signer, s3, pub);
	sign_verify(signer, s4, pub);
	sign_verify(signer, s2, pub);
	assert_int_equal(drv_pkcs11_test_open_sessions() - base, 3);
	drv_signer_session_close(signer, s2);
	drv_signer_session_close(signer, s3);
	drv_signer_session_close(signer, s4);
	assert_int_equal(drv_pkcs11_test_open_sessions() - base, 1);
	EVP_PKEY_free(pub);
	drv_signer_close(signer);
	assert_int_equal(drv_pkcs11_test_open_sessions() - base, 0);
}

static void test_module_reset(void **state)
{
	struct fixture *fx = *state;
	struct drv_signer_config cfg = config(fx);
	struct drv_signer *signer;
	void *s1, *s2;
	EVP_PKEY *pub;

	generate(fx, NULL);
	signer = open_ok(&cfg);
	pub = drv_signer_public_key(signer);
	s1 = session_ok(signer);
	s2 = session_ok(signer);
	sign_verify(signer, s1, pub);
	drv_pkcs11_test_finalize(signer);
	sign_verify(signer, s1, pub); /* reinitialises the module, logs in again */
	sign_verify(signer, s2, pub); /* reopens its session in the new generation */
	drv_pkcs11_test_finalize(signer);
	drv_signer_session_close(signer, s2); /* closing a dead session is harmless */
	sign_verify(signer, s1, pub);
	drv_signer_session_close(signer, s1);
	/* A session opened while the module is down recovers too. */
	drv_pkcs11_test_finalize(signer);
	s1 = session_ok(signer);
	sign_verify(signer, s1, pub);
	drv_signer_session_close(signer, s1);
	EVP_PKEY_free(pub);
	drv_signer_close(signer);
}

/* The STATION_TEST_FAIL hook lets the station binary exercise the same recovery, in a build
 * with the test hooks; in any other build the variable changes nothing. */
static void test_env_fault_hook(void **state)
{
	struct fixture *fx = *state;
	struct drv_signer_config cfg = config(fx);
	static const char *const hooks[] = { "signer.drop_session:3", "signer.finalize:2",
					     "signer.drop_session" };
	struct drv_signer *signer;
	unsigned long logins;
	EVP_PKEY *pub;
	void *sess;
	size_t h;
	int i;

	generate(fx, NULL);
	for (h = 0; h < sizeof(hooks) / sizeof(hooks[0]); h++) {
		setenv("STATION_TEST_FAIL", hooks[h], 1);
		signer = open_ok(&cfg);
		pub = drv_signer_public_key(signer);
		sess = session_ok(signer);
		for (i = 0; i < 5; i++)
			sign_verify(signer, sess, pub);
		drv_signer_session_close(signer, sess);
		EVP_PKEY_free(pub);
		drv_signer_close(signer);
	}

	/* A module reset before the first signature makes the signer log in again: that is
	 * how the hook shows, or not. */
	setenv("STATION_TEST_FAIL", "signer.finalize:1", 1);
	signer = open_ok(&cfg);
	pub = drv_signer_public_key(signer);
	sess = session_ok(signer);
	logins = drv_pkcs11_test_login_calls();
	for (i = 0; i < 3; i++)
		sign_verify(signer, sess, pub);
#ifdef STATION_TEST_HOOKS
	assert_true(drv_pkcs11_test_login_calls() > logins);
#else
	assert_int_equal(drv_pkcs11_test_login_calls(), logins);
#endif
	drv_signer_session_close(signer, sess);
	EVP_PKEY_free(pub);
	drv_signer_close(signer);
}

static void test_wrong_pin(void **state)
{
	struct fixture *fx = *state;
	struct drv_signer_config cfg = config(fx);
	char bad[4200];
	unsigned long before;
	struct drv_signer *signer;

	generate(fx, NULL);
	snprintf(bad, sizeof(bad), "%s/bad.pin", fx->dir);
	write_text(bad, "9999-wrong\n");
	cfg.pin_file = bad;
	before = drv_pkcs11_test_login_calls();
	expect_open_error(&cfg, ST_E_SIGNER_PIN, "CKR_PIN_INCORRECT");
	/* Exactly one try: a retry loop would lock a real token. */
	assert_int_equal(drv_pkcs11_test_login_calls() - before, 1);
	/* The token is not locked: the right PIN still works. */
	cfg.pin_file = fx->pin_file;
	signer = open_ok(&cfg);
	drv_signer_close(signer);

	/* The PIN from the environment works the same way. */
	cfg.pin_file = NULL;
	cfg.pin_env = "ST_TEST_SIGNER_PIN";
	setenv("ST_TEST_SIGNER_PIN", "4711-user", 1);
	signer = open_ok(&cfg);
	drv_signer_close(signer);
	/* Read once, then out of the environment; a signer opened later still has it. */
	assert_null(getenv("ST_TEST_SIGNER_PIN"));
	signer = open_ok(&cfg);
	drv_signer_close(signer);
	cfg.pin_env = "ST_TEST_SIGNER_PIN_UNSET";
	expect_open_error(&cfg, ST_E_SIGNER_NOPIN, "ST_TEST_SIGNER_PIN_UNSET");
	cfg.pin_env = NULL;
	expect_open_error(&cfg, ST_E_SIGNER_NOPIN, "no PIN source");
}

static void test_config_errors(void **state)
{
	struct fixture *fx = *state;
	struct drv_signer_config cfg = config(fx);
	char uri[8400];

	generate(fx, NULL);
	cfg.key = uri;

	snprintf(uri, sizeof(uri), "pkcs11:token=nosuch;object=ca?module-path=%s", MODULE);
	expect_open_error(&cfg, ST_E_SIGNER_TOKEN, "token \"nosuch\" not found");
	expect_open_error(&cfg, ST_E_SIGNER_TOKEN, "\"" TOKEN "\""); /* lists what is there */

	snprintf(uri, sizeof(uri), "pkcs11:token=%s;object=nosuch?module-path=%s", TOKEN, MODULE);
	expect_open_error(&cfg, ST_E_SIGNER_KEY, "key \"nosuch\"");

	snprintf(uri, sizeof(uri), "pkcs11:token=%s;object=ca;pin-value=4711-user?module-path=%s",
		 TOKEN, MODULE);
	expect_open_error(&cfg, ST_E_SIGNER_URI, "PIN in URI not allowed; use a PIN file");
	snprintf(uri, sizeof(uri), "pkcs11:token=%s;object=ca?pin-value=4711-user&module-path=%s",
		 TOKEN, MODULE);
	expect_open_error(&cfg, ST_E_SIGNER_URI, "PIN in URI not allowed");

	snprintf(uri, sizeof(uri), "pkcs11:token=%%zz;object=ca?module-path=%s", MODULE);
	expect_open_error(&cfg, ST_E_SIGNER_URI, "bad PKCS#11 URI");
	expect_open_error(&(struct drv_signer_config){ .backend = "pkcs11", .key = "/etc/ca.pem",
						       .pin_file = fx->pin_file },
			  ST_E_SIGNER_URI, "must start with \"pkcs11:\"");
	snprintf(uri, sizeof(uri), "pkcs11:token=%s;objekt=ca?module-path=%s", TOKEN, MODULE);
	expect_open_error(&cfg, ST_E_SIGNER_URI, "attribute this station does not know");
	snprintf(uri, sizeof(uri), "pkcs11:object=ca?module-path=%s", MODULE);
	expect_open_error(&cfg, ST_E_SIGNER_URI, "names no token");
	snprintf(uri, sizeof(uri), "pkcs11:token=%s?module-path=%s", TOKEN, MODULE);
	expect_open_error(&cfg, ST_E_SIGNER_URI, "names no key");

	snprintf(uri, sizeof(uri), "pkcs11:token=%s;object=ca", TOKEN);
	expect_open_error(&cfg, ST_E_SIGNER_MODULE, "module-path");
	snprintf(uri, sizeof(uri), "pkcs11:token=%s;object=ca?module-path=/nonexistent/p11.so",
		 TOKEN);
	expect_open_error(&cfg, ST_E_SIGNER_MODULE, "/nonexistent/p11.so");
	snprintf(uri, sizeof(uri), "pkcs11:token=%s;object=ca?module-path=libc.so.6", TOKEN);
	expect_open_error(&cfg, ST_E_SIGNER_MODULE, "no C_GetFunctionList");

	snprintf(uri, sizeof(uri), "pkcs11:token=%s;object=ca?module-path=%s", TOKEN, MODULE);
	cfg.backend = "hsm";
	expect_open_error(&cfg, ST_E_SIGNER_UNKNOWN, "known backends: pkcs11, file");
	cfg.backend = "pkcs11";
	cfg.mechanism = "ECDSA-SHA1";
	expect_open_error(&cfg, ST_E_SIGNER_MECH, "ECDSA-SHA256");
}

/* Asks the module itself (not the signer) whether the token offers a mechanism for signing,
 * so that the signer's answer is checked, not trusted. */
static int token_has_mech(CK_MECHANISM_TYPE mech)
{
	CK_RV (*get_list)(CK_FUNCTION_LIST_PTR_PTR);
	CK_FUNCTION_LIST *f = NULL;
	CK_SLOT_ID slots[16];
	CK_ULONG n = 16, i;
	CK_TOKEN_INFO ti;
	CK_MECHANISM_TYPE mechs[256];
	CK_ULONG nm, j;
	void *dl;
	int found = 0;

	dl = dlopen(MODULE, RTLD_NOW | RTLD_LOCAL);
	assert_non_null(dl);
	*(void **)&get_list = dlsym(dl, "C_GetFunctionList");
	assert_non_null(get_list);
	assert_int_equal(get_list(&f), CKR_OK);
	assert_int_equal(f->C_Initialize(NULL), CKR_OK);
	assert_int_equal(f->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
	for (i = 0; i < n; i++) {
		if (f->C_GetTokenInfo(slots[i], &ti) != CKR_OK ||
		    strncmp((const char *)ti.label, TOKEN " ", sizeof(TOKEN)) != 0)
			continue;
		nm = 256;
		assert_int_equal(f->C_GetMechanismList(slots[i], mechs, &nm), CKR_OK);
		for (j = 0; j < nm; j++)
			found |= mechs[j] == mech;
	}
	f->C_Finalize(NULL);
	dlclose(dl);
	return found;
}

static void test_ecdsa_sha256(void **state)
{
	struct fixture *fx = *state;
	struct drv_signer_config cfg = config(fx);
	uint8_t data[300], digest[SHA256_DIGEST_LENGTH], sig[DRV_SIGNER_MAX_SIG];
	struct drv_signer *signer;
	size_t siglen = 0;
	char err[512] = "";
	EVP_PKEY *pub;
	void *sess;

	generate(fx, NULL);
	cfg.mechanism = "ECDSA-SHA256";
	if (!token_has_mech(CKM_ECDSA_SHA256)) {
		/* The signer must say so clearly rather than fail at the first signature. */
		expect_open_error(&cfg, ST_E_SIGNER_MECH, "CKM_ECDSA_SHA256");
		print_message("SoftHSM2 offers no CKM_ECDSA_SHA256: skipping the signing part\n");
		skip();
	}
	signer = open_ok(&cfg);
	assert_int_equal(signer->hashes, 1);
	pub = drv_signer_public_key(signer);
	sess = session_ok(signer);
	RAND_bytes(data, sizeof(data));
	assert_int_equal(drv_signer_sign(signer, sess, data, sizeof(data), sig, &siglen, err,
					 sizeof(err)),
			 0);
	SHA256(data, sizeof(data), digest);
	assert_true(verify(pub, digest, sizeof(digest), sig, siglen));
	drv_signer_session_close(signer, sess);
	EVP_PKEY_free(pub);
	drv_signer_close(signer);
}

/* tests/lib/softhsm.sh, which integration tests and the demo source, makes a token this
 * signer can use; the PIN it generates reaches p11tool through the environment only. */
static void test_shell_helper(void **state)
{
	const char *src = getenv("SOURCE_DIR");
	struct fixture fx;
	struct drv_signer_config cfg;
	struct drv_signer *signer;
	struct stat st;
	char cmd[4300];
	EVP_PKEY *pub;
	void *sess;
	const char *d;

	(void)state;
	if (!src || system("command -v p11tool >/dev/null") != 0) {
		print_message("no SOURCE_DIR or no p11tool: skipping\n");
		skip();
	}
	d = tu_tmpdir("signer-sh");
	assert_non_null(d);
	memset(&fx, 0, sizeof(fx));
	snprintf(fx.dir, sizeof(fx.dir), "%s", d);
	snprintf(fx.pin_file, sizeof(fx.pin_file), "%s/hsm/user.pin", fx.dir);
	snprintf(fx.conf, sizeof(fx.conf), "%s/hsm/softhsm2.conf", fx.dir);
	snprintf(fx.uri, sizeof(fx.uri), "pkcs11:token=helper;object=ca?module-path=%s", MODULE);
	snprintf(cmd, sizeof(cmd), "%s/hsm", fx.dir);
	setenv("ST_T_SRC", src, 1);
	setenv("ST_T_HSM", cmd, 1);
	setenv("ST_T_PIN", fx.pin_file, 1);
	setenv("ST_T_CONF", fx.conf, 1);
	/* Makes the token, exports SOFTHSM2_CONF, and refuses a second token of that label. */
	snprintf(cmd, sizeof(cmd), "%s",
		 "bash -c '. \"$ST_T_SRC/tests/lib/softhsm.sh\" && "
		 "softhsm_init_token \"$ST_T_HSM\" helper \"$ST_T_PIN\" && "
		 "[ \"$SOFTHSM2_CONF\" = \"$ST_T_CONF\" ] && "
		 "! softhsm_init_token \"$ST_T_HSM\" helper \"$ST_T_PIN\" 2>/dev/null'");
	assert_int_equal(system(cmd), 0);
	assert_int_equal(stat(fx.pin_file, &st), 0);
	assert_int_equal(st.st_mode & 077, 0);
	setenv("SOFTHSM2_CONF", fx.conf, 1);
	cfg = config(&fx);
	generate(&fx, NULL);
	signer = open_ok(&cfg);
	pub = drv_signer_public_key(signer);
	sess = session_ok(signer);
	sign_verify(signer, sess, pub);
	drv_signer_session_close(signer, sess);
	EVP_PKEY_free(pub);
	drv_signer_close(signer);
	assert_int_equal(tu_rmtree(fx.dir), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_generate_sign_p256, setup, teardown),
		cmocka_unit_test_setup_teardown(test_generate_sign_p384, setup, teardown),
		cmocka_unit_test_setup_teardown(test_generate_exists, setup, teardown),
		cmocka_unit_test_setup_teardown(test_init_token_exists, setup, teardown),
		cmocka_unit_test_setup_teardown(test_find_by_id, setup, teardown),
		cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_threads_module_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_session_dropped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_module_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_anchor_lent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_env_fault_hook, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_pin, setup, teardown),
		cmocka_unit_test_setup_teardown(test_config_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ecdsa_sha256, setup, teardown),
		cmocka_unit_test(test_shell_helper),
	};

	/* Recovery and the file backend log warnings by design; keep the output to failures. */
	st_log_set_level(ST_LOG_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
