/* Signer front end: picks a backend by name and holds what all backends share (PIN reading,
 * mechanism names). The backends themselves live in signer_<name>.c. */
#include "signer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "err.h"
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
	size_t i, used = 0;

	buf[0] = 0;
	for (i = 0; drv_signer_backends[i] && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : "",
					 drv_signer_backends[i]->name);
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

/* Reads the first line of path into pin. The file should be private to the station's user;
 * a readable-by-others file still works (operators must be able to recover) but is warned
 * about, naming the file and never its content. */
static int read_pin_file(const char *path, char *pin, size_t pinlen, char *err, size_t errlen)
{
	char buf[DRV_SIGNER_MAX_PIN + 2];
	struct stat st;
	ssize_t n;
	size_t len = 0;
	int fd;
	int rc = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return st_errf(err, errlen, ST_E_SIGNER_NOPIN, "cannot open PIN file %s: %s", path,
			       strerror(errno));
	if (fstat(fd, &st) == 0 && (st.st_mode & 077))
		st_warn("PIN file %s is readable by group or others (mode %03o); make it 0600",
			path, (unsigned)(st.st_mode & 0777));
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

int drv_signer_read_pin(const char *pin_file, const char *pin_env, char *pin, size_t pinlen,
			char *err, size_t errlen)
{
	const char *v;
	size_t len;

	if (pinlen)
		pin[0] = 0;
	if (pin_file)
		return read_pin_file(pin_file, pin, pinlen, err, errlen);
	if (!pin_env)
		return st_errf(err, errlen, ST_E_SIGNER_NOPIN,
			       "no PIN source configured; set a PIN file (or a PIN environment "
			       "variable)");
	v = getenv(pin_env);
	if (!v || !*v)
		return st_errf(err, errlen, ST_E_SIGNER_NOPIN,
			       "PIN environment variable %s is not set or empty", pin_env);
	len = strlen(v);
	if (len > DRV_SIGNER_MAX_PIN || len >= pinlen)
		return st_errf(err, errlen, ST_E_INVAL,
			       "PIN in environment variable %s is longer than %d characters",
			       pin_env, DRV_SIGNER_MAX_PIN);
	memcpy(pin, v, len + 1);
	return 0;
}
