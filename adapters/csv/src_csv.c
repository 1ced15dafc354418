/*
 * src_csv: the `csv` drop-folder source plugin (see src_csv.h for the contract, the cursor
 * and the configuration). This file holds the file life cycle of issue 4: pick the oldest
 * complete file, read its rows from the committed offset into observations, record refused
 * rows as dead letters with file, line and reason, and once a poll finds nothing after the
 * committed offset — every row spooled or refused — write NAME.summary.json and move the file
 * to the archive. The position advances only when the runtime acks that a batch is durable
 * (adp_source.h "pull protocol"; ARCHITECTURE.md guarantee 1).
 */
#include "src_csv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "kp_buf.h"
#include "kp_err.h"
#include "kp_log.h"
#include "kp_msg.h"
#include "kp_spool.h"
#include "kp_time.h"
#include "src_csv_reader.h"

/* ---- configuration ------------------------------------------------------------------------ */

#define CFG(field) offsetof(struct src_csv_config, field)
static const struct kp_cfg_entry csv_config[] = {
    {"source.csv.drop_dir", KP_CFG_STR, NULL, 0, 0, CFG(drop_dir), false, false,
     "folder the department's CSV files are moved into (write a temp name, then rename)"},
    {"source.csv.archive_dir", KP_CFG_STR, NULL, 0, 0, CFG(archive_dir), false, false,
     "folder processed files move to, each with NAME.summary.json (same file system as "
     "drop_dir)"},
    {"source.csv.pattern", KP_CFG_STRLIST, "*.csv, *.CSV", 0, 0, CFG(pattern), false, false,
     "file name patterns to read (fnmatch); .*, ~$*, *.tmp and *.part are never read"},
    {"source.csv.encoding", KP_CFG_STR, "auto", 0, 0, CFG(encoding), false, false,
     "auto (UTF-8 when valid, else GBK), utf-8, gbk or gb18030"},
    {"source.csv.delimiter", KP_CFG_STR, ",", 0, 0, CFG(delimiter), false, false,
     "field delimiter: one ASCII character, or \"tab\""},
    {"source.csv.map.u", KP_CFG_STR, NULL, 0, 0, CFG(map_u), false, false,
     "header of the column holding unit codes"},
    {"source.csv.map.unit_name", KP_CFG_STR, NULL, 0, 0, CFG(map_unit_name), false, false,
     "header of the column holding unit names (needs source.csv.unit_by_name)"},
    {"source.csv.map.i", KP_CFG_STR, NULL, 0, 0, CFG(map_i), false, false,
     "header of the indicator code column (or set source.csv.indicator)"},
    {"source.csv.map.p", KP_CFG_STR, NULL, 0, 0, CFG(map_p), false, false,
     "header of the period column: 2015-03, 2015年3月, 2015年第1季度, ... (or set "
     "source.csv.period)"},
    {"source.csv.map.val", KP_CFG_STR, NULL, 0, 0, CFG(map_val), false, false,
     "header of the value column (a decimal number)"},
    {"source.csv.map.ref", KP_CFG_STR, NULL, 0, 0, CFG(map_ref), false, false,
     "header of the record id column (PROTOCOL.md ref); none: \"<file name>:<line>\""},
    {"source.csv.map.rev", KP_CFG_STR, NULL, 0, 0, CFG(map_rev), false, false,
     "header of the revision column (unsigned integer); none: 0"},
    {"source.csv.map.at", KP_CFG_STR, NULL, 0, 0, CFG(map_at), false, false,
     "header of the column with ms since the epoch when the source recorded the row"},
    {"source.csv.map.w", KP_CFG_STR, NULL, 0, 0, CFG(map_w), false, false,
     "header of the weight column (event-aggregate indicators)"},
    {"source.csv.unit_by_name", KP_CFG_STR, NULL, 0, 0, CFG(unit_by_name), false, false,
     "scheme YAML whose units map the names of source.csv.map.unit_name to codes (and "
     "against which unit codes are checked)"},
    {"source.csv.indicator", KP_CFG_STR, NULL, 0, 0, CFG(indicator), false, false,
     "indicator code of every row when the file has no indicator column"},
    {"source.csv.period", KP_CFG_STR, NULL, 0, 0, CFG(period), false, false,
     "period of every row when the file has no period column"},
    {"source.csv.skip_units", KP_CFG_STRLIST, NULL, 0, 0, CFG(skip_units), false, false,
     "unit cells of rows that are not data and are skipped, e.g. [合计, 小计]"},
    {"source.csv.dead_letters", KP_CFG_STR, "", 0, 0, CFG(dead_letters), false, false,
     "SQLite file of the refused rows (file, line, reason); the adapter's spool path keeps "
     "them with its other dead letters; \"\" = ARCHIVE_DIR/dead-letters.db"},
    {"source.csv.forward_refused", KP_CFG_BOOL, "true", 0, 0, CFG(forward_refused), false, false,
     "also send refused rows, failing fields left out, so that the scorer records a "
     "rejection for each"},
    {"source.csv.scan_ms", KP_CFG_MS, "10000", 100, 86400000, CFG(scan_ms), false, false,
     "list the drop folder at least this often (file events can be missed)"},
    {"source.csv.min_age_ms", KP_CFG_MS, "0", 0, 86400000, CFG(min_age_ms), false, false,
     "read a file only once its mtime is this old (for writers that cannot rename)"},
    {"source.csv.max_file_bytes", KP_CFG_BYTES, "64M", 1, 1073741824.0, CFG(max_file_bytes), false,
     false, "larger files are refused whole (moved to the archive with the reason)"},
    KP_CFG_END,
};

enum fld { F_U, F_NAME, F_I, F_P, F_VAL, F_REF, F_REV, F_AT, F_W, F__COUNT };
static const char *map_col(const struct src_csv_config *c, enum fld f)
{
    const char *v[F__COUNT] = {c->map_u,   c->map_unit_name, c->map_i,  c->map_p, c->map_val,
                               c->map_ref, c->map_rev,       c->map_at, c->map_w};
    return v[f] && v[f][0] ? v[f] : NULL;
}

static bool set(const char *s)
{
    return s && s[0];
}

static int parse_delim(const char *s, char *out)
{
    if (!s)
        return KP_EINVAL;
    if (strcmp(s, "tab") == 0 || strcmp(s, "\\t") == 0 || strcmp(s, "\t") == 0) {
        *out = '\t';
        return 0;
    }
    if (strlen(s) != 1 || s[0] == '"' || s[0] == '\r' || s[0] == '\n' ||
        (unsigned char)s[0] > 0x7E || ((unsigned char)s[0] < 0x20 && s[0] != '\t'))
        return KP_EINVAL;
    *out = s[0];
    return 0;
}

