/*
 * col: the collector daemon as a library. The collector is the ingress gateway of a network
 * zone: a ROUTER endpoint for adapters (PROTOCOL.md "Transport"), structural validation of
 * every frame, forwarding of valid batches to the broker with the routing envelope of
 * schemas/INTERNAL.md, and relaying of the scorer's acks and nacks back to the adapter that
 * sent the batch. It holds no durable state: adapters retransmit what was not acknowledged
 * (ARCHITECTURE.md guarantee 1). Under CURVE (ARCHITECTURE.md guarantee 5) the adapters'
 * public keys are authorised through ZAP against the key file curve.keys_file (kp_acl.h);
 * each batch's aid must equal the connection's ZAP User-Id (else nack bad_aid), its scheme
 * and src must be granted to that adapter (else nack not_granted_scheme), and observations of
 * indicators it is not granted travel to the scorer in the envelope's "refused" frame to be
 * stored as not_granted_indicator rejections while the others are stored. Grants are read
 * from the current key file for every batch; SIGHUP reloads it (col_reload_keys) without
 * dropping a connection. Plain TCP only with insecure: true / --insecure.
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
    /* CURVE (issue 6): the collector's own key pair, the broker's public key, and the
     * authorised adapters with their grants */
    char *curve_secret_file;
    char *curve_public_file;
    char *curve_server_public_file;
    char *curve_keys_file;
};

/* The collector's configuration table (kp_config.h). */
extern const struct kp_cfg_entry col_config_table[];

struct col;

/* Starts the collector on `loop`: loads the keys, registers its ZAP domain (kp_zap.h), binds
 * the adapter endpoint, connects to the broker and opens the admin endpoint. Each hop is
 * CURVE when its keys are configured (adapters: curve.secret_file + curve.keys_file; broker:
 * curve.secret_file + curve.server_public_file) and plain TCP otherwise only when insecure is
 * set. cfg is borrowed and must outlive the collector. Caller owns *out; stop with
 * col_stop(). Returns 0, KP_ECONFIG (keys missing without insecure, unreadable or
 * world-readable key files, a bad key file), KP_EZMQ or KP_EIO. Loop thread only. */
int col_start(uv_loop_t *loop, const struct col_config *cfg, struct col **out);
/* Loads curve.keys_file again and, when it is valid, makes it the one every later handshake
 * and batch is checked against; open connections stay (a removed key is refused on its next
 * connection; removed grants apply to the next batch). A bad file changes nothing. Logs one
 * line. Returns 0, or the load error. Loop thread only; blocks while it reads the file. */
int col_reload_keys(struct col *c);
/* The bound adapter endpoint (after tcp://...:* resolution). */
const char *col_endpoint(const struct col *c);
/* The admin HTTP port. */
int col_admin_port(const struct col *c);
/* Closes sockets and the admin endpoint; the struct is freed once the loop has run the close
 * callbacks. Sets *c to NULL. */
void col_stop(struct col **c);

/* Runs a collector until SIGINT/SIGTERM (SIGHUP: col_reload_keys, then the configuration's
 * reloadable keys): the daemon's whole life for main(). */
int col_run(const struct col_config *cfg, uv_loop_t *loop);

#endif
