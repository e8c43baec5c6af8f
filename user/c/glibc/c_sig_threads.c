/*
 * c_sig_threads: signals between threads of one process. tgkill to a
 * thread that blocks the signal leaves it pending (rt_sigpending shows it,
 * the handler does not run) until the thread unblocks it, and then the
 * handler runs in that thread with si_code SI_TKILL and si_pid = getpid().
 * A signal interrupts a futex wait and a nanosleep with EINTR (handlers
 * without SA_RESTART). kill() to the process runs the handler once. Then
 * the argument checks: EINVAL, ESRCH.
 *
 * Built with glibc: gcc -static -pthread -O2.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static atomic_int usr1_count;
static atomic_int usr1_tid;
static atomic_int usr1_code;
static atomic_int usr1_pid;
static atomic_int usr2_count;

static atomic_int ready_tid;
static atomic_int phase;
static atomic_int eintr_seen;

static void on_usr1(int sig, siginfo_t *info, void *uc)
{
	(void)sig;
	(void)uc;
	atomic_store(&usr1_tid, (int)syscall(SYS_gettid));
	atomic_store(&usr1_code, info->si_code);
	atomic_store(&usr1_pid, info->si_pid);
	atomic_fetch_add(&usr1_count, 1);
}

static void on_usr2(int sig)
{
	(void)sig;
	atomic_fetch_add(&usr2_count, 1);
}

static int sys_tgkill(int tgid, int tid, int sig)
{
	return (int)syscall(SYS_tgkill, tgid, tid, sig);
}

static void pause_ms(int ms)
{
	struct timespec ts = { 0, ms * 1000000L };
	nanosleep(&ts, NULL);
}

/* Blocks SIGUSR1, waits to be signalled, checks it is pending, unblocks. */
static void *blocker(void *arg)
{
	(void)arg;
	sigset_t set, pending;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	atomic_store(&ready_tid, (int)syscall(SYS_gettid));
	while (atomic_load(&phase) < 1)
		pause_ms(1);
	sigemptyset(&pending);
	sigpending(&pending);
	printf("blocker: SIGUSR1 pending while blocked: %s, handler ran: %d times\n",
	       sigismember(&pending, SIGUSR1) ? "yes" : "no", atomic_load(&usr1_count));
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	int mine = atomic_load(&usr1_tid) == (int)syscall(SYS_gettid);
	printf("blocker: after unblocking the handler ran %d time(s), in this thread: %s, SI_TKILL: %s, si_pid: %s\n",
	       atomic_load(&usr1_count), mine ? "yes" : "no", atomic_load(&usr1_code) == SI_TKILL ? "yes" : "no",
	       atomic_load(&usr1_pid) == getpid() ? "ours" : "other");
	sigpending(&pending);
	printf("blocker: pending after delivery: %s\n", sigismember(&pending, SIGUSR1) ? "yes" : "no");
	return NULL;
}

static atomic_int futex_word;

/* Waits on a futex that nobody wakes until a signal interrupts it. */
static void *futex_waiter(void *arg)
{
	(void)arg;
	atomic_store(&ready_tid, (int)syscall(SYS_gettid));
	while (!atomic_load(&eintr_seen)) {
		struct timespec timeout = { 1, 0 };
		long r = syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, &timeout, NULL, 0);
		if (r == -1 && errno == EINTR)
			atomic_store(&eintr_seen, 1);
	}
	return NULL;
}

static void *sleeper(void *arg)
{
	(void)arg;
	atomic_store(&ready_tid, (int)syscall(SYS_gettid));
	while (!atomic_load(&eintr_seen)) {
		struct timespec ts = { 10, 0 };
		if (nanosleep(&ts, NULL) == -1 && errno == EINTR)
			atomic_store(&eintr_seen, 1);
	}
	return NULL;
}

/* Starts `fn`, signals it with SIGUSR2 until it reports EINTR, joins it. */
static void interrupt_test(const char *what, void *(*fn)(void *))
{
	pthread_t t;
	atomic_store(&ready_tid, 0);
	atomic_store(&eintr_seen, 0);
	pthread_create(&t, NULL, fn, NULL);
	while (!atomic_load(&ready_tid))
		pause_ms(1);
	int sent = 0;
	while (!atomic_load(&eintr_seen) && sent < 1000) {
		pause_ms(5);
		sys_tgkill(getpid(), atomic_load(&ready_tid), SIGUSR2);
		sent++;
	}
	pthread_join(t, NULL);
	printf("%s interrupted by a signal with EINTR: %s\n", what, atomic_load(&eintr_seen) ? "yes" : "no");
}

