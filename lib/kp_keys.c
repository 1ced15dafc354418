/*
 * kp_keys: CURVE key pairs and key files (see kp_keys.h). A secret file is checked on the
 * descriptor it is read from (fstat after open, no window between check and read) and
 * created with O_EXCL and mode 0600, so a secret never exists with looser permissions. Error
 * messages name files and modes, never key material (ARCHITECTURE.md guarantee 5).
 */
#include "kp_keys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "kp_err.h"
#include "kp_msg.h"

static const char Z85_ALPHABET[] = "0123456789abcdefghijklmnopqrstuvwxyz"
                                   "ABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

void kp_keys_wipe(void *p, size_t n)
{
    volatile unsigned char *v = p;
    while (n--)
        *v++ = 0;
}

bool kp_keys_z85_valid(const char *s)
{
    if (!s || strlen(s) != KP_KEY_Z85_LEN)
        return false;
    for (const char *p = s; *p; p++)
        if (!strchr(Z85_ALPHABET, *p))
            return false;
    uint8_t k[KP_KEY_BYTES];
    bool ok = zmq_z85_decode(k, s) != NULL;
    kp_keys_wipe(k, sizeof k);
    return ok;
}

int kp_keys_z85_decode(const char *z85, uint8_t out[KP_KEY_BYTES])
{
    if (!kp_keys_z85_valid(z85))
        return KP_EINVAL;
    return zmq_z85_decode(out, z85) ? 0 : KP_EINVAL;
}

int kp_keys_z85_encode(const uint8_t key[KP_KEY_BYTES], char out[KP_KEY_Z85_LEN + 1])
{
    return zmq_z85_encode(out, key, KP_KEY_BYTES) ? 0 : KP_EINVAL;
}

int kp_keys_keypair(char pub[KP_KEY_Z85_LEN + 1], char sec[KP_KEY_Z85_LEN + 1])
{
    if (zmq_curve_keypair(pub, sec) != 0)
        return KP_EZMQ; /* ENOTSUP: libzmq without CURVE */
    return 0;
}

int kp_keys_public_of(const char *sec, char pub[KP_KEY_Z85_LEN + 1])
{
    if (!kp_keys_z85_valid(sec))
        return KP_EINVAL;
    return zmq_curve_public(pub, sec) == 0 ? 0 : KP_EINVAL;
}

/* The first non-empty line of buf, trimmed of blanks and the line end, copied into out when
 * it is a Z85 key. No comment syntax: '#' is a Z85 character. */
static int parse_key(const char *buf, char out[KP_KEY_Z85_LEN + 1])
{
    const char *p = buf;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
            p++;
        if (!*p)
            return KP_EINVAL;
        const char *e = p;
        while (*e && *e != '\n' && *e != '\r')
            e++;
        const char *end = e;
        while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if (end == p) {
            p = e;
            continue;
        }
        if ((size_t)(end - p) != KP_KEY_Z85_LEN)
            return KP_EINVAL;
        memcpy(out, p, KP_KEY_Z85_LEN);
        out[KP_KEY_Z85_LEN] = 0;
        if (!kp_keys_z85_valid(out)) {
            kp_keys_wipe(out, KP_KEY_Z85_LEN + 1);
            return KP_EINVAL;
        }
        return 0;
    }
}

