/*
 * score_engine: the scoring engine proper. It keeps, for one scheme, the latest revision of
 * every observation (one record per (src, ref) in an open-addressing map), attaches each
 * record to the cell (unit, leaf, period) it targets, and derives from the records the
 * leaf's input value and score, the cells of the coarser periods the scheme derives, the
 * group-relative rescoring, the weighted rollup with coverage, adjustments, veto, grades and
 * ranks — as a function of the set of latest revisions, whatever the order of arrival
 * (ARCHITECTURE.md guarantees 2 and 3).
 *
 * An apply updates the record and the exact sums it feeds and queues its cell; the flush
 * (flush(): at score_engine_changes(), at commit, and at the end of every apply made outside
 * a unit of work) brings the rest up to date in dependency order, each item once, so a node
 * that many observations of a batch share is recomputed once (issue 3 "Incremental"):
 *  - a value leaf holds its records in a list with the winner — the greatest (at, src, ref)
 *    — at the head, so a new record costs one comparison; only removing the winner rescans;
 *  - an event leaf (count/sum/avg/rate, adjustments) keeps exact integer sums: each event's
 *    val and w count in micro-units (round(x·1e6), |x| ≤ 4e12, else out_of_range), summed in
 *    192-bit two's complement, so a revision subtracts the old contribution and adds the new
 *    one exactly, and the pooled cells of coarser periods get the same deltas;
 *  - a derived cell of a value leaf follows its finer cells in O(1): `latest` keeps the latest
 *    present finer period, `sum`/`avg` an exact fixed-point sum (2^-64) of the finer values;
 *  - a changed leaf queues its parent; inner nodes are recomputed from their children in
 *    scheme order (adjacent cells: breadth-first layout), deepest level first, and a node that
 *    does not change queues nothing: a fixed-threshold change costs O(tree depth);
 *  - a group-relative leaf re-scores its group in that period; ranks are recomputed once per
 *    changed (period, group).
 * Every value that is not an exact integer sum is recomputed from its inputs in a canonical
 * order, never patched by subtraction, so the state is the same bit for bit whatever the
 * order of arrival (test_score_engine's permutation tests).
 *
 * Rollback undoes the records the unit of work changed (exactly: the sums are integers),
 * restores every cell and total from the log of their state at first touch — which is also
 * what score_engine_changes() compares against — and rebuilds the derived value-leaf sums
 * from the restored finer cells.
 *
 * score_engine_apply_batch() applies the observations score_engine_check_ex() accepted
 * without validating them again, and looks the records and cells of later observations up
 * ahead (prefetch), as the flush does for the cells it has queued: at the scorer's batch sizes
 * the engine waits on memory as much as it computes (docs/BENCHMARKS.md, round 2).
 *
 * Memory (docs/BENCHMARKS.md): the cells of a (unit, period) are one dense array of 24-byte
 * cells; records (56 bytes, short refs inline), the events' exact sums (56 bytes) and longer
 * refs live in chunked arrays addressed by 32-bit indices. The derived sum and avg cells of
 * value leaves keep no sums: they add up their finer cells when one changes (derived_sum).
 *
 * Evicted records (score_engine_evict_events, docs/BENCHMARKS.md rounds 6 and 7): an event's
 * record matters only to a later revision of it (its sums hold what it counts), and a value
 * record that is not its cell's latest only once the latest leaves (the head's count keeps it).
 * So commit drops the event records of the unit of work and, with score_engine_evict_values,
 * the value records that are not their cell's latest; the last records fill the holes, the
 * unit of work's own refs are packed at once (arena_pack_tail), the older ones' now and then
 * (arena_compact), and the keys go into a Bloom filter (score_bloom.c). The
 * caller gives a record back (score_engine_load) before it applies a revision the filter may
 * concern; a latest that leaves a cell with evicted records has the cell loader give them back
 * first (cell_ready); a rollback drops what was given back. A key is always either in memory or
 * in the filter.
 */
#include "score_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kp_err.h"

/* Event values and weights are counted in micro-units; beyond this magnitude they are
 * refused (out_of_range) so that round(x·1e6) fits an int64 and the sums cannot overflow. */
#define EVENT_Q   1e6
#define EVENT_MAX 4e12

#define NONE           UINT32_MAX
#define REF_INLINE_MAX 11               /* refs up to this length live in the record */
#define REF_INLINE     0x80000000u      /* score_rec.meta */
#define MAX_NODES      65535            /* score_rec.node */
#define MAX_SRCS       65535            /* score_rec.src: distinct sources an engine takes */
#define MAX_N_OBS      ((1u << 29) - 1) /* score_cell.n_obs saturates */

/* ---- exact sums: 192-bit two's complement -------------------------------------------------- */

struct acc {
    uint64_t w[3];
};

static void mul64(uint64_t a, uint64_t b, uint64_t *lo, uint64_t *hi)
{
    uint64_t a0 = a & 0xffffffffu, a1 = a >> 32, b0 = b & 0xffffffffu, b1 = b >> 32;
    uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
    uint64_t mid = (p00 >> 32) + (p01 & 0xffffffffu) + (p10 & 0xffffffffu);
    *lo = (p00 & 0xffffffffu) | (mid << 32);
    *hi = p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
}

static void neg3(uint64_t b[3])
{
    b[0] = ~b[0];
    b[1] = ~b[1];
    b[2] = ~b[2];
    if (++b[0] == 0 && ++b[1] == 0)
        ++b[2];
}

static inline void acc_add_bits(struct acc *a, const uint64_t b[3]);

/* a += sign · x · y */
static inline void acc_add(struct acc *a, int64_t x, int64_t y, int sign)
{
    uint64_t ux = x < 0 ? 0 - (uint64_t)x : (uint64_t)x;
    uint64_t uy = y < 0 ? 0 - (uint64_t)y : (uint64_t)y;
    uint64_t b[3] = {0, 0, 0};
    mul64(ux, uy, &b[0], &b[1]);
    if (((x < 0) != (y < 0)) != (sign < 0))
        neg3(b);
    acc_add_bits(a, b);
}

/* A deterministic double of the integer (same integer, same double). */
static inline double acc_double(const struct acc *a)
{
    uint64_t m[3] = {a->w[0], a->w[1], a->w[2]};
    bool neg = m[2] >> 63;
    if (neg)
        neg3(m);
    const double two64 = 18446744073709551616.0;
    double d = ((double)m[2] * two64 + (double)m[1]) * two64 + (double)m[0];
    return neg ? -d : d;
}

static bool acc_positive(const struct acc *a)
{
    return !(a->w[2] >> 63) && (a->w[0] | a->w[1] | a->w[2]) != 0;
}

/* a += sign · x (x a 64-bit integer) */
static inline void acc_add1(struct acc *a, int64_t x, int sign)
{
    uint64_t v = sign < 0 ? 0 - (uint64_t)x : (uint64_t)x;
    /* -x overflows only for INT64_MIN, beyond the event range (|q| <= 4e18) */
    uint64_t ext = (sign < 0 ? x > 0 : x < 0) ? ~(uint64_t)0 : 0;
    uint64_t b[3] = {v, ext, ext};
    acc_add_bits(a, b);
}

/* llround(x · 1e6) for |x| <= EVENT_MAX (so |x · 1e6| < 2^63), without the call: the integer
 * part by truncation, then one step away from zero when the rest is half or more. */
static inline int64_t quantize(double x)
{
    double r = x * EVENT_Q;
    int64_t q = (int64_t)r;
    double f = r - (double)q; /* exact */
    if (f >= 0.5)
        q++;
    else if (f <= -0.5)
        q--;
    return q;
}

static void acc_add_bits(struct acc *a, const uint64_t b[3])
{
    uint64_t carry = 0;
    for (int i = 0; i < 3; i++) {
        uint64_t s = a->w[i] + b[i];
        uint64_t c1 = s < b[i];
        uint64_t t = s + carry;
        uint64_t c2 = t < carry;
        a->w[i] = t;
        carry = c1 | c2;
    }
}

/* The fixed-point integer of x at scale 2^64, truncated toward zero below 2^-64 and saturated
 * at ±2^100: a function of x alone, so sums of them are exact and order-free. */
#define FIX_SCALE 18446744073709551616.0 /* 2^64 */
static void acc_add_fixed(struct acc *a, double x, int sign)
{
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    int ex = (int)((bits >> 52) & 0x7ff);
    uint64_t M = bits & ((1ull << 52) - 1);
    if (ex == 0x7ff && M) /* NaN */
        return;
    if (ex == 0)
        ex = 1; /* subnormal */
    else
        M |= 1ull << 52;
    if (!M)
        return;
    /* |x| = M · 2^(ex − 1075); saturate at 2^100 = 2^52 · 2^48 */
    if (ex > 1123 || (ex == 1123 && M > (1ull << 52))) {
        M = 1ull << 52;
        ex = 1123;
    }
    int shift = ex - 1075 + 64;
    uint64_t b[3] = {0, 0, 0};
    if (shift <= -64)
        return;
    if (shift < 0) {
        b[0] = M >> -shift;
    } else {
        int limb = shift / 64, bit = shift % 64;
        b[limb] = M << bit;
        if (bit && limb + 1 < 3)
            b[limb + 1] = M >> (64 - bit);
    }
    if ((bits >> 63) != (sign < 0))
        neg3(b);
    acc_add_bits(a, b);
}

/* ---- state ------------------------------------------------------------------------------- */

/* The latest revision of one (src, ref): 56 bytes. */
struct score_rec {
    uint64_t rev;
    double value;
    union {
        struct {
            int64_t at;
            uint32_t prev, next; /* the value cell's list, NONE-terminated */
        } v;
        double w; /* events */
    } x;
    uint32_t up; /* unit-period index */
    uint16_t node;
    uint16_t src;
    /* REF_INLINE: the ref is in ref.s; the rest: the number of records in the value cell's
     * list, kept in the list's head only */
    uint32_t meta;
    union {
        char s[REF_INLINE_MAX + 1];
        uint32_t h; /* handle of a longer ref in the arena */
    } ref;
};

/* Exact sums of one event cell (native or pooled): 56 bytes. With q = round(x·1e6): n events;
 * count: nothing more; sum and adjustments: x = Σ qv; avg and rate: x = Σ qw, y = Σ qw·qv. */
struct score_agg {
    int64_t n;
    struct acc x, y;
};

/* One (unit, node, period): 24 bytes. */
struct score_cell {
    double a; /* leaf: the input value; inner node: coverage */
    double score;
    unsigned n_obs : 29; /* saturates at MAX_N_OBS */
    unsigned present : 1;
    unsigned touched : 1; /* logged in the current unit of work */
    unsigned dirty : 1;   /* queued for the next flush */
    /* NONE when unset. Native cell of a value leaf: its best record (the head of its list);
     * event cell: its aggregate; derived cell of a value leaf: the latest present finer
     * period (rollup latest; unused for sum and avg, which add up their finer cells). */
    uint32_t aux;
};

_Static_assert(sizeof(struct score_rec) == 56, "a record is 56 bytes");
_Static_assert(sizeof(struct score_cell) == 24, "a cell is 24 bytes");
_Static_assert(sizeof(struct score_agg) == 56, "an aggregate is 56 bytes");

/* One unit in one period: its cells (all nodes) and its total. */
struct score_up {
    struct score_cell *cells; /* n_nodes, at e->slot[node]: breadth-first, siblings adjacent */
    uint32_t unit, period;
    uint32_t idx;      /* in e->ups: what records keep */
    uint8_t kind;      /* the period's kind */
    const char *pcode; /* the period's code */
    double total, coverage;
    double key; /* round(total·1e9): what ranks compare (SCHEMES.md "Ranks") */
    uint32_t rank;
    int grade;
    bool present, vetoed, touched;
    bool dirty; /* total queued for the next flush */
};

struct score_period {
    char code[16];
    struct score__period_key key;
    struct score_up **ups; /* n_units */
    uint32_t *kids;        /* finer periods inside, sorted by (kind, code) */
    uint32_t n_kids, cap_kids;
    long anc[SCORE_P__COUNT]; /* derived period of each coarser kind, or -1 */
    uint8_t *rank_dirty;      /* n_groups */
    /* the unit-periods of each group g at ord[e->goff[g]], n_ord[g] of them, in the order of
     * their last ranking (ranks() re-sorts them, nearly sorted, by insertion) */
    struct score_up **ord;
    uint32_t *n_ord;
};

struct undo {
    uint32_t idx;
    bool created;
    bool loaded; /* created by score_engine_load(): counted in its sums already */
    struct score_rec old;
};

/* A cell's state at its first change in the unit of work: 32 bytes. */
struct cell_log {
    struct score_up *up;
    uint16_t node; /* MAX_NODES */
    bool present;
    uint32_t n_obs;
    double a, score;
};
_Static_assert(sizeof(struct cell_log) == 32, "a cell log entry is 32 bytes");

struct total_log {
    struct score_up *up;
    double total, coverage, key;
    uint32_t rank;
    int grade;
    bool present, vetoed;
};

struct cellref {
    struct score_up *up;
    uint32_t node;
};

struct rescoreref {
    uint32_t period, group, node;
};

struct rankref {
    uint32_t period;
    uint32_t group;
};

struct slot {
    uint32_t hash;
    uint32_t idx1; /* record index + 1; 0 = empty */
};

#define REC_SHIFT   12 /* records per chunk: 4096 */
#define AGG_SHIFT   10
#define ARENA_CHUNK (1u << 18) /* bytes; strings 4-byte aligned, handle = chunk << 16 | off/4 */
#define ARENA_SMALL 4096       /* longer strings get their own allocation */
#define BIG_BIT     0x80000000u

/* A unit or node code of fewer than 16 bytes, zero padded: two words compare it (code_find). */
struct code_slot {
    uint64_t k[2];
    int32_t idx; /* -1: empty */
};

