/* Ledger rows for the line's other systems: CSV (RFC 4180: a header line, CRLF line ends,
 * fields with a comma, a quote, CR or LF quoted) or JSON Lines, with the columns of `station
 * ledger export`. Shared by that command and the operator console (its ledger search and
 * the day's report). Times are UTC, ISO 8601; hashes lower-case hex. Blocks on out (a file
 * or a memory stream): never on the event loop thread with a file. */
#ifndef ST_LEDGER_EXPORT_H
#define ST_LEDGER_EXPORT_H

#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <jansson.h>

#include "ledger.h"

/* How the certificate is written: base64 DER (column cert_der_base64), PEM (cert_pem) or
 * not at all. */
enum st_export_cert { ST_EXPORT_CERT_BASE64, ST_EXPORT_CERT_PEM, ST_EXPORT_CERT_NONE };

struct st_export {
	FILE *out;
	int jsonl;		/* JSON Lines, else CSV */
	enum st_export_cert cert;
	int state;		/* only rows in this state (enum st_ledger_state); -1: any */
	time_t from, to;	/* only rows created in [from, to); to == 0: any time */
	const char *device_id;	/* only this device id's rows; NULL: any */
	int failed;		/* set when a write or an allocation failed */
};

/* The CSV header line (nothing for JSON Lines). */
void st_export_header(struct st_export *x);

/* Writes row r when it passes x's filters; an st_ledger_foreach() callback (arg: the struct
 * st_export). Returns non-zero (stop) once x->failed is set. */
int st_export_row(const struct st_ledger_row *r, void *arg);

/* Row r as the JSON object of a JSON Lines export, or NULL when out of memory. */
json_t *st_export_row_json(const struct st_ledger_row *r, enum st_export_cert cert);

/* "2024-05-01T12:00:00Z" (UTC), or "-" for 0. */
void st_export_time(time_t t, char *buf, size_t len);

/* 32 bytes as 64 lower-case hex digits and a NUL. */
void st_export_hex32(const uint8_t *b, char out[65]);

#endif