static int csv_check(const void *cfgp, char *err, size_t errlen)
{
    const struct src_csv_config *c = cfgp;
    if (!set(c->drop_dir)) {
        snprintf(err, errlen, "source.csv.drop_dir: required by source.driver csv");
        return KP_ECONFIG;
    }
    if (!set(c->archive_dir)) {
        snprintf(err, errlen, "source.csv.archive_dir: required by source.driver csv");
        return KP_ECONFIG;
    }
    if (strcmp(c->drop_dir, c->archive_dir) == 0) {
        snprintf(err, errlen, "source.csv.archive_dir: must not be the drop folder");
        return KP_ECONFIG;
    }
    enum csv_enc e;
    if (csv_enc_parse(c->encoding, &e) != 0) {
        snprintf(err, errlen, "source.csv.encoding: \"%s\" is not auto, utf-8, gbk or gb18030",
                 c->encoding ? c->encoding : "");
        return KP_ECONFIG;
    }
    char d;
    if (parse_delim(c->delimiter, &d) != 0) {
        snprintf(err, errlen,
                 "source.csv.delimiter: must be one printable ASCII character other than "
                 "'\"', or \"tab\"");
        return KP_ECONFIG;
    }
    if (!c->pattern || !c->pattern[0]) {
        snprintf(err, errlen, "source.csv.pattern: give at least one pattern");
        return KP_ECONFIG;
    }
    if (!map_col(c, F_VAL)) {
        snprintf(err, errlen, "source.csv.map.val: required: the header of the value column");
        return KP_ECONFIG;
    }
    if (!map_col(c, F_U) && !map_col(c, F_NAME)) {
        snprintf(err, errlen,
                 "source.csv.map.u: give the unit code column (map.u) or the unit "
                 "name column (map.unit_name)");
        return KP_ECONFIG;
    }
    if (map_col(c, F_NAME) && !set(c->unit_by_name)) {
        snprintf(err, errlen,
                 "source.csv.unit_by_name: required by source.csv.map.unit_name (the scheme "
                 "file whose units map names to codes)");
        return KP_ECONFIG;
    }
    if (!!map_col(c, F_I) == set(c->indicator)) {
        snprintf(err, errlen,
                 "source.csv.indicator: give exactly one of source.csv.map.i (a "
                 "column) and source.csv.indicator (a constant)");
        return KP_ECONFIG;
    }
    if (set(c->indicator) && !kp_code_valid(c->indicator, strlen(c->indicator))) {
        snprintf(err, errlen, "source.csv.indicator: must be 1-64 bytes of [A-Za-z0-9._:-]");
        return KP_ECONFIG;
    }
    if (!!map_col(c, F_P) == set(c->period)) {
        snprintf(err, errlen,
                 "source.csv.period: give exactly one of source.csv.map.p (a "
                 "column) and source.csv.period (a constant)");
        return KP_ECONFIG;
    }
    char pbuf[16];
    if (set(c->period) && !csv_period_norm(c->period, pbuf, sizeof pbuf)) {
        snprintf(err, errlen, "source.csv.period: \"%s\" is not a period", c->period);
        return KP_ECONFIG;
    }
    return 0;
}

/* ---- state --------------------------------------------------------------------------------- */

#define HEADER_SCAN      50   /* rows searched for the header */
#define RAW_MAX          1024 /* bytes of a refused row kept in its dead letter */
#define SUMMARY_LIST_MAX 1000 /* refused rows listed in a summary */
#define NAME_CAP         (NAME_MAX + 1)
#define ARCH_CAP         (NAME_MAX + 32)

struct fid {
    uint64_t dev, ino, size;
    int64_t mtime_s;
    long mtime_ns;
};

struct pos {
    char name[NAME_CAP];
    struct fid id;
    size_t off;
    long line;
};

/* The file being read. */
struct cfile {
    char name[NAME_CAP];
    char arch[ARCH_CAP];           /* the name it will have in the archive */
    char label[ARCH_CAP * 3];      /* arch as UTF-8: the dead letters' file */
    char name_label[NAME_CAP * 3]; /* name as UTF-8: refs and summaries */
    struct fid id;
    int64_t mtime_ms;
    struct csv_text text;
    int col[F__COUNT]; /* column index of each mapped field, -1 when not mapped */
    size_t data_off;   /* first byte after the header row */
    long data_line;
    long header_line;
    char ferr_code[24]; /* a refusal of the whole file */
    char ferr_msg[512];
    long ferr_line;
};

struct csv_state {
    const struct src_csv_config *cfg;
    struct adp_source_env env;
    char delim;
    enum csv_enc enc;
    char period[16]; /* the constant period, normalised */
    struct csv_units *units;
    struct kp_spool *dl; /* dead letters */
    char dl_path[PATH_MAX];

    bool have_pos; /* committed position */
    struct pos pos;
    bool pending; /* what the last poll would make true once acked */
    struct pos pend;

    struct cfile *cur;
    bool rescan;
    uint64_t last_scan_ns;

    /* the watcher: uv_fs_event on a loop and thread of its own */
    bool watching;
    uv_loop_t wloop;
    uv_thread_t wthread;
    uv_async_t wstop;
    uv_fs_event_t wev;
    atomic_bool dirty;
};

static void copy_text(char *dst, size_t cap, const char *s)
{
    snprintf(dst, cap, "%s", s);
}

/* s cut to at most max bytes on a UTF-8 character boundary (a cut character would make the
 * dead letter, the summary JSON and the log line invalid UTF-8). Returns buf. */
static const char *clip(char *buf, size_t cap, const char *s, size_t max)
{
    size_t n = strlen(s);
    if (max >= cap)
        max = cap - 1;
    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(buf, s, n);
    buf[n] = 0;
    return buf;
}

/* Drops an incomplete UTF-8 sequence at the end of s (left by a truncating snprintf). */
static void utf8_tail(char *s)
{
    size_t n = strlen(s), i = n;
    while (i > 0 && n - i < 4 && ((unsigned char)s[i - 1] & 0xC0) == 0x80)
        i--;
    if (i == 0)
        return;
    unsigned char lead = (unsigned char)s[i - 1];
    size_t want = lead < 0x80 ? 1 : lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (i - 1 + want > n)
        s[i - 1] = 0;
}

/* A file name as UTF-8 for dead letters, refs and summaries: as it is when it is UTF-8, else
 * read as GBK (a Windows share that passes GBK names through). */
static void utf8_label(const char *raw, char *out, size_t cap)
{
    if (kp_utf8_valid(raw, strlen(raw))) {
        clip(out, cap, raw, cap - 1);
        return;
    }
    struct csv_text t;
    if (csv_decode(raw, strlen(raw), CSV_ENC_GBK, &t) == 0) {
        clip(out, cap, t.data, cap - 1);
        csv_text_fini(&t);
    } else {
        clip(out, cap, "(file name not decodable)", cap - 1);
    }
}

static void fid_of(const struct stat *sb, struct fid *id)
{
    id->dev = (uint64_t)sb->st_dev;
    id->ino = (uint64_t)sb->st_ino;
    id->size = (uint64_t)sb->st_size;
    id->mtime_s = (int64_t)sb->st_mtim.tv_sec;
    id->mtime_ns = sb->st_mtim.tv_nsec;
}

static bool fid_eq(const struct fid *a, const struct fid *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size && a->mtime_s == b->mtime_s &&
           a->mtime_ns == b->mtime_ns;
}

/* ---- cursor -------------------------------------------------------------------------------- */

static void cursor_text(const struct pos *p, char *buf, size_t cap)
{
    snprintf(buf, cap, "csv1|%zu|%ld|%" PRIu64 "|%" PRIu64 "|%" PRIu64 "|%" PRId64 ".%09ld|%s",
             p->off, p->line, p->id.dev, p->id.ino, p->id.size, p->id.mtime_s, p->id.mtime_ns,
             p->name);
}

static bool next_u64(const char **s, char stop, uint64_t *v)
{
    const char *p = *s;
    if (*p < '0' || *p > '9')
        return false;
    errno = 0;
    char *end;
    unsigned long long x = strtoull(p, &end, 10);
    if (errno || *end != stop)
        return false;
    *v = x;
    *s = end + 1;
    return true;
}

