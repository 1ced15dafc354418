/*
 * kp_zsock: ZeroMQ sockets on a libuv loop, the transport under every hop of the pipeline
 * (adapter DEALER -> collector ROUTER -> broker -> scorer, and the PUB tap). It is the only
 * module that calls zmq_*. ZMQ_FD is not a data descriptor but an edge-triggered "something
 * changed" signal that any zmq call on the socket may consume; the rule kept here is: after
 * every zmq operation that can process commands (receive, send, bind, connect) re-read
 * ZMQ_EVENTS, and while ZMQ_POLLIN is set keep a uv_idle handle running that drains on the
 * next loop turn. Draining is bounded per turn (RECV_BUDGET) so one busy socket cannot starve
 * the loop. Without that re-check a burst that arrived behind a consumed edge would wait for
 * traffic that never comes, and an adapter's batch would sit unacked (ARCHITECTURE.md
 * guarantee 1 relies on delivery, not on luck). Those re-checks still missed input at times: a
 * scorer whose batches came in while its loop slept in epoll_wait, no ZMQ_FD edge ever raised,
 * took them only at its next heartbeat, up to a second later (why is not known:
 * docs/BENCHMARKS.md round 10). So a socket that had traffic in the last SWEEP_FOR_MS also
 * re-reads ZMQ_EVENTS every SWEEP_MS (the sweep): whatever becomes readable without an edge
 * waits at most that long, and an idle socket costs no wake-ups. ROUTER sockets run with
 * ZMQ_ROUTER_MANDATORY so an ack to a vanished peer is an error the caller sees, never a
 * silent drop.
 */
#include "kp_zsock.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "kp_err.h"
#include "kp_msg.h"

#define RECV_BUDGET      256  /* messages delivered per socket per loop turn */
#define SWEEP_MS         10   /* ZMQ_EVENTS re-read this often while the socket is busy */
#define SWEEP_FOR_MS     2000 /* ... until this long after its last message in or out */
#define KP_ZSOCK_MAX_EPS 8    /* connect endpoints remembered for re-connection */
#define RECONN_MIN_MS    500  /* first wait before connecting again after a failed handshake */
#define RECONN_MAX_MS    16000
#define ENVELOPE_BYTES   (64 * 1024)

/* ZMQ_ZAP_ENFORCE_DOMAIN is a draft option in libzmq 4.3; set it by number. A library that
 * does not know it makes kp_zsock_open fail for a socket with a zap_domain. */
#ifndef ZMQ_ZAP_ENFORCE_DOMAIN
#define ZMQ_ZAP_ENFORCE_DOMAIN 93
#endif

struct kp_zsock {
    uv_loop_t *loop;
    void *zs;
    enum kp_zsock_type type;
    uv_poll_t poll;      /* on ZMQ_FD, UV_READABLE */
    uv_idle_t idle;      /* running while ZMQ_EVENTS says POLLIN */
    uv_timer_t sweep;    /* SWEEP_MS, while a message went in or out in the last SWEEP_FOR_MS */
    uint64_t last_io_ms; /* uv_now() of that message */
    kp_zsock_recv_cb cb;
    void *arg;
    bool started;
    bool paused;
    bool closing;
    int open_handles;
    kp_zsock_close_cb close_cb;
    void *close_arg;
    uint64_t received;
    uint64_t dropped;
    /* connection monitor (kp_zsock_monitor): a PAIR socket fed by zmq_socket_monitor */
    void *mon;
    uv_poll_t mon_poll;
    int peers;
    kp_zsock_peers_cb peers_cb;
    void *peers_arg;
    /* the last part of the message being delivered, for kp_zsock_msg_user_id() (NULL
     * outside the receive callback) */
    zmq_msg_t *cur;
    /* Re-connection after a failed handshake (issue 6): libzmq ends a connecting session
     * for good when the CURVE handshake fails (a key the server does not admit yet), so the
     * monitor's HANDSHAKE_FAILED events make the socket connect again after reconn_ms. */
    char *eps[KP_ZSOCK_MAX_EPS]; /* endpoints given to kp_zsock_connect */
    size_t n_eps;
    uv_timer_t reconn;
    bool reconn_init;
    uint64_t reconn_ms;
    uint64_t hs_failed;
};

/* --- context ------------------------------------------------------------------------------ */

static pthread_mutex_t ctx_mu = PTHREAD_MUTEX_INITIALIZER;
static void *ctx;

