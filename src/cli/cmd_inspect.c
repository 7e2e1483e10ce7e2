/*
 * shoal inspect FILE [--json] — what a GGUF file holds: architecture, hyperparameters,
 * tokenizer, tensor table, size and SHA-256.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/hash.h"
#include "gguf/gguf.h"
#include "tensor/dtype.h"

/* ============================================================ value rendering ===== */

/* JSON for a metadata value. Large arrays are summarised ({"type","count","head"}) unless
 * full is set, so --json stays readable for 150k-token vocabularies. */
static json_t *value_json(const gguf_value *v, int full) {
    switch (v->type) {
    case GGUF_U8: case GGUF_U16: case GGUF_U32: case GGUF_U64:
        return json_integer((json_int_t)v->v.u);
    case GGUF_I8: case GGUF_I16: case GGUF_I32: case GGUF_I64:
        return json_integer((json_int_t)v->v.i);
    case GGUF_F32: { /* shortest decimal that reads back as the same float */
        char b[32];
        snprintf(b, sizeof b, "%.9g", v->v.f);
        for (int prec = 6; prec <= 9; prec++) {
            snprintf(b, sizeof b, "%.*g", prec, v->v.f);
            if ((float)strtod(b, NULL) == (float)v->v.f) break;
        }
        return json_real(strtod(b, NULL));
    }
    case GGUF_F64: return json_real(v->v.f);
    case GGUF_BOOL: return json_boolean(v->v.u);
    case GGUF_STR: return json_stringn_nocheck(v->v.str.ptr, (size_t)v->v.str.len);
    case GGUF_ARR: {
        const gguf_arr *a = &v->v.arr;
        uint64_t shown = full || a->n <= 16 ? a->n : 8;
        json_t *items = json_array();
        for (uint64_t i = 0; i < shown; i++) {
            gguf_value e;
            if (a->items) {
                json_array_append_new(items, value_json(&a->items[i], full));
                continue;
            }
            if (a->elem == GGUF_F32 || a->elem == GGUF_F64) {
                double d = 0;
                gguf_arr_f64(a, i, &d);
                e = (gguf_value){.type = GGUF_F64, .v.f = d};
            } else if (a->elem == GGUF_I8 || a->elem == GGUF_I16 || a->elem == GGUF_I32 ||
                       a->elem == GGUF_I64) {
                int64_t x = 0;
                gguf_arr_i64(a, i, &x);
                e = (gguf_value){.type = GGUF_I64, .v.i = x};
            } else {
                uint64_t x = 0;
                gguf_arr_u64(a, i, &x);
                e = (gguf_value){.type = a->elem == GGUF_BOOL ? GGUF_BOOL : GGUF_U64, .v.u = x};
            }
            json_array_append_new(items, value_json(&e, full));
        }
        if (shown == a->n) return items;
        return json_pack("{s:s, s:s, s:I, s:o}", "type", "array", "elem", gguf_type_name(a->elem),
                         "count", (json_int_t)a->n, "head", items);
    }
    default: return json_null();
    }
}

/* Prints a value on one line, strings escaped and cut at 80 bytes. */
static void value_print(FILE *f, const gguf_value *v) {
    if (v->type == GGUF_STR) {
        fputc('"', f);
        uint64_t n = v->v.str.len > 80 ? 80 : v->v.str.len;
        for (uint64_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)v->v.str.ptr[i];
            if (c == '\n') fputs("\\n", f);
            else if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
            else if (c < 0x20 || c == 0x7f) fprintf(f, "\\x%02x", c);
            else fputc(c, f);
        }
        fputs(v->v.str.len > n ? "\"..." : "\"", f);
        if (v->v.str.len > n) fprintf(f, " (%" PRIu64 " bytes)", v->v.str.len);
        return;
    }
    if (v->type == GGUF_ARR) {
        fprintf(f, "[%s x %" PRIu64 "]", gguf_type_name(v->v.arr.elem), v->v.arr.n);
        return;
    }
    json_t *j = value_json(v, 0);
    char *s = json_dumps(j, JSON_ENCODE_ANY | JSON_REAL_PRECISION(9));
    fputs(s ? s : "?", f);
    free(s);
    json_decref(j);
}

