/* The board core: every command of drivers/PROTOCOL.md versions 1 to 8, as the board answers it.
 * See board.h for the interface and README.md for what this folder may use. */
#include "board.h"

#include <string.h>

#include "csr.h"

#define POP_CONTEXT "station-pop-v1"
#define NONCE_MIN 16
#define NONCE_MAX 64

/* ERROR codes (PROTOCOL.md section 3, "ERROR answer"). */
static const char *const E_UNKNOWN = "UNKNOWN", *const E_FIELD = "FIELD",
			 *const E_FRAME = "FRAME", *const E_VERSION = "VERSION",
			 *const E_HELLO = "HELLO", *const E_ALG = "ALG", *const E_KEYGEN = "KEYGEN",
			 *const E_NOKEY = "NOKEY", *const E_PATH = "PATH", *const E_OFFSET = "OFFSET",
			 *const E_SIZE = "SIZE", *const E_HASH = "HASH",
			 *const E_INCOMPLETE = "INCOMPLETE", *const E_STORAGE = "STORAGE",
			 *const E_BAUD = "BAUD", *const E_SOURCE = "SOURCE";

static void copy_name(char *dst, size_t cap, const char *src)
{
	size_t n = src ? strlen(src) : 0;

	if (n >= cap)
		n = cap - 1;
	if (n)
		memcpy(dst, src, n);
	dst[n] = 0;
}

int brd_init(struct brd_board *b, const struct brd_config *cfg)
{
	unsigned int i;

	memset(b, 0, sizeof(*b));
	if (!cfg->storage || !cfg->key || !cfg->random || !cfg->plat.send || !cfg->config_dir ||
	    cfg->config_dir[0] != '/' || cfg->nprefixes > BRD_MAX_PREFIXES ||
	    cfg->nbauds > BRD_MAX_BAUDS || !cfg->random->fill)
		return BRD_ERR_CONFIG;
	if (cfg->max_frame && (cfg->max_frame < BRD_LINE_MIN || cfg->max_frame > BRD_LINE_MAX))
		return BRD_ERR_CONFIG;
	if (cfg->protocol > BRD_PROTO_MAX)
		return BRD_ERR_CONFIG;
	b->proto_max = (unsigned char)(cfg->protocol ? cfg->protocol : BRD_PROTO_MAX);
	copy_name(b->hw, sizeof(b->hw), cfg->hw);
	copy_name(b->sku, sizeof(b->sku), cfg->sku);
	copy_name(b->fw, sizeof(b->fw), cfg->fw);
	copy_name(b->sn, sizeof(b->sn), cfg->sn);
	copy_name(b->key_storage, sizeof(b->key_storage), cfg->key_storage ? cfg->key_storage
									   : "sw");
	b->config_dir = cfg->config_dir;
	for (i = 0; i < cfg->nprefixes; i++) {
		if (!cfg->prefixes[i] || cfg->prefixes[i][0] != '/')
			return BRD_ERR_CONFIG;
		b->prefixes[i] = cfg->prefixes[i];
	}
	b->nprefixes = cfg->nprefixes;
	if (!b->nprefixes) {
		b->prefixes[0] = cfg->config_dir;
		b->nprefixes = 1;
	}
	b->baud_start = cfg->baud ? cfg->baud : 115200;
	for (i = 0; i < cfg->nbauds; i++)
		b->bauds[i] = cfg->bauds[i];
	b->nbauds = cfg->nbauds;
	if (!b->nbauds)
		b->bauds[b->nbauds++] = b->baud_start;
	b->max_frame = cfg->max_frame ? cfg->max_frame : BRD_LINE_MAX;
	b->max_file = cfg->max_file ? cfg->max_file : 1024 * 1024;
	b->max_total = cfg->max_total ? cfg->max_total : 4 * 1024 * 1024;
	b->allow_regen = cfg->allow_regen;
	b->st = cfg->storage;
	b->st_inst = cfg->storage_inst;
	b->key = cfg->key;
	b->key_inst = cfg->key_inst;
	b->rnd = cfg->random;
	b->rnd_inst = cfg->random_inst;
	b->sha256_blocks = cfg->sha256_blocks;
	b->plat = cfg->plat;
	b->baud_cur = b->baud_start;
	brd_decoder_init(&b->dec, b->max_frame);
	return 0;
}

static void event(struct brd_board *b, enum brd_event ev, const char *text)
{
	if (b->plat.event)
		b->plat.event(b->plat.arg, ev, text);
}

/* Answers. */

/* Answers must fit what the station accepts (announced in HELLO; 512 before) and the
 * board's own buffer. */
static size_t answer_cap(const struct brd_board *b)
{
	size_t cap = b->hello ? b->peer_max : BRD_LINE_MIN;

	return cap > sizeof(b->tx[0]) ? sizeof(b->tx[0]) : cap;
}

static void answer_begin(struct brd_board *b, struct brd_enc *e, const struct brd_frame *req,
			 const char *type)
{
	brd_enc_begin(e, b->tx[b->txi], answer_cap(b), 'A', req->seq, type);
}

static void error_begin(struct brd_board *b, struct brd_enc *e, const struct brd_frame *req,
			const char *code, const char *text);

/* Sends the answer and keeps it for a retransmitted request. */
static void answer_send(struct brd_board *b, struct brd_enc *e, const struct brd_frame *req)
{
	size_t len = brd_enc_end(e);

	if (!len) {
		/* The answer did not fit: a bug in the core. Say so rather than stay silent. */
		error_begin(b, e, req, "INTERNAL", "the answer does not fit in a frame");
		len = brd_enc_end(e);
		if (!len)
			return;
	}
	b->kept[b->txi].valid = 1;
	b->kept[b->txi].seq = req->seq;
	b->kept[b->txi].crc = req->crc;
	b->kept[b->txi].len = len;
	b->plat.send(b->plat.arg, b->tx[b->txi], len, 1);
}

static void error_begin(struct brd_board *b, struct brd_enc *e, const struct brd_frame *req,
			const char *code, const char *text)
{
	answer_begin(b, e, req, "ERROR");
	brd_enc_text(e, "code", code);
	brd_enc_text(e, "text", text);
}

static void answer_error(struct brd_board *b, const struct brd_frame *req, const char *code,
			 const char *text)
{
	struct brd_enc e;

	error_begin(b, &e, req, code, text);
	answer_send(b, &e, req);
	event(b, BRD_EV_REFUSED, text);
}

/* ERROR code=OFFSET (or SOURCE) with have=. */
static void answer_have(struct brd_board *b, const struct brd_frame *req, const char *code,
			uint64_t have, const char *text)
{
	struct brd_enc e;

	error_begin(b, &e, req, code, text);
	brd_enc_uint(&e, "have", have);
	answer_send(b, &e, req);
	event(b, BRD_EV_REFUSED, text);
}

/* A storage or key failure: the message of the op appended to what was being done. */
static void answer_failure(struct brd_board *b, const struct brd_frame *req, const char *code,
			   struct brd_msg *m, int rc, const char *detail)
{
	if (rc == BRD_ERR_NOSPACE)
		brd_msg_str(m, ": no space left on the board");
	else if (rc == BRD_ERR_PATH)
		brd_msg_str(m, ": path refused by the board's storage");
	if (detail) {
		brd_msg_str(m, ": ");
		brd_msg_str(m, detail);
	}
	answer_error(b, req, rc == BRD_ERR_PATH ? E_PATH : code, m->buf);
}

static const char *st_error(const struct brd_board *b)
{
	return b->st->last_error ? b->st->last_error(b->st_inst) : NULL;
}

static const char *key_error(const struct brd_board *b)
{
	return b->key->last_error ? b->key->last_error(b->key_inst) : NULL;
}

/* One request's steps. In version 3 a WRITE may carry COMMIT, and COMMIT (or that WRITE)
 * VERIFY (PROTOCOL.md 7): the dispatch runs each step in turn, through the command table so
 * that one step's stack frame is gone before the next one's, into one answer. The fields of
 * the folded steps are looked up before any step runs: WRITE decodes its chunk in place. */
struct step {
	struct brd_enc e; /* the answer */
	int folded;       /* the step runs folded: a failure leaves it out of the answer */
	int more;         /* version 6: a WRITE's later file, its fields after the earlier's */
	int has_count, has_nonce, has_from, has_want;
	struct brd_field count; /* COMMIT's count, or the WRITE's commit */
	struct brd_field nonce, from, want;
};

