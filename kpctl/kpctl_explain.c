/*
 * kpctl explain: how a score came about (ARCHITECTURE.md guarantee 6, issue 3). For one unit
 * and one period it prints the unit's total with coverage, rank and grade, then the indicator
 * tree (or one indicator and the path to it) with each node's weight, its full-tree weight G,
 * its method and parameters, value and score, and under every leaf the observations behind
 * it: the latest revision of each (src, ref) that counts, older revisions marked superseded,
 * each with source, ref, revision, value, weight, period, adapter, batch seq and the times it
 * was observed and received. Everything comes from the read model in PostgreSQL
 * (kp_unit_score, kp_indicator_score, kp_observation, kp_unit, kp_indicator and the
 * per-unit weights of kp_indicator_weight, migration 002). With --scheme FILE the tree,
 * weights and methods come from the scheme file instead — for a database whose scorer does
 * not record weights yet.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kp_err.h"
#include "kp_pg.h"
#include "kpctl.h"
#include "score_engine.h"

#define DEFAULT_OBS_SHOWN 20

struct xobs {
    const char *period, *src, *ref, *rev, *value, *w, *adapter, *seq, *observed, *received;
    const char *latest_rev, *latest_unit, *latest_ind, *latest_period;
    long long at;
    enum { X_USED, X_VALUE, X_HELD, X_SUPERSEDED } state;
};

struct xnode {
    char *code, *name, *parent, *method;
    bool leaf, adjust, event;
    long ord;
    long up;       /* parent index, -1 for a top-level node */
    double weight; /* effective weight for the unit: NAN unknown, 0 does not apply */
    double g;      /* full-tree weight (share of the total), NAN unknown */
    int depth;
    int cell; /* row in the cells result, -1 when none */
    struct xobs *obs;
    size_t n_obs, cap_obs;
};

struct explain {
    struct kp_pg *pg;
    const char *scheme, *unit, *period, *only;
    bool all;
    struct xnode *nodes;
    size_t n_nodes;
    bool weights_known;
    struct kp_pg_res *cells, *obs;
};

/* ---- periods -------------------------------------------------------------------------------- */

struct prange {
    int year, m0, m1; /* months m0..m1 */
    bool day;
};

static bool digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* PROTOCOL.md period grammar: YYYY, YYYY-Hn, YYYY-Qn, YYYY-MM, YYYY-MM-DD. */
static bool prange_parse(const char *s, struct prange *r)
{
    size_t len = strlen(s);
    memset(r, 0, sizeof *r);
    if (len < 4 || !digits(s, 4, &r->year))
        return false;
    if (len == 4) {
        r->m0 = 1;
        r->m1 = 12;
        return true;
    }
    if (s[4] != '-')
        return false;
    int n;
    if (len == 7 && s[5] == 'H' && digits(s + 6, 1, &n) && n >= 1 && n <= 2) {
        r->m0 = 6 * n - 5;
        r->m1 = 6 * n;
        return true;
    }
    if (len == 7 && s[5] == 'Q' && digits(s + 6, 1, &n) && n >= 1 && n <= 4) {
        r->m0 = 3 * n - 2;
        r->m1 = 3 * n;
        return true;
    }
    if ((len == 7 || len == 10) && digits(s + 5, 2, &n) && n >= 1 && n <= 12) {
        r->m0 = r->m1 = n;
        if (len == 7)
            return true;
        int d;
        r->day = true;
        return s[7] == '-' && digits(s + 8, 2, &d) && d >= 1 && d <= 31;
    }
    return false;
}

/* Whether observations of period `inner` count in period `outer` (the same, or finer and
 * inside it: a month in its quarter, a day in its month). */
static bool prange_contains(const char *outer, const char *inner)
{
    struct prange o, i;
    if (!prange_parse(outer, &o) || !prange_parse(inner, &i) || o.year != i.year)
        return false;
    if (o.day)
        return strcmp(outer, inner) == 0;
    return i.m0 >= o.m0 && i.m1 <= o.m1;
}

/* ---- the tree ---------------------------------------------------------------------------------
 */

