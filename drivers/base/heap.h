#ifndef ST_HEAP_H
#define ST_HEAP_H

/* The process's heap policy, set once at the start of main() by every program that runs the
 * station's threads (the station, and benchmarks that run its server in-process, so that
 * they measure what the station does).
 *
 * glibc gives the free top of a thread's heap back to the kernel (madvise) once it passes
 * 128 KiB, and the next allocation faults zeroed pages in again. The ledger thread crossed
 * that line on nearly every commit (SQLite allocates and frees a statement journal within
 * each UPDATE that runs a trigger): a system call and page faults a board. Up to 4 MiB of
 * free heap per thread now stays with the process. */
void st_heap_tune(void);

#endif
