/* The "pkcs11" signer backend: the CA key inside an HSM, reached through the PKCS#11 module
 * named by an RFC 7512 URI (pkcs11:token=Station;object=local-ca?module-path=...).
 *
 * PKCS#11 state is per process, not per caller: a module is initialised once, login state is
 * shared by every session the application has on a token, and C_Finalize ends all of it. So
 * modules live in a small process-wide registry (reference counted by path), and everything
 * that can invalidate handles is coordinated there:
 *
 * - each module has a read/write lock. Every PKCS#11 call runs under the read lock, so
 *   signing threads run in parallel; C_Finalize + C_Initialize (recovering from a token that
 *   went away or a module that lost its state) runs under the write lock, with no call in
 *   flight, and bumps the module's generation. Session and object handles carry the
 *   generation they were made in; a handle from an older generation is never used, nor even
 *   closed (after C_Initialize the module may have handed the same number to someone else).
 * - an instance (one opened signer) keeps one "anchor" session open for its whole life: it
 *   holds the login (PKCS#11 logs the application out when its last session on a token
 *   closes) and serves key lookups while the signer opens. After that it would sit idle, so
 *   it is lent to the first worker that asks for a session: an HSM that allows S sessions
 *   signs on all S of them. The anchor is never closed by its borrower except when it is
 *   broken; then the login is made again on a new anchor. Each anchor has an epoch, so a
 *   borrower of an anchor that was replaced forgets its handle rather than using a number
 *   the module may since have given to another session. Other worker threads open their
 *   own sessions.
 *
 * Recovery is "reopen and retry once": a lost session is reopened (and the key found again);
 * a lost token or module is reinitialised by the first thread that notices, the others see
 * the new generation and just reopen their sessions. A rejected PIN is never tried again. */
#include "signer.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>
#include <p11-kit/uri.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include "digest.h"
#include "err.h"
#include "log.h"
#include "testhook.h"

/* Largest raw r||s (P-521). */
#define RAW_SIG_MAX 132

/* ---- CKR names ---------------------------------------------------------------------- */

#define CKR_NAME(x) { x, #x }
static const struct {
	CK_RV rv;
	const char *name;
} ckr_names[] = {
	CKR_NAME(CKR_OK),
	CKR_NAME(CKR_CANCEL),
	CKR_NAME(CKR_HOST_MEMORY),
	CKR_NAME(CKR_SLOT_ID_INVALID),
	CKR_NAME(CKR_GENERAL_ERROR),
	CKR_NAME(CKR_FUNCTION_FAILED),
	CKR_NAME(CKR_ARGUMENTS_BAD),
	CKR_NAME(CKR_CANT_LOCK),
	CKR_NAME(CKR_ATTRIBUTE_SENSITIVE),
	CKR_NAME(CKR_ATTRIBUTE_TYPE_INVALID),
	CKR_NAME(CKR_ATTRIBUTE_VALUE_INVALID),
	CKR_NAME(CKR_ACTION_PROHIBITED),
	CKR_NAME(CKR_DATA_INVALID),
	CKR_NAME(CKR_DATA_LEN_RANGE),
	CKR_NAME(CKR_DEVICE_ERROR),
	CKR_NAME(CKR_DEVICE_MEMORY),
	CKR_NAME(CKR_DEVICE_REMOVED),
	CKR_NAME(CKR_FUNCTION_CANCELED),
	CKR_NAME(CKR_FUNCTION_NOT_SUPPORTED),
	CKR_NAME(CKR_KEY_HANDLE_INVALID),
	CKR_NAME(CKR_KEY_SIZE_RANGE),
	CKR_NAME(CKR_KEY_TYPE_INCONSISTENT),
	CKR_NAME(CKR_KEY_FUNCTION_NOT_PERMITTED),
	CKR_NAME(CKR_MECHANISM_INVALID),
	CKR_NAME(CKR_MECHANISM_PARAM_INVALID),
	CKR_NAME(CKR_OBJECT_HANDLE_INVALID),
	CKR_NAME(CKR_OPERATION_ACTIVE),
	CKR_NAME(CKR_OPERATION_NOT_INITIALIZED),
	CKR_NAME(CKR_PIN_INCORRECT),
	CKR_NAME(CKR_PIN_INVALID),
	CKR_NAME(CKR_PIN_LEN_RANGE),
	CKR_NAME(CKR_PIN_EXPIRED),
	CKR_NAME(CKR_PIN_LOCKED),
	CKR_NAME(CKR_SESSION_CLOSED),
	CKR_NAME(CKR_SESSION_COUNT),
	CKR_NAME(CKR_SESSION_HANDLE_INVALID),
	CKR_NAME(CKR_SESSION_PARALLEL_NOT_SUPPORTED),
	CKR_NAME(CKR_SESSION_READ_ONLY),
	CKR_NAME(CKR_SESSION_EXISTS),
	CKR_NAME(CKR_SESSION_READ_ONLY_EXISTS),
	CKR_NAME(CKR_SESSION_READ_WRITE_SO_EXISTS),
	CKR_NAME(CKR_SIGNATURE_INVALID),
	CKR_NAME(CKR_SIGNATURE_LEN_RANGE),
	CKR_NAME(CKR_TEMPLATE_INCOMPLETE),
	CKR_NAME(CKR_TEMPLATE_INCONSISTENT),
	CKR_NAME(CKR_TOKEN_NOT_PRESENT),
	CKR_NAME(CKR_TOKEN_NOT_RECOGNIZED),
	CKR_NAME(CKR_TOKEN_WRITE_PROTECTED),
	CKR_NAME(CKR_USER_ALREADY_LOGGED_IN),
	CKR_NAME(CKR_USER_NOT_LOGGED_IN),
	CKR_NAME(CKR_USER_PIN_NOT_INITIALIZED),
	CKR_NAME(CKR_USER_TYPE_INVALID),
	CKR_NAME(CKR_USER_ANOTHER_ALREADY_LOGGED_IN),
	CKR_NAME(CKR_USER_TOO_MANY_TYPES),
	CKR_NAME(CKR_DOMAIN_PARAMS_INVALID),
	CKR_NAME(CKR_CURVE_NOT_SUPPORTED),
	CKR_NAME(CKR_BUFFER_TOO_SMALL),
	CKR_NAME(CKR_RANDOM_NO_RNG),
	CKR_NAME(CKR_PIN_TOO_WEAK),
	CKR_NAME(CKR_CRYPTOKI_NOT_INITIALIZED),
	CKR_NAME(CKR_CRYPTOKI_ALREADY_INITIALIZED),
	CKR_NAME(CKR_FUNCTION_REJECTED),
};
#undef CKR_NAME

/* Name of a PKCS#11 return value for messages; "CKR_(unknown)" for vendor codes (the
 * messages print the number beside it). */
static const char *ckr_name(CK_RV rv)
{
	size_t i;

	for (i = 0; i < sizeof(ckr_names) / sizeof(ckr_names[0]); i++) {
		if (ckr_names[i].rv == rv)
			return ckr_names[i].name;
	}
	return "CKR_(unknown)";
}

/* The session is gone but the token is fine: reopening a session is enough. */
static int ckr_session_lost(CK_RV rv)
{
	return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED ||
	       rv == CKR_USER_NOT_LOGGED_IN || rv == CKR_KEY_HANDLE_INVALID ||
	       rv == CKR_OBJECT_HANDLE_INVALID || rv == CKR_OPERATION_ACTIVE;
}

/* The token or the module lost its state: only C_Finalize + C_Initialize helps. */
static int ckr_device_lost(CK_RV rv)
{
	return rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_DEVICE_ERROR ||
	       rv == CKR_CRYPTOKI_NOT_INITIALIZED || rv == CKR_SLOT_ID_INVALID ||
	       rv == CKR_TOKEN_NOT_RECOGNIZED;
}

/* ---- Module registry -------------------------------------------------------------- */

struct p11_module {
	struct p11_module *next;
	char *path;
	void *dl;
	CK_FUNCTION_LIST *f;
	int refs;
	int owns_init; /* we called C_Initialize (so we call C_Finalize) */
	/* Read: any PKCS#11 call. Write: C_Finalize/C_Initialize, with nothing in flight. */
	pthread_rwlock_t rw;
	/* Bumped on every reinitialisation; starts at 1 so that 0 means "never". Written under
	 * the write lock, read under the read lock. */
	unsigned gen;
};

static pthread_mutex_t modules_lock = PTHREAD_MUTEX_INITIALIZER;
static struct p11_module *modules;
/* C_Login calls made by this process, for tests that check a wrong PIN is tried once. */
static atomic_ulong login_calls;
/* Sessions this process holds open, for tests that count them against an HSM's limit. */
static atomic_long open_sessions;