/* What a command (a step) returns. */
enum {
	STEP_ANSWERED, /* it sent its answer (or ERROR) */
	STEP_DONE,     /* its answer is in st->e, to be sent */
	STEP_NEXT,     /* likewise, and a step folded into the request may follow */
};

/* Boot. */

/* The device id the board holds ("" when none). */
static void read_devid(struct brd_board *b, char devid[BRD_MAX_NAME + 1])
{
	size_t n = 0;

	if (b->st->rec_read(b->st_inst, BRD_REC_DEVICE_ID, devid, BRD_MAX_NAME, &n) != 0)
		n = 0;
	devid[n] = 0;
}

/* Who the board is, as HELLO's answer and (version 8) BOOT say it: the version v, the
 * device id, the identity strings, the line's limits and rates, the boot id, the generation,
 * and (version 7 and later) the window. */
static void enc_identity(struct brd_board *b, struct brd_enc *e, unsigned int v)
{
	char bauds[BRD_MAX_BAUDS][12], devid[BRD_MAX_NAME + 1];
	const char *blist[BRD_MAX_BAUDS];
	unsigned int i;

	read_devid(b, devid);
	for (i = 0; i < b->nbauds; i++) {
		struct brd_msg bm;

		brd_msg_init(&bm, bauds[i], sizeof(bauds[i]));
		brd_msg_uint(&bm, b->bauds[i]);
		blist[i] = bauds[i];
	}
	brd_enc_uint(e, "v", v);
	brd_enc_text(e, "dev", devid);
	brd_enc_text(e, "hw", b->hw);
	brd_enc_text(e, "sku", b->sku);
	brd_enc_text(e, "fw", b->fw);
	brd_enc_text(e, "sn", b->sn);
	brd_enc_text(e, "key", b->key_storage);
	brd_enc_uint(e, "max", b->max_frame);
	brd_enc_list(e, "bauds", blist, b->nbauds);
	brd_enc_uint(e, "baud", b->baud_cur);
	brd_enc_text(e, "boot", b->boot_id);
	brd_enc_uint(e, "gen", b->st->generation(b->st_inst));
	if (v >= 7 && BRD_WINDOW > 1)
		brd_enc_uint(e, "win", BRD_WINDOW);
}

void brd_boot(struct brd_board *b, uint64_t now_ms)
{
	static const char hex[] = "0123456789abcdef";
	/* Nothing is kept after a boot: the first answer buffer holds the event. */
	char *buf = b->tx[0];
	uint8_t id[8];
	struct brd_enc e;
	unsigned int i;
	size_t len = 0;

	(void)now_ms;
	b->hello = 0;
	memset(b->kept, 0, sizeof(b->kept));
	b->txi = 0;
	b->paused = 0;
	b->peer_max = BRD_LINE_MIN;
	b->baud_pending = b->baud_trial = 0;
	b->baud_cur = b->baud_start;
	memset(b->staged, 0, sizeof(b->staged));
	b->st->stage_discard(b->st_inst, -1);
	brd_decoder_reset(&b->dec);
	if (b->rnd->fill(b->rnd_inst, id, sizeof(id)) != 0)
		memset(id, 0, sizeof(id));
	for (i = 0; i < 8; i++) {
		b->boot_id[2 * i] = hex[id[i] >> 4];
		b->boot_id[2 * i + 1] = hex[id[i] & 15];
	}
	b->boot_id[16] = 0;
	if (b->proto_max >= 8) {
		/* Version 8: the event says what HELLO's answer would, within the 512 bytes a
		 * station takes before HELLO; the station's first request opens the session. */
		brd_enc_begin(&e, buf, BRD_LINE_MIN, 'E', 0, "BOOT");
		enc_identity(b, &e, b->proto_max);
		len = brd_enc_end(&e);
	}
	if (!len) {
		/* Before version 8, or an identity too long: the boot id and the firmware (64
		 * bytes at most, 192 on the line, always within 512). */
		brd_enc_begin(&e, buf, BRD_LINE_MIN, 'E', 0, "BOOT");
		brd_enc_text(&e, "boot", b->boot_id);
		brd_enc_text(&e, "fw", b->fw);
		len = brd_enc_end(&e);
	}
	b->plat.send(b->plat.arg, buf, len, 1);
	event(b, BRD_EV_BOOT, b->boot_id);
}

/* HELLO */

/* ERROR VERSION: no version offered is one this board speaks. */
static void version_error(struct brd_board *b, const struct brd_frame *f, struct brd_msg *m)
{
	brd_msg_str(m, "this board speaks protocol version");
	brd_msg_str(m, b->proto_max == 1 ? " 1" : "s 1 to ");
	if (b->proto_max > 1)
		brd_msg_uint(m, b->proto_max);
	answer_error(b, f, E_VERSION, m->buf);
}

/* A session of version v with a station that takes frames of max bytes. */
static void open_session(struct brd_board *b, unsigned int v, uint64_t max)
{
	char devid[BRD_MAX_NAME + 1];

	b->hello = 1;
	b->version = (unsigned char)v;
	b->peer_max = max > 4096 ? 4096 : (size_t)max;
	read_devid(b, devid);
	event(b, BRD_EV_HELLO, devid);
}

/* Version 8: a request after BOOT that carries the boot id BOOT said, and the version
 * (8 or later) and frame size HELLO would, opens the session itself. Returns 0 (opened, or
 * not such a request: the caller goes on), or -1 when it answered ERROR. */
static int open_from_boot(struct brd_board *b, const struct brd_frame *f, struct brd_msg *m)
{
	struct brd_field v;
	uint64_t ver, max = BRD_LINE_MIN;

	if (b->proto_max < 8 || !brd_frame_find(f, "boot", &v) || v.len != 16 ||
	    memcmp(v.val, b->boot_id, 16) != 0)
		return 0; /* not this boot's: ERROR HELLO, as before */
	if (!brd_frame_find(f, "v", &v) || brd_field_uint(&v, "v", 1, 99, &ver, m) != 0 ||
	    ver < 8 || ver > b->proto_max) {
		brd_msg_init(m, m->buf, m->cap);
		version_error(b, f, m);
		return -1;
	}
	if (brd_frame_find(f, "max", &v) &&
	    brd_field_uint(&v, "max", BRD_LINE_MIN, 0xFFFFFFFFu, &max, m) != 0) {
		answer_error(b, f, E_FIELD, m->buf);
		return -1;
	}
	open_session(b, (unsigned int)ver, max);
	return 0;
}


static int cmd_hello(struct brd_board *b, const struct brd_frame *f, struct step *st)
{
	char item[12], msgbuf[128];
	struct brd_field v;
	struct brd_msg m;
	struct brd_enc e;
	uint64_t max = BRD_LINE_MIN;
	unsigned int i;
	int ok = 0, r;

	(void)st;
	brd_msg_init(&m, msgbuf, sizeof(msgbuf));
	if (!brd_frame_find(f, "v", &v)) {
		answer_error(b, f, E_FIELD, "HELLO frame has no field 'v'");
		return STEP_ANSWERED;
	}
	/* The highest version both speak. */
	for (i = 0; (r = brd_field_item(&v, "v", i, item, sizeof(item), &m)) == 1; i++) {
		if (item[0] >= '1' && item[0] <= '0' + b->proto_max && !item[1] &&
		    item[0] - '0' > ok)
			ok = item[0] - '0';
	}
	if (!ok) {
		version_error(b, f, &m);
		return STEP_ANSWERED;
	}
	if (brd_frame_find(f, "max", &v) &&
	    brd_field_uint(&v, "max", BRD_LINE_MIN, 0xFFFFFFFFu, &max, &m) != 0) {
		answer_error(b, f, E_FIELD, m.buf);
		return STEP_ANSWERED;
	}
	open_session(b, (unsigned int)ok, max);
	answer_begin(b, &e, f, "HELLO");
	enc_identity(b, &e, b->version);
	answer_send(b, &e, f);
	return STEP_ANSWERED;
}

/* CSR */

/* The subject record: "cn\nou\nbc". */
static size_t subject_of(char *out, const char *cn, const char *ou, const char *bc)
{
	size_t n = 0, k;

	k = strlen(cn);
	memcpy(out + n, cn, k);
	n += k;
	out[n++] = '\n';
	k = strlen(ou);
	memcpy(out + n, ou, k);
	n += k;
	out[n++] = '\n';
	k = strlen(bc);
	memcpy(out + n, bc, k);
	n += k;
	return n;
}

