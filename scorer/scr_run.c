/*
 * scr_run: the scorer's imperative shell on the libuv loop: the DEALER to the broker (batches
 * in, replies out, registration every hb_ms), the connection to PostgreSQL with retry and
 * backoff (start-up, and after any loss: the pipeline resumes by itself, ARCHITECTURE.md
 * guarantee 1), migrations, scheme rows and engine replay once connected, the admin endpoint
 * with its metrics and /readyz, and an orderly stop on SIGTERM/SIGINT. The batch path itself
 * is scr_batch.c.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kp_admin.h"
#include "kp_daemon.h"
#include "kp_err.h"
#include "kp_log.h"
#include "kp_metrics.h"
#include "kp_msg.h"
#include "kp_pg.h"
#include "kp_time.h"
#include "kp_zsock.h"
#include "score_engine.h"
#include "scr_internal.h"

#define BACKOFF_MIN_MS 100

/* ---- readiness ------------------------------------------------------------------------ */

void scr__set_ready(struct scr *s, bool ready)
{
    if (s->db_ready != ready) {
        if (ready)
            KP_INFO("db_ready", "schemes=%zu", s->n_schemes);
        else
            KP_WARN("db_down", "msg=\"batches are nacked for retry until PostgreSQL is back\"");
    }
    s->db_ready = ready;
    atomic_store(&s->ready_flag, ready);
    if (s->m_db_up)
        kp_gauge_set(s->m_db_up, ready ? 1 : 0);
}

/* Admin thread: reads the atomic only. */
static bool admin_ready(void *arg, char *why, size_t why_len)
{
    struct scr *s = arg;
    if (atomic_load(&s->ready_flag))
        return true;
    snprintf(why, why_len, "database not connected");
    return false;
}

bool scr_ready(const struct scr *s)
{
    return s && s->db_ready;
}

const char *scr_sid(const struct scr *s)
{
    return s->sid;
}

int scr_admin_port(const struct scr *s)
{
    return s->admin ? kp_admin_port(s->admin) : -1;
}

const struct score_engine *scr_engine(const struct scr *s, const char *scheme)
{
    for (size_t i = 0; i < s->n_schemes; i++)
        if (!strcmp(s->schemes[i].id, scheme))
            return s->schemes[i].engine;
    return NULL;
}

void scr_get_stats(const struct scr *s, struct scr_stats *out)
{
    *out = s->stats;
}

/* ---- registration --------------------------------------------------------------------- */

static void send_reg(struct scr *s)
{
    if (!s->dealer || !s->db_ready)
        return; /* not registered while we could not store: the broker nacks for us */
    struct kp_reg reg = {.n_schemes = s->n_schemes};
    snprintf(reg.sid, sizeof reg.sid, "%s", s->sid);
    for (size_t i = 0; i < s->n_schemes; i++)
        snprintf(reg.schemes[i], sizeof reg.schemes[i], "%s", s->schemes[i].id);
    kp_buf_reset(&s->reg);
    if (kp_reg_encode(&s->reg, false, &reg) != 0) {
        KP_ERROR("reg_encode_failed", "sid=%s", s->sid);
        return;
    }
    struct kp_frame f[2] = {{"reg", 3}, {s->reg.data, s->reg.len}};
    int rc = kp_zsock_send(s->dealer, f, 2);
    if (rc)
        KP_DEBUG("reg_not_sent", "err=%s", kp_err_name(rc));
}

static void on_hb_timer(uv_timer_t *t)
{
    send_reg(t->data);
}

/* ---- database connection -------------------------------------------------------------- */

/* After connecting: migrations and scheme rows once, engines whenever they may disagree with
 * the database. Returns 0, or KP_E* with err; *fatal when retrying cannot help. */
static int db_prepare(struct scr *s, char *err, size_t errlen, bool *fatal)
{
    int rc;
    *fatal = false;
    if (!s->initialised) {
        if (s->cfg->migrations && s->cfg->migrations[0]) {
            rc = kp_pg_migrate(s->pg, s->cfg->migrations, err, errlen);
            if (rc) {
                *fatal = rc == KP_EIO || !kp_pg_conn_lost(s->pg);
                return rc;
            }
        }
        for (size_t i = 0; i < s->n_schemes; i++) {
            rc = scr__db_sync_scheme(s, s->schemes[i].scheme, err, errlen);
            if (rc) {
                *fatal = !kp_pg_conn_lost(s->pg);
                return rc;
            }
        }
        s->initialised = true;
    }
    if (s->need_replay) {
        for (size_t i = 0; i < s->n_schemes; i++) {
            rc = scr__db_replay(s, &s->schemes[i], err, errlen);
            if (rc)
                return rc;
        }
        s->need_replay = false;
    }
    return 0;
}

