/* The board core's frame codec: the framing of drivers/PROTOCOL.md section 1 without heap,
 * printf or a field table. The decoder keeps one partial frame in a fixed buffer and
 * validates a complete one in the order the spec gives (length, characters, CRC, grammar);
 * fields are then found by scanning the line, which costs nothing next to a UART and saves
 * the RAM of an index. The encoder writes one frame into a caller's buffer.
 *
 * The station's codec (drivers/proto/proto.c) shares the CRC-32 and base64 (drivers/base/b64.c) with
 * this one. */
#ifndef BRD_FRAME_H
#define BRD_FRAME_H

#include <stddef.h>
#include <stdint.h>

/* Largest frame a board holds, marker through line end (PROTOCOL.md allows 512 .. 4096). */
#ifndef BRD_LINE_MAX
#define BRD_LINE_MAX 4096
#endif
#if BRD_LINE_MAX < 512 || BRD_LINE_MAX > 4096
#error "BRD_LINE_MAX must be 512 .. 4096"
#endif
#define BRD_LINE_MIN 512
#define BRD_MAX_FIELDS 64
#define BRD_MAX_TYPE 16
#define BRD_MAX_KEY 16
#define BRD_MARKER "~@P1 "
#define BRD_MARKER_LEN 5

/* CRC-32 (IEEE 802.3, reflected, as in zlib) of n bytes, continuing from crc (start: 0).
 * From a 256-entry table, or a 16-entry one when built with BRD_CRC_NIBBLE=1. */
uint32_t brd_crc32(uint32_t crc, const void *data, size_t n);

/* A message being composed (error texts) without printf. Appends stop at cap - 1 and the
 * text stays NUL-terminated. */
struct brd_msg {
	char *buf;
	size_t cap, len;
};

void brd_msg_init(struct brd_msg *m, char *buf, size_t cap);
void brd_msg_str(struct brd_msg *m, const char *s);
void brd_msg_strn(struct brd_msg *m, const char *s, size_t n);
void brd_msg_uint(struct brd_msg *m, uint64_t v);
/* v as 8 upper-case hex digits. */
void brd_msg_hex32(struct brd_msg *m, uint32_t v);

/* A validated frame: line points into the decoder's buffer, valid during the callback. */
struct brd_frame {
	const char *line;
	size_t len; /* marker through CRC, no line end */
	char kind;  /* 'Q', 'A' or 'E' */
	uint32_t seq;
	uint32_t crc;
	char type[BRD_MAX_TYPE + 1];
	size_t fields, fields_end; /* the fields run from line[fields] to line[fields_end] */
};

/* Validates one frame line (marker first, no "\n"; a trailing "\r" is allowed). Returns 0,
 * or -1 with msg saying what is wrong and at which 1-based column. */
int brd_frame_parse(const char *line, size_t len, struct brd_frame *f, struct brd_msg *msg);

/* A field found by key: its value, still encoded. */
struct brd_field {
	const char *val;
	size_t len;
};

/* The first field named key after position *pos (start with *pos = 0); 1 when found (and
 * *pos moved past it), 0 when there is none. */
int brd_frame_next(const struct brd_frame *f, const char *key, size_t *pos,
		   struct brd_field *out);
int brd_frame_find(const struct brd_frame *f, const char *key, struct brd_field *out);

/* Typed values (PROTOCOL.md 1.2). Each returns 0, or -1 with msg naming the key and what
 * is wrong. */
int brd_field_text(const struct brd_field *v, const char *key, char *out, size_t cap,
		   struct brd_msg *msg);
int brd_field_uint(const struct brd_field *v, const char *key, uint64_t min, uint64_t max,
		   uint64_t *out, struct brd_msg *msg);
int brd_field_hex(const struct brd_field *v, const char *key, uint8_t *out, size_t n,
		  struct brd_msg *msg);
/* Decodes base64 into out (cap bytes; may be the value's own bytes: decoding in place is
 * safe since the output never overtakes the input). */
int brd_field_b64(const struct brd_field *v, const char *key, uint8_t *out, size_t cap,
		  size_t *outlen, struct brd_msg *msg);
/* Decodes a raw value (version 2: percent-escapes, %00 included, no NUL added) into out
 * (cap bytes; may be the value's own bytes, as for b64). */
int brd_field_raw(const struct brd_field *v, const char *key, uint8_t *out, size_t cap,
		  size_t *outlen, struct brd_msg *m);
/* Item idx of a list value, percent-decoded; 1 when it exists, 0 past the end, -1 on a bad
 * item (msg says why). */
int brd_field_item(const struct brd_field *v, const char *key, unsigned int idx, char *out,
		   size_t cap, struct brd_msg *msg);

/* Decoder: bytes in any split, one partial frame kept. */
enum brd_dec_result {
	BRD_DEC_NONE,  /* need more bytes */
	BRD_DEC_FRAME, /* *f holds a valid frame */
	BRD_DEC_ERROR, /* a broken frame; the message is in the decoder's err */
};

struct brd_decoder {
	size_t max; /* largest frame accepted, line end included */
	int state;
	size_t mlen; /* marker bytes matched so far */
	size_t len;
	char line[BRD_LINE_MAX];
	char err[128];
};

