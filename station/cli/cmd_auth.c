/* `station auth`: production authorizations (auth.h). `issue` is the brand owner's command:
 * it signs an authorization with the factory root key or the authorization key, in their
 * HSM (PKCS#11) or, for development, a key file. `check` and `status` are the factory's:
 * whether this station accepts a document, and how many units each authorization has left,
 * counted in the ledger across every station that writes to it. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "auth.h"
#include "ca.h"
#include "commands.h"
#include "config.h"
#include "err.h"
#include "fsutil.h"
#include "ledger.h"
#include "log.h"
#include "signer.h"

#define DAY 86400
#define MAX_LIST ST_AUTH_MAX_LIST

static const char usage[] =
	"usage: station auth issue (--pkcs11 URI (--pin-file F | --pin-env VAR) | --key FILE)\n"
	"                          --cert CERT.pem [--chain FILE] [--factory NAME]\n"
	"                          --sku SKU [--sku SKU...] --lot LOT --units N\n"
	"                          [--not-before TIME] (--not-after TIME | --days N)\n"
	"                          [--station NAME...] [--id ID] -o FILE.auth\n"
	"       station auth check -c STATION.yaml FILE...\n"
	"       station auth status -c STATION.yaml [--json]\n"
	"\n"
	"issue   (the brand owner) signs a production authorization: the factory may certify N\n"
	"        boards of the SKUs, in lot LOT, between the times, on the named stations (any\n"
	"        when none is named). The key is the factory root's or an authorization key\n"
	"        that the root certified for authorizations only (`station ca init` makes one:\n"
	"        authz.pem); CERT.pem is its certificate and --chain what lies between it and\n"
	"        the root. The factory defaults to CERT's organizational unit. TIME is\n"
	"        YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC); --not-before defaults to now. The\n"
	"        document (CMS SignedData, DER) goes to FILE.auth, which must not exist yet.\n"
	"check   verifies documents as this station would (factory root, purpose of the\n"
	"        signing key, factory, station name, validity) and says why one is refused.\n"
	"status  every authorization of the configured directory and of the ledger: units\n"
	"        issued, used, left, and by station (certificates, and intents still in flight\n"
	"        or left by a crash, which hold a unit until they are resolved).\n"
	"\n"
	"The station reads the documents from the directory its configuration names\n"
	"(`authorizations:`) at start and on SIGHUP. PINs come from a file or an environment\n"
	"variable, never the command line.\n";

struct auth_opts {
	const char *config, *uri, *key, *pin_file, *pin_env, *cert, *chain, *factory, *lot;
	const char *not_before, *not_after, *id, *out;
	const char *skus[MAX_LIST], *stations[MAX_LIST];
	size_t nskus, nstations;
	long long units, days;
	int json;
};

static int parse_number(const char *arg, const char *opt, long long max, long long *out)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(arg, &end, 10);
	if (errno || *end || v < 1 || v > max) {
		st_err("%s: '%s' is not a number from 1 to %lld", opt, arg, max);
		return -1;
	}
	*out = v;
	return 0;
}

static int parse_when(const char *arg, const char *opt, time_t *out)
{
	if (st_auth_time_parse_arg(arg, out) < 0) {
		st_err("%s: '%s' is not YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ", opt, arg);
		return -1;
	}
	return 0;
}

static int add_list(const char **list, size_t *n, const char *arg, const char *opt)
{
	if (*n == MAX_LIST) {
		st_err("%s: at most %d", opt, MAX_LIST);
		return -1;
	}
	list[(*n)++] = arg;
	return 0;
}

static int parse_opts(int argc, char **argv, struct auth_opts *o)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "pkcs11", required_argument, NULL, 'p' },
		{ "key", required_argument, NULL, 'k' },
		{ "pin-file", required_argument, NULL, 'P' },
		{ "pin-env", required_argument, NULL, 'E' },
		{ "cert", required_argument, NULL, 'C' },
		{ "chain", required_argument, NULL, 'H' },
		{ "factory", required_argument, NULL, 'f' },
		{ "sku", required_argument, NULL, 's' },
		{ "lot", required_argument, NULL, 'l' },
		{ "units", required_argument, NULL, 'u' },
		{ "not-before", required_argument, NULL, 'b' },
		{ "not-after", required_argument, NULL, 'a' },
		{ "days", required_argument, NULL, 'd' },
		{ "station", required_argument, NULL, 'S' },
		{ "id", required_argument, NULL, 'i' },
		{ "output", required_argument, NULL, 'o' },
		{ "json", no_argument, NULL, 'j' },
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
		case 'p': o->uri = optarg; break;
		case 'k': o->key = optarg; break;
		case 'P': o->pin_file = optarg; break;
		case 'E': o->pin_env = optarg; break;
		case 'C': o->cert = optarg; break;
		case 'H': o->chain = optarg; break;
		case 'f': o->factory = optarg; break;
		case 'l': o->lot = optarg; break;
		case 'b': o->not_before = optarg; break;
		case 'a': o->not_after = optarg; break;
		case 'i': o->id = optarg; break;
		case 'o': o->out = optarg; break;
		case 'j': o->json = 1; break;
		case 's':
			if (add_list(o->skus, &o->nskus, optarg, "--sku") < 0)
				return -1;
			break;
		case 'S':
			if (add_list(o->stations, &o->nstations, optarg, "--station") < 0)
				return -1;
			break;
		case 'u':
			if (parse_number(optarg, "--units", ST_AUTH_MAX_UNITS, &o->units) < 0)
				return -1;
			break;
		case 'd':
			if (parse_number(optarg, "--days", 36500, &o->days) < 0)
				return -1;
			break;
		case 'h': fputs(usage, stdout); return 1;
		case ':':
			st_err("option %s needs a value", argv[optind - 1]);
			return -1;
		default:
			st_err("unknown option '%s'; see 'station auth --help'", argv[optind - 1]);
			return -1;
		}
	}
	return 0;
}


/* The OU of cert's subject, the factory of the device PKI. */
static int cert_ou(X509 *cert, char *buf, size_t len)
{
	return X509_NAME_get_text_by_NID(X509_get_subject_name(cert),
					 NID_organizationalUnitName, buf, (int)len) > 0 ?
		       0 :
		       -1;
}