/* One observation of score_engine_apply_batch() between its lookup and its apply. */
struct pend {
    const struct score_obs *o;
    uint32_t u, n, src, p, hash;
    uint32_t len;
    enum kp_reason reason;
};

#define PF_DIST 32 /* score_engine_apply_batch looks this many observations ahead */

struct score_engine {
    const struct score_scheme *s;
    /* unit and node codes for resolve() (codes of 16 bytes or more: the scheme's maps) */
    struct code_slot *utab, *ntab;
    size_t umask, nmask;
    size_t n_tree; /* nodes [0, n_tree) form the weighted tree; the rest are adjustments */
    bool *event;   /* per node: input over events (event inputs and adjustment kinds) */
    bool *pool;    /* per node: an event leaf whose coarser periods pool its events */
    /* per node, copied from the scheme's nodes (280 bytes each) for the hot paths: */
    uint8_t *rollup;     /* enum score_rollup */
    uint8_t *input;      /* enum score_input */
    bool *relative;      /* the score depends on the group */
    uint32_t *kid0;      /* per inner node: its first child's slot (the others follow) */
    uint16_t *nkids;     /* per node: its number of children */
    double *wslot;       /* the scheme's weights by unit and slot: wslot[u * n_nodes + slot] */
    uint8_t *inner_slot; /* per slot: an inner node of the weighted tree */
    uint64_t *applies;   /* bit u * n_nodes + n: score__w(s, u, n) != 0 */
    uint8_t *src_kind;   /* per leaf with a rollup: the period kind it takes */
    uint32_t *slot;      /* per node: its cell's index in a unit-period's cells */
    int32_t *parent;     /* per node: the scheme's parent, -1 for the root and adjustment kinds */
    bool *inner;         /* per node: an inner node of the weighted tree */
    uint8_t *depth;      /* per node: 0 for the root */
    size_t n_depth;
    /* the period and source of the last applied observation (a batch repeats them), -1
     * when none */
    long memo_period, memo_src;
    /* the flush queue (see flush()) */
    struct cellref *dleaf; /* native leaf cells whose records changed */
    size_t n_dleaf, cap_dleaf;
    struct rescoreref *drs; /* group-relative leaves to re-score */
    size_t n_drs, cap_drs;
    struct cellref **dq; /* inner nodes by depth */
    size_t *n_dq, *cap_dq;
    struct score_up **dtot; /* totals */
    size_t n_dtot, cap_dtot;
    /* sources */
    char **srcs;
    size_t n_srcs, cap_srcs;
    struct score__strmap src_map;
    /* records */
    struct score_rec **rchunks;
    size_t n_rchunks, cap_rchunks;
    uint32_t n_recs;
    struct slot *map;
    size_t map_cap, map_n;
    /* ref strings */
    char **achunks;
    size_t n_achunks, cap_achunks;
    size_t a_used; /* bytes used in the last chunk */
    char **big;
    size_t n_big, cap_big;
    /* event sums */
    struct score_agg **gchunks;
    size_t n_gchunks, cap_gchunks;
    uint32_t n_aggs;
    /* periods and unit-periods */
    struct score_period **periods;
    size_t n_periods, cap_periods;
    struct score__strmap period_map;
    struct score_up **ups;
    size_t n_ups, cap_ups;
    /* ranks to recompute */
    struct rankref *rk;
    size_t n_rk, cap_rk;
    uint32_t *goff; /* per group: its first unit-period in score_period.ord */
    /* the unit of work */
    bool in_txn;
    struct undo *undo;
    size_t n_undo, cap_undo;
    struct cell_log *clog;
    size_t n_clog, cap_clog;
    struct total_log *tlog;
    size_t n_tlog, cap_tlog;
    uint32_t txn_n_recs;
    size_t txn_n_achunks, txn_a_used, txn_n_big;
    /* score_engine_evict_events(): the keys of the event records evicted at commit */
    bool evict;
    struct score__bloom cold;
    size_t n_cold; /* keys evicted and not held again */
    /* score_engine_evict_values(): also the value records that are not their cell's latest */
    score_cell_loader loader;
    void *loader_ctx;
    bool failed;    /* a cell loader failed in this unit of work */
    uint32_t *disp; /* records that lost the head of their cell in the unit of work */
    size_t n_disp, cap_disp;
    uint32_t *kill; /* the records a commit evicts */
    size_t n_kill, cap_kill;
    size_t a_garbage; /* arena bytes of evicted refs, given back by arena_compact() */
};

#define GROW(arr, n, cap)                                                                          \
    do {                                                                                           \
        if ((n) == (cap)) {                                                                        \
            (cap) = (cap) ? (cap)*2 : 16;                                                          \
            (arr) = kp_xrealloc((arr), (cap) * sizeof *(arr));                                     \
        }                                                                                          \
    } while (0)

/* Chunked pools (records, aggregates): adds a chunk of 1 << shift elements when index idx is
 * the first past the last chunk. */
#define POOL_RESERVE(chunks, n_chunks, cap_chunks, idx, shift)                                     \
    do {                                                                                           \
        if (((idx) >> (shift)) == (n_chunks)) {                                                    \
            GROW(chunks, n_chunks, cap_chunks);                                                    \
            (chunks)[(n_chunks)++] = kp_xmalloc(sizeof **(chunks) << (shift));                     \
        }                                                                                          \
    } while (0)

/* String equality without a call: the codes compared per observation are short. */
static inline bool streq(const char *a, const char *b)
{
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return *a == *b;
}

/* The string s of fewer than 16 bytes as two words, its bytes in order from the low end and
 * zeros after them (built in registers: no store-forwarding stall); false when it is
 * longer. */
static inline bool pack16(const char *s, uint64_t k[2])
{
    uint64_t w0 = 0, w1 = 0;
    for (unsigned i = 0; i < 8; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!c)
            goto done;
        w0 |= (uint64_t)c << (i * 8);
    }
    for (unsigned i = 0; i < 8; i++) {
        unsigned char c = (unsigned char)s[8 + i];
        if (!c)
            goto done;
        w1 |= (uint64_t)c << (i * 8);
    }
    return false;
done:
    k[0] = w0;
    k[1] = w1;
    return true;
}

static inline size_t code_hash(const uint64_t k[2])
{
    uint64_t h = k[0] * 0x9E3779B97F4A7C15ull ^ k[1] * 0xC2B2AE3D27D4EB4Full;
    return (size_t)(h ^ (h >> 29) ^ (h >> 47));
}

/* A table of n codes (those of fewer than 16 bytes) for code_find. */
static struct code_slot *code_tab(size_t n,
                                  const char *(*code)(const struct score_scheme *, size_t),
                                  const struct score_scheme *s, size_t *mask)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    struct code_slot *t = kp_xcalloc(cap, sizeof *t);
    for (size_t i = 0; i < cap; i++)
        t[i].idx = -1;
    for (size_t i = 0; i < n; i++) {
        uint64_t k[2];
        if (!pack16(code(s, i), k))
            continue;
        size_t j = code_hash(k) & (cap - 1);
        while (t[j].idx >= 0)
            j = (j + 1) & (cap - 1);
        t[j].k[0] = k[0];
        t[j].k[1] = k[1];
        t[j].idx = (int32_t)i;
    }
    *mask = cap - 1;
    return t;
}

/* Index of a code in a code_tab, -1 when absent; -2 when it is too long for the table. */
static inline long code_find(const struct code_slot *t, size_t mask, const char *code)
{
    uint64_t k[2];
    if (!pack16(code, k))
        return -2;
    for (size_t j = code_hash(k) & mask; t[j].idx >= 0; j = (j + 1) & mask)
        if (t[j].k[0] == k[0] && t[j].k[1] == k[1])
            return t[j].idx;
    return -1;
}

static bool same(double a, double b)
{
    return a == b || (isnan(a) && isnan(b));
}

static inline struct score_rec *R(const struct score_engine *e, uint32_t i)
{
    return &e->rchunks[i >> REC_SHIFT][i & ((1u << REC_SHIFT) - 1)];
}

static inline struct score_agg *G(const struct score_engine *e, uint32_t i)
{
    return &e->gchunks[i >> AGG_SHIFT][i & ((1u << AGG_SHIFT) - 1)];
}

/* The cell of node n in a unit-period. */
#define CELL(e, up, n) (&(up)->cells[(e)->slot[(n)]])

/* ---- ref strings --------------------------------------------------------------------------- */

static const char *ref_str(const struct score_engine *e, uint32_t h);

static const char *rec_ref(const struct score_engine *e, const struct score_rec *r)
{
    return r->meta & REF_INLINE ? r->ref.s : ref_str(e, r->ref.h);
}

static const char *ref_str(const struct score_engine *e, uint32_t h)
{
    if (h & BIG_BIT)
        return e->big[h & ~BIG_BIT];
    return e->achunks[h >> 16] + ((size_t)(h & 0xffffu) << 2);
}

static uint32_t ref_store(struct score_engine *e, const char *s, size_t len)
{
    if (len + 1 > ARENA_SMALL) {
        GROW(e->big, e->n_big, e->cap_big);
        KP_ASSERT(e->n_big < BIG_BIT);
        e->big[e->n_big] = kp_xmalloc(len + 1);
        memcpy(e->big[e->n_big], s, len + 1);
        return BIG_BIT | (uint32_t)e->n_big++;
    }
    size_t need = (len + 1 + 3) & ~(size_t)3;
    if (!e->n_achunks || e->a_used + need > ARENA_CHUNK) {
        /* 32768 chunks of 256 KiB: 8 GiB of refs */
        KP_ASSERT(e->n_achunks < (BIG_BIT >> 16));
        GROW(e->achunks, e->n_achunks, e->cap_achunks);
        e->achunks[e->n_achunks++] = kp_xmalloc(ARENA_CHUNK);
        e->a_used = 0;
    }
    char *p = e->achunks[e->n_achunks - 1] + e->a_used;
    memcpy(p, s, len + 1);
    uint32_t h = (uint32_t)((e->n_achunks - 1) << 16) | (uint32_t)(e->a_used >> 2);
    e->a_used += need;
    return h;
}

/* ---- sources ------------------------------------------------------------------------------- */

static uint32_t src_get(struct score_engine *e, const char *name)
{
    long id = score__strmap_get(&e->src_map, name);
    if (id >= 0)
        return (uint32_t)id;
    GROW(e->srcs, e->n_srcs, e->cap_srcs);
    e->srcs[e->n_srcs] = kp_xstrdup(name);
    score__strmap_put(&e->src_map, e->srcs[e->n_srcs], (long)e->n_srcs);
    return (uint32_t)e->n_srcs++;
}

/* ---- record map ---------------------------------------------------------------------------- */

/* The key's hash: its low 32 bits place it in the map, all 64 in the filter of evicted keys. */
static uint64_t rec_hash64(uint32_t src, const char *ref, size_t len)
{
    uint64_t h = score__hash(ref, len) ^ ((uint64_t)(src + 1) * 0x9E3779B97F4A7C15ull);
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    return h ^ (h >> 32);
}

static inline uint32_t rec_hash(uint32_t src, const char *ref, size_t len)
{
    return (uint32_t)rec_hash64(src, ref, len);
}

static inline uint32_t rec_find(const struct score_engine *e, uint32_t hash, uint32_t src,
                                const char *ref)
{
    if (!e->map_cap)
        return NONE;
    size_t mask = e->map_cap - 1;
    for (size_t i = hash & mask; e->map[i].idx1; i = (i + 1) & mask) {
        if (e->map[i].hash != hash)
            continue;
        const struct score_rec *r = R(e, e->map[i].idx1 - 1);
        if (r->src == src && streq(rec_ref(e, r), ref))
            return e->map[i].idx1 - 1;
    }
    return NONE;
}

static void map_put(struct slot *map, size_t cap, uint32_t hash, uint32_t idx1)
{
    size_t mask = cap - 1, i = hash & mask;
    while (map[i].idx1)
        i = (i + 1) & mask;
    map[i].hash = hash;
    map[i].idx1 = idx1;
}

/* The map grows at 7/8 full: a slot keeps its key's hash, so a probe past other keys reads only
 * the slots (8 in a cache line), not their records. At 3/4 the map was 4.0 of the scorer's
 * 48 MiB of state in the benchmark of docs/BENCHMARKS.md (round 11). */
static void rec_insert(struct score_engine *e, uint32_t hash, uint32_t idx)
{
    if ((e->map_n + 1) * 8 > e->map_cap * 7) {
        size_t oc = e->map_cap;
        struct slot *om = e->map;
        e->map_cap = oc ? oc * 2 : 256;
        e->map = kp_xcalloc(e->map_cap, sizeof *e->map);
        for (size_t i = 0; i < oc; i++)
            if (om[i].idx1)
                map_put(e->map, e->map_cap, om[i].hash, om[i].idx1);
        free(om);
    }
    map_put(e->map, e->map_cap, hash, idx + 1);
    e->map_n++;
}

/* The map slot of record idx, whose key hashes to hash. */
static struct slot *map_slot(const struct score_engine *e, uint32_t hash, uint32_t idx)
{
    size_t mask = e->map_cap - 1, i = hash & mask;
    while (e->map[i].idx1 != idx + 1) {
        KP_ASSERT(e->map[i].idx1 != 0);
        i = (i + 1) & mask;
    }
    return &e->map[i];
}

/* Linear probing with backward-shift deletion (no tombstones). */
static void map_del(struct score_engine *e, uint32_t hash, uint32_t idx)
{
    size_t mask = e->map_cap - 1;
    size_t i = (size_t)(map_slot(e, hash, idx) - e->map);
    e->map[i].idx1 = 0;
    e->map_n--;
    for (size_t j = (i + 1) & mask; e->map[j].idx1; j = (j + 1) & mask) {
        size_t home = e->map[j].hash & mask;
        /* move j back to i when home is not cyclically in (i, j] */
        bool stay = (i < j) ? (home > i && home <= j) : (home > i || home <= j);
        if (!stay) {
            e->map[i] = e->map[j];
            e->map[j].idx1 = 0;
            i = j;
        }
    }
}

