/*
 * bench_curve: what CURVE costs on the wire path (issue 6). One run measures, back to back on
 * the same machine, the same load through a collector and a broker in-process on one libuv
 * loop (collector/col.c, broker/brk.c), first over plain TCP (insecure) and then with CURVE on
 * both hops (adapter -> collector with ZAP grants, collector -> broker -> scorer): one adapter
 * DEALER keeps `window` batches of `obs` observations in flight, a scorer DEALER answers each
 * batch at once with an ack (no PostgreSQL: the scorer's transaction would hide the transport),
 * and the adapter counts acked observations per second. The modes alternate `rounds` times so
 * that a slow moment of the machine does not fall on one mode only. Prints a table; asserts
 * nothing about time (STYLE.md "Tests").
 *
 *   bench_curve [--batches N] [--obs M] [--window W] [--rounds R] [--smoke]
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "brk.h"
#include "col.h"
#include "kp_buf.h"
#include "kp_config.h"
#include "kp_keys.h"
#include "kp_log.h"
#include "kp_msg.h"
#include "kp_time.h"
#include "kp_zsock.h"

#define SID "bench-scorer"

struct keys {
    char pub[KP_KEY_Z85_LEN + 1], sec[KP_KEY_Z85_LEN + 1];
};

struct bench {
    uv_loop_t loop;
    char dir[64];
    struct keys col_k, brk_k, scr_k, adp_k;
    /* load */
    unsigned total, obs, window;
    unsigned batches; /* the target of the current phase (warm-up: 1) */
    /* one run */
    struct col_config ccfg;
    struct brk_config bcfg;
    struct col *col;
    struct brk *brk;
    struct kp_zsock *adapter, *scorer;
    uv_timer_t hb;
    struct kp_buf out, ack;
    struct kp_obs *ob;
    /* the current phase: seqs first_seq .. first_seq + batches - 1 */
    uint64_t first_seq, next_seq;
    unsigned sent, acked, retried;
    uint8_t *done; /* per seq of the phase: acked */
    uv_timer_t watchdog;
    unsigned last_acked, idle_s;
    unsigned long retries_total;
};

static char g_dir[64]; /* the key files' temp dir, removed on every exit */

static void remove_dir(void)
{
    if (g_dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "bench_curve: cannot remove %s\n", g_dir);
        g_dir[0] = 0;
    }
}

static void fail(const char *what)
{
    fprintf(stderr, "bench_curve: %s\n", what);
    remove_dir();
    exit(1);
}

static void cfg_set(const struct kp_cfg_entry *t, void *cfg, const char *key, const char *v)
{
    char err[256];
    if (kp_config_set(t, cfg, key, v, err, sizeof err) != 0)
        fail(err);
}

static void write_keys(struct bench *b, struct keys *k, const char *name)
{
    char err[512];
    if (kp_keys_keypair(k->pub, k->sec) != 0 ||
        kp_keys_write(b->dir, name, k->pub, k->sec, err, sizeof err) != 0)
        fail("cannot write keys");
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0)
        fail(path);
}

/* Sends batch seq (a new one, or again after a retry:true nack). */
static void send_seq(struct bench *b, uint64_t seq)
{
    for (unsigned k = 0; k < b->obs; k++)
        snprintf(b->ob[k].ref, sizeof b->ob[k].ref, "r%" PRIu64 "-%u", seq, k);
    struct kp_batch bt = {.aid = "bench",
                          .scheme = "s1",
                          .src = "stats",
                          .seq = seq,
                          .sent = 1700000000000,
                          .n_obs = b->obs,
                          .obs = b->ob};
    kp_buf_reset(&b->out);
    if (kp_batch_encode(&b->out, &bt) != 0)
        fail("encode");
    struct kp_frame f = {b->out.data, b->out.len};
    if (kp_zsock_send(b->adapter, &f, 1) != 0)
        fail("the adapter's queue is full (window above the HWM?)");
}

