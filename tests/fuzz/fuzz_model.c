/*
 * libFuzzer target: a model file as the loaders see it. The bytes are parsed as GGUF, then
 * loaded as an encoder (bert / nomic-bert, model/encoder.h) or a decoder (llama / qwen2,
 * model/model.h) with every check the loaders make; a file that loads and is small enough is
 * run: the encoder on a short input with every head and pooled output it has, the decoder
 * for one token, and its tokenizer over a short text. Seeds: tiny generated models
 * (tests/fuzz/corpus/model).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "engine/encode.h"
#include "engine/engine.h"
#include "gguf/gguf.h"
#include "model/encoder.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

static volatile float sink;

static void run_encoder(encoder_model *m) {
    const encoder_hparams *hp = &m->hp;
    if ((int64_t)hp->dim * hp->n_layers * (hp->ffn + hp->dim) > (1 << 22) || hp->n_ctx_train < 2) return;
    encode_params ep;
    encode_params_default(&ep);
    ep.n_threads = 1;
    ep.n_tokens = hp->n_ctx_train < 64 ? hp->n_ctx_train : 64;
    if (hp->n_ctx_train > 4096) return;
    encode_ctx *e = encode_init(m, &ep, NULL);
    if (!e) return;
    int32_t tok[4] = {0, 1 % hp->n_vocab, 2 % hp->n_vocab, 3 % hp->n_vocab};
    int len[2] = {2, 2};
    unsigned want = (m->seq_head.n_out ? ENCODE_SEQ_HEAD : 0) | (m->tok_head.n_out ? ENCODE_TOK_HEAD : 0);
    if (encode_pooling(e) != ENCODER_POOL_NONE) want |= ENCODE_POOLED;
    encode_batch b = {.n_seq = 2, .tokens = tok, .n_tokens = len, .want = want};
    if (encode_run(e, &b, NULL) == 0) {
        sink += encode_hidden(e, 3)[0];
        if (want & ENCODE_POOLED) sink += encode_pooled(e, 1)[0];
        if (want & ENCODE_SEQ_HEAD) sink += encode_seq_logits(e, 1)[0];
        if (want & ENCODE_TOK_HEAD) sink += encode_tok_logits(e, 3)[0];
    }
    encode_free(e);
}

static void run_decoder(model *m) {
    const model_hparams *hp = &m->hp;
    if ((int64_t)hp->dim * hp->n_layers * (hp->ffn + hp->dim) > (1 << 22) ||
        (int64_t)hp->n_vocab * hp->dim > (1 << 22))
        return;
    engine_params ep;
    engine_params_default(&ep);
    ep.n_ctx = 8;
    ep.n_threads = 1;
    engine *e = engine_init(m, &ep, NULL);
    if (!e) return;
    int32_t tok = 0, pos = 0;
    engine_batch b = {.n = 1, .token = &tok, .pos = &pos};
    if (engine_decode(e, &b, NULL) == 0) sink += engine_logits(e, 0)[0];
    engine_free(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    sh_err err;
    gguf_ctx *g = gguf_open_mem(data, size, "fuzz.gguf", &err);
    if (!g) return 0;
    tok_vocab *v = tok_vocab_from_gguf(g, NULL);
    if (v) {
        tok_ids ids = {0};
        tok_spans sp = {0};
        if (tok_vocab_type(v) == TOK_WPM) tok_tokenize_spans(v, "the lights, on!", 15, true, true, &ids, &sp, NULL);
        else tok_tokenize(v, "the lights, on!", 15, true, true, &ids, NULL);
        tok_ids_free(&ids);
        tok_spans_free(&sp);
    }
    if (encoder_is_encoder_file(g)) {
        encoder_params p = {.no_repack = true};
        encoder_model *m = encoder_from_gguf(g, &p, &err);
        if (m) {
            run_encoder(m);
            encoder_free(m); /* owns g */
        } else {
            gguf_free(g);
        }
    } else {
        model_params p = {.no_repack = true};
        model *m = model_from_gguf_ex(g, &p, &err);
        if (m) {
            run_decoder(m);
            model_free(m);
        } else {
            gguf_free(g);
        }
    }
    tok_vocab_free(v);
    return 0;
}
