/*
 * api/tools — see tools.h. The calls' grammar is GBNF text: each function's parameters schema
 * is compiled by the grammar engine, dumped back as GBNF with its rules renamed apart
 * ("t<i>-..."), and framed by the format's literals.
 */
#include "api/tools.h"

#include <ctype.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "core/strbuf.h"
#include "grammar/grammar.h"

#define INVALID "invalid_request_error"

/* ============================================================ formats ===== */

oai_toolfmt oai_toolfmt_of(tok_chat_tmpl family) {
    return family == TOK_CHAT_LLAMA3 ? OAI_TOOLFMT_LLAMA3 : OAI_TOOLFMT_HERMES;
}

const char *oai_toolfmt_name(oai_toolfmt f) { return f == OAI_TOOLFMT_LLAMA3 ? "llama3" : "hermes"; }

static const char *trigger_of(oai_toolfmt f) { return f == OAI_TOOLFMT_LLAMA3 ? "{" : "<tool_call>"; }

/* ============================================================ the plan ===== */

static char *own(oai_tools_plan *p, char *s) {
    if (!s) return NULL;
    if (p->n_owned == p->cap_owned) {
        size_t cap = p->cap_owned ? p->cap_owned * 2 : 8;
        char **o = realloc(p->owned, cap * sizeof *o);
        if (!o) {
            free(s);
            return NULL;
        }
        p->owned = o;
        p->cap_owned = cap;
    }
    p->owned[p->n_owned++] = s;
    return s;
}

void oai_tools_plan_free(oai_tools_plan *p) {
    if (!p) return;
    for (size_t i = 0; i < p->n_owned; i++) free(p->owned[i]);
    free(p->owned);
    free(p->msgs);
    free(p->gbnf);
    free(p->trigger);
    memset(p, 0, sizeof *p);
}

/* The tools the model may call: all, or the named one. */
static bool offered(const oai_request *r, size_t i) {
    return r->tool_choice != OAI_TOOL_FUNCTION || !strcmp(r->tools[i].name, r->tool_choice_name);
}

/* The tool list and the calling convention, for the system turn. */
static void tools_block(const oai_request *r, oai_toolfmt f, strbuf *b) {
    if (f == OAI_TOOLFMT_LLAMA3) {
        strbuf_puts(b, "You can call functions. Their definitions, as JSON:\n[");
    } else {
        strbuf_puts(b, "# Tools\n\nYou can call functions to help with the request. Their signatures, one JSON "
                   "object per line, are between <tools> and </tools>:\n<tools>");
    }
    bool first = true;
    for (size_t i = 0; i < r->n_tools; i++) {
        if (!offered(r, i)) continue;
        const oai_tool *t = &r->tools[i];
        json_t *params = json_loads(t->parameters, 0, NULL);
        json_t *fn = json_pack("{s:s}", "name", t->name);
        if (t->description) json_object_set_new(fn, "description", json_string(t->description));
        json_object_set_new(fn, "parameters", params ? params : json_object());
        json_t *o = json_pack("{s:s, s:o}", "type", "function", "function", fn);
        char *s = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        if (!s) {
            b->oom = true;
            return;
        }
        strbuf_puts(b, f == OAI_TOOLFMT_LLAMA3 ? (first ? "" : ", ") : "\n");
        strbuf_puts(b, s);
        free(s);
        first = false;
    }
    if (f == OAI_TOOLFMT_LLAMA3) {
        strbuf_puts(b, "]\n\nTo call one, answer with only a JSON object of the form {\"name\": function name, "
                   "\"parameters\": its arguments as a JSON object}.");
    } else {
        strbuf_puts(b, "\n</tools>\n\nTo call a function, answer with a JSON object holding its name and arguments "
                   "between <tool_call> and </tool_call>:\n<tool_call>\n{\"name\": <function name>, "
                   "\"arguments\": <the arguments as a JSON object>}\n</tool_call>");
        if (r->parallel_tool_calls) strbuf_puts(b, "\nSeveral calls follow each other, one per line.");
    }
}

