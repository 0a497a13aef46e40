/* The board core's frame codec: see frame.h and drivers/PROTOCOL.md section 1. */
#include "frame.h"

#include <string.h>

#include "b64.h"

enum { DEC_CONSOLE, DEC_FRAME, DEC_SKIP };

static const char marker[] = BRD_MARKER;
static const char hexdig[] = "0123456789ABCDEF";

/* CRC-32. Every byte a station or a simulated board exchanges goes through it, hundreds of
 * boards in one process. Three builds of the same CRC (PROTOCOL.md defines only the
 * result):
 * - the default: a byte at a time from a 256-entry table (1 KiB of constants), a fraction
 *   of the instructions of four bits at a time;
 * - BRD_CRC_NIBBLE=1: the 16-entry table (64 bytes), for a firmware short of flash, fast
 *   enough for a UART;
 * - BRD_CRC_SLICE8=1: eight bytes at a time from eight tables (8 KiB, crc32_table.h and
 *   crc32_slice8.h), for the hosts (the station, simboard, the Linux agent). A byte at a
 *   time waits on each table load before the next (2.2 ns a byte on the machine measured,
 *   near half of decoding a frame); eight independent loads a step take a fifth of that.
 *   zlib's crc32_z, tried before, is as fast but a library in the core. */
#ifndef BRD_CRC_NIBBLE
#define BRD_CRC_NIBBLE 0
#endif
#ifndef BRD_CRC_SLICE8
#define BRD_CRC_SLICE8 0
#endif

/* The scans over a frame's bytes (the printable check, the runs of ordinary bytes, a field's
 * value) go a byte at a time in plain loops: the core uses no more of the C library than
 * memcpy and its like, and a firmware's flash has no room for more. The hosts build with
 * BRD_FAST_SCAN=1: memchr finds the runs (the hosts' C library takes many bytes a step), and
 * the printable check has no early exit, so that the compiler checks many bytes a step. The
 * same results either way. */
#ifndef BRD_FAST_SCAN
#define BRD_FAST_SCAN 0
#endif

#if BRD_CRC_NIBBLE
uint32_t brd_crc32(uint32_t crc, const void *data, size_t n)
{
	static const uint32_t tab[16] = {
		0x00000000, 0x1DB71064, 0x3B6E20C8, 0x26D930AC, 0x76DC4190, 0x6B6B51F4,
		0x4DB26158, 0x5005713C, 0xEDB88320, 0xF00F9344, 0xD6D6A3E8, 0xCB61B38C,
		0x9B64C2B0, 0x86D3D2D4, 0xA00AE278, 0xBDBDF21C,
	};
	const uint8_t *p = data;
	size_t i;

	crc = ~crc;
	for (i = 0; i < n; i++) {
		crc ^= p[i];
		crc = (crc >> 4) ^ tab[crc & 15];
		crc = (crc >> 4) ^ tab[crc & 15];
	}
	return ~crc;
}
#elif BRD_CRC_SLICE8
#include "crc32_slice8.h"
#include "crc32_table.h"

/* Four bytes, little-endian, from any alignment (one load where the CPU allows it). */
static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint32_t brd_crc32(uint32_t crc, const void *data, size_t n)
{
	const uint8_t *p = data;

	crc = ~crc;
	for (; n >= 8; p += 8, n -= 8) {
		uint32_t a = crc ^ le32(p), b = le32(p + 4);

		/* Table k for the byte k places before the end of the eight. */
		crc = crc_slice8[6][a & 0xFF] ^ crc_slice8[5][a >> 8 & 0xFF] ^
		      crc_slice8[4][a >> 16 & 0xFF] ^ crc_slice8[3][a >> 24] ^
		      crc_slice8[2][b & 0xFF] ^ crc_slice8[1][b >> 8 & 0xFF] ^
		      crc_slice8[0][b >> 16 & 0xFF] ^ crc_table[b >> 24];
	}
	for (; n; p++, n--)
		crc = (crc >> 8) ^ crc_table[(crc ^ *p) & 0xFF];
	return ~crc;
}
#else
#include "crc32_table.h"

