/*
 * adp_pump: the source → spool half of the adapter. It polls the configured source plugin
 * into an adp_out, turns the records into one PROTOCOL.md batch (seq = the spool's next seq,
 * sent = now) and stores batch and cursor in the spool in one transaction, then acks the
 * source (adp_source.h "pull protocol"). This is where a row read from a department system
 * becomes durable (ARCHITECTURE.md guarantee 1). Not thread-safe by itself: adp_pump_poll may
 * run on a worker thread while nothing else touches the pump; every other call is for the
 * loop thread. The runtime (adp.c) schedules it; tests call it directly.
 */
#ifndef ADP_PUMP_H
#define ADP_PUMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "adp_source.h"
#include "kp_buf.h"

struct kp_spool;
struct adp_metrics;

/* ---- adp_out internals (the runtime's side of adp_source.h) ---------------------------- */

enum adp_field {
    ADP_F_U,
    ADP_F_I,
    ADP_F_P,
    ADP_F_VAL,
    ADP_F_REF,
    ADP_F_REV,
    ADP_F_AT,
    ADP_F_W,
    ADP_F__COUNT
};

struct adp_out_rec {
    uint32_t off[ADP_F__COUNT]; /* offset of the NUL-terminated text in the arena */
    uint16_t present;           /* bit f: field f was not NULL */
    uint16_t cut;               /* bit f: field f was longer than its cap and was cut */
};

struct adp_out {
    size_t cap; /* records per poll (batch_max_obs) */
    size_t n;
    struct adp_out_rec *recs; /* cap entries */
    struct kp_buf arena;
    struct kp_buf cursor;
    bool has_cursor;
    bool more;
    double lag; /* < 0: unknown */
};

/* Text of field f of record k, or NULL when absent. */
const char *adp_out_field(const struct adp_out *o, size_t k, enum adp_field f);
bool adp_out_field_cut(const struct adp_out *o, size_t k, enum adp_field f);

/* ---- batch encoding ---------------------------------------------------------------------- */

struct adp_batch_hdr {
    const char *aid, *scheme, *src;
    uint64_t seq;
    int64_t sent;
};

/* Encodes the records of o as one batch frame into out (reset first). Records that pass the
 * local PROTOCOL.md checks go through kp_batch_encode; when one does not, the whole frame is
 * written field by field with the offending values as read (a non-number as a string, a
 * non-finite number as a float, a missing field left out), so the scorer refuses exactly
 * those records with their reason (issue 2: every row ends in observation or rejection).
 * Sets *n_invalid to the number of locally invalid records. Returns 0 or KP_EINVAL (a header
 * code is invalid: a configuration error). */
int adp_batch_build(struct kp_buf *out, const struct adp_batch_hdr *h, const struct adp_out *o,
                    size_t *n_invalid);

/* ---- the pump ---------------------------------------------------------------------------- */

struct adp_pump_opts {
    const char *aid, *scheme, *src; /* borrowed; outlive the pump */
    uint32_t batch_max_obs;
};

struct adp_pump;

/* Opens the pump: reads the cursor from the spool and inits the source with it. src and
 * src_cfg, sp, o's strings and am (may be NULL) are borrowed. Caller owns *out; close with
 * adp_pump_close. Returns 0, or the source's init error (err says why). Loop thread. */
int adp_pump_open(const struct adp_source *src, const void *src_cfg, struct kp_spool *sp,
                  const struct adp_pump_opts *o, struct adp_metrics *am, struct adp_pump **out,
                  char *err, size_t errlen);
void adp_pump_close(struct adp_pump **p);

/* Polls the source into the pump's pending records (discarding records of an earlier poll
 * that were not stored). Returns the number of records (0: nothing new) or the source's
 * KP_E* with err filled. May block: worker thread allowed, with nothing else using the pump. */
int adp_pump_poll(struct adp_pump *p, char *err, size_t errlen);

/* Stores the pending records as one batch with the poll's cursor, then acks the source.
 * *seq gets the batch's seq (0 when there was nothing to store). Returns 0; KP_EFULL when the
 * spool is full (nothing stored; the records are dropped from memory and the source re-reads
 * them after space returns); KP_EIO; KP_EINVAL (bad aid/scheme/src: configuration). Logs the
 * failure with adapter, scheme and seq. Loop thread. */
int adp_pump_store(struct adp_pump *p, uint64_t *seq);

/* Whether the last poll said more records are ready now. */
bool adp_pump_more(const struct adp_pump *p);

/* poll + store, for tests and tools: returns records stored (0 when none) or a KP_E*. */
int adp_pump_step(struct adp_pump *p, char *err, size_t errlen);

#endif
