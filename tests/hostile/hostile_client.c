/*
 * hostile_client: the hostile-input suite's client (tests/hostile/hostile_suite.sh runs it
 * against a real kp-collector with a broker, a scorer and PostgreSQL behind it). Over plain
 * ZeroMQ DEALER sockets, as any client of PROTOCOL.md would, it sends random bytes, truncated
 * frames, a wrong type in every field, NaN and infinities, overlong strings, invalid UTF-8,
 * unknown versions, huge declared containers, frames above the size limit, multipart
 * messages, and floods (garbage as fast as the socket takes it, 1 MB frames, many
 * connections), and checks that each gets the right reason code: a nack for a batch-level
 * defect (with the seq when one can be read), an ack whose rej[] names the observation for
 * an observation-level one, a disconnect for a frame above ZMQ_MAXMSGSIZE (ARCHITECTURE.md
 * guarantee 4). Between every two hostile messages it sends a valid batch, which must be
 * acked with everything stored; observation-level refusals are written to a TSV file
 * (seq, n, code) the script compares with kp_rejection, and the valid observations are
 * counted for the comparison with kp_observation.
 *
 * usage: hostile_client ENDPOINT AID SCHEME MAX_BYTES MAX_OBS REJ_TSV
 * Prints "valid_obs=N flood_obs=O valid_batches=M hostile=K failures=F"; exits 1 when a check
 * failed.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "kp_buf.h"
#include "kp_msg.h"
#include "kp_reason.h"

static const char *g_endpoint, *g_aid, *g_scheme;
static size_t g_max_bytes, g_max_obs;
static FILE *g_rej;
static void *g_ctx, *g_sock;
static uint64_t g_seq = 1000;
static unsigned long g_valid_obs, g_valid_batches, g_hostile, g_failures;
static uint64_t g_rng = 0x9E3779B97F4A7C15ULL;

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        g_failures++;                                                                              \
        fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                       \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
    } while (0)

static uint64_t rnd(void)
{
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 2685821657736338717ULL;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- sockets ------------------------------------------------------------------------------ */

static void *open_dealer(void)
{
    void *s = zmq_socket(g_ctx, ZMQ_DEALER);
    int zero = 0, hwm = 100000;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
    if (zmq_connect(s, g_endpoint) != 0) {
        fprintf(stderr, "connect %s: %s\n", g_endpoint, zmq_strerror(errno));
        exit(2);
    }
    return s;
}

static void send_frame(void *s, const void *data, size_t len)
{
    while (zmq_send(s, data, len, 0) < 0) {
        if (errno != EINTR) {
            FAIL("send: %s", zmq_strerror(errno));
            return;
        }
    }
}

/* Receives one single-frame reply within timeout_ms into out. Returns false on timeout. */
static bool recv_reply(void *s, struct kp_buf *out, int timeout_ms)
{
    zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
    int64_t end = now_ms() + timeout_ms;
    for (;;) {
        int64_t left = end - now_ms();
        if (left <= 0)
            return false;
        int rc = zmq_poll(&it, 1, (long)left);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            return false;
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, s, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            continue;
        }
        kp_buf_reset(out);
        kp_buf_append(out, zmq_msg_data(&m), zmq_msg_size(&m));
        bool more = zmq_msg_more(&m);
        zmq_msg_close(&m);
        while (more) { /* not PROTOCOL.md: a reply is one frame */
            FAIL("a reply with more than one frame");
            zmq_msg_init(&m);
            zmq_msg_recv(&m, s, 0);
            more = zmq_msg_more(&m);
            zmq_msg_close(&m);
        }
        return true;
    }
}

/* ---- frames ------------------------------------------------------------------------------- */

static int buf_write(void *data, const char *buf, size_t len)
{
    kp_buf_append(data, buf, len);
    return 0;
}

/* A value for one field: the default, removed, or a hostile replacement. */
enum vk {
    V_DEFAULT,
    V_REMOVE,
    V_INT,
    V_UINT,
    V_DOUBLE,
    V_FLOAT,
    V_STR,     /* s */
    V_LONGSTR, /* n bytes of 'a' */
    V_BYTES,   /* s, n bytes (invalid UTF-8, NUL) */
    V_NIL,
    V_TRUE,
    V_MAP0,
    V_ARR0,
    V_BIN,
    V_MAPBIG, /* {a: n bytes of 'a'} */
    V_RAW,    /* s, n raw msgpack bytes */
};
struct val {
    enum vk k;
    int64_t i;
    double d;
    const char *s;
    size_t n;
};

