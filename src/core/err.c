/* core/err — see err.h. */
#include "core/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int sh_errf(sh_err *e, const char *fmt, ...) {
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

void sh_err_prefix(sh_err *e, const char *prefix) {
    if (!e || !prefix) return;
    /* Shift the message right by strlen(prefix) + 2 and write the prefix in front, truncating
     * the tail when the whole does not fit. */
    size_t pl = strlen(prefix), ml = strlen(e->msg);
    if (pl + 2 >= SH_ERR_MAX) pl = SH_ERR_MAX - 3;
    if (pl + 2 + ml >= SH_ERR_MAX) ml = SH_ERR_MAX - 1 - pl - 2;
    memmove(e->msg + pl + 2, e->msg, ml);
    e->msg[pl + 2 + ml] = 0;
    memcpy(e->msg, prefix, pl);
    e->msg[pl] = ':';
    e->msg[pl + 1] = ' ';
}

void sh_assert_fail(const char *file, int line, const char *expr) {
    fprintf(stderr, "%s:%d: assertion failed: %s\n", file, line, expr);
    abort();
}
