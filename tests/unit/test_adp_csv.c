/*
 * test_adp_csv: the `csv` drop-folder source (adapters/csv/) through the adapter's pump into a
 * real spool, as kp-adapter runs it minus the loop (issue 4). The RFC 4180 reader (quotes,
 * embedded delimiters and line breaks, CRLF, BOM) with exact offsets and lines; GBK and UTF-8
 * decoding with bad bytes; period spellings of Chinese spreadsheets; unit names of the Anshan
 * scheme; a GBK export with Chinese unit names and a title row mapped by header; bad rows in
 * the dead letters with their exact line and reason while the good rows go on, and forwarded
 * so that the scorer refuses them too; archive and summary; ignored temp files and the order
 * of files; file-level refusals; a replaced file; the file watcher; per-row dead letters in
 * the spool; and kill -9 of a child adapter at random moments, again and again, after which
 * every row was spooled exactly once and every refused row dead-lettered exactly once
 * (ARCHITECTURE.md guarantee 1).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <iconv.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "adp.h"
#include "adp_pump.h"
#include "csv/src_csv.h"
#include "csv/src_csv_reader.h"
#include "kp_buf.h"
#include "kp_err.h"
#include "kp_log.h"
#include "kp_msg.h"
#include "kp_spool.h"

#define SCHEME_FILE KP_SOURCE_DIR "/schemas/schemes/anshan-2015.yaml"

/* ---- fixture ------------------------------------------------------------------------------ */

static char *patterns[] = {(char *)"*.csv", (char *)"*.CSV", NULL};
static char *skips[] = {(char *)"合计", NULL};

struct fx {
    char dir[64], drop[96], archive[96], path[128];
    struct kp_spool *sp;
    struct adp_pump *pump;
    struct src_csv_config cfg;
    uint32_t max_obs;
};

/* The finance export of the simulator: 单位名称, 统计期间, 执行率(%), 记录编号, 版本. */
static void finance_cfg(struct fx *f)
{
    struct src_csv_config *c = &f->cfg;
    memset(c, 0, sizeof *c);
    c->drop_dir = f->drop;
    c->archive_dir = f->archive;
    c->pattern = patterns;
    c->encoding = (char *)"auto";
    c->delimiter = (char *)",";
    c->map_unit_name = (char *)"单位名称";
    c->map_p = (char *)"统计期间";
    c->map_val = (char *)"执行率(%)";
    c->map_ref = (char *)"记录编号";
    c->map_rev = (char *)"版本";
    c->unit_by_name = (char *)SCHEME_FILE;
    c->indicator = (char *)"budget_execution";
    c->skip_units = skips;
    c->dead_letters = f->path; /* the adapter's spool, as the finance profile does */
    c->forward_refused = true;
    c->scan_ms = 10000;
    c->min_age_ms = 0;
    c->max_file_bytes = 64 << 20;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/kp_adp_csv.XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->drop, sizeof f->drop, "%s/drop", f->dir);
    snprintf(f->archive, sizeof f->archive, "%s/archive", f->dir);
    snprintf(f->path, sizeof f->path, "%s/spool.db", f->dir);
    if (mkdir(f->drop, 0755) != 0 || mkdir(f->archive, 0755) != 0)
        return -1;
    finance_cfg(f);
    f->max_obs = 500;
    *state = f;
    return 0;
}

static void close_pump(struct fx *f)
{
    adp_pump_close(&f->pump);
    kp_spool_close(&f->sp);
}

static void rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
            rm_dir(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static int teardown(void **state)
{
    struct fx *f = *state;
    close_pump(f);
    rm_dir(f->dir);
    free(f);
    return 0;
}

static int open_pump_rc(struct fx *f, char *err, size_t errlen)
{
    if (!f->sp && kp_spool_open(f->path, 1u << 26, &f->sp) != 0)
        fail_msg("spool open");
    struct adp_pump_opts o = {"finance", "anshan-2015", "finance", f->max_obs};
    return adp_pump_open(&adp_source_csv, &f->cfg, f->sp, &o, NULL, &f->pump, err, errlen);
}

static void open_pump(struct fx *f)
{
    char err[512];
    int rc = open_pump_rc(f, err, sizeof err);
    if (rc != 0)
        fail_msg("pump open: %s: %s", kp_err_name(rc), err);
}

static int drain(struct fx *f)
{
    int total = 0;
    for (int guard = 0; guard < 100000; guard++) {
        char err[512];
        int n = adp_pump_step(f->pump, err, sizeof err);
        if (n < 0)
            fail_msg("pump step: %s: %s", kp_err_name(n), err);
        total += n;
        if (!adp_pump_more(f->pump))
            return total;
    }
    fail_msg("drain does not end");
    return -1;
}

/* Writes a file the way a department should: a temp name, then rename into the folder. */
static void drop_file(struct fx *f, const char *name, const void *data, size_t len)
{
    char tmp[256], dst[256];
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp", f->drop, name);
    snprintf(dst, sizeof dst, "%s/%s", f->drop, name);
    FILE *fp = fopen(tmp, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
    assert_int_equal(rename(tmp, dst), 0);
}

static void drop_text(struct fx *f, const char *name, const char *text)
{
    drop_file(f, name, text, strlen(text));
}

/* UTF-8 → GBK, as Excel on a Chinese Windows writes. Caller frees. */
static char *to_gbk(const char *utf8, size_t *len)
{
    iconv_t cd = iconv_open("GBK", "UTF-8");
    assert_true(cd != (iconv_t)-1);
    size_t il = strlen(utf8), ol = il * 2 + 16;
    char *out = malloc(ol), *op = out, *ip = (char *)(uintptr_t)utf8;
    assert_non_null(out);
    assert_true(iconv(cd, &ip, &il, &op, &ol) != (size_t)-1);
    iconv_close(cd);
    *len = (size_t)(op - out);
    return out;
}

static void drop_gbk(struct fx *f, const char *name, const char *utf8)
{
    size_t len;
    char *g = to_gbk(utf8, &len);
    drop_file(f, name, g, len);
    free(g);
}

static bool file_exists(const char *dir, const char *name)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    struct stat sb;
    return stat(p, &sb) == 0;
}

static json_t *summary(struct fx *f, const char *arch_name)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s.summary.json", f->archive, arch_name);
    json_error_t je;
    json_t *j = json_load_file(p, 0, &je);
    if (!j)
        fail_msg("summary %s: %s", p, je.text);
    return j;
}

static long long jint(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    if (!json_is_integer(v))
        fail_msg("summary: %s is not an integer", k);
    return json_integer_value(v);
}

