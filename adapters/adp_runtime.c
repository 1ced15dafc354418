/*
 * adp_runtime: the adapter runtime (see adp.h). It wires the pump (source → spool) and the
 * delivery (spool → collector) together on one libuv loop: the source's poll, which may block
 * on a department database, runs on a libuv worker thread; storing its batch, and everything
 * the delivery does, runs on the loop thread, so the spool has a single user. When the spool
 * is full the adapter stops pulling, says so once in the log and on /metrics and /readyz, and
 * resumes when acks free space (STYLE.md: backpressure, never drop). ARCHITECTURE.md
 * guarantee 1 is served by the order pump → spool → delivery → ack → delete.
 */
#include "adp.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adp_deliver.h"
#include "adp_metrics.h"
#include "adp_pump.h"
#include "kp_admin.h"
#include "kp_err.h"
#include "kp_keys.h"
#include "kp_log.h"
#include "kp_metrics.h"
#include "kp_spool.h"
#include "kp_time.h"

#define STATS_MS 1000

struct adp {
    uv_loop_t *loop;
    struct adp_config *cfg;
    const struct adp_source *source;
    struct kp_spool *sp;
    struct kp_metrics *metrics;
    struct adp_metrics am;
    struct kp_admin *admin;
    struct adp_pump *pump;
    struct adp_deliver *dlv;
    uv_timer_t poll_timer;
    uv_timer_t stats_timer;
    uv_work_t work;
    bool polling; /* a poll runs on a worker thread */
    bool stopping;
    bool draining; /* adp_drain: no new poll */
    bool full; /* the spool refused the last batch: pulling waits for acks */
    bool full_logged;
    int poll_rc; /* written by the worker, read in after_work */
    char poll_err[512];
    unsigned fail_streak;
    int open_handles;
    /* read by the admin thread (/readyz) */
    atomic_bool source_ok;
    atomic_bool spool_ok;
};

/* ---- readiness and stats -------------------------------------------------------------- */

static bool ready(void *arg, char *why, size_t why_len)
{
    struct adp *a = arg;
    if (!atomic_load(&a->spool_ok)) {
        snprintf(why, why_len, "spool full: pulling stopped until acks free space");
        return false;
    }
    if (!atomic_load(&a->source_ok)) {
        snprintf(why, why_len, "source unreachable or failing (see the log)");
        return false;
    }
    return true;
}

static void update_stats(struct adp *a)
{
    struct kp_spool_stats st;
    if (kp_spool_stats(a->sp, &st) != 0)
        return;
    kp_gauge_set(a->am.spool_depth, (double)st.depth);
    kp_gauge_set(a->am.spool_bytes, (double)st.bytes);
    kp_gauge_set(a->am.spool_dead, (double)st.dead);
    double age = st.oldest_ms ? (double)(kp_now_ms() - st.oldest_ms) / 1000.0 : 0;
    kp_gauge_set(a->am.spool_oldest_age, age > 0 ? age : 0);
}

/* Once a second: refresh the spool gauges, and look at the spool for batches that appeared
 * outside this process (`kpctl dlq retry` re-queues dead letters while the adapter runs). */
static void on_stats_timer(uv_timer_t *t)
{
    struct adp *a = t->data;
    update_stats(a);
    if (!a->stopping)
        adp_deliver_kick(a->dlv);
}

/* ---- pulling --------------------------------------------------------------------------- */

static void on_poll_timer(uv_timer_t *t);

static void schedule_poll(struct adp *a, uint64_t ms)
{
    if (!a->stopping && !a->draining)
        uv_timer_start(&a->poll_timer, on_poll_timer, ms, 0);
}

static void poll_work(uv_work_t *w)
{
    struct adp *a = w->data;
    a->poll_rc = adp_pump_poll(a->pump, a->poll_err, sizeof a->poll_err);
}

static void finish_stop(struct adp *a);

