/* The slot's files and verification: the rendered files put on the wire (paths, modes,
 * hashes), WRITE chunks and what the board reports it has, COMMIT, VERIFY pages with the
 * read-back hashes and the proof of possession of the key the certificate certifies. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/rand.h>

#include "ecdsa.h"
#include "digest.h"
#include "err.h"
#include "log.h"
#include "slot_int.h"
#include "sota.h"

static int proto_path(const char *dir, const char *abs, char *out, size_t outlen, char *err,
		      size_t errlen);
static int check_pop(struct slot_run *r, const uint8_t *sig, size_t siglen);
static int add_verify(struct st_slot *s, struct drv_proto_builder *b);
static int commit_fields(struct st_slot *s, int kind, const struct drv_proto_frame *f);
static void committed(struct st_slot *s, const struct drv_proto_frame *f);

/* ---- The files on the wire ----------------------------------------------------------- */

/* Where a profile's absolute path goes on the wire (st_profile_wire_path), held to the
 * protocol's path rule, which the profile loader applied already to what it could know. */
static int proto_path(const char *dir, const char *abs, char *out, size_t outlen, char *err,
		      size_t errlen)
{
	const char *rel = st_profile_wire_path(dir, abs);
	const char *why;
	size_t bad;

	why = drv_proto_path_problem(rel, &bad);
	if (why)
		return st_errf(err, errlen, ST_E_SLOT_PATH,
			       "file %s cannot be written over the board protocol: '%s' %s", abs,
			       rel, why);
	st_msgf(out, outlen, "%s", rel);
	return 0;
}

/* Where the nlen bytes of needle first stand in hay, or NULL. memmem() prepares a long
 * needle whole before it looks, which for files that rarely hold one another costs more than
 * comparing at the few places a short prefix of it stands (PEM files share their first line). */
static const unsigned char *find_in(const unsigned char *hay, size_t hlen,
				    const unsigned char *needle, size_t nlen)
{
	size_t pre = nlen < 32 ? nlen : 32;
	const unsigned char *at = hay, *end = hay + hlen;

	while (nlen && nlen <= (size_t)(end - at) &&
	       (at = memmem(at, (size_t)(end - at) - nlen + pre, needle, pre))) {
		if (memcmp(at, needle, nlen) == 0)
			return at;
		at++;
	}
	return NULL;
}

/* Version 2 copies: the longest earlier file that file i holds whole (client.chained starts
 * with client.pem), so that a board of version 2 copies those bytes instead of receiving
 * them twice. Files shorter than a copy request are not worth one. */
static void find_copy(struct wfile *wf, size_t i)
{
	struct wfile *w = &wf[i];

	w->cp_src = -1;
	for (size_t j = 0; j < i; j++) {
		const struct wfile *src = &wf[j];
		const unsigned char *at;

		if (src->len < 128 || src->len <= w->cp_len || src->len > w->len)
			continue;
		at = find_in(w->data, w->len, src->data, src->len);
		if (!at)
			continue;
		w->cp_src = (int)j;
		w->cp_at = (size_t)(at - w->data);
		w->cp_len = src->len;
	}
}

/* The files as they go on the wire, in the order they are written: those that do not hold
 * the certificate first (*nearly of them, from rd[0], or as they are in keep when it is not
 * NULL: written already), the *npublic made of the CA's certificates alone before the
 * others; then those that do (from rd[1]; none when it is NULL). Each group in the
 * profile's order. On success *out is the array (free()). */
static int wire_files(struct st_slot *s, const struct st_render *const rd[2],
		      const struct wfile *keep, struct wfile **out, size_t *nearly,
		      size_t *npublic, char *err, size_t errlen)
{
	struct slot_run *r = s->run;
	const struct st_profile *p = r->profile;
	const char *dir = p->sota_config_dir ? p->sota_config_dir : ST_SOTA_DEFAULT_DIR;
	struct wfile *wf = calloc(rd[0]->n ? rd[0]->n : 1, sizeof(*wf));
	size_t k = 0, total = 0;
	int rc;

	if (!wf)
		return st_errf(err, errlen, ST_E_NOMEM, "out of memory");
	/* Group 0: public files; 1: the other files without the certificate; 2: with it. */
	for (int g = 0; g < 3 && rd[g / 2]; g++) {
		int cert = g / 2;

		for (size_t i = 0; i < rd[cert]->n; i++) {
			const struct st_render_file *rf = &rd[cert]->files[i];
			struct wfile *w = &wf[k];

			if (!rf->path || st_profile_file_uses_cert(p, i) != cert ||
			    (!cert && st_profile_file_is_public(p, i) != (g == 0)))
				continue;
			if (!cert && keep) {
				*w = keep[k++];
				total += w->len;
				continue;
			}
			w->ri = i;
			rc = proto_path(dir, rf->path, w->path, sizeof(w->path), err, errlen);
			if (rc < 0)
				goto fail;
			for (size_t j = 0; j < k; j++) {
				if (strcmp(wf[j].path, w->path) == 0) {
					rc = st_errf(err, errlen, ST_E_SLOT_PATH,
						     "files %s and %s both go to %s on the board",
						     rd[cert && j >= *nearly]->files[wf[j].ri].path,
						     rf->path, w->path);
					goto fail;
				}
			}
			/* As one render holds them (the two halves were rendered apart). */
			total += rf->len;
			if (total > ST_PROFILE_MAX_TOTAL_BYTES) {
				rc = st_errf(err, errlen, ST_E_RENDER_LIMIT,
					     "%s: the files of one board exceed %d bytes in total",
					     rf->path, ST_PROFILE_MAX_TOTAL_BYTES);
				goto fail;
			}
			st_msgf(w->mode, sizeof(w->mode), "%04o", rf->mode & 07777);
			w->data = rf->data;
			w->len = rf->len;
			st_digest(ST_SHA256, rf->data, rf->len, w->sha);
			find_copy(wf, k);
			/* A certificate signed now is on no board yet; one delivered again may be.
			 * Files shorter than a copy request are not worth one. */
			w->inst = w->len >= 128 && (!cert || r->reused);
			k++;
		}
		if (g == 0)
			*npublic = k;
		else if (g == 1)
			*nearly = k;
	}
	*out = wf;
	return 0;
fail:
	free(wf);
	return rc;
}

