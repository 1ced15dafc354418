/*
 * test_kp_msg_hostile: the wire decoder against hostile input (ARCHITECTURE.md guarantee 4:
 * the daemons keep running whatever arrives on the wire). Frames that declare more than they
 * hold (an array of 2^32-1 elements in 5 bytes, maps, strings and binaries of 4 GB), nesting
 * 1000 deep, 10 MB strings: each must be refused with its reason code *and without a large
 * allocation*. Then random bytes, random mutations of a valid batch and every truncation of
 * every message: each must be refused (or, for a mutation, accepted only when it is still a
 * valid message), never crash, never read outside the frame (frames are exact-size heap
 * copies, so AddressSanitizer sees an overread).
 *
 * "No large allocation" is checked three ways, each hostile frame in its own forked child:
 *  - without AddressSanitizer the child runs under RLIMIT_AS = its current size + 8 MB, so
 *    any allocation sized from a declared count fails (even one never touched) and the
 *    aborting allocator kills the child;
 *  - under AddressSanitizer (which needs a huge address space) the test caps any single
 *    allocation at 32 MB with __asan_default_options();
 *  - in both, peak RSS (getrusage ru_maxrss) may grow by less than 4 MB during the decode,
 *    which catches a copy of a 10 MB string.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <math.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kp_buf.h"
#include "kp_err.h"
#include "kp_msg.h"

#if defined(__SANITIZE_ADDRESS__)
#define KP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KP_ASAN 1
#endif
#endif

#ifdef KP_ASAN
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "max_allocation_size_mb=32:allocator_may_return_null=0";
}
#endif

#define MB (1024u * 1024u)

/* ---- frame builders ----------------------------------------------------------------------- */

static int buf_write(void *data, const char *buf, size_t len)
{
    kp_buf_append(data, buf, len);
    return 0;
}

static void raw(struct kp_buf *f, const char *bytes, size_t n)
{
    kp_buf_append(f, bytes, n);
}

static void pk_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

/* A batch header (t, v, aid, scheme, src, seq, sent) in a map of n_keys entries; the caller
 * writes the remaining n_keys - 7 entries. */
static void batch_head(struct kp_buf *f, msgpack_packer *pk, size_t n_keys)
{
    msgpack_packer_init(pk, f, buf_write);
    msgpack_pack_map(pk, n_keys);
    pk_str(pk, "t");
    pk_str(pk, "batch");
    pk_str(pk, "v");
    msgpack_pack_uint8(pk, 1);
    pk_str(pk, "aid");
    pk_str(pk, "a1");
    pk_str(pk, "scheme");
    pk_str(pk, "s1");
    pk_str(pk, "src");
    pk_str(pk, "stats");
    pk_str(pk, "seq");
    msgpack_pack_uint64(pk, 99);
    pk_str(pk, "sent");
    msgpack_pack_int64(pk, 1700000000000);
}

/* An observation map with n_keys entries, the five required ones written, ref given raw. */
static void obs_head(msgpack_packer *pk, size_t n_keys, bool with_ref)
{
    msgpack_pack_map(pk, n_keys);
    pk_str(pk, "u");
    pk_str(pk, "U1");
    pk_str(pk, "i");
    pk_str(pk, "I1");
    pk_str(pk, "p");
    pk_str(pk, "2024-05");
    pk_str(pk, "val");
    msgpack_pack_double(pk, 2.5);
    if (with_ref) {
        pk_str(pk, "ref");
        pk_str(pk, "r1");
    }
}

static void big_str(msgpack_packer *pk, size_t n)
{
    char *s = malloc(n);
    memset(s, 'z', n);
    msgpack_pack_str_with_body(pk, s, n);
    free(s);
}

static void h_array32(struct kp_buf *f)
{
    raw(f, "\xdd\xff\xff\xff\xff", 5); /* the 5-byte frame that could reserve gigabytes */
}

static void h_map32(struct kp_buf *f)
{
    raw(f, "\xdf\xff\xff\xff\xff", 5);
}

