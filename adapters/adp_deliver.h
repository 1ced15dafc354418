/*
 * adp_deliver: the spool → collector half of the adapter. A ZeroMQ DEALER connected to the
 * collector (PROTOCOL.md "Transport") sends the spooled batches in seq order, keeping at most
 * `inflight` of them unanswered. An ack deletes the batch from the spool (its rej[] entries
 * are recorded with kp_spool_rejected); a nack with retry:false moves it to the dead letters;
 * a nack with retry:true or no answer within the ack timeout sends it again later, with
 * exponential backoff and jitter up to retry_max_ms. On start everything still in the spool
 * is sent again: the scorer deduplicates on (adapter, seq) and answers dup:true
 * (ARCHITECTURE.md guarantees 1 and 2). Payloads are read back from the spool for every
 * (re)transmission, so memory does not grow with the window. Loop thread only; non-blocking
 * except for the spool's fsync on ack.
 */
#ifndef ADP_DELIVER_H
#define ADP_DELIVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct kp_spool;
struct adp_metrics;
struct adp_deliver;

struct adp_deliver_opts {
    const char *endpoint;     /* the collector, e.g. tcp://127.0.0.1:7450 */
    const char *aid, *scheme; /* for log lines */
    uint32_t inflight;        /* batches unanswered at most (>= 1) */
    int64_t ack_timeout_ms;   /* first wait for an answer; doubles per retransmit */
    int64_t retry_min_ms;     /* first backoff after a retry:true nack */
    int64_t retry_max_ms;     /* cap of every wait */
    /* CURVE (PROTOCOL.md "Transport"): Z85 keys, read only by adp_deliver_open (not kept);
     * NULL = plain TCP */
    const char *curve_public, *curve_secret, *curve_serverkey;
};

/* Called after acks or dead letters freed spool space (the runtime resumes a paused pull). */
typedef void (*adp_deliver_freed_cb)(void *arg);

/* Opens the DEALER, connects and starts sending what the spool holds. sp, o's strings and am
 * are borrowed and must outlive the delivery. Caller owns *out; close with
 * adp_deliver_close(). Returns 0 or KP_EZMQ. */
int adp_deliver_open(uv_loop_t *loop, struct kp_spool *sp, const struct adp_deliver_opts *o,
                     struct adp_metrics *am, adp_deliver_freed_cb freed, void *arg,
                     struct adp_deliver **out);

/* New batches were stored in the spool: fill the window. */
void adp_deliver_kick(struct adp_deliver *d);

/* Batches sent and not yet answered (or waiting for their retransmission). */
size_t adp_deliver_inflight(const struct adp_deliver *d);

/* Draining before a stop (SIGTERM): no new batch is taken into the window from now on; the
 * batches in flight go on (retransmitted when due) until answered, and acks still delete them
 * from the spool. Irreversible; close the delivery when adp_deliver_inflight() reaches 0 or a
 * deadline passes. */
void adp_deliver_drain(struct adp_deliver *d);

/* Stops sending and closes the socket; unanswered batches stay in the spool. close_cb(arg)
 * runs (may be NULL) once the socket's handles are closed and the struct is freed. Sets *d
 * to NULL; accepts NULL. */
void adp_deliver_close(struct adp_deliver **d, void (*close_cb)(void *arg), void *arg);

#endif
