/*
 * test_score_engine: the scoring engine against hand arithmetic and against its guarantees —
 * the DOMAIN.md efficacy worked check, a hand-computed Anshan 2015 table (totals, coverage,
 * competition ranks with a tie, grades, derived quarter/year cells, adjustments), revision
 * semantics (ARCHITECTURE.md guarantee 2), order independence over random permutations with
 * duplicates and revisions (guarantee 3), exact rollback, and the change report.
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
#include "score_engine.h"

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
    int rc = score_scheme_load(KP_SOURCE_DIR "/schemas/schemes/anshan-2015.yaml", &s, err,
                               sizeof err);
    if (rc)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    return s;
}

static struct score_obs ob(const char *src, const char *ref, uint64_t rev, const char *unit,
                           const char *ind, const char *period, double value)
{
    struct score_obs o = {.src = src, .ref = ref, .rev = rev, .unit = unit, .indicator = ind,
                          .period = period, .value = value, .w = 1, .at = 0};
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
    return score_engine_cell(e, (size_t)U(s, unit), (size_t)N(s, node), period, &c) ==
           KP_ENOENT;
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
 *   total = (55·cov_result·result + 30·process + 10·leader + 5·public) / (present weight)
 * with global renormalisation, so a present leaf weighs its full-tree weight:
 *   gdp_growth: result 55 × econ 40% × 30% = 6.6;  politics: 55 × 10% = 5.5;  process: 30.
 *
 * Group 2 (districts), each with gdp_growth, politics and process:
 *   total = (6.6·s_gdp + 5.5·s_pol + 30·s_proc) / 42.1, coverage 0.421
 *   AS-TD: gdp 12 → 100, pol 90, proc 95:  (660 + 495 + 2850)/42.1 = 4005/42.1 = 95.1306…  优 1
 *   AS-TX: gdp 9 → 80,   pol 80, proc 90:  (528 + 440 + 2700)/42.1 = 3668/42.1 = 87.1258…  良 2
 *   AS-LS: gdp 10.5 → 90, pol 68, proc 90: (594 + 374 + 2700)/42.1 = 3668/42.1 = 87.1258…  良 2
 *          (a tie reached through different inputs: compared after rounding to 1e-9)
 *   AS-QS: gdp 6 → 60,   pol 60, proc 70:  (396 + 330 + 2100)/42.1 = 2826/42.1 = 67.1258…  中 4
 *
 * Group 1 (counties), different leaves present:
 *   AS-HC: gdp 5.81 → 58.7333…, process 50:
 *          (6.6·58.7333… + 30·50)/(6.6 + 30) = (387.64 + 1500)/36.6 = 51.5748…, cov 0.366   差 3
 *   AS-TA: energy_per_gdp −2 (good −4, bad 0: lower is better) → (−2−0)/(−4−0)·40+60 = 80;
 *          alone → total 80, cov = 55% × 15% × 60% = 0.0495                              良 2
 *   AS-XY: fiscal_revenue_growth 15 (good 10, bad 0) → 120, clamped [0,100] → 100;
 *          + commendation 1 − interview 5 → 96, cov = 55% × 40% × 25% = 0.055              优 1
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
    apply_ok(e, ob("office", "pol-LS-03", 0, "AS-LS", "politics", "2015-03", 68));
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

    expect_total(e, s, "AS-TD", "2015-03", 4005 / 42.1, 0.421, 1, "优");
    expect_total(e, s, "AS-TX", "2015-03", 3668 / 42.1, 0.421, 2, "良");
    expect_total(e, s, "AS-LS", "2015-03", 3668 / 42.1, 0.421, 2, "良");
    expect_total(e, s, "AS-QS", "2015-03", 2826 / 42.1, 0.421, 4, "中");
    assert_near(4005 / 42.1, 95.130641330166271);
    assert_near(3668 / 42.1, 87.125890736342043);

    expect_total(e, s, "AS-XY", "2015-03", 96, 0.055, 1, "优");
    expect_total(e, s, "AS-TA", "2015-03", 80, 0.0495, 2, "良");
    expect_total(e, s, "AS-HC", "2015-03", 1887.64 / 36.6, 0.366, 3, "差");
    assert_near(1887.64 / 36.6, 51.574863387978142);

    /* inner cells: AS-TX result = (12·80 + 10·80)/22 = 80, coverage behind it 0.22 */
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
    assert_near(c.score, 4005 / 42.1);

    /* derived periods: Q1, H1 and the year equal March while March is the only month */
    expect_total(e, s, "AS-TD", "2015-Q1", 4005 / 42.1, 0.421, 1, "优");
    expect_total(e, s, "AS-TD", "2015", 4005 / 42.1, 0.421, 1, "优");
    expect_total(e, s, "AS-XY", "2015-H1", 96, 0.055, 1, "优");

    /* January politics 70 for AS-TD: the Q1 politics cell is avg(70, 90) = 80, gdp the latest
     * month (March, 12 → 100), process avg of March only (95):
     *   Q1 = (660 + 5.5·80 + 2850)/42.1 = 3950/42.1 = 93.8242…; January alone: politics 70,
     *   total 70, coverage 5.5/100 = 0.055. */
    apply_ok(e, ob("office", "pol-TD-01", 0, "AS-TD", "politics", "2015-01", 70));
    expect_total(e, s, "AS-TD", "2015-01", 70, 0.055, 1, "中");
    expect_total(e, s, "AS-TD", "2015-Q1", 3950 / 42.1, 0.421, 1, "优");
    c = cell(e, s, "AS-TD", "politics", "2015-Q1");
    assert_near(c.value, 80);
    assert_int_equal(c.n_obs, 2);
    /* the March table is untouched */
    expect_total(e, s, "AS-TD", "2015-03", 4005 / 42.1, 0.421, 1, "优");

    /* the year with leader 90 and public 80:
     *   (3950 + 10·90 + 5·80)/(42.1 + 10 + 5) = 5250/57.1 = 91.9439…, coverage 0.571 */
    apply_ok(e, ob("office", "lead-TD", 0, "AS-TD", "leader", "2015", 90));
    apply_ok(e, ob("survey", "pub-TD", 0, "AS-TD", "public", "2015", 80));
    expect_total(e, s, "AS-TD", "2015", 5250 / 57.1, 0.571, 1, "优");
    assert_near(5250 / 57.1, 91.943957968476357);

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
    "    units: [{code: A, name: 甲}, {code: B, name: 乙}, {code: C, name: 丙}, {code: D, name: 丁}]\n"
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
            fprintf(stderr, "differs: %s %.17g %.17g vs %s %.17g %.17g\n", x->v[i].key,
                    x->v[i].a, x->v[i].b, y->v[i].key, y->v[i].a, y->v[i].b);
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