static void h_array32_4mb(struct kp_buf *f)
{
    /* 2^32-1 elements declared, 4 MB of one-byte elements present: refused by count */
    raw(f, "\x81\xa1t\xdd\xff\xff\xff\xff", 8);
    kp_buf_reserve(f, 4 * MB);
    memset(f->data + f->len, 0xc0, 4 * MB);
    f->len += 4 * MB;
}

static void h_obs_array32(struct kp_buf *f)
{
    msgpack_packer pk;
    batch_head(f, &pk, 8);
    pk_str(&pk, "obs");
    raw(f, "\xdd\xff\xff\xff\xff\xc0\xc0\xc0", 8);
}

static void h_obs_array16(struct kp_buf *f)
{
    msgpack_packer pk;
    batch_head(f, &pk, 8);
    pk_str(&pk, "obs");
    raw(f, "\xdc\xff\xff", 3);
    for (int k = 0; k < 100; k++)
        raw(f, "\xc0", 1);
}

static void h_obs_map32(struct kp_buf *f)
{
    msgpack_packer pk;
    batch_head(f, &pk, 8);
    pk_str(&pk, "obs");
    raw(f, "\x91\xdf\xff\xff\xff\xff\xa1u\xa1U", 10);
}

static void h_ref_str32(struct kp_buf *f)
{
    msgpack_packer pk;
    batch_head(f, &pk, 8);
    pk_str(&pk, "obs");
    msgpack_pack_array(&pk, 1);
    obs_head(&pk, 5, false);
    pk_str(&pk, "ref");
    raw(f, "\xdb\xff\xff\xff\xff""abc", 8);
}

static void h_key_str32(struct kp_buf *f)
{
    raw(f, "\x81\xdb\xff\xff\xff\xf0t", 7);
}

static void h_bin32(struct kp_buf *f)
{
    raw(f, "\x82\xa1t\xa4ping\xa1n\xc6\xff\xff\xff\xff\x00", 15);
}

static void h_ext32(struct kp_buf *f)
{
    raw(f, "\x81\xa1t\xc9\xff\xff\xff\xff\x01", 9);
}

static void h_rej_array32(struct kp_buf *f)
{
    static const char ack[] = "\x86\xa1t\xa3""ack\xa1v\x01\xa3seq\x01\xa6stored\x00\xa3""dup"
                              "\xc2\xa3rej\xdd\xff\xff\xff\xff\x80";
    raw(f, ack, sizeof ack - 1);
}

static void nest(struct kp_buf *f, const char *level, size_t level_len, int depth)
{
    for (int k = 0; k < depth; k++)
        raw(f, level, level_len);
    raw(f, "\xc0", 1);
}

static void h_nest_maps(struct kp_buf *f)
{
    nest(f, "\x81\xa1""a", 3, 1000);
}

static void h_nest_arrays(struct kp_buf *f)
{
    nest(f, "\x91", 1, 1000);
}

static void h_nest_in_x(struct kp_buf *f)
{
    msgpack_packer pk;
    batch_head(f, &pk, 8);
    pk_str(&pk, "obs");
    msgpack_pack_array(&pk, 1);
    obs_head(&pk, 6, true);
    pk_str(&pk, "x");
    raw(f, "\x81\xa1""a", 3);
    nest(f, "\x91", 1, 1000);
}

static void h_nest_million(struct kp_buf *f)
{
    kp_buf_reserve(f, 4 * MB);
    memset(f->data, 0x91, 4 * MB);
    f->len = 4 * MB;
}

/* A batch whose one observation has a 10 MB ref. */
static void h_ref_10mb(struct kp_buf *f)
{
    msgpack_packer pk;
    batch_head(f, &pk, 8);
    pk_str(&pk, "obs");
    msgpack_pack_array(&pk, 1);
    obs_head(&pk, 5, false);
    pk_str(&pk, "ref");
    big_str(&pk, 10 * MB);
}

