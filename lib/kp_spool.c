/*
 * kp_spool: the adapter's durable local spool on SQLite (see kp_spool.h). This file holds
 * the only place where an adapter's data waits between the department system and the
 * scorer's commit (ARCHITECTURE.md guarantee 1). The file is opened in WAL mode with
 * synchronous=FULL, so a transaction that returned from COMMIT survives kill -9 and power
 * loss. Tables:
 *
 *   meta(k = 1, next_seq, cursor)      one row: the next seq to use and the source cursor
 *   batch(seq, payload, n_obs, created_ms)   batches waiting for their end-to-end ack
 *   dead(seq, payload, code, msg, at)        batches refused by a permanent nack
 *   rejected(seq, n, code, msg, at)          per-observation refusals reported in acks
 *
 * kp_spool_put inserts the batch, advances meta.next_seq past it and stores the cursor in one
 * transaction: after any crash, the stored cursor is the one that produced the last stored
 * batch, and next_seq never goes back, even once every batch was acked and deleted
 * (PROTOCOL.md batch.seq: strictly increasing across restarts). The byte bound counts the
 * payload bytes of waiting batches; it is kept in memory, computed once at open.
 */
#include "kp_spool.h"

#include <inttypes.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "kp_err.h"
#include "kp_time.h"

enum {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_META_GET,
    ST_PUT_BATCH,
    ST_PUT_META,
    ST_SCAN,
    ST_LEN,
    ST_DELETE,
    ST_DEAD_COPY,
    ST_REJECTED,
    ST_OLDEST,
    ST__COUNT
};

