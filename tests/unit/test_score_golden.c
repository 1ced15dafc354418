/*
 * test_score_golden: golden tables for the four other seed schemes (schemas/schemes/
 * suzhou-2015, shenzhen-2010, haidian, hangzhou-2011), each with the hand arithmetic in the
 * comments: the points-based tree with `total` (Suzhou), nested 70/30 with per-group trees,
 * event rates and relative efficacy (Shenzhen), completion, bands, rates and the veto
 * (Haidian), differential weights, relative efficacy, event averages and a capped bonus
 * (Hangzhou). The Anshan table is in test_score_engine.c.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kp_err.h"
#include "score_engine.h"

#define EPS 1e-9

struct fx {
    struct score_scheme *s;
    struct score_engine *e;
    unsigned seq;
};

static void fx_open(struct fx *f, const char *id)
{
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/schemas/schemes/%s.yaml", KP_SOURCE_DIR, id);
    memset(f, 0, sizeof *f);
    int rc = score_scheme_load(path, &f->s, err, sizeof err);
    if (rc)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(score_engine_new(f->s, &f->e), 0);
}

static void fx_close(struct fx *f)
{
    score_engine_destroy(&f->e);
    score_scheme_destroy(&f->s);
}

/* Applies one observation with a fresh ref and weight w. */
static void put_w(struct fx *f, const char *src, const char *unit, const char *ind,
                  const char *period, double value, double w)
{
    char ref[32], msg[256];
    snprintf(ref, sizeof ref, "ref-%u", f->seq++);
    struct score_obs o = {.src = src, .ref = ref, .rev = 0, .unit = unit, .indicator = ind,
                          .period = period, .value = value, .w = w, .at = 0};
    enum kp_reason r = score_engine_check(f->e, &o, msg, sizeof msg);
    if (r != KP_R_OK)
        fprintf(stderr, "%s %s %s: %s\n", unit, ind, period, msg);
    assert_int_equal(r, KP_R_OK);
    assert_int_equal(score_engine_apply(f->e, &o), KP_R_OK);
}

static void put(struct fx *f, const char *src, const char *unit, const char *ind,
                const char *period, double value)
{
    put_w(f, src, unit, ind, period, value, 1);
}

static struct score_total_change tot(struct fx *f, const char *unit, const char *period)
{
    struct score_total_change t;
    long u = score_scheme_unit_find(f->s, unit);
    assert_true(u >= 0);
    int rc = score_engine_total(f->e, (size_t)u, period, &t);
    if (rc)
        fprintf(stderr, "no total %s %s\n", unit, period);
    assert_int_equal(rc, 0);
    return t;
}

static double score_of(struct fx *f, const char *unit, const char *ind, const char *period)
{
    struct score_cell_change c;
    long u = score_scheme_unit_find(f->s, unit), n = score_scheme_node_find(f->s, ind);
    assert_true(u >= 0 && n >= 0);
    assert_int_equal(score_engine_cell(f->e, (size_t)u, (size_t)n, period, &c), 0);
    return c.score;
}

static void near(double got, double want)
{
    if (!(fabs(got - want) < EPS)) {
        fprintf(stderr, "got %.15g want %.15g\n", got, want);
        fail();
    }
}

static void expect(struct fx *f, const char *unit, const char *period, double total, double cov,
                   uint32_t rank, const char *grade)
{
    struct score_total_change t = tot(f, unit, period);
    near(t.total, total);
    near(t.coverage, cov);
    assert_int_equal(t.rank, rank);
    assert_string_equal(t.grade, grade);
}

