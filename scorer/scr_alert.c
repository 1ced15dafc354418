/*
 * scr_alert: alerts in the scorer (issue 7; scr_alert.h). Transitions are written in the
 * scoring transaction (ARCHITECTURE.md "scorer/": "record alert transitions") into the `alert`
 * table behind the kp_alert view of PROTOCOL.md, each announced by NOTIFY kaoping_alert in the
 * same transaction and, after the COMMIT, by a message on the PUB socket. A timer evaluates
 * the time-driven rules (deadlines, overdue nodes, silent sources, progress lag) in their own
 * small transactions. The `alert` table is the source of truth: the evaluator is rebuilt from
 * it (and the engine) whenever it may have drifted, and the Alertmanager sender reads it.
 */
#include "scr_alert.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kp_am.h"
#include "kp_err.h"
#include "kp_log.h"
#include "kp_metrics.h"
#include "kp_msg.h"
#include "kp_pg.h"
#include "kp_time.h"
#include "kp_zsock.h"
#include "score_alert.h"
#include "score_engine.h"
#include "scr_internal.h"

#define PUB_SNDHWM    10000
#define PUB_MAX_QUEUE 20000 /* messages queued by one transaction (the rest is dropped: a tap) */

/* The transition arrays of one write. */
enum {
    AA_FP,
    AA_RULE,
    AA_KIND,
    AA_SEV,
    AA_UNIT,
    AA_IND,
    AA_PERIOD,
    AA_LABELS,
    AA_STATE,
    AA_PEND,
    AA_FIRED,
    AA_RESOLVED,
    AA_SUMMARY,
    AA_VALUE,
    AA_REF,
    AA__COUNT
};

/* Transitions → `alert` rows, and one NOTIFY each, in one round trip. A pending alert that
 * clears is deleted; pending → firing and firing → resolved update the open row; a new alert
 * is inserted. ms times are the evaluator's clock. */
static const char SQL_WRITE[] =
    "WITH t AS (SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], "
    "$6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::int8[], $12::int8[], "
    "$13::int8[], $14::text[], $15::float8[], $16::float8[]) WITH ORDINALITY "
    "AS t(fp, rule, kind, sev, unit, ind, period, labels, state, pend, fired, resolved, "
    "summary, val, ref, ord)), "
    "del AS (DELETE FROM alert a USING t WHERE t.state = 'inactive' AND a.scheme = $1 "
    "AND a.fingerprint = t.fp AND a.state = 'pending' RETURNING a.id, t.ord), "
    "upd AS (UPDATE alert a SET state = t.state, " /* startsAt never changes: */
    "fired_at = coalesce(a.fired_at, CASE WHEN t.fired > 0 THEN timestamptz 'epoch' + "
    "t.fired * interval '1 ms' END), "
    "resolved_at = CASE WHEN t.resolved > 0 THEN timestamptz 'epoch' + t.resolved * "
    "interval '1 ms' END, summary = t.summary, value = t.val, ref_value = t.ref, "
    "updated_at = now() FROM t WHERE t.state IN ('firing', 'resolved') AND a.scheme = $1 "
    "AND a.fingerprint = t.fp AND a.state IN ('pending', 'firing') RETURNING a.id, t.ord), "
    "ins AS (INSERT INTO alert (scheme, rule, kind, severity, unit, indicator, period, state, "
    "fired_at, summary, labels, fingerprint, pending_at, value, ref_value) "
    "SELECT $1, t.rule, t.kind, t.sev, nullif(t.unit, ''), nullif(t.ind, ''), "
    "nullif(t.period, ''), t.state, "
    "CASE WHEN t.fired > 0 THEN timestamptz 'epoch' + t.fired * interval '1 ms' END, "
    "t.summary, t.labels::jsonb, t.fp, timestamptz 'epoch' + t.pend * interval '1 ms', t.val, "
    "t.ref FROM t WHERE t.state IN ('pending', 'firing') "
    "AND NOT EXISTS (SELECT 1 FROM upd WHERE upd.ord = t.ord) RETURNING id, fingerprint), "
    "ids AS (SELECT id, ord FROM del UNION ALL SELECT id, ord FROM upd UNION ALL "
    "SELECT i.id, t.ord FROM ins i JOIN t ON t.fp = i.fingerprint "
    "AND t.state IN ('pending', 'firing')) "
    "SELECT count(pg_notify('kaoping_alert', json_build_object('id', ids.id, 'scheme', $1, "
    "'rule', t.rule, 'kind', t.kind, 'severity', t.sev, 'unit', nullif(t.unit, ''), "
    "'indicator', nullif(t.ind, ''), 'period', nullif(t.period, ''), 'labels', t.labels::json, "
    "'state', t.state, 'pending_at', t.pend, 'fired_at', nullif(t.fired, 0), "
    "'resolved_at', nullif(t.resolved, 0), 'summary', t.summary)::text)) "
    "FROM t LEFT JOIN ids ON ids.ord = t.ord";