/* The files of the run's profile, those that hold the certificate (cert 1: cert_pem is it)
 * or those that do not (-1), or all (0). */
static int render(struct st_slot *s, int cert, const char *cert_pem, struct st_render **out,
		  char *err, size_t errlen)
{
	struct st_render_input in;

	memset(&in, 0, sizeof(in));
	in.device_id = s->run->device_id;
	in.hardware_id = s->board.hw;
	in.cert_pem = cert_pem;
	in.chain_pem = s->env->chain_pem;
	in.root_pem = s->env->root_pem;
	in.cert_files = cert;
	in.sota_cache = &s->sota_cache;
	return st_profile_render(s->run->profile, &in, out, err, errlen);
}

/* From the CSR's arrival: the files that do not hold the certificate, to go to the board
 * while it is checked and signed (slot_kick() in queued, as far as slot_files_open() lets
 * them). Nothing when every file holds it, or when the render fails: the render after
 * signing then says why. */
void slot_prepare_early(struct st_slot *s)
{
	struct slot_run *r = s->run;
	struct st_render *rd = NULL;
	const struct st_render *halves[2] = { NULL, NULL };
	struct wfile *wf = NULL;
	size_t nearly = 0, npublic = 0;
	char err[ST_ERR_MAX];

	if (r->wf || render(s, -1, NULL, &rd, err, sizeof(err)) != 0)
		return;
	halves[0] = rd;
	if (wire_files(s, halves, NULL, &wf, &nearly, &npublic, err, sizeof(err)) != 0 ||
	    nearly == 0) {
		free(wf);
		st_render_free(rd);
		return;
	}
	r->render_early = rd;
	r->wf = wf;
	r->nfiles = r->nearly = nearly;
	r->npublic = npublic;
	r->wi = 0;
	r->woff = 0;
}

/* How many of the files, in the order they go, may go now. While the certificate is
 * signed, those without it, and until the intent is recorded only the public ones: a board
 * whose CSR is refused gets no file of the profile's own (it may be private). */
size_t slot_files_open(const struct st_slot *s)
{
	const struct slot_run *r = s->run;

	if (s->state != ST_SLOT_QUEUED)
		return r->nfiles;
	return r->accepted ? r->nearly : r->npublic;
}

int slot_prepare_files(struct st_slot *s, char *err, size_t errlen)
{
	struct slot_run *r = s->run;
	const struct st_render *halves[2];
	struct st_render *rd = NULL;
	struct wfile *wf = NULL;
	char *cert_pem = NULL;
	size_t cert_len, nearly = 0, npublic = 0;
	int rc;

	rc = st_cert_pem(r->cert->der, r->cert->der_len, &cert_pem, &cert_len);
	if (rc < 0)
		return st_errf(err, errlen, rc, "out of memory");
	/* With files gone early, only the rest is rendered now. */
	rc = render(s, r->render_early ? 1 : 0, cert_pem, &rd, err, errlen);
	halves[0] = r->render_early ? r->render_early : rd;
	halves[1] = rd;
	if (rc == 0)
		rc = wire_files(s, halves, r->wf, &wf, &nearly, &npublic, err, errlen);
	free(cert_pem);
	if (rc != 0) {
		st_render_free(rd);
		return rc;
	}
	free(r->wf); /* the early files are in wf as they were, with what the board said */
	r->render = rd;
	r->wf = wf;
	r->nfiles = rd->n;
	r->nearly = nearly;
	r->npublic = npublic;
	return 0;
}

/* ---- Files --------------------------------------------------------------------------- */