static int count_files(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- what the spool holds ------------------------------------------------------------------ */

struct ob {
    char u[72], i[72], p[16], ref[300];
    double val;
    uint64_t rev;
    enum kp_reason reason;
};

struct seen {
    struct ob *o;
    size_t n, cap;
    size_t batches;
};

static int seen_fn(const struct kp_spool_item *it, void *arg)
{
    struct seen *s = arg;
    struct kp_msg_limits lim = {KP_DEFAULT_MAX_BYTES, KP_DEFAULT_MAX_OBS};
    struct kp_batch *b = NULL;
    bool has_seq;
    uint64_t seq;
    char msg[KP_MSG_TEXT_MAX];
    enum kp_reason r =
        kp_batch_decode(it->payload, it->len, &lim, &b, &has_seq, &seq, msg, sizeof msg);
    if (r != KP_R_OK)
        fail_msg("batch %" PRIu64 " does not decode: %s %s", it->seq, kp_reason_str(r), msg);
    assert_string_equal(b->src, "finance");
    s->batches++;
    for (size_t k = 0; k < b->n_obs; k++) {
        if (s->n == s->cap) {
            s->cap = s->cap ? s->cap * 2 : 256;
            s->o = realloc(s->o, s->cap * sizeof *s->o);
            assert_non_null(s->o);
        }
        struct ob *x = &s->o[s->n++];
        const struct kp_obs *o = &b->obs[k];
        snprintf(x->u, sizeof x->u, "%s", o->u);
        snprintf(x->i, sizeof x->i, "%s", o->i);
        snprintf(x->p, sizeof x->p, "%s", o->p);
        snprintf(x->ref, sizeof x->ref, "%s", o->ref);
        x->val = o->val;
        x->rev = o->rev;
        x->reason = o->reason;
    }
    kp_batch_destroy(&b);
    return 0;
}

static void collect(struct fx *f, struct seen *s)
{
    memset(s, 0, sizeof *s);
    assert_true(kp_spool_scan(f->sp, 0, SIZE_MAX, seen_fn, s) >= 0);
}

static const struct ob *find_ref(const struct seen *s, const char *ref)
{
    const struct ob *hit = NULL;
    for (size_t k = 0; k < s->n; k++)
        if (strcmp(s->o[k].ref, ref) == 0) {
            if (hit)
                fail_msg("ref %s is in the spool twice", ref);
            hit = &s->o[k];
        }
    return hit;
}

#define DEADV_MAX 512
struct deadv {
    char file[DEADV_MAX][64];
    long line[DEADV_MAX];
    char code[DEADV_MAX][32];
    char msg[DEADV_MAX][300];
    size_t n;
};

static int dead_fn(const struct kp_spool_dead_row *r, void *arg)
{
    struct deadv *d = arg;
    if (d->n < DEADV_MAX) {
        snprintf(d->file[d->n], sizeof d->file[0], "%s", r->file);
        d->line[d->n] = r->line;
        snprintf(d->code[d->n], sizeof d->code[0], "%s", r->code);
        snprintf(d->msg[d->n], sizeof d->msg[0], "%s", r->msg);
    }
    d->n++;
    return 0;
}

static void dead_rows(struct fx *f, const char *file, struct deadv *d)
{
    memset(d, 0, sizeof *d);
    assert_true(kp_spool_dead_row_scan(f->sp, file, dead_fn, d) >= 0);
}

/* ---- the reader ------------------------------------------------------------------------------ */

static void test_reader_rfc4180(void **state)
{
    (void)state;
    const char *t = "a,\"b,1\",\"say \"\"hi\"\"\"\r\n" /* line 1 */
                    "x,\"two\r\nlines\",z\n"           /* lines 2-3 */
                    "\n"                               /* line 4: blank */
                    ",,\r"                             /* line 5: lone CR */
                    "last,\"\",end";                   /* line 6: no terminator */
    struct csv_reader r;
    csv_reader_init(&r, t, strlen(t), ',', 0, 1);
    struct csv_rec rec;

    assert_true(csv_reader_next(&r, &rec));
    assert_null(rec.err);
    assert_int_equal(rec.nf, 3);
    assert_int_equal(rec.line, 1);
    assert_string_equal(csv_reader_value(&r, &rec, 0), "a");
    assert_string_equal(csv_reader_value(&r, &rec, 1), "b,1");
    assert_string_equal(csv_reader_value(&r, &rec, 2), "say \"hi\"");
    assert_int_equal(rec.next, strlen("a,\"b,1\",\"say \"\"hi\"\"\"\r\n"));
    assert_int_equal(rec.next_line, 2);

    assert_true(csv_reader_next(&r, &rec));
    assert_int_equal(rec.line, 2);
    assert_string_equal(csv_reader_value(&r, &rec, 1), "two\r\nlines");
    assert_string_equal(csv_reader_value(&r, &rec, 2), "z");
    assert_int_equal(rec.next_line, 4);
    size_t after2 = rec.next;
    assert_int_equal(csv_line_at(t, after2) + 1, 4);

    assert_true(csv_reader_next(&r, &rec));
    assert_int_equal(rec.line, 4);
    assert_true(csv_rec_blank(&r, &rec));

    assert_true(csv_reader_next(&r, &rec));
    assert_int_equal(rec.line, 5);
    assert_int_equal(rec.nf, 3);
    assert_true(csv_rec_blank(&r, &rec));
    assert_int_equal(rec.next_line, 6);

    assert_true(csv_reader_next(&r, &rec));
    assert_int_equal(rec.line, 6);
    assert_string_equal(csv_reader_value(&r, &rec, 1), "");
    assert_true(r.f[1].quoted);
    assert_string_equal(csv_reader_value(&r, &rec, 2), "end");
    assert_string_equal(csv_reader_value(&r, &rec, 7), ""); /* past the last field */
    assert_int_equal(rec.next, strlen(t));
    assert_false(csv_reader_next(&r, &rec));

    /* resuming at a stored offset reads the same records */
    csv_reader_fini(&r);
    csv_reader_init(&r, t, strlen(t), ',', after2, csv_line_at(t, after2) + 1);
    assert_true(csv_reader_next(&r, &rec));
    assert_int_equal(rec.line, 4);
    csv_reader_fini(&r);

    /* malformed records come back with a reason; the next one is fine */
    const char *m = "ok,\"bad\"tail,x\nfine,1\n\"never closed,2\nmore\n";
    csv_reader_init(&r, m, strlen(m), ',', 0, 1);
    assert_true(csv_reader_next(&r, &rec));
    assert_non_null(rec.err);
    assert_non_null(strstr(rec.err, "closing quote"));
    assert_string_equal(csv_reader_value(&r, &rec, 1), "badtail");
    assert_string_equal(csv_reader_value(&r, &rec, 2), "x");
    assert_true(csv_reader_next(&r, &rec));
    assert_null(rec.err);
    assert_int_equal(rec.line, 2);
    assert_true(csv_reader_next(&r, &rec));
    assert_int_equal(rec.line, 3);
    assert_non_null(strstr(rec.err, "not closed"));
    assert_string_equal(csv_reader_value(&r, &rec, 0), "never closed,2\nmore\n");
    assert_false(csv_reader_next(&r, &rec));
    csv_reader_fini(&r);

    /* a semicolon and a tab as delimiters; quotes in the middle of a field are text */
    const char *s = "a;b\"c;d\n";
    csv_reader_init(&r, s, strlen(s), ';', 0, 1);
    assert_true(csv_reader_next(&r, &rec));
    assert_null(rec.err);
    assert_int_equal(rec.nf, 3);
    assert_string_equal(csv_reader_value(&r, &rec, 1), "b\"c");
    csv_reader_fini(&r);
}

static void test_decode(void **state)
{
    (void)state;
    struct csv_text t;
    /* UTF-8 with a BOM */
    const char bom[] = "\xEF\xBB\xBF单位,值\n";
    assert_int_equal(csv_decode(bom, strlen(bom), CSV_ENC_AUTO, &t), 0);
    assert_int_equal(t.enc, CSV_ENC_UTF8);
    assert_true(t.bom);
    assert_string_equal(t.data, "单位,值\n");
    assert_int_equal(t.n_bad, 0);
    csv_text_fini(&t);

    /* GBK, found by auto */
    size_t glen;
    char *g = to_gbk("海城市政府,市民委（市宗教局）\n", &glen);
    assert_int_equal(csv_decode(g, glen, CSV_ENC_AUTO, &t), 0);
    assert_int_equal(t.enc, CSV_ENC_GBK);
    assert_string_equal(t.data, "海城市政府,市民委（市宗教局）\n");
    csv_text_fini(&t);

    /* a byte that is no GBK (0x80 followed by a comma) and a NUL: U+FFFD, listed, the rest
     * decodes */
    char bad[64];
    size_t n = 0;
    memcpy(bad, g, 10); /* 海城市政府 */
    n = 10;
    bad[n++] = (char)0x81;
    bad[n++] = ',';
    bad[n++] = 'x';
    bad[n++] = 0;
    bad[n++] = 'y';
    assert_int_equal(csv_decode(bad, n, CSV_ENC_GBK, &t), 0);
    assert_string_equal(t.data, "海城市政府\xEF\xBF\xBD,x\xEF\xBF\xBDy");
    assert_int_equal(t.n_bad, 2);
    assert_int_equal(t.bad[0].in_off, 10);
    assert_int_equal(t.bad[0].byte, 0x81);
    assert_int_equal(t.bad[0].at, strlen("海城市政府"));
    assert_int_equal(t.bad[1].in_off, 13);
    assert_non_null(csv_text_bad_in(&t, 0, 20));
    assert_null(csv_text_bad_in(&t, t.bad[0].at + 1, t.bad[1].at));
    csv_text_fini(&t);
    free(g);

    /* explicit utf-8: bad bytes replaced and listed, never read as GBK */
    const char u[] = "ok,\xFF,\xC3\x28";
    assert_int_equal(csv_decode(u, strlen(u), CSV_ENC_UTF8, &t), 0);
    assert_int_equal(t.enc, CSV_ENC_UTF8);
    assert_int_equal(t.n_bad, 2);
    assert_string_equal(t.data, "ok,\xEF\xBF\xBD,\xEF\xBF\xBD(");
    csv_text_fini(&t);

    /* empty input */
    assert_int_equal(csv_decode("", 0, CSV_ENC_AUTO, &t), 0);
    assert_int_equal(t.len, 0);
    assert_string_equal(t.data, "");
    csv_text_fini(&t);

    enum csv_enc e;
    assert_int_equal(csv_enc_parse("GBK", &e), 0);
    assert_int_equal(e, CSV_ENC_GBK);
    assert_int_equal(csv_enc_parse("UTF-8", &e), 0);
    assert_int_equal(e, CSV_ENC_UTF8);
    assert_int_equal(csv_enc_parse("latin1", &e), KP_EINVAL);
}

static void test_period_norm(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"2015-03", "2015-03"},      {"2015年3月", "2015-03"},
        {"2015年03月", "2015-03"},   {" 2015-3 ", "2015-03"},
        {"2015/03", "2015-03"},      {"2015.3", "2015-03"},
        {"201503", "2015-03"},       {"2015年第1季度", "2015-Q1"},
        {"2015年4季度", "2015-Q4"},  {"2015Q2", "2015-Q2"},
        {"2015-Q3", "2015-Q3"},      {"2015年上半年", "2015-H1"},
        {"2015年下半年", "2015-H2"}, {"2015年", "2015"},
        {"2015年度", "2015"},        {"2015", "2015"},
        {"2015/3/31", "2015-03-31"}, {"2015年3月31日", "2015-03-31"},
        {"20150331", "2015-03-31"},
    };
    char out[16];
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        if (!csv_period_norm(cases[k][0], out, sizeof out))
            fail_msg("\"%s\" not read", cases[k][0]);
        assert_string_equal(out, cases[k][1]);
    }
    static const char *const bad[] = {"",        "2015年13月", "2015-13", "2015年第5季度",
                                      "15-03",   "2015/02/30", "March",   "2015年3",
                                      "2015-03x"};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++)
        if (csv_period_norm(bad[k], out, sizeof out))
            fail_msg("\"%s\" read as %s", bad[k], out);
}