/* "" → *have = false. */
static int parse_cursor(const char *c, struct pos *p, bool *have)
{
    *have = false;
    memset(p, 0, sizeof *p);
    if (!c || !c[0])
        return 0;
    if (strncmp(c, "csv1|", 5) != 0)
        return KP_EINVAL;
    const char *s = c + 5;
    uint64_t off, line, dev, ino, size, ms, ns;
    if (!next_u64(&s, '|', &off) || !next_u64(&s, '|', &line) || !next_u64(&s, '|', &dev) ||
        !next_u64(&s, '|', &ino) || !next_u64(&s, '|', &size) || !next_u64(&s, '.', &ms) ||
        !next_u64(&s, '|', &ns) || !*s || strlen(s) >= sizeof p->name || strchr(s, '/') ||
        off > SIZE_MAX / 2 || line > LONG_MAX || ms > INT64_MAX || ns > 999999999)
        return KP_EINVAL;
    p->off = (size_t)off;
    p->line = (long)line;
    p->id.dev = dev;
    p->id.ino = ino;
    p->id.size = size;
    p->id.mtime_s = (int64_t)ms;
    p->id.mtime_ns = (long)ns;
    copy_text(p->name, sizeof p->name, s);
    *have = true;
    return 0;
}

/* ---- the watcher ---------------------------------------------------------------------------- */

static void on_fs_event(uv_fs_event_t *h, const char *filename, int events, int status)
{
    (void)filename;
    (void)events;
    (void)status; /* an error (an overflowed queue) is a reason to look as well */
    struct csv_state *st = h->data;
    atomic_store(&st->dirty, true);
}

static void on_wstop(uv_async_t *a)
{
    struct csv_state *st = a->data;
    uv_close((uv_handle_t *)&st->wev, NULL);
    uv_close((uv_handle_t *)&st->wstop, NULL);
}

static void watch_main(void *arg)
{
    struct csv_state *st = arg;
    uv_run(&st->wloop, UV_RUN_DEFAULT);
}

static void watch_start(struct csv_state *st)
{
    if (uv_loop_init(&st->wloop) != 0)
        return;
    int rc = uv_fs_event_init(&st->wloop, &st->wev);
    if (rc == 0) {
        st->wev.data = st;
        rc = uv_fs_event_start(&st->wev, on_fs_event, st->cfg->drop_dir, 0);
        if (rc != 0)
            uv_close((uv_handle_t *)&st->wev, NULL);
    }
    if (rc == 0) {
        uv_async_init(&st->wloop, &st->wstop, on_wstop);
        st->wstop.data = st;
        if (uv_thread_create(&st->wthread, watch_main, st) == 0) {
            st->watching = true;
            return;
        }
        uv_close((uv_handle_t *)&st->wev, NULL);
        uv_close((uv_handle_t *)&st->wstop, NULL);
    }
    uv_run(&st->wloop, UV_RUN_DEFAULT); /* runs the close callbacks */
    uv_loop_close(&st->wloop);
    KP_WARN("csv_watch_unavailable",
            "adapter=%s scheme=%s dir=%s err=%s msg=\"new files are found by scanning every "
            "source.csv.scan_ms\"",
            st->env.aid, st->env.scheme, st->cfg->drop_dir, uv_err_name(rc));
}

static void watch_stop(struct csv_state *st)
{
    if (!st->watching)
        return;
    uv_async_send(&st->wstop);
    uv_thread_join(&st->wthread);
    uv_loop_close(&st->wloop);
    st->watching = false;
}

/* ---- rows ---------------------------------------------------------------------------------- */

enum row_kind { ROW_BLANK, ROW_SKIP, ROW_GOOD, ROW_BAD };

enum out_f { O_U, O_I, O_P, O_VAL, O_REF, O_REV, O_AT, O_W, O__COUNT };

struct row {
    enum row_kind kind;
    const char *v[O__COUNT]; /* the record to send (good, or refused and forwarded) */
    bool forward;
    char code[24];
    char msg[600];
    /* storage */
    struct kp_buf cells; /* trimmed cell values */
    size_t cell_off[F__COUNT];
    bool cell_has[F__COUNT];
    char period[16];
    char ref[KP_REF_MAX + 1];
};

static bool is_space_at(const char *s, size_t *len)
{
    const unsigned char *p = (const unsigned char *)s;
    if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') {
        *len = 1;
        return true;
    }
    if (p[0] == 0xE3 && p[1] == 0x80 && p[2] == 0x80) { /* U+3000 */
        *len = 3;
        return true;
    }
    if (p[0] == 0xC2 && p[1] == 0xA0) { /* U+00A0 */
        *len = 2;
        return true;
    }
    return false;
}

/* Trimmed [b, e) of s. */
static void trim(const char *s, size_t n, size_t *b, size_t *e)
{
    size_t i = 0, k;
    while (i < n && is_space_at(s + i, &k))
        i += k;
    size_t j = n;
    for (;;) {
        /* step back over one trailing space character, if any */
        if (j > i && (s[j - 1] == ' ' || s[j - 1] == '\t' || s[j - 1] == '\r' || s[j - 1] == '\n'))
            j--;
        else if (j >= i + 3 && (unsigned char)s[j - 3] == 0xE3 && (unsigned char)s[j - 2] == 0x80 &&
                 (unsigned char)s[j - 1] == 0x80)
            j -= 3;
        else if (j >= i + 2 && (unsigned char)s[j - 2] == 0xC2 && (unsigned char)s[j - 1] == 0xA0)
            j -= 2;
        else
            break;
    }
    *b = i;
    *e = j;
}

/* A decimal number as PROTOCOL.md val and w: [+-]digits[.digits][e[+-]digits]. */
static bool strict_number(const char *s, double *out)
{
    const char *p = s;
    if (*p == '+' || *p == '-')
        p++;
    size_t nd = 0;
    while (*p >= '0' && *p <= '9') {
        p++;
        nd++;
    }
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') {
            p++;
            nd++;
        }
    }
    if (nd == 0)
        return false;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (*p < '0' || *p > '9')
            return false;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p)
        return false;
    *out = strtod(s, NULL);
    return true;
}

/* What adp_batch sends as a string (and the scorer refuses as bad_type): text strtod does not
 * read whole. */
static bool runtime_non_number(const char *s)
{
    if (!*s)
        return true;
    char *end;
    (void)strtod(s, &end);
    return end == s || *end != 0;
}