/* Version 3: VERIFY's fields on the request in b, with a new nonce, when they fit (b as it
 * was otherwise). Returns FOLD_VERIFY when they are there, else 0. */
static unsigned fold_verify(struct st_slot *s, struct drv_proto_builder *b)
{
	struct drv_proto_builder was = *b;

	if (s->board.version < 3)
		return 0;
	slot_new_nonce(s->run);
	if (add_verify(s, b) != 0 || b->err) {
		*b = was;
		return 0;
	}
	return FOLD_VERIFY;
}

void slot_send_commit(struct st_slot *s)
{
	struct drv_proto_builder b;

	slot_begin_req(s, &b, DRV_PROTO_COMMIT);
	drv_proto_add_uint(&b, "count", s->run->nfiles);
	s->run->fold = fold_verify(s, &b);
	slot_send_req(s, &b, RQ_COMMIT);
}

/* A copy (version 2) of n bytes at off of the file the board holds under path, of at most
 * its frame's size. Returns n as cut to that. */
static size_t add_copy(struct st_slot *s, struct drv_proto_builder *b, const char *path,
		       size_t off, size_t n)
{
	const char *items[3];
	char off_s[24], len_s[24];

	if (n > s->tx_max)
		n = s->tx_max;
	snprintf(off_s, sizeof(off_s), "%zu", off);
	snprintf(len_s, sizeof(len_s), "%zu", n);
	items[0] = path;
	items[1] = off_s;
	items[2] = len_s;
	drv_proto_add_list(b, "copy", items, 3);
	return n;
}

/* Bytes off .. off+rest of file w, or as many of them as fit in b: raw or base64, whichever
 * carries more (raw from version 2), or a certificate's PEM block whole from its text
 * (version 5). Returns how many. An empty file gets its empty field; when none of rest fits,
 * nothing is added. */
static size_t add_bytes(struct st_slot *s, struct drv_proto_builder *b, const struct wfile *w,
			size_t off, size_t rest)
{
	size_t n, nr = 0, block, text;

	/* A PEM block goes as its text: no line feeds (%0A on the line), no armor. */
	if (s->board.version >= 5 && (block = drv_proto_pem_block(w->data + off, rest, &text)) &&
	    drv_proto_field_cost("pem", text) <= drv_proto_room(b) &&
	    b->nfields < DRV_PROTO_MAX_FIELDS) {
		drv_proto_add_pem(b, "pem", w->data + off, block, text);
		return block;
	}
	n = drv_proto_b64_room(b, "data");
	if (n > rest)
		n = rest;
	if (s->board.version >= 2)
		nr = drv_proto_raw_room(b, "raw", w->data + off, rest);
	if (rest && !n && !nr)
		return 0;
	/* Raw where it carries more of the file in this frame, or the same bytes in fewer:
	 * text files (PEM, TOML) go at about 1.05 bytes a byte instead of 1.33. */
	if (s->board.version >= 2 &&
	    (nr > n || (nr == n && drv_proto_field_cost("raw", drv_proto_raw_len(w->data + off, n)) <
					   drv_proto_field_cost("data", drv_b64_len(n))))) {
		drv_proto_add_raw(b, "raw", w->data + off, nr);
		return nr;
	}
	drv_proto_add_b64(b, "data", w->data + off, n);
	return n;
}

/* The chunk of file w at r->woff that fits in b: a copy, raw bytes or base64, whichever
 * carries the most (version 2); in version 4 a copy and the bytes after it. Returns its
 * length. */
static size_t add_chunk_at(struct st_slot *s, struct drv_proto_builder *b, const struct wfile *w,
			   size_t off)
{
	struct slot_run *r = s->run;
	size_t n, rest = w->len - off;
	int v2 = s->board.version >= 2;

	/* The board's installed file under the same path, which it likely holds the same (it
	 * answers ERROR when not, and the bytes go then). */
	r->inst_sent = v2 && w->inst && s->board.gen > 0;
	if (r->inst_sent)
		return add_copy(s, b, w->path, off, rest);
	if (v2 && w->cp_src >= 0 && !w->nocopy) {
		/* Bytes the board holds already in an earlier file. */
		if (off >= w->cp_at && off < w->cp_at + w->cp_len) {
			n = add_copy(s, b, r->wf[w->cp_src].path, off - w->cp_at,
				     w->cp_at + w->cp_len - off);
			/* Version 4: the bytes that follow the copy ride with it. */
			if (s->board.version < 4 || off + n < w->cp_at + w->cp_len || off + n == w->len)
				return n;
			return n + add_bytes(s, b, w, off + n, w->len - (off + n));
		}
		if (off < w->cp_at)
			rest = w->cp_at - off; /* up to the copy */
	}
	return add_bytes(s, b, w, off, rest);
}

static size_t add_chunk(struct st_slot *s, struct drv_proto_builder *b, const struct wfile *w)
{
	return add_chunk_at(s, b, w, (size_t)s->run->woff);
}

