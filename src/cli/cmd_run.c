/*
 * shoal run — generate from a prompt: one batched prefill, then token-by-token decoding,
 * streamed to stdout as it is produced; timing to stderr (or everything as JSON with --json).
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "engine/engine.h"
#include "model/model.h"
#include "sampler/sampler.h"

static void usage(FILE *f) {
    fputs("usage: shoal run -m MODEL (-p PROMPT | --ids \"1 2 3\") [options]\n"
          "  -n N               tokens to generate (64)\n"
          "  --temp T           temperature (0.8; 0 = greedy)\n"
          "  --top-k K (40)  --top-p P (0.95)  --min-p P (0.05)\n"
          "  --repeat-penalty X (1)  --presence-penalty X (0)  --frequency-penalty X (0)\n"
          "  --repeat-last-n N  penalty window (64)\n"
          "  --seed S           sampler seed (default: from the clock, printed to stderr)\n"
          "  -t N               threads (number of CPUs)\n"
          "  --ctx N            context size (the model's)\n"
          "  --kv-f32           f32 KV cache (default f16)\n"
          "  --no-bos           do not add the BOS token to a text prompt\n"
          "  --ids \"1 2 3\"      the prompt as token ids, used as given\n"
          "  --json             print one JSON object instead of streaming\n"
          "  --logits-out FILE  write the last prompt position's logits, one per line\n",
          f);
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int parse_int(const char *opt, const char *s, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi)
        return cli_error("%s: '%s' is not an integer in [%ld, %ld]", opt, s, lo, hi);
    *out = (int)v;
    return 0;
}

static int parse_float(const char *opt, const char *s, float *out) {
    char *end;
    *out = strtof(s, &end);
    if (!*s || *end) return cli_error("%s: '%s' is not a number", opt, s);
    return 0;
}

/* "1 2 3" (spaces or commas) -> malloc'd ids; -1 on a bad id */
static int parse_ids(const char *s, int32_t **out, int *n_out) {
    size_t cap = strlen(s) / 2 + 2;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return cli_error("out of memory");
    int n = 0;
    const char *p = s;
    for (;;) {
        while (*p == ' ' || *p == ',' || *p == '\t' || *p == '\n') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX) {
            free(ids);
            return cli_error("--ids: '%s' is not a list of token ids", s);
        }
        ids[n++] = (int32_t)v;
        p = end;
    }
    if (n == 0) {
        free(ids);
        return cli_error("--ids: no token ids given");
    }
    *out = ids;
    *n_out = n;
    return 0;
}

