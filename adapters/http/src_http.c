/*
 * src_http: the `http` source plugin (see src_http.h for what it promises). This file holds
 * the HTTP side — libcurl requests with authentication, timeouts, bounded retries with
 * backoff and jitter, the hold-off after a refusal — and the position logic of both
 * pagination modes: a poll computes the position after the items it returns, the position
 * becomes the committed one only when the runtime acks that the batch is durable
 * (adp_source.h "pull protocol"), and the persisted cursor text is that position as a small
 * JSON object:
 *
 *   {"mode":"cursor","cursor":"<the API's next_cursor>"}
 *   {"mode":"page","since":"<since_field of the last item>","ids":["<id>",…]}
 *
 * In page mode the ids are those of the items already sent whose since value equals
 * "since" (the tie run the next poll must skip). When the run is too long for the spool's
 * cursor (STATE_MAX bytes) the ids are kept in memory only and the cursor says "run":
 * "partial": after a restart the run is sent again (duplicates, which the scorer absorbs,
 * rather than a skip).
 */
#include "src_http.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "kp_buf.h"
#include "kp_err.h"
#include "kp_log.h"
#include "kp_spool.h"
#include "kp_time.h"
#include "src_http_map.h"

#define CFG(field) offsetof(struct src_http_config, field)
static const struct kp_cfg_entry http_config[] = {
    {"source.http.url", KP_CFG_STR, "", 0, 0, CFG(url), false, false,
     "API endpoint (http:// or https://; fixed query parameters allowed; never put secrets "
     "here)"},
    {"source.http.auth", KP_CFG_STR, "none", 0, 0, CFG(auth), false, false,
     "none, bearer or basic"},
    {"source.http.token", KP_CFG_STR, "", 0, 0, CFG(token), false, false,
     "bearer token inline (tests only; use token_file)"},
    {"source.http.token_file", KP_CFG_STR, "", 0, 0, CFG(token_file), false, false,
     "file holding the bearer token; must not be world-readable; re-read when it changes"},
    {"source.http.user", KP_CFG_STR, "", 0, 0, CFG(user), false, false, "basic auth user"},
    {"source.http.password_file", KP_CFG_STR, "", 0, 0, CFG(password_file), false, false,
     "file holding the basic auth password; must not be world-readable"},
    {"source.http.ca_file", KP_CFG_STR, "", 0, 0, CFG(ca_file), false, false,
     "CA bundle for https (default: the system's)"},
    {"source.http.connect_timeout_ms", KP_CFG_MS, "5s", 10, 600000, CFG(connect_timeout_ms), false,
     false, "time to connect (TCP and TLS) before the attempt counts as failed"},
    {"source.http.timeout_ms", KP_CFG_MS, "30s", 10, 3600000, CFG(timeout_ms), false, false,
     "time for a whole request before the attempt counts as failed"},
    {"source.http.retries", KP_CFG_INT, "3", 0, 20, CFG(retries), false, false,
     "extra attempts after a connection error, timeout, 408, 429 or 5xx, within one poll"},
    {"source.http.backoff_min_ms", KP_CFG_MS, "250", 1, 600000, CFG(backoff_min_ms), false, false,
     "wait before the first retry; doubles per retry, with jitter"},
    {"source.http.backoff_max_ms", KP_CFG_MS, "8s", 1, 3600000, CFG(backoff_max_ms), false, false,
     "longest wait between two attempts"},
    {"source.http.holdoff_max_ms", KP_CFG_MS, "5m", 1000, 86400000, CFG(holdoff_max_ms), false,
     false,
     "after a refusal (4xx other than 408/429, redirect, bad JSON) no request for 5 s, "
     "doubling while it repeats up to this"},
    {"source.http.max_response_bytes", KP_CFG_BYTES, "16M", 1024, 1073741824.0,
     CFG(max_response_bytes), false, false, "largest response body accepted"},
    {"source.http.pagination", KP_CFG_STR, "cursor", 0, 0, CFG(pagination), false, false,
     "cursor (the API returns the next position) or page (since + page number)"},
    {"source.http.items", KP_CFG_STR, "items", 0, 0, CFG(items), false, false,
     "dotted JSON path of the item array in a response (\"\" = the body is the array)"},
    {"source.http.cursor_param", KP_CFG_STR, "cursor", 0, 0, CFG(cursor_param), false, false,
     "cursor mode: query parameter carrying the position"},
    {"source.http.cursor_path", KP_CFG_STR, "next_cursor", 0, 0, CFG(cursor_path), false, false,
     "cursor mode: dotted JSON path of the position after the response's last item"},
    {"source.http.more_path", KP_CFG_STR, "", 0, 0, CFG(more_path), false, false,
     "cursor mode: dotted JSON path of a boolean \"more items now\" (\"\" = a full page)"},
    {"source.http.limit_param", KP_CFG_STR, "limit", 0, 0, CFG(limit_param), false, false,
     "cursor mode: query parameter carrying the most items wanted"},
    {"source.http.page_param", KP_CFG_STR, "page", 0, 0, CFG(page_param), false, false,
     "page mode: query parameter carrying the page number (from 1)"},
    {"source.http.page_size_param", KP_CFG_STR, "page_size", 0, 0, CFG(page_size_param), false,
     false, "page mode: query parameter carrying the page size"},
    {"source.http.page_size", KP_CFG_INT, "100", 1, 5000, CFG(page_size), false, false,
     "items per request at most (also bounded by batch_max_obs / observations per item)"},
    {"source.http.since_param", KP_CFG_STR, "updated_since", 0, 0, CFG(since_param), false, false,
     "page mode: query parameter carrying the since value (inclusive)"},
    {"source.http.since_field", KP_CFG_STR, "updated_at", 0, 0, CFG(since_field), false, false,
     "page mode: dotted path of the item's change time (or sequence) the API orders by"},
    {"source.http.id_field", KP_CFG_STR, "id", 0, 0, CFG(id_field), false, false,
     "page mode: dotted path of the item's identity"},
    {"source.http.fields", KP_CFG_STR, "", 0, 0, CFG(fields), false, false,
     "field=template pairs every record of an item shares, e.g. \"u={unit} "
     "p={issued_date|month} ref={id}\" (see adapters/http/src_http_map.h)"},
    {"source.http.observations", KP_CFG_STRLIST, NULL, 0, 0, CFG(observations), false, false,
     "one entry of field=template pairs per record an item yields (none: one record per "
     "item from source.http.fields)"},
    {"source.http.dead_letters", KP_CFG_STR, "", 0, 0, CFG(dead_letters), false, false,
     "SQLite file of the refused items (position, reason, the item's JSON), required; the "
     "adapter's spool path keeps them with its other dead letters"},
    {"source.http.forward_refused", KP_CFG_BOOL, "true", 0, 0, CFG(forward_refused), false, false,
     "also send the records of refused object items, as read, so that the scorer records a "
     "rejection for each"},
    KP_CFG_END,
};

