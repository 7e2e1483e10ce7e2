/* http/chan — see chan.h. A growable ring of bytes under a mutex and a condition variable. */
#include "http/chan.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/mono.h"

struct chan {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *buf;          /* pending bytes: buf[head .. head+len) modulo cap */
    size_t head, len, cap, max;
    bool closed, aborted;
    int refs;
    double keepalive_ms;
    char keepalive[64];
};

chan *chan_init(size_t max_bytes, double keepalive_ms, const char *keepalive_text) {
    chan *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    pthread_mutex_init(&c->mu, NULL);
    mono_cond_init(&c->cv);
    c->max = max_bytes ? max_bytes : (1u << 20);
    c->refs = 2;
    c->keepalive_ms = keepalive_ms;
    strncpy(c->keepalive, keepalive_text ? keepalive_text : ": keep-alive\n\n", sizeof c->keepalive - 1);
    return c;
}

static int grow(chan *c, size_t need) {
    size_t cap = c->cap ? c->cap : 4096;
    while (cap < need) cap *= 2;
    char *nb = malloc(cap);
    if (!nb) return -1;
    for (size_t i = 0; i < c->len; i++) nb[i] = c->buf[(c->head + i) % c->cap];
    free(c->buf);
    c->buf = nb;
    c->head = 0;
    c->cap = cap;
    return 0;
}

int chan_write(chan *c, const char *data, size_t len) {
    int rc = 0;
    pthread_mutex_lock(&c->mu);
    if (c->aborted || c->closed) {
        rc = -1;
    } else if (c->len + len > c->max || (c->len + len > c->cap && grow(c, c->len + len))) {
        c->aborted = true; /* the consumer fell too far behind, or memory ran out */
        rc = -1;
    } else {
        for (size_t i = 0; i < len; i++) c->buf[(c->head + c->len + i) % c->cap] = data[i];
        c->len += len;
    }
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

void chan_close(chan *c) {
    pthread_mutex_lock(&c->mu);
    c->closed = true;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

void chan_abort(chan *c) {
    pthread_mutex_lock(&c->mu);
    c->aborted = true;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

bool chan_aborted(chan *c) {
    pthread_mutex_lock(&c->mu);
    bool a = c->aborted;
    pthread_mutex_unlock(&c->mu);
    return a;
}

ssize_t chan_pull(chan *c, char *buf, size_t max) {
    pthread_mutex_lock(&c->mu);
    if (c->len == 0 && !c->closed && !c->aborted) {
        if (c->keepalive_ms > 0) {
            struct timespec ts = mono_deadline(c->keepalive_ms);
            while (c->len == 0 && !c->closed && !c->aborted)
                if (pthread_cond_timedwait(&c->cv, &c->mu, &ts) == ETIMEDOUT) break;
        } else {
            while (c->len == 0 && !c->closed && !c->aborted) pthread_cond_wait(&c->cv, &c->mu);
        }
    }
    ssize_t n;
    if (c->aborted) {
        n = -1;
    } else if (c->len) {
        size_t k = c->len < max ? c->len : max;
        for (size_t i = 0; i < k; i++) buf[i] = c->buf[(c->head + i) % c->cap];
        c->head = (c->head + k) % c->cap;
        c->len -= k;
        n = (ssize_t)k;
    } else if (c->closed) {
        n = -1;
    } else { /* timed out with nothing to send */
        size_t k = strlen(c->keepalive);
        if (k > max) k = max;
        memcpy(buf, c->keepalive, k);
        n = (ssize_t)k;
    }
    pthread_mutex_unlock(&c->mu);
    return n;
}

void chan_release(chan *c) {
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    int left = --c->refs;
    pthread_mutex_unlock(&c->mu);
    if (left > 0) return;
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c->buf);
    free(c);
}
