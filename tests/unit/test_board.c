/* The board core (drivers/board): bytes in, bytes out. Requests are built with the station's
 * codec and fed in (whole and one byte at a time); answers are parsed with it too. Storage is
 * in memory, the key a real P-256 key (OpenSSL), so CSRs and proofs of possession are checked
 * as the station checks them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "board.h"
#include "board_mem.h"
#include "crc32_slice8.h"
#include "crc32_table.h"
#include "proto.h"
#include "sha256_openssl.h"
#include "testutil.h"

/* What the in-memory storage saw the core do that it must not: the test fails there. */
static void mem_broken(const char *what)
{
	fail_msg("the board core broke its storage's contract: %s", what);
}

/* A real P-256 key. */
struct key {
	EVP_PKEY *pkey;
	unsigned int generated;
	int switch_fails; /* 1: generate replaces the key, then fails */
	int sign_rc; /* what sign returns instead of signing (0: it signs) */
};

static int k_exists(void *inst)
{
	return ((struct key *)inst)->pkey != NULL;
}

static int k_generate(void *inst)
{
	struct key *k = inst;

	EVP_PKEY_free(k->pkey);
	k->pkey = EVP_EC_gen("P-256");
	k->generated++;
	if (k->switch_fails)
		return BRD_ERR_IO;
	return k->pkey ? 0 : BRD_ERR_CRYPTO;
}

static int k_public(void *inst, uint8_t pub[65])
{
	struct key *k = inst;
	size_t n = 0;

	return EVP_PKEY_get_octet_string_param(k->pkey, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pub,
					       65, &n) == 1 && n == 65
		       ? 0
		       : BRD_ERR_CRYPTO;
}

static int k_sign(void *inst, const uint8_t digest[32], uint8_t sig[64])
{
	struct key *k = inst;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(k->pkey, NULL);
	unsigned char der[80];
	const unsigned char *p = der;
	size_t len = sizeof(der);
	ECDSA_SIG *es;
	const BIGNUM *r, *s;

	if (k->sign_rc) {
		EVP_PKEY_CTX_free(ctx);
		return k->sign_rc;
	}
	assert_non_null(ctx);
	assert_int_equal(EVP_PKEY_sign_init(ctx), 1);
	assert_int_equal(EVP_PKEY_sign(ctx, der, &len, digest, 32), 1);
	EVP_PKEY_CTX_free(ctx);
	es = d2i_ECDSA_SIG(NULL, &p, (long)len);
	assert_non_null(es);
	ECDSA_SIG_get0(es, &r, &s);
	BN_bn2binpad(r, sig, 32);
	BN_bn2binpad(s, sig + 32, 32);
	ECDSA_SIG_free(es);
	return 0;
}

static const struct brd_key_ops key_ops = { k_exists, k_generate, k_public, k_sign, NULL };

static int r_fill(void *inst, void *buf, size_t n)
{
	unsigned int *ctr = inst;
	size_t i;

	for (i = 0; i < n; i++)
		((uint8_t *)buf)[i] = (uint8_t)(++*ctr * 37);
	return 0;
}

static const struct brd_random_ops rnd_ops = { r_fill };

/* The platform: what the board sent and asked. */
struct plat {
	char out[16][4096];
	size_t len[16];
	int fresh[16];
	unsigned int n, total;
	uint32_t bauds[8];
	unsigned int nbauds;
	int falls;
	unsigned int sessions; /* BRD_EV_HELLO: sessions opened */
	/* Fault hooks (test_fault_hooks). */
	struct brd_board *b;
	int drop, csr_rc;
	const char *refuse; /* set: the request hook answers ERROR STORAGE with it */
	unsigned int requests;
};

static void p_send(void *arg, const char *bytes, size_t n, int fresh)
{
	struct plat *p = arg;

	assert_true(n < sizeof(p->out[0]));
	if (p->n == 16)
		p->n = 0;
	memcpy(p->out[p->n], bytes, n);
	p->out[p->n][n] = 0;
	p->len[p->n] = n;
	p->fresh[p->n] = fresh;
	p->n++;
	p->total++;
}

static void p_baud(void *arg, uint32_t rate)
{
	struct plat *p = arg;

	p->bauds[p->nbauds++ % 8] = rate;
}

static void p_event(void *arg, enum brd_event ev, const char *text)
{
	struct plat *p = arg;

	(void)text;
	p->falls += ev == BRD_EV_FALLBACK;
	p->sessions += ev == BRD_EV_HELLO;
}

/* The request hook: holds requests back while drop is set, and stops the feed there. */
static int p_request(void *arg, const struct brd_frame *f)
{
	struct plat *p = arg;

	assert_int_equal(f->kind, 'Q');
	p->requests++;
	if (p->refuse) {
		brd_refuse(p->b, f, "STORAGE", p->refuse);
		return 1;
	}
	if (p->drop)
		brd_pause(p->b);
	return p->drop;
}

/* The CSR hook: spoils the signature's last byte, or refuses with csr_rc. */
static int p_csr(void *arg, uint8_t *der, size_t cap, size_t *len)
{
	struct plat *p = arg;

	if (p->csr_rc)
		return p->csr_rc;
	assert_true(*len > 0 && *len <= cap);
	der[*len - 1] ^= 1;
	return 0;
}

/* One board under test. */
struct t {
	struct brd_board b;
	struct board_mem mem;
	struct key key;
	struct plat plat;
	unsigned int rnd;
	uint32_t seq;
};

static const uint32_t bauds[] = { 115200, 460800, 921600 };

/* The SHA-256 compression the next board is given (struct brd_config's sha256_blocks). */
static brd_sha256_blocks_fn *board_blocks;

/* The hardware id of the boards made next; another than the default is their sku and serial
 * number too (test_version8: an identity too long for BOOT). */
static const char board_hw_default[] = "hw-1";
static const char *board_hw = board_hw_default;

static struct t *board_new_proto(const char *const *prefixes, unsigned int nprefixes,
				 unsigned int protocol)
{
	struct t *t = calloc(1, sizeof(*t));
	struct brd_config c;

	assert_non_null(t);
	memset(&c, 0, sizeof(c));
	c.hw = board_hw;
	c.sku = board_hw == board_hw_default ? "sku-1" : board_hw;
	c.fw = "fw-1";
	c.sn = board_hw == board_hw_default ? "SN 1" : board_hw;
	c.key_storage = "se";
	c.config_dir = "/var/sota";
	c.prefixes = prefixes;
	c.nprefixes = nprefixes;
	c.baud = 115200;
	c.bauds = bauds;
	c.nbauds = 3;
	c.max_frame = 1024;
	c.protocol = protocol;
	c.max_file = 4096;
	c.max_total = 6000;
	c.storage = &board_mem_ops;
	c.storage_inst = &t->mem;
	c.key = &key_ops;
	c.key_inst = &t->key;
	c.random = &rnd_ops;
	c.random_inst = &t->rnd;
	c.sha256_blocks = board_blocks;
	c.plat.arg = &t->plat;
	c.plat.send = p_send;
	c.plat.set_baud = p_baud;
	c.plat.event = p_event;
	board_mem_init(&t->mem);
	t->mem.broken = mem_broken;
	assert_int_equal(brd_init(&t->b, &c), 0);
	brd_boot(&t->b, 0);
	return t;
}

static struct t *board_new(const char *const *prefixes, unsigned int nprefixes)
{
	return board_new_proto(prefixes, nprefixes, 0);
}

static void board_free(struct t *t)
{
	EVP_PKEY_free(t->key.pkey);
	free(t);
}

static const char *last(const struct t *t)
{
	return t->plat.out[(t->plat.n + 15) % 16];
}

/* Sends a frame's bytes: whole, or one byte at a time when split is set. */
static void feed(struct t *t, const char *bytes, size_t n, int split, uint64_t now)
{
	size_t i;

	if (!split) {
		assert_int_equal(brd_input(&t->b, bytes, n, now), n);
		return;
	}
	for (i = 0; i < n; i++)
		assert_int_equal(brd_input(&t->b, bytes + i, 1, now), 1);
}

/* Builds a request: fields as "key=value" pairs already encoded, NULL-terminated. */
static size_t build(char *buf, uint32_t seq, const char *type, const char *const *fields)
{
	char line[4096];
	size_t n = 0, len;
	unsigned int i;
	uint32_t crc;

	n = (size_t)snprintf(line, sizeof(line), "~@P1 Q %u %s", seq, type);
	for (i = 0; fields && fields[i]; i++)
		n += (size_t)snprintf(line + n, sizeof(line) - n, " %s", fields[i]);
	line[n++] = ' ';
	crc = drv_proto_crc32(0, line, n);
	len = (size_t)snprintf(buf, 4096, "%.*s%08X\n", (int)n, line, crc);
	return len;
}

/* Sends a request and parses the answer into f (its line in t's output buffer). */
static void ask(struct t *t, uint32_t seq, const char *type, const char *const *fields,
		struct drv_proto_frame *f)
{
	char buf[4096], err[160];
	size_t n = build(buf, seq, type, fields);
	unsigned int before = t->plat.total;
	const char *a;

	feed(t, buf, n, seq % 2, 1000);
	assert_int_equal(t->plat.total, before + 1);
	a = last(t);
	assert_int_equal(drv_proto_parse(a, strlen(a) - 1, f, err, sizeof(err)), 0);
	assert_int_equal(f->kind, 'A');
}

static void want_error(const struct drv_proto_frame *f, const char *code)
{
	char got[32], err[160];

	assert_string_equal(f->type, "ERROR");
	assert_int_equal(drv_proto_get_text(f, "code", got, sizeof(got), err, sizeof(err)), 0);
	assert_string_equal(got, code);
}

static void hello(struct t *t, uint32_t seq)
{
	static const char *const fields[] = { "v=1", "max=4096", NULL };
	struct drv_proto_frame f;

	ask(t, seq, "HELLO", fields, &f);
	assert_string_equal(f.type, "HELLO");
}

/* BOOT: sent at every start, with a new boot id each time. */
/* The core's CRC-32 as the hosts build it (eight bytes at a time, BRD_CRC_SLICE8; the
 * firmware's 256- and 16-entry tables are checked by test_board_size.sh) is the one of
 * PROTOCOL.md: the check value, and the same result as the bit-by-bit definition for random
 * inputs at every alignment, whole and continued across any cut. */
static uint32_t crc32_bitwise(uint32_t crc, const uint8_t *p, size_t n)
{
	crc = ~crc;
	while (n--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = crc & 1 ? (crc >> 1) ^ 0xEDB88320u : crc >> 1;
	}
	return ~crc;
}

/* OpenSSL's compression (sha256_openssl.c), counting the blocks it is given. */
static size_t port_blocks;

static void counted_blocks(uint32_t h[8], const uint8_t *p, size_t n)
{
	port_blocks += n;
	sha256_openssl_blocks(h, p, n);
}

/* The core's SHA-256 against OpenSSL's: every length across the first blocks' boundaries,
 * in one update and in pieces of every size, and FIPS 180-2's long message; by blocks (NULL:
 * the core's own compression). */
