/*
 * bench_alert_latency: the alert-latency benchmark of issue 7, and the scripted client of the
 * alert integration test. It talks to a collector like a vendor's own client would
 * (PROTOCOL.md: a DEALER, one msgpack batch per frame, ack after the scorer's COMMIT) and to
 * Alertmanager's API v2.
 *
 *   bench_alert_latency send --collector EP --aid A --scheme S --src SRC OBS...
 *       sends one batch (seq = the current time in µs, so it grows across runs) and waits for
 *       its ack; OBS is "unit,indicator,period,value,ref[,rev[,x-json]]" (x a JSON object, e.g.
 *       {"due":"2015-06-10T12:00:00+08:00"}). Prints "ack seq=… stored=… rej=…" and exits 0
 *       when every observation was stored.
 *   bench_alert_latency am --am URL [MATCHER...]
 *       prints the active alerts of Alertmanager matching every MATCHER (alertname="x"), one
 *       line each: its labels as k=v sorted by name, then startsAt=… state=… inhibited=N.
 *   bench_alert_latency run --collector EP --am URL --scheme-file F [--group G] [-n N]
 *       [--indicator I] [--src SRC] [--rule R]
 *       N trials: each sends one observation that drives a fresh unit's monthly total under 60
 *       (rule R, default total_low, of the Anshan scheme) and times how long until the alert
 *       is acknowledged (ack) and visible in GET /api/v2/alerts; prints p50/p90/p99/max.
 *       Benchmarks print tables; they never assert time (STYLE.md "Tests"); it fails only
 *       when an alert does not show up at all (10 s).
 */
#include <curl/curl.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "kp_buf.h"
#include "kp_msg.h"
#include "kp_time.h"
#include "score_engine.h"

static const char *arg(int argc, char **argv, const char *name, const char *def)
{
    for (int i = 0; i + 1 < argc; i++)
        if (!strcmp(argv[i], name))
            return argv[i + 1];
    return def;
}

static void pack_json(msgpack_packer *pk, const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *v;
        msgpack_pack_map(pk, json_object_size(j));
        json_object_foreach((json_t *)j, k, v)
        {
            msgpack_pack_str_with_body(pk, k, strlen(k));
            pack_json(pk, v);
        }
        break;
    }
    case JSON_ARRAY:
        msgpack_pack_array(pk, json_array_size(j));
        for (size_t i = 0; i < json_array_size(j); i++)
            pack_json(pk, json_array_get(j, i));
        break;
    case JSON_STRING:
        msgpack_pack_str_with_body(pk, json_string_value(j), json_string_length(j));
        break;
    case JSON_INTEGER:
        msgpack_pack_int64(pk, json_integer_value(j));
        break;
    case JSON_REAL:
        msgpack_pack_double(pk, json_real_value(j));
        break;
    case JSON_TRUE:
        msgpack_pack_true(pk);
        break;
    case JSON_FALSE:
        msgpack_pack_false(pk);
        break;
    default:
        msgpack_pack_nil(pk);
    }
}

struct client {
    void *ctx, *sock;
    uint64_t seq;
};

static int client_open(struct client *c, const char *endpoint)
{
    c->ctx = zmq_ctx_new();
    c->sock = zmq_socket(c->ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(c->sock, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_connect(c->sock, endpoint) != 0) {
        fprintf(stderr, "connect %s: %s\n", endpoint, zmq_strerror(zmq_errno()));
        return -1;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    c->seq = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    return 0;
}

static void client_close(struct client *c)
{
    zmq_close(c->sock);
    zmq_ctx_term(c->ctx);
}

/* Sends b and waits for the reply to its seq. Returns 0 (ack, *stored and *n_rej set), 1 (a
 * nack or an ack with refusals, printed), -1 (no answer in 10 s). */
static int send_batch(struct client *c, struct kp_batch *b, uint64_t *stored, size_t *n_rej,
                      bool quiet)
{
    b->seq = ++c->seq;
    b->sent = kp_now_ms();
    struct kp_buf f = {0};
    if (kp_batch_encode(&f, b) != 0) {
        fprintf(stderr, "cannot encode the batch (a code, period or value is invalid)\n");
        kp_buf_fini(&f);
        return 1;
    }
    zmq_send(c->sock, f.data, f.len, 0);
    kp_buf_fini(&f);
    int64_t deadline = kp_now_ms() + 10000;
    while (kp_now_ms() < deadline) {
        zmq_pollitem_t it = {c->sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 100) <= 0)
            continue;
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, c->sock, 0) < 0) {
            zmq_msg_close(&m);
            continue;
        }
        enum kp_msg_type t;
        const void *d = zmq_msg_data(&m);
        size_t len = zmq_msg_size(&m);
        int rc = -2;
        if (kp_msg_peek(d, len, 1 << 20, &t) == KP_R_OK && t == KP_MSG_ACK) {
            struct kp_ack a;
            if (kp_ack_decode(d, len, &a) == KP_R_OK && a.seq == b->seq) {
                *stored = a.stored;
                *n_rej = a.n_rej;
                for (size_t i = 0; i < a.n_rej && !quiet; i++)
                    fprintf(stderr, "rej n=%u code=%s msg=%s\n", a.rej[i].n,
                            kp_reason_str(a.rej[i].code), a.rej[i].msg);
                rc = a.n_rej ? 1 : 0;
                kp_ack_fini(&a);
            }
        } else if (t == KP_MSG_NACK) {
            struct kp_nack n;
            if (kp_nack_decode(d, len, &n) == KP_R_OK && (!n.has_seq || n.seq == b->seq)) {
                fprintf(stderr, "nack code=%s retry=%s msg=%s\n", kp_reason_str(n.code),
                        n.retry ? "true" : "false", n.msg);
                rc = 1;
            }
        }
        zmq_msg_close(&m);
        if (rc != -2)
            return rc;
    }
    fprintf(stderr, "no answer to seq %" PRIu64 " in 10 s\n", b->seq);
    return -1;
}

