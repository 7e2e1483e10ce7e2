/*
 * core/err — how shoal reports bad input and I/O failures.
 *
 * Library code never exits and never prints: a function that can fail on bad input takes an
 * `sh_err *` and, on failure, fills it with one line that names what and where ("model.gguf:
 * tensor 'blk.0.attn_q.weight': offset 4096 past end of data (size 1024)") and returns -1 (or
 * NULL). Callers may pass NULL when they do not want the message. Programming errors (broken
 * invariants) are asserts instead: SH_ASSERT names file and line and aborts.
 */
#ifndef SHOAL_CORE_ERR_H
#define SHOAL_CORE_ERR_H

#include <stddef.h>

#define SH_ERR_MAX 512

typedef struct sh_err {
    char msg[SH_ERR_MAX]; /* NUL-terminated, "" when no error was recorded */
} sh_err;

/* Formats the message into e (when e is not NULL) and returns -1, so that
 * `return sh_errf(e, "...")` reads as one statement. Truncates silently at SH_ERR_MAX-1. */
int sh_errf(sh_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefixes e's message with "prefix: " (e.g. a file name added by an outer layer). */
void sh_err_prefix(sh_err *e, const char *prefix);

/* Aborts with "file:line: assertion failed: expr" on stderr. Always on, also in release
 * builds: the checks are on cold paths. */
#define SH_ASSERT(x)                                                                               \
    do {                                                                                           \
        if (!(x)) sh_assert_fail(__FILE__, __LINE__, #x);                                          \
    } while (0)

_Noreturn void sh_assert_fail(const char *file, int line, const char *expr);

#endif