static int get_text_opt(const struct brd_frame *f, const char *key, char *out, size_t cap,
			struct brd_msg *m)
{
	struct brd_field v;

	out[0] = 0;
	if (!brd_frame_find(f, key, &v))
		return 0;
	return brd_field_text(&v, key, out, cap, m);
}

static int get_text(const struct brd_frame *f, const char *key, char *out, size_t cap,
		    struct brd_msg *m)
{
	struct brd_field v;

	out[0] = 0;
	if (!brd_frame_find(f, key, &v)) {
		brd_msg_str(m, f->type);
		brd_msg_str(m, " frame has no field '");
		brd_msg_str(m, key);
		brd_msg_str(m, "'");
		return -1;
	}
	return brd_field_text(&v, key, out, cap, m);
}

static int get_uint(const struct brd_frame *f, const char *key, uint64_t min, uint64_t max,
		    uint64_t *out, struct brd_msg *m)
{
	struct brd_field v;

	if (!brd_frame_find(f, key, &v)) {
		brd_msg_str(m, f->type);
		brd_msg_str(m, " frame has no field '");
		brd_msg_str(m, key);
		brd_msg_str(m, "'");
		return -1;
	}
	return brd_field_uint(&v, key, min, max, out, m);
}

static int get_uint_opt(const struct brd_frame *f, const char *key, uint64_t min,
			uint64_t max, uint64_t *out, struct brd_msg *m)
{
	struct brd_field v;

	if (!brd_frame_find(f, key, &v))
		return 0;
	return brd_field_uint(&v, key, min, max, out, m);
}

/* Makes (or finds) the CSR for this subject; its DER ends up in b->scratch. Returns its
 * length, or 0 after answering with an error. */
static size_t csr_for(struct brd_board *b, const struct brd_frame *f, const char *cn,
		      const char *ou, const char *bc, int regen, struct brd_msg *mp)
{
	char subject[3 * (BRD_MAX_NAME + 1)];
	size_t slen = subject_of(subject, cn, ou, bc), klen = 0, n = 0;
	uint8_t pub[65];
	struct brd_msg m = *mp;
	long len;
	int rc;

	rc = b->key->exists(b->key_inst);
	if (rc < 0) {
		brd_msg_str(&m, "cannot look for the board's key");
		answer_failure(b, f, E_KEYGEN, &m, rc, key_error(b));
		return 0;
	}
	if (regen || rc == 0) {
		/* Forget the old key's CSR before the key can change: a generation that fails
		 * (or a power cut) after the backend switched keys but before it answered would
		 * otherwise leave the old key's CSR to be answered for the new key. */
		rc = b->st->rec_write(b->st_inst, BRD_REC_SUBJECT, "", 0);
		if (rc != 0) {
			brd_msg_str(&m, "cannot forget the old key's CSR");
			answer_failure(b, f, E_STORAGE, &m, rc, st_error(b));
			return 0;
		}
		rc = b->key->generate(b->key_inst);
		if (rc != 0) {
			brd_msg_str(&m, "EC P-256 key generation failed");
			answer_failure(b, f, E_KEYGEN, &m, rc, key_error(b));
			return 0;
		}
		event(b, BRD_EV_CSR, "key");
	} else if (b->st->rec_read(b->st_inst, BRD_REC_SUBJECT, b->scratch, sizeof(b->scratch),
				   &klen) == 0 &&
		   klen == slen && memcmp(b->scratch, subject, slen) == 0 &&
		   b->st->rec_read(b->st_inst, BRD_REC_CSR, b->scratch, sizeof(b->scratch), &n) ==
			   0 &&
		   n > 0) {
		/* Same key, same subject: the same CSR, byte for byte. */
		return n;
	}
	rc = b->key->public_key(b->key_inst, pub);
	if (rc != 0) {
		brd_msg_str(&m, "cannot read the board's public key");
		answer_failure(b, f, E_KEYGEN, &m, rc, key_error(b));
		return 0;
	}
	len = brd_csr_build(b->scratch, sizeof(b->scratch), cn, ou, bc, pub, b->key->sign,
			    b->key_inst);
	if (len <= 0) {
		brd_msg_str(&m, len == 0 ? "the CSR does not fit in " : "signing the CSR failed");
		if (len == 0) {
			brd_msg_uint(&m, sizeof(b->scratch));
			brd_msg_str(&m, " bytes");
		}
		answer_failure(b, f, E_KEYGEN, &m, (int)len, len ? key_error(b) : NULL);
		return 0;
	}
	if (b->plat.csr) {
		size_t n2 = (size_t)len;

		rc = b->plat.csr(b->plat.arg, b->scratch, sizeof(b->scratch), &n2);
		if (rc != 0 || n2 == 0 || n2 > sizeof(b->scratch)) {
			brd_msg_str(&m, "the board's CSR hook refused it");
			answer_failure(b, f, E_KEYGEN, &m, rc, NULL);
			return 0;
		}
		len = (long)n2;
	}
	/* The CSR first, then the subject that names it: a crash in between leaves a subject
	 * that matches no CSR, and the next request makes it again. */
	rc = b->st->rec_write(b->st_inst, BRD_REC_SUBJECT, "", 0);
	if (rc == 0)
		rc = b->st->rec_write(b->st_inst, BRD_REC_CSR, b->scratch, (size_t)len);
	if (rc == 0)
		rc = b->st->rec_write(b->st_inst, BRD_REC_SUBJECT, subject, slen);
	if (rc != 0) {
		brd_msg_str(&m, "cannot keep the CSR");
		answer_failure(b, f, E_STORAGE, &m, rc, st_error(b));
		return 0;
	}
	event(b, BRD_EV_CSR, "csr");
	return (size_t)len;
}

static int cmd_csr(struct brd_board *b, const struct brd_frame *f, struct step *st)
{
	char cn[BRD_MAX_NAME + 1], ou[BRD_MAX_NAME + 1], bc[BRD_MAX_NAME + 1], alg[16];
	char devid[BRD_MAX_NAME + 1], msgbuf[192];
	uint64_t regen = 0, off = 0;
	uint8_t sha[32];
	struct brd_msg m;
	struct brd_enc e;
	size_t len, n = 0;
	int rc;

	(void)st;
	brd_msg_init(&m, msgbuf, sizeof(msgbuf));
	if (get_text(f, "cn", cn, sizeof(cn), &m) != 0 ||
	    get_text_opt(f, "ou", ou, sizeof(ou), &m) != 0 ||
	    get_text_opt(f, "bc", bc, sizeof(bc), &m) != 0 ||
	    get_text(f, "alg", alg, sizeof(alg), &m) != 0 ||
	    get_uint_opt(f, "regen", 0, 1, &regen, &m) != 0 ||
	    get_uint_opt(f, "off", 0, BRD_CSR_MAX, &off, &m) != 0) {
		answer_error(b, f, E_FIELD, m.buf);
		return STEP_ANSWERED;
	}
	if (!cn[0]) {
		answer_error(b, f, E_FIELD, "field 'cn' is empty");
		return STEP_ANSWERED;
	}
	if (strcmp(alg, "ec-p256") != 0) {
		brd_msg_str(&m, "key algorithm \"");
		brd_msg_str(&m, alg);
		brd_msg_str(&m, "\" not supported; this board makes ec-p256");
		answer_error(b, f, E_ALG, m.buf);
		return STEP_ANSWERED;
	}
	if (regen && off) {
		answer_error(b, f, E_FIELD, "regen=1 is only allowed with off=0");
		return STEP_ANSWERED;
	}
	if (regen && !b->allow_regen && b->st->generation(b->st_inst) > 0 &&
	    b->key->exists(b->key_inst) == 1) {
		brd_msg_str(&m, "regen refused: this board is provisioned (files of generation ");
		brd_msg_uint(&m, b->st->generation(b->st_inst));
		brd_msg_str(&m, " installed) and keeps its key; its agent does not allow a new "
				"one");
		answer_error(b, f, E_KEYGEN, m.buf);
		return STEP_ANSWERED;
	}
	len = csr_for(b, f, cn, ou, bc, (int)regen, &m);
	if (!len)
		return STEP_ANSWERED;
	/* A board without an id takes the one the station gives it. */
	if (b->st->rec_read(b->st_inst, BRD_REC_DEVICE_ID, devid, sizeof(devid) - 1, &n) != 0 ||
	    n == 0) {
		rc = b->st->rec_write(b->st_inst, BRD_REC_DEVICE_ID, cn, strlen(cn));
		if (rc != 0) {
			brd_msg_str(&m, "cannot keep the device id");
			answer_failure(b, f, E_STORAGE, &m, rc, st_error(b));
			return STEP_ANSWERED;
		}
		event(b, BRD_EV_ADOPTED, cn);
	}
	if (off > len) {
		brd_msg_str(&m, "offset ");
		brd_msg_uint(&m, off);
		brd_msg_str(&m, " is past the CSR's ");
		brd_msg_uint(&m, len);
		brd_msg_str(&m, " bytes");
		answer_error(b, f, E_OFFSET, m.buf);
		return STEP_ANSWERED;
	}
	brd_sha256_with(b->sha256_blocks, b->scratch, len, sha);
	answer_begin(b, &e, f, "CSR");
	brd_enc_uint(&e, "total", len);
	brd_enc_uint(&e, "off", off);
	brd_enc_hex(&e, "sha", sha, sizeof(sha));
	n = brd_enc_b64_room(&e, "data");
	if (n > len - off)
		n = len - (size_t)off;
	brd_enc_b64(&e, "data", b->scratch + off, n);
	answer_send(b, &e, f);
	return STEP_ANSWERED;
}

