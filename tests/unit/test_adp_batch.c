/*
 * test_adp_batch: turning a source's text records into one PROTOCOL.md batch
 * (adapters/adp_batch.c, adp_out in adapters/adp_pump.c). Valid records decode as sent;
 * every invalid record is still in the frame and the shared decoder refuses exactly that
 * observation with a reason (issue 2: nothing silently dropped); overlong values are cut to
 * one byte over their limit so the frame stays bounded and the refusal still happens;
 * numbers are never altered.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adp_pump.h"
#include "kp_err.h"
#include "kp_msg.h"

static struct adp_out *out_new(size_t cap)
{
    struct adp_out *o = calloc(1, sizeof *o);
    assert_non_null(o);
    o->cap = cap;
    o->recs = calloc(cap, sizeof *o->recs);
    o->lag = -1;
    return o;
}

static void out_free(struct adp_out *o)
{
    free(o->recs);
    kp_buf_fini(&o->arena);
    kp_buf_fini(&o->cursor);
    free(o);
}

static struct kp_batch *build_decode(struct adp_out *o, size_t *n_invalid)
{
    struct kp_buf b = {0};
    struct adp_batch_hdr h = {"fin-1", "anshan-2015", "finance", 42, 1700000000000LL};
    assert_int_equal(adp_batch_build(&b, &h, o, n_invalid), 0);
    struct kp_msg_limits lim = {KP_DEFAULT_MAX_BYTES, KP_DEFAULT_MAX_OBS};
    struct kp_batch *bt = NULL;
    bool has_seq;
    uint64_t seq;
    char msg[KP_MSG_TEXT_MAX];
    enum kp_reason r = kp_batch_decode(b.data, b.len, &lim, &bt, &has_seq, &seq, msg, sizeof msg);
    if (r != KP_R_OK)
        fail_msg("decode: %s %s", kp_reason_str(r), msg);
    kp_buf_fini(&b);
    assert_int_equal(bt->seq, 42);
    assert_int_equal(bt->sent, 1700000000000LL);
    assert_string_equal(bt->aid, "fin-1");
    assert_string_equal(bt->src, "finance");
    return bt;
}

static void test_valid_records(void **state)
{
    (void)state;
    struct adp_out *o = out_new(4);
    struct adp_rec r1 = {"U1", "I1", "2024-Q1", "12.25", "ref-1", "3", "1699999999000", "0.5"};
    struct adp_rec r2 = {"U2", "I2", "2024", "-7", "ref-2", NULL, NULL, NULL};
    struct adp_rec r3 = {"U3",    "I3", "2024-05-31", "9007199254740993",
                         "ref-3", NULL, NULL,         NULL}; /* 2^53 + 1: beyond double precision */
    assert_int_equal(adp_out_add(o, &r1), 0);
    assert_int_equal(adp_out_add(o, &r2), 0);
    assert_int_equal(adp_out_add(o, &r3), 0);
    assert_int_equal(adp_out_count(o), 3);
    assert_int_equal(adp_out_room(o), 1);
    size_t bad = 99;
    struct kp_batch *b = build_decode(o, &bad);
    assert_int_equal(bad, 1);
    assert_int_equal(b->n_obs, 3);
    assert_int_equal(b->n_rejected, 1);
    /* sent exactly as read, never rounded: the scorer refuses it */
    assert_int_equal(b->obs[2].reason, KP_R_out_of_range);
    assert_string_equal(b->obs[0].u, "U1");
    assert_string_equal(b->obs[0].p, "2024-Q1");
    assert_true(b->obs[0].val == 12.25);
    assert_int_equal(b->obs[0].rev, 3);
    assert_int_equal(b->obs[0].at, 1699999999000LL);
    assert_true(b->obs[0].w == 0.5);
    assert_true(b->obs[1].val == -7);
    assert_int_equal(b->obs[1].rev, 0);
    assert_int_equal(b->obs[1].at, 1700000000000LL); /* default: sent */
    assert_true(b->obs[1].w == 1);
    assert_string_equal(b->obs[2].ref, "ref-3");
    kp_batch_destroy(&b);

    /* all valid: the shared encoder's frame */
    struct adp_out *o2 = out_new(1);
    struct adp_rec r4 = {"U3", "I3", "2024-H2", "9007199254740992", "ref-4", NULL, NULL, NULL};
    assert_int_equal(adp_out_add(o2, &r4), 0);
    b = build_decode(o2, &bad);
    assert_int_equal(bad, 0);
    assert_int_equal(b->n_rejected, 0);
    assert_true(b->obs[0].val == 9007199254740992.0);
    kp_batch_destroy(&b);
    out_free(o2);
    out_free(o);
}