/* One call in the format's text. */
static void call_text(oai_toolfmt f, const oai_tool_call *c, strbuf *b) {
    const char *args = c->arguments && c->arguments[0] ? c->arguments : "{}";
    if (f == OAI_TOOLFMT_LLAMA3) {
        strbuf_printf(b, "{\"name\": \"%s\", \"parameters\": %s}", c->name, args);
    } else {
        strbuf_printf(b, "<tool_call>\n{\"name\": \"%s\", \"arguments\": %s}\n</tool_call>", c->name, args);
    }
}

/* Renames every rule of GBNF text src (names and references, outside literals, classes and
 * comments) to prefix + name, appending to b. */
static void rename_rules(const char *src, const char *prefix, strbuf *b) {
    const char *p = src;
    while (*p) {
        char c = *p;
        if (c == '"' || c == '[') {
            char close = c == '"' ? '"' : ']';
            const char *q = p + 1;
            while (*q && *q != close) q += q[0] == '\\' && q[1] ? 2 : 1;
            if (*q) q++;
            strbuf_put(b, p, (size_t)(q - p));
            p = q;
        } else if (c == '#') {
            const char *q = strchr(p, '\n');
            if (!q) q = p + strlen(p);
            p = q;
        } else if (isalpha((unsigned char)c) || c == '_') {
            const char *q = p;
            while (isalnum((unsigned char)*q) || *q == '-' || *q == '_') q++;
            strbuf_puts(b, prefix);
            strbuf_put(b, p, (size_t)(q - p));
            p = q;
        } else {
            strbuf_put(b, &c, 1);
            p++;
        }
    }
    strbuf_puts(b, "\n");
}

/* The calls' grammar. -1 with e filled when a parameters schema cannot be enforced. */
static int calls_grammar(const oai_request *r, oai_toolfmt f, strbuf *g, oai_error *e) {
    strbuf alts = {0};
    bool first = true;
    for (size_t i = 0; i < r->n_tools; i++) {
        if (!offered(r, i)) continue;
        const oai_tool *t = &r->tools[i];
        sh_err err = {{0}};
        gram *gm = gram_from_json_schema(t->parameters, strlen(t->parameters), &err);
        char param[64];
        snprintf(param, sizeof param, "tools[%zu].function.parameters", i);
        if (!gm) {
            free(alts.s);
            return oai_errorf(e, 400, INVALID, param, "%s", err.msg);
        }
        char *text = gram_to_gbnf(gm);
        gram_free(gm);
        if (!text) {
            free(alts.s);
            return oai_errorf(e, 500, "server_error", param, "out of memory");
        }
        char prefix[32];
        snprintf(prefix, sizeof prefix, "t%zu-", i);
        rename_rules(text, prefix, g);
        free(text);
        strbuf_printf(&alts, "%s\"%s\\\", \\\"%s\\\": \" t%zu-root", first ? "" : " | ", t->name,
                  f == OAI_TOOLFMT_LLAMA3 ? "parameters" : "arguments", i);
        first = false;
    }
    if (f == OAI_TOOLFMT_LLAMA3) {
        strbuf_printf(g, "root ::= \"{\\\"name\\\": \\\"\" (%s) \"}\"\n", alts.s ? alts.s : "");
    } else {
        strbuf_printf(g, "call ::= \"<tool_call>\\n{\\\"name\\\": \\\"\" (%s) \"}\\n</tool_call>\"\n", alts.s ? alts.s : "");
        strbuf_puts(g, r->parallel_tool_calls ? "root ::= call (\"\\n\" call)*\n" : "root ::= call\n");
    }
    free(alts.s);
    if (g->oom) return oai_errorf(e, 500, "server_error", "tools", "out of memory");
    return 0;
}

