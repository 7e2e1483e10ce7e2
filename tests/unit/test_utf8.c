/*
 * Unit tests: core/utf8 — sequence lengths for valid, overlong, surrogate, out-of-range and
 * truncated input, an exhaustive check over every code point's encoding, and the U+FFFD
 * replacement of bytes that are not UTF-8.
 */
#include "testutil.h"

#include "core/utf8.h"

static size_t seq(const char *s) { return utf8_seq_len((const unsigned char *)s, strlen(s)); }

static void test_known(void **state) {
    (void)state;
    assert_int_equal(seq("a"), 1);
    assert_int_equal(seq("\xc3\xa9"), 2);
    assert_int_equal(seq("\xe2\x96\x81"), 3);
    assert_int_equal(seq("\xf0\x9f\x98\x80"), 4);
    assert_int_equal(seq("\xc0\xaf"), 0);         /* overlong '/' */
    assert_int_equal(seq("\xe0\x80\xaf"), 0);     /* overlong */
    assert_int_equal(seq("\xed\xa0\x80"), 0);     /* surrogate U+D800 */
    assert_int_equal(seq("\xf4\x90\x80\x80"), 0); /* U+110000 */
    assert_int_equal(seq("\xe2\x96"), 0);         /* truncated */
    assert_int_equal(seq("\x80"), 0);             /* stray continuation */
    assert_int_equal(seq("\xff"), 0);
    char s[] = "ok\xff\xc3\xa9\xe2\x96";
    assert_string_equal(utf8_sanitize(s), "ok?\xc3\xa9??");
}

/* Every scalar value's encoding is accepted with the right length; surrogates rejected. */
static void test_all_code_points(void **state) {
    (void)state;
    for (uint32_t cp = 0; cp <= 0x10ffff; cp++) {
        unsigned char b[4];
        size_t n;
        if (cp < 0x80) b[0] = (unsigned char)cp, n = 1;
        else if (cp < 0x800) b[0] = 0xc0 | (cp >> 6), b[1] = 0x80 | (cp & 63), n = 2;
        else if (cp < 0x10000)
            b[0] = 0xe0 | (cp >> 12), b[1] = 0x80 | ((cp >> 6) & 63), b[2] = 0x80 | (cp & 63), n = 3;
        else
            b[0] = 0xf0 | (cp >> 18), b[1] = 0x80 | ((cp >> 12) & 63),
            b[2] = 0x80 | ((cp >> 6) & 63), b[3] = 0x80 | (cp & 63), n = 4;
        size_t got = utf8_seq_len(b, n);
        if (cp >= 0xd800 && cp <= 0xdfff) assert_int_equal(got, 0);
        else if (got != n) fail_msg("U+%04X: %zu != %zu", cp, got, n);
        if (n > 1) assert_int_equal(utf8_seq_len(b, n - 1), 0); /* truncated */
    }
}

/* Model output with bytes that are not UTF-8: each such byte becomes U+FFFD, valid sequences
 * (and NUL bytes) stay, a truncated sequence at the end is replaced byte by byte. */
static void test_replace_invalid(void **state) {
    (void)state;
    static const struct {
        const char *in;
        size_t n;
        const char *out;
    } cases[] = {
        {"plain", 5, "plain"},
        {"a\xff" "b", 3, "a\xef\xbf\xbd" "b"},
        {"\xc3\xa9t\xc3\xa9", 5, "\xc3\xa9t\xc3\xa9"},
        {"x\xe2\x82", 3, "x\xef\xbf\xbd\xef\xbf\xbd"},          /* truncated at the end */
        {"\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* a surrogate */
        {"", 0, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = 99;
        char *r = utf8_replace_invalid(cases[i].in, cases[i].n, &n);
        assert_non_null(r);
        assert_int_equal(n, strlen(cases[i].out));
        assert_memory_equal(r, cases[i].out, n);
        assert_int_equal(r[n], 0);
        free(r);
    }
    size_t n = 0;
    char *r = utf8_replace_invalid("a\0b", 3, &n); /* NUL is a valid character */
    assert_int_equal(n, 3);
    assert_memory_equal(r, "a\0b", 3);
    free(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_known),
                                       cmocka_unit_test(test_all_code_points),
                                       cmocka_unit_test(test_replace_invalid)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