static bool all_digits(const char *s, bool sign)
{
    if (sign && (*s == '-' || *s == '+'))
        s++;
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

static bool in_list(char **list, const char *s)
{
    for (size_t k = 0; list && list[k]; k++)
        if (strcmp(list[k], s) == 0)
            return true;
    return false;
}

/* The first refusal of a row names it; later ones only make their fields fail. */
static void refuse(struct row *w, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void refuse(struct row *w, const char *code, const char *fmt, ...)
{
    if (w->kind == ROW_BAD)
        return;
    w->kind = ROW_BAD;
    copy_text(w->code, sizeof w->code, code);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->msg, sizeof w->msg, fmt, ap);
    va_end(ap);
    utf8_tail(w->msg);
}

static void row_init(struct row *w)
{
    memset(w, 0, sizeof *w);
}

static void row_fini(struct row *w)
{
    kp_buf_fini(&w->cells);
}

static const char *cell(const struct row *w, enum fld f)
{
    return w->cell_has[f] ? (const char *)w->cells.data + w->cell_off[f] : NULL;
}

/* Classifies one record of file f and fills w. */
static void classify(const struct csv_state *st, const struct cfile *f, const struct csv_reader *rd,
                     const struct csv_rec *rec, struct row *w)
{
    const struct src_csv_config *c = st->cfg;
    char cb[160]; /* a cell's text, clipped for a message */
    kp_buf_reset(&w->cells);
    memset(w->cell_has, 0, sizeof w->cell_has);
    memset(w->v, 0, sizeof w->v);
    w->kind = ROW_GOOD;
    w->forward = false;
    w->code[0] = w->msg[0] = 0;
    if (csv_rec_blank(rd, rec)) {
        w->kind = ROW_BLANK;
        return;
    }
    /* the trimmed cells of the mapped columns */
    bool bad_bytes[F__COUNT] = {false};
    for (int k = 0; k < F__COUNT; k++) {
        int col = f->col[k];
        if (col < 0 || (size_t)col >= rec->nf)
            continue;
        const char *raw = csv_reader_value(rd, rec, (size_t)col);
        size_t b, e;
        trim(raw, strlen(raw), &b, &e);
        if (e <= b)
            continue; /* empty: absent */
        w->cell_off[k] = w->cells.len;
        kp_buf_append(&w->cells, raw + b, e - b);
        kp_buf_append(&w->cells, "", 1);
        w->cell_has[k] = true;
        bad_bytes[k] = csv_text_bad_in(&f->text, rd->f[col].start, rd->f[col].end) != NULL ||
                       strstr(raw, "\xEF\xBF\xBD") != NULL;
    }
    const char *cu = cell(w, F_U), *cn = cell(w, F_NAME);
    if ((cu && in_list(c->skip_units, cu)) || (cn && in_list(c->skip_units, cn))) {
        w->kind = ROW_SKIP;
        return;
    }
    if (rec->err)
        refuse(w, "bad_csv", "%s", rec->err);
    for (int k = 0; k < F__COUNT; k++)
        if (bad_bytes[k]) {
            const struct csv_badseq *bs =
                csv_text_bad_in(&f->text, rd->f[f->col[k]].start, rd->f[f->col[k]].end);
            if (bs)
                refuse(w, "bad_encoding",
                       "column %s holds byte 0x%02X (file offset %zu) that is not valid %s",
                       map_col(c, (enum fld)k), bs->byte, bs->in_off, csv_enc_name(f->text.enc));
            else
                refuse(w, "bad_encoding", "column %s holds U+FFFD (text that was not decodable)",
                       map_col(c, (enum fld)k));
        }
    bool ok[O__COUNT];
    for (int k = 0; k < O__COUNT; k++)
        ok[k] = true;

    /* unit */
    const char *u = NULL;
    if (cu && !bad_bytes[F_U]) {
        if (!kp_code_valid(cu, strlen(cu)))
            refuse(w, "bad_field", "unit code \"%s\" (column %s) is not a code",
                   clip(cb, sizeof cb, cu, 80), c->map_u);
        else if (st->units && !csv_units_has_code(st->units, cu))
            refuse(w, "unknown_unit", "unit code %s (column %s) is not a unit of scheme %s", cu,
                   c->map_u, st->env.scheme);
        else
            u = cu;
    } else if (cn && !bad_bytes[F_NAME]) {
        u = csv_units_code(st->units, cn);
        if (!u)
            refuse(w, "unknown_unit", "unit name \"%s\" (column %s) is not a unit of scheme %s",
                   clip(cb, sizeof cb, cn, 120), c->map_unit_name, st->env.scheme);
    } else if (!cu && !cn) {
        refuse(w, "missing_field", "column %s is empty",
               map_col(c, F_U) ? c->map_u : c->map_unit_name);
    }
    ok[O_U] = u != NULL;
    w->v[O_U] = u;

    /* indicator */
    const char *i = set(c->indicator) ? c->indicator : cell(w, F_I);
    if (!set(c->indicator)) {
        if (!i)
            refuse(w, "missing_field", "column %s is empty", c->map_i);
        else if (!bad_bytes[F_I] && !kp_code_valid(i, strlen(i)))
            refuse(w, "bad_field", "indicator \"%s\" (column %s) is not a code",
                   clip(cb, sizeof cb, i, 80), c->map_i);
        ok[O_I] = i && !bad_bytes[F_I] && kp_code_valid(i, strlen(i));
    }
    w->v[O_I] = ok[O_I] ? i : NULL;

    /* period */
    if (set(c->period)) {
        copy_text(w->period, sizeof w->period, st->period);
    } else {
        const char *p = cell(w, F_P);
        ok[O_P] = false;
        if (!p)
            refuse(w, "missing_field", "column %s is empty", c->map_p);
        else if (!bad_bytes[F_P] && !csv_period_norm(p, w->period, sizeof w->period))
            refuse(w, "bad_period", "\"%s\" (column %s) is not a period",
                   clip(cb, sizeof cb, p, 40), c->map_p);
        else if (!bad_bytes[F_P])
            ok[O_P] = true;
    }
    w->v[O_P] = ok[O_P] ? w->period : NULL;

    /* value */
    const char *val = cell(w, F_VAL);
    double d;
    ok[O_VAL] = false;
    if (!val)
        refuse(w, "missing_field", "column %s is empty", c->map_val);
    else if (bad_bytes[F_VAL]) {
        /* refused above */
    } else if (!strict_number(val, &d))
        refuse(w, "bad_field", "\"%s\" (column %s) is not a number", clip(cb, sizeof cb, val, 40),
               c->map_val);
    else if (!isfinite(d))
        refuse(w, "not_finite", "%s (column %s) is out of the range of a double",
               clip(cb, sizeof cb, val, 40), c->map_val);
    else
        ok[O_VAL] = true;
    w->v[O_VAL] = val;

    /* ref */
    if (map_col(c, F_REF)) {
        const char *ref = cell(w, F_REF);
        ok[O_REF] = false;
        if (!ref)
            refuse(w, "missing_field", "column %s is empty", c->map_ref);
        else if (bad_bytes[F_REF]) {
        } else if (strlen(ref) > KP_REF_MAX)
            refuse(w, "bad_field", "column %s is longer than %d bytes", c->map_ref, KP_REF_MAX);
        else {
            copy_text(w->ref, sizeof w->ref, ref);
            ok[O_REF] = true;
        }
    } else {
        char num[32];
        int nn = snprintf(num, sizeof num, ":%ld", rec->line);
        char nb[KP_REF_MAX + 1];
        /* clip leaves room for num: nothing is cut (the result is used for GCC's sake) */
        if (snprintf(w->ref, sizeof w->ref, "%s%s",
                     clip(nb, sizeof nb, f->name_label, KP_REF_MAX - (size_t)nn), num) < 0)
            w->ref[0] = 0;
    }
    w->v[O_REF] = ok[O_REF] ? w->ref : NULL;

    /* rev, at, w */
    const char *rev = cell(w, F_REV), *at = cell(w, F_AT), *wt = cell(w, F_W);
    if (rev && !bad_bytes[F_REV]) {
        errno = 0;
        bool good = all_digits(rev, false);
        if (good) {
            (void)strtoull(rev, NULL, 10);
            good = errno == 0;
        }
        if (!good)
            refuse(w, "bad_field", "revision \"%s\" (column %s) is not an unsigned integer",
                   clip(cb, sizeof cb, rev, 40), c->map_rev);
        ok[O_REV] = good;
    }
    if (at && !bad_bytes[F_AT]) {
        errno = 0;
        bool good = all_digits(at, true);
        if (good) {
            (void)strtoll(at, NULL, 10);
            good = errno == 0;
        }
        if (!good)
            refuse(w, "bad_field", "\"%s\" (column %s) is not ms since the epoch",
                   clip(cb, sizeof cb, at, 40), c->map_at);
        ok[O_AT] = good;
    }
    if (wt && !bad_bytes[F_W]) {
        bool good = strict_number(wt, &d) && isfinite(d);
        if (!good)
            refuse(w, "bad_field", "weight \"%s\" (column %s) is not a finite number",
                   clip(cb, sizeof cb, wt, 40), c->map_w);
        ok[O_W] = good;
    }
    for (int k = F_REV; k <= F_W; k++)
        if (bad_bytes[k])
            ok[O_REV + (k - F_REV)] = false;
    w->v[O_REV] = rev && ok[O_REV] ? rev : NULL;
    w->v[O_AT] = at && ok[O_AT] ? at : NULL;
    w->v[O_W] = wt && ok[O_W] ? wt : NULL;

    if (w->kind == ROW_GOOD) {
        w->forward = true;
        return;
    }
    /* Refused: forward it (when configured) so that the scorer refuses it as well, with
     * every failing field left out; val as read when the runtime sends it as text (the
     * scorer then names it bad_type), else left out when anything failed. The record must
     * never be one the scorer could accept (ARCHITECTURE.md guarantee 1: exactly one end). */
    w->forward = c->forward_refused;
    if (!ok[O_VAL])
        w->v[O_VAL] = val && !bad_bytes[F_VAL] && runtime_non_number(val) ? val : NULL;
    bool certain = !w->v[O_U] || !w->v[O_I] || !w->v[O_P] || !w->v[O_REF] || !w->v[O_VAL] ||
                   runtime_non_number(w->v[O_VAL]);
    if (!certain)
        w->v[O_VAL] = NULL;
}

/* ---- files ---------------------------------------------------------------------------------- */

static void cfile_free(struct cfile **fp)
{
    if (!*fp)
        return;
    csv_text_fini(&(*fp)->text);
    free(*fp);
    *fp = NULL;
}

static void path_in(char *buf, size_t cap, const char *dir, const char *name)
{
    snprintf(buf, cap, "%s/%s", dir, name);
}

static bool exists(const char *dir, const char *name)
{
    char p[PATH_MAX];
    path_in(p, sizeof p, dir, name);
    struct stat sb;
    return lstat(p, &sb) == 0;
}

/* The first free name in the archive: NAME, then STEM~2.EXT, STEM~3.EXT, ... */
static int archive_name(const struct csv_state *st, const char *name, char *out, size_t cap)
{
    if (!exists(st->cfg->archive_dir, name)) {
        copy_text(out, cap, name);
        return 0;
    }
    const char *dot = strrchr(name, '.');
    size_t stem = dot && dot != name ? (size_t)(dot - name) : strlen(name);
    for (int k = 2; k < 100000; k++) {
        snprintf(out, cap, "%.*s~%d%s", (int)stem, name, k, name + stem);
        if (!exists(st->cfg->archive_dir, out))
            return 0;
    }
    return KP_EIO;
}

/* Finds the header row and the columns. */
static void find_header(const struct csv_state *st, struct cfile *f)
{
    const struct src_csv_config *c = st->cfg;
    for (int k = 0; k < F__COUNT; k++)
        f->col[k] = -1;
    struct csv_reader rd;
    csv_reader_init(&rd, f->text.data, f->text.len, st->delim, 0, 1);
    struct csv_rec rec;
    int seen = 0, best = -1;
    long best_line = 0;
    char missing[300] = "";
    while (seen < HEADER_SCAN && csv_reader_next(&rd, &rec)) {
        if (csv_rec_blank(&rd, &rec))
            continue;
        seen++;
        int col[F__COUNT], found = 0, need = 0;
        char miss[300] = "";
        for (int k = 0; k < F__COUNT; k++) {
            col[k] = -1;
            const char *want = map_col(c, (enum fld)k);
            if (!want)
                continue;
            need++;
            for (size_t j = 0; j < rec.nf; j++) {
                const char *v = csv_reader_value(&rd, &rec, j);
                size_t b, e;
                trim(v, strlen(v), &b, &e);
                if (e - b == strlen(want) && memcmp(v + b, want, e - b) == 0) {
                    col[k] = (int)j;
                    break;
                }
            }
            if (col[k] >= 0)
                found++;
            else
                snprintf(miss + strlen(miss), sizeof miss - strlen(miss), "%s%s",
                         miss[0] ? ", " : "", want);
        }
        if (found == need) {
            memcpy(f->col, col, sizeof col);
            f->header_line = rec.line;
            f->data_off = rec.next;
            f->data_line = rec.next_line;
            csv_reader_fini(&rd);
            return;
        }
        if (found > best) {
            best = found;
            best_line = rec.line;
            copy_text(missing, sizeof missing, miss);
        }
    }
    csv_reader_fini(&rd);
    copy_text(f->ferr_code, sizeof f->ferr_code, "bad_header");
    f->ferr_line = best_line;
    if (best < 0)
        snprintf(f->ferr_msg, sizeof f->ferr_msg, "the file holds no rows");
    else
        snprintf(f->ferr_msg, sizeof f->ferr_msg,
                 "no row within the first %d holds every configured column; the closest (line "
                 "%ld) lacks %s",
                 HEADER_SCAN, best_line, missing);
}

/* Opens, reads and decodes drop/name. *f = NULL (and 0) when the file vanished. */
static int load(struct csv_state *st, const char *name, struct cfile **out, char *err,
                size_t errlen)
{
    *out = NULL;
    char path[PATH_MAX];
    path_in(path, sizeof path, st->cfg->drop_dir, name);
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errlen, "open %s: %s", path, strerror(errno));
        return KP_EIO;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        close(fd);
        return KP_EIO;
    }
    struct cfile *f = kp_xcalloc(1, sizeof *f);
    copy_text(f->name, sizeof f->name, name);
    fid_of(&sb, &f->id);
    f->mtime_ms = (int64_t)sb.st_mtim.tv_sec * 1000 + sb.st_mtim.tv_nsec / 1000000;
    for (int k = 0; k < F__COUNT; k++)
        f->col[k] = -1;
    int rc = 0;
    if ((long long)sb.st_size > st->cfg->max_file_bytes) {
        copy_text(f->ferr_code, sizeof f->ferr_code, "too_large");
        snprintf(f->ferr_msg, sizeof f->ferr_msg,
                 "%lld bytes, more than source.csv.max_file_bytes (%lld)", (long long)sb.st_size,
                 st->cfg->max_file_bytes);
    } else {
        size_t size = (size_t)sb.st_size, got = 0;
        char *buf = kp_xmalloc(size + 1);
        while (got < size) {
            ssize_t r = read(fd, buf + got, size - got);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            got += (size_t)r;
        }
        char extra;
        if (got != size || read(fd, &extra, 1) != 0) {
            snprintf(err, errlen,
                     "%s: changed while being read (%zu of %zu bytes): files must be complete "
                     "when they appear in the folder",
                     path, got, size);
            rc = KP_EAGAIN;
        } else {
            rc = csv_decode(buf, size, st->enc, &f->text);
            if (rc != 0)
                snprintf(err, errlen, "iconv cannot decode %s", csv_enc_name(st->enc));
        }
        free(buf);
        if (rc == 0)
            find_header(st, f);
    }
    close(fd);
    if (rc == 0 && archive_name(st, name, f->arch, sizeof f->arch) != 0) {
        snprintf(err, errlen, "%s: no free name in the archive", name);
        rc = KP_EIO;
    }
    if (rc == 0) {
        utf8_label(f->arch, f->label, sizeof f->label);
        utf8_label(f->name, f->name_label, sizeof f->name_label);
    }
    if (rc != 0) {
        cfile_free(&f);
        return rc;
    }
    *out = f;
    return 0;
}