static void sha256_cases(brd_sha256_blocks_fn *blocks)
{
	static uint8_t msg[1000000];
	uint8_t want[SHA256_DIGEST_LENGTH], got[32];
	struct brd_sha256 c;

	for (size_t i = 0; i < sizeof(msg); i++)
		msg[i] = (uint8_t)(i * 131 + 7);
	for (size_t n = 0; n <= 300; n++) {
		SHA256(msg, n, want);
		brd_sha256_with(blocks, msg, n, got);
		assert_memory_equal(got, want, 32);
		for (size_t piece = 1; piece <= 70 && piece <= n; piece += 3) {
			brd_sha256_init_with(&c, blocks);
			for (size_t off = 0; off < n; off += piece)
				brd_sha256_update(&c, msg + off, n - off < piece ? n - off : piece);
			brd_sha256_final(&c, got);
			assert_memory_equal(got, want, 32);
		}
	}
	memset(msg, 'a', sizeof(msg));
	brd_sha256_with(blocks, msg, sizeof(msg), got);
	assert_memory_equal(got, "\xcd\xc7\x6e\x5c\x99\x14\xfb\x92\x81\xa1\xc7\xe2\x84\xd7\x3e"
				 "\x67\xf1\x80\x9a\x48\xa4\x97\x20\x0e\x04\x6d\x39\xcc\xc7\x11"
				 "\x2c\xd0", 32);
}

/* The core's compression, then a platform's doing every block, the padding's too (55 bytes
 * take one, 56 two, a million 15,626); brd_sha256() and brd_sha256_init() stay the core's. */
static void test_sha256(void **state)
{
	static uint8_t m[1000000];
	uint8_t d[32];
	struct brd_sha256 c;

	(void)state;
	sha256_cases(NULL);
	port_blocks = 0;
	sha256_cases(counted_blocks);
	assert_true(port_blocks > 0);
	port_blocks = 0;
	brd_sha256_with(counted_blocks, m, 55, d);
	assert_int_equal(port_blocks, 1);
	brd_sha256_with(counted_blocks, m, 56, d);
	assert_int_equal(port_blocks, 3);
	brd_sha256_with(counted_blocks, m, sizeof(m), d);
	assert_int_equal(port_blocks, 3 + 15626);
	port_blocks = 0;
	brd_sha256(m, sizeof(m), d);
	brd_sha256_init(&c);
	brd_sha256_update(&c, m, 1000);
	brd_sha256_final(&c, d);
	assert_int_equal(port_blocks, 0);
}

static void test_crc32_table(void **state)
{
	uint8_t buf[600];
	uint32_t rng = 4242;

	(void)state;
	assert_int_equal(brd_crc32(0, "123456789", 9), 0xCBF43926u);
	assert_int_equal(brd_crc32(0, "", 0), 0);
	for (int round = 0; round < 2000; round++) {
		size_t n, cut;

		rng = rng * 1103515245u + 12345u;
		n = (rng >> 8) % sizeof(buf);
		for (size_t i = 0; i < n; i++) {
			rng = rng * 1103515245u + 12345u;
			buf[i] = (uint8_t)(rng >> 16);
		}
		cut = n ? (rng >> 4) % (n + 1) : 0;
		assert_int_equal(brd_crc32(0, buf, n), crc32_bitwise(0, buf, n));
		assert_int_equal(brd_crc32(brd_crc32(0, buf, cut), buf + cut, n - cut),
				 crc32_bitwise(0, buf, n));
		assert_int_equal(brd_crc32(0, buf + cut, n - cut),
				 crc32_bitwise(0, buf + cut, n - cut));
	}
	/* The tables follow their rule: table 0 is the bitwise CRC of a byte, table k's entry
	 * n is table k-1's shifted a byte and folded through table 0. */
	for (unsigned int v = 0; v < 256; v++) {
		uint8_t byte = (uint8_t)v;
		uint32_t prev = crc_table[v];

		assert_int_equal(crc_table[v], ~crc32_bitwise(0xFFFFFFFFu, &byte, 1));
		for (int k = 1; k < 8; k++) {
			assert_int_equal(crc_slice8[k - 1][v], (prev >> 8) ^ crc_table[prev & 0xFF]);
			prev = crc_slice8[k - 1][v];
		}
	}
}

/* What the core's decoder made of a stream: frame lines and error messages, in order. */
struct decoded {
	char text[8192];
	size_t len;
	unsigned int frames, errors;
};

static void decode_split(struct decoded *o, const char *data, size_t n, const size_t *cuts,
			 size_t ncuts)
{
	static struct brd_decoder d;
	size_t at = 0, i;

	memset(o, 0, sizeof(*o));
	brd_decoder_init(&d, 512);
	for (i = 0; i <= ncuts; i++) {
		size_t end = i < ncuts ? cuts[i] : n, pos = 0;
		struct brd_frame f;
		enum brd_dec_result r;

		while ((r = brd_decoder_run(&d, data + at, end - at, &pos, &f)) != BRD_DEC_NONE) {
			const char *s = r == BRD_DEC_FRAME ? f.line : d.err;
			size_t l = r == BRD_DEC_FRAME ? f.len : strlen(d.err);

			assert_true(o->len + l + 2 <= sizeof(o->text));
			o->text[o->len++] = r == BRD_DEC_FRAME ? 'F' : 'E';
			memcpy(o->text + o->len, s, l);
			o->len += l;
			o->text[o->len++] = '\n';
			o->frames += r == BRD_DEC_FRAME;
			o->errors += r == BRD_DEC_ERROR;
		}
		assert_int_equal(pos, end - at);
		at = end;
	}
}

/* The core's decoder takes ordinary bytes in bulk and the ones that matter one at a time:
 * any split of a damaged stream (a frame that lost its line end to the next marker, tildes
 * in frames and in the console, a marker after a marker, over-long frames ended by a marker
 * and by a line end) gives the same frames and errors as the whole stream. */
static void test_decoder_splits(void **state)
{
	char stream[4096], f[600], big[600];
	size_t n = 0, fl, cuts[64], ncuts, *all;
	struct decoded whole, part;
	uint32_t rng = 31337;

	(void)state;
	fl = build(f, 1, "HELLO", NULL);
	memcpy(stream + n, f, fl - 1); /* line end lost */
	n += fl - 1;
	n += build(stream + n, 2, "CSR", NULL);
	n += (size_t)sprintf(stream + n, "console ~ ~~ ~@P ~@Q text\r\n");
	fl = build(f, 3, "WRITE", NULL);
	memcpy(stream + n, f, 12);
	stream[n + 12] = '~'; /* a lone tilde inside a frame */
	memcpy(stream + n + 13, f + 12, fl - 12);
	n += fl + 1;
	memcpy(stream + n, "~@P1 Q 4 VERIFY ~@", 18); /* a marker after a marker */
	n += 18;
	fl = build(f, 5, "DONE", NULL);
	memcpy(stream + n, f + 2, fl - 2);
	n += fl - 2;
	memset(big, 'x', sizeof(big));
	big[200] = '~';
	n += (size_t)sprintf(stream + n, "%s", BRD_MARKER);
	memcpy(stream + n, big, sizeof(big)); /* over the 512-byte limit, then a marker */
	n += sizeof(big);
	n += build(stream + n, 6, "DONE", NULL);
	n += (size_t)sprintf(stream + n, "%s", BRD_MARKER);
	memcpy(stream + n, big, sizeof(big)); /* over the limit, then a line end */
	n += sizeof(big);
	n += (size_t)sprintf(stream + n, "\nlogin: ~");
	n += build(stream + n, 7, "BAUD", NULL);

	decode_split(&whole, stream, n, NULL, 0);
	assert_int_equal(whole.frames, 4);
	assert_int_equal(whole.errors, 5);
	for (int round = 0; round < 3000; round++) {
		ncuts = tu_random_cuts(&rng, n, 37, cuts, 64);
		decode_split(&part, stream, n, cuts, ncuts);
		assert_int_equal(part.len, whole.len);
		assert_memory_equal(part.text, whole.text, whole.len);
	}
	all = malloc(n * sizeof(*all));
	assert_non_null(all);
	for (size_t i = 0; i < n; i++)
		all[i] = i;
	decode_split(&part, stream, n, all, n);
	free(all);
	assert_int_equal(part.len, whole.len);
	assert_memory_equal(part.text, whole.text, whole.len);
}

static void test_boot(void **state)
{
	struct t *t = board_new(NULL, 0);
	char id1[24], id2[24];

	(void)state;
	assert_int_equal(t->plat.n, 1);
	assert_non_null(strstr(t->plat.out[0], "~@P1 E 0 BOOT "));
	memcpy(id1, strstr(t->plat.out[0], " boot=") + 6, 16);
	id1[16] = 0;
	brd_boot(&t->b, 5);
	memcpy(id2, strstr(last(t), " boot=") + 6, 16);
	id2[16] = 0;
	assert_string_not_equal(id1, id2);
	board_free(t);
	/* A board of version 7: the boot id and the firmware, no more. */
	t = board_new_proto(NULL, 0, 7);
	assert_int_equal(strncmp(t->plat.out[0], "~@P1 E 0 BOOT boot=", 19), 0);
	assert_int_equal(strncmp(t->plat.out[0] + 35, " fw=fw-1 ", 9), 0);
	assert_int_equal(t->plat.len[0], 53);
	board_free(t);
}

/* Every command but HELLO before HELLO: ERROR HELLO. Unknown commands: ERROR UNKNOWN. */
static void test_hello_first(void **state)
{
	static const char *const csr[] = { "cn=dev1", "alg=ec-p256", NULL };
	static const char *const types[] = { "CSR", "WRITE", "COMMIT", "VERIFY", "BAUD", "DONE" };
	struct t *t = board_new(NULL, 0);
	struct drv_proto_frame f;
	char v[64], err[160];
	unsigned int i;

	(void)state;
	for (i = 0; i < 6; i++) {
		ask(t, i + 1, types[i], csr, &f);
		want_error(&f, "HELLO");
	}
	ask(t, 7, "FROB", NULL, &f);
	want_error(&f, "UNKNOWN");
	hello(t, 8);
	ask(t, 8, "HELLO", (const char *const[]){ "v=1", "max=4096", NULL }, &f);
	assert_int_equal(drv_proto_get_text(&f, "dev", v, sizeof(v), err, sizeof(err)), 0);
	assert_string_equal(v, "");
	assert_int_equal(drv_proto_get_text(&f, "sn", v, sizeof(v), err, sizeof(err)), 0);
	assert_string_equal(v, "SN 1");
	assert_int_equal(drv_proto_get_text(&f, "bauds", v, sizeof(v), err, sizeof(err)), 0);
	assert_string_equal(v, "115200,460800,921600");
	ask(t, 9, "HELLO", (const char *const[]){ "v=9", NULL }, &f);
	want_error(&f, "VERSION");
	board_free(t);
}

/* A retransmitted request (same seq, same CRC) gets the kept answer byte for byte, marked
 * not fresh, and nothing is executed again; a new seq or another CRC is executed. Seq-0
 * answers to damaged frames are not kept. */
static void test_retransmission(void **state)
{
	static const char *const w[] = {
		"path=a.txt", "mode=0644", "size=5",
		"sha=2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824", "off=0",
		"data=aGVsbG8=", NULL,
	};
	struct t *t = board_new(NULL, 0);
	struct drv_proto_frame f;
	char first[4096], buf[4096];
	size_t n;
	unsigned int writes;

	(void)state;
	hello(t, 1);
	ask(t, 2, "WRITE", w, &f);
	assert_string_equal(f.type, "WRITE");
	strcpy(first, last(t));
	writes = t->mem.writes;
	n = build(buf, 2, "WRITE", w);
	feed(t, buf, n, 1, 1000);
	assert_string_equal(last(t), first);
	assert_int_equal(t->plat.fresh[(t->plat.n + 15) % 16], 0);
	assert_int_equal(t->mem.writes, writes);
	/* A damaged frame between: answered with seq 0 and not kept. */
	feed(t, "~@P1 Q 3 HELLO v=1 00000000\n", 28, 0, 1000);
	assert_non_null(strstr(last(t), "~@P1 A 0 ERROR code=FRAME text=bad%20CRC"));
	feed(t, buf, n, 0, 1000);
	assert_string_equal(last(t), first);
	/* Same seq, another CRC (a station that restarted): executed. */
	ask(t, 2, "COMMIT", NULL, &f);
	assert_string_equal(f.type, "COMMIT");
	board_free(t);
}