static void poll_done(uv_work_t *w, int status)
{
    struct adp *a = w->data;
    a->polling = false;
    if (a->stopping) {
        finish_stop(a);
        return;
    }
    const struct adp_config *c = a->cfg;
    char q[600];
    if (status != 0 || a->poll_rc < 0) {
        int rc = status != 0 ? KP_EIO : a->poll_rc;
        kp_counter_inc(a->am.source_errors);
        atomic_store(&a->source_ok, false);
        a->fail_streak++;
        /* Log the first failure and then every 60th: a database down for an hour is one
         * fact, not 3600 lines. */
        if (a->fail_streak == 1 || a->fail_streak % 60 == 0)
            KP_WARN("source_failed", "adapter=%s scheme=%s driver=%s err=%s failures=%u msg=%s",
                    c->aid, c->scheme, c->driver, kp_err_name(rc), a->fail_streak,
                    kp_log_q(q, sizeof q, a->poll_err));
        schedule_poll(a, (uint64_t)c->poll_ms);
        return;
    }
    if (a->fail_streak) {
        KP_INFO("source_recovered", "adapter=%s scheme=%s driver=%s failures=%u", c->aid, c->scheme,
                c->driver, a->fail_streak);
        a->fail_streak = 0;
    }
    atomic_store(&a->source_ok, true);
    uint64_t seq = 0;
    int rc = adp_pump_store(a->pump, &seq);
    if (rc == KP_EFULL) {
        struct kp_spool_stats st;
        kp_spool_stats(a->sp, &st);
        a->full = true;
        atomic_store(&a->spool_ok, false);
        kp_counter_inc(a->am.spool_full);
        if (!a->full_logged) {
            KP_WARN("spool_full",
                    "adapter=%s scheme=%s seq=%" PRIu64 " depth=%" PRIu64 " bytes=%" PRIu64
                    " max_bytes=%lld msg=\"pulling stopped until acks free space\"",
                    c->aid, c->scheme, kp_spool_next_seq(a->sp), st.depth, st.bytes,
                    c->spool_max_bytes);
            a->full_logged = true;
        }
        update_stats(a);
        /* What fills the spool must be on its way, also batches another process put there
         * (kpctl dlq retry) while the window was empty: else nothing would ever free space. */
        adp_deliver_kick(a->dlv);
        return; /* resumed by on_freed */
    }
    if (rc != 0) {
        /* Logged by the pump with adapter, scheme and seq. Try again later. */
        schedule_poll(a, (uint64_t)c->poll_ms);
        return;
    }
    if (seq) {
        if (a->full_logged) {
            KP_INFO("spool_resumed", "adapter=%s scheme=%s seq=%" PRIu64, c->aid, c->scheme, seq);
            a->full_logged = false;
        }
        atomic_store(&a->spool_ok, true);
        adp_deliver_kick(a->dlv);
        update_stats(a);
    }
    schedule_poll(a, adp_pump_more(a->pump) ? 0 : (uint64_t)c->poll_ms);
}

static void on_poll_timer(uv_timer_t *t)
{
    struct adp *a = t->data;
    if (a->stopping || a->draining || a->polling || a->full)
        return;
    a->polling = true;
    a->work.data = a;
    if (uv_queue_work(a->loop, &a->work, poll_work, poll_done) != 0) {
        a->polling = false;
        schedule_poll(a, (uint64_t)a->cfg->poll_ms);
    }
}

/* Acks or dead letters freed spool space. */
static void on_freed(void *arg)
{
    struct adp *a = arg;
    update_stats(a);
    if (a->full && !a->stopping) {
        a->full = false;
        schedule_poll(a, 0);
    }
}

/* ---- life ------------------------------------------------------------------------------ */

static void release(struct adp *a)
{
    kp_spool_close(&a->sp);
    kp_metrics_destroy(&a->metrics);
    free(a);
}

static void handle_closed(struct adp *a)
{
    if (--a->open_handles == 0)
        release(a);
}

static void on_timer_closed(uv_handle_t *h)
{
    handle_closed(h->data);
}

static void on_deliver_closed(void *arg)
{
    handle_closed(arg);
}

