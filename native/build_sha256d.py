"""cffi builder (API mode) for the native double-SHA256 extension `pool._sha256d`.

setup.py hands `ffibuilder` to setuptools through `cffi_modules`, so the extension is compiled
by `pip install`. A C compile error fails the install: nothing here catches it, because a pool
that silently validated shares with hashlib would be ~10x slower without anyone noticing.
Paths are relative to the project root (setuptools rejects absolute source paths).
"""

import sys

from cffi import FFI

# Must match native/sha256d.h (API mode: the C compiler checks the calls against the header).
CDEF = """
#define GP_BACKEND_PORTABLE 0
#define GP_BACKEND_SHANI 1
int gp_shani_available(void);
void gp_sha256d(int backend, const uint8_t *data, size_t len, uint8_t *out32);
int gp_check_header(int backend, const uint8_t *header80, const uint8_t *target32_le,
                    uint8_t *hash_out32);
void gp_check_headers(int backend, const uint8_t *headers, size_t n,
                      const uint8_t *target32_le, uint8_t *hashes_out, uint8_t *ok_out);
int64_t gp_scan(int backend, const uint8_t *header80, uint32_t start_nonce, uint64_t count,
                const uint8_t *target32_le);
"""

# SHA-NI code is enabled per function with __attribute__((target)), so no -msha / -march here:
# the same binary runs on CPUs without SHA extensions.
if sys.platform == "win32":
    EXTRA_COMPILE_ARGS = ["/O2"]
else:
    EXTRA_COMPILE_ARGS = ["-O3", "-Wall"]

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "pool._sha256d",
    '#include "sha256d.h"',
    sources=["native/sha256d.c"],
    include_dirs=["native"],
    extra_compile_args=EXTRA_COMPILE_ARGS,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
