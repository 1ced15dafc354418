/*
 * score_engine: the scoring engine proper. It keeps, for one scheme, the latest revision
 * of every observation (one record per (src, ref), interned strings, an open-addressing
 * map), attaches each record to the cell (unit, leaf, period) it targets, and keeps the
 * derived state current after every apply: the leaf's input value (the record with the
 * greatest (at, src, ref), or an event aggregate summed in (src, ref) order), its score,
 * cells of coarser periods the scheme derives (latest/sum/avg/pooled events), the
 * group-relative rescoring, the weighted rollup with coverage, adjustments and veto, ranks
 * and grades. Every derived quantity is recomputed from its inputs in a canonical order,
 * never patched by subtraction, so the state is a function of the set of latest revisions
 * whatever the order of arrival (ARCHITECTURE.md guarantees 2 and 3), and rollback can undo
 * a batch by restoring the records it changed and recomputing the cells they touched.
 */
#include "score_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kp_err.h"

struct score_rec {
    const struct score__str *src;
    const struct score__str *ref;
    uint64_t rev;
    uint32_t unit, node, period;
    double value, w;
    int64_t at;
};

struct score_cell {
    struct score_rec **recs; /* sorted by (src, ref) */
    uint32_t n_recs, cap_recs;
    bool present;
    double value, score, cov;
    uint32_t n_obs;
    double ev_n, ev_w, ev_wv, ev_v; /* event sums, for pooling into coarser periods */
    /* the state at the first change in the current unit of work */
    uint64_t tgen;
    bool o_present;
    double o_value, o_score;
    uint32_t o_n_obs;
};

/* One unit in one period. */
struct score_up {
    uint32_t unit, period;
    struct score_cell **cells; /* n_nodes, allocated on first use */
    bool present;
    double total, coverage;
    uint32_t rank;
    int grade;
    bool vetoed;
    uint64_t tgen;
    bool o_present;
    double o_total, o_coverage;
    uint32_t o_rank;
    int o_grade;
    bool o_vetoed;
};

struct score_period {
    const struct score__str *code;
    struct score__period_key key;
    struct score_up **ups;                /* n_units */
    uint32_t *kids;                       /* finer periods inside, sorted by (kind, code) */
    uint32_t n_kids, cap_kids;
    long anc[SCORE_P__COUNT];             /* derived period of each coarser kind, or -1 */
};

struct undo {
    struct score_rec *rec;
    bool created;
    struct score_rec old;
};

struct cellref {
    uint32_t period, unit, node;
};

struct rankref {
    uint32_t period;
    size_t group;
};

struct rank_key;

struct score_engine {
    const struct score_scheme *s;
    size_t n_tree; /* nodes [0, n_tree) form the weighted tree; the rest are adjustments */
    struct score__pool pool;
    struct score_rec **map;
    size_t map_cap, map_n;
    struct score_period **periods;
    size_t n_periods, cap_periods;
    bool in_txn;
    uint64_t gen;
    struct undo *undo;
    size_t n_undo, cap_undo;
    struct score_up **tc_up; /* touched cells: (up, node) */
    uint32_t *tc_node;
    size_t n_tc, cap_tc;
    struct score_up **tt; /* touched totals */
    size_t n_tt, cap_tt;
    struct rankref *rk; /* groups whose ranks need recomputing */
    size_t n_rk, cap_rk;
    struct rank_key *rkey; /* ranking scratch */
    size_t cap_rkey;
    struct cellref *dirty; /* rollback scratch */
    size_t n_dirty, cap_dirty;
};

#define GROW(arr, n, cap)                                                                          \
    do {                                                                                           \
        if ((n) == (cap)) {                                                                        \
            (cap) = (cap) ? (cap) * 2 : 16;                                                        \
            (arr) = kp_xrealloc((arr), (cap) * sizeof *(arr));                                     \
        }                                                                                          \
    } while (0)

static bool same(double a, double b)
{
    return a == b || (isnan(a) && isnan(b));
}

/* ---- record map ------------------------------------------------------------------------ */

static uint64_t rec_hash(const struct score__str *src, const struct score__str *ref)
{
    return src->hash ^ (ref->hash * 0x9E3779B97F4A7C15ull);
}

static size_t rec_slot(const struct score_engine *e, const struct score__str *src,
                       const struct score__str *ref)
{
    size_t mask = e->map_cap - 1;
    size_t i = rec_hash(src, ref) & mask;
    while (e->map[i] && !(e->map[i]->src == src && e->map[i]->ref == ref))
        i = (i + 1) & mask;
    return i;
}

static struct score_rec *rec_find(const struct score_engine *e, const struct score__str *src,
                                  const struct score__str *ref)
{
    return e->map_cap ? e->map[rec_slot(e, src, ref)] : NULL;
}

