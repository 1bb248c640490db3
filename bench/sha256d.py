"""Throughput of every available sha256d backend, one core, printed as `name: value unit` lines.

    .venv/bin/python bench/sha256d.py [--seconds S]

For each backend: sha256d of an 80-byte header per Python call, batch header checks
(check_headers on 1,000 headers per call) and the nonce scanner (one call over many nonces,
a target nothing meets). Then each native backend's ratio to the `python` backend (hashlib),
measured in the same run. Results go in BENCHMARKS.md, section "sha256d".
"""

from __future__ import annotations

import argparse
import platform
import random
import time
from collections.abc import Callable
from pathlib import Path

from pool import hashing

BATCH = 1_000  # headers per check_headers call
ZERO_TARGET = bytes(32)  # no header meets it, so a scan covers its whole range


def rate(call: Callable[[], object], units_per_call: int, seconds: float) -> float:
    """Units per second of `call`: best of three runs of about seconds/3 each."""
    best = 0.0
    for _ in range(3):
        calls, started = 0, time.perf_counter()
        while True:
            call()
            calls += 1
            elapsed = time.perf_counter() - started
            if elapsed >= seconds / 3:
                break
        best = max(best, calls * units_per_call / elapsed)
    return best


def measure(backend: hashing.HashBackend, seconds: float) -> dict[str, float]:
    rng = random.Random(1)
    header = rng.randbytes(80)
    headers = [rng.randbytes(80) for _ in range(BATCH)]
    target = bytes([0xFF] * 31 + [0x00])
    # A scan call should take a few ms so call overhead does not count; hashlib is slow.
    scan_nonces = 20_000 if backend.name == "python" else 2_000_000
    return {
        "sha256d_80B": rate(lambda: backend.sha256d(header), 1, seconds),
        "check_headers_x1000": rate(
            lambda: backend.check_headers(headers, target), BATCH, seconds
        ),
        "scan": rate(lambda: backend.scan(header, 0, scan_nonces, ZERO_TARGET), scan_nonces,
                     seconds),
    }  # fmt: skip


UNITS = {"sha256d_80B": "calls/s", "check_headers_x1000": "headers/s", "scan": "headers/s"}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="per measurement (s)")
    args = parser.parse_args()
    print(f"cpu: {cpu_model()}")
    print(f"python: {platform.python_version()}")
    print(f"backends: {','.join(hashing.available_backends())}")
    results = {}
    for name in hashing.available_backends():
        results[name] = measure(hashing.get_backend(name), args.seconds)
        for metric, value in results[name].items():
            print(f"{name}.{metric}: {value:.0f} {UNITS[metric]}")
    baseline = results["python"]
    for name in results:
        if name != "python":
            for metric, value in results[name].items():
                print(f"{name}_vs_hashlib.{metric}: {value / baseline[metric]:.2f} x")


if __name__ == "__main__":
    main()