/* C_OpenSession and C_CloseSession with the count of open sessions. */
static CK_RV open_session(CK_FUNCTION_LIST *f, CK_SLOT_ID slot, CK_FLAGS flags,
			  CK_SESSION_HANDLE *h)
{
	CK_RV rv = f->C_OpenSession(slot, flags, NULL, NULL, h);

	if (rv == CKR_OK)
		atomic_fetch_add(&open_sessions, 1);
	return rv;
}

static void close_session(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE h)
{
	f->C_CloseSession(h);
	atomic_fetch_sub(&open_sessions, 1);
}

static CK_RV module_initialize(CK_FUNCTION_LIST *f)
{
	CK_C_INITIALIZE_ARGS args;

	memset(&args, 0, sizeof(args));
	args.flags = CKF_OS_LOCKING_OK;
	return f->C_Initialize(&args);
}

static void module_free(struct p11_module *mod)
{
	if (!mod)
		return;
	if (mod->dl)
		dlclose(mod->dl);
	pthread_rwlock_destroy(&mod->rw);
	free(mod->path);
	free(mod);
}

/* SoftHSM2, the embedded default HSM, answers C_Initialize with CKR_GENERAL_ERROR when its
 * configuration file or its token directory is missing, and names neither. When it fails to
 * initialise, hint gets what is missing: "; SoftHSM2 token directory DIR (directories.tokendir
 * in CONF) does not exist". The configuration is the one SoftHSM2 reads: $SOFTHSM2_CONF (the
 * station sets it from ca.softhsm2_conf), else the system's. hint is "" when the module is
 * not SoftHSM2 or nothing is missing. */
#define SOFTHSM2_SYSTEM_CONF "/etc/softhsm/softhsm2.conf"

static void softhsm2_hint(const char *module_path, char *hint, size_t len)
{
	const char *conf = getenv("SOFTHSM2_CONF");
	const char *slash = strrchr(module_path, '/');
	char line[4096], cwd[4096] = "";
	char *dir = NULL, *end;
	struct stat st;
	FILE *f;

	hint[0] = 0;
	if (!conf && !strstr(slash ? slash + 1 : module_path, "softhsm"))
		return;
	if (!conf)
		conf = SOFTHSM2_SYSTEM_CONF;
	f = fopen(conf, "re");
	if (!f) {
		snprintf(hint, len, "; SoftHSM2 configuration %s%s cannot be read: %s", conf,
			 getenv("SOFTHSM2_CONF") ? " (SOFTHSM2_CONF)" : "", strerror(errno));
		return;
	}
	while (!dir && fgets(line, sizeof(line), f)) {
		char *p = line + strspn(line, " \t");

		if (strncmp(p, "directories.tokendir", 20) != 0)
			continue;
		p += 20 + strspn(p + 20, " \t");
		if (*p != '=')
			continue;
		p += 1 + strspn(p + 1, " \t");
		for (end = p + strlen(p); end > p && strchr(" \t\r\n", end[-1]); end--)
			;
		*end = 0;
		dir = p;
	}
	fclose(f);
	/* Without one SoftHSM2 uses its built-in directory: nothing to say about it here. */
	if (!dir)
		return;
	/* SoftHSM2 takes a relative directory from the working directory, wherever that is. */
	if (dir[0] != '/' && !getcwd(cwd, sizeof(cwd)))
		cwd[0] = 0;
	if (stat(dir, &st) != 0) {
		int e = errno;

		snprintf(hint, len,
			 "; SoftHSM2 token directory %s (directories.tokendir in %s%s%s) %s%s", dir,
			 conf, cwd[0] ? ", relative to the working directory " : "", cwd,
			 e == ENOENT ? "does not exist" : "cannot be used: ",
			 e == ENOENT ? "" : strerror(e));
	}
	else if (!S_ISDIR(st.st_mode))
		snprintf(hint, len, "; SoftHSM2 token directory %s (directories.tokendir in %s) is "
			 "not a directory", dir, conf);
	else if (access(dir, R_OK | W_OK | X_OK) != 0)
		snprintf(hint, len, "; SoftHSM2 token directory %s (directories.tokendir in %s) "
			 "cannot be used: %s", dir, conf, strerror(errno));
}

/* Loads (or finds) the module at path and initialises it for OS-thread use. Release with
 * module_put(). */
static int module_get(const char *path, struct p11_module **out, char *err, size_t errlen)
{
	CK_RV (*get_list)(CK_FUNCTION_LIST_PTR_PTR);
	pthread_rwlockattr_t attr;
	struct p11_module *mod;
	CK_RV rv;
	int rc = 0;

	*out = NULL;
	pthread_mutex_lock(&modules_lock);
	for (mod = modules; mod; mod = mod->next) {
		if (strcmp(mod->path, path) == 0) {
			mod->refs++;
			*out = mod;
			goto out;
		}
	}
	mod = calloc(1, sizeof(*mod));
	if (!mod) {
		rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory loading PKCS#11 module");
		goto out;
	}
	/* Prefer the writer: a reinitialisation must not wait behind an endless stream of
	 * signatures. */
	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&mod->rw, &attr);
	pthread_rwlockattr_destroy(&attr);
	mod->gen = 1;
	mod->path = strdup(path);
	if (!mod->path) {
		rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory loading PKCS#11 module");
		goto fail;
	}
	mod->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!mod->dl) {
		rc = st_errf(err, errlen, ST_E_SIGNER_MODULE, "cannot load PKCS#11 module %s: %s",
			     path, dlerror());
		goto fail;
	}
	*(void **)&get_list = dlsym(mod->dl, "C_GetFunctionList");
	if (!get_list) {
		rc = st_errf(err, errlen, ST_E_SIGNER_MODULE,
			     "%s is not a PKCS#11 module: it has no C_GetFunctionList", path);
		goto fail;
	}
	rv = get_list(&mod->f);
	if (rv != CKR_OK || !mod->f) {
		rc = st_errf(err, errlen, ST_E_SIGNER_MODULE,
			     "PKCS#11 module %s: C_GetFunctionList failed: %s (0x%lx)", path,
			     ckr_name(rv), (unsigned long)rv);
		goto fail;
	}
	rv = module_initialize(mod->f);
	if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		char hint[2 * PATH_MAX];

		softhsm2_hint(path, hint, sizeof(hint));
		rc = st_errf(err, errlen, ST_E_SIGNER_MODULE,
			     "PKCS#11 module %s: C_Initialize failed: %s (0x%lx)%s", path,
			     ckr_name(rv), (unsigned long)rv, hint);
		goto fail;
	}
	/* Someone else in this process initialised it first: leave finalising to them. */
	mod->owns_init = rv == CKR_OK;
	mod->refs = 1;
	mod->next = modules;
	modules = mod;
	*out = mod;
	goto out;
fail:
	module_free(mod);
out:
	pthread_mutex_unlock(&modules_lock);
	return rc;
}

static void module_put(struct p11_module *mod)
{
	struct p11_module **pp;

	if (!mod)
		return;
	pthread_mutex_lock(&modules_lock);
	if (--mod->refs > 0) {
		pthread_mutex_unlock(&modules_lock);
		return;
	}
	for (pp = &modules; *pp; pp = &(*pp)->next) {
		if (*pp == mod) {
			*pp = mod->next;
			break;
		}
	}
	/* Still under the registry lock, so a concurrent module_get of the same path cannot
	 * C_Initialize between our C_Finalize and dlclose. */
	if (mod->owns_init)
		mod->f->C_Finalize(NULL);
	module_free(mod);
	pthread_mutex_unlock(&modules_lock);
}

/* With the write lock held: forgets every handle of the module and starts it afresh. The
 * generation moves on even when C_Initialize fails, since C_Finalize already ended the
 * old handles; the next recovery tries again. */
static CK_RV module_reinit(struct p11_module *mod)
{
	CK_RV rv;

	mod->f->C_Finalize(NULL);
	/* C_Finalize closed every session of the process. */
	atomic_store(&open_sessions, 0);
	rv = module_initialize(mod->f);
	mod->gen++;
	if (mod->gen == 0)
		mod->gen = 1;
	if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED)
		rv = CKR_OK;
	return rv;
}

/* ---- Instance and sessions ------------------------------------------------------- */

#ifdef STATION_TEST_HOOKS
enum p11_fail_op {
	P11_FAIL_NONE,
	P11_FAIL_DROP_SESSION,
	P11_FAIL_FINALIZE,
};
#endif

struct p11_inst {
	struct p11_module *mod;
	CK_FUNCTION_LIST *f;
	P11KitUri *uri;	   /* token match (label, manufacturer, model, serial) */
	char token_desc[96]; /* "token \"Station\"", for messages */
	char key_desc[160];  /* "key \"local-ca\" (id 0a1b...)", for messages */
	CK_BYTE *label;
	CK_ULONG label_len;
	CK_BYTE *id;
	CK_ULONG id_len;
	CK_MECHANISM_TYPE mech;
	int rw; /* anchor session read-write (key generation) */
	char pin[DRV_SIGNER_MAX_PIN + 1];
	EVP_PKEY *pub;
	size_t raw_len; /* length of r||s for this key's curve */

