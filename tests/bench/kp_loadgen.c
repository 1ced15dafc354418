/*
 * kp_loadgen: a synthetic adapter for the end-to-end benchmark (issue 9, tests/bench/bench_e2e.sh).
 * It speaks only the public protocol (schemas/PROTOCOL.md) through the project's codec
 * (lib/kp_msg.h): a ZMQ DEALER to the collector, over CURVE when keys are given, `hello`
 * answered by `welcome` (whose max_inflight and max_obs it respects), then batches of generated
 * observations at a target rate (0: as fast as the window allows) with up to `window` batches
 * unacknowledged. Each batch's latency is taken on the monotonic clock from its first send to
 * its ack, which the collector relays only after the scorer's PostgreSQL commit. At a rate, the
 * batch is also timed from when it was due (batch k at k × batch / rate seconds after the
 * start): a full window holds batches back, and their time from send to ack leaves that wait
 * out, so the due latency is what the data waited for in all. A nack with
 * retry:true is sent again with the same seq after a short backoff; a permanent nack drops the
 * batch and is counted. A batch left unanswered for --ack-timeout-ms is sent again (an
 * adapter's retransmit; the scorer answers dup:true if it had committed it). Once the load is
 * generated it waits at most --drain-s (default 120) for the last answers. --trace FILE writes
 * one line per acked batch: seq, first send (ms after the start), latency ms, observations,
 * sends, latency from when due ms (at rate 0 the same as from send).
 *
 * Observations are drawn with a fixed seed from units × indicators given as PREFIX:N (codes
 * PREFIX000 .. PREFIX(N-1), three digits at least) or as a comma-separated list. A share
 * --events of them are events (a new ref each, val 1 or 0, for `input: rate` indicators); the
 * rest are values (one ref per unit, indicator and period, each a higher revision, val in
 * [0, 100)). Every batch is one month of --year, as a department system sends it.
 * --order random (the default) draws every value's unit and indicator at random: each value
 * lands on its own cells, the worst case for the score rows written. --order source sends the
 * values as a statistics system exports them: unit by unit, each unit's indicators in order,
 * the month advancing once every (unit, indicator) of the last one was sent; events stay random.
 *
 *   kp_loadgen --collector EP [--secret FILE --server-key FILE] --aid A --scheme S --src S
 *              --units U:70 --values V:240 [--event-indicators E:60] [--events 0.25]
 *              [--batch 1000] [--rate OBS_PER_S] [--window W] [--obs N] [--seconds S]
 *              [--order random|source] [--year 2015] [--seed N] [--seq-start N] [--ack-timeout-ms
 * MS] [--drain-s S]
 *              [--trace FILE] [--quiet]
 *
 * Prints one JSON line: obs, acked_obs, stored, rejected, dup, batches, seconds, obs_per_s,
 * p50_ms, p90_ms, p99_ms, max_ms, due_p50_ms, due_p99_ms, due_max_ms (at rate 0 the same as
 * send to ack), nacks, nacks_permanent, retries, timeouts, t0_unix_ms (the start, on the
 * wall clock: the trace's times are after it). Exit 0 when every batch sent was
 * acked, 1 otherwise (or when no welcome came: keys? collector?), 2 on usage errors. It never
 * asserts time (STYLE.md "Tests").
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "kp_buf.h"
#include "kp_keys.h"
#include "kp_msg.h"
#include "kp_time.h"
#include "kp_zsock.h"

#define MAX_WINDOW 1024

struct codes {
    char (*c)[KP_CODE_MAX + 1];
    size_t n;
};

enum slot_state { SLOT_FREE, SLOT_INFLIGHT, SLOT_BACKOFF };

/* One batch not yet answered: its frame is kept to be sent again with the same seq. */
struct slot {
    enum slot_state state;
    uint64_t seq;
    uint32_t n_obs;
    unsigned tries;
    uint64_t due_ns, first_ns, last_ns, retry_at_ns; /* due_ns: 0 at rate 0 */
    struct kp_buf frame;
};