static long node_find(const struct explain *x, const char *code)
{
    for (size_t i = 0; i < x->n_nodes; i++)
        if (strcmp(x->nodes[i].code, code) == 0)
            return (long)i;
    return -1;
}

static struct xnode *node_add(struct explain *x, size_t *cap)
{
    if (x->n_nodes == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        x->nodes = kp_xrealloc(x->nodes, *cap * sizeof *x->nodes);
    }
    struct xnode *n = &x->nodes[x->n_nodes++];
    memset(n, 0, sizeof *n);
    n->weight = NAN;
    n->g = NAN;
    n->cell = -1;
    n->up = -1;
    return n;
}

static bool method_is_adjust(const char *m)
{
    return strncmp(m, "add ", 4) == 0 || strncmp(m, "deduct ", 7) == 0 ||
           strncmp(m, "veto", 4) == 0;
}

/* The tree of the scheme file, with the unit's effective weights. */
static int tree_from_file(struct explain *x, const char *path)
{
    char err[512];
    struct score_scheme *s = NULL;
    if (score_scheme_load(path, &s, err, sizeof err) != 0) {
        fprintf(stderr, "kpctl explain: %s\n", err);
        return 1;
    }
    if (strcmp(score_scheme_id(s), x->scheme) != 0) {
        fprintf(stderr, "kpctl explain: %s is scheme %s, not %s\n", path, score_scheme_id(s),
                x->scheme);
        score_scheme_destroy(&s);
        return 2;
    }
    long u = score_scheme_unit_find(s, x->unit);
    if (u < 0) {
        fprintf(stderr, "kpctl explain: unit %s is not in %s\n", x->unit, path);
        score_scheme_destroy(&s);
        return 1;
    }
    size_t cap = 0;
    for (size_t i = 1; i < score_scheme_n_nodes(s); i++) {
        struct xnode *n = node_add(x, &cap);
        long p = score_scheme_node_parent(s, i);
        n->code = kp_xstrdup(score_scheme_node_code(s, i));
        n->name = kp_xstrdup(score_scheme_node_name(s, i));
        n->parent = p > 0 ? kp_xstrdup(score_scheme_node_code(s, (size_t)p)) : NULL;
        n->leaf = score_scheme_node_is_leaf(s, i);
        n->adjust = score_scheme_node_is_adjustment(s, i);
        n->method = kp_xstrdup(score_scheme_node_method(s, i));
        n->ord = (long)i;
        n->weight = score_scheme_node_weight(s, (size_t)u, i);
    }
    x->weights_known = true;
    score_scheme_destroy(&s);
    return 0;
}

/* The tree the scorer recorded (kp_indicator), with the unit's weights when it records them
 * (kp_indicator_weight). Works on a database without migration 002 too. */
static int tree_from_db(struct explain *x)
{
    const char *p[2] = {x->scheme, x->unit};
    struct kp_pg_res *r = NULL;
    if (kp_pg_exec(x->pg,
                   "SELECT i.indicator, i.name, i.parent, i.is_leaf, i.method, "
                   "       coalesce((to_jsonb(i) ->> 'ord')::int, -1) "
                   "  FROM kp_indicator i WHERE i.scheme = $1 "
                   " ORDER BY 6, i.indicator COLLATE \"C\"",
                   1, p, &r) != 0) {
        fprintf(stderr, "kpctl: %s\n", kp_pg_errmsg(x->pg));
        return 1;
    }
    size_t cap = 0;
    for (int i = 0; i < kp_pg_res_ntuples(r); i++) {
        struct xnode *n = node_add(x, &cap);
        n->code = kp_xstrdup(kp_pg_res_value(r, i, 0));
        n->name = kp_xstrdup(kp_pg_res_value(r, i, 1));
        n->parent = kp_pg_res_isnull(r, i, 2) ? NULL : kp_xstrdup(kp_pg_res_value(r, i, 2));
        n->leaf = strcmp(kp_pg_res_value(r, i, 3), "t") == 0;
        n->method = kp_xstrdup(kp_pg_res_value(r, i, 4));
        n->adjust = n->leaf && !n->parent && method_is_adjust(n->method);
        n->ord = atol(kp_pg_res_value(r, i, 5));
    }
    kp_pg_res_free(&r);
    if (kp_pg_exec(x->pg,
                   "SELECT w.indicator, w.weight FROM kp_indicator_weight w "
                   " WHERE to_regclass('kp_indicator_weight') IS NOT NULL "
                   "   AND w.scheme = $1 AND w.unit = $2",
                   2, p, &r) != 0) {
        /* no migration 002: weights unknown */
        kp_pg_res_free(&r);
        return 0;
    }
    if (kp_pg_res_ntuples(r) > 0) {
        x->weights_known = true;
        for (size_t k = 0; k < x->n_nodes; k++)
            x->nodes[k].weight = 0;
        for (int i = 0; i < kp_pg_res_ntuples(r); i++) {
            long k = node_find(x, kp_pg_res_value(r, i, 0));
            if (k >= 0)
                x->nodes[k].weight = atof(kp_pg_res_value(r, i, 1));
        }
    }
    kp_pg_res_free(&r);
    return 0;
}