static int cmd_issue(const struct auth_opts *o)
{
	struct drv_signer_config sc = { 0 };
	struct drv_signer *signer = NULL;
	STACK_OF(X509) *certs = NULL, *chain = NULL;
	struct st_auth_spec spec;
	uint8_t *der = NULL;
	size_t len = 0;
	char err[1024], factory[128], nb[32], na[32];
	time_t now = time(NULL);
	int rc = 1, wrc;

	if (!!o->uri == !!o->key || !o->cert || !o->nskus || !o->lot || !o->units || !o->out ||
	    (!o->not_after == !o->days)) {
		st_err("auth issue needs one of --pkcs11 or --key, --cert, --sku, --lot, --units, "
		       "one of --not-after or --days, and -o; see 'station auth --help'");
		return 2;
	}
	if (o->uri && !o->pin_file && !o->pin_env) {
		st_err("--pkcs11 needs --pin-file or --pin-env (PINs never go on the command line)");
		return 2;
	}
	memset(&spec, 0, sizeof(spec));
	spec.id = o->id;
	spec.skus = o->skus;
	spec.nskus = o->nskus;
	spec.lot = o->lot;
	spec.units = o->units;
	spec.stations = o->nstations ? o->stations : NULL;
	spec.nstations = o->nstations;
	spec.not_before = now;
	if (o->not_before && parse_when(o->not_before, "--not-before", &spec.not_before) < 0)
		return 2;
	if (o->not_after && parse_when(o->not_after, "--not-after", &spec.not_after) < 0)
		return 2;
	if (o->days)
		spec.not_after = spec.not_before + (time_t)o->days * DAY;
	if (access(o->out, F_OK) == 0) {
		st_err("%s exists; an authorization is never overwritten: choose another name",
		       o->out);
		return 1;
	}
	if (st_ca_read_certs(o->cert, 1, &certs, err, sizeof(err)) < 0 ||
	    (o->chain && st_ca_read_certs(o->chain, 1, &chain, err, sizeof(err)) < 0)) {
		st_err("%s", err);
		goto out;
	}
	if (o->factory) {
		snprintf(factory, sizeof(factory), "%s", o->factory);
	} else if (cert_ou(sk_X509_value(certs, 0), factory, sizeof(factory)) < 0) {
		st_err("%s has no organizational unit: give the factory with --factory", o->cert);
		goto out;
	}
	spec.factory = factory;
	sc.backend = o->uri ? "pkcs11" : "file";
	sc.key = o->uri ? o->uri : o->key;
	sc.pin_file = o->pin_file;
	sc.pin_env = o->pin_env;
	if (drv_signer_open(&sc, &signer, err, sizeof(err)) < 0) {
		st_err("%s", err);
		goto out;
	}
	if (st_auth_issue(signer, sk_X509_value(certs, 0), chain, &spec, &der, &len, err,
			  sizeof(err)) < 0) {
		st_err("auth issue: %s", err);
		goto out;
	}
	wrc = st_write_file_atomic(o->out, der, len, 0644);
	if (wrc < 0) {
		st_err("%s: %s", o->out, strerror(-wrc));
		goto out;
	}
	st_auth_time_format(spec.not_before, nb);
	st_auth_time_format(spec.not_after, na);
	printf("%s: lot %s, %lld units of", o->out, spec.lot, (long long)spec.units);
	for (size_t i = 0; i < spec.nskus; i++)
		printf(" %s", spec.skus[i]);
	printf(", factory %s, valid %s to %s, %s%s\n", spec.factory, nb, na,
	       spec.nstations ? "stations" : "any station", spec.nstations ? ":" : "");
	for (size_t i = 0; i < spec.nstations; i++)
		printf("  %s\n", spec.stations[i]);
	if (!spec.nstations)
		st_notice("%s names no station: each ledger counts its units, so every station "
			  "with a ledger of its own could spend all %lld; name the stations "
			  "(--station) unless they share one ledger database",
			  o->out, (long long)spec.units);
	rc = 0;
out:
	OPENSSL_free(der);
	drv_signer_close(signer);
	sk_X509_pop_free(certs, X509_free);
	sk_X509_pop_free(chain, X509_free);
	return rc;
}

