/* Board wire protocol codec: framing under every split of the byte stream, console bytes kept
 * intact, CRC and grammar errors named, size limits, builder/parser round trips. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "frame.h"
#include "proto.h"
#include "testutil.h"

/* What a decoder produced: frame lines, console bytes, errors; compared across splits. */
struct sink {
	char frames[4096 * 4];
	size_t flen;
	unsigned int nframes;
	char console[4096];
	size_t clen;
	unsigned int nerrors;
	int codes[16];
	char msgs[16][160];
};

static void on_frame(void *arg, const struct drv_proto_frame *f)
{
	struct sink *s = arg;

	assert_true(s->flen + f->len + 1 <= sizeof(s->frames));
	memcpy(s->frames + s->flen, f->line, f->len);
	s->flen += f->len;
	s->frames[s->flen++] = '\n';
	s->nframes++;
}

static void on_console(void *arg, const char *data, size_t n)
{
	struct sink *s = arg;

	assert_true(n > 0);
	assert_true(s->clen + n <= sizeof(s->console));
	memcpy(s->console + s->clen, data, n);
	s->clen += n;
}

static void on_error(void *arg, int code, const char *msg, const char *line, size_t len)
{
	struct sink *s = arg;

	(void)line;
	(void)len;
	if (s->nerrors < 16) {
		s->codes[s->nerrors] = code;
		snprintf(s->msgs[s->nerrors], sizeof(s->msgs[0]), "%s", msg);
	}
	s->nerrors++;
}

static const struct drv_proto_callbacks cbs = { on_frame, on_console, on_error };

/* Builds a frame into buf; returns its length. */
static size_t build(char *buf, size_t cap, char kind, uint32_t seq, const char *type,
		    const char *text)
{
	struct drv_proto_builder b;
	char err[128];
	size_t len;

	drv_proto_begin(&b, buf, cap, kind, seq, type);
	if (text)
		drv_proto_add_text(&b, "text", text);
	drv_proto_add_uint(&b, "n", seq);
	assert_int_equal(drv_proto_end(&b, &len, err, sizeof(err)), 0);
	return len;
}

/* Appends a raw line with a correct CRC: for frames whose grammar is wrong on purpose. */
static size_t raw_frame(char *buf, const char *body)
{
	size_t n = (size_t)sprintf(buf, "%s%s ", DRV_PROTO_MARKER, body);

	n += (size_t)sprintf(buf + n, "%08X\n", drv_proto_crc32(0, buf, n));
	return n;
}

static void feed_split(struct sink *s, size_t max_line, const char *data, size_t n,
		       const size_t *cuts, size_t ncuts)
{
	struct drv_proto_decoder *d = malloc(sizeof(*d));
	size_t at = 0, i;

	assert_non_null(d);
	memset(s, 0, sizeof(*s));
	drv_proto_decoder_init(d, max_line, &cbs, s);
	for (i = 0; i <= ncuts; i++) {
		size_t end = i < ncuts ? cuts[i] : n;

		assert_int_equal(drv_proto_decoder_feed(d, data + at, end - at), end - at);
		at = end;
	}
	free(d);
}

/* Feeds data one byte at a time. */
static void feed_bytewise(struct sink *s, size_t max_line, const char *data, size_t n)
{
	size_t *all = malloc(n * sizeof(*all));

	assert_non_null(all);
	for (size_t i = 0; i < n; i++)
		all[i] = i;
	feed_split(s, max_line, data, n, all, n);
	free(all);
}

static void assert_same(const struct sink *a, const struct sink *b)
{
	assert_int_equal(a->nframes, b->nframes);
	assert_int_equal(a->flen, b->flen);
	assert_memory_equal(a->frames, b->frames, a->flen);
	assert_int_equal(a->clen, b->clen);
	assert_memory_equal(a->console, b->console, a->clen);
	assert_int_equal(a->nerrors, b->nerrors);
}

static void test_crc32(void **state)
{
	(void)state;
	assert_int_equal(drv_proto_crc32(0, "123456789", 9), 0xCBF43926);
	assert_int_equal(drv_proto_crc32(drv_proto_crc32(0, "1234", 4), "56789", 5), 0xCBF43926);
	assert_int_equal(drv_proto_crc32(0, "", 0), 0);
}

/* A stream with noise, partial markers, CRLF, a CRC error and a too-long line. */
static size_t make_stream(char *buf, size_t *nframes, const char **console)
{
	static const char noise1[] = "U-Boot 2023.04 ~@P2 not a frame\r\n~@ ~@P ~@P1";
	static const char noise2[] = "\r\nlogin: ";
	static const char noise3[] = "[   12.34] eth0: link up ~\n";
	static char expect[512];
	size_t n = 0;
	char f[600];
	size_t fl;

	memcpy(buf + n, noise1, sizeof(noise1) - 1);
	n += sizeof(noise1) - 1;
	fl = build(f, sizeof(f), 'A', 1, "HELLO", "board 1 ~@P1 %,");
	memcpy(buf + n, f, fl);
	n += fl;
	memcpy(buf + n, noise2, sizeof(noise2) - 1);
	n += sizeof(noise2) - 1;
	fl = build(f, sizeof(f), 'Q', 4294967295u, "WRITE", NULL);
	memcpy(buf + n, f, fl - 1);
	n += fl - 1;
	buf[n++] = '\r';
	buf[n++] = '\n';
	memcpy(buf + n, noise3, sizeof(noise3) - 1);
	n += sizeof(noise3) - 1;
	fl = build(f, sizeof(f), 'E', 0, "BOOT", "");
	memcpy(buf + n, f, fl);
	n += fl;
	*nframes = 3;
	snprintf(expect, sizeof(expect), "%s%s%s", "U-Boot 2023.04 ~@P2 not a frame\r\n~@ ~@P ~@P1",
		 noise2, noise3);
	*console = expect;
	return n;
}

