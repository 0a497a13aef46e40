/* Templates: {name} substitution, {{ and }} escapes, unknown names caught at compile time
 * with the offset of the offending brace, and bounded expansion. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "template.h"

static const char *const vars[] = { "device_id", "hardware_id", "cert_pem", NULL };

static char *expand(const char *src, const char *const *vals, size_t max, int *rc)
{
	struct st_tmpl *t = NULL;
	size_t off, len;
	char err[256], *out = NULL;

	*rc = st_tmpl_compile(src, strlen(src), vars, &t, &off, err, sizeof(err));
	if (*rc != 0)
		return NULL;
	*rc = st_tmpl_expand(t, vals, NULL, max, &out, &len, err, sizeof(err));
	if (*rc == 0)
		assert_int_equal(len, strlen(out));
	else
		assert_null(out);
	st_tmpl_free(t);
	return out;
}

static void test_substitution(void **state)
{
	const char *vals[] = { "ID", "HW", "PEM", NULL };
	char *out;
	int rc;

	(void)state;
	out = expand("id={device_id} hw={hardware_id}{device_id}", vals, 1024, &rc);
	assert_int_equal(rc, 0);
	assert_string_equal(out, "id=ID hw=HWID");
	free(out);

	out = expand("", vals, 1024, &rc);
	assert_int_equal(rc, 0);
	assert_string_equal(out, "");
	free(out);

	/* Python str.format escapes: doubled braces are literal ones. */
	out = expand("{{\"id\": \"{device_id}\"}} {{{{}}}}", vals, 1024, &rc);
	assert_int_equal(rc, 0);
	assert_string_equal(out, "{\"id\": \"ID\"} {{}}");
	free(out);

	out = expand("{{device_id}}", vals, 1024, &rc);
	assert_int_equal(rc, 0);
	assert_string_equal(out, "{device_id}");
	free(out);

	/* {{{name}}}: a literal brace, the variable, a literal brace. */
	out = expand("{{{device_id}}}", vals, 1024, &rc);
	assert_int_equal(rc, 0);
	assert_string_equal(out, "{ID}");
	free(out);
}

static void check_error(const char *src, size_t want_off, const char *want_msg)
{
	struct st_tmpl *t = (struct st_tmpl *)1;
	size_t off = 12345;
	char err[256];
	int rc = st_tmpl_compile(src, strlen(src), vars, &t, &off, err, sizeof(err));

	assert_int_equal(rc, ST_E_TEMPLATE);
	assert_null(t);
	assert_int_equal(off, want_off);
	assert_string_equal(err, want_msg);
}

static void test_compile_errors(void **state)
{
	(void)state;
	check_error("id={devce_id}", 3,
		    "unknown variable '{devce_id}' (did you mean '{device_id}'?)");
	check_error("x{hardware}", 1,
		    "unknown variable '{hardware}' (did you mean '{hardware_id}'?)");
	check_error("{serial}", 0,
		    "unknown variable '{serial}'; known variables: {device_id}, {hardware_id}, "
		    "{cert_pem}");
	check_error("a } b", 2, "single '}' in template; write '}}' for a literal brace");
	check_error("{device_id}}", 11, "single '}' in template; write '}}' for a literal brace");
	check_error("abc {device_id", 4,
		    "'{' without a closing '}'; write '{{' for a literal brace");
	check_error("{ {device_id}", 0,
		    "'{' without a closing '}'; write '{{' for a literal brace");
	check_error("x{}", 1, "empty variable name '{}'; write '{{}}' for literal braces");
	check_error("{\"a\": 1}", 0,
		    "'{' starts a variable but '\"a\": 1' is not a variable name; write '{{' and "
		    "'}}' for literal braces");
	check_error("{\n  \"key\": \"a long value that goes on\"\n}", 0,
		    "'{' followed by a line break is not a variable; write '{{' and '}}' for "
		    "literal braces");
	check_error("{Device_Id}", 0,
		    "'{' starts a variable but 'Device_Id' is not a variable name; write '{{' and "
		    "'}}' for literal braces");
}

static void test_uses_and_sizes(void **state)
{
	struct st_tmpl *t = NULL;
	size_t off;
	char err[256];

	(void)state;
	assert_int_equal(st_tmpl_compile("a{cert_pem}b{{", 14, vars, &t, &off, err, sizeof(err)),
			 0);
	assert_int_equal(st_tmpl_uses(t), 1u << 2);
	assert_int_equal(st_tmpl_literal_len(t), 3); /* "a", "b", "{" */
	st_tmpl_free(t);
	st_tmpl_free(NULL);

	/* Only the length given counts: a template may hold a NUL only if the caller says. */
	assert_int_equal(st_tmpl_compile("{device_id}junk", 11, vars, &t, &off, err, sizeof(err)),
			 0);
	assert_int_equal(st_tmpl_uses(t), 1u << 0);
	st_tmpl_free(t);
}

static void test_bounds(void **state)
{
	const char *vals[] = { "0123456789", "", NULL, NULL };
	struct st_tmpl *t = NULL;
	size_t off, len;
	char err[256], *out = NULL;
	int rc;

	(void)state;
	/* 3 x 10 + 2 literal bytes = 32: exactly at the limit passes, one below fails. */
	out = expand("{device_id}-{device_id}-{device_id}", vals, 32, &rc);
	assert_int_equal(rc, 0);
	assert_int_equal(strlen(out), 32);
	free(out);
	out = expand("{device_id}-{device_id}-{device_id}", vals, 31, &rc);
	assert_int_equal(rc, ST_E_RENDER_LIMIT);

	/* A variable the template does not use may be NULL; one it uses may not. */
	out = expand("{device_id}{hardware_id}", vals, 100, &rc);
	assert_int_equal(rc, 0);
	free(out);
	out = expand("{cert_pem}", vals, 100, &rc);
	assert_int_equal(rc, ST_E_INVAL);

	/* Explicit lengths allow binary values. */
	assert_int_equal(st_tmpl_compile("<{cert_pem}>", 12, vars, &t, &off, err, sizeof(err)), 0);
	{
		const char *bv[] = { "", "", "a\0b", NULL };
		size_t lens[] = { 0, 0, 3 };

		assert_int_equal(st_tmpl_expand(t, bv, lens, 100, &out, &len, err, sizeof(err)), 0);
		assert_int_equal(len, 5);
		assert_memory_equal(out, "<a\0b>", 5);
		free(out);
	}
	st_tmpl_free(t);

	/* Many variables stay linear and bounded. */
	{
		size_t n = 20000;
		char *big = malloc(n * 11 + 1);

		assert_non_null(big);
		for (size_t i = 0; i < n; i++)
			memcpy(big + i * 11, "{device_id}", 11);
		big[n * 11] = '\0';
		out = expand(big, vals, 64 * 1024, &rc);
		assert_int_equal(rc, ST_E_RENDER_LIMIT);
		out = expand(big, vals, 200000, &rc);
		assert_int_equal(rc, 0);
		assert_int_equal(strlen(out), 200000);
		free(out);
		free(big);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_substitution),
		cmocka_unit_test(test_compile_errors),
		cmocka_unit_test(test_uses_and_sizes),
		cmocka_unit_test(test_bounds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