/* File w's identity: its first chunk names it (and one after an error, when the board may
 * hold another file under the path). */
static void add_ident(struct drv_proto_builder *b, const struct wfile *w)
{
	drv_proto_add_text(b, "mode", w->mode);
	drv_proto_add_uint(b, "size", w->len);
	drv_proto_add_hex(b, "sha", w->sha, sizeof(w->sha));
}

/* Version 6: after the chunk that completes file wi, the files that follow it, each whole,
 * as many as fit in b (PROTOCOL.md 10); COMMIT and VERIFY ride on the one that completes
 * the last file when they fit too. A copy of an installed file goes alone: the board's
 * ERROR to it must name it. */
static void add_files(struct st_slot *s, struct drv_proto_builder *b)
{
	struct slot_run *r = s->run;
	struct drv_proto_builder was;
	size_t j;

	for (j = r->wi + 1; j < slot_files_open(s) && r->nsect < SLOT_WRITE_FILES; j++) {
		const struct wfile *w = &r->wf[j];

		if (w->inst && s->board.gen > 0)
			break;
		was = *b;
		drv_proto_add_text(b, "path", w->path);
		add_ident(b, w);
		drv_proto_add_uint(b, "off", 0);
		if (b->err || add_chunk_at(s, b, w, 0) != w->len || b->err) {
			*b = was;
			break;
		}
		r->nsect++;
	}
	if (j < r->nfiles || r->nsect == 1 || s->state != ST_SLOT_SIGNED)
		return;
	was = *b;
	drv_proto_add_uint(b, "commit", r->nfiles);
	r->fold = FOLD_COMMIT | fold_verify(s, b);
	if (b->err) {
		*b = was;
		r->fold = 0;
	}
}

/* The WRITE of file wi from woff, into b (begun): the chunk, the files after it that fit
 * (version 6) and the folds (version 3); sets the run's fold, nsect and inst_sent for it. */
static void build_write(struct st_slot *s, struct drv_proto_builder *b)
{
	struct slot_run *r = s->run;
	struct drv_proto_builder base;
	struct wfile *w = &r->wf[r->wi];
	unsigned fold = 0;
	size_t n;

	drv_proto_add_text(b, "path", w->path);
	/* Version 2: only the first chunk names the file (and one after an error, when the
	 * board may hold another file under the path). */
	if (s->board.version < 2 || r->woff == 0 || r->wident)
		add_ident(b, w);
	drv_proto_add_uint(b, "off", r->woff);
	/* Version 3: the chunk that completes the last file carries COMMIT, and VERIFY when
	 * they fit with it; a chunk that fits only without them goes without (COMMIT then
	 * carries VERIFY), so that a fold never costs a round trip. */
	base = *b;
	if (s->board.version >= 3 && r->wi + 1 == r->nfiles && s->state == ST_SLOT_SIGNED) {
		for (unsigned want = FOLD_COMMIT | FOLD_VERIFY; want; want >>= 1) {
			*b = base;
			drv_proto_add_uint(b, "commit", r->nfiles);
			fold = FOLD_COMMIT;
			if (want & FOLD_VERIFY)
				fold |= fold_verify(s, b);
			n = add_chunk(s, b, w);
			if (!b->err && r->woff + n == w->len)
				break;
			fold = 0;
		}
		if (!fold)
			*b = base;
	}
	r->fold = fold;
	r->nsect = 1;
	n = fold ? 0 : add_chunk(s, b, w);
	r->next_wi = r->woff + n == w->len ? r->wi + 1 : r->wi;
	if (!fold && r->next_wi > r->wi && s->board.version >= 6 && !r->single && !r->inst_sent)
		add_files(s, b);
	if (r->next_wi > r->wi)
		r->next_wi = r->wi + r->nsect;
}

/* The run's WRITE position and what its WRITE carries: a WRITE built ahead (pipe_write) or
 * dry (slot_public_waits) leaves them as they were. */
struct write_state {
	size_t wi, nsect, next_wi;
	uint64_t woff;
	unsigned fold;
	int wident, inst_sent;
};

static struct write_state write_state_of(const struct slot_run *r)
{
	return (struct write_state){ r->wi, r->nsect, r->next_wi, r->woff, r->fold, r->wident,
				     r->inst_sent };
}

static void write_state_restore(struct slot_run *r, const struct write_state *w)
{
	r->wi = w->wi;
	r->nsect = w->nsect;
	r->next_wi = w->next_wi;
	r->woff = w->woff;
	r->fold = w->fold;
	r->wident = w->wident;
	r->inst_sent = w->inst_sent;
}

/* Before the request is accepted: whether the public files should rather wait for it,
 * because once it is accepted they would go in one WRITE with the next file (version 6),
 * and on their own they would cost a request more (and to a board that takes no WRITE
 * behind another, a turn more). */
