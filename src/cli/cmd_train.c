/*
 * shoal train encoder | lm — train a specialist on the CPU (train/trainer.h).
 *
 *   shoal train encoder --train FILE [--dev FILE] --vocab VOCAB.gguf -o OUT.gguf [options]
 *   shoal train lm --train FILE [--dev FILE] (--vocab VOCAB.gguf | --bpe N) -o OUT.gguf [options]
 *
 * On a terminal a progress line is redrawn (step, loss, dev metrics, tokens/s, ETA); otherwise
 * one line per evaluation. --log-json FILE writes one JSON object per step and per evaluation
 * (the model card's curves are drawn from it). Ctrl-C (SIGINT) or SIGTERM saves a checkpoint
 * (default OUT.ckpt) and stops; --resume CKPT continues it with the same options, to the same
 * bytes an uninterrupted run writes.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/err.h"
#include "train/trainer.h"

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

typedef struct ui {
    bool tty, lm, quiet;
    FILE *log;
    int64_t last_eval_step;
    double last_draw;
    double dev_acc, dev_f1, dev_loss; /* the latest evaluation, for the progress line */
} ui;

static void fmt_time(char *buf, size_t n, double s) {
    if (s < 0 || s > 1e7) snprintf(buf, n, "?");
    else if (s < 60) snprintf(buf, n, "%.0fs", s);
    else if (s < 3600) snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
    else snprintf(buf, n, "%dh%02dm", (int)s / 3600, ((int)s % 3600) / 60);
}

static void dev_text(const ui *u, char *buf, size_t n) {
    if (u->dev_loss < 0 && u->dev_acc < 0) {
        buf[0] = 0;
        return;
    }
    if (u->lm) snprintf(buf, n, "  dev loss %.4f acc %.1f%%", u->dev_loss, 100 * u->dev_acc);
    else if (u->dev_f1 >= 0 && u->dev_acc >= 0)
        snprintf(buf, n, "  dev intent %.2f%% slot-F1 %.2f%%", 100 * u->dev_acc, 100 * u->dev_f1);
    else if (u->dev_acc >= 0) snprintf(buf, n, "  dev acc %.2f%%", 100 * u->dev_acc);
    else snprintf(buf, n, "  dev slot-F1 %.2f%%", 100 * u->dev_f1);
}

static void on_step(void *ud, const train_progress *p) {
    ui *u = ud;
    if (u->log)
        fprintf(u->log, "{\"step\":%lld,\"total\":%lld,\"loss\":%.6g,\"lr\":%.6g,\"grad_norm\":%.6g,"
                        "\"tok_s\":%.1f,\"gflop_s\":%.2f,\"elapsed_s\":%.3f}\n",
                (long long)p->step, (long long)p->total, p->loss, p->lr, p->grad_norm, p->tok_s, p->gflop_s,
                p->elapsed_s);
    if (!u->tty || u->quiet) return;
    if (p->elapsed_s - u->last_draw < 0.1 && p->step != p->total) return;
    u->last_draw = p->elapsed_s;
    char eta[16], dv[96];
    fmt_time(eta, sizeof eta, p->eta_s);
    dev_text(u, dv, sizeof dv);
    fprintf(stderr, "\r\033[Kstep %lld/%lld  loss %.4f%s  %.0f tok/s  ETA %s", (long long)p->step,
            (long long)p->total, p->loss, dv, p->tok_s, eta);
    fflush(stderr);
}