	/* Connection state, changed under lock (and the module's read lock). */
	pthread_mutex_t lock;
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE anchor;
	int anchor_lent; /* a worker session signs on the anchor */
	/* Counts anchors opened; read without lock by signing threads. */
	atomic_uint anchor_epoch;
	int pin_bad; /* the token refused the PIN: never try it again */
	/* Module generation the slot, anchor and login belong to; 0: not connected. Read
	 * without lock by signing threads, hence atomic. */
	atomic_uint gen;

#ifdef STATION_TEST_HOOKS
	/* STATION_TEST_FAIL hook. */
	enum p11_fail_op fail_op;
	unsigned long fail_at;
	atomic_ulong signs;
#endif
};

struct p11_sess {
	struct p11_inst *inst;
	CK_SESSION_HANDLE h; /* CK_INVALID_HANDLE: none */
	CK_OBJECT_HANDLE key;
	unsigned gen; /* module generation h and key belong to */
	int on_anchor; /* h is the instance's anchor, borrowed */
	unsigned epoch; /* with on_anchor: the anchor's epoch */
};

static void hex(char *out, size_t outlen, const CK_BYTE *in, size_t inlen)
{
	size_t i;

	out[0] = 0;
	for (i = 0; i < inlen && 2 * i + 2 < outlen; i++)
		snprintf(out + 2 * i, 3, "%02x", in[i]);
}

/* Copies a space-padded CK_UTF8CHAR field into a C string without the padding. */
static void unpad(char *out, size_t outlen, const CK_UTF8CHAR *in, size_t inlen)
{
	size_t n = inlen;

	while (n > 0 && (in[n - 1] == ' ' || in[n - 1] == 0))
		n--;
	if (n >= outlen)
		n = outlen - 1;
	memcpy(out, in, n);
	out[n] = 0;
}

static int field_set(const CK_UTF8CHAR *f, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (f[i] != 0)
			return 1;
	}
	return 0;
}

static int copy_attr(P11KitUri *uri, CK_ATTRIBUTE_TYPE type, CK_BYTE **out, CK_ULONG *len)
{
	CK_ATTRIBUTE *a = p11_kit_uri_get_attribute(uri, type);

	*out = NULL;
	*len = 0;
	if (!a || a->ulValueLen == 0 || a->ulValueLen == (CK_ULONG)-1)
		return 0;
	*out = malloc(a->ulValueLen);
	if (!*out)
		return -1;
	memcpy(*out, a->pValue, a->ulValueLen);
	*len = a->ulValueLen;
	return 0;
}

/* Parses cfg->key into inst (token match, key label/id) and returns the module path in
 * *module (owned by inst->uri). Never echoes the URI: it might hold a PIN. */
static int parse_uri(const struct drv_signer_config *cfg, struct p11_inst *inst,
		     const char **module, char *err, size_t errlen)
{
	CK_TOKEN_INFO *ti;
	char label[64], idhex[68];
	int r;

	*module = NULL;
	if (!cfg->key || strncmp(cfg->key, "pkcs11:", 7) != 0)
		return st_errf(err, errlen, ST_E_SIGNER_URI,
			       "signer key is not a PKCS#11 URI: it must start with \"pkcs11:\"");
	inst->uri = p11_kit_uri_new();
	if (!inst->uri)
		return st_errf(err, errlen, ST_E_NOMEM, "out of memory parsing PKCS#11 URI");
	r = p11_kit_uri_parse(cfg->key, P11_KIT_URI_FOR_ANY, inst->uri);
	if (r != P11_KIT_URI_OK)
		return st_errf(err, errlen, ST_E_SIGNER_URI, "bad PKCS#11 URI: %s",
			       p11_kit_uri_message(r));
	if (p11_kit_uri_get_pin_value(inst->uri))
		return st_errf(err, errlen, ST_E_SIGNER_URI,
			       "PIN in URI not allowed; use a PIN file");
	if (p11_kit_uri_get_pin_source(inst->uri))
		return st_errf(err, errlen, ST_E_SIGNER_URI,
			       "pin-source in URI not supported; use a PIN file");
	if (p11_kit_uri_any_unrecognized(inst->uri))
		return st_errf(err, errlen, ST_E_SIGNER_URI,
			       "PKCS#11 URI has an attribute this station does not know; "
			       "expected token, manufacturer, model, serial, object, id, type, "
			       "module-path");
	*module = p11_kit_uri_get_module_path(inst->uri);
	if (!*module || !**module)
		return st_errf(err, errlen, ST_E_SIGNER_MODULE,
			       "no PKCS#11 module named: add ?module-path=<path of the module .so> "
			       "to the URI");

	ti = p11_kit_uri_get_token_info(inst->uri);
	if (field_set(ti->label, sizeof(ti->label))) {
		unpad(label, sizeof(label), ti->label, sizeof(ti->label));
		snprintf(inst->token_desc, sizeof(inst->token_desc), "token \"%s\"", label);
	} else if (field_set(ti->serialNumber, sizeof(ti->serialNumber))) {
		unpad(label, sizeof(label), ti->serialNumber, sizeof(ti->serialNumber));
		snprintf(inst->token_desc, sizeof(inst->token_desc), "token with serial %s",
			 label);
	} else if (field_set(ti->manufacturerID, sizeof(ti->manufacturerID)) ||
		   field_set(ti->model, sizeof(ti->model))) {
		snprintf(inst->token_desc, sizeof(inst->token_desc),
			 "token matching the URI's manufacturer/model");
	} else {
		return st_errf(err, errlen, ST_E_SIGNER_URI,
			       "PKCS#11 URI names no token; add token=<label> (slot numbers "
			       "are not stable)");
	}

	if (copy_attr(inst->uri, CKA_LABEL, &inst->label, &inst->label_len) < 0 ||
	    copy_attr(inst->uri, CKA_ID, &inst->id, &inst->id_len) < 0)
		return st_errf(err, errlen, ST_E_NOMEM, "out of memory parsing PKCS#11 URI");
	if (!inst->label && !inst->id)
		return st_errf(err, errlen, ST_E_SIGNER_URI,
			       "PKCS#11 URI names no key; add object=<label> or id=<hex id>");
	if (inst->label_len >= sizeof(label)) {
		return st_errf(err, errlen, ST_E_SIGNER_URI,
			       "PKCS#11 object label is longer than %zu bytes", sizeof(label) - 1);
	}
	if (inst->label) {
		memcpy(label, inst->label, inst->label_len);
		label[inst->label_len] = 0;
	}
	hex(idhex, sizeof(idhex), inst->id ? inst->id : (CK_BYTE *)"", inst->id_len);
	if (inst->label && inst->id)
		snprintf(inst->key_desc, sizeof(inst->key_desc), "key \"%s\" (id %s)", label,
			 idhex);
	else if (inst->label)
		snprintf(inst->key_desc, sizeof(inst->key_desc), "key \"%s\"", label);
	else
		snprintf(inst->key_desc, sizeof(inst->key_desc), "key with id %s", idhex);
	return 0;
}

/* Error code for a PKCS#11 failure that is not about PINs. */
static int ckr_code(CK_RV rv)
{
	if (ckr_device_lost(rv))
		return ST_E_SIGNER_DEVICE;
	if (ckr_session_lost(rv))
		return ST_E_SIGNER_SESSION;
	return ST_E_SIGNER_FAILED;
}

/* Finds the one initialised token the URI matches. Module read lock held. */
static int find_slot(struct p11_inst *inst, CK_SLOT_ID *slot, CK_RV *ckr, char *err,
		     size_t errlen)
{
	CK_SLOT_ID *slots = NULL;
	CK_TOKEN_INFO ti;
	CK_ULONG n = 0, i;
	char seen[256] = "", label[40];
	size_t used = 0;
	int found = 0;
	CK_RV rv;
	int rc = 0;

	rv = inst->f->C_GetSlotList(CK_TRUE, NULL, &n);
	if (rv == CKR_OK && n > 0) {
		slots = calloc(n, sizeof(*slots));
		if (!slots) {
			rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory listing slots");
			goto out;
		}
		rv = inst->f->C_GetSlotList(CK_TRUE, slots, &n);
	}
	if (rv != CKR_OK) {
		*ckr = rv;
		rc = st_errf(err, errlen, ckr_code(rv), "cannot list PKCS#11 slots: %s (0x%lx)",
			     ckr_name(rv), (unsigned long)rv);
		goto out;
	}
	for (i = 0; i < n; i++) {
		rv = inst->f->C_GetTokenInfo(slots[i], &ti);
		if (rv != CKR_OK || !(ti.flags & CKF_TOKEN_INITIALIZED))
			continue;
		if (p11_kit_uri_match_token_info(inst->uri, &ti)) {
			if (!found)
				*slot = slots[i];
			found++;
		}
		unpad(label, sizeof(label), ti.label, sizeof(ti.label));
		if (used < sizeof(seen))
			used += (size_t)snprintf(seen + used, sizeof(seen) - used, "%s\"%s\"",
						 used ? ", " : "", label);
	}
	if (found == 0)
		rc = st_errf(err, errlen, ST_E_SIGNER_TOKEN,
			     "PKCS#11 %s not found in module %s (tokens present: %s)",
			     inst->token_desc, inst->mod->path, used ? seen : "none");
	else if (found > 1)
		rc = st_errf(err, errlen, ST_E_SIGNER_TOKEN,
			     "%d tokens match PKCS#11 %s; add serial=<serial> to the URI", found,
			     inst->token_desc);
out:
	free(slots);
	return rc;
}

