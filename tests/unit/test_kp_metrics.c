/*
 * Unit tests of kp_metrics: the exact exposition text of a small registry (families in
 * creation order, label sets, cumulative histogram buckets, number formatting, HELP
 * escaping), series reuse, and lock-free updates from several threads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <string.h>

#include "kp_buf.h"
#include "kp_metrics.h"

static void test_render_exact(void **state)
{
    (void)state;
    struct kp_metrics *m = kp_metrics_new();
    struct kp_counter *acc =
        kp_metrics_counter(m, "kaoping_records_total", "Records by outcome.", "outcome=\"ok\"");
    struct kp_counter *rej = kp_metrics_counter(m, "kaoping_records_total", "Records by outcome.",
                                                "outcome=\"rejected\"");
    struct kp_gauge *lag = kp_metrics_gauge(m, "kaoping_lag_seconds", "Pipeline lag.", NULL);
    const double bounds[] = {0.005, 0.1, 1};
    struct kp_histogram *h = kp_metrics_histogram(m, "kaoping_commit_seconds", "Commit latency.",
                                                  "scheme=\"anshan\"", bounds, 3);
    struct kp_histogram *h2 =
        kp_metrics_histogram(m, "kaoping_batch_size", "Observations per batch.", NULL, NULL, 0);
    struct kp_counter *odd =
        kp_metrics_counter(m, "kaoping_odd_total", "Back\\slash\nnewline.", NULL);

    /* the same name and labels give the same series */
    assert_ptr_equal(
        kp_metrics_counter(m, "kaoping_records_total", "Records by outcome.", "outcome=\"ok\""),
        acc);
    assert_ptr_equal(kp_metrics_gauge(m, "kaoping_lag_seconds", "Pipeline lag.", ""), lag);

    kp_counter_inc(acc);
    kp_counter_add(acc, 41);
    kp_counter_add(acc, -5);  /* counters never go down */
    kp_counter_add(acc, NAN); /* nor become NaN */
    kp_counter_add(rej, 0.25);
    kp_gauge_set(lag, 3.5);
    kp_gauge_add(lag, -1);
    kp_histogram_observe(h, 0.001);
    kp_histogram_observe(h, 0.005); /* le is inclusive */
    kp_histogram_observe(h, 0.05);
    kp_histogram_observe(h, 7);
    kp_histogram_observe(h, NAN);
    kp_histogram_observe(h2, 12);
    kp_counter_add(odd, 1e20);

    assert_true(kp_counter_get(acc) == 42);
    assert_true(kp_gauge_get(lag) == 2.5);

    struct kp_buf b = {0};
    assert_int_equal(kp_metrics_render(m, &b), 0);
    assert_string_equal((const char *)b.data,
                        "# HELP kaoping_records_total Records by outcome.\n"
                        "# TYPE kaoping_records_total counter\n"
                        "kaoping_records_total{outcome=\"ok\"} 42\n"
                        "kaoping_records_total{outcome=\"rejected\"} 0.25\n"
                        "# HELP kaoping_lag_seconds Pipeline lag.\n"
                        "# TYPE kaoping_lag_seconds gauge\n"
                        "kaoping_lag_seconds 2.5\n"
                        "# HELP kaoping_commit_seconds Commit latency.\n"
                        "# TYPE kaoping_commit_seconds histogram\n"
                        "kaoping_commit_seconds_bucket{scheme=\"anshan\",le=\"0.005\"} 2\n"
                        "kaoping_commit_seconds_bucket{scheme=\"anshan\",le=\"0.1\"} 3\n"
                        "kaoping_commit_seconds_bucket{scheme=\"anshan\",le=\"1\"} 3\n"
                        "kaoping_commit_seconds_bucket{scheme=\"anshan\",le=\"+Inf\"} 4\n"
                        "kaoping_commit_seconds_sum{scheme=\"anshan\"} 7.056\n"
                        "kaoping_commit_seconds_count{scheme=\"anshan\"} 4\n"
                        "# HELP kaoping_batch_size Observations per batch.\n"
                        "# TYPE kaoping_batch_size histogram\n"
                        "kaoping_batch_size_bucket{le=\"+Inf\"} 1\n"
                        "kaoping_batch_size_sum 12\n"
                        "kaoping_batch_size_count 1\n"
                        "# HELP kaoping_odd_total Back\\\\slash\\nnewline.\n"
                        "# TYPE kaoping_odd_total counter\n"
                        "kaoping_odd_total 1e+20\n");

    /* render appends */
    size_t len = b.len;
    assert_int_equal(kp_metrics_render(m, &b), 0);
    assert_int_equal(b.len, 2 * len);
    kp_buf_fini(&b);
    kp_metrics_destroy(&m);
    assert_null(m);
    kp_metrics_destroy(&m); /* accepts NULL */
}

