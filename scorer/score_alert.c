/*
 * score_alert: the alert evaluator (score_alert.h), the functional core of issue 7. It keeps,
 * per scheme, the previous value of every total (rank, grade, veto) and of every deduct cell so
 * that changes become events; the "subjects" (rule + labels without severity) that have an
 * open alert, an event in hold or a condition to look at in this pass; the open task nodes of
 * node_overdue rules; and the last batch time of every adapter. score_alert_eval() computes the
 * desired severity of each subject from the engine, the events and the clock passed in, and
 * runs the lifecycle of DOMAIN.md's alert ladders (pending/for, firing, keep-firing hysteresis,
 * escalation) over it. Nothing here does I/O: transitions are returned to the scorer, which
 * writes them in the batch's transaction (ARCHITECTURE.md: "record alert transitions").
 */
#include "score_alert_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kp_err.h"

#define DAY_MS    86400000LL
#define MAX_TASKS 200000 /* open task nodes tracked per scheme (node_overdue) */

/* ---- names ---------------------------------------------------------------------------- */

const char *score_alert_sev_name(enum score_alert_sev s)
{
    switch (s) {
    case SCORE_SEV_WARNING:
        return "warning";
    case SCORE_SEV_YELLOW:
        return "yellow";
    case SCORE_SEV_RED:
        return "red";
    default:
        return "";
    }
}

const char *score_alert_state_name(enum score_alert_state s)
{
    switch (s) {
    case SCORE_AS_PENDING:
        return "pending";
    case SCORE_AS_FIRING:
        return "firing";
    case SCORE_AS_RESOLVED:
        return "resolved";
    default:
        return "inactive";
    }
}

enum score_alert_sev score_alert_sev_parse(const char *s)
{
    for (int i = 0; i < SCORE_SEV__COUNT; i++)
        if (s && !strcmp(s, score_alert_sev_name((enum score_alert_sev)i)))
            return (enum score_alert_sev)i;
    return SCORE_SEV_NONE;
}

/* ---- calendar ------------------------------------------------------------------------- */

/* Howard Hinnant's days_from_civil / civil_from_days (proleptic Gregorian). */
int32_t score_alert_days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int era = (y >= 0 ? y : y - 399) / 400;
    int yoe = y - era * 400;
    int doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return (int32_t)(era * 146097 + doe - 719468);
}

void score_alert_civil_from_days(int32_t z, int *y, int *m, int *d)
{
    z += 719468;
    int era = (z >= 0 ? z : z - 146096) / 146097;
    int doe = z - era * 146097;
    int yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int yy = yoe + era * 400;
    int doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yy + (*m <= 2);
}

static bool in_sorted(const int32_t *v, size_t n, int32_t x)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (v[mid] < x)
            lo = mid + 1;
        else if (v[mid] > x)
            hi = mid;
        else
            return true;
    }
    return false;
}

bool score_alert_working_day(const struct score_scheme *s, int32_t z)
{
    const struct score_alert_rules *r = s->alert_rules;
    int wd = (int)(((z % 7) + 7 + 3) % 7); /* 1970-01-01 was a Thursday: Monday = 0 */
    if (r && in_sorted(r->holidays, r->n_holidays, z))
        return false;
    if (wd >= 5)
        return r && in_sorted(r->workdays, r->n_workdays, z);
    return true;
}

int32_t score_alert_step_working(const struct score_scheme *s, int32_t z, int n)
{
    while (n > 0) {
        z++;
        if (score_alert_working_day(s, z))
            n--;
    }
    while (n < 0) {
        z--;
        if (score_alert_working_day(s, z))
            n++;
    }
    return z;
}

static int tz_min(const struct score_scheme *s)
{
    return s->alert_rules ? s->alert_rules->tz_min : 8 * 60;
}

/* The instant (UTC ms) at which local day z begins. */
static int64_t day_start_ms(const struct score_scheme *s, int32_t z)
{
    return (int64_t)z * DAY_MS - (int64_t)tz_min(s) * 60000;
}

/* The local day number of an instant. */
static int32_t local_day(const struct score_scheme *s, int64_t ms)
{
    int64_t l = ms + (int64_t)tz_min(s) * 60000;
    return (int32_t)(l >= 0 ? l / DAY_MS : -((-l + DAY_MS - 1) / DAY_MS));
}

/* First day and the day after the last of a period. */
static void period_days(const struct score__period_key *k, int32_t *first, int32_t *end)
{
    int y = k->year;
    switch (k->kind) {
    case SCORE_P_YEAR:
        *first = score_alert_days_from_civil(y, 1, 1);
        *end = score_alert_days_from_civil(y + 1, 1, 1);
        break;
    case SCORE_P_HALF: {
        int m0 = (k->sub - 1) * 6 + 1;
        *first = score_alert_days_from_civil(y, m0, 1);
        *end = m0 + 6 > 12 ? score_alert_days_from_civil(y + 1, 1, 1)
                           : score_alert_days_from_civil(y, m0 + 6, 1);
        break;
    }
    case SCORE_P_QUARTER: {
        int m0 = (k->sub - 1) * 3 + 1;
        *first = score_alert_days_from_civil(y, m0, 1);
        *end = m0 + 3 > 12 ? score_alert_days_from_civil(y + 1, 1, 1)
                           : score_alert_days_from_civil(y, m0 + 3, 1);
        break;
    }
    case SCORE_P_MONTH:
        *first = score_alert_days_from_civil(y, k->sub, 1);
        *end = k->sub == 12 ? score_alert_days_from_civil(y + 1, 1, 1)
                            : score_alert_days_from_civil(y, k->sub + 1, 1);
        break;
    default:
        *first = score_alert_days_from_civil(y, k->sub / 100, k->sub % 100);
        *end = *first + 1;
        break;
    }
}

double score_alert_elapsed_share(const struct score_scheme *s, const char *period, int64_t now_ms)
{
    struct score__period_key k;
    if (!period || score__period_parse(period, &k))
        return -1;
    int32_t first, end;
    period_days(&k, &first, &end);
    int64_t a = day_start_ms(s, first), b = day_start_ms(s, end);
    double share = (double)(now_ms - a) / (double)(b - a);
    return share < 0 ? 0 : share > 1 ? 1 : share;
}

/* The period of kind k that is i periods before key (i >= 0). */
static struct score__period_key period_back(const struct score__period_key *key, int i)
{
    struct score__period_key out = *key;
    int idx, y, m, d;
    switch (key->kind) {
    case SCORE_P_YEAR:
        out.year = key->year - i;
        break;
    case SCORE_P_HALF:
        idx = key->year * 2 + key->sub - 1 - i;
        out.year = idx / 2;
        out.sub = idx % 2 + 1;
        break;
    case SCORE_P_QUARTER:
        idx = key->year * 4 + key->sub - 1 - i;
        out.year = idx / 4;
        out.sub = idx % 4 + 1;
        break;
    case SCORE_P_MONTH:
        idx = key->year * 12 + key->sub - 1 - i;
        out.year = idx / 12;
        out.sub = idx % 12 + 1;
        break;
    default:
        score_alert_civil_from_days(
            score_alert_days_from_civil(key->year, key->sub / 100, key->sub % 100) - i, &y, &m, &d);
        out.year = y;
        out.sub = m * 100 + d;
        break;
    }
    return out;
}

