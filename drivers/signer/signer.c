/* Signer front end: picks a backend by name and holds what all backends share (PIN reading,
 * mechanism names, no core dumps). The backends themselves live in signer_<name>.c. */
#include "signer.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "err.h"
#include "join.h"
#include "log.h"

extern const struct drv_signer_ops drv_signer_pkcs11_ops;
extern const struct drv_signer_ops drv_signer_file_ops;

const struct drv_signer_ops *const drv_signer_backends[] = {
	&drv_signer_pkcs11_ops,
	&drv_signer_file_ops,
	NULL,
};

static const struct drv_signer_ops *find_backend(const char *name)
{
	size_t i;

	for (i = 0; drv_signer_backends[i]; i++) {
		if (strcmp(drv_signer_backends[i]->name, name) == 0)
			return drv_signer_backends[i];
	}
	return NULL;
}

static void known_backends(char *buf, size_t len)
{
	const char *names[8] = { NULL };

	for (size_t i = 0; drv_signer_backends[i] && i + 1 < 8; i++)
		names[i] = drv_signer_backends[i]->name;
	st_join(buf, len, names, "", "");
}

int drv_signer_parse_mechanism(const char *mechanism, int *hashes, char *err, size_t errlen)
{
	*hashes = 0;
	if (!mechanism || strcmp(mechanism, "ECDSA") == 0)
		return 0;
	if (strcmp(mechanism, "ECDSA-SHA256") == 0) {
		*hashes = 1;
		return 0;
	}
	return st_errf(err, errlen, ST_E_SIGNER_MECH,
		       "signer mechanism \"%s\" is unknown; expected ECDSA or ECDSA-SHA256",
		       mechanism);
}

/* The PIN (and a file signer's key) stays in this process's memory for its life: a core
 * dump would copy it to disk, and a process of the same user could read it through ptrace or
 * /proc/PID/mem. So no core file (RLIMIT_CORE 0, soft and hard: it cannot be raised again),
 * and the process is made not dumpable, which also closes ptrace and /proc/PID/mem to other
 * processes of its user. The prctl is left out of sanitizer builds only: LeakSanitizer
 * stops the process at exit through ptrace, which a process that is not dumpable refuses
 * where CAP_SYS_PTRACE is missing (containers); RLIMIT_CORE 0 holds in every build. */
int drv_signer_no_core_dumps(char *err, size_t errlen)
{
	const struct rlimit none = { 0, 0 };

	if (setrlimit(RLIMIT_CORE, &none) != 0)
		return st_errf(err, errlen, ST_E_IO, "cannot turn core dumps off: %s",
			       strerror(errno));
#if !DRV_SIGNER_KEEPS_DUMPABLE
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
		return st_errf(err, errlen, ST_E_IO, "cannot make the process not dumpable: %s",
			       strerror(errno));
#endif
	return 0;
}

int drv_signer_open(const struct drv_signer_config *cfg, struct drv_signer **out, char *err,
		    size_t errlen)
{
	const struct drv_signer_ops *ops;
	struct drv_signer *signer = NULL;
	char known[128];
	int hashes;
	int rc;

	*out = NULL;
	if (!cfg || !cfg->backend || !cfg->key)
		return st_errf(err, errlen, ST_E_INVAL,
			       "signer configuration needs a backend and a key");
	ops = find_backend(cfg->backend);
	if (!ops) {
		known_backends(known, sizeof(known));
		return st_errf(err, errlen, ST_E_SIGNER_UNKNOWN,
			       "signer backend \"%s\" is unknown; known backends: %s",
			       cfg->backend, known);
	}
	rc = drv_signer_parse_mechanism(cfg->mechanism, &hashes, err, errlen);
	if (rc < 0)
		return rc;
	/* Before the backend reads a PIN or a key. */
	rc = drv_signer_no_core_dumps(err, errlen);
	if (rc < 0)
		return rc;
	signer = calloc(1, sizeof(*signer));
	if (!signer)
		return st_errf(err, errlen, ST_E_NOMEM, "out of memory opening signer");
	signer->ops = ops;
	signer->hashes = hashes;
	rc = ops->open(cfg, &signer->inst, err, errlen);
	if (rc < 0) {
		free(signer);
		return rc;
	}
	*out = signer;
	return 0;
}

