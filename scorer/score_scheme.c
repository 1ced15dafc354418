/*
 * score_scheme: loads an assessment scheme (schemas/schemes/<id>.yaml, format in
 * schemas/SCHEMES.md) with libyaml's document API, validates it and builds the read-only
 * structure the engine scores against: groups and units, the indicator tree in preorder
 * with each leaf's method and parameters, adjustment kinds, grade bands, and the effective
 * weight of every node for every unit (group applicability and per-unit overrides folded
 * in). Every refusal names the file and the line of the offending YAML node
 * (`file:line: reason`), like the config loader (STYLE.md "Configuration"); a scheme that
 * loads is consistent, so the engine never has to second-guess it.
 */
#include "score_internal.h"
#include "score_alert_internal.h"
#include "score_yaml.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "kp_buf.h"
#include "kp_err.h"

#define SCORE_CODE_MAX  64
#define SCORE_NAME_MAX  256
#define SCORE_MAX_NODES 4096
#define SCORE_MAX_UNITS 10000
#define SCORE_MAX_DEPTH 8

struct ld {
    struct score__yaml y; /* path, error buffer; y.doc points at doc */
    yaml_document_t doc;
    struct score_scheme *s;
    size_t cap_nodes;
    /* per-node groups restriction while building: allowed[n * n_groups + g] */
    unsigned char *allowed;
    size_t cap_allowed;
};

/* ---- typed getters -------------------------------------------------------------------- */

static int get_code(struct ld *L, const yaml_node_t *n, const char *key, char **out)
{
    if (!score__yaml_is_scalar(n))
        return score__yaml_fail(&L->y, n, "%s: expected a code", key);
    if (!score__yaml_code_ok(score__yaml_scalar(n)))
        return score__yaml_fail(&L->y, n, "%s: '%s' is not a code (1-64 bytes of [A-Za-z0-9._:-])",
                                key, score__yaml_scalar(n));
    *out = kp_xstrdup(score__yaml_scalar(n));
    return 0;
}

/* ---- mappings ---------------------------------------------------------------------------- */

/* ---- period kinds ------------------------------------------------------------------------- */

static int parse_kind(struct ld *L, const yaml_node_t *n, const char *what, enum score_pkind *k)
{
    if (score__yaml_is_scalar(n))
        for (int i = 0; i < SCORE_P__COUNT; i++)
            if (!strcmp(score__yaml_scalar(n), score__pkind_name((enum score_pkind)i))) {
                *k = (enum score_pkind)i;
                return 0;
            }
    return score__yaml_fail(&L->y, n,
                            "%s: unknown period kind '%s' (year, half, quarter, month, day)", what,
                            score__yaml_is_scalar(n) ? score__yaml_scalar(n) : "?");
}

static int parse_kinds(struct ld *L, const yaml_node_t *n, const char *what, unsigned *mask)
{
    if (score__yaml_seq_check(&L->y, n, what))
        return -1;
    *mask = 0;
    SCORE__YAML_SEQ_EACH(n, it)
    {
        enum score_pkind k = SCORE_P_YEAR;
        yaml_node_t *c = score__yaml_node_at(&L->y, *it);
        if (parse_kind(L, c, what, &k))
            return -1;
        if (*mask & (1u << k))
            return score__yaml_fail(&L->y, c, "%s: period kind '%s' listed twice", what,
                                    score__yaml_scalar(c));
        *mask |= 1u << k;
    }
    if (!*mask)
        return score__yaml_fail(&L->y, n, "%s: empty list", what);
    return 0;
}

/* ---- nodes --------------------------------------------------------------------------------- */

static const char *const method_names[] = {
    [SCORE_M_NONE] = "none",
    [SCORE_M_DIRECT] = "direct",
    [SCORE_M_EFFICACY] = "efficacy",
    [SCORE_M_EFFICACY_REL] = "efficacy_rel",
    [SCORE_M_COMPLETION] = "completion",
    [SCORE_M_BAND] = "band",
    [SCORE_M_RANK] = "rank",
    [SCORE_M_ADD] = "add",
    [SCORE_M_DEDUCT] = "deduct",
    [SCORE_M_VETO] = "veto",
};

static const char *const input_names[] = {"value", "count", "sum", "avg", "rate"};
static const char *const rollup_names[] = {"none", "latest", "sum", "avg", "pool"};

/* Parameters each method takes (besides the keys every leaf takes). */
static const char *const *method_params(enum score_method m)
{
    static const char *const direct[] = {"scale", "clamp", NULL};
    static const char *const efficacy[] = {"good", "bad", "base", "span", "clamp", NULL};
    static const char *const rel[] = {"base", "span", "clamp", "lower_better", NULL};
    static const char *const completion[] = {"target", "cap", "reverse", "clamp", NULL};
    static const char *const band[] = {"bands", "else", NULL};
    static const char *const rank[] = {"best", "step", "floor", "lower_better", NULL};
    static const char *const adj[] = {"points", "cap", NULL};
    static const char *const none[] = {NULL};
    switch (m) {
    case SCORE_M_DIRECT:
        return direct;
    case SCORE_M_EFFICACY:
        return efficacy;
    case SCORE_M_EFFICACY_REL:
        return rel;
    case SCORE_M_COMPLETION:
        return completion;
    case SCORE_M_BAND:
        return band;
    case SCORE_M_RANK:
        return rank;
    case SCORE_M_ADD:
    case SCORE_M_DEDUCT:
        return adj;
    default:
        return none;
    }
}

static bool in_list(const char *const *list, const char *s)
{
    for (; *list; list++)
        if (!strcmp(*list, s))
            return true;
    return false;
}

static const char *const leaf_common[] = {"code",    "name",    "weight", "groups", "method",
                                          "input",   "rollup",  "min",    "max",    "src",
                                          "periods", "assumed", "note",   "unit",   NULL};
static const char *const inner_keys[] = {"code",     "name",    "weight", "total", "groups",
                                         "children", "assumed", "note",   NULL};
static const char *const leaf_any[] = {
    "code",  "name", "weight",  "groups",  "method",       "input",  "rollup", "min",
    "max",   "src",  "periods", "assumed", "note",         "unit",   "scale",  "clamp",
    "good",  "bad",  "base",    "span",    "lower_better", "target", "cap",    "reverse",
    "bands", "else", "best",    "step",    "floor",        "points", "total",  NULL};
static const char *const adjust_common[] = {"code", "name",    "method", "src",  "periods", "min",
                                            "max",  "assumed", "note",   "unit", "rollup",  NULL};