/* Parents, depths and full-tree weights: G(top) = w / Σ w of the applicable top-level
 * nodes, G(child) = G(node) · w / Σ w of the node's applicable children. */
static void tree_link(struct explain *x)
{
    for (size_t i = 0; i < x->n_nodes; i++) {
        struct xnode *n = &x->nodes[i];
        n->up = n->parent ? node_find(x, n->parent) : -1;
        n->event = n->adjust || strstr(n->method, "input=") != NULL;
    }
    for (size_t i = 0; i < x->n_nodes; i++) {
        int d = 0;
        for (long p = x->nodes[i].up; p >= 0 && d < 16; p = x->nodes[p].up)
            d++;
        x->nodes[i].depth = d;
    }
    if (!x->weights_known)
        return;
    /* nodes come parent before child (scheme order), but do not rely on it */
    for (int pass = 0; pass < 16; pass++) {
        bool again = false;
        for (size_t i = 0; i < x->n_nodes; i++) {
            struct xnode *n = &x->nodes[i];
            if (n->adjust || !isnan(n->g))
                continue;
            double base = 1;
            if (n->up >= 0) {
                base = x->nodes[n->up].g;
                if (isnan(base)) {
                    again = true;
                    continue;
                }
            }
            double sum = 0;
            for (size_t k = 0; k < x->n_nodes; k++)
                if (x->nodes[k].up == n->up && !x->nodes[k].adjust && x->nodes[k].weight > 0)
                    sum += x->nodes[k].weight;
            n->g = n->weight > 0 && sum > 0 ? base * n->weight / sum : 0;
        }
        if (!again)
            break;
    }
}

/* ---- observations --------------------------------------------------------------------------- */

static void obs_add(struct xnode *n, const struct xobs *o)
{
    if (n->n_obs == n->cap_obs) {
        n->cap_obs = n->cap_obs ? n->cap_obs * 2 : 8;
        n->obs = kp_xrealloc(n->obs, n->cap_obs * sizeof *n->obs);
    }
    n->obs[n->n_obs++] = *o;
}

/* Every observation of the unit's leaves in periods inside the explained one, with the latest
 * revision of its (src, ref) anywhere in the scheme (a higher revision may have moved the
 * record to another cell). */