static void rec_insert(struct score_engine *e, struct score_rec *r)
{
    if ((e->map_n + 1) * 4 > e->map_cap * 3) {
        size_t oc = e->map_cap;
        struct score_rec **om = e->map;
        e->map_cap = oc ? oc * 2 : 256;
        e->map = kp_xcalloc(e->map_cap, sizeof *e->map);
        for (size_t i = 0; i < oc; i++)
            if (om[i])
                e->map[rec_slot(e, om[i]->src, om[i]->ref)] = om[i];
        free(om);
    }
    e->map[rec_slot(e, r->src, r->ref)] = r;
    e->map_n++;
}

/* Linear probing with backward-shift deletion (no tombstones). */
static void rec_remove(struct score_engine *e, struct score_rec *r)
{
    size_t mask = e->map_cap - 1;
    size_t i = rec_slot(e, r->src, r->ref);
    KP_ASSERT(e->map[i] == r);
    e->map[i] = NULL;
    e->map_n--;
    for (size_t j = (i + 1) & mask; e->map[j]; j = (j + 1) & mask) {
        size_t home = rec_hash(e->map[j]->src, e->map[j]->ref) & mask;
        /* move j back to i when home is not cyclically in (i, j] */
        bool stay = (i < j) ? (home > i && home <= j) : (home > i || home <= j);
        if (!stay) {
            e->map[i] = e->map[j];
            e->map[j] = NULL;
            i = j;
        }
    }
}

/* ---- periods, unit-periods and cells ------------------------------------------------------ */

static int kid_cmp(const struct score_engine *e, uint32_t a, uint32_t b)
{
    const struct score_period *pa = e->periods[a], *pb = e->periods[b];
    if (pa->key.kind != pb->key.kind)
        return pa->key.kind < pb->key.kind ? -1 : 1;
    return strcmp(pa->code->s, pb->code->s);
}

static uint32_t period_get(struct score_engine *e, const char *code);

static uint32_t period_new(struct score_engine *e, struct score__str *code,
                           const struct score__period_key *key)
{
    struct score_period *p = kp_xcalloc(1, sizeof *p);
    p->code = code;
    p->key = *key;
    p->ups = kp_xcalloc(e->s->n_units ? e->s->n_units : 1, sizeof *p->ups);
    for (int k = 0; k < SCORE_P__COUNT; k++)
        p->anc[k] = -1;
    GROW(e->periods, e->n_periods, e->cap_periods);
    uint32_t idx = (uint32_t)e->n_periods++;
    e->periods[idx] = p;
    code->aux = (long)idx;
    /* the coarser periods the scheme derives, and this one as their kid */
    for (int k = 0; k < (int)key->kind; k++) {
        if (!(e->s->derive & (1u << k)))
            continue;
        struct score__period_key up;
        char buf[16];
        score__period_up(key, (enum score_pkind)k, &up);
        score__period_format(&up, buf, sizeof buf);
        uint32_t a = period_get(e, buf);
        e->periods[idx]->anc[k] = (long)a;
        struct score_period *ap = e->periods[a];
        GROW(ap->kids, ap->n_kids, ap->cap_kids);
        uint32_t pos = ap->n_kids;
        while (pos > 0 && kid_cmp(e, ap->kids[pos - 1], idx) > 0) {
            ap->kids[pos] = ap->kids[pos - 1];
            pos--;
        }
        ap->kids[pos] = idx;
        ap->n_kids++;
    }
    return idx;
}

/* Index of a period (already validated), created on first use. */
static uint32_t period_get(struct score_engine *e, const char *code)
{
    struct score__str *c = score__intern(&e->pool, code);
    if (c->aux >= 0)
        return (uint32_t)c->aux;
    struct score__period_key key;
    int rc = score__period_parse(code, &key);
    KP_ASSERT(rc == 0);
    return period_new(e, c, &key);
}

static struct score_up *up_get(struct score_engine *e, uint32_t p, uint32_t u)
{
    struct score_period *per = e->periods[p];
    if (!per->ups[u]) {
        struct score_up *up = kp_xcalloc(1, sizeof *up);
        up->unit = u;
        up->period = p;
        up->cells = kp_xcalloc(e->s->n_nodes, sizeof *up->cells);
        up->grade = -1;
        per->ups[u] = up;
    }
    return per->ups[u];
}

static struct score_cell *cell_get(struct score_up *up, uint32_t n)
{
    if (!up->cells[n]) {
        struct score_cell *c = kp_xcalloc(1, sizeof *c);
        c->value = NAN;
        c->score = NAN;
        up->cells[n] = c;
    }
    return up->cells[n];
}

static struct score_cell *cell_peek(const struct score_engine *e, uint32_t p, uint32_t u,
                                    uint32_t n)
{
    const struct score_up *up = e->periods[p]->ups[u];
    return up ? up->cells[n] : NULL;
}

/* ---- change tracking ---------------------------------------------------------------------- */

static void touch_cell(struct score_engine *e, struct score_up *up, uint32_t n,
                       struct score_cell *c)
{
    if (!e->in_txn || c->tgen == e->gen)
        return;
    c->tgen = e->gen;
    c->o_present = c->present;
    c->o_value = c->value;
    c->o_score = c->score;
    c->o_n_obs = c->n_obs;
    if (e->n_tc == e->cap_tc) {
        e->cap_tc = e->cap_tc ? e->cap_tc * 2 : 64;
        e->tc_up = kp_xrealloc(e->tc_up, e->cap_tc * sizeof *e->tc_up);
        e->tc_node = kp_xrealloc(e->tc_node, e->cap_tc * sizeof *e->tc_node);
    }
    e->tc_up[e->n_tc] = up;
    e->tc_node[e->n_tc] = n;
    e->n_tc++;
}