void drv_signer_close(struct drv_signer *signer)
{
	if (!signer)
		return;
	signer->ops->close(signer->inst);
	free(signer);
}

int drv_signer_session_open(struct drv_signer *signer, void **sess, char *err, size_t errlen)
{
	*sess = NULL;
	return signer->ops->session_open(signer->inst, sess, err, errlen);
}

void drv_signer_session_close(struct drv_signer *signer, void *sess)
{
	if (sess)
		signer->ops->session_close(sess);
}

int drv_signer_sign(struct drv_signer *signer, void *sess, const uint8_t *digest, size_t dlen,
		    uint8_t *sig, size_t *siglen, char *err, size_t errlen)
{
	*siglen = 0;
	if (!sess || !digest || dlen == 0)
		return st_errf(err, errlen, ST_E_INVAL, "sign needs a session and %s",
			       signer->hashes ? "data" : "a digest");
	return signer->ops->sign(sess, digest, dlen, sig, siglen, err, errlen);
}

EVP_PKEY *drv_signer_public_key(struct drv_signer *signer)
{
	return signer->ops->public_key(signer->inst);
}

/* Reads the first line of path into pin. The PIN unlocks the CA key, so the file must be
 * private to the station's user: a file that group or others may read or write is refused
 * (not just warned about: a warning scrolls away while the PIN stays exposed), naming the
 * file, its mode and the fix, never its content. The file is opened without following a
 * symbolic link (O_NOFOLLOW): a link would let whoever may write its directory point the
 * station at another file, and its mode says nothing about the target's. O_NONBLOCK keeps a
 * FIFO from blocking the open; it is then refused as not a regular file. */
