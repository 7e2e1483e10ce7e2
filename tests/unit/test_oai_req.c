/*
 * Unit tests: api/oai_req — OpenAI request bodies into C structs: defaults, every field, the
 * accepted shapes of prompt / content / stop / input, tools, response formats, the Responses
 * API's input items, the documented no-ops, and the 4xx errors for bad input, refused fields
 * and unknown fields at every level.
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
    assert_null(r.messages);
    assert_null(r.tools);
}

/* The same, also checking the error code (unknown_parameter, unsupported_parameter, ...). */
static void expect_code(oai_kind k, const char *body, const char *param, const char *code,
                        const char *needle) {
    expect_error(k, body, param, needle);
    oai_request r;
    oai_error e;
    memset(&e, 0, sizeof e);
    assert_int_equal(parse(k, body, &r, &e), -1);
    if (!e.code || strcmp(e.code, code)) fail_msg("code %s, not %s (body %s)", e.code ? e.code : "null", code, body);
}

#define UNKNOWN(k, body, param) expect_code(k, body, param, "unknown_parameter", "unknown field '" param "'")
#define REFUSED(k, body, param, needle) expect_code(k, body, param, "unsupported_parameter", needle)

static void expect_ok(oai_kind k, const char *body, oai_request *r) {
    oai_error e;
    if (parse(k, body, r, &e)) fail_msg("refused (%s: %s): %s", e.param, e.message, body);
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
        "\"user\":\"u1\",\"deadline_ms\":80,\"priority\":5,\"echo\":false,\"n\":3,\"best_of\":3,"
        "\"suffix\":\"\",\"logit_bias\":{\"50256\":-100,\"7\":2.5},\"metadata\":{\"task\":\"x\"},"
        "\"cache\":false,\"response_format\":{\"type\":\"json_object\"}}";
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
    assert_int_equal(r.n, 3);
    assert_int_equal(r.n_logit_bias, 2);
    assert_int_equal(r.logit_bias_ids[0], 50256);
    assert_true(r.logit_bias[0] == -100.0f && r.logit_bias[1] == 2.5f);
    assert_string_equal(r.metadata, "{\"task\":\"x\"}");
    assert_true(r.cache_off);
    assert_int_equal(r.format, OAI_FORMAT_JSON_OBJECT);
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
    assert_int_equal(r.dimensions, 0);
    oai_request_free(&r);
    expect_ok(OAI_EMBEDDING, "{\"input\":\"one\",\"dimensions\":256,\"user\":\"u\",\"metadata\":{\"k\":\"v\"}}", &r);
    assert_int_equal(r.dimensions, 256);
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
    expect_error(OAI_COMPLETION, "{\"prompt\":\"a\",\"n\":17}", "n", "between 1 and 16");
    expect_error(OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":0}", "n", "between 1 and 16");
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
    expect_error(OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", "messages[0].content[0].type", "shoal serves text models");
    expect_error(OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_logprobs\":3}", "top_logprobs", "needs");
    expect_error(OAI_EMBEDDING, "{\"input\":[]}", "input", "empty");
    expect_error(OAI_EMBEDDING, "{\"input\":[\"a\",3]}", "input", "strings");
    expect_error(OAI_EMBEDDING, "{\"input\":\"a\",\"encoding_format\":\"hex\"}", "encoding_format", "'float' or 'base64'");
    expect_error(OAI_EMBEDDING, "{\"input\":\"a\",\"dimensions\":0}", "dimensions", "between");
    expect_error(OAI_EMBEDDING, "{\"input\":\"a\",\"dimensions\":\"8\"}", "dimensions", "an integer");
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

/* ---- unknown fields, at every level -------------------------------------------------- */
static void test_unknown_fields(void **state) {
    (void)state;
    UNKNOWN(OAI_COMPLETION, "{\"prompt\":\"a\",\"frobnicate\":{}}", "frobnicate");
    UNKNOWN(OAI_COMPLETION, "{\"prompt\":\"a\",\"top_logprobs\":2}", "top_logprobs"); /* chat's */
    UNKNOWN(OAI_COMPLETION, "{\"prompt\":\"a\",\"tools\":[]}", "tools");
    UNKNOWN(OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"echo\":true}", "echo");
    UNKNOWN(OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_output_tokens\":3}", "max_output_tokens");
    UNKNOWN(OAI_EMBEDDING, "{\"input\":\"a\",\"temperature\":1}", "temperature");
    UNKNOWN(OAI_CLASSIFY, "{\"input\":\"a\",\"dimensions\":3}", "dimensions");
    UNKNOWN(OAI_RERANK, "{\"query\":\"q\",\"documents\":[\"a\"],\"input\":\"x\"}", "input");
    UNKNOWN(OAI_RESPONSES, "{\"input\":\"a\",\"messages\":[]}", "messages");
    UNKNOWN(OAI_RESPONSES, "{\"input\":\"a\",\"max_tokens\":5}", "max_tokens");
    /* nested objects */
    UNKNOWN(OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"colour\":1}]}", "messages[0].colour");
    UNKNOWN(OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"tool_calls\":[]}]}", "messages[0].tool_calls");
    UNKNOWN(OAI_CHAT, "{\"messages\":[{\"role\":\"system\",\"content\":\"x\",\"tool_call_id\":\"c\"}]}", "messages[0].tool_call_id");
    UNKNOWN(OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\",\"x\":1}]}]}", "messages[0].content[0].x");
    UNKNOWN(OAI_CHAT, "{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\",\"x\":1}}]}]}",
            "messages[0].tool_calls[0].function.x");
    UNKNOWN(OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"},\"x\":1}]}", "tools[0].x");
    UNKNOWN(OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"params\":{}}}]}", "tools[0].function.params");
    UNKNOWN(OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],"
            "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"f\"},\"x\":1}}", "tool_choice.x");
    UNKNOWN(OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"text\",\"x\":1}}", "response_format.x");
    UNKNOWN(OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"schema\":{},\"x\":1}}}",
            "response_format.json_schema.x");
    UNKNOWN(OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream\":true,\"stream_options\":{\"x\":1}}", "stream_options.x");
    UNKNOWN(OAI_RESPONSES, "{\"input\":\"a\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}", "stream_options.include_usage");
    UNKNOWN(OAI_RESPONSES, "{\"input\":[{\"role\":\"user\",\"content\":\"a\",\"x\":1}]}", "input[0].x");
    UNKNOWN(OAI_RESPONSES, "{\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":\"a\",\"x\":1}]}]}", "input[0].content[0].x");
    UNKNOWN(OAI_RESPONSES, "{\"input\":[{\"type\":\"function_call\",\"call_id\":\"c\",\"name\":\"f\",\"arguments\":\"{}\",\"x\":1}]}", "input[0].x");
    UNKNOWN(OAI_RESPONSES, "{\"input\":\"a\",\"text\":{\"format\":{\"type\":\"json_schema\",\"schema\":{},\"json_schema\":{}}}}", "text.format.json_schema");
    UNKNOWN(OAI_RESPONSES, "{\"input\":\"a\",\"text\":{\"x\":1}}", "text.x");
    UNKNOWN(OAI_RESPONSES, "{\"input\":\"a\",\"reasoning\":{\"x\":1}}", "reasoning.x");
    UNKNOWN(OAI_RESPONSES, "{\"input\":\"a\",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]}", "tools[0].function");
    UNKNOWN(OAI_RERANK, "{\"query\":\"q\",\"documents\":[{\"text\":\"a\",\"id\":1}]}", "documents[0].id");
}

/* ---- chat: tools, tool calls, tool messages --------------------------------------------- */
static void test_chat_tools(void **state) {
    (void)state;
    oai_request r;
    expect_ok(OAI_CHAT,
              "{\"messages\":[{\"role\":\"system\",\"content\":\"s\",\"name\":\"boss\"},"
              "{\"role\":\"user\",\"content\":\"weather?\"},"
              "{\"role\":\"assistant\",\"content\":null,\"refusal\":null,\"tool_calls\":["
              "{\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Oslo\\\"}\"}},"
              "{\"function\":{\"name\":\"get_time\",\"arguments\":{\"tz\":\"CET\"}}}]},"
              "{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"name\":\"get_weather\",\"content\":[{\"type\":\"text\",\"text\":\"rain\"}]}],"
              "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"d\","
              "\"parameters\":{\"type\":\"object\",\"properties\":{\"z\":{},\"a\":{}}},\"strict\":true}},"
              "{\"type\":\"function\",\"function\":{\"name\":\"get_time\"}}],"
              "\"tool_choice\":\"required\",\"parallel_tool_calls\":false}",
              &r);
    assert_int_equal(r.n_messages, 4);
    assert_string_equal(r.messages[0].name, "boss");
    assert_null(r.messages[1].name);
    assert_string_equal(r.messages[2].content, "");
    assert_int_equal(r.messages[2].n_tool_calls, 2);
    assert_string_equal(r.messages[2].tool_calls[0].id, "call_1");
    assert_string_equal(r.messages[2].tool_calls[0].name, "get_weather");
    assert_string_equal(r.messages[2].tool_calls[0].arguments, "{\"city\":\"Oslo\"}");
    assert_string_equal(r.messages[2].tool_calls[1].id, "call_2_1"); /* made up */
    assert_string_equal(r.messages[2].tool_calls[1].arguments, "{\"tz\":\"CET\"}");
    assert_string_equal(r.messages[3].role, "tool");
    assert_string_equal(r.messages[3].tool_call_id, "call_1");
    assert_string_equal(r.messages[3].content, "rain");
    assert_string_equal(r.messages[3].name, "get_weather");
    assert_int_equal(r.n_tools, 2);
    assert_string_equal(r.tools[0].name, "get_weather");
    assert_string_equal(r.tools[0].description, "d");
    /* compact, key order kept */
    assert_string_equal(r.tools[0].parameters, "{\"type\":\"object\",\"properties\":{\"z\":{},\"a\":{}}}");
    assert_true(r.tools[0].strict && !r.tools[1].strict);
    assert_null(r.tools[1].description);
    assert_string_equal(r.tools[1].parameters, "{}");
    assert_int_equal(r.tool_choice, OAI_TOOL_REQUIRED);
    assert_false(r.parallel_tool_calls);
    oai_request_free(&r);

    const char *T = "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f-1_x\"}}]";
    char b[512];
    snprintf(b, sizeof b, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],%s}", T);
    expect_ok(OAI_CHAT, b, &r);
    assert_int_equal(r.tool_choice, OAI_TOOL_AUTO); /* default with tools */
    assert_true(r.parallel_tool_calls);
    assert_int_equal(r.n, 1);
    oai_request_free(&r);
    snprintf(b, sizeof b, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],%s,\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"f-1_x\"}}}", T);
    expect_ok(OAI_CHAT, b, &r);
    assert_int_equal(r.tool_choice, OAI_TOOL_FUNCTION);
    assert_string_equal(r.tool_choice_name, "f-1_x");
    oai_request_free(&r);
    snprintf(b, sizeof b, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],%s,\"tool_choice\":\"none\"}", T);
    expect_ok(OAI_CHAT, b, &r);
    assert_int_equal(r.tool_choice, OAI_TOOL_NONE);
    oai_request_free(&r);
    expect_ok(OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":\"none\",\"tools\":[]}", &r);
    assert_int_equal(r.tool_choice, OAI_TOOL_NONE); /* also the default without tools */
    assert_int_equal(r.n_tools, 0);
    oai_request_free(&r);

    const char *M = "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],";
