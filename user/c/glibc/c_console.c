/* The console fds 0-2 as Linux 6.12 shows them to /init under QEMU (its
 * serial console, /dev/console): fstat, newfstatat with AT_EMPTY_PATH,
 * ioctl TCGETS and TIOCGWINSZ, and an ioctl the console does not know.
 * Expected output from linux-peer (stdout is a file when run natively). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include "errname.h"

static void show_stat(const char *what, int r, const struct stat *st) {
    if (r != 0) {
        printf("%s: -1 %s\n", what, errname(errno));
        return;
    }
    printf("%s: mode %o nlink %lu uid %u gid %u rdev %u:%u size %ld blksize %ld blocks %ld\n", what,
           st->st_mode, (unsigned long)st->st_nlink, st->st_uid, st->st_gid, major(st->st_rdev),
           minor(st->st_rdev), (long)st->st_size, (long)st->st_blksize, (long)st->st_blocks);
}

int main(void) {
    for (int fd = 0; fd < 3; fd++) {
        struct stat st;
        char what[64];
        int r = syscall(SYS_fstat, fd, &st);
        snprintf(what, sizeof what, "fstat(%d)", fd);
        show_stat(what, r, &st);
        r = syscall(SYS_newfstatat, fd, "", &st, AT_EMPTY_PATH);
        snprintf(what, sizeof what, "newfstatat(%d, \"\", AT_EMPTY_PATH)", fd);
        show_stat(what, r, &st);
    }
    struct stat a, b;
    int r1 = syscall(SYS_fstat, 0, &a), r2 = syscall(SYS_fstat, 1, &b);
    printf("fds 0 and 1 are the same file: %s\n", r1 == 0 && r2 == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino ? "yes" : "no");
    struct termios t;
    memset(&t, 0, sizeof t);
    long r = syscall(SYS_ioctl, 1, TCGETS, &t);
    if (r == 0)
    {
        printf("ioctl(1, TCGETS): 0 iflag %o oflag %o cflag %o lflag %o line %d cc", t.c_iflag, t.c_oflag, t.c_cflag,
               t.c_lflag, t.c_line);
        for (int i = 0; i < 19; i++) /* the kernel's termios has 19 */
            printf(" %o", t.c_cc[i]);
        printf("\n");
    }
    else
        printf("ioctl(1, TCGETS): -1 %s\n", errname(errno));
    struct winsize w;
    r = syscall(SYS_ioctl, 1, TIOCGWINSZ, &w);
    if (r == 0)
        printf("ioctl(1, TIOCGWINSZ): 0 rows %d cols %d\n", w.ws_row, w.ws_col);
    else
        printf("ioctl(1, TIOCGWINSZ): -1 %s\n", errname(errno));
    r = syscall(SYS_ioctl, 1, TCGETS, (void *)8);
    printf("ioctl(1, TCGETS, bad pointer): %ld %s\n", r, r ? errname(errno) : "");
    r = syscall(SYS_ioctl, 1, TIOCGWINSZ, (void *)8);
    printf("ioctl(1, TIOCGWINSZ, bad pointer): %ld %s\n", r, r ? errname(errno) : "");
    r = syscall(SYS_ioctl, 1, 0x5401 + 0x100, &t);
    printf("ioctl(1, unknown): %ld %s\n", r, r ? errname(errno) : "");
    r = syscall(SYS_ioctl, 77, TCGETS, &t);
    printf("ioctl(77, TCGETS): %ld %s\n", r, r ? errname(errno) : "");
    printf("isatty(0) %d isatty(1) %d isatty(2) %d\n", isatty(0), isatty(1), isatty(2));
    return 0;
}
