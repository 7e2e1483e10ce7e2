/*
 * cache/sqlite — the SQLite tier (cache_int.h). One file in WAL mode, two connections: the
 * readers' (lookups from request threads) and the writer's (the cache's writer thread, and
 * clear), so that a lookup never waits for a write's sync. Several processes may share the
 * file (busy timeout; SQLite serializes the writers).
 *
 * Schema version 1:
 *   meta(k TEXT PRIMARY KEY, v TEXT)            -- ('schema', '1')
 *   entries(key BLOB PRIMARY KEY, value BLOB, created REAL, expires REAL, size INTEGER)
 * Eviction: expired entries, then the oldest, until the stored bytes are under the cap.
 *
 * Damage: a file that is not a database, fails PRAGMA quick_check, or has another schema
 * version is renamed to PATH.damaged (its -wal and -shm removed) and a new one is created, with
 * a warning; damage found later by a lookup makes the writer rebuild the file the same way.
 */
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/cache_int.h"

#define SCHEMA_VERSION "1"

struct csql {
    char *path;
    size_t max_bytes;
    FILE *warn;
    pthread_mutex_t rmu, wmu;
    sqlite3 *rdb, *wdb;
    sqlite3_stmt *get, *put;
    _Atomic bool damaged;       /* a lookup saw corruption: the writer rebuilds */
    _Atomic uint64_t entries, bytes;
    int puts_since_count;
};

static bool is_damage(int rc) {
    rc &= 0xff;
    return rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB;
}

static void close_all(csql *q) {
    sqlite3_finalize(q->get), q->get = NULL;
    sqlite3_finalize(q->put), q->put = NULL;
    sqlite3_close(q->rdb), q->rdb = NULL;
    sqlite3_close(q->wdb), q->wdb = NULL;
}

/* Opens one connection with the pragmas every connection needs. */
static int open_conn(const char *path, sqlite3 **db) {
    int rc = sqlite3_open_v2(path, db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL);
    if (rc != SQLITE_OK) return rc;
    sqlite3_busy_timeout(*db, 2000);
    return sqlite3_exec(*db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL, NULL, NULL);
}

