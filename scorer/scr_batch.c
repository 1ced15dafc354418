/*
 * scr_batch: one batch from decode to reply, the heart of the scorer. The batch is decoded
 * and checked (batch-level defects → nack; observation-level ones → rej entries), then ONE
 * PostgreSQL transaction records the batch row (the dedup key of ARCHITECTURE.md guarantee 2),
 * the accepted observations with their provenance (guarantee 6), the rejections (guarantee 4)
 * and the score rows the engine changed, all as a fixed number of bulk statements (a COPY for
 * the observations, unnest()ed arrays for the rest). The ack is written only after COMMIT
 * (guarantee 1); a retransmit finds its batch row and is answered dup:true with the original
 * counts. Any database failure rolls
 * back both the transaction and the engine and answers nack scorer_unavailable, retry:true.
 * Batches that arrive together share the transaction (group commit, scr_process_group): each
 * still commits whole or not at all, the observations of all of them go in by one COPY, and the
 * score rows they share are written once. Each batch's rows go into the COPY as soon as they are
 * checked, so that the server stores them while the scorer checks the next batch; the batch rows
 * and rejections follow the COPY, all in one round trip. A retransmit of a committed batch shows
 * there (or in the COPY, as a stored record): the group then runs again without COPY, each batch
 * row first. After that, the score statements, the highest id and COMMIT are sent together (a
 * libpq pipeline, kp_pg_pipeline_begin) and their answers read after: one round trip instead of
 * one each; a statement that fails makes the server skip the rest, COMMIT included.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kp_acl.h"
#include "kp_err.h"
#include "kp_log.h"
#include "kp_metrics.h"
#include "kp_msg.h"
#include "kp_pg.h"
#include "kp_time.h"
#include "score_alert.h"
#include "score_engine.h"
#include "scr_alert.h"
#include "scr_internal.h"

/* timestamptz holds years 1..9999 comfortably; `at` outside is refused, not stored (an
 * out-of-range timestamp would fail the whole transaction on every retransmit). */
#define AT_MIN_MS (-62135596800000LL) /* 0001-01-01T00:00:00Z */
#define AT_MAX_MS 253402300799999LL   /* 9999-12-31T23:59:59.999Z */

/* The batch row; RETURNING tells a first delivery (one row) from a retransmit (none). rej is
 * built from the same arrays as the rejection rows. */
static const char SQL_BATCH[] =
    "INSERT INTO batch (adapter, seq, scheme, src, n_obs, stored, rej) "
    "SELECT $1, $2::numeric, $3, $4, $5::int, $6::int, "
    "coalesce((SELECT jsonb_agg(jsonb_build_object('n', r_n, 'code', r_code, 'msg', r_msg) "
    "ORDER BY r_n) FROM unnest($7::int[], $8::text[], $9::text[]) AS r(r_n, r_code, r_msg)), "
    "'[]'::jsonb) "
    "ON CONFLICT (adapter, seq) DO NOTHING RETURNING 1";

/* The original answer to a batch committed before. */
static const char SQL_DUP[] =
    "SELECT b.stored, r.n, r.code, r.msg FROM batch b "
    "LEFT JOIN LATERAL jsonb_to_recordset(b.rej) AS r(n int, code text, msg text) ON true "
    "WHERE b.adapter = $1 AND b.seq = $2::numeric ORDER BY r.n";

/* The observations of a batch go in by COPY, as fast as PostgreSQL takes rows: straight into
 * the table when none of them is stored yet (the usual case). Should one be (overlap windows, a
 * re-pulled source), the COPY fails, the group's transaction is rolled back and the group runs
 * again with every batch stored by SQL_OBS_MERGE, whose ON CONFLICT (scheme, src, ref, rev) DO
 * NOTHING stores such a record once. Binary COPY data:
 * nothing to print here, nothing to parse there; its columns in the order check_and_collect
 * writes them. */
#define OBS_NCOLS 13
static const char SQL_OBS_COPY[] =
    "COPY observation (scheme, src, ref, rev, unit, indicator, period, value, w, x, "
    "observed_at, adapter, seq) FROM STDIN (FORMAT binary)";
/* The highest id this session drew: the last row the COPY stored. */
static const char SQL_OBS_MAXID[] = "SELECT currval(pg_get_serial_sequence('observation', 'id'))";
/* How many rows were new and the highest id stored (-1: none). */
static const char SQL_OBS_MERGE[] =
    "WITH ins AS (INSERT INTO observation (scheme, src, ref, rev, unit, indicator, period, value, "
    "w, x, observed_at, adapter, seq) "
    "SELECT $1, $2, o_ref, o_rev, o_unit, o_ind, o_period, o_val, o_w, o_x::jsonb, "
    "timestamptz 'epoch' + o_at::float8 * interval '1 millisecond', $3, $4::numeric "
    "FROM unnest($5::text[], $6::numeric[], $7::text[], $8::text[], $9::text[], $10::float8[], "
    "$11::float8[], $12::text[], $13::int8[]) "
    "AS t(o_ref, o_rev, o_unit, o_ind, o_period, o_val, o_w, o_x, o_at) "
    "ON CONFLICT (scheme, src, ref, rev) DO NOTHING RETURNING id) "
    "SELECT count(*), coalesce(max(id), -1) FROM ins";

/* The group's COPY data is given back after a group that grew it beyond this (it was mapped:
 * scr_main.c's mmap threshold). */
#define COPY_KEEP ((size_t)256 * 1024)

/* After a group's COPY met a stored record or one of its batches was a retransmit, the
 * scheme's groups go without COPY (store_merged) until this many batches have gone so (a failed
 * COPY costs as much as one that succeeds, and a group run again twice as much). */
#define COPY_SKIP_AFTER_CONFLICT 16

