/* The process's heap policy (heap.h). */
#include "heap.h"

#include <malloc.h>

void st_heap_tune(void)
{
	mallopt(M_TRIM_THRESHOLD, 4 << 20);
}
