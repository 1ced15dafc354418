/*
 * scr_alert_am: the Alertmanager sender of the scorer (issue 7; scr_alert.h), a thread with
 * its own PostgreSQL connection so that the loop never waits on HTTP. It reads from `alert`
 * what Alertmanager must hear — a firing alert not yet accepted or last accepted more than
 * alerts.resend_ms ago (re-sent with endsAt = now + 3 x resend_ms, so that Alertmanager keeps
 * it only while the scorer keeps saying so), a resolution not yet accepted, and resolutions of
 * the last alerts.resolved_resend_ms (re-sent with endsAt = the resolution time) — posts it
 * with kp_am, and records what was accepted (am_state, am_sent_at). A refused or failed post
 * changes nothing in the table: it is retried with backoff, so an Alertmanager that is down,
 * or restarted with its memory empty, gets every firing alert back (DOMAIN.md "Alert
 * ladders": startsAt stays the first firing time, labels identify the alert). Every scorer
 * configured for a scheme sends its alerts, a standby too: Alertmanager deduplicates by labels,
 * and delivery goes on while a standby takes over.
 */
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kp_am.h"
#include "kp_buf.h"
#include "kp_err.h"
#include "kp_log.h"
#include "kp_metrics.h"
#include "kp_pg.h"
#include "kp_time.h"
#include "scr.h"
#include "scr_alert.h"

#define AM_BATCH          200 /* alerts per POST */
#define AM_BACKOFF_MIN_MS 250
#define AM_BACKOFF_MAX_MS 30000
#define AM_POLL_MAX_MS    1000 /* the table is looked at least this often */

static const char SQL_DUE[] =
    "SELECT a.id, a.state, a.labels::text, a.summary, a.kind, "
    "(extract(epoch FROM a.fired_at) * 1000)::int8, "
    "coalesce((extract(epoch FROM a.resolved_at) * 1000)::int8, 0), "
    "coalesce(u.name, ''), coalesce(i.name, ''), coalesce(a.period, '') "
    "FROM alert a "
    "LEFT JOIN kp_unit u ON u.scheme = a.scheme AND u.unit = a.unit "
    "LEFT JOIN kp_indicator i ON i.scheme = a.scheme AND i.indicator = a.indicator "
    "WHERE a.scheme = ANY($1::text[]) AND a.fired_at IS NOT NULL AND ("
    "((a.state <> 'resolved' OR a.am_state IS DISTINCT FROM 'resolved') AND "
    " (a.am_state IS DISTINCT FROM a.state OR a.am_sent_at IS NULL "
    "  OR a.am_sent_at < now() - $2::interval)) "
    "OR (a.state = 'resolved' AND a.updated_at > now() - $3::interval "
    "    AND a.am_sent_at < now() - $2::interval)) "
    "ORDER BY a.id LIMIT $4";

static const char SQL_SENT[] =
    "UPDATE alert a SET am_state = t.st, am_sent_at = now(), am_error = t.er "
    "FROM unnest($1::int8[], $2::text[], $3::text[]) AS t(id, st, er) WHERE a.id = t.id";

struct scr_am {
    pthread_t thr;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool wake;
    atomic_bool stop;
    char *dsn, *url;
    char *schemes; /* array literal */
    long long resend_ms, resolved_ms, timeout_ms;
    struct kp_pg *pg;
    struct kp_am *am;
    struct kp_counter *m_ok, *m_retry, *m_refused, *m_alerts;
    struct kp_gauge *m_up;
    bool up;          /* the last post succeeded */
    bool down_logged; /* the failure was logged (once per outage) */
};

/* One delivery round: up to AM_BATCH alerts. Returns the number posted (0: nothing due),
 * KP_EAGAIN (Alertmanager unreachable: retry with backoff) or KP_EDB. */
