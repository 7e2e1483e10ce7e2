/*
 * Unit tests: api/oai_req — OpenAI request bodies into C structs: defaults, every field, the
 * accepted shapes of prompt / content / stop / input, and the 4xx errors for bad input.
 */
#include "testutil.h"

#include "api/oai_req.h"

static int parse(oai_kind k, const char *body, oai_request *r, oai_error *e) {
    return oai_parse_request(k, body, strlen(body), r, e);
}

/* Expects a 400 naming `param` (NULL: no param) with `needle` in the message. */
static void expect_error(oai_kind k, const char *body, const char *param, const char *needle) {
    oai_request r;
    oai_error e;
    memset(&e, 0, sizeof e);
    if (parse(k, body, &r, &e) == 0) fail_msg("accepted: %s", body);
    assert_int_equal(e.status, 400);
    assert_string_equal(e.type, "invalid_request_error");
    if (param) assert_string_equal(e.param, param);
    if (!strstr(e.message, needle)) fail_msg("'%s' lacks '%s' (body %s)", e.message, needle, body);
    assert_null(r.model); /* nothing left allocated */
}

static void test_completion_defaults(void **state) {
    (void)state;
    oai_request r;
    oai_error e;
    assert_int_equal(parse(OAI_COMPLETION, "{\"prompt\":\"Hello\"}", &r, &e), 0);
    assert_null(r.model);
    assert_string_equal(r.prompt, "Hello");
    assert_int_equal(r.max_tokens, 16);
    assert_true(r.temperature == 1.0f && r.top_p == 1.0f && r.repeat_penalty == 1.0f);
    assert_false(r.stream || r.has_seed || r.logprobs || r.has_deadline);
    assert_int_equal(r.n_stop, 0);
    oai_request_free(&r);
    oai_request_free(NULL);
}

static void test_completion_all_fields(void **state) {
    (void)state;
    const char *body =
        "{\"model\":\"smol\",\"prompt\":[\"Once upon\"],\"max_tokens\":32.0,\"temperature\":0.7,"
        "\"top_p\":0.9,\"top_k\":40,\"min_p\":0.05,\"seed\":-3,\"stop\":[\"\\n\",\"\",\"END\"],"
        "\"presence_penalty\":0.5,\"frequency_penalty\":-0.5,\"repeat_penalty\":1.1,"
        "\"logprobs\":3,\"stream\":true,\"stream_options\":{\"include_usage\":true},"
        "\"user\":\"u1\",\"deadline_ms\":80,\"priority\":5,\"echo\":false,\"unknown_field\":{}}";
    oai_request r;
    oai_error e;
    if (parse(OAI_COMPLETION, body, &r, &e)) fail_msg("%s", e.message);
    assert_string_equal(r.model, "smol");
    assert_string_equal(r.prompt, "Once upon");
    assert_int_equal(r.max_tokens, 32);
    assert_true(r.temperature == 0.7f && r.top_p == 0.9f && r.min_p == 0.05f);
    assert_int_equal(r.top_k, 40);
    assert_true(r.has_seed);
    assert_int_equal((int64_t)r.seed, -3);
    assert_int_equal(r.n_stop, 2); /* the empty one is dropped */
    assert_string_equal(r.stop[0], "\n");
    assert_string_equal(r.stop[1], "END");
    assert_true(r.presence_penalty == 0.5f && r.frequency_penalty == -0.5f && r.repeat_penalty == 1.1f);
    assert_true(r.logprobs);
    assert_int_equal(r.top_logprobs, 3);
    assert_true(r.stream && r.include_usage);
    assert_string_equal(r.user, "u1");
    assert_true(r.has_deadline && r.deadline_ms == 80);
    assert_int_equal(r.priority, 5);
    oai_request_free(&r);
}

static void test_completion_token_prompt(void **state) {
    (void)state;
    oai_request r;
    oai_error e;
    assert_int_equal(parse(OAI_COMPLETION, "{\"prompt\":[[1, 15043, 3186]]}", &r, &e), 0);
    assert_null(r.prompt);
    assert_int_equal(r.n_prompt_ids, 3);
    assert_int_equal(r.prompt_ids[1], 15043);
    oai_request_free(&r);
}

