/*
 * kp_zsock: ZeroMQ sockets driven by a libuv loop, the only module that calls zmq_* (STYLE.md
 * "Functional core, imperative shell"). ZMQ_FD is edge-triggered: after every receive burst
 * and after every send the module re-reads ZMQ_EVENTS and, while ZMQ_POLLIN is set, keeps
 * draining on the next loop turn (uv_idle), so a burst arriving after one edge is never
 * stranded. Receiving is bounded per loop turn for fairness. ROUTER sockets are opened with
 * ZMQ_ROUTER_MANDATORY and every send's result is returned. ZMQ_MAXMSGSIZE is set on every
 * socket from kp_zsock_opts.max_msg_bytes.
 *
 * All functions must be called on the loop's thread. None blocks.
 */
#ifndef KP_ZSOCK_H
#define KP_ZSOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* One frame of a multipart message. For received frames the data stays valid only during
 * the receive callback. */
struct kp_frame {
    const void *data;
    size_t len;
};

#define KP_ZSOCK_MAX_FRAMES 16 /* multipart messages with more frames are dropped and counted */

/* KP_ZSOCK_REP: strict request/reply, one reply per request sent from the receive callback
 * (the ZAP handler of kp_zap.c). */
enum kp_zsock_type { KP_ZSOCK_ROUTER, KP_ZSOCK_DEALER, KP_ZSOCK_PUB, KP_ZSOCK_SUB, KP_ZSOCK_REP };

struct kp_zsock_opts {
    int64_t max_msg_bytes; /* ZMQ_MAXMSGSIZE; 0 = KP_DEFAULT_MAX_BYTES + 64k envelope, <0 = none */
    int sndhwm;            /* 0 = zmq default (1000) */
    int rcvhwm;
    const char *identity;  /* ZMQ_ROUTING_ID for DEALER, or NULL */
    int linger_ms;         /* ZMQ_LINGER; default 0 */
    /* CURVE (a later issue): z85 keys, NULL = plain TCP. */
    const char *curve_server_secret; /* server side */
    const char *curve_public, *curve_secret, *curve_serverkey; /* client side */
    const char *zap_domain;
};

struct kp_zsock;

/* Called with all frames of one multipart message. */
typedef void (*kp_zsock_recv_cb)(struct kp_zsock *s, const struct kp_frame *frames, size_t n,
                                 void *arg);
typedef void (*kp_zsock_close_cb)(void *arg);

/* The process-wide ZeroMQ context (created on first use, destroyed by kp_zctx_term()).
 * Thread-safe. kp_zctx_term() blocks until every socket is closed (kp_zsock_close closes the
 * ZeroMQ socket at once, its linger applying); a later kp_zctx() makes a new context. */
void *kp_zctx(void);
void kp_zctx_term(void);

/* Creates a socket on `loop`. Caller owns *out; close with kp_zsock_close(). opts may be
 * NULL. Returns 0; KP_EINVAL for bad arguments, a malformed identity or CURVE key; KP_EZMQ. */
int kp_zsock_open(uv_loop_t *loop, enum kp_zsock_type type, const struct kp_zsock_opts *opts,
                  struct kp_zsock **out);
/* Return 0; KP_EINVAL for a malformed endpoint or unknown transport; KP_EZMQ otherwise (address
 * in use, ...); KP_ECLOSED after kp_zsock_close. */
int kp_zsock_bind(struct kp_zsock *s, const char *endpoint);
int kp_zsock_connect(struct kp_zsock *s, const char *endpoint);
/* The endpoint actually bound (resolves tcp://127.0.0.1:* to its port). KP_EINVAL when buf is
 * too small. */
int kp_zsock_last_endpoint(struct kp_zsock *s, char *buf, size_t len);
int kp_zsock_subscribe(struct kp_zsock *s, const void *prefix, size_t len);

/* Starts delivering received messages to cb (from the next loop turn on, at most a bounded
 * number per turn). If this returns an error, cb is never called: KP_EINVAL when cb is NULL or
 * the socket was started already. The callback may send on any socket and may pause or close
 * its own socket (delivery stops after the callback returns). */
int kp_zsock_start(struct kp_zsock *s, kp_zsock_recv_cb cb, void *arg);
/* Stops/resumes reading (backpressure: unread messages stay in ZeroMQ's queues, whose HWM
 * then blocks the sender). */
void kp_zsock_pause(struct kp_zsock *s);
void kp_zsock_resume(struct kp_zsock *s);

/* Sends one multipart message without blocking. Returns 0; KP_EAGAIN when the peer's queue
 * is full (HWM) or a DEALER has no peer; KP_EHOSTUNREACH when a ROUTER's destination identity
 * is not connected; KP_EINVAL for n == 0; KP_ECLOSED after close; KP_EZMQ otherwise (e.g. a
 * SUB socket). On error nothing was sent. */
int kp_zsock_send(struct kp_zsock *s, const struct kp_frame *frames, size_t n);

/* Called on the loop whenever the number of connected peers of a monitored socket changes. */
typedef void (*kp_zsock_peers_cb)(struct kp_zsock *s, int peers, void *arg);

/* Counts the socket's connections with a ZeroMQ socket monitor read on the loop: a connect
 * or accept adds one, a disconnect removes one (operations: "connected adapters" on the
 * collector, "broker reachable" for /readyz). Call before bind/connect, or connections made
 * earlier are not counted. cb (may be NULL) runs on the loop after each change. Returns 0;
 * KP_EINVAL when already monitored; KP_ECLOSED after close; KP_EZMQ. If it returns an error,
 * cb is never called. */
int kp_zsock_monitor(struct kp_zsock *s, kp_zsock_peers_cb cb, void *arg);
/* Connected peers counted by the monitor, or -1 when the socket is not monitored. */
int kp_zsock_peers(const struct kp_zsock *s);
/* A monitored socket also connects again by itself after a failed handshake (issue 6: a
 * CURVE key the server did not admit yet; libzmq would otherwise give that connection up for
 * good), after 0.5 s doubling up to 16 s. Handshakes that failed so far: */
uint64_t kp_zsock_handshake_failures(const struct kp_zsock *s);

/* The ZAP User-Id of the connection the message being delivered came from (under CURVE the
 * id the ZAP handler answered, kp_zap.h), or NULL when the connection was not authenticated
 * through ZAP (plain TCP, inproc). Valid only inside the receive callback of s, for the
 * message it is called with; the string stays valid until the callback returns. */
const char *kp_zsock_msg_user_id(const struct kp_zsock *s);
/* Any ZMTP/ZAP metadata property of that message ("Peer-Address", "User-Id", ...), same
 * rules as kp_zsock_msg_user_id. */
const char *kp_zsock_msg_property(const struct kp_zsock *s, const char *name);

/* The libzmq socket underneath, for tests that take its ZMQ_FD edge behind kp_zsock's back
 * (a zmq_getsockopt ZMQ_EVENTS). Sending or receiving on it breaks kp_zsock. */
void *kp_zsock_zmq(struct kp_zsock *s);

/* Counters of this socket (messages received, dropped for too many frames). */
uint64_t kp_zsock_received(const struct kp_zsock *s);
uint64_t kp_zsock_dropped(const struct kp_zsock *s);

/* Closes the socket; close_cb(arg) runs once the uv handles are closed and the struct is
 * freed. Sets *s to NULL. Accepts NULL. */
void kp_zsock_close(struct kp_zsock **s, kp_zsock_close_cb close_cb, void *arg);

#endif