/* Logs the application in on the anchor session, once. Caller holds inst->lock. */
static int login(struct p11_inst *inst, CK_RV *ckr, char *err, size_t errlen)
{
	CK_TOKEN_INFO ti;
	CK_RV rv;

	if (inst->pin_bad)
		return st_errf(err, errlen, ST_E_SIGNER_PIN,
			       "%s refused the PIN earlier; not trying it again (fix the PIN "
			       "and restart)",
			       inst->token_desc);
	rv = inst->f->C_GetTokenInfo(inst->slot, &ti);
	if (rv == CKR_OK && (ti.flags & CKF_USER_PIN_LOCKED)) {
		inst->pin_bad = 1;
		return st_errf(err, errlen, ST_E_SIGNER_PIN, "%s: the user PIN is locked",
			       inst->token_desc);
	}
	/* An unattended retry loop must not spend the last try that locks the token. */
	if (rv == CKR_OK && (ti.flags & CKF_USER_PIN_FINAL_TRY)) {
		inst->pin_bad = 1;
		return st_errf(err, errlen, ST_E_SIGNER_PIN,
			       "%s: one PIN try left before the token locks; not logging in "
			       "automatically (log in once by hand with the right PIN)",
			       inst->token_desc);
	}
	atomic_fetch_add(&login_calls, 1);
	rv = inst->f->C_Login(inst->anchor, CKU_USER, (CK_UTF8CHAR *)inst->pin,
			      (CK_ULONG)strlen(inst->pin));
	if (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN)
		return 0;
	*ckr = rv;
	if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LOCKED || rv == CKR_PIN_INVALID ||
	    rv == CKR_PIN_LEN_RANGE || rv == CKR_PIN_EXPIRED) {
		inst->pin_bad = 1;
		return st_errf(err, errlen, ST_E_SIGNER_PIN,
			       "%s refused the PIN: %s; not retrying, so the token does not lock",
			       inst->token_desc, ckr_name(rv));
	}
	if (rv == CKR_USER_PIN_NOT_INITIALIZED)
		return st_errf(err, errlen, ST_E_SIGNER_PIN, "%s has no user PIN set",
			       inst->token_desc);
	return st_errf(err, errlen, ckr_code(rv), "%s: C_Login failed: %s (0x%lx)",
		       inst->token_desc, ckr_name(rv), (unsigned long)rv);
}

/* Finds the token, opens the anchor session and logs in, for the module's current
 * generation. Caller holds the module lock (read or write) and inst->lock. */
static int inst_connect(struct p11_inst *inst, CK_RV *ckr, char *err, size_t errlen)
{
	CK_FLAGS flags = CKF_SERIAL_SESSION;
	CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
	CK_RV rv;
	int rc;

	rc = find_slot(inst, &inst->slot, ckr, err, errlen);
	if (rc < 0)
		return rc;
	if (inst->rw)
		flags |= CKF_RW_SESSION;
	rv = open_session(inst->f, inst->slot, flags, &h);
	if (rv != CKR_OK) {
		*ckr = rv;
		return st_errf(err, errlen, ckr_code(rv), "%s: C_OpenSession failed: %s (0x%lx)",
			       inst->token_desc, ckr_name(rv), (unsigned long)rv);
	}
	inst->anchor = h;
	rc = login(inst, ckr, err, errlen);
	if (rc < 0) {
		close_session(inst->f, h);
		inst->anchor = CK_INVALID_HANDLE;
		return rc;
	}
	/* A new anchor, not lent yet; borrowers of the old one see the epoch move. */
	inst->anchor_lent = 0;
	atomic_fetch_add(&inst->anchor_epoch, 1);
	atomic_store(&inst->gen, inst->mod->gen);
	return 0;
}

/* Finds the object of class cls that matches the URI's label and id. Returns 0 with
 * *count = 0, 1 or 2 (2: more than one). */
static int find_object(struct p11_inst *inst, CK_SESSION_HANDLE h, CK_OBJECT_CLASS cls,
		       CK_OBJECT_HANDLE *obj, CK_ULONG *count, CK_RV *ckr, char *err,
		       size_t errlen)
{
	CK_ATTRIBUTE tmpl[3];
	CK_OBJECT_HANDLE found[2];
	CK_ULONG n = 0, nt = 0;
	CK_RV rv;

	tmpl[nt++] = (CK_ATTRIBUTE){ CKA_CLASS, &cls, sizeof(cls) };
	if (inst->label)
		tmpl[nt++] = (CK_ATTRIBUTE){ CKA_LABEL, inst->label, inst->label_len };
	if (inst->id)
		tmpl[nt++] = (CK_ATTRIBUTE){ CKA_ID, inst->id, inst->id_len };
	*count = 0;
	rv = inst->f->C_FindObjectsInit(h, tmpl, nt);
	if (rv == CKR_OK) {
		rv = inst->f->C_FindObjects(h, found, 2, &n);
		inst->f->C_FindObjectsFinal(h);
	}
	if (rv != CKR_OK) {
		*ckr = rv;
		return st_errf(err, errlen, ckr_code(rv), "%s: cannot search for %s: %s (0x%lx)",
			       inst->token_desc, inst->key_desc, ckr_name(rv), (unsigned long)rv);
	}
	*count = n;
	if (n > 0)
		*obj = found[0];
	return 0;
}

/* Finds the private signing key and checks it is an EC key allowed to sign. */
static int find_key(struct p11_inst *inst, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE *key,
		    CK_RV *ckr, char *err, size_t errlen)
{
	CK_KEY_TYPE type = 0;
	CK_BBOOL can_sign = CK_FALSE;
	CK_ATTRIBUTE a[2] = {
		{ CKA_KEY_TYPE, &type, sizeof(type) },
		{ CKA_SIGN, &can_sign, sizeof(can_sign) },
	};
	CK_ULONG n;
	CK_RV rv;
	int rc;

	rc = find_object(inst, h, CKO_PRIVATE_KEY, key, &n, ckr, err, errlen);
	if (rc < 0)
		return rc;
	if (n == 0)
		return st_errf(err, errlen, ST_E_SIGNER_KEY, "no private %s on %s",
			       inst->key_desc, inst->token_desc);
	if (n > 1)
		return st_errf(err, errlen, ST_E_SIGNER_KEY,
			       "more than one private %s on %s; add id=<hex id> to the URI",
			       inst->key_desc, inst->token_desc);
	rv = inst->f->C_GetAttributeValue(h, *key, a, 2);
	if (rv != CKR_OK) {
		*ckr = rv;
		return st_errf(err, errlen, ckr_code(rv), "%s: cannot read %s: %s (0x%lx)",
			       inst->token_desc, inst->key_desc, ckr_name(rv), (unsigned long)rv);
	}
	if (type != CKK_EC)
		return st_errf(err, errlen, ST_E_SIGNER_KEY,
			       "%s on %s is not an EC key (CKA_KEY_TYPE 0x%lx)", inst->key_desc,
			       inst->token_desc, (unsigned long)type);
	if (!can_sign)
		return st_errf(err, errlen, ST_E_SIGNER_KEY, "%s on %s may not sign (CKA_SIGN false)",
			       inst->key_desc, inst->token_desc);
	return 0;
}