static size_t new_node(struct ld *L)
{
    struct score_scheme *s = L->s;
    if (s->n_nodes == L->cap_nodes) {
        L->cap_nodes = L->cap_nodes ? L->cap_nodes * 2 : 32;
        s->nodes = kp_xrealloc(s->nodes, L->cap_nodes * sizeof *s->nodes);
    }
    size_t i = s->n_nodes++;
    struct score_node *n = &s->nodes[i];
    memset(n, 0, sizeof *n);
    n->parent = -1;
    n->total = s->weight_total;
    n->base = 60;
    n->span = 40;
    n->scale = 1;
    n->cap = 1;
    n->best = 100;
    n->step = 5;
    n->floor = 0;
    n->kind_cap = -1;
    n->vmin = -INFINITY;
    n->vmax = INFINITY;
    n->periods = (1u << SCORE_P__COUNT) - 1;
    n->band_else = 0;
    return i;
}

static int parse_clamp(struct ld *L, struct score_node *n, const yaml_node_t *v)
{
    if (score__yaml_is_scalar(v) && !strcmp(score__yaml_scalar(v), "none")) {
        n->clamp = SCORE_CLAMP_NONE;
        return 0;
    }
    if (!v || v->type != YAML_SEQUENCE_NODE || score__yaml_seq_len(v) != 2)
        return score__yaml_fail(&L->y, v, "indicator '%s': clamp must be none or [lo, hi]",
                                n->code);
    if (score__yaml_get_num(&L->y, score__yaml_node_at(&L->y, v->data.sequence.items.start[0]),
                            "clamp", &n->clamp_lo) ||
        score__yaml_get_num(&L->y, score__yaml_node_at(&L->y, v->data.sequence.items.start[1]),
                            "clamp", &n->clamp_hi))
        return -1;
    if (!(n->clamp_lo < n->clamp_hi))
        return score__yaml_fail(&L->y, v, "indicator '%s': clamp needs lo < hi", n->code);
    n->clamp = SCORE_CLAMP_RANGE;
    return 0;
}

static int parse_bands(struct ld *L, struct score_node *n, const yaml_node_t *v)
{
    static const char *const keys[] = {"lo", "hi", "points", NULL};
    if (score__yaml_seq_check(&L->y, v, "bands"))
        return -1;
    if (!score__yaml_seq_len(v))
        return score__yaml_fail(&L->y, v, "indicator '%s': bands is empty", n->code);
    n->bands = kp_xcalloc(score__yaml_seq_len(v), sizeof *n->bands);
    SCORE__YAML_SEQ_EACH(v, it)
    {
        yaml_node_t *b = score__yaml_node_at(&L->y, *it), *x;
        struct score_band *sb = &n->bands[n->n_bands++];
        if (score__yaml_map_check(&L->y, b, "band", keys))
            return -1;
        sb->lo = -INFINITY;
        sb->hi = INFINITY;
        if ((x = score__yaml_map_get(&L->y, b, "lo")) &&
            score__yaml_get_num(&L->y, x, "lo", &sb->lo))
            return -1;
        if ((x = score__yaml_map_get(&L->y, b, "hi")) &&
            score__yaml_get_num(&L->y, x, "hi", &sb->hi))
            return -1;
        if (score__yaml_need(&L->y, b, "band", "points", &x) ||
            score__yaml_get_num(&L->y, x, "points", &sb->points))
            return -1;
        if (!(sb->lo < sb->hi))
            return score__yaml_fail(&L->y, b, "indicator '%s': band needs lo < hi", n->code);
    }
    return 0;
}

static int parse_srcs(struct ld *L, struct score_node *n, const yaml_node_t *v)
{
    if (score__yaml_seq_check(&L->y, v, "src"))
        return -1;
    n->srcs = kp_xcalloc(score__yaml_seq_len(v), sizeof *n->srcs);
    SCORE__YAML_SEQ_EACH(v, it)
    {
        if (get_code(L, score__yaml_node_at(&L->y, *it), "src", &n->srcs[n->n_srcs]))
            return -1;
        n->n_srcs++;
    }
    return 0;
}

static int lookup_enum(const char *const *names, size_t count, const char *s)
{
    for (size_t i = 0; i < count; i++)
        if (names[i] && !strcmp(names[i], s))
            return (int)i;
    return -1;
}

/* Keys shared by leaves and adjustment kinds: src, periods, min, max. */
static int parse_checks(struct ld *L, struct score_node *n, const yaml_node_t *m)
{
    yaml_node_t *v;
    if ((v = score__yaml_map_get(&L->y, m, "src")) && parse_srcs(L, n, v))
        return -1;
    if ((v = score__yaml_map_get(&L->y, m, "periods")) && parse_kinds(L, v, "periods", &n->periods))
        return -1;
    if ((v = score__yaml_map_get(&L->y, m, "min")) &&
        score__yaml_get_num(&L->y, v, "min", &n->vmin))
        return -1;
    if ((v = score__yaml_map_get(&L->y, m, "max")) &&
        score__yaml_get_num(&L->y, v, "max", &n->vmax))
        return -1;
    if (!(n->vmin <= n->vmax))
        return score__yaml_fail(&L->y, m, "indicator '%s': min is above max", n->code);
    if ((v = score__yaml_map_get(&L->y, m, "assumed")) &&
        score__yaml_get_bool(&L->y, v, "assumed", &n->assumed))
        return -1;
    if ((v = score__yaml_map_get(&L->y, m, "note")) && !score__yaml_is_scalar(v))
        return score__yaml_fail(&L->y, v, "note: expected a string");
    if ((v = score__yaml_map_get(&L->y, m, "unit")) && !score__yaml_is_scalar(v))
        return score__yaml_fail(&L->y, v, "unit: expected a string");
    return 0;
}

static int parse_rollup(struct ld *L, struct score_node *n, const yaml_node_t *m)
{
    yaml_node_t *v = score__yaml_map_get(&L->y, m, "rollup");
    bool agg = n->input != SCORE_I_VALUE || n->adjust;
    bool one_kind = (n->periods & (n->periods - 1)) == 0;
    /* events pool into coarser periods by default, when the leaf takes one period kind */
    n->rollup = agg && one_kind ? SCORE_R_POOL : SCORE_R_NONE;
    if (!v)
        return 0;
    int r = score__yaml_is_scalar(v) ? lookup_enum(rollup_names, 5, score__yaml_scalar(v)) : -1;
    if (r < 0)
        return score__yaml_fail(
            &L->y, v, "indicator '%s': unknown rollup '%s' (none, latest, sum, avg, pool)", n->code,
            score__yaml_is_scalar(v) ? score__yaml_scalar(v) : "?");
    if (agg && r != SCORE_R_NONE && r != SCORE_R_POOL)
        return score__yaml_fail(&L->y, v,
                                "indicator '%s': events roll up by pool (or none), not %s", n->code,
                                score__yaml_scalar(v));
    if (!agg && r == SCORE_R_POOL)
        return score__yaml_fail(
            &L->y, v, "indicator '%s': pool needs event input (count, sum, avg, rate)", n->code);
    n->rollup = (enum score_rollup)r;
    return 0;
}

