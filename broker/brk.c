/*
 * brk: the broker (see brk.h). A small table maps each scheme to the scorer serving it, a
 * second one keeps, per scorer that serves a scheme, when it was last heard from; routing is
 * a lookup in the first, liveness one entry of the second. Sends to a scorer use
 * ZMQ_ROUTER_MANDATORY, so a scorer that has gone away is noticed on the first send and the
 * batch is nacked for retry instead of vanishing (ARCHITECTURE.md guarantee 1).
 */
#include "brk.h"

#include <inttypes.h>
#include <stdatomic.h>
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
#include "kp_time.h"
#include "kp_zap.h"
#include "kp_zsock.h"

#define CFG(field) offsetof(struct brk_config, field)
const struct kp_cfg_entry brk_config_table[] = {
    {"instance", KP_CFG_STR, "broker", 0, 0, CFG(instance), false, false,
     "instance name on every log line"},
    {"log_level", KP_CFG_STR, "info", 0, 0, CFG(log_level), false, true,
     "debug, info, warn or error"},
    {"frontend", KP_CFG_STR, "tcp://*:7451", 0, 0, CFG(frontend), false, false,
     "ZeroMQ endpoint collectors connect to"},
    {"backend", KP_CFG_STR, "tcp://*:7452", 0, 0, CFG(backend), false, false,
     "ZeroMQ endpoint scorers connect to"},
    {"admin", KP_CFG_STR, "127.0.0.1:9402", 0, 0, CFG(admin), false, false,
     "host:port of the admin HTTP endpoint (/metrics, /healthz, /readyz)"},
    {"hb_ms", KP_CFG_MS, "1000", 100, 600000, CFG(hb_ms), false, false,
     "scorer heartbeat interval; a scorer silent (no reg, hb or rep) for 3 intervals is dead"},
    {"max_bytes", KP_CFG_BYTES, "4M", 1024, 64.0 * 1024 * 1024, CFG(max_bytes), false, false,
     "largest batch frame (the envelope adds 64 KiB)"},
    {"insecure", KP_CFG_BOOL, "false", 0, 0, CFG(insecure), false, false,
     "accept plain TCP without CURVE (local tests only; also --insecure)"},
    {"curve.secret_file", KP_CFG_STR, "", 0, 0, CFG(curve_secret_file), false, false,
     "the broker's CURVE secret key file (mode 0600; kpctl keygen), server key of both endpoints"},
    {"curve.public_file", KP_CFG_STR, "", 0, 0, CFG(curve_public_file), false, false,
     "its public key file (optional: checked against the secret key)"},
    {"curve.keys_file", KP_CFG_STR, "", 0, 0, CFG(curve_keys_file), false, false,
     "YAML list of authorised collectors and scorers: aid (name), key (Z85 public key); "
     "re-read on SIGHUP"},
    KP_CFG_END,
};

#define BRK_MAX_ROUTES 256
#define BRK_FRONT_HWM  32 /* frames queued per collector connection, each way */
#define BRK_SCORER_HWM 16 /* batches queued per scorer: a scorer takes one at a time */

/* A scorer that serves at least one route. Liveness is kept here, once per scorer, so that
 * any frame of a scorer refreshes all its routes in O(1) (INTERNAL.md "Liveness"). */
struct brk_scorer {
    char sid[KP_CODE_MAX + 1]; /* "" = free slot */
    int64_t last_seen_ms;      /* mono_ms() of its last well-formed frame: reg, hb or rep */
    unsigned n_routes;         /* routes served; the slot is freed when it drops to 0 */
};

struct brk_route {
    char scheme[KP_CODE_MAX + 1];
    struct brk_scorer *scorer; /* NULL: no scorer (none registered, or dropped as dead) */
    int64_t registered_ms;
    struct kp_gauge *live;
};