/* WRITE */

static int path_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '-';
}

/* 1 when config_dir "/" path lies inside the directory prefix (whole components). */
static int under(const char *dir, const char *path, const char *prefix)
{
	size_t dl = strlen(dir), pl = strlen(prefix);

	while (dl > 1 && dir[dl - 1] == '/')
		dl--;
	while (pl > 1 && prefix[pl - 1] == '/')
		pl--;
	if (pl == 1)
		return 1; /* "/" */
	if (pl <= dl)
		return memcmp(dir, prefix, pl) == 0 && (dir[pl] == '/' || pl == dl);
	/* The prefix reaches into the path: dir "/" path must start with it. */
	if (memcmp(dir, prefix, dl) != 0 || prefix[dl] != '/')
		return 0;
	prefix += dl + 1;
	pl -= dl + 1;
	/* Inside the prefix directory, not the directory itself. */
	return strncmp(path, prefix, pl) == 0 && path[pl] == '/';
}

const char *brd_path_problem(const char *path, size_t *bad)
{
	size_t i, comp = 0;

	*bad = 0;
	for (i = 0; path[i]; i++) {
		char c = path[i];

		*bad = i;
		if (i == BRD_MAX_PATH)
			return "is longer than 128 bytes";
		if (c == '/') {
			if (comp == 0)
				return i == 0 ? "starts with '/'" : "has an empty component ('//')";
			comp = 0;
			continue;
		}
		if (comp == 0 && c == '.')
			return "has a component that starts with '.'";
		if (!path_char(c))
			return "has a character other than A-Z a-z 0-9 . _ -";
		comp++;
	}
	if (i == 0)
		return "is empty";
	if (comp == 0)
		return "ends with '/'";
	return NULL;
}

const char *brd_path_refusal(const struct brd_board *b, const char *path)
{
	const char *why;
	unsigned int i;
	size_t bad;

	why = brd_path_problem(path, &bad);
	if (why)
		return why;
	for (i = 0; i < b->nprefixes; i++) {
		if (under(b->config_dir, path, b->prefixes[i]))
			return NULL;
	}
	return "outside the directories this board allows";
}

/* Reads a staged (staged != 0) or an installed file: the one read both WRITE's copy and the
 * hashing go through. */
static int file_read(struct brd_board *b, int staged, unsigned int idx, uint64_t off, size_t n,
		     size_t *got)
{
	if (staged)
		return b->st->stage_read(b->st_inst, idx, off, b->scratch, n, got);
	return b->st->installed_read(b->st_inst, idx, off, b->scratch, n, got);
}

/* Hashes a staged or installed file as storage holds it now; *size gets its length. */
static int hash_file(struct brd_board *b, int staged, unsigned int idx, uint8_t sha[32],
		     uint64_t *size)
{
	struct brd_sha256 c;
	uint64_t off = 0;
	size_t got;
	int rc;

	brd_sha256_init_with(&c, b->sha256_blocks);
	for (;;) {
		rc = file_read(b, staged, idx, off, sizeof(b->scratch), &got);
		if (rc != 0)
			return rc;
		if (!got)
			break;
		brd_sha256_update(&c, b->scratch, got);
		off += got;
	}
	brd_sha256_final(&c, sha);
	*size = off;
	return 0;
}

/* The installed file under path: its index, or -1. b->scratch holds the names read. */
static int installed_find(struct brd_board *b, const char *path, uint64_t *size)
{
	unsigned int i, n = b->st->installed(b->st_inst);

	for (i = 0; i < n; i++) {
		if (b->st->installed_info(b->st_inst, i, (char *)b->scratch, sizeof(b->scratch),
					  size) == 0 &&
		    strcmp((const char *)b->scratch, path) == 0)
			return (int)i;
	}
	return -1;
}

static void msg_path(struct brd_msg *m, const char *path, const char *what)
{
	brd_msg_str(m, path);
	brd_msg_str(m, ": ");
	brd_msg_str(m, what);
}

/* A WRITE's copy (version 2): path,offset,length of bytes the board holds, in a file staged
 * complete in this session or else installed. Returns 1 when the source is there and long
 * enough, 0 when not (ERROR SOURCE), -1 on a malformed field (m says why). */
struct copy_src {
	int staged;
	unsigned int idx;
	uint64_t off, len;
};

static int copy_source(struct brd_board *b, const struct brd_field *v, struct copy_src *c,
		       struct brd_msg *m)
{
	char item[BRD_MAX_PATH + 1];
	struct brd_field nv;
	uint64_t size = 0;
	unsigned int i;
	int k;

	for (k = 2; k >= 0; k--) {
		if (brd_field_item(v, "copy", (unsigned int)k, item, sizeof(item), m) != 1) {
			if (!m->len)
				brd_msg_str(m, "field 'copy': path,offset,length expected");
			return -1;
		}
		if (k == 0)
			break;
		nv.val = item;
		nv.len = strlen(item);
		if (brd_field_uint(&nv, "copy", 0, k == 1 ? UINT64_MAX : b->max_frame,
				   k == 1 ? &c->off : &c->len, m) != 0)
			return -1;
	}
	for (i = 0; i < BRD_MAX_STAGED; i++) {
		if (b->staged[i].done && strcmp(b->staged[i].path, item) == 0)
			break;
	}
	c->staged = i < BRD_MAX_STAGED;
	if (c->staged) {
		c->idx = i;
		size = b->staged[i].size;
	} else {
		k = installed_find(b, item, &size);
		if (k < 0)
			return 0;
		c->idx = (unsigned int)k;
	}
	return c->off <= size && c->len <= size - c->off;
}

/* Writes n bytes of a copy, from skip bytes into it, at staged file idx's end. Returns 0,
 * 1 when the source ended early, or a storage error. */
static int copy_in(struct brd_board *b, unsigned int idx, const struct copy_src *c, size_t skip,
		   size_t n)
{
	struct brd_staged *s = &b->staged[idx];
	size_t got;
	int rc;

	while (n) {
		rc = file_read(b, c->staged, c->idx, c->off + skip,
			       n < sizeof(b->scratch) ? n : sizeof(b->scratch), &got);
		if (rc != 0)
			return rc;
		if (!got)
			return 1;
		rc = b->st->stage_write(b->st_inst, idx, s->have, b->scratch, got);
		if (rc != 0)
			return rc;
		s->have += got;
		skip += got;
		n -= got;
	}
	return 0;
}

/* Version 5: a PEM block written out from its text, through the scratch buffer, the first
 * skip bytes left out (storage holds them already). */
struct pem_out {
	struct brd_board *b;
	unsigned int idx;
	size_t skip, fill;
	int rc;
};

static void pem_flush(struct pem_out *o)
{
	struct brd_staged *s = &o->b->staged[o->idx];

	if (o->rc == 0 && o->fill) {
		o->rc = o->b->st->stage_write(o->b->st_inst, o->idx, s->have, o->b->scratch,
					      o->fill);
		if (o->rc == 0)
			s->have += o->fill;
	}
	o->fill = 0;
}

