/*
 * scr_cells: the scorer's copy of a scheme's indicator_cells rows (migration 005) and
 * indicator_cell_log rows (009), and their writes. A (scheme, period, unit) holds parallel
 * arrays over the scheme's nodes 1..n-1 (in the order of its indicator_layout), stored as parts
 * of PART cells, a row each; kp_indicator_score unnests them, each cell's latest log entry
 * winning. A batch changes a few cells of a few hundred (unit, period)s. The units of a period
 * are cut into buckets of scr__cells_log_units in the scheme's order (a log key: period and
 * bucket); per log key it changed, a transaction writes a log row with only the cells that
 * changed, and after scr__cells_log_max or so such rows the key folds: its units' parts changed
 * since they were last written whole are rewritten whole and the key's log rows deleted
 * (issue 9: whole parts at every write were ~3.2 rows of ~1.9 kB per observation at 10,000
 * obs/s on random cells, docs/BENCHMARKS.md round 15; a log row per (unit, period) was 1.1 rows
 * per observation, round 17). The values, scores and n_obs it writes are the engine's
 * (score_engine_cells); what the scorer keeps of the rows is each cell's updated_at as last
 * committed, which moves only for the cells the engine reports changed (value, score or n_obs,
 * as the IS DISTINCT FROM of the old upsert did), which parts the transaction changed, which
 * parts the log holds cells of, and per log key its rows in the log. A cell holds its
 * updated_at as a 4-byte index into a table of the timestamps in use (a transaction's now() is
 * one entry for all the cells it changed), which a collection packs when it has doubled
 * (times_collect). The arrays go as binary parameters (kp_pg_barray_*): no printf of doubles
 * here, no float8in in the backend. When a transaction fails, its changes are undone with the
 * engine's from a log of the updated_at each changed cell had (12 bytes a change) and each
 * touched row's and key's log state at its begin; a replay rebuilds the copy from the engine
 * and the database (scr__cells_sync), keeping a log that equals the engine and rewriting parts
 * of another layout (a changed scheme file) or size.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kp_err.h"
#include "kp_pg.h"
#include "score_engine.h"
#include "scr_internal.h"

/* Cells per database row: a (unit, period) is stored as parts of PART consecutive cells, each
 * its own row keyed by its base (0, PART, 2 PART, ...), so that a batch rewrites only the parts
 * it changed and a part (~1.8 kB: 28 bytes a cell) stays below the TOAST threshold. */
#ifndef SCR_CELLS_PART
#define PART 64
#else /* tests: small parts exercise the multi-part paths with small schemes */
#define PART SCR_CELLS_PART
#endif
/* A cell's updated_at: an index into scr_cells.times, or one of these. */
#define UPD_NONE   0u     /* no cell */
#define UPD_NOW    1u     /* changed in this transaction: the server's now() */
#define UPD_GONE   2u     /* ceased to exist in this transaction (UPD_NONE at its commit) */
#define UPD_FIRST  3u     /* times[UPD_FIRST] is the first timestamp */
#define WIRE_NOW   (-1LL) /* updated_us in a written array: the statement's now() */
#define PERIOD_MAX 32

struct cell_row {
    size_t idx; /* in rows[]: rows are never removed */
    size_t unit;
    char period[PERIOD_MAX];
    uint32_t key;  /* its log key, in scr_cells.keys */
    bool touched;  /* written by the current transaction */
    uint8_t *part; /* per part: P_* flags */
    uint32_t *upd; /* per cell: UPD_NONE, UPD_NOW, UPD_GONE or an index into scr_cells.times */
};

/* A log key: the (period, bucket) whose changed cells share a row of indicator_cell_log per
 * transaction, the units unit / scr__cells_log_units of the period. */
struct log_key {
    char period[PERIOD_MAX];
    uint32_t bucket;
    /* the transactions that wrote it log rows since its last fold (after a sync: its rows in
     * the log), and their number at the transaction's begin (for a rollback) */
    uint16_t nlog, nlog_prev;
    bool touched;   /* by the current transaction (in scr_cells.tkeys) */
    bool fold;      /* the current transaction folds it */
    bool logged;    /* the current transaction wrote it a log row (a sync: a part of its rows
                     * has a cell in the log) */
    bool sync_fold; /* sync: its log names a cell outside this layout, or its parts are written */
};

/* The undo log: a cell's updated_at before the transaction changed it. */
struct undo {
    uint32_t row, cell, upd;
};

enum {
    P_DIRTY = 1,       /* changed by the current transaction */
    P_NEED = 2,        /* sync: to be written */
    P_DIFFERS = 8,     /* sync: a database cell differs from the engine's or is not the engine's */
    P_LOGGED = 16,     /* cells changed in indicator_cell_log since the part's row was written */
    P_WAS_LOGGED = 32, /* P_LOGGED at the transaction's begin (for a rollback) */
};

struct scr_cells {
    int outstanding; /* statements scr__cells_write left to scr__cells_collect (a pipeline) */
    size_t ncells;   /* nodes of the scheme but the root: cell k is node k + 1 */
    size_t nparts;   /* ceil(ncells / PART) */
    struct cell_row **rows;
    size_t n_rows, cap_rows;
    size_t *slot; /* open addressing over rows (index + 1; 0 empty) */
    size_t n_slots;
    struct log_key *keys;
    size_t n_keys, cap_keys;
    size_t *kslot; /* open addressing over keys (index + 1; 0 empty) */
    size_t n_kslots;
    bool sync_all; /* sync: a log row of another bucket numbering (every logged key folds) */
    /* the current transaction: touched rows and their state before it, touched keys */
    size_t *touched;
    size_t n_touched, cap_touched;
    uint32_t *tkeys;
    size_t n_tkeys, cap_tkeys;
    struct kp_buf undo; /* struct undo, in the order of the changes */
    /* the updated_at values cells hold, µs since the Unix epoch, from UPD_FIRST; entries no
     * cell holds any more stay until times_collect */
    int64_t *times;
    size_t n_times, cap_times;
    size_t n_times_kept; /* entries after the last collection */
};

size_t scr__cells_times_min = 4096;

/* A new entry of the table of timestamps. */
static uint32_t times_add(struct scr_cells *c, int64_t us)
{
    if (c->n_times == c->cap_times) {
        c->cap_times = c->cap_times ? 2 * c->cap_times : 256;
        c->times = kp_xrealloc(c->times, c->cap_times * sizeof *c->times);
    }
    if (c->n_times < UPD_FIRST)
        c->n_times = UPD_FIRST; /* times[0] and [1] are never read */
    KP_ASSERT(c->n_times < UINT32_MAX);
    c->times[c->n_times] = us;
    return (uint32_t)c->n_times++;
}

struct time_ix {
    int64_t us;
    uint32_t idx;
};

