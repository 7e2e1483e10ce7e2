/*
 * shoal cache stats|clear — look at or empty a response cache (docs/cache.md): an SQLite file
 * or a Redis server directly, or a running node's caches through its API.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache.h"
#include "cli/cli.h"

static void usage(FILE *f) {
    fputs("usage: shoal cache stats|clear (--db FILE | --redis URL | --url http://HOST:PORT [--api-key K])\n"
          "  --db FILE      an SQLite cache file (serve --cache-db)\n"
          "  --redis URL    a Redis cache (serve --cache-redis): clear drops the keys under shoal:c:\n"
          "  --url URL      a running node: GET / DELETE /v1/cache (every tier it has)\n"
          "  --api-key K    the node's API key (or SHOAL_API_KEY)\n",
          f);
}

static size_t sink(char *p, size_t sz, size_t n, void *ud) {
    fwrite(p, sz, n, (FILE *)ud);
    return sz * n;
}

static int over_http(const char *url, bool clear, const char *key) {
    CURL *c = curl_easy_init();
    if (!c) return cli_error("cannot start libcurl");
    char full[2048], auth[1100];
    size_t ul = strlen(url);
    while (ul && url[ul - 1] == '/') ul--;
    snprintf(full, sizeof full, "%.*s/v1/cache", (int)(ul < 1500 ? ul : 1500), url);
    struct curl_slist *h = NULL;
    if (key) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
        h = curl_slist_append(h, auth);
    }
    curl_easy_setopt(c, CURLOPT_URL, full);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, stdout);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    if (clear) curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "DELETE");
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    fputc('\n', stdout);
    if (rc != CURLE_OK) return cli_error("%s: %s", full, curl_easy_strerror(rc));
    if (status != 200) return cli_error("%s answered %ld", full, status);
    return 0;
}

static void print_tier(const char *name, const cache_tier_stats *t, bool redis) {
    if (!t->on) return;
    printf("%-7s", name);
    if (redis) printf(" up %s", t->up ? "yes" : "no (not reached)");
    else printf(" entries %llu  bytes %llu", (unsigned long long)t->entries, (unsigned long long)t->bytes);
    printf("\n");
}

int cmd_cache(int argc, char **argv) {
    if (argc < 2 || (strcmp(argv[1], "stats") && strcmp(argv[1], "clear"))) {
        usage(argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) ? stdout : stderr);
        return argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) ? 0 : 1;
    }
    bool clear = !strcmp(argv[1], "clear");
    const char *db = NULL, *redis = NULL, *url = NULL, *key = getenv("SHOAL_API_KEY");
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            usage(stderr);
            return cli_error("option '%s' is unknown or needs a value", a);
        }
        i++;
        if (!strcmp(a, "--db")) db = v;
        else if (!strcmp(a, "--redis")) redis = v;
        else if (!strcmp(a, "--url")) url = v;
        else if (!strcmp(a, "--api-key")) key = v;
        else {
            usage(stderr);
            return cli_error("unknown option '%s'", a);
        }
    }
    if (!!db + !!redis + !!url != 1) {
        usage(stderr);
        return cli_error("give one of --db, --redis, --url");
    }
    if (url) return over_http(url, clear, key);
    cache_params p = {.db_path = db, .redis_url = redis, .redis_timeout_ms = 1000};
    sh_err err = {{0}};
    cache *c = cache_init(&p, &err);
    if (!c) return cli_error("%s", err.msg);
    if (clear) cache_clear(c);
    cache_stats st;
    cache_get_stats(c, &st);
    if (redis && !clear) { /* up is only known after a command */
        uint8_t probe[CACHE_KEY_BYTES] = {0};
        char *v;
        size_t n;
        const char *tier;
        if (cache_get(c, probe, &v, &n, &tier) == 1) free(v);
        cache_get_stats(c, &st);
    }
    if (clear) printf("cleared\n");
    print_tier("sqlite", &st.sqlite, false);
    print_tier("redis", &st.redis, true);
    bool redis_down = redis && !st.redis.up;
    cache_free(c);
    return redis_down ? cli_error("redis %s: not reachable", redis) : 0;
}