/* What the station checks documents against, from its configuration: the factory root and
 * the local CA's OU, and the station's name. */
struct station_ctx {
	struct st_config *cfg;
	struct st_ca *ca;
	char station[129];
	struct st_auth_env env;
};

static int station_open(const char *config, struct station_ctx *sx)
{
	char err[1024];

	memset(sx, 0, sizeof(*sx));
	if (!config) {
		st_err("give the station's configuration with -c STATION.yaml");
		return 2;
	}
	if (st_config_load(config, stderr, &sx->cfg, err, sizeof(err)) < 0 ||
	    st_ca_load(sx->cfg->ca.cert, sx->cfg->ca.chain, sx->cfg->ca.root, &sx->ca, err,
		       sizeof(err)) < 0) {
		st_err("%s", err);
		return 1;
	}
	st_config_station_name(sx->cfg, sx->station, sizeof(sx->station));
	sx->env.root = sx->ca->root;
	sx->env.factory = sx->ca->ou;
	sx->env.station = sx->station;
	sx->env.own_ledger = st_ledger_spec_is_file(sx->cfg->ledger);
	return 0;
}

static void station_close(struct station_ctx *sx)
{
	st_ca_free(sx->ca);
	st_config_free(sx->cfg);
}

static void print_auth_line(const char *prefix, const struct st_auth *a)
{
	char na[32];

	st_auth_time_format(a->not_after, na);
	printf("%s: OK: authorization %s, lot %s, %lld units of", prefix, a->id, a->lot,
	       (long long)a->units);
	for (size_t i = 0; i < a->nskus; i++)
		printf(" %s", a->skus[i]);
	printf(", valid until %s, signed by %s\n", na, a->signer ? a->signer : "?");
}