#define STATE_MAX   3000 /* bytes of persisted cursor text (the spool reads 4096) */
#define BODY_SHOWN  300  /* bytes of a refused response shown in the error */
#define HOLDOFF_MIN 5000 /* ms */
#define PAGE_WALK   1000 /* pages of already-sent items one poll walks at most */
#define RUN_IDS_MAX 200000
#define SECRET_MAX  4096
#define SINCE_MAX   512  /* bytes of a since value */
#define RAW_MAX     1024 /* bytes of a refused item's JSON kept in its dead letter */

enum mode { M_CURSOR, M_PAGE };
enum auth { A_NONE, A_BEARER, A_BASIC };

/* The ids of the items sent at the since value of the page position. */
struct run {
    char **ids;
    size_t n, cap;
    bool complete; /* false: restored from a cursor that could not hold them all */
};

struct http_state {
    const struct src_http_config *cfg;
    struct adp_source_env env; /* strings borrowed */
    struct http_map *map;
    enum mode mode;
    enum auth auth;
    CURL *curl;
    CURLU *base;
    char shown[512]; /* scheme://host[:port]/path: the URL as messages show it */
    struct curl_slist *headers;

    /* the secret (token or password) and the file it came from */
    char secret[SECRET_MAX];
    const char *secret_path;
    struct stat secret_st;

    /* committed position */
    char *cursor; /* cursor mode: "" = start */
    char *since;  /* page mode: "" = start */
    struct run run;

    /* what the last poll would make true once acked */
    bool pending;
    char *pend_cursor;
    char *pend_since;
    bool pend_extends; /* the new ids extend run (same since) instead of replacing it */
    struct run pend_run;

    /* one response */
    struct kp_buf body;
    bool body_over;
    char ctype[128];
    long retry_after_s;

    /* after a refusal */
    uint64_t holdoff_until_ns;
    uint64_t holdoff_ms;
    int holdoff_rc;
    char holdoff_err[600];

    struct kp_spool *dl; /* dead letters (source.http.dead_letters) */

    bool refusal; /* the failure of this poll is a refusal, not a passing fault */
    bool warned_no_cursor;
    uint64_t rng;
};

/* ---- small helpers ------------------------------------------------------------------------- */

static void wipe(void *p, size_t n)
{
    volatile unsigned char *v = p;
    while (n--)
        *v++ = 0;
}

static char *xdup(const char *s)
{
    return kp_xstrdup(s ? s : "");
}

static void set_str(char **dst, const char *s)
{
    free(*dst);
    *dst = xdup(s);
}

static bool empty(const char *s)
{
    return !s || !*s;
}

static uint64_t rnd(struct http_state *st)
{
    uint64_t x = st->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    st->rng = x;
    return x;
}

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void run_clear(struct run *r)
{
    for (size_t k = 0; k < r->n; k++)
        free(r->ids[k]);
    r->n = 0;
    r->complete = true;
}

static void run_fini(struct run *r)
{
    run_clear(r);
    free(r->ids);
    memset(r, 0, sizeof *r);
}

static void run_add(struct run *r, const char *id)
{
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 16;
        r->ids = kp_xrealloc(r->ids, r->cap * sizeof *r->ids);
    }
    r->ids[r->n++] = kp_xstrdup(id);
}

static bool run_has(const struct run *r, const char *id)
{
    for (size_t k = r->n; k-- > 0;)
        if (strcmp(r->ids[k], id) == 0)
            return true;
    return false;
}

/* Printable text of a response body for a message: at most max bytes, control characters
 * as spaces, never ending inside a UTF-8 sequence, "..." when cut. */
static void body_excerpt(const struct kp_buf *b, char *out, size_t outlen, size_t max)
{
    size_t n = b->len < max ? b->len : max;
    if (n + 4 > outlen)
        n = outlen > 4 ? outlen - 4 : 0;
    for (size_t k = 0; k < n; k++) {
        unsigned char c = b->data[k];
        out[k] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
    }
    size_t k = n; /* back to the lead byte of the last sequence */
    while (k > 0 && ((unsigned char)out[k - 1] & 0xC0) == 0x80)
        k--;
    if (k > 0 && ((unsigned char)out[k - 1] & 0x80)) {
        unsigned char lead = (unsigned char)out[k - 1];
        size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
        if (n - (k - 1) < need)
            n = k - 1;
    }
    out[n] = 0;
    if (b->len > n)
        memcpy(out + n, "...", 4);
}

/* ---- configuration ------------------------------------------------------------------------- */

static int parse_mode(const char *s, enum mode *m)
{
    if (s && strcmp(s, "cursor") == 0)
        *m = M_CURSOR;
    else if (s && strcmp(s, "page") == 0)
        *m = M_PAGE;
    else
        return KP_ECONFIG;
    return 0;
}

static int parse_auth(const char *s, enum auth *a)
{
    if (empty(s) || strcmp(s, "none") == 0)
        *a = A_NONE;
    else if (strcmp(s, "bearer") == 0)
        *a = A_BEARER;
    else if (strcmp(s, "basic") == 0)
        *a = A_BASIC;
    else
        return KP_ECONFIG;
    return 0;
}

/* Parses url into a CURLU; refuses other schemes and credentials in the URL. */
static int parse_url(const char *url, CURLU **out, char *shown, size_t shownlen, char *err,
                     size_t errlen)
{
    CURLU *u = curl_url();
    if (!u) {
        snprintf(err, errlen, "source.http.url: out of memory");
        return KP_ENOMEM;
    }
    int rc = 0;
    char *scheme = NULL, *user = NULL, *host = NULL, *port = NULL, *path = NULL;
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) {
        snprintf(err, errlen, "source.http.url: \"%.200s\" is not a URL", url);
        rc = KP_ECONFIG;
        goto done;
    }
    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
    if (!scheme || (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
        snprintf(err, errlen, "source.http.url: must be http:// or https://");
        rc = KP_ECONFIG;
        goto done;
    }
    if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK && user) {
        snprintf(err, errlen,
                 "source.http.url: carries credentials: use source.auth with token_file or "
                 "user/password_file");
        rc = KP_ECONFIG;
        goto done;
    }
    if (curl_url_get(u, CURLUPART_FRAGMENT, &path, 0) == CURLUE_OK && path) {
        curl_url_set(u, CURLUPART_FRAGMENT, NULL, 0);
        curl_free(path);
        path = NULL;
    }
    curl_url_get(u, CURLUPART_HOST, &host, 0);
    curl_url_get(u, CURLUPART_PORT, &port, 0);
    curl_url_get(u, CURLUPART_PATH, &path, 0);
    if (shown)
        snprintf(shown, shownlen, "%s://%s%s%s%s", scheme, host ? host : "", port ? ":" : "",
                 port ? port : "", path ? path : "/");
