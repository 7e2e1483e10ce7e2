/*
 * shoal serve — one node serving GGUF models behind the OpenAI-compatible API.
 *
 * SIGTERM / SIGINT drain the node: /health turns 503 (routers stop sending), new generation
 * requests get 503, in-flight ones finish (up to --drain-timeout seconds), then it exits 0.
 */
#include <errno.h>
#include <sys/stat.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cluster/config.h"
#include "cluster/join.h"
#include "serve/server.h"

#define MAX_MODELS 16

static void usage(FILE *f) {
    fputs("usage: shoal serve -m MODEL.gguf [-m NAME=MODEL.gguf ...] [options]\n"
          "       shoal serve --config cluster.yaml [options]   (a router: see docs/cluster.md)\n"
          "  --config FILE        cluster config: local models, remote nodes, routing (YAML)\n"
          "  --join URL           announce this node to the router at URL and heartbeat\n"
          "  --token T            the router's join token (with --join)\n"
          "  --advertise URL      how the router reaches this node (http://HOST:PORT of --host/--port)\n"
          "  --node-name NAME     this node's name at the router (host:port)\n"
          "  --host ADDR          listen address (127.0.0.1; a non-loopback address needs a key)\n"
          "  --port N             port (8080; 0 picks a free one and prints it)\n"
          "  --api-key KEY        require Authorization: Bearer KEY (all but /health)\n"
          "  --api-key-file F     the same, key read from the first line of F\n"
          "  --insecure-no-key    allow a non-loopback --host without a key\n"
          "  --slots N            concurrent sequences per model (8)\n"
          "  --ctx N              context positions per slot (model's, at most 4096)\n"
          "  -t N                 engine threads (number of cores)\n"
          "  --max-queue N        waiting requests before 429 (64)\n"
          "  --chunk N            prompt tokens per prefill chunk (128)\n"
          "  --kv-f32             f32 KV cache (default f16)\n"
          "  --no-repack          weights stay in the shared file mapping (slower; see docs/engine.md)\n"
          "  --pooling [NAME=]P   encoders: pooling none|mean|cls|last|rank instead of the file's,\n"
          "                       for model NAME (or every encoder)\n"
          "  --matryoshka NAME    model NAME's embeddings may be cut to a request's 'dimensions'\n"
          "                       (only for models trained for it, such as nomic-embed v1.5)\n"
          "  --chat-template NAME chat format for every model (chatml, llama3, ...; default: from\n"
          "                       the file's tokenizer.chat_template)\n"
          "  --max-body BYTES     largest request body (4194304; larger: 413)\n"
          "  --log-file F         request log (JSON lines) to F instead of stderr\n"
          "  --log-prompts        include prompts and outputs in the log (off by default)\n"
          "  --drain-timeout S    seconds in-flight requests get on SIGTERM (30)\n"
          "response cache (docs/cache.md; off unless one of these is given):\n"
          "  --cache              memory tier (--cache-mb, 64 MiB)\n"
          "  --cache-mb N         memory tier budget in MiB (0: no memory tier)\n"
          "  --cache-ttl S        entries expire after S seconds (3600)\n"
          "  --cache-db FILE      SQLite tier, survives restarts (--cache-db-mb: its cap, 256)\n"
          "  --cache-redis URL    Redis tier shared by every process that points at it:\n"
          "                       redis://HOST[:PORT][/DB] or unix:/PATH\n"
          "  --cache-redis-timeout-ms N  per Redis command (3): slower is a miss\n"
          "  --cache-policy [MODEL=]P    deterministic (temperature 0 or a seed; default), always, never\n"
          "  --cache-fold-case    keys ignore letter case\n"
          "  --semantic-cache NAME  a semantic tier: encoder NAME (one of -m) embeds the prompt's last\n"
          "                       turn; a hit needs --min-similarity (cosine, 0.93) and the same\n"
          "                       numbers, negations, polarity words and slots\n"
          "  --semantic-label     the encoder's top label partitions the semantic tier too\n"
          "  --semantic-max N     semantic entries kept (100000)\n"
          "Responses API store (previous_response_id, GET/DELETE /v1/responses/ID; docs/api.md):\n"
          "  --responses-db FILE  SQLite file (default $XDG_STATE_HOME/shoal/responses.db, else\n"
          "                       ~/.local/state/shoal/responses.db); 'none': memory only\n"
          "  --responses-redis URL  shared by every node that points at it\n"
          "  --responses-ttl S    retention in seconds (2592000: 30 days)\n"
          "  --responses-mb N     cap in MiB of the SQLite file (1024), or of memory with\n"
          "                       --responses-db none and no Redis (64)\n"
          "  --no-responses-store nothing is stored (store: true is then a 400)\n",
          f);
}

