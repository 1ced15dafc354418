/*
 * test_kp_msg: the wire codec (lib/kp_msg.c, kp_msg_enc.c, kp_reason.c) against PROTOCOL.md
 * v1: a round trip of every message, every refusal the decoder can give with its reason code
 * (batch level and observation level), the validation helpers, the encoders' own refusals
 * and the msgpack-to-JSON conversion of x. Hostile frames and fuzzing live in
 * test_kp_msg_hostile.c.
 *
 * Test frames are written as JSON with single quotes (readable tables) and packed with
 * msgpack-c; strings starting with '#' are markers for what JSON cannot say (NaN, float32,
 * uint64 beyond int64, binary, ext, raw msgpack bytes, long or broken strings).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kp_buf.h"
#include "kp_err.h"
#include "kp_msg.h"
#include "kp_reason.h"

/* ---- JSON with markers -> msgpack --------------------------------------------------------- */

static int buf_write(void *data, const char *buf, size_t len)
{
    kp_buf_append(data, buf, len);
    return 0;
}

static void pack_marker(msgpack_packer *pk, struct kp_buf *out, const char *s)
{
    if (strcmp(s, "#nan") == 0) {
        msgpack_pack_double(pk, NAN);
    } else if (strcmp(s, "#inf") == 0) {
        msgpack_pack_double(pk, INFINITY);
    } else if (strcmp(s, "#-inf") == 0) {
        msgpack_pack_double(pk, -INFINITY);
    } else if (strcmp(s, "#-0") == 0) {
        msgpack_pack_double(pk, -0.0);
    } else if (strncmp(s, "#f32:", 5) == 0) {
        msgpack_pack_float(pk, strtof(s + 5, NULL));
    } else if (strcmp(s, "#u64max") == 0) {
        msgpack_pack_uint64(pk, UINT64_MAX);
    } else if (strncmp(s, "#u:", 3) == 0) {
        msgpack_pack_uint64(pk, strtoull(s + 3, NULL, 10));
    } else if (strncmp(s, "#i64:", 5) == 0) { /* a positive value in the int64 format */
        msgpack_pack_fix_int64(pk, strtoll(s + 5, NULL, 10));
    } else if (strcmp(s, "#bin") == 0) {
        msgpack_pack_bin_with_body(pk, "abc", 3);
    } else if (strcmp(s, "#ext") == 0) {
        msgpack_pack_ext_with_body(pk, "a", 1, 5);
    } else if (strncmp(s, "#str:", 5) == 0) {
        size_t n = strtoul(s + 5, NULL, 10);
        char *body = malloc(n ? n : 1);
        memset(body, 'a', n);
        msgpack_pack_str_with_body(pk, body, n);
        free(body);
    } else if (strcmp(s, "#badutf8") == 0) {
        msgpack_pack_str_with_body(pk, "a\xc3\x28", 3);
    } else if (strcmp(s, "#nul") == 0) {
        msgpack_pack_str_with_body(pk, "a\0b", 3);
    } else if (strncmp(s, "#raw:", 5) == 0) {
        for (const char *h = s + 5; h[0] && h[1]; h += 2) {
            char hex[3] = {h[0], h[1], 0};
            uint8_t byte = (uint8_t)strtoul(hex, NULL, 16);
            kp_buf_append(out, &byte, 1);
        }
    } else {
        fail_msg("unknown marker %s", s);
    }
}

static void pack_json(msgpack_packer *pk, struct kp_buf *out, json_t *j)
{
    const char *key;
    json_t *val;
    size_t k;
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        msgpack_pack_map(pk, json_object_size(j));
        json_object_foreach(j, key, val) {
            if (key[0] == '#')
                pack_marker(pk, out, key);
            else
                msgpack_pack_str_with_body(pk, key, strlen(key));
            pack_json(pk, out, val);
        }
        break;
    case JSON_ARRAY:
        msgpack_pack_array(pk, json_array_size(j));
        json_array_foreach(j, k, val) pack_json(pk, out, val);
        break;
    case JSON_STRING:
        if (json_string_value(j)[0] == '#')
            pack_marker(pk, out, json_string_value(j));
        else
            msgpack_pack_str_with_body(pk, json_string_value(j), json_string_length(j));
        break;
    case JSON_INTEGER:
        msgpack_pack_int64(pk, json_integer_value(j));
        break;
    case JSON_REAL:
        msgpack_pack_double(pk, json_real_value(j));
        break;
    case JSON_TRUE:
        msgpack_pack_true(pk);
        break;
    case JSON_FALSE:
        msgpack_pack_false(pk);
        break;
    case JSON_NULL:
        msgpack_pack_nil(pk);
        break;
    }
}

/* JSON with single quotes -> json_t. */
static json_t *jparse(const char *sq)
{
    char *s = strdup(sq);
    for (char *c = s; *c; c++)
        if (*c == '\'')
            *c = '"';
    json_error_t err;
    json_t *j = json_loads(s, JSON_DECODE_ANY, &err);
    if (!j)
        fail_msg("bad test JSON %s: %s", sq, err.text);
    free(s);
    return j;
}

static void pack_j(struct kp_buf *out, json_t *j)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, buf_write);
    kp_buf_reset(out);
    pack_json(&pk, out, j);
}

static void jframe(struct kp_buf *out, const char *sq)
{
    json_t *j = jparse(sq);
    pack_j(out, j);
    json_decref(j);
}

#define OBS_OK "{'u':'U1','i':'I1','p':'2024-Q1','val':1.5,'ref':'r1'}"
#define BATCH_OK                                                                                   \
    "{'t':'batch','v':1,'aid':'a1','scheme':'s1','src':'stats','seq':7,'sent':1700000000000,"     \
    "'obs':[" OBS_OK "," OBS_OK "," OBS_OK "]}"

/* The valid batch with key set to value (JSON) or removed (value NULL). */
static void batch_with(struct kp_buf *out, const char *key, const char *value)
{
    json_t *b = jparse(BATCH_OK);
    if (value)
        json_object_set_new(b, key, jparse(value));
    else
        json_object_del(b, key);
    pack_j(out, b);
    json_decref(b);
}

/* The valid batch with obs[1] changed: key set/removed, or (key NULL) obs[1] replaced. */
static void obs_with(struct kp_buf *out, const char *key, const char *value)
{
    json_t *b = jparse(BATCH_OK);
    json_t *obs = json_object_get(b, "obs");
    if (!key)
        json_array_set_new(obs, 1, jparse(value));
    else if (value)
        json_object_set_new(json_array_get(obs, 1), key, jparse(value));
    else
        json_object_del(json_array_get(obs, 1), key);
    pack_j(out, b);
    json_decref(b);
}

static const struct kp_msg_limits LIM = {KP_DEFAULT_MAX_BYTES, KP_DEFAULT_MAX_OBS};

static unsigned reached; /* bit per reason seen from the decoders, for test_every_reason */

static enum kp_reason decode(const struct kp_buf *f, struct kp_batch **b, bool *has_seq,
                             uint64_t *seq, char *msg, size_t msg_len)
{
    enum kp_reason r = kp_batch_decode(f->data, f->len, &LIM, b, has_seq, seq, msg, msg_len);
    reached |= 1u << r;
    return r;
}

/* ---- kp_reason ---------------------------------------------------------------------------- */

static void test_reason_table(void **state)
{
    (void)state;
    assert_string_equal(kp_reason_str(KP_R_OK), "ok");
    assert_string_equal(kp_reason_str(KP_R_bad_msgpack), "bad_msgpack");
    assert_string_equal(kp_reason_str(KP_R_scorer_unavailable), "scorer_unavailable");
    assert_string_equal(kp_reason_str(KP_R__COUNT), "unknown");
    assert_string_equal(kp_reason_str((enum kp_reason)-1), "unknown");
    for (int r = KP_R_OK + 1; r < KP_R__COUNT; r++) {
        const char *s = kp_reason_str((enum kp_reason)r);
        assert_int_equal(kp_reason_parse(s, strlen(s)), r);
        bool transient = r == KP_R_overloaded || r == KP_R_scorer_unavailable;
        assert_int_equal(kp_reason_retry((enum kp_reason)r), transient);
    }
    assert_int_equal(kp_reason_parse("ok", 2), KP_R__COUNT);
    assert_int_equal(kp_reason_parse("bad", 3), KP_R__COUNT);
    assert_int_equal(kp_reason_parse("bad_msgpackx", 12), KP_R__COUNT);
    assert_int_equal(kp_reason_parse("bad_msgpack", 10), KP_R__COUNT);
    assert_int_equal(kp_reason_parse(NULL, 0), KP_R__COUNT);
    assert_false(kp_reason_retry(KP_R_OK));
    /* the wire strings are exactly PROTOCOL.md's */
    static const char *const proto[] = {
        "bad_msgpack",   "bad_version",           "bad_type",     "missing_field",
        "bad_field",     "too_large",             "not_granted_scheme",
        "not_granted_indicator",                  "unknown_unit", "unknown_indicator",
        "bad_period",    "not_finite",            "out_of_range", "overloaded",
        "scorer_unavailable",
    };
    for (size_t k = 0; k < sizeof proto / sizeof proto[0]; k++)
        assert_int_not_equal(kp_reason_parse(proto[k], strlen(proto[k])), KP_R__COUNT);
}