/* Damaged frames get an immediate seq-0 FRAME error naming what was wrong. */
static void test_frame_errors(void **state)
{
	char pct[256], kind[256];
	struct {
		const char *bytes, *text;
	} cases[] = {
		{ "~@P1 Q 1 HELLO v=1 12345678\n", "bad%20CRC" },
		{ "~@P1 Q 1 HELLO v=1 1234567\n", "CRC-32" },
		{ pct, "percent" },  /* a good CRC over a bad grammar */
		{ kind, "kind" },
		{ "~@P1 Q 1 HELLO v=1 ~@P1 ", "cut%20off" }, /* the next frame's marker */
	};
	struct t *t = board_new(NULL, 0);
	char buf[2048];
	unsigned int i, n;

	(void)state;
	build(pct, 1, "HELLO", (const char *const[]){ "v=%4", NULL });
	build(kind, 1, "HELLO", NULL);
	kind[5] = 'X';
	kind[strlen(kind) - 9] = 0;
	snprintf(kind + strlen(kind), 10, "%08X\n", drv_proto_crc32(0, kind, strlen(kind)));
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		n = t->plat.total;
		feed(t, cases[i].bytes, strlen(cases[i].bytes), i % 2, 1000);
		assert_int_equal(t->plat.total, n + 1);
		assert_non_null(strstr(last(t), "~@P1 A 0 ERROR code=FRAME"));
		if (!strstr(last(t), cases[i].text))
			fail_msg("case %u: %s", i, last(t));
	}
	feed(t, "\n", 1, 0, 1000);
	assert_non_null(strstr(last(t), "~@P1 A 0 ERROR code=FRAME"));
	/* Longer than the board's 1024: too long, then the next frame is heard. */
	memcpy(buf, "~@P1 Q 1 HELLO v=", 17);
	memset(buf + 17, 'x', 1500);
	buf[1517] = '\n';
	feed(t, buf, 1518, 0, 1000);
	assert_non_null(strstr(last(t), "frame%20longer%20than%201024"));
	/* Console noise around frames is ignored. */
	n = build(buf, 5, "HELLO", (const char *const[]){ "v=1", NULL });
	feed(t, "login: ", 7, 0, 1000);
	feed(t, buf, n, 1, 1000);
	assert_non_null(strstr(last(t), "~@P1 A 5 HELLO "));
	board_free(t);
}

/* BAUD: the answer leaves at the old rate, the switch comes with brd_tx_done; without a good
 * frame at the new rate within ms the board falls back; with one it stays. */
static void test_baud(void **state)
{
	static const char *const fast[] = { "rate=921600", "ms=500", NULL };
	struct t *t = board_new(NULL, 0);
	struct drv_proto_frame f;

	(void)state;
	hello(t, 1);
	ask(t, 2, "BAUD", (const char *const[]){ "rate=57600", NULL }, &f);
	want_error(&f, "BAUD");
	ask(t, 3, "BAUD", fast, &f);
	assert_string_equal(f.type, "BAUD");
	assert_int_equal(t->plat.nbauds, 0);
	brd_tx_done(&t->b, 2000);
	assert_int_equal(t->plat.nbauds, 1);
	assert_int_equal(t->plat.bauds[0], 921600);
	assert_int_equal(brd_baud(&t->b), 921600);
	assert_int_equal(brd_deadline(&t->b), 2500);
	brd_tick(&t->b, 2499);
	assert_int_equal(t->plat.nbauds, 1);
	brd_tick(&t->b, 2500);
	assert_int_equal(t->plat.nbauds, 2);
	assert_int_equal(t->plat.bauds[1], 115200);
	assert_int_equal(brd_baud(&t->b), 115200);
	assert_int_equal(t->plat.falls, 1);
	assert_int_equal(brd_deadline(&t->b), 0);
	/* Again, and a good request arrives at the new rate: no fallback. */
	ask(t, 4, "BAUD", fast, &f);
	brd_tx_done(&t->b, 3000);
	hello(t, 5);
	brd_tick(&t->b, 10000);
	assert_int_equal(t->plat.nbauds, 3);
	assert_int_equal(brd_baud(&t->b), 921600);
	assert_int_equal(t->plat.falls, 1);
	/* A reboot starts at the starting rate. */
	brd_boot(&t->b, 11000);
	assert_int_equal(brd_baud(&t->b), 115200);
	board_free(t);
}

/* Paths: the protocol's grammar and the configured prefixes; a refused path never reaches
 * storage. */
static void test_confinement(void **state)
{
	static const char *const bad[] = {
		"../etc/passwd", "/etc/passwd", "a/../b", ".hidden", "a/.x", "a//b", "a/", "",
		"a b", "a\\b", "a%b", "x/..",
	};
	static const char *const certs[] = { "/var/sota/certs" };
	static const char *const above[] = { "/var" };
	static const char *const sibling[] = { "/var/sotax", "/var/sota/certs/" };
	struct t *t = board_new(NULL, 0), *c = board_new(certs, 1), *a = board_new(above, 1),
		 *s = board_new(sibling, 2);
	struct drv_proto_frame f;
	char longpath[200], field[240];
	unsigned int i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_non_null(brd_path_refusal(&t->b, bad[i]));
	memset(longpath, 'a', 129);
	longpath[129] = 0;
	assert_non_null(brd_path_refusal(&t->b, longpath));
	longpath[128] = 0;
	assert_null(brd_path_refusal(&t->b, longpath));
	assert_null(brd_path_refusal(&t->b, "sub/dir/client.pem"));
	assert_null(brd_path_refusal(&c->b, "certs/client.pem"));
	assert_non_null(brd_path_refusal(&c->b, "client.pem"));
	assert_non_null(brd_path_refusal(&c->b, "certsx/client.pem"));
	assert_non_null(brd_path_refusal(&c->b, "certs"));
	assert_null(brd_path_refusal(&a->b, "client.pem"));
	assert_non_null(brd_path_refusal(&s->b, "client.pem"));
	assert_null(brd_path_refusal(&s->b, "certs/a"));
	/* Through WRITE: ERROR PATH, storage untouched. */
	hello(c, 1);
	snprintf(field, sizeof(field), "path=%s", "..%2Fetc%2Fpasswd");
	ask(c, 2, "WRITE", (const char *const[]){ field, "mode=0644", "size=0", "sha=E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855", "off=0", "data=", NULL }, &f);
	want_error(&f, "PATH");
	ask(c, 3, "WRITE", (const char *const[]){ "path=sota.toml", "mode=0644", "size=0", "sha=E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855", "off=0", "data=", NULL }, &f);
	want_error(&f, "PATH");
	assert_int_equal(c->mem.opens, 0);
	/* A mode that lets every user of the device write: ERROR FIELD, nothing opened. */
	for (unsigned i = 0; i < 4; i++) {
		static const char *const modes[] = { "mode=0666", "mode=0777", "mode=0002",
						     "mode=0646" };

		ask(c, 10 + i, "WRITE", (const char *const[]){ "path=certs/empty", modes[i], "size=0", "sha=E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855", "off=0", "data=", NULL }, &f);
		want_error(&f, "FIELD");
	}
	assert_int_equal(c->mem.opens, 0);
	ask(c, 4, "WRITE", (const char *const[]){ "path=certs/empty", "mode=0775", "size=0", "sha=E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855", "off=0", "data=", NULL }, &f);
	assert_string_equal(f.type, "WRITE");
	assert_int_equal(c->mem.opens, 1);
	board_free(t);
	board_free(c);
	board_free(a);
	board_free(s);
}

static void sha_hex(const void *data, size_t n, char out[65])
{
	uint8_t d[32];
	int i;

	SHA256(data, n, d);
	for (i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02X", d[i]);
}

/* WRITE in chunks, size limits, OFFSET, HASH, COMMIT and VERIFY with a proof of possession
 * that the station's check accepts; a full storage is STORAGE. */
/* The nonce of the VERIFY requests below: 32 bytes of 7. */
#define NONCE7 "nonce=BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="

/* The answer's sig is the board key's signature over the station's context and NONCE7. */
static void assert_pop(const struct t *t, const struct drv_proto_frame *f)
{
	uint8_t sig[80], msg[46];
	char err[160];
	size_t siglen;
	EVP_MD_CTX *md;

	assert_int_equal(drv_proto_get_b64(f, "sig", sig, sizeof(sig), &siglen, err, sizeof(err)), 0);
	memcpy(msg, "station-pop-v1", 14);
	memset(msg + 14, 7, 32);
	md = EVP_MD_CTX_new();
	assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, t->key.pkey), 1);
	assert_int_equal(EVP_DigestVerify(md, sig, siglen, msg, sizeof(msg)), 1);
	EVP_MD_CTX_free(md);
}

static void test_files(void **state)
{
	struct t *t = board_new(NULL, 0);
	struct drv_proto_frame f;
	char sha[65], fpath[40], fsize[24], fsha[80], foff[24], fdata[80], err[160], item[80];
	static const char content[] = "0123456789abcdefghij";
	char data[64];

	(void)state;
	hello(t, 1);
	ask(t, 2, "VERIFY", (const char *const[]){ "nonce=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", NULL }, &f);
	want_error(&f, "NOKEY");
	sha_hex(content, 20, sha);
	snprintf(fpath, sizeof(fpath), "path=dir/c.txt");
	snprintf(fsize, sizeof(fsize), "size=20");
	snprintf(fsha, sizeof(fsha), "sha=%s", sha);
	/* Over the limits. */
	ask(t, 3, "WRITE", (const char *const[]){ fpath, "mode=0644", "size=5000", fsha, "off=0", "data=", NULL }, &f);
	want_error(&f, "SIZE");
	/* 10 bytes, then a chunk past them, then the rest. */
	drv_b64_encode(data, content, 10);
	data[drv_b64_len(10)] = 0;
	snprintf(fdata, sizeof(fdata), "data=%s", data);
	ask(t, 4, "WRITE", (const char *const[]){ fpath, "mode=0644", fsize, fsha, "off=0", fdata, NULL }, &f);
	assert_int_equal(drv_proto_get_text(&f, "have", item, sizeof(item), err, sizeof(err)), 0);
	assert_string_equal(item, "10");
	ask(t, 5, "WRITE", (const char *const[]){ fpath, "mode=0644", fsize, fsha, "off=15", fdata, NULL }, &f);
	want_error(&f, "OFFSET");
	assert_int_equal(drv_proto_get_text(&f, "have", item, sizeof(item), err, sizeof(err)), 0);
	assert_string_equal(item, "10");
	ask(t, 6, "COMMIT", (const char *const[]){ "count=1", NULL }, &f);
	want_error(&f, "INCOMPLETE");
	/* Overlapping retransmission from 5: only the new bytes are written. */
	drv_b64_encode(data, content + 5, 15);
	data[drv_b64_len(15)] = 0;
	snprintf(fdata, sizeof(fdata), "data=%s", data);
	snprintf(foff, sizeof(foff), "off=5");
	ask(t, 7, "WRITE", (const char *const[]){ fpath, "mode=0644", fsize, fsha, foff, fdata, NULL }, &f);
	assert_string_equal(f.type, "WRITE");
	assert_int_equal(drv_proto_get_text(&f, "done", item, sizeof(item), err, sizeof(err)), 0);
	assert_string_equal(item, "1");
	/* A file whose bytes do not match its hash is dropped. */
	ask(t, 8, "WRITE", (const char *const[]){ "path=bad", "mode=0600", "size=2", fsha, "off=0", "data=aGk=", NULL }, &f);
	want_error(&f, "HASH");
	ask(t, 9, "COMMIT", (const char *const[]){ "count=1", NULL }, &f);
	assert_string_equal(f.type, "COMMIT");
	assert_int_equal(t->mem.gen, 1);
	assert_int_equal(memcmp(t->mem.files[0].data, content, 20), 0);
	/* VERIFY: the file as storage holds it, and a signature the station accepts. */
	ask(t, 10, "CSR", (const char *const[]){ "cn=dev1", "alg=ec-p256", NULL }, &f);
	ask(t, 11, "VERIFY", (const char *const[]){ NONCE7, NULL }, &f);
	assert_string_equal(f.type, "VERIFY");
	assert_int_equal(drv_proto_field_item(&f, drv_proto_find(&f, "file"), 2, item, sizeof(item), err, sizeof(err)), 0);
	assert_int_equal(strcasecmp(item, sha), 0);
	assert_pop(t, &f);
	/* A full disk. */
	t->mem.space = 3;
	ask(t, 12, "WRITE", (const char *const[]){ fpath, "mode=0644", "size=5", "sha=2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824", "off=0", "data=aGVsbG8=", NULL }, &f);
	want_error(&f, "STORAGE");
	assert_non_null(strstr(f.line, "no%20space"));
	board_free(t);
}