#define CHAT_ERR(rest, param, needle) do { snprintf(b, sizeof b, "%s%s}", M, rest); expect_error(OAI_CHAT, b, param, needle); } while (0)
    CHAT_ERR("\"tools\":[{\"type\":\"web_search\"}]", "tools[0].type", "only 'function'");
    CHAT_ERR("\"tools\":[{\"type\":\"custom\",\"custom\":{\"name\":\"x\"}}]", "tools[0].type", "not supported");
    CHAT_ERR("\"tools\":[{\"function\":{\"name\":\"f\"}}]", "tools[0].type", "required");
    CHAT_ERR("\"tools\":[{\"type\":\"function\"}]", "tools[0].function", "required");
    CHAT_ERR("\"tools\":[{\"type\":\"function\",\"function\":{}}]", "tools[0].function.name", "required");
    CHAT_ERR("\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"a b\"}}]", "tools[0].function.name", "1 to 64");
    CHAT_ERR("\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":[]}}]", "tools[0].function.parameters", "an object");
    CHAT_ERR("\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"strict\":1}}]", "tools[0].function.strict", "a boolean");
    CHAT_ERR("\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}},{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]", "tools[1]", "two tools");
    CHAT_ERR("\"tools\":{}", "tools", "an array");
    CHAT_ERR("\"tool_choice\":\"auto\"", "tool_choice", "needs 'tools'");
    CHAT_ERR("\"tool_choice\":\"always\"", "tool_choice", "one of");
    CHAT_ERR("\"tool_choice\":{\"type\":\"allowed_tools\",\"allowed_tools\":{}}", "tool_choice.type", "allowed_tools");
    CHAT_ERR("\"tool_choice\":{\"type\":\"custom\"}", "tool_choice.type", "not supported");
    snprintf(b, sizeof b, "%s%s,\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"g\"}}}", M, T);
    expect_error(OAI_CHAT, b, "tool_choice.function.name", "not among 'tools'");
    snprintf(b, sizeof b, "%s%s,\"tool_choice\":{\"type\":\"function\"}}", M, T);
    expect_error(OAI_CHAT, b, "tool_choice.function", "required");
    CHAT_ERR("\"parallel_tool_calls\":\"yes\"", "parallel_tool_calls", "a boolean");
    /* 129 tools */
    char *big = malloc(16384);
    size_t k = (size_t)snprintf(big, 16384, "%s\"tools\":[", M);
    for (int i = 0; i < 129; i++)
        k += (size_t)snprintf(big + k, 16384 - k, "%s{\"type\":\"function\",\"function\":{\"name\":\"f%d\"}}", i ? "," : "", i);
    snprintf(big + k, 16384 - k, "]}");
    expect_error(OAI_CHAT, big, "tools", "at most 128");
    free(big);

    /* messages */
    expect_error(OAI_CHAT, "{\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}", "messages[0].tool_call_id", "required");
    expect_error(OAI_CHAT, "{\"messages\":[{\"role\":\"tool\",\"tool_call_id\":\"c\"}]}", "messages[0].content", "required");
    expect_error(OAI_CHAT, "{\"messages\":[{\"role\":\"tool\",\"tool_call_id\":5,\"content\":\"x\"}]}", "messages[0].tool_call_id", "a string");
    REFUSED(OAI_CHAT, "{\"messages\":[{\"role\":\"function\",\"name\":\"f\",\"content\":\"x\"}]}", "messages[0].role", "deprecated");
    REFUSED(OAI_CHAT, "{\"messages\":[{\"role\":\"assistant\",\"audio\":{\"id\":\"a\"}}]}", "messages[0].audio", "text models");
    REFUSED(OAI_CHAT, "{\"messages\":[{\"role\":\"assistant\",\"function_call\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}", "messages[0].function_call", "tool_calls");
    expect_error(OAI_CHAT, "{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\",\"type\":\"function\"}]}]}", "messages[0].tool_calls[0].function", "required");
    expect_error(OAI_CHAT, "{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"type\":\"function\",\"function\":{\"arguments\":\"{}\"}}]}]}", "messages[0].tool_calls[0].function.name", "a string");
    expect_error(OAI_CHAT, "{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"type\":\"custom\",\"custom\":{}}]}]}", "messages[0].tool_calls[0].type", "custom");
    expect_error(OAI_CHAT, "{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":7}}]}]}", "messages[0].tool_calls[0].function.arguments", "a string");
    expect_error(OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"name\":3}]}", "messages[0].name", "a string");
    expect_error(OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\",\"input_audio\":{}}]}]}", "messages[0].content[0].type", "text models");
    expect_error(OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"file\",\"file\":{}}]}]}", "messages[0].content[1].type", "text models");
    expect_error(OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":\"a\"}]}]}", "messages[0].content[0].type", "unknown content part type");
    expect_error(OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"refusal\",\"refusal\":\"a\"}]}]}", "messages[0].content[0].type", "unknown content part type");
    expect_error(OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}", "messages[0].content[0].text", "a string");
    expect_error(OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[\"a\"]}]}", "messages[0].content[0]", "an object");
    /* an assistant's refusal part is text of that turn; prompt_cache_breakpoint is a no-op */
    expect_ok(OAI_CHAT, "{\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"refusal\",\"refusal\":\"b\"}],\"refusal\":\"b\"},"
                        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"c\",\"prompt_cache_breakpoint\":{\"mode\":\"explicit\",\"ttl\":\"30m\"}}]}]}", &r);
    assert_string_equal(r.messages[0].content, "ab");
    assert_string_equal(r.messages[1].content, "c");
    oai_request_free(&r);
#undef CHAT_ERR
}

