/* Double SHA-256: a portable C99 compression function and an x86 SHA-NI one, chosen per
 * call by the backend selector (see sha256d.h). FIPS 180-4 section 6.2.
 *
 * The nonce scanner hashes the first 64 header bytes once (the "midstate"); each nonce then
 * costs two compressions: the header's second block (12 fixed bytes, the nonce, constant
 * padding) and the 32-byte second hash (one block, constant padding). */
#include "sha256d.h"

#include <string.h>

/* -DGP_NO_SHANI builds the portable path alone, as on other architectures (for tests). */
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(GP_NO_SHANI)
#define GP_HAVE_SHANI 1
#include <cpuid.h>
#include <immintrin.h>
#else
#define GP_HAVE_SHANI 0
#endif

#if GP_HAVE_SHANI
#define GP_ALIGN16 __attribute__((aligned(16)))
#else
#define GP_ALIGN16
#endif

static const uint32_t K256[64] GP_ALIGN16 = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static const uint32_t IV256[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

/* Bit lengths of the two fixed-size messages the scanner pads: 80-byte header, 32-byte hash. */
#define HEADER_BITS 640u
#define HASH_BITS 256u
#define PAD_WORD 0x80000000u
#define NONCE_SPACE ((uint64_t)UINT32_MAX + 1u)

typedef void (*compress_fn)(uint32_t state[8], const uint8_t *blocks, size_t nblocks);

/* ---- byte order helpers (byte-wise: no alignment or aliasing assumptions) ---- */

static uint32_t load_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static uint32_t load_le32(const uint8_t *p)
{
    return ((uint32_t)p[3] << 24) | ((uint32_t)p[2] << 16) | ((uint32_t)p[1] << 8) | p[0];
}

static void store_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t bswap32(uint32_t v)
{
    return (v >> 24) | ((v >> 8) & 0xff00u) | ((v << 8) & 0xff0000u) | (v << 24);
}

static void state_to_digest(const uint32_t state[8], uint8_t out32[32])
{
    for (int i = 0; i < 8; i++)
        store_be32(out32 + 4 * i, state[i]);
}

/* Compare two 256-bit little-endian integers: <0, 0, >0 like memcmp. */
static int le256_cmp(const uint8_t a[32], const uint8_t b[32])
{
    for (int i = 31; i >= 0; i--) {
        if (a[i] != b[i])
            return a[i] < b[i] ? -1 : 1;
    }
    return 0;
}

/* Nonces actually scanned: [start, start + count) clipped at 2^32 - 1 (no wrap-around). */
static uint64_t scan_end(uint32_t start, uint64_t count)
{
    uint64_t room = NONCE_SPACE - start;
    return (uint64_t)start + (count < room ? count : room);
}

/* ---- portable C99 compression ---- */

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
#define CH(x, y, z) ((z) ^ ((x) & ((y) ^ (z))))
#define MAJ(x, y, z) (((x) & (y)) | ((z) & ((x) | (y))))
#define BSIG0(x) (ROTR(x, 2) ^ ROTR(x, 13) ^ ROTR(x, 22))
#define BSIG1(x) (ROTR(x, 6) ^ ROTR(x, 11) ^ ROTR(x, 25))
#define SSIG0(x) (ROTR(x, 7) ^ ROTR(x, 18) ^ ((x) >> 3))
#define SSIG1(x) (ROTR(x, 17) ^ ROTR(x, 19) ^ ((x) >> 10))

static void portable_compress_words(uint32_t state[8], const uint32_t words[16])
{
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = words[i];
    for (int i = 16; i < 64; i++)
        w[i] = SSIG1(w[i - 2]) + w[i - 7] + SSIG0(w[i - 15]) + w[i - 16];

    uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
    uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + BSIG1(e) + CH(e, f, g) + K256[i] + w[i];
        uint32_t t2 = BSIG0(a) + MAJ(a, b, c);
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
    state[4] += e;
    state[5] += f;
    state[6] += g;
    state[7] += h;
}

static void portable_compress_blocks(uint32_t state[8], const uint8_t *blocks, size_t nblocks)
{
    for (size_t blk = 0; blk < nblocks; blk++) {
        uint32_t words[16];
        for (int i = 0; i < 16; i++)
            words[i] = load_be32(blocks + 64 * blk + 4 * i);
        portable_compress_words(state, words);
    }
}

static int64_t portable_scan(const uint8_t header80[80], uint32_t start, uint64_t end,
                             const uint8_t target32_le[32])
{
    uint32_t mid[8];
    memcpy(mid, IV256, sizeof mid);
    portable_compress_blocks(mid, header80, 1);

    /* Second header block and second-hash block with their constant padding built once. */
    uint32_t block2[16] = {0}, hash_block[16] = {0};
    for (int i = 0; i < 3; i++)
        block2[i] = load_be32(header80 + 64 + 4 * i);
    block2[4] = PAD_WORD;
    block2[15] = HEADER_BITS;
    hash_block[8] = PAD_WORD;
    hash_block[15] = HASH_BITS;
    const uint32_t target_top = load_le32(target32_le + 28);

    for (uint64_t nonce = start; nonce < end; nonce++) {
        uint32_t state[8];
        memcpy(state, mid, sizeof state);
        block2[3] = bswap32((uint32_t)nonce); /* header stores the nonce little-endian */
        portable_compress_words(state, block2);
        memcpy(hash_block, state, sizeof state);
        memcpy(state, IV256, sizeof state);
        portable_compress_words(state, hash_block);
        /* The hash's top 32 bits (as a little-endian integer) reject almost every nonce. */
        if (bswap32(state[7]) <= target_top) {
            uint8_t digest[32];
            state_to_digest(state, digest);
            if (le256_cmp(digest, target32_le) <= 0)
                return (int64_t)nonce;
        }
    }
    return -1;
}

/* ---- x86 SHA-NI compression ----
 * The state lives in two registers in the order the instructions want: ABEF = lanes
 * (F, E, B, A) and CDGH = lanes (H, G, D, C). Message registers hold four big-endian words,
 * lane i = W[4k + i]. */

#if GP_HAVE_SHANI
#define SHANI_FN __attribute__((target("sha,sse4.1")))

static int g_shani_available; /* written once by the load-time constructor, then read-only */

__attribute__((constructor)) static void detect_shani(void)
{
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx))
        return;
    int sse41 = (ecx >> 19) & 1, ssse3 = (ecx >> 9) & 1;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx))
        return;
    g_shani_available = sse41 && ssse3 && ((ebx >> 29) & 1);
}

