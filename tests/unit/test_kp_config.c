/*
 * Unit tests of kp_config: defaults, a full nested file, every refusal with its exact
 * `file:line: key: reason`, units of durations and sizes, lists, --set overrides and the
 * command-line parser, reload semantics and the help text. YAML files are written to a
 * temporary directory by each test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kp_config.h"
#include "kp_err.h"

struct cfg {
    char *dsn;
    long long port;
    double ratio;
    bool verbose;
    long long timeout;
    long long max_batch;
    char **peers;
    char *name;
    char **tags;
};

#define F(x) offsetof(struct cfg, x)
static const struct kp_cfg_entry table[] = {
    {"db.dsn", KP_CFG_STR, NULL, 0, 0, F(dsn), true, false, "PostgreSQL conninfo."},
    {"db.port", KP_CFG_INT, "5432", 1, 65535, F(port), false, false, "Port."},
    {"ratio", KP_CFG_DOUBLE, "0.5", 0, 1, F(ratio), false, true, "A share."},
    {"log.verbose", KP_CFG_BOOL, "false", 0, 0, F(verbose), false, true, "More lines."},
    {"timeout", KP_CFG_MS, "5s", 1, 60000, F(timeout), false, true, "How long to wait."},
    {"max_batch", KP_CFG_BYTES, "4M", 0, 1073741824, F(max_batch), false, false, "Cap."},
    {"peers", KP_CFG_STRLIST, NULL, 0, 0, F(peers), false, false, "Endpoints."},
    {"name", KP_CFG_STR, "kp", 0, 0, F(name), false, true, "Instance name."},
    {"tags", KP_CFG_STRLIST, "a, b", 0, 0, F(tags), false, true, "Tags."},
    KP_CFG_END,
};

static char dir[64];
static char path[128];

static int setup(void **state)
{
    (void)state;
    strcpy(dir, "/tmp/kp_config_test_XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/kp.yaml", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(path);
    rmdir(dir);
    return 0;
}

static void write_file(const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void assert_defaults(const struct cfg *c)
{
    assert_null(c->dsn);
    assert_int_equal(c->port, 5432);
    assert_true(c->ratio == 0.5);
    assert_false(c->verbose);
    assert_int_equal(c->timeout, 5000);
    assert_int_equal(c->max_batch, 4 * 1024 * 1024);
    assert_null(c->peers);
    assert_string_equal(c->name, "kp");
    assert_non_null(c->tags);
    assert_string_equal(c->tags[0], "a");
    assert_string_equal(c->tags[1], "b");
    assert_null(c->tags[2]);
}

static void test_defaults(void **state)
{
    (void)state;
    struct cfg c;
    memset(&c, 0xa5, sizeof c); /* defaults write every field */
    char err[256] = "";
    assert_int_equal(kp_config_defaults(table, &c, err, sizeof err), 0);
    assert_defaults(&c);
    kp_config_fini(table, &c);
    assert_null(c.name);
    assert_null(c.tags);
    kp_config_fini(table, &c); /* twice is fine */
}

static void test_bad_default(void **state)
{
    (void)state;
    struct bad_target {
        long long n;
        char *s;
    } t;
    const struct kp_cfg_entry bad[] = {
        {"s", KP_CFG_STR, "x", 0, 0, offsetof(struct bad_target, s), false, false, NULL},
        {"n", KP_CFG_INT, "0", 1, 10, offsetof(struct bad_target, n), false, false, NULL},
        KP_CFG_END,
    };
    char err[256];
    assert_int_equal(kp_config_defaults(bad, &t, err, sizeof err), KP_ECONFIG);
    assert_string_equal(err, "n: bad default: 0 is out of range [1, 10]");
    assert_null(t.s); /* nothing left allocated */
}

static void test_load_full(void **state)
{
    (void)state;
    write_file("# kaoping scorer\n"
               "db:\n"
               "  dsn: \"host=/tmp dbname=kp\"\n"
               "  port: 6543\n"
               "ratio: 0.25\n"
               "log: {verbose: yes}\n"
               "timeout: 250ms\n"
               "max_batch: 16MiB\n"
               "peers:\n"
               "  - tcp://a:1\n"
               "  - 'tcp://b:2'\n"
               "name: 考评\n"
               "tags: []\n");
    struct cfg c;
    char err[256] = "";
    assert_int_equal(kp_config_load(path, table, &c, err, sizeof err), 0);
    assert_string_equal(err, "");
    assert_string_equal(c.dsn, "host=/tmp dbname=kp");
    assert_int_equal(c.port, 6543);
    assert_true(c.ratio == 0.25);
    assert_true(c.verbose);
    assert_int_equal(c.timeout, 250);
    assert_int_equal(c.max_batch, 16 * 1024 * 1024);
    assert_non_null(c.peers);
    assert_string_equal(c.peers[0], "tcp://a:1");
    assert_string_equal(c.peers[1], "tcp://b:2");
    assert_null(c.peers[2]);
    assert_string_equal(c.name, "考评");
    assert_non_null(c.tags); /* an empty list is not an absent one */
    assert_null(c.tags[0]);
    kp_config_fini(table, &c);
}

