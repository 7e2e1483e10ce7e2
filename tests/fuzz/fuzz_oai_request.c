/*
 * libFuzzer target: OpenAI request bodies. The first byte picks the endpoint (its value modulo
 * OAI_KIND_COUNT: '0' completions, '1' chat, '2' embeddings, '3' rerank, '4' classify,
 * '5' responses); the rest is the body. Accepted requests are checked for the invariants the
 * server relies on (one prompt form, counts matching arrays, values in range, well-formed
 * messages and tools, tool_choice_name among the tools); refused ones for a valid error body
 * with a 4xx/5xx status and a param that is valid UTF-8.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/oai_req.h"

static bool valid_name(const char *s) {
    size_t n = strlen(s);
    if (n < 1 || n > 64) return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
              s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

static void check_messages(const oai_request *r) {
    if (r->n_messages && !r->messages) __builtin_trap();
    for (size_t i = 0; i < r->n_messages; i++) {
        const oai_message *m = &r->messages[i];
        if (!m->role || !m->content) __builtin_trap();
        bool tool = !strcmp(m->role, "tool"), assistant = !strcmp(m->role, "assistant");
        if (!tool && strcmp(m->role, "user") && strcmp(m->role, "system") && strcmp(m->role, "developer") &&
            !assistant)
            __builtin_trap();
        if (tool != !!m->tool_call_id) __builtin_trap();
        if (m->n_tool_calls && (!assistant || !m->tool_calls)) __builtin_trap();
        for (size_t k = 0; k < m->n_tool_calls; k++)
            if (!m->tool_calls[k].id || !m->tool_calls[k].id[0] || !m->tool_calls[k].name ||
                !m->tool_calls[k].name[0] || !m->tool_calls[k].arguments)
                __builtin_trap();
    }
}

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
        if (r.messages || r.tools || r.model || r.n_messages || r.n_tools) __builtin_trap(); /* freed */
        return 0;
    }
    if (kind == OAI_COMPLETION && !!r.prompt == !!r.prompt_ids) __builtin_trap();
    if (kind == OAI_CHAT && (r.n_messages == 0 || !r.messages[r.n_messages - 1].content)) __builtin_trap();
    if (kind == OAI_RESPONSES && r.n_messages == 0 && !r.previous_response_id) __builtin_trap();
    if (kind == OAI_RESPONSES && r.instructions &&
        (!r.n_messages || strcmp(r.messages[0].role, "system") || strcmp(r.messages[0].content, r.instructions)))
        __builtin_trap();
    check_messages(&r);
    if ((kind == OAI_EMBEDDING || kind == OAI_CLASSIFY) && r.n_inputs == 0) __builtin_trap();
    if ((kind == OAI_EMBEDDING || kind == OAI_CLASSIFY) && !!r.inputs == !!r.input_ids) __builtin_trap();
    if (kind == OAI_CLASSIFY && r.input_ids) __builtin_trap();
    if (r.dimensions < 0 || (kind != OAI_EMBEDDING && r.dimensions)) __builtin_trap();
    for (size_t i = 0; r.inputs && i < r.n_inputs; i++)
        if (!r.inputs[i] || !r.inputs[i][0]) __builtin_trap();
    for (size_t i = 0; r.input_ids && i < r.n_inputs; i++)
        if (!r.n_input_ids[i] || r.input_ids[i][r.n_input_ids[i] - 1] < 0) __builtin_trap();
    if (kind == OAI_RERANK && (!r.query || !r.n_documents || r.n_documents > OAI_MAX_INPUTS ||
                               !r.documents[r.n_documents - 1] || r.top_n < 0)) __builtin_trap();
    if (r.n_inputs > OAI_MAX_INPUTS) __builtin_trap();
    if (r.n_stop > OAI_MAX_STOP || r.temperature < 0 || r.temperature > 2 || r.top_p > 1) __builtin_trap();
    if (r.max_tokens == 0 || r.top_logprobs > 20) __builtin_trap();
    if (r.max_tokens == 0 && !r.echo) __builtin_trap();
    for (size_t i = 0; i < r.n_stop; i++)
        if (!r.stop[i][0]) __builtin_trap();
    /* n, tools, tool_choice */
    if (r.n < 1 || r.n > OAI_MAX_N) __builtin_trap();
    if (r.n_tools > 128 || (r.n_tools && !r.tools)) __builtin_trap();
    if (r.n_tools && (kind == OAI_COMPLETION || kind == OAI_EMBEDDING || kind == OAI_RERANK || kind == OAI_CLASSIFY))
        __builtin_trap();
    for (size_t i = 0; i < r.n_tools; i++) {
        if (!r.tools[i].name || !valid_name(r.tools[i].name) || !r.tools[i].parameters ||
            r.tools[i].parameters[0] != '{')
            __builtin_trap();
        for (size_t k = 0; k < i; k++)
            if (!strcmp(r.tools[i].name, r.tools[k].name)) __builtin_trap();
    }
    if ((r.tool_choice == OAI_TOOL_FUNCTION) != !!r.tool_choice_name) __builtin_trap();
    if (r.tool_choice != OAI_TOOL_NONE && !r.n_tools) __builtin_trap();
    if (r.tool_choice_name) {
        bool found = false;
        for (size_t i = 0; i < r.n_tools; i++) found |= !strcmp(r.tools[i].name, r.tool_choice_name);
        if (!found) __builtin_trap();
    }
    /* structured output */
    if ((r.format == OAI_FORMAT_JSON_SCHEMA) != !!r.format_schema) __builtin_trap();
    if (r.format_schema && r.format_schema[0] != '{') __builtin_trap();
    if ((r.format == OAI_FORMAT_GRAMMAR) != !!r.grammar || (r.grammar && !r.grammar[0])) __builtin_trap();
    /* logit_bias */
    if (r.n_logit_bias > 1024 || (r.n_logit_bias && (!r.logit_bias || !r.logit_bias_ids))) __builtin_trap();
    for (size_t i = 0; i < r.n_logit_bias; i++)
        if (r.logit_bias_ids[i] < 0 || !(r.logit_bias[i] >= -100 && r.logit_bias[i] <= 100)) __builtin_trap();
    if (r.metadata && r.metadata[0] != '{') __builtin_trap();
    if (kind != OAI_RESPONSES && (r.store || r.previous_response_id || r.instructions)) __builtin_trap();
    oai_request_free(&r);
    return 0;
}
