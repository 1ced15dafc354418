/*
 * test_score_scheme: the scheme loader (schemas/SCHEMES.md). Every shipped scheme under
 * schemas/schemes/ loads; the Anshan 2015 file has the seed's 70 units in 3/4/3/60; and each
 * refusal names the file and the line of the offending YAML node (`file:line: reason`).
 */
#include <dirent.h>
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

static char tmpdir[64];

static int setup_tmp(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/kp_score_scheme_XXXXXX");
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

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Loads `yaml` from a file named `name` and expects the error "<path>:<line>: <reason>…". */
static void expect_err(const char *name, const char *yaml, int line, const char *reason)
{
    char path[256], err[512], want[768];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    write_file(path, yaml);
    struct score_scheme *s = NULL;
    int rc = score_scheme_load(path, &s, err, sizeof err);
    assert_int_equal(rc, KP_ESCHEME);
    assert_null(s);
    snprintf(want, sizeof want, "%s:%d: %s", path, line, reason);
    if (strncmp(err, want, strlen(want)) != 0) {
        fprintf(stderr, "got:  %s\nwant: %s\n", err, want);
        fail();
    }
}

static struct score_scheme *load_ok(const char *name, const char *yaml)
{
    char path[256], err[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    write_file(path, yaml);
    struct score_scheme *s = NULL;
    int rc = score_scheme_load(path, &s, err, sizeof err);
    if (rc)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    return s;
}

/* A valid base (line numbers in the comments matter to the tests below). */
#define HEAD                                                                                       \
    "scheme: t\n"          /* 1 */                                                                 \
    "name: 测试\n"         /* 2 */                                                                 \
    "groups:\n"            /* 3 */                                                                 \
    "  - code: g1\n"       /* 4 */                                                                 \
    "    name: 一组\n"     /* 5 */                                                                 \
    "    units:\n"         /* 6 */                                                                 \
    "      - code: A\n"    /* 7 */                                                                 \
    "        name: 甲\n"   /* 8 */                                                                 \
    "      - code: B\n"    /* 9 */                                                                 \
    "        name: 乙\n"   /* 10 */                                                                \
    "  - code: g2\n"       /* 11 */                                                                \
    "    name: 二组\n"     /* 12 */                                                                \
    "    units:\n"         /* 13 */                                                                \
    "      - code: C\n"    /* 14 */                                                                \
    "        name: 丙\n"   /* 15 */

#define IND_OK                                                                                     \
    "indicators:\n"          /* 16 */                                                              \
    "  - code: p\n"          /* 17 */                                                              \
    "    name: P\n"          /* 18 */                                                              \
    "    weight: 60\n"       /* 19 */                                                              \
    "    children:\n"        /* 20 */                                                              \
    "      - code: a\n"      /* 21 */                                                              \
    "        name: a\n"      /* 22 */                                                              \
    "        weight: 70\n"   /* 23 */                                                              \
    "        method: direct\n" /* 24 */                                                            \
    "      - code: b\n"      /* 25 */                                                              \
    "        name: b\n"      /* 26 */                                                              \
    "        weight: 30\n"   /* 27 */                                                              \
    "        method: efficacy\n" /* 28 */                                                          \
    "        good: 12\n"     /* 29 */                                                              \
    "        bad: 6\n"       /* 30 */                                                              \
    "  - code: q\n"          /* 31 */                                                              \
    "    name: Q\n"          /* 32 */                                                              \
    "    weight: 40\n"       /* 33 */                                                              \
    "    method: direct\n"   /* 34 */

static void test_base_ok(void **state)
{
    (void)state;
    struct score_scheme *s = load_ok("ok.yaml", HEAD IND_OK);
    assert_string_equal(score_scheme_id(s), "t");
    assert_int_equal(score_scheme_n_units(s), 3);
    assert_int_equal(score_scheme_n_nodes(s), 5); /* total p a b q */
    assert_int_equal(score_scheme_node_find(s, "total"), 0);
    assert_int_equal(score_scheme_node_parent(s, (size_t)score_scheme_node_find(s, "b")),
                     score_scheme_node_find(s, "p"));
    assert_false(score_scheme_node_is_leaf(s, 0));
    assert_true(score_scheme_node_is_leaf(s, (size_t)score_scheme_node_find(s, "a")));
    assert_string_equal(score_scheme_node_method(s, (size_t)score_scheme_node_find(s, "q")),
                        "direct clamp=none");
    score_scheme_destroy(&s);
    assert_null(s);
    score_scheme_destroy(&s); /* NULL is fine */
}

static void test_err_weights(void **state)
{
    (void)state;
    /* children of p add up to 70 + 20 = 90 */
    char *y = strdup(HEAD IND_OK);
    char *w = strstr(y, "weight: 30");
    memcpy(w, "weight: 20", 10);
    expect_err("w.yaml", y, 17, "indicator 'p': weights of children add up to 90 for group 'g1', "
                                "expected 100");
    /* root children add up to 60 + 50 */
    memcpy(w, "weight: 30", 10);
    w = strstr(y, "weight: 40");
    memcpy(w, "weight: 50", 10);
    expect_err("w2.yaml", y, 16,
               "indicator 'total': weights of children add up to 110 for group 'g1'");
    free(y);
    /* a total of 1.0 declared on the node itself is fine */
    struct score_scheme *s =
        load_ok("w3.yaml", HEAD "indicators:\n"
                                "  - code: p\n"
                                "    name: P\n"
                                "    weight: 100\n"
                                "    total: 1\n"
                                "    children:\n"
                                "      - {code: a, name: a, weight: 0.25, method: direct}\n"
                                "      - {code: b, name: b, weight: 0.75, method: direct}\n");
    score_scheme_destroy(&s);
}

static void test_err_method(void **state)
{
    (void)state;
    char *y = strdup(HEAD IND_OK);
    char *m = strstr(y, "method: efficacy");
    memcpy(m, "method: effcacy ", 16);
    expect_err("m.yaml", y, 28, "indicator 'b': unknown method 'effcacy'");
    free(y);
    y = strdup(HEAD IND_OK);
    m = strstr(y, "good: 12");
    memcpy(m, "good: 6 ", 8);
    expect_err("m2.yaml", y, 30, "indicator 'b': efficacy good equals bad (6)");
    free(y);
    /* leaf without a method (line of the leaf's mapping) */
    expect_err("m3.yaml",
               HEAD "indicators:\n"
                    "  - code: p\n"
                    "    name: P\n"
                    "    weight: 100\n",
               17, "indicator 'p': leaf without a method");
    /* a parameter of another method */
    expect_err("m4.yaml",
               HEAD "indicators:\n"
                    "  - code: p\n"
                    "    name: P\n"
                    "    weight: 100\n"
                    "    method: direct\n"
                    "    good: 3\n",
               21, "indicator 'p': key 'good' does not apply to method direct");
}

static void test_err_duplicates(void **state)
{
    (void)state;
    /* duplicate unit in the same group */
    char *y = strdup(HEAD IND_OK);
    char *u = strstr(y, "code: B");
    u[6] = 'A';
    expect_err("d1.yaml", y, 9, "duplicate unit code 'A' (first at line 7)");
    free(y);
    /* a unit in two groups */
    y = strdup(HEAD IND_OK);
    u = strstr(y, "code: C");
    u[6] = 'A';
    expect_err("d2.yaml", y, 14, "unit 'A' is in two groups ('g1' at line 7 and 'g2')");
    free(y);
    /* duplicate group */
    y = strdup(HEAD IND_OK);
    u = strstr(y, "code: g2");
    u[7] = '1';
    expect_err("d3.yaml", y, 11, "duplicate group code 'g1' (first at line 4)");
    free(y);
    /* duplicate indicator */
    y = strdup(HEAD IND_OK);
    u = strstr(y, "code: q");
    u[6] = 'a';
    expect_err("d4.yaml", y, 31, "duplicate indicator code 'a' (first at line 21)");
    free(y);
    /* an indicator may not take the root's code */
    static const char d5[] = HEAD IND_OK;
    char buf[sizeof d5 + 16];
    u = strstr(d5, "code: q");
    snprintf(buf, sizeof buf, "%.*scode: total%s", (int)(u - d5), d5, u + 7);
    expect_err("d5.yaml", buf, 31, "duplicate indicator code 'total'");
    /* duplicate key */
    expect_err("d6.yaml", "scheme: t\nname: a\nname: b\n", 3, "scheme: duplicate key 'name'");
}

static void test_err_groups(void **state)
{
    (void)state;
    expect_err("g1.yaml",
               HEAD "indicators:\n"
                    "  - code: p\n"
                    "    name: P\n"
                    "    weight: 100\n"
                    "    method: direct\n"
                    "    groups: [g1, g9]\n",
               21, "indicator 'p': unknown group 'g9'");
    /* the root has no children for g2 */
    expect_err("g2.yaml",
               HEAD "indicators:\n"
                    "  - code: p\n"
                    "    name: P\n"
                    "    weight: 100\n"
                    "    method: direct\n"
                    "    groups: [g1]\n",
               16, "indicator 'total' has no children for group 'g2'");
    /* per-group trees: each group's children add up on their own */
    struct score_scheme *s = load_ok("g3.yaml", HEAD "indicators:\n"
                                                     "  - code: p\n"
                                                     "    name: P\n"
                                                     "    weight: 100\n"
                                                     "    method: direct\n"
                                                     "    groups: [g1]\n"
                                                     "  - code: q\n"
                                                     "    name: Q\n"
                                                     "    weight: 100\n"
                                                     "    method: direct\n"
                                                     "    groups: [g2]\n");
    assert_true(score_scheme_node_weight(s, 0, 1) == 100);
    assert_true(score_scheme_node_weight(s, 2, 1) == 0);
    assert_true(score_scheme_node_weight(s, 2, 2) == 100);
    score_scheme_destroy(&s);
}

static void test_err_misc(void **state)
{
    (void)state;
    char path[256], err[512];
    struct score_scheme *s = NULL;
    snprintf(path, sizeof path, "%s/missing.yaml", tmpdir);
    assert_int_equal(score_scheme_load(path, &s, err, sizeof err), KP_ESCHEME);
    char want[300];
    snprintf(want, sizeof want, "%s:0: cannot open", path);
    assert_memory_equal(err, want, strlen(want));

    expect_err("y1.yaml", "scheme: t\nname: [a\n", 3, "YAML syntax");
    expect_err("y2.yaml", HEAD IND_OK "wieght_total: 3\n", 35, "scheme: unknown key 'wieght_total'");
    expect_err("y3.yaml", "scheme: t\nname: x\n", 1, "scheme: missing 'groups'");
    expect_err("y4.yaml", "scheme: bad code\nname: x\n", 1, "scheme: 'bad code' is not a code");
    char *y = strdup(HEAD IND_OK);
    char *w = strstr(y, "weight: 40");
    memcpy(w, "weight: -4", 10);
    expect_err("y5.yaml", y, 33, "indicator 'q': weight must be > 0");
    free(y);
    expect_err("y6.yaml",
               HEAD IND_OK "grades:\n"
                           "  bands:\n"
                           "    - {grade: 良, min: 80}\n"
                           "    - {grade: 优, min: 90}\n"
                           "    - {grade: 差}\n",
               38, "grades: min must decrease from band to band");
    expect_err("y7.yaml",
               HEAD "indicators:\n"
                    "  - code: p\n"
                    "    name: P\n"
                    "    weight: 100\n"
                    "    method: direct\n"
                    "    rollup: avg\n"
                    "    periods: [month, quarter]\n",
               22, "indicator 'p': a leaf that rolls up takes exactly one period kind");
    expect_err("y8.yaml",
               HEAD IND_OK "weight_overrides:\n"
                           "  - unit: A\n"
                           "    weights: {a: 80}\n",
               36, "weight_override for 'A': weights of the children of 'p' add up to 110");
    expect_err("y9.yaml",
               HEAD IND_OK "weight_overrides:\n"
                           "  - unit: Z\n"
                           "    weights: {a: 80}\n",
               36, "weight_override: unknown unit 'Z'");
    expect_err("y10.yaml",
               HEAD IND_OK "adjustments:\n"
                           "  kinds:\n"
                           "    - code: c\n"
                           "      name: 批评\n"
                           "      method: direct\n",
               39, "adjustment 'c': method must be add, deduct or veto");
    /* a valid override */
    s = load_ok("o.yaml", HEAD IND_OK "weight_overrides:\n"
                                      "  - unit: A\n"
                                      "    weights: {a: 80, b: 20}\n");
    assert_true(score_scheme_node_weight(s, 0, 2) == 80);
    assert_true(score_scheme_node_weight(s, 1, 2) == 70);
    score_scheme_destroy(&s);
}

/* ---- the shipped schemes -------------------------------------------------------------------- */

static void test_shipped_schemes_load(void **state)
{
    (void)state;
    DIR *d = opendir(KP_SOURCE_DIR "/schemas/schemes");
    assert_non_null(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len < 6 || strcmp(de->d_name + len - 5, ".yaml"))
            continue;
        char path[512], err[512];
        snprintf(path, sizeof path, "%s/schemas/schemes/%s", KP_SOURCE_DIR, de->d_name);
        struct score_scheme *s = NULL;
        int rc = score_scheme_load(path, &s, err, sizeof err);
        if (rc)
            fprintf(stderr, "%s\n", err);
        assert_int_equal(rc, 0);
        /* the file is named after the scheme id */
        char want[128];
        snprintf(want, sizeof want, "%s.yaml", score_scheme_id(s));
        assert_string_equal(de->d_name, want);
        score_scheme_destroy(&s);
        n++;
    }
    closedir(d);
    assert_true(n >= 1);
}

static void test_anshan_units(void **state)
{
    (void)state;
    char err[512];
    struct score_scheme *s = NULL;
    assert_int_equal(score_scheme_load(KP_SOURCE_DIR "/schemas/schemes/anshan-2015.yaml", &s,
                                       err, sizeof err),
                     0);
    assert_string_equal(score_scheme_id(s), "anshan-2015");
    assert_int_equal(score_scheme_n_groups(s), 4);
    assert_int_equal(score_scheme_n_units(s), 70);
    size_t per_group[4] = {0};
    for (size_t u = 0; u < score_scheme_n_units(s); u++)
        per_group[score_scheme_unit_group(s, u)]++;
    assert_int_equal(per_group[0], 3);
    assert_int_equal(per_group[1], 4);
    assert_int_equal(per_group[2], 3);
    assert_int_equal(per_group[3], 60);
    assert_string_equal(score_scheme_group_code(s, 0), "g1");
    assert_string_equal(score_scheme_unit_name(s, (size_t)score_scheme_unit_find(s, "AS-HC")),
                        "海城市政府");
    assert_string_equal(score_scheme_unit_name(s, (size_t)score_scheme_unit_find(s, "AS-QSFJ")),
                        "千山风景区管委会");
    assert_string_equal(score_scheme_unit_name(s, (size_t)score_scheme_unit_find(s, "AS-DCJ")),
                        "市社会经济调查局");
    assert_int_equal(score_scheme_unit_group(s, (size_t)score_scheme_unit_find(s, "AS-DCJ")), 3);
    /* the seed's composition 55/30/10/5 */
    size_t hc = (size_t)score_scheme_unit_find(s, "AS-HC");
    assert_true(score_scheme_node_weight(s, hc, (size_t)score_scheme_node_find(s, "result")) == 55);
    assert_true(score_scheme_node_weight(s, hc, (size_t)score_scheme_node_find(s, "process")) ==
                30);
    assert_true(score_scheme_node_weight(s, hc, (size_t)score_scheme_node_find(s, "leader")) == 10);
    assert_true(score_scheme_node_weight(s, hc, (size_t)score_scheme_node_find(s, "public")) == 5);
    /* 5+2 plus governance for counties (40+5+5+15+15+5+5+10), duty plus governance for
     * departments (90+10) */
    size_t fgw = (size_t)score_scheme_unit_find(s, "AS-FGW");
    long econ = score_scheme_node_find(s, "econ"), duty = score_scheme_node_find(s, "duty");
    long gov = score_scheme_node_find(s, "governance");
    assert_true(score_scheme_node_weight(s, hc, (size_t)econ) == 40);
    assert_true(score_scheme_node_weight(s, hc, (size_t)score_scheme_node_find(s, "politics")) ==
                5);
    assert_true(score_scheme_node_weight(s, hc, (size_t)score_scheme_node_find(s, "culture")) ==
                5);
    assert_true(score_scheme_node_weight(s, fgw, (size_t)econ) == 0);
    assert_true(score_scheme_node_weight(s, fgw, (size_t)duty) == 90);
    assert_true(score_scheme_node_weight(s, hc, (size_t)duty) == 0);
    assert_true(score_scheme_node_weight(s, hc, (size_t)gov) == 10);
    assert_true(score_scheme_node_weight(s, fgw, (size_t)gov) == 10);
    assert_int_equal(score_scheme_node_parent(s, (size_t)gov), score_scheme_node_find(s, "result"));
    double leaves = 0;
    static const char *const gov_leaves[] = {"budget_execution", "audit_findings",
                                             "audit_rectification", "approval_ontime"};
    for (size_t i = 0; i < 4; i++) {
        long n = score_scheme_node_find(s, gov_leaves[i]);
        assert_true(n > 0);
        assert_true(score_scheme_node_is_leaf(s, (size_t)n));
        assert_int_equal(score_scheme_node_parent(s, (size_t)n), gov);
        leaves += score_scheme_node_weight(s, fgw, (size_t)n);
    }
    assert_true(leaves == 100); /* 35 + 15 + 20 + 30 */
    assert_string_equal(
        score_scheme_node_method(s, (size_t)score_scheme_node_find(s, "audit_findings")),
        "band [-inf,1)=100 [1,3)=85 [3,6)=70 [6,inf)=50 else=0 input=count rollup=pool");
    assert_string_equal(
        score_scheme_node_method(s, (size_t)score_scheme_node_find(s, "approval_ontime")),
        "direct clamp=none input=rate rollup=pool");
    assert_string_equal(
        score_scheme_node_method(s, (size_t)score_scheme_node_find(s, "budget_execution")),
        "completion target=100 cap=1 clamp=none rollup=latest");
    assert_string_equal(score_scheme_node_method(s, (size_t)score_scheme_node_find(s, "gdp_growth")),
                        "efficacy good=12 bad=6 base=60 span=40 clamp=none rollup=latest");
    long fals = score_scheme_node_find(s, "falsification");
    assert_true(score_scheme_node_is_adjustment(s, (size_t)fals));
    assert_string_equal(score_scheme_node_method(s, (size_t)fals), "deduct points=10 rollup=pool");
    assert_int_equal(score_scheme_year(s), 2015);
    score_scheme_destroy(&s);
}

/* The annotated example of schemas/SCHEMES.md loads as written. */
static void test_doc_example_loads(void **state)
{
    (void)state;
    FILE *f = fopen(KP_SOURCE_DIR "/schemas/SCHEMES.md", "r");
    assert_non_null(f);
    static char doc[65536];
    size_t n = fread(doc, 1, sizeof doc - 1, f);
    fclose(f);
    doc[n] = '\0';
    char *sec = strstr(doc, "## Annotated example");
    assert_non_null(sec);
    char *start = strstr(sec, "```yaml\n");
    assert_non_null(start);
    start += 8;
    char *end = strstr(start, "```");
    assert_non_null(end);
    *end = '\0';
    struct score_scheme *s = load_ok("demo-2015.yaml", start);
    assert_string_equal(score_scheme_id(s), "demo-2015");
    score_scheme_destroy(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base_ok),         cmocka_unit_test(test_err_weights),
        cmocka_unit_test(test_err_method),      cmocka_unit_test(test_err_duplicates),
        cmocka_unit_test(test_err_groups),      cmocka_unit_test(test_err_misc),
        cmocka_unit_test(test_shipped_schemes_load), cmocka_unit_test(test_anshan_units),
        cmocka_unit_test(test_doc_example_loads),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