static void rec_remove(struct score_engine *e, uint32_t idx)
{
    const struct score_rec *r = R(e, idx);
    const char *ref = rec_ref(e, r);
    map_del(e, rec_hash(r->src, ref, strlen(ref)), idx);
}

static uint32_t rec_new(struct score_engine *e)
{
    uint32_t idx = e->n_recs;
    KP_ASSERT(idx < NONE - 1);
    POOL_RESERVE(e->rchunks, e->n_rchunks, e->cap_rchunks, idx, REC_SHIFT);
    e->n_recs++;
    memset(R(e, idx), 0, sizeof(struct score_rec));
    return idx;
}

/* A new record of key (src, ref) in the map, its other fields zero. */
static uint32_t rec_create(struct score_engine *e, uint32_t src, const char *ref, size_t len,
                           uint32_t hash)
{
    uint32_t idx = rec_new(e);
    struct score_rec *r = R(e, idx);
    r->src = (uint16_t)src;
    if (len <= REF_INLINE_MAX) {
        memcpy(r->ref.s, ref, len + 1);
        r->meta = REF_INLINE;
    } else {
        r->ref.h = ref_store(e, ref, len);
    }
    rec_insert(e, hash, idx);
    return idx;
}

static uint32_t agg_new(struct score_engine *e)
{
    uint32_t idx = e->n_aggs;
    KP_ASSERT(idx < NONE - 1);
    POOL_RESERVE(e->gchunks, e->n_gchunks, e->cap_gchunks, idx, AGG_SHIFT);
    e->n_aggs++;
    memset(G(e, idx), 0, sizeof(struct score_agg));
    return idx;
}

/* ---- periods and unit-periods -----------------------------------------------------------------
 */

static int kid_cmp(const struct score_engine *e, uint32_t a, uint32_t b)
{
    const struct score_period *pa = e->periods[a], *pb = e->periods[b];
    if (pa->key.kind != pb->key.kind)
        return pa->key.kind < pb->key.kind ? -1 : 1;
    return strcmp(pa->code, pb->code);
}

static uint32_t period_get(struct score_engine *e, const char *code);

static uint32_t period_new(struct score_engine *e, const char *code,
                           const struct score__period_key *key)
{
    struct score_period *p = kp_xcalloc(1, sizeof *p);
    snprintf(p->code, sizeof p->code, "%s", code);
    p->key = *key;
    p->ups = kp_xcalloc(e->s->n_units ? e->s->n_units : 1, sizeof *p->ups);
    p->rank_dirty = kp_xcalloc(e->s->n_groups ? e->s->n_groups : 1, 1);
    p->ord = kp_xcalloc(e->goff[e->s->n_groups] + 1, sizeof *p->ord);
    p->n_ord = kp_xcalloc(e->s->n_groups ? e->s->n_groups : 1, sizeof *p->n_ord);
    for (int k = 0; k < SCORE_P__COUNT; k++)
        p->anc[k] = -1;
    GROW(e->periods, e->n_periods, e->cap_periods);
    uint32_t idx = (uint32_t)e->n_periods++;
    e->periods[idx] = p;
    score__strmap_put(&e->period_map, p->code, (long)idx);
    /* the coarser periods the scheme derives, and this one as their kid */
    for (int k = 0; k < (int)key->kind; k++) {
        if (!(e->s->derive & (1u << k)))
            continue;
        struct score__period_key up;
        char buf[16];
        score__period_up(key, (enum score_pkind)k, &up);
        score__period_format(&up, buf, sizeof buf);
        uint32_t a = period_get(e, buf);
        e->periods[idx]->anc[k] = (long)a;
        struct score_period *ap = e->periods[a];
        GROW(ap->kids, ap->n_kids, ap->cap_kids);
        uint32_t pos = ap->n_kids;
        while (pos > 0 && kid_cmp(e, ap->kids[pos - 1], idx) > 0) {
            ap->kids[pos] = ap->kids[pos - 1];
            pos--;
        }
        ap->kids[pos] = idx;
        ap->n_kids++;
    }
    return idx;
}

/* Index of a period (already validated), created on first use. */
static uint32_t period_get(struct score_engine *e, const char *code)
{
    long idx = score__strmap_get(&e->period_map, code);
    if (idx >= 0)
        return (uint32_t)idx;
    struct score__period_key key;
    int rc = score__period_parse(code, &key);
    KP_ASSERT(rc == 0);
    return period_new(e, code, &key);
}

static struct score_up *up_new(struct score_engine *e, uint32_t p, uint32_t u)
{
    struct score_period *per = e->periods[p];
    {
        size_t nn = e->s->n_nodes;
        struct score_up *up = kp_xcalloc(1, sizeof *up);
        up->unit = u;
        up->period = p;
        up->kind = (uint8_t)per->key.kind;
        up->pcode = per->code;
        up->cells = kp_xcalloc(nn, sizeof *up->cells);
        for (size_t n = 0; n < nn; n++) {
            CELL(e, up, n)->a = NAN;
            CELL(e, up, n)->score = NAN;
            CELL(e, up, n)->aux = NONE;
        }
        up->grade = -1;
        per->ups[u] = up;
        size_t g = e->s->units[u].group;
        KP_ASSERT(e->goff[g] + per->n_ord[g] < e->goff[g + 1]);
        per->ord[e->goff[g] + per->n_ord[g]++] = up;
        GROW(e->ups, e->n_ups, e->cap_ups);
        KP_ASSERT(e->n_ups < NONE);
        up->idx = (uint32_t)e->n_ups;
        e->ups[e->n_ups++] = up;
    }
    return per->ups[u];
}

static inline struct score_up *up_get(struct score_engine *e, uint32_t p, uint32_t u)
{
    struct score_up *up = e->periods[p]->ups[u];
    return up ? up : up_new(e, p, u);
}

/* ---- change tracking ------------------------------------------------------------------------ */

/* A derived (coarser-period) cell of a value leaf: its state follows the finer cells. */
static bool is_derived_value(const struct score_engine *e, const struct score_up *up, uint32_t n)
{
    return !e->event[n] && e->rollup[n] != SCORE_R_NONE && up->kind < e->src_kind[n];
}

/* Logs a cell's state at its first change in the unit of work: what rollback restores and
 * what score_engine_changes() compares against. Called before any change of the cell. */
static inline void touch_cell(struct score_engine *e, struct score_up *up, uint32_t n)
{
    struct score_cell *c = CELL(e, up, n);
    if (!e->in_txn || c->touched)
        return;
    c->touched = true;
    GROW(e->clog, e->n_clog, e->cap_clog);
    struct cell_log *l = &e->clog[e->n_clog++];
    l->up = up;
    l->node = (uint16_t)n;
    l->present = c->present;
    l->a = c->a;
    l->score = c->score;
    l->n_obs = c->n_obs;
}

static void touch_total(struct score_engine *e, struct score_up *up)
{
    if (!e->in_txn || up->touched)
        return;
    up->touched = true;
    GROW(e->tlog, e->n_tlog, e->cap_tlog);
    struct total_log *l = &e->tlog[e->n_tlog++];
    l->up = up;
    l->present = up->present;
    l->total = up->total;
    l->coverage = up->coverage;
    l->key = up->key;
    l->rank = up->rank;
    l->grade = up->grade;
    l->vetoed = up->vetoed;
}

/* Sets a cell's visible state; returns true when anything changed. */
static inline bool cell_set(struct score_engine *e, struct score_up *up, uint32_t n, bool present,
                            double a, double score, uint32_t n_obs)
{
    struct score_cell *c = CELL(e, up, n);
    if (!present) {
        a = NAN;
        score = NAN;
        n_obs = 0;
    }
    if (n_obs > MAX_N_OBS)
        n_obs = MAX_N_OBS;
    if (c->present == present && same(c->a, a) && same(c->score, score) && c->n_obs == n_obs)
        return false;
    touch_cell(e, up, n);
    c->present = present;
    c->a = a;
    c->score = score;
    c->n_obs = n_obs;
    return true;
}

static void rank_dirty(struct score_engine *e, uint32_t p, size_t g)
{
    struct score_period *per = e->periods[p];
    if (per->rank_dirty[g])
        return;
    per->rank_dirty[g] = 1;
    GROW(e->rk, e->n_rk, e->cap_rk);
    e->rk[e->n_rk].period = p;
    e->rk[e->n_rk].group = (uint32_t)g;
    e->n_rk++;
}

/* ---- rollup, ranks, grades ------------------------------------------------------------------- */

static int grade_of(const struct score_scheme *s, double total, bool vetoed)
{
    if (!s->n_grades)
        return -1;
    if (vetoed)
        return (int)s->n_grades - 1;
    for (size_t i = 0; i < s->n_grades; i++)
        if (total >= s->grades[i].min - 1e-9)
            return (int)i;
    return (int)s->n_grades - 1;
}

/* The total of a unit in a period from its root cell, adjustments and veto. */
static void total_update(struct score_engine *e, struct score_up *up)
{
    const struct score_scheme *s = e->s;
    double add = 0, deduct = 0;
    bool vetoed = false, any_adj = false;
    for (size_t i = e->n_tree; i < s->n_nodes; i++) {
        const struct score_cell *c = CELL(e, up, i);
        if (!c->present)
            continue;
        any_adj = true;
        switch (s->nodes[i].method) {
        case SCORE_M_ADD:
            add += c->score;
            break;
        case SCORE_M_DEDUCT:
            deduct += c->score;
            break;
        case SCORE_M_VETO:
            vetoed = vetoed || c->score > 0;
            break;
        default:
            break;
        }
    }
    if (s->add_cap >= 0 && add > s->add_cap)
        add = s->add_cap;
    if (s->deduct_cap >= 0 && deduct > s->deduct_cap)
        deduct = s->deduct_cap;
    const struct score_cell *root = CELL(e, up, 0);
    bool rp = root->present;
    bool present = rp || any_adj;
    double total = present ? (rp ? root->score : 0) + add - deduct : 0;
    double coverage = rp ? root->a : 0;
    if (!present)
        vetoed = false;
    int grade = present ? grade_of(s, total, vetoed) : -1;
    if (up->present == present && same(up->total, total) && up->coverage == coverage &&
        up->vetoed == vetoed && up->grade == grade)
        return;
    touch_total(e, up);
    up->present = present;
    up->total = total;
    up->coverage = coverage;
    up->key = present ? round(total * 1e9) : 0;
    up->vetoed = vetoed;
    up->grade = grade;
    if (!present)
        up->rank = 0;
    rank_dirty(e, up->period, s->units[up->unit].group);
}

/* Recomputes inner node i of a unit-period from its children (SCHEMES.md "Rollup"): global
 * renormalisation, so its score is Σ w·cov·s / Σ w·cov over the present children and its
 * coverage Σ w·cov / Σ w over the applicable ones (a leaf's cov is 1). Children are taken in
 * scheme order, so the result is a function of the children alone; their cells are adjacent
 * (breadth-first layout). Returns whether the node's state (presence, coverage, score,
 * n_obs) changed. */
static bool inner_update(struct score_engine *e, struct score_up *up, size_t i)
{
    /* the children in scheme order are the slots kid0 .. kid0 + nkids - 1 */
    uint32_t k0 = e->kid0[i], nk = e->nkids[i];
    const double *wrow = &e->wslot[(size_t)up->unit * e->s->n_nodes + k0];
    const uint8_t *inner = &e->inner_slot[k0];
    const struct score_cell *kc = &up->cells[k0];
    double W = 0, P = 0, S = 0;
    uint32_t nobs = 0;
    for (uint32_t k = 0; k < nk; k++) {
        double w = wrow[k];
        if (w == 0)
            continue;
        W += w;
        if (!kc[k].present)
            continue;
        double cov = inner[k] ? kc[k].a : 1.0;
        P += w * cov;
        S += w * cov * kc[k].score;
        nobs += kc[k].n_obs;
    }
    bool present = P > 0;
    return cell_set(e, up, (uint32_t)i, present, present ? P / W : 0, present ? S / P : NAN, nobs);
}

static inline void mark_total(struct score_engine *e, struct score_up *up)
{
    if (up->dirty)
        return;
    up->dirty = true;
    GROW(e->dtot, e->n_dtot, e->cap_dtot);
    e->dtot[e->n_dtot++] = up;
}

static inline void mark_inner(struct score_engine *e, struct score_up *up, uint32_t p)
{
    struct score_cell *c = CELL(e, up, p);
    if (c->dirty)
        return;
    c->dirty = true;
    uint8_t d = e->depth[p];
    GROW(e->dq[d], e->n_dq[d], e->cap_dq[d]);
    e->dq[d][e->n_dq[d]].up = up;
    e->dq[d][e->n_dq[d]].node = p;
    e->n_dq[d]++;
}

/* Leaf or adjustment n of a unit-period changed: its parent (or the total, for the root's
 * children's parent and adjustments) is recomputed by the flush. */
static inline void mark_parent(struct score_engine *e, struct score_up *up, uint32_t n)
{
    long p = e->parent[n];
    if (p < 0)
        mark_total(e, up);
    else
        mark_inner(e, up, (uint32_t)p);
}

/* Sets a leaf cell's state; a change is rolled up by the flush. */
static inline void leaf_set(struct score_engine *e, struct score_up *up, uint32_t n, bool present,
                            double a, double score, uint32_t n_obs)
{
    if (cell_set(e, up, n, present, a, score, n_obs))
        mark_parent(e, up, n);
}

/* Whether a ranks before b: present before absent, non-vetoed before vetoed, then by total
 * descending; equal keys tie (neither ranks before the other). */
