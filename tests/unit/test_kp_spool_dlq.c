/*
 * test_kp_spool_dlq: the dead-letter side of the spool (lib/kp_spool.c) that `kpctl dlq`
 * uses: a read-only handle beside the adapter's lists dead batches, refusals from acks and
 * refused source rows and reads payloads back; kp_spool_retry_dead moves a dead batch back
 * into the queue under a new seq with its frame re-encoded (same observations, even those the
 * scorer will refuse), refuses what it cannot renumber and leaves it dead; and the adapter's
 * own handle, open on the same file the whole time, notices the retry (next_seq, depth, dead)
 * and never reuses a seq, even when the retry lands between kp_spool_next_seq and
 * kp_spool_put (ARCHITECTURE.md guarantees 1-2, PROTOCOL.md batch.seq).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <msgpack.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kp_buf.h"
#include "kp_err.h"
#include "kp_msg.h"
#include "kp_spool.h"
#include "test_util.h"

/* A fresh directory per test with the spool file <dir>/spool.db (test_util.h). */
static int setup(void **state)
{
    return tu_sqlite_dir_setup(state, "/tmp/kp_spool_dlq.XXXXXX", "spool.db");
}

static int teardown(void **state)
{
    return tu_sqlite_dir_teardown(state);
}

/* A real batch frame of n observations (refs r<seq>-<k>) encoded with the shared codec. */
static void encode(uint64_t seq, size_t n, struct kp_buf *out)
{
    struct kp_batch b;
    memset(&b, 0, sizeof b);
    snprintf(b.aid, sizeof b.aid, "esup");
    snprintf(b.scheme, sizeof b.scheme, "anshan-2015");
    snprintf(b.src, sizeof b.src, "esup");
    b.seq = seq;
    b.sent = 1425168000000LL + (int64_t)seq;
    b.n_obs = n;
    b.obs = calloc(n ? n : 1, sizeof *b.obs);
    assert_non_null(b.obs);
    for (size_t k = 0; k < n; k++) {
        struct kp_obs *o = &b.obs[k];
        snprintf(o->u, sizeof o->u, "AS-GAJ");
        snprintf(o->i, sizeof o->i, "approval_ontime");
        snprintf(o->p, sizeof o->p, "2015-03");
        snprintf(o->ref, sizeof o->ref, "r%" PRIu64 "-%zu", seq, k);
        o->val = (double)(k % 2);
        o->rev = k;
        o->at = 1425168000000LL + (int64_t)k;
        o->w = 1;
    }
    kp_buf_reset(out);
    assert_int_equal(kp_batch_encode(out, &b), 0);
    free(b.obs);
}

/* Puts an encoded batch of n observations under the next seq. */
static uint64_t put_batch(struct kp_spool *sp, size_t n)
{
    struct kp_buf fr = {0};
    uint64_t seq = kp_spool_next_seq(sp);
    encode(seq, n, &fr);
    char cur[32];
    snprintf(cur, sizeof cur, "c%" PRIu64, seq);
    assert_int_equal(kp_spool_put(sp, seq, fr.data, fr.len, (uint32_t)n, cur), 0);
    kp_buf_fini(&fr);
    return seq;
}

static struct kp_batch *decode(const void *p, size_t len)
{
    struct kp_msg_limits lim = {len + 1, 100000};
    struct kp_batch *b = NULL;
    bool has_seq = false;
    uint64_t seq = 0;
    char msg[KP_MSG_TEXT_MAX];
    assert_int_equal(kp_batch_decode(p, len, &lim, &b, &has_seq, &seq, msg, sizeof msg), KP_R_OK);
    return b;
}

/* ---- collectors ---------------------------------------------------------------------------- */

struct dead_seen {
    uint64_t seq[16];
    char code[16][32];
    char msg[16][64];
    struct kp_batch *b[16]; /* decoded payloads (when decode is set) */
    bool decode;
    size_t n;
};

static int dead_fn(const struct kp_spool_dead_item *it, void *arg)
{
    struct dead_seen *d = arg;
    assert_true(d->n < 16);
    d->seq[d->n] = it->seq;
    snprintf(d->code[d->n], sizeof d->code[0], "%s", it->code);
    snprintf(d->msg[d->n], sizeof d->msg[0], "%s", it->msg);
    assert_true(it->at_ms > 0);
    if (d->decode)
        d->b[d->n] = decode(it->payload, it->len);
    d->n++;
    return 0;
}