struct brk {
    uv_loop_t *loop;
    const struct brk_config *cfg;
    struct kp_zsock *front, *back;
    struct kp_admin *admin;
    struct kp_metrics *metrics;
    struct kp_buf out;
    uv_timer_t timer;
    char front_ep[256], back_ep[256];
    struct brk_route routes[BRK_MAX_ROUTES];
    size_t n_routes;
    /* the scorers that serve a route: at most one per route */
    struct brk_scorer serving[BRK_MAX_ROUTES];
    size_t n_serving;          /* every slot in use lies below this index */
    struct brk_scorer *recent; /* the scorer found last: a frame of the same one skips the scan */
    int closing;               /* parts still closing; the struct is freed at 0 */
    bool timer_open;           /* the liveness timer was initialised */
    struct kp_counter *routed, *replies, *unavailable, *overloaded, *bad_frames;
    /* operations (issue 8) */
    struct kp_gauge *collectors, *scorers, *schemes_live;
    atomic_int n_live; /* schemes with a live scorer, read by the admin thread (/readyz) */
    /* CURVE (issue 6): both endpoints are CURVE servers when acl != NULL */
    struct kp_acl *acl; /* authorised collectors and scorers */
    struct kp_zap *zap; /* ZAP registration of KP_ZAP_DOMAIN_INTERNAL */
    char sec[KP_KEY_Z85_LEN + 1], pub[KP_KEY_Z85_LEN + 1];
    struct kp_counter *hs_accepted, *hs_refused;
};

/* Liveness is measured on the monotonic clock (kp_time.h): a step of the wall clock must
 * neither keep a dead scorer routed nor drop live ones. */
static int64_t mono_ms(void)
{
    return (int64_t)(kp_mono_ns() / 1000000u);
}

static struct brk_route *route_find(struct brk *b, const char *scheme, size_t len)
{
    for (size_t i = 0; i < b->n_routes; i++)
        if (strlen(b->routes[i].scheme) == len && memcmp(b->routes[i].scheme, scheme, len) == 0)
            return &b->routes[i];
    return NULL;
}

/* The scorer whose sid is the len bytes at sid (a routing id), or NULL when it serves no
 * route. O(1) for a frame of the scorer found last (the common case: one active scorer
 * streaming replies), else a scan of the scorers, at most one per route. */
static struct brk_scorer *scorer_find(struct brk *b, const void *sid, size_t len)
{
    struct brk_scorer *s = b->recent;
    if (s && s->sid[0] && strlen(s->sid) == len && memcmp(s->sid, sid, len) == 0)
        return s;
    for (size_t i = 0; i < b->n_serving; i++) {
        s = &b->serving[i];
        if (s->sid[0] && strlen(s->sid) == len && memcmp(s->sid, sid, len) == 0)
            return b->recent = s;
    }
    return NULL;
}

/* A free slot for sid (loop thread). There is always one when the caller has just unrouted the
 * route it is about to give sid: every slot in use serves one of the other routes. */
static struct brk_scorer *scorer_add(struct brk *b, const char *sid, int64_t now)
{
    size_t i = 0;
    while (i < b->n_serving && b->serving[i].sid[0])
        i++;
    KP_ASSERT(i < sizeof b->serving / sizeof b->serving[0]);
    if (i == b->n_serving)
        b->n_serving++;
    struct brk_scorer *s = &b->serving[i];
    snprintf(s->sid, sizeof s->sid, "%s", sid);
    s->last_seen_ms = now;
    s->n_routes = 0;
    return s;
}

/* Routes r to s (NULL: to nobody); a scorer left with no route frees its slot. */
static void route_set(struct brk *b, struct brk_route *r, struct brk_scorer *s)
{
    struct brk_scorer *old = r->scorer;
    if (old == s)
        return;
    r->scorer = s;
    if (s)
        s->n_routes++;
    if (old && --old->n_routes == 0) {
        old->sid[0] = 0;
        if (b->recent == old)
            b->recent = NULL;
        while (b->n_serving > 0 && !b->serving[b->n_serving - 1].sid[0])
            b->n_serving--;
    }
}

/* A well-formed frame from the scorer with routing id sid proves it alive: every route it
 * serves is refreshed at once (INTERNAL.md "Liveness"). A scorer that serves no route (never
 * registered, or already declared dead) stays so until its next reg. */
static void scorer_heard(struct brk *b, const void *sid, size_t len, int64_t now)
{
    struct brk_scorer *s = scorer_find(b, sid, len);
    if (s)
        s->last_seen_ms = now;
}