/* ---- validation helpers ------------------------------------------------------------------- */

static void test_code_valid(void **state)
{
    (void)state;
    char c64[65], c65[66];
    memset(c64, 'a', 64);
    c64[64] = 0;
    memset(c65, 'a', 65);
    c65[65] = 0;
    assert_true(kp_code_valid("a", 1));
    assert_true(kp_code_valid("anshan-2015", 11));
    assert_true(kp_code_valid("A.b_c:d-9", 9));
    assert_true(kp_code_valid(c64, 64));
    assert_false(kp_code_valid(c65, 65));
    assert_false(kp_code_valid("", 0));
    assert_false(kp_code_valid(NULL, 0));
    assert_false(kp_code_valid("a b", 3));
    assert_false(kp_code_valid("a/b", 3));
    assert_false(kp_code_valid("a\0b", 3));
    assert_false(kp_code_valid("\xe5\x8d\x95", 3));
    assert_false(kp_code_valid("a+b", 3));
}

static bool period(const char *s, enum kp_period_kind *k)
{
    return kp_period_valid(s, strlen(s), k);
}

static void test_period_valid(void **state)
{
    (void)state;
    enum kp_period_kind k;
    assert_true(period("2024", &k));
    assert_int_equal(k, KP_PERIOD_YEAR);
    assert_true(period("2024-H1", &k));
    assert_int_equal(k, KP_PERIOD_HALF);
    assert_true(period("2024-H2", NULL));
    assert_true(period("2024-Q1", &k));
    assert_int_equal(k, KP_PERIOD_QUARTER);
    assert_true(period("2024-Q4", NULL));
    assert_true(period("2024-01", &k));
    assert_int_equal(k, KP_PERIOD_MONTH);
    assert_true(period("2024-12", NULL));
    assert_true(period("2024-01-31", &k));
    assert_int_equal(k, KP_PERIOD_DAY);
    assert_true(period("2024-02-29", NULL)); /* leap */
    assert_true(period("2000-02-29", NULL)); /* leap: divisible by 400 */
    assert_true(period("1900", NULL));
    assert_true(period("2999-12-31", NULL));
    assert_true(period("2023-04-30", NULL));

    static const char *const bad[] = {
        "", "202", "20245", "1899", "3000", "abcd", "2024-", "2024-H0", "2024-H3", "2024-h1",
        "2024-Q0", "2024-Q5", "2024-q1", "2024-00", "2024-13", "2024-1", "2024-1a",
        "2024-02-30", "2023-02-29", "1900-02-29", "2100-02-29", "2024-04-31", "2024-01-00",
        "2024-01-32", "2024-01-1", "2024/01/01", "2024-01/01", "2024 ", " 2024", "2024-Q1 ",
        "2024-01-01T", "+024", "2024-W01", "2024-H1-1",
    };
    for (size_t n = 0; n < sizeof bad / sizeof bad[0]; n++)
        if (period(bad[n], NULL))
            fail_msg("period \"%s\" accepted", bad[n]);
    assert_false(kp_period_valid(NULL, 4, NULL));
    assert_false(kp_period_valid("2024\0", 5, NULL));
}

static void test_utf8_valid(void **state)
{
    (void)state;
    assert_true(kp_utf8_valid("", 0));
    assert_true(kp_utf8_valid("abc", 3));
    assert_true(kp_utf8_valid("\xe9\x9e\x8d\xe5\xb1\xb1", 6));     /* 鞍山 */
    assert_true(kp_utf8_valid("\xf0\x9f\x98\x80", 4));             /* U+1F600 */
    assert_true(kp_utf8_valid("\xf4\x8f\xbf\xbf", 4));             /* U+10FFFF */
    assert_true(kp_utf8_valid("\xed\x9f\xbf", 3));                 /* U+D7FF */
    assert_true(kp_utf8_valid("\xc2\x80", 2));                     /* U+0080 */
    assert_false(kp_utf8_valid("a\0b", 3));                        /* NUL */
    assert_false(kp_utf8_valid("\xc0\x80", 2));                    /* overlong NUL */
    assert_false(kp_utf8_valid("\xc1\xbf", 2));                    /* overlong */
    assert_false(kp_utf8_valid("\xe0\x80\xaf", 3));                /* overlong */
    assert_false(kp_utf8_valid("\xf0\x80\x80\xaf", 4));            /* overlong */
    assert_false(kp_utf8_valid("\xed\xa0\x80", 3));                /* surrogate */
    assert_false(kp_utf8_valid("\xf4\x90\x80\x80", 4));            /* > U+10FFFF */
    assert_false(kp_utf8_valid("\xf5\x80\x80\x80", 4));
    assert_false(kp_utf8_valid("\xe9\x9e", 2));                    /* truncated */
    assert_false(kp_utf8_valid("\x80", 1));                        /* lone continuation */
    assert_false(kp_utf8_valid("\xc3\x28", 2));                    /* bad continuation */
    assert_false(kp_utf8_valid("\xff", 1));
}

/* ---- round trips -------------------------------------------------------------------------- */

/* Every frame an encoder writes is also plain msgpack to msgpack-c: one map, no extra bytes. */
static void assert_msgpack_c_reads(const struct kp_buf *f, size_t n_keys)
{
    msgpack_unpacked u;
    size_t off = 0;
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, (const char *)f->data, f->len, &off),
                     MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, f->len);
    assert_int_equal(u.data.type, MSGPACK_OBJECT_MAP);
    assert_int_equal(u.data.via.map.size, n_keys);
    msgpack_unpacked_destroy(&u);
}

static void fill_obs(struct kp_obs *o, const char *u, const char *i, const char *p, double val,
                     const char *ref)
{
    memset(o, 0, sizeof *o);
    snprintf(o->u, sizeof o->u, "%s", u);
    snprintf(o->i, sizeof o->i, "%s", i);
    snprintf(o->p, sizeof o->p, "%s", p);
    snprintf(o->ref, sizeof o->ref, "%s", ref);
    o->val = val;
    o->w = 1;
}

static void test_roundtrip_batch(void **state)
{
    (void)state;
    struct kp_buf x = {0}, f = {0}, json = {0};
    jframe(&x, "{'dept':'\xe8\xb4\xa2\xe6\x94\xbf','n':[1,-2,2.5,null,true],'m':{'k':'v'}}");

    struct kp_obs obs[7];
    fill_obs(&obs[0], "U1", "I1", "2024", 1.5, "r0");
    fill_obs(&obs[1], "unit:7", "ind.rate_2", "2024-H2", -3, "finance/\xe5\x87\xad\xe8\xaf\x81/1");
    obs[1].rev = UINT64_MAX;
    obs[1].at = -1;
    obs[1].w = 0.25;
    obs[1].x = x.data;
    obs[1].x_len = x.len;
    fill_obs(&obs[2], "U2", "I2", "2024-Q3", 9007199254740992.0, "r2"); /* 2^53: as int */
    obs[2].w = 3;
    fill_obs(&obs[3], "U3", "I3", "2024-02", 1e300, "r3");
    obs[3].at = 1700000000000;
    fill_obs(&obs[4], "U4", "I4", "2024-02-29", -0.0, "r4");
    fill_obs(&obs[5], "U5", "I5", "1900-01-01", 0.1, "r5");
    fill_obs(&obs[6], "U6", "I6", "2999-12", -1e-300, "r6");
    char ref256[KP_REF_MAX + 1];
    memset(ref256, 'z', KP_REF_MAX);
    ref256[KP_REF_MAX] = 0;
    memcpy(obs[6].ref, ref256, sizeof ref256);
    for (int k = 0; k < 7; k++)
        if (k != 1 && k != 3)
            obs[k].at = 1700000000123; /* = sent: left out on the wire, the default back */

    struct kp_batch in = {
        .aid = "adapter-finance", .scheme = "anshan-2015", .src = "finance",
        .seq = 18446744073709551615u, .sent = 1700000000123, .n_obs = 7, .obs = obs,
    };
    assert_int_equal(kp_batch_encode(&f, &in), 0);
    assert_msgpack_c_reads(&f, 8);

    struct kp_batch *b = NULL;
    bool has_seq = false;
    uint64_t seq = 0;
    char msg[KP_MSG_TEXT_MAX] = "junk";
    assert_int_equal(decode(&f, &b, &has_seq, &seq, msg, sizeof msg), KP_R_OK);
    assert_string_equal(msg, "");
    assert_true(has_seq);
    assert_true(seq == UINT64_MAX);
    assert_string_equal(b->aid, in.aid);
    assert_string_equal(b->scheme, in.scheme);
    assert_string_equal(b->src, in.src);
    assert_true(b->seq == in.seq);
    assert_true(b->sent == in.sent);
    assert_int_equal(b->n_obs, 7);
    assert_int_equal(b->n_rejected, 0);
    for (int k = 0; k < 7; k++) {
        const struct kp_obs *o = &b->obs[k], *e = &obs[k];
        assert_int_equal(o->reason, KP_R_OK);
        assert_string_equal(o->msg, "");
        assert_string_equal(o->u, e->u);
        assert_string_equal(o->i, e->i);
        assert_string_equal(o->p, e->p);
        assert_string_equal(o->ref, e->ref);
        assert_memory_equal(&o->val, &e->val, sizeof(double)); /* bit for bit, -0.0 too */
        assert_true(o->rev == e->rev);
        assert_true(o->at == e->at);
        assert_true(o->w == e->w);
        assert_int_equal(o->x_len, e->x_len);
        if (e->x) {
            /* x points into the frame, byte for byte what was sent */
            assert_true(o->x >= f.data && o->x + o->x_len <= f.data + f.len);
            assert_memory_equal(o->x, e->x, e->x_len);
        } else {
            assert_null(o->x);
        }
    }
    assert_int_equal(kp_msgpack_to_json(b->obs[1].x, b->obs[1].x_len, &json), 0);
    assert_string_equal(kp_buf_cstr(&json),
                        "{\"dept\":\"\xe8\xb4\xa2\xe6\x94\xbf\",\"n\":[1,-2,2.5,null,true],"
                        "\"m\":{\"k\":\"v\"}}");
    kp_batch_destroy(&b);
    assert_null(b);
    kp_batch_destroy(&b); /* NULL-safe */
    kp_batch_destroy(NULL);

    /* an empty batch is a batch */
    in.n_obs = 0;
    in.obs = NULL;
    kp_buf_reset(&f);
    assert_int_equal(kp_batch_encode(&f, &in), 0);
    assert_int_equal(decode(&f, &b, NULL, NULL, NULL, 0), KP_R_OK);
    assert_int_equal(b->n_obs, 0);
    kp_batch_destroy(&b);
    kp_buf_fini(&f);
    kp_buf_fini(&x);
    kp_buf_fini(&json);
}

