/* `station report`: production records from the ledger (report.h). summary and attempts
 * for the quality engineer (CSV or JSON Lines, over a time range), job for the brand owner
 * (the signed list of what was issued under one authorization), verify on the owner's side.
 * Nothing here writes to the ledger. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "auth.h"
#include "ca.h"
#include "cms.h"
#include "commands.h"
#include "config.h"
#include "err.h"
#include "fsutil.h"
#include "ledger.h"
#include "log.h"
#include "report.h"
#include "signer.h"

static const char usage[] =
	"usage: station report [summary] -c STATION.yaml [--by day|lot|sku|station|all]\n"
	"                      [--since TIME] [--until TIME] [--format csv|jsonl] [-o FILE]\n"
	"       station report attempts -c STATION.yaml [--since TIME] [--until TIME]\n"
	"                      [--format csv|jsonl] [-o FILE]\n"
	"       station report job -c STATION.yaml --authorization ID|FILE.auth -o REPORT\n"
	"       station report verify REPORT --root FACTORY-ROOT.pem [--authorization FILE.auth]\n"
	"\n"
	"summary   every board the station finished (or abandoned when it stopped) in the range,\n"
	"          summed up per group (default per day): attempts, passed, failed, abandoned,\n"
	"          delivered again, yield = passed / (passed + failed), failure reasons by count.\n"
	"attempts  one row per board: time, station, slot, outcome, reason, board serial number,\n"
	"          hardware id, SKU, firmware, profile, certificate serial, authorization, lot.\n"
	"job       the job-end report of one authorization for the brand owner: the serial and\n"
	"          public-key hash of every certificate issued under it, at every station of the\n"
	"          ledger, signed by this station's report key (report: in the configuration).\n"
	"verify    the owner's check of a job-end report: signature (any changed byte fails),\n"
	"          chain to the factory root, a key certified for reports only, and with\n"
	"          --authorization that it is about that document and within its units.\n"
	"\n"
	"TIME is YYYY-MM-DD (midnight UTC) or YYYY-MM-DDTHH:MM:SSZ; --since is inclusive,\n"
	"--until exclusive. CSV follows RFC 4180 (CRLF line ends, a header line), and text a\n"
	"spreadsheet would take for a formula (=, +, -, @ first, not a number) gets a ' before\n"
	"it; the columns and JSON keys are described in the README under \"Production records\".\n";

struct report_opts {
	const char *config, *since, *until, *by, *format, *output, *authorization, *root;
};

static int parse_opts(int argc, char **argv, struct report_opts *o)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "since", required_argument, NULL, 's' },
		{ "until", required_argument, NULL, 'u' },
		{ "by", required_argument, NULL, 'b' },
		{ "format", required_argument, NULL, 'f' },
		{ "output", required_argument, NULL, 'o' },
		{ "authorization", required_argument, NULL, 'a' },
		{ "root", required_argument, NULL, 'r' },
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
		case 's': o->since = optarg; break;
		case 'u': o->until = optarg; break;
		case 'b': o->by = optarg; break;
		case 'f': o->format = optarg; break;
		case 'o': o->output = optarg; break;
		case 'a': o->authorization = optarg; break;
		case 'r': o->root = optarg; break;
		case 'h': fputs(usage, stdout); return 1;
		case ':':
			st_err("option %s needs a value", argv[optind - 1]);
			return -1;
		default:
			st_err("unknown option '%s'; see 'station report --help'",
			       argv[optind - 1]);
			return -1;
		}
	}
	return 0;
}

/* A time option; absent: dflt. */
static int parse_when(const char *arg, const char *opt, time_t dflt, time_t *out)
{
	*out = dflt;
	if (arg && st_auth_time_parse_arg(arg, out) < 0) {
		st_err("%s: '%s' is not YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ", opt, arg);
		return -1;
	}
	return 0;
}

/* An output written whole or not at all: FILE.tmp renamed over FILE once complete. */
struct output {
	FILE *f;
	char *tmp;
	const char *path;
};

static int output_open(struct output *out, const char *path)
{
	memset(out, 0, sizeof(*out));
	out->f = stdout;
	if (!path)
		return 0;
	out->path = path;
	if (asprintf(&out->tmp, "%s.tmp", path) < 0) {
		out->tmp = NULL;
		return -1;
	}
	out->f = fopen(out->tmp, "w");
	if (!out->f) {
		st_err("%s: %s", out->tmp, strerror(errno));
		free(out->tmp);
		out->tmp = NULL;
		return -1;
	}
	return 0;
}

/* Finishes the output; ok 0 throws it away. Returns 0 or -1 after saying why. */
static int output_close(struct output *out, int ok)
{
	int err = 0;

	if (!out->path)
		return fflush(stdout) == 0 && ok ? 0 : -1;
	if (fflush(out->f) != 0 || fsync(fileno(out->f)) != 0)
		err = errno;
	if (fclose(out->f) != 0 && !err)
		err = errno;
	if (ok && !err && rename(out->tmp, out->path) != 0)
		err = errno;
	if (!ok || err)
		unlink(out->tmp);
	if (err)
		st_err("%s: %s", out->path, strerror(err));
	free(out->tmp);
	return ok && !err ? 0 : -1;
}

