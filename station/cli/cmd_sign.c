/* `station sign`: one CSR in, one certificate out, through the same checks and the same
 * signer as the line. A refusal is one line on stderr naming what is wrong and a non-zero
 * exit; nothing is written then. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca.h"
#include "commands.h"
#include "config.h"
#include "err.h"
#include "fsutil.h"
#include "issue.h"
#include "log.h"
#include "policy.h"
#include "profile.h"
#include "signer.h"

static void sign_usage(FILE *out)
{
	fprintf(out,
		"usage: station sign -c STATION.yaml --csr FILE --device-id ID [--profile FILE]\n"
		"                    [-o FILE]\n"
		"\n"
		"Checks the CSR (PEM or DER) against the profile for device ID and signs it with the\n"
		"configured CA. Without --profile the built-in default applies: the Foundries-style\n"
		"device certificate (CN=ID, OU=the CA's OU, not production, EC P-256 only, 7300\n"
		"days, clamped to the CA's validity). The certificate (PEM) goes to -o FILE or to\n"
		"stdout.\n"
		"\n"
		"  -c, --config FILE   station configuration (its ca: section names signer and CA)\n"
		"      --csr FILE      the certificate signing request, PEM or DER, at most %d bytes\n"
		"      --device-id ID  the identity the certificate is for (its CN)\n"
		"      --profile FILE  a per-SKU profile (YAML) whose policy applies\n"
		"  -o, --output FILE   write the certificate here (atomically) instead of stdout\n"
		"  -h, --help          this text\n"
		"\n"
		"Exit status: 0 signed, 1 refused or failed, 2 bad command line.\n",
		ST_CSR_MAX_BYTES);
}

struct sign_opts {
	const char *config, *csr, *device_id, *profile, *output;
};

static int parse_sign_opts(int argc, char **argv, struct sign_opts *o)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "csr", required_argument, NULL, 'r' },
		{ "device-id", required_argument, NULL, 'd' },
		{ "profile", required_argument, NULL, 'p' },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	memset(o, 0, sizeof(*o));
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":c:o:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': o->config = optarg; break;
		case 'r': o->csr = optarg; break;
		case 'd': st_device_id_normalize(optarg); o->device_id = optarg; break;
		case 'p': o->profile = optarg; break;
		case 'o': o->output = optarg; break;
		case 'h': sign_usage(stdout); return 1;
		case ':':
			st_err("option %s needs a value", argv[optind - 1]);
			return -1;
		default:
			st_err("unknown option '%s'; see 'station sign --help'", argv[optind - 1]);
			return -1;
		}
	}
	if (optind < argc) {
		st_err("unexpected argument '%s'; see 'station sign --help'", argv[optind]);
		return -1;
	}
	if (!o->config || !o->csr || !o->device_id) {
		st_err("sign needs -c STATION.yaml, --csr FILE and --device-id ID");
		return -1;
	}
	return 0;
}

int st_cmd_sign(int argc, char **argv)
{
	struct sign_opts o;
	struct st_config *cfg = NULL;
	const struct st_profile *profile = NULL;
	struct st_policy policy;
	struct st_ca *ca = NULL;
	struct drv_signer *signer = NULL;
	struct st_issuer *issuer = NULL;
	struct st_cert *cert = NULL;
	unsigned char *csr = NULL;
	size_t csr_len;
	char *pem = NULL;
	size_t pem_len;
	void *sess = NULL;
	char err[1024];
	int rc;

	rc = parse_sign_opts(argc, argv, &o);
	if (rc)
		return rc > 0 ? 0 : 2;
	if (st_config_load(o.config, stderr, &cfg, err, sizeof(err)) < 0) {
		st_err("%s", err);
		return 1;
	}
	rc = 1;
	if (st_config_check_files(cfg, ST_CONFIG_FILES_CA, stderr, err, sizeof(err)) < 0) {
		st_err("%s", err);
		goto out;
	}
	if (o.profile) {
		if (st_profile_load(o.profile, stderr, &profile, err, sizeof(err)) < 0) {
			st_err("%s", err);
			goto out;
		}
		policy = profile->policy;
		/* This command keeps no ledger, so it cannot count units. */
		if (policy.authorization_required) {
			st_err("%s: profile %s requires a production authorization: its "
			       "certificates are issued by `station run` or `station serve`, "
			       "which consume units in the ledger",
			       o.profile, profile->sku);
			goto out;
		}
		if (st_profile_check_device_id(profile, o.device_id, err, sizeof(err)) < 0) {
			st_err("%s: %s", o.profile, err);
			goto out;
		}
	} else {
		st_policy_default(&policy);
	}
	{
		int r = st_read_file(o.csr, ST_CSR_MAX_BYTES, &csr, &csr_len);
		if (r < 0 && r != -EFBIG) {
			st_err("%s: %s", o.csr, strerror(-r));
			goto out;
		}
	}
	if (st_ca_load(cfg->ca.cert, cfg->ca.chain, cfg->ca.root, &ca, err, sizeof(err)) < 0) {
		st_err("%s", err);
		goto out;
	}
	if (st_config_open_signer(cfg, &signer, err, sizeof(err)) < 0 ||
	    drv_signer_session_open(signer, &sess, err, sizeof(err)) < 0 ||
	    st_issuer_new(ca, signer, sess, &issuer, err, sizeof(err)) < 0) {
		st_err("%s", err);
		goto out;
	}
	if (st_issue_csr(issuer, &policy, csr, csr_len, o.device_id, 0, &cert, err,
			 sizeof(err)) < 0) {
		st_err("%s: %s", o.csr, err);
		goto out;
	}
	if (st_cert_pem(cert->der, cert->der_len, &pem, &pem_len) < 0) {
		st_err("out of memory");
		goto out;
	}
	if (o.output) {
		int r = st_write_file_atomic(o.output, pem, pem_len, 0644);
		if (r < 0) {
			st_err("%s: %s", o.output, strerror(-r));
			goto out;
		}
	} else if (fwrite(pem, 1, pem_len, stdout) != pem_len || fflush(stdout) != 0) {
		st_err("stdout: %s", strerror(errno));
		goto out;
	}
	rc = 0;
out:
	free(pem);
	st_cert_free(cert);
	st_issuer_free(issuer);
	if (signer)
		drv_signer_session_close(signer, sess);
	drv_signer_close(signer);
	st_ca_free(ca);
	free(csr);
	st_profile_free(profile);
	st_config_free(cfg);
	return rc;
}
