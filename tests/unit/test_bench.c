/* The protocol's minimum bytes for one board (bench.h, station/bench/bench_wire.c), from a
 * board directory laid out as simboard keeps it: the CSR by its DER in base64; each distinct
 * certificate once, however many files hold it; a file without certificates in base64 or as
 * escaped text, whichever is shorter; the nonce and a P-256 signature; one request and one
 * answer per command, and as many frames as a payload longer than a frame needs, COMMIT and
 * VERIFY riding on the last WRITE (protocol version 3). A directory
 * without a provisioned board gives no minimum. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "b64.h"
#include "bench.h"
#include "testutil.h"

/* A self-signed certificate of a new key; *der gets its DER length. */
static X509 *new_cert(const char *cn, size_t *der)
{
	EVP_PKEY *key = EVP_EC_gen("prime256v1");
	X509 *x = tu_ca_template(key, cn, "bench", 30);

	assert_non_null(x);
	assert_true(X509_sign(x, key, EVP_sha256()) > 0);
	*der = (size_t)i2d_X509(x, NULL);
	EVP_PKEY_free(key);
	return x;
}

/* Writes the certificates as PEM, one after the other, into path. */
static void write_pem(const char *path, X509 *const *certs, size_t n)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(PEM_write_X509(f, certs[i]), 1);
	assert_int_equal(fclose(f), 0);
}

static void write_bytes(const char *path, const void *data, size_t n)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
}

/* Bytes a frame of this type takes besides its fields: "~@P1 Q 1 TYPE 01234567\n". */
static double frame(const char *type)
{
	return (double)(9 + strlen(type) + 10);
}

static void test_wire_minimum(void **state)
{
	static const char toml[] = "url=https://example.com/path\n"; /* 28 plain, LF escaped */
	static uint8_t zeros[30], big[10000];
	const char *dir = tu_tmpdir("bench-wire");
	char path[4200], man[2000];
	struct st_bench_wire_min m;
	X509 *a, *b, *c;
	size_t da, db, dc, n = 0;
	uint8_t csr[300];

	(void)state;
	assert_non_null(dir);
	a = new_cert("device", &da);
	b = new_cert("local-ca", &db);
	c = new_cert("root", &dc);
	memset(csr, 0x30, sizeof(csr));
	memset(big, 0xA5, sizeof(big));
	snprintf(path, sizeof(path), "%s/csr.der", dir);
	write_bytes(path, csr, sizeof(csr));
	snprintf(path, sizeof(path), "%s/files", dir);
	assert_int_equal(mkdir(path, 0700), 0);
	/* The device certificate twice (alone and in the chain): counted once. */
	snprintf(path, sizeof(path), "%s/files/client.pem", dir);
	write_pem(path, &a, 1);
	snprintf(path, sizeof(path), "%s/files/client.chained", dir);
	write_pem(path, (X509 *[]){ a, b }, 2);
	snprintf(path, sizeof(path), "%s/files/root.crt", dir);
	write_pem(path, &c, 1);
	snprintf(path, sizeof(path), "%s/files/sota.toml", dir);
	write_bytes(path, toml, strlen(toml));
	snprintf(path, sizeof(path), "%s/files/zeros.bin", dir);
	write_bytes(path, zeros, sizeof(zeros));
	snprintf(path, sizeof(path), "%s/files/big.bin", dir);
	write_bytes(path, big, sizeof(big));
	n += (size_t)snprintf(man + n, sizeof(man) - n, "%064d 1 0644 client.pem\n", 0);
	n += (size_t)snprintf(man + n, sizeof(man) - n, "%064d 1 0644 client.chained\n", 0);
	n += (size_t)snprintf(man + n, sizeof(man) - n, "%064d 1 0644 root.crt\n", 0);
	n += (size_t)snprintf(man + n, sizeof(man) - n, "%064d 1 0644 sota.toml\n", 0);
	n += (size_t)snprintf(man + n, sizeof(man) - n, "%064d 1 0600 zeros.bin\n", 0);
	n += (size_t)snprintf(man + n, sizeof(man) - n, "%064d 1 0600 big.bin\n", 0);
	snprintf(path, sizeof(path), "%s/files/.manifest", dir);
	write_bytes(path, man, n);

	assert_int_equal(st_bench_wire_minimum(dir, 32, &m), 0);
	assert_int_equal(m.files, 6);
	assert_true(m.csr == (double)drv_b64_len(sizeof(csr)));
	assert_true(m.certs == (double)(drv_b64_len(da) + drv_b64_len(db) + drv_b64_len(dc)));
	/* sota.toml as text (28 + 3 for its LF, under base64's 40); the zeros in base64 (40,
	 * under 90 escaped); big.bin in base64 too. */
	assert_true(m.text == (double)(31 + drv_b64_len(sizeof(zeros)) + drv_b64_len(sizeof(big))));
	assert_true(m.pop == (double)(drv_b64_len(32) + drv_b64_len(72)));
	/* HELLO, CSR and DONE: a request and an answer each; the files' bytes in as few WRITE
	 * frames of at most 4096 bytes as they need (several files a WRITE, version 6), COMMIT
	 * and VERIFY riding on the last: big.bin's 13336 base64 bytes and the others' 1.6 KiB
	 * or so, four. */
	assert_int_equal(m.frames, 2 * (3 + 4));
	assert_true(m.framing == 2 * (frame("HELLO") + frame("CSR") + frame("DONE")) +
				 2 * 4 * frame("WRITE"));
	assert_true(m.total == m.csr + m.certs + m.text + m.pop + m.framing);

	/* No installed files, or no CSR: no provisioned board. */
	snprintf(path, sizeof(path), "%s/files/.manifest", dir);
	write_bytes(path, "", 0);
	assert_int_equal(st_bench_wire_minimum(dir, 32, &m), -1);
	assert_true(m.total == 0 && m.files == 0);
	snprintf(path, sizeof(path), "%s/nowhere", dir);
	assert_int_equal(st_bench_wire_minimum(path, 32, &m), -1);
	assert_true(m.total == 0);
	X509_free(a);
	X509_free(b);
	X509_free(c);
}

