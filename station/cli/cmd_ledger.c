/* `station ledger`: reads the ledger for people and for other systems. list and show for an
 * operator, export (CSV per RFC 4180, or JSON Lines) for the line's other systems, check
 * for an auditor: every stored certificate verified against the CA and its row, duplicates
 * reported (a device id certified again only when the profile it was issued under refuses
 * reprovisioning), intents without a certificate listed as "possibly signed"; backup for an
 * administrator. Nothing here writes to the ledger but migrate, which moves a station's
 * SQLite ledger into the line's PostgreSQL one, and supersede, the remedy for a stranded
 * intent (one row); a running station may keep writing while these read (WAL readers, and
 * PostgreSQL's, see one consistent snapshot). Every command takes a ledger file or a
 * PostgreSQL connection string. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "ca.h"
#include "commands.h"
#include "config.h"
#include "digest.h"
#include "err.h"
#include "issue.h"
#include "ledger.h"
#include "ledger_export.h"
#include "profile.h"

struct opts {
	const char *config;
	const char *ledger;
	const char *state;
	const char *format;
	const char *output;
	const char *cert;
	const char *ca;
	const char *from;
	int allow_reissue;
	int help;
};

static const char usage_main[] =
	"usage: station ledger [-c STATION.yaml | --ledger FILE] <command> [options]\n"
	"\n"
	"Reads the station's ledger: the durable record of every certificate issued.\n"
	"\n"
	"commands:\n"
	"  list      one line per row (id, serial, device id, profile, slot, state, times, reason)\n"
	"  show      every field of one row and its certificate as PEM\n"
	"  export    all rows as CSV (RFC 4180) or JSON Lines\n"
	"  check     verify every certificate against the CA and its row; report duplicates\n"
	"  flags     boards that were refused and flagged\n"
	"  backup    copy the ledger safely while a station writes to it\n"
	"  migrate   move a station's ledger file into the line's PostgreSQL ledger\n"
	"  supersede give up a stranded intent, so that its device id may be issued again\n"
	"\n"
	"  -c, --config FILE   station configuration (its ledger: and ca: cert)\n"
	"      --ledger FILE   the ledger itself, without a configuration: a file, or a\n"
	"                      PostgreSQL connection string (postgresql://... or key=value\n"
	"                      words; the password in a password file, never here)\n"
	"\n"
	"'station ledger <command> --help' describes a command.\n";

static const char usage_list[] =
	"usage: station ledger [-c STATION.yaml | --ledger FILE] list [--state STATE]\n"
	"\n"
	"One line per row in id order: id, serial, device id, profile, slot, state, created,\n"
	"signed and delivered times (UTC) and the failure reason. An intent is a row whose\n"
	"certificate was never recorded: after a crash it is \"possibly signed\".\n"
	"\n"
	"  --state STATE   only rows in STATE: intent, signed, delivered or failed\n";

static const char usage_show[] =
	"usage: station ledger [-c STATION.yaml | --ledger FILE] show ID|SERIAL\n"
	"\n"
	"Every field of one row and its certificate as PEM text. A number is taken as a row\n"
	"id (and as a serial when no row has that id); anything else as a serial (hex).\n";

static const char usage_export[] =
	"usage: station ledger [-c STATION.yaml | --ledger FILE] export --format csv|jsonl\n"
	"                      [--cert base64|pem|none] [--state STATE] [-o FILE]\n"
	"\n"
	"Every row, one per line: CSV with a header line and CRLF line ends (RFC 4180), or one\n"
	"JSON object per line. Times are UTC, ISO 8601 (empty or null when not yet); hashes are\n"
	"lower-case hex. The certificate is base64 DER (column cert_der_base64, the default),\n"
	"PEM text (column cert_pem) or left out. With -o the file is written whole or not at\n"
	"all (temporary file, fsync, rename). A CSV field a spreadsheet would take for a formula\n"
	"(=, +, -, @ first, not a number) gets a ' before it.\n";

static const char usage_check[] =
	"usage: station ledger -c STATION.yaml check [--allow-reissue]\n"
	"       station ledger --ledger FILE check --ca CA.pem [--allow-reissue]\n"
	"\n"
	"Checks the file's integrity (SQLite), then every stored certificate: its signature\n"
	"with the CA's public key, its issuer, that its public key hash, serial, CN and\n"
	"validity equal its row's; reports a serial or public key in more than one row and a\n"
	"device id with more than one signed or delivered row. With -c the latter is judged\n"
	"by the reprovision policy of the profile (SKU) each row was issued under, as the\n"
	"configuration's profiles say it now: a note when every later certificate's profile\n"
	"reissues, a problem when one refuses or is not in the configuration. Without a\n"
	"configuration it is a problem unless --allow-reissue. Intents without a certificate\n"
	"are listed as \"possibly signed\" and are not problems. Exit status 0 when\n"
	"everything checks, 1 with one \"problem:\" line per problem.\n"
	"\n"
	"  --ca FILE         the CA certificate (default: the configuration's ca: cert)\n"
	"  --allow-reissue   a device id with several certificates is never a problem\n";

static const char usage_flags[] =
	"usage: station ledger [-c STATION.yaml | --ledger FILE] flags\n"
	"\n"
	"Boards the station refused and flagged (a recorded device id claimed with another key,\n"
	"a key recorded for another device id): time, station, slot, device id, key hash,\n"
	"reason.\n";

static const char usage_supersede[] =
	"usage: station ledger [-c STATION.yaml | --ledger FILE] supersede ID|SERIAL\n"
	"\n"
	"Marks an intent (a row whose certificate was never recorded: \"possibly signed\" after\n"
	"a crash) failed with the reason \"superseded\". An intent for another key blocks its\n"
	"device id (LEDGER_DUP_ID) until it is superseded; no certificate of it ever left the\n"
	"station, so its serial and key may be used again. Only an intent can be superseded;\n"
	"any other row is refused. Use it once the station that wrote the intent is stopped or\n"
	"has crashed, not for an intent a running station is signing.\n";

static const char *dash(const char *s)
{
	return s && *s ? s : "-";
}

/* ---- list ---- */

