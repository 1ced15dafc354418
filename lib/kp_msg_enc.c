/*
 * kp_msg_enc: the encoders of every PROTOCOL.md v1 message and of the internal reg/hb, the
 * write half of kp_msg (the decoder is kp_msg.c). Adapters encode batches, hello and ping;
 * the collector encodes welcome, pong and nacks; the scorer encodes acks and nacks, reg and
 * hb. An encoder checks its whole input first with the decoder's own rules (codes, periods,
 * finite numbers, ref and x limits) and appends nothing on KP_EINVAL, so kaoping never sends
 * a frame its own decoder would refuse. Frames are written with msgpack-c's packer straight
 * into a kp_buf, each integer and length in its smallest msgpack form.
 */
#include "kp_msg.h"

#include <math.h>
#include <msgpack.h>
#include <string.h>

#include "kp_err.h"

#define INT_EXACT_MAX 9007199254740992.0 /* 2^53 */

static int buf_write(void *data, const char *buf, size_t len)
{
    kp_buf_append(data, buf, len); /* aborts on OOM (kp_buf.h); never fails otherwise */
    return 0;
}

static void put_str(msgpack_packer *pk, const char *s, size_t n)
{
    msgpack_pack_str_with_body(pk, s, n);
}

static void put_key(msgpack_packer *pk, const char *key)
{
    put_str(pk, key, strlen(key));
}

static void put_kv_str(msgpack_packer *pk, const char *key, const char *s)
{
    put_key(pk, key);
    put_str(pk, s, strlen(s));
}

static void put_kv_uint(msgpack_packer *pk, const char *key, uint64_t v)
{
    put_key(pk, key);
    msgpack_pack_uint64(pk, v);
}

/* Starts a frame: a map of nkeys entries, the first two t and v (PROTOCOL.md "Messages"). */
static void put_head(msgpack_packer *pk, struct kp_buf *out, const char *t, size_t nkeys)
{
    msgpack_packer_init(pk, out, buf_write);
    msgpack_pack_map(pk, nkeys);
    put_kv_str(pk, "t", t);
    put_kv_uint(pk, "v", KP_PROTO_VERSION);
}

/* A NUL-terminated code held in a KP_CODE_MAX + 1 array. */
static bool code_ok(const char *s)
{
    return kp_code_valid(s, strnlen(s, KP_CODE_MAX + 1));
}

/* Length of a human text cut to at most max bytes at a UTF-8 character boundary; -1 when
 * the kept part is not UTF-8 (or s is NULL and not allowed). */
static long text_len(const char *s, size_t max)
{
    size_t n = strnlen(s, max + 1);
    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
            n--;
    }
    return kp_utf8_valid(s, n) ? (long)n : -1;
}

static bool reason_ok(enum kp_reason r)
{
    return (int)r > KP_R_OK && r < KP_R__COUNT;
}

/* ---- batch -------------------------------------------------------------------------------- */

static bool obs_ok(const struct kp_obs *o)
{
    size_t ref_len = strnlen(o->ref, sizeof o->ref);
    return code_ok(o->u) && code_ok(o->i) &&
           kp_period_valid(o->p, strnlen(o->p, sizeof o->p), NULL) && isfinite(o->val) &&
           ref_len >= 1 && ref_len <= KP_REF_MAX && kp_utf8_valid(o->ref, ref_len) &&
           isfinite(o->w) && (o->x ? kp_x_valid(o->x, o->x_len) : o->x_len == 0);
}

/* An integral value within 2^53 goes as an integer (smaller, and exact), anything else as
 * float64; -0.0 stays a float so that it reads back bit for bit. */
static void put_number(msgpack_packer *pk, double v)
{
    if (v == trunc(v) && fabs(v) <= INT_EXACT_MAX && !(v == 0 && signbit(v)))
        msgpack_pack_int64(pk, (int64_t)v);
    else
        msgpack_pack_double(pk, v);
}

int kp_batch_encode(struct kp_buf *out, const struct kp_batch *b)
{
    msgpack_packer pk;
    if (!out || !b || !code_ok(b->aid) || !code_ok(b->scheme) || !code_ok(b->src) ||
        (b->n_obs && !b->obs) || b->n_obs > UINT32_MAX)
        return KP_EINVAL;
    for (size_t k = 0; k < b->n_obs; k++)
        if (!obs_ok(&b->obs[k]))
            return KP_EINVAL;

    put_head(&pk, out, "batch", 8);
    put_kv_str(&pk, "aid", b->aid);
    put_kv_str(&pk, "scheme", b->scheme);
    put_kv_str(&pk, "src", b->src);
    put_kv_uint(&pk, "seq", b->seq);
    put_key(&pk, "sent");
    msgpack_pack_int64(&pk, b->sent);
    put_key(&pk, "obs");
    msgpack_pack_array(&pk, b->n_obs);
    for (size_t k = 0; k < b->n_obs; k++) {
        const struct kp_obs *o = &b->obs[k];
        /* Optional keys at their PROTOCOL.md default are left out. */
        bool rev = o->rev != 0, at = o->at != b->sent, w = o->w != 1.0, x = o->x != NULL;
        msgpack_pack_map(&pk, 5 + (size_t)rev + (size_t)at + (size_t)w + (size_t)x);
        put_kv_str(&pk, "u", o->u);
        put_kv_str(&pk, "i", o->i);
        put_kv_str(&pk, "p", o->p);
        put_key(&pk, "val");
        put_number(&pk, o->val);
        put_kv_str(&pk, "ref", o->ref);
        if (rev)
            put_kv_uint(&pk, "rev", o->rev);
        if (at) {
            put_key(&pk, "at");
            msgpack_pack_int64(&pk, o->at);
        }
        if (w) {
            put_key(&pk, "w");
            put_number(&pk, o->w);
        }
        if (x) {
            put_key(&pk, "x");
            kp_buf_append(out, o->x, o->x_len); /* already msgpack, checked by kp_x_valid() */
        }
    }
    return 0;
}