/* A run of 10 s on 2 CPUs whose signer did ratio sign of its bound, the station and
 * simboard using station_cpu and sim_cpu CPU-seconds, the machine's CPUs busy machine. */
static void limit_of(struct st_bench_result *r, double sign, double station_cpu, double sim_cpu,
		     double machine)
{
	memset(r, 0, sizeof(*r));
	r->passed = 1000;
	r->span_s = 10;
	r->wire_ratio = NAN;
	r->sign_ratio = sign;
	r->sign_ratio_workers = NAN;
	r->cpu_s = station_cpu;
	r->th.loop_cpu_s = station_cpu / 2;
	r->th.ledger_cpu_s = 0.5;
	r->sim_cpu_ms_per_board = sim_cpu; /* CPU-seconds over 1000 boards: as many ms a board */
	r->sim_procs = 1;
	r->machine_busy = machine;
	st_bench_limit(r, 2);
}

/* What limited a run: the figure closest to its bound; the machine's CPUs only when the
 * station and simboard did at least half of the work that kept them busy (the rest was
 * something outside the run, which the reason then says). */
static void test_limit(void **state)
{
	struct st_bench_result r;

	(void)state;
	/* An emulated HSM at 0.82 of its bound on a machine another job keeps busy. */
	limit_of(&r, 0.82, 2.0, 0.4, 1.0);
	assert_int_equal(r.limit, ST_BENCH_LIM_SIGN);
	assert_true(r.ratio[ST_BENCH_LIM_MACHINE] == 1.0);
	assert_non_null(strstr(r.limit_reason, "the machine's CPUs were busy 1.00, 0.12 of it"));
	/* The same machine kept busy by the station and simboard: the machine. */
	limit_of(&r, 0.82, 6.0, 4.0, 1.0);
	assert_int_equal(r.limit, ST_BENCH_LIM_MACHINE);
	assert_null(strstr(r.limit_reason, "of it the station's"));
	/* Half of it theirs: still the machine's. */
	limit_of(&r, 0.82, 5.0, 4.0, 0.9);
	assert_int_equal(r.limit, ST_BENCH_LIM_MACHINE);
	/* No machine figure (no /proc/stat): the others only. */
	limit_of(&r, 0.82, 6.0, 4.0, NAN);
	assert_int_equal(r.limit, ST_BENCH_LIM_SIGN);
	assert_null(strstr(r.limit_reason, "machine"));
	/* Nothing near its bound, the machine idle: the signer, with the note. */
	limit_of(&r, 0.3, 1.0, 0.5, 0.2);
	assert_int_equal(r.limit, ST_BENCH_LIM_SIGN);
	assert_non_null(strstr(r.limit_reason, "nothing near its bound"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wire_minimum),
		cmocka_unit_test(test_limit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