struct list_line {
	char *f[10];
};

struct list_ctx {
	int state; /* filter, or -1 */
	struct list_line *lines;
	size_t n, cap;
	int oom;
};

static int list_row(const struct st_ledger_row *r, void *arg)
{
	struct list_ctx *c = arg;
	struct list_line *ln;
	char id[24], t[3][32];
	const char *v[10];
	int i;

	if (c->state >= 0 && (int)r->state != c->state)
		return 0;
	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 64;
		struct list_line *p = realloc(c->lines, cap * sizeof(*p));

		if (!p) {
			c->oom = 1;
			return 1;
		}
		c->lines = p;
		c->cap = cap;
	}
	snprintf(id, sizeof(id), "%lld", (long long)r->id);
	st_export_time(r->created, t[0], sizeof(t[0]));
	st_export_time(r->signed_at, t[1], sizeof(t[1]));
	st_export_time(r->delivered_at, t[2], sizeof(t[2]));
	v[0] = id;
	v[1] = r->serial;
	v[2] = r->device_id;
	v[3] = dash(r->profile);
	v[4] = dash(r->slot);
	v[5] = st_ledger_state_name(r->state);
	v[6] = t[0];
	v[7] = t[1];
	v[8] = t[2];
	v[9] = dash(r->reason);
	ln = &c->lines[c->n++];
	for (i = 0; i < 10; i++) {
		ln->f[i] = strdup(v[i]);
		if (!ln->f[i])
			c->oom = 1;
	}
	return c->oom;
}

/* One table line: columns padded to their width, the last (the reason) not. */
static void print_line(const char *const f[10], const size_t width[10])
{
	int k;

	for (k = 0; k < 9; k++)
		printf("%-*s  ", (int)width[k], dash(f[k]));
	printf("%s\n", dash(f[9]));
}

static int cmd_list(struct st_ledger *l, const struct opts *o)
{
	static const char *const heads[10] = { "ID",	  "SERIAL",  "DEVICE ID", "PROFILE",
					       "SLOT",	  "STATE",   "CREATED",	  "SIGNED",
					       "DELIVERED", "REASON" };
	struct list_ctx c = { .state = -1 };
	size_t width[10], i;
	char err[512];
	int rc, k;

	if (o->state) {
		c.state = st_ledger_state_parse(o->state);
		if (c.state < 0) {
			fprintf(stderr, "station ledger list: unknown state '%s'; expected intent, "
					"signed, delivered or failed\n",
				o->state);
			return 2;
		}
	}
	rc = st_ledger_foreach(l, list_row, &c, err, sizeof(err));
	if (rc == 0 && c.oom)
		rc = st_errf(err, sizeof(err), ST_E_NOMEM, "out of memory listing the ledger");
	if (rc == 0) {
		for (k = 0; k < 10; k++)
			width[k] = strlen(heads[k]);
		for (i = 0; i < c.n; i++)
			for (k = 0; k < 10; k++)
				if (c.lines[i].f[k] && strlen(c.lines[i].f[k]) > width[k])
					width[k] = strlen(c.lines[i].f[k]);
		print_line(heads, width);
		for (i = 0; i < c.n; i++)
			print_line((const char *const *)c.lines[i].f, width);
	}
	for (i = 0; i < c.n; i++)
		for (k = 0; k < 10; k++)
			free(c.lines[i].f[k]);
	free(c.lines);
	if (rc < 0) {
		fprintf(stderr, "station ledger list: %s\n", err);
		return 1;
	}
	return 0;
}

/* ---- show ---- */

static int find_row(struct st_ledger *l, const char *arg, struct st_ledger_row **row,
		    char *err, size_t errlen)
{
	char *end;
	long long id;
	int rc;

	errno = 0;
	id = strtoll(arg, &end, 10);
	if (*arg && *end == 0 && errno == 0 && id > 0) {
		rc = st_ledger_get(l, id, row, err, errlen);
		if (rc != ST_E_NOTFOUND)
			return rc;
	}
	rc = st_ledger_get_serial(l, arg, row, err, errlen);
	if (rc == ST_E_NOTFOUND)
		st_errf(err, errlen, rc, "ledger %s: no row with id or serial '%s'",
			st_ledger_path(l), arg);
	return rc;
}

