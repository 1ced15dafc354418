/*
 * kp_admin: the admin HTTP endpoint of every daemon (libmicrohttpd, its own thread):
 * GET /metrics (Prometheus text from a kp_metrics registry), GET /healthz (alive: 200 "ok"),
 * GET /readyz (200 when the daemon's ready callback says its dependencies are reachable,
 * else 503 with the reason). Any other path is 404; another method than GET/HEAD on one of
 * the three paths is 405.
 */
#ifndef KP_ADMIN_H
#define KP_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

struct kp_metrics;
struct kp_admin;

/* Called from the HTTP thread: must only read atomics/volatile flags. Writes a short reason
 * into why when not ready. */
typedef bool (*kp_admin_ready_fn)(void *arg, char *why, size_t why_len);

/* Listens on "host:port" (port 0 = ephemeral; host "" or "*" = all). m is borrowed and must
 * outlive the endpoint. ready may be NULL (always ready). Caller owns *out. */
int kp_admin_open(const char *listen, struct kp_metrics *m, kp_admin_ready_fn ready, void *arg,
                  struct kp_admin **out);
/* The bound TCP port. */
int kp_admin_port(const struct kp_admin *a);
void kp_admin_close(struct kp_admin **a);

#endif
