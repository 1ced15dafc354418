/*
 * fuzz_msg: the wire decoder and validators (lib/kp_msg.c), the first code any byte from an
 * adapter meets (ARCHITECTURE.md guarantee 4). One input is decoded as every message type,
 * and what the decoders say is checked against what the rest of the pipeline relies on:
 *  - a refused batch leaves *out NULL and a UTF-8 message (it becomes a nack's msg);
 *  - an accepted batch respects the limits, every accepted observation is valid (codes,
 *    period grammar, finite value and weight, UTF-8 ref, an x the JSON conversion takes),
 *    every refused one has a reason and a UTF-8 message (they become rejection rows);
 *  - a batch with no refused observation encodes again and decodes to the same fields; the
 *    same for ack, nack, hello, welcome, ping and reg;
 *  - the validators agree with each other on the raw bytes.
 */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "kp_buf.h"
#include "kp_msg.h"
#include "kp_reason.h"

static bool cstr_ok(const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    return n < cap && kp_utf8_valid(s, n);
}

static void check_batch_roundtrip(const struct kp_batch *b, const struct kp_msg_limits *lim)
{
    struct kp_buf f = {0};
    FZ_ASSERT(kp_batch_encode(&f, b) == 0);
    struct kp_batch *b2 = NULL;
    bool has_seq = false;
    uint64_t seq = 0;
    char msg[KP_MSG_TEXT_MAX];
    /* The encoding of a valid batch may be longer than the input (fixed formats), so no
     * frame limit here. */
    struct kp_msg_limits big = {SIZE_MAX, lim->max_obs};
    FZ_ASSERT(kp_batch_decode(f.data, f.len, &big, &b2, &has_seq, &seq, msg, sizeof msg) ==
              KP_R_OK);
    FZ_ASSERT(!strcmp(b->aid, b2->aid) && !strcmp(b->scheme, b2->scheme) &&
              !strcmp(b->src, b2->src) && b->seq == b2->seq && b->sent == b2->sent &&
              b->n_obs == b2->n_obs && b2->n_rejected == 0);
    for (size_t k = 0; k < b->n_obs; k++) {
        const struct kp_obs *o = &b->obs[k], *o2 = &b2->obs[k];
        FZ_ASSERT(o2->reason == KP_R_OK);
        FZ_ASSERT(!strcmp(o->u, o2->u) && !strcmp(o->i, o2->i) && !strcmp(o->p, o2->p) &&
                  !strcmp(o->ref, o2->ref) && o->rev == o2->rev && o->at == o2->at);
        FZ_ASSERT(memcmp(&o->val, &o2->val, sizeof o->val) == 0 || o->val == o2->val);
        FZ_ASSERT(o->w == o2->w);
        FZ_ASSERT(o->x_len == o2->x_len && (!o->x_len || !memcmp(o->x, o2->x, o->x_len)));
    }
    kp_batch_destroy(&b2);
    kp_buf_fini(&f);
}

static void fuzz_batch(const uint8_t *d, size_t n)
{
    /* A small max_obs reaches the too_large path with small inputs too. */
    struct kp_msg_limits lim = {KP_DEFAULT_MAX_BYTES, 64};
    struct kp_batch *b = (struct kp_batch *)&lim; /* must come back NULL on refusal */
    bool has_seq = false;
    uint64_t seq = 0;
    char msg[KP_MSG_TEXT_MAX];
    memset(msg, 'x', sizeof msg);
    enum kp_reason r = kp_batch_decode(d, n, &lim, &b, &has_seq, &seq, msg, sizeof msg);
    FZ_ASSERT((int)r >= KP_R_OK && r < KP_R__COUNT);
    if (r != KP_R_OK) {
        FZ_ASSERT(b == NULL);
        FZ_ASSERT(cstr_ok(msg, sizeof msg) && msg[0]);
        FZ_ASSERT(!kp_reason_retry(r)); /* the decoder never says "try again" */
        return;
    }
    FZ_ASSERT(b != NULL && has_seq && seq == b->seq);
    FZ_ASSERT(b->n_obs <= lim.max_obs);
    FZ_ASSERT(kp_code_valid(b->aid, strlen(b->aid)) &&
              kp_code_valid(b->scheme, strlen(b->scheme)) && kp_code_valid(b->src, strlen(b->src)));
    size_t refused = 0;
    struct kp_buf json = {0};
    for (size_t k = 0; k < b->n_obs; k++) {
        const struct kp_obs *o = &b->obs[k];
        FZ_ASSERT(cstr_ok(o->ref, sizeof o->ref)); /* kept for the rejection row, even refused */
        if (o->reason != KP_R_OK) {
            refused++;
            FZ_ASSERT(o->reason < KP_R__COUNT && !kp_reason_retry(o->reason));
            FZ_ASSERT(cstr_ok(o->msg, sizeof o->msg) && o->msg[0]);
            continue;
        }
        FZ_ASSERT(kp_code_valid(o->u, strlen(o->u)) && kp_code_valid(o->i, strlen(o->i)));
        FZ_ASSERT(kp_period_valid(o->p, strlen(o->p), NULL));
        FZ_ASSERT(isfinite(o->val) && isfinite(o->w));
        FZ_ASSERT(o->ref[0] && strlen(o->ref) <= KP_REF_MAX);
        if (o->x) {
            FZ_ASSERT(o->x >= d && o->x + o->x_len <= d + n); /* points into the frame */
            FZ_ASSERT(kp_x_valid(o->x, o->x_len));
            kp_buf_reset(&json);
            FZ_ASSERT(kp_msgpack_to_json(o->x, o->x_len, &json) == 0);
        }
    }
    FZ_ASSERT(refused == b->n_rejected);
    kp_buf_fini(&json);
    if (refused == 0)
        check_batch_roundtrip(b, &lim);
    kp_batch_destroy(&b);
    FZ_ASSERT(b == NULL);
}