static void pack_val(msgpack_packer *pk, struct kp_buf *out, const struct val *v)
{
    switch (v->k) {
    case V_INT:
        msgpack_pack_int64(pk, v->i);
        break;
    case V_UINT:
        msgpack_pack_uint64(pk, (uint64_t)v->i);
        break;
    case V_DOUBLE:
        msgpack_pack_double(pk, v->d);
        break;
    case V_FLOAT:
        msgpack_pack_float(pk, (float)v->d);
        break;
    case V_STR:
        msgpack_pack_str_with_body(pk, v->s, strlen(v->s));
        break;
    case V_LONGSTR: {
        char *b = malloc(v->n + 1);
        memset(b, 'a', v->n);
        msgpack_pack_str_with_body(pk, b, v->n);
        free(b);
        break;
    }
    case V_BYTES:
        msgpack_pack_str_with_body(pk, v->s, v->n);
        break;
    case V_NIL:
        msgpack_pack_nil(pk);
        break;
    case V_TRUE:
        msgpack_pack_true(pk);
        break;
    case V_MAP0:
        msgpack_pack_map(pk, 0);
        break;
    case V_ARR0:
        msgpack_pack_array(pk, 0);
        break;
    case V_BIN:
        msgpack_pack_bin_with_body(pk, "abc", 3);
        break;
    case V_MAPBIG: {
        char *b = malloc(v->n + 1);
        memset(b, 'a', v->n);
        msgpack_pack_map(pk, 1);
        msgpack_pack_str_with_body(pk, "a", 1);
        msgpack_pack_str_with_body(pk, b, v->n);
        free(b);
        break;
    }
    case V_RAW:
        kp_buf_append(out, v->s, v->n);
        break;
    case V_DEFAULT:
    case V_REMOVE:
        break;
    }
}

static void pack_key(msgpack_packer *pk, const char *k)
{
    msgpack_pack_str_with_body(pk, k, strlen(k));
}

/* One observation: valid unless `key` is given (then its value is v, or it is removed). */
static void pack_obs(msgpack_packer *pk, struct kp_buf *out, uint64_t seq, int n, const char *key,
                     const struct val *v)
{
    static const char *const keys[] = {"u", "i", "p", "val", "ref", "rev", "at", "w", "x"};
    char ref[64], period[16];
    snprintf(ref, sizeof ref, "hostile-%" PRIu64 "-%d", seq, n);
    snprintf(period, sizeof period, "2015-%02d", 1 + (int)(seq % 12));
    size_t nk = 0;
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        bool hit = key && !strcmp(key, keys[k]);
        if (hit && v->k == V_REMOVE)
            continue;
        if (k >= 5 && !hit)
            continue; /* rev, at, w, x: only when a case sets them */
        nk++;
    }
    bool extra = key && v->k != V_REMOVE;
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
        if (key && !strcmp(key, keys[k]))
            extra = false;
    msgpack_pack_map(pk, nk + (extra ? 1 : 0));
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        bool hit = key && !strcmp(key, keys[k]);
        if (hit && v->k == V_REMOVE)
            continue;
        if (k >= 5 && !hit)
            continue;
        pack_key(pk, keys[k]);
        if (hit) {
            pack_val(pk, out, v);
            continue;
        }
        switch (k) {
        case 0:
            pack_key(pk, "AS-HC");
            break;
        case 1:
            pack_key(pk, "gdp_growth");
            break;
        case 2:
            pack_key(pk, period);
            break;
        case 3:
            msgpack_pack_double(pk, 5.0 + (double)(seq % 50) / 10.0 + n);
            break;
        case 4:
            pack_key(pk, ref);
            break;
        }
    }
    if (extra) {
        pack_key(pk, key);
        pack_val(pk, out, v);
    }
}

/* A batch of n_obs observations; batch field `bkey` replaced by bv (or removed); observation
 * 1 (when n_obs >= 2) gets `okey` replaced by ov; `whole` replaces observation 1 entirely. */
struct spec {
    const char *bkey;
    struct val bv;
    const char *okey;
    struct val ov;
    const struct val *whole;
    size_t n_obs;
};

