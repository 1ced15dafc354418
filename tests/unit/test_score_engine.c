/*
 * test_score_engine: the scoring engine against hand arithmetic and against its guarantees —
 * the DOMAIN.md efficacy worked check, a hand-computed Anshan 2015 table (totals, coverage,
 * competition ranks with a tie, grades, derived quarter/year cells, adjustments), revision
 * semantics (ARCHITECTURE.md guarantee 2), order independence over random permutations with
 * duplicates and revisions (guarantee 3), exact rollback, and the change report.
 */
#include <malloc.h>
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
#include "score_engine.h"
#include "score_internal.h" /* score__arena_garbage_min */

#define EPS 1e-9

static char tmpdir[64];

static int setup_tmp(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/kp_score_engine_XXXXXX");
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

static struct score_scheme *load_text(const char *name, const char *yaml)
{
    char path[256], err[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(yaml, f);
    fclose(f);
    struct score_scheme *s = NULL;
    int rc = score_scheme_load(path, &s, err, sizeof err);
    if (rc)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    return s;
}

static struct score_scheme *load_anshan(void)
{
    char err[512];
    struct score_scheme *s = NULL;
    int rc =
        score_scheme_load(KP_SOURCE_DIR "/schemas/schemes/anshan-2015.yaml", &s, err, sizeof err);
    if (rc)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    return s;
}

static struct score_obs ob(const char *src, const char *ref, uint64_t rev, const char *unit,
                           const char *ind, const char *period, double value)
{
    struct score_obs o = {.src = src,
                          .ref = ref,
                          .rev = rev,
                          .unit = unit,
                          .indicator = ind,
                          .period = period,
                          .value = value,
                          .w = 1,
                          .at = 0};
    return o;
}

static void apply_ok(struct score_engine *e, struct score_obs o)
{
    char msg[256];
    enum kp_reason r = score_engine_check(e, &o, msg, sizeof msg);
    if (r != KP_R_OK)
        fprintf(stderr, "check: %s\n", msg);
    assert_int_equal(r, KP_R_OK);
    assert_int_equal(score_engine_apply(e, &o), KP_R_OK);
}

static long U(const struct score_scheme *s, const char *code)
{
    long u = score_scheme_unit_find(s, code);
    assert_true(u >= 0);
    return u;
}

static long N(const struct score_scheme *s, const char *code)
{
    long n = score_scheme_node_find(s, code);
    assert_true(n >= 0);
    return n;
}

static struct score_total_change total(const struct score_engine *e, const struct score_scheme *s,
                                       const char *unit, const char *period)
{
    struct score_total_change t;
    int rc = score_engine_total(e, (size_t)U(s, unit), period, &t);
    if (rc)
        fprintf(stderr, "no total for %s %s\n", unit, period);
    assert_int_equal(rc, 0);
    return t;
}

static struct score_cell_change cell(const struct score_engine *e, const struct score_scheme *s,
                                     const char *unit, const char *node, const char *period)
{
    struct score_cell_change c;
    int rc = score_engine_cell(e, (size_t)U(s, unit), (size_t)N(s, node), period, &c);
    if (rc)
        fprintf(stderr, "no cell for %s %s %s\n", unit, node, period);
    assert_int_equal(rc, 0);
    return c;
}

static bool no_cell(const struct score_engine *e, const struct score_scheme *s, const char *unit,
                    const char *node, const char *period)
{
    struct score_cell_change c;
    return score_engine_cell(e, (size_t)U(s, unit), (size_t)N(s, node), period, &c) == KP_ENOENT;
}

static void assert_near(double got, double want)
{
    if (!(fabs(got - want) < EPS)) {
        fprintf(stderr, "got %.15g want %.15g\n", got, want);
        fail();
    }
}

/* ---- the worked check ---------------------------------------------------------------------- */

static const char *EFF_SCHEME = "scheme: eff\n"
                                "name: efficacy check\n"
                                "groups:\n"
                                "  - {code: g, name: G, units: [{code: A, name: A}]}\n"
                                "indicators:\n"
                                "  - {code: gdp, name: GDP, weight: 100, method: efficacy,\n"
                                "     good: 12, bad: 6, clamp: none}\n";

/* DOMAIN.md: good 12, bad 6, x 5.81 → (5.81−6)/(12−6)×40+60 = 58.7333… (no clamp). */
static void test_efficacy_worked_check(void **state)
{
    (void)state;
    struct score_scheme *s = load_text("eff.yaml", EFF_SCHEME);
    struct score_engine *e = NULL;
    assert_int_equal(score_engine_new(s, &e), 0);
    apply_ok(e, ob("stats", "r1", 0, "A", "gdp", "2015-03", 5.81));
    struct score_cell_change c = cell(e, s, "A", "gdp", "2015-03");
    assert_near(c.score, (5.81 - 6) / (12 - 6) * 40 + 60);
    assert_near(c.score, 58.733333333333333);
    assert_true(fabs(c.score - 58.73) < 0.005); /* 58.73 to two decimals */
    assert_near(c.value, 5.81);
    assert_int_equal(c.n_obs, 1);
    struct score_total_change t = total(e, s, "A", "2015-03");
    assert_near(t.total, 58.733333333333333);
    assert_near(t.coverage, 1.0);
    assert_int_equal(t.rank, 1);
    assert_string_equal(t.grade, "");
    /* lower is better: good 6 bad 12 flips the same formula */
    assert_string_equal(score_scheme_node_method(s, (size_t)N(s, "gdp")),
                        "efficacy good=12 bad=6 base=60 span=40 clamp=none");
    score_engine_destroy(&e);
    assert_null(e);
    score_scheme_destroy(&s);
    assert_null(s);
}

/* ---- the Anshan table ------------------------------------------------------------------------ */

/*
 * Anshan 2015, period 2015-03 (weights from schemas/schemes/anshan-2015.yaml):
 *   total = Σ (full-tree weight × score) / Σ (full-tree weight) over the present leaves
 * (global renormalisation), where a leaf's full-tree weight is the product of the weights on
 * its path (each as a share of its parent's total):
 *   gdp_growth:     result 55 × econ 40% × 30% = 6.6
 *   politics:       55 × 5% = 2.75
 *   process:        30
 *   governance:     55 × 10% = 5.5, split budget_execution 35% → 1.925, audit_findings 15%
 *                   → 0.825, audit_rectification 20% → 1.1, approval_ontime 30% → 1.65
 *   (group 4) duty: 55 × 90% = 49.5, split key_tasks 60% → 29.7, provincial_tasks 40% → 19.8
 *
 * Group 2 (districts), each with gdp_growth, politics and process:
 *   total = (6.6·s_gdp + 2.75·s_pol + 30·s_proc) / 39.35, coverage 0.3935
 *   AS-TD: gdp 12 → 100, pol 90, proc 95:  (660 + 247.5 + 2850)/39.35 = 3757.5/39.35
 *          = 95.4891…                                                               优 1
 *   AS-TX: gdp 9 → 80,   pol 80, proc 90:  (528 + 220 + 2700)/39.35 = 3448/39.35 = 87.6238…  良 2
 *   AS-LS: gdp 10.5 → 90, pol 56, proc 90: (594 + 154 + 2700)/39.35 = 3448/39.35 = 87.6238…  良 2
 *          (a tie reached through different inputs: compared after rounding to 1e-9)
 *   AS-QS: gdp 6 → 60,   pol 60, proc 70:  (396 + 165 + 2100)/39.35 = 2661/39.35 = 67.6238…  中 4
 *
 * Group 1 (counties), different leaves present:
 *   AS-HC: gdp 5.81 → 58.7333…, process 50:
 *          (6.6·58.7333… + 30·50)/(6.6 + 30) = (387.64 + 1500)/36.6 = 51.5748…, cov 0.366   差 3
 *   AS-TA: energy_per_gdp −2 (good −4, bad 0: lower is better) → (−2−0)/(−4−0)·40+60 = 80;
 *          alone → total 80, cov = 55% × 15% × 60% = 0.0495                              良 2
 *   AS-XY: fiscal_revenue_growth 15 (good 10, bad 0) → 120, clamped [0,100] → 100;
 *          + commendation 1 − interview 5 → 96, cov = 55% × 40% × 25% = 0.055              优 1
 *
 * Group 4 (departments) with the governance events (finance, audit, e-supervision):
 *   AS-FGW: key_tasks 90; process 80; budget_execution 85 (completion, target 100) → 85;
 *           audit findings aud-FGW-1..4 → count 4 → band [3,6) → 70;
 *           rectification flags rect-FGW-1..4 = 1,1,0,1 → rate 100·3/4 = 75 → direct 75;
 *           e-supervision cases apr-FGW-1..5 = 1,1,1,1,0 (one overdue) → rate 80 → 80
 *     governance = (35·85 + 15·70 + 20·75 + 30·80)/100 = (2975+1050+1500+2400)/100 = 79.25
 *     result = (duty 90 × cov 0.6 × 90 + 10 × 79.25)/(54 + 10) = 5652.5/64 = 88.3203125
 *     total = (29.7·90 + 1.925·85 + 0.825·70 + 1.1·75 + 1.65·80 + 30·80)/(29.7 + 5.5 + 30)
 *           = (2673 + 163.625 + 57.75 + 82.5 + 132 + 2400)/65.2 = 5508.875/65.2
 *           = 84.4919…, coverage 0.652                                             良 1
 *   AS-SJJ: key_tasks 80, provincial_tasks 70, process 90; cases apr-SJJ-1..2 on time → 100
 *     total = (29.7·80 + 19.8·70 + 1.65·100 + 30·90)/(29.7 + 19.8 + 1.65 + 30)
 *           = (2376 + 1386 + 165 + 2700)/81.15 = 6627/81.15 = 81.6635…, coverage 0.8115  良 2
 *     (no audit finding is no cell: the audit leaves are missing and renormalised away)
 */
static void feed_anshan_march(struct score_engine *e)
{
    apply_ok(e, ob("stats", "gdp-TD-03", 0, "AS-TD", "gdp_growth", "2015-03", 12));
    apply_ok(e, ob("office", "pol-TD-03", 0, "AS-TD", "politics", "2015-03", 90));
    apply_ok(e, ob("tasks", "proc-TD-03", 0, "AS-TD", "process", "2015-03", 95));
    apply_ok(e, ob("stats", "gdp-TX-03", 0, "AS-TX", "gdp_growth", "2015-03", 9));
    apply_ok(e, ob("office", "pol-TX-03", 0, "AS-TX", "politics", "2015-03", 80));
    apply_ok(e, ob("tasks", "proc-TX-03", 0, "AS-TX", "process", "2015-03", 90));
    apply_ok(e, ob("stats", "gdp-LS-03", 0, "AS-LS", "gdp_growth", "2015-03", 10.5));
    apply_ok(e, ob("office", "pol-LS-03", 0, "AS-LS", "politics", "2015-03", 56));
    apply_ok(e, ob("tasks", "proc-LS-03", 0, "AS-LS", "process", "2015-03", 90));
    apply_ok(e, ob("stats", "gdp-QS-03", 0, "AS-QS", "gdp_growth", "2015-03", 6));
    apply_ok(e, ob("office", "pol-QS-03", 0, "AS-QS", "politics", "2015-03", 60));
    apply_ok(e, ob("tasks", "proc-QS-03", 0, "AS-QS", "process", "2015-03", 70));

    apply_ok(e, ob("stats", "gdp-HC-03", 0, "AS-HC", "gdp_growth", "2015-03", 5.81));
    apply_ok(e, ob("tasks", "proc-HC-03", 0, "AS-HC", "process", "2015-03", 50));
    apply_ok(e, ob("stats", "en-TA-03", 0, "AS-TA", "energy_per_gdp", "2015-03", -2));
    apply_ok(e, ob("stats", "fis-XY-03", 0, "AS-XY", "fiscal_revenue_growth", "2015-03", 15));
    apply_ok(e, ob("office", "praise-XY-1", 0, "AS-XY", "commendation", "2015-03", 1));
    apply_ok(e, ob("office", "talk-XY-1", 0, "AS-XY", "interview", "2015-03", 1));

    apply_ok(e, ob("office", "key-FGW-03", 0, "AS-FGW", "key_tasks", "2015-03", 90));
    apply_ok(e, ob("tasks", "proc-FGW-03", 0, "AS-FGW", "process", "2015-03", 80));
    apply_ok(e, ob("finance", "bud-FGW-03", 0, "AS-FGW", "budget_execution", "2015-03", 85));
    static const double rect[4] = {1, 1, 0, 1}, ontime[5] = {1, 1, 1, 1, 0};
    for (int i = 0; i < 4; i++) {
        char ref[32];
        snprintf(ref, sizeof ref, "aud-FGW-%d", i + 1);
        apply_ok(e, ob("audit", ref, 0, "AS-FGW", "audit_findings", "2015-03", 1));
        snprintf(ref, sizeof ref, "rect-FGW-%d", i + 1);
        apply_ok(e, ob("audit", ref, 0, "AS-FGW", "audit_rectification", "2015-03", rect[i]));
    }
    for (int i = 0; i < 5; i++) {
        char ref[32];
        snprintf(ref, sizeof ref, "apr-FGW-%d", i + 1);
        apply_ok(e, ob("esup", ref, 0, "AS-FGW", "approval_ontime", "2015-03", ontime[i]));
    }
    apply_ok(e, ob("office", "key-SJJ-03", 0, "AS-SJJ", "key_tasks", "2015-03", 80));
    apply_ok(e, ob("office", "prov-SJJ-03", 0, "AS-SJJ", "provincial_tasks", "2015-03", 70));
    apply_ok(e, ob("tasks", "proc-SJJ-03", 0, "AS-SJJ", "process", "2015-03", 90));
    apply_ok(e, ob("esup", "apr-SJJ-1", 0, "AS-SJJ", "approval_ontime", "2015-03", 1));
    apply_ok(e, ob("esup", "apr-SJJ-2", 0, "AS-SJJ", "approval_ontime", "2015-03", 1));
}

static void expect_total(const struct score_engine *e, const struct score_scheme *s,
                         const char *unit, const char *period, double want, double cov,
                         uint32_t rank, const char *grade)
{
    struct score_total_change t = total(e, s, unit, period);
    assert_near(t.total, want);
    assert_near(t.coverage, cov);
    assert_int_equal(t.rank, rank);
    assert_string_equal(t.grade, grade);
    assert_false(t.vetoed);
}

static void test_anshan_table(void **state)
{
    (void)state;
    struct score_scheme *s = load_anshan();
    struct score_engine *e = NULL;
    assert_int_equal(score_engine_new(s, &e), 0);
    feed_anshan_march(e);

    expect_total(e, s, "AS-TD", "2015-03", 3757.5 / 39.35, 0.3935, 1, "优");
    expect_total(e, s, "AS-TX", "2015-03", 3448 / 39.35, 0.3935, 2, "良");
    expect_total(e, s, "AS-LS", "2015-03", 3448 / 39.35, 0.3935, 2, "良");
    expect_total(e, s, "AS-QS", "2015-03", 2661 / 39.35, 0.3935, 4, "中");
    assert_near(3757.5 / 39.35, 95.489199491740788);
    assert_near(3448 / 39.35, 87.623888182973316);

    expect_total(e, s, "AS-XY", "2015-03", 96, 0.055, 1, "优");
    expect_total(e, s, "AS-TA", "2015-03", 80, 0.0495, 2, "良");
    expect_total(e, s, "AS-HC", "2015-03", 1887.64 / 36.6, 0.366, 3, "差");
    assert_near(1887.64 / 36.6, 51.574863387978142);

    /* inner cells: AS-TX result = (econ 40 × cov 0.3 × 80 + politics 5 × 80)/(12 + 5) = 80 */
    struct score_cell_change c = cell(e, s, "AS-TX", "result", "2015-03");
    assert_near(c.score, 80);
    assert_true(isnan(c.value));
    assert_int_equal(c.n_obs, 2);
    c = cell(e, s, "AS-XY", "fiscal_revenue_growth", "2015-03");
    assert_near(c.value, 15);
    assert_near(c.score, 100);
    c = cell(e, s, "AS-XY", "interview", "2015-03");
    assert_near(c.score, 5); /* points deducted */
    c = cell(e, s, "AS-TD", "total", "2015-03");
    assert_near(c.score, 3757.5 / 39.35);

    /* group 4 with the governance events */
    expect_total(e, s, "AS-FGW", "2015-03", 5508.875 / 65.2, 0.652, 1, "良");
    assert_near(5508.875 / 65.2, 84.491947852760736);
    expect_total(e, s, "AS-SJJ", "2015-03", 6627 / 81.15, 0.8115, 2, "良");
    assert_near(6627 / 81.15, 81.663585951940855);
    c = cell(e, s, "AS-FGW", "audit_findings", "2015-03");
    assert_near(c.value, 4);
    assert_near(c.score, 70);
    assert_int_equal(c.n_obs, 4);
    c = cell(e, s, "AS-FGW", "audit_rectification", "2015-03");
    assert_near(c.value, 75);
    assert_near(c.score, 75);
    c = cell(e, s, "AS-FGW", "approval_ontime", "2015-03");
    assert_near(c.value, 80);
    assert_int_equal(c.n_obs, 5);
    c = cell(e, s, "AS-FGW", "budget_execution", "2015-03");
    assert_near(c.score, 85);
    c = cell(e, s, "AS-FGW", "governance", "2015-03");
    assert_near(c.score, 79.25);
    assert_int_equal(c.n_obs, 1 + 4 + 4 + 5);
    c = cell(e, s, "AS-FGW", "result", "2015-03");
    assert_near(c.score, 88.3203125);
    assert_true(no_cell(e, s, "AS-SJJ", "audit_findings", "2015-03"));

    /* derived periods: Q1, H1 and the year equal March while March is the only month */
    expect_total(e, s, "AS-TD", "2015-Q1", 3757.5 / 39.35, 0.3935, 1, "优");
    expect_total(e, s, "AS-TD", "2015", 3757.5 / 39.35, 0.3935, 1, "优");
    expect_total(e, s, "AS-XY", "2015-H1", 96, 0.055, 1, "优");
    expect_total(e, s, "AS-FGW", "2015-Q1", 5508.875 / 65.2, 0.652, 1, "良");

    /* January politics 70 for AS-TD: the Q1 politics cell is avg(70, 90) = 80, gdp the latest
     * month (March, 12 → 100), process avg of March only (95):
     *   Q1 = (660 + 2.75·80 + 2850)/39.35 = 3730/39.35 = 94.7903…; January alone: politics 70,
     *   total 70, coverage 2.75/100 = 0.0275. */
    apply_ok(e, ob("office", "pol-TD-01", 0, "AS-TD", "politics", "2015-01", 70));
    expect_total(e, s, "AS-TD", "2015-01", 70, 0.0275, 1, "中");
    expect_total(e, s, "AS-TD", "2015-Q1", 3730 / 39.35, 0.3935, 1, "优");
    c = cell(e, s, "AS-TD", "politics", "2015-Q1");
    assert_near(c.value, 80);
    assert_int_equal(c.n_obs, 2);
    /* the March table is untouched */
    expect_total(e, s, "AS-TD", "2015-03", 3757.5 / 39.35, 0.3935, 1, "优");

    /* the year with leader 90 and public 80:
     *   (3730 + 10·90 + 5·80)/(39.35 + 10 + 5) = 5030/54.35 = 92.5482…, coverage 0.5435 */
    apply_ok(e, ob("office", "lead-TD", 0, "AS-TD", "leader", "2015", 90));
    apply_ok(e, ob("survey", "pub-TD", 0, "AS-TD", "public", "2015", 80));
    expect_total(e, s, "AS-TD", "2015", 5030 / 54.35, 0.5435, 1, "优");
    assert_near(5030 / 54.35, 92.548298068077276);

    /* governance events move FGW:
     * - February: two more findings (aud-FGW-5, 6) → February count 2 → band [1,3) → 85, alone:
     *   total 85, coverage 0.00825; Q1 pools the events: count 6 → band [6,∞) → 50, so Q1 =
     *   (5508.875 − 0.825·(70 − 50))/65.2 = 5492.375/65.2 = 84.2388… (March unchanged).
     * - rect-FGW-3 rectified (rev 1, val 1): March rate 100 → +1.1·25 = +27.5;
     *   apr-FGW-2 found overdue at a later stage (rev 1, val 0): 3/5 → 60 → −1.65·20 = −33;
     *   March = (5508.875 + 27.5 − 33)/65.2 = 5503.375/65.2 = 84.4076…,
     *   governance = (2975 + 1050 + 2000 + 1800)/100 = 78.25;
     *   Q1 = (5492.375 + 27.5 − 33)/65.2 = 5486.875/65.2 = 84.1545…
     * - SJJ stays at 81.6635… (rank 2) */
    apply_ok(e, ob("audit", "aud-FGW-5", 0, "AS-FGW", "audit_findings", "2015-02", 1));
    apply_ok(e, ob("audit", "aud-FGW-6", 0, "AS-FGW", "audit_findings", "2015-02", 1));
    expect_total(e, s, "AS-FGW", "2015-02", 85, 0.00825, 1, "良");
    expect_total(e, s, "AS-FGW", "2015-Q1", 5492.375 / 65.2, 0.652, 1, "良");
    c = cell(e, s, "AS-FGW", "audit_findings", "2015-Q1");
    assert_near(c.value, 6);
    assert_near(c.score, 50);
    assert_int_equal(c.n_obs, 6);
    apply_ok(e, ob("audit", "rect-FGW-3", 1, "AS-FGW", "audit_rectification", "2015-03", 1));
    apply_ok(e, ob("esup", "apr-FGW-2", 1, "AS-FGW", "approval_ontime", "2015-03", 0));
    expect_total(e, s, "AS-FGW", "2015-03", 5503.375 / 65.2, 0.652, 1, "良");
    assert_near(5503.375 / 65.2, 84.407592024539877);
    assert_near(cell(e, s, "AS-FGW", "governance", "2015-03").score, 78.25);
    assert_near(cell(e, s, "AS-FGW", "approval_ontime", "2015-03").value, 60);
    assert_int_equal(cell(e, s, "AS-FGW", "approval_ontime", "2015-03").n_obs, 5);
    expect_total(e, s, "AS-FGW", "2015-Q1", 5486.875 / 65.2, 0.652, 1, "良");
    expect_total(e, s, "AS-SJJ", "2015-03", 6627 / 81.15, 0.8115, 2, "良");

    score_engine_destroy(&e);
    score_scheme_destroy(&s);
}

/* ---- checks ------------------------------------------------------------------------------- */

static void test_check_reasons(void **state)
{
    (void)state;
    struct score_scheme *s = load_anshan();
    struct score_engine *e = NULL;
    assert_int_equal(score_engine_new(s, &e), 0);
    char msg[256];
    struct score_obs o = ob("stats", "x", 0, "AS-NOPE", "gdp_growth", "2015-03", 8);
    assert_int_equal(score_engine_check(e, &o, msg, sizeof msg), KP_R_unknown_unit);
    o = ob("stats", "x", 0, "AS-HC", "gdp_nope", "2015-03", 8);
    assert_int_equal(score_engine_check(e, &o, msg, sizeof msg), KP_R_unknown_indicator);
    o = ob("stats", "x", 0, "AS-HC", "econ", "2015-03", 8); /* inner node */
    assert_int_equal(score_engine_check(e, &o, msg, sizeof msg), KP_R_unknown_indicator);
    o = ob("stats", "x", 0, "AS-FGW", "gdp_growth", "2015-03", 8); /* not for group 4 */
    assert_int_equal(score_engine_check(e, &o, msg, sizeof msg), KP_R_unknown_indicator);
    assert_non_null(strstr(msg, "g4"));
    o = ob("office", "x", 0, "AS-HC", "gdp_growth", "2015-03", 8); /* wrong source */
    assert_int_equal(score_engine_check(e, &o, msg, sizeof msg), KP_R_not_granted_indicator);
    o = ob("stats", "x", 0, "AS-HC", "gdp_growth", "2015-Q1", 8); /* month only */
    assert_int_equal(score_engine_check(e, &o, msg, sizeof msg), KP_R_bad_period);
    o = ob("stats", "x", 0, "AS-HC", "gdp_growth", "2016-03", 8); /* other year */
    assert_int_equal(score_engine_check(e, &o, msg, sizeof msg), KP_R_bad_period);
    o = ob("stats", "x", 0, "AS-HC", "gdp_growth", "2015-13", 8);
    assert_int_equal(score_engine_check(e, &o, msg, sizeof msg), KP_R_bad_period);
    o = ob("office", "x", 0, "AS-HC", "politics", "2015-03", 101); /* max 100 */
    assert_int_equal(score_engine_check(e, &o, msg, sizeof msg), KP_R_out_of_range);
    o = ob("office", "x", 0, "AS-HC", "politics", "2015-03", NAN);
    assert_int_equal(score_engine_check(e, &o, msg, sizeof msg), KP_R_not_finite);
    o = ob("office", "x", 0, "AS-HC", "criticism", "2015-03", -1); /* events count >= 0 */
    assert_int_equal(score_engine_check(e, &o, msg, sizeof msg), KP_R_out_of_range);
    o = ob("office", "x", 0, "AS-HC", "criticism", "2015-03", 2); /* one event per record */
    assert_int_equal(score_engine_check(e, &o, msg, sizeof msg), KP_R_out_of_range);
    o = ob("office", "x", 0, "AS-HC", "criticism", "2015-03", 1);
    assert_int_equal(score_engine_check(e, &o, msg, sizeof msg), KP_R_OK);
    assert_string_equal(msg, "");
    /* apply refuses what check refuses and stores nothing */
    o = ob("stats", "x", 0, "AS-HC", "gdp_growth", "2016-03", 8);
    assert_int_equal(score_engine_apply(e, &o), KP_R_bad_period);
    assert_int_equal(score_engine_n_records(e), 0);
    score_engine_destroy(&e);
    score_scheme_destroy(&s);
}

/* ---- the small test scheme --------------------------------------------------------------- */

static const char *T1 =
    "scheme: t1\n"
    "name: 测试\n"
    "year: 2015\n"
    "derive: [quarter, year]\n"
    "grades:\n"
    "  bands:\n"
    "    - {grade: 优, min: 90}\n"
    "    - {grade: 良, min: 80}\n"
    "    - {grade: 中, min: 60}\n"
    "    - {grade: 差}\n"
    "groups:\n"
    "  - code: g1\n"
    "    name: 组一\n"
    "    units: [{code: A, name: 甲}, {code: B, name: 乙}, {code: C, name: 丙}, {code: D, name: "
    "丁}]\n"
    "  - code: g2\n"
    "    name: 组二\n"
    "    units: [{code: E, name: 戊}, {code: F, name: 己}]\n"
    "indicators:\n"
    "  - {code: x, name: X, weight: 50, method: direct, periods: [month], rollup: avg}\n"
    "  - {code: y, name: Y, weight: 30, method: efficacy, good: 12, bad: 6, periods: [month],\n"
    "     rollup: latest}\n"
    "  - {code: r, name: R, weight: 20, method: direct, input: rate, periods: [month]}\n"
    "adjustments:\n"
    "  deduct_cap: 8\n"
    "  kinds:\n"
    "    - {code: crit, name: 批评, method: deduct, points: 5, periods: [month]}\n"
    "    - {code: praise, name: 表扬, method: add, points: 1, cap: 2, periods: [month]}\n"
    "    - {code: veto, name: 否决, method: veto, periods: [month]}\n";

/* score_engine_bytes (the scorer's kaoping_scorer_state_bytes) grows with the records held and
 * accounts for the heap the engine's data takes: within 20% of what glibc reports as allocated
 * (malloc's own headers are not counted; under sanitizers glibc reports nothing). */
static void test_memory_accounting(void **state)
{
    (void)state;
    struct score_scheme *s = load_text("t1.yaml", T1);
    struct mallinfo2 m0 = mallinfo2();
    struct score_engine *e = NULL;
    assert_int_equal(score_engine_new(s, &e), 0);
    size_t b0 = score_engine_bytes(e);
    assert_true(b0 > 0);
    enum { N = 20000 };
    static const char *const units[] = {"A", "B", "C", "D", "E", "F"};
    for (int i = 0; i < N; i++) {
        char ref[40], period[8];
        snprintf(ref, sizeof ref, "memory-accounting-%06d", i); /* 24 bytes: out of line */
        snprintf(period, sizeof period, "2015-%02d", i % 12 + 1);
        apply_ok(e, ob("s", ref, 0, units[i % 6], i % 2 ? "r" : "crit", period, 1));
    }
    assert_int_equal(score_engine_n_records(e), N);
    size_t b1 = score_engine_bytes(e);
    assert_true(b1 - b0 >= (size_t)N * 25); /* the refs alone, with their NUL */
    assert_true(b1 - b0 <= (size_t)N * 200);
    struct mallinfo2 m1 = mallinfo2();
    size_t h0 = m0.uordblks + m0.hblkhd, h1 = m1.uordblks + m1.hblkhd;
    size_t heap = h1 > h0 ? h1 - h0 : 0; /* 0 under sanitizers: their allocator is not glibc's */
    if (heap > 0) {
        fprintf(stderr, "engine: %zu bytes counted, %zu bytes of heap\n", b1, heap);
        assert_true(b1 <= heap);
        assert_true(b1 * 10 >= heap * 8);
    }
    score_engine_destroy(&e);
    score_scheme_destroy(&s);
}

/* Units of work of events (evicted at commit) with one new value record among them, all with
 * refs out of line: the events' refs leave no garbage in the arena (arena_pack_tail), so it
 * holds exactly the values' refs, each still found by its key; a rolled back unit of work
 * leaves the arena as it was. */
static void test_evicted_events_arena(void **state)
{
    (void)state;
    struct score_scheme *s = load_text("t1.yaml", T1);
    struct score_engine *e = NULL;
    assert_int_equal(score_engine_new(s, &e), 0);
    score_engine_evict_events(e);
    static const char *const units[] = {"A", "B", "C", "D", "E", "F"};
    enum { UOW = 300, EVENTS = 100 };
    char ref[48], period[8];
    size_t want = 0;
    for (int i = 0; i < UOW; i++) {
        score_engine_begin(e);
        snprintf(period, sizeof period, "2015-%02d", i / 6 % 12 + 1);
        for (int j = 0; j < EVENTS; j++) {
            if (j == EVENTS / 2) {
                snprintf(ref, sizeof ref, "arena-value-%05d", i); /* 17 bytes: 20 in the arena */
                apply_ok(e, ob("s", ref, 0, units[i % 6], "x", period, i));
                want += 20;
            }
            snprintf(ref, sizeof ref, "arena-event-%05d-%03d", i, j);
            apply_ok(e, ob("s", ref, 0, units[(i + j) % 6], "r", period, j % 2));
        }
        score_engine_commit(e);
    }
    assert_int_equal(score_engine_n_records(e), UOW * (EVENTS + 1));
    assert_int_equal(score_engine_n_resident(e), UOW);
    assert_int_equal(score__arena_used(e), want);

    /* rolled back: the arena as it was */
    score_engine_begin(e);
    apply_ok(e, ob("s", "arena-value-rolled-back", 0, "A", "x", "2015-01", 1));
    apply_ok(e, ob("s", "arena-event-rolled-back", 0, "A", "r", "2015-01", 1));
    score_engine_rollback(e);
    assert_int_equal(score__arena_used(e), want);

    /* every value record found by its ref: revised in place, no new record */
    score_engine_begin(e);
    for (int i = 0; i < UOW; i++) {
        snprintf(ref, sizeof ref, "arena-value-%05d", i);
        snprintf(period, sizeof period, "2015-%02d", i / 6 % 12 + 1);
        apply_ok(e, ob("s", ref, 1, units[i % 6], "x", period, 1000 + i));
    }
    score_engine_commit(e);
    assert_int_equal(score_engine_n_resident(e), UOW);
    assert_int_equal(score__arena_used(e), want);
    /* unit A, 2015-01: the values of i = 0, 72, 144, 216 and 288, all at 0 from src s: the
     * latest is the greatest ref, arena-value-00288, revised to 1288 */
    struct score_cell_change c = cell(e, s, "A", "x", "2015-01");
    assert_int_equal(c.n_obs, 5);
    assert_true(c.value == 1288);
    score_engine_destroy(&e);
    score_scheme_destroy(&s);
}

static void test_revisions(void **state)
{
    (void)state;
    struct score_scheme *s = load_text("t1.yaml", T1);
    struct score_engine *e = NULL;
    assert_int_equal(score_engine_new(s, &e), 0);

    apply_ok(e, ob("s", "r1", 1, "A", "x", "2015-01", 70));
    assert_near(cell(e, s, "A", "x", "2015-01").value, 70);
    /* equal and lower revisions change nothing */
    apply_ok(e, ob("s", "r1", 1, "A", "x", "2015-01", 90));
    apply_ok(e, ob("s", "r1", 0, "A", "x", "2015-01", 10));
    assert_near(cell(e, s, "A", "x", "2015-01").value, 70);
    assert_near(total(e, s, "A", "2015-01").total, 70);
    /* a higher revision replaces */
    apply_ok(e, ob("s", "r1", 2, "A", "x", "2015-01", 90));
    assert_near(cell(e, s, "A", "x", "2015-01").value, 90);
    assert_int_equal(cell(e, s, "A", "x", "2015-01").n_obs, 1);
    assert_near(total(e, s, "A", "2015-01").total, 90);
    assert_near(total(e, s, "A", "2015").total, 90); /* derived: avg of January */
    assert_int_equal(score_engine_n_records(e), 1);
    /* a higher revision moving the record to unit B removes it from A everywhere */
    apply_ok(e, ob("s", "r1", 3, "B", "x", "2015-01", 80));
    assert_true(no_cell(e, s, "A", "x", "2015-01"));
    assert_true(no_cell(e, s, "A", "x", "2015"));
    struct score_total_change t;
    assert_int_equal(score_engine_total(e, (size_t)U(s, "A"), "2015-01", &t), KP_ENOENT);
    assert_int_equal(score_engine_total(e, (size_t)U(s, "A"), "2015", &t), KP_ENOENT);
    assert_near(total(e, s, "B", "2015-01").total, 80);
    assert_int_equal(total(e, s, "B", "2015-01").rank, 1);
    /* ... and to another indicator and period */
    apply_ok(e, ob("s", "r1", 4, "B", "y", "2015-02", 9)); /* (9−6)/6·40+60 = 80 */
    assert_true(no_cell(e, s, "B", "x", "2015-01"));
    assert_near(cell(e, s, "B", "y", "2015-02").score, 80);
    assert_near(cell(e, s, "B", "y", "2015-Q1").score, 80);
    assert_true(no_cell(e, s, "B", "x", "2015-Q1"));
    assert_int_equal(score_engine_n_records(e), 1);

    /* several records on one value cell: the greatest (at, src, ref) wins, whatever the order */
    struct score_obs a = ob("s", "c1", 0, "C", "x", "2015-03", 50);
    struct score_obs b = ob("s", "c2", 0, "C", "x", "2015-03", 60);
    struct score_obs c = ob("t", "c0", 0, "C", "x", "2015-03", 65);
    a.at = 1000;
    b.at = 2000;
    c.at = 2000; /* same at as b: src "t" > "s" wins */
    apply_ok(e, c);
    apply_ok(e, b);
    apply_ok(e, a);
    assert_near(cell(e, s, "C", "x", "2015-03").value, 65);
    assert_int_equal(cell(e, s, "C", "x", "2015-03").n_obs, 3);
    c.rev = 1;
    c.unit = "D"; /* c leaves: b is next */
    apply_ok(e, c);
    assert_near(cell(e, s, "C", "x", "2015-03").value, 60);
    assert_near(cell(e, s, "D", "x", "2015-03").value, 65);

    score_engine_destroy(&e);
    score_scheme_destroy(&s);
}

/* Event rate, adjustments with caps, veto, vetoed units rank last. */
static void test_events_adjustments_veto(void **state)
{
    (void)state;
    struct score_scheme *s = load_text("t1.yaml", T1);
    struct score_engine *e = NULL;
    assert_int_equal(score_engine_new(s, &e), 0);
    /* r = 100·(1·1 + 1·0 + 2·1)/(1+1+2) = 75 */
    struct score_obs o = ob("esup", "e1", 0, "A", "r", "2015-04", 1);
    apply_ok(e, o);
    o = ob("esup", "e2", 0, "A", "r", "2015-04", 0);
    apply_ok(e, o);
    o = ob("esup", "e3", 0, "A", "r", "2015-04", 1);
    o.w = 2;
    apply_ok(e, o);
    assert_near(cell(e, s, "A", "r", "2015-04").value, 75);
    assert_int_equal(cell(e, s, "A", "r", "2015-04").n_obs, 3);
    assert_near(total(e, s, "A", "2015-04").total, 75);
    assert_near(total(e, s, "A", "2015-04").coverage, 0.2);
    /* pooled into the quarter and the year (not an average of monthly rates): add May with one
     * event val 0 w 4 → Q2 = 100·3/8 = 37.5 */
    o = ob("esup", "e4", 0, "A", "r", "2015-05", 0);
    o.w = 4;
    apply_ok(e, o);
    assert_near(cell(e, s, "A", "r", "2015-Q2").value, 37.5);
    assert_near(cell(e, s, "A", "r", "2015").value, 37.5);
    /* a revision of e1 to 0 → April = 100·2/4 = 50 */
    o = ob("esup", "e1", 1, "A", "r", "2015-04", 0);
    apply_ok(e, o);
    assert_near(cell(e, s, "A", "r", "2015-04").value, 50);

    /* adjustments for B in April: x 85; praise ×3 (kind cap 2) → +2; crit ×2 → 10, capped by
     * deduct_cap 8 → total 85 + 2 − 8 = 79 */
    apply_ok(e, ob("o", "bx", 0, "B", "x", "2015-04", 85));
    for (int i = 0; i < 3; i++) {
        char ref[16];
        snprintf(ref, sizeof ref, "p%d", i);
        apply_ok(e, ob("o", ref, 0, "B", "praise", "2015-04", 1));
    }
    apply_ok(e, ob("o", "c1", 0, "B", "crit", "2015-04", 1));
    assert_near(total(e, s, "B", "2015-04").total, 85 + 2 - 5);
    apply_ok(e, ob("o", "c2", 0, "B", "crit", "2015-04", 1));
    assert_near(total(e, s, "B", "2015-04").total, 79);
    assert_near(cell(e, s, "B", "praise", "2015-04").score, 2);
    assert_near(cell(e, s, "B", "crit", "2015-04").score, 10);
    assert_string_equal(total(e, s, "B", "2015-04").grade, "中");
    /* the criticism withdrawn (value 0 in a higher revision) → 85 + 2 − 5 = 82 */
    apply_ok(e, ob("o", "c2", 1, "B", "crit", "2015-04", 0));
    assert_near(total(e, s, "B", "2015-04").total, 82);
    /* adjustments pool into the year: year B = x avg 85 + 2 − 5 */
    assert_near(total(e, s, "B", "2015").total, 82);

    /* ranks in April: B 82 (1), A 50 (2); veto on B → B ranks after A, grade 差 */
    assert_int_equal(total(e, s, "B", "2015-04").rank, 1);
    assert_int_equal(total(e, s, "A", "2015-04").rank, 2);
    apply_ok(e, ob("o", "v1", 0, "B", "veto", "2015-04", 1));
    struct score_total_change t = total(e, s, "B", "2015-04");
    assert_true(t.vetoed);
    assert_near(t.total, 82);
    assert_string_equal(t.grade, "差");
    assert_int_equal(t.rank, 2);
    assert_int_equal(total(e, s, "A", "2015-04").rank, 1);
    score_engine_destroy(&e);
    score_scheme_destroy(&s);
}

/* ---- snapshots of the whole state ------------------------------------------------------------ */

struct item {
    char key[64];
    double a, b;
    uint32_t n;
    char grade[16];
    bool vetoed;
};

struct snap {
    struct item *v;
    size_t n, cap;
};

static void snap_push(struct snap *sn, const struct item *it)
{
    if (sn->n == sn->cap) {
        sn->cap = sn->cap ? sn->cap * 2 : 256;
        sn->v = realloc(sn->v, sn->cap * sizeof *sn->v);
        assert_non_null(sn->v);
    }
    sn->v[sn->n++] = *it;
}

static void cell_item(const struct score_cell_change *c, struct item *it)
{
    memset(it, 0, sizeof *it);
    snprintf(it->key, sizeof it->key, "C %s %04zu %04zu", c->period, c->unit, c->node);
    it->a = c->value;
    it->b = c->score;
    it->n = c->n_obs;
}

static void total_item(const struct score_total_change *t, struct item *it)
{
    memset(it, 0, sizeof *it);
    snprintf(it->key, sizeof it->key, "T %s %04zu", t->period, t->unit);
    it->a = t->total;
    it->b = t->coverage;
    it->n = t->rank;
    snprintf(it->grade, sizeof it->grade, "%s", t->grade);
    it->vetoed = t->vetoed;
}

static void snap_cell(const struct score_cell_change *c, void *arg)
{
    struct item it;
    cell_item(c, &it);
    snap_push(arg, &it);
}

static void snap_total(const struct score_total_change *t, void *arg)
{
    struct item it;
    total_item(t, &it);
    snap_push(arg, &it);
}

static int item_cmp(const void *a, const void *b)
{
    return strcmp(((const struct item *)a)->key, ((const struct item *)b)->key);
}

static struct snap snapshot(const struct score_engine *e)
{
    struct snap sn = {0};
    score_engine_foreach_cell(e, snap_cell, &sn);
    score_engine_foreach_total(e, snap_total, &sn);
    if (sn.n)
        qsort(sn.v, sn.n, sizeof *sn.v, item_cmp);
    return sn;
}

static bool item_same(const struct item *x, const struct item *y)
{
    /* exact: bit for bit, NaN equal to NaN */
    return !strcmp(x->key, y->key) && (x->a == y->a || (isnan(x->a) && isnan(y->a))) &&
           (x->b == y->b || (isnan(x->b) && isnan(y->b))) && x->n == y->n &&
           !strcmp(x->grade, y->grade) && x->vetoed == y->vetoed;
}

static void assert_snap_equal(const struct snap *x, const struct snap *y)
{
    assert_int_equal(x->n, y->n);
    for (size_t i = 0; i < x->n; i++) {
        if (!item_same(&x->v[i], &y->v[i])) {
            fprintf(stderr, "differs: %s %.17g %.17g n %u vs %s %.17g %.17g n %u\n", x->v[i].key,
                    x->v[i].a, x->v[i].b, x->v[i].n, y->v[i].key, y->v[i].a, y->v[i].b, y->v[i].n);
            fail();
        }
    }
}

/* ---- random observation sets ------------------------------------------------------------ */

static uint64_t rng_state;

static uint32_t rnd(uint32_t n)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)((rng_state >> 33) % n);
}

