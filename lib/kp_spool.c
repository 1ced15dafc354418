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
 *   dead_row(file, line, code, msg, raw, at) source rows refused before they became a batch
 *                                            (a CSV row with a bad number, say), one per
 *                                            (file, line): writing one again replaces its
 *                                            text, so a source that re-reads rows after a
 *                                            crash never records one twice
 *
 * kp_spool_put inserts the batch, advances meta.next_seq past it and stores the cursor in one
 * transaction: after any crash, the stored cursor is the one that produced the last stored
 * batch, and next_seq never goes back, even once every batch was acked and deleted
 * (PROTOCOL.md batch.seq: strictly increasing across restarts). The byte bound counts the
 * payload bytes of waiting batches; it is kept in memory, computed once at open.
 *
 * One other writer is expected beside the adapter: `kpctl dlq retry` (kp_spool_retry_dead),
 * which moves a dead batch back into `batch` under a new seq taken from meta.next_seq in its
 * own write transaction. The adapter's connection notices any commit of another connection
 * through PRAGMA data_version and then re-reads its in-memory mirrors (next_seq, depth,
 * bytes, dead) before it hands out a seq, checks the bound or reports stats; kp_spool_put
 * re-checks next_seq inside its transaction anyway, so a retry that lands between
 * kp_spool_next_seq and kp_spool_put costs the adapter one refused put (KP_EINVAL; the pump
 * polls the same records again), never a reused seq.
 */
#include "kp_spool.h"

#include <inttypes.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <msgpack.h>

#include "kp_buf.h"
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
    ST_DEAD_ROW,
    ST_DEAD_ROW_SCAN,
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
    [ST_DEAD_ROW] = "INSERT INTO dead_row(file, line, code, msg, raw, at) "
                    "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (file, line) DO UPDATE SET "
                    "code = excluded.code, msg = excluded.msg, raw = excluded.raw",
    [ST_DEAD_ROW_SCAN] = "SELECT file, line, code, msg, raw, at FROM dead_row "
                         "WHERE ?1 IS NULL OR file = ?1 ORDER BY file, line",
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
    "  PRIMARY KEY (seq, n));"
    "CREATE TABLE IF NOT EXISTS dead_row ("
    "  file TEXT NOT NULL,"
    "  line INTEGER NOT NULL,"
    "  code TEXT NOT NULL,"
    "  msg TEXT NOT NULL,"
    "  raw TEXT NOT NULL,"
    "  at INTEGER NOT NULL,"
    "  PRIMARY KEY (file, line));";

struct kp_spool {
    sqlite3 *db;
    sqlite3_stmt *st[ST__COUNT];
    uint64_t max_bytes;
    uint64_t next_seq; /* mirror of meta.next_seq */
    uint64_t depth;    /* rows of batch */
    uint64_t bytes;    /* sum of length(payload) of batch */
    uint64_t dead;     /* rows of dead */
    sqlite3_stmt *dv;  /* PRAGMA data_version: changes when another connection commits */
    int64_t data_version;
};

/* Seqs are stored as SQLite's signed 64-bit integers; kaoping never gets near 2^63. */
#define SEQ_MAX ((uint64_t)INT64_MAX)

