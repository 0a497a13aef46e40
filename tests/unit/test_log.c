/* station/log.c: whatever a message holds (bytes a board sent, quoted by a caller that forgot
 * to escape them), each st_log() call writes exactly one line of printable text in every log
 * form, so that nothing can forge a journal entry or act on the terminal the log is read on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "err.h"
#include "log.h"

/* Runs st_log(level, "%s", msg) with stderr on a file; returns what was written (malloc'd). */
static char *logged(enum st_log_level level, const char *msg)
{
	FILE *f = tmpfile();
	int saved = dup(STDERR_FILENO);
	char *out;
	long n;

	assert_non_null(f);
	assert_true(saved >= 0);
	assert_true(dup2(fileno(f), STDERR_FILENO) >= 0);
	st_log(level, "slot board0: device x: the board answered WRITE with ERROR STORAGE: %s",
	       msg);
	assert_true(dup2(saved, STDERR_FILENO) >= 0);
	close(saved);
	n = ftell(f);
	assert_true(n > 0);
	out = calloc(1, (size_t)n + 1);
	assert_non_null(out);
	rewind(f);
	assert_int_equal(fread(out, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return out;
}

/* One line, ending in its only line feed, with no byte a terminal acts on. */
static void assert_one_clean_line(const char *out)
{
	size_t n = strlen(out);

	assert_true(n > 1);
	assert_int_equal(out[n - 1], '\n');
	for (size_t i = 0; i + 1 < n; i++) {
		unsigned char c = (unsigned char)out[i];

		if (c < 0x20 || c == 0x7f)
			fail_msg("byte 0x%02x at %zu in: %s", c, i, out);
	}
}

static const char *const hostile[] = {
	"flash%0A<3>forged",                     /* what was percent-encoded */
	"flash\n<3>error: forged entry",         /* ... and decoded */
	"\x1b[2J\x1b[H\x1b]0;title\x07",         /* clear the screen, set the title */
	"ok\rFAIL\r\n",
	"\xff\xfe\xc0\x80\xed\xa0\x80 not UTF-8",
	"\xc2\x9b" "31m C1 CSI, \xe2\x80\xae override",
	"\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19"
	"\x1a\x1c\x1d\x1e\x1f\x7f",
};

static void test_text_form(void **state)
{
	(void)state;
	st_log_set_format(ST_LOG_FORMAT_TEXT);
	st_log_set_prefix(1);
	for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
		char *out = logged(ST_LOG_WARN, hostile[i]);

		assert_one_clean_line(out);
		assert_true(strncmp(out, "<4>warning: slot board0:", 24) == 0);
		free(out);
	}
	{
		char *out = logged(ST_LOG_ERR, hostile[1]);

		assert_non_null(strstr(out, "flash\\n<3>error: forged entry"));
		free(out);
	}
}

static void test_json_form(void **state)
{
	(void)state;
	st_log_set_format(ST_LOG_FORMAT_JSON);
	for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
		char *out = logged(ST_LOG_ERR, hostile[i]);
		json_error_t jerr;
		json_t *o;
		const char *msg;

		assert_one_clean_line(out);
		o = json_loads(out, 0, &jerr);
		if (!o)
			fail_msg("not JSON: %s: %s", jerr.text, out);
		msg = json_string_value(json_object_get(o, "msg"));
		assert_non_null(msg);
		/* Decoded, the message is still printable: escaped, not just JSON-quoted. */
		for (const unsigned char *p = (const unsigned char *)msg; *p; p++)
			assert_false(*p < 0x20 || *p == 0x7f);
		json_decref(o);
		free(out);
	}
	st_log_set_format(ST_LOG_FORMAT_TEXT);
}

static void test_long_message(void **state)
{
	char *big = malloc(10000), *out;

	(void)state;
	assert_non_null(big);
	for (size_t i = 0; i < 9999; i++)
		big[i] = (char)(i % 3 ? 0x1b : 'x');
	big[9999] = 0;
	st_log_set_format(ST_LOG_FORMAT_JOURNAL);
	out = logged(ST_LOG_ERR, big);
	assert_one_clean_line(out);
	/* Cut, and saying so. */
	assert_non_null(strstr(out, "...\n"));
	free(out);
	free(big);
	st_log_set_format(ST_LOG_FORMAT_TEXT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_text_form),
		cmocka_unit_test(test_json_form),
		cmocka_unit_test(test_long_message),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
