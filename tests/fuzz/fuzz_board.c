/* Fuzz target for the board core (drivers/board): what a board does with whatever reaches
 * its UART. The input is lines; each one becomes a frame with its CRC appended, so that the
 * requests get past the CRC and into the commands (HELLO, CSR, WRITE with data, raw and
 * copies, COMMIT, VERIFY, BAUD, DONE, the folds of versions 3 and 4), except lines that
 * start with '!', which go to the UART as they are (the frame scanner's own input). The
 * storage is in memory, bounded as a small board's, the key a fixed fake one; the clock
 * moves 7 ms a line, so that a BAUD trial falls back after enough of them. Never crashes,
 * never reads or writes outside its buffers, never sends anything but whole lines of at
 * most the core's largest frame, and writes staged files only at their end. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "board.h"

#define FILE_MAX 2048
#define NFILES 8

struct file {
	char path[BRD_MAX_PATH + 1];
	uint8_t data[FILE_MAX];
	size_t len;
	int used;
};

struct mem {
	struct file staged[BRD_MAX_STAGED], installed[NFILES];
	unsigned int ninstalled;
	uint64_t gen;
	uint8_t rec[BRD_REC_COUNT_][600];
	size_t rec_len[BRD_REC_COUNT_];
	int has_rec[BRD_REC_COUNT_], has_key;
	uint32_t rnd;
};

static int m_stage_open(void *inst, unsigned int slot, const char *path, unsigned int mode)
{
	struct mem *m = inst;

	(void)mode;
	if (slot >= BRD_MAX_STAGED || strlen(path) > BRD_MAX_PATH)
		abort();
	snprintf(m->staged[slot].path, sizeof(m->staged[slot].path), "%s", path);
	m->staged[slot].len = 0;
	m->staged[slot].used = 1;
	return 0;
}

static int m_stage_write(void *inst, unsigned int slot, uint64_t off, const void *data, size_t n)
{
	struct mem *m = inst;
	struct file *f = &m->staged[slot];

	/* The core writes at the end only, and never more than the file's size (at most
	 * max_file). */
	if (slot >= BRD_MAX_STAGED || !f->used || off != f->len || n > FILE_MAX - f->len)
		abort();
	memcpy(f->data + off, data, n);
	f->len += n;
	return 0;
}

static int read_file(const struct file *f, uint64_t off, void *buf, size_t n, size_t *got)
{
	if (off > f->len)
		return BRD_ERR_IO;
	*got = f->len - (size_t)off < n ? f->len - (size_t)off : n;
	memcpy(buf, f->data + off, *got);
	return 0;
}

static int m_stage_read(void *inst, unsigned int slot, uint64_t off, void *buf, size_t n,
			size_t *got)
{
	struct mem *m = inst;

	if (slot >= BRD_MAX_STAGED || !m->staged[slot].used)
		abort();
	return read_file(&m->staged[slot], off, buf, n, got);
}

static void m_stage_discard(void *inst, int slot)
{
	struct mem *m = inst;

	for (int i = 0; i < BRD_MAX_STAGED; i++)
		if (slot < 0 || slot == i)
			m->staged[i].used = 0;
}

static int m_commit(void *inst, const struct brd_commit_file *files, unsigned int n)
{
	struct mem *m = inst;
	unsigned int i, j;

	for (i = 0; i < n; i++) {
		const struct file *s = &m->staged[files[i].slot];

		if (files[i].slot >= BRD_MAX_STAGED || !s->used || s->len != files[i].size)
			abort();
		for (j = 0; j < m->ninstalled && strcmp(m->installed[j].path, files[i].path); j++)
			;
		if (j == m->ninstalled) {
			if (j == NFILES)
				return BRD_ERR_NOSPACE;
			m->ninstalled++;
		}
		m->installed[j] = *s;
		snprintf(m->installed[j].path, sizeof(m->installed[j].path), "%s", files[i].path);
	}
	for (i = 0; i < n; i++)
		m->staged[files[i].slot].used = 0;
	m->gen++;
	return 0;
}

static uint64_t m_generation(void *inst)
{
	return ((struct mem *)inst)->gen;
}

static unsigned int m_installed(void *inst)
{
	return ((struct mem *)inst)->ninstalled;
}

static int m_installed_info(void *inst, unsigned int idx, char *path, size_t cap, uint64_t *size)
{
	struct mem *m = inst;

	if (idx >= m->ninstalled)
		abort();
	if (strlen(m->installed[idx].path) + 1 > cap)
		return BRD_ERR_IO;
	memcpy(path, m->installed[idx].path, strlen(m->installed[idx].path) + 1);
	*size = m->installed[idx].len;
	return 0;
}

static int m_installed_read(void *inst, unsigned int idx, uint64_t off, void *buf, size_t n,
			    size_t *got)
{
	struct mem *m = inst;

	if (idx >= m->ninstalled)
		abort();
	return read_file(&m->installed[idx], off, buf, n, got);
}

static int m_rec_read(void *inst, enum brd_record rec, void *buf, size_t cap, size_t *len)
{
	struct mem *m = inst;

	if (!m->has_rec[rec])
		return BRD_ERR_NOTFOUND;
	if (m->rec_len[rec] > cap)
		return BRD_ERR_IO;
	memcpy(buf, m->rec[rec], m->rec_len[rec]);
	*len = m->rec_len[rec];
	return 0;
}

static int m_rec_write(void *inst, enum brd_record rec, const void *data, size_t len)
{
	struct mem *m = inst;

	if (len > sizeof(m->rec[rec]))
		return BRD_ERR_NOSPACE;
	memcpy(m->rec[rec], data, len);
	m->rec_len[rec] = len;
	m->has_rec[rec] = 1;
	return 0;
}

static const struct brd_storage_ops storage = {
	.stage_open = m_stage_open,
	.stage_write = m_stage_write,
	.stage_read = m_stage_read,
	.stage_discard = m_stage_discard,
	.commit = m_commit,
	.generation = m_generation,
	.installed = m_installed,
	.installed_info = m_installed_info,
	.installed_read = m_installed_read,
	.rec_read = m_rec_read,
	.rec_write = m_rec_write,
};

/* A fixed "key": the CSRs and proofs it makes do not verify, which the board never checks. */
static int k_exists(void *inst)
{
	return ((struct mem *)inst)->has_key;
}

static int k_generate(void *inst)
{
	((struct mem *)inst)->has_key = 1;
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
	struct mem *m = inst;
	uint8_t *p = buf;

	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)((m->rnd = m->rnd * 1103515245u + 12345u) >> 16);
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
	static struct mem m;
	static struct brd_board b;
	static char line[BRD_LINE_MAX + 16];
	struct brd_config cfg;
	uint64_t now = 1000;
	size_t i = 0;

	memset(&m, 0, sizeof(m));
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
	cfg.max_file = FILE_MAX;
	cfg.max_total = 4 * FILE_MAX;
	cfg.storage = &storage;
	cfg.storage_inst = &m;
	cfg.key = &key;
	cfg.key_inst = &m;
	cfg.random = &rnd;
	cfg.random_inst = &m;
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
