/*
 * train/tdata — see tdata.h.
 */
#include "train/tdata.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_unicode.h"

/* ============================================================ labels, sets ===== */

void tlabels_free(tlabels *l) {
    if (!l) return;
    for (int i = 0; i < l->n; i++) free(l->name[i]);
    free(l->name);
    memset(l, 0, sizeof *l);
}

int tlabels_find(const tlabels *l, const char *name) {
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->name[i], name)) return i;
    return -1;
}

static int labels_add(tlabels *l, const char *name) {
    if (tlabels_find(l, name) >= 0) return 0;
    char **nn = realloc(l->name, (size_t)(l->n + 1) * sizeof *nn);
    if (!nn) return -1;
    l->name = nn;
    if (!(l->name[l->n] = strdup(name))) return -1;
    l->n++;
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

void tset_free(tset *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) free(s->v[i].ids), free(s->v[i].tags);
    free(s->v);
    memset(s, 0, sizeof *s);
}

static tex *tset_push(tset *s) {
    if (s->n == s->cap) {
        int nc = s->cap ? s->cap * 2 : 1024;
        tex *nv = realloc(s->v, (size_t)nc * sizeof *nv);
        if (!nv) return NULL;
        s->v = nv;
        s->cap = nc;
    }
    tex *e = &s->v[s->n++];
    memset(e, 0, sizeof *e);
    e->intent = e->group = -1;
    return e;
}

/* ============================================================ lines ===== */

typedef struct reader {
    FILE *f;
    const char *path;
    char *line;
    size_t cap;
    int no;
} reader;

static int reader_open(reader *r, const char *path, sh_err *err) {
    memset(r, 0, sizeof *r);
    r->path = path;
    if (!(r->f = fopen(path, "rb"))) return sh_errf(err, "%s: cannot open", path);
    return 0;
}

/* The next non-empty line (NUL-terminated, newline removed), or NULL at the end. */
static char *reader_next(reader *r) {
    ssize_t n;
    while ((n = getline(&r->line, &r->cap, r->f)) >= 0) {
        r->no++;
        while (n > 0 && (r->line[n - 1] == '\n' || r->line[n - 1] == '\r')) r->line[--n] = 0;
        if (n > 0) return r->line;
    }
    return NULL;
}

static void reader_close(reader *r) {
    if (r->f) fclose(r->f);
    free(r->line);
}

/* ============================================================ encoder data ===== */

/* Group names to ids. */
typedef struct groups {
    char **name;
    int n, cap;
} groups;

static int group_id(groups *g, const char *name) {
    for (int i = g->n - 1; i >= 0 && i >= g->n - 64; i--) /* recent first: generated data clusters */
        if (!strcmp(g->name[i], name)) return i;
    for (int i = 0; i < g->n - 64; i++)
        if (!strcmp(g->name[i], name)) return i;
    if (g->n == g->cap) {
        int nc = g->cap ? g->cap * 2 : 1024;
        char **nn = realloc(g->name, (size_t)nc * sizeof *nn);
        if (!nn) return -1;
        g->name = nn;
        g->cap = nc;
    }
    if (!(g->name[g->n] = strdup(name))) return -1;
    return g->n++;
}

