/* `station ca`: the station's certificate authority. `init` creates a development PKI in the
 * formats of the Foundries-style device PKI (factory root, local device CA, a gateway TLS
 * certificate) with the CA keys in an HSM or in files; `csr` makes a local-CA key inside an
 * HSM and prints its CSR for the factory root's owner; `import` installs the certificate they
 * return after checking it matches the HSM key and chains to the factory root. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cms.h"
#include "ca.h"
#include "commands.h"
#include "config.h"
#include "err.h"
#include "fsutil.h"
#include "log.h"
#include "signer.h"
#include "x509sign.h"

#define ROOT_CN "Factory-CA"
#define DEFAULT_CA_CN "Local-Device-CA"
#define DEFAULT_ROOT_LABEL "factory-root"
#define DEFAULT_CA_LABEL "local-ca"
#define AUTHZ_LABEL "factory-authz"
#define REPORT_LABEL "station-report"
#define AUTHZ_CN "Production-Authorizations"
#define REPORT_CN "Station-Report"
#define DEFAULT_TOKEN "station"
#define SOFTHSM_MODULE "/usr/lib/softhsm/libsofthsm2.so"

static void ca_usage(FILE *out)
{
	fprintf(out,
		"usage: station ca init --dir DIR --factory NAME\n"
		"                       (--pkcs11 URI (--pin-file F | --pin-env VAR) [--softhsm] | --file)\n"
		"                       [--ca-cn NAME] [--gateway HOST] [--root-days N] [--ca-days N]\n"
		"       station ca csr --pkcs11 URI (--pin-file F | --pin-env VAR) --factory NAME\n"
		"                      --cn NAME [-o FILE]\n"
		"       station ca import -c STATION.yaml --cert FILE [--chain FILE]\n"
		"\n"
		"init    creates a development PKI in DIR: factory root CA (CN=Factory-CA, OU=NAME,\n"
		"        20 years), local device CA signed by it (path length 0, 10 years), a gateway\n"
		"        TLS certificate for HOST (default localhost) and DIR/station.yaml, a station\n"
		"        configuration that uses this CA. Also the brand owner's authorization key\n"
		"        (object " AUTHZ_LABEL ", DIR/authz.pem: certified by the root to sign\n"
		"        production authorizations only; `station auth issue`), the station's\n"
		"        report key (object " REPORT_LABEL ", DIR/report.pem: certified by the\n"
		"        local CA to sign job-end reports only; `station report job`) and\n"
		"        DIR/authorizations/ (it prints the lines that make station.yaml use them).\n"
		"        With --pkcs11 the keys are generated\n"
		"        inside the token the URI names (the root as object=" DEFAULT_ROOT_LABEL
		", the local CA\n"
		"        as the URI's object, default " DEFAULT_CA_LABEL
		"); --softhsm first creates that SoftHSM2\n"
		"        token inside DIR (its SO PIN is written to DIR/so-pin). With --file the keys\n"
		"        are PEM files in DIR (mode 0600), for development only.\n"
		"csr     generates a local-CA key inside the HSM and prints its CSR (CN=NAME, OU=factory,\n"
		"        requesting CA:TRUE with path length 0) for the factory root's owner to sign.\n"
		"import  checks that the certificate holds the HSM key of STATION.yaml, is a CA and\n"
		"        chains (through --chain) to the configured factory root, then installs it\n"
		"        as the configured ca.cert (and ca.chain).\n"
		"\n"
		"PINs come from a file (first line) or an environment variable, never the command line.\n");
}

/* Factory names become the OU of every certificate: printable, bounded. */
static int check_factory(const char *factory)
{
	size_t n = factory ? strlen(factory) : 0;

	if (n == 0 || n > 64) {
		st_err("--factory must be 1 to 64 characters");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)factory[i];
		if (c < 0x20 || c == 0x7f) {
			st_err("--factory contains a control character at position %zu", i + 1);
			return -1;
		}
	}
	return 0;
}

/* Returns a copy of uri whose object= attribute is obj (replacing any there). */
static char *uri_with_object(const char *uri, const char *obj)
{
	const char *q = strchr(uri, '?');
	size_t pathlen = q ? (size_t)(q - uri) : strlen(uri);
	char *out = malloc(strlen(uri) + strlen(obj) + 16);
	char *path = strndup(uri, pathlen);
	char *p, *save = NULL, *tok;
	int first = 1;

	if (!out || !path) {
		free(out);
		free(path);
		return NULL;
	}
	/* path is "pkcs11:attr=v;attr=v"; copy every attribute but object. */
	strcpy(out, "pkcs11:");
	p = strncmp(path, "pkcs11:", 7) == 0 ? path + 7 : path;
	for (tok = strtok_r(p, ";", &save); tok; tok = strtok_r(NULL, ";", &save)) {
		if (strncmp(tok, "object=", 7) == 0 || *tok == 0)
			continue;
		if (!first)
			strcat(out, ";");
		strcat(out, tok);
		first = 0;
	}
	if (!first)
		strcat(out, ";");
	strcat(out, "object=");
	strcat(out, obj);
	if (q)
		strcat(out, q);
	free(path);
	return out;
}

