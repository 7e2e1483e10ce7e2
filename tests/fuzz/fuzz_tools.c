/*
 * libFuzzer target: tool calls (api/tools). The first byte picks what is fuzzed:
 *   even — the rest is a model's output, parsed as calls in the hermes (byte 0 bit 1 clear) or
 *          llama3 format: every call found must have a name and arguments that are a JSON
 *          object;
 *   odd  — the rest is a chat request body; when it parses, its tool plan is built (messages
 *          rewritten, every function's schema compiled into the calls' grammar), and the
 *          grammar it gives must compile.
 */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/oai_req.h"
#include "api/tools.h"
#include "grammar/grammar.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const char *rest = (const char *)data + 1;
    size_t n = size - 1;
    if (!(data[0] & 1)) {
        oai_tools_plan p = {.fmt = data[0] & 2 ? OAI_TOOLFMT_LLAMA3 : OAI_TOOLFMT_HERMES};
        oai_tool_call *calls = NULL;
        size_t nc = 0;
        int rc = oai_tools_parse(&p, rest, n, &calls, &nc);
        if (rc == 1) {
            if (nc == 0) __builtin_trap();
            for (size_t i = 0; i < nc; i++) {
                if (!calls[i].name || !calls[i].id || !calls[i].arguments) __builtin_trap();
                json_t *a = json_loads(calls[i].arguments, 0, NULL);
                if (!json_is_object(a)) __builtin_trap();
                json_decref(a);
            }
        } else if (calls || nc) {
            __builtin_trap();
        }
        oai_tool_calls_free(calls, nc);
        (void)oai_tools_may_open(&p, rest, n);
        return 0;
    }
    oai_request r;
    oai_error e;
    if (oai_parse_request(OAI_CHAT, rest, n, &r, &e)) return 0;
    oai_tools_plan p;
    for (int fam = 0; fam < 2; fam++) {
        if (oai_tools_plan_init(&r, fam ? TOK_CHAT_LLAMA3 : TOK_CHAT_CHATML, &p, &e) == 0) {
            if (p.calls) {
                if (!p.gbnf) __builtin_trap();
                sh_err err = {{0}};
                gram *g = gram_from_gbnf(p.gbnf, strlen(p.gbnf), &err);
                if (!g) __builtin_trap(); /* the plan's own grammar always compiles */
                gram_free(g);
            }
            for (size_t i = 0; i < p.n_msgs; i++)
                if (!p.msgs[i].role || !p.msgs[i].content) __builtin_trap();
            oai_tools_plan_free(&p);
        } else if (e.status < 400 || e.status > 599) {
            __builtin_trap();
        }
    }
    oai_request_free(&r);
    return 0;
}