static int load_obs(struct explain *x)
{
    char year[5];
    snprintf(year, sizeof year, "%.4s", x->period);
    const char *p[3] = {x->scheme, x->unit, year};
    if (kp_pg_exec(x->pg,
                   "WITH here AS ("
                   "  SELECT * FROM kp_observation "
                   "   WHERE scheme = $1 AND unit = $2 AND left(period, 4) = $3), "
                   "latest AS ("
                   "  SELECT DISTINCT ON (o.src, o.ref) o.src, o.ref, o.rev, o.unit, o.indicator, "
                   "         o.period "
                   "    FROM kp_observation o "
                   "   WHERE o.scheme = $1 AND (o.src, o.ref) IN (SELECT src, ref FROM here) "
                   "   ORDER BY o.src, o.ref, o.rev DESC) "
                   "SELECT h.indicator, h.period, h.src, h.ref, h.rev::text, h.value, h.w, "
                   "       h.adapter, h.seq::text, "
                   "       to_char(h.observed_at AT TIME ZONE 'UTC', "
                   "               'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "
                   "       to_char(h.received_at AT TIME ZONE 'UTC', "
                   "               'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "
                   "       l.rev::text, l.unit, l.indicator, l.period, "
                   "       (extract(epoch FROM h.observed_at) * 1000)::int8 "
                   "  FROM here h JOIN latest l USING (src, ref) "
                   " ORDER BY h.indicator, h.period, h.src COLLATE \"C\", h.ref COLLATE \"C\", "
                   "          h.rev DESC",
                   3, p, &x->obs) != 0) {
        fprintf(stderr, "kpctl: %s\n", kp_pg_errmsg(x->pg));
        return 1;
    }
    struct kp_pg_res *r = x->obs;
    for (int i = 0; i < kp_pg_res_ntuples(r); i++) {
        struct xobs o;
        o.period = kp_pg_res_value(r, i, 1);
        if (!prange_contains(x->period, o.period))
            continue;
        long k = node_find(x, kp_pg_res_value(r, i, 0));
        if (k < 0)
            continue;
        o.src = kp_pg_res_value(r, i, 2);
        o.ref = kp_pg_res_value(r, i, 3);
        o.rev = kp_pg_res_value(r, i, 4);
        o.value = kp_pg_res_value(r, i, 5);
        o.w = kp_pg_res_value(r, i, 6);
        o.adapter = kp_pg_res_value(r, i, 7);
        o.seq = kp_pg_res_value(r, i, 8);
        o.observed = kp_pg_res_value(r, i, 9);
        o.received = kp_pg_res_value(r, i, 10);
        o.latest_rev = kp_pg_res_value(r, i, 11);
        o.latest_unit = kp_pg_res_value(r, i, 12);
        o.latest_ind = kp_pg_res_value(r, i, 13);
        o.latest_period = kp_pg_res_value(r, i, 14);
        o.at = atoll(kp_pg_res_value(r, i, 15));
        bool latest = strcmp(o.rev, o.latest_rev) == 0;
        o.state = latest ? X_USED : X_SUPERSEDED;
        obs_add(&x->nodes[k], &o);
    }
    /* a value leaf takes, per period, the record with the greatest (observed_at, src, ref)
     * (SCHEMES.md "Inputs"); the other latest records are held but not the value */
    for (size_t k = 0; k < x->n_nodes; k++) {
        struct xnode *n = &x->nodes[k];
        if (n->event)
            continue;
        for (size_t i = 0; i < n->n_obs; i++) {
            if (n->obs[i].state != X_USED)
                continue;
            struct xobs *best = &n->obs[i];
            for (size_t j = 0; j < n->n_obs; j++) {
                struct xobs *c = &n->obs[j];
                if (c->state == X_SUPERSEDED || strcmp(c->period, best->period) != 0)
                    continue;
                int cmp =
                    c->at != best->at ? (c->at > best->at ? 1 : -1) : strcmp(c->src, best->src);
                if (c->at == best->at && cmp == 0)
                    cmp = strcmp(c->ref, best->ref);
                if (cmp > 0)
                    best = c;
            }
            for (size_t j = 0; j < n->n_obs; j++)
                if (n->obs[j].state != X_SUPERSEDED && strcmp(n->obs[j].period, best->period) == 0)
                    n->obs[j].state = &n->obs[j] == best ? X_VALUE : X_HELD;
        }
    }
    return 0;
}

/* ---- printing ------------------------------------------------------------------------------ */

static const char *COLS = "indicator                                             weight         G"
                          "       value        score      n  method";

