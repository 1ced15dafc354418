/*
 * bench_engine: the scoring engine alone (scorer/score_engine.h), no database, no sockets.
 * It writes a synthetic scheme of U units × L leaves (default 70 × 300, four groups of 3, 4,
 * 3 and 60 units as in Anshan) as a temporary YAML file, loads it, and streams N
 * observations through check/begin/apply/changes/commit in batches, as the scorer does for
 * each PostgreSQL transaction (scorer/scr_batch.c). By default a batch goes through
 * score_engine_check_ex and score_engine_apply_batch (the calls the scorer is to make);
 * --per-obs times score_engine_check and score_engine_apply one by one instead. It prints a
 * markdown table and one JSON line. It asserts nothing about time (STYLE.md "Tests":
 * benchmarks print tables); `--smoke` runs a tiny size so CI exercises the program (CTest
 * bench.engine_smoke).
 *
 * The scheme: root → 5 areas (weights 30/25/20/15/10) → 6 sub-areas each → 10 leaves each.
 * Within a sub-area, leaves 0-3 are `efficacy` (stats, clamp [0,100], rollup latest), 4-7
 * `direct` (office, rollup avg), 8 an event `rate` (esup, val 1 on time / 0 overdue) and 9 an
 * event `count` scored by `band` (audit). Monthly periods, derive quarter, half and year.
 *
 * Two streams (pseudo-random, fixed seed), both with a share of event observations (default
 * 25%: a new event ref, or with probability --revisions a higher revision of an earlier event,
 * as a case changes status) and otherwise values for (unit, value leaf, month) cells, one ref
 * per cell as a statistics feed sends it, so a repeated cell is a higher revision:
 *  - "source batches" (the scorer's case): each batch comes from one adapter — one source
 *    (stats, office, esup or audit), one month (the year advances over the stream; one value
 *    batch in ten revises an earlier month), rows in the source system's order (unit by
 *    unit, its indicators in order; events unit by unit);
 *  - "random order" (worst case for caches): every observation independently at random.
 *
 * Timing: CLOCK_PROCESS_CPUTIME_ID around the engine calls of each batch only (generation
 * of the batch is outside), one core (the engine is single-threaded).
 * Memory: glibc mallinfo2() in-use bytes (uordblks + hblkhd, malloc headers included)
 * after the run minus before score_engine_new(); every allocation of the bench itself is
 * made before that baseline. "cells" are the (unit, indicator, period) cells the engine
 * holds — every node but the root, every period including derived ones: the rows the
 * scorer keeps in kp_indicator_score.
 *
 * Extra rows measure the two crowded-cell cases: one value cell with many refs (--hot-value
 * records on one cell, then a batch of revisions among them) and one event cell with many
 * events (--hot-events events on one cell).
 */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kp_reason.h"
#include "score_engine.h"

#define N_AREAS        5
#define SUBS_PER_AREA  6
#define LEAVES_PER_SUB 10
#define N_MONTHS       12

struct opts {
    size_t units, leaves, obs, batch, hot_value, hot_events;
    int only;         /* 0 both streams, 1 source batches only, 2 random order only */
    const char *dump; /* write the final cells and totals of the source-batch stream here */
    double events, revisions;
    uint64_t seed;
    bool smoke, keep;
};

struct ev {
    uint32_t unit, leaf, month, rev;
};

/* ---- helpers -------------------------------------------------------------------------- */

static uint64_t rng;

static uint32_t rnd(uint32_t n)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)((rng >> 33) % n);
}

static double rndf(void)
{
    return rnd(1u << 30) / (double)(1u << 30);
}

static double now_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t heap_bytes(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

static void *xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz);
    if (!p) {
        fprintf(stderr, "bench_engine: out of memory\n");
        exit(2);
    }
    return p;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_engine: %s\n", what);
    exit(2);
}

/* Leaf kind by its index within a sub-area. */
enum kind { K_EFF, K_DIRECT, K_RATE, K_COUNT };

static enum kind leaf_kind(size_t leaf)
{
    size_t j = leaf % LEAVES_PER_SUB;
    return j < 4 ? K_EFF : j < 8 ? K_DIRECT : j == 8 ? K_RATE : K_COUNT;
}