/* Two rounds per sha256rnds2: lanes 0-1 of wk, then lanes 2-3 after the shuffle. */
#define RND4(s0, s1, w, k)                                                                   \
    do {                                                                                     \
        __m128i wk_ = _mm_add_epi32((w), _mm_load_si128((const __m128i *)(K256 + (k))));     \
        s1 = _mm_sha256rnds2_epu32(s1, s0, wk_);                                             \
        s0 = _mm_sha256rnds2_epu32(s0, s1, _mm_shuffle_epi32(wk_, 0x0E));                    \
    } while (0)

/* W[i..i+3] from w0 = W[i-16..], w1 = W[i-12..], w2 = W[i-8..], w3 = W[i-4..i-1]. */
#define SCHED(w0, w1, w2, w3)                                                                \
    _mm_sha256msg2_epu32(                                                                    \
        _mm_add_epi32(_mm_sha256msg1_epu32(w0, w1), _mm_alignr_epi8(w3, w2, 4)), w3)

/* Rounds 4..63 (quads 1..15) on state s0/s1 given message quads w0..w3 (rounds 0..3 done
 * by the caller so the scanner can precompute its first two rounds). */
#define ROUNDS_4_TO_63(s0, s1, w0, w1, w2, w3)                                               \
    do {                                                                                     \
        RND4(s0, s1, w1, 4);                                                                 \
        RND4(s0, s1, w2, 8);                                                                 \
        RND4(s0, s1, w3, 12);                                                                \
        for (int q_ = 16; q_ < 64; q_ += 16) {                                               \
            w0 = SCHED(w0, w1, w2, w3);                                                      \
            RND4(s0, s1, w0, q_);                                                            \
            w1 = SCHED(w1, w2, w3, w0);                                                      \
            RND4(s0, s1, w1, q_ + 4);                                                        \
            w2 = SCHED(w2, w3, w0, w1);                                                      \
            RND4(s0, s1, w2, q_ + 8);                                                        \
            w3 = SCHED(w3, w0, w1, w2);                                                      \
            RND4(s0, s1, w3, q_ + 12);                                                       \
        }                                                                                    \
    } while (0)