/* A field "key=value" with value the raw encoding of n bytes. */
static char *raw_field(char *out, const char *key, const void *data, size_t n)
{
	size_t k = strlen(key);

	memcpy(out, key, k);
	out[k] = '=';
	*brd_raw_put(out + k + 1, data, n) = 0;
	return out;
}

static uint64_t answer_uint(const struct drv_proto_frame *f, const char *key)
{
	char err[160];
	uint64_t v = 0;

	if (drv_proto_get_uint(f, key, 0, UINT64_MAX, &v, err, sizeof(err)) != 0)
		fail_msg("%s: %s", err, f->line);
	return v;
}

/* Version 2 (PROTOCOL.md 6): HELLO picks the highest common version; raw chunks carry every
 * byte value; later chunks go without the file's identity (OFFSET have=0 when nothing is
 * staged); copies from a file staged complete or installed, SOURCE when there is none or it
 * is too short; VERIFY's want answered by one sum; a version 1 board refuses all of it. */
/* A board given a platform's SHA-256 compression hashes by it: the file it checks on its
 * last chunk, the CSR it answers with; one given none never calls it. */
static void test_sha256_platform(void **state)
{
	uint8_t all[256];
	char sha[65], fsha[80], fa[1200];
	struct drv_proto_frame f;

	(void)state;
	for (unsigned int i = 0; i < 256; i++)
		all[i] = (uint8_t)(255 - i);
	sha_hex(all, 256, sha);
	snprintf(fsha, sizeof(fsha), "sha=%s", sha);
	for (int with = 1; with >= 0; with--) {
		struct t *t;

		board_blocks = with ? counted_blocks : NULL;
		t = board_new(NULL, 0);
		board_blocks = NULL;
		port_blocks = 0;
		ask(t, 1, "HELLO", (const char *const[]){ "v=1,2", "max=4096", NULL }, &f);
		ask(t, 2, "WRITE", (const char *const[]){ "path=a", "mode=0644", "size=256", fsha, "off=0", raw_field(fa, "raw", all, 256), NULL }, &f);
		assert_int_equal(answer_uint(&f, "done"), 1);
		ask(t, 3, "CSR", (const char *const[]){ "cn=dev-1", "alg=ec-p256", NULL }, &f);
		assert_string_equal(f.type, "CSR");
		if (with)
			assert_true(port_blocks >= 4 + 4);
		else
			assert_int_equal(port_blocks, 0);
		board_free(t);
	}
}

static void test_version2(void **state)
{
	struct t *t = board_new(NULL, 0), *old;
	struct drv_proto_frame f;
	char sha[65], fsha[80], fsz[24], fa[1200], fb[1200], err[160], item[80];
	uint8_t all[256], sumbuf[4 * DRV_PROTO_SUM_ITEM_MAX], d[32], got[32];
	const char *nonce = "nonce=BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
	size_t n = 0;
	unsigned int i;

	(void)state;
	for (i = 0; i < 256; i++)
		all[i] = (uint8_t)i;
	sha_hex(all, 256, sha);
	snprintf(fsha, sizeof(fsha), "sha=%s", sha);
	snprintf(fsz, sizeof(fsz), "size=256");
	ask(t, 1, "HELLO", (const char *const[]){ "v=1,2", "max=4096", NULL }, &f);
	assert_int_equal(answer_uint(&f, "v"), 2);
	/* Raw, in two chunks: the second without mode, size and sha. */
	ask(t, 2, "WRITE", (const char *const[]){ "path=a", "mode=0644", fsz, fsha, "off=0", raw_field(fa, "raw", all, 100), NULL }, &f);
	assert_string_equal(f.type, "WRITE");
	assert_int_equal(answer_uint(&f, "have"), 100);
	ask(t, 3, "WRITE", (const char *const[]){ "path=a", "off=100", raw_field(fa, "raw", all + 100, 156), NULL }, &f);
	assert_int_equal(answer_uint(&f, "done"), 1);
	assert_int_equal(memcmp(t->mem.staged[0].data, all, 256), 0);
	/* Continuation of nothing, identity in part, two chunks in one WRITE. */
	ask(t, 4, "WRITE", (const char *const[]){ "path=b", "off=10", "raw=x", NULL }, &f);
	want_error(&f, "OFFSET");
	assert_int_equal(answer_uint(&f, "have"), 0);
	ask(t, 5, "WRITE", (const char *const[]){ "path=a", "mode=0644", "off=100", "raw=x", NULL }, &f);
	want_error(&f, "FIELD");
	ask(t, 6, "WRITE", (const char *const[]){ "path=a", "off=0", "raw=x", "data=eA==", NULL }, &f);
	want_error(&f, "FIELD");
	/* Raw decoded in place before the copy was looked up hid it (and could walk off the
	 * line): every field is found first. */
	memset(fb, ' ', 100);
	ask(t, 6, "WRITE", (const char *const[]){ "path=a", "off=0", raw_field(fa, "raw", fb, 100), "copy=a,0,1", NULL }, &f);
	want_error(&f, "FIELD");
	/* A copy of the staged file a: b is bytes 16..256 of it, in two copies. */
	sha_hex(all + 16, 240, sha);
	snprintf(fb, sizeof(fb), "sha=%s", sha);
	ask(t, 7, "WRITE", (const char *const[]){ "path=b", "mode=0600", "size=240", fb, "off=0", "copy=a,16,200", NULL }, &f);
	assert_int_equal(answer_uint(&f, "have"), 200);
	/* Past the source's end, and from a file that is not there: SOURCE, have says where. */
	ask(t, 8, "WRITE", (const char *const[]){ "path=b", "off=200", "copy=a,230,40", NULL }, &f);
	want_error(&f, "SOURCE");
	assert_int_equal(answer_uint(&f, "have"), 200);
	ask(t, 9, "WRITE", (const char *const[]){ "path=b", "off=200", "copy=nothere,0,40", NULL }, &f);
	want_error(&f, "SOURCE");
	ask(t, 10, "WRITE", (const char *const[]){ "path=b", "off=200", "copy=a,216,40", NULL }, &f);
	assert_int_equal(answer_uint(&f, "done"), 1);
	ask(t, 11, "COMMIT", (const char *const[]){ "count=2", NULL }, &f);
	assert_string_equal(f.type, "COMMIT");
	assert_int_equal(t->mem.files[1].len, 240);
	assert_int_equal(memcmp(t->mem.files[1].data, all + 16, 240), 0);
	/* A copy from an installed file, in a new session. */
	ask(t, 12, "WRITE", (const char *const[]){ "path=c", "mode=0600", "size=240", fb, "off=0", "copy=b,0,240", NULL }, &f);
	assert_int_equal(answer_uint(&f, "done"), 1);
	/* VERIFY with want: the sum over a, b and a path not installed; no file list. */
	ask(t, 13, "CSR", (const char *const[]){ "cn=dev1", "alg=ec-p256", NULL }, &f);
	ask(t, 14, "VERIFY", (const char *const[]){ nonce, "want=a,b,none", NULL }, &f);
	assert_string_equal(f.type, "VERIFY");
	assert_false(drv_proto_has(&f, "file"));
	assert_non_null(drv_proto_find(&f, "sig"));
	assert_int_equal(drv_proto_get_hex(&f, "sum", got, 32, err, sizeof(err)), 0);
	SHA256(all, 256, d);
	n += drv_proto_sum_item(sumbuf + n, "a", 256, d);
	SHA256(all + 16, 240, d);
	n += drv_proto_sum_item(sumbuf + n, "b", 240, d);
	n += drv_proto_sum_item(sumbuf + n, "none", 0, NULL);
	SHA256(sumbuf, n, d);
	assert_memory_equal(got, d, 32);
	/* The sum follows storage: a byte changed on the board changes it. */
	t->mem.files[0].data[3] ^= 1;
	ask(t, 15, "VERIFY", (const char *const[]){ nonce, "want=a,b,none", NULL }, &f);
	assert_int_equal(drv_proto_get_hex(&f, "sum", got, 32, err, sizeof(err)), 0);
	assert_memory_not_equal(got, d, 32);
	board_free(t);

	/* A board of version 1 answers v=1 and knows none of it. */
	old = board_new_proto(NULL, 0, 1);
	ask(old, 1, "HELLO", (const char *const[]){ "v=1,2", NULL }, &f);
	assert_int_equal(answer_uint(&f, "v"), 1);
	ask(old, 2, "WRITE", (const char *const[]){ "path=a", "mode=0644", fsz, fsha, "off=0", raw_field(fa, "raw", all, 100), NULL }, &f);
	want_error(&f, "FIELD");
	ask(old, 3, "WRITE", (const char *const[]){ "path=a", "off=100", "data=eA==", NULL }, &f);
	want_error(&f, "FIELD");
	ask(old, 4, "CSR", (const char *const[]){ "cn=dev1", "alg=ec-p256", NULL }, &f);
	ask(old, 5, "VERIFY", (const char *const[]){ nonce, "want=a", NULL }, &f);
	assert_string_equal(f.type, "VERIFY");
	assert_false(drv_proto_has(&f, "sum"));
	(void)item;
	board_free(old);
}

/* The CSR a CSR answer carries (its DER in der, n bytes), parsed whole; it is for key. */
static X509_REQ *csr_of(const struct drv_proto_frame *f, uint8_t *der, size_t cap, size_t *n,
			EVP_PKEY *key)
{
	const unsigned char *p = der;
	char err[160];
	X509_REQ *req;
	EVP_PKEY *pub;

	assert_int_equal(drv_proto_get_b64(f, "data", der, cap, n, err, sizeof(err)), 0);
	req = d2i_X509_REQ(NULL, &p, (long)*n);
	assert_non_null(req);
	assert_int_equal(p - der, (long)*n);
	pub = X509_REQ_get_pubkey(req);
	assert_int_equal(EVP_PKEY_eq(pub, key), 1);
	EVP_PKEY_free(pub);
	return req;
}

/* Version 3 (PROTOCOL.md 7): the WRITE that completes the last file carries COMMIT (commit=)
 * and VERIFY's fields, COMMIT carries VERIFY's: one answer with the fields of each step done.
 * A folded step that cannot be done (the file not complete, no key, a count that differs,
 * storage or the key failing) is left out of the answer, which is then that of the steps
 * done; a request's own failure is its ERROR, nothing folded run. A retransmission gets the
 * whole answer again without running anything; a session of version 2 ignores the folds. */
