/*
 * scr_internal: what the scorer's files share and nobody else sees: the struct behind
 * struct scr, the per-scheme state, and the database steps of scr_db.c used by the batch path
 * (scr_batch.c) and the daemon shell (scr_run.c). Cross-file names carry the `scr__` prefix.
 */
#ifndef SCR_INTERNAL_H
#define SCR_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "kp_buf.h"
#include "kp_msg.h"
#include "kp_reason.h"
#include "scr.h"

struct kp_pg;
struct kp_pg_res;
struct kp_zsock;
struct kp_admin;
struct kp_metrics;
struct kp_counter;
struct kp_gauge;
struct kp_histogram;
struct score_scheme;
struct score_engine;
struct score_obs;
struct score_checked;

/* One scheme served by this scorer. It is served (batches scored, listed in reg) only while
 * `active`: the scorer holds the scheme's advisory lock in its current database session and
 * the engine has caught up with every stored observation (scr_lock.c). */
struct scr_scheme {
    struct score_scheme *scheme; /* owned */
    struct score_engine *engine; /* owned; NULL until the first replay */
    const char *id;              /* borrowed from scheme */
    bool locked;                 /* the advisory lock is held by the current session */
    bool active;                 /* locked, caught up and registered with the broker */
    /* The engine holds exactly the scheme's stored observations with id <= known_max_id
     * (-1: no engine). One writer per scheme (the lock holder) makes ids grow in commit order,
     * so whatever another scorer stored meanwhile is `id > known_max_id` (catch-up). */
    long long known_max_id;
    /* For the engine's cell loader (scr__db_load_cell): the scorer (set with the engine), and the
     * highest id the engine had applied before the current unit of work (the group's
     * known_max_id, a replay chunk's first id - 1). */
    struct scr *load_s;
    long long load_upto;
    /* Batches whose observations skip the direct COPY (scr_batch.c): a batch repeated a
     * stored (src, ref, rev) lately, so the next ones likely do too. */
    int copy_skip;
    bool need_sync; /* score rows not yet made equal to the engine since it was (re)built */
    /* indicator_cells (scr_cells.c): the layout id of this scheme file's node order, what the
     * scorer keeps of the scheme's rows (each cell's updated_at as committed; NULL until the
     * first sync) and, between a sync and its COMMIT, the copy that replaces it with the now()
     * of that transaction. */
    int layout;
    struct scr_cells *cells;
    struct scr_cells *cells_next;
    long long cells_next_now;
    /* unit_scores (scr_totals.c): each entry's updated_us as committed (NULL until the first
     * sync), and between a sync and its COMMIT the copy that replaces it */
    struct scr_totals *totals;
    struct scr_totals *totals_next;
    struct kp_gauge *m_active;
    struct kp_gauge *m_state_bytes, *m_records; /* scr__state_metrics */
};

/* Reusable buffers of the array parameters of the bulk statements (kp_pg_array_*). */
enum {
    /* observations, when a batch repeats a stored record (scr_batch.c) */
    SCR_A_OREF,
    SCR_A_OREV,
    SCR_A_OUNIT,
    SCR_A_OIND,
    SCR_A_OPERIOD,
    SCR_A_OVAL,
    SCR_A_OW,
    SCR_A_OX,
    SCR_A_OAT,
    /* rejections */
    SCR_A_RN,
    SCR_A_RREF,
    SCR_A_RCODE,
    SCR_A_RMSG,
    /* indicator_cells: parts written, parts deleted */
    SCR_A_IPERIOD,
    SCR_A_IUNIT,
    SCR_A_IBASE,
    SCR_A_IDPERIOD,
    SCR_A_IDUNIT,
    SCR_A_IDBASE,
    /* indicator_cell_log rows (scr_cells.c): each row's bucket, and the offset and count of its
     * units among all the rows' (SCR_A_IUNIT) */
    SCR_A_LBUCKET,
    SCR_A_LUOFF,
    SCR_A_LUCNT,
    /* unit_scores (scr_totals.c): the entries' unit, grade and vetoed (their numbers: scr.ubin),
     * the periods written and each one's offset and count among the entries */
    SCR_A_UUNIT,
    SCR_A_UGRADE,
    SCR_A_UVETO,
    SCR_A_UPERIODS,
    SCR_A_UOFF,
    SCR_A_UCNT,
    SCR_A_USEEN, /* the periods of changed totals, NUL-terminated one after another */
    SCR_A__COUNT
};

