/*
 * c_madv_loop: glibc, two threads, each looping: mmap 1 MiB; for each page
 * write a byte, madvise(MADV_DONTNEED) the page, check it reads zero again;
 * munmap. Every step takes mmap_lock and zaps translations the other CPU may
 * be walking, and every page is faulted in twice: a stress test of the
 * fault/zap/shootdown paths under two CPUs. Reported to hang our kernel on 2
 * CPUs about one boot in ten (no output until the time limit, sometimes in
 * exit_group).
 *
 * Built with glibc: gcc -static -pthread -O2. glibc's start-up and
 * pthread_create call system calls our kernel lacks (the kernel logs each
 * ENOSYS once; those [kernel] lines are not part of the output compared).
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define THREADS 2
#define ROUNDS 12
#define LEN (1 << 20)
#define PAGE 4096

static const char *failure[THREADS];

static void *worker(void *arg)
{
	long k = (long)arg;
	for (int round = 0; round < ROUNDS; round++) {
		unsigned char *p = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) {
			failure[k] = "mmap failed";
			return NULL;
		}
		for (size_t off = 0; off < LEN; off += PAGE) {
			volatile unsigned char *b = p + off;
			*b = (unsigned char)(k + 1);
			if (madvise(p + off, PAGE, MADV_DONTNEED) != 0) {
				failure[k] = "madvise failed";
				return NULL;
			}
			/* A private page reads as zero after MADV_DONTNEED. */
			if (*b != 0) {
				failure[k] = "a page kept its data after MADV_DONTNEED";
				return NULL;
			}
		}
		if (munmap(p, LEN) != 0) {
			failure[k] = "munmap failed";
			return NULL;
		}
	}
	return NULL;
}

int main(void)
{
	pthread_t t[THREADS];
	pthread_attr_t attr;
	struct timespec t0, t1;
	int status = 0;

	/* Small stacks: the threads need little, and our kernel maps on demand anyway. */
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	printf("c_madv_loop: %d threads, each %d rounds of: mmap 1 MiB, write + MADV_DONTNEED + read back each page, munmap\n",
	       THREADS, ROUNDS);
	fflush(stdout);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (long k = 0; k < THREADS; k++) {
		int e = pthread_create(&t[k], &attr, worker, (void *)k);
		if (e != 0) {
			printf("FAIL: pthread_create: %s\n", strerror(e));
			return 1;
		}
	}
	/* Join in order, so the output does not depend on which finishes first. */
	for (long k = 0; k < THREADS; k++) {
		pthread_join(t[k], NULL);
		if (failure[k]) {
			printf("thread %ld FAIL: %s\n", k, failure[k]);
			status = 1;
		} else {
			printf("thread %ld ok\n", k);
		}
		fflush(stdout);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("info: the threads took %ld ms\n", (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000);
	return status;
}
