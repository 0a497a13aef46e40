/* The board core: the board side of the wire protocol (drivers/PROTOCOL.md, versions 1 to 6) as
 * portable C99 that a Linux agent, a simulator and a microcontroller firmware all build the
 * same way. It allocates nothing, calls no OS and no crypto library: bytes in (brd_input),
 * bytes out (the platform's send callback), a clock in milliseconds passed in by the
 * caller, and three small interfaces it calls: storage (stage, commit, read back, small
 * records), key (generate, sign a digest, public key) and random.
 *
 * A board is a struct brd_board the caller owns; a process may run any number of them. The
 * core keeps no state outside that struct. Every call on one board must come from one
 * thread at a time; callbacks run inside the call that caused them (brd_boot, brd_input,
 * brd_tx_done, brd_tick) on the caller's thread and must not call back into the same board,
 * except brd_pause from send and request.
 *
 * Sizes are compile-time constants (BRD_LINE_MAX, BRD_MAX_STAGED) so that the struct needs
 * no heap; a firmware shrinks them with -D, and every unit that includes this header must
 * see the same values (the CMake target exports them). */
#ifndef BRD_BOARD_H
#define BRD_BOARD_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"
#include "sha256.h"

/* Files staged at once (one COMMIT); the Foundries-style set is four or five. */
#ifndef BRD_MAX_STAGED
#define BRD_MAX_STAGED 16
#endif
/* A file path as the station sends it (PROTOCOL.md: 1 to 128 bytes). */
#define BRD_MAX_PATH 128
/* Identity strings and subject values (cn, ou, bc): at most this many bytes. */
#define BRD_MAX_NAME 64
/* Largest CSR the core builds: three 64-byte names, a P-256 key, the extension request and
 * a signature stay below it. */
#define BRD_CSR_MAX 512
#define BRD_MAX_BAUDS 8
#define BRD_MAX_PREFIXES 8
/* The newest protocol version the core speaks (PROTOCOL.md sections 6 to 12). */
#define BRD_PROTO_MAX 8
/* Version 7: requests the board takes outstanding at once, announced in HELLO as win, and so
 * the answers it keeps for retransmission, each in a buffer of BRD_LINE_MAX bytes. 1 .. 8; a
 * firmware short of RAM sets 1 (one answer kept, no win announced: the station sends one
 * request at a time, as in version 6). */
#ifndef BRD_WINDOW
#define BRD_WINDOW 2
#endif
#if BRD_WINDOW < 1 || BRD_WINDOW > 8
#error "BRD_WINDOW must be 1 .. 8"
#endif

/* What the ops return: 0 or one of these. */
enum brd_status {
	BRD_OK = 0,
	BRD_ERR_IO = -1,       /* storage or device failure */
	BRD_ERR_NOSPACE = -2,  /* storage full */
	BRD_ERR_PATH = -3,     /* storage refuses the path (a symlink, not a directory, ...) */
	BRD_ERR_NOTFOUND = -4, /* no such record, file or key */
	BRD_ERR_CRYPTO = -5,   /* key generation or signing failed */
	BRD_ERR_CONFIG = -6,   /* brd_init: the configuration is not usable */
};

/* Small records the core keeps through storage, each replaced atomically as a whole. */
enum brd_record {
	BRD_REC_DEVICE_ID, /* the device id, when the board has one (adopted from a CSR) */
	BRD_REC_CSR,       /* DER of the last CSR made, so asking again returns the same bytes */
	BRD_REC_SUBJECT,   /* the subject that CSR was made for ("cn\nou\nbc") */
	BRD_REC_COUNT_
};

/* One staged file as COMMIT hands it to storage. */
struct brd_commit_file {
	unsigned int slot; /* the staging slot it was written to (stage_open's slot) */
	const char *path;  /* relative to the configuration directory, checked by the core */
	unsigned int mode; /* permission bits, 0 .. 0777 */
	uint64_t size;
	uint8_t sha[32];
};

/* Storage: the board's files. Paths are relative to the configuration directory the
 * station writes into (PROTOCOL.md's "board's config directory"); the core has checked
 * their grammar and the configured prefixes before any op sees them. Every op returns 0 or
 * a negative enum brd_status. inst is the caller's, passed back unchanged. */