/* The labels of a training file: every intent and slot name, sorted. */
static int build_labels(const char *path, tlabels *intents, tlabels *tags, sh_err *err) {
    reader r;
    if (reader_open(&r, path, err)) return -1;
    tlabels slots = {0};
    int rc = 0;
    char *line;
    while (!rc && (line = reader_next(&r))) {
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        if (!o || !json_is_object(o)) {
            rc = sh_errf(err, "%s:%d: malformed JSON: %s", path, r.no, o ? "not an object" : je.text);
            json_decref(o);
            break;
        }
        json_t *in = json_object_get(o, "intent"), *sl = json_object_get(o, "slots");
        if (json_is_string(in) && labels_add(intents, json_string_value(in))) rc = sh_errf(err, "out of memory");
        const char *k;
        json_t *val;
        if (json_is_object(sl))
            json_object_foreach(sl, k, val) if (labels_add(&slots, k)) rc = sh_errf(err, "out of memory");
        json_decref(o);
    }
    reader_close(&r);
    if (rc) return tlabels_free(&slots), -1;
    if (intents->n) qsort(intents->name, (size_t)intents->n, sizeof *intents->name, cmp_str);
    if (slots.n) qsort(slots.name, (size_t)slots.n, sizeof *slots.name, cmp_str);
    if (slots.n) {
        if (labels_add(tags, "O")) rc = -1;
        for (int i = 0; !rc && i < slots.n; i++) {
            char b[160];
            snprintf(b, sizeof b, "B-%s", slots.name[i]);
            if (labels_add(tags, b)) rc = -1;
            snprintf(b, sizeof b, "I-%s", slots.name[i]);
            if (labels_add(tags, b)) rc = -1;
        }
    }
    tlabels_free(&slots);
    if (rc) return sh_errf(err, "out of memory");
    if (!intents->n && !tags->n)
        return sh_errf(err, "%s: the label set is empty: no line has an \"intent\" or \"slots\"", path);
    return 0;
}

/* Byte ranges of the slot values in text: longest first, each the first occurrence that does
 * not overlap one already placed. */
typedef struct span {
    const char *name;
    size_t a, b;
} span;

static int place_spans(const char *text, json_t *slots, span *out, int *n, const char *path,
                       int line, sh_err *err) {
    int k = 0;
    const char *key;
    json_t *val;
    json_object_foreach(slots, key, val) {
        if (k == 64) return sh_errf(err, "%s:%d: more than 64 slots", path, line);
        if (!json_is_string(val) || !json_string_length(val))
            return sh_errf(err, "%s:%d: slot '%s' is not a non-empty string", path, line, key);
        out[k++] = (span){key, 0, json_string_length(val)};
    }
    /* longest value first (ties: name order) */
    for (int i = 1; i < k; i++)
        for (int j = i; j > 0 && (out[j].b > out[j - 1].b || (out[j].b == out[j - 1].b && strcmp(out[j].name, out[j - 1].name) < 0)); j--) {
            span t = out[j];
            out[j] = out[j - 1];
            out[j - 1] = t;
        }
    for (int i = 0; i < k; i++) {
        const char *v = json_string_value(json_object_get(slots, out[i].name));
        const size_t len = out[i].b;
        const char *at = text;
        bool placed = false;
        while ((at = strstr(at, v))) {
            const size_t a = (size_t)(at - text), b = a + len;
            bool overlap = false;
            for (int j = 0; j < i; j++) overlap |= a < out[j].b && out[j].a < b;
            if (!overlap) {
                out[i].a = a, out[i].b = b;
                placed = true;
                break;
            }
            at++;
        }
        if (!placed)
            return sh_errf(err, "%s:%d: slot '%s' = '%.60s' is not a span of the text", path, line,
                           out[i].name, v);
    }
    *n = k;
    return 0;
}

