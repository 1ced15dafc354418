/*
 * kp-sim-audit: a simulated audit bureau (审计局) system for tests and the local cluster. It
 * serves the audit findings of the assessed units over a real HTTP JSON API — the system the
 * `http` adapter source pulls from with the audit profile (deploy/profiles/audit.yaml) — and
 * makes them evolve like a real year of audits: every simulated month new findings are issued
 * for the units (some published a month late), open findings get rectified (整改) and now and
 * then reopened on review, amounts are corrected, and a few rows are malformed (no unit, a
 * unit the scheme does not know, a date that is no date, an unknown status, a damaged record
 * that is not even an object) and are fixed in a later month. Every change is a new version of
 * the finding with a new place in the change feed, as a department's outbox would publish it.
 *
 *   GET  /api/v1/findings     the feed (bearer or basic auth when configured), two ways:
 *        ?cursor=C&limit=N             change feed: findings changed after cursor C (opaque;
 *                                      absent = from the start), in change order;
 *                                      {"items":[…], "next_cursor":"…", "has_more":bool}
 *        ?updated_since=T&page=K&page_size=N
 *                                      findings with updated_at >= T (ISO-8601), in
 *                                      (updated_at, id) order, page K (from 1);
 *                                      {"items":[…], "page":K, "page_size":N, "total":T,
 *                                       "has_more":bool}
 *        an item: {"id","unit","unit_name","title","category","amount","issued_date",
 *                  "status":"open"|"rectified","rectified_date","version","updated_at"}
 *   GET  /healthz             "ok"
 *   POST /control/step?month=M        advance the simulated year to month M (1-12); M not
 *                                     after the current month: a later week of the current
 *                                     month (progress on earlier findings, no new ones)
 *   POST /control/fail?status=S&count=N   answer the next N API requests with status S
 *   POST /control/delay?ms=D&count=N      delay the next N API responses by D ms
 *   POST /control/finding     body: a JSON object with "id" — create or update that finding
 *                             (fields given replace the stored ones; "raw": <any JSON> makes
 *                             the served item exactly that value); a new version at once
 *   POST /control/token       body: the bearer token the API accepts from now on (rotation)
 *   GET  /control/stats       counters: requests, refusals, injected faults, findings, month
 *
 * The control endpoints take no credentials: bind the simulator to 127.0.0.1 (the default).
 * State lives in memory and, with --state FILE, in a JSON file rewritten after each change, so
 * a restarted simulator serves the same feed. Output: one log line per control action on
 * stderr.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define BODY_MAX  (64 * 1024)
#define UNITS_MAX 1000
#define PAGE_MAX  1000
#define ID_MAX    64

enum defect { D_NONE, D_NO_UNIT, D_UNKNOWN_UNIT, D_BAD_DATE, D_BAD_STATUS, D_DAMAGED, D__COUNT };

struct unit {
    char code[72];
    char name[128];
    double lambda; /* findings per month */
};

struct finding {
    char id[ID_MAX];
    json_t *obj;  /* the item as served (an object, or any JSON for a damaged record) */
    uint64_t seq; /* change sequence of the current version */
    int64_t updated_ms;
    unsigned version;
    int month; /* issued month */
    int unit;  /* index into units, -1 for manual findings */
    bool published;
    bool rectified;
    int rect_month;
    enum defect defect;
    bool manual; /* created through /control/finding: the generator leaves it alone */
};

static struct {
    pthread_mutex_t mu;
    struct unit units[UNITS_MAX];
    size_t nunits;
    struct finding *f;
    size_t nf, capf;
    uint64_t seq;
    int64_t last_ms;
    int month;       /* last simulated month, 0 = none */
    unsigned rounds; /* repeats of a month so far */
    unsigned next_no;
    uint64_t seed;
    int year;
    double bad_rate;
    char token[4096]; /* bearer; "" = none */
    char basic[8192]; /* "Basic <base64(user:password)>"; "" = none */
    const char *state_path;
    /* fault injection */
    unsigned fail_status, fail_count;
    unsigned delay_ms, delay_count;
    /* stats */
    uint64_t requests, api_requests, api_ok, refused_auth, injected_fail, injected_delay;
} S = {.mu = PTHREAD_MUTEX_INITIALIZER};

static const char *const categories[][2] = {
    {"budget", "预算执行不严格,超预算列支"},
    {"special_funds", "专项资金未按规定用途使用"},
    {"procurement", "政府采购程序不规范"},
    {"assets", "国有资产管理不规范,账实不符"},
    {"construction", "工程建设项目未按规定办理竣工决算"},
    {"non_tax", "非税收入未及时足额缴库"},
    {"receivables", "往来款项长期挂账未清理"},
    {"expenses", "公务支出超标准、超范围"},
};
#define N_CATEGORIES (sizeof categories / sizeof categories[0])

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "kp-sim-audit: %s\n", buf);
}

