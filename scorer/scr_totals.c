/*
 * scr_totals: the unit_scores rows (migration 008). A (scheme, period) is one row holding
 * every unit's total, coverage, rank, grade, veto and updated_us as arrays, in the scheme's
 * unit order. A transaction rewrites the row of each period with a changed total whole, from
 * the engine, in one statement (SQL_UNIT_SCORES): the entries of all those periods one after
 * another, each period's slice given by an offset and a count. The scorer keeps every entry's
 * updated_us (struct scr_totals), so that statement compares nothing: an entry the
 * transaction changed goes as -1 and becomes the transaction's now(), any other keeps its
 * time. A sync (a starting scorer, scr_db.c) compares instead (SQL_UNIT_SYNC): it rewrites the
 * rows that differ from the engine, keeping an entry's time where the entry is equal, deletes
 * the rows of periods without a total, and reads the times back into a new copy that replaces
 * the scorer's at COMMIT.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kp_err.h"
#include "kp_pg.h"
#include "score_engine.h"
#include "scr_internal.h"

/* An entry the current transaction changed: SQL_UNIT_SCORES writes the transaction's now(). */
#define US_NOW (-1LL)

struct period_times {
    char *period;
    int64_t *us; /* per unit of the scheme: its entry's updated_us; 0: none known */
};

/* An entry the current transaction changed, and its time before (for a rollback). */
struct tundo {
    uint32_t period, unit;
    int64_t us;
};

struct scr_totals {
    size_t n_units;
    struct period_times *p;
    size_t n_p, cap_p;
    size_t last;        /* the period found last: a transaction's totals come period by period */
    struct kp_buf undo; /* struct tundo */
};

static struct scr_totals *totals_new(size_t n_units)
{
    struct scr_totals *t = kp_xcalloc(1, sizeof *t);
    t->n_units = n_units;
    return t;
}

void scr__totals_destroy(struct scr_totals **tp)
{
    if (!tp || !*tp)
        return;
    struct scr_totals *t = *tp;
    for (size_t i = 0; i < t->n_p; i++) {
        free(t->p[i].period);
        free(t->p[i].us);
    }
    free(t->p);
    kp_buf_fini(&t->undo);
    free(t);
    *tp = NULL;
}

size_t scr__totals_bytes(const struct scr_totals *t)
{
    if (!t)
        return 0;
    size_t b = sizeof *t + t->cap_p * sizeof *t->p + t->undo.cap;
    for (size_t i = 0; i < t->n_p; i++)
        b += strlen(t->p[i].period) + 1 + t->n_units * sizeof *t->p[i].us;
    return b;
}

/* The index of period's times, or -1. A scheme holds a few dozen periods a year; the last one
 * found is tried first. */
static long period_find(struct scr_totals *t, const char *period)
{
    if (t->last < t->n_p && !strcmp(t->p[t->last].period, period))
        return (long)t->last;
    for (size_t i = 0; i < t->n_p; i++)
        if (!strcmp(t->p[i].period, period)) {
            t->last = i;
            return (long)i;
        }
    return -1;
}

/* The index of period's times, added (no time known) when absent. */
static size_t period_get(struct scr_totals *t, const char *period)
{
    long i = period_find(t, period);
    if (i >= 0)
        return (size_t)i;
    if (t->n_p == t->cap_p) {
        t->cap_p = t->cap_p ? 2 * t->cap_p : 32;
        t->p = kp_xrealloc(t->p, t->cap_p * sizeof *t->p);
    }
    struct period_times *pt = &t->p[t->n_p];
    pt->period = kp_xstrdup(period);
    pt->us = kp_xcalloc(t->n_units ? t->n_units : 1, sizeof *pt->us);
    t->last = t->n_p;
    return t->n_p++;
}

/* ---- a transaction ------------------------------------------------------------------- */