static void test_units(void **state)
{
    (void)state;
    struct csv_units *u = NULL;
    char err[400];
    assert_int_equal(csv_units_load(SCHEME_FILE, "anshan-2015", &u, err, sizeof err), 0);
    assert_int_equal(csv_units_count(u), 70);
    assert_string_equal(csv_units_code(u, "海城市政府"), "AS-HC");
    assert_string_equal(csv_units_code(u, " 铁东区政府　"), "AS-TD");       /* U+3000 */
    assert_string_equal(csv_units_code(u, "市民委（市宗教局）"), "AS-MZW"); /* full-width */
    assert_string_equal(csv_units_code(u, "市财政局"), "AS-CZJ");
    assert_string_equal(csv_units_code(u, "AS-GX"), "AS-GX"); /* a code is accepted too */
    assert_null(csv_units_code(u, "某某局"));
    assert_null(csv_units_code(u, "海城市"));
    assert_true(csv_units_has_code(u, "AS-QSFJ"));
    assert_false(csv_units_has_code(u, "AS-NOPE"));
    csv_units_destroy(&u);
    assert_null(u);

    assert_int_equal(csv_units_load(SCHEME_FILE, "suzhou-2015", &u, err, sizeof err), KP_ECONFIG);
    assert_non_null(strstr(err, "not suzhou-2015"));
    assert_int_equal(csv_units_load("/nonexistent.yaml", NULL, &u, err, sizeof err), KP_ECONFIG);
    assert_null(u);
}

