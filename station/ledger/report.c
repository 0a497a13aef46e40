/* Production records: summaries of the attempts, the raw export, and the signed job-end
 * report (see report.h for the formats). */
#include "report.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "auth.h"
#include "cms.h"
#include "ecdsa.h"
#include "err.h"

#define JOB_TYPE "station-job-report"
#define JOB_VERSION 1

static const struct st_cms_codes report_codes = {
	.format = ST_E_REPORT_FORMAT,
	.signature = ST_E_REPORT_SIGNATURE,
	.untrusted = ST_E_REPORT_UNTRUSTED,
	.purpose = ST_E_REPORT_PURPOSE,
};

static const char *const by_names[] = {
	[ST_REPORT_BY_DAY] = "day",	    [ST_REPORT_BY_LOT] = "lot",
	[ST_REPORT_BY_SKU] = "sku",	    [ST_REPORT_BY_STATION] = "station",
	[ST_REPORT_BY_ALL] = "all",
};

const char *st_report_by_name(enum st_report_by by)
{
	return (unsigned)by < sizeof(by_names) / sizeof(by_names[0]) ? by_names[by] : "?";
}

int st_report_by_parse(const char *name)
{
	for (size_t i = 0; name && i < sizeof(by_names) / sizeof(by_names[0]); i++) {
		if (strcmp(name, by_names[i]) == 0)
			return (int)i;
	}
	return ST_E_INVAL;
}

/* Whether a spreadsheet would take the cell that starts at s for a formula: it starts with
 * '=', '+', '-', '@', a tab or a CR, and is not a number or a sign alone (the exports' "-"
 * for no time). The cell ends at the string's end or, in a locale whose lists are separated
 * by ';', at a ';' (where a part that starts with a quote is taken for a quoted cell and
 * made text too). */
static int csv_formula(const char *s)
{
	const char *p = s + 1;

	if (!s[0] || !strchr("=+-@\t\r", s[0]))
		return 0;
	if (s[0] != '+' && s[0] != '-')
		return 1;
	if (!*p || *p == ';')
		return 0;
	while (*p >= '0' && *p <= '9')
		p++;
	if (*p == '.' && p > s + 1)
		for (p++; *p >= '0' && *p <= '9'; p++)
			;
	return (*p != 0 && *p != ';') || p == s + 1;
}

void st_csv_field(FILE *out, const char *s, int last)
{
	if (s && (csv_formula(s) || strpbrk(s, ",\"\r\n;"))) {
		fputc('"', out);
		if (csv_formula(s))
			fputc('\'', out);
		for (; *s; s++) {
			if (*s == '"')
				fputc('"', out);
			fputc(*s, out);
			if (*s == ';' && (s[1] == '"' || csv_formula(s + 1)))
				fputc('\'', out);
		}
		fputc('"', out);
	} else if (s) {
		fputs(s, out);
	}
	fputs(last ? "\r\n" : ",", out);
}

static void hex(const uint8_t *b, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = 0;
}

/* ---- Summaries ---------------------------------------------------------------------- */

void st_report_free(struct st_report *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++) {
		for (size_t k = 0; k < r->groups[i].nreasons; k++)
			free(r->groups[i].reasons[k].reason);
		free(r->groups[i].reasons);
		free(r->groups[i].key);
	}
	free(r->groups);
	free(r);
}

struct sum_ctx {
	struct st_report *r;
	size_t cap;
	int oom;
};

/* The key of attempt a under r->by, in buf. */
static const char *group_key(enum st_report_by by, const struct st_ledger_attempt *a,
			     char *buf, size_t len)
{
	struct tm tm;

	switch (by) {
	case ST_REPORT_BY_DAY:
		if (!gmtime_r(&a->time, &tm) || strftime(buf, len, "%Y-%m-%d", &tm) == 0)
			snprintf(buf, len, "?");
		return buf;
	case ST_REPORT_BY_LOT:
		return a->lot ? a->lot : "";
	case ST_REPORT_BY_SKU:
		return a->profile ? a->profile : a->sku ? a->sku : "";
	case ST_REPORT_BY_STATION:
		return a->station;
	default:
		return "all";
	}
}

