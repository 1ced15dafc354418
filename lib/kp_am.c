/*
 * kp_am: Alertmanager API v2 client (kp_am.h). The body is built with jansson; the request is
 * one libcurl easy handle reused across posts (keep-alive), with a bounded timeout and an
 * abort flag polled through the transfer-progress callback.
 */
#include "kp_am.h"

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kp_buf.h"
#include "kp_err.h"

#define KP_AM_BODY_MAX 4096 /* bytes of Alertmanager's answer kept for the error message */

struct kp_am {
    CURL *curl;
    char *url;
    long timeout_ms;
    const atomic_bool *abort;
    struct curl_slist *headers;
    struct kp_buf resp;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_OK;

static void curl_init_once(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct kp_am *am = arg;
    size_t n = size * nmemb;
    if (am->resp.len < KP_AM_BODY_MAX) {
        size_t room = KP_AM_BODY_MAX - am->resp.len;
        kp_buf_append(&am->resp, ptr, n < room ? n : room);
    }
    return n;
}

static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    struct kp_am *am = arg;
    return am->abort && atomic_load(am->abort) ? 1 : 0;
}

int kp_am_open(const char *base_url, long timeout_ms, const atomic_bool *abort, struct kp_am **out)
{
    *out = NULL;
    if (!base_url || (strncmp(base_url, "http://", 7) && strncmp(base_url, "https://", 8)))
        return KP_EINVAL;
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_rc != CURLE_OK)
        return KP_ENOMEM;
    struct kp_am *am = kp_xcalloc(1, sizeof *am);
    size_t n = strlen(base_url);
    while (n > 0 && base_url[n - 1] == '/')
        n--;
    static const char suffix[] = "/api/v2/alerts";
    size_t sl = sizeof suffix - 1;
    bool has = n >= sl && !strncmp(base_url + n - sl, suffix, sl);
    am->url = kp_xmalloc(n + sl + 1);
    memcpy(am->url, base_url, n);
    am->url[n] = 0;
    if (!has)
        strcat(am->url, suffix);
    am->timeout_ms = timeout_ms > 0 ? timeout_ms : 5000;
    am->abort = abort;
    am->curl = curl_easy_init();
    am->headers = curl_slist_append(NULL, "Content-Type: application/json");
    if (!am->curl || !am->headers) {
        kp_am_close(&am);
        return KP_ENOMEM;
    }
    curl_easy_setopt(am->curl, CURLOPT_URL, am->url);
    curl_easy_setopt(am->curl, CURLOPT_HTTPHEADER, am->headers);
    curl_easy_setopt(am->curl, CURLOPT_TIMEOUT_MS, am->timeout_ms);
    curl_easy_setopt(am->curl, CURLOPT_CONNECTTIMEOUT_MS, am->timeout_ms);
    curl_easy_setopt(am->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(am->curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(am->curl, CURLOPT_WRITEDATA, am);
    curl_easy_setopt(am->curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(am->curl, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(am->curl, CURLOPT_XFERINFODATA, am);
    curl_easy_setopt(am->curl, CURLOPT_USERAGENT, "kaoping-scorer");
    *out = am;
    return 0;
}

void kp_am_close(struct kp_am **amp)
{
    if (!amp || !*amp)
        return;
    struct kp_am *am = *amp;
    if (am->curl)
        curl_easy_cleanup(am->curl);
    curl_slist_free_all(am->headers);
    kp_buf_fini(&am->resp);
    free(am->url);
    free(am);
    *amp = NULL;
}

const char *kp_am_url(const struct kp_am *am)
{
    return am->url;
}

void kp_am_format_time(int64_t ms, char *buf, size_t len)
{
    time_t secs = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    int msec = (int)(ms - (int64_t)secs * 1000);
    struct tm tm;
    if (len == 0)
        return;
    if (!gmtime_r(&secs, &tm)) {
        buf[0] = 0;
        return;
    }
    /* The result is used: a short buf is cut, never overrun (and GCC at -O3 does not flag it). */
    int n = snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, msec);
    if (n < 0)
        buf[0] = 0;
}

/* jansson refuses invalid UTF-8; replace what is not. */
static json_t *jstr(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    size_t n = strlen(s);
    struct kp_buf b = {0};
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80)
            kp_buf_append(&b, &s[i], 1);
        else
            kp_buf_append(&b, "\xef\xbf\xbd", 3);
    }
    j = json_string(kp_buf_cstr(&b));
    kp_buf_fini(&b);
    return j ? j : json_string("?");
}

static json_t *pairs(const struct kp_am_pair *p, size_t n)
{
    json_t *o = json_object();
    for (size_t i = 0; i < n; i++)
        if (p[i].name && p[i].value && p[i].value[0])
            json_object_set_new(o, p[i].name, jstr(p[i].value));
    return o;
}

int kp_am_encode(const struct kp_am_alert *alerts, size_t n, struct kp_buf *out)
{
    json_t *arr = json_array();
    char t[40];
    for (size_t i = 0; i < n; i++) {
        const struct kp_am_alert *a = &alerts[i];
        json_t *labels = pairs(a->labels, a->n_labels);
        if (json_object_size(labels) == 0) {
            json_decref(labels);
            json_decref(arr);
            return KP_EINVAL;
        }
        json_t *o = json_object();
        json_object_set_new(o, "labels", labels);
        json_object_set_new(o, "annotations", pairs(a->annotations, a->n_annotations));
        if (a->starts_at) {
            kp_am_format_time(a->starts_at, t, sizeof t);
            json_object_set_new(o, "startsAt", json_string(t));
        }
        if (a->ends_at) {
            kp_am_format_time(a->ends_at, t, sizeof t);
            json_object_set_new(o, "endsAt", json_string(t));
        }
        if (a->generator_url && a->generator_url[0])
            json_object_set_new(o, "generatorURL", jstr(a->generator_url));
        json_array_append_new(arr, o);
    }
    char *text = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    if (!text)
        return KP_ENOMEM;
    kp_buf_append_str(out, text);
    kp_buf_cstr(out);
    free(text);
    return 0;
}

int kp_am_post(struct kp_am *am, const struct kp_am_alert *alerts, size_t n, char *err,
               size_t errlen)
{
    struct kp_buf body = {0};
    int rc = kp_am_encode(alerts, n, &body);
    if (rc) {
        snprintf(err, errlen, "cannot encode the alerts: %s", kp_strerror(rc));
        kp_buf_fini(&body);
        return KP_EPROTO;
    }
    kp_buf_reset(&am->resp);
    curl_easy_setopt(am->curl, CURLOPT_POSTFIELDS, (const char *)body.data);
    curl_easy_setopt(am->curl, CURLOPT_POSTFIELDSIZE, (long)body.len);
    CURLcode cc = curl_easy_perform(am->curl);
    kp_buf_fini(&body);
    curl_easy_setopt(am->curl, CURLOPT_POSTFIELDS, NULL);
    if (cc != CURLE_OK) {
        snprintf(err, errlen, "%s: %s", am->url, curl_easy_strerror(cc));
        return KP_EAGAIN;
    }
    long status = 0;
    curl_easy_getinfo(am->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 200 && status < 300) {
        if (errlen)
            err[0] = 0;
        return 0;
    }
    const char *msg = kp_buf_cstr(&am->resp);
    snprintf(err, errlen, "%s: HTTP %ld: %.*s", am->url, status, 300, msg);
    for (char *p = err; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    return (status >= 500 || status == 429 || status == 408) ? KP_EAGAIN : KP_EPROTO;
}
