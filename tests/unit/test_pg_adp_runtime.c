/*
 * test_pg_adp_runtime: the whole adapter (adapters/adp_runtime.c) in-process, as kp-adapter
 * runs it minus main: a real PostgreSQL table as the department system (KP_TEST_DSN), the
 * sql source, the spool, and a real ZeroMQ ROUTER on the same loop playing the collector.
 * Every row arrives exactly once and the spool ends empty; with a small spool the adapter
 * stops pulling when it is full and resumes when acks free space, losing nothing; /metrics
 * and /readyz tell; stopping leaves nothing open on the loop (STYLE.md "Tests").
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <curl/curl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "adp.h"
#include "kp_buf.h"
#include "kp_config.h"
#include "kp_err.h"
#include "kp_log.h"
#include "kp_msg.h"
#include "kp_pg.h"
#include "kp_spool.h"
#include "kp_time.h"
#include "kp_zsock.h"

static const char *dsn;

#define QUERY                                                                                      \
    "SELECT ts AS wm_ts, id AS wm_id, unit AS u, ind AS i, period AS p, val, 'r' || id AS ref, "   \
    "rev FROM src_fact WHERE (ts, id) > ($1::timestamptz, $2::bigint) "                            \
    "AND ts <= $3::timestamptz ORDER BY ts, id LIMIT $4"

struct held {
    char rid[64];
    size_t rid_len;
    uint64_t seq;
};

struct fx {
    char dir[64], path[128];
    uv_loop_t loop;
    struct kp_pg *db;
    struct kp_zsock *router;
    char endpoint[128];
    struct adp_config *cfg;
    struct adp *adp;
    bool hold; /* keep answers back */
    struct held held[256];
    size_t n_held;
    size_t batches, obs;
    int *ref_count; /* by row id */
    size_t max_rows;
};

static void exec_ok(struct kp_pg *pg, const char *sql)
{
    if (kp_pg_exec(pg, sql, 0, NULL, NULL) != 0)
        fail_msg("%s: %s", sql, kp_pg_errmsg(pg));
}

static void set(struct fx *f, const char *key, const char *value)
{
    char err[256];
    if (kp_config_set(adp_config_table(), f->cfg, key, value, err, sizeof err) != 0)
        fail_msg("set %s: %s", key, err);
}

static void ack(struct fx *f, const char *rid, size_t rid_len, uint64_t seq)
{
    struct kp_ack a = {.seq = seq, .stored = 1};
    struct kp_buf b = {0};
    assert_int_equal(kp_ack_encode(&b, &a), 0);
    struct kp_frame fr[2] = {{rid, rid_len}, {b.data, b.len}};
    assert_int_equal(kp_zsock_send(f->router, fr, 2), 0);
    kp_buf_fini(&b);
}

static void on_router(struct kp_zsock *s, const struct kp_frame *fr, size_t n, void *arg)
{
    (void)s;
    struct fx *f = arg;
    assert_int_equal(n, 2);
    struct kp_msg_limits lim = {KP_DEFAULT_MAX_BYTES, KP_DEFAULT_MAX_OBS};
    struct kp_batch *b = NULL;
    bool has_seq;
    uint64_t seq;
    char msg[KP_MSG_TEXT_MAX];
    enum kp_reason r =
        kp_batch_decode(fr[1].data, fr[1].len, &lim, &b, &has_seq, &seq, msg, sizeof msg);
    if (r != KP_R_OK)
        fail_msg("decode: %s %s", kp_reason_str(r), msg);
    f->batches++;
    for (size_t k = 0; k < b->n_obs; k++) {
        long id = strtol(b->obs[k].ref + 1, NULL, 10);
        assert_true(id >= 1 && (size_t)id <= f->max_rows);
        f->ref_count[id - 1]++;
        f->obs++;
    }
    seq = b->seq;
    kp_batch_destroy(&b);
    if (f->hold) {
        assert_true(f->n_held < 256);
        struct held *h = &f->held[f->n_held++];
        memcpy(h->rid, fr[0].data, fr[0].len);
        h->rid_len = fr[0].len;
        h->seq = seq;
        return;
    }
    ack(f, fr[0].data, fr[0].len, seq);
}

