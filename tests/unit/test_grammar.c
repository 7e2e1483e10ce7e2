/*
 * test_grammar — GBNF parsing and errors, strings accepted/rejected by GBNF and JSON Schema
 * grammars, refused schema keywords, gram_to_gbnf round trips, partial UTF-8, and token-level
 * checks with real vocabularies: valid documents step through, random allowed-token walks
 * produce JSON that validates, masks agree with per-token acceptance, no dead ends.
 */
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <stdbool.h>

#include "grammar/grammar.h"
#include "tokenizer/tokenizer.h"

typedef struct mcase {
    const char *src;
    const char *ok[12];
    const char *bad[12];
} mcase;

static void check_cases(const mcase *c, size_t n, bool schema) {
    for (size_t i = 0; i < n; i++) {
        sh_err e = {{0}};
        gram *g = schema ? gram_from_json_schema(c[i].src, strlen(c[i].src), &e)
                         : gram_from_gbnf(c[i].src, strlen(c[i].src), &e);
        if (!g) fail_msg("case %zu: %s: %s", i, c[i].src, e.msg);
        for (int k = 0; c[i].ok[k]; k++)
            if (!gram_match(g, c[i].ok[k], strlen(c[i].ok[k])))
                fail_msg("case %zu: should accept '%s' (%s)", i, c[i].ok[k], c[i].src);
        for (int k = 0; c[i].bad[k]; k++)
            if (gram_match(g, c[i].bad[k], strlen(c[i].bad[k])))
                fail_msg("case %zu: should reject '%s' (%s)", i, c[i].bad[k], c[i].src);
        /* the printed grammar compiles and agrees */
        char *t = gram_to_gbnf(g);
        assert_non_null(t);
        gram *g2 = gram_from_gbnf(t, strlen(t), &e);
        if (!g2) fail_msg("case %zu: gram_to_gbnf output does not compile: %s\n%s", i, e.msg, t);
        for (int k = 0; c[i].ok[k]; k++) assert_true(gram_match(g2, c[i].ok[k], strlen(c[i].ok[k])));
        for (int k = 0; c[i].bad[k]; k++) assert_false(gram_match(g2, c[i].bad[k], strlen(c[i].bad[k])));
        gram_free(g2);
        free(t);
        gram_free(g);
    }
}

static void test_gbnf_match(void **state) {
    (void)state;
    static const mcase c[] = {
        {"root ::= \"ab\"+ | x \"yz\" | [a-c] \"\\n\"\nx ::= \"x\"\n", {"ab", "abab", "xyz", "b\n"}, {"", "aba", "x", "d\n"}},
        {"root ::= [^a-z]* \"!\"", {"!", "ABC!", "12 !"}, {"a!", "ABC"}},
        {"root ::= \"a\"{2,3} \"b\"{2} \"c\"{1,}", {"aabbc", "aaabbccc"}, {"abbc", "aaaabbc", "aabbb", "aabb"}},
        {"root ::= (\"x\" | \"y\")? \"z\"", {"z", "xz", "yz"}, {"xyz", ""}},
        {"# comment\nroot ::= a |\n  b\na ::= \"1\" # trailing\nb ::= (\n  \"2\"\n  \"3\"\n)\n", {"1", "23"}, {"2", "123"}},
        {"root ::= \"\\x41\\u00e9\\U0001F600\"", {"A\xc3\xa9\xf0\x9f\x98\x80"}, {"A"}},
        {"root ::= [\\u4e00-\\u9fff]+", {"\xe4\xb8\xad\xe6\x96\x87"}, {"a", ""}},
        {"root ::= . .", {"ab", "\xc3\xa9z"}, {"a", "abc"}},
        {"root ::= list\nlist ::= \"[\" (item (\",\" item)*)? \"]\"\nitem ::= [0-9]+ | list", {"[]", "[1,[2,[]],33]"}, {"[", "[1,]", "[[]"}},
        {"root ::= \"a\" | ", {"a", ""}, {"b"}},
        {"root ::= [a\\-z]", {"a", "-", "z"}, {"b"}},
        {"root ::= [\\]\\[]", {"]", "["}, {"a"}},
    };
    check_cases(c, sizeof c / sizeof c[0], false);
}

static void test_gbnf_errors(void **state) {
    (void)state;
    static const struct {
        const char *src, *want;
    } c[] = {
        {"root ::= foo", "line 1, column 10: undefined rule 'foo'"},
        {"root ::= \"a\"\nx ::= (\"a\" \"b\"", "line 2, column 7: unbalanced parentheses"},
        {"root ::= \"a\")", "line 1, column 13: unbalanced parentheses"},
        {"root ::= \"\\q\"", "line 1, column 11: bad escape"},
        {"root ::= \"\\x4\"", "bad escape"},
        {"", "empty grammar"},
        {"  # only a comment\n", "empty grammar"},
        {"foo ::= \"a\"", "no rule named 'root'"},
        {"root ::= root \"a\" | \"b\"", "left recursion"},
        {"root ::= (\"a\"?)*", "left recursion"},
        {"root ::= \"abc", "line 1, column 10: unterminated string"},
        {"root ::= [abc", "unterminated character class"},
        {"root \"a\"", "expected '::='"},
        {"root ::= \"a\"\nroot ::= \"b\"", "line 2, column 1: rule 'root' defined twice"},
        {"root ::= \"a\"{5000}", "repetition count too large"},
        {"root ::= \"a\"{3,2}", "maximum below minimum"},
        {"root ::= * \"a\"", "without a symbol"},
        {"root ::= [z-a]", "range end below its start"},
        {"root ::= \"a\" @", "unexpected '@'"},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        sh_err e = {{0}};
        gram *g = gram_from_gbnf(c[i].src, strlen(c[i].src), &e);
        if (g) fail_msg("case %zu accepted: %s", i, c[i].src);
        if (!strstr(e.msg, c[i].want)) fail_msg("case %zu: '%s' lacks '%s'", i, e.msg, c[i].want);
    }
}

