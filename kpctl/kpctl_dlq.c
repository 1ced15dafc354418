/*
 * kpctl dlq: the adapters' dead letters, for the operator (ARCHITECTURE.md guarantee 4: every
 * refusal is visible; PROTOCOL.md nack retry:false "the client moves the batch to its
 * dead-letter store"). It works on one adapter's spool file (--spool PATH, or the `spool:` key
 * of the adapter's configuration with -c FILE), beside the running adapter:
 *
 *   list         the dead batches (a permanent nack: seq, code, observations, when, message),
 *                the per-observation refusals recorded from acks, and the source rows refused
 *                before they became a batch (CSV rows, say); read-only
 *   show SEQ     one dead (or still waiting) batch decoded: one line per observation, with
 *                the local verdict on each; read-only
 *   retry SEQ... | --all
 *                move dead batches back into the waiting queue under NEW seqs (see
 *                kp_spool_retry_dead in kp_spool.h for why a new seq); the adapter sends them
 *                with its next spool scan: its next new batch, ack or retransmission, or its
 *                next start
 *
 * Retry after fixing the cause: a batch refused for too_large is refused again unless the
 * collector's limit was raised, one refused for not_granted_scheme until the grant exists.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <yaml.h>

#include "kp_err.h"
#include "kp_msg.h"
#include "kp_reason.h"
#include "kp_spool.h"
#include "kpctl.h"

#define SPOOL_PATH_MAX 4096

/* The top-level `spool:` of an adapter configuration (kp-adapter's table reads the same key;
 * nothing else of the file is interpreted here). */
static int spool_from_config(const char *file, char *out, size_t outlen)
{
    FILE *f = fopen(file, "rb");
    if (!f) {
        fprintf(stderr, "kpctl dlq: cannot open %s\n", file);
        return 1;
    }
    yaml_parser_t parser;
    yaml_document_t doc;
    int rc = 1;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    if (!yaml_parser_load(&parser, &doc)) {
        fprintf(stderr, "kpctl dlq: %s:%zu: %s\n", file, parser.problem_mark.line + 1,
                parser.problem ? parser.problem : "YAML error");
        yaml_parser_delete(&parser);
        fclose(f);
        return 1;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root && root->type == YAML_MAPPING_NODE) {
        for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
             p++) {
            yaml_node_t *k = yaml_document_get_node(&doc, p->key);
            yaml_node_t *v = yaml_document_get_node(&doc, p->value);
            if (k && v && k->type == YAML_SCALAR_NODE && v->type == YAML_SCALAR_NODE &&
                strcmp((const char *)k->data.scalar.value, "spool") == 0 &&
                v->data.scalar.length > 0 && v->data.scalar.length < outlen) {
                memcpy(out, v->data.scalar.value, v->data.scalar.length);
                out[v->data.scalar.length] = 0;
                rc = 0;
                break;
            }
        }
    }
    if (rc != 0)
        fprintf(stderr, "kpctl dlq: %s has no top-level `spool:` path\n", file);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    fclose(f);
    return rc;
}

static int spool_path(int argc, char **argv, char *out, size_t outlen)
{
    const char *p = kpctl_arg(argc, argv, "--spool");
    const char *c = kpctl_arg(argc, argv, "-c");
    if (!c)
        c = kpctl_arg(argc, argv, "--config");
    if (p && c) {
        fprintf(stderr, "kpctl dlq: give --spool PATH or -c ADAPTER_CONFIG, not both\n");
        return 2;
    }
    if (p) {
        snprintf(out, outlen, "%s", p);
        return 0;
    }
    if (c)
        return spool_from_config(c, out, outlen);
    fprintf(stderr, "kpctl dlq: which spool? give --spool PATH or -c ADAPTER_CONFIG\n");
    return 2;
}

static int open_ro(const char *path, struct kp_spool **sp)
{
    int rc = kp_spool_open_readonly(path, sp);
    if (rc == 0)
        return 0;
    if (rc == KP_ENOENT)
        fprintf(stderr, "kpctl dlq: %s: no such spool file\n", path);
    else
        fprintf(stderr, "kpctl dlq: %s: cannot read it as a kp-adapter spool (%s)\n", path,
                kp_strerror(rc));
    return 1;
}

static void fmt_time(int64_t ms, char *buf, size_t len)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (ms <= 0 || !localtime_r(&t, &tm) || strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm) == 0)
        snprintf(buf, len, "-");
}