/* The same, for two independent hashes interleaved to hide the instruction latency.
 * Without the barrier (an empty asm that emits nothing but ties both chains to one point)
 * GCC 12 may schedule one hash entirely before the other, which costs ~40% throughput. */
#define INTERLEAVE_BARRIER(a0, a1, b0, b1) __asm__("" : "+x"(a0), "+x"(a1), "+x"(b0), "+x"(b1))
#define RND4_X2(a0, a1, wa, b0, b1, wb, k)                                                   \
    do {                                                                                     \
        const __m128i k_ = _mm_load_si128((const __m128i *)(K256 + (k)));                    \
        __m128i wka_ = _mm_add_epi32((wa), k_), wkb_ = _mm_add_epi32((wb), k_);              \
        a1 = _mm_sha256rnds2_epu32(a1, a0, wka_);                                            \
        b1 = _mm_sha256rnds2_epu32(b1, b0, wkb_);                                            \
        a0 = _mm_sha256rnds2_epu32(a0, a1, _mm_shuffle_epi32(wka_, 0x0E));                   \
        b0 = _mm_sha256rnds2_epu32(b0, b1, _mm_shuffle_epi32(wkb_, 0x0E));                   \
        INTERLEAVE_BARRIER(a0, a1, b0, b1);                                                  \
    } while (0)

#define ROUNDS_4_TO_63_X2(a0, a1, wa0, wa1, wa2, wa3, b0, b1, wb0, wb1, wb2, wb3)            \
    do {                                                                                     \
        RND4_X2(a0, a1, wa1, b0, b1, wb1, 4);                                                \
        RND4_X2(a0, a1, wa2, b0, b1, wb2, 8);                                                \
        RND4_X2(a0, a1, wa3, b0, b1, wb3, 12);                                               \
        for (int q_ = 16; q_ < 64; q_ += 16) {                                               \
            wa0 = SCHED(wa0, wa1, wa2, wa3);                                                 \
            wb0 = SCHED(wb0, wb1, wb2, wb3);                                                 \
            RND4_X2(a0, a1, wa0, b0, b1, wb0, q_);                                           \
            wa1 = SCHED(wa1, wa2, wa3, wa0);                                                 \
            wb1 = SCHED(wb1, wb2, wb3, wb0);                                                 \
            RND4_X2(a0, a1, wa1, b0, b1, wb1, q_ + 4);                                       \
            wa2 = SCHED(wa2, wa3, wa0, wa1);                                                 \
            wb2 = SCHED(wb2, wb3, wb0, wb1);                                                 \
            RND4_X2(a0, a1, wa2, b0, b1, wb2, q_ + 8);                                       \
            wa3 = SCHED(wa3, wa0, wa1, wa2);                                                 \
            wb3 = SCHED(wb3, wb0, wb1, wb2);                                                 \
            RND4_X2(a0, a1, wa3, b0, b1, wb3, q_ + 12);                                      \
        }                                                                                    \
    } while (0)

SHANI_FN static inline __m128i shani_load_be(const uint8_t *p)
{
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
    return _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(const void *)p), bswap);
}