static void test_roundtrip_ack(void **state)
{
    (void)state;
    struct kp_buf f = {0};
    char long_msg[600];
    /* 300 x "é" (2 bytes): cut to 254 bytes, at a character boundary */
    for (int k = 0; k < 300; k++)
        memcpy(long_msg + 2 * k, "\xc3\xa9", 2);
    long_msg[600 - 1] = 0;
    long_msg[598] = 0;
    struct kp_rej rej[3] = {
        {0, KP_R_bad_period, "p: not a period"},
        {4294967295u, KP_R_unknown_unit, NULL},
        {17, KP_R_not_finite, long_msg},
    };
    struct kp_ack in = {.seq = 42, .stored = 9, .dup = true, .n_rej = 3, .rej = rej}, out;
    assert_int_equal(kp_ack_encode(&f, &in), 0);
    assert_msgpack_c_reads(&f, 6);
    assert_int_equal(kp_ack_decode(f.data, f.len, &out), KP_R_OK);
    assert_true(out.seq == 42);
    assert_true(out.stored == 9);
    assert_true(out.dup);
    assert_int_equal(out.n_rej, 3);
    assert_int_equal(out.rej[0].n, 0);
    assert_int_equal(out.rej[0].code, KP_R_bad_period);
    assert_string_equal(out.rej[0].msg, "p: not a period");
    assert_int_equal(out.rej[1].n, 4294967295u);
    assert_int_equal(out.rej[1].code, KP_R_unknown_unit);
    assert_string_equal(out.rej[1].msg, "");
    assert_int_equal(out.rej[2].code, KP_R_not_finite);
    assert_int_equal(strlen(out.rej[2].msg), 254);
    assert_memory_equal(out.rej[2].msg, long_msg, 254);
    kp_ack_fini(&out);
    assert_null(out.rej);
    kp_ack_fini(&out);

    struct kp_ack empty = {.seq = 1, .stored = 0, .dup = false};
    kp_buf_reset(&f);
    assert_int_equal(kp_ack_encode(&f, &empty), 0);
    assert_int_equal(kp_ack_decode(f.data, f.len, &out), KP_R_OK);
    assert_true(out.seq == 1 && out.stored == 0 && !out.dup && out.n_rej == 0 && !out.rej);
    kp_ack_fini(&out);
    kp_buf_fini(&f);
}

static void test_roundtrip_nack(void **state)
{
    (void)state;
    struct kp_buf f = {0};
    struct kp_nack in = {.has_seq = true, .seq = 77, .code = KP_R_overloaded, .retry = true}, out;
    snprintf(in.msg, sizeof in.msg, "queue full");
    assert_int_equal(kp_nack_encode(&f, &in), 0);
    assert_msgpack_c_reads(&f, 6);
    assert_int_equal(kp_nack_decode(f.data, f.len, &out), KP_R_OK);
    assert_true(out.has_seq && out.seq == 77 && out.code == KP_R_overloaded && out.retry);
    assert_string_equal(out.msg, "queue full");

    struct kp_nack nil = {.has_seq = false, .seq = 5, .code = KP_R_bad_msgpack};
    kp_buf_reset(&f);
    assert_int_equal(kp_nack_encode(&f, &nil), 0);
    assert_int_equal(kp_nack_decode(f.data, f.len, &out), KP_R_OK);
    assert_false(out.has_seq);
    assert_true(out.seq == 0);
    assert_int_equal(out.code, KP_R_bad_msgpack);
    assert_false(out.retry);
    assert_string_equal(out.msg, "");

    /* the encoder writes seq nil (PROTOCOL.md nack) */
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, (const char *)f.data, f.len, NULL),
                     MSGPACK_UNPACK_SUCCESS);
    bool seen = false;
    for (uint32_t k = 0; k < u.data.via.map.size; k++) {
        msgpack_object_kv *kv = &u.data.via.map.ptr[k];
        if (kv->key.via.str.size == 3 && memcmp(kv->key.via.str.ptr, "seq", 3) == 0) {
            assert_int_equal(kv->val.type, MSGPACK_OBJECT_NIL);
            seen = true;
        }
    }
    assert_true(seen);
    msgpack_unpacked_destroy(&u);
    kp_buf_fini(&f);
}

static void test_roundtrip_small(void **state)
{
    (void)state;
    struct kp_buf f = {0};
    enum kp_msg_type t;

    struct kp_hello h = {.aid = "adp-1", .scheme = "anshan-2015", .sw = "kp-adapter 0.1 \xe9\x9e\x8d"},
                    h2;
    assert_int_equal(kp_hello_encode(&f, &h), 0);
    assert_msgpack_c_reads(&f, 5);
    assert_int_equal(kp_msg_peek(f.data, f.len, SIZE_MAX, &t), KP_R_OK);
    assert_int_equal(t, KP_MSG_HELLO);
    assert_int_equal(kp_hello_decode(f.data, f.len, &h2), KP_R_OK);
    assert_string_equal(h2.aid, h.aid);
    assert_string_equal(h2.scheme, h.scheme);
    assert_string_equal(h2.sw, h.sw);

    struct kp_welcome w = {KP_DEFAULT_MAX_BYTES, KP_DEFAULT_MAX_OBS, 4294967295u, 0}, w2;
    kp_buf_reset(&f);
    assert_int_equal(kp_welcome_encode(&f, &w), 0);
    assert_msgpack_c_reads(&f, 6);
    assert_int_equal(kp_msg_peek(f.data, f.len, SIZE_MAX, &t), KP_R_OK);
    assert_int_equal(t, KP_MSG_WELCOME);
    assert_int_equal(kp_welcome_decode(f.data, f.len, &w2), KP_R_OK);
    assert_memory_equal(&w, &w2, sizeof w);

    for (int pong = 0; pong < 2; pong++) {
        bool is_pong = !pong;
        uint64_t n = 0;
        kp_buf_reset(&f);
        assert_int_equal(kp_ping_encode(&f, pong, UINT64_MAX - 3), 0);
        assert_msgpack_c_reads(&f, 3);
        assert_int_equal(kp_msg_peek(f.data, f.len, SIZE_MAX, &t), KP_R_OK);
        assert_int_equal(t, pong ? KP_MSG_PONG : KP_MSG_PING);
        assert_int_equal(kp_ping_decode(f.data, f.len, &is_pong, &n), KP_R_OK);
        assert_int_equal(is_pong, pong);
        assert_true(n == UINT64_MAX - 3);
    }

    struct kp_reg r = {.sid = "scorer-1", .n_schemes = KP_REG_MAX_SCHEMES}, r2;
    for (int k = 0; k < KP_REG_MAX_SCHEMES; k++)
        snprintf(r.schemes[k], sizeof r.schemes[k], "scheme-%d", k);
    bool is_hb = true;
    kp_buf_reset(&f);
    assert_int_equal(kp_reg_encode(&f, false, &r), 0);
    assert_msgpack_c_reads(&f, 4);
    assert_int_equal(kp_msg_peek(f.data, f.len, SIZE_MAX, &t), KP_R_OK);
    assert_int_equal(t, KP_MSG_REG);
    assert_int_equal(kp_reg_decode(f.data, f.len, &is_hb, &r2), KP_R_OK);
    assert_false(is_hb);
    assert_string_equal(r2.sid, r.sid);
    assert_int_equal(r2.n_schemes, KP_REG_MAX_SCHEMES);
    for (int k = 0; k < KP_REG_MAX_SCHEMES; k++)
        assert_string_equal(r2.schemes[k], r.schemes[k]);

    kp_buf_reset(&f);
    assert_int_equal(kp_reg_encode(&f, true, &r), 0);
    assert_msgpack_c_reads(&f, 3);
    assert_int_equal(kp_msg_peek(f.data, f.len, SIZE_MAX, &t), KP_R_OK);
    assert_int_equal(t, KP_MSG_HB);
    assert_int_equal(kp_reg_decode(f.data, f.len, &is_hb, &r2), KP_R_OK);
    assert_true(is_hb);
    assert_string_equal(r2.sid, "scorer-1");
    assert_int_equal(r2.n_schemes, 0);

    /* peek on the others */
    struct kp_ack a = {.seq = 1};
    kp_buf_reset(&f);
    kp_ack_encode(&f, &a);
    assert_int_equal(kp_msg_peek(f.data, f.len, SIZE_MAX, &t), KP_R_OK);
    assert_int_equal(t, KP_MSG_ACK);
    struct kp_nack n = {.code = KP_R_too_large};
    kp_buf_reset(&f);
    kp_nack_encode(&f, &n);
    assert_int_equal(kp_msg_peek(f.data, f.len, SIZE_MAX, &t), KP_R_OK);
    assert_int_equal(t, KP_MSG_NACK);
    jframe(&f, BATCH_OK);
    assert_int_equal(kp_msg_peek(f.data, f.len, SIZE_MAX, &t), KP_R_OK);
    assert_int_equal(t, KP_MSG_BATCH);
    kp_buf_fini(&f);
}

