/* c_exit7: prints nothing and exits with status 7. */
#include "sys.h"

int main(int argc, char **argv, char **envp)
{
	(void)argc, (void)argv, (void)envp;
	return 7;
}