/* mkdir -p path with mode (for new directories). 0, or -1 (errno set). */
static int cli_mkdirs(const char *path, mode_t mode) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, mode) && errno != EEXIST) return -1;
        *p = '/';
    }
    return mkdir(buf, mode) && errno != EEXIST ? -1 : 0;
}

static char *read_key_file(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) {
        cli_error("--api-key-file %s: %s", path, strerror(errno));
        return NULL;
    }
    char buf[512];
    char *line = fgets(buf, sizeof buf, f);
    fclose(f);
    if (!line) {
        cli_error("--api-key-file %s: empty", path);
        return NULL;
    }
    buf[strcspn(buf, "\r\n")] = 0;
    if (!buf[0]) {
        cli_error("--api-key-file %s: the first line is empty", path);
        return NULL;
    }
    return strdup(buf);
}

static int is_loopback(const char *h) {
    return !strncmp(h, "127.", 4) || !strcmp(h, "::1");
}

/* NAME=PATH, or PATH (the name is the file name without directory and .gguf; then *owned is
 * the malloc'd name, for the caller to free). */
static void model_arg(char *v, server_model *m, char **owned) {
    char *eq = strchr(v, '=');
    if (eq && eq != v) {
        *eq = 0;
        m->name = v;
        m->path = eq + 1;
        return;
    }
    m->path = v;
    const char *base = strrchr(v, '/');
    base = base ? base + 1 : v;
    char *name = strdup(base);
    size_t n = strlen(name);
    if (n > 5 && !strcmp(name + n - 5, ".gguf")) name[n - 5] = 0;
    m->name = name;
    *owned = name;
}

