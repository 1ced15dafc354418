/*
 * brk: the broker daemon as a library. The core router between collectors and scorers
 * (schemas/INTERNAL.md): scorers register the schemes they serve and heartbeat; each batch
 * goes by its scheme to the live scorer that registered it most recently; replies go back
 * to the collector and adapter named in the envelope. No live scorer → nack
 * `scorer_unavailable, retry:true`. Holds no durable state (ARCHITECTURE.md "broker").
 */
#ifndef BRK_H
#define BRK_H

#include <uv.h>

#include "kp_config.h"

struct brk_config {
    char *instance;
    char *log_level;
    char *frontend;
    char *backend;
    char *admin;
    long long hb_ms;
    long long max_bytes;
};

extern const struct kp_cfg_entry brk_config_table[];

struct brk;

/* Starts the broker on loop. cfg is borrowed. Caller owns *out; stop with brk_stop().
 * Returns 0, KP_EZMQ or KP_EIO. Loop thread only. */
int brk_start(uv_loop_t *loop, const struct brk_config *cfg, struct brk **out);
const char *brk_frontend_endpoint(const struct brk *b);
const char *brk_backend_endpoint(const struct brk *b);
void brk_stop(struct brk **b);
/* Runs a broker until SIGINT/SIGTERM. */
int brk_run(const struct brk_config *cfg, uv_loop_t *loop);

#endif
