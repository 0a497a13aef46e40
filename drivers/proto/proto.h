/* The board wire protocol codec: frames are printable ASCII lines that share the UART with the
 * board's console. drivers/PROTOCOL.md is the specification; this file is its C interface.
 *
 *   ~@P1 <kind> <seq> <TYPE> [<key>=<value> ...] <CRC32 hex>\n
 *
 * The decoder takes bytes as they come (any split, down to one byte at a time, yields the same
 * frames and the same console bytes), uses only the fixed buffer inside its struct, and hands
 * out frames, console bytes and errors through callbacks. The builder writes one frame into a
 * caller's buffer. Neither allocates, blocks or touches the event loop; both are safe on any
 * thread as long as one decoder or builder is used by one thread at a time. */
#ifndef DRV_PROTO_H
#define DRV_PROTO_H

#include <stddef.h>
#include <stdint.h>

/* b64 fields use this codec (drv_b64_len and the rest), also for tests and simboard. */
#include "b64.h"

#define DRV_PROTO_VERSION 1
/* The newest version (PROTOCOL.md 6 to 11): HELLO offers "1,2,3,4,5,6,7", the board answers
 * the highest it speaks, and a version's additions are used only when it answered that
 * version or a later one. */
#define DRV_PROTO_VERSION_MAX 8
/* Every frame starts with this; console output never contains it (see PROTOCOL.md). */
#define DRV_PROTO_MARKER "~@P1 "
#define DRV_PROTO_MARKER_LEN 5
/* Hard cap on a frame line, marker through line end inclusive. HELLO negotiates a smaller
 * limit per direction; every implementation accepts at least DRV_PROTO_MIN_LINE. */
#define DRV_PROTO_MAX_LINE 4096
#define DRV_PROTO_MIN_LINE 512
#define DRV_PROTO_MAX_FIELDS 64
#define DRV_PROTO_MAX_TYPE 16
#define DRV_PROTO_MAX_KEY 16

/* Frame kinds: the station asks (Q), the board answers (A, same seq) or announces (E, seq 0).
 * A station that reads its own Q frames back is looking at an echoing console, not a board. */
enum drv_proto_kind {
	DRV_PROTO_REQUEST = 'Q',
	DRV_PROTO_ANSWER = 'A',
	DRV_PROTO_EVENT = 'E',
};

/* Command and answer types. An answer carries its command's type, or ERROR. */
#define DRV_PROTO_HELLO "HELLO"
#define DRV_PROTO_CSR "CSR"
#define DRV_PROTO_WRITE "WRITE"
#define DRV_PROTO_COMMIT "COMMIT"
#define DRV_PROTO_VERIFY "VERIFY"
#define DRV_PROTO_BAUD "BAUD"
#define DRV_PROTO_DONE "DONE"
#define DRV_PROTO_ERROR "ERROR"
#define DRV_PROTO_BOOT "BOOT" /* event: the agent (re)started; send HELLO again */

/* Domain prefix of the proof-of-possession signature: the board signs, with ECDSA and
 * SHA-256, the bytes DRV_PROTO_POP_CONTEXT || nonce (no separator, no terminator). */
#define DRV_PROTO_POP_CONTEXT "station-pop-v1"
#define DRV_PROTO_NONCE_MIN 16
#define DRV_PROTO_NONCE_MAX 64

/* Error codes a board puts in ERROR answers (code=<NAME>), with their meaning. */
#define DRV_PROTO_ERRORS(X)                                                                    \
	X(UNKNOWN, "unknown command")                                                          \
	X(FIELD, "missing or malformed field")                                                 \
	X(FRAME, "malformed frame received")                                                   \
	X(VERSION, "no common protocol version")                                               \
	X(HELLO, "HELLO required first")                                                       \
	X(ALG, "key algorithm not supported")                                                  \
	X(KEYGEN, "key or CSR generation failed")                                              \
	X(NOKEY, "no key generated yet")                                                       \
	X(PATH, "path not allowed")                                                            \
	X(OFFSET, "offset beyond the bytes received")                                          \
	X(SIZE, "file or file set too large")                                                  \
	X(HASH, "file content does not match its SHA-256")                                     \
	X(INCOMPLETE, "a written file is incomplete")                                          \
	X(STORAGE, "storage error")                                                            \
	X(BAUD, "baud rate not supported")                                                     \
	X(INTERNAL, "internal error")                                                          \
	X(SOURCE, "copy source is missing or shorter than asked (version 2)")