void *kp_zctx(void)
{
    pthread_mutex_lock(&ctx_mu);
    if (!ctx)
        ctx = zmq_ctx_new();
    void *c = ctx;
    pthread_mutex_unlock(&ctx_mu);
    return c;
}

void kp_zctx_term(void)
{
    pthread_mutex_lock(&ctx_mu);
    if (ctx) {
        while (zmq_ctx_term(ctx) != 0 && zmq_errno() == EINTR)
            ;
        ctx = NULL;
    }
    pthread_mutex_unlock(&ctx_mu);
}

/* --- edge handling ------------------------------------------------------------------------ */

static bool active(const struct kp_zsock *s)
{
    return s->started && !s->paused && !s->closing;
}

static bool pollin(struct kp_zsock *s)
{
    int ev = 0;
    size_t len = sizeof ev;
    if (zmq_getsockopt(s->zs, ZMQ_EVENTS, &ev, &len) != 0)
        return false;
    return (ev & ZMQ_POLLIN) != 0;
}

static void on_idle(uv_idle_t *h);

/* Re-reads ZMQ_EVENTS and keeps the drain handle running exactly while input is pending. */
static void rearm(struct kp_zsock *s)
{
    if (s->closing)
        return;
    if (active(s) && pollin(s))
        uv_idle_start(&s->idle, on_idle);
    else
        uv_idle_stop(&s->idle);
}

/* After an operation that may have consumed the ZMQ_FD edge: never leave input stranded. */
static void recheck(struct kp_zsock *s)
{
    if (active(s) && pollin(s))
        uv_idle_start(&s->idle, on_idle);
}

static void on_sweep(uv_timer_t *h)
{
    struct kp_zsock *s = h->data;
    if (uv_now(s->loop) - s->last_io_ms > SWEEP_FOR_MS) {
        uv_timer_stop(&s->sweep);
        return;
    }
    if (!uv_is_active((uv_handle_t *)&s->idle))
        recheck(s);
}