static void print_obs(const struct explain *x, const struct xnode *n, int indent)
{
    size_t shown = 0;
    for (size_t i = 0; i < n->n_obs; i++) {
        const struct xobs *o = &n->obs[i];
        if (!x->all && shown == DEFAULT_OBS_SHOWN) {
            printf("%*s... %zu more observations (--all shows them)\n", indent, "",
                   n->n_obs - shown);
            return;
        }
        shown++;
        static const char *const st[] = {"used", "value", "held", "superseded"};
        printf("%*s%-10s  %s/%s rev %s  val %s  w %s  %s  adapter %s seq %s  observed %s"
               "  received %s",
               indent, "", st[o->state], o->src, o->ref, o->rev, o->value, o->w, o->period,
               o->adapter, o->seq, o->observed, o->received);
        if (o->state == X_SUPERSEDED) {
            bool moved = strcmp(o->latest_unit, x->unit) != 0 ||
                         strcmp(o->latest_ind, n->code) != 0 ||
                         strcmp(o->latest_period, o->period) != 0;
            if (moved)
                printf("  (by rev %s at %s/%s/%s)", o->latest_rev, o->latest_unit, o->latest_ind,
                       o->latest_period);
            else
                printf("  (by rev %s)", o->latest_rev);
        } else if (o->state == X_HELD) {
            fputs("  (not the value: an earlier observed_at)", stdout);
        }
        putchar('\n');
    }
}

static void print_node(const struct explain *x, const struct xnode *n, int depth)
{
    const struct kp_pg_res *c = x->cells;
    char label[512];
    snprintf(label, sizeof label, "%*s%s %s", depth * 2, "", n->code, n->name);
    kpctl_print_padded(label, 52);
    char wbuf[32] = "-", gbuf[32] = "-";
    if (!isnan(n->weight) && !n->adjust)
        snprintf(wbuf, sizeof wbuf, "%g", n->weight);
    if (!isnan(n->g) && !n->adjust)
        snprintf(gbuf, sizeof gbuf, "%.3f%%", n->g * 100);
    printf(" %6s  %8s  ", wbuf, gbuf);
    if (n->cell < 0) {
        printf("%10s  %11s  %5s  ", "-", "missing", "0");
    } else {
        const char *v = kp_pg_res_isnull(c, n->cell, 1) ? "-" : kp_pg_res_value(c, n->cell, 1);
        double score = atof(kp_pg_res_value(c, n->cell, 2));
        if (n->adjust)
            printf("%10s  %11s  %5s  ", v, "", kp_pg_res_value(c, n->cell, 3));
        else
            printf("%10s  %11.6f  %5s  ", v, score, kp_pg_res_value(c, n->cell, 3));
        if (n->adjust) {
            bool deduct = strncmp(n->method, "deduct", 6) == 0;
            bool veto = strncmp(n->method, "veto", 4) == 0;
            if (veto)
                printf("%s  (%s)\n", n->method, score > 0 ? "vetoed" : "no veto");
            else
                printf("%s  (%s%.6f)\n", n->method, deduct ? "-" : "+", score);
            return;
        }
    }
    if (n->leaf)
        fputs(n->method, stdout);
    else
        fputs("weighted: the present children, renormalised", stdout);
    putchar('\n');
}

static bool applies(const struct explain *x, const struct xnode *n)
{
    return n->cell >= 0 || (x->weights_known && n->weight > 0);
}

static void print_subtree(const struct explain *x, long idx, int depth)
{
    const struct xnode *n = &x->nodes[idx];
    if (!applies(x, n))
        return;
    print_node(x, n, depth);
    if (n->leaf) {
        print_obs(x, n, depth * 2 + 6);
        return;
    }
    for (size_t k = 0; k < x->n_nodes; k++)
        if (x->nodes[k].up == idx && !x->nodes[k].adjust)
            print_subtree(x, (long)k, depth + 1);
}

static void print_total(const struct explain *x, const struct kp_pg_res *t, const char *group,
                        const char *gsize)
{
    double total = atof(kp_pg_res_value(t, 0, 0)), cov = atof(kp_pg_res_value(t, 0, 1));
    const char *grade = kp_pg_res_value(t, 0, 3);
    printf("total %.6f  coverage %.6f (%.2f%%)  rank %s of %s in %s  grade %s%s\n", total, cov,
           cov * 100, kp_pg_res_value(t, 0, 2), gsize, group, grade[0] ? grade : "-",
           strcmp(kp_pg_res_value(t, 0, 4), "t") == 0 ? "  VETOED (lowest grade, ranked last)"
                                                      : "");
    (void)x;
    printf("formula: total = Σ G·score / Σ G over the present leaves, + add − deduct "
           "(capped); coverage = Σ G of the present leaves;\n"
           "         G = a leaf's share of the total: the product of the weight shares on its "
           "path, each weight over the sum of its siblings that apply to the unit\n");
}

