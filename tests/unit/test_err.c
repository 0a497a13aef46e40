/* station/err.c: messages are never cut silently, and st_escape() makes any bytes from outside
 * printable without dropping any: every control byte, DEL, bytes that are not UTF-8, the
 * characters a terminal obeys, and text longer than the buffer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"

/* Whether out is something a terminal or a log shows as it is: printable ASCII and
 * well-formed UTF-8 of characters that are not obeyed (checked by decoding). */
static int shows_as_is(const char *out)
{
	const unsigned char *s = (const unsigned char *)out;
	size_t n = strlen(out), i = 0;

	while (i < n) {
		size_t k;
		uint32_t cp;

		if (s[i] < 0x20 || s[i] == 0x7f)
			return 0;
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		k = st_utf8_len(s + i, n - i);
		if (k == 0)
			return 0;
		cp = k == 2 ? s[i] & 0x1fu : k == 3 ? s[i] & 0x0fu : s[i] & 0x07u;
		for (size_t j = 1; j < k; j++)
			cp = cp << 6 | (s[i + j] & 0x3fu);
		if ((cp >= 0x80 && cp <= 0x9f) || (cp >= 0x2028 && cp <= 0x202e) ||
		    (cp >= 0x2066 && cp <= 0x2069))
			return 0;
		i += k;
	}
	return 1;
}

static const char *esc(const char *in, size_t n, unsigned flags)
{
	static char out[4096];

	return st_escape(out, sizeof(out), in, n, flags);
}

/* A string literal, all its bytes. */
#define ESC(lit, flags) esc(lit, sizeof(lit) - 1, flags)

static void test_every_control_byte(void **state)
{
	char in[1], want[8];

	(void)state;
	for (int c = 0; c < 0x20; c++) {
		in[0] = (char)c;
		if (c == '\n')
			strcpy(want, "\\n");
		else if (c == '\r')
			strcpy(want, "\\r");
		else if (c == '\t')
			strcpy(want, "\\t");
		else
			snprintf(want, sizeof(want), "\\x%02x", c);
		assert_string_equal(esc(in, 1, 0), want);
	}
	assert_string_equal(ESC("\x7f", 0), "\\x7f");
	/* Every byte value at once: the output shows as is, and nothing was dropped (each
	 * byte gave at least one output byte). */
	{
		char all[256];
		const char *out;

		for (int c = 0; c < 256; c++)
			all[c] = (char)c;
		out = esc(all, sizeof(all), 0);
		assert_true(shows_as_is(out));
		assert_true(strlen(out) >= sizeof(all));
		assert_null(strstr(out, "..."));
	}
}

static void test_forgeries(void **state)
{
	(void)state;
	/* A journald entry and a cleared screen forged from percent-decoded ERROR text. */
	assert_string_equal(ESC("ok\n<3>forged", 0), "ok\\n<3>forged");
	assert_string_equal(ESC("\x1b[2J\x1b[H", 0), "\\x1b[2J\\x1b[H");
	assert_string_equal(ESC("a\r\nb", 0), "a\\r\\nb");
	assert_string_equal(ESC("pass\rFAIL", 0), "pass\\rFAIL");
	/* A backslash is escaped too, so that "\\x1b" from a board is not an escape. */
	assert_string_equal(ESC("\\x1b", 0), "\\\\x1b");
	assert_string_equal(ESC("\\x1b", ST_ESCAPE_KEEP_BACKSLASH), "\\x1b");
	/* C1 CSI, NEL, a right-to-left override, a line separator. */
	assert_string_equal(ESC("\xc2\x9b" "2J", 0), "\\u009b2J");
	assert_string_equal(ESC("\xc2\x85", 0), "\\u0085");
	assert_string_equal(ESC("a\xe2\x80\xae" "b", 0), "a\\u202eb");
	assert_string_equal(ESC("\xe2\x80\xa8", 0), "\\u2028");
	/* Printable UTF-8 stays. */
	assert_string_equal(ESC("Fabrik M\xc3\xbcnchen \xe2\x82\xac", 0),
			    "Fabrik M\xc3\xbcnchen \xe2\x82\xac");
}

static void test_invalid_utf8(void **state)
{
	(void)state;
	assert_string_equal(ESC("\xff", 0), "\\xff");
	assert_string_equal(ESC("\xc0\x80", 0), "\\xc0\\x80");           /* overlong NUL */
	assert_string_equal(ESC("\xed\xa0\x80", 0), "\\xed\\xa0\\x80");   /* surrogate */
	assert_string_equal(ESC("\xe2\x82", 0), "\\xe2\\x82");           /* cut short */
	assert_string_equal(ESC("\xf4\x90\x80\x80", 0), "\\xf4\\x90\\x80\\x80"); /* > U+10FFFF */
	assert_string_equal(ESC("a\x80z", 0), "a\\x80z");
}

