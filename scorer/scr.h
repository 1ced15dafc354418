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
    long long lock_poll_ms; /* standby: interval of the attempts to take a scheme's lock */
    long long max_bytes;
    long long max_obs;
    long long db_retry_max_ms; /* ceiling of the reconnection backoff */
    /* alerts (issue 7, scr_alert.c) */
    char *alerts_pub;    /* ZeroMQ PUB endpoint of alert transitions and score changes, "" = off */
    char *alerts_am_url; /* Alertmanager base URL, "" = no delivery */
    long long alerts_tick_ms, alerts_resend_ms, alerts_resolved_ms, alerts_am_timeout_ms;
    /* CURVE on the scorer -> broker hop (issue 6); plain TCP only with insecure */
    bool insecure;
    char *curve_secret_file;        /* the scorer's secret key (mode 0600) */
    char *curve_public_file;        /* optional: checked against the secret */
    char *curve_server_public_file; /* the broker's public key */
    char *db_passfile;              /* libpq password file (mode 0600), as PGPASSFILE */
};

/* The scorer's configuration table (kp_config.h); keys documented by --help. */
extern const struct kp_cfg_entry scr_config_table[];

/* The DSN to use: db.dsn, else the first line of db.dsn_file, else $KP_DB_DSN. Returns a heap
 * string (caller frees) or NULL with err filled. */
char *scr_config_dsn(const struct scr_config *cfg, char *err, size_t errlen);

/* The CURVE keys of the scorer -> broker hop (issue 6): with curve.secret_file and
 * curve.server_public_file set, *curve = true and pub/sec/srv hold the scorer's key pair and
 * the broker's public key (wipe sec with kp_keys_wipe after use); with neither, *curve = false
 * when insecure is set. Returns 0, or KP_ECONFIG/KP_EIO with err (no CURVE keys without
 * insecure, one key without the other, an unreadable or group/world-accessible file). */
int scr_config_curve(const struct scr_config *cfg, char pub[41], char sec[41], char srv[41],
                     bool *curve, char *err, size_t errlen);
/* db.passfile: checks that the file is a regular file without group/other access and points
 * libpq at it (PGPASSFILE), so that the password stays out of the DSN, argv and logs. Returns
 * 0 (also when db.passfile is empty) or KP_ECONFIG with err. */
int scr_config_passfile(const struct scr_config *cfg, char *err, size_t errlen);

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

/* True once the database is connected and every scheme is active: its advisory lock held and
 * its engine loaded (a standby waiting for a lock is not ready). */
bool scr_ready(const struct scr *s);
/* True while this scorer serves `scheme`: it holds the scheme's lock and is registered. */
bool scr_active(const struct scr *s, const char *scheme);
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
/* scr_process with the envelope's optional "refused" frame (schemas/INTERNAL.md: [n, code]
 * pairs, e.g. observations whose indicator the adapter is not granted): each listed
 * observation is stored as a rejection with that code while the others are stored
 * (ARCHITECTURE.md guarantee 5). refused NULL / refused_len 0: none. */
enum scr_outcome scr_process_refused(struct scr *s, const void *aid, size_t aid_len,
                                     const void *payload, size_t len, const void *refused,
                                     size_t refused_len, struct kp_buf *reply);

/* The most batches stored in one transaction by scr_process_group. */
#define SCR_GROUP_MAX 16
/* A group is also closed once its frames reach this many bytes: all of a group is decoded at
 * once (about 14 times the frame for the observations), so 16 frames of max_bytes would take
 * hundreds of MB. A larger frame is a group of its own. */
#define SCR_GROUP_BYTES ((size_t)1 << 20)

/* One batch of a group for scr_process_group: the envelope's adapter id, the payload and the
 * optional refused frame are borrowed for the call; the answer is written into reply (reset
 * first) and its kind into out. */
struct scr_item {
    const void *aid;
    size_t aid_len;
    const void *payload;
    size_t len;
    const void *refused; /* NULL: none */
    size_t refused_len;
    struct kp_buf *reply;
    enum scr_outcome out;
};

/* Processes batches that arrived together (the DEALER's queue at the end of a loop turn; at
 * most SCR_GROUP_MAX). Each is checked and answered exactly as by scr_process_refused; the
 * batches of one scheme that pass the batch-level checks are then stored in ONE PostgreSQL
 * transaction (group commit): every batch row, observation and rejection, the engine applying
 * them in order, and the score rows and alert transitions of the whole group written once.
 * Each batch stays all-or-nothing (it commits with the group or not at all) and is answered
 * only after the COMMIT; a database failure nacks every batch of the group scorer_unavailable,
 * retry:true. Loop thread only; blocks on the database. */
void scr_process_group(struct scr *s, struct scr_item *items, size_t n);

struct scr_stats {
    uint64_t committed, dup, nacked;
    uint64_t stored, rejected; /* observations stored / refused in committed batches */
    uint64_t pg_errors;
    uint64_t replayed;           /* observations replayed into engines (all replays) */
    uint64_t replay_rows_synced; /* score rows a replay found different in the database */
    uint64_t replays;
    uint64_t reconnects;
    uint64_t locks_taken; /* scheme locks acquired (start-up and takeovers) */
};
void scr_get_stats(const struct scr *s, struct scr_stats *out);

#endif
