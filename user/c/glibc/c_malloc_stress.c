/*
 * c_malloc_stress: malloc, realloc and free from 8 threads at once, sizes
 * from 16 bytes to 1 MiB (log-uniform, so the allocator's small bins, its
 * per-thread arenas or caches and its mmap path for large blocks are all
 * used; glibc and musl differ in all three). Each block carries a pattern
 * of its owner, slot and generation, written every 64 bytes and in its
 * last byte; it is checked before every realloc (the kept prefix) and
 * free. Every thread's choices come from its own fixed-seed PRNG, so the
 * counts printed are the same on every run.
 *
 * Built with glibc (gcc -static -pthread -O2) and with musl.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 8
#define SLOTS 32
#define OPS 2000
#define STRIDE 64

struct block {
	unsigned char *p;
	size_t size;
	uint64_t tag;
};

struct result {
	long mallocs, reallocs, frees, checked, bad;
	uint64_t bytes;
};

static struct result results[THREADS];

static uint64_t next(uint64_t *s)
{
	/* xorshift64* */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dULL;
}

/* 16 B to 1 MiB: 2^(4..20) times 1 to 2, the power the smaller of two
 * uniform draws (small blocks common, big ones rare, as in programs). */
static size_t pick_size(uint64_t *s)
{
	unsigned x = next(s) % 17, y = next(s) % 17;
	unsigned shift = 4 + (x < y ? x : y);
	size_t base = (size_t)1 << shift;
	size_t size = base + next(s) % base;
	return size > (1 << 20) ? (1 << 20) : size;
}

/* The pattern's byte at `at`: words start at multiples of 8, so the last
 * byte agrees with a word that covers it. */
static unsigned char tag_byte(const struct block *b, size_t at)
{
	return (unsigned char)(b->tag >> (8 * (at % 8)));
}

static void fill(struct block *b, size_t from)
{
	for (size_t i = from - from % STRIDE; i < b->size; i += STRIDE)
		if (i >= from)
			memcpy(b->p + i, &b->tag, i + 8 <= b->size ? 8 : b->size - i);
	b->p[b->size - 1] = tag_byte(b, b->size - 1);
}

/* Whether the pattern of `tag` is intact in the first `len` bytes of `b`
 * (the last byte only if `len` is the whole block). */
static int intact(const struct block *b, size_t len, struct result *r)
{
	for (size_t i = 0; i + 8 <= len; i += STRIDE) {
		r->checked++;
		if (memcmp(b->p + i, &b->tag, 8) != 0)
			return 0;
	}
	if (len == b->size && b->p[b->size - 1] != tag_byte(b, b->size - 1))
		return 0;
	return 1;
}

static void *worker(void *arg)
{
	int id = (int)(intptr_t)arg;
	struct result *r = &results[id];
	struct block blocks[SLOTS];
	uint64_t seed = 0x9e3779b97f4a7c15ULL * (uint64_t)(id + 1);
	memset(blocks, 0, sizeof blocks);
	for (int op = 0; op < OPS; op++) {
		uint64_t roll = next(&seed);
		struct block *b = &blocks[roll % SLOTS];
		uint64_t tag = ((uint64_t)id << 56) | ((uint64_t)(roll % SLOTS) << 48) | (uint64_t)op;
		if (b->p == NULL) {
			b->size = pick_size(&seed);
			b->p = malloc(b->size);
			if (b->p == NULL) {
				r->bad++;
				continue;
			}
			b->tag = tag;
			fill(b, 0);
			r->mallocs++;
			r->bytes += b->size;
		} else if ((roll >> 32) % 3 == 0) {
			if (!intact(b, b->size, r))
				r->bad++;
			free(b->p);
			b->p = NULL;
			r->frees++;
		} else {
			size_t size = pick_size(&seed);
			size_t kept = size < b->size ? size : b->size;
			unsigned char *p = realloc(b->p, size);
			if (p == NULL) {
				r->bad++;
				continue;
			}
			b->p = p;
			/* The kept bytes moved with the block. */
			if (!intact(b, kept, r))
				r->bad++;
			b->size = size;
			b->tag = tag;
			fill(b, 0);
			r->reallocs++;
			r->bytes += size;
		}
	}
	for (int i = 0; i < SLOTS; i++) {
		if (blocks[i].p != NULL) {
			if (!intact(&blocks[i], blocks[i].size, r))
				r->bad++;
			free(blocks[i].p);
			r->frees++;
		}
	}
	return NULL;
}

int main(void)
{
	pthread_t threads[THREADS];
	for (int i = 0; i < THREADS; i++)
		pthread_create(&threads[i], NULL, worker, (void *)(intptr_t)i);
	long bad = 0;
	for (int i = 0; i < THREADS; i++) {
		pthread_join(threads[i], NULL);
		struct result *r = &results[i];
		printf("thread %d: %ld mallocs, %ld reallocs, %ld frees, %llu bytes asked for, %ld words checked, %ld bad\n",
		       i, r->mallocs, r->reallocs, r->frees, (unsigned long long)r->bytes, r->checked, r->bad);
		bad += r->bad;
	}
	printf("%s\n", bad ? "CORRUPTED" : "every block kept its pattern");
	return bad != 0;
}