void brd_decoder_init(struct brd_decoder *d, size_t max);
/* Drops a partial frame (after a rate switch: bytes from the old rate are noise). */
void brd_decoder_reset(struct brd_decoder *d);
/* Consumes bytes from data[*pos..n) until a frame or an error completes or the bytes run
 * out; *pos is advanced past what was consumed. */
enum brd_dec_result brd_decoder_run(struct brd_decoder *d, const char *data, size_t n,
				    size_t *pos, struct brd_frame *f);

/* Scanning for a decoder (this one and the station's, drivers/proto/proto.c): how many bytes
 * from p (at most n) it may take in bulk, as every one of them would be taken alone.
 * Inside a frame (line[0..len), frames of at most max bytes with the line end): bytes that
 * go into the line as they are, up to a line end, a '~' or the limit; none while the line's
 * last bytes hold a '~' that the next ones could complete into a marker. Outside a frame,
 * with no marker half-matched: bytes up to the next '~' and, while an over-long frame is
 * skipped (skipping 1), its line end. */
size_t brd_scan_frame(const char *line, size_t len, size_t max, const char *p, size_t n);
size_t brd_scan_outside(int skipping, const char *p, size_t n);

/* Percent-encoding of text values (PROTOCOL.md 1.2): the encoded length of s[0..n), and the
 * encoding written to out (room for brd_pct_len bytes), returning the end. */
size_t brd_pct_len(const char *s, size_t n);
char *brd_pct_put(char *out, const char *s, size_t n);

/* Raw values (version 2): the encoded length of n bytes, the encoding written to out (room
 * for brd_raw_len bytes) returning the end, and how many of the n bytes (from the start)
 * fit in room encoded bytes. */
size_t brd_raw_len(const void *data, size_t n);
char *brd_raw_put(char *out, const void *data, size_t n);
size_t brd_raw_fit(const void *data, size_t n, size_t room);

/* PEM certificate blocks (version 5's pem values, PROTOCOL.md 9): BRD_PEM_BEGIN, the base64
 * text in lines of BRD_PEM_LINE characters each ended by a line feed (the last one 1 to
 * BRD_PEM_LINE), BRD_PEM_END. brd_pem_len: the block's length for a text of n characters
 * (n >= 1). The station finds such blocks with drv_proto_pem_block (drivers/proto). */
#define BRD_PEM_BEGIN "-----BEGIN CERTIFICATE-----\n"
#define BRD_PEM_END "-----END CERTIFICATE-----\n"
#define BRD_PEM_LINE 64
size_t brd_pem_len(size_t n);
/* 1 when c may be in a PEM block's text (the base64 alphabet and its padding). Inline: the
 * station tests every character of every PEM file a board is sent, and a call cost more
 * than the test. */
static inline int brd_pem_char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '+' || c == '/' || c == '=';
}

/* Writers of a frame's pieces, shared with the station's builder (drivers/proto/proto.c). They
 * write without checking room: the caller has. */
/* v in decimal into out; returns its length (no NUL). */
size_t brd_uint_str(char out[21], uint64_t v);
/* n bytes as upper-case hex; returns the end. */
char *brd_hex_put(char *out, const void *data, size_t n);
/* A list value: its encoded length, and the items written comma-separated (each as text). */
size_t brd_list_len(const char *const *items, size_t n);
char *brd_list_put(char *out, const char *const *items, size_t n);
/* " key=" at buf + *len; *len grows by the whole field (vlen bytes of value to follow);
 * returns where the value goes. */
char *brd_field_put(char *buf, size_t *len, const char *key, size_t vlen);
/* " CRC\n" after the len bytes of buf (10 bytes); returns the frame's length. */
size_t brd_trailer_put(char *buf, size_t len);

/* Encoder. Errors are sticky (a field that does not fit makes brd_enc_end fail), so a run of
 * adds needs one check. */
struct brd_enc {
	char *buf;
	size_t cap, len;
	unsigned int nfields;
	int err;
};

void brd_enc_begin(struct brd_enc *e, char *buf, size_t cap, char kind, uint32_t seq,
		   const char *type);
/* Text, percent-encoded where the spec requires. */
void brd_enc_text(struct brd_enc *e, const char *key, const char *s);
void brd_enc_textn(struct brd_enc *e, const char *key, const char *s, size_t n);
void brd_enc_uint(struct brd_enc *e, const char *key, uint64_t v);
/* Upper-case hex of n bytes. */
void brd_enc_hex(struct brd_enc *e, const char *key, const void *data, size_t n);
void brd_enc_b64(struct brd_enc *e, const char *key, const void *data, size_t n);
/* A list of n text items. */
void brd_enc_list(struct brd_enc *e, const char *key, const char *const *items, size_t n);
/* Bytes a field key=<vlen encoded bytes> takes, and the room left for fields. */
size_t brd_enc_cost(const char *key, size_t vlen);
size_t brd_enc_room(const struct brd_enc *e);
/* Raw bytes a b64 field named key can still carry (a multiple of 3). */
size_t brd_enc_b64_room(const struct brd_enc *e, const char *key);
/* Appends the CRC and "\n"; returns the frame length, or 0 when something did not fit. */
size_t brd_enc_end(struct brd_enc *e);

#endif
