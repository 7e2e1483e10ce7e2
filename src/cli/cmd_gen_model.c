/*
 * shoal gen-model — seeded random-weight llama / qwen2 decoders and bert / nomic-bert encoders
 * for tests and benchmarks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "model/encoder.h"
#include "model/modelgen.h"
#include "tensor/dtype.h"

/* A uint32_t option (all of gen-model's sizes). */
static int parse_u32(const char *opt, const char *s, uint32_t *out) {
    long v;
    if (cli_long(opt, s, 0, 0x7fffffffL, &v)) return 1;
    *out = (uint32_t)v;
    return 0;
}

static void usage(FILE *f) {
    fputs("usage: shoal gen-model --vocab VOCAB.gguf -o OUT.gguf [options]\n"
          "  --arch llama|qwen2   architecture (default llama; --qkv-bias implies qwen2)\n"
          "  --dim N              embedding size (64)        --layers N   blocks (2)\n"
          "  --heads N            attention heads (4)        --kv-heads N (= heads)\n"
          "  --head-dim N         head size (dim/heads)      --ffn N      FFN size (172)\n"
          "  --ctx N              context length (2048)      --rope-theta X (10000)\n"
          "  --norm-eps X         RMSNorm epsilon (1e-5)     --tied       no output.weight\n"
          "  --qkv-bias           attention biases           --dtype f32|f16 (f32)\n"
          "  --seed N (0)  --init-std X (0.02)  --norm-std X (0.1)  --name NAME\n"
          "encoders (--arch bert|nomic-bert; ffn 4*dim, ctx 512, norm-eps 1e-12 by default):\n"
          "  --pooling none|mean|cls|last|rank (mean)   --cls-labels A,B,C  a sequence head\n"
          "  --cls-dense   dense + tanh before it        --tok-labels O,B-x,I-x  a token head\n"
          "  --tok-only    the token head as cls.output (shoal.classifier.task = token)\n"
          "  --type-vocab N   token type rows (2)\n",
          f);
}

int cmd_gen_model(int argc, char **argv) {
    modelgen_params p;
    modelgen_defaults(&p);
    const char *out = NULL;
    int arch_given = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--tied")) {
            p.tied = true;
            continue;
        } else if (!strcmp(a, "--qkv-bias")) {
            p.qkv_bias = true;
            continue;
        } else if (!strcmp(a, "--cls-dense")) {
            p.cls_dense = true;
            continue;
        } else if (!strcmp(a, "--tok-only")) {
            p.tok_only = true;
            continue;
        }
        if (!v) {
            usage(stderr);
            return cli_error("option '%s' is unknown or needs a value", a);
        }
        i++;
        if (!strcmp(a, "-o") || !strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--vocab")) p.vocab = v;
        else if (!strcmp(a, "--arch")) p.arch = v, arch_given = 1;
        else if (!strcmp(a, "--name")) p.name = v;
        else if (!strcmp(a, "--dim")) rc = parse_u32(a, v, &p.dim);
        else if (!strcmp(a, "--layers")) rc = parse_u32(a, v, &p.layers);
        else if (!strcmp(a, "--heads")) rc = parse_u32(a, v, &p.heads);
        else if (!strcmp(a, "--kv-heads")) rc = parse_u32(a, v, &p.kv_heads);
        else if (!strcmp(a, "--head-dim")) rc = parse_u32(a, v, &p.head_dim);
        else if (!strcmp(a, "--ffn")) rc = parse_u32(a, v, &p.ffn);
        else if (!strcmp(a, "--ctx")) rc = parse_u32(a, v, &p.ctx);
        else if (!strcmp(a, "--rope-theta")) rc = cli_float(a, v, &p.rope_theta);
        else if (!strcmp(a, "--norm-eps")) rc = cli_float(a, v, &p.norm_eps);
        else if (!strcmp(a, "--init-std")) rc = cli_float(a, v, &p.init_std);
        else if (!strcmp(a, "--norm-std")) rc = cli_float(a, v, &p.norm_std);
        else if (!strcmp(a, "--seed")) rc = cli_u64(a, v, &p.seed);
        else if (!strcmp(a, "--cls-labels")) p.cls_labels = v;
        else if (!strcmp(a, "--tok-labels")) p.tok_labels = v;
        else if (!strcmp(a, "--type-vocab")) rc = parse_u32(a, v, &p.type_vocab);
        else if (!strcmp(a, "--pooling")) {
            p.pooling = encoder_pooling_from_name(v);
            if (p.pooling < 0) rc = cli_error("--pooling: '%s' is not one of none, mean, cls, last, rank", v);
        }
        else if (!strcmp(a, "--dtype")) {
            int t = dtype_from_name(v);
            if (t != DT_F32 && t != DT_F16) rc = cli_error("--dtype: '%s' (f32 or f16)", v);
            else p.dtype = (uint32_t)t;
        } else {
            usage(stderr);
            return cli_error("unknown option '%s'", a);
        }
        if (rc) return rc;
    }
    if (p.qkv_bias && !arch_given) p.arch = "qwen2";
    if (!out || !p.vocab) {
        usage(stderr);
        return cli_error("--vocab and -o are required");
    }
    sh_err err = {{0}};
    uint64_t n_params = 0;
    if (modelgen_write(&p, out, &n_params, &err)) return cli_error("%s", err.msg);
    fprintf(stderr, "gen-model: wrote %s (%s, %.2fM parameters, %s)\n", out, p.arch,
            (double)n_params / 1e6, dtype_name(p.dtype));
    return 0;
}