/* The period of kind k containing local day z. */
static struct score__period_key period_of_day(enum score_pkind k, int32_t z)
{
    int y, m, d;
    score_alert_civil_from_days(z, &y, &m, &d);
    struct score__period_key day = {SCORE_P_DAY, y, m * 100 + d}, out;
    score__period_up(&day, k, &out);
    return out;
}

/* ---- state ------------------------------------------------------------------------------ */

struct pcache {
    char *period;
    struct score__period_key key;
    bool *present, *vetoed;
    uint32_t *rank;
    int *grade; /* index into the scheme's grades, -1 for none */
    double *total;
    double *adj;                /* n_units x n_adj: points of the watched deduct kinds */
    uint32_t *gcount, *gcount0; /* present totals per group; at the start of this batch */
    bool touched;
};

struct slot {
    enum score_alert_state st;
    int64_t since, fired, clear;
};

struct subj {
    char *key;
    size_t rule;
    long unit, node;
    char *period;  /* owned, NULL when none */
    char *adapter; /* source_stale */
    char *src;
    /* event memory (event rules) */
    bool ev;
    int64_t ev_at;
    double ev_ref, ev_val;
    enum score_alert_sev ev_sev;
    /* node_overdue aggregate of this pass */
    int agg_n;
    enum score_alert_sev agg_sev;
    int64_t agg_due;
    char agg_ref[48];
    /* the last evaluation's measure, for summaries */
    double value, aux;
    struct slot slot[SCORE_SEV__COUNT];
};

struct task {
    char *key; /* src \x1f ref */
    char *ref;
    uint64_t rev;
    size_t unit, node;
    char period[16];
    int64_t due, followup;
    bool done; /* a tombstone: finished (or its due time withdrawn) */
};

struct source {
    char *adapter, *src;
    int64_t last;
};

struct rank_cand {
    size_t unit;
    size_t pc;
    uint32_t old_rank, new_rank;
};

struct score_alert {
    const struct score_scheme *s;
    const struct score_alert_rules *R;
    struct pcache **pcs;
    size_t n_pcs;
    struct score__strmap pmap;
    long *adj_slot; /* per node: slot in pcache.adj, -1 */
    size_t n_adj;
    struct subj **subj;
    size_t n_subj, cap_subj;
    struct score__strmap smap;
    struct task **tasks;
    size_t n_tasks, cap_tasks;
    struct score__strmap tmap;
    struct source *src;
    size_t n_src;
    struct rank_cand *cands;
    size_t n_cands, cap_cands;
    struct score_alert_transition *out;
    size_t n_out, cap_out;
};

static const struct score_alert_rule *rule_of(const struct score_alert *a, size_t i)
{
    return &a->R->rules[i];
}

static bool is_event_kind(enum score_alert_kind k)
{
    return k == SCORE_AK_GRADE_DROP || k == SCORE_AK_RANK_DROP || k == SCORE_AK_DEDUCTION_EVENT ||
           k == SCORE_AK_DATA_QUALITY;
}

int score_alert_new(const struct score_scheme *s, struct score_alert **out)
{
    static const struct score_alert_rules none = {0};
    struct score_alert *a = kp_xcalloc(1, sizeof *a);
    a->s = s;
    a->R = s->alert_rules ? s->alert_rules : &none;
    a->adj_slot = kp_xcalloc(s->n_nodes + 1, sizeof *a->adj_slot);
    for (size_t n = 0; n < s->n_nodes; n++)
        a->adj_slot[n] = -1;
    for (size_t i = 0; i < a->R->n; i++) {
        const struct score_alert_rule *r = rule_of(a, i);
        if (r->kind != SCORE_AK_DEDUCTION_EVENT)
            continue;
        for (size_t k = 0; k < r->n_nodes; k++)
            if (a->adj_slot[r->nodes[k]] < 0)
                a->adj_slot[r->nodes[k]] = (long)a->n_adj++;
    }
    *out = a;
    return 0;
}

static void pcache_free(struct pcache *p)
{
    free(p->period);
    free(p->present);
    free(p->vetoed);
    free(p->rank);
    free(p->grade);
    free(p->total);
    free(p->adj);
    free(p->gcount);
    free(p->gcount0);
    free(p);
}

static void subj_free(struct subj *x)
{
    free(x->key);
    free(x->period);
    free(x->adapter);
    free(x->src);
    free(x);
}

static void task_free(struct task *t)
{
    free(t->key);
    free(t->ref);
    free(t);
}

void score_alert_destroy(struct score_alert **ap)
{
    if (!ap || !*ap)
        return;
    struct score_alert *a = *ap;
    for (size_t i = 0; i < a->n_pcs; i++)
        pcache_free(a->pcs[i]);
    free(a->pcs);
    score__strmap_fini(&a->pmap);
    for (size_t i = 0; i < a->n_subj; i++)
        subj_free(a->subj[i]);
    free(a->subj);
    score__strmap_fini(&a->smap);
    for (size_t i = 0; i < a->n_tasks; i++)
        task_free(a->tasks[i]);
    free(a->tasks);
    score__strmap_fini(&a->tmap);
    for (size_t i = 0; i < a->n_src; i++) {
        free(a->src[i].adapter);
        free(a->src[i].src);
    }
    free(a->src);
    free(a->cands);
    free(a->out);
    free(a->adj_slot);
    free(a);
    *ap = NULL;
}

static struct pcache *pcache_get(struct score_alert *a, const char *period)
{
    long i = score__strmap_get(&a->pmap, period);
    if (i >= 0)
        return a->pcs[i];
    struct score__period_key k;
    if (score__period_parse(period, &k))
        return NULL;
    const struct score_scheme *s = a->s;
    struct pcache *p = kp_xcalloc(1, sizeof *p);
    p->period = kp_xstrdup(period);
    p->key = k;
    size_t nu = s->n_units + 1, ng = s->n_groups + 1;
    p->present = kp_xcalloc(nu, sizeof *p->present);
    p->vetoed = kp_xcalloc(nu, sizeof *p->vetoed);
    p->rank = kp_xcalloc(nu, sizeof *p->rank);
    p->grade = kp_xcalloc(nu, sizeof *p->grade);
    p->total = kp_xcalloc(nu, sizeof *p->total);
    p->adj = kp_xcalloc(nu * (a->n_adj + 1), sizeof *p->adj);
    p->gcount = kp_xcalloc(ng, sizeof *p->gcount);
    p->gcount0 = kp_xcalloc(ng, sizeof *p->gcount0);
    for (size_t u = 0; u < nu; u++)
        p->grade[u] = -1;
    a->pcs = kp_xrealloc(a->pcs, (a->n_pcs + 1) * sizeof *a->pcs);
    a->pcs[a->n_pcs] = p;
    score__strmap_put(&a->pmap, p->period, (long)a->n_pcs);
    a->n_pcs++;
    return p;
}

static int grade_index(const struct score_scheme *s, const char *g)
{
    if (!g || !*g)
        return -1;
    for (size_t i = 0; i < s->n_grades; i++)
        if (!strcmp(s->grades[i].name, g))
            return (int)i;
    return -1;
}