/* The score rows one engine unit of work changed, as array parameters. */
struct scr_changes {
    struct kp_buf *a; /* the scorer's SCR_A_* buffers */
    const struct score_scheme *scheme;
    struct scr_cells *cells;   /* the scheme's indicator_cells copy, changed in place */
    struct scr_totals *totals; /* the scheme's unit_scores times, changed in place */
    size_t n_cells, n_totals;  /* changed cells and totals */
    size_t n_periods;          /* unit_scores rows to write: periods in SCR_A_UPERIODS */
    long long now_us; /* the transaction's now() once cells or totals are written, else 0 */
    bool totals_sent; /* in a pipeline: the unit_scores statement awaits scr__db_collect_scores */
};

struct scr {
    uv_loop_t *loop;
    const struct scr_config *cfg;
    char *dsn;
    char sid[KP_CODE_MAX + 1];
    struct scr_scheme *schemes;
    size_t n_schemes;

    /* database */
    struct kp_pg *pg;
    bool db_ready;          /* connected, migrated, engines loaded */
    bool initialised;       /* migrations and scheme rows done once */
    bool need_replay;       /* engines may disagree with the database (uncertain COMMIT) */
    atomic_bool ready_flag; /* db_ready, for the admin thread */
    uint64_t backoff_ms;
    int fatal; /* KP_E* that makes retrying pointless (bad migration), else 0 */

    /* loop */
    uv_timer_t db_timer, hb_timer, lock_timer;
    bool timers_init;
    bool hb_running;
    struct kp_zsock *dealer;
    struct kp_admin *admin;
    int closing;

    /* metrics */
    struct kp_metrics *metrics;
    struct kp_counter *m_committed, *m_dup, *m_nacked, *m_stored, *m_pg_errors;
    struct kp_counter *m_loaded; /* rows read back for the engine (scr__db_load_cold, _cell) */
    struct kp_counter *m_rej[KP_R__COUNT];
    struct kp_histogram *m_commit_s, *m_batch_size;
    struct kp_gauge *m_db_up;
    /* operations (issue 8): alerts by scheme and state (n_schemes x SCR_ALERT_STATES, from the
     * alert table every SCR_ALERT_TICKS heartbeats), the broker connection */
    struct kp_gauge **m_alerts;
    struct kp_gauge *m_broker_up;
    unsigned hb_ticks;

    /* the DEALER's queue (group commit): batches received in this loop turn, stored together
     * by the check handle at its end (or as soon as SCR_GROUP_MAX wait, or their payloads
     * reach SCR_GROUP_BYTES); frames copied */
    struct scr_pend {
        struct kp_buf cid, rid, aid, seq, payload, refused;
        bool has_refused;
        struct kp_buf reply;
    } pend[SCR_GROUP_MAX];
    size_t n_pend;
    size_t pend_bytes; /* their payloads */
    uv_check_t flush_check;
    uint64_t last_hb_ms; /* kp_mono_ns() in ms at the last heartbeat round (reg to the broker) */
    /* scratch, reused batch after batch */
    struct score_obs *so;      /* the batch's accepted observations, as checked */
    struct score_checked *chk; /* their check handles (score_engine_apply_batch) */
    enum kp_reason *so_reason; /* what applying each gave */
    size_t n_so, cap_so;
    struct kp_buf a[SCR_A__COUNT];
    struct kp_buf bin[5];  /* binary arrays of indicator_cells and _log rows (scr_cells.c) */
    struct kp_buf ubin[4]; /* binary arrays of unit_scores rows (scr_totals.c) */
    struct kp_buf json;    /* one observation's x as JSON */
    struct kp_buf copy;    /* a batch's observation rows, binary COPY data (scr_batch.c) */
    /* The group's COPY, ended early for a read-back (scr__copy_pause), failed: the group's
     * step ("observation", or the conflict's), else NULL (scr_batch.c). */
    const char *copy_step;
    struct kp_buf reg;     /* reg frame */