static void test_every_split(void **state)
{
	char stream[2048];
	const char *console;
	size_t n, nframes, i, j;
	struct sink whole, part;
	size_t cuts[2];

	(void)state;
	n = make_stream(stream, &nframes, &console);
	feed_split(&whole, 0, stream, n, NULL, 0);
	assert_int_equal(whole.nframes, nframes);
	assert_int_equal(whole.nerrors, 0);
	assert_int_equal(whole.clen, strlen(console));
	assert_memory_equal(whole.console, console, whole.clen);

	/* One cut anywhere. */
	for (i = 0; i <= n; i++) {
		cuts[0] = i;
		feed_split(&part, 0, stream, n, cuts, 1);
		assert_same(&whole, &part);
	}
	/* Two cuts anywhere (every pair over the first frames). */
	for (i = 0; i <= n && i < 160; i++) {
		for (j = i; j <= n && j < 200; j++) {
			cuts[0] = i;
			cuts[1] = j;
			feed_split(&part, 0, stream, n, cuts, 2);
			assert_same(&whole, &part);
		}
	}
	/* One byte at a time. */
	feed_bytewise(&part, 0, stream, n);
	assert_same(&whole, &part);
}

static void test_random_splits(void **state)
{
	char stream[2048];
	const char *console;
	size_t n, nframes, cuts[64], ncuts, i;
	struct sink whole, part;
	uint32_t rng = 12345;
	int round;

	(void)state;
	n = make_stream(stream, &nframes, &console);
	feed_split(&whole, 0, stream, n, NULL, 0);
	for (round = 0; round < 2000; round++) {
		size_t at = 0;

		ncuts = 0;
		while (ncuts < 64) {
			rng = rng * 1103515245u + 12345u;
			at += (rng >> 16) % 23;
			if (at >= n)
				break;
			cuts[ncuts++] = at;
		}
		feed_split(&part, 0, stream, n, cuts, ncuts);
		assert_same(&whole, &part);
	}
	(void)i;
}

/* Damaged streams decode the same under any split: a frame that lost its line end to the
 * next frame's marker (the marker cut anywhere), a lone '~' inside a frame and one just
 * before a line end, a marker that follows a marker, over-long frames ended by a marker and
 * by a line end, console text with tildes. The decoder takes ordinary bytes in bulk and the
 * ones that matter one by one: every split sees the same frames, console bytes and errors,
 * with the same messages. */
static void test_damaged_splits(void **state)
{
	char stream[8192], f[600], big[700];
	size_t n = 0, fl, cuts[64], ncuts, i;
	struct sink whole, part;
	uint32_t rng = 777;

	(void)state;
	fl = build(f, sizeof(f), 'A', 1, "HELLO", "one");
	memcpy(stream + n, f, fl - 1); /* line end lost */
	n += fl - 1;
	fl = build(f, sizeof(f), 'A', 2, "CSR", "two");
	memcpy(stream + n, f, fl);
	n += fl;
	n += (size_t)sprintf(stream + n, "console ~ ~~ ~@P ~@Q text\n");
	fl = build(f, sizeof(f), 'A', 3, "WRITE", "three");
	memcpy(stream + n, f, 20);
	stream[n + 20] = '~'; /* a lone tilde inside a frame */
	memcpy(stream + n + 21, f + 20, fl - 20);
	n += fl + 1;
	fl = build(f, sizeof(f), 'A', 4, "COMMIT", "four");
	memcpy(stream + n, f, fl - 1);
	stream[n + fl - 1] = '~'; /* a tilde right before the line end */
	stream[n + fl] = '\n';
	n += fl + 1;
	memcpy(stream + n, "~@P1 A 5 VERIFY ~@", 18); /* a marker that follows a marker */
	n += 18;
	fl = build(f, sizeof(f), 'A', 6, "DONE", "six");
	memcpy(stream + n, f + 2, fl - 2);
	n += fl - 2;
	memset(big, 'x', sizeof(big));
	big[300] = '~'; /* not a marker: skipped with the rest */
	n += (size_t)sprintf(stream + n, "%s", DRV_PROTO_MARKER);
	memcpy(stream + n, big, sizeof(big)); /* longer than the 512-byte limit */
	n += sizeof(big);
	fl = build(f, sizeof(f), 'A', 7, "DONE", "seven");
	memcpy(stream + n, f, fl);
	n += fl;
	n += (size_t)sprintf(stream + n, "%s", DRV_PROTO_MARKER);
	memcpy(stream + n, big, sizeof(big)); /* over-long again, ended by its line end */
	n += sizeof(big);
	n += (size_t)sprintf(stream + n, "\nlogin: ~");
	fl = build(f, sizeof(f), 'E', 0, "BOOT", "");
	memcpy(stream + n, f, fl);
	n += fl;

	feed_split(&whole, 512, stream, n, NULL, 0);
	assert_int_equal(whole.nframes, 4);
	assert_int_equal(whole.nerrors, 6);
	for (size_t step = 1; step <= 7; step++) {
		ncuts = 0;
		for (i = step; i < n && ncuts < 64; i += step * 13 % 29 + 1)
			cuts[ncuts++] = i;
		feed_split(&part, 512, stream, n, cuts, ncuts);
		assert_same(&whole, &part);
		assert_memory_equal(whole.msgs, part.msgs, sizeof(whole.msgs));
	}
	for (int round = 0; round < 3000; round++) {
		ncuts = tu_random_cuts(&rng, n, 37, cuts, 64);
		feed_split(&part, 512, stream, n, cuts, ncuts);
		assert_same(&whole, &part);
		assert_memory_equal(whole.msgs, part.msgs, sizeof(whole.msgs));
	}
	feed_bytewise(&part, 512, stream, n);
	assert_same(&whole, &part);
	assert_memory_equal(whole.msgs, part.msgs, sizeof(whole.msgs));
}

