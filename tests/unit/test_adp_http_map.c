/*
 * test_adp_http_map: the templates of the http source (adapters/http/src_http_map.c) that turn
 * a department API's JSON item into records: paths, literals and escapes, every filter, the
 * shared fields and per-observation overrides, what a missing or wrong-kind value makes of a
 * field (absent, or kept as read for the scorer to refuse), the ISO-8601 parser, and the
 * configuration errors a profile author sees.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/src_http_map.h"
#include "kp_err.h"

static json_t *item(const char *text)
{
    json_error_t je;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &je);
    if (!v)
        fail_msg("bad test JSON %s: %s", text, je.text);
    return v;
}

static struct http_map *map(const char *fields, const char *o1, const char *o2)
{
    char *obs[3] = {(char *)o1, (char *)o2, NULL};
    struct http_map *m = NULL;
    char err[256];
    int rc = http_map_new(fields, o1 ? obs : NULL, &m, err, sizeof err);
    if (rc != 0)
        fail_msg("http_map_new: %s", err);
    return m;
}

static void test_audit_mapping(void **state)
{
    (void)state;
    struct http_map *m =
        map("u={unit.code} p={issued_date|month} rev={version} at={updated_at|ms}",
            "i=audit_findings val=1 ref=F{id}:count",
            "i=audit_rectification val={status|map:rectified=1;open=0} ref=F{id}:rect w={w}");
    assert_int_equal(http_map_count(m), 2);
    json_t *it = item("{\"id\":42,\"unit\":{\"code\":\"AS-HC\"},\"issued_date\":\"2015-03-17\","
                      "\"status\":\"rectified\",\"version\":3,\"w\":0.1,"
                      "\"updated_at\":\"2015-05-02T08:00:00.5+08:00\"}");
    struct adp_rec r[2];
    char why[256];
    assert_int_equal(http_map_item(m, it, r, why, sizeof why), HTTP_MAP_OK);
    assert_string_equal(r[0].u, "AS-HC");
    assert_string_equal(r[0].i, "audit_findings");
    assert_string_equal(r[0].p, "2015-03");
    assert_string_equal(r[0].val, "1");
    assert_string_equal(r[0].ref, "F42:count");
    assert_string_equal(r[0].rev, "3");
    assert_string_equal(r[0].at, "1430524800500");
    assert_null(r[0].w);
    assert_string_equal(r[1].i, "audit_rectification");
    assert_string_equal(r[1].val, "1");
    assert_string_equal(r[1].ref, "F42:rect");
    assert_string_equal(r[1].w, "0.1"); /* the shortest text of the double */
    json_decref(it);

    /* open → 0; a status outside the map is kept as read (refused centrally as bad_type) */
    it = item("{\"id\":\"7\",\"unit\":{\"code\":\"AS-TA\"},\"issued_date\":\"2015-12-01\","
              "\"status\":\"待复核\",\"version\":1,\"updated_at\":1430524800000}");
    assert_int_equal(http_map_item(m, it, r, why, sizeof why), HTTP_MAP_BAD);
    assert_string_equal(why, "val: status \"待复核\" is not in the map");
    assert_string_equal(r[0].val, "1"); /* the count record is fine */
    assert_string_equal(r[0].at, "1430524800000");
    assert_string_equal(r[1].val, "待复核");
    assert_null(r[1].w); /* w absent: a missing optional field is no problem... */
    json_decref(it);
    http_map_destroy(&m);
    assert_null(m);
}

static void test_missing_and_wrong_kind(void **state)
{
    (void)state;
    struct http_map *m = map("u={unit} i=x p={d|quarter} val={v} ref={id}", NULL, NULL);
    struct adp_rec r[1];
    char why[256];
    json_t *it = item("{\"id\":\"a\",\"d\":\"2015-08-09\",\"v\":null}");
    assert_int_equal(http_map_item(m, it, r, why, sizeof why), HTTP_MAP_MISSING);
    assert_string_equal(why, "u: unit is missing");
    assert_null(r[0].u);
    assert_null(r[0].val); /* null counts as absent */
    assert_string_equal(r[0].p, "2015-Q3");
    json_decref(it);

    it = item("{\"unit\":[1,2],\"d\":\"2015/08/09\",\"v\":{\"a\":1},\"id\":{\"x\":1}}");
    assert_int_equal(http_map_item(m, it, r, why, sizeof why), HTTP_MAP_BAD);
    assert_string_equal(why, "u: unit is an array, not a scalar");
    assert_string_equal(r[0].u, "[1,2]");       /* kept as read: refused as bad_field */
    assert_string_equal(r[0].p, "2015/08/09");  /* refused as bad_period */
    assert_string_equal(r[0].val, "{\"a\":1}"); /* refused as bad_type */
    assert_null(r[0].ref);                      /* never a made-up identity */
    json_decref(it);

    it = item("{\"unit\":\"AS-HC\",\"d\":\"2015-08-09\",\"v\":true,\"id\":\"x\"}");
    assert_int_equal(http_map_item(m, it, r, why, sizeof why), HTTP_MAP_OK);
    assert_string_equal(r[0].val, "true"); /* the runtime sends it as text: bad_type */
    json_decref(it);
    http_map_destroy(&m);
}