static struct st_report_group *find_group(struct sum_ctx *c, const char *key)
{
	struct st_report *r = c->r;
	struct st_report_group *g;

	for (size_t i = 0; i < r->n; i++) {
		if (strcmp(r->groups[i].key, key) == 0)
			return &r->groups[i];
	}
	if (r->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 16;

		g = realloc(r->groups, cap * sizeof(*g));
		if (!g)
			return NULL;
		r->groups = g;
		c->cap = cap;
	}
	g = &r->groups[r->n];
	memset(g, 0, sizeof(*g));
	g->key = strdup(key);
	if (!g->key)
		return NULL;
	r->n++;
	return g;
}

static int count_reason(struct st_report_group *g, const char *reason)
{
	struct st_report_reason *v;

	if (!reason || !*reason)
		reason = "UNKNOWN";
	for (size_t i = 0; i < g->nreasons; i++) {
		if (strcmp(g->reasons[i].reason, reason) == 0) {
			g->reasons[i].count++;
			return 0;
		}
	}
	v = realloc(g->reasons, (g->nreasons + 1) * sizeof(*v));
	if (!v)
		return -1;
	g->reasons = v;
	v[g->nreasons].reason = strdup(reason);
	if (!v[g->nreasons].reason)
		return -1;
	v[g->nreasons++].count = 1;
	return 0;
}

static int on_attempt_sum(const struct st_ledger_attempt *a, void *arg)
{
	struct sum_ctx *c = arg;
	struct st_report_group *g;
	char buf[32];

	g = find_group(c, group_key(c->r->by, a, buf, sizeof(buf)));
	if (!g) {
		c->oom = 1;
		return 1;
	}
	g->attempts++;
	if (strcmp(a->outcome, "pass") == 0) {
		g->passed++;
		g->reused += a->reused != 0;
	} else if (strcmp(a->outcome, "fail") == 0) {
		g->failed++;
		if (count_reason(g, a->reason) < 0) {
			c->oom = 1;
			return 1;
		}
	} else {
		g->abandoned++;
	}
	return 0;
}

static int group_cmp(const void *a, const void *b)
{
	return strcmp(((const struct st_report_group *)a)->key,
		      ((const struct st_report_group *)b)->key);
}

static int reason_cmp(const void *a, const void *b)
{
	const struct st_report_reason *x = a, *y = b;

	if (x->count != y->count)
		return x->count < y->count ? 1 : -1;
	return strcmp(x->reason, y->reason);
}

int st_report_summarize(struct st_ledger *l, time_t since, time_t until, enum st_report_by by,
			struct st_report **out, char *err, size_t errlen)
{
	struct sum_ctx c = { 0 };
	int rc;

	*out = NULL;
	c.r = calloc(1, sizeof(*c.r));
	if (!c.r)
		return st_errf(err, errlen, ST_E_NOMEM, "out of memory");
	c.r->by = by;
	rc = st_ledger_foreach_attempt(l, since, until, on_attempt_sum, &c, err, errlen);
	if (rc == 0 && c.oom)
		rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory");
	if (rc < 0) {
		st_report_free(c.r);
		return rc;
	}
	if (c.r->n)
		qsort(c.r->groups, c.r->n, sizeof(*c.r->groups), group_cmp);
	for (size_t i = 0; i < c.r->n; i++) {
		if (c.r->groups[i].nreasons)
			qsort(c.r->groups[i].reasons, c.r->groups[i].nreasons,
			      sizeof(*c.r->groups[i].reasons), reason_cmp);
	}
	*out = c.r;
	return 0;
}

static const char *const summary_counts[] = { "attempts", "passed", "failed", "abandoned",
					      "reused" };

static void group_counts(const struct st_report_group *g, uint64_t v[5])
{
	v[0] = g->attempts;
	v[1] = g->passed;
	v[2] = g->failed;
	v[3] = g->abandoned;
	v[4] = g->reused;
}

/* JSON Lines: one object per line, written whole; consumes o. Reals (the yield, rounded to
 * four decimals) in their shortest form. */
