/*
 * src_http_map: templates from a department API's JSON items to adapter records (see
 * src_http_map.h for the syntax). The templates are compiled once at start; mapping an item
 * only walks JSON and writes into fixed scratch buffers, so a hostile item costs bounded time
 * and memory whatever it holds (STYLE.md "Memory").
 */
#include "src_http_map.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kp_err.h"

enum fld { F_U, F_I, F_P, F_VAL, F_REF, F_REV, F_AT, F_W, F__COUNT };
static const char *const fld_name[F__COUNT] = {"u", "i", "p", "val", "ref", "rev", "at", "w"};
#define F_REQUIRED_MASK ((1u << F_U) | (1u << F_I) | (1u << F_P) | (1u << F_VAL) | (1u << F_REF))

enum filter { FI_NONE, FI_MONTH, FI_QUARTER, FI_HALF, FI_YEAR, FI_DAY, FI_MS, FI_MAP };
static const char *const filter_name[] = {"",     "month", "quarter", "half",
                                          "year", "day",   "ms",      "map"};

struct map_ent {
    char *key; /* NULL: the "*" default */
    char *val;
};

struct seg {
    char *lit;   /* literal text, or NULL for a placeholder */
    char **path; /* placeholder: path segments */
    size_t npath;
    enum filter f;
    struct map_ent *map;
    size_t nmap;
};

struct tmpl {
    struct seg *segs;
    size_t nsegs;
    char *src; /* the template as written, for messages */
};

struct http_map {
    size_t nobs;
    struct tmpl *t[HTTP_OBS_MAX][F__COUNT]; /* borrowed from tmpls; NULL: field absent */
    struct tmpl **tmpls;                    /* every compiled template, owned */
    size_t ntmpls;
    char text[HTTP_OBS_MAX][F__COUNT][HTTP_FIELD_MAX + 1];
};

/* ---- JSON helpers ------------------------------------------------------------------------ */

const json_t *http_json_path(const json_t *root, const char *path)
{
    const json_t *v = root;
    if (!path || !*path)
        return v;
    const char *p = path;
    while (v && *p) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (json_is_object(v)) {
            v = json_object_getn(v, p, n);
        } else if (json_is_array(v)) {
            size_t idx = 0;
            if (n == 0 || n > 9)
                return NULL;
            for (size_t k = 0; k < n; k++) {
                if (p[k] < '0' || p[k] > '9')
                    return NULL;
                idx = idx * 10 + (size_t)(p[k] - '0');
            }
            v = json_array_get(v, idx);
        } else {
            return NULL;
        }
        p += n;
        if (*p == '.')
            p++;
    }
    return v;
}

static void real_text(double d, char *buf, size_t buflen)
{
    /* The shortest of %.15g/%.16g/%.17g that reads back as the same double. */
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, buflen, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            return;
    }
}