struct gen_obs {
    struct score_obs o;
    char ref[16], unit[4], ind[16], period[8];
};

/* Content is a function of (ref, rev), as a real source guarantees: a repeated
 * (src, ref, rev) is a duplicate. */
static int gen_mode = 1; /* 1: scheme T1, 2: scheme T2 */

static bool gen_sticky; /* refs but one in four keep their rev 0 content but for `at` (and
                         * one in four their period) */

static void gen_one(struct gen_obs *g, unsigned ref, unsigned rev)
{
    if (gen_sticky && ref % 4 != 3 && rev > 0) {
        gen_sticky = false;
        gen_one(g, ref, 0);
        gen_sticky = true;
        g->o.rev = rev;
        g->o.at = (int64_t)((ref * 31u + rev * 17u) % 5) * 1000;
        if (ref % 4 == 1) /* to another month of the same unit and indicator */
            snprintf(g->period, sizeof g->period, "2015-%02u", 1 + (ref + rev) % 6);
        return;
    }
    static const char *const units[] = {"A", "B", "C", "D", "E", "F"};
    static const char *const inds[] = {"x", "y", "r", "r", "crit", "praise", "veto", "x"};
    static const char *const inds2[] = {"rel",      "rel_low", "rk",  "comp",
                                        "comp_rev", "bd",      "rel", "rk"};
    uint64_t save = rng_state;
    rng_state = ref * 1000003ull + rev * 7919ull + 17;
    snprintf(g->ref, sizeof g->ref, "ref%u", ref);
    snprintf(g->unit, sizeof g->unit, "%s", units[rnd(6)]);
    if (gen_mode == 2) {
        snprintf(g->ind, sizeof g->ind, "%s", inds2[rnd(8)]);
        snprintf(g->period, sizeof g->period, "2015-%02u", 1 + rnd(4));
        g->o = ob(rnd(2) ? "s1" : "s2", g->ref, rev, g->unit, g->ind, g->period,
                  rnd(41) / 4.0); /* small range: ties in ranks and equal max/min happen */
        g->o.at = (int64_t)rnd(5) * 1000;
        rng_state = save;
        return;
    }
    const char *ind = inds[rnd(8)];
    if (!strcmp(ind, "veto") && rnd(4))
        ind = "x";
    snprintf(g->ind, sizeof g->ind, "%s", ind);
    snprintf(g->period, sizeof g->period, "2015-%02u", 1 + rnd(6));
    if (!strcmp(ind, "r") && rnd(2)) { /* crowd one cell so summation order would matter */
        snprintf(g->unit, sizeof g->unit, "A");
        snprintf(g->period, sizeof g->period, "2015-01");
    }
    double v;
    if (!strcmp(ind, "x"))
        v = rnd(10001) / 100.0;
    else if (!strcmp(ind, "y"))
        v = rnd(2001) / 100.0;
    else if (!strcmp(ind, "r"))
        v = rnd(3) / 3.0;
    else
        v = rnd(3) ? 1 : 0;
    g->o = ob(rnd(2) ? "s1" : "s2", g->ref, rev, g->unit, g->ind, g->period, v);
    g->o.src = rnd(2) ? "s1" : "s2";
    g->o.w = (1 + rnd(30)) / 10.0; /* inexact sums: order would show */
    g->o.at = (int64_t)rnd(5) * 1000;
    rng_state = save;
}

