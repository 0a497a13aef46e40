/* Signer front end and the file backend: real keys written to a temp dir, real OpenSSL. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/crypto.h>
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
	(void)state;
	return tu_rmtree(dir);
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

/* In a forked child that has read no PIN yet: whether reading one (how != 0) or opening a
 * file signer (how == 0) leaves the process with RLIMIT_CORE 0 and not dumpable. The exit
 * status says what was wrong. */
static int core_child(int how)
{
	char path[4200], pin[DRV_SIGNER_MAX_PIN + 1], err[512];
	struct drv_signer_config cfg = { .backend = "file", .key = path };
	struct drv_signer *signer = NULL;
	struct rlimit rl;

	/* Core files allowed as far as the hard limit lets: the change below is then seen. */
	if (getrlimit(RLIMIT_CORE, &rl) != 0)
		return 20;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_CORE, &rl) != 0 || prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 1)
		return 21; /* not a fresh process: this test must run first */
	if (how) {
		path_in(path, sizeof(path), "core-pin");
		write_text(path, "1234\n", 0600);
		if (drv_signer_read_pin(path, NULL, pin, sizeof(pin), err, sizeof(err)) != 0)
			return 22;
	} else {
		path_in(path, sizeof(path), "core-key");
		write_ec_key(path, "prime256v1");
		if (drv_signer_open(&cfg, &signer, err, sizeof(err)) != 0)
			return 23;
		drv_signer_close(signer);
	}
	if (getrlimit(RLIMIT_CORE, &rl) != 0 || rl.rlim_cur != 0 || rl.rlim_max != 0)
		return 24;
	if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != DRV_SIGNER_KEEPS_DUMPABLE)
		return 25;
	return 0;
}

/* A process that has read a PIN or opened a signer writes no core file and, outside a
 * sanitizer build, is not dumpable (no ptrace or /proc/PID/mem for others of its user):
 * the PIN stays in memory for the process's life. Runs first, in children, so that neither
 * this process's limit nor its dumpable flag was changed by an earlier test. */
static void test_no_core_dumps(void **state)
{
	(void)state;
	for (int how = 0; how < 2; how++) {
		int status;
		pid_t pid = fork();

		assert_true(pid >= 0);
		if (pid == 0)
			_exit(core_child(how));
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFEXITED(status));
		if (WEXITSTATUS(status) != 0)
			fail_msg("%s: child exited %d (see core_child)",
				 how ? "drv_signer_read_pin" : "drv_signer_open", WEXITSTATUS(status));
	}
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
	/* Gone from the environment once read; later reads in the process still get it. */
	assert_null(getenv("ST_TEST_PIN"));
	assert_int_equal(drv_signer_read_pin(NULL, "ST_TEST_PIN", pin, sizeof(pin), err,
					     sizeof(err)),
			 0);
	assert_string_equal(pin, "4321");
	/* Set again, the new value counts (and leaves the environment too). */
	setenv("ST_TEST_PIN", "8765", 1);
	assert_int_equal(drv_signer_read_pin(NULL, "ST_TEST_PIN", pin, sizeof(pin), err,
					     sizeof(err)),
			 0);
	assert_string_equal(pin, "8765");
	assert_null(getenv("ST_TEST_PIN"));
	assert_int_equal(drv_signer_read_pin(NULL, "ST_TEST_PIN_UNSET", pin, sizeof(pin), err,
					     sizeof(err)),
			 ST_E_SIGNER_NOPIN);
	assert_non_null(strstr(err, "ST_TEST_PIN_UNSET"));
	setenv("ST_TEST_PIN_EMPTY", "", 1);
	assert_int_equal(drv_signer_read_pin(NULL, "ST_TEST_PIN_EMPTY", pin, sizeof(pin), err,
					     sizeof(err)),
			 ST_E_SIGNER_NOPIN);
	unsetenv("ST_TEST_PIN_EMPTY");
	/* An over-long PIN is refused, and still taken out of the environment. */
	setenv("ST_TEST_PIN_LONG", big, 1);
	assert_int_equal(drv_signer_read_pin(NULL, "ST_TEST_PIN_LONG", pin, sizeof(pin), err,
					     sizeof(err)),
			 ST_E_INVAL);
	assert_null(strstr(err, "7777"));
	assert_null(getenv("ST_TEST_PIN_LONG"));
	assert_int_equal(drv_signer_read_pin(NULL, NULL, pin, sizeof(pin), err, sizeof(err)),
			 ST_E_SIGNER_NOPIN);
}

/* A PIN file that group or others may read or write is refused, whatever the mix of bits;
 * the message names the file, its mode and the fix. Owner-only modes are accepted. */
static void test_pin_file_mode(void **state)
{
	static const mode_t refused[] = { 0640, 0604, 0644, 0660, 0606, 0620, 0602, 0610,
					  0601, 0666, 0440, 0404 };
	static const mode_t accepted[] = { 0600, 0400 };
	char path[4200], pin[DRV_SIGNER_MAX_PIN + 1], err[512], mode[16];

	(void)state;
	path_in(path, sizeof(path), "mode.pin");
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		write_text(path, "1234\n", 0600);
		assert_int_equal(chmod(path, refused[i]), 0);
		pin[0] = 'x';
		assert_int_equal(drv_signer_read_pin(path, NULL, pin, sizeof(pin), err,
						     sizeof(err)),
				 ST_E_SIGNER_NOPIN);
		assert_int_equal(pin[0], 0);
		snprintf(mode, sizeof(mode), "mode %04o", (unsigned)refused[i]);
		assert_non_null(strstr(err, path));
		assert_non_null(strstr(err, mode));
		assert_non_null(strstr(err, "chmod 600"));
		assert_null(strstr(err, "1234"));
	}
	for (size_t i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++) {
		write_text(path, "1234\n", 0600);
		assert_int_equal(chmod(path, accepted[i]), 0);
		assert_int_equal(drv_signer_read_pin(path, NULL, pin, sizeof(pin), err,
						     sizeof(err)),
				 0);
		assert_string_equal(pin, "1234");
	}
	assert_int_equal(chmod(path, 0600), 0);
}