static void on_eval(void *ud, const train_progress *p) {
    ui *u = ud;
    u->dev_acc = p->dev_intent_acc, u->dev_f1 = p->dev_slot_f1, u->dev_loss = p->dev_loss;
    if (u->log)
        fprintf(u->log, "{\"step\":%lld,\"eval\":true,\"kind\":\"%s\",\"dev_metric\":%.6g,\"dev_intent_acc\":%.6g,"
                        "\"dev_slot_f1\":%.6g,\"dev_loss\":%.6g,\"improved\":%s,\"elapsed_s\":%.3f}\n",
                (long long)p->step, u->lm ? "lm" : "encoder", p->dev_metric, p->dev_intent_acc, p->dev_slot_f1, p->dev_loss,
                p->improved ? "true" : "false", p->elapsed_s);
    if (u->log) fflush(u->log);
    if (u->quiet) return;
    char dv[96], el[16];
    dev_text(u, dv, sizeof dv);
    fmt_time(el, sizeof el, p->elapsed_s);
    if (u->tty) fprintf(stderr, "\r\033[K");
    fprintf(stderr, "step %lld/%lld  loss %.4f%s%s  %.0f tok/s  %s%s\n", (long long)p->step,
            (long long)p->total, p->loss, dv, p->improved ? " (best)" : "", p->tok_s, el,
            p->stopping ? "  early stop: no better for --patience evaluations" : "");
}

static const char usage_text[] =
    "usage: shoal train encoder --train FILE [--dev FILE] --vocab VOCAB.gguf -o OUT.gguf [options]\n"
    "       shoal train lm --train FILE [--dev FILE] (--vocab VOCAB.gguf | --bpe N) -o OUT.gguf [options]\n"
    "\n"
    "data (JSONL; see docs/training.md):\n"
    "  encoder: {\"text\": .., \"intent\": .., \"slots\": {\"name\": \"span\"}, \"group\": ..}\n"
    "  lm:      {\"prompt\": .., \"completion\": ..} or plain text, one document per line\n"
    "model:\n"
    "  --dim N (256)  --layers N (4)  --heads N (4)  --kv-heads N (lm; = heads)  --ffn N (encoder 1024, lm 768)\n"
    "  --ctx N (encoder 64, lm 128)  --rope-base F (10000)  --tied (lm: output = token embeddings)\n"
    "  --prune-vocab (encoder: keep only the vocabulary's tokens the data uses)\n"
    "  --init FILE (encoder: start from this encoder's weights where names and shapes match)\n"
    "objective (encoder):\n"
    "  --w-intent F (1)  --w-slots F (1)  --w-embed F (0.2)  --tau F (0.05)  --pairs N (8 per batch; 0: none)\n"
    "  --dropout F (0.1: hidden dropout while training)\n"
    "  --mask F (0.1: training tokens replaced by [MASK] with this chance)\n"
    "optimization:\n"
    "  --epochs N (3) | --steps N   --batch N (encoder 64, lm 32)  --lr F (encoder 1e-3, lm 2e-3)\n"
    "  --warmup F (0.05 of the steps)  --wd F (0.01)  --clip F (1)  --min-lr F (0.05 of --lr)\n"
    "  --seed N (1)  -t N (threads: all cores)  --eval-every N (200)  --patience N (5; 0: never stop early)\n"
    "output:\n"
    "  -o OUT.gguf  --name NAME  --export-llama FILE (encoder: the intent classifier alone, for llama.cpp)\n"
    "  --checkpoint FILE (OUT.ckpt)  --ckpt-every N (0: on Ctrl-C only)  --resume CKPT\n"
    "  --stop-after N (stop after step N with a checkpoint, as Ctrl-C does)\n"
    "  --log-json FILE  -q (no progress)\n";

int cmd_train(int argc, char **argv) {
    if (argc < 2 || (strcmp(argv[1], "encoder") && strcmp(argv[1], "lm"))) {
        if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
            fputs(usage_text, stdout);
            return 0;
        }
        fputs(usage_text, stderr);
        return argc < 2 ? 1 : cli_error("train: '%s' is not encoder or lm", argv[1]);
    }
    const bool lm = !strcmp(argv[1], "lm");
    train_opts o;
    train_opts_default(&o, lm);
    const char *log_path = NULL;
    bool quiet = false, min_lr_set = false;
    float min_lr = 0;
    char ckpt_buf[1024];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const bool more = i + 1 < argc;
        const char *v = more ? argv[i + 1] : NULL;