static void dead_seen_fini(struct dead_seen *d)
{
    for (size_t k = 0; k < d->n; k++)
        kp_batch_destroy(&d->b[k]);
}

struct rej_seen {
    uint64_t seq[16];
    uint32_t n_[16];
    size_t n;
};

static int rej_fn(const struct kp_spool_rejected_item *it, void *arg)
{
    struct rej_seen *r = arg;
    assert_true(r->n < 16);
    assert_string_equal(it->code, "unknown_unit");
    r->seq[r->n] = it->seq;
    r->n_[r->n] = it->n;
    r->n++;
    return 0;
}

static int row_fn(const struct kp_spool_dead_row *r, void *arg)
{
    (*(int *)arg)++;
    assert_string_equal(r->file, "cases-0301.csv");
    assert_int_equal(r->line, 7);
    return 0;
}

struct waiting {
    uint64_t seq[16];
    uint64_t inner_seq[16]; /* the seq inside the payload */
    size_t n;
};

static int waiting_fn(const struct kp_spool_item *it, void *arg)
{
    struct waiting *w = arg;
    assert_true(w->n < 16);
    w->seq[w->n] = it->seq;
    struct kp_batch *b = decode(it->payload, it->len);
    w->inner_seq[w->n] = b->seq;
    kp_batch_destroy(&b);
    w->n++;
    return 0;
}

/* ---- tests --------------------------------------------------------------------------------- */

static void test_readonly_lists(void **state)
{
    struct tu_sqlite_dir *f = *state;
    struct kp_spool *ro = NULL;
    assert_int_equal(kp_spool_open_readonly(f->path, &ro), KP_ENOENT);
    assert_null(ro);
    assert_int_equal(kp_spool_open_readonly("", &ro), KP_EINVAL);

    struct kp_spool *sp = NULL;
    assert_int_equal(kp_spool_open(f->path, 1 << 20, &sp), 0);
    put_batch(sp, 3);
    put_batch(sp, 3);
    put_batch(sp, 2);
    assert_int_equal(kp_spool_dead(sp, 2, "too_large", "3 observations, max_obs 2"), 0);
    assert_int_equal(kp_spool_rejected(sp, 1, 0, "unknown_unit", "unit NO-SUCH"), 0);
    assert_int_equal(kp_spool_rejected(sp, 1, 2, "unknown_unit", "unit NO-SUCH-2"), 0);
    assert_int_equal(kp_spool_ack(sp, 1), 0);
    assert_int_equal(kp_spool_dead_row(sp, "cases-0301.csv", 7, "bad_field", "val: not a number",
                                       "AS-GAJ,approval_ontime,2015-03,x"),
                     0);

    /* beside the open writer */
    assert_int_equal(kp_spool_open_readonly(f->path, &ro), 0);
    struct kp_spool_stats st;
    assert_int_equal(kp_spool_stats(ro, &st), 0);
    assert_int_equal(st.depth, 1);
    assert_int_equal(st.dead, 1);
    assert_int_equal(kp_spool_next_seq(ro), 4);

    struct dead_seen d = {.decode = true};
    assert_int_equal(kp_spool_dead_scan(ro, 0, SIZE_MAX, dead_fn, &d), 1);
    assert_int_equal(d.seq[0], 2);
    assert_string_equal(d.code[0], "too_large");
    assert_string_equal(d.msg[0], "3 observations, max_obs 2");
    assert_int_equal(d.b[0]->seq, 2);
    assert_int_equal(d.b[0]->n_obs, 3);
    assert_string_equal(d.b[0]->obs[2].ref, "r2-2");
    dead_seen_fini(&d);
    memset(&d, 0, sizeof d);
    assert_int_equal(kp_spool_dead_scan(ro, 2, 10, dead_fn, &d), 0);
    assert_int_equal(kp_spool_dead_scan(ro, 0, 0, dead_fn, &d), 0);

    struct rej_seen r = {0};
    assert_int_equal(kp_spool_rejected_scan(ro, 0, rej_fn, &r), 2);
    assert_int_equal(r.seq[0], 1);
    assert_int_equal(r.n_[0], 0);
    assert_int_equal(r.n_[1], 2);
    memset(&r, 0, sizeof r);
    assert_int_equal(kp_spool_rejected_scan(ro, 3, rej_fn, &r), 0);
    int rows = 0;
    assert_int_equal(kp_spool_dead_row_scan(ro, NULL, row_fn, &rows), 1);
    assert_int_equal(rows, 1);

    /* the read-only handle writes nothing */
    uint64_t nseq = 7;
    assert_int_equal(kp_spool_retry_dead(ro, 2, &nseq), KP_EIO);
    assert_int_equal(nseq, 0);
    assert_true(kp_spool_put(ro, 4, "x", 1, 1, NULL) < 0);
    assert_true(kp_spool_ack(ro, 3) < 0);
    kp_spool_close(&ro);

    /* and after the writer closed (no -wal/-shm left behind) */
    kp_spool_close(&sp);
    assert_int_equal(kp_spool_open_readonly(f->path, &ro), 0);
    memset(&d, 0, sizeof d);
    assert_int_equal(kp_spool_dead_scan(ro, 0, 10, dead_fn, &d), 1);
    kp_spool_close(&ro);
    assert_null(ro);
}