static void test_schema_match(void **state) {
    (void)state;
    static const mcase c[] = {
        {"{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"age\":{\"type\":\"integer\"}},\"required\":[\"name\"]}",
         {"{\"name\":\"bob\",\"age\":3}", "{\"name\": \"x\"}", " { \"name\" : \"\\\"q\\u00e9\\n\" , \"age\" : -7 }"},
         {"{\"age\":3}", "{\"age\":3,\"name\":\"b\"}", "{\"name\":\"a\",}", "{\"name\":\"a\",\"x\":1}", "{\"name\":\"a\nb\"}", "{\"name\":\"a\"} "}},
        {"{\"type\":\"integer\",\"minimum\":-17,\"maximum\":17}", {"-17", "-9", "0", "9", "10", "17"}, {"-18", "18", "01", "-0", "170", "1.0"}},
        {"{\"type\":\"integer\",\"minimum\":100,\"maximum\":1234}", {"100", "999", "1000", "1199", "1234", "555"}, {"99", "1235", "1300", "2000", "0"}},
        {"{\"type\":\"integer\",\"exclusiveMinimum\":0}", {"1", "9", "10", "123456789012"}, {"0", "-1"}},
        {"{\"type\":\"integer\",\"maximum\":-5}", {"-5", "-6", "-100"}, {"-4", "0", "5"}},
        {"{\"type\":\"integer\",\"minimum\":0.5,\"exclusiveMaximum\":3.5}", {"1", "2", "3"}, {"0", "4"}},
        {"{\"type\":\"number\",\"exclusiveMinimum\":-1,\"maximum\":2}", {"1.5", "2", "2.0", "-0.5", "0", "-0.99"}, {"2.5", "-1.5", "3", "-1.0", "-1", "2.01"}},
        {"{\"type\":\"number\"}", {"0", "-1.5e10", "3.25E-2", "12"}, {"01", "1.", ".5", "+1"}},
        {"{\"enum\":[\"red\",\"green\",42,null,{\"a\":1}]}", {"\"red\"", "\"green\"", "42", "null", "{\"a\":1}"}, {"\"blue\"", "43", "red"}},
        {"{\"const\":\"fixed\"}", {"\"fixed\""}, {"\"other\""}},
        {"{\"type\":\"string\",\"pattern\":\"^[a-z]{2,3}-\\\\d+$\"}", {"\"ab-1\"", "\"abc-123\""}, {"\"a-1\"", "\"abcd-1\"", "\"ab-\"", "\"ab-1x\""}},
        {"{\"type\":\"string\",\"pattern\":\"ab|cd\"}", {"\"ab\"", "\"xxcdyy\""}, {"\"ac\""}},
        {"{\"type\":\"string\",\"pattern\":\"^(\\\"|x)$\"}", {"\"\\\"\"", "\"x\""}, {"\"\"\"", "\"y\""}},
        {"{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}", {"\"ab\"", "\"abc\"", "\"\\u00e9\\n\""}, {"\"a\"", "\"abcd\""}},
        {"{\"type\":\"string\",\"format\":\"date\"}", {"\"2024-02-29\""}, {"\"2024-13-01\"", "\"24-01-01\""}},
        {"{\"type\":\"string\",\"format\":\"date-time\"}", {"\"2024-02-29T12:30:00Z\"", "\"2024-02-29T12:30:00.123+01:00\""}, {"\"2024-02-29 12:30:00\""}},
        {"{\"type\":\"string\",\"format\":\"uuid\"}", {"\"123e4567-e89b-12d3-a456-426614174000\""}, {"\"123e4567\""}},
        {"{\"type\":\"string\",\"format\":\"ipv4\"}", {"\"192.168.0.1\"", "\"255.255.255.255\""}, {"\"256.1.1.1\"", "\"1.2.3\""}},
        {"{\"type\":\"string\",\"format\":\"email\"}", {"\"a.b+c@example.com\""}, {"\"nobody\"", "\"a@\""}},
        {"{\"anyOf\":[{\"type\":\"integer\"},{\"type\":\"boolean\"}]}", {"5", "true"}, {"\"5\"", "null"}},
        {"{\"type\":[\"string\",\"null\"]}", {"\"x\"", "null"}, {"1"}},
        {"{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":1,\"maxItems\":3}", {"[1]", "[1, 2,3]"}, {"[]", "[1,2,3,4]", "[1,]", "[\"a\"]"}},
        {"{\"type\":\"array\",\"items\":{\"type\":\"integer\"}}", {"[]", "[ ]", "[1,2,3,4,5]"}, {"[", "[1 2]"}},
        {"{\"type\":\"array\",\"prefixItems\":[{\"type\":\"string\"},{\"type\":\"integer\"}],\"items\":false}", {"[\"a\",1]", "[\"a\"]", "[]"}, {"[1]", "[\"a\",1,2]"}},
        {"{\"type\":\"array\",\"prefixItems\":[{\"type\":\"string\"}],\"items\":{\"type\":\"boolean\"},\"minItems\":2}", {"[\"a\",true]", "[\"a\",true,false]"}, {"[\"a\"]", "[\"a\",1]"}},
        {"{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},\"next\":{\"anyOf\":[{\"$ref\":\"#/$defs/node\"},{\"type\":\"null\"}]}},\"required\":[\"v\",\"next\"]}},\"$ref\":\"#/$defs/node\"}",
         {"{\"v\":1,\"next\":null}", "{\"v\":1,\"next\":{\"v\":2,\"next\":{\"v\":3,\"next\":null}}}"}, {"{\"v\":1}", "{\"v\":1,\"next\":{\"v\":2}}"}},
        {"{\"definitions\":{\"n\":{\"type\":\"integer\"}},\"type\":\"array\",\"items\":{\"$ref\":\"#/definitions/n\"}}", {"[1,2]"}, {"[true]"}},
        {"{\"allOf\":[{\"type\":\"boolean\"}],\"title\":\"t\",\"description\":\"d\"}", {"true", "false"}, {"1"}},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}},\"additionalProperties\":true}", {"{\"a\":1,\"zz\":[1,{}]}", "{\"q\":null}", "{}"}, {"{\"a\":1,}", "{\"zz\":}"}},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}},\"additionalProperties\":{\"type\":\"string\"}}", {"{\"a\":1,\"b\":\"x\"}", "{\"b\":\"x\",\"c\":\"y\"}"}, {"{\"a\":1,\"b\":2}"}},
        {"{\"type\":\"object\"}", {"{}", "{\"x\":{\"y\":[1,2,{\"z\":null}]}}"}, {"[]", "{\"x\"}"}},
        {"{}", {"1", "\"s\"", "[true,{}]", "null"}, {"nul", "[1,]"}},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"integer\"},\"c\":{\"type\":\"integer\"}},\"required\":[\"b\"]}",
         {"{\"b\":1}", "{\"a\":1,\"b\":2}", "{\"b\":1,\"c\":2}", "{\"a\":1,\"b\":2,\"c\":3}"}, {"{}", "{\"a\":1}", "{\"a\":1,\"c\":2}", "{\"c\":1,\"b\":2}"}},
    };
    check_cases(c, sizeof c / sizeof c[0], true);
}

