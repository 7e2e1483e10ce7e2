/*
 * train/tsave — trained models and checkpoints as GGUF files.
 *
 * A model file is what shoal serve loads (and llama.cpp, for the layouts it knows): the
 * architecture's keys, the tokenizer's keys (copied from the vocabulary file, or remapped to a
 * pruned vocabulary), label names, and every parameter in f32 under its GGUF name. A
 * checkpoint is a model file plus the AdamW moments ("train.m." / "train.v." + name) and the
 * trainer's position ("train.*" keys): --resume continues from it bit for bit.
 */
#ifndef SHOAL_TRAIN_TSAVE_H
#define SHOAL_TRAIN_TSAVE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/err.h"
#include "gguf/gguf.h"
#include "gguf/gguf_writer.h"
#include "train/params.h"

/* Copies every tokenizer.* key of src. With map (old id -> new id or -1, n_old entries), the
 * per-token arrays keep only mapped tokens, in new-id order, and token-id keys are remapped. */
int tsave_tokenizer(gguf_writer *w, const gguf_ctx *src, const int32_t *map, int n_new, sh_err *err);

/* Adds every parameter as an f32 tensor (skip: a name prefix left out, or NULL); with
 * optimizer, the moments too. */
void tsave_params(gguf_writer *w, const tparams *p, const char *skip, bool optimizer);

/* Loads into p every tensor of g that has a parameter of the same name and shape (converted to
 * f32); with optimizer also "train.m." / "train.v." moments. Counts what was loaded / skipped. */
int tsave_load_params(tparams *p, const gguf_ctx *g, bool optimizer, int *loaded, sh_err *err);

#endif
