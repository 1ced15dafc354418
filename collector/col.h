/*
 * col: the collector daemon as a library. The collector is the ingress gateway of a network
 * zone: a ROUTER endpoint for adapters (PROTOCOL.md "Transport"), structural validation of
 * every frame, forwarding of valid batches to the broker with the routing envelope of
 * schemas/INTERNAL.md, and relaying of the scorer's acks and nacks back to the adapter that
 * sent the batch. It holds no durable state: adapters retransmit what was not acknowledged
 * (ARCHITECTURE.md guarantee 1). CURVE and ZAP grants come with issue 6; until then the
 * collector runs only with an explicit insecure flag.
 */
#ifndef COL_H
#define COL_H

#include <stdbool.h>
#include <uv.h>

#include "kp_config.h"

struct col_config {
    char *instance;
    char *log_level;
    char *listen;
    char *broker;
    char *admin;
    long long max_bytes;
    long long max_obs;
    long long max_inflight;
    long long hb_ms;
    bool insecure;
};

/* The collector's configuration table (kp_config.h). */
extern const struct kp_cfg_entry col_config_table[];

struct col;

/* Starts the collector on `loop`: binds the adapter endpoint, connects to the broker and
 * opens the admin endpoint. cfg is borrowed and must outlive the collector. Caller owns *out;
 * stop with col_stop(). Returns 0, KP_ECONFIG (insecure not set: CURVE is not implemented
 * yet), KP_EZMQ or KP_EIO. Loop thread only. */
int col_start(uv_loop_t *loop, const struct col_config *cfg, struct col **out);
/* The bound adapter endpoint (after tcp://...:* resolution). */
const char *col_endpoint(const struct col *c);
/* The admin HTTP port. */
int col_admin_port(const struct col *c);
/* Closes sockets and the admin endpoint; the struct is freed once the loop has run the close
 * callbacks. Sets *c to NULL. */
void col_stop(struct col **c);

/* Runs a collector until SIGINT/SIGTERM: the daemon's whole life for main(). */
int col_run(const struct col_config *cfg, uv_loop_t *loop);

#endif