static void test_chat(void **state) {
    (void)state;
    const char *body =
        "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Hi \"},{\"type\":\"text\","
        "\"text\":\"there \\u00e9\"}]},{\"role\":\"assistant\",\"content\":null}],"
        "\"max_completion_tokens\":5,\"logprobs\":true,\"top_logprobs\":2,\"stop\":\"x\"}";
    oai_request r;
    oai_error e;
    if (parse(OAI_CHAT, body, &r, &e)) fail_msg("%s", e.message);
    assert_int_equal(r.n_messages, 3);
    assert_string_equal(r.messages[0].role, "system");
    assert_string_equal(r.messages[1].content, "Hi there \xc3\xa9");
    assert_string_equal(r.messages[2].content, "");
    assert_int_equal(r.max_tokens, 5);
    assert_true(r.logprobs);
    assert_int_equal(r.top_logprobs, 2);
    assert_int_equal(r.n_stop, 1);
    oai_request_free(&r);
    assert_int_equal(parse(OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", &r, &e), 0);
    assert_int_equal(r.max_tokens, -1); /* chat: no limit but the context */
    oai_request_free(&r);
}

static void test_embeddings(void **state) {
    (void)state;
    oai_request r;
    oai_error e;
    assert_int_equal(parse(OAI_EMBEDDING, "{\"input\":[\"a\",\"bc\"],\"model\":\"e\"}", &r, &e), 0);
    assert_int_equal(r.n_inputs, 2);
    assert_string_equal(r.inputs[1], "bc");
    oai_request_free(&r);
    assert_int_equal(parse(OAI_EMBEDDING, "{\"input\":\"one\",\"encoding_format\":\"float\"}", &r, &e), 0);
    assert_int_equal(r.n_inputs, 1);
    oai_request_free(&r);
}

static void test_errors(void **state) {
    (void)state;
    expect_error(OAI_COMPLETION, "{\"prompt\":", NULL, "invalid JSON");
    expect_error(OAI_COMPLETION, "[1,2]", NULL, "JSON object");
    expect_error(OAI_COMPLETION, "{\"prompt\":\"a\",\"prompt\":\"b\"}", NULL, "duplicate");
    expect_error(OAI_COMPLETION, "{\"prompt\":\"\\ud800\"}", NULL, "invalid JSON");   /* lone surrogate */
    expect_error(OAI_COMPLETION, "{\"prompt\":\"a\\u0000b\"}", NULL, "invalid JSON"); /* NUL */
    expect_error(OAI_COMPLETION, "{\"prompt\":\"\xff\xfe\"}", NULL, "invalid JSON");   /* bad UTF-8 */
    expect_error(OAI_COMPLETION, "{}", "prompt", "required");
    expect_error(OAI_COMPLETION, "{\"prompt\":\"\"}", "prompt", "empty");
    expect_error(OAI_COMPLETION, "{\"prompt\":[\"a\",\"b\"]}", "prompt", "several prompts");
    expect_error(OAI_COMPLETION, "{\"prompt\":[1,-2]}", "prompt", "not a valid token id");
    expect_error(OAI_COMPLETION, "{\"prompt\":5}", "prompt", "must be");
    expect_error(OAI_COMPLETION, "{\"prompt\":\"a\",\"max_tokens\":\"10\"}", "max_tokens", "an integer");
    expect_error(OAI_COMPLETION, "{\"prompt\":\"a\",\"max_tokens\":0}", "max_tokens", "needs 'echo'");
    expect_error(OAI_COMPLETION, "{\"prompt\":\"a\",\"max_tokens\":-1}", "max_tokens", "between");
    expect_error(OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"max_tokens\":0}", "max_tokens", "between");
    expect_error(OAI_COMPLETION, "{\"prompt\":\"a\",\"cache\":1}", "cache", "boolean");
    expect_error(OAI_COMPLETION, "{\"prompt\":\"a\",\"stream\":true,\"return_token_ids\":true}", "return_token_ids", "stream");
    expect_error(OAI_COMPLETION, "{\"prompt\":\"a\",\"temperature\":3}", "temperature", "between 0 and 2");
    expect_error(OAI_COMPLETION, "{\"prompt\":\"a\",\"top_p\":true}", "top_p", "a number");
    expect_error(OAI_COMPLETION, "{\"prompt\":\"a\",\"n\":2}", "n", "not supported");
    expect_error(OAI_COMPLETION, "{\"prompt\":\"a\",\"stop\":[\"1\",\"2\",\"3\",\"4\",\"5\"]}", "stop", "at most 4");
    expect_error(OAI_COMPLETION, "{\"prompt\":\"a\",\"stop\":[1]}", "stop", "strings");
    expect_error(OAI_COMPLETION, "{\"prompt\":\"a\",\"stream_options\":{\"include_usage\":true}}", "stream_options", "only allowed");
    expect_error(OAI_COMPLETION, "{\"prompt\":\"a\",\"logprobs\":9}", "logprobs", "between 0 and 5");
    expect_error(OAI_COMPLETION, "{\"prompt\":\"a\",\"deadline_ms\":0}", "deadline_ms", "> 0");
    expect_error(OAI_COMPLETION, "{\"prompt\":\"a\",\"priority\":1000}", "priority", "between");
    expect_error(OAI_COMPLETION, "{\"prompt\":\"a\",\"seed\":1.5}", "seed", "an integer");
    expect_error(OAI_COMPLETION, "{\"prompt\":\"a\",\"model\":7}", "model", "a string");
    expect_error(OAI_CHAT, "{\"messages\":[]}", "messages", "empty");
    expect_error(OAI_CHAT, "{\"messages\":{}}", "messages", "an array");
    expect_error(OAI_CHAT, "{\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}", "messages[0].role", "unknown role");
    expect_error(OAI_CHAT, "{\"messages\":[{\"content\":\"x\"}]}", "messages[0].role", "a string");
    expect_error(OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", "messages[0].content", "only text");
    expect_error(OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_logprobs\":3}", "top_logprobs", "needs");
    expect_error(OAI_EMBEDDING, "{\"input\":[]}", "input", "empty");
    expect_error(OAI_EMBEDDING, "{\"input\":[\"a\",3]}", "input", "strings");
    expect_error(OAI_EMBEDDING, "{\"input\":\"a\",\"encoding_format\":\"hex\"}", "encoding_format", "'float' or 'base64'");
    expect_error(OAI_EMBEDDING, "{\"input\":\"a\",\"dimensions\":8}", "dimensions", "not supported");
    expect_error(OAI_EMBEDDING, "{\"input\":[[1,2],\"a\"]}", "input", "token ids");
    expect_error(OAI_EMBEDDING, "{\"input\":[[]]}", "input", "empty");
    expect_error(OAI_CLASSIFY, "{\"input\":[1,2]}", "input", "only accepted by /v1/embeddings");
    expect_error(OAI_CLASSIFY, "{}", "input", "required");
    expect_error(OAI_RERANK, "{\"documents\":[\"a\"]}", "query", "required");
    expect_error(OAI_RERANK, "{\"query\":\"q\"}", "documents", "required");
    expect_error(OAI_RERANK, "{\"query\":\"q\",\"documents\":[]}", "documents", "empty");
    expect_error(OAI_RERANK, "{\"query\":\"q\",\"documents\":[3]}", "documents", "strings");
    expect_error(OAI_RERANK, "{\"query\":\"q\",\"documents\":[\"a\"],\"top_n\":0}", "top_n", "between");
    expect_error(OAI_RERANK, "{\"query\":\"\",\"documents\":[\"a\"]}", "query", "empty");
}

static void test_encoder_shapes(void **state) {
    (void)state;
    oai_request r;
    oai_error e;
    assert_int_equal(parse(OAI_EMBEDDING, "{\"input\":[5,6,7],\"encoding_format\":\"base64\",\"truncate\":true}", &r, &e), 0);
    assert_int_equal(r.n_inputs, 1);
    assert_null(r.inputs);
    assert_int_equal(r.n_input_ids[0], 3);
    assert_int_equal(r.input_ids[0][2], 7);
    assert_true(r.base64 && r.truncate);
    oai_request_free(&r);
    assert_int_equal(parse(OAI_EMBEDDING, "{\"input\":[[1],[2,3]]}", &r, &e), 0);
    assert_int_equal(r.n_inputs, 2);
    assert_int_equal(r.n_input_ids[1], 2);
    oai_request_free(&r);
    assert_int_equal(parse(OAI_CLASSIFY, "{\"input\":[\"turn on\",\"hi\"],\"priority\":5,\"deadline_ms\":20}", &r, &e), 0);
    assert_int_equal(r.n_inputs, 2);
    assert_true(r.has_deadline && r.deadline_ms == 20 && r.priority == 5);
    oai_request_free(&r);
    assert_int_equal(parse(OAI_RERANK, "{\"model\":\"rr\",\"query\":\"q\",\"documents\":[\"a\",{\"text\":\"b\"}],\"top_n\":1,\"return_documents\":true}", &r, &e), 0);
    assert_string_equal(r.query, "q");
    assert_int_equal(r.n_documents, 2);
    assert_string_equal(r.documents[1], "b");
    assert_true(r.top_n == 1 && r.return_documents && !r.tei);
    oai_request_free(&r);
    assert_int_equal(parse(OAI_RERANK, "{\"query\":\"q\",\"texts\":[\"a\"],\"return_text\":true}", &r, &e), 0);
    assert_true(r.tei && r.return_text);
    oai_request_free(&r);
}

static void test_error_body(void **state) {
    (void)state;
    oai_error e;
    oai_errorf(&e, 404, "invalid_request_error", "model", "The model '%s' does not exist", "x\"y");
    e.code = "model_not_found";
    char *b = oai_error_body(&e);
    assert_string_equal(b, "{\"error\":{\"message\":\"The model 'x\\\"y' does not exist\",\"type\":"
                           "\"invalid_request_error\",\"param\":\"model\",\"code\":\"model_not_found\"}}");
    free(b);
}

/* A parse error that quotes invalid UTF-8 from the body still yields a valid error body. */
static void test_error_body_invalid_utf8(void **state) {
    (void)state;
    const char body[] = "{\"prompt\":\"Hello\",\"\":[\"n\\\xde\xa1,\"em\",\"co";
    oai_request r;
    oai_error e;
    assert_int_equal(oai_parse_request(OAI_COMPLETION, body, sizeof body - 1, &r, &e), -1);
    char *b = oai_error_body(&e);
    assert_non_null(b);
    assert_non_null(strstr(b, "invalid JSON"));
    free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_completion_defaults), cmocka_unit_test(test_completion_all_fields),
        cmocka_unit_test(test_completion_token_prompt), cmocka_unit_test(test_chat),
        cmocka_unit_test(test_embeddings), cmocka_unit_test(test_errors),
        cmocka_unit_test(test_encoder_shapes),
        cmocka_unit_test(test_error_body), cmocka_unit_test(test_error_body_invalid_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