/* uint32 state[8] (A..H) <-> ABEF/CDGH registers. */
SHANI_FN static inline void shani_state_in(const uint32_t st[8], __m128i *abef, __m128i *cdgh)
{
    __m128i abcd = _mm_loadu_si128((const __m128i *)(const void *)st);
    __m128i efgh = _mm_loadu_si128((const __m128i *)(const void *)(st + 4));
    __m128i badc = _mm_shuffle_epi32(abcd, 0xB1);
    __m128i hgfe = _mm_shuffle_epi32(efgh, 0x1B);
    *abef = _mm_alignr_epi8(badc, hgfe, 8);
    *cdgh = _mm_blend_epi16(hgfe, badc, 0xF0);
}

/* ABEF/CDGH -> (A, B, C, D) and (E, F, G, H) lanes: the digest as message words. */
SHANI_FN static inline void shani_state_out(__m128i abef, __m128i cdgh, __m128i *abcd,
                                            __m128i *efgh)
{
    __m128i abef_r = _mm_shuffle_epi32(abef, 0x1B);
    __m128i cdgh_r = _mm_shuffle_epi32(cdgh, 0xB1);
    *abcd = _mm_blend_epi16(abef_r, cdgh_r, 0xF0);
    *efgh = _mm_alignr_epi8(cdgh_r, abef_r, 8);
}

SHANI_FN static void shani_compress_blocks(uint32_t state[8], const uint8_t *blocks,
                                           size_t nblocks)
{
    __m128i abef, cdgh;
    shani_state_in(state, &abef, &cdgh);
    for (size_t blk = 0; blk < nblocks; blk++) {
        const uint8_t *p = blocks + 64 * blk;
        __m128i w0 = shani_load_be(p), w1 = shani_load_be(p + 16);
        __m128i w2 = shani_load_be(p + 32), w3 = shani_load_be(p + 48);
        __m128i s0 = abef, s1 = cdgh;
        RND4(s0, s1, w0, 0);
        ROUNDS_4_TO_63(s0, s1, w0, w1, w2, w3);
        abef = _mm_add_epi32(abef, s0);
        cdgh = _mm_add_epi32(cdgh, s1);
    }
    __m128i abcd, efgh;
    shani_state_out(abef, cdgh, &abcd, &efgh);
    _mm_storeu_si128((__m128i *)(void *)state, abcd);
    _mm_storeu_si128((__m128i *)(void *)(state + 4), efgh);
}

/* The SHA-256 initial state in ABEF/CDGH layout. */
SHANI_FN static inline void shani_iv(__m128i *abef, __m128i *cdgh)
{
    *abef = _mm_set_epi32(0x6a09e667, (int)0xbb67ae85, 0x510e527f, (int)0x9b05688c);
    *cdgh = _mm_set_epi32(0x3c6ef372, (int)0xa54ff53a, 0x1f83d9ab, 0x5be0cd19);
}

/* SHA-256 of a 32-byte message held as message words (A..D), (E..H): one block with
 * constant padding. Returns the final state (IV added) in ABEF/CDGH layout. */
SHANI_FN static inline void shani_hash_digest(__m128i w0, __m128i w1, __m128i *abef,
                                              __m128i *cdgh)
{
    __m128i w2 = _mm_set_epi32(0, 0, 0, (int)PAD_WORD), w3 = _mm_set_epi32(HASH_BITS, 0, 0, 0);
    __m128i iv0, iv1;
    shani_iv(&iv0, &iv1);
    __m128i s0 = iv0, s1 = iv1;
    RND4(s0, s1, w0, 0);
    ROUNDS_4_TO_63(s0, s1, w0, w1, w2, w3);
    *abef = _mm_add_epi32(s0, iv0);
    *cdgh = _mm_add_epi32(s1, iv1);
}

SHANI_FN static inline void shani_store_digest(__m128i abef, __m128i cdgh, uint8_t out32[32])
{
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
    __m128i abcd, efgh;
    shani_state_out(abef, cdgh, &abcd, &efgh);
    _mm_storeu_si128((__m128i *)(void *)out32, _mm_shuffle_epi8(abcd, bswap));
    _mm_storeu_si128((__m128i *)(void *)(out32 + 16), _mm_shuffle_epi8(efgh, bswap));
}