static void touch_total(struct score_engine *e, struct score_up *up)
{
    if (!e->in_txn || up->tgen == e->gen)
        return;
    up->tgen = e->gen;
    up->o_present = up->present;
    up->o_total = up->total;
    up->o_coverage = up->coverage;
    up->o_rank = up->rank;
    up->o_grade = up->grade;
    up->o_vetoed = up->vetoed;
    GROW(e->tt, e->n_tt, e->cap_tt);
    e->tt[e->n_tt++] = up;
}

/* Sets a cell's visible state; returns true when anything changed. */
static bool cell_set(struct score_engine *e, struct score_up *up, uint32_t n,
                     struct score_cell *c, bool present, double value, double score,
                     uint32_t n_obs)
{
    if (!present) {
        value = NAN;
        score = NAN;
        n_obs = 0;
    }
    if (c->present == present && same(c->value, value) && same(c->score, score) &&
        c->n_obs == n_obs)
        return false;
    touch_cell(e, up, n, c);
    c->present = present;
    c->value = value;
    c->score = score;
    c->n_obs = n_obs;
    return true;
}

static void rank_dirty(struct score_engine *e, uint32_t p, size_t g)
{
    for (size_t i = 0; i < e->n_rk; i++)
        if (e->rk[i].period == p && e->rk[i].group == g)
            return;
    GROW(e->rk, e->n_rk, e->cap_rk);
    e->rk[e->n_rk].period = p;
    e->rk[e->n_rk].group = g;
    e->n_rk++;
}

/* ---- rollup, ranks, grades ------------------------------------------------------------- */

static int grade_of(const struct score_scheme *s, double total, bool vetoed)
{
    if (!s->n_grades)
        return -1;
    if (vetoed)
        return (int)s->n_grades - 1;
    for (size_t i = 0; i < s->n_grades; i++)
        if (total >= s->grades[i].min - 1e-9)
            return (int)i;
    return (int)s->n_grades - 1;
}

/* Recomputes the inner cells and the total of one unit in one period from its leaf cells.
 * Global renormalisation (SCHEMES.md "Rollup"): an inner node's score is
 * sum(w_i * cov_i * s_i) / sum(w_i * cov_i) over its present children, its coverage
 * sum(w_i * cov_i) / sum(w_i) over its applicable children — so the total is the weighted
 * mean of the present leaves with their full-tree weights, and coverage the share of the
 * total weight present. */
static void rollup(struct score_engine *e, uint32_t p, uint32_t u)
{
    const struct score_scheme *s = e->s;
    struct score_up *up = up_get(e, p, u);
    for (size_t i = e->n_tree; i-- > 0;) {
        const struct score_node *nd = &s->nodes[i];
        if (nd->leaf || score__w(s, u, i) == 0)
            continue;
        double W = 0, P = 0, S = 0;
        uint32_t nobs = 0;
        for (size_t k = 0; k < nd->n_kids; k++) {
            size_t c = nd->kids[k];
            double w = score__w(s, u, c);
            if (w == 0)
                continue;
            W += w;
            const struct score_cell *kc = up->cells[c];
            if (!kc || !kc->present)
                continue;
            double cov = s->nodes[c].leaf ? 1.0 : kc->cov;
            P += w * cov;
            S += w * cov * kc->score;
            nobs += kc->n_obs;
        }
        struct score_cell *c = up->cells[i];
        if (P > 0 || (c && c->present)) {
            c = cell_get(up, (uint32_t)i);
            double cov = P > 0 ? P / W : 0;
            if (cell_set(e, up, (uint32_t)i, c, P > 0, NAN, P > 0 ? S / P : NAN, nobs) ||
                c->cov != cov) {
                touch_cell(e, up, (uint32_t)i, c);
                c->cov = cov;
            }
        }
    }
    /* adjustments and veto */
    double add = 0, deduct = 0;
    bool vetoed = false, any_adj = false;
    for (size_t i = e->n_tree; i < s->n_nodes; i++) {
        const struct score_cell *c = up->cells[i];
        if (!c || !c->present)
            continue;
        any_adj = true;
        switch (s->nodes[i].method) {
        case SCORE_M_ADD:
            add += c->score;
            break;
        case SCORE_M_DEDUCT:
            deduct += c->score;
            break;
        case SCORE_M_VETO:
            vetoed = vetoed || c->score > 0;
            break;
        default:
            break;
        }
    }
    if (s->add_cap >= 0 && add > s->add_cap)
        add = s->add_cap;
    if (s->deduct_cap >= 0 && deduct > s->deduct_cap)
        deduct = s->deduct_cap;
    const struct score_cell *root = up->cells[0];
    bool rp = root && root->present;
    bool present = rp || any_adj;
    double total = present ? (rp ? root->score : 0) + add - deduct : 0;
    double coverage = rp ? root->cov : 0;
    if (!present)
        vetoed = false;
    int grade = present ? grade_of(s, total, vetoed) : -1;
    if (up->present == present && same(up->total, total) && up->coverage == coverage &&
        up->vetoed == vetoed && up->grade == grade)
        return;
    touch_total(e, up);
    up->present = present;
    up->total = total;
    up->coverage = coverage;
    up->vetoed = vetoed;
    up->grade = grade;
    if (!present)
        up->rank = 0;
    rank_dirty(e, p, s->units[u].group);
}

