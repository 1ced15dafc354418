/*
 * adp_pump: source → spool (see adp_pump.h), plus the runtime's side of struct adp_out that
 * source plugins fill. The order of the store step is the whole point: encode, then
 * kp_spool_put(batch, cursor) in one transaction, and only then ack the source, so that a
 * kill -9 anywhere leaves either the batch with its cursor or neither (ARCHITECTURE.md
 * guarantee 1).
 */
#include "adp_pump.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adp_metrics.h"
#include "kp_err.h"
#include "kp_log.h"
#include "kp_msg.h"
#include "kp_spool.h"
#include "kp_time.h"

/* ---- adp_out ----------------------------------------------------------------------------- */

/* Longest text kept per field: one byte over the PROTOCOL.md limit, so that an overlong value
 * is still refused centrally as too long; numbers are never cut silently (a cut number would
 * be another number): a cut numeric field is sent as text and refused. */
static const size_t field_cap[ADP_F__COUNT] = {
    [ADP_F_U] = KP_CODE_MAX + 1,
    [ADP_F_I] = KP_CODE_MAX + 1,
    [ADP_F_P] = KP_PERIOD_MAX + 1,
    [ADP_F_VAL] = 64,
    [ADP_F_REF] = KP_REF_MAX + 1,
    [ADP_F_REV] = 64,
    [ADP_F_AT] = 64,
    [ADP_F_W] = 64,
};

static void out_init(struct adp_out *o, size_t cap)
{
    memset(o, 0, sizeof *o);
    o->cap = cap;
    o->recs = kp_xcalloc(cap ? cap : 1, sizeof *o->recs);
    o->lag = -1;
}

static void out_reset(struct adp_out *o)
{
    o->n = 0;
    kp_buf_reset(&o->arena);
    kp_buf_reset(&o->cursor);
    o->has_cursor = false;
    o->more = false;
    o->lag = -1;
}

static void out_fini(struct adp_out *o)
{
    free(o->recs);
    kp_buf_fini(&o->arena);
    kp_buf_fini(&o->cursor);
    memset(o, 0, sizeof *o);
}

int adp_out_add(struct adp_out *o, const struct adp_rec *r)
{
    if (o->n >= o->cap)
        return KP_EFULL;
    const char *v[ADP_F__COUNT] = {r->u, r->i, r->p, r->val, r->ref, r->rev, r->at, r->w};
    struct adp_out_rec *x = &o->recs[o->n];
    memset(x, 0, sizeof *x);
    for (int f = 0; f < ADP_F__COUNT; f++) {
        if (!v[f])
            continue;
        size_t len = strlen(v[f]);
        if (len > field_cap[f]) {
            len = field_cap[f];
            x->cut |= (uint16_t)(1u << f);
        }
        x->present |= (uint16_t)(1u << f);
        x->off[f] = (uint32_t)o->arena.len;
        kp_buf_append(&o->arena, v[f], len);
        kp_buf_append(&o->arena, "", 1); /* the NUL is part of the arena */
    }
    o->n++;
    return 0;
}

size_t adp_out_room(const struct adp_out *o)
{
    return o->cap - o->n;
}

size_t adp_out_count(const struct adp_out *o)
{
    return o->n;
}

void adp_out_set_cursor(struct adp_out *o, const char *cursor)
{
    kp_buf_reset(&o->cursor);
    o->has_cursor = cursor != NULL;
    if (cursor)
        kp_buf_append_str(&o->cursor, cursor);
}

void adp_out_set_more(struct adp_out *o, bool more)
{
    o->more = more;
}

void adp_out_set_lag(struct adp_out *o, double seconds)
{
    o->lag = seconds;
}

const char *adp_out_field(const struct adp_out *o, size_t k, enum adp_field f)
{
    const struct adp_out_rec *x = &o->recs[k];
    if (!(x->present & (1u << f)))
        return NULL;
    return (const char *)o->arena.data + x->off[f];
}

bool adp_out_field_cut(const struct adp_out *o, size_t k, enum adp_field f)
{
    return (o->recs[k].cut & (1u << f)) != 0;
}

/* ---- the pump ---------------------------------------------------------------------------- */

struct adp_pump {
    const struct adp_source *src;
    void *state;
    struct kp_spool *sp;
    struct adp_pump_opts o;
    struct adp_metrics *am;
    struct adp_out out;
    bool pending; /* out holds the records of a poll that was not stored yet */
    struct kp_buf frame;
};

