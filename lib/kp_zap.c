/*
 * kp_zap: the process's ZAP handler (see kp_zap.h). One REP socket bound to
 * inproc://zeromq.zap.01 answers the handshake requests of every CURVE server of the process,
 * dispatching by ZAP domain to the registered callbacks. A request is answered exactly once
 * (REP), whatever it holds: a malformed one gets 400, so the asking server refuses the
 * client and the handler's socket never wedges (ARCHITECTURE.md guarantee 5: no answer, no
 * entry).
 */
#include "kp_zap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kp_err.h"
#include "kp_keys.h"
#include "kp_log.h"
#include "kp_zsock.h"

#define ZAP_ENDPOINT   "inproc://zeromq.zap.01"
#define ZAP_DOMAIN_MAX 64

struct kp_zap {
    struct kp_zap *next;
    char domain[ZAP_DOMAIN_MAX + 1];
    kp_zap_auth_cb cb;
    void *arg;
    uint64_t accepted, refused;
};

/* The handler: one per process (one ZAP endpoint per ZeroMQ context). */
static struct {
    uv_loop_t *loop;
    struct kp_zsock *rep;
    struct kp_zap *regs;
} H;

static void reply(const struct kp_frame *reqid, const char *code, const char *text,
                  const char *user_id)
{
    struct kp_frame f[6] = {
        {"1.0", 3},
        reqid ? *reqid : (struct kp_frame){"", 0},
        {code, strlen(code)},
        {text, strlen(text)},
        {user_id, strlen(user_id)},
        {"", 0}, /* metadata */
    };
    int rc = kp_zsock_send(H.rep, f, 6);
    if (rc != 0)
        KP_WARN("zap_reply_failed", "err=%s", kp_err_name(rc));
}

static bool frame_eq(const struct kp_frame *f, const char *s)
{
    return f->len == strlen(s) && memcmp(f->data, s, f->len) == 0;
}

/* Copies a frame into a printable, NUL-terminated string for logs (non-printables -> '?'). */
static void frame_text(const struct kp_frame *f, char *buf, size_t len)
{
    size_t n = f->len < len - 1 ? f->len : len - 1;
    for (size_t i = 0; i < n; i++) {
        char c = ((const char *)f->data)[i];
        buf[i] = c > 32 && c < 127 && c != '"' && c != '\\' ? c : '?';
    }
    buf[n] = 0;
}

/* RFC 27 request: version, request id, domain, address, identity, mechanism, credentials. */
static void on_request(struct kp_zsock *s, const struct kp_frame *fr, size_t n, void *arg)
{
    (void)s;
    (void)arg;
    if (n < 6 || !frame_eq(&fr[0], "1.0")) {
        KP_WARN("zap_bad_request", "frames=%zu", n);
        reply(n >= 2 ? &fr[1] : NULL, "500", "malformed ZAP request", "");
        return;
    }
    char domain[ZAP_DOMAIN_MAX + 1], address[64];
    frame_text(&fr[2], domain, sizeof domain);
    frame_text(&fr[3], address, sizeof address);
    if (!frame_eq(&fr[5], "CURVE") || n != 7 || fr[6].len != KP_KEY_BYTES) {
        char mech[32];
        frame_text(&fr[5], mech, sizeof mech);
        KP_WARN("zap_refused", "domain=%s address=%s mechanism=%s msg=\"CURVE required\"", domain,
                address, mech);
        reply(&fr[1], "400", "CURVE required", "");
        return;
    }
    const uint8_t *key = fr[6].data;
    char z85[KP_KEY_Z85_LEN + 1] = "?";
    kp_keys_z85_encode(key, z85); /* a public key: fine to log */
    bool known_domain = false;
    for (struct kp_zap *z = H.regs; z; z = z->next) {
        if (fr[2].len != strlen(z->domain) || memcmp(fr[2].data, z->domain, fr[2].len) != 0)
            continue;
        known_domain = true;
        char uid[KP_ZAP_USER_ID_MAX + 1] = "";
        if (z->cb(key, address, uid, z->arg) && uid[0]) {
            uid[KP_ZAP_USER_ID_MAX] = 0;
            z->accepted++;
            KP_INFO("zap_accepted", "domain=%s address=%s user_id=%s", domain, address, uid);
            reply(&fr[1], "200", "OK", uid);
            return;
        }
        z->refused++;
    }
    KP_WARN("zap_refused", "domain=%s address=%s key=\"%s\" msg=\"%s\"", domain, address, z85,
            known_domain ? "unknown client key" : "no handler for this ZAP domain");
    reply(&fr[1], "400", "unknown client key", "");
}

static void sleep_ms(long ms)
{
    struct timespec ts = {0, ms * 1000000L};
    nanosleep(&ts, NULL);
}

int kp_zap_open(uv_loop_t *loop, const char *domain, kp_zap_auth_cb cb, void *arg,
                struct kp_zap **out)
{
    if (!loop || !domain || !*domain || strlen(domain) > ZAP_DOMAIN_MAX || !cb || !out)
        return KP_EINVAL;
    if (H.regs && H.loop != loop)
        return KP_EINVAL;
    if (!H.rep) {
        struct kp_zsock *rep = NULL;
        int rc = kp_zsock_open(loop, KP_ZSOCK_REP, NULL, &rep);
        if (rc)
            return rc;
        /* A handler closed a moment ago releases the inproc name asynchronously (libzmq's
         * reaper): give it up to a second. */
        for (int i = 0; i < 1000 && (rc = kp_zsock_bind(rep, ZAP_ENDPOINT)) != 0; i++)
            sleep_ms(1);
        if (rc == 0)
            rc = kp_zsock_start(rep, on_request, NULL);
        if (rc) {
            kp_zsock_close(&rep, NULL, NULL);
            return KP_EZMQ;
        }
        H.rep = rep;
        H.loop = loop;
    }
    struct kp_zap *z = kp_xcalloc(1, sizeof *z);
    snprintf(z->domain, sizeof z->domain, "%s", domain);
    z->cb = cb;
    z->arg = arg;
    /* appended: earlier registrations of a domain are asked first */
    struct kp_zap **pp = &H.regs;
    while (*pp)
        pp = &(*pp)->next;
    *pp = z;
    *out = z;
    return 0;
}

void kp_zap_close(struct kp_zap **zp)
{
    if (!zp || !*zp)
        return;
    struct kp_zap *z = *zp;
    *zp = NULL;
    for (struct kp_zap **pp = &H.regs; *pp; pp = &(*pp)->next) {
        if (*pp == z) {
            *pp = z->next;
            break;
        }
    }
    free(z);
    if (!H.regs) {
        kp_zsock_close(&H.rep, NULL, NULL);
        H.loop = NULL;
    }
}

uint64_t kp_zap_accepted(const struct kp_zap *z)
{
    return z ? z->accepted : 0;
}

uint64_t kp_zap_refused(const struct kp_zap *z)
{
    return z ? z->refused : 0;
}