static bool name_ok(const struct src_csv_config *c, const char *n)
{
    size_t len = strlen(n);
    if (n[0] == '.' || strncmp(n, "~$", 2) == 0)
        return false;
    if ((len >= 4 && strcmp(n + len - 4, ".tmp") == 0) ||
        (len >= 5 && strcmp(n + len - 5, ".part") == 0))
        return false;
    for (size_t k = 0; c->pattern && c->pattern[k]; k++)
        if (fnmatch(c->pattern[k], n, FNM_PERIOD) == 0)
            return true;
    return false;
}

/* The oldest complete file of the drop folder (mtime, then name), or "" when none. */
static int scan(struct csv_state *st, char *best, size_t cap, char *err, size_t errlen)
{
    best[0] = 0;
    DIR *d = opendir(st->cfg->drop_dir);
    if (!d) {
        snprintf(err, errlen, "source.csv.drop_dir: %s: %s", st->cfg->drop_dir, strerror(errno));
        return KP_EIO;
    }
    int64_t best_ns = 0, now_ms = kp_now_ms();
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!name_ok(st->cfg, e->d_name))
            continue;
        char p[PATH_MAX];
        path_in(p, sizeof p, st->cfg->drop_dir, e->d_name);
        struct stat sb;
        if (lstat(p, &sb) != 0 || !S_ISREG(sb.st_mode))
            continue;
        int64_t mt_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
        if (st->cfg->min_age_ms > 0 && mt_ns / 1000000 > now_ms - st->cfg->min_age_ms) {
            st->rescan = true; /* look again at the next poll */
            continue;
        }
        if (!best[0] || mt_ns < best_ns || (mt_ns == best_ns && strcmp(e->d_name, best) < 0)) {
            copy_text(best, cap, e->d_name);
            best_ns = mt_ns;
        }
    }
    closedir(d);
    return 0;
}