/* ---- time and randomness ----------------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long long days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    long long yoe = y - era * 400;
    long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void iso_ms(int64_t ms, char *buf, size_t len)
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

/* "YYYY-MM-DD[Thh:mm[:ss[.fff]]][Z]" (UTC) to ms; false when it is not that. */
static bool parse_iso(const char *s, int64_t *out)
{
    int y, mo, d, h = 0, mi = 0, sec = 0, ms = 0, n = 0;
    if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 || n != 10)
        return false;
    const char *p = s + 10;
    if (*p == 'T' || *p == ' ') {
        int k = 0;
        if (sscanf(p + 1, "%2d:%2d%n", &h, &mi, &k) != 2 || k != 5)
            return false;
        p += 1 + k;
        if (*p == ':') {
            if (sscanf(p + 1, "%2d%n", &sec, &k) != 1 || k != 2)
                return false;
            p += 3;
            if (*p == '.') {
                int digits = 0;
                for (p++; *p >= '0' && *p <= '9'; p++, digits++)
                    if (digits < 3)
                        ms = ms * 10 + (*p - '0');
                for (; digits < 3; digits++)
                    ms *= 10;
            }
        }
    }
    if (*p == 'Z')
        p++;
    if (*p || mo < 1 || mo > 12 || d < 1 || d > 31)
        return false;
    *out = ((int64_t)days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec) * 1000 + ms;
    return true;
}

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static double unif(uint64_t *x)
{
    return (double)(splitmix(x) >> 11) / 9007199254740992.0;
}

static int poisson(uint64_t *x, double lambda)
{
    double l = exp(-lambda), p = 1;
    int k = 0;
    do {
        k++;
        p *= unif(x);
    } while (p > l && k < 50);
    return k - 1;
}

/* ---- findings ---------------------------------------------------------------------------- */

static struct finding *find(const char *id)
{
    for (size_t k = 0; k < S.nf; k++)
        if (strcmp(S.f[k].id, id) == 0)
            return &S.f[k];
    return NULL;
}

static struct finding *add_finding(const char *id)
{
    if (S.nf == S.capf) {
        S.capf = S.capf ? S.capf * 2 : 256;
        S.f = realloc(S.f, S.capf * sizeof *S.f);
        if (!S.f) {
            logf_("out of memory");
            abort();
        }
    }
    struct finding *f = &S.f[S.nf++];
    memset(f, 0, sizeof *f);
    snprintf(f->id, sizeof f->id, "%s", id);
    f->unit = -1;
    return f;
}

/* A new version of f: next change sequence, the wall clock as updated_at. */
static void touch(struct finding *f)
{
    int64_t ms = now_ms();
    if (ms < S.last_ms)
        ms = S.last_ms; /* the clock never goes back in the feed; equal times do happen */
    S.last_ms = ms;
    f->seq = ++S.seq;
    f->updated_ms = ms;
    f->version++;
    if (json_is_object(f->obj)) {
        char t[96];
        iso_ms(ms, t, sizeof t);
        json_object_set_new(f->obj, "version", json_integer(f->version));
        json_object_set_new(f->obj, "updated_at", json_string(t));
    }
}

static void date_text(int month, int day, char *buf, size_t len)
{
    snprintf(buf, len, "%04d-%02d-%02d", S.year, month, day);
}

/* (Re)builds the served object of a generated finding from its state. */
static void render(struct finding *f, int day, int rect_day, uint64_t *rng)
{
    const struct unit *u = &S.units[f->unit];
    if (f->defect == D_DAMAGED) {
        char t[256];
        snprintf(t, sizeof t, "%s|%s|<记录损坏: 导出中断>", f->id, u->code);
        json_decref(f->obj);
        f->obj = json_string(t);
        return;
    }
    json_t *o = json_is_object(f->obj) ? json_incref(f->obj) : json_object();
    if (!json_is_object(f->obj)) {
        json_object_set_new(o, "id", json_string(f->id)); /* first in the served object */
        size_t c = (size_t)(splitmix(rng) % N_CATEGORIES);
        json_object_set_new(o, "category", json_string(categories[c][0]));
        json_object_set_new(o, "title", json_string(categories[c][1]));
        double amount = round(exp(1.5 + 2.0 * (unif(rng) + unif(rng) - 1.0)) * 10.0) / 10.0;
        json_object_set_new(o, "amount", json_real(amount));
        char d[16];
        date_text(f->month, day, d, sizeof d);
        json_object_set_new(o, "issued_date", json_string(d));
    }
    json_object_set_new(o, "id", json_string(f->id));
    switch (f->defect) {
    case D_NO_UNIT:
        json_object_del(o, "unit");
        json_object_del(o, "unit_name");
        break;
    case D_UNKNOWN_UNIT:
        json_object_set_new(o, "unit", json_string("AS-XJBM")); /* not in the scheme */
        json_object_set_new(o, "unit_name", json_string("县级部门(未纳入考核)"));
        break;
    default:
        json_object_set_new(o, "unit", json_string(u->code));
        json_object_set_new(o, "unit_name", json_string(u->name));
        break;
    }
    if (f->defect == D_BAD_DATE) {
        char d[24];
        snprintf(d, sizeof d, "%04d/%02d/%02d", S.year, f->month, day ? day : 1);
        json_object_set_new(o, "issued_date", json_string(d));
    } else if (day) {
        char d[16];
        date_text(f->month, day, d, sizeof d);
        json_object_set_new(o, "issued_date", json_string(d));
    }
    if (f->defect == D_BAD_STATUS) {
        json_object_set_new(o, "status", json_string("待复核"));
    } else {
        json_object_set_new(o, "status", json_string(f->rectified ? "rectified" : "open"));
    }
    if (f->rectified) {
        char d[16];
        date_text(f->rect_month, rect_day ? rect_day : 15, d, sizeof d);
        json_object_set_new(o, "rectified_date", json_string(d));
    } else {
        json_object_set_new(o, "rectified_date", json_null());
    }
    json_decref(f->obj);
    f->obj = o;
}