/* The period kinds a rule looks at for node n. */
static unsigned rule_periods(const struct score_alert *a, const struct score_alert_rule *r,
                             size_t n)
{
    if (r->periods)
        return r->periods;
    const struct score_node *nd = &a->s->nodes[n];
    switch (r->kind) {
    case SCORE_AK_DEDUCTION_EVENT:
    case SCORE_AK_DATA_QUALITY:
    case SCORE_AK_NODE_OVERDUE:
        return nd->periods;
    case SCORE_AK_PROGRESS_LAG:
        return nd->leaf ? nd->periods : ~0u;
    case SCORE_AK_REPORT_MISSING:
        return 1u << r->report_kind;
    default:
        return ~0u;
    }
}

/* The severities a rule can raise (bit per severity): the ladder only implies those. */
static unsigned rule_sevs(const struct score_alert_rule *r)
{
    unsigned m = 0;
    switch (r->kind) {
    case SCORE_AK_PROGRESS_LAG:
        return 1u << SCORE_SEV_YELLOW | 1u << SCORE_SEV_RED;
    case SCORE_AK_REPORT_MISSING:
        return (r->warn_days > 0 ? 1u << SCORE_SEV_WARNING : 0) | 1u << SCORE_SEV_YELLOW |
               1u << SCORE_SEV_RED;
    case SCORE_AK_NODE_OVERDUE:
        return (r->warn_before_ms > 0 ? 1u << SCORE_SEV_WARNING : 0) | 1u << SCORE_SEV_YELLOW |
               1u << SCORE_SEV_RED;
    case SCORE_AK_SCORE_BAND:
        for (size_t i = 0; i < r->n_bands; i++)
            m |= 1u << r->bands[i].sev;
        return m;
    case SCORE_AK_SOURCE_STALE:
        return 1u << SCORE_SEV_YELLOW | (r->red_after_ms > 0 ? 1u << SCORE_SEV_RED : 0);
    case SCORE_AK_DEDUCTION_EVENT:
        return 1u << r->sev | (r->red_points > 0 ? 1u << SCORE_SEV_RED : 0);
    default:
        return 1u << r->sev;
    }
}

static bool rule_has_node(const struct score_alert_rule *r, size_t n)
{
    for (size_t k = 0; k < r->n_nodes; k++)
        if (r->nodes[k] == n)
            return true;
    return false;
}

/* ---- subjects --------------------------------------------------------------------------- */

static void subj_key(char *buf, size_t len, size_t rule, long unit, long node, const char *period,
                     const char *adapter)
{
    snprintf(buf, len, "%zu|%ld|%ld|%s|%s", rule, unit, node, period ? period : "",
             adapter ? adapter : "");
}

static struct subj *subj_find(struct score_alert *a, size_t rule, long unit, long node,
                              const char *period, const char *adapter)
{
    char key[256];
    subj_key(key, sizeof key, rule, unit, node, period, adapter);
    long i = score__strmap_get(&a->smap, key);
    return i < 0 ? NULL : a->subj[i];
}

static struct subj *touch(struct score_alert *a, size_t rule, long unit, long node,
                          const char *period, const char *adapter, const char *src)
{
    char key[256];
    subj_key(key, sizeof key, rule, unit, node, period, adapter);
    long i = score__strmap_get(&a->smap, key);
    if (i >= 0)
        return a->subj[i];
    struct subj *x = kp_xcalloc(1, sizeof *x);
    x->key = kp_xstrdup(key);
    x->rule = rule;
    x->unit = unit;
    x->node = node;
    x->period = period ? kp_xstrdup(period) : NULL;
    x->adapter = adapter ? kp_xstrdup(adapter) : NULL;
    x->src = src ? kp_xstrdup(src) : NULL;
    x->ev_sev = SCORE_SEV_NONE;
    x->agg_sev = SCORE_SEV_NONE;
    x->value = NAN;
    x->aux = NAN;
    if (a->n_subj == a->cap_subj) {
        a->cap_subj = a->cap_subj ? a->cap_subj * 2 : 64;
        a->subj = kp_xrealloc(a->subj, a->cap_subj * sizeof *a->subj);
    }
    a->subj[a->n_subj] = x;
    score__strmap_put(&a->smap, x->key, (long)a->n_subj);
    a->n_subj++;
    return x;
}

/* Records an event on a subject: the reference stays the one before the first event of an
 * active series (a grade that drops twice is measured against where it started). */
static void event(struct score_alert *a, size_t rule, size_t unit, long node, const char *period,
                  enum score_alert_sev sev, double ref, double val, bool keep_min_ref, int64_t now)
{
    struct subj *x = touch(a, rule, (long)unit, node, period, NULL, NULL);
    if (x->ev && keep_min_ref)
        x->ev_ref = ref < x->ev_ref ? ref : x->ev_ref;
    else
        x->ev_ref = ref;
    x->ev = true;
    x->ev_at = now;
    x->ev_val = val;
    x->ev_sev = x->ev_sev > sev ? x->ev_sev : sev;
}

/* ---- feeding ------------------------------------------------------------------------------ */

static void total_level_rules(struct score_alert *a, size_t unit, const struct pcache *pc)
{
    for (size_t i = 0; i < a->R->n; i++) {
        const struct score_alert_rule *r = rule_of(a, i);
        bool level =
            (r->kind == SCORE_AK_SCORE_BAND && r->nodes[0] == 0) || r->kind == SCORE_AK_VETO;
        if (level && (rule_periods(a, r, 0) & (1u << pc->key.kind)))
            touch(a, i, (long)unit, 0, pc->period, NULL, NULL);
    }
}

static void set_total(struct score_alert *a, struct pcache *pc, size_t u,
                      const struct score_total_change *t)
{
    size_t g = a->s->units[u].group;
    bool present = t->rank > 0;
    if (!pc->touched) {
        memcpy(pc->gcount0, pc->gcount, (a->s->n_groups + 1) * sizeof *pc->gcount);
        pc->touched = true;
    }
    if (present && !pc->present[u])
        pc->gcount[g]++;
    else if (!present && pc->present[u] && pc->gcount[g] > 0)
        pc->gcount[g]--;
    pc->present[u] = present;
    pc->rank[u] = t->rank;
    pc->grade[u] = present ? grade_index(a->s, t->grade) : -1;
    pc->vetoed[u] = present && t->vetoed;
    pc->total[u] = present ? t->total : NAN;
}