/* Value of a path attribute of a PKCS#11 URI (e.g. "token"); a new string or NULL. Percent
 * escapes are left as they are: the labels used here are plain. */
static char *uri_attr(const char *uri, const char *name)
{
	size_t n = strlen(name);
	const char *end = strchr(uri, '?');
	const char *p = strncmp(uri, "pkcs11:", 7) == 0 ? uri + 7 : uri;

	if (!end)
		end = uri + strlen(uri);
	while (p < end) {
		const char *semi = memchr(p, ';', (size_t)(end - p));
		const char *stop = semi ? semi : end;
		if ((size_t)(stop - p) > n && strncmp(p, name, n) == 0 && p[n] == '=')
			return strndup(p + n + 1, (size_t)(stop - p - (ptrdiff_t)n - 1));
		p = stop + 1;
	}
	return NULL;
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	int ok;

	X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
	ext = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value);
	if (!ext)
		return -1;
	ok = X509_add_ext(cert, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : -1;
}

static int set_name(X509_NAME *name, const char *cn, const char *ou)
{
	/* CN first, UTF8String: what mbedTLS-based device stacks handle best. */
	if (!X509_NAME_add_entry_by_NID(name, NID_commonName, V_ASN1_UTF8STRING,
					(const unsigned char *)cn, -1, -1, 0))
		return -1;
	if (ou && !X509_NAME_add_entry_by_NID(name, NID_organizationalUnitName, V_ASN1_UTF8STRING,
					      (const unsigned char *)ou, -1, -1, 0))
		return -1;
	return 0;
}

static int random_serial(X509 *cert)
{
	unsigned char buf[16];
	BIGNUM *bn = NULL;
	int rc = -1;

	if (RAND_bytes(buf, sizeof(buf)) != 1)
		return -1;
	buf[0] &= 0x7f;
	buf[0] |= 0x40; /* positive and a full 127 bits */
	bn = BN_bin2bn(buf, sizeof(buf), NULL);
	if (bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)))
		rc = 0;
	BN_free(bn);
	return rc;
}

struct cert_spec {
	const char *cn;
	const char *ou;
	int days;
	EVP_PKEY *pubkey;
	X509 *issuer;      /* NULL: self-signed */
	const char *exts[6][2]; /* {name, value} pairs; name NULL ends */
	const char *san;   /* subjectAltName value or NULL */
};

/* Builds a certificate from spec and signs it with signer. Returns a new X509 or NULL. */
static X509 *make_cert(const struct cert_spec *spec, struct drv_signer *signer)
{
	X509 *cert = X509_new();
	void *sess = NULL;
	char err[256];

	if (!cert)
		return NULL;
	if (!X509_set_version(cert, X509_VERSION_3) || random_serial(cert) < 0 ||
	    set_name(X509_get_subject_name(cert), spec->cn, spec->ou) < 0)
		goto fail;
	if (!X509_set_issuer_name(cert, spec->issuer ? X509_get_subject_name(spec->issuer) :
						       X509_get_subject_name(cert)))
		goto fail;
	if (!X509_gmtime_adj(X509_getm_notBefore(cert), -60) ||
	    !X509_time_adj_ex(X509_getm_notAfter(cert), spec->days, 0, NULL))
		goto fail;
	if (spec->issuer && ASN1_TIME_compare(X509_get0_notAfter(cert),
					      X509_get0_notAfter(spec->issuer)) > 0 &&
	    !X509_set1_notAfter(cert, X509_get0_notAfter(spec->issuer)))
		goto fail;
	if (!X509_set_pubkey(cert, spec->pubkey))
		goto fail;
	for (int i = 0; spec->exts[i][0]; i++) {
		int nid = OBJ_sn2nid(spec->exts[i][0]);
		if (nid == NID_undef ||
		    add_ext(cert, spec->issuer ? spec->issuer : cert, nid, spec->exts[i][1]) < 0)
			goto fail;
	}
	if (spec->san && add_ext(cert, spec->issuer, NID_subject_alt_name, spec->san) < 0)
		goto fail;
	if (drv_signer_session_open(signer, &sess, err, sizeof(err)) < 0 ||
	    st_x509_sign(cert, signer, sess, err, sizeof(err)) < 0) {
		st_err("signing certificate %s: %s", spec->cn, err);
		drv_signer_session_close(signer, sess);
		X509_free(cert);
		return NULL;
	}
	drv_signer_session_close(signer, sess);
	return cert;
fail:
	st_err("building certificate %s failed", spec->cn);
	X509_free(cert);
	return NULL;
}