/* Prints text on one line: control characters (a raw CSV row's newline) as '?'. */
static void print_flat(const char *s, size_t max)
{
    size_t n = 0;
    for (; s && *s && n < max; s++, n++)
        putchar((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s);
    if (s && *s)
        fputs("...", stdout);
}

/* Decodes a frame leniently (the limits are the frame's own size), for display. */
static enum kp_reason decode(const void *payload, size_t len, struct kp_batch **b, char *msg,
                             size_t msglen)
{
    struct kp_msg_limits lim = {len + 1, SIZE_MAX};
    bool has_seq = false;
    uint64_t seq = 0;
    return kp_batch_decode(payload, len, &lim, b, &has_seq, &seq, msg, msglen);
}

/* ---- list ------------------------------------------------------------------------------ */

static int list_dead(const struct kp_spool_dead_item *it, void *arg)
{
    (void)arg;
    char when[32], n_obs[16] = "?";
    fmt_time(it->at_ms, when, sizeof when);
    struct kp_batch *b = NULL;
    char msg[KP_MSG_TEXT_MAX];
    if (decode(it->payload, it->len, &b, msg, sizeof msg) == KP_R_OK)
        snprintf(n_obs, sizeof n_obs, "%zu", b->n_obs);
    kp_batch_destroy(&b);
    printf("  %8" PRIu64 "  %-22s %6s  %-19s  ", it->seq, it->code, n_obs, when);
    print_flat(it->msg, 200);
    putchar('\n');
    return 0;
}

static int list_rejected(const struct kp_spool_rejected_item *it, void *arg)
{
    (void)arg;
    char when[32];
    fmt_time(it->at_ms, when, sizeof when);
    printf("  %8" PRIu64 "  %6" PRIu32 "  %-22s %-19s  ", it->seq, it->n, it->code, when);
    print_flat(it->msg, 200);
    putchar('\n');
    return 0;
}

static int list_dead_row(const struct kp_spool_dead_row *r, void *arg)
{
    (void)arg;
    char when[32];
    fmt_time(r->at_ms, when, sizeof when);
    printf("  ");
    print_flat(r->file, 120);
    printf(":%ld  %-22s %-19s  ", r->line, r->code ? r->code : "", when);
    print_flat(r->msg, 120);
    fputs("\n      row: ", stdout);
    print_flat(r->raw, 200);
    putchar('\n');
    return 0;
}

static int cmd_list(const char *path)
{
    struct kp_spool *sp = NULL;
    if (open_ro(path, &sp))
        return 1;
    struct kp_spool_stats st;
    int rc = kp_spool_stats(sp, &st);
    if (rc == 0)
        printf("spool %s: %" PRIu64 " batches waiting (%" PRIu64 " bytes), %" PRIu64
               " dead, next seq %" PRIu64 "\n",
               path, st.depth, st.bytes, st.dead, kp_spool_next_seq(sp));
    int status = rc == 0 ? 0 : 1;

    printf("\ndead batches (refused by a permanent nack; `kpctl dlq retry` sends them again)\n");
    printf("  %8s  %-22s %6s  %-19s  %s\n", "seq", "code", "n_obs", "when", "msg");
    int n = kp_spool_dead_scan(sp, 0, SIZE_MAX, list_dead, NULL);
    if (n == 0)
        printf("  (none)\n");

    printf("\nobservations refused in acks (the rest of their batch was stored)\n");
    printf("  %8s  %6s  %-22s %-19s  %s\n", "seq", "n", "code", "when", "msg");
    int m = kp_spool_rejected_scan(sp, 0, list_rejected, NULL);
    if (m == 0)
        printf("  (none)\n");

    printf("\nsource rows refused before they became a batch\n");
    int r = kp_spool_dead_row_scan(sp, NULL, list_dead_row, NULL);
    if (r == 0)
        printf("  (none)\n");
    else if (r < 0)
        printf("  (this spool file has no record of them)\n");

    if (n < 0 || m < 0) {
        fprintf(stderr, "kpctl dlq: %s: read failed\n", path);
        status = 1;
    }
    kp_spool_close(&sp);
    return status;
}

/* ---- show ------------------------------------------------------------------------------ */

struct found {
    uint64_t want;
    bool found;
    char code[64];
    char msg[512];
    void *payload;
    size_t len;
};

static void keep(struct found *f, const void *payload, size_t len)
{
    f->found = true;
    f->len = len;
    f->payload = kp_xmalloc(len ? len : 1);
    if (len)
        memcpy(f->payload, payload, len);
}

static int find_dead(const struct kp_spool_dead_item *it, void *arg)
{
    struct found *f = arg;
    if (it->seq == f->want) {
        snprintf(f->code, sizeof f->code, "%s", it->code);
        snprintf(f->msg, sizeof f->msg, "%s", it->msg);
        keep(f, it->payload, it->len);
    }
    return 1;
}

static int find_waiting(const struct kp_spool_item *it, void *arg)
{
    struct found *f = arg;
    if (it->seq == f->want)
        keep(f, it->payload, it->len);
    return 1;
}

static void print_num(double v)
{
    char buf[40];
    snprintf(buf, sizeof buf, "%.15g", v);
    printf("%12s", buf);
}

static int cmd_show(const char *path, const char *seqtext)
{
    char *end = NULL;
    unsigned long long want = strtoull(seqtext, &end, 10);
    if (!*seqtext || *end || want == 0) {
        fprintf(stderr, "kpctl dlq show: SEQ must be a positive integer, not \"%s\"\n", seqtext);
        return 2;
    }
    struct kp_spool *sp = NULL;
    if (open_ro(path, &sp))
        return 1;
    struct found f = {.want = want};
    bool dead = true;
    int rc = kp_spool_dead_scan(sp, want - 1, 1, find_dead, &f);
    if (rc >= 0 && !f.found) {
        dead = false;
        rc = kp_spool_scan(sp, want - 1, 1, find_waiting, &f);
    }
    kp_spool_close(&sp);
    if (rc < 0) {
        fprintf(stderr, "kpctl dlq: %s: read failed\n", path);
        return 1;
    }
    if (!f.found) {
        fprintf(stderr, "kpctl dlq show: no batch %llu in %s (neither dead nor waiting)\n", want,
                path);
        return 1;
    }
    if (dead) {
        printf("batch %llu: dead: %s: ", want, f.code);
        print_flat(f.msg, 400);
        putchar('\n');
    } else {
        printf("batch %llu: waiting for its ack\n", want);
    }
    struct kp_batch *b = NULL;
    char msg[KP_MSG_TEXT_MAX];
    enum kp_reason r = decode(f.payload, f.len, &b, msg, sizeof msg);
    if (r != KP_R_OK) {
        printf("the frame (%zu bytes) does not decode as a batch: %s: %s\n", f.len,
               kp_reason_str(r), msg);
        free(f.payload);
        return 0;
    }
    char sent[32];
    fmt_time(b->sent, sent, sizeof sent);
    printf("aid %s  scheme %s  src %s  seq %" PRIu64 "  sent %s  %zu observations (%zu refused "
           "by the local checks)\n\n",
           b->aid, b->scheme, b->src, b->seq, sent, b->n_obs, b->n_rejected);
    printf("  %5s  %-12s %-24s %-10s %12s %6s %6s  %-19s  %s\n", "n", "unit", "indicator", "period",
           "val", "w", "rev", "at", "ref");
    for (size_t k = 0; k < b->n_obs; k++) {
        const struct kp_obs *o = &b->obs[k];
        char at[32];
        fmt_time(o->at, at, sizeof at);
        printf("  %5zu  ", k);
        kpctl_print_padded(o->u, 12);
        putchar(' ');
        kpctl_print_padded(o->i, 24);
        putchar(' ');
        kpctl_print_padded(o->p, 10);
        putchar(' ');
        print_num(o->val);
        printf(" %6g %6" PRIu64 "  %-19s  ", o->w, o->rev, at);
        print_flat(o->ref, 80);
        if (o->reason != KP_R_OK) {
            printf("   refused: %s: ", kp_reason_str(o->reason));
            print_flat(o->msg, 200);
        }
        putchar('\n');
    }
    kp_batch_destroy(&b);
    free(f.payload);
    return 0;
}

/* ---- retry ----------------------------------------------------------------------------- */

struct seqs {
    uint64_t *v;
    size_t n, cap;
};

static int collect(const struct kp_spool_dead_item *it, void *arg)
{
    struct seqs *s = arg;
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->v = kp_xrealloc(s->v, s->cap * sizeof *s->v);
    }
    s->v[s->n++] = it->seq;
    return 0;
}