static void pem_emit(struct pem_out *o, const char *p, size_t k)
{
	size_t t = k < o->skip ? k : o->skip;

	o->skip -= t;
	p += t;
	k -= t;
	while (k && o->rc == 0) {
		t = sizeof(o->b->scratch) - o->fill;
		t = k < t ? k : t;
		memcpy(o->b->scratch + o->fill, p, t);
		o->fill += t;
		p += t;
		k -= t;
		if (o->fill == sizeof(o->b->scratch))
			pem_flush(o);
	}
}

/* Writes the PEM block of text[0..n) at staged file idx's end, from skip bytes into it.
 * Returns 0 or a storage error. */
static int pem_in(struct brd_board *b, unsigned int idx, const char *text, size_t n,
		  size_t skip)
{
	struct pem_out o = { b, idx, skip, 0, 0 };
	size_t i;

	pem_emit(&o, BRD_PEM_BEGIN, sizeof(BRD_PEM_BEGIN) - 1);
	for (i = 0; i < n; i += BRD_PEM_LINE) {
		pem_emit(&o, text + i, n - i < BRD_PEM_LINE ? n - i : BRD_PEM_LINE);
		pem_emit(&o, "\n", 1);
	}
	pem_emit(&o, BRD_PEM_END, sizeof(BRD_PEM_END) - 1);
	pem_flush(&o);
	return o.rc;
}

/* WRITE: STEP_NEXT when the chunk's file is complete (hash checked), for a folded COMMIT. */
static int cmd_write(struct brd_board *b, const struct brd_frame *f, struct step *st)
{
	struct brd_enc *e = &st->e;
	char path[BRD_MAX_PATH + 1], mode_s[8], msgbuf[256];
	uint64_t size = 0, off, total = 0, got_size = 0;
	struct brd_staged *s = NULL;
	uint8_t sha[32], got[32], *data = NULL;
	unsigned int mode = 0, i, idx = 0, kinds;
	struct brd_field v, cv, pv;
	struct copy_src cp;
	struct brd_msg m;
	const char *why;
	size_t n = 0, ncopy = 0, k;
	int rc = 0, ident = 1, raw = 0, copy = 0, pem = 0, src = 1;

	brd_msg_init(&m, msgbuf, sizeof(msgbuf));
	if (get_text(f, "path", path, sizeof(path), &m) != 0 ||
	    get_uint(f, "off", 0, UINT64_MAX, &off, &m) != 0) {
		answer_error(b, f, E_FIELD, m.buf);
		return STEP_ANSWERED;
	}
	/* Version 2: a later chunk may leave the file's identity out (all of it). */
	if (b->version >= 2 && !brd_frame_find(f, "mode", &v) && !brd_frame_find(f, "size", &v) &&
	    !brd_frame_find(f, "sha", &v))
		ident = 0;
	if (ident && (get_text(f, "mode", mode_s, sizeof(mode_s), &m) != 0 ||
		      get_uint(f, "size", 0, UINT64_MAX, &size, &m) != 0)) {
		answer_error(b, f, E_FIELD, m.buf);
		return STEP_ANSWERED;
	}
	if (ident && (!brd_frame_find(f, "sha", &v) || brd_field_hex(&v, "sha", sha, 32, &m) != 0)) {
		answer_error(b, f, E_FIELD, m.len ? m.buf : "WRITE frame has no field 'sha'");
		return STEP_ANSWERED;
	}
	/* The chunk: data (b64) in version 1; raw or copy too in version 2, exactly one; in
	 * version 4 a copy may be followed by data or raw, the chunk their bytes in that order;
	 * in version 5 pem is one more kind of bytes, a certificate's PEM block written out from
	 * its text. Data and raw are decoded in place: the frame's own bytes are not needed after
	 * them. */
	kinds = (unsigned int)brd_frame_find(f, "data", &v);
	if (b->version >= 2) {
		raw = brd_frame_find(f, "raw", &cv);
		copy = brd_frame_find(f, "copy", &cv);
		kinds += (unsigned int)raw;
		if (raw)
			brd_frame_find(f, "raw", &v);
	}
	if (b->version >= 5 && brd_frame_find(f, "pem", &pv)) {
		pem = 1;
		kinds++;
		v = pv;
	}
	if (kinds > 1 || (copy && kinds && b->version < 4) || !(kinds + (unsigned int)copy)) {
		answer_error(b, f, E_FIELD, kinds + (unsigned int)copy
						    ? "WRITE carries more than one kind of chunk "
						      "('data', 'raw', 'pem', 'copy')"
						    : "WRITE frame has no field 'data'");
		return STEP_ANSWERED;
	}
	if (copy) {
		src = copy_source(b, &cv, &cp, &m);
		rc = src < 0 ? -1 : 0;
		ncopy = (size_t)cp.len;
	}
	/* Decoding in place changes the line: no field is looked up after it. */
	data = (uint8_t *)(uintptr_t)v.val;
	if (rc == 0 && pem) {
		for (k = 0; k < v.len && brd_pem_char((unsigned char)v.val[k]); k++)
			;
		if (!v.len || k < v.len) {
			brd_msg_str(&m, "field 'pem': a certificate's base64 text expected");
			rc = -1;
		}
		n = v.len ? brd_pem_len(v.len) : 0;
	} else if (rc == 0 && raw) {
		rc = brd_field_raw(&v, "raw", data, v.len, &n, &m);
	} else if (rc == 0 && kinds) {
		rc = brd_field_b64(&v, "data", data, v.len, &n, &m);
	}
	if (rc < 0) {
		answer_error(b, f, E_FIELD, m.buf);
		return STEP_ANSWERED;
	}
	n += ncopy;
	for (k = 0; ident && mode_s[k]; k++) {
		if (mode_s[k] < '0' || mode_s[k] > '7' || k > 4)
			break;
		mode = mode * 8 + (unsigned int)(mode_s[k] - '0');
	}
	/* A device's credentials and configuration are never every local user's to change:
	 * no 0002. */
	if (ident && (!mode_s[0] || mode_s[k] || mode > 0777 || (mode & 02))) {
		brd_msg_str(&m, "mode \"");
		brd_msg_str(&m, mode_s);
		brd_msg_str(&m, "\" is not octal 0 .. 0777 without every user's write");
		answer_error(b, f, E_FIELD, m.buf);
		return STEP_ANSWERED;
	}
	why = brd_path_refusal(b, path);
	if (why) {
		brd_msg_str(&m, "path \"");
		brd_msg_str(&m, path);
		brd_msg_str(&m, "\": ");
		brd_msg_str(&m, why);
		answer_error(b, f, E_PATH, m.buf);
		return STEP_ANSWERED;
	}
	for (i = 0; i < BRD_MAX_STAGED; i++) {
		if (b->staged[i].path[0] && strcmp(b->staged[i].path, path) == 0) {
			s = &b->staged[i];
			idx = i;
		} else if (b->staged[i].path[0]) {
			total += b->staged[i].size;
		}
	}
	if (!ident) {
		if (!s) {
			/* A reboot lost it: the station starts the file again. */
			answer_have(b, f, E_OFFSET, 0, "no file is staged under this path; start "
						       "again at offset 0 with mode, size and sha");
			return STEP_ANSWERED;
		}
		size = s->size;
		mode = s->mode;
		memcpy(sha, s->sha, 32);
	}
	if (size > b->max_file) {
		msg_path(&m, path, "");
		brd_msg_uint(&m, size);
		brd_msg_str(&m, " bytes; this board takes at most ");
		brd_msg_uint(&m, b->max_file);
		brd_msg_str(&m, " per file");
		answer_error(b, f, E_SIZE, m.buf);
		return STEP_ANSWERED;
	}
	if (s && (s->size != size || memcmp(s->sha, sha, 32) != 0 || s->mode != mode) &&
	    off != 0) {
		/* A different file under the same path starts over, but only from 0. */
		answer_have(b, f, E_OFFSET, 0, "a different file was staged under this path; "
					       "start again at offset 0");
		return STEP_ANSWERED;
	}
	if (total + size > b->max_total) {
		msg_path(&m, path, "the staged files would exceed ");
		brd_msg_uint(&m, b->max_total);
		brd_msg_str(&m, " bytes");
		answer_error(b, f, E_SIZE, m.buf);
		return STEP_ANSWERED;
	}
	if (!s || s->size != size || memcmp(s->sha, sha, 32) != 0 || s->mode != mode) {
		if (!s) {
			for (idx = 0; idx < BRD_MAX_STAGED && b->staged[idx].path[0]; idx++)
				;
			if (idx == BRD_MAX_STAGED) {
				brd_msg_str(&m, "more than ");
				brd_msg_uint(&m, BRD_MAX_STAGED);
				brd_msg_str(&m, " files staged");
				answer_error(b, f, E_SIZE, m.buf);
				return STEP_ANSWERED;
			}
			s = &b->staged[idx];
		}
		memset(s, 0, sizeof(*s));
		rc = b->st->stage_open(b->st_inst, idx, path, mode);
		if (rc != 0) {
			msg_path(&m, path, "cannot stage");
			answer_failure(b, f, E_STORAGE, &m, rc, st_error(b));
			return STEP_ANSWERED;
		}
		memcpy(s->path, path, strlen(path) + 1);
		s->size = size;
		s->mode = mode;
		memcpy(s->sha, sha, 32);
	}
	if (off > s->have) {
		brd_msg_str(&m, "offset ");
		brd_msg_uint(&m, off);
		brd_msg_str(&m, " is past the ");
		brd_msg_uint(&m, s->have);
		brd_msg_str(&m, " bytes received");
		answer_have(b, f, E_OFFSET, s->have, m.buf);
		return STEP_ANSWERED;
	}
	if (off + n > size) {
		brd_msg_str(&m, "chunk ends at ");
		brd_msg_uint(&m, off + n);
		brd_msg_str(&m, ", past the size ");
		brd_msg_uint(&m, size);
		answer_error(b, f, E_SIZE, m.buf);
		return STEP_ANSWERED;
	}
	if (copy && !src && !s->done && off + ncopy > s->have) {
		msg_path(&m, path, "the copy's source is not staged or installed, or shorter "
				   "than asked: send the bytes");
		answer_have(b, f, E_SOURCE, s->have, m.buf);
		return STEP_ANSWERED;
	}
	/* Bytes below `have` are a retransmission of what storage holds already: only the new
	 * ones are written. */
	if (!s->done && off + n > s->have) {
		size_t skip = (size_t)(s->have - off);

		if (skip < ncopy) {
			rc = copy_in(b, idx, &cp, skip, ncopy - skip);
			skip = ncopy;
		}
		if (rc == 0 && off + n > s->have && pem) {
			rc = pem_in(b, idx, v.val, v.len, skip - ncopy);
		} else if (rc == 0 && off + n > s->have) {
			rc = b->st->stage_write(b->st_inst, idx, s->have, data + (skip - ncopy),
						n - skip);
			if (rc == 0)
				s->have = off + n;
		}
		if (rc == 1) {
			msg_path(&m, path, "the copy's source ended early: send the bytes");
			answer_have(b, f, E_SOURCE, s->have, m.buf);
			return STEP_ANSWERED;
		}
		if (rc != 0) {
			msg_path(&m, path, "cannot write");
			s->path[0] = 0;
			b->st->stage_discard(b->st_inst, (int)idx);
			answer_failure(b, f, E_STORAGE, &m, rc, st_error(b));
			return STEP_ANSWERED;
		}
	}
	if (!s->done && s->have == s->size) {
		rc = hash_file(b, 1, idx, got, &got_size);
		if (rc != 0 || got_size != s->size || memcmp(got, s->sha, 32) != 0) {
			/* A corrupt file is not kept: the path starts over. */
			s->path[0] = 0;
			b->st->stage_discard(b->st_inst, (int)idx);
			if (rc != 0) {
				msg_path(&m, path, "cannot read back");
				answer_failure(b, f, E_STORAGE, &m, rc, st_error(b));
				return STEP_ANSWERED;
			}
			msg_path(&m, path, "the ");
			brd_msg_uint(&m, got_size);
			brd_msg_str(&m, " bytes written do not hash to the SHA-256 given");
			answer_error(b, f, E_HASH, m.buf);
			return STEP_ANSWERED;
		}
		s->done = 1;
	}
	if (!st->more)
		answer_begin(b, e, f, "WRITE");
	brd_enc_text(e, "path", path);
	brd_enc_uint(e, "have", s->have);
	brd_enc_uint(e, "done", (uint64_t)s->done);
	return s->done ? STEP_NEXT : STEP_DONE;
}