#define DRV__PERR_ENUM(name, msg) DRV_PROTO_E_##name,
enum drv_proto_error { DRV_PROTO_ERRORS(DRV__PERR_ENUM) DRV_PROTO_E_COUNT_ };
#undef DRV__PERR_ENUM

/* Name ("OFFSET") and meaning of a board error code; "?" for out-of-range values. */
const char *drv_proto_errname(enum drv_proto_error e);
const char *drv_proto_errmsg(enum drv_proto_error e);
/* Code for a name as found in an ERROR answer; -1 when unknown. */
int drv_proto_errcode(const char *name);

/* WRITE paths (PROTOCOL.md): 1 to DRV_PROTO_MAX_PATH bytes of '/'-separated components of
 * A-Z a-z 0-9 . _ -, none empty and none starting with '.', so that nothing escapes the
 * board's config directory or hides beside its manifest. */
#define DRV_PROTO_MAX_PATH 128

/* The one check of that rule, for both ends and for what is checked before a board is met
 * (profiles): NULL when path is one the protocol carries, else what is wrong with it, with
 * *bad the byte offset in path of the first offending byte. */
const char *drv_proto_path_problem(const char *path, size_t *bad);

/* One key=value field: offsets into the frame's line, value still encoded. */
struct drv_proto_field {
	uint16_t key_off, key_len;
	uint16_t val_off, val_len;
};

/* A parsed frame. line points into the decoder's buffer (or the caller's buffer for
 * drv_proto_parse) and is valid only as long as that buffer is: copy what you keep. */
struct drv_proto_frame {
	const char *line; /* marker through CRC, without the line end */
	size_t len;
	char kind; /* enum drv_proto_kind */
	uint32_t seq;
	uint32_t crc;
	char type[DRV_PROTO_MAX_TYPE + 1];
	unsigned int nfields;
	struct drv_proto_field fields[DRV_PROTO_MAX_FIELDS];
};

/* CRC-32 (IEEE 802.3, reflected, as in zlib) of n bytes, continuing from crc (start with 0). */
uint32_t drv_proto_crc32(uint32_t crc, const void *data, size_t n);

/* Parses one frame line (starting at the marker, without "\n"; a trailing "\r" is allowed).
 * Returns 0, ST_E_PROTO_CRC (bad CRC, expected and computed values named in err),
 * ST_E_PROTO_FRAME (err names the column and what was expected there) or
 * ST_E_PROTO_TOO_LONG. f->line points into line. */
int drv_proto_parse(const char *line, size_t len, struct drv_proto_frame *f, char *err,
		    size_t errlen);

/* Decoder. Callbacks run inside drv_proto_decoder_feed() on the caller's thread. */
struct drv_proto_callbacks {
	/* A frame with a good CRC and a valid grammar. */
	void (*frame)(void *arg, const struct drv_proto_frame *f);
	/* Bytes outside frames, in stream order, marker bytes removed. May be NULL. */
	void (*console)(void *arg, const char *data, size_t n);
	/* A broken frame: code is ST_E_PROTO_CRC, ST_E_PROTO_FRAME or ST_E_PROTO_TOO_LONG, msg
	 * says what was wrong and where, line/len is the frame text as received (possibly
	 * truncated). May be NULL. */
	void (*error)(void *arg, int code, const char *msg, const char *line, size_t len);
};

#define DRV_PROTO_CONSOLE_CHUNK 256

struct drv_proto_decoder {
	/* Set by init; read-only afterwards. */
	struct drv_proto_callbacks cb;
	void *arg;
	size_t max_line;
	/* Counters, for the slot's statistics. */
	uint64_t frames, errors, console_bytes;
	/* While the frame callback runs: the bytes of the data being fed that follow the
	 * frame's line end (a byte count can then stop at the frame). */
	size_t after;
	/* Private state. */
	int state;
	int paused;
	size_t mlen;  /* how much of the marker matched so far */
	size_t len;   /* bytes in line */
	size_t clen;  /* bytes in console */
	struct drv_proto_frame frame;
	char console[DRV_PROTO_CONSOLE_CHUNK];
	char line[DRV_PROTO_MAX_LINE];
	char msg[160];
};