/* ---- send ----------------------------------------------------------------------------------- */

static int cmd_send(int argc, char **argv)
{
    const char *ep = arg(argc, argv, "--collector", NULL);
    const char *aid = arg(argc, argv, "--aid", "bench");
    const char *scheme = arg(argc, argv, "--scheme", "anshan-2015");
    const char *src = arg(argc, argv, "--src", "stats");
    if (!ep) {
        fprintf(stderr, "send: --collector required\n");
        return 2;
    }
    struct kp_batch b = {0};
    snprintf(b.aid, sizeof b.aid, "%s", aid);
    snprintf(b.scheme, sizeof b.scheme, "%s", scheme);
    snprintf(b.src, sizeof b.src, "%s", src);
    b.obs = calloc((size_t)argc + 1, sizeof *b.obs);
    msgpack_sbuffer *xs = calloc((size_t)argc + 1, sizeof *xs);
    for (int i = 0; i < argc; i++) {
        if (argv[i][0] == '-') {
            i++;
            continue;
        }
        char *spec = strdup(argv[i]);
        char *f[7] = {0};
        int nf = 0;
        /* the x JSON may hold commas: split the first six fields only */
        for (char *p = spec; nf < 7 && p;) {
            if (nf == 6) {
                f[nf++] = p;
                break;
            }
            char *comma = strchr(p, ',');
            if (comma)
                *comma = 0;
            f[nf++] = p;
            p = comma ? comma + 1 : NULL;
        }
        if (nf < 5) {
            fprintf(stderr, "send: bad observation \"%s\"\n", argv[i]);
            return 2;
        }
        struct kp_obs *o = &b.obs[b.n_obs];
        snprintf(o->u, sizeof o->u, "%s", f[0]);
        snprintf(o->i, sizeof o->i, "%s", f[1]);
        snprintf(o->p, sizeof o->p, "%s", f[2]);
        o->val = strtod(f[3], NULL);
        snprintf(o->ref, sizeof o->ref, "%s", f[4]);
        o->rev = nf > 5 ? strtoull(f[5], NULL, 10) : 0;
        o->w = 1;
        o->at = kp_now_ms();
        if (nf > 6 && f[6][0]) {
            json_error_t je;
            json_t *x = json_loads(f[6], 0, &je);
            if (!json_is_object(x)) {
                fprintf(stderr, "send: x is not a JSON object: %s\n", f[6]);
                return 2;
            }
            msgpack_sbuffer_init(&xs[b.n_obs]);
            msgpack_packer pk;
            msgpack_packer_init(&pk, &xs[b.n_obs], msgpack_sbuffer_write);
            pack_json(&pk, x);
            json_decref(x);
            o->x = (const uint8_t *)xs[b.n_obs].data;
            o->x_len = xs[b.n_obs].size;
        }
        b.n_obs++;
        free(spec);
    }
    struct client c;
    if (client_open(&c, ep))
        return 1;
    b.sent = kp_now_ms();
    uint64_t stored = 0;
    size_t n_rej = 0;
    int rc = send_batch(&c, &b, &stored, &n_rej, false);
    if (rc >= 0 && rc != 1)
        printf("ack seq=%" PRIu64 " stored=%" PRIu64 " rej=%zu\n", b.seq, stored, n_rej);
    client_close(&c);
    for (size_t i = 0; i < b.n_obs; i++)
        if (b.obs[i].x)
            msgpack_sbuffer_destroy(&xs[i]);
    free(xs);
    free(b.obs);
    return rc == 0 && stored == b.n_obs ? 0 : 1;
}

