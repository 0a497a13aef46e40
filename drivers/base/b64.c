/* Base64 (RFC 4648): see b64.h. */
#include "b64.h"

static const char b64chars[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t drv_b64_len(size_t n)
{
	return (n + 2) / 3 * 4;
}

size_t drv_b64_encode(char *out, const void *data, size_t n)
{
	const uint8_t *p = data;
	size_t i, o = 0;

	for (i = 0; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];

		out[o++] = b64chars[v >> 18];
		out[o++] = b64chars[(v >> 12) & 63];
		out[o++] = b64chars[(v >> 6) & 63];
		out[o++] = b64chars[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);

		out[o++] = b64chars[v >> 18];
		out[o++] = b64chars[(v >> 12) & 63];
		out[o++] = i + 1 < n ? b64chars[(v >> 6) & 63] : '=';
		out[o++] = '=';
	}
	return o;
}

/* Each character's 6-bit value from '+' (0x2B) to 'z' (0x7A), -1 for the ones between that
 * are not in the alphabet: one comparison and one load per character (the codec decodes
 * every CSR chunk, the issuance policy every PEM body), and 80 bytes for a board core. */
static const int8_t b64values[80] = {
	62, -1, -1, -1, 63, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, -1,
	-1, -1, -1, -1, -1, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9,
	10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
	-1, -1, -1, -1, -1, -1, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35,
	36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51,
};

int drv_b64_value(unsigned char c)
{
	unsigned int i = (unsigned int)c - '+';

	return i < sizeof(b64values) ? b64values[i] : -1;
}

int drv_b64_decode(uint8_t *out, size_t cap, const char *in, size_t n, size_t *outlen,
		   size_t *bad)
{
	size_t i, o = 0;

	*outlen = 0;
	if (n % 4) {
		/* Name the first position where the length cannot work out. */
		*bad = n - n % 4;
		for (i = 0; i < n; i++) {
			if (drv_b64_value((unsigned char)in[i]) < 0) {
				*bad = i;
				break;
			}
		}
		return -1;
	}
	/* Whole groups of the alphabet, the bulk of any input, without the checks below; the
	 * first group that is not one (padding, or a character not allowed) goes the careful
	 * way, which names the character and checks the padding. */
	for (i = 0; i + 4 <= n; i += 4) {
		int a = drv_b64_value((unsigned char)in[i]);
		int b = drv_b64_value((unsigned char)in[i + 1]);
		int c = drv_b64_value((unsigned char)in[i + 2]);
		int d = drv_b64_value((unsigned char)in[i + 3]);
		uint32_t w;

		if ((a | b | c | d) < 0)
			break;
		if (o + 3 > cap)
			return -2;
		w = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
		out[o++] = (uint8_t)(w >> 16);
		out[o++] = (uint8_t)(w >> 8);
		out[o++] = (uint8_t)w;
	}
	for (; i < n; i += 4) {
		int v[4], pad = 0, k;
		uint32_t w;

		for (k = 0; k < 4; k++) {
			v[k] = drv_b64_value((unsigned char)in[i + k]);
			if (v[k] >= 0 && pad == 0)
				continue;
			/* '=' is allowed only in the last group, in its last two places, and
			 * only '=' may follow it. */
			if (in[i + k] != '=' || i + 4 != n || k < 2) {
				*bad = i + k;
				return -1;
			}
			pad++;
			v[k] = 0;
		}
		w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
		    (uint32_t)v[3];
		/* Canonical form: the bits that padding drops must be zero. */
		if ((pad == 1 && (w & 0xFF)) || (pad == 2 && (w & 0xFFFF))) {
			*bad = i + 3 - (size_t)pad;
			return -1;
		}
		if (o + 3 - (size_t)pad > cap)
			return -2;
		out[o++] = (uint8_t)(w >> 16);
		if (pad < 2)
			out[o++] = (uint8_t)(w >> 8);
		if (pad < 1)
			out[o++] = (uint8_t)w;
	}
	*outlen = o;
	return 0;
}