/* Prepares d. max_line is the largest frame accepted, line end included (0 or anything above
 * DRV_PROTO_MAX_LINE means DRV_PROTO_MAX_LINE). cb is copied. */
void drv_proto_decoder_init(struct drv_proto_decoder *d, size_t max_line,
			    const struct drv_proto_callbacks *cb, void *arg);

/* Feeds n bytes. Returns how many were consumed: n, unless a frame or error callback called
 * drv_proto_decoder_pause(), in which case feeding stops right after that callback; the
 * caller feeds the rest later or drops it. Callbacks must not free d or feed it; they may
 * pause or reset it. Console bytes still buffered are delivered before every frame and error
 * callback and at the end of each feed. */
size_t drv_proto_decoder_feed(struct drv_proto_decoder *d, const void *data, size_t n);

/* From inside a callback: stop the current feed after this callback returns. */
void drv_proto_decoder_pause(struct drv_proto_decoder *d);

/* Drops any partial frame and marker match (e.g. after a baud change or a reconnect). Buffered
 * console bytes are delivered first. */
void drv_proto_decoder_reset(struct drv_proto_decoder *d);

/* Field access. Keys are looked up by exact name; the first match wins unless noted. */
const struct drv_proto_field *drv_proto_find(const struct drv_proto_frame *f, const char *key);
/* The next field named key after `after` (NULL: from the start); NULL when there is none. */
const struct drv_proto_field *drv_proto_find_next(const struct drv_proto_frame *f,
						  const struct drv_proto_field *after,
						  const char *key);
int drv_proto_has(const struct drv_proto_frame *f, const char *key);
/* Part k (from 0) of f's fields, the parts starting at each field named key (the fields
 * before the first belong to part 0): version 6's WRITE of several files and its answer.
 * Returns the number of parts (0 when no field is named key); out is set when k is below
 * it. */
unsigned int drv_proto_part(const struct drv_proto_frame *f, const char *key, unsigned int k,
			    struct drv_proto_frame *out);

/* Typed getters. Each returns 0, or ST_E_PROTO_FIELD with err naming the field (and the
 * column in the frame line) when the field is missing, malformed or does not fit. */

/* Percent-decoded text, NUL-terminated; %00 is refused. */
int drv_proto_get_text(const struct drv_proto_frame *f, const char *key, char *out, size_t cap,
		       char *err, size_t errlen);
/* Like drv_proto_get_text, but a missing field yields def (copied) instead of an error. */
int drv_proto_get_text_opt(const struct drv_proto_frame *f, const char *key, const char *def,
			   char *out, size_t cap, char *err, size_t errlen);
/* Decimal unsigned integer in [min, max]. */
int drv_proto_get_uint(const struct drv_proto_frame *f, const char *key, uint64_t min,
		       uint64_t max, uint64_t *out, char *err, size_t errlen);
/* Base64 (RFC 4648, padded, no line breaks); *outlen receives the decoded length. */
int drv_proto_get_b64(const struct drv_proto_frame *f, const char *key, uint8_t *out,
		      size_t cap, size_t *outlen, char *err, size_t errlen);
/* The bytes of a raw field (version 2), percent-decoded, %00 included; *outlen receives
 * their number. */
int drv_proto_get_raw(const struct drv_proto_frame *f, const char *key, uint8_t *out,
		      size_t cap, size_t *outlen, char *err, size_t errlen);
/* Exactly n bytes as 2n hex digits (either case). */
int drv_proto_get_hex(const struct drv_proto_frame *f, const char *key, uint8_t *out, size_t n,
		      char *err, size_t errlen);

/* Field-level forms of the getters, for repeated keys found with drv_proto_find_next. */
int drv_proto_field_text(const struct drv_proto_frame *f, const struct drv_proto_field *fld,
			 char *out, size_t cap, char *err, size_t errlen);
/* Item idx (0-based) of a comma-separated list value, percent-decoded. ST_E_NOTFOUND (no
 * message) when the list has fewer items. */
int drv_proto_field_item(const struct drv_proto_frame *f, const struct drv_proto_field *fld,
			 unsigned int idx, char *out, size_t cap, char *err, size_t errlen);

