/*
 * score_method: the leaf scoring formulas of DOMAIN.md "Scoring methods for leaves", as pure
 * functions of a leaf's parameters and its input value. The group-relative methods
 * (efficacy_rel, rank) get their thresholds or rank from the engine, which re-scores the
 * whole group when one unit changes; everything else depends on the value alone.
 */
#include "score_internal.h"

#include <math.h>

double score__clamp(const struct score_node *n, double d)
{
    if (n->clamp == SCORE_CLAMP_RANGE) {
        if (d < n->clamp_lo)
            d = n->clamp_lo;
        if (d > n->clamp_hi)
            d = n->clamp_hi;
    }
    return d;
}

/* DOMAIN.md efficacy: d = (x − bad)/(good − bad) × span + base; good < bad means lower is
 * better, which the formula handles by itself (both differences change sign). The caller
 * guarantees good != bad. */
double score__efficacy(const struct score_node *n, double x, double good, double bad)
{
    return score__clamp(n, (x - bad) / (good - bad) * n->span + n->base);
}

static double completion(const struct score_node *n, double x)
{
    double r;
    if (n->reverse)
        r = x <= 0 ? n->cap : n->target / x;
    else
        r = x / n->target;
    if (r > n->cap)
        r = n->cap;
    return score__clamp(n, r * 100.0);
}

static double band(const struct score_node *n, double x)
{
    for (size_t i = 0; i < n->n_bands; i++)
        if (x >= n->bands[i].lo && x < n->bands[i].hi)
            return n->bands[i].points;
    return n->band_else;
}

double score__method_value(const struct score_node *n, double x)
{
    switch (n->method) {
    case SCORE_M_DIRECT:
        return score__clamp(n, x * n->scale);
    case SCORE_M_EFFICACY:
        return score__efficacy(n, x, n->good, n->bad);
    case SCORE_M_COMPLETION:
        return completion(n, x);
    case SCORE_M_BAND:
        return band(n, x);
    case SCORE_M_ADD:
    case SCORE_M_DEDUCT: {
        double p = fabs(n->points) * x;
        if (n->kind_cap >= 0 && p > n->kind_cap)
            p = n->kind_cap;
        return p;
    }
    case SCORE_M_VETO:
        return x > 0 ? 1.0 : 0.0;
    default:
        return NAN;
    }
}

double score__rank_points(const struct score_node *n, uint32_t rank)
{
    double p = n->best - (double)(rank - 1) * n->step;
    return p < n->floor ? n->floor : p;
}