static int open_ledger(const struct report_opts *o, struct st_config **cfg, struct st_ledger **l)
{
	char err[1024];

	*cfg = NULL;
	*l = NULL;
	if (!o->config) {
		st_err("give the station's configuration with -c STATION.yaml");
		return 2;
	}
	if (st_config_load(o->config, stderr, cfg, err, sizeof(err)) < 0 ||
	    st_ledger_open_flags((*cfg)->ledger, NULL, ST_LEDGER_NOCREATE, l, err,
				 sizeof(err)) < 0) {
		st_err("%s", err);
		st_config_free(*cfg);
		*cfg = NULL;
		return 1;
	}
	return 0;
}

static int cmd_summary(const struct report_opts *o, int attempts)
{
	struct st_config *cfg = NULL;
	struct st_ledger *l = NULL;
	struct st_report *r = NULL;
	struct output out;
	time_t since, until;
	char err[1024];
	int by = ST_REPORT_BY_DAY, jsonl, rc;

	if (o->format && strcmp(o->format, "csv") != 0 && strcmp(o->format, "jsonl") != 0) {
		st_err("--format must be csv or jsonl, not %s", o->format);
		return 2;
	}
	jsonl = o->format && strcmp(o->format, "jsonl") == 0;
	if (o->by && (by = st_report_by_parse(o->by)) < 0) {
		st_err("--by must be day, lot, sku, station or all, not %s", o->by);
		return 2;
	}
	if (attempts && o->by) {
		st_err("--by applies to the summary, not to attempts");
		return 2;
	}
	if (parse_when(o->since, "--since", 0, &since) < 0 ||
	    parse_when(o->until, "--until", 0, &until) < 0)
		return 2;
	rc = open_ledger(o, &cfg, &l);
	if (rc)
		return rc;
	rc = 1;
	if (output_open(&out, o->output) < 0)
		goto out;
	if (attempts) {
		rc = st_report_write_attempts(l, since, until, out.f, jsonl, err, sizeof(err));
	} else {
		rc = st_report_summarize(l, since, until, (enum st_report_by)by, &r, err,
					 sizeof(err));
		if (rc == 0) {
			rc = st_report_write(r, out.f, jsonl);
			if (rc < 0)
				st_msgf(err, sizeof(err), "%s", st_strerror(rc));
		}
	}
	if (rc < 0)
		st_err("%s", err);
	rc = output_close(&out, rc == 0) == 0 ? 0 : 1;
out:
	st_report_free(r);
	st_ledger_close(l);
	st_config_free(cfg);
	return rc;
}


/* The authorization id of --authorization: an id, or a document file (read as the station
 * that issued under it would, at any time). */
static int auth_id_of(const char *arg, const struct st_ca *ca, const char *station, char *id,
		      size_t len)
{
	struct st_auth_env env = { ca->root, ca->ou, station, 0, 1, 0 };
	struct st_auth *a = NULL;
	unsigned char *doc = NULL;
	size_t n = 0;
	char err[1024];
	int rc;

	if (access(arg, F_OK) != 0) {
		st_msgf(id, len, "%s", arg);
		return 0;
	}
	rc = st_read_file(arg, ST_AUTH_MAX_BYTES, &doc, &n);
	if (rc < 0) {
		st_err("%s: %s", arg, strerror(-rc));
		return -1;
	}
	rc = st_auth_verify(doc, n, arg, &env, &a, err, sizeof(err));
	free(doc);
	if (rc < 0) {
		st_err("%s: %s", st_errname(rc), err);
		return -1;
	}
	st_msgf(id, len, "%s", a->id);
	st_auth_free(a);
	return 0;
}

