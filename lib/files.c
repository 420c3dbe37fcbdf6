/* files.c - whole-file reads, atomic writes, change detection. */
#include "files.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int ns_read_file(const char *path, size_t max, char **out, size_t *len, ns_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return ns_errorf(err, -e, "cannot open %s: %s", path, strerror(e));
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    int rc = 0;
    if (!buf) {
        rc = -ENOMEM;
        goto out;
    }
    for (;;) {
        if (n + 1 >= cap) {
            if (cap > max) {
                rc = ns_errorf(err, -EFBIG, "%s is larger than %zu bytes", path, max);
                goto out;
            }
            char *p = realloc(buf, cap * 2);
            if (!p) {
                rc = -ENOMEM;
                goto out;
            }
            buf = p;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + n, cap - n - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            rc = ns_errorf(err, -e, "cannot read %s: %s", path, strerror(e));
            goto out;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    if (n > max) {
        rc = ns_errorf(err, -EFBIG, "%s is larger than %zu bytes", path, max);
        goto out;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    buf = NULL;
out:
    free(buf);
    close(fd);
    return rc;
}

int ns_write_file_atomic(const char *path, const char *data, size_t len, ns_err *err)
{
    char tmp[4096];
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return ns_errorf(err, -ENAMETOOLONG, "path too long: %s", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        return ns_errorf(err, -e, "cannot create %s: %s", tmp, strerror(e));
    }
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = w < 0 ? errno : EIO;
            close(fd);
            unlink(tmp);
            return ns_errorf(err, -e, "cannot write %s: %s", tmp, strerror(e));
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return ns_errorf(err, -e, "cannot replace %s: %s", path, strerror(e));
    }
    return 0;
}

int ns_file_stamp_get(const char *path, ns_file_stamp *out)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return -errno;
    *out = (ns_file_stamp){
        .dev = st.st_dev, .ino = st.st_ino, .size = st.st_size, .mtime = st.st_mtim};
    return 0;
}

bool ns_file_stamp_equal(const ns_file_stamp *a, const ns_file_stamp *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}
