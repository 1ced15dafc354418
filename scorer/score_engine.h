/*
 * score_engine: the scoring engine, pure C with no I/O (no libpq, ZeroMQ, libuv or file
 * access except the scheme loader's read of its YAML file). It holds, for one scheme, the
 * latest revision of every observation that reached it, and keeps indicator scores, unit
 * totals, coverage, ranks and grades current incrementally. The scorer feeds it the
 * observations of a batch between score_engine_begin() and score_engine_commit() /
 * score_engine_rollback(), writes the changed cells it reports into PostgreSQL in the same
 * transaction, and rolls the engine back when that transaction fails, so the engine and the
 * database never disagree (ARCHITECTURE.md guarantees 2 and 3: scores are a function of the
 * set of latest revisions, whatever the order of arrival).
 *
 * Not thread-safe; one engine per scheme, used from one thread.
 */
#ifndef SCORE_ENGINE_H
#define SCORE_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kp_reason.h"

struct score_scheme;
struct score_engine;

/* ---- schemes (loaded from schemas/schemes/<id>.yaml, see schemas/SCHEMES.md) ------------ */

/* Loads and validates a scheme file. On failure returns KP_ESCHEME and err holds
 * "file:line: reason". Caller owns *out; destroy with score_scheme_destroy(). */
int score_scheme_load(const char *path, struct score_scheme **out, char *err, size_t errlen);
void score_scheme_destroy(struct score_scheme **s);

const char *score_scheme_id(const struct score_scheme *s);
const char *score_scheme_name(const struct score_scheme *s);

size_t score_scheme_n_groups(const struct score_scheme *s);
const char *score_scheme_group_code(const struct score_scheme *s, size_t g);
const char *score_scheme_group_name(const struct score_scheme *s, size_t g);

size_t score_scheme_n_units(const struct score_scheme *s);
const char *score_scheme_unit_code(const struct score_scheme *s, size_t u);
const char *score_scheme_unit_name(const struct score_scheme *s, size_t u);
size_t score_scheme_unit_group(const struct score_scheme *s, size_t u);
/* Index of a unit code, or -1. */
long score_scheme_unit_find(const struct score_scheme *s, const char *code);

/* Indicator tree: node 0 is the root (the total). */
size_t score_scheme_n_nodes(const struct score_scheme *s);
const char *score_scheme_node_code(const struct score_scheme *s, size_t n);
const char *score_scheme_node_name(const struct score_scheme *s, size_t n);
bool score_scheme_node_is_leaf(const struct score_scheme *s, size_t n);
/* Index of an indicator code (any node), or -1. */
long score_scheme_node_find(const struct score_scheme *s, const char *code);
/* A human description of a leaf's method and parameters, e.g.
 * "efficacy good=12 bad=6 base=60 span=40 clamp=none", for kpctl explain. */
const char *score_scheme_node_method(const struct score_scheme *s, size_t n);

/* Additions (engine owner): */
/* Parent of a node, -1 for the root. Adjustment kinds (score_scheme_node_is_adjustment) have
 * the root as parent but carry no weight: their points are added to or deducted from the
 * total. */
long score_scheme_node_parent(const struct score_scheme *s, size_t n);
/* True for an adjustment kind (method add, deduct or veto): a leaf the wire may target whose
 * cell score is the points it adds or deducts (per-kind cap applied), not a 0-100 score. */
bool score_scheme_node_is_adjustment(const struct score_scheme *s, size_t n);
/* Effective weight of node n for unit u (group applicability and per-unit overrides folded
 * in); 0 when the node does not apply to the unit. */
double score_scheme_node_weight(const struct score_scheme *s, size_t u, size_t n);
/* The scheme's year (periods of other years are refused as bad_period), 0 when open. */
int score_scheme_year(const struct score_scheme *s);

/* ---- engine ------------------------------------------------------------------------- */

/* One observation as the engine sees it (codes already copied out of the wire). */
struct score_obs {
    const char *src;
    const char *ref;
    uint64_t rev;
    const char *unit;
    const char *indicator;
    const char *period; /* PROTOCOL.md grammar, already validated */
    double value;
    double w;
    int64_t at; /* ms since epoch */
};

/* Caller owns *out; destroy with score_engine_destroy(). The scheme is borrowed and must
 * outlive the engine. Returns 0, KP_ENOMEM, or KP_EINVAL for a scheme of more than 65535
 * nodes. */
int score_engine_new(const struct score_scheme *s, struct score_engine **out);
void score_engine_destroy(struct score_engine **e);

/* Checks an observation against the scheme without applying it: KP_R_OK, unknown_unit,
 * unknown_indicator (not a leaf of the scheme), bad_period (a period kind the indicator does
 * not take), out_of_range (outside the leaf's declared bounds; for an event — an event input
 * or an adjustment kind — also |val| or w beyond 4e12, the range its exact sums take),
 * not_granted_indicator (also: a 65536th distinct source). msg gets a human reason. */