struct gen {
    /* options */
    const char *aid, *scheme, *src;
    struct codes units, values, events;
    double event_share, rate, seconds;
    unsigned batch, window, year;
    uint64_t obs_target, seed, seq_next, rev_next, ack_timeout_ns;
    bool quiet;
    bool source_order;   /* --order source: values unit by unit, indicators in order */
    size_t cur_u, cur_i; /* its cursor */
    unsigned cur_m;
    FILE *trace;
    /* run */
    uv_loop_t loop;
    uv_timer_t tick;
    struct kp_zsock *z;
    struct kp_buf out;
    struct kp_obs *ob;
    struct slot slots[MAX_WINDOW];
    bool welcomed, generating, stopping;
    uint64_t t_hello, t0, t_last_ack, t_stop, drain_ns;
    int64_t t0_unix_ms; /* t0 on the wall clock, to line the trace up with other logs */
    /* counters */
    uint64_t obs_sent, batches_sent, acked_batches, acked_obs, stored, rejected, dup, nacks,
        nacks_perm, retries, timeouts;
    uint64_t nack_codes[KP_R__COUNT + 1];
    double *lat, *lat_due; /* from the first send, from when due; both n_lat long */
    size_t n_lat, cap_lat;
};

static uint64_t rng_state = 88172645463325252ull;

static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 2685821657736338717ull;
}

static double rnd01(void)
{
    return (double)(rnd() >> 11) / 9007199254740992.0;
}

static void die(const char *why)
{
    fprintf(stderr, "kp_loadgen: %s\n", why);
    exit(1);
}

static int usage(const char *why)
{
    fprintf(stderr,
            "kp_loadgen: %s\nusage: kp_loadgen --collector EP [--secret FILE --server-key FILE]"
            " --aid A --scheme S --src S --units U:N --values V:N [--event-indicators E:N]"
            " [--events F] [--batch N] [--rate OBS_PER_S] [--window W] [--obs N] [--seconds S]"
            " [--order random|source] [--year Y] [--seed N] [--seq-start N] [--ack-timeout-ms MS] "
            "[--drain-s S] [--trace "
            "FILE] [--quiet]\n",
            why);
    return 2;
}

/* "PREFIX:N" or "A,B,C". Returns false when a code is invalid. */
static bool codes_parse(const char *spec, struct codes *cs)
{
    const char *colon = strrchr(spec, ':');
    char *end = NULL;
    unsigned long n = colon ? strtoul(colon + 1, &end, 10) : 0;
    if (colon && end && !*end && n > 0 && n <= 100000) {
        cs->c = calloc(n, sizeof *cs->c);
        if (!cs->c)
            die("out of memory");
        int plen = (int)(colon - spec);
        for (unsigned long k = 0; k < n; k++)
            snprintf(cs->c[k], sizeof cs->c[k], "%.*s%03lu", plen, spec, k);
        cs->n = n;
    } else {
        char *copy = strdup(spec), *save = NULL;
        if (!copy)
            die("out of memory");
        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            void *p = realloc(cs->c, (cs->n + 1) * sizeof *cs->c);
            if (!p)
                die("out of memory");
            cs->c = p;
            snprintf(cs->c[cs->n++], sizeof cs->c[0], "%s", t);
        }
        free(copy);
    }
    for (size_t k = 0; k < cs->n; k++)
        if (!kp_code_valid(cs->c[k], strlen(cs->c[k])))
            return false;
    return true;
}

/* ---- batches ----------------------------------------------------------------------------- */

static struct slot *slot_free(struct gen *g)
{
    for (unsigned k = 0; k < g->window; k++)
        if (g->slots[k].state == SLOT_FREE)
            return &g->slots[k];
    return NULL;
}

static struct slot *slot_find(struct gen *g, uint64_t seq)
{
    for (unsigned k = 0; k < g->window; k++)
        if (g->slots[k].state != SLOT_FREE && g->slots[k].seq == seq)
            return &g->slots[k];
    return NULL;
}

static unsigned inflight(const struct gen *g)
{
    unsigned n = 0;
    for (unsigned k = 0; k < g->window; k++)
        n += g->slots[k].state != SLOT_FREE;
    return n;
}

