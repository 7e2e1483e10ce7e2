/*
 * shoal chat — an interactive conversation on stdin / stdout.
 *
 * The conversation is formatted with tokenizer/chat (the family of the model's
 * tokenizer.chat_template, detected as llama.cpp does, or --template NAME; ChatML with a
 * warning when neither says). Each turn the whole conversation is formatted and tokenized,
 * the KV cache keeps the longest common token prefix with the previous turn, and only the
 * rest is prefilled. The reply streams until an end-of-generation token or -n tokens.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "engine/engine.h"
#include "model/model.h"
#include "sampler/sampler.h"
#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"

typedef struct msg {
    const char *role; /* "system", "user", "assistant" (static strings) */
    char *content;    /* owned */
} msg;

static void usage(FILE *f) {
    fputs("usage: shoal chat -m MODEL [options]     (one user message per line; EOF ends)\n"
          "  -s, --system TEXT  system prompt\n"
          "  -n N               most tokens per reply (512)\n"
          "  --template NAME    chatml, llama2, llama3, zephyr, mistral-v7, phi3, gemma, ...\n"
          "                     (default: detected from the model's chat template)\n"
          "  --temp T (0.8)  --top-k K (40)  --top-p P (0.95)  --min-p P (0.05)  --seed S\n"
          "  --repeat-penalty X (1)\n"
          "  -t N               threads           --ctx N   context size (model's, max 4096)\n"
          "  --no-repack        weights stay in the shared file mapping (slower; see docs/engine.md)\n",
          f);
}

/* The conversation as prompt text ending with the opening of the assistant's turn; NULL with
 * a message in err. */
static char *format_chat(const char *tmpl, const char *name, const msg *m, int n,
                         bool *fallback, tok_chat_tmpl *used, sh_err *err) {
    tok_chat_msg *cm = malloc((size_t)(n ? n : 1) * sizeof *cm);
    if (!cm) {
        sh_errf(err, "out of memory");
        return NULL;
    }
    for (int i = 0; i < n; i++) cm[i] = (tok_chat_msg){m[i].role, m[i].content};
    char *text = tok_chat_apply(tmpl, name, cm, (size_t)n, true, fallback, used, err);
    free(cm);
    return text;
}