static void fix_ptrs(struct gen_obs *g)
{
    g->o.ref = g->ref;
    g->o.unit = g->unit;
    g->o.indicator = g->ind;
    g->o.period = g->period;
}

/* n observations over `refs` refs with revisions 0-3, some duplicated. */
static struct gen_obs *gen_set(size_t n, unsigned refs, unsigned ref_base)
{
    struct gen_obs *v = calloc(n, sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && rnd(5) == 0) {
            v[i] = v[rnd((uint32_t)i)];
        } else {
            gen_one(&v[i], ref_base + rnd(refs), rnd(4));
        }
        fix_ptrs(&v[i]);
    }
    return v;
}

static void shuffle(struct gen_obs *v, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = rnd((uint32_t)i);
        struct gen_obs t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
    for (size_t i = 0; i < n; i++)
        fix_ptrs(&v[i]);
}

static void apply_all(struct score_engine *e, struct gen_obs *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        assert_int_equal(score_engine_apply(e, &v[i].o), KP_R_OK);
}

static const char *T2;

static struct score_scheme *load_mode(int mode)
{
    gen_mode = mode;
    return mode == 1 ? load_text("t1.yaml", T1) : load_text("t2.yaml", T2);
}

static void run_permutations(int mode)
{
    struct score_scheme *s = load_mode(mode);
    rng_state = 42;
    const size_t n = 400;
    struct gen_obs *v = gen_set(n, 120, 0);
    struct score_engine *e0 = NULL;
    assert_int_equal(score_engine_new(s, &e0), 0);
    apply_all(e0, v, n);
    struct snap ref = snapshot(e0);
    assert_true(ref.n > 50);
    for (int round = 0; round < 30; round++) {
        shuffle(v, n);
        struct score_engine *e = NULL;
        assert_int_equal(score_engine_new(s, &e), 0);
        /* half the rounds inside units of work of 7, as the scorer does */
        for (size_t i = 0; i < n; i++) {
            if (round % 2 && i % 7 == 0)
                score_engine_begin(e);
            assert_int_equal(score_engine_apply(e, &v[i].o), KP_R_OK);
            if (round % 2 && (i % 7 == 6 || i == n - 1))
                score_engine_commit(e);
        }
        struct snap got = snapshot(e);
        assert_snap_equal(&ref, &got);
        assert_int_equal(score_engine_n_records(e), score_engine_n_records(e0));
        free(got.v);
        score_engine_destroy(&e);
    }
    free(ref.v);
    free(v);
    score_engine_destroy(&e0);
    score_scheme_destroy(&s);
}

