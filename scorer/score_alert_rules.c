/*
 * score_alert_rules: the `alerts:` section of a scheme file (schemas/SCHEMES.md "Alerts"):
 * the scheme's calendar (time zone, holidays, swapped working days) and its alert rules as
 * data, validated against the scheme's groups, units and indicator tree, which the loader
 * (score_scheme.c) has built before it calls score__alert_rules_parse(). Like the rest of the
 * loader it is strict: an unknown key, a duplicate key, a missing key or an inconsistent
 * value refuses the whole file with `file:line: reason`.
 */
#include "score_alert_internal.h"
#include "score_yaml.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kp_err.h"

const char *const score__alert_kind_names[SCORE_AK__COUNT] = {
#define SCORE__AK_NAME(e, name) name,
    SCORE_ALERT_KIND_MAP(SCORE__AK_NAME)
#undef SCORE__AK_NAME
};

#define AL_MAX_RULES 256
#define AL_MAX_DATES 4096

struct al {
    struct score__yaml y; /* path, document, error buffer */
    struct score_scheme *s;
    struct score_alert_rules *r;
    /* section defaults */
    int64_t for_ms, keep_ms, hold_ms;
};

static int get_code(struct al *A, const yaml_node_t *n, const char *key, char **out)
{
    if (!score__yaml_is_scalar(n) || !score__yaml_code_ok(score__yaml_scalar(n)))
        return score__yaml_fail(&A->y, n, "%s: expected a code (1-64 bytes of [A-Za-z0-9._:-])",
                                key);
    *out = kp_xstrdup(score__yaml_scalar(n));
    return 0;
}

int64_t score__alert_duration(const char *s)
{
    if (!s || !*s)
        return -1;
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !isfinite(v) || v < 0)
        return -1;
    double mult;
    if (!*end || !strcmp(end, "ms"))
        mult = 1;
    else if (!strcmp(end, "s"))
        mult = 1e3;
    else if (!strcmp(end, "m"))
        mult = 60e3;
    else if (!strcmp(end, "h"))
        mult = 3600e3;
    else if (!strcmp(end, "d"))
        mult = 86400e3;
    else
        return -1;
    double ms = v * mult;
    if (ms > 3650.0 * 86400e3)
        return -1;
    return (int64_t)llround(ms);
}

static int get_dur(struct al *A, const yaml_node_t *n, const char *key, int64_t *out)
{
    int64_t v = score__yaml_is_scalar(n) ? score__alert_duration(score__yaml_scalar(n)) : -1;
    if (v < 0)
        return score__yaml_fail(
            &A->y, n, "%s: expected a duration (250ms, 5s, 10m, 2h, 7d; at most 3650d)", key);
    *out = v;
    return 0;
}

static int get_sev(struct al *A, const yaml_node_t *n, const char *key, enum score_alert_sev *out)
{
    enum score_alert_sev v =
        score__yaml_is_scalar(n) ? score_alert_sev_parse(score__yaml_scalar(n)) : SCORE_SEV_NONE;
    if (v == SCORE_SEV_NONE)
        return score__yaml_fail(&A->y, n, "%s: expected warning, yellow or red", key);
    *out = v;
    return 0;
}