static void issued_day(const struct finding *f, int *day)
{
    *day = 0;
    const char *d =
        json_is_object(f->obj) ? json_string_value(json_object_get(f->obj, "issued_date")) : NULL;
    if (d && strlen(d) == 10)
        *day = atoi(d + 8);
}

/* One simulated month: late findings of the month before, fixes, rectification, reopening,
 * corrections, then the month's new findings. A repeat (the month again: a later week of it)
 * brings progress only — late findings, fixes, rectifications, corrections — and no new
 * findings, so that a feed stepped past December keeps changing. Returns the number of
 * changes. */
static int step_month(int m, bool repeat)
{
    uint64_t rng = S.seed * 1000003u + (uint64_t)m * 0x9E3779B97F4A7C15ULL;
    if (repeat)
        rng += (uint64_t)(++S.rounds) * 0xD1B54A32D192ED03ULL;
    int changes = 0, created = 0, late = 0, held = 0, rectified = 0, reopened = 0, fixed = 0;
    int bad = 0;
    size_t existing = S.nf;
    for (size_t k = 0; k < existing; k++) {
        struct finding *f = &S.f[k];
        if (f->manual)
            continue;
        int day;
        issued_day(f, &day);
        if (!f->published) {
            if (f->month < m || repeat) { /* a late commit: issued earlier, published now */
                f->published = true;
                touch(f);
                changes++;
                late++;
            }
            continue;
        }
        if (f->defect != D_NONE && unif(&rng) < 0.5) { /* the bureau fixes a bad row */
            f->defect = D_NONE;
            render(f, day ? day : 1 + (int)(splitmix(&rng) % 28), 0, &rng);
            touch(f);
            changes++;
            fixed++;
            continue;
        }
        if (f->defect != D_NONE)
            continue;
        if (!f->rectified && (f->month < m || repeat)) {
            double p = repeat ? 0.15 : 0.3 + 0.1 * (m - f->month - 1);
            if (unif(&rng) < (p > 0.9 ? 0.9 : p)) {
                f->rectified = true;
                f->rect_month = m;
                render(f, 0, 1 + (int)(splitmix(&rng) % 28), &rng);
                touch(f);
                changes++;
                rectified++;
            }
            continue;
        }
        if (f->rectified && f->rect_month < m && unif(&rng) < 0.03) {
            f->rectified = false; /* the review found the rectification incomplete */
            render(f, 0, 0, &rng);
            touch(f);
            changes++;
            reopened++;
            continue;
        }
        if (unif(&rng) < 0.04) { /* a corrected amount: a revision that changes no score */
            double a = json_real_value(json_object_get(f->obj, "amount"));
            json_object_set_new(f->obj, "amount", json_real(round(a * 11.0) / 10.0));
            touch(f);
            changes++;
        }
    }
    for (size_t u = 0; u < S.nunits && !repeat; u++) {
        int n = poisson(&rng, S.units[u].lambda);
        for (int j = 0; j < n; j++) {
            char id[64];
            snprintf(id, sizeof id, "SJ%04d-%05u", S.year, ++S.next_no);
            struct finding *f = add_finding(id);
            f->unit = (int)u;
            f->month = m;
            if (unif(&rng) < S.bad_rate) {
                f->defect = (enum defect)(1 + splitmix(&rng) % (D__COUNT - 1));
                bad++;
            }
            render(f, 1 + (int)(splitmix(&rng) % 28), 0, &rng);
            f->published = m == 12 || unif(&rng) >= 0.12;
            if (f->published) {
                touch(f);
                changes++;
            } else {
                held++; /* a late commit: published next month */
            }
            created++;
        }
    }
    S.month = m;
    logf_("month %d%s: %d changes (%d new of which %d held back for next month and %d bad; %d late "
          "ones of last month; %d rectified, %d reopened, %d bad rows fixed)",
          m, repeat ? " again" : "", changes, created, held, bad, late, rectified, reopened, fixed);
    return changes;
}

