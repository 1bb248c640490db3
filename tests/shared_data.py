"""Where the shared real-Bitcoin test data lives (importable from any test: pytest puts tests/ on
sys.path via `pythonpath` in pyproject.toml)."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _find_testdata() -> Path:
    candidates = [
        os.environ.get("GRIDPOOL_TESTDATA"),
        REPO.parent / "shared" / "testdata",  # DESIGN.md layout: ../shared beside the checkout
        Path("/work/shared/testdata"),  # a clean checkout elsewhere on the development machine
    ]
    for candidate in candidates:
        if candidate and (Path(candidate) / "README.md").is_file():
            return Path(candidate)
    raise RuntimeError(
        f"shared test data not found (tried {[str(c) for c in candidates if c]}); "
        "set GRIDPOOL_TESTDATA to the directory holding key_io_valid.json and the .raw blocks"
    )


TESTDATA = _find_testdata()