/* Makes st->cur the file to read: the cursor's when it still waits, else the oldest one when a
 * scan is due. */
static int pick(struct csv_state *st, char *err, size_t errlen)
{
    if (st->have_pos) {
        char p[PATH_MAX];
        path_in(p, sizeof p, st->cfg->drop_dir, st->pos.name);
        struct stat sb;
        struct fid id;
        if (lstat(p, &sb) == 0 && S_ISREG(sb.st_mode)) {
            fid_of(&sb, &id);
        } else {
            st->have_pos = false; /* archived: the position means nothing any more */
            goto scan;
        }
        struct cfile *f = NULL;
        int rc = fid_eq(&id, &st->pos.id) ? load(st, st->pos.name, &f, err, errlen) : 0;
        if (rc != 0)
            return rc;
        if (f && fid_eq(&f->id, &st->pos.id)) {
            st->cur = f;
            return 0;
        }
        KP_WARN("csv_file_replaced",
                "adapter=%s scheme=%s file=%s msg=\"the file of the stored cursor was replaced "
                "by another one of the same name: that one is read from its start\"",
                st->env.aid, st->env.scheme, st->pos.name);
        cfile_free(&f);
        st->have_pos = false;
        st->rescan = true;
    }
scan:;
    uint64_t now = kp_mono_ns();
    bool due = st->rescan || atomic_exchange(&st->dirty, false) ||
               now - st->last_scan_ns >= (uint64_t)st->cfg->scan_ms * 1000000u;
    if (!due)
        return 0;
    st->rescan = false;
    st->last_scan_ns = now;
    char name[NAME_CAP];
    int rc = scan(st, name, sizeof name, err, errlen);
    if (rc != 0 || !name[0])
        return rc;
    rc = load(st, name, &st->cur, err, errlen);
    if (rc == 0 && !st->cur)
        st->rescan = true; /* vanished between the scan and the open */
    return rc;
}

/* ---- dead letters -----------------------------------------------------------------------------
 */

struct dead {
    struct kp_spool_dead_row *rows;
    size_t n, cap;
};

static void dead_add(struct dead *d, const char *file, long line, const char *code, const char *msg,
                     const char *raw, size_t raw_len)
{
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 16;
        d->rows = kp_xrealloc(d->rows, d->cap * sizeof *d->rows);
    }
    if (raw_len > RAW_MAX) { /* keep whole UTF-8 characters */
        raw_len = RAW_MAX;
        while (raw_len > 0 && ((unsigned char)raw[raw_len] & 0xC0) == 0x80)
            raw_len--;
    }
    char *r = NULL;
    if (raw) {
        r = kp_xmalloc(raw_len + 1);
        memcpy(r, raw, raw_len);
        r[raw_len] = 0;
    }
    struct kp_spool_dead_row *x = &d->rows[d->n++];
    x->file = kp_xstrdup(file);
    x->line = line;
    x->code = kp_xstrdup(code);
    x->msg = kp_xstrdup(msg);
    x->raw = r;
    x->at_ms = 0;
}

static void dead_fini(struct dead *d)
{
    for (size_t k = 0; k < d->n; k++) {
        free((char *)(uintptr_t)d->rows[k].file);
        free((char *)(uintptr_t)d->rows[k].code);
        free((char *)(uintptr_t)d->rows[k].msg);
        free((char *)(uintptr_t)d->rows[k].raw);
    }
    free(d->rows);
    memset(d, 0, sizeof *d);
}

/* ---- reading rows -----------------------------------------------------------------------------
 */

static void start_of(const struct csv_state *st, const struct cfile *f, size_t *off, long *line)
{
    *off = f->data_off;
    *line = f->data_line;
    if (st->have_pos && strcmp(st->pos.name, f->name) == 0 && fid_eq(&st->pos.id, &f->id) &&
        st->pos.off > f->data_off) {
        /* the line stored with the position (counting it again would cost a pass over the
         * text per poll); only an offset past the end (not from this text) is recounted */
        *off = st->pos.off;
        *line = st->pos.line;
        if (*off > f->text.len) {
            *off = f->text.len;
            *line = csv_line_at(f->text.data, *off) + 1;
        }
    }
}

static struct adp_rec rec_of(const struct row *w)
{
    struct adp_rec r = {w->v[O_U],   w->v[O_I],   w->v[O_P],  w->v[O_VAL],
                        w->v[O_REF], w->v[O_REV], w->v[O_AT], w->v[O_W]};
    return r;
}

/* Reads rows of the current file from its committed position into out. Returns the records
 * added (0: the file holds nothing more) or a KP_E*. */
static int read_rows(struct csv_state *st, struct adp_out *out, char *err, size_t errlen)
{
    struct cfile *f = st->cur;
    size_t off;
    long line;
    start_of(st, f, &off, &line);
    struct csv_reader rd;
    csv_reader_init(&rd, f->text.data, f->text.len, st->delim, off, line);
    struct csv_rec rec;
    struct row w;
    row_init(&w);
    struct dead dl = {0};
    int n = 0;
    size_t refused = 0;
    while (adp_out_room(out) > 0 && csv_reader_next(&rd, &rec)) {
        classify(st, f, &rd, &rec, &w);
        if (w.kind == ROW_BAD) {
            dead_add(&dl, f->label, rec.line, w.code, w.msg, f->text.data + rec.off,
                     rec.end - rec.off);
            refused++;
            KP_DEBUG("csv_row_refused", "adapter=%s file=%s line=%ld code=%s", st->env.aid, f->name,
                     rec.line, w.code);
        }
        if ((w.kind == ROW_GOOD || w.kind == ROW_BAD) && w.forward) {
            struct adp_rec r = rec_of(&w);
            int rc = adp_out_add(out, &r);
            KP_ASSERT(rc == 0); /* room was checked */
            n++;
        }
        off = rec.next;
        line = rec.next_line;
    }
    row_fini(&w);
    csv_reader_fini(&rd);
    /* The refused rows first: they must be on record before the batch that passes them is. */
    int rc = kp_spool_dead_rows(st->dl, dl.rows, dl.n);
    dead_fini(&dl);
    if (rc != 0) {
        snprintf(err, errlen, "dead letters %s: cannot record %zu refused rows of %s: %s",
                 st->dl_path, refused, f->name, kp_strerror(rc));
        return rc;
    }
    if (n > 0) {
        copy_text(st->pend.name, sizeof st->pend.name, f->name);
        st->pend.id = f->id;
        st->pend.off = off;
        st->pend.line = line;
        st->pending = true;
        char cur[NAME_CAP + 160];
        cursor_text(&st->pend, cur, sizeof cur);
        adp_out_set_cursor(out, cur);
    }
    return n;
}