/* "YYYY-MM-DD" → day number. */
static int get_date(struct al *A, const yaml_node_t *n, const char *key, int32_t *out)
{
    int y, m, d;
    char tail;
    if (!score__yaml_is_scalar(n) ||
        sscanf(score__yaml_scalar(n), "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3 ||
        strlen(score__yaml_scalar(n)) != 10 || m < 1 || m > 12 || d < 1 || y < 1900 || y > 9999)
        return score__yaml_fail(&A->y, n, "%s: expected a date YYYY-MM-DD", key);
    int32_t z = score_alert_days_from_civil(y, m, d);
    int yy, mm, dd;
    score_alert_civil_from_days(z, &yy, &mm, &dd);
    if (yy != y || mm != m || dd != d)
        return score__yaml_fail(&A->y, n, "%s: %s is not a calendar day", key,
                                score__yaml_scalar(n));
    *out = z;
    return 0;
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static int get_dates(struct al *A, const yaml_node_t *n, const char *key, int32_t **out,
                     size_t *n_out)
{
    if (!n || n->type != YAML_SEQUENCE_NODE)
        return score__yaml_fail(&A->y, n, "%s: expected a sequence of dates", key);
    size_t cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (cnt > AL_MAX_DATES)
        return score__yaml_fail(&A->y, n, "%s: at most %d dates", key, AL_MAX_DATES);
    int32_t *d = kp_xcalloc(cnt + 1, sizeof *d);
    size_t k = 0;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        if (get_date(A, score__yaml_node_at(&A->y, *it), key, &d[k])) {
            free(d);
            return -1;
        }
        k++;
    }
    qsort(d, k, sizeof *d, cmp_i32);
    *out = d;
    *n_out = k;
    return 0;
}

static int get_kinds(struct al *A, const yaml_node_t *n, const char *key, unsigned *mask)
{
    if (!n || n->type != YAML_SEQUENCE_NODE)
        return score__yaml_fail(&A->y, n, "%s: expected a sequence of period kinds", key);
    *mask = 0;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        yaml_node_t *v = score__yaml_node_at(&A->y, *it);
        int found = -1;
        for (int k = 0; score__yaml_is_scalar(v) && k < SCORE_P__COUNT; k++)
            if (!strcmp(score__yaml_scalar(v), score__pkind_name((enum score_pkind)k)))
                found = k;
        if (found < 0)
            return score__yaml_fail(&A->y, v, "%s: expected year, half, quarter, month or day",
                                    key);
        *mask |= 1u << found;
    }
    if (!*mask)
        return score__yaml_fail(&A->y, n, "%s: must not be empty", key);
    return 0;
}

/* ---- indicators ------------------------------------------------------------------------ */

static void add_node(struct score_alert_rule *r, size_t n)
{
    for (size_t i = 0; i < r->n_nodes; i++)
        if (r->nodes[i] == n)
            return;
    r->nodes = kp_xrealloc(r->nodes, (r->n_nodes + 1) * sizeof *r->nodes);
    r->nodes[r->n_nodes++] = n;
}

static int find_node(struct al *A, const yaml_node_t *v, const char *key, size_t *out)
{
    if (!score__yaml_is_scalar(v))
        return score__yaml_fail(&A->y, v, "%s: expected an indicator code", key);
    long n = score__strmap_get(&A->s->node_map, score__yaml_scalar(v));
    if (n < 0)
        return score__yaml_fail(&A->y, v, "%s: unknown indicator '%s'", key, score__yaml_scalar(v));
    *out = (size_t)n;
    return 0;
}

/* `indicator: X`, `indicators: [X, Y]` and/or `src: S` (every leaf granted to S). */
static int get_nodes(struct al *A, struct score_alert_rule *r, const yaml_node_t *m, bool allow_src)
{
    yaml_node_t *v;
    size_t n = 0;
    if ((v = score__yaml_map_get(&A->y, m, "indicator"))) {
        if (find_node(A, v, "indicator", &n))
            return -1;
        add_node(r, n);
    }
    if ((v = score__yaml_map_get(&A->y, m, "indicators"))) {
        if (v->type != YAML_SEQUENCE_NODE)
            return score__yaml_fail(&A->y, v, "indicators: expected a sequence of indicator codes");
        for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
             it++) {
            if (find_node(A, score__yaml_node_at(&A->y, *it), "indicators", &n))
                return -1;
            add_node(r, n);
        }
    }
    if (allow_src && (v = score__yaml_map_get(&A->y, m, "src"))) {
        if (!score__yaml_is_scalar(v) || !score__yaml_code_ok(score__yaml_scalar(v)))
            return score__yaml_fail(&A->y, v, "src: expected a source code");
        const struct score_scheme *s = A->s;
        size_t before = r->n_nodes;
        for (size_t i = 1; i < s->n_nodes; i++) {
            const struct score_node *nd = &s->nodes[i];
            if (!nd->leaf)
                continue;
            for (size_t k = 0; k < nd->n_srcs; k++)
                if (!strcmp(nd->srcs[k], score__yaml_scalar(v)))
                    add_node(r, i);
        }
        if (r->n_nodes == before)
            return score__yaml_fail(&A->y, v,
                                    "src: no leaf of the scheme is granted to source '%s'",
                                    score__yaml_scalar(v));
    }
    return 0;
}

/* ---- one rule --------------------------------------------------------------------------- */

static const char *const common_keys[] = {"name",    "kind", "for",    "keep_firing_for",
                                          "periods", "note", "assumed"};
#define N_COMMON (sizeof common_keys / sizeof common_keys[0])