done:
    curl_free(scheme);
    curl_free(user);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    if (rc != 0 || !out)
        curl_url_cleanup(u);
    else
        *out = u;
    return rc;
}

static int http_check(const void *cfgp, char *err, size_t errlen)
{
    const struct src_http_config *c = cfgp;
    if (empty(c->url)) {
        snprintf(err, errlen, "source.http.url: required by source.driver http");
        return KP_ECONFIG;
    }
    int rc = parse_url(c->url, NULL, NULL, 0, err, errlen);
    if (rc != 0)
        return rc;
    enum auth a;
    if (parse_auth(c->auth, &a) != 0) {
        snprintf(err, errlen, "source.http.auth: must be none, bearer or basic");
        return KP_ECONFIG;
    }
    if (a == A_BEARER && empty(c->token) == empty(c->token_file)) {
        snprintf(err, errlen,
                 "source.http.token_file: auth bearer needs exactly one of token_file "
                 "and token");
        return KP_ECONFIG;
    }
    if (a == A_BASIC && (empty(c->user) || empty(c->password_file))) {
        snprintf(err, errlen, "source.http.password_file: auth basic needs user and password_file");
        return KP_ECONFIG;
    }
    if (a != A_BEARER && (!empty(c->token) || !empty(c->token_file))) {
        snprintf(err, errlen, "source.http.token_file: set, but source.auth is not bearer");
        return KP_ECONFIG;
    }
    if (a != A_BASIC && !empty(c->password_file)) {
        snprintf(err, errlen, "source.http.password_file: set, but source.auth is not basic");
        return KP_ECONFIG;
    }
    enum mode m;
    if (parse_mode(c->pagination, &m) != 0) {
        snprintf(err, errlen, "source.http.pagination: must be cursor or page");
        return KP_ECONFIG;
    }
    const char *need[4][2] = {{"source.http.cursor_param", c->cursor_param},
                              {"source.http.cursor_path", c->cursor_path},
                              {"source.http.limit_param", c->limit_param},
                              {NULL, NULL}};
    const char *need_page[5][2] = {{"source.http.page_param", c->page_param},
                                   {"source.http.page_size_param", c->page_size_param},
                                   {"source.http.since_param", c->since_param},
                                   {"source.http.since_field", c->since_field},
                                   {"source.http.id_field", c->id_field}};
    if (m == M_CURSOR) {
        for (size_t k = 0; need[k][0]; k++)
            if (empty(need[k][1])) {
                snprintf(err, errlen, "%s: required by pagination cursor", need[k][0]);
                return KP_ECONFIG;
            }
    } else {
        for (size_t k = 0; k < 5; k++)
            if (empty(need_page[k][1])) {
                snprintf(err, errlen, "%s: required by pagination page", need_page[k][0]);
                return KP_ECONFIG;
            }
    }
    if (c->backoff_max_ms < c->backoff_min_ms) {
        snprintf(err, errlen, "source.http.backoff_max_ms: must not be below backoff_min_ms");
        return KP_ECONFIG;
    }
    if (empty(c->dead_letters)) {
        snprintf(err, errlen,
                 "source.http.dead_letters: required by source.driver http (a SQLite file for "
                 "refused items; the adapter's spool path keeps them with its dead letters)");
        return KP_ECONFIG;
    }
    struct http_map *map = NULL;
    rc = http_map_new(c->fields, c->observations, &map, err, errlen);
    http_map_destroy(&map);
    return rc;
}

/* Reads a secret file: not world-accessible, at most SECRET_MAX - 1 bytes, trailing white
 * space removed, not empty. Never puts the secret in err. */