/* The decoder takes what other msgpack writers produce: positive numbers in signed formats,
 * float32, keys in any order, unknown keys. */
static void test_decode_other_writers(void **state)
{
    (void)state;
    struct kp_buf f = {0};
    struct kp_batch *b = NULL;
    jframe(&f, "{'obs':[{'ref':'r','val':'#f32:0.5','p':'2024','i':'I','u':'U','w':'#f32:2',"
               "'future':[1,{'a':null}],'rev':'#i64:3'}],'sent':'#i64:5','seq':'#i64:9',"
               "'src':'s','scheme':'c','aid':'a','v':'#i64:1','t':'batch','extra':'#bin'}");
    assert_int_equal(decode(&f, &b, NULL, NULL, NULL, 0), KP_R_OK);
    assert_true(b->seq == 9 && b->sent == 5);
    assert_int_equal(b->obs[0].reason, KP_R_OK);
    assert_true(b->obs[0].val == 0.5 && b->obs[0].w == 2 && b->obs[0].rev == 3);
    assert_true(b->obs[0].at == 5);
    kp_batch_destroy(&b);
    kp_buf_fini(&f);
}

/* ---- batch-level refusals ----------------------------------------------------------------- */

struct batch_case {
    const char *key, *value; /* value NULL: key removed */
    enum kp_reason reason;
    bool has_seq;
};

/* PROTOCOL.md "batch" and "Messages": every batch-level refusal with its reason. */
static const struct batch_case batch_cases[] = {
    {"t", NULL, KP_R_missing_field, true},
    {"t", "1", KP_R_bad_type, true},
    {"t", "null", KP_R_bad_type, true},
    {"t", "'ack'", KP_R_bad_field, true},
    {"t", "'Batch'", KP_R_bad_field, true},
    {"v", NULL, KP_R_missing_field, true},
    {"v", "2", KP_R_bad_version, true},
    {"v", "0", KP_R_bad_version, true},
    {"v", "-1", KP_R_bad_version, true},
    {"v", "'1'", KP_R_bad_type, true},
    {"v", "1.0", KP_R_bad_type, true},
    {"aid", NULL, KP_R_missing_field, true},
    {"aid", "7", KP_R_bad_type, true},
    {"aid", "'#bin'", KP_R_bad_type, true},
    {"aid", "''", KP_R_bad_field, true},
    {"aid", "'a b'", KP_R_bad_field, true},
    {"aid", "'#str:65'", KP_R_bad_field, true},
    {"aid", "'\xe9\x9e\x8d'", KP_R_bad_field, true},
    {"scheme", NULL, KP_R_missing_field, true},
    {"scheme", "[]", KP_R_bad_type, true},
    {"scheme", "'anshan/2015'", KP_R_bad_field, true},
    {"src", NULL, KP_R_missing_field, true},
    {"src", "{}", KP_R_bad_type, true},
    {"src", "'#nul'", KP_R_bad_field, true},
    {"seq", NULL, KP_R_missing_field, false},
    {"seq", "-1", KP_R_bad_field, false}, /* a negative seq: an integer outside uint64 */
    {"seq", "'7'", KP_R_bad_type, false},
    {"seq", "7.0", KP_R_bad_type, false},
    {"seq", "null", KP_R_bad_type, false},
    {"sent", NULL, KP_R_missing_field, true},
    {"sent", "'now'", KP_R_bad_type, true},
    {"sent", "1.5", KP_R_bad_type, true},
    {"sent", "'#u64max'", KP_R_bad_field, true},
    {"sent", "'#u:9223372036854775808'", KP_R_bad_field, true},
    {"obs", NULL, KP_R_missing_field, true},
    {"obs", "{}", KP_R_bad_type, true},
    {"obs", "null", KP_R_bad_type, true},
    {"obs", "'#str:3'", KP_R_bad_type, true},
    {"junk", "'#ext'", KP_R_bad_msgpack, false},
    {"junk", "'#raw:c1'", KP_R_bad_msgpack, false},
};

/* Still accepted: the edges of each batch field. */
static const struct batch_case batch_ok_cases[] = {
    {"aid", "'#str:64'", KP_R_OK, true},
    {"scheme", "'A.b_c:d-9'", KP_R_OK, true},
    {"seq", "0", KP_R_OK, true},
    {"seq", "'#u64max'", KP_R_OK, true},
    {"sent", "-1", KP_R_OK, true},
    {"sent", "'#u:9223372036854775807'", KP_R_OK, true},
    {"obs", "[]", KP_R_OK, true},
    {"unknown", "{'a':[1,2,{'b':'#bin'}]}", KP_R_OK, true}, /* unknown keys ignored */
};

static void run_batch_case(const struct batch_case *c)
{
    struct kp_buf f = {0};
    struct kp_batch *b = (struct kp_batch *)&f; /* must be set to NULL on refusal */
    bool has_seq = !c->has_seq;
    uint64_t seq = 0;
    char msg[KP_MSG_TEXT_MAX] = "";
    batch_with(&f, c->key, c->value);
    enum kp_reason r = decode(&f, &b, &has_seq, &seq, msg, sizeof msg);
    if (r != c->reason || has_seq != c->has_seq)
        fail_msg("%s=%s: got %s has_seq=%d (%s), want %s has_seq=%d", c->key,
                 c->value ? c->value : "(removed)", kp_reason_str(r), has_seq, msg,
                 kp_reason_str(c->reason), c->has_seq);
    if (has_seq) {
        uint64_t want = 7;
        if (strcmp(c->key, "seq") == 0 && c->value)
            want = strcmp(c->value, "0") == 0 ? 0 : UINT64_MAX;
        assert_true(seq == want);
    }
    if (r == KP_R_OK) {
        assert_non_null(b);
        assert_string_equal(msg, "");
        kp_batch_destroy(&b);
    } else {
        assert_null(b);
        assert_true(msg[0] != 0); /* a human message for the nack */
    }
    kp_buf_fini(&f);
}

static void test_batch_refusals(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof batch_cases / sizeof batch_cases[0]; k++)
        run_batch_case(&batch_cases[k]);
    for (size_t k = 0; k < sizeof batch_ok_cases / sizeof batch_ok_cases[0]; k++)
        run_batch_case(&batch_ok_cases[k]);
}