/*
 * Suzhou 2015 (points: every weight is the seed's points, inner nodes declare total = their
 * points, so with every leaf present total = Σ points × score / 100), year 2015:
 *   SZ-FGW: key_work Q1 90, Q2 80 → avg 85 (24 points) → 2040
 *           regular 90·12 = 1080, other 100·4 = 400, lawful 80·6 = 480, efficient 70·6 = 420
 *           integrity 100·6 = 600, organisation 90·6 = 540, work_style 80·6 = 480
 *           reform_innovation 60·10 = 600
 *           public 80·8 = 640, client 90·6 = 540, leader 95·6 = 570
 *           Σ = 8390 → 83.9; bonus: hanshan 4 + special_add 8 = 12 → cap 10; deduct 2
 *           → 83.9 + 10 − 2 = 91.9 (优), coverage 1
 *   SZ-BB:  satisfaction only: (8·70 + 6·80 + 6·90)/20 = 1580/20 = 79, coverage 0.2;
 *           special_deduct ×12 → cap 10 → 69 (中)
 *   Q1 of SZ-FGW: key_work 90 alone → 90, coverage 0.24 (adjustments derive into the year
 *   only: derive [year]).
 */
static void test_suzhou(void **state)
{
    (void)state;
    struct fx f;
    fx_open(&f, "suzhou-2015");
    put(&f, "office", "SZ-FGW", "key_work", "2015-Q1", 90);
    put(&f, "office", "SZ-FGW", "key_work", "2015-Q2", 80);
    put(&f, "office", "SZ-FGW", "regular_work", "2015", 90);
    put(&f, "office", "SZ-FGW", "other_work", "2015", 100);
    put(&f, "legal", "SZ-FGW", "lawful", "2015", 80);
    put(&f, "finance", "SZ-FGW", "efficient", "2015", 70);
    put(&f, "discipline", "SZ-FGW", "integrity", "2015", 100);
    put(&f, "org", "SZ-FGW", "organisation", "2015", 90);
    put(&f, "org", "SZ-FGW", "work_style", "2015", 80);
    put(&f, "office", "SZ-FGW", "reform_innovation", "2015", 60);
    put(&f, "survey", "SZ-FGW", "public_satisfaction", "2015", 80);
    put(&f, "survey", "SZ-FGW", "client_satisfaction", "2015", 90);
    put(&f, "survey", "SZ-FGW", "leader_satisfaction", "2015", 95);
    near(tot(&f, "SZ-FGW", "2015").total, 83.9);
    for (int i = 0; i < 4; i++)
        put(&f, "office", "SZ-FGW", "hanshan_forum", "2015-03", 1);
    for (int i = 0; i < 8; i++)
        put(&f, "office", "SZ-FGW", "special_add", "2015-05", 1);
    put(&f, "office", "SZ-FGW", "special_deduct", "2015-06", 1);
    put(&f, "office", "SZ-FGW", "special_deduct", "2015-07", 1);
    put(&f, "survey", "SZ-BB", "public_satisfaction", "2015", 70);
    put(&f, "survey", "SZ-BB", "client_satisfaction", "2015", 80);
    put(&f, "survey", "SZ-BB", "leader_satisfaction", "2015", 90);
    near(tot(&f, "SZ-BB", "2015").total, 79);
    for (int i = 0; i < 12; i++)
        put(&f, "office", "SZ-BB", "special_deduct", "2015-08", 1);
    expect(&f, "SZ-FGW", "2015", 91.9, 1, 1, "优");
    expect(&f, "SZ-BB", "2015", 69, 0.2, 2, "中");
    expect(&f, "SZ-FGW", "2015-Q1", 90, 0.24, 1, "优");
    near(score_of(&f, "SZ-FGW", "key_work", "2015"), 85);
    fx_close(&f);
}

