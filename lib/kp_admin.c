/*
 * kp_admin: the admin HTTP endpoint every daemon opens for operators and Prometheus
 * (ARCHITECTURE.md "Who uses it": operations staff see at a glance that every source is
 * delivering). libmicrohttpd parses HTTP and runs its own polling thread; this module only
 * routes three read-only paths: /metrics renders the kp_metrics registry (text format 0.0.4),
 * /healthz answers "ok" while the process lives, /readyz asks the daemon's ready callback.
 * Nothing here touches the daemon's loop: the callbacks read atomics only.
 */
#include "kp_admin.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "kp_buf.h"
#include "kp_err.h"
#include "kp_metrics.h"

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define TEXT_CONTENT_TYPE    "text/plain; charset=utf-8"

struct kp_admin {
    struct MHD_Daemon *d;
    struct kp_metrics *m;
    kp_admin_ready_fn ready;
    void *arg;
    int port;
};

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *ctype,
                             void *body, size_t len, enum MHD_ResponseMemoryMode mode)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, mode);
    if (!r) {
        if (mode == MHD_RESPMEM_MUST_FREE)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned status, const char *text)
{
    return reply(c, status, TEXT_CONTENT_TYPE, (void *)text, strlen(text), MHD_RESPMEM_PERSISTENT);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct kp_admin *a = cls;
    (void)version;
    (void)upload_data;
    (void)con_cls;
    /* No path takes a body: answer at once, whatever was uploaded. */
    *upload_data_size = 0;

    bool known =
        strcmp(url, "/metrics") == 0 || strcmp(url, "/healthz") == 0 || strcmp(url, "/readyz") == 0;
    if (!known)
        return reply_text(c, MHD_HTTP_NOT_FOUND, "not found\n");
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return reply_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");

    if (strcmp(url, "/healthz") == 0)
        return reply_text(c, MHD_HTTP_OK, "ok\n");

    if (strcmp(url, "/readyz") == 0) {
        char why[200] = "";
        if (!a->ready || a->ready(a->arg, why, sizeof why))
            return reply_text(c, MHD_HTTP_OK, "ready\n");
        why[sizeof why - 1] = 0;
        struct kp_buf b = {0};
        kp_buf_printf(&b, "not ready: %s\n", why[0] ? why : "unknown");
        size_t len = b.len;
        return reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, TEXT_CONTENT_TYPE, b.data, len,
                     MHD_RESPMEM_MUST_FREE);
    }

    /* /metrics */
    struct kp_buf b = {0};
    if (a->m)
        kp_metrics_render(a->m, &b);
    kp_buf_cstr(&b);
    size_t len = b.len;
    return reply(c, MHD_HTTP_OK, METRICS_CONTENT_TYPE, b.data, len, MHD_RESPMEM_MUST_FREE);
}

/* Splits "host:port", "[v6]:port" or ":port" / "*:port". Returns 0 or KP_EINVAL. */
static int split_listen(const char *listen, char *host, size_t hostlen, unsigned *port)
{
    const char *colon;
    const char *h = listen;
    size_t hl;
    if (listen[0] == '[') {
        const char *close = strchr(listen, ']');
        if (!close || close[1] != ':')
            return KP_EINVAL;
        h = listen + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(listen, ':');
        if (!colon)
            return KP_EINVAL;
        hl = (size_t)(colon - listen);
    }
    if (hl >= hostlen)
        return KP_EINVAL;
    memcpy(host, h, hl);
    host[hl] = 0;
    const char *p = colon + 1;
    if (!*p)
        return KP_EINVAL;
    unsigned long v = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return KP_EINVAL;
        v = v * 10 + (unsigned long)(*p - '0');
        if (v > 65535)
            return KP_EINVAL;
    }
    *port = (unsigned)v;
    return 0;
}

int kp_admin_open(const char *listen, struct kp_metrics *m, kp_admin_ready_fn ready, void *arg,
                  struct kp_admin **out)
{
    if (!listen || !out)
        return KP_EINVAL;
    char host[256];
    unsigned port;
    if (split_listen(listen, host, sizeof host, &port) != 0)
        return KP_EINVAL;

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD;
    if (host[0] == 0 || strcmp(host, "*") == 0) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        sin->sin_addr.s_addr = htonl(INADDR_ANY);
        sin->sin_port = htons((uint16_t)port);
    } else {
        struct addrinfo hints, *res = NULL;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_PASSIVE;
        if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res)
            return KP_EINVAL;
        memcpy(&ss, res->ai_addr, res->ai_addrlen);
        freeaddrinfo(res);
        if (ss.ss_family == AF_INET6) {
            ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
            flags |= MHD_USE_IPv6;
        } else {
            ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
        }
    }

    struct kp_admin *a = kp_xcalloc(1, sizeof *a);
    a->m = m;
    a->ready = ready;
    a->arg = arg;
    a->d =
        MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, a, MHD_OPTION_SOCK_ADDR,
                         (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
                         MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024), MHD_OPTION_END);
    if (!a->d) {
        free(a);
        return KP_EIO;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(a->d, MHD_DAEMON_INFO_BIND_PORT);
    a->port = info ? info->port : (int)port;
    *out = a;
    return 0;
}

int kp_admin_port(const struct kp_admin *a)
{
    return a ? a->port : KP_EINVAL;
}

void kp_admin_close(struct kp_admin **ap)
{
    if (!ap || !*ap)
        return;
    MHD_stop_daemon((*ap)->d);
    free(*ap);
    *ap = NULL;
}
