/* Live view benchmark: the time to lay out one frame of N slots (default 1024) in busy,
 * mixed states at several terminal sizes, against the view's period (1/ST_VIEW_HZ s). The
 * frames differ from one to the next (times in state move, slots change state), as in a run.
 *
 * Usage: bench_view [-n SLOTS] [-f FRAMES]
 * Not a test: the figures depend on the machine. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "events.h"
#include "log.h"
#include "pool.h"
#include "slot.h"
#include "view.h"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	static const int sizes[][2] = { { 80, 24 }, { 120, 40 }, { 200, 60 }, { 300, 100 } };
	static const enum st_slot_state states[] = {
		ST_SLOT_WAITING, ST_SLOT_HELLO,	    ST_SLOT_CSR,     ST_SLOT_QUEUED,
		ST_SLOT_SIGNED,	 ST_SLOT_COMMITTED, ST_SLOT_LEAVING, ST_SLOT_FAILED,
	};
	size_t n = 1024, frames = 2000;
	struct st_slot_info **slots;
	struct st_tally tally;
	struct st_reason_count reasons[3];
	struct st_pool_stats pool;
	struct st_view_event ev[ST_VIEW_EVENTS];
	struct st_view_input in;
	struct st_view_screen *sc;
	uint64_t base = 1000000000000ull;
	int c;

	while ((c = getopt(argc, argv, "n:f:")) != -1) {
		switch (c) {
		case 'n':
			n = strtoul(optarg, NULL, 10);
			break;
		case 'f':
			frames = strtoul(optarg, NULL, 10);
			break;
		default:
			fprintf(stderr, "usage: bench_view [-n SLOTS] [-f FRAMES]\n");
			return 2;
		}
	}
	if (!n || !frames)
		return 2;
	slots = calloc(n, sizeof(*slots));
	sc = st_view_screen_new();
	if (!slots || !sc)
		return 1;
	for (size_t i = 0; i < n; i++) {
		slots[i] = calloc(1, sizeof(**slots));
		if (!slots[i])
			return 1;
		slots[i]->idx = (unsigned)i;
		snprintf(slots[i]->name, sizeof(slots[i]->name), "rack%zu-slot%zu", i / 64, i % 64);
		snprintf(slots[i]->device_id, sizeof(slots[i]->device_id),
			 "5f0c%04zx-1b2c-4d5e-8f90-a1b2c3d4e5f6", i);
		slots[i]->last_pass = -1;
	}
	memset(&tally, 0, sizeof(tally));
	memset(reasons, 0, sizeof(reasons));
	snprintf(reasons[0].reason, sizeof(reasons[0].reason), "CSR_SIGNATURE");
	snprintf(reasons[1].reason, sizeof(reasons[1].reason), "TIMEOUT");
	snprintf(reasons[2].reason, sizeof(reasons[2].reason), "SLOT_BOARD_LEFT");
	tally.reasons = reasons;
	tally.nreasons = 3;
	memset(&pool, 0, sizeof(pool));
	pool.workers = 2;
	for (size_t i = 0; i < ST_VIEW_EVENTS; i++) {
		snprintf(ev[i].hms, sizeof(ev[i].hms), "12:00:00");
		ev[i].level = ST_LOG_INFO;
		snprintf(ev[i].text, sizeof(ev[i].text),
			 "slot rack1-slot%zu: device 5f0c0003-1b2c-4d5e-8f90-a1b2c3d4e5f6: pass, "
			 "serial 0123456789abcdef0123456789abcdef, 9267 ms",
			 i);
	}
	memset(&in, 0, sizeof(in));
	in.station = "line-1";
	in.slots = (const struct st_slot_info *const *)slots;
	in.nslots = n;
	in.tally = &tally;
	in.pool = &pool;
	in.started = base;
	in.events = ev;
	in.nevents = ST_VIEW_EVENTS;

	printf("%zu slots, %zu frames per size; the view draws %d frames a second\n", n, frames,
	       ST_VIEW_HZ);
	for (size_t z = 0; z < sizeof(sizes) / sizeof(sizes[0]); z++) {
		double t0 = now_s(), c0 = cpu_s(), bytes = 0;

		for (size_t f = 0; f < frames; f++) {
			int lines;

			/* A quarter of a second later; a few slots move on. */
			in.now = base + (uint64_t)(f + 1) * 250000000ull;
			for (size_t k = 0; k < n / 16; k++) {
				struct st_slot_info *s = slots[(f * 7 + k * 16) % n];

				s->state = states[(f + k) % (sizeof(states) / sizeof(states[0]))];
				s->since = in.now - (uint64_t)(k % 40) * 1000000000ull;
				s->last_pass = s->state == ST_SLOT_LEAVING ? 1 : -1;
			}
			tally.boards = tally.passed = f * 3;
			tally.first_start = base;
			tally.last_end = in.now;
			lines = st_view_screen_draw(sc, &in, sizes[z][0], sizes[z][1], 1);
			if (lines < 0)
				return 1;
			for (int i = 0; i < lines; i++)
				bytes += (double)strlen(st_view_screen_line(sc, i, NULL));
		}
		{
			double wall = now_s() - t0, cpu = cpu_s() - c0;

			printf("%3dx%-3d  %7.1f us per frame (cpu %7.1f us), %6.0f bytes laid out; "
			       "%.3f%% of a core at %d Hz\n",
			       sizes[z][0], sizes[z][1], wall / (double)frames * 1e6,
			       cpu / (double)frames * 1e6, bytes / (double)frames,
			       cpu / (double)frames * ST_VIEW_HZ * 100, ST_VIEW_HZ);
		}
	}
	st_view_screen_free(sc);
	for (size_t i = 0; i < n; i++)
		free(slots[i]);
	free(slots);
	return 0;
}