/*
 * Shenzhen 2010. Effective weights (share of 100): internal 70 = e_system 65 + leader 5;
 * external 30 = survey 25 + e_poll 5. Districts inside e_system: econ_regulation 10
 * {gdp_growth} → 6.5; public_service 45 {education 35, health 35, livelihood 30} → 10.2375,
 * 10.2375, 8.775; social_mgmt 25 → 16.25; market_supervision 20 → 13.
 *   SZ-FT, year 2010: gdp 2010-06 10, 2010-12 11 → latest 11 → (11−6)/6·40+60 = 93.333…
 *     education Q1-Q4 90 90 95 95 → 92.5; health Q4 88; livelihood 40 vs SZ-LH 30
 *     (efficacy_rel: max 40 → 100, min 30 → 60); public_safety 80; market_order 85;
 *     leader 90; survey 75; e_poll 80:
 *     606.666… + 946.96875 + 900.9 + 877.5 + 1300 + 1105 + 450 + 1875 + 400 = 8462.0354…
 *     → 84.620354166…, coverage 1, 良
 *   SZ-LH: livelihood 60, survey 70: (8.775·60 + 25·70)/(8.775 + 25) = 2276.5/33.775
 *     = 67.4019245…, coverage 0.33775, 中
 * Departments: approval_on_time 65·20%·60% = 7.8, per_capita 65·10% = 6.5,
 * a_project 65·25%·60% = 9.75.
 *   SZ-YJJ: approval events in 2010-03: 1 1 1 0 → rate 75; per_capita 2.0 (lowest of 2.0,
 *     3.0, 2.5 → 100; lower is better); a_project 2010-12 95 → 95/100 → 95:
 *     (7.8·75 + 6.5·100 + 9.75·95)/24.05 = 2161.25/24.05 = 89.8648…, 良, rank 1
 *   SZ-WSJ: per_capita 2.5 → (2.5−3)/(2−3)·40+60 = 80; SZ-GSJ: 3.0 → 60
 *   March for SZ-YJJ: the rate alone → 75, coverage 0.078.
 */
static void test_shenzhen(void **state)
{
    (void)state;
    struct fx f;
    fx_open(&f, "shenzhen-2010");
    put(&f, "stats", "SZ-FT", "gdp_growth", "2010-06", 10);
    put(&f, "stats", "SZ-FT", "gdp_growth", "2010-12", 11);
    put(&f, "office", "SZ-FT", "education", "2010-Q1", 90);
    put(&f, "office", "SZ-FT", "education", "2010-Q2", 90);
    put(&f, "office", "SZ-FT", "education", "2010-Q3", 95);
    put(&f, "office", "SZ-FT", "education", "2010-Q4", 95);
    put(&f, "office", "SZ-FT", "health", "2010-Q4", 88);
    put(&f, "finance", "SZ-FT", "livelihood_spend", "2010", 40);
    put(&f, "finance", "SZ-LH", "livelihood_spend", "2010", 30);
    put(&f, "office", "SZ-FT", "public_safety", "2010-Q2", 80);
    put(&f, "office", "SZ-FT", "market_order", "2010-Q3", 85);
    put(&f, "office", "SZ-FT", "leader_eval", "2010", 90);
    put(&f, "survey", "SZ-FT", "public_survey", "2010", 75);
    put(&f, "epoll", "SZ-FT", "e_poll", "2010", 80);
    put(&f, "survey", "SZ-LH", "public_survey", "2010", 70);
    near(score_of(&f, "SZ-FT", "gdp_growth", "2010"), (11.0 - 6) / 6 * 40 + 60);
    expect(&f, "SZ-FT", "2010", 8462.035416666667 / 100, 1, 1, "良");
    expect(&f, "SZ-LH", "2010", 2276.5 / 33.775, 0.33775, 2, "中");

    put(&f, "esup", "SZ-YJJ", "approval_on_time", "2010-03", 1);
    put(&f, "esup", "SZ-YJJ", "approval_on_time", "2010-03", 1);
    put(&f, "esup", "SZ-YJJ", "approval_on_time", "2010-03", 1);
    put(&f, "esup", "SZ-YJJ", "approval_on_time", "2010-03", 0);
    put(&f, "finance", "SZ-YJJ", "per_capita_public_expense", "2010", 2.0);
    put(&f, "finance", "SZ-GSJ", "per_capita_public_expense", "2010", 3.0);
    put(&f, "finance", "SZ-WSJ", "per_capita_public_expense", "2010", 2.5);
    put(&f, "finance", "SZ-YJJ", "a_project_completion", "2010-12", 95);
    expect(&f, "SZ-YJJ", "2010", 2161.25 / 24.05, 0.2405, 1, "良");
    expect(&f, "SZ-WSJ", "2010", 80, 0.065, 2, "良");
    expect(&f, "SZ-GSJ", "2010", 60, 0.065, 3, "中");
    expect(&f, "SZ-YJJ", "2010-03", 75, 0.078, 1, "中");
    /* self-reported duty data only through the verified source */
    struct score_obs o = {.src = "SZ-YJJ", .ref = "self", .unit = "SZ-YJJ",
                          .indicator = "duty_fulfilment", .period = "2010-Q1", .value = 99,
                          .w = 1};
    assert_int_equal(score_engine_check(f.e, &o, NULL, 0), KP_R_not_granted_indicator);
    fx_close(&f);
}