static const char SQL_REJ[] =
    "INSERT INTO rejection (scheme, src, adapter, seq, n, ref, code, msg) "
    "SELECT $1, $2, $3, $4::numeric, r_n, r_ref, r_code, r_msg "
    "FROM unnest($5::int[], $6::text[], $7::text[], $8::text[]) AS t(r_n, r_ref, r_code, r_msg) "
    "ON CONFLICT (adapter, seq, n) DO NOTHING";

/* ---- replies -------------------------------------------------------------------------- */

/* Human messages end up in a text column and a msgpack str: they must be UTF-8. A message cut
 * by snprintf in the middle of a character (or carrying foreign bytes) is repaired in place:
 * a truncated tail is dropped, any other invalid byte becomes '?'. */
static void utf8_repair(char *m)
{
    size_t n = strlen(m);
    if (kp_utf8_valid(m, n))
        return;
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)m[i];
        size_t len = c < 0x80             ? 1
                     : (c & 0xe0) == 0xc0 ? 2
                     : (c & 0xf0) == 0xe0 ? 3
                     : (c & 0xf8) == 0xf0 ? 4
                                          : 0;
        bool ok = len > 0 && i + len <= n;
        for (size_t k = 1; ok && k < len; k++)
            ok = ((unsigned char)m[i + k] & 0xc0) == 0x80;
        if (ok && kp_utf8_valid(m + i, len)) {
            i += len;
        } else if (len > 1 && i + len > n) {
            m[i] = 0; /* a character cut at the end */
            n = i;
        } else {
            m[i++] = '?';
        }
    }
    if (!kp_utf8_valid(m, strlen(m)))
        for (char *p = m; *p; p++)
            if ((unsigned char)*p >= 0x80)
                *p = '?';
}

static void reply_nack(struct kp_buf *reply, bool has_seq, uint64_t seq, enum kp_reason code,
                       const char *msg)
{
    struct kp_nack n = {
        .has_seq = has_seq, .seq = seq, .code = code, .retry = kp_reason_retry(code)};
    snprintf(n.msg, sizeof n.msg, "%s", msg && *msg ? msg : kp_reason_str(code));
    utf8_repair(n.msg);
    kp_buf_reset(reply);
    if (kp_nack_encode(reply, &n) != 0) {
        snprintf(n.msg, sizeof n.msg, "%s", kp_reason_str(code));
        kp_buf_reset(reply);
        int rc = kp_nack_encode(reply, &n);
        KP_ASSERT(rc == 0); /* every field is now ours */
    }
}

static enum scr_outcome nacked(struct scr *s, struct kp_buf *reply, bool has_seq, uint64_t seq,
                               enum kp_reason code, const char *msg, const char *aid,
                               const char *scheme)
{
    char q[KP_MSG_TEXT_MAX + 16], seqtxt[24] = "nil";
    if (has_seq)
        snprintf(seqtxt, sizeof seqtxt, "%" PRIu64, seq);
    reply_nack(reply, has_seq, seq, code, msg);
    s->stats.nacked++;
    kp_counter_inc(s->m_nacked);
    if (kp_reason_retry(code))
        KP_DEBUG("batch_nacked", "adapter=%s scheme=%s seq=%s code=%s retry=true", aid, scheme,
                 seqtxt, kp_reason_str(code));
    else
        KP_INFO("batch_refused", "adapter=%s scheme=%s seq=%s code=%s msg=%s", aid, scheme, seqtxt,
                kp_reason_str(code), kp_log_q(q, sizeof q, msg));
    return SCR_NACKED;
}

/* ---- checks --------------------------------------------------------------------------- */

static struct scr_scheme *find_scheme(struct scr *s, const char *id)
{
    for (size_t i = 0; i < s->n_schemes; i++)
        if (!strcmp(s->schemes[i].id, id))
            return &s->schemes[i];
    return NULL;
}

static void refuse(struct kp_obs *o, enum kp_reason r, const char *msg)
{
    o->reason = r;
    snprintf(o->msg, sizeof o->msg, "%s", msg && *msg ? msg : kp_reason_str(r));
    utf8_repair(o->msg);
}

static struct score_obs to_score_obs(const struct kp_batch *b, const struct kp_obs *o)
{
    struct score_obs so = {
        .src = b->src,
        .ref = o->ref,
        .rev = o->rev,
        .unit = o->u,
        .indicator = o->i,
        .period = o->p,
        .value = o->val,
        .w = o->w,
        .at = o->at,
    };
    return so;
}

/* Decides the final reason of every observation and fills the observation and rejection
 * arrays. Returns the number accepted. */