/* A symbolic link is never followed to a PIN, whatever it points at (a private file, a
 * missing one); nor is anything but a regular file read. */
static void test_pin_file_link(void **state)
{
	char target[4200], link[4200], pin[DRV_SIGNER_MAX_PIN + 1], err[512];

	(void)state;
	path_in(target, sizeof(target), "target.pin");
	path_in(link, sizeof(link), "link.pin");
	write_text(target, "1234\n", 0600);
	unlink(link);
	assert_int_equal(symlink(target, link), 0);
	assert_int_equal(drv_signer_read_pin(link, NULL, pin, sizeof(pin), err, sizeof(err)),
			 ST_E_SIGNER_NOPIN);
	assert_non_null(strstr(err, link));
	assert_non_null(strstr(err, "symbolic link"));
	assert_null(strstr(err, "1234"));
	unlink(link);
	assert_int_equal(symlink("no-such-target", link), 0);
	assert_int_equal(drv_signer_read_pin(link, NULL, pin, sizeof(pin), err, sizeof(err)),
			 ST_E_SIGNER_NOPIN);
	assert_non_null(strstr(err, "symbolic link"));
	unlink(link);
	assert_int_equal(drv_signer_read_pin(dir, NULL, pin, sizeof(pin), err, sizeof(err)),
			 ST_E_SIGNER_NOPIN);
	assert_non_null(strstr(err, "not a regular file"));
}

#define CHILD_PIN_VAR "ST_TEST_CHILD_PIN"
#define CHILD_PIN "pin-in-the-initial-environment-5f0c1e"

/* Whether the bytes of needle occur in the file at path (read to its end: /proc files have
 * no size). */
static int file_holds(const char *path, const char *needle)
{
	char buf[65536];
	size_t len = 0;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	while (len < sizeof(buf) && (n = read(fd, buf + len, sizeof(buf) - len)) > 0)
		len += (size_t)n;
	close(fd);
	return memmem(buf, len, needle, strlen(needle)) != NULL;
}

/* Run in a child whose initial environment holds the PIN: reads it, then checks that neither
 * its own /proc/self/environ nor the environment of a process it starts holds it. Returns
 * the exit status (0: all is well). */
static int pin_env_child(void)
{
	char pin[DRV_SIGNER_MAX_PIN + 1], err[512], out[4200];
	char *argv[] = { "env", NULL };
	extern char **environ;
	int fd, status;
	pid_t pid;

	if (file_holds("/proc/self/environ", CHILD_PIN) != 1) {
		fprintf(stderr, "child: the PIN is not in the initial environment\n");
		return 10;
	}
	if (drv_signer_read_pin(NULL, CHILD_PIN_VAR, pin, sizeof(pin), err, sizeof(err)) != 0 ||
	    strcmp(pin, CHILD_PIN) != 0) {
		fprintf(stderr, "child: reading the PIN failed: %s\n", err);
		return 11;
	}
	if (getenv(CHILD_PIN_VAR)) {
		fprintf(stderr, "child: %s is still set\n", CHILD_PIN_VAR);
		return 12;
	}
	if (file_holds("/proc/self/environ", CHILD_PIN) != 0) {
		fprintf(stderr, "child: /proc/self/environ still shows the PIN\n");
		return 13;
	}
	path_in(out, sizeof(out), "child-env.txt");
	pid = fork();
	if (pid == 0) {
		fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd < 0 || dup2(fd, 1) < 0)
			_exit(127);
		execve("/usr/bin/env", argv, environ);
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0) {
		fprintf(stderr, "child: env did not run\n");
		return 14;
	}
	if (file_holds(out, CHILD_PIN) != 0 || file_holds(out, CHILD_PIN_VAR) != 0) {
		fprintf(stderr, "child: a process started after the read inherits the PIN\n");
		return 15;
	}
	OPENSSL_cleanse(pin, sizeof(pin));
	return 0;
}

/* The PIN in the environment of the process (as a service manager or a shell passes it) is
 * gone from everything that could show it to someone else once read. */
static void test_pin_env_removed(void **state)
{
	char *argv[] = { "test_signer", "--pin-env-child", dir, NULL };
	char *envp[] = { "PATH=/usr/bin:/bin", CHILD_PIN_VAR "=" CHILD_PIN, NULL };
	char exe[4200];
	ssize_t n;
	int status;
	pid_t pid;

	(void)state;
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	assert_true(n > 0);
	exe[n] = 0;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		execve(exe, argv, envp);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_core_dumps), /* first: see there */
		cmocka_unit_test(test_file_p256),
		cmocka_unit_test(test_file_p384),
		cmocka_unit_test(test_file_sha256_mechanism),
		cmocka_unit_test(test_file_public_only),
		cmocka_unit_test(test_file_errors),
		cmocka_unit_test(test_unknown_backend),
		cmocka_unit_test(test_read_pin),
		cmocka_unit_test(test_pin_file_mode),
		cmocka_unit_test(test_pin_file_link),
		cmocka_unit_test(test_pin_env_removed),
	};

	/* test_pin_env_removed runs this program again with the PIN in its environment. */
	if (argc == 3 && strcmp(argv[1], "--pin-env-child") == 0) {
		snprintf(dir, sizeof(dir), "%s", argv[2]);
		return pin_env_child();
	}

	return cmocka_run_group_tests(tests, setup, teardown);
}
