/* Fuzz target for the board core (drivers/board): what a board does with whatever reaches
 * its UART. The input is lines; each one becomes a frame with its CRC appended, so that the
 * requests get past the CRC and into the commands (HELLO, CSR, WRITE with data, raw, copies
 * and PEM blocks, several files a WRITE, COMMIT, VERIFY, BAUD, DONE, the folds of versions 3
 * to 6), except lines that start with '!', which go to the UART as they are (the frame
 * scanner's own input). The storage is in memory (tests/unit/board_mem.c, which aborts on a
 * call the core must not make: a write anywhere but at a staged file's end, an op on a slot
 * not open), the key a fixed fake one; the clock moves 7 ms a line, so that a BAUD trial
 * falls back after enough of them. Never crashes, never reads or writes outside its
 * buffers, never sends anything but whole lines of at most the core's largest frame. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "board.h"
#include "board_mem.h"

/* The fake key's state, and the random bytes' (a fixed sequence, for reproducible runs). */
struct fake {
	int has_key;
	uint32_t rnd;
};

/* A fixed "key": the CSRs and proofs it makes do not verify, which the board never checks. */
static int k_exists(void *inst)
{
	return ((struct fake *)inst)->has_key;
}

static int k_generate(void *inst)
{
	((struct fake *)inst)->has_key = 1;
	return 0;
}

static int k_public(void *inst, uint8_t pub[65])
{
	(void)inst;
	pub[0] = 4;
	memset(pub + 1, 0x5a, 64);
	return 0;
}

static int k_sign(void *inst, const uint8_t digest[32], uint8_t sig[64])
{
	(void)inst;
	memcpy(sig, digest, 32);
	memcpy(sig + 32, digest, 32);
	sig[0] |= 1;
	sig[32] |= 1;
	return 0;
}

static const struct brd_key_ops key = {
	.exists = k_exists,
	.generate = k_generate,
	.public_key = k_public,
	.sign = k_sign,
};

static int r_fill(void *inst, void *buf, size_t n)
{
	struct fake *k = inst;
	uint8_t *p = buf;

	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)((k->rnd = k->rnd * 1103515245u + 12345u) >> 16);
	return 0;
}

static const struct brd_random_ops rnd = { .fill = r_fill };

/* Every frame the board sends is one line of at most the largest frame the core holds. */
static void p_send(void *arg, const char *bytes, size_t n, int fresh)
{
	(void)arg;
	(void)fresh;
	if (!n || n > BRD_LINE_MAX || bytes[n - 1] != '\n' || memchr(bytes, '\n', n) != bytes + n - 1)
		abort();
}

/* The UART's rate: one of the board's list, at BAUD and at its fallback. */
static void p_set_baud(void *arg, uint32_t rate)
{
	(void)arg;
	if (rate != 115200 && rate != 921600)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint32_t bauds[] = { 115200, 921600 };
	static struct board_mem m;
	static struct fake k;
	static struct brd_board b;
	static char line[BRD_LINE_MAX + 16];
	struct brd_config cfg;
	uint64_t now = 1000;
	size_t i = 0;

	board_mem_init(&m);
	memset(&k, 0, sizeof(k));
	memset(&cfg, 0, sizeof(cfg));
	cfg.hw = "fuzz-hw";
	cfg.sku = "fuzz-sku";
	cfg.fw = "fuzz-1";
	cfg.sn = "SN1";
	cfg.key_storage = "se";
	cfg.config_dir = "/var/sota";
	cfg.baud = 115200;
	cfg.bauds = bauds;
	cfg.nbauds = 2;
	cfg.max_frame = 1024;
	cfg.max_file = BOARD_MEM_FILE;
	cfg.max_total = 4 * BOARD_MEM_FILE;
	cfg.storage = &board_mem_ops;
	cfg.storage_inst = &m;
	cfg.key = &key;
	cfg.key_inst = &k;
	cfg.random = &rnd;
	cfg.random_inst = &k;
	cfg.plat.send = p_send;
	cfg.plat.set_baud = p_set_baud;
	if (brd_init(&b, &cfg) != 0)
		abort();
	brd_boot(&b, now);
	while (i < size) {
		const uint8_t *nl = memchr(data + i, '\n', size - i);
		size_t n = nl ? (size_t)(nl - (data + i)) : size - i;

		if (n && data[i] == '!') {
			brd_input(&b, data + i + 1, n - 1, now);
		} else if (n <= BRD_LINE_MAX) {
			/* The line, a space and its CRC: a frame the board reads as sent. */
			memcpy(line, data + i, n);
			line[n] = ' ';
			snprintf(line + n + 1, 10, "%08lX", (unsigned long)brd_crc32(0, line, n + 1));
			line[n + 9] = '\n';
			brd_input(&b, line, n + 10, now);
		}
		brd_tx_done(&b, now);
		now += 7;
		brd_tick(&b, now);
		i += n + 1;
	}
	return 0;
}
