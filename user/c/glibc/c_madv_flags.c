/*
 * c_madv_flags: madvise hints that Linux keeps as VMA flags (MADV_NOHUGEPAGE,
 * MADV_HUGEPAGE, MADV_RANDOM, MADV_SEQUENTIAL, MADV_NORMAL) split and merge
 * VMAs: after each call, the number of /proc/self/maps lines that cover an
 * 8-page mapping. Then mincore after writing pages in order, with and without
 * MADV_NOHUGEPAGE: lines starting with "info:" differ by design (our
 * fault-around maps pages ahead) and are not compared.
 *
 * Built with glibc: gcc -static -pthread -O2.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGE 4096UL

/* The maps lines that lie inside [start, end). */
static int vmas_in(unsigned long start, unsigned long end)
{
	FILE *f = fopen("/proc/self/maps", "r");
	if (!f) {
		printf("cannot open /proc/self/maps\n");
		exit(1);
	}
	char line[512];
	int n = 0;
	while (fgets(line, sizeof line, f)) {
		unsigned long a, b;
		if (sscanf(line, "%lx-%lx", &a, &b) == 2 && a >= start && b <= end)
			n++;
	}
	fclose(f);
	return n;
}

static void advise(char *p, unsigned long from, unsigned long pages, int advice, const char *name)
{
	int r = madvise(p + from * PAGE, pages * PAGE, advice);
	printf("madvise(pages %lu-%lu, %s) = %d: %d VMAs\n", from, from + pages - 1, name, r,
	       vmas_in((unsigned long)p, (unsigned long)p + 8 * PAGE));
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	/* PID 1 on Linux has nothing mounted; ours has /proc from the start. */
	mkdir("/proc", 0555);
	mount("proc", "/proc", "proc", 0, NULL);
	/* Guard pages around it, so that nothing merges with it. */
	char *base = mmap(NULL, 10 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *p = mmap(base + PAGE, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	printf("an 8-page mapping: %d VMAs\n", vmas_in((unsigned long)p, (unsigned long)p + 8 * PAGE));
	advise(p, 2, 2, MADV_NOHUGEPAGE, "MADV_NOHUGEPAGE");
	advise(p, 2, 2, MADV_HUGEPAGE, "MADV_HUGEPAGE");
	advise(p, 0, 8, MADV_HUGEPAGE, "MADV_HUGEPAGE");
	advise(p, 3, 1, MADV_RANDOM, "MADV_RANDOM");
	advise(p, 3, 1, MADV_SEQUENTIAL, "MADV_SEQUENTIAL");
	advise(p, 0, 8, MADV_NORMAL, "MADV_NORMAL");
	advise(p, 0, 8, MADV_NOHUGEPAGE, "MADV_NOHUGEPAGE");
	advise(p, 0, 8, MADV_NORMAL, "MADV_NORMAL");
	/* A hole at the start: the rest takes the hint, the call fails with ENOMEM. */
	munmap(base, PAGE);
	int r = madvise(base, 10 * PAGE, MADV_RANDOM);
	printf("madvise(from a hole, MADV_RANDOM) = %d (%s): %d VMAs\n", r, r ? strerror(errno) : "ok",
	       vmas_in((unsigned long)p, (unsigned long)p + 8 * PAGE));
	munmap(base, 10 * PAGE);

	/* mincore after writing 32 pages in order. */
	for (int hint = 0; hint < 2; hint++) {
		char *q = mmap(NULL, 32 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (hint)
			madvise(q, 32 * PAGE, MADV_NOHUGEPAGE);
		for (int i = 0; i < 20; i++)
			q[i * PAGE] = 1;
		unsigned char vec[32];
		mincore(q, 32 * PAGE, vec);
		int resident = 0;
		for (int i = 0; i < 32; i++)
			resident += vec[i] & 1;
		if (hint)
			printf("20 of 32 pages written in order, MADV_NOHUGEPAGE: %d resident\n", resident);
		else
			printf("info: 20 of 32 pages written in order: %d resident\n", resident);
		munmap(q, 32 * PAGE);
	}
	printf("done\n");
	return 0;
}