/* Builder: writes one frame into a caller buffer of cap bytes (the peer's limit, at most
 * DRV_PROTO_MAX_LINE). Errors are sticky: add after a failure does nothing and end() reports
 * the first failure, so a sequence of adds needs one check. */
struct drv_proto_builder {
	char *buf;
	size_t cap;
	size_t len;
	unsigned int nfields;
	int err;
	char msg[96];
};

void drv_proto_begin(struct drv_proto_builder *b, char *buf, size_t cap, char kind,
		     uint32_t seq, const char *type);
/* Text, percent-encoded where needed (space, '%', ',', '~', controls, non-ASCII). */
void drv_proto_add_text(struct drv_proto_builder *b, const char *key, const char *s);
void drv_proto_add_textn(struct drv_proto_builder *b, const char *key, const char *s, size_t n);
void drv_proto_add_uint(struct drv_proto_builder *b, const char *key, uint64_t v);
void drv_proto_add_b64(struct drv_proto_builder *b, const char *key, const void *data,
		       size_t n);
void drv_proto_add_hex(struct drv_proto_builder *b, const char *key, const void *data,
		       size_t n);
/* n bytes as a raw field (version 2): as they are, percent-encoded only where the line
 * needs it (SP, controls, 0x7F-0xFF, '%', '~'; %00 included). */
void drv_proto_add_raw(struct drv_proto_builder *b, const char *key, const void *data,
		       size_t n);
/* Version 5: the PEM block at data (block bytes with text characters of text, as
 * drv_proto_pem_block found it) as the value of key: its text without the line feeds
 * (PROTOCOL.md 9). */
void drv_proto_add_pem(struct drv_proto_builder *b, const char *key, const void *data,
		       size_t block, size_t text);
/* When data[0..n) starts with a PEM certificate block in the form version 5 writes out (lines
 * of 64 characters, PROTOCOL.md 9): its length, *text the characters of its text; else 0. */
size_t drv_proto_pem_block(const void *data, size_t n, size_t *text);
/* The encoded length of n bytes as a raw value. */
size_t drv_proto_raw_len(const void *data, size_t n);
/* How many of the n bytes at data a raw field named key can still carry in this frame, taken
 * from the start (what a byte costs depends on the byte). */
size_t drv_proto_raw_room(const struct drv_proto_builder *b, const char *key, const void *data,
			  size_t n);
/* VERIFY's sum (version 2, PROTOCOL.md 6.4): writes into out (at least
 * DRV_PROTO_SUM_ITEM_MAX bytes) what one wanted file contributes to the SHA-256 both sides
 * compute: path, 0x00, the size in decimal, 0x00, the 32-byte SHA-256 of the contents; for a
 * file that is not installed (sha NULL), path, 0x00, '-', 0x00. Returns their number (0 when
 * path is longer than DRV_PROTO_MAX_PATH). The codec does no hashing: the caller does. */
#define DRV_PROTO_SUM_ITEM_MAX (DRV_PROTO_MAX_PATH + 1 + 20 + 1 + 32)
size_t drv_proto_sum_item(uint8_t *out, const char *path, uint64_t size, const uint8_t *sha);
/* A comma-separated list; each item is percent-encoded like text. */
void drv_proto_add_list(struct drv_proto_builder *b, const char *key, const char *const *items,
			size_t n);
/* How many raw bytes a b64 field named key can still carry in this frame (multiple of 3). */
size_t drv_proto_b64_room(const struct drv_proto_builder *b, const char *key);
/* How many bytes a field named key with an already encoded value of vlen bytes would take
 * ("␠key=value"); compare with drv_proto_room(). */
size_t drv_proto_field_cost(const char *key, size_t vlen);
/* Bytes still free for fields, leaving room for the CRC and line end. */
size_t drv_proto_room(const struct drv_proto_builder *b);

/* Appends CRC and "\n". Returns 0 and the frame length (line end included) in *len, or the
 * first error: ST_E_PROTO_TOO_LONG (does not fit in cap) or ST_E_INVAL (bad key, type or kind,
 * too many fields), with err saying which. */
int drv_proto_end(struct drv_proto_builder *b, size_t *len, char *err, size_t errlen);

#endif
