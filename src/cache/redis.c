/*
 * cache/redis — the Redis tier (cache_int.h), over hiredis' blocking API with timeouts.
 *
 * Lookups use a small pool of connections, each behind a mutex taken with trylock: a request
 * thread that finds every connection busy counts a miss instead of queueing, and each command
 * has the tier's timeout (a few ms), so a slow or dead Redis costs at most that. Writes have a
 * connection of their own (the writer thread's). A connection that fails is dropped and
 * reconnected after a back-off (50 ms doubling to 2 s); while it is down lookups miss at once.
 * Keys are PREFIX + the digest in hex; values expire with PX.
 */
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/cache_int.h"

#define N_GET 4

typedef struct rconn {
    pthread_mutex_t mu;
    redisContext *c;
    double retry_at;            /* monotonic ms: no connect attempt before */
    double backoff;
} rconn;

struct credis {
    char host[256];
    int port;                   /* 0: unix socket at host */
    int db;
    struct timeval tv;
    char prefix[64];
    rconn get[N_GET], put;
    _Atomic int up;             /* the last command on any connection succeeded */
};

static double mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

credis *credis_init(const char *url, double timeout_ms, const char *prefix, sh_err *err) {
    credis *r = calloc(1, sizeof *r);
    if (!r) return sh_errf(err, "out of memory"), NULL;
    if (!strncmp(url, "unix:", 5)) {
        if (snprintf(r->host, sizeof r->host, "%s", url + 5) >= (int)sizeof r->host || !r->host[0]) goto bad;
    } else if (!strncmp(url, "redis://", 8)) {
        const char *h = url + 8, *colon = strrchr(h, ':'), *slash = strchr(h, '/');
        r->port = 6379;
        size_t hl = colon && (!slash || colon < slash) ? (size_t)(colon - h) : slash ? (size_t)(slash - h) : strlen(h);
        if (hl == 0 || hl >= sizeof r->host) goto bad;
        memcpy(r->host, h, hl);
        if (colon && (!slash || colon < slash)) {
            char *end;
            long p = strtol(colon + 1, &end, 10);
            if (end == colon + 1 || p < 1 || p > 65535 || (*end && *end != '/')) goto bad;
            r->port = (int)p;
        }
        if (slash) {
            char *end;
            long d = strtol(slash + 1, &end, 10);
            if (end == slash + 1 || *end || d < 0 || d > 1000) goto bad;
            r->db = (int)d;
        }
    } else {
        goto bad;
    }
    double t = timeout_ms > 0 ? timeout_ms : 3;
    r->tv.tv_sec = (time_t)(t / 1e3);
    r->tv.tv_usec = (suseconds_t)((t - (double)r->tv.tv_sec * 1e3) * 1e3);
    snprintf(r->prefix, sizeof r->prefix, "%s", prefix ? prefix : "shoal:c:");
    for (int i = 0; i < N_GET; i++) pthread_mutex_init(&r->get[i].mu, NULL);
    pthread_mutex_init(&r->put.mu, NULL);
    return r;
bad:
    free(r);
    sh_errf(err, "cache redis url '%.200s': expected redis://HOST[:PORT][/DB] or unix:/PATH", url);
    return NULL;
}

void credis_free(credis *r) {
    if (!r) return;
    for (int i = 0; i < N_GET; i++) {
        if (r->get[i].c) redisFree(r->get[i].c);
        pthread_mutex_destroy(&r->get[i].mu);
    }
    if (r->put.c) redisFree(r->put.c);
    pthread_mutex_destroy(&r->put.mu);
    free(r);
}

static void drop_conn(credis *r, rconn *k) {
    if (k->c) redisFree(k->c);
    k->c = NULL;
    k->backoff = k->backoff ? (k->backoff * 2 > 2000 ? 2000 : k->backoff * 2) : 50;
    k->retry_at = mono_ms() + k->backoff;
    atomic_store(&r->up, 0);
}

/* The connection, connected; NULL while down. Under k->mu. */
static redisContext *conn(credis *r, rconn *k) {
    if (k->c) return k->c;
    if (mono_ms() < k->retry_at) return NULL;
    redisContext *c = r->port ? redisConnectWithTimeout(r->host, r->port, r->tv)
                              : redisConnectUnixWithTimeout(r->host, r->tv);
    if (!c || c->err || redisSetTimeout(c, r->tv) != REDIS_OK) {
        if (c) redisFree(c);
        drop_conn(r, k);
        return NULL;
    }
    k->c = c;
    if (r->db) {
        redisReply *rep = redisCommand(c, "SELECT %d", r->db);
        bool ok = rep && rep->type == REDIS_REPLY_STATUS;
        if (rep) freeReplyObject(rep);
        if (!ok) {
            drop_conn(r, k);
            return NULL;
        }
    }
    k->backoff = 0;
    return c;
}

