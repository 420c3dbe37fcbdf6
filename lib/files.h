/* files.h - whole-file reads, atomic writes, and cheap change detection. */
#ifndef NS_FILES_H
#define NS_FILES_H

#include "err.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

/* Reads a whole file (at most `max` bytes) into a malloc'd NUL-terminated buffer.
 * Returns 0, -errno of open/read (err names the file), -EFBIG or -ENOMEM. */
int ns_read_file(const char *path, size_t max, char **out, size_t *len, ns_err *err);

/* Writes `data` to `path` atomically (temporary file + rename), mode 0600. */
int ns_write_file_atomic(const char *path, const char *data, size_t len, ns_err *err);

/* Identity of a file's current content, cheap to compare: follows symlinks, so the
 * atomic `..data` symlink swap Kubernetes does for Secret volumes shows as a change. */
typedef struct ns_file_stamp {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
} ns_file_stamp;

/* Returns 0 or -errno of stat(2). */
int ns_file_stamp_get(const char *path, ns_file_stamp *out);
bool ns_file_stamp_equal(const ns_file_stamp *a, const ns_file_stamp *b);

#endif