static void h_x_10mb(struct kp_buf *f)
{
    msgpack_packer pk;
    batch_head(f, &pk, 8);
    pk_str(&pk, "obs");
    msgpack_pack_array(&pk, 1);
    obs_head(&pk, 6, true);
    pk_str(&pk, "x");
    msgpack_pack_map(&pk, 1);
    pk_str(&pk, "a");
    big_str(&pk, 10 * MB);
}

static void h_key_10mb(struct kp_buf *f)
{
    msgpack_packer pk;
    batch_head(f, &pk, 9);
    pk_str(&pk, "obs");
    msgpack_pack_array(&pk, 0);
    big_str(&pk, 10 * MB); /* an unknown key of 10 MB: ignored, not copied */
    msgpack_pack_nil(&pk);
}

static void h_sw_10mb(struct kp_buf *f)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, f, buf_write);
    msgpack_pack_map(&pk, 5);
    pk_str(&pk, "t");
    pk_str(&pk, "hello");
    pk_str(&pk, "v");
    msgpack_pack_uint8(&pk, 1);
    pk_str(&pk, "aid");
    pk_str(&pk, "a");
    pk_str(&pk, "scheme");
    pk_str(&pk, "s");
    pk_str(&pk, "sw");
    big_str(&pk, 10 * MB);
}

/* ---- running one hostile frame in a child under limits ------------------------------------ */

enum how { AS_BATCH, AS_PEEK, AS_ACK, AS_HELLO, AS_PING, AS_JSON };

struct hostile {
    const char *name;
    void (*build)(struct kp_buf *f);
    enum how how;
    size_t max_bytes; /* AS_BATCH, AS_PEEK */
    enum kp_reason want;
    int want_obs0; /* AS_BATCH accepted: obs[0]'s reason; -1 when there is none */
};

static const struct hostile hostile_cases[] = {
    {"array32 in 5 bytes", h_array32, AS_BATCH, SIZE_MAX, KP_R_bad_msgpack, -1},
    {"array32 in 5 bytes, peek", h_array32, AS_PEEK, SIZE_MAX, KP_R_bad_msgpack, -1},
    {"array32 in 5 bytes, json", h_array32, AS_JSON, 0, KP_R_bad_msgpack, -1},
    {"map32 in 5 bytes", h_map32, AS_BATCH, SIZE_MAX, KP_R_bad_msgpack, -1},
    {"map32 in 5 bytes, ack", h_map32, AS_ACK, 0, KP_R_bad_msgpack, -1},
    {"map32 in 5 bytes, json", h_map32, AS_JSON, 0, KP_R_bad_msgpack, -1},
    {"array32 over 4 MB of nil", h_array32_4mb, AS_BATCH, SIZE_MAX, KP_R_bad_msgpack, -1},
    {"obs array32", h_obs_array32, AS_BATCH, SIZE_MAX, KP_R_bad_msgpack, -1},
    {"obs array16 over 100 bytes", h_obs_array16, AS_BATCH, SIZE_MAX, KP_R_bad_msgpack, -1},
    {"obs[0] map32", h_obs_map32, AS_BATCH, SIZE_MAX, KP_R_bad_msgpack, -1},
    {"ref str32", h_ref_str32, AS_BATCH, SIZE_MAX, KP_R_bad_msgpack, -1},
    {"key str32", h_key_str32, AS_PEEK, SIZE_MAX, KP_R_bad_msgpack, -1},
    {"bin32", h_bin32, AS_PING, 0, KP_R_bad_msgpack, -1},
    {"ext32", h_ext32, AS_PEEK, SIZE_MAX, KP_R_bad_msgpack, -1},
    {"ack rej array32", h_rej_array32, AS_ACK, 0, KP_R_bad_msgpack, -1},
    {"maps 1000 deep", h_nest_maps, AS_BATCH, SIZE_MAX, KP_R_too_large, -1},
    {"maps 1000 deep, peek", h_nest_maps, AS_PEEK, SIZE_MAX, KP_R_too_large, -1},
    {"maps 1000 deep, json", h_nest_maps, AS_JSON, 0, KP_R_too_large, -1},
    {"arrays 1000 deep", h_nest_arrays, AS_BATCH, SIZE_MAX, KP_R_too_large, -1},
    {"arrays 1000 deep in x", h_nest_in_x, AS_BATCH, SIZE_MAX, KP_R_too_large, -1},
    {"arrays 4 million deep", h_nest_million, AS_BATCH, SIZE_MAX, KP_R_too_large, -1},
    {"10 MB frame", h_ref_10mb, AS_BATCH, KP_DEFAULT_MAX_BYTES, KP_R_too_large, -1},
    {"10 MB frame, peek", h_ref_10mb, AS_PEEK, KP_DEFAULT_MAX_BYTES, KP_R_too_large, -1},
    {"10 MB ref", h_ref_10mb, AS_BATCH, 64 * MB, KP_R_OK, KP_R_too_large},
    {"10 MB string in x", h_x_10mb, AS_BATCH, 64 * MB, KP_R_OK, KP_R_too_large},
    {"10 MB unknown key", h_key_10mb, AS_BATCH, 64 * MB, KP_R_OK, -1},
    {"10 MB sw", h_sw_10mb, AS_HELLO, 0, KP_R_too_large, -1},
};

