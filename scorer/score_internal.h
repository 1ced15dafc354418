/*
 * score_internal: what the scoring engine's files share and nobody else sees — the loaded
 * scheme's structures (filled by score_scheme.c, read by score_engine.c), the leaf scoring
 * formulas of score_method.c, period parsing, and the small string hash map of
 * score_util.c. Cross-file names carry the `score__` prefix (STYLE.md "Names").
 */
#ifndef SCORE_INTERNAL_H
#define SCORE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "score_engine.h"

/* ---- periods (PROTOCOL.md grammar) ------------------------------------------------------ */

/* Kinds from coarsest to finest; the values are bit positions of a leaf's period mask. */
enum score_pkind {
    SCORE_P_YEAR = 0,
    SCORE_P_HALF = 1,
    SCORE_P_QUARTER = 2,
    SCORE_P_MONTH = 3,
    SCORE_P_DAY = 4,
    SCORE_P__COUNT
};

struct score__period_key {
    enum score_pkind kind;
    int year;
    int sub; /* half 1-2, quarter 1-4, month 1-12, day: month*100+day; 0 for a year */
};

/* Parses a period string; returns 0 or -1 when it is not in the grammar. */
int score__period_parse(const char *s, struct score__period_key *k);
/* Writes the canonical string of k into buf (at least 11 bytes). */
void score__period_format(const struct score__period_key *k, char *buf, size_t len);
/* The period of kind `to` (coarser than or equal to k's kind) that contains k. */
void score__period_up(const struct score__period_key *k, enum score_pkind to,
                      struct score__period_key *out);
const char *score__pkind_name(enum score_pkind k);

/* ---- string map (score_util.c) ---------------------------------------- */

uint64_t score__hash(const char *s, size_t len);

/* Open-addressing map from NUL-terminated strings (borrowed) to long. */
struct score__strmap {
    const char **keys;
    long *vals;
    uint64_t *hashes;
    size_t cap; /* power of two, 0 when empty */
    size_t n;
};
/* Returns the value of key or -1. */
long score__strmap_get(const struct score__strmap *m, const char *key);
/* Inserts key (borrowed; must outlive the map). Returns the previous value, or -1 when the key
 * was new (then val is stored). */
long score__strmap_put(struct score__strmap *m, const char *key, long val);
void score__strmap_fini(struct score__strmap *m);

/* ---- key filter (score_bloom.c) ---------------------------------------------------------- */

/* A blocked Bloom filter over 64-bit key hashes that grows in layers (each twice the size of
 * the one before, about 32 bits a key): "maybe" for every key added, "no" for nearly every
 * other (the engine's evicted records: see score_engine_maybe_cold). Zero-initialise; free
 * with score__bloom_fini(). */
struct score__bloom {
    struct score__bloom_layer {
        uint64_t *bits; /* blocks of 512 bits (one cache line) */
        size_t mask;    /* blocks - 1 */
        size_t n, cap;  /* keys added, keys it takes */
    } *layers;
    size_t n_layers;
    size_t n_keys;
};
void score__bloom_add(struct score__bloom *b, uint64_t h);
bool score__bloom_maybe(const struct score__bloom *b, uint64_t h);
size_t score__bloom_bytes(const struct score__bloom *b);
void score__bloom_fini(struct score__bloom *b);

/* score_engine.c: the arena of ref strings is packed once evicted refs take this many bytes
 * (and a quarter of it); tests lower it. */
extern size_t score__arena_garbage_min;
/* score_engine.c: the bytes of the refs' arena in use, evicted refs included (tests). */
size_t score__arena_used(const struct score_engine *e);

/* ---- the loaded scheme (score_scheme.c) ------------------------------------------------ */

enum score_method {
    SCORE_M_NONE = 0, /* inner node */
    SCORE_M_DIRECT,
    SCORE_M_EFFICACY,
    SCORE_M_EFFICACY_REL,
    SCORE_M_COMPLETION,
    SCORE_M_BAND,
    SCORE_M_RANK,
    SCORE_M_ADD,
    SCORE_M_DEDUCT,
    SCORE_M_VETO,
};

