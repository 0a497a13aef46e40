/* Fuzz target for the board protocol decoder: the same bytes fed whole and fed in pieces
 * (sizes taken from the input itself) must give the same frames, console bytes and errors;
 * every field of every frame goes through every typed getter. Never crashes, never reads
 * outside its buffers. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

struct tally {
	uint32_t frames_crc, console_crc;
	unsigned int frames, errors;
	size_t console;
};

static void exercise(const struct drv_proto_frame *f)
{
	uint8_t bin[DRV_PROTO_MAX_LINE];
	char text[DRV_PROTO_MAX_LINE], key[DRV_PROTO_MAX_KEY + 1];
	unsigned int i, k;
	uint64_t v;
	size_t n;

	for (i = 0; i < f->nfields; i++) {
		const struct drv_proto_field *fld = &f->fields[i];

		memcpy(key, f->line + fld->key_off, fld->key_len);
		key[fld->key_len] = 0;
		drv_proto_get_text(f, key, text, sizeof(text), NULL, 0);
		drv_proto_get_text(f, key, text, 8, NULL, 0);
		drv_proto_get_uint(f, key, 0, UINT64_MAX, &v, NULL, 0);
		drv_proto_get_b64(f, key, bin, sizeof(bin), &n, NULL, 0);
		drv_proto_get_b64(f, key, bin, 5, &n, NULL, 0);
		drv_proto_get_hex(f, key, bin, 32, NULL, 0);
		for (k = 0; k < 4; k++)
			drv_proto_field_item(f, fld, k, text, sizeof(text), NULL, 0);
		drv_proto_find_next(f, fld, key);
	}
}

static void on_frame(void *arg, const struct drv_proto_frame *f)
{
	struct tally *t = arg;

	t->frames++;
	t->frames_crc = drv_proto_crc32(t->frames_crc, f->line, f->len);
	exercise(f);
}

static void on_console(void *arg, const char *data, size_t n)
{
	struct tally *t = arg;

	t->console += n;
	t->console_crc = drv_proto_crc32(t->console_crc, data, n);
}

static void on_error(void *arg, int code, const char *msg, const char *line, size_t len)
{
	struct tally *t = arg;

	(void)code;
	(void)line;
	(void)len;
	if (!msg || !*msg)
		abort();
	t->errors++;
}

static const struct drv_proto_callbacks cbs = { on_frame, on_console, on_error };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct drv_proto_decoder d;
	static const size_t limits[] = { 0, DRV_PROTO_MIN_LINE, 1024, 64 };
	struct tally whole = { 0 }, parts = { 0 };
	struct drv_proto_frame f;
	size_t at = 0, max_line, k = 0;

	if (size == 0)
		return 0;
	max_line = limits[data[0] % 4];

	drv_proto_decoder_init(&d, max_line, &cbs, &whole);
	drv_proto_decoder_feed(&d, data, size);

	drv_proto_decoder_init(&d, max_line, &cbs, &parts);
	while (at < size) {
		size_t n = (size_t)(data[k++ % size] % 17) + 1;

		if (n > size - at)
			n = size - at;
		drv_proto_decoder_feed(&d, data + at, n);
		at += n;
	}
	if (whole.frames != parts.frames || whole.frames_crc != parts.frames_crc ||
	    whole.errors != parts.errors || whole.console != parts.console ||
	    whole.console_crc != parts.console_crc)
		abort();

	/* The input as one line, straight into the parser. */
	if (drv_proto_parse((const char *)data, size, &f, NULL, 0) == 0)
		exercise(&f);
	return 0;
}
