/*
 * adp: the adapter daemon (kp-adapter) as a library. One adapter pulls one configured source
 * (a plugin, adp_source.h) into its durable spool (adp_pump) and delivers the spool to the
 * collector (adp_deliver), keeping each batch until the scorer's end-to-end ack
 * (ARCHITECTURE.md "adapters/", guarantee 1). The runtime schedules the source's polls on a
 * libuv worker thread every poll_ms, stops pulling while the spool is full, serves /metrics,
 * /healthz and /readyz, and on SIGTERM/SIGINT stops pulling and closes cleanly (unanswered
 * batches stay in the spool and are sent again on the next start).
 *
 * Configuration is one kp_config table: the runtime's keys (struct adp_config) followed by
 * every registered source's "source.*" keys; their values live in one allocation of
 * adp_config_size() bytes that starts with struct adp_config.
 */
#ifndef ADP_H
#define ADP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "adp_source.h"
#include "kp_config.h"

struct adp_config {
    char *instance;
    char *log_level;
    char *aid;       /* PROTOCOL.md batch.aid */
    char *scheme;    /* PROTOCOL.md batch.scheme */
    char *src;       /* PROTOCOL.md batch.src */
    char *collector; /* ZeroMQ endpoint of the collector */
    char *spool;     /* path of the SQLite spool file */
    char *admin;     /* host:port of the admin HTTP endpoint */
    long long spool_max_bytes;
    long long batch_max_obs;
    long long inflight;
    long long ack_timeout_ms;
    long long retry_min_ms;
    long long retry_max_ms;
    long long drain_ms; /* SIGTERM: wait this long for the acks of batches in flight */
    char *driver;      /* source.driver */
    long long poll_ms; /* source.poll_ms */
    /* CURVE to the collector (issue 6, PROTOCOL.md "Transport"); plain TCP only with insecure */
    bool insecure;
    char *curve_secret_file;        /* the adapter's secret key (mode 0600) */
    char *curve_public_file;        /* optional: checked against the secret */
    char *curve_server_public_file; /* the collector's public key */
    /* the sources' config blocks follow in the same allocation (adp_source_config) */
};

/* The sources kp-adapter knows (adp_registry.c), NULL-terminated. */
extern const struct adp_source *const adp_sources[];
const struct adp_source *adp_source_find(const char *name);

/* The daemon's whole configuration table (runtime keys + every source's keys), built once on
 * first call; static storage. Asserts that no two sources declare the same key. */
const struct kp_cfg_entry *adp_config_table(void);
/* Bytes of the configuration allocation (struct adp_config + the sources' blocks). */
size_t adp_config_size(void);
/* The config block of source s inside cfg. */
void *adp_source_config(struct adp_config *cfg, const struct adp_source *s);

/* Allocates a configuration holding the defaults. Caller owns it; free with
 * adp_config_destroy (which frees its strings). For tests and tools; kp-adapter's main gets
 * its allocation from kp_daemon_main. */
struct adp_config *adp_config_new(void);
void adp_config_destroy(struct adp_config **cfg);

/* The CURVE keys of the adapter -> collector hop (kp_keys_load_client): *curve with the keys
 * filled (wipe sec after use), or plain TCP when none are configured and insecure is set.
 * Returns 0 or KP_E* with err. */
int adp_config_curve(const struct adp_config *cfg, char pub[41], char sec[41], char srv[41],
                     bool *curve, char *err, size_t errlen);

/* Checks what the table cannot: codes, the driver, the source's own check. Returns 0 or
 * KP_ECONFIG with err = "key: reason". */
int adp_config_check(struct adp_config *cfg, char *err, size_t errlen);

struct adp;

/* Starts the adapter on loop: opens the spool, inits the source with the stored cursor,
 * connects to the collector (sending everything the spool still holds), opens the admin
 * endpoint and starts polling. cfg is borrowed and must outlive the adapter. Caller owns
 * *out; stop with adp_stop. Returns 0, KP_ECONFIG, KP_EIO (spool), KP_EZMQ, or the source's
 * init error; err says why. Loop thread. */
int adp_start(uv_loop_t *loop, struct adp_config *cfg, struct adp **out, char *err, size_t errlen);
/* Stops polling (waiting for a poll in progress), closes the socket, the admin endpoint, the
 * source and the spool; the struct is freed once the loop has run the close callbacks. Sets
 * *a to NULL; accepts NULL. Loop thread. */
void adp_stop(struct adp **a);

/* SIGTERM's first step: stops pulling (a poll in progress still stores its batch) and sending
 * new batches, while the batches in flight wait for their acks (adp_deliver_drain). Then call
 * adp_stop, when adp_inflight() is 0 or a deadline has passed. Loop thread. */
void adp_drain(struct adp *a);
/* Batches sent and not yet answered. */
size_t adp_inflight(const struct adp *a);

/* Introspection for tests and /readyz. */
int adp_admin_port(const struct adp *a);
struct kp_spool *adp_spool(struct adp *a);

/* Runs an adapter until SIGINT/SIGTERM: the daemon's whole life for main(). Returns the exit
 * code. */
int adp_run(struct adp_config *cfg, uv_loop_t *loop);

#endif
