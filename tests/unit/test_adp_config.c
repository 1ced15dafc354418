/*
 * test_adp_config: the adapter's merged configuration table (adapters/adp_config.c): the
 * shipped example (adapters/sql/example.yaml) loads and checks; defaults are the documented
 * ones; source keys land in the selected source's block; bad codes, an unknown driver and a
 * query without its parameters are refused with the key named.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "adp.h"
#include "kp_config.h"
#include "kp_err.h"
#include "sql/src_sql.h"

static void test_defaults(void **state)
{
    (void)state;
    struct adp_config *c = adp_config_new();
    assert_string_equal(c->collector, "tcp://127.0.0.1:7450");
    assert_string_equal(c->admin, "127.0.0.1:0");
    assert_int_equal(c->spool_max_bytes, 256LL * 1024 * 1024);
    assert_int_equal(c->batch_max_obs, 500);
    assert_int_equal(c->inflight, 8);
    assert_int_equal(c->ack_timeout_ms, 5000);
    assert_int_equal(c->poll_ms, 1000);
    assert_string_equal(c->driver, "sql");
    struct src_sql_config *s = adp_source_config(c, &adp_source_sql);
    assert_non_null(s);
    assert_int_equal(s->lag_ms, 2000);
    assert_int_equal(s->overlap_ms, 0);
    adp_config_destroy(&c);
    assert_null(c);
}

static void test_example_loads(void **state)
{
    (void)state;
    struct adp_config *c = adp_config_new();
    char err[512];
    kp_config_fini(adp_config_table(), c); /* the loader fills a target without heap fields */
    int rc = kp_config_load(KP_SOURCE_DIR "/adapters/sql/example.yaml", adp_config_table(), c, err,
                            sizeof err);
    if (rc != 0)
        fail_msg("example.yaml: %s", err);
    assert_string_equal(c->aid, "stats");
    assert_int_equal(c->ack_timeout_ms, 5000);
    assert_int_equal(c->retry_max_ms, 60000);
    struct src_sql_config *s = adp_source_config(c, &adp_source_sql);
    assert_int_equal(s->lag_ms, 2000);
    assert_non_null(strstr(s->query, "LIMIT $4"));
    assert_int_equal(adp_config_check(c, err, sizeof err), 0);
    adp_config_destroy(&c);
}

static void check_fails(const char *key, const char *value, const char *want)
{
    struct adp_config *c = adp_config_new();
    const struct kp_cfg_entry *t = adp_config_table();
    char err[512];
    assert_int_equal(kp_config_set(t, c, "aid", "stats", err, sizeof err), 0);
    assert_int_equal(kp_config_set(t, c, "scheme", "anshan-2015", err, sizeof err), 0);
    assert_int_equal(kp_config_set(t, c, "src", "stats", err, sizeof err), 0);
    assert_int_equal(kp_config_set(t, c, "spool", "/tmp/x.db", err, sizeof err), 0);
    assert_int_equal(kp_config_set(t, c, "source.dsn", "dbname=x", err, sizeof err), 0);
    assert_int_equal(
        kp_config_set(t, c, "source.query", "SELECT $1, $2, $3 LIMIT $4", err, sizeof err), 0);
    assert_int_equal(adp_config_check(c, err, sizeof err), 0);
    assert_int_equal(kp_config_set(t, c, key, value, err, sizeof err), 0);
    assert_int_equal(adp_config_check(c, err, sizeof err), KP_ECONFIG);
    if (!strstr(err, want))
        fail_msg("%s=%s: \"%s\" does not mention %s", key, value, err, want);
    adp_config_destroy(&c);
}

static void test_refusals(void **state)
{
    (void)state;
    check_fails("aid", "has space", "aid");
    check_fails("scheme", "", "scheme");
    check_fails("src", "a/b", "src");
    check_fails("source.driver", "csv", "source.driver");
    check_fails("source.query", "SELECT 1 WHERE $1 = $2", "$3");
    check_fails("source.dsn", "", "source.dsn");
    check_fails("retry_max_ms", "10", "retry_max_ms");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_example_loads),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
