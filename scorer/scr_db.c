/*
 * scr_db: the scorer's database steps outside the batch transaction itself: the scheme's
 * reference rows (kp_scheme, kp_group, kp_unit, kp_indicator), the replay that rebuilds an
 * engine from the stored observations so engine and database agree after any restart
 * (ARCHITECTURE.md guarantee 3: scores are a function of the set of latest revisions), and
 * the bulk upsert of changed score rows shared by replay and batches (indicator cells: through
 * scr_cells.c), and the read-back of the event records the engine evicted (scr__db_load_cold).
 * Every statement is a fixed, parameterised one over unnest()ed arrays: a round trip per
 * statement, never per row.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kp_err.h"
#include "kp_log.h"
#include "kp_metrics.h"
#include "kp_pg.h"
#include "kp_time.h"
#include "score_engine.h"
#include "scr_internal.h"

int scr__replay_chunk = 5000;

/* ---- failures ------------------------------------------------------------------------- */

void scr__db_rollback(struct scr *s)
{
    if (kp_pg_ok(s->pg))
        (void)kp_pg_exec(s->pg, "ROLLBACK", 0, NULL, NULL);
}

void scr__db_failed(struct scr *s, const char *what, const char *ctx)
{
    char q[600];
    s->stats.pg_errors++;
    if (s->m_pg_errors)
        kp_counter_inc(s->m_pg_errors);
    bool lost = kp_pg_conn_lost(s->pg);
    KP_WARN("db_error", "%s%sstep=%s sqlstate=%s lost=%s msg=%s", ctx ? ctx : "", ctx ? " " : "",
            what, kp_pg_sqlstate(s->pg)[0] ? kp_pg_sqlstate(s->pg) : "none",
            lost ? "true" : "false", kp_log_q(q, sizeof q, kp_pg_errmsg(s->pg)));
    if (!lost) {
        scr__db_rollback(s);
        lost = kp_pg_conn_lost(s->pg);
    }
    if (lost && s->db_ready) {
        scr__set_ready(s, false);
        scr__db_schedule(s);
    }
}

void scr__state_metrics(struct scr_scheme *sch)
{
    if (!sch->m_state_bytes || !sch->engine)
        return;
    kp_gauge_set(sch->m_state_bytes,
                 (double)(score_engine_bytes(sch->engine) + scr__cells_bytes(sch->cells) +
                          scr__totals_bytes(sch->totals)));
    kp_gauge_set(sch->m_records, (double)score_engine_n_records(sch->engine));
}

/* ---- scheme reference rows ------------------------------------------------------------ */

static const char SQL_SCHEME[] =
    "INSERT INTO kp_scheme (scheme, name, loaded_at) VALUES ($1, $2, now()) "
    "ON CONFLICT (scheme) DO UPDATE SET name = EXCLUDED.name, loaded_at = now()";

static const char SQL_GROUPS[] = "INSERT INTO kp_group (scheme, grp, name) "
                                 "SELECT $1, g, n FROM unnest($2::text[], $3::text[]) AS t(g, n) "
                                 "ON CONFLICT (scheme, grp) DO UPDATE SET name = EXCLUDED.name "
                                 "WHERE kp_group.name IS DISTINCT FROM EXCLUDED.name";

static const char SQL_UNITS[] =
    "INSERT INTO kp_unit (scheme, unit, name, grp) "
    "SELECT $1, u, n, g FROM unnest($2::text[], $3::text[], $4::text[]) AS t(u, n, g) "
    "ON CONFLICT (scheme, unit) DO UPDATE SET name = EXCLUDED.name, grp = EXCLUDED.grp "
    "WHERE (kp_unit.name, kp_unit.grp) IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.grp)";

