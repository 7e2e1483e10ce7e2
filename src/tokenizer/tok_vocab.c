/*
 * tokenizer/tok_vocab — loading a vocabulary from GGUF: tokens, scores and attributes, merges,
 * special tokens (by id keys and by text), byte tables, and the small accessors of
 * tokenizer.h. The algorithms that use it are in tokenizer.c; the layout is tok_int.h.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_int.h"
#include "tokenizer/tok_pretok.h"
#include "tokenizer/tok_unicode.h"

/* ============================================================ the vocabulary ===== */

int32_t tok_find(const tok_vocab *v, const char *s, size_t len) { return tokv_find_token(v, s, len); }

/* Inserts id under its text; a later token with the same text replaces an earlier one (the
 * map in llama.cpp is filled in id order with assignment). */
static void insert_token(tok_vocab *v, int32_t id) {
    const char *s = v->text + v->off[id];
    size_t len = v->len[id];
    uint64_t h = tokv_hash_bytes(s, len);
    for (size_t i = h & v->th_mask;; i = (i + 1) & v->th_mask) {
        uint32_t e = v->th[i];
        if (!e) {
            v->th[i] = (uint32_t)id + 1;
            return;
        }
        int32_t o = (int32_t)e - 1;
        if (v->len[o] == len && memcmp(v->text + v->off[o], s, len) == 0) {
            v->th[i] = (uint32_t)id + 1;
            return;
        }
    }
}

static const char *gstr_dup(gguf_str s) {
    char *p = malloc(s.len + 1);
    if (!p) return NULL;
    memcpy(p, s.ptr, s.len);
    p[s.len] = 0;
    return p;
}

/* GPT-2's byte <-> unicode table: printable Latin-1 bytes map to themselves, the other 68
 * bytes to U+0100.. in byte order. */
static void init_byte_level(tok_vocab *v) {
    int next = 0;
    for (int i = 0; i < 0x144; i++) v->byte_dec[i] = -1;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        uint32_t cp = keep ? (uint32_t)b : 256u + (uint32_t)next++;
        char u[4];
        size_t n = tok_u_encode(cp, u);
        memcpy(v->byte_enc[b], u, n);
        v->byte_enc_len[b] = (uint8_t)n;
        v->byte_dec[cp] = (int16_t)b;
    }
}

static void set_attr_by_text(tok_vocab *v, const char *t, unsigned bit, bool on) {
    int32_t id = tokv_find_token(v, t, strlen(t));
    if (id < 0) return;
    v->attr[id] = (uint16_t)(on ? (v->attr[id] | bit) : (v->attr[id] & ~bit));
}

static int in_list(const char *s, size_t n, const char *const *list) {
    for (; *list; list++)
        if (strlen(*list) == n && memcmp(*list, s, n) == 0) return 1;
    return 0;
}

/* Marks the tokens llama.cpp recognises by their text: end-of-generation and fill-in-the-
 * middle tokens become control tokens (its "control-looking token ... will be overridden"
 * rule), which changes both special-token splitting and detokenization. */