/* Reads one attribute of unknown size into a malloc'd buffer the caller frees. */
static CK_RV get_attr(struct p11_inst *inst, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj,
		      CK_ATTRIBUTE_TYPE type, CK_BYTE **out, CK_ULONG *len)
{
	CK_ATTRIBUTE a = { type, NULL, 0 };
	CK_RV rv;

	*out = NULL;
	rv = inst->f->C_GetAttributeValue(h, obj, &a, 1);
	if (rv != CKR_OK)
		return rv;
	if (a.ulValueLen == (CK_ULONG)-1 || a.ulValueLen == 0 || a.ulValueLen > 4096)
		return CKR_ATTRIBUTE_VALUE_INVALID;
	a.pValue = malloc(a.ulValueLen);
	if (!a.pValue)
		return CKR_HOST_MEMORY;
	rv = inst->f->C_GetAttributeValue(h, obj, &a, 1);
	if (rv != CKR_OK) {
		free(a.pValue);
		return rv;
	}
	*out = a.pValue;
	*len = a.ulValueLen;
	return CKR_OK;
}

/* Builds an EVP_PKEY from DER ECParameters (a named curve OID) and CKA_EC_POINT (a DER
 * OCTET STRING holding the uncompressed point, as PKCS#11 prescribes; some modules give the
 * bare point, which is accepted too). */
static EVP_PKEY *ec_pub_from_attrs(const CK_BYTE *params, CK_ULONG plen, const CK_BYTE *point,
				   CK_ULONG ptlen)
{
	const unsigned char *p = params;
	ASN1_OBJECT *oid = NULL;
	ASN1_OCTET_STRING *os = NULL;
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *ps = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *pkey = NULL;
	const unsigned char *pt = point;
	size_t ptl = ptlen;
	const char *group;
	int nid;

	oid = d2i_ASN1_OBJECT(NULL, &p, (long)plen);
	if (!oid)
		goto out;
	nid = OBJ_obj2nid(oid);
	group = nid != NID_undef ? OBJ_nid2sn(nid) : NULL;
	if (!group)
		goto out;
	p = point;
	os = d2i_ASN1_OCTET_STRING(NULL, &p, (long)ptlen);
	if (os && p == point + ptlen) {
		pt = ASN1_STRING_get0_data(os);
		ptl = (size_t)ASN1_STRING_length(os);
	}
	bld = OSSL_PARAM_BLD_new();
	if (!bld ||
	    !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) ||
	    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, ptl))
		goto out;
	ps = OSSL_PARAM_BLD_to_param(bld);
	ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	if (!ps || !ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, ps) <= 0)
		pkey = NULL;
out:
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(ps);
	OSSL_PARAM_BLD_free(bld);
	ASN1_OCTET_STRING_free(os);
	ASN1_OBJECT_free(oid);
	ERR_clear_error();
	return pkey;
}

/* Reads the public key object next to the private key. */
static int read_public_key(struct p11_inst *inst, CK_RV *ckr, char *err, size_t errlen)
{
	CK_OBJECT_HANDLE obj;
	CK_BYTE *params = NULL, *point = NULL;
	CK_ULONG plen = 0, ptlen = 0, n;
	CK_RV rv;
	int rc;

	rc = find_object(inst, inst->anchor, CKO_PUBLIC_KEY, &obj, &n, ckr, err, errlen);
	if (rc < 0)
		return rc;
	if (n != 1) {
		rc = st_errf(err, errlen, ST_E_SIGNER_KEY,
			     "%s: %s public key objects match %s; the station needs exactly one "
			     "to verify its signatures",
			     inst->token_desc, n == 0 ? "no" : "several", inst->key_desc);
		goto out;
	}
	rv = get_attr(inst, inst->anchor, obj, CKA_EC_PARAMS, &params, &plen);
	if (rv == CKR_OK)
		rv = get_attr(inst, inst->anchor, obj, CKA_EC_POINT, &point, &ptlen);
	if (rv != CKR_OK) {
		*ckr = rv;
		rc = st_errf(err, errlen, ckr_code(rv),
			     "%s: cannot read the public %s: %s (0x%lx)", inst->token_desc,
			     inst->key_desc, ckr_name(rv), (unsigned long)rv);
		goto out;
	}
	inst->pub = ec_pub_from_attrs(params, plen, point, ptlen);
	if (!inst->pub) {
		rc = st_errf(err, errlen, ST_E_SIGNER_KEY,
			     "%s: public %s is not an EC key on a named curve", inst->token_desc,
			     inst->key_desc);
		goto out;
	}
	inst->raw_len = 2 * (size_t)((EVP_PKEY_get_bits(inst->pub) + 7) / 8);
out:
	free(params);
	free(point);
	return rc;
}

/* Converts PKCS#11's raw r||s into a DER ECDSA-Sig-Value. */
static int raw_to_der(const CK_BYTE *raw, size_t rawlen, uint8_t *der, size_t *derlen)
{
	ECDSA_SIG *s = ECDSA_SIG_new();
	BIGNUM *r = NULL, *sv = NULL;
	unsigned char *p = der;
	int len;
	int rc = -1;

	if (!s)
		return -1;
	r = BN_bin2bn(raw, (int)(rawlen / 2), NULL);
	sv = BN_bin2bn(raw + rawlen / 2, (int)(rawlen / 2), NULL);
	if (!r || !sv || !ECDSA_SIG_set0(s, r, sv))
		goto out;
	r = sv = NULL; /* owned by s now */
	len = i2d_ECDSA_SIG(s, NULL);
	if (len <= 0 || len > DRV_SIGNER_MAX_SIG)
		goto out;
	len = i2d_ECDSA_SIG(s, &p);
	if (len <= 0)
		goto out;
	*derlen = (size_t)len;
	rc = 0;
out:
	BN_free(r);
	BN_free(sv);
	ECDSA_SIG_free(s);
	return rc;
}

/* One C_SignInit + C_Sign. Returns the CKR and, on success, the DER signature. */
static CK_RV sign_once(struct p11_inst *inst, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key,
		       const uint8_t *data, size_t dlen, uint8_t *sig, size_t *siglen)
{
	CK_MECHANISM mech = { inst->mech, NULL, 0 };
	CK_BYTE raw[RAW_SIG_MAX];
	CK_ULONG rawlen = sizeof(raw);
	CK_RV rv;

	rv = inst->f->C_SignInit(h, &mech, key);
	if (rv != CKR_OK)
		return rv;
	rv = inst->f->C_Sign(h, (CK_BYTE *)data, (CK_ULONG)dlen, raw, &rawlen);
	if (rv != CKR_OK)
		return rv;
	if (rawlen != inst->raw_len || raw_to_der(raw, rawlen, sig, siglen) < 0)
		return CKR_SIGNATURE_LEN_RANGE;
	return CKR_OK;
}

/* Proves the private and public key objects belong together, once at open, so a mixed-up
 * token fails here and not in the first certificate a device rejects. */
static int self_test(struct p11_inst *inst, CK_OBJECT_HANDLE key, char *err, size_t errlen)
{
	static const char msg[] = "station signer self-test";
	uint8_t md[32], sig[DRV_SIGNER_MAX_SIG];
	size_t siglen = 0;
	EVP_PKEY_CTX *ctx = NULL;
	CK_RV rv;
	int rc = 0;

	st_digest(ST_SHA256, msg, sizeof(msg) - 1, md);
	if (inst->mech == CKM_ECDSA_SHA256)
		rv = sign_once(inst, inst->anchor, key, (const uint8_t *)msg, sizeof(msg) - 1, sig,
			       &siglen);
	else
		rv = sign_once(inst, inst->anchor, key, md, sizeof(md), sig, &siglen);
	if (rv != CKR_OK) {
		rc = st_errf(err, errlen, rv == CKR_SIGNATURE_LEN_RANGE ? ST_E_SIGNER_KEY :
									  ckr_code(rv),
			     "%s: test signature with %s failed: %s (0x%lx)", inst->token_desc,
			     inst->key_desc, ckr_name(rv), (unsigned long)rv);
		goto out;
	}
	ctx = EVP_PKEY_CTX_new(inst->pub, NULL);
	if (!ctx || EVP_PKEY_verify_init(ctx) <= 0 ||
	    EVP_PKEY_verify(ctx, sig, siglen, md, sizeof(md)) != 1)
		rc = st_errf(err, errlen, ST_E_SIGNER_BADSIG,
			     "%s: the private and public %s do not belong together (test "
			     "signature does not verify)",
			     inst->token_desc, inst->key_desc);
out:
	EVP_PKEY_CTX_free(ctx);
	ERR_clear_error();
	return rc;
}

static void inst_free(struct p11_inst *inst)
{
	if (!inst)
		return;
	if (inst->mod) {
		pthread_rwlock_rdlock(&inst->mod->rw);
		/* An anchor from an older generation died with C_Finalize. Closing the anchor
		 * (not C_Logout) keeps other signers on the same token logged in. */
		if (inst->anchor != CK_INVALID_HANDLE && atomic_load(&inst->gen) == inst->mod->gen)
			close_session(inst->f, inst->anchor);
		pthread_rwlock_unlock(&inst->mod->rw);
		module_put(inst->mod);
	}
	OPENSSL_cleanse(inst->pin, sizeof(inst->pin));
	pthread_mutex_destroy(&inst->lock);
	p11_kit_uri_free(inst->uri);
	EVP_PKEY_free(inst->pub);
	free(inst->label);
	free(inst->id);
	free(inst);
}