static void test_dotted_keys_and_nulls(void **state)
{
    (void)state;
    write_file("db.dsn: x\n"
               "log.verbose: on\n"
               "name: ~\n"
               "tags:\n"
               "peers: [p]\n");
    struct cfg c;
    char err[256] = "";
    assert_int_equal(kp_config_load(path, table, &c, err, sizeof err), 0);
    assert_string_equal(c.dsn, "x");
    assert_true(c.verbose);
    assert_null(c.name); /* YAML null unsets a string */
    assert_null(c.tags);
    assert_string_equal(c.peers[0], "p");
    kp_config_fini(table, &c);
}

struct bad_case {
    const char *yaml;
    const char *err; /* after "path:" */
};

static void test_refusals(void **state)
{
    (void)state;
    static const struct bad_case cases[] = {
        {"db.dsn: x\nnope: 1\n", "2: nope: unknown key"},
        {"db:\n  dsn: x\n  user: y\n", "3: db.user: unknown key"},
        {"db.dsn: x\nratio_x: {a: 1}\n", "2: ratio_x: unknown key"},
        {"db.dsn: x\nlog:\n  verbose: true\n  colour: red\n", "4: log.colour: unknown key"},
        {"db.dsn: x\nlog: true\n", "2: log: expected a map, got a single value"},
        {"db.dsn: x\nlog: [a]\n", "2: log: expected a map, got a list"},
        {"db:\n  dsn: a\n  dsn: b\n", "3: db.dsn: duplicate key (first set on line 2)"},
        {"db.dsn: a\ndb:\n  dsn: b\n", "3: db.dsn: duplicate key (first set on line 1)"},
        {"db:\n  dsn: a\ndb:\n  port: 1\n", "3: db: duplicate key (first set on line 1)"},
        {"db:\n  dsn: x\n  port: abc\n", "3: db.port: expected an integer, got \"abc\""},
        {"db:\n  dsn: x\n  port: 70000\n", "3: db.port: 70000 is out of range [1, 65535]"},
        {"db:\n  dsn: x\n  port: 0\n", "3: db.port: 0 is out of range [1, 65535]"},
        {"db:\n  dsn: x\n  port: 5.5\n", "3: db.port: expected an integer, got \"5.5\""},
        {"db:\n  dsn: x\n  port:\n", "3: db.port: expected an integer, got \"\""},
        {"db.dsn: x\nratio: 1.5\n", "2: ratio: 1.5 is out of range [0, 1]"},
        {"db.dsn: x\nratio: half\n", "2: ratio: expected a number, got \"half\""},
        {"db.dsn: x\nratio: .nan\n", "2: ratio: expected a number, got \".nan\""},
        {"db.dsn: x\nlog.verbose: maybe\n",
         "2: log.verbose: expected a boolean (true/false, yes/no, on/off), got \"maybe\""},
        {"db.dsn: x\ntimeout: 5x\n",
         "2: timeout: expected a duration (e.g. 250ms, 5s, 2m, 1h), got \"5x\""},
        {"db.dsn: x\ntimeout: 2m\n", "2: timeout: 120000ms is out of range [1ms, 60000ms]"},
        {"db.dsn: x\nmax_batch: 12q\n",
         "2: max_batch: expected a byte size (e.g. 64k, 16M, 2G), got \"12q\""},
        {"db.dsn: x\nmax_batch: 2G\n", "2: max_batch: 2147483648 is out of range [0, 1073741824]"},
        {"db.dsn: x\npeers: tcp://a\n", "2: peers: expected a list of strings"},
        {"db.dsn: x\npeers: {a: 1}\n", "2: peers: expected a list of strings"},
        {"db.dsn: x\npeers:\n  - ok\n  - {a: 1}\n",
         "4: peers: expected a list of strings, item is a map"},
        {"db.dsn: x\npeers:\n  - [a]\n", "3: peers: expected a list of strings, item is a list"},
        {"db.dsn: x\ndb.port: [1, 2]\n", "2: db.port: expected a single value, got a list"},
        {"db.dsn: x\nname:\n  first: a\n", "3: name: expected a single value, got a map"},
        {"ratio: 0.1\n", "1: db.dsn: required key missing"},
        {"# only a comment\n\nratio: 0.1\n", "3: db.dsn: required key missing"},
        {"db:\n  dsn: ~\n", "1: db.dsn: required key missing"},
        {"", "1: db.dsn: required key missing"},
        {"- a\n- b\n", "1: (top level): expected a map of keys, got a list"},
        {"just text\n", "1: (top level): expected a map of keys, got a single value"},
        {"db.dsn: x\n? [a, b]\n: 1\n", "2: (top level): a key must be a plain string"},
        {"db.dsn: x\n---\nratio: 0.1\n", "3: only one YAML document is allowed"},
        {"db.dsn: x\nratio: [1, 2\nname: y\n",
         "3: YAML syntax error: did not find expected ',' or ']' (while parsing a flow "
         "sequence on line 2)"},
        {"db.dsn: x\n  ratio: 1\n", "2: YAML syntax error: mapping values are not allowed in "
                                    "this context"},
        {"db.dsn: *nowhere\n", "1: YAML syntax error: found undefined alias"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_file(cases[i].yaml);
        struct cfg c;
        char err[512] = "";
        char want[512];
        snprintf(want, sizeof want, "%s:%s", path, cases[i].err);
        int rc = kp_config_load(path, table, &c, err, sizeof err);
        if (rc != KP_ECONFIG || strcmp(err, want) != 0)
            print_error("case %zu: yaml=<<%s>>\n", i, cases[i].yaml);
        assert_int_equal(rc, KP_ECONFIG);
        assert_string_equal(err, want);
        assert_defaults(&c); /* never a half-applied file */
        kp_config_fini(table, &c);
    }
}

static void test_half_applied_file_is_rolled_back(void **state)
{
    (void)state;
    write_file("db:\n  dsn: set-before-error\n  port: 6000\nname: other\npeers: [a]\nnope: 1\n");
    struct cfg c;
    char err[256];
    assert_int_equal(kp_config_load(path, table, &c, err, sizeof err), KP_ECONFIG);
    assert_defaults(&c);
    kp_config_fini(table, &c);
}

static void test_missing_file(void **state)
{
    (void)state;
    struct cfg c;
    char err[256];
    char want[256];
    snprintf(want, sizeof want, "%s/absent.yaml: cannot open: No such file or directory", dir);
    char p[128];
    snprintf(p, sizeof p, "%s/absent.yaml", dir);
    assert_int_equal(kp_config_load(p, table, &c, err, sizeof err), KP_ECONFIG);
    assert_string_equal(err, want);
    assert_defaults(&c);
    kp_config_fini(table, &c);
    assert_int_equal(kp_config_load(NULL, table, &c, err, sizeof err), KP_ECONFIG);
    /* a NULL err buffer is fine */
    assert_int_equal(kp_config_load(p, table, &c, NULL, 0), KP_ECONFIG);
    kp_config_fini(table, &c);
}

struct units {
    long long ms;
    long long bytes;
    double x;
};

static const struct kp_cfg_entry unit_table[] = {
    {"ms", KP_CFG_MS, "0", 1, 0, offsetof(struct units, ms), false, false, NULL},
    {"bytes", KP_CFG_BYTES, "0", 1, 0, offsetof(struct units, bytes), false, false, NULL},
    {"x", KP_CFG_DOUBLE, "0", 1, 0, offsetof(struct units, x), false, false, NULL},
    KP_CFG_END,
};

static void test_units(void **state)
{
    (void)state;
    struct units u;
    char err[256];
    assert_int_equal(kp_config_defaults(unit_table, &u, err, sizeof err), 0);
    static const struct {
        const char *text;
        long long v;
    } ms[] = {{"250", 250},   {"250ms", 250},  {"5s", 5000},    {"1.5s", 1500},
              {"2m", 120000}, {"1h", 3600000}, {"2 m", 120000}, {"0", 0},
              {"-5s", -5000}, {"0.5ms", 1},    {"+7s", 7000},   {"24h", 86400000}};
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
        assert_int_equal(kp_config_set(unit_table, &u, "ms", ms[i].text, err, sizeof err), 0);
        assert_int_equal(u.ms, ms[i].v);
    }
    static const char *const bad_ms[] = {
        "", "s", "5S", "5sec", "1e3", "0x10", "5 s s", "5.s", ".5s", "5d", "1000000000000000h"};
    for (size_t i = 0; i < sizeof bad_ms / sizeof bad_ms[0]; i++) {
        assert_int_equal(kp_config_set(unit_table, &u, "ms", bad_ms[i], err, sizeof err),
                         KP_ECONFIG);
        char want[256];
        snprintf(want, sizeof want, "ms: expected a duration (e.g. 250ms, 5s, 2m, 1h), got \"%s\"",
                 bad_ms[i]);
        assert_string_equal(err, want);
    }
    static const struct {
        const char *text;
        long long v;
    } by[] = {{"100", 100},           {"7B", 7},
              {"64k", 65536},         {"64K", 65536},
              {"64KB", 65536},        {"64KiB", 65536},
              {"16M", 16777216},      {"16mb", 16777216},
              {"16MiB", 16777216},    {"2G", 2147483648LL},
              {"2GiB", 2147483648LL}, {"1T", 1099511627776LL},
              {"1.5k", 1536},         {"4 MiB", 4194304}};
    for (size_t i = 0; i < sizeof by / sizeof by[0]; i++) {
        assert_int_equal(kp_config_set(unit_table, &u, "bytes", by[i].text, err, sizeof err), 0);
        assert_int_equal(u.bytes, by[i].v);
    }
    static const char *const bad_by[] = {"", "k", "12q", "1e3", "5KiBB", "5Mi", "5 k b"};
    for (size_t i = 0; i < sizeof bad_by / sizeof bad_by[0]; i++)
        assert_int_equal(kp_config_set(unit_table, &u, "bytes", bad_by[i], err, sizeof err),
                         KP_ECONFIG);
    assert_int_equal(kp_config_set(unit_table, &u, "x", "1e3", err, sizeof err), 0);
    assert_true(u.x == 1000);
    assert_int_equal(kp_config_set(unit_table, &u, "x", "inf", err, sizeof err), KP_ECONFIG);
    assert_int_equal(kp_config_set(unit_table, &u, "x", " 1", err, sizeof err), KP_ECONFIG);
    kp_config_fini(unit_table, &u);
}