static int cmd_show(struct st_ledger *l, int argc, char **argv)
{
	struct st_ledger_row *r = NULL;
	char err[512], t[32], h[65];
	char *pem = NULL;
	size_t pem_len;
	int rc;

	if (argc != 1) {
		fprintf(stderr, "station ledger show: expected one row id or serial\n%s",
			usage_show);
		return 2;
	}
	rc = find_row(l, argv[0], &r, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "station ledger show: %s\n", err);
		return 1;
	}
	printf("id:            %lld\n", (long long)r->id);
	printf("serial:        %s\n", r->serial);
	printf("device id:     %s\n", r->device_id);
	printf("profile:       %s\n", dash(r->profile));
	printf("station:       %s\n", r->station);
	printf("slot:          %s\n", dash(r->slot));
	printf("state:         %s%s\n", st_ledger_state_name(r->state),
	       r->state == ST_LEDGER_INTENT ? " (possibly signed: no certificate recorded)" : "");
	printf("reason:        %s\n", dash(r->reason));
	st_export_hex32(r->csr_sha256, h);
	printf("csr sha256:    %s\n", h);
	st_export_hex32(r->pubkey_sha256, h);
	printf("pubkey sha256: %s\n", h);
	st_export_time(r->created, t, sizeof(t));
	printf("created:       %s\n", t);
	st_export_time(r->signed_at, t, sizeof(t));
	printf("signed:        %s\n", t);
	st_export_time(r->delivered_at, t, sizeof(t));
	printf("delivered:     %s\n", t);
	st_export_time(r->not_before, t, sizeof(t));
	printf("not before:    %s\n", t);
	st_export_time(r->not_after, t, sizeof(t));
	printf("not after:     %s\n", t);
	if (r->cert_der) {
		if (st_cert_pem(r->cert_der, r->cert_len, &pem, &pem_len) < 0) {
			fprintf(stderr, "station ledger show: out of memory\n");
			rc = -1;
		} else {
			fwrite(pem, 1, pem_len, stdout);
		}
	}
	free(pem);
	st_ledger_row_free(r);
	return rc < 0 ? 1 : 0;
}

/* ---- export ---- */

/* Opens FILE.tmp beside path for an export written whole or not at all. */
static FILE *open_tmp(const char *path, char **tmp)
{
	FILE *f;

	*tmp = NULL;
	if (asprintf(tmp, "%s.tmp", path) < 0) {
		*tmp = NULL;
		return NULL;
	}
	f = fopen(*tmp, "w");
	if (!f) {
		free(*tmp);
		*tmp = NULL;
	}
	return f;
}

static int close_tmp(FILE *f, const char *tmp, const char *path, int ok)
{
	int rc = 0;

	if (fflush(f) != 0 || fsync(fileno(f)) != 0)
		rc = -errno;
	if (fclose(f) != 0 && rc == 0)
		rc = -errno;
	if (ok && rc == 0 && rename(tmp, path) != 0)
		rc = -errno;
	if (!ok || rc < 0)
		unlink(tmp);
	return rc;
}

static int cmd_export(struct st_ledger *l, const struct opts *o)
{
	struct st_export c = { .out = stdout, .state = -1 };
	char err[512];
	char *tmp = NULL;
	int rc;

	if (!o->format || (strcmp(o->format, "csv") != 0 && strcmp(o->format, "jsonl") != 0)) {
		fprintf(stderr, "station ledger export: --format must be csv or jsonl%s%s\n%s",
			o->format ? ", not " : "", o->format ? o->format : "", usage_export);
		return 2;
	}
	c.jsonl = strcmp(o->format, "jsonl") == 0;
	if (!o->cert || strcmp(o->cert, "base64") == 0) {
		c.cert = ST_EXPORT_CERT_BASE64;
	} else if (strcmp(o->cert, "pem") == 0) {
		c.cert = ST_EXPORT_CERT_PEM;
	} else if (strcmp(o->cert, "none") == 0) {
		c.cert = ST_EXPORT_CERT_NONE;
	} else {
		fprintf(stderr, "station ledger export: --cert must be base64, pem or none, not "
				"%s\n",
			o->cert);
		return 2;
	}
	if (o->state) {
		c.state = st_ledger_state_parse(o->state);
		if (c.state < 0) {
			fprintf(stderr, "station ledger export: unknown state '%s'; expected "
					"intent, signed, delivered or failed\n",
				o->state);
			return 2;
		}
	}
	if (o->output) {
		c.out = open_tmp(o->output, &tmp);
		if (!c.out) {
			fprintf(stderr, "station ledger export: cannot write %s.tmp: %s\n",
				o->output, strerror(errno));
			return 1;
		}
	}
	st_export_header(&c);
	rc = st_ledger_foreach(l, st_export_row, &c, err, sizeof(err));
	if (rc == 0 && c.failed)
		rc = st_errf(err, sizeof(err), ST_E_IO, "cannot write the export%s%s",
			     o->output ? " to " : "", o->output ? o->output : "");
	if (o->output) {
		int rc2 = close_tmp(c.out, tmp, o->output, rc == 0);

		if (rc == 0 && rc2 < 0)
			rc = st_errf(err, sizeof(err), ST_E_IO, "cannot write %s: %s", o->output,
				     strerror(-rc2));
	} else if (fflush(stdout) != 0 && rc == 0) {
		rc = st_errf(err, sizeof(err), ST_E_IO, "cannot write to stdout: %s",
			     strerror(errno));
	}
	free(tmp);
	if (rc < 0) {
		fprintf(stderr, "station ledger export: %s\n", err);
		return 1;
	}
	return 0;
}

/* ---- check ---- */

/* What duplicate detection needs of a row. */
struct check_key {
	int64_t id;
	char *serial;
	char *device_id;
	char *profile; /* NULL: none recorded */
	uint8_t pubkey[32];
	int issued; /* signed or delivered */
};

/* The reprovision policy of a profile (SKU) of the configuration. */
struct check_policy {
	const char *sku; /* borrowed from the profile */
	int reissue;
};

struct check_ctx {
	const struct st_ca *ca;
	struct check_key *keys;
	size_t nkeys, cap;
	size_t rows, verified, possibly, problems;
	int oom;
	int have_policies; /* -c: the configuration's profiles judge reissued device ids */
	struct check_policy *policies;
	size_t npolicies;
};

