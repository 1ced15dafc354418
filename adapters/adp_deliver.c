/*
 * adp_deliver: sends spooled batches to the collector and settles them by its answers (see
 * adp_deliver.h). The window is a small array of slots, one per unanswered batch, each with
 * the monotonic time at which it is due for (re)transmission; one uv timer is armed for the
 * earliest due slot. The spool stays the only copy of a batch (ARCHITECTURE.md guarantee 1):
 * a slot holds a seq, and the payload is read back from the spool for every transmission.
 * Delivery outcomes are the tri-state of STYLE.md "Errors": ack (ok, delete), nack
 * retry:false (reject, dead letter), nack retry:true or silence (retry, backoff).
 */
#include "adp_deliver.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adp_metrics.h"
#include "kp_err.h"
#include "kp_log.h"
#include "kp_msg.h"
#include "kp_spool.h"
#include "kp_time.h"
#include "kp_zsock.h"

enum slot_state {
    SLOT_WAIT_ACK, /* sent; due = ack timeout */
    SLOT_RESEND,   /* to be sent at due (backoff after retry:true, or the send was refused) */
};

struct slot {
    uint64_t seq;
    uint64_t due_ns;
    uint32_t sends;   /* transmissions so far */
    uint32_t retries; /* retry:true nacks so far */
    enum slot_state st;
};

struct adp_deliver {
    uv_loop_t *loop;
    struct kp_spool *sp;
    struct adp_deliver_opts o;
    struct adp_metrics *am;
    adp_deliver_freed_cb freed;
    void *freed_arg;
    struct kp_zsock *sock;
    uv_timer_t timer;
    struct slot *slots; /* o.inflight entries, the first n used, in seq order */
    size_t n;
    uint64_t last_queued; /* highest seq taken into the window in this session */
    uint64_t rng;
    bool draining; /* adp_deliver_drain: the window only shrinks */
    int open_handles;
    void (*close_cb)(void *arg);
    void *close_arg;
};

/* Wait after a refused send (HWM reached): short, not counted as a transmission. */
#define SEND_REFUSED_WAIT_MS 100

static uint64_t now_ns(void)
{
    return kp_mono_ns();
}

