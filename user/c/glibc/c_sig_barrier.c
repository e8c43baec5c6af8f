/*
 * c_sig_barrier: a SIGSEGV write barrier, as garbage collectors and
 * runtimes build one. A region is made read-only; a SA_SIGINFO handler
 * checks si_signo, si_code (SEGV_ACCERR) and si_addr, makes the faulting
 * page writable and returns, so the store is retried and lands. Floating
 * point values live in registers across the faults while the handler
 * computes with its own (the frame must restore the FPU state). Then
 * SEGV_MAPERR: an unmapped page fixed up by mapping it from the handler,
 * and a read of an unmapped address escaped with siglongjmp. First in the
 * main thread, then in 4 threads at once, each on its own region.
 *
 * Built with glibc: gcc -static -pthread -O2.
 */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096
#define PAGES 64
#define THREADS 4

struct region {
	char *base;
	atomic_int faults;
	atomic_int bad;
};

/* Slot 0: the main thread's region; 1..THREADS: the threads'. */
static struct region regions[THREADS + 1];
static char *hole;		/* an unmapped page the handler maps */
static atomic_int hole_faults;
static __thread sigjmp_buf *escape;	/* where a read of an unmapped address goes */
static __thread volatile uintptr_t escape_addr;
static __thread volatile int escape_code;
static volatile double handler_sink;

static void on_segv(int sig, siginfo_t *info, void *ucontext)
{
	char *addr = info->si_addr;
	(void)ucontext;
	/* Clobber the FPU registers the interrupted code may be using. */
	handler_sink = (double)(uintptr_t)addr * 1.25 + handler_sink / 3.0;
	for (int i = 0; i <= THREADS; i++) {
		struct region *r = &regions[i];
		if (r->base && addr >= r->base && addr < r->base + PAGES * PAGE) {
			if (sig != SIGSEGV || info->si_signo != SIGSEGV || info->si_code != SEGV_ACCERR)
				atomic_fetch_add(&r->bad, 1);
			atomic_fetch_add(&r->faults, 1);
			char *page = (char *)((uintptr_t)addr & ~(uintptr_t)(PAGE - 1));
			mprotect(page, PAGE, PROT_READ | PROT_WRITE);
			return;
		}
	}
	if (hole && addr >= hole && addr < hole + PAGE) {
		if (info->si_code == SEGV_MAPERR)
			atomic_fetch_add(&hole_faults, 1);
		mmap(hole, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
		return;
	}
	if (escape) {
		escape_addr = (uintptr_t)addr;
		escape_code = info->si_code;
		siglongjmp(*escape, 1);
	}
	static const char msg[] = "c_sig_barrier: unexpected SIGSEGV\n";
	write(1, msg, sizeof msg - 1);
	_exit(3);
}

/* Fills region `k` through the barrier; returns a description of any problem. */
static const char *barrier(int k, double *sum)
{
	struct region *r = &regions[k];
	char *base = mmap(NULL, PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED)
		return "mmap failed";
	memset(base, 0x11, PAGES * PAGE);
	if (mprotect(base, PAGES * PAGE, PROT_READ))
		return "mprotect failed";
	r->base = base;
	double acc = 0.0, step = 0.5 + k;
	for (int i = 0; i < PAGES; i++) {
		base[i * PAGE + 8] = (char)(i + k);	/* faults once per page */
		acc += step * i;
	}
	*sum = acc;
	for (int i = 0; i < PAGES; i++) {
		if (base[i * PAGE + 8] != (char)(i + k) || base[i * PAGE] != 0x11)
			return "data differs";
	}
	if (atomic_load(&r->bad))
		return "wrong si_signo or si_code";
	if (atomic_load(&r->faults) != PAGES)
		return "wrong fault count";
	return NULL;
}

/* A read of an unmapped address (the page below the null limit) escapes with siglongjmp. */
static int longjmp_escape(void)
{
	sigjmp_buf env;
	escape = &env;
	if (sigsetjmp(env, 1) == 0) {
		volatile char *p;
		uintptr_t where = 0x10;
		__asm__ volatile("" : "+r"(where));	/* an address the compiler cannot see */
		p = (volatile char *)where;
		(void)*p;
		escape = NULL;
		return -1;
	}
	escape = NULL;
	return escape_addr == 0x10 && escape_code == SEGV_MAPERR;
}

static void *worker(void *arg)
{
	long k = (long)arg;
	double sum = 0;
	const char *problem = barrier((int)k, &sum);
	if (!problem && sum != (0.5 + k) * (PAGES * (PAGES - 1) / 2))
		problem = "floating-point sum differs";
	if (!problem && longjmp_escape() != 1)
		problem = "siglongjmp escape failed";
	return (void *)problem;
}

int main(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_segv;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSEGV, &sa, NULL)) {
		puts("sigaction failed");
		return 1;
	}

	double sum = 0;
	const char *problem = barrier(0, &sum);
	printf("main: %d pages through the write barrier, %d faults: %s\n", PAGES,
	       atomic_load(&regions[0].faults), problem ? problem : "ok");
	printf("main: floating point kept across faults: %s\n",
	       sum == 0.5 * (PAGES * (PAGES - 1) / 2) ? "ok" : "differs");

	hole = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	munmap(hole, PAGE);
	hole[100] = 42;
	printf("main: unmapped page mapped by the handler (SEGV_MAPERR %d time): read back %d\n",
	       atomic_load(&hole_faults), hole[100]);
	printf("main: read of 0x10 escaped with siglongjmp, SEGV_MAPERR at 0x10: %s\n",
	       longjmp_escape() == 1 ? "ok" : "failed");

	pthread_t threads[THREADS];
	for (long k = 1; k <= THREADS; k++)
		pthread_create(&threads[k - 1], NULL, worker, (void *)k);
	for (long k = 1; k <= THREADS; k++) {
		void *result;
		pthread_join(threads[k - 1], &result);
		printf("thread %ld: %d faults, floating point, siglongjmp: %s\n", k,
		       atomic_load(&regions[k].faults), result ? (const char *)result : "ok");
	}
	return 0;
}
