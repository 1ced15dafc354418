/*
 * kp_metrics: a small Prometheus registry (counters, gauges, histograms) rendered in the
 * text exposition format for the admin endpoint's /metrics. Metric families are created at
 * start-up on the loop thread; updates are lock-free atomics and may come from any thread;
 * rendering (from the HTTP thread) takes the registry lock.
 */
#ifndef KP_METRICS_H
#define KP_METRICS_H

#include <stddef.h>

struct kp_metrics;
struct kp_counter;
struct kp_gauge;
struct kp_histogram;
struct kp_buf;

/* Caller owns; destroy with kp_metrics_destroy(). */
struct kp_metrics *kp_metrics_new(void);
void kp_metrics_destroy(struct kp_metrics **m);

/* Returns the series `name{labels}` (labels is the inside of the braces, e.g.
 * `code="bad_field"`, or NULL), creating it on first call; the registry owns it. The same
 * name must always have the same kind and help. Names should follow Prometheus conventions
 * (kaoping_ prefix, _total for counters, base units). */
struct kp_counter *kp_metrics_counter(struct kp_metrics *m, const char *name, const char *help,
                                      const char *labels);
struct kp_gauge *kp_metrics_gauge(struct kp_metrics *m, const char *name, const char *help,
                                  const char *labels);
/* bounds: ascending upper bounds (n of them); +Inf is added. */
struct kp_histogram *kp_metrics_histogram(struct kp_metrics *m, const char *name,
                                          const char *help, const char *labels,
                                          const double *bounds, size_t n);

void kp_counter_add(struct kp_counter *c, double v);
void kp_counter_inc(struct kp_counter *c);
double kp_counter_get(const struct kp_counter *c);
void kp_gauge_set(struct kp_gauge *g, double v);
void kp_gauge_add(struct kp_gauge *g, double v);
double kp_gauge_get(const struct kp_gauge *g);
void kp_histogram_observe(struct kp_histogram *h, double v);

/* Appends the exposition text (HELP, TYPE, series) to out (NUL-terminated). */
int kp_metrics_render(struct kp_metrics *m, struct kp_buf *out);

#endif