struct rank_key {
    struct score_up *up;
    bool vetoed;
    double key; /* the total rounded to 1e-9 (SCHEMES.md "Ranks") */
};

/* Orders non-vetoed before vetoed, then by total descending; equal keys tie. */
static int rank_key_cmp(const void *pa, const void *pb)
{
    const struct rank_key *a = pa, *b = pb;
    if (a->vetoed != b->vetoed)
        return a->vetoed ? 1 : -1;
    return a->key > b->key ? -1 : a->key < b->key ? 1 : 0;
}

/* Standard competition ranking (1,2,2,4) of a group's present units in one period. */
static void ranks(struct score_engine *e, uint32_t p, size_t g)
{
    const struct score_group *gr = &e->s->groups[g];
    struct score_period *per = e->periods[p];
    if (e->cap_rkey < gr->n_units) {
        e->cap_rkey = gr->n_units;
        e->rkey = kp_xrealloc(e->rkey, e->cap_rkey * sizeof *e->rkey);
    }
    size_t n = 0;
    for (size_t i = 0; i < gr->n_units; i++) {
        struct score_up *a = per->ups[gr->units[i]];
        if (!a || !a->present)
            continue;
        e->rkey[n].up = a;
        e->rkey[n].vetoed = a->vetoed;
        e->rkey[n].key = round(a->total * 1e9);
        n++;
    }
    if (n > 1)
        qsort(e->rkey, n, sizeof *e->rkey, rank_key_cmp);
    uint32_t r = 1;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && rank_key_cmp(&e->rkey[i - 1], &e->rkey[i]) != 0)
            r = (uint32_t)i + 1;
        struct score_up *a = e->rkey[i].up;
        if (a->rank != r) {
            touch_total(e, a);
            a->rank = r;
        }
    }
}

static void flush_ranks(struct score_engine *e)
{
    for (size_t i = 0; i < e->n_rk; i++)
        ranks(e, e->rk[i].period, e->rk[i].group);
    e->n_rk = 0;
}

/* ---- leaf cells ----------------------------------------------------------------------------- */

static double input_value(const struct score_node *nd, double n, double w, double wv, double v,
                          bool *present)
{
    switch (nd->input) {
    case SCORE_I_COUNT:
        return n;
    case SCORE_I_SUM:
        return v;
    case SCORE_I_AVG:
    case SCORE_I_RATE:
        if (!(w > 0)) {
            *present = false;
            return NAN;
        }
        return (nd->input == SCORE_I_RATE ? 100.0 : 1.0) * wv / w;
    default:
        return NAN;
    }
}

/* Input value of a cell from its records: the record with the greatest (at, src, ref) for a
 * value leaf (ARCHITECTURE.md guarantee 3: independent of arrival order), or the event sums
 * taken in (src, ref) order. Returns whether the cell is present. */
static bool native_value(const struct score_node *nd, struct score_cell *c, double *value,
                         uint32_t *n_obs)
{
    c->ev_n = c->ev_w = c->ev_wv = c->ev_v = 0;
    *n_obs = c->n_recs;
    if (!c->n_recs) {
        *value = NAN;
        return false;
    }
    if (nd->input == SCORE_I_VALUE && !nd->adjust) {
        const struct score_rec *best = c->recs[0];
        for (uint32_t i = 1; i < c->n_recs; i++) {
            const struct score_rec *r = c->recs[i];
            int cmp = r->at != best->at ? (r->at > best->at ? 1 : -1)
                                        : strcmp(r->src->s, best->src->s);
            if (r->at == best->at && cmp == 0)
                cmp = strcmp(r->ref->s, best->ref->s);
            if (cmp > 0)
                best = r;
        }
        *value = best->value;
        return true;
    }
    for (uint32_t i = 0; i < c->n_recs; i++) {
        const struct score_rec *r = c->recs[i];
        c->ev_n += 1;
        c->ev_w += r->w;
        c->ev_wv += r->w * r->value;
        c->ev_v += r->value;
    }
    bool present = true;
    *value = input_value(nd, c->ev_n, c->ev_w, c->ev_wv, c->ev_v, &present);
    return present;
}

/* Input value of a derived cell (a coarser period) from the leaf's cells in the finer
 * periods inside it, in chronological order. */