static int read_secret(const char *key, const char *path, char *buf, size_t buflen,
                       struct stat *sto, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open %s: %s", key, path, strerror(errno));
        return KP_ECONFIG;
    }
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        snprintf(err, errlen, "%s: %s is not a regular file", key, path);
        fclose(f);
        return KP_ECONFIG;
    }
    if (sb.st_mode & (S_IROTH | S_IWOTH)) {
        snprintf(err, errlen, "%s: %s is accessible to every user (mode %03o): chmod o-rw it", key,
                 path, (unsigned)(sb.st_mode & 0777));
        fclose(f);
        return KP_ECONFIG;
    }
    size_t n = fread(buf, 1, buflen - 1, f);
    bool more = n == buflen - 1 && fgetc(f) != EOF;
    fclose(f);
    if (more) {
        wipe(buf, buflen);
        snprintf(err, errlen, "%s: %s is longer than %zu bytes", key, path, buflen - 1);
        return KP_ECONFIG;
    }
    while (n > 0 &&
           (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        n--;
    buf[n] = 0;
    if (n == 0 || memchr(buf, 0, n) || memchr(buf, '\n', n)) {
        wipe(buf, buflen);
        snprintf(err, errlen, "%s: %s must hold one line of text", key, path);
        return KP_ECONFIG;
    }
    *sto = sb;
    return 0;
}

static int apply_secret(struct http_state *st)
{
    CURLcode c = CURLE_OK;
    if (st->auth == A_BEARER) {
        c = curl_easy_setopt(st->curl, CURLOPT_HTTPAUTH, (long)CURLAUTH_BEARER);
        if (c == CURLE_OK)
            c = curl_easy_setopt(st->curl, CURLOPT_XOAUTH2_BEARER, st->secret);
    } else if (st->auth == A_BASIC) {
        c = curl_easy_setopt(st->curl, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        if (c == CURLE_OK)
            c = curl_easy_setopt(st->curl, CURLOPT_USERNAME, st->cfg->user);
        if (c == CURLE_OK)
            c = curl_easy_setopt(st->curl, CURLOPT_PASSWORD, st->secret);
    }
    return c == CURLE_OK ? 0 : KP_ENOMEM;
}

/* Re-reads the secret file when it changed. *changed tells whether it did. */
static int reload_secret(struct http_state *st, bool *changed, char *err, size_t errlen)
{
    *changed = false;
    if (!st->secret_path)
        return 0;
    struct stat sb;
    if (stat(st->secret_path, &sb) == 0 && sb.st_mtim.tv_sec == st->secret_st.st_mtim.tv_sec &&
        sb.st_mtim.tv_nsec == st->secret_st.st_mtim.tv_nsec &&
        sb.st_size == st->secret_st.st_size && sb.st_ino == st->secret_st.st_ino &&
        sb.st_mode == st->secret_st.st_mode)
        return 0;
    char fresh[SECRET_MAX];
    const char *key = st->auth == A_BEARER ? "source.http.token_file" : "source.http.password_file";
    int rc = read_secret(key, st->secret_path, fresh, sizeof fresh, &sb, err, errlen);
    if (rc != 0)
        return rc;
    *changed = strcmp(fresh, st->secret) != 0;
    memcpy(st->secret, fresh, sizeof st->secret);
    wipe(fresh, sizeof fresh);
    st->secret_st = sb;
    if (apply_secret(st) != 0) {
        snprintf(err, errlen, "curl: out of memory");
        return KP_ENOMEM;
    }
    return 0;
}

/* ---- the persisted position ---------------------------------------------------------------- */

static int parse_cursor(struct http_state *st, const char *text, char *err, size_t errlen)
{
    set_str(&st->cursor, "");
    set_str(&st->since, "");
    run_clear(&st->run);
    if (empty(text))
        return 0;
    json_error_t je;
    json_t *doc = json_loads(text, 0, &je);
    const char *mode = doc ? json_string_value(json_object_get(doc, "mode")) : NULL;
    int rc = 0;
    if (!mode) {
        rc = KP_EINVAL;
    } else if (strcmp(mode, st->mode == M_CURSOR ? "cursor" : "page") != 0) {
        snprintf(err, errlen,
                 "spool: the stored cursor is of pagination %s, the configuration says %s: "
                 "use a new spool (or restore the old pagination)",
                 mode, st->cfg->pagination);
        json_decref(doc);
        return KP_ECONFIG;
    } else if (st->mode == M_CURSOR) {
        const char *c = json_string_value(json_object_get(doc, "cursor"));
        if (c)
            set_str(&st->cursor, c);
        else
            rc = KP_EINVAL;
    } else {
        const char *s = json_string_value(json_object_get(doc, "since"));
        json_t *ids = json_object_get(doc, "ids");
        if (!s) {
            rc = KP_EINVAL;
        } else {
            set_str(&st->since, s);
            if (json_is_array(ids)) {
                size_t k;
                json_t *v;
                json_array_foreach(ids, k, v)
                {
                    if (json_is_string(v))
                        run_add(&st->run, json_string_value(v));
                }
            } else {
                st->run.complete = false; /* the run is sent again */
            }
        }
    }
    json_decref(doc);
    if (rc != 0)
        snprintf(err, errlen,
                 "spool: the stored cursor \"%.80s\" is not an http position: was the spool "
                 "written by another source?",
                 text);
    return rc;
}

/* The cursor text of a position; NULL when it does not fit STATE_MAX (cursor mode). */
static char *cursor_text(const struct http_state *st, const char *cursor, const char *since,
                         const struct run *base, const struct run *add)
{
    json_t *doc = json_object();
    if (st->mode == M_CURSOR) {
        json_object_set_new(doc, "mode", json_string("cursor"));
        json_object_set_new(doc, "cursor", json_string(cursor));
    } else {
        json_object_set_new(doc, "mode", json_string("page"));
        json_object_set_new(doc, "since", json_string(since));
        size_t bytes = strlen(since) + 40;
        bool fits = (!base || base->complete) && add->complete;
        json_t *ids = json_array();
        const struct run *parts[2] = {base, add};
        for (size_t p = 0; p < 2 && fits; p++)
            for (size_t k = 0; parts[p] && k < parts[p]->n && fits; k++) {
                bytes += strlen(parts[p]->ids[k]) * 2 + 4; /* escapes at worst */
                if (bytes > STATE_MAX)
                    fits = false;
                else
                    json_array_append_new(ids, json_string(parts[p]->ids[k]));
            }
        if (fits)
            json_object_set_new(doc, "ids", ids);
        else {
            json_decref(ids);
            json_object_set_new(doc, "run", json_string("partial"));
        }
    }
    char *s = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(doc);
    if (s && strlen(s) > STATE_MAX + 200) {
        free(s);
        return NULL;
    }
    return s;
}

/* ---- HTTP -------------------------------------------------------------------------------- */

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
    struct http_state *st = arg;
    size_t len = sz * n;
    if (st->body.len + len > (size_t)st->cfg->max_response_bytes) {
        st->body_over = true;
        return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
    }
    kp_buf_append(&st->body, p, len);
    return len;
}

static size_t on_header(char *p, size_t sz, size_t n, void *arg)
{
    struct http_state *st = arg;
    size_t len = sz * n;
    static const char ra[] = "retry-after:";
    static const char ct[] = "content-type:";
    if (len > sizeof ra - 1 && strncasecmp(p, ra, sizeof ra - 1) == 0) {
        const char *v = p + sizeof ra - 1;
        while (*v == ' ')
            v++;
        long s = 0;
        int k = 0;
        for (; k < 8 && v[k] >= '0' && v[k] <= '9'; k++)
            s = s * 10 + (v[k] - '0');
        if (k > 0)
            st->retry_after_s = s; /* an HTTP date instead: ignored, the backoff applies */
    } else if (len > sizeof ct - 1 && strncasecmp(p, ct, sizeof ct - 1) == 0) {
        const char *v = p + sizeof ct - 1;
        size_t m = len - (sizeof ct - 1);
        while (m > 0 && (*v == ' ' || *v == '\t'))
            v++, m--;
        while (m > 0 && (v[m - 1] == '\r' || v[m - 1] == '\n' || v[m - 1] == ' '))
            m--;
        if (m >= sizeof st->ctype - 1)
            m = sizeof st->ctype - 2;
        st->ctype[0] = ' ';
        memcpy(st->ctype + 1, v, m);
        st->ctype[m + 1] = 0;
    }
    return len;
}

static bool curl_transient(CURLcode c)
{
    switch (c) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
        return true;
    default:
        return false;
    }
}

static int curl_setup(struct http_state *st, char *err, size_t errlen)
{
    const struct src_http_config *c = st->cfg;
    st->curl = curl_easy_init();
    if (!st->curl) {
        snprintf(err, errlen, "curl: cannot create a handle");
        return KP_ENOMEM;
    }
    char ua[160];
    snprintf(ua, sizeof ua, "kaoping-adapter/1 (%s)", st->env.aid ? st->env.aid : "");
    st->headers = curl_slist_append(NULL, "Accept: application/json");
    CURL *h = st->curl;
    CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (rc == CURLE_OK)                                                                        \
            rc = curl_easy_setopt(h, opt, val);                                                    \
    } while (0)
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_FOLLOWLOCATION, 0L); /* a redirect could carry the token elsewhere */
#if LIBCURL_VERSION_NUM >= 0x075500
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
#endif
    SET(CURLOPT_CONNECTTIMEOUT_MS, (long)c->connect_timeout_ms);
    SET(CURLOPT_TIMEOUT_MS, (long)c->timeout_ms);
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->max_response_bytes);
    SET(CURLOPT_ACCEPT_ENCODING, "");
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_USERAGENT, ua);
    SET(CURLOPT_HTTPHEADER, st->headers);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, st);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, st);
    if (!empty(c->ca_file))
        SET(CURLOPT_CAINFO, c->ca_file);