static void test_lines(void **state)
{
	(void)state;
	assert_string_equal(ESC("boot\r\nlogin:\t\x1b[0m\r", ST_ESCAPE_LINES),
			    "boot\r\nlogin:\t\\x1b[0m\\r");
}

static void test_long_text(void **state)
{
	char in[3000], out[ST_ERR_MAX];
	size_t n;

	(void)state;
	/* Escapes that do not fit are not cut in the middle: the text ends in "...". */
	memset(in, 0x1b, sizeof(in));
	st_escape(out, sizeof(out), in, sizeof(in), 0);
	n = strlen(out);
	assert_true(n < sizeof(out));
	assert_true(n >= sizeof(out) - 8);
	assert_string_equal(out + n - 3, "...");
	assert_int_equal((n - 3) % 4, 0);
	for (size_t i = 0; i + 3 < n; i += 4)
		assert_memory_equal(out + i, "\\x1b", 4);
	/* A multi-byte character is kept whole or left out whole. */
	for (size_t i = 0; i + 1 < sizeof(in); i += 2) {
		in[i] = '\xc3';
		in[i + 1] = '\xa9';
	}
	for (size_t len = 4; len < 40; len++) {
		st_escape(out, len, in, sizeof(in) - 1, 0);
		assert_true(strlen(out) < len);
		assert_true(shows_as_is(out));
		assert_string_equal(out + strlen(out) - 3, "...");
	}
	/* A buffer too small for the text and "..." gets "", never a silent cut. */
	st_escape(out, 1, "abc", 3, 0);
	assert_string_equal(out, "");
	st_escape(out, 3, "abc", 3, 0);
	assert_string_equal(out, "");
	st_escape(out, 4, "abcd", 4, 0);
	assert_string_equal(out, "...");
	/* Fits exactly. */
	st_escape(out, 4, "abc", 3, 0);
	assert_string_equal(out, "abc");
}

static void test_random_bytes(void **state)
{
	unsigned char in[512];
	char out[ST_ESCAPE_SIZE(sizeof(in))];
	unsigned seed = 12345;

	(void)state;
	for (int round = 0; round < 2000; round++) {
		size_t n = (size_t)(seed % sizeof(in));

		for (size_t i = 0; i < n; i++) {
			seed = seed * 1103515245u + 12345u;
			in[i] = (unsigned char)(seed >> 16);
		}
		seed = seed * 1103515245u + 12345u;
		st_escape(out, sizeof(out), in, n, 0);
		assert_true(shows_as_is(out));
		/* ST_ESCAPE_SIZE holds it all: never cut. */
		assert_true(strlen(out) >= n);
	}
}

static void test_msgf_marks_a_cut(void **state)
{
	char buf[16], big[64];
	int rc;

	(void)state;
	st_msgf(buf, sizeof(buf), "%s", "short");
	assert_string_equal(buf, "short");
	st_msgf(buf, sizeof(buf), "%s", "refused and flagged");
	assert_string_equal(buf, "refused and ...");
	rc = st_errf(buf, sizeof(buf), ST_E_INVAL, "%s", "a cause that is far too long");
	assert_int_equal(rc, ST_E_INVAL);
	assert_string_equal(buf, "a cause that...");
	/* Never inside a character: "é" is two bytes. */
	st_msgf(buf, sizeof(buf), "%s", "abcdefghijk\xc3\xa9\xc3\xa9\xc3\xa9");
	assert_string_equal(buf, "abcdefghijk...");
	st_msgf(buf, sizeof(buf), "%s", "abcdefghij\xc3\xa9\xc3\xa9\xc3\xa9");
	assert_string_equal(buf, "abcdefghij\xc3\xa9...");
	/* Exactly full is not a cut. */
	st_msgf(buf, sizeof(buf), "%s", "123456789012345");
	assert_string_equal(buf, "123456789012345");
	/* ST_ERR_MAX holds a long cause whole. */
	{
		char cause[ST_ERR_MAX];

		memset(big, 'x', sizeof(big) - 1);
		big[sizeof(big) - 1] = 0;
		st_errf(cause, sizeof(cause), ST_E_POOL_ID_OTHER_KEY,
			"%s %s %s %s %s %s %s %s: refused and flagged", big, big, big, big, big, big,
			big, big);
		assert_non_null(strstr(cause, "refused and flagged"));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_control_byte),
		cmocka_unit_test(test_forgeries),
		cmocka_unit_test(test_invalid_utf8),
		cmocka_unit_test(test_lines),
		cmocka_unit_test(test_long_text),
		cmocka_unit_test(test_random_bytes),
		cmocka_unit_test(test_msgf_marks_a_cut),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