static void test_batch_frame_level(void **state)
{
    (void)state;
    struct kp_buf f = {0};
    struct kp_batch *b = NULL;
    bool has_seq = true;
    char msg[KP_MSG_TEXT_MAX];
    struct kp_msg_limits lim = LIM;

    /* frame over max_bytes: too_large before any parsing (even of garbage) */
    jframe(&f, BATCH_OK);
    lim.max_bytes = f.len - 1;
    assert_int_equal(kp_batch_decode(f.data, f.len, &lim, &b, &has_seq, NULL, msg, sizeof msg),
                     KP_R_too_large);
    assert_false(has_seq);
    assert_null(b);
    lim.max_bytes = f.len;
    assert_int_equal(kp_batch_decode(f.data, f.len, &lim, &b, NULL, NULL, NULL, 0), KP_R_OK);
    kp_batch_destroy(&b);

    /* more observations than max_obs: too_large, seq still known for the nack */
    lim = LIM;
    lim.max_obs = 2;
    uint64_t seq = 0;
    assert_int_equal(kp_batch_decode(f.data, f.len, &lim, &b, &has_seq, &seq, msg, sizeof msg),
                     KP_R_too_large);
    assert_true(has_seq && seq == 7);
    assert_non_null(strstr(msg, "obs"));
    lim.max_obs = 3;
    assert_int_equal(kp_batch_decode(f.data, f.len, &lim, &b, NULL, NULL, NULL, 0), KP_R_OK);
    kp_batch_destroy(&b);
    reached |= 1u << KP_R_too_large;

    /* trailing bytes */
    kp_buf_append(&f, "\xc0", 1);
    assert_int_equal(decode(&f, &b, &has_seq, NULL, msg, sizeof msg), KP_R_bad_msgpack);
    assert_false(has_seq);
    assert_non_null(strstr(msg, "trailing"));

    /* not a map at the top */
    static const char *const not_map[] = {"[1,2]", "'batch'", "null", "7"};
    for (size_t k = 0; k < sizeof not_map / sizeof not_map[0]; k++) {
        jframe(&f, not_map[k]);
        assert_int_equal(decode(&f, &b, &has_seq, NULL, msg, sizeof msg), KP_R_bad_msgpack);
    }
    /* empty frame, NULL frame, NULL out */
    assert_int_equal(kp_batch_decode("", 0, &LIM, &b, NULL, NULL, NULL, 0), KP_R_bad_msgpack);
    assert_int_equal(kp_batch_decode(NULL, 0, &LIM, &b, NULL, NULL, NULL, 0), KP_R_bad_msgpack);
    jframe(&f, BATCH_OK);
    assert_int_not_equal(kp_batch_decode(f.data, f.len, &LIM, NULL, NULL, NULL, NULL, 0), KP_R_OK);
    /* NULL limits: the defaults */
    assert_int_equal(kp_batch_decode(f.data, f.len, NULL, &b, NULL, NULL, NULL, 0), KP_R_OK);
    kp_batch_destroy(&b);

    /* nesting: KP_DEPTH_MAX levels in all, the top map included; deeper is too_large for the
     * whole frame, wherever it is (here in obs[1].x: top, obs, obs[1], x, then arrays) */
    for (int n = 10; n <= 20; n++) {
        char nest[64] = "";
        for (int k = 0; k < n; k++)
            strcat(nest, "[");
        for (int k = 0; k < n; k++)
            strcat(nest, "]");
        batch_with(&f, "deep", nest);
        assert_int_equal(decode(&f, &b, NULL, NULL, msg, sizeof msg),
                         1 + n <= KP_DEPTH_MAX ? KP_R_OK : KP_R_too_large);
        kp_batch_destroy(&b);
        char x[80];
        snprintf(x, sizeof x, "{'a':%s}", nest);
        obs_with(&f, "x", x);
        assert_int_equal(decode(&f, &b, NULL, NULL, msg, sizeof msg),
                         4 + n <= KP_DEPTH_MAX ? KP_R_OK : KP_R_too_large);
        if (b)
            assert_int_equal(b->n_rejected, 0);
        kp_batch_destroy(&b);
    }

    /* a non-string key and a known key twice: bad_msgpack; an unknown key twice: ignored */
    jframe(&f, "{'t':'batch','v':1,'aid':'a','scheme':'s','src':'x','seq':7,'sent':1,'obs':[],"
               "'#raw:01':2}");
    assert_int_equal(decode(&f, &b, &has_seq, NULL, msg, sizeof msg), KP_R_bad_msgpack);
    assert_false(has_seq); /* the map could not be read */
    jframe(&f, "{'t':'batch','v':1,'aid':'a','scheme':'s','src':'x','seq':7,'sent':1,'obs':[],"
               "'#raw:a3736571':8}");
    assert_int_equal(decode(&f, &b, &has_seq, NULL, msg, sizeof msg), KP_R_bad_msgpack);
    assert_non_null(strstr(msg, "seq"));
    jframe(&f, "{'t':'batch','v':1,'aid':'a','scheme':'s','src':'x','seq':7,'sent':1,'obs':[],"
               "'zz':1,'#raw:a27a7a':2}");
    assert_int_equal(decode(&f, &b, &has_seq, NULL, msg, sizeof msg), KP_R_OK);
    kp_batch_destroy(&b);
    kp_buf_fini(&f);
}

/* ---- observation-level refusals ----------------------------------------------------------- */

struct obs_case {
    const char *key, *value; /* key NULL: obs[1] replaced by value; value NULL: key removed */
    enum kp_reason reason;
    const char *names; /* expected in obs->msg */
};

/* PROTOCOL.md "Observation": every per-observation refusal with its reason. */
static const struct obs_case obs_cases[] = {
    {NULL, "5", KP_R_bad_type, "observation"},
    {NULL, "[]", KP_R_bad_type, "observation"},
    {NULL, "null", KP_R_bad_type, "observation"},
    {NULL, "'#str:2'", KP_R_bad_type, "observation"},
    {"u", NULL, KP_R_missing_field, "u"},
    {"u", "5", KP_R_bad_type, "u"},
    {"u", "''", KP_R_bad_field, "u"},
    {"u", "'a b'", KP_R_bad_field, "u"},
    {"u", "'#str:65'", KP_R_bad_field, "u"},
    {"u", "'\xe5\x8d\x95\xe4\xbd\x8d'", KP_R_bad_field, "u"},
    {"i", NULL, KP_R_missing_field, "i"},
    {"i", "1.5", KP_R_bad_type, "i"},
    {"i", "'a/b'", KP_R_bad_field, "i"},
    {"p", NULL, KP_R_missing_field, "p"},
    {"p", "2024", KP_R_bad_type, "p"},
    {"p", "'2024-Q5'", KP_R_bad_period, "p"},
    {"p", "'2023-02-29'", KP_R_bad_period, "p"},
    {"p", "'1899'", KP_R_bad_period, "p"},
    {"p", "'2024-13'", KP_R_bad_period, "p"},
    {"p", "'#str:200'", KP_R_bad_period, "p"},
    {"val", NULL, KP_R_missing_field, "val"},
    {"val", "'1'", KP_R_bad_type, "val"},
    {"val", "null", KP_R_bad_type, "val"},
    {"val", "true", KP_R_bad_type, "val"},
    {"val", "'#nan'", KP_R_not_finite, "val"},
    {"val", "'#inf'", KP_R_not_finite, "val"},
    {"val", "'#-inf'", KP_R_not_finite, "val"},
    {"val", "'#f32:nan'", KP_R_not_finite, "val"},
    {"val", "'#f32:inf'", KP_R_not_finite, "val"},
    {"val", "9007199254740993", KP_R_out_of_range, "val"},
    {"val", "-9007199254740993", KP_R_out_of_range, "val"},
    {"val", "'#u64max'", KP_R_out_of_range, "val"},
    {"val", "-9223372036854775807", KP_R_out_of_range, "val"},
    {"ref", NULL, KP_R_missing_field, "ref"},
    {"ref", "5", KP_R_bad_type, "ref"},
    {"ref", "'#bin'", KP_R_bad_type, "ref"},
    {"ref", "''", KP_R_bad_field, "ref"},
    {"ref", "'#str:257'", KP_R_too_large, "ref"},
    {"ref", "'#badutf8'", KP_R_bad_field, "ref"},
    {"ref", "'#nul'", KP_R_bad_field, "ref"},
    {"rev", "-1", KP_R_bad_field, "rev"},
    {"rev", "'1'", KP_R_bad_type, "rev"},
    {"rev", "1.0", KP_R_bad_type, "rev"},
    {"at", "'x'", KP_R_bad_type, "at"},
    {"at", "'#u64max'", KP_R_bad_field, "at"},
    {"w", "'#nan'", KP_R_not_finite, "w"},
    {"w", "'#-inf'", KP_R_not_finite, "w"},
    {"w", "'a'", KP_R_bad_type, "w"},
    {"w", "null", KP_R_bad_type, "w"},
    {"x", "[]", KP_R_bad_type, "x"},
    {"x", "1", KP_R_bad_type, "x"},
    {"x", "null", KP_R_bad_type, "x"},
    {"x", "'s'", KP_R_bad_type, "x"},
    {"x", "{'a':'#str:5000'}", KP_R_too_large, "x"},
    {"x", "{'a':'#bin'}", KP_R_bad_field, "x"},
    {"x", "{'a':['#bin']}", KP_R_bad_field, "x"},
    {"x", "'#raw:810102'", KP_R_bad_field, "x"}, /* {1: 2}: a non-string key */
    {"x", "{'a':'#badutf8'}", KP_R_bad_field, "x"},
    {"x", "{'a':'#nul'}", KP_R_bad_field, "x"},
    {"x", "{'#badutf8':1}", KP_R_bad_field, "x"},
};

static const struct obs_case obs_ok_cases[] = {
    {"u", "'#str:64'", KP_R_OK, NULL},
    {"p", "'2024-02-29'", KP_R_OK, NULL},
    {"p", "'2024-H2'", KP_R_OK, NULL},
    {"val", "9007199254740992", KP_R_OK, NULL},
    {"val", "-9007199254740992", KP_R_OK, NULL},
    {"val", "1e308", KP_R_OK, NULL},
    {"val", "-7", KP_R_OK, NULL},
    {"val", "'#f32:0.25'", KP_R_OK, NULL},
    {"ref", "'#str:256'", KP_R_OK, NULL},
    {"ref", "'\xe5\x87\xad\xe8\xaf\x81-1'", KP_R_OK, NULL},
    {"rev", "'#u64max'", KP_R_OK, NULL},
    {"at", "-5", KP_R_OK, NULL},
    {"w", "2", KP_R_OK, NULL},
    {"w", "'#u64max'", KP_R_OK, NULL},
    {"x", "{}", KP_R_OK, NULL},
    {"x", "{'a':{'b':[1,'#nan',null,'\xe8\xb4\xa2']}}", KP_R_OK, NULL},
    {"x", "{'a':'#str:4000'}", KP_R_OK, NULL},
    {"zz", "'#bin'", KP_R_OK, NULL}, /* unknown keys ignored */
};