    struct scr_stats stats;

    struct scr_alerts
        *alerts; /* issue 7: evaluators, timer, PUB, Alertmanager sender (scr_alert.c) */
};

/* ---- scr_batch.c ------------------------------------------------------------------------ */

/* Ends the group's COPY, when one is open, and waits for it, so that a read-back can run on
 * the connection (the batches after it open a new one). Returns 0 or KP_EDB (s->copy_step
 * says how the COPY failed). */
int scr__copy_pause(struct scr *s);

/* ---- scr_db.c --------------------------------------------------------------------------- */

/* Upserts the kp_scheme, kp_group, kp_unit and kp_indicator rows of a scheme in one
 * transaction (bulk, unnest) and sets sch->layout (indicator_layout, found or added). Returns
 * 0 or KP_EDB (err filled). */
int scr__db_sync_scheme(struct scr *s, struct scr_scheme *sch, char *err, size_t errlen);

/* Inside the engine's unit of work, before so[0..n) are applied: reads back from the
 * observation table (rows up to id upto: what e has applied) every revision of the records e
 * evicted that these observations may revise (score_engine_maybe_cold) and gives them to e
 * (score_engine_load). Returns 0 or KP_EDB. */
int scr__db_load_cold(struct scr *s, const char *scheme, struct score_engine *e,
                      const struct score_obs *so, size_t n, long long upto);
/* Observations per unit of work of the replay (5000; tests make it small). */
extern int scr__replay_chunk;
/* The engine's score_cell_loader (ctx: the scr_scheme): every stored revision, up to
 * load_upto, of the keys that have one in the value cell, given back to the engine. */
bool scr__db_load_cell(void *ctx, struct score_engine *e, size_t unit, size_t node,
                       const char *period);
/* Their statements and the replay's, for the plan tests: $1 scheme, $2 the id up to which
 * rows are read (after which, for the replay); then $3 srcs, $4 refs (cold), $3 unit,
 * $4 indicator, $5 period (cell) or $3 the chunk's size (replay). */
extern const char scr__sql_cold[];
extern const char scr__sql_cell[];
extern const char scr__sql_replay[];
/* Brings the engine of sch up to date with the database: a full replay (every stored
 * observation of the scheme, in id order, in chunks) into a new engine, which evicts its event
 * records and the value records that are not their cell's latest (score_engine_evict_events,
 * score_engine_evict_values), when there is none or `full`; else the observations stored
 * after known_max_id, applied in place (a standby following the active scorer, or a takeover). With
 * `sync`, when the engine was rebuilt or took rows since the last sync, the scheme's score rows are
 * then made equal to the engine in one transaction (rows that differ rewritten, rows the engine
 * does not hold deleted: a scheme file changed between runs). Returns 0 or KP_EDB/KP_ENOMEM (err
 * filled); on failure the engine still holds a consistent prefix and a later call completes the
 * work. Adds the observations applied to *applied when applied != NULL. */
int scr__db_catch_up(struct scr *s, struct scr_scheme *sch, bool full, bool sync, uint64_t *applied,
                     char *err, size_t errlen);

/* Collects every change of the engine's current unit of work into s->a (score arrays). */
void scr__collect_changes(struct scr *s, struct scr_scheme *sch, struct scr_changes *ch);

/* Writes the indicator_cells rows the unit of work touched (scr__cells_write) and the
 * unit_scores row of each period with a changed total, whole (rewritten where different,
 * deleted when the period has no total left); sets
 * ch->now_us. Adds the number of rows written or deleted to *rows when rows != NULL. Returns
 * 0 or KP_EDB; then the caller rolls back (scr__cells_rollback with the engine). */
int scr__db_write_scores(struct scr *s, struct scr_scheme *sch, struct scr_changes *ch,
                         long long *rows);