struct brd_storage_ops {
	/* Starts staged file number slot (0 .. BRD_MAX_STAGED-1) for path, empty, replacing
	 * whatever that slot held. The file may be refused (BRD_ERR_PATH: a symlink on the
	 * way, a directory in its place) or fail (BRD_ERR_IO, BRD_ERR_NOSPACE). */
	int (*stage_open)(void *inst, unsigned int slot, const char *path, unsigned int mode);
	/* Writes n bytes at off into staged file slot (off never beyond its current end). */
	int (*stage_write)(void *inst, unsigned int slot, uint64_t off, const void *data,
			   size_t n);
	/* Reads up to n bytes at off from staged file slot; *got is 0 at its end. The core
	 * hashes a complete file through this, so the hash is of what storage holds. */
	int (*stage_read)(void *inst, unsigned int slot, uint64_t off, void *buf, size_t n,
			  size_t *got);
	/* Forgets staged file slot, or every staged file when slot is -1 (at boot: staged
	 * files do not survive a reboot). */
	void (*stage_discard)(void *inst, int slot);
	/* Installs the n staged files together with the installed files not rewritten, as
	 * generation generation()+1, atomically: after a power loss at any moment storage holds
	 * the old set or the new one. Durable before it returns. The staged slots are consumed
	 * on success; on failure the installed set is unchanged. */
	int (*commit)(void *inst, const struct brd_commit_file *files, unsigned int n);
	/* Generation of the installed set; 0 when nothing was ever committed. */
	uint64_t (*generation)(void *inst);
	/* Number of installed files, and file idx's path (NUL-terminated, at most cap bytes
	 * with the NUL) and size as recorded at commit. */
	unsigned int (*installed)(void *inst);
	int (*installed_info)(void *inst, unsigned int idx, char *path, size_t cap,
			      uint64_t *size);
	/* Reads installed file idx as it is on storage now (VERIFY reports that, not what
	 * was recorded); *got is 0 at its end. */
	int (*installed_read)(void *inst, unsigned int idx, uint64_t off, void *buf, size_t n,
			      size_t *got);
	/* Reads record rec into buf (cap bytes): BRD_ERR_NOTFOUND when it does not exist;
	 * a record longer than cap is BRD_ERR_IO. */
	int (*rec_read)(void *inst, enum brd_record rec, void *buf, size_t cap, size_t *len);
	/* Replaces record rec with len bytes, durably and atomically. */
	int (*rec_write)(void *inst, enum brd_record rec, const void *data, size_t len);
	/* What went wrong in the last failed op, for the ERROR text (NULL: nothing to add).
	 * May be NULL. */
	const char *(*last_error)(void *inst);
};

/* Key: the board's EC P-256 key pair, kept across reboots, never leaving the board. */
struct brd_key_ops {
	/* 1 when a key pair exists, 0 when none, negative on failure. */
	int (*exists)(void *inst);
	/* Makes a new key pair, durably replacing any existing one. */
	int (*generate)(void *inst);
	/* The public key as an uncompressed point (0x04 || X || Y). */
	int (*public_key)(void *inst, uint8_t pub[65]);
	/* Signs a SHA-256 digest with ECDSA; sig receives r || s, 32 bytes each, big endian. */
	int (*sign)(void *inst, const uint8_t digest[32], uint8_t sig[64]);
	/* As brd_storage_ops.last_error. May be NULL. */
	const char *(*last_error)(void *inst);
};

/* Random bytes, for the boot id. */
struct brd_random_ops {
	int (*fill)(void *inst, void *buf, size_t n);
};

/* What the core tells the platform besides bytes (logs, an LED, the agent's exit). */
enum brd_event {
	BRD_EV_BOOT,      /* brd_boot sent BOOT; text: the boot id */
	BRD_EV_HELLO,     /* a session opened */
	BRD_EV_CSR,       /* a new key (text "key") or CSR (text "csr") was made */
	BRD_EV_ADOPTED,   /* the board took the device id in text from a CSR */
	BRD_EV_COMMIT,    /* a file set was installed; text: "gen N, M files" */
	BRD_EV_REFUSED,   /* a request was refused; text: the ERROR text */
	BRD_EV_BAUD,      /* the UART was switched; text: the rate */
	BRD_EV_FALLBACK,  /* no good frame at the new rate: back to the old one; text: rate */
	BRD_EV_DONE_PASS, /* DONE result=pass; text: the station's text */
	BRD_EV_DONE_FAIL, /* DONE result=fail; text: the station's text */
};

/* The platform: the UART and whoever watches the board. */
struct brd_platform {
	void *arg;
	/* Queues n bytes (a whole frame) for the UART. fresh is 0 when the bytes are the kept
	 * answer sent again for a retransmitted request. The bytes must be copied or written
	 * before send returns. A simulator damages its copy here to put a bad answer on the
	 * wire (fresh tells a first transmission from the kept answer sent again). */
	void (*send)(void *arg, const char *bytes, size_t n, int fresh);
	/* Switches the UART to rate now. Called from brd_tx_done (after a BAUD answer left)
	 * and from brd_tick (the fallback). May be NULL on a line without rates. */
	void (*set_baud)(void *arg, uint32_t rate);
	/* Tells what happened; text is NUL-terminated and valid during the call. May be
	 * NULL. */
	void (*event)(void *arg, enum brd_event ev, const char *text);