int adp_start(uv_loop_t *loop, struct adp_config *cfg, struct adp **out, char *err, size_t errlen)
{
    *out = NULL;
    if (errlen)
        err[0] = 0;
    int rc = adp_config_check(cfg, err, errlen);
    if (rc != 0)
        return rc;
    /* CURVE keys (issue 6): checked before anything is opened, read again for the socket. */
    char pub[KP_KEY_Z85_LEN + 1] = "", sec[KP_KEY_Z85_LEN + 1] = "", srv[KP_KEY_Z85_LEN + 1] = "";
    bool curve = false;
    rc = adp_config_curve(cfg, pub, sec, srv, &curve, err, errlen);
    kp_keys_wipe(sec, sizeof sec);
    if (rc != 0)
        return rc;
    struct adp *a = kp_xcalloc(1, sizeof *a);
    a->loop = loop;
    a->cfg = cfg;
    a->source = adp_source_find(cfg->driver);
    atomic_init(&a->source_ok, true);
    atomic_init(&a->spool_ok, true);

    rc = kp_spool_open(cfg->spool, (uint64_t)cfg->spool_max_bytes, &a->sp);
    if (rc != 0) {
        snprintf(err, errlen, "spool: cannot open %s: %s", cfg->spool, kp_strerror(rc));
        free(a);
        return rc;
    }
    a->metrics = kp_metrics_new();
    adp_metrics_init(&a->am, a->metrics);
    {
        /* Prometheus "info" convention: who this adapter is, for joins in rules and for kpctl
         * status (aid, scheme and src are codes: nothing to escape). */
        char labels[256];
        snprintf(labels, sizeof labels, "aid=\"%s\",scheme=\"%s\",src=\"%s\",driver=\"%s\"",
                 cfg->aid, cfg->scheme, cfg->src, cfg->driver);
        kp_gauge_set(kp_metrics_gauge(a->metrics, "kaoping_adapter_info",
                                      "Always 1; labels name the adapter, its scheme and source",
                                      labels),
                     1);
    }

    struct adp_pump_opts po = {cfg->aid, cfg->scheme, cfg->src, (uint32_t)cfg->batch_max_obs};
    rc = adp_pump_open(a->source, adp_source_config(cfg, a->source), a->sp, &po, &a->am, &a->pump,
                       err, errlen);
    if (rc != 0) {
        release(a);
        return rc;
    }
    struct adp_deliver_opts dop = {
        .endpoint = cfg->collector,
        .aid = cfg->aid,
        .scheme = cfg->scheme,
        .inflight = (uint32_t)cfg->inflight,
        .ack_timeout_ms = cfg->ack_timeout_ms,
        .retry_min_ms = cfg->retry_min_ms,
        .retry_max_ms = cfg->retry_max_ms,
    };
    rc = kp_admin_open(cfg->admin, a->metrics, ready, a, &a->admin);
    if (rc != 0) {
        snprintf(err, errlen, "admin: cannot listen on %s: %s", cfg->admin, kp_strerror(rc));
        adp_pump_close(&a->pump);
        release(a);
        return rc;
    }
    int krc = 0;
    if (curve && (krc = adp_config_curve(cfg, pub, sec, srv, &curve, err, errlen)) == 0) {
        dop.curve_public = pub;
        dop.curve_secret = sec;
        dop.curve_serverkey = srv;
    }
    rc = krc ? krc : adp_deliver_open(loop, a->sp, &dop, &a->am, on_freed, a, &a->dlv);
    kp_keys_wipe(sec, sizeof sec); /* libzmq holds its own copy */
    if (rc != 0) {
        if (!krc)
            snprintf(err, errlen, "collector: cannot connect to %s: %s", cfg->collector,
                     kp_strerror(rc));
        kp_admin_close(&a->admin);
        adp_pump_close(&a->pump);
        release(a);
        return rc;
    }
    uv_timer_init(loop, &a->poll_timer);
    a->poll_timer.data = a;
    uv_timer_init(loop, &a->stats_timer);
    a->stats_timer.data = a;
    a->open_handles = 3; /* two timers and the delivery */
    uv_timer_start(&a->stats_timer, on_stats_timer, STATS_MS, STATS_MS);
    schedule_poll(a, 0);
    update_stats(a);

    struct kp_spool_stats st;
    kp_spool_stats(a->sp, &st);
    char cursor[512], q[600];
    if (kp_spool_cursor(a->sp, cursor, sizeof cursor) != 0)
        snprintf(cursor, sizeof cursor, "(long)");
    KP_INFO("started",
            "adapter=%s scheme=%s src=%s driver=%s collector=%s spool=%s next_seq=%" PRIu64
            " waiting=%" PRIu64 " dead=%" PRIu64 " cursor=%s admin_port=%d",
            cfg->aid, cfg->scheme, cfg->src, cfg->driver, cfg->collector, cfg->spool,
            kp_spool_next_seq(a->sp), st.depth, st.dead, kp_log_q(q, sizeof q, cursor),
            kp_admin_port(a->admin));
    *out = a;
    return 0;
}

/* Runs once no poll is in progress. */
static void finish_stop(struct adp *a)
{
    struct kp_spool_stats st;
    if (kp_spool_stats(a->sp, &st) == 0)
        KP_INFO("stopped",
                "adapter=%s scheme=%s next_seq=%" PRIu64 " waiting=%" PRIu64
                " msg=\"unacknowledged batches stay in the spool\"",
                a->cfg->aid, a->cfg->scheme, kp_spool_next_seq(a->sp), st.depth);
    adp_pump_close(&a->pump);
    uv_close((uv_handle_t *)&a->poll_timer, on_timer_closed);
    uv_close((uv_handle_t *)&a->stats_timer, on_timer_closed);
    adp_deliver_close(&a->dlv, on_deliver_closed, a);
}

void adp_stop(struct adp **ap)
{
    if (!ap || !*ap)
        return;
    struct adp *a = *ap;
    *ap = NULL;
    if (a->stopping)
        return;
    a->stopping = true;
    uv_timer_stop(&a->poll_timer);
    uv_timer_stop(&a->stats_timer);
    kp_admin_close(&a->admin);
    if (!a->polling)
        finish_stop(a);
    /* else poll_done() finishes the stop when the worker returns */
}

void adp_drain(struct adp *a)
{
    if (a->stopping || a->draining)
        return;
    a->draining = true;
    uv_timer_stop(&a->poll_timer);
    adp_deliver_drain(a->dlv);
}

size_t adp_inflight(const struct adp *a)
{
    return a->dlv ? adp_deliver_inflight(a->dlv) : 0;
}

int adp_admin_port(const struct adp *a)
{
    return a->admin ? kp_admin_port(a->admin) : -1;
}

struct kp_spool *adp_spool(struct adp *a)
{
    return a->sp;
}