int cmd_chat(int argc, char **argv) {
    const char *model_path = NULL, *system = NULL, *tpl_name = NULL;
    int n_max = 512, n_threads = 0, n_ctx = 0;
    sampler_params sp;
    sampler_params_default(&sp);
    sp.seed = 0x5eed;
    model_params mp = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--no-repack")) {
            mp.no_repack = true;
            continue;
        }
        if (!v) {
            usage(stderr);
            return cli_error("option '%s' is unknown or needs a value", a);
        }
        i++;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) model_path = v;
        else if (!strcmp(a, "-s") || !strcmp(a, "--system")) system = v;
        else if (!strcmp(a, "--template")) tpl_name = v;
        else if (!strcmp(a, "-n")) rc = cli_int(a, v, 1, 1 << 20, &n_max);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) rc = cli_int(a, v, 1, 512, &n_threads);
        else if (!strcmp(a, "--ctx") || !strcmp(a, "-c")) rc = cli_int(a, v, 16, 1 << 22, &n_ctx);
        else if (!strcmp(a, "--temp")) rc = cli_float(a, v, &sp.temp);
        else if (!strcmp(a, "--top-k")) rc = cli_int(a, v, 0, 1 << 30, &sp.top_k);
        else if (!strcmp(a, "--top-p")) rc = cli_float(a, v, &sp.top_p);
        else if (!strcmp(a, "--min-p")) rc = cli_float(a, v, &sp.min_p);
        else if (!strcmp(a, "--repeat-penalty")) rc = cli_float(a, v, &sp.repeat_penalty);
        else if (!strcmp(a, "--seed")) rc = cli_u64(a, v, &sp.seed);
        else {
            usage(stderr);
            return cli_error("unknown option '%s'", a);
        }
        if (rc) return rc;
    }
    if (!model_path) {
        usage(stderr);
        return cli_error("a model is required (-m MODEL)");
    }
    int status = 1;
    sh_err err = {{0}};
    model *m = NULL;
    engine *e = NULL;
    sampler *smp = NULL;
    tok_vocab *voc = NULL;
    msg *hist = NULL;
    int n_hist = 0;
    int32_t *cached = NULL, *pos = NULL;
    int n_cached = 0;
    char *line = NULL;
    size_t line_cap = 0;
    tok_ids ids = {0};
    tok_buf reply = {0};

    m = model_load_ex(model_path, &mp, &err);
    if (!m) {
        cli_error("%s", err.msg);
        goto done;
    }
    voc = tok_vocab_from_gguf(m->g, &err);
    if (!voc) {
        cli_error("%s", err.msg);
        goto done;
    }
    engine_params ep;
    engine_params_default(&ep);
    ep.n_ctx = n_ctx > 0 ? n_ctx : (m->hp.n_ctx_train < 4096 ? m->hp.n_ctx_train : 4096);
    ep.n_threads = n_threads;
    ep.n_batch = ep.n_ctx;
    e = engine_init(m, &ep, &err);
    smp = e ? sampler_init(&sp, m->hp.n_vocab, &err) : NULL;
    if (!e || !smp) {
        cli_error("%s: %s", model_path, err.msg);
        goto done;
    }
    int ctx = engine_n_ctx(e);
    cached = malloc((size_t)ctx * sizeof *cached);
    pos = malloc((size_t)ctx * sizeof *pos);
    hist = calloc(2, sizeof *hist);
    if (!cached || !pos || !hist) {
        cli_error("out of memory");
        goto done;
    }
    int hist_cap = 2;
    if (system) {
        hist[0] = (msg){"system", strdup(system)};
        if (!hist[0].content) goto oom;
        n_hist = 1;
    }
    {
        bool fallback = false;
        tok_chat_tmpl used;
        msg probe = {"user", (char *)"x"};
        char *t = format_chat(tok_chat_template(voc), tpl_name, &probe, 1, &fallback, &used, &err);
        if (!t) {
            cli_error("%s", err.msg);
            goto done;
        }
        free(t);
        fprintf(stderr, "shoal chat: %s template%s, context %d; one message per line, EOF ends\n",
                tok_chat_name(used), fallback ? " (the model names none that is known: fallback)"
                                              : "", ctx);
    }
    for (;;) {
        fputs("> ", stderr);
        ssize_t len = getline(&line, &line_cap, stdin);
        if (len < 0) break;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (len == 0) continue;
        if (n_hist + 2 > hist_cap) {
            msg *nh = realloc(hist, (size_t)(hist_cap *= 2) * sizeof *nh);
            if (!nh) goto oom;
            hist = nh;
        }
        hist[n_hist] = (msg){"user", strdup(line)};
        if (!hist[n_hist].content) goto oom;
        n_hist++;
        char *text = format_chat(tok_chat_template(voc), tpl_name, hist, n_hist, NULL, NULL, &err);
        if (!text) {
            cli_error("%s", err.msg);
            goto done;
        }
        ids.n = 0;
        int rc = tok_tokenize(voc, text, strlen(text), true, true, &ids, &err);
        free(text);
        if (rc) {
            cli_error("%s", err.msg);
            goto done;
        }
        if ((int)ids.n + 1 >= ctx) {
            cli_error("the conversation (%zu tokens) no longer fits the context of %d", ids.n,
                      ctx);
            goto done;
        }
        /* keep the cached prefix that is unchanged, prefill the rest */
        int keep = 0;
        while (keep < n_cached && keep < (int)ids.n && cached[keep] == ids.ids[keep]) keep++;
        if (keep == (int)ids.n) keep--; /* at least one token to get logits from */
        engine_seq_truncate(e, 0, keep);
        for (int i = keep; i < (int)ids.n; i++) {
            cached[i] = ids.ids[i];
            pos[i] = i;
        }
        n_cached = (int)ids.n;
        engine_batch b = {.n = n_cached - keep, .token = cached + keep, .pos = pos + keep};
        if (engine_decode(e, &b, &err)) {
            cli_error("%s", err.msg);
            goto done;
        }
        const float *logits = engine_logits(e, b.n - 1);
        tok_detok dt;
        tok_detok_init(&dt, voc, false);
        reply.n = 0;
        for (int g = 0; g < n_max && n_cached < ctx; g++) {
            int32_t id = sampler_sample(smp, logits, NULL);
            sampler_accept(smp, id);
            if (tok_is_eog(voc, id)) {
                /* the end-of-turn token belongs to the conversation's tokens */
                cached[n_cached] = id;
                int32_t p = n_cached;
                engine_batch d = {.n = 1, .token = &id, .pos = &p};
                if (engine_decode(e, &d, &err) == 0) n_cached++;
                break;
            }
            size_t before = reply.n;
            if (tok_detok_push(&dt, id, &reply, &err)) {
                cli_error("%s", err.msg);
                goto done;
            }
            fwrite(reply.data + before, 1, reply.n - before, stdout);
            fflush(stdout);
            cached[n_cached] = id;
            int32_t p = n_cached;
            engine_batch d = {.n = 1, .token = &id, .pos = &p};
            if (engine_decode(e, &d, &err)) {
                cli_error("%s", err.msg);
                goto done;
            }
            n_cached++;
            logits = engine_logits(e, 0);
        }
        size_t before = reply.n;
        if (tok_detok_flush(&dt, &reply, &err)) goto done;
        fwrite(reply.data + before, 1, reply.n - before, stdout);
        fputc('\n', stdout);
        fflush(stdout);
        char *content = malloc(reply.n + 1);
        if (!content) goto oom;
        memcpy(content, reply.data ? reply.data : "", reply.n);
        content[reply.n] = 0;
        hist[n_hist++] = (msg){"assistant", content};
    }
    status = 0;
    goto done;
oom:
    cli_error("out of memory");
done:
    for (int i = 0; i < n_hist; i++) free(hist[i].content);
    free(hist);
    free(cached);
    free(pos);
    free(line);
    tok_ids_free(&ids);
    tok_buf_free(&reply);
    sampler_free(smp);
    engine_free(e);
    tok_vocab_free(voc);
    model_free(m);
    return status;
}