/* ---- run ------------------------------------------------------------------------------------ */

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    kp_buf_append(arg, p, size * n);
    return size * n;
}

/* True when Alertmanager holds an active alert with these labels. */
static bool am_has(CURL *curl, const char *am, const char *rule, const char *unit,
                   const char *period)
{
    char url[1024], f[256];
    snprintf(f, sizeof f, "alertname=\"%s\"", rule);
    char *e1 = curl_easy_escape(curl, f, 0);
    snprintf(f, sizeof f, "unit=\"%s\"", unit);
    char *e2 = curl_easy_escape(curl, f, 0);
    snprintf(f, sizeof f, "period=\"%s\"", period);
    char *e3 = curl_easy_escape(curl, f, 0);
    snprintf(url, sizeof url,
             "%s/api/v2/alerts?active=true&silenced=true&inhibited=true"
             "&filter=%s&filter=%s&filter=%s",
             am, e1, e2, e3);
    curl_free(e1);
    curl_free(e2);
    curl_free(e3);
    struct kp_buf body = {0};
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 2000L);
    bool found = false;
    if (curl_easy_perform(curl) == CURLE_OK) {
        json_t *j = json_loadb((const char *)body.data, body.len, 0, NULL);
        found = json_is_array(j) && json_array_size(j) > 0;
        json_decref(j);
    }
    kp_buf_fini(&body);
    return found;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmd_am(int argc, char **argv)
{
    const char *am = arg(argc, argv, "--am", NULL);
    if (!am) {
        fprintf(stderr, "am: --am required\n");
        return 2;
    }
    CURL *curl = curl_easy_init();
    struct kp_buf url = {0};
    kp_buf_printf(&url, "%s/api/v2/alerts?active=true&silenced=true&inhibited=true", am);
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--am")) {
            i++;
            continue;
        }
        char *e = curl_easy_escape(curl, argv[i], 0);
        kp_buf_printf(&url, "&filter=%s", e);
        curl_free(e);
    }
    struct kp_buf body = {0};
    curl_easy_setopt(curl, CURLOPT_URL, kp_buf_cstr(&url));
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 5000L);
    CURLcode cc = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    int rc = 0;
    json_t *j = cc == CURLE_OK ? json_loadb((const char *)body.data, body.len, 0, NULL) : NULL;
    if (cc != CURLE_OK || status != 200 || !json_is_array(j)) {
        fprintf(stderr, "am: GET %s: %s HTTP %ld\n", kp_buf_cstr(&url), curl_easy_strerror(cc),
                status);
        rc = 1;
    }
    for (size_t i = 0; rc == 0 && i < json_array_size(j); i++) {
        json_t *a = json_array_get(j, i), *labels = json_object_get(a, "labels");
        const char *keys[64];
        size_t nk = 0;
        const char *k;
        json_t *v;
        json_object_foreach(labels, k, v)
        {
            if (nk < 64)
                keys[nk++] = k;
        }
        qsort(keys, nk, sizeof *keys, cmp_str);
        for (size_t x = 0; x < nk; x++)
            printf("%s=%s ", keys[x], json_string_value(json_object_get(labels, keys[x])));
        json_t *st = json_object_get(a, "status");
        printf("startsAt=%s state=%s inhibited=%zu\n",
               json_string_value(json_object_get(a, "startsAt")),
               json_string_value(json_object_get(st, "state")),
               json_array_size(json_object_get(st, "inhibitedBy")));
    }
    json_decref(j);
    kp_buf_fini(&body);
    kp_buf_fini(&url);
    curl_easy_cleanup(curl);
    return rc;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(const double *v, size_t n, double p)
{
    if (!n)
        return NAN;
    size_t k = (size_t)ceil(p * (double)n) - 1;
    return v[k < n ? k : n - 1];
}