static const char *const *kind_keys(enum score_alert_kind k)
{
    static const char *const progress[] = {"indicator", "use", "yellow", "red", NULL};
    static const char *const overdue[] = {"indicator", "indicators", "warn_before", "red_after",
                                          NULL};
    static const char *const missing[] = {"indicator",   "indicators", "src",      "due",
                                          "warn_before", "red_after",  "lookback", NULL};
    static const char *const band[] = {"indicator", "bands", NULL};
    static const char *const grade[] = {"severity", "hold", NULL};
    static const char *const rank[] = {"severity", "hold", "places", NULL};
    static const char *const veto[] = {"severity", NULL};
    static const char *const deduct[] = {"indicators", "severity", "hold", "red_points", NULL};
    static const char *const dq[] = {
        "check",  "indicator",   "indicators", "src",    "severity", "hold", "z",         "against",
        "window", "min_history", "min_peers",  "min_sd", "min",      "max",  "not_above", NULL};
    static const char *const stale[] = {"src", "after", "red_after", NULL};
    switch (k) {
    case SCORE_AK_PROGRESS_LAG:
        return progress;
    case SCORE_AK_NODE_OVERDUE:
        return overdue;
    case SCORE_AK_REPORT_MISSING:
        return missing;
    case SCORE_AK_SCORE_BAND:
        return band;
    case SCORE_AK_GRADE_DROP:
        return grade;
    case SCORE_AK_RANK_DROP:
        return rank;
    case SCORE_AK_VETO:
        return veto;
    case SCORE_AK_DEDUCTION_EVENT:
        return deduct;
    case SCORE_AK_DATA_QUALITY:
        return dq;
    case SCORE_AK_SOURCE_STALE:
        return stale;
    default:
        return veto;
    }
}

static int parse_bands(struct al *A, struct score_alert_rule *r, const yaml_node_t *v)
{
    static const char *const keys[] = {"severity", "lo", "hi", "note", NULL};
    if (!v || v->type != YAML_SEQUENCE_NODE ||
        v->data.sequence.items.top == v->data.sequence.items.start)
        return score__yaml_fail(&A->y, v,
                                "bands: expected a non-empty sequence of {severity, lo, hi}");
    size_t cnt = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    r->bands = kp_xcalloc(cnt, sizeof *r->bands);
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
         it++) {
        yaml_node_t *b = score__yaml_node_at(&A->y, *it), *x;
        if (score__yaml_map_check(&A->y, b, "band", keys))
            return -1;
        struct score_alert_band *bd = &r->bands[r->n_bands++];
        bd->lo = -INFINITY;
        bd->hi = INFINITY;
        if (!(x = score__yaml_map_get(&A->y, b, "severity")))
            return score__yaml_fail(&A->y, b, "band: missing 'severity'");
        if (get_sev(A, x, "severity", &bd->sev))
            return -1;
        if ((x = score__yaml_map_get(&A->y, b, "lo")) &&
            score__yaml_get_num(&A->y, x, "lo", &bd->lo))
            return -1;
        if ((x = score__yaml_map_get(&A->y, b, "hi")) &&
            score__yaml_get_num(&A->y, x, "hi", &bd->hi))
            return -1;
        if (!(bd->lo < bd->hi))
            return score__yaml_fail(&A->y, b, "band: lo must be < hi");
    }
    return 0;
}

/* The one period kind a node takes on the wire (report_missing), or -1. */
static int single_kind(unsigned mask)
{
    int k = -1;
    for (int i = 0; i < SCORE_P__COUNT; i++)
        if (mask & (1u << i)) {
            if (k >= 0)
                return -1;
            k = i;
        }
    return k;
}