static void run_obs_case(const struct obs_case *c)
{
    struct kp_buf f = {0};
    struct kp_batch *b = NULL;
    char msg[KP_MSG_TEXT_MAX] = "";
    obs_with(&f, c->key, c->value);
    enum kp_reason r = decode(&f, &b, NULL, NULL, msg, sizeof msg);
    if (r != KP_R_OK)
        fail_msg("obs %s=%s: batch refused %s (%s)", c->key ? c->key : "(whole)", c->value,
                 kp_reason_str(r), msg);
    assert_int_equal(b->n_obs, 3);
    assert_int_equal(b->obs[0].reason, KP_R_OK);
    assert_int_equal(b->obs[2].reason, KP_R_OK);
    const struct kp_obs *o = &b->obs[1];
    reached |= 1u << o->reason;
    if (o->reason != c->reason)
        fail_msg("obs %s=%s: got %s (%s), want %s", c->key ? c->key : "(whole)",
                 c->value ? c->value : "(removed)", kp_reason_str(o->reason), o->msg,
                 kp_reason_str(c->reason));
    assert_int_equal(b->n_rejected, c->reason != KP_R_OK);
    if (c->reason == KP_R_OK) {
        assert_string_equal(o->msg, "");
    } else if (!strstr(o->msg, c->names)) {
        fail_msg("obs %s=%s: message \"%s\" does not name %s", c->key ? c->key : "(whole)",
                 c->value, o->msg, c->names);
    }
    /* what could be read is still there for the rejection row */
    if (c->key && strcmp(c->key, "ref") != 0)
        assert_string_equal(o->ref, "r1");
    if (c->key && strcmp(c->key, "at") != 0)
        assert_true(o->at == 1700000000000); /* default: sent */
    kp_batch_destroy(&b);
    kp_buf_fini(&f);
}

static void test_obs_refusals(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof obs_cases / sizeof obs_cases[0]; k++)
        run_obs_case(&obs_cases[k]);
    for (size_t k = 0; k < sizeof obs_ok_cases / sizeof obs_ok_cases[0]; k++)
        run_obs_case(&obs_ok_cases[k]);
}

/* Non-string and duplicate keys inside one observation, and the first defect winning. */
static void test_obs_keys(void **state)
{
    (void)state;
    struct kp_buf f = {0};
    struct kp_batch *b = NULL;
    /* obs[0]: key 1 (not a string); obs[1]: "val" twice; obs[2]: fine */
    jframe(&f, "{'t':'batch','v':1,'aid':'a','scheme':'s','src':'x','seq':7,'sent':1,'obs':["
               "{'u':'U','i':'I','p':'2024','val':1,'ref':'r','#raw:01':1},"
               "{'u':'U','i':'I','p':'2024','val':1,'ref':'r','#raw:a376616c':2},"
               "{'u':'U','i':'I','p':'2024','val':1,'ref':'r','zz':1,'#raw:a27a7a':2}]}");
    assert_int_equal(decode(&f, &b, NULL, NULL, NULL, 0), KP_R_OK);
    assert_int_equal(b->obs[0].reason, KP_R_bad_msgpack);
    assert_non_null(strstr(b->obs[0].msg, "key"));
    assert_int_equal(b->obs[1].reason, KP_R_bad_msgpack);
    assert_non_null(strstr(b->obs[1].msg, "val"));
    assert_int_equal(b->obs[2].reason, KP_R_OK);
    assert_int_equal(b->n_rejected, 2);
    kp_batch_destroy(&b);

    /* several defects: the first in field order (u, i, p, val, ref, rev, at, w, x) is
     * reported, and every readable field is still filled */
    jframe(&f, "{'t':'batch','v':1,'aid':'a','scheme':'s','src':'x','seq':7,'sent':1,'obs':["
               "{'x':1,'w':'#nan','u':'U9','i':'bad code','p':'2024-Q9','val':'#nan','ref':'r9',"
               "'rev':3,'at':4}]}");
    assert_int_equal(decode(&f, &b, NULL, NULL, NULL, 0), KP_R_OK);
    assert_int_equal(b->obs[0].reason, KP_R_bad_field);
    assert_non_null(strstr(b->obs[0].msg, "i:"));
    assert_string_equal(b->obs[0].u, "U9");
    assert_string_equal(b->obs[0].i, "");
    assert_string_equal(b->obs[0].p, "");
    assert_string_equal(b->obs[0].ref, "r9");
    assert_true(b->obs[0].rev == 3 && b->obs[0].at == 4);
    assert_null(b->obs[0].x);
    kp_batch_destroy(&b);
    kp_buf_fini(&f);
}

/* ---- other decoders' refusals ------------------------------------------------------------- */

struct msg_case {
    enum kp_msg_type type;
    const char *json;
    enum kp_reason reason;
};

static const struct msg_case msg_cases[] = {
    {KP_MSG_ACK, "{'t':'ack','v':1,'seq':1,'stored':0,'dup':false,'rej':[]}", KP_R_OK},
    {KP_MSG_ACK, "{'t':'ack','v':1,'seq':1,'stored':0,'dup':false}", KP_R_missing_field},
    {KP_MSG_ACK, "{'t':'ack','v':1,'seq':1,'stored':0,'rej':[]}", KP_R_missing_field},
    {KP_MSG_ACK, "{'t':'ack','v':1,'seq':1,'stored':0,'dup':0,'rej':[]}", KP_R_bad_type},
    {KP_MSG_ACK, "{'t':'ack','v':1,'seq':-1,'stored':0,'dup':false,'rej':[]}", KP_R_bad_field},
    {KP_MSG_ACK, "{'t':'ack','v':1,'seq':1,'stored':0,'dup':false,'rej':{}}", KP_R_bad_type},
    {KP_MSG_ACK, "{'t':'ack','v':1,'seq':1,'stored':0,'dup':false,'rej':[1]}", KP_R_bad_type},
    {KP_MSG_ACK, "{'t':'ack','v':1,'seq':1,'stored':0,'dup':false,"
                 "'rej':[{'n':0,'code':'bad_field'}]}", KP_R_missing_field},
    {KP_MSG_ACK, "{'t':'ack','v':1,'seq':1,'stored':0,'dup':false,"
                 "'rej':[{'n':4294967296,'code':'bad_field','msg':''}]}", KP_R_bad_field},
    {KP_MSG_ACK, "{'t':'ack','v':1,'seq':1,'stored':0,'dup':false,"
                 "'rej':[{'n':0,'code':'nope','msg':''}]}", KP_R_bad_field},
    {KP_MSG_ACK, "{'t':'ack','v':1,'seq':1,'stored':0,'dup':false,"
                 "'rej':[{'n':0,'code':'ok','msg':''}]}", KP_R_bad_field},
    {KP_MSG_ACK, "{'t':'ack','v':1,'seq':1,'stored':0,'dup':false,"
                 "'rej':[{'n':0,'code':'bad_field','msg':'#str:256'}]}", KP_R_too_large},
    {KP_MSG_ACK, "{'t':'ack','v':1,'seq':1,'stored':0,'dup':false,"
                 "'rej':[{'n':0,'code':'bad_field','msg':'#badutf8'}]}", KP_R_bad_field},
    {KP_MSG_ACK, "{'t':'nack','v':1,'seq':1,'stored':0,'dup':false,'rej':[]}", KP_R_bad_field},
    {KP_MSG_ACK, "{'t':'ack','v':2,'seq':1,'stored':0,'dup':false,'rej':[]}", KP_R_bad_version},
    {KP_MSG_NACK, "{'t':'nack','v':1,'seq':null,'code':'bad_msgpack','msg':'x','retry':false}",
     KP_R_OK},
    {KP_MSG_NACK, "{'t':'nack','v':1,'code':'bad_msgpack','msg':'x','retry':false}",
     KP_R_missing_field},
    {KP_MSG_NACK, "{'t':'nack','v':1,'seq':-3,'code':'bad_msgpack','msg':'x','retry':false}",
     KP_R_bad_field},
    {KP_MSG_NACK, "{'t':'nack','v':1,'seq':'1','code':'bad_msgpack','msg':'x','retry':false}",
     KP_R_bad_type},
    {KP_MSG_NACK, "{'t':'nack','v':1,'seq':1,'code':'ok','msg':'x','retry':false}",
     KP_R_bad_field},
    {KP_MSG_NACK, "{'t':'nack','v':1,'seq':1,'code':3,'msg':'x','retry':false}", KP_R_bad_type},
    {KP_MSG_NACK, "{'t':'nack','v':1,'seq':1,'code':'overloaded','msg':'x','retry':1}",
     KP_R_bad_type},
    {KP_MSG_NACK, "{'t':'nack','v':1,'seq':1,'code':'overloaded','msg':'#str:300','retry':true}",
     KP_R_too_large},
    {KP_MSG_HELLO, "{'t':'hello','v':1,'aid':'a','scheme':'s','sw':'x'}", KP_R_OK},
    {KP_MSG_HELLO, "{'t':'hello','v':1,'aid':'a b','scheme':'s','sw':'x'}", KP_R_bad_field},
    {KP_MSG_HELLO, "{'t':'hello','v':1,'aid':'a','sw':'x'}", KP_R_missing_field},
    {KP_MSG_HELLO, "{'t':'hello','v':1,'aid':'a','scheme':'s'}", KP_R_missing_field},
    {KP_MSG_HELLO, "{'t':'hello','v':1,'aid':'a','scheme':'s','sw':'#str:256'}", KP_R_too_large},
    {KP_MSG_HELLO, "{'t':'hello','v':1,'aid':'a','scheme':'s','sw':1}", KP_R_bad_type},
    {KP_MSG_WELCOME, "{'t':'welcome','v':1,'max_bytes':1,'max_obs':2,'max_inflight':3,"
                     "'hb_ms':4294967295}", KP_R_OK},
    {KP_MSG_WELCOME, "{'t':'welcome','v':1,'max_bytes':4294967296,'max_obs':2,'max_inflight':3,"
                     "'hb_ms':4}", KP_R_bad_field},
    {KP_MSG_WELCOME, "{'t':'welcome','v':1,'max_bytes':1,'max_obs':2,'max_inflight':3}",
     KP_R_missing_field},
    {KP_MSG_WELCOME, "{'t':'welcome','v':1,'max_bytes':1,'max_obs':2.0,'max_inflight':3,"
                     "'hb_ms':4}", KP_R_bad_type},
    {KP_MSG_PING, "{'t':'ping','v':1,'n':0}", KP_R_OK},
    {KP_MSG_PING, "{'t':'pong','v':1,'n':'#u64max'}", KP_R_OK},
    {KP_MSG_PING, "{'t':'ping','v':1}", KP_R_missing_field},
    {KP_MSG_PING, "{'t':'ping','v':1,'n':-1}", KP_R_bad_field},
    {KP_MSG_PING, "{'t':'hb','v':1,'n':1}", KP_R_bad_field},
    {KP_MSG_PING, "{'v':1,'n':1}", KP_R_missing_field},
    {KP_MSG_REG, "{'t':'reg','v':1,'sid':'s1','schemes':[]}", KP_R_OK},
    {KP_MSG_REG, "{'t':'hb','v':1,'sid':'s1','schemes':7}", KP_R_OK},
    {KP_MSG_REG, "{'t':'reg','v':1,'sid':'s1'}", KP_R_missing_field},
    {KP_MSG_REG, "{'t':'reg','v':1,'sid':'s1','schemes':'a'}", KP_R_bad_type},
    {KP_MSG_REG, "{'t':'reg','v':1,'sid':'s1','schemes':[1]}", KP_R_bad_type},
    {KP_MSG_REG, "{'t':'reg','v':1,'sid':'s1','schemes':['a','b c']}", KP_R_bad_field},
    {KP_MSG_REG, "{'t':'reg','v':1,'sid':'','schemes':[]}", KP_R_bad_field},
    {KP_MSG_REG, "{'t':'hb','v':1}", KP_R_missing_field},
    {KP_MSG_REG, "{'t':'ping','v':1,'sid':'s1'}", KP_R_bad_field},
    {KP_MSG_UNKNOWN, "{'t':'batch','v':1}", KP_R_OK}, /* peek reads only t and v */
    {KP_MSG_UNKNOWN, "{'t':'welcome','v':1,'x':'#bin'}", KP_R_OK},
    {KP_MSG_UNKNOWN, "{'t':'what','v':1}", KP_R_bad_field},
    {KP_MSG_UNKNOWN, "{'v':1}", KP_R_missing_field},
    {KP_MSG_UNKNOWN, "{'t':'ping'}", KP_R_missing_field},
    {KP_MSG_UNKNOWN, "{'t':1,'v':1}", KP_R_bad_type},
    {KP_MSG_UNKNOWN, "{'t':'ping','v':true}", KP_R_bad_type},
    {KP_MSG_UNKNOWN, "{'t':'ping','v':3}", KP_R_bad_version},
    {KP_MSG_UNKNOWN, "['t','ping','v',1]", KP_R_bad_msgpack},
    {KP_MSG_UNKNOWN, "{'t':'ping','v':1,'z':'#ext'}", KP_R_bad_msgpack},
    {KP_MSG_UNKNOWN, "{'t':'ping','v':1,'#raw:a174':1}", KP_R_bad_msgpack}, /* t twice */
};