/* Whether the last period in SCR_A_USEEN is `period`. */
static bool seen_last(const struct kp_buf *seen, const char *period)
{
    size_t len = strlen(period);
    if (seen->len < len + 1)
        return false;
    const char *last = (const char *)seen->data + seen->len - len - 1;
    return (seen->len == len + 1 || last[-1] == '\0') && memcmp(last, period, len + 1) == 0;
}

/* Adds period to the periods to write (SCR_A_USEEN, once per run of the same period;
 * scr__totals_gather sorts the list and folds what repeats). */
static void see_period(struct scr_changes *ch, const char *period)
{
    if (!seen_last(&ch->a[SCR_A_USEEN], period))
        kp_buf_append(&ch->a[SCR_A_USEEN], period, strlen(period) + 1);
}

void scr__totals_on_total(const struct score_total_change *t, void *arg)
{
    struct scr_changes *ch = arg;
    ch->n_totals++;
    see_period(ch, t->period);
    struct scr_totals *tt = ch->totals;
    if (!tt || t->unit >= tt->n_units)
        return;
    size_t pi = period_get(tt, t->period);
    int64_t *us = &tt->p[pi].us[t->unit];
    if (*us == US_NOW)
        return;
    struct tundo u = {(uint32_t)pi, (uint32_t)t->unit, *us};
    kp_buf_append(&tt->undo, &u, sizeof u);
    *us = US_NOW;
}

void scr__totals_on_any(const struct score_total_change *t, void *arg)
{
    struct scr_changes *ch = arg;
    ch->n_totals++;
    see_period(ch, t->period);
}

void scr__totals_end(struct scr_totals *t, bool committed, long long now_us)
{
    if (!t)
        return;
    const struct tundo *u = (const struct tundo *)t->undo.data;
    for (size_t i = t->undo.len / sizeof *u; i-- > 0;)
        t->p[u[i].period].us[u[i].unit] = committed ? now_us : u[i].us;
    kp_buf_trim(&t->undo, 64 * 1024);
}

/* ---- the statements' arrays ------------------------------------------------------------ */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void scr__totals_gather(struct scr *s, struct scr_scheme *sch, struct scr_changes *ch)
{
    struct kp_buf *a = s->a, *bin = s->ubin;
    const struct score_scheme *sc = sch->scheme;
    struct scr_totals *t = sch->totals;
    for (int k = SCR_A_UUNIT; k <= SCR_A_UCNT; k++)
        kp_pg_array_begin(&a[k]);
    kp_pg_barray_begin(&bin[0], KP_PG_FLOAT8, 1);
    kp_pg_barray_begin(&bin[1], KP_PG_FLOAT8, 1);
    kp_pg_barray_begin(&bin[2], KP_PG_INT4, 1);
    kp_pg_barray_begin(&bin[3], KP_PG_INT8, 1);
    ch->n_periods = 0;

    struct kp_buf *seen = &a[SCR_A_USEEN];
    const char *all = (const char *)seen->data;
    size_t n = 0;
    for (size_t off = 0; off < seen->len; off += strlen(all + off) + 1)
        n++;
    const char **p = kp_xcalloc(n ? n : 1, sizeof *p);
    n = 0;
    for (size_t off = 0; off < seen->len; off += strlen(all + off) + 1)
        p[n++] = all + off;
    qsort(p, n, sizeof *p, cmp_str);
    size_t nu = score_scheme_n_units(sc);
    int n_elem = 0;
    for (size_t k = 0; k < n; k++) {
        if (k > 0 && strcmp(p[k], p[k - 1]) == 0)
            continue;
        long pi = t ? period_find(t, p[k]) : -1;
        int first = n_elem;
        for (size_t u = 0; u < nu; u++) {
            struct score_total_change tc;
            if (score_engine_total(sch->engine, u, p[k], &tc) != 0)
                continue;
            int64_t us = pi >= 0 && u < t->n_units ? t->p[pi].us[u] : 0;
            kp_pg_array_add(&a[SCR_A_UUNIT], score_scheme_unit_code(sc, u));
            kp_pg_barray_add_f8(&bin[0], tc.total);
            kp_pg_barray_add_f8(&bin[1], tc.coverage);
            kp_pg_barray_add_i4(&bin[2], (int)tc.rank);
            kp_pg_array_add(&a[SCR_A_UGRADE], tc.grade ? tc.grade : "");
            kp_pg_array_add(&a[SCR_A_UVETO], tc.vetoed ? "t" : "f");
            kp_pg_barray_add_i8(&bin[3], us != 0 ? us : US_NOW); /* 0: no time known */
            n_elem++;
        }
        kp_pg_array_add(&a[SCR_A_UPERIODS], p[k]);
        kp_pg_array_add_i64(&a[SCR_A_UOFF], first);
        kp_pg_array_add_i64(&a[SCR_A_UCNT], n_elem - first);
        ch->n_periods++;
    }
    free(p);
    for (int k = SCR_A_UUNIT; k <= SCR_A_UCNT; k++)
        kp_pg_array_end(&a[k]);
    for (int k = 0; k < 4; k++)
        kp_pg_barray_end(&bin[k], &n_elem);
}