/* ---- the source ------------------------------------------------------------------------------ */

/* A GBK export as the finance bureau's Excel writes it: a title row, the header, Chinese unit
 * names (one with full-width parentheses), 2015年3月 periods, a total row, CRLF. */
static void test_gbk_chinese_names(void **state)
{
    struct fx *f = *state;
    drop_gbk(f, "预算执行-2015-03.csv",
             "2015年3月预算执行情况表,,,,,\r\n"
             "序号,单位名称,统计期间,执行率(%),记录编号,版本\r\n"
             "1,海城市政府,2015年3月,25.40,YS-201503-AS-HC,0\r\n"
             "2,市民委（市宗教局）,2015年3月,31.5,YS-201503-AS-MZW,0\r\n"
             "3, 铁东区政府 ,2015-03,100,YS-201503-AS-TD,2\r\n"
             "4,\"千山风景区管委会\",2015年3月,0,YS-201503-AS-QSFJ,0\r\n"
             ",合计,,39.2,,\r\n");
    open_pump(f);
    assert_int_equal(drain(f), 4);
    struct seen s;
    collect(f, &s);
    assert_int_equal(s.n, 4);
    const char *ref[4] = {"YS-201503-AS-HC", "YS-201503-AS-MZW", "YS-201503-AS-TD",
                          "YS-201503-AS-QSFJ"};
    const char *unit[4] = {"AS-HC", "AS-MZW", "AS-TD", "AS-QSFJ"};
    double val[4] = {25.4, 31.5, 100, 0};
    for (int k = 0; k < 4; k++) {
        const struct ob *o = find_ref(&s, ref[k]);
        assert_non_null(o);
        assert_int_equal(o->reason, KP_R_OK);
        assert_string_equal(o->u, unit[k]);
        assert_string_equal(o->i, "budget_execution");
        assert_string_equal(o->p, "2015-03");
        assert_true(o->val == val[k]);
        assert_int_equal(o->rev, k == 2 ? 2 : 0);
    }
    free(s.o);
    /* archived with its summary; nothing was refused */
    assert_false(file_exists(f->drop, "预算执行-2015-03.csv"));
    assert_true(file_exists(f->archive, "预算执行-2015-03.csv"));
    json_t *j = summary(f, "预算执行-2015-03.csv");
    assert_string_equal(json_string_value(json_object_get(j, "encoding")), "gbk");
    assert_int_equal(jint(j, "header_line"), 2);
    assert_int_equal(jint(j, "rows_read"), 5);
    assert_int_equal(jint(j, "rows_sent"), 4);
    assert_int_equal(jint(j, "rows_refused"), 0);
    assert_int_equal(jint(j, "rows_skipped"), 1);
    assert_int_equal(json_array_size(json_object_get(j, "refused")), 0);
    json_decref(j);
    static struct deadv d; /* large: not on the stack */
    dead_rows(f, NULL, &d);
    assert_int_equal(d.n, 0);
    /* the stored cursor names the file and the end of its text */
    char cur[512];
    assert_int_equal(kp_spool_cursor(f->sp, cur, sizeof cur), 0);
    assert_true(strncmp(cur, "csv1|", 5) == 0);
    assert_non_null(strstr(cur, "|预算执行-2015-03.csv"));
    assert_non_null(strstr(cur, "|8|")); /* line 8: after the 7 lines of the file */
    assert_int_equal(drain(f), 0);
}

/* Bad rows: each one in the dead letters with its exact line and reason, and in the spool as
 * a record the scorer refuses; the good rows around them go on. */