static const char *unit_group(const struct opts *o, size_t u)
{
    /* Anshan's 3 / 4 / 3 / rest when there are enough units */
    if (o->units >= 14) {
        if (u < 3)
            return "g1";
        if (u < 7)
            return "g2";
        if (u < 10)
            return "g3";
        return "g4";
    }
    return (u % 2) ? "g2" : "g1";
}

/* Writes the scheme; leaves must be a multiple of 10 (sub-areas are spread over 5 areas). */
static void write_scheme(const struct opts *o, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        die("cannot write the scheme file");
    fprintf(f, "scheme: bench\nname: 基准\nyear: 2015\nderive: [quarter, half, year]\n"
               "grades:\n  bands: [{grade: 优, min: 90}, {grade: 良, min: 80},"
               " {grade: 中, min: 60}, {grade: 差}]\ngroups:\n");
    static const char *const groups[] = {"g1", "g2", "g3", "g4"};
    for (size_t g = 0; g < 4; g++) {
        bool any = false;
        for (size_t u = 0; u < o->units; u++)
            any = any || !strcmp(unit_group(o, u), groups[g]);
        if (!any)
            continue;
        fprintf(f, "  - code: %s\n    name: 组%zu\n    units:\n", groups[g], g + 1);
        for (size_t u = 0; u < o->units; u++)
            if (!strcmp(unit_group(o, u), groups[g]))
                fprintf(f, "      - {code: U%03zu, name: 单位%zu}\n", u, u);
    }
    fprintf(f, "indicators:\n");
    static const int area_w[N_AREAS] = {30, 25, 20, 15, 10};
    size_t n_subs = o->leaves / LEAVES_PER_SUB;
    size_t leaf = 0;
    for (size_t a = 0; a < N_AREAS; a++) {
        size_t first = n_subs * a / N_AREAS, last = n_subs * (a + 1) / N_AREAS;
        fprintf(f,
                "  - code: A%zu\n    name: 领域%zu\n    weight: %d\n    total: %zu\n"
                "    children:\n",
                a, a, area_w[a], last - first);
        for (size_t sub = first; sub < last; sub++) {
            fprintf(f,
                    "      - code: S%03zu\n        name: 子领域%zu\n        weight: 1\n"
                    "        total: 100\n        children:\n",
                    sub, sub);
            static const int leaf_w[LEAVES_PER_SUB] = {15, 10, 10, 10, 10, 10, 10, 5, 10, 10};
            for (size_t j = 0; j < LEAVES_PER_SUB; j++, leaf++) {
                fprintf(f, "          - {code: L%03zu, name: 指标%zu, weight: %d, ", leaf, leaf,
                        leaf_w[j]);
                switch (leaf_kind(leaf)) {
                case K_EFF:
                    fprintf(f,
                            "method: efficacy, good: %zu, bad: %zu, clamp: [0, 100],"
                            " src: [stats], periods: [month], rollup: latest, min: -100,"
                            " max: 1000}\n",
                            10 + j, 2 + j / 2);
                    break;
                case K_DIRECT:
                    fprintf(f, "method: direct, src: [office], periods: [month], rollup: avg,"
                               " min: 0, max: 100}\n");
                    break;
                case K_RATE:
                    fprintf(f, "method: direct, input: rate, src: [esup], periods: [month],"
                               " min: 0, max: 1}\n");
                    break;
                case K_COUNT:
                    fprintf(f, "method: band, input: count, bands: [{hi: 1, points: 100},"
                               " {lo: 1, hi: 3, points: 85}, {lo: 3, points: 60}],"
                               " src: [audit], periods: [month], min: 0, max: 1}\n");
                    break;
                }
            }
        }
    }
    fprintf(f, "adjustments:\n  kinds:\n    - {code: criticism, name: 通报批评, method: deduct,"
               " points: 1, src: [office], periods: [month]}\n");
    if (fclose(f))
        die("cannot write the scheme file");
}

/* ---- the stream ------------------------------------------------------------------------- */

struct slot {
    struct score_obs o;
    char ref[32], unit[16], ind[16], period[24];
};