static int deliver(struct scr_am *m)
{
    char err[1024], q[1100];
    if (!m->pg || !kp_pg_ok(m->pg)) {
        int rc = m->pg ? kp_pg_reset(m->pg) : kp_pg_open(m->dsn, &m->pg);
        if (rc || !m->pg || !kp_pg_ok(m->pg)) {
            KP_WARN("alertmanager_db_failed", "msg=%s",
                    kp_log_q(q, sizeof q, m->pg ? kp_pg_errmsg(m->pg) : "out of memory"));
            return KP_EDB;
        }
    }
    char resend[48], resolved[48], limit[16];
    snprintf(resend, sizeof resend, "%lld milliseconds", m->resend_ms);
    snprintf(resolved, sizeof resolved, "%lld milliseconds", m->resolved_ms);
    snprintf(limit, sizeof limit, "%d", AM_BATCH);
    const char *p[4] = {m->schemes, resend, resolved, limit};
    struct kp_pg_res *r = NULL;
    if (kp_pg_exec(m->pg, SQL_DUE, 4, p, &r)) {
        KP_WARN("alertmanager_db_failed", "sqlstate=%s msg=%s", kp_pg_sqlstate(m->pg),
                kp_log_q(q, sizeof q, kp_pg_errmsg(m->pg)));
        return KP_EDB;
    }
    int n = kp_pg_res_ntuples(r);
    if (n == 0) {
        kp_pg_res_free(&r);
        return 0;
    }
    int64_t now = kp_now_ms(); /* Alertmanager's clock is the real one */
    int64_t ends_firing = now + 3 * m->resend_ms;
    struct kp_am_alert *al = kp_xcalloc((size_t)n, sizeof *al);
    struct kp_am_pair *lab = kp_xcalloc((size_t)n * 8, sizeof *lab);
    struct kp_am_pair *ann = kp_xcalloc((size_t)n * 6, sizeof *ann);
    json_t **js = kp_xcalloc((size_t)n, sizeof *js);
    struct kp_buf ids = {0}, sts = {0};
    kp_pg_array_begin(&ids);
    kp_pg_array_begin(&sts);
    for (int i = 0; i < n; i++) {
        const char *state = kp_pg_res_value(r, i, 1);
        bool resolved_row = !strcmp(state, "resolved");
        js[i] = json_loads(kp_pg_res_value(r, i, 2), 0, NULL);
        size_t nl = 0;
        const char *k;
        json_t *v;
        if (json_is_object(js[i]))
            json_object_foreach(js[i], k, v)
            {
                if (nl < 8 && json_is_string(v))
                    lab[i * 8 + nl++] = (struct kp_am_pair){k, json_string_value(v)};
            }
        struct kp_am_pair *an = &ann[i * 6];
        an[0] = (struct kp_am_pair){"summary", kp_pg_res_value(r, i, 3)};
        an[1] = (struct kp_am_pair){"kind", kp_pg_res_value(r, i, 4)};
        an[2] = (struct kp_am_pair){"unit_name", kp_pg_res_value(r, i, 7)};
        an[3] = (struct kp_am_pair){"indicator_name", kp_pg_res_value(r, i, 8)};
        an[4] = (struct kp_am_pair){"kp_alert_id", kp_pg_res_value(r, i, 0)};
        int64_t starts = strtoll(kp_pg_res_value(r, i, 5), NULL, 10);
        int64_t ends = resolved_row ? strtoll(kp_pg_res_value(r, i, 6), NULL, 10) : ends_firing;
        if (resolved_row && (ends <= 0 || ends > now))
            ends = now; /* resolved: endsAt <= now, whatever clock the evaluator ran on */
        if (starts > ends)
            starts = ends;
        al[i] = (struct kp_am_alert){&lab[i * 8], nl, an, 5, starts, ends, NULL};
        kp_pg_array_add(&ids, kp_pg_res_value(r, i, 0));
        kp_pg_array_add(&sts, state);
    }
    kp_pg_array_end(&ids);
    kp_pg_array_end(&sts);
    int rc = kp_am_post(m->am, al, (size_t)n, err, sizeof err);
    int out = n;
    struct kp_buf errs = {0};
    kp_pg_array_begin(&errs);
    int refused = 0;
    if (rc == KP_EPROTO && n > 1) {
        /* Alertmanager refuses the whole request for one malformed alert: find it (them) by
         * posting each alone, so that the others are delivered */
        for (int i = 0; i < n && rc != KP_EAGAIN; i++) {
            char e1[1024];
            int r1 = kp_am_post(m->am, &al[i], 1, e1, sizeof e1);
            if (r1 == KP_EAGAIN)
                rc = KP_EAGAIN;
            else if (r1 == KP_EPROTO)
                refused++;
            kp_pg_array_add(&errs, r1 == KP_EPROTO ? e1 : NULL);
            if (r1 == KP_EPROTO)
                snprintf(err, sizeof err, "%s", e1);
        }
        if (rc != KP_EAGAIN)
            rc = refused ? KP_EPROTO : 0;
    } else {
        refused = rc == KP_EPROTO ? n : 0;
        for (int i = 0; i < n; i++)
            kp_pg_array_add(&errs, rc == KP_EPROTO ? err : NULL);
    }
    kp_pg_array_end(&errs);
    if (rc == 0 || rc == KP_EPROTO) {
        /* accepted; or refused as malformed, which a retry cannot fix: recorded with the
         * reason (am_error) and tried again at the resend cadence only */
        const char *pp[3] = {kp_buf_cstr(&ids), kp_buf_cstr(&sts), kp_buf_cstr(&errs)};
        if (kp_pg_exec(m->pg, SQL_SENT, 3, pp, NULL)) {
            KP_WARN("alertmanager_db_failed", "sqlstate=%s msg=%s", kp_pg_sqlstate(m->pg),
                    kp_log_q(q, sizeof q, kp_pg_errmsg(m->pg)));
            out = KP_EDB;
        }
        kp_counter_inc(m->m_ok);
        kp_counter_add(m->m_alerts, n - refused);
        if (m->down_logged)
            KP_INFO("alertmanager_up", "url=%s", kp_am_url(m->am));
        m->up = true;
        m->down_logged = false;
        KP_DEBUG("alertmanager_posted", "alerts=%d", n - refused);
        if (refused) {
            kp_counter_inc(m->m_refused);
            KP_ERROR("alertmanager_refused", "alerts=%d msg=%s", refused,
                     kp_log_q(q, sizeof q, err));
        }
    } else {
        kp_counter_inc(m->m_retry);
        if (!m->down_logged)
            KP_WARN("alertmanager_down", "alerts=%d msg=%s retry=true", n,
                    kp_log_q(q, sizeof q, err));
        m->up = false;
        m->down_logged = true;
        out = KP_EAGAIN;
    }
    kp_buf_fini(&errs);
    kp_gauge_set(m->m_up, m->up ? 1 : 0);
    for (int i = 0; i < n; i++)
        json_decref(js[i]);
    free(js);
    free(al);
    free(lab);
    free(ann);
    kp_buf_fini(&ids);
    kp_buf_fini(&sts);
    kp_pg_res_free(&r);
    return out;
}

