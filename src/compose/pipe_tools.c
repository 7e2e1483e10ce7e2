/*
 * compose/pipe_tools — a pipeline answering a chat request that declares tools with a tool call
 * (docs/cluster.md, "Tool calls"): the intent of its classify step names the function (through
 * the pipeline's functions: map, else by its own name), and the step's slots become the
 * arguments, typed by the declared function's parameters schema.
 *
 * The request was validated by the edge parser (api/oai_req.c): tools is an array of
 * {type: function, function: {name, parameters?}} with distinct valid names, and a named
 * tool_choice names one of them. The parameters schema is the client's and is only read here:
 * keywords this file does not know are ignored, never trusted to hold a particular shape.
 */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "api/oai_req.h"
#include "compose/comp_int.h"

bool cpt_read(const json_t *root, cpt_req *t) {
    memset(t, 0, sizeof *t);
    const json_t *tools = json_object_get(root, "tools");
    if (!json_is_array(tools) || !json_array_size(tools)) return false;
    t->tools = tools;
    t->choice = OAI_TOOL_AUTO;
    const json_t *tc = json_object_get(root, "tool_choice");
    t->choice_json = tc && !json_is_null(tc) ? tc : NULL;
    const char *s = json_string_value(tc);
    if (s) t->choice = !strcmp(s, "none") ? OAI_TOOL_NONE : !strcmp(s, "required") ? OAI_TOOL_REQUIRED : OAI_TOOL_AUTO;
    else if (json_is_object(tc) && (t->name = json_string_value(json_object_get(json_object_get(tc, "function"), "name"))))
        t->choice = OAI_TOOL_FUNCTION;
    /* the turn after a call: the client ran it and sent the result back */
    const json_t *msgs = json_object_get(root, "messages");
    for (size_t i = json_array_size(msgs); i-- > 0;) {
        const json_t *m = json_array_get(msgs, i);
        const char *role = json_string_value(json_object_get(m, "role"));
        if (!role) continue;
        if (!strcmp(role, "user")) break;
        if (!strcmp(role, "tool") || (!strcmp(role, "assistant") && json_array_size(json_object_get(m, "tool_calls"))))
            t->answered = true;
    }
    return true;
}

const char *cpt_choice_name(const cpt_req *t) {
    static const char *const n[] = {"auto", "none", "required", "function"};
    return t->choice >= 0 && t->choice <= 3 ? n[t->choice] : "auto";
}

/* ============================================================ slot text -> JSON ===== */

/* "twenty five", "twenty-five", "one hundred and five", "a thousand": 0 .. 999999. */
static bool number_words(const char *s, double *out) {
    static const char *const units[] = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                                        "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
                                        "seventeen", "eighteen", "nineteen"};
    static const char *const tens[] = {"twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"};
    long total = 0, cur = 0;
    int last = 0; /* 0 start, 1 unit, 2 teen, 3 tens, 4 hundred, 5 thousand, 6 "a" */
    int words = 0;
    for (const char *p = s; *p;) {
        while (*p == ' ' || *p == '-') p++;
        if (!*p) break;
        char w[16];
        size_t n = 0;
        while (*p && *p != ' ' && *p != '-') {
            if (n + 1 >= sizeof w) return false;
            w[n++] = (char)tolower((unsigned char)*p++);
        }
        w[n] = 0;
        words++;
        if (!strcmp(w, "and")) {
            if (last != 4 && last != 5) return false;
            continue;
        }
        if (!strcmp(w, "a")) {
            if (last != 0 && last != 5) return false;
            cur = 1, last = 6;
            continue;
        }
        if (!strcmp(w, "hundred") || !strcmp(w, "thousand")) {
            bool th = w[0] == 't';
            if (last == 0 || last == 4 || last == 5 || (th ? cur >= 1000 : cur >= 10)) return false;
            if (th) total = (total + cur) * 1000, cur = 0, last = 5;
            else cur *= 100, last = 4;
            continue;
        }
        int v = -1, kind = 0;
        for (int i = 0; i < 20 && v < 0; i++)
            if (!strcmp(w, units[i])) v = i, kind = i < 10 ? 1 : 2;
        for (int i = 0; i < 8 && v < 0; i++)
            if (!strcmp(w, tens[i])) v = 20 + 10 * i, kind = 3;
        if (v < 0 || last == 1 || last == 2 || last == 6 || (last == 3 && kind != 1) || (v == 0 && last)) return false;
        cur += v, last = kind;
    }
    if (!words || last == 6) return false;
    *out = (double)(total + cur);
    return true;
}