bool http_json_text(const json_t *v, char *buf, size_t buflen)
{
    if (buflen)
        buf[0] = 0;
    if (!v)
        return false;
    switch (json_typeof(v)) {
    case JSON_STRING: {
        size_t n = json_string_length(v);
        if (n >= buflen)
            n = buflen - 1;
        memcpy(buf, json_string_value(v), n);
        buf[n] = 0;
        return true;
    }
    case JSON_INTEGER:
        snprintf(buf, buflen, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return true;
    case JSON_REAL:
        real_text(json_real_value(v), buf, buflen);
        return true;
    case JSON_TRUE:
        snprintf(buf, buflen, "true");
        return true;
    case JSON_FALSE:
        snprintf(buf, buflen, "false");
        return true;
    case JSON_NULL:
        return false;
    default: {
        /* Object or array: its compact JSON, cut to the buffer (jansson returns the length
         * the whole text would need). */
        size_t need = json_dumpb(v, buf, buflen ? buflen - 1 : 0, JSON_COMPACT);
        size_t n = need < buflen ? need : buflen - 1;
        buf[n] = 0;
        return false;
    }
    }
}

static bool digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int k = 0; k < n; k++) {
        if (s[k] < '0' || s[k] > '9')
            return false;
        v = v * 10 + (s[k] - '0');
    }
    *out = v;
    return true;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static long long days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    long long yoe = y - era * 400;
    long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m)
{
    static const int dm[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return dm[m - 1];
}

/* "YYYY-MM" or "YYYY-MM-DD" at the start of s; *day = 0 when absent. Returns the length
 * read or 0. */
static size_t parse_date(const char *s, int *y, int *m, int *d)
{
    *d = 0;
    if (!digits(s, 4, y) || s[4] != '-' || !digits(s + 5, 2, m) || *m < 1 || *m > 12)
        return 0;
    if (s[7] != '-')
        return 7;
    if (!digits(s + 8, 2, d) || *d < 1 || *d > days_in_month(*y, *m))
        return 0;
    return 10;
}

bool http_iso8601_ms(const char *s, long long *ms)
{
    int y, mo, d, hh = 0, mi = 0, ss = 0;
    size_t n = parse_date(s, &y, &mo, &d);
    if (n != 10)
        return false;
    const char *p = s + 10;
    long long frac_ms = 0;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        if (!digits(p, 2, &hh) || p[2] != ':' || !digits(p + 3, 2, &mi) || hh > 23 || mi > 59)
            return false;
        p += 5;
        if (*p == ':') {
            if (!digits(p + 1, 2, &ss) || ss > 60)
                return false;
            p += 3;
            if (*p == '.' || *p == ',') {
                p++;
                int k = 0;
                for (; *p >= '0' && *p <= '9'; p++, k++)
                    if (k < 3)
                        frac_ms = frac_ms * 10 + (*p - '0');
                if (k == 0)
                    return false;
                for (; k < 3; k++)
                    frac_ms *= 10;
            }
        }
    }
    long long off_min = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1;
        int oh, om = 0;
        p++;
        if (!digits(p, 2, &oh) || oh > 23)
            return false;
        p += 2;
        if (*p == ':')
            p++;
        if (*p) {
            if (!digits(p, 2, &om) || om > 59)
                return false;
            p += 2;
        }
        off_min = sign * (oh * 60LL + om);
    }
    if (*p)
        return false;
    long long secs = days_from_civil(y, mo, d) * 86400LL + hh * 3600LL + mi * 60LL + ss;
    *ms = (secs - off_min * 60) * 1000 + frac_ms;
    return true;
}

/* ---- compiling ----------------------------------------------------------------------------- */