static const char SQL_INDICATORS[] =
    "INSERT INTO kp_indicator (scheme, indicator, name, parent, is_leaf, method, ord) "
    "SELECT $1, i, n, p, l, m, o "
    "FROM unnest($2::text[], $3::text[], $4::text[], $5::bool[], $6::text[], $7::int[]) "
    "AS t(i, n, p, l, m, o) "
    "ON CONFLICT (scheme, indicator) DO UPDATE SET name = EXCLUDED.name, "
    "parent = EXCLUDED.parent, is_leaf = EXCLUDED.is_leaf, method = EXCLUDED.method, "
    "ord = EXCLUDED.ord "
    "WHERE (kp_indicator.name, kp_indicator.parent, kp_indicator.is_leaf, kp_indicator.method, "
    "kp_indicator.ord) IS DISTINCT FROM "
    "(EXCLUDED.name, EXCLUDED.parent, EXCLUDED.is_leaf, EXCLUDED.method, EXCLUDED.ord)";

/* The effective weight of every node for every unit it applies to (migration 002), so that
 * `kpctl explain` can show a score's formula from the database alone (guarantee 6). */
static const char SQL_WEIGHTS_CLEAR[] = "DELETE FROM indicator_weight WHERE scheme = $1";
static const char SQL_WEIGHTS[] =
    "INSERT INTO indicator_weight (scheme, unit, indicator, weight) "
    "SELECT $1, u, i, w FROM unnest($2::text[], $3::text[], $4::float8[]) AS t(u, i, w)";

static void db_err(struct scr *s, const char *what, char *err, size_t errlen)
{
    snprintf(err, errlen, "%s: %s%s%s", what, kp_pg_sqlstate(s->pg),
             kp_pg_sqlstate(s->pg)[0] ? ": " : "", kp_pg_errmsg(s->pg));
}

/* The layout of the scheme's node order in indicator_cells (migration 005): nodes 1..n-1 as
 * kp_indicator.ord numbers them; found, or added when this order is new. */
static const char SQL_LAYOUT[] =
    "WITH f AS (SELECT layout FROM indicator_layout WHERE scheme = $1 AND codes = $2::text[]"
    " ORDER BY layout LIMIT 1), "
    "i AS (INSERT INTO indicator_layout (scheme, codes) SELECT $1, $2::text[]"
    " WHERE NOT EXISTS (SELECT 1 FROM f) RETURNING layout) "
    "SELECT layout FROM f UNION ALL SELECT layout FROM i";

_Static_assert(SCR_A__COUNT > 13, "scr__db_sync_scheme borrows 14 batch buffers");

