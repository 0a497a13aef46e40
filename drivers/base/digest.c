#include "digest.h"

#include <pthread.h>
#include <stdlib.h>

#include <openssl/evp.h>

#include "log.h"

static const char *const names[] = {
	[ST_SHA1] = "SHA1",
	[ST_SHA256] = "SHA256",
	[ST_SHA384] = "SHA384",
	[ST_SHA512] = "SHA512",
};
static const size_t lens[] = { [ST_SHA1] = 20, [ST_SHA256] = 32, [ST_SHA384] = 48,
			       [ST_SHA512] = 64 };

/* Fetched once: OpenSSL 3 would otherwise look each algorithm up again on every call. */
static EVP_MD *mds[sizeof(names) / sizeof(names[0])];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void fetch(void)
{
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		mds[i] = EVP_MD_fetch(NULL, names[i], NULL);
}

size_t st_digest_len(enum st_digest alg)
{
	return lens[alg];
}

size_t st_digest(enum st_digest alg, const void *data, size_t len, uint8_t *out)
{
	unsigned int n = 0;

	pthread_once(&once, fetch);
	if (!mds[alg] || !EVP_Digest(data, len, out, &n, mds[alg], NULL) || n != lens[alg]) {
		st_err("OpenSSL cannot compute %s (out of memory?)", names[alg]);
		abort();
	}
	return n;
}