static void detect_special_by_text(tok_vocab *v, bool have_fim[6]) {
    static const char *const eot[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
        "<|endoftext|>", "<|end_of_text|>", "<EOT>", "_<EOT>",
        "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>", "<end_of_utterance>", NULL};
    static const char *const eog[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>",
        "<|call|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>", "_<EOT>",
        "<|end_of_text|>", "<end_of_utterance>", "</s>", NULL};
    static const char *const fim[6][8] = {
        {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>",
         "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "begin\xEF\xBD\x9C>", "<PRE>", "\xE2\x96\x81<PRE>",
         "<|code_prefix|>", NULL},
        {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>",
         "<\xEF\xBD\x9C" "fim\xE2\x96\x81hole\xEF\xBD\x9C>", "<SUF>", "\xE2\x96\x81<SUF>",
         "<|code_suffix|>", NULL},
        {"<|fim_middle|>", "<fim-middle>", "<fim_middle>",
         "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "end\xEF\xBD\x9C>", "<MID>", "\xE2\x96\x81<MID>",
         "<|code_middle|>", NULL},
        {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", NULL},
        {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", NULL},
        {"<|file_sep|>", NULL},
    };
    int32_t fim_id[6] = {-1, -1, -1, -1, -1, -1};
    for (int32_t id = 0; id < v->n; id++) {
        /* only the id the text look-up returns takes part (duplicate texts: the last one) */
        const char *t = v->text + v->off[id];
        size_t n = v->len[id];
        if (n < 3 || tokv_find_token(v, t, n) != id) continue;
        if (v->eot < 0 && in_list(t, n, eot)) {
            v->eot = id;
            v->attr[id] = TOK_ATTR_CONTROL;
        }
        if (v->eom < 0 && n == 10 && memcmp(t, "<|eom_id|>", 10) == 0) {
            v->eom = id;
            v->attr[id] = TOK_ATTR_CONTROL;
        }
        for (int k = 0; k < 6; k++)
            if (!have_fim[k] && fim_id[k] < 0 && in_list(t, n, fim[k])) {
                fim_id[k] = id;
                if (!(v->attr[id] & TOK_ATTR_CONTROL)) v->attr[id] = TOK_ATTR_CONTROL;
            }
        if (in_list(t, n, eog)) {
            v->eog[id] = 1;
            if (!(v->attr[id] & TOK_ATTR_CONTROL)) v->attr[id] = TOK_ATTR_CONTROL;
        }
    }
    for (int k = 3; k < 6; k++)
        if (fim_id[k] >= 0) v->eog[fim_id[k]] = 1;
    /* gpt-oss: these are always rendered */
    static const char *const render[] = {"<|channel|>", "<|message|>", "<|start|>",
                                         "<|constrain|>", NULL};
    for (const char *const *r = render; *r; r++) {
        int32_t id = tokv_find_token(v, *r, strlen(*r));
        if (id >= 0) v->attr[id] = TOK_ATTR_USER_DEFINED;
    }
    if (v->eos >= 0) v->eog[v->eos] = 1;
    if (v->eot >= 0) v->eog[v->eot] = 1;
    if (v->eom >= 0) v->eog[v->eom] = 1;
    /* o200k_harmony: <|end|> is not end-of-generation when <|return|> and <|call|> are */
    int32_t ret = tokv_find_token(v, "<|return|>", 10), call = tokv_find_token(v, "<|call|>", 8),
            end = tokv_find_token(v, "<|end|>", 7);
    if (ret >= 0 && call >= 0 && end >= 0 && v->eog[ret] && v->eog[call] && v->eog[end]) {
        v->eog[end] = 0;
        v->attr[end] = TOK_ATTR_USER_DEFINED;
    }
}

static int cmp_special(const void *a, const void *b, void *ctx) {
    const tok_vocab *v = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (v->len[x] != v->len[y]) return v->len[x] > v->len[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

static bool get_id_key(const gguf_ctx *g, const char *key, int32_t n, int32_t *id) {
    uint64_t x;
    if (!gguf_get_u64(g, key, &x)) {
        int64_t s;
        if (!gguf_get_i64(g, key, &s) || s < 0) return false;
        x = (uint64_t)s;
    }
    if (x >= (uint64_t)n) return false; /* llama.cpp: "bad special token", default kept */
    *id = (int32_t)x;
    return true;
}

tok_vocab *tok_vocab_from_gguf(const gguf_ctx *g, sh_err *err) {
    const char *path = g->path ? g->path : "<gguf>";
    gguf_str model;
    if (!gguf_get_str(g, "tokenizer.ggml.model", &model)) {
        sh_errf(err, "%s: tokenizer.ggml.model: missing (not a model with a tokenizer?)", path);
        return NULL;
    }
    tok_vocab *v = calloc(1, sizeof *v);
    if (!v) goto oom;
    if (gguf_str_eq(model, "llama")) v->type = TOK_SPM;
    else if (gguf_str_eq(model, "gpt2")) v->type = TOK_BPE;
    else if (gguf_str_eq(model, "bert")) v->type = TOK_WPM;
    else {
        sh_errf(err, "%s: tokenizer.ggml.model: '%.*s' is not supported (llama, gpt2, bert)", path,
                (int)(model.len > 64 ? 64 : model.len), model.ptr);
        free(v);
        return NULL;
    }

    const gguf_arr *toks = gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_STR);
    if (!toks || toks->n == 0 || toks->n > 0x7FFFFFF0u) {
        sh_errf(err, "%s: tokenizer.ggml.tokens: missing, empty or not an array of strings", path);
        tok_vocab_free(v);
        return NULL;
    }
    v->n = (int32_t)toks->n;
    const gguf_arr *scores = gguf_get_arr(g, "tokenizer.ggml.scores", GGUF_TYPE_COUNT);
    const gguf_arr *types = gguf_get_arr(g, "tokenizer.ggml.token_type", GGUF_TYPE_COUNT);
    if (scores && scores->n != toks->n) {
        sh_errf(err, "%s: tokenizer.ggml.scores: %llu entries for %d tokens", path,
                (unsigned long long)scores->n, v->n);
        tok_vocab_free(v);
        return NULL;
    }
    if (types && types->n != toks->n) {
        sh_errf(err, "%s: tokenizer.ggml.token_type: %llu entries for %d tokens", path,
                (unsigned long long)types->n, v->n);
        tok_vocab_free(v);
        return NULL;
    }

    /* texts: empty tokens are renamed "[EMPTY_<i>]" as llama.cpp does */
    size_t total = 0;
    for (int32_t i = 0; i < v->n; i++) total += toks->items[i].v.str.len ? toks->items[i].v.str.len : 24;
    if (total >= UINT32_MAX) { /* offsets are 32-bit */
        sh_errf(err, "%s: tokenizer.ggml.tokens: %zu bytes of token text is too much", path, total);
        tok_vocab_free(v);
        return NULL;
    }
    v->text = malloc(total + 1);
    v->off = malloc(sizeof *v->off * (size_t)v->n);
    v->len = malloc(sizeof *v->len * (size_t)v->n);
    v->score = malloc(sizeof *v->score * (size_t)v->n);
    v->attr = malloc(sizeof *v->attr * (size_t)v->n);
    v->eog = calloc((size_t)v->n, 1);
    size_t thn = tokv_pow2_at_least((size_t)v->n * 2);
    v->th = calloc(thn, sizeof *v->th);
    v->th_mask = thn - 1;
    if (!v->text || !v->off || !v->len || !v->score || !v->attr || !v->eog || !v->th) goto oom;
    size_t pos = 0;
    for (int32_t i = 0; i < v->n; i++) {
        gguf_str s = toks->items[i].v.str;
        v->off[i] = (uint32_t)pos;
        if (s.len) {
            memcpy(v->text + pos, s.ptr, s.len);
            v->len[i] = (uint32_t)s.len;
        } else {
            v->len[i] = (uint32_t)snprintf(v->text + pos, 24, "[EMPTY_%d]", (int)i);
        }
        pos += v->len[i];
        if (v->len[i] > (uint32_t)v->max_token_len) v->max_token_len = (int)v->len[i];
        double sc = 0;
        if (scores) gguf_arr_f64(scores, (uint64_t)i, &sc);
        v->score[i] = (float)sc;
        int64_t ty = 1;
        if (types) gguf_arr_i64(types, (uint64_t)i, &ty);
        switch (ty) {
        case 1: v->attr[i] = TOK_ATTR_NORMAL; break;
        case 2: v->attr[i] = TOK_ATTR_UNKNOWN; break;
        case 3: v->attr[i] = TOK_ATTR_CONTROL; break;
        case 4: v->attr[i] = TOK_ATTR_USER_DEFINED; break;
        case 5: v->attr[i] = TOK_ATTR_UNUSED; break;
        case 6: v->attr[i] = TOK_ATTR_BYTE; break;
        default: v->attr[i] = 0; break;
        }
        insert_token(v, i);
    }

    /* defaults by model, then the file's keys */
    v->eot = v->eom = v->sep = v->pad = -1;
    gguf_str pre = {0};
    bool have_pre = gguf_get_str(g, "tokenizer.ggml.pre", &pre);
    switch (v->type) {
    case TOK_SPM:
        v->bos = 1, v->eos = 2, v->unk = 0;
        v->add_space_prefix = true, v->add_bos = true;
        break;
    case TOK_WPM:
        v->bos = 101, v->eos = -1, v->unk = 100, v->sep = 102, v->pad = 0;
        v->add_bos = true, v->add_sep = true, v->clean_spaces = true;
        break;
    case TOK_BPE: {
        v->bos = 11, v->eos = 11, v->unk = -1;
        v->clean_spaces = true;
        static const char *const llama3[] = {"llama3", "llama-v3", "llama-bpe", "falcon3",
            "falcon-h1", "pixtral", "midm-2.0", "lfm2", "dbrx", "smaug-bpe", NULL};
        static const char *const gpt2[] = {"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat",
            "jina-v2-es", "jina-v2-de", "a.x-4.0", "mellum", "jina-v1-en", "jina-v2-code",
            "roberta-bpe", "mpt", "olmo", "jais", "exaone4", "trillion", "granite-docling", NULL};
        static const char *const qwen2[] = {"qwen2", "deepseek-r1-qwen", "kormo", "stablelm2",
            "megrez", "hunyuan", NULL};
        static const char *const starcoder[] = {"starcoder", "refact", "command-r", "smollm",
            "codeshell", "exaone", "minerva-7b", NULL};
        static const char *const keep_spaces[] = {"deepseek-llm", "deepseek-coder", "command-r",
            "qwen2", "deepseek-r1-qwen", "kormo", "smollm", "trillion", "granite-docling",
            "hunyuan", NULL};
        const char *p = have_pre ? pre.ptr : "";
        size_t pn = have_pre ? pre.len : 0;
        v->pre = TOK_PRE_DEFAULT;
        if (in_list(p, pn, llama3)) {
            v->pre = TOK_PRE_LLAMA3;
            v->ignore_merges = true;
            v->add_bos = true;
        } else if (in_list(p, pn, gpt2)) v->pre = TOK_PRE_GPT2;
        else if (in_list(p, pn, qwen2)) v->pre = TOK_PRE_QWEN2;
        else if (in_list(p, pn, starcoder)) v->pre = TOK_PRE_STARCODER;
        else if (pn == 6 && !memcmp(p, "falcon", 6)) v->pre = TOK_PRE_FALCON;
        else if (pn == 12 && !memcmp(p, "deepseek-llm", 12)) v->pre = TOK_PRE_DEEPSEEK_LLM;
        else if (pn == 14 && !memcmp(p, "deepseek-coder", 14)) v->pre = TOK_PRE_DEEPSEEK_CODER;
        if (in_list(p, pn, keep_spaces)) v->clean_spaces = false;
        break;
    }
    }
    bool bflag;
    if (gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &bflag)) v->add_space_prefix = bflag;
    get_id_key(g, "tokenizer.ggml.bos_token_id", v->n, &v->bos);
    get_id_key(g, "tokenizer.ggml.eos_token_id", v->n, &v->eos);
    get_id_key(g, "tokenizer.ggml.eot_token_id", v->n, &v->eot);
    get_id_key(g, "tokenizer.ggml.eom_token_id", v->n, &v->eom);
    get_id_key(g, "tokenizer.ggml.unknown_token_id", v->n, &v->unk);
    get_id_key(g, "tokenizer.ggml.seperator_token_id", v->n, &v->sep);
    get_id_key(g, "tokenizer.ggml.padding_token_id", v->n, &v->pad);
    if (gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &bflag)) v->add_bos = bflag;
    if (gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &bflag)) v->add_eos = bflag;
    if (gguf_get_bool(g, "tokenizer.ggml.add_sep_token", &bflag)) v->add_sep = bflag;
    /* model defaults (e.g. BOS 11 for gpt2) may not exist in a small vocabulary */
    int32_t *ids[] = {&v->bos, &v->eos, &v->eot, &v->eom, &v->unk, &v->sep, &v->pad};
    for (size_t k = 0; k < sizeof ids / sizeof ids[0]; k++)
        if (*ids[k] >= v->n) *ids[k] = -1;
    bool have_fim[6];
    static const char *const fim_keys[6][2] = {
        {"tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.prefix_token_id"},
        {"tokenizer.ggml.fim_suf_token_id", "tokenizer.ggml.suffix_token_id"},
        {"tokenizer.ggml.fim_mid_token_id", "tokenizer.ggml.middle_token_id"},
        {"tokenizer.ggml.fim_pad_token_id", NULL},
        {"tokenizer.ggml.fim_rep_token_id", NULL},
        {"tokenizer.ggml.fim_sep_token_id", NULL}};
    for (int k = 0; k < 6; k++) {
        int32_t dummy;
        have_fim[k] = get_id_key(g, fim_keys[k][0], v->n, &dummy) ||
                      (fim_keys[k][1] && get_id_key(g, fim_keys[k][1], v->n, &dummy));
    }
    detect_special_by_text(v, have_fim);

    /* special tokens, longest first */
    v->special = malloc(sizeof *v->special * (size_t)v->n);
    if (!v->special) goto oom;
    for (int32_t i = 0; i < v->n; i++)
        if (v->attr[i] & (TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNKNOWN))
            v->special[v->n_special++] = i;
    qsort_r(v->special, v->n_special, sizeof *v->special, cmp_special, v);
    v->sp_head = malloc(65536 * sizeof *v->sp_head);
    v->sp_next = malloc((v->n_special + 1) * sizeof *v->sp_next);
    if (!v->sp_head || !v->sp_next) goto oom;
    for (size_t i = 0; i < 65536; i++) v->sp_head[i] = -1;
    for (int i = 0; i < 256; i++) v->sp_head1[i] = -1;
    for (size_t k = v->n_special; k-- > 0;) {
        const uint8_t *t = (const uint8_t *)v->text + v->off[v->special[k]];
        int32_t *head = v->len[v->special[k]] == 1 ? &v->sp_head1[t[0]]
                                                   : &v->sp_head[(size_t)t[0] << 8 | t[1]];
        v->sp_next[k] = *head;
        *head = (int32_t)k;
    }

    /* per-model attributes llama.cpp sets by name */
    {
        gguf_str name = {0}, arch = {0};
        char lname[256] = "", larch[128] = "", lpre[128] = "";
        if (gguf_get_str(g, "general.name", &name))
            for (size_t i = 0; i < name.len && i < sizeof lname - 1; i++)
                lname[i] = (char)tolower((unsigned char)name.ptr[i]), lname[i + 1] = 0;
        if (gguf_get_str(g, "general.architecture", &arch))
            snprintf(larch, sizeof larch, "%.*s", (int)(arch.len > 100 ? 100 : arch.len), arch.ptr);
        if (have_pre) snprintf(lpre, sizeof lpre, "%.*s", (int)(pre.len > 100 ? 100 : pre.len), pre.ptr);
        if (strstr(lpre, "jina-v2-de") || strstr(lpre, "jina-v2-es") || strstr(lpre, "jina-v2-code") ||
            strstr(larch, "nomic-bert-moe") || strstr(larch, "jina-bert-v3")) {
            set_attr_by_text(v, "<mask>", TOK_ATTR_LSTRIP, true);
        } else if (strstr(lname, "phi-3") || strstr(lname, "phi3")) {
            for (size_t i = 0; i < v->n_special; i++) v->attr[v->special[i]] |= TOK_ATTR_RSTRIP;
            set_attr_by_text(v, "</s>", TOK_ATTR_RSTRIP, true);
            set_attr_by_text(v, "<unk>", TOK_ATTR_RSTRIP, false);
            set_attr_by_text(v, "<s>", TOK_ATTR_RSTRIP, false);
            set_attr_by_text(v, "<|endoftext|>", TOK_ATTR_RSTRIP, false);
        }
    }

    /* may SPM merging be cut before each run of U+2581? */
    v->spm_split_ok = true;
    for (int32_t i = 0; i < v->n && v->spm_split_ok; i++) {
        const char *t = v->text + v->off[i];
        for (size_t k = 1; k + 3 <= v->len[i]; k++)
            if (!memcmp(t + k, "\xE2\x96\x81", 3) && (k < 3 || memcmp(t + k - 3, "\xE2\x96\x81", 3))) {
                v->spm_split_ok = false;
                break;
            }
    }

    /* byte tokens */
    for (int b = 0; b < 256; b++) {
        char hx[8];
        snprintf(hx, sizeof hx, "<0x%02X>", b);
        v->byte_tok[b] = tokv_find_token(v, hx, 6);
        if (v->byte_tok[b] < 0) {
            char c = (char)b;
            v->byte_tok[b] = tokv_find_token(v, &c, 1);
        }
    }
    init_byte_level(v);
    for (int b = 0; b < 256; b++) v->byte_sym[b] = tokv_find_token(v, v->byte_enc[b], v->byte_enc_len[b]);

    /* BPE merges: "left right", split at the first space after the first byte */
    if (v->type == TOK_BPE) {
        const gguf_arr *mg = gguf_get_arr(g, "tokenizer.ggml.merges", GGUF_STR);
        if (!mg) {
            sh_errf(err, "%s: tokenizer.ggml.merges: missing (needed by a gpt2 tokenizer)", path);
            tok_vocab_free(v);
            return NULL;
        }
        size_t cap = tokv_pow2_at_least((size_t)mg->n * 2);
        v->mid = malloc(cap * sizeof *v->mid);
        size_t mtotal = 0;
        for (uint64_t i = 0; i < mg->n; i++) mtotal += mg->items[i].v.str.len;
        if (mtotal >= UINT32_MAX || mg->n >= INT32_MAX) {
            sh_errf(err, "%s: tokenizer.ggml.merges: too large (%llu merges)", path,
                    (unsigned long long)mg->n);
            tok_vocab_free(v);
            return NULL;
        }
        v->mtext = malloc(mtotal + 1);
        v->mstr = malloc(sizeof *v->mstr * (mg->n ? mg->n : 1));
        if (!v->mid || !v->mtext || !v->mstr) goto oom;
        for (size_t i = 0; i < cap; i++) v->mid[i].l = INT32_MIN;
        v->mid_mask = cap - 1;
        size_t mpos = 0;
        char *tmp = NULL;
        size_t tmpcap = 0;
        for (uint64_t i = 0; i < mg->n; i++) {
            gguf_str s = mg->items[i].v.str;
            const char *sp = s.len > 1 ? memchr(s.ptr + 1, ' ', s.len - 1) : NULL;
            if (!sp) continue; /* llama.cpp stores ("", "") which never matches */
            size_t ll = (size_t)(sp - s.ptr), rl = s.len - ll - 1;
            if (ll + rl > tmpcap) {
                tmpcap = (ll + rl) * 2 + 64;
                char *nt = realloc(tmp, tmpcap);
                if (!nt) {
                    free(tmp);
                    goto oom;
                }
                tmp = nt;
            }
            memcpy(tmp, s.ptr, ll);
            memcpy(tmp + ll, sp + 1, rl);
            int32_t merged = tokv_find_token(v, tmp, ll + rl);
            int32_t l = tokv_find_token(v, s.ptr, ll), r = tokv_find_token(v, sp + 1, rl);
            if (l >= 0 && r >= 0) {
                if (tokv_find_merge_id(v, l, r)) continue; /* first rank wins */
                for (size_t k = tokv_hash_pair(l, r) & v->mid_mask;; k = (k + 1) & v->mid_mask)
                    if (v->mid[k].l == INT32_MIN) {
                        v->mid[k] = (merge_id){l, r, (int32_t)i, merged};
                        break;
                    }
            } else {
                merge_str *m = &v->mstr[v->n_mstr++];
                memcpy(v->mtext + mpos, s.ptr, ll);
                memcpy(v->mtext + mpos + ll, sp + 1, rl);
                *m = (merge_str){(uint32_t)mpos, (uint32_t)ll, (uint32_t)(mpos + ll), (uint32_t)rl,
                                 (int32_t)i, merged};
                mpos += ll + rl;
            }
        }
        free(tmp);
    }

    gguf_str tmpl;
    if (gguf_get_str(g, "tokenizer.chat_template", &tmpl)) {
        v->chat_template = (char *)gstr_dup(tmpl);
        if (!v->chat_template) goto oom;
    }
    if (gguf_get_str(g, "tokenizer.chat_template.rerank", &tmpl)) {
        v->rerank_template = (char *)gstr_dup(tmpl);
        if (!v->rerank_template) goto oom;
    }
    if (tokv_build_pieces(v)) goto oom;
    return v;
oom:
    sh_errf(err, "%s: tokenizer: out of memory", path);
    tok_vocab_free(v);
    return NULL;
}