struct gen {
    const struct opts *o;
    bool random;
    size_t n_batches, batch_no;
    /* source batches: the current batch's source and month, and the sources' cursors */
    int b_kind; /* 0 stats, 1 office, 2 esup, 3 audit */
    uint32_t b_month;
    size_t vcursor[2][N_MONTHS];
    size_t ecursor[2];
    uint32_t *src_leaves[4];
    size_t n_src_leaves[4];
    size_t n_value_leaves, n_event_leaves;
    uint32_t *value_leaf, *event_leaf; /* leaf indices by kind */
    uint32_t *cell_rev;                /* per (unit, value leaf, month): revisions sent so far */
    struct ev *evs;                    /* events sent so far */
    size_t n_evs;
    uint64_t seq;
};

static void gen_init(struct gen *g, const struct opts *o, bool random)
{
    memset(g, 0, sizeof *g);
    g->o = o;
    g->random = random;
    g->n_batches = (o->obs + o->batch - 1) / o->batch;
    for (int k = 0; k < 4; k++)
        g->src_leaves[k] = xcalloc(o->leaves, sizeof *g->src_leaves[k]);
    for (size_t l = 0; l < o->leaves; l++) {
        int k = (int)leaf_kind(l); /* K_EFF stats, K_DIRECT office, K_RATE esup, K_COUNT audit */
        g->src_leaves[k][g->n_src_leaves[k]++] = (uint32_t)l;
    }
    g->value_leaf = xcalloc(o->leaves, sizeof *g->value_leaf);
    g->event_leaf = xcalloc(o->leaves, sizeof *g->event_leaf);
    for (size_t l = 0; l < o->leaves; l++) {
        enum kind k = leaf_kind(l);
        if (k == K_RATE || k == K_COUNT)
            g->event_leaf[g->n_event_leaves++] = (uint32_t)l;
        else
            g->value_leaf[g->n_value_leaves++] = (uint32_t)l;
    }
    g->cell_rev = xcalloc(o->units * g->n_value_leaves * N_MONTHS, sizeof *g->cell_rev);
    g->evs = xcalloc(o->obs + 1, sizeof *g->evs);
}

static void gen_fini(struct gen *g)
{
    for (int k = 0; k < 4; k++)
        free(g->src_leaves[k]);
    free(g->value_leaf);
    free(g->event_leaf);
    free(g->cell_rev);
    free(g->evs);
}

static void fill(struct slot *s, const char *src, uint64_t rev, uint32_t unit, uint32_t leaf,
                 uint32_t month, double value, int64_t at)
{
    snprintf(s->unit, sizeof s->unit, "U%03u", unit);
    snprintf(s->ind, sizeof s->ind, "L%03u", leaf);
    snprintf(s->period, sizeof s->period, "2015-%02u", month + 1);
    s->o = (struct score_obs){.src = src,
                              .ref = s->ref,
                              .rev = rev,
                              .unit = s->unit,
                              .indicator = s->ind,
                              .period = s->period,
                              .value = value,
                              .w = 1,
                              .at = at};
}

/* Starts a batch of the source-batch stream: which adapter, which month. */
static void gen_batch(struct gen *g)
{
    const struct opts *o = g->o;
    uint32_t now = (uint32_t)(g->batch_no * N_MONTHS / (g->n_batches ? g->n_batches : 1));
    if (now >= N_MONTHS)
        now = N_MONTHS - 1;
    g->batch_no++;
    if (rndf() < o->events) {
        g->b_kind = 2 + (int)rnd(2);
        g->b_month = now;
    } else {
        g->b_kind = (int)rnd(2);
        g->b_month = now > 0 && rnd(10) == 0 ? rnd(now) : now;
    }
}