/* The statements' parameters, $1 to $11: scheme; the entries' unit, total, coverage, rank,
 * grade, vetoed and updated_us; the periods, and each one's offset and count among the
 * entries. */
static void params(struct scr *s, struct scr_scheme *sch, const char **p, int *len, int *fmt)
{
    struct kp_buf *a = s->a, *bin = s->ubin;
    static const int text[] = {SCR_A_UUNIT,  -1,          -1, -1,
                               SCR_A_UGRADE, SCR_A_UVETO, -1, SCR_A_UPERIODS,
                               SCR_A_UOFF,   SCR_A_UCNT};
    static const int binary[] = {-1, 0, 1, 2, -1, -1, 3, -1, -1, -1};
    p[0] = sch->id;
    len[0] = fmt[0] = 0;
    for (int k = 0; k < 10; k++) {
        if (text[k] >= 0) {
            p[1 + k] = kp_buf_cstr(&a[text[k]]);
            len[1 + k] = fmt[1 + k] = 0;
        } else {
            p[1 + k] = (const char *)bin[binary[k]].data;
            len[1 + k] = (int)bin[binary[k]].len;
            fmt[1 + k] = 1;
        }
    }
}

/* ---- writes ---------------------------------------------------------------------------- */

/* The end of both statements' INSERT: a period's row is rewritten where it differs. */
#define UPSERT_WHERE_DIFFERENT                                                                     \
    " ON CONFLICT (scheme, period) DO UPDATE SET unit = EXCLUDED.unit, total = EXCLUDED.total,"    \
    " coverage = EXCLUDED.coverage, rank = EXCLUDED.rank, grade = EXCLUDED.grade,"                 \
    " vetoed = EXCLUDED.vetoed, updated_us = EXCLUDED.updated_us"                                  \
    " WHERE (unit_scores.unit, unit_scores.total, unit_scores.coverage, unit_scores.rank,"         \
    " unit_scores.grade, unit_scores.vetoed, unit_scores.updated_us) IS DISTINCT FROM"             \
    " (EXCLUDED.unit, EXCLUDED.total, EXCLUDED.coverage, EXCLUDED.rank, EXCLUDED.grade,"           \
    " EXCLUDED.vetoed, EXCLUDED.updated_us)"

/* The rows of the periods in $9: a period with entries is upserted whole where it differs,
 * one without is deleted. Returns the rows written or deleted and the transaction's now(). */