/* ---- response_format ------------------------------------------------------------------ */
static void test_response_format(void **state) {
    (void)state;
    oai_request r;
    expect_ok(OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"json_schema\","
                        "\"json_schema\":{\"name\":\"person\",\"description\":\"d\",\"strict\":true,\"schema\":{\"type\":\"object\","
                        "\"properties\":{\"name\":{\"type\":\"string\"},\"age\":{\"type\":\"integer\",\"minimum\":0}},\"required\":[\"name\"]}}}}", &r);
    assert_int_equal(r.format, OAI_FORMAT_JSON_SCHEMA);
    assert_string_equal(r.format_name, "person");
    assert_true(r.format_strict);
    assert_string_equal(r.format_schema, "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"age\":{\"type\":\"integer\",\"minimum\":0}},\"required\":[\"name\"]}");
    oai_request_free(&r);
    /* name is optional here; unsupported keywords are the grammar compiler's to name */
    expect_ok(OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"schema\":{\"not\":{}}}}}", &r);
    assert_null(r.format_name);
    assert_false(r.format_strict);
    assert_string_equal(r.format_schema, "{\"not\":{}}");
    oai_request_free(&r);
    expect_ok(OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"text\"}}", &r);
    assert_int_equal(r.format, OAI_FORMAT_TEXT);
    oai_request_free(&r);
    expect_ok(OAI_COMPLETION, "{\"prompt\":\"x\",\"response_format\":{\"type\":\"grammar\",\"grammar\":\"root ::= \\\"yes\\\" | \\\"no\\\"\"}}", &r);
    assert_int_equal(r.format, OAI_FORMAT_GRAMMAR);
    assert_string_equal(r.grammar, "root ::= \"yes\" | \"no\"");
    oai_request_free(&r);
    expect_ok(OAI_COMPLETION, "{\"prompt\":\"x\",\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"n\",\"schema\":{}}}}", &r);
    assert_string_equal(r.format_schema, "{}");
    oai_request_free(&r);
    const char *M = "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":";
    char b[512];
#define RF_ERR(rest, param, needle) do { snprintf(b, sizeof b, "%s%s}", M, rest); expect_error(OAI_CHAT, b, param, needle); } while (0)
    RF_ERR("\"json\"", "response_format", "an object");
    RF_ERR("{}", "response_format.type", "required");
    RF_ERR("{\"type\":\"yaml\"}", "response_format.type", "one of");
    RF_ERR("{\"type\":\"json_schema\"}", "response_format.json_schema", "required");
    RF_ERR("{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"n\"}}", "response_format.json_schema.schema", "required");
    RF_ERR("{\"type\":\"json_schema\",\"json_schema\":{\"schema\":true}}", "response_format.json_schema.schema", "an object");
    RF_ERR("{\"type\":\"json_schema\",\"json_schema\":{\"schema\":{},\"strict\":\"y\"}}", "response_format.json_schema.strict", "a boolean");
    RF_ERR("{\"type\":\"json_schema\",\"json_schema\":{\"schema\":{},\"name\":1}}", "response_format.json_schema.name", "a string");
    RF_ERR("{\"type\":\"grammar\"}", "response_format.grammar", "required");
    RF_ERR("{\"type\":\"grammar\",\"grammar\":\"\"}", "response_format.grammar", "required");
    RF_ERR("{\"type\":\"json_object\",\"json_schema\":{}}", "response_format.json_schema", "unknown field");
#undef RF_ERR
}

