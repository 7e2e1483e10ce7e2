/*
 * shoal — real-time local AI: one binary, subcommands.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

#define SHOAL_VERSION "0.1.0"

typedef struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} command;

static const command commands[] = {
    {"inspect", cmd_inspect, "show a GGUF file: architecture, hyperparameters, tensors, hash"},
    {"gen-model", cmd_gen_model, "write a seeded random-weight llama/qwen2 GGUF model"},
    {"run", cmd_run, "generate text from a prompt with a llama/qwen2 model"},
    {"bench", cmd_bench, "prompt processing and generation speed (tokens per second)"},
    {"chat", cmd_chat, "interactive chat with a model's chat template (stdin / stdout)"},
    {"quantize", cmd_quantize, "convert a GGUF model to another weight type (q8_0, q4_0, q4_k_m, ...)"},
    {"tokenize", cmd_tokenize, "text lines (or a JSON array) -> token ids with a model's tokenizer"},
    {"serve", cmd_serve, "serve models behind the OpenAI-compatible HTTP API"},
    {"detokenize", cmd_detokenize, "token id lines -> text with a model's tokenizer"},
    {"embed", cmd_embed, "sentence embeddings with an encoder (BERT / nomic-bert GGUF)"},
    {"classify", cmd_classify, "labels, probabilities and entities with an encoder's heads"},
    {"rerank", cmd_rerank, "order documents by relevance to a query with a reranker"},
    {"cache", cmd_cache, "stats or clear of a response cache (a file, a Redis, or a node's)"},
    {"calibrate", cmd_calibrate, "a cascade's threshold from sample prompts for a target escalation rate"},
    {"train", cmd_train, "train an encoder (intent, slots, embeddings) or a small LM on the CPU"},
};

int cli_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("shoal: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

int cli_long(const char *opt, const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi)
        return cli_error("%s: '%s' is not an integer in [%ld, %ld]", opt, s, lo, hi);
    *out = v;
    return 0;
}

int cli_int(const char *opt, const char *s, long lo, long hi, int *out) {
    long v;
    if (cli_long(opt, s, lo, hi, &v)) return 1;
    *out = (int)v;
    return 0;
}

int cli_u64(const char *opt, const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *end || errno || *s == '-') return cli_error("%s: '%s' is not a non-negative integer", opt, s);
    *out = (uint64_t)v;
    return 0;
}

int cli_float(const char *opt, const char *s, float *out) {
    char *end;
    float v = strtof(s, &end);
    if (!*s || *end) return cli_error("%s: '%s' is not a number", opt, s);
    *out = v;
    return 0;
}

static int hexv(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

size_t cli_unescape(char *s, size_t n) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\' && i + 1 < n) {
            char c = s[i + 1];
            if (c == 'n' || c == 't' || c == 'r' || c == '\\') {
                s[o++] = c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : '\\';
                i++;
                continue;
            }
            if (c == 'x' && i + 3 < n && hexv((unsigned char)s[i + 2]) >= 0 &&
                hexv((unsigned char)s[i + 3]) >= 0) {
                s[o++] = (char)(hexv((unsigned char)s[i + 2]) * 16 + hexv((unsigned char)s[i + 3]));
                i += 3;
                continue;
            }
        }
        s[o++] = s[i];
    }
    return o;
}

static void usage(FILE *f) {
    fprintf(f, "shoal %s — small language models, served in real time\n\nusage: shoal COMMAND "
               "[ARGS...]   (shoal COMMAND --help for its options)\n\ncommands:\n",
            SHOAL_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("shoal %s\n", SHOAL_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "shoal: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
