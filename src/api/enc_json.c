/*
 * api/enc_json — see enc_json.h.
 */
#include "api/enc_json.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

char *encj_base64_f32(const float *v, int n) {
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const size_t len = (size_t)n * 4;
    char *out = malloc((len + 2) / 3 * 4 + 1), *o = out;
    if (!out) return NULL;
    uint8_t *b = malloc(len ? len : 1);
    if (!b) {
        free(out);
        return NULL;
    }
    for (int i = 0; i < n; i++) { /* little-endian, whatever the host */
        uint32_t u;
        memcpy(&u, &v[i], 4);
        for (int k = 0; k < 4; k++) b[4 * (size_t)i + k] = (uint8_t)(u >> (8 * k));
    }
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t w = (uint32_t)b[i] << 16 | (uint32_t)b[i + 1] << 8 | b[i + 2];
        *o++ = tbl[w >> 18], *o++ = tbl[(w >> 12) & 63], *o++ = tbl[(w >> 6) & 63], *o++ = tbl[w & 63];
    }
    if (len - i == 1) {
        uint32_t w = (uint32_t)b[i] << 16;
        *o++ = tbl[w >> 18], *o++ = tbl[(w >> 12) & 63], *o++ = '=', *o++ = '=';
    } else if (len - i == 2) {
        uint32_t w = (uint32_t)b[i] << 16 | (uint32_t)b[i + 1] << 8;
        *o++ = tbl[w >> 18], *o++ = tbl[(w >> 12) & 63], *o++ = tbl[(w >> 6) & 63], *o++ = '=';
    }
    *o = 0;
    free(b);
    return out;
}

json_t *encj_embedding(int index, const float *v, int dim, bool base64) {
    json_t *e;
    if (base64) {
        char *s = encj_base64_f32(v, dim);
        e = s ? json_string(s) : NULL;
        free(s);
    } else {
        e = json_array();
        for (int k = 0; e && k < dim; k++) json_array_append_new(e, json_real(v[k]));
    }
    if (!e) return NULL;
    return json_pack("{s:s, s:i, s:o}", "object", "embedding", "index", index, "embedding", e);
}

json_t *encj_usage(int prompt_tokens) {
    return json_pack("{s:i, s:i}", "prompt_tokens", prompt_tokens, "total_tokens", prompt_tokens);
}

json_t *encj_classify_item(int index, const char *const *labels, const float *probs,
                           int n_labels, const nlu_entities *ents) {
    json_t *all = json_array(), *el = json_array();
    int best = n_labels ? nlu_argmax(probs, n_labels) : -1;
    /* labels by score, highest first (selection: label sets are small) */
    char *used = calloc((size_t)(n_labels ? n_labels : 1), 1);
    for (int k = 0; used && k < n_labels; k++) {
        int b = -1;
        for (int i = 0; i < n_labels; i++)
            if (!used[i] && (b < 0 || probs[i] > probs[b])) b = i;
        used[b] = 1;
        json_array_append_new(all, json_pack("{s:s, s:f}", "label", labels[b], "score", (double)probs[b]));
    }
    free(used);
    for (size_t i = 0; ents && i < ents->n; i++) {
        const nlu_entity *x = &ents->v[i];
        json_t *t = json_stringn(x->text, x->byte_end - x->byte_start);
        json_array_append_new(el, json_pack("{s:s, s:o, s:I, s:I, s:f}", "label", x->label, "text",
                                            t ? t : json_string(""), "start", (json_int_t)x->start,
                                            "end", (json_int_t)x->end, "score", (double)x->score));
    }
    return json_pack("{s:i, s:o, s:o, s:o, s:o}", "index", index, "label",
                     best >= 0 ? json_string(labels[best]) : json_null(), "score",
                     best >= 0 ? json_real(probs[best]) : json_null(), "labels", all, "entities", el);
}

json_t *encj_rerank(const oai_request *r, const float *scores, const char *model,
                    int prompt_tokens) {
    const size_t n = r->n_documents;
    size_t *order = malloc(n * sizeof *order);
    if (!order) return NULL;
    for (size_t i = 0; i < n; i++) order[i] = i;
    /* stable insertion sort by score, highest first (equal scores keep document order) */
    for (size_t i = 1; i < n; i++) {
        size_t x = order[i], j = i;
        while (j > 0 && scores[order[j - 1]] < scores[x]) order[j] = order[j - 1], j--;
        order[j] = x;
    }
    size_t top = r->top_n > 0 && (size_t)r->top_n < n ? (size_t)r->top_n : n;
    json_t *res = json_array();
    for (size_t k = 0; k < top; k++) {
        const size_t i = order[k];
        json_t *item = json_pack("{s:I, s:f}", "index", (json_int_t)i,
                                 r->tei ? "score" : "relevance_score", (double)scores[i]);
        if (r->tei && r->return_text) json_object_set_new(item, "text", json_string(r->documents[i]));
        if (!r->tei && r->return_documents)
            json_object_set_new(item, "document", json_pack("{s:s}", "text", r->documents[i]));
        json_array_append_new(res, item);
    }
    free(order);
    if (r->tei) return res;
    return json_pack("{s:s, s:s, s:o, s:o}", "model", model, "object", "list", "usage",
                     encj_usage(prompt_tokens), "results", res);
}