/* Inside a pipeline (kp_pg_pipeline_begin), scr__db_write_scores only sends its statements, and
 * this collects their results afterwards, in the order sent (rows, ch->now_us as said there).
 * Outside one it has nothing to collect. Returns 0 or KP_EDB. */
int scr__db_collect_scores(struct scr *s, struct scr_scheme *sch, struct scr_changes *ch,
                           long long *rows);

/* ---- scr_totals.c ----------------------------------------------------------------------- */

struct score_total_change;
/* What the scorer keeps of one scheme's unit_scores rows (migration 008): each entry's
 * updated_us as committed. */
struct scr_totals;
void scr__totals_destroy(struct scr_totals **t);
size_t scr__totals_bytes(const struct scr_totals *t);
/* score_engine_changes' total callback (arg: struct scr_changes): counts the total, adds its
 * period to those to write, and marks its entry as changed by the transaction. */
void scr__totals_on_total(const struct score_total_change *t, void *arg);
/* score_engine_foreach_total's callback for a sync: counts, and adds the period. */
void scr__totals_on_any(const struct score_total_change *t, void *arg);
/* The arrays of the periods added (SCR_A_USEEN): every existing total of each, from the
 * engine, into s->a and s->ubin; sets ch->n_periods. */
void scr__totals_gather(struct scr *s, struct scr_scheme *sch, struct scr_changes *ch);
/* Writes the gathered periods' rows whole (deletes a period's row when it has no total);
 * adds the rows written or deleted to *rows when rows != NULL, sets ch->now_us. 0 or KP_EDB. */
int scr__totals_write(struct scr *s, struct scr_scheme *sch, struct scr_changes *ch,
                      long long *rows);
/* In a pipeline, scr__totals_write sends and sets ch->totals_sent; this collects. */
int scr__totals_collect(struct scr *s, struct scr_changes *ch, long long *rows);
/* The transaction ended: a committed one's changed entries take now_us, else their time
 * before. */
void scr__totals_end(struct scr_totals *t, bool committed, long long now_us);
/* A sync, in its transaction: makes the scheme's rows equal to the gathered periods (all the
 * engine's), rows that differ rewritten (an equal entry keeps its time), rows of other periods
 * deleted; reads the times back into sch->totals_next. Adds the rows touched to *rows. */
int scr__totals_sync(struct scr *s, struct scr_scheme *sch, long long *rows);
/* After the sync's COMMIT (or its failure): sch->totals_next replaces sch->totals (or goes). */
void scr__totals_sync_done(struct scr_scheme *sch, bool committed);

/* ---- scr_cells.c ------------------------------------------------------------------------ */

struct score_cell_change;
/* What the scorer keeps of one scheme's indicator_cells rows (migration 005) and
 * indicator_cell_log (007): each cell's updated_at as committed, per (unit, period) its rows in
 * the log and the parts behind it, the rows' parts the unit of work changed and its undo log. Owned
 * by its scr_scheme; destroy with scr__cells_destroy (NULL accepted, nulls the pointer). */
struct scr_cells;
void scr__cells_destroy(struct scr_cells **c);
/* Bytes the copy holds (rows, their index, the undo log, the table of updated_at values). */
size_t scr__cells_bytes(const struct scr_cells *c);
/* Entries of the copy's table of updated_at values (those cells hold and, until its next
 * collection, those none holds any more); the collection runs once the table has doubled and
 * holds at least scr__cells_times_min (4096; a variable for tests). */
size_t scr__cells_n_times(const struct scr_cells *c);
extern size_t scr__cells_times_min;
/* Sets the scheme's state gauges: engine and copy bytes, records held. */
void scr__state_metrics(struct scr_scheme *sch);
/* A unit of work on the copy: begin, the engine's changed cells (score_engine_changes'
 * cell_fn, arg: a struct scr_changes), scr__cells_write, then commit with the transaction's
 * now() or rollback (the copy is as before begin). */
