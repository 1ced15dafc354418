/*
 * kp_spool: the adapter's durable local spool (SQLite, WAL, synchronous=FULL). A batch is
 * stored together with the source cursor that produced it in one transaction, so a kill -9
 * at any point either keeps both or neither; it leaves the spool only when its end-to-end
 * ack arrives (ARCHITECTURE.md guarantee 1) or when a permanent nack moves it to the dead
 * letters. Sequence numbers are allocated here and strictly increase across restarts
 * (PROTOCOL.md batch.seq). The spool is bounded by bytes: kp_spool_put refuses with
 * KP_EFULL when full, and the caller stops pulling (policy: stop pulling and report, never
 * drop). Not thread-safe: one loop thread. Blocking (fsync).
 */
#ifndef KP_SPOOL_H
#define KP_SPOOL_H

#include <stddef.h>
#include <stdint.h>

struct kp_spool;

struct kp_spool_item {
    uint64_t seq;
    const void *payload; /* encoded batch frame; valid during the callback only */
    size_t len;
    int64_t created_ms;
    uint32_t n_obs;
};

struct kp_spool_stats {
    uint64_t depth;     /* batches waiting for an ack */
    uint64_t bytes;     /* payload bytes waiting */
    int64_t oldest_ms;  /* created_ms of the oldest waiting batch, 0 when empty */
    uint64_t dead;      /* dead letters */
};

/* Opens (creating) the spool file. max_bytes bounds the waiting payload bytes. Caller owns
 * *out; close with kp_spool_close. Returns 0, KP_EIO. */
int kp_spool_open(const char *path, uint64_t max_bytes, struct kp_spool **out);
void kp_spool_close(struct kp_spool **sp);

/* The next seq to use (not yet used by any stored batch). */
uint64_t kp_spool_next_seq(struct kp_spool *sp);

/* Stores a batch encoded with seq == kp_spool_next_seq() and the source cursor (opaque
 * text, may be NULL to leave it unchanged) atomically. Returns 0, KP_EFULL (nothing
 * stored; stop pulling), KP_EINVAL (wrong seq), KP_EIO. */
int kp_spool_put(struct kp_spool *sp, uint64_t seq, const void *payload, size_t len,
                 uint32_t n_obs, const char *cursor);

/* The saved source cursor, copied into buf ("" when none). */
int kp_spool_cursor(struct kp_spool *sp, char *buf, size_t len);

/* Calls fn for up to `max` waiting batches with seq > after_seq, in seq order. fn returns 0
 * to continue, non-zero to stop. Returns the number visited or a negative KP_E*. */
int kp_spool_scan(struct kp_spool *sp, uint64_t after_seq, size_t max,
                  int (*fn)(const struct kp_spool_item *it, void *arg), void *arg);

/* The ack of seq arrived: delete it. Unknown seq is not an error (a duplicate ack). */
int kp_spool_ack(struct kp_spool *sp, uint64_t seq);
/* A permanent nack: move seq to the dead letters with its reason. */
int kp_spool_dead(struct kp_spool *sp, uint64_t seq, const char *code, const char *msg);
/* Records per-observation refusals from an ack (for kpctl dlq). */
int kp_spool_rejected(struct kp_spool *sp, uint64_t seq, uint32_t n, const char *code,
                      const char *msg);

int kp_spool_stats(struct kp_spool *sp, struct kp_spool_stats *st);

#endif