int oai_tools_plan_init(const oai_request *r, tok_chat_tmpl family, oai_tools_plan *p, oai_error *e) {
    memset(p, 0, sizeof *p);
    p->fmt = oai_toolfmt_of(family);
    p->calls = r->n_tools > 0 && r->tool_choice != OAI_TOOL_NONE;
    /* at most one more message (a system turn for the tools) */
    p->msgs = calloc(r->n_messages + 1, sizeof *p->msgs);
    if (!p->msgs) return oai_errorf(e, 500, "server_error", NULL, "out of memory");
    size_t k = 0, i = 0;
    /* the tools are listed whenever they are given, "none" included: the model knows what it
     * could call, and the turns of an agent loop share their prompt's prefix */
    if (r->n_tools) {
        strbuf b = {0};
        bool has_sys = r->n_messages && (!strcmp(r->messages[0].role, "system") || !strcmp(r->messages[0].role, "developer"));
        if (has_sys && r->messages[0].content[0]) {
            strbuf_puts(&b, r->messages[0].content);
            strbuf_puts(&b, "\n\n");
        }
        tools_block(r, p->fmt, &b);
        if (b.oom || !own(p, b.s)) {
            if (b.oom) free(b.s);
            oai_tools_plan_free(p);
            return oai_errorf(e, 500, "server_error", NULL, "out of memory");
        }
        p->msgs[k++] = (tok_chat_msg){.role = "system", .content = b.s};
        i = has_sys ? 1 : 0;
    }
    for (; i < r->n_messages; i++) {
        const oai_message *m = &r->messages[i];
        if (!strcmp(m->role, "assistant") && m->n_tool_calls) {
            strbuf b = {0};
            if (m->content && m->content[0]) {
                strbuf_puts(&b, m->content);
                strbuf_puts(&b, "\n");
            }
            for (size_t c = 0; c < m->n_tool_calls; c++) {
                if (c) strbuf_puts(&b, "\n");
                call_text(p->fmt, &m->tool_calls[c], &b);
            }
            if (b.oom) free(b.s); /* own() frees what it cannot keep */
            if (b.oom || !own(p, b.s)) goto oom;
            p->msgs[k++] = (tok_chat_msg){.role = "assistant", .content = b.s};
        } else if (!strcmp(m->role, "tool")) {
            if (p->fmt == OAI_TOOLFMT_LLAMA3) {
                p->msgs[k++] = (tok_chat_msg){.role = "ipython", .content = m->content};
                continue;
            }
            /* consecutive results share one user turn */
            strbuf b = {0};
            for (; i < r->n_messages && !strcmp(r->messages[i].role, "tool"); i++) {
                if (b.n) strbuf_puts(&b, "\n");
                strbuf_puts(&b, "<tool_response>\n");
                strbuf_puts(&b, r->messages[i].content);
                strbuf_puts(&b, "\n</tool_response>");
            }
            i--;
            if (b.oom) free(b.s); /* own() frees what it cannot keep */
            if (b.oom || !own(p, b.s)) goto oom;
            p->msgs[k++] = (tok_chat_msg){.role = "user", .content = b.s};
        } else {
            p->msgs[k++] = (tok_chat_msg){.role = !strcmp(m->role, "developer") ? "system" : m->role,
                                          .content = m->content};
        }
    }
    p->n_msgs = k;
    if (p->calls) {
        strbuf g = {0};
        if (calls_grammar(r, p->fmt, &g, e)) {
            free(g.s);
            oai_tools_plan_free(p);
            return -1;
        }
        p->gbnf = g.s;
        if (r->tool_choice == OAI_TOOL_AUTO && !(p->trigger = strdup(trigger_of(p->fmt)))) goto oom;
    }
    return 0;
oom:
    oai_tools_plan_free(p);
    return oai_errorf(e, 500, "server_error", NULL, "out of memory");
}

/* ============================================================ parsing the answer ===== */

static size_t skip_ws(const char *t, size_t n, size_t i) {
    while (i < n && (t[i] == ' ' || t[i] == '\n' || t[i] == '\t' || t[i] == '\r')) i++;
    return i;
}