/* ---- the command ----------------------------------------------------------------------------- */

static int fail_db(struct explain *x)
{
    fprintf(stderr, "kpctl: %s\n", kp_pg_errmsg(x->pg));
    return 1;
}

static int run(struct explain *x, const char *scheme_file)
{
    struct kp_pg_res *r = NULL;
    const char *pu[2] = {x->scheme, x->unit};
    if (kp_pg_exec(x->pg,
                   "SELECT u.name, u.grp, coalesce(g.name, u.grp) FROM kp_unit u "
                   "  LEFT JOIN kp_group g ON g.scheme = u.scheme AND g.grp = u.grp "
                   " WHERE u.scheme = $1 AND u.unit = $2",
                   2, pu, &r) != 0)
        return fail_db(x);
    if (kp_pg_res_ntuples(r) == 0) {
        fprintf(stderr, "kpctl explain: unit %s is not in scheme %s\n", x->unit, x->scheme);
        kp_pg_res_free(&r);
        return 1;
    }
    char uname[256], grp[128], gname[256], pbuf[32];
    snprintf(uname, sizeof uname, "%s", kp_pg_res_value(r, 0, 0));
    snprintf(grp, sizeof grp, "%s", kp_pg_res_value(r, 0, 1));
    snprintf(gname, sizeof gname, "%s", kp_pg_res_value(r, 0, 2));
    kp_pg_res_free(&r);
    if (!x->period) {
        /* the latest month with a total (the live view), else the latest period */
        if (kp_pg_exec(x->pg,
                       "SELECT period FROM kp_unit_score WHERE scheme = $1 AND unit = $2 "
                       "ORDER BY period ~ '^[0-9]{4}-[0-9]{2}$' DESC, period DESC LIMIT 1",
                       2, pu, &r) != 0)
            return fail_db(x);
        if (kp_pg_res_ntuples(r) == 0) {
            printf("%s %s: no scores yet\n", x->scheme, x->unit);
            kp_pg_res_free(&r);
            return 0;
        }
        snprintf(pbuf, sizeof pbuf, "%s", kp_pg_res_value(r, 0, 0));
        kp_pg_res_free(&r);
        x->period = pbuf;
    }
    int rc = scheme_file ? tree_from_file(x, scheme_file) : tree_from_db(x);
    if (rc)
        return rc;
    tree_link(x);
    long only = -1;
    if (x->only && (only = node_find(x, x->only)) < 0) {
        fprintf(stderr, "kpctl explain: %s is not an indicator of %s\n", x->only, x->scheme);
        return 1;
    }

    const char *pp[4] = {x->scheme, x->unit, x->period, grp};
    printf("%s  %s %s  (%s %s)  period %s\n", x->scheme, x->unit, uname, grp, gname, x->period);
    if (kp_pg_exec(x->pg,
                   "SELECT s.total, s.coverage, s.rank, s.grade, s.vetoed, "
                   "       (SELECT count(*) FROM kp_unit_score o WHERE o.scheme = s.scheme "
                   "           AND o.period = s.period AND o.grp = $4) "
                   "  FROM kp_unit_score s "
                   " WHERE s.scheme = $1 AND s.unit = $2 AND s.period = $3",
                   4, pp, &r) != 0)
        return fail_db(x);
    if (kp_pg_res_ntuples(r) == 0)
        printf("no total for %s in %s\n", x->unit, x->period);
    else
        print_total(x, r, grp, kp_pg_res_value(r, 0, 5));
    kp_pg_res_free(&r);

    if (kp_pg_exec(x->pg,
                   "SELECT indicator, value, score, n_obs FROM kp_indicator_score "
                   " WHERE scheme = $1 AND unit = $2 AND period = $3",
                   3, pp, &x->cells) != 0)
        return fail_db(x);
    for (int i = 0; i < kp_pg_res_ntuples(x->cells); i++) {
        long k = node_find(x, kp_pg_res_value(x->cells, i, 0));
        if (k >= 0)
            x->nodes[k].cell = i;
    }
    if (load_obs(x))
        return 1;
    if (!x->weights_known)
        printf("(weights unknown: the scorer has not recorded kp_indicator_weight; "
               "--scheme FILE reads them from the scheme file)\n");

    putchar('\n');
    puts(COLS);
    if (only >= 0) {
        /* the path down to the indicator, then its subtree */
        long path[16];
        int n = 0;
        for (long p = x->nodes[only].up; p >= 0 && n < 16; p = x->nodes[p].up)
            path[n++] = p;
        for (int i = n; i-- > 0;)
            print_node(x, &x->nodes[path[i]], n - 1 - i);
        if (x->nodes[only].adjust) {
            print_node(x, &x->nodes[only], 0);
            print_obs(x, &x->nodes[only], 6);
        } else {
            print_subtree(x, only, n);
        }
        return 0;
    }
    for (size_t k = 0; k < x->n_nodes; k++)
        if (x->nodes[k].up < 0 && !x->nodes[k].adjust)
            print_subtree(x, (long)k, 0);
    bool header = false;
    for (size_t k = 0; k < x->n_nodes; k++) {
        const struct xnode *n = &x->nodes[k];
        if (!n->adjust || n->cell < 0)
            continue;
        if (!header)
            puts("adjustments");
        header = true;
        print_node(x, n, 1);
        print_obs(x, n, 8);
    }
    return 0;
}