	/* Fault hooks: where a simulator or a test makes a board misbehave on purpose with
	 * the core's own protocol logic around it. A device's platform leaves them NULL. */
	/* Called with each request before the core acts on it (not for a retransmission,
	 * which gets the kept answer). Returns 0 to go on, or non-zero to leave the request
	 * unhandled and unanswered (or answered ERROR with brd_refuse), as a board that
	 * hangs, loses its link, loses power or fails there would: the core's state stays as
	 * it was (a hung board is then fed nothing
	 * more; one that comes back after a power loss is started again with brd_boot). */
	int (*request)(void *arg, const struct brd_frame *f);
	/* Called with the CSR the core made for a new subject or key (DER, *len bytes in der,
	 * room for cap) before it is kept and sent: the platform may replace it in place and
	 * set *len, to send a bad CSR. Returns 0, or a negative enum brd_status to refuse
	 * the request with ERROR KEYGEN. */
	int (*csr)(void *arg, uint8_t *der, size_t cap, size_t *len);
};

struct brd_config {
	/* HELLO's identity: hardware id, SKU, firmware version, serial number (may be ""),
	 * key storage ("se" or "sw"). Each at most BRD_MAX_NAME bytes; copied by brd_init. */
	const char *hw, *sku, *fw, *sn, *key_storage;
	/* The directory the station's relative paths land in, absolute (e.g. "/var/sota"),
	 * and the absolute prefixes a file may be written under (NULL or none: config_dir
	 * alone). A path resolving outside every prefix is refused with ERROR PATH. */
	const char *config_dir;
	const char *const *prefixes;
	unsigned int nprefixes;
	/* The starting rate and the rates BAUD may switch to (the starting one among them). */
	uint32_t baud;
	const uint32_t *bauds;
	unsigned int nbauds;
	/* Largest frame the board accepts, 512 .. BRD_LINE_MAX (0: BRD_LINE_MAX). */
	size_t max_frame;
	/* Newest protocol version the board speaks, 1 to BRD_PROTO_MAX (0: BRD_PROTO_MAX). 1
	 * stands in for a board of before version 2 (raw and copied chunks, continuation
	 * chunks, VERIFY's sum), 2 for one of before version 3 (COMMIT and VERIFY folded into
	 * the request before), 3 for one of before version 4 (a copy and bytes in one chunk), 4
	 * for one of before version 5 (a certificate's PEM block sent as its text), 7 for one of
	 * before version 8 (BOOT says only the boot id and firmware; HELLO opens every
	 * session). */
	unsigned int protocol;
	/* Limits: one file, all files staged at once (0: 1 MiB and 4 MiB). */
	uint64_t max_file, max_total;
	/* 1: CSR regen=1 may replace the key of a board that has files installed. Without it
	 * such a request is refused: a provisioned board keeps its key. */
	int allow_regen;
	const struct brd_storage_ops *storage;
	void *storage_inst;
	const struct brd_key_ops *key;
	void *key_inst;
	const struct brd_random_ops *random;
	void *random_inst;
	struct brd_platform plat;
	/* The platform's SHA-256 compression (a hardware unit's or a crypto library's, see
	 * sha256.h) for every hash the board makes; NULL: the core's own. Last, so that a
	 * configuration written in order before it still compiles. */
	brd_sha256_blocks_fn *sha256_blocks;
};

struct brd_staged {
	char path[BRD_MAX_PATH + 1]; /* "" when the slot is free */
	unsigned int mode;
	uint64_t size, have;
	uint8_t sha[32];
	int done; /* complete and its hash matched */
};

/* One board. Fields are private to the core; brd_init sets them all. */
struct brd_board {
	/* Configuration, copied. */
	char hw[BRD_MAX_NAME + 1], sku[BRD_MAX_NAME + 1], fw[BRD_MAX_NAME + 1];
	char sn[BRD_MAX_NAME + 1], key_storage[8];
	const char *config_dir;
	const char *prefixes[BRD_MAX_PREFIXES];
	unsigned int nprefixes;
	uint32_t bauds[BRD_MAX_BAUDS];
	unsigned int nbauds;
	uint32_t baud_start;
	size_t max_frame;
	uint64_t max_file, max_total;
	int allow_regen;
	const struct brd_storage_ops *st;
	void *st_inst;
	const struct brd_key_ops *key;
	void *key_inst;
	const struct brd_random_ops *rnd;
	void *rnd_inst;
	brd_sha256_blocks_fn *sha256_blocks;
	struct brd_platform plat;