static int cmd_job(const struct report_opts *o)
{
	struct drv_signer_config sc;
	struct drv_signer *signer = NULL;
	STACK_OF(X509) *certs = NULL, *chain = NULL;
	struct st_config *cfg = NULL;
	struct st_ledger *l = NULL;
	struct st_ca *ca = NULL;
	char err[1024], station[129], id[ST_AUTH_MAX_ID + 1];
	char *json = NULL, *subj = NULL;
	uint8_t *der = NULL;
	size_t jlen = 0, dlen = 0, count = 0;
	int rc, wrc;

	if (!o->authorization || !o->output) {
		st_err("report job needs --authorization and -o; see 'station report --help'");
		return 2;
	}
	rc = open_ledger(o, &cfg, &l);
	if (rc)
		return rc;
	rc = 1;
	st_config_station_name(cfg, station, sizeof(station));
	if (!cfg->report.key || !cfg->report.cert) {
		st_err("%s: no report key: add a 'report:' section (key, cert); `station ca init` "
		       "makes one",
		       cfg->path);
		goto out;
	}
	if (st_ca_load(cfg->ca.cert, cfg->ca.chain, cfg->ca.root, &ca, err, sizeof(err)) < 0) {
		st_err("%s", err);
		goto out;
	}
	if (auth_id_of(o->authorization, ca, station, id, sizeof(id)) < 0)
		goto out;
	if (st_report_job_content(l, id, station, ca->ou, &json, &jlen, &count, err,
				  sizeof(err)) < 0) {
		st_err("%s", err);
		goto out;
	}
	/* The chain a verifier needs above the report key: the local CA and what is above it
	 * up to, not including, the factory root. */
	if (st_ca_read_certs(cfg->report.cert, 1, &certs, err, sizeof(err)) < 0) {
		st_err("%s", err);
		goto out;
	}
	chain = sk_X509_new_null();
	if (!chain || !X509_add_cert(chain, ca->cert, X509_ADD_FLAG_UP_REF) ||
	    !X509_add_certs(chain, ca->chain, X509_ADD_FLAG_UP_REF)) {
		st_err("out of memory");
		goto out;
	}
	st_config_report_signer_config(cfg, &sc);
	if (drv_signer_open(&sc, &signer, err, sizeof(err)) < 0 ||
	    st_cms_sign(signer, sk_X509_value(certs, 0), chain, ST_OID_CT_REPORT,
			(const uint8_t *)json, jlen, &der, &dlen, err, sizeof(err)) < 0) {
		st_err("report key %s: %s", cfg->report.key, err);
		goto out;
	}
	wrc = st_write_file_atomic(o->output, der, dlen, 0644);
	if (wrc < 0) {
		st_err("%s: %s", o->output, strerror(-wrc));
		goto out;
	}
	subj = st_cms_subject(sk_X509_value(certs, 0));
	printf("%s: %zu certificates under authorization %s, signed by %s\n", o->output, count,
	       id, subj ? subj : "?");
	rc = 0;
out:
	free(subj);
	free(json);
	OPENSSL_free(der);
	drv_signer_close(signer);
	sk_X509_pop_free(certs, X509_free);
	sk_X509_pop_free(chain, X509_free);
	st_ca_free(ca);
	st_ledger_close(l);
	st_config_free(cfg);
	return rc;
}

static int cmd_verify(const struct report_opts *o, int nfiles, char **files)
{
	STACK_OF(X509) *roots = NULL;
	unsigned char *doc = NULL, *auth = NULL;
	struct st_report_job j;
	size_t len = 0, alen = 0;
	char err[1024], when[32];
	int rc = 1;

	if (nfiles != 1 || !o->root) {
		st_err("report verify needs one REPORT and --root; see 'station report --help'");
		return 2;
	}
	if (st_ca_read_certs(o->root, 1, &roots, err, sizeof(err)) < 0) {
		st_err("%s", err);
		return 1;
	}
	rc = st_read_file(files[0], ST_CMS_MAX_BYTES, &doc, &len);
	if (rc == 0 && o->authorization)
		rc = st_read_file(o->authorization, ST_AUTH_MAX_BYTES, &auth, &alen);
	if (rc < 0) {
		st_err("%s: %s", doc ? o->authorization : files[0], strerror(-rc));
		rc = 1;
		goto out;
	}
	rc = st_report_verify(doc, len, sk_X509_value(roots, 0), auth, alen, &j, err,
			      sizeof(err));
	if (rc < 0) {
		printf("%s: REFUSED: %s: %s\n", files[0], st_errname(rc), err);
		rc = 1;
		goto out;
	}
	st_auth_time_format(j.generated_at, when);
	printf("%s: OK: station %s (factory %s), authorization %s, lot %s: %lld certificates "
	       "of %lld units%s, generated %s, signed by %s\n",
	       files[0], j.station, j.factory, j.auth_id, j.lot, (long long)j.count,
	       (long long)j.units, auth ? " (checked against the document)" : "", when,
	       j.signer);
	st_report_job_clear(&j);
	rc = 0;
out:
	free(doc);
	free(auth);
	sk_X509_pop_free(roots, X509_free);
	return rc;
}

int st_cmd_report(int argc, char **argv)
{
	struct report_opts o;
	const char *sub = "summary";
	int rc, shift = 0;

	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		fputs(usage, stdout);
		return 0;
	}
	if (argc >= 2 && argv[1][0] != '-') {
		sub = argv[1];
		shift = 1;
	}
	rc = parse_opts(argc - shift, argv + shift, &o);
	if (rc)
		return rc > 0 ? 0 : 2;
	if (strcmp(sub, "verify") == 0)
		return cmd_verify(&o, argc - shift - optind, argv + shift + optind);
	if (optind < argc - shift) {
		st_err("unexpected argument '%s'; see 'station report --help'",
		       argv[shift + optind]);
		return 2;
	}
	if (strcmp(sub, "summary") == 0)
		return cmd_summary(&o, 0);
	if (strcmp(sub, "attempts") == 0)
		return cmd_summary(&o, 1);
	if (strcmp(sub, "job") == 0)
		return cmd_job(&o);
	st_err("unknown report command '%s'; known: summary, attempts, job, verify", sub);
	return 2;
}
