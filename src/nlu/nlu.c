/*
 * nlu — see nlu.h.
 */
#include "nlu/nlu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/utf8.h"

void nlu_softmax(const float *logits, int n, float *probs) {
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0;
    for (int i = 0; i < n; i++) {
        probs[i] = expf(logits[i] - mx);
        sum += probs[i];
    }
    const float inv = sum > 0 ? (float)(1.0 / sum) : 0.0f;
    for (int i = 0; i < n; i++) probs[i] *= inv;
}

int nlu_argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

size_t nlu_codepoints(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; k++) {
        size_t l = utf8_seq_len((const unsigned char *)s + i, n - i);
        i += l ? l : 1;
    }
    return k;
}

/* ============================================================ BIO ===== */

void nlu_entities_free(nlu_entities *e) {
    if (!e) return;
    for (size_t i = 0; i < e->n; i++) {
        free(e->v[i].label);
        free(e->v[i].text);
    }
    free(e->v);
    memset(e, 0, sizeof *e);
}

/* 'B', 'I' or 'O' for a tag, and where its entity label starts. */
static char tag_kind(const char *tag, const char **label) {
    *label = tag;
    if ((tag[0] == 'O' || tag[0] == 'o') && tag[1] == 0) return 'O';
    if ((tag[0] == 'B' || tag[0] == 'I') && (tag[1] == '-' || tag[1] == '_') && tag[2]) {
        *label = tag + 2;
        return tag[0];
    }
    return 'I'; /* IO tagging: a bare label continues or starts its entity */
}

typedef struct open_entity {
    const char *label; /* NULL: none open */
    size_t b0, b1;     /* bytes */
    double score_sum;
    int n_words;
} open_entity;

static int close_entity(const char *text, open_entity *o, nlu_entities *out) {
    if (!o->label) return 0;
    if (out->n == out->cap) {
        size_t nc = out->cap ? out->cap * 2 : 8;
        nlu_entity *nv = realloc(out->v, nc * sizeof *nv);
        if (!nv) return -1;
        out->v = nv;
        out->cap = nc;
    }
    nlu_entity *e = &out->v[out->n];
    e->label = strdup(o->label);
    e->text = malloc(o->b1 - o->b0 + 1);
    if (!e->label || !e->text) {
        free(e->label);
        free(e->text);
        return -1;
    }
    memcpy(e->text, text + o->b0, o->b1 - o->b0);
    e->text[o->b1 - o->b0] = 0;
    e->byte_start = o->b0;
    e->byte_end = o->b1;
    e->start = nlu_codepoints(text, o->b0);
    e->end = e->start + nlu_codepoints(text + o->b0, o->b1 - o->b0);
    e->score = (float)(o->score_sum / o->n_words);
    out->n++;
    o->label = NULL;
    return 0;
}

int nlu_bio_decode(const char *text, size_t len, const tok_span *spans, size_t n_tokens,
                   const float *probs, int n_labels, const char *const *labels,
                   nlu_entities *out, sh_err *err) {
    open_entity o = {0};
    for (size_t t = 0; t < n_tokens;) {
        if (spans[t].special || !spans[t].word_start) { /* a stray continuation piece is skipped */
            t++;
            continue;
        }
        /* the word: its first piece and the continuation pieces after it */
        size_t w_end = t + 1;
        while (w_end < n_tokens && !spans[w_end].special && !spans[w_end].word_start) w_end++;
        const float *p = probs + t * (size_t)n_labels;
        const int best = nlu_argmax(p, n_labels);
        const size_t b0 = spans[t].start, b1 = spans[w_end - 1].end;
        SH_ASSERT(b0 <= b1 && b1 <= len);
        const char *lab;
        const char kind = tag_kind(labels[best], &lab);
        if (kind == 'O') {
            if (close_entity(text, &o, out)) goto oom;
        } else if (kind == 'I' && o.label && !strcmp(o.label, lab)) {
            o.b1 = b1;
            o.score_sum += p[best];
            o.n_words++;
        } else {
            if (close_entity(text, &o, out)) goto oom;
            o = (open_entity){lab, b0, b1, p[best], 1};
        }
        t = w_end;
    }
    if (close_entity(text, &o, out)) goto oom;
    return 0;
oom:
    return sh_errf(err, "out of memory decoding entities");
}

/* ============================================================ rerank pairs ===== */

/* s with every occurrence of pat replaced by rep (malloc'd), or NULL when memory runs out. */
static char *replace_all(const char *s, const char *pat, const char *rep) {
    const size_t pl = strlen(pat), rl = strlen(rep);
    size_t n = 0;
    for (const char *p = strstr(s, pat); p; p = strstr(p + pl, pat)) n++;
    char *out = malloc(strlen(s) + n * rl + 1), *o = out;
    if (!out) return NULL;
    for (const char *p = s;;) {
        const char *q = strstr(p, pat);
        if (!q) {
            strcpy(o, p);
            break;
        }
        memcpy(o, p, (size_t)(q - p));
        o += q - p;
        memcpy(o, rep, rl);
        o += rl;
        p = q + pl;
    }
    return out;
}

static int push_id(tok_ids *a, int32_t id) {
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 64;
        int32_t *nv = realloc(a->ids, nc * sizeof *nv);
        if (!nv) return -1;
        a->ids = nv;
        a->cap = nc;
    }
    a->ids[a->n++] = id;
    return 0;
}

int nlu_rerank_tokens(const tok_vocab *v, const char *query, const char *doc, tok_ids *out,
                      sh_err *err) {
    const char *tmpl = tok_rerank_template(v);
    if (tmpl) {
        char *a = replace_all(tmpl, "{query}", query);
        char *b = a ? replace_all(a, "{document}", doc) : NULL;
        free(a);
        if (!b) return sh_errf(err, "out of memory");
        int rc = tok_tokenize(v, b, strlen(b), false, true, out, err);
        free(b);
        return rc;
    }
    const int32_t bos = tok_bos(v), sep = tok_sep(v);
    const int32_t eos = tok_eos(v) >= 0 ? tok_eos(v) : sep;
    if (tok_add_bos(v) && bos < 0) return sh_errf(err, "the vocabulary adds BOS but has none");
    if (tok_add_eos(v) && eos < 0) return sh_errf(err, "the vocabulary adds EOS but has none");
    if (tok_add_sep(v) && sep < 0) return sh_errf(err, "the vocabulary adds SEP but has none");
    if ((tok_add_bos(v) && push_id(out, bos)) ||
        tok_tokenize(v, query, strlen(query), false, false, out, err) ||
        (tok_add_eos(v) && push_id(out, eos)) || (tok_add_sep(v) && push_id(out, sep)) ||
        tok_tokenize(v, doc, strlen(doc), false, false, out, err) ||
        (tok_add_eos(v) && push_id(out, eos)))
        return err && err->msg[0] ? -1 : sh_errf(err, "out of memory");
    return 0;
}

int nlu_fit(tok_ids *ids, tok_spans *spans, size_t from, int n_ctx, bool truncate, sh_err *err) {
    const size_t n = ids->n - from;
    if (n <= (size_t)n_ctx) return 0;
    if (!truncate)
        return sh_errf(err, "the input has %zu tokens; this model reads at most %d (ask for "
                            "\"truncate\": true to cut it)", n, n_ctx);
    ids->ids[from + (size_t)n_ctx - 1] = ids->ids[ids->n - 1];
    ids->n = from + (size_t)n_ctx;
    if (spans) {
        spans->v[from + (size_t)n_ctx - 1] = spans->v[spans->n - 1];
        spans->n = from + (size_t)n_ctx;
    }
    return 0;
}