/* One observation of the current source batch. */
static void gen_source(struct gen *g, struct slot *s)
{
    const struct opts *o = g->o;
    int64_t at = 1420070400000 + (int64_t)g->seq * 10;
    g->seq++;
    int k = g->b_kind;
    if (k >= 2) {
        struct ev *e;
        uint32_t idx;
        if (g->n_evs && rndf() < o->revisions) {
            /* a status change of a recent case of this source */
            size_t back = g->n_evs < 20000 ? g->n_evs : 20000;
            idx = (uint32_t)(g->n_evs - 1 - rnd((uint32_t)back));
            e = &g->evs[idx];
            e->rev++;
        } else {
            idx = (uint32_t)g->n_evs++;
            e = &g->evs[idx];
            size_t pos = g->ecursor[k - 2]++;
            e->unit = (uint32_t)((pos / 8) % o->units); /* a few cases per unit, unit by unit */
            e->leaf = g->src_leaves[k][rnd((uint32_t)g->n_src_leaves[k])];
            e->month = g->b_month;
            e->rev = 0;
        }
        snprintf(s->ref, sizeof s->ref, "ev%u", idx);
        bool rate = leaf_kind(e->leaf) == K_RATE;
        fill(s, rate ? "esup" : "audit", e->rev, e->unit, e->leaf, e->month,
             rate ? (rnd(5) ? 1 : 0) : 1, at);
        return;
    }
    size_t nl = g->n_src_leaves[k];
    size_t pos = g->vcursor[k][g->b_month]++ % (o->units * nl);
    uint32_t u = (uint32_t)(pos / nl), leaf = g->src_leaves[k][pos % nl], m = g->b_month;
    /* the value-leaf index of leaf, for the revision counter */
    uint32_t vl = (uint32_t)(leaf / LEAVES_PER_SUB * 8 + leaf % LEAVES_PER_SUB);
    size_t ci = ((size_t)u * g->n_value_leaves + vl) * N_MONTHS + m;
    snprintf(s->ref, sizeof s->ref, "v%u-%u-%u", u, leaf, m);
    bool eff = k == 0;
    double v = eff ? -5 + rnd(4001) / 100.0 : rnd(10001) / 100.0;
    fill(s, eff ? "stats" : "office", g->cell_rev[ci]++, u, leaf, m, v, at);
}

static void gen_one(struct gen *g, struct slot *s)
{
    const struct opts *o = g->o;
    int64_t at = 1420070400000 + (int64_t)g->seq * 10;
    g->seq++;
    if (g->n_event_leaves && rndf() < o->events) {
        uint32_t k = g->n_evs && rndf() < o->revisions ? rnd((uint32_t)g->n_evs) : UINT32_MAX;
        struct ev *e;
        if (k == UINT32_MAX) {
            k = (uint32_t)g->n_evs++;
            e = &g->evs[k];
            e->unit = rnd((uint32_t)o->units);
            e->leaf = g->event_leaf[rnd((uint32_t)g->n_event_leaves)];
            e->month = rnd(N_MONTHS);
            e->rev = 0;
        } else {
            e = &g->evs[k];
            e->rev++;
        }
        snprintf(s->ref, sizeof s->ref, "ev%u", k);
        bool rate = leaf_kind(e->leaf) == K_RATE;
        fill(s, rate ? "esup" : "audit", e->rev, e->unit, e->leaf, e->month,
             rate ? (rnd(5) ? 1 : 0) : 1, at);
        return;
    }
    uint32_t u = rnd((uint32_t)o->units), vl = rnd((uint32_t)g->n_value_leaves), m = rnd(N_MONTHS);
    size_t ci = ((size_t)u * g->n_value_leaves + vl) * N_MONTHS + m;
    uint32_t leaf = g->value_leaf[vl];
    snprintf(s->ref, sizeof s->ref, "v%u-%u-%u", u, leaf, m);
    bool eff = leaf_kind(leaf) == K_EFF;
    double v = eff ? -5 + rnd(4001) / 100.0 : rnd(10001) / 100.0;
    fill(s, eff ? "stats" : "office", g->cell_rev[ci]++, u, leaf, m, v, at);
}

/* ---- the run ------------------------------------------------------------------------------ */

struct counts {
    size_t cells, totals;
};

static void on_cell(const struct score_cell_change *c, void *arg)
{
    (void)c;
    ((struct counts *)arg)->cells++;
}

static void on_total(const struct score_total_change *t, void *arg)
{
    (void)t;
    ((struct counts *)arg)->totals++;
}

static void dump_cell(const struct score_cell_change *c, void *arg)
{
    fprintf(arg, "C %s %zu %zu %.17g %.17g %u\n", c->period, c->unit, c->node, c->value, c->score,
            c->n_obs);
}

static void dump_total(const struct score_total_change *t, void *arg)
{
    fprintf(arg, "T %s %zu %.17g %.17g %u %s %d\n", t->period, t->unit, t->total, t->coverage,
            t->rank, t->grade, t->vetoed);
}

