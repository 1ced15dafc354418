/*
 * col: the collector (see col.h). Frames from adapters are checked here before they cost the
 * broker or the scorer anything: the whole batch is decoded with the PROTOCOL.md limits and
 * a batch-level defect is answered with a nack carrying its reason code (ARCHITECTURE.md
 * guarantee 4). Valid batches go to the broker inside the envelope of schemas/INTERNAL.md;
 * replies come back with the adapter's routing id and are relayed unchanged.
 */
#include "col.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kp_acl.h"
#include "kp_admin.h"
#include "kp_buf.h"
#include "kp_daemon.h"
#include "kp_err.h"
#include "kp_keys.h"
#include "kp_log.h"
#include "kp_metrics.h"
#include "kp_msg.h"
#include "kp_zap.h"
#include "kp_zsock.h"

/* Frames queued towards the broker (and replies queued from it) at most. */
#define COL_BROKER_HWM 32
/* Replies queued towards one adapter at least (see col_start). */
#define COL_REPLY_HWM_MIN 64

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
    {"curve.secret_file", KP_CFG_STR, "", 0, 0, CFG(curve_secret_file), false, false,
     "the collector's CURVE secret key file (mode 0600; kpctl keygen): its server key towards "
     "adapters and its client key towards the broker"},
    {"curve.public_file", KP_CFG_STR, "", 0, 0, CFG(curve_public_file), false, false,
     "its public key file (optional: checked against the secret key)"},
    {"curve.server_public_file", KP_CFG_STR, "", 0, 0, CFG(curve_server_public_file), false,
     false, "the broker's public key file (CURVE on the collector -> broker hop)"},
    {"curve.keys_file", KP_CFG_STR, "", 0, 0, CFG(curve_keys_file), false, false,
     "YAML list of authorised adapters: aid, key (Z85 public key), grants [{scheme, src, "
     "indicators}]; re-read on SIGHUP"},
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
    /* operations (issue 8): batches by outcome, connections, readiness */
    struct kp_counter *b_forwarded, *b_refused, *b_overloaded;
    struct kp_gauge *adapters, *broker_up;
    atomic_int broker_peers; /* read by the admin thread (/readyz) */
    /* CURVE and grants (issue 6) */
    struct kp_acl *acl; /* authorised adapters; NULL: plain TCP (insecure) */
    struct kp_zap *zap; /* ZAP registration of KP_ZAP_DOMAIN_ADAPTERS */
    char pub[KP_KEY_Z85_LEN + 1], sec[KP_KEY_Z85_LEN + 1], brk_pub[KP_KEY_Z85_LEN + 1];
    bool broker_curve;
    struct kp_buf refused; /* the envelope's "refused" frame of the batch being forwarded */
    struct kp_counter *hs_accepted, *hs_refused, *obs_not_granted, *reload_ok, *reload_failed;
    struct kp_gauge *keys;
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

/* ARCHITECTURE.md guarantee 5, per batch, against the key file as it is now: the batch's aid
 * is the connection's ZAP User-Id (PROTOCOL.md batch.aid), the adapter is granted the scheme
 * and src, and every observation's indicator is granted or listed in c->refused for the
 * scorer to store as a not_granted_indicator rejection. Returns false after nacking. */
