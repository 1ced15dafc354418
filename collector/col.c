/*
 * col: the collector (see col.h). Frames from adapters are checked here before they cost the
 * broker or the scorer anything: the whole batch is decoded with the PROTOCOL.md limits and
 * a batch-level defect is answered with a nack carrying its reason code (ARCHITECTURE.md
 * guarantee 4). Valid batches go to the broker inside the envelope of schemas/INTERNAL.md;
 * replies come back with the adapter's routing id and are relayed unchanged.
 */
#include "col.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kp_admin.h"
#include "kp_buf.h"
#include "kp_daemon.h"
#include "kp_err.h"
#include "kp_log.h"
#include "kp_metrics.h"
#include "kp_msg.h"
#include "kp_zsock.h"

#define CFG(field) offsetof(struct col_config, field)
const struct kp_cfg_entry col_config_table[] = {
    {"instance", KP_CFG_STR, "collector", 0, 0, CFG(instance), false, false,
     "instance name on every log line"},
    {"log_level", KP_CFG_STR, "info", 0, 0, CFG(log_level), false, true,
     "debug, info, warn or error"},
    {"listen", KP_CFG_STR, "tcp://*:7450", 0, 0, CFG(listen), false, false,
     "ZeroMQ endpoint adapters connect to (PROTOCOL.md)"},
    {"broker", KP_CFG_STR, "tcp://127.0.0.1:7451", 0, 0, CFG(broker), false, false,
     "the broker's frontend endpoint"},
    {"admin", KP_CFG_STR, "127.0.0.1:9401", 0, 0, CFG(admin), false, false,
     "host:port of the admin HTTP endpoint (/metrics, /healthz, /readyz)"},
    {"max_bytes", KP_CFG_BYTES, "4M", 1024, 64.0 * 1024 * 1024, CFG(max_bytes), false, false,
     "largest accepted frame (welcome.max_bytes, ZMQ_MAXMSGSIZE)"},
    {"max_obs", KP_CFG_INT, "10000", 1, 1000000, CFG(max_obs), false, false,
     "most observations per batch (welcome.max_obs)"},
    {"max_inflight", KP_CFG_INT, "8", 1, 1024, CFG(max_inflight), false, false,
     "batches an adapter may have unacknowledged (welcome.max_inflight)"},
    {"hb_ms", KP_CFG_MS, "1000", 100, 600000, CFG(hb_ms), false, false,
     "heartbeat interval announced in welcome"},
    {"insecure", KP_CFG_BOOL, "false", 0, 0, CFG(insecure), false, false,
     "accept plain TCP without CURVE (local tests only; also --insecure)"},
    KP_CFG_END,
};

struct col {
    uv_loop_t *loop;
    const struct col_config *cfg;
    struct kp_zsock *front; /* ROUTER, adapters */
    struct kp_zsock *back;  /* DEALER, broker */
    struct kp_admin *admin;
    struct kp_metrics *metrics;
    struct kp_buf out;
    char endpoint[256];
    int closing;
    struct kp_counter *forwarded, *relayed, *relay_lost, *hello, *ping;
    struct kp_counter *nacks[KP_R__COUNT];
};

static struct kp_counter *nack_counter(struct col *c, enum kp_reason r)
{
    if (!c->nacks[r]) {
        char labels[96];
        snprintf(labels, sizeof labels, "code=\"%s\"", kp_reason_str(r));
        c->nacks[r] = kp_metrics_counter(c->metrics, "kaoping_collector_nacks_total",
                                         "Batches refused by the collector, by reason code",
                                         labels);
    }
    return c->nacks[r];
}

/* Sends one frame to the adapter whose routing id is rid. The adapter may have gone away:
 * it will retransmit what it did not get an answer for (guarantee 1). */
static void send_to_adapter(struct col *c, const struct kp_frame *rid, const struct kp_buf *b)
{
    struct kp_frame f[2] = {*rid, {b->data, b->len}};
    int rc = kp_zsock_send(c->front, f, 2);
    if (rc != 0) {
        kp_counter_inc(c->relay_lost);
        KP_DEBUG("reply_undeliverable", "err=%s", kp_err_name(rc));
    }
}

static void nack(struct col *c, const struct kp_frame *rid, bool has_seq, uint64_t seq,
                 enum kp_reason r, const char *msg)
{
    struct kp_nack n = {.has_seq = has_seq, .seq = seq, .code = r, .retry = kp_reason_retry(r)};
    snprintf(n.msg, sizeof n.msg, "%s", msg);
    kp_buf_reset(&c->out);
    if (kp_nack_encode(&c->out, &n) != 0)
        return;
    kp_counter_inc(nack_counter(c, r));
    send_to_adapter(c, rid, &c->out);
}

