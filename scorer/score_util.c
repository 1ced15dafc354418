/*
 * score_util: the small pieces the scoring engine is built from — period parsing and
 * containment (PROTOCOL.md period grammar), string hashing, and the open-addressing string
 * map of the scheme's and the engine's code lookups (units, nodes, groups, periods,
 * sources).
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
    static const char *const names[SCORE_P__COUNT] = {"year", "half", "quarter", "month", "day"};
    return (unsigned)k < SCORE_P__COUNT ? names[k] : "?";
}

/* ---- hashing and the string map ------------------------------------------------------- */

/* Short strings (codes, periods, refs) in two overlapping loads, longer ones eight bytes at
 * a time; multiply-xorshift mixing (after wyhash's treatment of small inputs). The engine
 * hashes a ref and a few codes per observation. */
static uint64_t rd64(const char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static uint64_t rd32(const char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint64_t mix(uint64_t a, uint64_t b)
{
    uint64_t h = (a ^ 0xA0761D6478BD642Full) * (b ^ 0xE7037ED1A0B428DBull);
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    return h ^ (h >> 32);
}

uint64_t score__hash(const char *s, size_t len)
{
    uint64_t a, b, seed = 0x9E3779B97F4A7C15ull ^ len;
    if (len <= 16) {
        if (len >= 4) {
            size_t q = (len >> 3) << 2;
            a = (rd32(s) << 32) | rd32(s + q);
            b = (rd32(s + len - 4) << 32) | rd32(s + len - 4 - q);
        } else if (len > 0) {
            a = ((uint64_t)(unsigned char)s[0] << 16) |
                ((uint64_t)(unsigned char)s[len >> 1] << 8) | (unsigned char)s[len - 1];
            b = 0;
        } else {
            a = b = 0;
        }
    } else {
        size_t i = len;
        const char *p = s;
        while (i > 16) {
            seed = mix(rd64(p) ^ 0x8EBC6AF09C88C6E3ull, rd64(p + 8) ^ seed);
            p += 16;
            i -= 16;
        }
        a = rd64(p + i - 16);
        b = rd64(p + i - 8);
    }
    return mix(a ^ seed, b ^ 0x589965CC75374CC3ull);
}

/* The map keeps each key's hash, so a probe compares strings only on a hash match. */
static size_t strmap_find(const struct score__strmap *m, const char *key, uint64_t h)
{
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask)
        if (!m->keys[i] || (m->hashes[i] == h && strcmp(m->keys[i], key) == 0))
            return i;
}

long score__strmap_get(const struct score__strmap *m, const char *key)
{
    if (!m->cap)
        return -1;
    size_t i = strmap_find(m, key, score__hash(key, strlen(key)));
    return m->keys[i] ? m->vals[i] : -1;
}

static void strmap_grow(struct score__strmap *m)
{
    struct score__strmap n = {0};
    n.cap = m->cap ? m->cap * 2 : 16;
    n.keys = kp_xcalloc(n.cap, sizeof *n.keys);
    n.vals = kp_xcalloc(n.cap, sizeof *n.vals);
    n.hashes = kp_xcalloc(n.cap, sizeof *n.hashes);
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i])
            continue;
        size_t j = strmap_find(&n, m->keys[i], m->hashes[i]);
        n.keys[j] = m->keys[i];
        n.vals[j] = m->vals[i];
        n.hashes[j] = m->hashes[i];
        n.n++;
    }
    free(m->keys);
    free(m->vals);
    free(m->hashes);
    *m = n;
}

long score__strmap_put(struct score__strmap *m, const char *key, long val)
{
    if ((m->n + 1) * 2 > m->cap)
        strmap_grow(m);
    uint64_t h = score__hash(key, strlen(key));
    size_t i = strmap_find(m, key, h);
    if (m->keys[i])
        return m->vals[i];
    m->keys[i] = key;
    m->vals[i] = val;
    m->hashes[i] = h;
    m->n++;
    return -1;
}

void score__strmap_fini(struct score__strmap *m)
{
    free(m->keys);
    free(m->vals);
    free(m->hashes);
    memset(m, 0, sizeof *m);
}
