/* The crypto-only bound of one certificate for `station bench`: what issuing costs when
 * nothing but the three ECDSA operations it cannot avoid is done (verify the CSR's
 * self-signature, sign the certificate, verify the new signature), with every key and
 * context prepared beforehand. Measured on one thread with one signer session, like the
 * pool's workers sign. */
#include "bench.h"

#include <string.h>
#include <time.h>

#include <openssl/ec.h>
#include <openssl/evp.h>

#include "err.h"

static double clock_s(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int st_bench_measure_bound(struct drv_signer *signer, unsigned n, struct st_bench_bound *out,
			   char *err, size_t errlen)
{
	EVP_PKEY *dev = NULL, *ca_pub = NULL;
	EVP_PKEY_CTX *sdev = NULL, *vdev = NULL, *vca = NULL;
	uint8_t digest[32], dev_sig[DRV_SIGNER_MAX_SIG], sig[DRV_SIGNER_MAX_SIG];
	size_t dev_siglen = sizeof(dev_sig), siglen;
	double t0, c0, v0, vcpu = 0;
	void *sess = NULL;
	unsigned i;
	int rc;

	memset(out, 0, sizeof(*out));
	memset(digest, 0x5a, sizeof(digest));
	if (n == 0)
		return st_errf(err, errlen, ST_E_INVAL, "bound: no certificates to measure");
	dev = EVP_EC_gen("prime256v1");
	ca_pub = drv_signer_public_key(signer);
	if (!dev || !ca_pub) {
		rc = st_errf(err, errlen, ST_E_CRYPTO, "bound: cannot make a device key or read "
			     "the CA's public key");
		goto out;
	}
	sdev = EVP_PKEY_CTX_new(dev, NULL);
	vdev = EVP_PKEY_CTX_new(dev, NULL);
	vca = EVP_PKEY_CTX_new(ca_pub, NULL);
	if (!sdev || !vdev || !vca || EVP_PKEY_sign_init(sdev) <= 0 ||
	    EVP_PKEY_sign(sdev, dev_sig, &dev_siglen, digest, sizeof(digest)) <= 0 ||
	    EVP_PKEY_verify_init(vdev) <= 0 || EVP_PKEY_verify_init(vca) <= 0) {
		rc = st_errf(err, errlen, ST_E_CRYPTO, "bound: cannot prepare the contexts");
		goto out;
	}
	rc = drv_signer_session_open(signer, &sess, err, errlen);
	if (rc < 0)
		goto out;
	t0 = clock_s(CLOCK_MONOTONIC);
	c0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
	for (i = 0; i < n; i++) {
		v0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
		if (EVP_PKEY_verify(vdev, dev_sig, dev_siglen, digest, sizeof(digest)) != 1) {
			rc = st_errf(err, errlen, ST_E_CRYPTO, "bound: device signature does not "
				     "verify");
			goto out;
		}
		vcpu += clock_s(CLOCK_THREAD_CPUTIME_ID) - v0;
		siglen = sizeof(sig);
		rc = drv_signer_sign(signer, sess, digest, sizeof(digest), sig, &siglen, err,
				     errlen);
		if (rc < 0)
			goto out;
		if (EVP_PKEY_verify(vca, sig, siglen, digest, sizeof(digest)) != 1) {
			rc = st_errf(err, errlen, ST_E_SIGNER_BADSIG, "bound: the CA signature "
				     "does not verify");
			goto out;
		}
	}
	out->n = n;
	out->wall_s = (clock_s(CLOCK_MONOTONIC) - t0) / n;
	out->cpu_s = (clock_s(CLOCK_THREAD_CPUTIME_ID) - c0) / n;
	out->verify_cpu_s = vcpu / n;
	rc = 0;
out:
	if (sess)
		drv_signer_session_close(signer, sess);
	EVP_PKEY_CTX_free(sdev);
	EVP_PKEY_CTX_free(vdev);
	EVP_PKEY_CTX_free(vca);
	EVP_PKEY_free(dev);
	EVP_PKEY_free(ca_pub);
	return rc;
}
