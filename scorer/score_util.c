/*
 * score_util: the small pieces the scoring engine is built from — period parsing and
 * containment (PROTOCOL.md period grammar), FNV-1a hashing, an open-addressing string map
 * for the scheme's code lookups and the intern pool that keeps one copy of every source,
 * ref and period string the engine holds (memory stays modest however many revisions of a
 * record arrive).
 */
#include "score_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kp_err.h"

/* ---- periods ------------------------------------------------------------------------- */

static int digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static int days_in_month(int y, int m)
{
    static const int d[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return d[m - 1];
}

int score__period_parse(const char *s, struct score__period_key *k)
{
    size_t len = strlen(s);
    if (len < 4)
        return -1;
    int y = digits(s, 4);
    if (y < 1)
        return -1;
    k->year = y;
    if (len == 4) {
        k->kind = SCORE_P_YEAR;
        k->sub = 0;
        return 0;
    }
    if (s[4] != '-')
        return -1;
    if (len == 7 && (s[5] == 'H' || s[5] == 'Q')) {
        int n = digits(s + 6, 1);
        if (s[5] == 'H' && n >= 1 && n <= 2) {
            k->kind = SCORE_P_HALF;
            k->sub = n;
            return 0;
        }
        if (s[5] == 'Q' && n >= 1 && n <= 4) {
            k->kind = SCORE_P_QUARTER;
            k->sub = n;
            return 0;
        }
        return -1;
    }
    int m = (len == 7 || len == 10) ? digits(s + 5, 2) : -1;
    if (m < 1 || m > 12)
        return -1;
    if (len == 7) {
        k->kind = SCORE_P_MONTH;
        k->sub = m;
        return 0;
    }
    if (s[7] != '-')
        return -1;
    int d = digits(s + 8, 2);
    if (d < 1 || d > days_in_month(y, m))
        return -1;
    k->kind = SCORE_P_DAY;
    k->sub = m * 100 + d;
    return 0;
}

void score__period_format(const struct score__period_key *k, char *buf, size_t len)
{
    int y = k->year % 10000;
    switch (k->kind) {
    case SCORE_P_YEAR:
        snprintf(buf, len, "%04d", y);
        break;
    case SCORE_P_HALF:
        snprintf(buf, len, "%04d-H%d", y, k->sub % 10);
        break;
    case SCORE_P_QUARTER:
        snprintf(buf, len, "%04d-Q%d", y, k->sub % 10);
        break;
    case SCORE_P_MONTH:
        snprintf(buf, len, "%04d-%02d", y, k->sub % 100);
        break;
    default:
        snprintf(buf, len, "%04d-%02d-%02d", y, (k->sub / 100) % 100, k->sub % 100);
        break;
    }
}

void score__period_up(const struct score__period_key *k, enum score_pkind to,
                      struct score__period_key *out)
{
    int month = 0;
    out->year = k->year;
    out->kind = to;
    if (to >= k->kind) {
        *out = *k;
        return;
    }
    switch (k->kind) {
    case SCORE_P_DAY:
        month = k->sub / 100;
        break;
    case SCORE_P_MONTH:
        month = k->sub;
        break;
    case SCORE_P_QUARTER:
        month = k->sub * 3;
        break;
    case SCORE_P_HALF:
        month = k->sub * 6;
        break;
    default:
        break;
    }
    switch (to) {
    case SCORE_P_YEAR:
        out->sub = 0;
        break;
    case SCORE_P_HALF:
        out->sub = (month + 5) / 6;
        break;
    case SCORE_P_QUARTER:
        out->sub = (month + 2) / 3;
        break;
    default:
        out->sub = month;
        break;
    }
}

const char *score__pkind_name(enum score_pkind k)
{
    static const char *const names[SCORE_P__COUNT] = {"year", "half", "quarter", "month",
                                                      "day"};
    return (unsigned)k < SCORE_P__COUNT ? names[k] : "?";
}

/* ---- hashing and the string map ------------------------------------------------------- */

uint64_t score__hash(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

long score__strmap_get(const struct score__strmap *m, const char *key)
{
    if (!m->cap)
        return -1;
    size_t mask = m->cap - 1;
    for (size_t i = score__hash(key, strlen(key)) & mask;; i = (i + 1) & mask) {
        if (!m->keys[i])
            return -1;
        if (strcmp(m->keys[i], key) == 0)
            return m->vals[i];
    }
}

static void strmap_grow(struct score__strmap *m)
{
    struct score__strmap n = {0};
    n.cap = m->cap ? m->cap * 2 : 16;
    n.keys = kp_xcalloc(n.cap, sizeof *n.keys);
    n.vals = kp_xcalloc(n.cap, sizeof *n.vals);
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i])
            score__strmap_put(&n, m->keys[i], m->vals[i]);
    free(m->keys);
    free(m->vals);
    *m = n;
}

long score__strmap_put(struct score__strmap *m, const char *key, long val)
{
    if ((m->n + 1) * 2 > m->cap)
        strmap_grow(m);
    size_t mask = m->cap - 1;
    size_t i = score__hash(key, strlen(key)) & mask;
    for (; m->keys[i]; i = (i + 1) & mask)
        if (strcmp(m->keys[i], key) == 0)
            return m->vals[i];
    m->keys[i] = key;
    m->vals[i] = val;
    m->n++;
    return -1;
}

void score__strmap_fini(struct score__strmap *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

/* ---- intern pool -------------------------------------------------------------------------- */

static void pool_grow(struct score__pool *p)
{
    size_t cap = p->cap ? p->cap * 2 : 64;
    struct score__str **slots = kp_xcalloc(cap, sizeof *slots);
    for (size_t i = 0; i < p->cap; i++) {
        struct score__str *x = p->slots[i];
        if (!x)
            continue;
        size_t j = x->hash & (cap - 1);
        while (slots[j])
            j = (j + 1) & (cap - 1);
        slots[j] = x;
    }
    free(p->slots);
    p->slots = slots;
    p->cap = cap;
}

static struct score__str **pool_slot(const struct score__pool *p, const char *s, size_t len,
                                     uint64_t h)
{
    size_t mask = p->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        struct score__str *x = p->slots[i];
        if (!x || (x->hash == h && x->len == len && memcmp(x->s, s, len) == 0))
            return &p->slots[i];
    }
}

struct score__str *score__intern_find(const struct score__pool *p, const char *s)
{
    if (!p->cap)
        return NULL;
    size_t len = strlen(s);
    return *pool_slot(p, s, len, score__hash(s, len));
}

struct score__str *score__intern(struct score__pool *p, const char *s)
{
    if ((p->n + 1) * 2 > p->cap)
        pool_grow(p);
    size_t len = strlen(s);
    uint64_t h = score__hash(s, len);
    struct score__str **slot = pool_slot(p, s, len, h);
    if (*slot)
        return *slot;
    struct score__str *x = kp_xmalloc(sizeof *x + len + 1);
    x->hash = h;
    x->aux = -1;
    x->len = (uint32_t)len;
    memcpy(x->s, s, len + 1);
    *slot = x;
    p->n++;
    p->bytes += sizeof *x + len + 1;
    return x;
}

void score__pool_fini(struct score__pool *p)
{
    for (size_t i = 0; i < p->cap; i++)
        free(p->slots[i]);
    free(p->slots);
    memset(p, 0, sizeof *p);
}
