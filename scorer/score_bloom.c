/*
 * score_bloom: the filter of the keys whose records the engine evicted (score_engine.c,
 * "Evicted event records"). A blocked Bloom filter: a key sets K bits inside one 512-bit
 * block (one cache line), so a lookup costs one miss per layer. It grows in layers, each
 * twice the size of the one before, filled to BITS_PER_KEY bits a key; a lookup asks every
 * layer. A "maybe" that is wrong costs the scorer one query; a "no" is always right.
 */
#include "score_internal.h"

#include <stdlib.h>

#include "kp_err.h"

#define BLOCK_WORDS  8  /* 512 bits */
#define K            10 /* bits a key sets in its block */
#define BITS_PER_KEY 32
#define FIRST_BLOCKS 256 /* 16 KiB */

static inline uint64_t mix(uint64_t x)
{
    x ^= x >> 31;
    x *= 0x7FB5D329728EA185ull;
    x ^= x >> 27;
    x *= 0x81DADEF4BC2DD44Dull;
    return x ^ (x >> 33);
}

/* The block of h in a layer, and the K bit positions (9 bits each) from two remixes of h. */
static inline const uint64_t *block(const struct score__bloom_layer *l, uint64_t h)
{
    return &l->bits[(mix(h ^ 0x9E3779B97F4A7C15ull) & l->mask) * BLOCK_WORDS];
}

static inline unsigned bitpos(uint64_t a, uint64_t b, int i)
{
    /* bits 0..53 of a give positions 0..5, bits 0..35 of b positions 6..9 */
    return (unsigned)((i < 6 ? a >> (9 * i) : b >> (9 * (i - 6))) & 511u);
}

void score__bloom_add(struct score__bloom *b, uint64_t h)
{
    struct score__bloom_layer *l = b->n_layers ? &b->layers[b->n_layers - 1] : NULL;
    if (!l || l->n >= l->cap) {
        size_t blocks = l ? (l->mask + 1) * 2 : FIRST_BLOCKS;
        b->layers = kp_xrealloc(b->layers, (b->n_layers + 1) * sizeof *b->layers);
        l = &b->layers[b->n_layers++];
        l->bits = kp_xcalloc(blocks * BLOCK_WORDS, sizeof *l->bits);
        l->mask = blocks - 1;
        l->n = 0;
        l->cap = blocks * BLOCK_WORDS * 64 / BITS_PER_KEY;
    }
    uint64_t *w = (uint64_t *)block(l, h);
    uint64_t x = mix(h), y = mix(h + 0x632BE59BD9B4E019ull);
    for (int i = 0; i < K; i++) {
        unsigned p = bitpos(x, y, i);
        w[p >> 6] |= 1ull << (p & 63);
    }
    l->n++;
    b->n_keys++;
}

bool score__bloom_maybe(const struct score__bloom *b, uint64_t h)
{
    if (!b->n_layers)
        return false;
    uint64_t x = mix(h), y = mix(h + 0x632BE59BD9B4E019ull);
    for (size_t j = b->n_layers; j-- > 0;) { /* the newest (largest) layer first */
        const uint64_t *w = block(&b->layers[j], h);
        int i = 0;
        for (; i < K; i++) {
            unsigned p = bitpos(x, y, i);
            if (!(w[p >> 6] & (1ull << (p & 63))))
                break;
        }
        if (i == K)
            return true;
    }
    return false;
}

size_t score__bloom_bytes(const struct score__bloom *b)
{
    size_t n = b->n_layers * sizeof *b->layers;
    for (size_t j = 0; j < b->n_layers; j++)
        n += (b->layers[j].mask + 1) * BLOCK_WORDS * sizeof(uint64_t);
    return n;
}

void score__bloom_fini(struct score__bloom *b)
{
    for (size_t j = 0; j < b->n_layers; j++)
        free(b->layers[j].bits);
    free(b->layers);
    *b = (struct score__bloom){0};
}
