/*
 * test_kp_acl: the authorised-clients file and its grants (lib/kp_acl.c) and the "refused"
 * envelope frame: a valid file with patterns, several keys per aid, the lookups and grant
 * checks the collector makes per batch; every defect of a file refused with file:line; the
 * refused frame round-trips and hostile frames are refused without reading past the end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kp_acl.h"
#include "kp_buf.h"
#include "kp_err.h"
#include "kp_keys.h"
#include "kp_reason.h"

static char g_dir[64];
static char ka[41], kb[41], kc[41], ks[41]; /* public keys; ks: secret, unused */

static const char *write_tmp(const char *name, const char *text)
{
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/kp-acl.XXXXXX");
    if (!mkdtemp(g_dir))
        return -1;
    if (kp_keys_keypair(ka, ks) || kp_keys_keypair(kb, ks) || kp_keys_keypair(kc, ks))
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_valid_file(void **state)
{
    (void)state;
    char text[2048];
    snprintf(text, sizeof text,
             "# adapters\n"
             "- aid: stats\n"
             "  key: \"%s\"\n"
             "  grants:\n"
             "    - scheme: anshan-2015\n"
             "      src: stats\n"
             "      indicators: [gdp_growth, \"fixed_*\"]\n"
             "    - scheme: \"*-2016\"\n"
             "      src: \"st?ts\"\n"
             "      indicators: [\"*\"]\n"
             "- aid: finance\n"
             "  keys: [\"%s\", \"%s\"]\n"
             "- aid: empty\n"
             "  key: \"%s\"\n"
             "  grants: []\n",
             ka, kb, kc, ks);
    char err[256];
    struct kp_acl *a = NULL;
    int rc = kp_acl_load(write_tmp("ok.yaml", text), &a, err, sizeof err);
    if (rc)
        print_error("%s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(kp_acl_clients(a), 3);
    assert_int_equal(kp_acl_keys(a), 4);
    uint8_t k[32];
    assert_int_equal(kp_keys_z85_decode(ka, k), 0);
    assert_string_equal(kp_acl_lookup_key(a, k), "stats");
    assert_int_equal(kp_keys_z85_decode(kc, k), 0);
    assert_string_equal(kp_acl_lookup_key(a, k), "finance");
    memset(k, 7, sizeof k);
    assert_null(kp_acl_lookup_key(a, k));
    assert_true(kp_acl_has_aid(a, "empty"));
    assert_false(kp_acl_has_aid(a, "nobody"));

    char msg[256];
    assert_int_equal(kp_acl_check_batch(a, "stats", "anshan-2015", "stats", msg, sizeof msg),
                     KP_R_OK);
    assert_int_equal(kp_acl_check_batch(a, "stats", "anshan-2016", "stats", msg, sizeof msg),
                     KP_R_OK);
    assert_int_equal(kp_acl_check_batch(a, "stats", "other", "stats", msg, sizeof msg),
                     KP_R_not_granted_scheme);
    assert_non_null(strstr(msg, "not granted scheme other"));
    assert_int_equal(kp_acl_check_batch(a, "stats", "anshan-2015", "finance", msg, sizeof msg),
                     KP_R_not_granted_scheme);
    assert_non_null(strstr(msg, "src finance"));
    assert_int_equal(kp_acl_check_batch(a, "finance", "anshan-2015", "finance", msg, sizeof msg),
                     KP_R_not_granted_scheme);
    assert_int_equal(kp_acl_check_batch(a, "nobody", "anshan-2015", "stats", msg, sizeof msg),
                     KP_R_not_granted_scheme);

    assert_true(kp_acl_indicator_granted(a, "stats", "anshan-2015", "stats", "gdp_growth"));
    assert_true(kp_acl_indicator_granted(a, "stats", "anshan-2015", "stats", "fixed_asset"));
    assert_false(kp_acl_indicator_granted(a, "stats", "anshan-2015", "stats", "gdp_growth2"));
    assert_false(kp_acl_indicator_granted(a, "stats", "anshan-2015", "stats", "income"));
    assert_true(kp_acl_indicator_granted(a, "stats", "x-2016", "stats", "income"));
    assert_false(kp_acl_indicator_granted(a, "empty", "anshan-2015", "stats", "gdp_growth"));
    kp_acl_destroy(&a);
    assert_null(a);
    kp_acl_destroy(&a);

    /* an empty file authorises nobody */
    assert_int_equal(kp_acl_load(write_tmp("empty.yaml", "# nobody yet\n"), &a, err, sizeof err),
                     0);
    assert_int_equal(kp_acl_clients(a), 0);
    kp_acl_destroy(&a);
}

struct bad {
    const char *text; /* %s: a valid key, %s: the same key again */
    int line;
    const char *why;
};

static void test_bad_files(void **state)
{
    (void)state;
    static const struct bad cases[] = {
        {"aid: x\n", 1, "expected a list of clients"},
        {"- aid: x\n", 1, "key (or keys) is required"},
        {"- key: \"%s\"\n", 1, "aid is required"},
        {"- aid: \"a b\"\n  key: \"%s\"\n", 1, "aid: must be"},
        {"- aid: x\n  key: \"short\"\n", 2, "expected a CURVE public key"},
        {"- aid: x\n  key: \"%s\"\n  colour: red\n", 3, "colour: unknown key"},
        {"- aid: x\n  key: \"%s\"\n- aid: x\n  key: \"%s\"\n", 3, "listed twice"},
        {"- aid: x\n  key: \"%s\"\n- aid: y\n  key: \"%s\"\n", 3, "also the key of x"},
        {"- aid: x\n  key: \"%s\"\n  grants:\n    - scheme: s\n      src: t\n", 4,
         "indicators is required"},
        {"- aid: x\n  key: \"%s\"\n  grants:\n    - src: t\n      indicators: [a]\n", 4,
         "scheme is required"},
        {"- aid: x\n  key: \"%s\"\n  grants:\n    - scheme: s\n      src: t\n"
         "      indicators: [\"a;drop\"]\n",
         6, "code or glob pattern"},
        {"- aid: x\n  key: \"%s\"\n  grants: {scheme: s}\n", 3, "expected a list"},
        {"- aid: x\n  key: [unclosed\n", 3, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[1024], err[512], want[64];
        snprintf(text, sizeof text, cases[i].text, ka, ka);
        const char *path = write_tmp("bad.yaml", text);
        struct kp_acl *a = NULL;
        int rc = kp_acl_load(path, &a, err, sizeof err);
        if (rc != KP_ECONFIG || !strstr(err, cases[i].why))
            print_error("case %zu: rc %d err %s\n", i, rc, err);
        assert_int_equal(rc, KP_ECONFIG);
        assert_null(a);
        snprintf(want, sizeof want, "bad.yaml:%d: ", cases[i].line);
        if (!strstr(err, want))
            print_error("case %zu: want %s in %s\n", i, want, err);
        assert_non_null(strstr(err, want));
        assert_non_null(strstr(err, cases[i].why));
    }
    char err[256];
    struct kp_acl *a = NULL;
    assert_int_equal(kp_acl_load("/nonexistent/keys.yaml", &a, err, sizeof err), KP_EIO);
}

static void test_refused_frame(void **state)
{
    (void)state;
    struct kp_refused in[20], out[20];
    for (uint32_t k = 0; k < 20; k++) {
        in[k].n = k * 1000 + 1;
        in[k].code = KP_R_not_granted_indicator;
    }
    struct kp_buf b = {0};
    assert_int_equal(kp_refused_encode(&b, in, 20), 0);
    assert_int_equal(kp_refused_decode(b.data, b.len, out, 20), 20);
    for (int k = 0; k < 20; k++) {
        assert_int_equal(out[k].n, in[k].n);
        assert_int_equal(out[k].code, KP_R_not_granted_indicator);
    }
    /* more entries than the batch has observations */
    assert_int_equal(kp_refused_decode(b.data, b.len, out, 19), KP_EPROTO);
    /* every truncation is refused */
    for (size_t len = 0; len < b.len; len++)
        assert_int_equal(kp_refused_decode(b.data, len, out, 20), KP_EPROTO);
    /* trailing bytes */
    kp_buf_append(&b, "x", 1);
    assert_int_equal(kp_refused_decode(b.data, b.len, out, 20), KP_EPROTO);
    /* an unknown reason string, an empty array, a huge declared count */
    static const uint8_t unknown[] = {0x91, 0x92, 0x01, 0xa3, 'b', 'a', 'd'};
    static const uint8_t empty[] = {0x90};
    static const uint8_t huge[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x92, 0x01};
    assert_int_equal(kp_refused_decode(unknown, sizeof unknown, out, 20), KP_EPROTO);
    assert_int_equal(kp_refused_decode(empty, sizeof empty, out, 20), KP_EPROTO);
    assert_int_equal(kp_refused_decode(huge, sizeof huge, out, 20), KP_EPROTO);
    /* encoding refuses nonsense */
    struct kp_refused ok = {0, KP_R_OK};
    kp_buf_reset(&b);
    assert_int_equal(kp_refused_encode(&b, &ok, 1), KP_EINVAL);
    assert_int_equal(kp_refused_encode(&b, in, 0), KP_EINVAL);
    kp_buf_fini(&b);
}

static void test_keys(void **state)
{
    (void)state;
    char pub[41], sec[41], pub2[41], err[512];
    assert_int_equal(kp_keys_keypair(pub, sec), 0);
    assert_int_equal(kp_keys_public_of(sec, pub2), 0);
    assert_string_equal(pub, pub2);
    assert_true(kp_keys_z85_valid(pub));
    assert_false(kp_keys_z85_valid(""));
    assert_false(kp_keys_z85_valid("0123456789012345678901234567890123456789x"));
    assert_false(kp_keys_z85_valid("012345678901234567890123456789012345678\""));
    assert_int_equal(kp_keys_write(g_dir, "../evil", pub, sec, err, sizeof err), KP_EINVAL);
    assert_int_equal(kp_keys_write(g_dir, "k1", pub, sec, err, sizeof err), 0);
    char p[128], got[41];
    snprintf(p, sizeof p, "%s/k1.key", g_dir);
    assert_int_equal(kp_keys_read_public(p, got, err, sizeof err), 0);
    assert_string_equal(got, pub);
    snprintf(p, sizeof p, "%s/k1.secret", g_dir);
    assert_int_equal(kp_keys_read_secret(p, got, err, sizeof err), 0);
    assert_string_equal(got, sec);
    /* group-readable, other-writable: refused; 0400: fine */
    static const unsigned bad_modes[] = {0640, 0604, 0602, 0660, 0610};
    for (size_t i = 0; i < sizeof bad_modes / sizeof bad_modes[0]; i++) {
        assert_int_equal(chmod(p, bad_modes[i]), 0);
        assert_int_equal(kp_keys_read_secret(p, got, err, sizeof err), KP_ECONFIG);
        assert_null(strstr(err, sec));
    }
    assert_int_equal(chmod(p, 0400), 0);
    assert_int_equal(kp_keys_read_secret(p, got, err, sizeof err), 0);
    /* not a key */
    const char *junk = write_tmp("junk.key", "hello\n");
    assert_int_equal(kp_keys_read_public(junk, got, err, sizeof err), KP_EINVAL);
    assert_int_equal(kp_keys_read_public("/nonexistent", got, err, sizeof err), KP_EIO);
    /* a key with blank lines and blanks around it */
    char text[64];
    snprintf(text, sizeof text, "\n  %s \r\n", pub);
    assert_int_equal(kp_keys_read_public(write_tmp("blank.key", text), got, err, sizeof err), 0);
    assert_string_equal(got, pub);
    kp_keys_wipe(sec, sizeof sec);
    assert_int_equal(sec[0], 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_file),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_refused_frame),
        cmocka_unit_test(test_keys),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
