/*
 * cluster/router_compose — the router's side of compositions (compose/compose.h): a
 * composition's call to a model name is a request like a client's, built by compose, checked
 * by the same edge parser and run through rt_forward (names, policies, failover, fallback, to
 * local engines and remote nodes alike), answered whole into a comp_answer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/router_int.h"
#include "compose/compose.h"

/* comp_ops.call: ctx is the client's http_request. */
static void internal_call(void *ud, void *ctx, const comp_call *c, comp_answer *out) {
    router *rt = ud;
    http_request *req = ctx;
    memset(out, 0, sizeof *out);
    oai_request r;
    oai_error e;
    json_t *doc = NULL;
    if (oai_parse_request_doc((oai_kind)c->kind, c->body, c->len, &r, &e, &doc)) {
        /* compose built a body the edge refuses: say so as the model's answer would */
        out->status = e.status;
        snprintf(out->error, sizeof out->error, "request to '%.60s' refused: %.160s", c->model, e.message);
        return;
    }
    http_response resp = {0};
    rt_call call = {.timeout_ms = c->timeout_ms, .backend = out->backend, .backend_n = sizeof out->backend};
    rt_forward(rt, c->kind, c->body, c->len, doc, &r, req, &resp, &call);
    oai_request_free(&r);
    if (resp.pull) {
        /* never asked for (compose strips "stream"); end it rather than leak it */
        if (resp.done) resp.done(resp.stream_ctx, true);
        out->status = 0;
        snprintf(out->error, sizeof out->error, "'%s' answered with a stream", c->model);
        free(resp.extra_headers);
        return;
    }
    out->status = resp.status;
    out->body = resp.body;
    out->len = resp.body_len;
    free(resp.extra_headers);
}

/* router_int.h */
int rt_compose_init(router *rt, sh_err *err) {
    bool any = false;
    for (int i = 0; i < rt->cfg->n_models; i++)
        any |= rt->cfg->models[i].policy > CCFG_POLICY_RULES;
    if (!any) return 0;
    comp_ops ops = {.call = internal_call, .ud = rt};
    rt->comp = comp_init(rt->cfg, &ops, rt->met, err);
    return rt->comp ? 0 : -1;
}

/* router_int.h */
void rt_compose_free(router *rt) {
    comp_free(rt->comp);
    rt->comp = NULL;
}