static void build_batch(struct kp_buf *out, uint64_t seq, const struct spec *sp)
{
    static const char *const keys[] = {"t", "v", "aid", "scheme", "src", "seq", "sent", "obs"};
    kp_buf_reset(out);
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, buf_write);
    size_t nk = 8;
    bool extra = sp->bkey != NULL;
    for (size_t k = 0; k < 8; k++)
        if (sp->bkey && !strcmp(sp->bkey, keys[k])) {
            extra = false;
            if (sp->bv.k == V_REMOVE)
                nk--;
        }
    msgpack_pack_map(&pk, nk + (extra ? 1 : 0));
    for (size_t k = 0; k < 8; k++) {
        bool hit = sp->bkey && !strcmp(sp->bkey, keys[k]);
        if (hit && sp->bv.k == V_REMOVE)
            continue;
        pack_key(&pk, keys[k]);
        if (hit) {
            pack_val(&pk, out, &sp->bv);
            continue;
        }
        switch (k) {
        case 0:
            pack_key(&pk, "batch");
            break;
        case 1:
            msgpack_pack_uint8(&pk, 1);
            break;
        case 2:
            pack_key(&pk, g_aid);
            break;
        case 3:
            pack_key(&pk, g_scheme);
            break;
        case 4:
            pack_key(&pk, "stats");
            break;
        case 5:
            msgpack_pack_uint64(&pk, seq);
            break;
        case 6:
            msgpack_pack_int64(&pk, 1433116800000LL); /* 2015-06-01 */
            break;
        case 7:
            msgpack_pack_array(&pk, sp->n_obs);
            for (size_t n = 0; n < sp->n_obs; n++) {
                if (n == 1 && sp->whole)
                    pack_val(&pk, out, sp->whole);
                else if (n == 1 && sp->okey)
                    pack_obs(&pk, out, seq, (int)n, sp->okey, &sp->ov);
                else
                    pack_obs(&pk, out, seq, (int)n, NULL, NULL);
            }
            break;
        }
    }
    if (extra) {
        pack_key(&pk, sp->bkey);
        pack_val(&pk, out, &sp->bv);
    }
}

/* ---- expectations ---------------------------------------------------------------------- */

static struct kp_buf g_reply;

/* Waits for the answer to seq (replies to earlier, timed-out messages are skipped). Returns the
 * type (ACK, NACK) or KP_MSG_UNKNOWN on timeout. */
static enum kp_msg_type await(void *s, bool want_seq, uint64_t seq, struct kp_ack *ack,
                              struct kp_nack *nack, int timeout_ms)
{
    int64_t end = now_ms() + timeout_ms;
    while (now_ms() < end) {
        if (!recv_reply(s, &g_reply, (int)(end - now_ms())))
            break;
        enum kp_msg_type t = KP_MSG_UNKNOWN;
        if (kp_msg_peek(g_reply.data, g_reply.len, SIZE_MAX, &t) != KP_R_OK) {
            FAIL("a reply that does not decode");
            continue;
        }
        if (t == KP_MSG_ACK) {
            memset(ack, 0, sizeof *ack);
            if (kp_ack_decode(g_reply.data, g_reply.len, ack) != KP_R_OK) {
                FAIL("an ack that does not decode");
                continue;
            }
            if (want_seq && ack->seq == seq)
                return KP_MSG_ACK;
            kp_ack_fini(ack);
        } else if (t == KP_MSG_NACK) {
            memset(nack, 0, sizeof *nack);
            if (kp_nack_decode(g_reply.data, g_reply.len, nack) != KP_R_OK) {
                FAIL("a nack that does not decode");
                continue;
            }
            if (!want_seq || (nack->has_seq && nack->seq == seq) || !nack->has_seq)
                return KP_MSG_NACK;
        }
    }
    return KP_MSG_UNKNOWN;
}

/* A valid batch of n observations must be acked with everything stored (retrying while the
 * pipeline says retry). */
static void valid_batch(void *s, size_t n)
{
    struct kp_buf f = {0};
    uint64_t seq = ++g_seq;
    struct spec sp = {.n_obs = n};
    build_batch(&f, seq, &sp);
    for (int attempt = 0; attempt < 40; attempt++) {
        send_frame(s, f.data, f.len);
        struct kp_ack a;
        struct kp_nack nk;
        enum kp_msg_type t = await(s, true, seq, &a, &nk, 5000);
        if (t == KP_MSG_ACK) {
            if (a.stored != n || a.n_rej != 0)
                FAIL("valid batch seq %" PRIu64 ": stored %" PRIu64 " of %zu, %zu refused", seq,
                     a.stored, n, a.n_rej);
            if (!a.dup)
                g_valid_batches++;
            g_valid_obs += n;
            kp_ack_fini(&a);
            kp_buf_fini(&f);
            return;
        }
        if (t == KP_MSG_NACK && !nk.retry) {
            FAIL("valid batch seq %" PRIu64 " refused: %s (%s)", seq, kp_reason_str(nk.code),
                 nk.msg);
            break;
        }
        sleep_ms(200); /* retry:true or no answer: send again, as an adapter would */
    }
    FAIL("valid batch seq %" PRIu64 " never acked", seq);
    kp_buf_fini(&f);
}

/* A frame that must be nacked with `code` (and the frame's seq when seq_known). */
static void expect_nack(void *s, const char *what, const void *frame, size_t len,
                        enum kp_reason code, bool seq_known, uint64_t seq)
{
    g_hostile++;
    send_frame(s, frame, len);
    struct kp_ack a;
    struct kp_nack nk;
    enum kp_msg_type t = await(s, seq_known, seq, &a, &nk, 5000);
    if (t != KP_MSG_NACK) {
        FAIL("%s: %s, want nack %s", what, t == KP_MSG_ACK ? "acked" : "no answer",
             kp_reason_str(code));
        if (t == KP_MSG_ACK)
            kp_ack_fini(&a);
        return;
    }
    if (nk.code != code || nk.retry)
        FAIL("%s: nack %s retry=%d (%s), want %s", what, kp_reason_str(nk.code), nk.retry, nk.msg,
             kp_reason_str(code));
    if (seq_known && !(nk.has_seq && nk.seq == seq))
        FAIL("%s: nack without the seq %" PRIu64, what, seq);
}

