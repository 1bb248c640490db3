/* Stand-alone check of sha256d.c, meant to be built with sanitizers:
 *   cc -std=c99 -g -O1 -fsanitize=address,undefined -fno-sanitize-recover=all \
 *      -Inative native/selftest.c native/sha256d.c -o selftest && ./selftest
 * tests/test_hashing.py does exactly that, also with -DGP_NO_SHANI (the portable-only build
 * other architectures get). It walks every code path (all message lengths around the padding
 * boundaries, NULL with length 0, scans of every parity and at the top of the nonce range)
 * and checks that the backends agree and match known digests.
 * Prints "ok (backends checked: N)" and exits 0, or names each failure and exits 1. */
#include "sha256d.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

static void fail(const char *what, long detail)
{
    fprintf(stderr, "FAIL: %s (%ld)\n", what, detail);
    failures++;
}

static void hex_to_bytes(const char *hex, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned int byte;
        if (sscanf(hex + 2 * i, "%2x", &byte) != 1)
            abort();
        out[i] = (uint8_t)byte;
    }
}

/* A deterministic byte stream (xorshift32) for inputs. */
static void fill(uint8_t *buf, size_t n, uint32_t seed)
{
    uint32_t x = seed ? seed : 1u;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        buf[i] = (uint8_t)x;
    }
}

static int n_backends(void)
{
    return gp_shani_available() ? 2 : 1;
}

static void check_known_digests(void)
{
    /* sha256d("abc") and the mainnet genesis header hash (internal byte order). */
    static const char abc_d[] = "4f8b42c22dd3729b519ba6f68d2da7cc5b2d606d05daed5ad5128cc03e6c6358";
    static const char genesis[] =
        "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12"
        "b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c";
    static const char genesis_hash_le[] =
        "6fe28c0ab6f1b372c1a6a246ae63f74f931e8365e15a089c68d6190000000000";
    uint8_t want[32], got[32], header[80], target[32];
    hex_to_bytes(genesis, header, 80);
    for (int b = 0; b < n_backends(); b++) {
        hex_to_bytes(abc_d, want, 32);
        gp_sha256d(b, (const uint8_t *)"abc", 3, got);
        if (memcmp(want, got, 32) != 0)
            fail("sha256d(abc)", b);
        hex_to_bytes(genesis_hash_le, want, 32);
        memcpy(target, want, 32);
        if (gp_check_header(b, header, target, got) != 1 || memcmp(want, got, 32) != 0)
            fail("genesis check_header at its own hash", b);
        target[0]--; /* hash - 1: the low byte is 0x6f, so no borrow */
        if (gp_check_header(b, header, target, got) != 0)
            fail("genesis check_header below its hash", b);
        if (gp_scan(b, header, 2083236893u - 7u, 15, want) != 2083236893)
            fail("genesis scan", b);
    }
}

static void check_lengths(void)
{
    uint8_t data[300], ref[32], got[32];
    uint8_t zero_ref[32];
    gp_sha256d(GP_BACKEND_PORTABLE, NULL, 0, zero_ref);
    for (size_t len = 0; len <= sizeof data; len++) {
        uint8_t *exact = malloc(len ? len : 1); /* exact size, so ASan sees any over-read */
        if (exact == NULL)
            abort();
        fill(data, len, (uint32_t)len + 7u);
        if (len)
            memcpy(exact, data, len);
        gp_sha256d(GP_BACKEND_PORTABLE, exact, len, ref);
        for (int b = 1; b < n_backends(); b++) {
            gp_sha256d(b, exact, len, got);
            if (memcmp(ref, got, 32) != 0)
                fail("sha256d backends differ at length", (long)len);
        }
        free(exact);
    }
    for (int b = 0; b < n_backends(); b++) {
        gp_sha256d(b, NULL, 0, got);
        if (memcmp(zero_ref, got, 32) != 0)
            fail("sha256d(NULL, 0)", b);
    }
}

static void check_batch(void)
{
    enum { N = 17 };
    uint8_t *headers = malloc(N * 80), *hashes = malloc(N * 32), *ok = malloc(N);
    uint8_t target[32], one[32];
    if (!headers || !hashes || !ok)
        abort();
    fill(headers, N * 80, 99);
    memset(target, 0xff, sizeof target);
    target[31] = 0x7f; /* about half of random hashes pass */
    for (int b = 0; b < n_backends(); b++) {
        gp_check_headers(b, headers, N, target, hashes, ok);
        for (int i = 0; i < N; i++) {
            int want_ok = gp_check_header(b, headers + 80 * i, target, one);
            if (want_ok != ok[i] || memcmp(one, hashes + 32 * i, 32) != 0)
                fail("check_headers differs from check_header at", i);
        }
    }
    gp_check_headers(GP_BACKEND_PORTABLE, headers, 0, target, hashes, ok);
    free(headers);
    free(hashes);
    free(ok);
}

static void check_scans(void)
{
    uint8_t header[80], easy[32], none[32];
    memset(easy, 0xff, sizeof easy);
    easy[31] = 0x0f; /* about 1 nonce in 16 */
    memset(none, 0, sizeof none);
    for (uint32_t seed = 1; seed <= 40; seed++) {
        fill(header, sizeof header, seed);
        uint32_t start = seed * 2654435761u;
        uint64_t count = seed % 5; /* 0..4: both parities, and empty */
        int64_t want = gp_scan(GP_BACKEND_PORTABLE, header, start, count + 40, easy);
        for (int b = 1; b < n_backends(); b++) {
            if (gp_scan(b, header, start, count + 40, easy) != want)
                fail("scan backends differ, seed", (long)seed);
            if (gp_scan(b, header, start, count, none) != -1)
                fail("scan with zero target found a nonce, seed", (long)seed);
        }
        for (int b = 0; b < n_backends(); b++) {
            /* At the top of the range a huge count must stop at 0xFFFFFFFF, not wrap to 0. */
            uint32_t near_top = UINT32_MAX - (uint32_t)count;
            int64_t top = gp_scan(b, header, near_top, UINT64_MAX, easy);
            if (top != gp_scan(GP_BACKEND_PORTABLE, header, near_top, count + 1, easy))
                fail("scan wrapped past 2^32-1, seed", (long)seed);
            int64_t last = gp_scan(b, header, UINT32_MAX, 1, easy);
            int64_t last_ref = gp_scan(GP_BACKEND_PORTABLE, header, UINT32_MAX, 1, easy);
            if (last != last_ref)
                fail("scan of the last nonce differs, seed", (long)seed);
            if (gp_scan(b, header, start, 0, easy) != -1)
                fail("scan with count 0 found a nonce, seed", (long)seed);
        }
    }
}

int main(void)
{
    check_known_digests();
    check_lengths();
    check_batch();
    check_scans();
    if (failures)
        return 1;
    printf("ok (backends checked: %d)\n", n_backends());
    return 0;
}