static bool route_live(const struct brk *b, const struct brk_route *r, int64_t now)
{
    return r->scorer && now - r->scorer->last_seen_ms <= 3 * b->cfg->hb_ms;
}

/* Recounts the schemes with a live scorer after a route changed (loop thread). */
static void live_changed(struct brk *b)
{
    int64_t now = mono_ms();
    int n = 0;
    for (size_t i = 0; i < b->n_routes; i++)
        n += route_live(b, &b->routes[i], now);
    atomic_store(&b->n_live, n);
    kp_gauge_set(b->schemes_live, n);
}

static void on_register(struct brk *b, const struct kp_frame *sid_frame, const struct kp_frame *p)
{
    bool is_hb;
    struct kp_reg reg;
    if (kp_reg_decode(p->data, p->len, &is_hb, &reg) != KP_R_OK ||
        sid_frame->len != strlen(reg.sid) || memcmp(sid_frame->data, reg.sid, sid_frame->len)) {
        kp_counter_inc(b->bad_frames);
        KP_WARN("bad_registration", "frames_sid_len=%zu", sid_frame->len);
        return;
    }
    int64_t now = mono_ms();
    scorer_heard(b, sid_frame->data, sid_frame->len, now);
    if (is_hb)
        return;
    struct brk_scorer *s = scorer_find(b, sid_frame->data, sid_frame->len);
    for (size_t k = 0; k < reg.n_schemes; k++) {
        struct brk_route *r = route_find(b, reg.schemes[k], strlen(reg.schemes[k]));
        if (!r) {
            if (b->n_routes == BRK_MAX_ROUTES) {
                KP_ERROR("too_many_schemes", "scheme=%s", reg.schemes[k]);
                continue;
            }
            r = &b->routes[b->n_routes++];
            snprintf(r->scheme, sizeof r->scheme, "%s", reg.schemes[k]);
            char labels[128];
            snprintf(labels, sizeof labels, "scheme=\"%s\"", r->scheme);
            r->live = kp_metrics_gauge(b->metrics, "kaoping_broker_scorer_live",
                                       "1 when a live scorer serves the scheme", labels);
        }
        if (!s || r->scorer != s) {
            KP_INFO("scorer_registered", "scheme=%s scorer=%s previous=%s", r->scheme, reg.sid,
                    r->scorer ? r->scorer->sid : "none");
            /* taking the route first frees the previous scorer's slot if it was its last */
            route_set(b, r, NULL);
            if (!s)
                s = scorer_add(b, reg.sid, now);
            route_set(b, r, s);
            r->registered_ms = now;
        }
        kp_gauge_set(r->live, 1);
    }
    /* A reg lists every scheme the scorer serves now: one it no longer lists (a standby, a
     * scorer that lost its PostgreSQL session and with it the scheme's lock) is not routed to
     * it any more, rather than until it falls silent. */
    for (size_t i = 0; s && i < b->n_routes; i++) {
        struct brk_route *r = &b->routes[i];
        if (r->scorer != s)
            continue;
        bool listed = false;
        for (size_t k = 0; k < reg.n_schemes && !listed; k++)
            listed = strcmp(r->scheme, reg.schemes[k]) == 0;
        if (!listed) {
            KP_INFO("scorer_deregistered", "scheme=%s scorer=%s", r->scheme, s->sid);
            route_set(b, r, NULL);
            kp_gauge_set(r->live, 0);
        }
    }
    live_changed(b);
}

static void reply_nack(struct brk *b, const struct kp_frame *cid, const struct kp_frame *rid,
                       const struct kp_frame *seq, enum kp_reason code, const char *msg)
{
    struct kp_nack n = {.code = code, .retry = kp_reason_retry(code)};
    char buf[24];
    if (seq->len > 0 && seq->len < sizeof buf) {
        memcpy(buf, seq->data, seq->len);
        buf[seq->len] = 0;
        char *end;
        n.seq = strtoull(buf, &end, 10);
        n.has_seq = *end == 0;
    }
    snprintf(n.msg, sizeof n.msg, "%s", msg);
    kp_buf_reset(&b->out);
    if (kp_nack_encode(&b->out, &n) != 0)
        return;
    struct kp_frame f[4] = {*cid, {"rep", 3}, *rid, {b->out.data, b->out.len}};
    int rc = kp_zsock_send(b->front, f, 4);
    if (rc != 0)
        KP_INFO("collector_gone", "err=%s", kp_err_name(rc));
}