static void test_version3(void **state)
{
	static const char *const hello_sha = "sha=2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824";
	static const char *const wb[] = { "path=b", "mode=0644", "size=5", hello_sha, "off=0", "raw=hello", "commit=1", NONCE7, "want=a,b", NULL };
	struct t *t = board_new(NULL, 0), *old;
	struct drv_proto_frame f;
	uint8_t sumbuf[2 * DRV_PROTO_SUM_ITEM_MAX], d[32], got[32];
	char kept[4096], buf[4096], err[160];
	size_t n = 0;

	(void)state;
	ask(t, 1, "HELLO", (const char *const[]){ "v=1,2,3", "max=4096", NULL }, &f);
	assert_int_equal(answer_uint(&f, "v"), 3);
	/* commit on a chunk that does not complete its file: WRITE's answer, nothing installed. */
	ask(t, 2, "WRITE", (const char *const[]){ "path=a", "mode=0644", "size=5", hello_sha, "off=0", "raw=hel", "commit=1", NONCE7, "want=a", NULL }, &f);
	assert_string_equal(f.type, "WRITE");
	assert_int_equal(answer_uint(&f, "have"), 3);
	assert_false(drv_proto_has(&f, "gen"));
	assert_false(drv_proto_has(&f, "sig"));
	assert_int_equal(t->mem.gen, 0);
	/* The chunk that completes it: committed; no key yet, so no VERIFY. */
	ask(t, 3, "WRITE", (const char *const[]){ "path=a", "off=3", "raw=lo", "commit=1", NONCE7, "want=a", NULL }, &f);
	assert_string_equal(f.type, "WRITE");
	assert_int_equal(answer_uint(&f, "done"), 1);
	assert_int_equal(answer_uint(&f, "gen"), 1);
	assert_int_equal(answer_uint(&f, "files"), 1);
	assert_false(drv_proto_has(&f, "sig"));
	assert_int_equal(t->mem.gen, 1);
	/* With a key: WRITE, COMMIT and VERIFY (the sum of a and b, the proof of possession). */
	ask(t, 4, "CSR", (const char *const[]){ "cn=dev1", "alg=ec-p256", NULL }, &f);
	ask(t, 5, "WRITE", wb, &f);
	assert_string_equal(f.type, "WRITE");
	assert_int_equal(answer_uint(&f, "done"), 1);
	assert_int_equal(answer_uint(&f, "gen"), 2);
	assert_int_equal(answer_uint(&f, "files"), 2);
	assert_pop(t, &f);
	assert_int_equal(drv_proto_get_hex(&f, "sum", got, 32, err, sizeof(err)), 0);
	SHA256((const uint8_t *)"hello", 5, d);
	n += drv_proto_sum_item(sumbuf + n, "a", 5, d);
	n += drv_proto_sum_item(sumbuf + n, "b", 5, d);
	SHA256(sumbuf, n, d);
	assert_memory_equal(got, d, 32);
	assert_false(drv_proto_has(&f, "file"));
	/* Sent again: the whole answer again, nothing run again. */
	snprintf(kept, sizeof(kept), "%s", last(t));
	t->mem.gen = 7;
	n = build(buf, 5, "WRITE", wb);
	feed(t, buf, n, 0, 1000);
	assert_string_equal(last(t), kept);
	assert_int_equal(t->plat.fresh[(t->plat.n + 15) % 16], 0);
	assert_int_equal(t->mem.gen, 7);
	t->mem.gen = 2;
	/* COMMIT with nothing staged and VERIFY's fields without want: the list. */
	ask(t, 6, "COMMIT", (const char *const[]){ "count=0", NONCE7, "from=1", NULL }, &f);
	assert_string_equal(f.type, "COMMIT");
	assert_int_equal(answer_uint(&f, "gen"), 2);
	assert_int_equal(answer_uint(&f, "from"), 1);
	assert_pop(t, &f);
	assert_non_null(drv_proto_find(&f, "file"));
	assert_null(drv_proto_find_next(&f, drv_proto_find(&f, "file"), "file"));
	/* Storage fails the commit: WRITE's answer alone; COMMIT alone gets the ERROR. */
	t->mem.commit_rc = BRD_ERR_IO;
	ask(t, 7, "WRITE", (const char *const[]){ "path=c", "mode=0644", "size=5", hello_sha, "off=0", "raw=hello", "commit=1", NONCE7, NULL }, &f);
	assert_string_equal(f.type, "WRITE");
	assert_int_equal(answer_uint(&f, "done"), 1);
	assert_false(drv_proto_has(&f, "gen"));
	assert_false(drv_proto_has(&f, "sig"));
	ask(t, 8, "COMMIT", (const char *const[]){ "count=1", NULL }, &f);
	want_error(&f, "STORAGE");
	t->mem.commit_rc = 0;
	/* A count that differs, or is no number: no commit. */
	ask(t, 9, "WRITE", (const char *const[]){ "path=d", "mode=0644", "size=5", hello_sha, "off=0", "raw=hello", "commit=5", NULL }, &f);
	assert_int_equal(answer_uint(&f, "done"), 1);
	assert_false(drv_proto_has(&f, "gen"));
	ask(t, 10, "WRITE", (const char *const[]){ "path=d", "off=0", "raw=hello", "commit=two", NULL }, &f);
	assert_int_equal(answer_uint(&f, "done"), 1);
	assert_false(drv_proto_has(&f, "gen"));
	assert_int_equal(t->mem.gen, 2);
	/* The key fails to sign: COMMIT's answer alone; VERIFY alone gets the ERROR. */
	t->key.sign_rc = BRD_ERR_CRYPTO;
	ask(t, 11, "COMMIT", (const char *const[]){ "count=2", NONCE7, NULL }, &f);
	assert_string_equal(f.type, "COMMIT");
	assert_int_equal(answer_uint(&f, "gen"), 3);
	assert_int_equal(answer_uint(&f, "files"), 4);
	assert_false(drv_proto_has(&f, "sig"));
	ask(t, 12, "VERIFY", (const char *const[]){ NONCE7, NULL }, &f);
	want_error(&f, "INTERNAL");
	t->key.sign_rc = 0;
	/* The WRITE's own failure: its ERROR, nothing committed. */
	ask(t, 13, "WRITE", (const char *const[]){ "path=e", "mode=0644", "size=2", hello_sha, "off=0", "raw=hi", "commit=1", NONCE7, NULL }, &f);
	want_error(&f, "HASH");
	ask(t, 14, "WRITE", (const char *const[]){ "path=e", "mode=0644", "size=5", hello_sha, "off=0", "raw=hello", "commit=1", "nonce=AAAA", NULL }, &f);
	assert_int_equal(answer_uint(&f, "gen"), 4);
	assert_false(drv_proto_has(&f, "sig"));
	board_free(t);

	/* A session of version 2 on this board: the folds are unknown fields, ignored. */
	t = board_new(NULL, 0);
	ask(t, 1, "HELLO", (const char *const[]){ "v=1,2", NULL }, &f);
	assert_int_equal(answer_uint(&f, "v"), 2);
	ask(t, 2, "CSR", (const char *const[]){ "cn=dev1", "alg=ec-p256", NULL }, &f);
	ask(t, 3, "WRITE", wb, &f);
	assert_int_equal(answer_uint(&f, "done"), 1);
	assert_false(drv_proto_has(&f, "gen"));
	assert_int_equal(t->mem.gen, 0);
	ask(t, 4, "COMMIT", (const char *const[]){ "count=1", NONCE7, NULL }, &f);
	assert_int_equal(answer_uint(&f, "gen"), 1);
	assert_false(drv_proto_has(&f, "sig"));
	board_free(t);
	/* A board of version 2 answers v=2 to a station of version 3. */
	old = board_new_proto(NULL, 0, 2);
	ask(old, 1, "HELLO", (const char *const[]){ "v=1,2,3", NULL }, &f);
	assert_int_equal(answer_uint(&f, "v"), 2);
	board_free(old);
}

/* Version 4: a WRITE's copy followed by raw or base64 bytes, the chunk their bytes in that
 * order. Retransmissions with part of the chunk staged write only the rest, a missing
 * source refuses the whole chunk (nothing staged), the chunk may complete the last file and
 * carry COMMIT; sessions of version 3 and before refuse the pair. */
static void test_version4(void **state)
{
	struct t *t = board_new(NULL, 0), *old;
	struct drv_proto_frame f;
	char sha[65], fsha[80], fa[1200], fd[1200], want[256];
	uint8_t all[256], tail[64], exp[256];
	unsigned int i;

	(void)state;
	for (i = 0; i < 256; i++)
		all[i] = (uint8_t)i;
	for (i = 0; i < sizeof(tail); i++)
		tail[i] = (uint8_t)('A' + i % 26);
	sha_hex(all, 256, sha);
	snprintf(fsha, sizeof(fsha), "sha=%s", sha);
	ask(t, 1, "HELLO", (const char *const[]){ "v=1,2,3,4", "max=4096", NULL }, &f);
	assert_int_equal(answer_uint(&f, "v"), 4);
	ask(t, 2, "WRITE", (const char *const[]){ "path=a", "mode=0644", "size=256", fsha, "off=0", raw_field(fa, "raw", all, 128), NULL }, &f);
	ask(t, 12, "WRITE", (const char *const[]){ "path=a", "off=128", raw_field(fa, "raw", all + 128, 128), NULL }, &f);
	assert_int_equal(answer_uint(&f, "done"), 1);

	/* b: bytes 16..216 of a, then 56 of tail, in one WRITE. */
	memcpy(exp, all + 16, 200);
	memcpy(exp + 200, tail, 56);
	sha_hex(exp, 256, sha);
	snprintf(fsha, sizeof(fsha), "sha=%s", sha);
	ask(t, 3, "WRITE", (const char *const[]){ "path=b", "mode=0644", "size=256", fsha, "off=0", "copy=a,16,200", raw_field(fa, "raw", tail, 56), NULL }, &f);
	assert_string_equal(f.type, "WRITE");
	assert_int_equal(answer_uint(&f, "have"), 256);
	assert_int_equal(answer_uint(&f, "done"), 1);
	assert_memory_equal(t->mem.staged[1].data, exp, 256);

	/* c (the same bytes as b), with 100 staged: the copy's last 100 and the bytes. With
	 * base64 this time. */
	ask(t, 4, "WRITE", (const char *const[]){ "path=c", "mode=0644", "size=256", fsha, "off=0", raw_field(fa, "raw", exp, 100), NULL }, &f);
	assert_int_equal(answer_uint(&f, "have"), 100);
	snprintf(fd, sizeof(fd), "data=");
	fd[5 + drv_b64_encode(fd + 5, tail, 56)] = 0;
	ask(t, 5, "WRITE", (const char *const[]){ "path=c", "off=0", "copy=a,16,200", fd, NULL }, &f);
	assert_int_equal(answer_uint(&f, "done"), 1);
	assert_memory_equal(t->mem.staged[2].data, exp, 256);

	/* d, with 230 staged: past the copy, only the bytes' last 26. */
	ask(t, 6, "WRITE", (const char *const[]){ "path=d", "mode=0644", "size=256", fsha, "off=0", raw_field(fa, "raw", exp, 230), NULL }, &f);
	ask(t, 7, "WRITE", (const char *const[]){ "path=d", "off=0", "copy=a,16,200", raw_field(fa, "raw", tail, 56), NULL }, &f);
	assert_int_equal(answer_uint(&f, "have"), 256);
	assert_int_equal(answer_uint(&f, "done"), 1);
	assert_memory_equal(t->mem.staged[3].data, exp, 256);

	/* No source: SOURCE, and nothing of the bytes after it staged. */
	ask(t, 8, "WRITE", (const char *const[]){ "path=e", "mode=0644", "size=256", fsha, "off=0", "copy=nothere,16,200", raw_field(fa, "raw", tail, 56), NULL }, &f);
	want_error(&f, "SOURCE");
	assert_int_equal(answer_uint(&f, "have"), 0);
	/* A copy with both raw and data, and bytes beyond the file: refused. */
	ask(t, 9, "WRITE", (const char *const[]){ "path=e", "off=0", "copy=a,16,200", "raw=x", "data=eA==", NULL }, &f);
	want_error(&f, "FIELD");
	ask(t, 10, "WRITE", (const char *const[]){ "path=e", "off=0", "copy=a,0,256", "raw=x", NULL }, &f);
	want_error(&f, "SIZE");

	/* The chunk that completes the last file carries COMMIT. */
	ask(t, 11, "WRITE", (const char *const[]){ "path=e", "off=0", "copy=a,16,200", raw_field(fa, "raw", tail, 56), "commit=5", NULL }, &f);
	assert_int_equal(answer_uint(&f, "done"), 1);
	assert_int_equal(answer_uint(&f, "gen"), 1);
	assert_int_equal(answer_uint(&f, "files"), 5);
	for (i = 1; i < 5; i++)
		assert_memory_equal(t->mem.files[i].data, exp, 256);
	board_free(t);

	/* A session of version 3 (a board of version 4 asked so, and a board of version 3)
	 * refuses a copy with bytes. */
	for (i = 0; i < 2; i++) {
		old = i ? board_new_proto(NULL, 0, 3) : board_new(NULL, 0);
		ask(old, 1, "HELLO", (const char *const[]){ i ? "v=1,2,3,4" : "v=1,2,3", "max=4096", NULL }, &f);
		assert_int_equal(answer_uint(&f, "v"), 3);
		ask(old, 2, "WRITE", (const char *const[]){ "path=a", "mode=0644", "size=256", fsha, "off=0", "copy=a,0,1", "raw=x", NULL }, &f);
		want_error(&f, "FIELD");
		ask(old, 3, "HELLO", (const char *const[]){ "v=4", NULL }, &f);
		if (i) {
			want_error(&f, "VERSION");
			assert_int_equal(drv_proto_get_text(&f, "text", want, sizeof(want), NULL, 0), 0);
			assert_string_equal(want, "this board speaks protocol versions 1 to 3");
		}
		board_free(old);
	}
}

