/*
 * score_alert_internal: the loaded alert rules of a scheme (filled by score_alert_rules.c from
 * the scheme's `alerts:` section, read by the evaluator score_alert.c), and the hook the
 * scheme loader calls. Cross-file names carry the `score__` prefix (STYLE.md "Names").
 */
#ifndef SCORE_ALERT_INTERNAL_H
#define SCORE_ALERT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

#include "score_alert.h"
#include "score_internal.h"

/* X(enum, name) — the rule kinds of DOMAIN.md "Alert ladders". */
#define SCORE_ALERT_KIND_MAP(X)                                                                    \
    X(PROGRESS_LAG, "progress_lag")                                                                \
    X(NODE_OVERDUE, "node_overdue")                                                                \
    X(REPORT_MISSING, "report_missing")                                                            \
    X(SCORE_BAND, "score_band")                                                                    \
    X(GRADE_DROP, "grade_drop")                                                                    \
    X(RANK_DROP, "rank_drop")                                                                      \
    X(VETO, "veto")                                                                                \
    X(DEDUCTION_EVENT, "deduction_event")                                                          \
    X(DATA_QUALITY, "data_quality")                                                                \
    X(SOURCE_STALE, "source_stale")

enum score_alert_kind {
#define SCORE__AK_ENUM(e, name) SCORE_AK_##e,
    SCORE_ALERT_KIND_MAP(SCORE__AK_ENUM)
#undef SCORE__AK_ENUM
        SCORE_AK__COUNT
};

extern const char *const score__alert_kind_names[SCORE_AK__COUNT];

struct score_alert_band {
    double lo, hi; /* [lo, hi), -inf/+inf when open */
    enum score_alert_sev sev;
};

enum score_dq_against { SCORE_DQ_HISTORY = 0, SCORE_DQ_GROUP };

struct score_alert_rule {
    char *name; /* code: the `rule` column and Alertmanager's alertname */
    int line;
    enum score_alert_kind kind;
    int64_t for_ms;   /* pending → firing after the condition held this long */
    int64_t keep_ms;  /* firing → resolved after the condition was false this long */
    int64_t hold_ms;  /* event rules: an event stays active this long (0: until undone) */
    unsigned periods; /* mask of 1u << score_pkind; 0 = the kind's default */
    size_t *nodes;    /* indicator nodes the rule watches (node 0 = the total) */
    size_t n_nodes;
    enum score_alert_sev sev; /* single-severity rules */
    /* progress_lag */
    bool use_score;
    double yellow, red; /* points behind the elapsed share */
    /* score_band */
    struct score_alert_band *bands;
    size_t n_bands;
    /* rank_drop */
    int places;
    /* deduction_event: points of one change at or above which the alert is red (0: never) */
    double red_points;
    /* data_quality */
    bool hard;
    double hmin, hmax; /* hard: allowed range (-inf/+inf) */
    long not_above;    /* hard: node whose value this one may not exceed, -1 */
    double z;          /* soft: |z| above which the value is flagged */
    enum score_dq_against against;
    int window, min_history, min_peers;
    double min_sd;
    /* source_stale */
    char *src; /* NULL: every source */
    int64_t after_ms, red_after_ms;
    /* report_missing (working days) */
    int due_days, warn_days, red_days;
    int64_t lookback_ms;
    enum score_pkind report_kind;
    /* node_overdue: warning this long before due; red this many working days after due */
    int64_t warn_before_ms;
};

struct score_alert_rules {
    struct score_alert_rule *rules;
    size_t n;
    int tz_min;        /* minutes east of UTC of the scheme's calendar */
    int32_t *holidays; /* sorted day numbers */
    size_t n_holidays;
    int32_t *workdays; /* sorted day numbers: weekend days that are working days (调休) */
    size_t n_workdays;
};

/* Parses the `alerts:` key of the scheme document's top mapping, if present, into
 * s->alert_rules (the groups, units, indicator tree and adjustment kinds are loaded already).
 * Returns 0, or -1 with err = "path:line: reason". Called by score_scheme_load(). */
int score__alert_rules_parse(struct score_scheme *s, yaml_document_t *doc, yaml_node_t *top,
                             const char *path, char *err, size_t errlen);
void score__alert_rules_destroy(struct score_alert_rules **r);

/* Parses a duration "250ms", "5s", "10m", "2h", "7d" or a bare number of ms; -1 if bad. */
int64_t score__alert_duration(const char *s);

#endif