tok_vocab *tok_vocab_load(const char *path, sh_err *err) {
    gguf_ctx *g = gguf_open(path, err);
    if (!g) return NULL;
    tok_vocab *v = tok_vocab_from_gguf(g, err);
    gguf_free(g);
    return v;
}

void tok_vocab_free(tok_vocab *v) {
    if (!v) return;
    free(v->text);
    free(v->off);
    free(v->len);
    free(v->score);
    free(v->attr);
    free(v->th);
    free(v->mid);
    free(v->mstr);
    free(v->mtext);
    free(v->eog);
    free(v->special);
    free(v->sp_head);
    free(v->sp_next);
    free(v->pieces);
    free(v->poff);
    free(v->plen);
    free(v->chat_template);
    free(v->rerank_template);
    free(v);
}

tok_type tok_vocab_type(const tok_vocab *v) { return v->type; }
tok_pre tok_vocab_pre(const tok_vocab *v) { return v->pre; }
int32_t tok_n_tokens(const tok_vocab *v) { return v->n; }
int32_t tok_bos(const tok_vocab *v) { return v->bos; }
int32_t tok_eos(const tok_vocab *v) { return v->eos; }
int32_t tok_eot(const tok_vocab *v) { return v->eot; }
int32_t tok_unk(const tok_vocab *v) { return v->unk; }
bool tok_add_bos(const tok_vocab *v) { return v->add_bos; }
bool tok_add_eos(const tok_vocab *v) { return v->add_eos; }
bool tok_is_eog(const tok_vocab *v, int32_t id) { return id >= 0 && id < v->n && v->eog[id]; }
const char *tok_chat_template(const tok_vocab *v) { return v->chat_template; }
const char *tok_rerank_template(const tok_vocab *v) { return v->rerank_template; }
int32_t tok_sep(const tok_vocab *v) { return v->sep; }
bool tok_add_sep(const tok_vocab *v) { return v->add_sep; }

const char *tok_token_text(const tok_vocab *v, int32_t id, size_t *len) {
    if (id < 0 || id >= v->n) return NULL;
    if (len) *len = v->len[id];
    return v->text + v->off[id];
}

unsigned tok_token_attr(const tok_vocab *v, int32_t id) {
    return (id < 0 || id >= v->n) ? 0 : v->attr[id];
}