/* One attempt: connect (or reset), prepare, become ready. Returns 0, or KP_E* and *fatal. */
static int db_attempt(struct scr *s, bool *fatal)
{
    char err[1024] = "", q[1100];
    *fatal = false;
    int rc;
    if (!s->pg) {
        rc = kp_pg_open(s->dsn, &s->pg);
        if (rc == KP_ENOMEM || !s->pg)
            return KP_ENOMEM;
    } else if (!kp_pg_ok(s->pg)) {
        rc = kp_pg_reset(s->pg);
        s->stats.reconnects++;
    } else {
        rc = 0;
    }
    if (rc) {
        KP_WARN("db_connect_failed", "retry_ms=%" PRIu64 " msg=%s", s->backoff_ms,
                kp_log_q(q, sizeof q, kp_pg_errmsg(s->pg)));
        return rc;
    }
    rc = db_prepare(s, err, sizeof err, fatal);
    if (rc) {
        s->stats.pg_errors++;
        kp_counter_inc(s->m_pg_errors);
        if (*fatal)
            KP_ERROR("db_prepare_failed", "msg=%s", kp_log_q(q, sizeof q, err));
        else
            KP_WARN("db_prepare_failed", "retry_ms=%" PRIu64 " msg=%s", s->backoff_ms,
                    kp_log_q(q, sizeof q, err));
        return rc;
    }
    s->backoff_ms = BACKOFF_MIN_MS;
    scr__set_ready(s, true);
    send_reg(s);
    return 0;
}

static void on_db_timer(uv_timer_t *t)
{
    struct scr *s = t->data;
    bool fatal;
    /* The delay before the next attempt, should this one fail (logged by db_attempt). */
    uint64_t max = (uint64_t)s->cfg->db_retry_max_ms;
    s->backoff_ms = s->backoff_ms * 2 > max ? max : s->backoff_ms * 2;
    if (db_attempt(s, &fatal) == 0)
        return;
    /* Even a "fatal" failure (a broken migration) is retried, slowly: after start-up the
     * daemon does not exit (STYLE.md "Errors"); the operator sees the error lines. */
    if (fatal)
        s->backoff_ms = max;
    scr__db_schedule(s);
}

void scr__db_schedule(struct scr *s)
{
    if (!s->timers_init || s->closing)
        return;
    if (uv_is_active((uv_handle_t *)&s->db_timer))
        return;
    uv_timer_start(&s->db_timer, on_db_timer, s->backoff_ms, 0);
}

/* ---- the DEALER ----------------------------------------------------------------------- */

/* INTERNAL.md broker → scorer: ["bat", cid, rid, aid, seq, payload]. */
static void on_dealer(struct kp_zsock *z, const struct kp_frame *fr, size_t n, void *arg)
{
    (void)z;
    struct scr *s = arg;
    if (s->closing)
        return;
    if (n != 6 || fr[0].len != 3 || memcmp(fr[0].data, "bat", 3) != 0) {
        KP_WARN("bad_broker_frame", "frames=%zu", n);
        return;
    }
    (void)scr_process(s, fr[3].data, fr[3].len, fr[5].data, fr[5].len, &s->out);
    struct kp_frame rep[4] = {{"rep", 3}, fr[1], fr[2], {s->out.data, s->out.len}};
    int rc = kp_zsock_send(s->dealer, rep, 4);
    if (rc) /* the adapter retransmits and gets dup:true (ARCHITECTURE.md guarantee 2) */
        KP_WARN("reply_not_sent", "err=%s seq=%.*s", kp_err_name(rc), (int)fr[4].len,
                (const char *)fr[4].data);
}

/* ---- start / stop --------------------------------------------------------------------- */