static void problem(struct check_ctx *c, const struct st_ledger_row *r, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void problem(struct check_ctx *c, const struct st_ledger_row *r, const char *fmt, ...)
{
	va_list ap;

	c->problems++;
	if (r)
		printf("problem: row %lld (serial %s, device id %s): ", (long long)r->id,
		       r->serial, r->device_id);
	else
		printf("problem: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

/* The certificate's subject CN as UTF-8 (free with OPENSSL_free), or NULL. */
static unsigned char *subject_cn(X509 *x)
{
	X509_NAME *name = X509_get_subject_name(x);
	X509_NAME_ENTRY *e;
	unsigned char *utf8 = NULL;
	int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);

	if (i < 0)
		return NULL;
	e = X509_NAME_get_entry(name, i);
	if (ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(e)) < 0)
		return NULL;
	return utf8;
}

static time_t asn1_time(const ASN1_TIME *t)
{
	struct tm tm;

	if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
		return (time_t)-1;
	return timegm(&tm);
}

static void check_cert(struct check_ctx *c, const struct st_ledger_row *r)
{
	const unsigned char *p = r->cert_der;
	unsigned char *spki = NULL, *cn = NULL;
	uint8_t hash[32];
	char h1[65], h2[65];
	BIGNUM *row_serial = NULL, *cert_serial = NULL;
	X509 *x;
	int len, before = (int)c->problems;

	x = d2i_X509(NULL, &p, (long)r->cert_len);
	if (!x || p != r->cert_der + r->cert_len) {
		problem(c, r, "the stored certificate is not one well-formed DER certificate");
		goto out;
	}
	if (X509_verify(x, c->ca->pkey) != 1)
		problem(c, r, "certificate signature does not verify with the CA's public key");
	if (X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(c->ca->cert)) != 0)
		problem(c, r, "certificate issuer is not the CA's subject");
	len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &spki);
	if (len <= 0) {
		problem(c, r, "certificate public key cannot be encoded");
	} else {
		st_digest(ST_SHA256, spki, (size_t)len, hash);
		if (memcmp(hash, r->pubkey_sha256, 32) != 0) {
			st_export_hex32(hash, h1);
			st_export_hex32(r->pubkey_sha256, h2);
			problem(c, r, "certificate public key sha256:%s differs from the row's "
				      "sha256:%s",
				h1, h2);
		}
	}
	cert_serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
	if (!cert_serial || !BN_hex2bn(&row_serial, r->serial) ||
	    BN_cmp(cert_serial, row_serial) != 0) {
		char *s = cert_serial ? BN_bn2hex(cert_serial) : NULL;

		problem(c, r, "certificate serial %s differs from the row's", s ? s : "?");
		OPENSSL_free(s);
	}
	cn = subject_cn(x);
	if (!cn || strcmp((const char *)cn, r->device_id) != 0)
		problem(c, r, "certificate CN is %s, expected the row's device id",
			cn ? (const char *)cn : "missing");
	if (r->not_before && r->not_after &&
	    (asn1_time(X509_get0_notBefore(x)) != r->not_before ||
	     asn1_time(X509_get0_notAfter(x)) != r->not_after))
		problem(c, r, "certificate validity differs from the row's");
out:
	if ((int)c->problems == before)
		c->verified++;
	OPENSSL_free(cn);
	OPENSSL_free(spki);
	BN_free(row_serial);
	BN_free(cert_serial);
	X509_free(x);
}

static int check_row(const struct st_ledger_row *r, void *arg)
{
	struct check_ctx *c = arg;
	struct check_key *k;
	char t[32];

	c->rows++;
	if (r->state == ST_LEDGER_INTENT) {
		c->possibly++;
		st_export_time(r->created, t, sizeof(t));
		printf("possibly signed: row %lld (serial %s, device id %s, slot %s, since %s): "
		       "intent without a certificate\n",
		       (long long)r->id, r->serial, r->device_id, dash(r->slot), t);
	}
	if (r->state == ST_LEDGER_FAILED && !r->cert_der)
		return 0; /* superseded or abandoned before signing */
	if (!r->cert_der && r->state != ST_LEDGER_INTENT)
		problem(c, r, "state %s but no certificate", st_ledger_state_name(r->state));
	if (r->cert_der)
		check_cert(c, r);

	if (c->nkeys == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 256;
		struct check_key *p = realloc(c->keys, cap * sizeof(*p));

		if (!p) {
			c->oom = 1;
			return 1;
		}
		c->keys = p;
		c->cap = cap;
	}
	k = &c->keys[c->nkeys];
	k->id = r->id;
	k->serial = strdup(r->serial);
	k->device_id = strdup(r->device_id);
	k->profile = r->profile ? strdup(r->profile) : NULL;
	memcpy(k->pubkey, r->pubkey_sha256, 32);
	k->issued = r->state == ST_LEDGER_SIGNED || r->state == ST_LEDGER_DELIVERED;
	if (!k->serial || !k->device_id || (r->profile && !k->profile)) {
		free(k->serial);
		free(k->device_id);
		free(k->profile);
		c->oom = 1;
		return 1;
	}
	c->nkeys++;
	return 0;
}

static int by_serial(const void *a, const void *b)
{
	const struct check_key *x = a, *y = b;
	int d = strcmp(x->serial, y->serial);

	return d ? d : (x->id > y->id) - (x->id < y->id);
}

static int by_pubkey(const void *a, const void *b)
{
	const struct check_key *x = a, *y = b;
	int d = memcmp(x->pubkey, y->pubkey, 32);

	return d ? d : (x->id > y->id) - (x->id < y->id);
}