static enum kp_reason decode_as(enum kp_msg_type type, const struct kp_buf *f)
{
    enum kp_reason r;
    switch (type) {
    case KP_MSG_ACK: {
        struct kp_ack a;
        r = kp_ack_decode(f->data, f->len, &a);
        if (r != KP_R_OK)
            assert_true(a.rej == NULL && a.n_rej == 0);
        kp_ack_fini(&a);
        return r;
    }
    case KP_MSG_NACK: {
        struct kp_nack n;
        return kp_nack_decode(f->data, f->len, &n);
    }
    case KP_MSG_HELLO: {
        struct kp_hello h;
        return kp_hello_decode(f->data, f->len, &h);
    }
    case KP_MSG_WELCOME: {
        struct kp_welcome w;
        return kp_welcome_decode(f->data, f->len, &w);
    }
    case KP_MSG_PING: {
        bool pong;
        uint64_t n;
        return kp_ping_decode(f->data, f->len, &pong, &n);
    }
    case KP_MSG_REG: {
        struct kp_reg g;
        bool hb;
        r = kp_reg_decode(f->data, f->len, &hb, &g);
        if (r != KP_R_OK)
            assert_true(g.n_schemes == 0 && g.sid[0] == 0);
        return r;
    }
    default: {
        enum kp_msg_type t = KP_MSG_BATCH;
        r = kp_msg_peek(f->data, f->len, SIZE_MAX, &t);
        if (r != KP_R_OK)
            assert_int_equal(t, KP_MSG_UNKNOWN);
        return r;
    }
    }
}

static void test_other_refusals(void **state)
{
    (void)state;
    struct kp_buf f = {0};
    for (size_t k = 0; k < sizeof msg_cases / sizeof msg_cases[0]; k++) {
        jframe(&f, msg_cases[k].json);
        enum kp_reason r = decode_as(msg_cases[k].type, &f);
        reached |= 1u << r;
        if (r != msg_cases[k].reason)
            fail_msg("%s: got %s, want %s", msg_cases[k].json, kp_reason_str(r),
                     kp_reason_str(msg_cases[k].reason));
    }
    /* reg: more schemes than KP_REG_MAX_SCHEMES */
    json_t *j = jparse("{'t':'reg','v':1,'sid':'s1','schemes':[]}");
    for (int k = 0; k <= KP_REG_MAX_SCHEMES; k++)
        json_array_append_new(json_object_get(j, "schemes"), json_string("s"));
    pack_j(&f, j);
    json_decref(j);
    assert_int_equal(decode_as(KP_MSG_REG, &f), KP_R_too_large);
    /* peek: too_large before parsing */
    jframe(&f, "{'t':'ping','v':1,'n':1}");
    enum kp_msg_type t;
    assert_int_equal(kp_msg_peek(f.data, f.len, f.len - 1, &t), KP_R_too_large);
    assert_int_equal(kp_msg_peek(f.data, f.len, f.len, &t), KP_R_OK);
    assert_int_equal(kp_msg_peek(NULL, 0, 10, &t), KP_R_bad_msgpack);
    /* NULL out-parameters of the fixed-struct decoders */
    assert_int_not_equal(kp_ack_decode(f.data, f.len, NULL), KP_R_OK);
    assert_int_not_equal(kp_nack_decode(f.data, f.len, NULL), KP_R_OK);
    assert_int_not_equal(kp_hello_decode(f.data, f.len, NULL), KP_R_OK);
    assert_int_not_equal(kp_welcome_decode(f.data, f.len, NULL), KP_R_OK);
    assert_int_not_equal(kp_reg_decode(f.data, f.len, NULL, NULL), KP_R_OK);
    assert_int_equal(kp_ping_decode(f.data, f.len, NULL, NULL), KP_R_OK);
    kp_buf_fini(&f);
}

/* Every reason the decoders can give has been produced by the tests above (they run first). */
static void test_every_reason(void **state)
{
    (void)state;
    static const enum kp_reason decoder_reasons[] = {
        KP_R_OK,         KP_R_bad_msgpack, KP_R_bad_version, KP_R_bad_type,
        KP_R_missing_field, KP_R_bad_field, KP_R_too_large,  KP_R_bad_period,
        KP_R_not_finite, KP_R_out_of_range,
    };
    unsigned want = 0;
    for (size_t k = 0; k < sizeof decoder_reasons / sizeof decoder_reasons[0]; k++)
        want |= 1u << decoder_reasons[k];
    for (int r = 0; r < KP_R__COUNT; r++)
        if ((want & (1u << r)) && !(reached & (1u << r)))
            fail_msg("reason %s never produced", kp_reason_str((enum kp_reason)r));
    /* and nothing else: the rest are the collector's and scorer's (grants, scheme, load) */
    assert_int_equal(reached & ~want, 0);
}

/* ---- encoder refusals --------------------------------------------------------------------- */

