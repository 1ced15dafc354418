/*
 * adp_daemon: the adapter's life as a process (adp_run, called by kp-adapter's thin main):
 * start, install the SIGINT/SIGTERM handlers on the loop, run until a signal stops pulling
 * and closes everything cleanly; unanswered batches stay in the spool for the next start
 * (ARCHITECTURE.md guarantee 1). SIGTERM drains first: no new poll, no new batch sent, and the
 * batches in flight get up to drain_ms to be acked (fewer retransmits after a restart); a
 * second signal stops at once. SIGHUP reloads the configuration (kp_daemon_on_hup). Kept
 * apart from adp_runtime.c so that in-process tests link the runtime without the process
 * glue.
 */
#include <inttypes.h>
#include <stdio.h>

#include "adp.h"
#include "kp_daemon.h"
#include "kp_err.h"
#include "kp_log.h"
#include "kp_time.h"

#define DRAIN_CHECK_MS 20

struct run_ctx {
    uv_loop_t *loop;
    struct adp *adp;
    struct adp_config *cfg;
    struct kp_signals *sig;
    uv_timer_t drain;
    bool draining;
    uint64_t drain_until_ns;
};

static void stop_now(struct run_ctx *r)
{
    size_t left = r->adp ? adp_inflight(r->adp) : 0;
    if (r->draining) {
        KP_INFO("drained", "adapter=%s scheme=%s unanswered=%zu", r->cfg->aid, r->cfg->scheme,
                left);
        uv_close((uv_handle_t *)&r->drain, NULL);
    }
    r->draining = false;
    adp_stop(&r->adp);
    kp_signals_close(&r->sig);
}

static void on_drain_tick(uv_timer_t *t)
{
    struct run_ctx *r = t->data;
    if (adp_inflight(r->adp) == 0 || kp_mono_ns() >= r->drain_until_ns)
        stop_now(r);
}

static void on_stop_signal(void *arg)
{
    struct run_ctx *r = arg;
    if (!r->adp)
        return;
    if (r->draining) { /* a second signal: do not wait */
        stop_now(r);
        return;
    }
    size_t inflight = adp_inflight(r->adp);
    KP_INFO("stopping",
            "adapter=%s scheme=%s inflight=%zu drain_ms=%lld msg=\"signal received: pulling "
            "stops, the spool keeps what is unacknowledged\"",
            r->cfg->aid, r->cfg->scheme, inflight, r->cfg->drain_ms);
    if (inflight == 0 || r->cfg->drain_ms <= 0) {
        stop_now(r);
        return;
    }
    adp_drain(r->adp);
    r->draining = true;
    r->drain_until_ns = kp_mono_ns() + (uint64_t)r->cfg->drain_ms * 1000000u;
    uv_timer_init(r->loop, &r->drain);
    r->drain.data = r;
    uv_timer_start(&r->drain, on_drain_tick, DRAIN_CHECK_MS, DRAIN_CHECK_MS);
}

int adp_run(struct adp_config *cfg, uv_loop_t *loop)
{
    struct run_ctx r = {.loop = loop, .cfg = cfg};
    char err[600];
    int rc = adp_start(loop, cfg, &r.adp, err, sizeof err);
    if (rc != 0) {
        char q[700];
        KP_ERROR("start_failed", "adapter=%s scheme=%s err=%s msg=%s", cfg->aid ? cfg->aid : "",
                 cfg->scheme ? cfg->scheme : "", kp_err_name(rc), kp_log_q(q, sizeof q, err));
        return rc == KP_ECONFIG ? 2 : 1;
    }
    if (kp_signals_open(loop, on_stop_signal, kp_daemon_on_hup, &r, &r.sig) != 0) {
        KP_ERROR("signals_failed", "adapter=%s scheme=%s", cfg->aid, cfg->scheme);
        adp_stop(&r.adp);
        uv_run(loop, UV_RUN_DEFAULT);
        return 1;
    }
    uv_run(loop, UV_RUN_DEFAULT);
    return 0;
}