/* ---- state file ---------------------------------------------------------------------------- */

static void save_state(void)
{
    if (!S.state_path)
        return;
    json_t *arr = json_array();
    for (size_t k = 0; k < S.nf; k++) {
        const struct finding *f = &S.f[k];
        json_array_append_new(
            arr,
            json_pack("{s:s, s:O, s:I, s:I, s:i, s:i, s:i, s:b, s:b, s:i, s:i, s:b}", "id", f->id,
                      "obj", f->obj, "seq", (json_int_t)f->seq, "updated_ms",
                      (json_int_t)f->updated_ms, "version", (int)f->version, "month", f->month,
                      "unit", f->unit, "published", f->published, "rectified", f->rectified,
                      "rect_month", f->rect_month, "defect", (int)f->defect, "manual", f->manual));
    }
    json_t *doc =
        json_pack("{s:I, s:i, s:I, s:I, s:i, s:i, s:o}", "seed", (json_int_t)S.seed, "month",
                  S.month, "seq", (json_int_t)S.seq, "last_ms", (json_int_t)S.last_ms, "next_no",
                  (int)S.next_no, "rounds", (int)S.rounds, "findings", arr);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", S.state_path);
    if (json_dump_file(doc, tmp, JSON_COMPACT) != 0 || rename(tmp, S.state_path) != 0)
        logf_("cannot write state %s: %s", S.state_path, strerror(errno));
    json_decref(doc);
}

static int load_state(void)
{
    json_error_t je;
    json_t *doc = json_load_file(S.state_path, 0, &je);
    if (!doc)
        return access(S.state_path, F_OK) == 0 ? -1 : 0; /* absent: a fresh start */
    json_int_t seed = 0, seq = 0, last = 0;
    int month = 0, next_no = 0;
    json_t *arr = NULL;
    if (json_unpack(doc, "{s:I, s:i, s:I, s:I, s:i, s:o}", "seed", &seed, "month", &month, "seq",
                    &seq, "last_ms", &last, "next_no", &next_no, "findings", &arr) != 0) {
        json_decref(doc);
        return -1;
    }
    S.seed = (uint64_t)seed;
    S.month = month;
    S.seq = (uint64_t)seq;
    S.last_ms = last;
    S.next_no = (unsigned)next_no;
    S.rounds = (unsigned)json_integer_value(json_object_get(doc, "rounds"));
    size_t k;
    json_t *v;
    json_array_foreach(arr, k, v)
    {
        const char *id;
        json_t *obj;
        json_int_t fseq, ums;
        int version, fmonth, unit, rect_month, defect;
        int published, rectified, manual;
        if (json_unpack(v, "{s:s, s:o, s:I, s:I, s:i, s:i, s:i, s:b, s:b, s:i, s:i, s:b}", "id",
                        &id, "obj", &obj, "seq", &fseq, "updated_ms", &ums, "version", &version,
                        "month", &fmonth, "unit", &unit, "published", &published, "rectified",
                        &rectified, "rect_month", &rect_month, "defect", &defect, "manual",
                        &manual) != 0 ||
            unit >= (int)S.nunits) {
            json_decref(doc);
            return -1;
        }
        struct finding *f = add_finding(id);
        f->obj = json_deep_copy(obj);
        f->seq = (uint64_t)fseq;
        f->updated_ms = ums;
        f->version = (unsigned)version;
        f->month = fmonth;
        f->unit = unit;
        f->published = published;
        f->rectified = rectified;
        f->rect_month = rect_month;
        f->defect = (enum defect)defect;
        f->manual = manual;
    }
    json_decref(doc);
    return 0;
}

/* ---- HTTP ---------------------------------------------------------------------------------- */

struct req {
    char *body;
    size_t len;
    bool over;
};

static enum MHD_Result send_text(struct MHD_Connection *c, unsigned status, const char *ctype,
                                 char *text, const char *www_auth)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (www_auth)
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, www_auth);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, json_t *doc)
{
    char *s = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (!s)
        return MHD_NO;
    return send_text(c, status, "application/json; charset=utf-8", s, NULL);
}

static enum MHD_Result send_error(struct MHD_Connection *c, unsigned status, const char *code,
                                  const char *msg)
{
    return send_json(c, status, json_pack("{s:s, s:s}", "error", code, "message", msg));
}

static const char *arg(struct MHD_Connection *c, const char *name)
{
    return MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
}

static bool arg_long(struct MHD_Connection *c, const char *name, long lo, long hi, long def,
                     long *out)
{
    const char *v = arg(c, name);
    if (!v) {
        *out = def;
        return true;
    }
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        return false;
    *out = x;
    return true;
}

