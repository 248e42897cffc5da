/*
 * progress.h - a one-line progress bar on standard error for the long
 * commands of the cairn tool (check, compact, checkpoint, put from a pipe).
 *
 * It draws only when standard error is a terminal, at most ten times a
 * second, and erases itself when done, so scripts and logs never see it.
 * A poller thread can drive it for operations that give no callback: it
 * samples a counter (bytes written by compaction, bytes in a checkpoint
 * directory) every 100 ms while the caller blocks in the library.
 */
#ifndef CAIRN_CLI_PROGRESS_H
#define CAIRN_CLI_PROGRESS_H

#include <stdint.h>

struct progress {
	int enabled;
	const char *label;
	uint64_t done, total; /* total 0: unknown */
	uint64_t start_ns, last_draw_ns;
	int drawn;
};

/* Starts a bar labelled label (a static string); total may be 0 (unknown). */
void progress_init(struct progress *p, const char *label, uint64_t total);
/* Records done of total (total 0 keeps the previous total) and redraws when
 * the last drawing is old enough. */
void progress_update(struct progress *p, uint64_t done, uint64_t total);
/* Erases the bar. */
void progress_finish(struct progress *p);

struct progress_poller;

/* Starts a thread that calls sample(ctx) every 100 ms and shows the result as
 * bytes done. Returns NULL (and polls nothing) when the bar is disabled or a
 * thread cannot start; that is never an error for the caller. */
struct progress_poller *progress_poll_start(struct progress *p, uint64_t (*sample)(void *ctx),
                                            void *ctx);
/* Stops and joins the thread; NULL is accepted. */
void progress_poll_stop(struct progress_poller *pp);

#endif