/* ---- logit_bias, n, best_of, suffix, no-ops and refusals ------------------------------- */
static void test_fields_misc(void **state) {
    (void)state;
    oai_request r;
    expect_ok(OAI_COMPLETION, "{\"prompt\":\"x\",\"logit_bias\":{},\"n\":16,\"best_of\":null,\"suffix\":null,"
                              "\"stream\":true,\"stream_options\":{\"include_usage\":false,\"include_obfuscation\":true}}", &r);
    assert_int_equal(r.n_logit_bias, 0);
    assert_int_equal(r.n, 16);
    assert_true(r.stream);
    oai_request_free(&r);
    expect_ok(OAI_COMPLETION, "{\"prompt\":\"x\",\"best_of\":1,\"n\":2,\"echo\":true,\"max_tokens\":0}", &r);
    assert_int_equal(r.n, 2);
    oai_request_free(&r);
    expect_error(OAI_COMPLETION, "{\"prompt\":\"x\",\"logit_bias\":{\"-1\":1}}", "logit_bias", "not a token id");
    expect_error(OAI_COMPLETION, "{\"prompt\":\"x\",\"logit_bias\":{\"abc\":1}}", "logit_bias", "not a token id");
    expect_error(OAI_COMPLETION, "{\"prompt\":\"x\",\"logit_bias\":{\"\":1}}", "logit_bias", "not a token id");
    expect_error(OAI_COMPLETION, "{\"prompt\":\"x\",\"logit_bias\":{\"99999999999\":1}}", "logit_bias", "not a token id");
    expect_error(OAI_COMPLETION, "{\"prompt\":\"x\",\"logit_bias\":{\"5\":101}}", "logit_bias", "between -100 and 100");
    expect_error(OAI_COMPLETION, "{\"prompt\":\"x\",\"logit_bias\":{\"5\":\"1\"}}", "logit_bias", "a number");
    expect_error(OAI_COMPLETION, "{\"prompt\":\"x\",\"logit_bias\":[1]}", "logit_bias", "an object");
    char *big = malloc(20000);
    size_t k = (size_t)snprintf(big, 20000, "{\"prompt\":\"x\",\"logit_bias\":{");
    for (int i = 0; i < 1025; i++) k += (size_t)snprintf(big + k, 20000 - k, "%s\"%d\":1", i ? "," : "", i);
    snprintf(big + k, 20000 - k, "}}");
    expect_error(OAI_COMPLETION, big, "logit_bias", "at most 1024");
    free(big);
    REFUSED(OAI_COMPLETION, "{\"prompt\":\"x\",\"best_of\":3}", "best_of", "equal to 'n'");
    REFUSED(OAI_COMPLETION, "{\"prompt\":\"x\",\"suffix\":\"end\"}", "suffix", "fill-in-the-middle");
    expect_error(OAI_COMPLETION, "{\"prompt\":\"x\",\"suffix\":3}", "suffix", "a string");
    expect_error(OAI_COMPLETION, "{\"prompt\":\"x\",\"metadata\":{\"a\":1}}", "metadata.a", "a string");
    expect_error(OAI_COMPLETION, "{\"prompt\":\"x\",\"metadata\":[]}", "metadata", "an object");
    expect_error(OAI_COMPLETION, "{\"prompt\":\"x\",\"metadata\":{\"1\":\"\",\"2\":\"\",\"3\":\"\",\"4\":\"\",\"5\":\"\",\"6\":\"\",\"7\":\"\",\"8\":\"\",\"9\":\"\","
                                 "\"10\":\"\",\"11\":\"\",\"12\":\"\",\"13\":\"\",\"14\":\"\",\"15\":\"\",\"16\":\"\",\"17\":\"\"}}", "metadata", "at most 16");

    /* chat no-ops */
    expect_ok(OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"store\":true,\"metadata\":{\"k\":\"v\"},"
                        "\"service_tier\":\"auto\",\"user\":\"u\",\"safety_identifier\":\"s\",\"prompt_cache_key\":\"p\","
                        "\"prompt_cache_retention\":\"24h\",\"prompt_cache_options\":{\"mode\":\"implicit\",\"ttl\":\"30m\"},"
                        "\"reasoning_effort\":\"low\",\"verbosity\":\"medium\",\"modalities\":[\"text\"],\"audio\":null,"
                        "\"functions\":[],\"function_call\":null,\"prediction\":null,\"web_search_options\":null,\"moderation\":null,"
                        "\"logit_bias\":{\"1\":-1},\"n\":2,\"stream\":true,\"stream_options\":{\"include_usage\":true}}", &r);
    assert_false(r.store); /* chat's store: OpenAI's stored completions, a no-op here */
    assert_string_equal(r.metadata, "{\"k\":\"v\"}");
    assert_int_equal(r.n, 2);
    assert_true(r.include_usage);
    oai_request_free(&r);
    const char *M = "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],";
    char b[512];
#define CH(rest) (snprintf(b, sizeof b, "%s%s}", M, rest), b)
    REFUSED(OAI_CHAT, CH("\"audio\":{\"voice\":\"alloy\",\"format\":\"wav\"}"), "audio", "text models");
    REFUSED(OAI_CHAT, CH("\"modalities\":[\"text\",\"audio\"]"), "modalities", "text only");
    REFUSED(OAI_CHAT, CH("\"prediction\":{\"type\":\"content\",\"content\":\"x\"}"), "prediction", "Predicted Outputs");
    REFUSED(OAI_CHAT, CH("\"web_search_options\":{}"), "web_search_options", "web search");
    REFUSED(OAI_CHAT, CH("\"functions\":[{\"name\":\"f\"}]"), "functions", "use 'tools'");
    REFUSED(OAI_CHAT, CH("\"function_call\":\"auto\""), "function_call", "use 'tool_choice'");
    REFUSED(OAI_CHAT, CH("\"moderation\":{\"model\":\"m\"}"), "moderation", "moderation");
    expect_error(OAI_CHAT, CH("\"verbosity\":\"loud\""), "verbosity", "one of");
    expect_error(OAI_CHAT, CH("\"store\":\"yes\""), "store", "a boolean");
    expect_error(OAI_CHAT, CH("\"service_tier\":1"), "service_tier", "a string");
    expect_error(OAI_CHAT, CH("\"prompt_cache_options\":{\"x\":1}"), "prompt_cache_options.x", "unknown field");
    expect_error(OAI_CHAT, CH("\"modalities\":\"text\""), "modalities", "an array");
#undef CH
}