static int cmd_check(const struct auth_opts *o, int nfiles, char **files)
{
	struct station_ctx sx;
	struct st_auth *a;
	unsigned char *doc;
	size_t len;
	char err[1024];
	int rc, bad = 0;

	if (nfiles < 1) {
		st_err("auth check needs the files to check; see 'station auth --help'");
		return 2;
	}
	rc = station_open(o->config, &sx);
	if (rc)
		return rc;
	for (int i = 0; i < nfiles; i++) {
		doc = NULL;
		rc = st_read_file(files[i], ST_AUTH_MAX_BYTES, &doc, &len);
		if (rc < 0) {
			printf("%s: REFUSED: %s: %s\n", files[i], st_errname(ST_E_IO),
			       strerror(-rc));
			bad++;
			continue;
		}
		rc = st_auth_verify(doc, len, files[i], &sx.env, &a, err, sizeof(err));
		free(doc);
		if (rc < 0) {
			printf("%s: REFUSED: %s: %s\n", files[i], st_errname(rc), err);
			bad++;
			continue;
		}
		print_auth_line(files[i], a);
		st_auth_warn_unbound(a, files[i], &sx.env);
		st_auth_free(a);
	}
	station_close(&sx);
	return bad ? 1 : 0;
}

/* ---- status -------------------------------------------------------------------------- */

struct status_row {
	const struct st_auth *loaded; /* NULL: in the ledger only */
	char *id, *lot;
	int64_t units, used;
	time_t not_after;
};

struct status_ctx {
	struct st_auth_set *set;
	struct status_row *rows;
	size_t n, cap;
	int oom;
};

static struct status_row *row_for(struct status_ctx *c, const char *id)
{
	struct status_row *r;

	for (size_t i = 0; i < c->n; i++) {
		if (strcmp(c->rows[i].id, id) == 0)
			return &c->rows[i];
	}
	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 16;

		r = realloc(c->rows, cap * sizeof(*r));
		if (!r) {
			c->oom = 1;
			return NULL;
		}
		c->rows = r;
		c->cap = cap;
	}
	r = &c->rows[c->n];
	memset(r, 0, sizeof(*r));
	r->id = strdup(id);
	if (!r->id) {
		c->oom = 1;
		return NULL;
	}
	c->n++;
	return r;
}

static int on_ledger_auth(const struct st_ledger_auth *a, void *arg)
{
	struct status_ctx *c = arg;
	struct status_row *r = row_for(c, a->id);

	if (!r)
		return 1;
	r->used = a->used;
	r->units = a->units;
	r->not_after = a->not_after;
	if (!r->lot && a->lot)
		r->lot = strdup(a->lot);
	return 0;
}

struct by_station {
	json_t *obj;  /* JSON: {"station": {"certificates": n, "pending": n}} */
	int text;     /* text: print lines */
};

static int on_station(const char *station, int64_t certificates, int64_t pending, void *arg)
{
	struct by_station *b = arg;
	json_t *o;

	if (b->text) {
		printf("    station %-20s %lld certificates", station, (long long)certificates);
		if (pending)
			printf(", %lld pending (in flight, or left by a crash until the board "
			       "comes back)",
			       (long long)pending);
		printf("\n");
		return 0;
	}
	o = json_pack("{sIsI}", "certificates", (json_int_t)certificates, "pending",
		      (json_int_t)pending);
	if (o)
		json_object_set_new(b->obj, station, o);
	return 0;
}