int slot_public_waits(struct st_slot *s)
{
	struct slot_run *r = s->run;
	struct drv_proto_builder b;
	struct write_state was;
	char buf[DRV_PROTO_MAX_LINE];
	size_t need = 0;
	int waits;

	if (r->accepted || r->wi >= r->npublic || r->npublic >= r->nearly || r->single ||
	    s->board.version < 6)
		return 0;
	/* Cheap first: the rest of the public files and the next file cannot share a frame
	 * when their bytes alone do not fit. No encoding carries much less than a byte of a
	 * file a byte (a PEM block's text drops its armor and line feeds: about 0.9), and
	 * the next file's part names it (path, mode, size, sha, off). */
	for (size_t j = r->wi; j <= r->npublic; j++)
		need += (r->wf[j].len - (j == r->wi ? (size_t)r->woff : 0)) * 4 / 5;
	need += strlen(r->wf[r->npublic].path) + 90;
	if (need > s->tx_max)
		return 0;
	/* The WRITE as it would go once accepted; the run's WRITE fields as they were. */
	was = write_state_of(r);
	r->accepted = 1;
	drv_proto_begin(&b, buf, s->tx_max < sizeof(buf) ? s->tx_max : sizeof(buf),
			DRV_PROTO_REQUEST, 0, DRV_PROTO_WRITE);
	build_write(s, &b);
	waits = r->next_wi > r->npublic;
	r->accepted = 0;
	write_state_restore(r, &was);
	return waits;
}

/* Version 7 (PROTOCOL.md 11): behind the outstanding WRITE (sent or not yet), the one that
 * follows it when it is answered as expected, for a board that takes two requests at once:
 * only when that WRITE completes its files and carries no other step, so that the next
 * one's bytes do not hang on its answer, and not while writing goes one file at a time
 * after an ERROR. The run's write position is as it was. */
static void pipe_write(struct st_slot *s)
{
	struct slot_run *r = s->run;
	struct drv_proto_builder b;
	struct write_state was = write_state_of(r);
	size_t next = r->next_wi, at = s->req_len, len;
	uint32_t seq = slot_seq_after(s->seq);
	char err[160];

	if (s->board.version < 7 || s->board.win < 2 || s->pipe_at || r->fold || r->inst_sent ||
	    r->single || next <= r->wi || next >= slot_files_open(s))
		return;
	r->wi = next;
	r->woff = 0;
	r->wident = 0;
	drv_proto_begin(&b, s->req + at, s->tx_max, DRV_PROTO_REQUEST, seq, DRV_PROTO_WRITE);
	build_write(s, &b);
	r->pipe_nsect = r->nsect;
	r->pipe_fold = r->fold;
	r->pipe_inst = r->inst_sent;
	r->pipe_wi = next;
	r->pipe_next = r->next_wi;
	write_state_restore(r, &was);
	if (drv_proto_end(&b, &len, err, sizeof(err)) != 0)
		return; /* it goes on its own once this one is answered */
	s->seq = seq;
	s->pipe_seq = seq;
	s->pipe_at = at;
	s->req_len = at + len;
	s->requests++;
	s->piped++;
}

void slot_pipe_more(struct st_slot *s)
{
	size_t len = s->req_len;

	pipe_write(s);
	if (s->req_len != len)
		slot_tx_flush(s);
}

void slot_send_write(struct st_slot *s)
{
	struct slot_run *r = s->run;
	struct drv_proto_builder b;

	if (r->wi >= r->nfiles) {
		slot_set_state(s, ST_SLOT_WRITTEN);
		slot_send_commit(s);
		return;
	}
	slot_begin_req(s, &b, DRV_PROTO_WRITE);
	build_write(s, &b);
	if (slot_finish_req(s, &b, RQ_WRITE) != 0)
		return;
	pipe_write(s);
	slot_send_finished(s);
}

/* The part of a WRITE's answer for file i, the k-th of n the request carried (f: that part,
 * or the answer when n is 1): its have and done, checked against the file sent. Returns 0,
 * or -1 after the answer is asked for again (slot_bad_answer). */
static int part_answer(struct st_slot *s, const struct drv_proto_frame *f, size_t i, size_t k,
		       size_t n, uint64_t *have, uint64_t *done)
{
	const struct slot_run *r = s->run;
	const struct wfile *w = i < r->nfiles ? &r->wf[i] : NULL;
	char path[ST_ESCAPE_SIZE(MAX_PROTO_PATH)], err[ST_ERR_MAX], what[48] = "WRITE answer";

	if (n > 1)
		snprintf(what, sizeof(what), "WRITE answer, file %zu of %zu,", k + 1, n);
	if (slot_board_text(f, "path", NULL, MAX_PROTO_PATH, path, sizeof(path), err, sizeof(err)) ||
	    drv_proto_get_uint(f, "have", 0, UINT64_MAX, have, err, sizeof(err)) ||
	    drv_proto_get_uint(f, "done", 0, 1, done, err, sizeof(err))) {
		slot_bad_answer(s, RQ_WRITE, "%s: %s", what, err);
		return -1;
	}
	if (!w || strcmp(path, w->path) != 0 || *have > w->len) {
		slot_bad_answer(s, RQ_WRITE, "%s for %s with %" PRIu64 " bytes; sent %s of %zu", what,
				path, *have, w ? w->path : "", w ? w->len : 0);
		return -1;
	}
	return 0;
}

