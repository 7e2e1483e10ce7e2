/*
 * shoal tokenize -m MODEL [--no-bos] [--special] [--json]   text -> token ids
 * shoal detokenize -m MODEL [--special]                     token ids -> text
 *
 * tokenize, plain mode: one input per stdin line; in a line "\n", "\t", "\r", "\\" and "\xHH"
 * stand for newline, tab, carriage return, backslash and a raw byte (any other backslash is
 * literal). Prints each input's ids space-separated on one line. --json reads one JSON array
 * of strings from stdin and prints one JSON array of id arrays. BOS/EOS are added as the
 * vocabulary says unless --no-bos; special-token text is plain text unless --special.
 *
 * detokenize: one line of ids per input (spaces or commas between them); prints the text with
 * "\\", "\n", "\t", "\r" escaped and other control bytes and invalid UTF-8 bytes as "\xHH".
 * Control tokens are rendered only with --special.
 *
 * Both work on vocabulary-only GGUF files (no tensors needed).
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "tokenizer/tokenizer.h"

/* ============================================================ options ===== */

typedef struct opts {
    const char *model;
    int no_bos, special, json;
} opts;

static int parse_opts(int argc, char **argv, opts *o, int allow_tok, const char *usage) {
    memset(o, 0, sizeof *o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && i + 1 < argc) o->model = argv[++i];
        else if (!strcmp(a, "--special")) o->special = 1;
        else if (allow_tok && !strcmp(a, "--no-bos")) o->no_bos = 1;
        else if (allow_tok && !strcmp(a, "--json")) o->json = 1;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage, stdout);
            return 2;
        } else {
            fputs(usage, stderr);
            return cli_error("unknown or incomplete option '%s'", a);
        }
    }
    if (!o->model) {
        fputs(usage, stderr);
        return cli_error("-m MODEL is required");
    }
    return 0;
}

/* Strict UTF-8 length of the sequence at s, 0 when not valid. */
static int utf8_len(const unsigned char *s, size_t n) {
    unsigned c = s[0], lo = 0x80, hi = 0xBF;
    int len;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else return 0;
    if ((size_t)len > n || s[1] < lo || s[1] > hi) return 0;
    for (int i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return len;
}

static void put_escaped(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        if (c == '\\') fputs("\\\\", stdout), i++;
        else if (c == '\n') fputs("\\n", stdout), i++;
        else if (c == '\t') fputs("\\t", stdout), i++;
        else if (c == '\r') fputs("\\r", stdout), i++;
        else if (c < 0x20 || c == 0x7F) printf("\\x%02x", c), i++;
        else if (c < 0x80) putchar((int)c), i++;
        else {
            int l = utf8_len(s + i, n - i);
            if (l) fwrite(s + i, 1, (size_t)l, stdout), i += (size_t)l;
            else printf("\\x%02x", c), i++;
        }
    }
}

/* ============================================================ tokenize ===== */

static const char *tok_usage =
    "usage: shoal tokenize -m MODEL [--no-bos] [--special] [--json]\n"
    "  stdin: one input per line (\\n \\t \\r \\\\ \\xHH escapes), or with --json one JSON\n"
    "  array of strings; stdout: the ids of each input, one line each (or a JSON array).\n";

static int tokenize_json(const tok_vocab *v, const opts *o) {
    json_error_t je;
    json_t *in = json_loadf(stdin, JSON_ALLOW_NUL, &je);
    if (!in || !json_is_array(in)) {
        json_decref(in);
        return cli_error("stdin: expected one JSON array of strings (%s, line %d)", je.text, je.line);
    }
    json_t *res = json_array();
    tok_ids ids = {0};
    sh_err err = {{0}};
    int rc = 0;
    for (size_t i = 0; i < json_array_size(in); i++) {
        json_t *s = json_array_get(in, i);
        if (!json_is_string(s)) {
            rc = cli_error("stdin: element %zu is not a string", i);
            break;
        }
        ids.n = 0;
        if (tok_tokenize(v, json_string_value(s), json_string_length(s), !o->no_bos, o->special,
                         &ids, &err)) {
            rc = cli_error("%s", err.msg);
            break;
        }
        json_t *a = json_array();
        for (size_t k = 0; k < ids.n; k++) json_array_append_new(a, json_integer(ids.ids[k]));
        json_array_append_new(res, a);
    }
    if (!rc) {
        json_dumpf(res, stdout, JSON_COMPACT);
        putchar('\n');
    }
    tok_ids_free(&ids);
    json_decref(res);
    json_decref(in);
    return rc;
}