static const char SQL_OPEN[] =
    "SELECT id, rule, kind, severity, coalesce(unit, ''), coalesce(indicator, ''), "
    "coalesce(period, ''), coalesce(labels->>'src', ''), coalesce(labels->>'adapter', ''), "
    "state, coalesce((extract(epoch FROM pending_at) * 1000)::int8, 0), "
    "coalesce((extract(epoch FROM fired_at) * 1000)::int8, 0), value, ref_value "
    "FROM alert WHERE scheme = $1 AND state IN ('pending', 'firing') ORDER BY id";

/* Open rows the scheme no longer explains (a rule removed or renamed, a unit gone). */
static const char SQL_ORPHANS[] =
    "WITH d AS (DELETE FROM alert WHERE id = ANY($1::int8[]) AND state = 'pending' RETURNING id) "
    "UPDATE alert SET state = 'resolved', resolved_at = now(), updated_at = now(), "
    "summary = summary || ' (rule no longer in the scheme)' "
    "WHERE id = ANY($1::int8[]) AND state = 'firing'";

/* The latest revision of every event of a watched indicator that ever carried a due time. */
static const char SQL_TASKS[] =
    "SELECT DISTINCT ON (src, ref) src, ref, rev::text, unit, indicator, period, value, "
    "coalesce(x::text, '') FROM observation WHERE scheme = $1 AND indicator = ANY($2::text[]) "
    "AND (src, ref) IN (SELECT src, ref FROM observation WHERE scheme = $1 "
    "AND indicator = ANY($2::text[]) AND x ? 'due') "
    "ORDER BY src, ref, rev DESC";

static const char SQL_SOURCES[] =
    "SELECT adapter, src, (extract(epoch FROM max(received_at)) * 1000)::int8 FROM batch "
    "WHERE scheme = $1 GROUP BY adapter, src";

struct scr_alert_sch {
    struct score_alert *ev;            /* NULL until loaded */
    const struct score_engine *engine; /* the engine it was primed from */
    long long known_max_id;            /* the engine's known_max_id when in step */
    bool loaded;
    bool in_txn; /* changed inside a transaction not (yet) committed */
    bool has_rules;
    bool tasks; /* some node_overdue rule: feed task nodes */
    bool wrote; /* transitions written in the open transaction */
};

struct pubmsg {
    char topic[KP_CODE_MAX + 16];
    char *json;
};

struct scr_alerts {
    struct scr *s;
    struct scr_alert_sch *sch;
    size_t n;
    uv_timer_t timer;
    bool timer_init;
    struct kp_zsock *pub;
    struct pubmsg *q;
    size_t nq, capq;
    uint64_t dropped;
    struct scr_am *am;
    struct kp_buf arr[AA__COUNT];
    struct kp_buf labels;
    int closing;
    void (*done)(void *);
    void *done_arg;
    struct kp_counter *m_transitions[4];
    struct kp_counter *m_reloads;
};

/* ---- clock ------------------------------------------------------------------------------ */

int64_t scr__alert_now(void)
{
    static int inited;
    static const char *path;
    static int64_t base_ms, mtime_ms;
    static struct timespec seen;
    int64_t real = kp_now_ms();
    if (!inited) {
        path = getenv("KP_FAKE_NOW_FILE");
        inited = 1;
    }
    if (!path || !*path)
        return real;
    struct stat st;
    if (stat(path, &st) != 0)
        return base_ms ? base_ms + (real - mtime_ms) : real;
    if (st.st_mtim.tv_sec != seen.tv_sec || st.st_mtim.tv_nsec != seen.tv_nsec || !base_ms) {
        FILE *f = fopen(path, "r");
        long long v = 0;
        if (f) {
            if (fscanf(f, "%lld", &v) != 1)
                v = 0;
            fclose(f);
        }
        if (v > 0) {
            base_ms = v;
            mtime_ms = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
            seen = st.st_mtim;
        }
    }
    return base_ms ? base_ms + (real - mtime_ms) : real;
}

/* ---- PUB messages ------------------------------------------------------------------------- */