/* Digits ("20", "-3", "2.5") or number words ("twenty"). */
static bool slot_number(const char *s, double *out) {
    while (*s == ' ') s++;
    size_t n = strlen(s);
    while (n && s[n - 1] == ' ') n--;
    if (!n || n > 60) return false;
    char b[64];
    memcpy(b, s, n), b[n] = 0;
    bool digits = false;
    for (size_t i = 0; i < n; i++) {
        if (isdigit((unsigned char)b[i])) digits = true;
        else if (!(b[i] == '.' || ((b[i] == '-' || b[i] == '+') && i == 0))) return number_words(b, out);
    }
    char *end;
    *out = strtod(b, &end);
    return digits && !*end && isfinite(*out);
}

static bool slot_bool(const char *s, bool *out) {
    static const char *const yes[] = {"true", "yes", "on", "1"}, *const no[] = {"false", "no", "off", "0"};
    for (int i = 0; i < 4; i++) {
        if (!strcasecmp(s, yes[i])) return *out = true, true;
        if (!strcasecmp(s, no[i])) return *out = false, true;
    }
    return false;
}

/* The value of slot text for one type; NULL when the text is not one. */
static json_t *as_type(const char *t, const json_t *en, const char *text) {
    double x;
    bool b;
    if (!strcmp(t, "string")) {
        if (!json_is_array(en)) return json_string(text);
        for (size_t i = 0; i < json_array_size(en); i++) {
            const char *e = json_string_value(json_array_get(en, i));
            if (e && !strcasecmp(e, text)) return json_string(e); /* the enum's spelling */
        }
        return NULL;
    }
    if (!strcmp(t, "integer"))
        return slot_number(text, &x) && floor(x) == x && fabs(x) < 9e15 ? json_integer((json_int_t)x) : NULL;
    if (!strcmp(t, "number"))
        return !slot_number(text, &x) ? NULL
               : floor(x) == x && fabs(x) < 9e15 ? json_integer((json_int_t)x) : json_real(x);
    if (!strcmp(t, "boolean")) return slot_bool(text, &b) ? json_boolean(b) : NULL;
    return NULL; /* object, array, null: not from one slot's text */
}

/* Slot text as the value property schema ps (NULL: none) asks for; NULL with why when it
 * cannot be one. */
static json_t *convert(const json_t *ps, const char *text, char *why, size_t whyn) {
    const json_t *ty = json_object_get(ps, "type"), *en = json_object_get(ps, "enum");
    json_t *v = NULL;
    if (json_is_string(ty)) {
        v = as_type(json_string_value(ty), en, text);
    } else if (json_is_array(ty)) {
        for (size_t i = 0; !v && i < json_array_size(ty); i++)
            if (json_is_string(json_array_get(ty, i))) v = as_type(json_string_value(json_array_get(ty, i)), en, text);
    } else if (json_is_array(en)) {
        /* no type: a string value of the enum (case-insensitively), else a number or boolean one */
        v = as_type("string", en, text);
        static const char *const other[] = {"number", "boolean"};
        for (int o = 0; !v && o < 2; o++) {
            json_t *x = as_type(other[o], NULL, text);
            for (size_t i = 0; x && !v && i < json_array_size(en); i++)
                if (json_equal(x, json_array_get(en, i))) v = json_incref(x);
            json_decref(x);
        }
    } else {
        v = json_string(text);
    }
    if (!v) {
        char tn[80] = "";
        if (json_is_string(ty)) snprintf(tn, sizeof tn, "%s", json_string_value(ty));
        else if (json_is_array(ty)) snprintf(tn, sizeof tn, "one of its types");
        if (json_is_array(en) && (!*tn || !strcmp(tn, "string")))
            snprintf(why, whyn, "'%.80s' is not one of its enum values", text);
        else snprintf(why, whyn, "'%.80s' is not %s%s", text, *tn == 'i' ? "an " : "", *tn ? tn : "usable");
    }
    return v;
}

/* ============================================================ the decision ===== */

static const char *function_of(const ccfg_comp *k, const char *intent) {
    for (int i = 0; i < k->n_functions; i++)
        if (!strcmp(k->functions[i].key, intent)) return k->functions[i].value;
    return intent;
}