/* The PEM block a version 5 board writes for text t[0..n): BEGIN, lines of 64, END. */
static size_t pem_of(const char *t, size_t n, char *out)
{
	size_t o = 0, i;

	o += (size_t)sprintf(out + o, "-----BEGIN CERTIFICATE-----\n");
	for (i = 0; i < n; i += 64)
		o += (size_t)sprintf(out + o, "%.*s\n", (int)(n - i < 64 ? n - i : 64), t + i);
	o += (size_t)sprintf(out + o, "-----END CERTIFICATE-----\n");
	return o;
}

/* Version 5: pem carries a certificate's PEM block as its text, which the board writes out
 * whole (through a buffer smaller than the block): texts of 1, 64, 65 and 700 characters;
 * a retransmission with part of the block staged (in a line, at a line feed, in the END
 * line) writes only the rest; a copy then a PEM block in one chunk; a text with a character
 * that is not base64, or none, is refused, and a session of version 4 does not read it. */
static void test_version5(void **state)
{
	static const size_t lens[] = { 1, 64, 65, 700 };
	/* Bytes staged before the pem WRITE: none (the block is 56 bytes), at the line feed of
	 * a full line, in the END line, in the fourth line. */
	static const size_t skips[] = { 56, 28 + 64, 28 + 65 + 2 + 5, 28 + 65 * 3 + 10 };
	struct t *t = board_new(NULL, 0), *old;
	struct drv_proto_frame f;
	char text[701], pem[1000], fsha[80], fsz[24], fp[800], fa[3000], path[16], sha[65];
	size_t plen, i, k;
	unsigned int seq = 2, slot = 0;

	(void)state;
	for (i = 0; i < 700; i++)
		text[i] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[i * 7 % 64];
	text[699] = '=';
	ask(t, 1, "HELLO", (const char *const[]){ "v=1,2,3,4,5", "max=4096", NULL }, &f);
	assert_int_equal(answer_uint(&f, "v"), 5);
	for (k = 0; k < 4; k++) {
		plen = pem_of(text + 700 - lens[k], lens[k], pem);
		sha_hex(pem, plen, sha);
		snprintf(fsha, sizeof(fsha), "sha=%s", sha);
		snprintf(fsz, sizeof(fsz), "size=%zu", plen);
		snprintf(fp, sizeof(fp), "pem=%.*s", (int)lens[k], text + 700 - lens[k]);
		/* Whole, then (into another path) after part of it went as raw. */
		snprintf(path, sizeof(path), "path=p%zu", k);
		ask(t, seq++, "WRITE", (const char *const[]){ path, "mode=0644", fsz, fsha, "off=0", fp, NULL }, &f);
		assert_int_equal(answer_uint(&f, "have"), plen);
		assert_int_equal(answer_uint(&f, "done"), 1);
		assert_int_equal(t->mem.staged[slot].len, plen);
		assert_memory_equal(t->mem.staged[slot].data, pem, plen);
		slot++;
		if (skips[k] >= plen)
			continue;
		snprintf(path, sizeof(path), "path=q%zu", k);
		ask(t, seq++, "WRITE", (const char *const[]){ path, "mode=0644", fsz, fsha, "off=0", raw_field(fa, "raw", pem, skips[k]), NULL }, &f);
		assert_int_equal(answer_uint(&f, "have"), skips[k]);
		ask(t, seq++, "WRITE", (const char *const[]){ path, "off=0", fp, NULL }, &f);
		assert_int_equal(answer_uint(&f, "done"), 1);
		assert_memory_equal(t->mem.staged[slot].data, pem, plen);
		slot++;
	}
	/* A copy of p1 (a PEM block of one line) then the block of 700: one chunk. */
	{
		char both[2000];
		size_t l1 = pem_of(text + 636, 64, both), l2 = pem_of(text, 700, both + l1);
		char csrc[40];

		sha_hex(both, l1 + l2, sha);
		snprintf(fsha, sizeof(fsha), "sha=%s", sha);
		snprintf(fsz, sizeof(fsz), "size=%zu", l1 + l2);
		snprintf(csrc, sizeof(csrc), "copy=p1,0,%zu", l1);
		snprintf(fp, sizeof(fp), "pem=%.*s", 700, text);
		ask(t, seq++, "WRITE", (const char *const[]){ "path=c", "mode=0644", fsz, fsha, "off=0", csrc, fp, NULL }, &f);
		assert_int_equal(answer_uint(&f, "done"), 1);
		assert_memory_equal(t->mem.staged[slot].data, both, l1 + l2);
	}
	/* Not a certificate's text: refused, nothing staged. */
	ask(t, seq++, "WRITE", (const char *const[]){ "path=x", "mode=0644", "size=60", fsha, "off=0", "pem=AB-CD", NULL }, &f);
	want_error(&f, "FIELD");
	ask(t, seq++, "WRITE", (const char *const[]){ "path=x", "mode=0644", "size=60", fsha, "off=0", "pem=", NULL }, &f);
	want_error(&f, "FIELD");
	ask(t, seq++, "WRITE", (const char *const[]){ "path=x", "mode=0644", "size=60", fsha, "off=0", "pem=QUJD", "raw=x", NULL }, &f);
	want_error(&f, "FIELD");
	board_free(t);

	/* A session of version 4 does not read pem: the WRITE has no chunk. */
	old = board_new(NULL, 0);
	ask(old, 1, "HELLO", (const char *const[]){ "v=1,2,3,4", "max=4096", NULL }, &f);
	assert_int_equal(answer_uint(&f, "v"), 4);
	ask(old, 2, "WRITE", (const char *const[]){ "path=a", "mode=0644", fsz, fsha, "off=0", fp, NULL }, &f);
	want_error(&f, "FIELD");
	board_free(old);
}

/* Version 6: several files in one WRITE, one part a file (PROTOCOL.md 10). */
static void test_version6(void **state)
{
	static const char *const hello_sha = "sha=2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824";
	/* b copies a (staged by the part before it), then its own bytes. */
	static const char *const three[] = { "path=a", "mode=0644", "size=5", hello_sha, "off=0", "raw=hello",
		"path=b", "mode=0600", "size=5", hello_sha, "off=0", "copy=a,0,3", "raw=lo",
		"path=c", "mode=0644", "size=5", hello_sha, "off=0", "data=aGVsbG8=", "commit=3", NONCE7, "want=a,b,c", NULL };
	struct t *t = board_new(NULL, 0), *old;
	struct drv_proto_frame f, part;
	char kept[4096], buf[4096], many[40 * 20];
	const char *fields[3 * 20 + 1];
	size_t n, i;

	(void)state;
	ask(t, 1, "HELLO", (const char *const[]){ "v=1,2,3,4,5,6", "max=4096", NULL }, &f);
	assert_int_equal(answer_uint(&f, "v"), 6);
	ask(t, 2, "CSR", (const char *const[]){ "cn=dev1", "alg=ec-p256", NULL }, &f);
	/* Three files, COMMIT and VERIFY: a part each in the answer, in order, then theirs. */
	ask(t, 3, "WRITE", three, &f);
	assert_string_equal(f.type, "WRITE");
	assert_int_equal(drv_proto_part(&f, "path", 0, &part), 3);
	for (i = 0; i < 3; i++) {
		char want[8];

		drv_proto_part(&f, "path", (unsigned int)i, &part);
		assert_int_equal(drv_proto_get_text(&part, "path", want, sizeof(want), NULL, 0), 0);
		assert_int_equal(want[0], 'a' + (int)i);
		assert_int_equal(answer_uint(&part, "have"), 5);
		assert_int_equal(answer_uint(&part, "done"), 1);
	}
	assert_int_equal(answer_uint(&f, "gen"), 1);
	assert_int_equal(answer_uint(&f, "files"), 3);
	assert_pop(t, &f);
	assert_int_equal(t->mem.nfiles, 3);
	for (i = 0; i < 3; i++) {
		assert_int_equal(t->mem.files[i].len, 5);
		assert_memory_equal(t->mem.files[i].data, "hello", 5);
	}
	/* Sent again: the answer kept, nothing written again. */
	snprintf(kept, sizeof(kept), "%s", last(t));
	n = build(buf, 3, "WRITE", three);
	feed(t, buf, n, 0, 1000);
	assert_string_equal(last(t), kept);
	/* The second part refused (its hash): ERROR alone; the first is staged, the third not
	 * looked at. */
	ask(t, 4, "WRITE", (const char *const[]){ "path=d", "mode=0644", "size=5", hello_sha, "off=0", "raw=hello",
		"path=e", "mode=0644", "size=5", hello_sha, "off=0", "raw=HELLO",
		"path=f", "mode=0644", "size=5", hello_sha, "off=0", "raw=hello", NULL }, &f);
	want_error(&f, "HASH");
	assert_true(t->mem.open[0]);
	assert_int_equal(t->mem.staged[0].len, 5);
	assert_false(t->mem.open[1]);
	assert_false(t->mem.open[2]);
	/* Each alone again: d is there, e is written, f too. */
	ask(t, 5, "WRITE", (const char *const[]){ "path=d", "mode=0644", "size=5", hello_sha, "off=0", "raw=hello", NULL }, &f);
	assert_int_equal(answer_uint(&f, "done"), 1);
	ask(t, 6, "WRITE", (const char *const[]){ "path=e", "mode=0644", "size=5", hello_sha, "off=0", "raw=hello",
		"path=f", "mode=0644", "size=5", hello_sha, "off=0", "raw=hel", NULL }, &f);
	assert_int_equal(drv_proto_part(&f, "path", 1, &part), 2);
	assert_int_equal(answer_uint(&part, "have"), 3);
	assert_int_equal(answer_uint(&part, "done"), 0);
	/* A part without identity for a file not staged: ERROR OFFSET (have 0), alone. */
	ask(t, 7, "WRITE", (const char *const[]){ "path=e", "off=0", "raw=hello", "path=g", "off=2", "raw=lo", NULL }, &f);
	want_error(&f, "OFFSET");
	assert_int_equal(answer_uint(&f, "have"), 0);
	/* A later part may be a later chunk of a file staged (no identity). */
	ask(t, 8, "WRITE", (const char *const[]){ "path=e", "off=0", "raw=hello", "path=f", "off=3", "raw=lo", NULL }, &f);
	assert_int_equal(drv_proto_part(&f, "path", 1, &part), 2);
	assert_int_equal(answer_uint(&part, "done"), 1);
	/* More parts than the board stages files: refused before any is looked at. */
	for (i = 0, n = 0; i < BRD_MAX_STAGED + 1; i++) {
		snprintf(many + i * 40, 40, "path=m%zu", i);
		fields[n++] = many + i * 40;
		fields[n++] = "off=0";
		fields[n++] = "raw=a";
	}
	fields[n] = NULL;
	ask(t, 9, "WRITE", fields, &f);
	want_error(&f, "SIZE");
	board_free(t);

	/* A session of version 5 reads the first of each field: one file, the first. */
	old = board_new(NULL, 0);
	ask(old, 1, "HELLO", (const char *const[]){ "v=1,2,3,4,5", "max=4096", NULL }, &f);
	assert_int_equal(answer_uint(&f, "v"), 5);
	ask(old, 2, "WRITE", (const char *const[]){ "path=a", "mode=0644", "size=5", hello_sha, "off=0", "raw=hello",
		"path=b", "mode=0644", "size=5", hello_sha, "off=0", "raw=hello", NULL }, &f);
	assert_int_equal(drv_proto_part(&f, "path", 0, &part), 1);
	assert_int_equal(old->mem.staged[1].len, 0);
	board_free(old);
}