static bool authorized(struct MHD_Connection *c, const char **www)
{
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (S.token[0]) {
        *www = "Bearer realm=\"audit\"";
        return h && strncmp(h, "Bearer ", 7) == 0 && strcmp(h + 7, S.token) == 0;
    }
    if (S.basic[0]) {
        *www = "Basic realm=\"audit\"";
        return h && strcmp(h, S.basic) == 0;
    }
    return true;
}

static int cmp_page(const void *a, const void *b)
{
    const struct finding *x = *(const struct finding *const *)a;
    const struct finding *y = *(const struct finding *const *)b;
    if (x->updated_ms != y->updated_ms)
        return x->updated_ms < y->updated_ms ? -1 : 1;
    return strcmp(x->id, y->id);
}

static int cmp_seq(const void *a, const void *b)
{
    const struct finding *x = *(const struct finding *const *)a;
    const struct finding *y = *(const struct finding *const *)b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Called with S.mu held. */
static enum MHD_Result api_findings(struct MHD_Connection *c)
{
    const char *cursor = arg(c, "cursor");
    const char *since_s = arg(c, "updated_since");
    bool page_mode = arg(c, "page") || arg(c, "page_size");
    int64_t since = INT64_MIN;
    if (since_s && !parse_iso(since_s, &since))
        return send_error(c, 400, "bad_request", "updated_since: not an ISO-8601 time");
    uint64_t after = 0;
    if (cursor && *cursor) {
        char *end;
        if (cursor[0] != 'c' || !cursor[1])
            return send_error(c, 400, "bad_cursor", "cursor: not a cursor of this feed");
        after = strtoull(cursor + 1, &end, 10);
        if (*end)
            return send_error(c, 400, "bad_cursor", "cursor: not a cursor of this feed");
    }
    long limit, page, page_size;
    if (!arg_long(c, "limit", 1, PAGE_MAX, 100, &limit) ||
        !arg_long(c, "page", 1, 1000000, 1, &page) ||
        !arg_long(c, "page_size", 1, PAGE_MAX, 100, &page_size))
        return send_error(c, 400, "bad_request", "limit, page, page_size: out of range");

    struct finding **sel = malloc((S.nf ? S.nf : 1) * sizeof *sel);
    size_t n = 0;
    for (size_t k = 0; k < S.nf; k++) {
        struct finding *f = &S.f[k];
        if (!f->published || f->updated_ms < since || (!page_mode && f->seq <= after))
            continue;
        sel[n++] = f;
    }
    qsort(sel, n, sizeof *sel, page_mode ? cmp_page : cmp_seq);
    json_t *items = json_array();
    json_t *doc;
    if (page_mode) {
        size_t from = (size_t)(page - 1) * (size_t)page_size;
        for (size_t k = from; k < n && k < from + (size_t)page_size; k++)
            json_array_append(items, sel[k]->obj);
        doc = json_pack("{s:o, s:i, s:i, s:I, s:b}", "items", items, "page", (int)page, "page_size",
                        (int)page_size, "total", (json_int_t)n, "has_more",
                        from + (size_t)page_size < n);
    } else {
        size_t take = n < (size_t)limit ? n : (size_t)limit;
        uint64_t next = after;
        for (size_t k = 0; k < take; k++) {
            json_array_append(items, sel[k]->obj);
            next = sel[k]->seq;
        }
        char nc[32];
        snprintf(nc, sizeof nc, "c%" PRIu64, next);
        doc = json_pack("{s:o, s:s, s:b}", "items", items, "next_cursor", nc, "has_more", take < n);
    }
    free(sel);
    return send_json(c, 200, doc);
}

static enum MHD_Result control(struct MHD_Connection *c, const char *url, const char *method,
                               struct req *rq)
{
    if (strcmp(url, "/control/stats") == 0) {
        size_t pub = 0;
        for (size_t k = 0; k < S.nf; k++)
            pub += S.f[k].published;
        return send_json(
            c, 200,
            json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:i, s:I}", "requests",
                      (json_int_t)S.requests, "api_requests", (json_int_t)S.api_requests, "api_ok",
                      (json_int_t)S.api_ok, "refused_auth", (json_int_t)S.refused_auth,
                      "injected_fail", (json_int_t)S.injected_fail, "injected_delay",
                      (json_int_t)S.injected_delay, "findings", (json_int_t)S.nf, "published",
                      (json_int_t)pub, "month", S.month, "changes", (json_int_t)S.seq));
    }
    if (strcmp(method, MHD_HTTP_METHOD_POST) != 0)
        return send_error(c, 405, "method_not_allowed", "control endpoints take POST");
    if (strcmp(url, "/control/step") == 0) {
        long m;
        if (!arg_long(c, "month", 1, 12, -1, &m) || m < 1)
            return send_error(c, 400, "bad_request", "month: 1-12");
        int changes = 0;
        bool repeat = m <= S.month;
        if (repeat)
            changes = step_month(S.month, true);
        for (int k = S.month + 1; k <= m; k++)
            changes += step_month(k, false);
        save_state();
        return send_json(c, 200,
                         json_pack("{s:i, s:b, s:i, s:I}", "month", S.month, "repeat", repeat,
                                   "changes", changes, "findings", (json_int_t)S.nf));
    }
    if (strcmp(url, "/control/fail") == 0) {
        long status, count;
        if (!arg_long(c, "status", 100, 599, 500, &status) ||
            !arg_long(c, "count", 0, 1000000, 1, &count))
            return send_error(c, 400, "bad_request", "status 100-599, count >= 0");
        S.fail_status = (unsigned)status;
        S.fail_count = (unsigned)count;
        logf_("the next %ld API requests answer %ld", count, status);
        return send_json(c, 200,
                         json_pack("{s:i, s:i}", "status", (int)status, "count", (int)count));
    }
    if (strcmp(url, "/control/delay") == 0) {
        long ms, count;
        if (!arg_long(c, "ms", 0, 600000, 1000, &ms) ||
            !arg_long(c, "count", 0, 1000000, 1, &count))
            return send_error(c, 400, "bad_request", "ms 0-600000, count >= 0");
        S.delay_ms = (unsigned)ms;
        S.delay_count = (unsigned)count;
        logf_("the next %ld API responses wait %ld ms", count, ms);
        return send_json(c, 200, json_pack("{s:i, s:i}", "ms", (int)ms, "count", (int)count));
    }
    if (strcmp(url, "/control/token") == 0) {
        if (rq->over || !rq->len || rq->len >= sizeof S.token)
            return send_error(c, 400, "bad_request", "body: the new token");
        size_t n = rq->len;
        while (n && (rq->body[n - 1] == '\n' || rq->body[n - 1] == '\r' || rq->body[n - 1] == ' '))
            n--;
        memcpy(S.token, rq->body, n);
        S.token[n] = 0;
        S.basic[0] = 0;
        logf_("bearer token rotated");
        return send_json(c, 200, json_pack("{s:b}", "rotated", 1));
    }
    if (strcmp(url, "/control/finding") == 0) {
        json_error_t je;
        json_t *in = rq->over ? NULL : json_loadb(rq->body ? rq->body : "", rq->len, 0, &je);
        const char *id = in ? json_string_value(json_object_get(in, "id")) : NULL;
        if (!id || !*id || strlen(id) >= ID_MAX) {
            json_decref(in);
            return send_error(c, 400, "bad_request", "body: a JSON object with a string id");
        }
        struct finding *f = find(id);
        if (!f) {
            f = add_finding(id);
            f->obj = json_object();
            f->manual = true;
            f->published = true;
        }
        json_t *raw = json_object_get(in, "raw");
        if (raw) {
            json_decref(f->obj);
            f->obj = json_deep_copy(raw);
        } else {
            if (!json_is_object(f->obj)) {
                json_decref(f->obj);
                f->obj = json_object();
            }
            json_object_update(f->obj, in);
            /* a null in the body removes the field (an item without it) */
            const char *k;
            json_t *v;
            void *tmp;
            json_object_foreach_safe(f->obj, tmp, k, v)
            {
                if (json_is_null(v) && strcmp(k, "rectified_date") != 0)
                    json_object_del(f->obj, k);
            }
        }
        f->manual = true;
        f->published = true;
        touch(f);
        json_decref(in);
        save_state();
        return send_json(c, 200, json_pack("{s:s, s:i}", "id", f->id, "version", (int)f->version));
    }
    return send_error(c, 404, "not_found", "unknown control endpoint");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **ctx)
{
    (void)cls;
    (void)version;
    struct req *rq = *ctx;
    if (!rq) {
        rq = calloc(1, sizeof *rq);
        if (!rq)
            return MHD_NO;
        *ctx = rq;
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (rq->len + *upload_data_size > BODY_MAX) {
            rq->over = true;
        } else {
            char *b = realloc(rq->body, rq->len + *upload_data_size + 1);
            if (!b)
                return MHD_NO;
            rq->body = b;
            memcpy(rq->body + rq->len, upload_data, *upload_data_size);
            rq->len += *upload_data_size;
            rq->body[rq->len] = 0;
        }
        *upload_data_size = 0;
        return MHD_YES;
    }

    if (strcmp(url, "/healthz") == 0)
        return send_text(c, 200, "text/plain", strdup("ok\n"), NULL);

    pthread_mutex_lock(&S.mu);
    S.requests++;
    enum MHD_Result ret;
    if (strncmp(url, "/control/", 9) == 0) {
        ret = control(c, url, method, rq);
        pthread_mutex_unlock(&S.mu);
        return ret;
    }
    if (strcmp(url, "/api/v1/findings") != 0) {
        pthread_mutex_unlock(&S.mu);
        return send_error(c, 404, "not_found", "no such resource");
    }
    S.api_requests++;
    unsigned delay = 0;
    if (S.delay_count) {
        S.delay_count--;
        S.injected_delay++;
        delay = S.delay_ms;
    }
    if (delay) {
        pthread_mutex_unlock(&S.mu);
        struct timespec ts = {(time_t)(delay / 1000), (long)(delay % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
        pthread_mutex_lock(&S.mu);
    }
    const char *www = NULL;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0) {
        ret = send_error(c, 405, "method_not_allowed", "GET only");
    } else if (S.fail_count) {
        S.fail_count--;
        S.injected_fail++;
        unsigned st = S.fail_status;
        if (st == 401)
            ret = send_text(c, 401, "application/json; charset=utf-8",
                            strdup("{\"error\":\"invalid_token\",\"message\":\"token expired "
                                   "(injected)\"}"),
                            S.basic[0] ? "Basic realm=\"audit\"" : "Bearer realm=\"audit\"");
        else
            ret = send_error(c, st, "injected", "injected failure");
    } else if (!authorized(c, &www)) {
        S.refused_auth++;
        ret = send_text(c, 401, "application/json; charset=utf-8",
                        strdup("{\"error\":\"unauthorized\",\"message\":\"missing or invalid "
                               "credentials\"}"),
                        www);
    } else {
        S.api_ok++;
        ret = api_findings(c);
    }
    pthread_mutex_unlock(&S.mu);
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **ctx,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    struct req *rq = *ctx;
    if (rq) {
        free(rq->body);
        free(rq);
    }
    *ctx = NULL;
}

/* ---- main ---------------------------------------------------------------------------------- */

static bool read_file_line(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    size_t n = fread(buf, 1, len - 1, f);
    fclose(f);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        n--;
    buf[n] = 0;
    return n > 0;
}

static void base64(const unsigned char *in, size_t n, char *out)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t k = 0; k < n; k += 3) {
        unsigned v = (unsigned)in[k] << 16 | (k + 1 < n ? (unsigned)in[k + 1] << 8 : 0) |
                     (k + 2 < n ? in[k + 2] : 0);
        out[o++] = tbl[v >> 18 & 63];
        out[o++] = tbl[v >> 12 & 63];
        out[o++] = k + 1 < n ? tbl[v >> 6 & 63] : '=';
        out[o++] = k + 2 < n ? tbl[v & 63] : '=';
    }
    out[o] = 0;
}