static size_t check_and_collect(struct scr *s, struct scr_scheme *sch, struct kp_batch *b)
{
    struct kp_buf *a = s->a, *c = &s->copy;
    for (int k = SCR_A_RN; k <= SCR_A_RMSG; k++)
        kp_pg_array_begin(&a[k]);
    if (s->cap_so < b->n_obs) {
        s->cap_so = b->n_obs;
        s->so = kp_xrealloc(s->so, s->cap_so * sizeof *s->so);
        s->chk = kp_xrealloc(s->chk, s->cap_so * sizeof *s->chk);
        s->so_reason = kp_xrealloc(s->so_reason, s->cap_so * sizeof *s->so_reason);
    }
    s->n_so = 0;
    size_t accepted = 0;
    for (size_t i = 0; i < b->n_obs; i++) {
        struct kp_obs *o = &b->obs[i];
        struct score_obs so;
        struct score_checked chk;
        if (o->reason == KP_R_OK) {
            so = to_score_obs(b, o);
            char msg[KP_MSG_TEXT_MAX] = "";
            enum kp_reason r = score_engine_check_ex(sch->engine, &so, msg, sizeof msg, &chk);
            if (r == KP_R_OK) /* the scheme's hard data_quality checks (issue 7) */
                r = score_alert_check(sch->scheme, sch->engine, &so, msg, sizeof msg);
            if (r != KP_R_OK)
                refuse(o, r, msg);
        }
        if (o->reason == KP_R_OK && (o->at < AT_MIN_MS || o->at > AT_MAX_MS))
            refuse(o, KP_R_bad_field, "at: outside the years 1-9999");
        const char *xjson = NULL;
        if (o->reason == KP_R_OK && o->x && o->x_len) {
            kp_buf_reset(&s->json);
            if (kp_msgpack_to_json(o->x, o->x_len, &s->json) != 0)
                refuse(o, KP_R_bad_field, "x: cannot be stored as JSON");
            else
                xjson = kp_buf_cstr(&s->json);
        }
        if (o->reason == KP_R_OK) { /* a row of SQL_OBS_COPY's columns */
            kp_pg_bcopy_row(c, OBS_NCOLS);
            kp_pg_bcopy_text(c, b->scheme);
            kp_pg_bcopy_text(c, b->src);
            kp_pg_bcopy_text(c, o->ref);
            kp_pg_bcopy_numeric_u64(c, (unsigned long long)o->rev);
            kp_pg_bcopy_text(c, o->u);
            kp_pg_bcopy_text(c, o->i);
            kp_pg_bcopy_text(c, o->p);
            kp_pg_bcopy_f8(c, o->val);
            kp_pg_bcopy_f8(c, o->w);
            kp_pg_bcopy_jsonb(c, xjson);
            kp_pg_bcopy_ts_ms(c, (long long)o->at);
            kp_pg_bcopy_text(c, b->aid);
            kp_pg_bcopy_numeric_u64(c, (unsigned long long)b->seq);
            s->so[s->n_so] = so;
            s->chk[s->n_so] = chk;
            s->n_so++;
            accepted++;
        } else {
            if (!o->msg[0])
                refuse(o, o->reason, NULL);
            utf8_repair(o->msg);
            kp_pg_array_add_i64(&a[SCR_A_RN], (long long)i);
            kp_pg_array_add(&a[SCR_A_RREF], o->ref[0] ? o->ref : NULL);
            kp_pg_array_add(&a[SCR_A_RCODE], kp_reason_str(o->reason));
            kp_pg_array_add(&a[SCR_A_RMSG], o->msg);
        }
    }
    for (int k = SCR_A_RN; k <= SCR_A_RMSG; k++)
        kp_pg_array_end(&a[k]);
    return accepted;
}

/* ---- the transaction ------------------------------------------------------------------ */

/* Answers a retransmit from its batch row. Returns 0 or KP_EDB. */
static int reply_dup(struct scr *s, const char *aid, const char *seqtxt, uint64_t seq,
                     struct kp_buf *reply, uint64_t *stored, size_t *n_rej)
{
    const char *p[2] = {aid, seqtxt};
    struct kp_pg_res *r = NULL;
    if (kp_pg_exec(s->pg, SQL_DUP, 2, p, &r))
        return KP_EDB;
    int n = kp_pg_res_ntuples(r);
    if (n == 0) { /* the conflicting row vanished: cannot happen, batch rows are kept */
        kp_pg_res_free(&r);
        return KP_EDB;
    }
    struct kp_ack ack = {.seq = seq, .dup = true};
    ack.stored = strtoull(kp_pg_res_value(r, 0, 0), NULL, 10);
    struct kp_rej *rej = kp_xcalloc((size_t)n, sizeof *rej);
    for (int i = 0; i < n; i++) {
        if (kp_pg_res_isnull(r, i, 1))
            continue; /* the LEFT JOIN row of a batch without rejections */
        const char *code = kp_pg_res_value(r, i, 2);
        enum kp_reason rc = kp_reason_parse(code, strlen(code));
        struct kp_rej *e = &rej[ack.n_rej++];
        e->n = (uint32_t)strtoul(kp_pg_res_value(r, i, 1), NULL, 10);
        e->code = rc == KP_R__COUNT ? KP_R_bad_field : rc;
        e->msg = kp_pg_res_value(r, i, 3);
    }
    ack.rej = rej;
    kp_buf_reset(reply);
    int rc = kp_ack_encode(reply, &ack);
    *stored = ack.stored;
    *n_rej = ack.n_rej;
    free(rej);
    kp_pg_res_free(&r);
    return rc ? KP_EDB : 0;
}

static void reply_ack(struct kp_buf *reply, const struct kp_batch *b, size_t accepted)
{
    size_t n_rej = b->n_obs - accepted;
    struct kp_rej *rej = n_rej ? kp_xcalloc(n_rej, sizeof *rej) : NULL;
    size_t k = 0;
    for (size_t i = 0; i < b->n_obs; i++) {
        const struct kp_obs *o = &b->obs[i];
        if (o->reason == KP_R_OK)
            continue;
        rej[k].n = (uint32_t)i;
        rej[k].code = o->reason;
        rej[k].msg = o->msg;
        k++;
    }
    struct kp_ack ack = {.seq = b->seq, .stored = accepted, .dup = false, .n_rej = k, .rej = rej};
    kp_buf_reset(reply);
    if (kp_ack_encode(reply, &ack) != 0) {
        /* Messages are repaired UTF-8 of bounded length; should the codec still refuse one,
         * the reason codes alone keep the ack truthful. */
        for (size_t j = 0; j < k; j++)
            rej[j].msg = kp_reason_str(rej[j].code);
        kp_buf_reset(reply);
        int rc = kp_ack_encode(reply, &ack);
        KP_ASSERT(rc == 0);
    }
    free(rej);
}

/* One batch of a group on its way through scr_process_group. */
struct slot {
    struct scr_item *it;
    struct kp_batch *b;     /* decoded; NULL once answered without the database */
    struct scr_scheme *sch; /* the scheme serving it */
    size_t accepted;        /* observations stored */
    long long inserted;     /* of which new rows (the others: a (src, ref, rev) seen before) */
    bool dup;               /* a retransmit (of a committed batch, or of one of the group) */
    /* A streamed group (store_one): the batch's rejection arrays (SCR_A_RN to SCR_A_RMSG) for
     * its batch row, written after the COPY; NULL when it has none. Freed by store_group. */
    char *rej[4];
};