static const json_t *declared(const cpt_req *t, const char *name) {
    for (size_t i = 0; i < json_array_size(t->tools); i++) {
        const json_t *fn = json_object_get(json_array_get(t->tools, i), "function");
        const char *n = json_string_value(json_object_get(fn, "name"));
        if (n && !strcmp(n, name)) return fn;
    }
    return NULL;
}

/* "a, b, c" of the declared function names (bounded). */
static void declared_names(const cpt_req *t, char *out, size_t n) {
    size_t l = 0;
    out[0] = 0;
    for (size_t i = 0; i < json_array_size(t->tools) && l < n; i++) {
        const char *s = json_string_value(json_object_get(json_object_get(json_array_get(t->tools, i), "function"), "name"));
        l += (size_t)snprintf(out + l, n - l, "%s%s", i ? ", " : "", s ? s : "?");
    }
}

static void make_id(char *id, size_t n) {
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char r[24];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        unsigned long long x = (unsigned long long)ts.tv_nsec * 6364136223846793005ULL ^ (unsigned long long)ts.tv_sec;
        for (size_t i = 0; i < sizeof r; i++) x = x * 6364136223846793005ULL + 1442695040888963407ULL, r[i] = (unsigned char)(x >> 33);
    }
    size_t o = (size_t)snprintf(id, n, "call_");
    for (size_t i = 0; i < sizeof r && o + 1 < n; i++) id[o++] = abc[r[i] % (sizeof abc - 1)];
    id[o] = 0;
}

/* No call: the reason goes to rec and why. Returns 0. */
__attribute__((format(printf, 4, 5))) static int no_call(json_t *rec, char *why, size_t whyn, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whyn, fmt, ap);
    va_end(ap);
    json_object_set_new(rec, "called", json_false());
    json_object_set_new(rec, "reason", json_string(why));
    return 0;
}

/* The arguments from slots for function fn (its parameters schema); 0, or -1 with why when a
 * required property has no usable slot. Slots that are not used go to dropped. */
static int build_args(const json_t *fn, const json_t *slots, json_t *args, json_t *dropped, char *why, size_t whyn) {
    const json_t *params = json_object_get(fn, "parameters");
    const json_t *props = json_object_get(params, "properties");
    const json_t *addl = json_object_get(params, "additionalProperties");
    bool has_props = json_is_object(props);
    bool extra_ok = !has_props || json_is_true(addl) || json_is_object(addl);
    const char *key;
    json_t *val;
    char err[256];
    /* the declared properties first, in the schema's order; then the other slots */
    for (int pass = 0; pass < 2; pass++) {
        json_object_foreach((json_t *)(pass ? slots : props), key, val) {
            const json_t *ps = json_object_get(props, key);
            const char *text = json_string_value(pass ? val : json_object_get(slots, key));
            if (!text || (pass && ps)) continue;
            if (pass && !extra_ok) {
                json_object_set_new(dropped, key, json_string("not a property of the function"));
                continue;
            }
            if (!ps && json_is_object(addl)) ps = addl;
            json_t *v = convert(ps, text, err, sizeof err);
            if (v && json_is_object(ps) && cschema_validate(ps, v, err, sizeof err)) json_decref(v), v = NULL;
            if (!v) {
                json_object_set_new(dropped, key, json_string(!strncmp(err, "$: ", 3) ? err + 3 : err));
                continue;
            }
            json_object_set_new(args, key, v);
        }
    }
    const json_t *req = json_object_get(params, "required");
    for (size_t i = 0; i < json_array_size(req); i++) {
        const char *r = json_string_value(json_array_get(req, i));
        if (!r || json_object_get(args, r)) continue;
        const char *d = json_string_value(json_object_get(dropped, r));
        if (d) snprintf(why, whyn, "required property '%.64s' has no usable slot (%s)", r, d);
        else snprintf(why, whyn, "required property '%.64s' has no slot", r);
        return -1;
    }
    return 0;
}