#define OPT(name) (!strcmp(a, name) && more && (i++, 1))
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage_text, stdout);
            return 0;
        } else if (OPT("--train")) o.train = v;
        else if (OPT("--dev")) o.dev = v;
        else if (OPT("-o") || OPT("--out")) o.out = v;
        else if (OPT("--vocab")) o.vocab = v;
        else if (OPT("--bpe")) {
            if (!lm) return cli_error("--bpe is for shoal train lm (an encoder uses a WordPiece --vocab)");
            if (cli_int("--bpe", v, 300, 65536, &o.bpe_vocab)) return 1;
        } else if (!strcmp(a, "--prune-vocab")) o.prune_vocab = true;
        else if (OPT("--init")) o.init = v;
        else if (OPT("--resume")) o.resume = v;
        else if (OPT("--checkpoint")) o.checkpoint = v;
        else if (OPT("--ckpt-every")) {
            long x;
            if (cli_long("--ckpt-every", v, 0, 1L << 40, &x)) return 1;
            o.ckpt_every = x;
        } else if (OPT("--stop-after")) {
            long x;
            if (cli_long("--stop-after", v, 1, 1L << 40, &x)) return 1;
            o.stop_after = x;
        } else if (OPT("--export-llama")) o.export_llama = v;
        else if (OPT("--name")) o.name = v;
        else if (OPT("--dim")) {
            if (cli_int("--dim", v, 8, 4096, &o.dim)) return 1;
        } else if (OPT("--layers")) {
            if (cli_int("--layers", v, 1, 64, &o.layers)) return 1;
        } else if (OPT("--heads")) {
            if (cli_int("--heads", v, 1, 64, &o.heads)) return 1;
        } else if (OPT("--kv-heads")) {
            if (cli_int("--kv-heads", v, 1, 64, &o.kv_heads)) return 1;
        } else if (OPT("--ffn")) {
            if (cli_int("--ffn", v, 8, 16384, &o.ffn)) return 1;
        } else if (OPT("--ctx")) {
            if (cli_int("--ctx", v, 8, 4096, &o.ctx)) return 1;
        } else if (OPT("--rope-base")) {
            if (cli_float("--rope-base", v, &o.rope_base)) return 1;
        } else if (!strcmp(a, "--tied")) o.tied = true;
        else if (OPT("--w-intent")) {
            if (cli_float("--w-intent", v, &o.w_intent)) return 1;
        } else if (OPT("--w-slots")) {
            if (cli_float("--w-slots", v, &o.w_tags)) return 1;
        } else if (OPT("--w-embed")) {
            if (cli_float("--w-embed", v, &o.w_nce)) return 1;
        } else if (OPT("--tau")) {
            if (cli_float("--tau", v, &o.tau)) return 1;
        } else if (OPT("--pairs")) {
            if (cli_int("--pairs", v, 0, 256, &o.nce_pairs)) return 1;
        } else if (OPT("--dropout")) {
            if (cli_float("--dropout", v, &o.dropout)) return 1;
            if (!(o.dropout >= 0 && o.dropout < 1)) return cli_error("--dropout must be in [0, 1)");
        } else if (OPT("--mask")) {
            if (cli_float("--mask", v, &o.mask_prob)) return 1;
            if (!(o.mask_prob >= 0 && o.mask_prob < 1)) return cli_error("--mask must be in [0, 1)");
        } else if (OPT("--epochs")) {
            if (cli_int("--epochs", v, 1, 100000, &o.epochs)) return 1;
        } else if (OPT("--steps")) {
            long x;
            if (cli_long("--steps", v, 1, 1L << 40, &x)) return 1;
            o.steps = x;
        } else if (OPT("--batch")) {
            if (cli_int("--batch", v, 1, 4096, &o.batch)) return 1;
        } else if (OPT("--lr")) {
            if (cli_float("--lr", v, &o.lr)) return 1;
        } else if (OPT("--warmup")) {
            if (cli_float("--warmup", v, &o.warmup_frac)) return 1;
        } else if (OPT("--wd")) {
            if (cli_float("--wd", v, &o.wd)) return 1;
        } else if (OPT("--clip")) {
            if (cli_float("--clip", v, &o.clip)) return 1;
        } else if (OPT("--min-lr")) {
            if (cli_float("--min-lr", v, &min_lr)) return 1;
            min_lr_set = true;
        } else if (OPT("--seed")) {
            if (cli_u64("--seed", v, &o.seed)) return 1;
        } else if (OPT("-t") || OPT("--threads")) {
            if (cli_int("-t", v, 1, 512, &o.threads)) return 1;
        } else if (OPT("--eval-every")) {
            long x;
            if (cli_long("--eval-every", v, 1, 1L << 40, &x)) return 1;
            o.eval_every = x;
        } else if (OPT("--patience")) {
            if (cli_int("--patience", v, 0, 1 << 20, &o.patience)) return 1;
        } else if (OPT("--log-json")) log_path = v;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) quiet = true;
        else {
            fputs(usage_text, stderr);
            return cli_error("train: unknown or incomplete option '%s'", a);
        }