int scr__db_sync_scheme(struct scr *s, struct scr_scheme *sch, char *err, size_t errlen)
{
    const struct score_scheme *sc = sch->scheme;
    struct kp_buf *a = s->a; /* borrow the batch buffers; no batch runs meanwhile */
    const char *id = score_scheme_id(sc);
    const char *name = score_scheme_name(sc);

    size_t ng = score_scheme_n_groups(sc);
    kp_pg_array_begin(&a[0]);
    kp_pg_array_begin(&a[1]);
    for (size_t g = 0; g < ng; g++) {
        kp_pg_array_add(&a[0], score_scheme_group_code(sc, g));
        kp_pg_array_add(&a[1], score_scheme_group_name(sc, g));
    }
    kp_pg_array_end(&a[0]);
    kp_pg_array_end(&a[1]);

    size_t nu = score_scheme_n_units(sc);
    kp_pg_array_begin(&a[2]);
    kp_pg_array_begin(&a[3]);
    kp_pg_array_begin(&a[4]);
    for (size_t u = 0; u < nu; u++) {
        kp_pg_array_add(&a[2], score_scheme_unit_code(sc, u));
        kp_pg_array_add(&a[3], score_scheme_unit_name(sc, u));
        kp_pg_array_add(&a[4], score_scheme_group_code(sc, score_scheme_unit_group(sc, u)));
    }
    kp_pg_array_end(&a[2]);
    kp_pg_array_end(&a[3]);
    kp_pg_array_end(&a[4]);

    /* Node 0 is the root (the unit total, kept in unit_scores), not an indicator: its
     * children get parent NULL. */
    size_t nn = score_scheme_n_nodes(sc);
    for (int k = 5; k <= 10; k++)
        kp_pg_array_begin(&a[k]);
    for (size_t n = 1; n < nn; n++) {
        const char *method = score_scheme_node_method(sc, n);
        kp_pg_array_add(&a[5], score_scheme_node_code(sc, n));
        kp_pg_array_add(&a[6], score_scheme_node_name(sc, n));
        long parent = score_scheme_node_parent(sc, n);
        kp_pg_array_add(&a[7], parent > 0 ? score_scheme_node_code(sc, (size_t)parent) : NULL);
        kp_pg_array_add(&a[8], score_scheme_node_is_leaf(sc, n) ? "t" : "f");
        kp_pg_array_add(&a[9], method ? method : "");
        kp_pg_array_add_i64(&a[10], (long long)n);
    }
    for (int k = 5; k <= 10; k++)
        kp_pg_array_end(&a[k]);

    for (int k = 11; k <= 13; k++)
        kp_pg_array_begin(&a[k]);
    for (size_t u = 0; u < nu; u++)
        for (size_t n = 1; n < nn; n++) {
            double w = score_scheme_node_weight(sc, u, n);
            if (score_scheme_node_is_adjustment(sc, n) || !(w > 0))
                continue;
            kp_pg_array_add(&a[11], score_scheme_unit_code(sc, u));
            kp_pg_array_add(&a[12], score_scheme_node_code(sc, n));
            kp_pg_array_add_double(&a[13], w);
        }
    for (int k = 11; k <= 13; k++)
        kp_pg_array_end(&a[k]);

    const char *p_scheme[2] = {id, name ? name : id};
    const char *p_groups[3] = {id, kp_buf_cstr(&a[0]), kp_buf_cstr(&a[1])};
    const char *p_units[4] = {id, kp_buf_cstr(&a[2]), kp_buf_cstr(&a[3]), kp_buf_cstr(&a[4])};
    const char *p_ind[7] = {id,
                            kp_buf_cstr(&a[5]),
                            kp_buf_cstr(&a[6]),
                            kp_buf_cstr(&a[7]),
                            kp_buf_cstr(&a[8]),
                            kp_buf_cstr(&a[9]),
                            kp_buf_cstr(&a[10])};
    const char *p_w[4] = {id, kp_buf_cstr(&a[11]), kp_buf_cstr(&a[12]), kp_buf_cstr(&a[13])};
    const char *p_layout[2] = {id, kp_buf_cstr(&a[5])};
    struct kp_pg_res *r = NULL;
    const char *step = "begin";
    if (kp_pg_exec(s->pg, "BEGIN", 0, NULL, NULL) ||
        (step = "kp_scheme", kp_pg_exec(s->pg, SQL_SCHEME, 2, p_scheme, NULL)) ||
        (step = "kp_group", kp_pg_exec(s->pg, SQL_GROUPS, 3, p_groups, NULL)) ||
        (step = "kp_unit", kp_pg_exec(s->pg, SQL_UNITS, 4, p_units, NULL)) ||
        (step = "kp_indicator", kp_pg_exec(s->pg, SQL_INDICATORS, 7, p_ind, NULL)) ||
        (step = "indicator_weight", kp_pg_exec(s->pg, SQL_WEIGHTS_CLEAR, 1, p_scheme, NULL)) ||
        (step = "indicator_weight", kp_pg_exec(s->pg, SQL_WEIGHTS, 4, p_w, NULL)) ||
        (step = "indicator_layout", kp_pg_exec(s->pg, SQL_LAYOUT, 2, p_layout, &r)) ||
        (step = "commit", kp_pg_exec(s->pg, "COMMIT", 0, NULL, NULL))) {
        db_err(s, step, err, errlen);
        kp_pg_res_free(&r);
        scr__db_rollback(s);
        return KP_EDB;
    }
    sch->layout = (int)strtol(kp_pg_res_value(r, 0, 0), NULL, 10);
    kp_pg_res_free(&r);
    return 0;
}