bool oai_tools_may_open(const oai_tools_plan *p, const char *text, size_t n) {
    if (!p || !p->trigger) return false;
    size_t i = skip_ws(text, n, 0), tl = strlen(p->trigger), k = n - i < tl ? n - i : tl;
    return memcmp(text + i, p->trigger, k) == 0;
}

bool oai_tools_opens(const oai_tools_plan *p, const char *text, size_t n) {
    if (!p || !p->trigger) return false;
    size_t i = skip_ws(text, n, 0), tl = strlen(p->trigger);
    return n - i >= tl && memcmp(text + i, p->trigger, tl) == 0;
}

void oai_tool_calls_free(oai_tool_call *calls, size_t n) {
    for (size_t i = 0; calls && i < n; i++) {
        free(calls[i].id);
        free(calls[i].name);
        free(calls[i].arguments);
    }
    free(calls);
}

static char *new_call_id(void) {
    static const char al[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    unsigned char rnd[24];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
        for (size_t i = 0; i < sizeof rnd; i++) rnd[i] = (unsigned char)rand();
    char *id = malloc(5 + sizeof rnd + 1);
    if (!id) return NULL;
    memcpy(id, "call_", 5);
    for (size_t i = 0; i < sizeof rnd; i++) id[5 + i] = al[rnd[i] % (sizeof al - 1)];
    id[5 + sizeof rnd] = 0;
    return id;
}

/* One call object's JSON text [s, s+n): {"name", "arguments"|"parameters"} into *out. 1, 0 (not
 * a call), -1 (OOM). */
static int parse_call(const char *s, size_t n, oai_tool_call *out) {
    json_t *o = json_loadb(s, n, 0, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        return 0;
    }
    json_t *name = json_object_get(o, "name"), *args = json_object_get(o, "arguments");
    if (!args) args = json_object_get(o, "parameters");
    if (!json_is_string(name) || !json_is_object(args) || json_object_size(o) != 2) {
        json_decref(o);
        return 0;
    }
    out->name = strdup(json_string_value(name));
    out->arguments = json_dumps(args, JSON_COMPACT | JSON_PRESERVE_ORDER);
    out->id = new_call_id();
    json_decref(o);
    return out->name && out->arguments && out->id ? 1 : -1;
}

int oai_tools_parse(const oai_tools_plan *p, const char *text, size_t n, oai_tool_call **calls, size_t *n_calls) {
    *calls = NULL;
    *n_calls = 0;
    oai_tool_call *cs = NULL;
    size_t nc = 0, cap = 0, i = skip_ws(text, n, 0);
    int rc = 1;
    if (i == n) return 0;
    while (i < n) {
        size_t b, end;
        if (p->fmt == OAI_TOOLFMT_LLAMA3) {
            if (nc) { rc = 0; break; } /* one call per answer */
            b = i;
            end = n;
            while (end > b && strchr(" \n\t\r", text[end - 1])) end--;
            i = n;
        } else {
            static const char open[] = "<tool_call>", close[] = "</tool_call>";
            if (n - i < sizeof open - 1 || memcmp(text + i, open, sizeof open - 1)) { rc = 0; break; }
            b = i + sizeof open - 1;
            const char *c = memmem(text + b, n - b, close, sizeof close - 1);
            if (!c) { rc = 0; break; }
            end = (size_t)(c - text);
            i = skip_ws(text, n, end + sizeof close - 1);
        }
        if (nc == cap) {
            cap = cap ? cap * 2 : 4;
            oai_tool_call *g = realloc(cs, cap * sizeof *g);
            if (!g) { rc = -1; break; }
            cs = g;
        }
        memset(&cs[nc], 0, sizeof cs[nc]);
        int k = parse_call(text + b, end - b, &cs[nc]);
        nc++;
        if (k != 1) { rc = k; break; }
    }
    if (rc != 1) {
        oai_tool_calls_free(cs, nc);
        return rc;
    }
    *calls = cs;
    *n_calls = nc;
    return 1;
}
