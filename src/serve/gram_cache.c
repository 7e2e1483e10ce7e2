/*
 * serve/gram_cache — the compiled grammars of recent requests, shared (server_int.h).
 *
 * The same schema or tool set arriving again gets the same compiled grammar, and with it the
 * masks that earlier requests computed (the grammar's mask cache): only the first request of a
 * schema pays for its masks. Up to SRV_GRAMS grammars, keyed by the SHA-256 of their kind and
 * text; the least recently used one that no request holds is replaced. When all are held, a
 * grammar is compiled for the request alone and freed with it.
 */
#include <string.h>

#include "cache/cache.h"
#include "serve/server_int.h"

static void key_of(int kind, const char *text, uint8_t key[CACHE_KEY_BYTES]) {
    ckey k;
    ckey_init(&k);
    ckey_int(&k, "kind", kind);
    ckey_bytes(&k, "text", text ? text : "", text ? strlen(text) : 0);
    if (ckey_digest(&k, key)) memset(key, 0xff, CACHE_KEY_BYTES);
    ckey_free(&k);
}

static gram *compile(int kind, const char *text, sh_err *err) {
    switch (kind) {
    case SRV_GRAM_GBNF: return gram_from_gbnf(text, strlen(text), err);
    case SRV_GRAM_SCHEMA: return gram_from_json_schema(text, strlen(text), err);
    default: return gram_json_object(err);
    }
}

gram *srv_gram_acquire(server *s, int kind, const char *text, sh_err *err) {
    uint8_t key[CACHE_KEY_BYTES];
    key_of(kind, text, key);
    pthread_mutex_lock(&s->gram_mu);
    for (int i = 0; i < SRV_GRAMS; i++) {
        srv_gram *e = &s->grams[i];
        if (e->g && !memcmp(e->key, key, sizeof key)) {
            e->refs++;
            e->used = ++s->gram_clock;
            gram *g = e->g;
            pthread_mutex_unlock(&s->gram_mu);
            return g;
        }
    }
    pthread_mutex_unlock(&s->gram_mu);
    gram *g = compile(kind, text, err); /* outside the lock: compiling takes 0.1-1 ms */
    if (!g) return NULL;
    pthread_mutex_lock(&s->gram_mu);
    srv_gram *slot = NULL;
    for (int i = 0; i < SRV_GRAMS; i++) {
        srv_gram *e = &s->grams[i];
        if (e->g && !memcmp(e->key, key, sizeof key)) { /* compiled meanwhile by another request */
            e->refs++;
            e->used = ++s->gram_clock;
            gram *shared = e->g;
            pthread_mutex_unlock(&s->gram_mu);
            gram_free(g);
            return shared;
        }
        if (!e->refs && (!slot || !e->g || (slot->g && e->used < slot->used))) slot = e;
    }
    if (slot) {
        gram_free(slot->g); /* no request holds it */
        memcpy(slot->key, key, sizeof key);
        slot->g = g;
        slot->refs = 1;
        slot->used = ++s->gram_clock;
    }
    pthread_mutex_unlock(&s->gram_mu);
    return g; /* not in the table when every entry was held: srv_gram_release frees it */
}

void srv_gram_release(server *s, gram *g) {
    if (!g) return;
    pthread_mutex_lock(&s->gram_mu);
    for (int i = 0; i < SRV_GRAMS; i++) {
        if (s->grams[i].g == g) {
            SH_ASSERT(s->grams[i].refs > 0);
            s->grams[i].refs--;
            pthread_mutex_unlock(&s->gram_mu);
            return;
        }
    }
    pthread_mutex_unlock(&s->gram_mu);
    gram_free(g);
}

void srv_gram_cache_free(server *s) {
    for (int i = 0; i < SRV_GRAMS; i++) {
        gram_free(s->grams[i].g);
        s->grams[i].g = NULL;
    }
}