/* Version 6: a WRITE of several files, each from its `path` to the next (PROTOCOL.md 10),
 * written in order into one answer. The first that fails answers ERROR alone (the files
 * before it stay staged). Returns the last file's result: STEP_NEXT when it is complete. */
static int write_files(struct brd_board *b, const struct brd_frame *f, struct step *st)
{
	size_t cut[BRD_MAX_STAGED + 1], pos = 0;
	struct brd_frame part = *f;
	struct brd_field v;
	unsigned int i, n = 0;
	int rc = STEP_DONE;

	/* Every file's bounds first: a file's chunk is decoded in place, over the line. */
	while (brd_frame_next(f, "path", &pos, &v)) {
		if (n == BRD_MAX_STAGED) {
			answer_error(b, f, E_SIZE, "a WRITE of more files than the board stages");
			return STEP_ANSWERED;
		}
		cut[n++] = (size_t)(v.val - f->line) - 5;
	}
	if (n < 2)
		return cmd_write(b, f, st);
	cut[0] = f->fields;
	cut[n] = f->fields_end + 1;
	for (i = 0; i < n && rc != STEP_ANSWERED; i++) {
		part.fields = cut[i];
		part.fields_end = cut[i + 1] - 1;
		st->more = i > 0;
		rc = cmd_write(b, &part, st);
	}
	return rc;
}

/* COMMIT */

/* A step's failure: answered ERROR, or, folded into another request, left out of that
 * request's answer (PROTOCOL.md 7.3): the station runs the step on its own then, and gets
 * the ERROR. */
static int step_failed(struct brd_board *b, const struct brd_frame *f, const struct step *st,
		       const char *code, const char *text)
{
	if (st->folded)
		return STEP_DONE;
	answer_error(b, f, code, text);
	return STEP_ANSWERED;
}

static int step_failure(struct brd_board *b, const struct brd_frame *f, const struct step *st,
			const char *code, struct brd_msg *m, int rc, const char *detail)
{
	if (st->folded)
		return STEP_DONE;
	answer_failure(b, f, code, m, rc, detail);
	return STEP_ANSWERED;
}

/* COMMIT: STEP_NEXT when the files are installed, for a folded VERIFY. */
static int cmd_commit(struct brd_board *b, const struct brd_frame *f, struct step *st)
{
	struct brd_commit_file files[BRD_MAX_STAGED];
	unsigned int i, n = 0;
	uint64_t count;
	char msgbuf[192], text[40];
	struct brd_msg m, t;
	int rc;

	brd_msg_init(&m, msgbuf, sizeof(msgbuf));
	for (i = 0; i < BRD_MAX_STAGED; i++)
		n += b->staged[i].path[0] != 0;
	if (st->has_count) {
		if (brd_field_uint(&st->count, st->folded ? "commit" : "count", 0, 0xFFFFFFFFu,
				   &count, &m) != 0)
			return step_failed(b, f, st, E_FIELD, m.buf);
		if (count != n) {
			brd_msg_uint(&m, n);
			brd_msg_str(&m, " files staged, the station expects ");
			brd_msg_uint(&m, count);
			return step_failed(b, f, st, E_INCOMPLETE, m.buf);
		}
	}
	n = 0;
	for (i = 0; i < BRD_MAX_STAGED; i++) {
		const struct brd_staged *s = &b->staged[i];

		if (!s->path[0])
			continue;
		if (!s->done) {
			msg_path(&m, s->path, "");
			brd_msg_uint(&m, s->have);
			brd_msg_str(&m, " of ");
			brd_msg_uint(&m, s->size);
			brd_msg_str(&m, " bytes received");
			return step_failed(b, f, st, E_INCOMPLETE, m.buf);
		}
		files[n].slot = i;
		files[n].path = s->path;
		files[n].mode = s->mode;
		files[n].size = s->size;
		memcpy(files[n].sha, s->sha, 32);
		n++;
	}
	if (n) {
		rc = b->st->commit(b->st_inst, files, n);
		if (rc != 0) {
			brd_msg_str(&m, "commit failed");
			return step_failure(b, f, st, E_STORAGE, &m, rc, st_error(b));
		}
		memset(b->staged, 0, sizeof(b->staged));
		brd_msg_init(&t, text, sizeof(text));
		brd_msg_str(&t, "gen ");
		brd_msg_uint(&t, b->st->generation(b->st_inst));
		brd_msg_str(&t, ", ");
		brd_msg_uint(&t, b->st->installed(b->st_inst));
		brd_msg_str(&t, " files");
		event(b, BRD_EV_COMMIT, text);
	}
	if (!st->folded)
		answer_begin(b, &st->e, f, "COMMIT");
	brd_enc_uint(&st->e, "gen", b->st->generation(b->st_inst));
	brd_enc_uint(&st->e, "files", b->st->installed(b->st_inst));
	return STEP_NEXT;
}