/* sha256d of an 80-byte header with the state in registers throughout: three compressions,
 * the padding of both messages fixed at compile time. */
SHANI_FN static void shani_sha256d_80(const uint8_t header80[80], uint8_t out32[32])
{
    __m128i iv0, iv1, s0, s1;
    shani_iv(&iv0, &iv1);
    __m128i w0 = shani_load_be(header80), w1 = shani_load_be(header80 + 16);
    __m128i w2 = shani_load_be(header80 + 32), w3 = shani_load_be(header80 + 48);
    s0 = iv0;
    s1 = iv1;
    RND4(s0, s1, w0, 0);
    ROUNDS_4_TO_63(s0, s1, w0, w1, w2, w3);
    const __m128i mid0 = _mm_add_epi32(s0, iv0), mid1 = _mm_add_epi32(s1, iv1);

    w0 = shani_load_be(header80 + 64);
    w1 = _mm_set_epi32(0, 0, 0, (int)PAD_WORD);
    w2 = _mm_setzero_si128();
    w3 = _mm_set_epi32(HEADER_BITS, 0, 0, 0);
    s0 = mid0;
    s1 = mid1;
    RND4(s0, s1, w0, 0);
    ROUNDS_4_TO_63(s0, s1, w0, w1, w2, w3);
    shani_state_out(_mm_add_epi32(s0, mid0), _mm_add_epi32(s1, mid1), &w0, &w1);
    shani_hash_digest(w0, w1, &s0, &s1);
    shani_store_digest(s0, s1, out32);
}

/* Per-header constants of a scan, all in registers' layout. */
typedef struct {
    __m128i mid_abef, mid_cdgh; /* state after the first 64 header bytes */
    __m128i r01_abef;           /* block 2: ABEF after rounds 0-1 (nonce-independent) */
    __m128i w0_base;            /* block 2: W0..W2 = header bytes 64..75, W3 = nonce slot */
    const uint8_t *target32_le;
    uint32_t target_top;        /* top 32 bits of the target, for the quick reject */
} shani_scan_ctx;

SHANI_FN static void shani_scan_init(shani_scan_ctx *ctx, const uint8_t header80[80],
                                     const uint8_t target32_le[32])
{
    uint32_t mid[8];
    memcpy(mid, IV256, sizeof mid);
    shani_compress_blocks(mid, header80, 1);
    shani_state_in(mid, &ctx->mid_abef, &ctx->mid_cdgh);
    uint8_t tail[16] = {0};
    memcpy(tail, header80 + 64, 12);
    ctx->w0_base = shani_load_be(tail);
    /* Rounds 0-1 read only W0, W1 (lanes 0-1), which every nonce shares. */
    __m128i wk = _mm_add_epi32(ctx->w0_base, _mm_load_si128((const __m128i *)K256));
    ctx->r01_abef = _mm_sha256rnds2_epu32(ctx->mid_cdgh, ctx->mid_abef, wk);
    ctx->target32_le = target32_le;
    ctx->target_top = load_le32(target32_le + 28);
}

/* Block 2 message words for a nonce (stored little-endian in the header, so W3 is its
 * byte swap) and rounds 2-3, the first that read it, from the precomputed state. */
#define BLOCK2_START(s0, s1, w0, w1, w2, w3, ctx, nonce)                                     \
    do {                                                                                     \
        w0 = _mm_insert_epi32((ctx)->w0_base, (int)bswap32(nonce), 3);                       \
        w1 = _mm_set_epi32(0, 0, 0, (int)PAD_WORD);                                          \
        w2 = _mm_setzero_si128();                                                            \
        w3 = _mm_set_epi32((int)HEADER_BITS, 0, 0, 0);                                       \
        __m128i wk_ = _mm_add_epi32(w0, _mm_load_si128((const __m128i *)K256));              \
        s1 = (ctx)->r01_abef;                                                                \
        s0 = _mm_sha256rnds2_epu32((ctx)->mid_abef, s1, _mm_shuffle_epi32(wk_, 0x0E));       \
    } while (0)

