/*
 * test_adp_deliver: the adapter's delivery loop (adapters/adp_deliver.c) in-process against a
 * real ZeroMQ ROUTER on the same libuv loop playing the collector. Acks delete from the spool
 * (and record rej entries), a nack retry:false dead-letters, a nack retry:true and an
 * unanswered batch are sent again after their backoff/timeout, the inflight window is never
 * exceeded, and a restart sends everything still spooled (ARCHITECTURE.md guarantee 1).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "adp_deliver.h"
#include "adp_metrics.h"
#include "kp_buf.h"
#include "kp_err.h"
#include "kp_log.h"
#include "kp_metrics.h"
#include "kp_msg.h"
#include "kp_spool.h"
#include "kp_time.h"
#include "kp_zsock.h"

#define MAX_SEEN 512

enum mode {
    M_HOLD,        /* answer nothing; the test answers */
    M_ACK,         /* ack everything at once */
    M_DROP_FIRST,  /* ignore the first reception of each seq, ack the later ones */
    M_NACK_2,      /* nack seq 2 retry:false, ack the rest */
    M_RETRY_FIRST, /* nack retry:true on the first reception, ack the later ones */
};

struct rx {
    uint64_t seq;
    uint64_t at_ns;
    char rid[64];
    size_t rid_len;
};

struct fx {
    char dir[64], path[128];
    uv_loop_t loop;
    struct kp_spool *sp;
    struct kp_metrics *reg;
    struct adp_metrics am;
    struct kp_zsock *router;
    char endpoint[128];
    struct adp_deliver *d;
    enum mode mode;
    struct rx seen[MAX_SEEN];
    size_t n_seen;
    size_t max_outstanding;          /* most distinct unanswered seqs seen at once by the router */
    uint64_t answered[MAX_SEEN + 1]; /* seqs answered (ack or final nack) */
    size_t n_answered;
    int freed_calls;
    int closed;
};

static size_t times_seen(struct fx *f, uint64_t seq)
{
    size_t n = 0;
    for (size_t k = 0; k < f->n_seen; k++)
        n += f->seen[k].seq == seq;
    return n;
}

static bool was_answered(struct fx *f, uint64_t seq)
{
    for (size_t k = 0; k < f->n_answered; k++)
        if (f->answered[k] == seq)
            return true;
    return false;
}

static size_t outstanding(struct fx *f)
{
    /* distinct seqs received and not yet answered */
    size_t n = 0;
    for (size_t k = 0; k < f->n_seen; k++) {
        uint64_t s = f->seen[k].seq;
        bool first = true;
        for (size_t j = 0; j < k; j++)
            if (f->seen[j].seq == s)
                first = false;
        if (first && !was_answered(f, s))
            n++;
    }
    return n;
}

static void reply(struct fx *f, const struct rx *r, const struct kp_buf *b)
{
    struct kp_frame fr[2] = {{r->rid, r->rid_len}, {b->data, b->len}};
    assert_int_equal(kp_zsock_send(f->router, fr, 2), 0);
}

static void send_ack(struct fx *f, const struct rx *r, size_t n_rej)
{
    struct kp_rej rej[2] = {{0, KP_R_unknown_unit, "unit X9 is not in the scheme"},
                            {1, KP_R_bad_period, "period 2024-13"}};
    struct kp_ack a = {.seq = r->seq,
                       .stored = 3 - n_rej,
                       .dup = false,
                       .n_rej = n_rej,
                       .rej = n_rej ? rej : NULL};
    struct kp_buf b = {0};
    assert_int_equal(kp_ack_encode(&b, &a), 0);
    reply(f, r, &b);
    kp_buf_fini(&b);
    if (f->n_answered < MAX_SEEN)
        f->answered[f->n_answered++] = r->seq;
}

static void send_nack(struct fx *f, const struct rx *r, enum kp_reason code, bool retry)
{
    struct kp_nack n = {.has_seq = true, .seq = r->seq, .code = code, .retry = retry};
    snprintf(n.msg, sizeof n.msg, "test nack %s", kp_reason_str(code));
    struct kp_buf b = {0};
    assert_int_equal(kp_nack_encode(&b, &n), 0);
    reply(f, r, &b);
    kp_buf_fini(&b);
    if (!retry && f->n_answered < MAX_SEEN)
        f->answered[f->n_answered++] = r->seq;
}