static int put_json_line(FILE *out, json_t *o)
{
	char *line = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER |
					       JSON_REAL_PRECISION(6)) :
			 NULL;
	int rc = line ? 0 : ST_E_NOMEM;

	if (line && fprintf(out, "%s\n", line) < 0)
		rc = ST_E_IO;
	free(line);
	json_decref(o);
	return rc;
}

int st_report_write(const struct st_report *r, FILE *out, int jsonl)
{
	const size_t nc = sizeof(summary_counts) / sizeof(summary_counts[0]);
	uint64_t v[5];
	char num[32], *failures = NULL;
	int rc = 0;

	if (!jsonl) {
		st_csv_field(out, st_report_by_name(r->by), 0);
		for (size_t k = 0; k < nc; k++)
			st_csv_field(out, summary_counts[k], 0);
		st_csv_field(out, "yield", 0);
		st_csv_field(out, "failures", 1);
	}
	for (size_t i = 0; i < r->n && rc == 0; i++) {
		const struct st_report_group *g = &r->groups[i];
		uint64_t finished = g->passed + g->failed;
		double yield = finished ? (double)g->passed / (double)finished : 0;

		group_counts(g, v);
		if (jsonl) {
			json_t *o = json_object(), *f = json_object();

			if (!o || !f) {
				json_decref(o);
				json_decref(f);
				return ST_E_NOMEM;
			}
			json_object_set_new(o, st_report_by_name(r->by), json_string(g->key));
			for (size_t k = 0; k < nc; k++)
				json_object_set_new(o, summary_counts[k],
						    json_integer((json_int_t)v[k]));
			json_object_set_new(o, "yield",
					    finished ? json_real((double)(long)(yield * 1e4 + 0.5) /
								 1e4) :
						       json_null());
			for (size_t k = 0; k < g->nreasons; k++)
				json_object_set_new(f, g->reasons[k].reason,
						    json_integer((json_int_t)g->reasons[k].count));
			json_object_set_new(o, "failures", f);
			rc = put_json_line(out, o);
			continue;
		}
		st_csv_field(out, g->key, 0);
		for (size_t k = 0; k < nc; k++) {
			snprintf(num, sizeof(num), "%llu", (unsigned long long)v[k]);
			st_csv_field(out, num, 0);
		}
		if (finished)
			snprintf(num, sizeof(num), "%.4f", yield);
		st_csv_field(out, finished ? num : NULL, 0);
		/* "REASON=n;REASON=n", most frequent first. */
		{
			size_t len = 1, at = 0;

			for (size_t k = 0; k < g->nreasons; k++)
				len += strlen(g->reasons[k].reason) + 24;
			failures = malloc(len);
			if (!failures)
				return ST_E_NOMEM;
			failures[0] = 0;
			for (size_t k = 0; k < g->nreasons; k++)
				at += (size_t)snprintf(failures + at, len - at, "%s%s=%llu",
						       k ? ";" : "", g->reasons[k].reason,
						       (unsigned long long)g->reasons[k].count);
			st_csv_field(out, failures, 1);
			free(failures);
		}
	}
	if (rc == 0 && ferror(out))
		rc = ST_E_IO;
	return rc;
}

/* ---- Raw attempts ------------------------------------------------------------------- */

struct att_ctx {
	FILE *out;
	int jsonl;
	int rc;
};