void score_alert_on_total(struct score_alert *a, const struct score_engine *e,
                          const struct score_total_change *t, int64_t now_ms)
{
    (void)e;
    if (!a->R->n || t->unit >= a->s->n_units)
        return;
    struct pcache *pc = pcache_get(a, t->period);
    if (!pc)
        return;
    size_t u = t->unit;
    bool old_present = pc->present[u];
    uint32_t old_rank = pc->rank[u];
    int old_grade = pc->grade[u];
    set_total(a, pc, u, t);
    total_level_rules(a, u, pc);
    if (!old_present || !pc->present[u])
        return;
    for (size_t i = 0; i < a->R->n; i++) {
        const struct score_alert_rule *r = rule_of(a, i);
        if (!(rule_periods(a, r, 0) & (1u << pc->key.kind)))
            continue;
        if (r->kind == SCORE_AK_GRADE_DROP && old_grade >= 0 && pc->grade[u] > old_grade)
            event(a, i, u, 0, pc->period, r->sev, old_grade, pc->grade[u], true, now_ms);
        if (r->kind == SCORE_AK_RANK_DROP && pc->rank[u] >= old_rank + (uint32_t)r->places) {
            /* judged in eval, once the whole batch is known (a group that grew) */
            if (a->n_cands == a->cap_cands) {
                a->cap_cands = a->cap_cands ? a->cap_cands * 2 : 16;
                a->cands = kp_xrealloc(a->cands, a->cap_cands * sizeof *a->cands);
            }
            long p = score__strmap_get(&a->pmap, pc->period);
            a->cands[a->n_cands++] = (struct rank_cand){u, (size_t)p, old_rank, pc->rank[u]};
        }
    }
}

/* z of x against values v[0..n-1]; NAN when not judged. */
static double zscore(double x, const double *v, size_t n, size_t min_n, double min_sd)
{
    if (n < min_n || n < 2)
        return NAN;
    double mean = 0;
    for (size_t i = 0; i < n; i++)
        mean += v[i];
    mean /= (double)n;
    double ss = 0;
    for (size_t i = 0; i < n; i++)
        ss += (v[i] - mean) * (v[i] - mean);
    double sd = sqrt(ss / (double)(n - 1));
    if (sd < min_sd)
        sd = min_sd;
    if (!(sd > 0))
        return NAN;
    return (x - mean) / sd;
}

/* Data quality, soft: |z| of the cell's value against the unit's own history (the previous
 * `window` periods of the same kind) or against its group's other units in the period. */
static double dq_z(const struct score_alert *a, const struct score_engine *e,
                   const struct score_alert_rule *r, const struct score_cell_change *c,
                   const struct score__period_key *key)
{
    double v[1024];
    size_t n = 0;
    struct score_cell_change h;
    if (r->against == SCORE_DQ_HISTORY) {
        for (int i = 1; i <= r->window && n < 1024; i++) {
            struct score__period_key pk = period_back(key, i);
            char p[16];
            score__period_format(&pk, p, sizeof p);
            if (score_engine_cell(e, c->unit, c->node, p, &h) == 0 && isfinite(h.value))
                v[n++] = h.value;
        }
        return zscore(c->value, v, n, (size_t)r->min_history, r->min_sd);
    }
    const struct score_group *g = &a->s->groups[a->s->units[c->unit].group];
    for (size_t k = 0; k < g->n_units && n < 1024; k++) {
        size_t u = g->units[k];
        if (u != c->unit && score_engine_cell(e, u, c->node, c->period, &h) == 0 &&
            isfinite(h.value))
            v[n++] = h.value;
    }
    return zscore(c->value, v, n, (size_t)r->min_peers, r->min_sd);
}

void score_alert_on_cell(struct score_alert *a, const struct score_engine *e,
                         const struct score_cell_change *c, int64_t now_ms)
{
    if (!a->R->n || c->unit >= a->s->n_units || c->node >= a->s->n_nodes)
        return;
    struct pcache *pc = pcache_get(a, c->period);
    if (!pc)
        return;
    bool present = c->n_obs > 0 && !isnan(c->score);
    unsigned kbit = 1u << pc->key.kind;
    for (size_t i = 0; i < a->R->n; i++) {
        const struct score_alert_rule *r = rule_of(a, i);
        if (!rule_has_node(r, c->node) || !(rule_periods(a, r, c->node) & kbit))
            continue;
        switch (r->kind) {
        case SCORE_AK_PROGRESS_LAG:
        case SCORE_AK_SCORE_BAND:
            touch(a, i, (long)c->unit, (long)c->node, c->period, NULL, NULL);
            break;
        case SCORE_AK_DEDUCTION_EVENT: {
            long sl = a->adj_slot[c->node];
            double old = sl >= 0 ? pc->adj[c->unit * a->n_adj + (size_t)sl] : 0;
            double now_pts = present ? c->score : 0;
            if (now_pts > old + 1e-9) {
                enum score_alert_sev sev =
                    r->red_points > 0 && now_pts - old >= r->red_points - 1e-9 ? SCORE_SEV_RED
                                                                               : r->sev;
                event(a, i, c->unit, (long)c->node, c->period, sev, old, now_pts, true, now_ms);
            }
            break;
        }
        case SCORE_AK_DATA_QUALITY: {
            if (r->hard || !present || !isfinite(c->value))
                break;
            double z = dq_z(a, e, r, c, &pc->key);
            struct subj *x = subj_find(a, i, (long)c->unit, (long)c->node, c->period, NULL);
            if (isfinite(z) && fabs(z) > r->z)
                event(a, i, c->unit, (long)c->node, c->period, r->sev, z, c->value, false, now_ms);
            else if (x)
                x->ev = false; /* a revision brought the value back in line */
            break;
        }
        default: /* report_missing: an open subject is looked at in every pass */
            break;
        }
    }
    long sl = a->adj_slot[c->node];
    if (sl >= 0)
        pc->adj[c->unit * a->n_adj + (size_t)sl] = present ? c->score : 0;
}

static void prime_total(const struct score_total_change *t, void *arg)
{
    struct score_alert *a = arg;
    struct pcache *pc = pcache_get(a, t->period);
    if (!pc || t->unit >= a->s->n_units)
        return;
    set_total(a, pc, t->unit, t);
    pc->touched = false;
    total_level_rules(a, t->unit, pc);
}

static void prime_cell(const struct score_cell_change *c, void *arg)
{
    struct score_alert *a = arg;
    if (c->node >= a->s->n_nodes || c->unit >= a->s->n_units)
        return;
    long sl = a->adj_slot[c->node];
    bool band = false;
    for (size_t i = 0; i < a->R->n && !band; i++) {
        const struct score_alert_rule *r = rule_of(a, i);
        band = r->kind == SCORE_AK_SCORE_BAND && r->nodes[0] == c->node && c->node != 0;
    }
    if (sl < 0 && !band)
        return;
    struct pcache *pc = pcache_get(a, c->period);
    if (!pc)
        return;
    if (sl >= 0)
        pc->adj[c->unit * a->n_adj + (size_t)sl] = c->n_obs > 0 ? c->score : 0;
    for (size_t i = 0; band && i < a->R->n; i++) {
        const struct score_alert_rule *r = rule_of(a, i);
        if (r->kind == SCORE_AK_SCORE_BAND && r->nodes[0] == c->node &&
            (rule_periods(a, r, c->node) & (1u << pc->key.kind)))
            touch(a, i, (long)c->unit, (long)c->node, c->period, NULL, NULL);
    }
}

void score_alert_prime(struct score_alert *a, const struct score_engine *e)
{
    if (!a->R->n)
        return;
    score_engine_foreach_total(e, prime_total, a);
    score_engine_foreach_cell(e, prime_cell, a);
    /* periods known to the engine without any total yet are found by later changes */
    for (size_t i = 0; i < a->n_pcs; i++)
        a->pcs[i]->touched = false;
}