/* A message went in or out: keep the sweep running. */
static void traffic(struct kp_zsock *s)
{
    s->last_io_ms = uv_now(s->loop);
    if (active(s) && !uv_is_active((uv_handle_t *)&s->sweep))
        uv_timer_start(&s->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
}

static void close_parts(zmq_msg_t *parts, size_t n)
{
    for (size_t i = 0; i < n; i++)
        zmq_msg_close(&parts[i]);
}

/* Receives one whole multipart message and delivers it. Returns 1 when a message was
 * consumed (delivered or dropped), 0 when none was waiting, KP_EZMQ on a socket error. */
static int recv_one(struct kp_zsock *s)
{
    zmq_msg_t parts[KP_ZSOCK_MAX_FRAMES];
    size_t n = 0;
    bool too_many = false;
    for (;;) {
        zmq_msg_t extra;
        zmq_msg_t *m = n < KP_ZSOCK_MAX_FRAMES ? &parts[n] : &extra;
        zmq_msg_init(m);
        if (zmq_msg_recv(m, s->zs, ZMQ_DONTWAIT) < 0) {
            int e = zmq_errno();
            zmq_msg_close(m);
            if (e == EINTR)
                continue;
            close_parts(parts, n);
            /* parts of one message arrive together: EAGAIN can only come first */
            return n == 0 && e == EAGAIN ? 0 : KP_EZMQ;
        }
        bool more = zmq_msg_more(m) != 0;
        if (n < KP_ZSOCK_MAX_FRAMES) {
            n++;
        } else {
            too_many = true;
            zmq_msg_close(m);
        }
        if (!more)
            break;
    }
    if (too_many) {
        close_parts(parts, n);
        s->dropped++;
        return 1;
    }
    struct kp_frame frames[KP_ZSOCK_MAX_FRAMES];
    for (size_t i = 0; i < n; i++) {
        frames[i].data = zmq_msg_data(&parts[i]);
        frames[i].len = zmq_msg_size(&parts[i]);
    }
    s->received++;
    /* The callback may send, pause or even close s: s stays allocated until the close_cb of
     * its handles, and the loop in drain() checks s->closing before touching zs again. */
    s->cur = &parts[n - 1];
    s->cb(s, frames, n, s->arg);
    s->cur = NULL;
    close_parts(parts, n);
    if (!s->closing)
        traffic(s);
    return 1;
}

static void drain(struct kp_zsock *s)
{
    for (int i = 0; i < RECV_BUDGET && active(s); i++) {
        if (recv_one(s) <= 0)
            break;
    }
    rearm(s);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    drain(h->data);
}

static void on_idle(uv_idle_t *h)
{
    drain(h->data);
}

/* --- life cycle --------------------------------------------------------------------------- */

static int setopt_int(void *zs, int opt, int v)
{
    return zmq_setsockopt(zs, opt, &v, sizeof v);
}

static int setopt_str(void *zs, int opt, const char *v)
{
    return zmq_setsockopt(zs, opt, v, strlen(v));
}

static int apply_opts(void *zs, enum kp_zsock_type type, const struct kp_zsock_opts *o)
{
    int64_t maxmsg = (int64_t)KP_DEFAULT_MAX_BYTES + ENVELOPE_BYTES;
    if (o && o->max_msg_bytes != 0)
        maxmsg = o->max_msg_bytes < 0 ? -1 : o->max_msg_bytes;
    if (zmq_setsockopt(zs, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) != 0)
        return KP_EZMQ;
    if (setopt_int(zs, ZMQ_LINGER, o ? o->linger_ms : 0) != 0)
        return KP_EZMQ;
    if (type == KP_ZSOCK_ROUTER && setopt_int(zs, ZMQ_ROUTER_MANDATORY, 1) != 0)
        return KP_EZMQ;
    if (!o)
        return 0;
    if (o->sndhwm > 0 && setopt_int(zs, ZMQ_SNDHWM, o->sndhwm) != 0)
        return KP_EZMQ;
    if (o->rcvhwm > 0 && setopt_int(zs, ZMQ_RCVHWM, o->rcvhwm) != 0)
        return KP_EZMQ;
    if (o->identity && setopt_str(zs, ZMQ_ROUTING_ID, o->identity) != 0)
        return KP_EINVAL;
    if (o->curve_server_secret) {
        if (setopt_int(zs, ZMQ_CURVE_SERVER, 1) != 0 ||
            setopt_str(zs, ZMQ_CURVE_SECRETKEY, o->curve_server_secret) != 0)
            return KP_EINVAL;
    } else if (o->curve_serverkey) {
        if (!o->curve_public || !o->curve_secret)
            return KP_EINVAL;
        if (setopt_str(zs, ZMQ_CURVE_SERVERKEY, o->curve_serverkey) != 0 ||
            setopt_str(zs, ZMQ_CURVE_PUBLICKEY, o->curve_public) != 0 ||
            setopt_str(zs, ZMQ_CURVE_SECRETKEY, o->curve_secret) != 0)
            return KP_EINVAL;
    }
    if (o->zap_domain) {
        if (setopt_str(zs, ZMQ_ZAP_DOMAIN, o->zap_domain) != 0)
            return KP_EINVAL;
        /* Without ZAP_ENFORCE_DOMAIN a CURVE server whose ZAP handler is missing admits
         * every key (the "Stonehouse" legacy mode): refuse to run rather than run open
         * (ARCHITECTURE.md guarantee 5). */
        if (setopt_int(zs, ZMQ_ZAP_ENFORCE_DOMAIN, 1) != 0)
            return KP_EZMQ;
    }
    return 0;
}

int kp_zsock_open(uv_loop_t *loop, enum kp_zsock_type type, const struct kp_zsock_opts *opts,
                  struct kp_zsock **out)
{
    static const int ztype[] = {
        [KP_ZSOCK_ROUTER] = ZMQ_ROUTER,
        [KP_ZSOCK_DEALER] = ZMQ_DEALER,
        [KP_ZSOCK_PUB] = ZMQ_PUB,
        [KP_ZSOCK_SUB] = ZMQ_SUB,
        [KP_ZSOCK_REP] = ZMQ_REP,
    };
    if (!loop || !out || (int)type < 0 || (size_t)type >= sizeof ztype / sizeof ztype[0])
        return KP_EINVAL;
    void *c = kp_zctx();
    if (!c)
        return KP_EZMQ;
    void *zs = zmq_socket(c, ztype[type]);
    if (!zs)
        return KP_EZMQ;
    int rc = apply_opts(zs, type, opts);
    int fd = -1;
    size_t fdlen = sizeof fd;
    if (rc == 0 && zmq_getsockopt(zs, ZMQ_FD, &fd, &fdlen) != 0)
        rc = KP_EZMQ;
    struct kp_zsock *s = NULL;
    if (rc == 0) {
        s = kp_xcalloc(1, sizeof *s);
        if (uv_poll_init(loop, &s->poll, fd) != 0)
            rc = KP_EZMQ;
    }
    if (rc != 0) {
        free(s);
        zmq_close(zs);
        return rc;
    }
    uv_idle_init(loop, &s->idle);
    uv_timer_init(loop, &s->sweep);
    s->loop = loop;
    s->zs = zs;
    s->type = type;
    s->poll.data = s;
    s->idle.data = s;
    s->sweep.data = s;
    s->open_handles = 3;
    *out = s;
    return 0;
}

static int endpoint_err(void)
{
    int e = zmq_errno();
    return e == EINVAL || e == EPROTONOSUPPORT || e == ENOCOMPATPROTO ? KP_EINVAL : KP_EZMQ;
}

int kp_zsock_bind(struct kp_zsock *s, const char *endpoint)
{
    if (!s || !endpoint)
        return KP_EINVAL;
    if (s->closing)
        return KP_ECLOSED;
    int rc = zmq_bind(s->zs, endpoint) == 0 ? 0 : endpoint_err();
    recheck(s);
    return rc;
}

int kp_zsock_connect(struct kp_zsock *s, const char *endpoint)
{
    if (!s || !endpoint)
        return KP_EINVAL;
    if (s->closing)
        return KP_ECLOSED;
    int rc = zmq_connect(s->zs, endpoint) == 0 ? 0 : endpoint_err();
    if (rc == 0 && s->n_eps < KP_ZSOCK_MAX_EPS)
        s->eps[s->n_eps++] = kp_xstrdup(endpoint);
    recheck(s);
    return rc;
}

int kp_zsock_last_endpoint(struct kp_zsock *s, char *buf, size_t len)
{
    if (!s || !buf || len == 0)
        return KP_EINVAL;
    if (s->closing)
        return KP_ECLOSED;
    size_t n = len;
    if (zmq_getsockopt(s->zs, ZMQ_LAST_ENDPOINT, buf, &n) != 0)
        return KP_EINVAL; /* buffer too small */
    buf[len - 1] = 0;
    return 0;
}

int kp_zsock_subscribe(struct kp_zsock *s, const void *prefix, size_t len)
{
    if (!s || (!prefix && len))
        return KP_EINVAL;
    if (s->closing)
        return KP_ECLOSED;
    int rc = zmq_setsockopt(s->zs, ZMQ_SUBSCRIBE, prefix, len) == 0 ? 0 : KP_EZMQ;
    recheck(s);
    return rc;
}

int kp_zsock_start(struct kp_zsock *s, kp_zsock_recv_cb cb, void *arg)
{
    if (!s || !cb || s->started)
        return KP_EINVAL;
    if (s->closing)
        return KP_ECLOSED;
    s->cb = cb;
    s->arg = arg;
    if (!s->paused) {
        if (uv_poll_start(&s->poll, UV_READABLE, on_poll) != 0)
            return KP_EZMQ;
        /* messages may be queued already and their edge long gone: drain next turn */
        uv_idle_start(&s->idle, on_idle);
    }
    s->started = true;
    return 0;
}

void kp_zsock_pause(struct kp_zsock *s)
{
    if (!s || s->closing || s->paused)
        return;
    s->paused = true;
    if (s->started) {
        uv_poll_stop(&s->poll);
        uv_idle_stop(&s->idle);
        uv_timer_stop(&s->sweep);
    }
}

void kp_zsock_resume(struct kp_zsock *s)
{
    if (!s || s->closing || !s->paused)
        return;
    s->paused = false;
    if (s->started) {
        uv_poll_start(&s->poll, UV_READABLE, on_poll);
        /* edges that came and went while paused are lost: look at ZMQ_EVENTS next turn */
        uv_idle_start(&s->idle, on_idle);
    }
}

static int send_err(int e)
{
    switch (e) {
    case EAGAIN:
        return KP_EAGAIN;
    case EHOSTUNREACH:
        return KP_EHOSTUNREACH;
    default:
        return KP_EZMQ;
    }
}

int kp_zsock_send(struct kp_zsock *s, const struct kp_frame *frames, size_t n)
{
    if (!s || !frames || n == 0)
        return KP_EINVAL;
    if (s->closing)
        return KP_ECLOSED;
    int rc = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        int flags = ZMQ_DONTWAIT | (i + 1 < n ? ZMQ_SNDMORE : 0);
        while (zmq_send(s->zs, frames[i].data, frames[i].len, flags) < 0) {
            int e = zmq_errno();
            if (e != EINTR) {
                rc = send_err(e);
                break;
            }
        }
        if (rc != 0)
            break;
    }
    if (rc != 0 && i > 0) {
        /* Failed after the first frame (a DEALER's peer vanished mid-message): libzmq is now
         * dropping this message; finish it so that the next message starts clean. */
        for (size_t j = i + 1; j < n; j++)
            (void)zmq_send(s->zs, frames[j].data, frames[j].len,
                           ZMQ_DONTWAIT | (j + 1 < n ? ZMQ_SNDMORE : 0));
    }
    /* Sending processes pending commands and can swallow the read edge (kp_zsock.h). */
    recheck(s);
    if (rc == 0)
        traffic(s);
    return rc;
}