static int on_attempt_row(const struct st_ledger_attempt *a, void *arg)
{
	struct att_ctx *c = arg;
	char id[24], when[32], row[24], reused[4], ms[24];
	const char *v[19];
	static const char *const names[19] = {
		"id",	       "time",	     "station", "slot",	   "outcome",	   "reason",
		"error",       "device_id",  "serial",	"board_sn", "hardware_id", "sku",
		"firmware",    "profile",    "authorization", "lot", "ledger_row", "reused", "ms",
	};

	snprintf(id, sizeof(id), "%lld", (long long)a->id);
	st_auth_time_format(a->time, when);
	snprintf(row, sizeof(row), "%lld", (long long)a->certificate);
	snprintf(reused, sizeof(reused), "%d", a->reused ? 1 : 0);
	snprintf(ms, sizeof(ms), "%lld", (long long)a->ms);
	v[0] = id;
	v[1] = when;
	v[2] = a->station;
	v[3] = a->slot;
	v[4] = a->outcome;
	v[5] = a->reason;
	v[6] = a->error;
	v[7] = a->device_id;
	v[8] = a->serial;
	v[9] = a->board_sn;
	v[10] = a->hardware_id;
	v[11] = a->sku;
	v[12] = a->firmware;
	v[13] = a->profile;
	v[14] = a->auth_id;
	v[15] = a->lot;
	v[16] = a->certificate > 0 ? row : NULL;
	v[17] = reused;
	v[18] = a->ms >= 0 ? ms : NULL;
	if (!c->jsonl) {
		for (size_t i = 0; i < 19; i++)
			st_csv_field(c->out, v[i], i == 18);
	} else {
		json_t *o = json_object();

		for (size_t i = 0; o && i < 19; i++) {
			/* Numbers as numbers, absent values as null. */
			if (i == 0 || i == 16 || i == 17 || i == 18)
				json_object_set_new(o, names[i],
						    v[i] ? json_integer(strtoll(v[i], NULL, 10)) :
							   json_null());
			else
				json_object_set_new(o, names[i],
						    v[i] ? json_string(v[i]) : json_null());
		}
		c->rc = put_json_line(c->out, o);
	}
	if (!c->rc && ferror(c->out))
		c->rc = ST_E_IO;
	return c->rc;
}

int st_report_write_attempts(struct st_ledger *l, time_t since, time_t until, FILE *out,
			     int jsonl, char *err, size_t errlen)
{
	struct att_ctx c = { out, jsonl, 0 };
	int rc;

	if (!jsonl)
		fputs(ST_REPORT_ATTEMPT_COLUMNS "\r\n", out);
	rc = st_ledger_foreach_attempt(l, since, until, on_attempt_row, &c, err, errlen);
	if (rc == 0 && c.rc)
		rc = st_errf(err, errlen, c.rc, "%s", c.rc == ST_E_IO ? "cannot write the export" :
									"out of memory");
	return rc;
}

/* ---- The job-end report ------------------------------------------------------------- */

struct job_ctx {
	const char *auth_id;
	json_t *auth;  /* the authorization as the ledger records it */
	json_t *certs; /* the certificates */
	int oom;
};

static int on_job_auth(const struct st_ledger_auth *a, void *arg)
{
	struct job_ctx *c = arg;
	char sha[65];

	if (strcmp(a->id, c->auth_id) != 0)
		return 0;
	hex(a->doc_sha256, 32, sha);
	c->auth = json_pack("{sssssIss}", "id", a->id, "lot", a->lot ? a->lot : "", "units",
			    (json_int_t)a->units, "document_sha256", sha);
	c->oom = !c->auth;
	return 1;
}

static int on_job_cert(const struct st_ledger_row *row, void *arg)
{
	struct job_ctx *c = arg;
	char key[65], when[32];
	json_t *o;

	hex(row->pubkey_sha256, 32, key);
	st_auth_time_format(row->signed_at, when);
	o = json_pack("{ssssssssss}", "serial", row->serial, "pubkey_sha256", key, "device_id",
		      row->device_id, "station", row->station, "signed_at", when);
	if (!o || json_array_append_new(c->certs, o) != 0) {
		c->oom = 1;
		return 1;
	}
	return 0;
}