static bool send_frame(struct gen *g, struct slot *s)
{
    struct kp_frame f = {s->frame.data, s->frame.len};
    if (kp_zsock_send(g->z, &f, 1) != 0)
        return false; /* the HWM: the tick tries again */
    s->last_ns = kp_mono_ns();
    if (!s->tries++)
        s->first_ns = s->last_ns;
    s->state = SLOT_INFLIGHT;
    return true;
}

/* Generates and sends the next batch into slot s. */
static void send_new(struct gen *g, struct slot *s)
{
    uint64_t left = g->obs_target ? g->obs_target - g->obs_sent : UINT64_MAX;
    uint32_t n = (uint32_t)(left < g->batch ? left : g->batch);
    int64_t now = kp_now_ms();
    char period[KP_PERIOD_MAX + 1];
    snprintf(period, sizeof period, "%04u-%02u", g->year,
             g->source_order ? g->cur_m % 12 + 1 : (unsigned)(rnd() % 12) + 1);
    uint64_t seq = g->seq_next++;
    for (uint32_t k = 0; k < n; k++) {
        struct kp_obs *o = &g->ob[k];
        const char *u = g->units.c[rnd() % g->units.n];
        snprintf(o->u, sizeof o->u, "%s", u);
        snprintf(o->p, sizeof o->p, "%s", period);
        o->at = now;
        o->w = 1;
        if (g->events.n && rnd01() < g->event_share) {
            snprintf(o->i, sizeof o->i, "%s", g->events.c[rnd() % g->events.n]);
            o->val = rnd01() < 0.9 ? 1 : 0;
            o->rev = 0;
            snprintf(o->ref, sizeof o->ref, "%s-e%" PRIu64 "-%" PRIu32, g->aid, seq, k);
        } else {
            if (g->source_order) { /* the next (unit, indicator) of this month's export */
                snprintf(o->u, sizeof o->u, "%s", g->units.c[g->cur_u]);
                snprintf(o->i, sizeof o->i, "%s", g->values.c[g->cur_i]);
                if (++g->cur_i == g->values.n) {
                    g->cur_i = 0;
                    if (++g->cur_u == g->units.n) {
                        g->cur_u = 0;
                        g->cur_m++; /* the next batch opens the next month */
                    }
                }
            } else {
                snprintf(o->i, sizeof o->i, "%s", g->values.c[rnd() % g->values.n]);
            }
            o->val = (double)(rnd() % 1000) / 10.0;
            o->rev = g->rev_next++; /* each value a higher revision of its cell's record */
            snprintf(o->ref, sizeof o->ref, "%s-%s-%s-%s", g->aid, o->u, o->i, period);
        }
    }
    struct kp_batch b = {.seq = seq, .sent = now, .n_obs = n, .obs = g->ob};
    snprintf(b.aid, sizeof b.aid, "%s", g->aid);
    snprintf(b.scheme, sizeof b.scheme, "%s", g->scheme);
    snprintf(b.src, sizeof b.src, "%s", g->src);
    kp_buf_reset(&s->frame);
    if (kp_batch_encode(&s->frame, &b) != 0)
        die("a generated batch does not encode (codes? year?)");
    s->seq = seq;
    s->n_obs = n;
    s->due_ns =
        g->rate > 0 ? g->t0 + (uint64_t)((double)g->batches_sent * g->batch / g->rate * 1e9) : 0;
    s->tries = 0;
    s->state = SLOT_BACKOFF; /* until the send succeeds */
    s->retry_at_ns = 0;
    g->obs_sent += n;
    g->batches_sent++;
    if (!send_frame(g, s))
        s->retry_at_ns = kp_mono_ns() + 1000000;
}

static bool more_to_generate(struct gen *g, uint64_t now)
{
    if (!g->generating)
        return false;
    if ((g->obs_target && g->obs_sent >= g->obs_target) ||
        (g->seconds > 0 && (double)(now - g->t0) / 1e9 >= g->seconds)) {
        g->generating = false;
        g->t_stop = now;
        return false;
    }
    return true;
}