static int time_ix_cmp(const void *a, const void *b)
{
    const struct time_ix *x = a, *y = b;
    if (x->us != y->us)
        return x->us < y->us ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Outside a transaction (no UPD_NOW, an empty undo log), once the table holds twice the entries
 * of the last collection and at least scr__cells_times_min: keeps only the timestamps cells
 * hold, each once (a sync's copy reads one entry per cell from the database), and renumbers
 * the cells. Two passes over the cells (4 bytes each) and a sort of the entries kept. */
static void times_collect(struct scr_cells *c, bool force)
{
    size_t used = c->n_times > UPD_FIRST ? c->n_times - UPD_FIRST : 0;
    size_t kept = c->n_times_kept > UPD_FIRST ? c->n_times_kept - UPD_FIRST : 0;
    if (!force && (used < scr__cells_times_min || used < 2 * kept))
        return;
    if (c->n_times <= UPD_FIRST) {
        c->n_times_kept = c->n_times;
        return;
    }
    uint32_t *map = kp_xcalloc(c->n_times, sizeof *map); /* old index -> new index */
    for (size_t i = 0; i < c->n_rows; i++) {
        const uint32_t *u = c->rows[i]->upd;
        for (size_t k = 0; k < c->ncells; k++)
            map[u[k]] = 1;
    }
    size_t n = 0;
    for (size_t t = UPD_FIRST; t < c->n_times; t++)
        n += map[t] != 0;
    struct time_ix *v = kp_xmalloc((n ? n : 1) * sizeof *v);
    n = 0;
    for (size_t t = UPD_FIRST; t < c->n_times; t++)
        if (map[t])
            v[n++] = (struct time_ix){c->times[t], (uint32_t)t};
    qsort(v, n, sizeof *v, time_ix_cmp);
    size_t m = UPD_FIRST;
    for (size_t j = 0; j < n; j++) {
        if (j == 0 || v[j].us != v[j - 1].us)
            c->times[m++] = v[j].us;
        map[v[j].idx] = (uint32_t)(m - 1);
    }
    map[UPD_NONE] = UPD_NONE;
    map[UPD_NOW] = UPD_NOW;
    map[UPD_GONE] = UPD_GONE;
    for (size_t i = 0; i < c->n_rows; i++) {
        uint32_t *u = c->rows[i]->upd;
        for (size_t k = 0; k < c->ncells; k++)
            u[k] = map[u[k]];
    }
    free(v);
    free(map);
    c->n_times = c->n_times_kept = m;
    if (c->cap_times > 2 * m + 256) {
        c->cap_times = 2 * m + 256;
        c->times = kp_xrealloc(c->times, c->cap_times * sizeof *c->times);
    }
}

size_t scr__cells_n_times(const struct scr_cells *c)
{
    return c && c->n_times > UPD_FIRST ? c->n_times - UPD_FIRST : 0;
}

static uint64_t key_hash(size_t unit, const char *period)
{
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)unit;
    for (const unsigned char *p = (const unsigned char *)period; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return h ^ (h >> 29);
}

static struct scr_cells *cells_new(size_t ncells)
{
    struct scr_cells *c = kp_xcalloc(1, sizeof *c);
    c->ncells = ncells;
    c->nparts = (ncells + PART - 1) / PART;
    c->n_slots = 64;
    c->slot = kp_xcalloc(c->n_slots, sizeof *c->slot);
    c->n_kslots = 64;
    c->kslot = kp_xcalloc(c->n_kslots, sizeof *c->kslot);
    return c;
}

void scr__cells_destroy(struct scr_cells **cp)
{
    if (!cp || !*cp)
        return;
    struct scr_cells *c = *cp;
    for (size_t i = 0; i < c->n_rows; i++)
        free(c->rows[i]);
    free(c->rows);
    free(c->slot);
    free(c->keys);
    free(c->kslot);
    free(c->touched);
    free(c->tkeys);
    kp_buf_fini(&c->undo);
    free(c->times);
    free(c);
    *cp = NULL;
}

size_t scr__cells_bytes(const struct scr_cells *c)
{
    if (!c)
        return 0;
    return sizeof *c +
           c->n_rows * (sizeof(struct cell_row) + c->ncells * sizeof(uint32_t) + c->nparts) +
           c->cap_rows * sizeof *c->rows + c->n_slots * sizeof *c->slot +
           c->cap_touched * sizeof *c->touched + c->undo.cap + c->cap_times * sizeof *c->times +
           c->cap_keys * sizeof *c->keys + c->n_kslots * sizeof *c->kslot +
           c->cap_tkeys * sizeof *c->tkeys;
}

static void rehash(struct scr_cells *c)
{
    free(c->slot);
    c->n_slots *= 2;
    c->slot = kp_xcalloc(c->n_slots, sizeof *c->slot);
    for (size_t i = 0; i < c->n_rows; i++) {
        size_t k = key_hash(c->rows[i]->unit, c->rows[i]->period) & (c->n_slots - 1);
        while (c->slot[k])
            k = (k + 1) & (c->n_slots - 1);
        c->slot[k] = i + 1;
    }
}

static void key_rehash(struct scr_cells *c)
{
    free(c->kslot);
    c->n_kslots *= 2;
    c->kslot = kp_xcalloc(c->n_kslots, sizeof *c->kslot);
    for (size_t i = 0; i < c->n_keys; i++) {
        size_t k = key_hash(c->keys[i].bucket, c->keys[i].period) & (c->n_kslots - 1);
        while (c->kslot[k])
            k = (k + 1) & (c->n_kslots - 1);
        c->kslot[k] = i + 1;
    }
}

/* The index of log key (period, bucket); created (no log row) when absent and `create`, else
 * -1. period is shorter than PERIOD_MAX. */
static long key_find(struct scr_cells *c, size_t bucket, const char *period, bool create)
{
    size_t k = key_hash(bucket, period) & (c->n_kslots - 1);
    for (; c->kslot[k]; k = (k + 1) & (c->n_kslots - 1)) {
        const struct log_key *e = &c->keys[c->kslot[k] - 1];
        if (e->bucket == bucket && !strcmp(e->period, period))
            return (long)(c->kslot[k] - 1);
    }
    if (!create)
        return -1;
    if (c->n_keys == c->cap_keys) {
        c->cap_keys = c->cap_keys ? 2 * c->cap_keys : 64;
        c->keys = kp_xrealloc(c->keys, c->cap_keys * sizeof *c->keys);
    }
    struct log_key *e = &c->keys[c->n_keys];
    *e = (struct log_key){.bucket = (uint32_t)bucket};
    snprintf(e->period, sizeof e->period, "%s", period);
    c->kslot[k] = ++c->n_keys;
    if (2 * c->n_keys > c->n_kslots)
        key_rehash(c);
    return (long)(c->n_keys - 1);
}

/* The log bucket of a unit: its log rows are shared with the units of the same bucket. */
size_t scr__cells_log_units = 16;

static size_t unit_bucket(size_t unit)
{
    return scr__cells_log_units ? unit / scr__cells_log_units : unit;
}

/* The row of (unit, period), created empty (no cell) when absent. NULL for a period longer
 * than any PROTOCOL.md period (cannot happen: the engine validated it). */
static struct cell_row *row_get(struct scr_cells *c, size_t unit, const char *period)
{
    size_t plen = strlen(period);
    if (plen >= PERIOD_MAX)
        return NULL;
    size_t k = key_hash(unit, period) & (c->n_slots - 1);
    for (; c->slot[k]; k = (k + 1) & (c->n_slots - 1)) {
        struct cell_row *r = c->rows[c->slot[k] - 1];
        if (r->unit == unit && !strcmp(r->period, period))
            return r;
    }
    size_t n = c->ncells;
    struct cell_row *r = kp_xcalloc(1, sizeof *r + n * sizeof *r->upd + c->nparts);
    r->unit = unit;
    memcpy(r->period, period, plen + 1);
    r->key = (uint32_t)key_find(c, unit_bucket(unit), period, true);
    r->upd = (uint32_t *)(r + 1); /* UPD_NONE: calloc's zeros */
    r->part = (uint8_t *)(r->upd + n);
    if (c->n_rows == c->cap_rows) {
        c->cap_rows = c->cap_rows ? 2 * c->cap_rows : 256;
        c->rows = kp_xrealloc(c->rows, c->cap_rows * sizeof *c->rows);
    }
    r->idx = c->n_rows;
    c->rows[c->n_rows++] = r;
    c->slot[k] = c->n_rows;
    if (2 * c->n_rows > c->n_slots)
        rehash(c);
    return r;
}

static bool same(double a, double b)
{
    return a == b || (isnan(a) && isnan(b)); /* PostgreSQL's float8 equality */
}

/* The row, and its key, as touched by the transaction: their state before it is kept for a
 * rollback. */
static void row_begin(struct scr_cells *c, struct cell_row *r)
{
    if (r->touched)
        return;
    r->touched = true;
    for (size_t q = 0; q < c->nparts; q++)
        if (r->part[q] & P_LOGGED)
            r->part[q] |= P_WAS_LOGGED;
    if (c->n_touched == c->cap_touched) {
        c->cap_touched = c->cap_touched ? 2 * c->cap_touched : 256;
        c->touched = kp_xrealloc(c->touched, c->cap_touched * sizeof *c->touched);
    }
    c->touched[c->n_touched++] = r->idx;
    struct log_key *e = &c->keys[r->key];
    if (e->touched)
        return;
    e->touched = true;
    e->nlog_prev = e->nlog;
    if (c->n_tkeys == c->cap_tkeys) {
        c->cap_tkeys = c->cap_tkeys ? 2 * c->cap_tkeys : 64;
        c->tkeys = kp_xrealloc(c->tkeys, c->cap_tkeys * sizeof *c->tkeys);
    }
    c->tkeys[c->n_tkeys++] = r->key;
}

/* Logs cell k's updated_at before this change, and the row as touched by the transaction. */
static void touch(struct scr_cells *c, struct cell_row *r, size_t k)
{
    struct undo u = {(uint32_t)r->idx, (uint32_t)k, r->upd[k]};
    kp_buf_append(&c->undo, &u, sizeof u);
    row_begin(c, r);
}

/* Cell k changed (exists: it has n_obs > 0; else it no longer exists): its updated_at becomes
 * the transaction's, and its part is to be written. `undo`: log it for a rollback. */
static void cell_set(struct scr_cells *c, struct cell_row *r, size_t k, bool exists, bool undo)
{
    if (!exists && (r->upd[k] == UPD_NONE || r->upd[k] == UPD_GONE))
        return;
    if (undo)
        touch(c, r, k);
    r->part[k / PART] |= P_DIRTY;
    r->upd[k] = exists ? UPD_NOW : undo ? UPD_GONE : UPD_NONE;
}

/* ---- the batch's changes -------------------------------------------------------------- */

void scr__cells_on_cell(const struct score_cell_change *ch, void *arg)
{
    struct scr_changes *x = arg;
    struct scr_cells *c = x->cells;
    if (ch->node == 0 || ch->node > c->ncells)
        return; /* the root: its total (with adjustments) is in unit_scores */
    struct cell_row *r = row_get(c, ch->unit, ch->period);
    if (!r)
        return;
    /* The engine reports a cell only when its value, score or n_obs differs from its state at
     * the transaction's begin, which is what was last committed. */
    cell_set(c, r, ch->node - 1, ch->n_obs > 0, true);
    x->n_cells++;
}

/* The undo log: 12 bytes per changed cell (a big group on random cells changes ~60,000; a
 * group at 10,000 obs/s ~4,000), given back after a transaction that grew it beyond this. */
#define UNDO_KEEP ((size_t)128 * 1024)

void scr__cells_begin(struct scr_cells *c)
{
    c->n_touched = 0;
    c->n_tkeys = 0;
    kp_buf_reset(&c->undo);
}

/* Committed: the parts keep P_LOGGED as scr__cells_write left it. Else they and the keys'
 * counts of log rows are as at the transaction's begin. */
static void end_transaction(struct scr_cells *c, bool committed)
{
    c->outstanding = 0;
    for (size_t t = 0; t < c->n_touched; t++) {
        struct cell_row *r = c->rows[c->touched[t]];
        for (size_t q = 0; q < c->nparts; q++)
            r->part[q] =
                committed ? r->part[q] & P_LOGGED : (r->part[q] & P_WAS_LOGGED ? P_LOGGED : 0);
        r->touched = false;
    }
    c->n_touched = 0;
    for (size_t t = 0; t < c->n_tkeys; t++) {
        struct log_key *e = &c->keys[c->tkeys[t]];
        if (!committed)
            e->nlog = e->nlog_prev;
        e->touched = e->fold = e->logged = false;
    }
    c->n_tkeys = 0;
    kp_buf_trim(&c->undo, UNDO_KEEP);
}

void scr__cells_rollback(struct scr_cells *c)
{
    if (!c)
        return;
    const struct undo *u = (const struct undo *)c->undo.data;
    for (size_t i = c->undo.len / sizeof *u; i-- > 0;)
        c->rows[u[i].row]->upd[u[i].cell] = u[i].upd;
    end_transaction(c, false);
}

void scr__cells_commit(struct scr_cells *c, long long now_us)
{
    if (!c)
        return;
    const struct undo *u = (const struct undo *)c->undo.data;
    uint32_t now = UPD_NONE;
    for (size_t i = 0; i < c->undo.len / sizeof *u; i++) {
        uint32_t *upd = &c->rows[u[i].row]->upd[u[i].cell];
        if (*upd == UPD_NOW) {
            if (now == UPD_NONE)
                now = times_add(c, now_us);
            *upd = now;
        } else if (*upd == UPD_GONE) {
            *upd = UPD_NONE;
        }
    }
    end_transaction(c, true);
    times_collect(c, false);
}

/* ---- writing -------------------------------------------------------------------------- */

/* Every pending part whole (upsert) or, when it has no cell left, its deletion; the cells the
 * transaction changed get its now(). A statement per scr__write_rows parts; returns rows written +
 * deleted and the now() in microseconds. Two statements: SQL_WRITE upserts ($1-$9) and
 * SQL_WRITE_DEL also deletes ($10-$12). PostgreSQL plans SQL_WRITE once per session (its
 * generic plan). The two in one statement were planned at every execution (6% of the backend's
 * time at 10,000 obs/s, docs/BENCHMARKS.md round 14): the plan cache found the custom plans, whose
 * DELETE of empty arrays costs nothing, cheaper than the generic one. Parts vanish rarely. */
#define SQL_WRITE_NOW "WITH n AS (SELECT (extract(epoch FROM now()) * 1000000)::int8 AS us), "
#define SQL_WRITE_UPSERT                                                                           \
    "w AS ("                                                                                       \
    " INSERT INTO indicator_cells (scheme, period, unit, base, layout, value, score, n_obs,"       \
    " updated_us)"                                                                                 \
    " SELECT $1, r.p, r.u, r.b, $2::int, ($6::float8[])[r.i:r.i], ($7::float8[])[r.i:r.i],"        \
    " ($8::int4[])[r.i:r.i], array_replace(($9::int8[])[r.i:r.i], -1::int8, n.us)"                 \
    " FROM unnest($3::text[], $4::text[], $5::int[]) WITH ORDINALITY AS r(u, p, b, i), n"          \
    " ON CONFLICT (scheme, period, unit, base) DO UPDATE SET layout = EXCLUDED.layout,"            \
    " value = EXCLUDED.value, score = EXCLUDED.score, n_obs = EXCLUDED.n_obs,"                     \
    " updated_us = EXCLUDED.updated_us"                                                            \
    " RETURNING 1) "
static const char SQL_WRITE[] =
    SQL_WRITE_NOW SQL_WRITE_UPSERT "SELECT (SELECT count(*) FROM w), (SELECT us FROM n)";
#define SQL_WRITE_DELETE                                                                           \
    "d AS (DELETE FROM indicator_cells c"                                                          \
    " USING unnest($10::text[], $11::text[], $12::int[]) AS x(u, p, b)"                            \
    " WHERE c.scheme = $1 AND c.period = x.p AND c.unit = x.u AND c.base = x.b"                    \
    " RETURNING 1), "
static const char SQL_WRITE_DEL[] = SQL_WRITE_NOW SQL_WRITE_DELETE SQL_WRITE_UPSERT
    "SELECT (SELECT count(*) FROM d) + (SELECT count(*) FROM w), (SELECT us FROM n)";

/* The log (migration 009): per log key (period, bucket) the transaction changed and does not
 * fold, one row of the cells it changed, as flat arrays: row j's units are elements
 * uo_j .. uo_j + uk_j - 1 of $9 ($5, $6), its cells elements o_j .. o_j + k_j - 1 of $10 to $14
 * ($7, $8), each cell's unit ($10) an index into the row's units (from 1). A group of 300
 * observations on random cells at 10,000 obs/s writes ~75 such rows of ~45 cells. */
static const char SQL_LOG[] =
    "WITH n AS (SELECT (extract(epoch FROM now()) * 1000000)::int8 AS us), "
    "w AS (INSERT INTO indicator_cell_log (scheme, period, bucket, layout, units, u, cell, value,"
    " score, n_obs, updated_us)"
    " SELECT $1, r.p, r.b, $2::int, ($9::text[])[r.uo:r.uo + r.uk - 1],"
    " ($10::int4[])[r.o:r.o + r.k - 1], ($11::int4[])[r.o:r.o + r.k - 1],"
    " ($12::float8[])[r.o:r.o + r.k - 1], ($13::float8[])[r.o:r.o + r.k - 1],"
    " ($14::int4[])[r.o:r.o + r.k - 1], n.us"
    " FROM unnest($3::text[], $4::int[], $5::int[], $6::int[], $7::int[], $8::int[])"
    " AS r(p, b, uo, uk, o, k), n"
    " RETURNING 1) "
    "SELECT (SELECT count(*) FROM w), (SELECT us FROM n)";

/* The log rows of the keys whose parts the transaction wrote whole (a fold). */
static const char SQL_FOLD[] =
    "WITH d AS (DELETE FROM indicator_cell_log g USING unnest($2::text[], $3::int[]) AS x(p, b)"
    " WHERE g.scheme = $1 AND g.period = x.p AND g.bucket = x.b RETURNING 1) "
    "SELECT (SELECT count(*) FROM d), (extract(epoch FROM now()) * 1000000)::int8";

size_t scr__cells_log_max = 32;

/* Rows per statement: the binary arrays of a statement take 12 bytes per cell element (a
 * length and the value) and libpq keeps its buffer at the largest message it sent, so an
 * unbounded statement (a big group on random cells: ~8,000 rows, 25 MB of parameters; a
 * sync: the whole scheme) would hold that memory for good. 128 rows: about 0.4 MB, held by the
 * four arrays and again by libpq (512 rows held 3.5 MB between them, which the scorer kept
 * through every later load). A statement of log rows holds at most as many cells. The
 * statements are prepared (kp_pg_send_prepared), so the many statements are not planned each
 * time. (A variable only so that tests can cut writes into many statements.) */
size_t scr__write_rows = 128;

enum wkind {
    W_PARTS, /* SQL_WRITE, SQL_WRITE_DEL */
    W_LOG,   /* SQL_LOG */
    W_FOLD,  /* SQL_FOLD */
};

/* One statement's worth of rows being gathered by scr__cells_write, and how many statements
 * sent before it await their results (one at most, but in a pipeline). */
struct wchunk {
    enum wkind kind;
    int n_up, n_del; /* W_PARTS: parts upserted, deleted; else rows in n_up */
    int n_elem;      /* W_LOG: cells */
    int n_units;     /* W_LOG: units of the rows */
    int sent;        /* statements that await their results (chunk_wait) */
    long long *rows, *now_us;
};

static void chunk_begin(struct scr *s, struct wchunk *w, enum wkind kind)
{
    struct kp_buf *a = s->a;
    w->kind = kind;
    w->n_up = w->n_del = w->n_elem = w->n_units = 0;
    for (int k = SCR_A_IPERIOD; k <= SCR_A_LUCNT; k++)
        kp_pg_array_begin(&a[k]);
    if (kind == W_PARTS) {
        kp_pg_barray_begin(&s->bin[0], KP_PG_FLOAT8, 2);
        kp_pg_barray_begin(&s->bin[1], KP_PG_FLOAT8, 2);
        kp_pg_barray_begin(&s->bin[2], KP_PG_INT4, 2);
        kp_pg_barray_begin(&s->bin[3], KP_PG_INT8, 2);
    } else if (kind == W_LOG) {
        kp_pg_barray_begin(&s->bin[0], KP_PG_INT4, 1); /* cell */
        kp_pg_barray_begin(&s->bin[1], KP_PG_FLOAT8, 1);
        kp_pg_barray_begin(&s->bin[2], KP_PG_FLOAT8, 1);
        kp_pg_barray_begin(&s->bin[3], KP_PG_INT4, 1);
        kp_pg_barray_begin(&s->bin[4], KP_PG_INT4, 1); /* the cell's unit in the row's units */
    }
}

/* Collects the results of the statements sent, in order. Returns 0 or KP_EDB (what is left
 * of a pipeline is then its end's to collect). */
static int chunk_wait(struct scr *s, struct wchunk *w)
{
    while (w->sent > 0) {
        w->sent--;
        struct kp_pg_res *res = NULL;
        if (kp_pg_wait(s->pg, &res)) {
            w->sent = 0;
            return KP_EDB;
        }
        if (kp_pg_res_ntuples(res) == 1) {
            if (w->rows)
                *w->rows += strtoll(kp_pg_res_value(res, 0, 0), NULL, 10);
            *w->now_us = strtoll(kp_pg_res_value(res, 0, 1), NULL, 10); /* one per transaction */
        }
        kp_pg_res_free(&res);
    }
    return 0;
}

/* Sends the gathered statement (when it has a row) once the one before it has answered, or at
 * once in a pipeline, and returns without waiting: the server runs it while the caller gathers
 * the next (docs/BENCHMARKS.md rounds 12 and 19). libpq has copied the parameters when the
 * send returns, so the arrays can be begun again at once. Returns 0 or KP_EDB. */
static int chunk_send(struct scr *s, struct scr_scheme *sch, struct wchunk *w)
{
    struct kp_buf *a = s->a, *bin = s->bin;
    for (int k = SCR_A_IPERIOD; k <= SCR_A_LUCNT; k++)
        kp_pg_array_end(&a[k]);
    if (w->n_up == 0 && w->n_del == 0)
        return 0;
    char layout[24];
    snprintf(layout, sizeof layout, "%d", sch->layout);
    const char *sql, *p[14] = {sch->id, layout};
    int np, len[14] = {0}, fmt[14] = {0};
    if (w->kind == W_FOLD) {
        sql = SQL_FOLD;
        np = 3;
        p[1] = kp_buf_cstr(&a[SCR_A_IDPERIOD]);
        p[2] = kp_buf_cstr(&a[SCR_A_LBUCKET]);
    } else if (w->kind == W_LOG) {
        sql = SQL_LOG;
        np = 14;
        p[2] = kp_buf_cstr(&a[SCR_A_IPERIOD]);
        p[3] = kp_buf_cstr(&a[SCR_A_LBUCKET]);
        p[4] = kp_buf_cstr(&a[SCR_A_LUOFF]);
        p[5] = kp_buf_cstr(&a[SCR_A_LUCNT]);
        p[6] = kp_buf_cstr(&a[SCR_A_IBASE]);  /* the cells' offsets */
        p[7] = kp_buf_cstr(&a[SCR_A_IDBASE]); /* and counts */
        p[8] = kp_buf_cstr(&a[SCR_A_IUNIT]);
        static const int order[5] = {4, 0, 1, 2, 3}; /* u, cell, value, score, n_obs */
        for (int k = 0; k < 5; k++) {
            struct kp_buf *x = &bin[order[k]];
            kp_pg_barray_end(x, &w->n_elem);
            p[9 + k] = (const char *)x->data;
            len[9 + k] = (int)x->len;
            fmt[9 + k] = 1;
        }
    } else {
        bool del = w->n_del > 0;
        sql = del ? SQL_WRITE_DEL : SQL_WRITE;
        np = del ? 12 : 9;
        int dims[2] = {w->n_up, PART};
        p[2] = kp_buf_cstr(&a[SCR_A_IUNIT]);
        p[3] = kp_buf_cstr(&a[SCR_A_IPERIOD]);
        p[4] = kp_buf_cstr(&a[SCR_A_IBASE]);
        for (int k = 0; k < 4; k++) {
            kp_pg_barray_end(&bin[k], dims);
            p[5 + k] = w->n_up ? (const char *)bin[k].data : NULL; /* NULL: no row to upsert */
            len[5 + k] = (int)bin[k].len;
            fmt[5 + k] = 1;
        }
        p[9] = kp_buf_cstr(&a[SCR_A_IDUNIT]);
        p[10] = kp_buf_cstr(&a[SCR_A_IDPERIOD]);
        p[11] = kp_buf_cstr(&a[SCR_A_IDBASE]);
    }
    if ((!kp_pg_in_pipeline(s->pg) && chunk_wait(s, w)) ||
        kp_pg_send_prepared(s->pg, sql, np, p, len, fmt))
        return KP_EDB;
    w->sent++;
    return 0;
}

/* Sends the chunk when it holds a statement's worth, and begins the next of its kind. */
static int chunk_room(struct scr *s, struct scr_scheme *sch, struct wchunk *w)
{
    if ((size_t)(w->n_up + w->n_del) < scr__write_rows &&
        (size_t)w->n_elem < scr__write_rows * PART)
        return 0;
    enum wkind kind = w->kind;
    if (chunk_send(s, sch, w))
        return KP_EDB;
    chunk_begin(s, w, kind);
    return 0;
}

/* Whether the transaction folds log key e (index ke): writes whole the logged parts of its
 * rows and deletes its log rows. Once it has scr__cells_log_max log rows, plus up to as many
 * again by a hash of the key: the keys of a quarter, half or year are touched by nearly every
 * group under load, so with one threshold they would all fold in the same group, a spike of
 * whole parts every that many groups. */
static bool key_folds(const struct log_key *e, size_t ke)
{
    uint64_t k = scr__cells_log_max;
    uint64_t spread = k ? ((uint64_t)ke * 0x9E3779B97F4A7C15ULL >> 40) % k : 0;
    return e->nlog >= k + spread;
}

/* The engine's cells of part q of r: cells k0 .. k1 - 1. */
static void part_cells(const struct scr_scheme *sch, const struct cell_row *r, size_t k0, size_t k1,
                       double *value, double *score, uint32_t *n_obs)
{
    if (score_engine_cells(sch->engine, r->unit, r->period, k0 + 1, k1 - k0, value, score, n_obs))
        memset(n_obs, 0, PART * sizeof *n_obs); /* the engine has no cell of (unit, period) */
}

static int32_t n_obs_i4(uint32_t n)
{
    return (int32_t)(n > INT32_MAX ? INT32_MAX : n);
}

/* The parts whole: a sync's P_NEED parts, or the pending parts of the rows that fold. */
static int write_parts(struct scr *s, struct scr_scheme *sch, bool sync, struct wchunk *w)
{
    struct scr_cells *c = sch->cells;
    struct kp_buf *a = s->a;
    struct kp_buf *bv = &s->bin[0], *bs = &s->bin[1], *bn = &s->bin[2], *bu = &s->bin[3];
    size_t n = c->ncells;
    size_t count = sync ? c->n_rows : c->n_touched;
    for (size_t t = 0; t < count; t++) {
        const struct cell_row *r = c->rows[sync ? t : c->touched[t]];
        if (!sync && !c->keys[r->key].fold)
            continue;
        uint8_t want = sync ? P_NEED : P_DIRTY | P_LOGGED;
        const char *unit = score_scheme_unit_code(sch->scheme, r->unit);
        for (size_t q = 0; q < c->nparts; q++) {
            if (!(r->part[q] & want))
                continue;
            if (chunk_room(s, sch, w))
                return KP_EDB;
            size_t k0 = q * PART, k1 = k0 + PART < n ? k0 + PART : n;
            double value[PART], score[PART];
            uint32_t n_obs[PART];
            part_cells(sch, r, k0, k1, value, score, n_obs);
            bool live = false;
            for (size_t k = k0; k < k1 && !live; k++)
                live = n_obs[k - k0] > 0;
            if (!live) {
                kp_pg_array_add(&a[SCR_A_IDUNIT], unit);
                kp_pg_array_add(&a[SCR_A_IDPERIOD], r->period);
                kp_pg_array_add_i64(&a[SCR_A_IDBASE], (long long)k0);
                w->n_del++;
                continue;
            }
            kp_pg_array_add(&a[SCR_A_IUNIT], unit);
            kp_pg_array_add(&a[SCR_A_IPERIOD], r->period);
            kp_pg_array_add_i64(&a[SCR_A_IBASE], (long long)k0);
            w->n_up++;
            /* No NULL in the arrays: PostgreSQL slices an array without NULLs at a computed
             * offset, one with NULLs by walking its null bitmap from the start (quadratic over
             * the rows). A missing value is NaN (the view shows NULL: NULLIF); a cell that does
             * not exist, or pads the last part to PART (the 2-D parameter is rectangular), has
             * n_obs 0 and score and updated_us 0 (the view leaves it out). */
            for (size_t k = k0; k < k0 + PART; k++) {
                bool cell = k < k1 && n_obs[k - k0] > 0;
                int64_t upd = cell && r->upd[k] >= UPD_FIRST ? c->times[r->upd[k]] : WIRE_NOW;
                kp_pg_barray_add_f8(bv, cell ? value[k - k0] : NAN);
                kp_pg_barray_add_f8(bs, cell ? score[k - k0] : 0);
                kp_pg_barray_add_i4(bn, cell ? n_obs_i4(n_obs[k - k0]) : 0);
                kp_pg_barray_add_i8(bu, cell ? upd : 0);
            }
        }
    }
    return chunk_send(s, sch, w);
}

/* The touched rows by log key, then unit: a key's rows are adjacent. */
struct torder {
    uint32_t key;
    size_t unit, idx;
};

static int torder_cmp(const void *x, const void *y)
{
    const struct torder *a = x, *b = y;
    if (a->key != b->key)
        return a->key < b->key ? -1 : 1;
    return a->unit < b->unit ? -1 : a->unit > b->unit;
}

static void order_touched(struct scr_cells *c)
{
    struct torder *o = kp_xmalloc((c->n_touched ? c->n_touched : 1) * sizeof *o);
    for (size_t t = 0; t < c->n_touched; t++) {
        const struct cell_row *r = c->rows[c->touched[t]];
        o[t] = (struct torder){r->key, r->unit, r->idx};
    }
    qsort(o, c->n_touched, sizeof *o, torder_cmp);
    for (size_t t = 0; t < c->n_touched; t++)
        c->touched[t] = o[t].idx;
    free(o);
}

/* Cells per log row: a key's cells of one transaction go in rows of at most this many, so
 * that a row (28 bytes a cell, and its units' codes) stays within a page and is stored as it is,
 * neither compressed nor moved to TOAST (toast_tuple_target, migration 009). A group of 8,000
 * observations on random cells changes ~5,000 cells of a year's bucket. (A variable for
 * tests.) */
size_t scr__cells_log_row_cells = 240;

/* The log row being gathered by write_log: its key, its first cell among the statement's, its
 * units, and whether the unit being added is among them yet. */
struct lrow {
    struct log_key *e;
    int first, n_units;
    bool unit_in;
};

/* Ends the row (when it has a cell): its period, bucket and the slices of its units and cells. */
static void lrow_end(struct scr *s, struct wchunk *w, struct lrow *lr)
{
    struct kp_buf *a = s->a;
    if (w->n_elem == lr->first)
        return;
    kp_pg_array_add(&a[SCR_A_IPERIOD], lr->e->period);
    kp_pg_array_add_i64(&a[SCR_A_LBUCKET], (long long)lr->e->bucket);
    kp_pg_array_add_i64(&a[SCR_A_LUOFF], (long long)w->n_units + 1);
    kp_pg_array_add_i64(&a[SCR_A_LUCNT], (long long)lr->n_units);
    kp_pg_array_add_i64(&a[SCR_A_IBASE], (long long)lr->first + 1);
    kp_pg_array_add_i64(&a[SCR_A_IDBASE], (long long)(w->n_elem - lr->first));
    w->n_units += lr->n_units;
    w->n_up++;
    lr->e->logged = true;
}

/* Begins a row of key e (sending the statement first when it is full). 0 or KP_EDB. */
static int lrow_begin(struct scr *s, struct scr_scheme *sch, struct wchunk *w, struct lrow *lr,
                      struct log_key *e)
{
    if (chunk_room(s, sch, w))
        return KP_EDB;
    *lr = (struct lrow){.e = e, .first = w->n_elem};
    return 0;
}

/* A log row (or, past scr__cells_log_row_cells, rows) per touched key that does not fold: the
 * cells the transaction changed (UPD_NOW, or UPD_GONE with n_obs 0) of its rows. */
static int write_log(struct scr *s, struct scr_scheme *sch, struct wchunk *w)
{
    struct scr_cells *c = sch->cells;
    struct kp_buf *a = s->a;
    size_t n = c->ncells;
    order_touched(c);
    for (size_t t = 0; t < c->n_touched;) {
        struct log_key *e = &c->keys[c->rows[c->touched[t]]->key];
        if (e->fold) {
            t++;
            continue;
        }
        struct lrow lr;
        if (lrow_begin(s, sch, w, &lr, e))
            return KP_EDB;
        for (; t < c->n_touched && &c->keys[c->rows[c->touched[t]]->key] == e; t++) {
            const struct cell_row *r = c->rows[c->touched[t]];
            const char *unit = score_scheme_unit_code(sch->scheme, r->unit);
            lr.unit_in = false;
            for (size_t q = 0; q < c->nparts; q++) {
                if (!(r->part[q] & P_DIRTY))
                    continue;
                size_t k0 = q * PART, k1 = k0 + PART < n ? k0 + PART : n;
                double value[PART], score[PART];
                uint32_t n_obs[PART];
                part_cells(sch, r, k0, k1, value, score, n_obs);
                for (size_t k = k0; k < k1; k++) {
                    if (r->upd[k] != UPD_NOW && r->upd[k] != UPD_GONE)
                        continue;
                    if ((size_t)(w->n_elem - lr.first) >= scr__cells_log_row_cells) {
                        lrow_end(s, w, &lr);
                        if (lrow_begin(s, sch, w, &lr, e))
                            return KP_EDB;
                    }
                    if (!lr.unit_in) {
                        kp_pg_array_add(&a[SCR_A_IUNIT], unit);
                        lr.n_units++;
                        lr.unit_in = true;
                    }
                    bool cell = n_obs[k - k0] > 0;
                    kp_pg_barray_add_i4(&s->bin[0], (int)k);
                    kp_pg_barray_add_f8(&s->bin[1], cell ? value[k - k0] : NAN);
                    kp_pg_barray_add_f8(&s->bin[2], cell ? score[k - k0] : 0);
                    kp_pg_barray_add_i4(&s->bin[3], cell ? n_obs_i4(n_obs[k - k0]) : 0);
                    kp_pg_barray_add_i4(&s->bin[4], lr.n_units);
                    w->n_elem++;
                }
            }
        }
        lrow_end(s, w, &lr);
    }
    return chunk_send(s, sch, w);
}

/* The log rows of the keys that fold. */
static int write_fold(struct scr *s, struct scr_scheme *sch, struct wchunk *w)
{
    struct scr_cells *c = sch->cells;
    struct kp_buf *a = s->a;
    for (size_t t = 0; t < c->n_tkeys; t++) {
        const struct log_key *e = &c->keys[c->tkeys[t]];
        if (!e->fold || e->nlog == 0)
            continue;
        if (chunk_room(s, sch, w))
            return KP_EDB;
        kp_pg_array_add(&a[SCR_A_IDPERIOD], e->period);
        kp_pg_array_add_i64(&a[SCR_A_LBUCKET], (long long)e->bucket);
        w->n_up++;
    }
    return chunk_send(s, sch, w);
}

/* Marks the touched keys that fold, and begins (for a rollback) every row of theirs, touched or
 * not: a fold writes whatever parts of the key's rows its log rows held. */
static void mark_folds(struct scr_cells *c)
{
    bool any = false;
    for (size_t t = 0; t < c->n_tkeys; t++) {
        struct log_key *e = &c->keys[c->tkeys[t]];
        e->fold = key_folds(e, c->tkeys[t]);
        any = any || e->fold;
    }
    if (!any)
        return;
    for (size_t i = 0; i < c->n_rows; i++) {
        struct cell_row *r = c->rows[i];
        if (!r->touched && c->keys[r->key].fold)
            for (size_t q = 0; q < c->nparts; q++)
                if (r->part[q] & P_LOGGED) {
                    row_begin(c, r);
                    break;
                }
    }
}

int scr__cells_write(struct scr *s, struct scr_scheme *sch, bool sync, long long *rows,
                     long long *now_us)
{
    struct scr_cells *c = sch->cells;
    struct wchunk w = {.rows = rows, .now_us = now_us};
    *now_us = 0;
    if (!sync)
        mark_folds(c);
    chunk_begin(s, &w, W_PARTS);
    if (write_parts(s, sch, sync, &w))
        return KP_EDB;
    if (!sync) {
        chunk_begin(s, &w, W_LOG);
        if (write_log(s, sch, &w))
            return KP_EDB;
        chunk_begin(s, &w, W_FOLD);
        if (write_fold(s, sch, &w))
            return KP_EDB;
        /* What the rows and keys are once this commits (a rollback restores them:
         * end_transaction). */
        for (size_t t = 0; t < c->n_touched; t++) {
            struct cell_row *r = c->rows[c->touched[t]];
            bool fold = c->keys[r->key].fold;
            for (size_t q = 0; q < c->nparts; q++)
                if (fold)
                    r->part[q] &= (uint8_t)~P_LOGGED;
                else if (r->part[q] & P_DIRTY)
                    r->part[q] |= P_LOGGED;
        }
        for (size_t t = 0; t < c->n_tkeys; t++) {
            struct log_key *e = &c->keys[c->tkeys[t]];
            if (e->fold)
                e->nlog = 0;
            else if (e->logged && e->nlog < UINT16_MAX)
                e->nlog++;
        }
    }
    if (kp_pg_in_pipeline(s->pg)) { /* the caller sends more before anything is collected */
        c->outstanding = w.sent;
        return 0;
    }
    return chunk_wait(s, &w);
}

int scr__cells_collect(struct scr *s, struct scr_scheme *sch, long long *rows, long long *now_us)
{
    struct wchunk w = {.rows = rows, .now_us = now_us, .sent = sch->cells->outstanding};
    sch->cells->outstanding = 0;
    return chunk_wait(s, &w);
}

/* ---- sync after a replay -------------------------------------------------------------- */

/* Every existing cell of the scheme, by code, whatever layout and parts its row was written
 * with, its latest log entry winning (the view's DISTINCT ON). The third column: a part's row
 * in this layout and of PART cells, or a log row in this layout; the last: the entry is the
 * log's (then also when its n_obs is 0: a cell the log deleted from its part). */
static const char SQL_READ[] =
    "SELECT a.unit, a.period, a.inl, a.base, a.indicator, NULLIF(a.value, 'NaN'), a.score,"
    " a.n_obs, a.us, a.seq > 0, a.bucket"
    " FROM (SELECT DISTINCT ON (b.unit, b.period, b.indicator) b.* FROM ("
    "  SELECT c.unit, c.period, c.layout = $2::int AND cardinality(c.n_obs) = $3::int AS inl,"
    "   c.base, t.indicator, t.value, t.score, t.n_obs, t.us, 0::int8 AS seq, -1 AS bucket"
    "   FROM indicator_cells c JOIN indicator_layout l ON l.layout = c.layout"
    "   CROSS JOIN LATERAL unnest(l.codes[c.base + 1:c.base + cardinality(c.n_obs)], c.value,"
    "   c.score, c.n_obs, c.updated_us) AS t(indicator, value, score, n_obs, us)"
    "   WHERE c.scheme = $1 AND t.n_obs > 0"
    "  UNION ALL"
    "  SELECT g.units[t.u], g.period, g.layout = $2::int, -1, l.codes[t.k + 1], t.value,"
    "   t.score, t.n_obs, g.updated_us, g.seq, g.bucket"
    "   FROM indicator_cell_log g JOIN indicator_layout l ON l.layout = g.layout"
    "   CROSS JOIN LATERAL unnest(g.u, g.cell, g.value, g.score, g.n_obs)"
    "   AS t(u, k, value, score, n_obs)"
    "   WHERE g.scheme = $1) b"
    " ORDER BY b.unit, b.period, b.indicator, b.seq DESC) a"
    " WHERE a.n_obs > 0 OR a.seq > 0";

/* The log rows of each key. */
static const char SQL_LOG_COUNT[] =
    "SELECT period, bucket, count(*) FROM indicator_cell_log WHERE scheme = $1 GROUP BY 1, 2";

/* Parts of the scheme the engine does not hold (a scheme file that dropped a unit, rows written
 * by hand, parts of another size) go, so the database equals the engine. */
static const char SQL_STALE[] =
    "DELETE FROM indicator_cells c WHERE c.scheme = $1 AND NOT EXISTS ("
    " SELECT 1 FROM unnest($2::text[], $3::text[], $4::int[]) AS t(u, p, b)"
    " WHERE t.u = c.unit AND t.p = c.period AND t.b = c.base)";

/* So do the log rows of every key but those the copy keeps (the others are folded or not the
 * engine's). */
static const char SQL_LOG_STALE[] =
    "DELETE FROM indicator_cell_log g WHERE g.scheme = $1 AND NOT EXISTS ("
    " SELECT 1 FROM unnest($2::text[], $3::int[]) AS t(p, b)"
    " WHERE t.p = g.period AND t.b = g.bucket)";

static void on_engine_cell(const struct score_cell_change *ch, void *arg)
{
    struct scr_cells *c = arg;
    if (ch->node == 0 || ch->node > c->ncells || ch->n_obs == 0)
        return;
    struct cell_row *r = row_get(c, ch->unit, ch->period);
    if (r)
        cell_set(c, r, ch->node - 1, true, false);
}

static double num(const struct kp_pg_res *res, int i, int col)
{
    return kp_pg_res_isnull(res, i, col) ? NAN : strtod(kp_pg_res_value(res, i, col), NULL);
}

static bool part_live(const struct scr_cells *c, const struct cell_row *r, size_t q)
{
    size_t k1 = (q + 1) * PART < c->ncells ? (q + 1) * PART : c->ncells;
    for (size_t k = q * PART; k < k1; k++)
        if (r->upd[k] != UPD_NONE)
            return true;
    return false;
}

/* Compares the database's cells (SQL_READ) with the copy's: a cell equal to the engine's keeps
 * its updated_at; its part is marked P_DIFFERS when a cell differs, is not the engine's, or
 * lies in a row of another layout, and P_LOGGED when the log has one of its cells. */
static void sync_read(struct scr_cells *c, struct scr_scheme *sch, const struct kp_pg_res *res)
{
    const struct score_scheme *sc = sch->scheme;
    int nt = kp_pg_res_ntuples(res);
    for (int i = 0; i < nt; i++) {
        long u = score_scheme_unit_find(sc, kp_pg_res_value(res, i, 0));
        long node = score_scheme_node_find(sc, kp_pg_res_value(res, i, 4));
        const char *period = kp_pg_res_value(res, i, 1);
        bool logged = !strcmp(kp_pg_res_value(res, i, 9), "t");
        if (u < 0 || strlen(period) >= PERIOD_MAX) {
            /* not a row of the engine: the stale deletes remove its parts; a log row may
             * share it with units of the engine, so every logged key folds */
            if (logged)
                c->sync_all = true;
            continue;
        }
        struct cell_row *r = row_get(c, (size_t)u, period); /* created empty when not held */
        if (logged && strtoll(kp_pg_res_value(res, i, 10), NULL, 10) != c->keys[r->key].bucket)
            c->sync_all = true; /* a log row of other buckets (a scheme with other units) */
        bool in_layout = !strcmp(kp_pg_res_value(res, i, 2), "t");
        size_t k = node > 0 ? (size_t)node - 1 : c->ncells;
        if (k >= c->ncells) {
            if (logged) /* the log names a cell this scheme does not have */
                c->keys[r->key].sync_fold = true;
            continue; /* a base row's: that row is in another layout, and rewritten */
        }
        size_t q = k / PART;
        long long n_obs = strtoll(kp_pg_res_value(res, i, 7), NULL, 10);
        long long base = strtoll(kp_pg_res_value(res, i, 3), NULL, 10);
        if (logged)
            r->part[q] |= in_layout ? P_LOGGED : P_LOGGED | P_DIFFERS;
        else if (!in_layout || base != (long long)(q * PART))
            r->part[q] |= P_DIFFERS; /* a cell of this part in a row of another layout */
        if (n_obs <= 0) {            /* deleted by the log: its part's row may still hold it */
            if (r->upd[k] != UPD_NONE)
                r->part[q] |= P_DIFFERS;
            continue;
        }
        double v = num(res, i, 5), sv = num(res, i, 6);
        struct score_cell_change e;
        if (r->upd[k] == UPD_NOW &&
            !score_engine_cell(sch->engine, (size_t)u, (size_t)node, period, &e) &&
            same(e.value, v) && same(e.score, sv) && n_obs_i4(e.n_obs) == n_obs &&
            !kp_pg_res_isnull(res, i, 8))
            r->upd[k] = times_add(c, strtoll(kp_pg_res_value(res, i, 8), NULL, 10)); /* kept */
        else
            r->part[q] |= P_DIFFERS; /* differs, or a cell the engine does not hold */
    }
}

/* Whether part q of r is to be written: a cell differs, or lacks (still UPD_NOW). */
static bool part_needs(const struct scr_cells *c, const struct cell_row *r, size_t q)
{
    if (r->part[q] & P_DIFFERS)
        return true;
    size_t k1 = (q + 1) * PART < c->ncells ? (q + 1) * PART : c->ncells;
    for (size_t k = q * PART; k < k1; k++)
        if (r->upd[k] == UPD_NOW)
            return true;
    return false;
}

int scr__cells_sync(struct scr *s, struct scr_scheme *sch, long long *rows)
{
    const struct score_scheme *sc = sch->scheme;
    size_t nn = score_scheme_n_nodes(sc);
    struct scr_cells *c = cells_new(nn > 0 ? nn - 1 : 0);
    score_engine_foreach_cell(sch->engine, on_engine_cell, c);
    for (size_t i = 0; i < c->n_rows; i++)
        memset(c->rows[i]->part, 0, c->nparts);
    char layout[24], part[24];
    snprintf(layout, sizeof layout, "%d", sch->layout);
    snprintf(part, sizeof part, "%d", PART);
    const char *p[3] = {sch->id, layout, part};
    struct kp_pg_res *res = NULL;
    if (kp_pg_exec(s->pg, SQL_READ, 3, p, &res))
        goto fail;
    sync_read(c, sch, res);
    kp_pg_res_free(&res);
    if (kp_pg_exec(s->pg, SQL_LOG_COUNT, 1, p, &res))
        goto fail;
    for (int i = 0; i < kp_pg_res_ntuples(res); i++) {
        const char *period = kp_pg_res_value(res, i, 0);
        long long b = strtoll(kp_pg_res_value(res, i, 1), NULL, 10);
        long long n = strtoll(kp_pg_res_value(res, i, 2), NULL, 10);
        long ke =
            b < 0 || strlen(period) >= PERIOD_MAX ? -1 : key_find(c, (size_t)b, period, false);
        if (ke >= 0)
            c->keys[ke].nlog = (uint16_t)(n > UINT16_MAX ? UINT16_MAX : n);
    }
    kp_pg_res_free(&res);
    /* A part the engine holds is written when it needs it (part_needs). A key with log rows
     * keeps them unless a part of its rows is written (a log entry would hide it), its log
     * names a cell outside this layout or the log is not in this scheme's buckets: then it
     * folds, writing every part the log had a cell of. Parts of the database only (no live
     * cell here) go with the stale delete. */
    for (size_t i = 0; i < c->n_rows; i++) {
        struct cell_row *r = c->rows[i];
        struct log_key *e = &c->keys[r->key];
        for (size_t q = 0; q < c->nparts; q++) {
            e->logged = e->logged || (r->part[q] & P_LOGGED);
            e->sync_fold = e->sync_fold || (part_live(c, r, q) && part_needs(c, r, q));
        }
    }
    for (size_t ke = 0; ke < c->n_keys; ke++) {
        struct log_key *e = &c->keys[ke];
        e->fold = (e->sync_fold || c->sync_all) && (e->logged || e->nlog > 0);
    }
    struct kp_buf *a = s->a;
    for (int k = SCR_A_IPERIOD; k <= SCR_A_LUCNT; k++)
        kp_pg_array_begin(&a[k]);
    for (size_t i = 0; i < c->n_rows; i++) {
        struct cell_row *r = c->rows[i];
        bool fold = c->keys[r->key].fold;
        for (size_t q = 0; q < c->nparts; q++) {
            uint8_t f = r->part[q];
            bool live = part_live(c, r, q), need = live && part_needs(c, r, q);
            r->part[q] = fold ? 0 : f & P_LOGGED;
            if (!live)
                continue;
            kp_pg_array_add(&a[SCR_A_IDUNIT], score_scheme_unit_code(sc, r->unit));
            kp_pg_array_add(&a[SCR_A_IDPERIOD], r->period);
            kp_pg_array_add_i64(&a[SCR_A_IDBASE], (long long)(q * PART));
            if (need || (fold && (f & P_LOGGED)))
                r->part[q] |= P_NEED;
        }
    }
    for (size_t ke = 0; ke < c->n_keys; ke++) {
        struct log_key *e = &c->keys[ke];
        if (e->fold)
            e->nlog = 0;
        if (e->nlog > 0) {
            kp_pg_array_add(&a[SCR_A_IPERIOD], e->period);
            kp_pg_array_add_i64(&a[SCR_A_LBUCKET], (long long)e->bucket);
        }
        e->fold = e->logged = e->sync_fold = false;
    }
    c->sync_all = false;
    for (int k = SCR_A_IPERIOD; k <= SCR_A_LUCNT; k++)
        kp_pg_array_end(&a[k]);
    const char *p_stale[4] = {sch->id, kp_buf_cstr(&a[SCR_A_IDUNIT]),
                              kp_buf_cstr(&a[SCR_A_IDPERIOD]), kp_buf_cstr(&a[SCR_A_IDBASE])};
    const char *p_log[3] = {sch->id, kp_buf_cstr(&a[SCR_A_IPERIOD]),
                            kp_buf_cstr(&a[SCR_A_LBUCKET])};
    if (kp_pg_exec(s->pg, SQL_STALE, 4, p_stale, &res))
        goto fail;
    if (rows)
        *rows += kp_pg_res_affected(res);
    kp_pg_res_free(&res);
    if (kp_pg_exec(s->pg, SQL_LOG_STALE, 3, p_log, &res))
        goto fail;
    if (rows)
        *rows += kp_pg_res_affected(res);
    kp_pg_res_free(&res);
    /* Written from the new copy; the current one stays until the caller's COMMIT. */
    struct scr_cells *old = sch->cells;
    sch->cells = c;
    long long now_us = 0;
    int rc = scr__cells_write(s, sch, true, rows, &now_us);
    sch->cells = old;
    if (rc)
        goto fail;
    scr__cells_destroy(&sch->cells_next);
    sch->cells_next = c;
    sch->cells_next_now = now_us;
    return 0;
fail:
    kp_pg_res_free(&res);
    scr__cells_destroy(&c);
    return KP_EDB;
}

void scr__cells_sync_done(struct scr_scheme *sch, bool committed)
{
    struct scr_cells *c = sch->cells_next;
    sch->cells_next = NULL;
    if (!c)
        return;
    if (!committed) {
        scr__cells_destroy(&c);
        return;
    }
    uint32_t now = UPD_NONE;
    for (size_t i = 0; i < c->n_rows; i++) {
        struct cell_row *r = c->rows[i];
        for (size_t k = 0; k < c->ncells; k++)
            if (r->upd[k] == UPD_NOW) {
                if (now == UPD_NONE)
                    now = times_add(c, sch->cells_next_now);
                r->upd[k] = now;
            }
        for (size_t q = 0; q < c->nparts; q++)
            r->part[q] &= P_LOGGED;
    }
    times_collect(c, true); /* one entry per cell read back: each timestamp once */
    scr__cells_destroy(&sch->cells);
    sch->cells = c;
}