/* ---- POST /v1/responses ------------------------------------------------------------------ */
static void test_responses(void **state) {
    (void)state;
    oai_request r;
    expect_ok(OAI_RESPONSES, "{\"model\":\"m\",\"input\":\"Hello\"}", &r);
    assert_int_equal(r.kind, OAI_RESPONSES);
    assert_int_equal(r.n_messages, 1);
    assert_string_equal(r.messages[0].role, "user");
    assert_string_equal(r.messages[0].content, "Hello");
    assert_true(r.store); /* default true, as OpenAI */
    assert_int_equal(r.max_tokens, -1);
    assert_int_equal(r.n, 1);
    assert_null(r.instructions);
    oai_request_free(&r);

    expect_ok(OAI_RESPONSES,
              "{\"instructions\":\"Be brief.\",\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":\"weather \"},"
              "{\"type\":\"input_text\",\"text\":\"in Oslo?\"}]},"
              "{\"type\":\"message\",\"id\":\"msg_1\",\"status\":\"completed\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"Checking.\",\"annotations\":[]}]},"
              "{\"type\":\"function_call\",\"id\":\"fc_1\",\"call_id\":\"call_a\",\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Oslo\\\"}\",\"status\":\"completed\"},"
              "{\"type\":\"function_call\",\"call_id\":\"call_b\",\"name\":\"get_time\",\"arguments\":\"{}\"},"
              "{\"type\":\"function_call_output\",\"call_id\":\"call_a\",\"output\":\"rain\"},"
              "{\"type\":\"function_call_output\",\"call_id\":\"call_b\",\"output\":[{\"type\":\"input_text\",\"text\":\"noon\"}]},"
              "{\"type\":\"function_call\",\"call_id\":\"call_c\",\"name\":\"get_time\"},"
              "{\"role\":\"developer\",\"content\":\"d\"}],"
              "\"tools\":[{\"type\":\"function\",\"name\":\"get_weather\",\"description\":\"w\",\"parameters\":{\"type\":\"object\"},\"strict\":true},"
              "{\"type\":\"function\",\"name\":\"get_time\",\"parameters\":null,\"strict\":null}],"
              "\"tool_choice\":{\"type\":\"function\",\"name\":\"get_time\"},\"parallel_tool_calls\":false,"
              "\"text\":{\"format\":{\"type\":\"json_schema\",\"name\":\"out\",\"schema\":{\"type\":\"object\"},\"strict\":true},\"verbosity\":\"low\"},"
              "\"max_output_tokens\":64,\"temperature\":0.5,\"top_p\":0.9,\"store\":false,\"metadata\":{\"a\":\"b\"},"
              "\"truncation\":\"disabled\",\"user\":\"u\",\"reasoning\":{\"effort\":\"low\",\"summary\":\"auto\"},"
              "\"include\":[\"message.output_text.logprobs\",\"reasoning.encrypted_content\"],\"top_logprobs\":3,"
              "\"service_tier\":\"default\",\"background\":false,\"prompt_cache_key\":\"k\",\"safety_identifier\":\"s\","
              "\"stream\":true,\"stream_options\":{\"include_obfuscation\":false},\"seed\":7,\"top_k\":40,\"deadline_ms\":1000}",
              &r);
    assert_string_equal(r.instructions, "Be brief.");
    assert_int_equal(r.n_messages, 7);
    assert_string_equal(r.messages[0].role, "system");
    assert_string_equal(r.messages[0].content, "Be brief.");
    assert_string_equal(r.messages[1].content, "weather in Oslo?");
    /* the assistant's text and the calls after it are one assistant turn */
    assert_string_equal(r.messages[2].role, "assistant");
    assert_string_equal(r.messages[2].content, "Checking.");
    assert_int_equal(r.messages[2].n_tool_calls, 2);
    assert_string_equal(r.messages[2].tool_calls[0].id, "call_a");
    assert_string_equal(r.messages[2].tool_calls[0].name, "get_weather");
    assert_string_equal(r.messages[2].tool_calls[0].arguments, "{\"city\":\"Oslo\"}");
    assert_string_equal(r.messages[2].tool_calls[1].id, "call_b");
    assert_string_equal(r.messages[3].role, "tool");
    assert_string_equal(r.messages[3].tool_call_id, "call_a");
    assert_string_equal(r.messages[3].content, "rain");
    assert_null(r.messages[3].name);
    assert_string_equal(r.messages[4].tool_call_id, "call_b");
    assert_string_equal(r.messages[4].content, "noon");
    assert_string_equal(r.messages[5].role, "assistant");
    assert_string_equal(r.messages[5].content, "");
    assert_int_equal(r.messages[5].n_tool_calls, 1);
    assert_string_equal(r.messages[5].tool_calls[0].arguments, "{}");
    assert_string_equal(r.messages[6].role, "developer");
    assert_int_equal(r.n_tools, 2);
    assert_string_equal(r.tools[0].parameters, "{\"type\":\"object\"}");
    assert_true(r.tools[0].strict);
    assert_string_equal(r.tools[1].parameters, "{}");
    assert_int_equal(r.tool_choice, OAI_TOOL_FUNCTION);
    assert_string_equal(r.tool_choice_name, "get_time");
    assert_false(r.parallel_tool_calls);
    assert_int_equal(r.format, OAI_FORMAT_JSON_SCHEMA);
    assert_string_equal(r.format_name, "out");
    assert_string_equal(r.format_schema, "{\"type\":\"object\"}");
    assert_true(r.format_strict);
    assert_int_equal(r.max_tokens, 64);
    assert_true(r.temperature == 0.5f && r.top_p == 0.9f);
    assert_false(r.store);
    assert_string_equal(r.metadata, "{\"a\":\"b\"}");
    assert_true(r.logprobs);
    assert_int_equal(r.top_logprobs, 3);
    assert_true(r.stream && r.has_seed && r.top_k == 40 && r.has_deadline);
    oai_request_free(&r);

    /* previous_response_id without input: the stored conversation continues */
    expect_ok(OAI_RESPONSES, "{\"previous_response_id\":\"resp_1\"}", &r);
    assert_int_equal(r.n_messages, 0);
    assert_string_equal(r.previous_response_id, "resp_1");
    oai_request_free(&r);
    expect_ok(OAI_RESPONSES, "{\"previous_response_id\":\"resp_1\",\"input\":[{\"type\":\"function_call_output\",\"call_id\":\"c\",\"output\":\"42\"}],"
                             "\"text\":{\"format\":{\"type\":\"json_object\"}},\"tool_choice\":\"none\"}", &r);
    assert_int_equal(r.n_messages, 1);
    assert_string_equal(r.messages[0].role, "tool");
    assert_int_equal(r.format, OAI_FORMAT_JSON_OBJECT);
    assert_int_equal(r.tool_choice, OAI_TOOL_NONE);
    oai_request_free(&r);
    expect_ok(OAI_RESPONSES, "{\"input\":\"x\",\"text\":{\"format\":{\"type\":\"grammar\",\"grammar\":\"root ::= \\\"a\\\"\"}}}", &r);
    assert_int_equal(r.format, OAI_FORMAT_GRAMMAR);
    oai_request_free(&r);

    expect_error(OAI_RESPONSES, "{}", "input", "required");
    expect_error(OAI_RESPONSES, "{\"input\":[]}", "input", "empty");
    expect_error(OAI_RESPONSES, "{\"input\":5}", "input", "a string or an array");
    expect_error(OAI_RESPONSES, "{\"input\":[\"a\"]}", "input[0]", "an object");
    expect_error(OAI_RESPONSES, "{\"input\":[{\"content\":\"a\"}]}", "input[0].role", "required");
    expect_error(OAI_RESPONSES, "{\"input\":[{\"role\":\"tool\",\"content\":\"a\"}]}", "input[0].role", "one of");
    expect_error(OAI_RESPONSES, "{\"input\":[{\"role\":\"user\"}]}", "input[0].content", "required");
    expect_error(OAI_RESPONSES, "{\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_image\",\"image_url\":\"x\"}]}]}", "input[0].content[0].type", "text models");
    expect_error(OAI_RESPONSES, "{\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_file\",\"file_id\":\"x\"}]}]}", "input[0].content[0].type", "text models");
    expect_error(OAI_RESPONSES, "{\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"}]}]}", "input[0].content[0].type", "unknown content part type");
    expect_error(OAI_RESPONSES, "{\"input\":[{\"type\":\"reasoning\",\"summary\":[]}]}", "input[0].type", "not supported");
    expect_error(OAI_RESPONSES, "{\"input\":[{\"type\":\"file_search_call\",\"id\":\"x\"}]}", "input[0].type", "not supported");
    REFUSED(OAI_RESPONSES, "{\"input\":[{\"type\":\"item_reference\",\"id\":\"x\"}]}", "input[0].type", "previous_response_id");
    expect_error(OAI_RESPONSES, "{\"input\":[{\"type\":\"function_call\",\"name\":\"f\",\"arguments\":\"{}\"}]}", "input[0].call_id", "required");
    expect_error(OAI_RESPONSES, "{\"input\":[{\"type\":\"function_call\",\"call_id\":\"c\",\"arguments\":\"{}\"}]}", "input[0].name", "a string");
    expect_error(OAI_RESPONSES, "{\"input\":[{\"type\":\"function_call\",\"call_id\":\"c\",\"name\":\"f\",\"arguments\":{}}]}", "input[0].arguments", "a string");
    REFUSED(OAI_RESPONSES, "{\"input\":[{\"type\":\"function_call\",\"call_id\":\"c\",\"name\":\"f\",\"namespace\":\"n\"}]}", "input[0].namespace", "namespaces");
    expect_error(OAI_RESPONSES, "{\"input\":[{\"type\":\"function_call_output\",\"output\":\"x\"}]}", "input[0].call_id", "required");
    expect_error(OAI_RESPONSES, "{\"input\":[{\"type\":\"function_call_output\",\"call_id\":\"c\"}]}", "input[0].output", "required");
    expect_error(OAI_RESPONSES, "{\"input\":[{\"type\":\"function_call_output\",\"call_id\":\"c\",\"output\":[{\"type\":\"input_image\"}]}]}", "input[0].output[0].type", "text models");
    expect_error(OAI_RESPONSES, "{\"input\":\"x\",\"instructions\":5}", "instructions", "a string");
    expect_error(OAI_RESPONSES, "{\"input\":\"x\",\"max_output_tokens\":0}", "max_output_tokens", "between");
    expect_error(OAI_RESPONSES, "{\"input\":\"x\",\"top_logprobs\":21}", "top_logprobs", "between");
    expect_error(OAI_RESPONSES, "{\"previous_response_id\":\"\"}", "previous_response_id", "empty");
    expect_error(OAI_RESPONSES, "{\"input\":\"x\",\"store\":1}", "store", "a boolean");
    expect_error(OAI_RESPONSES, "{\"input\":\"x\",\"tools\":[{\"type\":\"web_search\"}]}", "tools[0].type", "only 'function'");
    expect_error(OAI_RESPONSES, "{\"input\":\"x\",\"tools\":[{\"type\":\"file_search\",\"vector_store_ids\":[]}]}", "tools[0].type", "only 'function'");
    expect_error(OAI_RESPONSES, "{\"input\":\"x\",\"tools\":[{\"type\":\"function\"}]}", "tools[0].name", "required");
    REFUSED(OAI_RESPONSES, "{\"input\":\"x\",\"tools\":[{\"type\":\"function\",\"name\":\"f\",\"defer_loading\":true}]}", "tools[0].defer_loading", "tool search");
    expect_error(OAI_RESPONSES, "{\"input\":\"x\",\"tools\":[{\"type\":\"function\",\"name\":\"f\"}],\"tool_choice\":{\"type\":\"function\",\"name\":\"g\"}}", "tool_choice.name", "not among");
    expect_error(OAI_RESPONSES, "{\"input\":\"x\",\"tools\":[{\"type\":\"function\",\"name\":\"f\"}],\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"f\"}}}", "tool_choice.function", "unknown field");
    expect_error(OAI_RESPONSES, "{\"input\":\"x\",\"tools\":[{\"type\":\"function\",\"name\":\"f\"}],\"tool_choice\":{\"type\":\"file_search\"}}", "tool_choice.type", "not supported");
    expect_error(OAI_RESPONSES, "{\"input\":\"x\",\"tool_choice\":\"required\"}", "tool_choice", "needs 'tools'");
    expect_error(OAI_RESPONSES, "{\"input\":\"x\",\"text\":{\"format\":{\"type\":\"json_schema\",\"name\":\"n\"}}}", "text.format.schema", "required");
    expect_error(OAI_RESPONSES, "{\"input\":\"x\",\"text\":{\"verbosity\":\"max\"}}", "text.verbosity", "one of");
    REFUSED(OAI_RESPONSES, "{\"input\":\"x\",\"truncation\":\"auto\"}", "truncation", "not implemented");
    expect_error(OAI_RESPONSES, "{\"input\":\"x\",\"truncation\":\"some\"}", "truncation", "one of");
    REFUSED(OAI_RESPONSES, "{\"input\":\"x\",\"include\":[\"file_search_call.results\"]}", "include[0]", "no such tool");
    expect_error(OAI_RESPONSES, "{\"input\":\"x\",\"include\":\"x\"}", "include", "an array");
    REFUSED(OAI_RESPONSES, "{\"input\":\"x\",\"background\":true}", "background", "background");
    REFUSED(OAI_RESPONSES, "{\"input\":\"x\",\"conversation\":\"conv_1\"}", "conversation", "previous_response_id");
    REFUSED(OAI_RESPONSES, "{\"input\":\"x\",\"prompt\":{\"id\":\"pmpt_1\"}}", "prompt", "reusable prompts");
    REFUSED(OAI_RESPONSES, "{\"input\":\"x\",\"max_tool_calls\":3}", "max_tool_calls", "not implemented");
    REFUSED(OAI_RESPONSES, "{\"input\":\"x\",\"context_management\":[{\"type\":\"compaction\"}]}", "context_management", "compaction");
    REFUSED(OAI_RESPONSES, "{\"input\":\"x\",\"moderation\":{\"model\":\"m\"}}", "moderation", "moderation");
    expect_error(OAI_RESPONSES, "{\"input\":\"x\",\"stream_options\":{}}", "stream_options", "only allowed");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_completion_defaults), cmocka_unit_test(test_completion_all_fields),
        cmocka_unit_test(test_completion_token_prompt), cmocka_unit_test(test_chat),
        cmocka_unit_test(test_embeddings), cmocka_unit_test(test_errors),
        cmocka_unit_test(test_encoder_shapes),
        cmocka_unit_test(test_error_body), cmocka_unit_test(test_error_body_invalid_utf8),
        cmocka_unit_test(test_unknown_fields), cmocka_unit_test(test_chat_tools),
        cmocka_unit_test(test_response_format), cmocka_unit_test(test_fields_misc),
        cmocka_unit_test(test_responses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