static const char *errname(long r)
{
	if (r == 0)
		return "0";
	switch (errno) {
	case EINVAL:
		return "EINVAL";
	case ESRCH:
		return "ESRCH";
	case EFAULT:
		return "EFAULT";
	default:
		return strerror(errno);
	}
}

int main(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_usr1;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGUSR1, &sa, NULL);
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr2;
	sigaction(SIGUSR2, &sa, NULL);

	pthread_t t;
	pthread_create(&t, NULL, blocker, NULL);
	while (!atomic_load(&ready_tid))
		pause_ms(1);
	printf("main: tgkill(SIGUSR1) to the blocking thread: %s\n", errname(sys_tgkill(getpid(), ready_tid, SIGUSR1)));
	pause_ms(20);
	atomic_store(&phase, 1);
	pthread_join(t, NULL);

	interrupt_test("futex wait", futex_waiter);
	interrupt_test("nanosleep", sleeper);
	printf("SIGUSR2 handled at least once: %s\n", atomic_load(&usr2_count) > 0 ? "yes" : "no");

	int before = atomic_load(&usr1_count);
	printf("kill(getpid(), SIGUSR1): %s\n", errname(kill(getpid(), SIGUSR1)));
	printf("handler ran once more: %s, si_code SI_USER: %s\n", atomic_load(&usr1_count) == before + 1 ? "yes" : "no",
	       atomic_load(&usr1_code) == SI_USER ? "yes" : "no");

	/* Blocked by the only thread, then sigprocmask unblocks it: delivered before it returns. */
	sigset_t set, old;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, &old);
	before = atomic_load(&usr1_count);
	raise(SIGUSR1);
	int while_blocked = atomic_load(&usr1_count) - before;
	sigprocmask(SIG_SETMASK, &old, NULL);
	printf("raise while blocked ran the handler %d times; after unblocking %d\n", while_blocked,
	       atomic_load(&usr1_count) - before);

	printf("kill with signal 0 to ourselves: %s\n", errname(kill(getpid(), 0)));
	printf("kill with signal 65: %s\n", errname(kill(getpid(), 65)));
	printf("kill of pid 0x3fffffff: %s\n", errname(kill(0x3fffffff, 0)));
	printf("tgkill of tid 0x3fffffff: %s\n", errname(sys_tgkill(getpid(), 0x3fffffff, SIGUSR1)));
	printf("tgkill with tgid 0: %s\n", errname(sys_tgkill(0, getpid(), SIGUSR1)));
	printf("tgkill of our own tid, signal 0: %s\n", errname(sys_tgkill(getpid(), (int)syscall(SYS_gettid), 0)));
	printf("sigaction(SIGKILL): %s\n", errname(sigaction(SIGKILL, &sa, NULL)));
	printf("rt_sigprocmask with sigsetsize 4: %s\n",
	       errname(syscall(SYS_rt_sigprocmask, SIG_BLOCK, &set, NULL, 4)));
	printf("rt_sigprocmask with how 7: %s\n", errname(syscall(SYS_rt_sigprocmask, 7, &set, NULL, 8)));
	printf("rt_sigaction on signal 0: %s\n", errname(syscall(SYS_rt_sigaction, 0, NULL, NULL, 8)));
	printf("rt_sigpending with sigsetsize 16: %s\n", errname(syscall(SYS_rt_sigpending, &set, 16)));
	/* SIGKILL and SIGSTOP cannot be blocked. */
	sigfillset(&set);
	sigprocmask(SIG_SETMASK, &set, NULL);
	sigprocmask(SIG_SETMASK, NULL, &old);
	printf("block everything: SIGKILL blocked: %s, SIGSTOP blocked: %s, SIGTERM blocked: %s\n",
	       sigismember(&old, SIGKILL) ? "yes" : "no", sigismember(&old, SIGSTOP) ? "yes" : "no",
	       sigismember(&old, SIGTERM) ? "yes" : "no");
	return 0;
}