static void test_set(void **state)
{
    (void)state;
    struct cfg c;
    char err[256];
    assert_int_equal(kp_config_defaults(table, &c, err, sizeof err), 0);
    assert_int_equal(kp_config_set(table, &c, "db.port", "7000", err, sizeof err), 0);
    assert_int_equal(c.port, 7000);
    assert_int_equal(kp_config_set(table, &c, "db.port", "x", err, sizeof err), KP_ECONFIG);
    assert_string_equal(err, "db.port: expected an integer, got \"x\"");
    assert_int_equal(c.port, 7000); /* unchanged on error */
    assert_int_equal(kp_config_set(table, &c, "db", "x", err, sizeof err), KP_ECONFIG);
    assert_string_equal(err, "db: unknown key");
    assert_int_equal(kp_config_set(table, &c, "peers", " a, b ,c", err, sizeof err), 0);
    assert_string_equal(c.peers[0], "a");
    assert_string_equal(c.peers[1], "b");
    assert_string_equal(c.peers[2], "c");
    assert_null(c.peers[3]);
    assert_int_equal(kp_config_set(table, &c, "peers", "", err, sizeof err), 0);
    assert_non_null(c.peers);
    assert_null(c.peers[0]);
    assert_int_equal(kp_config_set(table, &c, "name", "n2", err, sizeof err), 0);
    assert_string_equal(c.name, "n2");
    assert_int_equal(kp_config_set(table, &c, "log.verbose", "ON", err, sizeof err), 0);
    assert_true(c.verbose);
    kp_config_fini(table, &c);
}