/* kpctl scheme output ("unit\tCODE\tNAME\tGROUP") or one "CODE[\tNAME]" per line. */
static int load_units(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[512];
    while (fgets(line, sizeof line, f) && S.nunits < UNITS_MAX) {
        line[strcspn(line, "\r\n")] = 0;
        char *fld[4] = {0};
        int n = 0;
        for (char *p = line, *tab; n < 4 && p; p = tab ? tab + 1 : NULL) {
            tab = strchr(p, '\t');
            if (tab)
                *tab = 0;
            fld[n++] = p;
        }
        const char *code, *name = "", *group = "";
        if (n >= 2 && strcmp(fld[0], "unit") == 0) {
            code = fld[1];
            name = n > 2 ? fld[2] : "";
            group = n > 3 ? fld[3] : "";
        } else if (n >= 1 && fld[0][0] && fld[0][0] != '#' && strchr(fld[0], ' ') == NULL &&
                   (n == 1 || n == 2) && strcmp(fld[0], "scheme") != 0) {
            code = fld[0];
            name = n > 1 ? fld[1] : "";
        } else {
            continue;
        }
        struct unit *u = &S.units[S.nunits];
        if (snprintf(u->code, sizeof u->code, "%s", code) >= (int)sizeof u->code) {
            fprintf(stderr, "sim-audit: unit code too long, skipped: %.40s...\n", code);
            continue;
        }
        if (snprintf(u->name, sizeof u->name, "%s", name) >= (int)sizeof u->name)
            fprintf(stderr, "sim-audit: unit name of %s cut to %zu bytes\n", u->code,
                    sizeof u->name - 1);
        S.nunits++;
        /* counties, districts and zones spend more and are audited more than departments */
        bool gov = strcmp(group, "g1") == 0 || strcmp(group, "g2") == 0 || strcmp(group, "g3") == 0;
        u->lambda = gov ? 1.0 : 0.45;
    }
    fclose(f);
    return S.nunits ? 0 : -1;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: kp-sim-audit --units FILE [--port N] [--bind ADDR] [--port-file FILE]\n"
                 "         [--token-file FILE | --basic-user USER --basic-password-file FILE]\n"
                 "         [--year 2015] [--seed N] [--bad-rate 0.03] [--state FILE] [--month M]\n"
                 "         [--fail-status S --fail-count N] [--delay-ms D --delay-count N]\n"
                 "  --units      kpctl scheme output, or one unit code per line\n"
                 "  --port 0     any free port (written to --port-file)\n"
                 "  --month M    simulate months 1..M at start\n");
}