#ifdef STATION_TEST_HOOKS
/* Only in builds made with -DSTATION_TEST_HOOKS=ON (signer.h): an installed station has no
 * environment variable that makes its signing fail. */
static void parse_fail_hook(struct p11_inst *inst)
{
	const char *arg;

	if ((arg = st_test_hook("signer.drop_session")))
		inst->fail_op = P11_FAIL_DROP_SESSION;
	else if ((arg = st_test_hook("signer.finalize")))
		inst->fail_op = P11_FAIL_FINALIZE;
	else
		return;
	inst->fail_at = *arg ? strtoul(arg, NULL, 10) : 1;
}
#else
/* Without the hooks there is nothing to arm or fire. */
static void parse_fail_hook(struct p11_inst *inst)
{
	(void)inst;
}
#endif

/* Everything open and generate share: URI, PIN, module, token, login. */
static int inst_create(const struct drv_signer_config *cfg, int rw, struct p11_inst **out,
		       char *err, size_t errlen)
{
	struct p11_inst *inst;
	const char *module;
	CK_RV ckr = CKR_OK;
	int rc;

	*out = NULL;
	inst = calloc(1, sizeof(*inst));
	if (!inst)
		return st_errf(err, errlen, ST_E_NOMEM, "out of memory opening PKCS#11 signer");
	pthread_mutex_init(&inst->lock, NULL);
	inst->rw = rw;
	inst->mech = CKM_ECDSA;
	rc = parse_uri(cfg, inst, &module, err, errlen);
	if (rc < 0)
		goto out;
	rc = drv_signer_read_pin(cfg->pin_file, cfg->pin_env, inst->pin, sizeof(inst->pin), err,
				 errlen);
	if (rc < 0)
		goto out;
	rc = module_get(module, &inst->mod, err, errlen);
	if (rc < 0)
		goto out;
	inst->f = inst->mod->f;
	pthread_rwlock_rdlock(&inst->mod->rw);
	pthread_mutex_lock(&inst->lock);
	rc = inst_connect(inst, &ckr, err, errlen);
	pthread_mutex_unlock(&inst->lock);
	pthread_rwlock_unlock(&inst->mod->rw);
out:
	if (rc < 0) {
		inst_free(inst);
		return rc;
	}
	*out = inst;
	return 0;
}

static int p11_open(const struct drv_signer_config *cfg, void **out, char *err, size_t errlen)
{
	struct p11_inst *inst = NULL;
	CK_MECHANISM_INFO mi;
	CK_OBJECT_HANDLE key;
	CK_RV ckr = CKR_OK, rv;
	int hashes;
	int rc;

	*out = NULL;
	rc = drv_signer_parse_mechanism(cfg->mechanism, &hashes, err, errlen);
	if (rc < 0)
		return rc;
	rc = inst_create(cfg, 0, &inst, err, errlen);
	if (rc < 0)
		return rc;
	inst->mech = hashes ? CKM_ECDSA_SHA256 : CKM_ECDSA;
	pthread_rwlock_rdlock(&inst->mod->rw);
	rv = inst->f->C_GetMechanismInfo(inst->slot, inst->mech, &mi);
	if (rv != CKR_OK || !(mi.flags & CKF_SIGN)) {
		rc = st_errf(err, errlen, ST_E_SIGNER_MECH,
			     "%s does not offer %s for signing%s", inst->token_desc,
			     hashes ? "CKM_ECDSA_SHA256" : "CKM_ECDSA",
			     hashes ? "; use mechanism ECDSA (the station hashes)" : "");
		goto unlock;
	}
	rc = find_key(inst, inst->anchor, &key, &ckr, err, errlen);
	if (rc < 0)
		goto unlock;
	rc = read_public_key(inst, &ckr, err, errlen);
	if (rc < 0)
		goto unlock;
	rc = self_test(inst, key, err, errlen);
unlock:
	pthread_rwlock_unlock(&inst->mod->rw);
	if (rc < 0) {
		inst_free(inst);
		return rc;
	}
	parse_fail_hook(inst);
	*out = inst;
	return 0;
}

static void p11_close(void *p)
{
	inst_free(p);
}

/* Gives a borrowed anchor back, if it is still the instance's current one. */
static void anchor_return(struct p11_sess *sess)
{
	struct p11_inst *inst = sess->inst;

	pthread_mutex_lock(&inst->lock);
	if (sess->epoch == atomic_load(&inst->anchor_epoch))
		inst->anchor_lent = 0;
	pthread_mutex_unlock(&inst->lock);
	sess->on_anchor = 0;
	sess->h = CK_INVALID_HANDLE;
}

/* With the module read-locked: brings the instance into the module's current generation
 * (token, anchor, login) and gives sess a live session and key handle. */
static int sess_ready(struct p11_sess *sess, CK_RV *ckr, char *err, size_t errlen)
{
	struct p11_inst *inst = sess->inst;
	struct p11_module *mod = inst->mod;
	CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
	CK_OBJECT_HANDLE key;
	CK_RV rv;
	int rc = 0;

	if (atomic_load(&inst->gen) != mod->gen) {
		pthread_mutex_lock(&inst->lock);
		if (atomic_load(&inst->gen) != mod->gen)
			rc = inst_connect(inst, ckr, err, errlen);
		pthread_mutex_unlock(&inst->lock);
		if (rc < 0)
			return rc;
	}
	if (sess->h != CK_INVALID_HANDLE && sess->gen == mod->gen &&
	    (!sess->on_anchor || sess->epoch == atomic_load(&inst->anchor_epoch)))
		return 0;
	/* A handle from an older generation, or an anchor since replaced, is forgotten, never
	 * closed. */
	sess->h = CK_INVALID_HANDLE;
	sess->on_anchor = 0;
	pthread_mutex_lock(&inst->lock);
	if (!inst->anchor_lent && inst->anchor != CK_INVALID_HANDLE &&
	    atomic_load(&inst->gen) == mod->gen) {
		inst->anchor_lent = 1;
		h = inst->anchor;
		sess->on_anchor = 1;
		sess->epoch = atomic_load(&inst->anchor_epoch);
	}
	pthread_mutex_unlock(&inst->lock);
	if (!sess->on_anchor) {
		rv = open_session(inst->f, inst->slot, CKF_SERIAL_SESSION, &h);
		if (rv != CKR_OK) {
			*ckr = rv;
			return st_errf(err, errlen, ckr_code(rv),
				       "%s: C_OpenSession failed: %s (0x%lx)", inst->token_desc,
				       ckr_name(rv), (unsigned long)rv);
		}
	}
	rc = find_key(inst, h, &key, ckr, err, errlen);
	if (rc < 0) {
		if (sess->on_anchor)
			anchor_return(sess);
		else
			close_session(inst->f, h);
		return rc;
	}
	sess->h = h;
	sess->key = key;
	sess->gen = mod->gen;
	return 0;
}

/* Repairs what rv says is broken, under the module's write lock so no PKCS#11 call is in
 * flight. seen_gen is the generation the failing call ran in: only the first thread to see
 * a failure of a generation acts on it; the others find a newer generation and simply reopen
 * their sessions afterwards. */
static void recover(struct p11_sess *sess, CK_RV rv, unsigned seen_gen)
{
	struct p11_inst *inst = sess->inst;
	struct p11_module *mod = inst->mod;
	CK_SESSION_INFO si;
	CK_RV r;

	pthread_rwlock_wrlock(&mod->rw);
	if (seen_gen != mod->gen)
		goto out;
	if (!ckr_device_lost(rv)) {
		if (sess->on_anchor) {
			/* The borrowed anchor broke: if it is still the current one, close what
			 * is left of it and have sess_ready open a new anchor and log in again;
			 * a replaced one is forgotten. */
			if (sess->h != CK_INVALID_HANDLE &&
			    sess->epoch == atomic_load(&inst->anchor_epoch) &&
			    atomic_load(&inst->gen) == mod->gen) {
				close_session(inst->f, sess->h);
				inst->anchor = CK_INVALID_HANDLE;
				atomic_store(&inst->gen, 0);
			}
			sess->h = CK_INVALID_HANDLE;
			sess->on_anchor = 0;
			goto out;
		}
		/* Our own session, current generation: safe to close whatever is left of it. */
		if (sess->h != CK_INVALID_HANDLE)
			close_session(inst->f, sess->h);
		sess->h = CK_INVALID_HANDLE;
		if (atomic_load(&inst->gen) != mod->gen)
			goto out;
		/* The login lives as long as the anchor session; check both survived. */
		r = inst->f->C_GetSessionInfo(inst->anchor, &si);
		if (r == CKR_OK && (si.state == CKS_RO_USER_FUNCTIONS ||
				    si.state == CKS_RW_USER_FUNCTIONS))
			goto out;
		if (!ckr_device_lost(r)) {
			/* A dead anchor is not closed (its number may be another's by now),
			 * just no longer counted. */
			if (r == CKR_OK)
				close_session(inst->f, inst->anchor);
			else
				atomic_fetch_sub(&open_sessions, 1);
			inst->anchor = CK_INVALID_HANDLE;
			atomic_store(&inst->gen, 0); /* sess_ready reconnects */
			goto out;
		}
		rv = r;
	}
	st_warn("signer: %s: %s; reinitialising PKCS#11 module %s", inst->token_desc,
		ckr_name(rv), mod->path);
	r = module_reinit(mod);
	if (r != CKR_OK) {
		char hint[2 * PATH_MAX];

		softhsm2_hint(mod->path, hint, sizeof(hint));
		st_err("signer: PKCS#11 module %s: C_Initialize failed: %s (0x%lx)%s", mod->path,
		       ckr_name(r), (unsigned long)r, hint);
	}
out:
	pthread_rwlock_unlock(&mod->rw);
}