static void run_rollback(int mode)
{
    struct score_scheme *s = load_mode(mode);
    rng_state = 7;
    struct gen_obs *base = gen_set(300, 100, 0);
    struct score_engine *e = NULL;
    assert_int_equal(score_engine_new(s, &e), 0);
    score_engine_begin(e);
    apply_all(e, base, 300);
    score_engine_commit(e);
    struct snap before = snapshot(e);
    size_t nrec = score_engine_n_records(e);
    for (int round = 0; round < 10; round++) {
        /* revisions of existing refs and new refs, some moving cells */
        struct gen_obs *batch = gen_set(150, 200, (unsigned)round * 7);
        score_engine_begin(e);
        apply_all(e, batch, 150);
        struct snap mid = snapshot(e);
        score_engine_rollback(e);
        struct snap after = snapshot(e);
        assert_snap_equal(&before, &after);
        assert_int_equal(score_engine_n_records(e), nrec);
        free(mid.v);
        free(after.v);
        free(batch);
    }
    /* a fresh engine fed the base set agrees too */
    struct score_engine *f = NULL;
    assert_int_equal(score_engine_new(s, &f), 0);
    apply_all(f, base, 300);
    struct snap fresh = snapshot(f);
    assert_snap_equal(&before, &fresh);
    free(fresh.v);
    score_engine_destroy(&f);
    free(before.v);
    free(base);
    score_engine_destroy(&e);
    score_scheme_destroy(&s);
}

