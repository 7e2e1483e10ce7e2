/*
 * sse_load — streaming load for a running `shoal serve` node (or any OpenAI-compatible server),
 * the same measurements as bench/serve_load.py from a C client (a benchmark, not a test).
 *
 *   sse_load [-u http://HOST:PORT] [-m MODEL] [-s 1,4,8] [-n TOKENS] [-r ROUNDS]
 *            [-p TTFT_PROMPT_TOKENS] [-f TTFT_RUNS]
 *
 * 1. Aggregate generation throughput: for each concurrency C, C threads each stream one greedy
 *    completion of TOKENS tokens (POST /v1/completions, stream with include_usage) at the same
 *    time; throughput = all generated tokens (from the usage chunks) / wall time from the first
 *    request sent to the last [DONE]. Median of ROUNDS rounds, the median per-stream rate
 *    (tokens / time from its first token to its end), and the median over rounds of each
 *    concurrency's throughput divided by the first one's (every round runs every concurrency,
 *    one after the other).
 * 2. Time to first token: a prompt of exactly TTFT_PROMPT_TOKENS token ids, max_tokens 1, one
 *    request at a time; median and p90 from sending the request to reading the first event
 *    that carries a choice.
 *
 * Why C: on a 2-core machine an interpreter reading 8 streams of server-sent events competes
 * with the server for the same cores (json.loads per event, one thread per stream), and that
 * competition grows with the number of streams; this client spends a few microseconds per
 * event. Prints a Markdown table; exits 1 when a request fails.
 */
#define _GNU_SOURCE
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_STREAMS 64
#define BUF_CAP (1 << 20)