/* Database failure in the middle of a group: roll back database and engine, log once with the
 * first batch's context, nack every batch of the group for retry (a dup answer read inside the
 * transaction may name a batch of this very group, which is not committed now). `at_commit`:
 * COMMIT itself failed, so when the connection is lost its outcome is unknown and the engines
 * are rebuilt after reconnecting. */
static void db_failure(struct scr *s, struct scr_scheme *sch, bool engine_open, bool at_commit,
                       const char *step, struct slot *g, size_t n)
{
    char ctx[256];
    snprintf(ctx, sizeof ctx, "adapter=%s scheme=%s seq=%" PRIu64 " batches=%zu", g[0].b->aid,
             g[0].b->scheme, g[0].b->seq, n);
    if (engine_open) {
        score_engine_rollback(sch->engine);
        scr__cells_rollback(sch->cells);
        scr__totals_end(sch->totals, false, 0);
    }
    scr__db_failed(s, step, ctx);
    if (at_commit && kp_pg_conn_lost(s->pg)) {
        s->need_replay = true;
        KP_WARN("commit_uncertain",
                "%s msg=\"connection lost during COMMIT; engines will be "
                "rebuilt from the database\"",
                ctx);
    }
    for (size_t k = 0; k < n; k++) {
        reply_nack(g[k].it->reply, true, g[k].b->seq, KP_R_scorer_unavailable,
                   "database unavailable; retry later");
        g[k].it->out = SCR_NACKED;
        s->stats.nacked++;
        kp_counter_inc(s->m_nacked);
    }
}

/* The accepted observations of b as the array parameters of SQL_OBS_MERGE. */
static void obs_arrays(struct scr *s, const struct kp_batch *b)
{
    struct kp_buf *a = s->a;
    for (int k = SCR_A_OREF; k <= SCR_A_OAT; k++)
        kp_pg_array_begin(&a[k]);
    for (size_t i = 0; i < b->n_obs; i++) {
        const struct kp_obs *o = &b->obs[i];
        if (o->reason != KP_R_OK)
            continue;
        const char *xjson = NULL;
        if (o->x && o->x_len) { /* converted once already by check_and_collect */
            kp_buf_reset(&s->json);
            if (kp_msgpack_to_json(o->x, o->x_len, &s->json) == 0)
                xjson = kp_buf_cstr(&s->json);
        }
        kp_pg_array_add(&a[SCR_A_OREF], o->ref);
        kp_pg_array_add_u64(&a[SCR_A_OREV], (unsigned long long)o->rev);
        kp_pg_array_add(&a[SCR_A_OUNIT], o->u);
        kp_pg_array_add(&a[SCR_A_OIND], o->i);
        kp_pg_array_add(&a[SCR_A_OPERIOD], o->p);
        kp_pg_array_add_double(&a[SCR_A_OVAL], o->val);
        kp_pg_array_add_double(&a[SCR_A_OW], o->w);
        kp_pg_array_add(&a[SCR_A_OX], xjson);
        kp_pg_array_add_i64(&a[SCR_A_OAT], (long long)o->at);
    }
    for (int k = SCR_A_OREF; k <= SCR_A_OAT; k++)
        kp_pg_array_end(&a[k]);
}

/* The group's step when its COPY met a record stored already (23505), or a batch row was there
 * already (a retransmit): the group's transaction is lost, and store_group runs the group again
 * without COPY. */
static const char STEP_CONFLICT[] = "observation";

/* ---- the group's COPY ----------------------------------------------------------------- */

/* Sends the batch's rows (s->copy, which store_one began with the binary format's header when
 * no COPY was open) into the group's COPY, opened first when none is: the server stores them
 * while the scorer checks and applies the next batch. Returns 0 or KP_EDB (a COPY left open is
 * ended by store_group_run). */
static int copy_put(struct scr *s)
{
    if (!kp_pg_copy_is_open(s->pg) && kp_pg_copy_open(s->pg, SQL_OBS_COPY))
        return KP_EDB;
    return kp_pg_copy_put(s->pg, s->copy.data, s->copy.len);
}

/* Ends the open COPY: its trailer (in s->copy, whose rows are sent), then the end. Returns 0
 * or KP_EDB. */
static int copy_end(struct scr *s)
{
    kp_buf_reset(&s->copy);
    kp_pg_bcopy_end(&s->copy);
    (void)kp_pg_copy_put(s->pg, s->copy.data, s->copy.len); /* a failure ends it with an error */
    return kp_pg_copy_close(s->pg);
}

/* The ended COPY's result (sent: copy_end's): NULL, STEP_CONFLICT when a record is stored
 * already (23505), else "observation". */
static const char *copy_wait(struct scr *s, int sent)
{
    if (sent == 0 && kp_pg_wait(s->pg, NULL) == 0)
        return NULL;
    return strcmp(kp_pg_sqlstate(s->pg), "23505") == 0 ? STEP_CONFLICT : "observation";
}

int scr__copy_pause(struct scr *s)
{
    if (!kp_pg_copy_is_open(s->pg))
        return 0;
    s->copy_step = copy_wait(s, copy_end(s));
    return s->copy_step ? KP_EDB : 0;
}

/* ---- a batch -------------------------------------------------------------------------- */

/* A retransmit, answered with the original counts from its batch row (one committed before,
 * or one of this group's, written already): nothing of it applied. Returns NULL or "dup". */
