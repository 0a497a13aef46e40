/* The protocol's minimum bytes for one board, for `station bench` (see bench.h): what a
 * provisioning cannot do without, each payload once, in the densest encoding the line can
 * carry (drivers/PROTOCOL.md 1.2): binary (the CSR's DER, the nonce, the signature) in
 * base64; certificates by their DER, whichever files hold them and however often; the
 * files' other bytes in base64 or as escaped text, whichever is shorter; in one request and
 * one answer per command, or as few frames of the line's maximum as a payload needs, every
 * file in as few WRITEs as their bytes need (protocol version 6), COMMIT and VERIFY riding on
 * the last WRITE (version 3) with no frames of their own. The
 * bytes a board took over this minimum are what the protocol spends twice (PEM inside
 * base64, a certificate in two files, fields, retransmissions, the console). */
#include "bench.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "proto.h"

/* The longest DER ECDSA-Sig-Value of P-256: the board's signature over the nonce. */
#define POP_SIG_MAX 72

/* Bytes a frame takes besides its fields: "~@P1 Q 1 TYPE 01234567\n" (one-digit seq). */
static size_t frame_bytes(const char *type)
{
	return strlen(DRV_PROTO_MARKER "Q 1 ") + strlen(type) + strlen(" 01234567\n");
}

/* Frames for a payload of len encoded bytes: as many as the line's longest frame needs. */
static unsigned frames_for(const char *type, double len)
{
	double room = (double)(DRV_PROTO_MAX_LINE - frame_bytes(type));
	unsigned n = 1;

	while ((double)n * room < len)
		n++;
	return n;
}

/* Escaped text (PROTOCOL.md 1.2): SP, controls, 0x7F-0xFF, '%', ',' and '~' take three
 * bytes. */
static size_t text_len(const uint8_t *p, size_t n)
{
	size_t len = n;

	for (size_t i = 0; i < n; i++) {
		if (p[i] <= 0x20 || p[i] >= 0x7F || p[i] == '%' || p[i] == ',' || p[i] == '~')
			len += 2;
	}
	return len;
}

/* The distinct certificates seen so far, by SHA-256 of their DER. */
struct seen {
	uint8_t sha[32][SHA256_DIGEST_LENGTH];
	size_t n;
};

static int seen_add(struct seen *s, const uint8_t *der, long len)
{
	uint8_t sha[SHA256_DIGEST_LENGTH];

	SHA256(der, (size_t)len, sha);
	for (size_t i = 0; i < s->n; i++) {
		if (memcmp(s->sha[i], sha, sizeof(sha)) == 0)
			return 0;
	}
	if (s->n < sizeof(s->sha) / sizeof(s->sha[0]))
		memcpy(s->sha[s->n++], sha, sizeof(sha));
	return 1;
}

/* A whole small file (at most 1 MiB); NULL when it cannot be read. Free with free(). */
static uint8_t *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	struct stat st;

	*len = 0;
	if (!f)
		return NULL;
	if (fstat(fileno(f), &st) == 0 && st.st_size >= 0 && st.st_size <= 1024 * 1024) {
		buf = malloc((size_t)st.st_size + 1);
		if (buf && fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
			free(buf);
			buf = NULL;
		}
		if (buf)
			*len = (size_t)st.st_size;
	}
	fclose(f);
	return buf;
}

/* One installed file's share: its certificates, each new one by its DER in base64, or, for a
 * file that holds none, its bytes. Returns the bytes added. */
static double count_file(const uint8_t *data, size_t len, struct seen *seen,
			 struct st_bench_wire_min *out)
{
	double added = 0;
	int certs = 0;

	if (len && memmem(data, len, "-----BEGIN CERTIFICATE-----", 27)) {
		BIO *b = BIO_new_mem_buf(data, (int)len);
		X509 *x;

		while (b && (x = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
			unsigned char *der = NULL;
			int dlen = i2d_X509(x, &der);

			if (dlen > 0 && seen_add(seen, der, dlen))
				added += (double)drv_b64_len((size_t)dlen);
			certs++;
			OPENSSL_free(der);
			X509_free(x);
		}
		BIO_free(b);
		/* The end of the file, where PEM_read_bio_X509 stopped, is no error. */
		ERR_clear_error();
		out->certs += added;
	}
	if (!certs) {
		size_t t = text_len(data, len), b = drv_b64_len(len);

		added = (double)(t < b ? t : b);
		out->text += added;
	}
	return added;
}

int st_bench_wire_minimum(const char *board_dir, size_t nonce_len, struct st_bench_wire_min *out)
{
	static const char *const once[] = { DRV_PROTO_HELLO, DRV_PROTO_DONE };
	char path[PATH_MAX + 300], line[600];
	struct seen seen;
	struct stat st;
	double written = 0;
	FILE *man;

	memset(out, 0, sizeof(*out));
	memset(&seen, 0, sizeof(seen));
	if (snprintf(path, sizeof(path), "%s/csr.der", board_dir) >= (int)sizeof(path) ||
	    stat(path, &st) != 0 || st.st_size <= 0)
		return -1;
	out->csr = (double)drv_b64_len((size_t)st.st_size);
	snprintf(path, sizeof(path), "%s/files/.manifest", board_dir);
	man = fopen(path, "r");
	if (!man)
		return -1;
	/* "sha256 size mode path" per installed file (fixtures/simboard/store.c). */
	while (fgets(line, sizeof(line), man)) {
		char file[DRV_PROTO_MAX_PATH + 1];
		unsigned long long size;
		unsigned mode;
		uint8_t *data;
		size_t len;
		double added;

		if (sscanf(line, "%*64s %llu %o %128s", &size, &mode, file) != 3 ||
		    snprintf(path, sizeof(path), "%s/files/%s", board_dir, file) >=
			    (int)sizeof(path))
			continue;
		data = read_all(path, &len);
		if (!data)
			continue;
		added = count_file(data, len, &seen, out);
		free(data);
		out->files++;
		written += added;
	}
	fclose(man);
	if (!out->files) {
		memset(out, 0, sizeof(*out));
		return -1;
	}
	/* A request carrying the files and its answer, per frame's worth. */
	out->frames += 2 * frames_for(DRV_PROTO_WRITE, written);
	out->framing += 2.0 * frames_for(DRV_PROTO_WRITE, written) * (double)frame_bytes(DRV_PROTO_WRITE);
	out->pop = (double)(drv_b64_len(nonce_len) + drv_b64_len(POP_SIG_MAX));
	for (size_t i = 0; i < sizeof(once) / sizeof(once[0]); i++) {
		out->frames += 2;
		out->framing += 2.0 * (double)frame_bytes(once[i]);
	}
	out->frames += 2 * frames_for(DRV_PROTO_CSR, out->csr);
	out->framing += 2.0 * frames_for(DRV_PROTO_CSR, out->csr) *
			(double)frame_bytes(DRV_PROTO_CSR);
	out->total = out->csr + out->certs + out->text + out->pop + out->framing;
	return 0;
}