/* CSR: a real PKCS#10 request with the subject asked for, the same bytes when asked again,
 * a new one for another subject; regen refused on a provisioned board. */
static void test_csr(void **state)
{
	static const char *const ask1[] = { "cn=dev%201", "ou=Factory%20A", "bc=production", "alg=ec-p256", NULL };
	struct t *t = board_new(NULL, 0);
	struct drv_proto_frame f;
	uint8_t der[1024], der2[1024];
	size_t n, n2, got;
	char err[160], name[256];
	X509_REQ *req;

	(void)state;
	hello(t, 1);
	ask(t, 2, "CSR", (const char *const[]){ "cn=x", "alg=rsa-2048", NULL }, &f);
	want_error(&f, "ALG");
	ask(t, 3, "CSR", ask1, &f);
	assert_string_equal(f.type, "CSR");
	req = csr_of(&f, der, sizeof(der), &n, t->key.pkey);
	assert_int_equal(t->key.generated, 1);
	assert_int_equal(X509_REQ_verify(req, t->key.pkey), 1);
	X509_NAME_oneline(X509_REQ_get_subject_name(req), name, sizeof(name));
	assert_string_equal(name, "/CN=dev 1/OU=Factory A/businessCategory=production");
	assert_int_equal(ASN1_STRING_type(X509_NAME_ENTRY_get_data(
				 X509_NAME_get_entry(X509_REQ_get_subject_name(req), 0))),
			 V_ASN1_UTF8STRING);
	X509_REQ_free(req);
	/* Again (another seq): the same bytes; a chunk from an offset. */
	ask(t, 4, "CSR", ask1, &f);
	assert_int_equal(drv_proto_get_b64(&f, "data", der2, sizeof(der2), &n2, err, sizeof(err)), 0);
	assert_int_equal(n2, n);
	assert_memory_equal(der, der2, n);
	ask(t, 5, "CSR", (const char *const[]){ "cn=dev%201", "ou=Factory%20A", "bc=production", "alg=ec-p256", "off=100", NULL }, &f);
	assert_int_equal(drv_proto_get_b64(&f, "data", der2, sizeof(der2), &got, err, sizeof(err)), 0);
	assert_memory_equal(der + 100, der2, got);
	ask(t, 6, "CSR", (const char *const[]){ "cn=dev%201", "alg=ec-p256", "off=5000", NULL }, &f);
	want_error(&f, "FIELD");
	/* The device id was adopted. */
	assert_int_equal(t->mem.rec_len[BRD_REC_DEVICE_ID], 5);
	assert_memory_equal(t->mem.rec[BRD_REC_DEVICE_ID], "dev 1", 5);
	/* Provisioned: regen refused, the key kept. */
	t->mem.gen = 1;
	ask(t, 7, "CSR", (const char *const[]){ "cn=dev%201", "alg=ec-p256", "regen=1", NULL }, &f);
	want_error(&f, "KEYGEN");
	assert_int_equal(t->key.generated, 1);
	t->b.allow_regen = 1; /* as brd_config.allow_regen = 1 would */
	ask(t, 8, "CSR", (const char *const[]){ "cn=dev%201", "alg=ec-p256", "regen=1", NULL }, &f);
	assert_string_equal(f.type, "CSR");
	assert_int_equal(t->key.generated, 2);
	board_free(t);
}

/* The CSR of the key the board holds, whatever a regen that failed left: a backend that
 * switched keys and then failed (a PKCS#11 token whose relabelling failed, an agent cut off
 * before it answered) gets a new CSR for the new key, not the old key's; a regen whose old
 * CSR cannot be forgotten makes no key (STORAGE). */
static void test_csr_regen_failed(void **state)
{
	static const char *const ask1[] = { "cn=dev1", "alg=ec-p256", NULL };
	static const char *const regen[] = { "cn=dev1", "alg=ec-p256", "regen=1", NULL };
	struct t *t = board_new(NULL, 0);
	struct drv_proto_frame f;
	uint8_t der[1024];
	size_t n;

	(void)state;
	hello(t, 1);
	ask(t, 2, "CSR", ask1, &f);
	assert_string_equal(f.type, "CSR");
	t->mem.rec_fail = 1;
	ask(t, 3, "CSR", regen, &f);
	want_error(&f, "STORAGE");
	assert_int_equal(t->key.generated, 1);
	t->mem.rec_fail = 0;
	t->key.switch_fails = 1;
	ask(t, 4, "CSR", regen, &f);
	want_error(&f, "KEYGEN");
	assert_int_equal(t->key.generated, 2);
	t->key.switch_fails = 0;
	ask(t, 5, "CSR", ask1, &f);
	assert_string_equal(f.type, "CSR");
	assert_int_equal(t->key.generated, 2);
	X509_REQ_free(csr_of(&f, der, sizeof(der), &n, t->key.pkey));
	board_free(t);
}

/* The fault hooks a simulator builds its faults on. A request the platform holds back is
 * neither answered nor executed, brd_pause from the hook leaves the bytes after it for the
 * next feed, and the request let through later is executed as a new one. The CSR the hook
 * rewrites is what the station gets, the same bytes when asked again; a refusal is ERROR
 * KEYGEN. */
static void test_fault_hooks(void **state)
{
	static const char *const csr[] = { "cn=dev1", "alg=ec-p256", NULL };
	static const char *const v1[] = { "v=1", NULL };
	struct t *t = board_new(NULL, 0);
	struct drv_proto_frame f;
	uint8_t der[1024], der2[1024];
	char buf[8192], err[160];
	unsigned int total;
	size_t n, n2;
	X509_REQ *req;

	(void)state;
	t->b.plat.request = p_request;
	t->b.plat.csr = p_csr;
	t->plat.b = &t->b;
	t->plat.drop = 1;
	n = build(buf, 1, "HELLO", v1);
	n2 = build(buf + n, 2, "HELLO", v1);
	total = t->plat.total;
	assert_int_equal(brd_input(&t->b, buf, n + n2, 1000), n);
	assert_int_equal(t->plat.total, total);
	assert_int_equal(t->plat.requests, 1);
	assert_int_equal(brd_in_session(&t->b), 0);
	t->plat.drop = 0;
	assert_int_equal(brd_input(&t->b, buf, n, 1000), n);
	assert_int_equal(t->plat.total, total + 1);
	assert_non_null(strstr(last(t), "~@P1 A 1 HELLO v=1 "));
	assert_int_equal(brd_in_session(&t->b), 1);
	/* A retransmission gets the kept answer without asking the hook. */
	assert_int_equal(brd_input(&t->b, buf, n, 1000), n);
	assert_int_equal(t->plat.requests, 2);

	ask(t, 3, "CSR", csr, &f);
	req = csr_of(&f, der, sizeof(der), &n, t->key.pkey);
	assert_int_not_equal(X509_REQ_verify(req, t->key.pkey), 1);
	X509_REQ_free(req);
	ask(t, 4, "CSR", csr, &f);
	assert_int_equal(drv_proto_get_b64(&f, "data", der2, sizeof(der2), &n2, err, sizeof(err)), 0);
	assert_int_equal(n2, n);
	assert_memory_equal(der, der2, n);
	t->plat.csr_rc = BRD_ERR_CRYPTO;
	ask(t, 5, "CSR", (const char *const[]){ "cn=dev2", "alg=ec-p256", NULL }, &f);
	want_error(&f, "KEYGEN");
	board_free(t);
}

/* A request the hook refuses with brd_refuse is answered ERROR with the platform's code and
 * text (any bytes, percent-encoded on the wire), is not executed, and its answer is kept: a
 * retransmission gets it again without asking the hook. */
static void test_refuse(void **state)
{
	static const char *const w[] = {
		"path=a.txt", "mode=0644", "size=5",
		"sha=2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824", "off=0",
		"data=aGVsbG8=", NULL,
	};
	static const char text[] = "flash\n<3>forged\r\x1b[2J \x01\x7f\xff%=, done";
	struct t *t = board_new(NULL, 0);
	struct drv_proto_frame f;
	char got[128], kept[1024], buf[4096], err[160];
	unsigned int requests;
	size_t n;

	(void)state;
	t->b.plat.request = p_request;
	t->plat.b = &t->b;
	hello(t, 1);
	t->plat.refuse = text;
	ask(t, 2, "WRITE", w, &f);
	want_error(&f, "STORAGE");
	assert_int_equal(drv_proto_get_text(&f, "text", got, sizeof(got), err, sizeof(err)), 0);
	assert_string_equal(got, text);
	assert_int_equal(t->mem.opens, 0);
	snprintf(kept, sizeof(kept), "%s", last(t));
	requests = t->plat.requests;
	t->plat.refuse = NULL;
	n = build(buf, 2, "WRITE", w);
	feed(t, buf, n, 0, 1000);
	assert_int_equal(t->plat.requests, requests);
	assert_string_equal(last(t), kept);
	assert_int_equal(t->plat.fresh[(t->plat.n + 15) % 16], 0);
	/* A new request goes through and is executed. */
	ask(t, 3, "WRITE", w, &f);
	assert_string_equal(f.type, "WRITE");
	board_free(t);
}

/* The answer sent k answers before the last (0: the last), and whether it was fresh. */
static const char *sent_back(const struct t *t, unsigned int k, int *fresh)
{
	unsigned int at = (t->plat.n + 15 - k) % 16;

	*fresh = t->plat.fresh[at];
	return t->plat.out[at];
}

/* The boot id a BOOT says. */
static void boot_of(const char *line, char id[17])
{
	const char *p = strstr(line, " boot=");

	assert_non_null(p);
	memcpy(id, p + 6, 16);
	id[16] = 0;
}

