/* The board core's storage in memory: see board_mem.h. */
#include "board_mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int broken(struct board_mem *m, const char *what)
{
	if (!m->broken)
		abort();
	m->broken(what);
	return BRD_ERR_IO;
}

void board_mem_init(struct board_mem *m)
{
	memset(m, 0, sizeof(*m));
	m->space = (size_t)-1;
}

static int m_stage_open(void *inst, unsigned int slot, const char *path, unsigned int mode)
{
	struct board_mem *m = inst;

	(void)mode;
	if (slot >= BRD_MAX_STAGED || strlen(path) > BRD_MAX_PATH)
		return broken(m, "stage_open: a slot or path out of range");
	m->opens++;
	snprintf(m->staged[slot].path, sizeof(m->staged[slot].path), "%s", path);
	m->staged[slot].len = 0;
	m->open[slot] = 1;
	return 0;
}

static int m_stage_write(void *inst, unsigned int slot, uint64_t off, const void *data, size_t n)
{
	struct board_mem *m = inst;
	struct board_mem_file *f = &m->staged[slot];

	m->writes++;
	/* The core writes at a staged file's end only. */
	if (slot >= BRD_MAX_STAGED || !m->open[slot] || off != f->len)
		return broken(m, "stage_write: not at the end of an open staged file");
	if (n > m->space)
		return BRD_ERR_NOSPACE;
	if (n > BOARD_MEM_FILE - f->len)
		return broken(m, "stage_write: a file larger than the board allows");
	m->space -= n;
	memcpy(f->data + off, data, n);
	f->len += n;
	return 0;
}

static int read_file(const struct board_mem_file *f, uint64_t off, void *buf, size_t n,
		     size_t *got)
{
	*got = off >= f->len ? 0 : (f->len - (size_t)off < n ? f->len - (size_t)off : n);
	memcpy(buf, f->data + (*got ? off : 0), *got);
	return 0;
}

static int m_stage_read(void *inst, unsigned int slot, uint64_t off, void *buf, size_t n,
			size_t *got)
{
	struct board_mem *m = inst;

	if (slot >= BRD_MAX_STAGED || !m->open[slot])
		return broken(m, "stage_read: a slot that is not open");
	return read_file(&m->staged[slot], off, buf, n, got);
}

static void m_stage_discard(void *inst, int slot)
{
	struct board_mem *m = inst;

	for (int i = 0; i < BRD_MAX_STAGED; i++) {
		if (slot < 0 || slot == i)
			m->open[i] = 0;
	}
}

static int m_commit(void *inst, const struct brd_commit_file *f, unsigned int n)
{
	struct board_mem *m = inst;
	unsigned int i, j, add = 0;

	if (m->commit_rc)
		return m->commit_rc;
	for (i = 0; i < n; i++) {
		if (f[i].slot >= BRD_MAX_STAGED || !m->open[f[i].slot] ||
		    m->staged[f[i].slot].len != f[i].size)
			return broken(m, "commit: a staged file that is not open or not complete");
		for (j = 0; j < m->nfiles && strcmp(m->files[j].path, f[i].path); j++)
			;
		add += j == m->nfiles;
	}
	if (m->nfiles + add > BOARD_MEM_FILES)
		return BRD_ERR_NOSPACE;
	for (i = 0; i < n; i++) {
		for (j = 0; j < m->nfiles && strcmp(m->files[j].path, f[i].path); j++)
			;
		if (j == m->nfiles)
			m->nfiles++;
		m->files[j] = m->staged[f[i].slot];
		snprintf(m->files[j].path, sizeof(m->files[j].path), "%s", f[i].path);
		m->open[f[i].slot] = 0;
	}
	m->gen++;
	return 0;
}

static uint64_t m_generation(void *inst)
{
	return ((struct board_mem *)inst)->gen;
}

static unsigned int m_installed(void *inst)
{
	return ((struct board_mem *)inst)->nfiles;
}

static int m_installed_info(void *inst, unsigned int idx, char *path, size_t cap,
			    uint64_t *size)
{
	struct board_mem *m = inst;

	if (idx >= m->nfiles)
		return broken(m, "installed_info: no such installed file");
	snprintf(path, cap, "%s", m->files[idx].path);
	*size = m->files[idx].len;
	return 0;
}

static int m_installed_read(void *inst, unsigned int idx, uint64_t off, void *buf, size_t n,
			    size_t *got)
{
	struct board_mem *m = inst;

	if (idx >= m->nfiles)
		return broken(m, "installed_read: no such installed file");
	return read_file(&m->files[idx], off, buf, n, got);
}

static int m_rec_read(void *inst, enum brd_record rec, void *buf, size_t cap, size_t *len)
{
	struct board_mem *m = inst;

	if (!m->rec_set[rec])
		return BRD_ERR_NOTFOUND;
	if (m->rec_len[rec] > cap)
		return broken(m, "rec_read: a record longer than the core's buffer");
	memcpy(buf, m->rec[rec], m->rec_len[rec]);
	*len = m->rec_len[rec];
	return 0;
}

static int m_rec_write(void *inst, enum brd_record rec, const void *data, size_t len)
{
	struct board_mem *m = inst;

	if (m->rec_fail)
		return BRD_ERR_IO;
	if (len > sizeof(m->rec[rec]))
		return broken(m, "rec_write: a record longer than a CSR");
	memcpy(m->rec[rec], data, len);
	m->rec_len[rec] = len;
	m->rec_set[rec] = 1;
	return 0;
}

const struct brd_storage_ops board_mem_ops = {
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
