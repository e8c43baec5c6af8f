/*
 * c_mremap: mremap(2) as programs use it. Growth in place, shrinking,
 * moves (MREMAP_MAYMOVE, MREMAP_FIXED over an existing mapping,
 * MREMAP_DONTUNMAP), shared anonymous memory (moved, and duplicated with
 * old_len 0), Linux's errors, two threads (one faults its own mapping while
 * the other moves a different one back and forth), and realloc of a large
 * block (glibc and musl grow those with mremap) up to 64 MiB. Every step
 * checks the data: a move keeps every byte, new pages read as zero.
 *
 * Built with glibc (gcc -static -pthread) and with musl (c_musl_mremap).
 * The output names no addresses, so it is the same on every kernel.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif

#define PAGE 4096UL

static int failures;

static void check(int ok, const char *what)
{
	printf("%s: %s\n", ok ? "ok" : "FAIL", what);
	if (!ok)
		failures++;
}

/* The raw system call, so that musl's and glibc's wrappers (musl refuses
 * some arguments itself) do not stand between us and the kernel. */
static void *remap(void *old, size_t old_len, size_t new_len, unsigned long flags, void *new_addr)
{
	return (void *)syscall(SYS_mremap, old, old_len, new_len, flags, new_addr);
}

/* The errno of a call expected to fail, or 0 if it succeeded. */
static int remap_errno(void *old, size_t old_len, size_t new_len, unsigned long flags, void *new_addr)
{
	errno = 0;
	void *p = remap(old, old_len, new_len, flags, new_addr);
	return p == MAP_FAILED ? errno : 0;
}

static unsigned char *map(size_t len, int flags)
{
	unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, flags | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		printf("FAIL: mmap of %zu bytes\n", len);
		exit(1);
	}
	return p;
}

static unsigned char pattern(size_t i, int seed)
{
	return (unsigned char)(i * 7 + i / PAGE * 13 + seed);
}

static void fill(unsigned char *p, size_t len, int seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = pattern(i, seed);
}

static int holds(const unsigned char *p, size_t len, int seed)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != pattern(i, seed))
			return 0;
	return 1;
}

static int zero(const unsigned char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != 0)
			return 0;
	return 1;
}

/* Whether [p, p + len) is all mapped: mprotect fails with ENOMEM at a hole. */
static int mapped(void *p, size_t len)
{
	return mprotect(p, len, PROT_READ | PROT_WRITE) == 0;
}

static int unmapped(void *p, size_t len)
{
	for (size_t off = 0; off < len; off += PAGE)
		if (mprotect((char *)p + off, PAGE, PROT_READ | PROT_WRITE) == 0 || errno != ENOMEM)
			return 0;
	return 1;
}

static void grow_and_shrink(void)
{
	/* Room after the mapping: map 8 pages, give the last 4 back. */
	unsigned char *p = map(8 * PAGE, MAP_PRIVATE);
	munmap(p + 4 * PAGE, 4 * PAGE);
	fill(p, 4 * PAGE, 1);
	unsigned char *q = remap(p, 4 * PAGE, 8 * PAGE, 0, NULL);
	check(q == p, "grow in place without MREMAP_MAYMOVE keeps the address");
	check(holds(q, 4 * PAGE, 1), "grow in place keeps the data");
	check(zero(q + 4 * PAGE, 4 * PAGE), "the grown part reads as zero");

	/* Shrink: the tail goes. */
	q = remap(p, 8 * PAGE, 3 * PAGE, 0, NULL);
	check(q == p, "shrink keeps the address");
	check(holds(q, 3 * PAGE, 1), "shrink keeps the data that stays");
	check(unmapped(p + 3 * PAGE, 5 * PAGE), "shrink unmaps the tail");
	check(remap(p, 3 * PAGE, 3 * PAGE, 0, NULL) == p, "same length: nothing to do");
	munmap(p, 3 * PAGE);
}

