/*
 * scr_lock: one active scorer per scheme (ARCHITECTURE.md "scorer/": "guaranteed by a
 * PostgreSQL advisory lock; a standby takes over when it dies"). Each scheme has a
 * session-level advisory lock, key (KP_SCR_LOCK_CLASS, hashtext(scheme id)), taken with
 * pg_try_advisory_lock in the very session that runs the scheme's batch transactions. So every
 * write of a scheme is made by the session that holds its lock: when a scorer's session ends
 * (process killed, connection lost, server restarted) its locks end with it, and a scorer that
 * lost its session cannot write another line before it has re-taken the lock in a new one. No
 * split brain needs a second fence.
 *
 * A scorer that does not get a lock is that scheme's standby: it stays connected, keeps its
 * engine following what the active scorer stores (observations with ids above the engine's
 * known_max_id; one writer per scheme makes ids grow in commit order), retries the lock every
 * lock_poll_ms, and does not list the scheme in its reg frame (the broker routes to the most
 * recent registration, INTERNAL.md). Taking over = lock, catch up the last few observations,
 * register. An active scorer proves its session alive on every heartbeat before it
 * re-registers, so an idle scorer whose session died stops being routed to within one hb_ms.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kp_err.h"
#include "kp_log.h"
#include "kp_metrics.h"
#include "kp_pg.h"
#include "kp_time.h"
#include "scr_internal.h"

/* First half of every scheme lock's key ("kpsc"); the second is hashtext(scheme id). Distinct
 * from kp_pg_migrate's one-bigint key: PostgreSQL keeps the two key forms apart. */
#define KP_SCR_LOCK_CLASS "1802531683"

#define LOCK_POLL_DEFAULT_MS 500

static const char SQL_TRY_LOCK[] =
    "SELECT pg_try_advisory_lock(" KP_SCR_LOCK_CLASS ", hashtext($1))";

/* Server-side keepalives: if the scorer's host vanishes without closing the connection, the
 * server ends the session (and frees the locks) within about 10 + 3 * 5 seconds instead of the
 * kernel's two hours. Ignored on unix sockets. */
static const char SQL_SESSION[] = "SELECT set_config('tcp_keepalives_idle', '10', false), "
                                  "set_config('tcp_keepalives_interval', '5', false), "
                                  "set_config('tcp_keepalives_count', '3', false)";

static void set_active(struct scr *s, struct scr_scheme *sch, bool active)
{
    if (sch->active == active)
        return;
    sch->active = active;
    if (sch->m_active)
        kp_gauge_set(sch->m_active, active ? 1 : 0);
    if (active)
        KP_INFO("scheme_active", "scheme=%s sid=%s observations_upto=%lld", sch->id, s->sid,
                sch->known_max_id);
    else
        KP_WARN("scheme_inactive",
                "scheme=%s sid=%s msg=\"lock session lost; batches are "
                "nacked for retry until the lock is held again\"",
                sch->id, s->sid);
}

void scr__lock_lost(struct scr *s)
{
    for (size_t i = 0; i < s->n_schemes; i++) {
        s->schemes[i].locked = false;
        /* Another scorer may write the scheme's rows meanwhile: the next lock holder's
         * indicator_cells copy (scr_cells.c) is rebuilt from the database. */
        s->schemes[i].need_sync = true;
        set_active(s, &s->schemes[i], false);
    }
}

/* Tries the lock of one scheme. Returns 1 when held, 0 when another session holds it, KP_EDB
 * on failure. */
static int try_lock(struct scr *s, struct scr_scheme *sch)
{
    const char *p[1] = {sch->id};
    struct kp_pg_res *r = NULL;
    if (kp_pg_exec(s->pg, SQL_TRY_LOCK, 1, p, &r))
        return KP_EDB;
    int got = kp_pg_res_ntuples(r) == 1 && !strcmp(kp_pg_res_value(r, 0, 0), "t");
    kp_pg_res_free(&r);
    return got;
}

/* One pass over the schemes not locked: take what can be taken and catch it up; a standby's
 * engine follows the database. Returns 0 or KP_EDB with err. *changed: a scheme became
 * active. */
