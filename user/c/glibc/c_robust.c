/*
 * c_robust: robust mutexes whose owner dies. A thread locks a
 * PTHREAD_MUTEX_ROBUST mutex and exits without unlocking it; the kernel
 * walks the thread's robust list at exit and marks the lock word
 * FUTEX_OWNER_DIED, so main's pthread_mutex_lock returns EOWNERDEAD. Main
 * makes it consistent, unlocks, and locks it again normally. Then the same
 * with main already waiting when the owner dies (the kernel must wake it),
 * with two mutexes held at once, and with a mutex that is left
 * inconsistent (the next lock says ENOTRECOVERABLE).
 *
 * Built with glibc (gcc -static -pthread -O2) and with musl.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "errname.h"

static pthread_mutex_t a, b, c;
static atomic_int locked;

static void init_robust(pthread_mutex_t *m)
{
	pthread_mutexattr_t attr;
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(m, &attr);
	pthread_mutexattr_destroy(&attr);
}

/* Locks `a` (and `b` if asked), says so, and exits holding them. */
static void *owner(void *arg)
{
	int both = arg != NULL;
	if (pthread_mutex_lock(&a) != 0 || (both && pthread_mutex_lock(&b) != 0))
		printf("owner: lock failed\n");
	atomic_store(&locked, 1);
	return NULL;
}

/* Exits holding `a` once main is (about to be) blocked on it. */
static void *slow_owner(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&a);
	atomic_store(&locked, 1);
	/* Main blocks in pthread_mutex_lock meanwhile; the result is the same
	 * if it has not got there yet (the word already says OWNER_DIED). */
	usleep(50 * 1000);
	return NULL;
}

static void report(const char *what, int r)
{
	printf("%s: %s\n", what, errname(r));
}

static void recover(pthread_mutex_t *m, const char *name)
{
	char what[64];
	int r = pthread_mutex_lock(m);
	snprintf(what, sizeof what, "lock %s after its owner died", name);
	report(what, r);
	if (r == EOWNERDEAD) {
		snprintf(what, sizeof what, "pthread_mutex_consistent(%s)", name);
		report(what, pthread_mutex_consistent(m));
	}
	snprintf(what, sizeof what, "unlock %s", name);
	report(what, pthread_mutex_unlock(m));
	snprintf(what, sizeof what, "lock %s again", name);
	report(what, pthread_mutex_lock(m));
	pthread_mutex_unlock(m);
}

int main(void)
{
	pthread_t t;
	setvbuf(stdout, NULL, _IOLBF, 0);
	init_robust(&a);
	init_robust(&b);
	init_robust(&c);

	printf("1. the owner exits holding a\n");
	pthread_create(&t, NULL, owner, NULL);
	pthread_join(t, NULL);
	recover(&a, "a");

	printf("2. main waits on a while its owner exits\n");
	atomic_store(&locked, 0);
	pthread_create(&t, NULL, slow_owner, NULL);
	while (!atomic_load(&locked))
		usleep(1000);
	recover(&a, "a");
	pthread_join(t, NULL);

	printf("3. the owner exits holding a and b\n");
	pthread_create(&t, NULL, owner, (void *)1);
	pthread_join(t, NULL);
	recover(&b, "b");
	recover(&a, "a");

	printf("4. a is unlocked without pthread_mutex_consistent\n");
	pthread_create(&t, NULL, owner, NULL);
	pthread_join(t, NULL);
	report("lock a", pthread_mutex_lock(&a));
	report("unlock a", pthread_mutex_unlock(&a));
	report("lock a (now unrecoverable)", pthread_mutex_lock(&a));

	printf("5. a mutex the dead thread never held\n");
	report("trylock c", pthread_mutex_trylock(&c));
	report("unlock c", pthread_mutex_unlock(&c));
	printf("done\n");
	return 0;
}
