/* err.c - filling ns_err records. */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>

int ns_errorf(ns_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

void ns_err_clear(ns_err *err)
{
    if (err) {
        err->code = 0;
        err->msg[0] = '\0';
    }
}