static void test_readonly_refuses_other_files(void **state)
{
    struct tu_sqlite_dir *f = *state;
    FILE *fp = fopen(f->path, "wb");
    assert_non_null(fp);
    fputs("this is no sqlite database, just some text of a reasonable length ......\n", fp);
    fclose(fp);
    struct kp_spool *ro = NULL;
    assert_int_equal(kp_spool_open_readonly(f->path, &ro), KP_EIO);
    assert_null(ro);
    unlink(f->path);

    /* a SQLite file of something else */
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE t(x)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(kp_spool_open_readonly(f->path, &ro), KP_EIO);
    assert_null(ro);
}

/* A spool written before dead_row existed: reading it still works; dead rows read as an error,
 * not a crash. */
static void test_readonly_older_spool(void **state)
{
    struct tu_sqlite_dir *f = *state;
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db,
                     "PRAGMA journal_mode=WAL;"
                     "CREATE TABLE meta (k INTEGER PRIMARY KEY CHECK (k = 1),"
                     "  next_seq INTEGER NOT NULL CHECK (next_seq >= 1), cursor TEXT NOT NULL);"
                     "INSERT INTO meta VALUES (1, 5, 'c4');"
                     "CREATE TABLE batch (seq INTEGER PRIMARY KEY, payload BLOB NOT NULL,"
                     "  n_obs INTEGER NOT NULL, created_ms INTEGER NOT NULL);"
                     "CREATE TABLE dead (seq INTEGER PRIMARY KEY, payload BLOB NOT NULL,"
                     "  code TEXT NOT NULL, msg TEXT NOT NULL, at INTEGER NOT NULL);"
                     "CREATE TABLE rejected (seq INTEGER NOT NULL, n INTEGER NOT NULL,"
                     "  code TEXT NOT NULL, msg TEXT NOT NULL, at INTEGER NOT NULL,"
                     "  PRIMARY KEY (seq, n));"
                     "INSERT INTO dead VALUES (3, x'80', 'bad_field', 'old', 1);",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    struct kp_spool *ro = NULL;
    assert_int_equal(kp_spool_open_readonly(f->path, &ro), 0);
    assert_int_equal(kp_spool_next_seq(ro), 5);
    struct dead_seen d = {0};
    assert_int_equal(kp_spool_dead_scan(ro, 0, 10, dead_fn, &d), 1);
    int rows = 0;
    assert_int_equal(kp_spool_dead_row_scan(ro, NULL, row_fn, &rows), KP_EIO);
    assert_int_equal(rows, 0);
    kp_spool_close(&ro);
}

struct frame_grab {
    uint64_t want;
    void *data;
    size_t len;
};

static int grab_fn(const struct kp_spool_item *it, void *arg)
{
    struct frame_grab *g = arg;
    if (it->seq == g->want) {
        g->data = malloc(it->len);
        assert_non_null(g->data);
        memcpy(g->data, it->payload, it->len);
        g->len = it->len;
    }
    return 1;
}