static long maxrss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static enum kp_reason run_decoder(const struct hostile *h, const struct kp_buf *f, int *obs0)
{
    *obs0 = -1;
    switch (h->how) {
    case AS_BATCH: {
        struct kp_msg_limits lim = {h->max_bytes, SIZE_MAX}; /* no max_obs to hide behind */
        struct kp_batch *b = NULL;
        char msg[KP_MSG_TEXT_MAX];
        enum kp_reason r = kp_batch_decode(f->data, f->len, &lim, &b, NULL, NULL, msg, sizeof msg);
        if (b && b->n_obs)
            *obs0 = (int)b->obs[0].reason;
        if (h->build == h_ref_10mb && b && b->n_obs && b->obs[0].ref[0])
            *obs0 = 1000; /* a refused 10 MB ref is not copied, not even cut short */
        kp_batch_destroy(&b);
        return r;
    }
    case AS_PEEK: {
        enum kp_msg_type t;
        return kp_msg_peek(f->data, f->len, h->max_bytes, &t);
    }
    case AS_ACK: {
        struct kp_ack a;
        enum kp_reason r = kp_ack_decode(f->data, f->len, &a);
        kp_ack_fini(&a);
        return r;
    }
    case AS_HELLO: {
        struct kp_hello hh;
        return kp_hello_decode(f->data, f->len, &hh);
    }
    case AS_PING: {
        bool pong;
        uint64_t n;
        return kp_ping_decode(f->data, f->len, &pong, &n);
    }
    case AS_JSON: {
        struct kp_buf out = {0};
        int rc = kp_msgpack_to_json(f->data, f->len, &out);
        kp_buf_fini(&out);
        return rc == 0 ? KP_R_OK : h->want; /* the reason is not visible here, only refusal */
    }
    }
    return KP_R__COUNT;
}

static int child(const struct hostile *h)
{
    struct kp_buf f = {0};
    h->build(&f);
    /* an exact-size copy: any read past the frame is an ASan error */
    uint8_t *exact = malloc(f.len);
    memcpy(exact, f.data, f.len);
    struct kp_buf frame = {exact, f.len, f.len};
    kp_buf_fini(&f);

#ifndef KP_ASAN
    long pages = 0;
    FILE *statm = fopen("/proc/self/statm", "r");
    if (!statm || fscanf(statm, "%ld", &pages) != 1) {
        fprintf(stderr, "%s: cannot read /proc/self/statm\n", h->name);
        return 3;
    }
    fclose(statm);
    struct rlimit rl;
    rl.rlim_cur = rl.rlim_max = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + 8 * MB;
    if (setrlimit(RLIMIT_AS, &rl) != 0) {
        perror("setrlimit");
        return 3;
    }
#endif
    long before = maxrss_kb();
    int obs0;
    enum kp_reason r = run_decoder(h, &frame, &obs0);
    long grew = maxrss_kb() - before;
    if (r != h->want || obs0 != h->want_obs0) {
        fprintf(stderr, "%s: got %s obs0=%d, want %s obs0=%d\n", h->name, kp_reason_str(r), obs0,
                kp_reason_str(h->want), h->want_obs0);
        return 1;
    }
    if (grew > 4 * 1024) {
        fprintf(stderr, "%s: peak RSS grew by %ld kB during the decode\n", h->name, grew);
        return 2;
    }
    free(exact);
    return 0;
}

