/*
 * bench_grammar — cost of the constrained-decoding token mask (one core).
 *
 *   build/bench/bench_grammar VOCAB.gguf...
 *
 * For each vocabulary and workload (a JSON Schema with a nested object, enum, integer bounds,
 * an array and a string pattern; json_object mode; a tool-call schema), a valid document is
 * tokenized and stepped through: mask (timed), check that the next token is allowed, accept.
 * "cold" is the first document through a freshly compiled grammar, "warm" a second document
 * (other values, same structure) through the same grammar with a new matcher, as the next
 * request with the same schema would. Printed: per-token mask microseconds (median, p95,
 * mean), the mean number of allowed tokens, and the cost of applying a mask to one logits row
 * (disallowed -> -INFINITY). This is a benchmark, not a test: it never fails on speed.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "grammar/grammar.h"
#include "tokenizer/tokenizer.h"

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec * 1e-3;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static const char *SCHEMA_PERSON =
    "{\"type\":\"object\",\"properties\":{"
    "\"name\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":64},"
    "\"age\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":150},"
    "\"role\":{\"enum\":[\"admin\",\"editor\",\"viewer\"]},"
    "\"email\":{\"type\":\"string\",\"format\":\"email\"},"
    "\"phone\":{\"type\":\"string\",\"pattern\":\"^\\\\+?[0-9]{1,3}-[0-9]{3}-[0-9]{4}$\"},"
    "\"address\":{\"type\":\"object\",\"properties\":{"
    "\"street\":{\"type\":\"string\"},\"city\":{\"type\":\"string\"},"
    "\"zip\":{\"type\":\"string\",\"pattern\":\"^[0-9]{5}$\"}},"
    "\"required\":[\"street\",\"city\"]},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"maxItems\":8},"
    "\"score\":{\"type\":\"number\"},"
    "\"active\":{\"type\":\"boolean\"}},"
    "\"required\":[\"name\",\"age\",\"role\",\"address\",\"tags\",\"active\"],"
    "\"additionalProperties\":false}";

static const char *DOC_PERSON[2] = {
    "{\"name\": \"Ada Lovelace\", \"age\": 36, \"role\": \"admin\", \"email\": \"ada@example.org\", "
    "\"phone\": \"+44-555-0100\", \"address\": {\"street\": \"12 St James's Square\", \"city\": "
    "\"London\", \"zip\": \"01234\"}, \"tags\": [\"math\", \"engines\", \"poetry of science\"], "
    "\"score\": 97.5, \"active\": true}",
    "{\"name\": \"Grace Hopper\", \"age\": 85, \"role\": \"editor\", \"address\": {\"street\": "
    "\"Navy Yard, Building 4\", \"city\": \"Arlington\"}, \"tags\": [\"compilers\", \"COBOL\"], "
    "\"score\": 88, \"active\": false}",
};

static const char *SCHEMA_TOOL =
    "{\"type\":\"object\",\"properties\":{"
    "\"name\":{\"enum\":[\"get_weather\",\"search_web\",\"send_email\"]},"
    "\"arguments\":{\"anyOf\":["
    "{\"type\":\"object\",\"properties\":{\"location\":{\"type\":\"string\"},"
    "\"unit\":{\"enum\":[\"celsius\",\"fahrenheit\"]},\"days\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":14}},"
    "\"required\":[\"location\"],\"additionalProperties\":false},"
    "{\"type\":\"object\",\"properties\":{\"query\":{\"type\":\"string\"},"
    "\"max_results\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":50}},\"required\":[\"query\"],"
    "\"additionalProperties\":false},"
    "{\"type\":\"object\",\"properties\":{\"to\":{\"type\":\"string\",\"format\":\"email\"},"
    "\"subject\":{\"type\":\"string\"},\"body\":{\"type\":\"string\"}},"
    "\"required\":[\"to\",\"subject\",\"body\"],\"additionalProperties\":false}]}},"
    "\"required\":[\"name\",\"arguments\"],\"additionalProperties\":false}";

static const char *DOC_TOOL[2] = {
    "{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Paris, France\", \"unit\": "
    "\"celsius\", \"days\": 3}}",
    "{\"name\": \"send_email\", \"arguments\": {\"to\": \"bob@example.com\", \"subject\": "
    "\"Lunch on Friday?\", \"body\": \"Hi Bob,\\nare you free for lunch on Friday at noon? The "
    "usual place.\\n-- Alice\"}}",
};

static const char *DOC_OBJ[2] = {
    "{\"id\": 4182, \"title\": \"Quarterly report\", \"draft\": false, \"authors\": [\"J. Smith\", "
    "\"K. Lee\"], \"metrics\": {\"revenue\": 1250000.5, \"growth\": -0.031, \"regions\": "
    "[{\"name\": \"EMEA\", \"share\": 0.41}, {\"name\": \"APAC\", \"share\": 0.33}]}, "
    "\"notes\": null}",
    "{\"city\": \"Lisbon\", \"population\": 545923, \"landmarks\": [\"Belem Tower\", "
    "\"Jeronimos Monastery\", \"Alfama\"], \"coordinates\": {\"lat\": 38.7223, \"lon\": -9.1393}, "
    "\"capital\": true}",
};

/* Disallowed tokens -> -INFINITY, whole words at a time (the loop the scheduler can copy). */
static void apply_mask(float *logits, int32_t nv, const uint32_t *mask) {
    size_t nw = ((size_t)nv + 31) / 32;
    for (size_t w = 0; w < nw; w++) {
        uint32_t bits = mask[w];
        size_t base = w * 32, lim = (size_t)nv - base < 32 ? (size_t)nv - base : 32;
        float *row = logits + base;
        if (bits == 0xffffffffu) continue;
        if (bits == 0) {
            for (size_t b = 0; b < lim; b++) row[b] = -INFINITY;
            continue;
        }
        for (uint32_t off = ~bits; off; off &= off - 1) {
            size_t b = (size_t)__builtin_ctz(off);
            if (b < lim) row[b] = -INFINITY;
        }
    }
}