static void test_retry_new_seq(void **state)
{
    struct tu_sqlite_dir *f = *state;
    struct kp_spool *sp = NULL;
    assert_int_equal(kp_spool_open(f->path, 1 << 20, &sp), 0);
    put_batch(sp, 4);
    put_batch(sp, 2);
    assert_int_equal(kp_spool_dead(sp, 1, "too_large", "4 > 2"), 0);
    char cur[32];
    assert_int_equal(kp_spool_cursor(sp, cur, sizeof cur), 0);
    assert_string_equal(cur, "c2");

    uint64_t nseq = 0;
    assert_int_equal(kp_spool_retry_dead(sp, 1, &nseq), 0);
    assert_int_equal(nseq, 3);
    assert_int_equal(kp_spool_next_seq(sp), 4);
    assert_int_equal(kp_spool_cursor(sp, cur, sizeof cur), 0);
    assert_string_equal(cur, "c2"); /* the source cursor is untouched */
    struct kp_spool_stats st;
    assert_int_equal(kp_spool_stats(sp, &st), 0);
    assert_int_equal(st.depth, 2);
    assert_int_equal(st.dead, 0);

    struct waiting w = {0};
    assert_int_equal(kp_spool_scan(sp, 0, 10, waiting_fn, &w), 2);
    assert_int_equal(w.seq[0], 2);
    assert_int_equal(w.seq[1], 3);
    assert_int_equal(w.inner_seq[1], 3); /* the frame carries its new seq */

    /* the same observations, the same `sent` */
    struct kp_buf orig = {0};
    encode(1, 4, &orig);
    struct kp_batch *a = decode(orig.data, orig.len);
    struct frame_grab g = {.want = 3};
    assert_int_equal(kp_spool_scan(sp, 2, 1, grab_fn, &g), 1);
    assert_non_null(g.data);
    struct kp_batch *b = decode(g.data, g.len);
    assert_int_equal(b->seq, 3);
    assert_int_equal(b->sent, a->sent);
    assert_int_equal(b->n_obs, 4);
    for (size_t k = 0; k < 4; k++) {
        assert_string_equal(b->obs[k].ref, a->obs[k].ref);
        assert_int_equal(b->obs[k].rev, a->obs[k].rev);
        assert_true(b->obs[k].val == a->obs[k].val);
        assert_int_equal(b->obs[k].at, a->obs[k].at);
    }
    free(g.data);
    kp_buf_fini(&orig);
    kp_batch_destroy(&a);
    kp_batch_destroy(&b);

    /* unknown, already retried, zero */
    assert_int_equal(kp_spool_retry_dead(sp, 1, &nseq), KP_ENOENT);
    assert_int_equal(nseq, 0);
    assert_int_equal(kp_spool_retry_dead(sp, 2, &nseq), KP_ENOENT); /* waiting, not dead */
    assert_int_equal(kp_spool_retry_dead(sp, 0, &nseq), KP_ENOENT);
    assert_int_equal(kp_spool_retry_dead(sp, 99, &nseq), KP_ENOENT);

    /* the acks of the retried batch settle it like any other */
    assert_int_equal(kp_spool_ack(sp, 3), 0);
    assert_int_equal(kp_spool_ack(sp, 2), 0);
    assert_int_equal(kp_spool_stats(sp, &st), 0);
    assert_int_equal(st.depth, 0);
    assert_int_equal(st.bytes, 0);
    kp_spool_close(&sp);

    /* reopened: next_seq kept */
    assert_int_equal(kp_spool_open(f->path, 1 << 20, &sp), 0);
    assert_int_equal(kp_spool_next_seq(sp), 4);
    kp_spool_close(&sp);
}

/* Builds by hand a frame the shared encoder would refuse: a string val, a float32 w, an x
 * map, an unknown top-level key; seq 1. */
static void hostile_frame(msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 9);
#define KEY(s) msgpack_pack_str_with_body(&pk, s, strlen(s))
    KEY("t");
    KEY("batch");
    KEY("v");
    msgpack_pack_uint8(&pk, 1);
    KEY("aid");
    KEY("esup");
    KEY("scheme");
    KEY("anshan-2015");
    KEY("src");
    KEY("esup");
    KEY("seq");
    msgpack_pack_uint64(&pk, 1);
    KEY("sent");
    msgpack_pack_int64(&pk, 1425168000000LL);
    KEY("zz");
    msgpack_pack_nil(&pk);
    KEY("obs");
    msgpack_pack_array(&pk, 2);
    /* obs 0: valid, with x and a float32 weight */
    msgpack_pack_map(&pk, 7);
    KEY("u");
    KEY("AS-HC");
    KEY("i");
    KEY("approval_ontime");
    KEY("p");
    KEY("2015-03");
    KEY("val");
    msgpack_pack_int8(&pk, 1);
    KEY("ref");
    KEY("H1");
    KEY("w");
    msgpack_pack_float(&pk, 0.5f);
    KEY("x");
    msgpack_pack_map(&pk, 1);
    KEY("item");
    KEY("食品经营许可");
    /* obs 1: val is text: refused by the scorer as bad_type, must stay so */
    msgpack_pack_map(&pk, 5);
    KEY("u");
    KEY("AS-HC");
    KEY("i");
    KEY("approval_ontime");
    KEY("p");
    KEY("2015-03");
    KEY("val");
    KEY("one");
    KEY("ref");
    KEY("H2");
