/* The heap policy (heap.h): after st_heap_tune(), memory a thread frees at the top of its heap
 * stays with the process instead of going back to the kernel with madvise, to be faulted in
 * again at the next allocation. A thread allocates 1 MiB in blocks below the mmap threshold
 * and frees it; the free bytes the allocator then holds say whether its heap was trimmed.
 * The same steps before st_heap_tune() show the trimming the policy stops. Under the
 * sanitizers the allocator is not glibc's and the test is skipped. */
#include <malloc.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "heap.h"

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif

#define BLOCKS 16
#define BLOCK (64 * 1024)

/* Allocates and frees BLOCKS blocks; returns the allocator's free bytes after the frees,
 * less those before. */
static void *churn(void *arg)
{
	size_t *kept = arg, before = mallinfo2().fordblks;
	void *b[BLOCKS];

	for (int i = 0; i < BLOCKS; i++) {
		b[i] = malloc(BLOCK);
		assert_non_null(b[i]);
		((volatile char *)b[i])[0] = 1;
	}
	for (int i = BLOCKS - 1; i >= 0; i--)
		free(b[i]);
	*kept = mallinfo2().fordblks - before;
	return NULL;
}

static size_t kept_by_a_thread(void)
{
	pthread_t th;
	size_t kept = 0;

	assert_int_equal(pthread_create(&th, NULL, churn, &kept), 0);
	assert_int_equal(pthread_join(th, NULL), 0);
	return kept;
}

static void test_thread_keeps_its_heap(void **state)
{
	size_t untuned, tuned;

	(void)state;
#ifdef SANITIZED
	skip();
#endif
	untuned = kept_by_a_thread();
	st_heap_tune();
	tuned = kept_by_a_thread();
	print_message("free bytes kept after 1 MiB freed: %zu before, %zu after st_heap_tune\n",
		      untuned, tuned);
	assert_true(untuned < 256 * 1024);
	assert_true(tuned >= (size_t)BLOCKS * BLOCK / 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_thread_keeps_its_heap),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
