/* c_hello: one line on stdout, exit status 0. */
#include "sys.h"

int main(int argc, char **argv, char **envp)
{
	(void)argc, (void)argv, (void)envp;
	put("Hello from C!\n");
	return 0;
}