static int parse_rule(struct al *A, const yaml_node_t *m, struct score_alert_rule *r)
{
    yaml_node_t *v;
    if (!m || m->type != YAML_MAPPING_NODE)
        return score__yaml_fail(&A->y, m, "rule: expected a mapping");
    r->line = (int)m->start_mark.line + 1;
    r->not_above = -1;
    r->hmin = -INFINITY;
    r->hmax = INFINITY;
    if (!(v = score__yaml_map_get(&A->y, m, "kind")))
        return score__yaml_fail(&A->y, m, "rule: missing 'kind'");
    int kind = -1;
    for (int k = 0; score__yaml_is_scalar(v) && k < SCORE_AK__COUNT; k++)
        if (!strcmp(score__yaml_scalar(v), score__alert_kind_names[k]))
            kind = k;
    if (kind < 0)
        return score__yaml_fail(
            &A->y, v,
            "kind: expected progress_lag, node_overdue, report_missing, score_band, "
            "grade_drop, rank_drop, veto, deduction_event, data_quality or "
            "source_stale");
    r->kind = (enum score_alert_kind)kind;
    /* allowed keys: the common ones and the kind's */
    const char *allowed[N_COMMON + 20];
    size_t na = 0;
    for (size_t i = 0; i < N_COMMON; i++)
        allowed[na++] = common_keys[i];
    for (const char *const *k = kind_keys(r->kind); *k; k++)
        allowed[na++] = *k;
    allowed[na] = NULL;
    char what[96];
    snprintf(what, sizeof what, "rule (%s)", score__alert_kind_names[r->kind]);
    if (score__yaml_map_check(&A->y, m, what, allowed))
        return -1;
    if (!(v = score__yaml_map_get(&A->y, m, "name")))
        return score__yaml_fail(&A->y, m, "rule: missing 'name'");
    if (get_code(A, v, "name", &r->name))
        return -1;
    r->for_ms = A->for_ms;
    r->keep_ms = A->keep_ms;
    r->hold_ms = A->hold_ms;
    if ((v = score__yaml_map_get(&A->y, m, "for")) && get_dur(A, v, "for", &r->for_ms))
        return -1;
    if ((v = score__yaml_map_get(&A->y, m, "keep_firing_for")) &&
        get_dur(A, v, "keep_firing_for", &r->keep_ms))
        return -1;
    if ((v = score__yaml_map_get(&A->y, m, "hold")) && get_dur(A, v, "hold", &r->hold_ms))
        return -1;
    if ((v = score__yaml_map_get(&A->y, m, "periods")) && get_kinds(A, v, "periods", &r->periods))
        return -1;
    r->sev = SCORE_SEV_YELLOW;
    if ((v = score__yaml_map_get(&A->y, m, "severity")) && get_sev(A, v, "severity", &r->sev))
        return -1;

    const struct score_scheme *s = A->s;
    switch (r->kind) {
    case SCORE_AK_PROGRESS_LAG:
        if (get_nodes(A, r, m, false))
            return -1;
        if (r->n_nodes != 1)
            return score__yaml_fail(&A->y, m, "progress_lag: needs one 'indicator'");
        if (s->nodes[r->nodes[0]].adjust)
            return score__yaml_fail(&A->y, m,
                                    "progress_lag: indicator must not be an adjustment kind");
        r->yellow = 10;
        r->red = 30;
        if ((v = score__yaml_map_get(&A->y, m, "use"))) {
            if (!score__yaml_is_scalar(v) ||
                (strcmp(score__yaml_scalar(v), "value") && strcmp(score__yaml_scalar(v), "score")))
                return score__yaml_fail(&A->y, v, "use: expected value or score");
            r->use_score = !strcmp(score__yaml_scalar(v), "score");
        }
        if (!s->nodes[r->nodes[0]].leaf)
            r->use_score = true; /* inner nodes have no input value */
        if ((v = score__yaml_map_get(&A->y, m, "yellow")) &&
            score__yaml_get_num(&A->y, v, "yellow", &r->yellow))
            return -1;
        if ((v = score__yaml_map_get(&A->y, m, "red")) &&
            score__yaml_get_num(&A->y, v, "red", &r->red))
            return -1;
        if (!(r->yellow > 0 && r->yellow <= r->red))
            return score__yaml_fail(&A->y, m, "progress_lag: need 0 < yellow <= red");
        break;
    case SCORE_AK_NODE_OVERDUE:
        if (get_nodes(A, r, m, false))
            return -1;
        if (!r->n_nodes)
            return score__yaml_fail(&A->y, m, "node_overdue: needs 'indicator' or 'indicators'");
        for (size_t i = 0; i < r->n_nodes; i++)
            if (!s->nodes[r->nodes[i]].leaf)
                return score__yaml_fail(&A->y, m, "node_overdue: '%s' is not a leaf",
                                        s->nodes[r->nodes[i]].code);
        r->red_days = 2;
        if ((v = score__yaml_map_get(&A->y, m, "warn_before")) &&
            get_dur(A, v, "warn_before", &r->warn_before_ms))
            return -1;
        if ((v = score__yaml_map_get(&A->y, m, "red_after")) &&
            score__yaml_get_int(&A->y, v, "red_after", 0, 366, &r->red_days))
            return -1;
        break;
    case SCORE_AK_REPORT_MISSING: {
        if (get_nodes(A, r, m, true))
            return -1;
        if (!r->n_nodes)
            return score__yaml_fail(&A->y, m,
                                    "report_missing: needs 'indicator', 'indicators' or 'src'");
        int pkind = -2;
        for (size_t i = 0; i < r->n_nodes; i++) {
            const struct score_node *nd = &s->nodes[r->nodes[i]];
            if (!nd->leaf)
                return score__yaml_fail(&A->y, m, "report_missing: '%s' is not a leaf", nd->code);
            unsigned mask = r->periods ? (r->periods & nd->periods) : nd->periods;
            int k = single_kind(mask);
            if (k < 0)
                return score__yaml_fail(
                    &A->y, m,
                    "report_missing: '%s' takes several period kinds (or none of "
                    "'periods'); name one in 'periods'",
                    nd->code);
            if (pkind != -2 && pkind != k)
                return score__yaml_fail(
                    &A->y, m, "report_missing: the indicators take different period kinds");
            pkind = k;
        }
        r->report_kind = (enum score_pkind)pkind;
        if (!(v = score__yaml_map_get(&A->y, m, "due")))
            return score__yaml_fail(
                &A->y, m, "report_missing: missing 'due' (working days after the period)");
        if (score__yaml_get_int(&A->y, v, "due", 0, 366, &r->due_days))
            return -1;
        r->warn_days = 0;
        r->red_days = 2;
        r->lookback_ms = 90LL * 86400000;
        if ((v = score__yaml_map_get(&A->y, m, "warn_before")) &&
            score__yaml_get_int(&A->y, v, "warn_before", 0, 366, &r->warn_days))
            return -1;
        if ((v = score__yaml_map_get(&A->y, m, "red_after")) &&
            score__yaml_get_int(&A->y, v, "red_after", 0, 366, &r->red_days))
            return -1;
        if ((v = score__yaml_map_get(&A->y, m, "lookback")) &&
            get_dur(A, v, "lookback", &r->lookback_ms))
            return -1;
        if (r->lookback_ms <= 0)
            return score__yaml_fail(&A->y, m, "report_missing: lookback must be > 0");
        break;
    }
    case SCORE_AK_SCORE_BAND:
        if (get_nodes(A, r, m, false))
            return -1;
        if (r->n_nodes == 0)
            add_node(r, 0);
        if (r->n_nodes != 1)
            return score__yaml_fail(&A->y, m, "score_band: one 'indicator' (default: the total)");
        if (s->nodes[r->nodes[0]].adjust)
            return score__yaml_fail(&A->y, m,
                                    "score_band: indicator must not be an adjustment kind");
        if (parse_bands(A, r, score__yaml_map_get(&A->y, m, "bands")))
            return -1;
        break;
    case SCORE_AK_GRADE_DROP:
        add_node(r, 0);
        if (!s->n_grades)
            return score__yaml_fail(&A->y, m, "grade_drop: the scheme has no grades");
        break;
    case SCORE_AK_RANK_DROP:
        add_node(r, 0);
        r->places = 3;
        if ((v = score__yaml_map_get(&A->y, m, "places")) &&
            score__yaml_get_int(&A->y, v, "places", 1, 100000, &r->places))
            return -1;
        break;
    case SCORE_AK_VETO:
        add_node(r, 0);
        if (!score__yaml_map_get(&A->y, m, "severity"))
            r->sev = SCORE_SEV_RED;
        break;
    case SCORE_AK_DEDUCTION_EVENT:
        if (get_nodes(A, r, m, false))
            return -1;
        if (!r->n_nodes)
            for (size_t i = 1; i < s->n_nodes; i++)
                if (s->nodes[i].method == SCORE_M_DEDUCT)
                    add_node(r, i);
        if (!r->n_nodes)
            return score__yaml_fail(&A->y, m,
                                    "deduction_event: the scheme has no deduct adjustment kind");
        for (size_t i = 0; i < r->n_nodes; i++)
            if (s->nodes[r->nodes[i]].method != SCORE_M_DEDUCT)
                return score__yaml_fail(&A->y, m,
                                        "deduction_event: '%s' is not a deduct adjustment kind",
                                        s->nodes[r->nodes[i]].code);
        if ((v = score__yaml_map_get(&A->y, m, "red_points")) &&
            score__yaml_get_num(&A->y, v, "red_points", &r->red_points))
            return -1;
        break;
    case SCORE_AK_DATA_QUALITY: {
        if ((v = score__yaml_map_get(&A->y, m, "check"))) {
            if (!score__yaml_is_scalar(v) ||
                (strcmp(score__yaml_scalar(v), "soft") && strcmp(score__yaml_scalar(v), "hard")))
                return score__yaml_fail(&A->y, v, "check: expected soft or hard");
            r->hard = !strcmp(score__yaml_scalar(v), "hard");
        }
        if (get_nodes(A, r, m, true))
            return -1;
        if (!r->n_nodes)
            return score__yaml_fail(&A->y, m,
                                    "data_quality: needs 'indicator', 'indicators' or 'src'");
        for (size_t i = 0; i < r->n_nodes; i++)
            if (!s->nodes[r->nodes[i]].leaf)
                return score__yaml_fail(&A->y, m, "data_quality: '%s' is not a leaf",
                                        s->nodes[r->nodes[i]].code);
        static const char *const soft_only[] = {"z",         "against", "window",   "min_history",
                                                "min_peers", "min_sd",  "severity", "hold"};
        static const char *const hard_only[] = {"min", "max", "not_above"};
        for (size_t i = 0; i < sizeof soft_only / sizeof *soft_only; i++)
            if (r->hard && (v = score__yaml_map_get(&A->y, m, soft_only[i])))
                return score__yaml_fail(&A->y, v, "data_quality: '%s' is for check: soft",
                                        soft_only[i]);
        for (size_t i = 0; i < sizeof hard_only / sizeof *hard_only; i++)
            if (!r->hard && (v = score__yaml_map_get(&A->y, m, hard_only[i])))
                return score__yaml_fail(&A->y, v, "data_quality: '%s' is for check: hard",
                                        hard_only[i]);
        if (r->hard) {
            if ((v = score__yaml_map_get(&A->y, m, "min")) &&
                score__yaml_get_num(&A->y, v, "min", &r->hmin))
                return -1;
            if ((v = score__yaml_map_get(&A->y, m, "max")) &&
                score__yaml_get_num(&A->y, v, "max", &r->hmax))
                return -1;
            if ((v = score__yaml_map_get(&A->y, m, "not_above"))) {
                size_t n = 0;
                if (find_node(A, v, "not_above", &n))
                    return -1;
                if (!s->nodes[n].leaf)
                    return score__yaml_fail(&A->y, v, "not_above: '%s' is not a leaf",
                                            s->nodes[n].code);
                r->not_above = (long)n;
            }
            if (!(r->hmin < r->hmax))
                return score__yaml_fail(&A->y, m, "data_quality: need min < max");
            if (isinf(r->hmin) && isinf(r->hmax) && r->not_above < 0)
                return score__yaml_fail(&A->y, m,
                                        "data_quality: a hard check needs min, max or not_above");
        } else {
            r->z = 3;
            r->window = 12;
            r->min_history = 3;
            r->min_peers = 4;
            if ((v = score__yaml_map_get(&A->y, m, "z")) &&
                score__yaml_get_num(&A->y, v, "z", &r->z))
                return -1;
            if (!(r->z > 0))
                return score__yaml_fail(&A->y, v, "z: must be > 0");
            if ((v = score__yaml_map_get(&A->y, m, "against"))) {
                if (!score__yaml_is_scalar(v) || (strcmp(score__yaml_scalar(v), "history") &&
                                                  strcmp(score__yaml_scalar(v), "group")))
                    return score__yaml_fail(&A->y, v, "against: expected history or group");
                r->against =
                    strcmp(score__yaml_scalar(v), "group") ? SCORE_DQ_HISTORY : SCORE_DQ_GROUP;
            }
            if ((v = score__yaml_map_get(&A->y, m, "window")) &&
                score__yaml_get_int(&A->y, v, "window", 2, 1000, &r->window))
                return -1;
            if ((v = score__yaml_map_get(&A->y, m, "min_history")) &&
                score__yaml_get_int(&A->y, v, "min_history", 2, 1000, &r->min_history))
                return -1;
            if ((v = score__yaml_map_get(&A->y, m, "min_peers")) &&
                score__yaml_get_int(&A->y, v, "min_peers", 2, 100000, &r->min_peers))
                return -1;
            if ((v = score__yaml_map_get(&A->y, m, "min_sd")) &&
                score__yaml_get_num(&A->y, v, "min_sd", &r->min_sd))
                return -1;
            if (r->min_sd < 0)
                return score__yaml_fail(&A->y, v, "min_sd: must be >= 0");
        }
        break;
    }
    case SCORE_AK_SOURCE_STALE:
        if ((v = score__yaml_map_get(&A->y, m, "src")) && get_code(A, v, "src", &r->src))
            return -1;
        if (!(v = score__yaml_map_get(&A->y, m, "after")))
            return score__yaml_fail(&A->y, m,
                                    "source_stale: missing 'after' (the longest silence allowed)");
        if (get_dur(A, v, "after", &r->after_ms))
            return -1;
        if (r->after_ms <= 0)
            return score__yaml_fail(&A->y, v, "after: must be > 0");
        if ((v = score__yaml_map_get(&A->y, m, "red_after")) &&
            get_dur(A, v, "red_after", &r->red_after_ms))
            return -1;
        if (r->red_after_ms && r->red_after_ms <= r->after_ms)
            return score__yaml_fail(&A->y, v, "red_after: must be longer than after");
        break;
    default:
        break;
    }
    return 0;
}