int adp_pump_open(const struct adp_source *src, const void *src_cfg, struct kp_spool *sp,
                  const struct adp_pump_opts *o, struct adp_metrics *am, struct adp_pump **out,
                  char *err, size_t errlen)
{
    *out = NULL;
    char cursor[4096];
    int rc = kp_spool_cursor(sp, cursor, sizeof cursor);
    if (rc != 0) {
        snprintf(err, errlen, "spool: cannot read the stored cursor: %s", kp_strerror(rc));
        return rc;
    }
    struct adp_pump *p = kp_xcalloc(1, sizeof *p);
    p->src = src;
    p->sp = sp;
    p->o = *o;
    p->am = am;
    out_init(&p->out, o->batch_max_obs);
    struct adp_source_env env = {o->aid, o->scheme, o->src, o->batch_max_obs};
    rc = src->init(&env, src_cfg, cursor, &p->state, err, errlen);
    if (rc != 0) {
        out_fini(&p->out);
        free(p);
        return rc;
    }
    *out = p;
    return 0;
}

void adp_pump_close(struct adp_pump **pp)
{
    if (!pp || !*pp)
        return;
    struct adp_pump *p = *pp;
    if (p->src->fini)
        p->src->fini(&p->state);
    out_fini(&p->out);
    kp_buf_fini(&p->frame);
    free(p);
    *pp = NULL;
}

int adp_pump_poll(struct adp_pump *p, char *err, size_t errlen)
{
    out_reset(&p->out);
    p->pending = false;
    if (errlen)
        err[0] = 0;
    int rc = p->src->poll(p->state, &p->out, err, errlen);
    if (rc < 0) {
        out_reset(&p->out);
        return rc;
    }
    p->pending = true;
    return (int)p->out.n;
}

bool adp_pump_more(const struct adp_pump *p)
{
    return p->out.more;
}

int adp_pump_store(struct adp_pump *p, uint64_t *seq_out)
{
    *seq_out = 0;
    if (!p->pending)
        return 0;
    struct adp_out *o = &p->out;
    if (p->am && o->lag >= 0)
        kp_gauge_set(p->am->watermark_lag, o->lag);
    if (o->n == 0) {
        /* Nothing new. A cursor change without records is not stored: it would cost a batch
         * (and a seq) for nothing; the source re-derives it from its committed position. */
        p->pending = false;
        return 0;
    }
    uint64_t seq = kp_spool_next_seq(p->sp);
    struct adp_batch_hdr h = {p->o.aid, p->o.scheme, p->o.src, seq, kp_now_ms()};
    size_t n_invalid = 0;
    int rc = adp_batch_build(&p->frame, &h, o, &n_invalid);
    if (rc != 0) {
        KP_ERROR("batch_encode_failed", "adapter=%s scheme=%s seq=%" PRIu64 " err=%s", p->o.aid,
                 p->o.scheme, seq, kp_err_name(rc));
        p->pending = false;
        return rc;
    }
    rc = kp_spool_put(p->sp, seq, p->frame.data, p->frame.len, (uint32_t)o->n,
                      o->has_cursor ? kp_buf_cstr(&o->cursor) : NULL);
    if (rc != 0) {
        /* Nothing was stored and the source was not acked: it reads the same records again
         * on its next poll. */
        if (rc != KP_EFULL)
            KP_ERROR("spool_put_failed",
                     "adapter=%s scheme=%s seq=%" PRIu64 " obs=%zu bytes=%zu err=%s", p->o.aid,
                     p->o.scheme, seq, o->n, p->frame.len, kp_err_name(rc));
        p->pending = false;
        out_reset(o);
        return rc;
    }
    p->pending = false;
    *seq_out = seq;
    if (p->am) {
        kp_counter_add(p->am->rows_pulled, (double)o->n);
        kp_counter_inc(p->am->batches_spooled);
        if (n_invalid)
            kp_counter_add(p->am->rows_invalid, (double)n_invalid);
    }
    if (n_invalid)
        KP_WARN("rows_invalid",
                "adapter=%s scheme=%s seq=%" PRIu64 " invalid=%zu obs=%zu "
                "msg=\"sent anyway: the scorer refuses them with a reason\"",
                p->o.aid, p->o.scheme, seq, n_invalid, o->n);
    KP_DEBUG("batch_spooled", "adapter=%s scheme=%s seq=%" PRIu64 " obs=%zu bytes=%zu", p->o.aid,
             p->o.scheme, seq, o->n, p->frame.len);
    if (p->src->ack) {
        rc = p->src->ack(p->state);
        if (rc != 0)
            KP_ERROR("source_ack_failed", "adapter=%s scheme=%s seq=%" PRIu64 " err=%s", p->o.aid,
                     p->o.scheme, seq, kp_err_name(rc));
    }
    return 0;
}

int adp_pump_step(struct adp_pump *p, char *err, size_t errlen)
{
    int n = adp_pump_poll(p, err, errlen);
    if (n <= 0)
        return n;
    uint64_t seq;
    int rc = adp_pump_store(p, &seq);
    return rc != 0 ? rc : n;
}