static const char SQL_UNIT_SCORES[] =
    "WITH n AS (SELECT (extract(epoch FROM now()) * 1000000)::int8 AS us), "
    "x AS (SELECT ($9::text[])[k] AS p, ($10::int[])[k] AS o, ($11::int[])[k] AS c"
    " FROM generate_subscripts($9::text[], 1) AS k), "
    "d AS (DELETE FROM unit_scores s USING x WHERE x.c = 0 AND s.scheme = $1 AND s.period = x.p"
    " RETURNING 1), "
    "w AS (INSERT INTO unit_scores (scheme, period, unit, total, coverage, rank, grade, vetoed,"
    " updated_us)"
    " SELECT $1, x.p, ($2::text[])[x.o + 1:x.o + x.c], ($3::float8[])[x.o + 1:x.o + x.c],"
    " ($4::float8[])[x.o + 1:x.o + x.c], ($5::int[])[x.o + 1:x.o + x.c],"
    " ($6::text[])[x.o + 1:x.o + x.c], ($7::bool[])[x.o + 1:x.o + x.c],"
    " array_replace(($8::int8[])[x.o + 1:x.o + x.c], -1::int8, n.us)"
    " FROM x, n WHERE x.c > 0" UPSERT_WHERE_DIFFERENT " RETURNING 1) "
    "SELECT (SELECT count(*) FROM d) + (SELECT count(*) FROM w), (SELECT us FROM n)";

int scr__totals_write(struct scr *s, struct scr_scheme *sch, struct scr_changes *ch,
                      long long *rows)
{
    if (!ch->n_periods)
        return 0;
    const char *p[11];
    int len[11], fmt[11];
    params(s, sch, p, len, fmt);
    if (kp_pg_send_prepared(s->pg, SQL_UNIT_SCORES, 11, p, len, fmt))
        return KP_EDB;
    if (kp_pg_in_pipeline(s->pg)) { /* collected by scr__totals_collect */
        ch->totals_sent = true;
        return 0;
    }
    return scr__totals_collect(s, ch, rows);
}

int scr__totals_collect(struct scr *s, struct scr_changes *ch, long long *rows)
{
    ch->totals_sent = false;
    struct kp_pg_res *r = NULL;
    if (kp_pg_wait(s->pg, &r))
        return KP_EDB;
    if (kp_pg_res_ntuples(r) == 1) {
        if (rows)
            *rows += strtoll(kp_pg_res_value(r, 0, 0), NULL, 10);
        ch->now_us = strtoll(kp_pg_res_value(r, 0, 1), NULL, 10);
    }
    kp_pg_res_free(&r);
    return 0;
}

/* ---- a sync ------------------------------------------------------------------------------ */

/* As SQL_UNIT_SCORES, $8 left out, comparing: an entry equal to the row's keeps its time,
 * any other takes now(). */
static const char SQL_UNIT_SYNC[] =
    "WITH c AS ("
    " SELECT x.p, t.* FROM (SELECT ($8::text[])[k] AS p, ($9::int[])[k] AS o,"
    " ($10::int[])[k] AS c FROM generate_subscripts($8::text[], 1) AS k) x"
    " CROSS JOIN LATERAL unnest(($2::text[])[x.o + 1:x.o + x.c],"
    " ($3::float8[])[x.o + 1:x.o + x.c], ($4::float8[])[x.o + 1:x.o + x.c],"
    " ($5::int[])[x.o + 1:x.o + x.c], ($6::text[])[x.o + 1:x.o + x.c],"
    " ($7::bool[])[x.o + 1:x.o + x.c]) WITH ORDINALITY AS t(u, tot, cov, rk, g, vt, ord)), "
    "o AS ("
    " SELECT s.period AS p, t.* FROM unit_scores s CROSS JOIN LATERAL unnest(s.unit, s.total,"
    " s.coverage, s.rank, s.grade, s.vetoed, s.updated_us) AS t(u, tot, cov, rk, g, vt, us)"
    " WHERE s.scheme = $1 AND s.period = ANY ($8::text[])), "
    "m AS ("
    " SELECT c.p, array_agg(c.u ORDER BY c.ord) AS u, array_agg(c.tot ORDER BY c.ord) AS tot,"
    " array_agg(c.cov ORDER BY c.ord) AS cov, array_agg(c.rk ORDER BY c.ord) AS rk,"
    " array_agg(c.g ORDER BY c.ord) AS g, array_agg(c.vt ORDER BY c.ord) AS vt,"
    " array_agg(CASE WHEN (o.tot, o.cov, o.rk, o.g, o.vt) IS NOT DISTINCT FROM"
    " (c.tot, c.cov, c.rk, c.g, c.vt) THEN o.us"
    " ELSE (extract(epoch FROM now()) * 1000000)::int8 END ORDER BY c.ord) AS us"
    " FROM c LEFT JOIN o ON o.p = c.p AND o.u = c.u GROUP BY c.p), "
    "d AS ("
    " DELETE FROM unit_scores s WHERE s.scheme = $1 AND s.period = ANY ($8::text[])"
    " AND NOT EXISTS (SELECT 1 FROM m WHERE m.p = s.period) RETURNING 1), "
    "w AS ("
    " INSERT INTO unit_scores (scheme, period, unit, total, coverage, rank, grade, vetoed,"
    " updated_us)"
    " SELECT $1, p, u, tot, cov, rk, g, vt, us FROM m" UPSERT_WHERE_DIFFERENT " RETURNING 1) "
    "SELECT (SELECT count(*) FROM d) + (SELECT count(*) FROM w)";