/* VERIFY */

/* DER ECDSA-Sig-Value from r || s. Returns its length. */
static size_t sig_der(const uint8_t rs[64], uint8_t *out)
{
	size_t n = 2, i, k;

	out[0] = 0x30;
	for (k = 0; k < 2; k++) {
		const uint8_t *v = rs + 32 * k;

		for (i = 0; i < 31 && v[i] == 0; i++)
			;
		out[n++] = 0x02;
		out[n++] = (uint8_t)(32 - i + (v[i] >> 7));
		if (v[i] & 0x80)
			out[n++] = 0;
		memcpy(out + n, v + i, 32 - i);
		n += 32 - i;
	}
	out[1] = (uint8_t)(n - 2);
	return n;
}

/* VERIFY with want (version 2): one SHA-256 over, for each wanted path, path NUL size NUL
 * sha256 (or path NUL "-" NUL when it is not installed), read back from storage. Returns 0,
 * or -1 with m saying what is wrong with the list. */
static int verify_sum(struct brd_board *b, const struct brd_field *want, uint8_t out[32],
		      struct brd_msg *m)
{
	char path[BRD_MAX_PATH + 1], num[21];
	uint8_t sha[32];
	struct brd_sha256 sum;
	uint64_t size;
	unsigned int k;
	int idx, r;

	brd_sha256_init_with(&sum, b->sha256_blocks);
	for (k = 0; (r = brd_field_item(want, "want", k, path, sizeof(path), m)) == 1; k++) {
		brd_sha256_update(&sum, path, strlen(path) + 1);
		idx = installed_find(b, path, &size);
		if (idx < 0 || hash_file(b, 0, (unsigned int)idx, sha, &size) != 0) {
			brd_sha256_update(&sum, "-", 2);
			continue;
		}
		brd_sha256_update(&sum, num, brd_uint_str(num, size));
		brd_sha256_update(&sum, "", 1);
		brd_sha256_update(&sum, sha, 32);
	}
	if (r < 0)
		return -1;
	brd_sha256_final(&sum, out);
	return 0;
}

/* The installed files as file= fields from index from on, as many as fit in e. */
static void verify_list(struct brd_board *b, struct brd_enc *e, unsigned int from)
{
	static const char hex[] = "0123456789abcdef";
	char path[BRD_MAX_PATH + 1], size_s[24], hexs[65];
	unsigned int nfiles = b->st->installed(b->st_inst), i, k;
	uint8_t sha[32];
	uint64_t size, off;
	struct brd_msg sm;

	for (i = from < nfiles ? from : nfiles; i < nfiles; i++) {
		const char *items[3];

		/* Read back from storage: what is there now, not what was recorded. */
		if (b->st->installed_info(b->st_inst, i, path, sizeof(path), &size) != 0)
			break;
		if (hash_file(b, 0, i, sha, &off) != 0)
			break;
		for (k = 0; k < 32; k++) {
			hexs[2 * k] = hex[sha[k] >> 4];
			hexs[2 * k + 1] = hex[sha[k] & 15];
		}
		hexs[64] = 0;
		brd_msg_init(&sm, size_s, sizeof(size_s));
		brd_msg_uint(&sm, off);
		items[0] = path;
		items[1] = size_s;
		items[2] = hexs;
		if (brd_enc_cost("file", strlen(path) + sm.len + 66) > brd_enc_room(e))
			break;
		brd_enc_list(e, "file", items, 3);
	}
}

/* VERIFY: the nonce signed, then the sum of the wanted files or the list from `from`. */
static int cmd_verify(struct brd_board *b, const struct brd_frame *f, struct step *st)
{
	uint8_t nonce[NONCE_MAX], digest[32], rs[64], sig[72], sum[32];
	char msgbuf[128];
	uint64_t from = 0;
	struct brd_sha256 c;
	struct brd_msg m;
	size_t n;
	int rc, want;

	brd_msg_init(&m, msgbuf, sizeof(msgbuf));
	if (!st->has_nonce)
		return step_failed(b, f, st, E_FIELD, "VERIFY frame has no field 'nonce'");
	if (brd_field_b64(&st->nonce, "nonce", nonce, sizeof(nonce), &n, &m) != 0 ||
	    (st->has_from && brd_field_uint(&st->from, "from", 0, 0xFFFFFFFFu, &from, &m) != 0))
		return step_failed(b, f, st, E_FIELD, m.buf);
	if (n < NONCE_MIN) {
		brd_msg_str(&m, "nonce of ");
		brd_msg_uint(&m, n);
		brd_msg_str(&m, " bytes; at least 16 required");
		return step_failed(b, f, st, E_FIELD, m.buf);
	}
	rc = b->key->exists(b->key_inst);
	if (rc != 1)
		return step_failed(b, f, st, E_NOKEY, "no key: send CSR first");
	brd_sha256_init_with(&c, b->sha256_blocks);
	brd_sha256_update(&c, POP_CONTEXT, sizeof(POP_CONTEXT) - 1);
	brd_sha256_update(&c, nonce, n);
	brd_sha256_final(&c, digest);
	rc = b->key->sign(b->key_inst, digest, rs);
	if (rc != 0) {
		brd_msg_str(&m, "signing the nonce failed");
		return step_failure(b, f, st, "INTERNAL", &m, rc, key_error(b));
	}
	want = b->version >= 2 && st->has_want;
	if (want && verify_sum(b, &st->want, sum, &m) != 0)
		return step_failed(b, f, st, E_FIELD, m.buf);
	if (!st->folded) {
		/* Folded, COMMIT's answer said these already. */
		answer_begin(b, &st->e, f, "VERIFY");
		brd_enc_uint(&st->e, "gen", b->st->generation(b->st_inst));
		brd_enc_uint(&st->e, "files", b->st->installed(b->st_inst));
	}
	if (!want)
		brd_enc_uint(&st->e, "from", from);
	brd_enc_text(&st->e, "alg", "ecdsa-p256-sha256");
	brd_enc_b64(&st->e, "sig", sig, sig_der(rs, sig));
	if (want)
		brd_enc_hex(&st->e, "sum", sum, 32);
	else
		verify_list(b, &st->e, (unsigned int)from);
	return STEP_DONE;
}

/* BAUD */

static int cmd_baud(struct brd_board *b, const struct brd_frame *f, struct step *st)
{
	uint64_t rate, ms = 2000;
	char msgbuf[128];
	struct brd_msg m;
	struct brd_enc e;
	unsigned int i;

	(void)st;
	brd_msg_init(&m, msgbuf, sizeof(msgbuf));
	if (get_uint(f, "rate", 1, 100000000, &rate, &m) != 0 ||
	    get_uint_opt(f, "ms", 100, 60000, &ms, &m) != 0) {
		answer_error(b, f, E_FIELD, m.buf);
		return STEP_ANSWERED;
	}
	for (i = 0; i < b->nbauds && b->bauds[i] != rate; i++)
		;
	if (i == b->nbauds || !b->plat.set_baud) {
		brd_msg_uint(&m, rate);
		brd_msg_str(&m, " baud is not in this board's list");
		answer_error(b, f, E_BAUD, m.buf);
		return STEP_ANSWERED;
	}
	answer_begin(b, &e, f, "BAUD");
	brd_enc_uint(&e, "rate", rate);
	brd_enc_uint(&e, "ms", ms);
	/* The switch happens once this answer has left at the old rate (brd_tx_done). */
	b->baud_pending = 1;
	b->baud_trial = 0;
	b->baud_old = b->baud_cur;
	b->baud_new = (uint32_t)rate;
	b->baud_ms = (uint32_t)ms;
	answer_send(b, &e, f);
	return STEP_ANSWERED;
}

/* DONE */