static void on_router(struct kp_zsock *s, const struct kp_frame *fr, size_t n, void *arg)
{
    (void)s;
    struct fx *f = arg;
    assert_int_equal(n, 2);
    struct kp_msg_limits lim = {KP_DEFAULT_MAX_BYTES, KP_DEFAULT_MAX_OBS};
    struct kp_batch *b = NULL;
    bool has_seq = false;
    uint64_t seq = 0;
    char msg[KP_MSG_TEXT_MAX];
    enum kp_reason r =
        kp_batch_decode(fr[1].data, fr[1].len, &lim, &b, &has_seq, &seq, msg, sizeof msg);
    assert_int_equal(r, KP_R_OK);
    assert_non_null(b);
    assert_string_equal(b->aid, "stats-1");
    seq = b->seq;
    kp_batch_destroy(&b);
    assert_true(f->n_seen < MAX_SEEN);
    struct rx *x = &f->seen[f->n_seen++];
    x->seq = seq;
    x->at_ns = kp_mono_ns();
    assert_true(fr[0].len <= sizeof x->rid);
    memcpy(x->rid, fr[0].data, fr[0].len);
    x->rid_len = fr[0].len;
    size_t o = outstanding(f);
    if (o > f->max_outstanding)
        f->max_outstanding = o;

    switch (f->mode) {
    case M_HOLD:
        break;
    case M_ACK:
        send_ack(f, x, seq == 3 ? 2 : 0);
        break;
    case M_DROP_FIRST:
        if (times_seen(f, seq) > 1)
            send_ack(f, x, 0);
        break;
    case M_NACK_2:
        if (seq == 2)
            send_nack(f, x, KP_R_not_granted_scheme, false);
        else
            send_ack(f, x, 0);
        break;
    case M_RETRY_FIRST:
        if (times_seen(f, seq) == 1)
            send_nack(f, x, KP_R_overloaded, true);
        else
            send_ack(f, x, 0);
        break;
    }
}

static void on_freed(void *arg)
{
    ((struct fx *)arg)->freed_calls++;
}

/* Spools n batches of 3 observations each. */
static void spool_batches(struct fx *f, int n)
{
    for (int k = 0; k < n; k++) {
        uint64_t seq = kp_spool_next_seq(f->sp);
        struct kp_obs obs[3];
        memset(obs, 0, sizeof obs);
        for (int j = 0; j < 3; j++) {
            snprintf(obs[j].u, sizeof obs[j].u, "U%d", j);
            snprintf(obs[j].i, sizeof obs[j].i, "I1");
            snprintf(obs[j].p, sizeof obs[j].p, "2024-Q1");
            snprintf(obs[j].ref, sizeof obs[j].ref, "r%" PRIu64 "-%d", seq, j);
            obs[j].val = j + 0.5;
            obs[j].w = 1;
            obs[j].at = 1000;
        }
        struct kp_batch b = {.aid = "stats-1",
                             .scheme = "anshan-2015",
                             .src = "stats",
                             .seq = seq,
                             .sent = 1000,
                             .n_obs = 3,
                             .obs = obs};
        struct kp_buf buf = {0};
        assert_int_equal(kp_batch_encode(&buf, &b), 0);
        char cursor[32];
        snprintf(cursor, sizeof cursor, "c%" PRIu64, seq);
        assert_int_equal(kp_spool_put(f->sp, seq, buf.data, buf.len, 3, cursor), 0);
        kp_buf_fini(&buf);
    }
}

static void open_deliver(struct fx *f, uint32_t inflight, int64_t ack_timeout_ms)
{
    struct adp_deliver_opts o = {
        .endpoint = f->endpoint,
        .aid = "stats-1",
        .scheme = "anshan-2015",
        .inflight = inflight,
        .ack_timeout_ms = ack_timeout_ms,
        .retry_min_ms = 50,
        .retry_max_ms = 2000,
    };
    assert_int_equal(adp_deliver_open(&f->loop, f->sp, &o, &f->am, on_freed, f, &f->d), 0);
}