/* ---- evicted records ------------------------------------------------------------------------ */

/* What the scorer's observation table holds: every committed revision. */
struct store {
    struct gen_obs *v;
    size_t n, cap;
};

static void store_add(struct store *st, const struct gen_obs *g)
{
    if (st->n == st->cap) {
        st->cap = st->cap ? st->cap * 2 : 64;
        st->v = realloc(st->v, st->cap * sizeof *st->v);
        assert_non_null(st->v);
        for (size_t i = 0; i < st->n; i++)
            fix_ptrs(&st->v[i]);
    }
    st->v[st->n] = *g;
    fix_ptrs(&st->v[st->n++]);
}

static int rev_desc(const void *a, const void *b)
{
    uint64_t x = (*(const struct gen_obs *const *)a)->o.rev;
    uint64_t y = (*(const struct gen_obs *const *)b)->o.rev;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* As the scorer does before it applies: every stored revision of each key the engine may have
 * evicted, highest first. Returns the number of keys loaded. */
static size_t load_cold(struct score_engine *e, const struct store *st, const struct gen_obs *v,
                        size_t n)
{
    size_t keys = 0;
    const struct gen_obs **rows = calloc(st->n + 1, sizeof *rows);
    assert_non_null(rows);
    for (size_t i = 0; i < n; i++) {
        if (!score_engine_maybe_cold(e, &v[i].o))
            continue;
        size_t k = 0;
        for (size_t j = 0; j < st->n; j++)
            if (!strcmp(st->v[j].o.src, v[i].o.src) && !strcmp(st->v[j].ref, v[i].ref))
                rows[k++] = &st->v[j];
        qsort(rows, k, sizeof *rows, rev_desc);
        bool held = false;
        for (size_t j = 0; j < k && !held; j++)
            held = score_engine_load(e, &rows[j]->o);
        keys += held;
    }
    free(rows);
    return keys;
}

/* The scorer's cell loader (scr__db_load_cell) over the store: every stored revision of each
 * key that has one in the cell, a key's highest first; the first `limit` rows of the store are
 * what the engine had applied. */
struct cell_src {
    const struct score_scheme *s;
    const struct store *st;
    size_t limit;
    size_t cells, rows;
    bool fail; /* the next call fails, as a lost connection would */
    size_t failed;
};

static bool store_cell(void *ctx, struct score_engine *e, size_t unit, size_t node,
                       const char *period)
{
    struct cell_src *cs = ctx;
    if (cs->fail) {
        cs->fail = false;
        cs->failed++;
        return false;
    }
    const char *u = score_scheme_unit_code(cs->s, unit), *ind = score_scheme_node_code(cs->s, node);
    const struct gen_obs **rows = calloc(cs->limit + 1, sizeof *rows);
    assert_non_null(rows);
    for (size_t i = 0; i < cs->limit; i++) {
        const struct gen_obs *g = &cs->st->v[i];
        if (strcmp(g->unit, u) || strcmp(g->ind, ind) || strcmp(g->period, period))
            continue;
        bool seen = false; /* the key's rows are loaded once */
        for (size_t j = 0; j < i && !seen; j++) {
            const struct gen_obs *h = &cs->st->v[j];
            seen = !strcmp(h->unit, u) && !strcmp(h->ind, ind) && !strcmp(h->period, period) &&
                   !strcmp(h->o.src, g->o.src) && !strcmp(h->ref, g->ref);
        }
        if (seen)
            continue;
        size_t k = 0;
        for (size_t j = 0; j < cs->limit; j++)
            if (!strcmp(cs->st->v[j].o.src, g->o.src) && !strcmp(cs->st->v[j].ref, g->ref))
                rows[k++] = &cs->st->v[j];
        qsort(rows, k, sizeof *rows, rev_desc);
        for (size_t j = 0; j < k; j++)
            (void)score_engine_load(e, &rows[j]->o);
        cs->rows += k;
    }
    cs->cells++;
    free(rows);
    return true;
}

/* An engine that evicts its event records (and with `values` its value records that are not
 * their cell's latest) and is given them back from the store gives the same scores, bit for
 * bit, as one that keeps every record: over units of work of revisions that move records
 * between cells and between event and value leaves, lower a latest record's `at`, duplicates,
 * and rollbacks (also of a unit of work that loaded records, and of one whose cell loader
 * failed). It holds fewer records; every key stays counted. */
static void run_evicted(int mode, bool values)
{
    struct score_scheme *s = load_mode(mode);
    rng_state = 99;
    const size_t n = 1200;
    gen_sticky = values; /* revisions that stay in their cell, some at an earlier `at` */
    struct gen_obs *v = gen_set(n, 150, 0);
    gen_sticky = false;
    if (values) /* refs longer than a record holds: the arena, and its compaction */
        for (size_t i = 0; i < n; i++) {
            char t[sizeof v[i].ref];
            snprintf(t, sizeof t, "longer-%s", v[i].ref);
            memcpy(v[i].ref, t, sizeof t);
        }
    struct score_engine *e0 = NULL, *e1 = NULL;
    assert_int_equal(score_engine_new(s, &e0), 0);
    assert_int_equal(score_engine_new(s, &e1), 0);
    score_engine_evict_events(e1);
    size_t garbage_min = score__arena_garbage_min;
    score__arena_garbage_min = 0; /* the refs' arena packed as soon as an eighth is evicted */
    struct store st = {0};
    struct cell_src cs = {.s = s, .st = &st};
    if (values)
        score_engine_evict_values(e1, store_cell, &cs);
    size_t loaded = 0, rolled = 0;
    for (size_t i = 0; i < n; i += 9) {
        size_t m = n - i < 9 ? n - i : 9;
        bool rollback = rnd(6) == 0;
        cs.limit = st.n;
        cs.fail = rollback && rnd(2);
        size_t failed = cs.failed;
        score_engine_begin(e0);
        score_engine_begin(e1);
        loaded += load_cold(e1, &st, &v[i], m);
        for (size_t j = i; j < i + m; j++) {
            assert_int_equal(score_engine_apply(e0, &v[j].o), KP_R_OK);
            assert_int_equal(score_engine_apply(e1, &v[j].o), KP_R_OK);
        }
        assert_int_equal(score_engine_failed(e1), cs.failed > failed);
        cs.fail = false;
        if (rollback) {
            score_engine_rollback(e0);
            score_engine_rollback(e1);
            rolled++;
        } else {
            score_engine_commit(e0);
            score_engine_commit(e1);
            for (size_t j = i; j < i + m; j++)
                store_add(&st, &v[j]);
        }
        struct snap a = snapshot(e0), b = snapshot(e1);
        assert_snap_equal(&a, &b);
        assert_int_equal(score_engine_n_records(e1), score_engine_n_records(e0));
        assert_true(score_engine_n_resident(e1) <= score_engine_n_resident(e0));
        free(a.v);
        free(b.v);
    }
    /* the path was taken: records came back, and some are out of memory now (T2 has no
     * event leaves: nothing to evict but values) */
    assert_true(rolled > 5);
    if (values) {
        assert_true(cs.cells >= 5);
        assert_true(cs.failed > 0);
        assert_true(score_engine_n_resident(e1) * 3 < score_engine_n_resident(e0) * 2);
    } else if (mode == 1) {
        assert_true(loaded > 100);
        assert_true(score_engine_n_resident(e1) * 3 < score_engine_n_resident(e0) * 2);
    } else {
        assert_int_equal(loaded, 0);
        assert_int_equal(score_engine_n_resident(e1), score_engine_n_resident(e0));
    }
    /* applies outside a unit of work evict too: a fresh engine fed the store agrees */
    struct score_engine *f = NULL;
    assert_int_equal(score_engine_new(s, &f), 0);
    score_engine_evict_events(f);
    struct cell_src fcs = {.s = s, .st = &st};
    if (values)
        score_engine_evict_values(f, store_cell, &fcs);
    for (size_t j = 0; j < st.n; j++) {
        fcs.limit = j;
        if (score_engine_maybe_cold(f, &st.v[j].o)) {
            score_engine_begin(f);
            load_cold(f, &(struct store){st.v, j, j}, &st.v[j], 1);
            assert_int_equal(score_engine_apply(f, &st.v[j].o), KP_R_OK);
            score_engine_commit(f);
        } else {
            assert_int_equal(score_engine_apply(f, &st.v[j].o), KP_R_OK);
        }
    }
    struct snap a = snapshot(e0), b = snapshot(f);
    assert_snap_equal(&a, &b);
    assert_int_equal(score_engine_n_resident(f), score_engine_n_resident(e1));
    free(a.v);
    free(b.v);
    score_engine_destroy(&f);
    score__arena_garbage_min = garbage_min;
    free(st.v);
    free(v);
    score_engine_destroy(&e0);
    score_engine_destroy(&e1);
    score_scheme_destroy(&s);
}

static void test_evicted_events(void **state)
{
    (void)state;
    run_evicted(1, false);
    run_evicted(2, false);
}

static void test_evicted_values(void **state)
{
    (void)state;
    run_evicted(1, true);
    run_evicted(2, true);
}

/* ---- the change report -------------------------------------------------------------------- */

struct seen {
    struct snap cells, totals;
};

static void seen_cell(const struct score_cell_change *c, void *arg)
{
    struct item it;
    cell_item(c, &it);
    snap_push(&((struct seen *)arg)->cells, &it);
}

static void seen_total(const struct score_total_change *t, void *arg)
{
    struct item it;
    total_item(t, &it);
    snap_push(&((struct seen *)arg)->totals, &it);
}

/* The expected report: every key whose state differs between before and after, with its
 * after state (a vanished cell: n_obs 0, NaN; a vanished total: rank 0, total 0). */
static struct snap expected_diff(const struct snap *b, const struct snap *a, char kind)
{
    struct snap d = {0};
    size_t i = 0, j = 0;
    while (i < b->n || j < a->n) {
        int c = i >= b->n ? 1 : j >= a->n ? -1 : strcmp(b->v[i].key, a->v[j].key);
        if (c < 0) {
            if (b->v[i].key[0] == kind) {
                struct item gone = {0};
                snprintf(gone.key, sizeof gone.key, "%s", b->v[i].key);
                gone.a = kind == 'C' ? NAN : 0;
                gone.b = kind == 'C' ? NAN : 0;
                snap_push(&d, &gone);
            }
            i++;
        } else if (c > 0) {
            if (a->v[j].key[0] == kind)
                snap_push(&d, &a->v[j]);
            j++;
        } else {
            if (a->v[j].key[0] == kind && !item_same(&b->v[i], &a->v[j]))
                snap_push(&d, &a->v[j]);
            i++;
            j++;
        }
    }
    return d;
}

static void check_report(struct score_engine *e, const struct snap *before)
{
    struct seen got = {{0}, {0}};
    score_engine_changes(e, seen_cell, seen_total, &got);
    struct snap after = snapshot(e);
    if (got.cells.n)
        qsort(got.cells.v, got.cells.n, sizeof *got.cells.v, item_cmp);
    if (got.totals.n)
        qsort(got.totals.v, got.totals.n, sizeof *got.totals.v, item_cmp);
    struct snap wc = expected_diff(before, &after, 'C'), wt = expected_diff(before, &after, 'T');
    assert_snap_equal(&wc, &got.cells);
    assert_snap_equal(&wt, &got.totals);
    free(wc.v);
    free(wt.v);
    free(got.cells.v);
    free(got.totals.v);
    free(after.v);
}

static void run_changes_exact(int mode)
{
    struct score_scheme *s = load_mode(mode);
    rng_state = 99;
    struct score_engine *e = NULL;
    assert_int_equal(score_engine_new(s, &e), 0);
    for (int round = 0; round < 20; round++) {
        struct gen_obs *batch = gen_set(60, 150, (unsigned)round * 3);
        struct snap before = snapshot(e);
        score_engine_begin(e);
        apply_all(e, batch, 60);
        check_report(e, &before);
        if (round % 3 == 2)
            score_engine_rollback(e);
        else
            score_engine_commit(e);
        free(before.v);
        free(batch);
    }
    score_engine_destroy(&e);
    score_scheme_destroy(&s);
}

/* ---- score_engine_check_ex + score_engine_apply_batch (issue 3) ---------------------------- */

/* The set of gen_set plus observations that fail their check: an unknown unit, an unknown
 * indicator, a bad period. */
static void spoil(struct gen_obs *v, size_t n)
{
    for (size_t i = 3; i < n; i += 17) {
        if (i % 3 == 0)
            snprintf(v[i].unit, sizeof v[i].unit, "ZZ");
        else if (i % 3 == 1)
            snprintf(v[i].ind, sizeof v[i].ind, "nosuch");
        else
            snprintf(v[i].period, sizeof v[i].period, "2015-13");
    }
}

/*
 * A batch applied through check_ex + apply_batch (handles), through apply_batch without
 * handles, and one by one through check + apply give the same state bit for bit, the same
 * reasons, the same change reports and the same rollback; so does a batch whose handles are
 * mismatched (they are ignored: full validation). Batches of every size around the prefetch
 * distance, inside and outside units of work.
 */
static void run_apply_batch(int mode)
{
    struct score_scheme *s = load_mode(mode);
    rng_state = 1234;
    const size_t n = 600;
    struct gen_obs *v = gen_set(n, 200, 0);
    spoil(v, n);
    struct score_obs *obs = calloc(n, sizeof *obs);
    struct score_checked *chk = calloc(n, sizeof *chk);
    enum kp_reason *want = calloc(n, sizeof *want), *got = calloc(n, sizeof *got);
    assert_non_null(obs);
    assert_non_null(chk);
    assert_non_null(want);
    assert_non_null(got);
    for (int variant = 0; variant < 4; variant++) {
        struct score_engine *a = NULL, *b = NULL;
        assert_int_equal(score_engine_new(s, &a), 0);
        assert_int_equal(score_engine_new(s, &b), 0);
        size_t i = 0, size = 1, round = 0;
        while (i < n) {
            size_t k = n - i < size ? n - i : size;
            bool txn = variant != 3;
            struct snap before = snapshot(b);
            size_t want_bad = 0;
            if (txn) {
                score_engine_begin(a);
                score_engine_begin(b);
            }
            for (size_t j = 0; j < k; j++) {
                char msg[128];
                want[j] = score_engine_check(a, &v[i + j].o, msg, sizeof msg);
                enum kp_reason r = score_engine_check_ex(b, &v[i + j].o, msg, sizeof msg, &chk[j]);
                assert_int_equal(r, want[j]);
                if (r != KP_R_OK)
                    memset(&chk[j], 0, sizeof chk[j]);
                assert_int_equal(score_engine_apply(a, &v[i + j].o), want[j]);
                want_bad += want[j] != KP_R_OK;
                obs[j] = v[i + j].o;
            }
            if (variant == 2 && k > 1) { /* mismatched handles are ignored */
                struct score_checked t = chk[0];
                chk[0] = chk[k - 1];
                chk[k - 1] = t;
            }
            size_t bad = score_engine_apply_batch(b, obs, variant == 1 ? NULL : chk, k,
                                                  round % 2 ? got : NULL);
            assert_int_equal(bad, want_bad);
            for (size_t j = 0; round % 2 && j < k; j++)
                assert_int_equal(got[j], want[j]);
            if (txn) {
                check_report(b, &before);
                struct seen ra = {{0}, {0}};
                score_engine_changes(a, seen_cell, seen_total, &ra);
                free(ra.cells.v);
                free(ra.totals.v);
                if (round % 4 == 3) {
                    score_engine_rollback(a);
                    score_engine_rollback(b);
                } else {
                    score_engine_commit(a);
                    score_engine_commit(b);
                }
            }
            struct snap sa = snapshot(a), sb = snapshot(b);
            assert_snap_equal(&sa, &sb);
            assert_int_equal(score_engine_n_records(a), score_engine_n_records(b));
            free(sa.v);
            free(sb.v);
            free(before.v);
            i += k;
            size = size * 2 + round % 3; /* 1, 2, 5, 10, 22, 44, ... around PF_DIST */
            if (size > 100)
                size = 1 + round % 40;
            round++;
        }
        score_engine_destroy(&a);
        score_engine_destroy(&b);
    }
    /* the same records applied as one batch reach the one-by-one state of a fresh engine */
    struct score_engine *a = NULL, *b = NULL;
    assert_int_equal(score_engine_new(s, &a), 0);
    assert_int_equal(score_engine_new(s, &b), 0);
    size_t k = 0;
    for (size_t j = 0; j < n; j++) {
        if (score_engine_check_ex(b, &v[j].o, NULL, 0, &chk[k]) != KP_R_OK)
            continue;
        obs[k++] = v[j].o;
        assert_int_equal(score_engine_apply(a, &v[j].o), KP_R_OK);
    }
    score_engine_begin(b);
    assert_int_equal(score_engine_apply_batch(b, obs, chk, k, NULL), 0);
    score_engine_commit(b);
    struct snap sa = snapshot(a), sb = snapshot(b);
    assert_snap_equal(&sa, &sb);
    free(sa.v);
    free(sb.v);
    score_engine_destroy(&a);
    score_engine_destroy(&b);
    free(obs);
    free(chk);
    free(want);
    free(got);
    free(v);
    score_scheme_destroy(&s);
}

static void test_apply_batch(void **state)
{
    (void)state;
    run_apply_batch(1);
    run_apply_batch(2);
}

/* Event values are counted as llround(x·1e6): values on the half micro-unit, either sign, and
 * near the ±4e12 limit sum to what llround gives. */
static void test_event_rounding(void **state)
{
    (void)state;
    struct score_scheme *s =
        load_text("t4.yaml", "scheme: t4\n"
                             "name: 取整\n"
                             "groups: [{code: g, name: G, units: [{code: A, name: A}]}]\n"
                             "indicators:\n"
                             "  - {code: s, name: 和, weight: 100, input: sum, method: direct}\n");
    static const double vals[] = {0.0000005,  -0.0000005, 0.0000025,  -0.0000025, 1.0000015,
                                  -2.4999995, 0.49999999, 4e12,       -4e12,      3999999.9999995,
                                  1e-7,       -1e-7,      0.00000049, 123.4567895};
    struct score_engine *e = NULL;
    assert_int_equal(score_engine_new(s, &e), 0);
    long long q = 0;
    score_engine_begin(e);
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        char ref[16];
        snprintf(ref, sizeof ref, "e%zu", i);
        struct score_obs o = ob("x", ref, 0, "A", "s", "2015-01", vals[i]);
        struct score_checked c;
        assert_int_equal(score_engine_check_ex(e, &o, NULL, 0, &c), KP_R_OK);
        assert_int_equal(score_engine_apply_batch(e, &o, &c, 1, NULL), 0);
        q += llround(vals[i] * 1e6);
    }
    score_engine_commit(e);
    struct score_cell_change ch;
    assert_int_equal(score_engine_cell(e, 0, 1, "2015-01", &ch), 0);
    assert_true(ch.value == (double)q / 1e6);
    score_engine_destroy(&e);
    score_scheme_destroy(&s);
}