static void batch_nack(void *s, const char *what, const struct spec *sp, enum kp_reason code,
                       bool seq_known)
{
    struct kp_buf f = {0};
    uint64_t seq = ++g_seq;
    build_batch(&f, seq, sp);
    expect_nack(s, what, f.data, f.len, code, seq_known, seq);
    kp_buf_fini(&f);
    valid_batch(s, 3);
}

/* A batch of three whose observation 1 must be refused with `code`; 0 and 2 are stored. */
static void obs_rej(void *s, const char *what, const struct spec *sp0, enum kp_reason code)
{
    struct spec sp = *sp0;
    sp.n_obs = 3;
    struct kp_buf f = {0};
    uint64_t seq = ++g_seq;
    build_batch(&f, seq, &sp);
    g_hostile++;
    for (int attempt = 0; attempt < 40; attempt++) {
        send_frame(s, f.data, f.len);
        struct kp_ack a;
        struct kp_nack nk;
        enum kp_msg_type t = await(s, true, seq, &a, &nk, 5000);
        if (t == KP_MSG_NACK && nk.retry) {
            sleep_ms(200);
            continue;
        }
        if (t != KP_MSG_ACK) {
            FAIL("%s: %s, want an ack refusing obs 1 with %s", what,
                 t == KP_MSG_NACK ? kp_reason_str(nk.code) : "no answer", kp_reason_str(code));
            if (t == KP_MSG_UNKNOWN)
                continue;
            break;
        }
        if (a.stored != 2 || a.n_rej != 1 || a.rej[0].n != 1 || a.rej[0].code != code)
            FAIL("%s: ack stored=%" PRIu64 " rej=%zu first=%s n=%u, want stored=2, obs 1 %s", what,
                 a.stored, a.n_rej, a.n_rej ? kp_reason_str(a.rej[0].code) : "-",
                 a.n_rej ? a.rej[0].n : 0, kp_reason_str(code));
        else if (!a.dup) {
            fprintf(g_rej, "%" PRIu64 "\t1\t%s\n", seq, kp_reason_str(code));
            g_valid_obs += 2;
        } else {
            g_valid_obs += 2; /* a retransmit answered dup: already counted once */
        }
        kp_ack_fini(&a);
        kp_buf_fini(&f);
        valid_batch(s, 2);
        return;
    }
    FAIL("%s: never acked", what);
    kp_buf_fini(&f);
}

/* ---- the cases ------------------------------------------------------------------------- */

#define S(str)        ((struct val){.k = V_STR, .s = (str)})
#define I(v)          ((struct val){.k = V_INT, .i = (v)})
#define D(v)          ((struct val){.k = V_DOUBLE, .d = (v)})
#define K(kind)       ((struct val){.k = (kind)})
#define LONG(len)     ((struct val){.k = V_LONGSTR, .n = (len)})
#define BYTES(b, len) ((struct val){.k = V_BYTES, .s = (b), .n = (len)})
#define RAW(b, len)   ((struct val){.k = V_RAW, .s = (b), .n = (len)})

static void random_bytes(void *s)
{
    uint8_t buf[4096];
    for (int k = 0; k < 200; k++) {
        size_t len = 1 + rnd() % sizeof buf;
        for (size_t i = 0; i < len; i++)
            buf[i] = (uint8_t)rnd();
        buf[0] = 0xc1; /* never used by msgpack: the frame cannot be a map */
        expect_nack(s, "random bytes", buf, len, KP_R_bad_msgpack, false, 0);
    }
    expect_nack(s, "empty frame", "", 0, KP_R_bad_msgpack, false, 0);
    valid_batch(s, 3);
}

static void truncated(void *s)
{
    struct kp_buf f = {0};
    struct spec sp = {.n_obs = 3};
    build_batch(&f, ++g_seq, &sp);
    for (size_t cut = 0; cut < f.len; cut += 1 + f.len / 60) {
        char what[64];
        snprintf(what, sizeof what, "batch cut at %zu of %zu bytes", cut, f.len);
        g_hostile++;
        send_frame(s, f.data, cut);
        struct kp_ack a;
        struct kp_nack nk;
        if (await(s, false, 0, &a, &nk, 5000) != KP_MSG_NACK)
            FAIL("%s: no nack", what);
        else if (nk.code != KP_R_bad_msgpack)
            FAIL("%s: %s, want bad_msgpack", what, kp_reason_str(nk.code));
    }
    kp_buf_fini(&f);
    valid_batch(s, 3);
}