/* The rows of periods the engine holds no total of (a scheme file that dropped a unit, rows
 * written by hand). */
static const char SQL_UNIT_STALE[] =
    "DELETE FROM unit_scores s WHERE s.scheme = $1 AND s.period <> ALL ($2::text[])";

/* Every entry's time, once the sync has written. */
static const char SQL_UNIT_TIMES[] =
    "SELECT s.period, t.u, t.us FROM unit_scores s"
    " CROSS JOIN LATERAL unnest(s.unit, s.updated_us) AS t(u, us) WHERE s.scheme = $1";

int scr__totals_sync(struct scr *s, struct scr_scheme *sch, long long *rows)
{
    const char *p[11];
    int len[11], fmt[11];
    params(s, sch, p, len, fmt);
    /* $8 (updated_us) left out: $9 .. $11 become $8 .. $10 */
    const char *q[10];
    int qlen[10], qfmt[10];
    for (int k = 0, j = 0; k < 11; k++) {
        if (k == 7)
            continue;
        q[j] = p[k];
        qlen[j] = len[k];
        qfmt[j++] = fmt[k];
    }
    struct kp_pg_res *r = NULL;
    if (kp_pg_exec_bin(s->pg, SQL_UNIT_SYNC, 10, q, qlen, qfmt, &r))
        return KP_EDB;
    if (rows && kp_pg_res_ntuples(r) == 1)
        *rows += strtoll(kp_pg_res_value(r, 0, 0), NULL, 10);
    kp_pg_res_free(&r);
    const char *ps[2] = {sch->id, p[8]};
    if (kp_pg_exec_prepared(s->pg, SQL_UNIT_STALE, 2, ps, NULL, NULL, &r))
        return KP_EDB;
    if (rows)
        *rows += kp_pg_res_affected(r);
    kp_pg_res_free(&r);

    if (kp_pg_exec(s->pg, SQL_UNIT_TIMES, 1, &sch->id, &r))
        return KP_EDB;
    struct scr_totals *t = totals_new(score_scheme_n_units(sch->scheme));
    for (int i = 0, n = kp_pg_res_ntuples(r); i < n; i++) {
        long u = score_scheme_unit_find(sch->scheme, kp_pg_res_value(r, i, 1));
        if (u < 0) /* cannot be: the sync wrote every row of the scheme from the engine */
            continue;
        size_t pi = period_get(t, kp_pg_res_value(r, i, 0));
        t->p[pi].us[u] = strtoll(kp_pg_res_value(r, i, 2), NULL, 10);
    }
    kp_pg_res_free(&r);
    scr__totals_destroy(&sch->totals_next);
    sch->totals_next = t;
    return 0;
}

void scr__totals_sync_done(struct scr_scheme *sch, bool committed)
{
    struct scr_totals *t = sch->totals_next;
    sch->totals_next = NULL;
    if (!committed) {
        scr__totals_destroy(&t);
        return;
    }
    scr__totals_destroy(&sch->totals);
    sch->totals = t;
}