/* ---- score rows ----------------------------------------------------------------------- */
/* The engine reports every changed cell and total. A cell that no longer exists (its last
 * record moved away by a revision) comes with n_obs == 0 and leaves its indicator_cells row
 * (scr_cells.c); the totals of a period are one unit_scores row, written whole (scr_totals.c). */

static void changes_begin(struct scr *s, struct scr_scheme *sch, struct scr_changes *ch)
{
    ch->a = s->a;
    ch->scheme = sch->scheme;
    ch->cells = sch->cells;
    ch->totals = sch->totals;
    ch->n_cells = ch->n_totals = ch->n_periods = 0;
    ch->now_us = 0;
    kp_buf_reset(&s->a[SCR_A_USEEN]);
}

void scr__collect_changes(struct scr *s, struct scr_scheme *sch, struct scr_changes *ch)
{
    /* a scheme is active only after its sync (scr__db_catch_up) */
    KP_ASSERT(sch->cells && sch->totals);
    changes_begin(s, sch, ch);
    scr__cells_begin(sch->cells);
    score_engine_changes(sch->engine, scr__cells_on_cell, scr__totals_on_total, ch);
    scr__totals_gather(s, sch, ch);
}

int scr__db_write_scores(struct scr *s, struct scr_scheme *sch, struct scr_changes *ch,
                         long long *rows)
{
    if (ch->n_cells && scr__cells_write(s, sch, false, rows, &ch->now_us))
        return KP_EDB;
    return scr__totals_write(s, sch, ch, rows);
}

int scr__db_collect_scores(struct scr *s, struct scr_scheme *sch, struct scr_changes *ch,
                           long long *rows)
{
    if (sch->cells && scr__cells_collect(s, sch, rows, &ch->now_us))
        return KP_EDB;
    return ch->totals_sent ? scr__totals_collect(s, ch, rows) : 0;
}

/* ---- replay --------------------------------------------------------------------------- */

/* The scheme is compared with `(SELECT $1::text)` in the statements that read observations
 * back: a value the planner cannot see, so it estimates a share of the table from the number
 * of schemes. Given the value itself, it takes its frequency from the statistics, and a scheme
 * that had no rows when observation was last analyzed (a new scheme; a table analyzed early)
 * is estimated at one row. The planner then read the scheme's rows through an index on its
 * first column: every row of the scheme for each cold load (~1 s a batch at 1 M rows in
 * bench_e2e) and for each replay chunk. */
const char scr__sql_replay[] =
    "SELECT id, src, ref, rev, unit, indicator, period, value, w, "
    "(extract(epoch FROM observed_at) * 1000)::int8 "
    "FROM observation WHERE scheme = (SELECT $1::text) AND id > $2::int8 ORDER BY id LIMIT $3::int";

/* Row i of a result whose columns c0.. are src, ref, rev, unit, indicator, period, value, w
 * and observed_at in ms, as an observation (its strings borrowed from the result). */
static struct score_obs row_obs(const struct kp_pg_res *r, int i, int c0)
{
    struct score_obs o = {
        .src = kp_pg_res_value(r, i, c0),
        .ref = kp_pg_res_value(r, i, c0 + 1),
        .rev = strtoull(kp_pg_res_value(r, i, c0 + 2), NULL, 10),
        .unit = kp_pg_res_value(r, i, c0 + 3),
        .indicator = kp_pg_res_value(r, i, c0 + 4),
        .period = kp_pg_res_value(r, i, c0 + 5),
        .value = strtod(kp_pg_res_value(r, i, c0 + 6), NULL),
        .w = strtod(kp_pg_res_value(r, i, c0 + 7), NULL),
        .at = strtoll(kp_pg_res_value(r, i, c0 + 8), NULL, 10),
    };
    return o;
}