static int read_pin_file(const char *path, char *pin, size_t pinlen, char *err, size_t errlen)
{
	char buf[DRV_SIGNER_MAX_PIN + 2];
	struct stat st;
	ssize_t n;
	size_t len = 0;
	int fd;
	int rc = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
	if (fd < 0 && errno == ELOOP && lstat(path, &st) == 0 && S_ISLNK(st.st_mode))
		return st_errf(err, errlen, ST_E_SIGNER_NOPIN,
			       "PIN file %s is a symbolic link; the station reads a PIN only from "
			       "the file itself: name the file the link points to", path);
	if (fd < 0)
		return st_errf(err, errlen, ST_E_SIGNER_NOPIN, "cannot open PIN file %s: %s", path,
			       strerror(errno));
	if (fstat(fd, &st) != 0) {
		rc = st_errf(err, errlen, ST_E_SIGNER_NOPIN, "cannot read PIN file %s: %s", path,
			     strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = st_errf(err, errlen, ST_E_SIGNER_NOPIN, "PIN file %s is not a regular file",
			     path);
		goto out;
	}
	if (st.st_mode & 077) {
		rc = st_errf(err, errlen, ST_E_SIGNER_NOPIN,
			     "PIN file %s has mode %04o: group or others may %s it; make it "
			     "private to the station's user: chmod 600 %s",
			     path, (unsigned)(st.st_mode & 07777),
			     (st.st_mode & 044) && (st.st_mode & 022) ? "read and write" :
			     (st.st_mode & 044) ? "read" : (st.st_mode & 022) ? "write" : "execute",
			     path);
		goto out;
	}
	while (len < sizeof(buf)) {
		n = read(fd, buf + len, sizeof(buf) - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = st_errf(err, errlen, ST_E_SIGNER_NOPIN, "cannot read PIN file %s: %s",
				     path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	/* Only the first line counts; the PIN ends at the first line end. */
	n = 0;
	while ((size_t)n < len && buf[n] != '\n' && buf[n] != '\r')
		n++;
	if ((size_t)n > DRV_SIGNER_MAX_PIN || (size_t)n >= pinlen) {
		rc = st_errf(err, errlen, ST_E_INVAL,
			     "PIN in %s is longer than %d characters", path, DRV_SIGNER_MAX_PIN);
		goto out;
	}
	if (n == 0) {
		rc = st_errf(err, errlen, ST_E_SIGNER_NOPIN, "PIN file %s is empty", path);
		goto out;
	}
	memcpy(pin, buf, (size_t)n);
	pin[n] = 0;
out:
	OPENSSL_cleanse(buf, sizeof(buf));
	close(fd);
	return rc;
}

/* PINs taken from the environment. A variable holding the PIN is removed once read, so
 * that no child process inherits it and /proc/PID/environ no longer shows it: unsetenv()
 * alone only drops the pointer from environ[], while the kernel shows the process's initial
 * environment block, where the value stays; so its bytes are overwritten in place first
 * (harmless for a variable set later, whose string lives on the heap). A process may open
 * signers more than once (`station ca init` opens four), so the values read are kept here,
 * by variable name, for the process's life; a variable set again later replaces its value. */
#define PIN_ENV_NAMES 4
static struct {
	char name[129];
	char pin[DRV_SIGNER_MAX_PIN + 1];
} env_pins[PIN_ENV_NAMES];
static pthread_mutex_t env_pins_lock = PTHREAD_MUTEX_INITIALIZER;

/* Takes pin_env out of the environment into env_pins. Lock held. */
static int take_env_pin(const char *pin_env, char *err, size_t errlen)
{
	char *v = getenv(pin_env);
	size_t len, i, free_slot = PIN_ENV_NAMES;
	int rc = 0;

	if (!v || !*v)
		return 0;
	len = strlen(v);
	for (i = 0; i < PIN_ENV_NAMES; i++) {
		if (strcmp(env_pins[i].name, pin_env) == 0)
			break;
		if (!env_pins[i].name[0] && free_slot == PIN_ENV_NAMES)
			free_slot = i;
	}
	if (i == PIN_ENV_NAMES)
		i = free_slot;
	if (len > DRV_SIGNER_MAX_PIN)
		rc = st_errf(err, errlen, ST_E_INVAL,
			     "PIN in environment variable %s is longer than %d characters", pin_env,
			     DRV_SIGNER_MAX_PIN);
	else if (i == PIN_ENV_NAMES || strlen(pin_env) >= sizeof(env_pins[i].name))
		rc = st_errf(err, errlen, ST_E_INVAL,
			     "PIN environment variable %s: at most %d PIN variables of up to %zu "
			     "characters each", pin_env, PIN_ENV_NAMES, sizeof(env_pins[0].name) - 1);
	if (rc == 0) {
		snprintf(env_pins[i].name, sizeof(env_pins[i].name), "%s", pin_env);
		memcpy(env_pins[i].pin, v, len + 1);
	}
	/* Out of the environment whether it was usable or not: it is a secret either way. */
	OPENSSL_cleanse(v, len);
	unsetenv(pin_env);
	return rc;
}

int drv_signer_read_pin(const char *pin_file, const char *pin_env, char *pin, size_t pinlen,
			char *err, size_t errlen)
{
	size_t i, len;
	int rc;

	if (pinlen)
		pin[0] = 0;
	rc = drv_signer_no_core_dumps(err, errlen);
	if (rc < 0)
		return rc;
	if (pin_file)
		return read_pin_file(pin_file, pin, pinlen, err, errlen);
	if (!pin_env || !*pin_env)
		return st_errf(err, errlen, ST_E_SIGNER_NOPIN,
			       "no PIN source configured; set a PIN file (or a PIN environment "
			       "variable)");
	pthread_mutex_lock(&env_pins_lock);
	rc = take_env_pin(pin_env, err, errlen);
	for (i = 0; rc == 0 && i < PIN_ENV_NAMES; i++) {
		if (strcmp(env_pins[i].name, pin_env) == 0)
			break;
	}
	if (rc == 0 && i == PIN_ENV_NAMES) {
		rc = st_errf(err, errlen, ST_E_SIGNER_NOPIN,
			     "PIN environment variable %s is not set or empty", pin_env);
	} else if (rc == 0) {
		len = strlen(env_pins[i].pin);
		if (len >= pinlen)
			rc = st_errf(err, errlen, ST_E_INVAL,
				     "PIN in environment variable %s is longer than %zu characters",
				     pin_env, pinlen ? pinlen - 1 : 0);
		else
			memcpy(pin, env_pins[i].pin, len + 1);
	}
	pthread_mutex_unlock(&env_pins_lock);
	return rc;
}
