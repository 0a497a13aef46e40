#include "ledger_export.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "issue.h"
#include "report.h"

static const char *const export_cols[] = {
	"id",	   "serial",   "device_id", "profile",	  "station",	"slot",
	"state",   "reason",   "csr_sha256", "pubkey_sha256", "created",	"signed_at",
	"delivered_at", "not_before", "not_after",
};
#define EXPORT_NCOLS (sizeof(export_cols) / sizeof(export_cols[0]))

void st_export_time(time_t t, char *buf, size_t len)
{
	struct tm tm;

	if (t == 0 || !gmtime_r(&t, &tm)) {
		snprintf(buf, len, "-");
		return;
	}
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void st_export_hex32(const uint8_t *b, char out[65])
{
	static const char digits[] = "0123456789abcdef";
	int i;

	for (i = 0; i < 32; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[64] = 0;
}

static const char *cert_column(enum st_export_cert f)
{
	return f == ST_EXPORT_CERT_PEM ? "cert_pem" : "cert_der_base64";
}

void st_export_header(struct st_export *x)
{
	size_t i;

	if (x->jsonl)
		return;
	for (i = 0; i < EXPORT_NCOLS; i++)
		st_csv_field(x->out, export_cols[i], x->cert == ST_EXPORT_CERT_NONE && i == EXPORT_NCOLS - 1);
	if (x->cert != ST_EXPORT_CERT_NONE)
		st_csv_field(x->out, cert_column(x->cert), 1);
	if (ferror(x->out))
		x->failed = 1;
}

/* The certificate as text in format f: a new string (free()), or NULL when there is none
 * or memory ran out (*oom set). */
static char *cert_text(const struct st_ledger_row *r, enum st_export_cert f, int *oom)
{
	char *s = NULL;
	size_t n;

	if (!r->cert_der || f == ST_EXPORT_CERT_NONE)
		return NULL;
	if (f == ST_EXPORT_CERT_PEM) {
		if (st_cert_pem(r->cert_der, r->cert_len, &s, &n) < 0)
			*oom = 1;
		return s;
	}
	s = malloc(4 * ((r->cert_len + 2) / 3) + 1);
	if (!s) {
		*oom = 1;
		return NULL;
	}
	EVP_EncodeBlock((unsigned char *)s, r->cert_der, (int)r->cert_len);
	return s;
}

/* The row's columns as text (NULL where empty), in the buffers given. */
static void columns(const struct st_ledger_row *r, const char *v[EXPORT_NCOLS], char id[24],
		    char t[5][32], char ch[65], char kh[65])
{
	size_t i;

	snprintf(id, 24, "%lld", (long long)r->id);
	st_export_hex32(r->csr_sha256, ch);
	st_export_hex32(r->pubkey_sha256, kh);
	st_export_time(r->created, t[0], sizeof(t[0]));
	st_export_time(r->signed_at, t[1], sizeof(t[1]));
	st_export_time(r->delivered_at, t[2], sizeof(t[2]));
	st_export_time(r->not_before, t[3], sizeof(t[3]));
	st_export_time(r->not_after, t[4], sizeof(t[4]));
	v[0] = id;
	v[1] = r->serial;
	v[2] = r->device_id;
	v[3] = r->profile;
	v[4] = r->station;
	v[5] = r->slot;
	v[6] = st_ledger_state_name(r->state);
	v[7] = r->reason;
	v[8] = ch;
	v[9] = kh;
	for (i = 0; i < 5; i++)
		v[10 + i] = strcmp(t[i], "-") == 0 ? NULL : t[i];
}

static json_t *row_json(const struct st_ledger_row *r, const char *const v[EXPORT_NCOLS],
			enum st_export_cert cert, const char *text)
{
	json_t *o = json_object();

	if (!o)
		return NULL;
	json_object_set_new(o, "id", json_integer(r->id));
	for (size_t i = 1; i < EXPORT_NCOLS; i++)
		json_object_set_new(o, export_cols[i], v[i] ? json_string(v[i]) : json_null());
	if (cert != ST_EXPORT_CERT_NONE)
		json_object_set_new(o, cert_column(cert), text ? json_string(text) : json_null());
	return o;
}

json_t *st_export_row_json(const struct st_ledger_row *r, enum st_export_cert cert)
{
	char id[24], t[5][32], ch[65], kh[65];
	const char *v[EXPORT_NCOLS];
	int oom = 0;
	char *text;
	json_t *o;

	columns(r, v, id, t, ch, kh);
	text = cert_text(r, cert, &oom);
	o = oom ? NULL : row_json(r, v, cert, text);
	free(text);
	return o;
}

int st_export_row(const struct st_ledger_row *r, void *arg)
{
	struct st_export *c = arg;
	char id[24], t[5][32], ch[65], kh[65];
	const char *v[EXPORT_NCOLS];
	char *cert;
	size_t i;
	int oom = 0;

	if (c->state >= 0 && (int)r->state != c->state)
		return 0;
	if (c->to && (r->created < c->from || r->created >= c->to))
		return 0;
	if (c->device_id && (!r->device_id || strcmp(r->device_id, c->device_id) != 0))
		return 0;
	columns(r, v, id, t, ch, kh);
	cert = cert_text(r, c->cert, &oom);
	if (oom) {
		c->failed = 1;
		return 1;
	}
	if (!c->jsonl) {
		for (i = 0; i < EXPORT_NCOLS; i++)
			st_csv_field(c->out, v[i], c->cert == ST_EXPORT_CERT_NONE && i == EXPORT_NCOLS - 1);
		if (c->cert != ST_EXPORT_CERT_NONE)
			st_csv_field(c->out, cert, 1);
	} else {
		json_t *o = row_json(r, v, c->cert, cert);
		char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;

		if (line)
			fprintf(c->out, "%s\n", line);
		else
			c->failed = 1;
		free(line);
		json_decref(o);
	}
	free(cert);
	if (ferror(c->out))
		c->failed = 1;
	return c->failed;
}