static void rebuild_tmap(struct score_alert *a)
{
    score__strmap_fini(&a->tmap);
    for (size_t i = 0; i < a->n_tasks; i++)
        score__strmap_put(&a->tmap, a->tasks[i]->key, (long)i);
}

/* Drops the finished tasks (tombstones kept so that a stale revision cannot reopen one). */
static void purge_done_tasks(struct score_alert *a)
{
    size_t k = 0;
    for (size_t i = 0; i < a->n_tasks; i++) {
        if (a->tasks[i]->done)
            task_free(a->tasks[i]);
        else
            a->tasks[k++] = a->tasks[i];
    }
    a->n_tasks = k;
    rebuild_tmap(a);
}

int score_alert_task(struct score_alert *a, const struct score_alert_task *t)
{
    if (t->unit >= a->s->n_units || t->node >= a->s->n_nodes || !t->src || !t->ref)
        return KP_EINVAL;
    size_t kl = strlen(t->src) + strlen(t->ref) + 2;
    char *key = kp_xmalloc(kl);
    snprintf(key, kl, "%s\x1f%s", t->src, t->ref);
    long i = score__strmap_get(&a->tmap, key);
    if (i >= 0 && a->tasks[i]->rev > t->rev) {
        free(key);
        return 0;
    }
    bool open = !t->done && t->due_ms > 0;
    if (i < 0 && !open) { /* finished before we ever saw it open: nothing to watch */
        free(key);
        return 0;
    }
    struct task *k;
    if (i >= 0) {
        k = a->tasks[i];
        free(key);
    } else {
        if (a->n_tasks >= MAX_TASKS)
            purge_done_tasks(a);
        if (a->n_tasks >= MAX_TASKS) {
            free(key);
            return KP_EFULL;
        }
        if (a->n_tasks == a->cap_tasks) {
            a->cap_tasks = a->cap_tasks ? a->cap_tasks * 2 : 64;
            a->tasks = kp_xrealloc(a->tasks, a->cap_tasks * sizeof *a->tasks);
        }
        k = kp_xcalloc(1, sizeof *k);
        k->key = key;
        k->ref = kp_xstrdup(t->ref);
        a->tasks[a->n_tasks] = k;
        score__strmap_put(&a->tmap, k->key, (long)a->n_tasks);
        a->n_tasks++;
    }
    k->rev = t->rev;
    k->done = !open;
    k->unit = t->unit;
    k->node = t->node;
    snprintf(k->period, sizeof k->period, "%s", t->period ? t->period : "");
    k->due = t->due_ms;
    k->followup = t->followup_ms;
    return 0;
}

void score_alert_source(struct score_alert *a, const char *adapter, const char *src,
                        int64_t last_ms)
{
    for (size_t i = 0; i < a->n_src; i++)
        if (!strcmp(a->src[i].adapter, adapter)) {
            if (last_ms > a->src[i].last)
                a->src[i].last = last_ms;
            if (strcmp(a->src[i].src, src)) {
                free(a->src[i].src);
                a->src[i].src = kp_xstrdup(src);
            }
            return;
        }
    a->src = kp_xrealloc(a->src, (a->n_src + 1) * sizeof *a->src);
    a->src[a->n_src++] = (struct source){kp_xstrdup(adapter), kp_xstrdup(src), last_ms};
}

int score_alert_restore(struct score_alert *a, const struct score_alert_transition *t)
{
    const struct score_scheme *s = a->s;
    long rule = -1;
    for (size_t i = 0; i < a->R->n; i++)
        if (!strcmp(rule_of(a, i)->name, t->rule))
            rule = (long)i;
    if (rule < 0 || t->severity == SCORE_SEV_NONE ||
        (t->state != SCORE_AS_PENDING && t->state != SCORE_AS_FIRING))
        return KP_ENOENT;
    const struct score_alert_rule *r = rule_of(a, (size_t)rule);
    if (strcmp(score__alert_kind_names[r->kind], t->kind) && t->kind[0])
        return KP_ENOENT; /* the rule's name now means another kind */
    long unit = -1, node = -1;
    const char *period = NULL, *adapter = NULL, *src = NULL;
    if (r->kind == SCORE_AK_SOURCE_STALE) {
        if (!t->adapter[0])
            return KP_ENOENT;
        adapter = t->adapter;
        src = t->src;
    } else {
        unit = score__strmap_get(&s->unit_map, t->unit);
        node = score__strmap_get(&s->node_map, t->indicator);
        if (unit < 0 || node < 0 || !rule_has_node(r, (size_t)node) || !t->period[0])
            return KP_ENOENT;
        period = t->period;
        if (!pcache_get(a, period))
            return KP_ENOENT;
    }
    struct subj *x = touch(a, (size_t)rule, unit, node, period, adapter, src);
    struct slot *sl = &x->slot[t->severity];
    sl->st = t->state;
    sl->since = t->pending_at;
    sl->fired = t->state == SCORE_AS_FIRING ? (t->fired_at ? t->fired_at : t->pending_at) : 0;
    sl->clear = 0;
    if (is_event_kind(r->kind)) {
        x->ev = true;
        x->ev_at = t->pending_at;
        x->ev_ref = t->ref;
        x->ev_val = t->value;
        x->ev_sev = x->ev_sev > t->severity ? x->ev_sev : t->severity;
    }
    return 0;
}

/* ---- desired severity ------------------------------------------------------------------- */

static int64_t end_of_day(const struct score_scheme *s, int32_t z)
{
    return day_start_ms(s, z + 1);
}

/* report_missing thresholds of a period: warning, yellow (the deadline), red. */
static void missing_times(const struct score_scheme *s, const struct score_alert_rule *r,
                          const struct score__period_key *k, int64_t *warn, int64_t *yellow,
                          int64_t *red)
{
    int32_t first, end;
    period_days(k, &first, &end);
    int32_t last = end - 1;
    *yellow = end_of_day(s, score_alert_step_working(s, last, r->due_days));
    *warn = r->warn_days > 0
                ? end_of_day(s, score_alert_step_working(s, last, r->due_days - r->warn_days))
                : *yellow;
    *red = end_of_day(s, score_alert_step_working(s, last, r->due_days + r->red_days));
}

