/*
 * api/enc_json — the JSON of encoder answers (embeddings, rerank, classify), built at the edge
 * from plain C results, for the server and the command line alike (docs/api.md).
 *
 * Every function returns a new jansson reference (the caller owns it), or NULL when memory
 * runs out.
 */
#ifndef SHOAL_API_ENC_JSON_H
#define SHOAL_API_ENC_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "api/oai_req.h"
#include "nlu/nlu.h"

struct json_t;

/* {"object": "embedding", "index": i, "embedding": [floats] | "base64 of little-endian
 * float32"} */
struct json_t *encj_embedding(int index, const float *v, int dim, bool base64);

/* The base64 (RFC 4648, padded) of n little-endian float32 values, malloc'd. */
char *encj_base64_f32(const float *v, int n);

/* One classify result: {"index", "label", "score", "labels": [{"label", "score"}, ...] sorted
 * by score, "entities": [{"label", "text", "start", "end", "score"}]}. n_labels 0: no
 * sequence head (label / score / labels are null / []); ents NULL: no token head (entities
 * []). */
struct json_t *encj_classify_item(int index, const char *const *labels, const float *probs,
                                  int n_labels, const nlu_entities *ents);

/* The rerank answer for r (oai_request of kind OAI_RERANK) with scores[i] of document i:
 * llama-server's {"model", "object": "list", "usage", "results": [{"index",
 * "relevance_score" (, "document": {"text"})}]} sorted by score and cut to top_n, or TEI's
 * bare array of {"index", "score" (, "text")} when r->tei. */
struct json_t *encj_rerank(const oai_request *r, const float *scores, const char *model,
                           int prompt_tokens);

/* {"prompt_tokens": n, "total_tokens": n} */
struct json_t *encj_usage(int prompt_tokens);

#endif