static void describe(struct score_node *n)
{
    struct kp_buf b = {0};
    kp_buf_append_str(&b, method_names[n->method]);
    switch (n->method) {
    case SCORE_M_DIRECT:
        if (n->scale != 1)
            kp_buf_printf(&b, " scale=%g", n->scale);
        break;
    case SCORE_M_EFFICACY:
        kp_buf_printf(&b, " good=%g bad=%g base=%g span=%g", n->good, n->bad, n->base, n->span);
        break;
    case SCORE_M_EFFICACY_REL:
        kp_buf_printf(&b, " good=%s bad=%s base=%g span=%g",
                      n->lower_better ? "group_min" : "group_max",
                      n->lower_better ? "group_max" : "group_min", n->base, n->span);
        break;
    case SCORE_M_COMPLETION:
        kp_buf_printf(&b, " target=%g cap=%g%s", n->target, n->cap, n->reverse ? " reverse" : "");
        break;
    case SCORE_M_BAND:
        for (size_t i = 0; i < n->n_bands; i++)
            kp_buf_printf(&b, " [%g,%g)=%g", n->bands[i].lo, n->bands[i].hi, n->bands[i].points);
        kp_buf_printf(&b, " else=%g", n->band_else);
        break;
    case SCORE_M_RANK:
        kp_buf_printf(&b, " best=%g step=%g floor=%g%s", n->best, n->step, n->floor,
                      n->lower_better ? " lower_better" : "");
        break;
    case SCORE_M_ADD:
    case SCORE_M_DEDUCT:
        kp_buf_printf(&b, " points=%g", n->points);
        if (n->kind_cap >= 0)
            kp_buf_printf(&b, " cap=%g", n->kind_cap);
        break;
    default:
        break;
    }
    if (n->method == SCORE_M_DIRECT || n->method == SCORE_M_EFFICACY ||
        n->method == SCORE_M_EFFICACY_REL || n->method == SCORE_M_COMPLETION) {
        if (n->clamp == SCORE_CLAMP_RANGE)
            kp_buf_printf(&b, " clamp=[%g,%g]", n->clamp_lo, n->clamp_hi);
        else
            kp_buf_append_str(&b, " clamp=none");
    }
    if (n->input != SCORE_I_VALUE && !n->adjust)
        kp_buf_printf(&b, " input=%s", input_names[n->input]);
    if (n->rollup != SCORE_R_NONE)
        kp_buf_printf(&b, " rollup=%s", rollup_names[n->rollup]);
    n->desc = kp_xstrdup(kp_buf_cstr(&b));
    kp_buf_fini(&b);
}

/* Method and parameters of a leaf or adjustment kind. */
static int parse_method(struct ld *L, size_t ni, const yaml_node_t *m, bool adjust)
{
    struct score_node *n = &L->s->nodes[ni];
    yaml_node_t *v = score__yaml_map_get(&L->y, m, "method");
    if (!v)
        return score__yaml_fail(&L->y, m, "indicator '%s': leaf without a method", n->code);
    int mi = score__yaml_is_scalar(v)
                 ? lookup_enum(method_names, sizeof method_names / sizeof *method_names,
                               score__yaml_scalar(v))
                 : -1;
    if (mi <= 0)
        return score__yaml_fail(&L->y, v, "indicator '%s': unknown method '%s'", n->code,
                                score__yaml_is_scalar(v) ? score__yaml_scalar(v) : "?");
    n->method = (enum score_method)mi;
    bool adj_method = mi == SCORE_M_ADD || mi == SCORE_M_DEDUCT || mi == SCORE_M_VETO;
    if (adjust && !adj_method)
        return score__yaml_fail(&L->y, v, "adjustment '%s': method must be add, deduct or veto",
                                n->code);
    if (!adjust && adj_method)
        return score__yaml_fail(&L->y, v, "indicator '%s': method %s belongs under adjustments",
                                n->code, score__yaml_scalar(v));
    /* parameter keys must belong to this method */
    const char *const *common = adjust ? adjust_common : leaf_common;
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *k = score__yaml_node_at(&L->y, p->key);
        if (!in_list(common, score__yaml_scalar(k)) &&
            !in_list(method_params(n->method), score__yaml_scalar(k)))
            return score__yaml_fail(&L->y, k,
                                    "indicator '%s': key '%s' does not apply to method %s", n->code,
                                    score__yaml_scalar(k), method_names[n->method]);
    }
    n->leaf = true;
    n->adjust = adjust;
    n->relative = mi == SCORE_M_EFFICACY_REL || mi == SCORE_M_RANK;
    if (!adjust && (v = score__yaml_map_get(&L->y, m, "input"))) {
        int ii = score__yaml_is_scalar(v) ? lookup_enum(input_names, 5, score__yaml_scalar(v)) : -1;
        if (ii < 0)
            return score__yaml_fail(
                &L->y, v, "indicator '%s': unknown input '%s' (value, count, sum, avg, rate)",
                n->code, score__yaml_is_scalar(v) ? score__yaml_scalar(v) : "?");
        n->input = (enum score_input)ii;
    }
    if (adjust)
        n->input = SCORE_I_SUM;
    if (parse_checks(L, n, m) || parse_rollup(L, n, m))
        return -1;
    if ((v = score__yaml_map_get(&L->y, m, "clamp")) && parse_clamp(L, n, v))
        return -1;
    if ((v = score__yaml_map_get(&L->y, m, "base")) &&
        score__yaml_get_num(&L->y, v, "base", &n->base))
        return -1;
    if ((v = score__yaml_map_get(&L->y, m, "span")) &&
        score__yaml_get_num(&L->y, v, "span", &n->span))
        return -1;
    if ((v = score__yaml_map_get(&L->y, m, "scale")) &&
        score__yaml_get_num(&L->y, v, "scale", &n->scale))
        return -1;
    if ((v = score__yaml_map_get(&L->y, m, "lower_better")) &&
        score__yaml_get_bool(&L->y, v, "lower_better", &n->lower_better))
        return -1;
    switch (n->method) {
    case SCORE_M_EFFICACY: {
        yaml_node_t *g, *b;
        if (score__yaml_need(&L->y, m, n->code, "good", &g) ||
            score__yaml_get_num(&L->y, g, "good", &n->good) ||
            score__yaml_need(&L->y, m, n->code, "bad", &b) ||
            score__yaml_get_num(&L->y, b, "bad", &n->bad))
            return -1;
        if (n->good == n->bad)
            return score__yaml_fail(&L->y, b, "indicator '%s': efficacy good equals bad (%g)",
                                    n->code, n->good);
        break;
    }
    case SCORE_M_COMPLETION:
        if (score__yaml_need(&L->y, m, n->code, "target", &v) ||
            score__yaml_get_num(&L->y, v, "target", &n->target))
            return -1;
        if (!(n->target > 0))
            return score__yaml_fail(&L->y, v, "indicator '%s': completion target must be > 0",
                                    n->code);
        if ((v = score__yaml_map_get(&L->y, m, "cap")) &&
            score__yaml_get_num(&L->y, v, "cap", &n->cap))
            return -1;
        if (!(n->cap > 0))
            return score__yaml_fail(&L->y, v, "indicator '%s': completion cap must be > 0",
                                    n->code);
        if ((v = score__yaml_map_get(&L->y, m, "reverse")) &&
            score__yaml_get_bool(&L->y, v, "reverse", &n->reverse))
            return -1;
        break;
    case SCORE_M_BAND:
        if (score__yaml_need(&L->y, m, n->code, "bands", &v) || parse_bands(L, n, v))
            return -1;
        if ((v = score__yaml_map_get(&L->y, m, "else")) &&
            score__yaml_get_num(&L->y, v, "else", &n->band_else))
            return -1;
        break;
    case SCORE_M_RANK:
        if ((v = score__yaml_map_get(&L->y, m, "best")) &&
            score__yaml_get_num(&L->y, v, "best", &n->best))
            return -1;
        if ((v = score__yaml_map_get(&L->y, m, "step")) &&
            score__yaml_get_num(&L->y, v, "step", &n->step))
            return -1;
        if ((v = score__yaml_map_get(&L->y, m, "floor")) &&
            score__yaml_get_num(&L->y, v, "floor", &n->floor))
            return -1;
        break;
    case SCORE_M_ADD:
    case SCORE_M_DEDUCT:
        if (score__yaml_need(&L->y, m, n->code, "points", &v) ||
            score__yaml_get_num(&L->y, v, "points", &n->points))
            return -1;
        if (!(n->points > 0))
            return score__yaml_fail(
                &L->y, v, "adjustment '%s': points must be > 0 (the method gives the sign)",
                n->code);
        if ((v = score__yaml_map_get(&L->y, m, "cap")) &&
            score__yaml_get_num(&L->y, v, "cap", &n->kind_cap))
            return -1;
        if (v && !(n->kind_cap >= 0))
            return score__yaml_fail(&L->y, v, "adjustment '%s': cap must be >= 0", n->code);
        break;
    default:
        break;
    }
    if (n->rollup != SCORE_R_NONE && (n->periods & (n->periods - 1)))
        return score__yaml_fail(
            &L->y, score__yaml_map_key_node(&L->y, m, "periods"),
            "indicator '%s': a leaf that rolls up takes exactly one period kind", n->code);
    describe(n);
    return 0;
}