/* Takes file wi's part of the answer, checked (whole: the answer, with the fields of a COMMIT
 * folded into the WRITE; last: the request's last file). Returns 1 when the next file's part
 * is to be taken, 0 when the next request is due, 2 when the commit folded into the WRITE
 * went on from here, -1 when the run failed. */
static int file_answered(struct st_slot *s, uint64_t have, uint64_t done,
			 const struct drv_proto_frame *whole, int last)
{
	struct slot_run *r = s->run;
	struct wfile *w = &r->wf[r->wi];
	int folded;

	/* Version 3: COMMIT's fields say the board committed after this chunk. */
	folded = last && done && (r->fold & FOLD_COMMIT) && r->wi + 1 == r->nfiles &&
		 drv_proto_has(whole, "gen");
	if (folded && commit_fields(s, RQ_WRITE, whole) != 0)
		return -1;
	r->wident = 0;
	if (done) {
		r->wi++;
		r->woff = 0;
		r->stalls = 0;
		if (folded) {
			if (slot_set_state(s, ST_SLOT_WRITTEN) == 0)
				committed(s, whole);
			return 2;
		}
		return !last;
	}
	if (have > r->woff) {
		r->woff = have;
		r->stalls = 0;
	} else {
		/* The board did not take the chunk: go on from what it has, a few times. */
		r->woff = have;
		if (++r->stalls > s->env->lim.tries) {
			slot_fail_run(s, ST_E_PROTO_REMOTE,
				      "the board keeps reporting %" PRIu64 " of %zu bytes of %s", have,
				      w->len, w->path);
			return -1;
		}
	}
	return 0;
}

void slot_on_write_answer(struct st_slot *s, const struct drv_proto_frame *f)
{
	struct slot_run *r = s->run;
	struct drv_proto_frame part;
	uint64_t have[SLOT_WRITE_FILES], done[SLOT_WRITE_FILES];
	size_t k, n = r->nsect > 1 ? r->nsect : 1;
	unsigned parts;
	int rc = 1;

	/* Version 6: a part for each file the request carried, in its order, each checked
	 * before any is taken: an answer that is unusable is asked for again whole. */
	if (n > 1 && (parts = drv_proto_part(f, "path", 0, &part)) != n) {
		slot_bad_answer(s, RQ_WRITE, "WRITE answer for %u files; sent %zu", parts, n);
		return;
	}
	for (k = 0; k < n; k++) {
		if (k > 0)
			drv_proto_part(f, "path", (unsigned int)k, &part);
		if (part_answer(s, n > 1 ? &part : f, r->wi + k, k, n, &have[k], &done[k]) < 0)
			return;
	}
	for (k = 0; k < n && rc == 1; k++)
		rc = file_answered(s, have[k], done[k], f, k + 1 == n);
	/* Version 7: the WRITE sent behind this one goes on when every file of this one is
	 * done, as it expected; otherwise the state decides what is sent next. */
	if (s->pipe_at && rc == 0 && r->wi == r->pipe_wi) {
		slot_pipe_promote(s);
		r->next_wi = r->pipe_next;
		/* And the one after it behind it, so that the board is never left waiting. */
		pipe_write(s);
		slot_tx_flush(s);
		return;
	}
	slot_pipe_drop(s);
	if (rc == 0 || rc == 1)
		slot_kick(s);
}

/* Writing starts over (the board lost its staged files); bounded. Returns 0 to go on. */
int slot_restart_writing(struct st_slot *s, const char *why)
{
	struct slot_run *r = s->run;

	r->wi = 0;
	r->woff = 0;
	for (size_t i = 0; i < r->nfiles; i++)
		r->wf[i].nocopy = 0; /* the sources are written again before their copies */
	if (++r->write_restarts > 2 * s->env->lim.tries) {
		slot_fail_run(s, ST_E_PROTO_REMOTE, "writing the files started over %u times; last: %s",
			      r->write_restarts, why);
		return -1;
	}
	slot_set_state(s, ST_SLOT_SIGNED);
	return 0;
}

/* ---- VERIFY -------------------------------------------------------------------------- */

void slot_new_nonce(struct slot_run *r)
{
	if (RAND_bytes(r->nonce, sizeof(r->nonce)) != 1)
		st_err("RAND_bytes failed: the VERIFY nonce is weak");
	r->vseen = 0;
	r->vfiles = 0;
	for (size_t i = 0; i < r->nfiles; i++)
		r->wf[i].seen = 0;
}