static bool is_option_with_value(const char *a)
{
    return strcmp(a, "--spool") == 0 || strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0;
}

static int cmd_retry(const char *path, int argc, char **argv)
{
    bool all = kpctl_flag(argc, argv, "--all");
    struct seqs s = {0};
    for (int k = 1; k < argc; k++) {
        if (is_option_with_value(argv[k])) {
            k++;
            continue;
        }
        if (strcmp(argv[k], "--all") == 0)
            continue;
        char *end = NULL;
        unsigned long long v = strtoull(argv[k], &end, 10);
        if (argv[k][0] == '-' || !argv[k][0] || *end || v == 0) {
            fprintf(stderr, "kpctl dlq retry: SEQ must be a positive integer, not \"%s\"\n",
                    argv[k]);
            free(s.v);
            return 2;
        }
        struct kp_spool_dead_item fake = {.seq = v};
        collect(&fake, &s);
    }
    if (all == (s.n > 0)) {
        fprintf(stderr, "kpctl dlq retry: give SEQ... or --all\n");
        free(s.v);
        return 2;
    }
    /* kp_spool_open creates a file that does not exist: make sure it is there first. */
    if (access(path, F_OK) != 0) {
        fprintf(stderr, "kpctl dlq: %s: no such spool file\n", path);
        free(s.v);
        return 1;
    }
    struct kp_spool *sp = NULL;
    int rc = kp_spool_open(path, UINT64_MAX, &sp);
    if (rc != 0) {
        fprintf(stderr, "kpctl dlq: %s: cannot open it for writing (%s)\n", path, kp_strerror(rc));
        free(s.v);
        return 1;
    }
    if (all && kp_spool_dead_scan(sp, 0, SIZE_MAX, collect, &s) < 0) {
        fprintf(stderr, "kpctl dlq: %s: read failed\n", path);
        kp_spool_close(&sp);
        free(s.v);
        return 1;
    }
    int status = 0;
    size_t done = 0;
    for (size_t k = 0; k < s.n; k++) {
        uint64_t nseq = 0;
        rc = kp_spool_retry_dead(sp, s.v[k], &nseq);
        if (rc == 0) {
            printf("dead batch %" PRIu64 " queued again as seq %" PRIu64 "\n", s.v[k], nseq);
            done++;
        } else if (rc == KP_ENOENT) {
            fprintf(stderr, "kpctl dlq retry: %" PRIu64 " is not a dead batch of %s\n", s.v[k],
                    path);
            status = 1;
        } else if (rc == KP_EINVAL) {
            fprintf(stderr,
                    "kpctl dlq retry: dead batch %" PRIu64 " is no batch frame with a seq; "
                    "it stays dead (kpctl dlq show %" PRIu64 ")\n",
                    s.v[k], s.v[k]);
            status = 1;
        } else {
            fprintf(stderr, "kpctl dlq retry: %" PRIu64 ": %s (is the spool writable?)\n", s.v[k],
                    kp_strerror(rc));
            status = 1;
        }
    }
    if (s.n == 0)
        printf("no dead batches in %s\n", path);
    else if (done)
        printf("%zu batch%s waiting; a running kp-adapter sends %s with its next spool scan "
               "(its next new batch, ack or retransmission) or on its next start\n",
               done, done == 1 ? "" : "es", done == 1 ? "it" : "them");
    kp_spool_close(&sp);
    free(s.v);
    return status;
}

