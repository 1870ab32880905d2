/* file.c: opening only regular files, never blocking, with bounded reads.
 *
 * open() is called with O_NONBLOCK so that a FIFO or a device node named like a shard fails
 * the regular-file check instead of waiting for a writer that never comes; the flag has no
 * effect on regular files. Sizes come from fstat on the opened descriptor, so the file checked
 * is the file read. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"
#include "io/file.h"

dsv4_status dsv4_file_probe(const char *path) {
    struct stat sb;
    if (stat(path, &sb) == 0) return DSV4_OK;
    if (errno == ENOENT) return DSV4_ENOTFOUND;
    return dsv4_error(DSV4_EIO, "%s: cannot open: %s", path, strerror(errno));
}

/* Open `path` for reading and check that it is a regular file; gives its size. */
static dsv4_status open_regular(const char *path, int *fd_out, size_t *size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        dsv4_status code = errno == ENOENT ? DSV4_ENOTFOUND : DSV4_EIO;
        return dsv4_error(code, "%s: cannot open: %s", path, strerror(errno));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return dsv4_error(DSV4_EIO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return dsv4_error(DSV4_EIO, "%s: not a regular file (%s)", path,
                          S_ISDIR(sb.st_mode) ? "a directory" : "a device, FIFO or socket");
    }
    if ((uint64_t)sb.st_size > (uint64_t)SIZE_MAX / 2) {
        close(fd);
        return dsv4_error(DSV4_EFORMAT, "%s: %lld bytes is too large to map", path, (long long)sb.st_size);
    }
    *fd_out = fd;
    *size = (size_t)sb.st_size;
    return DSV4_OK;
}

dsv4_status dsv4_file_read(const char *path, size_t max_bytes, char **out, size_t *len) {
    *out = NULL;
    *len = 0;
    int fd;
    size_t size;
    dsv4_status rc = open_regular(path, &fd, &size);
    if (rc) return rc;
    if (size > max_bytes) {
        close(fd);
        return dsv4_error(DSV4_EFORMAT, "%s: %zu bytes, over the limit of %zu for this file", path, size, max_bytes);
    }
    char *buf = dsv4_malloc(size + 1, path);
    if (!buf) {
        close(fd);
        return DSV4_ENOMEM;
    }
    size_t got = 0;
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            int e = n < 0 ? errno : 0;
            close(fd);
            free(buf);
            return dsv4_error(DSV4_EIO, "%s: read failed after %zu of %zu bytes: %s", path, got, size,
                              e ? strerror(e) : "the file shrank");
        }
        got += (size_t)n;
    }
    close(fd);
    buf[got] = 0;
    *out = buf;
    *len = got;
    return DSV4_OK;
}

dsv4_status dsv4_file_map(const char *path, const uint8_t **map, size_t *size) {
    *map = NULL;
    *size = 0;
    int fd;
    size_t n;
    dsv4_status rc = open_regular(path, &fd, &n);
    if (rc) return rc;
    /* mmap of length 0 fails with EINVAL; an empty file is an empty image (NULL) */
    void *p = n ? mmap(NULL, n, PROT_READ, MAP_SHARED, fd, 0) : NULL;
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) return dsv4_error(DSV4_EIO, "%s: cannot map: %s", path, strerror(e));
    *map = p;
    *size = n;
    return DSV4_OK;
}