static void queue_msg(struct scr_alerts *A, const char *kind, const char *scheme, json_t *j)
{
    if (!A->pub) {
        json_decref(j);
        return;
    }
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!text)
        return;
    if (A->nq >= PUB_MAX_QUEUE) {
        A->dropped++;
        free(text);
        return;
    }
    if (A->nq == A->capq) {
        A->capq = A->capq ? A->capq * 2 : 64;
        A->q = kp_xrealloc(A->q, A->capq * sizeof *A->q);
    }
    struct pubmsg *m = &A->q[A->nq++];
    snprintf(m->topic, sizeof m->topic, "%s.%s", kind, scheme);
    m->json = text;
}

static void drop_queue(struct scr_alerts *A)
{
    for (size_t i = 0; i < A->nq; i++)
        free(A->q[i].json);
    A->nq = 0;
}

static void publish_queue(struct scr_alerts *A)
{
    for (size_t i = 0; i < A->nq && A->pub; i++) {
        struct kp_frame f[2] = {{A->q[i].topic, strlen(A->q[i].topic)},
                                {A->q[i].json, strlen(A->q[i].json)}};
        if (kp_zsock_send(A->pub, f, 2) != 0)
            A->dropped++; /* a slow subscriber: a tap may miss messages, kp_alert does not */
    }
    drop_queue(A);
}

static json_t *jstr_or_null(const char *s)
{
    return s && *s ? json_string(s) : json_null();
}

static json_t *jtime(int64_t ms)
{
    if (!ms)
        return json_null();
    char t[40];
    kp_am_format_time(ms, t, sizeof t);
    return json_string(t);
}

static void queue_transition(struct scr_alerts *A, const char *scheme,
                             const struct score_alert_transition *t)
{
    if (!A->pub)
        return;
    json_t *j = json_object();
    json_object_set_new(j, "scheme", json_string(scheme));
    json_object_set_new(j, "rule", json_string(t->rule));
    json_object_set_new(j, "kind", json_string(t->kind));
    json_object_set_new(j, "severity", json_string(score_alert_sev_name(t->severity)));
    json_object_set_new(j, "unit", jstr_or_null(t->unit));
    json_object_set_new(j, "indicator", jstr_or_null(t->indicator));
    json_object_set_new(j, "period", jstr_or_null(t->period));
    json_object_set_new(j, "src", jstr_or_null(t->src));
    json_object_set_new(j, "adapter", jstr_or_null(t->adapter));
    json_object_set_new(j, "state", json_string(score_alert_state_name(t->state)));
    json_object_set_new(j, "pending_at", jtime(t->pending_at));
    json_object_set_new(j, "fired_at", jtime(t->fired_at));
    json_object_set_new(j, "resolved_at", jtime(t->resolved_at));
    json_t *sum = json_string(t->summary);
    json_object_set_new(j, "summary", sum ? sum : json_string(""));
    queue_msg(A, "alert", scheme, j);
}

/* ---- writing transitions ----------------------------------------------------------------- */

static void labels_json(struct kp_buf *b, const char *scheme,
                        const struct score_alert_transition *t)
{
    json_t *j = json_object();
    json_object_set_new(j, "alertname", json_string(t->rule));
    json_object_set_new(j, "scheme", json_string(scheme));
    json_object_set_new(j, "severity", json_string(score_alert_sev_name(t->severity)));
    const char *k[5] = {"unit", "indicator", "period", "src", "adapter"};
    const char *v[5] = {t->unit, t->indicator, t->period, t->src, t->adapter};
    for (int i = 0; i < 5; i++)
        if (v[i][0])
            json_object_set_new(j, k[i], json_string(v[i]));
    char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    kp_buf_reset(b);
    kp_buf_append_str(b, text ? text : "{}");
    kp_buf_cstr(b);
    free(text);
}