int cpt_decide(const cpt_req *t, const ccfg_comp *k, const json_t *steps, json_t *rec, cpt_call *out, char *why,
               size_t whyn, bool *infra) {
    memset(out, 0, sizeof *out);
    *infra = false;
    json_object_set_new(rec, "tool_choice", t->choice == OAI_TOOL_FUNCTION ? json_pack("{s:s}", "function", t->name)
                                                                           : json_string(cpt_choice_name(t)));
    if (t->choice == OAI_TOOL_NONE) return no_call(rec, why, whyn, "tool_choice is 'none'");
    if (t->answered && t->choice == OAI_TOOL_AUTO)
        return no_call(rec, why, whyn, "the conversation has this turn's tool result: the pipeline replies with text");
    /* the intent: the latest classify step that ran */
    size_t n = json_array_size(steps), ci = n;
    for (size_t i = n; i-- > 0 && ci == n;) {
        const json_t *s = json_array_get(steps, i);
        if (!strcmp(json_string_value(json_object_get(s, "kind")), "classify") && json_is_true(json_object_get(s, "ran")))
            ci = i;
    }
    if (ci == n) return no_call(rec, why, whyn, "no classify step ran, so there is no intent");
    const json_t *cs = json_array_get(steps, ci);
    const char *cname = json_string_value(json_object_get(cs, "name"));
    if (!json_is_true(json_object_get(cs, "ok"))) {
        *infra = true;
        return no_call(rec, why, whyn, "step '%s' failed, so there is no intent (%.120s)", cname,
                       json_string_value(json_object_get(cs, "error")) ? json_string_value(json_object_get(cs, "error")) : "");
    }
    const char *intent = json_string_value(json_object_get(cs, "label"));
    if (!intent) intent = "";
    const char *fname = function_of(k, intent);
    json_object_set_new(rec, "intent", json_string(intent));
    json_object_set_new(rec, "function", json_string(fname));
    const json_t *fn = declared(t, fname);
    if (!fn) {
        char names[400];
        declared_names(t, names, sizeof names);
        return no_call(rec, why, whyn, "intent '%.64s' maps to function '%.64s', which is not among the request's tools "
                       "(%s)", intent, fname, names);
    }
    if (t->choice == OAI_TOOL_FUNCTION && strcmp(fname, t->name))
        return no_call(rec, why, whyn, "tool_choice names function '%.64s', but intent '%.64s' maps to '%.64s'", t->name,
                       intent, fname);
    /* an action step gates the call: the last one that ran, after the intent, must have succeeded */
    int last_action = -1;
    for (int i = 0; i < k->n_steps; i++)
        if (k->steps[i].kind == CCFG_STEP_ACTION) last_action = i;
    if (last_action >= 0) {
        size_t ai = n;
        for (size_t i = n; i-- > ci + 1 && ai == n;) {
            const json_t *s = json_array_get(steps, i);
            if (!strcmp(json_string_value(json_object_get(s, "kind")), "action") && json_is_true(json_object_get(s, "ran")))
                ai = i;
        }
        if (ai == n)
            return no_call(rec, why, whyn, "no action step ran after step '%s' (step '%s': its when: did not hold)",
                           cname, k->steps[last_action].name);
        const json_t *as = json_array_get(steps, ai);
        if (!json_is_true(json_object_get(as, "ok")))
            return no_call(rec, why, whyn, "action step '%s' failed: %.160s", json_string_value(json_object_get(as, "name")),
                           json_string_value(json_object_get(as, "error")) ? json_string_value(json_object_get(as, "error")) : "");
    }
    json_t *args = json_object(), *dropped = json_object();
    if (!args || !dropped) return json_decref(args), json_decref(dropped), -1;
    const json_t *slots = json_object_get(cs, "slots");
    int rc = build_args(fn, json_is_object(slots) ? slots : NULL, args, dropped, why, whyn);
    if (json_object_size(dropped)) json_object_set(rec, "dropped", dropped);
    json_decref(dropped);
    if (rc) {
        json_decref(args);
        json_object_set_new(rec, "called", json_false());
        json_object_set_new(rec, "reason", json_string(why));
        return 0;
    }
    out->name = strdup(fname);
    out->arguments = json_dumps(args, JSON_COMPACT);
    make_id(out->id, sizeof out->id);
    json_object_set_new(rec, "called", json_true());
    json_object_set_new(rec, "id", json_string(out->id));
    json_object_set_new(rec, "arguments", args);
    if (!out->name || !out->arguments) return cpt_call_free(out), -1;
    return 1;
}

void cpt_call_free(cpt_call *c) {
    free(c->name), free(c->arguments);
    c->name = c->arguments = NULL;
}