/* ============================================================ summary ===== */

typedef struct {
    char arch[64];
    uint64_t n_params, n_vocab, tensor_bytes;
    char sha[65];
} summary;

static void summarise(const gguf_ctx *g, summary *s) {
    memset(s, 0, sizeof *s);
    gguf_str a;
    if (gguf_get_str(g, "general.architecture", &a) && a.len < sizeof s->arch) {
        memcpy(s->arch, a.ptr, a.len);
        s->arch[a.len] = 0;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        s->n_params += g->tensors[i].n_elems;
        s->tensor_bytes += g->tensors[i].size;
    }
    const gguf_arr *toks = gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_TYPE_COUNT);
    s->n_vocab = toks ? toks->n : 0;
    hash_sha256_hex(g->base, (size_t)g->size, s->sha);
}

/* The architecture's hyperparameter keys, "<arch>.*", in file order. */
static int is_hparam(const summary *s, const char *key) {
    size_t n = strlen(s->arch);
    return n && strncmp(key, s->arch, n) == 0 && key[n] == '.';
}

static void shape_str(const gguf_tensor *t, char *buf, size_t n) {
    int k = snprintf(buf, n, "[");
    for (uint32_t d = 0; d < t->n_dims && k < (int)n; d++)
        k += snprintf(buf + k, n - (size_t)k, "%s%" PRIu64, d ? ", " : "", t->ne[d]);
    if (k < (int)n) snprintf(buf + k, n - (size_t)k, "]");
}

static int print_text(const gguf_ctx *g, const summary *s) {
    printf("file:            %s\n", g->path);
    printf("size:            %" PRIu64 " bytes (%.2f MiB)\n", g->size, (double)g->size / 1048576.0);
    printf("sha256:          %s\n", s->sha);
    printf("gguf version:    %u (alignment %u, data at %" PRIu64 ")\n", g->version, g->alignment,
           g->data_offset);
    printf("architecture:    %s\n", s->arch[0] ? s->arch : "(none)");
    gguf_str str;
    if (gguf_get_str(g, "general.name", &str))
        printf("name:            %.*s\n", (int)(str.len > 120 ? 120 : str.len), str.ptr);
    char key[160];
    uint64_t ctx = 0;
    snprintf(key, sizeof key, "%s.context_length", s->arch);
    if (gguf_get_u64(g, key, &ctx)) printf("context length:  %" PRIu64 "\n", ctx);
    printf("parameters:      %" PRIu64 " (%.2fM) in %" PRIu64 " tensors, %" PRIu64 " bytes\n",
           s->n_params, (double)s->n_params / 1e6, g->n_tensors, s->tensor_bytes);
    if (gguf_get_str(g, "tokenizer.ggml.model", &str))
        printf("tokenizer:       %.*s", (int)(str.len > 40 ? 40 : str.len), str.ptr);
    else
        printf("tokenizer:       (none)");
    if (gguf_get_str(g, "tokenizer.ggml.pre", &str))
        printf(" (pre: %.*s)", (int)(str.len > 40 ? 40 : str.len), str.ptr);
    printf(", vocabulary %" PRIu64 "\n", s->n_vocab);

    printf("\nhyperparameters:\n");
    for (uint64_t i = 0; i < g->n_kv; i++) {
        if (!is_hparam(s, g->kv[i].key)) continue;
        printf("  %-44s ", g->kv[i].key + strlen(s->arch) + 1);
        value_print(stdout, &g->kv[i].val);
        putchar('\n');
    }
    printf("\nmetadata (%" PRIu64 " keys):\n", g->n_kv);
    for (uint64_t i = 0; i < g->n_kv; i++) {
        if (is_hparam(s, g->kv[i].key)) continue;
        printf("  %-44s %-5s ", g->kv[i].key, gguf_type_name(g->kv[i].val.type));
        value_print(stdout, &g->kv[i].val);
        putchar('\n');
    }
    printf("\ntensors (%" PRIu64 "):\n", g->n_tensors);
    if (g->n_tensors)
        printf("  %-36s %-7s %-22s %12s %12s\n", "name", "type", "shape", "bytes", "offset");
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        char shape[96];
        shape_str(t, shape, sizeof shape);
        printf("  %-36s %-7s %-22s %12" PRIu64 " %12" PRIu64 "\n", t->name, dtype_name(t->type),
               shape, t->size, t->offset);
    }
    return 0;
}