/*
 * Haidian, year 2014. Effective weights: key_work 40·40% = 16, deputies_proposals 40·15% = 6,
 * budget_performance 25·25% = 6.25, public 25·70% = 17.5, client 25·30% = 7.5.
 *   HD-ZFB: key_work 2014-11 80 → completion 80; 2014-12 104 → capped at 1 → 100 (the year
 *     takes the latest month: 100); public 85; client 90; budget 92 → band [90,95) → 90:
 *     (16·100 + 17.5·85 + 7.5·90 + 6.25·90)/47.25 = 4325/47.25 = 91.5343915…, cov 0.4725
 *   HD-CZJ: public 80 → 80, coverage 0.175.            ranks ZFB 1, CZJ 2
 *   HD-QWB (party group): proposals in 2014-03: 1 1 0 → rate 66.666…; the year pools the
 *     events: 66.666…, coverage 0.06.
 *   A veto event for HD-ZFB in 2014-07: the month, Q3, H2 and the year are vetoed: grade
 *     差, total unchanged, ranks CZJ 1, ZFB 2.
 */
static void test_haidian(void **state)
{
    (void)state;
    struct fx f;
    fx_open(&f, "haidian");
    put(&f, "supervision", "HD-ZFB", "key_work", "2014-11", 80);
    near(score_of(&f, "HD-ZFB", "key_work", "2014-11"), 80);
    put(&f, "supervision", "HD-ZFB", "key_work", "2014-12", 104);
    near(score_of(&f, "HD-ZFB", "key_work", "2014-12"), 100);
    put(&f, "survey", "HD-ZFB", "public_satisfaction", "2014", 85);
    put(&f, "survey", "HD-ZFB", "client_satisfaction", "2014", 90);
    put(&f, "finance", "HD-ZFB", "budget_performance", "2014", 92);
    put(&f, "survey", "HD-CZJ", "public_satisfaction", "2014", 80);
    put(&f, "office", "HD-QWB", "deputies_proposals", "2014-03", 1);
    put(&f, "office", "HD-QWB", "deputies_proposals", "2014-03", 1);
    put(&f, "office", "HD-QWB", "deputies_proposals", "2014-03", 0);
    expect(&f, "HD-ZFB", "2014", 4325 / 47.25, 0.4725, 1, "优");
    expect(&f, "HD-CZJ", "2014", 80, 0.175, 2, "良");
    expect(&f, "HD-QWB", "2014", 200.0 / 3, 0.06, 1, "中");
    expect(&f, "HD-QWB", "2014-03", 200.0 / 3, 0.06, 1, "中");

    put(&f, "discipline", "HD-ZFB", "veto", "2014-07", 1);
    struct score_total_change t = tot(&f, "HD-ZFB", "2014");
    assert_true(t.vetoed);
    near(t.total, 4325 / 47.25);
    assert_string_equal(t.grade, "差");
    assert_int_equal(t.rank, 2);
    assert_int_equal(tot(&f, "HD-CZJ", "2014").rank, 1);
    assert_true(tot(&f, "HD-ZFB", "2014-Q3").vetoed);
    assert_true(tot(&f, "HD-ZFB", "2014-H2").vetoed);
    assert_true(tot(&f, "HD-ZFB", "2014-07").vetoed);
    assert_false(tot(&f, "HD-ZFB", "2014-Q4").vetoed);
    fx_close(&f);
}

