/* The board core's frame codec: see frame.h and drivers/PROTOCOL.md section 1. */
#include "frame.h"

#include <string.h>

#include "b64.h"

enum { DEC_CONSOLE, DEC_FRAME, DEC_SKIP };

static const char marker[] = BRD_MARKER;
static const char hexdig[] = "0123456789ABCDEF";

/* CRC-32. Every byte a station or a simulated board exchanges goes through it, hundreds of
 * boards in one process: a byte at a time from a 256-entry table (1 KiB of constants) takes
 * a fraction of the instructions of four bits at a time. A firmware short of flash builds
 * with BRD_CRC_NIBBLE=1 for the 16-entry table (64 bytes), fast enough for a UART; both give
 * the same CRC (PROTOCOL.md defines only the result). zlib's crc32_z, tried for the hosts'
 * build, checks a byte in a ninth of the time, but the station's loop spent 3.5% of its time
 * here and still 1.5% with it (frames are short): not worth a second build of the core with
 * a library in it. */
#ifndef BRD_CRC_NIBBLE
#define BRD_CRC_NIBBLE 0
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
#else
static const uint32_t crc_table[256] = {
	0x00000000, 0x77073096, 0xEE0E612C, 0x990951BA, 0x076DC419, 0x706AF48F,
	0xE963A535, 0x9E6495A3, 0x0EDB8832, 0x79DCB8A4, 0xE0D5E91E, 0x97D2D988,
	0x09B64C2B, 0x7EB17CBD, 0xE7B82D07, 0x90BF1D91, 0x1DB71064, 0x6AB020F2,
	0xF3B97148, 0x84BE41DE, 0x1ADAD47D, 0x6DDDE4EB, 0xF4D4B551, 0x83D385C7,
	0x136C9856, 0x646BA8C0, 0xFD62F97A, 0x8A65C9EC, 0x14015C4F, 0x63066CD9,
	0xFA0F3D63, 0x8D080DF5, 0x3B6E20C8, 0x4C69105E, 0xD56041E4, 0xA2677172,
	0x3C03E4D1, 0x4B04D447, 0xD20D85FD, 0xA50AB56B, 0x35B5A8FA, 0x42B2986C,
	0xDBBBC9D6, 0xACBCF940, 0x32D86CE3, 0x45DF5C75, 0xDCD60DCF, 0xABD13D59,
	0x26D930AC, 0x51DE003A, 0xC8D75180, 0xBFD06116, 0x21B4F4B5, 0x56B3C423,
	0xCFBA9599, 0xB8BDA50F, 0x2802B89E, 0x5F058808, 0xC60CD9B2, 0xB10BE924,
	0x2F6F7C87, 0x58684C11, 0xC1611DAB, 0xB6662D3D, 0x76DC4190, 0x01DB7106,
	0x98D220BC, 0xEFD5102A, 0x71B18589, 0x06B6B51F, 0x9FBFE4A5, 0xE8B8D433,
	0x7807C9A2, 0x0F00F934, 0x9609A88E, 0xE10E9818, 0x7F6A0DBB, 0x086D3D2D,
	0x91646C97, 0xE6635C01, 0x6B6B51F4, 0x1C6C6162, 0x856530D8, 0xF262004E,
	0x6C0695ED, 0x1B01A57B, 0x8208F4C1, 0xF50FC457, 0x65B0D9C6, 0x12B7E950,
	0x8BBEB8EA, 0xFCB9887C, 0x62DD1DDF, 0x15DA2D49, 0x8CD37CF3, 0xFBD44C65,
	0x4DB26158, 0x3AB551CE, 0xA3BC0074, 0xD4BB30E2, 0x4ADFA541, 0x3DD895D7,
	0xA4D1C46D, 0xD3D6F4FB, 0x4369E96A, 0x346ED9FC, 0xAD678846, 0xDA60B8D0,
	0x44042D73, 0x33031DE5, 0xAA0A4C5F, 0xDD0D7CC9, 0x5005713C, 0x270241AA,
	0xBE0B1010, 0xC90C2086, 0x5768B525, 0x206F85B3, 0xB966D409, 0xCE61E49F,
	0x5EDEF90E, 0x29D9C998, 0xB0D09822, 0xC7D7A8B4, 0x59B33D17, 0x2EB40D81,
	0xB7BD5C3B, 0xC0BA6CAD, 0xEDB88320, 0x9ABFB3B6, 0x03B6E20C, 0x74B1D29A,
	0xEAD54739, 0x9DD277AF, 0x04DB2615, 0x73DC1683, 0xE3630B12, 0x94643B84,
	0x0D6D6A3E, 0x7A6A5AA8, 0xE40ECF0B, 0x9309FF9D, 0x0A00AE27, 0x7D079EB1,
	0xF00F9344, 0x8708A3D2, 0x1E01F268, 0x6906C2FE, 0xF762575D, 0x806567CB,
	0x196C3671, 0x6E6B06E7, 0xFED41B76, 0x89D32BE0, 0x10DA7A5A, 0x67DD4ACC,
	0xF9B9DF6F, 0x8EBEEFF9, 0x17B7BE43, 0x60B08ED5, 0xD6D6A3E8, 0xA1D1937E,
	0x38D8C2C4, 0x4FDFF252, 0xD1BB67F1, 0xA6BC5767, 0x3FB506DD, 0x48B2364B,
	0xD80D2BDA, 0xAF0A1B4C, 0x36034AF6, 0x41047A60, 0xDF60EFC3, 0xA867DF55,
	0x316E8EEF, 0x4669BE79, 0xCB61B38C, 0xBC66831A, 0x256FD2A0, 0x5268E236,
	0xCC0C7795, 0xBB0B4703, 0x220216B9, 0x5505262F, 0xC5BA3BBE, 0xB2BD0B28,
	0x2BB45A92, 0x5CB36A04, 0xC2D7FFA7, 0xB5D0CF31, 0x2CD99E8B, 0x5BDEAE1D,
	0x9B64C2B0, 0xEC63F226, 0x756AA39C, 0x026D930A, 0x9C0906A9, 0xEB0E363F,
	0x72076785, 0x05005713, 0x95BF4A82, 0xE2B87A14, 0x7BB12BAE, 0x0CB61B38,
	0x92D28E9B, 0xE5D5BE0D, 0x7CDCEFB7, 0x0BDBDF21, 0x86D3D2D4, 0xF1D4E242,
	0x68DDB3F8, 0x1FDA836E, 0x81BE16CD, 0xF6B9265B, 0x6FB077E1, 0x18B74777,
	0x88085AE6, 0xFF0F6A70, 0x66063BCA, 0x11010B5C, 0x8F659EFF, 0xF862AE69,
	0x616BFFD3, 0x166CCF45, 0xA00AE278, 0xD70DD2EE, 0x4E048354, 0x3903B3C2,
	0xA7672661, 0xD06016F7, 0x4969474D, 0x3E6E77DB, 0xAED16A4A, 0xD9D65ADC,
	0x40DF0B66, 0x37D83BF0, 0xA9BCAE53, 0xDEBB9EC5, 0x47B2CF7F, 0x30B5FFE9,
	0xBDBDF21C, 0xCABAC28A, 0x53B39330, 0x24B4A3A6, 0xBAD03605, 0xCDD70693,
	0x54DE5729, 0x23D967BF, 0xB3667A2E, 0xC4614AB8, 0x5D681B02, 0x2A6F2B94,
	0xB40BBE37, 0xC30C8EA1, 0x5A05DF1B, 0x2D02EF8D,
};

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

static int parse_fields(const char *line, size_t pos, size_t end, struct brd_msg *m)
{
	unsigned int n = 0;

	while (pos < end) {
		size_t k = pos;

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
		while (pos < end && line[pos] != ' ') {
			if (line[pos] == '%') {
				if (pos + 2 >= end || hexval(line[pos + 1]) < 0 ||
				    hexval(line[pos + 2]) < 0)
					return bad_at(m, pos + 1, "bad percent escape");
				pos += 2;
			}
			pos++;
		}
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
		e = v;
		while (e < f->fields_end && f->line[e] != ' ')
			e++;
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

/* Bytes of p[0..n) before the first '~' (and line end, with stop_at_lf). Plain loops: the
 * core uses no more of the C library than memcpy and its like. */
static size_t plain_run(const char *p, size_t n, int stop_at_lf)
{
	size_t k;

	for (k = 0; k < n && p[k] != '~' && (p[k] != '\n' || !stop_at_lf); k++)
		;
	return k;
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
