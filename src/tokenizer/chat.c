/*
 * tokenizer/chat — template detection and the built-in formatters. The formats are llama.cpp's
 * (llama-chat.cpp) so that a prompt built here tokenizes exactly like one built there.
 */
#include "tokenizer/chat.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* ============================================================ names and detection ===== */

static const char *const names[TOK_CHAT_COUNT] = {
    [TOK_CHAT_UNKNOWN] = "unknown",
    [TOK_CHAT_CHATML] = "chatml",
    [TOK_CHAT_PHI4] = "phi4",
    [TOK_CHAT_MISTRAL_V1] = "mistral-v1",
    [TOK_CHAT_MISTRAL_V3] = "mistral-v3",
    [TOK_CHAT_MISTRAL_V3_TEKKEN] = "mistral-v3-tekken",
    [TOK_CHAT_MISTRAL_V7] = "mistral-v7",
    [TOK_CHAT_LLAMA2] = "llama2",
    [TOK_CHAT_LLAMA2_SYS] = "llama2-sys",
    [TOK_CHAT_LLAMA2_SYS_BOS] = "llama2-sys-bos",
    [TOK_CHAT_LLAMA2_SYS_STRIP] = "llama2-sys-strip",
    [TOK_CHAT_PHI3] = "phi3",
    [TOK_CHAT_FALCON3] = "falcon3",
    [TOK_CHAT_GLMEDGE] = "glmedge",
    [TOK_CHAT_ZEPHYR] = "zephyr",
    [TOK_CHAT_GEMMA] = "gemma",
    [TOK_CHAT_LLAMA3] = "llama3",
    [TOK_CHAT_DEEPSEEK] = "deepseek",
};

const char *tok_chat_name(tok_chat_tmpl t) {
    return (t >= 0 && t < TOK_CHAT_COUNT) ? names[t] : "unknown";
}

static tok_chat_tmpl from_name(const char *s) {
    for (int t = 1; t < TOK_CHAT_COUNT; t++)
        if (!strcmp(s, names[t])) return (tok_chat_tmpl)t;
    return TOK_CHAT_UNKNOWN;
}

/* The order of the checks matters (a Zephyr-like template with <|assistant|> and <|user|> is
 * glmedge/falcon3 first), and follows llama.cpp's detection. */
tok_chat_tmpl tok_chat_detect(const char *t) {
    if (!t) return TOK_CHAT_UNKNOWN;
    tok_chat_tmpl byname = from_name(t);
    if (byname != TOK_CHAT_UNKNOWN) return byname;
#define HAS(s) (strstr(t, s) != NULL)
    if (HAS("<|im_start|>")) {
        if (HAS("<|im_sep|>")) return TOK_CHAT_PHI4;
        if (HAS("<end_of_utterance>")) return TOK_CHAT_UNKNOWN; /* SmolVLM: not ChatML */
        return TOK_CHAT_CHATML;
    }
    if (!strncmp(t, "mistral", 7) || HAS("[INST]")) {
        if (HAS("[SYSTEM_PROMPT]")) return TOK_CHAT_MISTRAL_V7;
        if (HAS("' [INST] ' + system_message") || HAS("[AVAILABLE_TOOLS]")) {
            if (HAS(" [INST]")) return TOK_CHAT_MISTRAL_V1;
            if (HAS("\"[INST]\"")) return TOK_CHAT_MISTRAL_V3_TEKKEN;
            return TOK_CHAT_MISTRAL_V3;
        }
        if (HAS("content.strip()")) return TOK_CHAT_LLAMA2_SYS_STRIP;
        if (HAS("bos_token + '[INST]")) return TOK_CHAT_LLAMA2_SYS_BOS;
        if (HAS("<<SYS>>")) return TOK_CHAT_LLAMA2_SYS;
        return TOK_CHAT_LLAMA2;
    }
    if (HAS("<|assistant|>") && HAS("<|end|>")) return TOK_CHAT_PHI3;
    if (HAS("[gMASK]<sop>")) return TOK_CHAT_UNKNOWN; /* chatglm4: not built in */
    if (HAS("<|assistant|>") && HAS("<|user|>"))
        return HAS("</s>") ? TOK_CHAT_FALCON3 : TOK_CHAT_GLMEDGE;
    if (HAS("<|{{ item['role'] }}|>") && HAS("<|begin_of_image|>")) return TOK_CHAT_GLMEDGE;
    if (HAS("<|user|>") && HAS("<|endoftext|>")) return TOK_CHAT_ZEPHYR;
    if (HAS("bos_token + message['role']")) return TOK_CHAT_UNKNOWN; /* monarch */
    if (HAS("<start_of_turn>")) return TOK_CHAT_GEMMA;
    if (HAS("'\\n\\nAssistant: ' + eos_token")) return TOK_CHAT_UNKNOWN; /* orion */
    if (HAS("GPT4 Correct ")) return TOK_CHAT_UNKNOWN;                  /* openchat */
    if (HAS("USER: ") && HAS("ASSISTANT: ")) return TOK_CHAT_UNKNOWN;   /* vicuna */
    if (HAS("### Instruction:") && HAS("<|EOT|>")) return TOK_CHAT_DEEPSEEK;
    if (HAS("<|START_OF_TURN_TOKEN|>") && HAS("<|USER_TOKEN|>")) return TOK_CHAT_UNKNOWN;
    if (HAS("<|start_header_id|>") && HAS("<|end_header_id|>")) return TOK_CHAT_LLAMA3;
#undef HAS
    return TOK_CHAT_UNKNOWN;
}