/* VERIFY's request fields, on a VERIFY or (version 3) folded into the request in b. Returns
 * 0, or -1 when they do not fit (the builder's error says so). */
static int add_verify(struct st_slot *s, struct drv_proto_builder *b)
{
	struct slot_run *r = s->run;

	drv_proto_add_b64(b, "nonce", r->nonce, sizeof(r->nonce));
	drv_proto_add_uint(b, "from", r->vseen);
	/* Version 2: one sum over the files written instead of their list, when their names
	 * fit in the frame (they are never percent-encoded: the path rule has no such byte). */
	r->vwant = 0;
	if (s->board.version >= 2 && !r->vlist && r->vseen == 0 && r->nfiles) {
		size_t len = r->nfiles - 1;
		const char **items = calloc(r->nfiles, sizeof(*items));

		for (size_t i = 0; i < r->nfiles; i++)
			len += strlen(r->wf[i].path);
		if (items && drv_proto_field_cost("want", len) <= drv_proto_room(b)) {
			for (size_t i = 0; i < r->nfiles; i++)
				items[i] = r->wf[i].path;
			drv_proto_add_list(b, "want", items, r->nfiles);
			r->vwant = 1;
		}
		free(items);
	}
	return b->err ? -1 : 0;
}

void slot_send_verify(struct st_slot *s)
{
	struct drv_proto_builder b;

	slot_begin_req(s, &b, DRV_PROTO_VERIFY);
	add_verify(s, &b);
	s->run->fold = 0;
	slot_send_req(s, &b, RQ_VERIFY);
}

/* COMMIT's answer fields, on COMMIT's answer or (version 3) on the WRITE's that carried it;
 * kind is the request's. Returns 0, or -1 after slot_bad_answer. */
static int commit_fields(struct st_slot *s, int kind, const struct drv_proto_frame *f)
{
	uint64_t gen, files;
	char err[200];

	if (drv_proto_get_uint(f, "gen", 0, UINT64_MAX, &gen, err, sizeof(err)) ||
	    drv_proto_get_uint(f, "files", 0, UINT64_MAX, &files, err, sizeof(err))) {
		slot_bad_answer(s, kind, "%s answer: %s", s->req_type, err);
		return -1;
	}
	return 0;
}

/* The files are installed: VERIFY next, or (version 3) its answer is in f already. The
 * answer is then read as VERIFY's: a retransmission for a bad one sends the request that
 * carried it again, and gets the same answer. */
static void committed(struct st_slot *s, const struct drv_proto_frame *f)
{
	struct slot_run *r = s->run;

	r->t_committed = uv_hrtime();
	if (slot_set_state(s, ST_SLOT_COMMITTED) < 0)
		return;
	if ((r->fold & FOLD_VERIFY) && drv_proto_has(f, "sig")) {
		slot_on_verify_answer(s, f);
		return;
	}
	slot_new_nonce(r);
	slot_kick(s);
}

void slot_on_commit_answer(struct st_slot *s, const struct drv_proto_frame *f)
{
	if (commit_fields(s, RQ_COMMIT, f) == 0)
		committed(s, f);
}

static int check_pop(struct slot_run *r, const uint8_t *sig, size_t siglen)
{
	uint8_t msg[sizeof(DRV_PROTO_POP_CONTEXT) - 1 + NONCE_LEN], digest[32];
	size_t ctx = sizeof(DRV_PROTO_POP_CONTEXT) - 1;
	EC_KEY *key;
	int v;

	memcpy(msg, DRV_PROTO_POP_CONTEXT, ctx);
	memcpy(msg + ctx, r->nonce, NONCE_LEN);
	st_digest(ST_SHA256, msg, sizeof(msg), digest);
	key = st_ec_key_from_point(r->curve, r->pub, r->pub_len);
	if (!key)
		return -1;
	v = st_ecdsa_verify(key, digest, sizeof(digest), sig, siglen);
	st_ec_key_free(key);
	return v == 1 ? 0 : -1;
}

/* Whether a VERIFY's sum (version 2, PROTOCOL.md 6.4) is that of the files written. */
static int sum_matches(const struct slot_run *r, const uint8_t sum[32])
{
	uint8_t *buf = malloc(r->nfiles * DRV_PROTO_SUM_ITEM_MAX), want[32];
	size_t n = 0;

	if (!buf)
		return 0; /* the list then decides */
	for (size_t i = 0; i < r->nfiles; i++)
		n += drv_proto_sum_item(buf + n, r->wf[i].path, r->wf[i].len, r->wf[i].sha);
	st_digest(ST_SHA256, buf, n, want);
	free(buf);
	return memcmp(want, sum, 32) == 0;
}