static int serve_main(int argc, char **argv, char **owned_names) {
    server_params p = {.host = "127.0.0.1", .port = 8080};
    server_model models[MAX_MODELS] = {{0}};
    int n_models = 0, insecure = 0;
    long drain_s = 30, x;
    char *key_from_file = NULL;
    const char *log_file = NULL, *config = NULL, *join_url = NULL, *token = NULL, *advertise = NULL,
               *node_name = NULL;
    bool host_set = false, port_set = false;
    const char *pool_names[MAX_MODELS], *pool_all = NULL;
    const char *mat_names[MAX_MODELS];
    int n_mat = 0;
    char *pool_vals[MAX_MODELS];
    int n_pool = 0;
    cache_params cp = {.mem_bytes = 64u << 20};
    bool cache_on = false;
    long mem_mb = -1, db_mb = 256, ttl = 3600, rto = 3;
    cache_params rsp = {.mem_bytes = 64u << 20, .db_bytes = (size_t)1024 << 20, .ttl_s = 30.0 * 86400};
    const char *rsp_db = NULL;
    bool rsp_off = false;
    long rsp_mb = 0, rsp_ttl = 0;
    const char *policies[MAX_MODELS];
    int n_policies = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--kv-f32")) { p.kv_f32 = true; continue; }
        if (!strcmp(a, "--no-repack")) { p.no_repack = true; continue; }
        if (!strcmp(a, "--log-prompts")) { p.log_prompts = true; continue; }
        if (!strcmp(a, "--no-responses-store")) { rsp_off = true; continue; }
        if (!strcmp(a, "--insecure-no-key")) { insecure = 1; continue; }
        if (!strcmp(a, "--cache")) { cache_on = true; continue; }
        if (!strcmp(a, "--cache-fold-case")) { p.cache_fold_case = true; continue; }
        if (!strcmp(a, "--semantic-label")) { p.semantic_label = true; continue; }
        if (!v) {
            usage(stderr);
            return cli_error("option '%s' is unknown or needs a value", a);
        }
        i++;
        int rc = 0;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (n_models == MAX_MODELS) return cli_error("at most %d models", MAX_MODELS);
            model_arg(v, &models[n_models], &owned_names[n_models]);
            n_models++;
        } else if (!strcmp(a, "--host")) p.host = v, host_set = true;
        else if (!strcmp(a, "--port")) rc = cli_long(a, v, 0, 65535, &x), p.port = (uint16_t)x, port_set = true;
        else if (!strcmp(a, "--config")) config = v;
        else if (!strcmp(a, "--join")) join_url = v;
        else if (!strcmp(a, "--token")) token = v;
        else if (!strcmp(a, "--advertise")) advertise = v;
        else if (!strcmp(a, "--node-name")) node_name = v;
        else if (!strcmp(a, "--api-key")) p.api_key = v;
        else if (!strcmp(a, "--api-key-file")) {
            if (!(key_from_file = read_key_file(v))) return 1;
            p.api_key = key_from_file;
        } else if (!strcmp(a, "--slots")) rc = cli_long(a, v, 1, 256, &x), p.n_slots = (int)x;
        else if (!strcmp(a, "--ctx")) rc = cli_long(a, v, 16, 1 << 20, &x), p.n_ctx = (int)x;
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) rc = cli_long(a, v, 1, 1024, &x), p.n_threads = (int)x;
        else if (!strcmp(a, "--max-queue")) rc = cli_long(a, v, 1, 1 << 20, &x), p.max_queue = (int)x;
        else if (!strcmp(a, "--chunk")) rc = cli_long(a, v, 1, 8192, &x), p.chunk = (int)x;
        else if (!strcmp(a, "--max-body")) rc = cli_long(a, v, 1024, 1L << 30, &x), p.max_body = (size_t)x;
        else if (!strcmp(a, "--log-file")) log_file = v;
        else if (!strcmp(a, "--chat-template")) p.chat_template = v;
        else if (!strcmp(a, "--pooling")) {
            char *eq = strchr(v, '=');
            if (!eq) pool_all = v;
            else if (n_pool == MAX_MODELS) return cli_error("--pooling: at most %d models", MAX_MODELS);
            else *eq = 0, pool_names[n_pool] = v, pool_vals[n_pool++] = eq + 1;
        }
        else if (!strcmp(a, "--matryoshka")) {
            if (n_mat == MAX_MODELS) return cli_error("--matryoshka: at most %d models", MAX_MODELS);
            mat_names[n_mat++] = v;
        }
        else if (!strcmp(a, "--drain-timeout")) rc = cli_long(a, v, 0, 3600, &drain_s);
        else if (!strcmp(a, "--cache-mb")) rc = cli_long(a, v, 0, 1 << 20, &mem_mb), cache_on = true;
        else if (!strcmp(a, "--cache-ttl")) rc = cli_long(a, v, 1, 365L * 86400, &ttl);
        else if (!strcmp(a, "--cache-db")) cp.db_path = v, cache_on = true;
        else if (!strcmp(a, "--cache-db-mb")) rc = cli_long(a, v, 1, 1 << 20, &db_mb);
        else if (!strcmp(a, "--cache-redis")) cp.redis_url = v, cache_on = true;
        else if (!strcmp(a, "--cache-redis-timeout-ms")) rc = cli_long(a, v, 1, 10000, &rto);
        else if (!strcmp(a, "--semantic-cache")) p.semantic_model = v, cache_on = true;
        else if (!strcmp(a, "--min-similarity")) {
            float f;
            if ((rc = cli_float(a, v, &f)) == 0 && !(f > 0 && f <= 1)) return cli_error("--min-similarity: a cosine in (0, 1]");
            p.min_similarity = f;
        } else if (!strcmp(a, "--semantic-max")) rc = cli_long(a, v, 1, 100000000, &x), p.semantic_max = (size_t)x;
        else if (!strcmp(a, "--responses-db")) rsp_db = v;
        else if (!strcmp(a, "--responses-redis")) rsp.redis_url = v;
        else if (!strcmp(a, "--responses-ttl")) rc = cli_long(a, v, 1, 10L * 365 * 86400, &rsp_ttl);
        else if (!strcmp(a, "--responses-mb")) rc = cli_long(a, v, 1, 1 << 20, &rsp_mb);
        else if (!strcmp(a, "--cache-policy")) {
            if (n_policies == MAX_MODELS) return cli_error("--cache-policy: at most %d", MAX_MODELS);
            policies[n_policies++] = v;
        }
        else {
            usage(stderr);
            return cli_error("unknown option '%s'", a);
        }
        if (rc) return rc;
    }
    for (int i = 0; i < n_models; i++) models[i].pooling = pool_all;
    for (int k = 0; k < n_mat; k++) {
        int found = 0;
        for (int i = 0; i < n_models; i++)
            if (!strcmp(models[i].name, mat_names[k])) models[i].matryoshka = true, found = 1;
        if (!found) return cli_error("--matryoshka %s: no model is called '%s'", mat_names[k], mat_names[k]);
    }
    for (int k = 0; k < n_pool; k++) {
        int found = 0;
        for (int i = 0; i < n_models; i++)
            if (!strcmp(models[i].name, pool_names[k])) models[i].pooling = pool_vals[k], found = 1;
        if (!found) return cli_error("--pooling %s=%s: no model is called '%s'", pool_names[k], pool_vals[k], pool_names[k]);
    }
    cluster_config *cc = NULL;
    sh_err err = {{0}};
    if (config) {
        if (n_models) return cli_error("--config lists the models: give no -m with it");
        if (join_url) return cli_error("--config makes this process a router; --join is for nodes");
        if (pool_all || n_pool) return cli_error("--pooling: give it per local model in the config (pooling: mean)");
        if (!(cc = ccfg_load(config, &err))) return cli_error("%s", err.msg);
        p.cluster = cc;
        if (cc->host && !host_set) p.host = cc->host;
        if (cc->port > 0 && !port_set) p.port = (uint16_t)cc->port;
        if (cc->api_key && !p.api_key) p.api_key = cc->api_key;
        if (cc->slots && !p.n_slots) p.n_slots = cc->slots;
        if (cc->ctx && !p.n_ctx) p.n_ctx = cc->ctx;
        if (cc->threads && !p.n_threads) p.n_threads = cc->threads;
    } else if (!n_models) {
        usage(stderr);
        return cli_error("give at least one model (-m MODEL.gguf) or a cluster config (--config FILE)");
    }
    if (cache_on) {
        if (mem_mb >= 0) cp.mem_bytes = (size_t)mem_mb << 20;
        cp.db_bytes = (size_t)db_mb << 20;
        cp.ttl_s = (double)ttl;
        cp.redis_timeout_ms = (double)rto;
        p.cache = &cp;
        p.cache_policy = policies;
        p.n_cache_policy = n_policies;
    } else if (n_policies || p.cache_fold_case) {
        return cli_error("--cache-policy and --cache-fold-case need a cache (--cache, --cache-db, --cache-redis)");
    }
    char rsp_path[4096];
    if (!rsp_off) {
        if (rsp_ttl) rsp.ttl_s = (double)rsp_ttl;
        if (rsp_mb) rsp.mem_bytes = rsp.db_bytes = (size_t)rsp_mb << 20;
        if (!rsp_db) { /* the default file, its directory made private */
            const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
            if (xdg && xdg[0]) snprintf(rsp_path, sizeof rsp_path, "%s/shoal", xdg);
            else if (home && home[0]) snprintf(rsp_path, sizeof rsp_path, "%s/.local/state/shoal", home);
            else rsp_path[0] = 0;
            if (rsp_path[0] && cli_mkdirs(rsp_path, 0700) == 0) {
                strncat(rsp_path, "/responses.db", sizeof rsp_path - strlen(rsp_path) - 1);
                rsp_db = rsp_path;
            } else {
                fprintf(stderr, "shoal: warning: no state directory for the responses store (%s): memory only "
                                "(--responses-db FILE to choose one)\n", rsp_path[0] ? rsp_path : "no HOME");
            }
        }
        if (rsp_db && strcmp(rsp_db, "none")) rsp.db_path = rsp_db;
        /* with a shared tier (the file, Redis) every read goes to it, so that a deletion made by
         * another process is seen at once; memory alone only without one */
        if (rsp.db_path || rsp.redis_url) rsp.mem_bytes = 0;
        p.responses = &rsp;
    }
    if ((token || advertise || node_name) && !join_url) return cli_error("--token, --advertise and --node-name go with --join");
    if (p.api_key && !p.api_key[0]) return cli_error("--api-key is empty");
    if (!is_loopback(p.host) && !p.api_key && !insecure)
        return cli_error("--host %s is reachable from other machines: give --api-key / --api-key-file "
                         "(or --insecure-no-key to run without one)", p.host);
    if (log_file && !(p.log = fopen(log_file, "a")))
        return cli_error("--log-file %s: %s", log_file, strerror(errno));

    /* Signals go to this thread only (sigwait below); every thread started later inherits
     * the mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN); /* a file-size limit fails the write (the cache warns), it does not kill */

    server *s = server_init(&p, models, n_models, &err);
    if (!s) {
        ccfg_free(cc);
        return cli_error("%s", err.msg);
    }
    if (cc) fprintf(stderr, "shoal: routing on http://%s%s%s:%u (", strchr(p.host, ':') ? "[" : "", p.host,
                    strchr(p.host, ':') ? "]" : "", server_port(s));
    else fprintf(stderr, "shoal: serving %d model%s on http://%s%s%s:%u (", n_models, n_models > 1 ? "s" : "",
            strchr(p.host, ':') ? "[" : "", p.host, strchr(p.host, ':') ? "]" : "", server_port(s));
    for (int i = 0; i < n_models; i++) fprintf(stderr, "%s%s", i ? ", " : "", models[i].name);
    if (cc) {
        fprintf(stderr, "%d local model%s, %d node%s, %d model name%s", cc->n_locals,
                cc->n_locals == 1 ? "" : "s", cc->n_nodes, cc->n_nodes == 1 ? "" : "s", cc->n_models,
                cc->n_models == 1 ? "" : "s");
        for (int i = 0; i < cc->n_models; i++) fprintf(stderr, "%s%s", i ? ", " : ": ", cc->models[i].name);
    }
    fprintf(stderr, ")%s\n", p.api_key ? ", API key required" : "");
    fflush(stderr);

    joiner *jn = NULL;
    if (join_url) {
        char self[300];
        if (!advertise) {
            if (!strcmp(p.host, "0.0.0.0") || !strcmp(p.host, "::"))
                fprintf(stderr, "shoal: warning: --host %s: give --advertise so the router knows how to reach this node\n", p.host);
            snprintf(self, sizeof self, "http://%s%s%s:%u", strchr(p.host, ':') ? "[" : "", p.host,
                     strchr(p.host, ':') ? "]" : "", server_port(s));
            advertise = self;
        }
        const char *names[MAX_MODELS];
        for (int i = 0; i < n_models; i++) names[i] = models[i].name;
        joiner_params jp = {.router_url = join_url, .token = token, .self_url = advertise, .name = node_name,
                            .api_key = p.api_key, .models = names, .n_models = n_models};
        if (!(jn = joiner_start(&jp, &err))) {
            server_free(s);
            return cli_error("%s", err.msg);
        }
    }

    int sig = 0;
    sigwait(&set, &sig);
    fprintf(stderr, "shoal: %s: draining (up to %lds)\n", sig == SIGTERM ? "SIGTERM" : "SIGINT", drain_s);
    joiner_set_draining(jn);
    int left = server_drain(s, (double)drain_s);
    if (left) fprintf(stderr, "shoal: %d request(s) still running after %lds; stopping them\n", left, drain_s);
    joiner_free(jn);
    server_free(s);
    ccfg_free(cc);
    if (p.log) fclose(p.log);
    free(key_from_file);
    fprintf(stderr, "shoal: stopped\n");
    return 0;
}

int cmd_serve(int argc, char **argv) {
    char *owned_names[MAX_MODELS] = {0}; /* model names made from file names, on every return path */
    int rc = serve_main(argc, argv, owned_names);
    for (int i = 0; i < MAX_MODELS; i++) free(owned_names[i]);
    return rc;
}