/* --- connection monitor ------------------------------------------------------------------ */

/* A handshake of a connecting socket failed (the server refused our CURVE key, or the
 * server's key is not the one we have): libzmq has ended that session, so connect every
 * endpoint again, with a doubling wait up to RECONN_MAX_MS (reset by a handshake that
 * succeeds). Loop thread. */
static void on_reconn(uv_timer_t *t)
{
    struct kp_zsock *s = t->data;
    if (s->closing)
        return;
    for (size_t i = 0; i < s->n_eps; i++) {
        (void)zmq_disconnect(s->zs, s->eps[i]); /* ENOENT when the session is gone: fine */
        (void)zmq_connect(s->zs, s->eps[i]);
    }
    recheck(s);
}

static void handshake_failed(struct kp_zsock *s)
{
    s->hs_failed++;
    if (!s->reconn_init || s->n_eps == 0 || uv_is_active((uv_handle_t *)&s->reconn))
        return;
    uint64_t wait = s->reconn_ms ? s->reconn_ms : RECONN_MIN_MS;
    s->reconn_ms = wait * 2 > RECONN_MAX_MS ? RECONN_MAX_MS : wait * 2;
    uv_timer_start(&s->reconn, on_reconn, wait, 0);
}

/* Reads every pending monitor event (frame 1: uint16 event + uint32 value, frame 2: the
 * endpoint) and counts connections. Draining to EAGAIN re-arms the level-triggered ZMQ_FD. */