static void test_hostile_no_large_allocation(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof hostile_cases / sizeof hostile_cases[0]; k++) {
        const struct hostile *h = &hostile_cases[k];
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
            _exit(child(h));
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fail_msg("%s: child %s %d", h->name, WIFEXITED(status) ? "exited" : "killed by signal",
                     WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    }
    print_message("%zu hostile frames refused within limits (%s)\n",
                  sizeof hostile_cases / sizeof hostile_cases[0],
#ifdef KP_ASAN
                  "ASan allocation cap 32 MB, RSS growth < 4 MB"
#else
                  "RLIMIT_AS current + 8 MB, RSS growth < 4 MB"
#endif
    );
}

/* The limit itself must be able to fail: a child made to allocate what a msgpack-c tree
 * would reserve for a declared 2^32-1 element array must not get it. */
static void test_limit_is_effective(void **state)
{
    (void)state;
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0)
            dup2(devnull, 2); /* under ASan the refusal is a report: keep it off the log */
#ifndef KP_ASAN
        long pages = 0;
        FILE *statm = fopen("/proc/self/statm", "r");
        if (!statm || fscanf(statm, "%ld", &pages) != 1)
            _exit(3);
        fclose(statm);
        struct rlimit rl;
        rl.rlim_cur = rl.rlim_max = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + 8 * MB;
        setrlimit(RLIMIT_AS, &rl);
        if (malloc(16 * MB)) /* even a mere copy of a 10 MB string is caught */
            _exit(42);
#endif
        void *volatile p = malloc((size_t)0xffffffffu * 24); /* sizeof(msgpack_object) each */
        _exit(p ? 42 : 0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
#ifdef KP_ASAN
    /* refused: malloc returned NULL (exit 0) or the sanitizer stopped the child */
    assert_false(WIFEXITED(status) && WEXITSTATUS(status) == 42);
#else
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
#endif
}

/* ---- valid frames of every message -------------------------------------------------------- */

enum { M_BATCH, M_ACK, M_NACK, M_HELLO, M_WELCOME, M_PING, M_PONG, M_REG, M_HB, M__N };