static enum score_alert_sev desired(struct score_alert *a, const struct score_engine *e,
                                    struct subj *x, int64_t now)
{
    const struct score_scheme *s = a->s;
    const struct score_alert_rule *r = rule_of(a, x->rule);
    struct score_cell_change c;
    struct score_total_change t;
    x->value = NAN;
    x->aux = NAN;
    if (is_event_kind(r->kind)) {
        if (!x->ev)
            return SCORE_SEV_NONE;
        if (r->hold_ms > 0 && now >= x->ev_at + r->hold_ms) {
            x->ev = false;
            return SCORE_SEV_NONE;
        }
    }
    switch (r->kind) {
    case SCORE_AK_PROGRESS_LAG: {
        if (score_engine_cell(e, (size_t)x->unit, (size_t)x->node, x->period, &c))
            return SCORE_SEV_NONE;
        double v = r->use_score ? c.score : c.value;
        double el = score_alert_elapsed_share(s, x->period, now);
        if (!isfinite(v) || el < 0)
            return SCORE_SEV_NONE;
        double lag = el * 100 - v;
        x->value = lag;
        x->aux = v;
        return lag > r->red ? SCORE_SEV_RED : lag >= r->yellow ? SCORE_SEV_YELLOW : SCORE_SEV_NONE;
    }
    case SCORE_AK_SCORE_BAND: {
        double v;
        if (x->node == 0) {
            if (score_engine_total(e, (size_t)x->unit, x->period, &t))
                return SCORE_SEV_NONE;
            v = t.total;
        } else {
            if (score_engine_cell(e, (size_t)x->unit, (size_t)x->node, x->period, &c))
                return SCORE_SEV_NONE;
            v = c.score;
        }
        x->value = v;
        for (size_t i = 0; i < r->n_bands; i++)
            if (v >= r->bands[i].lo && v < r->bands[i].hi) {
                x->aux = (double)i;
                return r->bands[i].sev;
            }
        return SCORE_SEV_NONE;
    }
    case SCORE_AK_VETO:
        if (score_engine_total(e, (size_t)x->unit, x->period, &t) || !t.vetoed)
            return SCORE_SEV_NONE;
        x->value = t.total;
        return r->sev;
    case SCORE_AK_GRADE_DROP: {
        int g =
            score_engine_total(e, (size_t)x->unit, x->period, &t) ? -1 : grade_index(s, t.grade);
        if (g < 0 || (double)g <= x->ev_ref) {
            x->ev = false;
            return SCORE_SEV_NONE;
        }
        x->value = g;
        x->aux = x->ev_ref;
        return x->ev_sev;
    }
    case SCORE_AK_RANK_DROP:
        if (score_engine_total(e, (size_t)x->unit, x->period, &t) ||
            (double)t.rank < x->ev_ref + r->places) {
            x->ev = false;
            return SCORE_SEV_NONE;
        }
        x->value = t.rank;
        x->aux = x->ev_ref;
        return x->ev_sev;
    case SCORE_AK_DEDUCTION_EVENT: {
        double pts =
            score_engine_cell(e, (size_t)x->unit, (size_t)x->node, x->period, &c) ? 0 : c.score;
        if (!(pts > x->ev_ref + 1e-9)) {
            x->ev = false;
            return SCORE_SEV_NONE;
        }
        x->value = pts;
        x->aux = x->ev_ref;
        return x->ev_sev;
    }
    case SCORE_AK_DATA_QUALITY:
        if (score_engine_cell(e, (size_t)x->unit, (size_t)x->node, x->period, &c) ||
            c.value != x->ev_val) {
            x->ev = false;
            return SCORE_SEV_NONE;
        }
        x->value = c.value;
        x->aux = x->ev_ref;
        return x->ev_sev;
    case SCORE_AK_REPORT_MISSING: {
        if (score_engine_cell(e, (size_t)x->unit, (size_t)x->node, x->period, &c) == 0)
            return SCORE_SEV_NONE;
        struct score__period_key k;
        if (score__period_parse(x->period, &k))
            return SCORE_SEV_NONE;
        int64_t warn, yellow, red;
        missing_times(s, r, &k, &warn, &yellow, &red);
        if (now >= yellow + r->lookback_ms)
            return SCORE_SEV_NONE;
        x->aux = (double)yellow;
        if (now >= red)
            return SCORE_SEV_RED;
        if (now >= yellow)
            return SCORE_SEV_YELLOW;
        if (now >= warn)
            return SCORE_SEV_WARNING;
        return SCORE_SEV_NONE;
    }
    case SCORE_AK_NODE_OVERDUE:
        x->value = x->agg_n;
        x->aux = (double)x->agg_due;
        return x->agg_n > 0 ? x->agg_sev : SCORE_SEV_NONE;
    case SCORE_AK_SOURCE_STALE:
        for (size_t i = 0; i < a->n_src; i++)
            if (!strcmp(a->src[i].adapter, x->adapter)) {
                int64_t silent = now - a->src[i].last;
                x->value = (double)silent / 1000.0;
                if (r->red_after_ms > 0 && silent >= r->red_after_ms)
                    return SCORE_SEV_RED;
                return silent >= r->after_ms ? SCORE_SEV_YELLOW : SCORE_SEV_NONE;
            }
        return SCORE_SEV_NONE;
    default:
        return SCORE_SEV_NONE;
    }
}

/* ---- transitions -------------------------------------------------------------------------- */

static void fmt_day(const struct score_scheme *s, int64_t ms, char *buf, size_t len)
{
    int y, m, d;
    score_alert_civil_from_days(local_day(s, ms), &y, &m, &d);
    if (snprintf(buf, len, "%04d-%02d-%02d", y, m, d) < 0 && len) /* used: cut, never overrun */
        buf[0] = 0;
}

static void summarize(const struct score_alert *a, const struct subj *x, enum score_alert_sev sev,
                      char *buf, size_t len)
{
    const struct score_scheme *s = a->s;
    const struct score_alert_rule *r = rule_of(a, x->rule);
    const char *un = x->unit >= 0 ? s->units[x->unit].name : "";
    const char *nn = x->node >= 0 ? s->nodes[x->node].name : "";
    const char *p = x->period ? x->period : "";
    const char *sn = score_alert_sev_name(sev);
    char day[16];
    bool have = isfinite(x->value);
    switch (r->kind) {
    case SCORE_AK_PROGRESS_LAG:
        if (have && x->value > 0)
            snprintf(buf, len, "%s %s %s: 完成 %.1f, 序时进度 %.1f%%, 落后 %.1f 个百分点 (%s)", un,
                     nn, p, x->aux, x->aux + x->value, x->value, sn);
        else if (have)
            snprintf(buf, len, "%s %s %s: 完成 %.1f, 序时进度 %.1f%%, 未落后 (%s)", un, nn, p,
                     x->aux, x->aux + x->value, sn);
        else
            snprintf(buf, len, "%s %s %s: 序时进度落后 (%s)", un, nn, p, sn);
        break;
    case SCORE_AK_SCORE_BAND:
        if (have)
            snprintf(buf, len, "%s %s %s: %.2f 分 (%s)", un, nn, p, x->value, sn);
        else
            snprintf(buf, len, "%s %s %s: 分数段预警 (%s)", un, nn, p, sn);
        break;
    case SCORE_AK_GRADE_DROP:
        if (have && x->aux >= 0 && x->aux < (double)s->n_grades && x->value < (double)s->n_grades)
            snprintf(buf, len, "%s %s: 等次由 %s 降为 %s", un, p, s->grades[(int)x->aux].name,
                     s->grades[(int)x->value].name);
        else
            snprintf(buf, len, "%s %s: 等次下降", un, p);
        break;
    case SCORE_AK_RANK_DROP:
        if (have)
            snprintf(buf, len, "%s %s: 组内排名由第 %.0f 名降至第 %.0f 名", un, p, x->aux,
                     x->value);
        else
            snprintf(buf, len, "%s %s: 组内排名下降", un, p);
        break;
    case SCORE_AK_VETO:
        snprintf(buf, len, "%s %s: 一票否决", un, p);
        break;
    case SCORE_AK_DEDUCTION_EVENT:
        if (have)
            snprintf(buf, len, "%s %s %s: 扣 %g 分 (累计 %g 分)", un, p, nn, x->value - x->aux,
                     x->value);
        else
            snprintf(buf, len, "%s %s %s: 扣分事件", un, p, nn);
        break;
    case SCORE_AK_DATA_QUALITY:
        if (have)
            snprintf(buf, len, "%s %s %s: 数值 %g 偏离%s (z=%.1f), 请核验", un, nn, p, x->value,
                     r->against == SCORE_DQ_GROUP ? "同组单位" : "本单位历史", x->aux);
        else
            snprintf(buf, len, "%s %s %s: 数据异常待核验", un, nn, p);
        break;
    case SCORE_AK_REPORT_MISSING:
        if (isfinite(x->aux)) {
            fmt_day(s, (int64_t)x->aux - 1, day, sizeof day);
            snprintf(buf, len, "%s %s %s: 未报送, 截止 %s (%s)", un, nn, p, day, sn);
        } else {
            snprintf(buf, len, "%s %s %s: 未报送 (%s)", un, nn, p, sn);
        }
        break;
    case SCORE_AK_NODE_OVERDUE:
        if (x->agg_n > 0) {
            fmt_day(s, x->agg_due, day, sizeof day);
            snprintf(buf, len, "%s %s %s: %d 个节点逾期, 最早到期 %s (%s) (%s)", un, nn, p,
                     x->agg_n, day, x->agg_ref, sn);
        } else {
            snprintf(buf, len, "%s %s %s: 节点逾期 (%s)", un, nn, p, sn);
        }
        break;
    case SCORE_AK_SOURCE_STALE:
        if (have)
            snprintf(buf, len, "数据源 %s (适配器 %s) 已 %.0f 分钟无数据 (%s)",
                     x->src ? x->src : "", x->adapter ? x->adapter : "", x->value / 60, sn);
        else
            snprintf(buf, len, "数据源 %s (适配器 %s) 无数据 (%s)", x->src ? x->src : "",
                     x->adapter ? x->adapter : "", sn);
        break;
    default:
        buf[0] = 0;
    }
}

