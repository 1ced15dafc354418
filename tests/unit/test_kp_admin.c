/*
 * Unit tests of kp_admin: real HTTP GETs with libcurl against an endpoint on an ephemeral
 * port: /healthz, /metrics (body and content type), /readyz both ways, 404 and 405, and the
 * listen-address parser.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <curl/curl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "kp_admin.h"
#include "kp_buf.h"
#include "kp_err.h"
#include "kp_metrics.h"

struct resp {
    long status;
    char ctype[128];
    struct kp_buf body;
};

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    kp_buf_append(arg, p, size * n);
    return size * n;
}

static void http(int port, const char *method, const char *path, struct resp *r)
{
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    memset(r, 0, sizeof *r);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    if (strcmp(method, "POST") == 0)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "x=1");
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    char *ct = NULL;
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
    snprintf(r->ctype, sizeof r->ctype, "%s", ct ? ct : "");
    kp_buf_cstr(&r->body);
    curl_easy_cleanup(c);
}

static atomic_bool db_up;

static bool ready_fn(void *arg, char *why, size_t why_len)
{
    assert_ptr_equal(arg, &db_up);
    if (atomic_load(&db_up))
        return true;
    snprintf(why, why_len, "postgresql unreachable");
    return false;
}

static void test_endpoints(void **state)
{
    (void)state;
    struct kp_metrics *m = kp_metrics_new();
    kp_counter_add(kp_metrics_counter(m, "kaoping_batches_total", "Batches.", "scheme=\"a\""), 3);
    struct kp_admin *a = NULL;
    assert_int_equal(kp_admin_open("127.0.0.1:0", m, ready_fn, &db_up, &a), 0);
    int port = kp_admin_port(a);
    assert_true(port > 0 && port < 65536);

    struct resp r;
    http(port, "GET", "/healthz", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal((char *)r.body.data, "ok\n");
    kp_buf_fini(&r.body);

    http(port, "GET", "/metrics", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.ctype, "text/plain; version=0.0.4; charset=utf-8");
    assert_string_equal((char *)r.body.data, "# HELP kaoping_batches_total Batches.\n"
                                             "# TYPE kaoping_batches_total counter\n"
                                             "kaoping_batches_total{scheme=\"a\"} 3\n");
    kp_buf_fini(&r.body);

    atomic_store(&db_up, false);
    http(port, "GET", "/readyz", &r);
    assert_int_equal(r.status, 503);
    assert_string_equal((char *)r.body.data, "not ready: postgresql unreachable\n");
    kp_buf_fini(&r.body);

    atomic_store(&db_up, true);
    http(port, "GET", "/readyz", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal((char *)r.body.data, "ready\n");
    kp_buf_fini(&r.body);

    http(port, "GET", "/", &r);
    assert_int_equal(r.status, 404);
    kp_buf_fini(&r.body);
    http(port, "GET", "/metrics/x", &r);
    assert_int_equal(r.status, 404);
    kp_buf_fini(&r.body);
    http(port, "POST", "/metrics", &r);
    assert_int_equal(r.status, 405);
    kp_buf_fini(&r.body);

    /* the registry is read live */
    kp_counter_inc(kp_metrics_counter(m, "kaoping_batches_total", "Batches.", "scheme=\"a\""));
    http(port, "GET", "/metrics", &r);
    assert_non_null(strstr((char *)r.body.data, "kaoping_batches_total{scheme=\"a\"} 4\n"));
    kp_buf_fini(&r.body);

    /* the port is taken */
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    struct kp_admin *b = NULL;
    assert_int_equal(kp_admin_open(listen, m, NULL, NULL, &b), KP_EIO);
    assert_null(b);

    kp_admin_close(&a);
    assert_null(a);
    kp_admin_close(&a);
    kp_metrics_destroy(&m);
}

static void test_no_ready_fn_no_metrics(void **state)
{
    (void)state;
    struct kp_admin *a = NULL;
    assert_int_equal(kp_admin_open("*:0", NULL, NULL, NULL, &a), 0);
    struct resp r;
    http(kp_admin_port(a), "GET", "/readyz", &r);
    assert_int_equal(r.status, 200);
    kp_buf_fini(&r.body);
    http(kp_admin_port(a), "GET", "/metrics", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal((char *)r.body.data, "");
    kp_buf_fini(&r.body);
    kp_admin_close(&a);

    assert_int_equal(kp_admin_open("localhost:0", NULL, NULL, NULL, &a), 0);
    kp_admin_close(&a);
    assert_int_equal(kp_admin_open(":0", NULL, NULL, NULL, &a), 0);
    kp_admin_close(&a);
}

static void test_bad_listen(void **state)
{
    (void)state;
    struct kp_admin *a = NULL;
    assert_int_equal(kp_admin_open("127.0.0.1", NULL, NULL, NULL, &a), KP_EINVAL);
    assert_int_equal(kp_admin_open("127.0.0.1:", NULL, NULL, NULL, &a), KP_EINVAL);
    assert_int_equal(kp_admin_open("127.0.0.1:65536", NULL, NULL, NULL, &a), KP_EINVAL);
    assert_int_equal(kp_admin_open("127.0.0.1:8o", NULL, NULL, NULL, &a), KP_EINVAL);
    assert_int_equal(kp_admin_open("[::1:80", NULL, NULL, NULL, &a), KP_EINVAL);
    assert_int_equal(kp_admin_open("no.such.host.invalid:0", NULL, NULL, NULL, &a), KP_EINVAL);
    assert_int_equal(kp_admin_open(NULL, NULL, NULL, NULL, &a), KP_EINVAL);
    assert_null(a);
    assert_int_equal(kp_admin_port(NULL), KP_EINVAL);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoints),
        cmocka_unit_test(test_no_ready_fn_no_metrics),
        cmocka_unit_test(test_bad_listen),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
