/* Board wire protocol codec: line framing, CRC-32, field grammar, base64 and percent
 * encoding. See drivers/PROTOCOL.md for the grammar this implements. */
#include "proto.h"

#include <stdio.h>
#include <string.h>

#include "err.h"
#include "board.h"
#include "frame.h"

enum dec_state {
	DEC_CONSOLE, /* outside frames: bytes go to the console callback */
	DEC_FRAME,   /* inside a frame: bytes collect in line until "\n" */
	DEC_SKIP,    /* an over-long frame: bytes are dropped until "\n" or a marker */
};

static const char marker[] = DRV_PROTO_MARKER;

/* Board error codes. */

#define DRV__PERR_NAME(name, msg) #name,
static const char *const perr_names[] = { DRV_PROTO_ERRORS(DRV__PERR_NAME) };
#undef DRV__PERR_NAME
#define DRV__PERR_MSG(name, msg) msg,
static const char *const perr_msgs[] = { DRV_PROTO_ERRORS(DRV__PERR_MSG) };
#undef DRV__PERR_MSG

const char *drv_proto_errname(enum drv_proto_error e)
{
	if ((int)e < 0 || e >= DRV_PROTO_E_COUNT_)
		return "?";
	return perr_names[e];
}

const char *drv_proto_errmsg(enum drv_proto_error e)
{
	if ((int)e < 0 || e >= DRV_PROTO_E_COUNT_)
		return "?";
	return perr_msgs[e];
}

int drv_proto_errcode(const char *name)
{
	int i;

	for (i = 0; i < DRV_PROTO_E_COUNT_; i++) {
		if (strcmp(perr_names[i], name) == 0)
			return i;
	}
	return -1;
}

const char *drv_proto_path_problem(const char *path, size_t *bad)
{
	return brd_path_problem(path, bad);
}