/* What a leaf's cell value is made of. */
enum score_input {
    SCORE_I_VALUE = 0, /* one value: the record with the greatest (at, src, ref) */
    SCORE_I_COUNT,     /* number of events */
    SCORE_I_SUM,       /* sum of event values */
    SCORE_I_AVG,       /* sum(w*val)/sum(w) */
    SCORE_I_RATE,      /* 100*sum(w*val)/sum(w) */
};

/* How a leaf's cell in a coarser (derived) period is computed from the finer ones. */
enum score_rollup {
    SCORE_R_NONE = 0,
    SCORE_R_LATEST, /* value of the latest finer period present */
    SCORE_R_SUM,
    SCORE_R_AVG,
    SCORE_R_POOL, /* events of all finer periods pooled (aggregates, adjustments) */
};

enum score_clamp { SCORE_CLAMP_NONE = 0, SCORE_CLAMP_RANGE };

struct score_band {
    double lo, hi, points; /* [lo, hi); -inf/+inf when open */
};

struct score_node {
    char *code;
    char *name;
    int line;
    long parent; /* -1 for the root */
    size_t *kids;
    size_t n_kids;
    double weight; /* default weight in the parent (0 for the root and adjustments) */
    double total;  /* what the children's weights must add up to */
    bool leaf;
    bool adjust; /* an adjustment kind (add/deduct/veto): not in the weighted tree */
    bool assumed;
    bool relative; /* score depends on the group (efficacy_rel, rank) */
    enum score_method method;
    enum score_input input;
    enum score_rollup rollup;
    /* efficacy, efficacy_rel, direct */
    double good, bad, base, span;
    bool lower_better; /* efficacy_rel, rank */
    enum score_clamp clamp;
    double clamp_lo, clamp_hi;
    double scale; /* direct: score = x*scale */
    /* completion */
    double target, cap;
    bool reverse;
    /* band */
    struct score_band *bands;
    size_t n_bands;
    double band_else;
    /* rank */
    double best, step, floor;
    /* add/deduct: points per unit of value, per-kind cap (<0: none) */
    double points, kind_cap;
    /* observation checks */
    double vmin, vmax; /* -inf/+inf when unbounded */
    unsigned periods;  /* mask of 1u << score_pkind accepted on the wire */
    char **srcs;
    size_t n_srcs;
    char *desc; /* human description of the method */
};

struct score_group {
    char *code;
    char *name;
    int line;
    size_t *units;
    size_t n_units;
};

struct score_unit {
    char *code;
    char *name;
    int line;
    size_t group;
};

struct score_grade {
    char *name;
    double min; /* -inf for the catch-all last band */
};

struct score_scheme {
    char *path;
    char *id;
    char *name;
    int year; /* 0: any */
    double weight_total;
    struct score_group *groups;
    size_t n_groups;
    struct score_unit *units;
    size_t n_units;
    struct score_node *nodes; /* 0: root; tree nodes in preorder, then adjustment kinds */
    size_t n_nodes;
    struct score_grade *grades;
    size_t n_grades;
    bool grades_assumed;
    double add_cap, deduct_cap; /* < 0: none */
    unsigned derive;            /* mask of period kinds that totals roll up into */
    /* effective weight of node n for unit u: w[u * n_nodes + n]; 0 = not applicable */
    double *w;
    struct score__strmap unit_map, node_map, group_map;
    struct score_alert_rules *alert_rules; /* `alerts:` (score_alert_rules.c), NULL when none */
};

static inline double score__w(const struct score_scheme *s, size_t u, size_t n)
{
    return s->w[u * s->n_nodes + n];
}

/* ---- leaf scoring (score_method.c) ------------------------------------------------------ */

/* Score of a value for a method that does not depend on the group (direct, efficacy,
 * completion, band). */
double score__method_value(const struct score_node *n, double x);
/* Efficacy with the given thresholds (the fixed and the relative variant share it). */
double score__efficacy(const struct score_node *n, double x, double good, double bad);
/* Rank points for a 1-based competition rank. */
double score__rank_points(const struct score_node *n, uint32_t rank);
/* Applies the node's clamp. */
double score__clamp(const struct score_node *n, double d);

#endif
