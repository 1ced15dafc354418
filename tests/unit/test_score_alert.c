/*
 * test_score_alert: the alert evaluator (scorer/score_alert.c) and the `alerts:` section of a
 * scheme (scorer/score_alert_rules.c) as plain functions with a controllable clock: the
 * working-day calendar, every rule kind of DOMAIN.md's alert ladders, and the lifecycle —
 * `for` (pending → firing), keep_firing_for hysteresis holding flapping revisions, escalation
 * yellow → red resolving the yellow and firing the red, de-escalation, restore after a restart.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "kp_err.h"
#include "score_alert.h"
#include "score_engine.h"

#define MIN_MS  60000LL
#define HOUR_MS 3600000LL
#define DAY_MS  86400000LL

static char tmpdir[64];

static const char BASE[] =
    "scheme: t-alert\n"
    "name: 测试\n"
    "year: 2015\n"
    "derive: [quarter, year]\n"
    "grades:\n"
    "  bands: [{grade: 优, min: 90}, {grade: 良, min: 80}, {grade: 中, min: 60}, {grade: 差}]\n"
    "groups:\n"
    "  - code: g1\n"
    "    name: 组一\n"
    "    units: [{code: U1, name: 一区}, {code: U2, name: 二区}, {code: U3, name: 三区},\n"
    "            {code: U4, name: 四区}, {code: U5, name: 五区}]\n"
    "indicators:\n"
    "  - {code: result, name: 结果, weight: 70, method: direct, src: [stats], periods: [month],\n"
    "     rollup: avg, min: 0, max: 1000}\n"
    "  - {code: process, name: 过程, weight: 20, method: direct, src: [tasks], periods: [month],\n"
    "     rollup: avg, min: 0, max: 100}\n"
    "  - {code: nodes, name: 节点, weight: 10, method: direct, input: rate, src: [tasks],\n"
    "     periods: [month], min: 0, max: 1}\n"
    "adjustments:\n"
    "  kinds:\n"
    "    - {code: criticism, name: 通报批评, method: deduct, points: 1, periods: [month]}\n"
    "    - {code: falsification, name: 弄虚作假, method: deduct, points: 10, periods: [month]}\n"
    "    - {code: major, name: 重大事故, method: veto, periods: [month]}\n";

struct fx {
    struct score_scheme *s;
    struct score_engine *e;
    struct score_alert *a;
    int64_t now;
    const struct score_alert_transition *t;
    size_t nt;
};

/* Local time (+08:00) → UTC ms. */
static int64_t T(int y, int m, int d, int hh, int mm)
{
    return (int64_t)score_alert_days_from_civil(y, m, d) * DAY_MS + (hh * 60 + mm) * MIN_MS -
           8 * HOUR_MS;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void fx_open(struct fx *f, const char *alerts)
{
    char path[256], err[512];
    snprintf(path, sizeof path, "%s/t.yaml", tmpdir);
    char *text = malloc(strlen(BASE) + strlen(alerts) + 2);
    assert_non_null(text);
    strcpy(text, BASE);
    strcat(text, alerts);
    write_file(path, text);
    free(text);
    memset(f, 0, sizeof *f);
    int rc = score_scheme_load(path, &f->s, err, sizeof err);
    if (rc)
        fail_msg("%s", err);
    assert_int_equal(score_engine_new(f->s, &f->e), 0);
    assert_int_equal(score_alert_new(f->s, &f->a), 0);
}

static void fx_close(struct fx *f)
{
    score_alert_destroy(&f->a);
    assert_null(f->a);
    score_engine_destroy(&f->e);
    score_scheme_destroy(&f->s);
}

static void on_cell(const struct score_cell_change *c, void *arg)
{
    struct fx *f = arg;
    score_alert_on_cell(f->a, f->e, c, f->now);
}

static void on_total(const struct score_total_change *t, void *arg)
{
    struct fx *f = arg;
    score_alert_on_total(f->a, f->e, t, f->now);
}

static void dump(const struct fx *f);

/* One batch of one observation, as the scorer runs it: apply, changes to the evaluator,
 * commit, evaluate (batch pass). */
static size_t obs(struct fx *f, const char *unit, const char *ind, const char *period, double value,
                  const char *ref, uint64_t rev)
{
    const char *src = !strcmp(ind, "process") || !strcmp(ind, "nodes") ? "tasks" : "stats";
    struct score_obs o = {.src = src,
                          .ref = ref,
                          .rev = rev,
                          .unit = unit,
                          .indicator = ind,
                          .period = period,
                          .value = value,
                          .w = 1,
                          .at = f->now};
    char msg[256];
    assert_int_equal(score_engine_check(f->e, &o, msg, sizeof msg), KP_R_OK);
    score_engine_begin(f->e);
    assert_int_equal(score_engine_apply(f->e, &o), KP_R_OK);
    score_engine_changes(f->e, on_cell, on_total, f);
    score_engine_commit(f->e);
    f->nt = score_alert_eval(f->a, f->e, f->now, false, &f->t);
    if (getenv("KP_TEST_VERBOSE"))
        dump(f);
    return f->nt;
}

static size_t tick(struct fx *f, int64_t now)
{
    f->now = now;
    f->nt = score_alert_eval(f->a, f->e, f->now, true, &f->t);
    if (getenv("KP_TEST_VERBOSE"))
        dump(f);
    return f->nt;
}

/* The transition of (rule, severity, unit, period) in the last eval, or NULL. */
static const struct score_alert_transition *find(const struct fx *f, const char *rule,
                                                 enum score_alert_sev sev, const char *unit,
                                                 const char *period)
{
    for (size_t i = 0; i < f->nt; i++) {
        const struct score_alert_transition *t = &f->t[i];
        if (!strcmp(t->rule, rule) && t->severity == sev && (!unit || !strcmp(t->unit, unit)) &&
            (!period || !strcmp(t->period, period)))
            return t;
    }
    return NULL;
}

static void dump(const struct fx *f)
{
    for (size_t i = 0; i < f->nt; i++)
        print_message("  got %s %s %s %s %s %s\n", f->t[i].rule,
                      score_alert_sev_name(f->t[i].severity), f->t[i].unit, f->t[i].period,
                      score_alert_state_name(f->t[i].state), f->t[i].summary);
}

static void expect(const struct fx *f, const char *rule, enum score_alert_sev sev, const char *unit,
                   const char *period, enum score_alert_state st)
{
    const struct score_alert_transition *t = find(f, rule, sev, unit, period);
    if (!t || t->state != st) {
        dump(f);
        fail_msg("want %s %s %s %s %s", rule, score_alert_sev_name(sev), unit ? unit : "*",
                 period ? period : "*", score_alert_state_name(st));
    }
}

static int setup_tmp(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/kp_score_alert_XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    return 0;
}

static int teardown_tmp(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

/* ---- calendar ------------------------------------------------------------------------- */

static const char CAL[] = "alerts:\n"
                          "  holidays: [2015-10-01, 2015-10-02, 2015-10-05, 2015-10-06, "
                          "2015-10-07]\n"
                          "  workdays: [2015-10-10]\n"
                          "  rules:\n"
                          "    - {name: v, kind: veto}\n";

static void test_calendar(void **state)
{
    (void)state;
    int y, m, d;
    for (int32_t z = -800000; z < 3000000; z += 997) {
        score_alert_civil_from_days(z, &y, &m, &d);
        assert_int_equal(score_alert_days_from_civil(y, m, d), z);
    }
    assert_int_equal(score_alert_days_from_civil(1970, 1, 1), 0);
    assert_int_equal(
        score_alert_days_from_civil(2015, 3, 1) - score_alert_days_from_civil(2015, 2, 28), 1);
    struct fx f;
    fx_open(&f, CAL);
    int32_t sep30 = score_alert_days_from_civil(2015, 9, 30);
    assert_true(score_alert_working_day(f.s, sep30));      /* Wednesday */
    assert_false(score_alert_working_day(f.s, sep30 + 1)); /* National Day */
    assert_false(score_alert_working_day(f.s, sep30 + 3)); /* Saturday */
    assert_true(score_alert_working_day(f.s, sep30 + 10)); /* Sat 10-10 調休 */
    /* 5 working days after 09-30: 10-08, 10-09, 10-10, 10-12, 10-13 */
    assert_int_equal(score_alert_step_working(f.s, sep30, 5), sep30 + 13);
    assert_int_equal(score_alert_step_working(f.s, sep30 + 13, -5), sep30);
    assert_int_equal(score_alert_step_working(f.s, sep30, 0), sep30);
    /* June has 30 days: the 16th at 00:00 (Beijing) is half of it */
    assert_true(fabs(score_alert_elapsed_share(f.s, "2015-06", T(2015, 6, 16, 0, 0)) - 0.5) <
                1e-12);
    assert_true(score_alert_elapsed_share(f.s, "2015-06", T(2015, 5, 1, 0, 0)) == 0);
    assert_true(score_alert_elapsed_share(f.s, "2015-Q2", T(2016, 1, 1, 0, 0)) == 1);
    assert_true(score_alert_elapsed_share(f.s, "bad", 0) < 0);
    fx_close(&f);
}

/* ---- loader refusals -------------------------------------------------------------------- */

static void expect_load_err(const char *alerts, int line, const char *reason)
{
    char path[256], err[512], want[640];
    snprintf(path, sizeof path, "%s/bad.yaml", tmpdir);
    char *text = malloc(strlen(BASE) + strlen(alerts) + 1);
    assert_non_null(text);
    strcpy(text, BASE);
    strcat(text, alerts);
    write_file(path, text);
    free(text);
    struct score_scheme *s = NULL;
    assert_int_equal(score_scheme_load(path, &s, err, sizeof err), KP_ESCHEME);
    assert_null(s);
    snprintf(want, sizeof want, "%s:%d: %s", path, line, reason);
    if (strncmp(err, want, strlen(want)) != 0)
        fail_msg("got \"%s\", want \"%s…\"", err, want);
}

static void test_rules_refused(void **state)
{
    (void)state;
    int base = 0;
    for (const char *p = BASE; *p; p++)
        base += *p == '\n';
    expect_load_err("alerts:\n  rules:\n    - {name: x, kind: nope}\n", base + 3, "kind: expected");
    expect_load_err("alerts:\n  rules:\n    - {name: x, kind: veto, bogus: 1}\n", base + 3,
                    "rule (veto): unknown key 'bogus'");
    expect_load_err("alerts:\n  rules:\n    - {name: x, kind: progress_lag, indicator: nope}\n",
                    base + 3, "indicator: unknown indicator 'nope'");
    expect_load_err("alerts:\n  rules:\n    - {name: x, kind: veto}\n    - {name: x, kind: veto}\n",
                    base + 4, "rule: duplicate name 'x'");
    expect_load_err("alerts:\n  holidays: [2015-02-30]\n  rules: []\n", base + 2,
                    "holidays: 2015-02-30 is not a calendar day");
    expect_load_err("alerts:\n  rules:\n    - {name: x, kind: source_stale}\n", base + 3,
                    "source_stale: missing 'after'");
    expect_load_err(
        "alerts:\n  rules:\n    - {name: x, kind: deduction_event, indicators: [major]}\n",
        base + 3, "deduction_event: 'major' is not a deduct adjustment kind");
    expect_load_err(
        "alerts:\n  rules:\n    - {name: x, kind: data_quality, indicator: result, max: 3}\n",
        base + 3, "data_quality: 'max' is for check: hard");
    expect_load_err("alerts:\n  rules:\n    - {name: x, kind: report_missing, indicator: result}\n",
                    base + 3, "report_missing: missing 'due'");
    expect_load_err("alerts:\n  rules:\n    - {name: x, kind: progress_lag, indicator: process, "
                    "for: 5 minutes}\n",
                    base + 3, "for: expected a duration");
    /* the shipped schemes still load, rules or not */
    const char *files[] = {"anshan-2015", "haidian", "hangzhou-2011", "shenzhen-2010",
                           "suzhou-2015"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char path[512], err[512];
        snprintf(path, sizeof path, "%s/schemas/schemes/%s.yaml", KP_SOURCE_DIR, files[i]);
        struct score_scheme *s = NULL;
        if (score_scheme_load(path, &s, err, sizeof err))
            fail_msg("%s", err);
        if (!strcmp(files[i], "anshan-2015"))
            assert_true(score_alert_n_rules(s) >= 9);
        score_scheme_destroy(&s);
    }
}

/* ---- progress_lag: ladder, escalation, hysteresis ---------------------------------------- */

static const char LAG[] = "alerts:\n"
                          "  rules:\n"
                          "    - {name: lag, kind: progress_lag, indicator: process, yellow: 10,\n"
                          "       red: 30, keep_firing_for: 5m}\n";

static void test_progress_lag(void **state)
{
    (void)state;
    struct fx f;
    fx_open(&f, LAG);
    f.now = T(2015, 6, 16, 0, 0);                                          /* half of June gone */
    assert_int_equal(obs(&f, "U1", "process", "2015-06", 45, "p1", 0), 0); /* 5 behind */
    assert_int_equal(tick(&f, f.now), 0);
    /* 2015-06-19 00:00: 60% of June, 15 behind → yellow, fired at once (no `for`) */
    int64_t t1 = T(2015, 6, 19, 0, 0);
    assert_int_equal(tick(&f, t1), 1);
    expect(&f, "lag", SCORE_SEV_YELLOW, "U1", "2015-06", SCORE_AS_FIRING);
    assert_int_equal(f.t[0].fired_at, t1);
    assert_string_equal(f.t[0].indicator, "process");
    assert_true(fabs(f.t[0].value - 15) < 1e-9);
    assert_non_null(strstr(f.t[0].summary, "一区"));
    assert_int_equal(tick(&f, t1 + MIN_MS), 0); /* no repeat */
    /* 06-28: 90% gone, 45 behind → red fires and the yellow resolves, in one evaluation */
    int64_t t2 = T(2015, 6, 28, 0, 0);
    assert_int_equal(tick(&f, t2), 2);
    expect(&f, "lag", SCORE_SEV_RED, "U1", "2015-06", SCORE_AS_FIRING);
    expect(&f, "lag", SCORE_SEV_YELLOW, "U1", "2015-06", SCORE_AS_RESOLVED);
    assert_int_equal(find(&f, "lag", SCORE_SEV_YELLOW, "U1", NULL)->fired_at, t1);
    assert_int_equal(find(&f, "lag", SCORE_SEV_YELLOW, "U1", NULL)->resolved_at, t2);
    assert_int_equal(score_alert_n_open(f.a), 1);
    /* a revision to 70: 20 behind. The red holds for keep_firing_for; no yellow meanwhile */
    assert_int_equal(obs(&f, "U1", "process", "2015-06", 70, "p1", 1), 0);
    assert_int_equal(tick(&f, t2 + 4 * MIN_MS), 0);
    /* then de-escalation: the red resolves and the yellow fires again (a new alert) */
    assert_int_equal(tick(&f, t2 + 5 * MIN_MS), 2);
    expect(&f, "lag", SCORE_SEV_RED, "U1", "2015-06", SCORE_AS_RESOLVED);
    expect(&f, "lag", SCORE_SEV_YELLOW, "U1", "2015-06", SCORE_AS_FIRING);
    int64_t t3 = t2 + 5 * MIN_MS;
    assert_int_equal(find(&f, "lag", SCORE_SEV_YELLOW, "U1", NULL)->fired_at, t3);
    /* flapping revisions: 95 (on schedule) then 75 (behind again) within keep_firing_for:
     * nothing moves, startsAt stays */
    f.now = t3 + MIN_MS;
    assert_int_equal(obs(&f, "U1", "process", "2015-06", 95, "p1", 2), 0);
    assert_int_equal(tick(&f, t3 + 3 * MIN_MS), 0);
    f.now = t3 + 4 * MIN_MS;
    assert_int_equal(obs(&f, "U1", "process", "2015-06", 75, "p1", 3), 0);
    assert_int_equal(tick(&f, t3 + 10 * MIN_MS), 0);
    f.now = t3 + 11 * MIN_MS;
    assert_int_equal(obs(&f, "U1", "process", "2015-06", 95, "p1", 4), 0);
    assert_int_equal(tick(&f, t3 + 15 * MIN_MS), 0);
    assert_int_equal(tick(&f, t3 + 16 * MIN_MS), 1);
    expect(&f, "lag", SCORE_SEV_YELLOW, "U1", "2015-06", SCORE_AS_RESOLVED);
    assert_int_equal(f.t[0].fired_at, t3);
    assert_int_equal(score_alert_n_open(f.a), 0);
    /* red straight away, skipping yellow: a fresh unit 50 behind */
    f.now = T(2015, 6, 30, 12, 0);
    assert_int_equal(obs(&f, "U2", "process", "2015-06", 40, "p2", 0), 1);
    expect(&f, "lag", SCORE_SEV_RED, "U2", "2015-06", SCORE_AS_FIRING);
    /* a quarter cell exists too (rollup avg), but the rule looks at the leaf's wire kind */
    assert_int_equal(tick(&f, f.now + 1000), 0);
    fx_close(&f);
}

static const char FOR[] = "alerts:\n"
                          "  rules:\n"
                          "    - {name: lag, kind: progress_lag, indicator: process, for: 10m}\n";

static void test_for_pending(void **state)
{
    (void)state;
    struct fx f;
    fx_open(&f, FOR);
    int64_t t0 = T(2015, 6, 19, 0, 0); /* 60% */
    f.now = t0;
    assert_int_equal(obs(&f, "U1", "process", "2015-06", 45, "p1", 0), 1);
    expect(&f, "lag", SCORE_SEV_YELLOW, "U1", "2015-06", SCORE_AS_PENDING);
    assert_int_equal(f.t[0].fired_at, 0);
    assert_int_equal(tick(&f, t0 + 5 * MIN_MS), 0);
    /* cleared before `for`: the pending alert is forgotten */
    f.now = t0 + 6 * MIN_MS;
    assert_int_equal(obs(&f, "U1", "process", "2015-06", 60, "p1", 1), 1);
    expect(&f, "lag", SCORE_SEV_YELLOW, "U1", "2015-06", SCORE_AS_INACTIVE);
    f.now = t0 + 7 * MIN_MS;
    assert_int_equal(obs(&f, "U1", "process", "2015-06", 45, "p1", 2), 1);
    expect(&f, "lag", SCORE_SEV_YELLOW, "U1", "2015-06", SCORE_AS_PENDING);
    assert_int_equal(tick(&f, t0 + 16 * MIN_MS), 0);
    assert_int_equal(tick(&f, t0 + 17 * MIN_MS), 1);
    expect(&f, "lag", SCORE_SEV_YELLOW, "U1", "2015-06", SCORE_AS_FIRING);
    assert_int_equal(f.t[0].pending_at, t0 + 7 * MIN_MS);
    assert_int_equal(f.t[0].fired_at, t0 + 17 * MIN_MS);
    fx_close(&f);
}

/* ---- totals: score_band, grade_drop, rank_drop --------------------------------------------- */

static const char TOTALS[] =
    "alerts:\n"
    "  rules:\n"
    "    - name: low\n"
    "      kind: score_band\n"
    "      periods: [month]\n"
    "      bands: [{severity: red, hi: 60}, {severity: yellow, lo: 60, hi: 70}]\n"
    "    - {name: grade, kind: grade_drop, periods: [month], hold: 1d}\n"
    "    - {name: rank, kind: rank_drop, places: 3, periods: [month], hold: 1d}\n";

static void test_totals(void **state)
{
    (void)state;
    struct fx f;
    fx_open(&f, TOTALS);
    f.now = T(2015, 3, 5, 9, 0);
    /* U1 alone, then four better units join in one batch: rank 1 → 5 but no rank_drop */
    assert_int_equal(obs(&f, "U1", "result", "2015-03", 95, "r1", 0), 0);
    struct score_obs more[4] = {
        {"stats", "r2", 0, "U2", "result", "2015-03", 99, 1, 0},
        {"stats", "r3", 0, "U3", "result", "2015-03", 98, 1, 0},
        {"stats", "r4", 0, "U4", "result", "2015-03", 97, 1, 0},
        {"stats", "r5", 0, "U5", "result", "2015-03", 96, 1, 0},
    };
    score_engine_begin(f.e);
    for (int i = 0; i < 4; i++)
        assert_int_equal(score_engine_apply(f.e, &more[i]), KP_R_OK);
    score_engine_changes(f.e, on_cell, on_total, &f);
    score_engine_commit(f.e);
    assert_int_equal(score_alert_eval(f.a, f.e, f.now, false, &f.t), 0);
    /* U2 revised from 99 to 85: grade 优 → 良, rank 1 → 5 */
    assert_int_equal(obs(&f, "U2", "result", "2015-03", 85, "r2", 1), 2);
    expect(&f, "grade", SCORE_SEV_YELLOW, "U2", "2015-03", SCORE_AS_FIRING);
    expect(&f, "rank", SCORE_SEV_YELLOW, "U2", "2015-03", SCORE_AS_FIRING);
    assert_non_null(strstr(find(&f, "grade", SCORE_SEV_YELLOW, "U2", NULL)->summary, "优"));
    assert_non_null(strstr(find(&f, "rank", SCORE_SEV_YELLOW, "U2", NULL)->summary, "第 5 名"));
    /* falls further into the bands: 55 → red band; 良 → 差 keeps the grade alert (one) */
    assert_int_equal(obs(&f, "U2", "result", "2015-03", 55, "r2", 2), 1);
    expect(&f, "low", SCORE_SEV_RED, "U2", "2015-03", SCORE_AS_FIRING);
    /* recovers to 65: the red band resolves, the yellow band fires; grade 中 still below 优 */
    assert_int_equal(obs(&f, "U2", "result", "2015-03", 65, "r2", 3), 2);
    expect(&f, "low", SCORE_SEV_RED, "U2", "2015-03", SCORE_AS_RESOLVED);
    expect(&f, "low", SCORE_SEV_YELLOW, "U2", "2015-03", SCORE_AS_FIRING);
    /* back to 99: every alert of U2 resolves */
    assert_int_equal(obs(&f, "U2", "result", "2015-03", 99, "r2", 4), 3);
    expect(&f, "low", SCORE_SEV_YELLOW, "U2", "2015-03", SCORE_AS_RESOLVED);
    expect(&f, "grade", SCORE_SEV_YELLOW, "U2", "2015-03", SCORE_AS_RESOLVED);
    expect(&f, "rank", SCORE_SEV_YELLOW, "U2", "2015-03", SCORE_AS_RESOLVED);
    /* an event rule resolves by itself after its hold */
    assert_int_equal(obs(&f, "U3", "result", "2015-03", 88, "r3", 1), 2); /* 优 → 良; rank 2 → 5 */
    expect(&f, "grade", SCORE_SEV_YELLOW, "U3", "2015-03", SCORE_AS_FIRING);
    expect(&f, "rank", SCORE_SEV_YELLOW, "U3", "2015-03", SCORE_AS_FIRING);
    assert_int_equal(tick(&f, f.now + DAY_MS - 1), 0);
    assert_int_equal(tick(&f, f.now + 1), 2);
    expect(&f, "grade", SCORE_SEV_YELLOW, "U3", "2015-03", SCORE_AS_RESOLVED);
    expect(&f, "rank", SCORE_SEV_YELLOW, "U3", "2015-03", SCORE_AS_RESOLVED);
    assert_int_equal(score_alert_n_open(f.a), 0);
    fx_close(&f);
}

/* ---- adjustments: deduction_event, veto --------------------------------------------------- */

static const char ADJ[] = "alerts:\n"
                          "  rules:\n"
                          "    - {name: deduct, kind: deduction_event, red_points: 5, hold: 7d}\n"
                          "    - {name: veto, kind: veto, periods: [month]}\n";

static void test_adjustments(void **state)
{
    (void)state;
    struct fx f;
    fx_open(&f, ADJ);
    f.now = T(2015, 4, 10, 10, 0);
    assert_int_equal(obs(&f, "U1", "result", "2015-04", 90, "r1", 0), 0);
    assert_int_equal(obs(&f, "U1", "criticism", "2015-04", 1, "c1", 0), 1);
    expect(&f, "deduct", SCORE_SEV_YELLOW, "U1", "2015-04", SCORE_AS_FIRING);
    assert_string_equal(f.t[0].indicator, "criticism");
    assert_true(f.t[0].ref == 0 && f.t[0].value == 1);
    /* the derived quarter and year pool the criticism too, but the rule looks at months */
    assert_int_equal(obs(&f, "U1", "falsification", "2015-04", 1, "f1", 0), 1);
    expect(&f, "deduct", SCORE_SEV_RED, "U1", "2015-04", SCORE_AS_FIRING);
    assert_string_equal(f.t[0].indicator, "falsification");
    /* withdrawn by a higher revision with val 0: resolved */
    assert_int_equal(obs(&f, "U1", "criticism", "2015-04", 0, "c1", 1), 1);
    expect(&f, "deduct", SCORE_SEV_YELLOW, "U1", "2015-04", SCORE_AS_RESOLVED);
    /* veto: red at once, resolved when withdrawn */
    assert_int_equal(obs(&f, "U1", "major", "2015-04", 1, "v1", 0), 1);
    expect(&f, "veto", SCORE_SEV_RED, "U1", "2015-04", SCORE_AS_FIRING);
    assert_int_equal(obs(&f, "U1", "major", "2015-04", 0, "v1", 1), 1);
    expect(&f, "veto", SCORE_SEV_RED, "U1", "2015-04", SCORE_AS_RESOLVED);
    fx_close(&f);
}

/* ---- data quality -------------------------------------------------------------------------- */

static const char DQ[] = "alerts:\n"
                         "  rules:\n"
                         "    - {name: jump, kind: data_quality, indicator: result, z: 3}\n"
                         "    - {name: peer, kind: data_quality, src: tasks, against: group,\n"
                         "       min_peers: 4, z: 3}\n"
                         "    - {name: cap, kind: data_quality, check: hard, indicator: result,\n"
                         "       max: 500}\n"
                         "    - {name: part, kind: data_quality, check: hard, indicator: process,\n"
                         "       not_above: result}\n";

static void test_data_quality(void **state)
{
    (void)state;
    struct fx f;
    fx_open(&f, DQ);
    f.now = T(2015, 6, 3, 9, 0);
    const double hist[5] = {50, 52, 48, 51, 49};
    for (int m = 1; m <= 5; m++) {
        char p[16], ref[16];
        snprintf(p, sizeof p, "2015-%02d", m);
        snprintf(ref, sizeof ref, "h%d", m);
        assert_int_equal(obs(&f, "U1", "result", p, hist[m - 1], ref, 0), 0);
    }
    /* June jumps to 90: z ≈ 25 against the unit's own history */
    assert_int_equal(obs(&f, "U1", "result", "2015-06", 90, "h6", 0), 1);
    expect(&f, "jump", SCORE_SEV_YELLOW, "U1", "2015-06", SCORE_AS_FIRING);
    assert_true(f.t[0].ref > 20 && f.t[0].value == 90);
    assert_non_null(strstr(f.t[0].summary, "请核验"));
    /* a correction brings it back: resolved */
    assert_int_equal(obs(&f, "U1", "result", "2015-06", 51, "h6", 1), 1);
    expect(&f, "jump", SCORE_SEV_YELLOW, "U1", "2015-06", SCORE_AS_RESOLVED);
    /* against the group: four peers around 80, one unit at 10 */
    const char *units[5] = {"U1", "U2", "U3", "U4", "U5"};
    const double v[5] = {80, 82, 79, 81, 10};
    for (int i = 0; i < 5; i++) {
        char ref[16];
        snprintf(ref, sizeof ref, "q%d", i);
        obs(&f, units[i], "process", "2015-06", v[i], ref, 0);
    }
    expect(&f, "peer", SCORE_SEV_YELLOW, "U5", "2015-06", SCORE_AS_FIRING);
    /* hard checks refuse the record */
    char msg[256];
    struct score_obs o = {"stats", "x", 0, "U1", "result", "2015-07", 600, 1, 0};
    assert_int_equal(score_alert_check(f.s, f.e, &o, msg, sizeof msg), KP_R_out_of_range);
    assert_non_null(strstr(msg, "data_quality rule cap"));
    o.value = 400;
    assert_int_equal(score_alert_check(f.s, f.e, &o, msg, sizeof msg), KP_R_OK);
    struct score_obs part = {"tasks", "y", 0, "U1", "process", "2015-06", 60, 1, 0};
    assert_int_equal(score_alert_check(f.s, f.e, &part, msg, sizeof msg), KP_R_out_of_range);
    assert_non_null(strstr(msg, "part > whole"));
    part.value = 51;
    assert_int_equal(score_alert_check(f.s, f.e, &part, msg, sizeof msg), KP_R_OK);
    fx_close(&f);
}

/* ---- report_missing: working days with the scheme's holidays ------------------------------ */

static const char MISSING[] =
    "alerts:\n"
    "  holidays: [2015-10-01, 2015-10-02, 2015-10-05, 2015-10-06, 2015-10-07]\n"
    "  workdays: [2015-10-10]\n"
    "  rules:\n"
    "    - {name: missing, kind: report_missing, indicator: result, due: 5, warn_before: 5,\n"
    "       red_after: 2, lookback: 20d}\n";

static void test_report_missing(void **state)
{
    (void)state;
    struct fx f;
    fx_open(&f, MISSING);
    /* August is in for everybody; September is not */
    f.now = T(2015, 9, 2, 9, 0);
    const char *units[5] = {"U1", "U2", "U3", "U4", "U5"};
    for (int i = 0; i < 5; i++) {
        char ref[16];
        snprintf(ref, sizeof ref, "a%d", i);
        obs(&f, units[i], "result", "2015-08", 70, ref, 0);
    }
    assert_int_equal(tick(&f, T(2015, 9, 30, 23, 59)), 0);
    /* warning from the end of 09-30 (5 working days before the deadline 10-13) */
    assert_int_equal(tick(&f, T(2015, 10, 1, 0, 0)), 5);
    expect(&f, "missing", SCORE_SEV_WARNING, "U3", "2015-09", SCORE_AS_FIRING);
    assert_int_equal(tick(&f, T(2015, 10, 13, 23, 59)), 0);
    /* the deadline passes: yellow, the warning resolves */
    assert_int_equal(tick(&f, T(2015, 10, 14, 0, 0)), 10);
    expect(&f, "missing", SCORE_SEV_YELLOW, "U1", "2015-09", SCORE_AS_FIRING);
    expect(&f, "missing", SCORE_SEV_WARNING, "U1", "2015-09", SCORE_AS_RESOLVED);
    assert_non_null(
        strstr(find(&f, "missing", SCORE_SEV_YELLOW, "U1", NULL)->summary, "2015-10-13"));
    /* U1 reports on 10-15: resolved at once */
    f.now = T(2015, 10, 15, 10, 0);
    assert_int_equal(obs(&f, "U1", "result", "2015-09", 71, "s1", 0), 1);
    expect(&f, "missing", SCORE_SEV_YELLOW, "U1", "2015-09", SCORE_AS_RESOLVED);
    /* 2 working days after the deadline (10-15 ends): red for the four others */
    assert_int_equal(tick(&f, T(2015, 10, 16, 0, 0)), 8);
    expect(&f, "missing", SCORE_SEV_RED, "U5", "2015-09", SCORE_AS_FIRING);
    assert_null(find(&f, "missing", SCORE_SEV_RED, "U1", NULL));
    /* October's own warning starts at the end of 10-31 (a Saturday: W(0) is the month end) */
    assert_int_equal(tick(&f, T(2015, 11, 1, 0, 0)), 5);
    expect(&f, "missing", SCORE_SEV_WARNING, "U1", "2015-10", SCORE_AS_FIRING);
    fx_close(&f);
}

/* ---- node_overdue ------------------------------------------------------------------------- */

static const char OVERDUE[] = "alerts:\n"
                              "  rules:\n"
                              "    - {name: overdue, kind: node_overdue, indicator: nodes,\n"
                              "       warn_before: 1d, red_after: 2}\n";

static void test_node_overdue(void **state)
{
    (void)state;
    struct fx f;
    fx_open(&f, OVERDUE);
    int64_t due = T(2015, 6, 10, 12, 0); /* a Wednesday */
    size_t nodes = (size_t)score_scheme_node_find(f.s, "nodes");
    struct score_alert_task t = {"tasks", "n-1", 0, 0, nodes, "2015-06", due, 0, false};
    assert_int_equal(score_alert_task(f.a, &t), 0);
    struct score_alert_task t2 = {"tasks", "n-2", 0, 0, nodes, "2015-06", due + HOUR_MS, 0, false};
    assert_int_equal(score_alert_task(f.a, &t2), 0);
    assert_int_equal(tick(&f, due - DAY_MS - 1), 0);
    assert_int_equal(tick(&f, due - DAY_MS), 1);
    expect(&f, "overdue", SCORE_SEV_WARNING, "U1", "2015-06", SCORE_AS_FIRING);
    assert_string_equal(f.t[0].indicator, "nodes");
    assert_int_equal(tick(&f, due), 2);
    expect(&f, "overdue", SCORE_SEV_YELLOW, "U1", "2015-06", SCORE_AS_FIRING);
    assert_non_null(strstr(find(&f, "overdue", SCORE_SEV_YELLOW, NULL, NULL)->summary, "n-1"));
    /* red after the follow-up deadline: the end of Friday 06-12 */
    assert_int_equal(tick(&f, T(2015, 6, 12, 23, 59)), 0);
    assert_int_equal(tick(&f, T(2015, 6, 13, 0, 0)), 2);
    expect(&f, "overdue", SCORE_SEV_RED, "U1", "2015-06", SCORE_AS_FIRING);
    /* one node done: still red (the other one); both done: resolved */
    t.rev = 1;
    t.done = true;
    assert_int_equal(score_alert_task(f.a, &t), 0);
    assert_int_equal(tick(&f, T(2015, 6, 13, 1, 0)), 0);
    t2.rev = 1;
    t2.done = true;
    assert_int_equal(score_alert_task(f.a, &t2), 0);
    t.rev = 0; /* a stale revision is ignored */
    t.done = false;
    assert_int_equal(score_alert_task(f.a, &t), 0);
    assert_int_equal(tick(&f, T(2015, 6, 13, 2, 0)), 1);
    expect(&f, "overdue", SCORE_SEV_RED, "U1", "2015-06", SCORE_AS_RESOLVED);
    fx_close(&f);
}

/* ---- source_stale ------------------------------------------------------------------------- */

static const char STALE[] = "alerts:\n"
                            "  rules:\n"
                            "    - {name: stale, kind: source_stale, src: stats, after: 10m,\n"
                            "       red_after: 1h}\n";

static void test_source_stale(void **state)
{
    (void)state;
    struct fx f;
    fx_open(&f, STALE);
    int64_t t0 = T(2015, 6, 1, 8, 0);
    score_alert_source(f.a, "ad-stats", "stats", t0);
    score_alert_source(f.a, "ad-office", "office", t0); /* not watched */
    assert_int_equal(tick(&f, t0 + 10 * MIN_MS - 1), 0);
    assert_int_equal(tick(&f, t0 + 10 * MIN_MS), 1);
    expect(&f, "stale", SCORE_SEV_YELLOW, "", NULL, SCORE_AS_FIRING);
    assert_string_equal(f.t[0].adapter, "ad-stats");
    assert_string_equal(f.t[0].src, "stats");
    assert_string_equal(f.t[0].unit, "");
    assert_int_equal(tick(&f, t0 + 60 * MIN_MS), 2);
    expect(&f, "stale", SCORE_SEV_RED, "", NULL, SCORE_AS_FIRING);
    expect(&f, "stale", SCORE_SEV_YELLOW, "", NULL, SCORE_AS_RESOLVED);
    score_alert_source(f.a, "ad-stats", "stats", t0 + 61 * MIN_MS);
    assert_int_equal(tick(&f, t0 + 61 * MIN_MS), 1);
    expect(&f, "stale", SCORE_SEV_RED, "", NULL, SCORE_AS_RESOLVED);
    fx_close(&f);
}

/* ---- restart: open alerts restored from their rows ------------------------------------------- */

static void test_restore(void **state)
{
    (void)state;
    struct fx f;
    fx_open(&f, LAG);
    int64_t t1 = T(2015, 6, 19, 0, 0);
    f.now = t1;
    assert_int_equal(obs(&f, "U1", "process", "2015-06", 45, "p1", 0), 1);
    struct score_alert_transition row = f.t[0];
    assert_int_equal(row.state, SCORE_AS_FIRING);
    /* a new evaluator, as after a restart: prime from the engine, restore the open row */
    score_alert_destroy(&f.a);
    assert_int_equal(score_alert_new(f.s, &f.a), 0);
    score_alert_prime(f.a, f.e);
    assert_int_equal(score_alert_restore(f.a, &row), 0);
    assert_int_equal(tick(&f, t1 + HOUR_MS), 0); /* still yellow: nothing new, no duplicate */
    assert_int_equal(score_alert_n_open(f.a), 1);
    f.now = t1 + 2 * HOUR_MS;
    assert_int_equal(obs(&f, "U1", "process", "2015-06", 99, "p1", 1), 0); /* keep 5m */
    assert_int_equal(tick(&f, f.now + 5 * MIN_MS), 1);
    expect(&f, "lag", SCORE_SEV_YELLOW, "U1", "2015-06", SCORE_AS_RESOLVED);
    assert_int_equal(f.t[0].fired_at, t1); /* startsAt never changes */
    /* rows of rules the scheme no longer has are refused */
    snprintf(row.rule, sizeof row.rule, "gone");
    assert_int_equal(score_alert_restore(f.a, &row), KP_ENOENT);
    /* prime on an engine with a red band raises it at the first evaluation */
    score_alert_destroy(&f.a);
    fx_close(&f);
    fx_open(&f, TOTALS);
    f.now = T(2015, 3, 5, 9, 0);
    obs(&f, "U1", "result", "2015-03", 50, "r1", 0);
    assert_non_null(find(&f, "low", SCORE_SEV_RED, "U1", "2015-03"));
    score_alert_destroy(&f.a);
    assert_int_equal(score_alert_new(f.s, &f.a), 0);
    score_alert_prime(f.a, f.e);
    assert_int_equal(tick(&f, f.now), 1);
    expect(&f, "low", SCORE_SEV_RED, "U1", "2015-03", SCORE_AS_FIRING);
    fx_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_calendar),     cmocka_unit_test(test_rules_refused),
        cmocka_unit_test(test_progress_lag), cmocka_unit_test(test_for_pending),
        cmocka_unit_test(test_totals),       cmocka_unit_test(test_adjustments),
        cmocka_unit_test(test_data_quality), cmocka_unit_test(test_report_missing),
        cmocka_unit_test(test_node_overdue), cmocka_unit_test(test_source_stale),
        cmocka_unit_test(test_restore),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
