/*
 * adp_metrics: registration of the adapter's metric families (see adp_metrics.h). Names
 * follow Prometheus conventions with the kaoping_adapter_ prefix; the issue-2 list is the
 * contract dashboards and alert rules are written against.
 */
#include "adp_metrics.h"

#include <stdio.h>
#include <string.h>

void adp_metrics_init(struct adp_metrics *am, struct kp_metrics *reg)
{
    memset(am, 0, sizeof *am);
    am->reg = reg;
    am->rows_pulled = kp_metrics_counter(reg, "kaoping_adapter_rows_pulled_total",
                                         "Records read from the source", NULL);
    am->rows_invalid =
        kp_metrics_counter(reg, "kaoping_adapter_rows_invalid_total",
                           "Records that failed local validation (sent; the scorer refuses "
                           "them with a reason)",
                           NULL);
    am->batches_spooled = kp_metrics_counter(reg, "kaoping_adapter_batches_spooled_total",
                                             "Batches stored in the local spool", NULL);
    am->batches_sent = kp_metrics_counter(reg, "kaoping_adapter_batches_sent_total",
                                          "Batches sent to the collector (first sends)", NULL);
    am->batches_acked = kp_metrics_counter(reg, "kaoping_adapter_batches_acked_total",
                                           "Batches acknowledged after the scorer's commit", NULL);
    am->retransmits =
        kp_metrics_counter(reg, "kaoping_adapter_retransmits_total",
                           "Batches sent again after a timeout or a retry nack", NULL);
    am->obs_rejected =
        kp_metrics_counter(reg, "kaoping_adapter_observations_rejected_total",
                           "Observations refused by the scorer (rej entries of acks)", NULL);
    am->source_errors = kp_metrics_counter(reg, "kaoping_adapter_source_errors_total",
                                           "Failed polls of the source", NULL);
    am->spool_full = kp_metrics_counter(reg, "kaoping_adapter_spool_full_total",
                                        "Times the spool was full and pulling stopped", NULL);
    am->spool_depth = kp_metrics_gauge(reg, "kaoping_adapter_spool_depth",
                                       "Batches waiting in the spool for their ack", NULL);
    am->spool_bytes = kp_metrics_gauge(reg, "kaoping_adapter_spool_bytes",
                                       "Payload bytes waiting in the spool", NULL);
    am->spool_oldest_age =
        kp_metrics_gauge(reg, "kaoping_adapter_spool_oldest_age_seconds",
                         "Age of the oldest batch waiting in the spool (0 when empty)", NULL);
    am->spool_dead = kp_metrics_gauge(reg, "kaoping_adapter_spool_dead",
                                      "Batches in the local dead-letter store", NULL);
    am->inflight = kp_metrics_gauge(reg, "kaoping_adapter_inflight",
                                    "Batches sent and not yet answered", NULL);
    am->last_success = kp_metrics_gauge(reg, "kaoping_adapter_last_success_timestamp_seconds",
                                        "Unix time of the last ack received", NULL);
    am->watermark_lag =
        kp_metrics_gauge(reg, "kaoping_adapter_watermark_lag_seconds",
                         "How far the source cursor is behind the source's clock", NULL);
}

struct kp_counter *adp_metrics_nacked(struct adp_metrics *am, enum kp_reason code)
{
    size_t i = code > KP_R_OK && code < KP_R__COUNT ? (size_t)code : KP_R__COUNT;
    if (!am->batches_nacked[i]) {
        char labels[96];
        snprintf(labels, sizeof labels, "code=\"%s\"",
                 i == KP_R__COUNT ? "unknown" : kp_reason_str(code));
        am->batches_nacked[i] =
            kp_metrics_counter(am->reg, "kaoping_adapter_batches_nacked_total",
                               "Batches refused by a nack, by reason code", labels);
    }
    return am->batches_nacked[i];
}