static void batch_fields(void *s)
{
    static const struct {
        const char *key;
        struct val v;
        enum kp_reason code;
        bool seq_known;
    } cases[] = {
        {"t", K(V_REMOVE), KP_R_missing_field, true},
        {"t", I(1), KP_R_bad_type, true},
        {"t", K(V_NIL), KP_R_bad_type, true},
        {"v", K(V_REMOVE), KP_R_missing_field, true},
        {"v", S("1"), KP_R_bad_type, true},
        {"v", D(1.0), KP_R_bad_type, true},
        {"v", I(2), KP_R_bad_version, true},
        {"v", I(0), KP_R_bad_version, true},
        {"v", I(-1), KP_R_bad_version, true},
        {"aid", K(V_REMOVE), KP_R_missing_field, true},
        {"aid", I(7), KP_R_bad_type, true},
        {"aid", K(V_BIN), KP_R_bad_type, true},
        {"aid", LONG(65), KP_R_bad_field, true},
        {"aid", BYTES("\xe9\x9e\x8d", 3), KP_R_bad_field, true},
        {"aid", BYTES("a\xc3\x28", 3), KP_R_bad_field, true},
        {"scheme", K(V_ARR0), KP_R_bad_type, true},
        {"scheme", LONG(65), KP_R_bad_field, true},
        {"scheme", S("anshan/2015"), KP_R_bad_field, true},
        {"src", K(V_MAP0), KP_R_bad_type, true},
        {"src", BYTES("a\0b", 3), KP_R_bad_field, true},
        {"src", LONG(100000), KP_R_bad_field, true},
        {"seq", K(V_REMOVE), KP_R_missing_field, false},
        {"seq", S("7"), KP_R_bad_type, false},
        {"seq", D(7.0), KP_R_bad_type, false},
        {"seq", I(-1), KP_R_bad_field, false},
        {"sent", K(V_REMOVE), KP_R_missing_field, true},
        {"sent", S("now"), KP_R_bad_type, true},
        {"sent", D(1.5), KP_R_bad_type, true},
        {"obs", K(V_REMOVE), KP_R_missing_field, true},
        {"obs", K(V_MAP0), KP_R_bad_type, true},
        {"obs", K(V_NIL), KP_R_bad_type, true},
        {"junk", RAW("\xc1", 1), KP_R_bad_msgpack, false},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char what[96];
        snprintf(what, sizeof what, "batch field %s (case %zu)", cases[k].key, k);
        struct spec sp = {.bkey = cases[k].key, .bv = cases[k].v, .n_obs = 2};
        batch_nack(s, what, &sp, cases[k].code, cases[k].seq_known);
    }
    /* A client sending a server's message type, or an unknown one. */
    struct spec t_ack = {.bkey = "t", .bv = S("ack"), .n_obs = 1};
    batch_nack(s, "t = ack", &t_ack, KP_R_bad_field, true);
    struct spec t_zz = {.bkey = "t", .bv = S("zz"), .n_obs = 1};
    batch_nack(s, "t = zz", &t_zz, KP_R_bad_field, true);
}