int cmd_run(int argc, char **argv) {
    const char *model_path = NULL, *prompt = NULL, *ids_arg = NULL, *logits_out = NULL;
    int n_gen = 64, n_threads = 0, n_ctx = 0, json = 0, no_bos = 0, kv_f32 = 0, seed_given = 0;
    sampler_params sp;
    sampler_params_default(&sp);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = 1;
            continue;
        } else if (!strcmp(a, "--no-bos")) {
            no_bos = 1;
            continue;
        } else if (!strcmp(a, "--kv-f32")) {
            kv_f32 = 1;
            continue;
        }
        if (!v) {
            usage(stderr);
            return cli_error("option '%s' is unknown or needs a value", a);
        }
        i++;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) model_path = v;
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) prompt = v;
        else if (!strcmp(a, "--ids")) ids_arg = v;
        else if (!strcmp(a, "--logits-out")) logits_out = v;
        else if (!strcmp(a, "-n")) rc = parse_int(a, v, 0, 1 << 24, &n_gen);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) rc = parse_int(a, v, 1, 512, &n_threads);
        else if (!strcmp(a, "--ctx") || !strcmp(a, "-c")) rc = parse_int(a, v, 1, 1 << 22, &n_ctx);
        else if (!strcmp(a, "--temp")) rc = parse_float(a, v, &sp.temp);
        else if (!strcmp(a, "--top-k")) rc = parse_int(a, v, 0, 1 << 30, &sp.top_k);
        else if (!strcmp(a, "--top-p")) rc = parse_float(a, v, &sp.top_p);
        else if (!strcmp(a, "--min-p")) rc = parse_float(a, v, &sp.min_p);
        else if (!strcmp(a, "--repeat-penalty")) rc = parse_float(a, v, &sp.repeat_penalty);
        else if (!strcmp(a, "--presence-penalty")) rc = parse_float(a, v, &sp.presence_penalty);
        else if (!strcmp(a, "--frequency-penalty")) rc = parse_float(a, v, &sp.frequency_penalty);
        else if (!strcmp(a, "--repeat-last-n")) rc = parse_int(a, v, 0, 1 << 20, &sp.penalty_last_n);
        else if (!strcmp(a, "--seed")) {
            char *end;
            errno = 0;
            sp.seed = strtoull(v, &end, 10);
            if (!*v || *end || errno) rc = cli_error("--seed: '%s' is not an integer", v);
            seed_given = 1;
        } else {
            usage(stderr);
            return cli_error("unknown option '%s'", a);
        }
        if (rc) return rc;
    }
    if (!model_path) {
        usage(stderr);
        return cli_error("a model is required (-m MODEL)");
    }
    if (!!prompt + !!ids_arg != 1) {
        usage(stderr);
        return cli_error("give exactly one of -p PROMPT or --ids \"ID ID ...\"");
    }
    if (prompt)
        return cli_error("-p: text prompts need the tokenizer, which this build does not have "
                         "yet; use --ids");
    (void)no_bos;
    if (!seed_given) sp.seed = (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32);

    int32_t *toks = NULL;
    int n_prompt = 0;
    if (parse_ids(ids_arg, &toks, &n_prompt)) return 1;

    int status = 1;
    sh_err err = {{0}};
    model *m = NULL;
    engine *e = NULL;
    sampler *smp = NULL;
    int32_t *pos = NULL, *all = NULL;
    json_t *jtoks = NULL;
    double t0 = now_ms();
    m = model_load(model_path, &err);
    if (!m) {
        cli_error("%s", err.msg);
        goto done;
    }
    for (int i = 0; i < n_prompt; i++)
        if (toks[i] >= m->hp.n_vocab) {
            cli_error("--ids: token id %d out of range [0, %d)", toks[i], m->hp.n_vocab);
            goto done;
        }
    engine_params ep;
    engine_params_default(&ep);
    ep.n_ctx = n_ctx;
    ep.n_threads = n_threads;
    ep.kv_f32 = kv_f32;
    int ctx = n_ctx > 0 ? n_ctx : m->hp.n_ctx_train;
    if (n_prompt > ctx) {
        cli_error("%s: prompt of %d tokens is longer than the context of %d", model_path,
                  n_prompt, ctx);
        goto done;
    }
    if (n_prompt + n_gen > ctx) n_gen = ctx - n_prompt; /* stop at the end of the context */
    ep.n_batch = n_prompt;
    e = engine_init(m, &ep, &err);
    if (!e) {
        cli_error("%s: %s", model_path, err.msg);
        goto done;
    }
    smp = sampler_init(&sp, m->hp.n_vocab, &err);
    if (!smp) {
        cli_error("%s", err.msg);
        goto done;
    }
    double t_load = now_ms() - t0;
    pos = malloc((size_t)n_prompt * sizeof *pos);
    all = malloc(((size_t)n_gen + 1) * sizeof *all);
    if (!pos || !all) {
        cli_error("out of memory");
        goto done;
    }
    for (int i = 0; i < n_prompt; i++) {
        pos[i] = i;
        sampler_accept(smp, toks[i]);
    }

    /* prefill: the whole prompt as one batch, logits of the last position only */
    double t1 = now_ms();
    engine_batch b = {.n = n_prompt, .token = toks, .pos = pos};
    if (engine_decode(e, &b, &err)) {
        cli_error("%s: %s", model_path, err.msg);
        goto done;
    }
    double prompt_ms = now_ms() - t1;
    const float *logits = engine_logits(e, n_prompt - 1);
    if (logits_out) {
        FILE *f = fopen(logits_out, "w");
        if (!f) {
            cli_error("%s: %s", logits_out, strerror(errno));
            goto done;
        }
        for (int i = 0; i < m->hp.n_vocab; i++) fprintf(f, "%.9g\n", logits[i]);
        if (fclose(f)) {
            cli_error("%s: %s", logits_out, strerror(errno));
            goto done;
        }
    }

    /* generation */
    double t2 = now_ms();
    int n_done = 0;
    for (; n_done < n_gen; n_done++) {
        int32_t id = sampler_sample(smp, logits, NULL);
        sampler_accept(smp, id);
        all[n_done] = id;
        if (!json) {
            printf("%s%d", n_done ? " " : "", id);
            fflush(stdout);
        }
        if (n_done + 1 == n_gen) {
            n_done++;
            break;
        }
        int32_t p = n_prompt + n_done;
        engine_batch d = {.n = 1, .token = &id, .pos = &p};
        if (engine_decode(e, &d, &err)) {
            cli_error("%s: %s", model_path, err.msg);
            goto done;
        }
        logits = engine_logits(e, 0);
    }
    double gen_ms = now_ms() - t2;
    if (json) {
        jtoks = json_array();
        for (int i = 0; i < n_done; i++) json_array_append_new(jtoks, json_integer(all[i]));
        json_t *o = json_object();
        json_object_set(o, "tokens", jtoks);
        json_object_set_new(o, "text", json_null());
        json_object_set_new(o, "prompt_tokens", json_integer(n_prompt));
        json_object_set_new(o, "prompt_ms", json_real(prompt_ms));
        json_object_set_new(o, "gen_tokens", json_integer(n_done));
        json_object_set_new(o, "gen_ms", json_real(gen_ms));
        json_object_set_new(o, "load_ms", json_real(t_load));
        json_object_set_new(o, "seed", json_integer((json_int_t)sp.seed));
        json_object_set_new(o, "threads", json_integer(engine_n_threads(e)));
        char *s = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        if (!s) {
            cli_error("out of memory");
            goto done;
        }
        puts(s);
        free(s);
    } else {
        putchar('\n');
        fprintf(stderr,
                "seed %llu | load %.1f ms | prompt %d tokens in %.2f ms (%.1f tok/s) | "
                "generated %d tokens in %.2f ms (%.1f tok/s) | %d threads\n",
                (unsigned long long)sp.seed, t_load, n_prompt, prompt_ms,
                n_prompt / (prompt_ms / 1e3), n_done, gen_ms,
                n_done > 1 ? (n_done - 1) / (gen_ms / 1e3) : 0.0, engine_n_threads(e));
    }
    status = 0;
done:
    json_decref(jtoks);
    free(pos);
    free(all);
    free(toks);
    sampler_free(smp);
    engine_free(e);
    model_free(m);
    return status;
}