/* A PEM block of body (lines of BRD_PEM_LINE) in buf: its length. */
static size_t pem_of(char *buf, const char *body)
{
	size_t n = strlen(body), len = 0;

	len += (size_t)sprintf(buf, "%s", BRD_PEM_BEGIN);
	for (size_t i = 0; i < n; i += BRD_PEM_LINE)
		len += (size_t)sprintf(buf + len, "%.*s\n", BRD_PEM_LINE, body + i);
	len += (size_t)sprintf(buf + len, "%s", BRD_PEM_END);
	return len;
}

/* A certificate's PEM block is found whole, and goes as its text without line feeds; a
 * character that is not base64's (every byte tried) or a line of the wrong length is no
 * block. */
static void test_pem_block(void **state)
{
	static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=";
	struct drv_proto_builder b;
	struct drv_proto_frame f;
	char body[200], pem[400], buf[1024], got[256], err[160];
	size_t len, block, text;

	(void)state;
	for (int i = 0; i < 150; i++)
		body[i] = "ABCxyz019+/="[i % 12];
	body[150] = 0;
	len = pem_of(pem, body);
	block = drv_proto_pem_block(pem, len + 5, &text);
	assert_int_equal(block, len);
	assert_int_equal(text, 150);
	drv_proto_begin(&b, buf, sizeof(buf), 'Q', 3, "WRITE");
	drv_proto_add_pem(&b, "pem", pem, block, text);
	if (drv_proto_end(&b, &len, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_int_equal(drv_proto_parse(buf, len - 1, &f, err, sizeof(err)), 0);
	assert_int_equal(drv_proto_get_text(&f, "pem", got, sizeof(got), err, sizeof(err)), 0);
	assert_string_equal(got, body);

	for (int c = 0; c < 256; c++) {
		if (c == '\n' || c == 0)
			continue;
		body[70] = (char)c;
		len = pem_of(pem, body);
		if ((drv_proto_pem_block(pem, len, &text) != 0) != (strchr(b64, c) != NULL))
			fail_msg("byte 0x%02x in a PEM body: found %d", c, strchr(b64, c) != NULL);
	}
	body[70] = 'Q';
	len = pem_of(pem, body);
	pem[sizeof(BRD_PEM_BEGIN) - 1 + BRD_PEM_LINE] = 'Q'; /* a first line too long */
	assert_int_equal(drv_proto_pem_block(pem, len, &text), 0);
	len = pem_of(pem, body);
	assert_int_equal(drv_proto_pem_block(pem, len - 1, &text), 0); /* END cut short */
	/* A short line that is not the last. */
	len = (size_t)sprintf(pem, "%sABCDE\nABCDEFGH\n%s", BRD_PEM_BEGIN, BRD_PEM_END);
	assert_int_equal(drv_proto_pem_block(pem, len, &text), 0);
	len = (size_t)sprintf(pem, "%sABCDE\n%s", BRD_PEM_BEGIN, BRD_PEM_END);
	assert_int_equal(drv_proto_pem_block(pem, len, &text), len);
	/* An empty line. */
	len = (size_t)sprintf(pem, "%s\n%s", BRD_PEM_BEGIN, BRD_PEM_END);
	assert_int_equal(drv_proto_pem_block(pem, len, &text), 0);
}

static void test_roundtrip_fields(void **state)
{
	static const char text[] = "a b%c,d~e\x01\x7f\xc3\xa9=/+";
	const char *items[] = { "115200", "x,y", "" };
	struct drv_proto_builder b;
	struct drv_proto_frame f;
	uint8_t bin[256], out[256];
	char buf[2048], got[128], err[160];
	size_t len, olen, k;
	uint64_t v;
	int i;

	(void)state;
	for (i = 0; i < 256; i++)
		bin[i] = (uint8_t)(i * 7 + 3);
	for (k = 0; k <= 10; k++) {
		drv_proto_begin(&b, buf, sizeof(buf), 'A', 77, "CSR");
		drv_proto_add_text(&b, "cn", text);
		drv_proto_add_text(&b, "empty", "");
		drv_proto_add_uint(&b, "max", UINT64_MAX);
		drv_proto_add_b64(&b, "data", bin, k);
		drv_proto_add_hex(&b, "sha", bin, 32);
		drv_proto_add_list(&b, "bauds", items, 3);
		drv_proto_add_b64(&b, "data", bin + 1, 200);
		assert_int_equal(drv_proto_end(&b, &len, err, sizeof(err)), 0);
		assert_true(len < sizeof(buf));
		assert_int_equal(buf[len - 1], '\n');
		for (i = 0; i < (int)len - 1; i++) {
			assert_true(buf[i] >= 0x20 && buf[i] <= 0x7e);
			if (i)
				assert_true(buf[i] != '~');
		}
		assert_int_equal(drv_proto_parse(buf, len - 1, &f, err, sizeof(err)), 0);
		assert_int_equal(f.kind, 'A');
		assert_int_equal(f.seq, 77);
		assert_string_equal(f.type, "CSR");
		assert_int_equal(drv_proto_get_text(&f, "cn", got, sizeof(got), err, sizeof(err)), 0);
		assert_string_equal(got, text);
		assert_int_equal(drv_proto_get_text(&f, "empty", got, sizeof(got), err, sizeof(err)),
				 0);
		assert_string_equal(got, "");
		assert_int_equal(drv_proto_get_uint(&f, "max", 0, UINT64_MAX, &v, err, sizeof(err)),
				 0);
		assert_true(v == UINT64_MAX);
		assert_int_equal(drv_proto_get_b64(&f, "data", out, sizeof(out), &olen, err,
						   sizeof(err)),
				 0);
		assert_int_equal(olen, k);
		assert_memory_equal(out, bin, k);
		assert_int_equal(drv_proto_get_hex(&f, "sha", out, 32, err, sizeof(err)), 0);
		assert_memory_equal(out, bin, 32);
		{
			const struct drv_proto_field *fld = drv_proto_find(&f, "bauds");

			assert_non_null(fld);
			assert_int_equal(drv_proto_field_item(&f, fld, 0, got, sizeof(got), err,
							      sizeof(err)),
					 0);
			assert_string_equal(got, "115200");
			assert_int_equal(drv_proto_field_item(&f, fld, 1, got, sizeof(got), err,
							      sizeof(err)),
					 0);
			assert_string_equal(got, "x,y");
			assert_int_equal(drv_proto_field_item(&f, fld, 2, got, sizeof(got), err,
							      sizeof(err)),
					 0);
			assert_string_equal(got, "");
			assert_int_equal(drv_proto_field_item(&f, fld, 3, got, sizeof(got), err,
							      sizeof(err)),
					 ST_E_NOTFOUND);
			/* Repeated keys: the second "data" is found after the first. */
			fld = drv_proto_find(&f, "data");
			fld = drv_proto_find_next(&f, fld, "data");
			assert_non_null(fld);
			assert_null(drv_proto_find_next(&f, fld, "data"));
		}
	}
}

static void test_crc_error(void **state)
{
	char stream[1024];
	struct sink s;
	size_t n, f2;

	(void)state;
	n = build(stream, sizeof(stream), 'A', 5, "CSR", "hello");
	stream[12] ^= 0x01; /* a bit flipped on the wire */
	f2 = build(stream + n, sizeof(stream) - n, 'A', 6, "CSR", "next");
	feed_split(&s, 0, stream, n + f2, NULL, 0);
	assert_int_equal(s.nerrors, 1);
	assert_int_equal(s.codes[0], ST_E_PROTO_CRC);
	assert_non_null(strstr(s.msgs[0], "bad CRC: frame carries"));
	assert_non_null(strstr(s.msgs[0], "computed"));
	assert_int_equal(s.nframes, 1);
	assert_non_null(strstr(s.frames, "text=next"));
}

static void test_size_limits(void **state)
{
	struct drv_proto_builder b;
	char buf[DRV_PROTO_MAX_LINE * 2], frame[DRV_PROTO_MAX_LINE], err[160];
	static uint8_t data[DRV_PROTO_MAX_LINE];
	static char xs[DRV_PROTO_MAX_LINE];
	size_t len, room, n;
	struct sink s;

	(void)state;
	memset(xs, 'x', sizeof(xs));
	/* Fill a 512-byte frame exactly to its b64 room. */
	drv_proto_begin(&b, frame, 512, 'Q', 9, "WRITE");
	drv_proto_add_text(&b, "path", "client.pem");
	room = drv_proto_b64_room(&b, "data");
	assert_true(room > 300 && room % 3 == 0);
	drv_proto_add_b64(&b, "data", data, room);
	assert_int_equal(drv_proto_end(&b, &len, err, sizeof(err)), 0);
	assert_true(len <= 512 && len > 512 - 4 - 10);
	/* Three more bytes do not fit. */
	drv_proto_begin(&b, frame, 512, 'Q', 9, "WRITE");
	drv_proto_add_text(&b, "path", "client.pem");
	drv_proto_add_b64(&b, "data", data, room + 3);
	drv_proto_add_uint(&b, "off", 0); /* sticky: ignored after the failure */
	assert_int_equal(drv_proto_end(&b, &len, err, sizeof(err)), ST_E_PROTO_TOO_LONG);
	assert_non_null(strstr(err, "'data'"));

	/* A decoder limited to 512 takes a 512-byte frame and refuses a 513-byte one, then
	 * resynchronises on the next frame. */
	n = 0;
	drv_proto_begin(&b, buf, 512, 'Q', 1, "WRITE");
	drv_proto_add_b64(&b, "data", data, 300);
	drv_proto_add_textn(&b, "p", xs, 512 - 10 - b.len - 3);
	assert_int_equal(drv_proto_end(&b, &len, err, sizeof(err)), 0);
	assert_int_equal(len, 512);
	n += len;
	drv_proto_begin(&b, buf + n, 513, 'Q', 2, "WRITE");
	drv_proto_add_b64(&b, "data", data, 300);
	drv_proto_add_textn(&b, "p", xs, 513 - 10 - b.len - 3);
	assert_int_equal(drv_proto_end(&b, &len, err, sizeof(err)), 0);
	assert_int_equal(len, 513);
	n += len;
	n += build(buf + n, sizeof(buf) - n, 'Q', 3, "DONE", "after");
	feed_split(&s, 512, buf, n, NULL, 0);
	assert_int_equal(s.nframes, 2);
	assert_int_equal(s.nerrors, 1);
	assert_int_equal(s.codes[0], ST_E_PROTO_TOO_LONG);
	assert_non_null(strstr(s.msgs[0], "longer than 512"));
	assert_non_null(strstr(s.frames, "text=after"));
	assert_int_equal(s.clen, 0);

	/* A line that never ends, with a frame marker inside it: the frame is found. */
	memset(buf, 'x', 5000);
	memcpy(buf, DRV_PROTO_MARKER, DRV_PROTO_MARKER_LEN);
	n = 5000 + build(buf + 5000, sizeof(buf) - 5000, 'A', 7, "DONE", NULL);
	feed_split(&s, 0, buf, n, NULL, 0);
	assert_int_equal(s.nframes, 1);
	assert_int_equal(s.nerrors, 1);
	assert_int_equal(s.codes[0], ST_E_PROTO_TOO_LONG);
}

static void test_malformed(void **state)
{
	static const struct {
		const char *body;
		const char *expect;
	} cases[] = {
		{ "X 1 HELLO", "col 6: expected frame kind" },
		{ "Q1 HELLO", "col 6: expected frame kind" },
		{ "Q x HELLO", "col 8: expected a decimal sequence number" },
		{ "Q 4294967296 HELLO", "col 8: expected a decimal sequence number" },
		{ "Q 12345678901 HELLO", "col 8: expected a decimal sequence number" },
		{ "Q 1 hello", "col 10: expected a type" },
		{ "Q 1 ABCDEFGHIJKLMNOPQ", "col 10: expected a type" },
		{ "Q 1 HELLO Key=1", "field 1 at col 16: expected a key" },
		{ "Q 1 HELLO abcdefghijklmnopq=1", "key longer than 16" },
		{ "Q 1 HELLO v", "field 1 ('v') at col 17: expected '='" },
		{ "Q 1 HELLO v=%4", "bad percent escape at col 18" },
		{ "Q 1 HELLO v=%zz", "bad percent escape at col 18" },
		{ "Q 1 HELLO v=1  w=2", "col 20: empty field" },
		{ "Q 1 HELLO v=1 ", "empty field" },
		{ "Q 1 HELLO v=a\x13", "col 19: byte 0x13 is not printable" },
		{ "Q 1 HELLO v=~x", "col 18: '~' is not allowed" },
		/* The first bad escape of a value, of a later field, at the end of the fields. */
		{ "Q 1 HELLO v=%41%4 w=1", "bad percent escape at col 21" },
		{ "Q 1 HELLO v=%41 w=x%4g", "bad percent escape at col 25" },
		{ "Q 1 HELLO v=a w=%2", "bad percent escape at col 22" },
		{ "Q 1 HELLO v=ab%", "bad percent escape at col 20" },
		/* The first byte that may not stand in a frame, whatever follows it. */
		{ "Q 1 HELLO v=\x7f", "col 18: byte 0x7F is not printable" },
		{ "Q 1 HELLO v=ab\x80", "col 20: byte 0x80 is not printable" },
		{ "Q 1 HELLO v=~\x01", "col 18: '~' is not allowed" },
		{ "Q 1 HELLO v=a\x13~", "col 19: byte 0x13 is not printable" },
	};
	char line[1024], err[160];
	struct drv_proto_frame f;
	struct sink s;
	size_t i, n;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		n = raw_frame(line, cases[i].body);
		assert_int_equal(drv_proto_parse(line, n - 1, &f, err, sizeof(err)),
				 ST_E_PROTO_FRAME);
		if (!strstr(err, cases[i].expect))
			fail_msg("%s: got \"%s\", expected \"%s\"", cases[i].body, err,
				 cases[i].expect);
		feed_split(&s, 0, line, n, NULL, 0);
		assert_int_equal(s.nframes, 0);
		assert_int_equal(s.nerrors, 1);
	}
	/* CRC field problems. */
	n = (size_t)sprintf(line, "%sQ 1 HELLO 1234567", DRV_PROTO_MARKER);
	assert_int_equal(drv_proto_parse(line, n, &f, err, sizeof(err)), ST_E_PROTO_FRAME);
	assert_non_null(strstr(err, "expected 8 hex digits of CRC-32"));
	n = (size_t)sprintf(line, "%sQ 1 HELLO 1234567G", DRV_PROTO_MARKER);
	assert_int_equal(drv_proto_parse(line, n, &f, err, sizeof(err)), ST_E_PROTO_FRAME);
	assert_non_null(strstr(err, "'G' in the CRC-32"));
	n = (size_t)sprintf(line, "%s", DRV_PROTO_MARKER);
	assert_int_equal(drv_proto_parse(line, n, &f, err, sizeof(err)), ST_E_PROTO_FRAME);
	/* Too many fields. */
	{
		char body[512];
		int k, o = sprintf(body, "Q 1 HELLO");

		for (k = 0; k <= DRV_PROTO_MAX_FIELDS; k++)
			o += sprintf(body + o, " a=%d", k % 10);
		n = raw_frame(line, body);
		assert_int_equal(drv_proto_parse(line, n - 1, &f, err, sizeof(err)),
				 ST_E_PROTO_FRAME);
		assert_non_null(strstr(err, "more than 64 fields"));
	}
	/* A frame that lost its line end is cut off by the next marker, which still parses. */
	{
		char stream[512];

		n = build(stream, sizeof(stream), 'A', 1, "CSR", "first");
		n--; /* drop "\n" */
		n += build(stream + n, sizeof(stream) - n, 'A', 2, "CSR", "second");
		feed_split(&s, 0, stream, n, NULL, 0);
		assert_int_equal(s.nframes, 1);
		assert_int_equal(s.nerrors, 1);
		assert_int_equal(s.codes[0], ST_E_PROTO_FRAME);
		assert_non_null(strstr(s.msgs[0], "cut off"));
		assert_non_null(strstr(s.frames, "text=second"));
	}
}

static void test_getter_errors(void **state)
{
	struct drv_proto_builder b;
	struct drv_proto_frame f;
	char buf[512], out[8], err[160];
	uint8_t bin[64];
	size_t len, olen;
	uint64_t v;

	(void)state;
	drv_proto_begin(&b, buf, sizeof(buf), 'Q', 3, "WRITE");
	drv_proto_add_uint(&b, "off", 70000);
	drv_proto_add_text(&b, "path", "a-rather-long-name");
	assert_int_equal(drv_proto_end(&b, &len, err, sizeof(err)), 0);
	assert_int_equal(drv_proto_parse(buf, len - 1, &f, err, sizeof(err)), 0);

	assert_int_equal(drv_proto_get_uint(&f, "size", 0, 10, &v, err, sizeof(err)),
			 ST_E_PROTO_FIELD);
	assert_string_equal(err, "WRITE frame has no field 'size'");
	assert_int_equal(drv_proto_get_uint(&f, "off", 0, 65535, &v, err, sizeof(err)),
			 ST_E_PROTO_FIELD);
	assert_non_null(strstr(err, "70000 is outside 0..65535"));
	assert_int_equal(drv_proto_get_uint(&f, "path", 0, 10, &v, err, sizeof(err)),
			 ST_E_PROTO_FIELD);
	assert_non_null(strstr(err, "is not a decimal number"));
	assert_int_equal(drv_proto_get_text(&f, "path", out, sizeof(out), err, sizeof(err)),
			 ST_E_PROTO_FIELD);
	assert_non_null(strstr(err, "longer than 7 bytes"));
	/* Failed: empty, never a partial text without its terminator. */
	assert_string_equal(out, "");
	assert_int_equal(drv_proto_get_hex(&f, "path", bin, 32, err, sizeof(err)),
			 ST_E_PROTO_FIELD);
	assert_non_null(strstr(err, "expected 64 hex digits, got 18"));
	assert_int_equal(drv_proto_get_b64(&f, "path", bin, sizeof(bin), &olen, err, sizeof(err)),
			 ST_E_PROTO_FIELD);
	assert_non_null(strstr(err, "bad base64 at col"));
	assert_int_equal(drv_proto_get_text_opt(&f, "dev", "none", out, sizeof(out), err,
						sizeof(err)),
			 0);
	assert_string_equal(out, "none");

	/* %00 never reaches a C string. */
	len = raw_frame(buf, "Q 1 HELLO dev=a%00b");
	assert_int_equal(drv_proto_parse(buf, len - 1, &f, err, sizeof(err)), 0);
	assert_int_equal(drv_proto_get_text(&f, "dev", out, sizeof(out), err, sizeof(err)),
			 ST_E_PROTO_FIELD);
	assert_non_null(strstr(err, "%00 at col"));

	/* Builder refuses bad keys and types. */
	drv_proto_begin(&b, buf, sizeof(buf), 'Q', 1, "HELLO");
	drv_proto_add_uint(&b, "Bad", 1);
	assert_int_equal(drv_proto_end(&b, &len, err, sizeof(err)), ST_E_INVAL);
	assert_non_null(strstr(err, "\"Bad\""));
	drv_proto_begin(&b, buf, sizeof(buf), 'Q', 1, "hello");
	assert_int_equal(drv_proto_end(&b, &len, err, sizeof(err)), ST_E_INVAL);
	drv_proto_begin(&b, buf, sizeof(buf), 'Z', 1, "HELLO");
	assert_int_equal(drv_proto_end(&b, &len, err, sizeof(err)), ST_E_INVAL);
}

static void test_base64_strict(void **state)
{
	uint8_t out[16];
	size_t olen, bad;

	(void)state;
	assert_int_equal(drv_b64_decode(out, sizeof(out), "QQ==", 4, &olen, &bad), 0);
	assert_int_equal(olen, 1);
	assert_int_equal(out[0], 'A');
	assert_int_equal(drv_b64_decode(out, sizeof(out), "QUI=", 4, &olen, &bad), 0);
	assert_int_equal(olen, 2);
	assert_int_equal(drv_b64_decode(out, sizeof(out), "", 0, &olen, &bad), 0);
	assert_int_equal(olen, 0);
	/* Non-canonical trailing bits, misplaced padding, bad characters, bad length. */
	assert_int_equal(drv_b64_decode(out, sizeof(out), "QR==", 4, &olen, &bad), -1);
	assert_int_equal(bad, 1);
	assert_int_equal(drv_b64_decode(out, sizeof(out), "Q===", 4, &olen, &bad), -1);
	assert_int_equal(drv_b64_decode(out, sizeof(out), "QQ=A", 4, &olen, &bad), -1);
	assert_int_equal(bad, 3);
	assert_int_equal(drv_b64_decode(out, sizeof(out), "QQ==QUJD", 8, &olen, &bad), -1);
	assert_int_equal(drv_b64_decode(out, sizeof(out), "QU-D", 4, &olen, &bad), -1);
	assert_int_equal(bad, 2);
	assert_int_equal(drv_b64_decode(out, sizeof(out), "QUJ", 3, &olen, &bad), -1);
	assert_int_equal(drv_b64_decode(out, 2, "QUJD", 4, &olen, &bad), -2);
}

/* The base64 decoder as RFC 4648 states it, one character at a time: what the codec's
 * table and whole-group path must agree with. */
static const char b64_abc[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_reference(uint8_t *out, size_t cap, const char *in, size_t n, size_t *outlen,
			 size_t *bad)
{
	uint32_t acc = 0;
	size_t o = 0, pads = 0;

	*outlen = 0;
	for (size_t i = 0; i < n; i++) {
		const char *at = in[i] ? strchr(b64_abc, in[i]) : NULL;

		if (n % 4 && !at) {
			*bad = i;
			return -1;
		}
		if (n % 4)
			continue;
		if (at && !pads) {
			acc = acc << 6 | (uint32_t)(at - b64_abc);
		} else if (in[i] == '=' && i + 4 >= n && i % 4 >= 2) {
			pads++;
			acc <<= 6;
		} else {
			*bad = i;
			return -1;
		}
		if (i % 4 != 3)
			continue;
		if ((pads == 1 && (acc & 0xFF)) || (pads == 2 && (acc & 0xFFFF))) {
			*bad = i - pads;
			return -1;
		}
		if (o + 3 - pads > cap)
			return -2;
		for (size_t k = 0; k < 3 - pads; k++)
			out[o++] = (uint8_t)(acc >> (16 - 8 * k));
		acc = 0;
	}
	if (n % 4) {
		*bad = n - n % 4;
		return -1;
	}
	*outlen = o;
	return 0;
}

/* The decoder by table and whole groups rejects exactly what the character-by-character one
 * rejects, at the same index (bad characters, padding in the wrong place, non-zero bits
 * under the padding, bad lengths), and decodes the rest to the same bytes, capacity errors
 * included; every byte's value is the alphabet's. */
static void test_base64_table(void **state)
{
	static const char odd[] = "=-_*.:@[`{ \r\n~\x80\xff";
	uint8_t data[120], a[128], b[128];
	char text[200];
	uint32_t rng = 99;

	(void)state;
	for (int c = 0; c < 256; c++) {
		const char *at = c ? strchr(b64_abc, c) : NULL;

		assert_int_equal(drv_b64_value((unsigned char)c), at ? (int)(at - b64_abc) : -1);
	}
	for (int round = 0; round < 20000; round++) {
		size_t dn, tn, cap, la = 0, lb = 0, ba = 0, bb = 0;
		int ra, rb;

		rng = rng * 1103515245u + 12345u;
		dn = (rng >> 8) % 40;
		for (size_t i = 0; i < dn; i++) {
			rng = rng * 1103515245u + 12345u;
			data[i] = (uint8_t)(rng >> 16);
		}
		tn = drv_b64_encode(text, data, dn);
		rng = rng * 1103515245u + 12345u;
		switch ((rng >> 12) % 5) {
		case 0: /* as encoded */
			break;
		case 1: /* one character replaced by another of the alphabet or a stray one */
		case 2:
			if (tn) {
				size_t at = (rng >> 16) % tn;

				rng = rng * 1103515245u + 12345u;
				text[at] = (rng >> 20) % 2 ? odd[(rng >> 8) % (sizeof(odd) - 1)]
							   : b64_abc[(rng >> 4) % 64];
			}
			break;
		case 3: /* cut short or made longer */
			if (tn && (rng >> 16) % 2)
				tn -= 1 + (rng >> 20) % (tn < 3 ? tn : 3);
			else
				text[tn++] = "A=Q/"[(rng >> 20) % 4];
			break;
		default: /* the last group's padding moved or its bits set */
			if (tn >= 4) {
				text[tn - 1 - (rng >> 16) % 4] = (rng >> 20) % 2 ? '=' : 'B';
			}
			break;
		}
		rng = rng * 1103515245u + 12345u;
		cap = (rng >> 16) % 4 ? sizeof(a) : (rng >> 8) % 32;
		ra = drv_b64_decode(a, cap, text, tn, &la, &ba);
		rb = b64_reference(b, cap, text, tn, &lb, &bb);
		assert_int_equal(ra, rb);
		assert_int_equal(la, lb);
		if (ra == -1)
			assert_int_equal(ba, bb);
		if (ra == 0)
			assert_memory_equal(a, b, la);
	}
}

static struct drv_proto_decoder *pausing;

static void on_frame_pause(void *arg, const struct drv_proto_frame *f)
{
	on_frame(arg, f);
	drv_proto_decoder_pause(pausing);
}

static void test_pause(void **state)
{
	static const struct drv_proto_callbacks pcb = { on_frame_pause, on_console, on_error };
	struct drv_proto_decoder *d = malloc(sizeof(*d));
	char stream[512];
	struct sink s;
	size_t n1, n, used;

	(void)state;
	assert_non_null(d);
	memset(&s, 0, sizeof(s));
	n1 = build(stream, sizeof(stream), 'A', 1, "BAUD", NULL);
	n = n1 + build(stream + n1, sizeof(stream) - n1, 'A', 2, "HELLO", NULL);
	pausing = d;
	drv_proto_decoder_init(d, 0, &pcb, &s);
	used = drv_proto_decoder_feed(d, stream, n);
	assert_int_equal(used, n1);
	assert_int_equal(s.nframes, 1);
	used = drv_proto_decoder_feed(d, stream + n1, n - n1);
	assert_int_equal(used, n - n1);
	assert_int_equal(s.nframes, 2);
	/* Reset drops a partial frame. */
	drv_proto_decoder_feed(d, stream, 20);
	drv_proto_decoder_reset(d);
	drv_proto_decoder_feed(d, stream + 20, n1 - 20);
	assert_int_equal(s.nframes, 2);
	assert_int_equal(d->frames, 2);
	free(d);
}

static void test_error_names(void **state)
{
	(void)state;
	assert_string_equal(drv_proto_errname(DRV_PROTO_E_OFFSET), "OFFSET");
	assert_int_equal(drv_proto_errcode("HASH"), DRV_PROTO_E_HASH);
	assert_int_equal(drv_proto_errcode("NOPE"), -1);
	assert_string_equal(drv_proto_errname(DRV_PROTO_E_COUNT_), "?");
	assert_string_equal(st_errname(ST_E_PROTO_CRC), "PROTO_CRC");
}

/* The WRITE path rule, as both ends and the profile loader apply it: every class it refuses,
 * with the offset of the first offending byte. */
/* Raw values (version 2): every byte value round-trips, %00 included (which text refuses);
 * a frame filled to its raw room stays within the limit at every fill, and one byte more
 * does not fit. */
static void test_raw_values(void **state)
{
	struct drv_proto_builder b;
	struct drv_proto_frame f;
	char frame[1024], err[200];
	uint8_t data[1400], back[1400];
	size_t len, got, room, n, cap;
	unsigned int i;

	(void)state;
	for (i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)i;
	drv_proto_begin(&b, frame, sizeof(frame), 'Q', 1, "WRITE");
	drv_proto_add_raw(&b, "raw", data, 256);
	assert_int_equal(drv_proto_end(&b, &len, err, sizeof(err)), 0);
	assert_int_equal(drv_proto_parse(frame, len - 1, &f, err, sizeof(err)), 0);
	assert_int_equal(drv_proto_get_raw(&f, "raw", back, sizeof(back), &got, err, sizeof(err)),
			 0);
	assert_int_equal(got, 256);
	assert_memory_equal(back, data, 256);
	/* Nothing the line or software flow control cannot carry goes as it is. */
	assert_null(memchr(frame, 0x11, len));
	assert_null(memchr(frame, 0x13, len));
	assert_null(memchr(frame + 1, '~', len - 1));
	/* Too small a buffer is an error naming the field, not a truncation. */
	assert_int_equal(drv_proto_get_raw(&f, "raw", back, 255, &got, err, sizeof(err)),
			 ST_E_PROTO_FIELD);
	assert_non_null(strstr(err, "'raw'"));
	/* %00 is a byte in raw, an error in text. */
	drv_proto_begin(&b, frame, sizeof(frame), 'Q', 1, "WRITE");
	drv_proto_add_raw(&b, "raw", "a\0b", 3);
	assert_int_equal(drv_proto_end(&b, &len, err, sizeof(err)), 0);
	assert_non_null(strstr(frame, "raw=a%00b "));
	assert_int_equal(drv_proto_parse(frame, len - 1, &f, err, sizeof(err)), 0);
	assert_int_equal(drv_proto_get_raw(&f, "raw", back, sizeof(back), &got, err, sizeof(err)),
			 0);
	assert_int_equal(got, 3);
	assert_memory_equal(back, "a\0b", 3);
	assert_int_equal(drv_proto_get_text(&f, "raw", (char *)back, sizeof(back), err,
					    sizeof(err)),
			 ST_E_PROTO_FIELD);
	/* Filled to the room at every offset into the data (so that the escapes fall
	 * everywhere), for several limits: within it, and one byte more is past it. */
	for (cap = 512; cap <= 1024; cap += 173) {
		for (i = 0; i < 256; i += 7) {
			drv_proto_begin(&b, frame, cap, 'Q', 9, "WRITE");
			drv_proto_add_text(&b, "path", "client.pem");
			drv_proto_add_uint(&b, "off", i);
			room = drv_proto_raw_room(&b, "raw", data + i, 1100);
			assert_true(room > 0 && room < 1100);
			n = b.len;
			drv_proto_add_raw(&b, "raw", data + i, room);
			assert_int_equal(drv_proto_end(&b, &len, err, sizeof(err)), 0);
			assert_true(len <= cap);
			assert_int_equal(drv_proto_parse(frame, len - 1, &f, err, sizeof(err)), 0);
			assert_int_equal(drv_proto_get_raw(&f, "raw", back, sizeof(back), &got, err,
							   sizeof(err)),
					 0);
			assert_int_equal(got, room);
			assert_memory_equal(back, data + i, room);
			drv_proto_begin(&b, frame, cap, 'Q', 9, "WRITE");
			drv_proto_add_text(&b, "path", "client.pem");
			drv_proto_add_uint(&b, "off", i);
			assert_int_equal(b.len, n);
			drv_proto_add_raw(&b, "raw", data + i, room + 1);
			assert_int_equal(drv_proto_end(&b, &len, err, sizeof(err)),
					 ST_E_PROTO_TOO_LONG);
		}
	}
}

static void test_path_rule(void **state)
{
	char longest[DRV_PROTO_MAX_PATH + 2];
	static const struct {
		const char *path;
		size_t bad;
		const char *why;
	} bad[] = {
		{ "", 0, "is empty" },
		{ "/etc/x", 0, "starts with '/'" },
		{ "a//b", 2, "has an empty component ('//')" },
		{ "a/", 1, "ends with '/'" },
		{ ".hidden", 0, "has a component that starts with '.'" },
		{ "a/.b/c", 2, "has a component that starts with '.'" },
		{ "..", 0, "has a component that starts with '.'" },
		{ "a/../b", 2, "has a component that starts with '.'" },
		{ "my notes.txt", 2, "has a character other than A-Z a-z 0-9 . _ -" },
		{ "a%20b", 1, "has a character other than A-Z a-z 0-9 . _ -" },
		{ "a~b", 1, "has a character other than A-Z a-z 0-9 . _ -" },
		{ "a,b", 1, "has a character other than A-Z a-z 0-9 . _ -" },
		{ "a\\b", 1, "has a character other than A-Z a-z 0-9 . _ -" },
		{ "a\tb", 1, "has a character other than A-Z a-z 0-9 . _ -" },
		{ "\xc3\xbc", 0, "has a character other than A-Z a-z 0-9 . _ -" },
		{ "a=b", 1, "has a character other than A-Z a-z 0-9 . _ -" },
	};
	static const char *const good[] = { "client.pem", "a/b/c", "A-Z_0.9", "x.", "a/b.c/d-e" };
	size_t off;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *why = drv_proto_path_problem(bad[i].path, &off);

		if (!why || strcmp(why, bad[i].why) != 0 || off != bad[i].bad)
			fail_msg("'%s': got '%s' at %zu, expected '%s' at %zu", bad[i].path,
				 why ? why : "(accepted)", off, bad[i].why, bad[i].bad);
	}
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_null(drv_proto_path_problem(good[i], &off));
	memset(longest, 'a', sizeof(longest));
	longest[DRV_PROTO_MAX_PATH] = '\0';
	assert_null(drv_proto_path_problem(longest, &off));
	longest[DRV_PROTO_MAX_PATH] = 'a';
	longest[DRV_PROTO_MAX_PATH + 1] = '\0';
	assert_string_equal(drv_proto_path_problem(longest, &off), "is longer than 128 bytes");
	assert_int_equal(off, DRV_PROTO_MAX_PATH);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc32),
		cmocka_unit_test(test_path_rule),
		cmocka_unit_test(test_raw_values),
		cmocka_unit_test(test_every_split),
		cmocka_unit_test(test_random_splits),
		cmocka_unit_test(test_damaged_splits),
		cmocka_unit_test(test_roundtrip_fields),
		cmocka_unit_test(test_pem_block),
		cmocka_unit_test(test_crc_error),
		cmocka_unit_test(test_size_limits),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_getter_errors),
		cmocka_unit_test(test_base64_strict),
		cmocka_unit_test(test_base64_table),
		cmocka_unit_test(test_pause),
		cmocka_unit_test(test_error_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