/* Sends what is due: resends of backed-off batches, then new batches while the rate and the
 * window allow. Stops the loop once nothing is left to generate or to wait for. */
static void pump(struct gen *g)
{
    uint64_t now = kp_mono_ns();
    for (unsigned k = 0; k < g->window; k++) {
        struct slot *s = &g->slots[k];
        if (s->state == SLOT_BACKOFF && now >= s->retry_at_ns) {
            if (!send_frame(g, s))
                s->retry_at_ns = now + 1000000;
        } else if (s->state == SLOT_INFLIGHT && now - s->last_ns > g->ack_timeout_ns) {
            g->timeouts++;
            g->retries++;
            (void)send_frame(g, s);
        }
    }
    while (more_to_generate(g, now)) {
        if (g->rate > 0) {
            double due = (double)(now - g->t0) / 1e9 * g->rate / g->batch;
            if ((double)g->batches_sent > due) /* batch k is due k intervals after t0 */
                break;
        }
        struct slot *s = slot_free(g);
        if (!s)
            break;
        send_new(g, s);
    }
    if (!g->generating && (inflight(g) == 0 || now - g->t_stop > g->drain_ns)) {
        if (inflight(g))
            fprintf(stderr, "kp_loadgen: %u batches still unanswered after the drain time\n",
                    inflight(g));
        uv_stop(&g->loop);
    }
}

static void record_latency(struct gen *g, double ms, double due_ms)
{
    if (g->n_lat == g->cap_lat) {
        g->cap_lat = g->cap_lat ? g->cap_lat * 2 : 4096;
        double *p = realloc(g->lat, g->cap_lat * sizeof *p);
        if (!p)
            die("out of memory");
        g->lat = p;
        p = realloc(g->lat_due, g->cap_lat * sizeof *p);
        if (!p)
            die("out of memory");
        g->lat_due = p;
    }
    g->lat_due[g->n_lat] = due_ms;
    g->lat[g->n_lat++] = ms;
}

static void on_ack(struct gen *g, const struct kp_frame *fr)
{
    struct kp_ack a;
    memset(&a, 0, sizeof a);
    if (kp_ack_decode(fr->data, fr->len, &a) != KP_R_OK) {
        fprintf(stderr, "kp_loadgen: an unreadable ack\n");
        return;
    }
    struct slot *s = slot_find(g, a.seq);
    if (s) { /* else an answer to a batch sent twice and answered already */
        uint64_t now = kp_mono_ns();
        uint64_t from = s->due_ns && s->due_ns < s->first_ns ? s->due_ns : s->first_ns;
        record_latency(g, (double)(now - s->first_ns) / 1e6, (double)(now - from) / 1e6);
        if (g->trace)
            fprintf(g->trace, "%" PRIu64 " %.3f %.3f %" PRIu32 " %u %.3f\n", a.seq,
                    (double)(s->first_ns - g->t0) / 1e6, (double)(now - s->first_ns) / 1e6,
                    s->n_obs, s->tries, (double)(now - from) / 1e6);
        g->t_last_ack = now;
        g->acked_batches++;
        g->acked_obs += s->n_obs;
        g->stored += a.stored;
        g->rejected += a.n_rej;
        g->dup += a.dup;
        if (a.n_rej && !g->quiet)
            fprintf(stderr, "kp_loadgen: seq %" PRIu64 ": %zu rejected, first: %s %s\n", a.seq,
                    a.n_rej, kp_reason_str(a.rej[0].code), a.rej[0].msg ? a.rej[0].msg : "");
        s->state = SLOT_FREE;
    }
    kp_ack_fini(&a);
}