/* ---- evicted records ------------------------------------------------------------------- */

/* Every revision of a key k up to an id, looked up by (scheme, src, ref) in the unique index,
 * one key at a time: OFFSET 0 keeps the subquery out of a join whose order the planner would
 * choose. */
#define SQL_KEY_REVISIONS                                                                          \
    " CROSS JOIN LATERAL (SELECT o.src, o.ref, o.rev, o.unit, o.indicator, o.period, o.value,"     \
    " o.w, o.observed_at FROM observation o WHERE o.scheme = (SELECT $1::text)"                    \
    " AND o.src = k.src AND o.ref = k.ref AND o.id <= $2::int8 OFFSET 0) AS o"
/* Every stored revision of the given keys, highest first, up to an id. Duplicate keys are
 * folded. */
const char scr__sql_cold[] =
    "SELECT o.src, o.ref, o.rev, o.unit, o.indicator, o.period, o.value, o.w, "
    "(extract(epoch FROM o.observed_at) * 1000)::int8 "
    "FROM (SELECT DISTINCT * FROM unnest($3::text[], $4::text[])) AS k(src, ref)" SQL_KEY_REVISIONS
    " ORDER BY o.src, o.ref, o.rev DESC";

int scr__db_load_cold(struct scr *s, const char *scheme, struct score_engine *e,
                      const struct score_obs *so, size_t n, long long upto)
{
    struct kp_buf src = {0}, ref = {0};
    size_t keys = 0;
    for (size_t i = 0; i < n; i++) {
        if (!score_engine_maybe_cold(e, &so[i]))
            continue;
        if (!keys++) {
            kp_pg_array_begin(&src);
            kp_pg_array_begin(&ref);
        }
        kp_pg_array_add(&src, so[i].src);
        kp_pg_array_add(&ref, so[i].ref);
    }
    if (!keys)
        return 0;
    kp_pg_array_end(&src);
    kp_pg_array_end(&ref);
    char upto_txt[24];
    snprintf(upto_txt, sizeof upto_txt, "%lld", upto);
    const char *p[4] = {scheme, upto_txt, kp_buf_cstr(&src), kp_buf_cstr(&ref)};
    struct kp_pg_res *r = NULL;
    int rc = scr__copy_pause(s);
    if (rc == 0)
        rc = kp_pg_exec(s->pg, scr__sql_cold, 4, p, &r);
    kp_buf_fini(&src);
    kp_buf_fini(&ref);
    if (rc)
        return KP_EDB;
    int rows = kp_pg_res_ntuples(r);
    for (int i = 0; i < rows; i++) {
        struct score_obs o = row_obs(r, i, 0);
        (void)score_engine_load(e, &o); /* lower revisions of a key it took: no-ops */
    }
    kp_pg_res_free(&r);
    if (s->m_loaded)
        kp_counter_add(s->m_loaded, (double)rows);
    KP_DEBUG("records_loaded", "scheme=%s keys=%zu rows=%d", scheme, keys, rows);
    return 0;
}

/* Every stored revision, up to an id, of each key that has one in a cell, highest first: the
 * observation_cell index finds the keys, the (scheme, src, ref, rev) one their revisions. */
const char scr__sql_cell[] =
    "SELECT o.src, o.ref, o.rev, o.unit, o.indicator, o.period, o.value, o.w, "
    "(extract(epoch FROM o.observed_at) * 1000)::int8 "
    "FROM (SELECT DISTINCT src, ref FROM observation WHERE scheme = (SELECT $1::text) "
    "AND unit = $3 AND indicator = $4 AND period = $5 AND id <= $2::int8) AS k" SQL_KEY_REVISIONS
    " ORDER BY o.src, o.ref, o.rev DESC";