static void test_schema_refused(void **state) {
    (void)state;
    static const struct {
        const char *src, *want;
    } c[] = {
        {"{\"type\":\"object\",\"properties\":{\"age\":{\"type\":\"integer\",\"multipleOf\":3}}}", "unsupported JSON Schema keyword 'multipleOf' at properties.age"},
        {"{\"type\":\"array\",\"uniqueItems\":true}", "keyword 'uniqueItems' at (root)"},
        {"{\"not\":{}}", "keyword 'not'"},
        {"{\"type\":\"object\",\"patternProperties\":{}}", "keyword 'patternProperties'"},
        {"{\"type\":\"array\",\"items\":{\"if\":{}}}", "keyword 'if' at items"},
        {"{\"anyOf\":[{\"type\":\"string\"},{\"minProperties\":1}]}", "'minProperties' at anyOf[1]"},
        {"{\"type\":\"string\",\"format\":\"uri\"}", "'format'"},
        {"{\"type\":\"strin\"}", "unsupported value of 'type'"},
        {"{\"type\":\"number\",\"minimum\":0.5}", "only integral bounds"},
        {"{\"type\":\"string\",\"pattern\":\"(?=x)\"}", "lookaround"},
        {"{\"type\":\"string\",\"pattern\":\"(a)\\\\1\"}", "backreference"},
        {"{\"$ref\":\"http://example.com/s.json\"}", "'$ref'"},
        {"{\"$ref\":\"#/$defs/missing\"}", "does not exist"},
        {"{\"allOf\":[{\"type\":\"string\"},{\"maxLength\":3}]}", "'allOf'"},
        {"{\"type\":\"integer\",\"minimum\":5,\"maximum\":4}", "empty range"},
        {"{\"type\":\"string\",\"maxLength\":100000}", "maxLength"},
        {"{\"type\":\"object\",\"properties\":{},\"required\":[\"x\"]}", "'x' is not in 'properties'"},
        {"false", "matches nothing"},
        {"{\"type\":", "invalid JSON"},
        {"[1]", "object or a boolean"},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        sh_err e = {{0}};
        gram *g = gram_from_json_schema(c[i].src, strlen(c[i].src), &e);
        if (g) fail_msg("case %zu accepted: %s", i, c[i].src);
        if (!strstr(e.msg, c[i].want)) fail_msg("case %zu: '%s' lacks '%s'", i, e.msg, c[i].want);
    }
}