static double jitter01(struct adp_deliver *d)
{
    /* xorshift64*: jitter only, not security */
    d->rng ^= d->rng >> 12;
    d->rng ^= d->rng << 25;
    d->rng ^= d->rng >> 27;
    return (double)((d->rng * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

static int64_t capped_double(int64_t base, uint32_t times, int64_t cap)
{
    int64_t v = base;
    for (uint32_t k = 0; k < times && v < cap; k++)
        v *= 2;
    return v < cap ? v : cap;
}

/* How long to wait for an answer after transmission number `sends` (1-based): the ack
 * timeout, doubled per retransmission up to retry_max_ms, plus up to 20% jitter from the
 * second transmission on so that many adapters do not retransmit in step. */
static uint64_t ack_wait_ns(struct adp_deliver *d, uint32_t sends)
{
    int64_t cap = d->o.retry_max_ms > d->o.ack_timeout_ms ? d->o.retry_max_ms : d->o.ack_timeout_ms;
    double ms = (double)capped_double(d->o.ack_timeout_ms, sends - 1, cap);
    if (sends > 1)
        ms *= 1.0 + 0.2 * jitter01(d);
    return (uint64_t)(ms * 1e6);
}

/* Backoff after retry:true nack number `retries` (1-based): exponential with "equal jitter"
 * (half fixed, half random) up to retry_max_ms. */
static uint64_t backoff_ns(struct adp_deliver *d, uint32_t retries)
{
    double ms = (double)capped_double(d->o.retry_min_ms, retries - 1, d->o.retry_max_ms);
    ms = ms / 2 + ms / 2 * jitter01(d);
    return (uint64_t)(ms * 1e6);
}

static void update_gauges(struct adp_deliver *d)
{
    if (d->am)
        kp_gauge_set(d->am->inflight, (double)d->n);
}

static void on_timer(uv_timer_t *t);

/* Arms the timer for the earliest due slot. */
static void rearm(struct adp_deliver *d)
{
    if (d->close_cb || d->n == 0) {
        uv_timer_stop(&d->timer);
        return;
    }
    uint64_t due = UINT64_MAX;
    for (size_t k = 0; k < d->n; k++)
        if (d->slots[k].due_ns < due)
            due = d->slots[k].due_ns;
    uint64_t now = now_ns();
    uint64_t ms = due > now ? (due - now + 999999) / 1000000 : 0;
    uv_timer_start(&d->timer, on_timer, ms, 0);
}

static struct slot *find_slot(struct adp_deliver *d, uint64_t seq, size_t *idx)
{
    for (size_t k = 0; k < d->n; k++)
        if (d->slots[k].seq == seq) {
            if (idx)
                *idx = k;
            return &d->slots[k];
        }
    return NULL;
}

static void remove_slot(struct adp_deliver *d, size_t idx)
{
    memmove(&d->slots[idx], &d->slots[idx + 1], (d->n - idx - 1) * sizeof d->slots[0]);
    d->n--;
}

/* ---- transmission -------------------------------------------------------------------- */

struct xmit {
    struct adp_deliver *d;
    uint64_t want; /* the seq to send, or 0: the first one after `after` */
    uint64_t seq;  /* the seq found */
    uint32_t n_obs;
    bool found;
    int rc; /* kp_zsock_send result */
};

static int xmit_fn(const struct kp_spool_item *it, void *arg)
{
    struct xmit *x = arg;
    if (x->want && it->seq != x->want)
        return 1; /* the batch left the spool (acked or dead) */
    x->found = true;
    x->seq = it->seq;
    x->n_obs = it->n_obs;
    struct kp_frame f = {it->payload, it->len};
    x->rc = kp_zsock_send(x->d->sock, &f, 1);
    return 1;
}

/* Sends slot s (its payload read back from the spool). Returns false when the batch is no
 * longer in the spool: the caller drops the slot. */
static bool transmit(struct adp_deliver *d, struct slot *s)
{
    struct xmit x = {.d = d, .want = s->seq};
    int rc = kp_spool_scan(d->sp, s->seq - 1, 1, xmit_fn, &x);
    uint64_t now = now_ns();
    if (rc < 0) {
        KP_ERROR("spool_read_failed", "adapter=%s scheme=%s seq=%" PRIu64 " err=%s", d->o.aid,
                 d->o.scheme, s->seq, kp_err_name(rc));
        s->st = SLOT_RESEND;
        s->due_ns = now + (uint64_t)d->o.retry_max_ms * 1000000u;
        return true;
    }
    if (!x.found)
        return false;
    if (x.rc != 0) {
        KP_DEBUG("send_refused", "adapter=%s scheme=%s seq=%" PRIu64 " err=%s", d->o.aid,
                 d->o.scheme, s->seq, kp_err_name(x.rc));
        s->st = SLOT_RESEND;
        s->due_ns = now + (uint64_t)SEND_REFUSED_WAIT_MS * 1000000u;
        return true;
    }
    s->sends++;
    s->st = SLOT_WAIT_ACK;
    s->due_ns = now + ack_wait_ns(d, s->sends);
    if (d->am)
        kp_counter_inc(s->sends == 1 ? d->am->batches_sent : d->am->retransmits);
    if (s->sends == 1)
        KP_DEBUG("batch_sent", "adapter=%s scheme=%s seq=%" PRIu64 " obs=%" PRIu32, d->o.aid,
                 d->o.scheme, s->seq, x.n_obs);
    else
        KP_INFO("batch_retransmitted", "adapter=%s scheme=%s seq=%" PRIu64 " attempt=%" PRIu32,
                d->o.aid, d->o.scheme, s->seq, s->sends);
    return true;
}

/* Takes the next spooled batches into the window while there is room. */
static void fill(struct adp_deliver *d)
{
    while (!d->close_cb && !d->draining && d->n < d->o.inflight) {
        struct xmit x = {.d = d};
        int rc = kp_spool_scan(d->sp, d->last_queued, 1, xmit_fn, &x);
        if (rc < 0) {
            KP_ERROR("spool_read_failed", "adapter=%s scheme=%s after_seq=%" PRIu64 " err=%s",
                     d->o.aid, d->o.scheme, d->last_queued, kp_err_name(rc));
            break;
        }
        if (!x.found)
            break;
        d->last_queued = x.seq;
        struct slot *s = &d->slots[d->n++];
        memset(s, 0, sizeof *s);
        s->seq = x.seq;
        uint64_t now = now_ns();
        if (x.rc == 0) {
            s->sends = 1;
            s->st = SLOT_WAIT_ACK;
            s->due_ns = now + ack_wait_ns(d, 1);
            if (d->am)
                kp_counter_inc(d->am->batches_sent);
            KP_DEBUG("batch_sent", "adapter=%s scheme=%s seq=%" PRIu64 " obs=%" PRIu32, d->o.aid,
                     d->o.scheme, x.seq, x.n_obs);
        } else {
            KP_DEBUG("send_refused", "adapter=%s scheme=%s seq=%" PRIu64 " err=%s", d->o.aid,
                     d->o.scheme, x.seq, kp_err_name(x.rc));
            s->st = SLOT_RESEND;
            s->due_ns = now + (uint64_t)SEND_REFUSED_WAIT_MS * 1000000u;
        }
    }
    update_gauges(d);
    rearm(d);
}

static void on_timer(uv_timer_t *t)
{
    struct adp_deliver *d = t->data;
    uint64_t now = now_ns();
    for (size_t k = 0; k < d->n;) {
        struct slot *s = &d->slots[k];
        if (s->due_ns > now) {
            k++;
            continue;
        }
        if (s->st == SLOT_WAIT_ACK)
            KP_INFO("ack_timeout", "adapter=%s scheme=%s seq=%" PRIu64 " attempt=%" PRIu32,
                    d->o.aid, d->o.scheme, s->seq, s->sends);
        if (transmit(d, s))
            k++;
        else
            remove_slot(d, k);
    }
    fill(d);
}

/* ---- answers ------------------------------------------------------------------------- */

static void freed(struct adp_deliver *d)
{
    if (d->freed)
        d->freed(d->freed_arg);
}

static void on_ack(struct adp_deliver *d, const struct kp_ack *a)
{
    size_t idx = 0;
    struct slot *s = find_slot(d, a->seq, &idx);
    for (size_t k = 0; k < a->n_rej; k++) {
        const struct kp_rej *r = &a->rej[k];
        int rc =
            kp_spool_rejected(d->sp, a->seq, r->n, kp_reason_str(r->code), r->msg ? r->msg : "");
        if (rc != 0)
            KP_ERROR("spool_rejected_failed",
                     "adapter=%s scheme=%s seq=%" PRIu64 " n=%" PRIu32 " err=%s", d->o.aid,
                     d->o.scheme, a->seq, r->n, kp_err_name(rc));
    }
    int rc = kp_spool_ack(d->sp, a->seq);
    if (rc != 0) {
        /* Keep the slot: the batch is sent again, answered dup:true, and acked again. */
        KP_ERROR("spool_ack_failed", "adapter=%s scheme=%s seq=%" PRIu64 " err=%s", d->o.aid,
                 d->o.scheme, a->seq, kp_err_name(rc));
        if (s) {
            s->st = SLOT_RESEND;
            s->due_ns = now_ns() + backoff_ns(d, ++s->retries);
        }
        rearm(d);
        return;
    }
    if (d->am) {
        kp_counter_inc(d->am->batches_acked);
        if (a->n_rej)
            kp_counter_add(d->am->obs_rejected, (double)a->n_rej);
        kp_gauge_set(d->am->last_success, (double)kp_now_ms() / 1000.0);
    }
    if (a->n_rej) {
        char q[300];
        KP_INFO("batch_acked",
                "adapter=%s scheme=%s seq=%" PRIu64 " stored=%" PRIu64 " dup=%s rejected=%zu "
                "first_code=%s first_msg=%s",
                d->o.aid, d->o.scheme, a->seq, a->stored, a->dup ? "true" : "false", a->n_rej,
                kp_reason_str(a->rej[0].code),
                kp_log_q(q, sizeof q, a->rej[0].msg ? a->rej[0].msg : ""));
    } else {
        KP_DEBUG("batch_acked", "adapter=%s scheme=%s seq=%" PRIu64 " stored=%" PRIu64 " dup=%s",
                 d->o.aid, d->o.scheme, a->seq, a->stored, a->dup ? "true" : "false");
    }
    if (s)
        remove_slot(d, idx);
    fill(d);
    freed(d);
}

static void on_nack(struct adp_deliver *d, const struct kp_nack *n)
{
    char q[300];
    kp_log_q(q, sizeof q, n->msg);
    if (d->am)
        kp_counter_inc(adp_metrics_nacked(d->am, n->code));
    if (!n->has_seq) {
        /* The collector could not read a seq in what we sent: nothing to settle; the batch
         * concerned times out and is sent again. */
        KP_WARN("nack_without_seq", "adapter=%s scheme=%s reason=%s retry=%s msg=%s", d->o.aid,
                d->o.scheme, kp_reason_str(n->code), n->retry ? "true" : "false", q);
        return;
    }
    size_t idx = 0;
    struct slot *s = find_slot(d, n->seq, &idx);
    if (n->retry) {
        KP_INFO("batch_nacked_retry", "adapter=%s scheme=%s seq=%" PRIu64 " reason=%s msg=%s",
                d->o.aid, d->o.scheme, n->seq, kp_reason_str(n->code), q);
        if (s) {
            s->st = SLOT_RESEND;
            s->due_ns = now_ns() + backoff_ns(d, ++s->retries);
            rearm(d);
        }
        return;
    }
    int rc = kp_spool_dead(d->sp, n->seq, kp_reason_str(n->code), n->msg);
    if (rc != 0) {
        KP_ERROR("spool_dead_failed", "adapter=%s scheme=%s seq=%" PRIu64 " reason=%s err=%s",
                 d->o.aid, d->o.scheme, n->seq, kp_reason_str(n->code), kp_err_name(rc));
        if (s) {
            s->st = SLOT_RESEND;
            s->due_ns = now_ns() + backoff_ns(d, ++s->retries);
            rearm(d);
        }
        return;
    }
    KP_WARN("batch_dead_lettered", "adapter=%s scheme=%s seq=%" PRIu64 " reason=%s msg=%s",
            d->o.aid, d->o.scheme, n->seq, kp_reason_str(n->code), q);
    if (s)
        remove_slot(d, idx);
    fill(d);
    freed(d);
}

static void on_recv(struct kp_zsock *sock, const struct kp_frame *fr, size_t nfr, void *arg)
{
    (void)sock;
    struct adp_deliver *d = arg;
    if (d->close_cb)
        return;
    if (nfr != 1) {
        KP_WARN("bad_reply", "adapter=%s scheme=%s frames=%zu", d->o.aid, d->o.scheme, nfr);
        return;
    }
    enum kp_msg_type t = KP_MSG_UNKNOWN;
    enum kp_reason r = kp_msg_peek(fr->data, fr->len, KP_DEFAULT_MAX_BYTES, &t);
    if (r != KP_R_OK) {
        KP_WARN("bad_reply", "adapter=%s scheme=%s reason=%s", d->o.aid, d->o.scheme,
                kp_reason_str(r));
        return;
    }
    switch (t) {
    case KP_MSG_ACK: {
        struct kp_ack a;
        memset(&a, 0, sizeof a);
        r = kp_ack_decode(fr->data, fr->len, &a);
        if (r == KP_R_OK)
            on_ack(d, &a);
        else
            KP_WARN("bad_reply", "adapter=%s scheme=%s type=ack reason=%s", d->o.aid, d->o.scheme,
                    kp_reason_str(r));
        kp_ack_fini(&a);
        return;
    }
    case KP_MSG_NACK: {
        struct kp_nack n;
        memset(&n, 0, sizeof n);
        r = kp_nack_decode(fr->data, fr->len, &n);
        if (r == KP_R_OK)
            on_nack(d, &n);
        else
            KP_WARN("bad_reply", "adapter=%s scheme=%s type=nack reason=%s", d->o.aid, d->o.scheme,
                    kp_reason_str(r));
        return;
    }
    case KP_MSG_PONG:
    case KP_MSG_WELCOME:
        return;
    default:
        KP_WARN("unexpected_reply", "adapter=%s scheme=%s type=%d", d->o.aid, d->o.scheme, (int)t);
        return;
    }
}

/* ---- life -------------------------------------------------------------------------- */

int adp_deliver_open(uv_loop_t *loop, struct kp_spool *sp, const struct adp_deliver_opts *o,
                     struct adp_metrics *am, adp_deliver_freed_cb freed_cb, void *arg,
                     struct adp_deliver **out)
{
    *out = NULL;
    KP_ASSERT(o->inflight >= 1 && o->ack_timeout_ms >= 1 && o->retry_min_ms >= 1 &&
              o->retry_max_ms >= 1);
    struct adp_deliver *d = kp_xcalloc(1, sizeof *d);
    d->loop = loop;
    d->sp = sp;
    d->o = *o;
    d->am = am;
    d->freed = freed_cb;
    d->freed_arg = arg;
    d->slots = kp_xcalloc(o->inflight, sizeof *d->slots);
    d->rng = kp_mono_ns() ^ ((uint64_t)getpid() << 32) ^ 0x9E3779B97F4A7C15ULL;
    if (d->rng == 0)
        d->rng = 1;

    /* The send queue holds what the window allows plus room for a few retransmissions. */
    int hwm = (int)(o->inflight * 4 < 1000 ? o->inflight * 4 : 1000);
    struct kp_zsock_opts zo = {.sndhwm = hwm,
                               .rcvhwm = hwm,
                               .linger_ms = 0,
                               .curve_public = o->curve_public,
                               .curve_secret = o->curve_secret,
                               .curve_serverkey = o->curve_serverkey};
    d->o.curve_public = d->o.curve_secret = d->o.curve_serverkey = NULL; /* not kept */
    int rc = kp_zsock_open(loop, KP_ZSOCK_DEALER, &zo, &d->sock);
    /* monitored: a handshake the collector refused (a key not yet in its key file) is tried
     * again instead of given up (kp_zsock.h, issue 6) */
    if (rc == 0)
        rc = kp_zsock_monitor(d->sock, NULL, NULL);
    if (rc == 0)
        rc = kp_zsock_connect(d->sock, o->endpoint);
    if (rc == 0)
        rc = kp_zsock_start(d->sock, on_recv, d);
    if (rc != 0) {
        if (d->sock)
            kp_zsock_close(&d->sock, NULL, NULL);
        free(d->slots);
        free(d);
        return rc;
    }
    uv_timer_init(loop, &d->timer);
    d->timer.data = d;
    d->open_handles = 2; /* timer + socket */
    *out = d;
    fill(d);
    return 0;
}

void adp_deliver_kick(struct adp_deliver *d)
{
    fill(d);
}

size_t adp_deliver_inflight(const struct adp_deliver *d)
{
    return d->n;
}

static void handle_closed(struct adp_deliver *d)
{
    if (--d->open_handles > 0)
        return;
    void (*cb)(void *) = d->close_cb;
    void *arg = d->close_arg;
    free(d->slots);
    free(d);
    if (cb)
        cb(arg);
}

static void on_timer_closed(uv_handle_t *h)
{
    handle_closed(h->data);
}

static void on_sock_closed(void *arg)
{
    handle_closed(arg);
}

static void noop_close(void *arg)
{
    (void)arg;
}

void adp_deliver_drain(struct adp_deliver *d)
{
    d->draining = true;
}

void adp_deliver_close(struct adp_deliver **dp, void (*close_cb)(void *arg), void *arg)
{
    if (!dp || !*dp)
        return;
    struct adp_deliver *d = *dp;
    *dp = NULL;
    d->close_cb = close_cb ? close_cb : noop_close;
    d->close_arg = arg;
    if (d->am)
        kp_gauge_set(d->am->inflight, 0);
    if (d->n)
        KP_INFO("delivery_stopped",
                "adapter=%s scheme=%s unanswered=%zu first_seq=%" PRIu64
                " msg=\"unanswered batches stay in the spool\"",
                d->o.aid, d->o.scheme, d->n, d->slots[0].seq);
    uv_timer_stop(&d->timer);
    uv_close((uv_handle_t *)&d->timer, on_timer_closed);
    kp_zsock_close(&d->sock, on_sock_closed, d);
}
