/*
 * kpctl keygen: writes a CURVE key pair for a daemon or an adapter (ARCHITECTURE.md guarantee
 * 5): DIR/NAME.key (the public key, one Z85 line, mode 0644: goes into the collector's or
 * broker's key file) and DIR/NAME.secret (mode 0600, created with that mode: stays on the
 * host of NAME). Refuses to overwrite either. Prints the public key and the paths; the secret
 * key is never printed.
 */
#include <stdio.h>
#include <string.h>

#include "kp_err.h"
#include "kp_keys.h"
#include "kpctl.h"

static int cmd_keygen(int argc, char **argv)
{
    if (argc < 1 || argv[0][0] == '-') {
        fprintf(stderr, "kpctl keygen: missing NAME\n");
        return 2;
    }
    const char *name = argv[0];
    const char *dir = kpctl_arg(argc, argv, "--dir");
    if (!dir)
        dir = ".";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dir") == 0) {
            i++;
            continue;
        }
        fprintf(stderr, "kpctl keygen: unexpected argument \"%s\"\n", argv[i]);
        return 2;
    }
    char pub[KP_KEY_Z85_LEN + 1], sec[KP_KEY_Z85_LEN + 1], err[4200];
    if (kp_keys_keypair(pub, sec) != 0) {
        fprintf(stderr, "kpctl keygen: this libzmq has no CURVE support\n");
        return 1;
    }
    int rc = kp_keys_write(dir, name, pub, sec, err, sizeof err);
    kp_keys_wipe(sec, sizeof sec);
    if (rc != 0) {
        fprintf(stderr, "kpctl keygen: %s\n", err);
        return rc == KP_EINVAL ? 2 : 1;
    }
    printf("public\t%s\n", pub);
    printf("key\t%s/%s.key\n", dir, name);
    printf("secret\t%s/%s.secret\n", dir, name);
    return 0;
}

const struct kpctl_cmd kpctl_cmd_keygen = {
    "keygen",
    "keygen NAME [--dir DIR]",
    "write a CURVE key pair: DIR/NAME.key (public, share it: it goes into the\n"
    "collector's or broker's key file) and DIR/NAME.secret (mode 0600, stays on\n"
    "NAME's host); refuses to overwrite. Prints the public key, never the secret",
    cmd_keygen,
};