static void test_json_object_mode(void **state) {
    (void)state;
    sh_err e = {{0}};
    gram *g = gram_json_object(&e);
    assert_non_null(g);
    const char *ok[] = {"{}", "{\"a\": [1, 2.5, -3e2, true, false, null, \"x\"]}", "\n{\"a\":{\"b\":{}}}"};
    const char *bad[] = {"[]", "1", "{\"a\":}", "{'a':1}", "{\"a\":1}}", "{\"a\":[1,]}"};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) assert_true(gram_match(g, ok[i], strlen(ok[i])));
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) assert_false(gram_match(g, bad[i], strlen(bad[i])));
    /* nesting is bounded, whitespace is bounded */
    char deep[64] = "", ws[64] = "{";
    for (int i = 0; i < 12; i++) strcat(deep, "[");
    for (int i = 0; i < 30; i++) strcat(ws, " ");
    strcat(ws, "}");
    char doc[128];
    snprintf(doc, sizeof doc, "{\"a\":%s", deep);
    gram_matcher *m = gram_matcher_init(g, NULL, &e);
    assert_int_equal(gram_matcher_accept_bytes(m, doc, strlen(doc)), -1);
    gram_matcher_free(m);
    assert_false(gram_match(g, ws, strlen(ws)));
    gram_free(g);
    g = gram_json_value(&e);
    assert_true(gram_match(g, "[1]", 3));
    gram_free(g);
}

static void test_utf8_split(void **state) {
    (void)state;
    sh_err e = {{0}};
    const char *src = "root ::= \"\xc3\xa9\" [\\u4e00-\\u9fff] \"!\"";
    gram *g = gram_from_gbnf(src, strlen(src), &e);
    assert_non_null(g);
    gram_matcher *m = gram_matcher_init(g, NULL, &e);
    const char *txt = "\xc3\xa9\xe4\xb8\xad!";
    for (size_t i = 0; i < strlen(txt); i++) assert_int_equal(gram_matcher_accept_bytes(m, txt + i, 1), 0);
    assert_true(gram_matcher_done(m));
    gram_matcher_reset(m);
    assert_int_equal(gram_matcher_accept_bytes(m, "\xc3", 1), 0);
    assert_false(gram_matcher_can_end(m));
    assert_int_equal(gram_matcher_accept_bytes(m, "\xa8", 1), -1); /* è is not é */
    assert_int_equal(gram_matcher_accept_bytes(m, "\xa9\xe4", 2), 0);
    assert_int_equal(gram_matcher_accept_bytes(m, "\x80", 1), -1); /* U+4E00.. needs b8+ */
    assert_int_equal(gram_matcher_accept_bytes(m, "\xc0", 1), -1);
    gram_matcher_free(m);
    gram_free(g);
}

/* ---- token level --------------------------------------------------------------------------- */

static const char *VOCABS[] = {"ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf", "ggml-vocab-qwen2.gguf"};

static const char *SCHEMA_A =
    "{\"type\":\"object\",\"properties\":{"
    "\"name\":{\"type\":\"string\",\"maxLength\":12},"
    "\"age\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":150},"
    "\"role\":{\"enum\":[\"admin\",\"user\"]},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\",\"maxLength\":6},\"maxItems\":3},"
    "\"code\":{\"type\":\"string\",\"pattern\":\"^[A-Z]{2}[0-9]{2}$\"},"
    "\"ok\":{\"type\":\"boolean\"}},"
    "\"required\":[\"name\",\"age\",\"role\"],\"additionalProperties\":false}";

static const char *DOCS_A[] = {
    "{\"name\": \"Ada\", \"age\": 36, \"role\": \"admin\", \"tags\": [\"x\", \"math\"], \"code\": \"AB12\", \"ok\": true}",
    "{\"name\":\"Zo\\u00e9 \xe4\xb8\xad\",\"age\":150,\"role\":\"user\"}",
};

/* A tiny validator for the keywords the walks use. */
static bool validate(json_t *v, json_t *s) {
    json_t *en = json_object_get(s, "enum");
    if (en) {
        for (size_t i = 0; i < json_array_size(en); i++)
            if (json_equal(v, json_array_get(en, i))) return true;
        return false;
    }
    const char *t = json_string_value(json_object_get(s, "type"));
    if (!t) return true;
    if (!strcmp(t, "object")) {
        if (!json_is_object(v)) return false;
        json_t *props = json_object_get(s, "properties"), *req = json_object_get(s, "required");
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x) {
            json_t *ps = json_object_get(props, k);
            if (!ps || !validate(x, ps)) return false;
        }
        for (size_t i = 0; i < json_array_size(req); i++)
            if (!json_object_get(v, json_string_value(json_array_get(req, i)))) return false;
        return true;
    }
    if (!strcmp(t, "array")) {
        if (!json_is_array(v)) return false;
        json_t *mx = json_object_get(s, "maxItems");
        if (mx && json_array_size(v) > (size_t)json_integer_value(mx)) return false;
        for (size_t i = 0; i < json_array_size(v); i++)
            if (!validate(json_array_get(v, i), json_object_get(s, "items"))) return false;
        return true;
    }
    if (!strcmp(t, "string")) {
        if (!json_is_string(v)) return false;
        json_t *mx = json_object_get(s, "maxLength");
        if (mx) {
            size_t n = 0;
            for (const char *p = json_string_value(v); *p; p++) n += ((uint8_t)*p & 0xc0) != 0x80;
            if (n > (size_t)json_integer_value(mx)) return false;
        }
        json_t *pat = json_object_get(s, "pattern");
        if (pat) { /* ^[A-Z]{2}[0-9]{2}$ */
            const char *p = json_string_value(v);
            if (strlen(p) != 4 || p[0] < 'A' || p[0] > 'Z' || p[1] < 'A' || p[1] > 'Z' || p[2] < '0' || p[2] > '9' ||
                p[3] < '0' || p[3] > '9')
                return false;
        }
        return true;
    }
    if (!strcmp(t, "integer")) {
        if (!json_is_integer(v)) return false;
        json_int_t x = json_integer_value(v);
        json_t *mn = json_object_get(s, "minimum"), *mx = json_object_get(s, "maximum");
        if (mn && x < json_integer_value(mn)) return false;
        if (mx && x > json_integer_value(mx)) return false;
        return true;
    }
    if (!strcmp(t, "boolean")) return json_is_boolean(v);
    return true;
}

