/*
 * score_alert: the alert evaluator, pure C like the engine beside it (no libpq, ZeroMQ,
 * libuv, HTTP or file access; the clock is an argument, so tests own time). It turns what the
 * engine reports (changed cells and totals), task events with a due time, the last batch time
 * of each adapter and the passing of time into alert transitions, by the rules a scheme
 * declares in its `alerts:` section (schemas/SCHEMES.md "Alerts", parsed by
 * score_alert_rules.c): progress_lag, node_overdue, report_missing, score_band, grade_drop,
 * rank_drop, veto, deduction_event, data_quality and source_stale (DOMAIN.md "Alert
 * ladders").
 *
 * An alert's identity is its rule plus its labels {scheme, unit, indicator, period, severity}
 * (source_stale: {scheme, src, adapter, severity}). Each identity has the lifecycle
 * inactive → pending → firing → resolved: pending while the condition has held for less than
 * the rule's `for`, firing after, and resolved only once the condition has been false for the
 * rule's `keep_firing_for` (hysteresis: a revision that clears and re-raises a condition within
 * that time does not make the alert flap). The severities of one subject (rule + labels without
 * severity) form a ladder warning < yellow < red: when a higher severity fires, the lower ones
 * resolve at once (escalation yellow → red resolves the yellow and fires the red), and a lower
 * one does not start while a higher one is still firing.
 *
 * The scorer (scr_alert.c) feeds one batch's changes, calls score_alert_eval() inside the
 * batch's transaction and writes the transitions to the `alert` table; a timer calls it with
 * full = true for the time-driven rules. Not thread-safe: one evaluator per scheme, one thread.
 */
#ifndef SCORE_ALERT_H
#define SCORE_ALERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kp_reason.h"
#include "score_engine.h"

enum score_alert_sev {
    SCORE_SEV_NONE = -1,
    SCORE_SEV_WARNING = 0,
    SCORE_SEV_YELLOW = 1,
    SCORE_SEV_RED = 2,
};
#define SCORE_SEV__COUNT 3

enum score_alert_state {
    SCORE_AS_INACTIVE = 0, /* a pending alert whose condition cleared before it fired: forget it */
    SCORE_AS_PENDING,
    SCORE_AS_FIRING,
    SCORE_AS_RESOLVED,
};

/* "warning", "yellow", "red" ("" for NONE); "inactive", "pending", "firing", "resolved". */
const char *score_alert_sev_name(enum score_alert_sev s);
const char *score_alert_state_name(enum score_alert_state s);
/* Parses a severity name; SCORE_SEV_NONE when unknown. */
enum score_alert_sev score_alert_sev_parse(const char *s);

#define SCORE_ALERT_CODE_MAX    64
#define SCORE_ALERT_SUMMARY_MAX 512
#define SCORE_ALERT_FP_MAX      400

/* One alert transition (or, for score_alert_restore, one open alert read back). Strings are
 * "" when a label does not apply. */
struct score_alert_transition {
    char fingerprint[SCORE_ALERT_FP_MAX]; /* rule|severity|unit|indicator|period|src|adapter */
    char rule[SCORE_ALERT_CODE_MAX + 1];
    char kind[32]; /* the rule's kind, e.g. "progress_lag" */
    enum score_alert_sev severity;
    char unit[SCORE_ALERT_CODE_MAX + 1];
    char indicator[SCORE_ALERT_CODE_MAX + 1];
    char period[16];
    char src[SCORE_ALERT_CODE_MAX + 1];
    char adapter[SCORE_ALERT_CODE_MAX + 1];
    enum score_alert_state state; /* the new state */
    int64_t pending_at;  /* ms: when the condition started (the event time of event rules) */
    int64_t fired_at;    /* ms: first firing time (Alertmanager startsAt), 0 = never fired */
    int64_t resolved_at; /* ms, 0 unless resolved */
    double value;        /* the measured value behind the alert (lag, total, z, ...); NAN if none */
    double ref;          /* event rules: the reference the event is measured against (old grade
                            index, old rank, old points, z); NAN if none */
    char summary[SCORE_ALERT_SUMMARY_MAX];
};

/* ---- rules (loaded with the scheme) --------------------------------------------------- */

/* Number of alert rules the scheme declares (0: no `alerts:` section). */
size_t score_alert_n_rules(const struct score_scheme *s);
/* Name and kind ("progress_lag", ...) of rule i. */
const char *score_alert_rule_name(const struct score_scheme *s, size_t i);
const char *score_alert_rule_kind(const struct score_scheme *s, size_t i);
/* True when some node_overdue rule watches node n: the scorer passes that indicator's events
 * with a due time to score_alert_task(). */