static void on_nack(struct gen *g, const struct kp_frame *fr)
{
    struct kp_nack n;
    if (kp_nack_decode(fr->data, fr->len, &n) != KP_R_OK) {
        fprintf(stderr, "kp_loadgen: an unreadable nack\n");
        return;
    }
    g->nacks++;
    g->nack_codes[n.code < KP_R__COUNT ? n.code : KP_R__COUNT]++;
    struct slot *s = n.has_seq ? slot_find(g, n.seq) : NULL;
    if (!s || s->state != SLOT_INFLIGHT)
        return;
    if (n.retry) {
        /* PROTOCOL.md nack.retry: send again later with backoff, 20 ms doubling to 1 s */
        unsigned sh = s->tries < 6 ? s->tries : 6;
        s->state = SLOT_BACKOFF;
        s->retry_at_ns = kp_mono_ns() + (uint64_t)(20u << sh) * 1000000u;
        g->retries++;
    } else {
        g->nacks_perm++;
        if (!g->quiet)
            fprintf(stderr, "kp_loadgen: seq %" PRIu64 " nacked %s: %s\n", n.seq,
                    kp_reason_str(n.code), n.msg);
        s->state = SLOT_FREE;
    }
}

static void on_msg(struct kp_zsock *z, const struct kp_frame *fr, size_t n, void *arg)
{
    (void)z;
    struct gen *g = arg;
    enum kp_msg_type t = KP_MSG_UNKNOWN;
    if (n != 1 || kp_msg_peek(fr[0].data, fr[0].len, SIZE_MAX, &t) != KP_R_OK)
        return;
    if (t == KP_MSG_WELCOME && !g->welcomed) {
        struct kp_welcome w;
        if (kp_welcome_decode(fr[0].data, fr[0].len, &w) != KP_R_OK)
            die("an unreadable welcome");
        if (!g->window || g->window > w.max_inflight)
            g->window = w.max_inflight; /* PROTOCOL.md welcome: limits the client respects */
        if (g->window > MAX_WINDOW)
            g->window = MAX_WINDOW;
        if (g->batch > w.max_obs)
            die("--batch is above the collector's max_obs");
        g->welcomed = true;
        g->generating = true;
        g->t0 = kp_mono_ns();
        g->t0_unix_ms = kp_now_ms();
        pump(g);
    } else if (t == KP_MSG_ACK) {
        on_ack(g, &fr[0]);
        pump(g); /* rate 0: keep the window full */
    } else if (t == KP_MSG_NACK) {
        on_nack(g, &fr[0]);
        pump(g);
    } else if (t == KP_MSG_PING) {
        bool pong = false;
        uint64_t num = 0;
        if (kp_ping_decode(fr[0].data, fr[0].len, &pong, &num) == KP_R_OK && !pong) {
            kp_buf_reset(&g->out);
            if (kp_ping_encode(&g->out, true, num) == 0) {
                struct kp_frame f = {g->out.data, g->out.len};
                (void)kp_zsock_send(g->z, &f, 1);
            }
        }
    }
}

static void send_hello(struct gen *g)
{
    struct kp_hello h;
    memset(&h, 0, sizeof h);
    snprintf(h.aid, sizeof h.aid, "%s", g->aid);
    snprintf(h.scheme, sizeof h.scheme, "%s", g->scheme);
    snprintf(h.sw, sizeof h.sw, "kp_loadgen");
    kp_buf_reset(&g->out);
    if (kp_hello_encode(&g->out, &h) != 0)
        die("hello does not encode");
    struct kp_frame f = {g->out.data, g->out.len};
    (void)kp_zsock_send(g->z, &f, 1);
}