static int argc_of(char **argv)
{
    int n = 0;
    while (argv[n])
        n++;
    return n;
}

static void test_cli_parse(void **state)
{
    (void)state;
    struct kp_cli cli;
    char err[256];
    char *ok[] = {"kp-scorer", "-c",        "a.yaml",         "--check-config", "--insecure",
                  "--set",     "db.port=1", "--set=name=x=y", "--help",         NULL};
    assert_int_equal(kp_cli_parse(argc_of(ok), ok, &cli, err, sizeof err), 0);
    assert_string_equal(cli.config_path, "a.yaml");
    assert_true(cli.check_config);
    assert_true(cli.insecure);
    assert_true(cli.help);
    assert_int_equal(cli.n_sets, 2);
    assert_string_equal(cli.sets[0], "db.port=1");
    assert_string_equal(cli.sets[1], "name=x=y");

    char *ok2[] = {"x", "--config=b.yaml", "-h", NULL};
    assert_int_equal(kp_cli_parse(argc_of(ok2), ok2, &cli, err, sizeof err), 0);
    assert_string_equal(cli.config_path, "b.yaml");
    assert_true(cli.help);
    assert_false(cli.check_config);
    assert_int_equal(cli.n_sets, 0);

    char *ok3[] = {"x", "--config", "c.yaml", NULL};
    assert_int_equal(kp_cli_parse(argc_of(ok3), ok3, &cli, err, sizeof err), 0);
    assert_string_equal(cli.config_path, "c.yaml");

    static const struct {
        char *argv[4];
        const char *err;
    } bad[] = {
        {{"x", "--bogus", NULL}, "unknown option: --bogus"},
        {{"x", "-c", NULL}, "option -c needs a value"},
        {{"x", "--config", NULL}, "option --config needs a value"},
        {{"x", "--config=", NULL}, "option --config needs a value"},
        {{"x", "--set", NULL}, "option --set needs a value"},
        {{"x", "--set", "novalue", NULL}, "--set needs key=value: novalue"},
        {{"x", "--set==v", NULL}, "--set needs key=value: =v"},
        {{"x", "stray", NULL}, "unexpected argument: stray"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char **argv = (char **)bad[i].argv;
        assert_int_equal(kp_cli_parse(argc_of(argv), argv, &cli, err, sizeof err), KP_EINVAL);
        assert_string_equal(err, bad[i].err);
    }

    char *many[2 + 2 * 17 + 1];
    many[0] = "x";
    int n = 1;
    for (int i = 0; i < 17; i++) {
        many[n++] = "--set";
        many[n++] = "a=b";
    }
    many[n] = NULL;
    assert_int_equal(kp_cli_parse(n, many, &cli, err, sizeof err), KP_EINVAL);
    assert_string_equal(err, "too many --set options (max 16)");
}

static void test_from_cli(void **state)
{
    (void)state;
    write_file("db:\n  port: 6000\nname: from-file\n");
    struct kp_cli cli;
    char err[512];
    struct cfg c;

    /* the required key comes from --set; --set wins over the file */
    char *a1[] = {"x", "-c", path, "--set", "db.dsn=host=db", "--set", "name=from-cli", NULL};
    assert_int_equal(kp_cli_parse(argc_of(a1), a1, &cli, err, sizeof err), 0);
    assert_int_equal(kp_config_from_cli(&cli, table, &c, err, sizeof err), 0);
    assert_string_equal(c.dsn, "host=db");
    assert_int_equal(c.port, 6000);
    assert_string_equal(c.name, "from-cli");
    kp_config_fini(table, &c);

    char want[512];
    char *a2[] = {"x", "-c", path, NULL};
    assert_int_equal(kp_cli_parse(argc_of(a2), a2, &cli, err, sizeof err), 0);
    assert_int_equal(kp_config_from_cli(&cli, table, &c, err, sizeof err), KP_ECONFIG);
    snprintf(want, sizeof want, "%s:1: db.dsn: required key missing", path);
    assert_string_equal(err, want);
    assert_defaults(&c);
    kp_config_fini(table, &c);

    char *a3[] = {"x", "--set", "db.dsn=d", NULL};
    assert_int_equal(kp_cli_parse(argc_of(a3), a3, &cli, err, sizeof err), 0);
    assert_int_equal(kp_config_from_cli(&cli, table, &c, err, sizeof err), 0);
    assert_string_equal(c.dsn, "d");
    assert_int_equal(c.port, 5432);
    kp_config_fini(table, &c);

    char *a4[] = {"x", NULL};
    assert_int_equal(kp_cli_parse(argc_of(a4), a4, &cli, err, sizeof err), 0);
    assert_int_equal(kp_config_from_cli(&cli, table, &c, err, sizeof err), KP_ECONFIG);
    assert_string_equal(err, "db.dsn: required key missing");
    kp_config_fini(table, &c);

    char *a5[] = {"x", "-c", path, "--set", "db.dsn=d", "--set", "db.port=x", NULL};
    assert_int_equal(kp_cli_parse(argc_of(a5), a5, &cli, err, sizeof err), 0);
    assert_int_equal(kp_config_from_cli(&cli, table, &c, err, sizeof err), KP_ECONFIG);
    assert_string_equal(err, "--set db.port: expected an integer, got \"x\"");
    assert_defaults(&c);
    kp_config_fini(table, &c);

    char *a6[] = {"x", "--set", "db.user=u", NULL};
    assert_int_equal(kp_cli_parse(argc_of(a6), a6, &cli, err, sizeof err), 0);
    assert_int_equal(kp_config_from_cli(&cli, table, &c, err, sizeof err), KP_ECONFIG);
    assert_string_equal(err, "--set db.user: unknown key");
    kp_config_fini(table, &c);

    /* a bad file is reported as kp_config_load reports it */
    write_file("db.dsn: x\nratio: 2\n");
    char *a7[] = {"x", "-c", path, NULL};
    assert_int_equal(kp_cli_parse(argc_of(a7), a7, &cli, err, sizeof err), 0);
    assert_int_equal(kp_config_from_cli(&cli, table, &c, err, sizeof err), KP_ECONFIG);
    snprintf(want, sizeof want, "%s:2: ratio: 2 is out of range [0, 1]", path);
    assert_string_equal(err, want);
    kp_config_fini(table, &c);
}

static void test_reload(void **state)
{
    (void)state;
    struct cfg live, fresh;
    char err[256];
    bool changed = true;

    write_file("db.dsn: a\ntimeout: 1s\nname: one\ntags: [x]\n");
    assert_int_equal(kp_config_load(path, table, &live, err, sizeof err), 0);

    /* only reloadable keys differ */
    write_file("db.dsn: a\ntimeout: 2s\nname: two\ntags: [y, z]\nratio: 0.75\nlog.verbose: on\n");
    assert_int_equal(kp_config_load(path, table, &fresh, err, sizeof err), 0);
    kp_config_apply_reload(table, &live, &fresh, &changed);
    assert_false(changed);
    kp_config_fini(table, &fresh); /* live owns copies */
    assert_int_equal(live.timeout, 2000);
    assert_string_equal(live.name, "two");
    assert_string_equal(live.tags[0], "y");
    assert_string_equal(live.tags[1], "z");
    assert_null(live.tags[2]);
    assert_true(live.ratio == 0.75);
    assert_true(live.verbose);

    /* non-reloadable keys differ: reported and left alone; reloadable ones still apply */
    write_file("db.dsn: b\ndb.port: 1\npeers: [p]\nmax_batch: 1k\ntimeout: 3s\nname: ~\n");
    assert_int_equal(kp_config_load(path, table, &fresh, err, sizeof err), 0);
    kp_config_apply_reload(table, &live, &fresh, &changed);
    assert_true(changed);
    kp_config_fini(table, &fresh);
    assert_string_equal(live.dsn, "a");
    assert_int_equal(live.port, 5432);
    assert_null(live.peers);
    assert_int_equal(live.max_batch, 4 * 1024 * 1024);
    assert_int_equal(live.timeout, 3000);
    assert_null(live.name);
    assert_string_equal(live.tags[0], "a"); /* back to the default */

    /* nothing differs */
    write_file("db.dsn: a\ntimeout: 3s\nname: ~\nratio: 0.5\n");
    assert_int_equal(kp_config_load(path, table, &fresh, err, sizeof err), 0);
    kp_config_apply_reload(table, &live, &fresh, &changed);
    assert_false(changed);
    kp_config_apply_reload(table, &live, &fresh, NULL);
    kp_config_fini(table, &fresh);
    kp_config_fini(table, &live);
}

static void test_help(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    kp_config_print_help(table, f);
    fclose(f);
    assert_non_null(strstr(buf, "  db.dsn (string, required)\n      PostgreSQL conninfo.\n"));
    assert_non_null(strstr(buf, "  db.port (int) default: 5432 range: [1, 65535]\n      Port.\n"));
    assert_non_null(strstr(buf, "  timeout (duration, reloadable) default: 5s range: [1, 60000] "
                                "ms\n      How long to wait.\n"));
    assert_non_null(strstr(buf, "  tags (list, reloadable) default: a, b\n      Tags.\n"));
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_default, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dotted_keys_and_nulls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_half_applied_file_is_rolled_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_units, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli_parse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_from_cli, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_help, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