static int write_cert(const char *dir, const char *name, X509 *cert)
{
	char path[PATH_MAX];
	BIO *bio = BIO_new(BIO_s_mem());
	char *data;
	long len;
	int rc = -1;

	if (!bio)
		return -1;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (PEM_write_bio_X509(bio, cert) != 1)
		goto out;
	len = BIO_get_mem_data(bio, &data);
	rc = st_write_file_atomic(path, data, (size_t)len, 0644);
	if (rc < 0)
		st_err("%s: %s", path, strerror(-rc));
out:
	BIO_free(bio);
	return rc < 0 ? -1 : 0;
}

static int write_key(const char *path, EVP_PKEY *key)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *data;
	long len;
	int rc = -1;

	if (!bio)
		return -1;
	if (PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) != 1)
		goto out;
	len = BIO_get_mem_data(bio, &data);
	rc = st_write_file_atomic(path, data, (size_t)len, 0600);
	if (rc < 0)
		st_err("%s: %s", path, strerror(-rc));
	OPENSSL_cleanse(data, (size_t)len);
out:
	BIO_free(bio);
	return rc < 0 ? -1 : 0;
}

static int open_signer(const struct drv_signer_config *cfg, struct drv_signer **signer,
		       EVP_PKEY **pub)
{
	char err[512];
	int rc;

	rc = drv_signer_open(cfg, signer, err, sizeof(err));
	if (rc < 0) {
		st_err("%s", err);
		return -1;
	}
	*pub = drv_signer_public_key(*signer);
	if (!*pub) {
		st_err("cannot read the public key of %s", cfg->key);
		drv_signer_close(*signer);
		*signer = NULL;
		return -1;
	}
	return 0;
}

/* Makes DIR/softhsm2.conf and DIR/tokens, points SOFTHSM2_CONF at them and initialises the
 * token named in the URI with the user PIN from the PIN source and a random SO PIN saved in
 * DIR/so-pin (0600). The token directory is written as an absolute path: SoftHSM2 takes a
 * relative one from the working directory, so the PKI would work only from where it was
 * made. */
static int make_softhsm_token(const char *dir, const char *uri, const char *module,
			      const struct drv_signer_config *cfg)
{
	char conf[PATH_MAX], tokens[PATH_MAX], tokens_abs[PATH_MAX], sopin_path[PATH_MAX];
	char text[2 * PATH_MAX];
	unsigned char raw[12];
	char sopin[2 * sizeof(raw) + 1];
	char *label = uri_attr(uri, "token");
	char pin[DRV_SIGNER_MAX_PIN + 1];
	char err[512];
	int rc = -1;

	pin[0] = 0;
	if (!label) {
		st_err("--softhsm needs the URI to name its token (token=LABEL)");
		return -1;
	}
	snprintf(conf, sizeof(conf), "%s/softhsm2.conf", dir);
	snprintf(tokens, sizeof(tokens), "%s/tokens", dir);
	snprintf(sopin_path, sizeof(sopin_path), "%s/so-pin", dir);
	if (mkdir(tokens, 0700) < 0 && errno != EEXIST) {
		st_err("%s: %s", tokens, strerror(errno));
		goto out;
	}
	if (!realpath(tokens, tokens_abs)) {
		st_err("%s: %s", tokens, strerror(errno));
		goto out;
	}
	snprintf(text, sizeof(text),
		 "# SoftHSM2 configuration of a development PKI made by `station ca init`.\n"
		 "directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n"
		 "slots.removable = false\n",
		 tokens_abs);
	if (st_write_file_atomic(conf, text, strlen(text), 0600) < 0) {
		st_err("%s: cannot write", conf);
		goto out;
	}
	setenv("SOFTHSM2_CONF", conf, 1);
	if (RAND_bytes(raw, sizeof(raw)) != 1)
		goto out;
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(sopin + 2 * i, 3, "%02x", raw[i]);
	if (st_write_file_atomic(sopin_path, sopin, strlen(sopin), 0600) < 0) {
		st_err("%s: cannot write", sopin_path);
		goto out;
	}
	if (drv_signer_read_pin(cfg->pin_file, cfg->pin_env, pin, sizeof(pin), err, sizeof(err)) < 0) {
		st_err("%s", err);
		goto out;
	}
	if (drv_pkcs11_init_token(module, label, sopin, pin, err, sizeof(err)) < 0) {
		st_err("%s", err);
		goto out;
	}
	rc = 0;
out:
	OPENSSL_cleanse(pin, sizeof(pin));
	OPENSSL_cleanse(sopin, sizeof(sopin));
	free(label);
	return rc;
}

