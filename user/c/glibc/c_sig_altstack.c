/*
 * c_sig_altstack: sigaltstack's checks (the initial state, EINVAL for bad
 * flags, ENOMEM below MINSIGSTKSZ, EPERM while on it), then a stack
 * overflow caught by a SIGSEGV handler that runs on the alternate stack
 * (SA_ONSTACK): it checks it is on that stack, prints, and _exit(0)s.
 *
 * Built with glibc: gcc -static -pthread -O2.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ALT_SIZE (64 * 1024)

static char *alt;
static volatile int depth_limit = 1 << 30;

static void say(const char *msg)
{
	write(1, msg, strlen(msg));
}

static void on_segv(int sig, siginfo_t *info, void *ucontext)
{
	char here;
	char line[200];
	stack_t now, attempt;
	(void)ucontext;
	int on_alt = &here > alt && &here <= alt + ALT_SIZE;
	sigaltstack(NULL, &now);
	memset(&attempt, 0, sizeof attempt);
	attempt.ss_sp = alt;
	attempt.ss_size = ALT_SIZE;
	int r = sigaltstack(&attempt, NULL);
	int e = errno;
	snprintf(line, sizeof line,
		 "handler: signal %d, si_code %s, running on the alternate stack: %s, ss_flags SS_ONSTACK: %s, "
		 "sigaltstack while on it: %s\n",
		 sig, info->si_code == SEGV_MAPERR ? "SEGV_MAPERR" : info->si_code == SEGV_ACCERR ? "SEGV_ACCERR" : "other",
		 on_alt ? "yes" : "no", now.ss_flags == SS_ONSTACK ? "yes" : "no",
		 r == -1 && e == EPERM ? "EPERM" : "not refused");
	say(line);
	say("caught the stack overflow; exiting with 0\n");
	_exit(0);
}

static int recurse(int n)
{
	volatile char buf[512];
	buf[0] = (char)n;
	if (n >= depth_limit)
		return buf[0];
	return recurse(n + 1) + buf[0];
}

static const char *result(int r, int want_errno)
{
	if (want_errno == 0)
		return r == 0 ? "ok" : strerror(errno);
	if (r == -1 && errno == want_errno)
		return "ok";
	return r == 0 ? "succeeded" : strerror(errno);
}

int main(void)
{
	stack_t ss, old;
	memset(&old, 0, sizeof old);
	sigaltstack(NULL, &old);
	printf("initially: ss_flags %s, ss_size %zu\n", old.ss_flags == SS_DISABLE ? "SS_DISABLE" : "other", old.ss_size);

	alt = malloc(ALT_SIZE);
	memset(&ss, 0, sizeof ss);
	ss.ss_sp = alt;
	ss.ss_size = 1024;
	printf("size 1024 (below MINSIGSTKSZ): ENOMEM: %s\n", result(sigaltstack(&ss, NULL), ENOMEM));
	ss.ss_size = ALT_SIZE;
	ss.ss_flags = 4;
	printf("flags 4: EINVAL: %s\n", result(sigaltstack(&ss, NULL), EINVAL));
	ss.ss_flags = 0;
	printf("a 64 KiB stack: %s\n", result(sigaltstack(&ss, NULL), 0));
	sigaltstack(NULL, &old);
	printf("read back: same base %s, size %zu, ss_flags %d\n", old.ss_sp == alt ? "yes" : "no", old.ss_size,
	       old.ss_flags);
	ss.ss_flags = SS_DISABLE;
	printf("SS_DISABLE: %s\n", result(sigaltstack(&ss, NULL), 0));
	sigaltstack(NULL, &old);
	printf("read back: ss_flags %s, size %zu\n", old.ss_flags == SS_DISABLE ? "SS_DISABLE" : "other", old.ss_size);
	ss.ss_flags = 0;
	sigaltstack(&ss, NULL);

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_segv;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, NULL);
	printf("recursing until the stack overflows\n");
	fflush(stdout);
	return recurse(0);
}