	/* Session. */
	int hello;        /* a session is open: HELLO answered, or (version 8) opened by the
			   * first request after BOOT */
	unsigned char proto_max, version; /* newest version spoken; version HELLO chose */
	size_t peer_max;  /* largest frame the station accepts */
	char boot_id[17]; /* hex */
	int paused;

	/* Line rate. */
	uint32_t baud_cur, baud_old, baud_new;
	uint32_t baud_ms;
	int baud_pending;       /* BAUD answered: switch once it has left */
	int baud_trial;         /* switched: waiting for a good frame at the new rate */
	uint64_t baud_deadline; /* when the trial ends (ms, the caller's clock) */

	/* The kept answers, for a retransmitted request: each one's seq and the request's CRC.
	 * One before version 7; in a session of version 7 the last BRD_WINDOW, the newest in
	 * tx[txi]. */
	struct {
		int valid;
		uint32_t seq, crc;
		size_t len;
	} kept[BRD_WINDOW];
	unsigned int txi;
	char tx[BRD_WINDOW][BRD_LINE_MAX];

	struct brd_staged staged[BRD_MAX_STAGED];

	struct brd_decoder dec;
	/* Working space of one command (the CSR being built, chunks read back). */
	uint8_t scratch[BRD_CSR_MAX];
};

/* Prepares b from cfg (copied; the strings of prefixes and config_dir must outlive b).
 * Returns 0, or BRD_ERR_CONFIG when a required op is missing or a value is out of range.
 * Sends nothing: call brd_boot next. */
int brd_init(struct brd_board *b, const struct brd_config *cfg);

/* The board (re)starts: no session, nothing staged, the UART at the starting rate (the
 * platform is expected to have it there), a new boot id, and `E 0 BOOT` sent (version 8:
 * with what HELLO's answer says, so that the station may skip HELLO). */
void brd_boot(struct brd_board *b, uint64_t now_ms);

/* Feeds n bytes received from the UART, in any split. Frames are answered through send
 * as they complete; console bytes are ignored. Returns the bytes consumed: n, unless a
 * callback called brd_pause, which stops the feed after the frame being handled (the
 * caller feeds the rest later). */
size_t brd_input(struct brd_board *b, const void *data, size_t n, uint64_t now_ms);

/* From send or request: stop the current brd_input after this frame (a platform that cannot
 * take more now, e.g. a simulated slow board, or one that just lost power). */
void brd_pause(struct brd_board *b);

/* From request: answer the request with ERROR CODE and TEXT, kept for a retransmission like
 * any answer (a simulated board whose firmware fails there on purpose); request then returns
 * non-zero. */
void brd_refuse(struct brd_board *b, const struct brd_frame *req, const char *code,
		const char *text);

/* Everything sent so far has left the UART. After a BAUD answer this is where the core
 * switches the rate (set_baud) and starts the fallback clock. */
void brd_tx_done(struct brd_board *b, uint64_t now_ms);

/* Runs the timers: a BAUD trial that got no good frame by its deadline falls back to the
 * old rate (set_baud). Call at brd_deadline() or whenever convenient. */
void brd_tick(struct brd_board *b, uint64_t now_ms);

/* When brd_tick must run next (ms, the caller's clock); 0 when no timer runs. */
uint64_t brd_deadline(const struct brd_board *b);

/* The rate the board's UART is at now. */
uint32_t brd_baud(const struct brd_board *b);

/* 1 while a session is open (HELLO answered since the last boot). */
int brd_in_session(const struct brd_board *b);

/* The protocol's grammar of WRITE paths (PROTOCOL.md): 1 to BRD_MAX_PATH bytes of
 * '/'-separated components of A-Z a-z 0-9 . _ -, none empty and none starting with '.', so
 * that nothing escapes the board's config directory or hides beside its manifest. NULL when
 * path follows it, else what is wrong, with *bad the byte offset of the first offending
 * byte. The one check of the rule, for both ends (drv_proto_path_problem is this). */
const char *brd_path_problem(const char *path, size_t *bad);

/* Checks a path as the station sent it against the protocol's grammar and the prefixes
 * (the same check WRITE makes). Returns NULL when it may be written, else why not. */
const char *brd_path_refusal(const struct brd_board *b, const char *path);

#endif