/* Writes n transitions of scheme in the open transaction. Returns 0 or KP_EDB. */
static int write_transitions(struct scr_alerts *A, const char *scheme,
                             const struct score_alert_transition *t, size_t n)
{
    struct kp_buf *a = A->arr;
    for (int k = 0; k < AA__COUNT; k++)
        kp_pg_array_begin(&a[k]);
    for (size_t i = 0; i < n; i++) {
        const struct score_alert_transition *x = &t[i];
        labels_json(&A->labels, scheme, x);
        kp_pg_array_add(&a[AA_FP], x->fingerprint);
        kp_pg_array_add(&a[AA_RULE], x->rule);
        kp_pg_array_add(&a[AA_KIND], x->kind);
        kp_pg_array_add(&a[AA_SEV], score_alert_sev_name(x->severity));
        kp_pg_array_add(&a[AA_UNIT], x->unit);
        kp_pg_array_add(&a[AA_IND], x->indicator);
        kp_pg_array_add(&a[AA_PERIOD], x->period);
        kp_pg_array_add(&a[AA_LABELS], kp_buf_cstr(&A->labels));
        kp_pg_array_add(&a[AA_STATE], score_alert_state_name(x->state));
        kp_pg_array_add_i64(&a[AA_PEND], (long long)x->pending_at);
        kp_pg_array_add_i64(&a[AA_FIRED], (long long)x->fired_at);
        kp_pg_array_add_i64(&a[AA_RESOLVED], (long long)x->resolved_at);
        kp_pg_array_add(&a[AA_SUMMARY], x->summary);
        if (isfinite(x->value))
            kp_pg_array_add_double(&a[AA_VALUE], x->value);
        else
            kp_pg_array_add(&a[AA_VALUE], NULL);
        if (isfinite(x->ref))
            kp_pg_array_add_double(&a[AA_REF], x->ref);
        else
            kp_pg_array_add(&a[AA_REF], NULL);
    }
    for (int k = 0; k < AA__COUNT; k++)
        kp_pg_array_end(&a[k]);
    const char *p[1 + AA__COUNT];
    p[0] = scheme;
    for (int k = 0; k < AA__COUNT; k++)
        p[1 + k] = kp_buf_cstr(&a[k]);
    if (kp_pg_exec(A->s->pg, SQL_WRITE, 1 + AA__COUNT, p, NULL))
        return KP_EDB;
    for (size_t i = 0; i < n; i++) {
        kp_counter_inc(A->m_transitions[t[i].state & 3]);
        queue_transition(A, scheme, &t[i]);
        KP_INFO("alert",
                "scheme=%s rule=%s severity=%s unit=%s indicator=%s period=%s%s%s "
                "state=%s",
                scheme, t[i].rule, score_alert_sev_name(t[i].severity), t[i].unit, t[i].indicator,
                t[i].period, t[i].adapter[0] ? " adapter=" : "", t[i].adapter,
                score_alert_state_name(t[i].state));
    }
    return 0;
}

/* ---- loading an evaluator ------------------------------------------------------------------ */

static size_t sch_index(const struct scr *s, const struct scr_scheme *sch)
{
    return (size_t)(sch - s->schemes);
}

/* "2015-06-10T12:00:00+08:00", "...Z", "2015-06-10" (the end of that day, +08:00) or a number
 * of ms since the epoch. Returns 0 when absent or unreadable. */
static int64_t parse_time(const json_t *v)
{
    if (json_is_integer(v))
        return (int64_t)json_integer_value(v);
    if (json_is_real(v))
        return (int64_t)json_real_value(v);
    if (!json_is_string(v))
        return 0;
    const char *s = json_string_value(v);
    int y, mo, d, h = 0, mi = 0, sec = 0, n = 0;
    if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 || mo < 1 || mo > 12 || d < 1 || d > 31)
        return 0;
    const char *p = s + n;
    int tz = 8 * 60;
    if (!*p) /* a date: the end of that day in Beijing time */
        return ((int64_t)score_alert_days_from_civil(y, mo, d) + 1) * 86400000LL -
               (int64_t)tz * 60000 - 1;
    if (*p != 'T' && *p != ' ')
        return 0;
    p++;
    if (sscanf(p, "%2d:%2d%n", &h, &mi, &n) != 2)
        return 0;
    p += n;
    if (*p == ':') {
        if (sscanf(p, ":%2d%n", &sec, &n) != 1)
            return 0;
        p += n;
        if (*p == '.')
            for (p++; *p >= '0' && *p <= '9'; p++)
                ;
    }
    if (*p == 'Z') {
        tz = 0;
    } else if (*p == '+' || *p == '-') {
        int th, tm;
        if (sscanf(p + 1, "%2d:%2d", &th, &tm) != 2)
            return 0;
        tz = (*p == '-' ? -1 : 1) * (th * 60 + tm);
    }
    return (int64_t)score_alert_days_from_civil(y, mo, d) * 86400000LL +
           ((int64_t)h * 3600 + mi * 60 + sec) * 1000 - (int64_t)tz * 60000;
}

/* A task node's x: {"due": T, "followup_due": T, "done": bool}. Without `done` a node is done
 * when its value is > 0 (1 = completed, 0 = open) or it carries done_at. */