static int check_dup_node(struct ld *L, const yaml_node_t *at, size_t ni)
{
    struct score_scheme *s = L->s;
    long prev = score__strmap_put(&s->node_map, s->nodes[ni].code, (long)ni);
    if (prev >= 0)
        return score__yaml_fail(&L->y, at, "duplicate indicator code '%s' (first at line %d)",
                                s->nodes[ni].code, s->nodes[prev].line);
    return 0;
}

static void grow_allowed(struct ld *L)
{
    size_t g = L->s->n_groups ? L->s->n_groups : 1;
    size_t need_n = L->cap_nodes * g;
    if (need_n > L->cap_allowed) {
        L->allowed = kp_xrealloc(L->allowed, need_n);
        L->cap_allowed = need_n;
    }
}

static int parse_groups_ref(struct ld *L, size_t ni, const yaml_node_t *v)
{
    struct score_scheme *s = L->s;
    unsigned char *a = L->allowed + ni * s->n_groups;
    if (score__yaml_seq_check(&L->y, v, "groups"))
        return -1;
    if (!score__yaml_seq_len(v))
        return score__yaml_fail(&L->y, v, "indicator '%s': groups is empty", s->nodes[ni].code);
    unsigned char *own = kp_xcalloc(s->n_groups, 1);
    SCORE__YAML_SEQ_EACH(v, it)
    {
        yaml_node_t *c = score__yaml_node_at(&L->y, *it);
        long g =
            score__yaml_is_scalar(c) ? score__strmap_get(&s->group_map, score__yaml_scalar(c)) : -1;
        if (g < 0) {
            free(own);
            return score__yaml_fail(&L->y, c, "indicator '%s': unknown group '%s'",
                                    s->nodes[ni].code,
                                    score__yaml_is_scalar(c) ? score__yaml_scalar(c) : "?");
        }
        own[g] = 1;
    }
    for (size_t g = 0; g < s->n_groups; g++)
        a[g] = a[g] && own[g];
    free(own);
    return 0;
}

static int parse_node(struct ld *L, const yaml_node_t *m, size_t parent, int depth);

static int parse_children(struct ld *L, size_t ni, const yaml_node_t *seq, int depth)
{
    if (score__yaml_seq_check(&L->y, seq, "children"))
        return -1;
    if (!score__yaml_seq_len(seq))
        return score__yaml_fail(&L->y, seq, "indicator '%s': children is empty",
                                L->s->nodes[ni].code);
    if (depth >= SCORE_MAX_DEPTH)
        return score__yaml_fail(&L->y, seq, "indicator tree deeper than %d levels",
                                SCORE_MAX_DEPTH);
    size_t *kids = kp_xcalloc(score__yaml_seq_len(seq), sizeof *kids);
    size_t nk = 0;
    SCORE__YAML_SEQ_EACH(seq, it)
    {
        size_t before = L->s->n_nodes;
        if (parse_node(L, score__yaml_node_at(&L->y, *it), ni, depth + 1)) {
            free(kids);
            return -1;
        }
        kids[nk++] = before;
    }
    L->s->nodes[ni].kids = kids;
    L->s->nodes[ni].n_kids = nk;
    return 0;
}

