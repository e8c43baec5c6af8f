/*
 * c_syscalls: the system calls glibc and musl programs make beyond the
 * basics, success and error cases, printing the result and errno: setrlimit
 * (with RLIMIT_NOFILE and RLIMIT_AS taking effect), clone3's argument
 * checks, newfstatat, ioctl on a file, readlink of /proc/self,
 * sched_setaffinity, mincore, msync, mlock and friends, membarrier and
 * rt_sigtimedwait. Lines starting with "info:" differ between Linux and
 * this kernel by design and are not compared.
 *
 * Built with glibc: gcc -static -pthread -O2.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include "errname.h"

#define PAGE 4096L

static void show(const char *what, long r)
{
	if (r == -1)
		printf("%s: -1 %s\n", what, errname(errno));
	else
		printf("%s: %ld\n", what, r);
}

static long sys(long n, long a, long b, long c, long d, long e)
{
	return syscall(n, a, b, c, d, e, 0);
}

static void *idle_thread(void *arg)
{
	return arg;
}

static void limits(void)
{
	struct rlimit old, r;
	printf("-- setrlimit\n");
	show("setrlimit(99)", sys(SYS_setrlimit, 99, (long)&(struct rlimit){1, 1}, 0, 0, 0));
	show("setrlimit(NOFILE, cur > max)", sys(SYS_setrlimit, RLIMIT_NOFILE, (long)&(struct rlimit){10, 5}, 0, 0, 0));
	show("setrlimit(NOFILE, NULL)", sys(SYS_setrlimit, RLIMIT_NOFILE, 0, 0, 0, 0));
	show("setrlimit(NOFILE, bad pointer)", sys(SYS_setrlimit, RLIMIT_NOFILE, 8, 0, 0, 0));
	getrlimit(RLIMIT_NOFILE, &old);
	show("setrlimit(NOFILE, max above nr_open)",
	     sys(SYS_setrlimit, RLIMIT_NOFILE, (long)&(struct rlimit){1024, (1 << 20) + 1}, 0, 0, 0));

	/* RLIMIT_NOFILE bounds the lowest free fd. */
	int fd = open("/proc/meminfo", O_RDONLY);
	close(fd);
	r.rlim_cur = fd;
	r.rlim_max = old.rlim_max;
	show("setrlimit(NOFILE, the next fd)", sys(SYS_setrlimit, RLIMIT_NOFILE, (long)&r, 0, 0, 0));
	struct rlimit got;
	getrlimit(RLIMIT_NOFILE, &got);
	printf("getrlimit(NOFILE) gives it back: %s\n", got.rlim_cur == r.rlim_cur && got.rlim_max == r.rlim_max ? "yes" : "no");
	show("open with no fd below the limit", open("/proc/meminfo", O_RDONLY) < 0 ? -1 : 0);
	r.rlim_cur = fd + 1;
	setrlimit(RLIMIT_NOFILE, &r);
	int fd2 = open("/proc/meminfo", O_RDONLY);
	printf("open with one fd below the limit: %s\n", fd2 == fd ? "the next fd" : errname(errno));
	close(fd2);
	setrlimit(RLIMIT_NOFILE, &old);

	/* RLIMIT_AS bounds mmap and brk. */
	getrlimit(RLIMIT_AS, &old);
	r.rlim_cur = 1L << 30;
	r.rlim_max = old.rlim_max;
	show("setrlimit(AS, 1 GiB)", setrlimit(RLIMIT_AS, &r));
	void *p = mmap(NULL, 2L << 30, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	printf("mmap 2 GiB under it: %s\n", p == MAP_FAILED ? errname(errno) : "mapped");
	p = mmap(NULL, 16L << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	printf("mmap 16 MiB under it: %s\n", p == MAP_FAILED ? errname(errno) : "mapped");
	/* Replacing the same pages with MAP_FIXED adds nothing. */
	void *q = mmap(p, 16L << 20, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	printf("mmap MAP_FIXED over them: %s\n", q == p ? "mapped" : errname(errno));
	void *moved = mremap(p, 16L << 20, 2L << 30, MREMAP_MAYMOVE);
	printf("mremap to 2 GiB under it: %s\n", moved == MAP_FAILED ? errname(errno) : "moved");
	moved = mremap(p, 16L << 20, 32L << 20, MREMAP_MAYMOVE);
	printf("mremap to 32 MiB under it: %s\n", moved == MAP_FAILED ? errname(errno) : "done");
	munmap(moved == MAP_FAILED ? p : moved, moved == MAP_FAILED ? 16L << 20 : 32L << 20);
	long brk0 = sys(SYS_brk, 0, 0, 0, 0, 0);
	long brk1 = sys(SYS_brk, brk0 + (2L << 30), 0, 0, 0, 0);
	printf("brk 2 GiB up under it: %s\n", brk1 == brk0 ? "unchanged" : "moved");
	brk1 = sys(SYS_brk, brk0 + (1L << 20), 0, 0, 0, 0);
	printf("brk 1 MiB up under it: %s\n", brk1 == brk0 + (1L << 20) ? "moved" : "unchanged");
	sys(SYS_brk, brk0, 0, 0, 0, 0);
	show("setrlimit(AS) back", setrlimit(RLIMIT_AS, &old));

	/* Root is exempt from RLIMIT_NPROC. */
	getrlimit(RLIMIT_NPROC, &old);
	r.rlim_cur = 1;
	r.rlim_max = old.rlim_max;
	setrlimit(RLIMIT_NPROC, &r);
	pthread_t t;
	int e = pthread_create(&t, NULL, idle_thread, NULL);
	printf("pthread_create under RLIMIT_NPROC 1 as root: %s\n", errname(e));
	if (e == 0)
		pthread_join(t, NULL);
	setrlimit(RLIMIT_NPROC, &old);
	r.rlim_cur = 4 << 20;
	r.rlim_max = RLIM_INFINITY;
	getrlimit(RLIMIT_STACK, &old);
	show("setrlimit(STACK, 4 MiB)", setrlimit(RLIMIT_STACK, &r));
	setrlimit(RLIMIT_STACK, &old);
}

struct clone_args_v2 {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};

static void clone3_checks(void)
{
	struct {
		struct clone_args_v2 a;
		uint64_t extra[2];
	} big;
	struct clone_args_v2 a;
	const long thread = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD;
	printf("-- clone3\n");
	memset(&a, 0, sizeof a);
	show("clone3(size 0)", sys(SYS_clone3, (long)&a, 0, 0, 0, 0));
	show("clone3(size 63)", sys(SYS_clone3, (long)&a, 63, 0, 0, 0));
	show("clone3(size 4097)", sys(SYS_clone3, (long)&a, 4097, 0, 0, 0));
	show("clone3(bad pointer)", sys(SYS_clone3, 8, 64, 0, 0, 0));
	memset(&big, 0, sizeof big);
	big.a.flags = CLONE_THREAD;
	big.extra[1] = 1;
	show("clone3(a non-zero field past the known ones)", sys(SYS_clone3, (long)&big, sizeof big, 0, 0, 0));
	a.flags = CLONE_THREAD;
	show("clone3(CLONE_THREAD without CLONE_SIGHAND)", sys(SYS_clone3, (long)&a, 64, 0, 0, 0));
	a.flags = CLONE_SIGHAND;
	show("clone3(CLONE_SIGHAND without CLONE_VM)", sys(SYS_clone3, (long)&a, 64, 0, 0, 0));
	a.flags = thread;
	a.exit_signal = SIGCHLD;
	show("clone3(CLONE_THREAD with an exit signal)", sys(SYS_clone3, (long)&a, 64, 0, 0, 0));
	a.exit_signal = 256;
	show("clone3(exit signal 256)", sys(SYS_clone3, (long)&a, 64, 0, 0, 0));
	a.exit_signal = 0;
	a.stack = 0x10000;
	show("clone3(a stack without a size)", sys(SYS_clone3, (long)&a, 64, 0, 0, 0));
	a.stack = 0;
	a.stack_size = 4096;
	show("clone3(a size without a stack)", sys(SYS_clone3, (long)&a, 64, 0, 0, 0));
	a.stack_size = 0;
	a.flags = thread | (1ULL << 40);
	show("clone3(an unknown flag)", sys(SYS_clone3, (long)&a, 64, 0, 0, 0));
	a.flags = thread;
	a.set_tid_size = 1;
	show("clone3(set_tid_size without set_tid)", sys(SYS_clone3, (long)&a, 80, 0, 0, 0));
	/* Creating threads with it is what pthread_create does (glibc). */
	pthread_t t;
	int e = pthread_create(&t, NULL, idle_thread, NULL);
	printf("pthread_create: %s\n", errname(e));
	if (e == 0)
		pthread_join(t, NULL);
}

static void show_mode(const char *what, long r, struct stat *st)
{
	if (r == -1)
		printf("%s: -1 %s\n", what, errname(errno));
	else
		printf("%s: 0, mode %o, size %ld\n", what, st->st_mode, (long)st->st_size);
}

static void files(void)
{
	struct stat st;
	char buf[64];
	printf("-- newfstatat, fstat, ioctl, readlink\n");
	show_mode("newfstatat(/proc/meminfo)", sys(SYS_newfstatat, AT_FDCWD, (long)"/proc/meminfo", (long)&st, 0, 0), &st);
	show_mode("newfstatat(/proc)", sys(SYS_newfstatat, AT_FDCWD, (long)"/proc", (long)&st, 0, 0), &st);
	show_mode("newfstatat(/nonexistent)", sys(SYS_newfstatat, AT_FDCWD, (long)"/nonexistent", (long)&st, 0, 0), &st);
	show_mode("newfstatat(\"\")", sys(SYS_newfstatat, AT_FDCWD, (long)"", (long)&st, 0, 0), &st);
	show_mode("newfstatat(NULL)", sys(SYS_newfstatat, AT_FDCWD, 0, (long)&st, 0, 0), &st);
	show_mode("newfstatat(flags 1)", sys(SYS_newfstatat, AT_FDCWD, (long)"/proc/meminfo", (long)&st, 1, 0), &st);
	show_mode("newfstatat(bad buffer)", sys(SYS_newfstatat, AT_FDCWD, (long)"/proc/meminfo", 8, 0, 0), &st);
	int dir = open("/proc", O_RDONLY | O_DIRECTORY);
	show_mode("newfstatat(/proc fd, meminfo)", sys(SYS_newfstatat, dir, (long)"meminfo", (long)&st, 0, 0), &st);
	show_mode("newfstatat(99, meminfo)", sys(SYS_newfstatat, 99, (long)"meminfo", (long)&st, 0, 0), &st);
	int fd = open("/proc/meminfo", O_RDONLY);
	show_mode("newfstatat(fd, \"\", AT_EMPTY_PATH)", sys(SYS_newfstatat, fd, (long)"", (long)&st, AT_EMPTY_PATH, 0), &st);
	show_mode("newfstatat(99, \"\", AT_EMPTY_PATH)", sys(SYS_newfstatat, 99, (long)"", (long)&st, AT_EMPTY_PATH, 0), &st);
	show_mode("fstat(fd)", sys(SYS_fstat, fd, (long)&st, 0, 0, 0), &st);
	show_mode("fstat(99)", sys(SYS_fstat, 99, (long)&st, 0, 0, 0), &st);
	show_mode("stat (glibc)", stat("/proc/meminfo", &st), &st);
	struct termios t;
	show("ioctl(a /proc file, TCGETS)", sys(SYS_ioctl, fd, TCGETS, (long)&t, 0, 0));
	show("ioctl(99, TCGETS)", sys(SYS_ioctl, 99, TCGETS, (long)&t, 0, 0));
	close(fd);
	close(dir);

	long n = sys(SYS_readlink, (long)"/proc/self", (long)buf, sizeof buf, 0, 0);
	buf[n > 0 ? n : 0] = 0;
	printf("readlink(/proc/self): %s\n", n > 0 && atoi(buf) == getpid() ? "the pid" : errname(errno));
	show("readlink(/proc/self, 1 byte)", sys(SYS_readlink, (long)"/proc/self", (long)buf, 1, 0, 0));
	n = sys(SYS_readlinkat, AT_FDCWD, (long)"/proc/self", (long)buf, sizeof buf, 0);
	buf[n > 0 ? n : 0] = 0;
	printf("readlinkat(AT_FDCWD, /proc/self): %s\n", n > 0 && atoi(buf) == getpid() ? "the pid" : errname(errno));
	show("readlink(/proc/meminfo)", sys(SYS_readlink, (long)"/proc/meminfo", (long)buf, sizeof buf, 0, 0));
	show("readlink(/nonexistent)", sys(SYS_readlink, (long)"/nonexistent", (long)buf, sizeof buf, 0, 0));
	show("readlink(size 0)", sys(SYS_readlink, (long)"/proc/self", (long)buf, 0, 0, 0));
	show("readlink(NULL path)", sys(SYS_readlink, 0, (long)buf, sizeof buf, 0, 0));
	n = sys(SYS_readlink, (long)"/proc/self/exe", (long)buf, sizeof buf - 1, 0, 0);
	printf("info: readlink(/proc/self/exe): %ld %s\n", n, n < 0 ? errname(errno) : "");
}

static void affinity(void)
{
	cpu_set_t old, one;
	printf("-- sched_setaffinity\n");
	sched_getaffinity(0, sizeof old, &old);
	int first = 0;
	while (!CPU_ISSET(first, &old))
		first++;
	CPU_ZERO(&one);
	CPU_SET(first, &one);
	show("sched_setaffinity(one CPU)", sys(SYS_sched_setaffinity, 0, sizeof one, (long)&one, 0, 0));
	show("sched_setaffinity(8 bytes)", sys(SYS_sched_setaffinity, 0, 8, (long)&one, 0, 0));
	CPU_ZERO(&one);
	show("sched_setaffinity(no CPU)", sys(SYS_sched_setaffinity, 0, sizeof one, (long)&one, 0, 0));
	CPU_SET(1000, &one);
	show("sched_setaffinity(CPU 1000 only)", sys(SYS_sched_setaffinity, 0, sizeof one, (long)&one, 0, 0));
	show("sched_setaffinity(bad pointer)", sys(SYS_sched_setaffinity, 0, sizeof one, 8, 0, 0));
	show("sched_setaffinity(no such thread)", sys(SYS_sched_setaffinity, 999999, sizeof old, (long)&old, 0, 0));
	show("sched_setaffinity(back)", sys(SYS_sched_setaffinity, 0, sizeof old, (long)&old, 0, 0));
}

static void print_vec(const char *what, long r, unsigned char *vec, int n)
{
	if (r == -1) {
		printf("%s: -1 %s\n", what, errname(errno));
		return;
	}
	printf("%s: 0,", what);
	for (int i = 0; i < n; i++)
		printf(" %d", vec[i] & 1);
	printf("\n");
}

static void memory(void)
{
	unsigned char vec[8];
	printf("-- mincore, msync, mlock\n");
	char *p = mmap(NULL, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	munmap(p + 6 * PAGE, 2 * PAGE); /* pages 0-5 mapped, then a hole */
	p[0] = 1;
	p[2 * PAGE] = 1;
	print_vec("mincore(4 pages, 0 and 2 touched)", sys(SYS_mincore, (long)p, 4 * PAGE, (long)vec, 0, 0), vec, 4);
	print_vec("mincore(a partial page)", sys(SYS_mincore, (long)p, 100, (long)vec, 0, 0), vec, 1);
	show("mincore(unaligned)", sys(SYS_mincore, (long)p + 1, PAGE, (long)vec, 0, 0));
	show("mincore(into the hole)", sys(SYS_mincore, (long)p, 8 * PAGE, (long)vec, 0, 0));
	show("mincore(bad vector)", sys(SYS_mincore, (long)p, PAGE, 8, 0, 0));
	show("mincore(length 0)", sys(SYS_mincore, (long)p, 0, (long)vec, 0, 0));
	show("mincore(kernel address)", sys(SYS_mincore, (long)0xffff800000000000UL, PAGE, (long)vec, 0, 0));

	show("msync(MS_SYNC)", sys(SYS_msync, (long)p, 6 * PAGE, MS_SYNC, 0, 0));
	show("msync(MS_ASYNC | MS_INVALIDATE)", sys(SYS_msync, (long)p, PAGE, MS_ASYNC | MS_INVALIDATE, 0, 0));
	show("msync(flags 8)", sys(SYS_msync, (long)p, PAGE, 8, 0, 0));
	show("msync(MS_ASYNC | MS_SYNC)", sys(SYS_msync, (long)p, PAGE, MS_ASYNC | MS_SYNC, 0, 0));
	show("msync(unaligned)", sys(SYS_msync, (long)p + 1, PAGE, MS_SYNC, 0, 0));
	show("msync(into the hole, MS_SYNC)", sys(SYS_msync, (long)p, 8 * PAGE, MS_SYNC, 0, 0));
	show("msync(into the hole, MS_ASYNC)", sys(SYS_msync, (long)p, 8 * PAGE, MS_ASYNC, 0, 0));
	show("msync(length 0)", sys(SYS_msync, (long)p + 6 * PAGE, 0, MS_SYNC, 0, 0));
	show("msync(wrapping)", sys(SYS_msync, (long)p, -PAGE, MS_SYNC, 0, 0));

	show("mlock(pages 3-4)", sys(SYS_mlock, (long)p + 3 * PAGE + 10, PAGE, 0, 0, 0));
	print_vec("mincore after it", sys(SYS_mincore, (long)p, 6 * PAGE, (long)vec, 0, 0), vec, 6);
	show("munlock(pages 3-4)", sys(SYS_munlock, (long)p + 3 * PAGE, 2 * PAGE, 0, 0, 0));
	show("mlock(into the hole)", sys(SYS_mlock, (long)p, 8 * PAGE, 0, 0, 0));
	show("munlock(into the hole)", sys(SYS_munlock, (long)p, 8 * PAGE, 0, 0, 0));
	show("mlock(length 0)", sys(SYS_mlock, (long)p, 0, 0, 0, 0));
	show("mlock(wrapping)", sys(SYS_mlock, (long)p, -PAGE, 0, 0, 0));
	show("mlock2(flags 2)", sys(SYS_mlock2, (long)p, PAGE, 2, 0, 0));
	show("mlock2(MLOCK_ONFAULT, page 5)", sys(SYS_mlock2, (long)p + 5 * PAGE, PAGE, 1, 0, 0));
	print_vec("mincore after it", sys(SYS_mincore, (long)p, 6 * PAGE, (long)vec, 0, 0), vec, 6);
	munlock(p, 6 * PAGE);
	mprotect(p + 5 * PAGE, PAGE, PROT_NONE);
	show("mlock(PROT_NONE)", sys(SYS_mlock, (long)p + 5 * PAGE, PAGE, 0, 0, 0));
	munlock(p, 6 * PAGE);
	show("mlockall(0)", sys(SYS_mlockall, 0, 0, 0, 0, 0));
	show("mlockall(MCL_ONFAULT)", sys(SYS_mlockall, MCL_ONFAULT, 0, 0, 0, 0));
	show("mlockall(8)", sys(SYS_mlockall, 8, 0, 0, 0, 0));
	show("mlockall(MCL_CURRENT | MCL_ONFAULT)", sys(SYS_mlockall, MCL_CURRENT | MCL_ONFAULT, 0, 0, 0, 0));
	show("munlockall", sys(SYS_munlockall, 0, 0, 0, 0, 0));
	munmap(p, 6 * PAGE);
}

static volatile int spin_stop;
static volatile long spins;

static void *spinner(void *arg)
{
	(void)arg;
	while (!spin_stop)
		spins++;
	return NULL;
}

static void barriers(void)
{
	printf("-- membarrier\n");
	long q = sys(SYS_membarrier, 0, 0, 0, 0, 0);
	printf("info: membarrier(QUERY): %#lx\n", q);
	printf("membarrier(QUERY) has PRIVATE_EXPEDITED and GLOBAL: %s\n", (q & 8) && (q & 16) && (q & 1) ? "yes" : "no");
	show("membarrier(PRIVATE_EXPEDITED) unregistered", sys(SYS_membarrier, 8, 0, 0, 0, 0));
	show("membarrier(REGISTER_PRIVATE_EXPEDITED)", sys(SYS_membarrier, 16, 0, 0, 0, 0));
	show("membarrier(PRIVATE_EXPEDITED)", sys(SYS_membarrier, 8, 0, 0, 0, 0));
	/* With a thread running on another CPU (where there is one): the barrier
	 * reaches it by IPI. */
	pthread_t t;
	pthread_create(&t, NULL, spinner, NULL);
	long failed = 0;
	for (int i = 0; i < 200; i++)
		failed += sys(SYS_membarrier, 8, 0, 0, 0, 0) != 0;
	spin_stop = 1;
	pthread_join(t, NULL);
	printf("membarrier(PRIVATE_EXPEDITED) 200 times beside a running thread: %ld failed\n", failed);
	show("membarrier(PRIVATE_EXPEDITED, flags 1)", sys(SYS_membarrier, 8, 1, 0, 0, 0));
	show("membarrier(PRIVATE_EXPEDITED_SYNC_CORE) unregistered", sys(SYS_membarrier, 32, 0, 0, 0, 0));
	show("membarrier(REGISTER_PRIVATE_EXPEDITED_SYNC_CORE)", sys(SYS_membarrier, 64, 0, 0, 0, 0));
	show("membarrier(PRIVATE_EXPEDITED_SYNC_CORE)", sys(SYS_membarrier, 32, 0, 0, 0, 0));
	show("membarrier(GLOBAL)", sys(SYS_membarrier, 1, 0, 0, 0, 0));
	show("membarrier(REGISTER_GLOBAL_EXPEDITED)", sys(SYS_membarrier, 4, 0, 0, 0, 0));
	show("membarrier(GLOBAL_EXPEDITED)", sys(SYS_membarrier, 2, 0, 0, 0, 0));
	show("membarrier(GET_REGISTRATIONS)", sys(SYS_membarrier, 512, 0, 0, 0, 0));
	show("membarrier(3)", sys(SYS_membarrier, 3, 0, 0, 0, 0));
	show("membarrier(1024)", sys(SYS_membarrier, 1024, 0, 0, 0, 0));
	long r = sys(SYS_rseq, 0, 0, 0, 0, 0);
	printf("info: rseq(NULL, 0): %ld %s\n", r, r ? errname(errno) : "");
}

static int waited_signal;

static void *sigwaiter(void *arg)
{
	int sig = 0;
	int r = sigwait(arg, &sig);
	waited_signal = r == 0 ? sig : -r;
	return NULL;
}

static void sigwaits(void)
{
	sigset_t set, old;
	siginfo_t info;
	struct timespec zero = { 0, 0 };
	printf("-- rt_sigtimedwait\n");
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, &old);
	show("rt_sigtimedwait(nothing pending, timeout 0)", sys(SYS_rt_sigtimedwait, (long)&set, (long)&info, (long)&zero, 8, 0));
	raise(SIGUSR1);
	memset(&info, 0, sizeof info);
	long r = sys(SYS_rt_sigtimedwait, (long)&set, (long)&info, (long)&zero, 8, 0);
	printf("rt_sigtimedwait(SIGUSR1 pending): %ld, si_signo %d, si_code %d, si_pid is ours: %s\n", r, info.si_signo,
	       info.si_code, info.si_pid == getpid() ? "yes" : "no");
	kill(getpid(), SIGUSR1);
	show("rt_sigtimedwait(sent by kill, no info)", sys(SYS_rt_sigtimedwait, (long)&set, 0, (long)&zero, 8, 0));
	show("rt_sigtimedwait(sigsetsize 4)", sys(SYS_rt_sigtimedwait, (long)&set, 0, (long)&zero, 4, 0));
	show("rt_sigtimedwait(bad set)", sys(SYS_rt_sigtimedwait, 8, 0, (long)&zero, 8, 0));
	struct timespec bad = { 0, 1000000000 };
	show("rt_sigtimedwait(bad timeout)", sys(SYS_rt_sigtimedwait, (long)&set, 0, (long)&bad, 8, 0));
	struct timespec short_wait = { 0, 1000000 };
	show("rt_sigtimedwait(1 ms)", sys(SYS_rt_sigtimedwait, (long)&set, 0, (long)&short_wait, 8, 0));
	/* A thread in sigwait takes a signal sent to the process, which every
	 * thread blocks (and which, without a handler, PID 1 would ignore). */
	sigaddset(&set, SIGUSR2);
	sigprocmask(SIG_BLOCK, &set, NULL);
	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	pthread_t t;
	pthread_create(&t, NULL, sigwaiter, &set);
	usleep(20 * 1000);
	kill(getpid(), SIGUSR2);
	pthread_join(t, NULL);
	printf("sigwait in a thread, kill(SIGUSR2): %s\n", waited_signal == SIGUSR2 ? "SIGUSR2" : errname(-waited_signal));
	sigprocmask(SIG_SETMASK, &old, NULL);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	limits();
	clone3_checks();
	files();
	affinity();
	memory();
	barriers();
	sigwaits();
	printf("done\n");
	return 0;
}