static void obs_fields(void *s)
{
    static const struct {
        const char *key;
        struct val v;
        enum kp_reason code;
    } cases[] = {
        {"u", K(V_REMOVE), KP_R_missing_field},
        {"u", I(5), KP_R_bad_type},
        {"u", LONG(65), KP_R_bad_field},
        {"u", BYTES("\xe5\x8d\x95", 3), KP_R_bad_field},
        {"u", S("AS-NOPE"), KP_R_unknown_unit},
        {"i", D(1.5), KP_R_bad_type},
        {"i", S("a/b"), KP_R_bad_field},
        {"i", S("no_such_indicator"), KP_R_unknown_indicator},
        {"i", S("politics"), KP_R_not_granted_indicator},
        {"p", I(2015), KP_R_bad_type},
        {"p", S("2015-13"), KP_R_bad_period},
        {"p", S("2015-02-29"), KP_R_bad_period},
        {"p", LONG(200), KP_R_bad_period},
        {"val", K(V_REMOVE), KP_R_missing_field},
        {"val", S("1"), KP_R_bad_type},
        {"val", K(V_NIL), KP_R_bad_type},
        {"val", K(V_TRUE), KP_R_bad_type},
        {"val", D(NAN), KP_R_not_finite},
        {"val", D(INFINITY), KP_R_not_finite},
        {"val", D(-INFINITY), KP_R_not_finite},
        {"val", {.k = V_FLOAT, .d = NAN}, KP_R_not_finite},
        {"val", I(9007199254740993LL), KP_R_out_of_range},
        {"val", D(5000), KP_R_out_of_range},
        {"ref", I(5), KP_R_bad_type},
        {"ref", K(V_BIN), KP_R_bad_type},
        {"ref", S(""), KP_R_bad_field},
        {"ref", LONG(257), KP_R_too_large},
        {"ref", BYTES("a\xc3\x28", 3), KP_R_bad_field},
        {"ref", BYTES("a\xed\xa0\x80", 4), KP_R_bad_field}, /* a UTF-16 surrogate */
        {"ref", BYTES("a\0b", 3), KP_R_bad_field},
        {"rev", I(-1), KP_R_bad_field},
        {"rev", S("1"), KP_R_bad_type},
        {"rev", D(1.0), KP_R_bad_type},
        {"at", S("x"), KP_R_bad_type},
        {"w", D(NAN), KP_R_not_finite},
        {"w", D(-INFINITY), KP_R_not_finite},
        {"w", S("a"), KP_R_bad_type},
        {"x", K(V_ARR0), KP_R_bad_type},
        {"x", I(1), KP_R_bad_type},
        {"x", {.k = V_MAPBIG, .n = 5000}, KP_R_too_large},
        {"x", RAW("\x81\x01\x02", 3), KP_R_bad_field}, /* {1: 2}: a non-string key */
        {"x",
         RAW("\x81\xa1"
             "a"
             "\xc4\x01"
             "b",
             6),
         KP_R_bad_field}, /* binary inside */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char what[96];
        snprintf(what, sizeof what, "observation field %s (case %zu)", cases[k].key, k);
        struct spec sp = {.okey = cases[k].key, .ov = cases[k].v};
        obs_rej(s, what, &sp, cases[k].code);
    }
    static const struct val not_map[] = {{.k = V_INT, .i = 5}, {.k = V_ARR0}, {.k = V_NIL}};
    for (size_t k = 0; k < 3; k++) {
        struct spec sp = {.whole = &not_map[k]};
        obs_rej(s, "an observation that is not a map", &sp, KP_R_bad_type);
    }
}

static void containers(void *s)
{
    /* Declared sizes far beyond the bytes that follow: refused before anything is allocated. */
    static const struct {
        const char *what;
        const char *bytes;
        size_t len;
    } huge[] = {
        {"map32 of 2^32-1 entries", "\xdf\xff\xff\xff\xff\xa1t", 7},
        {"array32 of 2^32-1 elements", "\xdd\xff\xff\xff\xff\x01\x02", 7},
        {"str32 of 4 GB",
         "\xdb\xff\xff\xff\xff"
         "abc",
         8},
        {"bin32 of 4 GB",
         "\xc6\xff\xff\xff\xff"
         "abc",
         8},
        {"map16 of 65535 in a tiny frame",
         "\xde\xff\xff\xa1t\xa5"
         "batch",
         10},
    };
    for (size_t k = 0; k < sizeof huge / sizeof huge[0]; k++)
        expect_nack(s, huge[k].what, huge[k].bytes, huge[k].len, KP_R_bad_msgpack, false, 0);
    /* obs declared as array32 of 2^32-1 inside an otherwise valid batch */
    struct spec sp = {.bkey = "obs", .bv = RAW("\xdd\xff\xff\xff\xff\x80", 6), .n_obs = 1};
    batch_nack(s, "obs array32 of 2^32-1", &sp, KP_R_bad_msgpack, false);
    /* more observations than max_obs (seq readable: the nack carries it) */
    struct spec many = {.n_obs = g_max_obs + 1};
    batch_nack(s, "max_obs + 1 observations", &many, KP_R_too_large, true);
    /* nesting deeper than KP_DEPTH_MAX */
    char deep[64];
    size_t n = 0;
    for (int k = 0; k < 20; k++)
        deep[n++] = '\x91'; /* fixarray of 1 */
    deep[n++] = '\x01';
    struct spec nest = {.bkey = "deep", .bv = RAW(deep, n), .n_obs = 1};
    batch_nack(s, "nesting of 21 levels", &nest, KP_R_too_large, false);
    valid_batch(s, 3);
}

static int disconnects;

/* A frame above the collector's ZMQ_MAXMSGSIZE: ZeroMQ drops the connection (nothing can be
 * parsed, so nothing is answered); the client's DEALER reconnects and goes on. */