static char g_host[256], g_port[16], g_model[128];

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static int connect_server(void) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
    if (getaddrinfo(g_host, g_port, &hints, &ai)) return -1;
    int fd = socket(ai->ai_family, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    if (fd >= 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
}

typedef struct stream_job {
    const char *body;  /* JSON request body */
    double t0, t_first, t_end;
    long tokens;       /* completion_tokens of the usage chunk */
    int ok;
} stream_job;

/* Events found in the de-chunked body so far: updates j; 1 at [DONE]. */
static int scan_events(stream_job *j, char *ev, size_t *len) {
    size_t off = 0;
    for (;;) {
        char *nl = memchr(ev + off, '\n', *len - off);
        if (!nl) break;
        *nl = 0;
        const char *line = ev + off;
        off = (size_t)(nl + 1 - ev);
        if (strncmp(line, "data: ", 6)) continue;
        if (!strcmp(line, "data: [DONE]")) return 1;
        if (!j->t_first && strstr(line, "\"choices\":[{")) j->t_first = now_s();
        const char *u = strstr(line, "\"completion_tokens\":");
        if (u) j->tokens = strtol(u + 20, NULL, 10);
    }
    memmove(ev, ev + off, *len - off);
    *len -= off;
    return 0;
}

/* One streamed completion: sends the request, reads the chunked response and its events until
 * [DONE]. */
static void *run_stream(void *arg) {
    stream_job *j = arg;
    char *raw = malloc(BUF_CAP), *ev = malloc(BUF_CAP);
    int fd = connect_server();
    if (!raw || !ev || fd < 0) goto out;
    /* the request in one write, as HTTP clients do */
    char req[8192];
    int rl = snprintf(req, sizeof req,
                      "POST /v1/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\n\r\n%s",
                      g_host, strlen(j->body), j->body);
    if (rl < 0 || rl >= (int)sizeof req) goto out;
    j->t0 = now_s();
    if (send(fd, req, (size_t)rl, 0) != rl) goto out;
    size_t len = 0, pos = 0, evlen = 0, chunk_left = 0;
    int in_body = 0, last = 0;
    for (;;) {
        if (pos > 0) { /* drop what is parsed */
            memmove(raw, raw + pos, len - pos);
            len -= pos;
            pos = 0;
        }
        if (len == BUF_CAP - 1) goto out;
        ssize_t r = recv(fd, raw + len, BUF_CAP - 1 - len, 0);
        if (r <= 0) goto out;
        len += (size_t)r;
        raw[len] = 0;
        if (!in_body) {
            char *e = strstr(raw, "\r\n\r\n");
            if (!e) continue;
            if (strncmp(raw, "HTTP/1.1 200", 12) || !strcasestr(raw, "transfer-encoding: chunked"))
                goto out;
            pos = (size_t)(e + 4 - raw);
            in_body = 1;
        }
        for (;;) { /* chunk payloads into ev */
            if (chunk_left == 0) {
                char *crlf = strstr(raw + pos, "\r\n");
                if (!crlf) break;
                if (crlf == raw + pos) { /* the CRLF after a chunk's data */
                    pos += 2;
                    continue;
                }
                chunk_left = strtoul(raw + pos, NULL, 16);
                pos = (size_t)(crlf + 2 - raw);
                if (chunk_left == 0) { /* the last chunk: what came before it is all there is */
                    last = 1;
                    break;
                }
            }
            size_t take = len - pos < chunk_left ? len - pos : chunk_left;
            if (take == 0 || evlen + take >= BUF_CAP) break;
            memcpy(ev + evlen, raw + pos, take);
            evlen += take;
            pos += take;
            chunk_left -= take;
        }
        if (scan_events(j, ev, &evlen)) {
            j->t_end = now_s();
            j->ok = j->tokens > 0;
            goto out;
        }
        if (last) goto out; /* the body ended without [DONE] */
    }
out:
    if (fd >= 0) close(fd);
    free(raw);
    free(ev);
    return NULL;
}

static char *body_for(const char *prompt_json, int max_tokens) {
    char *b = malloc(4096);
    if (!b) return NULL;
    snprintf(b, 4096,
             "{%s%s%s\"prompt\":%s,\"max_tokens\":%d,\"temperature\":0,\"stream\":true,"
             "\"stream_options\":{\"include_usage\":true}}",
             g_model[0] ? "\"model\":\"" : "", g_model, g_model[0] ? "\"," : "", prompt_json,
             max_tokens);
    return b;
}

/* One round of c concurrent streams; aggregate tokens/s and the median per-stream rate. */
static int round_of(int c, int tokens, int seed, double *agg, double *per) {
    stream_job jobs[MAX_STREAMS];
    pthread_t th[MAX_STREAMS];
    char *bodies[MAX_STREAMS];
    for (int i = 0; i < c; i++) {
        char prompt[128];
        snprintf(prompt, sizeof prompt, "\"Stream %d: once upon a time in a land far away\"", seed + i);
        bodies[i] = body_for(prompt, tokens);
        jobs[i] = (stream_job){.body = bodies[i]};
    }
    const double t0 = now_s();
    for (int i = 0; i < c; i++) pthread_create(&th[i], NULL, run_stream, &jobs[i]);
    for (int i = 0; i < c; i++) pthread_join(th[i], NULL);
    double t_end = t0, rates[MAX_STREAMS];
    long total = 0;
    int nr = 0, ok = 1;
    for (int i = 0; i < c; i++) {
        free(bodies[i]);
        if (!jobs[i].ok) ok = 0;
        if (jobs[i].t_end > t_end) t_end = jobs[i].t_end;
        total += jobs[i].tokens;
        if (jobs[i].t_first && jobs[i].t_end > jobs[i].t_first && jobs[i].tokens > 1)
            rates[nr++] = (double)jobs[i].tokens / (jobs[i].t_end - jobs[i].t_first);
    }
    *agg = (double)total / (t_end - t0);
    *per = nr ? median(rates, nr) : 0;
    return ok;
}

int main(int argc, char **argv) {
    const char *url = "http://127.0.0.1:8080", *streams = "1,4,8";
    int tokens = 128, rounds = 3, ttft_prompt = 32, ttft_runs = 20, opt;
    while ((opt = getopt(argc, argv, "u:m:s:n:r:p:f:")) != -1) {
        switch (opt) {
        case 'u': url = optarg; break;
        case 'm': snprintf(g_model, sizeof g_model, "%s", optarg); break;
        case 's': streams = optarg; break;
        case 'n': tokens = atoi(optarg); break;
        case 'r': rounds = atoi(optarg); break;
        case 'p': ttft_prompt = atoi(optarg); break;
        case 'f': ttft_runs = atoi(optarg); break;
        default:
            fprintf(stderr, "usage: sse_load [-u URL] [-m MODEL] [-s 1,4,8] [-n TOKENS] [-r ROUNDS] "
                            "[-p TTFT_PROMPT] [-f TTFT_RUNS]\n");
            return 2;
        }
    }
    if (sscanf(url, "http://%255[^:/]:%15[0-9]", g_host, g_port) != 2 || tokens < 2 || rounds < 1 ||
        rounds > 99 || ttft_prompt < 1 || ttft_prompt > 500 || ttft_runs < 1 || ttft_runs > 1000) {
        fprintf(stderr, "sse_load: bad arguments (URL must be http://HOST:PORT)\n");
        return 2;
    }
    double a, p;
    if (!round_of(1, 8, 999, &a, &p)) { /* warm-up, and a check that the server answers */
        fprintf(stderr, "sse_load: the warm-up request to %s failed\n", url);
        return 1;
    }
    printf("| concurrent streams | aggregate tok/s (median of %d) | per-stream tok/s | vs the first, "
           "median of per-round ratios |\n",
           rounds);
    printf("| --- | --- | --- | --- |\n");
    int cs[16], nc = 0;
    for (const char *s = streams; *s && nc < 16;) {
        cs[nc] = atoi(s);
        if (cs[nc] < 1 || cs[nc] > MAX_STREAMS) {
            fprintf(stderr, "sse_load: %d streams (1 to %d)\n", cs[nc], MAX_STREAMS);
            return 2;
        }
        nc++;
        s = strchr(s, ',');
        if (!s) break;
        s++;
    }
    /* Every round measures every concurrency in turn, so the per-round ratio to the first one
     * compares figures taken a few seconds apart (the machine's speed drifts by more than the
     * effect over minutes); the ratio column is the median of those per-round ratios. */
    static double aggs[16][99], pers[16][99], ratios[16][99];
    for (int r = 0; r < rounds; r++)
        for (int k = 0; k < nc; k++) {
            if (!round_of(cs[k], tokens, 100 * r, &aggs[k][r], &pers[k][r])) {
                fprintf(stderr, "sse_load: a request failed (%d streams)\n", cs[k]);
                return 1;
            }
            ratios[k][r] = aggs[k][r] / aggs[0][r];
        }
    for (int k = 0; k < nc; k++)
        printf("| %d | %.1f | %.1f | %.2fx |\n", cs[k], median(aggs[k], rounds),
               median(pers[k], rounds), median(ratios[k], rounds));
    double ms[1000];
    /* token ids, distinct per request and per invocation: no prefix is reused from the previous
     * request or from an earlier run against the same server */
    const int id0 = (int)(((unsigned)getpid() * 7919u + (unsigned)time(NULL)) % 20000u);
    for (int i = 0; i < ttft_runs; i++) {
        char prompt[4096];
        size_t k = (size_t)snprintf(prompt, sizeof prompt, "[1,%d", (id0 + 101 * i) % 30000 + 100);
        for (int t = 2; t < ttft_prompt && k + 16 < sizeof prompt; t++)
            k += (size_t)snprintf(prompt + k, sizeof prompt - k, ",%d",
                                  (id0 + 37 * i + 11 * t) % 30000 + 100);
        snprintf(prompt + k, sizeof prompt - k, "]");
        char *body = body_for(prompt, 1);
        stream_job j = {.body = body};
        run_stream(&j);
        free(body);
        if (!j.ok || !j.t_first) {
            fprintf(stderr, "sse_load: a time-to-first-token request failed\n");
            return 1;
        }
        ms[i] = (j.t_first - j.t0) * 1e3;
    }
    const double med = median(ms, ttft_runs); /* sorts ms */
    printf("\ntime to first token, %d-token prompt, one request at a time: median %.2f ms, p90 %.2f "
           "ms (%d runs)\n",
           ttft_prompt, med, ms[(int)(0.9 * (ttft_runs - 1))], ttft_runs);
    return 0;
}