/* Frontend: [cid, "bat", rid, scheme, aid, seq, payload] or, with the optional "refused" frame
 * of INTERNAL.md (observations not granted to the adapter), [..., payload, refused]; the
 * refused frame is passed through to the scorer unread. */
static void on_front(struct kp_zsock *s, const struct kp_frame *fr, size_t n, void *arg)
{
    (void)s;
    struct brk *b = arg;
    if ((n != 7 && n != 8) || fr[1].len != 3 || memcmp(fr[1].data, "bat", 3) != 0) {
        kp_counter_inc(b->bad_frames);
        KP_WARN("bad_collector_frame", "frames=%zu", n);
        return;
    }
    const struct kp_frame *cid = &fr[0], *rid = &fr[2], *scheme = &fr[3], *aid = &fr[4],
                          *seq = &fr[5], *payload = &fr[6];
    int64_t now = mono_ms();
    struct brk_route *r = route_find(b, scheme->data, scheme->len);
    if (!r || !route_live(b, r, now)) {
        kp_counter_inc(b->unavailable);
        KP_DEBUG("no_scorer", "scheme=%.*s adapter=%.*s seq=%.*s", (int)scheme->len,
                 (const char *)scheme->data, (int)aid->len, (const char *)aid->data,
                 (int)seq->len, (const char *)seq->data);
        reply_nack(b, cid, rid, seq, KP_R_scorer_unavailable, "no live scorer serves the scheme");
        return;
    }
    const char *sid = r->scorer->sid;
    struct kp_frame f[8] = {{sid, strlen(sid)}, {"bat", 3}, *cid, *rid, *aid, *seq, *payload};
    if (n == 8)
        f[7] = fr[7];
    int rc = kp_zsock_send(b->back, f, n);
    if (rc == 0) {
        kp_counter_inc(b->routed);
        KP_DEBUG("batch_routed", "adapter=%.*s scheme=%s seq=%.*s scorer=%s", (int)aid->len,
                 (const char *)aid->data, r->scheme, (int)seq->len, (const char *)seq->data, sid);
        return;
    }
    if (rc == KP_EHOSTUNREACH) {
        KP_WARN("scorer_gone", "scheme=%s scorer=%s adapter=%.*s seq=%.*s", r->scheme, sid,
                (int)aid->len, (const char *)aid->data, (int)seq->len, (const char *)seq->data);
        route_set(b, r, NULL);
        kp_gauge_set(r->live, 0);
        live_changed(b);
        kp_counter_inc(b->unavailable);
        reply_nack(b, cid, rid, seq, KP_R_scorer_unavailable, "the scorer disconnected");
    } else {
        kp_counter_inc(b->overloaded);
        reply_nack(b, cid, rid, seq, KP_R_overloaded, "the scorer's queue is full");
    }
}

/* Backend: [sid, "reg"|"hb", payload] or [sid, "rep", cid, rid, payload]. */
static void on_back(struct kp_zsock *s, const struct kp_frame *fr, size_t n, void *arg)
{
    (void)s;
    struct brk *b = arg;
    if (n == 3 && ((fr[1].len == 3 && memcmp(fr[1].data, "reg", 3) == 0) ||
                   (fr[1].len == 2 && memcmp(fr[1].data, "hb", 2) == 0))) {
        on_register(b, &fr[0], &fr[2]);
        return;
    }
    if (n == 5 && fr[1].len == 3 && memcmp(fr[1].data, "rep", 3) == 0) {
        /* a reply proves its scorer alive as a hb does: a scorer working through a queue of
         * batches back to back has no turn to heartbeat (INTERNAL.md "Liveness") */
        scorer_heard(b, fr[0].data, fr[0].len, mono_ms());
        struct kp_frame f[4] = {fr[2], {"rep", 3}, fr[3], fr[4]};
        int rc = kp_zsock_send(b->front, f, 4);
        if (rc == 0)
            kp_counter_inc(b->replies);
        else
            KP_INFO("collector_gone", "err=%s", kp_err_name(rc));
        return;
    }
    kp_counter_inc(b->bad_frames);
    KP_WARN("bad_scorer_frame", "frames=%zu", n);
}