static void on_batch(struct col *c, const struct kp_frame *rid, const struct kp_frame *payload)
{
    struct kp_msg_limits lim = {(size_t)c->cfg->max_bytes, (size_t)c->cfg->max_obs};
    struct kp_batch *b = NULL;
    bool has_seq = false;
    uint64_t seq = 0;
    char msg[KP_MSG_TEXT_MAX];
    enum kp_reason r =
        kp_batch_decode(payload->data, payload->len, &lim, &b, &has_seq, &seq, msg, sizeof msg);
    if (r != KP_R_OK) {
        char q[300];
        KP_INFO("batch_refused", "reason=%s seq=%s%" PRIu64 " msg=%s", kp_reason_str(r),
                has_seq ? "" : "nil:", seq, kp_log_q(q, sizeof q, msg));
        nack(c, rid, has_seq, seq, r, msg);
        return;
    }
    /* Insecure mode: the batch's own aid stands for the authenticated one (INTERNAL.md). */
    char seqs[24];
    snprintf(seqs, sizeof seqs, "%" PRIu64, b->seq);
    struct kp_frame f[6] = {
        {"bat", 3},
        *rid,
        {b->scheme, strlen(b->scheme)},
        {b->aid, strlen(b->aid)},
        {seqs, strlen(seqs)},
        *payload,
    };
    int rc = kp_zsock_send(c->back, f, 6);
    if (rc == 0) {
        kp_counter_inc(c->forwarded);
        KP_DEBUG("batch_forwarded", "adapter=%s scheme=%s seq=%" PRIu64 " obs=%zu", b->aid,
                 b->scheme, b->seq, b->n_obs);
    } else {
        KP_WARN("broker_busy", "adapter=%s scheme=%s seq=%" PRIu64 " err=%s", b->aid, b->scheme,
                b->seq, kp_err_name(rc));
        nack(c, rid, true, b->seq, KP_R_overloaded, "the broker's queue is full");
    }
    kp_batch_destroy(&b);
}

static void on_front(struct kp_zsock *s, const struct kp_frame *fr, size_t n, void *arg)
{
    (void)s;
    struct col *c = arg;
    if (n != 2) {
        /* A DEALER client sends exactly one frame (PROTOCOL.md "one message = one frame"). */
        if (n >= 1)
            nack(c, &fr[0], false, 0, KP_R_bad_msgpack, "expected exactly one frame");
        return;
    }
    const struct kp_frame *rid = &fr[0], *payload = &fr[1];
    enum kp_msg_type t = KP_MSG_UNKNOWN;
    enum kp_reason r = kp_msg_peek(payload->data, payload->len, (size_t)c->cfg->max_bytes, &t);
    if (r != KP_R_OK) {
        nack(c, rid, false, 0, r, "frame refused before decoding");
        return;
    }
    kp_buf_reset(&c->out);
    switch (t) {
    case KP_MSG_BATCH:
        on_batch(c, rid, payload);
        return;
    case KP_MSG_HELLO: {
        struct kp_hello h;
        r = kp_hello_decode(payload->data, payload->len, &h);
        if (r != KP_R_OK) {
            nack(c, rid, false, 0, r, "invalid hello");
            return;
        }
        struct kp_welcome w = {(uint32_t)c->cfg->max_bytes, (uint32_t)c->cfg->max_obs,
                               (uint32_t)c->cfg->max_inflight, (uint32_t)c->cfg->hb_ms};
        kp_counter_inc(c->hello);
        KP_INFO("hello", "adapter=%s scheme=%s", h.aid, h.scheme);
        if (kp_welcome_encode(&c->out, &w) == 0)
            send_to_adapter(c, rid, &c->out);
        return;
    }
    case KP_MSG_PING: {
        bool is_pong;
        uint64_t num;
        r = kp_ping_decode(payload->data, payload->len, &is_pong, &num);
        if (r != KP_R_OK) {
            nack(c, rid, false, 0, r, "invalid ping");
            return;
        }
        kp_counter_inc(c->ping);
        if (!is_pong && kp_ping_encode(&c->out, true, num) == 0)
            send_to_adapter(c, rid, &c->out);
        return;
    }
    default:
        nack(c, rid, false, 0, KP_R_bad_field, "t: a client may send hello, batch, ping or pong");
        return;
    }
}

static void on_back(struct kp_zsock *s, const struct kp_frame *fr, size_t n, void *arg)
{
    (void)s;
    struct col *c = arg;
    if (n != 3 || fr[0].len != 3 || memcmp(fr[0].data, "rep", 3) != 0) {
        KP_WARN("bad_broker_frame", "frames=%zu", n);
        return;
    }
    struct kp_frame f[2] = {fr[1], fr[2]};
    int rc = kp_zsock_send(c->front, f, 2);
    if (rc == 0) {
        kp_counter_inc(c->relayed);
    } else {
        kp_counter_inc(c->relay_lost);
        KP_INFO("reply_undeliverable", "err=%s", kp_err_name(rc));
    }
}