static const char *answer_dup(struct scr *s, struct slot *sl)
{
    const struct kp_batch *b = sl->b;
    char seqtxt[24];
    snprintf(seqtxt, sizeof seqtxt, "%" PRIu64, b->seq);
    uint64_t orig_stored = 0;
    size_t orig_rej = 0;
    if (reply_dup(s, b->aid, seqtxt, b->seq, sl->it->reply, &orig_stored, &orig_rej))
        return "dup";
    sl->dup = true;
    KP_INFO("batch_dup",
            "adapter=%s scheme=%s seq=%" PRIu64 " stored=%" PRIu64 " rejected=%zu dup=true", b->aid,
            b->scheme, b->seq, orig_stored, orig_rej);
    return NULL;
}

/* True when g[k] repeats (adapter and seq) a batch before it in the group. */
static bool repeated_in_group(const struct slot *g, size_t k)
{
    for (size_t j = 0; j < k; j++)
        if (!g[j].dup && g[j].b->seq == g[k].b->seq && strcmp(g[j].b->aid, g[k].b->aid) == 0)
            return true;
    return false;
}

/* A group without COPY: the batch's row first (a retransmit is answered from the one stored,
 * sl->dup), then its observations by SQL_OBS_MERGE, which stores a record seen before once,
 * and its rejections. Returns NULL or the failed step. */
static const char *store_merged(struct scr *s, struct slot *sl, long long *max_id)
{
    struct kp_batch *b = sl->b;
    struct kp_buf *a = s->a;
    char seqtxt[24], n_obs[24], stored[24];
    snprintf(seqtxt, sizeof seqtxt, "%" PRIu64, b->seq);
    snprintf(n_obs, sizeof n_obs, "%zu", b->n_obs);
    snprintf(stored, sizeof stored, "%zu", sl->accepted);
    struct kp_pg_res *r = NULL;
    const char *p_batch[9] = {b->aid,
                              seqtxt,
                              b->scheme,
                              b->src,
                              n_obs,
                              stored,
                              kp_buf_cstr(&a[SCR_A_RN]),
                              kp_buf_cstr(&a[SCR_A_RCODE]),
                              kp_buf_cstr(&a[SCR_A_RMSG])};
    if (kp_pg_exec_prepared(s->pg, SQL_BATCH, 9, p_batch, NULL, NULL, &r))
        return "batch";
    bool first = kp_pg_res_ntuples(r) > 0;
    kp_pg_res_free(&r);
    if (!first) /* a retransmit of a committed batch (ARCHITECTURE.md guarantee 2), or of one
                 * earlier in this group */
        return answer_dup(s, sl);
    if (sl->accepted) {
        obs_arrays(s, b);
        const char *p[13] = {b->scheme,
                             b->src,
                             b->aid,
                             seqtxt,
                             kp_buf_cstr(&a[SCR_A_OREF]),
                             kp_buf_cstr(&a[SCR_A_OREV]),
                             kp_buf_cstr(&a[SCR_A_OUNIT]),
                             kp_buf_cstr(&a[SCR_A_OIND]),
                             kp_buf_cstr(&a[SCR_A_OPERIOD]),
                             kp_buf_cstr(&a[SCR_A_OVAL]),
                             kp_buf_cstr(&a[SCR_A_OW]),
                             kp_buf_cstr(&a[SCR_A_OX]),
                             kp_buf_cstr(&a[SCR_A_OAT])};
        if (kp_pg_exec(s->pg, SQL_OBS_MERGE, 13, p, &r))
            return "observation";
        if (kp_pg_res_ntuples(r) == 1) {
            sl->inserted = strtoll(kp_pg_res_value(r, 0, 0), NULL, 10);
            long long id = strtoll(kp_pg_res_value(r, 0, 1), NULL, 10);
            if (id > *max_id)
                *max_id = id;
        }
        kp_pg_res_free(&r);
    }
    if (b->n_obs > sl->accepted) {
        const char *p_rej[8] = {b->scheme,
                                b->src,
                                b->aid,
                                seqtxt,
                                kp_buf_cstr(&a[SCR_A_RN]),
                                kp_buf_cstr(&a[SCR_A_RREF]),
                                kp_buf_cstr(&a[SCR_A_RCODE]),
                                kp_buf_cstr(&a[SCR_A_RMSG])};
        if (kp_pg_exec(s->pg, SQL_REJ, 8, p_rej, NULL))
            return "rejection";
    }
    return NULL;
}

/* Stores one batch of the group inside the open transaction, then applies its observations to
 * the engine, so the checks of the next batch see this one. `stream`: its observations go into
 * the group's COPY at once, and its batch row and rejections wait for the COPY's end
 * (store_batch_rows); else store_merged. Returns NULL or the failed step. */
static const char *store_one(struct scr *s, struct scr_scheme *sch, struct slot *sl, bool stream,
                             bool *copied, long long *max_id)
{
    struct kp_batch *b = sl->b;
    if (stream && !kp_pg_copy_is_open(s->pg))
        kp_pg_bcopy_begin(&s->copy); /* the rows of a new COPY follow its header */
    else
        kp_buf_reset(&s->copy);
    sl->accepted = check_and_collect(s, sch, b);
    if (stream) {
        if (b->n_obs > sl->accepted)
            for (int k = 0; k < 4; k++)
                sl->rej[k] = kp_xstrdup(kp_buf_cstr(&s->a[SCR_A_RN + k]));
        if (sl->accepted) {
            if (copy_put(s))
                return "observation";
            sl->inserted = (long long)sl->accepted; /* a COPY stores every row or fails */
            *copied = true;
        }
    } else {
        const char *step = store_merged(s, sl, max_id);
        if (step || sl->dup)
            return step;
    }
    /* Evicted records this batch revises come back first (score_engine_load). */
    if (scr__db_load_cold(s, sch->id, sch->engine, s->so, s->n_so, sch->known_max_id))
        return "load";
    sch->load_upto = sch->known_max_id; /* for a cell read back (scr__db_load_cell) */
    /* Checked above: applied without a second validation (score_engine_apply_batch). */
    if (score_engine_apply_batch(sch->engine, s->so, s->chk, s->n_so, s->so_reason))
        for (size_t i = 0; i < s->n_so; i++)
            if (s->so_reason[i] != KP_R_OK) /* it passed the check: an engine invariant broke */
                KP_ERROR("apply_failed", "adapter=%s scheme=%s seq=%" PRIu64 " ref=%s reason=%s",
                         b->aid, b->scheme, b->seq, s->so[i].ref, kp_reason_str(s->so_reason[i]));
    if (score_engine_failed(sch->engine))
        return "load";
    return NULL;
}