static int print_json(const gguf_ctx *g, const summary *s) {
    json_t *root = json_object(), *hp = json_object(), *meta = json_object(), *ts = json_array();
    json_object_set_new(root, "file", json_string(g->path));
    json_object_set_new(root, "size", json_integer((json_int_t)g->size));
    json_object_set_new(root, "sha256", json_string(s->sha));
    json_object_set_new(root, "gguf_version", json_integer(g->version));
    json_object_set_new(root, "alignment", json_integer(g->alignment));
    json_object_set_new(root, "architecture", s->arch[0] ? json_string(s->arch) : json_null());
    json_object_set_new(root, "n_params", json_integer((json_int_t)s->n_params));
    json_object_set_new(root, "n_tensors", json_integer((json_int_t)g->n_tensors));
    json_object_set_new(root, "tensor_bytes", json_integer((json_int_t)s->tensor_bytes));
    json_object_set_new(root, "vocab_size", json_integer((json_int_t)s->n_vocab));
    gguf_str str;
    json_object_set_new(root, "tokenizer_model",
                        gguf_get_str(g, "tokenizer.ggml.model", &str)
                            ? json_stringn_nocheck(str.ptr, (size_t)str.len) : json_null());
    char key[160];
    uint64_t ctx = 0;
    snprintf(key, sizeof key, "%s.context_length", s->arch);
    json_object_set_new(root, "context_length",
                        gguf_get_u64(g, key, &ctx) ? json_integer((json_int_t)ctx) : json_null());
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const char *k = g->kv[i].key;
        if (is_hparam(s, k)) json_object_set_new(hp, k + strlen(s->arch) + 1, value_json(&g->kv[i].val, 0));
        json_object_set_new(meta, k, value_json(&g->kv[i].val, 0));
    }
    json_object_set_new(root, "hyperparameters", hp);
    json_object_set_new(root, "metadata", meta);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        json_t *shape = json_array();
        for (uint32_t d = 0; d < t->n_dims; d++) json_array_append_new(shape, json_integer((json_int_t)t->ne[d]));
        json_array_append_new(ts, json_pack("{s:s, s:s, s:o, s:I, s:I}", "name", t->name, "type",
                                            dtype_name(t->type), "shape", shape, "bytes",
                                            (json_int_t)t->size, "offset", (json_int_t)t->offset));
    }
    json_object_set_new(root, "tensors", ts);
    int rc = json_dumpf(root, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(9)) == 0 ? 0 : 1;
    putchar('\n');
    json_decref(root);
    return rc;
}

int cmd_inspect(int argc, char **argv) {
    const char *path = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            puts("usage: shoal inspect FILE.gguf [--json]");
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1]) return cli_error("unknown option '%s'", argv[i]);
        else if (path) return cli_error("inspect takes one file");
        else path = argv[i];
    }
    if (!path) return cli_error("usage: shoal inspect FILE.gguf [--json]");
    sh_err err = {{0}};
    gguf_ctx *g = gguf_open(path, &err);
    if (!g) return cli_error("%s", err.msg);
    summary s;
    summarise(g, &s);
    int rc = json ? print_json(g, &s) : print_text(g, &s);
    gguf_free(g);
    return rc;
}