#undef KEY
}

static void test_retry_keeps_frame_meaning(void **state)
{
    struct tu_sqlite_dir *f = *state;
    struct kp_spool *sp = NULL;
    assert_int_equal(kp_spool_open(f->path, 1 << 20, &sp), 0);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    hostile_frame(&sb);
    assert_int_equal(kp_spool_put(sp, 1, sb.data, sb.size, 2, "c1"), 0);
    assert_int_equal(kp_spool_dead(sp, 1, "not_granted_scheme", "no grant yet"), 0);
    uint64_t nseq = 0;
    assert_int_equal(kp_spool_retry_dead(sp, 1, &nseq), 0);
    assert_int_equal(nseq, 2);

    struct frame_grab g = {.want = 2};
    assert_int_equal(kp_spool_scan(sp, 1, 1, grab_fn, &g), 1);
    assert_non_null(g.data);
    /* minimal encodings on both sides: the same bytes but for the seq */
    assert_int_equal(g.len, sb.size);
    struct kp_batch *a = decode(sb.data, sb.size);
    struct kp_batch *b = decode(g.data, g.len);
    assert_int_equal(a->seq, 1);
    assert_int_equal(b->seq, 2);
    assert_int_equal(a->sent, b->sent);
    assert_string_equal(a->aid, b->aid);
    assert_int_equal(b->n_obs, 2);
    assert_int_equal(b->n_rejected, 1);
    for (size_t k = 0; k < 2; k++) {
        assert_int_equal(a->obs[k].reason, b->obs[k].reason);
        assert_string_equal(a->obs[k].ref, b->obs[k].ref);
        assert_true(a->obs[k].val == b->obs[k].val);
        assert_true(a->obs[k].w == b->obs[k].w);
        assert_int_equal(a->obs[k].x_len, b->obs[k].x_len);
        if (a->obs[k].x_len)
            assert_memory_equal(a->obs[k].x, b->obs[k].x, a->obs[k].x_len);
    }
    assert_true(b->obs[0].w == 0.5);
    assert_int_equal(b->obs[1].reason, KP_R_bad_type);
    kp_batch_destroy(&a);
    kp_batch_destroy(&b);
    free(g.data);
    msgpack_sbuffer_destroy(&sb);

    /* a payload that is no batch frame: refused, stays dead, nothing else moves */
    assert_int_equal(kp_spool_put(sp, 3, "garbage", 7, 1, NULL), 0);
    assert_int_equal(kp_spool_dead(sp, 3, "bad_msgpack", "truncated"), 0);
    static const unsigned char no_seq[] = {0x81, 0xa1, 't', 0xa5, 'b', 'a', 't', 'c', 'h'};
    assert_int_equal(kp_spool_put(sp, 4, no_seq, sizeof no_seq, 0, NULL), 0);
    assert_int_equal(kp_spool_dead(sp, 4, "missing_field", "seq"), 0);
    struct kp_spool_stats st;
    assert_int_equal(kp_spool_stats(sp, &st), 0);
    uint64_t depth = st.depth, bytes = st.bytes;
    assert_int_equal(kp_spool_retry_dead(sp, 3, &nseq), KP_EINVAL);
    assert_int_equal(kp_spool_retry_dead(sp, 4, &nseq), KP_EINVAL);
    assert_int_equal(nseq, 0);
    assert_int_equal(kp_spool_next_seq(sp), 5);
    assert_int_equal(kp_spool_stats(sp, &st), 0);
    assert_int_equal(st.depth, depth);
    assert_int_equal(st.bytes, bytes);
    assert_int_equal(st.dead, 2);
    struct dead_seen d = {0};
    assert_int_equal(kp_spool_dead_scan(sp, 0, 10, dead_fn, &d), 2);
    assert_int_equal(d.seq[0], 3);
    assert_int_equal(d.seq[1], 4);
    kp_spool_close(&sp);
}