static void task_from_x(const char *xjson, double val, int64_t *due, int64_t *followup, bool *done)
{
    *due = *followup = 0;
    *done = val > 0;
    json_t *x = xjson && *xjson ? json_loads(xjson, 0, NULL) : NULL;
    if (!json_is_object(x)) {
        json_decref(x);
        return;
    }
    *due = parse_time(json_object_get(x, "due"));
    *followup = parse_time(json_object_get(x, "followup_due"));
    json_t *d = json_object_get(x, "done");
    if (json_is_boolean(d))
        *done = json_is_true(d);
    else if (json_object_get(x, "done_at"))
        *done = true;
    json_decref(x);
}

static void feed_task(struct scr_alert_sch *as, const struct score_scheme *sc, const char *src,
                      const char *ref, uint64_t rev, const char *unit, const char *ind,
                      const char *period, double val, const char *xjson)
{
    long u = score_scheme_unit_find(sc, unit), n = score_scheme_node_find(sc, ind);
    if (u < 0 || n < 0 || !score_alert_watches_tasks(sc, (size_t)n))
        return;
    struct score_alert_task t = {src, ref, rev, (size_t)u, (size_t)n, period, 0, 0, false};
    task_from_x(xjson, val, &t.due_ms, &t.followup_ms, &t.done);
    if (score_alert_task(as->ev, &t) == KP_EFULL)
        KP_WARN("alert_tasks_full", "ref=%s msg=\"too many open task nodes; not tracked\"", ref);
}

static double num_or_nan(const struct kp_pg_res *r, int row, int col)
{
    return kp_pg_res_isnull(r, row, col) ? NAN : strtod(kp_pg_res_value(r, row, col), NULL);
}

static int reload(struct scr_alerts *A, struct scr_alert_sch *as, struct scr_scheme *sch)
{
    struct scr *s = A->s;
    const struct score_scheme *sc = sch->scheme;
    score_alert_destroy(&as->ev);
    as->loaded = false;
    score_alert_new(sc, &as->ev);
    score_alert_prime(as->ev, sch->engine);
    kp_counter_inc(A->m_reloads);

    const char *p1[1] = {sch->id};
    struct kp_pg_res *r = NULL;
    if (kp_pg_exec(s->pg, SQL_OPEN, 1, p1, &r))
        return KP_EDB;
    struct kp_buf orphans = {0};
    kp_pg_array_begin(&orphans);
    int n = kp_pg_res_ntuples(r), n_orphans = 0, n_open = 0;
    for (int i = 0; i < n; i++) {
        struct score_alert_transition t;
        memset(&t, 0, sizeof t);
        snprintf(t.rule, sizeof t.rule, "%s", kp_pg_res_value(r, i, 1));
        snprintf(t.kind, sizeof t.kind, "%s", kp_pg_res_value(r, i, 2));
        t.severity = score_alert_sev_parse(kp_pg_res_value(r, i, 3));
        snprintf(t.unit, sizeof t.unit, "%s", kp_pg_res_value(r, i, 4));
        snprintf(t.indicator, sizeof t.indicator, "%s", kp_pg_res_value(r, i, 5));
        snprintf(t.period, sizeof t.period, "%s", kp_pg_res_value(r, i, 6));
        snprintf(t.src, sizeof t.src, "%s", kp_pg_res_value(r, i, 7));
        snprintf(t.adapter, sizeof t.adapter, "%s", kp_pg_res_value(r, i, 8));
        t.state = !strcmp(kp_pg_res_value(r, i, 9), "firing") ? SCORE_AS_FIRING : SCORE_AS_PENDING;
        t.pending_at = strtoll(kp_pg_res_value(r, i, 10), NULL, 10);
        t.fired_at = strtoll(kp_pg_res_value(r, i, 11), NULL, 10);
        t.value = num_or_nan(r, i, 12);
        t.ref = num_or_nan(r, i, 13);
        if (score_alert_restore(as->ev, &t) == 0) {
            n_open++;
        } else {
            kp_pg_array_add(&orphans, kp_pg_res_value(r, i, 0));
            n_orphans++;
        }
    }
    kp_pg_res_free(&r);
    kp_pg_array_end(&orphans);
    if (n_orphans) {
        const char *p[1] = {kp_buf_cstr(&orphans)};
        int rc = kp_pg_exec(s->pg, SQL_ORPHANS, 1, p, NULL);
        kp_buf_fini(&orphans);
        if (rc)
            return KP_EDB;
        KP_WARN("alert_orphans",
                "scheme=%s resolved=%d msg=\"open alerts whose rule, unit or "
                "indicator left the scheme\"",
                sch->id, n_orphans);
    }
    kp_buf_fini(&orphans);

    if (as->tasks) {
        struct kp_buf inds = {0};
        kp_pg_array_begin(&inds);
        for (size_t k = 0; k < score_scheme_n_nodes(sc); k++)
            if (score_alert_watches_tasks(sc, k))
                kp_pg_array_add(&inds, score_scheme_node_code(sc, k));
        kp_pg_array_end(&inds);
        const char *p[2] = {sch->id, kp_buf_cstr(&inds)};
        int rc = kp_pg_exec(s->pg, SQL_TASKS, 2, p, &r);
        kp_buf_fini(&inds);
        if (rc)
            return KP_EDB;
        for (int i = 0; i < kp_pg_res_ntuples(r); i++)
            feed_task(as, sc, kp_pg_res_value(r, i, 0), kp_pg_res_value(r, i, 1),
                      strtoull(kp_pg_res_value(r, i, 2), NULL, 10), kp_pg_res_value(r, i, 3),
                      kp_pg_res_value(r, i, 4), kp_pg_res_value(r, i, 5),
                      strtod(kp_pg_res_value(r, i, 6), NULL), kp_pg_res_value(r, i, 7));
        kp_pg_res_free(&r);
    }
    if (score_alert_n_stale_rules(sc)) {
        if (kp_pg_exec(s->pg, SQL_SOURCES, 1, p1, &r))
            return KP_EDB;
        int64_t offset = scr__alert_now() - kp_now_ms(); /* the test clock, if any */
        for (int i = 0; i < kp_pg_res_ntuples(r); i++)
            score_alert_source(as->ev, kp_pg_res_value(r, i, 0), kp_pg_res_value(r, i, 1),
                               strtoll(kp_pg_res_value(r, i, 2), NULL, 10) + offset);
        kp_pg_res_free(&r);
    }
    as->engine = sch->engine;
    as->known_max_id = sch->known_max_id;
    as->loaded = true;
    as->in_txn = false;
    KP_INFO("alerts_loaded", "scheme=%s rules=%zu open=%d", sch->id, score_alert_n_rules(sc),
            n_open);
    return 0;
}

