/*
 * http_latency — paired latency of small POST requests to two or more HTTP servers (a benchmark
 * client, not a test).
 *
 *   http_latency [-n ROUNDS] [-d JSON] [-p PATH] http://HOST:PORT http://HOST:PORT ...
 *
 * One keep-alive connection per server. Each round sends the same request to every server, one
 * after the other, and waits for each whole answer (Content-Length) before the next; the order
 * rotates every round so no server is always first. Interleaving means every server is measured
 * under the same machine state, so the difference between two servers is the cost of what lies
 * between them (e.g. a router in front of a node) and not of whatever else ran in between.
 * Written in C so that the client itself adds a few microseconds, not the tens an interpreter
 * adds on a 2-core machine.
 *
 * Prints, per server: p50, p90, p99 in microseconds, and for the second and later servers the
 * difference from the first one at p50 and p99, and the median of the per-round differences.
 * Exits 1 when a server answers anything but 200 or closes the connection.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SERVERS 8
#define RESP_MAX (256 * 1024)

typedef struct server {
    const char *url;
    int fd;
    double *us; /* [rounds] */
} server;

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *sorted, int n, int p) { return sorted[(n - 1) * p / 100]; }

/* Connects to http://HOST:PORT (no path); -1 with a message on failure. */
static int connect_url(const char *url) {
    char host[256], port[16];
    if (sscanf(url, "http://%255[^:/]:%15[0-9]", host, port) != 2) {
        fprintf(stderr, "http_latency: '%s' is not http://HOST:PORT\n", url);
        return -1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc) {
        fprintf(stderr, "http_latency: %s: %s\n", url, gai_strerror(rc));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        fprintf(stderr, "http_latency: cannot connect to %s\n", url);
        freeaddrinfo(ai);
        if (fd >= 0) close(fd);
        return -1;
    }
    freeaddrinfo(ai);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* One request on fd, the whole answer read; its time in microseconds, or -1. */
static double one_request(int fd, const char *req, size_t len, char *buf) {
    const double t0 = now_us();
    if (send(fd, req, len, 0) != (ssize_t)len) return -1;
    size_t got = 0, need = 0;
    for (;;) {
        ssize_t r = recv(fd, buf + got, RESP_MAX - 1 - got, 0);
        if (r <= 0) return -1;
        got += (size_t)r;
        buf[got] = 0;
        if (!need) {
            const char *end = strstr(buf, "\r\n\r\n");
            if (!end) {
                if (got == RESP_MAX - 1) return -1;
                continue;
            }
            const char *cl = strcasestr(buf, "\r\ncontent-length:");
            if (!cl || cl > end) return -1; /* chunked answers are not what this measures */
            need = (size_t)(end + 4 - buf) + strtoul(cl + 17, NULL, 10);
            if (need >= RESP_MAX) return -1;
        }
        if (got >= need) break;
    }
    const double t = now_us() - t0;
    return strncmp(buf, "HTTP/1.1 200", 12) == 0 ? t : -1;
}

int main(int argc, char **argv) {
    int rounds = 2000;
    const char *body = "{\"model\":\"tiny\",\"prompt\":\"hi 3\",\"max_tokens\":1,\"temperature\":0}";
    const char *path = "/v1/completions";
    int opt;
    while ((opt = getopt(argc, argv, "n:d:p:")) != -1) {
        if (opt == 'n') rounds = atoi(optarg);
        else if (opt == 'd') body = optarg;
        else if (opt == 'p') path = optarg;
        else {
            fprintf(stderr, "usage: http_latency [-n ROUNDS] [-d JSON] [-p PATH] URL URL...\n");
            return 2;
        }
    }
    const int ns = argc - optind;
    if (ns < 1 || ns > MAX_SERVERS || rounds < 10) {
        fprintf(stderr, "http_latency: 1 to %d URLs and at least 10 rounds\n", MAX_SERVERS);
        return 2;
    }
    char req[4096];
    int rl = snprintf(req, sizeof req,
                      "POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\n\r\n%s",
                      path, strlen(body), body);
    if (rl < 0 || rl >= (int)sizeof req) {
        fprintf(stderr, "http_latency: request too long\n");
        return 2;
    }
    server sv[MAX_SERVERS];
    char *buf = malloc(RESP_MAX);
    double *diff = malloc(sizeof(double) * (size_t)rounds);
    if (!buf || !diff) return 1;
    for (int s = 0; s < ns; s++) {
        sv[s].url = argv[optind + s];
        sv[s].fd = connect_url(sv[s].url);
        sv[s].us = malloc(sizeof(double) * (size_t)rounds);
        if (sv[s].fd < 0 || !sv[s].us) return 1;
        /* warm-up: connections, caches, the servers' own first-request work */
        for (int w = 0; w < 50; w++)
            if (one_request(sv[s].fd, req, (size_t)rl, buf) < 0) {
                fprintf(stderr, "http_latency: %s failed: %.80s\n", sv[s].url, buf);
                return 1;
            }
    }
    for (int r = 0; r < rounds; r++)
        for (int k = 0; k < ns; k++) {
            const int s = (r + k) % ns;
            sv[s].us[r] = one_request(sv[s].fd, req, (size_t)rl, buf);
            if (sv[s].us[r] < 0) {
                fprintf(stderr, "http_latency: %s failed in round %d: %.80s\n", sv[s].url, r, buf);
                return 1;
            }
        }
    printf("%d rounds, requests interleaved\n", rounds);
    double med_diff[MAX_SERVERS] = {0};
    for (int s = 1; s < ns; s++) { /* before sorting: round r of each server goes together */
        for (int r = 0; r < rounds; r++) diff[r] = sv[s].us[r] - sv[0].us[r];
        qsort(diff, (size_t)rounds, sizeof *diff, cmp_double);
        med_diff[s] = pct(diff, rounds, 50);
    }
    for (int s = 0; s < ns; s++) qsort(sv[s].us, (size_t)rounds, sizeof(double), cmp_double);
    for (int s = 0; s < ns; s++) {
        const double *u = sv[s].us, *b = sv[0].us;
        printf("%-28s p50 %7.1f  p90 %7.1f  p99 %7.1f us", sv[s].url, pct(u, rounds, 50),
               pct(u, rounds, 90), pct(u, rounds, 99));
        if (s > 0)
            printf("  | added p50 %6.1f  p99 %6.1f  median of paired differences %6.1f us",
                   pct(u, rounds, 50) - pct(b, rounds, 50), pct(u, rounds, 99) - pct(b, rounds, 99),
                   med_diff[s]);
        printf("\n");
        close(sv[s].fd);
        free(sv[s].us);
    }
    free(buf);
    free(diff);
    return 0;
}
