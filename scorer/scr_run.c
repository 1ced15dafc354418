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
#include "kp_keys.h"
#include "kp_log.h"
#include "kp_metrics.h"
#include "kp_msg.h"
#include "kp_pg.h"
#include "kp_time.h"
#include "kp_zsock.h"
#include "score_engine.h"
#include "scr_alert.h"
#include "scr_internal.h"

#define BACKOFF_MIN_MS 100
#define SCR_RCVHWM     16
#define SCR_SNDHWM     64

/* ---- readiness ------------------------------------------------------------------------ */

static bool all_active(const struct scr *s)
{
    for (size_t i = 0; i < s->n_schemes; i++)
        if (!s->schemes[i].active)
            return false;
    return true;
}

/* ready: connected to PostgreSQL. Losing the connection loses the session and with it every
 * scheme lock (scr_lock.c). */
void scr__set_ready(struct scr *s, bool ready)
{
    if (s->db_ready != ready) {
        if (ready)
            KP_INFO("db_ready", "schemes=%zu", s->n_schemes);
        else
            KP_WARN("db_down", "msg=\"batches are nacked for retry until PostgreSQL is back\"");
    }
    s->db_ready = ready;
    if (!ready)
        scr__lock_lost(s);
    atomic_store(&s->ready_flag, ready && all_active(s));
    if (s->m_db_up)
        kp_gauge_set(s->m_db_up, ready ? 1 : 0);
}

/* Admin thread: reads the atomic only. */
static bool admin_ready(void *arg, char *why, size_t why_len)
{
    struct scr *s = arg;
    if (atomic_load(&s->ready_flag))
        return true;
    snprintf(why, why_len, "database not connected, or standby: another scorer holds a scheme");
    return false;
}

bool scr_ready(const struct scr *s)
{
    return s && s->db_ready && all_active(s);
}