static bool derived_value(struct score_engine *e, uint32_t p, uint32_t u, uint32_t n,
                          struct score_cell *c, double *value, uint32_t *n_obs)
{
    const struct score_node *nd = &e->s->nodes[n];
    const struct score_period *per = e->periods[p];
    enum score_pkind src_kind = SCORE_P_YEAR;
    for (int k = 0; k < SCORE_P__COUNT; k++)
        if (nd->periods & (1u << k))
            src_kind = (enum score_pkind)k;
    double sum = 0, last = NAN;
    uint32_t cnt = 0, nobs = 0;
    c->ev_n = c->ev_w = c->ev_wv = c->ev_v = 0;
    for (uint32_t i = 0; i < per->n_kids; i++) {
        const struct score_period *kp = e->periods[per->kids[i]];
        if (kp->key.kind != src_kind)
            continue;
        const struct score_cell *kc = cell_peek(e, per->kids[i], u, n);
        if (!kc || !kc->n_recs)
            continue;
        nobs += kc->n_obs;
        c->ev_n += kc->ev_n;
        c->ev_w += kc->ev_w;
        c->ev_wv += kc->ev_wv;
        c->ev_v += kc->ev_v;
        if (kc->present) {
            sum += kc->value;
            last = kc->value;
            cnt++;
        }
    }
    *n_obs = nobs;
    bool present = true;
    switch (nd->rollup) {
    case SCORE_R_LATEST:
        *value = last;
        return cnt > 0;
    case SCORE_R_SUM:
        *value = sum;
        return cnt > 0;
    case SCORE_R_AVG:
        *value = cnt ? sum / cnt : NAN;
        return cnt > 0;
    case SCORE_R_POOL:
        if (!nobs) {
            *value = NAN;
            return false;
        }
        *value = input_value(nd, c->ev_n, c->ev_w, c->ev_wv, c->ev_v, &present);
        return present;
    default:
        *value = NAN;
        return false;
    }
}

/* Group-relative methods: re-scores leaf n of every unit of group g in period p, and rolls
 * up the units whose score changed. */
static void rescore_group(struct score_engine *e, uint32_t p, size_t g, uint32_t n)
{
    const struct score_node *nd = &e->s->nodes[n];
    const struct score_group *gr = &e->s->groups[g];
    struct score_period *per = e->periods[p];
    double mx = -INFINITY, mn = INFINITY;
    for (size_t i = 0; i < gr->n_units; i++) {
        const struct score_up *up = per->ups[gr->units[i]];
        const struct score_cell *c = up ? up->cells[n] : NULL;
        if (c && c->present) {
            mx = fmax(mx, c->value);
            mn = fmin(mn, c->value);
        }
    }
    for (size_t i = 0; i < gr->n_units; i++) {
        struct score_up *up = per->ups[gr->units[i]];
        struct score_cell *c = up ? up->cells[n] : NULL;
        if (!c || !c->present)
            continue;
        double sc;
        if (nd->method == SCORE_M_EFFICACY_REL) {
            double good = nd->lower_better ? mn : mx, bad = nd->lower_better ? mx : mn;
            sc = good == bad ? score__clamp(nd, nd->base + nd->span)
                             : score__efficacy(nd, c->value, good, bad);
        } else {
            uint32_t r = 1;
            for (size_t j = 0; j < gr->n_units; j++) {
                const struct score_up *o = per->ups[gr->units[j]];
                const struct score_cell *oc = o ? o->cells[n] : NULL;
                if (oc && oc->present &&
                    (nd->lower_better ? oc->value < c->value : oc->value > c->value))
                    r++;
            }
            sc = score__rank_points(nd, r);
        }
        if (cell_set(e, up, n, c, true, c->value, sc, c->n_obs))
            rollup(e, p, gr->units[i]);
    }
}

/* A leaf cell's input changed (present, value): rescore it and roll up. */
static void cell_input(struct score_engine *e, uint32_t p, uint32_t u, uint32_t n,
                       bool present, double value, uint32_t n_obs)
{
    const struct score_node *nd = &e->s->nodes[n];
    struct score_up *up = up_get(e, p, u);
    struct score_cell *c = cell_get(up, n);
    if (nd->relative) {
        /* keep the held score for now: the group pass below decides it, for this unit and
         * for the others whose thresholds or ranks move with it */
        double held = c->present && present ? c->score : NAN;
        if (!cell_set(e, up, n, c, present, value, held, n_obs))
            return;
        rescore_group(e, p, e->s->units[u].group, n);
        rollup(e, p, u);
        return;
    }
    double sc = present ? score__method_value(nd, value) : NAN;
    if (cell_set(e, up, n, c, present, value, sc, n_obs))
        rollup(e, p, u);
}

/* The records of native cell (p, u, n) changed. */
static void leaf_changed(struct score_engine *e, uint32_t p, uint32_t u, uint32_t n)
{
    const struct score_node *nd = &e->s->nodes[n];
    struct score_up *up = up_get(e, p, u);
    struct score_cell *c = cell_get(up, n);
    double value;
    uint32_t nobs;
    bool present = native_value(nd, c, &value, &nobs);
    cell_input(e, p, u, n, present, value, nobs);
    if (nd->rollup == SCORE_R_NONE)
        return;
    const struct score_period *per = e->periods[p];
    for (int k = 0; k < (int)per->key.kind; k++) {
        if (per->anc[k] < 0)
            continue;
        uint32_t ap = (uint32_t)per->anc[k];
        struct score_cell *dc = cell_get(up_get(e, ap, u), n);
        present = derived_value(e, ap, u, n, dc, &value, &nobs);
        cell_input(e, ap, u, n, present, value, nobs);
    }
}

