/*
 * kp_keys: CURVE key pairs and their files, the credentials behind ARCHITECTURE.md guarantee
 * 5 ("only granted sources write"). Every daemon and adapter has one key pair: the public key
 * in NAME.key (one line, 40 Z85 characters; share it freely) and the secret key in
 * NAME.secret (one line, 40 Z85 characters, mode 0600). Reading a secret file refuses one
 * that group or others may access at all, with an error naming the file and the fix; secrets
 * are never written to logs, argv or error messages. `kpctl keygen` writes key files.
 *
 * Thread-safe; the file functions block on the file system.
 */
#ifndef KP_KEYS_H
#define KP_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KP_KEY_Z85_LEN 40 /* a 32-byte CURVE key in Z85 */
#define KP_KEY_BYTES   32

/* A new CURVE key pair (libzmq with libsodium/tweetnacl). pub and sec receive 40 Z85
 * characters and a NUL. Returns 0, or KP_EZMQ when libzmq was built without CURVE. */
int kp_keys_keypair(char pub[KP_KEY_Z85_LEN + 1], char sec[KP_KEY_Z85_LEN + 1]);

/* The public key that belongs to a secret key (both Z85). Returns 0 or KP_EINVAL. */
int kp_keys_public_of(const char *sec, char pub[KP_KEY_Z85_LEN + 1]);

/* True when s is exactly 40 characters of the Z85 alphabet that decode to 32 bytes. */
bool kp_keys_z85_valid(const char *s);
/* Z85 text (40 characters) <-> 32 binary bytes. Return 0 or KP_EINVAL. */
int kp_keys_z85_decode(const char *z85, uint8_t out[KP_KEY_BYTES]);
int kp_keys_z85_encode(const uint8_t key[KP_KEY_BYTES], char out[KP_KEY_Z85_LEN + 1]);

/* Reads a public key file (the first line that is neither empty nor a # comment, trimmed)
 * into out. Returns 0, KP_EIO (unreadable) or KP_EINVAL (not a Z85 key); err says which file
 * and why. */
int kp_keys_read_public(const char *path, char out[KP_KEY_Z85_LEN + 1], char *err, size_t errlen);

/* Reads a secret key file like kp_keys_read_public, after checking that it is a regular file
 * that neither group nor others may read, write or execute (mode 0600 or 0400). Returns 0,
 * KP_EIO, KP_EINVAL, or KP_ECONFIG for a file accessible by group or others (err: "PATH:
 * secret key file is accessible by group or others (mode 0644): chmod 600 PATH"). The key
 * itself never appears in err. Wipe out with kp_keys_wipe() when done. */
int kp_keys_read_secret(const char *path, char out[KP_KEY_Z85_LEN + 1], char *err, size_t errlen);

/* Writes DIR/NAME.key (mode 0644) and DIR/NAME.secret (mode 0600, created with that mode, so
 * the secret is never readable by others even for an instant), refusing to overwrite either
 * (KP_EIO with err "...: File exists"). NAME: 1-64 characters of [A-Za-z0-9._:-]. Returns 0,
 * KP_EINVAL or KP_EIO. On failure nothing is left behind. */
int kp_keys_write(const char *dir, const char *name, const char *pub, const char *sec, char *err,
                  size_t errlen);

/* A daemon's own key pair from its files: the secret from secret_file (kp_keys_read_secret's
 * checks) and the public key derived from it; when public_file is given (not NULL or "") it
 * must hold that same public key, which catches a mismatched pair before any peer does.
 * Returns 0 or KP_E* with err naming the file (never the key). */
int kp_keys_load_pair(const char *secret_file, const char *public_file,
                      char pub[KP_KEY_Z85_LEN + 1], char sec[KP_KEY_Z85_LEN + 1], char *err,
                      size_t errlen);

/* The keys of a CURVE client hop (adapter -> collector, collector/scorer -> broker) from the
 * curve.secret_file, curve.public_file and curve.server_public_file settings: with the
 * secret and the server's public key given, *curve = true and pub/sec/srv are filled (wipe
 * sec after use); with neither, *curve = false, which is accepted only when insecure (err:
 * "CURVE keys are not configured: ... or --insecure"). One without the other, unreadable or
 * group/world-accessible files: KP_E* with err. */
int kp_keys_load_client(const char *secret_file, const char *public_file,
                        const char *server_public_file, bool insecure, char pub[KP_KEY_Z85_LEN + 1],
                        char sec[KP_KEY_Z85_LEN + 1], char srv[KP_KEY_Z85_LEN + 1], bool *curve,
                        char *err, size_t errlen);

/* Overwrites n bytes at p with zeros in a way the compiler may not elide (secrets). */
void kp_keys_wipe(void *p, size_t n);

#endif