static void count_cell(const struct score_cell_change *c, void *arg)
{
    (void)c;
    (*(size_t *)arg)++;
}

/* What a batch is gathered into for score_engine_apply_batch (allocated before the heap
 * baseline). */
struct work {
    struct score_obs *obs;
    struct score_checked *chk;
};

static bool per_obs; /* --per-obs: score_engine_check, then score_engine_apply one by one */

static struct work work_new(size_t n)
{
    struct work w = {xcalloc(n, sizeof *w.obs), xcalloc(n, sizeof *w.chk)};
    return w;
}

static void work_free(struct work *w)
{
    free(w->obs);
    free(w->chk);
}

/* One batch through the engine as the scorer does it (scorer/scr_batch.c): check each
 * (score_engine_check_ex, keeping the accepted observations and their handles), begin, apply
 * them (score_engine_apply_batch), changes, commit. With --per-obs: score_engine_check for
 * each, then score_engine_apply for each accepted one. Returns the CPU seconds spent. */
static double run_batch(struct score_engine *e, struct slot *slots, size_t n, struct work *w,
                        struct counts *ch, size_t *rejected)
{
    double t0 = now_cpu();
    if (per_obs) {
        for (size_t i = 0; i < n; i++) {
            if (score_engine_check(e, &slots[i].o, NULL, 0) != KP_R_OK) {
                slots[i].o.src = NULL; /* refused: not applied */
                (*rejected)++;
            }
        }
        score_engine_begin(e);
        for (size_t i = 0; i < n; i++)
            if (slots[i].o.src)
                score_engine_apply(e, &slots[i].o);
    } else {
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            if (score_engine_check_ex(e, &slots[i].o, NULL, 0, &w->chk[k]) != KP_R_OK) {
                (*rejected)++;
                continue;
            }
            w->obs[k++] = slots[i].o;
        }
        score_engine_begin(e);
        *rejected += score_engine_apply_batch(e, w->obs, w->chk, k, NULL);
    }
    score_engine_changes(e, on_cell, on_total, ch);
    score_engine_commit(e);
    return now_cpu() - t0;
}

struct result {
    const char *name;
    size_t obs, cells, records, bytes, changed_cells, changed_totals, rejected;
    double secs;
};

static void print_row(const struct result *r)
{
    double ops = r->secs > 0 ? (double)r->obs / r->secs : 0;
    char bpc[32] = "-";
    if (r->cells && r->bytes)
        snprintf(bpc, sizeof bpc, "%.1f", (double)r->bytes / (double)r->cells);
    printf("| %s | %zu | %.0f | %.0f | %zu | %zu | %s | %zu | %zu |\n", r->name, r->obs, ops,
           r->obs ? r->secs * 1e9 / (double)r->obs : 0, r->cells, r->records, bpc, r->changed_cells,
           r->changed_totals);
}

static struct result run_main(const struct opts *o, const struct score_scheme *s, bool random)
{
    struct gen g;
    gen_init(&g, o, random);
    struct slot *slots = xcalloc(o->batch, sizeof *slots);
    struct work w = work_new(o->batch);
    struct result r = {.name = random ? "stream, random order" : "stream, source batches"};
    size_t base = heap_bytes();
    struct score_engine *e = NULL;
    if (score_engine_new(s, &e))
        die("score_engine_new failed");
    struct counts ch = {0, 0};
    for (size_t done = 0; done < o->obs;) {
        size_t n = o->obs - done < o->batch ? o->obs - done : o->batch;
        if (!random)
            gen_batch(&g);
        for (size_t i = 0; i < n; i++) {
            if (random)
                gen_one(&g, &slots[i]);
            else
                gen_source(&g, &slots[i]);
        }
        r.secs += run_batch(e, slots, n, &w, &ch, &r.rejected);
        done += n;
    }
    r.obs = o->obs;
    r.bytes = heap_bytes() - base;
    score_engine_foreach_cell(e, count_cell, &r.cells);
    r.records = score_engine_n_records(e);
    r.changed_cells = ch.cells;
    r.changed_totals = ch.totals;
    if (o->dump && !random) {
        FILE *f = fopen(o->dump, "w");
        if (!f)
            die("cannot write the dump file");
        score_engine_foreach_cell(e, dump_cell, f);
        score_engine_foreach_total(e, dump_total, f);
        fclose(f);
    }
    score_engine_destroy(&e);
    free(slots);
    work_free(&w);
    gen_fini(&g);
    return r;
}