static inline bool rank_before(const struct score_up *a, const struct score_up *b)
{
    if (a->present != b->present)
        return a->present;
    if (!a->present)
        return false;
    if (a->vetoed != b->vetoed)
        return !a->vetoed;
    return a->key > b->key;
}

/* Standard competition ranking (1,2,2,4) of a group's present units in one period. The
 * group's unit-periods stay in the order of their last ranking, so the sort is an insertion
 * sort over a nearly sorted array. */
static void ranks(struct score_engine *e, uint32_t p, size_t g)
{
    struct score_period *per = e->periods[p];
    struct score_up **a = &per->ord[e->goff[g]];
    size_t n = per->n_ord[g];
    for (size_t i = 1; i < n; i++) {
        struct score_up *x = a[i];
        size_t j = i;
        for (; j > 0 && rank_before(x, a[j - 1]); j--)
            a[j] = a[j - 1];
        a[j] = x;
    }
    uint32_t r = 1;
    for (size_t i = 0; i < n && a[i]->present; i++) {
        if (i > 0 && (a[i - 1]->vetoed != a[i]->vetoed || a[i - 1]->key != a[i]->key))
            r = (uint32_t)i + 1;
        if (a[i]->rank != r) {
            touch_total(e, a[i]);
            a[i]->rank = r;
        }
    }
}

static void flush_ranks(struct score_engine *e)
{
    for (size_t i = 0; i < e->n_rk; i++) {
        ranks(e, e->rk[i].period, e->rk[i].group);
        e->periods[e->rk[i].period]->rank_dirty[e->rk[i].group] = 0;
    }
    e->n_rk = 0;
}

/* The rank of a total, also while its group's ranks wait for flush_ranks() (inside a unit
 * of work): 1 + the number of units ranked strictly before it. */
static uint32_t rank_of(const struct score_engine *e, const struct score_up *up)
{
    if (!up->present)
        return 0;
    const struct score_period *per = e->periods[up->period];
    size_t g = e->s->units[up->unit].group;
    if (!per->rank_dirty[g])
        return up->rank;
    const struct score_group *gr = &e->s->groups[g];
    uint32_t r = 1;
    for (size_t i = 0; i < gr->n_units; i++) {
        const struct score_up *o = per->ups[gr->units[i]];
        if (!o || !o->present || o == up)
            continue;
        if (o->vetoed != up->vetoed ? !o->vetoed : o->key > up->key)
            r++;
    }
    return r;
}

/* ---- leaf cells --------------------------------------------------------------------------------
 */

/* The input value of an event cell from its exact sums: count = n, sum = Σ val,
 * avg = Σ w·val / Σ w, rate = 100 · Σ w·val / Σ w (absent while Σ w is 0). */
static bool agg_value(enum score_input input, const struct score_agg *g, double *value)
{
    *value = NAN;
    if (g->n <= 0)
        return false;
    switch (input) {
    case SCORE_I_COUNT:
        *value = (double)g->n;
        return true;
    case SCORE_I_SUM:
        *value = acc_double(&g->x) / EVENT_Q;
        return true;
    case SCORE_I_AVG:
    case SCORE_I_RATE: {
        if (!acc_positive(&g->x))
            return false;
        double r = acc_double(&g->y) / acc_double(&g->x);
        *value = (input == SCORE_I_RATE ? r * 100.0 : r) / EVENT_Q;
        return true;
    }
    default:
        return false;
    }
}

static inline bool event_value(const struct score_engine *e, uint32_t n, const struct score_cell *c,
                               double *value, uint32_t *n_obs)
{
    if (c->aux == NONE) {
        *value = NAN;
        *n_obs = 0;
        return false;
    }
    const struct score_agg *g = G(e, c->aux);
    *n_obs = g->n > 0 ? (uint32_t)g->n : 0;
    return agg_value((enum score_input)e->input[n], g, value);
}

/* Input value of a native cell: the best record of a value leaf (the greatest (at, src, ref),
 * kept at the head of its list: ARCHITECTURE.md guarantee 3), or the event sums. */
static inline bool native_value(const struct score_engine *e, uint32_t n,
                                const struct score_cell *c, double *value, uint32_t *n_obs)
{
    if (e->event[n])
        return event_value(e, n, c, value, n_obs);
    if (c->aux == NONE) {
        *n_obs = 0;
        *value = NAN;
        return false;
    }
    const struct score_rec *r = R(e, c->aux);
    *n_obs = r->meta & ~REF_INLINE;
    *value = r->value;
    return true;
}

/* Group-relative methods: re-scores leaf n of every unit of group g in period p, and rolls
 * up the units whose score changed. */
static void rescore_group(struct score_engine *e, uint32_t p, size_t g, uint32_t n)
{
    const struct score_node *nd = &e->s->nodes[n];
    const struct score_group *gr = &e->s->groups[g];
    struct score_period *per = e->periods[p];
    double mx = -INFINITY, mn = INFINITY;
    for (size_t i = 0; i < gr->n_units; i++) {
        const struct score_up *up = per->ups[gr->units[i]];
        if (up && CELL(e, up, n)->present) {
            mx = fmax(mx, CELL(e, up, n)->a);
            mn = fmin(mn, CELL(e, up, n)->a);
        }
    }
    for (size_t i = 0; i < gr->n_units; i++) {
        struct score_up *up = per->ups[gr->units[i]];
        if (!up || !CELL(e, up, n)->present)
            continue;
        const struct score_cell *c = CELL(e, up, n);
        double sc;
        if (nd->method == SCORE_M_EFFICACY_REL) {
            double good = nd->lower_better ? mn : mx, bad = nd->lower_better ? mx : mn;
            sc = good == bad ? score__clamp(nd, nd->base + nd->span)
                             : score__efficacy(nd, c->a, good, bad);
        } else {
            uint32_t r = 1;
            for (size_t j = 0; j < gr->n_units; j++) {
                const struct score_up *o = per->ups[gr->units[j]];
                if (o && CELL(e, o, n)->present &&
                    (nd->lower_better ? CELL(e, o, n)->a < c->a : CELL(e, o, n)->a > c->a))
                    r++;
            }
            sc = score__rank_points(nd, r);
        }
        leaf_set(e, up, n, true, c->a, sc, c->n_obs);
    }
}

/* A leaf cell's input changed (present, value): rescore it and roll up. */
static void cell_input(struct score_engine *e, struct score_up *up, uint32_t n, bool present,
                       double value, uint32_t n_obs)
{
    if (e->relative[n]) {
        /* keep the held score for now: the group pass below decides it, for this unit and
         * for the others whose thresholds or ranks move with it */
        const struct score_cell *c = CELL(e, up, n);
        double held = c->present && present ? c->score : NAN;
        if (!cell_set(e, up, n, present, value, held, n_obs))
            return;
        mark_parent(e, up, n);
        uint32_t g = (uint32_t)e->s->units[up->unit].group;
        for (size_t i = 0; i < e->n_drs; i++)
            if (e->drs[i].period == up->period && e->drs[i].group == g && e->drs[i].node == n)
                return;
        GROW(e->drs, e->n_drs, e->cap_drs);
        e->drs[e->n_drs].period = up->period;
        e->drs[e->n_drs].group = g;
        e->drs[e->n_drs].node = n;
        e->n_drs++;
        return;
    }
    leaf_set(e, up, n, present, value, present ? score__method_value(&e->s->nodes[n], value) : NAN,
             n_obs);
}

/* The latest present finer cell of leaf n inside derived period p, or NONE. */
static uint32_t latest_scan(const struct score_engine *e, uint32_t p, uint32_t u, uint32_t n)
{
    const struct score_period *per = e->periods[p];
    uint32_t latest = NONE;
    for (uint32_t i = 0; i < per->n_kids; i++) {
        const struct score_period *kp = e->periods[per->kids[i]];
        if ((unsigned)kp->key.kind != e->src_kind[n] || !kp->ups[u] ||
            !CELL(e, kp->ups[u], n)->present)
            continue;
        latest = per->kids[i]; /* kids are in chronological order */
    }
    return latest;
}

/* The present native cells of value leaf n in derived period p of unit u: their number, and in
 * x the exact fixed-point sum of their values (acc_add_fixed), the same whatever their order. */
static int64_t derived_sum(const struct score_engine *e, uint32_t p, uint32_t u, uint32_t n,
                           struct acc *x)
{
    const struct score_period *per = e->periods[p];
    int64_t cnt = 0;
    memset(x, 0, sizeof *x);
    for (uint32_t i = 0; i < per->n_kids; i++) {
        const struct score_period *kp = e->periods[per->kids[i]];
        if ((unsigned)kp->key.kind != e->src_kind[n] || !kp->ups[u])
            continue;
        const struct score_cell *kc = CELL(e, kp->ups[u], n);
        if (kc->present) {
            cnt++;
            acc_add_fixed(x, kc->a, +1);
        }
    }
    return cnt;
}

/* Native cell (up, n) of a value leaf with a rollup changed from n_obs `on` to its current
 * state: the derived cells of the coarser periods follow. Latest keeps the latest present finer
 * period (a rescan only when that one disappears); sum and avg add up the present native cells
 * inside (derived_sum: a year reads its 12 months); n_obs is the sum over the present finer
 * cells. */
static void derived_delta(struct score_engine *e, struct score_up *up, uint32_t n, uint32_t on)
{
    uint8_t rollup = e->rollup[n];
    const struct score_cell *c = CELL(e, up, n);
    bool np = c->present;
    uint32_t nn = c->n_obs;
    const struct score_period *per = e->periods[up->period];
    for (int k = 0; k < (int)per->key.kind; k++) {
        if (per->anc[k] < 0)
            continue;
        uint32_t ap = (uint32_t)per->anc[k];
        struct score_up *dup = up_get(e, ap, up->unit);
        struct score_cell *dc = CELL(e, dup, n);
        touch_cell(e, dup, n);
        uint32_t nobs = (uint32_t)((int64_t)dc->n_obs + nn - on);
        bool present;
        double value;
        if (rollup == SCORE_R_LATEST) {
            if (np && (dc->aux == NONE || e->periods[dc->aux]->key.sub <= per->key.sub))
                dc->aux = up->period;
            else if (!np && dc->aux == up->period)
                dc->aux = latest_scan(e, ap, up->unit, n);
            present = dc->aux != NONE;
            if (present && dc->aux == up->period && !e->relative[n]) {
                /* this cell is the latest: same leaf, same value, same score */
                leaf_set(e, dup, n, true, c->a, c->score, nobs);
                continue;
            }
            value = present ? CELL(e, e->periods[dc->aux]->ups[up->unit], n)->a : NAN;
        } else {
            struct acc x;
            int64_t cnt = derived_sum(e, ap, up->unit, n, &x);
            present = cnt > 0;
            double sum = acc_double(&x) / FIX_SCALE;
            value = !present ? NAN : rollup == SCORE_R_SUM ? sum : sum / (double)cnt;
        }
        cell_input(e, dup, n, present, value, present ? nobs : 0);
    }
}

/* The records of native cell (up, n) changed: queued for the flush. */
static inline void mark_leaf(struct score_engine *e, struct score_up *up, uint32_t n)
{
    struct score_cell *c = CELL(e, up, n);
    if (c->dirty)
        return;
    c->dirty = true;
    GROW(e->dleaf, e->n_dleaf, e->cap_dleaf);
    e->dleaf[e->n_dleaf].up = up;
    e->dleaf[e->n_dleaf].node = n;
    e->n_dleaf++;
}

/* Flush step for a native leaf cell whose records changed: its input, then the cells of the
 * coarser periods derived from it. */
static void leaf_changed(struct score_engine *e, struct score_up *up, uint32_t n)
{
    const struct score_cell *c = CELL(e, up, n);
    bool op = c->present;
    double ov = c->a;
    uint32_t on = c->n_obs;
    double value;
    uint32_t nobs;
    bool present = native_value(e, n, c, &value, &nobs);
    cell_input(e, up, n, present, value, nobs);
    if (e->rollup[n] == SCORE_R_NONE)
        return;
    if (e->rollup[n] != SCORE_R_POOL) {
        if (op != c->present || !same(ov, c->a) || on != c->n_obs)
            derived_delta(e, up, n, on);
        return;
    }
    const struct score_period *per = e->periods[up->period];
    for (int k = 0; k < (int)per->key.kind; k++) {
        if (per->anc[k] < 0)
            continue;
        struct score_up *dup = up_get(e, (uint32_t)per->anc[k], up->unit);
        present = event_value(e, n, CELL(e, dup, n), &value, &nobs);
        cell_input(e, dup, n, present, value, nobs);
    }
}

/* ---- attaching records to cells ------------------------------------------------------------ */

/* The value-leaf order: greater (at, src, ref) wins. */
static bool rec_better(const struct score_engine *e, const struct score_rec *a,
                       const struct score_rec *b)
{
    if (a->x.v.at != b->x.v.at)
        return a->x.v.at > b->x.v.at;
    int c = a->src == b->src ? 0 : strcmp(e->srcs[a->src], e->srcs[b->src]);
    if (c)
        return c > 0;
    return strcmp(rec_ref(e, a), rec_ref(e, b)) > 0;
}

/* Adds (sign +1) or subtracts (-1) an event's contribution to the sums of cell (up, n). */
static inline void agg_apply(struct score_engine *e, struct score_up *up, uint32_t n,
                             const struct score_rec *r, int sign)
{
    struct score_cell *c = CELL(e, up, n);
    if (c->aux == NONE)
        c->aux = agg_new(e);
    struct score_agg *g = G(e, c->aux);
    g->n += sign;
    switch (e->input[n]) {
    case SCORE_I_COUNT:
        break;
    case SCORE_I_AVG:
    case SCORE_I_RATE: {
        int64_t qw = quantize(r->x.w);
        acc_add1(&g->x, qw, sign);
        acc_add(&g->y, qw, quantize(r->value), sign);
        break;
    }
    default: /* sum, adjustments */
        acc_add1(&g->x, quantize(r->value), sign);
        break;
    }
}