enum kp_reason score_engine_check(const struct score_engine *e, const struct score_obs *o,
                                  char *msg, size_t msg_len);

/* Starts a unit of work. Every apply until commit/rollback is undone by rollback. */
void score_engine_begin(struct score_engine *e);
/* Applies one observation (must have passed score_engine_check). A revision lower than or
 * equal to the one held for (src, ref) changes nothing. Returns KP_R_OK or the check's
 * reason. Outside a unit of work every score, total, rank and grade is current when it
 * returns. Inside one, apply records the observation and queues the cells it touches;
 * score_engine_changes() and score_engine_commit() bring everything up to date (each cell,
 * total and rank recomputed once per batch), and the read functions below see the state as
 * of begin or of the last score_engine_changes() until then. */
enum kp_reason score_engine_apply(struct score_engine *e, const struct score_obs *o);
void score_engine_commit(struct score_engine *e);
void score_engine_rollback(struct score_engine *e);

/* Additions (engine owner, issue 3): a batch applied without validating it twice.
 *
 * What score_engine_check_ex() resolved for one observation: the unit and leaf indices, the
 * period's index when the engine already knew it, and the unit, indicator and period pointers
 * it was given (compared as pointers, never dereferenced). The caller stores it next to the
 * observation and passes both to score_engine_apply_batch(). Plain data; fill it only through
 * score_engine_check_ex(). */
struct score_checked {
    const char *unit_p, *indicator_p, *period_p;
    uint32_t unit;
    uint16_t node;
    uint16_t period1; /* period index + 1, 0 when unknown (or beyond 65534) */
};

/* score_engine_check() that also fills *out (when it returns KP_R_OK; out may be NULL). Same
 * reasons and messages as score_engine_check(). The handle holds for this engine as long as
 * it lives, also across units of work and rollbacks. Does not block. */
enum kp_reason score_engine_check_ex(const struct score_engine *e, const struct score_obs *o,
                                     char *msg, size_t msg_len, struct score_checked *out);

/* Applies obs[0..n) in order; the same as calling score_engine_apply() on each, with the
 * same result, inside or outside a unit of work. chk (may be NULL) holds, for each obs[i], the
 * handle score_engine_check_ex() filled for it: then apply does not validate the observation
 * again (the fields of obs[i] must be those that were checked; a handle whose unit or
 * indicator is neither the same pointer nor the same code as obs[i]'s is ignored, and obs[i]
 * is validated in full). Either way it looks up the records of later observations ahead
 * (prefetch). With chk NULL every observation is validated as score_engine_apply() does.
 * reasons (may be NULL) gets each observation's result: KP_R_OK, or the check's reason for
 * one that did not pass (then it changed nothing). Returns the number of observations that
 * did not pass (0 when all passed their check). The strings of obs are borrowed for the call
 * only and must not change during it. Does not block. */
size_t score_engine_apply_batch(struct score_engine *e, const struct score_obs *obs,
                                const struct score_checked *chk, size_t n, enum kp_reason *reasons);

/* Evicted event records (issue 9: bounded memory). An event leaf's cells keep exact sums of
 * its events, so the engine needs an event's record only when a revision of it arrives. After
 * score_engine_evict_events() (on a new engine, before any apply) every commit drops the
 * event records the unit of work created or touched, and keeps their keys in a filter. The
 * caller owns the records from then on (the scorer: its observation table) and, in each unit
 * of work, before applying obs, passes score_engine_load() every stored revision of each
 * observation for which score_engine_maybe_cold() says true — or the engine counts that
 * observation as a new event. Value records stay in memory unless score_engine_evict_values()
 * (below). The scores are the same, bit for bit, as without eviction. */
void score_engine_evict_events(struct score_engine *e);
/* Whether o's (src, ref) may have a record the engine evicted: false for every key it holds
 * and for every key it never held but for a few (the filter's false positives, rare). Does
 * not block; o needs only src and ref. */
bool score_engine_maybe_cold(const struct score_engine *e, const struct score_obs *o);
/* Inside a unit of work: gives back a stored revision of an evicted record (the fields of the
 * observation that was applied). Returns true when the engine now holds the key (this
 * revision, or one it held already: pass a key's revisions highest first, and the first the
 * engine takes is the one it had applied), false when it does not take this revision (the
 * scheme refuses it, or it is a value and values are not evicted: it was never applied).
 * Changes no score; rollback drops it. */
bool score_engine_load(struct score_engine *e, const struct score_obs *o);

