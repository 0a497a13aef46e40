/* A board core's storage (drivers/board/board.h, struct brd_storage_ops) held in memory, for
 * tests and fuzz targets that run the core without a file system: staged files, an installed
 * set with its generation, the small records. It checks the core's side of the contract (a
 * write only at a staged file's end, ops only on open slots and existing files, a commit of
 * complete files) and plays the failures a test asks for. */
#ifndef STATION_TESTS_BOARD_MEM_H
#define STATION_TESTS_BOARD_MEM_H

#include <stddef.h>
#include <stdint.h>

#include "board.h"

#define BOARD_MEM_FILE 8192 /* the largest file it holds */
#define BOARD_MEM_FILES 8   /* files installed at once */

struct board_mem_file {
	char path[BRD_MAX_PATH + 1];
	uint8_t data[BOARD_MEM_FILE];
	size_t len;
};

struct board_mem {
	struct board_mem_file staged[BRD_MAX_STAGED];
	int open[BRD_MAX_STAGED];
	struct board_mem_file files[BOARD_MEM_FILES];
	unsigned int nfiles;
	uint64_t gen;
	uint8_t rec[BRD_REC_COUNT_][BRD_CSR_MAX];
	size_t rec_len[BRD_REC_COUNT_];
	int rec_set[BRD_REC_COUNT_];
	unsigned int opens, writes; /* stage_open and stage_write calls */
	size_t space;  /* bytes a stage_write may still add (a full disk); all, from init */
	int rec_fail;  /* 1: rec_write fails (a storage error) */
	int commit_rc; /* what commit returns (0: it installs) */
	/* Called with what the core did that it must not do; NULL: abort(). A test fails
	 * there, and a fuzz target stops with the input that did it. */
	void (*broken)(const char *what);
};

/* Empty storage that takes everything. */
void board_mem_init(struct board_mem *m);

extern const struct brd_storage_ops board_mem_ops;

#endif
