/*
 * progress.c - the progress bar of the cairn tool (see progress.h): bytes
 * done, the total when known, and the rate since the start.
 */
#include "progress.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define PROGRESS_INTERVAL_NS 100000000ull
#define PROGRESS_BAR_WIDTH   24

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Formats bytes with a binary unit: "12.3 MiB". */
static void fmt_bytes(char *out, size_t len, double v)
{
	static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	int u = 0;
	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	snprintf(out, len, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

void progress_init(struct progress *p, const char *label, uint64_t total)
{
	p->enabled = isatty(STDERR_FILENO);
	p->label = label;
	p->done = 0;
	p->total = total;
	p->start_ns = mono_ns();
	p->last_draw_ns = p->start_ns; /* no flicker for quick operations */
	p->drawn = 0;
}

static void progress_draw(struct progress *p, uint64_t now)
{
	char done[32], total[32], rate[32], bar[PROGRESS_BAR_WIDTH + 1];
	double secs = (double)(now - p->start_ns) / 1e9;
	fmt_bytes(done, sizeof(done), (double)p->done);
	fmt_bytes(rate, sizeof(rate), secs > 0 ? (double)p->done / secs : 0);
	if (p->total) {
		uint64_t d = p->done < p->total ? p->done : p->total;
		int fill = (int)((double)d / (double)p->total * PROGRESS_BAR_WIDTH);
		for (int i = 0; i < PROGRESS_BAR_WIDTH; i++)
			bar[i] = i < fill ? '#' : '.';
		bar[PROGRESS_BAR_WIDTH] = 0;
		fmt_bytes(total, sizeof(total), (double)p->total);
		fprintf(stderr, "\r\033[K%s [%s] %3d%% %s / %s, %s/s", p->label, bar,
		        (int)(100.0 * (double)d / (double)p->total), done, total, rate);
	} else {
		fprintf(stderr, "\r\033[K%s %s, %s/s, %.0f s", p->label, done, rate, secs);
	}
	fflush(stderr);
	p->drawn = 1;
	p->last_draw_ns = now;
}

void progress_update(struct progress *p, uint64_t done, uint64_t total)
{
	if (!p->enabled)
		return;
	p->done = done;
	if (total)
		p->total = total;
	uint64_t now = mono_ns();
	if (now - p->last_draw_ns >= PROGRESS_INTERVAL_NS)
		progress_draw(p, now);
}

void progress_finish(struct progress *p)
{
	if (!p->enabled || !p->drawn)
		return;
	fputs("\r\033[K", stderr);
	fflush(stderr);
	p->drawn = 0;
}

struct progress_poller {
	struct progress *p;
	uint64_t (*sample)(void *ctx);
	void *ctx;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop;
};

static void *poller_main(void *arg)
{
	struct progress_poller *pp = arg;
	pthread_mutex_lock(&pp->mu);
	while (!pp->stop) {
		struct timespec ts;
		pthread_mutex_unlock(&pp->mu);
		progress_update(pp->p, pp->sample(pp->ctx), 0);
		pthread_mutex_lock(&pp->mu);
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += (long)PROGRESS_INTERVAL_NS;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		if (!pp->stop)
			pthread_cond_timedwait(&pp->cv, &pp->mu, &ts);
	}
	pthread_mutex_unlock(&pp->mu);
	return NULL;
}

struct progress_poller *progress_poll_start(struct progress *p, uint64_t (*sample)(void *ctx),
                                            void *ctx)
{
	if (!p->enabled)
		return NULL;
	struct progress_poller *pp = calloc(1, sizeof(*pp));
	if (!pp)
		return NULL;
	pp->p = p;
	pp->sample = sample;
	pp->ctx = ctx;
	pthread_mutex_init(&pp->mu, NULL);
	pthread_cond_init(&pp->cv, NULL);
	if (pthread_create(&pp->thread, NULL, poller_main, pp)) {
		pthread_mutex_destroy(&pp->mu);
		pthread_cond_destroy(&pp->cv);
		free(pp);
		return NULL;
	}
	return pp;
}

void progress_poll_stop(struct progress_poller *pp)
{
	if (!pp)
		return;
	pthread_mutex_lock(&pp->mu);
	pp->stop = 1;
	pthread_cond_signal(&pp->cv);
	pthread_mutex_unlock(&pp->mu);
	pthread_join(pp->thread, NULL);
	pthread_mutex_destroy(&pp->mu);
	pthread_cond_destroy(&pp->cv);
	free(pp);
}
