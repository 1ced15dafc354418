/*
 * adp_source: the plugin contract between the adapter runtime and a source (the department
 * system it pulls from). A source lives in its own folder (adapters/sql/, later adapters/csv/,
 * adapters/http/) and exports exactly one `const struct adp_source` descriptor, listed once
 * in adp_registry.c (Fluent Bit's plugins/in_*). The runtime owns everything around it: the
 * spool, seq numbers, encoding, delivery, retransmits, metrics; a source only turns "what is
 * new since my cursor" into records plus the cursor after them (ARCHITECTURE.md "adapters/").
 *
 * The pull protocol, per round:
 *   1. poll(state, out)  — fills `out` with up to adp_out_room(out) records read after the
 *      source's committed position and, with adp_out_set_cursor(), the opaque text cursor
 *      that stands right after the last of them. It must NOT advance the committed position.
 *   2. the runtime encodes the records as one PROTOCOL.md batch and stores batch + cursor in
 *      the spool in one transaction (kp_spool_put), then calls
 *   3. ack(state) — the records of the last poll are durable: advance the committed position
 *      to the cursor of that poll.
 * If step 2 fails (spool full, I/O error, stop), ack is not called and the next poll starts
 * again from the committed position: after kill -9 the source restarts from the cursor
 * stored with the last spooled batch, so nothing is lost or duplicated (ARCHITECTURE.md
 * guarantee 1).
 *
 * Threads: init, ack and fini run on the adapter's loop thread; poll runs on a libuv worker
 * thread and may block (network, database). The runtime never runs two calls of one source
 * at the same time, and calls ack only after the poll it acknowledges has returned.
 */
#ifndef ADP_SOURCE_H
#define ADP_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kp_config.h"

/* One record as the source read it: text exactly as found, NULL when absent (SQL NULL, a
 * missing CSV cell or JSON key). The runtime converts and validates it (PROTOCOL.md
 * "Observation"); a record that fails validation is still sent so that the scorer refuses it
 * with a reason and a rejection row (ARCHITECTURE.md guarantee 4: nothing silently dropped). */
struct adp_rec {
    const char *u;   /* unit code */
    const char *i;   /* indicator code */
    const char *p;   /* period */
    const char *val; /* number: decimal or float text */
    const char *ref; /* the record's id in the source system */
    const char *rev; /* unsigned integer, optional */
    const char *at;  /* ms since the Unix epoch, optional */
    const char *w;   /* weight, optional */
};

/* What one poll hands back: records (copied in), the cursor after them, hints. Owned by the
 * runtime; a source only calls the functions below on the `out` it was given. */
struct adp_out;

/* Copies r into out. Strings longer than their PROTOCOL.md limit are cut to limit + 1 bytes,
 * which the scorer still refuses as too long, so a frame stays bounded whatever the source
 * holds. Returns 0, or KP_EFULL when out already holds adp_out_room() records. */
int adp_out_add(struct adp_out *o, const struct adp_rec *r);
/* Records the source may still add in this poll. */
size_t adp_out_room(const struct adp_out *o);
/* Records added so far. */
size_t adp_out_count(const struct adp_out *o);
/* The cursor after the last record (copied). NULL or never called: the stored cursor stays
 * as it is (records re-read from an overlap window, for instance). */
void adp_out_set_cursor(struct adp_out *o, const char *cursor);
/* More records are ready now: the runtime polls again at once instead of after poll_ms. */
void adp_out_set_more(struct adp_out *o, bool more);
/* How far the source's data lags behind its own clock, in seconds (metric
 * kaoping_adapter_watermark_lag_seconds). Negative or never called: unknown. */
void adp_out_set_lag(struct adp_out *o, double seconds);

/* What the runtime tells a source at init. Strings are borrowed for the source's lifetime. */
struct adp_source_env {
    const char *aid;        /* adapter id, for log lines */
    const char *scheme;     /* scheme, for log lines */
    const char *src;        /* PROTOCOL.md batch.src */
    uint32_t batch_max_obs; /* the most records one poll may return */
};

struct adp_source {
    const char *name;    /* the value of source.driver that selects it */
    const char *summary; /* one line for --help */
    /* The source's own keys, all under "source." (never "source.driver", which belongs to
     * the runtime), with offsets into its config struct of config_size bytes. The runtime
     * merges every source's table into the daemon's table; key names must be unique across
     * sources (adp_config_table() asserts it). Keys of sources other than the selected one
     * keep their defaults. */
    const struct kp_cfg_entry *config;
    size_t config_size;
    /* Checks the loaded config without touching the outside world (--check-config). May be
     * NULL. Returns 0 or KP_ECONFIG with err = "key: reason". */
    int (*check)(const void *cfg, char *err, size_t errlen);
    /* Creates the source's state from its config (borrowed; outlives the state) and the
     * cursor stored in the spool ("" on the first start). May block briefly (for instance to
     * validate a query when the source is reachable); an unreachable source is not an error
     * here: poll retries. Returns 0 and *state (the source owns it; freed by fini), or
     * KP_ECONFIG (err says why: the daemon does not start) or another KP_E*. */
    int (*init)(const struct adp_source_env *env, const void *cfg, const char *cursor, void **state,
                char *err, size_t errlen);
    /* Reads new records into out (see the pull protocol above). Returns the number of
     * records added (0: nothing new), or a negative KP_E* when the source failed; err then
     * says why (the runtime logs it once per failure and retries after poll_ms). Worker
     * thread; may block. */
    int (*poll)(void *state, struct adp_out *out, char *err, size_t errlen);
    /* The records of the last successful poll are durable in the spool with its cursor.
     * Loop thread. Returns 0 or a KP_E* (logged; the source stays usable). */
    int (*ack)(void *state);
    /* Frees the state and sets *state to NULL; accepts NULL. Loop thread. */
    void (*fini)(void **state);
};

#endif