static int parse_node(struct ld *L, const yaml_node_t *m, size_t parent, int depth)
{
    struct score_scheme *s = L->s;
    yaml_node_t *v;
    if (!m || m->type != YAML_MAPPING_NODE)
        return score__yaml_fail(&L->y, m, "indicator: expected a mapping");
    if (s->n_nodes >= SCORE_MAX_NODES)
        return score__yaml_fail(&L->y, m, "more than %d indicators", SCORE_MAX_NODES);
    bool inner = score__yaml_map_get(&L->y, m, "children") != NULL;
    /* a leaf's keys are checked against its method in parse_method */
    if (score__yaml_map_check(&L->y, m, "indicator", inner ? inner_keys : leaf_any))
        return -1;
    size_t ni = new_node(L);
    grow_allowed(L);
    memcpy(L->allowed + ni * s->n_groups, L->allowed + parent * s->n_groups, s->n_groups);
    struct score_node *n = &s->nodes[ni];
    n->parent = (long)parent;
    n->line = score__yaml_line_of(m);
    if (score__yaml_need(&L->y, m, "indicator", "code", &v) || get_code(L, v, "code", &n->code))
        return -1;
    if (check_dup_node(L, v, ni))
        return -1;
    if (score__yaml_need(&L->y, m, n->code, "name", &v) ||
        score__yaml_get_str(&L->y, v, "name", SCORE_NAME_MAX, &n->name))
        return -1;
    if (score__yaml_need(&L->y, m, n->code, "weight", &v) ||
        score__yaml_get_num(&L->y, v, "weight", &n->weight))
        return -1;
    if (!(n->weight > 0))
        return score__yaml_fail(&L->y, v, "indicator '%s': weight must be > 0", n->code);
    if ((v = score__yaml_map_get(&L->y, m, "groups")) && parse_groups_ref(L, ni, v))
        return -1;
    if (!inner) {
        if (score__yaml_map_get(&L->y, m, "total"))
            return score__yaml_fail(&L->y, score__yaml_map_key_node(&L->y, m, "total"),
                                    "indicator '%s': total applies to inner nodes only", n->code);
        return parse_method(L, ni, m, false);
    }
    if ((v = score__yaml_map_get(&L->y, m, "assumed")) &&
        score__yaml_get_bool(&L->y, v, "assumed", &n->assumed))
        return -1;
    if ((v = score__yaml_map_get(&L->y, m, "note")) && !score__yaml_is_scalar(v))
        return score__yaml_fail(&L->y, v, "note: expected a string");
    if ((v = score__yaml_map_get(&L->y, m, "total")) &&
        score__yaml_get_num(&L->y, v, "total", &n->total))
        return -1;
    if (!(n->total > 0))
        return score__yaml_fail(&L->y, v, "indicator '%s': total must be > 0", n->code);
    return parse_children(L, ni, score__yaml_map_get(&L->y, m, "children"), depth);
}

/* ---- top-level sections ----------------------------------------------------------------- */

static int parse_groups(struct ld *L, const yaml_node_t *seq)
{
    static const char *const gkeys[] = {"code", "name", "units", "assumed", "note", NULL};
    static const char *const ukeys[] = {"code", "name", "assumed", "note", NULL};
    struct score_scheme *s = L->s;
    int rc = -1;
    if (score__yaml_seq_check(&L->y, seq, "groups"))
        return -1;
    if (!score__yaml_seq_len(seq))
        return score__yaml_fail(&L->y, seq, "groups: at least one group is needed");
    s->groups = kp_xcalloc(score__yaml_seq_len(seq), sizeof *s->groups);
    size_t total_units = 0;
    SCORE__YAML_SEQ_EACH(seq, it)
    {
        yaml_node_t *g = score__yaml_node_at(&L->y, *it), *u;
        if (score__yaml_map_check(&L->y, g, "group", gkeys) ||
            score__yaml_need(&L->y, g, "group", "units", &u) ||
            score__yaml_seq_check(&L->y, u, "units"))
            goto out;
        total_units += score__yaml_seq_len(u);
    }
    if (total_units > SCORE_MAX_UNITS) {
        score__yaml_fail(&L->y, seq, "more than %d units", SCORE_MAX_UNITS);
        goto out;
    }
    s->units = kp_xcalloc(total_units ? total_units : 1, sizeof *s->units);
    SCORE__YAML_SEQ_EACH(seq, it)
    {
        yaml_node_t *g = score__yaml_node_at(&L->y, *it), *v,
                    *us = score__yaml_map_get(&L->y, g, "units");
        struct score_group *gr = &s->groups[s->n_groups];
        gr->line = score__yaml_line_of(g);
        if (score__yaml_need(&L->y, g, "group", "code", &v) || get_code(L, v, "code", &gr->code))
            goto out;
        s->n_groups++;
        long prev = score__strmap_put(&s->group_map, gr->code, (long)(s->n_groups - 1));
        if (prev >= 0) {
            score__yaml_fail(&L->y, v, "duplicate group code '%s' (first at line %d)", gr->code,
                             s->groups[prev].line);
            goto out;
        }
        if (score__yaml_need(&L->y, g, gr->code, "name", &v) ||
            score__yaml_get_str(&L->y, v, "name", SCORE_NAME_MAX, &gr->name))
            goto out;
        if (!score__yaml_seq_len(us)) {
            score__yaml_fail(&L->y, us, "group '%s' has no units", gr->code);
            goto out;
        }
        gr->units = kp_xcalloc(score__yaml_seq_len(us), sizeof *gr->units);
        SCORE__YAML_SEQ_EACH(us, ut)
        {
            yaml_node_t *um = score__yaml_node_at(&L->y, *ut);
            struct score_unit *un = &s->units[s->n_units];
            if (score__yaml_map_check(&L->y, um, "unit", ukeys))
                goto out;
            un->line = score__yaml_line_of(um);
            un->group = s->n_groups - 1;
            if (score__yaml_need(&L->y, um, "unit", "code", &v) ||
                get_code(L, v, "code", &un->code))
                goto out;
            s->n_units++;
            long pu = score__strmap_put(&s->unit_map, un->code, (long)(s->n_units - 1));
            if (pu >= 0) {
                const struct score_unit *first = &s->units[pu];
                if (first->group != un->group)
                    score__yaml_fail(&L->y, v,
                                     "unit '%s' is in two groups ('%s' at line %d and '%s')",
                                     un->code, s->groups[first->group].code, first->line, gr->code);
                else
                    score__yaml_fail(&L->y, v, "duplicate unit code '%s' (first at line %d)",
                                     un->code, first->line);
                goto out;
            }
            if (score__yaml_need(&L->y, um, un->code, "name", &v) ||
                score__yaml_get_str(&L->y, v, "name", SCORE_NAME_MAX, &un->name))
                goto out;
            gr->units[gr->n_units++] = s->n_units - 1;
        }
    }
    rc = 0;
out:
    return rc;
}