int st_report_job_content(struct st_ledger *l, const char *auth_id, const char *station,
			  const char *factory, char **json, size_t *len, size_t *count,
			  char *err, size_t errlen)
{
	struct job_ctx c = { auth_id, NULL, json_array(), 0 };
	char now[32];
	json_t *o = NULL;
	int rc;

	*json = NULL;
	*len = 0;
	*count = 0;
	if (!c.certs)
		return st_errf(err, errlen, ST_E_NOMEM, "out of memory");
	rc = st_ledger_foreach_auth(l, on_job_auth, &c, err, errlen);
	if (rc == 0 && !c.auth && !c.oom)
		rc = st_errf(err, errlen, ST_E_NOTFOUND,
			     "the ledger %s records no authorization %s", st_ledger_path(l),
			     auth_id);
	if (rc == 0)
		rc = st_ledger_foreach_auth_cert(l, auth_id, on_job_cert, &c, err, errlen);
	if (rc == 0 && c.oom)
		rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory");
	if (rc < 0)
		goto out;
	st_auth_time_format(time(NULL), now);
	*count = json_array_size(c.certs);
	o = json_pack("{sssisssssssOsIsO}", "type", JOB_TYPE, "version", JOB_VERSION, "factory",
		      factory, "station", station, "generated_at", now, "authorization", c.auth,
		      "count", (json_int_t)*count, "certificates", c.certs);
	*json = o ? json_dumps(o, JSON_INDENT(1) | JSON_PRESERVE_ORDER) : NULL;
	if (!*json) {
		rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory");
		goto out;
	}
	*len = strlen(*json);
	rc = 0;
out:
	json_decref(o);
	json_decref(c.auth);
	json_decref(c.certs);
	return rc;
}

void st_report_job_clear(struct st_report_job *j)
{
	free(j->station);
	free(j->factory);
	free(j->auth_id);
	free(j->lot);
	free(j->signer);
	memset(j, 0, sizeof(*j));
}

static int is_hex(const char *s, size_t min, size_t max)
{
	size_t n = s ? strlen(s) : 0;

	if (n < min || n > max)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	}
	return 1;
}