static char *module_of(const char *uri)
{
	const char *q = strstr(uri, "module-path=");
	const char *end;

	if (!q)
		return NULL;
	q += strlen("module-path=");
	end = strchr(q, '&');
	return strndup(q, end ? (size_t)(end - q) : strlen(q));
}

static int write_station_yaml(const char *dir, const char *ca_uri, const char *pin_file,
			      const char *pin_env, int softhsm, int filekeys)
{
	char path[PATH_MAX], pin_abs[PATH_MAX];
	char text[8192];
	int n;

	snprintf(path, sizeof(path), "%s/station.yaml", dir);
	n = snprintf(text, sizeof(text),
		     "# Station configuration for the development PKI made by `station ca init`.\n"
		     "# Relative paths are relative to this file.\n"
		     "ca:\n");
	if (filekeys) {
		n += snprintf(text + n, sizeof(text) - (size_t)n,
			      "  signer: file\n  key: local-ca.key\n");
	} else {
		n += snprintf(text + n, sizeof(text) - (size_t)n, "  signer: pkcs11\n  key: \"%s\"\n",
			      ca_uri);
		if (pin_file) {
			if (!realpath(pin_file, pin_abs)) {
				st_err("%s: %s", pin_file, strerror(errno));
				return -1;
			}
			n += snprintf(text + n, sizeof(text) - (size_t)n, "  pin_file: %s\n", pin_abs);
		} else {
			n += snprintf(text + n, sizeof(text) - (size_t)n, "  pin_env: %s\n", pin_env);
		}
		if (softhsm)
			n += snprintf(text + n, sizeof(text) - (size_t)n,
				      "  softhsm2_conf: softhsm2.conf\n");
	}
	n += snprintf(text + n, sizeof(text) - (size_t)n,
		      "  cert: local-ca.pem\n  root: factory-root.pem\nledger: ledger.db\n");
	if (st_write_file_atomic(path, text, (size_t)n, 0600) < 0) {
		st_err("%s: cannot write", path);
		return -1;
	}
	return 0;
}

struct ca_opts {
	const char *dir, *factory, *uri, *pin_file, *pin_env, *ca_cn, *gateway, *cn, *out;
	const char *config, *cert, *chain;
	int softhsm, file, root_days, ca_days;
};

static int parse_days(const char *arg, const char *opt, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (errno || *end || v < 1 || v > 36500) {
		st_err("%s: '%s' is not a number of days from 1 to 36500", opt, arg);
		return -1;
	}
	*out = (int)v;
	return 0;
}

static int parse_ca_opts(int argc, char **argv, struct ca_opts *o)
{
	static const struct option longopts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "factory", required_argument, NULL, 'f' },
		{ "pkcs11", required_argument, NULL, 'p' },
		{ "pin-file", required_argument, NULL, 'P' },
		{ "pin-env", required_argument, NULL, 'E' },
		{ "softhsm", no_argument, NULL, 'S' },
		{ "file", no_argument, NULL, 'F' },
		{ "ca-cn", required_argument, NULL, 'n' },
		{ "gateway", required_argument, NULL, 'g' },
		{ "root-days", required_argument, NULL, 'R' },
		{ "ca-days", required_argument, NULL, 'D' },
		{ "cn", required_argument, NULL, 'N' },
		{ "output", required_argument, NULL, 'o' },
		{ "config", required_argument, NULL, 'c' },
		{ "cert", required_argument, NULL, 'C' },
		{ "chain", required_argument, NULL, 'H' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	memset(o, 0, sizeof(*o));
	o->ca_cn = DEFAULT_CA_CN;
	o->gateway = "localhost";
	o->root_days = 7300;
	o->ca_days = 3650;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":o:c:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'd': o->dir = optarg; break;
		case 'f': o->factory = optarg; break;
		case 'p': o->uri = optarg; break;
		case 'P': o->pin_file = optarg; break;
		case 'E': o->pin_env = optarg; break;
		case 'S': o->softhsm = 1; break;
		case 'F': o->file = 1; break;
		case 'n': o->ca_cn = optarg; break;
		case 'g': o->gateway = optarg; break;
		case 'R':
			if (parse_days(optarg, "--root-days", &o->root_days) < 0)
				return -1;
			break;
		case 'D':
			if (parse_days(optarg, "--ca-days", &o->ca_days) < 0)
				return -1;
			break;
		case 'N': o->cn = optarg; break;
		case 'o': o->out = optarg; break;
		case 'c': o->config = optarg; break;
		case 'C': o->cert = optarg; break;
		case 'H': o->chain = optarg; break;
		case 'h': ca_usage(stdout); return 1;
		case ':':
			st_err("option %s needs a value", argv[optind - 1]);
			return -1;
		default:
			st_err("unknown option '%s'; see 'station ca --help'", argv[optind - 1]);
			return -1;
		}
	}
	if (optind < argc) {
		st_err("unexpected argument '%s'; see 'station ca --help'", argv[optind]);
		return -1;
	}
	return 0;
}

