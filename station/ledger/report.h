/* Production records for the quality engineer and the brand owner, from the ledger.
 *
 * Attempts (ledger.h's attempts table) are summed up per day, lot, SKU or station over a
 * time range: attempts, passed, failed, abandoned, delivered again, yield and the failure
 * reasons by count, as CSV (RFC 4180) or JSON Lines. The schema, one row per group:
 *   <by>            the group: "YYYY-MM-DD" (UTC) for day, the lot ("" without an
 *                   authorization), the SKU (the profile's; else the board's; "" unknown),
 *                   the station's name, or "all"
 *   attempts        boards finished or abandoned in the range
 *   passed, failed  boards provisioned, boards that failed (with a reason)
 *   abandoned       boards in flight when the station stopped (their next run resumes them)
 *   reused          of the passed, boards that got their recorded certificate again
 *   yield           passed / (passed + failed), 4 decimals; empty (CSV) or null (JSON)
 *                   when no board finished
 *   failures        the reasons by count, most frequent first: CSV "REASON=n;REASON=n",
 *                   JSON an object {"REASON": n}
 * The raw attempts export one row per attempt with the columns of ATTEMPT_COLUMNS below.
 *
 * The job-end report is the station's signed word to the brand owner of what was issued
 * under one authorization: CMS SignedData (cms.h, content type id-ct-stationJobReport),
 * signed by the station's report key (certified by the local CA for reports only; never
 * the CA key), its chain (report certificate, local CA and what lies above it up to the
 * factory root) inside. The content is one JSON object:
 *   "type": "station-job-report", "version": 1, "factory", "station" (the signer),
 *   "generated_at" (UTC), "authorization": {"id", "lot", "units", "document_sha256"},
 *   "count": the number of certificates, "certificates": [{"serial" (hex), "pubkey_sha256"
 *   (hex of the SubjectPublicKeyInfo's SHA-256), "device_id", "station", "signed_at"}, ...]
 * listing every certificate recorded under the authorization, at every station of the
 * ledger. The owner checks it with `station report verify` against the factory root and,
 * given the authorization document, that it names that document and that its count is
 * within the document's units. */
#ifndef ST_REPORT_H
#define ST_REPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <openssl/x509.h>

#include "ledger.h"

enum st_report_by {
	ST_REPORT_BY_DAY,
	ST_REPORT_BY_LOT,
	ST_REPORT_BY_SKU,
	ST_REPORT_BY_STATION,
	ST_REPORT_BY_ALL,
};

/* "day", "lot", "sku", "station", "all"; parse returns the value or ST_E_INVAL. */
const char *st_report_by_name(enum st_report_by by);
int st_report_by_parse(const char *name);

struct st_report_reason {
	char *reason;
	uint64_t count;
};

struct st_report_group {
	char *key;
	uint64_t attempts, passed, failed, abandoned, reused;
	struct st_report_reason *reasons; /* most frequent first once summed up */
	size_t nreasons;
};

struct st_report {
	enum st_report_by by;
	struct st_report_group *groups; /* in key order */
	size_t n;
};

/* Sums up the attempts with since <= time < until (until 0: no end) by by. Returns 0 and
 * *out (st_report_free), or ST_E_LEDGER_* / ST_E_NOMEM; *out is NULL then. */
int st_report_summarize(struct st_ledger *l, time_t since, time_t until, enum st_report_by by,
			struct st_report **out, char *err, size_t errlen);
void st_report_free(struct st_report *r);

/* Writes r as CSV with a header line (jsonl 0) or JSON Lines (jsonl 1). Returns 0, or
 * ST_E_IO when out fails, ST_E_NOMEM. */
int st_report_write(const struct st_report *r, FILE *out, int jsonl);

/* The columns of the raw attempts export, in order. */
#define ST_REPORT_ATTEMPT_COLUMNS                                                           \
	"id,time,station,slot,outcome,reason,error,device_id,serial,board_sn,hardware_id,sku," \
	"firmware,profile,authorization,lot,ledger_row,reused,ms"

/* Writes every attempt with since <= time < until as CSV (header line first) or JSON Lines.
 * Returns 0, ST_E_IO, ST_E_NOMEM or ST_E_LEDGER_*. */
int st_report_write_attempts(struct st_ledger *l, time_t since, time_t until, FILE *out,
			     int jsonl, char *err, size_t errlen);

/* Writes one CSV field per RFC 4180 (quoted when it holds a comma, a quote, CR, LF or ';',
 * quotes doubled; NULL as empty), then "," or, for the last field of a line, CRLF. What a
 * spreadsheet would run as a formula is made text by a "'" before it: a field, or a part of
 * one after a ';' (a list separator in some locales), that starts with '=', '+', '-', '@', a
 * tab or a CR and is not a number or a sign alone. A board's firmware or SKU, and a client's
 * device id, are theirs to choose. */
void st_csv_field(FILE *out, const char *s, int last);

/* The content of the job-end report of authorization auth_id (see above), as the ledger l
 * holds it, for station of factory. Returns 0 and *json (free()) of *len bytes and *count
 * certificates, or ST_E_NOTFOUND (the ledger does not know the authorization),
 * ST_E_LEDGER_*, ST_E_NOMEM. */
int st_report_job_content(struct st_ledger *l, const char *auth_id, const char *station,
			  const char *factory, char **json, size_t *len, size_t *count,
			  char *err, size_t errlen);

/* What a verified job-end report says (strings owned; st_report_job_clear()). */
struct st_report_job {
	char *station, *factory, *auth_id, *lot, *signer;
	int64_t units, count;
	time_t generated_at;
};
void st_report_job_clear(struct st_report_job *j);

/* Verifies a job-end report (DER or PEM) against the factory root: signature (any changed
 * byte fails), the chain of the report key to root, the purpose of the key (reports only),
 * the content (well formed; count equal to the certificates listed; no serial or key
 * twice). With auth_doc (the authorization document, may be NULL), also verifies that
 * document against root and checks that the report names it (id, units, document hash)
 * and that the count is within its units. Returns 0 and *out filled, or ST_E_REPORT_*
 * (ST_E_AUTH_* for the authorization document, ST_E_NOMEM) with a message. */
int st_report_verify(const uint8_t *doc, size_t len, X509 *root, const uint8_t *auth_doc,
		     size_t auth_len, struct st_report_job *out, char *err, size_t errlen);

#endif