static void moves(void)
{
	/* A neighbour right after the mapping stops growth in place. */
	unsigned char *p = map(17 * PAGE, MAP_PRIVATE);
	mprotect(p + 16 * PAGE, PAGE, PROT_READ);
	fill(p, 16 * PAGE, 2);
	check(remap_errno(p, 16 * PAGE, 64 * PAGE, 0, NULL) == ENOMEM,
	      "growth blocked by a neighbour, no MREMAP_MAYMOVE: ENOMEM");
	check(holds(p, 16 * PAGE, 2), "the refused growth changed nothing");
	unsigned char *q = remap(p, 16 * PAGE, 64 * PAGE, MREMAP_MAYMOVE, NULL);
	check(q != MAP_FAILED && q != p, "MREMAP_MAYMOVE moves it");
	check(holds(q, 16 * PAGE, 2), "the moved pages keep their data");
	check(zero(q + 16 * PAGE, 48 * PAGE), "the new tail reads as zero");
	check(unmapped(p, 16 * PAGE), "the old range is gone");
	check(mapped(p + 16 * PAGE, PAGE), "the neighbour stays");
	munmap(p + 16 * PAGE, PAGE);

	/* Growth from the middle of a mapping cannot be in place either. */
	unsigned char *r = remap(q + 4 * PAGE, 4 * PAGE, 8 * PAGE, MREMAP_MAYMOVE, NULL);
	check(r != MAP_FAILED && r != q + 4 * PAGE, "a piece from the middle of a mapping moves");
	int middle_ok = 1;
	for (size_t i = 0; i < 4 * PAGE; i++)
		if (r[i] != pattern(i + 4 * PAGE, 2))
			middle_ok = 0;
	check(middle_ok && zero(r + 4 * PAGE, 4 * PAGE), "the middle piece's data and a zero tail");
	check(holds(q, 4 * PAGE, 2) && unmapped(q + 4 * PAGE, 4 * PAGE), "the front stays, the hole is a hole");
	munmap(r, 8 * PAGE);
	munmap(q, 64 * PAGE);

	/* MREMAP_FIXED over an existing mapping replaces that part of it. */
	unsigned char *src = map(4 * PAGE, MAP_PRIVATE);
	unsigned char *dst = map(8 * PAGE, MAP_PRIVATE);
	fill(src, 4 * PAGE, 3);
	fill(dst, 8 * PAGE, 4);
	q = remap(src, 4 * PAGE, 4 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
	check(q == dst, "MREMAP_FIXED moves to the given address");
	check(holds(dst, 4 * PAGE, 3), "the destination holds the moved data");
	int tail_ok = 1;
	for (size_t i = 4 * PAGE; i < 8 * PAGE; i++)
		if (dst[i] != pattern(i, 4))
			tail_ok = 0;
	check(tail_ok, "the rest of the replaced mapping is untouched");
	check(unmapped(src, 4 * PAGE), "the source is gone");
	munmap(dst, 8 * PAGE);

	/* MREMAP_FIXED that shrinks on the way. */
	src = map(6 * PAGE, MAP_PRIVATE);
	dst = map(2 * PAGE, MAP_PRIVATE);
	fill(src, 6 * PAGE, 5);
	q = remap(src, 6 * PAGE, 2 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
	check(q == dst && holds(dst, 2 * PAGE, 5), "MREMAP_FIXED with a smaller length moves the front");
	check(unmapped(src, 6 * PAGE), "and unmaps all of the source");
	munmap(dst, 2 * PAGE);

	/* MREMAP_DONTUNMAP: the pages move, the old range stays mapped, empty. */
	src = map(4 * PAGE, MAP_PRIVATE);
	fill(src, 4 * PAGE, 6);
	q = remap(src, 4 * PAGE, 4 * PAGE, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, NULL);
	check(q != MAP_FAILED && q != src, "MREMAP_DONTUNMAP moves");
	check(holds(q, 4 * PAGE, 6), "MREMAP_DONTUNMAP: the new range has the data");
	check(mapped(src, 4 * PAGE) && zero(src, 4 * PAGE), "MREMAP_DONTUNMAP: the old range is mapped and reads zero");
	src[0] = 42;
	check(src[0] == 42 && q[0] == pattern(0, 6), "the old range takes new pages of its own");
	munmap(src, 4 * PAGE);
	munmap(q, 4 * PAGE);
}

static sigjmp_buf bus_jump;

static void on_sigbus(int sig, siginfo_t *info, void *context)
{
	(void)sig, (void)info, (void)context;
	siglongjmp(bus_jump, 1);
}

/* Whether reading *p raises SIGBUS. */
static int touch_is_sigbus(volatile unsigned char *p)
{
	struct sigaction action = { .sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO }, old;
	sigaction(SIGBUS, &action, &old);
	int bus = 0;
	if (sigsetjmp(bus_jump, 1) == 0)
		(void)*p;
	else
		bus = 1;
	sigaction(SIGBUS, &old, NULL);
	return bus;
}

static void shared(void)
{
	unsigned char *p = map(4 * PAGE, MAP_SHARED);
	fill(p, 4 * PAGE, 7);
	/* Duplicate: old_len 0 makes a second mapping of the same memory. */
	unsigned char *dup = remap(p, 0, 4 * PAGE, MREMAP_MAYMOVE, NULL);
	check(dup != MAP_FAILED && dup != p && holds(dup, 4 * PAGE, 7), "shared: old_len 0 maps the same memory again");
	dup[5] = 99;
	check(p[5] == 99, "shared: a write through the copy shows in the original");
	p[5] = pattern(5, 7);
	check(mapped(p, 4 * PAGE), "shared: the original stays");
	munmap(dup, 4 * PAGE);

	/* Move and grow: the pages move with their memory. */
	unsigned char *blocker = mmap(p + 4 * PAGE, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	unsigned char *q = remap(p, 4 * PAGE, 16 * PAGE, MREMAP_MAYMOVE, NULL);
	check(q != MAP_FAILED && q != p && holds(q, 4 * PAGE, 7), "shared: a move keeps the data");
	/* The grown part lies past the end of the memory object (4 pages):
	 * a touch there is SIGBUS. */
	check(touch_is_sigbus(q + 4 * PAGE), "shared: a touch past the end of the memory object is SIGBUS");
	check(unmapped(p, 4 * PAGE), "shared: the old range is gone");
	if (blocker != MAP_FAILED)
		munmap(blocker, PAGE);

	/* MREMAP_DONTUNMAP of shared memory: the old range still maps it. */
	unsigned char *r = remap(q, 16 * PAGE, 16 * PAGE, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, NULL);
	check(r != MAP_FAILED && holds(r, 4 * PAGE, 7), "shared: MREMAP_DONTUNMAP moves the data");
	check(holds(q, 4 * PAGE, 7), "shared: after MREMAP_DONTUNMAP the old range still shows the memory");
	q[1] = 11;
	check(r[1] == 11, "shared: both ranges map the same memory");
	munmap(q, 16 * PAGE);
	munmap(r, 16 * PAGE);
}

static void errors(void)
{
	unsigned char *p = map(4 * PAGE, MAP_PRIVATE);
	unsigned char *hole = map(PAGE, MAP_PRIVATE);
	munmap(hole, PAGE);
	check(remap_errno(p, PAGE, 2 * PAGE, 8, NULL) == EINVAL, "unknown flags: EINVAL");
	check(remap_errno(p, PAGE, 2 * PAGE, MREMAP_FIXED, hole) == EINVAL, "MREMAP_FIXED without MREMAP_MAYMOVE: EINVAL");
	check(remap_errno(p, PAGE, PAGE, MREMAP_DONTUNMAP, NULL) == EINVAL,
	      "MREMAP_DONTUNMAP without MREMAP_MAYMOVE: EINVAL");
	check(remap_errno(p, PAGE, 2 * PAGE, MREMAP_MAYMOVE | MREMAP_DONTUNMAP, NULL) == EINVAL,
	      "MREMAP_DONTUNMAP with a new length: EINVAL");
	check(remap_errno(p + 1, PAGE, 2 * PAGE, 0, NULL) == EINVAL, "unaligned address: EINVAL");
	check(remap_errno(p, PAGE, 0, 0, NULL) == EINVAL, "new length 0: EINVAL");
	check(remap_errno(hole, PAGE, 2 * PAGE, MREMAP_MAYMOVE, NULL) == EFAULT, "unmapped old range: EFAULT");
	check(remap_errno(p, 0, PAGE, MREMAP_MAYMOVE, NULL) == EINVAL, "old length 0 of private memory: EINVAL");
	check(remap_errno(p, PAGE, PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, p + 1) == EINVAL,
	      "MREMAP_FIXED to an unaligned address: EINVAL");
	check(remap_errno(p, 2 * PAGE, 2 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, p + PAGE) == EINVAL,
	      "MREMAP_FIXED onto an overlapping range: EINVAL");
	/* Two VMAs (different protections): growth across them is EFAULT. */
	mprotect(p + 2 * PAGE, 2 * PAGE, PROT_READ);
	check(remap_errno(p, 4 * PAGE, 8 * PAGE, MREMAP_MAYMOVE, NULL) == EFAULT,
	      "an old range over two mappings: EFAULT");
	check(mapped(p, 4 * PAGE), "the failures changed nothing");
	munmap(p, 4 * PAGE);
}

/* Two threads: one faults its own mapping in and out, the other moves a
 * different mapping back and forth between two places; both check data. */
#define ROUNDS 200
static const char *thread_failure[2];

static void *faulter(void *arg)
{
	(void)arg;
	for (int round = 0; round < ROUNDS; round++) {
		unsigned char *p = mmap(NULL, 16 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) {
			thread_failure[0] = "mmap failed";
			return NULL;
		}
		for (size_t off = 0; off < 16 * PAGE; off += PAGE)
			p[off] = (unsigned char)(round + off / PAGE);
		for (size_t off = 0; off < 16 * PAGE; off += PAGE)
			if (p[off] != (unsigned char)(round + off / PAGE))
				thread_failure[0] = "a faulted page lost its data";
		munmap(p, 16 * PAGE);
	}
	return NULL;
}

static void *mover(void *arg)
{
	(void)arg;
	size_t len = 8 * PAGE;
	unsigned char *a = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	unsigned char *b = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	unsigned char *c = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED || b == MAP_FAILED || c == MAP_FAILED) {
		thread_failure[1] = "mmap failed";
		return NULL;
	}
	fill(a, len, 8);
	fill(c, len, 10);
	for (int round = 0; round < ROUNDS; round++) {
		/* Back and forth between a and b; MREMAP_DONTUNMAP leaves the
		 * source mapped (and empty), so no hole opens that the other
		 * thread's mmap could take. */
		unsigned char *from = round % 2 ? b : a, *to = round % 2 ? a : b;
		if (remap(from, len, len, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP, to) != to) {
			thread_failure[1] = "mremap (MREMAP_FIXED) failed";
			return NULL;
		}
		if (!holds(to, len, 8) || !zero(from, len)) {
			thread_failure[1] = "a page moved with MREMAP_FIXED lost its data";
			return NULL;
		}
		/* c grows (moving if it must), then shrinks back. */
		unsigned char *grown = remap(c, len, 4 * len, MREMAP_MAYMOVE, NULL);
		if (grown == MAP_FAILED || !holds(grown, len, 10) || !zero(grown + len, 3 * len)) {
			thread_failure[1] = "a page moved by growth lost its data";
			return NULL;
		}
		c = remap(grown, 4 * len, len, 0, NULL);
		if (c != grown || !holds(c, len, 10)) {
			thread_failure[1] = "shrinking lost data";
			return NULL;
		}
	}
	munmap(a, len);
	munmap(b, len);
	munmap(c, len);
	return NULL;
}

static void threads(void)
{
	pthread_t t[2];
	pthread_create(&t[0], NULL, faulter, NULL);
	pthread_create(&t[1], NULL, mover, NULL);
	pthread_join(t[0], NULL);
	pthread_join(t[1], NULL);
	printf("threads: %d rounds of faults beside %d rounds of mremap\n", ROUNDS, ROUNDS);
	check(thread_failure[0] == NULL, thread_failure[0] ? thread_failure[0] : "the faulting thread's data is right");
	check(thread_failure[1] == NULL, thread_failure[1] ? thread_failure[1] : "the moving thread's data is right");
}

static void realloc_large(void)
{
	size_t len = 256 * 1024;
	unsigned char *p = malloc(len);
	if (p == NULL) {
		check(0, "malloc of 256 KiB");
		return;
	}
	fill(p, len, 9);
	int ok = 1;
	size_t filled = len;
	for (size_t size = 2 * len; size <= (64UL << 20); size *= 2) {
		p = realloc(p, size);
		if (p == NULL || !holds(p, len, 9)) {
			ok = 0;
			break;
		}
		/* One byte per new page, so growth keeps real pages too. */
		for (size_t off = filled; off < size; off += PAGE)
			p[off] = (unsigned char)(off / PAGE);
		for (size_t off = filled; off < size; off += PAGE)
			if (p[off] != (unsigned char)(off / PAGE))
				ok = 0;
		filled = size;
	}
	check(ok, "realloc: a 256 KiB block's data survived growth to 64 MiB");
	free(p);
}

int main(void)
{
	printf("c_mremap: growth, shrinking, moves, shared memory, errors, threads, realloc\n");
	grow_and_shrink();
	moves();
	shared();
	errors();
	threads();
	realloc_large();
	printf("c_mremap: %s\n", failures ? "FAILED" : "all passed");
	return failures ? 1 : 0;
}