/*
 * Hangzhou 2011. Effective weights: goals 45 {gdp 25, fiscal 20, rd 15, income 15,
 * energy 10, key_projects 15} → 11.25, 9, 6.75, 6.75, 4.5, 6.75; social 50 {public 70,
 * service_index 30} → 35, 15; leader 5. HZ-CA overrides gdp 10, energy 25 → 4.5, 11.25.
 *   County group, year 2011, identical data: gdp 2011-12 10 → (10−8)/(12−8)·40+60 = 80;
 *   energy 2011-Q4 −3.5 → (−3.5+2)/(−4+2)·40+60 = 90 (lower is better):
 *     HZ-XS: (11.25·80 + 4.5·90)/15.75 = 1305/15.75 = 82.857…
 *     HZ-CA: (4.5·80 + 11.25·90)/15.75 = 1372.5/15.75 = 87.142… → CA 1, XS 2
 *   Urban group, 2011-06: fiscal (efficacy_rel) SC 15, XC 10, JG 5 → 100, 80, 60;
 *   service_index events for SC: 90 (w 1), 80 (w 3) → (90 + 240)/4 = 82.5:
 *     SC June = (9·100 + 15·82.5)/24 = 2137.5/24 = 89.0625
 *   Innovation bonus: 4 projects for SC in 2011 → capped at 3: SC year = 89.0625 + 3.
 */
static void test_hangzhou(void **state)
{
    (void)state;
    struct fx f;
    fx_open(&f, "hangzhou-2011");
    put(&f, "stats", "HZ-XS", "gdp_growth", "2011-12", 10);
    put(&f, "stats", "HZ-CA", "gdp_growth", "2011-12", 10);
    put(&f, "stats", "HZ-XS", "energy_per_gdp", "2011-Q4", -3.5);
    put(&f, "stats", "HZ-CA", "energy_per_gdp", "2011-Q4", -3.5);
    near(score_of(&f, "HZ-CA", "energy_per_gdp", "2011"), 90);
    expect(&f, "HZ-XS", "2011", 1305 / 15.75, 0.1575, 2, "良");
    expect(&f, "HZ-CA", "2011", 1372.5 / 15.75, 0.1575, 1, "良");

    put(&f, "finance", "HZ-SC", "fiscal_revenue_growth", "2011-06", 15);
    put(&f, "finance", "HZ-XC", "fiscal_revenue_growth", "2011-06", 10);
    put(&f, "finance", "HZ-JG", "fiscal_revenue_growth", "2011-06", 5);
    put_w(&f, "window", "HZ-SC", "service_index", "2011-06", 90, 1);
    put_w(&f, "window", "HZ-SC", "service_index", "2011-06", 80, 3);
    expect(&f, "HZ-SC", "2011-06", 89.0625, 0.24, 1, "良");
    expect(&f, "HZ-XC", "2011-06", 80, 0.09, 2, "良");
    expect(&f, "HZ-JG", "2011-06", 60, 0.09, 3, "中");
    for (int i = 0; i < 4; i++)
        put(&f, "office", "HZ-SC", "innovation", "2011-09", 1);
    expect(&f, "HZ-SC", "2011", 92.0625, 0.24, 1, "优");
    expect(&f, "HZ-SC", "2011-06", 89.0625, 0.24, 1, "良");
    near(score_of(&f, "HZ-SC", "innovation", "2011"), 4); /* the kind itself; cap on the side */
    fx_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_suzhou),
        cmocka_unit_test(test_shenzhen),
        cmocka_unit_test(test_haidian),
        cmocka_unit_test(test_hangzhou),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