int tdata_load_enc(const char *path, const tok_vocab *v, tlabels *intents, tlabels *tags,
                   bool build, int max_len, tset *out, sh_err *err) {
    if (build && build_labels(path, intents, tags, err)) return -1;
    reader r;
    if (reader_open(&r, path, err)) return -1;
    groups gr = {0};
    tok_ids ids = {0};
    tok_spans sp = {0};
    int rc = 0;
    char *line;
    while (!rc && (line = reader_next(&r))) {
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        const int no = r.no;
#define BAD(...) do { rc = sh_errf(err, __VA_ARGS__); json_decref(o); goto next; } while (0)
        if (!o) BAD("%s:%d: malformed JSON: %s (column %d)", path, no, je.text, je.column);
        if (!json_is_object(o)) BAD("%s:%d: a line must be a JSON object", path, no);
        json_t *jt = json_object_get(o, "text"), *ji = json_object_get(o, "intent");
        json_t *js = json_object_get(o, "slots"), *jg = json_object_get(o, "group");
        if (!json_is_string(jt)) BAD("%s:%d: \"text\" is missing or not a string", path, no);
        if (!json_string_length(jt)) BAD("%s:%d: \"text\" is empty", path, no);
        if (ji && !json_is_null(ji) && !json_is_string(ji)) BAD("%s:%d: \"intent\" must be a string", path, no);
        if (js && !json_is_null(js) && !json_is_object(js)) BAD("%s:%d: \"slots\" must be an object", path, no);
        const char *text = json_string_value(jt);
        tex *e = tset_push(out);
        if (!e) BAD("out of memory");
        e->line = no;
        if (json_is_string(ji)) {
            if (!intents->n) BAD("%s:%d: an intent, but the training data has none", path, no);
            e->intent = tlabels_find(intents, json_string_value(ji));
            if (e->intent < 0) BAD("%s:%d: intent '%.60s' is never seen in the training data", path, no, json_string_value(ji));
        } else if (intents->n && build) {
            BAD("%s:%d: \"intent\" is missing (other lines have one)", path, no);
        }
        if (jg && json_is_string(jg)) e->group = group_id(&gr, json_string_value(jg));
        span spans[64];
        int n_spans = 0;
        if (json_is_object(js) && place_spans(text, js, spans, &n_spans, path, no, err)) {
            rc = -1;
            json_decref(o);
            goto next;
        }
        for (int i = 0; i < n_spans; i++) {
            char b[160];
            snprintf(b, sizeof b, "B-%s", spans[i].name);
            if (tlabels_find(tags, b) < 0) BAD("%s:%d: slot '%.60s' is never seen in the training data", path, no, spans[i].name);
        }
        ids.n = sp.n = 0;
        if (tags->n) {
            if (tok_tokenize_spans(v, text, strlen(text), true, true, &ids, &sp, err)) {
                rc = -1;
                json_decref(o);
                goto next;
            }
        } else if (tok_tokenize(v, text, strlen(text), true, true, &ids, err)) {
            rc = -1;
            json_decref(o);
            goto next;
        }
        if ((int)ids.n > max_len)
            BAD("%s:%d: the text has %zu tokens; the model's context is %d", path, no, ids.n, max_len);
        e->n = (int)ids.n;
        e->ids = malloc(ids.n * sizeof *e->ids);
        e->tags = malloc(ids.n * sizeof *e->tags);
        if (!e->ids || !e->tags) BAD("out of memory");
        memcpy(e->ids, ids.ids, ids.n * sizeof *e->ids);
        for (size_t t = 0; t < ids.n; t++) {
            e->tags[t] = -1;
            if (!tags->n || sp.v[t].special || !sp.v[t].word_start) continue;
            e->tags[t] = 0; /* O */
            for (int i = 0; i < n_spans; i++) {
                if (sp.v[t].start < spans[i].a || sp.v[t].start >= spans[i].b) continue;
                char b[160];
                /* B on the span's first word, I on the words after it */
                bool first = true;
                for (size_t u = 0; u < t; u++)
                    if (!sp.v[u].special && sp.v[u].word_start && sp.v[u].start >= spans[i].a && sp.v[u].start < spans[i].b)
                        first = false;
                snprintf(b, sizeof b, "%s-%s", first ? "B" : "I", spans[i].name);
                e->tags[t] = tlabels_find(tags, b);
            }
        }
        json_decref(o);
#undef BAD
    next:;
    }
    reader_close(&r);
    out->n_groups = gr.n;
    for (int i = 0; i < gr.n; i++) free(gr.name[i]);
    free(gr.name);
    tok_ids_free(&ids);
    tok_spans_free(&sp);
    if (!rc && out->n == 0) rc = sh_errf(err, "%s: no examples", path);
    return rc;
}

/* ============================================================ LM data ===== */

char *tdata_chatml_prompt(const char *prompt) {
    const char *a = "<|im_start|>user\n", *b = "<|im_end|>\n<|im_start|>assistant\n";
    char *s = malloc(strlen(a) + strlen(prompt) + strlen(b) + 1);
    if (s) strcat(strcat(strcpy(s, a), prompt), b);
    return s;
}

