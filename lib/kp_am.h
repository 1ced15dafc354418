/*
 * kp_am: a client of Alertmanager's API v2, POST <base>/api/v2/alerts (libcurl + jansson), the
 * delivery standard of DOMAIN.md "Alert ladders": labels identify an alert, startsAt is its
 * first firing time and never changes, a firing alert is re-sent periodically with a short
 * endsAt, a resolved one is sent with endsAt <= now. The module only encodes and posts; what to
 * (re)send and when is the caller's (the scorer's sender thread, scr_alert_am.c), whose source
 * of truth is the `alert` table, so a failed post loses nothing.
 *
 * One struct kp_am per thread; kp_am_post() blocks up to the timeout. Thread-safe otherwise
 * (libcurl's global init is done once, under pthread_once).
 */
#ifndef KP_AM_H
#define KP_AM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kp_buf;
struct kp_am;

/* A label or annotation. */
struct kp_am_pair {
    const char *name;
    const char *value; /* NULL or "" omits the pair */
};

struct kp_am_alert {
    const struct kp_am_pair *labels;
    size_t n_labels;
    const struct kp_am_pair *annotations;
    size_t n_annotations;
    int64_t starts_at;         /* ms since the epoch; 0 omits it */
    int64_t ends_at;           /* ms since the epoch; 0 omits it */
    const char *generator_url; /* NULL omits it */
};

/* base_url: "http://host:9093" (a trailing slash or an /api/v2/alerts suffix is accepted).
 * timeout_ms bounds each post (connect + transfer). abort, when not NULL, is polled during a
 * post: setting it true makes the post return KP_EAGAIN promptly (daemon shutdown). Caller
 * owns *out; close with kp_am_close(). Returns 0, KP_EINVAL (bad URL) or KP_ENOMEM. */
int kp_am_open(const char *base_url, long timeout_ms, const atomic_bool *abort, struct kp_am **out);
void kp_am_close(struct kp_am **am);

/* The endpoint posted to ("http://host:9093/api/v2/alerts"). */
const char *kp_am_url(const struct kp_am *am);

/* Appends the JSON array of alerts (the PostableAlerts body) to out, NUL-terminated. Label
 * and annotation values must be UTF-8 (invalid bytes are replaced by U+FFFD). Returns 0 or
 * KP_EINVAL (an alert without labels). */
int kp_am_encode(const struct kp_am_alert *alerts, size_t n, struct kp_buf *out);

/* RFC 3339 UTC with milliseconds ("2015-06-19T00:00:00.000Z") into buf (>= 25 bytes). */
void kp_am_format_time(int64_t ms, char *buf, size_t len);

/* POSTs the alerts (one request). Tri-state (STYLE.md "Errors"): 0 when Alertmanager accepted
 * them (2xx); KP_EAGAIN when worth retrying (connection refused, timeout, 5xx, 429, abort);
 * KP_EPROTO when refused (other 4xx: the body is wrong, retrying the same body cannot help).
 * err gets the HTTP status and Alertmanager's message or curl's reason. Blocks. */
int kp_am_post(struct kp_am *am, const struct kp_am_alert *alerts, size_t n, char *err,
               size_t errlen);

#endif