int main(int argc, char **argv)
{
    const char *units = NULL, *bind_addr = "127.0.0.1", *port_file = NULL, *token_file = NULL;
    const char *basic_user = NULL, *basic_pw_file = NULL;
    long port = 0, start_month = 0;
    S.year = 2015;
    S.seed = 2015;
    S.bad_rate = 0.03;
    for (int k = 1; k < argc; k++) {
        const char *a = argv[k];
        const char *v = k + 1 < argc ? argv[k + 1] : NULL;
#define OPT(name) (strcmp(a, name) == 0 && v && (k++, 1))
        if (OPT("--units"))
            units = v;
        else if (OPT("--port"))
            port = strtol(v, NULL, 10);
        else if (OPT("--bind"))
            bind_addr = v;
        else if (OPT("--port-file"))
            port_file = v;
        else if (OPT("--token-file"))
            token_file = v;
        else if (OPT("--basic-user"))
            basic_user = v;
        else if (OPT("--basic-password-file"))
            basic_pw_file = v;
        else if (OPT("--year"))
            S.year = (int)strtol(v, NULL, 10);
        else if (OPT("--seed"))
            S.seed = strtoull(v, NULL, 10);
        else if (OPT("--bad-rate"))
            S.bad_rate = strtod(v, NULL);
        else if (OPT("--state"))
            S.state_path = v;
        else if (OPT("--month"))
            start_month = strtol(v, NULL, 10);
        else if (OPT("--fail-status"))
            S.fail_status = (unsigned)strtoul(v, NULL, 10);
        else if (OPT("--fail-count"))
            S.fail_count = (unsigned)strtoul(v, NULL, 10);
        else if (OPT("--delay-ms"))
            S.delay_ms = (unsigned)strtoul(v, NULL, 10);
        else if (OPT("--delay-count"))
            S.delay_count = (unsigned)strtoul(v, NULL, 10);
        else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "kp-sim-audit: unknown or incomplete option %s\n", a);
            usage(stderr);
            return 2;
        }
