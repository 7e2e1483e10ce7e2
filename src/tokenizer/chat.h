/*
 * tokenizer/chat — chat messages -> prompt text with the built-in formatters llama.cpp uses
 * (llama_chat_apply_template), chosen from the model's tokenizer.chat_template by the same
 * substring heuristics as its llm_chat_detect_template. No Jinja: the template text is only
 * inspected, never executed.
 *
 * Families: chatml (Qwen, SmolLM, ...), phi4, mistral-v1 / -v3 / -v3-tekken / -v7, llama2 and
 * its -sys / -sys-bos / -sys-strip variants, phi3, falcon3, glmedge, zephyr, gemma, llama3,
 * deepseek (coder). A template that matches none of them (or a file without one) is formatted as
 * ChatML and the caller is told so through *fallback.
 */
#ifndef SHOAL_TOKENIZER_CHAT_H
#define SHOAL_TOKENIZER_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "core/err.h"

typedef struct tok_chat_msg {
    const char *role;    /* "system", "user", "assistant", ... (NUL-terminated, borrowed) */
    const char *content; /* NUL-terminated, borrowed */
} tok_chat_msg;

typedef enum tok_chat_tmpl {
    TOK_CHAT_UNKNOWN = 0,
    TOK_CHAT_CHATML,
    TOK_CHAT_PHI4,
    TOK_CHAT_MISTRAL_V1,
    TOK_CHAT_MISTRAL_V3,
    TOK_CHAT_MISTRAL_V3_TEKKEN,
    TOK_CHAT_MISTRAL_V7,
    TOK_CHAT_LLAMA2,
    TOK_CHAT_LLAMA2_SYS,
    TOK_CHAT_LLAMA2_SYS_BOS,
    TOK_CHAT_LLAMA2_SYS_STRIP,
    TOK_CHAT_PHI3,
    TOK_CHAT_FALCON3,
    TOK_CHAT_GLMEDGE,
    TOK_CHAT_ZEPHYR,
    TOK_CHAT_GEMMA,
    TOK_CHAT_LLAMA3,
    TOK_CHAT_DEEPSEEK,
    TOK_CHAT_COUNT
} tok_chat_tmpl;

/* The family of a template: tmpl may be a family name ("chatml", "llama3", ... as returned by
 * tok_chat_name) or the Jinja text of tokenizer.chat_template. TOK_CHAT_UNKNOWN when nothing
 * matches or tmpl is NULL. */
tok_chat_tmpl tok_chat_detect(const char *tmpl);

/* The family name ("chatml", "llama2-sys", ...); "unknown" for TOK_CHAT_UNKNOWN. */
const char *tok_chat_name(tok_chat_tmpl t);

/* Formats msgs[0..n) as prompt text. The family is `name` when it is not NULL (a family name;
 * an unknown name is an error), otherwise detected from tmpl (the model's chat template, may be
 * NULL). add_generation_prompt appends the opening of an assistant turn where the family has
 * one. When the family cannot be determined, ChatML is used and *fallback (if not NULL) is set
 * to true, else false. *used (if not NULL) receives the family applied. Returns a malloc'd
 * NUL-terminated string (the caller frees it), or NULL with a message in err. */
char *tok_chat_apply(const char *tmpl, const char *name, const tok_chat_msg *msgs, size_t n,
                     bool add_generation_prompt, bool *fallback, tok_chat_tmpl *used,
                     sh_err *err);

#endif