/* An event record enters or leaves its native cell and the pooled cells above it. */
static void event_move(struct score_engine *e, const struct score_rec *r, int sign)
{
    struct score_up *up = e->ups[r->up];
    agg_apply(e, up, r->node, r, sign);
    if (!e->pool[r->node])
        return;
    const struct score_period *per = e->periods[up->period];
    for (int k = 0; k < (int)per->key.kind; k++)
        if (per->anc[k] >= 0)
            agg_apply(e, up_get(e, (uint32_t)per->anc[k], up->unit), r->node, r, sign);
}

/* A value cell's head keeps in its meta the number of the cell's records, the evicted ones
 * included (they are what its n_obs counts); its list holds those in memory. */
static inline uint32_t list_count(const struct score_rec *h)
{
    return h->meta & ~REF_INLINE;
}

/* Attaches record idx to its cell; add: 1 for a record that enters the cell, 0 for an evicted
 * one given back (score_engine_load: the cell counts it already); carry: what detach_rec()
 * returned when the record left this same cell just before. */
static void attach_rec(struct score_engine *e, uint32_t idx, uint32_t add, uint32_t carry)
{
    struct score_rec *r = R(e, idx);
    if (e->event[r->node]) {
        event_move(e, r, +1);
        return;
    }
    struct score_cell *c = CELL(e, e->ups[r->up], r->node);
    r->meta &= REF_INLINE;
    if (c->aux == NONE) {
        r->x.v.prev = r->x.v.next = NONE;
        r->meta |= carry ? carry + add : 1;
        c->aux = idx;
        return;
    }
    struct score_rec *h = R(e, c->aux);
    if (rec_better(e, r, h)) {
        r->x.v.prev = NONE;
        r->x.v.next = c->aux;
        r->meta |= list_count(h) + add;
        h->x.v.prev = idx;
        if (e->loader && e->in_txn) { /* no longer the latest: evicted at commit */
            GROW(e->disp, e->n_disp, e->cap_disp);
            e->disp[e->n_disp++] = c->aux;
        }
        c->aux = idx;
    } else {
        h->meta += add;
        r->x.v.prev = c->aux;
        r->x.v.next = h->x.v.next;
        if (h->x.v.next != NONE)
            R(e, h->x.v.next)->x.v.prev = idx;
        h->x.v.next = idx;
    }
}

/* Detaches record idx from its cell; sub: 1 for a record that leaves the cell, 0 for a given
 * back one that goes back out of memory (rollback). Returns the cell's count when the record
 * was its latest and every other record of the cell is evicted: the cell then has no head, and
 * the record must come back to it at once (attach_rec's carry). That happens only to a
 * revision that stays the latest of its cell (and to its rollback): when the latest leaves,
 * cell_ready() gave the evicted records back first. 0 otherwise. */
static uint32_t detach_rec(struct score_engine *e, uint32_t idx, uint32_t sub)
{
    struct score_rec *r = R(e, idx);
    if (e->event[r->node]) {
        event_move(e, r, -1);
        return 0;
    }
    struct score_cell *c = CELL(e, e->ups[r->up], r->node);
    uint32_t prev = r->x.v.prev, next = r->x.v.next;
    if (prev != NONE)
        R(e, prev)->x.v.next = next;
    if (next != NONE)
        R(e, next)->x.v.prev = prev;
    if (c->aux != idx) {
        R(e, c->aux)->meta -= sub;
        return 0;
    }
    uint32_t count = list_count(r) - sub;
    /* the winner leaves: the best of the rest becomes the head (the only O(records) step) */
    uint32_t best = next;
    for (uint32_t i = next; i != NONE; i = R(e, i)->x.v.next)
        if (rec_better(e, R(e, i), R(e, best)))
            best = i;
    c->aux = best;
    if (best == NONE)
        return count;
    R(e, best)->meta = (R(e, best)->meta & REF_INLINE) | count;
    if (best == next)
        return 0;
    struct score_rec *b = R(e, best);
    R(e, b->x.v.prev)->x.v.next = b->x.v.next;
    if (b->x.v.next != NONE)
        R(e, b->x.v.next)->x.v.prev = b->x.v.prev;
    b->x.v.prev = NONE;
    b->x.v.next = next;
    R(e, next)->x.v.prev = best;
    return 0;
}

/* Before record idx is revised by pd's observation: if idx is the latest of its value cell and
 * the revision takes it out of the head (an earlier `at`, another cell) while the cell has
 * evicted records, its next latest may be one of them, and the loader gives them back first.
 * False when the loader failed. */
static bool cell_ready(struct score_engine *e, uint32_t idx, const struct pend *pd)
{
    const struct score_rec *r = R(e, idx);
    if (e->event[r->node])
        return true;
    const struct score_up *up = e->ups[r->up];
    if (CELL(e, up, r->node)->aux != idx)
        return true;
    if (up->period == pd->p && up->unit == pd->u && r->node == pd->n && pd->o->at >= r->x.v.at)
        return true; /* it stays the latest */
    uint32_t in_memory = 0;
    for (uint32_t i = idx; i != NONE; i = R(e, i)->x.v.next)
        in_memory++;
    if (in_memory >= list_count(r))
        return true;
    return e->loader(e->loader_ctx, e, up->unit, r->node, up->pcode);
}

/* ---- the flush ------------------------------------------------------------------------------ */

/* Brings every score up to date with the records, in dependency order, each item once:
 * native leaf cells whose records changed (and the derived cells above them), group-relative
 * re-scoring, inner nodes from the deepest level up (a node whose state does not change does
 * not queue its parent), totals and grades, ranks. Within a unit of work an apply only
 * updates records and exact sums and queues the cell; score_engine_changes() and
 * score_engine_commit() flush, so a node shared by many observations of a batch (a unit's
 * total, its year cells) is recomputed once. Outside a unit of work each apply flushes. */
/* Prefetches the cells that the flush of a native leaf cell reads: those of the coarser
 * periods derived from it and their parents. */
__attribute__((always_inline)) static inline void prefetch_derived(const struct score_engine *e,
                                                                   const struct cellref *r)
{
    const struct score_period *per = e->periods[r->up->period];
    int32_t parent = e->parent[r->node];
    if (parent >= 0)
        __builtin_prefetch(CELL(e, r->up, parent));
    for (int k = 0; k < (int)per->key.kind; k++) {
        const struct score_up *aup =
            per->anc[k] < 0 ? NULL : e->periods[per->anc[k]]->ups[r->up->unit];
        if (!aup)
            continue;
        __builtin_prefetch(CELL(e, aup, r->node));
        if (parent >= 0) /* the cell's parent, queued when the cell changes */
            __builtin_prefetch(CELL(e, aup, parent));
    }
    uint8_t rollup = e->rollup[r->node];
    if (e->event[r->node] || (rollup != SCORE_R_SUM && rollup != SCORE_R_AVG))
        return;
    for (int k = 0; k < (int)per->key.kind; k++) { /* the coarsest: derived_sum's cells */
        if (per->anc[k] < 0)
            continue;
        const struct score_period *ap = e->periods[per->anc[k]];
        for (uint32_t i = 0; i < ap->n_kids; i++) {
            const struct score_period *kp = e->periods[ap->kids[i]];
            if (kp->key.kind == per->key.kind && kp->ups[r->up->unit])
                __builtin_prefetch(CELL(e, kp->ups[r->up->unit], r->node));
        }
        return;
    }
}

/* Prefetches the children's cells of an inner node (adjacent: breadth-first layout). */
__attribute__((always_inline)) static inline void prefetch_kids(const struct score_engine *e,
                                                                const struct cellref *r)
{
    const char *a = (const char *)&r->up->cells[e->kid0[r->node]];
    const char *b = (const char *)&r->up->cells[e->kid0[r->node] + e->nkids[r->node]];
    if (a < b)
        __builtin_prefetch(b - 1);
    for (; a < b; a += 64)
        __builtin_prefetch(a);
    __builtin_prefetch(CELL(e, r->up, r->node));
}

#define FLUSH_PF 8 /* the flush prefetches this many items ahead */

static void flush(struct score_engine *e)
{
    for (size_t i = 0; i < e->n_dleaf; i++) {
        if (i + FLUSH_PF < e->n_dleaf)
            prefetch_derived(e, &e->dleaf[i + FLUSH_PF]);
        struct cellref *r = &e->dleaf[i];
        CELL(e, r->up, r->node)->dirty = false;
        leaf_changed(e, r->up, r->node);
    }
    e->n_dleaf = 0;
    for (size_t i = 0; i < e->n_drs; i++)
        rescore_group(e, e->drs[i].period, e->drs[i].group, e->drs[i].node);
    e->n_drs = 0;
    for (size_t d = e->n_depth; d-- > 0;) {
        for (size_t i = 0; i < e->n_dq[d]; i++) {
            if (i + FLUSH_PF < e->n_dq[d])
                prefetch_kids(e, &e->dq[d][i + FLUSH_PF]);
            struct cellref *r = &e->dq[d][i];
            CELL(e, r->up, r->node)->dirty = false;
            if (!inner_update(e, r->up, r->node))
                continue;
            if (r->node == 0)
                mark_total(e, r->up);
            else
                mark_inner(e, r->up, (uint32_t)e->parent[r->node]);
        }
        e->n_dq[d] = 0;
    }
    for (size_t i = 0; i < e->n_dtot; i++) {
        e->dtot[i]->dirty = false;
        total_update(e, e->dtot[i]);
    }
    e->n_dtot = 0;
    flush_ranks(e);
}

/* Drops the queue (rollback: the cells are restored from the log instead). */
static void flush_discard(struct score_engine *e)
{
    for (size_t i = 0; i < e->n_dleaf; i++)
        CELL(e, e->dleaf[i].up, e->dleaf[i].node)->dirty = false;
    e->n_dleaf = 0;
    e->n_drs = 0;
    for (size_t d = 0; d < e->n_depth; d++) {
        for (size_t i = 0; i < e->n_dq[d]; i++)
            CELL(e, e->dq[d][i].up, e->dq[d][i].node)->dirty = false;
        e->n_dq[d] = 0;
    }
    for (size_t i = 0; i < e->n_dtot; i++)
        e->dtot[i]->dirty = false;
    e->n_dtot = 0;
}

/* ---- public API --------------------------------------------------------------------------------
 */

int score_engine_new(const struct score_scheme *s, struct score_engine **out)
{
    if (s->n_nodes > MAX_NODES)
        return KP_EINVAL;
    struct score_engine *e = calloc(1, sizeof *e);
    if (!e)
        return KP_ENOMEM;
    e->s = s;
    e->memo_period = e->memo_src = -1;
    e->utab = code_tab(s->n_units, score_scheme_unit_code, s, &e->umask);
    e->ntab = code_tab(s->n_nodes, score_scheme_node_code, s, &e->nmask);
    e->n_tree = s->n_nodes;
    for (size_t i = 0; i < s->n_nodes; i++)
        if (s->nodes[i].adjust) {
            e->n_tree = i;
            break;
        }
    size_t nn = s->n_nodes;
    e->event = kp_xcalloc(nn + 1, sizeof *e->event);
    e->pool = kp_xcalloc(nn + 1, sizeof *e->pool);
    e->rollup = kp_xcalloc(nn + 1, sizeof *e->rollup);
    e->input = kp_xcalloc(nn + 1, sizeof *e->input);
    e->relative = kp_xcalloc(nn + 1, sizeof *e->relative);
    e->src_kind = kp_xcalloc(nn + 1, sizeof *e->src_kind);
    e->slot = kp_xcalloc(nn + 1, sizeof *e->slot);
    e->parent = kp_xcalloc(nn + 1, sizeof *e->parent);

    e->inner = kp_xcalloc(nn + 1, sizeof *e->inner);
    for (size_t i = 0; i < nn; i++) {
        const struct score_node *nd = &s->nodes[i];
        e->event[i] = nd->adjust || (nd->leaf && nd->input != SCORE_I_VALUE);
        e->pool[i] = e->event[i] && nd->rollup == SCORE_R_POOL;
        e->rollup[i] = (uint8_t)nd->rollup;
        e->input[i] = (uint8_t)nd->input;
        e->relative[i] = nd->relative;
        e->parent[i] = i < e->n_tree ? (int32_t)nd->parent : -1;
        e->inner[i] = i < e->n_tree && !nd->leaf;
        for (int k = 0; k < SCORE_P__COUNT; k++)
            if (nd->periods & (1u << k))
                e->src_kind[i] = (uint8_t)k;
    }
    /* breadth-first cell layout: the children of a node get adjacent slots, so recomputing
     * a node reads a few cache lines; adjustment kinds follow the tree */
    uint32_t next = 0;
    if (nn) {
        e->slot[0] = next++;
        uint32_t *queue = kp_xcalloc(nn, sizeof *queue);
        size_t head = 0, tail = 0;
        queue[tail++] = 0;
        while (head < tail) {
            const struct score_node *nd = &s->nodes[queue[head++]];
            for (size_t k = 0; k < nd->n_kids; k++) {
                e->slot[nd->kids[k]] = next++;
                queue[tail++] = (uint32_t)nd->kids[k];
            }
        }
        free(queue);
        for (size_t i = e->n_tree; i < nn; i++)
            e->slot[i] = next++;
    }
    KP_ASSERT(next == nn);
    e->goff = kp_xcalloc(s->n_groups + 1, sizeof *e->goff);
    for (size_t g = 1; g <= s->n_groups; g++)
        e->goff[g] = e->goff[g - 1] + (uint32_t)s->groups[g - 1].n_units;
    e->kid0 = kp_xcalloc(nn + 1, sizeof *e->kid0);
    e->nkids = kp_xcalloc(nn + 1, sizeof *e->nkids);
    for (size_t i = 0; i < nn; i++) {
        const struct score_node *nd = &s->nodes[i];
        if (!nd->n_kids)
            continue;
        e->kid0[i] = e->slot[nd->kids[0]];
        e->nkids[i] = (uint16_t)nd->n_kids;
        for (size_t k = 0; k < nd->n_kids; k++) /* breadth first: the kids are adjacent */
            KP_ASSERT(e->slot[nd->kids[k]] == e->kid0[i] + k);
    }
    e->wslot = kp_xcalloc(s->n_units * nn + 1, sizeof *e->wslot);
    e->inner_slot = kp_xcalloc(nn + 1, sizeof *e->inner_slot);
    e->applies = kp_xcalloc(s->n_units * nn / 64 + 1, sizeof *e->applies);
    for (size_t u = 0; u < s->n_units; u++)
        for (size_t i = 0; i < nn; i++)
            if (score__w(s, u, i) != 0)
                e->applies[(u * nn + i) >> 6] |= 1ull << ((u * nn + i) & 63);
    for (size_t i = 0; i < nn; i++) {
        e->inner_slot[e->slot[i]] = e->inner[i];
        for (size_t u = 0; u < s->n_units; u++)
            e->wslot[u * nn + e->slot[i]] = score__w(s, u, i);
    }
    e->depth = kp_xcalloc(nn + 1, sizeof *e->depth);
    for (size_t i = 1; i < e->n_tree; i++) {
        e->depth[i] = (uint8_t)(e->depth[s->nodes[i].parent] + 1); /* preorder */
        if ((size_t)e->depth[i] + 1 > e->n_depth)
            e->n_depth = (size_t)e->depth[i] + 1;
    }
    if (!e->n_depth)
        e->n_depth = 1;
    e->dq = kp_xcalloc(e->n_depth, sizeof *e->dq);
    e->n_dq = kp_xcalloc(e->n_depth, sizeof *e->n_dq);
    e->cap_dq = kp_xcalloc(e->n_depth, sizeof *e->cap_dq);
    *out = e;
    return 0;
}

