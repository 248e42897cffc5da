/*
 * cache.c - the sharded LRU cache behind the block cache and the table cache.
 *
 * A large cache is split into CACHE_SHARDS shards chosen by the top bits of
 * hash32(key); each shard has its own mutex, its own share of the capacity
 * and its own counters, so readers of different blocks rarely meet on a lock.
 *
 * Inside a shard every entry lives in an intrusive chained hash table
 * (doubled when it holds more entries than buckets) and on exactly one of two
 * circular lists while it is in the cache:
 *   - lru: entries no caller holds, oldest first; eviction takes from here;
 *   - in_use: entries some caller holds; they can never be evicted.
 * An entry's refs count the cache's own reference (while in_cache) plus one
 * per handle given out. An entry that is erased, replaced or evicted while
 * held leaves the table and both lists at once (usage drops then), and its
 * deleter runs when the last handle is released. So the deleter runs exactly
 * once, when the entry is both out of the cache and unreferenced.
 *
 * usage is the sum of the charges of the entries in the cache, held or not.
 * When an insert or a release leaves usage over the shard's capacity, unheld
 * entries are evicted from the old end of lru until it fits or lru is empty;
 * held entries can keep usage over capacity until they are released.
 */
#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "cairn.h"

#define CACHE_SHARD_BITS  4
#define CACHE_SHARDS      (1 << CACHE_SHARD_BITS)
#define CACHE_HASH_SEED   0x6361636bu /* "cack" */
#define CACHE_MIN_BUCKETS 16

/* The lru and in_use list links; first in an entry, so a link is its entry. */
struct cache_link {
	struct cache_link *next, *prev;
};

struct cache_handle {
	struct cache_link link; /* on lru or in_use while in the cache */
	void *value;
	void (*deleter)(struct slice key, void *value);
	struct cache_handle *next_hash; /* chain in the shard's table */
	size_t charge;
	uint32_t hash;
	uint32_t refs;
	int in_cache;
	size_t key_len;
	char key[]; /* the entry owns a copy of its key */
};

struct cache_shard {
	pthread_mutex_t mu;
	size_t capacity;
	size_t usage;
	size_t entries;
	struct cache_link lru;    /* list head: prev is newest, next is oldest */
	struct cache_link in_use; /* list head */
	struct cache_handle **buckets;
	size_t nbuckets; /* a power of two */
	uint64_t hits, misses;
};

struct cache {
	size_t capacity;
	int shard_bits; /* 0 for small capacities, so the bound is exact */
	int nshards;
	atomic_uint_fast64_t last_id;
	struct cache_shard shards[CACHE_SHARDS];
};

static uint32_t cache_hash(struct slice key)
{
	return hash32(key.data, key.len, CACHE_HASH_SEED);
}

static struct cache_shard *cache_shard_of(struct cache *c, uint32_t hash)
{
	return &c->shards[c->shard_bits ? hash >> (32 - c->shard_bits) : 0];
}

static struct slice cache_key(const struct cache_handle *e)
{
	return slice_make(e->key, e->key_len);
}

static void list_init(struct cache_link *head)
{
	head->next = head;
	head->prev = head;
}

static void list_remove(struct cache_handle *e)
{
	struct cache_link *l = &e->link;
	l->next->prev = l->prev;
	l->prev->next = l->next;
	l->next = l->prev = NULL;
}

/* Appends e as the newest entry of the list at head. */
static void list_append(struct cache_link *head, struct cache_handle *e)
{
	struct cache_link *l = &e->link;
	l->next = head;
	l->prev = head->prev;
	l->prev->next = l;
	l->next->prev = l;
}

static struct cache_handle *list_entry(struct cache_link *l)
{
	return (struct cache_handle *)l;
}

/* Hash table. */

static struct cache_handle **table_find(struct cache_shard *s, struct slice key, uint32_t hash)
{
	struct cache_handle **p = &s->buckets[hash & (s->nbuckets - 1)];
	while (*p && ((*p)->hash != hash || !slice_eq(cache_key(*p), key)))
		p = &(*p)->next_hash;
	return p;
}

/* Doubles the bucket array. A failed allocation only leaves chains longer. */
static void table_grow(struct cache_shard *s)
{
	size_t n = s->nbuckets * 2;
	struct cache_handle **nb = calloc(n, sizeof(*nb));
	if (!nb)
		return;
	for (size_t i = 0; i < s->nbuckets; i++) {
		struct cache_handle *e = s->buckets[i];
		while (e) {
			struct cache_handle *next = e->next_hash;
			struct cache_handle **slot = &nb[e->hash & (n - 1)];
			e->next_hash = *slot;
			*slot = e;
			e = next;
		}
	}
	free(s->buckets);
	s->buckets = nb;
	s->nbuckets = n;
}