static int by_device(const void *a, const void *b)
{
	const struct check_key *x = a, *y = b;
	int d = (y->issued - x->issued);

	if (d)
		return d;
	d = strcmp(x->device_id, y->device_id);
	return d ? d : (x->id > y->id) - (x->id < y->id);
}

/* Whether the profile named sku reissues: every profile of the configuration with that sku
 * says so. -1 when the configuration has none of that name. */
static int profile_reissues(const struct check_ctx *c, const char *sku)
{
	int found = 0;

	for (size_t i = 0; sku && i < c->npolicies; i++) {
		if (strcmp(c->policies[i].sku, sku) != 0)
			continue;
		if (!c->policies[i].reissue)
			return 0;
		found = 1;
	}
	return found ? 1 : -1;
}

/* Whether a device id's run of issued rows [i, j) is a problem: one of the later rows was
 * issued under a profile that refuses reprovisioning (or that the configuration does not
 * have, or none: the default refuses). why says which, or which profile allowed them. */
static int reissue_refused(const struct check_ctx *c, size_t i, size_t j, char *why,
			   size_t whylen)
{
	const char *allowed = NULL;

	for (size_t k = i + 1; k < j; k++) {
		const char *p = c->keys[k].profile;
		int re = profile_reissues(c, p);

		if (!p) {
			snprintf(why, whylen, "row %lld records no profile: the default refuses "
				 "reprovisioning", (long long)c->keys[k].id);
			return 1;
		}
		if (re < 0) {
			snprintf(why, whylen, "row %lld: profile %s is not in the configuration",
				 (long long)c->keys[k].id, p);
			return 1;
		}
		if (re == 0) {
			snprintf(why, whylen, "row %lld: profile %s refuses reprovisioning",
				 (long long)c->keys[k].id, p);
			return 1;
		}
		allowed = p;
	}
	snprintf(why, whylen, "profile %s reissues", allowed ? allowed : "?");
	return 0;
}

/* Reports each run of equal keys (per cmp) in the sorted array, listing the rows. A device
 * id's run is a problem per the profiles' policies when they are known (else per
 * is_problem), and says why. */
static void report_runs(struct check_ctx *c, int (*same)(const struct check_key *,
							  const struct check_key *),
			const char *what, int is_problem)
{
	size_t i = 0, j, n = c->nkeys;

	while (i < n) {
		for (j = i + 1; j < n && same(&c->keys[i], &c->keys[j]); j++)
			;
		if (j - i > 1) {
			char h[65], why[600] = "";
			int bad = is_problem;
			size_t k;

			if (strcmp(what, "device id") == 0 && is_problem && c->have_policies)
				bad = reissue_refused(c, i, j, why, sizeof(why));
			if (bad)
				c->problems++;
			printf("%s: %s ", bad ? "problem" : "note", what);
			if (strcmp(what, "public key") == 0) {
				st_export_hex32(c->keys[i].pubkey, h);
				printf("sha256:%s", h);
			} else if (strcmp(what, "serial") == 0) {
				printf("%s", c->keys[i].serial);
			} else {
				printf("%s", c->keys[i].device_id);
			}
			printf(" is in %zu rows:", j - i);
			for (k = i; k < j; k++)
				printf(" %lld", (long long)c->keys[k].id);
			printf("%s%s%s\n", why[0] ? " (" : "", why, why[0] ? ")" : "");
		}
		i = j;
	}
}

static int same_serial(const struct check_key *a, const struct check_key *b)
{
	return strcmp(a->serial, b->serial) == 0;
}

static int same_pubkey(const struct check_key *a, const struct check_key *b)
{
	return memcmp(a->pubkey, b->pubkey, 32) == 0;
}

static int same_issued_device(const struct check_key *a, const struct check_key *b)
{
	return a->issued && b->issued && strcmp(a->device_id, b->device_id) == 0;
}

/* The profiles the configuration names (its directory or list, its default, the slots' own),
 * loaded for their reprovision policies. */
struct check_profiles {
	struct st_profile_set *dir;
	const struct st_profile **list;
	size_t n;
};

static int add_policy(struct check_ctx *c, const struct st_profile *p)
{
	struct check_policy *v = realloc(c->policies, (c->npolicies + 1) * sizeof(*v));

	if (!v)
		return ST_E_NOMEM;
	c->policies = v;
	v[c->npolicies].sku = p->sku;
	v[c->npolicies].reissue = p->policy.reprovision == ST_REPROVISION_REISSUE;
	c->npolicies++;
	return 0;
}

static int load_policy(struct check_ctx *c, struct check_profiles *cp, const char *path,
		       char *err, size_t errlen)
{
	const struct st_profile **list = realloc(cp->list, (cp->n + 1) * sizeof(*list));
	int rc;

	if (!list)
		return st_errf(err, errlen, ST_E_NOMEM, "out of memory");
	cp->list = list;
	rc = st_profile_load(path, stderr, &list[cp->n], err, errlen);
	if (rc < 0)
		return rc;
	cp->n++;
	if (add_policy(c, list[cp->n - 1]) < 0)
		return st_errf(err, errlen, ST_E_NOMEM, "out of memory");
	return 0;
}

