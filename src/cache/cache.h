/*
 * cache — exact response caches in front of generation (docs/cache.md): a memory LRU, an
 * SQLite file and a Redis server, looked up in that order.
 *
 * Keys are SHA-256 digests of a canonical serialization that the caller builds with ckey_*
 * (key.c): the model's name and file hash, the endpoint, the normalized request and every
 * parameter that changes the answer. The cache never sees the prompt: only the digest and the
 * stored answer bytes. Values are opaque bytes (the node stores whole JSON answers).
 *
 * Tiers:
 *   memory  LRU with a byte budget and a TTL, in this process.
 *   sqlite  a file (WAL mode) that survives restarts: a size cap (oldest entries go first),
 *           a versioned schema, and a damaged file is moved aside with a warning and rebuilt.
 *   redis   shared by every process that points at it: lookups bounded by a timeout of a few
 *           ms (a slow or dead Redis is a miss, never a wait), reconnection with back-off.
 * A hit in a lower tier is copied into memory. Writes to sqlite and redis happen on the
 * cache's own writer thread (a bounded queue: when it is full the write is dropped and
 * counted), so storing never delays a request.
 *
 * Threading: every function may be called from any thread. Errors of a tier at run time are
 * misses plus a warning line (rate-limited) and a metric, never a failure of the request.
 */
#ifndef SHOAL_CACHE_CACHE_H
#define SHOAL_CACHE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/err.h"
#include "metrics/metrics.h"

#define CACHE_KEY_BYTES 32

typedef struct cache_params {
    size_t mem_bytes;           /* memory tier budget; 0: no memory tier */
    double ttl_s;               /* entries expire after this (all tiers); 0: 1 hour */
    const char *db_path;        /* SQLite file, or NULL */
    size_t db_bytes;            /* its cap on stored bytes (0: 256 MiB) */
    const char *redis_url;      /* "redis://HOST:PORT[/DB]" or "unix:/PATH", or NULL */
    double redis_timeout_ms;    /* per command (0: 3 ms) */
    const char *redis_prefix;   /* key prefix (NULL: "shoal:c:") */
    metrics *met;               /* borrowed; may be NULL */
    FILE *warn;                 /* warnings (NULL: stderr) */
} cache_params;

typedef struct cache cache;

/* Opens the tiers. A damaged SQLite file is not an error (moved aside, rebuilt, warned); an
 * SQLite file that cannot be created is. An unreachable Redis is not an error (misses until
 * it answers). NULL with err when nothing could be set up. */
cache *cache_init(const cache_params *p, sh_err *err);

/* Flushes the writer queue (bounded wait), closes the tiers. NULL is fine. */
void cache_free(cache *c);

/* Looks key up, tier by tier. On a hit returns 1, *val a malloc'd copy of the value (the
 * caller frees it), *n its length and *tier "memory" / "sqlite" / "redis"; 0 on a miss. */
int cache_get(cache *c, const uint8_t key[CACHE_KEY_BYTES], char **val, size_t *n, const char **tier);

/* Stores a copy of val under key in every tier (memory at once, the others on the writer
 * thread). */
void cache_put(cache *c, const uint8_t key[CACHE_KEY_BYTES], const char *val, size_t n);

/* Waits (at most timeout_ms) until the writer has written everything queued so far: after it,
 * other processes reading the file or Redis see those entries. */
void cache_flush(cache *c, double timeout_ms);

/* Drops every entry of every tier (Redis: the keys under the prefix). */
void cache_clear(cache *c);

typedef struct cache_tier_stats {
    bool on;
    uint64_t hits, misses, errors, puts, evictions, dropped;
    uint64_t entries, bytes;    /* memory and sqlite; redis: 0 (not counted) */
    bool up;                    /* redis: connected */
} cache_tier_stats;

typedef struct cache_stats {
    cache_tier_stats memory, sqlite, redis;
} cache_stats;

void cache_get_stats(cache *c, cache_stats *st);

/* ---- the semantic tier (semantic.c) ------------------------------------------------------
 * Earlier answers found by the cosine similarity of their prompts' embeddings (unit length,
 * dim floats), within a partition (a digest of everything but the prompt's last turn), and
 * only when their fingerprints are compatible (csem_compatible). In memory: a ring of max_entries
 * (0: 100000), the oldest replaced first, a flat scan per lookup. Thread-safe. */
typedef struct csem csem;
csem *csem_init(int dim, size_t max_entries, double ttl_s, metrics *met);
void csem_free(csem *s); /* NULL-safe */
/* 1 and *val (malloc'd), *n, *sim for the most similar entry with sim >= min_sim and a
 * compatible fingerprint; 0 otherwise, *sim then the best similarity seen in the partition (-2: none). */
int csem_get(csem *s, const uint8_t part[CACHE_KEY_BYTES], const float *vec, const char *fp, double min_sim,
             char **val, size_t *n, double *sim);
void csem_put(csem *s, const uint8_t part[CACHE_KEY_BYTES], const float *vec, const char *fp, const char *val,
              size_t n);
void csem_clear(csem *s);
/* The false-hit guard: "n=NUMBERS;g=NEGATION-PARITY;p=POLES;s=SLOTS" of text (digits and
 * number words; not, never, n't, ...; polarity words by pole) and the tagger's slots string
 * (lower-cased; "" without a tagger). */
void csem_fingerprint(const char *text, const char *slots, char *out, size_t n);
/* True when two fingerprints may share an answer: numbers, negation parity and slots equal, and
 * no polarity word of one opposite to one of the other. */
bool csem_compatible(const char *a, const char *b);

/* ---- keys (key.c) ---------------------------------------------------------------------- */

/* A canonical serialization being built: fields are tagged and length-prefixed, so that no
 * two different field lists serialize alike. Grows as needed; an allocation failure is kept
 * and reported by ckey_digest. */
typedef struct ckey {
    char *buf;
    size_t n, cap;
    bool oom;
} ckey;

void ckey_init(ckey *k);
void ckey_free(ckey *k);   /* NULL-safe; k can be reused after ckey_init */
/* Adds field tag with bytes s[0..n) as they are. */
void ckey_bytes(ckey *k, const char *tag, const void *s, size_t n);
/* Adds field tag with the text s[0..n) normalized (ckey_normalize). */
void ckey_text(ckey *k, const char *tag, const char *s, size_t n, bool fold_case);
void ckey_int(ckey *k, const char *tag, int64_t v);
void ckey_num(ckey *k, const char *tag, double v); /* exact: the bits of the double */
/* The SHA-256 of what was added. -1 after an allocation failure. */
int ckey_digest(const ckey *k, uint8_t out[CACHE_KEY_BYTES]);

/* Text normalization for keys: Unicode NFC-insensitive it is NOT (precomposed and decomposed
 * forms stay different); it trims leading and trailing white space, turns every run of white
 * space (Unicode White_Space, line breaks included) into one ASCII space, and with fold_case
 * maps each code point to its simple lower case. Bytes that are not valid UTF-8 are kept as
 * they are. Writes at most ckey_normalize_cap(n) bytes to out and returns the length. */
size_t ckey_normalize(const char *in, size_t n, bool fold_case, char *out);
static inline size_t ckey_normalize_cap(size_t n) { return n + n / 2 + 4; }

#endif