static void key_of(const credis *r, const uint8_t *key, char *out, size_t *n) {
    static const char hex[] = "0123456789abcdef";
    size_t p = strlen(r->prefix);
    memcpy(out, r->prefix, p);
    for (int i = 0; i < CACHE_KEY_BYTES; i++) out[p++] = hex[key[i] >> 4], out[p++] = hex[key[i] & 15];
    out[p] = 0;
    *n = p;
}

int credis_get(credis *r, const uint8_t *key, char **val, size_t *n) {
    rconn *k = NULL;
    for (int i = 0; i < N_GET && !k; i++)
        if (pthread_mutex_trylock(&r->get[i].mu) == 0) k = &r->get[i];
    if (!k) return -1; /* every connection busy: a miss, not a queue */
    int rc = -1;
    redisContext *c = conn(r, k);
    if (c) {
        char kb[64 + 2 * CACHE_KEY_BYTES + 1];
        size_t kn;
        key_of(r, key, kb, &kn);
        const char *argv[2] = {"GET", kb};
        size_t lens[2] = {3, kn};
        redisReply *rep = redisCommandArgv(c, 2, argv, lens);
        if (!rep) {
            drop_conn(r, k);
        } else {
            atomic_store(&r->up, 1);
            if (rep->type == REDIS_REPLY_NIL) rc = 0;
            else if (rep->type == REDIS_REPLY_STRING && (*val = malloc(rep->len ? rep->len : 1))) {
                memcpy(*val, rep->str, rep->len);
                *n = rep->len;
                rc = 1;
            }
            freeReplyObject(rep);
        }
    }
    pthread_mutex_unlock(&k->mu);
    return rc;
}

int credis_put(credis *r, const uint8_t *key, const char *val, size_t n, double ttl_s) {
    pthread_mutex_lock(&r->put.mu);
    int rc = -1;
    redisContext *c = conn(r, &r->put);
    if (c) {
        char kb[64 + 2 * CACHE_KEY_BYTES + 1], px[32];
        size_t kn;
        key_of(r, key, kb, &kn);
        snprintf(px, sizeof px, "%lld", (long long)(ttl_s * 1e3));
        const char *argv[5] = {"SET", kb, val, "PX", px};
        size_t lens[5] = {3, kn, n, 2, strlen(px)};
        redisReply *rep = redisCommandArgv(c, 5, argv, lens);
        if (!rep) {
            drop_conn(r, &r->put);
        } else {
            atomic_store(&r->up, 1);
            rc = rep->type == REDIS_REPLY_STATUS ? 0 : -1;
            freeReplyObject(rep);
        }
    }
    pthread_mutex_unlock(&r->put.mu);
    return rc;
}

int credis_clear(credis *r) {
    pthread_mutex_lock(&r->put.mu);
    int rc = -1;
    redisContext *c = conn(r, &r->put);
    struct timeval slow = {1, 0}; /* a clear is rare and may scan many keys */
    if (c) redisSetTimeout(c, slow);
    char cursor[32] = "0", match[80];
    snprintf(match, sizeof match, "%s*", r->prefix);
    for (int round = 0; c && round < 100000; round++) {
        redisReply *rep = redisCommand(c, "SCAN %s MATCH %s COUNT 1000", cursor, match);
        if (!rep) {
            drop_conn(r, &r->put);
            break;
        }
        bool ok = rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 && rep->element[0]->type == REDIS_REPLY_STRING;
        if (ok) {
            snprintf(cursor, sizeof cursor, "%s", rep->element[0]->str);
            redisReply *keys = rep->element[1];
            for (size_t i = 0; i < keys->elements; i++) {
                redisReply *d = redisCommand(c, "UNLINK %b", keys->element[i]->str, keys->element[i]->len);
                if (d) freeReplyObject(d);
            }
        }
        freeReplyObject(rep);
        if (!ok) break;
        if (!strcmp(cursor, "0")) {
            rc = 0;
            atomic_store(&r->up, 1);
            break;
        }
    }
    if (r->put.c) redisSetTimeout(r->put.c, r->tv);
    pthread_mutex_unlock(&r->put.mu);
    return rc;
}

bool credis_up(credis *r) { return atomic_load(&r->up) != 0; }
