#include "err.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define ST__ERR_MSG(name, msg) [ST__IDX_##name] = msg,
static const char *const err_msgs[ST__IDX_COUNT_] = {
	[ST__IDX_OK_] = "success",
	ST_ERR_MAP(ST__ERR_MSG)
};
#undef ST__ERR_MSG

#define ST__ERR_NAME(name, msg) [ST__IDX_##name] = #name,
static const char *const err_names[ST__IDX_COUNT_] = {
	[ST__IDX_OK_] = "OK",
	ST_ERR_MAP(ST__ERR_NAME)
};
#undef ST__ERR_NAME

const char *st_strerror(int code)
{
	if (code > 0 || -code >= ST__IDX_COUNT_)
		return "unknown error";
	return err_msgs[-code];
}

const char *st_errname(int code)
{
	if (code > 0 || -code >= ST__IDX_COUNT_)
		return "UNKNOWN";
	return err_names[-code];
}

/* Ends a message that vsnprintf() cut (it needed n bytes more than len) in "...", at a
 * character boundary, so that a reader knows there was more. */
static void mark_cut(char *buf, size_t len, int n)
{
	size_t at;

	if (n < 0 || (size_t)n < len || len < 4)
		return;
	at = len - 4;
	while (at > 0 && ((unsigned char)buf[at] & 0xc0) == 0x80)
		at--;
	memcpy(buf + at, "...", 4);
}

void st_vmsgf(char *buf, size_t len, const char *fmt, va_list ap)
{
	int n;

	if (!buf || len == 0)
		return;
	n = vsnprintf(buf, len, fmt, ap);
	mark_cut(buf, len, n);
}

void st_msgf(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	st_vmsgf(buf, len, fmt, ap);
	va_end(ap);
}

int st_errf(char *buf, size_t len, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	st_vmsgf(buf, len, fmt, ap);
	va_end(ap);
	return code;
}

size_t st_utf8_len(const unsigned char *s, size_t n)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t len, i;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4;
	else
		return 0;
	if (s[0] == 0xe0)
		lo = 0xa0;
	else if (s[0] == 0xed)
		hi = 0x9f;
	else if (s[0] == 0xf0)
		lo = 0x90;
	else if (s[0] == 0xf4)
		hi = 0x8f;
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i < len; i++) {
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	}
	return len;
}

/* The code point of the well-formed sequence of len bytes at s. */
static uint32_t utf8_cp(const unsigned char *s, size_t len)
{
	uint32_t cp = len == 2 ? s[0] & 0x1fu : len == 3 ? s[0] & 0x0fu : s[0] & 0x07u;

	for (size_t i = 1; i < len; i++)
		cp = cp << 6 | (s[i] & 0x3fu);
	return cp;
}

/* Characters a terminal or a log reader acts on instead of showing them: C1 controls (CSI,
 * NEL, ...), line and paragraph separators, and the marks and overrides that reorder text. */
static int obeyed(uint32_t cp)
{
	return (cp >= 0x80 && cp <= 0x9f) || cp == 0x061c || cp == 0x200e || cp == 0x200f ||
	       (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

const char *st_escape(char *out, size_t len, const void *in, size_t n, unsigned flags)
{
	static const char hexd[] = "0123456789abcdef";
	const unsigned char *s = in;
	size_t i = 0, o = 0, safe = 0, k, plen;
	const char *piece;
	char esc[8];

	if (!out || len == 0)
		return out;
	while (i < n) {
		unsigned char c = s[i];

		k = c >= 0x80 ? st_utf8_len(s + i, n - i) : 1;
		piece = esc;
		if (c == '\\') {
			piece = flags & ST_ESCAPE_KEEP_BACKSLASH ? "\\" : "\\\\";
			plen = strlen(piece);
		} else if ((flags & ST_ESCAPE_LINES) &&
			   (c == '\n' || c == '\t' || (c == '\r' && i + 1 < n && s[i + 1] == '\n'))) {
			piece = (const char *)s + i;
			plen = 1;
		} else if (c == '\n' || c == '\r' || c == '\t') {
			esc[0] = '\\';
			esc[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
			plen = 2;
		} else if (c >= 0x20 && c < 0x7f) {
			piece = (const char *)s + i;
			plen = 1;
		} else if (c >= 0x80 && k > 0) {
			uint32_t cp = utf8_cp(s + i, k);

			if (obeyed(cp)) {
				snprintf(esc, sizeof(esc), "\\u%04x", (unsigned)cp);
				plen = 6;
			} else {
				piece = (const char *)s + i;
				plen = k;
			}
		} else {
			/* A control byte, DEL, or a byte that is not well-formed UTF-8. */
			k = 1;
			esc[0] = '\\';
			esc[1] = 'x';
			esc[2] = hexd[c >> 4];
			esc[3] = hexd[c & 15];
			plen = 4;
		}
		if (o + plen >= len) {
			o = safe;
			if (o + 3 < len) {
				memcpy(out + o, "...", 3);
				o += 3;
			}
			break;
		}
		memcpy(out + o, piece, plen);
		o += plen;
		i += k;
		if (o + 3 < len)
			safe = o;
	}
	out[o] = 0;
	return out;
}

const char *st_printable(char *out, size_t len, const char *s)
{
	return st_escape(out, len, s, s ? strlen(s) : 0, 0);
}