static void on_mon(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    struct kp_zsock *s = h->data;
    int before = s->peers;
    while (s->mon && !s->closing) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, s->mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            if (zmq_errno() == EINTR)
                continue;
            /* ZMQ_EVENTS processes the mailbox and may make an event readable whose edge
             * it consumed: keep reading while it says POLLIN. */
            int zev = 0;
            size_t len = sizeof zev;
            if (zmq_getsockopt(s->mon, ZMQ_EVENTS, &zev, &len) == 0 && (zev & ZMQ_POLLIN))
                continue;
            break;
        }
        uint16_t ev = 0;
        bool first = zmq_msg_size(&m) >= 6;
        if (first)
            memcpy(&ev, zmq_msg_data(&m), sizeof ev);
        bool more = zmq_msg_more(&m) != 0;
        zmq_msg_close(&m);
        while (more) { /* the endpoint frame */
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, s->mon, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&m);
                break;
            }
            more = zmq_msg_more(&m) != 0;
            zmq_msg_close(&m);
        }
        if (!first)
            continue;
        if (ev == ZMQ_EVENT_CONNECTED || ev == ZMQ_EVENT_ACCEPTED)
            s->peers++;
        else if (ev == ZMQ_EVENT_DISCONNECTED && s->peers > 0)
            s->peers--;
        else if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL ||
                 ev == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL || ev == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
            handshake_failed(s);
        else if (ev == ZMQ_EVENT_HANDSHAKE_SUCCEEDED)
            s->reconn_ms = 0;
    }
    if (s->peers != before && s->peers_cb && !s->closing)
        s->peers_cb(s, s->peers, s->peers_arg);
}