/* A streamed group's batch rows and rejections, after its COPY, in one round trip (a
 * pipeline); then the answers of the batches that repeat one of the group. *dup is set when a
 * batch row was there already: a retransmit of a committed batch, which the group's run without
 * COPY answers from that row. Returns NULL or the failed step. */
static const char *store_batch_rows(struct scr *s, struct slot *g, size_t n, bool *dup)
{
    static const char *const none[4] = {"{}", "{}", "{}", "{}"};
    if (kp_pg_pipeline_begin(s->pg))
        return "batch";
    const char *step = NULL;
    for (size_t k = 0; k < n && !step; k++) {
        if (g[k].dup)
            continue;
        const struct kp_batch *b = g[k].b;
        const char *const *rej = g[k].rej[0] ? (const char *const *)g[k].rej : none;
        char seqtxt[24], n_obs[24], stored[24];
        snprintf(seqtxt, sizeof seqtxt, "%" PRIu64, b->seq);
        snprintf(n_obs, sizeof n_obs, "%zu", b->n_obs);
        snprintf(stored, sizeof stored, "%zu", g[k].accepted);
        const char *p_batch[9] = {b->aid, seqtxt, b->scheme, b->src, n_obs,
                                  stored, rej[0], rej[2],    rej[3]};
        const char *p_rej[8] = {b->scheme, b->src, b->aid, seqtxt, rej[0], rej[1], rej[2], rej[3]};
        if (kp_pg_send_prepared(s->pg, SQL_BATCH, 9, p_batch, NULL, NULL))
            step = "batch";
        else if (g[k].rej[0] && kp_pg_send(s->pg, SQL_REJ, 8, p_rej))
            step = "rejection";
    }
    if (!step && kp_pg_pipeline_sync(s->pg))
        step = "batch";
    for (size_t k = 0; k < n && !step; k++) {
        if (g[k].dup)
            continue;
        struct kp_pg_res *r = NULL;
        if (kp_pg_wait(s->pg, &r)) {
            step = "batch";
            break;
        }
        if (kp_pg_res_ntuples(r) == 0)
            *dup = true;
        kp_pg_res_free(&r);
        if (g[k].rej[0] && kp_pg_wait(s->pg, NULL))
            step = "rejection";
    }
    if (kp_pg_pipeline_end(s->pg) && !step)
        step = "batch";
    for (size_t k = 0; k < n && !step && !*dup; k++)
        if (g[k].dup) /* repeated in the group: its original's row is written now */
            step = answer_dup(s, &g[k]);
    return step;
}

/* Stores the n batches of g, all of scheme sch, in one transaction and answers each. Returns
 * true when the group must run again with stream false (its COPY met a stored record, or a
 * batch row was there already: the transaction, engine and cells are rolled back, nothing
 * answered). */
