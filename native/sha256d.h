/* Double SHA-256 (Bitcoin's sha256d) for share checks and nonce scanning.
 *
 * Every function takes a backend selector so callers can force one implementation:
 *   GP_BACKEND_PORTABLE (0)  plain C99, any CPU;
 *   GP_BACKEND_SHANI    (1)  x86 SHA extensions (SHA-NI), only if gp_shani_available().
 * Selecting SHA-NI on a CPU without it runs the portable code instead of faulting; the
 * Python layer (pool/hashing.py) refuses such a request before it reaches C.
 *
 * Byte order: hashes are the raw digest bytes ("internal" / little-endian order, the
 * display hex is their reverse); targets are 32-byte little-endian integers.
 * No function allocates, keeps state between calls, or touches Python. */
#ifndef GRIDPOOL_SHA256D_H
#define GRIDPOOL_SHA256D_H

#include <stddef.h>
#include <stdint.h>

#define GP_BACKEND_PORTABLE 0
#define GP_BACKEND_SHANI 1

/* 1 if this build has the SHA-NI path and the CPU supports SHA + SSE4.1, else 0. */
int gp_shani_available(void);

/* out32 = SHA256(SHA256(data[0..len))). data may be NULL only when len == 0. */
void gp_sha256d(int backend, const uint8_t *data, size_t len, uint8_t out32[32]);

/* hash_out32 = sha256d(header80); returns 1 if hash <= target (both little-endian
 * 256-bit integers), else 0. */
int gp_check_header(int backend, const uint8_t header80[80], const uint8_t target32_le[32],
                    uint8_t hash_out32[32]);

/* gp_check_header over n headers stored back to back (n * 80 bytes); writes n * 32 hash
 * bytes to hashes_out and n flags (1 = hash <= target) to ok_out. */
void gp_check_headers(int backend, const uint8_t *headers, size_t n,
                      const uint8_t target32_le[32], uint8_t *hashes_out, uint8_t *ok_out);

/* The first nonce in [start_nonce, start_nonce + count), never past 0xFFFFFFFF, for which
 * header80 with that nonce (bytes 76..79, little-endian) hashes <= target; -1 if none.
 * Bytes 76..79 of header80 are ignored. */
int64_t gp_scan(int backend, const uint8_t header80[80], uint32_t start_nonce, uint64_t count,
                const uint8_t target32_le[32]);

#endif /* GRIDPOOL_SHA256D_H */