/* Checks and sets up the file: 0 ok, 1 damaged (why says how), -1 cannot open (err). */
static int setup(csql *q, char *why, size_t whyn, sh_err *err) {
    int rc = open_conn(q->path, &q->wdb);
    if (rc != SQLITE_OK) {
        if (is_damage(rc)) return snprintf(why, whyn, "%s", sqlite3_errstr(rc)), 1;
        sh_errf(err, "cache db '%s': %s", q->path, q->wdb ? sqlite3_errmsg(q->wdb) : sqlite3_errstr(rc));
        return -1;
    }
    sqlite3_stmt *st = NULL;
    rc = sqlite3_prepare_v2(q->wdb, "PRAGMA quick_check", -1, &st, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    const char *res = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
    bool ok = res && !strcmp(res, "ok");
    if (!ok) snprintf(why, whyn, "quick_check: %s", res ? res : sqlite3_errmsg(q->wdb));
    sqlite3_finalize(st);
    if (!ok) return 1;
    rc = sqlite3_exec(q->wdb,
                      "CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT);"
                      "INSERT OR IGNORE INTO meta VALUES('schema', '" SCHEMA_VERSION "');"
                      "CREATE TABLE IF NOT EXISTS entries(key BLOB PRIMARY KEY, value BLOB NOT NULL,"
                      " created REAL NOT NULL, expires REAL NOT NULL, size INTEGER NOT NULL);"
                      "CREATE INDEX IF NOT EXISTS entries_created ON entries(created);",
                      NULL, NULL, NULL);
    if (is_damage(rc)) return snprintf(why, whyn, "%s", sqlite3_errmsg(q->wdb)), 1;
    if (rc != SQLITE_OK) {
        sh_errf(err, "cache db '%s': %s", q->path, sqlite3_errmsg(q->wdb));
        return -1;
    }
    rc = sqlite3_prepare_v2(q->wdb, "SELECT v FROM meta WHERE k = 'schema'", -1, &st, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    res = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
    ok = res && !strcmp(res, SCHEMA_VERSION);
    if (!ok) snprintf(why, whyn, "schema version %s, this build reads %s", res ? res : "(none)", SCHEMA_VERSION);
    sqlite3_finalize(st);
    if (!ok) return 1;
    if ((rc = open_conn(q->path, &q->rdb)) != SQLITE_OK ||
        (rc = sqlite3_prepare_v2(q->rdb, "SELECT value, expires FROM entries WHERE key = ?", -1, &q->get, NULL)) ||
        (rc = sqlite3_prepare_v2(q->wdb, "INSERT OR REPLACE INTO entries VALUES(?, ?, ?, ?, ?)", -1, &q->put, NULL))) {
        if (is_damage(rc)) return snprintf(why, whyn, "%s", sqlite3_errstr(rc)), 1;
        sh_errf(err, "cache db '%s': %s", q->path, sqlite3_errstr(rc));
        return -1;
    }
    return 0;
}

static void count(csql *q) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(q->wdb, "SELECT count(*), total(size) FROM entries", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        atomic_store(&q->entries, (uint64_t)sqlite3_column_int64(st, 0));
        atomic_store(&q->bytes, (uint64_t)sqlite3_column_double(st, 1));
    }
    sqlite3_finalize(st);
    q->puts_since_count = 0;
}

/* Moves the damaged file aside and starts a new one. Both locks held (or none needed yet). */
static int rebuild(csql *q, const char *why, sh_err *err) {
    close_all(q);
    char aside[4200], side[4200];
    snprintf(aside, sizeof aside, "%s.damaged", q->path);
    fprintf(q->warn, "shoal: warning: cache db '%s' is damaged (%s): moved to '%s', starting a new one\n", q->path,
            why, aside);
    fflush(q->warn);
    if (rename(q->path, aside) != 0 && errno != ENOENT) unlink(q->path);
    snprintf(side, sizeof side, "%s-wal", q->path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", q->path);
    unlink(side);
    char why2[256];
    int rc = setup(q, why2, sizeof why2, err);
    if (rc == 1) rc = sh_errf(err, "cache db '%s': a new file is damaged too (%s)", q->path, why2);
    if (rc == 0) count(q);
    return rc;
}

csql *csql_open(const char *path, size_t max_bytes, FILE *warn, sh_err *err) {
    csql *q = calloc(1, sizeof *q);
    if (!q || !(q->path = strdup(path))) {
        free(q);
        sh_errf(err, "out of memory");
        return NULL;
    }
    q->max_bytes = max_bytes;
    q->warn = warn;
    pthread_mutex_init(&q->rmu, NULL);
    pthread_mutex_init(&q->wmu, NULL);
    char why[256];
    int rc = setup(q, why, sizeof why, err);
    if (rc == 1) rc = rebuild(q, why, err);
    if (rc) {
        csql_close(q);
        return NULL;
    }
    count(q);
    return q;
}

void csql_close(csql *q) {
    if (!q) return;
    close_all(q);
    pthread_mutex_destroy(&q->rmu);
    pthread_mutex_destroy(&q->wmu);
    free(q->path);
    free(q);
}

int csql_get(csql *q, const uint8_t *key, double now, char **val, size_t *n) {
    if (atomic_load(&q->damaged)) return -1;
    pthread_mutex_lock(&q->rmu);
    int rc = -1;
    if (q->get && sqlite3_bind_blob(q->get, 1, key, CACHE_KEY_BYTES, SQLITE_STATIC) == SQLITE_OK) {
        int s = sqlite3_step(q->get);
        if (s == SQLITE_ROW) {
            const void *v = sqlite3_column_blob(q->get, 0);
            int len = sqlite3_column_bytes(q->get, 0);
            double expires = sqlite3_column_double(q->get, 1);
            rc = 0;
            if (expires > now && len >= 0) {
                char *c = malloc(len ? (size_t)len : 1);
                if (c) {
                    if (len) memcpy(c, v, (size_t)len);
                    *val = c, *n = (size_t)len, rc = 1;
                } else {
                    rc = -1;
                }
            }
        } else if (s == SQLITE_DONE) {
            rc = 0;
        } else if (is_damage(s)) {
            atomic_store(&q->damaged, true);
        }
        sqlite3_reset(q->get);
        sqlite3_clear_bindings(q->get);
    }
    pthread_mutex_unlock(&q->rmu);
    return rc;
}

/* Under wmu: expired entries, then the oldest tenth (at least 16), until under the cap. */
static long evict(csql *q, double now) {
    long gone = 0;
    char sql[160];
    snprintf(sql, sizeof sql, "DELETE FROM entries WHERE expires <= %.3f", now);
    if (sqlite3_exec(q->wdb, sql, NULL, NULL, NULL) == SQLITE_OK) gone += sqlite3_changes(q->wdb);
    count(q);
    for (int round = 0; round < 64 && atomic_load(&q->bytes) > q->max_bytes; round++) {
        uint64_t n = atomic_load(&q->entries) / 10;
        snprintf(sql, sizeof sql,
                 "DELETE FROM entries WHERE key IN (SELECT key FROM entries ORDER BY created LIMIT %llu)",
                 (unsigned long long)(n < 16 ? 16 : n));
        if (sqlite3_exec(q->wdb, sql, NULL, NULL, NULL) != SQLITE_OK) break;
        gone += sqlite3_changes(q->wdb);
        count(q);
    }
    return gone;
}

long csql_put(csql *q, const uint8_t *key, const char *val, size_t n, double expires, double now) {
    pthread_mutex_lock(&q->wmu);
    long rc = 0;
    if (atomic_load(&q->damaged)) {
        pthread_mutex_lock(&q->rmu);
        sh_err e = {{0}};
        int r = rebuild(q, "a lookup found it corrupt", &e);
        atomic_store(&q->damaged, r != 0);
        if (r) fprintf(q->warn, "shoal: warning: %s\n", e.msg);
        pthread_mutex_unlock(&q->rmu);
        if (r) {
            pthread_mutex_unlock(&q->wmu);
            return -1;
        }
    }
    sqlite3_stmt *st = q->put;
    if (!st || sqlite3_bind_blob(st, 1, key, CACHE_KEY_BYTES, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_blob(st, 2, val, (int)n, SQLITE_STATIC) != SQLITE_OK || sqlite3_bind_double(st, 3, now) ||
        sqlite3_bind_double(st, 4, expires) || sqlite3_bind_int64(st, 5, (sqlite3_int64)n)) {
        rc = -1;
    } else {
        int s = sqlite3_step(st);
        if (s != SQLITE_DONE) {
            rc = -1;
            if (is_damage(s)) atomic_store(&q->damaged, true);
        } else {
            atomic_fetch_add(&q->entries, 1);
            atomic_fetch_add(&q->bytes, n);
            if (++q->puts_since_count >= 64) count(q);
            if (atomic_load(&q->bytes) > q->max_bytes) rc = evict(q, now);
        }
    }
    if (st) sqlite3_reset(st), sqlite3_clear_bindings(st);
    pthread_mutex_unlock(&q->wmu);
    return rc;
}

int csql_clear(csql *q) {
    pthread_mutex_lock(&q->wmu);
    int rc = q->wdb && sqlite3_exec(q->wdb, "DELETE FROM entries", NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
    if (q->wdb) count(q);
    pthread_mutex_unlock(&q->wmu);
    return rc;
}

void csql_stats(csql *q, uint64_t *entries, uint64_t *bytes) {
    *entries = atomic_load(&q->entries);
    *bytes = atomic_load(&q->bytes);
}