static int cmd_explain(int argc, char **argv)
{
    /* positional: SCHEME UNIT [INDICATOR] [PERIOD]; options take a value except --all */
    const char *pos[4] = {NULL, NULL, NULL, NULL};
    int npos = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--all") == 0)
            continue;
        if (strncmp(argv[i], "--", 2) == 0) {
            if (strcmp(argv[i], "--dsn") != 0 && strcmp(argv[i], "--scheme") != 0) {
                fprintf(stderr, "kpctl explain: unknown option %s\n", argv[i]);
                return 2;
            }
            i++;
            continue;
        }
        if (npos == 4) {
            fprintf(stderr, "kpctl explain: too many arguments\n");
            return 2;
        }
        pos[npos++] = argv[i];
    }
    if (npos < 2) {
        fprintf(stderr, "kpctl explain: missing SCHEME or UNIT\n");
        return 2;
    }
    struct explain x = {0};
    x.scheme = pos[0];
    x.unit = pos[1];
    x.all = kpctl_flag(argc, argv, "--all");
    for (int i = 2; i < npos; i++) {
        struct prange pr;
        if (prange_parse(pos[i], &pr) && !x.period)
            x.period = pos[i];
        else if (!x.only)
            x.only = pos[i];
        else {
            fprintf(stderr, "kpctl explain: %s is neither an indicator nor a period\n", pos[i]);
            return 2;
        }
    }
    int rc = kpctl_open_db(argc, argv, &x.pg);
    if (rc)
        return rc;
    rc = run(&x, kpctl_arg(argc, argv, "--scheme"));
    for (size_t i = 0; i < x.n_nodes; i++) {
        free(x.nodes[i].code);
        free(x.nodes[i].name);
        free(x.nodes[i].parent);
        free(x.nodes[i].method);
        free(x.nodes[i].obs);
    }
    free(x.nodes);
    kp_pg_res_free(&x.cells);
    kp_pg_res_free(&x.obs);
    kp_pg_close(&x.pg);
    return rc;
}

const struct kpctl_cmd kpctl_cmd_explain = {
    "explain",
    "explain SCHEME UNIT [INDICATOR] [PERIOD] [--scheme FILE] [--all] [--dsn DSN]",
    "how a unit's score came about: total, coverage, rank and grade, the indicator tree\n"
    "(or one indicator) with weights, methods and parameters, values and scores, and the\n"
    "observations behind each leaf (latest revisions used, older ones superseded) with\n"
    "source, ref, revision, adapter, seq and times; PERIOD defaults to the latest month;\n"
    "--scheme FILE takes weights from the scheme file when the database has none",
    cmd_explain,
};