typedef struct stats {
    double med, p95, mean;
    double allowed;
    int n;
} stats;

/* Steps doc through a new matcher; fills st. Returns -1 when a token was refused. */
static int run_doc(const gram *g, const gram_vocab *gv, const tok_vocab *v, const char *doc, stats *st) {
    tok_ids ids = {0};
    sh_err err = {{0}};
    if (tok_tokenize(v, doc, strlen(doc), false, false, &ids, &err) != 0) {
        fprintf(stderr, "tokenize: %s\n", err.msg);
        memset(st, 0, sizeof *st);
        return -1;
    }
    gram_matcher *m = gram_matcher_init(g, gv, &err);
    size_t nw = gram_vocab_mask_words(gv);
    uint32_t *mask = malloc(nw * sizeof *mask);
    double *t = malloc((ids.n + 1) * sizeof *t);
    double allowed = 0;
    int rc = 0;
    for (size_t i = 0; i <= ids.n; i++) {
        double t0 = now_us();
        int c = gram_matcher_mask(m, mask);
        t[i] = now_us() - t0;
        allowed += c;
        if (i == ids.n) {
            int32_t eos = tok_eos(v);
            if (eos >= 0 && !((mask[eos >> 5] >> (eos & 31)) & 1)) {
                fprintf(stderr, "  end of generation not allowed at the end\n");
                rc = -1;
            }
            break;
        }
        int32_t id = ids.ids[i];
        if (!((mask[id >> 5] >> (id & 31)) & 1) || gram_matcher_accept(m, id) != 0) {
            size_t len;
            const char *p = tok_piece(v, id, false, &len);
            fprintf(stderr, "  token %zu (%d '%.*s') refused\n", i, id, (int)len, p);
            rc = -1;
            break;
        }
    }
    size_t n = ids.n + 1;
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += t[i];
    qsort(t, n, sizeof *t, cmp_d);
    st->med = t[n / 2];
    st->p95 = t[(size_t)((double)(n - 1) * 0.95)];
    st->mean = sum / (double)n;
    st->allowed = allowed / (double)n;
    st->n = (int)n;
    free(t);
    free(mask);
    gram_matcher_free(m);
    tok_ids_free(&ids);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s VOCAB.gguf...\n", argv[0]);
        return 2;
    }
    printf("%-22s %-10s %-5s %6s %9s %9s %9s %9s %9s\n", "vocabulary", "workload", "doc", "tokens",
           "med_us", "p95_us", "mean_us", "allowed", "compile");
    for (int a = 1; a < argc; a++) {
        sh_err err = {{0}};
        tok_vocab *v = tok_vocab_load(argv[a], &err);
        if (!v) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        double t0 = now_us();
        gram_vocab *gv = gram_vocab_init(v, &err);
        double tv = now_us() - t0;
        const char *base = strrchr(argv[a], '/');
        base = base ? base + 1 : argv[a];
        char vname[64];
        snprintf(vname, sizeof vname, "%.40s", base);
        char *dot = strstr(vname, ".gguf");
        if (dot) *dot = 0;
        struct {
            const char *name, *schema;
            const char *const *docs;
        } w[3] = {{"schema", SCHEMA_PERSON, DOC_PERSON}, {"json_obj", NULL, DOC_OBJ}, {"toolcall", SCHEMA_TOOL, DOC_TOOL}};
        for (int k = 0; k < 3; k++) {
            double c0 = now_us();
            gram *g = w[k].schema ? gram_from_json_schema(w[k].schema, strlen(w[k].schema), &err)
                                  : gram_json_object(&err);
            double tc = now_us() - c0;
            if (!g) {
                fprintf(stderr, "%s: %s\n", w[k].name, err.msg);
                return 1;
            }
            for (int d = 0; d < 2; d++) {
                stats st = {0};
                int rc = run_doc(g, gv, v, w[k].docs[d], &st);
                printf("%-22s %-10s %-5s %6d %9.1f %9.1f %9.1f %9.0f %7.0fus%s\n", vname, w[k].name,
                       d ? "warm" : "cold", st.n, st.med, st.p95, st.mean, st.allowed, d ? 0.0 : tc,
                       rc ? "  REFUSED" : "");
            }
            gram_free(g);
        }
        /* applying a mask to one logits row: a string-like mask (most tokens allowed) and a
         * structural one (a few allowed) */
        int32_t nv = tok_n_tokens(v);
        size_t nw = gram_vocab_mask_words(gv);
        float *logits = malloc((size_t)nv * sizeof *logits);
        uint32_t *mask = malloc(nw * sizeof *mask);
        double ta[2];
        for (int kind = 0; kind < 2; kind++) {
            memset(mask, 0, nw * sizeof *mask);
            for (int32_t i = 0; i < nv; i++)
                if (kind == 0 ? (i % 50 != 0) : (i % 500 == 0)) mask[i >> 5] |= 1u << (i & 31);
            int reps = 500;
            double best = 1e30;
            for (int r = 0; r < reps; r++) { /* best of reps: the row is in cache, as after sampling */
                for (int32_t i = 0; i < nv; i++) logits[i] = (float)(i % 97) * 0.01f;
                double a0 = now_us();
                apply_mask(logits, nv, mask);
                double dt = now_us() - a0;
                if (dt < best) best = dt;
            }
            ta[kind] = best;
        }
        printf("%-22s apply mask to a logits row (%d floats): %.1f us (most allowed), %.1f us (few "
               "allowed); vocab index built in %.1f ms\n", vname, nv, ta[0], ta[1], tv / 1000.0);
        free(logits);
        free(mask);
        gram_vocab_free(gv);
        tok_vocab_free(v);
    }
    return 0;
}