static void emit(struct score_alert *a, const struct subj *x, enum score_alert_sev sev,
                 const struct slot *sl, enum score_alert_state state, int64_t now)
{
    const struct score_scheme *s = a->s;
    const struct score_alert_rule *r = rule_of(a, x->rule);
    if (a->n_out == a->cap_out) {
        a->cap_out = a->cap_out ? a->cap_out * 2 : 16;
        a->out = kp_xrealloc(a->out, a->cap_out * sizeof *a->out);
    }
    struct score_alert_transition *t = &a->out[a->n_out++];
    memset(t, 0, sizeof *t);
    snprintf(t->rule, sizeof t->rule, "%s", r->name);
    snprintf(t->kind, sizeof t->kind, "%s", score__alert_kind_names[r->kind]);
    t->severity = sev;
    if (x->unit >= 0)
        snprintf(t->unit, sizeof t->unit, "%s", s->units[x->unit].code);
    if (x->node >= 0)
        snprintf(t->indicator, sizeof t->indicator, "%s", s->nodes[x->node].code);
    if (x->period)
        snprintf(t->period, sizeof t->period, "%s", x->period);
    if (x->src)
        snprintf(t->src, sizeof t->src, "%s", x->src);
    if (x->adapter)
        snprintf(t->adapter, sizeof t->adapter, "%s", x->adapter);
    snprintf(t->fingerprint, sizeof t->fingerprint, "%s|%s|%s|%s|%s|%s|%s", t->rule,
             score_alert_sev_name(sev), t->unit, t->indicator, t->period, t->src, t->adapter);
    t->state = state;
    t->pending_at = sl->since;
    t->fired_at = sl->fired;
    t->resolved_at = state == SCORE_AS_RESOLVED ? now : 0;
    t->value = x->value;
    t->ref = is_event_kind(r->kind) ? x->ev_ref : NAN;
    summarize(a, x, sev, t->summary, sizeof t->summary);
}

/* The lifecycle of the subject's severities for the desired severity d. The ladder is walked
 * from red down: a condition at a severity implies the lower ones (30 points behind is also 10
 * behind), but a lower severity neither starts nor stays firing while a higher one fires. */
static void step(struct score_alert *a, struct subj *x, enum score_alert_sev d, int64_t now)
{
    const struct score_alert_rule *r = rule_of(a, x->rule);
    unsigned sevs = rule_sevs(r) | (d != SCORE_SEV_NONE ? 1u << d : 0);
    bool higher_firing = false;
    for (int sv = SCORE_SEV__COUNT - 1; sv >= 0; sv--) {
        struct slot *sl = &x->slot[sv];
        bool cond = d != SCORE_SEV_NONE && (int)d >= sv && (sevs & (1u << sv));
        if (higher_firing) {
            if (sl->st == SCORE_AS_FIRING) { /* escalation: resolve the lower one now */
                emit(a, x, (enum score_alert_sev)sv, sl, SCORE_AS_RESOLVED, now);
                memset(sl, 0, sizeof *sl);
            } else if (sl->st == SCORE_AS_PENDING) {
                emit(a, x, (enum score_alert_sev)sv, sl, SCORE_AS_INACTIVE, now);
                memset(sl, 0, sizeof *sl);
            }
            continue;
        }
        switch (sl->st) {
        case SCORE_AS_INACTIVE:
        case SCORE_AS_RESOLVED:
            if (!cond)
                break;
            sl->st = SCORE_AS_PENDING;
            sl->since = now;
            sl->clear = 0;
            if (r->for_ms <= 0) {
                sl->st = SCORE_AS_FIRING;
                sl->fired = now;
            }
            emit(a, x, (enum score_alert_sev)sv, sl, sl->st, now);
            break;
        case SCORE_AS_PENDING:
            if (!cond) {
                emit(a, x, (enum score_alert_sev)sv, sl, SCORE_AS_INACTIVE, now);
                memset(sl, 0, sizeof *sl);
            } else if (now - sl->since >= r->for_ms) {
                sl->st = SCORE_AS_FIRING;
                sl->fired = now;
                emit(a, x, (enum score_alert_sev)sv, sl, SCORE_AS_FIRING, now);
            }
            break;
        case SCORE_AS_FIRING:
            if (cond) {
                sl->clear = 0;
                break;
            }
            if (!sl->clear)
                sl->clear = now;
            if (now - sl->clear >= r->keep_ms) {
                emit(a, x, (enum score_alert_sev)sv, sl, SCORE_AS_RESOLVED, now);
                memset(sl, 0, sizeof *sl);
            }
            break;
        }
        if (sl->st == SCORE_AS_FIRING)
            higher_firing = true;
    }
}

/* ---- candidates of the time-driven rules ---------------------------------------------------- */

static void enumerate_progress(struct score_alert *a, const struct score_engine *e, size_t ri)
{
    const struct score_alert_rule *r = rule_of(a, ri);
    size_t n = r->nodes[0];
    unsigned mask = rule_periods(a, r, n);
    struct score_cell_change c;
    for (size_t p = 0; p < a->n_pcs; p++) {
        const struct pcache *pc = a->pcs[p];
        if (!(mask & (1u << pc->key.kind)))
            continue;
        for (size_t u = 0; u < a->s->n_units; u++)
            if (pc->present[u] && score_engine_cell(e, u, n, pc->period, &c) == 0)
                touch(a, ri, (long)u, (long)n, pc->period, NULL, NULL);
    }
}

