/*
 * core/utf8 — UTF-8 validation for text that crosses a trust boundary.
 */
#ifndef SHOAL_CORE_UTF8_H
#define SHOAL_CORE_UTF8_H

#include <stddef.h>

/* Length of the valid UTF-8 sequence at s[0..n) (1..4), or 0 when s starts with an invalid,
 * overlong, surrogate or truncated sequence. n must be >= 1. */
size_t utf8_seq_len(const unsigned char *s, size_t n);

/* Replaces, in place, every byte that does not start a valid sequence with '?', so the string
 * can be embedded in JSON. Works on NUL-terminated s; returns s. */
char *utf8_sanitize(char *s);

/* A NUL-terminated copy of s[0..n) in which every byte that does not start a valid sequence
 * is replaced by U+FFFD (EF BF BD), the usual stand-in for undecodable model output; its
 * length in *out_n. NULL when memory runs out. The caller frees it. */
char *utf8_replace_invalid(const char *s, size_t n, size_t *out_n);

#endif