static void make_valid(int m, struct kp_buf *f)
{
    static struct kp_obs obs[3];
    static uint8_t x[] = "\x82\xa4""dept\xa6\xe8\xb4\xa2\xe6\x94\xbf\xa1n\x93\x01\xcb\x3f\xf8\x00"
                         "\x00\x00\x00\x00\x00\xc0";
    static struct kp_rej rej[2] = {{1, KP_R_bad_period, "p: not a period"},
                                   {2, KP_R_unknown_unit, "unit U9 is not in the scheme"}};
    kp_buf_reset(f);
    switch (m) {
    case M_BATCH: {
        for (int k = 0; k < 3; k++) {
            memset(&obs[k], 0, sizeof obs[k]);
            snprintf(obs[k].u, sizeof obs[k].u, "unit-%d", k);
            snprintf(obs[k].i, sizeof obs[k].i, "ind.%d", k);
            snprintf(obs[k].p, sizeof obs[k].p, "%s", k == 0 ? "2024-02-29" : "2024-Q2");
            snprintf(obs[k].ref, sizeof obs[k].ref, "ref/%d", k);
            obs[k].val = k == 1 ? -12345.678 : 42;
            obs[k].w = k == 2 ? 0.5 : 1;
            obs[k].rev = (uint64_t)k * 1000;
            obs[k].at = 1700000000000 + k;
        }
        obs[1].x = x;
        obs[1].x_len = sizeof x - 1;
        struct kp_batch b = {.aid = "adp-1", .scheme = "anshan-2015", .src = "stats", .seq = 1234,
                             .sent = 1700000000000, .n_obs = 3, .obs = obs};
        assert_int_equal(kp_batch_encode(f, &b), 0);
        break;
    }
    case M_ACK: {
        struct kp_ack a = {.seq = 1234, .stored = 1, .n_rej = 2, .rej = rej};
        assert_int_equal(kp_ack_encode(f, &a), 0);
        break;
    }
    case M_NACK: {
        struct kp_nack n = {.has_seq = true, .seq = 5, .code = KP_R_scorer_unavailable,
                            .msg = "no scorer", .retry = true};
        assert_int_equal(kp_nack_encode(f, &n), 0);
        break;
    }
    case M_HELLO: {
        struct kp_hello h = {.aid = "adp-1", .scheme = "anshan-2015", .sw = "kp 1.0"};
        assert_int_equal(kp_hello_encode(f, &h), 0);
        break;
    }
    case M_WELCOME: {
        struct kp_welcome w = {KP_DEFAULT_MAX_BYTES, KP_DEFAULT_MAX_OBS, KP_DEFAULT_MAX_INFLIGHT,
                               KP_DEFAULT_HB_MS};
        assert_int_equal(kp_welcome_encode(f, &w), 0);
        break;
    }
    case M_PING:
    case M_PONG:
        assert_int_equal(kp_ping_encode(f, m == M_PONG, 77), 0);
        break;
    case M_REG:
    case M_HB: {
        struct kp_reg r = {.sid = "scorer-a", .n_schemes = 2, .schemes = {"anshan-2015", "x"}};
        assert_int_equal(kp_reg_encode(f, m == M_HB, &r), 0);
        break;
    }
    }
}

/* Runs the decoder of message m (and peek) on exactly len bytes at p; returns its reason. */
static enum kp_reason decode_m(int m, const uint8_t *p, size_t len, enum kp_reason *peek)
{
    enum kp_msg_type t;
    enum kp_reason r = KP_R__COUNT;
    *peek = kp_msg_peek(p, len, KP_DEFAULT_MAX_BYTES, &t);
    switch (m) {
    case M_BATCH: {
        struct kp_batch *b = NULL;
        r = kp_batch_decode(p, len, NULL, &b, NULL, NULL, NULL, 0);
        kp_batch_destroy(&b);
        break;
    }
    case M_ACK: {
        struct kp_ack a;
        r = kp_ack_decode(p, len, &a);
        kp_ack_fini(&a);
        break;
    }
    case M_NACK: {
        struct kp_nack n;
        r = kp_nack_decode(p, len, &n);
        break;
    }
    case M_HELLO: {
        struct kp_hello h;
        r = kp_hello_decode(p, len, &h);
        break;
    }
    case M_WELCOME: {
        struct kp_welcome w;
        r = kp_welcome_decode(p, len, &w);
        break;
    }
    case M_PING:
    case M_PONG: {
        bool pong;
        uint64_t n;
        r = kp_ping_decode(p, len, &pong, &n);
        break;
    }
    case M_REG:
    case M_HB: {
        bool hb;
        struct kp_reg g;
        r = kp_reg_decode(p, len, &hb, &g);
        break;
    }
    }
    return r;
}

/* Every proper prefix of every message is refused as bad_msgpack, and so is every message
 * with a byte too many. */