static bool bit(const uint32_t *mask, int32_t id) { return (mask[id >> 5] >> (id & 31)) & 1u; }

/* Every token of each document is allowed; at the end, end-of-generation is. */
static void step_docs(const gram *g, const gram_vocab *gv, const tok_vocab *v, const char **docs, size_t nd) {
    sh_err e = {{0}};
    uint32_t *mask = malloc(gram_vocab_mask_words(gv) * sizeof *mask);
    for (size_t d = 0; d < nd; d++) {
        tok_ids ids = {0};
        assert_int_equal(tok_tokenize(v, docs[d], strlen(docs[d]), false, false, &ids, &e), 0);
        gram_matcher *m = gram_matcher_init(g, gv, &e);
        assert_non_null(m);
        for (size_t i = 0; i < ids.n; i++) {
            int n = gram_matcher_mask(m, mask);
            assert_true(n > 0);
            if (!bit(mask, ids.ids[i])) fail_msg("doc %zu token %zu (id %d) not allowed", d, i, ids.ids[i]);
            assert_int_equal(gram_matcher_accept(m, ids.ids[i]), 0);
        }
        assert_true(gram_matcher_can_end(m));
        gram_matcher_mask(m, mask);
        int32_t eos = tok_eos(v);
        if (eos >= 0) {
            assert_true(bit(mask, eos));
            assert_int_equal(gram_matcher_accept(m, eos), 0);
            assert_true(gram_matcher_done(m));
            assert_int_equal(gram_matcher_mask(m, mask), 0);
        }
        gram_matcher_free(m);
        tok_ids_free(&ids);
    }
    free(mask);
}

/* Random walks among allowed tokens; checks the mask against per-token acceptance on an
 * independent matcher every few steps, no dead ends, and that finished text validates. */
static int random_walks(const gram *g, const gram_vocab *gv, const tok_vocab *v, json_t *schema, uint64_t seed,
                        int walks, bool object_only) {
    sh_err e = {{0}};
    size_t nw = gram_vocab_mask_words(gv);
    int32_t nv = tok_n_tokens(v);
    uint32_t *mask = malloc(nw * sizeof *mask);
    int32_t *allowed = malloc((size_t)nv * sizeof *allowed);
    int finished = 0;
    for (int w = 0; w < walks; w++) {
        gram_matcher *m = gram_matcher_init(g, gv, &e);
        char text[8192];
        size_t tn = 0;
        bool ended = false;
        for (int step = 0; step < 400 && !ended; step++) {
            int n = gram_matcher_mask(m, mask);
            if (n <= 0) fail_msg("walk %d step %d: empty mask, text '%.*s'", w, step, (int)tn, text);
            if (step % 23 == 5) { /* the reference */
                gram_matcher *r = gram_matcher_init(g, gv, &e);
                assert_int_equal(gram_matcher_accept_bytes(r, text, tn), 0);
                for (int32_t id = 0; id < nv; id++)
                    if (gram_matcher_allows(r, id) != bit(mask, id))
                        fail_msg("walk %d step %d: token %d: mask %d, reference %d", w, step, id, bit(mask, id),
                                 !bit(mask, id));
                gram_matcher_free(r);
            }
            size_t na = 0, nclose = 0;
            int32_t eog = -1;
            for (int32_t id = 0; id < nv; id++) {
                if (!bit(mask, id)) continue;
                if (tok_is_eog(v, id)) {
                    eog = id;
                    continue;
                }
                allowed[na++] = id;
            }
            /* late in the walk, steer to the end: end-of-generation first, then short pieces
             * that close strings and containers */
            int32_t pick;
            if (eog >= 0 && (na == 0 || step > 150 || tu_rand(&seed) % 8 == 0)) {
                pick = eog;
            } else if (step > 150) {
                for (size_t i = 0; i < na; i++) {
                    size_t len;
                    const char *p = tok_piece(v, allowed[i], false, &len);
                    if (len == 1 && strchr("\"]}0123456789el", p[0])) allowed[nclose++] = allowed[i];
                }
                pick = nclose ? allowed[tu_rand(&seed) % nclose] : allowed[tu_rand(&seed) % na];
            } else {
                pick = allowed[tu_rand(&seed) % na];
            }
            assert_int_equal(gram_matcher_accept(m, pick), 0);
            if (pick == eog) {
                ended = true;
                break;
            }
            size_t len;
            const char *p = tok_piece(v, pick, false, &len);
            if (tn + len >= sizeof text) break;
            memcpy(text + tn, p, len);
            tn += len;
        }
        if (ended) {
            finished++;
            json_error_t je;
            json_t *doc = json_loadb(text, tn, JSON_DECODE_ANY, &je);
            if (!doc) fail_msg("walk %d: not JSON (%s): '%.*s'", w, je.text, (int)tn, text);
            if (object_only) assert_true(json_is_object(doc));
            if (schema && !validate(doc, schema)) fail_msg("walk %d: does not validate: '%.*s'", w, (int)tn, text);
            json_decref(doc);
        }
        gram_matcher_free(m);
    }
    free(mask);
    free(allowed);
    return finished;
}