/* Reads at most len-1 bytes of fd into buf (NUL-terminated). */
static int read_all(int fd, char *buf, size_t len)
{
    size_t n = 0;
    while (n + 1 < len) {
        ssize_t r = read(fd, buf + n, len - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        n += (size_t)r;
    }
    buf[n] = 0;
    return 0;
}

static int read_key_file(const char *path, bool secret, char out[KP_KEY_Z85_LEN + 1], char *err,
                         size_t errlen)
{
    if (!path || !*path) {
        snprintf(err, errlen, "no key file given");
        return KP_EINVAL;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return KP_EIO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        close(fd);
        return KP_EIO;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        close(fd);
        return KP_EIO;
    }
    if (secret && (st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        snprintf(err, errlen,
                 "%s: secret key file is accessible by group or others (mode %04o): chmod 600 %s",
                 path, (unsigned)(st.st_mode & 07777), path);
        close(fd);
        return KP_ECONFIG;
    }
    char buf[512];
    int rc = read_all(fd, buf, sizeof buf);
    int e = errno;
    close(fd);
    if (rc != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        return KP_EIO;
    }
    rc = parse_key(buf, out);
    kp_keys_wipe(buf, sizeof buf);
    if (rc != 0)
        snprintf(err, errlen, "%s: not a CURVE key (one line of 40 Z85 characters expected)", path);
    return rc;
}

int kp_keys_read_public(const char *path, char out[KP_KEY_Z85_LEN + 1], char *err, size_t errlen)
{
    return read_key_file(path, false, out, err, errlen);
}

int kp_keys_read_secret(const char *path, char out[KP_KEY_Z85_LEN + 1], char *err, size_t errlen)
{
    return read_key_file(path, true, out, err, errlen);
}

/* Creates path exclusively with mode and writes line + "\n". */
static int write_new(const char *path, mode_t mode, const char *line, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return KP_EIO;
    }
    /* The umask may only have narrowed the mode; make it exact (0644 for the public key). */
    char buf[KP_KEY_Z85_LEN + 2];
    size_t n = (size_t)snprintf(buf, sizeof buf, "%s\n", line);
    int rc = 0;
    if (fchmod(fd, mode) != 0)
        rc = KP_EIO;
    size_t off = 0;
    while (rc == 0 && off < n) {
        ssize_t w = write(fd, buf + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            rc = KP_EIO;
        else
            off += (size_t)w;
    }
    if (rc == 0 && fsync(fd) != 0)
        rc = KP_EIO;
    int e = errno;
    kp_keys_wipe(buf, sizeof buf);
    if (close(fd) != 0 && rc == 0) {
        e = errno;
        rc = KP_EIO;
    }
    if (rc != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        unlink(path);
    }
    return rc;
}

int kp_keys_write(const char *dir, const char *name, const char *pub, const char *sec, char *err,
                  size_t errlen)
{
    if (!dir || !name || !kp_code_valid(name, strlen(name))) {
        snprintf(err, errlen, "key name: must be 1-64 characters of [A-Za-z0-9._:-]");
        return KP_EINVAL;
    }
    if (!kp_keys_z85_valid(pub) || !kp_keys_z85_valid(sec)) {
        snprintf(err, errlen, "not a CURVE key pair");
        return KP_EINVAL;
    }
    char kpath[4096], spath[4096];
    if ((size_t)snprintf(kpath, sizeof kpath, "%s/%s.key", dir, name) >= sizeof kpath ||
        (size_t)snprintf(spath, sizeof spath, "%s/%s.secret", dir, name) >= sizeof spath) {
        snprintf(err, errlen, "%s: path too long", dir);
        return KP_EINVAL;
    }
    /* Refuse before writing anything when either exists. */
    struct stat st;
    if (lstat(kpath, &st) == 0 || lstat(spath, &st) == 0) {
        snprintf(err, errlen, "%s: %s", lstat(kpath, &st) == 0 ? kpath : spath, strerror(EEXIST));
        return KP_EIO;
    }
    int rc = write_new(spath, 0600, sec, err, errlen);
    if (rc != 0)
        return rc;
    rc = write_new(kpath, 0644, pub, err, errlen);
    if (rc != 0)
        unlink(spath);
    return rc;
}

int kp_keys_load_pair(const char *secret_file, const char *public_file,
                      char pub[KP_KEY_Z85_LEN + 1], char sec[KP_KEY_Z85_LEN + 1], char *err,
                      size_t errlen)
{
    int rc = kp_keys_read_secret(secret_file, sec, err, errlen);
    if (rc)
        return rc;
    if (kp_keys_public_of(sec, pub) != 0) {
        kp_keys_wipe(sec, KP_KEY_Z85_LEN + 1);
        snprintf(err, errlen, "%s: not a CURVE secret key", secret_file);
        return KP_EINVAL;
    }
    if (public_file && *public_file) {
        char want[KP_KEY_Z85_LEN + 1];
        rc = kp_keys_read_public(public_file, want, err, errlen);
        if (rc == 0 && strcmp(want, pub) != 0) {
            snprintf(err, errlen, "%s: is not the public key of the secret key in %s", public_file,
                     secret_file);
            rc = KP_ECONFIG;
        }
        if (rc) {
            kp_keys_wipe(sec, KP_KEY_Z85_LEN + 1);
            return rc;
        }
    }
    return 0;
}

static bool given(const char *s)
{
    return s && *s;
}

int kp_keys_load_client(const char *secret_file, const char *public_file,
                        const char *server_public_file, bool insecure, char pub[KP_KEY_Z85_LEN + 1],
                        char sec[KP_KEY_Z85_LEN + 1], char srv[KP_KEY_Z85_LEN + 1], bool *curve,
                        char *err, size_t errlen)
{
    *curve = false;
    bool own = given(secret_file), server = given(server_public_file);
    if (!own && !server) {
        if (insecure)
            return 0;
        snprintf(err, errlen,
                 "CURVE keys are not configured: set curve.secret_file and "
                 "curve.server_public_file (kpctl keygen), or insecure: true / --insecure for "
                 "plain TCP (local tests only)");
        return KP_ECONFIG;
    }
    if (!own || !server) {
        snprintf(err, errlen, "%s: required with %s",
                 own ? "curve.server_public_file" : "curve.secret_file",
                 own ? "curve.secret_file" : "curve.server_public_file");
        return KP_ECONFIG;
    }
    int rc = kp_keys_load_pair(secret_file, public_file, pub, sec, err, errlen);
    if (rc)
        return rc;
    rc = kp_keys_read_public(server_public_file, srv, err, errlen);
    if (rc) {
        kp_keys_wipe(sec, KP_KEY_Z85_LEN + 1);
        return rc;
    }
    *curve = true;
    return 0;
}