static void wait_ms(struct scr_am *m, long long ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&m->mu);
    while (!m->wake && !atomic_load(&m->stop))
        if (pthread_cond_timedwait(&m->cv, &m->mu, &ts) != 0)
            break;
    m->wake = false;
    pthread_mutex_unlock(&m->mu);
}

static void *sender(void *arg)
{
    struct scr_am *m = arg;
    long long backoff = 0;
    long long poll = m->resend_ms / 4;
    if (poll > AM_POLL_MAX_MS)
        poll = AM_POLL_MAX_MS;
    if (poll < 20)
        poll = 20;
    while (!atomic_load(&m->stop)) {
        int rc = deliver(m);
        if (atomic_load(&m->stop))
            break;
        if (rc == AM_BATCH) {
            backoff = 0;
            continue; /* more due */
        }
        if (rc < 0) {
            backoff = backoff ? backoff * 2 : AM_BACKOFF_MIN_MS;
            if (backoff > AM_BACKOFF_MAX_MS)
                backoff = AM_BACKOFF_MAX_MS;
            /* a wake-up does not cut a backoff short: wait it out */
            int64_t until = kp_now_ms() + backoff;
            while (!atomic_load(&m->stop) && kp_now_ms() < until)
                wait_ms(m, until - kp_now_ms());
            continue;
        }
        backoff = 0;
        wait_ms(m, poll);
    }
    kp_am_close(&m->am);
    kp_pg_close(&m->pg);
    return NULL;
}

