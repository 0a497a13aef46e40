/* Frame codec benchmark: what the wire protocol's codec costs per frame and per byte, on the
 * frames a board exchanges most (WRITE requests and CSR answers carrying base64 in frames of
 * 1 KiB, short answers, a boot log between them), both ends: the station's encoder and
 * decoder (drivers/proto/proto.c, base64 fields decoded), the board core's decoder
 * (drivers/board/frame.c), and CRC-32 alone.
 *
 * Usage: bench_codec [-n FRAMES] [-r ROUNDS]
 * Not a test: the figures depend on the machine (the best of the rounds is printed). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "board.h"
#include "proto.h"

static double cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The stream: per group a WRITE with a full frame of data, its short answer, a CSR answer
 * with a CSR chunk, and a console line. */
struct stream {
	char *buf;
	size_t len, cap;
	size_t frames;
};

static size_t encode_group(char *out, uint32_t seq, const uint8_t *data)
{
	struct drv_proto_builder b;
	char err[160];
	size_t len, n = 0, room;

	drv_proto_begin(&b, out, 1024, DRV_PROTO_REQUEST, seq, "WRITE");
	drv_proto_add_uint(&b, "slot", 1);
	drv_proto_add_uint(&b, "off", (uint64_t)seq * 700);
	room = drv_proto_b64_room(&b, "data");
	drv_proto_add_b64(&b, "data", data, room);
	if (drv_proto_end(&b, &len, err, sizeof(err)) != 0)
		return 0;
	n += len;
	drv_proto_begin(&b, out + n, 1024, DRV_PROTO_ANSWER, seq, "WRITE");
	drv_proto_add_uint(&b, "got", room);
	if (drv_proto_end(&b, &len, err, sizeof(err)) != 0)
		return 0;
	n += len;
	drv_proto_begin(&b, out + n, 1024, DRV_PROTO_ANSWER, seq + 1, "CSR");
	drv_proto_add_uint(&b, "total", 460);
	drv_proto_add_uint(&b, "off", 0);
	drv_proto_add_b64(&b, "data", data, 460);
	if (drv_proto_end(&b, &len, err, sizeof(err)) != 0)
		return 0;
	n += len;
	n += (size_t)sprintf(out + n, "[   12.345678] eth0: link up, 100 Mbps full duplex ~\r\n");
	return n;
}

static uint8_t scratch[4096];
static volatile size_t sink;

static void on_frame(void *arg, const struct drv_proto_frame *f)
{
	size_t got = 0;
	char err[160];

	(void)arg;
	if (drv_proto_has(f, "data") &&
	    drv_proto_get_b64(f, "data", scratch, sizeof(scratch), &got, err, sizeof(err)) != 0)
		got = 0;
	sink += got + f->len;
}

static void on_console(void *arg, const char *data, size_t n)
{
	(void)arg;
	(void)data;
	sink += n;
}

static void on_error(void *arg, int code, const char *msg, const char *line, size_t len)
{
	(void)arg;
	(void)line;
	(void)len;
	fprintf(stderr, "bench_codec: decoder error %d: %s\n", code, msg);
	exit(1);
}

int main(int argc, char **argv)
{
	static const struct drv_proto_callbacks cb = { on_frame, on_console, on_error };
	static struct drv_proto_decoder dec;
	static struct brd_decoder bdec;
	struct stream s = { 0 };
	uint8_t data[1024];
	size_t groups = 20000, i, errors = 0;
	double best[4] = { 1e9, 1e9, 1e9, 1e9 }, t;
	int rounds = 5, r, opt;

	while ((opt = getopt(argc, argv, "n:r:")) != -1) {
		if (opt == 'n')
			groups = (size_t)strtoul(optarg, NULL, 10) / 3 + 1;
		else if (opt == 'r')
			rounds = atoi(optarg) > 0 ? atoi(optarg) : 1;
		else {
			fprintf(stderr, "usage: bench_codec [-n FRAMES] [-r ROUNDS]\n");
			return 2;
		}
	}
	for (i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 131 + 7);
	s.cap = groups * 2200;
	s.buf = malloc(s.cap);
	if (!s.buf)
		return 1;
	for (r = 0; r < rounds; r++) {
		/* Encode: the frames of every group. */
		t = cpu_s();
		s.len = 0;
		for (i = 0; i < groups; i++) {
			size_t n = encode_group(s.buf + s.len, (uint32_t)(2 * i + 1), data);

			if (!n)
				return 1;
			s.len += n;
		}
		t = cpu_s() - t;
		best[0] = t < best[0] ? t : best[0];
		s.frames = 3 * groups;

		/* The station's decoder, fed in reads of 4 KiB, base64 fields decoded. */
		t = cpu_s();
		drv_proto_decoder_init(&dec, 1024, &cb, NULL);
		for (i = 0; i < s.len; i += 4096)
			drv_proto_decoder_feed(&dec, s.buf + i, s.len - i < 4096 ? s.len - i : 4096);
		t = cpu_s() - t;
		best[1] = t < best[1] ? t : best[1];
		if (dec.frames != s.frames)
			return 1;

		/* The board core's decoder, base64 fields decoded. */
		t = cpu_s();
		brd_decoder_init(&bdec, 1024);
		for (i = 0; i < s.len; i += 4096) {
			size_t n = s.len - i < 4096 ? s.len - i : 4096, pos = 0, got;
			struct brd_frame f;
			struct brd_field v;
			struct brd_msg m;
			char msg[80];
			enum brd_dec_result res;

			while ((res = brd_decoder_run(&bdec, s.buf + i, n, &pos, &f)) != BRD_DEC_NONE) {
				brd_msg_init(&m, msg, sizeof(msg));
				if (res == BRD_DEC_ERROR)
					errors++;
				else if (brd_frame_find(&f, "data", &v) &&
					 brd_field_b64(&v, "data", scratch, sizeof(scratch), &got,
						       &m) == 0)
					sink += got;
			}
		}
		t = cpu_s() - t;
		best[2] = t < best[2] ? t : best[2];

		/* CRC-32 alone over the stream. */
		t = cpu_s();
		sink += brd_crc32(0, s.buf, s.len);
		t = cpu_s() - t;
		best[3] = t < best[3] ? t : best[3];
	}
	if (errors)
		return 1;
	printf("frames %zu (%zu bytes, %.0f bytes a frame on average), best of %d rounds:\n",
	       s.frames, s.len, (double)s.len / (double)s.frames, rounds);
	printf("  encode (station builder)           %7.0f ns/frame %7.1f MB/s\n",
	       best[0] * 1e9 / (double)s.frames, (double)s.len / best[0] / 1e6);
	printf("  decode (station, base64 decoded)   %7.0f ns/frame %7.1f MB/s\n",
	       best[1] * 1e9 / (double)s.frames, (double)s.len / best[1] / 1e6);
	printf("  decode (board core, base64 decoded)%7.0f ns/frame %7.1f MB/s\n",
	       best[2] * 1e9 / (double)s.frames, (double)s.len / best[2] / 1e6);
	printf("  CRC-32 alone                       %7.2f ns/byte  %7.1f MB/s\n",
	       best[3] * 1e9 / (double)s.len, (double)s.len / best[3] / 1e6);
	free(s.buf);
	return 0;
}
