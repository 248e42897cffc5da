/*
 * bufpool.h - the daemon's request-sized buffers: read replies, listing
 * replies, whole values and pieces of commits.
 *
 * Their size follows the request (up to 1 MiB for a read, inline_max for a
 * small file's value), and taken from malloc they stay in the heap of the
 * thread that freed them: glibc keeps a heap per thread of the session loop,
 * and what one freed is seldom given back. So a buffer of BUFPOOL_MIN bytes
 * or more is mapped from the kernel (mmap), as the engine maps its
 * memtables, and on release either kept for the next request of the same
 * size class, while the buffers kept stay within the pool's bound, or
 * unmapped at once. Smaller ones come from malloc: they are too small to
 * matter. Thread-safe (one mutex of its own); no database calls.
 */
#ifndef CAIRNFS_BUFPOOL_H
#define CAIRNFS_BUFPOOL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define BUFPOOL_MIN     (32u << 10) /* smaller requests are malloc'd */
#define BUFPOOL_CLASSES 6           /* 32 KiB << 0..5: up to 1 MiB is kept */

struct bufpool {
	pthread_mutex_t mu;
	void *free_list[BUFPOOL_CLASSES]; /* kept buffers, linked through their header */
	size_t limit;                     /* the most bytes kept */
	size_t cached;                    /* bytes kept for reuse (mapped, idle) */
	size_t in_use;                    /* bytes handed out and not yet put back */
	uint64_t maps;                    /* mmap calls */
	uint64_t reuses;                  /* requests served from the kept buffers */
};

/* Prepares an empty pool that keeps at most limit bytes of idle buffers
 * (0: none, every large buffer is unmapped when put back). */
void bufpool_init(struct bufpool *p, size_t limit);
/* Unmaps every kept buffer. Buffers still out must not be put back after. */
void bufpool_destroy(struct bufpool *p);
/* A buffer of at least size bytes (size 0 counts as 1), or NULL. */
void *bufpool_get(struct bufpool *p, size_t size);
/* Gives back a buffer from bufpool_get (NULL: nothing). */
void bufpool_put(struct bufpool *p, void *buf);

struct bufpool_figures {
	size_t limit, cached, in_use;
	uint64_t maps, reuses;
};
void bufpool_figures(struct bufpool *p, struct bufpool_figures *f);

#endif /* CAIRNFS_BUFPOOL_H */