static bool authorise(struct col *c, const struct kp_frame *rid, const struct kp_batch *b,
                      size_t *n_refused)
{
    char msg[KP_MSG_TEXT_MAX];
    const char *uid = kp_zsock_msg_user_id(c->front);
    if (!uid || strcmp(uid, b->aid) != 0) {
        snprintf(msg, sizeof msg, "aid %s does not match the authenticated adapter %s", b->aid,
                 uid ? uid : "(none)");
        KP_WARN("batch_refused", "reason=bad_aid adapter=%s aid=%s scheme=%s seq=%" PRIu64,
                uid ? uid : "-", b->aid, b->scheme, b->seq);
        nack(c, rid, true, b->seq, KP_R_bad_aid, msg);
        return false;
    }
    enum kp_reason r = kp_acl_check_batch(c->acl, uid, b->scheme, b->src, msg, sizeof msg);
    if (r != KP_R_OK) {
        KP_WARN("batch_refused", "reason=%s adapter=%s scheme=%s src=%s seq=%" PRIu64,
                kp_reason_str(r), uid, b->scheme, b->src, b->seq);
        nack(c, rid, true, b->seq, r, msg);
        return false;
    }
    /* [n, code] pairs in ascending n (schemas/INTERNAL.md "refused"); n_obs is capped by
     * max_obs, so the list is bounded before it is allocated. */
    kp_buf_reset(&c->refused);
    struct kp_refused *list = NULL;
    size_t n = 0;
    for (size_t i = 0; i < b->n_obs; i++) {
        const struct kp_obs *o = &b->obs[i];
        if (o->reason != KP_R_OK || kp_acl_indicator_granted(c->acl, uid, b->scheme, b->src, o->i))
            continue;
        if (!list)
            list = kp_xcalloc(b->n_obs, sizeof *list);
        list[n].n = (uint32_t)i;
        list[n].code = KP_R_not_granted_indicator;
        if (n++ == 0)
            KP_INFO("indicator_not_granted",
                    "adapter=%s scheme=%s src=%s seq=%" PRIu64 " indicator=%s", uid, b->scheme,
                    b->src, b->seq, o->i);
    }
    if (n) {
        kp_counter_add(c->obs_not_granted, (double)n);
        int rc = kp_refused_encode(&c->refused, list, n);
        KP_ASSERT(rc == 0);
        free(list);
    }
    *n_refused = n;
    return true;
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
        kp_counter_inc(c->b_refused);
        nack(c, rid, has_seq, seq, r, msg);
        return;
    }
    /* Insecure mode: the batch's own aid stands for the authenticated one (INTERNAL.md). */
    size_t n_refused = 0;
    if (c->acl && !authorise(c, rid, b, &n_refused)) {
        kp_counter_inc(c->b_refused);
        kp_batch_destroy(&b);
        return;
    }
    char seqs[24];
    snprintf(seqs, sizeof seqs, "%" PRIu64, b->seq);
    struct kp_frame f[7] = {
        {"bat", 3},
        *rid,
        {b->scheme, strlen(b->scheme)},
        {b->aid, strlen(b->aid)},
        {seqs, strlen(seqs)},
        *payload,
        {c->refused.data, c->refused.len},
    };
    int rc = kp_zsock_send(c->back, f, n_refused ? 7 : 6);
    if (rc == 0) {
        kp_counter_inc(c->forwarded);
        kp_counter_inc(c->b_forwarded);
        KP_DEBUG("batch_forwarded", "adapter=%s scheme=%s seq=%" PRIu64 " obs=%zu", b->aid,
                 b->scheme, b->seq, b->n_obs);
    } else {
        KP_WARN("broker_busy", "adapter=%s scheme=%s seq=%" PRIu64 " err=%s", b->aid, b->scheme,
                b->seq, kp_err_name(rc));
        kp_counter_inc(c->b_overloaded);
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
        /* PROTOCOL.md nack.seq: a frame with a readable integer seq (a batch of another
         * version, with a mistyped t or v, ...) is nacked with that seq, or the adapter could
         * not settle a permanent refusal and would resend the batch forever. The batch decoder
         * reads seq whatever else fails and refuses the frame for the same reason peek did. */
        on_batch(c, rid, payload);
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
        /* A server's type (ack, welcome, ...) from a client: refused like any batch whose t is
         * not "batch", with its seq when one can be read (PROTOCOL.md nack.seq). */
        on_batch(c, rid, payload);
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

/* Monitor callbacks (loop thread): connection counts for /metrics and /readyz. */
static void on_front_peers(struct kp_zsock *s, int peers, void *arg)
{
    (void)s;
    struct col *c = arg;
    kp_gauge_set(c->adapters, peers);
}

static void on_back_peers(struct kp_zsock *s, int peers, void *arg)
{
    (void)s;
    struct col *c = arg;
    if ((atomic_load(&c->broker_peers) > 0) != (peers > 0)) {
        if (peers > 0)
            KP_INFO("broker_connected", "broker=%s", c->cfg->broker);
        else
            KP_WARN("broker_disconnected", "broker=%s msg=\"batches wait in the adapters' spools\"",
                    c->cfg->broker);
    }
    atomic_store(&c->broker_peers, peers);
    kp_gauge_set(c->broker_up, peers > 0 ? 1 : 0);
}

/* Admin thread: ready while the broker connection is up (else adapters' batches would only
 * be nacked as overloaded). */
static bool col_ready(void *arg, char *why, size_t why_len)
{
    struct col *c = arg;
    if (atomic_load(&c->broker_peers) > 0)
        return true;
    snprintf(why, why_len, "not connected to the broker %s", c->cfg->broker);
    return false;
}

/* ZAP (loop thread): a handshake on the adapters' endpoint is admitted when the key is in the
 * current key file; the User-Id is the adapter id it belongs to (PROTOCOL.md "Transport"). */
static bool zap_auth(const uint8_t key[32], const char *address, char *user_id, void *arg)
{
    (void)address;
    struct col *c = arg;
    const char *aid = kp_acl_lookup_key(c->acl, key);
    if (!aid) {
        kp_counter_inc(c->hs_refused);
        return false;
    }
    snprintf(user_id, KP_ZAP_USER_ID_MAX + 1, "%s", aid);
    kp_counter_inc(c->hs_accepted);
    return true;
}

static bool given(const char *s)
{
    return s && *s;
}

/* Reads the key files of the configured CURVE hops into c. Secrets stay in c (wiped at
 * free) and never reach a log line. Returns 0 or KP_ECONFIG after logging why. */
static int load_keys(struct col *c, const struct col_config *cfg)
{
    char err[600], q[700];
    bool own = given(cfg->curve_secret_file);
    if (!own && (given(cfg->curve_keys_file) || given(cfg->curve_server_public_file) ||
                 given(cfg->curve_public_file))) {
        KP_ERROR("config_invalid", "msg=\"curve.secret_file: required with the other curve.* "
                                   "keys (the collector's own key pair)\"");
        return KP_ECONFIG;
    }
    if (!own && !cfg->insecure) {
        KP_ERROR("curve_required",
                 "msg=\"CURVE keys are not configured: set curve.secret_file, curve.keys_file and "
                 "curve.server_public_file (kpctl keygen), or start with --insecure for plain "
                 "TCP (local tests only)\"");
        return KP_ECONFIG;
    }
    if (!own)
        return 0;
    if (!cfg->insecure && (!given(cfg->curve_keys_file) || !given(cfg->curve_server_public_file))) {
        KP_ERROR("curve_required",
                 "msg=\"%s: required under CURVE (or insecure: true for plain TCP on that hop)\"",
                 !given(cfg->curve_keys_file) ? "curve.keys_file (the adapters' keys and grants)"
                                              : "curve.server_public_file (the broker's key)");
        return KP_ECONFIG;
    }
    int rc = kp_keys_load_pair(cfg->curve_secret_file, cfg->curve_public_file, c->pub, c->sec,
                               err, sizeof err);
    if (rc == 0 && given(cfg->curve_server_public_file)) {
        rc = kp_keys_read_public(cfg->curve_server_public_file, c->brk_pub, err, sizeof err);
        c->broker_curve = rc == 0;
    }
    if (rc == 0 && given(cfg->curve_keys_file))
        rc = kp_acl_load(cfg->curve_keys_file, &c->acl, err, sizeof err);
    if (rc) {
        KP_ERROR("curve_keys_invalid", "msg=%s", kp_log_q(q, sizeof q, err));
        return KP_ECONFIG;
    }
    if (c->acl && kp_acl_keys(c->acl) == 0)
        KP_WARN("no_adapter_keys", "file=%s msg=\"the key file authorises nobody\"",
                cfg->curve_keys_file);
    return 0;
}

int col_reload_keys(struct col *c)
{
    if (!c || !c->acl || !given(c->cfg->curve_keys_file))
        return 0;
    char err[600], q[700];
    struct kp_acl *fresh = NULL;
    int rc = kp_acl_load(c->cfg->curve_keys_file, &fresh, err, sizeof err);
    if (rc) {
        kp_counter_inc(c->reload_failed);
        KP_WARN("keys_reload_failed", "file=%s msg=%s keeping=\"the current key file\"",
                c->cfg->curve_keys_file, kp_log_q(q, sizeof q, err));
        return rc;
    }
    kp_acl_destroy(&c->acl);
    c->acl = fresh;
    kp_counter_inc(c->reload_ok);
    kp_gauge_set(c->keys, (double)kp_acl_keys(c->acl));
    KP_INFO("keys_reloaded", "file=%s adapters=%zu keys=%zu", c->cfg->curve_keys_file,
            kp_acl_clients(c->acl), kp_acl_keys(c->acl));
    return 0;
}

int col_start(uv_loop_t *loop, const struct col_config *cfg, struct col **out)
{
    struct col *c = kp_xcalloc(1, sizeof *c);
    c->loop = loop;
    c->cfg = cfg;
    int rc;
    if ((rc = load_keys(c, cfg)) != 0) {
        kp_acl_destroy(&c->acl);
        kp_keys_wipe(c->sec, sizeof c->sec);
        free(c);
        return rc;
    }
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
    static const char bhelp[] =
        "Batches received from adapters, by outcome (forwarded to the broker, refused by "
        "validation, nacked because the broker was busy)";
    c->b_forwarded = kp_metrics_counter(c->metrics, "kaoping_collector_batches_total", bhelp,
                                        "outcome=\"forwarded\"");
    c->b_refused = kp_metrics_counter(c->metrics, "kaoping_collector_batches_total", bhelp,
                                      "outcome=\"refused\"");
    c->b_overloaded = kp_metrics_counter(c->metrics, "kaoping_collector_batches_total", bhelp,
                                         "outcome=\"overloaded\"");
    c->adapters = kp_metrics_gauge(c->metrics, "kaoping_collector_adapters_connected",
                                   "Adapter connections open on the collector's endpoint", NULL);
    c->broker_up = kp_metrics_gauge(c->metrics, "kaoping_collector_broker_connected",
                                    "1 while the connection to the broker is up", NULL);
    atomic_init(&c->broker_peers, 0);
    static const char hhelp[] = "CURVE handshakes on the adapters' endpoint, by ZAP result";
    c->hs_accepted = kp_metrics_counter(c->metrics, "kaoping_collector_handshakes_total", hhelp,
                                        "result=\"accepted\"");
    c->hs_refused = kp_metrics_counter(c->metrics, "kaoping_collector_handshakes_total", hhelp,
                                       "result=\"refused\"");
    c->obs_not_granted = kp_metrics_counter(
        c->metrics, "kaoping_collector_observations_not_granted_total",
        "Observations of indicators their adapter is not granted (stored as rejections)", NULL);
    static const char rhelp[] = "SIGHUP reloads of the adapters' key file, by result";
    c->reload_ok = kp_metrics_counter(c->metrics, "kaoping_collector_key_reloads_total", rhelp,
                                      "result=\"ok\"");
    c->reload_failed = kp_metrics_counter(c->metrics, "kaoping_collector_key_reloads_total",
                                          rhelp, "result=\"failed\"");
    c->keys = kp_metrics_gauge(c->metrics, "kaoping_collector_adapter_keys",
                               "Adapter public keys in the current key file", NULL);
    kp_gauge_set(c->keys, (double)kp_acl_keys(c->acl));

    /* Memory bounds (docs/OPERATIONS.md): per adapter connection at most max_inflight frames
     * of max_bytes queued each way (beyond, ZeroMQ stops reading that connection: TCP slows
     * the sender); towards the broker COL_BROKER_HWM frames, beyond which batches are nacked
     * overloaded, retry:true. */
    int per_adapter = (int)cfg->max_inflight;
    /* Replies are small (acks, nacks) and libzmq learns that the peer's session read them
     * only every hwm/2 messages, and lazily: with an HWM of a few messages a ROUTER_MANDATORY
     * send to a reading adapter can fail EAGAIN (the reply dropped, the batch waiting for the
     * adapter's ack timeout), seen mostly right after a CURVE handshake. Hence a floor. */
    int reply_hwm = per_adapter < COL_REPLY_HWM_MIN ? COL_REPLY_HWM_MIN : per_adapter;
    struct kp_zsock_opts fo = {
        .max_msg_bytes = cfg->max_bytes, .sndhwm = reply_hwm, .rcvhwm = per_adapter};
    struct kp_zsock_opts bo = {.max_msg_bytes = cfg->max_bytes + 65536,
                               .sndhwm = COL_BROKER_HWM,
                               .rcvhwm = COL_BROKER_HWM};
    if (c->acl) {
        /* CURVE server; ZAP_ENFORCE_DOMAIN: no handler, no entry (kp_zsock.c) */
        fo.curve_server_secret = c->sec;
        fo.zap_domain = KP_ZAP_DOMAIN_ADAPTERS;
        if ((rc = kp_zap_open(loop, KP_ZAP_DOMAIN_ADAPTERS, zap_auth, c, &c->zap)) != 0) {
            KP_ERROR("zap_failed", "err=%s", kp_err_name(rc));
            goto fail;
        }
    }
    if (c->broker_curve) {
        bo.curve_public = c->pub;
        bo.curve_secret = c->sec;
        bo.curve_serverkey = c->brk_pub;
    }
    if ((rc = kp_zsock_open(loop, KP_ZSOCK_ROUTER, &fo, &c->front)) != 0 ||
        (rc = kp_zsock_monitor(c->front, on_front_peers, c)) != 0 ||
        (rc = kp_zsock_bind(c->front, cfg->listen)) != 0) {
        KP_ERROR("bind_failed", "endpoint=%s err=%s", cfg->listen, kp_err_name(rc));
        goto fail;
    }
    kp_zsock_last_endpoint(c->front, c->endpoint, sizeof c->endpoint);
    if ((rc = kp_zsock_open(loop, KP_ZSOCK_DEALER, &bo, &c->back)) != 0 ||
        (rc = kp_zsock_monitor(c->back, on_back_peers, c)) != 0 ||
        (rc = kp_zsock_connect(c->back, cfg->broker)) != 0) {
        KP_ERROR("connect_failed", "endpoint=%s err=%s", cfg->broker, kp_err_name(rc));
        goto fail;
    }
    if ((rc = kp_admin_open(cfg->admin, c->metrics, col_ready, c, &c->admin)) != 0) {
        KP_ERROR("admin_failed", "listen=%s err=%s", cfg->admin, kp_err_name(rc));
        goto fail;
    }
    kp_zsock_start(c->front, on_front, c);
    kp_zsock_start(c->back, on_back, c);
    KP_INFO("started", "listen=%s broker=%s admin_port=%d adapters_hop=%s broker_hop=%s adapters=%zu",
            c->endpoint, cfg->broker, kp_admin_port(c->admin), c->acl ? "curve" : "plain",
            c->broker_curve ? "curve" : "plain", kp_acl_clients(c->acl));
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
        kp_buf_fini(&c->refused);
        kp_acl_destroy(&c->acl);
        kp_keys_wipe(c->sec, sizeof c->sec);
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
    kp_zap_close(&c->zap);
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

/* SIGHUP: the adapters' key file, then the configuration's reloadable keys. */
static void on_hup_signal(void *arg)
{
    struct col_run_ctx *r = arg;
    (void)col_reload_keys(r->col);
    kp_daemon_on_hup(NULL);
}

int col_run(const struct col_config *cfg, uv_loop_t *loop)
{
    struct col_run_ctx r = {0};
    if (col_start(loop, cfg, &r.col) != 0)
        return 1;
    kp_signals_open(loop, on_stop_signal, on_hup_signal, &r, &r.sig);
    uv_run(loop, UV_RUN_DEFAULT);
    KP_INFO("stopped", "msg=\"collector stopped\"");
    return 0;
}