static void test_permutations(void **state)
{
    (void)state;
    run_permutations(1);
    run_permutations(2);
}

static void test_rollback(void **state)
{
    (void)state;
    run_rollback(1);
    run_rollback(2);
}

static void test_changes_exact(void **state)
{
    (void)state;
    run_changes_exact(1);
    run_changes_exact(2);
}

struct rec_totals {
    size_t n;
    char units[16][8];
    uint32_t ranks[16];
};

static void rec_total(const struct score_total_change *t, void *arg)
{
    struct rec_totals *r = arg;
    static const char *const names[] = {"A", "B", "C", "D", "E", "F"};
    assert_true(r->n < 16);
    snprintf(r->units[r->n], sizeof r->units[r->n], "%s", names[t->unit]);
    r->ranks[r->n] = t->rank;
    r->n++;
}

/* One unit's rise moves the others' ranks: they are reported as total changes; a repeated
 * change of one cell is reported once with its final value. */
static void test_changes_ranks(void **state)
{
    (void)state;
    struct score_scheme *s = load_text("t1.yaml", T1);
    struct score_engine *e = NULL;
    assert_int_equal(score_engine_new(s, &e), 0);
    score_engine_begin(e);
    apply_ok(e, ob("o", "a", 0, "A", "x", "2015-06", 90));
    apply_ok(e, ob("o", "b", 0, "B", "x", "2015-06", 80));
    apply_ok(e, ob("o", "c", 0, "C", "x", "2015-06", 70));
    score_engine_commit(e);

    score_engine_begin(e);
    apply_ok(e, ob("o", "c", 1, "C", "x", "2015-06", 91));
    apply_ok(e, ob("o", "c", 2, "C", "x", "2015-06", 95));
    struct rec_totals rt = {0};
    struct seen cells = {{0}, {0}};
    score_engine_changes(e, NULL, rec_total, &rt);
    score_engine_changes(e, seen_cell, NULL, &cells);
    /* totals: C (95, rank 1), A (rank 2), B (rank 3) for June; the same three in Q2 and 2015 */
    assert_int_equal(rt.n, 9);
    size_t c_rank1 = 0, a_rank2 = 0, b_rank3 = 0;
    for (size_t i = 0; i < rt.n; i++) {
        c_rank1 += !strcmp(rt.units[i], "C") && rt.ranks[i] == 1;
        a_rank2 += !strcmp(rt.units[i], "A") && rt.ranks[i] == 2;
        b_rank3 += !strcmp(rt.units[i], "B") && rt.ranks[i] == 3;
    }
    assert_int_equal(c_rank1, 3);
    assert_int_equal(a_rank2, 3);
    assert_int_equal(b_rank3, 3);
    /* cells: C's x in June, Q2 and 2015 — once each, final values (the root is the total) */
    assert_int_equal(cells.cells.n, 3);
    for (size_t i = 0; i < cells.cells.n; i++)
        assert_near(cells.cells.v[i].b, 95);
    free(cells.cells.v);
    score_engine_commit(e);
    score_engine_destroy(&e);
    score_scheme_destroy(&s);
}

