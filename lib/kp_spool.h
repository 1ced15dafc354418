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

/* ---- per-row dead letters ---------------------------------------------------------------
 * A source row refused before it became part of a batch (a CSV row whose number does not
 * parse, whose unit name the scheme does not know, ...), kept with the file and line it came
 * from so that the department can find and fix it (issue 4). One entry per (file, line):
 * writing the same (file, line) again replaces code, msg and raw and keeps the first `at`,
 * so a source that re-reads rows after a crash records each refused row exactly once. The
 * entries are not counted in kp_spool_stats().dead (those are whole batches). */
struct kp_spool_dead_row {
    const char *file; /* the file (or other container) the row came from */
    long line;        /* 1-based line of the row in it; 0 for the file as a whole */
    const char *code; /* reason code, e.g. "bad_field" */
    const char *msg;  /* human reason */
    const char *raw;  /* the row as read (UTF-8); may be NULL */
    int64_t at_ms;    /* when first recorded (filled by the scan; ignored when writing) */
};

/* Records one refused row (its own transaction). Returns 0, KP_EINVAL (file NULL or line
 * negative), KP_EIO. Strings are borrowed for the call. */
int kp_spool_dead_row(struct kp_spool *sp, const char *file, long line, const char *code,
                      const char *msg, const char *raw);
/* Records n refused rows in one transaction (one fsync): all or none. Same returns. */
int kp_spool_dead_rows(struct kp_spool *sp, const struct kp_spool_dead_row *rows, size_t n);
/* Calls fn for every refused row of `file` (NULL: of every file) in (file, line) order; the
 * strings are valid during the callback only. fn returns non-zero to stop. Returns the number
 * visited or KP_EIO. */
int kp_spool_dead_row_scan(struct kp_spool *sp, const char *file,
                           int (*fn)(const struct kp_spool_dead_row *r, void *arg), void *arg);

/* ---- dead letters: inspection and retry (kpctl dlq) -----------------------------------------
 * The operator's side of the dead letters: list them, read a dead batch back, and send it
 * again once the cause (a collector limit, a grant, a scheme) is fixed. Safe beside a running
 * adapter on the same file: readers never block the adapter (WAL), and kp_spool_retry_dead
 * is one write transaction that the adapter's handle notices (see kp_spool.c). */

/* Opens an existing spool file read-only (nothing is created or written; the stats, scans and
 * cursor functions work, the writing ones fail with KP_EIO). Caller owns *out; close with
 * kp_spool_close. Returns 0, KP_EINVAL (empty path), KP_ENOENT (no such file), KP_EIO (not a
 * spool). Blocking. */
int kp_spool_open_readonly(const char *path, struct kp_spool **out);

struct kp_spool_dead_item {
    uint64_t seq;
    const char *code;    /* the nack's reason code */
    const char *msg;     /* the nack's human message */
    int64_t at_ms;       /* when it was dead-lettered */
    const void *payload; /* the batch frame as it was sent; valid during the callback only */
    size_t len;
};
/* Calls fn for up to `max` dead batches with seq > after_seq, in seq order; strings and
 * payload are valid during the callback only. fn returns non-zero to stop. Returns the number
 * visited or KP_EIO. */
int kp_spool_dead_scan(struct kp_spool *sp, uint64_t after_seq, size_t max,
                       int (*fn)(const struct kp_spool_dead_item *it, void *arg), void *arg);

struct kp_spool_rejected_item {
    uint64_t seq;     /* the acked batch */
    uint32_t n;       /* index of the observation in its obs array */
    const char *code; /* reason code */
    const char *msg;
    int64_t at_ms;    /* when the ack arrived */
};
/* Calls fn for every per-observation refusal recorded from acks of batch `seq` (0: of every
 * batch), in (seq, n) order; strings valid during the callback only. fn returns non-zero to
 * stop. Returns the number visited or KP_EIO. */
int kp_spool_rejected_scan(struct kp_spool *sp, uint64_t seq,
                           int (*fn)(const struct kp_spool_rejected_item *it, void *arg),
                           void *arg);

/* Moves dead batch `seq` back into the waiting batches under a NEW seq (*new_seq, taken from
 * next_seq, so strictly above every seq the adapter ever used), in one transaction: the frame
 * is re-encoded with the new seq and nothing else changed (the same observations, refs, revs
 * and `sent`), it waits from now (created_ms), the source cursor is untouched.
 * Why a new seq (PROTOCOL.md batch.seq, ARCHITECTURE.md guarantee 2): the scorer
 * deduplicates on (adapter, seq). A dead batch normally never reached a commit, but one whose
 * ack was lost and whose retransmission then met a permanent nack (a limit or grant changed
 * in between) was committed: under its old seq it would be answered dup:true and its
 * observations never re-examined, and a running adapter only takes seqs above the last one it
 * queued. Under a new seq it is applied as a fresh batch; observations already stored are
 * recognised by (scheme, src, ref, rev) and not counted again, so nothing is counted twice
 * either way. Not bounded by max_bytes (the bytes were on disk already); a full spool simply
 * stays paused a little longer. Returns 0, KP_ENOENT (no dead batch seq), KP_EINVAL (its
 * payload is not a batch frame with an integer seq; it stays dead), KP_EIO (also on a
 * read-only handle). Blocking (fsync; waits up to 5 s for the adapter's write lock). */
int kp_spool_retry_dead(struct kp_spool *sp, uint64_t seq, uint64_t *new_seq);

#endif