bool scr__db_load_cell(void *ctx, struct score_engine *e, size_t unit, size_t node,
                       const char *period)
{
    struct scr_scheme *sch = ctx;
    struct scr *s = sch->load_s;
    char upto[32];
    snprintf(upto, sizeof upto, "%lld", sch->load_upto);
    const char *p[5] = {sch->id, upto, score_scheme_unit_code(sch->scheme, unit),
                        score_scheme_node_code(sch->scheme, node), period};
    struct kp_pg_res *r = NULL;
    if (scr__copy_pause(s))
        return false;
    if (kp_pg_exec(s->pg, scr__sql_cell, 5, p, &r)) {
        KP_ERROR("cell_load_failed", "scheme=%s unit=%s indicator=%s period=%s", sch->id, p[2],
                 p[3], period);
        return false;
    }
    int rows = kp_pg_res_ntuples(r);
    for (int i = 0; i < rows; i++) {
        struct score_obs o = row_obs(r, i, 0);
        (void)score_engine_load(e, &o); /* keys it holds, lower revisions: no-ops */
    }
    kp_pg_res_free(&r);
    if (s->m_loaded)
        kp_counter_add(s->m_loaded, (double)rows);
    KP_DEBUG("cell_loaded", "scheme=%s unit=%s indicator=%s period=%s rows=%d", sch->id, p[2], p[3],
             period, rows);
    return true;
}

/* Applies one chunk of rows to the engine as one unit of work; upto: the id the engine had
 * applied before it. Returns 0 or KP_EDB. */
static int replay_chunk(struct scr *s, struct scr_scheme *sch, struct score_engine *e,
                        const struct kp_pg_res *r, long long upto, uint64_t *skipped)
{
    int n = kp_pg_res_ntuples(r);
    struct score_obs *o = kp_xcalloc(n > 0 ? (size_t)n : 1, sizeof *o);
    for (int i = 0; i < n; i++)
        o[i] = row_obs(r, i, 1);
    score_engine_begin(e);
    sch->load_upto = upto;
    if (scr__db_load_cold(s, sch->id, e, o, (size_t)n, upto)) {
        score_engine_rollback(e);
        free(o);
        return KP_EDB;
    }
    for (int i = 0; i < n; i++) {
        char msg[KP_MSG_TEXT_MAX];
        /* A scheme file edited since the observation was stored may no longer take it. */
        if (score_engine_check(e, &o[i], msg, sizeof msg) != KP_R_OK ||
            score_engine_apply(e, &o[i]) != KP_R_OK)
            (*skipped)++;
    }
    if (score_engine_failed(e)) { /* a cell's read-back failed: nothing of the chunk stays */
        score_engine_rollback(e);
        free(o);
        return KP_EDB;
    }
    score_engine_commit(e);
    free(o);
    return 0;
}

/* Makes the score rows of the scheme equal to the engine: writes what differs, deletes what
 * the engine does not hold. One transaction. Adds the rows touched to *synced. */
static int sync_scores(struct scr *s, struct scr_scheme *sch, long long *synced)
{
    struct scr_changes ch;
    changes_begin(s, sch, &ch);
    score_engine_foreach_total(sch->engine, scr__totals_on_any, &ch);
    scr__totals_gather(s, sch, &ch);
    bool ok = kp_pg_exec(s->pg, "BEGIN", 0, NULL, NULL) == 0 &&
              scr__totals_sync(s, sch, synced) == 0 && scr__cells_sync(s, sch, synced) == 0 &&
              kp_pg_exec(s->pg, "COMMIT", 0, NULL, NULL) == 0;
    scr__totals_sync_done(sch, ok);
    scr__cells_sync_done(sch, ok);
    return ok ? 0 : KP_EDB;
}