static bool needs_reload(const struct scr_alert_sch *as, const struct scr_scheme *sch)
{
    return !as->loaded || as->in_txn || !as->ev || as->engine != sch->engine ||
           as->known_max_id != sch->known_max_id;
}

/* ---- batch path --------------------------------------------------------------------------- */

int scr__alert_prepare(struct scr *s, struct scr_scheme *sch)
{
    struct scr_alerts *A = s->alerts;
    if (!A)
        return 0;
    struct scr_alert_sch *as = &A->sch[sch_index(s, sch)];
    drop_queue(A);
    as->wrote = false;
    if (!as->has_rules || !sch->engine || !needs_reload(as, sch))
        return 0;
    int rc = reload(A, as, sch);
    if (rc)
        as->loaded = false;
    return rc;
}

struct feed_ctx {
    struct scr_alerts *A;
    struct scr_alert_sch *as;
    struct scr_scheme *sch;
    int64_t now;
};

static void feed_cell(const struct score_cell_change *c, void *arg)
{
    struct feed_ctx *f = arg;
    score_alert_on_cell(f->as->ev, f->sch->engine, c, f->now);
}

static void feed_total(const struct score_total_change *t, void *arg)
{
    struct feed_ctx *f = arg;
    if (f->as->has_rules && f->as->ev)
        score_alert_on_total(f->as->ev, f->sch->engine, t, f->now);
    if (f->A->pub) {
        const struct score_scheme *sc = f->sch->scheme;
        json_t *j = json_object();
        json_object_set_new(j, "scheme", json_string(f->sch->id));
        json_object_set_new(j, "period", json_string(t->period));
        json_object_set_new(j, "unit", json_string(score_scheme_unit_code(sc, t->unit)));
        json_object_set_new(j, "unit_name", json_string(score_scheme_unit_name(sc, t->unit)));
        if (t->rank > 0) {
            json_object_set_new(j, "total", json_real(t->total));
            json_object_set_new(j, "coverage", json_real(t->coverage));
            json_object_set_new(j, "rank", json_integer(t->rank));
            json_object_set_new(j, "grade", json_string(t->grade ? t->grade : ""));
            json_object_set_new(j, "vetoed", json_boolean(t->vetoed));
        } else {
            json_object_set_new(j, "deleted", json_true());
        }
        queue_msg(f->A, "score", f->sch->id, j);
    }
}

