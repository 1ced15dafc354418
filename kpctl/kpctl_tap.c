/*
 * kpctl tap: follows a scorer live (issue 7). It subscribes to the scorer's PUB socket
 * (alerts.pub; topics "alert.<scheme>" for alert transitions and "score.<scheme>" for changed
 * unit totals, each a JSON object) through kp_zsock on a libuv loop and prints one line per
 * message until interrupted, --count messages or --timeout seconds. Messages sent while nobody
 * listens are not kept (a tap, not a log: kp_alert is the record).
 */
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "kp_err.h"
#include "kp_zsock.h"
#include "kpctl.h"

#define DEFAULT_PUB "tcp://127.0.0.1:7453"

struct tap {
    uv_loop_t *loop;
    struct kp_zsock *sub;
    uv_timer_t timer;
    uv_signal_t sig;
    long count, seen;
    bool json;
    bool stopped;
    int rc;
};

static const char *jget(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : "";
}

static void stop(struct tap *t)
{
    if (t->stopped)
        return;
    t->stopped = true;
    kp_zsock_close(&t->sub, NULL, NULL);
    uv_timer_stop(&t->timer);
    uv_close((uv_handle_t *)&t->timer, NULL);
    uv_signal_stop(&t->sig);
    uv_close((uv_handle_t *)&t->sig, NULL);
}

static void on_msg(struct kp_zsock *z, const struct kp_frame *f, size_t n, void *arg)
{
    (void)z;
    struct tap *t = arg;
    if (n != 2 || !t->sub)
        return;
    char now[16];
    time_t secs = time(NULL);
    struct tm tm;
    localtime_r(&secs, &tm);
    strftime(now, sizeof now, "%H:%M:%S", &tm);
    if (t->json) {
        printf("%s %.*s %.*s\n", now, (int)f[0].len, (const char *)f[0].data, (int)f[1].len,
               (const char *)f[1].data);
    } else {
        json_t *j = json_loadb(f[1].data, f[1].len, 0, NULL);
        if (!json_is_object(j)) {
            json_decref(j);
            return;
        }
        if (f[0].len >= 6 && !memcmp(f[0].data, "alert.", 6)) {
            printf("%s alert %s %-8s %-6s %-18s %s%s%s %s %s: %s\n", now, jget(j, "scheme"),
                   jget(j, "state"), jget(j, "severity"), jget(j, "rule"),
                   jget(j, "unit")[0] ? jget(j, "unit") : jget(j, "adapter"),
                   jget(j, "indicator")[0] ? " " : "", jget(j, "indicator"), jget(j, "period"),
                   jget(j, "fired_at"), jget(j, "summary"));
        } else {
            json_t *tot = json_object_get(j, "total");
            if (json_object_get(j, "deleted"))
                printf("%s score %s %s %s (%s) removed\n", now, jget(j, "scheme"),
                       jget(j, "period"), jget(j, "unit"), jget(j, "unit_name"));
            else
                printf("%s score %s %s %s (%s) total %.2f rank %lld grade %s%s\n", now,
                       jget(j, "scheme"), jget(j, "period"), jget(j, "unit"), jget(j, "unit_name"),
                       json_number_value(tot),
                       (long long)json_integer_value(json_object_get(j, "rank")), jget(j, "grade"),
                       json_is_true(json_object_get(j, "vetoed")) ? " vetoed" : "");
        }
        json_decref(j);
    }
    fflush(stdout);
    if (t->count > 0 && ++t->seen >= t->count)
        stop(t);
}

static void on_timeout(uv_timer_t *h)
{
    struct tap *t = h->data;
    t->rc = t->count > 0 ? 1 : 0; /* fewer messages than asked for */
    stop(t);
}

static void on_sigint(uv_signal_t *h, int signum)
{
    (void)signum;
    stop(h->data);
}

static int cmd_tap(int argc, char **argv)
{
    const char *ep = kpctl_arg(argc, argv, "--pub");
    if (!ep)
        ep = getenv("KP_ALERTS_PUB");
    if (!ep)
        ep = DEFAULT_PUB;
    const char *scheme = kpctl_arg(argc, argv, "--scheme");
    const char *cnt = kpctl_arg(argc, argv, "--count");
    const char *tmo = kpctl_arg(argc, argv, "--timeout");
    bool only_alerts = kpctl_flag(argc, argv, "--alerts");
    bool only_scores = kpctl_flag(argc, argv, "--scores");
    struct tap t = {.loop = uv_default_loop(),
                    .count = cnt ? atol(cnt) : 0,
                    .json = kpctl_flag(argc, argv, "--json")};
    int rc;
    if ((rc = kp_zsock_open(t.loop, KP_ZSOCK_SUB, NULL, &t.sub)) != 0 ||
        (rc = kp_zsock_connect(t.sub, ep)) != 0) {
        fprintf(stderr, "kpctl tap: %s: %s\n", ep, kp_strerror(rc));
        kp_zsock_close(&t.sub, NULL, NULL);
        uv_run(t.loop, UV_RUN_DEFAULT);
        return 1;
    }
    const char *topics[2] = {only_scores ? NULL : "alert.", only_alerts ? NULL : "score."};
    for (int i = 0; i < 2; i++) {
        if (!topics[i])
            continue;
        char prefix[128];
        snprintf(prefix, sizeof prefix, "%s%s", topics[i], scheme ? scheme : "");
        kp_zsock_subscribe(t.sub, prefix, strlen(prefix));
    }
    kp_zsock_start(t.sub, on_msg, &t);
    uv_timer_init(t.loop, &t.timer);
    t.timer.data = &t;
    if (tmo && atof(tmo) > 0)
        uv_timer_start(&t.timer, on_timeout, (uint64_t)(atof(tmo) * 1000), 0);
    uv_signal_init(t.loop, &t.sig);
    t.sig.data = &t;
    uv_signal_start(&t.sig, on_sigint, SIGINT);
    fprintf(stderr, "kpctl tap: following %s (%s%s)\n", ep,
            only_scores   ? "scores"
            : only_alerts ? "alerts"
                          : "alerts and scores",
            scheme ? ", one scheme" : "");
    uv_run(t.loop, UV_RUN_DEFAULT);
    uv_loop_close(t.loop);
    kp_zctx_term();
    return t.rc;
}

const struct kpctl_cmd kpctl_cmd_tap = {
    "tap",
    "tap [--pub ENDPOINT] [--scheme S] [--alerts | --scores] [--count N] [--timeout SEC] [--json]",
    "follows a scorer's alert transitions and score changes live (its alerts.pub socket;\n"
    "default $KP_ALERTS_PUB or " DEFAULT_PUB "); ends on Ctrl-C, after --count messages\n"
    "(exit 1 when --timeout comes first) or after --timeout seconds",
    cmd_tap,
};