#undef SET
    if (rc != CURLE_OK || !st->headers) {
        snprintf(err, errlen, "curl: %s", curl_easy_strerror(rc));
        return KP_ENOMEM;
    }
    return apply_secret(st);
}

struct param {
    const char *name, *value;
};

enum outcome { R_OK, R_TRANSIENT, R_REFUSED };

/* One attempt; on R_OK *doc is the parsed body (caller owns). */
static enum outcome attempt(struct http_state *st, CURLU *u, json_t **doc, int *rc, char *err,
                            size_t errlen)
{
    kp_buf_reset(&st->body);
    st->body_over = false;
    st->ctype[0] = 0;
    st->retry_after_s = -1;
    curl_easy_setopt(st->curl, CURLOPT_CURLU, u);
    CURLcode cc = curl_easy_perform(st->curl);
    if (cc != CURLE_OK) {
        if (st->body_over || cc == CURLE_FILESIZE_EXCEEDED) {
            snprintf(err, errlen,
                     "GET %s: response larger than source.http.max_response_bytes (%lld)",
                     st->shown, st->cfg->max_response_bytes);
            *rc = KP_EPROTO;
            return R_REFUSED;
        }
        snprintf(err, errlen, "GET %s: %s", st->shown, curl_easy_strerror(cc));
        *rc = KP_EHOSTUNREACH;
        return curl_transient(cc) ? R_TRANSIENT : R_REFUSED;
    }
    long status = 0;
    curl_easy_getinfo(st->curl, CURLINFO_RESPONSE_CODE, &status);
    char body[BODY_SHOWN + 8];
    if (status < 200 || status > 299) {
        body_excerpt(&st->body, body, sizeof body, BODY_SHOWN);
        snprintf(err, errlen, "GET %s: HTTP %ld%s%s", st->shown, status, body[0] ? ": " : "", body);
        if (status == 408 || status == 429 || status >= 500) {
            *rc = KP_EAGAIN;
            return R_TRANSIENT;
        }
        *rc = status == 401 || status == 403 ? KP_ECONFIG : KP_EPROTO;
        return R_REFUSED;
    }
    json_error_t je;
    *doc = json_loadb((const char *)st->body.data, st->body.len, 0, &je);
    if (!*doc) {
        body_excerpt(&st->body, body, sizeof body, 120);
        snprintf(err, errlen,
                 "GET %s: HTTP %ld but the body is not JSON (%s at %d:%d; content-type%s): %s",
                 st->shown, status, je.text, je.line, je.column, st->ctype[0] ? st->ctype : " none",
                 body);
        *rc = KP_EPROTO;
        return R_REFUSED;
    }
    return R_OK;
}

/* GET base?params with retries. Returns 0 and *doc, or a KP_E* with err. */
static int request(struct http_state *st, const struct param *params, size_t nparams, json_t **doc,
                   char *err, size_t errlen)
{
    *doc = NULL;
    CURLU *u = curl_url_dup(st->base);
    if (!u) {
        snprintf(err, errlen, "curl: out of memory");
        return KP_ENOMEM;
    }
    for (size_t k = 0; k < nparams; k++) {
        char q[STATE_MAX + 256];
        snprintf(q, sizeof q, "%s=%s", params[k].name, params[k].value);
        if (curl_url_set(u, CURLUPART_QUERY, q, CURLU_APPENDQUERY | CURLU_URLENCODE) != CURLUE_OK) {
            curl_url_cleanup(u);
            snprintf(err, errlen, "curl: cannot add query parameter %s", params[k].name);
            return KP_EINVAL;
        }
    }
    int rc = 0;
    long tries = st->cfg->retries + 1;
    for (long a = 0; a < tries; a++) {
        enum outcome o = attempt(st, u, doc, &rc, err, errlen);
        if (o == R_OK) {
            rc = 0;
            break;
        }
        if (o == R_REFUSED) {
            st->refusal = true;
            break;
        }
        if (a + 1 == tries) {
            size_t n = strlen(err);
            snprintf(err + n, errlen > n ? errlen - n : 0, " (after %ld attempts)", tries);
            break;
        }
        /* Exponential backoff with equal jitter: [b/2, b]. Retry-After when the API says. */
        uint64_t b = (uint64_t)st->cfg->backoff_min_ms << (a < 20 ? a : 20);
        if (b > (uint64_t)st->cfg->backoff_max_ms)
            b = (uint64_t)st->cfg->backoff_max_ms;
        uint64_t wait = b / 2 + rnd(st) % (b / 2 + 1);
        if (st->retry_after_s >= 0) {
            uint64_t ra = (uint64_t)st->retry_after_s * 1000u;
            wait = ra < (uint64_t)st->cfg->backoff_max_ms ? ra : (uint64_t)st->cfg->backoff_max_ms;
        }
        char q[600];
        KP_WARN("http_retry", "adapter=%s scheme=%s attempt=%ld of=%ld wait_ms=%" PRIu64 " err=%s",
                st->env.aid, st->env.scheme, a + 1, tries, wait, kp_log_q(q, sizeof q, err));
        sleep_ms(wait);
    }
    curl_url_cleanup(u);
    return rc;
}

/* The API refused or answered what cannot be read: no request for a hold-off of 5 s,
 * doubling while refusals repeat (no retry storm). Returns rc. */
static int refused(struct http_state *st, int rc, const char *err)
{
    st->holdoff_ms = st->holdoff_ms ? st->holdoff_ms * 2 : HOLDOFF_MIN;
    if (st->holdoff_ms > (uint64_t)st->cfg->holdoff_max_ms)
        st->holdoff_ms = (uint64_t)st->cfg->holdoff_max_ms;
    st->holdoff_until_ns = kp_mono_ns() + st->holdoff_ms * 1000000u;
    st->holdoff_rc = rc;
    snprintf(st->holdoff_err, sizeof st->holdoff_err, "%s", err);
    return rc;
}

/* ---- items --------------------------------------------------------------------------------- */

