/*
 * bufpool.c - request-sized buffers mapped from the kernel and kept within a
 * bound (bufpool.h).
 *
 * Each buffer starts with a header of BUFPOOL_HDR bytes that says how it
 * was made: its mapping length (0 for a malloc'd one) and its size class
 * (-1 for a mapping too large to keep). The caller sees what follows.
 */
#include "bufpool.h"

#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define BUFPOOL_HDR 64 /* keeps the caller's bytes 64-byte aligned */

struct bufpool_hdr {
	size_t map_len; /* 0: malloc'd */
	size_t charge;  /* bytes counted in in_use */
	int cls;        /* size class, or -1: unmapped when put back */
	void *next;     /* in a free list */
};

_Static_assert(sizeof(struct bufpool_hdr) <= BUFPOOL_HDR, "bufpool header too large");

void bufpool_init(struct bufpool *p, size_t limit)
{
	*p = (struct bufpool){.limit = limit};
	pthread_mutex_init(&p->mu, NULL);
}

void bufpool_destroy(struct bufpool *p)
{
	for (int c = 0; c < BUFPOOL_CLASSES; c++) {
		while (p->free_list[c]) {
			struct bufpool_hdr *h = p->free_list[c];

			p->free_list[c] = h->next;
			munmap(h, h->map_len);
		}
	}
	p->cached = 0;
	pthread_mutex_destroy(&p->mu);
}

/* The class whose buffers hold size bytes, or -1 when none does. */
static int bufpool_class(size_t size)
{
	for (int c = 0; c < BUFPOOL_CLASSES; c++)
		if (size <= ((size_t)BUFPOOL_MIN << c))
			return c;
	return -1;
}

static size_t bufpool_map_len(size_t size)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	return (size + BUFPOOL_HDR + page - 1) / page * page;
}

static void *bufpool_small(struct bufpool *p, size_t size)
{
	struct bufpool_hdr *h = malloc(size + BUFPOOL_HDR);

	if (!h)
		return NULL;
	*h = (struct bufpool_hdr){.map_len = 0, .charge = size, .cls = -1};
	pthread_mutex_lock(&p->mu);
	p->in_use += size;
	pthread_mutex_unlock(&p->mu);
	return (char *)h + BUFPOOL_HDR;
}

void *bufpool_get(struct bufpool *p, size_t size)
{
	struct bufpool_hdr *h;
	int cls;
	size_t len;

	if (!size)
		size = 1;
	if (size > SIZE_MAX / 2)
		return NULL;
	if (size < BUFPOOL_MIN)
		return bufpool_small(p, size);
	cls = bufpool_class(size);
	len = bufpool_map_len(cls < 0 ? size : (size_t)BUFPOOL_MIN << cls);
	pthread_mutex_lock(&p->mu);
	h = cls < 0 ? NULL : p->free_list[cls];
	if (h) {
		p->free_list[cls] = h->next;
		p->cached -= h->map_len;
		p->reuses++;
	} else {
		p->maps++;
	}
	p->in_use += len;
	pthread_mutex_unlock(&p->mu);
	if (!h) {
		void *m =
		        mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (m == MAP_FAILED) {
			pthread_mutex_lock(&p->mu);
			p->in_use -= len;
			pthread_mutex_unlock(&p->mu);
			return NULL;
		}
		h = m;
		*h = (struct bufpool_hdr){.map_len = len, .charge = len, .cls = cls};
	}
	return (char *)h + BUFPOOL_HDR;
}

void bufpool_put(struct bufpool *p, void *buf)
{
	struct bufpool_hdr *h;
	int keep = 0;

	if (!buf)
		return;
	h = (struct bufpool_hdr *)((char *)buf - BUFPOOL_HDR);
	pthread_mutex_lock(&p->mu);
	p->in_use -= h->charge;
	if (h->map_len && h->cls >= 0 && p->cached + h->map_len <= p->limit) {
		h->next = p->free_list[h->cls];
		p->free_list[h->cls] = h;
		p->cached += h->map_len;
		keep = 1;
	}
	pthread_mutex_unlock(&p->mu);
	if (keep)
		return;
	if (h->map_len)
		munmap(h, h->map_len);
	else
		free(h);
}

void bufpool_figures(struct bufpool *p, struct bufpool_figures *f)
{
	pthread_mutex_lock(&p->mu);
	*f = (struct bufpool_figures){.limit = p->limit,
	                              .cached = p->cached,
	                              .in_use = p->in_use,
	                              .maps = p->maps,
	                              .reuses = p->reuses};
	pthread_mutex_unlock(&p->mu);
}