static int parse_grades(struct ld *L, const yaml_node_t *m)
{
    static const char *const keys[] = {"assumed", "bands", "note", NULL};
    static const char *const bkeys[] = {"grade", "min", NULL};
    struct score_scheme *s = L->s;
    yaml_node_t *v, *bands;
    if (score__yaml_map_check(&L->y, m, "grades", keys) ||
        score__yaml_need(&L->y, m, "grades", "bands", &bands) ||
        score__yaml_seq_check(&L->y, bands, "grades.bands"))
        return -1;
    if ((v = score__yaml_map_get(&L->y, m, "assumed")) &&
        score__yaml_get_bool(&L->y, v, "assumed", &s->grades_assumed))
        return -1;
    if (!score__yaml_seq_len(bands))
        return score__yaml_fail(&L->y, bands, "grades: bands is empty");
    s->grades = kp_xcalloc(score__yaml_seq_len(bands), sizeof *s->grades);
    SCORE__YAML_SEQ_EACH(bands, it)
    {
        yaml_node_t *b = score__yaml_node_at(&L->y, *it);
        struct score_grade *g = &s->grades[s->n_grades];
        bool last = it + 1 == bands->data.sequence.items.top;
        if (score__yaml_map_check(&L->y, b, "grade", bkeys) ||
            score__yaml_need(&L->y, b, "grade", "grade", &v) ||
            score__yaml_get_str(&L->y, v, "grade", SCORE_CODE_MAX, &g->name))
            return -1;
        s->n_grades++;
        g->min = -INFINITY;
        v = score__yaml_map_get(&L->y, b, "min");
        if (v && score__yaml_get_num(&L->y, v, "min", &g->min))
            return -1;
        if (!v && !last)
            return score__yaml_fail(&L->y, b, "grades: only the last band may omit min");
        if (v && last)
            return score__yaml_fail(&L->y, b,
                                    "grades: the last band is the catch-all and takes no min");
        if (s->n_grades > 1 && !(g->min < s->grades[s->n_grades - 2].min))
            return score__yaml_fail(&L->y, b, "grades: min must decrease from band to band");
    }
    return 0;
}

static int parse_adjustments(struct ld *L, const yaml_node_t *m)
{
    static const char *const keys[] = {"add_cap", "deduct_cap", "kinds", "note", NULL};
    struct score_scheme *s = L->s;
    yaml_node_t *v, *kinds;
    if (score__yaml_map_check(&L->y, m, "adjustments", keys) ||
        score__yaml_need(&L->y, m, "adjustments", "kinds", &kinds) ||
        score__yaml_seq_check(&L->y, kinds, "adjustments.kinds"))
        return -1;
    if ((v = score__yaml_map_get(&L->y, m, "add_cap")) &&
        score__yaml_get_num(&L->y, v, "add_cap", &s->add_cap))
        return -1;
    if (v && !(s->add_cap >= 0))
        return score__yaml_fail(&L->y, v, "add_cap must be >= 0");
    if ((v = score__yaml_map_get(&L->y, m, "deduct_cap")) &&
        score__yaml_get_num(&L->y, v, "deduct_cap", &s->deduct_cap))
        return -1;
    if (v && !(s->deduct_cap >= 0))
        return score__yaml_fail(&L->y, v, "deduct_cap must be >= 0");
    static const char *const any[] = {"code",   "name",   "method",  "src",  "periods",
                                      "min",    "max",    "assumed", "note", "unit",
                                      "rollup", "points", "cap",     NULL};
    SCORE__YAML_SEQ_EACH(kinds, it)
    {
        yaml_node_t *k = score__yaml_node_at(&L->y, *it);
        if (score__yaml_map_check(&L->y, k, "adjustment", any))
            return -1;
        if (s->n_nodes >= SCORE_MAX_NODES)
            return score__yaml_fail(&L->y, k, "more than %d indicators", SCORE_MAX_NODES);
        size_t ni = new_node(L);
        grow_allowed(L);
        memset(L->allowed + ni * s->n_groups, 1, s->n_groups);
        struct score_node *n = &s->nodes[ni];
        n->parent = 0;
        n->line = score__yaml_line_of(k);
        n->vmin = 0; /* an event counts once (1) or is withdrawn (0); `max` allows multiples */
        n->vmax = 1;
        if (score__yaml_need(&L->y, k, "adjustment", "code", &v) ||
            get_code(L, v, "code", &n->code) || check_dup_node(L, v, ni))
            return -1;
        if (score__yaml_need(&L->y, k, n->code, "name", &v) ||
            score__yaml_get_str(&L->y, v, "name", SCORE_NAME_MAX, &n->name))
            return -1;
        if (parse_method(L, ni, k, true))
            return -1;
    }
    return 0;
}

static int parse_overrides(struct ld *L, const yaml_node_t *seq, int *ovr_line)
{
    static const char *const keys[] = {"unit", "weights", "note", NULL};
    struct score_scheme *s = L->s;
    if (score__yaml_seq_check(&L->y, seq, "weight_overrides"))
        return -1;
    SCORE__YAML_SEQ_EACH(seq, it)
    {
        yaml_node_t *o = score__yaml_node_at(&L->y, *it), *v, *ws;
        if (score__yaml_map_check(&L->y, o, "weight_override", keys) ||
            score__yaml_need(&L->y, o, "weight_override", "unit", &v))
            return -1;
        long u =
            score__yaml_is_scalar(v) ? score__strmap_get(&s->unit_map, score__yaml_scalar(v)) : -1;
        if (u < 0)
            return score__yaml_fail(&L->y, v, "weight_override: unknown unit '%s'",
                                    score__yaml_is_scalar(v) ? score__yaml_scalar(v) : "?");
        if (ovr_line[u])
            return score__yaml_fail(&L->y, v,
                                    "weight_override: unit '%s' already overridden at line %d",
                                    score__yaml_scalar(v), ovr_line[u]);
        ovr_line[u] = score__yaml_line_of(o);
        if (score__yaml_need(&L->y, o, "weight_override", "weights", &ws))
            return -1;
        if (!ws || ws->type != YAML_MAPPING_NODE || !ws->data.mapping.pairs.top ||
            ws->data.mapping.pairs.top == ws->data.mapping.pairs.start)
            return score__yaml_fail(&L->y, ws,
                                    "weight_override: weights must be a non-empty mapping");
        for (yaml_node_pair_t *p = ws->data.mapping.pairs.start; p < ws->data.mapping.pairs.top;
             p++) {
            yaml_node_t *k = score__yaml_node_at(&L->y, p->key),
                        *wv = score__yaml_node_at(&L->y, p->value);
            long n = score__yaml_is_scalar(k)
                         ? score__strmap_get(&s->node_map, score__yaml_scalar(k))
                         : -1;
            if (n <= 0 || s->nodes[n].adjust)
                return score__yaml_fail(&L->y, k, "weight_override: unknown indicator '%s'",
                                        score__yaml_is_scalar(k) ? score__yaml_scalar(k) : "?");
            double w;
            if (score__yaml_get_num(&L->y, wv, "weight", &w))
                return -1;
            if (!(w > 0))
                return score__yaml_fail(&L->y, wv, "weight_override: weight must be > 0");
            if (s->w[(size_t)u * s->n_nodes + (size_t)n] == 0)
                return score__yaml_fail(
                    &L->y, k, "weight_override: indicator '%s' does not apply to unit '%s'",
                    score__yaml_scalar(k), s->units[u].code);
            s->w[(size_t)u * s->n_nodes + (size_t)n] = w;
        }
    }
    return 0;
}