static int ca_init(const struct ca_opts *o)
{
	char path[PATH_MAX];
	struct drv_signer_config root_cfg = { 0 }, ca_cfg = { 0 };
	struct drv_signer *root_signer = NULL, *ca_signer = NULL;
	EVP_PKEY *root_pub = NULL, *ca_pub = NULL, *gw_key = NULL, *fkey = NULL;
	X509 *root = NULL, *ca = NULL, *gw = NULL, *authz = NULL, *report = NULL;
	struct drv_signer_config authz_cfg = { 0 }, report_cfg = { 0 };
	struct drv_signer *authz_signer = NULL, *report_signer = NULL;
	EVP_PKEY *authz_pub = NULL, *report_pub = NULL;
	char *authz_uri = NULL, *report_uri = NULL;
	char *root_uri = NULL, *ca_uri = NULL, *module = NULL, *label = NULL;
	char err[512], san[600];
	int rc = 1;

	if (!o->dir || !o->factory) {
		st_err("ca init needs --dir and --factory; see 'station ca --help'");
		return 2;
	}
	if (check_factory(o->factory) < 0)
		return 2;
	if (!!o->uri == !!o->file) {
		st_err("ca init needs exactly one of --pkcs11 URI or --file");
		return 2;
	}
	if (o->uri && !o->pin_file && !o->pin_env) {
		st_err("--pkcs11 needs --pin-file or --pin-env (PINs never go on the command line)");
		return 2;
	}
	if (o->softhsm && !o->uri) {
		st_err("--softhsm goes with --pkcs11");
		return 2;
	}
	if (mkdir(o->dir, 0700) < 0 && errno != EEXIST) {
		st_err("%s: %s", o->dir, strerror(errno));
		return 1;
	}
	snprintf(path, sizeof(path), "%s/station.yaml", o->dir);
	if (access(path, F_OK) == 0) {
		st_err("%s exists: %s already holds a PKI; choose another --dir", path, o->dir);
		return 1;
	}

	if (o->uri) {
		module = module_of(o->uri);
		if (!module && o->softhsm)
			module = strdup(SOFTHSM_MODULE);
		if (!module) {
			st_err("the PKCS#11 URI needs ?module-path=MODULE");
			goto out;
		}
		label = uri_attr(o->uri, "object");
		/* A URI without module-path gets SoftHSM2's, so station.yaml is complete. */
		if (!strstr(o->uri, "module-path=")) {
			size_t n = strlen(o->uri) + strlen(module) + 32;
			char *u = malloc(n);
			if (!u)
				goto out;
			snprintf(u, n, "%s%smodule-path=%s", o->uri, strchr(o->uri, '?') ? "&" : "?",
				 module);
			ca_uri = uri_with_object(u, label ? label : DEFAULT_CA_LABEL);
			root_uri = uri_with_object(u, DEFAULT_ROOT_LABEL);
			free(u);
		} else {
			ca_uri = uri_with_object(o->uri, label ? label : DEFAULT_CA_LABEL);
			root_uri = uri_with_object(o->uri, DEFAULT_ROOT_LABEL);
		}
		if (!ca_uri || !root_uri)
			goto out;
		/* In the brand owner's HSM in production; beside the root here. */
		authz_uri = uri_with_object(ca_uri, AUTHZ_LABEL);
		/* In the station's HSM, beside the local CA's key. */
		report_uri = uri_with_object(ca_uri, REPORT_LABEL);
		if (!authz_uri || !report_uri)
			goto out;
		root_cfg = (struct drv_signer_config){ "pkcs11", root_uri, o->pin_file, o->pin_env,
						       NULL };
		ca_cfg = (struct drv_signer_config){ "pkcs11", ca_uri, o->pin_file, o->pin_env,
						     NULL };
		authz_cfg = (struct drv_signer_config){ "pkcs11", authz_uri, o->pin_file,
							o->pin_env, NULL };
		report_cfg = (struct drv_signer_config){ "pkcs11", report_uri, o->pin_file,
							 o->pin_env, NULL };
		if (o->softhsm && make_softhsm_token(o->dir, ca_uri, module, &ca_cfg) < 0)
			goto out;
		if (drv_pkcs11_generate_ec_key(&root_cfg, "prime256v1", err, sizeof(err)) < 0 ||
		    drv_pkcs11_generate_ec_key(&ca_cfg, "prime256v1", err, sizeof(err)) < 0 ||
		    drv_pkcs11_generate_ec_key(&authz_cfg, "prime256v1", err, sizeof(err)) < 0 ||
		    drv_pkcs11_generate_ec_key(&report_cfg, "prime256v1", err, sizeof(err)) < 0) {
			st_err("%s", err);
			goto out;
		}
	} else {
		static char root_key[PATH_MAX], ca_key[PATH_MAX], authz_key[PATH_MAX],
			report_key[PATH_MAX];
		char *const paths[] = { root_key, ca_key, authz_key, report_key };
		static const char *const names[] = { "factory-root.key", "local-ca.key",
						     "authz.key", "report.key" };

		for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
			snprintf(paths[i], PATH_MAX, "%s/%s", o->dir, names[i]);
			EVP_PKEY_free(fkey);
			fkey = EVP_EC_gen("P-256");
			if (!fkey || write_key(paths[i], fkey) < 0)
				goto out;
		}
		root_cfg = (struct drv_signer_config){ "file", root_key, NULL, NULL, NULL };
		ca_cfg = (struct drv_signer_config){ "file", ca_key, NULL, NULL, NULL };
		authz_cfg = (struct drv_signer_config){ "file", authz_key, NULL, NULL, NULL };
		report_cfg = (struct drv_signer_config){ "file", report_key, NULL, NULL, NULL };
	}
	if (open_signer(&root_cfg, &root_signer, &root_pub) < 0 ||
	    open_signer(&ca_cfg, &ca_signer, &ca_pub) < 0 ||
	    open_signer(&authz_cfg, &authz_signer, &authz_pub) < 0 ||
	    open_signer(&report_cfg, &report_signer, &report_pub) < 0)
		goto out;

	root = make_cert(&(struct cert_spec){
				 .cn = ROOT_CN, .ou = o->factory, .days = o->root_days,
				 .pubkey = root_pub, .issuer = NULL,
				 .exts = { { "basicConstraints", "critical,CA:TRUE" },
					   { "keyUsage", "critical,keyCertSign,cRLSign" },
					   { "subjectKeyIdentifier", "hash" } } },
			 root_signer);
	if (!root)
		goto out;
	ca = make_cert(&(struct cert_spec){
			       .cn = o->ca_cn, .ou = o->factory, .days = o->ca_days, .pubkey = ca_pub,
			       .issuer = root,
			       .exts = { { "basicConstraints", "critical,CA:TRUE,pathlen:0" },
					 { "keyUsage", "critical,keyCertSign,cRLSign" },
					 { "subjectKeyIdentifier", "hash" },
					 { "authorityKeyIdentifier", "keyid:always" } } },
		       root_signer);
	if (!ca)
		goto out;
	/* The device gateway's TLS certificate is signed by the factory root (devices verify the
	 * gateway with root.crt); its key is a file, as a TLS server's usually is. */
	gw_key = EVP_EC_gen("P-256");
	snprintf(san, sizeof(san), "DNS:%s,DNS:localhost,IP:127.0.0.1", o->gateway);
	gw = gw_key ? make_cert(&(struct cert_spec){
				       .cn = o->gateway, .ou = o->factory, .days = 825,
				       .pubkey = gw_key, .issuer = root, .san = san,
				       .exts = { { "basicConstraints", "critical,CA:FALSE" },
						 { "keyUsage", "critical,digitalSignature" },
						 { "extendedKeyUsage", "serverAuth" },
						 { "subjectKeyIdentifier", "hash" },
						 { "authorityKeyIdentifier", "keyid:always" } } },
			       root_signer) :
		      NULL;
	if (!gw)
		goto out;
	/* The keys of production authorizations and reports are good for nothing else: one
	 * extended key usage of the project's each (cms.h), no CA, digitalSignature only. The
	 * root certifies the first (the brand owner's), the local CA the second (the station's
	 * own, never the CA key itself). */
	authz = make_cert(&(struct cert_spec){
				  .cn = AUTHZ_CN, .ou = o->factory, .days = o->ca_days,
				  .pubkey = authz_pub, .issuer = root,
				  .exts = { { "basicConstraints", "critical,CA:FALSE" },
					    { "keyUsage", "critical,digitalSignature" },
					    { "extendedKeyUsage",
					      "critical," ST_OID_KP_AUTHORIZATION },
					    { "subjectKeyIdentifier", "hash" },
					    { "authorityKeyIdentifier", "keyid:always" } } },
			  root_signer);
	report = authz ? make_cert(&(struct cert_spec){
					   .cn = REPORT_CN, .ou = o->factory, .days = o->ca_days,
					   .pubkey = report_pub, .issuer = ca,
					   .exts = { { "basicConstraints", "critical,CA:FALSE" },
						     { "keyUsage", "critical,digitalSignature" },
						     { "extendedKeyUsage",
						       "critical," ST_OID_KP_REPORT },
						     { "subjectKeyIdentifier", "hash" },
						     { "authorityKeyIdentifier",
						       "keyid:always" } } },
				   ca_signer) :
			 NULL;
	if (!report)
		goto out;
	snprintf(path, sizeof(path), "%s/authorizations", o->dir);
	if (mkdir(path, 0755) < 0 && errno != EEXIST) {
		st_err("%s: %s", path, strerror(errno));
		goto out;
	}
	snprintf(path, sizeof(path), "%s/gateway.key", o->dir);
	if (write_cert(o->dir, "factory-root.pem", root) < 0 ||
	    write_cert(o->dir, "local-ca.pem", ca) < 0 || write_cert(o->dir, "gateway.pem", gw) < 0 ||
	    write_cert(o->dir, "authz.pem", authz) < 0 ||
	    write_cert(o->dir, "report.pem", report) < 0 || write_key(path, gw_key) < 0)
		goto out;
	if (write_station_yaml(o->dir, ca_uri, o->pin_file, o->pin_env, o->softhsm, o->file) < 0)
		goto out;
	printf("factory root CA:  %s/factory-root.pem (CN=%s, OU=%s, key %s)\n", o->dir, ROOT_CN,
	       o->factory, root_cfg.key);
	printf("local device CA:  %s/local-ca.pem (CN=%s, key %s)\n", o->dir, o->ca_cn, ca_cfg.key);
	printf("gateway TLS cert: %s/gateway.pem, key %s/gateway.key\n", o->dir, o->dir);
	printf("authorizations:   %s/authz.pem (CN=%s, key %s), documents in %s/authorizations\n",
	       o->dir, AUTHZ_CN, authz_cfg.key, o->dir);
	printf("report key:       %s/report.pem (CN=%s, key %s)\n", o->dir, REPORT_CN,
	       report_cfg.key);
	printf("configuration:    %s/station.yaml\n", o->dir);
	/* Left out of station.yaml: a station without them runs as before. */
	printf("to use production authorizations and job-end reports, add to it:\n"
	       "  authorizations: authorizations\n"
	       "  report: {key: \"%s\", cert: report.pem}\n",
	       o->file ? "report.key" : report_uri);
	rc = 0;