void score_engine_destroy(struct score_engine **ep)
{
    if (!ep || !*ep)
        return;
    struct score_engine *e = *ep;
    free(e->utab);
    free(e->ntab);
    for (size_t i = 0; i < e->n_rchunks; i++)
        free(e->rchunks[i]);
    free(e->rchunks);
    free(e->map);
    for (size_t i = 0; i < e->n_achunks; i++)
        free(e->achunks[i]);
    free(e->achunks);
    for (size_t i = 0; i < e->n_big; i++)
        free(e->big[i]);
    free(e->big);
    for (size_t i = 0; i < e->n_gchunks; i++)
        free(e->gchunks[i]);
    free(e->gchunks);
    for (size_t i = 0; i < e->n_srcs; i++)
        free(e->srcs[i]);
    free(e->srcs);
    score__strmap_fini(&e->src_map);
    for (size_t i = 0; i < e->n_ups; i++) {
        free(e->ups[i]->cells);
        free(e->ups[i]);
    }
    free(e->ups);
    for (size_t p = 0; p < e->n_periods; p++) {
        free(e->periods[p]->ups);
        free(e->periods[p]->kids);
        free(e->periods[p]->rank_dirty);
        free(e->periods[p]->ord);
        free(e->periods[p]->n_ord);
        free(e->periods[p]);
    }
    free(e->periods);
    score__strmap_fini(&e->period_map);
    free(e->event);
    free(e->pool);
    free(e->rollup);
    free(e->input);
    free(e->relative);
    free(e->kid0);
    free(e->nkids);
    free(e->wslot);
    free(e->applies);
    free(e->inner_slot);
    free(e->src_kind);
    free(e->slot);
    free(e->parent);

    free(e->inner);
    free(e->depth);
    for (size_t d = 0; d < e->n_depth; d++)
        free(e->dq[d]);
    free(e->dq);
    free(e->n_dq);
    free(e->cap_dq);
    free(e->dleaf);
    free(e->drs);
    free(e->dtot);

    free(e->rk);
    free(e->goff);
    free(e->undo);
    free(e->disp);
    free(e->kill);
    free(e->clog);
    free(e->tlog);
    score__bloom_fini(&e->cold);
    free(e);
    *ep = NULL;
}

/* The checks of score_engine_check(); on KP_R_OK *u and *n hold the unit and the leaf and *p
 * the period's index, or -1 when the engine has not seen the period yet.
 * Codes equal to the
 * last applied observation's are recognised without a lookup. */
static enum kp_reason resolve(const struct score_engine *e, const struct score_obs *o, char *msg,
                              size_t msg_len, uint32_t *u_out, uint32_t *n_out, long *p_out)
{
    const struct score_scheme *s = e->s;
    char dummy[1];
    if (!msg || !msg_len) {
        msg = dummy;
        msg_len = sizeof dummy;
    }
    msg[0] = '\0';
    if (!o->src || !o->ref || !*o->src || !*o->ref) {
        snprintf(msg, msg_len, "src and ref are required");
        return KP_R_missing_field;
    }
    if (!o->unit || !o->indicator) {
        snprintf(msg, msg_len, "unit and indicator are required");
        return KP_R_missing_field;
    }
    /* codes of fewer than 16 bytes (all in practice) by their packed words, the rest by the
     * scheme's maps */
    long u = code_find(e->utab, e->umask, o->unit);
    if (u == -2)
        u = score_scheme_unit_find(s, o->unit);
    if (u < 0) {
        snprintf(msg, msg_len, "unit '%s' is not in scheme %s", o->unit, s->id);
        return KP_R_unknown_unit;
    }
    long n = code_find(e->ntab, e->nmask, o->indicator);
    if (n == -2)
        n = score_scheme_node_find(s, o->indicator);
    if (n < 0 || !s->nodes[n].leaf) {
        snprintf(msg, msg_len, "indicator '%s' is not a leaf of scheme %s", o->indicator, s->id);
        return KP_R_unknown_indicator;
    }
    const struct score_node *nd = &s->nodes[n];
    size_t an = (size_t)u * s->n_nodes + (size_t)n;
    if (!(e->applies[an >> 6] >> (an & 63) & 1)) { /* score__w(s, u, n) == 0 */
        snprintf(msg, msg_len, "indicator '%s' does not apply to unit '%s' (group %s)",
                 o->indicator, o->unit, s->groups[s->units[u].group].code);
        return KP_R_unknown_indicator;
    }
    if (nd->n_srcs) {
        bool ok = false;
        for (size_t i = 0; i < nd->n_srcs && !ok; i++)
            ok = streq(nd->srcs[i], o->src);
        if (!ok) {
            snprintf(msg, msg_len, "source '%s' does not deliver indicator '%s'", o->src,
                     o->indicator);
            return KP_R_not_granted_indicator;
        }
    }
    if (e->n_srcs >= MAX_SRCS && score__strmap_get(&e->src_map, o->src) < 0) {
        snprintf(msg, msg_len, "source '%s': the engine already takes %d sources", o->src,
                 MAX_SRCS);
        return KP_R_not_granted_indicator;
    }
    struct score__period_key k;
    long known = e->memo_period;
    if (o->period && (known < 0 || !streq(o->period, e->periods[known]->code)))
        known = score__strmap_get(&e->period_map, o->period);
    if (known >= 0 && o->period)
        k = e->periods[known]->key; /* seen before: valid */
    else if (!o->period || score__period_parse(o->period, &k)) {
        snprintf(msg, msg_len, "period '%s' is not in the period grammar",
                 o->period ? o->period : "");
        return KP_R_bad_period;
    }
    if (!(nd->periods & (1u << k.kind))) {
        snprintf(msg, msg_len, "indicator '%s' does not take %s periods", o->indicator,
                 score__pkind_name(k.kind));
        return KP_R_bad_period;
    }
    if (s->year && k.year != s->year) {
        snprintf(msg, msg_len, "period '%s' is outside the scheme's year %d", o->period, s->year);
        return KP_R_bad_period;
    }
    if (!isfinite(o->value) || !isfinite(o->w)) {
        snprintf(msg, msg_len, "value or weight is not finite");
        return KP_R_not_finite;
    }
    if (o->value < nd->vmin || o->value > nd->vmax) {
        snprintf(msg, msg_len, "value %g outside [%g, %g] of indicator '%s'", o->value, nd->vmin,
                 nd->vmax, o->indicator);
        return KP_R_out_of_range;
    }
    if (o->w < 0) {
        snprintf(msg, msg_len, "weight %g is negative", o->w);
        return KP_R_out_of_range;
    }
    if (e->event[n] && (fabs(o->value) > EVENT_MAX || o->w > EVENT_MAX)) {
        snprintf(msg, msg_len, "value %g or weight %g of an event beyond ±%g (indicator '%s')",
                 o->value, o->w, EVENT_MAX, o->indicator);
        return KP_R_out_of_range;
    }
    *u_out = (uint32_t)u;
    *n_out = (uint32_t)n;
    *p_out = known;
    return KP_R_OK;
}

enum kp_reason score_engine_check(const struct score_engine *e, const struct score_obs *o,
                                  char *msg, size_t msg_len)
{
    uint32_t u, n;
    long p;
    return resolve(e, o, msg, msg_len, &u, &n, &p);
}

void score_engine_begin(struct score_engine *e)
{
    KP_ASSERT(!e->in_txn);
    e->in_txn = true;
    e->n_undo = 0;
    e->n_clog = 0;
    e->n_tlog = 0;
    e->txn_n_recs = e->n_recs;
    e->txn_n_achunks = e->n_achunks;
    e->txn_a_used = e->a_used;
    e->txn_n_big = e->n_big;
    e->n_disp = 0;
    e->failed = false;
}

enum kp_reason score_engine_check_ex(const struct score_engine *e, const struct score_obs *o,
                                     char *msg, size_t msg_len, struct score_checked *out)
{
    uint32_t u, n;
    long p;
    enum kp_reason r = resolve(e, o, msg, msg_len, &u, &n, &p);
    if (r == KP_R_OK && out) {
        out->unit_p = o->unit;
        out->indicator_p = o->indicator;
        out->period_p = o->period;
        out->unit = u;
        out->node = (uint16_t)n; /* MAX_NODES */
        out->period1 = p >= 0 && p < UINT16_MAX ? (uint16_t)(p + 1) : 0;
    }
    return r;
}

/* The first step of an apply: the observation's unit, leaf, source and period (created on
 * first use, as their order of arrival decides) and its record's hash. With a handle of
 * score_engine_check_ex() whose codes are the observation's, the checks are not repeated. */
/* What the observations of one score_engine_apply_batch() call share: their strings do not
 * change during the call, so the same src pointer is the same source. */
struct batch_memo {
    const char *src_p;
    uint32_t src;
};

static inline bool handle_ok(const struct score_engine *e, const struct score_obs *o,
                             const struct score_checked *chk)
{
    const struct score_scheme *s = e->s;
    if (chk->unit >= s->n_units || chk->node >= s->n_nodes)
        return false;
    return (o->unit == chk->unit_p || streq(o->unit, s->units[chk->unit].code)) &&
           (o->indicator == chk->indicator_p || streq(o->indicator, s->nodes[chk->node].code));
}

static inline enum kp_reason prepare(struct score_engine *e, const struct score_obs *o,
                                     const struct score_checked *chk, struct batch_memo *bm,
                                     struct pend *pd)
{
    uint32_t u, n;
    long p = -1;
    pd->o = o;
    if (chk && handle_ok(e, o, chk)) {
        u = chk->unit;
        n = chk->node;
        /* periods are never removed: the index the check found still holds */
        if (chk->period1 && o->period == chk->period_p && chk->period1 <= e->n_periods)
            p = chk->period1 - 1;
    } else {
        enum kp_reason reason = resolve(e, o, NULL, 0, &u, &n, &p);
        if (reason != KP_R_OK)
            return pd->reason = reason;
    }
    uint32_t src;
    if (bm && bm->src_p == o->src) {
        src = bm->src;
    } else if (e->memo_src >= 0 && streq(o->src, e->srcs[e->memo_src])) {
        src = (uint32_t)e->memo_src;
    } else {
        long id = score__strmap_get(&e->src_map, o->src);
        if (id < 0 && e->n_srcs >= MAX_SRCS) /* what resolve() refuses */
            return pd->reason = KP_R_not_granted_indicator;
        src = id >= 0 ? (uint32_t)id : src_get(e, o->src);
    }
    if (p < 0) {
        p = e->memo_period;
        if (p < 0 || !streq(o->period, e->periods[p]->code))
            p = period_get(e, o->period);
    }
    e->memo_period = p;
    e->memo_src = src;
    if (bm) {
        bm->src_p = o->src;
        bm->src = src;
    }
    pd->u = u;
    pd->n = n;
    pd->src = src;
    pd->p = (uint32_t)p;
    size_t len = strlen(o->ref);
    pd->len = (uint32_t)len;
    pd->hash = rec_hash(src, o->ref, len);
    return pd->reason = KP_R_OK;
}

/* Prefetches what finish() will read for a prepared observation: its record's map slot and
 * its cell (early), then the record and the cell's sums (once the slot and cell are in). */
/* always_inline: a function that only prefetches counts as pure for gcc, and a call to it is
 * dropped before it would be inlined */
__attribute__((always_inline)) static inline void prefetch_early(const struct score_engine *e,
                                                                 const struct pend *pd)
{
    if (pd->reason != KP_R_OK)
        return;
    if (e->map_cap)
        __builtin_prefetch(&e->map[pd->hash & (e->map_cap - 1)]);
    const struct score_period *per = e->periods[pd->p];
    const struct score_up *up = per->ups[pd->u];
    if (up)
        __builtin_prefetch(CELL(e, up, pd->n));
    if (!e->pool[pd->n])
        return;
    for (int k = 0; k < (int)per->key.kind; k++) {
        const struct score_up *aup = per->anc[k] < 0 ? NULL : e->periods[per->anc[k]]->ups[pd->u];
        if (aup)
            __builtin_prefetch(CELL(e, aup, pd->n));
    }
}

