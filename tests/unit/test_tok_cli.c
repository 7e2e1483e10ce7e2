/*
 * test_tok_cli — `shoal tokenize` / `shoal detokenize` end to end: line escapes, --json,
 * --no-bos, --special and errors. Runs build/shoal (built by `make` / `make test`); skipped
 * when the binary is not there.
 */
#include "testutil.h"

#include <sys/stat.h>

#define SHOAL "build/shoal"
#define SPM TU_DATA("vocab/ggml-vocab-llama-spm.gguf")

/* Runs `sh -c cmd` with input on stdin; returns its stdout (malloc'd) and exit status. */
static char *run(const char *cmd, const char *input, int *status) {
    char inpath[512], cmdline[2048];
    snprintf(inpath, sizeof inpath, "%s/in.txt", tu_tmpdir());
    FILE *f = fopen(inpath, "wb");
    assert_non_null(f);
    fputs(input, f);
    fclose(f);
    snprintf(cmdline, sizeof cmdline, "%s < %s 2>/dev/null", cmd, inpath);
    FILE *p = popen(cmdline, "r");
    assert_non_null(p);
    size_t cap = 1 << 16, n = 0;
    char *out = malloc(cap);
    size_t k;
    while ((k = fread(out + n, 1, cap - n - 1, p)) > 0) {
        n += k;
        if (n + 1 == cap) out = realloc(out, cap *= 2);
    }
    out[n] = 0;
    int st = pclose(p);
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return out;
}

static int have_shoal(void) {
    struct stat st;
    return stat(SHOAL, &st) == 0;
}

static void test_tokenize_lines(void **state) {
    (void)state;
    if (!have_shoal()) skip();
    int st;
    char *out = run(SHOAL " tokenize -m " SPM, "Hello world\nline one\\nline two\n", &st);
    assert_int_equal(st, 0);
    /* llama.cpp's documented ids for these two inputs */
    assert_string_equal(out, "1 15043 3186\n1 1196 697 13 1220 1023\n");
    free(out);
    out = run(SHOAL " tokenize -m " SPM " --no-bos", "Hello world\n<s>\n", &st);
    assert_int_equal(st, 0);
    assert_string_equal(out, "15043 3186\n529 29879 29958\n");
    free(out);
    out = run(SHOAL " tokenize -m " SPM " --no-bos --special", "<s>\n", &st);
    assert_int_equal(st, 0);
    assert_string_equal(out, "1\n");
    free(out);
}

static void test_tokenize_json(void **state) {
    (void)state;
    if (!have_shoal()) skip();
    int st;
    char *out = run(SHOAL " tokenize -m " SPM " --json", "[\"Hello world\", \"line one\\nline two\", \"\"]", &st);
    assert_int_equal(st, 0);
    assert_string_equal(out, "[[1,15043,3186],[1,1196,697,13,1220,1023],[1]]\n");
    free(out);
    out = run(SHOAL " tokenize -m " SPM " --json", "{\"not\": \"an array\"}", &st);
    assert_int_not_equal(st, 0);
    free(out);
}

static void test_detokenize(void **state) {
    (void)state;
    if (!have_shoal()) skip();
    int st;
    char *out = run(SHOAL " detokenize -m " SPM, "1 15043 3186\n1196 697 13 1220 1023\n", &st);
    assert_int_equal(st, 0);
    assert_string_equal(out, " Hello world\nline one\\nline two\n");
    free(out);
    out = run(SHOAL " detokenize -m " SPM " --special", "1 15043\n", &st);
    assert_int_equal(st, 0);
    assert_string_equal(out, "<s> Hello\n");
    free(out);
    out = run(SHOAL " detokenize -m " SPM, "99999999\n", &st);
    assert_int_not_equal(st, 0);
    free(out);
    out = run(SHOAL " tokenize -m " TU_DATA("vocab/missing.gguf"), "x\n", &st);
    assert_int_not_equal(st, 0);
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokenize_lines),
        cmocka_unit_test(test_tokenize_json),
        cmocka_unit_test(test_detokenize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