/* Loads every profile cfg names; problems in them go to stderr as file:line:col. */
static int load_policies(struct check_ctx *c, struct check_profiles *cp,
			 const struct st_config *cfg, char *err, size_t errlen)
{
	int rc = 0;

	if (cfg->profiles) {
		rc = st_profile_set_load(cfg->profiles, stderr, &cp->dir, err, errlen);
		for (size_t i = 0; rc == 0 && i < st_profile_set_count(cp->dir); i++) {
			if (add_policy(c, st_profile_set_get(cp->dir, i)) < 0)
				rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory");
		}
	}
	for (size_t i = 0; rc == 0 && i < cfg->n_profile_files; i++)
		rc = load_policy(c, cp, cfg->profile_files[i], err, errlen);
	if (rc == 0 && cfg->default_profile)
		rc = load_policy(c, cp, cfg->default_profile, err, errlen);
	for (size_t i = 0; rc == 0 && i < cfg->n_slots; i++) {
		if (cfg->slots[i].profile)
			rc = load_policy(c, cp, cfg->slots[i].profile, err, errlen);
	}
	c->have_policies = c->npolicies > 0;
	return rc;
}

static void free_policies(struct check_ctx *c, struct check_profiles *cp)
{
	st_profile_set_free(cp->dir);
	for (size_t i = 0; i < cp->n; i++)
		st_profile_free(cp->list[i]);
	free(cp->list);
	free(c->policies);
}

static int count_flag(const struct st_ledger_flag *f, void *arg)
{
	(void)f;
	(*(size_t *)arg)++;
	return 0;
}

static int cmd_check(struct st_ledger *l, const struct opts *o, const struct st_config *cfg)
{
	struct check_ctx c = { 0 };
	struct check_profiles cp = { 0 };
	struct st_ca *ca = NULL;
	const char *ca_path = o->ca ? o->ca : cfg ? cfg->ca.cert : NULL;
	char err[1024], perr[512];
	size_t i, flags = 0;
	int rc;

	if (!ca_path) {
		fprintf(stderr, "station ledger check: no CA certificate: give -c STATION.yaml "
				"or --ca CA.pem\n");
		return 2;
	}
	rc = st_ca_load(ca_path, NULL, NULL, &ca, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "station ledger check: %s\n", err);
		return 1;
	}
	c.ca = ca;
	if (cfg) {
		/* Whether a device id may hold several certificates is its profile's policy. */
		rc = load_policies(&c, &cp, cfg, perr, sizeof(perr));
		if (rc < 0) {
			st_msgf(err, sizeof(err), "cannot judge reissued device ids by the "
				"configuration's profiles: %s", perr);
			goto out;
		}
	}
	rc = st_ledger_integrity(l, err, sizeof(err));
	if (rc == ST_E_LEDGER_CORRUPT)
		problem(&c, NULL, "%s", err);
	else if (rc < 0)
		goto out;
	rc = st_ledger_foreach(l, check_row, &c, err, sizeof(err));
	if (rc == 0 && c.oom)
		rc = st_errf(err, sizeof(err), ST_E_NOMEM, "out of memory checking the ledger");
	if (rc < 0)
		goto out;
	qsort(c.keys, c.nkeys, sizeof(*c.keys), by_serial);
	report_runs(&c, same_serial, "serial", 1);
	qsort(c.keys, c.nkeys, sizeof(*c.keys), by_pubkey);
	report_runs(&c, same_pubkey, "public key", 1);
	qsort(c.keys, c.nkeys, sizeof(*c.keys), by_device);
	report_runs(&c, same_issued_device, "device id", !o->allow_reissue);
	rc = st_ledger_foreach_flag(l, count_flag, &flags, err, sizeof(err));
	if (rc < 0)
		goto out;
	if (flags)
		printf("note: %zu refused board%s flagged (station ledger flags)\n", flags,
		       flags == 1 ? "" : "s");
	printf("ledger %s: %zu rows, %zu certificates verified with %s, %zu possibly signed, "
	       "%zu problem%s\n",
	       st_ledger_path(l), c.rows, c.verified, ca_path, c.possibly, c.problems,
	       c.problems == 1 ? "" : "s");
out:
	for (i = 0; i < c.nkeys; i++) {
		free(c.keys[i].serial);
		free(c.keys[i].device_id);
		free(c.keys[i].profile);
	}
	free(c.keys);
	free_policies(&c, &cp);
	st_ca_free(ca);
	if (rc < 0) {
		fprintf(stderr, "station ledger check: %s\n", err);
		return 1;
	}
	if (c.problems) {
		fprintf(stderr, "station ledger check: %zu problem%s in %s\n", c.problems,
			c.problems == 1 ? "" : "s", st_ledger_path(l));
		return 1;
	}
	return 0;
}

/* ---- flags ---- */

static int print_flag(const struct st_ledger_flag *f, void *arg)
{
	char t[32], h[65];

	(void)arg;
	st_export_time(f->time, t, sizeof(t));
	if (f->pubkey_sha256)
		st_export_hex32(f->pubkey_sha256, h);
	printf("%lld  %s  station %s  slot %s  device id %s  key %s%s  %s\n", (long long)f->id,
	       t, f->station, dash(f->slot), dash(f->device_id), f->pubkey_sha256 ? "sha256:" : "",
	       f->pubkey_sha256 ? h : "-", f->reason);
	return 0;
}

static int cmd_flags(struct st_ledger *l)
{
	char err[512];
	int rc = st_ledger_foreach_flag(l, print_flag, NULL, err, sizeof(err));

	if (rc < 0) {
		fprintf(stderr, "station ledger flags: %s\n", err);
		return 1;
	}
	return 0;
}