__attribute__((always_inline)) static inline void prefetch_late(const struct score_engine *e,
                                                                const struct pend *pd)
{
    if (pd->reason != KP_R_OK)
        return;
    if (e->map_cap) {
        const struct slot *sl = &e->map[pd->hash & (e->map_cap - 1)];
        if (sl->idx1 && sl->hash == pd->hash)
            __builtin_prefetch(R(e, sl->idx1 - 1));
    }
    if (!e->event[pd->n])
        return;
    const struct score_period *per = e->periods[pd->p];
    const struct score_up *up = per->ups[pd->u];
    if (up && CELL(e, up, pd->n)->aux != NONE)
        __builtin_prefetch(G(e, CELL(e, up, pd->n)->aux));
    if (!e->pool[pd->n])
        return;
    for (int k = 0; k < (int)per->key.kind; k++) {
        const struct score_up *aup = per->anc[k] < 0 ? NULL : e->periods[per->anc[k]]->ups[pd->u];
        if (aup && CELL(e, aup, pd->n)->aux != NONE)
            __builtin_prefetch(G(e, CELL(e, aup, pd->n)->aux));
    }
}

/* The rest of an apply: the record, its cells, the flush queue. */
static void finish(struct score_engine *e, const struct pend *pd)
{
    const struct score_obs *o = pd->o;
    uint32_t u = pd->u, n = pd->n, src = pd->src, hash = pd->hash;
    size_t len = pd->len;
    if (e->failed)
        return;
    uint32_t idx = rec_find(e, hash, src, o->ref);
    /* ARCHITECTURE.md guarantee 2: a revision lower than or equal to the held one changes
     * nothing. */
    if (idx != NONE && o->rev <= R(e, idx)->rev)
        return;
    if (idx != NONE && e->loader && !cell_ready(e, idx, pd)) {
        e->failed = true;
        return;
    }
    struct score_up *up = up_get(e, pd->p, u);
    if (e->in_txn) {
        GROW(e->undo, e->n_undo, e->cap_undo);
        struct undo *ud = &e->undo[e->n_undo++];
        ud->idx = idx;
        ud->created = idx == NONE;
        ud->loaded = false;
        if (idx != NONE)
            ud->old = *R(e, idx);
    }
    struct score_up *oup = NULL;
    uint32_t on = 0;
    bool moved = false;
    uint32_t carry = 0;
    if (idx != NONE) {
        const struct score_rec *r = R(e, idx);
        carry = detach_rec(e, idx, 1);
        oup = e->ups[r->up];
        on = r->node;
        moved = oup != up || on != n;
        KP_ASSERT(!carry || !moved); /* cell_ready() */
    } else {
        idx = rec_create(e, src, o->ref, len, hash);
        if (e->in_txn)
            e->undo[e->n_undo - 1].idx = idx;
    }
    struct score_rec *r = R(e, idx);
    r->rev = o->rev;
    r->up = up->idx;
    r->node = (uint16_t)n;
    r->value = o->value;
    if (e->event[n])
        r->x.w = o->w;
    else
        r->x.v.at = o->at;
    attach_rec(e, idx, 1, carry);
    if (moved)
        mark_leaf(e, oup, on);
    mark_leaf(e, up, n);
    if (!e->in_txn)
        flush(e);
}

enum kp_reason score_engine_apply(struct score_engine *e, const struct score_obs *o)
{
    struct pend pd;
    if (prepare(e, o, NULL, NULL, &pd) != KP_R_OK)
        return pd.reason;
    bool own = e->evict && !e->in_txn; /* its own unit of work: the eviction is at commit */
    if (own)
        score_engine_begin(e);
    finish(e, &pd);
    if (own)
        score_engine_commit(e);
    return KP_R_OK;
}

size_t score_engine_apply_batch(struct score_engine *e, const struct score_obs *obs,
                                const struct score_checked *chk, size_t n, enum kp_reason *reasons)
{
    /* a ring of prepared observations: obs[j + PF_DIST - 1] is looked up (its map slot and
     * cell prefetched) while obs[j] is applied; halfway its record and sums are prefetched */
    struct pend ring[PF_DIST];
    struct batch_memo bm = {NULL, 0};
    size_t refused = 0, pre = 0;
    bool own = e->evict && !e->in_txn;
    if (own)
        score_engine_begin(e);
    for (size_t j = 0; j < n; j++) {
        for (; pre < n && pre < j + PF_DIST; pre++) {
            struct pend *pd = &ring[pre % PF_DIST];
            prepare(e, &obs[pre], chk ? &chk[pre] : NULL, &bm, pd);
            prefetch_early(e, pd);
        }
        if (j + PF_DIST / 2 < pre)
            prefetch_late(e, &ring[(j + PF_DIST / 2) % PF_DIST]);
        const struct pend *pd = &ring[j % PF_DIST];
        if (reasons)
            reasons[j] = pd->reason;
        if (pd->reason != KP_R_OK) {
            refused++;
            continue;
        }
        finish(e, pd);
    }
    if (own)
        score_engine_commit(e);
    return refused;
}

/* Gives back the memory of a log that one large unit of work (a recovery replay, a big group)
 * grew: once it holds over 64 KiB and four times what this unit of work used. */
#define SHRINK(arr, n, cap)                                                                        \
    do {                                                                                           \
        if ((cap) * sizeof *(arr) > 65536 && (n)*4 < (cap)) {                                      \
            (cap) = (n)*2 > 1024 ? (n)*2 : 1024;                                                   \
            (arr) = kp_xrealloc((arr), (cap) * sizeof *(arr));                                     \
        }                                                                                          \
    } while (0)

static void txn_end(struct score_engine *e)
{
    for (size_t i = 0; i < e->n_clog; i++)
        CELL(e, e->clog[i].up, e->clog[i].node)->touched = false;
    for (size_t i = 0; i < e->n_tlog; i++)
        e->tlog[i].up->touched = false;
    SHRINK(e->undo, e->n_undo, e->cap_undo);
    SHRINK(e->clog, e->n_clog, e->cap_clog);
    SHRINK(e->tlog, e->n_tlog, e->cap_tlog);
    SHRINK(e->disp, e->n_disp, e->cap_disp);
    SHRINK(e->kill, e->n_kill, e->cap_kill);
    e->n_undo = 0;
    e->n_clog = 0;
    e->n_tlog = 0;
    e->in_txn = false;
}

/* ---- evicted event records ---------------------------------------------------------------- */

/* Moves record i to the free index dst < i: its map slot, its value list's links, its cell. */
static void rec_move(struct score_engine *e, uint32_t i, uint32_t dst)
{
    struct score_rec *r = R(e, dst);
    *r = *R(e, i);
    const char *ref = rec_ref(e, r);
    map_slot(e, rec_hash(r->src, ref, strlen(ref)), i)->idx1 = dst + 1;
    if (e->event[r->node])
        return;
    if (r->x.v.prev != NONE)
        R(e, r->x.v.prev)->x.v.next = dst;
    if (r->x.v.next != NONE)
        R(e, r->x.v.next)->x.v.prev = dst;
    struct score_cell *c = CELL(e, e->ups[r->up], r->node);
    if (c->aux == i)
        c->aux = dst;
}

static int u32_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static inline void kill_add(struct score_engine *e, uint32_t idx)
{
    GROW(e->kill, e->n_kill, e->cap_kill);
    e->kill[e->n_kill++] = idx;
}

/* A value record to evict if it is in memory and not the latest of its cell. */
static void kill_value(struct score_engine *e, uint32_t idx)
{
    if (idx >= e->n_recs)
        return;
    const struct score_rec *r = R(e, idx);
    if (!e->event[r->node] && CELL(e, e->ups[r->up], r->node)->aux != idx)
        kill_add(e, idx);
}

size_t score__arena_garbage_min = (size_t)1 << 20;

/* Moves r's ref down to the packing cursor (*cn chunks in use, *cu bytes used in the last), by
 * the rule ref_store() places refs with, and advances the cursor. */
static void arena_move(struct score_engine *e, struct score_rec *r, size_t *cn, size_t *cu)
{
    const char *old = ref_str(e, r->ref.h);
    size_t len = strlen(old), need = (len + 1 + 3) & ~(size_t)3;
    if (!*cn || *cu + need > ARENA_CHUNK) {
        ++*cn;
        *cu = 0;
    }
    memmove(e->achunks[*cn - 1] + *cu, old, len + 1);
    r->ref.h = (uint32_t)((*cn - 1) << 16) | (uint32_t)(*cu >> 2);
    *cu += need;
}

/* The arena ends at the packing cursor: the chunks past it go back. */
static void arena_cut(struct score_engine *e, size_t cn, size_t cu)
{
    while (e->n_achunks > cn)
        free(e->achunks[--e->n_achunks]);
    e->a_used = cu;
}

/* Packs the arena's live refs down in place, in arena order (a subset packed in the same order
 * lands no later than where it was, so memmove suffices), and gives back the chunks left empty:
 * once the evicted refs take an eighth of the arena and at least score__arena_garbage_min. A
 * handle is chunk << 16 | offset / 4, so arena order needs no sort: the records are counted
 * into one bucket per chunk, and a chunk's records are placed in a table by offset and read
 * back in order. The scratch is 4 bytes a ref and the table (256 KiB), where a sort of 8-byte
 * pairs took 16 bytes a ref with glibc qsort's merge buffer (docs/BENCHMARKS.md round 13). */
static void arena_compact(struct score_engine *e)
{
    size_t total = score__arena_used(e);
    if (!e->a_garbage || e->a_garbage < score__arena_garbage_min || e->a_garbage * 8 < total)
        return;
    size_t nc = e->n_achunks, per_chunk = ARENA_CHUNK / 4;
    uint32_t *end = kp_xcalloc(nc + 1, sizeof *end); /* bucket c: [end[c - 1], end[c]) */
    for (uint32_t i = 0; i < e->n_recs; i++) {
        const struct score_rec *r = R(e, i);
        if (!(r->meta & REF_INLINE) && !(r->ref.h & BIG_BIT))
            end[(r->ref.h >> 16) + 1]++;
    }
    for (size_t c = 1; c <= nc; c++)
        end[c] += end[c - 1];
    uint32_t *by_chunk = kp_xmalloc((end[nc] ? end[nc] : 1) * sizeof *by_chunk);
    for (uint32_t i = 0; i < e->n_recs; i++) { /* end[c] walks from bucket c's start to its end */
        const struct score_rec *r = R(e, i);
        if (!(r->meta & REF_INLINE) && !(r->ref.h & BIG_BIT))
            by_chunk[end[r->ref.h >> 16]++] = i;
    }
    uint32_t *at = kp_xcalloc(per_chunk, sizeof *at); /* offset / 4 -> record + 1 */
    size_t cn = 0, cu = 0;
    for (size_t c = 0, k = 0; c < nc; c++) {
        for (; k < end[c]; k++) {
            uint32_t off = R(e, by_chunk[k])->ref.h & 0xFFFFu;
            KP_ASSERT(!at[off]); /* a ref is its record's alone (ref_store) */
            at[off] = by_chunk[k] + 1;
        }
        for (size_t off = 0; off < per_chunk; off++)
            if (at[off]) {
                arena_move(e, R(e, at[off] - 1), &cn, &cu);
                at[off] = 0;
            }
    }
    free(at);
    free(by_chunk);
    free(end);
    arena_cut(e, cn, cu);
    e->a_garbage = 0;
}

/* At commit, before the holes are filled: the refs the unit of work stored are the arena's
 * tail, in the order of their records (records are only appended during a unit of work). Those
 * of the records that stay are packed down over those of the evicted ones (the cursor never
 * passes a ref it has yet to move: it packs a subsequence by the rule ref_store() placed them
 * with), so the events of a unit of work leave no garbage for arena_compact() to sort out. */
static void arena_pack_tail(struct score_engine *e)
{
    size_t cn = e->txn_n_achunks, cu = e->txn_a_used, k = 0;
    while (k < e->n_kill && e->kill[k] < e->txn_n_recs)
        k++;
    for (uint32_t i = e->txn_n_recs; i < e->n_recs; i++) {
        if (k < e->n_kill && e->kill[k] == i) {
            k++;
            continue;
        }
        struct score_rec *r = R(e, i);
        if (!(r->meta & REF_INLINE) && !(r->ref.h & BIG_BIT))
            arena_move(e, r, &cn, &cu);
    }
    arena_cut(e, cn, cu);
}

/* At commit, with evict set: the event records the unit of work created or loaded (the last
 * ones, from txn_n_recs) leave memory and their keys enter the filter of evicted keys; their
 * sums hold what they count. With a loader, so do the value records the unit of work touched,
 * loaded or displaced that are not the latest of their cell (the cell's count keeps them). The
 * last records fill the holes; the refs' bytes are given back by arena_compact(). */
