/*
 * core/strbuf — a growing NUL-terminated string for building text (grammars, prompts).
 *
 * Zero-initialise it ({0}); appends grow it. An allocation failure sets oom and makes every
 * later append a no-op, so callers check oom once at the end. The caller owns s (free it, or
 * strbuf_free); s is NULL until something is appended.
 */
#ifndef SHOAL_CORE_STRBUF_H
#define SHOAL_CORE_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct strbuf {
    char *s;   /* NUL-terminated text, or NULL when empty */
    size_t n, cap;
    bool oom;
} strbuf;

void strbuf_put(strbuf *b, const char *s, size_t n);
void strbuf_puts(strbuf *b, const char *s);
void strbuf_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void strbuf_free(strbuf *b); /* frees s and empties b */

#endif