/* ---- the section -------------------------------------------------------------------------- */

static int parse_tz(struct al *A, const yaml_node_t *v, int *out)
{
    int sign = 1, hh = 0, mm = 0;
    const char *t = score__yaml_is_scalar(v) ? score__yaml_scalar(v) : "";
    if (*t == '+' || *t == '-') {
        sign = *t == '-' ? -1 : 1;
        t++;
        char tail;
        if (strlen(t) == 5 && sscanf(t, "%2d:%2d%c", &hh, &mm, &tail) == 2 && hh <= 14 && mm < 60) {
            *out = sign * (hh * 60 + mm);
            return 0;
        }
    }
    return score__yaml_fail(&A->y, v, "timezone: expected an offset like +08:00");
}

int score__alert_rules_parse(struct score_scheme *s, yaml_document_t *doc, yaml_node_t *top,
                             const char *path, char *err, size_t errlen)
{
    static const char *const keys[] = {"timezone",        "holidays", "workdays", "for",
                                       "keep_firing_for", "hold",     "rules",    "note",
                                       "assumed",         NULL};
    static char dummy[1];
    struct al A = {
        .y = {.path = path, .doc = doc, .err = err ? err : dummy, .errlen = err ? errlen : 1},
        .s = s};
    yaml_node_t *m = NULL, *v;
    for (yaml_node_pair_t *p = top->data.mapping.pairs.start; p < top->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = score__yaml_node_at(&A.y, p->key);
        if (score__yaml_is_scalar(k) && !strcmp(score__yaml_scalar(k), "alerts"))
            m = score__yaml_node_at(&A.y, p->value);
    }
    if (!m)
        return 0;
    if (score__yaml_map_check(&A.y, m, "alerts", keys))
        return -1;
    struct score_alert_rules *r = kp_xcalloc(1, sizeof *r);
    s->alert_rules = r;
    A.r = r;
    r->tz_min = 8 * 60; /* Asia/Shanghai: every seed city */
    A.hold_ms = 7LL * 86400000;
    if ((v = score__yaml_map_get(&A.y, m, "timezone")) && parse_tz(&A, v, &r->tz_min))
        return -1;
    if ((v = score__yaml_map_get(&A.y, m, "holidays")) &&
        get_dates(&A, v, "holidays", &r->holidays, &r->n_holidays))
        return -1;
    if ((v = score__yaml_map_get(&A.y, m, "workdays")) &&
        get_dates(&A, v, "workdays", &r->workdays, &r->n_workdays))
        return -1;
    if ((v = score__yaml_map_get(&A.y, m, "for")) && get_dur(&A, v, "for", &A.for_ms))
        return -1;
    if ((v = score__yaml_map_get(&A.y, m, "keep_firing_for")) &&
        get_dur(&A, v, "keep_firing_for", &A.keep_ms))
        return -1;
    if ((v = score__yaml_map_get(&A.y, m, "hold")) && get_dur(&A, v, "hold", &A.hold_ms))
        return -1;
    yaml_node_t *rules = score__yaml_map_get(&A.y, m, "rules");
    if (!rules)
        return score__yaml_fail(&A.y, m, "alerts: missing 'rules'");
    if (rules->type != YAML_SEQUENCE_NODE)
        return score__yaml_fail(&A.y, rules, "rules: expected a sequence");
    size_t cnt = (size_t)(rules->data.sequence.items.top - rules->data.sequence.items.start);
    if (cnt > AL_MAX_RULES)
        return score__yaml_fail(&A.y, rules, "rules: at most %d", AL_MAX_RULES);
    r->rules = kp_xcalloc(cnt + 1, sizeof *r->rules);
    for (yaml_node_item_t *it = rules->data.sequence.items.start;
         it < rules->data.sequence.items.top; it++) {
        yaml_node_t *rm = score__yaml_node_at(&A.y, *it);
        struct score_alert_rule *rule = &r->rules[r->n++];
        if (parse_rule(&A, rm, rule))
            return -1;
        for (size_t j = 0; j + 1 < r->n; j++)
            if (!strcmp(r->rules[j].name, rule->name))
                return score__yaml_fail(&A.y, score__yaml_map_get(&A.y, rm, "name"),
                                        "rule: duplicate name '%s'", rule->name);
    }
    return 0;
}