static int add_lm_example(tset *out, const tok_ids *all, size_t n_prompt, int max_len, int line) {
    size_t n = all->n;
    if (n < 2) return 0;
    if (n > (size_t)max_len + 1) n = (size_t)max_len + 1;
    tex *e = tset_push(out);
    if (!e) return -1;
    e->line = line;
    e->n = (int)n - 1;
    e->ids = malloc((size_t)e->n * sizeof *e->ids);
    e->tags = malloc((size_t)e->n * sizeof *e->tags);
    if (!e->ids || !e->tags) return -1;
    for (int i = 0; i < e->n; i++) {
        e->ids[i] = all->ids[i];
        e->tags[i] = (size_t)i + 1 >= n_prompt ? all->ids[i + 1] : -1; /* predict the completion */
    }
    return 0;
}

int tdata_load_lm(const char *path, const tok_vocab *v, int max_len, tset *out, sh_err *err) {
    reader r;
    if (reader_open(&r, path, err)) return -1;
    tok_ids all = {0};
    int rc = 0;
    char *line;
    const int32_t end = tok_find(v, "<|im_end|>", 10);
    while (!rc && (line = reader_next(&r))) {
        const int no = r.no;
        all.n = 0;
        if (line[0] == '{') {
            json_error_t je;
            json_t *o = json_loads(line, 0, &je);
            json_t *p = o ? json_object_get(o, "prompt") : NULL, *c = o ? json_object_get(o, "completion") : NULL;
            if (!o) rc = sh_errf(err, "%s:%d: malformed JSON: %s", path, no, je.text);
            else if (!json_is_string(p) || !json_is_string(c))
                rc = sh_errf(err, "%s:%d: a JSON line needs \"prompt\" and \"completion\" strings", path, no);
            else if (!json_string_length(c)) rc = sh_errf(err, "%s:%d: \"completion\" is empty", path, no);
            else if (end < 0) rc = sh_errf(err, "%s:%d: prompt / completion data needs a vocabulary with <|im_end|>", path, no);
            char *pr = rc ? NULL : tdata_chatml_prompt(json_string_value(p));
            if (!rc && !pr) rc = sh_errf(err, "out of memory");
            if (!rc && tok_tokenize(v, pr, strlen(pr), true, true, &all, err)) rc = -1;
            const size_t n_prompt = all.n;
            const char *ct = rc ? "" : json_string_value(c);
            if (!rc && tok_tokenize(v, ct, strlen(ct), false, false, &all, err)) rc = -1;
            if (!rc) {
                if (all.n == all.cap) {
                    int32_t *ni = realloc(all.ids, (all.cap + 16) * sizeof *ni);
                    if (!ni) rc = sh_errf(err, "out of memory");
                    else all.ids = ni, all.cap += 16;
                }
                if (!rc) all.ids[all.n++] = end;
                if (!rc && n_prompt >= all.n - 1)
                    rc = sh_errf(err, "%s:%d: the completion has no tokens", path, no);
                if (!rc && n_prompt > (size_t)max_len)
                    rc = sh_errf(err, "%s:%d: the prompt has %zu tokens; the context is %d", path, no, n_prompt, max_len);
                if (!rc && add_lm_example(out, &all, n_prompt, max_len, no)) rc = sh_errf(err, "out of memory");
            }
            free(pr);
            json_decref(o);
        } else { /* plain text: the whole line, cut into context-sized pieces */
            if (tok_tokenize(v, line, strlen(line), true, false, &all, err)) rc = -1;
            if (!rc && tok_eos(v) >= 0) {
                int32_t *ni = realloc(all.ids, (all.n + 1) * sizeof *ni);
                if (!ni) rc = sh_errf(err, "out of memory");
                else all.ids = ni, all.cap = all.n + 1, all.ids[all.n++] = tok_eos(v);
            }
            for (size_t off = 0; !rc && off + 1 < all.n; off += (size_t)max_len) {
                tok_ids piece = {.ids = all.ids + off, .n = all.n - off};
                if (add_lm_example(out, &piece, 0, max_len, no)) rc = sh_errf(err, "out of memory");
            }
        }
    }
    reader_close(&r);
    tok_ids_free(&all);
    if (!rc && out->n == 0) rc = sh_errf(err, "%s: no examples", path);
    return rc;
}

