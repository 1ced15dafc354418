/*
 * brk: the broker daemon as a library. The core router between collectors and scorers
 * (schemas/INTERNAL.md): scorers register the schemes they serve and heartbeat; each batch
 * goes by its scheme to the live scorer that registered it most recently; replies go back
 * to the collector and adapter named in the envelope. No live scorer → nack
 * `scorer_unavailable, retry:true`. Holds no durable state (ARCHITECTURE.md "broker").
 * Both endpoints are CURVE servers (issue 6) admitting, through the ZAP domain
 * KP_ZAP_DOMAIN_INTERNAL, the collectors' and scorers' public keys listed in curve.keys_file
 * (kp_acl.h, grants unused); plain TCP only with insecure: true / --insecure.
 */
#ifndef BRK_H
#define BRK_H

#include <stdbool.h>
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
    bool insecure;           /* plain TCP without keys (--insecure) */
    char *curve_secret_file; /* the broker's CURVE secret key (mode 0600) */
    char *curve_public_file; /* optional: checked against the secret */
    char *curve_keys_file;   /* authorised collectors and scorers (YAML, kp_acl.h) */
};

extern const struct kp_cfg_entry brk_config_table[];

struct brk;

/* Starts the broker on loop. cfg is borrowed. Caller owns *out; stop with brk_stop().
 * Returns 0, KP_ECONFIG (no CURVE keys without insecure, a bad key file), KP_EZMQ or KP_EIO.
 * Loop thread only. */
int brk_start(uv_loop_t *loop, const struct brk_config *cfg, struct brk **out);
const char *brk_frontend_endpoint(const struct brk *b);
const char *brk_backend_endpoint(const struct brk *b);
/* The admin HTTP port (the bound one when the admin endpoint was given port 0). */
int brk_admin_port(const struct brk *b);
void brk_stop(struct brk **b);
/* Loads curve.keys_file again (SIGHUP) and uses it for every later handshake; open
 * connections stay. A bad file changes nothing. Returns 0 or the load error. Loop thread. */
int brk_reload_keys(struct brk *b);
/* Runs a broker until SIGINT/SIGTERM (SIGHUP: brk_reload_keys + reloadable config). */
int brk_run(const struct brk_config *cfg, uv_loop_t *loop);

#endif
