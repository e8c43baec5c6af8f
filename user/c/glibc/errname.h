/* errno names for the printouts (musl has no strerrorname_np). */
#include <errno.h>
#include <stdio.h>

static const char *errname(int e) {
    static char other[16];
    switch (e) {
    case 0: return "0";
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case ESRCH: return "ESRCH";
    case EINTR: return "EINTR";
    case E2BIG: return "E2BIG";
    case EBADF: return "EBADF";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case ENOTDIR: return "ENOTDIR";
    case EINVAL: return "EINVAL";
    case EMFILE: return "EMFILE";
    case ENOTTY: return "ENOTTY";
    case ERANGE: return "ERANGE";
    case ENOSYS: return "ENOSYS";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case EOWNERDEAD: return "EOWNERDEAD";
    case ENOTRECOVERABLE: return "ENOTRECOVERABLE";
    case ETIMEDOUT: return "ETIMEDOUT";
    default: snprintf(other, sizeof other, "errno %d", e); return other;
    }
}