static void on_timer(uv_timer_t *t)
{
    struct brk *b = t->data;
    int64_t now = mono_ms();
    for (size_t i = 0; i < b->n_routes; i++) {
        struct brk_route *r = &b->routes[i];
        if (r->scorer && !route_live(b, r, now)) {
            KP_WARN("scorer_silent", "scheme=%s scorer=%s silent_ms=%" PRId64, r->scheme,
                    r->scorer->sid, now - r->scorer->last_seen_ms);
            route_set(b, r, NULL);
            kp_gauge_set(r->live, 0);
        }
    }
    live_changed(b);
}

/* Admin thread: ready while at least one scheme has a live scorer (otherwise every batch
 * is nacked scorer_unavailable). */
static bool ready(void *arg, char *why, size_t len)
{
    struct brk *b = arg;
    if (atomic_load(&b->n_live) > 0)
        return true;
    snprintf(why, len, "no scheme has a live scorer");
    return false;
}

static void on_front_peers(struct kp_zsock *s, int peers, void *arg)
{
    (void)s;
    kp_gauge_set(((struct brk *)arg)->collectors, peers);
}

static void on_back_peers(struct kp_zsock *s, int peers, void *arg)
{
    (void)s;
    kp_gauge_set(((struct brk *)arg)->scorers, peers);
}

/* ZAP (loop thread): collectors and scorers whose keys are in curve.keys_file; the User-Id is
 * the name the file gives them. */
static bool zap_auth(const uint8_t key[32], const char *address, char *user_id, void *arg)
{
    (void)address;
    struct brk *b = arg;
    const char *name = kp_acl_lookup_key(b->acl, key);
    if (!name) {
        kp_counter_inc(b->hs_refused);
        return false;
    }
    snprintf(user_id, KP_ZAP_USER_ID_MAX + 1, "%s", name);
    kp_counter_inc(b->hs_accepted);
    return true;
}

static bool given(const char *s)
{
    return s && *s;
}

/* Both endpoints CURVE when curve.secret_file and curve.keys_file are set; plain TCP only with
 * insecure. Returns 0 or KP_ECONFIG after logging why (never a key). */
static int load_keys(struct brk *b, const struct brk_config *cfg)
{
    char err[600], q[700];
    bool sec = given(cfg->curve_secret_file), keys = given(cfg->curve_keys_file);
    if (!sec && !keys) {
        if (cfg->insecure)
            return 0;
        KP_ERROR("curve_required",
                 "msg=\"CURVE keys are not configured: set curve.secret_file and curve.keys_file "
                 "(kpctl keygen), or start with --insecure for plain TCP (local tests only)\"");
        return KP_ECONFIG;
    }
    if (!sec || !keys) {
        KP_ERROR("config_invalid", "msg=\"%s: required with %s\"",
                 sec ? "curve.keys_file" : "curve.secret_file",
                 sec ? "curve.secret_file" : "curve.keys_file");
        return KP_ECONFIG;
    }
    int rc = kp_keys_load_pair(cfg->curve_secret_file, cfg->curve_public_file, b->pub, b->sec,
                               err, sizeof err);
    if (rc == 0)
        rc = kp_acl_load(cfg->curve_keys_file, &b->acl, err, sizeof err);
    if (rc) {
        KP_ERROR("curve_keys_invalid", "msg=%s", kp_log_q(q, sizeof q, err));
        return KP_ECONFIG;
    }
    return 0;
}

int brk_reload_keys(struct brk *b)
{
    if (!b || !b->acl)
        return 0;
    char err[600], q[700];
    struct kp_acl *fresh = NULL;
    int rc = kp_acl_load(b->cfg->curve_keys_file, &fresh, err, sizeof err);
    if (rc) {
        KP_WARN("keys_reload_failed", "file=%s msg=%s keeping=\"the current key file\"",
                b->cfg->curve_keys_file, kp_log_q(q, sizeof q, err));
        return rc;
    }
    kp_acl_destroy(&b->acl);
    b->acl = fresh;
    KP_INFO("keys_reloaded", "file=%s clients=%zu keys=%zu", b->cfg->curve_keys_file,
            kp_acl_clients(b->acl), kp_acl_keys(b->acl));
    return 0;
}