int col_start(uv_loop_t *loop, const struct col_config *cfg, struct col **out)
{
    if (!cfg->insecure) {
        KP_ERROR("curve_unavailable",
                 "msg=\"CURVE is not configured yet: start with --insecure for plain TCP\"");
        return KP_ECONFIG;
    }
    struct col *c = kp_xcalloc(1, sizeof *c);
    c->loop = loop;
    c->cfg = cfg;
    c->metrics = kp_metrics_new();
    c->forwarded = kp_metrics_counter(c->metrics, "kaoping_collector_batches_forwarded_total",
                                      "Batches validated and forwarded to the broker", NULL);
    c->relayed = kp_metrics_counter(c->metrics, "kaoping_collector_replies_relayed_total",
                                    "Acks and nacks relayed from the broker to adapters", NULL);
    c->relay_lost =
        kp_metrics_counter(c->metrics, "kaoping_collector_replies_undeliverable_total",
                           "Replies whose adapter had disconnected (it retransmits)", NULL);
    c->hello = kp_metrics_counter(c->metrics, "kaoping_collector_hellos_total",
                                  "hello messages answered with welcome", NULL);
    c->ping = kp_metrics_counter(c->metrics, "kaoping_collector_pings_total",
                                 "ping messages received", NULL);

    struct kp_zsock_opts fo = {.max_msg_bytes = cfg->max_bytes};
    struct kp_zsock_opts bo = {.max_msg_bytes = cfg->max_bytes + 65536};
    int rc;
    if ((rc = kp_zsock_open(loop, KP_ZSOCK_ROUTER, &fo, &c->front)) != 0 ||
        (rc = kp_zsock_bind(c->front, cfg->listen)) != 0) {
        KP_ERROR("bind_failed", "endpoint=%s err=%s", cfg->listen, kp_err_name(rc));
        goto fail;
    }
    kp_zsock_last_endpoint(c->front, c->endpoint, sizeof c->endpoint);
    if ((rc = kp_zsock_open(loop, KP_ZSOCK_DEALER, &bo, &c->back)) != 0 ||
        (rc = kp_zsock_connect(c->back, cfg->broker)) != 0) {
        KP_ERROR("connect_failed", "endpoint=%s err=%s", cfg->broker, kp_err_name(rc));
        goto fail;
    }
    if ((rc = kp_admin_open(cfg->admin, c->metrics, NULL, NULL, &c->admin)) != 0) {
        KP_ERROR("admin_failed", "listen=%s err=%s", cfg->admin, kp_err_name(rc));
        goto fail;
    }
    kp_zsock_start(c->front, on_front, c);
    kp_zsock_start(c->back, on_back, c);
    KP_INFO("started", "listen=%s broker=%s admin_port=%d insecure=true", c->endpoint,
            cfg->broker, kp_admin_port(c->admin));
    *out = c;
    return 0;
fail:
    col_stop(&c);
    return rc;
}

const char *col_endpoint(const struct col *c)
{
    return c->endpoint;
}

int col_admin_port(const struct col *c)
{
    return c->admin ? kp_admin_port(c->admin) : -1;
}

static void on_sock_closed(void *arg)
{
    struct col *c = arg;
    if (--c->closing == 0) {
        kp_metrics_destroy(&c->metrics);
        kp_buf_fini(&c->out);
        free(c);
    }
}

void col_stop(struct col **cp)
{
    if (!cp || !*cp)
        return;
    struct col *c = *cp;
    *cp = NULL;
    kp_admin_close(&c->admin);
    c->closing = 1; /* held until both sockets are closed */
    if (c->front) {
        c->closing++;
        kp_zsock_close(&c->front, on_sock_closed, c);
    }
    if (c->back) {
        c->closing++;
        kp_zsock_close(&c->back, on_sock_closed, c);
    }
    on_sock_closed(c);
}

struct col_run_ctx {
    struct col *col;
    struct kp_signals *sig;
};

static void on_stop_signal(void *arg)
{
    struct col_run_ctx *r = arg;
    KP_INFO("stopping", "msg=\"signal received\"");
    col_stop(&r->col);
    kp_signals_close(&r->sig);
}

int col_run(const struct col_config *cfg, uv_loop_t *loop)
{
    struct col_run_ctx r = {0};
    if (col_start(loop, cfg, &r.col) != 0)
        return 1;
    kp_signals_open(loop, on_stop_signal, NULL, &r, &r.sig);
    uv_run(loop, UV_RUN_DEFAULT);
    KP_INFO("stopped", "msg=\"collector stopped\"");
    return 0;
}