static int lock_pass(struct scr *s, bool *changed, bool full, char *err, size_t errlen)
{
    *changed = false;
    for (size_t i = 0; i < s->n_schemes; i++) {
        struct scr_scheme *sch = &s->schemes[i];
        if (sch->locked)
            continue;
        int got = try_lock(s, sch);
        if (got < 0) {
            snprintf(err, errlen, "lock %s: %s%s%s", sch->id, kp_pg_sqlstate(s->pg),
                     kp_pg_sqlstate(s->pg)[0] ? ": " : "", kp_pg_errmsg(s->pg));
            return KP_EDB;
        }
        uint64_t t0 = kp_mono_ns();
        uint64_t applied = 0;
        /* A standby keeps its engine warm (no score writes: the active scorer writes them); a
         * new lock holder catches up and makes the score rows equal to its engine. */
        int rc = scr__db_catch_up(s, sch, full, got == 1, &applied, err, errlen);
        if (rc)
            return rc;
        if (got == 1) {
            sch->locked = true;
            s->stats.locks_taken++;
            KP_INFO("lock_taken", "scheme=%s sid=%s caught_up=%" PRIu64 " ms=%.1f", sch->id, s->sid,
                    applied, (double)(kp_mono_ns() - t0) / 1e6);
            set_active(s, sch, true);
            *changed = true;
        }
    }
    return 0;
}

int scr__lock_acquire(struct scr *s, char *err, size_t errlen)
{
    if (kp_pg_exec(s->pg, SQL_SESSION, 0, NULL, NULL)) {
        snprintf(err, errlen, "session settings: %s", kp_pg_errmsg(s->pg));
        return KP_EDB;
    }
    bool changed;
    /* After an uncertain COMMIT the engines are rebuilt from scratch (need_replay). */
    int rc = lock_pass(s, &changed, s->need_replay, err, errlen);
    if (rc == 0)
        s->need_replay = false;
    for (size_t i = 0; i < s->n_schemes; i++)
        if (!s->schemes[i].locked)
            KP_INFO("standby",
                    "scheme=%s sid=%s msg=\"another scorer holds the scheme's lock; "
                    "taking over when it is released\"",
                    s->schemes[i].id, s->sid);
    return rc;
}

static void on_lock_timer(uv_timer_t *t)
{
    struct scr *s = t->data;
    if (s->closing || !s->db_ready || !s->pg)
        return;
    char err[1024];
    bool changed = false;
    if (lock_pass(s, &changed, false, err, sizeof err))
        scr__db_failed(s, "lock", NULL); /* err repeats the server's message it logs */
    if (changed) {
        scr__set_ready(s, true); /* recomputes readiness with the new scheme */
        scr__send_reg(s);
    }
    scr__lock_timer_update(s);
}

void scr__lock_timer_update(struct scr *s)
{
    if (!s->timers_init || s->closing)
        return;
    bool want = false;
    for (size_t i = 0; i < s->n_schemes; i++)
        want = want || !s->schemes[i].locked;
    want = want && s->db_ready;
    bool running = uv_is_active((uv_handle_t *)&s->lock_timer);
    if (want && !running) {
        uint64_t ms =
            s->cfg->lock_poll_ms > 0 ? (uint64_t)s->cfg->lock_poll_ms : LOCK_POLL_DEFAULT_MS;
        uv_timer_start(&s->lock_timer, on_lock_timer, ms, ms);
    } else if (!want && running) {
        uv_timer_stop(&s->lock_timer);
    }
}

bool scr__lock_probe(struct scr *s)
{
    if (!s->db_ready || !s->pg)
        return false;
    bool any = false;
    for (size_t i = 0; i < s->n_schemes; i++)
        any = any || s->schemes[i].locked;
    if (!any)
        return true; /* nothing to prove: the lock timer talks to the database anyway */
    if (kp_pg_exec(s->pg, "SELECT 1", 0, NULL, NULL) == 0)
        return true;
    scr__db_failed(s, "probe", NULL);
    return kp_pg_ok(s->pg) && s->db_ready;
}
