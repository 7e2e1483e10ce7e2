/*
 * shoal calibrate — a cascade's threshold from sample prompts for a target escalation rate,
 * by the quantile method of RouteLLM: the threshold at which the wanted fraction of the sample
 * falls below (and is escalated).
 *
 *   shoal calibrate --url http://127.0.0.1:8080 --model CASCADE --prompts FILE [--rate 0.3]
 *                   [--endpoint classify|chat|completions] [--stage N] [--key KEY]
 *
 * Each prompt (a line of text, or a JSONL object with "text") is sent to the running cascade;
 * the confidence of stage N (shoal.cascade.tried[N-1], default the first) is collected, and the
 * rate-quantile of those values is printed with a table of other rates, ready for
 * `threshold:` in the config. Calibrate on a dev split, never on the split you report.
 */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

typedef struct buf {
    char *p;
    size_t n;
} buf;

static size_t on_data(char *d, size_t sz, size_t nm, void *ud) {
    buf *b = ud;
    size_t k = sz * nm;
    if (b->n + k > (64u << 20)) return 0; /* a sane bound on one answer */
    char *p = realloc(b->p, b->n + k + 1);
    if (!p) return 0;
    memcpy(p + b->n, d, k);
    b->p = p;
    b->n += k;
    b->p[b->n] = 0;
    return k;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The q-quantile of sorted v[0..n) (linear interpolation). */
static double quantile(const double *v, int n, double q) {
    if (n == 1) return v[0];
    double pos = q * (n - 1);
    int i = (int)pos;
    if (i >= n - 1) return v[n - 1];
    return v[i] + (pos - i) * (v[i + 1] - v[i]);
}

static void usage(void) {
    fprintf(stderr, "usage: shoal calibrate --url URL --model CASCADE --prompts FILE [--rate R (0..1, default 0.3)]\n"
                    "                       [--endpoint classify|chat|completions (default chat)] [--stage N] [--key KEY]\n");
}

int cmd_calibrate(int argc, char **argv) {
    const char *url = NULL, *model = NULL, *prompts = NULL, *endpoint = "chat", *key = NULL;
    float rate = 0.3f;
    int stage = 1;
    for (int i = 1; i < argc; i += 2) { /* every option takes a value */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(), 0;
        if (!v) return usage(), cli_error("%s needs a value", a);
        if (!strcmp(a, "--url")) url = v;
        else if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--prompts")) prompts = v;
        else if (!strcmp(a, "--endpoint")) endpoint = v;
        else if (!strcmp(a, "--key")) key = v;
        else if (!strcmp(a, "--rate")) {
            if (cli_float("--rate", v, &rate)) return 1;
        } else if (!strcmp(a, "--stage")) {
            if (cli_int("--stage", v, 1, 15, &stage)) return 1;
        } else {
            return usage(), cli_error("unknown option %s", a);
        }
    }
    if (!url || !model || !prompts) return usage(), cli_error("--url, --model and --prompts are needed");
    if (!(rate > 0 && rate < 1)) return cli_error("--rate must be between 0 and 1 (the fraction escalated)");
    const char *path = !strcmp(endpoint, "classify") ? "/v1/classify"
                       : !strcmp(endpoint, "chat")   ? "/v1/chat/completions"
                       : !strcmp(endpoint, "completions") ? "/v1/completions"
                                                      : NULL;
    if (!path) return cli_error("--endpoint must be classify, chat or completions");
    FILE *in = fopen(prompts, "r");
    if (!in) return cli_error("%s: cannot read: %s", prompts, strerror(errno));
    CURL *c = curl_easy_init();
    if (!c) return fclose(in), cli_error("cannot start the HTTP client");
    char full[2048], auth[4200];
    snprintf(full, sizeof full, "%s%s", url, path);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    if (key) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
        h = curl_slist_append(h, auth);
    }
    double *vals = NULL;
    int n = 0, cap = 0, lines = 0, skipped = 0, rc = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    while ((len = getline(&line, &lcap, in)) > 0) {
        lines++;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (!len) continue;
        json_t *row = line[0] == '{' ? json_loads(line, 0, NULL) : NULL;
        const char *text = row ? json_string_value(json_object_get(row, "text")) : line;
        if (!text) {
            json_decref(row);
            rc = cli_error("%s:%d: a JSON line without \"text\"", prompts, lines);
            break;
        }
        json_t *body = !strcmp(endpoint, "classify") ? json_pack("{s:s, s:s}", "model", model, "input", text)
                       : !strcmp(endpoint, "chat")
                           ? json_pack("{s:s, s:[{s:s, s:s}], s:i}", "model", model, "messages", "role", "user",
                                       "content", text, "temperature", 0)
                           : json_pack("{s:s, s:s, s:i}", "model", model, "prompt", text, "temperature", 0);
        json_decref(row);
        char *s = body ? json_dumps(body, JSON_COMPACT) : NULL;
        json_decref(body);
        buf b = {0};
        curl_easy_setopt(c, CURLOPT_URL, full);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, s ? s : "");
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
        CURLcode cc = curl_easy_perform(c);
        free(s);
        long status = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        if (cc != CURLE_OK || status != 200) {
            rc = cli_error("%s:%d: %s answered %s%ld: %.300s", prompts, lines, full, cc != CURLE_OK ? curl_easy_strerror(cc) : "",
                           status, b.p ? b.p : "");
            free(b.p);
            break;
        }
        json_t *ans = json_loads(b.p, 0, NULL);
        free(b.p);
        json_t *tried = json_object_get(json_object_get(json_object_get(ans, "shoal"), "cascade"), "tried");
        if (!tried) {
            json_decref(ans);
            rc = cli_error("model '%s' is not a cascade (its answers carry no shoal.cascade)", model);
            break;
        }
        json_t *t = json_array_get(tried, (size_t)stage - 1);
        json_t *conf = json_object_get(t, "confidence");
        if (json_is_number(conf)) {
            if (n == cap) {
                cap = cap ? cap * 2 : 256;
                double *nv = realloc(vals, (size_t)cap * sizeof *vals);
                if (!nv) {
                    json_decref(ans);
                    rc = cli_error("out of memory");
                    break;
                }
                vals = nv;
            }
            vals[n++] = json_number_value(conf);
        } else {
            skipped++; /* the stage failed or was not reached */
        }
        json_decref(ans);
        if (isatty(fileno(stderr)) && n % 50 == 0) fprintf(stderr, "\r%d prompts", n);
    }
    free(line);
    fclose(in);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (!rc && n < 2) rc = cli_error("%d usable answers: at least 2 are needed (%d without a stage-%d confidence)", n,
                                     skipped, stage);
    if (!rc) {
        qsort(vals, (size_t)n, sizeof *vals, cmp_double);
        double th = quantile(vals, n, rate);
        printf("calibrated on %d prompts (%d without a stage-%d confidence)\n", n, skipped, stage);
        printf("%-10s %s\n", "escalate", "threshold");
        static const double rates[] = {0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9};
        for (int i = 0; i < 10; i++) printf("%-10.2f %.6g\n", rates[i], quantile(vals, n, rates[i]));
        printf("\nthreshold: %.6g   # escalates %.0f%% of these prompts\n", th, rate * 100);
    }
    free(vals);
    return rc;
}