int cmd_tokenize(int argc, char **argv) {
    opts o;
    int rc = parse_opts(argc, argv, &o, 1, tok_usage);
    if (rc) return rc == 2 ? 0 : rc;
    sh_err err = {{0}};
    tok_vocab *v = tok_vocab_load(o.model, &err);
    if (!v) return cli_error("%s", err.msg);
    if (o.json) {
        rc = tokenize_json(v, &o);
    } else {
        char *line = NULL;
        size_t cap = 0;
        ssize_t k;
        tok_ids ids = {0};
        while ((k = getline(&line, &cap, stdin)) >= 0) {
            size_t n = (size_t)k;
            if (n && line[n - 1] == '\n') n--;
            n = cli_unescape(line, n);
            ids.n = 0;
            if (tok_tokenize(v, line, n, !o.no_bos, o.special, &ids, &err)) {
                rc = cli_error("%s", err.msg);
                break;
            }
            for (size_t i = 0; i < ids.n; i++) printf(i ? " %d" : "%d", ids.ids[i]);
            putchar('\n');
        }
        free(line);
        tok_ids_free(&ids);
    }
    if (fflush(stdout) != 0) rc = cli_error("stdout: %s", strerror(errno));
    tok_vocab_free(v);
    return rc;
}

/* ============================================================ detokenize ===== */

static const char *detok_usage =
    "usage: shoal detokenize -m MODEL [--special]\n"
    "  stdin: one line of token ids per input; stdout: the text of each line, escaped.\n";

int cmd_detokenize(int argc, char **argv) {
    opts o;
    int rc = parse_opts(argc, argv, &o, 0, detok_usage);
    if (rc) return rc == 2 ? 0 : rc;
    sh_err err = {{0}};
    tok_vocab *v = tok_vocab_load(o.model, &err);
    if (!v) return cli_error("%s", err.msg);
    char *line = NULL;
    size_t cap = 0;
    tok_ids ids = {0};
    tok_buf text = {0};
    size_t lineno = 0;
    while (getline(&line, &cap, stdin) >= 0) {
        lineno++;
        ids.n = 0;
        for (char *p = line;;) {
            while (*p == ' ' || *p == '\t' || *p == ',' || *p == '\n' || *p == '\r') p++;
            if (!*p) break;
            char *end;
            errno = 0;
            long id = strtol(p, &end, 10);
            if (end == p || errno || id < 0 || id >= tok_n_tokens(v)) {
                rc = cli_error("stdin:%zu: bad token id near '%.20s' (vocabulary has %d tokens)",
                               lineno, p, tok_n_tokens(v));
                goto done;
            }
            if (ids.n == ids.cap) {
                size_t nc = ids.cap ? ids.cap * 2 : 64;
                int32_t *ni = realloc(ids.ids, nc * sizeof *ni);
                if (!ni) {
                    rc = cli_error("out of memory");
                    goto done;
                }
                ids.ids = ni;
                ids.cap = nc;
            }
            ids.ids[ids.n++] = (int32_t)id;
            p = end;
        }
        text.n = 0;
        if (tok_detokenize(v, ids.ids, ids.n, o.special, &text, &err)) {
            rc = cli_error("%s", err.msg);
            goto done;
        }
        put_escaped(text.data, text.n);
        putchar('\n');
    }
done:
    if (fflush(stdout) != 0 && !rc) rc = cli_error("stdout: %s", strerror(errno));
    free(line);
    tok_ids_free(&ids);
    tok_buf_free(&text);
    tok_vocab_free(v);
    return rc;
}