static void oversize(void *s)
{
    void *mon = NULL;
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://hostile-mon-%d", disconnects);
    void *big = open_dealer();
    if (zmq_socket_monitor(big, ep, ZMQ_EVENT_DISCONNECTED) == 0) {
        mon = zmq_socket(g_ctx, ZMQ_PAIR);
        zmq_connect(mon, ep);
    }
    sleep_ms(200);
    size_t len = g_max_bytes + 1;
    uint8_t *frame = malloc(len);
    memset(frame, 0xa1, len);
    frame[0] = 0xc1;
    g_hostile++;
    send_frame(big, frame, len);
    struct kp_ack a;
    struct kp_nack nk;
    if (await(big, false, 0, &a, &nk, 1500) != KP_MSG_UNKNOWN)
        FAIL("a frame above max_bytes was answered");
    bool seen = false;
    if (mon) {
        zmq_pollitem_t it = {mon, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 3000) > 0)
            seen = true;
        zmq_close(mon);
    }
    if (!seen)
        FAIL("no disconnect after a frame above max_bytes");
    disconnects++;
    free(frame);
    zmq_socket_monitor(big, NULL, 0);
    /* The same socket reconnects by itself and works. */
    valid_batch(big, 3);
    zmq_close(big);
    valid_batch(s, 3);
}

static void multipart(void *s)
{
    g_hostile++;
    zmq_send(s, "\x80", 1, ZMQ_SNDMORE);
    zmq_send(s, "\x80", 1, 0);
    struct kp_ack a;
    struct kp_nack nk;
    if (await(s, false, 0, &a, &nk, 5000) != KP_MSG_NACK || nk.code != KP_R_bad_msgpack)
        FAIL("a two-frame message: want nack bad_msgpack");
    valid_batch(s, 3);
}

/* Floods: garbage as fast as the socket takes it from one connection, 1 MB frames from
 * another, a burst of connections; valid batches keep being acked meanwhile. */
static void floods(void *s)
{
    void *f1 = open_dealer();
    uint8_t small[64];
    int64_t t0 = now_ms();
    unsigned long sent = 0;
    for (int k = 0; k < 50000; k++) {
        size_t len = 1 + rnd() % sizeof small;
        for (size_t i = 0; i < len; i++)
            small[i] = (uint8_t)rnd();
        small[0] = 0xc1;
        if (zmq_send(f1, small, len, ZMQ_DONTWAIT) >= 0)
            sent++;
        if (k % 5000 == 0)
            valid_batch(s, 3);
    }
    void *f2 = open_dealer();
    size_t big_len = 1u << 20;
    uint8_t *big = malloc(big_len);
    memset(big, 0xa1, big_len);
    big[0] = 0xc1;
    for (int k = 0; k < 300; k++) {
        if (zmq_send(f2, big, big_len, ZMQ_DONTWAIT) >= 0)
            sent++;
        if (k % 50 == 0)
            valid_batch(s, 3);
    }
    free(big);
    printf("flood: garbage and 1 MB frames sent after %.1f s\n", (double)(now_ms() - t0) / 1000.0);
    enum { N_CONN = 64 };
    void *many[N_CONN];
    for (int k = 0; k < N_CONN; k++) {
        many[k] = open_dealer();
        zmq_send(many[k], "\xc1garbage", 8, ZMQ_DONTWAIT);
    }
    valid_batch(s, 3);
    printf("flood: %d connections, a valid batch acked after %.1f s\n", N_CONN,
           (double)(now_ms() - t0) / 1000.0);
    for (int k = 0; k < N_CONN; k++)
        zmq_close(many[k]);
    /* The flood's nacks: read what arrives for a while (they are not all kept: a client that
     * does not read its replies loses them at the collector's HWM). */
    unsigned long nacks = 0;
    struct kp_buf r = {0};
    while (recv_reply(f1, &r, 300))
        nacks++;
    while (recv_reply(f2, &r, 300))
        nacks++;
    kp_buf_fini(&r);
    g_hostile += sent;
    printf("flood: %lu frames sent in %.1f s, %lu nacks read back\n", sent,
           (double)(now_ms() - t0) / 1000.0, nacks);
    zmq_close(f1);
    zmq_close(f2);
    valid_batch(s, 3);
}

/* A client that ignores the window: FLOOD_BATCHES valid batches back to back. The pipeline
 * answers each with an ack or, where a queue is full, a nack overloaded/scorer_unavailable with
 * retry:true (never a silent drop, never a permanent refusal); batches left unanswered (a
 * reply dropped at the collector's HWM for a client that did not read) or nacked are sent
 * again until every one is acked, as an adapter would. The script checks they are all stored
 * once. */
enum { FLOOD_BATCHES = 1500, FLOOD_OBS = 4 };
static unsigned long g_flood_obs;