/* Every inner node applicable to a unit must have applicable children whose weights add up
 * to its total (tolerance 1e-9 relative). */
static int check_weights(struct ld *L, const int *ovr_line)
{
    struct score_scheme *s = L->s;
    for (size_t u = 0; u < s->n_units; u++) {
        for (size_t n = 0; n < s->n_nodes; n++) {
            const struct score_node *nd = &s->nodes[n];
            if (nd->leaf || (n && score__w(s, u, n) == 0))
                continue;
            double sum = 0;
            for (size_t k = 0; k < nd->n_kids; k++)
                sum += score__w(s, u, nd->kids[k]);
            const char *gc = s->groups[s->units[u].group].code;
            if (sum == 0)
                return score__yaml_fail_line(
                    &L->y, nd->line, "indicator '%s' has no children for group '%s'", nd->code, gc);
            if (fabs(sum - nd->total) > 1e-9 * fmax(1.0, nd->total)) {
                if (ovr_line[u])
                    return score__yaml_fail_line(
                        &L->y, ovr_line[u],
                        "weight_override for '%s': weights of the children of '%s' "
                        "add up to %.10g, expected %.10g",
                        s->units[u].code, nd->code, sum, nd->total);
                return score__yaml_fail_line(
                    &L->y, nd->line,
                    "indicator '%s': weights of children add up to %.10g for group "
                    "'%s', expected %.10g",
                    nd->code, sum, gc, nd->total);
            }
        }
    }
    return 0;
}

static int parse_root(struct ld *L, const yaml_node_t *top)
{
    static const char *const keys[] = {
        "scheme", "name",       "year",        "weight_total",     "derive", "root",    "grades",
        "groups", "indicators", "adjustments", "weight_overrides", "note",   "assumed", "source",
        "alerts", NULL};
    static const char *const rkeys[] = {"code", "name", "total", NULL};
    struct score_scheme *s = L->s;
    yaml_node_t *v, *ind;
    if (score__yaml_map_check(&L->y, top, "scheme", keys))
        return -1;
    if (score__yaml_need(&L->y, top, "scheme", "scheme", &v) || get_code(L, v, "scheme", &s->id))
        return -1;
    if (score__yaml_need(&L->y, top, "scheme", "name", &v) ||
        score__yaml_get_str(&L->y, v, "name", SCORE_NAME_MAX, &s->name))
        return -1;
    if ((v = score__yaml_map_get(&L->y, top, "year")) &&
        score__yaml_get_int(&L->y, v, "year", 1900, 9999, &s->year))
        return -1;
    if ((v = score__yaml_map_get(&L->y, top, "weight_total")) &&
        score__yaml_get_num(&L->y, v, "weight_total", &s->weight_total))
        return -1;
    if (!(s->weight_total > 0))
        return score__yaml_fail(&L->y, v, "weight_total must be > 0");
    if ((v = score__yaml_map_get(&L->y, top, "derive")) && parse_kinds(L, v, "derive", &s->derive))
        return -1;
    if (s->derive & (1u << SCORE_P_DAY))
        return score__yaml_fail(&L->y, v, "derive: day is the finest kind and cannot be derived");
    if ((v = score__yaml_map_get(&L->y, top, "note")) && !score__yaml_is_scalar(v))
        return score__yaml_fail(&L->y, v, "note: expected a string");
    if ((v = score__yaml_map_get(&L->y, top, "source")) && !score__yaml_is_scalar(v))
        return score__yaml_fail(&L->y, v, "source: expected a string");
    if ((v = score__yaml_map_get(&L->y, top, "grades")) && parse_grades(L, v))
        return -1;
    if (score__yaml_need(&L->y, top, "scheme", "groups", &v) || parse_groups(L, v))
        return -1;

    /* node 0: the root (the total) */
    size_t r = new_node(L);
    grow_allowed(L);
    memset(L->allowed, 1, s->n_groups);
    struct score_node *root = &s->nodes[r];
    root->code = kp_xstrdup("total");
    root->name = kp_xstrdup("总成绩");
    root->line = score__yaml_line_of(top);
    if ((v = score__yaml_map_get(&L->y, top, "root"))) {
        char *code = NULL, *name = NULL;
        yaml_node_t *x;
        root->line = score__yaml_line_of(v);
        if (score__yaml_map_check(&L->y, v, "root", rkeys))
            return -1;
        if ((x = score__yaml_map_get(&L->y, v, "code"))) {
            if (get_code(L, x, "code", &code))
                return -1;
            free(root->code);
            root->code = code;
        }
        if ((x = score__yaml_map_get(&L->y, v, "name"))) {
            if (score__yaml_get_str(&L->y, x, "name", SCORE_NAME_MAX, &name))
                return -1;
            free(root->name);
            root->name = name;
        }
        if ((x = score__yaml_map_get(&L->y, v, "total")) &&
            score__yaml_get_num(&L->y, x, "total", &root->total))
            return -1;
        if (!(root->total > 0))
            return score__yaml_fail(&L->y, x, "root: total must be > 0");
    }
    score__strmap_put(&s->node_map, root->code, 0);
    if (score__yaml_need(&L->y, top, "scheme", "indicators", &ind))
        return -1;
    if (!score__yaml_map_get(&L->y, top, "root")) /* errors about the root point at `indicators:` */
        s->nodes[0].line = score__yaml_line_of(score__yaml_map_key_node(&L->y, top, "indicators"));
    if (parse_children(L, 0, ind, 0))
        return -1;
    if ((v = score__yaml_map_get(&L->y, top, "adjustments")) && parse_adjustments(L, v))
        return -1;

    /* effective weights */
    s->w = kp_xcalloc(s->n_units * s->n_nodes + 1, sizeof *s->w);
    for (size_t u = 0; u < s->n_units; u++) {
        size_t g = s->units[u].group;
        for (size_t n = 0; n < s->n_nodes; n++) {
            const struct score_node *nd = &s->nodes[n];
            bool app = L->allowed[n * s->n_groups + g] &&
                       (nd->parent < 0 || s->w[u * s->n_nodes + (size_t)nd->parent] > 0);
            double w = nd->adjust ? 1 : (n == 0 ? 1 : nd->weight);
            s->w[u * s->n_nodes + n] = app ? w : 0;
        }
    }
    int *ovr_line = kp_xcalloc(s->n_units + 1, sizeof *ovr_line);
    int rc = 0;
    if ((v = score__yaml_map_get(&L->y, top, "weight_overrides")))
        rc = parse_overrides(L, v, ovr_line);
    if (!rc)
        rc = check_weights(L, ovr_line);
    free(ovr_line);
    return rc;
}