/* ---- group-relative and the other methods (T2) ----------------------------------------- */

static const char *T2 =
    "scheme: t2\n"
    "name: 方法\n"
    "year: 2015\n"
    "derive: [year]\n"
    "groups:\n"
    "  - {code: g1, name: 组一, units: [{code: A, name: 甲}, {code: B, name: 乙},\n"
    "                                  {code: C, name: 丙}, {code: D, name: 丁}]}\n"
    "  - {code: g2, name: 组二, units: [{code: E, name: 戊}, {code: F, name: 己}]}\n"
    "indicators:\n"
    "  - {code: rel, name: 相对功效, weight: 30, method: efficacy_rel, periods: [month],\n"
    "     rollup: latest}\n"
    "  - {code: rel_low, name: 相对功效低优, weight: 10, method: efficacy_rel,\n"
    "     lower_better: true, clamp: [60, 100], periods: [month]}\n"
    "  - {code: rk, name: 名次, weight: 20, method: rank, best: 100, step: 10, floor: 70,\n"
    "     periods: [month], rollup: sum}\n"
    "  - {code: comp, name: 完成率, weight: 20, method: completion, target: 50, cap: 1.2,\n"
    "     periods: [month]}\n"
    "  - {code: comp_rev, name: 反向完成率, weight: 10, method: completion, target: 5,\n"
    "     reverse: true, periods: [month]}\n"
    "  - code: bd\n"
    "    name: 分段\n"
    "    weight: 10\n"
    "    method: band\n"
    "    periods: [month]\n"
    "    bands:\n"
    "      - {lo: 90, points: 100}\n"
    "      - {lo: 75, hi: 90, points: 85}\n"
    "      - {hi: 75, points: 60}\n"
    "weight_overrides:\n"
    "  - unit: F\n"
    "    weights: {rel: 20, rk: 30}\n";

/*
 * T2, period 2015-05, group g1 (weights rel 30, rel_low 10, rk 20, comp 20, comp_rev 10,
 * bd 10; all present, so total = Σ w·s / 100):
 *   rel (efficacy_rel, good = group max 30, bad = group min 10):
 *       A 10 → 60, B 20 → (10/20)·40+60 = 80, C 15 → 70, D 30 → 100
 *   rel_low (lower better: good = min 2, bad = max 4, clamp [60,100]):
 *       A 2 → 100, B 4 → 60, C 3 → 80, D 2 → 100
 *   rk (best 100, step 10, floor 70): A 5, B 7, C 7, D 3 → ranks 3,1,1,4 → 80,100,100,70
 *   comp (target 50, cap 1.2): A 40 → 80, B 70 → 1.4 capped 1.2 → 120, C 50 → 100, D 25 → 50
 *   comp_rev (target 5, cap 1): A 4 → 100 (1.25 capped), B 10 → 50, C 5 → 100, D 0 → 100
 *   bd: A 95 → 100, B 80 → 85, C 75 → 85, D 74.9 → 60
 *   A: 1800 + 1000 + 1600 + 1600 + 1000 + 1000 = 8000 → 80
 *   B: 2400 +  600 + 2000 + 2400 +  500 +  850 = 8750 → 87.5
 *   C: 2100 +  800 + 2000 + 2000 + 1000 +  850 = 8750 → 87.5
 *   D: 3000 + 1000 + 1400 + 1000 + 1000 +  600 = 8000 → 80        ranks B 1, C 1, A 3, D 3
 * D's rel revised to 12: max 20, min 10 → A 60, B 100, C 80, D (2/10)·40+60 = 68:
 *   A 80 (unchanged), B 8750 + 30·20 = 9350 → 93.5, C 8750 + 30·10 = 9050 → 90.5,
 *   D 8000 − 30·32 = 7040 → 70.4                                  ranks B 1, C 2, A 3, D 4
 * Group g2, F with overridden weights rel 20, rk 30; only rel and rk present:
 *   rel E 5, F 5 → all equal → base + span = 100 each; rk E 1, F 2 → F 100, E 90
 *   E = (30·100 + 20·90)/50 = 96, F = (20·100 + 30·100)/50 = 100, coverage 0.5 each
 * The year (derive) before the revision: rel rolls up by latest (May), rk by sum; the other
 * leaves have no rollup: A = (30·60 + 20·80)/50 = 68, B = (30·80 + 20·100)/50 = 88.
 */
static void test_relative_methods(void **state)
{
    (void)state;
    struct score_scheme *s = load_text("t2.yaml", T2);
    struct score_engine *e = NULL;
    assert_int_equal(score_engine_new(s, &e), 0);
    static const struct {
        const char *u, *i;
        double v;
    } in[] = {
        {"A", "rel", 10},     {"B", "rel", 20},      {"C", "rel", 15},     {"D", "rel", 30},
        {"A", "rel_low", 2},  {"B", "rel_low", 4},   {"C", "rel_low", 3},  {"D", "rel_low", 2},
        {"A", "rk", 5},       {"B", "rk", 7},        {"C", "rk", 7},       {"D", "rk", 3},
        {"A", "comp", 40},    {"B", "comp", 70},     {"C", "comp", 50},    {"D", "comp", 25},
        {"A", "comp_rev", 4}, {"B", "comp_rev", 10}, {"C", "comp_rev", 5}, {"D", "comp_rev", 0},
        {"A", "bd", 95},      {"B", "bd", 80},       {"C", "bd", 75},      {"D", "bd", 74.9},
        {"E", "rel", 5},      {"F", "rel", 5},       {"E", "rk", 1},       {"F", "rk", 2},
    };
    for (size_t k = 0; k < sizeof in / sizeof in[0]; k++) {
        char ref[32];
        snprintf(ref, sizeof ref, "%s-%s", in[k].u, in[k].i);
        apply_ok(e, ob("s", ref, 0, in[k].u, in[k].i, "2015-05", in[k].v));
    }
    assert_near(cell(e, s, "B", "rel", "2015-05").score, 80);
    assert_near(cell(e, s, "C", "rel_low", "2015-05").score, 80);
    assert_near(cell(e, s, "A", "rk", "2015-05").score, 80);
    assert_near(cell(e, s, "D", "rk", "2015-05").score, 70);
    assert_near(cell(e, s, "B", "comp", "2015-05").score, 120);
    assert_near(cell(e, s, "D", "comp_rev", "2015-05").score, 100);
    assert_near(cell(e, s, "D", "bd", "2015-05").score, 60);
    assert_near(cell(e, s, "C", "bd", "2015-05").score, 85);
    struct score_total_change t = total(e, s, "A", "2015-05");
    assert_near(t.total, 80);
    assert_near(t.coverage, 1);
    assert_int_equal(t.rank, 3);
    assert_near(total(e, s, "B", "2015-05").total, 87.5);
    assert_int_equal(total(e, s, "B", "2015-05").rank, 1);
    assert_near(total(e, s, "C", "2015-05").total, 87.5);
    assert_int_equal(total(e, s, "C", "2015-05").rank, 1);
    assert_near(total(e, s, "D", "2015-05").total, 80);
    assert_int_equal(total(e, s, "D", "2015-05").rank, 3);
    assert_near(total(e, s, "E", "2015-05").total, 96);
    assert_near(total(e, s, "E", "2015-05").coverage, 0.5);
    assert_int_equal(total(e, s, "E", "2015-05").rank, 2);
    assert_near(total(e, s, "F", "2015-05").total, 100);
    assert_int_equal(total(e, s, "F", "2015-05").rank, 1);
    assert_near(total(e, s, "A", "2015").total, 68);
    assert_near(total(e, s, "B", "2015").total, 88);

    /* the revision of D re-scores the group; A's total and rank do not move and A is not
     * reported */
    score_engine_begin(e);
    apply_ok(e, ob("s", "D-rel", 1, "D", "rel", "2015-05", 12));
    struct rec_totals rt = {0};
    score_engine_changes(e, NULL, rec_total, &rt);
    score_engine_commit(e);
    assert_near(cell(e, s, "D", "rel", "2015-05").score, 68);
    assert_near(total(e, s, "A", "2015-05").total, 80);
    assert_near(total(e, s, "B", "2015-05").total, 93.5);
    assert_near(total(e, s, "C", "2015-05").total, 90.5);
    assert_near(total(e, s, "D", "2015-05").total, 70.4);
    assert_int_equal(total(e, s, "C", "2015-05").rank, 2);
    assert_int_equal(total(e, s, "D", "2015-05").rank, 4);
    size_t may = 0;
    for (size_t k = 0; k < rt.n; k++)
        assert_string_not_equal(rt.units[k], "A");
    (void)may;
    assert_int_equal(rt.n, 6); /* B, C, D in May and in the year */
    score_engine_destroy(&e);
    score_scheme_destroy(&s);
}

/* count and sum inputs:
 *   audit findings (count, band: 0 → 100, 1-2 → 80, ≥3 → 60) and overdue days (sum,
 *   completion reverse with target 10: min(10/x, 1)·100), weights 50/50.
 *   A in 2015-02: 3 findings → 60; overdue 4 + 16 = 20 days → 10/20 → 50 → total 55.
 *   One finding withdrawn by a revision (moved to B): A count 2 → 80 → total 65; B has
 *   count 1 → 80 alone → total 80. */
static void test_count_sum(void **state)
{
    (void)state;
    struct score_scheme *s = load_text(
        "t3.yaml",
        "scheme: t3\n"
        "name: 计数\n"
        "groups: [{code: g, name: G, units: [{code: A, name: A}, {code: B, name: B}]}]\n"
        "indicators:\n"
        "  - code: findings\n"
        "    name: 审计发现问题数\n"
        "    weight: 50\n"
        "    input: count\n"
        "    method: band\n"
        "    bands: [{hi: 1, points: 100}, {lo: 1, hi: 3, points: 80}, {lo: 3, points: 60}]\n"
        "  - {code: overdue, name: 超期天数, weight: 50, input: sum, method: completion,\n"
        "     target: 10, reverse: true, min: 0}\n");
    struct score_engine *e = NULL;
    assert_int_equal(score_engine_new(s, &e), 0);
    apply_ok(e, ob("audit", "f1", 0, "A", "findings", "2015-02", 1));
    apply_ok(e, ob("audit", "f2", 0, "A", "findings", "2015-02", 1));
    apply_ok(e, ob("audit", "f3", 0, "A", "findings", "2015-02", 1));
    apply_ok(e, ob("esup", "d1", 0, "A", "overdue", "2015-02", 4));
    apply_ok(e, ob("esup", "d2", 0, "A", "overdue", "2015-02", 16));
    assert_near(cell(e, s, "A", "findings", "2015-02").value, 3);
    assert_near(cell(e, s, "A", "overdue", "2015-02").value, 20);
    assert_near(total(e, s, "A", "2015-02").total, 55);
    apply_ok(e, ob("audit", "f2", 1, "B", "findings", "2015-02", 1));
    assert_near(total(e, s, "A", "2015-02").total, 65);
    assert_near(total(e, s, "B", "2015-02").total, 80);
    assert_int_equal(total(e, s, "B", "2015-02").rank, 1);
    assert_int_equal(total(e, s, "A", "2015-02").rank, 2);
    score_engine_destroy(&e);
    score_scheme_destroy(&s);
}