static void test_truncations(void **state)
{
    (void)state;
    struct kp_buf f = {0};
    size_t n_prefixes = 0;
    for (int m = 0; m < M__N; m++) {
        make_valid(m, &f);
        enum kp_reason peek;
        assert_int_equal(decode_m(m, f.data, f.len, &peek), KP_R_OK);
        assert_int_equal(peek, KP_R_OK);
        for (size_t len = 0; len < f.len; len++) {
            uint8_t *exact = malloc(len ? len : 1);
            memcpy(exact, f.data, len);
            enum kp_reason r = decode_m(m, exact, len, &peek);
            if (r != KP_R_bad_msgpack || peek != KP_R_bad_msgpack)
                fail_msg("message %d cut to %zu of %zu bytes: %s (peek %s)", m, len, f.len,
                         kp_reason_str(r), kp_reason_str(peek));
            free(exact);
            n_prefixes++;
        }
        static const uint8_t extra[] = {0x00, 0xc0, 0x80, 0x90, 0xa0, 0xff};
        for (size_t k = 0; k < sizeof extra; k++) {
            uint8_t *longer = malloc(f.len + 1);
            memcpy(longer, f.data, f.len);
            longer[f.len] = extra[k];
            assert_int_equal(decode_m(m, longer, f.len + 1, &peek), KP_R_bad_msgpack);
            assert_int_equal(peek, KP_R_bad_msgpack);
            free(longer);
        }
    }
    print_message("%zu truncated frames refused as bad_msgpack\n", n_prefixes);
    kp_buf_fini(&f);
}

/* ---- fuzzing ------------------------------------------------------------------------------ */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

/* Whatever the decoder accepts must be a valid batch: every accepted observation passes the
 * validation helpers and the encoder takes the batch back without complaint. */
static void check_accepted(const struct kp_batch *b, const uint8_t *frame, size_t len)
{
    struct kp_buf again = {0}, json = {0};
    size_t rejected = 0;
    assert_true(b->n_obs <= KP_DEFAULT_MAX_OBS);
    assert_true(kp_code_valid(b->aid, strlen(b->aid)));
    assert_true(kp_code_valid(b->scheme, strlen(b->scheme)));
    assert_true(kp_code_valid(b->src, strlen(b->src)));
    struct kp_obs *ok = calloc(b->n_obs ? b->n_obs : 1, sizeof *ok);
    size_t n_ok = 0;
    for (size_t k = 0; k < b->n_obs; k++) {
        const struct kp_obs *o = &b->obs[k];
        if (o->reason != KP_R_OK) {
            assert_true(o->reason > KP_R_OK && o->reason < KP_R__COUNT);
            assert_true(o->msg[0] != 0);
            rejected++;
            continue;
        }
        assert_true(kp_code_valid(o->u, strlen(o->u)) && kp_code_valid(o->i, strlen(o->i)));
        assert_true(kp_period_valid(o->p, strlen(o->p), NULL));
        assert_true(isfinite(o->val) && isfinite(o->w));
        assert_true(strlen(o->ref) >= 1 && kp_utf8_valid(o->ref, strlen(o->ref)));
        if (o->x) {
            assert_true(o->x >= frame && o->x + o->x_len <= frame + len);
            assert_true(kp_x_valid(o->x, o->x_len));
            kp_buf_reset(&json);
            assert_int_equal(kp_msgpack_to_json(o->x, o->x_len, &json), 0);
        }
        ok[n_ok++] = *o;
    }
    assert_int_equal(rejected, b->n_rejected);
    struct kp_batch copy = *b;
    copy.obs = ok;
    copy.n_obs = n_ok;
    assert_int_equal(kp_batch_encode(&again, &copy), 0);
    struct kp_batch *b2 = NULL;
    assert_int_equal(kp_batch_decode(again.data, again.len, NULL, &b2, NULL, NULL, NULL, 0),
                     KP_R_OK);
    assert_int_equal(b2->n_obs, n_ok);
    assert_int_equal(b2->n_rejected, 0);
    kp_batch_destroy(&b2);
    free(ok);
    kp_buf_fini(&again);
    kp_buf_fini(&json);
}

static void test_random_bytes(void **state)
{
    (void)state;
    size_t accepted = 0, n = 500000;
    for (size_t it = 0; it < n; it++) {
        size_t len = rnd() % 64;
        uint8_t *p = malloc(len ? len : 1);
        for (size_t k = 0; k < len; k++)
            p[k] = (uint8_t)rnd();
        if (len && (it & 1)) /* half of them start like a small map, to get further in */
            p[0] = (uint8_t)(0x80 | (rnd() % 9));
        for (int m = 0; m < M__N; m++) {
            enum kp_reason peek;
            if (decode_m(m, p, len, &peek) == KP_R_OK)
                accepted++;
        }
        struct kp_buf json = {0};
        kp_msgpack_to_json(p, len, &json);
        kp_buf_fini(&json);
        struct kp_batch *b = NULL;
        assert_int_not_equal(kp_batch_decode(p, len, NULL, &b, NULL, NULL, NULL, 0), KP_R_OK);
        assert_null(b);
        free(p);
    }
    print_message("%zu random frames x %d decoders: %zu accepted\n", n, M__N, accepted);
}