static const char usage_migrate[] =
	"usage: station ledger migrate --from FILE.db --to postgresql://...\n"
	"       station ledger -c STATION.yaml migrate --from FILE.db\n"
	"\n"
	"Moves a station's history from its SQLite ledger FILE.db into the line's PostgreSQL\n"
	"ledger (--to, --ledger, or the configuration's ledger:), in one transaction: every\n"
	"production authorization (id, document hash, units, lot, validity, when and where it\n"
	"was registered), every row as it is (its station, state, certificate, times and the\n"
	"authorization it used a unit of), every flag, every sequence (the line's next number\n"
	"raised so that no number the station handed out is handed out again), and every\n"
	"attempt (the production records of station report). The database counts each\n"
	"authorization's units as the rows come in: an authorization it holds already for the\n"
	"same document counts the rows of both ledgers; a row that would take one beyond its\n"
	"units, or an authorization id it holds for another document, stops the migration\n"
	"(nothing is migrated, the exit status is 1). Run it with the station stopped, then\n"
	"point the station's ledger: at the database. Running it again adds nothing twice and\n"
	"counts no unit twice: rows and attempts are known by their station and their id in\n"
	"FILE.db, authorizations by their id (a row whose state moved on in FILE.db since is\n"
	"brought up to date; one the database holds in a later state, such as a delivered or\n"
	"superseded row, keeps it: a stale FILE.db takes nothing back). Uniqueness across the\n"
	"line is checked row by row: a row whose serial or public key another row holds, or\n"
	"whose device id has another key's open intent, is a conflict; each is printed\n"
	"(\"conflict: ...\") and when there is any, nothing is migrated and the exit status\n"
	"is 1.\n"
	"\n"
	"  --from FILE.db   the station's SQLite ledger (read only)\n"
	"  --to LEDGER      the PostgreSQL ledger (a connection string; same as --ledger)\n";

static void print_conflict(void *arg, const char *msg)
{
	(void)arg;
	fprintf(stderr, "conflict: %s\n", msg);
}

static int cmd_migrate(struct st_ledger *to, const struct opts *o)
{
	struct st_ledger_import_stats st;
	struct st_ledger *from = NULL;
	char err[512];
	int rc;

	if (!o->from) {
		fprintf(stderr, "station ledger migrate: give --from FILE.db\n%s", usage_migrate);
		return 2;
	}
	if (!st_ledger_spec_is_file(o->from)) {
		fprintf(stderr, "station ledger migrate: --from must be a ledger file\n");
		return 2;
	}
	rc = st_ledger_open_flags(o->from, NULL, ST_LEDGER_NOCREATE, &from, err, sizeof(err));
	if (rc == 0)
		rc = st_ledger_import(to, from, print_conflict, NULL, &st, err, sizeof(err));
	st_ledger_close(from);
	if (rc < 0) {
		fprintf(stderr, "station ledger migrate: %s\n", err);
		return 1;
	}
	printf("migrated %s into %s: %llu authorizations (%llu added), %llu rows (%llu added, "
	       "%llu brought up to date, %llu there already), %llu flags (%llu added), "
	       "%llu sequences, %llu attempts (%llu added)\n",
	       o->from, st_ledger_path(to), (unsigned long long)st.auths,
	       (unsigned long long)st.auths_added, (unsigned long long)st.rows,
	       (unsigned long long)st.rows_added, (unsigned long long)st.rows_updated,
	       (unsigned long long)(st.rows - st.rows_added - st.rows_updated),
	       (unsigned long long)st.flags, (unsigned long long)st.flags_added,
	       (unsigned long long)st.sequences, (unsigned long long)st.attempts,
	       (unsigned long long)st.attempts_added);
	return 0;
}

static const char usage_backup[] =
	"usage: station ledger [-c STATION.yaml | --ledger FILE] backup DEST\n"
	"\n"
	"Copies the ledger to the file DEST while a station may keep running and writing to\n"
	"it (SQLite's online backup: one consistent snapshot of every committed certificate;\n"
	"the station is not stopped or slowed). The copy is checked, synced and renamed into\n"
	"place, so DEST is either the previous file or a whole new copy; it is mode 0600 and\n"
	"opens as a ledger itself (station ledger --ledger DEST check --ca CA.pem).\n"
	"Copying the file with cp while a station runs is not safe: the newest\n"
	"certificates may still be only in the -wal file beside it.\n"
	"A PostgreSQL ledger is backed up as the database it is, where its server runs\n"
	"(pg_dump --schema=station_ledger -Fc, or the server's base backups and WAL\n"
	"archive); this command refuses it and says so.\n";

static int cmd_backup(struct st_ledger *l, int argc, char **argv)
{
	char err[512];
	int rc;

	if (argc != 1) {
		fprintf(stderr, "station ledger backup: give one destination file\n%s",
			usage_backup);
		return 2;
	}
	rc = st_ledger_backup(l, argv[0], err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "station ledger: %s\n", err);
		return 1;
	}
	return 0;
}

/* ---- supersede ---- */

static int cmd_supersede(struct st_ledger *l, int argc, char **argv)
{
	struct st_ledger_row *r = NULL;
	char err[512];
	int rc;

	if (argc != 1) {
		fprintf(stderr, "station ledger supersede: expected one row id or serial\n%s",
			usage_supersede);
		return 2;
	}
	rc = find_row(l, argv[0], &r, err, sizeof(err));
	if (rc == 0)
		rc = st_ledger_supersede(l, r->id, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "station ledger supersede: %s\n", err);
		st_ledger_row_free(r);
		return 1;
	}
	printf("row %lld (serial %s, device id %s) superseded: the device id may be issued "
	       "again\n",
	       (long long)r->id, r->serial, r->device_id);
	st_ledger_row_free(r);
	return 0;
}

/* ---- entry ---- */

