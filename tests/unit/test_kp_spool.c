/*
 * test_kp_spool: the adapter's durable spool (lib/kp_spool.c). Put, scan, ack and dead
 * letters; the cursor stored atomically with its batch; reopening keeps next_seq and the
 * waiting batches (also after every batch was acked); the byte bound refuses with KP_EFULL
 * and lets puts resume once acks free space; and a crash test that SIGKILLs a writer at
 * random moments and checks after each kill that every stored batch has its cursor, no seq
 * was reused and the stored cursor belongs to the last stored batch (ARCHITECTURE.md
 * guarantee 1, PROTOCOL.md batch.seq).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kp_err.h"
#include "kp_spool.h"
#include "test_util.h"

/* A fresh directory per test with the spool file <dir>/spool.db (test_util.h). */
static int setup(void **state)
{
    return tu_sqlite_dir_setup(state, "/tmp/kp_spool_test.XXXXXX", "spool.db");
}

static int teardown(void **state)
{
    return tu_sqlite_dir_teardown(state);
}

/* Puts a batch with payload "b<seq>:" + pad bytes and cursor "c<seq>". */
static int put_one(struct kp_spool *sp, size_t pad, uint64_t *seq_out)
{
    uint64_t seq = kp_spool_next_seq(sp);
    char payload[4096];
    int n = snprintf(payload, sizeof payload, "b%" PRIu64 ":", seq);
    if (pad > sizeof payload - (size_t)n)
        pad = sizeof payload - (size_t)n;
    memset(payload + n, 'x', pad);
    char cursor[32];
    snprintf(cursor, sizeof cursor, "c%" PRIu64, seq);
    if (seq_out)
        *seq_out = seq;
    return kp_spool_put(sp, seq, payload, (size_t)n + pad, 3, cursor);
}

struct collect {
    uint64_t seqs[256];
    size_t n;
    size_t stop_after; /* 0 = never */
    int bad;           /* payload does not start with b<seq>: */
};

static int collect_fn(const struct kp_spool_item *it, void *arg)
{
    struct collect *c = arg;
    char prefix[32];
    int n = snprintf(prefix, sizeof prefix, "b%" PRIu64 ":", it->seq);
    if (it->len < (size_t)n || memcmp(it->payload, prefix, (size_t)n) != 0)
        c->bad++;
    if (c->n < sizeof c->seqs / sizeof c->seqs[0])
        c->seqs[c->n] = it->seq;
    c->n++;
    return c->stop_after && c->n >= c->stop_after;
}

static void test_put_scan_ack_dead(void **state)
{
    struct tu_sqlite_dir *f = *state;
    struct kp_spool *sp = NULL;
    assert_int_equal(kp_spool_open(f->path, 1 << 20, &sp), 0);
    assert_int_equal(kp_spool_next_seq(sp), 1);

    char cur[64];
    assert_int_equal(kp_spool_cursor(sp, cur, sizeof cur), 0);
    assert_string_equal(cur, "");

    for (int i = 0; i < 5; i++)
        assert_int_equal(put_one(sp, 10, NULL), 0);
    assert_int_equal(kp_spool_next_seq(sp), 6);
    assert_int_equal(kp_spool_cursor(sp, cur, sizeof cur), 0);
    assert_string_equal(cur, "c5");

    /* a wrong seq is refused and stores nothing */
    assert_int_equal(kp_spool_put(sp, 3, "z", 1, 1, "bad"), KP_EINVAL);
    assert_int_equal(kp_spool_put(sp, 7, "z", 1, 1, "bad"), KP_EINVAL);
    assert_int_equal(kp_spool_cursor(sp, cur, sizeof cur), 0);
    assert_string_equal(cur, "c5");

    struct collect c = {0};
    assert_int_equal(kp_spool_scan(sp, 0, 100, collect_fn, &c), 5);
    assert_int_equal(c.n, 5);
    assert_int_equal(c.bad, 0);
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(c.seqs[i], i + 1);

    /* after_seq and max */
    memset(&c, 0, sizeof c);
    assert_int_equal(kp_spool_scan(sp, 2, 2, collect_fn, &c), 2);
    assert_int_equal(c.seqs[0], 3);
    assert_int_equal(c.seqs[1], 4);
    /* early stop */
    memset(&c, 0, sizeof c);
    c.stop_after = 1;
    assert_int_equal(kp_spool_scan(sp, 0, 100, collect_fn, &c), 1);

    struct kp_spool_stats st;
    assert_int_equal(kp_spool_stats(sp, &st), 0);
    assert_int_equal(st.depth, 5);
    assert_true(st.bytes > 5 * 10);
    assert_true(st.oldest_ms > 0);
    assert_int_equal(st.dead, 0);

    /* ack deletes; a duplicate or unknown ack is not an error */
    assert_int_equal(kp_spool_ack(sp, 2), 0);
    assert_int_equal(kp_spool_ack(sp, 2), 0);
    assert_int_equal(kp_spool_ack(sp, 999), 0);
    /* dead letters move out of the waiting set */
    assert_int_equal(kp_spool_dead(sp, 4, "bad_field", "scheme not granted"), 0);
    assert_int_equal(kp_spool_dead(sp, 4, "bad_field", "again"), 0);
    assert_int_equal(kp_spool_rejected(sp, 1, 0, "unknown_unit", "unit x"), 0);
    assert_int_equal(kp_spool_rejected(sp, 1, 0, "unknown_unit", "unit x"), 0);

    memset(&c, 0, sizeof c);
    assert_int_equal(kp_spool_scan(sp, 0, 100, collect_fn, &c), 3);
    assert_int_equal(c.seqs[0], 1);
    assert_int_equal(c.seqs[1], 3);
    assert_int_equal(c.seqs[2], 5);
    assert_int_equal(kp_spool_stats(sp, &st), 0);
    assert_int_equal(st.depth, 3);
    assert_int_equal(st.dead, 1);

    /* empty spool: oldest 0 */
    assert_int_equal(kp_spool_ack(sp, 1), 0);
    assert_int_equal(kp_spool_ack(sp, 3), 0);
    assert_int_equal(kp_spool_ack(sp, 5), 0);
    assert_int_equal(kp_spool_stats(sp, &st), 0);
    assert_int_equal(st.depth, 0);
    assert_int_equal(st.bytes, 0);
    assert_int_equal(st.oldest_ms, 0);

    kp_spool_close(&sp);
    assert_null(sp);
    kp_spool_close(&sp); /* accepts NULL */
}