/* The CRC-32 is the board core's (drivers/board/frame.c): one table for both ends. */
uint32_t drv_proto_crc32(uint32_t crc, const void *data, size_t n)
{
	return brd_crc32(crc, data, n);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static int is_type_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

static int is_key_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

/* Parsing. Columns in messages are 1-based positions in the frame line. */

static int parse_fields(const char *line, size_t pos, size_t end, struct drv_proto_frame *f,
			char *err, size_t errlen)
{
	while (pos < end) {
		struct drv_proto_field *fld;
		size_t k = pos, v, stop;
		const char *t;

		if (f->nfields == DRV_PROTO_MAX_FIELDS)
			return st_errf(err, errlen, ST_E_PROTO_FRAME,
				       "col %zu: more than %d fields", pos + 1,
				       DRV_PROTO_MAX_FIELDS);
		while (pos < end && is_key_char(line[pos]))
			pos++;
		if (pos == k)
			return st_errf(err, errlen, ST_E_PROTO_FRAME,
				       "field %u at col %zu: expected a key of a-z, 0-9 or _",
				       f->nfields + 1, k + 1);
		if (pos - k > DRV_PROTO_MAX_KEY)
			return st_errf(err, errlen, ST_E_PROTO_FRAME,
				       "field %u at col %zu: key longer than %d characters",
				       f->nfields + 1, k + 1, DRV_PROTO_MAX_KEY);
		if (pos == end || line[pos] != '=')
			return st_errf(err, errlen, ST_E_PROTO_FRAME,
				       "field %u ('%.*s') at col %zu: expected '=' after the key",
				       f->nfields + 1, (int)(pos - k), line + k, pos + 1);
		v = ++pos;
		/* The value runs to the next space; a '%' in it takes two hex digits, never a
		 * space, so the end found first stays. */
		t = memchr(line + pos, ' ', end - pos);
		stop = t ? (size_t)(t - line) : end;
		while ((t = memchr(line + pos, '%', stop - pos)) != NULL) {
			pos = (size_t)(t - line);
			if (pos + 2 >= end || hexval(line[pos + 1]) < 0 || hexval(line[pos + 2]) < 0)
				return st_errf(err, errlen, ST_E_PROTO_FRAME,
					       "field %u ('%.*s'): bad percent escape at col %zu",
					       f->nfields + 1, (int)(v - 1 - k), line + k, pos + 1);
			pos += 3;
		}
		pos = stop;
		fld = &f->fields[f->nfields++];
		fld->key_off = (uint16_t)k;
		fld->key_len = (uint16_t)(v - 1 - k);
		fld->val_off = (uint16_t)v;
		fld->val_len = (uint16_t)(pos - v);
		if (pos < end) {
			/* A space: another field must follow. */
			pos++;
			if (pos == end || line[pos] == ' ')
				return st_errf(err, errlen, ST_E_PROTO_FRAME,
					       "col %zu: empty field (two spaces in a row)",
					       pos + 1);
		}
	}
	return 0;
}

int drv_proto_parse(const char *line, size_t len, struct drv_proto_frame *f, char *err,
		    size_t errlen)
{
	size_t i, pos, crc_at, start;
	uint32_t want = 0, got;
	unsigned int bad;
	uint64_t seq;

	memset(f, 0, sizeof(*f));
	if (len + 1 > DRV_PROTO_MAX_LINE)
		return st_errf(err, errlen, ST_E_PROTO_TOO_LONG,
			       "frame of %zu bytes is longer than %d", len + 1, DRV_PROTO_MAX_LINE);
	if (len && line[len - 1] == '\r')
		len--;
	if (len < DRV_PROTO_MARKER_LEN || memcmp(line, marker, DRV_PROTO_MARKER_LEN) != 0)
		return st_errf(err, errlen, ST_E_PROTO_FRAME,
			       "col 1: expected the frame marker \"%s\"", DRV_PROTO_MARKER);
	/* Every byte checked without an early exit (many a step), and the loop below only to
	 * name the first bad one. */
	bad = 0;
	for (i = DRV_PROTO_MARKER_LEN; i < len; i++)
		bad |= (unsigned char)((unsigned char)line[i] - 0x20u) > 0x7D - 0x20;
	for (i = bad ? DRV_PROTO_MARKER_LEN : len; i < len; i++) {
		unsigned char c = (unsigned char)line[i];

		if (c < 0x20 || c > 0x7E)
			return st_errf(err, errlen, ST_E_PROTO_FRAME,
				       "col %zu: byte 0x%02X is not printable ASCII", i + 1, c);
		if (c == '~')
			return st_errf(err, errlen, ST_E_PROTO_FRAME,
				       "col %zu: '~' is not allowed inside a frame", i + 1);
	}
	/* The CRC is checked before the grammar, so that a frame damaged on the wire is
	 * reported as such (and retransmitted) rather than as a protocol mistake. */
	crc_at = len;
	while (crc_at > DRV_PROTO_MARKER_LEN && line[crc_at - 1] != ' ')
		crc_at--;
	if (len - crc_at != 8 || crc_at == DRV_PROTO_MARKER_LEN)
		return st_errf(err, errlen, ST_E_PROTO_FRAME,
			       "col %zu: expected 8 hex digits of CRC-32 at the end of the frame",
			       crc_at + 1);
	for (i = crc_at; i < len; i++) {
		int v = hexval(line[i]);

		if (v < 0)
			return st_errf(err, errlen, ST_E_PROTO_FRAME,
				       "col %zu: '%c' in the CRC-32 is not a hex digit", i + 1,
				       line[i]);
		want = (want << 4) | (uint32_t)v;
	}
	got = drv_proto_crc32(0, line, crc_at);
	if (got != want)
		return st_errf(err, errlen, ST_E_PROTO_CRC,
			       "bad CRC: frame carries %08X, computed %08X", want, got);
	f->line = line;
	f->len = len;
	f->crc = want;

	pos = DRV_PROTO_MARKER_LEN;
	if (pos + 1 >= crc_at ||
	    (line[pos] != DRV_PROTO_REQUEST && line[pos] != DRV_PROTO_ANSWER &&
	     line[pos] != DRV_PROTO_EVENT) ||
	    line[pos + 1] != ' ')
		return st_errf(err, errlen, ST_E_PROTO_FRAME,
			       "col %zu: expected frame kind Q, A or E and a space", pos + 1);
	f->kind = line[pos];
	pos += 2;

	start = pos;
	seq = 0;
	while (pos < crc_at && line[pos] >= '0' && line[pos] <= '9' && pos - start < 10) {
		seq = seq * 10 + (uint64_t)(line[pos] - '0');
		pos++;
	}
	if (pos == start || pos >= crc_at || line[pos] != ' ' || seq > UINT32_MAX)
		return st_errf(err, errlen, ST_E_PROTO_FRAME,
			       "col %zu: expected a decimal sequence number (0..4294967295) and a "
			       "space",
			       start + 1);
	f->seq = (uint32_t)seq;
	pos++;

	start = pos;
	while (pos < crc_at && is_type_char(line[pos]))
		pos++;
	if (pos == start || pos - start > DRV_PROTO_MAX_TYPE || pos >= crc_at || line[pos] != ' ')
		return st_errf(err, errlen, ST_E_PROTO_FRAME,
			       "col %zu: expected a type of 1 to %d characters A-Z, 0-9 or _ and a "
			       "space",
			       start + 1, DRV_PROTO_MAX_TYPE);
	memcpy(f->type, line + start, pos - start);
	f->type[pos - start] = 0;
	pos++;

	/* Fields run up to the space before the CRC. */
	return parse_fields(line, pos, crc_at - 1, f, err, errlen);
}

/* Decoder. */

void drv_proto_decoder_init(struct drv_proto_decoder *d, size_t max_line,
			    const struct drv_proto_callbacks *cb, void *arg)
{
	memset(d, 0, sizeof(*d));
	if (cb)
		d->cb = *cb;
	d->arg = arg;
	d->state = DEC_CONSOLE;
	/* The limit is the receiver's own, announced in its HELLO and kept: what the other side
	 * announces limits what is sent to it (drv_proto_begin()'s cap), not what is read. */
	if (max_line == 0 || max_line > DRV_PROTO_MAX_LINE)
		max_line = DRV_PROTO_MAX_LINE;
	if (max_line < 2 * DRV_PROTO_MARKER_LEN + 16)
		max_line = 2 * DRV_PROTO_MARKER_LEN + 16;
	d->max_line = max_line;
}

static void console_flush(struct drv_proto_decoder *d)
{
	if (!d->clen)
		return;
	d->console_bytes += d->clen;
	if (d->cb.console)
		d->cb.console(d->arg, d->console, d->clen);
	d->clen = 0;
}

static void console_put(struct drv_proto_decoder *d, const char *s, size_t n)
{
	while (n) {
		size_t k = sizeof(d->console) - d->clen;

		if (k > n)
			k = n;
		memcpy(d->console + d->clen, s, k);
		d->clen += k;
		s += k;
		n -= k;
		if (d->clen == sizeof(d->console))
			console_flush(d);
	}
}

static void report(struct drv_proto_decoder *d, int code, const char *line, size_t len)
{
	console_flush(d);
	d->errors++;
	if (d->cb.error)
		d->cb.error(d->arg, code, d->msg, line, len);
}

static void deliver(struct drv_proto_decoder *d)
{
	int rc;

	rc = drv_proto_parse(d->line, d->len, &d->frame, d->msg, sizeof(d->msg));
	if (rc < 0) {
		report(d, rc, d->line, d->len);
		return;
	}
	console_flush(d);
	d->frames++;
	if (d->cb.frame)
		d->cb.frame(d->arg, &d->frame);
}

/* Outside a frame: match the marker byte by byte. Returns 1 when c completed it. */
static int match_marker(struct drv_proto_decoder *d, char c)
{
	if (c == marker[d->mlen]) {
		if (++d->mlen == DRV_PROTO_MARKER_LEN) {
			d->mlen = 0;
			return 1;
		}
		return 0;
	}
	if (d->mlen) {
		/* The held bytes were not a marker after all: they belong to the console
		 * (or to the over-long line being skipped). */
		if (d->state == DEC_CONSOLE)
			console_put(d, marker, d->mlen);
		d->mlen = 0;
		if (c == marker[0]) {
			d->mlen = 1;
			return 0;
		}
	}
	if (d->state == DEC_CONSOLE)
		console_put(d, &c, 1);
	else if (c == '\n')
		d->state = DEC_CONSOLE;
	return 0;
}

size_t drv_proto_decoder_feed(struct drv_proto_decoder *d, const void *data, size_t n)
{
	const char *p = data;
	size_t i, k;

	d->paused = 0;
	d->after = 0;
	for (i = 0; i < n; i++) {
		char c;

		/* Runs of ordinary bytes in bulk (the decoder sees every byte of every board,
		 * brd_scan_*() of the board core say how far); the bytes that matter one at a
		 * time below, as they always were. */
		if (d->state == DEC_FRAME) {
			k = brd_scan_frame(d->line, d->len, d->max_line, p + i, n - i);
			memcpy(d->line + d->len, p + i, k);
			d->len += k;
		} else if (d->mlen) {
			k = 0;
		} else if (d->state == DEC_CONSOLE) {
			const char *t = memchr(p + i, '~', n - i);

			k = t ? (size_t)(t - (p + i)) : n - i;
			console_put(d, p + i, k);
		} else {
			k = brd_scan_outside(1, p + i, n - i);
		}
		i += k;
		if (i == n)
			break;
		c = p[i];
		if (d->state != DEC_FRAME) {
			if (match_marker(d, c)) {
				memcpy(d->line, marker, DRV_PROTO_MARKER_LEN);
				d->len = DRV_PROTO_MARKER_LEN;
				d->state = DEC_FRAME;
			}
			continue;
		}
		if (c == '\n') {
			d->state = DEC_CONSOLE;
			d->after = n - i - 1;
			deliver(d);
			if (d->paused)
				return i + 1;
			continue;
		}
		if (d->len + 2 > d->max_line) {
			/* No room for this byte and the line end. */
			snprintf(d->msg, sizeof(d->msg),
				 "frame longer than %zu bytes (line end not found)", d->max_line);
			d->state = DEC_SKIP;
			d->mlen = 0;
			report(d, ST_E_PROTO_TOO_LONG, d->line, d->len);
			/* c itself may start the next marker: look at it again while skipping. */
			i--;
			if (d->paused)
				return i + 1;
			continue;
		}
		d->line[d->len++] = c;
		if (c == ' ' && d->len >= 2 * DRV_PROTO_MARKER_LEN &&
		    memcmp(d->line + d->len - DRV_PROTO_MARKER_LEN, marker,
			   DRV_PROTO_MARKER_LEN) == 0) {
			/* '~' never appears inside a frame, so this is the next frame's marker:
			 * the current one lost its line end (dropped bytes, or a reboot). */
			d->len -= DRV_PROTO_MARKER_LEN;
			snprintf(d->msg, sizeof(d->msg),
				 "frame cut off at col %zu by the next frame's marker (line end lost)",
				 d->len + 1);
			report(d, ST_E_PROTO_FRAME, d->line, d->len);
			memcpy(d->line, marker, DRV_PROTO_MARKER_LEN);
			d->len = DRV_PROTO_MARKER_LEN;
			if (d->paused)
				return i + 1;
		}
	}
	console_flush(d);
	return n;
}

void drv_proto_decoder_pause(struct drv_proto_decoder *d)
{
	d->paused = 1;
}

void drv_proto_decoder_reset(struct drv_proto_decoder *d)
{
	if (d->state == DEC_CONSOLE && d->mlen)
		console_put(d, marker, d->mlen);
	console_flush(d);
	d->state = DEC_CONSOLE;
	d->mlen = 0;
	d->len = 0;
}

/* Field access. */

static int key_is(const struct drv_proto_frame *f, const struct drv_proto_field *fld,
		  const char *key)
{
	size_t n = strlen(key);

	return fld->key_len == n && memcmp(f->line + fld->key_off, key, n) == 0;
}

const struct drv_proto_field *drv_proto_find_next(const struct drv_proto_frame *f,
						  const struct drv_proto_field *after,
						  const char *key)
{
	unsigned int i = after ? (unsigned int)(after - f->fields) + 1 : 0;

	for (; i < f->nfields; i++) {
		if (key_is(f, &f->fields[i], key))
			return &f->fields[i];
	}
	return NULL;
}

const struct drv_proto_field *drv_proto_find(const struct drv_proto_frame *f, const char *key)
{
	return drv_proto_find_next(f, NULL, key);
}

int drv_proto_has(const struct drv_proto_frame *f, const char *key)
{
	return drv_proto_find(f, key) != NULL;
}

unsigned int drv_proto_part(const struct drv_proto_frame *f, const char *key, unsigned int k,
			    struct drv_proto_frame *out)
{
	unsigned int i, n = 0, from = 0, to = f->nfields;

	for (i = 0; i < f->nfields; i++) {
		if (!key_is(f, &f->fields[i], key))
			continue;
		if (n == k + 1)
			to = i;
		else if (n == k && n > 0)
			from = i;
		n++;
	}
	if (k < n) {
		*out = *f;
		out->nfields = to - from;
		memmove(out->fields, f->fields + from, out->nfields * sizeof(f->fields[0]));
	}
	return n;
}

static int missing(const struct drv_proto_frame *f, const char *key, char *err, size_t errlen)
{
	return st_errf(err, errlen, ST_E_PROTO_FIELD, "%s frame has no field '%s'", f->type, key);
}

/* Percent-decodes s[0..n) (already validated by the parser) into out with a NUL. */
static int pct_decode(const struct drv_proto_frame *f, const struct drv_proto_field *fld,
		      const char *s, size_t n, char *out, size_t cap, char *err, size_t errlen)
{
	size_t i, o = 0;
	int rc = 0;

	for (i = 0; i < n && rc == 0; i++) {
		char c = s[i];

		if (c == '%') {
			c = (char)(hexval(s[i + 1]) << 4 | hexval(s[i + 2]));
			if (c == 0) {
				rc = st_errf(err, errlen, ST_E_PROTO_FIELD,
					     "field '%.*s': %%00 at col %zu is not allowed in text",
					     fld->key_len, f->line + fld->key_off,
					     (size_t)(s - f->line) + i + 1);
				break;
			}
			i += 2;
		}
		if (o + 1 >= cap) {
			rc = st_errf(err, errlen, ST_E_PROTO_FIELD,
				     "field '%.*s' is longer than %zu bytes", fld->key_len,
				     f->line + fld->key_off, cap ? cap - 1 : 0);
			break;
		}
		out[o++] = c;
	}
	/* Empty on failure: never a partial text without its terminator. */
	if (cap)
		out[rc < 0 ? 0 : o] = 0;
	return rc;
}

int drv_proto_field_text(const struct drv_proto_frame *f, const struct drv_proto_field *fld,
			 char *out, size_t cap, char *err, size_t errlen)
{
	if (cap)
		out[0] = 0;
	return pct_decode(f, fld, f->line + fld->val_off, fld->val_len, out, cap, err, errlen);
}

int drv_proto_field_item(const struct drv_proto_frame *f, const struct drv_proto_field *fld,
			 unsigned int idx, char *out, size_t cap, char *err, size_t errlen)
{
	const char *s = f->line + fld->val_off, *end = s + fld->val_len, *q;

	if (cap)
		out[0] = 0;
	for (;;) {
		q = memchr(s, ',', (size_t)(end - s));
		if (!q)
			q = end;
		if (idx == 0)
			return pct_decode(f, fld, s, (size_t)(q - s), out, cap, err, errlen);
		if (q == end)
			return ST_E_NOTFOUND;
		idx--;
		s = q + 1;
	}
}

int drv_proto_get_text(const struct drv_proto_frame *f, const char *key, char *out, size_t cap,
		       char *err, size_t errlen)
{
	const struct drv_proto_field *fld = drv_proto_find(f, key);

	if (cap)
		out[0] = 0;
	if (!fld)
		return missing(f, key, err, errlen);
	return drv_proto_field_text(f, fld, out, cap, err, errlen);
}

int drv_proto_get_text_opt(const struct drv_proto_frame *f, const char *key, const char *def,
			   char *out, size_t cap, char *err, size_t errlen)
{
	if (!drv_proto_has(f, key)) {
		if (strlen(def) >= cap)
			return st_errf(err, errlen, ST_E_INVAL, "default for '%s' does not fit",
				       key);
		strcpy(out, def);
		return 0;
	}
	return drv_proto_get_text(f, key, out, cap, err, errlen);
}

int drv_proto_get_uint(const struct drv_proto_frame *f, const char *key, uint64_t min,
		       uint64_t max, uint64_t *out, char *err, size_t errlen)
{
	const struct drv_proto_field *fld = drv_proto_find(f, key);
	const char *s;
	uint64_t v = 0;
	size_t i;

	*out = 0;
	if (!fld)
		return missing(f, key, err, errlen);
	s = f->line + fld->val_off;
	if (fld->val_len == 0 || fld->val_len > 20)
		goto bad;
	for (i = 0; i < fld->val_len; i++) {
		unsigned d;

		if (s[i] < '0' || s[i] > '9')
			goto bad;
		d = (unsigned)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			goto bad;
		v = v * 10 + d;
	}
	if (v < min || v > max)
		return st_errf(err, errlen, ST_E_PROTO_FIELD,
			       "field '%s' at col %u: %llu is outside %llu..%llu", key,
			       fld->val_off + 1, (unsigned long long)v, (unsigned long long)min,
			       (unsigned long long)max);
	*out = v;
	return 0;
bad:
	return st_errf(err, errlen, ST_E_PROTO_FIELD,
		       "field '%s' at col %u: \"%.*s\" is not a decimal number", key,
		       fld->val_off + 1, fld->val_len > 24 ? 24 : fld->val_len, s);
}

int drv_proto_get_b64(const struct drv_proto_frame *f, const char *key, uint8_t *out,
		      size_t cap, size_t *outlen, char *err, size_t errlen)
{
	const struct drv_proto_field *fld = drv_proto_find(f, key);
	size_t bad = 0;
	int rc;

	*outlen = 0;
	if (!fld)
		return missing(f, key, err, errlen);
	rc = drv_b64_decode(out, cap, f->line + fld->val_off, fld->val_len, outlen, &bad);
	if (rc == -1)
		return st_errf(err, errlen, ST_E_PROTO_FIELD, "field '%s': bad base64 at col %zu",
			       key, fld->val_off + bad + 1);
	if (rc == -2)
		return st_errf(err, errlen, ST_E_PROTO_FIELD,
			       "field '%s': decoded data is longer than %zu bytes", key, cap);
	return 0;
}

int drv_proto_get_raw(const struct drv_proto_frame *f, const char *key, uint8_t *out,
		      size_t cap, size_t *outlen, char *err, size_t errlen)
{
	const struct drv_proto_field *fld = drv_proto_find(f, key);
	struct brd_field v;
	struct brd_msg m;
	char msg[96];

	*outlen = 0;
	if (!fld)
		return missing(f, key, err, errlen);
	v.val = f->line + fld->val_off;
	v.len = fld->val_len;
	brd_msg_init(&m, msg, sizeof(msg));
	if (brd_field_raw(&v, key, out, cap, outlen, &m) != 0)
		return st_errf(err, errlen, ST_E_PROTO_FIELD, "%s (value at col %u)", msg,
			       fld->val_off + 1u);
	return 0;
}

size_t drv_proto_sum_item(uint8_t *out, const char *path, uint64_t size, const uint8_t *sha)
{
	size_t pl = strlen(path), n;

	if (pl > DRV_PROTO_MAX_PATH)
		return 0;
	memcpy(out, path, pl);
	n = pl;
	out[n++] = 0;
	if (!sha) {
		out[n++] = '-';
		out[n++] = 0;
		return n;
	}
	n += brd_uint_str((char *)out + n, size);
	out[n++] = 0;
	memcpy(out + n, sha, 32);
	return n + 32;
}

int drv_proto_get_hex(const struct drv_proto_frame *f, const char *key, uint8_t *out, size_t n,
		      char *err, size_t errlen)
{
	const struct drv_proto_field *fld = drv_proto_find(f, key);
	const char *s;
	size_t i;

	if (!fld)
		return missing(f, key, err, errlen);
	s = f->line + fld->val_off;
	if (fld->val_len != 2 * n)
		return st_errf(err, errlen, ST_E_PROTO_FIELD,
			       "field '%s' at col %u: expected %zu hex digits, got %u", key,
			       fld->val_off + 1, 2 * n, fld->val_len);
	for (i = 0; i < n; i++) {
		int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return st_errf(err, errlen, ST_E_PROTO_FIELD,
				       "field '%s': bad hex digit at col %zu", key,
				       fld->val_off + 2 * i + (hi < 0 ? 1 : 2));
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

/* Builder. */

/* Percent-encoding, hex, lists, the field header and the CRC trailer are written by the
 * board core's writers (drivers/board/frame.c); this builder adds its checks and messages. */
/* Room for " " + 8 CRC digits + "\n". */
#define TRAILER 10

static void fail(struct drv_proto_builder *b, int code, const char *fmt, const char *what)
{
	if (b->err)
		return;
	b->err = code;
	snprintf(b->msg, sizeof(b->msg), fmt, what, b->cap);
}

void drv_proto_begin(struct drv_proto_builder *b, char *buf, size_t cap, char kind,
		     uint32_t seq, const char *type)
{
	size_t tl = strlen(type), i;

	memset(b, 0, sizeof(*b));
	b->buf = buf;
	b->cap = cap > DRV_PROTO_MAX_LINE ? DRV_PROTO_MAX_LINE : cap;
	if (kind != DRV_PROTO_REQUEST && kind != DRV_PROTO_ANSWER && kind != DRV_PROTO_EVENT) {
		fail(b, ST_E_INVAL, "frame kind '%.1s' is not Q, A or E", &kind);
		return;
	}
	if (tl == 0 || tl > DRV_PROTO_MAX_TYPE) {
		fail(b, ST_E_INVAL, "frame type \"%s\" is empty or too long", type);
		return;
	}
	for (i = 0; i < tl; i++) {
		if (!is_type_char(type[i])) {
			fail(b, ST_E_INVAL, "frame type \"%s\" has a character outside A-Z0-9_",
			     type);
			return;
		}
	}
	/* Longest header: marker, kind, 10-digit seq, type, spaces. */
	if (DRV_PROTO_MARKER_LEN + 2 + 11 + tl + 1 + TRAILER > b->cap) {
		fail(b, ST_E_PROTO_TOO_LONG, "%s frame does not fit in %zu bytes", type);
		return;
	}
	b->len = (size_t)snprintf(buf, b->cap, "%s%c %u %s", marker, kind, seq, type);
}

/* Starts " key=" and returns where the value goes, or NULL after recording an error. */
static char *field_start(struct drv_proto_builder *b, const char *key, size_t vlen)
{
	size_t kl = strlen(key), i;

	if (b->err)
		return NULL;
	if (kl == 0 || kl > DRV_PROTO_MAX_KEY) {
		fail(b, ST_E_INVAL, "key \"%s\" is empty or too long", key);
		return NULL;
	}
	for (i = 0; i < kl; i++) {
		if (!is_key_char(key[i])) {
			fail(b, ST_E_INVAL, "key \"%s\" has a character outside a-z0-9_", key);
			return NULL;
		}
	}
	if (b->nfields == DRV_PROTO_MAX_FIELDS) {
		fail(b, ST_E_INVAL, "too many fields at '%s'", key);
		return NULL;
	}
	if (b->len + drv_proto_field_cost(key, vlen) + TRAILER > b->cap) {
		fail(b, ST_E_PROTO_TOO_LONG, "field '%s' does not fit in a frame of %zu bytes",
		     key);
		return NULL;
	}
	b->nfields++;
	return brd_field_put(b->buf, &b->len, key, vlen);
}

void drv_proto_add_textn(struct drv_proto_builder *b, const char *key, const char *s, size_t n)
{
	char *p = field_start(b, key, brd_pct_len(s, n));

	if (p)
		brd_pct_put(p, s, n);
}

void drv_proto_add_text(struct drv_proto_builder *b, const char *key, const char *s)
{
	drv_proto_add_textn(b, key, s, strlen(s));
}

void drv_proto_add_uint(struct drv_proto_builder *b, const char *key, uint64_t v)
{
	char tmp[21];
	size_t n = brd_uint_str(tmp, v);
	char *p = field_start(b, key, n);

	if (p)
		memcpy(p, tmp, n);
}

void drv_proto_add_b64(struct drv_proto_builder *b, const char *key, const void *data, size_t n)
{
	char *p = field_start(b, key, drv_b64_len(n));

	if (p)
		drv_b64_encode(p, data, n);
}

void drv_proto_add_raw(struct drv_proto_builder *b, const char *key, const void *data,
		       size_t n)
{
	char *p = field_start(b, key, brd_raw_len(data, n));

	if (p)
		brd_raw_put(p, data, n);
}

size_t drv_proto_raw_len(const void *data, size_t n)
{
	return brd_raw_len(data, n);
}

size_t drv_proto_pem_block(const void *data, size_t n, size_t *text)
{
	const char *p = data, *end = p + n;
	size_t k, line, total = 0;

	if (n < sizeof(BRD_PEM_BEGIN) - 1 || memcmp(p, BRD_PEM_BEGIN, sizeof(BRD_PEM_BEGIN) - 1))
		return 0;
	p += sizeof(BRD_PEM_BEGIN) - 1;
	for (;;) {
		for (line = 0; p + line < end && line <= BRD_PEM_LINE &&
			       brd_pem_char((unsigned char)p[line]);
		     line++)
			;
		/* A line of 1 to BRD_PEM_LINE characters and its line feed; a short one ends
		 * the text. */
		if (!line || line > BRD_PEM_LINE || p + line >= end || p[line] != '\n')
			return 0;
		total += line;
		p += line + 1;
		k = (size_t)(end - p);
		if (k >= sizeof(BRD_PEM_END) - 1 &&
		    memcmp(p, BRD_PEM_END, sizeof(BRD_PEM_END) - 1) == 0)
			break;
		if (line < BRD_PEM_LINE)
			return 0;
	}
	*text = total;
	return (size_t)(p - (const char *)data) + sizeof(BRD_PEM_END) - 1;
}

void drv_proto_add_pem(struct drv_proto_builder *b, const char *key, const void *data,
		       size_t block, size_t text)
{
	const char *p = (const char *)data + sizeof(BRD_PEM_BEGIN) - 1;
	const char *end = (const char *)data + block - (sizeof(BRD_PEM_END) - 1);
	char *out = field_start(b, key, text);

	/* Line by line: drv_proto_pem_block checked that each ends in its line feed. */
	while (out && p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t k = nl ? (size_t)(nl - p) : (size_t)(end - p);

		memcpy(out, p, k);
		out += k;
		p += k + 1;
	}
}

size_t drv_proto_raw_room(const struct drv_proto_builder *b, const char *key, const void *data,
			  size_t n)
{
	size_t room = drv_proto_room(b), cost = drv_proto_field_cost(key, 0);

	if (room <= cost || b->nfields == DRV_PROTO_MAX_FIELDS)
		return 0;
	return brd_raw_fit(data, n, room - cost);
}

void drv_proto_add_hex(struct drv_proto_builder *b, const char *key, const void *data, size_t n)
{
	char *p = field_start(b, key, 2 * n);

	if (p)
		brd_hex_put(p, data, n);
}

void drv_proto_add_list(struct drv_proto_builder *b, const char *key, const char *const *items,
			size_t n)
{
	char *p = field_start(b, key, brd_list_len(items, n));

	if (p)
		brd_list_put(p, items, n);
}

size_t drv_proto_field_cost(const char *key, size_t vlen)
{
	return 2 + strlen(key) + vlen;
}

size_t drv_proto_room(const struct drv_proto_builder *b)
{
	if (b->err || b->len + TRAILER >= b->cap)
		return 0;
	return b->cap - b->len - TRAILER;
}

size_t drv_proto_b64_room(const struct drv_proto_builder *b, const char *key)
{
	size_t room = drv_proto_room(b), cost = drv_proto_field_cost(key, 0);

	if (room <= cost)
		return 0;
	return (room - cost) / 4 * 3;
}

int drv_proto_end(struct drv_proto_builder *b, size_t *len, char *err, size_t errlen)
{
	*len = 0;
	if (b->err)
		return st_errf(err, errlen, b->err, "%s", b->msg);
	b->len = brd_trailer_put(b->buf, b->len);
	*len = b->len;
	return 0;
}