void slot_on_verify_answer(struct st_slot *s, const struct drv_proto_frame *f)
{
	struct slot_run *r = s->run;
	const struct drv_proto_field *fld = NULL;
	uint64_t gen, files, from;
	uint8_t sig[DRV_SIGNER_MAX_SIG + 16], sum[32];
	size_t siglen;
	unsigned entries = 0;
	char alg[ST_ESCAPE_SIZE(31)], err[ST_ERR_MAX];

	if (drv_proto_get_uint(f, "gen", 0, UINT64_MAX, &gen, err, sizeof(err)) ||
	    drv_proto_get_uint(f, "files", 0, 4096, &files, err, sizeof(err)) ||
	    (!r->vwant && drv_proto_get_uint(f, "from", 0, 4096, &from, err, sizeof(err))) ||
	    (r->vwant && drv_proto_get_hex(f, "sum", sum, sizeof(sum), err, sizeof(err))) ||
	    slot_board_text(f, "alg", NULL, 31, alg, sizeof(alg), err, sizeof(err)) ||
	    drv_proto_get_b64(f, "sig", sig, sizeof(sig), &siglen, err, sizeof(err))) {
		slot_bad_answer(s, RQ_VERIFY, "VERIFY answer: %s", err);
		return;
	}
	if (r->vwant)
		from = 0;
	if (from != r->vseen) {
		slot_bad_answer(s, RQ_VERIFY, "VERIFY answer from file %" PRIu64 ", asked from %" PRIu64,
				from, r->vseen);
		return;
	}
	if (r->vseen == 0) {
		if (strcmp(alg, "ecdsa-p256-sha256") != 0) {
			slot_fail_run(s, ST_E_SLOT_VERIFY_POP,
				      "the board signed the nonce with '%s'; expected ecdsa-p256-sha256",
				      alg);
			return;
		}
		if (check_pop(r, sig, siglen) != 0) {
			slot_fail_run(s, ST_E_SLOT_VERIFY_POP,
				      "the nonce signature does not verify under the public key of "
				      "certificate %s",
				      r->cert->serial_hex);
			return;
		}
		r->vfiles = files;
	}
	if (r->vwant) {
		if (sum_matches(r, sum)) {
			slot_set_state(s, ST_SLOT_VERIFIED);
		} else {
			/* Some file differs: the list says which (and fails the board). */
			st_debug("slot %s: device %s: VERIFY's sum differs; asking for the list",
				 s->name, r->device_id);
			r->vlist = 1;
		}
		slot_kick(s);
		return;
	}
	while ((fld = drv_proto_find_next(f, fld, "file"))) {
		char path[ST_ESCAPE_SIZE(MAX_PROTO_PATH)], size_s[ST_ESCAPE_SIZE(23)];
		char hex[ST_ESCAPE_SIZE(71)];
		uint8_t sha[32];
		char *end;
		unsigned long long size;

		if (slot_board_item(f, fld, 0, MAX_PROTO_PATH, path, sizeof(path), err, sizeof(err)) ||
		    slot_board_item(f, fld, 1, 23, size_s, sizeof(size_s), err, sizeof(err)) ||
		    slot_board_item(f, fld, 2, 71, hex, sizeof(hex), err, sizeof(err))) {
			slot_bad_answer(s, RQ_VERIFY, "VERIFY answer: file entry: %s", err);
			return;
		}
		size = strtoull(size_s, &end, 10);
		if (!size_s[0] || *end || strlen(hex) != 64) {
			slot_bad_answer(s, RQ_VERIFY, "VERIFY answer: malformed file entry for %s", path);
			return;
		}
		for (int i = 0; i < 32; i++) {
			unsigned v;

			if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
				slot_bad_answer(s, RQ_VERIFY, "VERIFY answer: bad SHA-256 for %s", path);
				return;
			}
			sha[i] = (uint8_t)v;
		}
		entries++;
		for (size_t i = 0; i < r->nfiles; i++) {
			struct wfile *w = &r->wf[i];

			if (strcmp(w->path, path) != 0)
				continue;
			if (size != w->len || memcmp(sha, w->sha, 32) != 0) {
				slot_fail_run(s, ST_E_SLOT_VERIFY_FILE,
					      "read back %s: %llu bytes, SHA-256 %.16s...; written %zu "
					      "bytes with another hash",
					      path, size, hex, w->len);
				return;
			}
			w->seen = 1;
		}
	}
	r->vseen += entries;
	if (r->vseen < r->vfiles) {
		if (entries == 0) {
			slot_bad_answer(s, RQ_VERIFY, "VERIFY answer lists no file at %" PRIu64 " of %" PRIu64,
					r->vseen, r->vfiles);
			return;
		}
		slot_kick(s);
		return;
	}
	for (size_t i = 0; i < r->nfiles; i++) {
		if (!r->wf[i].seen) {
			slot_fail_run(s, ST_E_SLOT_VERIFY_FILE,
				      "%s was written and committed but the board does not list it "
				      "(generation %" PRIu64 ", %" PRIu64 " files)",
				      r->wf[i].path, gen, files);
			return;
		}
	}
	slot_set_state(s, ST_SLOT_VERIFIED);
	slot_kick(s);
}
