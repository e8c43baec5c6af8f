/* c_threads: two threads made with raw clone(CLONE_VM|...), each summing half of
 * an array in integers and in doubles (gcc uses SSE registers for both, and the
 * threads yield in between, so the kernel must preserve SSE state), joined by
 * FUTEX_WAIT on their CLONE_CHILD_CLEARTID words. Prints the sums; exit 0 if right. */
#include "sys.h"

#define N 200000L
#define STACK (64 * 1024L)

/* long clone_thread(flags, stack_top, ptid, ctid, fn, arg): the child pops fn
 * and arg from its new stack, runs fn(arg), and exits the thread. */
long clone_thread(unsigned long flags, void *stack_top, u32 *ptid, u32 *ctid, void (*fn)(void *), void *arg);
__asm__(".text\n"
	".globl clone_thread\n"
	"clone_thread:\n"
	"	mov %rcx, %r10\n" /* ctid: 4th syscall argument is r10 */
	"	and $-16, %rsi\n"
	"	sub $16, %rsi\n"
	"	mov %r9, 0(%rsi)\n"
	"	mov %r8, 8(%rsi)\n"
	"	mov $56, %eax\n"
	"	syscall\n"
	"	test %rax, %rax\n"
	"	jnz 1f\n"
	"	xor %ebp, %ebp\n"
	"	pop %rdi\n"
	"	pop %rax\n"
	"	call *%rax\n"
	"	mov $60, %eax\n"
	"	xor %edi, %edi\n"
	"	syscall\n"
	"	ud2\n"
	"1:	ret\n");

static long values[N];

struct work {
	long from, to;
	long isum;
	double dsum;
	long tid;
	volatile u32 ptid, ctid;
};

static void worker(void *arg)
{
	struct work *w = arg;
	long isum = 0;
	double dsum = 0;
	w->tid = sys_gettid();
	for (long i = w->from; i < w->to; i++) {
		isum += values[i];
		dsum += values[i] * 0.25;
		if ((i & 4095) == 0)
			sys_sched_yield();
	}
	w->isum = isum;
	w->dsum = dsum;
}

int main(int argc, char **argv, char **envp)
{
	(void)argc, (void)argv, (void)envp;
	struct work w[2] = {{0, N / 2, 0, 0, 0, 0, 0}, {N / 2, N, 0, 0, 0, 0, 0}};
	unsigned long flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM |
			      CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID;

	for (long i = 0; i < N; i++)
		values[i] = i + 1;

	for (int t = 0; t < 2; t++) {
		char *stack = sys_mmap(0, STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
		if (is_err(stack)) {
			put_long("FAIL: mmap of a thread stack: ", (long)stack);
			return 1;
		}
		w[t].ctid = 1;
		long tid = clone_thread(flags, stack + STACK, (u32 *)&w[t].ptid, (u32 *)&w[t].ctid, worker, &w[t]);
		if (tid <= 0) {
			put_long("FAIL: clone: ", tid);
			return 1;
		}
	}
	/* CLONE_CHILD_CLEARTID: the kernel zeroes ctid and does a (shared) FUTEX_WAKE
	 * on it when the thread exits. */
	for (int t = 0; t < 2; t++) {
		u32 v;
		while ((v = w[t].ctid) != 0)
			sys_futex(&w[t].ctid, FUTEX_WAIT, v);
	}

	long isum = w[0].isum + w[1].isum;
	double dsum = w[0].dsum + w[1].dsum;
	long want = N * (N + 1) / 2;
	put_long("c_threads: integer sum = ", isum);
	put_long("c_threads: double sum * 4 = ", (long)(dsum * 4));
	int ok = isum == want && dsum * 4 == (double)want && w[0].tid == w[0].ptid && w[1].tid == w[1].ptid &&
		 w[0].tid != w[1].tid;
	put(ok ? "c_threads: ok\n" : "c_threads: FAIL\n");
	return ok ? 0 : 1;
}