static void make_metrics(struct scr *s)
{
    static const double commit_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                           0.1,   0.25,   0.5,   1,    2.5,   5};
    static const double size_bounds[] = {1, 10, 50, 100, 500, 1000, 5000, 10000};
    static const char batches_help[] = "Batches handled by the scorer, by outcome";
    static const char rej_help[] = "Observations refused in committed batches, by reason code";
    struct kp_metrics *m = s->metrics = kp_metrics_new();
    s->m_committed = kp_metrics_counter(m, "kaoping_scorer_batches_total", batches_help,
                                        "outcome=\"committed\"");
    s->m_dup =
        kp_metrics_counter(m, "kaoping_scorer_batches_total", batches_help, "outcome=\"dup\"");
    s->m_nacked =
        kp_metrics_counter(m, "kaoping_scorer_batches_total", batches_help, "outcome=\"nacked\"");
    s->m_stored = kp_metrics_counter(m, "kaoping_scorer_observations_stored_total",
                                     "Observations stored by committed batches", NULL);
    for (int r = 1; r < KP_R__COUNT; r++) {
        char labels[96];
        snprintf(labels, sizeof labels, "code=\"%s\"", kp_reason_str((enum kp_reason)r));
        s->m_rej[r] = kp_metrics_counter(m, "kaoping_scorer_rejections_total", rej_help, labels);
    }
    s->m_commit_s = kp_metrics_histogram(
        m, "kaoping_scorer_commit_seconds", "Duration of a batch's transaction, BEGIN to COMMIT",
        NULL, commit_bounds, sizeof commit_bounds / sizeof commit_bounds[0]);
    s->m_batch_size =
        kp_metrics_histogram(m, "kaoping_scorer_batch_size", "Observations per decoded batch", NULL,
                             size_bounds, sizeof size_bounds / sizeof size_bounds[0]);
    s->m_pg_errors =
        kp_metrics_counter(m, "kaoping_scorer_pg_errors_total",
                           "Failed PostgreSQL statements and connection attempts", NULL);
    s->m_db_up = kp_metrics_gauge(m, "kaoping_scorer_db_up",
                                  "1 when the scorer is connected to PostgreSQL and ready", NULL);
}

static int load_schemes(struct scr *s)
{
    size_t n = 0;
    while (s->cfg->schemes && s->cfg->schemes[n])
        n++;
    if (n == 0 || n > KP_REG_MAX_SCHEMES) {
        KP_ERROR("config_invalid", "msg=\"schemes: 1 to %d scheme files are required\"",
                 KP_REG_MAX_SCHEMES);
        return KP_ECONFIG;
    }
    s->schemes = kp_xcalloc(n, sizeof *s->schemes);
    for (size_t i = 0; i < n; i++) {
        char err[1024], q[1100];
        struct scr_scheme *sch = &s->schemes[i];
        if (score_scheme_load(s->cfg->schemes[i], &sch->scheme, err, sizeof err) != 0) {
            KP_ERROR("scheme_invalid", "msg=%s", kp_log_q(q, sizeof q, err));
            return KP_ESCHEME;
        }
        s->n_schemes++;
        sch->id = score_scheme_id(sch->scheme);
        for (size_t j = 0; j < i; j++) {
            if (!strcmp(s->schemes[j].id, sch->id)) {
                KP_ERROR("scheme_invalid", "scheme=%s msg=\"served twice\"", sch->id);
                return KP_ECONFIG;
            }
        }
        KP_INFO("scheme_loaded", "scheme=%s file=%s units=%zu indicators=%zu", sch->id,
                s->cfg->schemes[i], score_scheme_n_units(sch->scheme),
                score_scheme_n_nodes(sch->scheme));
    }
    return 0;
}

static void free_scr(struct scr *s)
{
    kp_pg_close(&s->pg);
    for (size_t i = 0; i < s->n_schemes; i++) {
        score_engine_destroy(&s->schemes[i].engine);
        score_scheme_destroy(&s->schemes[i].scheme);
    }
    free(s->schemes);
    kp_metrics_destroy(&s->metrics);
    for (int k = 0; k < SCR_A__COUNT; k++)
        kp_buf_fini(&s->a[k]);
    kp_buf_fini(&s->json);
    kp_buf_fini(&s->out);
    kp_buf_fini(&s->reg);
    free(s->dsn);
    free(s);
}

static void on_part_closed(void *arg)
{
    struct scr *s = arg;
    if (--s->closing == 0)
        free_scr(s);
}

static void on_timer_closed(uv_handle_t *h)
{
    on_part_closed(h->data);
}