static void test_encode_refusals(void **state)
{
    (void)state;
    struct kp_buf f = {0};
    kp_buf_append_str(&f, "keep");
    struct kp_obs o;
    fill_obs(&o, "U", "I", "2024", 1, "r");
    struct kp_batch b = {.aid = "a", .scheme = "s", .src = "x", .n_obs = 1, .obs = &o};
    assert_int_equal(kp_batch_encode(&f, &b), 0);
    size_t ok_len = f.len - 4;
    kp_buf_reset(&f);
    kp_buf_append_str(&f, "keep");

#define REFUSE(stmt)                                                                               \
    do {                                                                                           \
        struct kp_obs o_ = o;                                                                      \
        struct kp_batch b_ = b;                                                                    \
        b_.obs = &o_;                                                                              \
        {                                                                                          \
            struct kp_obs *op = &o_;                                                               \
            struct kp_batch *bp = &b_;                                                             \
            (void)op;                                                                              \
            (void)bp;                                                                              \
            stmt;                                                                                  \
        }                                                                                          \
        assert_int_equal(kp_batch_encode(&f, &b_), KP_EINVAL);                                     \
        assert_int_equal(f.len, 4); /* nothing appended */                                         \
    } while (0)

    REFUSE(bp->aid[0] = 0);
    REFUSE(snprintf(bp->scheme, sizeof bp->scheme, "a b"));
    REFUSE(bp->src[0] = '/');
    REFUSE(bp->obs = NULL);
    REFUSE(snprintf(op->u, sizeof op->u, "x y"));
    REFUSE(op->i[0] = 0);
    REFUSE(snprintf(op->p, sizeof op->p, "2024-Q5"));
    REFUSE(op->val = NAN);
    REFUSE(op->val = INFINITY);
    REFUSE(op->ref[0] = 0);
    REFUSE(snprintf(op->ref, sizeof op->ref, "a\xff"));
    REFUSE(memset(op->ref, 'r', sizeof op->ref)); /* no terminating NUL within 257 */
    REFUSE(op->w = -INFINITY);
    REFUSE(op->x_len = 3);                                  /* x NULL with a length */
    REFUSE((op->x = (const uint8_t *)"\x91\x01", op->x_len = 2)); /* not a map */
    REFUSE((op->x = (const uint8_t *)"\x81\x01\x02", op->x_len = 3)); /* non-string key */
    REFUSE((op->x = (const uint8_t *)"\x81\xa1k", op->x_len = 3)); /* truncated */
    REFUSE((op->x = (const uint8_t *)"\x80\xc0", op->x_len = 2)); /* trailing */
    assert_int_equal(kp_batch_encode(&f, NULL), KP_EINVAL);
    assert_int_equal(kp_batch_encode(NULL, &b), KP_EINVAL);
    assert_int_equal(f.len, 4);

    struct kp_rej rej = {0, KP_R_OK, "x"};
    struct kp_ack a = {.n_rej = 1, .rej = &rej};
    assert_int_equal(kp_ack_encode(&f, &a), KP_EINVAL);
    rej.code = KP_R__COUNT;
    assert_int_equal(kp_ack_encode(&f, &a), KP_EINVAL);
    rej.code = KP_R_bad_field;
    rej.msg = "\xc3";
    assert_int_equal(kp_ack_encode(&f, &a), KP_EINVAL);
    a.rej = NULL;
    assert_int_equal(kp_ack_encode(&f, &a), KP_EINVAL);
    struct kp_nack n = {.code = KP_R_OK};
    assert_int_equal(kp_nack_encode(&f, &n), KP_EINVAL);
    n.code = KP_R_bad_field;
    memcpy(n.msg, "\xff", 2);
    assert_int_equal(kp_nack_encode(&f, &n), KP_EINVAL);
    struct kp_hello h = {.aid = "a", .scheme = "s b"};
    assert_int_equal(kp_hello_encode(&f, &h), KP_EINVAL);
    struct kp_reg g = {.sid = "s", .n_schemes = KP_REG_MAX_SCHEMES + 1};
    assert_int_equal(kp_reg_encode(&f, false, &g), KP_EINVAL);
    g.n_schemes = 1;
    assert_int_equal(kp_reg_encode(&f, false, &g), KP_EINVAL); /* schemes[0] is "" */
    g.sid[0] = 0;
    assert_int_equal(kp_reg_encode(&f, true, &g), KP_EINVAL);
    assert_int_equal(kp_welcome_encode(&f, NULL), KP_EINVAL);
    assert_int_equal(kp_ping_encode(NULL, false, 1), KP_EINVAL);
    assert_int_equal(f.len, 4);

    /* appending after existing bytes is a whole frame too */
    assert_int_equal(kp_batch_encode(&f, &b), 0);
    assert_int_equal(f.len, 4 + ok_len);
    kp_buf_fini(&f);
}

/* ---- msgpack to JSON ---------------------------------------------------------------------- */

static void test_to_json(void **state)
{
    (void)state;
    struct kp_buf mp = {0}, out = {0};
    jframe(&mp, "{'s':'q\\\"b\\\\s/\\n\\t\\r\\b\\f\\u0001\\u001f\xe9\x9e\x8d','i':-9223372036854775807,"
                "'u':'#u64max','f':0.1,'g':1e300,'h':-2.5e-7,'k':'#f32:0.1','nan':'#nan',"
                "'inf':'#-inf','z':'#-0','a':[],'m':{},'t':true,'n':null,'deep':[[{'x':[1]}]]}");
    assert_int_equal(kp_msgpack_to_json(mp.data, mp.len, &out), 0);
    const char *want =
        "{\"s\":\"q\\\"b\\\\s/\\n\\t\\r\\b\\f\\u0001\\u001f\xe9\x9e\x8d\",\"i\":-9223372036854775807,"
        "\"u\":18446744073709551615,\"f\":0.1,\"g\":1e+300,\"h\":-2.5e-07,"
        "\"k\":0.10000000149011612,\"nan\":null,\"inf\":null,\"z\":-0,\"a\":[],\"m\":{},"
        "\"t\":true,\"n\":null,\"deep\":[[{\"x\":[1]}]]}";
    assert_string_equal(kp_buf_cstr(&out), want);
    assert_int_equal(out.len, strlen(want));
    /* it is JSON, and its strings and numbers read back */
    json_error_t err;
    json_t *j = json_loads(kp_buf_cstr(&out), JSON_DECODE_INT_AS_REAL, &err);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "s")),
                        "q\"b\\s/\n\t\r\b\f\x01\x1f\xe9\x9e\x8d");
    assert_true(json_real_value(json_object_get(j, "f")) == 0.1);
    assert_true(json_real_value(json_object_get(j, "k")) == (double)0.1f);
    json_decref(j);

    /* appends; on refusal restores what was there */
    kp_buf_reset(&out);
    kp_buf_append_str(&out, "pre:");
    jframe(&mp, "{'a':1}");
    assert_int_equal(kp_msgpack_to_json(mp.data, mp.len, &out), 0);
    assert_string_equal(kp_buf_cstr(&out), "pre:{\"a\":1}");
    static const char *const refused[] = {
        "{'a':'#bin'}", "{'a':'#ext'}", "'#raw:810102'", "{'a':'#badutf8'}", "{'a':'#nul'}",
        "[1]", "'str'", "null", "'#raw:81a161'", "'#raw:80c0'", "'#raw:c1'",
    };
    for (size_t k = 0; k < sizeof refused / sizeof refused[0]; k++) {
        jframe(&mp, refused[k]);
        if (kp_msgpack_to_json(mp.data, mp.len, &out) != KP_EINVAL)
            fail_msg("%s converted", refused[k]);
        assert_string_equal(kp_buf_cstr(&out), "pre:{\"a\":1}");
    }
    assert_int_equal(kp_msgpack_to_json(NULL, 0, &out), KP_EINVAL);
    assert_int_equal(kp_msgpack_to_json(mp.data, 0, &out), KP_EINVAL);
    assert_int_equal(kp_msgpack_to_json(mp.data, mp.len, NULL), KP_EINVAL);

    /* kp_x_valid agrees with the decoder */
    jframe(&mp, "{'a':[1,{'b':null}]}");
    assert_true(kp_x_valid(mp.data, mp.len));
    assert_false(kp_x_valid(mp.data, mp.len - 1));
    assert_false(kp_x_valid(NULL, 0));
    jframe(&mp, "{'a':'#str:5000'}");
    assert_false(kp_x_valid(mp.data, mp.len));
    kp_buf_fini(&mp);
    kp_buf_fini(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reason_table),
        cmocka_unit_test(test_code_valid),
        cmocka_unit_test(test_period_valid),
        cmocka_unit_test(test_utf8_valid),
        cmocka_unit_test(test_roundtrip_batch),
        cmocka_unit_test(test_roundtrip_ack),
        cmocka_unit_test(test_roundtrip_nack),
        cmocka_unit_test(test_roundtrip_small),
        cmocka_unit_test(test_decode_other_writers),
        cmocka_unit_test(test_batch_refusals),
        cmocka_unit_test(test_batch_frame_level),
        cmocka_unit_test(test_obs_refusals),
        cmocka_unit_test(test_obs_keys),
        cmocka_unit_test(test_other_refusals),
        cmocka_unit_test(test_every_reason),
        cmocka_unit_test(test_encode_refusals),
        cmocka_unit_test(test_to_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