/* Text field key of f. */
static const char *answer_text(const struct drv_proto_frame *f, const char *key, char *out,
			       size_t cap)
{
	char err[160];

	if (drv_proto_get_text(f, key, out, cap, err, sizeof(err)) != 0)
		fail_msg("%s: %s", err, f->line);
	return out;
}

/* Version 8 (PROTOCOL.md 12): BOOT says what HELLO's answer would, its v the board's newest
 * version, within 512 bytes; the first request that names this boot and a version of 8 or
 * later opens the session (with the station's frame size), and is then executed and kept as
 * any request. Another boot's id (a board that booted again), a version below 8 or above the
 * board's, no version, or a frame size below 512 open nothing. HELLO still opens a session.
 * A board of version 7 says no more in BOOT than before and takes no such request, and one
 * whose identity does not fit 512 bytes sends the BOOT of before. */
static void test_version8(void **state)
{
	static const char *const cn = "cn=dev1", *const alg = "alg=ec-p256";
	struct t *t = board_new(NULL, 0);
	struct drv_proto_frame f;
	char id[17], old[17], fb[32], req[4096], first[4096], err[160], v[128];
	size_t n;
	int fresh;

	(void)state;
	assert_int_equal(drv_proto_parse(t->plat.out[0], t->plat.len[0] - 1, &f, err, sizeof(err)),
			 0);
	assert_int_equal(f.kind, 'E');
	assert_int_equal(f.seq, 0);
	assert_string_equal(f.type, "BOOT");
	assert_true(t->plat.len[0] <= 512);
	assert_int_equal(answer_uint(&f, "v"), 8);
	assert_int_equal(answer_uint(&f, "max"), 1024);
	assert_int_equal(answer_uint(&f, "baud"), 115200);
	assert_int_equal(answer_uint(&f, "gen"), 0);
	assert_int_equal(answer_uint(&f, "win"), 2);
	assert_string_equal(answer_text(&f, "dev", v, sizeof(v)), "");
	assert_string_equal(answer_text(&f, "hw", v, sizeof(v)), "hw-1");
	assert_string_equal(answer_text(&f, "sku", v, sizeof(v)), "sku-1");
	assert_string_equal(answer_text(&f, "fw", v, sizeof(v)), "fw-1");
	assert_string_equal(answer_text(&f, "sn", v, sizeof(v)), "SN 1");
	assert_string_equal(answer_text(&f, "key", v, sizeof(v)), "se");
	assert_string_equal(answer_text(&f, "bauds", v, sizeof(v)), "115200,460800,921600");
	boot_of(t->plat.out[0], id);

	/* What opens nothing. */
	ask(t, 1, "CSR", (const char *const[]){ "v=8", "max=4096", "boot=0123456789abcdef", cn, alg,
						NULL }, &f);
	want_error(&f, "HELLO");
	snprintf(fb, sizeof(fb), "boot=%s", id);
	ask(t, 2, "CSR", (const char *const[]){ "v=7", "max=4096", fb, cn, alg, NULL }, &f);
	want_error(&f, "VERSION");
	ask(t, 3, "CSR", (const char *const[]){ "v=9", "max=4096", fb, cn, alg, NULL }, &f);
	want_error(&f, "VERSION");
	ask(t, 4, "CSR", (const char *const[]){ "max=4096", fb, cn, alg, NULL }, &f);
	want_error(&f, "VERSION");
	ask(t, 5, "CSR", (const char *const[]){ "v=8", "max=100", fb, cn, alg, NULL }, &f);
	want_error(&f, "FIELD");
	ask(t, 6, "CSR", (const char *const[]){ "v=8", "max=4096", "boot=0123", cn, alg, NULL }, &f);
	want_error(&f, "HELLO");
	assert_int_equal(t->plat.sessions, 0);
	assert_false(brd_in_session(&t->b));

	/* Opened by the CSR, which is done. */
	ask(t, 7, "CSR", (const char *const[]){ "v=8", "max=4096", fb, cn, alg, NULL }, &f);
	assert_string_equal(f.type, "CSR");
	assert_true(answer_uint(&f, "total") > 0);
	assert_int_equal(t->plat.sessions, 1);
	assert_true(brd_in_session(&t->b));
	assert_int_equal(t->b.version, 8);
	assert_int_equal(t->b.peer_max, 4096);
	strcpy(first, last(t));
	/* Sent again: the kept answer, nothing opened or done again. */
	n = build(req, 7, "CSR", (const char *const[]){ "v=8", "max=4096", fb, cn, alg, NULL });
	feed(t, req, n, 0, 1000);
	assert_string_equal(sent_back(t, 0, &fresh), first);
	assert_int_equal(fresh, 0);
	assert_int_equal(t->plat.sessions, 1);
	/* In the session, the fields open nothing more. */
	ask(t, 8, "CSR", (const char *const[]){ "v=8", "max=512", fb, cn, alg, "off=0", NULL }, &f);
	assert_string_equal(f.type, "CSR");
	assert_int_equal(t->plat.sessions, 1);
	assert_int_equal(t->b.peer_max, 4096);

	/* Booted again: the old boot's id opens nothing; HELLO does, at version 8. */
	memcpy(old, id, sizeof(old));
	brd_boot(&t->b, 10);
	boot_of(last(t), id);
	assert_string_not_equal(old, id);
	ask(t, 9, "CSR", (const char *const[]){ "v=8", "max=4096", fb, cn, alg, NULL }, &f);
	want_error(&f, "HELLO");
	ask(t, 10, "HELLO", (const char *const[]){ "v=1,2,3,4,5,6,7,8", "max=4096", NULL }, &f);
	assert_int_equal(answer_uint(&f, "v"), 8);
	assert_int_equal(t->plat.sessions, 2);
	board_free(t);

	/* A board of version 7. */
	t = board_new_proto(NULL, 0, 7);
	boot_of(t->plat.out[0], id);
	snprintf(fb, sizeof(fb), "boot=%s", id);
	ask(t, 1, "CSR", (const char *const[]){ "v=8", "max=4096", fb, cn, alg, NULL }, &f);
	want_error(&f, "HELLO");
	assert_int_equal(t->plat.sessions, 0);
	board_free(t);

	/* An identity longer than BOOT may carry (hardware id, sku and serial number of 64
	 * bytes, each %XX on the line). */
	board_hw = "\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10"
		   "\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f\x7f"
		   "\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10"
		   "\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f\x7f";
	t = board_new(NULL, 0);
	board_hw = board_hw_default;
	assert_int_equal(strncmp(t->plat.out[0], "~@P1 E 0 BOOT boot=", 19), 0);
	assert_null(strstr(t->plat.out[0], " v="));
	board_free(t);
}

/* Version 7 (PROTOCOL.md 11): HELLO announces win=2 in a session of version 7, not in one
 * of version 6. Two requests in one feed (the second sent before the first's answer) are
 * answered in their order; each, sent again, alone or both, gets its own kept answer byte
 * for byte, marked not fresh, while it is one of the last two; one older than that is
 * executed again. In a session of version 6 one answer is kept, as before. */
static void test_version7(void **state)
{
	static const char *const hello_sha = "sha=2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824";
	static const char *const wa[] = { "path=a", "mode=0644", "size=5", hello_sha, "off=0", "raw=hello", NULL };
	static const char *const wb[] = { "path=b", "mode=0644", "size=5", hello_sha, "off=0", "copy=a,0,5", NULL };
	static const char *const wc[] = { "path=c", "mode=0600", "size=5", hello_sha, "off=0", "data=aGVsbG8=", NULL };
	struct t *t = board_new(NULL, 0);
	struct drv_proto_frame f;
	char two[8192], ans_a[4096], ans_b[4096];
	size_t na, nb;
	unsigned int total;
	int fresh;

	(void)state;
	ask(t, 1, "HELLO", (const char *const[]){ "v=1,2,3,4,5,6,7", "max=4096", NULL }, &f);
	assert_int_equal(answer_uint(&f, "v"), 7);
	assert_int_equal(answer_uint(&f, "win"), 2);
	na = build(two, 2, "WRITE", wa);
	nb = build(two + na, 3, "WRITE", wb);
	total = t->plat.total;
	feed(t, two, na + nb, 0, 1000);
	assert_int_equal(t->plat.total, total + 2);
	strcpy(ans_a, sent_back(t, 1, &fresh));
	assert_int_equal(fresh, 1);
	assert_non_null(strstr(ans_a, "~@P1 A 2 WRITE path=a have=5 done=1 "));
	strcpy(ans_b, sent_back(t, 0, &fresh));
	assert_int_equal(fresh, 1);
	assert_non_null(strstr(ans_b, "~@P1 A 3 WRITE path=b have=5 done=1 "));
	/* Sent again: each its own kept answer, nothing done again. */
	feed(t, two, na, 1, 1000);
	assert_string_equal(sent_back(t, 0, &fresh), ans_a);
	assert_int_equal(fresh, 0);
	feed(t, two + na, nb, 0, 1000);
	assert_string_equal(sent_back(t, 0, &fresh), ans_b);
	assert_int_equal(fresh, 0);
	total = t->plat.total;
	feed(t, two, na + nb, 0, 1000);
	assert_int_equal(t->plat.total, total + 2);
	assert_string_equal(sent_back(t, 1, &fresh), ans_a);
	assert_int_equal(fresh, 0);
	assert_string_equal(sent_back(t, 0, &fresh), ans_b);
	assert_int_equal(fresh, 0);
	/* A third request: the first is out of the window and is executed when sent again. */
	ask(t, 4, "WRITE", wc, &f);
	assert_string_equal(f.type, "WRITE");
	feed(t, two + na, nb, 0, 1000);
	assert_string_equal(sent_back(t, 0, &fresh), ans_b);
	assert_int_equal(fresh, 0);
	feed(t, two, na, 0, 1000);
	assert_non_null(strstr(sent_back(t, 0, &fresh), "~@P1 A 2 WRITE path=a have=5 done=1 "));
	assert_int_equal(fresh, 1);

	/* Version 6: no win, one answer kept. */
	ask(t, 5, "HELLO", (const char *const[]){ "v=1,2,3,4,5,6", "max=4096", NULL }, &f);
	assert_int_equal(answer_uint(&f, "v"), 6);
	assert_false(drv_proto_has(&f, "win"));
	na = build(two, 6, "WRITE", wa);
	nb = build(two + na, 7, "WRITE", wb);
	feed(t, two, na + nb, 0, 1000);
	feed(t, two + na, nb, 0, 1000);
	sent_back(t, 0, &fresh);
	assert_int_equal(fresh, 0);
	feed(t, two, na, 0, 1000);
	assert_non_null(strstr(sent_back(t, 0, &fresh), "~@P1 A 6 WRITE path=a have=5 done=1 "));
	assert_int_equal(fresh, 1);
	board_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc32_table),    cmocka_unit_test(test_sha256),
		cmocka_unit_test(test_sha256_platform),
		cmocka_unit_test(test_decoder_splits),
		cmocka_unit_test(test_boot),	       cmocka_unit_test(test_hello_first),
		cmocka_unit_test(test_retransmission), cmocka_unit_test(test_frame_errors),
		cmocka_unit_test(test_baud),	       cmocka_unit_test(test_confinement),
		cmocka_unit_test(test_files),	       cmocka_unit_test(test_csr),
		cmocka_unit_test(test_fault_hooks),    cmocka_unit_test(test_refuse),
		cmocka_unit_test(test_version2),       cmocka_unit_test(test_csr_regen_failed),
		cmocka_unit_test(test_version3),
		cmocka_unit_test(test_version4),
		cmocka_unit_test(test_version5), cmocka_unit_test(test_version6),
		cmocka_unit_test(test_version7),
		cmocka_unit_test(test_version8),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