static void fuzz_others(const uint8_t *d, size_t n)
{
    struct kp_buf f = {0};
    struct kp_ack a;
    memset(&a, 0, sizeof a);
    if (kp_ack_decode(d, n, &a) == KP_R_OK) {
        for (size_t k = 0; k < a.n_rej; k++) {
            FZ_ASSERT(a.rej[k].code > KP_R_OK && a.rej[k].code < KP_R__COUNT);
            FZ_ASSERT(a.rej[k].msg && kp_utf8_valid(a.rej[k].msg, strlen(a.rej[k].msg)));
        }
        FZ_ASSERT(kp_ack_encode(&f, &a) == 0);
        struct kp_ack a2;
        memset(&a2, 0, sizeof a2);
        FZ_ASSERT(kp_ack_decode(f.data, f.len, &a2) == KP_R_OK);
        FZ_ASSERT(a2.seq == a.seq && a2.stored == a.stored && a2.dup == a.dup &&
                  a2.n_rej == a.n_rej);
        for (size_t k = 0; k < a.n_rej; k++)
            FZ_ASSERT(a2.rej[k].n == a.rej[k].n && a2.rej[k].code == a.rej[k].code);
        kp_ack_fini(&a2);
    }
    kp_ack_fini(&a);

    struct kp_nack nk;
    memset(&nk, 0, sizeof nk);
    if (kp_nack_decode(d, n, &nk) == KP_R_OK) {
        FZ_ASSERT(nk.code > KP_R_OK && nk.code < KP_R__COUNT);
        FZ_ASSERT(cstr_ok(nk.msg, sizeof nk.msg));
        kp_buf_reset(&f);
        FZ_ASSERT(kp_nack_encode(&f, &nk) == 0);
        struct kp_nack n2;
        FZ_ASSERT(kp_nack_decode(f.data, f.len, &n2) == KP_R_OK);
        FZ_ASSERT(n2.code == nk.code && n2.retry == nk.retry && n2.has_seq == nk.has_seq &&
                  (!nk.has_seq || n2.seq == nk.seq) && !strcmp(n2.msg, nk.msg));
    }

    struct kp_hello h;
    if (kp_hello_decode(d, n, &h) == KP_R_OK) {
        kp_buf_reset(&f);
        FZ_ASSERT(kp_hello_encode(&f, &h) == 0);
        struct kp_hello h2;
        FZ_ASSERT(kp_hello_decode(f.data, f.len, &h2) == KP_R_OK);
        FZ_ASSERT(!strcmp(h.aid, h2.aid) && !strcmp(h.scheme, h2.scheme) && !strcmp(h.sw, h2.sw));
    }

    struct kp_welcome w;
    if (kp_welcome_decode(d, n, &w) == KP_R_OK) {
        kp_buf_reset(&f);
        FZ_ASSERT(kp_welcome_encode(&f, &w) == 0);
        struct kp_welcome w2;
        FZ_ASSERT(kp_welcome_decode(f.data, f.len, &w2) == KP_R_OK);
        FZ_ASSERT(!memcmp(&w, &w2, sizeof w));
    }

    bool pong = false;
    uint64_t num = 0;
    if (kp_ping_decode(d, n, &pong, &num) == KP_R_OK) {
        kp_buf_reset(&f);
        FZ_ASSERT(kp_ping_encode(&f, pong, num) == 0);
        bool pong2;
        uint64_t num2;
        FZ_ASSERT(kp_ping_decode(f.data, f.len, &pong2, &num2) == KP_R_OK);
        FZ_ASSERT(pong2 == pong && num2 == num);
    }

    static struct kp_reg reg, reg2; /* 4 KiB each: not on the stack */
    bool hb = false;
    if (kp_reg_decode(d, n, &hb, &reg) == KP_R_OK) {
        FZ_ASSERT(reg.n_schemes <= KP_REG_MAX_SCHEMES);
        kp_buf_reset(&f);
        FZ_ASSERT(kp_reg_encode(&f, hb, &reg) == 0);
        bool hb2;
        FZ_ASSERT(kp_reg_decode(f.data, f.len, &hb2, &reg2) == KP_R_OK);
        FZ_ASSERT(hb2 == hb && !strcmp(reg.sid, reg2.sid) &&
                  (hb || reg2.n_schemes == reg.n_schemes));
    }
    kp_buf_fini(&f);
}

static void fuzz_validators(const uint8_t *d, size_t n)
{
    const char *s = (const char *)d;
    if (kp_code_valid(s, n))
        FZ_ASSERT(n >= 1 && n <= KP_CODE_MAX && kp_utf8_valid(s, n));
    enum kp_period_kind kind;
    if (kp_period_valid(s, n, &kind))
        FZ_ASSERT(n >= 4 && n <= KP_PERIOD_MAX && kind <= KP_PERIOD_DAY);
    (void)kp_utf8_valid(s, n);
    if (kp_x_valid(d, n)) {
        struct kp_buf json = {0};
        FZ_ASSERT(kp_msgpack_to_json(d, n, &json) == 0);
        kp_buf_fini(&json);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    enum kp_msg_type t = KP_MSG_UNKNOWN;
    enum kp_reason r = kp_msg_peek(data, size, KP_DEFAULT_MAX_BYTES, &t);
    FZ_ASSERT((int)r >= KP_R_OK && r < KP_R__COUNT);
    fuzz_batch(data, size);
    fuzz_others(data, size);
    fuzz_validators(data, size);
    return 0;
}
