/*
 * adp_metrics: the adapter's metric families (PROTOCOL-level counters an operator watches to
 * see that a source is delivering: rows pulled, batches sent/acked/nacked, retransmits,
 * spool depth and age, last success, watermark lag). One struct of series pointers,
 * created once on the loop thread; updates are kp_metrics atomics (any thread).
 */
#ifndef ADP_METRICS_H
#define ADP_METRICS_H

#include "kp_metrics.h"
#include "kp_reason.h"

struct adp_metrics {
    struct kp_metrics *reg; /* borrowed */
    struct kp_counter *rows_pulled;
    struct kp_counter *rows_invalid; /* sent anyway; the scorer refuses them */
    struct kp_counter *batches_spooled;
    struct kp_counter *batches_sent; /* first transmissions */
    struct kp_counter *batches_acked;
    struct kp_counter *batches_nacked[KP_R__COUNT + 1]; /* by code; last: unknown code */
    struct kp_counter *retransmits;
    struct kp_counter *obs_rejected; /* rej[] entries of acks */
    struct kp_counter *source_errors;
    struct kp_counter *spool_full; /* times the spool refused a batch */
    struct kp_gauge *spool_depth;
    struct kp_gauge *spool_bytes;
    struct kp_gauge *spool_oldest_age;
    struct kp_gauge *spool_dead;
    struct kp_gauge *inflight;
    struct kp_gauge *last_success;
    struct kp_gauge *watermark_lag;
};

/* Registers every family in reg (borrowed; must outlive am). Loop thread. */
void adp_metrics_init(struct adp_metrics *am, struct kp_metrics *reg);
/* The nack counter of a reason code, created on first use. Loop thread. */
struct kp_counter *adp_metrics_nacked(struct adp_metrics *am, enum kp_reason code);

#endif