static void enumerate_missing(struct score_alert *a, const struct score_engine *e, size_t ri,
                              int64_t now)
{
    const struct score_scheme *s = a->s;
    const struct score_alert_rule *r = rule_of(a, ri);
    struct score__period_key cur = period_of_day(r->report_kind, local_day(s, now));
    int year = score_scheme_year(s);
    struct score_cell_change c;
    for (int i = 0; i < 4000; i++) {
        struct score__period_key k = period_back(&cur, i);
        if (year && k.year < year)
            break;
        int64_t warn, yellow, red;
        missing_times(s, r, &k, &warn, &yellow, &red);
        if (now >= yellow + r->lookback_ms)
            break; /* this one and every earlier period are out of the lookback */
        if (now < warn || (year && k.year > year))
            continue;
        char p[16];
        score__period_format(&k, p, sizeof p);
        for (size_t ni = 0; ni < r->n_nodes; ni++) {
            size_t n = r->nodes[ni];
            for (size_t u = 0; u < s->n_units; u++)
                if (score__w(s, u, n) > 0 && score_engine_cell(e, u, n, p, &c) != 0)
                    touch(a, ri, (long)u, (long)n, p, NULL, NULL);
        }
    }
}

/* node_overdue: aggregates the open tasks of each (unit, indicator, period). */
static void aggregate_tasks(struct score_alert *a, size_t ri, int64_t now)
{
    const struct score_scheme *s = a->s;
    const struct score_alert_rule *r = rule_of(a, ri);
    for (size_t i = 0; i < a->n_subj; i++)
        if (a->subj[i]->rule == ri) {
            a->subj[i]->agg_n = 0;
            a->subj[i]->agg_sev = SCORE_SEV_NONE;
        }
    for (size_t i = 0; i < a->n_tasks; i++) {
        const struct task *k = a->tasks[i];
        if (k->done || !rule_has_node(r, k->node))
            continue;
        struct score__period_key pk;
        if (score__period_parse(k->period, &pk) || !(rule_periods(a, r, k->node) & (1u << pk.kind)))
            continue;
        int64_t red =
            k->followup
                ? k->followup
                : end_of_day(s, score_alert_step_working(s, local_day(s, k->due), r->red_days));
        enum score_alert_sev sev = now >= red && r->red_days >= 0 ? SCORE_SEV_RED
                                   : now >= k->due                ? SCORE_SEV_YELLOW
                                   : r->warn_before_ms > 0 && now >= k->due - r->warn_before_ms
                                       ? SCORE_SEV_WARNING
                                       : SCORE_SEV_NONE;
        if (sev == SCORE_SEV_NONE)
            continue;
        struct subj *x = touch(a, ri, (long)k->unit, (long)k->node, k->period, NULL, NULL);
        if (x->agg_n == 0 || k->due < x->agg_due) {
            x->agg_due = k->due;
            snprintf(x->agg_ref, sizeof x->agg_ref, "%s", k->ref);
        }
        x->agg_n++;
        if (sev > x->agg_sev)
            x->agg_sev = sev;
    }
}

static void enumerate_sources(struct score_alert *a, size_t ri)
{
    const struct score_alert_rule *r = rule_of(a, ri);
    for (size_t i = 0; i < a->n_src; i++)
        if (!r->src || !strcmp(r->src, a->src[i].src))
            touch(a, ri, -1, -1, NULL, a->src[i].adapter, a->src[i].src);
}

/* ---- eval --------------------------------------------------------------------------------- */

static bool subj_idle(const struct subj *x)
{
    if (x->ev)
        return false;
    for (int sv = 0; sv < SCORE_SEV__COUNT; sv++)
        if (x->slot[sv].st == SCORE_AS_PENDING || x->slot[sv].st == SCORE_AS_FIRING)
            return false;
    return true;
}

size_t score_alert_eval(struct score_alert *a, const struct score_engine *e, int64_t now_ms,
                        bool full, const struct score_alert_transition **out)
{
    a->n_out = 0;
    *out = a->out;
    if (!a->R->n)
        return 0;
    /* rank drops of this batch, unless the group simply gained units (early in a period every
     * new unit pushes the others down) */
    for (size_t i = 0; i < a->n_cands; i++) {
        const struct rank_cand *c = &a->cands[i];
        const struct pcache *pc = a->pcs[c->pc];
        size_t g = a->s->units[c->unit].group;
        if (pc->touched && pc->gcount[g] > pc->gcount0[g])
            continue;
        for (size_t ri = 0; ri < a->R->n; ri++) {
            const struct score_alert_rule *r = rule_of(a, ri);
            if (r->kind == SCORE_AK_RANK_DROP && (rule_periods(a, r, 0) & (1u << pc->key.kind)) &&
                c->new_rank >= c->old_rank + (uint32_t)r->places)
                event(a, ri, c->unit, 0, pc->period, r->sev, c->old_rank, c->new_rank, true,
                      now_ms);
        }
    }
    a->n_cands = 0;
    for (size_t i = 0; i < a->n_pcs; i++)
        a->pcs[i]->touched = false;

    for (size_t ri = 0; ri < a->R->n; ri++) {
        const struct score_alert_rule *r = rule_of(a, ri);
        switch (r->kind) {
        case SCORE_AK_NODE_OVERDUE:
            aggregate_tasks(a, ri, now_ms);
            break;
        case SCORE_AK_PROGRESS_LAG:
            if (full)
                enumerate_progress(a, e, ri);
            break;
        case SCORE_AK_REPORT_MISSING:
            if (full)
                enumerate_missing(a, e, ri, now_ms);
            break;
        case SCORE_AK_SOURCE_STALE:
            if (full)
                enumerate_sources(a, ri);
            break;
        default:
            break;
        }
    }

    for (size_t i = 0; i < a->n_subj; i++) {
        struct subj *x = a->subj[i];
        enum score_alert_sev d = desired(a, e, x, now_ms);
        step(a, x, d, now_ms);
    }
    /* forget the subjects with nothing open and no event held */
    size_t k = 0;
    for (size_t i = 0; i < a->n_subj; i++) {
        if (subj_idle(a->subj[i]))
            subj_free(a->subj[i]);
        else
            a->subj[k++] = a->subj[i];
    }
    if (k != a->n_subj) {
        a->n_subj = k;
        score__strmap_fini(&a->smap);
        for (size_t i = 0; i < a->n_subj; i++)
            score__strmap_put(&a->smap, a->subj[i]->key, (long)i);
    }
    *out = a->out;
    return a->n_out;
}

size_t score_alert_n_open(const struct score_alert *a)
{
    size_t n = 0;
    for (size_t i = 0; i < a->n_subj; i++)
        for (int sv = 0; sv < SCORE_SEV__COUNT; sv++)
            n += a->subj[i]->slot[sv].st == SCORE_AS_PENDING ||
                 a->subj[i]->slot[sv].st == SCORE_AS_FIRING;
    return n;
}