static void test_bad_rows_lines_and_reasons(void **state)
{
    struct fx *f = *state;
    f->max_obs = 3; /* bad rows fall in several batches */
    drop_text(f, "fin.csv",
              "\xEF\xBB\xBF单位名称,统计期间,执行率(%),记录编号,版本,备注\r\n" /* 1 */
              "海城市政府,2015-04,40,R1,0,\r\n"                                /* 2 good */
              "台安县政府,2015-04,N/A,R2,0,\r\n"                               /* 3 bad_field */
              "岫岩县政府,2015-04,,R3,0,\r\n"                                  /* 4 missing_field */
              "铁东区政府,2015-04,41,R4,0,\"两行\r\n的备注\"\r\n"              /* 5-6 good */
              "某某局,2015-04,42,R5,0,\r\n"                                    /* 7 unknown_unit */
              "铁西区政府,2015年13月,43,R6,0,\r\n"                             /* 8 bad_period */
              "\r\n"                                                           /* 9 blank */
              "立山区政府,2015-04,44,R7,x1,\r\n"       /* 10 bad_field rev */
              "千山区政府,2015-04,45,,0,\r\n"          /* 11 missing ref */
              "高新区管委会,2015-04,1e999,R9,0,\r\n"   /* 12 not_finite */
              "经济开发区管委会,2015-04,46,R10,0,\r\n" /* 13 good */
              "市教育局,2015-04,\"47\"x,R11,0,\r\n"    /* 14 bad_csv */
              ",2015-04,48,R12,0,\r\n"                 /* 15 missing unit */
              "市科技局,2015-04,49,R13,0,\r\n");       /* 16 good */
    open_pump(f);
    drain(f);
    static struct deadv d; /* large: not on the stack */
    dead_rows(f, "fin.csv", &d);
    static const struct {
        long line;
        const char *code, *in_msg;
    } want[] = {
        {3, "bad_field", "\"N/A\" (column 执行率(%)) is not a number"},
        {4, "missing_field", "column 执行率(%) is empty"},
        {7, "unknown_unit", "unit name \"某某局\""},
        {8, "bad_period", "\"2015年13月\" (column 统计期间) is not a period"},
        {10, "bad_field", "revision \"x1\""},
        {11, "missing_field", "column 记录编号 is empty"},
        {12, "not_finite", "1e999"},
        {14, "bad_csv", "closing quote"},
        {15, "missing_field", "column 单位名称 is empty"},
    };
    size_t nw = sizeof want / sizeof want[0];
    assert_int_equal(d.n, nw);
    for (size_t k = 0; k < nw; k++) {
        assert_string_equal(d.file[k], "fin.csv");
        assert_int_equal(d.line[k], want[k].line);
        assert_string_equal(d.code[k], want[k].code);
        if (!strstr(d.msg[k], want[k].in_msg))
            fail_msg("line %ld: \"%s\" lacks \"%s\"", d.line[k], d.msg[k], want[k].in_msg);
    }
    /* good rows: sent as valid observations */
    struct seen s;
    collect(f, &s);
    const char *good[] = {"R1", "R4", "R10", "R13"};
    for (size_t k = 0; k < 4; k++) {
        const struct ob *o = find_ref(&s, good[k]);
        assert_non_null(o);
        assert_int_equal(o->reason, KP_R_OK);
        assert_string_equal(o->p, "2015-04");
    }
    /* refused rows: also sent (forward_refused), each one refused by the strict decoder */
    size_t refused_sent = 0;
    for (size_t k = 0; k < s.n; k++)
        if (s.o[k].reason != KP_R_OK)
            refused_sent++;
    assert_int_equal(refused_sent, nw);
    assert_int_equal(s.n, 4 + nw);
    assert_int_equal(find_ref(&s, "R2")->reason, KP_R_bad_type);      /* "N/A" as text */
    assert_int_equal(find_ref(&s, "R3")->reason, KP_R_missing_field); /* no val */
    assert_int_equal(find_ref(&s, "R5")->reason, KP_R_missing_field); /* no unit code */
    assert_int_equal(find_ref(&s, "R7")->reason, KP_R_missing_field); /* val left out */
    free(s.o);
    /* the summary says the same */
    json_t *j = summary(f, "fin.csv");
    assert_true(json_is_true(json_object_get(j, "bom")));
    assert_string_equal(json_string_value(json_object_get(j, "encoding")), "utf-8");
    assert_int_equal(jint(j, "rows_read"), 13);
    assert_int_equal(jint(j, "rows_sent"), 4);
    assert_int_equal(jint(j, "rows_refused"), (long long)nw);
    json_t *list = json_object_get(j, "refused");
    assert_int_equal(json_array_size(list), nw);
    for (size_t k = 0; k < nw; k++) {
        json_t *r = json_array_get(list, k);
        assert_int_equal(jint(r, "line"), want[k].line);
        assert_string_equal(json_string_value(json_object_get(r, "code")), want[k].code);
    }
    assert_int_equal(jint(json_object_get(j, "refused_by_code"), "missing_field"), 3);
    json_decref(j);
}

/* A byte that is not GBK in one cell refuses that row only; the file name is the ref when
 * there is no record id column; forward_refused off keeps refused rows out of the spool and a
 * file of refused rows only is archived all the same. */
static void test_bad_gbk_byte_and_no_forward(void **state)
{
    struct fx *f = *state;
    f->cfg.forward_refused = false;
    f->cfg.map_ref = NULL;
    f->cfg.map_rev = NULL;
    size_t len;
    char *g = to_gbk("单位名称,统计期间,执行率(%)\n"
                     "海城市政府,2015-05,50\n"
                     "台安县政府,2015-05,5@\n" /* '@' becomes a broken byte below */
                     "岫岩县政府,2015-05,52\n",
                     &len);
    char *at = memchr(g, '@', len);
    assert_non_null(at);
    *at = (char)0x81; /* a GBK lead byte followed by a newline: invalid */
    drop_file(f, "gbk-bad.csv", g, len);
    drop_text(f, "only-bad.csv", "单位名称,统计期间,执行率(%)\n某某局,2015-05,1\n");
    free(g);
    open_pump(f);
    assert_int_equal(drain(f), 2);
    struct seen s;
    collect(f, &s);
    assert_int_equal(s.n, 2);
    assert_non_null(find_ref(&s, "gbk-bad.csv:2"));
    assert_non_null(find_ref(&s, "gbk-bad.csv:4"));
    free(s.o);
    static struct deadv d; /* large: not on the stack */
    dead_rows(f, NULL, &d);
    assert_int_equal(d.n, 2);
    assert_string_equal(d.file[0], "gbk-bad.csv");
    assert_int_equal(d.line[0], 3);
    assert_string_equal(d.code[0], "bad_encoding");
    assert_non_null(strstr(d.msg[0], "0x81"));
    assert_non_null(strstr(d.msg[0], "gbk"));
    assert_string_equal(d.file[1], "only-bad.csv");
    assert_int_equal(d.line[1], 2);
    assert_string_equal(d.code[1], "unknown_unit");
    assert_true(file_exists(f->archive, "only-bad.csv"));
    json_t *j = summary(f, "only-bad.csv");
    assert_int_equal(jint(j, "rows_refused"), 1);
    assert_int_equal(jint(j, "rows_sent"), 0);
    assert_true(json_is_false(json_object_get(j, "refused_forwarded")));
    json_decref(j);
    assert_int_equal(count_files(f->drop), 0);
}

/* A file name in GBK bytes (a Windows share passing them through) and a cell far longer than
 * a message quotes: refs, dead letters and the summary stay valid UTF-8. */
static void test_gbk_file_name_and_long_cells(void **state)
{
    struct fx *f = *state;
    f->cfg.map_ref = NULL;
    f->cfg.map_rev = NULL;
    struct kp_buf b = {0};
    kp_buf_append_str(&b, "单位名称,统计期间,执行率(%)\n海城市政府,2015-10,80\n");
    for (int k = 0; k < 200; k++)
        kp_buf_append_str(&b, "局");
    kp_buf_append_str(&b, ",2015-10,81\n");
    size_t nlen;
    char *gname = to_gbk("预算-2015-10.csv", &nlen);
    char name[64];
    memcpy(name, gname, nlen);
    name[nlen] = 0;
    free(gname);
    assert_false(kp_utf8_valid(name, strlen(name)));
    drop_file(f, name, b.data, b.len);
    kp_buf_fini(&b);
    open_pump(f);
    drain(f);
    struct seen s;
    collect(f, &s);
    assert_int_equal(s.n, 2);
    const struct ob *o = find_ref(&s, "预算-2015-10.csv:2");
    assert_non_null(o);
    assert_int_equal(o->reason, KP_R_OK);
    assert_non_null(find_ref(&s, "预算-2015-10.csv:3"));
    free(s.o);
    static struct deadv d; /* large: not on the stack */
    dead_rows(f, "预算-2015-10.csv", &d);
    assert_int_equal(d.n, 1);
    assert_string_equal(d.code[0], "unknown_unit");
    assert_true(kp_utf8_valid(d.msg[0], strlen(d.msg[0])));
    assert_true(file_exists(f->archive, name)); /* the archive keeps the bytes of the name */
    json_t *j = summary(f, name);
    assert_string_equal(json_string_value(json_object_get(j, "file")), "预算-2015-10.csv");
    json_t *r = json_array_get(json_object_get(j, "refused"), 0);
    const char *msg = json_string_value(json_object_get(r, "msg"));
    assert_non_null(msg);
    assert_non_null(strstr(msg, "局局局"));
    assert_true(strlen(msg) < 300);
    json_decref(j);
}