uint32_t brd_crc32(uint32_t crc, const void *data, size_t n)
{
	const uint8_t *p = data;
	size_t i;

	crc = ~crc;
	for (i = 0; i < n; i++)
		crc = (crc >> 8) ^ crc_table[(crc ^ p[i]) & 0xFF];
	return ~crc;
}
#endif

/* Messages. */

void brd_msg_init(struct brd_msg *m, char *buf, size_t cap)
{
	m->buf = buf;
	m->cap = cap;
	m->len = 0;
	if (cap)
		buf[0] = 0;
}

void brd_msg_strn(struct brd_msg *m, const char *s, size_t n)
{
	while (n-- && *s && m->len + 1 < m->cap)
		m->buf[m->len++] = *s++;
	if (m->cap)
		m->buf[m->len] = 0;
}

void brd_msg_str(struct brd_msg *m, const char *s)
{
	brd_msg_strn(m, s, (size_t)-1);
}

void brd_msg_uint(struct brd_msg *m, uint64_t v)
{
	char tmp[21];
	size_t i = sizeof(tmp) - 1;

	tmp[i] = 0;
	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	brd_msg_str(m, tmp + i);
}

void brd_msg_hex32(struct brd_msg *m, uint32_t v)
{
	char tmp[9];
	int i;

	for (i = 0; i < 8; i++)
		tmp[i] = hexdig[(v >> (28 - 4 * i)) & 15];
	tmp[8] = 0;
	brd_msg_str(m, tmp);
}