static void on_closed(void *arg)
{
    ((struct fx *)arg)->closed++;
}

static void tick(uv_timer_t *t)
{
    (void)t;
}

/* Runs the loop until pred(f) or timeout; returns pred's last value. */
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

static uint64_t depth(struct fx *f)
{
    struct kp_spool_stats st;
    assert_int_equal(kp_spool_stats(f->sp, &st), 0);
    return st.depth;
}

static bool spool_empty(struct fx *f)
{
    return depth(f) == 0;
}

static bool never(struct fx *f)
{
    (void)f;
    return false;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/kp_adp_deliver.XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->path, sizeof f->path, "%s/spool.db", f->dir);
    if (uv_loop_init(&f->loop) != 0)
        return -1;
    if (kp_spool_open(f->path, 1u << 24, &f->sp) != 0)
        return -1;
    f->reg = kp_metrics_new();
    adp_metrics_init(&f->am, f->reg);
    if (kp_zsock_open(&f->loop, KP_ZSOCK_ROUTER, NULL, &f->router) != 0 ||
        kp_zsock_bind(f->router, "tcp://127.0.0.1:*") != 0 ||
        kp_zsock_last_endpoint(f->router, f->endpoint, sizeof f->endpoint) != 0 ||
        kp_zsock_start(f->router, on_router, f) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    if (f->d)
        adp_deliver_close(&f->d, on_closed, f);
    kp_zsock_close(&f->router, NULL, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&f->loop);
    kp_spool_close(&f->sp);
    kp_metrics_destroy(&f->reg);
    const char *suffix[] = {"", "-wal", "-shm"};
    for (size_t k = 0; k < 3; k++) {
        char p[160];
        snprintf(p, sizeof p, "%s%s", f->path, suffix[k]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f);
    kp_zctx_term();
    return rc == 0 ? 0 : -1; /* nothing left open on the loop */
}

static bool seen_4(struct fx *f)
{
    return f->n_seen >= 4;
}

static bool seen_3_held(struct fx *f)
{
    return f->n_seen >= 3;
}

/* The window: at most `inflight` unanswered; acks delete and let the next ones go. */
static void test_window_and_acks(void **state)
{
    struct fx *f = *state;
    f->mode = M_HOLD;
    spool_batches(f, 20);
    open_deliver(f, 4, 5000);
    assert_true(run_until(f, seen_4, 3000));
    run_until(f, never, 150); /* nothing more may come while all 4 wait */
    assert_int_equal(f->n_seen, 4);
    assert_int_equal(adp_deliver_inflight(f->d), 4);
    for (size_t k = 0; k < 4; k++)
        assert_int_equal(f->seen[k].seq, k + 1); /* in seq order */

    /* answer two: exactly two more come */
    send_ack(f, &f->seen[0], 0);
    send_ack(f, &f->seen[1], 0);
    run_until(f, never, 300);
    assert_int_equal(f->n_seen, 6);
    assert_int_equal(depth(f), 18);
    assert_int_equal(f->freed_calls, 2);

    /* then ack everything as it comes */
    f->mode = M_ACK;
    for (size_t k = 2; k < f->n_seen; k++)
        send_ack(f, &f->seen[k], f->seen[k].seq == 3 ? 2 : 0);
    assert_true(run_until(f, spool_empty, 5000));
    assert_true(f->max_outstanding <= 4);
    assert_int_equal(adp_deliver_inflight(f->d), 0);
    assert_int_equal((int)kp_counter_get(f->am.batches_acked), 20);
    assert_int_equal((int)kp_counter_get(f->am.batches_sent), 20);
    assert_int_equal((int)kp_counter_get(f->am.retransmits), 0);
    assert_int_equal((int)kp_counter_get(f->am.obs_rejected), 2);
    assert_true(kp_gauge_get(f->am.last_success) > 1e9);

    /* the rej entries of seq 3's ack were recorded */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT count(*), min(code) FROM rejected WHERE seq = 3",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 2);
    assert_string_equal((const char *)sqlite3_column_text(st, 1), "bad_period");
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static bool seen_3(struct fx *f)
{
    return f->n_seen >= 3 && spool_empty(f);
}

static void test_nack_dead_letters(void **state)
{
    struct fx *f = *state;
    f->mode = M_NACK_2;
    spool_batches(f, 3);
    open_deliver(f, 8, 5000);
    assert_true(run_until(f, seen_3, 5000));
    struct kp_spool_stats st;
    assert_int_equal(kp_spool_stats(f->sp, &st), 0);
    assert_int_equal(st.depth, 0);
    assert_int_equal(st.dead, 1);
    assert_int_equal(times_seen(f, 2), 1); /* a permanent refusal is not retried */
    assert_int_equal((int)kp_counter_get(adp_metrics_nacked(&f->am, KP_R_not_granted_scheme)), 1);
    assert_int_equal((int)kp_counter_get(f->am.batches_acked), 2);

    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT seq, code FROM dead", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(s, 0), 2);
    assert_string_equal((const char *)sqlite3_column_text(s, 1), "not_granted_scheme");
    sqlite3_finalize(s);
    sqlite3_close(db);
}

/* An unanswered batch is sent again after the ack timeout, not before. */
static void test_timeout_retransmits(void **state)
{
    struct fx *f = *state;
    f->mode = M_DROP_FIRST;
    spool_batches(f, 2);
    open_deliver(f, 8, 300);
    assert_true(run_until(f, spool_empty, 5000));
    assert_int_equal(times_seen(f, 1), 2);
    assert_int_equal(times_seen(f, 2), 2);
    uint64_t first = 0, second = 0;
    for (size_t k = 0; k < f->n_seen; k++)
        if (f->seen[k].seq == 1) {
            if (!first)
                first = f->seen[k].at_ns;
            else
                second = f->seen[k].at_ns;
        }
    double gap_ms = (double)(second - first) / 1e6;
    assert_true(gap_ms >= 290);
    assert_true(gap_ms < 2000);
    assert_int_equal((int)kp_counter_get(f->am.retransmits), 2);
    assert_int_equal((int)kp_counter_get(f->am.batches_sent), 2);
}

static void test_retry_nack_backs_off(void **state)
{
    struct fx *f = *state;
    f->mode = M_RETRY_FIRST;
    spool_batches(f, 3);
    open_deliver(f, 8, 5000);
    assert_true(run_until(f, spool_empty, 5000));
    for (uint64_t s = 1; s <= 3; s++)
        assert_int_equal(times_seen(f, s), 2);
    assert_int_equal((int)kp_counter_get(adp_metrics_nacked(&f->am, KP_R_overloaded)), 3);
    struct kp_spool_stats st;
    assert_int_equal(kp_spool_stats(f->sp, &st), 0);
    assert_int_equal(st.dead, 0);
}

static bool closed(struct fx *f)
{
    return f->closed > 0;
}

/* After a restart everything still in the spool is sent again (the scorer dedups). */
static void test_restart_resends(void **state)
{
    struct fx *f = *state;
    f->mode = M_HOLD;
    spool_batches(f, 3);
    open_deliver(f, 8, 5000);
    assert_true(run_until(f, seen_3_held, 3000));
    run_until(f, never, 100);
    assert_int_equal(f->n_seen, 3);
    adp_deliver_close(&f->d, on_closed, f);
    assert_null(f->d);
    assert_true(run_until(f, closed, 2000));
    assert_int_equal(depth(f), 3); /* unanswered batches stay */

    f->mode = M_ACK;
    open_deliver(f, 8, 5000);
    assert_true(run_until(f, spool_empty, 5000));
    for (uint64_t s = 1; s <= 3; s++)
        assert_int_equal(times_seen(f, s), 2);
}

int main(void)
{
    kp_log_init("adapter", "test", KP_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_window_and_acks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nack_dead_letters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_retransmits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_nack_backs_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_resends, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
