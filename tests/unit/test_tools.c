/*
 * Unit tests for api/tools: the conversation in each format, the calls' grammar (it accepts
 * exactly well-formed calls to the declared functions), and parsing the model's text.
 */
#include "testutil.h"

#include <jansson.h>

#include "api/oai_req.h"
#include "api/tools.h"
#include "grammar/grammar.h"

static const char *REQ =
    "{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
    "{\"role\":\"user\",\"content\":\"lights\"},"
    "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\","
    "\"function\":{\"name\":\"set_lights\",\"arguments\":\"{\\\"room\\\":\\\"hall\\\"}\"}}]},"
    "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"done\"},"
    "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"again\"}],"
    "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"set_lights\",\"parameters\":{\"type\":\"object\","
    "\"properties\":{\"room\":{\"type\":\"string\",\"enum\":[\"hall\",\"kitchen\"]},"
    "\"level\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":100}},\"required\":[\"room\"]}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"get_time\"}}]";

static void parse(const char *extra, oai_request *r) {
    char body[4096];
    snprintf(body, sizeof body, "%s%s}", REQ, extra);
    oai_error e;
    int rc = oai_parse_request(OAI_CHAT, body, strlen(body), r, &e);
    if (rc) fprintf(stderr, "parse: %s\n", e.message);
    assert_int_equal(rc, 0);
}

static bool matches(const oai_tools_plan *p, const char *text) {
    sh_err err = {{0}};
    gram *g = gram_from_gbnf(p->gbnf, strlen(p->gbnf), &err);
    if (!g) fprintf(stderr, "grammar: %s\n%s\n", err.msg, p->gbnf);
    assert_non_null(g);
    bool ok = gram_match(g, text, strlen(text));
    gram_free(g);
    return ok;
}

static void test_hermes_messages(void **st) {
    (void)st;
    oai_request r;
    parse("", &r);
    oai_tools_plan p;
    oai_error e;
    assert_int_equal(oai_tools_plan_init(&r, TOK_CHAT_CHATML, &p, &e), 0);
    assert_int_equal(p.fmt, OAI_TOOLFMT_HERMES);
    assert_true(p.calls);
    assert_string_equal(p.trigger, "<tool_call>");
    /* system (with the tools), user, assistant (the call), one user turn with both results */
    assert_int_equal(p.n_msgs, 4);
    assert_string_equal(p.msgs[0].role, "system");
    assert_non_null(strstr(p.msgs[0].content, "Be brief.\n\n# Tools"));
    assert_non_null(strstr(p.msgs[0].content, "<tools>\n{\"type\":\"function\",\"function\":{\"name\":\"set_lights\""));
    assert_string_equal(p.msgs[2].content,
                        "<tool_call>\n{\"name\": \"set_lights\", \"arguments\": {\"room\":\"hall\"}}\n</tool_call>");
    assert_string_equal(p.msgs[3].role, "user");
    assert_string_equal(p.msgs[3].content,
                        "<tool_response>\ndone\n</tool_response>\n<tool_response>\nagain\n</tool_response>");
    oai_tools_plan_free(&p);
    oai_request_free(&r);
}

static void test_hermes_grammar(void **st) {
    (void)st;
    oai_request r;
    parse(",\"tool_choice\":\"required\"", &r);
    oai_tools_plan p;
    oai_error e;
    assert_int_equal(oai_tools_plan_init(&r, TOK_CHAT_CHATML, &p, &e), 0);
    assert_null(p.trigger); /* required: constrained from the first token */
    assert_true(matches(&p, "<tool_call>\n{\"name\": \"set_lights\", \"arguments\": {\"room\": \"kitchen\", \"level\": 40}}\n</tool_call>"));
    assert_true(matches(&p, "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>\n"
                            "<tool_call>\n{\"name\": \"set_lights\", \"arguments\": {\"room\": \"hall\"}}\n</tool_call>"));
    assert_false(matches(&p, "<tool_call>\n{\"name\": \"set_lights\", \"arguments\": {\"room\": \"attic\"}}\n</tool_call>"));
    assert_false(matches(&p, "<tool_call>\n{\"name\": \"set_lights\", \"arguments\": {\"level\": 40}}\n</tool_call>"));
    assert_false(matches(&p, "<tool_call>\n{\"name\": \"set_lights\", \"arguments\": {\"room\": \"hall\", \"level\": 101}}\n</tool_call>"));
    assert_false(matches(&p, "<tool_call>\n{\"name\": \"reboot\", \"arguments\": {}}\n</tool_call>"));
    assert_false(matches(&p, "sure!"));
    oai_tools_plan_free(&p);
    oai_request_free(&r);
    /* no parallel calls: one */
    parse(",\"tool_choice\":\"required\",\"parallel_tool_calls\":false", &r);
    assert_int_equal(oai_tools_plan_init(&r, TOK_CHAT_CHATML, &p, &e), 0);
    assert_false(matches(&p, "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>\n"
                             "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>"));
    oai_tools_plan_free(&p);
    oai_request_free(&r);
    /* a named function: only it */
    parse(",\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"get_time\"}}", &r);
    assert_int_equal(oai_tools_plan_init(&r, TOK_CHAT_CHATML, &p, &e), 0);
    assert_true(matches(&p, "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>"));
    assert_false(matches(&p, "<tool_call>\n{\"name\": \"set_lights\", \"arguments\": {\"room\": \"hall\"}}\n</tool_call>"));
    oai_tools_plan_free(&p);
    oai_request_free(&r);
}