static void test_mutated_batches(void **state)
{
    (void)state;
    struct kp_buf valid = {0};
    size_t accepted = 0, obs_refused = 0, n = 300000;
    unsigned seen = 0;
    make_valid(M_BATCH, &valid);
    for (size_t it = 0; it < n; it++) {
        size_t len = valid.len;
        uint8_t *p = malloc(len + 8);
        memcpy(p, valid.data, len);
        int flips = 1 + (int)(rnd() % 4);
        for (int k = 0; k < flips; k++) {
            size_t at = rnd() % len;
            switch (rnd() % 4) {
            case 0:
                p[at] = (uint8_t)rnd();
                break;
            case 1:
                p[at] ^= (uint8_t)(1u << (rnd() % 8));
                break;
            case 2:
                p[at] = (uint8_t)(p[at] + 1);
                break;
            default: /* insert or drop a byte */
                if (rnd() & 1) {
                    memmove(p + at + 1, p + at, len - at);
                    p[at] = (uint8_t)rnd();
                    len++;
                } else if (len > 1) {
                    memmove(p + at, p + at + 1, len - at - 1);
                    len--;
                }
            }
        }
        uint8_t *exact = malloc(len);
        memcpy(exact, p, len);
        free(p);
        struct kp_batch *b = NULL;
        bool has_seq;
        uint64_t seq;
        char msg[KP_MSG_TEXT_MAX];
        enum kp_reason r = kp_batch_decode(exact, len, NULL, &b, &has_seq, &seq, msg, sizeof msg);
        seen |= 1u << r;
        if (r == KP_R_OK) {
            accepted++;
            obs_refused += b->n_rejected;
            for (size_t k = 0; k < b->n_obs; k++)
                seen |= 1u << b->obs[k].reason;
            check_accepted(b, exact, len);
            kp_batch_destroy(&b);
        } else {
            assert_null(b);
            assert_true(msg[0] != 0);
            assert_true(r > KP_R_OK && r < KP_R__COUNT);
        }
        free(exact);
    }
    print_message("%zu mutated batches: %zu accepted (%zu observations refused in them)\n", n,
                  accepted, obs_refused);
    /* the mutations reach deep into the decoder: most reasons come up */
    assert_true(seen & (1u << KP_R_bad_msgpack));
    assert_true(seen & (1u << KP_R_OK));
    assert_true(seen & (1u << KP_R_bad_field));
    kp_buf_fini(&valid);
}

/* A 10 MB frame of random bytes: refused as too_large by default, and refused (not
 * crashed) without a size limit. */
static void test_random_10mb(void **state)
{
    (void)state;
    size_t len = 10 * MB;
    uint8_t *p = malloc(len);
    for (size_t k = 0; k < len; k++)
        p[k] = (uint8_t)rnd();
    struct kp_batch *b = NULL;
    assert_int_equal(kp_batch_decode(p, len, NULL, &b, NULL, NULL, NULL, 0), KP_R_too_large);
    struct kp_msg_limits lim = {SIZE_MAX, SIZE_MAX};
    p[0] = 0x81;
    assert_int_not_equal(kp_batch_decode(p, len, &lim, &b, NULL, NULL, NULL, 0), KP_R_OK);
    assert_null(b);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hostile_no_large_allocation),
        cmocka_unit_test(test_limit_is_effective),
        cmocka_unit_test(test_truncations),
        cmocka_unit_test(test_random_bytes),
        cmocka_unit_test(test_mutated_batches),
        cmocka_unit_test(test_random_10mb),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
