/*
 * test_kp_am: the Alertmanager client (lib/kp_am.c) against a stand-in for Alertmanager's
 * POST /api/v2/alerts (libmicrohttpd on an ephemeral port): the JSON body (labels, empty values
 * omitted, annotations, RFC 3339 times), the tri-state result (accepted, retry on 5xx and on a
 * refused connection, refused on 4xx with Alertmanager's message) and the abort flag.
 */
#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "kp_am.h"
#include "kp_buf.h"
#include "kp_err.h"
#include "kp_time.h"

struct fake_am {
    struct MHD_Daemon *d;
    int port;
    unsigned status; /* the answer */
    const char *answer;
    int delay_ms;
    pthread_mutex_t mu;
    struct kp_buf body; /* the last request's body */
    char url[256], method[16], ctype[128];
    int requests;
};

struct upload {
    struct kp_buf b;
};

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *data_size, void **con_cls)
{
    (void)version;
    struct fake_am *f = cls;
    struct upload *u = *con_cls;
    if (!u) {
        *con_cls = calloc(1, sizeof *u);
        return MHD_YES;
    }
    if (*data_size) {
        kp_buf_append(&u->b, data, *data_size);
        *data_size = 0;
        return MHD_YES;
    }
    pthread_mutex_lock(&f->mu);
    kp_buf_reset(&f->body);
    kp_buf_append(&f->body, u->b.data, u->b.len);
    kp_buf_cstr(&f->body);
    snprintf(f->url, sizeof f->url, "%s", url);
    snprintf(f->method, sizeof f->method, "%s", method);
    const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
    snprintf(f->ctype, sizeof f->ctype, "%s", ct ? ct : "");
    f->requests++;
    unsigned status = f->status;
    const char *answer = f->answer ? f->answer : "";
    int delay = f->delay_ms;
    pthread_mutex_unlock(&f->mu);
    if (delay) {
        struct timespec ts = {delay / 1000, (long)(delay % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(answer), (void *)answer, MHD_RESPMEM_MUST_COPY);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static void on_done(void *cls, struct MHD_Connection *c, void **con_cls,
                    enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    struct upload *u = *con_cls;
    if (u) {
        kp_buf_fini(&u->b);
        free(u);
        *con_cls = NULL;
    }
}

static int fake_start(void **state)
{
    struct fake_am *f = calloc(1, sizeof *f);
    pthread_mutex_init(&f->mu, NULL);
    f->status = 200;
    f->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0,
                            NULL, NULL, on_request, f, MHD_OPTION_NOTIFY_COMPLETED, on_done, f,
                            MHD_OPTION_END);
    assert_non_null(f->d);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(f->d, MHD_DAEMON_INFO_BIND_PORT);
    f->port = info->port;
    *state = f;
    return 0;
}

static int fake_stop(void **state)
{
    struct fake_am *f = *state;
    MHD_stop_daemon(f->d);
    kp_buf_fini(&f->body);
    pthread_mutex_destroy(&f->mu);
    free(f);
    return 0;
}

static const struct kp_am_pair LABELS[] = {
    {"alertname", "process_lag"}, {"scheme", "anshan-2015"}, {"severity", "red"}, {"unit", "AS-TA"},
    {"indicator", "process"},     {"period", "2015-06"},     {"adapter", ""}, /* omitted */
};
static const struct kp_am_pair ANN[] = {
    {"summary", "台安县政府 过程得分 2015-06: 落后 45.0 个百分点"}, {"kp_alert_id", "17"}};

static void test_time_and_url(void **state)
{
    (void)state;
    char t[40];
    kp_am_format_time(0, t, sizeof t);
    assert_string_equal(t, "1970-01-01T00:00:00.000Z");
    kp_am_format_time(1434643200123LL, t, sizeof t);
    assert_string_equal(t, "2015-06-18T16:00:00.123Z");
    kp_am_format_time(-1, t, sizeof t);
    assert_string_equal(t, "1969-12-31T23:59:59.999Z");
    struct kp_am *am = NULL;
    assert_int_equal(kp_am_open("ftp://x", 1000, NULL, &am), KP_EINVAL);
    assert_null(am);
    assert_int_equal(kp_am_open("http://127.0.0.1:9093/", 1000, NULL, &am), 0);
    assert_string_equal(kp_am_url(am), "http://127.0.0.1:9093/api/v2/alerts");
    kp_am_close(&am);
    assert_null(am);
    assert_int_equal(kp_am_open("http://h:1/api/v2/alerts", 1000, NULL, &am), 0);
    assert_string_equal(kp_am_url(am), "http://h:1/api/v2/alerts");
    kp_am_close(&am);
    kp_am_close(&am); /* NULL is fine */
}

static void test_encode(void **state)
{
    (void)state;
    struct kp_am_alert a[2] = {
        {LABELS, 7, ANN, 2, 1434643200000LL, 1434643500000LL, NULL},
        {LABELS, 3, NULL, 0, 0, 0, "http://x/"},
    };
    struct kp_buf b = {0};
    assert_int_equal(kp_am_encode(a, 2, &b), 0);
    json_error_t je;
    json_t *j = json_loads(kp_buf_cstr(&b), 0, &je);
    assert_true(json_is_array(j));
    assert_int_equal(json_array_size(j), 2);
    json_t *x = json_array_get(j, 0), *l = json_object_get(x, "labels");
    assert_int_equal(json_object_size(l), 6); /* the empty adapter is left out */
    assert_string_equal(json_string_value(json_object_get(l, "unit")), "AS-TA");
    assert_string_equal(json_string_value(json_object_get(x, "startsAt")),
                        "2015-06-18T16:00:00.000Z");
    assert_string_equal(json_string_value(json_object_get(x, "endsAt")),
                        "2015-06-18T16:05:00.000Z");
    assert_non_null(
        strstr(json_string_value(json_object_get(json_object_get(x, "annotations"), "summary")),
               "台安县"));
    json_t *y = json_array_get(j, 1);
    assert_null(json_object_get(y, "startsAt"));
    assert_string_equal(json_string_value(json_object_get(y, "generatorURL")), "http://x/");
    json_decref(j);
    /* an alert without labels cannot be sent; invalid UTF-8 is replaced, not fatal */
    struct kp_am_pair none[1] = {{"alertname", ""}}, bad[1] = {{"alertname", "a\xff"}};
    struct kp_am_alert z = {none, 1, NULL, 0, 0, 0, NULL};
    kp_buf_reset(&b);
    assert_int_equal(kp_am_encode(&z, 1, &b), KP_EINVAL);
    z.labels = bad;
    kp_buf_reset(&b);
    assert_int_equal(kp_am_encode(&z, 1, &b), 0);
    assert_non_null(strstr(kp_buf_cstr(&b), "a\xef\xbf\xbd"));
    kp_buf_fini(&b);
}

static void test_post(void **state)
{
    struct fake_am *f = *state;
    char url[64], err[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", f->port);
    struct kp_am *am = NULL;
    assert_int_equal(kp_am_open(url, 2000, NULL, &am), 0);
    struct kp_am_alert a = {LABELS, 7, ANN, 2, 1434643200000LL, 1434643500000LL, NULL};
    assert_int_equal(kp_am_post(am, &a, 1, err, sizeof err), 0);
    pthread_mutex_lock(&f->mu);
    assert_string_equal(f->method, "POST");
    assert_string_equal(f->url, "/api/v2/alerts");
    assert_string_equal(f->ctype, "application/json");
    struct kp_buf want = {0};
    assert_int_equal(kp_am_encode(&a, 1, &want), 0);
    assert_string_equal(kp_buf_cstr(&f->body), kp_buf_cstr(&want));
    kp_buf_fini(&want);
    f->status = 500;
    f->answer = "storage full";
    pthread_mutex_unlock(&f->mu);
    assert_int_equal(kp_am_post(am, &a, 1, err, sizeof err), KP_EAGAIN);
    assert_non_null(strstr(err, "HTTP 500"));
    pthread_mutex_lock(&f->mu);
    f->status = 400;
    f->answer = "{\"code\":400,\"message\":\"start time must be before end time\"}";
    pthread_mutex_unlock(&f->mu);
    assert_int_equal(kp_am_post(am, &a, 1, err, sizeof err), KP_EPROTO);
    assert_non_null(strstr(err, "start time must be before end time"));
    pthread_mutex_lock(&f->mu);
    f->status = 200;
    pthread_mutex_unlock(&f->mu);
    assert_int_equal(kp_am_post(am, &a, 1, err, sizeof err), 0); /* the handle is reusable */
    assert_int_equal(f->requests, 4);
    kp_am_close(&am);
}

static void test_unreachable_and_abort(void **state)
{
    struct fake_am *f = *state;
    char url[64], err[512];
    /* a port nobody listens on: connection refused, worth a retry */
    struct fake_am *g = NULL;
    fake_start((void **)&g);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", g->port);
    fake_stop((void **)&g);
    struct kp_am *am = NULL;
    assert_int_equal(kp_am_open(url, 1000, NULL, &am), 0);
    struct kp_am_alert a = {LABELS, 3, NULL, 0, 1, 2, NULL};
    assert_int_equal(kp_am_post(am, &a, 1, err, sizeof err), KP_EAGAIN);
    kp_am_close(&am);
    /* a slow Alertmanager and the daemon stopping: the post gives up at once */
    atomic_bool stop;
    atomic_init(&stop, true);
    pthread_mutex_lock(&f->mu);
    f->delay_ms = 3000;
    pthread_mutex_unlock(&f->mu);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", f->port);
    assert_int_equal(kp_am_open(url, 10000, &stop, &am), 0);
    uint64_t t0 = kp_mono_ns();
    assert_int_equal(kp_am_post(am, &a, 1, err, sizeof err), KP_EAGAIN);
    assert_true(kp_mono_ns() - t0 < 2500000000ull);
    kp_am_close(&am);
    pthread_mutex_lock(&f->mu);
    f->delay_ms = 0;
    pthread_mutex_unlock(&f->mu);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_time_and_url),
        cmocka_unit_test(test_encode),
        cmocka_unit_test_setup_teardown(test_post, fake_start, fake_stop),
        cmocka_unit_test_setup_teardown(test_unreachable_and_abort, fake_start, fake_stop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
