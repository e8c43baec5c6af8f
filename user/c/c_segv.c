/* c_segv: writes to address 0; must be killed by SIGSEGV (status 139). */
#include "sys.h"

int main(int argc, char **argv, char **envp)
{
	(void)argc, (void)argv, (void)envp;
	/* Through a volatile variable, so gcc cannot see the NULL and emit a trap
	 * instruction (SIGILL) instead of the store. */
	static volatile unsigned long null_addr = 0;
	put("c_segv: writing to address 0; this must be killed by SIGSEGV (status 139)\n");
	*(volatile int *)null_addr = 1;
	put("FAIL: the write to address 0 did not fault\n");
	return 1;
}