/* ---- attaching records to cells -------------------------------------------------------- */

static int rec_cmp(const struct score_rec *a, const struct score_rec *b)
{
    int c = strcmp(a->src->s, b->src->s);
    return c ? c : strcmp(a->ref->s, b->ref->s);
}

static uint32_t rec_pos(const struct score_cell *c, const struct score_rec *r)
{
    uint32_t lo = 0, hi = c->n_recs;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (rec_cmp(c->recs[mid], r) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void attach(struct score_engine *e, struct score_rec *r)
{
    struct score_cell *c = cell_get(up_get(e, r->period, r->unit), r->node);
    if (c->n_recs == c->cap_recs) {
        c->cap_recs = c->cap_recs ? c->cap_recs * 2 : 2;
        c->recs = kp_xrealloc(c->recs, c->cap_recs * sizeof *c->recs);
    }
    uint32_t pos = rec_pos(c, r);
    memmove(c->recs + pos + 1, c->recs + pos, (c->n_recs - pos) * sizeof *c->recs);
    c->recs[pos] = r;
    c->n_recs++;
}

static void detach(struct score_engine *e, struct score_rec *r)
{
    struct score_cell *c = cell_peek(e, r->period, r->unit, r->node);
    KP_ASSERT(c != NULL);
    uint32_t pos = rec_pos(c, r);
    KP_ASSERT(pos < c->n_recs && c->recs[pos] == r);
    memmove(c->recs + pos, c->recs + pos + 1, (c->n_recs - pos - 1) * sizeof *c->recs);
    c->n_recs--;
}

/* ---- public API ---------------------------------------------------------------------------- */

int score_engine_new(const struct score_scheme *s, struct score_engine **out)
{
    struct score_engine *e = calloc(1, sizeof *e);
    if (!e)
        return KP_ENOMEM;
    e->s = s;
    e->n_tree = s->n_nodes;
    for (size_t i = 0; i < s->n_nodes; i++)
        if (s->nodes[i].adjust) {
            e->n_tree = i;
            break;
        }
    *out = e;
    return 0;
}

void score_engine_destroy(struct score_engine **ep)
{
    if (!ep || !*ep)
        return;
    struct score_engine *e = *ep;
    for (size_t i = 0; i < e->map_cap; i++)
        free(e->map[i]);
    free(e->map);
    for (size_t p = 0; p < e->n_periods; p++) {
        struct score_period *per = e->periods[p];
        for (size_t u = 0; u < e->s->n_units; u++) {
            struct score_up *up = per->ups[u];
            if (!up)
                continue;
            for (size_t n = 0; n < e->s->n_nodes; n++) {
                if (up->cells[n])
                    free(up->cells[n]->recs);
                free(up->cells[n]);
            }
            free(up->cells);
            free(up);
        }
        free(per->ups);
        free(per->kids);
        free(per);
    }
    free(e->periods);
    free(e->undo);
    free(e->tc_up);
    free(e->tc_node);
    free(e->tt);
    free(e->rk);
    free(e->rkey);
    free(e->dirty);
    score__pool_fini(&e->pool);
    free(e);
    *ep = NULL;
}

enum kp_reason score_engine_check(const struct score_engine *e, const struct score_obs *o,
                                  char *msg, size_t msg_len)
{
    const struct score_scheme *s = e->s;
    char dummy[1];
    if (!msg || !msg_len) {
        msg = dummy;
        msg_len = sizeof dummy;
    }
    msg[0] = '\0';
    if (!o->src || !o->ref || !*o->src || !*o->ref) {
        snprintf(msg, msg_len, "src and ref are required");
        return KP_R_missing_field;
    }
    if (!o->unit || !o->indicator) {
        snprintf(msg, msg_len, "unit and indicator are required");
        return KP_R_missing_field;
    }
    long u = score_scheme_unit_find(s, o->unit);
    if (u < 0) {
        snprintf(msg, msg_len, "unit '%s' is not in scheme %s", o->unit, s->id);
        return KP_R_unknown_unit;
    }
    long n = score_scheme_node_find(s, o->indicator);
    if (n < 0 || !s->nodes[n].leaf) {
        snprintf(msg, msg_len, "indicator '%s' is not a leaf of scheme %s", o->indicator, s->id);
        return KP_R_unknown_indicator;
    }
    const struct score_node *nd = &s->nodes[n];
    if (score__w(s, (size_t)u, (size_t)n) == 0) {
        snprintf(msg, msg_len, "indicator '%s' does not apply to unit '%s' (group %s)",
                 o->indicator, o->unit, s->groups[s->units[u].group].code);
        return KP_R_unknown_indicator;
    }
    if (nd->n_srcs) {
        bool ok = false;
        for (size_t i = 0; i < nd->n_srcs && !ok; i++)
            ok = !strcmp(nd->srcs[i], o->src);
        if (!ok) {
            snprintf(msg, msg_len, "source '%s' does not deliver indicator '%s'",
                     o->src, o->indicator);
            return KP_R_not_granted_indicator;
        }
    }
    struct score__period_key k;
    if (!o->period || score__period_parse(o->period, &k)) {
        snprintf(msg, msg_len, "period '%s' is not in the period grammar",
                 o->period ? o->period : "");
        return KP_R_bad_period;
    }
    if (!(nd->periods & (1u << k.kind))) {
        snprintf(msg, msg_len, "indicator '%s' does not take %s periods", o->indicator,
                 score__pkind_name(k.kind));
        return KP_R_bad_period;
    }
    if (s->year && k.year != s->year) {
        snprintf(msg, msg_len, "period '%s' is outside the scheme's year %d", o->period, s->year);
        return KP_R_bad_period;
    }
    if (!isfinite(o->value) || !isfinite(o->w)) {
        snprintf(msg, msg_len, "value or weight is not finite");
        return KP_R_not_finite;
    }
    if (o->value < nd->vmin || o->value > nd->vmax) {
        snprintf(msg, msg_len, "value %g outside [%g, %g] of indicator '%s'", o->value, nd->vmin,
                 nd->vmax, o->indicator);
        return KP_R_out_of_range;
    }
    if (o->w < 0) {
        snprintf(msg, msg_len, "weight %g is negative", o->w);
        return KP_R_out_of_range;
    }
    return KP_R_OK;
}

void score_engine_begin(struct score_engine *e)
{
    KP_ASSERT(!e->in_txn);
    e->in_txn = true;
    e->gen++;
    e->n_undo = 0;
    e->n_tc = 0;
    e->n_tt = 0;
}

enum kp_reason score_engine_apply(struct score_engine *e, const struct score_obs *o)
{
    enum kp_reason r = score_engine_check(e, o, NULL, 0);
    if (r != KP_R_OK)
        return r;
    const struct score_scheme *s = e->s;
    struct score__str *src = score__intern(&e->pool, o->src);
    struct score__str *ref = score__intern(&e->pool, o->ref);
    struct score_rec *rec = rec_find(e, src, ref);
    /* ARCHITECTURE.md guarantee 2: a revision lower than or equal to the held one changes
     * nothing. */
    if (rec && o->rev <= rec->rev)
        return KP_R_OK;
    uint32_t p = period_get(e, o->period);
    uint32_t u = (uint32_t)score_scheme_unit_find(s, o->unit);
    uint32_t n = (uint32_t)score_scheme_node_find(s, o->indicator);
    if (e->in_txn) {
        GROW(e->undo, e->n_undo, e->cap_undo);
        struct undo *ud = &e->undo[e->n_undo++];
        ud->rec = rec;
        ud->created = rec == NULL;
        if (rec)
            ud->old = *rec;
    }
    uint32_t op = 0, ou = 0, on = 0;
    bool moved = false;
    if (rec) {
        detach(e, rec);
        op = rec->period;
        ou = rec->unit;
        on = rec->node;
        moved = op != p || ou != u || on != n;
    } else {
        rec = kp_xcalloc(1, sizeof *rec);
        rec->src = src;
        rec->ref = ref;
        rec_insert(e, rec);
        if (e->in_txn)
            e->undo[e->n_undo - 1].rec = rec;
    }
    rec->rev = o->rev;
    rec->unit = u;
    rec->node = n;
    rec->period = p;
    rec->value = o->value;
    rec->w = o->w;
    rec->at = o->at;
    attach(e, rec);
    if (moved)
        leaf_changed(e, op, ou, on);
    leaf_changed(e, p, u, n);
    flush_ranks(e);
    return KP_R_OK;
}

static void dirty_add(struct score_engine *e, uint32_t p, uint32_t u, uint32_t n)
{
    for (size_t i = 0; i < e->n_dirty; i++)
        if (e->dirty[i].period == p && e->dirty[i].unit == u && e->dirty[i].node == n)
            return;
    GROW(e->dirty, e->n_dirty, e->cap_dirty);
    e->dirty[e->n_dirty].period = p;
    e->dirty[e->n_dirty].unit = u;
    e->dirty[e->n_dirty].node = n;
    e->n_dirty++;
}

void score_engine_commit(struct score_engine *e)
{
    e->in_txn = false;
    e->n_undo = 0;
    e->n_tc = 0;
    e->n_tt = 0;
}

void score_engine_rollback(struct score_engine *e)
{
    if (!e->in_txn)
        return;
    e->n_dirty = 0;
    for (size_t i = e->n_undo; i-- > 0;) {
        struct undo *ud = &e->undo[i];
        struct score_rec *rec = ud->rec;
        detach(e, rec);
        dirty_add(e, rec->period, rec->unit, rec->node);
        if (ud->created) {
            rec_remove(e, rec);
            free(rec);
            continue;
        }
        *rec = ud->old;
        attach(e, rec);
        dirty_add(e, rec->period, rec->unit, rec->node);
    }
    /* every derived quantity is a function of the records: recomputing the touched cells
     * restores the state at begin exactly */
    for (size_t i = 0; i < e->n_dirty; i++)
        leaf_changed(e, e->dirty[i].period, e->dirty[i].unit, e->dirty[i].node);
    flush_ranks(e);
    e->n_dirty = 0;
    score_engine_commit(e);
}

static void fill_cell(const struct score_engine *e, const struct score_up *up, uint32_t n,
                      const struct score_cell *c, struct score_cell_change *out)
{
    out->unit = up->unit;
    out->node = n;
    out->period = e->periods[up->period]->code->s;
    out->value = c && c->present ? c->value : NAN;
    out->score = c && c->present ? c->score : NAN;
    out->n_obs = c && c->present ? c->n_obs : 0;
}

static void fill_total(const struct score_engine *e, const struct score_up *up,
                       struct score_total_change *out)
{
    out->unit = up->unit;
    out->period = e->periods[up->period]->code->s;
    out->total = up->present ? up->total : 0;
    out->coverage = up->present ? up->coverage : 0;
    out->rank = up->present ? up->rank : 0;
    out->grade = up->present && up->grade >= 0 ? e->s->grades[up->grade].name : "";
    out->vetoed = up->present && up->vetoed;
}

void score_engine_changes(struct score_engine *e,
                          void (*cell_fn)(const struct score_cell_change *c, void *arg),
                          void (*total_fn)(const struct score_total_change *t, void *arg),
                          void *arg)
{
    for (size_t i = 0; cell_fn && i < e->n_tc; i++) {
        const struct score_up *up = e->tc_up[i];
        const struct score_cell *c = up->cells[e->tc_node[i]];
        if (e->tc_node[i] == 0) /* the root is reported as the total */
            continue;
        if (c->present == c->o_present && same(c->value, c->o_value) &&
            same(c->score, c->o_score) && c->n_obs == c->o_n_obs)
            continue;
        struct score_cell_change ch;
        fill_cell(e, up, e->tc_node[i], c, &ch);
        cell_fn(&ch, arg);
    }
    for (size_t i = 0; total_fn && i < e->n_tt; i++) {
        const struct score_up *up = e->tt[i];
        if (up->present == up->o_present && same(up->total, up->o_total) &&
            up->coverage == up->o_coverage && up->rank == up->o_rank &&
            up->grade == up->o_grade && up->vetoed == up->o_vetoed)
            continue;
        struct score_total_change t;
        fill_total(e, up, &t);
        total_fn(&t, arg);
    }
}

/* ---- read access ------------------------------------------------------------------------- */

static const struct score_up *find_up(const struct score_engine *e, size_t unit,
                                      const char *period)
{
    if (unit >= e->s->n_units || !period)
        return NULL;
    const struct score__str *c = score__intern_find(&e->pool, period);
    if (!c || c->aux < 0)
        return NULL;
    return e->periods[c->aux]->ups[unit];
}

int score_engine_total(const struct score_engine *e, size_t unit, const char *period,
                       struct score_total_change *out)
{
    const struct score_up *up = find_up(e, unit, period);
    if (!up || !up->present)
        return KP_ENOENT;
    fill_total(e, up, out);
    return 0;
}

int score_engine_cell(const struct score_engine *e, size_t unit, size_t node, const char *period,
                      struct score_cell_change *out)
{
    const struct score_up *up = find_up(e, unit, period);
    if (!up || node >= e->s->n_nodes || !up->cells[node] || !up->cells[node]->present)
        return KP_ENOENT;
    fill_cell(e, up, (uint32_t)node, up->cells[node], out);
    return 0;
}

void score_engine_foreach_total(const struct score_engine *e,
                                void (*fn)(const struct score_total_change *t, void *arg),
                                void *arg)
{
    for (size_t p = 0; p < e->n_periods; p++)
        for (size_t u = 0; u < e->s->n_units; u++) {
            const struct score_up *up = e->periods[p]->ups[u];
            if (!up || !up->present)
                continue;
            struct score_total_change t;
            fill_total(e, up, &t);
            fn(&t, arg);
        }
}

void score_engine_foreach_cell(const struct score_engine *e,
                               void (*fn)(const struct score_cell_change *c, void *arg),
                               void *arg)
{
    for (size_t p = 0; p < e->n_periods; p++)
        for (size_t u = 0; u < e->s->n_units; u++) {
            const struct score_up *up = e->periods[p]->ups[u];
            if (!up)
                continue;
            for (size_t n = 1; n < e->s->n_nodes; n++) {
                const struct score_cell *c = up->cells[n];
                if (!c || !c->present)
                    continue;
                struct score_cell_change ch;
                fill_cell(e, up, (uint32_t)n, c, &ch);
                fn(&ch, arg);
            }
        }
}

size_t score_engine_n_records(const struct score_engine *e)
{
    return e->map_n;
}