static int cmd_dlq(int argc, char **argv)
{
    if (argc < 1 || argv[0][0] == '-') {
        fprintf(stderr, "kpctl dlq: missing list, show or retry\n");
        return 2;
    }
    char path[SPOOL_PATH_MAX];
    int rc = spool_path(argc, argv, path, sizeof path);
    if (rc)
        return rc;
    if (strcmp(argv[0], "list") == 0)
        return cmd_list(path);
    if (strcmp(argv[0], "show") == 0) {
        if (argc < 2 || argv[1][0] == '-') {
            fprintf(stderr, "kpctl dlq show: missing SEQ\n");
            return 2;
        }
        return cmd_show(path, argv[1]);
    }
    if (strcmp(argv[0], "retry") == 0)
        return cmd_retry(path, argc, argv);
    fprintf(stderr, "kpctl dlq: unknown subcommand \"%s\" (list, show or retry)\n", argv[0]);
    return 2;
}

const struct kpctl_cmd kpctl_cmd_dlq = {
    "dlq",
    "dlq list|show SEQ|retry (SEQ...|--all) (--spool PATH | -c ADAPTER_CONFIG)",
    "an adapter's dead letters in its spool file: list the dead batches, the\n"
    "observations refused in acks and the source rows refused; show one batch\n"
    "decoded; retry moves dead batches back into the queue under new seqs (the\n"
    "running adapter sends them with its next spool scan). list and show only read",
    cmd_dlq,
};