out:
	X509_free(root);
	X509_free(ca);
	X509_free(gw);
	X509_free(authz);
	X509_free(report);
	EVP_PKEY_free(authz_pub);
	EVP_PKEY_free(report_pub);
	drv_signer_close(authz_signer);
	drv_signer_close(report_signer);
	free(authz_uri);
	free(report_uri);
	EVP_PKEY_free(root_pub);
	EVP_PKEY_free(ca_pub);
	EVP_PKEY_free(gw_key);
	EVP_PKEY_free(fkey);
	drv_signer_close(root_signer);
	drv_signer_close(ca_signer);
	free(root_uri);
	free(ca_uri);
	free(module);
	free(label);
	return rc;
}

static int ca_csr(const struct ca_opts *o)
{
	struct drv_signer_config cfg = { "pkcs11", o->uri, o->pin_file, o->pin_env, NULL };
	struct drv_signer *signer = NULL;
	EVP_PKEY *pub = NULL;
	X509_REQ *req = NULL;
	STACK_OF(X509_EXTENSION) *exts = NULL;
	X509_EXTENSION *ext;
	void *sess = NULL;
	BIO *out = NULL;
	char err[512];
	int rc = 1;

	if (!o->uri || !o->factory || !o->cn) {
		st_err("ca csr needs --pkcs11, --factory and --cn; see 'station ca --help'");
		return 2;
	}
	if (check_factory(o->factory) < 0)
		return 2;
	if (!o->pin_file && !o->pin_env) {
		st_err("--pkcs11 needs --pin-file or --pin-env (PINs never go on the command line)");
		return 2;
	}
	if (drv_pkcs11_generate_ec_key(&cfg, "prime256v1", err, sizeof(err)) < 0) {
		st_err("%s", err);
		return 1;
	}
	if (open_signer(&cfg, &signer, &pub) < 0)
		return 1;
	req = X509_REQ_new();
	exts = sk_X509_EXTENSION_new_null();
	if (!req || !exts || !X509_REQ_set_version(req, 0) ||
	    set_name(X509_REQ_get_subject_name(req), o->cn, o->factory) < 0 ||
	    !X509_REQ_set_pubkey(req, pub))
		goto out;
	ext = X509V3_EXT_conf_nid(NULL, NULL, NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
	if (!ext || !sk_X509_EXTENSION_push(exts, ext))
		goto out;
	ext = X509V3_EXT_conf_nid(NULL, NULL, NID_key_usage, "critical,keyCertSign,cRLSign");
	if (!ext || !sk_X509_EXTENSION_push(exts, ext))
		goto out;
	if (!X509_REQ_add_extensions(req, exts))
		goto out;
	if (drv_signer_session_open(signer, &sess, err, sizeof(err)) < 0 ||
	    st_x509_req_sign(req, signer, sess, err, sizeof(err)) < 0) {
		st_err("signing the CSR: %s", err);
		goto out;
	}
	out = o->out ? BIO_new_file(o->out, "w") : BIO_new_fp(stdout, BIO_NOCLOSE);
	if (!out || PEM_write_bio_X509_REQ(out, req) != 1) {
		st_err("%s: cannot write the CSR", o->out ? o->out : "stdout");
		goto out;
	}
	rc = 0;
out:
	if (rc && !err[0])
		st_err("building the CSR failed");
	BIO_free(out);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	X509_REQ_free(req);
	drv_signer_session_close(signer, sess);
	EVP_PKEY_free(pub);
	drv_signer_close(signer);
	return rc;
}

static int ca_import(const struct ca_opts *o)
{
	struct st_config *cfg = NULL;
	struct drv_signer_config sc;
	struct drv_signer *signer = NULL;
	STACK_OF(X509) *certs = NULL, *chain = NULL, *roots = NULL;
	X509_STORE *store = NULL;
	X509_STORE_CTX *ctx = NULL;
	EVP_PKEY *pub = NULL;
	X509 *cert;
	char err[512];
	int rc = 1;

	if (!o->config || !o->cert) {
		st_err("ca import needs -c STATION.yaml and --cert FILE; see 'station ca --help'");
		return 2;
	}
	if (st_config_load(o->config, stderr, &cfg, err, sizeof(err)) < 0) {
		st_err("%s", err);
		return 1;
	}
	if (st_ca_read_certs(o->cert, 1, &certs, err, sizeof(err)) < 0) {
		st_err("%s", err);
		goto out;
	}
	cert = sk_X509_value(certs, 0);
	if (o->chain) {
		if (st_ca_read_certs(o->chain, 1, &chain, err, sizeof(err)) < 0) {
			st_err("%s", err);
			goto out;
		}
		if (!cfg->ca.chain) {
			st_err("%s: ca.chain is not set; add `chain: FILE` under ca: to install --chain",
			       cfg->path);
			goto out;
		}
	}
	if (st_ca_read_certs(cfg->ca.root, 1, &roots, err, sizeof(err)) < 0) {
		st_err("%s: ca.root: %s", cfg->path, err);
		goto out;
	}
	if (X509_check_ca(cert) != 1 || !(X509_get_key_usage(cert) & KU_KEY_CERT_SIGN)) {
		st_err("%s: not a CA certificate (needs CA:TRUE and keyCertSign)", o->cert);
		goto out;
	}
	st_config_signer_config(cfg, &sc);
	if (open_signer(&sc, &signer, &pub) < 0)
		goto out;
	if (EVP_PKEY_eq(X509_get0_pubkey(cert), pub) != 1) {
		st_err("%s: the certificate's public key is not the key of %s", o->cert, cfg->ca.key);
		goto out;
	}
	store = X509_STORE_new();
	ctx = X509_STORE_CTX_new();
	if (!store || !ctx)
		goto out;
	for (int i = 0; i < sk_X509_num(roots); i++)
		X509_STORE_add_cert(store, sk_X509_value(roots, i));
	if (!X509_STORE_CTX_init(ctx, store, cert, chain))
		goto out;
	if (X509_verify_cert(ctx) != 1) {
		st_err("%s: does not chain to the factory root %s: %s", o->cert, cfg->ca.root,
		       X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
		goto out;
	}
	if (st_copy_file_atomic(o->cert, cfg->ca.cert, 0644) < 0 ||
	    (o->chain && st_copy_file_atomic(o->chain, cfg->ca.chain, 0644) < 0)) {
		st_err("cannot install the certificate into %s", cfg->ca.cert);
		goto out;
	}
	printf("installed %s as %s\n", o->cert, cfg->ca.cert);
	rc = 0;
out:
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	sk_X509_pop_free(certs, X509_free);
	sk_X509_pop_free(chain, X509_free);
	sk_X509_pop_free(roots, X509_free);
	EVP_PKEY_free(pub);
	drv_signer_close(signer);
	st_config_free(cfg);
	return rc;
}

int st_cmd_ca(int argc, char **argv)
{
	struct ca_opts o;
	int rc;

	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		ca_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	rc = parse_ca_opts(argc - 1, argv + 1, &o);
	if (rc)
		return rc > 0 ? 0 : 2;
	if (strcmp(argv[1], "init") == 0)
		return ca_init(&o);
	if (strcmp(argv[1], "csr") == 0)
		return ca_csr(&o);
	if (strcmp(argv[1], "import") == 0)
		return ca_import(&o);
	st_err("unknown ca command '%s'; known: init, csr, import", argv[1]);
	return 2;
}