static void test_llama3(void **st) {
    (void)st;
    oai_request r;
    parse("", &r);
    oai_tools_plan p;
    oai_error e;
    assert_int_equal(oai_tools_plan_init(&r, TOK_CHAT_LLAMA3, &p, &e), 0);
    assert_int_equal(p.fmt, OAI_TOOLFMT_LLAMA3);
    assert_string_equal(p.msgs[2].content, "{\"name\": \"set_lights\", \"parameters\": {\"room\":\"hall\"}}");
    assert_string_equal(p.msgs[3].role, "ipython");
    assert_string_equal(p.msgs[4].role, "ipython");
    assert_true(matches(&p, "{\"name\": \"set_lights\", \"parameters\": {\"room\": \"hall\"}}"));
    assert_false(matches(&p, "{\"name\": \"set_lights\", \"arguments\": {\"room\": \"hall\"}}"));
    oai_tool_call *c;
    size_t n;
    const char *t = "  {\"name\": \"set_lights\", \"parameters\": {\"room\": \"hall\", \"level\": 3}}\n";
    assert_int_equal(oai_tools_parse(&p, t, strlen(t), &c, &n), 1);
    assert_int_equal(n, 1);
    assert_string_equal(c[0].name, "set_lights");
    assert_string_equal(c[0].arguments, "{\"room\":\"hall\",\"level\":3}");
    assert_memory_equal(c[0].id, "call_", 5);
    oai_tool_calls_free(c, n);
    oai_tools_plan_free(&p);
    oai_request_free(&r);
}

static void test_parse_and_trigger(void **st) {
    (void)st;
    oai_tools_plan p = {.fmt = OAI_TOOLFMT_HERMES, .trigger = (char *)"<tool_call>"};
    oai_tool_call *c;
    size_t n;
    const char *two = "\n<tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": [1, 2]}}\n</tool_call>\n"
                      "<tool_call>\n{\"name\": \"b\", \"arguments\": {}}\n</tool_call>";
    assert_int_equal(oai_tools_parse(&p, two, strlen(two), &c, &n), 1);
    assert_int_equal(n, 2);
    assert_string_equal(c[0].name, "a");
    assert_string_equal(c[0].arguments, "{\"x\":[1,2]}");
    assert_string_equal(c[1].name, "b");
    assert_string_not_equal(c[0].id, c[1].id);
    oai_tool_calls_free(c, n);
    const char *bad[] = {"hello", "<tool_call>\n{\"name\": \"a\"}\n</tool_call>",
                         "<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n", /* cut short */
                         "<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call> and text", ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(oai_tools_parse(&p, bad[i], strlen(bad[i]), &c, &n), 0);
        assert_null(c);
        assert_int_equal(n, 0);
    }
    assert_true(oai_tools_may_open(&p, "  <tool", 7));
    assert_false(oai_tools_opens(&p, "  <tool", 7));
    assert_true(oai_tools_opens(&p, "\n<tool_call>\n{", 14));
    assert_false(oai_tools_may_open(&p, "Sure", 4));
}

static void test_none_lists_tools_without_grammar(void **st) {
    (void)st;
    oai_request r;
    parse(",\"tool_choice\":\"none\"", &r);
    oai_tools_plan p;
    oai_error e;
    assert_int_equal(oai_tools_plan_init(&r, TOK_CHAT_CHATML, &p, &e), 0);
    assert_false(p.calls);
    assert_null(p.gbnf);
    assert_null(p.trigger);
    assert_non_null(strstr(p.msgs[0].content, "<tools>"));
    oai_tools_plan_free(&p);
    oai_request_free(&r);
}

static void test_unenforceable_schema(void **st) {
    (void)st;
    const char *body = "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\","
                       "\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"object\",\"properties\":"
                       "{\"n\":{\"type\":\"integer\",\"multipleOf\":5}}}}}]}";
    oai_request r;
    oai_error e;
    assert_int_equal(oai_parse_request(OAI_CHAT, body, strlen(body), &r, &e), 0);
    oai_tools_plan p;
    assert_int_equal(oai_tools_plan_init(&r, TOK_CHAT_CHATML, &p, &e), -1);
    assert_int_equal(e.status, 400);
    assert_string_equal(e.param, "tools[0].function.parameters");
    assert_non_null(strstr(e.message, "multipleOf"));
    oai_request_free(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hermes_messages),
        cmocka_unit_test(test_hermes_grammar),
        cmocka_unit_test(test_llama3),
        cmocka_unit_test(test_parse_and_trigger),
        cmocka_unit_test(test_none_lists_tools_without_grammar),
        cmocka_unit_test(test_unenforceable_schema),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
