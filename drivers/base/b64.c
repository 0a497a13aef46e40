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

int drv_b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
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
	for (i = 0; i < n; i += 4) {
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