int brk_start(uv_loop_t *loop, const struct brk_config *cfg, struct brk **out)
{
    struct brk *b = kp_xcalloc(1, sizeof *b);
    b->loop = loop;
    b->cfg = cfg;
    if (load_keys(b, cfg) != 0) {
        kp_acl_destroy(&b->acl);
        kp_keys_wipe(b->sec, sizeof b->sec);
        free(b);
        return KP_ECONFIG;
    }
    b->metrics = kp_metrics_new();
    static const char hhelp[] = "CURVE handshakes on the broker's endpoints, by ZAP result";
    b->hs_accepted = kp_metrics_counter(b->metrics, "kaoping_broker_handshakes_total", hhelp,
                                        "result=\"accepted\"");
    b->hs_refused = kp_metrics_counter(b->metrics, "kaoping_broker_handshakes_total", hhelp,
                                       "result=\"refused\"");
    b->routed = kp_metrics_counter(b->metrics, "kaoping_broker_batches_routed_total",
                                   "Batches routed to a scorer", NULL);
    b->replies = kp_metrics_counter(b->metrics, "kaoping_broker_replies_total",
                                    "Acks and nacks relayed from scorers to collectors", NULL);
    b->unavailable =
        kp_metrics_counter(b->metrics, "kaoping_broker_nacks_total",
                           "Batches nacked by the broker, by reason code",
                           "code=\"scorer_unavailable\"");
    b->overloaded = kp_metrics_counter(b->metrics, "kaoping_broker_nacks_total",
                                       "Batches nacked by the broker, by reason code",
                                       "code=\"overloaded\"");
    b->bad_frames = kp_metrics_counter(b->metrics, "kaoping_broker_bad_frames_total",
                                       "Internal frames that did not match INTERNAL.md", NULL);
    b->collectors = kp_metrics_gauge(b->metrics, "kaoping_broker_collectors_connected",
                                     "Collector connections open on the frontend", NULL);
    b->scorers = kp_metrics_gauge(b->metrics, "kaoping_broker_scorers_connected",
                                  "Scorer connections open on the backend", NULL);
    b->schemes_live = kp_metrics_gauge(b->metrics, "kaoping_broker_schemes_live",
                                       "Schemes with a live scorer", NULL);
    atomic_init(&b->n_live, 0);
    /* Memory bounds (docs/OPERATIONS.md): per collector connection BRK_FRONT_HWM frames each
     * way; per scorer connection BRK_SCORER_HWM batches queued (beyond: nack overloaded,
     * retry:true) and BRK_FRONT_HWM replies. */
    struct kp_zsock_opts o = {.max_msg_bytes = cfg->max_bytes + 65536,
                              .sndhwm = BRK_FRONT_HWM,
                              .rcvhwm = BRK_FRONT_HWM};
    struct kp_zsock_opts ob = {.max_msg_bytes = cfg->max_bytes + 65536,
                               .sndhwm = BRK_SCORER_HWM,
                               .rcvhwm = BRK_FRONT_HWM};
    int rc;
    if (b->acl) {
        o.curve_server_secret = ob.curve_server_secret = b->sec;
        o.zap_domain = ob.zap_domain = KP_ZAP_DOMAIN_INTERNAL;
        if ((rc = kp_zap_open(loop, KP_ZAP_DOMAIN_INTERNAL, zap_auth, b, &b->zap)) != 0) {
            KP_ERROR("zap_failed", "err=%s", kp_err_name(rc));
            goto fail;
        }
    }
    if ((rc = kp_zsock_open(loop, KP_ZSOCK_ROUTER, &o, &b->front)) != 0 ||
        (rc = kp_zsock_monitor(b->front, on_front_peers, b)) != 0 ||
        (rc = kp_zsock_bind(b->front, cfg->frontend)) != 0) {
        KP_ERROR("bind_failed", "endpoint=%s err=%s", cfg->frontend, kp_err_name(rc));
        goto fail;
    }
    if ((rc = kp_zsock_open(loop, KP_ZSOCK_ROUTER, &ob, &b->back)) != 0 ||
        (rc = kp_zsock_monitor(b->back, on_back_peers, b)) != 0 ||
        (rc = kp_zsock_bind(b->back, cfg->backend)) != 0) {
        KP_ERROR("bind_failed", "endpoint=%s err=%s", cfg->backend, kp_err_name(rc));
        goto fail;
    }
    kp_zsock_last_endpoint(b->front, b->front_ep, sizeof b->front_ep);
    kp_zsock_last_endpoint(b->back, b->back_ep, sizeof b->back_ep);
    if ((rc = kp_admin_open(cfg->admin, b->metrics, ready, b, &b->admin)) != 0) {
        KP_ERROR("admin_failed", "listen=%s err=%s", cfg->admin, kp_err_name(rc));
        goto fail;
    }
    uv_timer_init(loop, &b->timer);
    b->timer.data = b;
    uv_timer_start(&b->timer, on_timer, (uint64_t)cfg->hb_ms, (uint64_t)cfg->hb_ms);
    b->timer_open = true;
    kp_zsock_start(b->front, on_front, b);
    kp_zsock_start(b->back, on_back, b);
    KP_INFO("started", "frontend=%s backend=%s admin_port=%d curve=%s clients=%zu", b->front_ep,
            b->back_ep, kp_admin_port(b->admin), b->acl ? "true" : "false",
            kp_acl_clients(b->acl));
    *out = b;
    return 0;
fail:
    brk_stop(&b);
    return rc;
}