static char *dupn(const char *s, size_t n)
{
    char *d = kp_xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

static void tmpl_free(struct tmpl *t)
{
    if (!t)
        return;
    for (size_t k = 0; k < t->nsegs; k++) {
        struct seg *s = &t->segs[k];
        free(s->lit);
        for (size_t j = 0; j < s->npath; j++)
            free(s->path[j]);
        free(s->path);
        for (size_t j = 0; j < s->nmap; j++) {
            free(s->map[j].key);
            free(s->map[j].val);
        }
        free(s->map);
    }
    free(t->segs);
    free(t->src);
    free(t);
}

static struct seg *seg_add(struct tmpl *t)
{
    t->segs = kp_xrealloc(t->segs, (t->nsegs + 1) * sizeof *t->segs);
    struct seg *s = &t->segs[t->nsegs++];
    memset(s, 0, sizeof *s);
    return s;
}

/* Parses "k=v;k=v;*=v". */
static int parse_map(struct seg *s, const char *spec, size_t len, char *why, size_t whylen)
{
    const char *p = spec, *end = spec + len;
    while (p < end) {
        const char *semi = memchr(p, ';', (size_t)(end - p));
        const char *e = semi ? semi : end;
        const char *eq = memchr(p, '=', (size_t)(e - p));
        if (!eq || eq == p) {
            snprintf(why, whylen, "map entry \"%.*s\" is not key=value", (int)(e - p), p);
            return KP_ECONFIG;
        }
        s->map = kp_xrealloc(s->map, (s->nmap + 1) * sizeof *s->map);
        struct map_ent *m = &s->map[s->nmap++];
        bool star = eq - p == 1 && *p == '*';
        m->key = star ? NULL : dupn(p, (size_t)(eq - p));
        m->val = dupn(eq + 1, (size_t)(e - eq - 1));
        p = semi ? semi + 1 : end;
    }
    if (s->nmap == 0) {
        snprintf(why, whylen, "map: needs key=value entries");
        return KP_ECONFIG;
    }
    return 0;
}

/* Parses "path" or "path|filter" (the text between braces). */
static int parse_placeholder(struct seg *s, const char *p, size_t len, char *why, size_t whylen)
{
    const char *bar = memchr(p, '|', len);
    size_t plen = bar ? (size_t)(bar - p) : len;
    if (plen == 0) {
        snprintf(why, whylen, "empty placeholder path");
        return KP_ECONFIG;
    }
    size_t start = 0;
    for (size_t k = 0; k <= plen; k++) {
        if (k < plen && p[k] != '.')
            continue;
        if (k == start) {
            snprintf(why, whylen, "path \"%.*s\" has an empty segment", (int)plen, p);
            return KP_ECONFIG;
        }
        s->path = kp_xrealloc(s->path, (s->npath + 1) * sizeof *s->path);
        s->path[s->npath++] = dupn(p + start, k - start);
        start = k + 1;
    }
    if (!bar)
        return 0;
    const char *f = bar + 1;
    size_t flen = len - plen - 1;
    for (int k = FI_MONTH; k <= FI_MS; k++)
        if (strlen(filter_name[k]) == flen && memcmp(f, filter_name[k], flen) == 0) {
            s->f = (enum filter)k;
            return 0;
        }
    if (flen > 4 && memcmp(f, "map:", 4) == 0) {
        s->f = FI_MAP;
        return parse_map(s, f + 4, flen - 4, why, whylen);
    }
    snprintf(why, whylen,
             "unknown filter \"%.*s\" (month, quarter, half, year, day, ms, map:k=v;*=v)",
             (int)flen, f);
    return KP_ECONFIG;
}

static int tmpl_compile(const char *src, size_t len, struct tmpl **out, char *why, size_t whylen)
{
    struct tmpl *t = kp_xcalloc(1, sizeof *t);
    t->src = dupn(src, len);
    struct {
        char *b;
        size_t n;
    } lit = {kp_xmalloc(len + 1), 0};
    size_t k = 0;
    int rc = 0;
    while (k < len && rc == 0) {
        char c = src[k];
        if ((c == '{' || c == '}') && k + 1 < len && src[k + 1] == c) {
            lit.b[lit.n++] = c;
            k += 2;
            continue;
        }
        if (c == '}') {
            snprintf(why, whylen, "unmatched } (write }} for a literal brace)");
            rc = KP_ECONFIG;
            break;
        }
        if (c != '{') {
            lit.b[lit.n++] = c;
            k++;
            continue;
        }
        const char *close = memchr(src + k + 1, '}', len - k - 1);
        if (!close) {
            snprintf(why, whylen, "unclosed {");
            rc = KP_ECONFIG;
            break;
        }
        if (lit.n) {
            seg_add(t)->lit = dupn(lit.b, lit.n);
            lit.n = 0;
        }
        struct seg *s = seg_add(t);
        rc = parse_placeholder(s, src + k + 1, (size_t)(close - (src + k + 1)), why, whylen);
        k = (size_t)(close - src) + 1;
    }
    if (rc == 0 && lit.n)
        seg_add(t)->lit = dupn(lit.b, lit.n);
    free(lit.b);
    if (rc != 0) {
        tmpl_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

static int field_index(const char *s, size_t n)
{
    for (int f = 0; f < F__COUNT; f++)
        if (strlen(fld_name[f]) == n && memcmp(s, fld_name[f], n) == 0)
            return f;
    return -1;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Compiles "field=template field=template" into set[], owning the templates through m. */
static int parse_pairs(struct http_map *m, const char *text, struct tmpl *set[F__COUNT],
                       const char *key, char *err, size_t errlen)
{
    const char *p = text ? text : "";
    while (*p) {
        while (is_space(*p))
            p++;
        if (!*p)
            break;
        const char *start = p;
        /* A pair ends at white space outside braces. */
        int depth = 0;
        while (*p && (depth > 0 || !is_space(*p))) {
            if (*p == '{')
                depth++;
            else if (*p == '}' && depth > 0)
                depth--;
            p++;
        }
        size_t n = (size_t)(p - start);
        const char *eq = memchr(start, '=', n);
        int f = eq ? field_index(start, (size_t)(eq - start)) : -1;
        if (f < 0) {
            snprintf(err, errlen,
                     "%s: \"%.*s\" is not field=template with field one of u i p val ref rev "
                     "at w",
                     key, (int)n, start);
            return KP_ECONFIG;
        }
        char why[200];
        struct tmpl *t = NULL;
        if (tmpl_compile(eq + 1, n - (size_t)(eq + 1 - start), &t, why, sizeof why) != 0) {
            snprintf(err, errlen, "%s: %s: %s", key, fld_name[f], why);
            return KP_ECONFIG;
        }
        m->tmpls = kp_xrealloc(m->tmpls, (m->ntmpls + 1) * sizeof *m->tmpls);
        m->tmpls[m->ntmpls++] = t;
        set[f] = t; /* a later pair for the same field wins */
    }
    return 0;
}

int http_map_new(const char *fields, char *const *observations, struct http_map **out, char *err,
                 size_t errlen)
{
    *out = NULL;
    struct http_map *m = kp_xcalloc(1, sizeof *m);
    struct tmpl *base[F__COUNT] = {0};
    int rc = parse_pairs(m, fields, base, "source.http.fields", err, errlen);
    size_t nobs = 0;
    for (; rc == 0 && observations && observations[nobs]; nobs++) {
        if (nobs >= HTTP_OBS_MAX) {
            snprintf(err, errlen, "source.http.observations: at most %d entries", HTTP_OBS_MAX);
            rc = KP_ECONFIG;
            break;
        }
        memcpy(m->t[nobs], base, sizeof base);
        char key[64];
        snprintf(key, sizeof key, "source.http.observations[%zu]", nobs);
        rc = parse_pairs(m, observations[nobs], m->t[nobs], key, err, errlen);
    }
    if (rc == 0 && nobs == 0) {
        memcpy(m->t[0], base, sizeof base);
        nobs = 1;
    }
    m->nobs = nobs;
    for (size_t k = 0; rc == 0 && k < nobs; k++)
        for (int f = 0; f < F__COUNT; f++)
            if ((F_REQUIRED_MASK & (1u << f)) && !m->t[k][f]) {
                if (observations && observations[0])
                    snprintf(err, errlen,
                             "source.http.observations[%zu]: no template for %s (required: u i p "
                             "val ref, from source.http.fields or the entry)",
                             k, fld_name[f]);
                else
                    snprintf(err, errlen,
                             "source.http.fields: no template for %s (required: u i p val ref)",
                             fld_name[f]);
                rc = KP_ECONFIG;
                break;
            }
    if (rc != 0) {
        http_map_destroy(&m);
        return rc;
    }
    *out = m;
    return 0;
}

void http_map_destroy(struct http_map **mp)
{
    if (!mp || !*mp)
        return;
    struct http_map *m = *mp;
    for (size_t k = 0; k < m->ntmpls; k++)
        tmpl_free(m->tmpls[k]);
    free(m->tmpls);
    free(m);
    *mp = NULL;
}

size_t http_map_count(const struct http_map *m)
{
    return m->nobs;
}

/* ---- mapping ------------------------------------------------------------------------------- */

enum eval { EV_OK, EV_MISSING, EV_BAD };

struct out {
    char *buf;
    size_t cap, len;
};

static void out_put(struct out *o, const char *s, size_t n)
{
    if (o->len + n > o->cap)
        n = o->cap - o->len; /* cut: the value is then longer than any limit, and refused */
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = 0;
}

static void out_puts(struct out *o, const char *s)
{
    out_put(o, s, strlen(s));
}

static const json_t *seg_value(const struct seg *s, const json_t *item)
{
    const json_t *v = item;
    for (size_t k = 0; v && k < s->npath; k++) {
        const char *p = s->path[k];
        if (json_is_object(v)) {
            v = json_object_get(v, p);
        } else if (json_is_array(v)) {
            char *end;
            unsigned long idx = strtoul(p, &end, 10);
            v = *p >= '0' && *p <= '9' && !*end ? json_array_get(v, idx) : NULL;
        } else {
            v = NULL;
        }
    }
    return v;
}

static void path_text(const struct seg *s, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = 0;
    for (size_t k = 0; k < s->npath && n < len; k++)
        n += (size_t)snprintf(buf + n, len - n, "%s%s", k ? "." : "", s->path[k]);
}

/* Applies a period filter to a date text; false when it is no date. */
static bool period_filter(enum filter f, const char *text, char *buf, size_t len)
{
    int y, m, d;
    size_t n = parse_date(text, &y, &m, &d);
    if (n == 0 || (f == FI_DAY && d == 0))
        return false;
    switch (f) {
    case FI_MONTH:
        snprintf(buf, len, "%04d-%02d", y, m);
        break;
    case FI_QUARTER:
        snprintf(buf, len, "%04d-Q%d", y, (m - 1) / 3 + 1);
        break;
    case FI_HALF:
        snprintf(buf, len, "%04d-H%d", y, m <= 6 ? 1 : 2);
        break;
    case FI_YEAR:
        snprintf(buf, len, "%04d", y);
        break;
    default:
        snprintf(buf, len, "%04d-%02d-%02d", y, m, d);
        break;
    }
    return true;
}

static enum eval eval_seg(const struct seg *s, const json_t *item, struct out *o, char *why,
                          size_t whylen)
{
    char path[128];
    const json_t *v = seg_value(s, item);
    if (!v || json_is_null(v)) {
        path_text(s, path, sizeof path);
        snprintf(why, whylen, "%.100s is %s", path, v ? "null" : "missing");
        return EV_MISSING;
    }
    char text[HTTP_FIELD_MAX + 1];
    if (!http_json_text(v, text, sizeof text)) {
        path_text(s, path, sizeof path);
        snprintf(why, whylen, "%.100s is %s, not a scalar", path,
                 json_is_object(v) ? "an object" : "an array");
        out_puts(o, text);
        return EV_BAD;
    }
    if (json_is_string(v) && strlen(text) < json_string_length(v) &&
        strlen(text) < HTTP_FIELD_MAX) {
        path_text(s, path, sizeof path);
        snprintf(why, whylen, "%.100s holds a NUL character", path);
        return EV_BAD;
    }
    char conv[64];
    switch (s->f) {
    case FI_NONE:
        out_puts(o, text);
        return EV_OK;
    case FI_MS: {
        long long ms;
        if (json_is_integer(v)) {
            out_puts(o, text);
            return EV_OK;
        }
        if (json_is_string(v) && http_iso8601_ms(text, &ms)) {
            snprintf(conv, sizeof conv, "%lld", ms);
            out_puts(o, conv);
            return EV_OK;
        }
        path_text(s, path, sizeof path);
        snprintf(why, whylen, "%.100s \"%.60s\" is not an ISO-8601 time", path, text);
        out_puts(o, text);
        return EV_BAD;
    }
    case FI_MAP:
        for (size_t k = 0; k < s->nmap; k++)
            if (s->map[k].key && strcmp(s->map[k].key, text) == 0) {
                out_puts(o, s->map[k].val);
                return EV_OK;
            }
        for (size_t k = 0; k < s->nmap; k++)
            if (!s->map[k].key) {
                out_puts(o, s->map[k].val);
                return EV_OK;
            }
        path_text(s, path, sizeof path);
        snprintf(why, whylen, "%.100s \"%.60s\" is not in the map", path, text);
        out_puts(o, text);
        return EV_BAD;
    default:
        if (json_is_string(v) && period_filter(s->f, text, conv, sizeof conv)) {
            out_puts(o, conv);
            return EV_OK;
        }
        path_text(s, path, sizeof path);
        snprintf(why, whylen, "%.100s \"%.60s\" is not a date (YYYY-MM-DD) for |%s", path, text,
                 filter_name[s->f]);
        out_puts(o, text);
        return EV_BAD;
    }
}

/* Evaluates t into buf; *why is set for EV_MISSING/EV_BAD. */
static enum eval eval_tmpl(const struct tmpl *t, const json_t *item, char *buf, size_t cap,
                           char *why, size_t whylen)
{
    struct out o = {buf, cap, 0};
    buf[0] = 0;
    enum eval worst = EV_OK;
    for (size_t k = 0; k < t->nsegs; k++) {
        const struct seg *s = &t->segs[k];
        if (s->lit) {
            out_puts(&o, s->lit);
            continue;
        }
        char w[256];
        enum eval e = eval_seg(s, item, &o, w, sizeof w);
        if (e > worst) {
            worst = e;
            snprintf(why, whylen, "%s", w);
        }
    }
    return worst;
}

enum http_map_result http_map_item(struct http_map *m, const json_t *item, struct adp_rec *recs,
                                   char *why, size_t whylen)
{
    enum http_map_result res = HTTP_MAP_OK;
    if (whylen)
        why[0] = 0;
    for (size_t k = 0; k < m->nobs; k++) {
        const char *v[F__COUNT] = {0};
        for (int f = 0; f < F__COUNT; f++) {
            const struct tmpl *t = m->t[k][f];
            if (!t)
                continue;
            char w[256] = "";
            char *buf = m->text[k][f];
            enum eval e = eval_tmpl(t, item, buf, HTTP_FIELD_MAX, w, sizeof w);
            if (e == EV_OK) {
                v[f] = buf;
                continue;
            }
            if (res == HTTP_MAP_OK) {
                snprintf(why, whylen, "%s: %s", fld_name[f], w);
                res = e == EV_MISSING ? HTTP_MAP_MISSING : HTTP_MAP_BAD;
            }
            /* Absent: refused centrally as missing_field. Wrong kind: kept as read where the
             * scorer checks the text (a code, a period, a number) so the rejection names the
             * real fault; a ref is any text, so a bad one is left out rather than sent as a
             * made-up identity. */
            v[f] = e == EV_BAD && f != F_REF ? buf : NULL;
        }
        recs[k] =
            (struct adp_rec){v[F_U], v[F_I], v[F_P], v[F_VAL], v[F_REF], v[F_REV], v[F_AT], v[F_W]};
    }
    return res;
}
