/*
 * kp_metrics: the Prometheus registry behind every daemon's /metrics (served by kp_admin).
 * A registry holds metric families (name, help, kind, histogram bounds) in creation order,
 * each with its series (one per label set). Values are C11 atomics holding the bits of a
 * double, updated with compare-and-swap, so any thread may count without a lock; only
 * creating a series and rendering take the registry mutex. Rendering follows the text
 * exposition format 0.0.4: `# HELP`, `# TYPE`, then the series lines; histograms expose
 * cumulative `_bucket{le=…}` lines, `_sum` and `_count`. It serves ARCHITECTURE.md guarantee 4
 * ("counters on /metrics") and the operators' view of the pipeline.
 */
#include "kp_metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kp_buf.h"
#include "kp_err.h"

enum kind { KIND_COUNTER, KIND_GAUGE, KIND_HISTOGRAM };

static const char *const kind_names[] = {"counter", "gauge", "histogram"};

struct series {
    struct series *next;
    char *labels; /* inside of the braces; "" for none */
};

struct kp_counter {
    struct series base;
    _Atomic uint64_t bits;
};

struct kp_gauge {
    struct series base;
    _Atomic uint64_t bits;
};

struct kp_histogram {
    struct series base;
    const double *bounds; /* the family's */
    size_t n;
    _Atomic uint64_t sum_bits;
    _Atomic uint64_t buckets[]; /* n + 1 (the last is +Inf), not cumulative */
};

struct family {
    struct family *next;
    char *name;
    char *help;
    enum kind kind;
    double *bounds;
    size_t nbounds;
    struct series *first, *last;
};

struct kp_metrics {
    pthread_mutex_t mu;
    struct family *first, *last;
};

/* --- atomic doubles ----------------------------------------------------------------------- */