int scr__am_start(const struct scr_config *cfg, const char *dsn, const char *const *schemes,
                  size_t n_schemes, struct kp_metrics *metrics, struct scr_am **out)
{
    *out = NULL;
    struct scr_am *m = kp_xcalloc(1, sizeof *m);
    atomic_init(&m->stop, false);
    m->resend_ms = cfg->alerts_resend_ms > 0 ? cfg->alerts_resend_ms : 60000;
    m->resolved_ms = cfg->alerts_resolved_ms >= 0 ? cfg->alerts_resolved_ms : 300000;
    m->timeout_ms = cfg->alerts_am_timeout_ms > 0 ? cfg->alerts_am_timeout_ms : 5000;
    int rc = kp_am_open(cfg->alerts_am_url, (long)m->timeout_ms, &m->stop, &m->am);
    if (rc) {
        free(m);
        return rc;
    }
    m->dsn = kp_xstrdup(dsn);
    struct kp_buf b = {0};
    kp_pg_array_begin(&b);
    for (size_t i = 0; i < n_schemes; i++)
        kp_pg_array_add(&b, schemes[i]);
    kp_pg_array_end(&b);
    m->schemes = kp_xstrdup(kp_buf_cstr(&b));
    kp_buf_fini(&b);
    static const char help[] = "POSTs to Alertmanager's /api/v2/alerts, by outcome";
    m->m_ok = kp_metrics_counter(metrics, "kaoping_scorer_alertmanager_posts_total", help,
                                 "outcome=\"ok\"");
    m->m_retry = kp_metrics_counter(metrics, "kaoping_scorer_alertmanager_posts_total", help,
                                    "outcome=\"retry\"");
    m->m_refused = kp_metrics_counter(metrics, "kaoping_scorer_alertmanager_posts_total", help,
                                      "outcome=\"refused\"");
    m->m_alerts = kp_metrics_counter(metrics, "kaoping_scorer_alertmanager_alerts_sent_total",
                                     "Alerts accepted by Alertmanager (re-sends included)", NULL);
    m->m_up = kp_metrics_gauge(metrics, "kaoping_scorer_alertmanager_up",
                               "1 when the last POST to Alertmanager succeeded", NULL);
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, NULL);
    if (pthread_create(&m->thr, NULL, sender, m) != 0) {
        kp_am_close(&m->am);
        pthread_mutex_destroy(&m->mu);
        pthread_cond_destroy(&m->cv);
        free(m->dsn);
        free(m->schemes);
        free(m);
        return KP_ENOMEM;
    }
    m->started = true;
    *out = m;
    return 0;
}

void scr__am_wake(struct scr_am *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->mu);
    m->wake = true;
    pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
}

void scr__am_stop(struct scr_am **mp)
{
    if (!mp || !*mp)
        return;
    struct scr_am *m = *mp;
    *mp = NULL;
    pthread_mutex_lock(&m->mu);
    atomic_store(&m->stop, true);
    pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
    if (m->started)
        pthread_join(m->thr, NULL);
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->cv);
    free(m->dsn);
    free(m->schemes);
    free(m);
}