static int p11_session_open(void *p, void **out, char *err, size_t errlen)
{
	struct p11_inst *inst = p;
	struct p11_sess *sess;
	CK_RV ckr = CKR_OK;
	unsigned gen;
	int attempt, rc = 0;

	*out = NULL;
	sess = calloc(1, sizeof(*sess));
	if (!sess)
		return st_errf(err, errlen, ST_E_NOMEM, "out of memory opening signer session");
	sess->inst = inst;
	for (attempt = 0; attempt < 2; attempt++) {
		ckr = CKR_OK;
		pthread_rwlock_rdlock(&inst->mod->rw);
		gen = inst->mod->gen;
		rc = sess_ready(sess, &ckr, err, errlen);
		pthread_rwlock_unlock(&inst->mod->rw);
		if (rc == 0 || !(ckr_session_lost(ckr) || ckr_device_lost(ckr)))
			break;
		if (attempt == 0)
			recover(sess, ckr, gen);
	}
	if (rc < 0) {
		free(sess);
		return rc;
	}
	*out = sess;
	return 0;
}

static void p11_session_close(void *p)
{
	struct p11_sess *sess = p;
	struct p11_module *mod;

	if (!sess)
		return;
	mod = sess->inst->mod;
	pthread_rwlock_rdlock(&mod->rw);
	if (sess->on_anchor)
		/* The anchor stays open for the login; the next worker may borrow it. */
		anchor_return(sess);
	else if (sess->h != CK_INVALID_HANDLE && sess->gen == mod->gen)
		close_session(sess->inst->f, sess->h);
	pthread_rwlock_unlock(&mod->rw);
	free(sess);
}

/* Test hook: C_Finalize behind the signer's back, leaving the generation as it was. */
static void finalize_under(struct p11_inst *inst)
{
	pthread_rwlock_wrlock(&inst->mod->rw);
	inst->f->C_Finalize(NULL);
	pthread_rwlock_unlock(&inst->mod->rw);
}

#ifdef STATION_TEST_HOOKS
static void fire_fail_hook(struct p11_sess *sess)
{
	struct p11_inst *inst = sess->inst;

	if (inst->fail_op == P11_FAIL_NONE ||
	    atomic_fetch_add(&inst->signs, 1) + 1 != inst->fail_at)
		return;
	st_warn("signer: test fault hook fires before signature %lu", inst->fail_at);
	if (inst->fail_op == P11_FAIL_DROP_SESSION)
		drv_pkcs11_test_drop_session(sess);
	else
		finalize_under(inst);
}
#else
static void fire_fail_hook(struct p11_sess *sess)
{
	(void)sess;
}
#endif

static int p11_sign(void *p, const uint8_t *digest, size_t dlen, uint8_t *sig, size_t *siglen,
		    char *err, size_t errlen)
{
	struct p11_sess *sess = p;
	struct p11_inst *inst = sess->inst;
	CK_RV ckr = CKR_OK;
	unsigned gen;
	int attempt, rc = 0;

	*siglen = 0;
	if (inst->mech == CKM_ECDSA && dlen > 64)
		return st_errf(err, errlen, ST_E_INVAL, "digest is %zu bytes; expected at most 64",
			       dlen);
	fire_fail_hook(sess);
	for (attempt = 0; attempt < 2; attempt++) {
		ckr = CKR_OK;
		pthread_rwlock_rdlock(&inst->mod->rw);
		gen = inst->mod->gen;
		rc = sess_ready(sess, &ckr, err, errlen);
		if (rc == 0) {
			ckr = sign_once(inst, sess->h, sess->key, digest, dlen, sig, siglen);
			if (ckr != CKR_OK)
				rc = st_errf(err, errlen, ckr_code(ckr),
					     "%s: signing with %s failed%s: %s (0x%lx)",
					     inst->token_desc, inst->key_desc,
					     attempt ? " after reopening the session" : "",
					     ckr_name(ckr), (unsigned long)ckr);
		}
		pthread_rwlock_unlock(&inst->mod->rw);
		if (rc == 0 || !(ckr_session_lost(ckr) || ckr_device_lost(ckr)))
			break;
		if (attempt == 0) {
			st_warn("signer: %s: %s while signing; reopening and retrying once",
				inst->token_desc, ckr_name(ckr));
			recover(sess, ckr, gen);
		}
	}
	return rc;
}