/* Links e into the table; returns the entry of the same key it replaced. */
static struct cache_handle *table_insert(struct cache_shard *s, struct cache_handle *e)
{
	struct cache_handle **p = table_find(s, cache_key(e), e->hash);
	struct cache_handle *old = *p;
	e->next_hash = old ? old->next_hash : NULL;
	*p = e;
	if (!old && ++s->entries > s->nbuckets)
		table_grow(s);
	return old;
}

static struct cache_handle *table_remove(struct cache_shard *s, struct slice key, uint32_t hash)
{
	struct cache_handle **p = table_find(s, key, hash);
	struct cache_handle *e = *p;
	if (e) {
		*p = e->next_hash;
		s->entries--;
	}
	return e;
}

/* Reference counting. Called with the shard lock held; returns 1 when the
 * entry is dead and the caller must run its deleter after unlocking. */

static void entry_ref(struct cache_shard *s, struct cache_handle *e)
{
	if (e->refs == 1 && e->in_cache) {
		list_remove(e);
		list_append(&s->in_use, e);
	}
	e->refs++;
}

static int entry_unref(struct cache_shard *s, struct cache_handle *e)
{
	assert(e->refs > 0);
	e->refs--;
	if (e->refs == 0) {
		assert(!e->in_cache);
		return 1;
	}
	if (e->in_cache && e->refs == 1) {
		list_remove(e);
		list_append(&s->lru, e);
	}
	return 0;
}

static void entry_delete(struct cache_handle *e)
{
	if (e->deleter)
		e->deleter(cache_key(e), e->value);
	free(e);
}

/* Takes e (already out of the table) out of the cache. Returns 1 when the
 * caller must delete it. */
static int entry_finish_erase(struct cache_shard *s, struct cache_handle *e)
{
	if (!e)
		return 0;
	assert(e->in_cache);
	list_remove(e);
	e->in_cache = 0;
	s->usage -= e->charge;
	return entry_unref(s, e);
}

/* Evicts unheld entries, oldest first, until usage fits. The dead entries
 * are chained through next_hash onto *dead for deletion outside the lock. */
static void shard_evict(struct cache_shard *s, struct cache_handle **dead)
{
	while (s->usage > s->capacity && s->lru.next != &s->lru) {
		struct cache_handle *old = list_entry(s->lru.next);
		assert(old->refs == 1);
		struct cache_handle *e = table_remove(s, cache_key(old), old->hash);
		assert(e == old);
		if (entry_finish_erase(s, e)) {
			e->next_hash = *dead;
			*dead = e;
		}
	}
}

static void delete_chain(struct cache_handle *dead)
{
	while (dead) {
		struct cache_handle *next = dead->next_hash;
		entry_delete(dead);
		dead = next;
	}
}

static int shard_init(struct cache_shard *s, size_t capacity)
{
	memset(s, 0, sizeof(*s));
	s->capacity = capacity;
	list_init(&s->lru);
	list_init(&s->in_use);
	s->nbuckets = CACHE_MIN_BUCKETS;
	s->buckets = calloc(s->nbuckets, sizeof(*s->buckets));
	if (!s->buckets)
		return CAIRN_ENOMEM;
	if (pthread_mutex_init(&s->mu, NULL)) {
		free(s->buckets);
		return CAIRN_ENOMEM;
	}
	return 0;
}

/* Frees every unheld entry. Entries still held at cache_free are a caller
 * bug; they are left alone (their memory leaks) rather than freed under a
 * holder's feet. */
static void shard_destroy(struct cache_shard *s)
{
	assert(s->in_use.next == &s->in_use);
	while (s->lru.next != &s->lru) {
		struct cache_handle *e = list_entry(s->lru.next);
		list_remove(e);
		entry_delete(e);
	}
	free(s->buckets);
	pthread_mutex_destroy(&s->mu);
}

int cache_new(size_t capacity, struct cache **cp)
{
	*cp = NULL;
	struct cache *c = calloc(1, sizeof(*c));
	if (!c)
		return CAIRN_ENOMEM;
	c->capacity = capacity;
	atomic_init(&c->last_id, 0);
	/* A small capacity (the table cache counts tables) would be split
	 * into shards too small to hold its share, so it gets one shard and
	 * an exact bound; large ones are sharded for concurrency. Round up so
	 * that the shards together hold at least capacity. */
	c->shard_bits = capacity >= 64u * CACHE_SHARDS ? CACHE_SHARD_BITS : 0;
	c->nshards = 1 << c->shard_bits;
	size_t per_shard = capacity / (size_t)c->nshards + (capacity % (size_t)c->nshards != 0);
	for (int i = 0; i < c->nshards; i++) {
		if (shard_init(&c->shards[i], per_shard)) {
			while (i-- > 0)
				shard_destroy(&c->shards[i]);
			free(c);
			return CAIRN_ENOMEM;
		}
	}
	*cp = c;
	return 0;
}