static void send_next(struct bench *b)
{
    if (b->sent < b->batches)
        send_seq(b, b->first_seq + b->sent++);
}

/* Starts a phase of n batches with `window` of them in flight. */
static void phase_start(struct bench *b, unsigned n, unsigned window)
{
    b->first_seq = b->next_seq;
    b->next_seq += n;
    b->batches = n;
    b->sent = b->acked = b->retried = 0;
    b->last_acked = 0;
    b->idle_s = 0;
    free(b->done);
    b->done = calloc(n, 1);
    if (!b->done)
        fail("out of memory");
    for (unsigned k = 0; k < window; k++)
        send_next(b);
}

/* Once a second: like an adapter's ack timeout, batches sent and not answered for a second
 * are sent again (a reply may be dropped, e.g. to a connection still being set up; the
 * collector logs reply_undeliverable). No progress for 30 s: something is broken; say what
 * instead of hanging (not a time assertion). */
static void on_watchdog(uv_timer_t *t)
{
    struct bench *b = t->data;
    if (b->acked != b->last_acked) {
        b->last_acked = b->acked;
        b->idle_s = 0;
        return;
    }
    if (++b->idle_s >= 30) {
        char why[128];
        snprintf(why, sizeof why, "stalled: %u of %u acked, %u sent, %u retried", b->acked,
                 b->batches, b->sent, b->retried);
        fail(why);
    }
    for (unsigned k = 0; k < b->sent; k++) {
        if (!b->done[k]) {
            b->retried++;
            send_seq(b, b->first_seq + k);
        }
    }
}

static void on_adapter(struct kp_zsock *s, const struct kp_frame *fr, size_t n, void *arg)
{
    (void)s;
    struct bench *b = arg;
    enum kp_msg_type t;
    if (n != 1 || kp_msg_peek(fr[0].data, fr[0].len, SIZE_MAX, &t) != KP_R_OK)
        return;
    if (t == KP_MSG_NACK) {
        /* scorer_unavailable before the scorer's reg is routed, or a stalled machine: send
         * it again at once (an adapter would back off; here the load is the point) */
        struct kp_nack nk;
        if (kp_nack_decode(fr[0].data, fr[0].len, &nk) != KP_R_OK || !nk.has_seq || !nk.retry)
            fail("a permanent nack");
        if (nk.seq >= b->first_seq && nk.seq < b->first_seq + b->batches) {
            b->retried++;
            send_seq(b, nk.seq);
        }
        return;
    }
    if (t != KP_MSG_ACK)
        return;
    struct kp_ack a;
    memset(&a, 0, sizeof a);
    if (kp_ack_decode(fr[0].data, fr[0].len, &a) != KP_R_OK)
        fail("an unreadable ack");
    uint64_t seq = a.seq;
    kp_ack_fini(&a);
    if (seq < b->first_seq || seq >= b->first_seq + b->batches || b->done[seq - b->first_seq])
        return; /* an answer to a batch sent twice, or of an earlier phase */
    b->done[seq - b->first_seq] = 1;
    b->acked++;
    send_next(b);
    if (b->acked == b->batches)
        uv_stop(&b->loop);
}

/* The scorer: every batch acked at once. ["bat", cid, rid, aid, seq, payload(, refused)] */
static void on_scorer(struct kp_zsock *s, const struct kp_frame *fr, size_t n, void *arg)
{
    (void)s;
    struct bench *b = arg;
    if (n < 6 || fr[0].len != 3 || memcmp(fr[0].data, "bat", 3) != 0)
        return;
    char seqs[24];
    size_t l = fr[4].len < sizeof seqs - 1 ? fr[4].len : sizeof seqs - 1;
    memcpy(seqs, fr[4].data, l);
    seqs[l] = 0;
    struct kp_ack a = {.seq = strtoull(seqs, NULL, 10), .stored = b->obs};
    kp_buf_reset(&b->ack);
    kp_ack_encode(&b->ack, &a);
    struct kp_frame rep[4] = {{"rep", 3}, fr[1], fr[2], {b->ack.data, b->ack.len}};
    if (kp_zsock_send(b->scorer, rep, 4) != 0)
        fail("the scorer could not answer");
}