static bool store_group_run(struct scr *s, struct scr_scheme *sch, struct slot *g, size_t n,
                            bool stream)
{
    uint64_t t0 = kp_mono_ns();
    long long max_id = -1;
    bool copied = false;
    const char *step = NULL;
    if (kp_pg_begin(s->pg)) { /* sent with the first statement: no round trip of its own */
        db_failure(s, sch, false, false, "begin", g, n);
        return false;
    }
    /* Alerts (issue 7): the evaluator in step with engine and database before the group. */
    if (scr__alert_prepare(s, sch)) {
        db_failure(s, sch, false, false, "alerts", g, n);
        return false;
    }
    /* The engine's unit of work mirrors the transaction. */
    score_engine_begin(sch->engine);
    const struct kp_batch *fresh[SCR_GROUP_MAX];
    size_t n_fresh = 0;
    s->copy_step = NULL;
    for (size_t k = 0; k < n && !step; k++) {
        if (stream && repeated_in_group(g, k)) { /* answered after the batch rows */
            g[k].dup = true;
            continue;
        }
        step = store_one(s, sch, &g[k], stream, &copied, &max_id);
        if (!step && !g[k].dup)
            fresh[n_fresh++] = g[k].b;
    }
    if (s->copy_step) /* the COPY, ended for a read-back, failed: its step, not the read-back's */
        step = s->copy_step;
    uint64_t t_rows = kp_mono_ns(); /* the steps' times, for the debug line of each batch */
    struct scr_changes ch = {0};
    bool collected = false;
    if (kp_pg_copy_is_open(s->pg)) { /* one COPY for the group, unless a read-back split it */
        int sent = copy_end(s);
        if (!step && sent == 0 && n_fresh) { /* the engine's changes gathered meanwhile */
            scr__collect_changes(s, sch, &ch);
            collected = true;
        }
        const char *copy_step = copy_wait(s, sent); /* the connection idle again */
        if (!step)
            step = copy_step;
    }
    bool dup = false;
    if (!step && stream)
        step = store_batch_rows(s, g, n, &dup);
    if (!step && dup)
        step = STEP_CONFLICT;
    uint64_t t_copy = kp_mono_ns();
    if (step == STEP_CONFLICT && kp_pg_exec(s->pg, "ROLLBACK", 0, NULL, NULL) == 0) {
        sch->copy_skip = COPY_SKIP_AFTER_CONFLICT;
        score_engine_rollback(sch->engine);
        scr__cells_rollback(sch->cells);
        scr__totals_end(sch->totals, false, 0);
        for (size_t k = 0; k < n; k++) {
            g[k].accepted = 0;
            g[k].inserted = 0;
            g[k].dup = false;
        }
        KP_DEBUG("copy_conflict", "adapter=%s scheme=%s seq=%" PRIu64 " batches=%zu", g[0].b->aid,
                 g[0].b->scheme, g[0].b->seq, n);
        return true;
    }
    if (!step && n_fresh && !collected)
        scr__collect_changes(s, sch, &ch);
    /* Alert transitions first: their statement, when there is one, waits for its answer. */
    if (!step && n_fresh && scr__alert_batch(s, sch, fresh, n_fresh))
        step = "alerts";
    if (step) {
        db_failure(s, sch, true, false, step, g, n);
        return false;
    }
    /* The rest in one round trip (a pipeline): the score rows, the highest id the group's
     * COPY gave, COMMIT; then their answers, in that order. */
    if (kp_pg_pipeline_begin(s->pg)) {
        db_failure(s, sch, true, false, "pipeline", g, n);
        return false;
    }
    bool commit_sent = false;
    if (n_fresh && scr__db_write_scores(s, sch, &ch, NULL))
        step = "scores";
    if (!step && copied && kp_pg_send(s->pg, SQL_OBS_MAXID, 0, NULL))
        step = "observation";
    if (!step) {
        commit_sent = true; /* from here, a lost connection leaves the outcome unknown */
        if (kp_pg_send(s->pg, "COMMIT", 0, NULL) || kp_pg_pipeline_sync(s->pg))
            step = "commit";
    }
    uint64_t t_sent = kp_mono_ns();
    if (!step && n_fresh && scr__db_collect_scores(s, sch, &ch, NULL))
        step = "scores";
    if (!step && copied) {
        struct kp_pg_res *r = NULL;
        if (kp_pg_wait(s->pg, &r)) {
            step = "observation";
        } else {
            long long id =
                kp_pg_res_ntuples(r) == 1 ? strtoll(kp_pg_res_value(r, 0, 0), NULL, 10) : -1;
            if (id > max_id)
                max_id = id;
            kp_pg_res_free(&r);
        }
    }
    if (!step && kp_pg_wait(s->pg, NULL))
        step = "commit";
    /* Ends the pipeline on every path (what is left is collected); after a COMMIT that
     * answered, a failure here can only be the connection's, which the next group meets. */
    (void)kp_pg_pipeline_end(s->pg);
    if (step) {
        db_failure(s, sch, true, commit_sent, step, g, n);
        return false;
    }
    score_engine_commit(sch->engine);
    if (n_fresh) {
        scr__cells_commit(sch->cells, ch.now_us);
        scr__totals_end(sch->totals, true, ch.now_us);
    }
    if (max_id > sch->known_max_id)
        sch->known_max_id = max_id;
    if (n_fresh) {
        scr__alert_committed(s, sch); /* PUB announcements, Alertmanager sender */
        scr__state_metrics(sch);
    }
    uint64_t t_end = kp_mono_ns();
    double secs = (double)(t_end - t0) / 1e9;
    kp_histogram_observe(s->m_commit_s, secs);

    for (size_t k = 0; k < n; k++) {
        struct kp_batch *b = g[k].b;
        if (g[k].dup) {
            g[k].it->out = SCR_DUP;
            s->stats.dup++;
            kp_counter_inc(s->m_dup);
            continue;
        }
        size_t n_rej = b->n_obs - g[k].accepted;
        reply_ack(g[k].it->reply, b, g[k].accepted);
        g[k].it->out = SCR_COMMITTED;
        s->stats.committed++;
        s->stats.stored += g[k].accepted;
        s->stats.rejected += n_rej;
        kp_counter_inc(s->m_committed);
        kp_counter_add(s->m_stored, (double)g[k].accepted);
        for (size_t i = 0; i < b->n_obs; i++)
            if (b->obs[i].reason != KP_R_OK && b->obs[i].reason < KP_R__COUNT)
                kp_counter_inc(s->m_rej[b->obs[i].reason]);
        KP_DEBUG("batch_committed",
                 "adapter=%s scheme=%s seq=%" PRIu64 " stored=%zu new=%lld "
                 "rejected=%zu dup=false group=%zu cells=%zu totals=%zu ms=%.2f rows_ms=%.2f "
                 "copy_ms=%.2f send_ms=%.2f wait_ms=%.2f",
                 b->aid, b->scheme, b->seq, g[k].accepted, g[k].inserted, n_rej, n, ch.n_cells,
                 ch.n_totals, secs * 1e3, (double)(t_rows - t0) / 1e6,
                 (double)(t_copy - t_rows) / 1e6, (double)(t_sent - t_copy) / 1e6,
                 (double)(t_end - t_sent) / 1e6);
    }
    return false;
}

static void store_group(struct scr *s, struct scr_scheme *sch, struct slot *g, size_t n)
{
    bool stream = sch->copy_skip == 0;
    if (!stream)
        sch->copy_skip = (size_t)sch->copy_skip > n ? sch->copy_skip - (int)n : 0;
    if (store_group_run(s, sch, g, n, stream))
        (void)store_group_run(s, sch, g, n, false);
    for (size_t k = 0; k < n; k++)
        for (int j = 0; j < 4; j++)
            free(g[k].rej[j]);
}

/* ---- entry ---------------------------------------------------------------------------- */

/* Merges the envelope's "refused" frame into the batch: each listed observation that passed
 * decoding is refused with the listed code (ARCHITECTURE.md guarantee 5). Returns false when
 * the frame is unreadable (msg filled). */
