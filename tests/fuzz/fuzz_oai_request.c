/*
 * libFuzzer target: OpenAI request bodies. The first byte picks the endpoint (completions,
 * chat, embeddings, rerank, classify); the rest is the body. Accepted requests are checked for the invariants the
 * server relies on (one prompt form, counts matching arrays, values in range).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/oai_req.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    oai_kind kind = (oai_kind)(data[0] % OAI_KIND_COUNT);
    oai_request r;
    oai_error e;
    if (oai_parse_request(kind, (const char *)data + 1, size - 1, &r, &e) != 0) {
        char *b = oai_error_body(&e);
        if (!b || e.status < 400 || e.status > 599) __builtin_trap();
        free(b);
        return 0;
    }
    if (kind == OAI_COMPLETION && !!r.prompt == !!r.prompt_ids) __builtin_trap();
    if (kind == OAI_CHAT && (r.n_messages == 0 || !r.messages[r.n_messages - 1].content)) __builtin_trap();
    if ((kind == OAI_EMBEDDING || kind == OAI_CLASSIFY) && r.n_inputs == 0) __builtin_trap();
    if ((kind == OAI_EMBEDDING || kind == OAI_CLASSIFY) && !!r.inputs == !!r.input_ids) __builtin_trap();
    if (kind == OAI_CLASSIFY && r.input_ids) __builtin_trap();
    for (size_t i = 0; r.inputs && i < r.n_inputs; i++)
        if (!r.inputs[i] || !r.inputs[i][0]) __builtin_trap();
    for (size_t i = 0; r.input_ids && i < r.n_inputs; i++)
        if (!r.n_input_ids[i] || r.input_ids[i][r.n_input_ids[i] - 1] < 0) __builtin_trap();
    if (kind == OAI_RERANK && (!r.query || !r.n_documents || r.n_documents > OAI_MAX_INPUTS ||
                               !r.documents[r.n_documents - 1] || r.top_n < 0)) __builtin_trap();
    if (r.n_inputs > OAI_MAX_INPUTS) __builtin_trap();
    if (r.n_stop > OAI_MAX_STOP || r.temperature < 0 || r.temperature > 2 || r.top_p > 1) __builtin_trap();
    if (r.max_tokens == 0 || r.top_logprobs > 20) __builtin_trap();
    for (size_t i = 0; i < r.n_stop; i++)
        if (!r.stop[i][0]) __builtin_trap();
    oai_request_free(&r);
    return 0;
}
