/*
 * adp_daemon: the adapter's life as a process (adp_run, called by kp-adapter's thin main):
 * start, install the SIGINT/SIGTERM handlers on the loop, run until a signal stops pulling
 * and closes everything cleanly; unanswered batches stay in the spool for the next start
 * (ARCHITECTURE.md guarantee 1). Kept apart from adp_runtime.c so that in-process tests link
 * the runtime without the process glue.
 */
#include <stdio.h>

#include "adp.h"
#include "kp_daemon.h"
#include "kp_err.h"
#include "kp_log.h"

struct run_ctx {
    struct adp *adp;
    struct kp_signals *sig;
};

static void on_stop_signal(void *arg)
{
    struct run_ctx *r = arg;
    KP_INFO("stopping", "msg=\"signal received: pulling stops, the spool keeps what is "
                        "unacknowledged\"");
    adp_stop(&r->adp);
    kp_signals_close(&r->sig);
}

int adp_run(struct adp_config *cfg, uv_loop_t *loop)
{
    struct run_ctx r = {0};
    char err[600];
    int rc = adp_start(loop, cfg, &r.adp, err, sizeof err);
    if (rc != 0) {
        char q[700];
        KP_ERROR("start_failed", "adapter=%s scheme=%s err=%s msg=%s", cfg->aid ? cfg->aid : "",
                 cfg->scheme ? cfg->scheme : "", kp_err_name(rc), kp_log_q(q, sizeof q, err));
        return rc == KP_ECONFIG ? 2 : 1;
    }
    if (kp_signals_open(loop, on_stop_signal, NULL, &r, &r.sig) != 0) {
        KP_ERROR("signals_failed", "adapter=%s scheme=%s", cfg->aid, cfg->scheme);
        adp_stop(&r.adp);
        uv_run(loop, UV_RUN_DEFAULT);
        return 1;
    }
    uv_run(loop, UV_RUN_DEFAULT);
    return 0;
}