void score__alert_rules_destroy(struct score_alert_rules **rp)
{
    if (!rp || !*rp)
        return;
    struct score_alert_rules *r = *rp;
    for (size_t i = 0; i < r->n; i++) {
        free(r->rules[i].name);
        free(r->rules[i].nodes);
        free(r->rules[i].bands);
        free(r->rules[i].src);
    }
    free(r->rules);
    free(r->holidays);
    free(r->workdays);
    free(r);
    *rp = NULL;
}

/* ---- accessors ---------------------------------------------------------------------------- */

size_t score_alert_n_rules(const struct score_scheme *s)
{
    return s->alert_rules ? s->alert_rules->n : 0;
}

const char *score_alert_rule_name(const struct score_scheme *s, size_t i)
{
    return i < score_alert_n_rules(s) ? s->alert_rules->rules[i].name : NULL;
}

const char *score_alert_rule_kind(const struct score_scheme *s, size_t i)
{
    return i < score_alert_n_rules(s) ? score__alert_kind_names[s->alert_rules->rules[i].kind]
                                      : NULL;
}

bool score_alert_watches_tasks(const struct score_scheme *s, size_t node)
{
    for (size_t i = 0; i < score_alert_n_rules(s); i++) {
        const struct score_alert_rule *r = &s->alert_rules->rules[i];
        if (r->kind != SCORE_AK_NODE_OVERDUE)
            continue;
        for (size_t k = 0; k < r->n_nodes; k++)
            if (r->nodes[k] == node)
                return true;
    }
    return false;
}

