/* err.h - the one error convention of Nutshell.
 *
 * Every fallible function returns an int: 0 on success, a negative errno value on
 * failure (-EINVAL for bad input, -ENOMEM, -EIO, ...). Where a caller needs to tell a
 * user *what* went wrong, the function also takes an `ns_err *` and writes one
 * human-readable sentence into it. The message never contains secrets (keys, tokens).
 * Passing a NULL `ns_err *` is allowed: the code is still returned.
 */
#ifndef NS_ERR_H
#define NS_ERR_H

#include <errno.h>
#include <stddef.h>

#define NS_ERR_MSG_MAX 512

typedef struct ns_err {
    int code;                 /* the negative errno that was returned, 0 if none */
    char msg[NS_ERR_MSG_MAX]; /* one sentence for a human, "" if none */
} ns_err;

/* Records `code` and a printf-style message in `err` (if not NULL) and returns `code`,
 * so that a failure path reads `return ns_errorf(err, -EINVAL, "bad port %s", s);`. */
int ns_errorf(ns_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Clears `err` (if not NULL) to "no error". */
void ns_err_clear(ns_err *err);

#endif