int tdata_lm_texts(const char *path, char ***texts, size_t *n, sh_err *err) {
    reader r;
    if (reader_open(&r, path, err)) return -1;
    int rc = 0;
    char *line;
    while (!rc && (line = reader_next(&r))) {
        const char *parts[2] = {line, NULL};
        json_t *o = NULL;
        if (line[0] == '{') {
            json_error_t je;
            o = json_loads(line, 0, &je);
            if (!o) {
                rc = sh_errf(err, "%s:%d: malformed JSON: %s", path, r.no, je.text);
                break;
            }
            parts[0] = json_string_value(json_object_get(o, "prompt"));
            parts[1] = json_string_value(json_object_get(o, "completion"));
            if (!parts[0] || !parts[1]) rc = sh_errf(err, "%s:%d: a JSON line needs \"prompt\" and \"completion\"", path, r.no);
        }
        for (int k = 0; !rc && k < 2 && parts[k]; k++) {
            char **nt = realloc(*texts, (*n + 1) * sizeof *nt);
            if (!nt || !(nt[*n] = strdup(parts[k]))) {
                if (nt) *texts = nt;
                rc = sh_errf(err, "out of memory");
                break;
            }
            *texts = nt;
            (*n)++;
        }
        json_decref(o);
    }
    reader_close(&r);
    return rc;
}

/* ============================================================ vocabulary pruning ===== */

int tdata_vocab_keep(const char *const *paths, int n_paths, const tok_vocab *v, int32_t **map,
                     int *n_kept, sh_err *err) {
    const int32_t nv = tok_n_tokens(v);
    uint8_t *keep = calloc((size_t)nv, 1);
    int32_t *m = malloc((size_t)nv * sizeof *m);
    if (!keep || !m) {
        free(keep), free(m);
        return sh_errf(err, "out of memory");
    }
    /* special tokens and every single-character piece ("a" and "\u2581a") */
    for (int32_t i = 0; i < nv; i++) {
        size_t len;
        const char *t = tok_token_text(v, i, &len);
        unsigned at = tok_token_attr(v, i);
        if (at & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN | TOK_ATTR_USER_DEFINED)) keep[i] = 1;
        size_t off = len >= 3 && !memcmp(t, "\xe2\x96\x81", 3) ? 3 : 0;
        uint32_t cp;
        if (len > off && tok_u_decode((const uint8_t *)t + off, len - off, &cp) == len - off) keep[i] = 1;
    }
    int32_t ids_special[] = {tok_bos(v), tok_eos(v), tok_unk(v), tok_sep(v)};
    for (size_t k = 0; k < 4; k++)
        if (ids_special[k] >= 0) keep[ids_special[k]] = 1;
    tok_ids ids = {0};
    int rc = 0;
    for (int f = 0; !rc && f < n_paths; f++) {
        reader r;
        if (reader_open(&r, paths[f], err)) {
            rc = -1;
            break;
        }
        char *line;
        while (!rc && (line = reader_next(&r))) {
            json_error_t je;
            json_t *o = json_loads(line, 0, &je);
            const char *text = o ? json_string_value(json_object_get(o, "text")) : NULL;
            if (!text) {
                rc = sh_errf(err, "%s:%d: %s", paths[f], r.no, o ? "\"text\" is missing" : je.text);
            } else {
                ids.n = 0;
                if (tok_tokenize(v, text, strlen(text), true, true, &ids, err)) rc = -1;
                for (size_t i = 0; !rc && i < ids.n; i++) keep[ids.ids[i]] = 1;
            }
            json_decref(o);
        }
        reader_close(&r);
    }
    tok_ids_free(&ids);
    int k = 0;
    for (int32_t i = 0; i < nv; i++) m[i] = keep[i] ? k++ : -1;
    free(keep);
    if (rc) {
        free(m);
        return -1;
    }
    *map = m;
    *n_kept = k;
    return 0;
}