size_t score_alert_n_stale_rules(const struct score_scheme *s)
{
    size_t n = 0;
    for (size_t i = 0; i < score_alert_n_rules(s); i++)
        n += s->alert_rules->rules[i].kind == SCORE_AK_SOURCE_STALE;
    return n;
}

enum kp_reason score_alert_check(const struct score_scheme *s, const struct score_engine *e,
                                 const struct score_obs *o, char *msg, size_t msg_len)
{
    if (!s->alert_rules)
        return KP_R_OK;
    long node = -1;
    for (size_t i = 0; i < s->alert_rules->n; i++) {
        const struct score_alert_rule *r = &s->alert_rules->rules[i];
        if (r->kind != SCORE_AK_DATA_QUALITY || !r->hard)
            continue;
        if (node < 0) {
            node = score__strmap_get(&s->node_map, o->indicator);
            if (node < 0)
                return KP_R_OK; /* score_engine_check refuses it */
        }
        bool watched = false;
        for (size_t k = 0; k < r->n_nodes; k++)
            watched = watched || r->nodes[k] == (size_t)node;
        if (!watched)
            continue;
        if (o->value < r->hmin || o->value > r->hmax) {
            snprintf(msg, msg_len, "data_quality rule %s: %.15g outside [%.15g, %.15g]", r->name,
                     o->value, r->hmin, r->hmax);
            return KP_R_out_of_range;
        }
        if (r->not_above >= 0 && e) {
            long u = score__strmap_get(&s->unit_map, o->unit);
            struct score_cell_change whole;
            if (u >= 0 &&
                score_engine_cell(e, (size_t)u, (size_t)r->not_above, o->period, &whole) == 0 &&
                isfinite(whole.value) && o->value > whole.value + 1e-9 * fabs(whole.value)) {
                snprintf(msg, msg_len,
                         "data_quality rule %s: %.15g exceeds %s %.15g (part > whole)", r->name,
                         o->value, s->nodes[r->not_above].code, whole.value);
                return KP_R_out_of_range;
            }
        }
    }
    return KP_R_OK;
}