bool scr_active(const struct scr *s, const char *scheme)
{
    for (size_t i = 0; s && i < s->n_schemes; i++)
        if (!strcmp(s->schemes[i].id, scheme))
            return s->db_ready && s->schemes[i].active;
    return false;
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

/* Only the active schemes are listed: a scheme is not registered while we could not store it
 * (no database, or another scorer holds its lock), and the broker nacks for us. An empty list
 * makes the broker drop this scorer's routes at once. */
void scr__send_reg(struct scr *s)
{
    if (!s->dealer)
        return;
    struct kp_reg reg = {.n_schemes = 0};
    snprintf(reg.sid, sizeof reg.sid, "%s", s->sid);
    for (size_t i = 0; i < s->n_schemes; i++)
        if (s->db_ready && s->schemes[i].active)
            snprintf(reg.schemes[reg.n_schemes++], sizeof reg.schemes[0], "%s", s->schemes[i].id);
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

/* ---- alerts by state (operations) ----------------------------------------------------- */

#define SCR_ALERT_STATES 3
#define SCR_ALERT_TICKS  10
static const char *const alert_states[SCR_ALERT_STATES] = {"pending", "firing", "resolved"};

/* Sets kaoping_scorer_alerts{scheme,state} from the alert table (the database is the truth:
 * an active scorer and its standby report the same numbers; rules take max by scheme). Loop
 * thread, between batches; one short statement. */
static void refresh_alerts(struct scr *s)
{
    if (!s->m_alerts || !s->db_ready || !s->pg)
        return;
    struct kp_pg_res *res = NULL;
    if (kp_pg_exec(s->pg,
                   "SELECT scheme, count(*) FILTER (WHERE state = 'pending'), "
                   "       count(*) FILTER (WHERE state = 'firing'), "
                   "       count(*) FILTER (WHERE state = 'resolved') "
                   "  FROM alert GROUP BY scheme",
                   0, NULL, &res) != 0) {
        scr__db_failed(s, "alert_counts", NULL);
        return;
    }
    for (size_t i = 0; i < s->n_schemes; i++) {
        double v[SCR_ALERT_STATES] = {0};
        for (int r = 0; r < kp_pg_res_ntuples(res); r++)
            if (!strcmp(kp_pg_res_value(res, r, 0), s->schemes[i].id))
                for (int k = 0; k < SCR_ALERT_STATES; k++)
                    v[k] = atof(kp_pg_res_value(res, r, k + 1));
        for (int k = 0; k < SCR_ALERT_STATES; k++)
            kp_gauge_set(s->m_alerts[i * SCR_ALERT_STATES + (size_t)k], v[k]);
    }
    kp_pg_res_free(&res);
}

static void on_broker_peers(struct kp_zsock *z, int peers, void *arg)
{
    (void)z;
    struct scr *s = arg;
    kp_gauge_set(s->m_broker_up, peers > 0 ? 1 : 0);
}

static void on_hb_timer(uv_timer_t *t)
{
    struct scr *s = t->data;
    s->last_hb_ms = kp_mono_ns() / 1000000u;
    if (s->hb_ticks++ % SCR_ALERT_TICKS == 0)
        refresh_alerts(s);
    (void)scr__lock_probe(s); /* a dead lock session makes the schemes inactive first */
    scr__send_reg(s);
}

/* ---- database connection -------------------------------------------------------------- */

/* After connecting: migrations and scheme rows once (engines and locks: scr_lock.c). Returns
 * 0, or KP_E* with err; *fatal when retrying cannot help. */
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
            rc = scr__db_sync_scheme(s, &s->schemes[i], err, errlen);
            if (rc) {
                *fatal = !kp_pg_conn_lost(s->pg);
                return rc;
            }
        }
        s->initialised = true;
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
        scr__lock_lost(s); /* a new session holds no lock */
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
    rc = scr__lock_acquire(s, err, sizeof err);
    if (rc) {
        s->stats.pg_errors++;
        kp_counter_inc(s->m_pg_errors);
        KP_WARN("db_prepare_failed", "retry_ms=%" PRIu64 " msg=%s", s->backoff_ms,
                kp_log_q(q, sizeof q, err));
        scr__db_rollback(s);
        return rc;
    }
    s->backoff_ms = BACKOFF_MIN_MS;
    scr__set_ready(s, true);
    scr__send_reg(s);
    scr__lock_timer_update(s);
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

/* Stores the queued batches (scr_process_group) and sends their replies. A queue that takes
 * longer than a heartbeat interval to store does not keep the broker waiting for the scorer's
 * reg: the heartbeat round runs between groups when it is due. */
#define PEND_KEEP ((size_t)16 * 1024)

static void flush_pending(struct scr *s)
{
    if (s->n_pend == 0)
        return;
    struct scr_item it[SCR_GROUP_MAX];
    size_t n = s->n_pend;
    for (size_t k = 0; k < n; k++) {
        struct scr_pend *p = &s->pend[k];
        it[k] = (struct scr_item){.aid = p->aid.data,
                                  .aid_len = p->aid.len,
                                  .payload = p->payload.data,
                                  .len = p->payload.len,
                                  .refused = p->has_refused ? p->refused.data : NULL,
                                  .refused_len = p->has_refused ? p->refused.len : 0,
                                  .reply = &p->reply};
    }
    scr_process_group(s, it, n);
    s->n_pend = 0;
    s->pend_bytes = 0;
    /* The copies keep their buffers for the next group, unless the load got lighter: a slot this
     * group left unused, or used for less than a quarter of its buffer, gives a buffer over
     * PEND_KEEP back. (Batches of 1,000 leave ~70 kB in each of the 16; at 10,000 obs/s in
     * batches of 100 the scorer held that megabyte for nothing: docs/BENCHMARKS.md round 11.) */
    for (size_t k = 0; k < SCR_GROUP_MAX; k++) {
        struct kp_buf *b = &s->pend[k].payload;
        if (b->cap > PEND_KEEP && (k >= n || b->len * 4 < b->cap))
            kp_buf_fini(b);
    }
    for (size_t k = 0; k < n; k++) {
        struct scr_pend *p = &s->pend[k];
        struct kp_frame rep[4] = {{"rep", 3},
                                  {p->cid.data, p->cid.len},
                                  {p->rid.data, p->rid.len},
                                  {p->reply.data, p->reply.len}};
        int rc = kp_zsock_send(s->dealer, rep, 4);
        if (rc) /* the adapter retransmits and gets dup:true (ARCHITECTURE.md guarantee 2) */
            KP_WARN("reply_not_sent", "err=%s adapter=%.*s seq=%.*s", kp_err_name(rc),
                    (int)p->aid.len, (const char *)p->aid.data, (int)p->seq.len,
                    (const char *)p->seq.data);
    }
    if (!s->closing && kp_mono_ns() / 1000000u - s->last_hb_ms >= (uint64_t)s->cfg->hb_ms)
        on_hb_timer(&s->hb_timer);
}

static void on_flush_check(uv_check_t *h)
{
    flush_pending(h->data);
}

static void copy_frame(struct kp_buf *b, const struct kp_frame *f)
{
    kp_buf_reset(b);
    kp_buf_append(b, f->data, f->len);
}

/* INTERNAL.md broker → scorer: ["bat", cid, rid, aid, seq, payload] and, when the collector
 * refused observations the adapter is not granted, [..., payload, refused]. Queued until the
 * end of the loop turn, so that batches that arrived together share one transaction. */
static void on_dealer(struct kp_zsock *z, const struct kp_frame *fr, size_t n, void *arg)
{
    (void)z;
    struct scr *s = arg;
    if (s->closing)
        return;
    if ((n != 6 && n != 7) || fr[0].len != 3 || memcmp(fr[0].data, "bat", 3) != 0) {
        KP_WARN("bad_broker_frame", "frames=%zu", n);
        return;
    }
    struct scr_pend *p = &s->pend[s->n_pend++];
    copy_frame(&p->cid, &fr[1]);
    copy_frame(&p->rid, &fr[2]);
    copy_frame(&p->aid, &fr[3]);
    copy_frame(&p->seq, &fr[4]);
    copy_frame(&p->payload, &fr[5]);
    p->has_refused = n == 7;
    if (p->has_refused)
        copy_frame(&p->refused, &fr[6]);
    s->pend_bytes += fr[5].len;
    if (s->n_pend == SCR_GROUP_MAX || s->pend_bytes >= SCR_GROUP_BYTES)
        flush_pending(s);
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
    s->m_loaded = kp_metrics_counter(
        m, "kaoping_scorer_records_loaded_total",
        "Stored revisions of evicted records read back because a batch revises them or their "
        "cell's latest record leaves it",
        NULL);
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
    s->m_broker_up = kp_metrics_gauge(m, "kaoping_scorer_broker_connected",
                                      "1 while the connection to the broker is up", NULL);
    s->m_alerts = kp_xcalloc(s->n_schemes * SCR_ALERT_STATES, sizeof *s->m_alerts);
    for (size_t i = 0; i < s->n_schemes; i++)
        for (int k = 0; k < SCR_ALERT_STATES; k++) {
            char labels[128];
            snprintf(labels, sizeof labels, "scheme=\"%s\",state=\"%s\"", s->schemes[i].id,
                     alert_states[k]);
            s->m_alerts[i * SCR_ALERT_STATES + (size_t)k] = kp_metrics_gauge(
                m, "kaoping_scorer_alerts",
                "Alerts recorded for the scheme, by state (from the alert table)", labels);
        }
    for (size_t i = 0; i < s->n_schemes; i++) {
        char labels[96];
        snprintf(labels, sizeof labels, "scheme=\"%s\"", s->schemes[i].id);
        s->schemes[i].m_active = kp_metrics_gauge(
            m, "kaoping_scorer_scheme_active",
            "1 while this scorer holds the scheme's lock and serves it (0: standby)", labels);
        s->schemes[i].m_state_bytes = kp_metrics_gauge(
            m, "kaoping_scorer_state_bytes",
            "Memory the scheme's state takes: the engine's records, sums and cells, and the copy "
            "of the score rows (grows with the data held, not with the load)",
            labels);
        s->schemes[i].m_records = kp_metrics_gauge(
            m, "kaoping_scorer_records",
            "Records (latest revisions of distinct (src, ref)) the engine holds", labels);
    }
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
        sch->known_max_id = -1;
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
        scr__cells_destroy(&s->schemes[i].cells);
        scr__cells_destroy(&s->schemes[i].cells_next);
        scr__totals_destroy(&s->schemes[i].totals);
        scr__totals_destroy(&s->schemes[i].totals_next);
        score_scheme_destroy(&s->schemes[i].scheme);
    }
    free(s->schemes);
    kp_metrics_destroy(&s->metrics);
    free(s->m_alerts);
    for (int k = 0; k < SCR_A__COUNT; k++)
        kp_buf_fini(&s->a[k]);
    for (size_t k = 0; k < sizeof s->bin / sizeof s->bin[0]; k++)
        kp_buf_fini(&s->bin[k]);
    for (size_t k = 0; k < sizeof s->ubin / sizeof s->ubin[0]; k++)
        kp_buf_fini(&s->ubin[k]);
    kp_buf_fini(&s->json);
    kp_buf_fini(&s->copy);
    kp_buf_fini(&s->reg);
    free(s->so);
    free(s->chk);
    free(s->so_reason);
    for (size_t k = 0; k < SCR_GROUP_MAX; k++) {
        struct scr_pend *p = &s->pend[k];
        kp_buf_fini(&p->cid);
        kp_buf_fini(&p->rid);
        kp_buf_fini(&p->aid);
        kp_buf_fini(&p->seq);
        kp_buf_fini(&p->payload);
        kp_buf_fini(&p->refused);
        kp_buf_fini(&p->reply);
    }
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
    /* CURVE keys and the libpq password file: checked before anything connects (issue 6). */
    char pub[KP_KEY_Z85_LEN + 1] = "", sec[KP_KEY_Z85_LEN + 1] = "", srv[KP_KEY_Z85_LEN + 1] = "";
    bool curve = false;
    if ((rc = scr_config_curve(cfg, pub, sec, srv, &curve, err, sizeof err)) != 0 ||
        (rc = scr_config_passfile(cfg, err, sizeof err)) != 0) {
        KP_ERROR("config_invalid", "msg=%s", kp_log_q(q, sizeof q, err));
        rc = KP_ECONFIG;
        goto fail_early;
    }
    kp_keys_wipe(sec, sizeof sec); /* read again right before the socket is opened */
    if ((rc = load_schemes(s)) != 0)
        goto fail_early;
    make_metrics(s);

    uv_timer_init(loop, &s->db_timer);
    uv_timer_init(loop, &s->hb_timer);
    uv_timer_init(loop, &s->lock_timer);
    uv_check_init(loop, &s->flush_check);
    s->db_timer.data = s->hb_timer.data = s->lock_timer.data = s->flush_check.data = s;
    uv_check_start(&s->flush_check, on_flush_check);
    s->last_hb_ms = kp_mono_ns() / 1000000u;
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

    /* Memory bound (docs/OPERATIONS.md): SCR_RCVHWM batches queued for this scorer, plus at
     * most SCR_GROUP_MAX copied into the group being stored; SCR_SNDHWM replies. */
    struct kp_zsock_opts o = {
        .max_msg_bytes = cfg->max_bytes + 65536,
        .identity = s->sid,
        .linger_ms = 0,
        .sndhwm = SCR_SNDHWM,
        .rcvhwm = SCR_RCVHWM,
    };
    if (curve) {
        if ((rc = scr_config_curve(cfg, pub, sec, srv, &curve, err, sizeof err)) != 0) {
            KP_ERROR("config_invalid", "msg=%s", kp_log_q(q, sizeof q, err));
            goto fail;
        }
        o.curve_public = pub;
        o.curve_secret = sec;
        o.curve_serverkey = srv;
    }
    rc = kp_zsock_open(loop, KP_ZSOCK_DEALER, &o, &s->dealer);
    kp_keys_wipe(sec, sizeof sec); /* libzmq holds its own copy */
    if (rc != 0 || (rc = kp_zsock_monitor(s->dealer, on_broker_peers, s)) != 0 ||
        (rc = kp_zsock_connect(s->dealer, cfg->broker)) != 0 ||
        (rc = kp_zsock_start(s->dealer, on_dealer, s)) != 0) {
        KP_ERROR("broker_connect_failed", "endpoint=%s err=%s", cfg->broker, kp_err_name(rc));
        goto fail;
    }
    if ((rc = kp_admin_open(cfg->admin, s->metrics, admin_ready, s, &s->admin)) != 0) {
        KP_ERROR("admin_failed", "listen=%s err=%s", cfg->admin, kp_err_name(rc));
        goto fail;
    }
    if ((rc = scr__alert_start(s)) != 0) /* issue 7: alert timer, PUB socket, Alertmanager */
        goto fail;
    scr__send_reg(s);
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
    /* Processing is synchronous on this loop: no batch is half done here. The batches queued
     * in this loop turn are stored and answered first. */
    if (s->timers_init && !s->closing && s->dealer)
        flush_pending(s);
    if (s->dealer)
        kp_zsock_pause(s->dealer);
    kp_admin_close(&s->admin);
    s->closing = 1;
    s->db_ready = false;
    kp_pg_close(&s->pg);
    if (s->timers_init) {
        uv_timer_stop(&s->db_timer);
        uv_timer_stop(&s->hb_timer);
        uv_timer_stop(&s->lock_timer);
        uv_check_stop(&s->flush_check);
        s->closing += 4;
        uv_close((uv_handle_t *)&s->db_timer, on_timer_closed);
        uv_close((uv_handle_t *)&s->hb_timer, on_timer_closed);
        uv_close((uv_handle_t *)&s->lock_timer, on_timer_closed);
        uv_close((uv_handle_t *)&s->flush_check, on_timer_closed);
    }
    if (s->dealer) {
        s->closing++;
        kp_zsock_close(&s->dealer, on_part_closed, s);
    }
    s->closing++;
    scr__alert_stop(s, on_part_closed, s);
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
    if (kp_signals_open(loop, on_stop_signal, kp_daemon_on_hup, &r, &r.sig) != 0) {
        KP_ERROR("signals_failed", "msg=\"cannot install signal handlers\"");
        scr_stop(&r.scr);
        uv_run(loop, UV_RUN_DEFAULT);
        return 1;
    }
    uv_run(loop, UV_RUN_DEFAULT);
    KP_INFO("stopped", "msg=\"scorer stopped\"");
    return 0;
}