void scr__cells_begin(struct scr_cells *c);
void scr__cells_on_cell(const struct score_cell_change *ch, void *arg);
void scr__cells_commit(struct scr_cells *c, long long now_us);
void scr__cells_rollback(struct scr_cells *c);
/* Writes what the unit of work changed, with the engine's current cells (sch->engine): per
 * log key (period, bucket of units) it changed, a row of indicator_cell_log with the changed
 * cells (migration 009); or, once the key has scr__cells_log_max rows in the log, the parts of
 * its units changed since they were last written whole (a fold), deleting those with no cell
 * left and the key's log rows.
 * A sync writes the parts scr__cells_sync marked whole. Statements of at most scr__write_rows
 * rows. Adds the rows written or deleted to *rows (may be NULL); *now_us: the transaction's
 * now() in µs. Returns 0 or KP_EDB. */
/* Rows per statement of scr__cells_write (128). */
extern size_t scr__write_rows;
/* Transactions that write a log key (period, bucket) rows before its fold (32, up to twice that
 * by a hash of the key; 0: every write is a fold, as before migration 007). A variable for
 * tests. */
extern size_t scr__cells_log_max;
/* Units per log bucket (migration 009): a transaction writes one log row per (period, bucket)
 * it changed, and a bucket's rows fold together (16; 0: a bucket per unit; a variable for
 * tests). */
extern size_t scr__cells_log_units;
/* Cells per log row (240: a row within a page); a key's cells of a transaction beyond that go
 * in further rows. A variable for tests. */
extern size_t scr__cells_log_row_cells;
int scr__cells_write(struct scr *s, struct scr_scheme *sch, bool sync, long long *rows,
                     long long *now_us);
/* In a pipeline, scr__cells_write leaves its statements' results outstanding (but for a
 * sync's); this collects them, as scr__cells_write would have. 0 or KP_EDB. */
int scr__cells_collect(struct scr *s, struct scr_scheme *sch, long long *rows, long long *now_us);
/* Inside the caller's transaction: builds a new copy from the engine, reads the scheme's rows
 * and writes those that differ from the engine (or are in another layout), deletes the rows
 * the engine does not hold; per cell, updated_at is kept when the cell is unchanged. The new
 * copy replaces sch->cells at scr__cells_sync_done(sch, true) after COMMIT; false drops it.
 * Returns 0 or KP_EDB. */
int scr__cells_sync(struct scr *s, struct scr_scheme *sch, long long *rows);
void scr__cells_sync_done(struct scr_scheme *sch, bool committed);

/* Logs a database failure once (code, SQLSTATE, message), counts it, rolls back when the
 * connection still works and, when it is lost, marks the scorer not ready and schedules a
 * reconnection. */
void scr__db_failed(struct scr *s, const char *what, const char *ctx);

/* Rolls back the open transaction when the connection still works. */
void scr__db_rollback(struct scr *s);

/* ---- scr_run.c -------------------------------------------------------------------------- */

/* Schedules a (re)connection attempt after the current backoff. */
void scr__db_schedule(struct scr *s);
void scr__set_ready(struct scr *s, bool ready);
/* Sends ["reg", {sid, schemes: the active ones}] to the broker (possibly none: the broker then
 * drops this scorer's routes). */
void scr__send_reg(struct scr *s);

/* ---- scr_lock.c ------------------------------------------------------------------------- */

/* After (re)connecting: tunes the session (server-side TCP keepalives, so that a vanished
 * scorer host releases its locks) and tries to take every scheme's lock, catching each taken
 * scheme up. Returns 0 or KP_EDB with err (a lost connection: the caller retries). */
int scr__lock_acquire(struct scr *s, char *err, size_t errlen);
/* The database session is gone (or about to be reset): every lock with it. */
void scr__lock_lost(struct scr *s);
/* Starts the standby timer (lock_poll_ms) when a scheme is not locked, stops it otherwise. */
void scr__lock_timer_update(struct scr *s);
/* The hb tick of an active scorer: a cheap statement proves the lock session is still alive
 * before the scorer re-registers (split brain guard for an idle scorer). Returns true when the
 * session is alive. */
bool scr__lock_probe(struct scr *s);

#endif