int scr_start(uv_loop_t *loop, const struct scr_config *cfg, struct scr **out)
{
    *out = NULL;
    char err[1024], q[1100];
    struct scr *s = kp_xcalloc(1, sizeof *s);
    s->loop = loop;
    s->cfg = cfg;
    s->backoff_ms = BACKOFF_MIN_MS;
    s->need_replay = true;
    atomic_init(&s->ready_flag, false);
    /* A fresh id per start: a restarted scorer never collides with its predecessor's
     * routing id while the broker still holds the old connection. */
    unsigned salt = (unsigned)(kp_mono_ns() ^ (uint64_t)kp_now_ms()) & 0xffffu;
    snprintf(s->sid, sizeof s->sid, "%s-%ld-%04x", cfg->instance ? cfg->instance : "scorer",
             (long)getpid(), salt);
    int rc;
    if (!kp_code_valid(s->sid, strlen(s->sid))) {
        KP_ERROR("config_invalid", "msg=\"instance: not a code ([A-Za-z0-9._:-], 1-52)\"");
        rc = KP_ECONFIG;
        goto fail_early;
    }
    if (!(s->dsn = scr_config_dsn(cfg, err, sizeof err))) {
        KP_ERROR("config_invalid", "msg=%s", kp_log_q(q, sizeof q, err));
        rc = KP_ECONFIG;
        goto fail_early;
    }
    if ((rc = load_schemes(s)) != 0)
        goto fail_early;
    make_metrics(s);

    uv_timer_init(loop, &s->db_timer);
    uv_timer_init(loop, &s->hb_timer);
    s->db_timer.data = s->hb_timer.data = s;
    s->timers_init = true;

    /* First attempt now, so that a reachable database makes the scorer ready on return. */
    bool fatal = false;
    rc = db_attempt(s, &fatal);
    if (rc && fatal) {
        rc = KP_EDB;
        goto fail;
    }
    if (rc)
        scr__db_schedule(s);

    struct kp_zsock_opts o = {
        .max_msg_bytes = cfg->max_bytes + 65536,
        .identity = s->sid,
        .linger_ms = 0,
    };
    if ((rc = kp_zsock_open(loop, KP_ZSOCK_DEALER, &o, &s->dealer)) != 0 ||
        (rc = kp_zsock_connect(s->dealer, cfg->broker)) != 0 ||
        (rc = kp_zsock_start(s->dealer, on_dealer, s)) != 0) {
        KP_ERROR("broker_connect_failed", "endpoint=%s err=%s", cfg->broker, kp_err_name(rc));
        goto fail;
    }
    if ((rc = kp_admin_open(cfg->admin, s->metrics, admin_ready, s, &s->admin)) != 0) {
        KP_ERROR("admin_failed", "listen=%s err=%s", cfg->admin, kp_err_name(rc));
        goto fail;
    }
    send_reg(s);
    uv_timer_start(&s->hb_timer, on_hb_timer, (uint64_t)cfg->hb_ms, (uint64_t)cfg->hb_ms);
    KP_INFO("started", "sid=%s broker=%s admin_port=%d schemes=%zu ready=%s", s->sid, cfg->broker,
            kp_admin_port(s->admin), s->n_schemes, s->db_ready ? "true" : "false");
    *out = s;
    return 0;
fail:
    scr_stop(&s);
    return rc;
fail_early:
    free_scr(s);
    return rc;
}

void scr_stop(struct scr **sp)
{
    if (!sp || !*sp)
        return;
    struct scr *s = *sp;
    *sp = NULL;
    /* Processing is synchronous on this loop: no batch is half done here. */
    if (s->dealer)
        kp_zsock_pause(s->dealer);
    kp_admin_close(&s->admin);
    s->closing = 1;
    s->db_ready = false;
    kp_pg_close(&s->pg);
    if (s->timers_init) {
        uv_timer_stop(&s->db_timer);
        uv_timer_stop(&s->hb_timer);
        s->closing += 2;
        uv_close((uv_handle_t *)&s->db_timer, on_timer_closed);
        uv_close((uv_handle_t *)&s->hb_timer, on_timer_closed);
    }
    if (s->dealer) {
        s->closing++;
        kp_zsock_close(&s->dealer, on_part_closed, s);
    }
    on_part_closed(s);
}

/* ---- the daemon's life ---------------------------------------------------------------- */

struct scr_run_ctx {
    struct scr *scr;
    struct kp_signals *sig;
};

static void on_stop_signal(void *arg)
{
    struct scr_run_ctx *r = arg;
    KP_INFO("stopping", "msg=\"signal received\"");
    scr_stop(&r->scr);
    kp_signals_close(&r->sig);
}

int scr_run(const struct scr_config *cfg, uv_loop_t *loop)
{
    struct scr_run_ctx r = {0};
    if (scr_start(loop, cfg, &r.scr) != 0)
        return 1;
    if (kp_signals_open(loop, on_stop_signal, NULL, &r, &r.sig) != 0) {
        KP_ERROR("signals_failed", "msg=\"cannot install signal handlers\"");
        scr_stop(&r.scr);
        uv_run(loop, UV_RUN_DEFAULT);
        return 1;
    }
    uv_run(loop, UV_RUN_DEFAULT);
    KP_INFO("stopped", "msg=\"scorer stopped\"");
    return 0;
}