void cache_free(struct cache *c)
{
	if (!c)
		return;
	for (int i = 0; i < c->nshards; i++)
		shard_destroy(&c->shards[i]);
	free(c);
}

struct cache_handle *cache_insert(struct cache *c, struct slice key, void *value, size_t charge,
                                  void (*deleter)(struct slice key, void *value))
{
	struct cache_handle *e = malloc(sizeof(*e) + key.len);
	if (!e) {
		if (deleter)
			deleter(key, value);
		return NULL;
	}
	e->value = value;
	e->deleter = deleter;
	e->next_hash = NULL;
	e->link.next = e->link.prev = NULL;
	e->charge = charge;
	e->hash = cache_hash(key);
	e->refs = 1; /* the caller's handle */
	e->in_cache = 0;
	e->key_len = key.len;
	if (key.len)
		memcpy(e->key, key.data, key.len);

	struct cache_shard *s = cache_shard_of(c, e->hash);
	struct cache_handle *dead = NULL;
	pthread_mutex_lock(&s->mu);
	/* With capacity 0 nothing is retained: the entry lives only as long as
	 * its handle. */
	if (s->capacity > 0) {
		e->refs++; /* the cache's reference */
		e->in_cache = 1;
		list_append(&s->in_use, e);
		s->usage += charge;
		struct cache_handle *old = table_insert(s, e);
		if (entry_finish_erase(s, old)) {
			old->next_hash = dead;
			dead = old;
		}
		shard_evict(s, &dead);
	}
	pthread_mutex_unlock(&s->mu);
	delete_chain(dead);
	return e;
}

struct cache_handle *cache_lookup(struct cache *c, struct slice key)
{
	uint32_t hash = cache_hash(key);
	struct cache_shard *s = cache_shard_of(c, hash);
	pthread_mutex_lock(&s->mu);
	struct cache_handle *e = *table_find(s, key, hash);
	if (e) {
		entry_ref(s, e);
		s->hits++;
	} else {
		s->misses++;
	}
	pthread_mutex_unlock(&s->mu);
	return e;
}

void *cache_value(struct cache_handle *h)
{
	return h->value;
}

void cache_release(struct cache *c, struct cache_handle *h)
{
	if (!h)
		return;
	struct cache_shard *s = cache_shard_of(c, h->hash);
	struct cache_handle *dead = NULL;
	pthread_mutex_lock(&s->mu);
	if (entry_unref(s, h)) {
		h->next_hash = dead;
		dead = h;
	} else if (h->refs == 1 && h->in_cache) {
		/* It just became evictable: an insert may have left usage over
		 * capacity while it was held. */
		shard_evict(s, &dead);
	}
	pthread_mutex_unlock(&s->mu);
	delete_chain(dead);
}

void cache_erase(struct cache *c, struct slice key)
{
	uint32_t hash = cache_hash(key);
	struct cache_shard *s = cache_shard_of(c, hash);
	pthread_mutex_lock(&s->mu);
	struct cache_handle *e = table_remove(s, key, hash);
	int dead = entry_finish_erase(s, e);
	pthread_mutex_unlock(&s->mu);
	if (dead)
		entry_delete(e);
}

uint64_t cache_new_id(struct cache *c)
{
	return atomic_fetch_add(&c->last_id, 1) + 1;
}

size_t cache_usage(struct cache *c)
{
	size_t total = 0;
	for (int i = 0; i < c->nshards; i++) {
		struct cache_shard *s = &c->shards[i];
		pthread_mutex_lock(&s->mu);
		total += s->usage;
		pthread_mutex_unlock(&s->mu);
	}
	return total;
}

size_t cache_capacity(const struct cache *c)
{
	return c->capacity;
}

size_t cache_entries(struct cache *c)
{
	size_t total = 0;
	for (int i = 0; i < c->nshards; i++) {
		struct cache_shard *s = &c->shards[i];
		pthread_mutex_lock(&s->mu);
		total += s->entries;
		pthread_mutex_unlock(&s->mu);
	}
	return total;
}

void cache_counters(struct cache *c, uint64_t *hits, uint64_t *misses)
{
	uint64_t h = 0, m = 0;
	for (int i = 0; i < c->nshards; i++) {
		struct cache_shard *s = &c->shards[i];
		pthread_mutex_lock(&s->mu);
		h += s->hits;
		m += s->misses;
		pthread_mutex_unlock(&s->mu);
	}
	if (hits)
		*hits = h;
	if (misses)
		*misses = m;
}
