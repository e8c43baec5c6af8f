/*
 * Minimal runtime for the C test programs, built with
 *   gcc -static -nostdlib -nostartfiles -O2 -fno-stack-protector
 * Include it exactly once per program (it defines _start, memset, memcpy).
 * The program defines: int main(int argc, char **argv, char **envp).
 */
#ifndef SYS_H
#define SYS_H

typedef unsigned long size_t;
typedef long ssize_t;
typedef unsigned int u32;

#define SYS_write 1
#define SYS_mmap 9
#define SYS_mprotect 10
#define SYS_munmap 11
#define SYS_sched_yield 24
#define SYS_madvise 28
#define SYS_getpid 39
#define SYS_clone 56
#define SYS_exit 60
#define SYS_gettid 186
#define SYS_futex 202
#define SYS_exit_group 231

#define PROT_NONE 0
#define PROT_READ 1
#define PROT_WRITE 2
#define MAP_SHARED 0x01
#define MAP_PRIVATE 0x02
#define MAP_FIXED 0x10
#define MAP_ANONYMOUS 0x20
#define MAP_FIXED_NOREPLACE 0x100000
#define MADV_DONTNEED 4
#define FUTEX_WAIT 0
#define FUTEX_WAKE 1

#define CLONE_VM 0x100
#define CLONE_FS 0x200
#define CLONE_FILES 0x400
#define CLONE_SIGHAND 0x800
#define CLONE_THREAD 0x10000
#define CLONE_SYSVSEM 0x40000
#define CLONE_PARENT_SETTID 0x100000
#define CLONE_CHILD_CLEARTID 0x200000

#define EINVAL 22
#define EEXIST 17
#define ENOMEM 12
#define EFAULT 14
#define EBADF 9

/* Linux returns -errno in %rax; the syscall instruction clobbers rcx and r11. */
static inline long syscall6(long n, long a, long b, long c, long d, long e, long f)
{
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	long ret;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}
#define syscall3(n, a, b, c) syscall6(n, (long)(a), (long)(b), (long)(c), 0, 0, 0)

static inline long sys_write(int fd, const void *buf, size_t n) { return syscall3(SYS_write, fd, buf, n); }
static inline void *sys_mmap(void *addr, size_t len, int prot, int flags)
{
	return (void *)syscall6(SYS_mmap, (long)addr, len, prot, flags, -1, 0);
}
static inline long sys_munmap(void *addr, size_t len) { return syscall3(SYS_munmap, addr, len, 0); }
static inline long sys_mprotect(void *addr, size_t len, int prot) { return syscall3(SYS_mprotect, addr, len, prot); }
static inline long sys_madvise(void *addr, size_t len, int advice) { return syscall3(SYS_madvise, addr, len, advice); }
static inline long sys_futex(volatile u32 *uaddr, int op, u32 val)
{
	return syscall6(SYS_futex, (long)uaddr, op, val, 0, 0, 0);
}
static inline long sys_gettid(void) { return syscall3(SYS_gettid, 0, 0, 0); }
static inline long sys_sched_yield(void) { return syscall3(SYS_sched_yield, 0, 0, 0); }
static inline __attribute__((noreturn)) void sys_exit_group(int code)
{
	syscall3(SYS_exit_group, code, 0, 0);
	__builtin_unreachable();
}
/* mmap returns an address or -errno: the top 4095 values are errors. */
static inline int is_err(const void *p) { return (unsigned long)p > -4096UL; }

/* gcc may emit calls to these for struct copies and loops; `rep` instructions
 * keep it from turning the bodies back into calls to themselves. */
void *memset(void *d, int c, size_t n)
{
	void *r = d;
	__asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
	return r;
}
void *memcpy(void *d, const void *s, size_t n)
{
	void *r = d;
	__asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
	return r;
}

/* The attribute stops gcc from recognising the loop as strlen and calling itself. */
__attribute__((optimize("no-tree-loop-distribute-patterns"))) size_t strlen(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}
#define str_len strlen
static inline void put(const char *s) { sys_write(1, s, str_len(s)); }

/* Appends the decimal form of v (may be negative) to buf at *pos. */
static inline void fmt_long(char *buf, size_t *pos, long v)
{
	char tmp[24];
	int n = 0;
	unsigned long u = v < 0 ? -(unsigned long)v : (unsigned long)v;
	if (v < 0)
		buf[(*pos)++] = '-';
	do {
		tmp[n++] = '0' + u % 10;
		u /= 10;
	} while (u);
	while (n)
		buf[(*pos)++] = tmp[--n];
}

/* Prints "<label><v>\n" in one write. */
static inline void put_long(const char *label, long v)
{
	char buf[160];
	size_t pos = 0, n = str_len(label);
	if (n > 100)
		n = 100;
	memcpy(buf, label, n);
	pos = n;
	fmt_long(buf, &pos, v);
	buf[pos++] = '\n';
	sys_write(1, buf, pos);
}

int main(int argc, char **argv, char **envp);

/* Called by _start with the initial stack pointer (argc, argv..., NULL, envp...). */
__attribute__((noreturn, used)) void c_start(long *sp)
{
	int argc = (int)sp[0];
	char **argv = (char **)(sp + 1);
	sys_exit_group(main(argc, argv, argv + argc + 1));
}

__asm__(".text\n"
	".globl _start\n"
	".type _start,@function\n"
	"_start:\n"
	"	xor %ebp, %ebp\n"
	"	mov %rsp, %rdi\n"
	"	and $-16, %rsp\n"
	"	call c_start\n"
	"	ud2\n"
	".size _start, . - _start\n");

#endif
