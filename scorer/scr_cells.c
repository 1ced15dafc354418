/*
 * scr_cells: the scorer's copy of a scheme's indicator_cells rows (migration 005), and their
 * writes. indicator_cells holds one row per (scheme, period, unit) with parallel arrays over
 * the scheme's nodes 1..n-1 (its indicator_layout); kp_indicator_score unnests them. A batch
 * changes a few cells of a few hundred such rows; the scorer keeps every row as last committed
 * (values, scores, n_obs and each cell's updated_at), applies the engine's changed cells to it
 * and writes each touched row whole: one upsert of a few hundred rows per batch instead of one
 * row per changed cell (issue 9). The copy also decides, per cell, whether updated_at moves
 * (only when value, score or n_obs changed, as the IS DISTINCT FROM of the old upsert did).
 * The arrays go as binary parameters (kp_pg_barray_*): no printf of doubles here, no float8in
 * in the backend. A batch's changes are undone with the engine's when its transaction fails;
 * a replay rebuilds the copy from the engine and the database (scr__cells_sync).
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

#define UPD_NOW    (-1LL)    /* changed in this transaction: the server's now() */
#define UPD_NONE   INT64_MIN /* no cell */
#define PERIOD_MAX 32

struct cell_row {
    size_t unit;
    char period[PERIOD_MAX];
    size_t n_live;  /* cells with n_obs > 0; 0: no row in the database */
    bool touched;   /* written by the current transaction */
    bool need;      /* sync: to be written */
    bool in_layout; /* sync: the database row is in the scorer's layout */
    bool differs;   /* sync: a database cell differs from the engine's or is not the engine's */
    double *value;  /* NAN: NULL */
    double *score;  /* for cells with n_obs > 0 */
    int32_t *n_obs; /* 0: the cell does not exist */
    int64_t *upd;   /* µs since the Unix epoch, UPD_NOW or UPD_NONE */
};

struct scr_cells {
    size_t ncells; /* nodes of the scheme but the root: cell k is node k + 1 */
    struct cell_row **rows;
    size_t n_rows, cap_rows;
    size_t *slot; /* open addressing over rows (index + 1; 0 empty) */
    size_t n_slots;
    /* the current transaction: touched rows and their state before it */
    size_t *touched;
    size_t n_touched, cap_touched;
    struct kp_buf undo;
    size_t n_changed; /* cells whose value, score or n_obs changed */
};

