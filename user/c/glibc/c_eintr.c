/*
 * c_eintr: which blocking calls a signal handler interrupts (EINTR) and
 * which the kernel restarts, with and without SA_RESTART, as Linux does:
 * nanosleep and clock_nanosleep always fail with EINTR (a relative sleep
 * writes the time left), an untimed futex wait (sem_wait, FUTEX_WAIT) is
 * restarted under SA_RESTART and fails with EINTR without it, a timed
 * futex wait fails with EINTR either way.
 *
 * A sender thread signals the waiting thread every 2 ms until the wait
 * has returned (or, for waits that restart, until the handler has run 5
 * times, then it ends the wait): whether the first signal lands before the
 * wait starts or in it, the outcome printed is the same.
 *
 * Built with glibc (gcc -static -pthread -O2) and with musl.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "errname.h"

/* <linux/futex.h> is not in musl's headers. */
#define FUTEX_WAIT_PRIVATE 128
#define FUTEX_WAKE_PRIVATE 129

static atomic_int handled;
static atomic_int returned;
static pthread_t waiter;
static sem_t sem;
static atomic_int word;

static void on_usr1(int sig)
{
	(void)sig;
	atomic_fetch_add(&handled, 1);
}

static void install(int restart)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	sa.sa_flags = restart ? SA_RESTART : 0;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
}

/* What ends a wait that the kernel restarts. */
enum ending { NONE, POST_SEM, WAKE_FUTEX };

struct job {
	enum ending ending;
};

static void *sender(void *arg)
{
	struct job *job = arg;
	while (!atomic_load(&returned)) {
		pthread_kill(waiter, SIGUSR1);
		usleep(2000);
		if (job->ending != NONE && atomic_load(&handled) >= 5) {
			if (job->ending == POST_SEM)
				sem_post(&sem);
			else {
				atomic_store(&word, 1);
				syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
			}
			break;
		}
	}
	return NULL;
}

static pthread_t start(enum ending ending, int restart)
{
	static struct job job;
	pthread_t t;
	install(restart);
	atomic_store(&handled, 0);
	atomic_store(&returned, 0);
	job.ending = ending;
	waiter = pthread_self();
	pthread_create(&t, NULL, sender, &job);
	return t;
}

static void finish(pthread_t t)
{
	atomic_store(&returned, 1);
	pthread_join(t, NULL);
}

static void sleeps(int restart)
{
	const char *how = restart ? "SA_RESTART" : "no SA_RESTART";
	struct timespec req = { 10, 0 }, rem = { -1, -1 };
	pthread_t t = start(NONE, restart);
	int r = syscall(SYS_nanosleep, &req, &rem);
	int e = errno;
	finish(t);
	printf("nanosleep(10 s), %s: %d %s, rem in (0, 10 s]: %s\n", how, r, r ? errname(e) : "",
	       rem.tv_sec >= 0 && rem.tv_sec <= 10 && rem.tv_nsec >= 0 && rem.tv_nsec < 1000000000 &&
	       (rem.tv_sec > 0 || rem.tv_nsec > 0) ? "yes" : "no");

	t = start(NONE, restart);
	rem.tv_sec = -1;
	r = clock_nanosleep(CLOCK_MONOTONIC, 0, &req, &rem);
	finish(t);
	printf("clock_nanosleep(MONOTONIC, 10 s), %s: %s, rem set: %s\n", how, errname(r),
	       rem.tv_sec >= 0 && rem.tv_sec <= 10 ? "yes" : "no");

	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += 10;
	t = start(NONE, restart);
	r = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL);
	finish(t);
	printf("clock_nanosleep(MONOTONIC, TIMER_ABSTIME), %s: %s\n", how, errname(r));
}

static void futex_waits(int restart)
{
	const char *how = restart ? "SA_RESTART" : "no SA_RESTART";
	sem_init(&sem, 0, 0);
	pthread_t t = start(restart ? POST_SEM : NONE, restart);
	int r = sem_wait(&sem);
	int e = errno;
	finish(t);
	printf("sem_wait, %s: %s (handler ran %s)\n", how, r ? errname(e) : "0",
	       restart ? (atomic_load(&handled) >= 5 ? "5 times or more" : "fewer than 5 times") : "at least once");
	sem_destroy(&sem);

	atomic_store(&word, 0);
	t = start(restart ? WAKE_FUTEX : NONE, restart);
	long l = syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
	e = errno;
	finish(t);
	/* Woken, or restarted after the word changed (EAGAIN): not interrupted. */
	printf("FUTEX_WAIT, %s: %s\n", how, l == 0 || e == EAGAIN ? "woken, not interrupted" : errname(e));

	atomic_store(&word, 0);
	struct timespec timeout = { 30, 0 };
	t = start(NONE, restart);
	l = syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 0, &timeout, NULL, 0);
	e = errno;
	finish(t);
	printf("FUTEX_WAIT with a timeout, %s: %ld %s\n", how, l, l ? errname(e) : "");
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	sleeps(0);
	sleeps(1);
	futex_waits(0);
	futex_waits(1);
	printf("done\n");
	return 0;
}