static void test_tokens(void **state) {
    (void)state;
    sh_err e = {{0}};
    json_t *schema = json_loads(SCHEMA_A, 0, NULL);
    assert_non_null(schema);
    for (size_t k = 0; k < sizeof VOCABS / sizeof *VOCABS; k++) {
        char path[256];
        snprintf(path, sizeof path, "tests/data/vocab/%s", VOCABS[k]);
        tok_vocab *v = tok_vocab_load(path, &e);
        if (!v) fail_msg("%s: %s", path, e.msg);
        gram_vocab *gv = gram_vocab_init(v, &e);
        assert_non_null(gv);
        gram *g = gram_from_json_schema(SCHEMA_A, strlen(SCHEMA_A), &e);
        assert_non_null(g);
        step_docs(g, gv, v, DOCS_A, 2);
        int fin = random_walks(g, gv, v, schema, 1000 + k, 6, true);
        assert_true(fin >= 3); /* the steering must get most walks to the end */
        gram_free(g);
        g = gram_json_object(&e);
        const char *docs[] = {"{\"a\": [1, 2.5, {\"b\": null}], \"c\": \"\xe2\x82\xac \\\" x\"}"};
        step_docs(g, gv, v, docs, 1);
        random_walks(g, gv, v, NULL, 2000 + k, 4, true);
        gram_free(g);
        gram_vocab_free(gv);
        tok_vocab_free(v);
    }
    json_decref(schema);
}

/* A GBNF grammar over non-ASCII text: byte-fallback and byte-level tokens split characters. */
static void test_tokens_utf8(void **state) {
    (void)state;
    sh_err e = {{0}};
    const char *src = "root ::= ([\\u4e00-\\u9fff] | \"\xc3\xa9\" | [a-z ])+ \".\"";
    for (size_t k = 0; k < sizeof VOCABS / sizeof *VOCABS; k++) {
        char path[256];
        snprintf(path, sizeof path, "tests/data/vocab/%s", VOCABS[k]);
        tok_vocab *v = tok_vocab_load(path, &e);
        assert_non_null(v);
        gram_vocab *gv = gram_vocab_init(v, &e);
        gram *g = gram_from_gbnf(src, strlen(src), &e);
        assert_non_null(g);
        const char *docs[] = {"caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87\xe5\xad\x97 abc."};
        step_docs(g, gv, v, docs, 1);
        gram_free(g);
        gram_vocab_free(gv);
        tok_vocab_free(v);
    }
}

/* A recursive schema and the shared mask cache across matchers. */
static void test_recursive_and_cache(void **state) {
    (void)state;
    sh_err e = {{0}};
    const char *s = "{\"$defs\":{\"t\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":9},"
                    "\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/t\"},\"maxItems\":2}},\"required\":[\"v\"]}},"
                    "\"$ref\":\"#/$defs/t\"}";
    tok_vocab *v = tok_vocab_load("tests/data/vocab/ggml-vocab-gpt-2.gguf", &e);
    assert_non_null(v);
    gram_vocab *gv = gram_vocab_init(v, &e);
    gram *g = gram_from_json_schema(s, strlen(s), &e);
    if (!g) fail_msg("%s", e.msg);
    const char *docs[] = {"{\"v\": 1, \"kids\": [{\"v\": 2}, {\"v\": 3, \"kids\": [{\"v\": 9, \"kids\": []}]}]}"};
    step_docs(g, gv, v, docs, 1);
    size_t n1 = gram_cache_entries(g);
    assert_true(n1 > 0);
    step_docs(g, gv, v, docs, 1); /* all hits: no new entries */
    assert_int_equal(gram_cache_entries(g), n1);
    random_walks(g, gv, v, NULL, 77, 4, true);
    gram_free(g);
    gram_vocab_free(gv);
    tok_vocab_free(v);
}

/* The number of string-content characters of a piece made of them only (a trailing
 * incomplete character counts), else -1. */
static int content_chars(const char *p, size_t n) {
    int c = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)p[i];
        if (b < 0x20 || b == '"' || b == '\\' || (b >= 0x80 && b < 0xc2) || b > 0xf4) {
            if (b >= 0x80 && b < 0xc0 && c > 0) continue; /* continuation byte */
            return -1;
        }
        c++;
    }
    return c;
}