/* The items array of a response, or NULL with err. */
static const json_t *items_of(struct http_state *st, const json_t *doc, char *err, size_t errlen)
{
    const json_t *items = http_json_path(doc, st->cfg->items);
    if (!json_is_array(items)) {
        char body[160];
        body_excerpt(&st->body, body, sizeof body, 120);
        snprintf(err, errlen, "GET %s: the response has no array at \"%s\": %s", st->shown,
                 st->cfg->items, body);
        st->refusal = true;
        return NULL;
    }
    return items;
}

/* The identity of an item for the page run: its id_field as text, else "#" + the hash of its
 * JSON (an item without an id is still skipped once sent). */
static void item_identity(const struct http_state *st, const json_t *item, char *buf, size_t len)
{
    const json_t *id = json_is_object(item) ? http_json_path(item, st->cfg->id_field) : NULL;
    bool scalar = id && (json_is_string(id) || json_is_number(id));
    if (scalar && (!json_is_string(id) || json_string_length(id) < len - 2) &&
        http_json_text(id, buf + 1, len - 1) && strlen(buf + 1) < len - 2) {
        buf[0] = json_is_string(id) ? 's' : 'n'; /* "12" and 12 stay distinct */
        return;
    }
    /* No usable id (none, not a scalar, or too long to keep whole): a hash of the id or of
     * the whole item, never a cut prefix two items could share. */
    char *s = json_dumps(scalar ? id : item, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (const char *p = s ? s : ""; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    free(s);
    snprintf(buf, len, "#%016" PRIx64, h);
}

/* The refused items of one response, written as dead letters before its batch is spooled. */
struct dead {
    struct kp_spool_dead_row *rows;
    size_t n, cap;
    char first[400]; /* position and reason of the first, for the log */
};

static void dead_add(struct dead *d, const char *file, long line, const char *code, const char *msg,
                     const json_t *item)
{
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 8;
        d->rows = kp_xrealloc(d->rows, d->cap * sizeof *d->rows);
    }
    char *raw = json_dumps(item, JSON_COMPACT | JSON_ENCODE_ANY);
    if (raw && strlen(raw) > RAW_MAX) { /* keep whole UTF-8 characters */
        size_t n = RAW_MAX;
        while (n > 0 && ((unsigned char)raw[n] & 0xC0) == 0x80)
            n--;
        raw[n] = 0;
    }
    struct kp_spool_dead_row *x = &d->rows[d->n++];
    x->file = kp_xstrdup(file);
    x->line = line;
    x->code = code;
    x->msg = kp_xstrdup(msg);
    x->raw = raw;
    x->at_ms = 0;
    if (d->n == 1)
        snprintf(d->first, sizeof d->first, "%s item %ld: %s", file, line, msg);
}

static void dead_fini(struct dead *d)
{
    for (size_t k = 0; k < d->n; k++) {
        free((char *)(uintptr_t)d->rows[k].file);
        free((char *)(uintptr_t)d->rows[k].msg);
        free((char *)(uintptr_t)d->rows[k].raw);
    }
    free(d->rows);
    memset(d, 0, sizeof *d);
}

/* Records the refused items of a response (one transaction), then says so once. */
static int dead_flush(struct http_state *st, struct dead *d, char *err, size_t errlen)
{
    if (d->n == 0)
        return 0;
    int rc = kp_spool_dead_rows(st->dl, d->rows, d->n);
    if (rc != 0) {
        snprintf(err, errlen, "source.http.dead_letters %s: cannot record %zu refused items: %s",
                 st->cfg->dead_letters, d->n, kp_strerror(rc));
        return rc;
    }
    char q1[500], q2[300];
    KP_WARN("items_refused",
            "adapter=%s scheme=%s refused=%zu forwarded=%s first=%s dead_letters=%s", st->env.aid,
            st->env.scheme, d->n, st->cfg->forward_refused ? "objects" : "none",
            kp_log_q(q1, sizeof q1, d->first), kp_log_q(q2, sizeof q2, st->cfg->dead_letters));
    return 0;
}

/* The since value of an item as text. An item without one joins the run it is in. Returns 0,
 * or KP_EPROTO (a refusal) when the value is too long to be passed back. */
static int item_since(struct http_state *st, const json_t *it, char *buf, size_t len, bool *has,
                      char *err, size_t errlen)
{
    const json_t *sv = json_is_object(it) ? http_json_path(it, st->cfg->since_field) : NULL;
    *has = sv && http_json_text(sv, buf, len) && buf[0];
    if (*has && strlen(buf) > SINCE_MAX) {
        snprintf(err, errlen, "GET %s: an item's %s is longer than %d bytes", st->shown,
                 st->cfg->since_field, SINCE_MAX);
        st->refusal = true;
        return KP_EPROTO;
    }
    return 0;
}

/* Adds the records of one item. An item that does not map cleanly is a dead letter at (file,
 * line = its place in the response, from 1); its records are still sent when it is an object
 * and forward_refused is on, so the scorer records the rejection too (ARCHITECTURE.md
 * guarantee 4). A non-object item makes no record. */
static void add_item(struct http_state *st, const json_t *item, struct adp_out *out,
                     const char *file, long line, struct dead *dead)
{
    if (!json_is_object(item)) {
        char msg[80];
        snprintf(msg, sizeof msg, "the item is a JSON %s, not an object: no record can be made",
                 json_is_array(item)     ? "array"
                 : json_is_string(item)  ? "string"
                 : json_is_null(item)    ? "null"
                 : json_is_boolean(item) ? "boolean"
                                         : "number");
        dead_add(dead, file, line, "bad_type", msg, item);
        return;
    }
    struct adp_rec recs[HTTP_OBS_MAX];
    char why[300];
    enum http_map_result r = http_map_item(st->map, item, recs, why, sizeof why);
    if (r != HTTP_MAP_OK) {
        char msg[512], id[128];
        item_identity(st, item, id, sizeof id);
        bool has_id = id[0] != '#';
        snprintf(msg, sizeof msg, "%s%.120s%s%.300s", has_id ? "id " : "", has_id ? id + 1 : "",
                 has_id ? ": " : "", why);
        dead_add(dead, file, line, r == HTTP_MAP_MISSING ? "missing_field" : "bad_field", msg,
                 item);
        if (!st->cfg->forward_refused)
            return;
    }
    size_t n = http_map_count(st->map);
    for (size_t k = 0; k < n; k++)
        adp_out_add(out, &recs[k]); /* room was checked before the request */
}

/* ---- polling ------------------------------------------------------------------------------- */

static int http_ack(void *state);

static size_t items_per_request(struct http_state *st, struct adp_out *out)
{
    size_t per = http_map_count(st->map);
    size_t n = adp_out_room(out) / per;
    return n < (size_t)st->cfg->page_size ? n : (size_t)st->cfg->page_size;
}

static int poll_cursor(struct http_state *st, struct adp_out *out, size_t limit, char *err,
                       size_t errlen)
{
    char lim[24];
    snprintf(lim, sizeof lim, "%zu", limit);
    struct param p[2];
    size_t np = 0;
    if (!empty(st->cursor))
        p[np++] = (struct param){st->cfg->cursor_param, st->cursor};
    p[np++] = (struct param){st->cfg->limit_param, lim};
    json_t *doc = NULL;
    int rc = request(st, p, np, &doc, err, errlen);
    if (rc != 0)
        return rc;
    const json_t *items = items_of(st, doc, err, errlen);
    if (!items) {
        json_decref(doc);
        return KP_EPROTO;
    }
    size_t n = json_array_size(items);
    if (n > limit) {
        snprintf(err, errlen, "GET %s: %zu items for %s=%zu", st->shown, n, st->cfg->limit_param,
                 limit);
        st->refusal = true;
        json_decref(doc);
        return KP_EPROTO;
    }
    char next[STATE_MAX + 1] = "";
    const json_t *nc = http_json_path(doc, st->cfg->cursor_path);
    bool has_next = nc && http_json_text(nc, next, sizeof next) && next[0];
    if (has_next && strlen(next) >= STATE_MAX - 64) {
        snprintf(err, errlen, "GET %s: the cursor at \"%s\" is longer than %d bytes", st->shown,
                 st->cfg->cursor_path, STATE_MAX - 64);
        st->refusal = true;
        json_decref(doc);
        return KP_EPROTO;
    }
    bool moved = has_next && strcmp(next, st->cursor) != 0;
    bool more = n == limit && moved;
    if (!empty(st->cfg->more_path)) {
        const json_t *m = http_json_path(doc, st->cfg->more_path);
        more = json_is_true(m) && moved;
    }
    struct dead dead = {0};
    char file[STATE_MAX + 600];
    snprintf(file, sizeof file, "%s?%s=%s", st->shown, st->cfg->cursor_param, st->cursor);
    for (size_t k = 0; k < n; k++)
        add_item(st, json_array_get(items, k), out, file, (long)k + 1, &dead);
    json_decref(doc);
    /* The refused items first: they are on record before the batch that passes them. */
    rc = dead_flush(st, &dead, err, errlen);
    dead_fini(&dead);
    if (rc != 0)
        return rc;
    adp_out_set_more(out, more);
    if (n > 0 && !has_next && !st->warned_no_cursor) {
        KP_WARN("http_no_cursor",
                "adapter=%s scheme=%s path=%s msg=\"the response has items but no cursor at "
                "this path: the same items are read again next poll\"",
                st->env.aid, st->env.scheme, st->cfg->cursor_path);
        st->warned_no_cursor = true;
    }
    if (adp_out_count(out) == 0) {
        /* Nothing to make durable (no items, or only dead ones): move on now. */
        if (moved)
            set_str(&st->cursor, next);
        return 0;
    }
    char *text = cursor_text(st, moved ? next : st->cursor, NULL, NULL, NULL);
    adp_out_set_cursor(out, text);
    free(text);
    st->pending = true;
    set_str(&st->pend_cursor, moved ? next : st->cursor);
    return (int)adp_out_count(out);
}

static int poll_page(struct http_state *st, struct adp_out *out, size_t n, char *err, size_t errlen)
{
    char size[24];
    snprintf(size, sizeof size, "%zu", n);
    for (long page = 1; page <= PAGE_WALK; page++) {
        char pg[24];
        snprintf(pg, sizeof pg, "%ld", page);
        struct param p[3];
        size_t np = 0;
        if (!empty(st->since))
            p[np++] = (struct param){st->cfg->since_param, st->since};
        p[np++] = (struct param){st->cfg->page_param, pg};
        p[np++] = (struct param){st->cfg->page_size_param, size};
        json_t *doc = NULL;
        int rc = request(st, p, np, &doc, err, errlen);
        if (rc != 0)
            return rc;
        const json_t *items = items_of(st, doc, err, errlen);
        if (!items) {
            json_decref(doc);
            return KP_EPROTO;
        }
        size_t count = json_array_size(items);
        if (count > n) {
            snprintf(err, errlen, "GET %s: %zu items for %s=%zu", st->shown, count,
                     st->cfg->page_size_param, n);
            st->refusal = true;
            json_decref(doc);
            return KP_EPROTO;
        }
        /* Which items are new: not (at the committed since and in the committed run). */
        bool any_new = false;
        char id[HTTP_FIELD_MAX + 2], since[SINCE_MAX + 2];
        for (size_t k = 0; k < count && !any_new; k++) {
            const json_t *it = json_array_get(items, k);
            bool has_since;
            if (item_since(st, it, since, sizeof since, &has_since, err, errlen) != 0) {
                json_decref(doc);
                return KP_EPROTO;
            }
            item_identity(st, it, id, sizeof id);
            bool dup = st->run.complete && (!has_since || strcmp(since, st->since) == 0) &&
                       run_has(&st->run, id);
            any_new = !dup;
        }
        if (!any_new) {
            json_decref(doc);
            if (count < n)
                return 0; /* caught up */
            continue;     /* a whole page already sent: the next one */
        }
        /* Send every new item of this page; the position moves to its last one. A run restored
         * without its ids is sent again from its start and replaced. */
        char *run_since = xdup(st->since);
        bool extends = st->run.complete;
        run_clear(&st->pend_run);
        struct dead dead = {0};
        char file[2 * STATE_MAX + 600];
        snprintf(file, sizeof file, "%s?%s=%s&%s=%ld", st->shown, st->cfg->since_param, st->since,
                 st->cfg->page_param, page);
        for (size_t k = 0; k < count; k++) {
            const json_t *it = json_array_get(items, k);
            bool has_since;
            item_since(st, it, since, sizeof since, &has_since, err, errlen); /* checked above */
            item_identity(st, it, id, sizeof id);
            if (st->run.complete && extends && (!has_since || strcmp(since, st->since) == 0) &&
                run_has(&st->run, id))
                continue;
            if (has_since && strcmp(since, run_since) != 0) {
                set_str(&run_since, since); /* a new tie run begins */
                extends = false;
                run_clear(&st->pend_run);
            }
            if (st->pend_run.n < RUN_IDS_MAX)
                run_add(&st->pend_run, id);
            add_item(st, it, out, file, (long)k + 1, &dead);
        }
        json_decref(doc);
        rc = dead_flush(st, &dead, err, errlen);
        dead_fini(&dead);
        if (rc != 0) {
            free(run_since);
            run_clear(&st->pend_run);
            return rc;
        }
        if (st->pend_run.n >= RUN_IDS_MAX) {
            free(run_since);
            snprintf(err, errlen,
                     "GET %s: more than %d items share the %s value \"%.60s\": cannot page past "
                     "them",
                     st->shown, RUN_IDS_MAX, st->cfg->since_field, since);
            run_clear(&st->pend_run);
            st->refusal = true;
            return KP_EPROTO;
        }
        adp_out_set_more(out, count == n);
        st->pend_extends = extends;
        set_str(&st->pend_since, run_since);
        free(run_since);
        if (adp_out_count(out) == 0) {
            /* only dead items: commit at once */
            st->pending = true;
            http_ack(st);
            return 0;
        }
        char *text =
            cursor_text(st, NULL, st->pend_since, extends ? &st->run : NULL, &st->pend_run);
        adp_out_set_cursor(out, text);
        free(text);
        st->pending = true;
        return (int)adp_out_count(out);
    }
    snprintf(err, errlen,
             "GET %s: %d pages in a row hold only items already sent at %s=%.60s: page size too "
             "small for the tie run?",
             st->shown, PAGE_WALK, st->cfg->since_param, st->since);
    st->refusal = true;
    return KP_EPROTO;
}

static int http_poll(void *state, struct adp_out *out, char *err, size_t errlen)
{
    struct http_state *st = state;
    st->pending = false;
    bool changed = false;
    int rc = reload_secret(st, &changed, err, errlen);
    if (rc != 0)
        return rc;
    if (changed)
        st->holdoff_until_ns = 0; /* a new secret: try at once */
    uint64_t now = kp_mono_ns();
    if (st->holdoff_until_ns && now < st->holdoff_until_ns) {
        snprintf(err, errlen, "%s (held off: next request in %" PRIu64 " s)", st->holdoff_err,
                 (st->holdoff_until_ns - now) / 1000000000u + 1);
        return st->holdoff_rc;
    }
    size_t n = items_per_request(st, out);
    if (n == 0) {
        snprintf(err, errlen, "batch_max_obs: %zu records per item do not fit in one batch",
                 http_map_count(st->map));
        return KP_ECONFIG;
    }
    st->refusal = false;
    rc = st->mode == M_CURSOR ? poll_cursor(st, out, n, err, errlen)
                              : poll_page(st, out, n, err, errlen);
    if (rc < 0 && st->refusal)
        return refused(st, rc, err);
    if (rc >= 0)
        st->holdoff_ms = 0;
    return rc;
}

static int http_ack(void *state)
{
    struct http_state *st = state;
    if (!st->pending)
        return 0;
    st->pending = false;
    if (st->mode == M_CURSOR) {
        set_str(&st->cursor, st->pend_cursor);
        return 0;
    }
    if (!st->pend_extends) {
        run_clear(&st->run);
        set_str(&st->since, st->pend_since);
    }
    for (size_t k = 0; k < st->pend_run.n; k++)
        if (st->run.n < RUN_IDS_MAX)
            run_add(&st->run, st->pend_run.ids[k]);
    if (!st->pend_extends)
        st->run.complete = true;
    run_clear(&st->pend_run);
    return 0;
}

static void http_fini(void **state)
{
    if (!state || !*state)
        return;
    struct http_state *st = *state;
    if (st->curl)
        curl_easy_cleanup(st->curl);
    curl_slist_free_all(st->headers);
    curl_url_cleanup(st->base);
    http_map_destroy(&st->map);
    wipe(st->secret, sizeof st->secret);
    free(st->cursor);
    free(st->since);
    free(st->pend_cursor);
    free(st->pend_since);
    run_fini(&st->run);
    run_fini(&st->pend_run);
    kp_buf_fini(&st->body);
    kp_spool_close(&st->dl);
    free(st);
    curl_global_cleanup();
    *state = NULL;
}

static int http_init(const struct adp_source_env *env, const void *cfgp, const char *cursor,
                     void **state, char *err, size_t errlen)
{
    *state = NULL;
    const struct src_http_config *c = cfgp;
    int rc = http_check(c, err, errlen);
    if (rc != 0)
        return rc;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, errlen, "curl: global init failed");
        return KP_EIO;
    }
    struct http_state *st = kp_xcalloc(1, sizeof *st);
    st->cfg = c;
    st->env = *env;
    st->rng = kp_mono_ns() ^ (uint64_t)(uintptr_t)st ^ 0x9E3779B97F4A7C15ULL;
    if (!st->rng)
        st->rng = 1;
    st->run.complete = true;
    st->pend_run.complete = true;
    st->cursor = xdup("");
    st->since = xdup("");
    parse_mode(c->pagination, &st->mode);
    parse_auth(c->auth, &st->auth);
    rc = http_map_new(c->fields, c->observations, &st->map, err, errlen);
    if (rc == 0)
        rc = parse_url(c->url, &st->base, st->shown, sizeof st->shown, err, errlen);
    if (rc == 0 && st->auth == A_BEARER && !empty(c->token)) {
        snprintf(st->secret, sizeof st->secret, "%s", c->token);
    } else if (rc == 0 && st->auth != A_NONE) {
        st->secret_path = st->auth == A_BEARER ? c->token_file : c->password_file;
        rc = read_secret(
            st->auth == A_BEARER ? "source.http.token_file" : "source.http.password_file",
            st->secret_path, st->secret, sizeof st->secret, &st->secret_st, err, errlen);
    }
    if (rc == 0)
        rc = curl_setup(st, err, errlen);
    if (rc == 0)
        rc = parse_cursor(st, cursor, err, errlen);
    if (rc == 0 && kp_spool_open(c->dead_letters, UINT64_C(1) << 40, &st->dl) != 0) {
        snprintf(err, errlen, "source.http.dead_letters: cannot open %s", c->dead_letters);
        rc = KP_EIO;
    }
    if (rc == 0 && http_map_count(st->map) > env->batch_max_obs) {
        snprintf(err, errlen,
                 "batch_max_obs: %u is less than the %zu records source.http.observations makes of "
                 "one item",
                 env->batch_max_obs, http_map_count(st->map));
        rc = KP_ECONFIG;
    }
    if (rc != 0) {
        void *p = st;
        http_fini(&p);
        return rc;
    }
    if (errlen)
        err[0] = 0;
    *state = st;
    return 0;
}

const struct adp_source adp_source_http = {
    .name = "http",
    .summary = "JSON items of an HTTP API (bearer or basic auth; cursor or since+page "
               "pagination) mapped to records by templates",
    .config = http_config,
    .config_size = sizeof(struct src_http_config),
    .check = http_check,
    .init = http_init,
    .poll = http_poll,
    .ack = http_ack,
    .fini = http_fini,
};