/* Many records on one cell: `n` refs on one value cell (one batch), then a batch of `n`
 * revisions spread over them (what is timed), or `n` events on one event cell. */
static struct result run_hot(const struct opts *o, const struct score_scheme *s, bool events,
                             size_t n)
{
    struct slot *slots = xcalloc(n, sizeof *slots);
    struct work w = work_new(n);
    struct result r = {.name = events ? "hot event cell" : "hot value cell"};
    struct score_engine *e = NULL;
    if (score_engine_new(s, &e))
        die("score_engine_new failed");
    struct counts ch = {0, 0};
    uint32_t leaf = events ? 8 : 4; /* a rate leaf / a direct leaf */
    if (!events) {
        for (size_t i = 0; i < n; i++) {
            snprintf(slots[i].ref, sizeof slots[i].ref, "hot%zu", i);
            fill(&slots[i], "office", 0, 0, leaf, 2, (double)(i % 100), (int64_t)i);
        }
        run_batch(e, slots, n, &w, &ch, &r.rejected);
    }
    for (size_t i = 0; i < n; i++) {
        if (events) {
            snprintf(slots[i].ref, sizeof slots[i].ref, "hev%zu", i);
            fill(&slots[i], "esup", 0, 0, leaf, 2, (double)(i % 3 != 0), (int64_t)i);
        } else {
            snprintf(slots[i].ref, sizeof slots[i].ref, "hot%u", rnd((uint32_t)n));
            fill(&slots[i], "office", 1 + i, 0, leaf, 2, (double)(i % 97), (int64_t)(n + i));
        }
    }
    (void)o;
    r.secs = run_batch(e, slots, n, &w, &ch, &r.rejected);
    r.obs = n;
    r.records = score_engine_n_records(e);
    score_engine_foreach_cell(e, count_cell, &r.cells);
    r.changed_cells = ch.cells;
    r.changed_totals = ch.totals;
    score_engine_destroy(&e);
    free(slots);
    work_free(&w);
    return r;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: bench_engine [--units N] [--leaves N] [--obs N] [--batch N] [--events F]\n"
            "                    [--revisions F] [--hot-value N] [--hot-events N] [--seed N]\n"
            "                    [--only source|random] [--dump FILE] [--per-obs] [--smoke] "
            "[--keep]\n");
    exit(2);
}

static size_t arg_size(const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || !*s)
        usage();
    return (size_t)v;
}

static double arg_double(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (*end || !*s || !(v >= 0 && v <= 1))
        usage();
    return v;
}