/* The mask after text: agrees with per-token acceptance on a fresh matcher, and a token of
 * string content only is allowed iff it has at most `room` characters (room < 0: no check).
 * Returns the number of allowed tokens. */
static int check_state(const gram *g, const gram_vocab *gv, const tok_vocab *v, const char *text, int room) {
    sh_err e = {{0}};
    int32_t nv = tok_n_tokens(v);
    uint32_t *mask = malloc(gram_vocab_mask_words(gv) * sizeof *mask);
    gram_matcher *m = gram_matcher_init(g, gv, &e), *r = gram_matcher_init(g, gv, &e);
    assert_int_equal(gram_matcher_accept_bytes(m, text, strlen(text)), 0);
    assert_int_equal(gram_matcher_accept_bytes(r, text, strlen(text)), 0);
    int n = gram_matcher_mask(m, mask);
    for (int32_t id = 0; id < nv; id++) {
        bool a = bit(mask, id);
        if (gram_matcher_allows(r, id) != a) fail_msg("after '%s': token %d: mask %d, reference %d", text, id, a, !a);
        size_t len;
        const char *p = tok_piece(v, id, false, &len);
        int c = p && !tok_is_eog(v, id) ? content_chars(p, len) : -1;
        if (room >= 0 && c > 0 && a != (c <= room))
            fail_msg("after '%s': token %d ('%.*s', %d characters) %s with room %d", text, id, (int)len, p, c,
                     a ? "allowed" : "refused", room);
    }
    gram_matcher_free(m);
    gram_matcher_free(r);
    free(mask);
    return n;
}

/* Strings with maxLength / minLength: the mask's string-token shortcut at the bounds (0, 1,
 * exact, above the shortcut's length), multi-byte characters counted once, incomplete
 * characters, and classes it must not take (a pattern, GBNF classes that split the content). */
static void test_bounded_strings(void **state) {
    (void)state;
    sh_err e = {{0}};
    static const struct {
        const char *src;
        bool gbnf;
        const char *text;
        int room;
    } c[] = {
        {"{\"type\":\"string\",\"maxLength\":0}", false, "\"", 0},
        {"{\"type\":\"string\",\"maxLength\":1}", false, "\"", 1},
        {"{\"type\":\"string\",\"maxLength\":1}", false, "\"x", 0},
        {"{\"type\":\"string\",\"maxLength\":1}", false, "\"\xc3\xa9", 0},
        {"{\"type\":\"string\",\"maxLength\":2}", false, "\"\xc3\xa9", 1},
        {"{\"type\":\"string\",\"maxLength\":2}", false, "\"\xe4\xb8", -1},
        {"{\"type\":\"string\",\"maxLength\":3}", false, "\"\xe4\xb8\xad", 2},
        {"{\"type\":\"string\",\"maxLength\":3}", false, "\"ab", 1},
        {"{\"type\":\"string\",\"maxLength\":3}", false, "\"abc", 0},
        {"{\"type\":\"string\",\"maxLength\":3}", false, "\"a\\n", 1},
        {"{\"type\":\"string\",\"maxLength\":3}", false, "\"a\\", -1},
        {"{\"type\":\"string\",\"minLength\":3,\"maxLength\":3}", false, "\"a", 2},
        {"{\"type\":\"string\",\"minLength\":2,\"maxLength\":5}", false, "\"", 5},
        {"{\"type\":\"string\",\"minLength\":60}", false, "\"", -1},
        {"{\"type\":\"string\",\"maxLength\":60}", false, "\"", 60},
        {"{\"type\":\"string\",\"maxLength\":60}", false, "\"0123456789012345678901234567890123456789", 20},
        {"{\"type\":\"string\",\"maxLength\":400}", false, "\"", 400},
        {"{\"type\":\"string\"}", false, "\"abc", 1000},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\",\"maxLength\":4}},\"required\":[\"a\"]}", false,
         "{\"a\": \"xy", 2},
        {"{\"type\":\"string\",\"pattern\":\"^[a-z]{0,5}$\"}", false, "\"ab", -1},
        {"root ::= \"\\\"\" [^\"\\\\\\x00-\\x1f]{0,3} [a-z]* \"\\\"\"", true, "\"a", -1},
        {"root ::= [^\"]{0,2} | [\\u00e9]*", true, "", -1},
        {"root ::= [ -\\U0010FFFF]{0,2} \"!\"", true, "", -1},
        {"root ::= ([\\x20-\\x21\\x23-\\x5b\\x5d-\\uffff] | [\\U00010000-\\U0010ffff]){0,2} \"!\"", true, "", -1},
    };
    for (size_t k = 0; k < sizeof VOCABS / sizeof *VOCABS; k++) {
        char path[256];
        snprintf(path, sizeof path, "tests/data/vocab/%s", VOCABS[k]);
        tok_vocab *v = tok_vocab_load(path, &e);
        assert_non_null(v);
        gram_vocab *gv = gram_vocab_init(v, &e);
        assert_non_null(gv);
        for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
            gram *g = c[i].gbnf ? gram_from_gbnf(c[i].src, strlen(c[i].src), &e)
                                : gram_from_json_schema(c[i].src, strlen(c[i].src), &e);
            if (!g) fail_msg("%s: %s", c[i].src, e.msg);
            int n = check_state(g, gv, v, c[i].text, c[i].room);
            assert_true(n > 0);
            gram_free(g);
        }
        /* walks through bounded strings near their limits */
        const char *s = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\",\"maxLength\":3},"
                        "\"b\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":12},\"c\":{\"type\":\"array\","
                        "\"items\":{\"type\":\"string\",\"maxLength\":1},\"maxItems\":3}},\"required\":[\"a\",\"b\",\"c\"]}";
        json_t *schema = json_loads(s, 0, NULL);
        gram *g = gram_from_json_schema(s, strlen(s), &e);
        assert_non_null(g);
        random_walks(g, gv, v, schema, 3000 + k, 6, true);
        gram_free(g);
        json_decref(schema);
        gram_vocab_free(gv);
        tok_vocab_free(v);
    }
}