/* ============================================================ formatting ===== */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + n + 1) nc *= 2;
        char *np = realloc(b->p, nc);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void puts_(sbuf *b, const char *s) { put(b, s, strlen(s)); }

/* s without leading and trailing C-locale whitespace. */
static void put_trimmed(sbuf *b, const char *s) {
    size_t a = 0, e = strlen(s);
    while (a < e && isspace((unsigned char)s[a])) a++;
    while (e > a && isspace((unsigned char)s[e - 1])) e--;
    put(b, s + a, e - a);
}

static int is(const char *role, const char *r) { return strcmp(role, r) == 0; }

static void fmt_mistral(sbuf *b, tok_chat_tmpl t, const tok_chat_msg *m, size_t n) {
    if (t == TOK_CHAT_MISTRAL_V7) {
        for (size_t i = 0; i < n; i++) {
            if (is(m[i].role, "system")) {
                puts_(b, "[SYSTEM_PROMPT] ");
                puts_(b, m[i].content);
                puts_(b, "[/SYSTEM_PROMPT]");
            } else if (is(m[i].role, "user")) {
                puts_(b, "[INST] ");
                puts_(b, m[i].content);
                puts_(b, "[/INST]");
            } else {
                puts_(b, " ");
                puts_(b, m[i].content);
                puts_(b, "</s>");
            }
        }
        return;
    }
    const char *lead = t == TOK_CHAT_MISTRAL_V1 ? " " : "";
    const char *trail = t == TOK_CHAT_MISTRAL_V3_TEKKEN ? "" : " ";
    int inside = 0;
    for (size_t i = 0; i < n; i++) {
        if (!inside) {
            puts_(b, lead);
            puts_(b, "[INST]");
            puts_(b, trail);
            inside = 1;
        }
        if (is(m[i].role, "system")) {
            puts_(b, m[i].content);
            puts_(b, "\n\n");
        } else if (is(m[i].role, "user")) {
            puts_(b, m[i].content);
            puts_(b, lead);
            puts_(b, "[/INST]");
        } else {
            puts_(b, trail);
            if (t == TOK_CHAT_MISTRAL_V3) put_trimmed(b, m[i].content);
            else puts_(b, m[i].content);
            puts_(b, "</s>");
            inside = 0;
        }
    }
}

static void fmt_llama2(sbuf *b, tok_chat_tmpl t, const tok_chat_msg *m, size_t n) {
    int sys = t != TOK_CHAT_LLAMA2, bos_inside = t == TOK_CHAT_LLAMA2_SYS_BOS;
    int strip = t == TOK_CHAT_LLAMA2_SYS_STRIP;
    int inside = 1; /* the opening [INST] is written here, BOS comes from the tokenizer */
    puts_(b, "[INST] ");
    for (size_t i = 0; i < n; i++) {
        if (!inside) {
            inside = 1;
            puts_(b, bos_inside ? "<s>[INST] " : "[INST] ");
        }
#define CONTENT() (strip ? put_trimmed(b, m[i].content) : puts_(b, m[i].content))
        if (is(m[i].role, "system")) {
            if (sys) {
                puts_(b, "<<SYS>>\n");
                CONTENT();
                puts_(b, "\n<</SYS>>\n\n");
            } else {
                CONTENT();
                puts_(b, "\n");
            }
        } else if (is(m[i].role, "user")) {
            CONTENT();
            puts_(b, " [/INST]");
        } else {
            CONTENT();
            puts_(b, "</s>");
            inside = 0;
        }
#undef CONTENT
    }
}

static void fmt_gemma(sbuf *b, const tok_chat_msg *m, size_t n, bool gen) {
    sbuf sys = {0};
    for (size_t i = 0; i < n; i++) {
        if (is(m[i].role, "system")) { /* no system turn: merged into the next user turn */
            put_trimmed(&sys, m[i].content);
            continue;
        }
        const char *role = is(m[i].role, "assistant") ? "model" : m[i].role;
        puts_(b, "<start_of_turn>");
        puts_(b, role);
        puts_(b, "\n");
        if (sys.n && !is(role, "model")) {
            put(b, sys.p, sys.n);
            puts_(b, "\n\n");
            sys.n = 0;
        }
        put_trimmed(b, m[i].content);
        puts_(b, "<end_of_turn>\n");
    }
    if (sys.oom) b->oom = 1;
    free(sys.p);
    if (gen) puts_(b, "<start_of_turn>model\n");
}