static bool merge_refused(struct kp_batch *b, const void *refused, size_t len, char *msg,
                          size_t msglen)
{
    if (!refused || len == 0)
        return true;
    size_t max = b->n_obs ? b->n_obs : 1;
    struct kp_refused *r = kp_xcalloc(max, sizeof *r);
    int n = kp_refused_decode(refused, len, r, max);
    if (n < 0) {
        snprintf(msg, msglen, "internal envelope: unreadable refused frame");
        free(r);
        return false;
    }
    for (int k = 0; k < n; k++) {
        if (r[k].n >= b->n_obs)
            continue;
        struct kp_obs *o = &b->obs[r[k].n];
        if (o->reason != KP_R_OK)
            continue;
        char m[KP_MSG_TEXT_MAX];
        if (r[k].code == KP_R_not_granted_indicator)
            snprintf(m, sizeof m, "indicator %s is not granted to adapter %s for src %s", o->i,
                     b->aid, b->src);
        else
            snprintf(m, sizeof m, "%s", kp_reason_str(r[k].code));
        refuse(o, r[k].code, m);
        b->n_rejected++;
    }
    free(r);
    return true;
}

/* Decodes and checks one batch of a group. Returns true when it waits for the group's
 * transaction (sl->b, sl->sch set); false when it was answered (a nack). */
static bool admit(struct scr *s, struct scr_item *it, struct slot *sl)
{
    char env_aid[KP_CODE_MAX + 1];
    size_t n = it->aid_len < KP_CODE_MAX ? it->aid_len : KP_CODE_MAX;
    memcpy(env_aid, it->aid, n);
    env_aid[n] = 0;
    if (!kp_code_valid(env_aid, n))
        snprintf(env_aid, sizeof env_aid, "?");

    struct kp_msg_limits lim = {(size_t)s->cfg->max_bytes, (size_t)s->cfg->max_obs};
    struct kp_batch *b = NULL;
    bool has_seq = false;
    uint64_t seq = 0;
    char msg[KP_MSG_TEXT_MAX] = "";
    enum kp_reason r =
        kp_batch_decode(it->payload, it->len, &lim, &b, &has_seq, &seq, msg, sizeof msg);
    if (r != KP_R_OK) {
        it->out = nacked(s, it->reply, has_seq, seq, r, msg, env_aid, "?");
        return false;
    }
    kp_histogram_observe(s->m_batch_size, (double)b->n_obs);

    struct scr_scheme *sch;
    /* INTERNAL.md: the envelope's aid is the authenticated adapter id. */
    if (strlen(b->aid) != it->aid_len || memcmp(b->aid, it->aid, it->aid_len) != 0) {
        snprintf(msg, sizeof msg, "aid %s does not match the authenticated adapter %s", b->aid,
                 env_aid);
        it->out = nacked(s, it->reply, true, b->seq, KP_R_bad_aid, msg, env_aid, b->scheme);
    } else if (!(sch = find_scheme(s, b->scheme))) {
        snprintf(msg, sizeof msg, "scheme %s is not served by scorer %s", b->scheme, s->sid);
        it->out = nacked(s, it->reply, true, b->seq, KP_R_unknown_scheme, msg, b->aid, b->scheme);
    } else if (!s->db_ready || !sch->engine) {
        it->out = nacked(s, it->reply, true, b->seq, KP_R_scorer_unavailable,
                         "database unavailable; retry later", b->aid, b->scheme);
    } else if (!sch->active) {
        /* Standby, or the lock session was lost: only the lock holder writes a scheme. */
        it->out =
            nacked(s, it->reply, true, b->seq, KP_R_scorer_unavailable,
                   "this scorer does not hold the scheme's lock; retry later", b->aid, b->scheme);
    } else if (!merge_refused(b, it->refused, it->refused_len, msg, sizeof msg)) {
        it->out = nacked(s, it->reply, true, b->seq, KP_R_bad_msgpack, msg, b->aid, b->scheme);
    } else {
        *sl = (struct slot){.it = it, .b = b, .sch = sch};
        return true;
    }
    kp_batch_destroy(&b);
    return false;
}

void scr_process_group(struct scr *s, struct scr_item *items, size_t n)
{
    KP_ASSERT(n <= SCR_GROUP_MAX);
    struct slot slots[SCR_GROUP_MAX], g[SCR_GROUP_MAX];
    size_t waiting = 0;
    for (size_t k = 0; k < n; k++)
        if (admit(s, &items[k], &slots[waiting]))
            waiting++;
    /* One transaction per scheme present, its batches in arrival order. */
    for (size_t k = 0; k < waiting; k++) {
        if (!slots[k].b)
            continue;
        struct scr_scheme *sch = slots[k].sch;
        size_t ng = 0;
        for (size_t j = k; j < waiting; j++)
            if (slots[j].b && slots[j].sch == sch) {
                g[ng++] = slots[j];
                slots[j].b = NULL;
            }
        if (s->db_ready)
            store_group(s, sch, g, ng);
        else /* an earlier group of this call lost the connection */
            for (size_t j = 0; j < ng; j++)
                g[j].it->out =
                    nacked(s, g[j].it->reply, true, g[j].b->seq, KP_R_scorer_unavailable,
                           "database unavailable; retry later", g[j].b->aid, g[j].b->scheme);
        for (size_t j = 0; j < ng; j++)
            kp_batch_destroy(&g[j].b);
    }
    /* A large batch grows its COPY data to megabytes; the batches of a steady load need a
     * fraction of that. */
    kp_buf_trim(&s->copy, COPY_KEEP);
}

enum scr_outcome scr_process_refused(struct scr *s, const void *aid, size_t aid_len,
                                     const void *payload, size_t len, const void *refused,
                                     size_t refused_len, struct kp_buf *reply)
{
    struct scr_item it = {.aid = aid,
                          .aid_len = aid_len,
                          .payload = payload,
                          .len = len,
                          .refused = refused,
                          .refused_len = refused_len,
                          .reply = reply};
    scr_process_group(s, &it, 1);
    return it.out;
}

enum scr_outcome scr_process(struct scr *s, const void *aid, size_t aid_len, const void *payload,
                             size_t len, struct kp_buf *reply)
{
    return scr_process_refused(s, aid, aid_len, payload, len, NULL, 0, reply);
}