static void set_mtime(struct fx *f, const char *name, time_t t)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", f->drop, name);
    struct timespec ts[2] = {{t, 0}, {t, 0}};
    assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
}

/* Temp names, hidden files, Excel lock files and other patterns are never read; files are
 * read oldest first; the same name dropped again is archived beside the first one. */
static void test_ignored_files_order_and_names(void **state)
{
    struct fx *f = *state;
    const char *hdr = "单位名称,统计期间,执行率(%),记录编号,版本\n";
    char buf[512];
    const char *ignored[] = {".hidden.csv", "x.csv.tmp", "y.csv.part", "~$z.csv", "notes.txt"};
    for (size_t k = 0; k < 5; k++) {
        snprintf(buf, sizeof buf, "%s海城市政府,2015-06,60,IGN-%zu,0\n", hdr, k);
        char p[512];
        snprintf(p, sizeof p, "%s/%s", f->drop, ignored[k]);
        FILE *fp = fopen(p, "w");
        assert_non_null(fp);
        fputs(buf, fp);
        fclose(fp);
    }
    snprintf(buf, sizeof buf, "%s海城市政府,2015-06,61,B,0\n", hdr);
    drop_text(f, "b.CSV", buf);
    snprintf(buf, sizeof buf, "%s海城市政府,2015-06,62,A,0\n", hdr);
    drop_text(f, "a.csv", buf);
    set_mtime(f, "b.CSV", 1000000000); /* b is older: first */
    set_mtime(f, "a.csv", 1000000100);
    f->max_obs = 1;
    open_pump(f);
    drain(f);
    struct seen s;
    collect(f, &s);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.o[0].ref, "B");
    assert_string_equal(s.o[1].ref, "A");
    free(s.o);
    assert_int_equal(count_files(f->drop), 4); /* the hidden one is not counted */
    assert_true(file_exists(f->drop, ".hidden.csv"));
    assert_true(file_exists(f->archive, "a.csv"));
    assert_true(file_exists(f->archive, "b.CSV"));

    /* a.csv again (a corrected export): archived as a~2.csv, refusals filed under that */
    snprintf(buf, sizeof buf, "%s海城市政府,2015-06,63,A,1\n某某局,2015-06,1,Z,0\n", hdr);
    drop_text(f, "a.csv", buf);
    for (int k = 0; k < 100 && file_exists(f->drop, "a.csv"); k++) {
        sleep_ms(20); /* the watcher marks the folder; the next poll scans it */
        drain(f);
    }
    assert_false(file_exists(f->drop, "a.csv"));
    assert_true(file_exists(f->archive, "a~2.csv"));
    json_t *j = summary(f, "a~2.csv");
    assert_string_equal(json_string_value(json_object_get(j, "file")), "a.csv");
    assert_string_equal(json_string_value(json_object_get(j, "archived_as")), "a~2.csv");
    json_decref(j);
    static struct deadv d; /* large: not on the stack */
    dead_rows(f, "a~2.csv", &d);
    assert_int_equal(d.n, 1);
    assert_int_equal(d.line[0], 3);
}

/* A file without the configured columns, and a file over the size bound, are refused whole:
 * archived with the reason, one dead letter each, nothing sent. */
static void test_file_level_refusals(void **state)
{
    struct fx *f = *state;
    drop_text(f, "no-header.csv", "单位,期间,执行率\n海城市政府,2015-07,70\n");
    set_mtime(f, "no-header.csv", 1000000000);
    char big[4096];
    memset(big, 'x', sizeof big);
    drop_file(f, "big.csv", big, sizeof big);
    f->cfg.max_file_bytes = 1024;
    open_pump(f);
    assert_int_equal(drain(f), 0);
    assert_int_equal(count_files(f->drop), 0);
    json_t *j = summary(f, "no-header.csv");
    json_t *e = json_object_get(j, "error");
    assert_string_equal(json_string_value(json_object_get(e, "code")), "bad_header");
    assert_non_null(strstr(json_string_value(json_object_get(e, "msg")), "单位名称"));
    assert_int_equal(jint(j, "rows_read"), 0);
    json_decref(j);
    j = summary(f, "big.csv");
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "code")),
                        "too_large");
    json_decref(j);
    static struct deadv d; /* large: not on the stack */
    dead_rows(f, NULL, &d);
    assert_int_equal(d.n, 2);
    assert_string_equal(d.code[0], "too_large");
    assert_int_equal(d.line[0], 0);
    assert_string_equal(d.code[1], "bad_header");
    assert_int_equal(d.line[1], 1);
    assert_int_equal(kp_spool_next_seq(f->sp), 1); /* no batch */
}

static void many_rows(struct kp_buf *b, int from, int to, int bad_every)
{
    static const char *const names[] = {"海城市政府", "台安县政府", "岫岩县政府", "铁东区政府",
                                        "铁西区政府", "立山区政府", "千山区政府"};
    for (int k = from; k <= to; k++) {
        if (bad_every && k % bad_every == 0)
            kp_buf_printf(b, "%s,2015-08,N/A,M%d,0\r\n", names[k % 7], k);
        else
            kp_buf_printf(b, "\"%s\",2015-08,%d.%d,M%d,0\r\n", names[k % 7], k % 1000, k % 10, k);
    }
}

/* A crash between a poll and its store: the rows were read, not stored; after the restart
 * they are read again from the stored cursor, nothing lost or doubled. */