/* Reads back every record of the value cell (unit, node, period) that the engine evicted:
 * calls score_engine_load() with the stored revisions of each key that has a revision in that
 * cell (a key's revisions highest first, only those the engine had applied before the unit of
 * work, or before the chunk of a replay). Returns false when it could not (the database
 * failed): the engine then refuses the rest of the unit of work (score_engine_failed). */
typedef bool (*score_cell_loader)(void *ctx, struct score_engine *e, size_t unit, size_t node,
                                  const char *period);
/* Evicted value records (issue 9). A value cell needs its records only to find its next latest
 * when the latest leaves it (revised to an earlier `at`, or moved to another cell). After
 * score_engine_evict_values() (with score_engine_evict_events, on a new engine) every commit
 * also drops the value records that are not the latest of their cell, and keeps their keys in
 * the same filter: score_engine_maybe_cold() and score_engine_load() serve them as they serve
 * events. When the latest record of a cell that has evicted records is about to leave it, the
 * apply calls load for that cell first. The scores are the same, bit for bit. */
void score_engine_evict_values(struct score_engine *e, score_cell_loader load, void *ctx);
/* Whether a cell loader failed in the current unit of work: the applies after it changed
 * nothing, and the unit of work must be rolled back. */
bool score_engine_failed(const struct score_engine *e);

/* A changed indicator cell (any node of the tree, including inner nodes; not the root).
 * A cell that no longer exists (its last record moved away by a higher revision) is
 * reported with n_obs == 0 and value/score NAN: delete its row. Adjustment kinds
 * (score_scheme_node_is_adjustment) are cells too; their score is the points they add or
 * deduct (positive), not 0-100. */
struct score_cell_change {
    size_t unit;
    size_t node;
    const char *period;
    double value;   /* the leaf's input value (for inner nodes: NAN) */
    double score;   /* 0-100 */
    uint32_t n_obs; /* observations (latest revisions) behind it */
};

/* A changed unit total. A total that no longer exists is reported with rank == 0 (and
 * total 0, coverage 0, grade ""): delete its row. rank >= 1 for every existing total. */
struct score_total_change {
    size_t unit;
    const char *period;
    double total;
    double coverage;   /* share of the weight present, 0-1 */
    uint32_t rank;     /* within the unit's group, standard competition ranking (1,2,2,4) */
    const char *grade; /* "" when the scheme has no grades */
    bool vetoed;
};

/* Brings the scores up to date with the unit of work's observations, then reports every cell
 * and total changed since score_engine_begin(): calls cell_fn and total_fn (either may be
 * NULL) once per changed item, with its final state. Pointers are valid during the call
 * only. Call before commit; may be called more than once. */
void score_engine_changes(struct score_engine *e,
                          void (*cell_fn)(const struct score_cell_change *c, void *arg),
                          void (*total_fn)(const struct score_total_change *t, void *arg),
                          void *arg);

/* Additions (engine owner): read access, for recovery checks, kpctl and tests. Inside a unit
 * of work they see the state as of begin or of the last score_engine_changes(). */

/* Current total of a unit in a period: 0 and *out filled, or KP_ENOENT when there is none.
 * out->period points into the engine and stays valid while the engine lives. */
int score_engine_total(const struct score_engine *e, size_t unit, const char *period,
                       struct score_total_change *out);
/* Current cell of (unit, node, period): 0 and *out filled, or KP_ENOENT. */
int score_engine_cell(const struct score_engine *e, size_t unit, size_t node, const char *period,
                      struct score_cell_change *out);
/* The cells of nodes first .. first+n-1 of (unit, period), as score_engine_cell gives them (a
 * cell that does not exist: value and score NAN, n_obs 0), into value/score/n_obs (n each): 0,
 * or KP_ENOENT when the engine has no cell of (unit, period) or the range is not the scheme's. */
int score_engine_cells(const struct score_engine *e, size_t unit, const char *period, size_t first,
                       size_t n, double *value, double *score, uint32_t *n_obs);
/* Calls fn for every existing total (periods in first-seen order, units in scheme order). */
void score_engine_foreach_total(const struct score_engine *e,
                                void (*fn)(const struct score_total_change *t, void *arg),
                                void *arg);
/* Calls fn for every existing cell (not the root: see score_engine_total; score_engine_cell
 * answers for node 0 with the weighted part of the total before adjustments). */
void score_engine_foreach_cell(const struct score_engine *e,
                               void (*fn)(const struct score_cell_change *c, void *arg), void *arg);
/* Bytes the engine holds for its data (records, ref strings, event sums, cells, the unit of
 * work's logs), without the scheme and malloc's own overhead: what grows with the data. */
size_t score_engine_bytes(const struct score_engine *e);
/* Number of records (latest revisions of distinct (src, ref)) held, evicted ones included. */
size_t score_engine_n_records(const struct score_engine *e);
/* Number of records in memory. */
size_t score_engine_n_resident(const struct score_engine *e);

#endif