static sqlite3_stmt *stmt(struct kp_spool *sp, int which)
{
    sqlite3_stmt *s = sp->st[which];
    /* NULL only on a read-only handle of an older file lacking a table: sqlite3_step(NULL)
     * then fails with SQLITE_MISUSE, which every caller reports as KP_EIO. */
    if (s) {
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
    }
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

/* (Re)computes the in-memory mirrors from the file. */
static int recount(struct kp_spool *sp)
{
    uint64_t max_seq = 0, next_seq = 0;
    if (meta_read(sp, &next_seq, NULL, 0) != 0 ||
        exec_count(sp->db, "SELECT count(*) FROM batch", &sp->depth) != 0 ||
        exec_count(sp->db, "SELECT coalesce(sum(length(payload)), 0) FROM batch", &sp->bytes) !=
            0 ||
        exec_count(sp->db, "SELECT count(*) FROM dead", &sp->dead) != 0 ||
        exec_count(sp->db,
                   "SELECT max(coalesce((SELECT max(seq) FROM batch), 0),"
                   "           coalesce((SELECT max(seq) FROM dead), 0))",
                   &max_seq) != 0)
        return KP_EIO;
    /* Belt and braces: meta and batch are written in one transaction, so this never fires
     * unless the file was edited by hand; even then never hand out a used seq. */
    if (max_seq >= next_seq)
        next_seq = max_seq + 1;
    if (next_seq > sp->next_seq)
        sp->next_seq = next_seq;
    return 0;
}

static int data_version(struct kp_spool *sp, int64_t *v)
{
    sqlite3_reset(sp->dv);
    int rc = sqlite3_step(sp->dv);
    if (rc == SQLITE_ROW)
        *v = sqlite3_column_int64(sp->dv, 0);
    sqlite3_reset(sp->dv);
    return rc == SQLITE_ROW ? 0 : KP_EIO;
}

/* Another connection (kpctl dlq retry) committed since we last looked: re-read the mirrors.
 * A failure keeps the old mirrors (the next call tries again). */
static void sync_external(struct kp_spool *sp)
{
    int64_t v = 0;
    if (!sp->dv || data_version(sp, &v) != 0 || v == sp->data_version)
        return;
    if (recount(sp) == 0)
        sp->data_version = v;
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
    if (sqlite3_prepare_v3(sp->db, "PRAGMA data_version", -1, SQLITE_PREPARE_PERSISTENT, &sp->dv,
                           NULL) != SQLITE_OK ||
        data_version(sp, &sp->data_version) != 0)
        goto fail;
    if (recount(sp) != 0)
        goto fail;
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
    sqlite3_finalize(sp->dv);
    if (sp->db)
        sqlite3_close(sp->db);
    free(sp);
    *spp = NULL;
}

uint64_t kp_spool_next_seq(struct kp_spool *sp)
{
    sync_external(sp);
    return sp->next_seq;
}

int kp_spool_put(struct kp_spool *sp, uint64_t seq, const void *payload, size_t len, uint32_t n_obs,
                 const char *cursor)
{
    sync_external(sp);
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
    sync_external(sp);
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

/* ---- per-row dead letters (dead_row) ------------------------------------------------------ */

static int dead_row_insert(struct kp_spool *sp, const struct kp_spool_dead_row *r, int64_t now)
{
    if (!r->file || r->line < 0)
        return KP_EINVAL;
    sqlite3_stmt *s = stmt(sp, ST_DEAD_ROW);
    sqlite3_bind_text(s, 1, r->file, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)r->line);
    sqlite3_bind_text(s, 3, r->code ? r->code : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, r->msg ? r->msg : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, r->raw ? r->raw : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 6, (sqlite3_int64)now);
    return step_done(s);
}

int kp_spool_dead_rows(struct kp_spool *sp, const struct kp_spool_dead_row *rows, size_t n)
{
    if (n == 0)
        return 0;
    if (!rows)
        return KP_EINVAL;
    for (size_t k = 0; k < n; k++)
        if (!rows[k].file || rows[k].line < 0)
            return KP_EINVAL;
    if (txn_begin(sp) != 0)
        return KP_EIO;
    int64_t now = kp_now_ms();
    for (size_t k = 0; k < n; k++)
        if (dead_row_insert(sp, &rows[k], now) != 0) {
            txn_rollback(sp);
            return KP_EIO;
        }
    return txn_commit(sp);
}

int kp_spool_dead_row(struct kp_spool *sp, const char *file, long line, const char *code,
                      const char *msg, const char *raw)
{
    struct kp_spool_dead_row r = {file, line, code, msg, raw, 0};
    return kp_spool_dead_rows(sp, &r, 1);
}

int kp_spool_dead_row_scan(struct kp_spool *sp, const char *file,
                           int (*fn)(const struct kp_spool_dead_row *r, void *arg), void *arg)
{
    sqlite3_stmt *s = stmt(sp, ST_DEAD_ROW_SCAN);
    if (file)
        sqlite3_bind_text(s, 1, file, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, 1);
    int visited = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct kp_spool_dead_row r;
        r.file = (const char *)sqlite3_column_text(s, 0);
        r.line = (long)sqlite3_column_int64(s, 1);
        r.code = (const char *)sqlite3_column_text(s, 2);
        r.msg = (const char *)sqlite3_column_text(s, 3);
        r.raw = (const char *)sqlite3_column_text(s, 4);
        r.at_ms = sqlite3_column_int64(s, 5);
        visited++;
        if (fn(&r, arg) != 0 || visited == INT_MAX) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? visited : KP_EIO;
}

/* ---- dead letters: inspection and retry (kpctl dlq) ----------------------------------------- */

int kp_spool_open_readonly(const char *path, struct kp_spool **out)
{
    *out = NULL;
    if (!path || !path[0])
        return KP_EINVAL;
    sqlite3 *probe = NULL;
    /* SQLite opens lazily: tell a missing file from a file that is no spool. */
    if (sqlite3_open_v2(path, &probe, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        sqlite3_close(probe);
        return access(path, F_OK) == 0 ? KP_EIO : KP_ENOENT;
    }
    struct kp_spool *sp = kp_xcalloc(1, sizeof *sp);
    sp->db = probe;
    sp->max_bytes = UINT64_MAX;
    sqlite3_busy_timeout(sp->db, 5000);
    sqlite3_extended_result_codes(sp->db, 1);
    /* A table an older kp-adapter did not create leaves its statements NULL (see stmt()). */
    for (int i = 0; i < ST__COUNT; i++)
        if (sqlite3_prepare_v3(sp->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &sp->st[i],
                               NULL) != SQLITE_OK)
            sp->st[i] = NULL;
    if (!sp->st[ST_META_GET] || !sp->st[ST_SCAN] ||
        sqlite3_prepare_v3(sp->db, "PRAGMA data_version", -1, SQLITE_PREPARE_PERSISTENT, &sp->dv,
                           NULL) != SQLITE_OK ||
        data_version(sp, &sp->data_version) != 0 || recount(sp) != 0) {
        kp_spool_close(&sp);
        return KP_EIO;
    }
    *out = sp;
    return 0;
}

int kp_spool_dead_scan(struct kp_spool *sp, uint64_t after_seq, size_t max,
                       int (*fn)(const struct kp_spool_dead_item *it, void *arg), void *arg)
{
    if (max == 0 || after_seq >= SEQ_MAX)
        return 0;
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(sp->db,
                           "SELECT seq, code, msg, at, payload FROM dead WHERE seq > ?1 "
                           "ORDER BY seq LIMIT ?2",
                           -1, &s, NULL) != SQLITE_OK) {
        sqlite3_finalize(s);
        return KP_EIO;
    }
    sqlite3_bind_int64(s, 1, (sqlite3_int64)after_seq);
    sqlite3_bind_int64(s, 2, max > (size_t)INT64_MAX ? INT64_MAX : (sqlite3_int64)max);
    int visited = 0, rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct kp_spool_dead_item it;
        it.seq = (uint64_t)sqlite3_column_int64(s, 0);
        it.code = (const char *)sqlite3_column_text(s, 1);
        it.msg = (const char *)sqlite3_column_text(s, 2);
        it.at_ms = sqlite3_column_int64(s, 3);
        it.payload = sqlite3_column_blob(s, 4);
        it.len = (size_t)sqlite3_column_bytes(s, 4);
        if (!it.code)
            it.code = "";
        if (!it.msg)
            it.msg = "";
        visited++;
        if (fn(&it, arg) != 0 || visited == INT_MAX) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? visited : KP_EIO;
}

int kp_spool_rejected_scan(struct kp_spool *sp, uint64_t seq,
                           int (*fn)(const struct kp_spool_rejected_item *it, void *arg), void *arg)
{
    if (seq >= SEQ_MAX)
        return 0;
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(sp->db,
                           "SELECT seq, n, code, msg, at FROM rejected "
                           "WHERE ?1 = 0 OR seq = ?1 ORDER BY seq, n",
                           -1, &s, NULL) != SQLITE_OK) {
        sqlite3_finalize(s);
        return KP_EIO;
    }
    sqlite3_bind_int64(s, 1, (sqlite3_int64)seq);
    int visited = 0, rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct kp_spool_rejected_item it;
        it.seq = (uint64_t)sqlite3_column_int64(s, 0);
        it.n = (uint32_t)sqlite3_column_int64(s, 1);
        it.code = (const char *)sqlite3_column_text(s, 2);
        it.msg = (const char *)sqlite3_column_text(s, 3);
        it.at_ms = sqlite3_column_int64(s, 4);
        if (!it.code)
            it.code = "";
        if (!it.msg)
            it.msg = "";
        visited++;
        if (fn(&it, arg) != 0 || visited == INT_MAX) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? visited : KP_EIO;
}