int scr__db_catch_up(struct scr *s, struct scr_scheme *sch, bool full, bool sync, uint64_t *applied,
                     char *err, size_t errlen)
{
    bool fresh = full || !sch->engine || sch->known_max_id < 0;
    struct score_engine *e = sch->engine;
    long long upto = fresh ? 0 : sch->known_max_id;
    if (fresh && score_engine_new(sch->scheme, &e)) {
        snprintf(err, errlen, "%s: out of memory for the engine", sch->id);
        return KP_ENOMEM;
    }
    if (fresh) { /* the observation table keeps them: bounded memory (issue 9) */
        score_engine_evict_events(e);
        sch->load_s = s;
        score_engine_evict_values(e, scr__db_load_cell, sch);
    }
    uint64_t t0 = kp_mono_ns();
    uint64_t n_rows = 0, skipped = 0;
    for (;;) {
        char last_id[32], limit[16];
        snprintf(last_id, sizeof last_id, "%lld", upto);
        snprintf(limit, sizeof limit, "%d", scr__replay_chunk);
        const char *p[3] = {sch->id, last_id, limit};
        struct kp_pg_res *r = NULL;
        if (kp_pg_exec(s->pg, scr__sql_replay, 3, p, &r)) {
            db_err(s, "replay", err, errlen);
            if (fresh)
                score_engine_destroy(&e);
            return KP_EDB; /* in place: the engine still holds the ids up to known_max_id */
        }
        int n = kp_pg_res_ntuples(r);
        if (n > 0) {
            if (replay_chunk(s, sch, e, r, upto, &skipped)) {
                kp_pg_res_free(&r);
                db_err(s, "replay", err, errlen);
                if (fresh)
                    score_engine_destroy(&e);
                return KP_EDB;
            }
            upto = strtoll(kp_pg_res_value(r, n - 1, 0), NULL, 10);
            if (!fresh)
                sch->known_max_id = upto;
        }
        kp_pg_res_free(&r);
        n_rows += (uint64_t)n;
        if (n < scr__replay_chunk)
            break;
    }
    if (fresh) {
        score_engine_destroy(&sch->engine);
        sch->engine = e;
        sch->known_max_id = upto;
        s->stats.replays++;
    }
    if (fresh || n_rows > 0 || !sch->cells)
        sch->need_sync = true;
    s->stats.replayed += n_rows;
    if (applied)
        *applied = n_rows;
    double secs = (double)(kp_mono_ns() - t0) / 1e9;
    if (skipped)
        KP_WARN("replay_skipped",
                "scheme=%s skipped=%" PRIu64 " msg=\"stored observations the scheme no longer "
                "takes\"",
                sch->id, skipped);
    if (fresh)
        KP_INFO("replayed", "scheme=%s observations=%" PRIu64 " records=%zu seconds=%.3f", sch->id,
                n_rows, score_engine_n_records(e), secs);
    else if (n_rows)
        KP_DEBUG("caught_up", "scheme=%s observations=%" PRIu64 " upto=%lld seconds=%.3f", sch->id,
                 n_rows, upto, secs);
    scr__state_metrics(sch);
    if (!sync || !sch->need_sync)
        return 0;
    long long synced = 0;
    uint64_t t1 = kp_mono_ns();
    if (sync_scores(s, sch, &synced)) {
        db_err(s, "replay sync", err, errlen);
        scr__db_rollback(s);
        return KP_EDB; /* need_sync stays: the next attempt syncs */
    }
    sch->need_sync = false;
    scr__state_metrics(sch);
    s->stats.replay_rows_synced += (uint64_t)synced;
    if (synced)
        KP_INFO("replay_synced",
                "scheme=%s rows=%lld msg=\"score rows rewritten to match the "
                "engine\"",
                sch->id, synced);
    KP_DEBUG("scores_synced", "scheme=%s rows=%lld seconds=%.3f", sch->id, synced,
             (double)(kp_mono_ns() - t1) / 1e9);
    return 0;
}