static int cmd_done(struct brd_board *b, const struct brd_frame *f, struct step *st)
{
	char result[8], text[128], msgbuf[160];
	struct brd_msg m;
	struct brd_enc e;
	int pass;

	(void)st;
	brd_msg_init(&m, msgbuf, sizeof(msgbuf));
	if (get_text(f, "result", result, sizeof(result), &m) != 0 ||
	    get_text_opt(f, "text", text, sizeof(text), &m) != 0) {
		answer_error(b, f, E_FIELD, m.buf);
		return STEP_ANSWERED;
	}
	pass = strcmp(result, "pass") == 0;
	if (!pass && strcmp(result, "fail") != 0) {
		brd_msg_str(&m, "result \"");
		brd_msg_str(&m, result);
		brd_msg_str(&m, "\" is neither pass nor fail");
		answer_error(b, f, E_FIELD, m.buf);
		return STEP_ANSWERED;
	}
	answer_begin(b, &e, f, "DONE");
	brd_enc_text(&e, "result", result);
	answer_send(b, &e, f);
	event(b, pass ? BRD_EV_DONE_PASS : BRD_EV_DONE_FAIL, text);
	return STEP_ANSWERED;
}

/* Dispatch. */

enum { CMD_HELLO, CMD_CSR, CMD_WRITE, CMD_COMMIT, CMD_VERIFY };

static const struct {
	const char *type;
	int (*run)(struct brd_board *b, const struct brd_frame *f, struct step *st);
} commands[] = {
	{ "HELLO", cmd_hello },   { "CSR", cmd_csr },   { "WRITE", cmd_write },
	{ "COMMIT", cmd_commit }, { "VERIFY", cmd_verify }, { "BAUD", cmd_baud },
	{ "DONE", cmd_done },
};

/* The step a folded request runs after step i (version 3): COMMIT after the WRITE that
 * carries commit, VERIFY after a COMMIT (or that WRITE) that carries its nonce; else
 * none. */
static unsigned int fold_next(const struct brd_board *b, const struct step *st, unsigned int i)
{
	if (b->version < 3)
		return 0;
	if (i == CMD_WRITE && st->has_count)
		return CMD_COMMIT;
	if (i == CMD_COMMIT && st->has_nonce)
		return CMD_VERIFY;
	return 0;
}

/* Runs request f's command, and the steps folded into it, into one answer. */
static void run_steps(struct brd_board *b, const struct brd_frame *f, unsigned int i)
{
	struct step st;
	int rc;

	memset(&st, 0, sizeof(st));
	if (i == CMD_COMMIT || (i == CMD_WRITE && b->version >= 3))
		st.has_count = brd_frame_find(f, i == CMD_WRITE ? "commit" : "count", &st.count);
	if (i == CMD_VERIFY || (st.has_count && b->version >= 3)) {
		st.has_nonce = brd_frame_find(f, "nonce", &st.nonce);
		st.has_from = brd_frame_find(f, "from", &st.from);
		st.has_want = brd_frame_find(f, "want", &st.want);
	}
	rc = i == CMD_WRITE && b->version >= 6 ? write_files(b, f, &st) : commands[i].run(b, f, &st);
	while (rc == STEP_NEXT && (i = fold_next(b, &st, i)) != 0) {
		st.folded = 1;
		rc = commands[i].run(b, f, &st);
	}
	if (rc != STEP_ANSWERED)
		answer_send(b, &st.e, f);
}

/* A new request is answered in the buffer after the newest kept answer (version 7: the
 * oldest of the window goes), or, before version 7, in place of the one answer kept. */
static void next_answer(struct brd_board *b)
{
	unsigned int i;

	if (BRD_WINDOW > 1 && b->hello && b->version >= 7) {
		b->txi = (b->txi + 1) % BRD_WINDOW;
		b->kept[b->txi].valid = 0;
		return;
	}
	for (i = 0; i < BRD_WINDOW; i++)
		b->kept[i].valid = 0;
	b->txi = 0;
}

static void on_frame(struct brd_board *b, const struct brd_frame *f, uint64_t now_ms)
{
	char msgbuf[96];
	struct brd_msg m;
	unsigned int i;

	(void)now_ms;
	if (f->kind != 'Q')
		return; /* an echo of our own answers, or another board on the line */
	if (b->baud_trial) {
		/* A good frame at the new rate: the switch worked. */
		b->baud_trial = 0;
	}
	for (i = 0; i < BRD_WINDOW; i++) {
		if (b->kept[i].valid && f->seq == b->kept[i].seq && f->crc == b->kept[i].crc) {
			b->plat.send(b->plat.arg, b->tx[i], b->kept[i].len, 0);
			return;
		}
	}
	next_answer(b);
	if (b->plat.request && b->plat.request(b->plat.arg, f) != 0)
		return;
	if (f->seq == 0) {
		answer_error(b, f, E_FIELD, "sequence number 0 is reserved for events");
		return;
	}
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(commands[i].type, f->type) == 0)
			break;
	}
	brd_msg_init(&m, msgbuf, sizeof(msgbuf));
	if (i == sizeof(commands) / sizeof(commands[0])) {
		brd_msg_str(&m, "unknown command \"");
		brd_msg_str(&m, f->type);
		brd_msg_str(&m, "\"; this board knows HELLO CSR WRITE COMMIT VERIFY BAUD DONE");
		answer_error(b, f, E_UNKNOWN, m.buf);
		return;
	}
	if (!b->hello && i != 0 && open_from_boot(b, f, &m) != 0)
		return;
	if (!b->hello && i != 0) {
		brd_msg_str(&m, f->type);
		brd_msg_str(&m, " before HELLO (board booted ");
		brd_msg_str(&m, b->boot_id);
		brd_msg_str(&m, ")");
		answer_error(b, f, E_HELLO, m.buf);
		return;
	}
	run_steps(b, f, i);
}

/* A request that arrived damaged: say so at once (seq 0, not kept), so the station
 * retransmits without waiting for its timeout. */
static void on_bad_frame(struct brd_board *b, const char *why)
{
	struct brd_enc e;
	char buf[64 + 3 * sizeof(b->dec.err)];
	size_t len;

	brd_enc_begin(&e, buf, sizeof(buf), 'A', 0, "ERROR");
	brd_enc_text(&e, "code", E_FRAME);
	brd_enc_text(&e, "text", why);
	len = brd_enc_end(&e);
	if (len)
		b->plat.send(b->plat.arg, buf, len, 1);
}

size_t brd_input(struct brd_board *b, const void *data, size_t n, uint64_t now_ms)
{
	struct brd_frame f;
	size_t pos = 0;

	b->paused = 0;
	brd_tick(b, now_ms);
	while (pos < n && !b->paused) {
		switch (brd_decoder_run(&b->dec, data, n, &pos, &f)) {
		case BRD_DEC_FRAME:
			on_frame(b, &f, now_ms);
			break;
		case BRD_DEC_ERROR:
			/* Noise at a rate the board is trying does not count against it;
			 * the answer would be noise to the station too. */
			if (!b->baud_trial)
				on_bad_frame(b, b->dec.err);
			break;
		case BRD_DEC_NONE:
			break;
		}
	}
	return pos;
}

void brd_pause(struct brd_board *b)
{
	b->paused = 1;
}

void brd_refuse(struct brd_board *b, const struct brd_frame *req, const char *code,
		const char *text)
{
	answer_error(b, req, code, text);
}

void brd_tx_done(struct brd_board *b, uint64_t now_ms)
{
	char text[12];
	struct brd_msg m;

	if (!b->baud_pending)
		return;
	b->baud_pending = 0;
	b->baud_cur = b->baud_new;
	b->baud_trial = 1;
	b->baud_deadline = now_ms + b->baud_ms;
	brd_decoder_reset(&b->dec);
	b->plat.set_baud(b->plat.arg, b->baud_cur);
	brd_msg_init(&m, text, sizeof(text));
	brd_msg_uint(&m, b->baud_cur);
	event(b, BRD_EV_BAUD, text);
}

void brd_tick(struct brd_board *b, uint64_t now_ms)
{
	char text[12];
	struct brd_msg m;

	if (!b->baud_trial || now_ms < b->baud_deadline)
		return;
	b->baud_trial = 0;
	b->baud_cur = b->baud_old;
	brd_decoder_reset(&b->dec);
	b->plat.set_baud(b->plat.arg, b->baud_cur);
	brd_msg_init(&m, text, sizeof(text));
	brd_msg_uint(&m, b->baud_cur);
	event(b, BRD_EV_FALLBACK, text);
}

uint64_t brd_deadline(const struct brd_board *b)
{
	return b->baud_trial ? b->baud_deadline : 0;
}

uint32_t brd_baud(const struct brd_board *b)
{
	return b->baud_cur;
}

int brd_in_session(const struct brd_board *b)
{
	return b->hello;
}
