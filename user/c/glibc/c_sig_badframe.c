/*
 * c_sig_badframe: what rt_sigreturn takes from a frame a handler changed.
 * A handler sets IOPL 3 in the saved flags: the program goes on, with
 * IOPL still 0 (only the user-settable flags are restored). Then a handler sets a non-canonical
 * rip: the process dies of SIGSEGV (status 139), the kernel survives.
 *
 * Built with glibc: gcc -static -pthread -O2.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <ucontext.h>

static int stage;

static void on_usr1(int sig, siginfo_t *info, void *uc_)
{
	ucontext_t *uc = uc_;
	(void)sig;
	(void)info;
	if (stage == 0) {
		uc->uc_mcontext.gregs[REG_EFL] |= 0x3000;
	} else {
		uc->uc_mcontext.gregs[REG_RIP] = (greg_t)0x8000000000001000ull;
	}
}

int main(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_usr1;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGUSR1, &sa, NULL);
	raise(SIGUSR1);
	uint64_t flags;
	__asm__ volatile("pushfq; popq %0" : "=r"(flags));
	printf("after a frame with IOPL 3: IOPL %d\n", (int)((flags >> 12) & 3));
	stage = 1;
	printf("now a frame with a non-canonical rip: this must be killed by SIGSEGV (status 139)\n");
	fflush(stdout);
	raise(SIGUSR1);
	printf("still alive\n");
	return 0;
}