static void gen_one(struct gen_obs *g, unsigned ref, unsigned rev)
{
    static const char *const units[] = {"A", "B", "C", "D", "E", "F"};
    static const char *const inds[] = {"x", "y", "r", "r", "crit", "praise", "veto", "x"};
    static const char *const inds2[] = {"rel", "rel_low", "rk", "comp", "comp_rev", "bd", "rel",
                                        "rk"};
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
        {"A", "rel", 10},     {"B", "rel", 20},     {"C", "rel", 15},     {"D", "rel", 30},
        {"A", "rel_low", 2},  {"B", "rel_low", 4},  {"C", "rel_low", 3},  {"D", "rel_low", 2},
        {"A", "rk", 5},       {"B", "rk", 7},       {"C", "rk", 7},       {"D", "rk", 3},
        {"A", "comp", 40},    {"B", "comp", 70},    {"C", "comp", 50},    {"D", "comp", 25},
        {"A", "comp_rev", 4}, {"B", "comp_rev", 10}, {"C", "comp_rev", 5}, {"D", "comp_rev", 0},
        {"A", "bd", 95},      {"B", "bd", 80},      {"C", "bd", 75},      {"D", "bd", 74.9},
        {"E", "rel", 5},      {"F", "rel", 5},      {"E", "rk", 1},       {"F", "rk", 2},
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
        "t3.yaml", "scheme: t3\n"
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_efficacy_worked_check),
        cmocka_unit_test(test_anshan_table),
        cmocka_unit_test(test_check_reasons),
        cmocka_unit_test(test_revisions),
        cmocka_unit_test(test_events_adjustments_veto),
        cmocka_unit_test(test_permutations),
        cmocka_unit_test(test_rollback),
        cmocka_unit_test(test_changes_exact),
        cmocka_unit_test(test_changes_ranks),
        cmocka_unit_test(test_relative_methods),
        cmocka_unit_test(test_count_sum),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