static void tick(uv_timer_t *t)
{
    (void)t;
}

static bool run_until(struct fx *f, bool (*pred)(struct fx *), int timeout_ms)
{
    uv_timer_t t;
    uv_timer_init(&f->loop, &t);
    uv_timer_start(&t, tick, 5, 5);
    uint64_t end = kp_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    bool ok;
    while (!(ok = pred(f)) && kp_mono_ns() < end)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    return ok;
}

static size_t write_cb(char *p, size_t sz, size_t n, void *arg)
{
    kp_buf_append(arg, p, sz * n);
    return sz * n;
}

/* GET http://127.0.0.1:port/path into out (NUL-terminated); returns the HTTP status. */
static long http_get(int port, const char *path, struct kp_buf *out)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    kp_buf_reset(out);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 5L);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(c);
    kp_buf_cstr(out);
    return code;
}

/* The value of a metric series line "name value" in the exposition text, or -1. */
static double metric(struct fx *f, const char *series)
{
    struct kp_buf b = {0};
    assert_int_equal(http_get(adp_admin_port(f->adp), "/metrics", &b), 200);
    double v = -1;
    const char *p = (const char *)b.data;
    size_t n = strlen(series);
    while ((p = strstr(p, series)) != NULL) {
        if ((p == (const char *)b.data || p[-1] == '\n') && p[n] == ' ') {
            v = strtod(p + n + 1, NULL);
            break;
        }
        p += n;
    }
    kp_buf_fini(&b);
    return v;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/kp_pg_adp_rt.XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->path, sizeof f->path, "%s/spool.db", f->dir);
    if (uv_loop_init(&f->loop) != 0 || kp_pg_open(dsn, &f->db) != 0)
        return -1;
    exec_ok(f->db, "DROP TABLE IF EXISTS src_fact");
    exec_ok(f->db, "CREATE TABLE src_fact (id bigserial PRIMARY KEY, "
                   "ts timestamptz NOT NULL DEFAULT clock_timestamp(), unit text, ind text, "
                   "period text, val float8, rev bigint NOT NULL DEFAULT 0)");
    if (kp_zsock_open(&f->loop, KP_ZSOCK_ROUTER, NULL, &f->router) != 0 ||
        kp_zsock_bind(f->router, "tcp://127.0.0.1:*") != 0 ||
        kp_zsock_last_endpoint(f->router, f->endpoint, sizeof f->endpoint) != 0 ||
        kp_zsock_start(f->router, on_router, f) != 0)
        return -1;
    f->cfg = adp_config_new();
    set(f, "aid", "stats-1");
    set(f, "scheme", "anshan-2015");
    set(f, "src", "stats");
    set(f, "collector", f->endpoint);
    set(f, "insecure", "true"); /* plain TCP to the test's bare ROUTER (CURVE: test_col_zap) */
    set(f, "spool", f->path);
    set(f, "source.driver", "sql");
    set(f, "source.dsn", dsn);
    set(f, "source.query", QUERY);
    set(f, "source.lag_ms", "0");
    set(f, "source.poll_ms", "50ms");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    adp_stop(&f->adp);
    kp_zsock_close(&f->router, NULL, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&f->loop);
    adp_config_destroy(&f->cfg);
    kp_pg_close(&f->db);
    const char *suffix[] = {"", "-wal", "-shm"};
    for (size_t k = 0; k < 3; k++) {
        char p[160];
        snprintf(p, sizeof p, "%s%s", f->path, suffix[k]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f->ref_count);
    free(f);
    kp_zctx_term();
    return rc == 0 ? 0 : -1; /* nothing left open on the loop */
}

static void insert_rows(struct fx *f, size_t n)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "INSERT INTO src_fact (ts, unit, ind, period, val) SELECT now() - interval "
             "'1 hour' + (g / 7) * interval '1 ms', 'U' || (g %% 10), 'I1', '2024-Q1', g "
             "FROM generate_series(1, %zu) g",
             n);
    exec_ok(f->db, sql);
    f->max_rows = n;
    f->ref_count = calloc(n, sizeof *f->ref_count);
    assert_non_null(f->ref_count);
}

