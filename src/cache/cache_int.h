/*
 * cache/cache_int — the tiers behind cache.h, each one file: mem.c, sqlite.c, redis.c. They
 * know nothing of each other; cache.c orders them, promotes hits, runs the writer thread and
 * keeps the metrics. Private to src/cache.
 *
 * Every tier's get returns 1 (hit: *val malloc'd, the caller's), 0 (miss) or -1 (error:
 * counted and treated as a miss). Times are wall-clock seconds (entries outlive a process).
 */
#ifndef SHOAL_CACHE_CACHE_INT_H
#define SHOAL_CACHE_CACHE_INT_H

#include "cache/cache.h"

/* ---- memory (mem.c): thread-safe LRU with a byte budget ---- */
typedef struct cmem cmem;
cmem *cmem_init(size_t budget);
void cmem_free(cmem *m);
int cmem_get(cmem *m, const uint8_t *key, double now, char **val, size_t *n);
/* Stores a copy, expiring at `expires`; evicts least recently used entries to stay within the
 * budget (a value larger than the budget is not stored). Returns the evictions. */
uint64_t cmem_put(cmem *m, const uint8_t *key, const char *val, size_t n, double expires);
void cmem_clear(cmem *m);
void cmem_stats(cmem *m, uint64_t *entries, uint64_t *bytes);

/* ---- sqlite (sqlite.c) ---- */
typedef struct csql csql;
/* Opens (or creates) path. A damaged file or one of an unknown schema version is moved to
 * PATH.damaged with a line on warn, and a new one is made. NULL with err when the file cannot
 * be created or opened at all. */
csql *csql_open(const char *path, size_t max_bytes, FILE *warn, sh_err *err);
void csql_close(csql *q);
int csql_get(csql *q, const uint8_t *key, double now, char **val, size_t *n);
/* Writer thread only. Returns the evictions, or -1 on an error (disk full, ...). */
long csql_put(csql *q, const uint8_t *key, const char *val, size_t n, double expires, double now);
int csql_clear(csql *q);
void csql_stats(csql *q, uint64_t *entries, uint64_t *bytes);

/* ---- redis (redis.c) ---- */
typedef struct credis credis;
/* Parses url; connects lazily (a dead server is not an error here). NULL with err on a bad url. */
credis *credis_init(const char *url, double timeout_ms, const char *prefix, sh_err *err);
void credis_free(credis *r);
int credis_get(credis *r, const uint8_t *key, char **val, size_t *n);
int credis_put(credis *r, const uint8_t *key, const char *val, size_t n, double ttl_s); /* 0 or -1 */
int credis_clear(credis *r);
bool credis_up(credis *r);

#endif