/* Random grammars of bounded repetitions over classes that agree with the string content or
 * split it, followed by various continuations: along random allowed-token walks, every mask
 * agrees with per-token acceptance. */
static void test_bounded_random(void **state) {
    (void)state;
    sh_err e = {{0}};
    static const char *cls[] = {
        "[^\"\\\\\\x00-\\x1f]", "[^\"]", "[ -~]", "[\\u0080-\\U0010ffff]", "[a-z]", "[^\\x00-\\x1f]",
        "([^\"\\\\\\x00-\\x1f] | \"\\\\\" [nt\"])", "[ -!#-\\[\\]-\\U0010ffff]", "[ -!#-\\[\\]-\\ud7ff]", "[\\x20-\\x7f]",
    };
    static const char *tail[] = {"\"\\\"\"", "[a-z]* \"!\"", "", "X", "\"\\\"\" [0-9]+", "[^a]{0,3} \"\\\"\""};
    tok_vocab *v = tok_vocab_load("tests/data/vocab/ggml-vocab-qwen2.gguf", &e);
    assert_non_null(v);
    gram_vocab *gv = gram_vocab_init(v, &e);
    int32_t nv = tok_n_tokens(v);
    uint32_t *mask = malloc(gram_vocab_mask_words(gv) * sizeof *mask);
    int32_t *allowed = malloc((size_t)nv * sizeof *allowed);
    uint64_t seed = 99;
    for (int it = 0; it < 40; it++) {
        const char *x = cls[tu_rand(&seed) % (sizeof cls / sizeof *cls)];
        const char *y = tail[tu_rand(&seed) % (sizeof tail / sizeof *tail)];
        const char *x2 = cls[tu_rand(&seed) % (sizeof cls / sizeof *cls)];
        unsigned lo = (unsigned)(tu_rand(&seed) % 4), hi = lo + (unsigned)(tu_rand(&seed) % 70);
        char src[512];
        if (!strcmp(y, "X")) snprintf(src, sizeof src, "root ::= \"\\\"\" %s{%u,%u} %s* \"\\\"\"", x, lo, hi, x2);
        else snprintf(src, sizeof src, "root ::= \"\\\"\" %s{%u,%u} %s", x, lo, hi, y);
        gram *g = gram_from_gbnf(src, strlen(src), &e);
        if (!g) fail_msg("%s: %s", src, e.msg);
        gram_matcher *m = gram_matcher_init(g, gv, &e);
        char text[4096];
        size_t tn = 0;
        for (int step = 0; step < 12; step++) {
            int n = gram_matcher_mask(m, mask);
            if (n <= 0) break;
            gram_matcher *r = gram_matcher_init(g, gv, &e);
            assert_int_equal(gram_matcher_accept_bytes(r, text, tn), 0);
            size_t na = 0;
            for (int32_t id = 0; id < nv; id++) {
                bool a = bit(mask, id);
                if (gram_matcher_allows(r, id) != a)
                    fail_msg("%s after '%.*s': token %d: mask %d, reference %d", src, (int)tn, text, id, a, !a);
                if (a && !tok_is_eog(v, id)) allowed[na++] = id;
            }
            gram_matcher_free(r);
            if (!na) break;
            int32_t pick = allowed[tu_rand(&seed) % na];
            size_t len;
            const char *p = tok_piece(v, pick, false, &len);
            if (tn + len >= sizeof text) break;
            assert_int_equal(gram_matcher_accept(m, pick), 0);
            memcpy(text + tn, p, len);
            tn += len;
        }
        gram_matcher_free(m);
        gram_free(g);
    }
    free(mask);
    free(allowed);
    gram_vocab_free(gv);
    tok_vocab_free(v);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gbnf_match),       cmocka_unit_test(test_gbnf_errors),
        cmocka_unit_test(test_schema_match),     cmocka_unit_test(test_schema_refused),
        cmocka_unit_test(test_json_object_mode), cmocka_unit_test(test_utf8_split),
        cmocka_unit_test(test_tokens),           cmocka_unit_test(test_tokens_utf8),
        cmocka_unit_test(test_recursive_and_cache), cmocka_unit_test(test_bounded_strings),
        cmocka_unit_test(test_bounded_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