int kp_zsock_monitor(struct kp_zsock *s, kp_zsock_peers_cb cb, void *arg)
{
    if (!s)
        return KP_EINVAL;
    if (s->closing)
        return KP_ECLOSED;
    if (s->mon)
        return KP_EINVAL;
    /* A unique name: libzmq unregisters a closed socket's inproc name asynchronously, so a
     * new struct at a freed one's address must not reuse its name. */
    static atomic_ulong mon_seq;
    char ep[80];
    snprintf(ep, sizeof ep, "inproc://kp-zsock-mon-%p-%lu", (void *)s,
             (unsigned long)atomic_fetch_add(&mon_seq, 1));
    if (zmq_socket_monitor(s->zs, ep,
                           ZMQ_EVENT_CONNECTED | ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED |
                               ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_SUCCEEDED) != 0)
        return KP_EZMQ;
    void *mon = zmq_socket(kp_zctx(), ZMQ_PAIR);
    int fd = -1;
    size_t fdlen = sizeof fd;
    if (!mon || setopt_int(mon, ZMQ_LINGER, 0) != 0 || zmq_connect(mon, ep) != 0 ||
        zmq_getsockopt(mon, ZMQ_FD, &fd, &fdlen) != 0 ||
        uv_poll_init(s->loop, &s->mon_poll, fd) != 0) {
        if (mon)
            zmq_close(mon);
        (void)zmq_socket_monitor(s->zs, NULL, 0);
        return KP_EZMQ;
    }
    s->mon = mon;
    s->mon_poll.data = s;
    s->open_handles++;
    uv_timer_init(s->loop, &s->reconn);
    s->reconn.data = s;
    s->reconn_init = true;
    s->open_handles++;
    s->peers = 0;
    s->peers_cb = cb;
    s->peers_arg = arg;
    uv_poll_start(&s->mon_poll, UV_READABLE, on_mon);
    /* A fresh pipe's reader is not asleep, so the first events would not signal ZMQ_FD:
     * read until EAGAIN once, after which every new event wakes the poll. */
    on_mon(&s->mon_poll, 0, 0);
    return 0;
}

uint64_t kp_zsock_handshake_failures(const struct kp_zsock *s)
{
    return s ? s->hs_failed : 0;
}

int kp_zsock_peers(const struct kp_zsock *s)
{
    return s && s->mon ? s->peers : -1;
}

const char *kp_zsock_msg_property(const struct kp_zsock *s, const char *name)
{
    if (!s || !s->cur || !name)
        return NULL;
    /* zmq_msg_gets takes a non-const message; it only reads its metadata. */
    return zmq_msg_gets(s->cur, name);
}

const char *kp_zsock_msg_user_id(const struct kp_zsock *s)
{
    return kp_zsock_msg_property(s, "User-Id");
}

void *kp_zsock_zmq(struct kp_zsock *s)
{
    return s ? s->zs : NULL;
}

uint64_t kp_zsock_received(const struct kp_zsock *s)
{
    return s ? s->received : 0;
}

uint64_t kp_zsock_dropped(const struct kp_zsock *s)
{
    return s ? s->dropped : 0;
}

static void on_handle_closed(uv_handle_t *h)
{
    struct kp_zsock *s = h->data;
    if (--s->open_handles > 0)
        return;
    kp_zsock_close_cb cb = s->close_cb;
    void *arg = s->close_arg;
    for (size_t i = 0; i < s->n_eps; i++)
        free(s->eps[i]);
    free(s);
    if (cb)
        cb(arg);
}

void kp_zsock_close(struct kp_zsock **sp, kp_zsock_close_cb close_cb, void *arg)
{
    if (!sp || !*sp)
        return;
    struct kp_zsock *s = *sp;
    *sp = NULL;
    KP_ASSERT(!s->closing);
    s->closing = true;
    s->close_cb = close_cb;
    s->close_arg = arg;
    /* uv_close stops the poll handle at once (the fd leaves epoll), so the mailbox fd may go
     * away with the socket now; the struct itself lives until both close callbacks ran. */
    uv_close((uv_handle_t *)&s->poll, on_handle_closed);
    uv_close((uv_handle_t *)&s->idle, on_handle_closed);
    uv_close((uv_handle_t *)&s->sweep, on_handle_closed);
    if (s->reconn_init)
        uv_close((uv_handle_t *)&s->reconn, on_handle_closed);
    if (s->mon) {
        uv_close((uv_handle_t *)&s->mon_poll, on_handle_closed);
        (void)zmq_socket_monitor(s->zs, NULL, 0);
        zmq_close(s->mon);
        s->mon = NULL;
    }
    zmq_close(s->zs);
    s->zs = NULL;
}