static void flood_valid(void)
{
    void *f = open_dealer();
    uint64_t base = ++g_seq;
    g_seq += FLOOD_BATCHES;
    static bool done[FLOOD_BATCHES];
    unsigned long acked = 0, overloaded = 0, unavailable = 0, rounds = 0;
    struct kp_buf b = {0}, r = {0};
    struct spec sp = {.n_obs = FLOOD_OBS};
    const char *aid = g_aid;
    char flood_aid[80];
    snprintf(flood_aid, sizeof flood_aid, "%s-flood", g_aid);
    g_aid = flood_aid;
    int64_t t0 = now_ms();
    while (acked < FLOOD_BATCHES && rounds < 60) {
        rounds++;
        for (int k = 0; k < FLOOD_BATCHES; k++) {
            if (done[k])
                continue;
            build_batch(&b, base + (uint64_t)k, &sp);
            send_frame(f, b.data, b.len);
        }
        while (recv_reply(f, &r, 1500)) {
            enum kp_msg_type t = KP_MSG_UNKNOWN;
            if (kp_msg_peek(r.data, r.len, SIZE_MAX, &t) != KP_R_OK)
                continue;
            if (t == KP_MSG_ACK) {
                struct kp_ack a;
                memset(&a, 0, sizeof a);
                if (kp_ack_decode(r.data, r.len, &a) == KP_R_OK && a.seq >= base &&
                    a.seq < base + FLOOD_BATCHES && !done[a.seq - base]) {
                    if (a.stored != FLOOD_OBS || a.n_rej)
                        FAIL("flood batch %" PRIu64 ": stored %" PRIu64, a.seq, a.stored);
                    done[a.seq - base] = true;
                    acked++;
                }
                kp_ack_fini(&a);
            } else if (t == KP_MSG_NACK) {
                struct kp_nack nk;
                memset(&nk, 0, sizeof nk);
                if (kp_nack_decode(r.data, r.len, &nk) != KP_R_OK)
                    continue;
                if (!nk.retry)
                    FAIL("flood batch %" PRIu64 ": permanent nack %s", nk.seq,
                         kp_reason_str(nk.code));
                else if (nk.code == KP_R_overloaded)
                    overloaded++;
                else
                    unavailable++;
            }
        }
    }
    if (acked != FLOOD_BATCHES)
        FAIL("flood of valid batches: %lu of %d acked after %lu rounds", acked, FLOOD_BATCHES,
             rounds);
    g_flood_obs = acked * FLOOD_OBS;
    printf("flood of valid batches: %d batches acked in %.1f s over %lu rounds; nacks: "
           "overloaded %lu, scorer_unavailable %lu\n",
           FLOOD_BATCHES, (double)(now_ms() - t0) / 1000.0, rounds, overloaded, unavailable);
    g_aid = aid;
    kp_buf_fini(&b);
    kp_buf_fini(&r);
    zmq_close(f);
}

static void pings(void *s)
{
    struct kp_buf f = {0};
    kp_ping_encode(&f, false, 42);
    send_frame(s, f.data, f.len);
    if (!recv_reply(s, &g_reply, 5000))
        FAIL("ping: no pong");
    else {
        bool pong = false;
        uint64_t n = 0;
        if (kp_ping_decode(g_reply.data, g_reply.len, &pong, &n) != KP_R_OK || !pong || n != 42)
            FAIL("ping: the answer is not pong 42");
    }
    kp_buf_fini(&f);
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: hostile_client ENDPOINT AID SCHEME MAX_BYTES MAX_OBS REJ_TSV\n");
        return 2;
    }
    g_endpoint = argv[1];
    g_aid = argv[2];
    g_scheme = argv[3];
    g_max_bytes = strtoull(argv[4], NULL, 10);
    g_max_obs = strtoull(argv[5], NULL, 10);
    g_rej = fopen(argv[6], "w");
    if (!g_rej) {
        perror(argv[6]);
        return 2;
    }
    g_seq = (uint64_t)time(NULL) * 1000; /* seqs grow across runs, as PROTOCOL.md asks */
    g_ctx = zmq_ctx_new();
    g_sock = open_dealer();

    pings(g_sock);
    valid_batch(g_sock, 5);
    printf("random bytes\n");
    random_bytes(g_sock);
    printf("truncated frames\n");
    truncated(g_sock);
    printf("wrong types, missing fields, overlong strings, invalid UTF-8, versions\n");
    batch_fields(g_sock);
    printf("observation fields: types, NaN and infinities, lengths, UTF-8, semantics\n");
    obs_fields(g_sock);
    printf("huge declared containers, max_obs, nesting\n");
    containers(g_sock);
    printf("multipart\n");
    multipart(g_sock);
    printf("frames above max_bytes\n");
    oversize(g_sock);
    oversize(g_sock);
    printf("floods\n");
    floods(g_sock);
    flood_valid();
    pings(g_sock);
    valid_batch(g_sock, 5);

    fclose(g_rej);
    zmq_close(g_sock);
    kp_buf_fini(&g_reply);
    zmq_ctx_term(g_ctx);
    printf("valid_obs=%lu flood_obs=%lu valid_batches=%lu hostile=%lu failures=%lu\n", g_valid_obs,
           g_flood_obs, g_valid_batches, g_hostile, g_failures);
    return g_failures ? 1 : 0;
}