int main(int argc, char **argv)
{
    struct opts o = {.units = 70,
                     .leaves = 300,
                     .obs = 2000000,
                     .batch = 1000,
                     .hot_value = 10000,
                     .hot_events = 20000,
                     .events = 0.25,
                     .revisions = 0.10,
                     .seed = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--smoke")) {
            o.smoke = true;
            o.units = 14;
            o.leaves = 50;
            o.obs = 20000;
            o.batch = 500;
            o.hot_value = 500;
            o.hot_events = 1000;
            continue;
        }
        if (!strcmp(a, "--per-obs")) {
            per_obs = true;
            continue;
        }
        if (!strcmp(a, "--keep")) {
            o.keep = true;
            continue;
        }
        if (!v)
            usage();
        i++;
        if (!strcmp(a, "--units"))
            o.units = arg_size(v);
        else if (!strcmp(a, "--leaves"))
            o.leaves = arg_size(v);
        else if (!strcmp(a, "--obs"))
            o.obs = arg_size(v);
        else if (!strcmp(a, "--batch"))
            o.batch = arg_size(v);
        else if (!strcmp(a, "--hot-value"))
            o.hot_value = arg_size(v);
        else if (!strcmp(a, "--hot-events"))
            o.hot_events = arg_size(v);
        else if (!strcmp(a, "--events"))
            o.events = arg_double(v);
        else if (!strcmp(a, "--revisions"))
            o.revisions = arg_double(v);
        else if (!strcmp(a, "--seed"))
            o.seed = arg_size(v);
        else if (!strcmp(a, "--dump"))
            o.dump = v;
        else if (!strcmp(a, "--only"))
            o.only = !strcmp(v, "source") ? 1 : !strcmp(v, "random") ? 2 : (usage(), 0);
        else
            usage();
    }
    if (o.units < 1 || o.units > 999 || o.leaves < 10 || o.leaves % 10 || o.leaves > 990 ||
        o.batch < 1 || o.leaves / LEAVES_PER_SUB < N_AREAS)
        usage();

    const char *tmp = getenv("TMPDIR");
    char path[512];
    snprintf(path, sizeof path, "%s/kp_bench_scheme_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0)
        die("mkstemp failed");
    close(fd);
    write_scheme(&o, path);
    struct score_scheme *s = NULL;
    char err[512];
    if (score_scheme_load(path, &s, err, sizeof err)) {
        fprintf(stderr, "bench_engine: %s\n", err);
        return 2;
    }
    if (o.keep)
        fprintf(stderr, "bench_engine: scheme kept at %s\n", path);
    else
        unlink(path);

    struct result src_r = {.name = "stream, source batches"},
                  rnd_r = {.name = "stream, random order"};
    rng = o.seed;
    if (o.only != 2)
        src_r = run_main(&o, s, false);
    rng = o.seed;
    if (o.only != 1)
        rnd_r = run_main(&o, s, true);
    rng = o.seed + 1;
    struct result hv = run_hot(&o, s, false, o.hot_value);
    struct result he = run_hot(&o, s, true, o.hot_events);
    size_t n_nodes = score_scheme_n_nodes(s);
    score_scheme_destroy(&s);

    printf("engine: %zu units × %zu leaves (%zu nodes), %zu observations in batches of %zu, "
           "%.0f%% events, %.0f%% event revisions, %s%s\n\n",
           o.units, o.leaves, n_nodes, o.obs, o.batch, o.events * 100, o.revisions * 100,
           per_obs ? "score_engine_check + score_engine_apply per observation"
                   : "score_engine_check_ex + score_engine_apply_batch",
           o.smoke ? " (smoke)" : "");
    printf("| run | observations | obs/s (1 core) | ns/obs | cells | records | bytes/cell |"
           " changed cells | changed totals |\n");
    printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    print_row(&src_r);
    print_row(&rnd_r);
    print_row(&hv);
    print_row(&he);
    printf("\nbytes/cell: heap in use by the engine after the stream (glibc mallinfo2, malloc"
           " overhead included; n/a under sanitizers) over the cells it holds (every node but"
           " the root, every period).\n");
    printf("{\"bench\":\"engine\",\"api\":\"%s\",\"units\":%zu,\"leaves\":%zu,\"obs\":%zu,"
           "\"batch\":%zu,"
           "\"events\":%.2f,\"obs_per_s\":%.0f,\"ns_per_obs\":%.1f,\"cells\":%zu,"
           "\"records\":%zu,\"heap_bytes\":%zu,\"bytes_per_cell\":%.1f,"
           "\"random_obs_per_s\":%.0f,\"random_bytes_per_cell\":%.1f,"
           "\"hot_value_ms\":%.2f,\"hot_events_ms\":%.2f,\"rejected\":%zu}\n",
           per_obs ? "per_obs" : "batch", o.units, o.leaves, src_r.obs, o.batch, o.events,
           src_r.secs > 0 ? (double)src_r.obs / src_r.secs : 0,
           src_r.obs ? src_r.secs * 1e9 / (double)src_r.obs : 0, src_r.cells, src_r.records,
           src_r.bytes, src_r.cells ? (double)src_r.bytes / (double)src_r.cells : 0,
           rnd_r.secs > 0 ? (double)rnd_r.obs / rnd_r.secs : 0,
           rnd_r.cells ? (double)rnd_r.bytes / (double)rnd_r.cells : 0, hv.secs * 1e3,
           he.secs * 1e3, src_r.rejected + rnd_r.rejected + hv.rejected + he.rejected);
    /* a refusal means the generator and the scheme disagree: the numbers would be wrong */
    size_t rej = src_r.rejected + rnd_r.rejected + hv.rejected + he.rejected;
    if (rej) {
        fprintf(stderr, "bench_engine: %zu observations refused\n", rej);
        return 1;
    }
    return 0;
}