static void start(struct fx *f)
{
    char err[512];
    int rc = adp_start(&f->loop, f->cfg, &f->adp, err, sizeof err);
    if (rc != 0)
        fail_msg("adp_start: %s: %s", kp_err_name(rc), err);
}

static bool all_in_empty_spool(struct fx *f)
{
    struct kp_spool_stats st;
    kp_spool_stats(adp_spool(f->adp), &st);
    return f->obs >= f->max_rows && st.depth == 0;
}

static void assert_each_once(struct fx *f)
{
    for (size_t k = 0; k < f->max_rows; k++)
        if (f->ref_count[k] != 1)
            fail_msg("row %zu delivered %d times", k + 1, f->ref_count[k]);
}

static void test_end_to_end(void **state)
{
    struct fx *f = *state;
    set(f, "batch_max_obs", "10");
    insert_rows(f, 95);
    start(f);
    assert_true(run_until(f, all_in_empty_spool, 10000));
    assert_int_equal(f->obs, 95);
    assert_int_equal(f->batches, 10);
    assert_each_once(f);
    assert_true(metric(f, "kaoping_adapter_rows_pulled_total") == 95);
    assert_true(metric(f, "kaoping_adapter_batches_sent_total") == 10);
    assert_true(run_until(f, all_in_empty_spool, 10)); /* the loop settles acks */
    assert_true(metric(f, "kaoping_adapter_batches_acked_total") == 10);
    assert_true(metric(f, "kaoping_adapter_spool_depth") >= 0);
    assert_true(metric(f, "kaoping_adapter_last_success_timestamp_seconds") > 1e9);
    struct kp_buf b = {0};
    assert_int_equal(http_get(adp_admin_port(f->adp), "/readyz", &b), 200);
    kp_buf_fini(&b);

    /* more rows later are picked up by the next polls */
    exec_ok(f->db, "INSERT INTO src_fact (ts, unit, ind, period, val) VALUES "
                   "(clock_timestamp() - interval '1 second', 'U1', 'I1', '2024', 1)");
    f->max_rows = 96;
    f->ref_count = realloc(f->ref_count, 96 * sizeof *f->ref_count);
    f->ref_count[95] = 0;
    assert_true(run_until(f, all_in_empty_spool, 5000));
    assert_each_once(f);
}

static bool spool_full(struct fx *f)
{
    return metric(f, "kaoping_adapter_spool_full_total") >= 1;
}

static void test_spool_full_pauses_and_resumes(void **state)
{
    struct fx *f = *state;
    set(f, "batch_max_obs", "200");
    set(f, "spool_max_bytes", "64k");
    set(f, "inflight", "64");
    insert_rows(f, 3000); /* ~8 KB per batch of 200: the spool holds a handful */
    f->hold = true;
    start(f);
    assert_true(run_until(f, spool_full, 10000));
    struct kp_buf b = {0};
    assert_int_equal(http_get(adp_admin_port(f->adp), "/readyz", &b), 503);
    kp_buf_fini(&b);
    struct kp_spool_stats st;
    assert_int_equal(kp_spool_stats(adp_spool(f->adp), &st), 0);
    assert_true(st.bytes <= 64 * 1024);
    assert_true(st.depth < 15); /* pulling stopped: not all 15 batches are in */
    assert_true(f->obs < 3000);

    /* answer everything from now on: pulling resumes and nothing is lost */
    f->hold = false;
    for (size_t k = 0; k < f->n_held; k++)
        ack(f, f->held[k].rid, f->held[k].rid_len, f->held[k].seq);
    f->n_held = 0;
    assert_true(run_until(f, all_in_empty_spool, 20000));
    assert_each_once(f);
    assert_int_equal(http_get(adp_admin_port(f->adp), "/readyz", &b), 200);
    kp_buf_fini(&b);
}

int main(void)
{
    dsn = getenv("KP_TEST_DSN");
    if (!dsn || !*dsn) {
        fprintf(stderr, "KP_TEST_DSN is not set: run under tests/harness/with-pg.sh\n");
        return 1;
    }
    kp_log_init("adapter", "test", KP_LOG_WARN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_end_to_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_full_pauses_and_resumes, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
