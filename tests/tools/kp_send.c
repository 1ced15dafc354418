/*
 * kp-send: a minimal PROTOCOL.md client for integration tests (tests/integration/security_*.sh):
 * sends ONE batch to a collector, over CURVE when keys are given, waits for the answer and
 * prints it on one line. It lets a scenario send what no adapter source would: a spoofed aid,
 * an ungranted scheme, hostile text in ref and x, a key the collector does not know.
 *
 *   kp-send --collector EP [--secret FILE --server-key FILE] --aid A --scheme S --src S
 *           --seq N [--obs U,I,P,VAL,REF]... [--x KEY=VALUE]... [--timeout-ms MS]
 *
 * Every --x pair goes into the x map of every observation. A REF may hold commas after the
 * fourth one. Prints `ack seq=N stored=K dup=false rej=n:code,n:code` or `nack seq=N code=C
 * retry=false`, exit 0; `timeout` and exit 1 when no answer came (an unknown key gets no
 * connection); exit 2 on usage errors.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "kp_buf.h"
#include "kp_err.h"
#include "kp_keys.h"
#include "kp_msg.h"
#include "kp_zsock.h"

#define MAX_OBS 64
#define MAX_X   16

struct ctx {
    struct kp_buf reply;
    bool got;
    uv_timer_t timer;
    bool timed_out;
};

static void on_reply(struct kp_zsock *s, const struct kp_frame *fr, size_t n, void *arg)
{
    (void)s;
    struct ctx *c = arg;
    if (n == 1 && !c->got) {
        kp_buf_append(&c->reply, fr[0].data, fr[0].len);
        c->got = true;
        uv_stop(c->timer.loop);
    }
}

static void on_timeout(uv_timer_t *t)
{
    struct ctx *c = t->data;
    c->timed_out = true;
    uv_stop(t->loop);
}

static void mp_str(struct kp_buf *b, const char *s)
{
    size_t n = strlen(s);
    uint8_t h[3];
    if (n < 32) {
        h[0] = (uint8_t)(0xa0 | n);
        kp_buf_append(b, h, 1);
    } else if (n < 256) {
        h[0] = 0xd9;
        h[1] = (uint8_t)n;
        kp_buf_append(b, h, 2);
    } else {
        h[0] = 0xda;
        h[1] = (uint8_t)(n >> 8);
        h[2] = (uint8_t)n;
        kp_buf_append(b, h, 3);
    }
    kp_buf_append(b, s, n);
}

static int usage(const char *why)
{
    fprintf(stderr, "kp-send: %s\n", why);
    return 2;
}

int main(int argc, char **argv)
{
    const char *ep = NULL, *secret = NULL, *server = NULL, *aid = NULL, *scheme = NULL, *src = NULL;
    uint64_t seq = 0;
    long timeout_ms = 5000;
    static struct kp_obs obs[MAX_OBS];
    size_t n_obs = 0;
    const char *xk[MAX_X], *xv[MAX_X];
    size_t n_x = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return usage("every option takes a value");
        i++;
        if (!strcmp(a, "--collector"))
            ep = v;
        else if (!strcmp(a, "--secret"))
            secret = v;
        else if (!strcmp(a, "--server-key"))
            server = v;
        else if (!strcmp(a, "--aid"))
            aid = v;
        else if (!strcmp(a, "--scheme"))
            scheme = v;
        else if (!strcmp(a, "--src"))
            src = v;
        else if (!strcmp(a, "--seq"))
            seq = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--timeout-ms"))
            timeout_ms = atol(v);
        else if (!strcmp(a, "--x")) {
            const char *eq = strchr(v, '=');
            if (!eq || n_x == MAX_X)
                return usage("--x KEY=VALUE");
            xk[n_x] = strndup(v, (size_t)(eq - v));
            xv[n_x++] = eq + 1;
        } else if (!strcmp(a, "--obs")) {
            if (n_obs == MAX_OBS)
                return usage("too many --obs");
            struct kp_obs *o = &obs[n_obs++];
            char *copy = strdup(v), *f[5] = {0}, *p = copy;
            for (int k = 0; k < 4; k++) {
                f[k] = p;
                p = p ? strchr(p, ',') : NULL;
                if (p)
                    *p++ = 0;
            }
            f[4] = p;
            if (!f[4])
                return usage("--obs U,I,P,VAL,REF");
            snprintf(o->u, sizeof o->u, "%s", f[0]);
            snprintf(o->i, sizeof o->i, "%s", f[1]);
            snprintf(o->p, sizeof o->p, "%s", f[2]);
            o->val = strtod(f[3], NULL);
            snprintf(o->ref, sizeof o->ref, "%s", f[4]);
            o->w = 1;
            o->at = 1700000000000;
            free(copy);
        } else {
            return usage("unknown option");
        }
    }
    if (!ep || !aid || !scheme || !src || !seq || !n_obs)
        return usage("--collector, --aid, --scheme, --src, --seq and --obs are required");

    struct kp_buf x = {0};
    if (n_x) {
        uint8_t h = (uint8_t)(0x80 | n_x);
        kp_buf_append(&x, &h, 1);
        for (size_t k = 0; k < n_x; k++) {
            mp_str(&x, xk[k]);
            mp_str(&x, xv[k]);
        }
        for (size_t k = 0; k < n_obs; k++) {
            obs[k].x = x.data;
            obs[k].x_len = x.len;
        }
    }
    struct kp_batch b = {.seq = seq, .sent = 1700000000000, .n_obs = n_obs, .obs = obs};
    snprintf(b.aid, sizeof b.aid, "%s", aid);
    snprintf(b.scheme, sizeof b.scheme, "%s", scheme);
    snprintf(b.src, sizeof b.src, "%s", src);
    struct kp_buf frame = {0};
    if (kp_batch_encode(&frame, &b) != 0)
        return usage("the batch does not encode (codes, period, value?)");

    char pub[41], sec[41], srv[41], err[512];
    bool curve = false;
    if (kp_keys_load_client(secret, NULL, server, true, pub, sec, srv, &curve, err, sizeof err)) {
        fprintf(stderr, "kp-send: %s\n", err);
        return 2;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct ctx c = {0};
    struct kp_zsock_opts o = {.linger_ms = 0};
    if (curve) {
        o.curve_public = pub;
        o.curve_secret = sec;
        o.curve_serverkey = srv;
    }
    struct kp_zsock *z = NULL;
    if (kp_zsock_open(&loop, KP_ZSOCK_DEALER, &o, &z) || kp_zsock_connect(z, ep) ||
        kp_zsock_start(z, on_reply, &c))
        return usage("cannot open the socket");
    kp_keys_wipe(sec, sizeof sec);
    struct kp_frame f = {frame.data, frame.len};
    if (kp_zsock_send(z, &f, 1) != 0)
        return usage("cannot send");
    uv_timer_init(&loop, &c.timer);
    c.timer.data = &c;
    uv_timer_start(&c.timer, on_timeout, (uint64_t)timeout_ms, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    int rc = 0;
    enum kp_msg_type t = KP_MSG_UNKNOWN;
    if (!c.got) {
        printf("timeout\n");
        rc = 1;
    } else if (kp_msg_peek(c.reply.data, c.reply.len, SIZE_MAX, &t) == KP_R_OK && t == KP_MSG_ACK) {
        struct kp_ack a;
        memset(&a, 0, sizeof a);
        kp_ack_decode(c.reply.data, c.reply.len, &a);
        printf("ack seq=%" PRIu64 " stored=%" PRIu64 " dup=%s rej=", a.seq, a.stored,
               a.dup ? "true" : "false");
        for (size_t k = 0; k < a.n_rej; k++)
            printf("%s%" PRIu32 ":%s", k ? "," : "", a.rej[k].n, kp_reason_str(a.rej[k].code));
        printf("\n");
        kp_ack_fini(&a);
    } else if (t == KP_MSG_NACK) {
        struct kp_nack n;
        kp_nack_decode(c.reply.data, c.reply.len, &n);
        printf("nack seq=%" PRIu64 " code=%s retry=%s\n", n.seq, kp_reason_str(n.code),
               n.retry ? "true" : "false");
    } else {
        printf("unexpected reply\n");
        rc = 1;
    }
    uv_timer_stop(&c.timer);
    uv_close((uv_handle_t *)&c.timer, NULL);
    kp_zsock_close(&z, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    kp_zctx_term();
    kp_buf_fini(&frame);
    kp_buf_fini(&x);
    kp_buf_fini(&c.reply);
    for (size_t k = 0; k < n_x; k++)
        free((char *)xk[k]);
    return rc;
}