static void test_cursor_null_keeps(void **state)
{
    struct tu_sqlite_dir *f = *state;
    struct kp_spool *sp = NULL;
    assert_int_equal(kp_spool_open(f->path, 1 << 20, &sp), 0);
    assert_int_equal(put_one(sp, 0, NULL), 0);
    uint64_t seq = kp_spool_next_seq(sp);
    assert_int_equal(kp_spool_put(sp, seq, "b2:", 3, 1, NULL), 0);
    char cur[64];
    assert_int_equal(kp_spool_cursor(sp, cur, sizeof cur), 0);
    assert_string_equal(cur, "c1");
    /* a buffer too small for the cursor gets an error, never a cut cursor */
    char tiny[2];
    assert_int_equal(kp_spool_cursor(sp, tiny, sizeof tiny), KP_EINVAL);
    assert_string_equal(tiny, "");
    kp_spool_close(&sp);
}

static void test_reopen_persists(void **state)
{
    struct tu_sqlite_dir *f = *state;
    struct kp_spool *sp = NULL;
    assert_int_equal(kp_spool_open(f->path, 1 << 20, &sp), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(put_one(sp, 100, NULL), 0);
    assert_int_equal(kp_spool_ack(sp, 1), 0);
    kp_spool_close(&sp);

    assert_int_equal(kp_spool_open(f->path, 1 << 20, &sp), 0);
    assert_int_equal(kp_spool_next_seq(sp), 5);
    char cur[64];
    assert_int_equal(kp_spool_cursor(sp, cur, sizeof cur), 0);
    assert_string_equal(cur, "c4");
    struct collect c = {0};
    assert_int_equal(kp_spool_scan(sp, 0, 100, collect_fn, &c), 3);
    assert_int_equal(c.seqs[0], 2);
    assert_int_equal(c.seqs[2], 4);
    struct kp_spool_stats st;
    assert_int_equal(kp_spool_stats(sp, &st), 0);
    assert_int_equal(st.depth, 3);
    assert_int_equal(st.bytes, 3 * (100 + 3));

    /* ack everything: the next seq must not go back after reopening */
    for (uint64_t s = 2; s <= 4; s++)
        assert_int_equal(kp_spool_ack(sp, s), 0);
    kp_spool_close(&sp);
    assert_int_equal(kp_spool_open(f->path, 1 << 20, &sp), 0);
    assert_int_equal(kp_spool_next_seq(sp), 5);
    assert_int_equal(kp_spool_stats(sp, &st), 0);
    assert_int_equal(st.depth, 0);
    uint64_t seq;
    assert_int_equal(put_one(sp, 1, &seq), 0);
    assert_int_equal(seq, 5);
    kp_spool_close(&sp);
}

static void test_full_and_resume(void **state)
{
    struct tu_sqlite_dir *f = *state;
    struct kp_spool *sp = NULL;
    /* payload of put_one(sp, 297) is "bN:" (3 bytes) + 297 = 300 bytes for N < 10 */
    assert_int_equal(kp_spool_open(f->path, 1000, &sp), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(put_one(sp, 297, NULL), 0);
    struct kp_spool_stats st;
    assert_int_equal(kp_spool_stats(sp, &st), 0);
    assert_int_equal(st.bytes, 900);

    assert_int_equal(put_one(sp, 297, NULL), KP_EFULL);
    /* nothing stored: seq, cursor and depth unchanged */
    assert_int_equal(kp_spool_next_seq(sp), 4);
    char cur[64];
    assert_int_equal(kp_spool_cursor(sp, cur, sizeof cur), 0);
    assert_string_equal(cur, "c3");
    assert_int_equal(kp_spool_stats(sp, &st), 0);
    assert_int_equal(st.depth, 3);
    /* exactly at the bound fits */
    assert_int_equal(put_one(sp, 97, NULL), 0); /* 100 bytes: 1000 in all */
    assert_int_equal(put_one(sp, 0, NULL), KP_EFULL);

    /* acks free space and puts resume */
    assert_int_equal(kp_spool_ack(sp, 1), 0);
    assert_int_equal(put_one(sp, 297, NULL), 0);
    assert_int_equal(kp_spool_next_seq(sp), 6);
    assert_int_equal(put_one(sp, 0, NULL), KP_EFULL);
    /* dead letters free space as well */
    assert_int_equal(kp_spool_dead(sp, 2, "too_large", "x"), 0);
    assert_int_equal(put_one(sp, 200, NULL), 0);
    kp_spool_close(&sp);

    /* the bound survives reopening (bytes recomputed from the file) */
    assert_int_equal(kp_spool_open(f->path, 1000, &sp), 0);
    assert_int_equal(put_one(sp, 297, NULL), KP_EFULL);
    kp_spool_close(&sp);

    /* an oversized batch still goes into an empty spool, so it cannot wedge an adapter */
    assert_int_equal(kp_spool_open(f->path, 10, &sp), 0);
    for (uint64_t s = 3; s <= 7; s++)
        assert_int_equal(kp_spool_ack(sp, s), 0);
    assert_int_equal(put_one(sp, 50, NULL), 0);
    assert_int_equal(put_one(sp, 0, NULL), KP_EFULL);
    kp_spool_close(&sp);
}

static void test_open_fails_cleanly(void **state)
{
    (void)state;
    struct kp_spool *sp = (struct kp_spool *)1;
    assert_int_equal(kp_spool_open("/nonexistent-dir/x/spool.db", 100, &sp), KP_EIO);
    assert_null(sp);
}

/* The writer of the crash test: puts batches forever, acking every third one right after
 * putting it, until it is killed. */
static _Noreturn void crash_writer(const char *path)
{
    struct kp_spool *sp = NULL;
    if (kp_spool_open(path, UINT64_MAX, &sp) != 0)
        _exit(3);
    unsigned r = (unsigned)getpid();
    for (;;) {
        uint64_t seq;
        r = r * 1103515245u + 12345u;
        int rc = put_one(sp, (r >> 8) % 2000, &seq);
        if (rc != 0)
            _exit(4);
        if (seq % 3 == 0 && kp_spool_ack(sp, seq) != 0)
            _exit(5);
    }
}

static void test_crash_kill9(void **state)
{
    struct tu_sqlite_dir *f = *state;
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    uint64_t prev_next = 1;
    int kills = 0, rounds = 10;
    for (int round = 0; round < rounds; round++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
            crash_writer(f->path);
        struct timespec ts = {0, (long)(5 + rand() % 120) * 1000000L};
        nanosleep(&ts, NULL);
        assert_int_equal(kill(pid, SIGKILL), 0);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
            kills++;
        else
            fail_msg("writer exited by itself, status %d", status);

        struct kp_spool *sp = NULL;
        assert_int_equal(kp_spool_open(f->path, UINT64_MAX, &sp), 0);
        uint64_t next = kp_spool_next_seq(sp);
        /* no seq reused: next_seq never goes back */
        assert_true(next >= prev_next);
        char cur[64];
        assert_int_equal(kp_spool_cursor(sp, cur, sizeof cur), 0);
        if (next > 1) {
            /* the stored cursor is the one of the last stored batch */
            char want[32];
            snprintf(want, sizeof want, "c%" PRIu64, next - 1);
            assert_string_equal(cur, want);
        } else {
            assert_string_equal(cur, "");
        }
        /* every batch below next_seq that was not acked is there with its own payload;
         * none at or above next_seq */
        uint64_t expect = 1;
        struct collect c;
        uint64_t after = 0;
        for (;;) {
            memset(&c, 0, sizeof c);
            int n = kp_spool_scan(sp, after, 256, collect_fn, &c);
            assert_true(n >= 0);
            assert_int_equal(c.bad, 0);
            for (size_t i = 0; i < c.n; i++) {
                uint64_t s = c.seqs[i];
                assert_true(s < next);
                for (; expect < s; expect++)
                    if (expect % 3 != 0)
                        fail_msg("batch %" PRIu64 " lost (next_seq %" PRIu64 ")", expect, next);
                expect = s + 1;
                after = s;
            }
            if (c.n < 256)
                break;
        }
        for (; expect < next; expect++)
            if (expect % 3 != 0)
                fail_msg("batch %" PRIu64 " lost (next_seq %" PRIu64 ")", expect, next);
        prev_next = next;
        kp_spool_close(&sp);
    }
    assert_int_equal(kills, rounds);
    assert_true(prev_next > 1); /* the writers got somewhere */
    print_message("crash test: %d kills, %" PRIu64 " batches written\n", kills, prev_next - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put_scan_ack_dead, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cursor_null_keeps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_persists, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_and_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_fails_cleanly, NULL, NULL),
        cmocka_unit_test_setup_teardown(test_crash_kill9, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