#undef OPT
    }
    if (!units || port < 0 || port > 65535 || start_month < 0 || start_month > 12) {
        usage(stderr);
        return 2;
    }
    if (S.fail_count && !S.fail_status)
        S.fail_status = 500;
    if (load_units(units) != 0) {
        fprintf(stderr, "kp-sim-audit: no units in %s\n", units);
        return 2;
    }
    if (token_file && !read_file_line(token_file, S.token, sizeof S.token)) {
        fprintf(stderr, "kp-sim-audit: cannot read a token from %s\n", token_file);
        return 2;
    }
    if (basic_user) {
        char pw[1024], up[2048];
        if (!basic_pw_file || !read_file_line(basic_pw_file, pw, sizeof pw)) {
            fprintf(stderr, "kp-sim-audit: --basic-user needs --basic-password-file\n");
            return 2;
        }
        int n = snprintf(up, sizeof up, "%s:%s", basic_user, pw);
        memcpy(S.basic, "Basic ", 6);
        base64((const unsigned char *)up, (size_t)n, S.basic + 6);
    }
    if (S.state_path && load_state() != 0) {
        fprintf(stderr, "kp-sim-audit: %s is not a state file of this simulator\n", S.state_path);
        return 2;
    }
    for (int m = S.month + 1; m <= start_month; m++)
        step_month(m, false);
    save_state();

    /* Block the stop signals before MHD starts its threads, so that only sigwait sees them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, bind_addr, &sin.sin_addr) != 1) {
        fprintf(stderr, "kp-sim-audit: --bind: not an IPv4 address: %s\n", bind_addr);
        return 2;
    }
    struct MHD_Daemon *d =
        MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION,
                         (uint16_t)port, NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR,
                         (struct sockaddr *)&sin, MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "kp-sim-audit: cannot listen on %s:%ld\n", bind_addr, port);
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    int bound = info ? info->port : (int)port;
    if (port_file) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", port_file);
        FILE *f = fopen(tmp, "w");
        if (!f || fprintf(f, "%d\n", bound) < 0 || fclose(f) != 0 || rename(tmp, port_file) != 0) {
            fprintf(stderr, "kp-sim-audit: cannot write %s\n", port_file);
            MHD_stop_daemon(d);
            return 1;
        }
    }
    logf_("listening on http://%s:%d/api/v1/findings (%zu units, year %d, month %d, auth %s)",
          bind_addr, bound, S.nunits, S.year, S.month,
          S.token[0]   ? "bearer"
          : S.basic[0] ? "basic"
                       : "none");

    int sig = 0;
    sigwait(&set, &sig);
    logf_("stopping (signal %d)", sig);
    MHD_stop_daemon(d);
    pthread_mutex_lock(&S.mu);
    save_state();
    for (size_t k = 0; k < S.nf; k++)
        json_decref(S.f[k].obj);
    free(S.f);
    pthread_mutex_unlock(&S.mu);
    return 0;
}
