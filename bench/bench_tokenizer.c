/*
 * bench_tokenizer — tokenizer throughput (one core).
 *
 *   build/bench/bench_tokenizer [-f TEXT_FILE] [-s MB] VOCAB.gguf...
 *
 * For each vocabulary: MB/s of tokenizing English text (TEXT_FILE, or by default a synthetic
 * English-like text: Zipf-distributed common words, capitalisation, punctuation, numbers and
 * paragraphs, -s MB of it, default 4), the best of 3 runs; then the time for 1 MB of letters
 * without a single space (one huge pre-tokenizer word, the worst case for BPE merging).
 * This is a benchmark, not a test: it prints numbers and never fails on speed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tokenizer/tokenizer.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint64_t rnd(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static const char *words[] = {
    "the", "of", "and", "to", "a", "in", "is", "that", "for", "it", "as", "was", "with", "be",
    "by", "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have",
    "an", "had", "they", "you", "were", "their", "one", "all", "we", "can", "her", "has",
    "there", "been", "if", "more", "when", "will", "would", "who", "so", "no", "she", "other",
    "its", "may", "these", "what", "them", "than", "some", "him", "time", "into", "only", "do",
    "could", "new", "about", "two", "first", "then", "also", "any", "like", "our", "over",
    "such", "my", "people", "years", "most", "many", "made", "after", "where", "through",
    "world", "should", "because", "each", "those", "between", "water", "government", "system",
    "development", "information", "different", "following", "important", "understanding",
    "language", "computer", "network", "performance", "tokenizer", "processing", "university",
    "research", "experience", "technology", "international", "particularly", "relationship",
    "environment", "organization", "significant", "approximately", "unfortunately",
    "characteristics", "responsibility", "implementation", "nevertheless", "simultaneously",
    "history", "country", "house", "morning", "evening", "question", "answer", "problem",
    "children", "mother", "father", "small", "large", "great", "little", "long", "short",
    "river", "mountain", "village", "city", "market", "window", "garden", "letter", "story",
    "journey", "silence", "thought", "believed", "walked", "remembered", "considered",
    "described", "however", "although", "therefore", "whether", "without", "against",
};

/* Synthetic English-like text of n bytes. */
static char *english(size_t n) {
    char *b = malloc(n + 64);
    size_t k = 0;
    uint64_t s = 12345;
    size_t nw = sizeof words / sizeof words[0];
    int sentence_start = 1;
    while (k < n) {
        /* Zipf-like: index = nw * u^3 */
        double u = (double)(rnd(&s) >> 11) / 9007199254740992.0;
        const char *w = words[(size_t)((double)nw * u * u * u)];
        if (rnd(&s) % 40 == 0) { /* a number now and then */
            k += (size_t)snprintf(b + k, 32, "%u", (unsigned)(rnd(&s) % 100000));
        } else {
            size_t l = strlen(w);
            memcpy(b + k, w, l);
            if (sentence_start) b[k] = (char)(b[k] - 32);
            k += l;
        }
        sentence_start = 0;
        uint64_t r = rnd(&s) % 100;
        if (r < 6) b[k++] = ',';
        else if (r < 12) {
            b[k++] = '.';
            sentence_start = 1;
            if (r == 11) {
                b[k++] = '\n';
                b[k++] = '\n';
                continue;
            }
        } else if (r == 12) b[k++] = ';';
        else if (r == 13) {
            b[k++] = '\'';
            b[k++] = 's';
        }
        b[k++] = ' ';
    }
    b[n] = 0;
    return b;
}

int main(int argc, char **argv) {
    const char *file = NULL;
    double mb = 4;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "-f") && i + 1 < argc) file = argv[++i];
        else if (!strcmp(argv[i], "-s") && i + 1 < argc) mb = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [-f TEXT_FILE] [-s MB] VOCAB.gguf...\n", argv[0]);
            return 2;
        }
    }
    if (i >= argc) {
        fprintf(stderr, "usage: %s [-f TEXT_FILE] [-s MB] VOCAB.gguf...\n", argv[0]);
        return 2;
    }
    char *text;
    size_t n;
    if (file) {
        FILE *f = fopen(file, "rb");
        if (!f) {
            perror(file);
            return 1;
        }
        fseek(f, 0, SEEK_END);
        n = (size_t)ftell(f);
        fseek(f, 0, SEEK_SET);
        text = malloc(n + 1);
        if (fread(text, 1, n, f) != n) {
            perror(file);
            return 1;
        }
        fclose(f);
    } else {
        n = (size_t)(mb * 1024 * 1024);
        text = english(n);
    }
    size_t nw = 1 << 20;
    char *word = malloc(nw);
    uint64_t s = 99;
    for (size_t k = 0; k < nw; k++) word[k] = (char)('a' + rnd(&s) % 26);

    printf("text: %s, %.2f MB\n", file ? file : "synthetic English", (double)n / 1048576.0);
    for (; i < argc; i++) {
        sh_err err = {{0}};
        tok_vocab *v = tok_vocab_load(argv[i], &err);
        if (!v) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        tok_ids ids = {0};
        double best = 1e30;
        for (int r = 0; r < 3; r++) {
            ids.n = 0;
            double t0 = now();
            if (tok_tokenize(v, text, n, false, false, &ids, &err)) {
                fprintf(stderr, "%s\n", err.msg);
                return 1;
            }
            double t = now() - t0;
            if (t < best) best = t;
        }
        size_t ntok = ids.n;
        ids.n = 0;
        double t0 = now();
        tok_tokenize(v, word, nw, false, false, &ids, &err);
        double tw = now() - t0;
        const char *name = strrchr(argv[i], '/') ? strrchr(argv[i], '/') + 1 : argv[i];
        printf("%-32s %7.1f MB/s  %9zu tokens (%.2f bytes/token)   1 MB no-space word: %.3f s\n",
               name, (double)n / 1048576.0 / best, ntok, (double)n / (double)ntok, tw);
        tok_ids_free(&ids);
        tok_vocab_free(v);
    }
    free(text);
    free(word);
    return 0;
}