/* ---- replies ------------------------------------------------------------------------------ */

int kp_ack_encode(struct kp_buf *out, const struct kp_ack *a)
{
    msgpack_packer pk;
    if (!out || !a || (a->n_rej && !a->rej) || a->n_rej > UINT32_MAX)
        return KP_EINVAL;
    for (size_t k = 0; k < a->n_rej; k++)
        if (!reason_ok(a->rej[k].code) ||
            (a->rej[k].msg && text_len(a->rej[k].msg, KP_MSG_TEXT_MAX - 1) < 0))
            return KP_EINVAL;

    put_head(&pk, out, "ack", 6);
    put_kv_uint(&pk, "seq", a->seq);
    put_kv_uint(&pk, "stored", a->stored);
    put_key(&pk, "dup");
    if (a->dup)
        msgpack_pack_true(&pk);
    else
        msgpack_pack_false(&pk);
    put_key(&pk, "rej");
    msgpack_pack_array(&pk, a->n_rej);
    for (size_t k = 0; k < a->n_rej; k++) {
        const struct kp_rej *r = &a->rej[k];
        const char *m = r->msg ? r->msg : "";
        msgpack_pack_map(&pk, 3);
        put_kv_uint(&pk, "n", r->n);
        put_kv_str(&pk, "code", kp_reason_str(r->code));
        put_key(&pk, "msg");
        put_str(&pk, m, (size_t)text_len(m, KP_MSG_TEXT_MAX - 1));
    }
    return 0;
}

int kp_nack_encode(struct kp_buf *out, const struct kp_nack *n)
{
    msgpack_packer pk;
    long mlen;
    if (!out || !n || !reason_ok(n->code) || (mlen = text_len(n->msg, KP_MSG_TEXT_MAX - 1)) < 0)
        return KP_EINVAL;
    put_head(&pk, out, "nack", 6);
    put_key(&pk, "seq");
    if (n->has_seq) /* PROTOCOL.md nack.seq: nil when the frame had no readable seq */
        msgpack_pack_uint64(&pk, n->seq);
    else
        msgpack_pack_nil(&pk);
    put_kv_str(&pk, "code", kp_reason_str(n->code));
    put_key(&pk, "msg");
    put_str(&pk, n->msg, (size_t)mlen);
    put_key(&pk, "retry");
    if (n->retry)
        msgpack_pack_true(&pk);
    else
        msgpack_pack_false(&pk);
    return 0;
}

/* ---- handshake, liveness ------------------------------------------------------------------ */

int kp_hello_encode(struct kp_buf *out, const struct kp_hello *h)
{
    msgpack_packer pk;
    long swlen;
    if (!out || !h || !code_ok(h->aid) || !code_ok(h->scheme) ||
        (swlen = text_len(h->sw, KP_MSG_TEXT_MAX - 1)) < 0)
        return KP_EINVAL;
    put_head(&pk, out, "hello", 5);
    put_kv_str(&pk, "aid", h->aid);
    put_kv_str(&pk, "scheme", h->scheme);
    put_key(&pk, "sw");
    put_str(&pk, h->sw, (size_t)swlen);
    return 0;
}

int kp_welcome_encode(struct kp_buf *out, const struct kp_welcome *w)
{
    msgpack_packer pk;
    if (!out || !w)
        return KP_EINVAL;
    put_head(&pk, out, "welcome", 6);
    put_kv_uint(&pk, "max_bytes", w->max_bytes);
    put_kv_uint(&pk, "max_obs", w->max_obs);
    put_kv_uint(&pk, "max_inflight", w->max_inflight);
    put_kv_uint(&pk, "hb_ms", w->hb_ms);
    return 0;
}

int kp_ping_encode(struct kp_buf *out, bool pong, uint64_t n)
{
    msgpack_packer pk;
    if (!out)
        return KP_EINVAL;
    put_head(&pk, out, pong ? "pong" : "ping", 3);
    put_kv_uint(&pk, "n", n);
    return 0;
}

int kp_reg_encode(struct kp_buf *out, bool hb, const struct kp_reg *r)
{
    msgpack_packer pk;
    if (!out || !r || !code_ok(r->sid))
        return KP_EINVAL;
    if (hb) {
        put_head(&pk, out, "hb", 3);
        put_kv_str(&pk, "sid", r->sid);
        return 0;
    }
    if (r->n_schemes > KP_REG_MAX_SCHEMES)
        return KP_EINVAL;
    for (size_t k = 0; k < r->n_schemes; k++)
        if (!code_ok(r->schemes[k]))
            return KP_EINVAL;
    put_head(&pk, out, "reg", 4);
    put_kv_str(&pk, "sid", r->sid);
    put_key(&pk, "schemes");
    msgpack_pack_array(&pk, r->n_schemes);
    for (size_t k = 0; k < r->n_schemes; k++)
        put_str(&pk, r->schemes[k], strlen(r->schemes[k]));
    return 0;
}