static int cmd_run(int argc, char **argv)
{
    const char *ep = arg(argc, argv, "--collector", NULL);
    const char *am = arg(argc, argv, "--am", NULL);
    const char *file = arg(argc, argv, "--scheme-file", NULL);
    const char *group = arg(argc, argv, "--group", "g4");
    const char *ind = arg(argc, argv, "--indicator", "key_tasks");
    const char *src = arg(argc, argv, "--src", "office");
    const char *rule = arg(argc, argv, "--rule", "total_low");
    int n = atoi(arg(argc, argv, "-n", "50"));
    if (!ep || !am || !file || n < 1) {
        fprintf(stderr, "run: --collector, --am and --scheme-file required\n");
        return 2;
    }
    char err[512];
    struct score_scheme *sc = NULL;
    if (score_scheme_load(file, &sc, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    size_t units[10000], nu = 0;
    for (size_t u = 0; u < score_scheme_n_units(sc) && nu < 10000; u++)
        if (!strcmp(score_scheme_group_code(sc, score_scheme_unit_group(sc, u)), group))
            units[nu++] = u;
    if (!nu || (size_t)n > nu * 12) {
        fprintf(stderr, "run: group %s has %zu units: at most %zu trials\n", group, nu, nu * 12);
        score_scheme_destroy(&sc);
        return 2;
    }
    struct client c;
    if (client_open(&c, ep))
        return 1;
    CURL *curl = curl_easy_init();
    double *ack = calloc((size_t)n, sizeof *ack), *vis = calloc((size_t)n, sizeof *vis);
    int missing = 0;
    struct kp_batch b = {0};
    struct kp_obs o;
    snprintf(b.aid, sizeof b.aid, "bench-%s", src);
    snprintf(b.scheme, sizeof b.scheme, "%s", score_scheme_id(sc));
    snprintf(b.src, sizeof b.src, "%s", src);
    b.obs = &o;
    b.n_obs = 1;
    int trials = 0;
    for (int k = 0; k < n; k++) {
        size_t u = units[(size_t)k % nu];
        int month = 1 + (k / (int)nu) % 12;
        memset(&o, 0, sizeof o);
        snprintf(o.u, sizeof o.u, "%s", score_scheme_unit_code(sc, u));
        snprintf(o.i, sizeof o.i, "%s", ind);
        snprintf(o.p, sizeof o.p, "2015-%02d", month);
        snprintf(o.ref, sizeof o.ref, "bench-%" PRIu64 "-%d", c.seq, k);
        o.val = 10; /* alone in the unit's month: total 10, under every red band */
        o.w = 1;
        o.at = kp_now_ms();
        uint64_t t0 = kp_mono_ns(), stored = 0;
        size_t n_rej = 0;
        if (send_batch(&c, &b, &stored, &n_rej, false) != 0 || stored != 1) {
            missing++;
            continue;
        }
        uint64_t t1 = kp_mono_ns();
        bool seen = false;
        while (!seen && kp_mono_ns() - t0 < 10000000000ull) {
            seen = am_has(curl, am, rule, o.u, o.p);
            if (!seen) {
                struct timespec ts = {0, 2000000};
                nanosleep(&ts, NULL);
            }
        }
        uint64_t t2 = kp_mono_ns();
        if (!seen) {
            fprintf(stderr, "trial %d: %s %s not visible in Alertmanager after 10 s\n", k, o.u,
                    o.p);
            missing++;
            continue;
        }
        ack[trials] = (double)(t1 - t0) / 1e6;
        vis[trials] = (double)(t2 - t0) / 1e6;
        trials++;
    }
    qsort(ack, (size_t)trials, sizeof *ack, cmp_d);
    qsort(vis, (size_t)trials, sizeof *vis, cmp_d);
    printf("alert latency: observation sent -> alert %s visible in Alertmanager\n", rule);
    printf("%d trials (%d missing), one observation per batch, %s/%s\n\n", trials, missing,
           score_scheme_id(sc), group);
    printf("%-28s %9s %9s %9s %9s\n", "stage (ms from send)", "p50", "p90", "p99", "max");
    printf("%-28s %9.1f %9.1f %9.1f %9.1f\n", "ack (after COMMIT)", pct(ack, (size_t)trials, .5),
           pct(ack, (size_t)trials, .9), pct(ack, (size_t)trials, .99),
           trials ? ack[trials - 1] : NAN);
    printf("%-28s %9.1f %9.1f %9.1f %9.1f\n", "visible in Alertmanager",
           pct(vis, (size_t)trials, .5), pct(vis, (size_t)trials, .9),
           pct(vis, (size_t)trials, .99), trials ? vis[trials - 1] : NAN);
    printf("\n(target: p99 <= 1000 ms; Alertmanager polled every 2 ms)\n");
    free(ack);
    free(vis);
    curl_easy_cleanup(curl);
    client_close(&c);
    score_scheme_destroy(&sc);
    return missing ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "send"))
        return cmd_send(argc - 2, argv + 2);
    if (argc >= 2 && !strcmp(argv[1], "run"))
        return cmd_run(argc - 2, argv + 2);
    if (argc >= 2 && !strcmp(argv[1], "am"))
        return cmd_am(argc - 2, argv + 2);
    fprintf(stderr, "usage: bench_alert_latency send|am|run ... (see the file's comment)\n");
    return 2;
}