static void on_hb(uv_timer_t *t)
{
    struct bench *b = t->data;
    struct kp_reg r = {.sid = SID, .n_schemes = 1};
    snprintf(r.schemes[0], sizeof r.schemes[0], "s1");
    struct kp_buf reg = {0};
    kp_reg_encode(&reg, false, &r);
    struct kp_frame f[2] = {{"reg", 3}, {reg.data, reg.len}};
    (void)kp_zsock_send(b->scorer, f, 2);
    kp_buf_fini(&reg);
}

static void on_stop_timer(uv_timer_t *t)
{
    uv_stop(t->loop);
}

static void run_for(struct bench *b, uint64_t ms)
{
    uv_timer_t t;
    uv_timer_init(&b->loop, &t);
    uv_timer_start(&t, on_stop_timer, ms, 0);
    uv_run(&b->loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&b->loop, UV_RUN_NOWAIT);
}

/* One measured run; returns seconds from the first send to the last ack. */
static double run_once(struct bench *b, bool curve)
{
    char err[256], p[160];
    if (kp_config_defaults(brk_config_table, &b->bcfg, err, sizeof err) != 0 ||
        kp_config_defaults(col_config_table, &b->ccfg, err, sizeof err) != 0)
        fail(err);
    cfg_set(brk_config_table, &b->bcfg, "frontend", "tcp://127.0.0.1:*");
    cfg_set(brk_config_table, &b->bcfg, "backend", "tcp://127.0.0.1:*");
    cfg_set(brk_config_table, &b->bcfg, "admin", "127.0.0.1:0");
    cfg_set(brk_config_table, &b->bcfg, "hb_ms", "1000");
    cfg_set(col_config_table, &b->ccfg, "listen", "tcp://127.0.0.1:*");
    cfg_set(col_config_table, &b->ccfg, "admin", "127.0.0.1:0");
    if (curve) {
        snprintf(p, sizeof p, "%s/broker.secret", b->dir);
        cfg_set(brk_config_table, &b->bcfg, "curve.secret_file", p);
        snprintf(p, sizeof p, "%s/internal.yaml", b->dir);
        cfg_set(brk_config_table, &b->bcfg, "curve.keys_file", p);
        snprintf(p, sizeof p, "%s/collector.secret", b->dir);
        cfg_set(col_config_table, &b->ccfg, "curve.secret_file", p);
        snprintf(p, sizeof p, "%s/broker.key", b->dir);
        cfg_set(col_config_table, &b->ccfg, "curve.server_public_file", p);
        snprintf(p, sizeof p, "%s/adapters.yaml", b->dir);
        cfg_set(col_config_table, &b->ccfg, "curve.keys_file", p);
    } else {
        cfg_set(brk_config_table, &b->bcfg, "insecure", "true");
        cfg_set(col_config_table, &b->ccfg, "insecure", "true");
    }
    if (brk_start(&b->loop, &b->bcfg, &b->brk) != 0)
        fail("broker");
    cfg_set(col_config_table, &b->ccfg, "broker", brk_frontend_endpoint(b->brk));
    char inflight[16];
    snprintf(inflight, sizeof inflight, "%u", b->window);
    cfg_set(col_config_table, &b->ccfg, "max_inflight", inflight);
    if (col_start(&b->loop, &b->ccfg, &b->col) != 0)
        fail("collector");

    struct kp_zsock_opts so = {.identity = SID, .sndhwm = 1000, .rcvhwm = 1000};
    struct kp_zsock_opts ao = {.sndhwm = 1000, .rcvhwm = 1000};
    if (curve) {
        so.curve_public = b->scr_k.pub;
        so.curve_secret = b->scr_k.sec;
        so.curve_serverkey = b->brk_k.pub;
        ao.curve_public = b->adp_k.pub;
        ao.curve_secret = b->adp_k.sec;
        ao.curve_serverkey = b->col_k.pub;
    }
    if (kp_zsock_open(&b->loop, KP_ZSOCK_DEALER, &so, &b->scorer) ||
        kp_zsock_connect(b->scorer, brk_backend_endpoint(b->brk)) ||
        kp_zsock_start(b->scorer, on_scorer, b) ||
        kp_zsock_open(&b->loop, KP_ZSOCK_DEALER, &ao, &b->adapter) ||
        kp_zsock_connect(b->adapter, col_endpoint(b->col)) ||
        kp_zsock_start(b->adapter, on_adapter, b))
        fail("sockets");
    uv_timer_init(&b->loop, &b->hb);
    b->hb.data = b;
    uv_timer_start(&b->hb, on_hb, 0, 300);
    uv_timer_init(&b->loop, &b->watchdog);
    b->watchdog.data = b;
    uv_timer_start(&b->watchdog, on_watchdog, 1000, 1000);

    /* warm-up: until one batch is acked (handshakes done, the scorer's reg routed); a batch
     * sent before that may vanish with its connection, so it is sent again until answered */
    phase_start(b, 1, 1);
    for (int tries = 0; tries < 100 && b->acked < 1; tries++) {
        run_for(b, 100);
        if (b->acked < 1)
            send_seq(b, b->first_seq);
    }
    if (b->acked != 1)
        fail("warm-up: no ack (keys? broker?)");

    uint64_t t0 = kp_mono_ns();
    phase_start(b, b->total, b->window);
    uv_run(&b->loop, UV_RUN_DEFAULT); /* until the last ack */
    double secs = (double)(kp_mono_ns() - t0) / 1e9;
    if (b->acked != b->batches)
        fail("batches lost during the measurement");
    b->retries_total += b->retried;

    uv_timer_stop(&b->hb);
    uv_close((uv_handle_t *)&b->hb, NULL);
    uv_timer_stop(&b->watchdog);
    uv_close((uv_handle_t *)&b->watchdog, NULL);
    kp_zsock_close(&b->adapter, NULL, NULL);
    kp_zsock_close(&b->scorer, NULL, NULL);
    col_stop(&b->col);
    brk_stop(&b->brk);
    while (uv_run(&b->loop, UV_RUN_NOWAIT) != 0)
        ;
    kp_config_fini(col_config_table, &b->ccfg);
    kp_config_fini(brk_config_table, &b->bcfg);
    return secs;
}