static void test_resume_after_crash(void **state)
{
    struct fx *f = *state;
    struct kp_buf b = {0};
    kp_buf_append_str(&b, "单位名称,统计期间,执行率(%),记录编号,版本\r\n");
    many_rows(&b, 1, 12, 5);
    drop_file(f, "r.csv", b.data, b.len);
    kp_buf_fini(&b);
    f->max_obs = 5;
    open_pump(f);
    char err[256];
    assert_int_equal(adp_pump_step(f->pump, err, sizeof err), 5);
    assert_int_equal(adp_pump_poll(f->pump, err, sizeof err), 5); /* never stored */
    close_pump(f);
    open_pump(f);
    assert_int_equal(drain(f), 7);
    struct seen s;
    collect(f, &s);
    assert_int_equal(s.n, 12);
    for (int k = 1; k <= 12; k++) {
        char ref[16];
        snprintf(ref, sizeof ref, "M%d", k);
        const struct ob *o = find_ref(&s, ref);
        assert_non_null(o);
        assert_int_equal(o->reason == KP_R_OK, k % 5 != 0);
    }
    free(s.o);
    static struct deadv d; /* large: not on the stack */
    dead_rows(f, NULL, &d);
    assert_int_equal(d.n, 2); /* M5 and M10 once each, though M5 was refused twice */
    assert_int_equal(d.line[0], 6);
    assert_int_equal(d.line[1], 11);
    assert_true(file_exists(f->archive, "r.csv"));
}

/* The file of the stored cursor is replaced by another file of the same name (an operator
 * put a corrected export in place): the new one is read from its start. */
static void test_replaced_file(void **state)
{
    struct fx *f = *state;
    struct kp_buf b = {0};
    kp_buf_append_str(&b, "单位名称,统计期间,执行率(%),记录编号,版本\r\n");
    many_rows(&b, 1, 10, 0);
    drop_file(f, "x.csv", b.data, b.len);
    f->max_obs = 4;
    open_pump(f);
    char err[256];
    assert_int_equal(adp_pump_step(f->pump, err, sizeof err), 4);
    close_pump(f);
    kp_buf_reset(&b);
    kp_buf_append_str(&b, "单位名称,统计期间,执行率(%),记录编号,版本\r\n");
    many_rows(&b, 101, 103, 0);
    drop_file(f, "x.csv", b.data, b.len);
    kp_buf_fini(&b);
    open_pump(f);
    drain(f);
    struct seen s;
    collect(f, &s);
    assert_int_equal(s.n, 7); /* M1..M4, then M101..M103 */
    assert_non_null(find_ref(&s, "M4"));
    assert_null(find_ref(&s, "M5"));
    assert_non_null(find_ref(&s, "M101"));
    assert_non_null(find_ref(&s, "M103"));
    free(s.o);
}

/* A file moved into the folder is seen through the file watcher, long before scan_ms. */
static void test_watcher_sees_new_file(void **state)
{
    struct fx *f = *state;
    f->cfg.scan_ms = 86400000;
    open_pump(f);
    assert_int_equal(drain(f), 0); /* the start-up scan: empty */
    assert_int_equal(drain(f), 0);
    drop_text(f, "w.csv",
              "单位名称,统计期间,执行率(%),记录编号,版本\n海城市政府,2015-09,90,W1,0\n");
    int got = 0;
    for (int k = 0; k < 100 && !got; k++) {
        sleep_ms(20);
        got = drain(f);
    }
    assert_int_equal(got, 1);
}