static int buf_write(void *data, const char *p, size_t len)
{
    kp_buf_append(data, p, len);
    return 0;
}

static bool key_is(const msgpack_object *k, const char *name)
{
    size_t n = strlen(name);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           memcmp(k->via.str.ptr, name, n) == 0;
}

/* The batch frame again with `seq` replaced: every other key and value is re-packed as
 * decoded (same types, so the same meaning on the wire), values the scorer will refuse
 * included. Sets *n_obs from the obs array. KP_EINVAL: not a map with an integer seq. */
static int batch_reseq(const void *frame, size_t len, uint64_t seq, struct kp_buf *out,
                       uint32_t *n_obs)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    int rc = KP_EINVAL;
    if (msgpack_unpack_next(&u, frame, len, &off) != MSGPACK_UNPACK_SUCCESS || off != len ||
        u.data.type != MSGPACK_OBJECT_MAP)
        goto out;
    const msgpack_object_map *m = &u.data.via.map;
    bool seen = false;
    *n_obs = 0;
    for (uint32_t k = 0; k < m->size; k++) {
        const msgpack_object *v = &m->ptr[k].val;
        if (key_is(&m->ptr[k].key, "seq")) {
            if (seen || v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
                goto out;
            seen = true;
        } else if (key_is(&m->ptr[k].key, "obs") && v->type == MSGPACK_OBJECT_ARRAY) {
            *n_obs = v->via.array.size;
        }
    }
    if (!seen)
        goto out;
    kp_buf_reset(out);
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, buf_write);
    msgpack_pack_map(&pk, m->size);
    for (uint32_t k = 0; k < m->size; k++) {
        msgpack_pack_object(&pk, m->ptr[k].key);
        if (key_is(&m->ptr[k].key, "seq"))
            msgpack_pack_uint64(&pk, seq);
        else
            msgpack_pack_object(&pk, m->ptr[k].val);
    }
    rc = 0;