#undef OPT
    }
    if (!o.train) return cli_error("train: --train FILE is required");
    if (!o.out) return cli_error("train: -o OUT.gguf is required");
    if (!(o.lr > 0 && o.lr < 10)) return cli_error("--lr must be in (0, 10)");
    if (!(o.warmup_frac >= 0 && o.warmup_frac < 1)) return cli_error("--warmup is a fraction of the steps, in [0, 1)");
    if (!(o.wd >= 0) || !(o.clip >= 0) || !(o.tau > 0)) return cli_error("--wd and --clip must be >= 0, --tau > 0");
    if (!(o.w_intent >= 0) || !(o.w_tags >= 0) || !(o.w_nce >= 0)) return cli_error("the loss weights must be >= 0");
    if (min_lr_set) {
        if (!(min_lr >= 0 && min_lr <= o.lr)) return cli_error("--min-lr must be in [0, --lr]");
        o.min_lr_ratio = min_lr / o.lr;
    }
    if (o.dim % o.heads) return cli_error("--dim %d is not a multiple of --heads %d", o.dim, o.heads);
    if (lm && ((o.dim / o.heads) % 2)) return cli_error("lm: the head size (--dim / --heads) must be even for RoPE");
    if (lm && o.kv_heads > 0 && o.heads % o.kv_heads)
        return cli_error("--heads %d is not a multiple of --kv-heads %d", o.heads, o.kv_heads);
    if (!lm && o.kv_heads > 0) return cli_error("--kv-heads is for shoal train lm");
    if (!o.checkpoint) {
        snprintf(ckpt_buf, sizeof ckpt_buf, "%s.ckpt", o.out);
        o.checkpoint = ckpt_buf;
    }
    if (o.dev == NULL) o.patience = 0;
    ui u = {.tty = isatty(2), .lm = lm, .quiet = quiet, .dev_acc = -1, .dev_f1 = -1, .dev_loss = -1};
    if (log_path && !(u.log = fopen(log_path, o.resume ? "a" : "w")))
        return cli_error("--log-json %s: cannot open for writing", log_path);
    o.on_step = on_step;
    o.on_eval = on_eval;
    o.ud = &u;
    o.stop = &g_stop;
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    sh_err err = {0};
    train_result r;
    const int rc = lm ? train_lm(&o, &r, &err) : train_encoder(&o, &r, &err);
    if (u.tty && !quiet) fprintf(stderr, "\r\033[K");
    if (u.log) fclose(u.log);
    if (rc) return cli_error("%s", err.msg);
    char el[16];
    fmt_time(el, sizeof el, r.seconds);
    if (r.interrupted) {
        fprintf(stderr, "stopped at step %lld: checkpoint %s (continue with --resume %s)\n", (long long)r.steps,
                r.checkpoint, r.checkpoint);
        return g_stop ? 130 : 0; /* Ctrl-C, or --stop-after */
    }
    fprintf(stderr, "trained %llu parameters, %lld steps in %s (%.0f tok/s)%s", (unsigned long long)r.n_params,
            (long long)r.steps, el, r.tok_s, r.early_stopped ? ", stopped early" : "");
    if (o.dev) fprintf(stderr, "; best dev %.4f at step %lld", r.best_metric, (long long)r.best_step);
    fprintf(stderr, "\nwrote %s", o.out);
    if (o.export_llama) fprintf(stderr, " and %s", o.export_llama);
    fprintf(stderr, "\n");
    return 0;
}