/* ---- exact sums, limits, refs, crowded cells (the incremental engine) ------------------- */

/*
 * Event sums are exact: ten events of val 0.1 (w 0.3) in one rate cell, nine of them then
 * moved away by revisions, leave exactly the cell of the one that stays — bit for bit the
 * same as a fresh engine fed only that event (an incremental float sum would keep a residue).
 * rate = 100 · 0.3·0.1 / 0.3 = 10. The moved events form their own cell in B: also 10.
 */
static void test_exact_event_sums(void **state)
{
    (void)state;
    struct score_scheme *s = load_text("t1.yaml", T1);
    struct score_engine *e = NULL, *f = NULL;
    assert_int_equal(score_engine_new(s, &e), 0);
    assert_int_equal(score_engine_new(s, &f), 0);
    char ref[16];
    for (int i = 0; i < 10; i++) {
        snprintf(ref, sizeof ref, "ev%d", i);
        struct score_obs o = ob("esup", ref, 0, "A", "r", "2015-03", 0.1);
        o.w = 0.3;
        apply_ok(e, o);
    }
    for (int i = 1; i < 10; i++) {
        snprintf(ref, sizeof ref, "ev%d", i);
        struct score_obs o = ob("esup", ref, 1, "B", "r", "2015-03", 0.1);
        o.w = 0.3;
        apply_ok(e, o);
    }
    struct score_obs o = ob("esup", "ev0", 0, "A", "r", "2015-03", 0.1);
    o.w = 0.3;
    apply_ok(f, o);
    struct score_cell_change a = cell(e, s, "A", "r", "2015-03"),
                             b = cell(f, s, "A", "r", "2015-03");
    assert_true(a.value == b.value && a.score == b.score);
    assert_near(a.value, 10);
    assert_int_equal(a.n_obs, 1);
    assert_near(cell(e, s, "B", "r", "2015-03").value, 10);
    assert_int_equal(cell(e, s, "B", "r", "2015-03").n_obs, 9);
    /* the quarter pools both months' events of A: still the one event */
    assert_true(cell(e, s, "A", "r", "2015-Q1").value == cell(f, s, "A", "r", "2015-Q1").value);
    assert_true(total(e, s, "A", "2015-03").total == total(f, s, "A", "2015-03").total);
    score_engine_destroy(&e);
    score_engine_destroy(&f);
    score_scheme_destroy(&s);
}

/* An event's val and w count in micro-units, within ±4e12 (SCHEMES.md "Inputs"); a value leaf
 * has no such limit beyond its own bounds. */
static void test_event_limits(void **state)
{
    (void)state;
    struct score_scheme *s =
        load_text("t3.yaml", "scheme: t3\n"
                             "name: 限值\n"
                             "groups: [{code: g, name: G, units: [{code: A, name: A}]}]\n"
                             "indicators:\n"
                             "  - {code: amt, name: 金额, weight: 50, input: sum, method: direct}\n"
                             "  - {code: v, name: 值, weight: 50, method: direct}\n");
    struct score_engine *e = NULL;
    assert_int_equal(score_engine_new(s, &e), 0);
    char msg[256];
    struct score_obs o = ob("s", "x", 0, "A", "amt", "2015-03", 4e12);
    assert_int_equal(score_engine_check(e, &o, msg, sizeof msg), KP_R_OK);
    o.value = 4.0001e12;
    assert_int_equal(score_engine_check(e, &o, msg, sizeof msg), KP_R_out_of_range);
    assert_non_null(strstr(msg, "amt"));
    o.value = -4.0001e12;
    assert_int_equal(score_engine_check(e, &o, msg, sizeof msg), KP_R_out_of_range);
    o.value = 1;
    o.w = 5e12;
    assert_int_equal(score_engine_check(e, &o, msg, sizeof msg), KP_R_out_of_range);
    o = ob("s", "y", 0, "A", "v", "2015-03", 5e12); /* a value leaf: no event limit */
    assert_int_equal(score_engine_check(e, &o, msg, sizeof msg), KP_R_OK);
    /* sums of large events stay exact: 3e12 + 1e12 − 3e12 (moved away) = 1e12 */
    apply_ok(e, ob("s", "a1", 0, "A", "amt", "2015-03", 3e12));
    apply_ok(e, ob("s", "a2", 0, "A", "amt", "2015-03", 1e12));
    apply_ok(e, ob("s", "a1", 1, "A", "amt", "2015-04", 3e12));
    assert_true(cell(e, s, "A", "amt", "2015-03").value == 1e12);
    score_engine_destroy(&e);
    score_scheme_destroy(&s);
}

/* Refs of every length: short ones live in the record, longer ones in the engine's arena, very
 * long ones on their own; revisions find them, rollback drops the ones its unit of work made. */
static void test_ref_lengths(void **state)
{
    (void)state;
    struct score_scheme *s = load_text("t1.yaml", T1);
    struct score_engine *e = NULL;
    assert_int_equal(score_engine_new(s, &e), 0);
    static char big[6000];
    memset(big, 'r', sizeof big - 1);
    const size_t lens[] = {1, 11, 12, 40, 4095, 4096, sizeof big - 1};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        char *ref = malloc(lens[i] + 1);
        assert_non_null(ref);
        memcpy(ref, big, lens[i]);
        ref[lens[i]] = '\0';
        apply_ok(e, ob("s", ref, 0, "A", "x", "2015-01", (double)i));
        apply_ok(e, ob("s", ref, 0, "A", "x", "2015-01", 99)); /* same rev: ignored */
        assert_int_equal(score_engine_n_records(e), i + 1);
        free(ref);
    }
    struct snap before = snapshot(e);
    score_engine_begin(e);
    for (int i = 0; i < 50; i++) {
        char ref[64];
        snprintf(ref, sizeof ref, "a-rather-long-reference-number-%d", i);
        apply_ok(e, ob("s", ref, 0, "B", "x", "2015-02", i));
    }
    char *ref = malloc(sizeof big);
    assert_non_null(ref);
    memcpy(ref, big, sizeof big);
    apply_ok(e, ob("s", ref, 1, "B", "x", "2015-02", 5)); /* a revision of the longest */
    score_engine_rollback(e);
    struct snap after = snapshot(e);
    assert_snap_equal(&before, &after);
    assert_int_equal(score_engine_n_records(e), sizeof lens / sizeof lens[0]);
    /* the engine still finds every ref after the rollback */
    apply_ok(e, ob("s", ref, 1, "C", "x", "2015-01", 42));
    assert_near(cell(e, s, "C", "x", "2015-01").value, 42);
    assert_int_equal(score_engine_n_records(e), sizeof lens / sizeof lens[0]);
    free(ref);
    free(before.v);
    free(after.v);
    score_engine_destroy(&e);
    score_scheme_destroy(&s);
}

/* A value cell with many records: the winner (greatest (at, src, ref)) keeps leaving; the
 * cell always shows the best of the rest, as a scan would find it. */
static void test_crowded_value_cell(void **state)
{
    (void)state;
    struct score_scheme *s = load_text("t1.yaml", T1);
    struct score_engine *e = NULL;
    assert_int_equal(score_engine_new(s, &e), 0);
    enum { N = 300 };
    static int64_t at[N];
    static bool here[N];
    rng_state = 5;
    for (int i = 0; i < N; i++) {
        char ref[16];
        snprintf(ref, sizeof ref, "c%03d", i);
        at[i] = (int64_t)rnd(50) * 1000; /* ties in at: then src, then ref decide */
        struct score_obs o = ob(i % 2 ? "s1" : "s2", ref, 0, "A", "x", "2015-05", i);
        o.at = at[i];
        apply_ok(e, o);
        here[i] = true;
    }
    for (int round = 0; round < N - 1; round++) {
        /* the expected winner: greatest (at, src, ref); src "s2" (even i) > "s1" */
        int best = -1;
        for (int i = 0; i < N; i++) {
            if (!here[i])
                continue;
            if (best < 0 || at[i] > at[best] ||
                (at[i] == at[best] &&
                 ((i % 2 ? 1 : 2) > (best % 2 ? 1 : 2) || ((i % 2) == (best % 2) && i > best))))
                best = i;
        }
        struct score_cell_change c = cell(e, s, "A", "x", "2015-05");
        assert_near(c.value, best);
        assert_int_equal(c.n_obs, N - round);
        /* move the winner away every other round, else a random other record */
        int victim = best;
        if (round % 2) {
            do
                victim = (int)rnd(N);
            while (!here[victim]);
        }
        char ref[16];
        snprintf(ref, sizeof ref, "c%03d", victim);
        apply_ok(e, ob(victim % 2 ? "s1" : "s2", ref, 1, "B", "x", "2015-05", victim));
        here[victim] = false;
    }
    score_engine_destroy(&e);
    score_scheme_destroy(&s);
}

/* Inside a unit of work the reads show the state as of begin until score_engine_changes();
 * changes() brings everything up to date and may be called again; a rollback after it and
 * after more applies still restores the state at begin exactly. */
static void test_unit_of_work_reads(void **state)
{
    (void)state;
    struct score_scheme *s = load_text("t1.yaml", T1);
    struct score_engine *e = NULL;
    assert_int_equal(score_engine_new(s, &e), 0);
    apply_ok(e, ob("o", "a", 0, "A", "x", "2015-06", 70));
    struct snap before = snapshot(e);
    score_engine_begin(e);
    apply_ok(e, ob("o", "a", 1, "A", "x", "2015-06", 90));
    assert_near(total(e, s, "A", "2015-06").total, 70); /* as of begin */
    struct seen got = {{0}, {0}};
    score_engine_changes(e, seen_cell, seen_total, &got);
    assert_near(total(e, s, "A", "2015-06").total, 90);
    assert_int_equal(got.cells.n, 3); /* June, Q2, 2015 */
    assert_int_equal(got.totals.n, 3);
    apply_ok(e, ob("o", "b", 0, "B", "x", "2015-06", 95));
    apply_ok(e, ob("o", "c", 0, "A", "y", "2015-05", 9));
    struct seen again = {{0}, {0}};
    score_engine_changes(e, seen_cell, seen_total, &again);
    assert_int_equal(total(e, s, "B", "2015-06").rank, 1);
    assert_int_equal(total(e, s, "A", "2015-06").rank, 2);
    score_engine_rollback(e);
    struct snap after = snapshot(e);
    assert_snap_equal(&before, &after);
    free(got.cells.v);
    free(got.totals.v);
    free(again.cells.v);
    free(again.totals.v);
    free(before.v);
    free(after.v);
    score_engine_destroy(&e);
    score_scheme_destroy(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_efficacy_worked_check),
        cmocka_unit_test(test_anshan_table),
        cmocka_unit_test(test_check_reasons),
        cmocka_unit_test(test_revisions),
        cmocka_unit_test(test_memory_accounting),
        cmocka_unit_test(test_events_adjustments_veto),
        cmocka_unit_test(test_permutations),
        cmocka_unit_test(test_rollback),
        cmocka_unit_test(test_evicted_events),
        cmocka_unit_test(test_evicted_values),
        cmocka_unit_test(test_changes_exact),
        cmocka_unit_test(test_changes_ranks),
        cmocka_unit_test(test_relative_methods),
        cmocka_unit_test(test_count_sum),
        cmocka_unit_test(test_exact_event_sums),
        cmocka_unit_test(test_event_limits),
        cmocka_unit_test(test_ref_lengths),
        cmocka_unit_test(test_crowded_value_cell),
        cmocka_unit_test(test_unit_of_work_reads),
        cmocka_unit_test(test_apply_batch),
        cmocka_unit_test(test_event_rounding),
        cmocka_unit_test(test_evicted_events_arena),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