int main(int argc, char **argv)
{
    struct bench b = {.total = 2000, .obs = 200, .window = 8, .next_seq = 1};
    unsigned rounds = 2;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : "0";
        if (!strcmp(argv[i], "--smoke")) {
            b.total = 20;
            b.obs = 10;
            b.window = 4;
            rounds = 1;
        } else if (!strcmp(argv[i], "--batches")) {
            b.total = (unsigned)atoi(v);
            i++;
        } else if (!strcmp(argv[i], "--obs")) {
            b.obs = (unsigned)atoi(v);
            i++;
        } else if (!strcmp(argv[i], "--window")) {
            b.window = (unsigned)atoi(v);
            i++;
        } else if (!strcmp(argv[i], "--rounds")) {
            rounds = (unsigned)atoi(v);
            i++;
        } else {
            fprintf(stderr, "usage: bench_curve [--batches N] [--obs M] [--window W] "
                            "[--rounds R] [--smoke]\n");
            return 2;
        }
    }
    if (!b.total || !b.obs || b.obs > 10000 || !b.window || b.window > 256 || !rounds)
        fail("batches >= 1, 1 <= obs <= 10000, 1 <= window <= 256, rounds >= 1");
    kp_log_init("bench", "curve", getenv("BENCH_DEBUG") ? KP_LOG_DEBUG : KP_LOG_ERROR);
    if (uv_loop_init(&b.loop) != 0)
        fail("loop");
    snprintf(b.dir, sizeof b.dir, "/tmp/kp-bench-curve.XXXXXX");
    if (!mkdtemp(b.dir))
        fail("mkdtemp");
    snprintf(g_dir, sizeof g_dir, "%s", b.dir);
    write_keys(&b, &b.col_k, "collector");
    write_keys(&b, &b.brk_k, "broker");
    write_keys(&b, &b.scr_k, "scorer");
    write_keys(&b, &b.adp_k, "bench");
    char path[160], text[1024];
    snprintf(path, sizeof path, "%s/internal.yaml", b.dir);
    snprintf(text, sizeof text, "- aid: collector\n  key: \"%s\"\n- aid: scorer\n  key: \"%s\"\n",
             b.col_k.pub, b.scr_k.pub);
    write_file(path, text);
    snprintf(path, sizeof path, "%s/adapters.yaml", b.dir);
    snprintf(text, sizeof text,
             "- aid: bench\n  key: \"%s\"\n  grants:\n    - scheme: s1\n      src: stats\n"
             "      indicators: [\"I*\"]\n",
             b.adp_k.pub);
    write_file(path, text);

    b.ob = calloc(b.obs, sizeof *b.ob);
    for (unsigned k = 0; k < b.obs; k++) {
        struct kp_obs *o = &b.ob[k];
        snprintf(o->u, sizeof o->u, "U%u", k % 50);
        snprintf(o->i, sizeof o->i, "I%u", k % 20);
        snprintf(o->p, sizeof o->p, "2024-03");
        o->val = k * 0.5;
        o->w = 1;
        o->at = 1700000000000;
    }

    double sum[2] = {0, 0};
    size_t bytes = 0;
    {
        /* the size of one batch frame on the wire (plain payload) */
        struct kp_batch bt = {.aid = "bench",
                              .scheme = "s1",
                              .src = "stats",
                              .seq = 1,
                              .sent = 1700000000000,
                              .n_obs = b.obs,
                              .obs = b.ob};
        struct kp_buf tmp = {0};
        for (unsigned k = 0; k < b.obs; k++)
            snprintf(b.ob[k].ref, sizeof b.ob[k].ref, "r%u-%u", b.total, k);
        if (kp_batch_encode(&tmp, &bt) != 0)
            fail("encode");
        bytes = tmp.len;
        kp_buf_fini(&tmp);
    }
    printf("bench_curve: %u batches x %u observations (%zu bytes each), window %u, %u round(s) "
           "per mode, collector + broker in-process, scorer acks at once\n\n",
           b.total, b.obs, bytes, b.window, rounds);
    printf("%-6s %5s %10s %12s %12s %10s\n", "mode", "round", "seconds", "batches/s", "obs/s",
           "MB/s");
    for (unsigned r = 0; r < rounds; r++) {
        for (int m = 0; m < 2; m++) {
            double s = run_once(&b, m == 1);
            sum[m] += s;
            printf("%-6s %5u %10.3f %12.0f %12.0f %10.1f\n", m ? "curve" : "plain", r + 1, s,
                   b.total / s, (double)b.total * b.obs / s,
                   (double)b.total * (double)bytes / s / 1e6);
        }
    }
    double plain = (double)b.total * b.obs * rounds / sum[0];
    double curve = (double)b.total * b.obs * rounds / sum[1];
    printf("\n%-6s %12.0f obs/s\n%-6s %12.0f obs/s\ncurve/plain throughput: %.2f\n", "plain", plain,
           "curve", curve, curve / plain);
    if (b.retries_total)
        printf("(%lu batches were nacked retry:true and sent again)\n", b.retries_total);

    if (uv_loop_close(&b.loop) != 0)
        fail("handles left open");
    kp_zctx_term();
    kp_buf_fini(&b.out);
    kp_buf_fini(&b.ack);
    free(b.ob);
    free(b.done);
    remove_dir();
    return 0;
}
