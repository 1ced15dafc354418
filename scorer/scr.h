/*
 * scr: the scorer daemon as a library (kp-scorer is its thin main). The scorer owns the
 * scoring state of one or more schemes: for every batch the broker routes to it
 * (schemas/INTERNAL.md ["bat", cid, rid, aid, seq, payload]) it checks each observation
 * against the scheme and, in ONE PostgreSQL transaction, deduplicates by (adapter, seq),
 * stores observations and rejections, and upserts the indicator and unit scores its engine
 * reports as changed; only after COMMIT does it answer the ack (ARCHITECTURE.md guarantees 1,
 * 2 and 4). At start-up, and after a reconnection whose last COMMIT is uncertain, it rebuilds
 * each engine from the stored observations, so engine state equals the database.
 *
 * Everything runs on one libuv loop; database calls block that loop, one batch at a time,
 * and ZeroMQ's queues are the backpressure.
 */
#ifndef SCR_H
#define SCR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "kp_buf.h"
#include "kp_config.h"

struct scr_config {
    char *instance; /* log instance; the scorer id is instance-<pid> */
    char *log_level;
    char *broker;      /* broker backend endpoint, DEALER connects */
    char *db_dsn;      /* db.dsn */
    char *db_dsn_file; /* db.dsn_file: a file holding the DSN (secrets out of the YAML) */
    char **schemes;    /* scheme YAML files */
    char *migrations;  /* dir of NNN_name.sql files; "" skips migrations */
    char *admin;       /* host:port of /metrics, /healthz, /readyz */
    long long hb_ms;
    long long max_bytes;
    long long max_obs;
    long long db_retry_max_ms; /* ceiling of the reconnection backoff */
};

/* The scorer's configuration table (kp_config.h); keys documented by --help. */
extern const struct kp_cfg_entry scr_config_table[];

/* The DSN to use: db.dsn, else the first line of db.dsn_file, else $KP_DB_DSN. Returns a heap
 * string (caller frees) or NULL with err filled. */
char *scr_config_dsn(const struct scr_config *cfg, char *err, size_t errlen);

/* --check-config and start-up validation beyond the table: instance is a code, a DSN is
 * available, every scheme file loads and no scheme id appears twice. Returns 0, KP_ECONFIG or
 * KP_ESCHEME with err ("file:line: reason"). cfg is a struct scr_config *. */
int scr_config_check(void *cfg, char *err, size_t errlen);

struct scr;
struct score_engine;

/* Starts the scorer on loop: loads the schemes, opens the admin endpoint and the DEALER to
 * the broker, and makes a first attempt at the database (migrations, scheme rows, replay of
 * the stored observations); when PostgreSQL is not up yet it keeps trying on a timer with
 * backoff, answering batches with nack scorer_unavailable meanwhile. cfg is borrowed and must
 * outlive the scorer. Caller owns *out; stop with scr_stop(). Returns 0, KP_ECONFIG,
 * KP_ESCHEME, KP_EZMQ, KP_EIO, or KP_EDB (a migration or scheme row failed for a reason other
 * than a lost connection: retrying would not help). Loop thread only; blocks while it talks
 * to the database. */
int scr_start(uv_loop_t *loop, const struct scr_config *cfg, struct scr **out);

/* Stops reading, closes the sockets, timers, admin endpoint and database connection. The
 * batch being processed (if any) has already finished: processing is synchronous on the
 * loop. The struct is freed once the loop has run the close callbacks. Sets *s to NULL;
 * accepts NULL. Loop thread only. */
void scr_stop(struct scr **s);

/* Runs a scorer until SIGINT/SIGTERM: the daemon's whole life for main(). Returns the
 * process exit code (0, or 1 when it could not start). */
int scr_run(const struct scr_config *cfg, uv_loop_t *loop);

/* ---- for tests and kpctl ------------------------------------------------------------- */

/* True once the database is connected and every engine is loaded. */
bool scr_ready(const struct scr *s);
/* The scorer id (DEALER routing id and reg.sid). */
const char *scr_sid(const struct scr *s);
int scr_admin_port(const struct scr *s);
/* The engine of a served scheme (read access: score_engine_total/_cell/_foreach_*), or NULL
 * when the scheme is not served or not loaded yet. Valid until the next batch or replay. */
const struct score_engine *scr_engine(const struct scr *s, const char *scheme);

enum scr_outcome {
    SCR_COMMITTED, /* ack dup:false after COMMIT */
    SCR_DUP,       /* ack dup:true with the original counts */
    SCR_NACKED,    /* nack: refused batch (retry:false) or scorer unavailable (retry:true) */
};

/* Processes one batch as if it had arrived from the broker with envelope adapter id `aid`
 * (aid_len bytes) and writes the reply payload (ack or nack, one PROTOCOL.md frame) into
 * reply (reset first). Exactly what the DEALER's receive callback does, minus the sockets.
 * Loop thread only; blocks on the database. */
enum scr_outcome scr_process(struct scr *s, const void *aid, size_t aid_len, const void *payload,
                             size_t len, struct kp_buf *reply);

struct scr_stats {
    uint64_t committed, dup, nacked;
    uint64_t stored, rejected; /* observations stored / refused in committed batches */
    uint64_t pg_errors;
    uint64_t replayed;           /* observations replayed into engines (all replays) */
    uint64_t replay_rows_synced; /* score rows a replay found different in the database */
    uint64_t replays;
    uint64_t reconnects;
};
void scr_get_stats(const struct scr *s, struct scr_stats *out);

#endif