/* A string member of o, or NULL when absent or not a string. */
static const char *str_of(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Whether o has exactly the keys listed (NULL-terminated). */
static int exact_keys(const json_t *o, const char *const *keys)
{
	size_t n = 0;

	for (; keys[n]; n++) {
		if (!json_object_get(o, keys[n]))
			return 0;
	}
	return json_object_size(o) == n;
}

/* The certificates list: each well formed, no serial and no key twice. */
static int check_certs(const json_t *certs, char *err, size_t errlen)
{
	static const char *const keys[] = { "serial",  "pubkey_sha256", "device_id",
					    "station", "signed_at",	    NULL };
	size_t n = json_array_size(certs), i, k;
	const json_t *c;

	json_array_foreach(certs, i, c) {
		const char *serial = str_of(c, "serial"), *key = str_of(c, "pubkey_sha256");

		if (!json_is_object(c) || !exact_keys(c, keys) || !is_hex(serial, 1, 40) ||
		    !is_hex(key, 64, 64) || !str_of(c, "device_id") || !str_of(c, "station") ||
		    !str_of(c, "signed_at"))
			return st_errf(err, errlen, ST_E_REPORT_FORMAT,
				       "certificate %zu of %zu is not as the report format says",
				       i + 1, n);
		for (k = 0; k < i; k++) {
			const json_t *d = json_array_get(certs, k);

			if (strcmp(serial, str_of(d, "serial")) == 0 ||
			    strcmp(key, str_of(d, "pubkey_sha256")) == 0)
				return st_errf(err, errlen, ST_E_REPORT_COUNT,
					       "certificates %zu and %zu share a serial or a key",
					       k + 1, i + 1);
		}
	}
	return 0;
}

/* The authorization document: verified against root (at any time: a job ends after its
 * authorization often enough) and compared with what the report names. */
static int check_against_auth(const json_t *ra, int64_t count, const char *factory,
			      const char *station, X509 *root, const uint8_t *doc, size_t len,
			      char *err, size_t errlen)
{
	struct st_auth_env env = { root, factory, station, 0, 1, 0 };
	struct st_auth *a = NULL;
	char sha[65];
	int rc;

	rc = st_auth_verify(doc, len, "authorization", &env, &a, err, errlen);
	if (rc < 0)
		return rc;
	hex(a->doc_sha256, 32, sha);
	if (strcmp(a->id, str_of(ra, "id")) != 0 ||
	    a->units != json_integer_value(json_object_get(ra, "units")) ||
	    strcmp(sha, str_of(ra, "document_sha256")) != 0)
		rc = st_errf(err, errlen, ST_E_REPORT_COUNT,
			     "the report is about authorization %s (%lld units), not the one given "
			     "(%s, %lld units)",
			     str_of(ra, "id"),
			     (long long)json_integer_value(json_object_get(ra, "units")), a->id,
			     (long long)a->units);
	else if (count > a->units)
		rc = st_errf(err, errlen, ST_E_REPORT_COUNT,
			     "%lld certificates under authorization %s, which allows %lld",
			     (long long)count, a->id, (long long)a->units);
	st_auth_free(a);
	return rc;
}

int st_report_verify(const uint8_t *doc, size_t len, X509 *root, const uint8_t *auth_doc,
		     size_t auth_len, struct st_report_job *out, char *err, size_t errlen)
{
	static const char *const top_keys[] = { "type",	 "version",	  "factory",
						"station", "generated_at", "authorization",
						"count",   "certificates", NULL };
	static const char *const auth_keys[] = { "id", "lot", "units", "document_sha256", NULL };
	struct st_cms_check chk = {
		.ctype_oid = ST_OID_CT_REPORT,
		.eku_oid = ST_OID_KP_REPORT,
		.trusted = root,
		.codes = &report_codes,
	};
	uint8_t *content = NULL;
	X509 *signer = NULL;
	json_error_t jerr;
	json_t *o = NULL, *ra, *certs;
	size_t clen = 0;
	int64_t count;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = st_cms_verify(doc, len, &chk, &content, &clen, &signer, err, errlen);
	if (rc < 0)
		goto out;
	o = json_loadb((const char *)content, clen, JSON_REJECT_DUPLICATES, &jerr);
	ra = json_object_get(o, "authorization");
	certs = json_object_get(o, "certificates");
	if (!json_is_object(o) || !exact_keys(o, top_keys) ||
	    strcmp(str_of(o, "type") ? str_of(o, "type") : "", JOB_TYPE) != 0 ||
	    json_integer_value(json_object_get(o, "version")) != JOB_VERSION ||
	    !json_is_object(ra) || !exact_keys(ra, auth_keys) || !str_of(ra, "id") ||
	    !is_hex(str_of(ra, "document_sha256"), 64, 64) ||
	    !json_is_integer(json_object_get(ra, "units")) || !json_is_array(certs) ||
	    !json_is_integer(json_object_get(o, "count")) || !str_of(o, "station") ||
	    !str_of(o, "factory") ||
	    st_auth_time_parse(str_of(o, "generated_at"), &out->generated_at) < 0) {
		rc = st_errf(err, errlen, ST_E_REPORT_FORMAT,
			     "the signed content is not a job-end report (report.h)");
		goto out;
	}
	count = json_integer_value(json_object_get(o, "count"));
	if (count < 0 || (size_t)count != json_array_size(certs)) {
		rc = st_errf(err, errlen, ST_E_REPORT_COUNT,
			     "the report says %lld certificates and lists %zu", (long long)count,
			     json_array_size(certs));
		goto out;
	}
	rc = check_certs(certs, err, errlen);
	if (rc == 0 && auth_doc)
		rc = check_against_auth(ra, count, str_of(o, "factory"), str_of(o, "station"),
					root, auth_doc, auth_len, err, errlen);
	if (rc < 0)
		goto out;
	out->station = strdup(str_of(o, "station"));
	out->factory = strdup(str_of(o, "factory"));
	out->auth_id = strdup(str_of(ra, "id"));
	out->lot = strdup(str_of(ra, "lot") ? str_of(ra, "lot") : "");
	out->signer = st_cms_subject(signer);
	out->units = json_integer_value(json_object_get(ra, "units"));
	out->count = count;
	if (!out->station || !out->factory || !out->auth_id || !out->lot || !out->signer) {
		st_report_job_clear(out);
		rc = st_errf(err, errlen, ST_E_NOMEM, "out of memory");
	}
out:
	json_decref(o);
	free(content);
	X509_free(signer);
	return rc;
}