static void test_config_check(void **state)
{
    struct fx *f = *state;
    char err[400];
    assert_int_equal(adp_source_csv.check(&f->cfg, err, sizeof err), 0);
    struct src_csv_config c = f->cfg;
    c.map_val = NULL;
    assert_int_equal(adp_source_csv.check(&c, err, sizeof err), KP_ECONFIG);
    assert_non_null(strstr(err, "source.csv.map.val"));
    c = f->cfg;
    c.map_i = (char *)"指标";
    assert_int_equal(adp_source_csv.check(&c, err, sizeof err), KP_ECONFIG);
    assert_non_null(strstr(err, "exactly one"));
    c = f->cfg;
    c.unit_by_name = NULL;
    assert_int_equal(adp_source_csv.check(&c, err, sizeof err), KP_ECONFIG);
    assert_non_null(strstr(err, "source.csv.unit_by_name"));
    c = f->cfg;
    c.delimiter = (char *)"ab";
    assert_int_equal(adp_source_csv.check(&c, err, sizeof err), KP_ECONFIG);
    c = f->cfg;
    c.encoding = (char *)"big5";
    assert_int_equal(adp_source_csv.check(&c, err, sizeof err), KP_ECONFIG);
    c = f->cfg;
    c.map_p = NULL;
    c.period = (char *)"2015年3月";
    assert_int_equal(adp_source_csv.check(&c, err, sizeof err), 0);
    c.period = (char *)"2015-13";
    assert_int_equal(adp_source_csv.check(&c, err, sizeof err), KP_ECONFIG);

    /* init: folders must exist; a cursor of another source is refused */
    c = f->cfg;
    c.drop_dir = (char *)"/nonexistent/drop";
    f->cfg = c;
    assert_int_equal(open_pump_rc(f, err, sizeof err), KP_ECONFIG);
    assert_non_null(strstr(err, "source.csv.drop_dir"));
    finance_cfg(f);
    assert_int_equal(kp_spool_put(f->sp, 1, "x", 1, 1, "2024-01-01 00:00:00+00|7"), 0);
    assert_int_equal(open_pump_rc(f, err, sizeof err), KP_EINVAL);
    assert_non_null(strstr(err, "not a csv position"));

    /* the daemon's merged table knows the keys, nested in YAML */
    char path[256];
    snprintf(path, sizeof path, "%s/a.yaml", f->dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fprintf(fp,
            "aid: finance\nscheme: anshan-2015\nsrc: finance\nspool: %s/s2.db\n"
            "source:\n  driver: csv\n  csv:\n    drop_dir: %s\n    archive_dir: %s\n"
            "    unit_by_name: %s\n    indicator: budget_execution\n    skip_units: [合计]\n"
            "    map:\n      unit_name: 单位名称\n      p: 统计期间\n      val: \"执行率(%%)\"\n",
            f->dir, f->drop, f->archive, SCHEME_FILE);
    fclose(fp);
    struct adp_config *cfg = adp_config_new();
    kp_config_fini(adp_config_table(), cfg);
    if (kp_config_load(path, adp_config_table(), cfg, err, sizeof err) != 0)
        fail_msg("%s", err);
    if (adp_config_check(cfg, err, sizeof err) != 0)
        fail_msg("%s", err);
    struct src_csv_config *sc = adp_source_config(cfg, &adp_source_csv);
    assert_string_equal(sc->map_val, "执行率(%)");
    assert_string_equal(sc->skip_units[0], "合计");
    assert_true(sc->forward_refused);
    adp_config_destroy(&cfg);
}

static void test_dead_row_spool_api(void **state)
{
    struct fx *f = *state;
    assert_int_equal(kp_spool_open(f->path, 1u << 20, &f->sp), 0);
    assert_int_equal(kp_spool_dead_row(f->sp, "a.csv", 3, "bad_field", "first", "raw1"), 0);
    assert_int_equal(kp_spool_dead_row(f->sp, "a.csv", 3, "bad_field", "second", "raw2"), 0);
    assert_int_equal(kp_spool_dead_row(f->sp, "a.csv", 2, "missing_field", "m", NULL), 0);
    assert_int_equal(kp_spool_dead_row(f->sp, "b.csv", 1, "x", "y", "z"), 0);
    assert_int_equal(kp_spool_dead_row(f->sp, NULL, 1, "x", "y", "z"), KP_EINVAL);
    struct kp_spool_dead_row rows[2] = {{"c.csv", 9, "c", "m", "r", 0},
                                        {"c.csv", -1, "c", "m", "r", 0}};
    assert_int_equal(kp_spool_dead_rows(f->sp, rows, 2), KP_EINVAL); /* all or none */
    assert_int_equal(kp_spool_dead_rows(f->sp, rows, 1), 0);
    static struct deadv d; /* large: not on the stack */
    dead_rows(f, NULL, &d);
    assert_int_equal(d.n, 4);
    assert_string_equal(d.file[0], "a.csv");
    assert_int_equal(d.line[0], 2);
    assert_int_equal(d.line[1], 3);
    assert_string_equal(d.msg[1], "second");
    dead_rows(f, "a.csv", &d);
    assert_int_equal(d.n, 2);
    kp_spool_close(&f->sp);
    assert_int_equal(kp_spool_open(f->path, 1u << 20, &f->sp), 0); /* persists */
    dead_rows(f, NULL, &d);
    assert_int_equal(d.n, 4);
    struct kp_spool_stats st;
    assert_int_equal(kp_spool_stats(f->sp, &st), 0);
    assert_int_equal(st.dead, 0); /* dead batches only */
}

/* kill -9 of a pulling adapter at random moments, again and again, over three files with
 * refused rows: in the end every row is in the spool exactly once, every refused row in the
 * dead letters exactly once, every file archived with a summary that counts all of its rows
 * (issue 4: "exactly-once with crashes"). */
static void test_kill9_exactly_once(void **state)
{
    struct fx *f = *state;
    const int files = 3, per = 3000, bad_every = 37;
    for (int k = 0; k < files; k++) {
        struct kp_buf b = {0};
        kp_buf_append_str(
            &b, "2015年8月预算执行情况,,,,\r\n单位名称,统计期间,执行率(%),记录编号,版本\r\n");
        many_rows(&b, k * per + 1, (k + 1) * per, bad_every);
        char name[32];
        snprintf(name, sizeof name, "k%d.csv", k);
        size_t glen;
        char *g = to_gbk(kp_buf_cstr(&b), &glen);
        drop_file(f, name, g, glen);
        set_mtime(f, name, 1000000000 + k);
        free(g);
        kp_buf_fini(&b);
    }
    f->max_obs = 7;
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    int kills = 0;
    bool done = false;
    for (int round = 0; round < 2000 && !done; round++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            open_pump(f);
            for (;;) {
                char err[256];
                int n = adp_pump_step(f->pump, err, sizeof err);
                if (n < 0)
                    _exit(3);
                if (n == 0 && !adp_pump_more(f->pump))
                    _exit(0);
            }
        }
        /* a window that grows with the rounds: short enough to land in the middle of
         * files, long enough in the end for a slow (sanitizer) build to finish */
        sleep_ms(2 + rand() % (25 + 2 * round));
        int status = 0;
        if (kill(pid, SIGKILL) == 0)
            kills++;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (WIFEXITED(status)) {
            assert_int_equal(WEXITSTATUS(status), 0);
            done = true;
        }
    }
    assert_true(done);
    assert_true(kills >= 1);
    open_pump(f);
    assert_int_equal(drain(f), 0);
    struct seen s;
    collect(f, &s);
    int total = files * per;
    assert_int_equal(s.n, (size_t)total);
    int *count = calloc((size_t)total + 1, sizeof *count);
    assert_non_null(count);
    for (size_t k = 0; k < s.n; k++) {
        int id = atoi(s.o[k].ref + 1);
        assert_true(id >= 1 && id <= total);
        count[id]++;
        assert_int_equal(s.o[k].reason == KP_R_OK, id % bad_every != 0);
    }
    for (int id = 1; id <= total; id++)
        if (count[id] != 1)
            fail_msg("row M%d spooled %d times", id, count[id]);
    free(count);
    free(s.o);
    /* each refused row once, at its line: title and header, then row id - k * per */
    static struct deadv d; /* large: not on the stack */
    dead_rows(f, NULL, &d);
    assert_int_equal(d.n, (size_t)(total / bad_every));
    size_t at = 0;
    for (int k = 0; k < files; k++)
        for (int id = k * per + 1; id <= (k + 1) * per; id++) {
            if (id % bad_every)
                continue;
            char name[32];
            snprintf(name, sizeof name, "k%d.csv", k);
            assert_string_equal(d.file[at], name);
            assert_int_equal(d.line[at], id - k * per + 2);
            assert_string_equal(d.code[at], "bad_field");
            at++;
        }
    assert_int_equal(count_files(f->drop), 0);
    for (int k = 0; k < files; k++) {
        char name[32];
        snprintf(name, sizeof name, "k%d.csv", k);
        json_t *j = summary(f, name);
        int bad = 0;
        for (int id = k * per + 1; id <= (k + 1) * per; id++)
            bad += id % bad_every == 0;
        assert_int_equal(jint(j, "rows_read"), per);
        assert_int_equal(jint(j, "rows_refused"), bad);
        assert_int_equal(jint(j, "rows_sent"), per - bad);
        json_decref(j);
    }
    print_message("kill -9 test: %d kills, %zu batches\n", kills, s.batches);
}

int main(void)
{
    kp_log_init("adapter", "test", KP_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reader_rfc4180),
        cmocka_unit_test(test_decode),
        cmocka_unit_test(test_period_norm),
        cmocka_unit_test(test_units),
        cmocka_unit_test_setup_teardown(test_gbk_chinese_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_rows_lines_and_reasons, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_gbk_byte_and_no_forward, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gbk_file_name_and_long_cells, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ignored_files_order_and_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_level_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_after_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replaced_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watcher_sees_new_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_check, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_row_spool_api, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill9_exactly_once, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
