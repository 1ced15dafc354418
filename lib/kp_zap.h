/*
 * kp_zap: the ZAP handler (ZeroMQ RFC 27) of a process, on its libuv loop. A CURVE server
 * socket opened with a zap_domain (kp_zsock_opts) asks the handler, over
 * inproc://zeromq.zap.01 of the same ZeroMQ context (kp_zctx()), whether a client's public key
 * may connect; the handler answers 200 with the User-Id the callback chose (the adapter id;
 * kp_zsock_msg_user_id() then shows it on every message of that connection) or 400. The
 * servers set ZMQ_ZAP_ENFORCE_DOMAIN, so without a running handler nobody gets in
 * (ARCHITECTURE.md guarantee 5).
 *
 * ZeroMQ allows one ZAP endpoint per context, so the handler is shared: each server registers
 * its domain with kp_zap_open() (the collector "kaoping", the broker "kaoping-internal"); the
 * first registration binds the endpoint and the last kp_zap_close() unbinds it. Requests for a
 * domain nobody registered, for a mechanism other than CURVE, or that are malformed, are
 * refused. Several registrations of one domain (tests with two servers) are asked in turn.
 * Authentication happens once per connection, at the handshake: removing a key from a key
 * file takes effect on that client's next connection (servers re-check grants per message).
 *
 * Loop thread only; nothing blocks.
 */
#ifndef KP_ZAP_H
#define KP_ZAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define KP_ZAP_DOMAIN_ADAPTERS "kaoping"          /* collector frontend (PROTOCOL.md) */
#define KP_ZAP_DOMAIN_INTERNAL "kaoping-internal" /* broker frontend and backend */
#define KP_ZAP_USER_ID_MAX     64

/* Decides one handshake: key is the client's CURVE public key (32 bytes), address its IP.
 * Returns true and writes the User-Id (NUL-terminated, at most KP_ZAP_USER_ID_MAX bytes) to
 * user_id to admit the client; false to refuse. Runs on the loop. */
typedef bool (*kp_zap_auth_cb)(const uint8_t key[32], const char *address, char *user_id,
                               void *arg);

struct kp_zap;

/* Registers domain with cb on loop (every registration of a process on the same loop), binding
 * the ZAP endpoint on the first one. Caller owns *out; close with kp_zap_close(). Returns 0,
 * KP_EINVAL (bad arguments, another loop) or KP_EZMQ (the endpoint is taken by a handler that
 * is not kp_zap's). If it returns an error, cb is never called. */
int kp_zap_open(uv_loop_t *loop, const char *domain, kp_zap_auth_cb cb, void *arg,
                struct kp_zap **out);
/* Unregisters; the last one closes the endpoint (after which CURVE servers admit nobody).
 * cb is not called after this returns. Sets *z to NULL; accepts NULL. */
void kp_zap_close(struct kp_zap **z);

/* Handshakes this registration admitted / refused. */
uint64_t kp_zap_accepted(const struct kp_zap *z);
uint64_t kp_zap_refused(const struct kp_zap *z);

#endif