/* The adapter's handle stays open while a second handle (kpctl) retries. */
static void test_retry_beside_adapter(void **state)
{
    struct tu_sqlite_dir *f = *state;
    struct kp_spool *adp = NULL, *ctl = NULL;
    assert_int_equal(kp_spool_open(f->path, 1 << 20, &adp), 0);
    put_batch(adp, 2);
    put_batch(adp, 2);
    put_batch(adp, 3);
    assert_int_equal(kp_spool_dead(adp, 3, "too_large", "3 > 2"), 0);
    assert_int_equal(kp_spool_ack(adp, 1), 0);
    /* the adapter's delivery has queued everything up to seq 3 */
    uint64_t last_queued = 3;

    assert_int_equal(kp_spool_open(f->path, UINT64_MAX, &ctl), 0);
    uint64_t nseq = 0;
    assert_int_equal(kp_spool_retry_dead(ctl, 3, &nseq), 0);
    assert_int_equal(nseq, 4);

    /* the adapter sees it: stats, next seq, and its delivery's next scan */
    struct kp_spool_stats st;
    assert_int_equal(kp_spool_stats(adp, &st), 0);
    assert_int_equal(st.depth, 2);
    assert_int_equal(st.dead, 0);
    assert_int_equal(kp_spool_next_seq(adp), 5);
    struct waiting w = {0};
    assert_int_equal(kp_spool_scan(adp, last_queued, 8, waiting_fn, &w), 1);
    assert_int_equal(w.seq[0], 4);
    assert_int_equal(w.inner_seq[0], 4);
    assert_int_equal(put_batch(adp, 1), 5);
    assert_int_equal(kp_spool_ack(adp, 4), 0);
    assert_int_equal(kp_spool_stats(adp, &st), 0);
    assert_int_equal(st.depth, 2); /* seqs 2 and 5 */

    /* the race: the adapter takes next_seq, encodes, and before it puts, kpctl retries */
    assert_int_equal(kp_spool_dead(adp, 5, "too_large", "x"), 0);
    uint64_t mine = kp_spool_next_seq(adp);
    assert_int_equal(mine, 6);
    struct kp_buf fr = {0};
    encode(mine, 1, &fr);
    assert_int_equal(kp_spool_retry_dead(ctl, 5, &nseq), 0);
    assert_int_equal(nseq, 6);
    assert_int_equal(kp_spool_put(adp, mine, fr.data, fr.len, 1, "c6"), KP_EINVAL);
    char cur[32];
    assert_int_equal(kp_spool_cursor(adp, cur, sizeof cur), 0);
    assert_string_equal(cur, "c5"); /* nothing of the refused put was stored */
    /* the pump polls again and gets the next free seq */
    assert_int_equal(put_batch(adp, 1), 7);
    memset(&w, 0, sizeof w);
    assert_int_equal(kp_spool_scan(adp, 0, 16, waiting_fn, &w), 3);
    assert_int_equal(w.seq[0], 2);
    assert_int_equal(w.seq[1], 6);
    assert_int_equal(w.seq[2], 7);
    for (size_t k = 0; k < w.n; k++)
        assert_int_equal(w.seq[k], w.inner_seq[k]);
    kp_buf_fini(&fr);

    /* --all: every dead batch, in seq order, each its own new seq */
    assert_int_equal(kp_spool_dead(adp, 2, "too_large", "a"), 0);
    assert_int_equal(kp_spool_dead(adp, 7, "too_large", "b"), 0);
    struct dead_seen d = {0};
    assert_int_equal(kp_spool_dead_scan(ctl, 0, SIZE_MAX, dead_fn, &d), 2);
    for (size_t k = 0; k < d.n; k++) {
        assert_int_equal(kp_spool_retry_dead(ctl, d.seq[k], &nseq), 0);
        assert_int_equal(nseq, 8 + k);
    }
    assert_int_equal(kp_spool_stats(adp, &st), 0);
    assert_int_equal(st.depth, 3);
    assert_int_equal(st.dead, 0);
    assert_int_equal(kp_spool_next_seq(adp), 10);
    kp_spool_close(&ctl);
    kp_spool_close(&adp);

    /* both closed: the file agrees */
    assert_int_equal(kp_spool_open_readonly(f->path, &ctl), 0);
    assert_int_equal(kp_spool_stats(ctl, &st), 0);
    assert_int_equal(st.depth, 3);
    assert_int_equal(kp_spool_next_seq(ctl), 10);
    kp_spool_close(&ctl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_readonly_lists, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readonly_refuses_other_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readonly_older_spool, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_new_seq, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_keeps_frame_meaning, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_beside_adapter, setup, teardown),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    sqlite3_shutdown();
    return failed;
}