static void test_invalid_records_refused_individually(void **state)
{
    (void)state;
    char long_unit[200], long_ref[1000];
    memset(long_unit, 'U', sizeof long_unit - 1);
    long_unit[sizeof long_unit - 1] = 0;
    memset(long_ref, 'r', sizeof long_ref - 1);
    long_ref[sizeof long_ref - 1] = 0;
    struct adp_rec recs[] = {
        {"U1", "I1", "2024", "1", "ok-1", NULL, NULL, NULL},     /* 0 ok */
        {"U 1", "I1", "2024", "1", "a", NULL, NULL, NULL},       /* 1 bad code */
        {"U1", "I1", "2024-Q5", "1", "b", NULL, NULL, NULL},     /* 2 bad period */
        {"U1", "I1", "2024", "NaN", "c", NULL, NULL, NULL},      /* 3 not finite */
        {"U1", "I1", "2024", "Infinity", "d", NULL, NULL, NULL}, /* 4 not finite */
        {"U1", "I1", "2024", "abc", "e", NULL, NULL, NULL},      /* 5 not a number */
        {NULL, "I1", "2024", "1", "f", NULL, NULL, NULL},        /* 6 missing unit */
        {"U1", "I1", "2024", NULL, "g", NULL, NULL, NULL},       /* 7 missing val */
        {long_unit, "I1", "2024", "1", "h", NULL, NULL, NULL},   /* 8 unit too long */
        {"U1", "I1", "2024", "1", long_ref, NULL, NULL, NULL},   /* 9 ref too long */
        {"U1", "I1", "2024", "1", "i", "-1", NULL, NULL},        /* 10 bad rev */
        {"U1", "I1", "2024", "1", "", NULL, NULL, NULL},         /* 11 empty ref */
        {"U2", "I2", "2024-12", "3.5", "ok-2", "7", NULL, NULL}, /* 12 ok */
    };
    size_t n = sizeof recs / sizeof recs[0];
    struct adp_out *o = out_new(n);
    for (size_t k = 0; k < n; k++)
        assert_int_equal(adp_out_add(o, &recs[k]), 0);
    struct adp_rec extra = {"U1", "I1", "2024", "1", "x", NULL, NULL, NULL};
    assert_int_equal(adp_out_add(o, &extra), KP_EFULL);
    assert_true(adp_out_field_cut(o, 8, ADP_F_U));
    assert_int_equal(strlen(adp_out_field(o, 9, ADP_F_REF)), KP_REF_MAX + 1);

    size_t bad = 0;
    struct kp_batch *b = build_decode(o, &bad);
    assert_int_equal(bad, n - 2);
    assert_int_equal(b->n_obs, n); /* nothing dropped */
    assert_int_equal(b->n_rejected, n - 2);
    assert_int_equal(b->obs[0].reason, KP_R_OK);
    assert_string_equal(b->obs[0].ref, "ok-1");
    assert_int_equal(b->obs[12].reason, KP_R_OK);
    assert_int_equal(b->obs[12].rev, 7);
    assert_true(b->obs[12].val == 3.5);
    for (size_t k = 1; k < 12; k++)
        if (b->obs[k].reason == KP_R_OK)
            fail_msg("record %zu was not refused", k);
    assert_int_equal(b->obs[2].reason, KP_R_bad_period);
    assert_int_equal(b->obs[3].reason, KP_R_not_finite);
    assert_int_equal(b->obs[4].reason, KP_R_not_finite);
    /* the ref of a refused record is still there for its rejection row */
    assert_string_equal(b->obs[2].ref, "b");
    kp_batch_destroy(&b);
    out_free(o);
}

static void test_cursor_more_lag(void **state)
{
    (void)state;
    struct adp_out *o = out_new(1);
    assert_false(o->has_cursor);
    adp_out_set_cursor(o, "2024-01-01 00:00:00+00|5");
    assert_true(o->has_cursor);
    assert_string_equal(kp_buf_cstr(&o->cursor), "2024-01-01 00:00:00+00|5");
    adp_out_set_cursor(o, NULL);
    assert_false(o->has_cursor);
    adp_out_set_more(o, true);
    assert_true(o->more);
    adp_out_set_lag(o, 2.5);
    assert_true(o->lag == 2.5);
    out_free(o);
}

static void test_bad_header_is_config_error(void **state)
{
    (void)state;
    struct adp_out *o = out_new(1);
    struct kp_buf b = {0};
    struct adp_batch_hdr h = {"bad aid", "s", "src", 1, 1};
    size_t bad;
    assert_int_equal(adp_batch_build(&b, &h, o, &bad), KP_EINVAL);
    kp_buf_fini(&b);
    out_free(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_records),
        cmocka_unit_test(test_invalid_records_refused_individually),
        cmocka_unit_test(test_cursor_more_lag),
        cmocka_unit_test(test_bad_header_is_config_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