/* ---- public API ---------------------------------------------------------------------------- */

int score_scheme_load(const char *path, struct score_scheme **out, char *err, size_t errlen)
{
    static char dummy[1];
    struct ld L = {.y = {.path = path, .err = err ? err : dummy, .errlen = err ? errlen : 1}};
    yaml_parser_t parser;
    *out = NULL;
    if (L.y.errlen)
        L.y.err[0] = '\0';
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(L.y.err, L.y.errlen, "%s:0: cannot open: %s", path, strerror(errno));
        return KP_ESCHEME;
    }
    if (!yaml_parser_initialize(&parser)) {
        fclose(f);
        snprintf(L.y.err, L.y.errlen, "%s:0: out of memory", path);
        return KP_ENOMEM;
    }
    yaml_parser_set_input_file(&parser, f);
    L.y.doc = &L.doc;
    if (!yaml_parser_load(&parser, &L.doc)) {
        snprintf(L.y.err, L.y.errlen, "%s:%d: YAML syntax: %s", path,
                 (int)parser.problem_mark.line + 1, parser.problem ? parser.problem : "error");
        yaml_parser_delete(&parser);
        fclose(f);
        return KP_ESCHEME;
    }
    yaml_parser_delete(&parser);
    fclose(f);

    struct score_scheme *s = kp_xcalloc(1, sizeof *s);
    s->path = kp_xstrdup(path);
    s->weight_total = 100;
    s->add_cap = -1;
    s->deduct_cap = -1;
    L.s = s;
    yaml_node_t *top = yaml_document_get_root_node(&L.doc);
    int rc;
    if (!top) {
        snprintf(L.y.err, L.y.errlen, "%s:1: empty document", path);
        rc = -1;
    } else {
        rc = parse_root(&L, top);
        if (rc == 0) /* the `alerts:` section, once the tree is known (score_alert_rules.c) */
            rc = score__alert_rules_parse(s, &L.doc, top, path, L.y.err, L.y.errlen);
    }
    yaml_document_delete(&L.doc);
    free(L.allowed);
    if (rc) {
        score_scheme_destroy(&s);
        return KP_ESCHEME;
    }
    *out = s;
    return 0;
}

void score_scheme_destroy(struct score_scheme **sp)
{
    if (!sp || !*sp)
        return;
    struct score_scheme *s = *sp;
    for (size_t i = 0; i < s->n_groups; i++) {
        free(s->groups[i].code);
        free(s->groups[i].name);
        free(s->groups[i].units);
    }
    for (size_t i = 0; i < s->n_units; i++) {
        free(s->units[i].code);
        free(s->units[i].name);
    }
    for (size_t i = 0; i < s->n_nodes; i++) {
        struct score_node *n = &s->nodes[i];
        free(n->code);
        free(n->name);
        free(n->kids);
        free(n->bands);
        for (size_t j = 0; j < n->n_srcs; j++)
            free(n->srcs[j]);
        free(n->srcs);
        free(n->desc);
    }
    for (size_t i = 0; i < s->n_grades; i++)
        free(s->grades[i].name);
    free(s->grades);
    free(s->groups);
    free(s->units);
    free(s->nodes);
    free(s->w);
    free(s->path);
    free(s->id);
    free(s->name);
    score__strmap_fini(&s->unit_map);
    score__strmap_fini(&s->node_map);
    score__strmap_fini(&s->group_map);
    score__alert_rules_destroy(&s->alert_rules);
    free(s);
    *sp = NULL;
}

const char *score_scheme_id(const struct score_scheme *s)
{
    return s->id;
}

const char *score_scheme_name(const struct score_scheme *s)
{
    return s->name;
}

size_t score_scheme_n_groups(const struct score_scheme *s)
{
    return s->n_groups;
}

const char *score_scheme_group_code(const struct score_scheme *s, size_t g)
{
    return g < s->n_groups ? s->groups[g].code : NULL;
}

const char *score_scheme_group_name(const struct score_scheme *s, size_t g)
{
    return g < s->n_groups ? s->groups[g].name : NULL;
}

size_t score_scheme_n_units(const struct score_scheme *s)
{
    return s->n_units;
}

const char *score_scheme_unit_code(const struct score_scheme *s, size_t u)
{
    return u < s->n_units ? s->units[u].code : NULL;
}

const char *score_scheme_unit_name(const struct score_scheme *s, size_t u)
{
    return u < s->n_units ? s->units[u].name : NULL;
}

size_t score_scheme_unit_group(const struct score_scheme *s, size_t u)
{
    return u < s->n_units ? s->units[u].group : (size_t)-1;
}

long score_scheme_unit_find(const struct score_scheme *s, const char *code)
{
    return score__strmap_get(&s->unit_map, code);
}

size_t score_scheme_n_nodes(const struct score_scheme *s)
{
    return s->n_nodes;
}

const char *score_scheme_node_code(const struct score_scheme *s, size_t n)
{
    return n < s->n_nodes ? s->nodes[n].code : NULL;
}

const char *score_scheme_node_name(const struct score_scheme *s, size_t n)
{
    return n < s->n_nodes ? s->nodes[n].name : NULL;
}

bool score_scheme_node_is_leaf(const struct score_scheme *s, size_t n)
{
    return n < s->n_nodes && s->nodes[n].leaf;
}

long score_scheme_node_find(const struct score_scheme *s, const char *code)
{
    return score__strmap_get(&s->node_map, code);
}

const char *score_scheme_node_method(const struct score_scheme *s, size_t n)
{
    if (n >= s->n_nodes)
        return NULL;
    return s->nodes[n].leaf ? s->nodes[n].desc : "weighted";
}

long score_scheme_node_parent(const struct score_scheme *s, size_t n)
{
    return n < s->n_nodes ? s->nodes[n].parent : -1;
}

double score_scheme_node_weight(const struct score_scheme *s, size_t u, size_t n)
{
    if (u >= s->n_units || n >= s->n_nodes)
        return 0;
    return score__w(s, u, n);
}

bool score_scheme_node_is_adjustment(const struct score_scheme *s, size_t n)
{
    return n < s->n_nodes && s->nodes[n].adjust;
}

int score_scheme_year(const struct score_scheme *s)
{
    return s->year;
}