struct subcommand {
	const char *name;
	const char *usage;
	const char *options; /* the long options it takes besides -c/--ledger, as "|a|b|" */
};

static const struct subcommand subcommands[] = {
	{ "list", usage_list, "|state|" },
	{ "show", usage_show, "||" },
	{ "export", usage_export, "|format|output|cert|state|" },
	{ "check", usage_check, "|ca|allow-reissue|" },
	{ "flags", usage_flags, "||" },
	{ "backup", usage_backup, "||" },
	{ "migrate", usage_migrate, "|from|" },
	{ "supersede", usage_supersede, "||" },
	{ NULL, NULL, NULL },
};

int st_cmd_ledger(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "ledger", required_argument, NULL, 'L' },
		{ "state", required_argument, NULL, 's' },
		{ "format", required_argument, NULL, 'f' },
		{ "output", required_argument, NULL, 'o' },
		{ "cert", required_argument, NULL, 'C' },
		{ "ca", required_argument, NULL, 'A' },
		{ "allow-reissue", no_argument, NULL, 'R' },
		{ "from", required_argument, NULL, 'F' },
		{ "to", required_argument, NULL, 'L' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { 0 };
	const struct subcommand *sub = NULL;
	struct st_config *cfg = NULL;
	struct st_ledger *l = NULL;
	const char *path, *given[16];
	char err[512], pat[40];
	size_t ngiven = 0, i;
	int c, idx, rc = 2;

	optind = 0; /* full reset: the command may run more than once in a process */
	while ((c = getopt_long(argc, argv, "c:f:o:h", lopts, &idx)) != -1) {
		const char *name = NULL;

		switch (c) {
		case 'c':
			o.config = optarg;
			break;
		case 'L':
			o.ledger = optarg;
			break;
		case 's':
			o.state = optarg;
			name = "state";
			break;
		case 'f':
			o.format = optarg;
			name = "format";
			break;
		case 'o':
			o.output = optarg;
			name = "output";
			break;
		case 'C':
			o.cert = optarg;
			name = "cert";
			break;
		case 'A':
			o.ca = optarg;
			name = "ca";
			break;
		case 'R':
			o.allow_reissue = 1;
			name = "allow-reissue";
			break;
		case 'F':
			o.from = optarg;
			name = "from";
			break;
		case 'h':
			o.help = 1;
			break;
		default:
			fputs(usage_main, stderr);
			return 2;
		}
		if (name && ngiven < sizeof(given) / sizeof(given[0]))
			given[ngiven++] = name;
	}
	if (optind < argc) {
		for (sub = subcommands; sub->name; sub++)
			if (strcmp(sub->name, argv[optind]) == 0)
				break;
		if (!sub->name) {
			fprintf(stderr, "station ledger: unknown command '%s'; known: list, show, "
					"export, check, flags, backup, migrate, supersede\n",
				argv[optind]);
			return 2;
		}
	}
	if (o.help) {
		fputs(sub ? sub->usage : usage_main, stdout);
		return 0;
	}
	if (!sub) {
		fprintf(stderr, "station ledger: no command given\n%s", usage_main);
		return 2;
	}
	for (i = 0; i < ngiven; i++) {
		snprintf(pat, sizeof(pat), "|%s|", given[i]);
		if (!strstr(sub->options, pat)) {
			fprintf(stderr, "station ledger %s: option --%s does not apply\n%s",
				sub->name, given[i], sub->usage);
			return 2;
		}
	}
	if (strcmp(sub->name, "show") != 0 && strcmp(sub->name, "backup") != 0 &&
	    strcmp(sub->name, "supersede") != 0 && optind + 1 < argc) {
		fprintf(stderr, "station ledger %s: unexpected argument '%s'\n", sub->name,
			argv[optind + 1]);
		return 2;
	}
	if (!o.config && !o.ledger) {
		fprintf(stderr, "station ledger %s: give -c STATION.yaml or --ledger %s\n",
			sub->name, strcmp(sub->name, "migrate") == 0 ? "(or --to) LEDGER" : "FILE");
		return 2;
	}
	if (o.config) {
		rc = st_config_load(o.config, stderr, &cfg, err, sizeof(err));
		if (rc < 0) {
			fprintf(stderr, "station ledger: %s\n", err);
			return 1;
		}
	}
	path = o.ledger ? o.ledger : cfg->ledger;
	/* migrate makes the destination a ledger when it is not yet one. */
	rc = st_ledger_open_flags(path, NULL,
				  strcmp(sub->name, "migrate") == 0 ? 0 : ST_LEDGER_NOCREATE, &l,
				  err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "station ledger: %s\n", err);
		rc = 1;
		goto out;
	}
	if (strcmp(sub->name, "list") == 0)
		rc = cmd_list(l, &o);
	else if (strcmp(sub->name, "show") == 0)
		rc = cmd_show(l, argc - optind - 1, argv + optind + 1);
	else if (strcmp(sub->name, "export") == 0)
		rc = cmd_export(l, &o);
	else if (strcmp(sub->name, "check") == 0)
		rc = cmd_check(l, &o, cfg);
	else if (strcmp(sub->name, "backup") == 0)
		rc = cmd_backup(l, argc - optind - 1, argv + optind + 1);
	else if (strcmp(sub->name, "migrate") == 0)
		rc = cmd_migrate(l, &o);
	else if (strcmp(sub->name, "supersede") == 0)
		rc = cmd_supersede(l, argc - optind - 1, argv + optind + 1);
	else
		rc = cmd_flags(l);
out:
	st_ledger_close(l);
	st_config_free(cfg);
	return rc;
}
