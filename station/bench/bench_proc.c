/* Per-thread CPU of a process read from /proc, for `station bench` and the benchmark
 * harnesses that run the station in their own process (see bench.h). */
#include "bench.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int st_bench_read_file(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, cap - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = 0;
	return 0;
}

/* schedstat: "cpu_ns wait_ns timeslices". */
int st_bench_read_schedstat(const char *path, double *cpu, double *wait, double *runs)
{
	char buf[128];
	unsigned long long c, w, n;

	if (st_bench_read_file(path, buf, sizeof(buf)) != 0 ||
	    sscanf(buf, "%llu %llu %llu", &c, &w, &n) != 3)
		return -1;
	*cpu = (double)c / 1e9;
	*wait = (double)w / 1e9;
	if (runs)
		*runs = (double)n;
	return 0;
}

void st_bench_sample(struct st_bench_sampler *s, int at_start)
{
	char dir[64], path[128];
	struct dirent *d;
	DIR *dp;

	snprintf(dir, sizeof(dir), "/proc/%d/task", (int)s->pid);
	dp = opendir(dir);
	if (!dp)
		return;
	while ((d = readdir(dp))) {
		struct st_bench_task *t = NULL;
		double cpu, wait, runs;
		int tid = atoi(d->d_name);
		size_t i;

		if (tid <= 0)
			continue;
		snprintf(path, sizeof(path), "%s/%d/schedstat", dir, tid);
		if (st_bench_read_schedstat(path, &cpu, &wait, &runs) != 0)
			continue;
		for (i = 0; i < s->ntasks; i++) {
			if (s->tasks[i].tid == tid)
				t = &s->tasks[i];
		}
		if (!t) {
			if (s->ntasks == ST_BENCH_MAX_TASKS)
				continue;
			t = &s->tasks[s->ntasks++];
			memset(t, 0, sizeof(*t));
			t->tid = tid;
			if (at_start) {
				t->cpu0 = cpu;
				t->wait0 = wait;
				t->runs0 = runs;
			}
		}
		if (!t->comm[0]) {
			char *nl;

			snprintf(path, sizeof(path), "%s/%d/comm", dir, tid);
			if (st_bench_read_file(path, t->comm, sizeof(t->comm)) == 0) {
				nl = strchr(t->comm, '\n');
				if (nl)
					*nl = 0;
			}
		}
		t->cpu = cpu;
		t->wait = wait;
		t->runs = runs;
	}
	closedir(dp);
}

void st_bench_sampler_restart(struct st_bench_sampler *s)
{
	for (size_t i = 0; i < s->ntasks; i++) {
		s->tasks[i].cpu0 = s->tasks[i].cpu;
		s->tasks[i].wait0 = s->tasks[i].wait;
		s->tasks[i].runs0 = s->tasks[i].runs;
	}
}

double st_bench_sampler_cpu(const struct st_bench_sampler *s)
{
	double sum = 0;

	for (size_t i = 0; i < s->ntasks; i++)
		sum += s->tasks[i].cpu;
	return sum;
}

void st_bench_sampler_threads(const struct st_bench_sampler *s, struct st_bench_threads *th)
{
	memset(th, 0, sizeof(*th));
	for (size_t i = 0; i < s->ntasks; i++) {
		const struct st_bench_task *t = &s->tasks[i];
		double cpu = t->cpu - t->cpu0, runs = t->runs - t->runs0;

		if (t->tid == (int)s->pid) {
			th->loop_cpu_s = cpu;
			th->loop_wait_s = t->wait - t->wait0;
			th->loop_runs = runs;
		} else if (strcmp(t->comm, "st-ledger") == 0) {
			th->ledger_cpu_s += cpu;
			th->ledger_runs += runs;
			th->named = 1;
		} else if (strncmp(t->comm, "st-sign-", 8) == 0) {
			th->workers_cpu_s += cpu;
			th->workers_runs += runs;
			th->named = 1;
		} else {
			th->other_cpu_s += cpu;
		}
	}
}