bool score_alert_watches_tasks(const struct score_scheme *s, size_t node);
/* Number of source_stale rules (the scorer then feeds the adapters' last batch times). */
size_t score_alert_n_stale_rules(const struct score_scheme *s);

/* The hard data_quality checks (`check: hard`): KP_R_OK, or out_of_range with msg naming the
 * rule ("data_quality rule rate_cap: 120 > max 100"; "part > whole": the value exceeds the
 * unit's current value of the indicator named by `not_above` in the same period). e may be
 * NULL (then not_above is not checked). Pure; called before score_engine_apply(). */
enum kp_reason score_alert_check(const struct score_scheme *s, const struct score_engine *e,
                                 const struct score_obs *o, char *msg, size_t msg_len);

/* ---- evaluator ------------------------------------------------------------------------ */

struct score_alert;

/* Caller owns *out; destroy with score_alert_destroy(). The scheme is borrowed and must
 * outlive the evaluator. Returns 0. */
int score_alert_new(const struct score_scheme *s, struct score_alert **out);
void score_alert_destroy(struct score_alert **a);

/* Remembers the engine's current totals and cells as the "previous" values that later changes
 * are compared with (grade_drop, rank_drop, deduction_event), without raising any event, and
 * queues every total and watched cell for the level rules (score_band, veto, progress_lag) of
 * the next score_alert_eval(). Call once after the engine has caught up. */
void score_alert_prime(struct score_alert *a, const struct score_engine *e);

/* Restores one open alert (state pending or firing) read back from the database, so that a
 * restarted scorer continues its lifecycle (same startsAt, no duplicate). Returns 0, or
 * KP_ENOENT when its rule, unit or indicator is no longer in the scheme (the caller resolves
 * the row). */
int score_alert_restore(struct score_alert *a, const struct score_alert_transition *t);

/* Feeds one changed cell / total of the engine's current unit of work (score_engine_changes
 * callbacks), at time now_ms. */
void score_alert_on_cell(struct score_alert *a, const struct score_engine *e,
                         const struct score_cell_change *c, int64_t now_ms);
void score_alert_on_total(struct score_alert *a, const struct score_engine *e,
                          const struct score_total_change *t, int64_t now_ms);

/* A task node or approval stage (node_overdue): the latest revision of event (src, ref) of
 * indicator `node` for (unit, period), due at due_ms (0: no due time), follow-up deadline
 * followup_ms (0: the rule's red_after working days after due), done when finished. A lower
 * revision than the one held is ignored. Returns 0 or KP_EFULL (too many open tasks held:
 * the event is not tracked). */
struct score_alert_task {
    const char *src, *ref;
    uint64_t rev;
    size_t unit, node;
    const char *period;
    int64_t due_ms, followup_ms;
    bool done;
};
int score_alert_task(struct score_alert *a, const struct score_alert_task *t);

/* An adapter delivered a batch of source `src` at last_ms (source_stale). */
void score_alert_source(struct score_alert *a, const char *adapter, const char *src,
                        int64_t last_ms);

/* Evaluates the rules at now_ms and returns the transitions in *out (n returned; valid until
 * the next call on a). full = false: the subjects touched by the changes fed since the last
 * call and every open alert (a batch); full = true: also every time-driven candidate
 * (report_missing, progress_lag, node_overdue, source_stale: the timer). */
size_t score_alert_eval(struct score_alert *a, const struct score_engine *e, int64_t now_ms,
                        bool full, const struct score_alert_transition **out);

/* Open alerts held (pending or firing identities), for tests and metrics. */
size_t score_alert_n_open(const struct score_alert *a);

/* ---- calendar helpers (exposed for tests) --------------------------------------------- */

/* Days since 1970-01-01 of a civil date, and back. */
int32_t score_alert_days_from_civil(int y, int m, int d);
void score_alert_civil_from_days(int32_t z, int *y, int *m, int *d);
/* True when day z (days since the epoch) is a working day of the scheme's calendar (Monday to
 * Friday unless listed in `holidays`, or a weekend day listed in `workdays`). */
bool score_alert_working_day(const struct score_scheme *s, int32_t z);
/* The n-th working day after day z (n > 0), before it (n < 0), or z (n == 0). */
int32_t score_alert_step_working(const struct score_scheme *s, int32_t z, int n);
/* Share of period p elapsed at now_ms in the scheme's time zone, 0-1; -1 for a bad period. */
double score_alert_elapsed_share(const struct score_scheme *s, const char *period, int64_t now_ms);

#endif