int scr__alert_batch(struct scr *s, struct scr_scheme *sch, const struct kp_batch *const *bs,
                     size_t nb)
{
    struct scr_alerts *A = s->alerts;
    if (!A || nb == 0)
        return 0;
    struct scr_alert_sch *as = &A->sch[sch_index(s, sch)];
    bool eval = as->has_rules && as->ev && as->loaded;
    if (!eval && !A->pub)
        return 0;
    struct feed_ctx f = {A, as, sch, scr__alert_now()};
    if (eval)
        as->in_txn = true; /* until scr__alert_committed: a rollback makes it reload */
    score_engine_changes(sch->engine, eval ? feed_cell : NULL, feed_total, &f);
    if (!eval)
        return 0;
    struct kp_buf xj = {0};
    for (size_t k = 0; k < nb; k++) {
        const struct kp_batch *b = bs[k];
        for (size_t i = 0; as->tasks && i < b->n_obs; i++) {
            const struct kp_obs *o = &b->obs[i];
            if (o->reason != KP_R_OK)
                continue;
            long n = score_scheme_node_find(sch->scheme, o->i);
            if (n < 0 || !score_alert_watches_tasks(sch->scheme, (size_t)n))
                continue;
            kp_buf_reset(&xj);
            const char *x = "";
            if (o->x && o->x_len && kp_msgpack_to_json(o->x, o->x_len, &xj) == 0)
                x = kp_buf_cstr(&xj);
            feed_task(as, sch->scheme, b->src, o->ref, o->rev, o->u, o->i, o->p, o->val, x);
        }
        score_alert_source(as->ev, b->aid, b->src, f.now);
    }
    kp_buf_fini(&xj);
    const struct score_alert_transition *t;
    size_t n = score_alert_eval(as->ev, sch->engine, f.now, false, &t);
    if (n == 0)
        return 0;
    if (write_transitions(A, sch->id, t, n))
        return KP_EDB;
    as->wrote = true;
    return 0;
}

void scr__alert_committed(struct scr *s, struct scr_scheme *sch)
{
    struct scr_alerts *A = s->alerts;
    if (!A)
        return;
    struct scr_alert_sch *as = &A->sch[sch_index(s, sch)];
    as->in_txn = false;
    as->known_max_id = sch->known_max_id;
    publish_queue(A);
    if (as->wrote && A->am)
        scr__am_wake(A->am);
    as->wrote = false;
}

/* ---- the timer ------------------------------------------------------------------------------ */

static void tick_scheme(struct scr_alerts *A, size_t i)
{
    struct scr *s = A->s;
    struct scr_scheme *sch = &s->schemes[i];
    struct scr_alert_sch *as = &A->sch[i];
    if (!as->has_rules)
        return;
    if (s->closing || !s->db_ready || !s->pg || !sch->active || !sch->engine) {
        as->loaded = false; /* another scorer may write meanwhile: reload when active again */
        return;
    }
    char ctx[128];
    snprintf(ctx, sizeof ctx, "scheme=%s", sch->id);
    drop_queue(A);
    if (needs_reload(as, sch) && reload(A, as, sch)) {
        as->loaded = false;
        scr__db_failed(s, "alert_reload", ctx);
        return;
    }
    int64_t now = scr__alert_now();
    const struct score_alert_transition *t;
    size_t n = score_alert_eval(as->ev, sch->engine, now, true, &t);
    if (n == 0)
        return;
    as->in_txn = true;
    if (kp_pg_exec(s->pg, "BEGIN", 0, NULL, NULL)) {
        scr__db_failed(s, "alert_begin", ctx);
        drop_queue(A);
        return;
    }
    if (write_transitions(A, sch->id, t, n)) {
        scr__db_failed(s, "alert_write", ctx);
        drop_queue(A);
        return;
    }
    if (kp_pg_exec(s->pg, "COMMIT", 0, NULL, NULL)) {
        scr__db_failed(s, "alert_commit", ctx);
        drop_queue(A);
        return;
    }
    as->in_txn = false;
    publish_queue(A);
    if (A->am)
        scr__am_wake(A->am);
}

static void on_tick(uv_timer_t *t)
{
    struct scr_alerts *A = t->data;
    if (A->closing)
        return;
    for (size_t i = 0; i < A->n; i++)
        tick_scheme(A, i);
}

/* ---- start / stop --------------------------------------------------------------------------- */