/* "col N: what" */
static int bad_at(struct brd_msg *m, size_t col, const char *what)
{
	brd_msg_str(m, "col ");
	brd_msg_uint(m, col);
	brd_msg_str(m, ": ");
	brd_msg_str(m, what);
	return -1;
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

/* Parsing. */

#if BRD_FAST_SCAN
/* 1 when every byte of p[0..n) may stand inside a frame (printable ASCII but '~'). */
static int frame_bytes_only(const char *p, size_t n)
{
	unsigned int bad = 0;
	size_t i;

	for (i = 0; i < n; i++)
		bad |= (unsigned char)((unsigned char)p[i] - 0x20u) > 0x7D - 0x20;
	return !bad;
}
#endif

/* The index in p[0..n) of the first c, or n. */
static size_t find_byte(const char *p, size_t n, char c)
{
#if BRD_FAST_SCAN
	const char *q = n ? memchr(p, c, n) : NULL;

	return q ? (size_t)(q - p) : n;
#else
	size_t i;

	for (i = 0; i < n && p[i] != c; i++)
		;
	return i;
#endif
}

static int parse_fields(const char *line, size_t pos, size_t end, struct brd_msg *m)
{
	unsigned int n = 0;

	while (pos < end) {
		size_t k = pos;
#if BRD_FAST_SCAN
		size_t stop;
#endif

		if (++n > BRD_MAX_FIELDS)
			return bad_at(m, pos + 1, "more than 64 fields");
		while (pos < end && is_key_char(line[pos]))
			pos++;
		if (pos == k)
			return bad_at(m, k + 1, "expected a key of a-z, 0-9 or _");
		if (pos - k > BRD_MAX_KEY)
			return bad_at(m, k + 1, "key longer than 16 characters");
		if (pos == end || line[pos] != '=')
			return bad_at(m, pos + 1, "expected '=' after the key");
		pos++;
		/* The value runs to the next space; a '%' in it takes two hex digits. */
#if BRD_FAST_SCAN
		/* Never a space among them: the value's end stays where it is. */
		stop = pos + find_byte(line + pos, end - pos, ' ');
		while ((pos += find_byte(line + pos, stop - pos, '%')) < stop) {
			if (pos + 2 >= end || hexval(line[pos + 1]) < 0 ||
			    hexval(line[pos + 2]) < 0)
				return bad_at(m, pos + 1, "bad percent escape");
			pos += 3;
		}
#else
		while (pos < end && line[pos] != ' ') {
			if (line[pos] == '%') {
				if (pos + 2 >= end || hexval(line[pos + 1]) < 0 ||
				    hexval(line[pos + 2]) < 0)
					return bad_at(m, pos + 1, "bad percent escape");
				pos += 2;
			}
			pos++;
		}
#endif
		if (pos < end) {
			pos++;
			if (pos == end || line[pos] == ' ')
				return bad_at(m, pos + 1, "empty field (two spaces in a row)");
		}
	}
	return 0;
}

int brd_frame_parse(const char *line, size_t len, struct brd_frame *f, struct brd_msg *m)
{
	size_t i, pos, crc_at, start;
	uint32_t want = 0, got;
	uint64_t seq = 0;

	memset(f, 0, sizeof(*f));
	if (len && line[len - 1] == '\r')
		len--;
	if (len < BRD_MARKER_LEN || memcmp(line, marker, BRD_MARKER_LEN) != 0)
		return bad_at(m, 1, "expected the frame marker");
#if BRD_FAST_SCAN
	if (!frame_bytes_only(line + BRD_MARKER_LEN, len - BRD_MARKER_LEN))
#endif
		for (i = BRD_MARKER_LEN; i < len; i++) {
			unsigned char c = (unsigned char)line[i];

			if (c < 0x20 || c > 0x7E)
				return bad_at(m, i + 1, "a byte that is not printable ASCII");
			if (c == '~')
				return bad_at(m, i + 1, "'~' is not allowed inside a frame");
		}
	/* CRC before grammar: damage on the wire is reported as such, and retransmitted. */
	crc_at = len;
	while (crc_at > BRD_MARKER_LEN && line[crc_at - 1] != ' ')
		crc_at--;
	if (len - crc_at != 8 || crc_at == BRD_MARKER_LEN)
		return bad_at(m, crc_at + 1, "expected 8 hex digits of CRC-32 at the end");
	for (i = crc_at; i < len; i++) {
		int v = hexval(line[i]);

		if (v < 0)
			return bad_at(m, i + 1, "the CRC-32 has a character that is not hex");
		want = (want << 4) | (uint32_t)v;
	}
	got = brd_crc32(0, line, crc_at);
	if (got != want) {
		brd_msg_str(m, "bad CRC: frame carries ");
		brd_msg_hex32(m, want);
		brd_msg_str(m, ", computed ");
		brd_msg_hex32(m, got);
		return -1;
	}
	f->line = line;
	f->len = len;
	f->crc = want;

	pos = BRD_MARKER_LEN;
	if (pos + 1 >= crc_at || (line[pos] != 'Q' && line[pos] != 'A' && line[pos] != 'E') ||
	    line[pos + 1] != ' ')
		return bad_at(m, pos + 1, "expected frame kind Q, A or E and a space");
	f->kind = line[pos];
	pos += 2;
	start = pos;
	while (pos < crc_at && line[pos] >= '0' && line[pos] <= '9' && pos - start < 10) {
		seq = seq * 10 + (uint64_t)(line[pos] - '0');
		pos++;
	}
	if (pos == start || pos >= crc_at || line[pos] != ' ' || seq > 0xFFFFFFFFu)
		return bad_at(m, start + 1, "expected a sequence number 0..4294967295 and a space");
	f->seq = (uint32_t)seq;
	pos++;
	start = pos;
	while (pos < crc_at && is_type_char(line[pos]))
		pos++;
	if (pos == start || pos - start > BRD_MAX_TYPE || pos >= crc_at || line[pos] != ' ')
		return bad_at(m, start + 1, "expected a type of 1 to 16 characters A-Z, 0-9 or _");
	memcpy(f->type, line + start, pos - start);
	f->type[pos - start] = 0;
	pos++;
	f->fields = pos;
	f->fields_end = crc_at - 1;
	return parse_fields(line, pos, crc_at - 1, m);
}

/* Fields. */

int brd_frame_next(const struct brd_frame *f, const char *key, size_t *pos,
		   struct brd_field *out)
{
	size_t kl = strlen(key), p = *pos < f->fields ? f->fields : *pos;

	while (p < f->fields_end) {
		size_t k = p, v, e;

		while (f->line[p] != '=')
			p++;
		v = p + 1;
		e = v + find_byte(f->line + v, f->fields_end - v, ' ');
		p = e + 1;
		if (v - 1 - k == kl && memcmp(f->line + k, key, kl) == 0) {
			out->val = f->line + v;
			out->len = e - v;
			*pos = p;
			return 1;
		}
	}
	*pos = f->fields_end;
	return 0;
}

int brd_frame_find(const struct brd_frame *f, const char *key, struct brd_field *out)
{
	size_t pos = 0;

	return brd_frame_next(f, key, &pos, out);
}

static int field_bad(struct brd_msg *m, const char *key, const char *what)
{
	brd_msg_str(m, "field '");
	brd_msg_str(m, key);
	brd_msg_str(m, "': ");
	brd_msg_str(m, what);
	return -1;
}

/* Percent-decodes s[0..n) (validated by the parser) into out. Text (rawlen NULL) gets a NUL
 * and refuses %00; raw bytes (version 2) take %00, get no NUL, and their number goes to
 * *rawlen. out may be s itself: the output never overtakes the input. */
static int pct_decode(const char *s, size_t n, const char *key, char *out, size_t cap,
		      size_t *rawlen, struct brd_msg *m)
{
	size_t i, o = 0, room = rawlen ? cap : (cap ? cap - 1 : 0);

	for (i = 0; i < n; i++) {
		char c = s[i];

		if (c == '%') {
			c = (char)(hexval(s[i + 1]) << 4 | hexval(s[i + 2]));
			if (c == 0 && !rawlen)
				return field_bad(m, key, "%00 is not allowed in text");
			i += 2;
		}
		if (o >= room) {
			field_bad(m, key, "longer than ");
			brd_msg_uint(m, room);
			brd_msg_str(m, " bytes");
			return -1;
		}
		out[o++] = c;
	}
	if (rawlen)
		*rawlen = o;
	else if (cap)
		out[o] = 0;
	return 0;
}

int brd_field_raw(const struct brd_field *v, const char *key, uint8_t *out, size_t cap,
		  size_t *outlen, struct brd_msg *m)
{
	*outlen = 0;
	return pct_decode(v->val, v->len, key, (char *)out, cap, outlen, m);
}

int brd_field_text(const struct brd_field *v, const char *key, char *out, size_t cap,
		   struct brd_msg *m)
{
	return pct_decode(v->val, v->len, key, out, cap, NULL, m);
}

int brd_field_item(const struct brd_field *v, const char *key, unsigned int idx, char *out,
		   size_t cap, struct brd_msg *m)
{
	const char *s = v->val, *end = v->val + v->len, *q;

	for (;;) {
		q = s;
		while (q < end && *q != ',')
			q++;
		if (idx == 0)
			return pct_decode(s, (size_t)(q - s), key, out, cap, NULL, m) == 0 ? 1 : -1;
		if (q == end)
			return 0;
		idx--;
		s = q + 1;
	}
}

int brd_field_uint(const struct brd_field *v, const char *key, uint64_t min, uint64_t max,
		   uint64_t *out, struct brd_msg *m)
{
	uint64_t x = 0;
	size_t i;

	*out = 0;
	if (v->len == 0 || v->len > 20)
		return field_bad(m, key, "not a decimal number");
	for (i = 0; i < v->len; i++) {
		unsigned int d = (unsigned int)(v->val[i] - '0');

		if (v->val[i] < '0' || v->val[i] > '9' || x > (UINT64_MAX - d) / 10)
			return field_bad(m, key, "not a decimal number");
		x = x * 10 + d;
	}
	if (x < min || x > max) {
		field_bad(m, key, "");
		brd_msg_uint(m, x);
		brd_msg_str(m, " is outside ");
		brd_msg_uint(m, min);
		brd_msg_str(m, "..");
		brd_msg_uint(m, max);
		return -1;
	}
	*out = x;
	return 0;
}

int brd_field_hex(const struct brd_field *v, const char *key, uint8_t *out, size_t n,
		  struct brd_msg *m)
{
	size_t i;

	if (v->len != 2 * n) {
		field_bad(m, key, "expected ");
		brd_msg_uint(m, 2 * n);
		brd_msg_str(m, " hex digits");
		return -1;
	}
	for (i = 0; i < n; i++) {
		int hi = hexval(v->val[2 * i]), lo = hexval(v->val[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return field_bad(m, key, "bad hex digit");
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

int brd_field_b64(const struct brd_field *v, const char *key, uint8_t *out, size_t cap,
		  size_t *outlen, struct brd_msg *m)
{
	size_t bad = 0;
	int rc = drv_b64_decode(out, cap, v->val, v->len, outlen, &bad);

	if (rc == -1)
		return field_bad(m, key, "bad base64");
	if (rc == -2) {
		field_bad(m, key, "decoded data is longer than ");
		brd_msg_uint(m, cap);
		brd_msg_str(m, " bytes");
		return -1;
	}
	return 0;
}

/* Decoder. */

void brd_decoder_init(struct brd_decoder *d, size_t max)
{
	memset(d, 0, sizeof(*d));
	d->max = max < BRD_LINE_MIN ? BRD_LINE_MIN : max > BRD_LINE_MAX ? BRD_LINE_MAX : max;
	d->state = DEC_CONSOLE;
}

void brd_decoder_reset(struct brd_decoder *d)
{
	d->state = DEC_CONSOLE;
	d->mlen = 0;
	d->len = 0;
}

/* Outside a frame: 1 when c completes the marker. */
static int match_marker(struct brd_decoder *d, char c)
{
	if (c == marker[d->mlen]) {
		if (++d->mlen == BRD_MARKER_LEN) {
			d->mlen = 0;
			return 1;
		}
		return 0;
	}
	d->mlen = c == marker[0];
	if (!d->mlen && c == '\n' && d->state == DEC_SKIP)
		d->state = DEC_CONSOLE;
	return 0;
}

static void dec_error(struct brd_decoder *d, const char *what, size_t num, const char *tail)
{
	struct brd_msg m;

	brd_msg_init(&m, d->err, sizeof(d->err));
	brd_msg_str(&m, what);
	brd_msg_uint(&m, num);
	brd_msg_str(&m, tail);
}

/* Bytes of p[0..n) before the first '~' (and line end, with stop_at_lf). */
static size_t plain_run(const char *p, size_t n, int stop_at_lf)
{
#if BRD_FAST_SCAN
	if (stop_at_lf)
		n = find_byte(p, n, '\n');
	return find_byte(p, n, '~');
#else
	size_t k;

	for (k = 0; k < n && p[k] != '~' && (p[k] != '\n' || !stop_at_lf); k++)
		;
	return k;
#endif
}

size_t brd_scan_frame(const char *line, size_t len, size_t max, const char *p, size_t n)
{
	size_t room = len + 2 <= max ? max - len - 1 : 0;
	size_t tail = len < BRD_MARKER_LEN ? len : BRD_MARKER_LEN - 1;

	if (plain_run(line + len - tail, tail, 0) < tail)
		return 0;
	return plain_run(p, n < room ? n : room, 1);
}

size_t brd_scan_outside(int skipping, const char *p, size_t n)
{
	return plain_run(p, n, skipping);
}

enum brd_dec_result brd_decoder_run(struct brd_decoder *d, const char *data, size_t n,
				    size_t *pos, struct brd_frame *f)
{
	while (*pos < n) {
		size_t k;
		char c;

		/* Runs of ordinary bytes in bulk, the ones that matter one at a time below. */
		if (d->state == DEC_FRAME) {
			k = brd_scan_frame(d->line, d->len, d->max, data + *pos, n - *pos);
			memcpy(d->line + d->len, data + *pos, k);
			d->len += k;
		} else {
			k = d->mlen ? 0 : brd_scan_outside(d->state == DEC_SKIP, data + *pos, n - *pos);
		}
		*pos += k;
		if (*pos == n)
			break;
		c = data[(*pos)++];

		if (d->state != DEC_FRAME) {
			if (match_marker(d, c)) {
				memcpy(d->line, marker, BRD_MARKER_LEN);
				d->len = BRD_MARKER_LEN;
				d->state = DEC_FRAME;
			}
			continue;
		}
		if (c == '\n') {
			struct brd_msg m;

			d->state = DEC_CONSOLE;
			brd_msg_init(&m, d->err, sizeof(d->err));
			return brd_frame_parse(d->line, d->len, f, &m) == 0 ? BRD_DEC_FRAME
									    : BRD_DEC_ERROR;
		}
		if (d->len + 2 > d->max) {
			/* No room for this byte and the line end: skip to the next line or
			 * marker, looking at c again (it may start the marker). */
			d->state = DEC_SKIP;
			d->mlen = 0;
			(*pos)--;
			dec_error(d, "frame longer than ", d->max, " bytes (line end not found)");
			return BRD_DEC_ERROR;
		}
		d->line[d->len++] = c;
		if (c == ' ' && d->len >= 2 * BRD_MARKER_LEN &&
		    memcmp(d->line + d->len - BRD_MARKER_LEN, marker, BRD_MARKER_LEN) == 0) {
			/* '~' never appears inside a frame: this is the next frame's marker,
			 * and the current frame lost its line end. */
			d->len -= BRD_MARKER_LEN;
			dec_error(d, "frame cut off at col ", d->len + 1,
				  " by the next frame's marker (line end lost)");
			memcpy(d->line, marker, BRD_MARKER_LEN);
			d->len = BRD_MARKER_LEN;
			return BRD_DEC_ERROR;
		}
	}
	return BRD_DEC_NONE;
}

/* Encoder. */

/* Room for " " + 8 CRC digits + "\n". */
#define TRAILER 10

static int needs_pct(unsigned char c)
{
	return c <= 0x20 || c >= 0x7F || c == '%' || c == ',' || c == '~';
}

size_t brd_pct_len(const char *s, size_t n)
{
	size_t i, len = n;

	for (i = 0; i < n; i++)
		len += needs_pct((unsigned char)s[i]) ? 2 : 0;
	return len;
}

char *brd_pct_put(char *out, const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (needs_pct(c)) {
			*out++ = '%';
			*out++ = hexdig[c >> 4];
			*out++ = hexdig[c & 15];
		} else {
			*out++ = (char)c;
		}
	}
	return out;
}

/* Raw values (version 2) escape what the line cannot carry inside a field: SP, controls,
 * 0x7F-0xFF, '%' and '~'. A ',' goes as it is: raw is never a list item. */
static int needs_raw_pct(unsigned char c)
{
	return c <= 0x20 || c >= 0x7F || c == '%' || c == '~';
}

size_t brd_raw_len(const void *data, size_t n)
{
	const unsigned char *p = data;
	size_t i, len = n;

	for (i = 0; i < n; i++)
		len += needs_raw_pct(p[i]) ? 2 : 0;
	return len;
}

char *brd_raw_put(char *out, const void *data, size_t n)
{
	const unsigned char *p = data;
	size_t i;

	for (i = 0; i < n; i++) {
		if (needs_raw_pct(p[i])) {
			*out++ = '%';
			*out++ = hexdig[p[i] >> 4];
			*out++ = hexdig[p[i] & 15];
		} else {
			*out++ = (char)p[i];
		}
	}
	return out;
}

size_t brd_raw_fit(const void *data, size_t n, size_t room)
{
	const unsigned char *p = data;
	size_t k;

	for (k = 0; k < n; k++) {
		size_t c = needs_raw_pct(p[k]) ? 3 : 1;

		if (c > room)
			break;
		room -= c;
	}
	return k;
}

size_t brd_uint_str(char out[21], uint64_t v)
{
	char tmp[21];
	size_t i = sizeof(tmp);

	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	memcpy(out, tmp + i, sizeof(tmp) - i);
	return sizeof(tmp) - i;
}

char *brd_hex_put(char *out, const void *data, size_t n)
{
	const uint8_t *d = data;
	size_t i;

	for (i = 0; i < n; i++) {
		*out++ = hexdig[d[i] >> 4];
		*out++ = hexdig[d[i] & 15];
	}
	return out;
}

size_t brd_list_len(const char *const *items, size_t n)
{
	size_t i, len = n ? n - 1 : 0;

	for (i = 0; i < n; i++)
		len += brd_pct_len(items[i], strlen(items[i]));
	return len;
}

char *brd_list_put(char *out, const char *const *items, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (i)
			*out++ = ',';
		out = brd_pct_put(out, items[i], strlen(items[i]));
	}
	return out;
}

char *brd_field_put(char *buf, size_t *len, const char *key, size_t vlen)
{
	size_t kl = strlen(key);
	char *p = buf + *len;

	*p++ = ' ';
	memcpy(p, key, kl);
	p += kl;
	*p++ = '=';
	*len += 2 + kl + vlen;
	return p;
}

size_t brd_trailer_put(char *buf, size_t len)
{
	uint32_t crc;
	char *p = buf + len;
	int i;

	*p++ = ' ';
	crc = brd_crc32(0, buf, len + 1);
	for (i = 7; i >= 0; i--)
		*p++ = hexdig[(crc >> (4 * i)) & 15];
	*p = '\n';
	return len + TRAILER;
}

void brd_enc_begin(struct brd_enc *e, char *buf, size_t cap, char kind, uint32_t seq,
		   const char *type)
{
	size_t tl = strlen(type);

	e->buf = buf;
	e->cap = cap;
	e->len = 0;
	e->nfields = 0;
	e->err = 0;
	/* Longest header: marker, kind, 10-digit seq, type, spaces. */
	if (tl == 0 || tl > BRD_MAX_TYPE || BRD_MARKER_LEN + 2 + 11 + tl + 1 + TRAILER > cap) {
		e->err = 1;
		return;
	}
	memcpy(buf, marker, BRD_MARKER_LEN);
	e->len = BRD_MARKER_LEN;
	buf[e->len++] = kind;
	buf[e->len++] = ' ';
	e->len += brd_uint_str(buf + e->len, seq);
	buf[e->len++] = ' ';
	memcpy(buf + e->len, type, tl);
	e->len += tl;
}

size_t brd_enc_cost(const char *key, size_t vlen)
{
	return 2 + strlen(key) + vlen;
}

size_t brd_enc_room(const struct brd_enc *e)
{
	if (e->err || e->len + TRAILER >= e->cap)
		return 0;
	return e->cap - e->len - TRAILER;
}

size_t brd_enc_b64_room(const struct brd_enc *e, const char *key)
{
	size_t room = brd_enc_room(e), cost = brd_enc_cost(key, 0);

	return room <= cost ? 0 : (room - cost) / 4 * 3;
}

/* Starts " key=" and returns where vlen bytes of value go, or NULL (sticky error). */
static char *field_start(struct brd_enc *e, const char *key, size_t vlen)
{
	if (e->err)
		return NULL;
	if (e->nfields == BRD_MAX_FIELDS || brd_enc_cost(key, vlen) > brd_enc_room(e)) {
		e->err = 1;
		return NULL;
	}
	e->nfields++;
	return brd_field_put(e->buf, &e->len, key, vlen);
}

void brd_enc_textn(struct brd_enc *e, const char *key, const char *s, size_t n)
{
	char *p = field_start(e, key, brd_pct_len(s, n));

	if (p)
		brd_pct_put(p, s, n);
}

void brd_enc_text(struct brd_enc *e, const char *key, const char *s)
{
	brd_enc_textn(e, key, s, strlen(s));
}

void brd_enc_uint(struct brd_enc *e, const char *key, uint64_t v)
{
	char tmp[21];
	size_t n = brd_uint_str(tmp, v);
	char *p = field_start(e, key, n);

	if (p)
		memcpy(p, tmp, n);
}

void brd_enc_hex(struct brd_enc *e, const char *key, const void *data, size_t n)
{
	char *p = field_start(e, key, 2 * n);

	if (p)
		brd_hex_put(p, data, n);
}

void brd_enc_b64(struct brd_enc *e, const char *key, const void *data, size_t n)
{
	char *p = field_start(e, key, drv_b64_len(n));

	if (p)
		drv_b64_encode(p, data, n);
}

void brd_enc_list(struct brd_enc *e, const char *key, const char *const *items, size_t n)
{
	char *p = field_start(e, key, brd_list_len(items, n));

	if (p)
		brd_list_put(p, items, n);
}

size_t brd_enc_end(struct brd_enc *e)
{
	if (e->err || e->len + TRAILER > e->cap)
		return 0;
	e->len = brd_trailer_put(e->buf, e->len);
	return e->len;
}

size_t brd_pem_len(size_t n)
{
	return sizeof(BRD_PEM_BEGIN) - 1 + n + (n + BRD_PEM_LINE - 1) / BRD_PEM_LINE +
	       sizeof(BRD_PEM_END) - 1;
}