/* Top 32 bits of the hash as a little-endian integer: bswap(H7); H is lane 0 of CDGH. */
#define HASH_TOP(cdgh) bswap32((uint32_t)_mm_cvtsi128_si32(cdgh))

/* Does the final state abef/cdgh hash <= target? Almost always decided by the top word. */
SHANI_FN static inline int shani_meets_target(__m128i abef, __m128i cdgh,
                                              const shani_scan_ctx *ctx)
{
    if (HASH_TOP(cdgh) > ctx->target_top)
        return 0;
    uint8_t digest[32];
    shani_store_digest(abef, cdgh, digest);
    return le256_cmp(digest, ctx->target32_le) <= 0;
}

/* One nonce: 1 if it meets the target. */
SHANI_FN static int shani_try_one(const shani_scan_ctx *ctx, uint32_t nonce)
{
    __m128i s0, s1, w0, w1, w2, w3;
    BLOCK2_START(s0, s1, w0, w1, w2, w3, ctx, nonce);
    ROUNDS_4_TO_63(s0, s1, w0, w1, w2, w3);
    shani_state_out(_mm_add_epi32(s0, ctx->mid_abef), _mm_add_epi32(s1, ctx->mid_cdgh), &w0,
                    &w1);
    shani_hash_digest(w0, w1, &s0, &s1);
    return shani_meets_target(s0, s1, ctx);
}

/* Nonces n and n + 1 interleaved: 0 if neither meets the target, 1 if n does, else 2. */
SHANI_FN static int shani_try_pair(const shani_scan_ctx *ctx, uint32_t nonce)
{
    __m128i a0, a1, wa0, wa1, wa2, wa3, b0, b1, wb0, wb1, wb2, wb3;
    BLOCK2_START(a0, a1, wa0, wa1, wa2, wa3, ctx, nonce);
    BLOCK2_START(b0, b1, wb0, wb1, wb2, wb3, ctx, nonce + 1u);
    ROUNDS_4_TO_63_X2(a0, a1, wa0, wa1, wa2, wa3, b0, b1, wb0, wb1, wb2, wb3);
    shani_state_out(_mm_add_epi32(a0, ctx->mid_abef), _mm_add_epi32(a1, ctx->mid_cdgh), &wa0,
                    &wa1);
    shani_state_out(_mm_add_epi32(b0, ctx->mid_abef), _mm_add_epi32(b1, ctx->mid_cdgh), &wb0,
                    &wb1);
    /* Second hash: the 32-byte digest plus constant padding is one block. */
    __m128i iv0, iv1;
    shani_iv(&iv0, &iv1);
    wa2 = wb2 = _mm_set_epi32(0, 0, 0, (int)PAD_WORD);
    wa3 = wb3 = _mm_set_epi32((int)HASH_BITS, 0, 0, 0);
    a0 = b0 = iv0;
    a1 = b1 = iv1;
    RND4_X2(a0, a1, wa0, b0, b1, wb0, 0);
    ROUNDS_4_TO_63_X2(a0, a1, wa0, wa1, wa2, wa3, b0, b1, wb0, wb1, wb2, wb3);
    if (shani_meets_target(_mm_add_epi32(a0, iv0), _mm_add_epi32(a1, iv1), ctx))
        return 1;
    return shani_meets_target(_mm_add_epi32(b0, iv0), _mm_add_epi32(b1, iv1), ctx) ? 2 : 0;
}