/* ---- archiving --------------------------------------------------------------------------------
 */

static void iso_now(char *buf, size_t cap)
{
    int64_t ms = kp_now_ms();
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, cap, "%s.%03dZ", base, (int)(ms % 1000));
}

/* The summary of a whole file, read again from its start: the file does not change and the
 * reading is a function of its text and the configuration, so this is what the polls did,
 * however many restarts they took. */
static json_t *summarize(const struct csv_state *st, const struct cfile *f, size_t *n_read,
                         size_t *n_sent, size_t *n_refused, size_t *n_skipped)
{
    char when[40];
    iso_now(when, sizeof when);
    json_t *s = json_object();
    json_object_set_new(s, "file", json_string(f->name_label));
    json_object_set_new(s, "archived_as", json_string(f->label));
    json_object_set_new(s, "bytes", json_integer((json_int_t)f->id.size));
    json_object_set_new(s, "adapter", json_string(st->env.aid));
    json_object_set_new(s, "scheme", json_string(st->env.scheme));
    json_object_set_new(s, "src", json_string(st->env.src));
    json_object_set_new(s, "archived_at", json_string(when));
    *n_read = *n_sent = *n_refused = *n_skipped = 0;
    if (f->ferr_code[0]) {
        json_t *e = json_object();
        json_object_set_new(e, "code", json_string(f->ferr_code));
        json_object_set_new(e, "msg", json_string(f->ferr_msg));
        json_object_set_new(e, "line", json_integer(f->ferr_line));
        json_object_set_new(s, "error", e);
    } else {
        json_object_set_new(s, "encoding", json_string(csv_enc_name(f->text.enc)));
        json_object_set_new(s, "bom", json_boolean(f->text.bom));
        json_object_set_new(s, "header_line", json_integer(f->header_line));
    }
    json_t *list = json_array(), *by_code = json_object();
    if (!f->ferr_code[0]) {
        struct csv_reader rd;
        csv_reader_init(&rd, f->text.data, f->text.len, st->delim, f->data_off, f->data_line);
        struct csv_rec rec;
        struct row w;
        row_init(&w);
        while (csv_reader_next(&rd, &rec)) {
            classify(st, f, &rd, &rec, &w);
            if (w.kind == ROW_BLANK)
                continue;
            (*n_read)++;
            if (w.kind == ROW_SKIP) {
                (*n_skipped)++;
            } else if (w.kind == ROW_GOOD) {
                (*n_sent)++;
            } else {
                (*n_refused)++;
                json_t *c = json_object_get(by_code, w.code);
                json_object_set_new(by_code, w.code,
                                    json_integer(c ? json_integer_value(c) + 1 : 1));
                if (json_array_size(list) < SUMMARY_LIST_MAX) {
                    json_t *r = json_object();
                    json_object_set_new(r, "line", json_integer(rec.line));
                    json_object_set_new(r, "code", json_string(w.code));
                    json_object_set_new(r, "msg", json_string(w.msg));
                    if (w.v[O_REF])
                        json_object_set_new(r, "ref", json_string(w.v[O_REF]));
                    json_array_append_new(list, r);
                }
            }
        }
        row_fini(&w);
        csv_reader_fini(&rd);
    }
    json_object_set_new(s, "rows_read", json_integer((json_int_t)*n_read));
    json_object_set_new(s, "rows_sent", json_integer((json_int_t)*n_sent));
    json_object_set_new(s, "rows_refused", json_integer((json_int_t)*n_refused));
    json_object_set_new(s, "rows_skipped", json_integer((json_int_t)*n_skipped));
    json_object_set_new(s, "refused_forwarded", json_boolean(st->cfg->forward_refused));
    json_object_set_new(s, "refused_by_code", by_code);
    json_object_set_new(s, "refused", list);
    if (*n_refused > SUMMARY_LIST_MAX)
        json_object_set_new(s, "refused_not_listed",
                            json_integer((json_int_t)(*n_refused - SUMMARY_LIST_MAX)));
    json_object_set_new(s, "dead_letters", json_string(st->dl_path));
    return s;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    /* some network file systems cannot sync a directory: nothing more can be done there */
    if (rc != 0 && (errno == EINVAL || errno == ENOTSUP || errno == EOPNOTSUPP))
        rc = 0;
    close(fd);
    return rc;
}