static void evict(struct score_engine *e)
{
    e->n_kill = 0;
    /* a loaded key leaves the evicted ones; below, every evicted record enters them */
    for (size_t i = 0; i < e->n_undo; i++)
        e->n_cold -= e->undo[i].loaded;
    for (uint32_t i = e->txn_n_recs; i < e->n_recs; i++)
        if (e->event[R(e, i)->node])
            kill_add(e, i);
    if (e->loader) {
        for (size_t i = 0; i < e->n_undo; i++)
            kill_value(e, e->undo[i].idx);
        for (size_t i = 0; i < e->n_disp; i++)
            kill_value(e, e->disp[i]);
    }
    e->n_disp = 0;
    if (!e->n_kill)
        return;
    qsort(e->kill, e->n_kill, sizeof *e->kill, u32_cmp);
    size_t nk = 0;
    for (size_t i = 0; i < e->n_kill; i++)
        if (!nk || e->kill[nk - 1] != e->kill[i])
            e->kill[nk++] = e->kill[i];
    e->n_kill = nk;
    for (size_t k = 0; k < nk; k++) {
        uint32_t i = e->kill[k];
        struct score_rec *r = R(e, i);
        if (!e->event[r->node]) { /* out of its cell's list, still in its count */
            R(e, r->x.v.prev)->x.v.next = r->x.v.next;
            if (r->x.v.next != NONE)
                R(e, r->x.v.next)->x.v.prev = r->x.v.prev;
        }
        const char *ref = rec_ref(e, r);
        size_t len = strlen(ref);
        uint64_t h = rec_hash64(r->src, ref, len);
        if (!score__bloom_maybe(&e->cold, h)) /* a loaded record's key is in already */
            score__bloom_add(&e->cold, h);
        map_del(e, (uint32_t)h, i);
        e->n_cold++;
        if (!(r->meta & REF_INLINE)) {
            if (r->ref.h & BIG_BIT) {
                free(e->big[r->ref.h & ~BIG_BIT]);
                e->big[r->ref.h & ~BIG_BIT] = NULL;
            } else if (i < e->txn_n_recs) { /* older: arena_compact; the rest: pack_tail */
                e->a_garbage += (len + 1 + 3) & ~(size_t)3;
            }
        }
    }
    arena_pack_tail(e);
    /* the last records that stay fill the holes, lowest first */
    uint32_t n = e->n_recs;
    size_t hi = nk; /* kill[hi - 1]: the highest hole not yet passed */
    for (size_t k = 0; k < nk; k++) {
        uint32_t hole = e->kill[k];
        while (hi > k && n - 1 == e->kill[hi - 1]) { /* the last record is a hole itself */
            n--;
            hi--;
        }
        if (hi <= k)
            break;
        rec_move(e, n - 1, hole);
        n--;
    }
    e->n_recs = n;
    while (e->n_big && !e->big[e->n_big - 1])
        e->n_big--;
    /* the record chunks past the last one in use, but one, go back */
    size_t keep = ((size_t)n >> REC_SHIFT) + 2;
    while (e->n_rchunks > keep)
        free(e->rchunks[--e->n_rchunks]);
    arena_compact(e);
}

void score_engine_evict_events(struct score_engine *e)
{
    KP_ASSERT(!e->in_txn && !e->n_recs);
    e->evict = true;
}

void score_engine_evict_values(struct score_engine *e, score_cell_loader load, void *ctx)
{
    KP_ASSERT(!e->in_txn && !e->n_recs && e->evict && load);
    e->loader = load;
    e->loader_ctx = ctx;
}

bool score_engine_failed(const struct score_engine *e)
{
    return e->failed;
}

bool score_engine_maybe_cold(const struct score_engine *e, const struct score_obs *o)
{
    if (!e->cold.n_keys)
        return false;
    long src = score__strmap_get(&e->src_map, o->src);
    if (src < 0)
        return false; /* no record of the source was ever held */
    uint64_t h = rec_hash64((uint32_t)src, o->ref, strlen(o->ref));
    if (rec_find(e, (uint32_t)h, (uint32_t)src, o->ref) != NONE)
        return false;
    return score__bloom_maybe(&e->cold, h);
}

bool score_engine_load(struct score_engine *e, const struct score_obs *o)
{
    KP_ASSERT(e->in_txn);
    struct pend pd;
    if (prepare(e, o, NULL, NULL, &pd) != KP_R_OK)
        return false; /* the scheme does not take it: it was never applied */
    if (rec_find(e, pd.hash, pd.src, o->ref) != NONE)
        return true;
    if (!e->event[pd.n] && !e->loader)
        return false; /* value records stay in memory: this one was never applied */
    struct score_up *up = up_get(e, pd.p, pd.u);
    uint32_t idx = rec_create(e, pd.src, o->ref, pd.len, pd.hash);
    struct score_rec *r = R(e, idx);
    r->rev = o->rev;
    r->up = up->idx;
    r->node = (uint16_t)pd.n;
    r->value = o->value;
    if (e->event[pd.n]) {
        r->x.w = o->w; /* its sums count it already */
    } else {
        r->x.v.at = o->at;
        attach_rec(e, idx, 0, 0); /* back in its cell's list; the cell counts it already */
    }
    GROW(e->undo, e->n_undo, e->cap_undo);
    e->undo[e->n_undo++] = (struct undo){.idx = idx, .created = true, .loaded = true};
    return true;
}

void score_engine_commit(struct score_engine *e)
{
    flush(e);
    if (e->evict)
        evict(e);
    txn_end(e);
}

void score_engine_rollback(struct score_engine *e)
{
    if (!e->in_txn)
        return;
    flush_discard(e);
    /* the records as at begin: the event sums are integers, so undoing is exact */
    for (size_t i = e->n_undo; i-- > 0;) {
        const struct undo *ud = &e->undo[i];
        uint32_t carry = 0;
        if (!ud->loaded)
            carry = detach_rec(e, ud->idx, 1);
        else if (!e->event[R(e, ud->idx)->node])
            carry = detach_rec(e, ud->idx, 0); /* out of memory again, still counted */
        if (ud->created) {
            KP_ASSERT(!carry); /* the cell's latest before it is in memory */
            rec_remove(e, ud->idx);
            continue;
        }
        KP_ASSERT(!carry ||
                  (R(e, ud->idx)->up == ud->old.up && R(e, ud->idx)->node == ud->old.node));
        *R(e, ud->idx) = ud->old;
        attach_rec(e, ud->idx, 1, carry);
    }
    /* records and ref strings created in the unit of work are the last ones */
    e->n_recs = e->txn_n_recs;
    while (e->n_achunks > e->txn_n_achunks)
        free(e->achunks[--e->n_achunks]);
    e->a_used = e->n_achunks ? e->txn_a_used : 0;
    while (e->n_big > e->txn_n_big)
        free(e->big[--e->n_big]);
    /* every cell and total as at begin, from the log of their first touch */
    for (size_t i = e->n_clog; i-- > 0;) {
        const struct cell_log *l = &e->clog[i];
        struct score_cell *c = CELL(e, l->up, l->node);
        c->present = l->present;
        c->a = l->a;
        c->score = l->score;
        c->n_obs = l->n_obs;
    }
    /* a derived value-leaf cell of rollup latest points to its latest present finer period:
     * found again among the (restored) finer cells */
    for (size_t i = 0; i < e->n_clog; i++) {
        const struct cell_log *l = &e->clog[i];
        if (is_derived_value(e, l->up, l->node) && e->rollup[l->node] == SCORE_R_LATEST)
            CELL(e, l->up, l->node)->aux = latest_scan(e, l->up->period, l->up->unit, l->node);
    }
    for (size_t i = e->n_tlog; i-- > 0;) {
        const struct total_log *l = &e->tlog[i];
        struct score_up *up = l->up;
        up->present = l->present;
        up->total = l->total;
        up->coverage = l->coverage;
        up->key = l->key;
        up->rank = l->rank;
        up->grade = l->grade;
        up->vetoed = l->vetoed;
    }
    for (size_t i = 0; i < e->n_rk; i++)
        e->periods[e->rk[i].period]->rank_dirty[e->rk[i].group] = 0;
    e->n_rk = 0;
    txn_end(e);
}

static bool is_inner(const struct score_engine *e, size_t n)
{
    return e->inner[n];
}

static inline void fill_cell_of(const struct score_up *up, uint32_t n, const struct score_cell *c,
                                bool inner, struct score_cell_change *out)
{
    out->unit = up->unit;
    out->node = n;
    out->period = up->pcode;
    out->value = c->present && !inner ? c->a : NAN;
    out->score = c->present ? c->score : NAN;
    out->n_obs = c->present ? c->n_obs : 0;
}

static inline void fill_cell(const struct score_engine *e, const struct score_up *up, uint32_t n,
                             struct score_cell_change *out)
{
    fill_cell_of(up, n, CELL(e, up, n), is_inner(e, n), out);
}

static void fill_total(const struct score_engine *e, const struct score_up *up,
                       struct score_total_change *out)
{
    out->unit = up->unit;
    out->period = e->periods[up->period]->code;
    out->total = up->present ? up->total : 0;
    out->coverage = up->present ? up->coverage : 0;
    out->rank = up->present ? rank_of(e, up) : 0;
    out->grade = up->present && up->grade >= 0 ? e->s->grades[up->grade].name : "";
    out->vetoed = up->present && up->vetoed;
}

void score_engine_changes(struct score_engine *e,
                          void (*cell_fn)(const struct score_cell_change *c, void *arg),
                          void (*total_fn)(const struct score_total_change *t, void *arg),
                          void *arg)
{
    flush(e);
    for (size_t i = 0; cell_fn && i < e->n_clog; i++) {
        const struct cell_log *l = &e->clog[i];
        if (l->node == 0) /* the root is reported as the total */
            continue;
        const struct score_cell *c = CELL(e, l->up, l->node);
        bool inner = is_inner(e, l->node);
        if (c->present == l->present && (inner || same(c->a, l->a)) && same(c->score, l->score) &&
            c->n_obs == l->n_obs)
            continue;
        struct score_cell_change ch;
        fill_cell_of(l->up, l->node, c, inner, &ch);
        cell_fn(&ch, arg);
    }
    for (size_t i = 0; total_fn && i < e->n_tlog; i++) {
        const struct total_log *l = &e->tlog[i];
        const struct score_up *up = l->up;
        if (up->present == l->present && same(up->total, l->total) && up->coverage == l->coverage &&
            up->rank == l->rank && up->grade == l->grade && up->vetoed == l->vetoed)
            continue;
        struct score_total_change t;
        fill_total(e, up, &t);
        total_fn(&t, arg);
    }
}

/* ---- read access ------------------------------------------------------------------------- */

static const struct score_up *find_up(const struct score_engine *e, size_t unit, const char *period)
{
    if (unit >= e->s->n_units || !period)
        return NULL;
    long p = score__strmap_get(&e->period_map, period);
    return p < 0 ? NULL : e->periods[p]->ups[unit];
}

int score_engine_total(const struct score_engine *e, size_t unit, const char *period,
                       struct score_total_change *out)
{
    const struct score_up *up = find_up(e, unit, period);
    if (!up || !up->present)
        return KP_ENOENT;
    fill_total(e, up, out);
    return 0;
}

int score_engine_cell(const struct score_engine *e, size_t unit, size_t node, const char *period,
                      struct score_cell_change *out)
{
    const struct score_up *up = find_up(e, unit, period);
    if (!up || node >= e->s->n_nodes || !CELL(e, up, node)->present)
        return KP_ENOENT;
    fill_cell(e, up, (uint32_t)node, out);
    return 0;
}

int score_engine_cells(const struct score_engine *e, size_t unit, const char *period, size_t first,
                       size_t n, double *value, double *score, uint32_t *n_obs)
{
    const struct score_up *up = find_up(e, unit, period);
    if (!up || first > e->s->n_nodes || n > e->s->n_nodes - first)
        return KP_ENOENT;
    for (size_t i = 0; i < n; i++) {
        struct score_cell_change c;
        fill_cell(e, up, (uint32_t)(first + i), &c);
        value[i] = c.value;
        score[i] = c.score;
        n_obs[i] = c.n_obs;
    }
    return 0;
}

void score_engine_foreach_total(const struct score_engine *e,
                                void (*fn)(const struct score_total_change *t, void *arg),
                                void *arg)
{
    for (size_t p = 0; p < e->n_periods; p++)
        for (size_t u = 0; u < e->s->n_units; u++) {
            const struct score_up *up = e->periods[p]->ups[u];
            if (!up || !up->present)
                continue;
            struct score_total_change t;
            fill_total(e, up, &t);
            fn(&t, arg);
        }
}

void score_engine_foreach_cell(const struct score_engine *e,
                               void (*fn)(const struct score_cell_change *c, void *arg), void *arg)
{
    for (size_t p = 0; p < e->n_periods; p++)
        for (size_t u = 0; u < e->s->n_units; u++) {
            const struct score_up *up = e->periods[p]->ups[u];
            if (!up)
                continue;
            for (size_t n = 1; n < e->s->n_nodes; n++) {
                if (!CELL(e, up, n)->present)
                    continue;
                struct score_cell_change ch;
                fill_cell(e, up, (uint32_t)n, &ch);
                fn(&ch, arg);
            }
        }
}

size_t score_engine_bytes(const struct score_engine *e)
{
    size_t b = sizeof *e;
    b += e->n_rchunks * (sizeof(struct score_rec) << REC_SHIFT) + e->map_cap * sizeof *e->map;
    b += e->n_gchunks * (sizeof(struct score_agg) << AGG_SHIFT);
    b += e->n_achunks * (size_t)ARENA_CHUNK;
    for (size_t i = 0; i < e->n_big; i++)
        b += strlen(e->big[i]) + 1;
    b += e->n_ups * (sizeof(struct score_up) + e->s->n_nodes * sizeof(struct score_cell));
    b += e->n_periods * (sizeof(struct score_period) + e->s->n_units * 2 * sizeof(void *));
    b += e->cap_undo * sizeof *e->undo + e->cap_clog * sizeof *e->clog +
         e->cap_tlog * sizeof *e->tlog;
    return b + score__bloom_bytes(&e->cold);
}

size_t score__arena_used(const struct score_engine *e)
{
    return e->n_achunks ? (e->n_achunks - 1) * (size_t)ARENA_CHUNK + e->a_used : 0;
}

size_t score_engine_n_records(const struct score_engine *e)
{
    return e->map_n + e->n_cold;
}

size_t score_engine_n_resident(const struct score_engine *e)
{
    return e->map_n;
}