SHANI_FN static int64_t shani_scan(const uint8_t header80[80], uint32_t start, uint64_t end,
                                   const uint8_t target32_le[32])
{
    shani_scan_ctx ctx;
    shani_scan_init(&ctx, header80, target32_le);
    uint64_t nonce = start;
    for (; nonce + 1 < end; nonce += 2) {
        int hit = shani_try_pair(&ctx, (uint32_t)nonce);
        if (hit)
            return (int64_t)nonce + hit - 1;
    }
    if (nonce < end && shani_try_one(&ctx, (uint32_t)nonce)) /* odd count: the last alone */
        return (int64_t)nonce;
    return -1;
}
#endif /* GP_HAVE_SHANI */

/* ---- public API ---- */

int gp_shani_available(void)
{
#if GP_HAVE_SHANI
    return g_shani_available;
#else
    return 0;
#endif
}

#if GP_HAVE_SHANI
static int use_shani(int backend)
{
    return backend == GP_BACKEND_SHANI && g_shani_available;
}
#endif

static compress_fn pick_compress(int backend)
{
#if GP_HAVE_SHANI
    if (use_shani(backend))
        return shani_compress_blocks;
#else
    (void)backend;
#endif
    return portable_compress_blocks;
}

static void sha256_with(compress_fn compress, const uint8_t *data, size_t len, uint8_t out32[32])
{
    uint32_t state[8];
    memcpy(state, IV256, sizeof state);
    size_t full_blocks = len / 64, rest = len % 64;
    if (full_blocks > 0)
        compress(state, data, full_blocks);

    /* Final 1 or 2 blocks: the remaining bytes, 0x80, zeros, 64-bit big-endian bit length. */
    uint8_t tail[128] = {0};
    if (rest > 0)
        memcpy(tail, data + 64 * full_blocks, rest);
    tail[rest] = 0x80;
    size_t tail_blocks = rest < 56 ? 1 : 2;
    uint64_t bit_len = (uint64_t)len << 3; /* mod 2^64, as FIPS 180-4 defines */
    uint8_t *len_at = tail + 64 * tail_blocks - 8;
    store_be32(len_at, (uint32_t)(bit_len >> 32));
    store_be32(len_at + 4, (uint32_t)bit_len);
    compress(state, tail, tail_blocks);
    state_to_digest(state, out32);
}

static void sha256d_with(compress_fn compress, const uint8_t *data, size_t len,
                         uint8_t out32[32])
{
    uint8_t first[32];
    sha256_with(compress, data, len, first);
    sha256_with(compress, first, sizeof first, out32);
}

static void sha256d_80(int backend, const uint8_t header80[80], uint8_t out32[32])
{
#if GP_HAVE_SHANI
    if (use_shani(backend)) {
        shani_sha256d_80(header80, out32);
        return;
    }
#endif
    sha256d_with(pick_compress(backend), header80, 80, out32);
}

void gp_sha256d(int backend, const uint8_t *data, size_t len, uint8_t out32[32])
{
    if (len == 80)
        sha256d_80(backend, data, out32);
    else
        sha256d_with(pick_compress(backend), data, len, out32);
}

int gp_check_header(int backend, const uint8_t header80[80], const uint8_t target32_le[32],
                    uint8_t hash_out32[32])
{
    sha256d_80(backend, header80, hash_out32);
    return le256_cmp(hash_out32, target32_le) <= 0;
}

void gp_check_headers(int backend, const uint8_t *headers, size_t n,
                      const uint8_t target32_le[32], uint8_t *hashes_out, uint8_t *ok_out)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t *hash = hashes_out + 32 * i;
        sha256d_80(backend, headers + 80 * i, hash);
        ok_out[i] = (uint8_t)(le256_cmp(hash, target32_le) <= 0);
    }
}

int64_t gp_scan(int backend, const uint8_t header80[80], uint32_t start_nonce, uint64_t count,
                const uint8_t target32_le[32])
{
    uint64_t end = scan_end(start_nonce, count);
#if GP_HAVE_SHANI
    if (use_shani(backend))
        return shani_scan(header80, start_nonce, end, target32_le);
#else
    (void)backend;
#endif
    return portable_scan(header80, start_nonce, end, target32_le);
}