static void test_number_formats(void **state)
{
    (void)state;
    struct kp_metrics *m = kp_metrics_new();
    struct kp_gauge *g = kp_metrics_gauge(m, "g", NULL, NULL);
    const struct {
        double v;
        const char *text;
    } cases[] = {
        {0, "# TYPE g gauge\ng 0\n"},
        {-0.0, "# TYPE g gauge\ng 0\n"},
        {-3, "# TYPE g gauge\ng -3\n"},
        {0.1, "# TYPE g gauge\ng 0.1\n"},
        {1.0 / 3, "# TYPE g gauge\ng 0.33333333333333331\n"},
        {1e-9, "# TYPE g gauge\ng 1e-09\n"},
        {123456789012, "# TYPE g gauge\ng 123456789012\n"},
        {INFINITY, "# TYPE g gauge\ng +Inf\n"},
        {-INFINITY, "# TYPE g gauge\ng -Inf\n"},
        {NAN, "# TYPE g gauge\ng NaN\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct kp_buf b = {0};
        kp_gauge_set(g, cases[i].v);
        assert_int_equal(kp_metrics_render(m, &b), 0);
        assert_string_equal((const char *)b.data, cases[i].text);
        kp_buf_fini(&b);
    }
    kp_metrics_destroy(&m);
}

static void test_empty_registry(void **state)
{
    (void)state;
    struct kp_metrics *m = kp_metrics_new();
    struct kp_buf b = {0};
    assert_int_equal(kp_metrics_render(m, &b), 0);
    assert_string_equal(kp_buf_cstr(&b), "");
    kp_buf_fini(&b);
    kp_metrics_destroy(&m);
}

#define THREADS 4
#define ITERS   100000

struct shared {
    struct kp_counter *c;
    struct kp_gauge *g;
    struct kp_histogram *h;
};

static void *hammer(void *arg)
{
    struct shared *s = arg;
    for (int i = 0; i < ITERS; i++) {
        kp_counter_inc(s->c);
        kp_gauge_add(s->g, 0.5);
        kp_histogram_observe(s->h, (double)(i % 4));
    }
    return NULL;
}

static void test_concurrent_updates(void **state)
{
    (void)state;
    struct kp_metrics *m = kp_metrics_new();
    const double bounds[] = {1, 2};
    struct shared s = {
        kp_metrics_counter(m, "c_total", "c", NULL),
        kp_metrics_gauge(m, "g", "g", NULL),
        kp_metrics_histogram(m, "h", "h", NULL, bounds, 2),
    };
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, hammer, &s), 0);
    /* rendering concurrently with updates is allowed */
    for (int i = 0; i < 20; i++) {
        struct kp_buf b = {0};
        assert_int_equal(kp_metrics_render(m, &b), 0);
        kp_buf_fini(&b);
    }
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    assert_true(kp_counter_get(s.c) == THREADS * ITERS);
    assert_true(kp_gauge_get(s.g) == THREADS * ITERS * 0.5);
    struct kp_buf b = {0};
    assert_int_equal(kp_metrics_render(m, &b), 0);
    assert_string_equal((const char *)b.data, "# HELP c_total c\n"
                                              "# TYPE c_total counter\n"
                                              "c_total 400000\n"
                                              "# HELP g g\n"
                                              "# TYPE g gauge\n"
                                              "g 200000\n"
                                              "# HELP h h\n"
                                              "# TYPE h histogram\n"
                                              "h_bucket{le=\"1\"} 200000\n"
                                              "h_bucket{le=\"2\"} 300000\n"
                                              "h_bucket{le=\"+Inf\"} 400000\n"
                                              "h_sum 600000\n"
                                              "h_count 400000\n");
    kp_buf_fini(&b);
    kp_metrics_destroy(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render_exact),
        cmocka_unit_test(test_number_formats),
        cmocka_unit_test(test_empty_registry),
        cmocka_unit_test(test_concurrent_updates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