static void test_filters_and_literals(void **state)
{
    (void)state;
    struct http_map *m =
        map("u=U-{a.0.b} i={{lit}} p={d|half} val={n} ref={s}/{n}", "p={d|year}", "p={d|day}");
    struct adp_rec r[2];
    char why[256];
    json_t *it = item("{\"a\":[{\"b\":\"X\"}],\"d\":\"2016-02-29T23:59:59Z\",\"n\":12345678901234,"
                      "\"s\":\"r\"}");
    assert_int_equal(http_map_item(m, it, r, why, sizeof why), HTTP_MAP_OK);
    assert_string_equal(r[0].u, "U-X");
    assert_string_equal(r[0].i, "{lit}");
    assert_string_equal(r[0].p, "2016");
    assert_string_equal(r[1].p, "2016-02-29");
    assert_string_equal(r[0].val, "12345678901234");
    assert_string_equal(r[0].ref, "r/12345678901234");
    json_decref(it);

    it = item("{\"a\":[{\"b\":\"X\"}],\"d\":\"2015-02-29\",\"n\":1,\"s\":\"r\"}");
    assert_int_equal(http_map_item(m, it, r, why, sizeof why), HTTP_MAP_BAD); /* no Feb 29 */
    json_decref(it);
    http_map_destroy(&m);

    m = map("u=a i=b p={d|half} val=1 ref=x", NULL, NULL);
    it = item("{\"d\":\"2015-07\"}");
    assert_int_equal(http_map_item(m, it, r, why, sizeof why), HTTP_MAP_OK);
    assert_string_equal(r[0].p, "2015-H2");
    json_decref(it);
    http_map_destroy(&m);
}

static void test_iso8601(void **state)
{
    (void)state;
    long long ms;
    assert_true(http_iso8601_ms("1970-01-01T00:00:00Z", &ms));
    assert_int_equal(ms, 0);
    assert_true(http_iso8601_ms("2015-03-17", &ms));
    assert_int_equal(ms, 1426550400000LL);
    assert_true(http_iso8601_ms("2015-03-17 08:00:00+08:00", &ms));
    assert_int_equal(ms, 1426550400000LL);
    assert_true(http_iso8601_ms("2015-03-17T08:00+0800", &ms));
    assert_int_equal(ms, 1426550400000LL);
    assert_true(http_iso8601_ms("2015-03-16T19:30:00.123456-04:30", &ms));
    assert_int_equal(ms, 1426550400123LL);
    assert_true(http_iso8601_ms("1969-12-31T23:59:59Z", &ms));
    assert_int_equal(ms, -1000);
    const char *bad[] = {"2015-3-17",
                         "2015-03-32",
                         "2015-03-17T25:00Z",
                         "2015-03-17T08:00:00.Z",
                         "2015-03-17Tx",
                         "2015-03-17T08:00:00+8",
                         "",
                         "2015-03-17T08:00:00Z junk"};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++)
        if (http_iso8601_ms(bad[k], &ms))
            fail_msg("\"%s\" parsed", bad[k]);
}

static void expect_error(const char *fields, const char *o1, const char *needle)
{
    char *obs[2] = {(char *)o1, NULL};
    struct http_map *m = NULL;
    char err[256] = "";
    assert_int_equal(http_map_new(fields, o1 ? obs : NULL, &m, err, sizeof err), KP_ECONFIG);
    assert_null(m);
    if (!strstr(err, needle))
        fail_msg("err \"%s\" does not say \"%s\"", err, needle);
}

static void test_config_errors(void **state)
{
    (void)state;
    expect_error("u={a} i=b p=c val=1", NULL, "source.http.fields: no template for ref");
    expect_error("u={a} i=b p=c val=1 ref={x", NULL, "ref: unclosed {");
    expect_error("u={a} i=b p=c val=1 ref=}", NULL, "unmatched }");
    expect_error("u={a..b} i=b p=c val=1 ref=x", NULL, "empty segment");
    expect_error("u={a|map:} i=b p=c val=1 ref=x", NULL, "unknown filter");
    expect_error("u={a|map:k} i=b p=c val=1 ref=x", NULL, "not key=value");
    expect_error("x=1 u={a}", NULL, "\"x=1\" is not field=template");
    expect_error("u={a} i=b p=c val=1", "w=2", "source.http.observations[0]: no template for ref");
    /* a template may hold spaces inside braces but not outside */
    struct http_map *m = map("u={a|map:x y=1;*=2} i=b p=c val=1 ref=r", NULL, NULL);
    struct adp_rec r[1];
    char why[128];
    json_t *it = item("{\"a\":\"x y\"}");
    assert_int_equal(http_map_item(m, it, r, why, sizeof why), HTTP_MAP_OK);
    assert_string_equal(r[0].u, "1");
    json_decref(it);
    http_map_destroy(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_audit_mapping),        cmocka_unit_test(test_missing_and_wrong_kind),
        cmocka_unit_test(test_filters_and_literals), cmocka_unit_test(test_iso8601),
        cmocka_unit_test(test_config_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
