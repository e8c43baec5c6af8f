/* c_mmap: anonymous mmap, write and read back, mprotect, madvise, munmap, and
 * a few error cases with the errno Linux returns. Exit 0 if all went right. */
#include "sys.h"

#define PAGE 4096L

static int failures;

static void expect(const char *what, long got, long want)
{
	if (got == want) {
		put("ok: ");
		put(what);
		put("\n");
	} else {
		put("FAIL: ");
		put(what);
		put_long(": got ", got);
		put_long("  expected ", want);
		failures++;
	}
}

int main(int argc, char **argv, char **envp)
{
	(void)argc, (void)argv, (void)envp;
	long npages = 8;
	unsigned char *p = sys_mmap(0, npages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
	expect("mmap 8 pages", is_err(p) ? (long)p : 0, 0);
	if (is_err(p))
		return 1;

	long zero = 0;
	for (long i = 0; i < npages * PAGE; i++)
		zero |= p[i];
	expect("fresh pages read as zero", zero, 0);

	for (long i = 0; i < npages * PAGE; i++)
		p[i] = (unsigned char)(i * 7 + i / PAGE);
	long bad = 0;
	for (long i = 0; i < npages * PAGE; i++)
		bad += p[i] != (unsigned char)(i * 7 + i / PAGE);
	expect("pattern reads back", bad, 0);

	expect("mprotect page 1 read-only", sys_mprotect(p + PAGE, PAGE, PROT_READ), 0);
	bad = 0;
	for (long i = PAGE; i < 2 * PAGE; i++)
		bad += p[i] != (unsigned char)(i * 7 + i / PAGE);
	expect("read-only page keeps its data", bad, 0);

	expect("madvise(MADV_DONTNEED) page 2", sys_madvise(p + 2 * PAGE, PAGE, MADV_DONTNEED), 0);
	zero = 0;
	for (long i = 2 * PAGE; i < 3 * PAGE; i++)
		zero |= p[i];
	expect("page 2 reads as zero after MADV_DONTNEED", zero, 0);
	expect("page 3 untouched by it", p[3 * PAGE + 5], (unsigned char)((3 * PAGE + 5) * 7 + 3));

	void *q = sys_mmap(p + 4 * PAGE, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE);
	expect("MAP_FIXED_NOREPLACE over page 4 -> -EEXIST", (long)q, -EEXIST);
	expect("mmap length 0 -> -EINVAL", (long)sys_mmap(0, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS), -EINVAL);
	expect("mmap without PRIVATE/SHARED -> -EINVAL", (long)sys_mmap(0, PAGE, PROT_READ, MAP_ANONYMOUS), -EINVAL);
	expect("munmap unaligned -> -EINVAL", sys_munmap(p + 1, PAGE), -EINVAL);
	expect("write from a PROT_NONE page -> -EFAULT",
	       (sys_mprotect(p + 5 * PAGE, PAGE, PROT_NONE), sys_write(1, p + 5 * PAGE, 8)), -EFAULT);

	expect("munmap all 8 pages", sys_munmap(p, npages * PAGE), 0);
	expect("mprotect of the unmapped range -> -ENOMEM", sys_mprotect(p, PAGE, PROT_READ), -ENOMEM);
	expect("munmap again (nothing mapped) -> 0", sys_munmap(p, npages * PAGE), 0);

	put_long("c_mmap: failures = ", failures);
	return failures ? 1 : 0;
}