int scr__alert_start(struct scr *s)
{
    const struct scr_config *cfg = s->cfg;
    struct scr_alerts *A = kp_xcalloc(1, sizeof *A);
    s->alerts = A;
    A->s = s;
    A->n = s->n_schemes;
    A->sch = kp_xcalloc(A->n + 1, sizeof *A->sch);
    size_t n_rules = 0;
    for (size_t i = 0; i < A->n; i++) {
        const struct score_scheme *sc = s->schemes[i].scheme;
        A->sch[i].has_rules = score_alert_n_rules(sc) > 0;
        n_rules += score_alert_n_rules(sc);
        for (size_t k = 0; k < score_scheme_n_nodes(sc); k++)
            A->sch[i].tasks = A->sch[i].tasks || score_alert_watches_tasks(sc, k);
    }
    static const char help[] = "Alert transitions written to the alert table, by new state";
    static const char *const states[4] = {"inactive", "pending", "firing", "resolved"};
    for (int k = 0; k < 4; k++) {
        char labels[48];
        snprintf(labels, sizeof labels, "state=\"%s\"", states[k]);
        A->m_transitions[k] =
            kp_metrics_counter(s->metrics, "kaoping_scorer_alert_transitions_total", help, labels);
    }
    A->m_reloads = kp_metrics_counter(s->metrics, "kaoping_scorer_alert_reloads_total",
                                      "Alert evaluators rebuilt from the database", NULL);
    uv_timer_init(s->loop, &A->timer);
    A->timer.data = A;
    A->timer_init = true;
    uint64_t tick = cfg->alerts_tick_ms > 0 ? (uint64_t)cfg->alerts_tick_ms : 1000;
    uv_timer_start(&A->timer, on_tick, tick, tick);
    int rc;
    if (cfg->alerts_pub && cfg->alerts_pub[0]) {
        struct kp_zsock_opts o = {.sndhwm = PUB_SNDHWM, .linger_ms = 0};
        if ((rc = kp_zsock_open(s->loop, KP_ZSOCK_PUB, &o, &A->pub)) != 0 ||
            (rc = kp_zsock_bind(A->pub, cfg->alerts_pub)) != 0) {
            KP_ERROR("alerts_pub_failed", "endpoint=%s err=%s", cfg->alerts_pub, kp_err_name(rc));
            return rc;
        }
    }
    if (cfg->alerts_am_url && cfg->alerts_am_url[0]) {
        const char **ids = kp_xcalloc(A->n + 1, sizeof *ids);
        for (size_t i = 0; i < A->n; i++)
            ids[i] = s->schemes[i].id;
        rc = scr__am_start(cfg, s->dsn, ids, A->n, s->metrics, &A->am);
        free(ids);
        if (rc) {
            KP_ERROR("alertmanager_url_invalid", "url=%s err=%s", cfg->alerts_am_url,
                     kp_err_name(rc));
            return rc;
        }
    }
    KP_INFO("alerts_started", "rules=%zu pub=%s alertmanager=%s tick_ms=%" PRIu64, n_rules,
            A->pub ? cfg->alerts_pub : "off", A->am ? cfg->alerts_am_url : "off", tick);
    return 0;
}

static void part_closed(void *arg)
{
    struct scr_alerts *A = arg;
    if (--A->closing > 0)
        return;
    for (size_t i = 0; i < A->n; i++)
        score_alert_destroy(&A->sch[i].ev);
    free(A->sch);
    drop_queue(A);
    free(A->q);
    for (int k = 0; k < AA__COUNT; k++)
        kp_buf_fini(&A->arr[k]);
    kp_buf_fini(&A->labels);
    void (*done)(void *) = A->done;
    void *done_arg = A->done_arg;
    free(A);
    if (done)
        done(done_arg);
}

static void on_timer_closed(uv_handle_t *h)
{
    part_closed(h->data);
}

void scr__alert_stop(struct scr *s, void (*done)(void *), void *arg)
{
    struct scr_alerts *A = s->alerts;
    if (!A) {
        if (done)
            done(arg);
        return;
    }
    s->alerts = NULL;
    scr__am_stop(&A->am);
    A->done = done;
    A->done_arg = arg;
    A->closing = 1;
    if (A->timer_init) {
        uv_timer_stop(&A->timer);
        A->closing++;
        uv_close((uv_handle_t *)&A->timer, on_timer_closed);
    }
    if (A->pub) {
        A->closing++;
        kp_zsock_close(&A->pub, part_closed, A);
    }
    part_closed(A);
}