static size_t row_bytes(size_t ncells)
{
    return ncells * (2 * sizeof(double) + sizeof(int32_t) + sizeof(int64_t));
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
    c->n_slots = 64;
    c->slot = kp_xcalloc(c->n_slots, sizeof *c->slot);
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
    free(c->touched);
    kp_buf_fini(&c->undo);
    free(c);
    *cp = NULL;
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
    struct cell_row *r = kp_xcalloc(1, sizeof *r + row_bytes(n));
    r->unit = unit;
    memcpy(r->period, period, plen + 1);
    r->value = (double *)(r + 1);
    r->score = r->value + n;
    r->upd = (int64_t *)(r->score + n);
    r->n_obs = (int32_t *)(r->upd + n);
    for (size_t i = 0; i < n; i++) {
        r->value[i] = NAN;
        r->score[i] = NAN;
        r->upd[i] = UPD_NONE;
    }
    if (c->n_rows == c->cap_rows) {
        c->cap_rows = c->cap_rows ? 2 * c->cap_rows : 256;
        c->rows = kp_xrealloc(c->rows, c->cap_rows * sizeof *c->rows);
    }
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

/* Remembers the row's state before the transaction's first change to it. */
static void touch(struct scr_cells *c, struct cell_row *r)
{
    if (r->touched)
        return;
    r->touched = true;
    if (c->n_touched == c->cap_touched) {
        c->cap_touched = c->cap_touched ? 2 * c->cap_touched : 256;
        c->touched = kp_xrealloc(c->touched, c->cap_touched * sizeof *c->touched);
    }
    /* rows are never removed: the index of r is stable */
    size_t idx = 0;
    size_t k = key_hash(r->unit, r->period) & (c->n_slots - 1);
    for (; c->slot[k]; k = (k + 1) & (c->n_slots - 1))
        if (c->rows[c->slot[k] - 1] == r) {
            idx = c->slot[k] - 1;
            break;
        }
    c->touched[c->n_touched++] = idx;
    kp_buf_append(&c->undo, &r->n_live, sizeof r->n_live);
    kp_buf_append(&c->undo, r->value, row_bytes(c->ncells));
}

/* Applies one cell's state (n_obs == 0: it no longer exists). Returns true when it changed. */
static bool cell_set(struct scr_cells *c, struct cell_row *r, size_t k, double value, double score,
                     uint32_t n_obs, bool undo)
{
    bool exists = r->n_obs[k] > 0;
    if (n_obs == 0) {
        if (!exists)
            return false;
        if (undo)
            touch(c, r);
        r->value[k] = r->score[k] = NAN;
        r->n_obs[k] = 0;
        r->upd[k] = UPD_NONE;
        r->n_live--;
        return true;
    }
    if (exists && same(r->value[k], value) && same(r->score[k], score) &&
        (uint32_t)r->n_obs[k] == n_obs)
        return false;
    if (undo)
        touch(c, r);
    r->value[k] = value;
    r->score[k] = score;
    r->n_obs[k] = (int32_t)(n_obs > INT32_MAX ? INT32_MAX : n_obs);
    r->upd[k] = UPD_NOW;
    if (!exists)
        r->n_live++;
    return true;
}

/* ---- the batch's changes -------------------------------------------------------------- */

void scr__cells_on_cell(const struct score_cell_change *ch, void *arg)
{
    struct scr_changes *x = arg;
    struct scr_cells *c = x->cells;
    if (ch->node == 0 || ch->node > c->ncells)
        return; /* the root: its total (with adjustments) is the unit_score row */
    struct cell_row *r = row_get(c, ch->unit, ch->period);
    if (!r)
        return;
    if (cell_set(c, r, ch->node - 1, ch->value, ch->score, ch->n_obs, true))
        c->n_changed++;
    x->n_cells++;
}

void scr__cells_begin(struct scr_cells *c)
{
    c->n_touched = 0;
    c->n_changed = 0;
    kp_buf_reset(&c->undo);
}

void scr__cells_rollback(struct scr_cells *c)
{
    if (!c)
        return;
    size_t sz = sizeof(size_t) + row_bytes(c->ncells);
    for (size_t t = c->n_touched; t-- > 0;) {
        struct cell_row *r = c->rows[c->touched[t]];
        const uint8_t *u = c->undo.data + t * sz;
        memcpy(&r->n_live, u, sizeof r->n_live);
        memcpy(r->value, u + sizeof(size_t), row_bytes(c->ncells));
        r->touched = false;
    }
    c->n_touched = 0;
    kp_buf_reset(&c->undo);
}

void scr__cells_commit(struct scr_cells *c, long long now_us)
{
    if (!c)
        return;
    for (size_t t = 0; t < c->n_touched; t++) {
        struct cell_row *r = c->rows[c->touched[t]];
        for (size_t k = 0; k < c->ncells; k++)
            if (r->upd[k] == UPD_NOW)
                r->upd[k] = now_us;
        r->touched = false;
    }
    c->n_touched = 0;
    kp_buf_reset(&c->undo);
}

/* ---- writing -------------------------------------------------------------------------- */

/* Every touched row whole (upsert) or, when it has no cell left, its deletion; the cells the
 * transaction changed get its now(). One statement; returns rows written + deleted and the
 * now() in microseconds. */
static const char SQL_WRITE[] =
    "WITH n AS (SELECT (extract(epoch FROM now()) * 1000000)::int8 AS us), "
    "d AS ("
    " DELETE FROM indicator_cells c USING unnest($9::text[], $10::text[]) AS x(u, p)"
    " WHERE c.scheme = $1 AND c.period = x.p AND c.unit = x.u RETURNING 1), "
    "w AS ("
    " INSERT INTO indicator_cells (scheme, period, unit, layout, value, score, n_obs, updated_us)"
    " SELECT $1, r.p, r.u, $2::int, ($5::float8[])[r.i:r.i], ($6::float8[])[r.i:r.i],"
    " ($7::int4[])[r.i:r.i], array_replace(($8::int8[])[r.i:r.i], -1::int8, n.us)"
    " FROM unnest($3::text[], $4::text[]) WITH ORDINALITY AS r(u, p, i), n"
    " ON CONFLICT (scheme, period, unit) DO UPDATE SET layout = EXCLUDED.layout,"
    " value = EXCLUDED.value, score = EXCLUDED.score, n_obs = EXCLUDED.n_obs,"
    " updated_us = EXCLUDED.updated_us"
    " RETURNING 1) "
    "SELECT (SELECT count(*) FROM d) + (SELECT count(*) FROM w), (SELECT us FROM n)";

static bool row_pending(const struct cell_row *r, bool sync)
{
    return sync ? r->need : r->touched;
}

int scr__cells_write(struct scr *s, struct scr_scheme *sch, bool sync, long long *rows,
                     long long *now_us)
{
    struct scr_cells *c = sch->cells;
    struct kp_buf *a = s->a;
    struct kp_buf *bv = &s->bin[0], *bs = &s->bin[1], *bn = &s->bin[2], *bu = &s->bin[3];
    size_t n = c->ncells;
    int n_up = 0, n_del = 0;
    *now_us = 0;
    kp_pg_array_begin(&a[SCR_A_IUNIT]);
    kp_pg_array_begin(&a[SCR_A_IPERIOD]);
    kp_pg_array_begin(&a[SCR_A_IDUNIT]);
    kp_pg_array_begin(&a[SCR_A_IDPERIOD]);
    kp_pg_barray_begin(bv, KP_PG_FLOAT8, 2);
    kp_pg_barray_begin(bs, KP_PG_FLOAT8, 2);
    kp_pg_barray_begin(bn, KP_PG_INT4, 2);
    kp_pg_barray_begin(bu, KP_PG_INT8, 2);
    size_t count = sync ? c->n_rows : c->n_touched;
    for (size_t t = 0; t < count; t++) {
        const struct cell_row *r = c->rows[sync ? t : c->touched[t]];
        if (!row_pending(r, sync))
            continue;
        const char *unit = score_scheme_unit_code(sch->scheme, r->unit);
        if (r->n_live == 0) {
            kp_pg_array_add(&a[SCR_A_IDUNIT], unit);
            kp_pg_array_add(&a[SCR_A_IDPERIOD], r->period);
            n_del++;
            continue;
        }
        kp_pg_array_add(&a[SCR_A_IUNIT], unit);
        kp_pg_array_add(&a[SCR_A_IPERIOD], r->period);
        n_up++;
        /* No NULL in the arrays: PostgreSQL slices an array without NULLs at a computed
         * offset, one with NULLs by walking its null bitmap from the start (quadratic over
         * the rows). A missing value is NaN (the view shows NULL: NULLIF); a cell that does
         * not exist has n_obs 0 and score and updated_us 0 (the view leaves it out). */
        for (size_t k = 0; k < n; k++) {
            bool live = r->n_obs[k] > 0;
            kp_pg_barray_add_f8(bv, live ? r->value[k] : NAN);
            kp_pg_barray_add_f8(bs, live ? r->score[k] : 0);
            kp_pg_barray_add_i4(bn, r->n_obs[k]);
            kp_pg_barray_add_i8(bu, live ? r->upd[k] : 0);
        }
    }
    kp_pg_array_end(&a[SCR_A_IUNIT]);
    kp_pg_array_end(&a[SCR_A_IPERIOD]);
    kp_pg_array_end(&a[SCR_A_IDUNIT]);
    kp_pg_array_end(&a[SCR_A_IDPERIOD]);
    if (n_up == 0 && n_del == 0)
        return 0;
    int dims[2] = {n_up, (int)n};
    kp_pg_barray_end(bv, dims);
    kp_pg_barray_end(bs, dims);
    kp_pg_barray_end(bn, dims);
    kp_pg_barray_end(bu, dims);
    char layout[24];
    snprintf(layout, sizeof layout, "%d", sch->layout);
    const char *p[10] = {sch->id,
                         layout,
                         kp_buf_cstr(&a[SCR_A_IUNIT]),
                         kp_buf_cstr(&a[SCR_A_IPERIOD]),
                         n_up ? (const char *)bv->data : NULL, /* NULL: no row to upsert */
                         n_up ? (const char *)bs->data : NULL,
                         n_up ? (const char *)bn->data : NULL,
                         n_up ? (const char *)bu->data : NULL,
                         kp_buf_cstr(&a[SCR_A_IDUNIT]),
                         kp_buf_cstr(&a[SCR_A_IDPERIOD])};
    int len[10] = {0, 0, 0, 0, (int)bv->len, (int)bs->len, (int)bn->len, (int)bu->len, 0, 0};
    int fmt[10] = {0, 0, 0, 0, 1, 1, 1, 1, 0, 0};
    struct kp_pg_res *res = NULL;
    if (kp_pg_exec_bin(s->pg, SQL_WRITE, 10, p, len, fmt, &res))
        return KP_EDB;
    if (kp_pg_res_ntuples(res) == 1) {
        if (rows)
            *rows += strtoll(kp_pg_res_value(res, 0, 0), NULL, 10);
        *now_us = strtoll(kp_pg_res_value(res, 0, 1), NULL, 10);
    }
    kp_pg_res_free(&res);
    return 0;
}

/* ---- sync after a replay -------------------------------------------------------------- */

/* Every existing cell of the scheme, by code, whatever layout its row was written with. */
static const char SQL_READ[] =
    "SELECT c.unit, c.period, c.layout = $2::int, t.indicator, NULLIF(t.value, 'NaN'), t.score,"
    " t.n_obs, t.us"
    " FROM indicator_cells c JOIN indicator_layout l ON l.layout = c.layout"
    " CROSS JOIN LATERAL unnest(l.codes, c.value, c.score, c.n_obs, c.updated_us)"
    " AS t(indicator, value, score, n_obs, us)"
    " WHERE c.scheme = $1 AND t.n_obs > 0";

/* Rows of the scheme the engine does not hold (a scheme file that dropped a unit, rows written
 * by hand) go, so the database equals the engine. */
static const char SQL_STALE[] = "DELETE FROM indicator_cells c WHERE c.scheme = $1 AND NOT EXISTS ("
                                " SELECT 1 FROM unnest($2::text[], $3::text[]) AS t(u, p)"
                                " WHERE t.u = c.unit AND t.p = c.period)";

static void on_engine_cell(const struct score_cell_change *ch, void *arg)
{
    struct scr_cells *c = arg;
    if (ch->node == 0 || ch->node > c->ncells || ch->n_obs == 0)
        return;
    struct cell_row *r = row_get(c, ch->unit, ch->period);
    if (r)
        (void)cell_set(c, r, ch->node - 1, ch->value, ch->score, ch->n_obs, false);
}

static double num(const struct kp_pg_res *res, int i, int col)
{
    return kp_pg_res_isnull(res, i, col) ? NAN : strtod(kp_pg_res_value(res, i, col), NULL);
}

int scr__cells_sync(struct scr *s, struct scr_scheme *sch, long long *rows)
{
    const struct score_scheme *sc = sch->scheme;
    size_t nn = score_scheme_n_nodes(sc);
    struct scr_cells *c = cells_new(nn > 0 ? nn - 1 : 0);
    score_engine_foreach_cell(sch->engine, on_engine_cell, c);
    char layout[24];
    snprintf(layout, sizeof layout, "%d", sch->layout);
    const char *p[2] = {sch->id, layout};
    struct kp_pg_res *res = NULL;
    if (kp_pg_exec(s->pg, SQL_READ, 2, p, &res)) {
        scr__cells_destroy(&c);
        return KP_EDB;
    }
    int nt = kp_pg_res_ntuples(res);
    for (int i = 0; i < nt; i++) {
        long u = score_scheme_unit_find(sc, kp_pg_res_value(res, i, 0));
        long node = score_scheme_node_find(sc, kp_pg_res_value(res, i, 3));
        const char *period = kp_pg_res_value(res, i, 1);
        if (u < 0 || strlen(period) >= PERIOD_MAX)
            continue; /* not a row of the engine: the stale delete removes it */
        struct cell_row *r = row_get(c, (size_t)u, period); /* created empty when not held */
        if (!strcmp(kp_pg_res_value(res, i, 2), "t"))
            r->in_layout = true;
        size_t k = node > 0 ? (size_t)node - 1 : c->ncells;
        if (k >= c->ncells || r->n_obs[k] == 0) {
            r->differs = true; /* a cell the engine does not hold */
            continue;
        }
        double v = num(res, i, 4), sv = num(res, i, 5);
        long long n_obs = strtoll(kp_pg_res_value(res, i, 6), NULL, 10);
        if (same(r->value[k], v) && same(r->score[k], sv) && r->n_obs[k] == n_obs &&
            !kp_pg_res_isnull(res, i, 7))
            r->upd[k] = strtoll(kp_pg_res_value(res, i, 7), NULL, 10); /* keeps its updated_at */
        else
            r->differs = true;
    }
    kp_pg_res_free(&res);
    /* A row of the engine is written when the database row is missing, in another layout, has
     * a cell that differs or is not the engine's, or lacks one (still UPD_NOW). Rows of the
     * database only (no live cell here) go with the stale delete. */
    struct kp_buf *a = s->a;
    kp_pg_array_begin(&a[SCR_A_IDUNIT]);
    kp_pg_array_begin(&a[SCR_A_IDPERIOD]);
    for (size_t i = 0; i < c->n_rows; i++) {
        struct cell_row *r = c->rows[i];
        r->need = false;
        if (r->n_live == 0)
            continue;
        kp_pg_array_add(&a[SCR_A_IDUNIT], score_scheme_unit_code(sc, r->unit));
        kp_pg_array_add(&a[SCR_A_IDPERIOD], r->period);
        r->need = !r->in_layout || r->differs;
        for (size_t k = 0; k < c->ncells && !r->need; k++)
            if (r->upd[k] == UPD_NOW)
                r->need = true;
    }
    kp_pg_array_end(&a[SCR_A_IDUNIT]);
    kp_pg_array_end(&a[SCR_A_IDPERIOD]);
    const char *p_stale[3] = {sch->id, kp_buf_cstr(&a[SCR_A_IDUNIT]),
                              kp_buf_cstr(&a[SCR_A_IDPERIOD])};
    struct kp_pg_res *dr = NULL;
    if (kp_pg_exec(s->pg, SQL_STALE, 3, p_stale, &dr)) {
        scr__cells_destroy(&c);
        return KP_EDB;
    }
    if (rows)
        *rows += kp_pg_res_affected(dr);
    kp_pg_res_free(&dr);
    /* Written from the new copy; the current one stays until the caller's COMMIT. */
    struct scr_cells *old = sch->cells;
    sch->cells = c;
    long long now_us = 0;
    int rc = scr__cells_write(s, sch, true, rows, &now_us);
    sch->cells = old;
    if (rc) {
        scr__cells_destroy(&c);
        return KP_EDB;
    }
    scr__cells_destroy(&sch->cells_next);
    sch->cells_next = c;
    sch->cells_next_now = now_us;
    return 0;
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
    for (size_t i = 0; i < c->n_rows; i++) {
        struct cell_row *r = c->rows[i];
        for (size_t k = 0; k < c->ncells; k++)
            if (r->upd[k] == UPD_NOW)
                r->upd[k] = sch->cells_next_now;
        r->need = false;
    }
    scr__cells_destroy(&sch->cells);
    sch->cells = c;
}
