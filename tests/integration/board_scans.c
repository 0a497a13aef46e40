/* What the board core's frame codec makes of a fixed set of frames and streams, printed:
 * test_board_scans.sh builds it as a firmware builds the core (plain loops, the 256-entry
 * CRC table) and as the hosts do (BRD_FAST_SCAN, BRD_CRC_SLICE8), and the two must print
 * the same. The frames are random but the same each run: fields whose values mix base64,
 * percent escapes good and bad, spaces, tildes, control bytes and bytes above ASCII, some
 * with a damaged byte or CRC, then all of them as one stream cut at random places. */
#include <stdio.h>
#include <string.h>

#include "frame.h"

static unsigned int rng = 20261207u;
static int dirty; /* this frame's values may hold bytes that do not belong in a frame */

static unsigned int next(unsigned int n)
{
	rng = rng * 1103515245u + 12345u;
	return (rng >> 8) % n;
}

/* One value's byte: mostly ordinary, now and then one that matters to a scan. */
static size_t value_byte(char *out)
{
	static const char b64[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=";
	static const char odd[] = { ' ', '~', '\t', 0x01, 0x7F, (char)0x80, (char)0xFF, '=', '@' };
	static const char hex[] = "0123456789ABCDEFabcdef0123456789ABCDEFabcdefXz ";

	switch (next(60)) {
	case 0:
		out[0] = dirty ? odd[next(sizeof(odd))] : 'x';
		return 1;
	case 1:
	case 2:
		out[0] = '%';
		out[1] = hex[next(sizeof(hex) - 1)];
		out[2] = hex[next(sizeof(hex) - 1)];
		return 1 + next(3);
	default:
		out[0] = b64[next(sizeof(b64) - 1)];
		return 1;
	}
}

/* A frame line with its CRC and line end, into buf; its length. */
static size_t make_frame(char *buf, size_t cap, unsigned int seq)
{
	static const char *const keys[] = { "a", "path", "data", "v", "sha256", "k_9" };
	static const char *const types[] = { "WRITE", "CSR", "HELLO", "VERIFY" };
	size_t n = (size_t)snprintf(buf, cap, "%sQ %u %s", BRD_MARKER, seq, types[next(4)]);
	unsigned int nf = next(6), i;
	uint32_t crc;

	dirty = !next(3);
	for (i = 0; i < nf; i++) {
		size_t len = next(4) ? next(40) : 300 + next(900), k;

		n += (size_t)snprintf(buf + n, cap - n, " %s=", keys[next(6)]);
		for (k = 0; k < len && n + 16 < cap - 32; k++)
			n += value_byte(buf + n);
	}
	buf[n++] = ' ';
	crc = brd_crc32(0, buf, n);
	n += (size_t)snprintf(buf + n, cap - n, "%08X\n", next(30) ? crc : crc ^ 1);
	if (!next(10))
		buf[BRD_MARKER_LEN + next((unsigned int)(n - BRD_MARKER_LEN))] = (char)next(256);
	return n;
}

static void print_frame(const struct brd_frame *f)
{
	static const char *const keys[] = { "a", "path", "data", "v", "sha256", "k_9", "zz" };
	struct brd_field v;
	size_t pos, i;

	printf("frame %c %u %s", f->kind, (unsigned int)f->seq, f->type);
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		for (pos = 0; brd_frame_next(f, keys[i], &pos, &v);)
			printf(" %s@%zu+%zu", keys[i], (size_t)(v.val - f->line), v.len);
	printf("\n");
}

int main(void)
{
	static char stream[1 << 20], line[8192];
	static struct brd_decoder d;
	size_t n = 0, at = 0;
	unsigned int i;

	for (i = 0; i < 3000; i++) {
		size_t len = make_frame(line, sizeof(line), i);
		struct brd_frame f;
		struct brd_msg m;
		char err[128];

		brd_msg_init(&m, err, sizeof(err));
		if (brd_frame_parse(line, len - 1, &f, &m) == 0)
			print_frame(&f);
		else
			printf("error %s\n", err);
		if (n + len + 64 < sizeof(stream)) {
			memcpy(stream + n, line, len);
			n += len;
			if (!next(8))
				n += (size_t)snprintf(stream + n, 64, "console ~ text %u\n", i);
			if (!next(20))
				stream[n - 1 - next(8)] = '~';
		}
	}
	brd_decoder_init(&d, 4096);
	while (at < n) {
		size_t end = at + 1 + next(3000), pos = 0;
		struct brd_frame f;
		enum brd_dec_result r;

		if (end > n)
			end = n;
		while ((r = brd_decoder_run(&d, stream + at, end - at, &pos, &f)) != BRD_DEC_NONE) {
			if (r == BRD_DEC_FRAME)
				print_frame(&f);
			else
				printf("stream error %s\n", d.err);
		}
		at = end;
	}
	return 0;
}