static const char *const stmt_sql[ST__COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_META_GET] = "SELECT next_seq, cursor FROM meta WHERE k = 1",
    [ST_PUT_BATCH] = "INSERT INTO batch(seq, payload, n_obs, created_ms) VALUES (?1, ?2, ?3, ?4)",
    [ST_PUT_META] = "UPDATE meta SET next_seq = ?1, cursor = coalesce(?2, cursor) WHERE k = 1",
    [ST_SCAN] = "SELECT seq, payload, n_obs, created_ms FROM batch WHERE seq > ?1 "
                "ORDER BY seq LIMIT ?2",
    [ST_LEN] = "SELECT length(payload) FROM batch WHERE seq = ?1",
    [ST_DELETE] = "DELETE FROM batch WHERE seq = ?1",
    [ST_DEAD_COPY] = "INSERT OR REPLACE INTO dead(seq, payload, code, msg, at) "
                     "SELECT seq, payload, ?2, ?3, ?4 FROM batch WHERE seq = ?1",
    [ST_REJECTED] = "INSERT OR REPLACE INTO rejected(seq, n, code, msg, at) "
                    "VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_OLDEST] = "SELECT created_ms FROM batch ORDER BY seq LIMIT 1",
};

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS meta ("
    "  k INTEGER PRIMARY KEY CHECK (k = 1),"
    "  next_seq INTEGER NOT NULL CHECK (next_seq >= 1),"
    "  cursor TEXT NOT NULL);"
    "INSERT OR IGNORE INTO meta(k, next_seq, cursor) VALUES (1, 1, '');"
    "CREATE TABLE IF NOT EXISTS batch ("
    "  seq INTEGER PRIMARY KEY,"
    "  payload BLOB NOT NULL,"
    "  n_obs INTEGER NOT NULL,"
    "  created_ms INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS dead ("
    "  seq INTEGER PRIMARY KEY,"
    "  payload BLOB NOT NULL,"
    "  code TEXT NOT NULL,"
    "  msg TEXT NOT NULL,"
    "  at INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS rejected ("
    "  seq INTEGER NOT NULL,"
    "  n INTEGER NOT NULL,"
    "  code TEXT NOT NULL,"
    "  msg TEXT NOT NULL,"
    "  at INTEGER NOT NULL,"
    "  PRIMARY KEY (seq, n));";

struct kp_spool {
    sqlite3 *db;
    sqlite3_stmt *st[ST__COUNT];
    uint64_t max_bytes;
    uint64_t next_seq; /* mirror of meta.next_seq */
    uint64_t depth;    /* rows of batch */
    uint64_t bytes;    /* sum of length(payload) of batch */
    uint64_t dead;     /* rows of dead */
};

/* Seqs are stored as SQLite's signed 64-bit integers; kaoping never gets near 2^63. */
#define SEQ_MAX ((uint64_t)INT64_MAX)

static sqlite3_stmt *stmt(struct kp_spool *sp, int which)
{
    sqlite3_stmt *s = sp->st[which];
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
}

/* Runs a statement that returns no rows. */
static int step_done(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : KP_EIO;
}

static int txn_begin(struct kp_spool *sp)
{
    return step_done(stmt(sp, ST_BEGIN));
}

static int txn_commit(struct kp_spool *sp)
{
    if (step_done(stmt(sp, ST_COMMIT)) == 0)
        return 0;
    /* A failed COMMIT may leave the transaction open; a failed ROLLBACK means SQLite already
     * rolled it back. Either way nothing of it is stored. */
    step_done(stmt(sp, ST_ROLLBACK));
    return KP_EIO;
}

static void txn_rollback(struct kp_spool *sp)
{
    if (!sqlite3_get_autocommit(sp->db))
        step_done(stmt(sp, ST_ROLLBACK));
}

static int exec_count(sqlite3 *db, const char *sql, uint64_t *out)
{
    sqlite3_stmt *s = NULL;
    int rc = KP_EIO;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
        return KP_EIO;
    if (sqlite3_step(s) == SQLITE_ROW) {
        sqlite3_int64 v = sqlite3_column_int64(s, 0);
        *out = v > 0 ? (uint64_t)v : 0;
        rc = 0;
    }
    sqlite3_finalize(s);
    return rc;
}

/* Reads meta.next_seq (and optionally the cursor) inside or outside a transaction. */
static int meta_read(struct kp_spool *sp, uint64_t *next_seq, char *cursor, size_t cursor_len)
{
    sqlite3_stmt *s = stmt(sp, ST_META_GET);
    int rc = KP_EIO;
    if (sqlite3_step(s) == SQLITE_ROW) {
        sqlite3_int64 v = sqlite3_column_int64(s, 0);
        if (v >= 1) {
            *next_seq = (uint64_t)v;
            rc = 0;
            if (cursor && cursor_len) {
                const unsigned char *t = sqlite3_column_text(s, 1);
                size_t n = t ? (size_t)sqlite3_column_bytes(s, 1) : 0;
                if (n >= cursor_len) {
                    rc = KP_EINVAL; /* buffer too small: never hand back a cut cursor */
                    n = 0;
                }
                if (n)
                    memcpy(cursor, t, n);
                cursor[n] = 0;
            }
        }
    }
    sqlite3_reset(s);
    return rc;
}

int kp_spool_open(const char *path, uint64_t max_bytes, struct kp_spool **out)
{
    *out = NULL;
    struct kp_spool *sp = kp_xcalloc(1, sizeof *sp);
    sp->max_bytes = max_bytes;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &sp->db, flags, NULL) != SQLITE_OK)
        goto fail;
    sqlite3_busy_timeout(sp->db, 5000);
    sqlite3_extended_result_codes(sp->db, 1);

    /* journal_mode answers with the mode in force: insist on WAL. */
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(sp->db, "PRAGMA journal_mode=WAL", -1, &s, NULL) != SQLITE_OK)
        goto fail;
    bool wal = sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0) != NULL &&
               strcmp((const char *)sqlite3_column_text(s, 0), "wal") == 0;
    sqlite3_finalize(s);
    if (!wal)
        goto fail;
    if (sqlite3_exec(sp->db, "PRAGMA synchronous=FULL", NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    if (sqlite3_exec(sp->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    if (sqlite3_exec(sp->db, schema_sql, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(sp->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_exec(sp->db, "ROLLBACK", NULL, NULL, NULL);
        goto fail;
    }
    for (int i = 0; i < ST__COUNT; i++)
        if (sqlite3_prepare_v3(sp->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &sp->st[i],
                               NULL) != SQLITE_OK)
            goto fail;

    uint64_t max_seq = 0;
    if (meta_read(sp, &sp->next_seq, NULL, 0) != 0 ||
        exec_count(sp->db, "SELECT count(*) FROM batch", &sp->depth) != 0 ||
        exec_count(sp->db, "SELECT coalesce(sum(length(payload)), 0) FROM batch", &sp->bytes) !=
            0 ||
        exec_count(sp->db, "SELECT count(*) FROM dead", &sp->dead) != 0 ||
        exec_count(sp->db,
                   "SELECT max(coalesce((SELECT max(seq) FROM batch), 0),"
                   "           coalesce((SELECT max(seq) FROM dead), 0))",
                   &max_seq) != 0)
        goto fail;
    /* Belt and braces: meta and batch are written in one transaction, so this never fires
     * unless the file was edited by hand; even then never hand out a used seq. */
    if (max_seq >= sp->next_seq)
        sp->next_seq = max_seq + 1;
    *out = sp;
    return 0;

fail:
    kp_spool_close(&sp);
    return KP_EIO;
}

void kp_spool_close(struct kp_spool **spp)
{
    if (!spp || !*spp)
        return;
    struct kp_spool *sp = *spp;
    for (int i = 0; i < ST__COUNT; i++)
        sqlite3_finalize(sp->st[i]);
    if (sp->db)
        sqlite3_close(sp->db);
    free(sp);
    *spp = NULL;
}

uint64_t kp_spool_next_seq(struct kp_spool *sp)
{
    return sp->next_seq;
}

int kp_spool_put(struct kp_spool *sp, uint64_t seq, const void *payload, size_t len, uint32_t n_obs,
                 const char *cursor)
{
    if (seq != sp->next_seq || seq >= SEQ_MAX || (len > 0 && payload == NULL) ||
        len > (size_t)INT_MAX)
        return KP_EINVAL;
    /* The bound: refuse before touching the file. A batch larger than the whole bound is
     * accepted only into an empty spool, so a small bound can never wedge an adapter. */
    if (sp->depth > 0 && (len > sp->max_bytes || sp->bytes > sp->max_bytes - len))
        return KP_EFULL;

    if (txn_begin(sp) != 0)
        return KP_EIO;
    /* Re-read next_seq inside the write transaction: a second process on the same file (a
     * misconfiguration) then gets KP_EINVAL instead of overwriting a seq. */
    uint64_t stored_next = 0;
    if (meta_read(sp, &stored_next, NULL, 0) != 0)
        goto fail_io;
    if (stored_next != seq) {
        txn_rollback(sp);
        sp->next_seq = stored_next > sp->next_seq ? stored_next : sp->next_seq;
        return KP_EINVAL;
    }

    sqlite3_stmt *s = stmt(sp, ST_PUT_BATCH);
    sqlite3_bind_int64(s, 1, (sqlite3_int64)seq);
    sqlite3_bind_blob(s, 2, len ? payload : "", (int)len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)n_obs);
    sqlite3_bind_int64(s, 4, (sqlite3_int64)kp_now_ms());
    if (step_done(s) != 0)
        goto fail_io;

    s = stmt(sp, ST_PUT_META);
    sqlite3_bind_int64(s, 1, (sqlite3_int64)(seq + 1));
    if (cursor)
        sqlite3_bind_text(s, 2, cursor, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, 2);
    if (step_done(s) != 0)
        goto fail_io;
    if (txn_commit(sp) != 0)
        return KP_EIO;

    sp->next_seq = seq + 1;
    sp->depth++;
    sp->bytes += len;
    return 0;

fail_io:
    txn_rollback(sp);
    return KP_EIO;
}

int kp_spool_cursor(struct kp_spool *sp, char *buf, size_t len)
{
    if (!buf || len == 0)
        return KP_EINVAL;
    uint64_t next = 0;
    int rc = meta_read(sp, &next, buf, len);
    if (rc != 0)
        buf[0] = 0;
    return rc;
}

int kp_spool_scan(struct kp_spool *sp, uint64_t after_seq, size_t max,
                  int (*fn)(const struct kp_spool_item *it, void *arg), void *arg)
{
    if (max == 0)
        return 0;
    if (after_seq >= SEQ_MAX)
        return 0;
    sqlite3_stmt *s = stmt(sp, ST_SCAN);
    sqlite3_bind_int64(s, 1, (sqlite3_int64)after_seq);
    sqlite3_bind_int64(s, 2, max > (size_t)INT64_MAX ? INT64_MAX : (sqlite3_int64)max);
    int visited = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct kp_spool_item it;
        it.seq = (uint64_t)sqlite3_column_int64(s, 0);
        it.payload = sqlite3_column_blob(s, 1);
        it.len = (size_t)sqlite3_column_bytes(s, 1);
        it.n_obs = (uint32_t)sqlite3_column_int64(s, 2);
        it.created_ms = sqlite3_column_int64(s, 3);
        visited++;
        if (fn(&it, arg) != 0) {
            rc = SQLITE_DONE;
            break;
        }
        if (visited == INT_MAX)
            break;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return KP_EIO;
    return visited;
}

/* Length of seq's payload: 0 and *found = false when seq is not waiting. */
static int batch_len(struct kp_spool *sp, uint64_t seq, bool *found, uint64_t *len)
{
    sqlite3_stmt *s = stmt(sp, ST_LEN);
    sqlite3_bind_int64(s, 1, (sqlite3_int64)seq);
    int rc = sqlite3_step(s);
    *found = rc == SQLITE_ROW;
    *len = *found ? (uint64_t)sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : KP_EIO;
}

static void forget(struct kp_spool *sp, uint64_t len)
{
    sp->depth = sp->depth ? sp->depth - 1 : 0;
    sp->bytes = sp->bytes >= len ? sp->bytes - len : 0;
}

int kp_spool_ack(struct kp_spool *sp, uint64_t seq)
{
    if (seq >= SEQ_MAX)
        return 0;
    bool found;
    uint64_t len;
    if (batch_len(sp, seq, &found, &len) != 0)
        return KP_EIO;
    if (!found)
        return 0; /* a duplicate ack */
    sqlite3_stmt *s = stmt(sp, ST_DELETE);
    sqlite3_bind_int64(s, 1, (sqlite3_int64)seq);
    if (step_done(s) != 0)
        return KP_EIO;
    forget(sp, len);
    return 0;
}

int kp_spool_dead(struct kp_spool *sp, uint64_t seq, const char *code, const char *msg)
{
    if (seq >= SEQ_MAX)
        return 0;
    bool found;
    uint64_t len;
    if (batch_len(sp, seq, &found, &len) != 0)
        return KP_EIO;
    if (!found)
        return 0; /* already acked or dead: nothing waits under this seq */
    if (txn_begin(sp) != 0)
        return KP_EIO;
    sqlite3_stmt *s = stmt(sp, ST_DEAD_COPY);
    sqlite3_bind_int64(s, 1, (sqlite3_int64)seq);
    sqlite3_bind_text(s, 2, code ? code : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, msg ? msg : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, (sqlite3_int64)kp_now_ms());
    if (step_done(s) != 0)
        goto fail;
    s = stmt(sp, ST_DELETE);
    sqlite3_bind_int64(s, 1, (sqlite3_int64)seq);
    if (step_done(s) != 0)
        goto fail;
    if (txn_commit(sp) != 0)
        return KP_EIO;
    forget(sp, len);
    sp->dead++;
    return 0;
fail:
    txn_rollback(sp);
    return KP_EIO;
}

int kp_spool_rejected(struct kp_spool *sp, uint64_t seq, uint32_t n, const char *code,
                      const char *msg)
{
    if (seq >= SEQ_MAX)
        return KP_EINVAL;
    sqlite3_stmt *s = stmt(sp, ST_REJECTED);
    sqlite3_bind_int64(s, 1, (sqlite3_int64)seq);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)n);
    sqlite3_bind_text(s, 3, code ? code : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, msg ? msg : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, (sqlite3_int64)kp_now_ms());
    return step_done(s);
}

int kp_spool_stats(struct kp_spool *sp, struct kp_spool_stats *st)
{
    memset(st, 0, sizeof *st);
    st->depth = sp->depth;
    st->bytes = sp->bytes;
    st->dead = sp->dead;
    if (sp->depth == 0)
        return 0;
    sqlite3_stmt *s = stmt(sp, ST_OLDEST);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        st->oldest_ms = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : KP_EIO;
}