static void on_tick(uv_timer_t *t)
{
    struct gen *g = t->data;
    uint64_t now = kp_mono_ns();
    if (!g->welcomed) {
        /* the hello may be lost with a connection being set up: ask again every second */
        if (now - g->t_hello > 10ull * 1000000000ull)
            die("no welcome from the collector within 10 s (endpoint? keys? grants?)");
        static uint64_t last;
        if (now - last > 1000000000ull) {
            last = now;
            send_hello(g);
        }
        return;
    }
    pump(g);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(const double *v, size_t n, double p)
{
    if (!n)
        return 0;
    size_t k = (size_t)(p * (double)(n - 1) + 0.5);
    return v[k < n ? k : n - 1];
}

int main(int argc, char **argv)
{
    struct gen *g = calloc(1, sizeof *g);
    if (!g)
        die("out of memory");
    const char *ep = NULL, *secret = NULL, *server = NULL;
    const char *units = NULL, *values = NULL, *events = NULL;
    g->batch = 1000;
    g->event_share = 0.25;
    g->year = 2015;
    g->seed = 1;
    g->ack_timeout_ns = 30ull * 1000000000ull;
    g->drain_ns = 120ull * 1000000000ull;
    g->seq_next = (uint64_t)kp_now_ms() * 1000u; /* PROTOCOL.md batch.seq: increasing across runs */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--quiet")) {
            g->quiet = true;
            continue;
        }
        const char *v = i + 1 < argc ? argv[++i] : NULL;
        if (!v)
            return usage("every option but --quiet takes a value");
        if (!strcmp(a, "--collector"))
            ep = v;
        else if (!strcmp(a, "--secret"))
            secret = v;
        else if (!strcmp(a, "--server-key"))
            server = v;
        else if (!strcmp(a, "--aid"))
            g->aid = v;
        else if (!strcmp(a, "--scheme"))
            g->scheme = v;
        else if (!strcmp(a, "--src"))
            g->src = v;
        else if (!strcmp(a, "--units"))
            units = v;
        else if (!strcmp(a, "--values"))
            values = v;
        else if (!strcmp(a, "--event-indicators"))
            events = v;
        else if (!strcmp(a, "--events"))
            g->event_share = atof(v);
        else if (!strcmp(a, "--batch"))
            g->batch = (unsigned)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--rate"))
            g->rate = atof(v);
        else if (!strcmp(a, "--window"))
            g->window = (unsigned)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--obs"))
            g->obs_target = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--seconds"))
            g->seconds = atof(v);
        else if (!strcmp(a, "--year"))
            g->year = (unsigned)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--order")) {
            if (strcmp(v, "random") && strcmp(v, "source"))
                return usage("--order is random or source");
            g->source_order = !strcmp(v, "source");
        } else if (!strcmp(a, "--seed"))
            g->seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--seq-start"))
            g->seq_next = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--ack-timeout-ms"))
            g->ack_timeout_ns = strtoull(v, NULL, 10) * 1000000ull;
        else if (!strcmp(a, "--trace")) {
            g->trace = fopen(v, "w");
            if (!g->trace)
                return usage("cannot write the --trace file");
        } else if (!strcmp(a, "--drain-s"))
            g->drain_ns = strtoull(v, NULL, 10) * 1000000000ull;
        else
            return usage("unknown option");
    }
    if (!ep || !g->aid || !g->scheme || !g->src || !units || !values)
        return usage("--collector, --aid, --scheme, --src, --units and --values are required");
    if (!g->obs_target && g->seconds <= 0)
        return usage("--obs or --seconds is required");
    if (!g->batch || g->batch > 1000000 || g->window > MAX_WINDOW || g->rate < 0 ||
        g->event_share < 0 || g->event_share > 1 || g->year < 1000 || g->year > 9999 ||
        !g->seq_next || !g->ack_timeout_ns)
        return usage("bad --batch, --window, --rate, --events, --year, --seq-start or timeout");
    if (!codes_parse(units, &g->units) || !codes_parse(values, &g->values) ||
        (events && !codes_parse(events, &g->events)) || !g->units.n || !g->values.n)
        return usage("bad --units, --values or --event-indicators (PREFIX:N or A,B,C)");
    rng_state ^= g->seed * 0x9E3779B97F4A7C15ull;
    g->rev_next = (uint64_t)kp_now_ms() * 1000u; /* above any earlier run's revisions */
    g->ob = calloc(g->batch, sizeof *g->ob);
    if (!g->ob)
        die("out of memory");

    char pub[KP_KEY_Z85_LEN + 1], sec[KP_KEY_Z85_LEN + 1], srv[KP_KEY_Z85_LEN + 1], err[512];
    bool curve = false;
    if (kp_keys_load_client(secret, NULL, server, true, pub, sec, srv, &curve, err, sizeof err)) {
        fprintf(stderr, "kp_loadgen: %s\n", err);
        return 2;
    }
    if (uv_loop_init(&g->loop) != 0)
        die("loop");
    struct kp_zsock_opts o = {.linger_ms = 0, .sndhwm = 10000, .rcvhwm = 10000};
    if (curve) {
        o.curve_public = pub;
        o.curve_secret = sec;
        o.curve_serverkey = srv;
    }
    if (kp_zsock_open(&g->loop, KP_ZSOCK_DEALER, &o, &g->z) || kp_zsock_connect(g->z, ep) ||
        kp_zsock_start(g->z, on_msg, g))
        die("cannot open the socket");
    kp_keys_wipe(sec, sizeof sec);
    uv_timer_init(&g->loop, &g->tick);
    g->tick.data = g;
    g->t_hello = kp_mono_ns();
    uv_timer_start(&g->tick, on_tick, 0, 1);
    uv_run(&g->loop, UV_RUN_DEFAULT);

    double secs = g->t_last_ack > g->t0 ? (double)(g->t_last_ack - g->t0) / 1e9 : 0;
    qsort(g->lat, g->n_lat, sizeof *g->lat, cmp_double);
    qsort(g->lat_due, g->n_lat, sizeof *g->lat_due, cmp_double);
    printf("{\"aid\":\"%s\",\"batch\":%u,\"window\":%u,\"rate\":%.0f,\"obs\":%" PRIu64
           ",\"acked_obs\":%" PRIu64 ",\"stored\":%" PRIu64 ",\"rejected\":%" PRIu64
           ",\"dup\":%" PRIu64 ",\"batches\":%" PRIu64 ",\"acked_batches\":%" PRIu64
           ",\"seconds\":%.3f,\"obs_per_s\":%.0f,\"p50_ms\":%.2f,\"p90_ms\":%.2f,"
           "\"p99_ms\":%.2f,\"max_ms\":%.2f,\"due_p50_ms\":%.2f,\"due_p99_ms\":%.2f,"
           "\"due_max_ms\":%.2f,\"nacks\":%" PRIu64 ",\"nacks_permanent\":%" PRIu64
           ",\"retries\":%" PRIu64 ",\"timeouts\":%" PRIu64 ",\"t0_unix_ms\":%" PRId64 "}\n",
           g->aid, g->batch, g->window, g->rate, g->obs_sent, g->acked_obs, g->stored, g->rejected,
           g->dup, g->batches_sent, g->acked_batches, secs,
           secs > 0 ? (double)g->acked_obs / secs : 0, pct(g->lat, g->n_lat, 0.50),
           pct(g->lat, g->n_lat, 0.90), pct(g->lat, g->n_lat, 0.99),
           g->n_lat ? g->lat[g->n_lat - 1] : 0, pct(g->lat_due, g->n_lat, 0.50),
           pct(g->lat_due, g->n_lat, 0.99), g->n_lat ? g->lat_due[g->n_lat - 1] : 0, g->nacks,
           g->nacks_perm, g->retries, g->timeouts, g->t0_unix_ms);
    for (int r = 0; r < KP_R__COUNT; r++) /* which nacks, on stderr: why the tail */
        if (g->nack_codes[r])
            fprintf(stderr, "kp_loadgen: %" PRIu64 " nacks %s\n", g->nack_codes[r],
                    kp_reason_str((enum kp_reason)r));
    fflush(stdout);
    if (g->trace && fclose(g->trace) != 0)
        fprintf(stderr, "kp_loadgen: cannot write the --trace file\n");
    int rc = g->acked_batches == g->batches_sent && g->acked_obs == g->obs_sent ? 0 : 1;

    uv_timer_stop(&g->tick);
    uv_close((uv_handle_t *)&g->tick, NULL);
    kp_zsock_close(&g->z, NULL, NULL);
    uv_run(&g->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&g->loop) != 0)
        fprintf(stderr, "kp_loadgen: handles left open\n");
    kp_zctx_term();
    for (unsigned k = 0; k < MAX_WINDOW; k++)
        kp_buf_fini(&g->slots[k].frame);
    kp_buf_fini(&g->out);
    free(g->ob);
    free(g->lat);
    free(g->lat_due);
    free(g->units.c);
    free(g->values.c);
    free(g->events.c);
    free(g);
    return rc;
}