char *tok_chat_apply(const char *tmpl, const char *name, const tok_chat_msg *m, size_t n,
                     bool gen, bool *fallback, tok_chat_tmpl *used, sh_err *err) {
    tok_chat_tmpl t;
    if (name) {
        t = from_name(name);
        if (t == TOK_CHAT_UNKNOWN) {
            sh_errf(err, "chat template '%s': unknown name (chatml, llama2, llama3, phi3, gemma, "
                         "zephyr, mistral-v7, ...)", name);
            return NULL;
        }
    } else t = tok_chat_detect(tmpl);
    if (fallback) *fallback = t == TOK_CHAT_UNKNOWN;
    if (t == TOK_CHAT_UNKNOWN) t = TOK_CHAT_CHATML;
    if (used) *used = t;
    for (size_t i = 0; i < n; i++)
        if (!m[i].role || !m[i].content) {
            sh_errf(err, "chat message %zu: role and content are required", i);
            return NULL;
        }
    sbuf b = {0};
    puts_(&b, ""); /* an empty conversation still gives a string */
    switch (t) {
    case TOK_CHAT_CHATML:
    case TOK_CHAT_UNKNOWN:
        for (size_t i = 0; i < n; i++) {
            puts_(&b, "<|im_start|>");
            puts_(&b, m[i].role);
            puts_(&b, "\n");
            puts_(&b, m[i].content);
            puts_(&b, "<|im_end|>\n");
        }
        if (gen) puts_(&b, "<|im_start|>assistant\n");
        break;
    case TOK_CHAT_PHI4:
        for (size_t i = 0; i < n; i++) {
            puts_(&b, "<|im_start|>");
            puts_(&b, m[i].role);
            puts_(&b, "<|im_sep|>");
            puts_(&b, m[i].content);
            puts_(&b, "<|im_end|>");
        }
        if (gen) puts_(&b, "<|im_start|>assistant<|im_sep|>");
        break;
    case TOK_CHAT_MISTRAL_V1:
    case TOK_CHAT_MISTRAL_V3:
    case TOK_CHAT_MISTRAL_V3_TEKKEN:
    case TOK_CHAT_MISTRAL_V7:
        fmt_mistral(&b, t, m, n);
        break;
    case TOK_CHAT_LLAMA2:
    case TOK_CHAT_LLAMA2_SYS:
    case TOK_CHAT_LLAMA2_SYS_BOS:
    case TOK_CHAT_LLAMA2_SYS_STRIP:
        fmt_llama2(&b, t, m, n);
        break;
    case TOK_CHAT_PHI3:
    case TOK_CHAT_FALCON3:
        for (size_t i = 0; i < n; i++) {
            puts_(&b, "<|");
            puts_(&b, m[i].role);
            puts_(&b, "|>\n");
            puts_(&b, m[i].content);
            puts_(&b, t == TOK_CHAT_PHI3 ? "<|end|>\n" : "\n");
        }
        if (gen) puts_(&b, "<|assistant|>\n");
        break;
    case TOK_CHAT_GLMEDGE:
        for (size_t i = 0; i < n; i++) {
            puts_(&b, "<|");
            puts_(&b, m[i].role);
            puts_(&b, "|>\n");
            puts_(&b, m[i].content);
        }
        if (gen) puts_(&b, "<|assistant|>");
        break;
    case TOK_CHAT_ZEPHYR:
        for (size_t i = 0; i < n; i++) {
            puts_(&b, "<|");
            puts_(&b, m[i].role);
            puts_(&b, "|>\n");
            puts_(&b, m[i].content);
            puts_(&b, "<|endoftext|>\n");
        }
        if (gen) puts_(&b, "<|assistant|>\n");
        break;
    case TOK_CHAT_GEMMA:
        fmt_gemma(&b, m, n, gen);
        break;
    case TOK_CHAT_LLAMA3:
        for (size_t i = 0; i < n; i++) {
            puts_(&b, "<|start_header_id|>");
            puts_(&b, m[i].role);
            puts_(&b, "<|end_header_id|>\n\n");
            put_trimmed(&b, m[i].content);
            puts_(&b, "<|eot_id|>");
        }
        if (gen) puts_(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    case TOK_CHAT_DEEPSEEK:
        for (size_t i = 0; i < n; i++) {
            if (is(m[i].role, "system")) puts_(&b, m[i].content);
            else if (is(m[i].role, "user")) {
                puts_(&b, "### Instruction:\n");
                puts_(&b, m[i].content);
                puts_(&b, "\n");
            } else if (is(m[i].role, "assistant")) {
                puts_(&b, "### Response:\n");
                puts_(&b, m[i].content);
                puts_(&b, "\n<|EOT|>\n");
            }
        }
        if (gen) puts_(&b, "### Response:\n");
        break;
    case TOK_CHAT_COUNT:
        break;
    }
    if (b.oom) {
        free(b.p);
        sh_errf(err, "chat template: out of memory");
        return NULL;
    }
    return b.p;
}