static int cmd_status(const struct auth_opts *o)
{
	struct status_ctx c = { 0 };
	struct station_ctx sx;
	struct st_ledger *l = NULL;
	char err[1024], na[32];
	unsigned refused = 0;
	int rc;

	rc = station_open(o->config, &sx);
	if (rc)
		return rc;
	rc = 1;
	if (sx.cfg->authorizations &&
	    st_auth_set_load(sx.cfg->authorizations, &sx.env, &c.set, &refused, err,
			     sizeof(err)) < 0) {
		st_err("%s", err);
		goto out;
	}
	for (size_t i = 0; i < st_auth_set_count(c.set); i++) {
		const struct st_auth *a = st_auth_set_get(c.set, i);
		struct status_row *r = row_for(&c, a->id);

		if (!r)
			break;
		r->loaded = a;
		r->units = a->units;
		r->not_after = a->not_after;
		r->lot = strdup(a->lot);
	}
	/* A ledger file not made yet holds no authorization; a database is always asked. */
	if (!st_ledger_spec_is_file(sx.cfg->ledger) || access(sx.cfg->ledger, F_OK) == 0) {
		if (st_ledger_open_flags(sx.cfg->ledger, sx.station, ST_LEDGER_NOCREATE, &l, err,
					 sizeof(err)) < 0 ||
		    st_ledger_foreach_auth(l, on_ledger_auth, &c, err, sizeof(err)) < 0) {
			st_err("%s", err);
			goto out;
		}
	}
	if (c.oom) {
		st_err("out of memory");
		goto out;
	}
	if (!o->json)
		printf("%-34s %-16s %10s %10s %10s  %-20s %s\n", "authorization", "lot", "issued",
		       "used", "left", "valid until", "file");
	for (size_t i = 0; i < c.n; i++) {
		struct status_row *r = &c.rows[i];
		struct by_station b = { NULL, !o->json };
		int64_t left = r->units - r->used;

		st_auth_time_format(r->not_after, na);
		if (!o->json) {
			printf("%-34s %-16s %10lld %10lld %10lld  %-20s %s\n", r->id,
			       r->lot ? r->lot : "-", (long long)r->units, (long long)r->used,
			       (long long)(left > 0 ? left : 0), na,
			       r->loaded ? r->loaded->path : "(not in the directory)");
			if (r->loaded && left > 0 && left <= st_auth_warn_below(r->loaded))
				printf("    warning: %lld of %lld units left\n", (long long)left,
				       (long long)r->units);
		} else {
			b.obj = json_object();
		}
		if (l && st_ledger_auth_stations(l, r->id, on_station, &b, err, sizeof(err)) < 0) {
			st_err("%s", err);
			json_decref(b.obj);
			goto out;
		}
		if (o->json) {
			json_t *obj = json_pack("{sssssIsIsIsssbso}", "id", r->id, "lot",
						r->lot ? r->lot : "", "issued", (json_int_t)r->units,
						"used", (json_int_t)r->used, "left",
						(json_int_t)(left > 0 ? left : 0), "not_after", na,
						"loaded", r->loaded != NULL, "stations", b.obj);
			char *line = obj ? json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER) :
					   NULL;

			if (line)
				printf("%s\n", line);
			free(line);
			json_decref(obj);
		}
	}
	if (refused && !o->json)
		printf("%u document%s in %s refused (see above)\n", refused,
		       refused == 1 ? "" : "s", sx.cfg->authorizations);
	rc = fflush(stdout) == 0 ? 0 : 1;
out:
	for (size_t i = 0; i < c.n; i++) {
		free(c.rows[i].id);
		free(c.rows[i].lot);
	}
	free(c.rows);
	st_auth_set_unref(c.set);
	st_ledger_close(l);
	station_close(&sx);
	return rc;
}

int st_cmd_auth(int argc, char **argv)
{
	struct auth_opts o;
	int rc;

	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		fputs(usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	rc = parse_opts(argc - 1, argv + 1, &o);
	if (rc)
		return rc > 0 ? 0 : 2;
	if (strcmp(argv[1], "issue") == 0 || strcmp(argv[1], "status") == 0) {
		if (optind < argc - 1) {
			st_err("unexpected argument '%s'; see 'station auth --help'",
			       argv[optind + 1]);
			return 2;
		}
		return strcmp(argv[1], "issue") == 0 ? cmd_issue(&o) : cmd_status(&o);
	}
	if (strcmp(argv[1], "check") == 0)
		return cmd_check(&o, argc - 1 - optind, argv + 1 + optind);
	st_err("unknown auth command '%s'; known: issue, check, status", argv[1]);
	return 2;
}