static EVP_PKEY *p11_public_key(void *p)
{
	struct p11_inst *inst = p;

	if (!EVP_PKEY_up_ref(inst->pub))
		return NULL;
	return inst->pub;
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

/* ---- Administration -------------------------------------------------------------- */

/* DER ECParameters (namedCurve OID) for a curve name; the caller frees *der. */
static int curve_params(const char *curve, CK_BYTE **der, CK_ULONG *len, char *err,
			size_t errlen)
{
	unsigned char *out = NULL;
	ASN1_OBJECT *oid;
	int nid, n;

	nid = curve ? OBJ_sn2nid(curve) : NID_X9_62_prime256v1;
	if (nid == NID_undef && curve)
		nid = EC_curve_nist2nid(curve);
	if (nid == NID_secp256k1 || (nid != NID_X9_62_prime256v1 && nid != NID_secp384r1))
		return st_errf(err, errlen, ST_E_INVAL,
			       "curve \"%s\" is not supported; expected prime256v1 (P-256) or "
			       "secp384r1 (P-384)",
			       curve);
	oid = OBJ_nid2obj(nid);
	n = i2d_ASN1_OBJECT(oid, &out);
	if (n <= 0)
		return st_errf(err, errlen, ST_E_CRYPTO, "cannot encode curve %s", curve);
	*der = out;
	*len = (CK_ULONG)n;
	return 0;
}

int drv_pkcs11_generate_ec_key(const struct drv_signer_config *cfg, const char *curve, char *err,
			       size_t errlen)
{
	struct p11_inst *inst = NULL;
	CK_MECHANISM mech = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_OBJECT_HANDLE pubh, privh, obj;
	CK_BYTE *params = NULL;
	CK_ULONG plen = 0, n = 0;
	CK_BYTE id[32]; /* a SHA-256 */
	CK_ULONG id_len;
	CK_RV ckr = CKR_OK, rv;
	int locked = 0;
	int rc;

	rc = curve_params(curve, &params, &plen, err, errlen);
	if (rc < 0)
		return rc;
	rc = inst_create(cfg, 1, &inst, err, errlen);
	if (rc < 0)
		goto out;
	if (!inst->label) {
		rc = st_errf(err, errlen, ST_E_SIGNER_URI,
			     "generating a key needs object=<label> in the PKCS#11 URI");
		goto out;
	}
	/* Without an id in the URI, derive a stable one so certificates and tools that match
	 * keys by CKA_ID (most do) find it. */
	if (inst->id) {
		id_len = inst->id_len;
		if (id_len > sizeof(id)) {
			rc = st_errf(err, errlen, ST_E_SIGNER_URI,
				     "PKCS#11 id is longer than %zu bytes", sizeof(id));
			goto out;
		}
		memcpy(id, inst->id, id_len);
	} else {
		st_digest(ST_SHA256, inst->label, inst->label_len, id);
		id_len = 8;
	}
	pthread_rwlock_rdlock(&inst->mod->rw);
	locked = 1;
	rc = find_object(inst, inst->anchor, CKO_PRIVATE_KEY, &obj, &n, &ckr, err, errlen);
	if (rc < 0)
		goto out;
	if (n > 0) {
		rc = st_errf(err, errlen, ST_E_EXISTS, "%s already holds a private %s",
			     inst->token_desc, inst->key_desc);
		goto out;
	}
	{
		CK_ATTRIBUTE pub[] = {
			{ CKA_TOKEN, &yes, sizeof(yes) },
			{ CKA_PRIVATE, &no, sizeof(no) },
			{ CKA_VERIFY, &yes, sizeof(yes) },
			{ CKA_EC_PARAMS, params, plen },
			{ CKA_LABEL, inst->label, inst->label_len },
			{ CKA_ID, id, id_len },
		};
		CK_ATTRIBUTE priv[] = {
			{ CKA_TOKEN, &yes, sizeof(yes) },
			{ CKA_PRIVATE, &yes, sizeof(yes) },
			{ CKA_SENSITIVE, &yes, sizeof(yes) },
			{ CKA_EXTRACTABLE, &no, sizeof(no) },
			{ CKA_SIGN, &yes, sizeof(yes) },
			{ CKA_LABEL, inst->label, inst->label_len },
			{ CKA_ID, id, id_len },
		};

		rv = inst->f->C_GenerateKeyPair(inst->anchor, &mech, pub,
						sizeof(pub) / sizeof(pub[0]), priv,
						sizeof(priv) / sizeof(priv[0]), &pubh, &privh);
	}
	if (rv != CKR_OK) {
		rc = st_errf(err, errlen, rv == CKR_CURVE_NOT_SUPPORTED || rv == CKR_MECHANISM_INVALID
					      ? ST_E_SIGNER_MECH :
					      ckr_code(rv),
			     "%s: generating EC %s %s failed: %s (0x%lx)", inst->token_desc,
			     curve ? curve : "prime256v1", inst->key_desc, ckr_name(rv),
			     (unsigned long)rv);
		goto out;
	}
	st_notice("signer: generated EC %s %s on %s", curve ? curve : "prime256v1",
		  inst->key_desc, inst->token_desc);
out:
	if (locked)
		pthread_rwlock_unlock(&inst->mod->rw);
	OPENSSL_free(params);
	inst_free(inst);
	return rc;
}

static void pad32(CK_UTF8CHAR out[32], const char *s)
{
	size_t n = strlen(s);

	memset(out, ' ', 32);
	memcpy(out, s, n > 32 ? 32 : n);
}

/* Finds the slot of the initialised token labelled padded, or the first free slot when
 * padded is NULL. Returns 1 when found, 0 when not, or a negative code. */
static int init_find(CK_FUNCTION_LIST *f, const CK_UTF8CHAR *padded, CK_SLOT_ID *slot,
		     int *exists, char *err, size_t errlen)
{
	CK_SLOT_ID *slots = NULL;
	CK_TOKEN_INFO ti;
	CK_ULONG n = 0, i;
	CK_RV rv;
	int found = 0;

	*exists = 0;
	rv = f->C_GetSlotList(CK_TRUE, NULL, &n);
	if (rv == CKR_OK && n > 0) {
		slots = calloc(n, sizeof(*slots));
		if (!slots)
			return st_errf(err, errlen, ST_E_NOMEM, "out of memory listing slots");
		rv = f->C_GetSlotList(CK_TRUE, slots, &n);
	}
	if (rv != CKR_OK) {
		free(slots);
		return st_errf(err, errlen, ckr_code(rv), "cannot list PKCS#11 slots: %s (0x%lx)",
			       ckr_name(rv), (unsigned long)rv);
	}
	for (i = 0; i < n && !found; i++) {
		if (f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
			continue;
		if (ti.flags & CKF_TOKEN_INITIALIZED) {
			if (padded && memcmp(ti.label, padded, 32) == 0) {
				*exists = 1;
				*slot = slots[i];
				found = 1;
			}
		} else if (!padded) {
			*slot = slots[i];
			found = 1;
		}
	}
	free(slots);
	return found;
}

int drv_pkcs11_init_token(const char *module_path, const char *label, const char *so_pin,
			  const char *user_pin, char *err, size_t errlen)
{
	struct p11_module *mod = NULL;
	CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
	CK_UTF8CHAR padded[32];
	CK_SLOT_ID slot = 0;
	const char *step = NULL;
	int exists, logged_in = 0;
	CK_RV rv = CKR_OK;
	int rc;

	if (!module_path || !label || !*label || strlen(label) > 32 || !so_pin || !user_pin)
		return st_errf(err, errlen, ST_E_INVAL,
			       "token init needs a module, a label of 1-32 bytes and both PINs");
	pad32(padded, label);
	rc = module_get(module_path, &mod, err, errlen);
	if (rc < 0)
		return rc;
	pthread_rwlock_rdlock(&mod->rw);
	rc = init_find(mod->f, padded, &slot, &exists, err, errlen);
	if (rc < 0)
		goto out;
	if (exists) {
		rc = st_errf(err, errlen, ST_E_EXISTS, "a token labelled \"%s\" exists already in %s",
			     label, module_path);
		goto out;
	}
	rc = init_find(mod->f, NULL, &slot, &exists, err, errlen);
	if (rc < 0)
		goto out;
	if (rc == 0) {
		rc = st_errf(err, errlen, ST_E_SIGNER_TOKEN, "no free slot for a new token in %s",
			     module_path);
		goto out;
	}
	rv = mod->f->C_InitToken(slot, (CK_UTF8CHAR *)so_pin, (CK_ULONG)strlen(so_pin), padded);
	if (rv != CKR_OK) {
		step = "C_InitToken";
		goto fail;
	}
	/* SoftHSM2 moves a freshly initialised token to a new slot id: look it up again. */
	rc = init_find(mod->f, padded, &slot, &exists, err, errlen);
	if (rc < 0)
		goto out;
	if (rc == 0) {
		rc = st_errf(err, errlen, ST_E_SIGNER_TOKEN,
			     "token \"%s\" was initialised but is not listed afterwards", label);
		goto out;
	}
	rv = mod->f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h);
	if (rv != CKR_OK) {
		step = "C_OpenSession";
		goto fail;
	}
	rv = mod->f->C_Login(h, CKU_SO, (CK_UTF8CHAR *)so_pin, (CK_ULONG)strlen(so_pin));
	if (rv != CKR_OK) {
		step = "C_Login (SO)";
		goto fail;
	}
	logged_in = 1;
	rv = mod->f->C_InitPIN(h, (CK_UTF8CHAR *)user_pin, (CK_ULONG)strlen(user_pin));
	if (rv != CKR_OK) {
		step = "C_InitPIN";
		goto fail;
	}
	rc = 0;
	st_notice("signer: initialised token \"%s\" in %s", label, module_path);
	goto out;
fail:
	rc = st_errf(err, errlen,
		     rv == CKR_PIN_LEN_RANGE || rv == CKR_PIN_INVALID || rv == CKR_PIN_TOO_WEAK
			     ? ST_E_INVAL :
			     ST_E_SIGNER_TOKEN,
		     "initialising token \"%s\": %s failed: %s (0x%lx)", label, step, ckr_name(rv),
		     (unsigned long)rv);
out:
	if (logged_in)
		mod->f->C_Logout(h);
	if (h != CK_INVALID_HANDLE)
		mod->f->C_CloseSession(h);
	pthread_rwlock_unlock(&mod->rw);
	module_put(mod);
	return rc;
}

/* ---- Test hooks ---------------------------------------------------------------------- */

/* Closes the PKCS#11 session under a signer session but leaves its handle in place, as if
 * the token had dropped it: the next sign sees CKR_SESSION_HANDLE_INVALID and must recover.
 * Tests only; call on the thread that owns sess. */
void drv_pkcs11_test_drop_session(void *p)
{
	struct p11_sess *sess = p;
	struct p11_module *mod = sess->inst->mod;

	/* Behind the count's back, as a token would: the recovery closes it for the count. */
	pthread_rwlock_rdlock(&mod->rw);
	if (sess->h != CK_INVALID_HANDLE && sess->gen == mod->gen)
		sess->inst->f->C_CloseSession(sess->h);
	pthread_rwlock_unlock(&mod->rw);
}

/* Finalises the module under an open pkcs11 signer without telling anyone (the generation
 * stays), as if the module had lost all state: every session's next call fails with
 * CKR_CRYPTOKI_NOT_INITIALIZED and must recover. Tests only; any thread. */
void drv_pkcs11_test_finalize(struct drv_signer *signer)
{
	if (signer && signer->ops == &drv_signer_pkcs11_ops)
		finalize_under(signer->inst);
}

/* Number of C_Login calls this process made, so tests can check a wrong PIN is tried once. */
unsigned long drv_pkcs11_test_login_calls(void)
{
	return atomic_load(&login_calls);
}

/* Sessions the process holds open on its PKCS#11 modules, counted since the last module
 * reset, so tests can check the signer fits an HSM's session limit. */
long drv_pkcs11_test_open_sessions(void)
{
	return atomic_load(&open_sessions);
}