static uint64_t d2u(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static double u2d(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static double load_d(_Atomic uint64_t *a)
{
    return u2d(atomic_load_explicit(a, memory_order_relaxed));
}

static void add_d(_Atomic uint64_t *a, double v)
{
    uint64_t old = atomic_load_explicit(a, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(a, &old, d2u(u2d(old) + v), memory_order_relaxed,
                                                  memory_order_relaxed))
        ;
}

/* --- registry ----------------------------------------------------------------------------- */

struct kp_metrics *kp_metrics_new(void)
{
    struct kp_metrics *m = kp_xcalloc(1, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
    return m;
}

void kp_metrics_destroy(struct kp_metrics **mp)
{
    if (!mp || !*mp)
        return;
    struct kp_metrics *m = *mp;
    for (struct family *f = m->first, *fn; f; f = fn) {
        fn = f->next;
        for (struct series *s = f->first, *sn; s; s = sn) {
            sn = s->next;
            free(s->labels);
            free(s);
        }
        free(f->name);
        free(f->help);
        free(f->bounds);
        free(f);
    }
    pthread_mutex_destroy(&m->mu);
    free(m);
    *mp = NULL;
}

static bool valid_name(const char *n)
{
    if (!n || !*n)
        return false;
    for (const char *p = n; *p; p++) {
        bool alpha = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' || *p == ':';
        bool digit = *p >= '0' && *p <= '9';
        if (!alpha && !(digit && p != n))
            return false;
    }
    return true;
}

/* Finds or creates the family; the caller holds m->mu. Kind, help and bounds of an existing
 * family must match (a programming error otherwise). */
static struct family *family_get(struct kp_metrics *m, const char *name, const char *help,
                                 enum kind kind, const double *bounds, size_t nbounds)
{
    KP_ASSERT(valid_name(name));
    if (!help)
        help = "";
    for (struct family *f = m->first; f; f = f->next) {
        if (strcmp(f->name, name) != 0)
            continue;
        KP_ASSERT(f->kind == kind);
        KP_ASSERT(strcmp(f->help, help) == 0);
        if (kind == KIND_HISTOGRAM) {
            KP_ASSERT(f->nbounds == nbounds);
            KP_ASSERT(nbounds == 0 || memcmp(f->bounds, bounds, nbounds * sizeof *bounds) == 0);
        }
        return f;
    }
    struct family *f = kp_xcalloc(1, sizeof *f);
    f->name = kp_xstrdup(name);
    f->help = kp_xstrdup(help);
    f->kind = kind;
    if (kind == KIND_HISTOGRAM && nbounds) {
        for (size_t i = 0; i < nbounds; i++) {
            KP_ASSERT(isfinite(bounds[i]));
            KP_ASSERT(i == 0 || bounds[i] > bounds[i - 1]);
        }
        f->bounds = kp_xmalloc(nbounds * sizeof *bounds);
        memcpy(f->bounds, bounds, nbounds * sizeof *bounds);
        f->nbounds = nbounds;
    }
    if (m->last)
        m->last->next = f;
    else
        m->first = f;
    m->last = f;
    return f;
}

static struct series *series_find(struct family *f, const char *labels)
{
    for (struct series *s = f->first; s; s = s->next) {
        if (strcmp(s->labels, labels) == 0)
            return s;
    }
    return NULL;
}

static void series_add(struct family *f, struct series *s, const char *labels)
{
    s->labels = kp_xstrdup(labels);
    if (f->last)
        f->last->next = s;
    else
        f->first = s;
    f->last = s;
}

struct kp_counter *kp_metrics_counter(struct kp_metrics *m, const char *name, const char *help,
                                      const char *labels)
{
    KP_ASSERT(m != NULL);
    if (!labels)
        labels = "";
    pthread_mutex_lock(&m->mu);
    struct family *f = family_get(m, name, help, KIND_COUNTER, NULL, 0);
    struct kp_counter *c = (struct kp_counter *)series_find(f, labels);
    if (!c) {
        c = kp_xcalloc(1, sizeof *c);
        atomic_init(&c->bits, d2u(0.0));
        series_add(f, &c->base, labels);
    }
    pthread_mutex_unlock(&m->mu);
    return c;
}

struct kp_gauge *kp_metrics_gauge(struct kp_metrics *m, const char *name, const char *help,
                                  const char *labels)
{
    KP_ASSERT(m != NULL);
    if (!labels)
        labels = "";
    pthread_mutex_lock(&m->mu);
    struct family *f = family_get(m, name, help, KIND_GAUGE, NULL, 0);
    struct kp_gauge *g = (struct kp_gauge *)series_find(f, labels);
    if (!g) {
        g = kp_xcalloc(1, sizeof *g);
        atomic_init(&g->bits, d2u(0.0));
        series_add(f, &g->base, labels);
    }
    pthread_mutex_unlock(&m->mu);
    return g;
}

struct kp_histogram *kp_metrics_histogram(struct kp_metrics *m, const char *name, const char *help,
                                          const char *labels, const double *bounds, size_t n)
{
    KP_ASSERT(m != NULL);
    KP_ASSERT(n == 0 || bounds != NULL);
    if (!labels)
        labels = "";
    pthread_mutex_lock(&m->mu);
    struct family *f = family_get(m, name, help, KIND_HISTOGRAM, bounds, n);
    struct kp_histogram *h = (struct kp_histogram *)series_find(f, labels);
    if (!h) {
        h = kp_xcalloc(1, sizeof *h + (n + 1) * sizeof h->buckets[0]);
        h->bounds = f->bounds;
        h->n = f->nbounds;
        atomic_init(&h->sum_bits, d2u(0.0));
        for (size_t i = 0; i <= n; i++)
            atomic_init(&h->buckets[i], 0);
        series_add(f, &h->base, labels);
    }
    pthread_mutex_unlock(&m->mu);
    return h;
}

/* --- updates (any thread) ----------------------------------------------------------------- */

void kp_counter_add(struct kp_counter *c, double v)
{
    if (!(v > 0) || !isfinite(v)) /* counters only go up; NaN and negatives are dropped */
        return;
    add_d(&c->bits, v);
}

void kp_counter_inc(struct kp_counter *c)
{
    add_d(&c->bits, 1.0);
}

double kp_counter_get(const struct kp_counter *c)
{
    return load_d((_Atomic uint64_t *)&c->bits);
}

void kp_gauge_set(struct kp_gauge *g, double v)
{
    atomic_store_explicit(&g->bits, d2u(v), memory_order_relaxed);
}

void kp_gauge_add(struct kp_gauge *g, double v)
{
    add_d(&g->bits, v);
}

double kp_gauge_get(const struct kp_gauge *g)
{
    return load_d((_Atomic uint64_t *)&g->bits);
}

void kp_histogram_observe(struct kp_histogram *h, double v)
{
    if (isnan(v))
        return;
    size_t i = 0;
    while (i < h->n && v > h->bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
    add_d(&h->sum_bits, v);
}

/* --- rendering ---------------------------------------------------------------------------- */

/* Shortest text that reads back as v (Go's strconv style is what Prometheus parses). */
static void fmt_double(char *buf, size_t len, double v)
{
    if (isnan(v)) {
        snprintf(buf, len, "NaN");
    } else if (isinf(v)) {
        snprintf(buf, len, v > 0 ? "+Inf" : "-Inf");
    } else if (v == 0) {
        snprintf(buf, len, "0");
    } else if (v == floor(v) && fabs(v) < 1e15) {
        snprintf(buf, len, "%.0f", v);
    } else {
        snprintf(buf, len, "%.15g", v);
        if (strtod(buf, NULL) != v)
            snprintf(buf, len, "%.17g", v);
    }
}

static void put_help(struct kp_buf *out, const struct family *f)
{
    if (!*f->help)
        return;
    kp_buf_printf(out, "# HELP %s ", f->name);
    for (const char *p = f->help; *p; p++) {
        if (*p == '\\')
            kp_buf_append_str(out, "\\\\");
        else if (*p == '\n')
            kp_buf_append_str(out, "\\n");
        else
            kp_buf_append(out, p, 1);
    }
    kp_buf_append_str(out, "\n");
}

static void put_sample(struct kp_buf *out, const char *name, const char *suffix, const char *labels,
                       const char *le, double v)
{
    char num[40];
    fmt_double(num, sizeof num, v);
    kp_buf_append_str(out, name);
    kp_buf_append_str(out, suffix);
    if (*labels || le) {
        kp_buf_append_str(out, "{");
        kp_buf_append_str(out, labels);
        if (le)
            kp_buf_printf(out, "%sle=\"%s\"", *labels ? "," : "", le);
        kp_buf_append_str(out, "}");
    }
    kp_buf_printf(out, " %s\n", num);
}

static void put_histogram(struct kp_buf *out, const struct family *f, struct kp_histogram *h)
{
    uint64_t cum = 0;
    char le[40];
    for (size_t i = 0; i <= h->n; i++) {
        cum += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        if (i < h->n)
            fmt_double(le, sizeof le, h->bounds[i]);
        else
            snprintf(le, sizeof le, "+Inf");
        put_sample(out, f->name, "_bucket", h->base.labels, le, (double)cum);
    }
    put_sample(out, f->name, "_sum", h->base.labels, NULL, load_d(&h->sum_bits));
    /* _count is the +Inf bucket, so the two agree even while other threads observe */
    put_sample(out, f->name, "_count", h->base.labels, NULL, (double)cum);
}

int kp_metrics_render(struct kp_metrics *m, struct kp_buf *out)
{
    if (!m || !out)
        return KP_EINVAL;
    pthread_mutex_lock(&m->mu);
    for (const struct family *f = m->first; f; f = f->next) {
        put_help(out, f);
        kp_buf_printf(out, "# TYPE %s %s\n", f->name, kind_names[f->kind]);
        for (struct series *s = f->first; s; s = s->next) {
            switch (f->kind) {
            case KIND_COUNTER:
                put_sample(out, f->name, "", s->labels, NULL,
                           kp_counter_get((struct kp_counter *)s));
                break;
            case KIND_GAUGE:
                put_sample(out, f->name, "", s->labels, NULL, kp_gauge_get((struct kp_gauge *)s));
                break;
            case KIND_HISTOGRAM:
                put_histogram(out, f, (struct kp_histogram *)s);
                break;
            }
        }
    }
    pthread_mutex_unlock(&m->mu);
    kp_buf_cstr(out);
    return 0;
}