const char *brk_frontend_endpoint(const struct brk *b)
{
    return b->front_ep;
}

const char *brk_backend_endpoint(const struct brk *b)
{
    return b->back_ep;
}

int brk_admin_port(const struct brk *b)
{
    return b->admin ? kp_admin_port(b->admin) : -1;
}

static void on_part_closed(void *arg)
{
    struct brk *b = arg;
    if (--b->closing == 0) {
        kp_metrics_destroy(&b->metrics);
        kp_buf_fini(&b->out);
        kp_acl_destroy(&b->acl);
        kp_keys_wipe(b->sec, sizeof b->sec);
        free(b);
    }
}

static void on_timer_closed(uv_handle_t *h)
{
    on_part_closed(h->data);
}

void brk_stop(struct brk **bp)
{
    if (!bp || !*bp)
        return;
    struct brk *b = *bp;
    *bp = NULL;
    kp_admin_close(&b->admin);
    kp_zap_close(&b->zap);
    bool timer = b->timer_open;
    b->closing = 1; /* held until every part below is closed */
    if (timer) {
        b->closing++;
        uv_close((uv_handle_t *)&b->timer, on_timer_closed);
    }
    if (b->front) {
        b->closing++;
        kp_zsock_close(&b->front, on_part_closed, b);
    }
    if (b->back) {
        b->closing++;
        kp_zsock_close(&b->back, on_part_closed, b);
    }
    on_part_closed(b);
}

struct brk_run_ctx {
    struct brk *brk;
    struct kp_signals *sig;
};

static void on_stop_signal(void *arg)
{
    struct brk_run_ctx *r = arg;
    KP_INFO("stopping", "msg=\"signal received\"");
    brk_stop(&r->brk);
    kp_signals_close(&r->sig);
}

/* SIGHUP: the key file of authorised collectors and scorers, then the reloadable config. */
static void on_hup_signal(void *arg)
{
    struct brk_run_ctx *r = arg;
    (void)brk_reload_keys(r->brk);
    kp_daemon_on_hup(NULL);
}

int brk_run(const struct brk_config *cfg, uv_loop_t *loop)
{
    struct brk_run_ctx r = {0};
    if (brk_start(loop, cfg, &r.brk) != 0)
        return 1;
    kp_signals_open(loop, on_stop_signal, on_hup_signal, &r, &r.sig);
    uv_run(loop, UV_RUN_DEFAULT);
    KP_INFO("stopped", "msg=\"broker stopped\"");
    return 0;
}