/* Writes the summary durably under its final name (temp file, fsync, rename). */
static int write_summary(const struct csv_state *st, const struct cfile *f, json_t *s, char *err,
                         size_t errlen)
{
    char tmp[PATH_MAX], dst[PATH_MAX], base[ARCH_CAP + 32];
    snprintf(base, sizeof base, "%s.summary.json", f->arch);
    path_in(dst, sizeof dst, st->cfg->archive_dir, base);
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp", st->cfg->archive_dir, base);
    FILE *fp = fopen(tmp, "w");
    if (!fp) {
        snprintf(err, errlen, "archive: %s: %s", tmp, strerror(errno));
        return KP_EIO;
    }
    int rc = json_dumpf(s, fp, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', fp);
    if (rc != 0 || fflush(fp) != 0 || fsync(fileno(fp)) != 0) {
        snprintf(err, errlen, "archive: writing %s failed: %s", tmp, strerror(errno));
        fclose(fp);
        unlink(tmp);
        return KP_EIO;
    }
    fclose(fp);
    if (rename(tmp, dst) != 0) {
        snprintf(err, errlen, "archive: rename %s: %s", dst, strerror(errno));
        unlink(tmp);
        return KP_EIO;
    }
    return 0;
}

/* Every row of the current file is spooled or dead-lettered: summary, then the move. */
static int archive(struct csv_state *st, char *err, size_t errlen)
{
    struct cfile *f = st->cur;
    char drop_path[PATH_MAX], arch_path[PATH_MAX];
    path_in(drop_path, sizeof drop_path, st->cfg->drop_dir, f->name);
    /* the archive name chosen at load may have been taken since (by hand) */
    if (exists(st->cfg->archive_dir, f->arch) &&
        archive_name(st, f->name, f->arch, sizeof f->arch) != 0) {
        snprintf(err, errlen, "archive: no free name for %s", f->name);
        return KP_EIO;
    }
    utf8_label(f->arch, f->label, sizeof f->label);
    path_in(arch_path, sizeof arch_path, st->cfg->archive_dir, f->arch);
    if (f->ferr_code[0]) {
        int rc = kp_spool_dead_row(st->dl, f->label, f->ferr_line, f->ferr_code, f->ferr_msg, NULL);
        if (rc != 0) {
            snprintf(err, errlen, "dead letters %s: %s", st->dl_path, kp_strerror(rc));
            return rc;
        }
    }
    size_t n_read, n_sent, n_refused, n_skipped;
    json_t *s = summarize(st, f, &n_read, &n_sent, &n_refused, &n_skipped);
    int rc = write_summary(st, f, s, err, errlen);
    json_decref(s);
    if (rc != 0)
        return rc;
    if (rename(drop_path, arch_path) != 0 && errno != ENOENT) {
        snprintf(err, errlen, "archive: rename %s to %s: %s", drop_path, arch_path,
                 strerror(errno));
        return KP_EIO;
    }
    /* The move must be durable before anything of a later file is: else a power loss could
     * bring this file back into the folder with a cursor that no longer names it. */
    if (fsync_dir(st->cfg->archive_dir) != 0 || fsync_dir(st->cfg->drop_dir) != 0) {
        snprintf(err, errlen, "archive: fsync of the folders failed: %s", strerror(errno));
        return KP_EIO;
    }
    if (f->ferr_code[0]) {
        char q[600];
        KP_WARN("csv_file_refused",
                "adapter=%s scheme=%s file=%s archived_as=%s code=%s line=%ld msg=%s", st->env.aid,
                st->env.scheme, f->name, f->arch, f->ferr_code, f->ferr_line,
                kp_log_q(q, sizeof q, f->ferr_msg));
    } else {
        KP_INFO("csv_file_archived",
                "adapter=%s scheme=%s file=%s archived_as=%s encoding=%s read=%zu sent=%zu "
                "refused=%zu skipped=%zu",
                st->env.aid, st->env.scheme, f->name, f->arch, csv_enc_name(f->text.enc), n_read,
                n_sent, n_refused, n_skipped);
        if (n_refused)
            KP_WARN("csv_rows_refused",
                    "adapter=%s scheme=%s file=%s refused=%zu dead_letters=%s msg=\"see "
                    "%s.summary.json for lines and reasons\"",
                    st->env.aid, st->env.scheme, f->arch, n_refused, st->dl_path, f->arch);
    }
    cfile_free(&st->cur);
    st->have_pos = false;
    st->rescan = true; /* others may be waiting */
    return 0;
}

/* ---- the plugin ---------------------------------------------------------------------------------
 */

static int check_dir(const char *key, const char *dir, struct stat *sb, char *err, size_t errlen)
{
    if (stat(dir, sb) != 0) {
        snprintf(err, errlen, "%s: %s: %s", key, dir, strerror(errno));
        return KP_ECONFIG;
    }
    if (!S_ISDIR(sb->st_mode)) {
        snprintf(err, errlen, "%s: %s: not a directory", key, dir);
        return KP_ECONFIG;
    }
    return 0;
}

static void csv_fini(void **state);

static int csv_init(const struct adp_source_env *env, const void *cfgp, const char *cursor,
                    void **state, char *err, size_t errlen)
{
    *state = NULL;
    const struct src_csv_config *c = cfgp;
    int rc = csv_check(c, err, errlen);
    if (rc != 0)
        return rc;
    struct stat sd, sa;
    if ((rc = check_dir("source.csv.drop_dir", c->drop_dir, &sd, err, errlen)) != 0 ||
        (rc = check_dir("source.csv.archive_dir", c->archive_dir, &sa, err, errlen)) != 0)
        return rc;
    if (sd.st_dev != sa.st_dev) {
        snprintf(err, errlen,
                 "source.csv.archive_dir: must be on the file system of source.csv.drop_dir "
                 "(files are moved with rename)");
        return KP_ECONFIG;
    }
    struct csv_state *st = kp_xcalloc(1, sizeof *st);
    st->cfg = c;
    st->env = *env;
    atomic_init(&st->dirty, false);
    st->rescan = true;
    csv_enc_parse(c->encoding, &st->enc);
    parse_delim(c->delimiter, &st->delim);
    if (set(c->period))
        csv_period_norm(c->period, st->period, sizeof st->period);
    if (parse_cursor(cursor, &st->pos, &st->have_pos) != 0) {
        snprintf(err, errlen,
                 "spool: the stored cursor \"%.80s\" is not a csv position: was the spool "
                 "written by another source?",
                 cursor);
        free(st);
        return KP_EINVAL;
    }
    if (set(c->unit_by_name)) {
        char e2[400];
        if (csv_units_load(c->unit_by_name, env->scheme, &st->units, e2, sizeof e2) != 0) {
            snprintf(err, errlen, "source.csv.unit_by_name: %s", e2);
            free(st);
            return KP_ECONFIG;
        }
    }
    if (set(c->dead_letters))
        copy_text(st->dl_path, sizeof st->dl_path, c->dead_letters);
    else
        snprintf(st->dl_path, sizeof st->dl_path, "%s/dead-letters.db", c->archive_dir);
    rc = kp_spool_open(st->dl_path, UINT64_C(1) << 40, &st->dl);
    if (rc != 0) {
        snprintf(err, errlen, "source.csv.dead_letters: cannot open %s: %s", st->dl_path,
                 kp_strerror(rc));
        csv_units_destroy(&st->units);
        free(st);
        return rc;
    }
    watch_start(st);
    if (errlen)
        err[0] = 0;
    *state = st;
    return 0;
}

static int csv_poll(void *state, struct adp_out *out, char *err, size_t errlen)
{
    struct csv_state *st = state;
    st->pending = false;
    /* a few files with nothing to send (all refused, or empty) are archived in one poll */
    for (int files = 0; files < 16; files++) {
        if (!st->cur) {
            int rc = pick(st, err, errlen);
            if (rc != 0)
                return rc;
            if (!st->cur) {
                adp_out_set_lag(out, 0); /* caught up with the folder */
                return 0;
            }
            KP_INFO("csv_file_started",
                    "adapter=%s scheme=%s file=%s bytes=%" PRIu64 " encoding=%s header_line=%ld%s",
                    st->env.aid, st->env.scheme, st->cur->name, st->cur->id.size,
                    st->cur->ferr_code[0] ? "-" : csv_enc_name(st->cur->text.enc),
                    st->cur->header_line,
                    st->have_pos ? " msg=\"resuming at the stored cursor\"" : "");
        }
        double lag = (double)(kp_now_ms() - st->cur->mtime_ms) / 1000.0;
        adp_out_set_lag(out, lag > 0 ? lag : 0);
        if (!st->cur->ferr_code[0]) {
            int n = read_rows(st, out, err, errlen);
            if (n != 0) {
                /* n > 0: poll again at once (the rest, or the archiving); n < 0: error */
                adp_out_set_more(out, n > 0);
                return n;
            }
        }
        int rc = archive(st, err, errlen);
        if (rc != 0)
            return rc;
    }
    adp_out_set_more(out, true);
    return 0;
}

static int csv_ack(void *state)
{
    struct csv_state *st = state;
    if (!st->pending)
        return 0;
    st->pending = false;
    st->pos = st->pend;
    st->have_pos = true;
    return 0;
}

static void csv_fini(void **state)
{
    if (!state || !*state)
        return;
    struct csv_state *st = *state;
    watch_stop(st);
    cfile_free(&st->cur);
    csv_units_destroy(&st->units);
    kp_spool_close(&st->dl);
    free(st);
    *state = NULL;
}

const struct adp_source adp_source_csv = {
    .name = "csv",
    .summary = "CSV files moved into a drop folder (UTF-8 or GBK), mapped by header names, "
               "archived with a summary once every row is spooled or refused",
    .config = csv_config,
    .config_size = sizeof(struct src_csv_config),
    .check = csv_check,
    .init = csv_init,
    .poll = csv_poll,
    .ack = csv_ack,
    .fini = csv_fini,
};