out:
    msgpack_unpacked_destroy(&u);
    return rc;
}

int kp_spool_retry_dead(struct kp_spool *sp, uint64_t seq, uint64_t *new_seq)
{
    *new_seq = 0;
    if (seq == 0 || seq >= SEQ_MAX)
        return KP_ENOENT;
    sqlite3_stmt *get = NULL, *ins = NULL, *del = NULL;
    struct kp_buf frame = {0};
    int rc = KP_EIO;
    if (sqlite3_prepare_v2(sp->db, "SELECT payload FROM dead WHERE seq = ?1", -1, &get, NULL) !=
            SQLITE_OK ||
        sqlite3_prepare_v2(sp->db,
                           "INSERT INTO batch(seq, payload, n_obs, created_ms) "
                           "VALUES (?1, ?2, ?3, ?4)",
                           -1, &ins, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(sp->db, "DELETE FROM dead WHERE seq = ?1", -1, &del, NULL) != SQLITE_OK)
        goto done; /* a read-only handle cannot prepare the writes */
    /* BEGIN IMMEDIATE takes the write lock now (waiting up to the busy timeout for a running
     * adapter's transaction), so next_seq cannot move under us. */
    if (txn_begin(sp) != 0)
        goto done;
    sqlite3_bind_int64(get, 1, (sqlite3_int64)seq);
    int st = sqlite3_step(get);
    if (st != SQLITE_ROW) {
        rc = st == SQLITE_DONE ? KP_ENOENT : KP_EIO;
        goto rollback;
    }
    uint64_t next = 0, max_seq = 0;
    if (meta_read(sp, &next, NULL, 0) != 0 ||
        exec_count(sp->db,
                   "SELECT max(coalesce((SELECT max(seq) FROM batch), 0),"
                   "           coalesce((SELECT max(seq) FROM dead), 0))",
                   &max_seq) != 0)
        goto rollback;
    if (max_seq >= next)
        next = max_seq + 1;
    if (next >= SEQ_MAX)
        goto rollback;
    uint32_t n_obs = 0;
    rc = batch_reseq(sqlite3_column_blob(get, 0), (size_t)sqlite3_column_bytes(get, 0), next,
                     &frame, &n_obs);
    if (rc != 0)
        goto rollback;
    rc = KP_EIO;
    if (frame.len > (size_t)INT_MAX)
        goto rollback;
    sqlite3_reset(get);
    sqlite3_bind_int64(ins, 1, (sqlite3_int64)next);
    sqlite3_bind_blob(ins, 2, frame.data, (int)frame.len, SQLITE_STATIC);
    sqlite3_bind_int64(ins, 3, (sqlite3_int64)n_obs);
    sqlite3_bind_int64(ins, 4, (sqlite3_int64)kp_now_ms());
    if (step_done(ins) != 0)
        goto rollback;
    sqlite3_stmt *s = stmt(sp, ST_PUT_META);
    sqlite3_bind_int64(s, 1, (sqlite3_int64)(next + 1));
    sqlite3_bind_null(s, 2); /* the source cursor stays as it is */
    if (step_done(s) != 0)
        goto rollback;
    sqlite3_bind_int64(del, 1, (sqlite3_int64)seq);
    if (step_done(del) != 0)
        goto rollback;
    if (txn_commit(sp) != 0)
        goto done;
    if (next + 1 > sp->next_seq)
        sp->next_seq = next + 1;
    sp->depth++;
    sp->bytes += frame.len;
    sp->dead = sp->dead ? sp->dead - 1 : 0;
    *new_seq = next;
    rc = 0;
    goto done;
rollback:
    sqlite3_reset(get);
    txn_rollback(sp);
done:
    sqlite3_finalize(get);
    sqlite3_finalize(ins);
    sqlite3_finalize(del);
    kp_buf_fini(&frame);
    return rc;
}
